/**
 * Shared pieces of the property-based fuzz tests (fast-check): how many cases
 * to run, byte-level mutations of a seed file, and the rule every parser must
 * keep on bad input.
 */
import fc from 'fast-check';

/**
 * Cases per property: a few hundred in CI; `CXR_FUZZ_RUNS=10000` for a long run
 * (the figures in the hardening notes come from that).
 */
export const RUNS = Number(process.env.CXR_FUZZ_RUNS ?? 300);

/** fast-check settings shared by the fuzz tests: seed printed on failure, no time limit. */
export function params(runs = RUNS): fc.Parameters<unknown> {
  return {
    numRuns: runs,
    endOnFailure: true,
    ...(process.env.CXR_FUZZ_SEED ? { seed: Number(process.env.CXR_FUZZ_SEED) } : {}),
    // Counterexamples are often whole files: report how to replay one, not its bytes.
    asyncReporter: undefined,
    reporter: (out: fc.RunDetails<unknown>) => {
      if (!out.failed) return;
      const err = out.errorInstance instanceof Error ? out.errorInstance.message : 'the property returned false';
      const shown = JSON.stringify(out.counterexample, (_k, v: unknown) => (v instanceof Uint8Array ? `<${v.length} bytes: ${Buffer.from(v.subarray(0, 48)).toString('hex')}…>` : typeof v === 'bigint' ? `${v}n` : v));
      throw new Error(`property failed after ${out.numRuns} cases (${err}); replay with CXR_FUZZ_SEED=${out.seed}; counterexample ${shown.slice(0, 600)}`);
    },
  } as unknown as fc.Parameters<unknown>;
}

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'u32'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; length: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.constantFrom(0, 0xff, 0x7f, 0x80, 1) }),
  fc.record({ kind: fc.constant('u32' as const), at: fc.nat(), value: fc.constantFrom(0, 0xffffffff, 0x7fffffff, 0x80000000, 1, 0xfffffffe, 65536) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 64 }) }),
);

function apply(seed: Uint8Array, ms: readonly Mutation[], hot: number): Uint8Array {
  let b = Buffer.from(seed);
  for (const m of ms) {
    if (b.length === 0) break;
    // hot > 0: half the mutations land in the first `hot` bytes, where the headers are.
    // hot < 0: every mutation lands in the last -hot bytes (compressed pixel data).
    const at =
      hot < 0
        ? Math.max(0, b.length + hot) + (m.at % Math.min(-hot, b.length))
        : m.at % 2 === 0
          ? (m.at >> 1) % Math.min(hot, b.length)
          : (m.at >> 1) % b.length;
    switch (m.kind) {
      case 'flip':
        b[at] ^= 1 << m.bit;
        break;
      case 'set':
        b[at] = m.value;
        break;
      case 'u32':
        if (at + 4 <= b.length) b.writeUInt32LE(m.value, at);
        break;
      case 'truncate':
        b = b.subarray(0, at);
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + m.length))]);
        break;
    }
  }
  return new Uint8Array(b);
}

/** One of `seeds`, with 1 to 8 byte-level mutations (or, now and then, random bytes); `hot` as in apply(). */
export function mutated(seeds: readonly Uint8Array[], hot = 1024): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    { weight: 9, arbitrary: fc.tuple(fc.nat(seeds.length - 1), fc.array(mutation, { minLength: 1, maxLength: 8 })).map(([i, ms]) => apply(seeds[i]!, ms, hot)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4096 }) },
  );
}

/**
 * The rule for bad input: an error that names the input (`name: why`); never
 * an internal TypeError/RangeError escaping with a message that does not.
 */
export function isClearError(err: unknown, name: string): boolean {
  return err instanceof Error && err.message.startsWith(`${name}: `) && err.message.length > name.length + 3;
}
