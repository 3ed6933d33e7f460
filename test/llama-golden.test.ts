// The engine's LLaMA forward pass against the independent PyTorch reference
// (tools/reference/tiny_llama.py): logits for a fixed prompt and 32 greedy tokens.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadModel } from '../lib/index.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';

interface Golden {
  prompt: string;
  prompt_ids: number[];
  logits: number[][];
  logits_max_abs: number;
  greedy_ids: number[];
  greedy_ids_stop_at_eos: number[];
}
const golden = JSON.parse(readFileSync(new URL('./fixtures/tiny-llama/golden.json', import.meta.url), 'utf8')) as Golden;

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-golden-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'tiny-f32.gguf');
await writeTinyLlama(file, 'f32');

t.test('logits match the reference within 1e-4 x max|logit|', async (t) => {
  const model = await loadModel({ model: file, kvCacheType: 'f32', threads: 2 });
  t.teardown(() => model.close());
  const vocab = model.info.hparams.vocabSize;
  t.equal(vocab, golden.logits[0]!.length, 'vocabulary size');
  const logits = await model.logits(golden.prompt_ids);
  t.equal(logits.length, golden.prompt_ids.length * vocab);
  const tol = 1e-4 * golden.logits_max_abs;
  let worst = 0;
  for (let p = 0; p < golden.logits.length; p++) {
    const ref = golden.logits[p]!;
    for (let i = 0; i < vocab; i++) worst = Math.max(worst, Math.abs(logits[p * vocab + i]! - ref[i]!));
  }
  t.ok(worst <= tol, `max |diff| ${worst.toExponential(3)} <= ${tol.toExponential(3)}`);
});

t.test("every position's logits pick the reference's next greedy token", async (t) => {
  // Prompt plus the reference's 32 greedy tokens is 55 positions: more than one
  // block of the engine's all-positions logits (32 rows), so the rows past the
  // first block are checked too.
  const model = await loadModel({ model: file, kvCacheType: 'f32', threads: 2 });
  t.teardown(() => model.close());
  const vocab = model.info.hparams.vocabSize;
  const ids = [...golden.prompt_ids, ...golden.greedy_ids];
  t.ok(ids.length > 33, `${ids.length} positions`);
  const logits = await model.logits(ids.slice(0, -1));
  t.equal(logits.length, (ids.length - 1) * vocab);
  const argmax = (p: number): number => {
    let best = 0;
    for (let i = 1; i < vocab; i++) if (logits[p * vocab + i]! > logits[p * vocab + best]!) best = i;
    return best;
  };
  const picked = golden.greedy_ids.map((_, k) => argmax(golden.prompt_ids.length - 1 + k));
  t.same(picked, golden.greedy_ids);
});

t.test('the tokenizer gives the reference prompt ids', async (t) => {
  const model = await loadModel({ model: file, threads: 1 });
  t.teardown(() => model.close());
  t.same(model.tokenize(golden.prompt, { bos: true }), golden.prompt_ids);
  t.same(model.promptTokens({ prompt: golden.prompt, raw: true }), golden.prompt_ids);
});

for (const kvCacheType of ['f32', 'f16'] as const) {
  t.test(`greedy generation of 32 tokens matches exactly (KV cache ${kvCacheType})`, async (t) => {
    const model = await loadModel({ model: file, kvCacheType, threads: 2 });
    t.teardown(() => model.close());
    const r = await model.generate({ prompt: golden.prompt, raw: true, temperature: 0, maxTokens: 32 });
    t.same(r.tokens, golden.greedy_ids_stop_at_eos);
    t.equal(r.finishReason, golden.greedy_ids_stop_at_eos.length < 32 ? 'stop' : 'length');
    t.equal(r.timings.prefillTokens, golden.prompt_ids.length);
    t.equal(r.timings.decodeTokens, r.tokens.length);
    t.equal(r.text, model.detokenize(r.tokens.filter((id) => id !== model.info.tokenizer.eos)));
  });
}
