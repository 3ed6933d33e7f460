// Property-based fuzzing (fast-check) of the TypeScript readers of the
// official checkpoint and of the GGUF writer: safetensors headers, the
// SentencePiece tokenizer.model protobuf, and the writer -> native reader round
// trip. Bad bytes give an error naming the file, never a crash or a hang;
// whatever the writer accepts, the reader returns unchanged.
import t from 'tap';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SafetensorsFile } from '../lib/convert/safetensors.js';
import { parseSentencePieceModel } from '../lib/convert/sentencepiece.js';
import { GgufWriter, type GgufValueType } from '../lib/convert/gguf-writer.js';
import { readGgufInfo } from '../lib/runtime/tensors.js';
import { safetensorsBytes } from './helpers/official-checkpoint.js';
import { TINY_SP_MODEL } from './helpers/tiny-llama.js';
import { isClearError, mutated, params, RUNS } from './helpers/fuzz.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-prop-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

// ---- safetensors -------------------------------------------------------------------------

/** A safetensors file from a header object and a data block, as the format lays it out. */
function rawSafetensors(header: unknown, data: Uint8Array): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

const dtype = fc.constantFrom('F32', 'F16', 'BF16', 'I64', 'U8', 'F64', 'bogus', '');
const dim = fc.oneof(fc.integer({ min: 0, max: 8 }), fc.constantFrom(-1, 1.5, 2 ** 53, 1e300), fc.constant('3' as unknown as number));
const tensorEntry = fc.record(
  {
    dtype,
    shape: fc.oneof(fc.array(dim, { maxLength: 4 }), fc.constant(null as unknown as number[])),
    data_offsets: fc.oneof(fc.tuple(fc.integer({ min: -4, max: 600 }), fc.integer({ min: -4, max: 600 })), fc.constant([0] as unknown as [number, number])),
  },
  { requiredKeys: ['dtype'] },
);
const header = fc.dictionary(fc.oneof(fc.string({ maxLength: 12 }), fc.constant('__metadata__')), fc.oneof({ weight: 6, arbitrary: tensorEntry }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) }), { maxKeys: 5 });

const validSeed = safetensorsBytes([
  { name: 'a.weight', dtype: 'F32', shape: [2, 3], data: new Uint8Array(24).fill(1) },
  { name: 'b.bias', dtype: 'BF16', shape: [4], data: new Uint8Array(8).fill(2) },
]);

t.test(`safetensors: ${RUNS} generated headers and ${RUNS} mutated files open or fail naming the file`, async (t) => {
  const file = path.join(dir, 'fuzz.safetensors');
  const counts = { opened: 0, rejected: 0 };
  const check = async (bytes: Uint8Array): Promise<boolean> => {
    writeFileSync(file, bytes);
    let st: SafetensorsFile | undefined;
    try {
      st = await SafetensorsFile.open(file);
      counts.opened++;
      // What opened tiles the data exactly and reads back at the stated size.
      for (const [name, tensor] of st.tensors) {
        const data = await st.readRaw(name);
        if (data.length !== tensor.nbytes) return false;
      }
      return true;
    } catch (err) {
      counts.rejected++;
      if (!isClearError(err, file)) throw err;
      return true;
    } finally {
      await st?.close();
    }
  };
  await fc.assert(fc.asyncProperty(header, fc.uint8Array({ maxLength: 64 }), (h, data) => check(rawSafetensors(h, data))), params());
  await fc.assert(fc.asyncProperty(mutated([validSeed], 256), check), params());
  t.equal(counts.opened + counts.rejected, 2 * RUNS, `${counts.opened} opened, ${counts.rejected} rejected with a clear error`);
  t.ok(counts.opened > 0 && counts.rejected > 0, 'both outcomes reached');
});

// ---- tokenizer.model ---------------------------------------------------------------------

t.test(`tokenizer.model: ${RUNS} mutated protobufs parse or fail naming the file`, async (t) => {
  const seed = new Uint8Array(readFileSync(TINY_SP_MODEL));
  let parsed = 0;
  let rejected = 0;
  fc.assert(
    fc.property(mutated([seed], 512), (bytes) => {
      try {
        const m = parseSentencePieceModel(bytes, 'fuzz.model');
        parsed++;
        // What parses is usable: pieces, finite scores, special ids inside the vocabulary.
        const inside = (id: number): boolean => id === -1 || (id >= 0 && id < m.pieces.length);
        return m.pieces.length > 0 && m.pieces.every((p) => typeof p.piece === 'string' && Number.isFinite(p.score)) && [m.unkId, m.bosId, m.eosId, m.padId].every(inside);
      } catch (err) {
        rejected++;
        if (!isClearError(err, 'fuzz.model')) throw err;
        return true;
      }
    }),
    params(),
  );
  t.equal(parsed + rejected, RUNS, `${parsed} parsed, ${rejected} rejected with a clear error`);
  t.ok(parsed > 0 && rejected > 0, 'both outcomes reached');
});

// ---- GGUF writer -> native reader --------------------------------------------------------

