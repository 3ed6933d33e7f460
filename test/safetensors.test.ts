// The safetensors reader: dtype conversion, header validation, truncated and damaged
// files, and sharded checkpoints with their index.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SafetensorsCheckpoint, SafetensorsFile, toFloat32 } from '../lib/convert/safetensors.js';
import { safetensorsBytes, toBf16Bits } from './helpers/official-checkpoint.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-st-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const u8 = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function write(name: string, bytes: Uint8Array): string {
  const p = path.join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

/** A header hand-written as JSON, followed by `dataBytes` bytes. */
function rawFile(name: string, header: object, dataBytes: number): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return write(name, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
}

t.test('BF16, F16 and F32 tensors read back as float32', async (t) => {
  const values = Float32Array.from([1, -2.5, 0.1, 3.14159, -1e-3, 65504, 0]);
  const bf16 = toBf16Bits(values);
  // f16 bit patterns with known values: 1, -2, max normal, smallest subnormal, +inf, -0
  const f16 = Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x8000]);
  const file = write(
    'ok.safetensors',
    safetensorsBytes([
      { name: 'a', dtype: 'BF16', shape: [7], data: u8(bf16) },
      { name: 'b', dtype: 'F16', shape: [2, 3], data: u8(f16) },
      { name: 'c', dtype: 'F32', shape: [7, 1], data: u8(values) },
    ]),
  );
  const f = await SafetensorsFile.open(file);
  t.teardown(() => f.close());
  t.same([...f.tensors.keys()], ['a', 'b', 'c']);
  t.same(f.tensor('b').shape, [2, 3]);
  t.same(f.metadata, { format: 'pt' });
  const a = await f.readFloat32('a');
  // bf16 keeps 8 significant bits: 1 and -2.5 exactly, 0.1 -> 0.10009765625
  t.same([a[0], a[1], a[2], a[6]], [1, -2.5, 0.10009765625, 0]);
  for (let i = 0; i < values.length; i++) t.ok(Math.abs(a[i]! - values[i]!) <= Math.abs(values[i]!) * 2 ** -8, `bf16 value ${i} within half an ulp`);
  const b = await f.readFloat32('b');
  t.same([...b], [1, -2, 65504, 2 ** -24, Infinity, -0]);
  t.ok(Object.is(b[5], -0), 'negative zero kept');
  t.same(await f.readFloat32('c'), values);
  t.same(toFloat32('F32', u8(values)), values);
});

t.test('header problems name the file and the tensor', async (t) => {
  await t.rejects(SafetensorsFile.open(write('short.safetensors', Buffer.alloc(5))), {
    message: `${path.join(dir, 'short.safetensors')}: 5 bytes is too short for a safetensors file (truncated?)`,
  });
  const big = Buffer.alloc(16);
  big.writeBigUInt64LE(1000n);
  await t.rejects(SafetensorsFile.open(write('biglen.safetensors', big)), {
    message: `${path.join(dir, 'biglen.safetensors')}: header length 1000 exceeds the file size 16 (truncated, or not safetensors)`,
  });
  const p1 = rawFile('badoff.safetensors', { w: { dtype: 'BF16', shape: [2, 3], data_offsets: [0, 10] } }, 10);
  await t.rejects(SafetensorsFile.open(p1), {
    message: `${p1}: tensor w: data_offsets [0, 10] hold 10 bytes but BF16 [2, 3] needs 12`,
  });
  const p2 = rawFile('dtype.safetensors', { w: { dtype: 'Q4', shape: [2], data_offsets: [0, 2] } }, 2);
  await t.rejects(SafetensorsFile.open(p2), { message: `${p2}: tensor w: unknown dtype "Q4"` });
  const p3 = rawFile(
    'gap.safetensors',
    { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } },
    12,
  );
  await t.rejects(SafetensorsFile.open(p3), { message: `${p3}: tensor b starts at data byte 8, leaving a gap after byte 4` });
  const p4 = rawFile(
    'overlap.safetensors',
    { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } },
    8,
  );
  await t.rejects(SafetensorsFile.open(p4), { message: `${p4}: tensor b overlaps the tensor before it (bytes 4 < 8)` });
  const p5 = path.join(dir, 'json.safetensors');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(3n);
  writeFileSync(p5, Buffer.concat([len, Buffer.from('{x}')]));
  await t.rejects(SafetensorsFile.open(p5), { message: new RegExp(`^${p5.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: the header is not valid UTF-8 JSON`) });
  await t.rejects(SafetensorsFile.open(path.join(dir, 'nope.safetensors')), {
    message: `${path.join(dir, 'nope.safetensors')}: cannot open (file not found)`,
  });
});

