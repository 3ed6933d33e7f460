// EncodedImage: a handle on embeddings kept in the engine. Checked through the
// public API: the native decode-to-tower path equals the JS preprocessing path
// bit for bit (whatever view the bytes come in), `.data` copies on demand, and
// the handle's lifetime is safe: garbage collection, dispose() and close() free
// it, a handle from a closed model is a clear error, and freeing one while a
// generation reads it changes nothing in that generation.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import sharp from 'sharp';
import { EncodedImage, loadModel, preprocessImage } from '../lib/index.js';
import { quantize } from '../lib/runtime/tensors.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';
import { writeTinyMmproj } from './helpers/tiny-vision.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-encoded-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const text = path.join(dir, 'tiny.gguf');
const mmproj = path.join(dir, 'mmproj.gguf');
await writeTinyLlama(text, 'f32');
await writeTinyMmproj(mmproj, 'f32', { quantize });

async function radiograph(name: string, w: number, h: number, channels: 1 | 3, seed: number): Promise<string> {
  const px = Buffer.alloc(w * h * channels);
  for (let i = 0; i < px.length; i++) px[i] = Math.round(128 + 100 * Math.sin(i / (7 + seed)) * Math.cos(i / (31 + seed)));
  const file = path.join(dir, name);
  await sharp(px, { raw: { width: w, height: h, channels } }).png().toFile(file);
  return file;
}
const gray = await radiograph('gray.png', 96, 80, 1, 0);
const rgb = await radiograph('rgb.png', 70, 110, 3, 3);
const other = await radiograph('other.png', 90, 90, 1, 5);

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
async function collect(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  // Freed memory is handed back on the engine thread, at its next wake-up.
  await new Promise((r) => setTimeout(r, 50));
}

const greedy = { temperature: 0, maxTokens: 8 } as const;

t.test('the native path equals the JS preprocessing path, for every view of the bytes', async (t) => {
  const m = await loadModel({ model: text, mmproj, threads: 2 });
  t.teardown(() => m.close());
  const vision = m.info.vision!;
  for (const file of [gray, rgb]) {
    const fromPath = await m.encodeImage(file);
    t.ok(fromPath instanceof EncodedImage, 'an EncodedImage');
    // The old path: preprocessing in JS, pixels handed to the engine.
    const pixels = await preprocessImage(file, { size: vision.imageSize, mean: vision.mean, std: vision.std });
    const viaJs = await m.encodeImage(pixels);
    t.same(fromPath.data, viaJs.data, `${path.basename(file)}: .data equals the embeddings of the JS-preprocessed pixels`);
    // A Buffer that views the middle of a larger block (as Buffer pools and slices do).
    const bytes = readFileSync(file);
    const block = Buffer.alloc(bytes.length + 8191, 0xa5);
    bytes.copy(block, 4099);
    const view = block.subarray(4099, 4099 + bytes.length);
    t.not(view.byteOffset, 0);
    const fromView = await m.encodeImage(view);
    t.same(fromView.data, fromPath.data, `${path.basename(file)}: a Buffer view of a larger block = the path`);
    // Raw pixels that view a larger block, too.
    const raw = await sharp(file).raw().toBuffer({ resolveWithObject: true });
    const big = new Uint8Array(raw.data.length + 1000);
    big.set(raw.data, 333);
    const fromRaw = await m.encodeImage({ data: big.subarray(333, 333 + raw.data.length), width: raw.info.width, height: raw.info.height, channels: raw.info.channels as 1 | 3 });
    t.same(fromRaw.data, fromPath.data, `${path.basename(file)}: raw pixels in a view = the path`);
    t.same((await m.report(fromView, greedy)).tokens, (await m.report(file, greedy)).tokens, 'and the same report');
  }
  const a = await m.encodeImage(gray);
  const b = await m.encodeImage(other);
  t.notSame(a.data, b.data, 'different images, different embeddings');
});

t.test('.data is copied out on demand, once', async (t) => {
  const m = await loadModel({ model: text, mmproj, threads: 1 });
  t.teardown(() => m.close());
  const img = await m.encodeImage(gray);
  t.equal(img.tokens, 16);
  t.equal(img.dim, 64);
  t.ok(img.preprocessMs >= 0 && img.encodeMs >= 0);
  const d = img.data;
  t.equal(d.length, img.tokens * img.dim);
  t.equal(img.data, d, 'the same copy on the next read');
  t.ok(d.some((x) => x !== 0), 'not blank');
  // Mutating the copy does not reach the engine's embeddings.
  const before = await m.report(img, greedy);
  d.fill(0);
  t.same((await m.report(img, greedy)).tokens, before.tokens, 'generation reads the engine copy, not .data');
});