type Kv = { key: string; type: GgufValueType; value: number | bigint | boolean | string } | { key: string; type: GgufValueType; values: (number | bigint | boolean | string)[] };

const scalar: Record<GgufValueType, fc.Arbitrary<number | bigint | boolean | string>> = {
  u8: fc.integer({ min: 0, max: 255 }),
  i8: fc.integer({ min: -128, max: 127 }),
  u16: fc.integer({ min: 0, max: 65535 }),
  i16: fc.integer({ min: -32768, max: 32767 }),
  u32: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  i32: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  u64: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  i64: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  f32: fc.float({ noNaN: true, noDefaultInfinity: true }).map((x) => Math.fround(x)),
  f64: fc.double({ noNaN: true, noDefaultInfinity: true }),
  bool: fc.boolean(),
  string: fc.string({ unit: 'binary', maxLength: 40 }),
};
const valueType = fc.constantFrom(...(Object.keys(scalar) as GgufValueType[]));
const kv: fc.Arbitrary<Kv> = valueType.chain((type) =>
  fc.oneof(
    fc.record({ key: fc.string({ minLength: 1, maxLength: 24 }), type: fc.constant(type), value: scalar[type] }),
    fc.record({ key: fc.string({ minLength: 1, maxLength: 24 }), type: fc.constant(type), values: fc.array(scalar[type], { maxLength: 70 }) }),
  ),
);
const tensor = fc.record({
  name: fc.string({ minLength: 1, maxLength: 30 }),
  ne: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 }),
});

/** What the native reader gives back for a value the writer was handed. */
function expected(type: GgufValueType, v: number | bigint | boolean | string): unknown {
  if (type !== 'u64' && type !== 'i64') return v;
  // 64-bit integers come back as numbers while exact (|v| <= 2^53), else as bigints.
  const b = BigInt(v as bigint);
  return b <= 2n ** 53n && b >= -(2n ** 53n) ? Number(b) : b;
}

t.test(`GGUF: ${RUNS} writer outputs read back unchanged by the native reader`, async (t) => {
  const file = path.join(dir, 'fuzz.gguf');
  let files = 0;
  await fc.assert(
    fc.asyncProperty(fc.uniqueArray(kv, { selector: (k) => k.key, maxLength: 8 }), fc.uniqueArray(tensor, { selector: (x) => x.name, maxLength: 4 }), async (kvs, tensors) => {
      const w = new GgufWriter();
      const kept: Kv[] = [];
      for (const k of kvs) {
        if (k.key === 'general.alignment') continue;
        if ('values' in k) w.setArray(k.key, k.type, k.values);
        else w.set(k.key, k.type, k.value);
        kept.push(k);
      }
      for (const x of tensors) {
        const n = x.ne.reduce((a, b) => a * b, 1);
        w.addTensor(x.name, x.ne, 'f32', new Uint8Array(new Float32Array(n).fill(n).buffer));
      }
      await w.write(file);
      files++;
      const info = readGgufInfo(file, { full: true });
      for (const k of kept) {
        const got = info.metadata[k.key];
        const want = 'values' in k ? k.values.map((v) => expected(k.type, v)) : expected(k.type, k.value);
        if (JSON.stringify(got, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)) !== JSON.stringify(want, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))) return false;
      }
      return info.tensors.length === tensors.length && tensors.every((x, i) => info.tensors[i]!.name === x.name && info.tensors[i]!.ne.join() === x.ne.join());
    }),
    params(),
  );
  t.equal(files, RUNS, `${RUNS} files written and read back`);
});

t.test(`GGUF: ${RUNS} mutated files read by the native reader give its header or an error naming the file`, async (t) => {
  const seedFile = path.join(dir, 'seed.gguf');
  const w = new GgufWriter();
  w.set('general.architecture', 'string', 'llama').setArray('tokenizer.ggml.tokens', 'string', ['<unk>', '<s>', '</s>', 'a', 'b']).set('llama.context_length', 'u32', 64).set('x.i64', 'i64', -3n);
  w.addTensor('token_embd.weight', [4, 5], 'f32', new Uint8Array(80));
  w.addTensor('output.weight', [32, 2], 'q8_0', new Uint8Array(68));
  await w.write(seedFile);
  const seed = new Uint8Array(readFileSync(seedFile));
  const file = path.join(dir, 'fuzz-read.gguf');
  let read = 0;
  let rejected = 0;
  fc.assert(
    fc.property(mutated([seed], 512), (bytes) => {
      writeFileSync(file, bytes);
      try {
        const info = readGgufInfo(file, { full: true });
        read++;
        return info.tensors.every((x) => x.offset + x.bytes <= info.fileSize - info.dataOffset);
      } catch (err) {
        rejected++;
        if (!isClearError(err, file)) throw err;
        return true;
      }
    }),
    params(),
  );
  t.equal(read + rejected, RUNS, `${read} read, ${rejected} rejected with a clear error`);
  t.ok(read > 0 && rejected > 0, 'both outcomes reached');
});
