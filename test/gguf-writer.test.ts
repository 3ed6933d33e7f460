// The GGUF writer, checked by parsing its output with an independent DataView
// parser written here from the format description, byte offset by byte offset.

import t, { type Test } from 'tap';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GGML_TYPES, GgufWriter, tensorBytes } from '../lib/convert/gguf-writer.js';

// ---- an independent parser ---------------------------------------------------------------

type Parsed = number | bigint | boolean | string | { elem: number; values: Parsed[] };

interface ParsedFile {
  version: number;
  kvs: { key: string; type: number; value: Parsed }[];
  tensors: { name: string; ne: bigint[]; type: number; offset: bigint }[];
  headerEnd: number;
}

function parseGguf(bytes: Uint8Array): ParsedFile {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dec = new TextDecoder('utf-8', { fatal: true });
  let p = 0;
  const u32 = () => ((p += 4), dv.getUint32(p - 4, true));
  const u64 = () => ((p += 8), dv.getBigUint64(p - 8, true));
  const str = () => {
    const n = Number(u64());
    p += n;
    return dec.decode(bytes.subarray(p - n, p));
  };
  const value = (type: number): Parsed => {
    switch (type) {
      case 0: return dv.getUint8(p++);
      case 1: return dv.getInt8(p++);
      case 2: return ((p += 2), dv.getUint16(p - 2, true));
      case 3: return ((p += 2), dv.getInt16(p - 2, true));
      case 4: return u32();
      case 5: return ((p += 4), dv.getInt32(p - 4, true));
      case 6: return ((p += 4), dv.getFloat32(p - 4, true));
      case 7: {
        const b = dv.getUint8(p++);
        if (b > 1) throw new Error(`bad bool ${b}`);
        return b === 1;
      }
      case 8: return str();
      case 9: {
        const elem = u32();
        const n = Number(u64());
        const values: Parsed[] = [];
        for (let i = 0; i < n; i++) values.push(value(elem));
        return { elem, values };
      }
      case 10: return u64();
      case 11: return ((p += 8), dv.getBigInt64(p - 8, true));
      case 12: return ((p += 8), dv.getFloat64(p - 8, true));
      default: throw new Error(`bad type ${type}`);
    }
  };
  const magic = dec.decode(bytes.subarray(0, 4));
  if (magic !== 'GGUF') throw new Error('bad magic');
  p = 4;
  const version = u32();
  const nTensors = Number(u64());
  const nKv = Number(u64());
  const kvs: ParsedFile['kvs'] = [];
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = u32();
    kvs.push({ key, type, value: value(type) });
  }
  const tensors: ParsedFile['tensors'] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    const ne: bigint[] = [];
    for (let d = 0; d < nd; d++) ne.push(u64());
    tensors.push({ name, ne, type: u32(), offset: u64() });
  }
  return { version, kvs, tensors, headerEnd: p };
}

// ---- helpers -------------------------------------------------------------------------------