t.test('garbage collection and dispose() free the engine memory', async (t) => {
  const m = await loadModel({ model: text, mmproj, threads: 1 });
  t.teardown(() => m.close());
  await collect();
  const base = m.encodedImages().count;
  let held: EncodedImage[] = [];
  for (let i = 0; i < 20; i++) held.push(await m.encodeImage(gray));
  const s = m.encodedImages();
  t.equal(s.count, base + 20, 'one per live handle');
  t.equal(s.bytes, (base + 20) * 16 * 64 * 4, 'rows x dim floats each');
  held = [];
  await collect();
  t.equal(m.encodedImages().count, base, 'collected handles are freed');

  const img = await m.encodeImage(gray);
  const copy = img.data;
  t.equal(m.encodedImages().count, base + 1);
  img.dispose();
  t.ok(img.disposed);
  await collect();
  t.equal(m.encodedImages().count, base, 'dispose() frees at once');
  t.equal(img.data, copy, 'a copy read before stays readable');
  await t.rejects(m.report(img, greedy), { code: 'ERR_IMAGE_DISPOSED' });
  const unread = await m.encodeImage(gray);
  unread[Symbol.dispose]();
  t.throws(() => unread.data, { code: 'ERR_IMAGE_DISPOSED' });
});

t.test('a handle is freed only after the generation reading it ends', async (t) => {
  const m = await loadModel({ model: text, mmproj, threads: 1 });
  t.teardown(() => m.close());
  const expected = (await m.report(other, { temperature: 0, maxTokens: 24, ignoreEos: true })).tokens;
  let img: EncodedImage | undefined = await m.encodeImage(other);
  const run = m.report(img, { temperature: 0, maxTokens: 24, ignoreEos: true });
  // Let go of it in every way while the request is queued and running.
  img.dispose();
  img = undefined;
  await collect();
  t.same((await run).tokens, expected, 'the generation saw the embeddings intact');
  await collect();
  t.equal(m.encodedImages().count, 0, 'and they are freed once it is done');
});

t.test('a handle from a closed model is a clear error; one from another open model still works', async (t) => {
  const a = await loadModel({ model: text, mmproj, threads: 1 });
  const b = await loadModel({ model: text, mmproj, threads: 1 });
  t.teardown(() => b.close());
  const img = await a.encodeImage(gray);
  const mine = await b.report(gray, greedy);
  t.same((await b.report(img, greedy)).tokens, mine.tokens, "another model's image goes in through a copy, same report");
  const fresh = await a.encodeImage(other); // never read
  await a.close();
  t.ok(fresh.disposed && img.disposed, 'closing the model frees its images');
  t.throws(() => fresh.data, { code: 'ERR_MODEL_CLOSED', message: /closed/ });
  await t.rejects(b.report(fresh, greedy), { code: 'ERR_MODEL_CLOSED', message: /encoded this image is closed/ });
  await t.rejects(a.report(fresh, greedy), { code: 'ERR_MODEL_CLOSED' });
  // The copy the other model read stays, and still works there.
  t.same((await b.report(img, greedy)).tokens, mine.tokens, 'a copy read before the close stays usable');
  t.doesNotThrow(() => img.dispose(), 'dispose after close is harmless');
  // Closing while a generation reads an image: it is aborted, nothing is read after the free.
  const c = await loadModel({ model: text, mmproj, threads: 1 });
  const busy = await c.encodeImage(other);
  const run = c.report(busy, { temperature: 0, maxTokens: 200, ignoreEos: true });
  await c.close();
  await t.rejects(run, { code: /ERR_ABORTED|ERR_MODEL_CLOSED/ });
  t.throws(() => busy.data, { code: 'ERR_MODEL_CLOSED' });
});

t.test('an image cannot be made by hand', async (t) => {
  const m = await loadModel({ model: text, mmproj, threads: 1 });
  t.teardown(() => m.close());
  const fake = { data: new Float32Array(16 * 64), tokens: 16, dim: 64, encodeMs: 0, warnings: [], id: 1 };
  // Not an EncodedImage, so it is taken as an image input and rejected as one.
  await t.rejects(m.report(fake as never, greedy), { code: /ERR_INVALID_ARG|ERR_IMAGE/ });
});

t.test("the server's image cache keeps the handle and lets go of the decoded pixels", async (t) => {
  const { ImageCache } = await import('../lib/server/image-cache.js');
  const m = await loadModel({ model: text, mmproj, threads: 1 });
  t.teardown(() => m.close());
  const cache = new ImageCache(m, 4);
  const bytes = readFileSync(rgb);
  const first = await cache.get(bytes, 'rgb.png');
  t.equal(first.prepared.pixels.data.length, 70 * 110 * 3, 'decoded pixels until the encode');
  const a = await first.encode();
  t.equal(a.hit, false);
  const again = await cache.get(bytes, 'rgb.png');
  t.equal(again.prepared.pixels.data.length, 0, 'dropped once encoded');
  const b = await again.encode();
  t.equal(b.hit, true);
  t.equal(b.image, a.image, 'the same EncodedImage');
  t.same((await m.report(b.image, greedy)).tokens, (await m.report(rgb, greedy)).tokens, 'and it still reports like the file');
});
