// Async work never blocks the event loop, and no native worker reads JS memory
// that a script can detach or change while the worker runs: through the public
// API (model.logits, quantizeAsync, encodeImage, generate with an encoded image).
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadModel, quantize, quantizeAsync } from '../lib/index.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';
import { writeTinyMmproj } from './helpers/tiny-vision.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-async-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const text = path.join(dir, 'tiny.gguf');
const mmproj = path.join(dir, 'mmproj.gguf');
await writeTinyLlama(text, 'f32');
await writeTinyMmproj(mmproj, 'f32', { quantize });
const model = await loadModel({ model: text, mmproj, threads: 1 });
t.teardown(() => model.close());

/** Counts turns of the event loop until `p` settles. */
async function turnsWhile<T>(p: Promise<T>): Promise<{ value: T; turns: number }> {
  let turns = 0;
  let done = false;
  const spin = (): void => {
    if (done) return;
    turns++;
    setImmediate(spin);
  };
  setImmediate(spin);
  try {
    return { value: await p, turns };
  } finally {
    done = true;
  }
}

t.test('model.logits runs off the JS thread: the event loop turns while it works', async (t) => {
  const ids = Array.from({ length: 240 }, (_, i) => 3 + ((i * 37) % 900));
  const { value, turns } = await turnsWhile(model.logits(ids));
  t.equal(value.length, ids.length * model.info.hparams.vocabSize);
  // A synchronous evaluation (as before) settles within microtasks: 0 turns.
  // The native thread's result comes back through the event loop: at least 1.
  t.ok(turns >= 1, `${turns} event-loop turns during the evaluation`);
  // The same numbers before and after a generation.
  const a = await model.logits(ids.slice(0, 8));
  const g = await model.generate({ tokens: ids.slice(0, 8), maxTokens: 2, temperature: 0 });
  const b = await model.logits(ids.slice(0, 8));
  t.same(Array.from(a), Array.from(b), 'logits before and after a generation agree');
  t.equal(g.tokens.length, 2);
  await t.rejects(model.logits([]), { code: 'ERR_INVALID_ARG', message: /for ids/ });
});

t.test('quantizeAsync copies its input: detaching or overwriting it meanwhile changes nothing', async (t) => {
  const rows = 2048;
  const cols = 256;
  const make = (): Float32Array => Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.013) * 3);
  const want = quantize('q8_0', make(), rows, cols);

  const moved = make();
  const p1 = quantizeAsync('q8_0', moved, rows, cols);
  // Transfer the buffer away (as postMessage to a worker would) and scribble on it.
  const taken = structuredClone(moved.buffer, { transfer: [moved.buffer] });
  new Float32Array(taken).fill(Number.NaN);
  t.equal(moved.length, 0, 'the input array is detached');
  t.same(Buffer.from(await p1), Buffer.from(want), 'result of the values at call time');

  const changed = make();
  const p2 = quantizeAsync('q8_0', changed, rows, cols);
  changed.fill(1e30);
  t.same(Buffer.from(await p2), Buffer.from(want), 'writes after the call do not reach the worker');
});

t.test('encodeImage takes the pixels as they are at the call, even when it waits in the queue', async (t) => {
  const v = model.info.vision!;
  const make = (): Float32Array => Float32Array.from({ length: v.channels * v.imageSize * v.imageSize }, (_, i) => Math.cos(i / 11));
  const want = await model.encodeImage(make());
  const px = make();
  const busy = model.generate({ prompt: 'x', raw: true, maxTokens: 8, temperature: 0 }); // so the encode waits its turn
  const p = model.encodeImage(px);
  const taken = structuredClone(px.buffer, { transfer: [px.buffer] });
  new Float32Array(taken).fill(5);
  const got = await p;
  t.same(Array.from(got.data), Array.from(want.data), 'encoded the pixels as they were at the call');
  await busy;
});
