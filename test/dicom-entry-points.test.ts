// Every DICOM fixture through the entry points a user calls, with the bytes as
// Node hands them over: a path (readFile gives a Buffer, small ones share a pool),
// a Buffer that is a slice at an odd offset of a larger one (Buffer#subarray and
// Buffer#slice do not copy), and a fresh Uint8Array. All three must give the same
// tensor, and the CLI and encodeImage must take every codec. The tap tests used to
// read fresh copies only, and JPEG Lossless and RLE failed on the other two.
import t from 'tap';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, preprocessImage } from '../lib/index.js';
import { cleanEnv, runCli, writeTinyCxrModel } from './helpers/cli.js';

const fixtures = fileURLToPath(new URL('./fixtures/dicom/', import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'cxr-dcm-entry-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, 'model');
const tiny = await writeTinyCxrModel(modelDir);

const good = readdirSync(fixtures)
  .filter((f) => f.endsWith('.dcm') && !f.startsWith('bad-'))
  .sort();

/** The file's bytes as a Buffer that views the middle of a larger, busy block. */
function sliceOfLarger(file: string, offset = 4093): Buffer {
  const bytes = readFileSync(file);
  const block = Buffer.alloc(offset + bytes.length + 3001, 0xa5); // junk either side
  bytes.copy(block, offset);
  return block.subarray(offset, offset + bytes.length);
}

t.test('the fixtures cover the codecs that used to fail through a Buffer', async (t) => {
  for (const f of ['jpeg-lossless-sv1.dcm', 'rle.dcm']) t.ok(good.includes(f), f);
  t.ok(good.length >= 20, `${good.length} fixtures`);
});

t.test('preprocessImage: path, Buffer slice at an offset and a fresh copy agree for every fixture', async (t) => {
  for (const f of good) {
    const file = path.join(fixtures, f);
    const fromPath = await preprocessImage(file);
    const slice = sliceOfLarger(file);
    t.not(slice.byteOffset, 0, `${f}: the slice really is at an offset`);
    const fromSlice = await preprocessImage(slice);
    const fromCopy = await preprocessImage(new Uint8Array(readFileSync(file)));
    t.equal(fromPath.length, 512 * 512, `${f}: a 512x512 tensor`);
    t.ok(Buffer.from(fromPath.buffer).equals(Buffer.from(fromCopy.buffer)), `${f}: path == fresh copy`);
    t.ok(Buffer.from(fromSlice.buffer).equals(Buffer.from(fromCopy.buffer)), `${f}: Buffer slice == fresh copy`);
  }
});

t.test('a pooled Buffer.from() copy (offset into the shared pool) decodes too', async (t) => {
  // Buffer.from(array) of a small file lands in Node's 8 KiB pool at a non-zero offset.
  for (const f of ['jpeg-lossless-sv1.dcm', 'rle.dcm', 'jpegls-lossless.dcm', 'j2k-lossless.dcm']) {
    const bytes = readFileSync(path.join(fixtures, f));
    const pooled = Buffer.concat([Buffer.from([1, 2, 3]), bytes]).subarray(3);
    t.not(pooled.byteOffset, 0, `${f}: at an offset`);
    const a = await preprocessImage(pooled);
    const b = await preprocessImage(new Uint8Array(bytes));
    t.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), f);
  }
});

t.test('CLI: report --jsonl over a folder of every fixture gives a report for each', async (t) => {
  const scans = path.join(dir, 'scans');
  mkdirSync(scans);
  for (const f of good) copyFileSync(path.join(fixtures, f), path.join(scans, f));
  const r = await runCli(['report', scans, '--jsonl', '--model', modelDir, '--temperature', '0', '--max-tokens', '2', '--threads', '1'], {
    env: cleanEnv(dir),
    timeoutMs: 300_000,
  });
  t.equal(r.code, 0, r.stderr);
  const recs = r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { file: string; error: string | null; text: string | null });
  t.equal(recs.length, good.length, 'one record per file');
  for (const rec of recs) t.equal(rec.error, null, `${path.basename(rec.file)}: ${rec.error ?? 'ok'}`);
  t.notMatch(r.stderr, /error:/, 'no error lines');
});

t.test('encodeImage: path and Buffer slice give the same embeddings as a fresh copy', async (t) => {
  const model = await loadModel({ model: tiny.model, mmproj: tiny.mmproj, threads: 1 });
  t.teardown(() => model.close());
  for (const f of ['jpeg-lossless-sv1.dcm', 'rle.dcm', 'jpeg-baseline.dcm', 'jpeg-extended12.dcm', 'jpegls-near.dcm', 'j2k-lossy.dcm', 'deflate.dcm', 'evrbe.dcm']) {
    const file = path.join(fixtures, f);
    const a = await model.encodeImage(file);
    const b = await model.encodeImage(sliceOfLarger(file, 1));
    const c = await model.encodeImage(new Uint8Array(readFileSync(file)));
    t.ok(a.tokens > 0 && a.data.length === a.tokens * a.dim, `${f}: embeddings`);
    t.ok(Buffer.from(a.data.buffer).equals(Buffer.from(c.data.buffer)), `${f}: path == copy`);
    t.ok(Buffer.from(b.data.buffer).equals(Buffer.from(c.data.buffer)), `${f}: slice == copy`);
  }
});
