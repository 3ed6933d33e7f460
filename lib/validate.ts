/**
 * Option checks, done once in JS so the native side can trust what it gets
 * (sharp's `is` style). Each returns the value (or its default) or throws
 * `invalidParameterError`, e.g. "Expected a number in (0, 1] for topP but
 * received 0". The CLI parses its flags with the same ranges (`parseNumberArg`),
 * so a flag and the option it sets fail with the same words.
 */
import { invalidParameterError } from './errors.js';

/** A closed or half-open interval of numbers, optionally integers only. */
export interface NumberRange {
  integer?: boolean;
  min: number;
  /** (optional, default unbounded) */
  max?: number;
  /** Exclude `min` itself (optional, default false). */
  minOpen?: boolean;
  /** Exclude `max` itself (optional, default false). */
  maxOpen?: boolean;
}

/** "a number in (0, 1]", "an integer in [1, 1024]", "an integer >= 0". */
export function describeRange(r: NumberRange): string {
  const what = r.integer ? 'an integer' : 'a number';
  if (r.max === undefined || r.max === Number.MAX_SAFE_INTEGER || r.max === Infinity) return `${what} ${r.minOpen ? '>' : '>='} ${r.min}`;
  return `${what} in ${r.minOpen ? '(' : '['}${r.min}, ${r.max}${r.maxOpen ? ')' : ']'}`;
}

export function inRange(v: unknown, r: NumberRange): v is number {
  if (typeof v !== 'number' || !Number.isFinite(v)) return false;
  if (r.integer && !Number.isSafeInteger(v)) return false;
  if (r.minOpen ? !(v > r.min) : !(v >= r.min)) return false;
  if (r.max !== undefined && (r.maxOpen ? !(v < r.max) : !(v <= r.max))) return false;
  return true;
}

/** `v` if it is in `r`, else throws naming `name` and the range. */
export function checkNumber(name: string, v: unknown, r: NumberRange): number {
  if (!inRange(v, r)) throw invalidParameterError(name, describeRange(r), v);
  return v;
}

/** An optional number in `r`: `def` when undefined. */
export function optNumberIn(name: string, v: unknown, def: number, r: NumberRange): number {
  return v === undefined ? def : checkNumber(name, v, r);
}

/**
 * A command-line value for the option `name`: the text must be a plain
 * decimal number, then the range check as in the API.
 */
export function parseNumberArg(name: string, text: string, r: NumberRange): number {
  const s = text.trim();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(s)) throw invalidParameterError(name, describeRange(r), text);
  return checkNumber(name, Number(s), r);
}

export function optInteger(name: string, v: unknown, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  return optNumberIn(name, v, def, { integer: true, min, max });
}

export function optNumber(name: string, v: unknown, def: number, min: number, max: number): number {
  return optNumberIn(name, v, def, { min, max });
}

export function optBoolean(name: string, v: unknown, def: boolean): boolean {
  if (v === undefined) return def;
  if (typeof v !== 'boolean') throw invalidParameterError(name, 'boolean', v);
  return v;
}

export function reqString(name: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0) throw invalidParameterError(name, 'non-empty string', v);
  return v;
}

export function optStringArray(name: string, v: unknown): string[] {
  if (v === undefined) return [];
  if (typeof v === 'string') return [v];
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw invalidParameterError(name, 'string or array of strings', v);
  return v as string[];
}

export function optFunction<F>(name: string, v: unknown): F | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'function') throw invalidParameterError(name, 'function', v);
  return v as F;
}

export function optEnum<T extends string>(name: string, v: unknown, allowed: readonly T[], def: T): T {
  if (v === undefined) return def;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw invalidParameterError(name, `one of ${allowed.join(', ')}`, v);
  }
  return v as T;
}

/**
 * Token ids for a vocabulary of `nVocab`: the one check they get on the way in
 * (the addon copies them without looking again). Returns them as an Int32Array.
 */
export function tokenIds(name: string, ids: unknown, nVocab: number): Int32Array {
  if (!Array.isArray(ids) && !(ids instanceof Int32Array)) throw invalidParameterError(name, 'array of token ids', ids);
  const out = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const id: unknown = ids[i];
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= nVocab) {
      throw invalidParameterError(`${name}[${i}]`, `a token id in [0, ${nVocab - 1}]`, id);
    }
    out[i] = id;
  }
  return out;
}

const SEED_RANGE = 'an integer in [0, 18446744073709551615]';

/** A 64-bit seed from a number or bigint; `undefined` stays undefined (a random seed). */
export function optSeed(name: string, v: unknown): bigint | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'bigint' && v >= 0n && v < 1n << 64n) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  throw invalidParameterError(name, SEED_RANGE, v);
}

/** A seed flag: decimal digits only (64-bit seeds do not fit a double), then the same check. */
export function parseSeedArg(name: string, text: string): bigint {
  const s = text.trim();
  if (!/^\d+$/.test(s)) throw invalidParameterError(name, SEED_RANGE, text);
  return optSeed(name, BigInt(s))!;
}
