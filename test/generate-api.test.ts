// The generation API's contract on the tiny model: sampling, streaming, stop
// strings, logprobs, abort, queueing, close() during generation, cache reuse,
// and clear errors for bad options.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CxrError, loadModel, type Model } from '../lib/index.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-api-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'tiny.gguf');
await writeTinyLlama(file, 'f32');
const prompt = 'Findings: the heart is enlarged.';

async function withModel(t: Test, fn: (m: Model) => Promise<void>, opts: { contextSize?: number; parallel?: number } = {}): Promise<void> {
  const m = await loadModel({ model: file, threads: 2, ...opts });
  t.teardown(() => m.close());
  await fn(m);
}

t.test('the same seed gives the same text; sampling differs across seeds', (t) =>
  withModel(t, async (m) => {
    const opts = { prompt, raw: true, temperature: 1.0, topP: 1, maxTokens: 24 };
    const a = await m.generate({ ...opts, seed: 7 });
    const b = await m.generate({ ...opts, seed: 7 });
    t.same(a.tokens, b.tokens, 'seed 7 twice');
    t.equal(a.seed, 7n);
    const others = await Promise.all([1, 2, 3].map((seed) => m.generate({ ...opts, seed })));
    t.ok(others.some((o) => o.tokens.join() !== a.tokens.join()), 'another seed gives another sequence');
    const greedy1 = await m.generate({ prompt, raw: true, temperature: 0, maxTokens: 16, seed: 1 });
    const greedy2 = await m.generate({ prompt, raw: true, temperature: 0, maxTokens: 16, seed: 2 });
    t.same(greedy1.tokens, greedy2.tokens, 'temperature 0 ignores the seed');
  }),
);

t.test('onToken and stream() deliver exactly the final text', (t) =>
  withModel(t, async (m) => {
    const pieces: string[] = [];
    const r = await m.generate({ prompt, raw: true, temperature: 0, maxTokens: 20, onToken: (s) => pieces.push(s) });
    t.equal(pieces.join(''), r.text);
    t.ok(pieces.length > 1, 'several chunks');
    const chunks: string[] = [];
    const it = m.stream({ prompt, raw: true, temperature: 0, maxTokens: 20 });
    for await (const c of it) chunks.push(c);
    t.equal(chunks.join(''), r.text, 'stream text equals generate text');
  }),
);

t.test('breaking out of stream() stops generation and frees the model for the next call', (t) =>
  withModel(t, async (m) => {
    let n = 0;
    for await (const _ of m.stream({ prompt, raw: true, temperature: 0, maxTokens: 200 })) {
      if (++n === 3) break;
    }
    t.equal(n, 3);
    const r = await m.generate({ prompt, raw: true, temperature: 0, maxTokens: 4 });
    t.equal(r.tokens.length, 4, 'model still usable');
  }),
);

t.test('stop strings end generation and are not included', (t) =>
  withModel(t, async (m) => {
    const full = await m.generate({ prompt, raw: true, temperature: 0, maxTokens: 32 });
    // Pick a stop string from the middle of the greedy text.
    const at = Math.floor(full.text.length / 2);
    const stop = full.text.slice(at, at + 3);
    t.ok(stop.length === 3, `stop string ${JSON.stringify(stop)}`);
    const streamed: string[] = [];
    const r = await m.generate({ prompt, raw: true, temperature: 0, maxTokens: 32, stop: [stop], onToken: (s) => streamed.push(s) });
    t.equal(r.finishReason, 'stop');
    t.equal(r.text, full.text.slice(0, full.text.indexOf(stop)));
    t.equal(streamed.join(''), r.text, 'the stop string was never streamed');
  }),
);

