// The abort rule, through the public API: an abort raised before a call's
// promise settles wins. The promise rejects with the signal's reason, no onToken
// call (or stream chunk) follows the abort, and the model is idle for the next
// call. The models are tiny, so the native thread usually finishes the whole
// generation before JS handles the first token: each case is repeated to catch
// the race where native ran ahead.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadModel, type GenerateResult } from '../lib/index.js';
import { quantize } from '../lib/runtime/tensors.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';
import { writeTinyMmproj } from './helpers/tiny-vision.js';
import { imageBytes } from './helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-abort-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const text = path.join(dir, 'tiny.gguf');
const mmproj = path.join(dir, 'mmproj.gguf');
await writeTinyLlama(text, 'f32');
await writeTinyMmproj(mmproj, 'f32', { quantize });
const image = await imageBytes(80, 72, 5);

const model = await loadModel({ model: text, mmproj, threads: 1 });
t.teardown(() => model.close());
const prompt = 'Findings: the heart is enlarged.';
// ignoreEos: every run has tokens after the 5th to (wrongly) deliver.
const long = { temperature: 0, maxTokens: 40, ignoreEos: true } as const;
const ROUNDS = 25;

/** Runs `call` with a signal that `onToken` fires at the `at`-th token; checks the rule. */
async function abortAtToken(
  t: Test,
  name: string,
  call: (signal: AbortSignal, onToken: () => void) => Promise<GenerateResult>,
  at = 5,
): Promise<void> {
  let broken = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const ac = new AbortController();
    const reason = new Error(`stop ${round}`);
    let seen = 0;
    let afterAbort = 0;
    const onToken = (): void => {
      if (ac.signal.aborted) afterAbort++;
      if (++seen === at) ac.abort(reason);
    };
    const outcome = await call(ac.signal, onToken).then(
      (r) => ({ ok: true as const, r }),
      (e: unknown) => ({ ok: false as const, e }),
    );
    if (outcome.ok || outcome.e !== reason || afterAbort > 0 || seen !== at) {
      broken++;
      t.fail(`${name} round ${round}: ${outcome.ok ? `resolved (${outcome.r.finishReason}, ${outcome.r.tokens.length} tokens)` : `rejected with ${String(outcome.e)}`}, ${afterAbort} onToken calls after the abort, ${seen} in all`);
    }
  }
  t.equal(broken, 0, `${name}: ${ROUNDS} of ${ROUNDS} aborted runs rejected with the reason and no token after it`);
  // The model is idle and usable straight after.
  const r = await model.generate({ prompt, raw: true, temperature: 0, maxTokens: 3 });
  t.equal(r.tokens.length, 3, `${name}: the next call runs`);
}

t.test('generate: an abort from onToken wins even when native already finished', async (t) => {
  // Without an abort, the same call runs to maxTokens: the abort is what ends it.
  const full = await model.generate({ prompt, raw: true, ...long });
  t.equal(full.tokens.length, 40);
  await abortAtToken(t, 'generate', (signal, onToken) => model.generate({ prompt, raw: true, ...long, signal, onToken }));
});

t.test('report, ask and differential follow the same rule', async (t) => {
  const img = await model.encodeImage(image);
  await abortAtToken(t, 'report', (signal, onToken) => model.report(img, { ...long, signal, onToken }));
  await abortAtToken(t, 'ask', (signal, onToken) => model.ask(img, 'Is the heart enlarged?', { ...long, signal, onToken }));
  await abortAtToken(t, 'differential', (signal, onToken) => model.differential(image, { ...long, signal, onToken }));
});

t.test('chat send: an aborted turn rejects, is not added, and the next turn works', async (t) => {
  const chat = model.chat(image);
  await abortAtToken(t, 'chat send', (signal, onToken) => chat.send('Is the heart enlarged?', { ...long, signal, onToken }));
  t.equal(chat.messages.length, 0, 'no aborted turn in the history');
  const r = await chat.send('Any effusion?', { temperature: 0, maxTokens: 4 });
  t.equal(r.tokens.length > 0, true);
  t.equal(chat.messages.length, 2);
});

t.test('a throwing onToken rejects with its error and gets no later call', async (t) => {
  let broken = 0;
  for (let round = 0; round < ROUNDS; round++) {
    let calls = 0;
    const boom = new Error('callback failed');
    const error = await model.generate({ prompt, raw: true, ...long, onToken: () => { if (++calls === 2) throw boom; } }).then(() => undefined, (e: unknown) => e);
    if (error !== boom || calls !== 2) {
      broken++;
      t.fail(`round ${round}: ${String(error)}, onToken called ${calls} times`);
    }
  }
  t.equal(broken, 0, `${ROUNDS} rounds`);
});