t.test('a truncated file is reported with the tensor that runs past its end', async (t) => {
  const data = new Float32Array(64).fill(1);
  const bytes = safetensorsBytes([
    { name: 'first', dtype: 'F32', shape: [64], data: u8(data) },
    { name: 'second', dtype: 'F32', shape: [8, 8], data: u8(data) },
  ]);
  const p = write('trunc.safetensors', bytes.subarray(0, bytes.length - 10));
  await t.rejects(SafetensorsFile.open(p), {
    message: `${p}: tensor second: data ends at byte ${bytes.length} but the file has ${bytes.length - 10} bytes (truncated file?)`,
  });
  // A file cut after it was opened fails on the read, naming the tensor.
  const q = write('shrinks.safetensors', bytes);
  const f = await SafetensorsFile.open(q);
  t.teardown(() => f.close());
  truncateSync(q, bytes.length - 100);
  await t.rejects(f.readFloat32('second'), { message: new RegExp(`: tensor second is truncated \\(read \\d+ of 256 bytes`) });
  t.same((await f.readFloat32('first')).length, 64, 'the intact tensor still reads');
});

t.test('sharded checkpoints: index, shards and their cross-checks', async (t) => {
  const ck = path.join(dir, 'ckpt');
  const one = new Float32Array([1, 2]);
  const two = toBf16Bits(new Float32Array([3, 4, 5]));
  const mk = () => {
    freshDir(ck);
    writeFileSync(path.join(ck, 's1.safetensors'), safetensorsBytes([{ name: 'x', dtype: 'F32', shape: [2], data: u8(one) }]));
    writeFileSync(path.join(ck, 's2.safetensors'), safetensorsBytes([{ name: 'y', dtype: 'BF16', shape: [3], data: u8(two) }]));
  };
  const index = (map: object, total = 14) =>
    writeFileSync(path.join(ck, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: map }));

  mk();
  index({ x: 's1.safetensors', y: 's2.safetensors' });
  const c = await SafetensorsCheckpoint.open(ck);
  t.same([...c.tensors.keys()].sort(), ['x', 'y']);
  t.same([...(await c.readFloat32('y'))], [3, 4, 5]);
  t.equal(c.tensor('x').file, path.join(ck, 's1.safetensors'));
  await c.close();

  index({ x: 's1.safetensors', y: 's2.safetensors' }, 99);
  await t.rejects(SafetensorsCheckpoint.open(ck), {
    message: `${path.join(ck, 'model.safetensors.index.json')}: metadata.total_size is 99 but the shards hold 14 bytes of tensors`,
  });
  index({ x: 's1.safetensors', y: 's1.safetensors' });
  await t.rejects(SafetensorsCheckpoint.open(ck), {
    message: `${path.join(ck, 's1.safetensors')}: no tensor y, which model.safetensors.index.json places in this file`,
  });
  index({ x: 's1.safetensors', y: 's3.safetensors' });
  await t.rejects(SafetensorsCheckpoint.open(ck), {
    message: `${path.join(ck, 's3.safetensors')}: file not found; model.safetensors.index.json places 1 tensor(s) there (y)`,
  });
  writeFileSync(
    path.join(ck, 's1.safetensors'),
    safetensorsBytes([
      { name: 'x', dtype: 'F32', shape: [2], data: u8(one) },
      { name: 'stray', dtype: 'F32', shape: [2], data: u8(one) },
    ]),
  );
  index({ x: 's1.safetensors', y: 's2.safetensors' });
  await t.rejects(SafetensorsCheckpoint.open(ck), {
    message: `${path.join(ck, 's1.safetensors')}: tensor stray is not in model.safetensors.index.json's weight_map for this file`,
  });
  mk();
  index({ x: '../s1.safetensors', y: 's2.safetensors' });
  await t.rejects(SafetensorsCheckpoint.open(ck), { message: /maps to "\.\.\/s1\.safetensors", not a file name in the same folder/ });

  // Without an index, model.safetensors is the whole checkpoint.
  const single = path.join(dir, 'single');
  freshDir(single);
  await t.rejects(SafetensorsCheckpoint.open(single), { message: `${single}: no model.safetensors.index.json or model.safetensors found` });
  writeFileSync(path.join(single, 'model.safetensors'), safetensorsBytes([{ name: 'z', dtype: 'F32', shape: [2], data: u8(one) }]));
  const s = await SafetensorsCheckpoint.open(single);
  t.same([...(await s.readFloat32('z'))], [1, 2]);
  await s.close();
});

function freshDir(p: string): void {
  rmSync(p, { recursive: true, force: true });
  mkdirSync(p, { recursive: true });
}