t.test('logprobs: the chosen token and n alternatives, consistent with greedy', (t) =>
  withModel(t, async (m) => {
    const r = await m.generate({ prompt, raw: true, temperature: 0, maxTokens: 8, logprobs: 3 });
    t.equal(r.logprobs?.length, r.tokens.length);
    for (const [i, lp] of (r.logprobs ?? []).entries()) {
      t.equal(lp.token, r.tokens[i]);
      t.equal(lp.top.length, 3);
      t.equal(lp.top[0]!.token, lp.token, 'greedy picks the most likely token');
      t.ok(lp.logprob <= 0 && Math.abs(lp.logprob - lp.top[0]!.logprob) < 1e-6);
      t.ok(lp.top[0]!.logprob >= lp.top[1]!.logprob && lp.top[1]!.logprob >= lp.top[2]!.logprob, 'sorted');
    }
    const none = await m.generate({ prompt, raw: true, temperature: 0, maxTokens: 2 });
    t.equal(none.logprobs, undefined);
  }),
);

t.test('an AbortSignal stops generation with its reason; the model stays usable', (t) =>
  withModel(t, async (m) => {
    const ac = new AbortController();
    const reason = new Error('user pressed stop');
    let seen = 0;
    const p = m.generate({
      prompt, raw: true, temperature: 0, maxTokens: 200, signal: ac.signal,
      onToken: () => { if (++seen === 2) ac.abort(reason); },
    });
    await t.rejects(p, reason);
    t.ok(seen >= 2 && seen < 200, `stopped after ${seen} tokens`);
    await t.rejects(m.generate({ prompt, raw: true, signal: AbortSignal.abort(reason) }), reason, 'already aborted');
    const r = await m.generate({ prompt, raw: true, temperature: 0, maxTokens: 3 });
    t.equal(r.tokens.length, 3);
  }),
);

t.test('with parallel: 1, concurrent generate() calls run one at a time, in order', (t) =>
  withModel(
    t,
    async (m) => {
      const order: number[] = [];
      const calls = [0, 1, 2].map((i) =>
        m.generate({ prompt, raw: true, temperature: 0, maxTokens: 5, onToken: () => order.push(i) }).then((r) => (order.push(-1 - i), r)),
      );
      const results = await Promise.all(calls);
      t.same(results[0]!.tokens, results[2]!.tokens, 'same greedy output');
      // All tokens of call 0 come before any token of call 1, and so on.
      const firstOf = (i: number) => order.indexOf(i);
      const lastOf = (i: number) => order.lastIndexOf(i);
      t.ok(lastOf(0) < firstOf(1) && lastOf(1) < firstOf(2), `interleaving: ${order.join(',')}`);
    },
    { parallel: 1 },
  ),
);

t.test('by default, concurrent generate() calls run together and each gets its own tokens', (t) =>
  withModel(t, async (m) => {
    t.equal(m.info.runtime.parallel, 4);
    const short = { prompt, raw: true, temperature: 0, maxTokens: 8, ignoreEos: true } as const;
    const alone = await m.generate(short);
    // Two short calls start while a long one is generating: run together, they end first.
    const ended: string[] = [];
    const texts = ['', ''];
    let shorts: Promise<unknown>[] = [];
    const long = m
      .generate({
        prompt: 'The lungs are clear.',
        raw: true,
        temperature: 0,
        maxTokens: 240,
        ignoreEos: true,
        onToken: () => {
          if (shorts.length > 0) return;
          shorts = [0, 1].map((i) =>
            m.generate({ ...short, onToken: (text) => void (texts[i] += text) }).then((r) => {
              ended.push(`short ${i}`);
              t.same(r.tokens, alone.tokens, `short call ${i}: the tokens of the call made alone`);
              t.equal(texts[i], r.text, `short call ${i}: its onToken saw its own text`);
            }),
          );
        },
      })
      .then((r) => {
        ended.push('long');
        t.equal(r.tokens.length, 240);
      });
    await long;
    await Promise.all(shorts);
    // Both short calls end before the long one. Between the two, the order is not
    // theirs to keep: they can finish in the same step, or one may find the cache
    // the call made alone left behind and read less of its prompt.
    t.same([...ended.slice(0, 2)].sort(), ['short 0', 'short 1'], 'the short calls end first');
    t.equal(ended[2], 'long', 'the long call ends last');
  }),
);

