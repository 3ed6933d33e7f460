// Lifecycle: loading, using and closing a model many times, and encoding many
// images on one model, do not grow the process's resident memory beyond
// noise. RSS is sampled after a warm-up (allocator pools, JIT, first mappings)
// and again at the end, with a GC before each sample.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { loadModel } from '../lib/index.js';
import { quantize } from '../lib/runtime/tensors.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';
import { writeTinyMmproj } from './helpers/tiny-vision.js';
import { imageBytes } from './helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-life-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const text = path.join(dir, 'tiny.gguf');
const mmproj = path.join(dir, 'mmproj.gguf');
await writeTinyLlama(text, 'f32');
await writeTinyMmproj(mmproj, 'f32', { quantize });
const png = await imageBytes(96, 80, 3);

// A GC on demand, without a node flag for the whole test run.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const MiB = 1024 * 1024;

/** RSS after letting finalizers run (native objects are freed when JS drops them). */
async function rss(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().rss;
}

t.test('100 loadModel / generate / close cycles', async (t) => {
  const cycle = async (i: number): Promise<void> => {
    const m = await loadModel({ model: text, mmproj, threads: 1 });
    await m.generate({ prompt: `cycle ${i}`, raw: true, maxTokens: 4, temperature: 0 });
    await m.close();
  };
  for (let i = 0; i < 10; i++) await cycle(i); // warm-up
  const before = await rss();
  for (let i = 0; i < 100; i++) await cycle(i);
  const after = await rss();
  const growth = (after - before) / MiB;
  // Each model maps ~0.6 MiB of weights and a KV cache: a leak of one model per
  // cycle would add well over 50 MiB. The bound leaves room for allocator noise.
  t.ok(growth < 24, `RSS ${(before / MiB).toFixed(1)} -> ${(after / MiB).toFixed(1)} MiB over 100 cycles (${growth.toFixed(1)} MiB)`);
});

t.test('1000 encodeImage calls on one model', async (t) => {
  const m = await loadModel({ model: text, mmproj, threads: 1 });
  t.teardown(() => m.close());
  for (let i = 0; i < 50; i++) await m.encodeImage(png); // warm-up
  const before = await rss();
  for (let i = 0; i < 1000; i++) await m.encodeImage(png);
  const after = await rss();
  const growth = (after - before) / MiB;
  // Each result is a handle on 16x64 floats in the engine, and its decoded
  // image is dropped once preprocessed: 1000 kept would be several MiB of
  // pixels; the decoders' buffers dominate a leak.
  t.ok(growth < 16, `RSS ${(before / MiB).toFixed(1)} -> ${(after / MiB).toFixed(1)} MiB over 1000 encodes (${growth.toFixed(1)} MiB)`);
  // The handles were collected, and the engine let go of their embeddings.
  t.ok(m.encodedImages().count < 50, `${m.encodedImages().count} of 1000 encoded images still held by the engine`);
});