t.test('stream: no chunk is yielded after the abort, and the iterator rejects with the reason', async (t) => {
  let broken = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const ac = new AbortController();
    const reason = new Error('stop streaming');
    let chunks = 0;
    let afterAbort = 0;
    let error: unknown;
    try {
      for await (const _ of model.stream({ prompt, raw: true, ...long, signal: ac.signal })) {
        if (ac.signal.aborted) afterAbort++;
        if (++chunks === 3) ac.abort(reason);
      }
    } catch (err) {
      error = err;
    }
    if (error !== reason || afterAbort > 0) {
      broken++;
      t.fail(`round ${round}: ${error === undefined ? 'completed' : String(error)}, ${afterAbort} chunks after the abort`);
    }
  }
  t.equal(broken, 0, `${ROUNDS} aborted streams`);
});

/**
 * Starts `call` and aborts it at a moment spread over 0 to 2x its usual
 * duration, so the abort lands at every stage: before the native work, during
 * it, after native finished with its result still in flight, and after the
 * promise settled. Whatever the moment, the rule decides the outcome.
 */
async function abortAtEveryMoment(t: Test, name: string, n: number, call: (signal: AbortSignal) => Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) await call(new AbortController().signal);
  const usual = (performance.now() - t0) / 5;
  let aborts = 0;
  let completions = 0;
  let broken = 0;
  for (let round = 0; round < n; round++) {
    const ac = new AbortController();
    const reason = new Error(`stop ${round}`);
    let settled = false;
    let abortedFirst = false;
    const start = performance.now();
    const at = start + (usual * 2 * round) / n;
    const p = call(ac.signal).finally(() => (settled = true));
    // Each turn of the event loop lets native events in; abort on the first turn past `at`.
    const spin = (): void => {
      if (performance.now() < at) return void setImmediate(spin);
      abortedFirst = !settled;
      ac.abort(reason);
    };
    spin();
    const outcome = await p.then(
      () => 'resolved',
      (e: unknown) => (e === reason ? 'rejected with the reason' : `rejected with ${String(e)}`),
    );
    while (!ac.signal.aborted) await new Promise((r) => setImmediate(r));
    const want = abortedFirst ? 'rejected with the reason' : 'resolved';
    if (abortedFirst) aborts++;
    else completions++;
    if (outcome !== want) {
      broken++;
      t.fail(`${name} round ${round}: ${abortedFirst ? 'aborted before settling' : 'settled before the abort'} but ${outcome}`);
    }
  }
  t.equal(broken, 0, `${name}: ${aborts} rounds aborted before settling, ${completions} settled first (usual duration ${usual.toFixed(2)} ms)`);
  t.ok(aborts > 0 && completions > 0, `${name}: the aborts landed on both sides of settling`);
}

t.test('generate: an abort at any moment before settling wins', (t) =>
  abortAtEveryMoment(t, 'generate', 80, (signal) => model.generate({ prompt, raw: true, temperature: 0, maxTokens: 8, signal })),
);

t.test('encodeImage: an abort at any moment before settling wins', async (t) => {
  // Preprocessed pixels skip decoding, so most of the time is the native encode.
  const vision = model.info.vision!;
  const pixels = new Float32Array(vision.channels * vision.imageSize * vision.imageSize).map((_, i) => Math.sin(i / 7));
  await abortAtEveryMoment(t, 'encodeImage', 80, (signal) => model.encodeImage(pixels, { signal }));
  await abortAtEveryMoment(t, 'encodeImage of a file', 80, (signal) => model.encodeImage(image, { signal }));
});

// close() is an abort too: called before a call's promise settles, it wins even
// when the native thread already finished the generation (here it has: JS is
// held up until it must have, before close runs).
t.test('close() before the result reaches JS rejects the running call', async (t) => {
  for (const withImage of [false, true]) {
    const m = await loadModel({ model: text, mmproj, threads: 1 });
    // An encoded image, so the generation is handed to the engine at once.
    const encoded = withImage ? await m.encodeImage(image) : undefined;
    const run = encoded ? m.report(encoded, { temperature: 0, maxTokens: 3 }) : m.generate({ prompt, temperature: 0, maxTokens: 3 });
    const until = performance.now() + 400;
    while (performance.now() < until); // the engine thread finishes; its events wait for this one
    await m.close();
    await t.rejects(run, { code: 'ERR_ABORTED', message: /model was closed/ }, `${withImage ? 'report' : 'generate'} rejects`);
  }
});