t.test('close() during a generation aborts it safely; waiting and later calls fail clearly', async (t) => {
  const m = await loadModel({ model: file, threads: 2, parallel: 1 });
  let closing: Promise<void> | undefined;
  const p = m.generate({ prompt, raw: true, temperature: 0, maxTokens: 200, onToken: () => void (closing ??= m.close()) });
  const q = m.generate({ prompt, raw: true, temperature: 0, maxTokens: 5 });
  const [a, b] = await Promise.allSettled([p, q]);
  await closing;
  t.equal(a.status, 'rejected');
  t.equal(((a as PromiseRejectedResult).reason as CxrError).code, 'ERR_ABORTED', 'running call');
  t.equal(((b as PromiseRejectedResult).reason as CxrError).code, 'ERR_MODEL_CLOSED', 'queued call');
  t.throws(() => m.tokenize('x'), { code: 'ERR_MODEL_CLOSED', message: 'The model is closed' });
  await m.close(); // twice is fine
});

t.test('a follow-up that extends the previous prompt reuses the KV cache', (t) =>
  withModel(t, async (m) => {
    const first = await m.generate({ prompt, raw: true, temperature: 0, maxTokens: 6 });
    const n1 = first.timings.prefillTokens;
    t.equal(n1, m.tokenize(prompt, { bos: true }).length);
    const followIds = m.tokenize(prompt + ' Impression: cardiomegaly.', { bos: true });
    const shared = followIds.findIndex((id, i) => id !== m.tokenize(prompt, { bos: true })[i]);
    const second = await m.generate({ prompt: prompt + ' Impression: cardiomegaly.', raw: true, temperature: 0, maxTokens: 6 });
    t.equal(second.timings.prefillTokens, followIds.length - shared, 'only the new positions were computed');
    // The cached result must equal a cold run.
    const cold = await loadModel({ model: file, threads: 2 });
    t.teardown(() => cold.close());
    const ref = await cold.generate({ prompt: prompt + ' Impression: cardiomegaly.', raw: true, temperature: 0, maxTokens: 6 });
    t.same(second.tokens, ref.tokens);
  }),
);

t.test('a prompt longer than the context is a clear error', (t) =>
  withModel(
    t,
    async (m) => {
      t.equal(m.info.runtime.contextSize, 16);
      await t.rejects(m.generate({ prompt: 'word '.repeat(40), raw: true }), { code: 'ERR_CONTEXT_FULL', message: /context holds 16/ });
      const r = await m.generate({ prompt: 'hi', raw: true, temperature: 0, maxTokens: 100 });
      t.equal(r.finishReason, 'length', 'generation stops when the context is full');
      t.ok(r.tokens.length <= 16);
    },
    { contextSize: 16 },
  ),
);

t.test('bad options are rejected with messages that name the option', (t) =>
  withModel(t, async (m) => {
    await t.rejects(m.generate({ prompt, temperature: -1 }), { code: 'ERR_INVALID_ARG', message: 'Expected a number in [0, 100] for temperature but received -1' });
    await t.rejects(m.generate({ prompt, maxTokens: 1.5 }), { message: /for maxTokens but received 1.5/ });
    await t.rejects(m.generate({ prompt, seed: -3 }), { message: /for seed/ });
    await t.rejects(m.generate({} as never), { message: /for prompt/ });
    t.throws(() => m.tokenize(5 as never), { message: /for text/ });
    t.throws(() => m.detokenize([1, 2.5]), { message: /for ids/ });
    t.throws(() => m.detokenize([99999]), { code: 'ERR_INVALID_ARG', message: 'Expected a token id in [0, 999] for ids[0] but received 99999' });
    await t.rejects(loadModel({ model: file, threads: -1 }), { message: /for threads/ });
    await t.rejects(loadModel({ model: file, kvCacheType: 'q8' as never }), { message: /one of f16, f32 for kvCacheType/ });
  }),
);

