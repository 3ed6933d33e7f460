/**
 * Option checks, done once in JS so the native side can trust what it gets.
 * Each returns the value (or its default) or throws `invalidParameterError`.
 */
import { invalidParameterError } from './errors.js';

export function optInteger(name: string, v: unknown, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `integer >= ${min}` : `integer between ${min} and ${max}`;
    throw invalidParameterError(name, range, v);
  }
  return v;
}

export function optNumber(name: string, v: unknown, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw invalidParameterError(name, `number between ${min} and ${max}`, v);
  }
  return v;
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