const dir = await mkdtemp(join(tmpdir(), 'cxr-gguf-writer-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

/** Deterministic bytes, different for each tensor. */
function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 31 + i * 7 + 1) & 0xff;
  return b;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Checks tensor offsets, data and zero padding against what was added. */
function checkData(
  t: Test,
  bytes: Uint8Array,
  parsed: ParsedFile,
  align: number,
  expected: { name: string; ne: number[]; type: number; data: Uint8Array }[],
): void {
  const dataStart = alignUp(parsed.headerEnd, align);
  t.equal(dataStart % align, 0, 'data section aligned');
  t.ok(bytes.subarray(parsed.headerEnd, dataStart).every((b) => b === 0), 'header padding is zero');
  t.equal(parsed.tensors.length, expected.length);
  let offset = 0;
  for (const [i, want] of expected.entries()) {
    const got = parsed.tensors[i]!;
    t.equal(got.name, want.name);
    t.same(got.ne, want.ne.map(BigInt), `${want.name} ne`);
    t.equal(got.type, want.type, `${want.name} type`);
    t.equal(got.offset, BigInt(offset), `${want.name} offset`);
    t.equal(offset % align, 0, `${want.name} offset aligned`);
    const start = dataStart + offset;
    // Buffer.compare: tap's deep comparison is far too slow for megabytes.
    t.equal(Buffer.compare(bytes.subarray(start, start + want.data.length), want.data), 0, `${want.name} data`);
    const padded = alignUp(want.data.length, align);
    t.ok(bytes.subarray(start + want.data.length, start + padded).every((b) => b === 0), `${want.name} padding zero`);
    offset += padded;
  }
  t.equal(bytes.length, dataStart + offset, 'file ends after the last padded tensor');
}

// ---- tests ---------------------------------------------------------------------------------

t.test('every metadata type and a few tensors round-trip exactly', async (t) => {
  const f32 = pattern(4 * 3 * 4, 1);
  const q8 = pattern(2 * 2 * 34, 2);
  const f16 = pattern(5 * 2, 3);
  const w = new GgufWriter()
    .setString('general.architecture', 'llama')
    .set('u8', 'u8', 255)
    .set('i8', 'i8', -128)
    .set('u16', 'u16', 65535)
    .set('i16', 'i16', -32768)
    .set('u32', 'u32', 0xffffffff)
    .set('i32', 'i32', -0x80000000)
    .set('u64', 'u64', (1n << 64n) - 1n)
    .set('u64n', 'u64', 2 ** 53 - 1)
    .set('i64', 'i64', -(1n << 63n))
    .set('f32', 'f32', 1.5)
    .set('f64', 'f64', Math.PI)
    .set('bool', 'bool', false)
    .setU32('cu32', 7)
    .setF32('cf32', -0.25)
    .setBool('cbool', true)
    .set('str', 'string', 'h\u00e9llo \u{1F600}')
    .setArray('a.u8', 'u8', new Uint8Array([0, 1, 255]))
    .setArray('a.i8', 'i8', [-1, 2])
    .setArray('a.u16', 'u16', [1, 65535])
    .setArray('a.i16', 'i16', [-2, 3])
    .setArray('a.u32', 'u32', [4000000000])
    .setArray('a.i32', 'i32', new Int32Array([-5, 6, 7]))
    .setArray('a.u64', 'u64', [1n << 40n, 3])
    .setArray('a.i64', 'i64', [-(1n << 40n)])
    .setArray('a.f32', 'f32', new Float32Array([0.5, -2.25]))
    .setArray('a.f64', 'f64', [1e-300])
    .setArray('a.bool', 'bool', [true, false, true])
    .setArray('a.str', 'string', ['a', '', '\u00e9'])
    .setArray('a.empty', 'string', [])
    .addTensor('tok', [4, 3], 'f32', f32)
    .addTensor('blk.0.q', [64, 2], 'q8_0', async () => q8)
    .addTensor('norm', [5], 'f16', () => f16);
  const path = join(dir, 'all.gguf');
  await w.write(path);
  const bytes = new Uint8Array(await readFile(path));
  const parsed = parseGguf(bytes);

  t.equal(parsed.version, 3);
  const arr = (elem: number, values: Parsed[]) => ({ elem, values });
  t.same(
    parsed.kvs.map((kv) => [kv.key, kv.type, kv.value]),
    [
      ['general.architecture', 8, 'llama'],
      ['u8', 0, 255],
      ['i8', 1, -128],
      ['u16', 2, 65535],
      ['i16', 3, -32768],
      ['u32', 4, 0xffffffff],
      ['i32', 5, -0x80000000],
      ['u64', 10, (1n << 64n) - 1n],
      ['u64n', 10, 2n ** 53n - 1n],
      ['i64', 11, -(1n << 63n)],
      ['f32', 6, 1.5],
      ['f64', 12, Math.PI],
      ['bool', 7, false],
      ['cu32', 4, 7],
      ['cf32', 6, -0.25],
      ['cbool', 7, true],
      ['str', 8, 'h\u00e9llo \u{1F600}'],
      ['a.u8', 9, arr(0, [0, 1, 255])],
      ['a.i8', 9, arr(1, [-1, 2])],
      ['a.u16', 9, arr(2, [1, 65535])],
      ['a.i16', 9, arr(3, [-2, 3])],
      ['a.u32', 9, arr(4, [4000000000])],
      ['a.i32', 9, arr(5, [-5, 6, 7])],
      ['a.u64', 9, arr(10, [1n << 40n, 3n])],
      ['a.i64', 9, arr(11, [-(1n << 40n)])],
      ['a.f32', 9, arr(6, [0.5, -2.25])],
      ['a.f64', 9, arr(12, [1e-300])],
      ['a.bool', 9, arr(7, [true, false, true])],
      ['a.str', 9, arr(8, ['a', '', '\u00e9'])],
      ['a.empty', 9, arr(8, [])],
    ],
    'keys in insertion order with exact types and values; no general.alignment at 32',
  );
  // The string's length prefix counts UTF-8 bytes, not UTF-16 units.
  const strAt = Buffer.from(bytes).indexOf(Buffer.from('h\u00e9llo', 'utf8'));
  t.equal(new DataView(bytes.buffer).getBigUint64(strAt - 8, true), 11n);

  checkData(t, bytes, parsed, 32, [
    { name: 'tok', ne: [4, 3], type: 0, data: f32 },
    { name: 'blk.0.q', ne: [64, 2], type: 8, data: q8 },
    { name: 'norm', ne: [5], type: 1, data: f16 },
  ]);
  t.same(await readdir(dir), ['all.gguf'], 'no temp file left behind');
});

t.test('alignment 64 from the option is written and used', async (t) => {
  const a = pattern(16 * 4, 4);
  const b = pattern(256 * 2 * 144 / 256, 5);
  const w = new GgufWriter({ alignment: 64 }).setString('k', 'v').addTensor('a', [16], 'f32', a).addTensor('b', [256, 2], 'q4_k', b);
  t.equal(w.alignment, 64);
  const path = join(dir, 'align64.gguf');
  await w.write(path);
  const bytes = new Uint8Array(await readFile(path));
  const parsed = parseGguf(bytes);
  t.same(parsed.kvs.at(-1), { key: 'general.alignment', type: 4, value: 64 }, 'alignment key appended, u32');
  checkData(t, bytes, parsed, 64, [
    { name: 'a', ne: [16], type: 0, data: a },
    { name: 'b', ne: [256, 2], type: 12, data: b },
  ]);
  t.equal(parsed.tensors[1]!.offset, 64n);
});

t.test('general.alignment set by the user is honoured', async (t) => {
  const a = pattern(8, 6);
  const w = new GgufWriter().set('general.alignment', 'u32', 128).addTensor('a', [4], 'bf16', a).addTensor('b', [4], 'bf16', a);
  const path = join(dir, 'align128.gguf');
  await w.write(path);
  const bytes = new Uint8Array(await readFile(path));
  const parsed = parseGguf(bytes);
  t.same(parsed.kvs, [{ key: 'general.alignment', type: 4, value: 128 }], 'written once, where the user put it');
  checkData(t, bytes, parsed, 128, [
    { name: 'a', ne: [4], type: 30, data: a },
    { name: 'b', ne: [4], type: 30, data: a },
  ]);
  t.throws(() => new GgufWriter().set('general.alignment', 'u32', 48), /general.alignment must be a power of two, got 48/);
  t.throws(() => new GgufWriter().set('general.alignment', 'u64', 64), /general.alignment must be a u32, got u64/);
  t.throws(() => new GgufWriter({ alignment: 64 }).set('general.alignment', 'u32', 32), /contradicts the writer's alignment option 64/);
  t.throws(() => new GgufWriter({ alignment: 3 }), /alignment must be a power of two up to 2\^31, got 3/);
  t.throws(() => new GgufWriter({ alignment: 0 }), /got 0/);
});

t.test('progress reports every tensor and ends at the file size', async (t) => {
  const calls: [number, number, string][] = [];
  const w = new GgufWriter().addTensor('x', [3], 'f32', pattern(12, 7)).addTensor('y', [32], 'q4_0', pattern(18, 8));
  const path = join(dir, 'progress.gguf');
  await w.write(path, (done, total, name) => calls.push([done, total, name]));
  const size = (await stat(path)).size;
  t.same(calls.map((c) => c[2]), ['x', 'y']);
  t.ok(calls.every((c) => c[1] === size), 'total is the file size');
  t.ok(calls[0]![0] < calls[1]![0], 'done grows');
  t.equal(calls[1]![0], size, 'done reaches the total');
});

t.test('a failing data producer leaves neither the file nor a temp file', async (t) => {
  const sub = await mkdtemp(join(dir, 'fail-'));
  const path = join(sub, 'out.gguf');
  const w = new GgufWriter().addTensor('ok', [4], 'f32', pattern(16, 9)).addTensor('bad', [4], 'f32', async () => {
    throw new Error('producer exploded');
  });
  await t.rejects(w.write(path), /producer exploded/);
  t.same(await readdir(sub), [], 'directory is empty');

  const short = new GgufWriter().addTensor('short', [4], 'f32', () => new Uint8Array(15));
  await t.rejects(short.write(path), /short: data producer returned 15 bytes, expected 16/);
  t.same(await readdir(sub), []);

  // An existing file is replaced only by a complete write; a failed one leaves it alone.
  await writeFile(path, 'old');
  await t.rejects(w.write(path), /producer exploded/);
  t.equal(await readFile(path, 'utf8'), 'old');
  t.same(await readdir(sub), ['out.gguf']);
  await new GgufWriter().setU32('n', 1).write(path);
  t.equal(parseGguf(new Uint8Array(await readFile(path))).kvs[0]!.value, 1);
  t.same(await readdir(sub), ['out.gguf']);

  await t.rejects(new GgufWriter().write(join(sub, 'missing-dir', 'x.gguf')), { code: 'ENOENT' });
});

t.test('values are range-checked', async (t) => {
  const w = new GgufWriter();
  t.throws(() => w.set('a', 'u8', 256), /a: 256 is out of range for u8/);
  t.throws(() => w.set('a', 'u8', -1), /out of range for u8/);
  t.throws(() => w.set('a', 'i8', 128), /out of range for i8/);
  t.throws(() => w.set('a', 'i8', -129), /out of range for i8/);
  t.throws(() => w.set('a', 'u16', 65536), /out of range for u16/);
  t.throws(() => w.set('a', 'i16', 32768), /out of range for i16/);
  t.throws(() => w.set('a', 'u32', -1), /out of range for u32/);
  t.throws(() => w.set('a', 'u32', 2 ** 32), /out of range for u32/);
  t.throws(() => w.set('a', 'i32', 2 ** 31), /out of range for i32/);
  t.throws(() => w.set('a', 'i32', 1.5), /expected an integer for i32, got 1.5/);
  t.throws(() => w.set('a', 'u64', -1), /-1 is out of range for u64/);
  t.throws(() => w.set('a', 'u64', 1n << 64n), /out of range for u64/);
  t.throws(() => w.set('a', 'i64', 1n << 63n), /out of range for i64/);
  t.throws(() => w.set('a', 'u64', 2 ** 53), /expected a safe integer or bigint for u64/);
  t.throws(() => w.set('a', 'f32', 1e39), /1e\+39 is out of range for f32/);
  t.throws(() => w.set('a', 'f32', 'x'), /expected a number for f32, got string/);
  t.throws(() => w.set('a', 'bool', 1), /expected a boolean for bool, got number/);
  t.throws(() => w.set('a', 'string', 5), /expected a string, got number/);
  t.throws(() => w.set('a', 'string', 'bad \ud800'), /lone surrogate/);
  t.throws(() => w.set('a', 'u9' as 'u8', 1), /unknown GGUF value type u9/);
  t.throws(() => w.setArray('a', 'u8', [1, 2, 300]), /a\[2\]: 300 is out of range for u8/);
  t.throws(() => w.setArray('a', 'string', ['x', 3]), /a\[1\]: expected a string/);
  t.throws(() => w.set('', 'u8', 1), /metadata key must be a non-empty string/);
  t.same(await readdir(dir).then((d) => d.filter((n) => n.includes('.tmp-'))), []);
  // Nothing above was recorded, so the key is still free.
  w.set('a', 'u8', 255);
  t.throws(() => w.set('a', 'u8', 1), /duplicate metadata key a/);
  t.throws(() => w.setArray('a', 'u8', [1]), /duplicate metadata key a/);
});

t.test('tensors are validated', async (t) => {
  const w = new GgufWriter().addTensor('x', [32], 'q8_0', new Uint8Array(34));
  t.throws(() => w.addTensor('x', [32], 'q8_0', new Uint8Array(34)), /duplicate tensor x/);
  t.throws(() => w.addTensor('y', [33], 'q8_0', new Uint8Array(34)), /y: row length 33 is not a multiple of q8_0's block size 32/);
  t.throws(() => w.addTensor('y', [32], 'q8_0', new Uint8Array(33)), /y: data is 33 bytes, expected 34/);
  t.throws(() => w.addTensor('y', [1, 1, 1, 1, 1], 'f32', new Uint8Array(4)), /y: tensor needs 1 to 4 dimensions, got 5/);
  t.throws(() => w.addTensor('y', [], 'f32', new Uint8Array(0)), /1 to 4 dimensions, got 0/);
  t.throws(() => w.addTensor('y', [-1], 'f32', new Uint8Array(0)), /dimension -1 is not a non-negative integer/);
  t.throws(() => w.addTensor('y', [2 ** 30, 2 ** 30, 2 ** 10], 'f32', () => new Uint8Array(0)), /too large/);
  t.throws(() => w.addTensor('y', [4], 'q5_0' as 'q4_0', new Uint8Array(0)), /y: unknown tensor type q5_0/);
  t.throws(() => w.addTensor('y'.repeat(64), [1], 'f32', new Uint8Array(4)), /longer than 63 bytes/);
  t.throws(() => w.addTensor('', [1], 'f32', new Uint8Array(4)), /non-empty/);

  t.equal(tensorBytes('f32', [4, 3]), 48);
  t.equal(tensorBytes('f16', [5]), 10);
  t.equal(tensorBytes('bf16', [3, 2]), 12);
  t.equal(tensorBytes('q8_0', [64, 2, 3]), 2 * 34 * 6);
  t.equal(tensorBytes('q4_0', [4096, 11008]), 128 * 18 * 11008);
  t.equal(tensorBytes('q4_k', [512, 1, 1, 2]), 2 * 144 * 2);
  t.equal(tensorBytes('q6_k', [256, 7]), 210 * 7);
  t.equal(tensorBytes('f32', [4, 0]), 0);
  t.throws(() => tensorBytes('q6_k', [255]), /row length 255 is not a multiple of q6_k's block size 256/);
  // ggml's type ids (ggml.h's enum ggml_type).
  t.same(
    Object.fromEntries(Object.entries(GGML_TYPES).map(([k, v]) => [k, v.id])),
    { f32: 0, f16: 1, q4_0: 2, q8_0: 8, q4_k: 12, q6_k: 14, bf16: 30 },
  );
});

t.test('large tensors stream through unbuffered and stay exact', async (t) => {
  // Bigger than the writer's 16 MiB buffer, next to small ones on both sides.
  const big = pattern(4 * 1024 * 1024 * 4 + 4 * 256, 10);
  const small = pattern(12, 11);
  const w = new GgufWriter()
    .addTensor('s0', [3], 'f32', small)
    .addTensor('big', [256, 16385], 'f32', () => big)
    .addTensor('s1', [3], 'f32', small);
  const path = join(dir, 'big.gguf');
  await w.write(path);
  const bytes = new Uint8Array(await readFile(path));
  checkData(t, bytes, parseGguf(bytes), 32, [
    { name: 's0', ne: [3], type: 0, data: small },
    { name: 'big', ne: [256, 16385], type: 0, data: big },
    { name: 's1', ne: [3], type: 0, data: small },
  ]);
  await rm(path);
});