t.test('token ids as the prompt, and ignoreEos', (t) =>
  withModel(t, async (m) => {
    const ids = m.tokenize(prompt, { bos: true });
    const a = await m.generate({ tokens: ids, temperature: 0, maxTokens: 8 });
    const b = await m.generate({ prompt, raw: true, temperature: 0, maxTokens: 8 });
    t.same(a.tokens, b.tokens, 'tokens = the raw prompt ids');
    t.same(m.promptTokens({ tokens: ids }), ids);
    await t.rejects(m.generate({ tokens: ids, prompt }), { message: /for tokens/ });
    await t.rejects(m.generate({ tokens: [] }), { message: /non-empty array/ });
  }),
);

t.test('ignoreEos decodes past the end-of-sequence token', async (t) => {
  // A copy of the tiny model whose EOS id is the token greedy decoding picks
  // first, so a normal run stops at once and an ignoreEos run does not.
  const probe = await loadModel({ model: file, threads: 1 });
  const ids = probe.tokenize(prompt, { bos: true });
  const first = (await probe.generate({ tokens: ids, temperature: 0, maxTokens: 1 })).tokens[0]!;
  await probe.close();
  const { GgufWriter } = await import('../lib/convert/gguf-writer.js');
  const { addLlamaToGguf, recipes } = await import('../lib/convert/llama-gguf.js');
  const { TINY_LLAMA_DIMS, tinyLlamaTensors } = await import('./helpers/prng-weights.js');
  const { loadTinyVocab } = await import('./helpers/tiny-llama.js');
  const vocab = { ...(await loadTinyVocab()), eosId: first };
  const hp = { ...TINY_LLAMA_DIMS, vocabSize: vocab.pieces.length };
  const eosFile = path.join(dir, 'eos.gguf');
  const w = new GgufWriter();
  addLlamaToGguf(w, hp, vocab, tinyLlamaTensors(hp), { ...recipes.f32, quantize: () => new Uint8Array(0) });
  await w.write(eosFile);
  const m = await loadModel({ model: eosFile, threads: 1 });
  t.teardown(() => m.close());
  const stopped = await m.generate({ tokens: ids, temperature: 0, maxTokens: 8 });
  t.same(stopped.tokens, [first], 'stops on EOS');
  t.equal(stopped.finishReason, 'stop');
  const kept = await m.generate({ tokens: ids, temperature: 0, maxTokens: 8, ignoreEos: true });
  t.equal(kept.tokens.length, 8, 'ignoreEos decodes all 8 tokens');
  t.equal(kept.tokens[0], first);
  t.equal(kept.finishReason, 'length');
});

t.test('tokenize: BOS and control tokens only when asked', (t) =>
  withModel(t, async (m) => {
    const { bos, eos } = m.info.tokenizer;
    const plain = m.tokenize('<s>hi</s>');
    t.notOk(plain.includes(bos) || plain.includes(eos), 'literal text without special');
    const special = m.tokenize('<s>hi</s>', { special: true });
    t.equal(special[0], bos);
    t.equal(special[special.length - 1], eos);
    t.same(m.tokenize('hi', { bos: true }), [bos, ...m.tokenize('hi')]);
    t.equal(m.detokenize(m.tokenize('No pleural effusion.')), 'No pleural effusion.');
    t.equal(m.tokenPiece(bos), '<s>');
  }),
);

t.test('model.info describes the file', (t) =>
  withModel(t, async (m) => {
    t.equal(m.info.architecture, 'llama');
    t.equal(m.info.hparams.headCountKv, 2);
    t.equal(m.info.tensorTypes.f32, m.info.tensors.length);
    t.ok(m.info.fileSize > 0);
    t.match(m.info.metadata['tokenizer.ggml.tokens'], { type: 'array<string>', length: 1000 });
  }),
);
