// Many sequences at once, through the public API on the tiny CXR-LLaVA (F32
// weights): calls that run together give exactly the tokens they give one
// after another, the PyTorch goldens still match when batched, images are
// recognised by content, a request that does not fit waits, chat follow-ups
// keep their own cache, and the CLI's --parallel keeps the output order.
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { loadModel, REPORT_PROMPT, type GenerateResult, type Model } from '../lib/index.js';
import { quantize } from '../lib/runtime/tensors.js';
import { cleanEnv, runCli, writeImageFolder, writeTinyCxrModel } from './helpers/cli.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';
import { normaliseGray, writeTinyMmproj } from './helpers/tiny-vision.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-batch-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const text = path.join(dir, 'tiny.gguf');
const mmproj = path.join(dir, 'mmproj.gguf');
await writeTinyLlama(text, 'f32');
await writeTinyMmproj(mmproj, 'f32', { quantize });

/** A radiograph-like 8-bit PNG that differs with `seed`. */
async function radiograph(seed: number): Promise<string> {
  const W = 90 + seed * 7;
  const H = 80;
  const px = Buffer.alloc(W * H);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) px[y * W + x] = Math.round(128 + 90 * Math.sin(x / (5 + seed) + seed) * Math.cos(y / (9 + 2 * seed)));
  const file = path.join(dir, `chest-${seed}.png`);
  await sharp(px, { raw: { width: W, height: H, channels: 1 } }).png().toFile(file);
  return file;
}
const images = await Promise.all([0, 1, 2, 3].map(radiograph));

async function open(t: Test, opts: Parameters<typeof loadModel>[0] = {}): Promise<Model> {
  const m = await loadModel({ model: text, mmproj, threads: 2, ...opts });
  t.teardown(() => m.close());
  return m;
}

const greedy = { temperature: 0, maxTokens: 24 } as const;
const tokensOf = (rs: GenerateResult[]): number[][] => rs.map((r) => r.tokens);

t.test('4 images reported together with parallel: 4 give exactly the tokens of 4 sequential reports', async (t) => {
  const seq = await open(t, { parallel: 1 });
  const sequential: GenerateResult[] = [];
  for (const img of images) sequential.push(await seq.report(img, greedy));
  t.ok(new Set(sequential.map((r) => r.text)).size > 1, 'the images give different reports');

  const par = await open(t, { parallel: 4 });
  t.equal(par.info.runtime.parallel, 4);
  const together = await Promise.all(images.map((img) => par.report(img, greedy)));
  t.same(tokensOf(together), tokensOf(sequential), 'greedy');
  // Reports that start after another ended may reuse its system prompt, never its image.
  const ids = par.promptTokens({ prompt: REPORT_PROMPT, image: true });
  for (const [i, r] of together.entries()) t.ok(r.timings.prefillTokens >= ids.length - ids.indexOf(-1), `report ${i} computed its image and what follows`);

  // Again on the same model: each finds its own image's cache and computes one position.
  const again = await Promise.all(images.map((img) => par.report(img, greedy)));
  t.same(tokensOf(again), tokensOf(sequential), 'from the cache');
  t.same(again.map((r) => r.timings.prefillTokens), [1, 1, 1, 1], 'only the last prompt position is recomputed');

  // Sampling: each call has its own seeded random stream, batched or not.
  const sampled = { temperature: 0.8, topP: 0.9, maxTokens: 24, seed: 11 } as const;
  const seqSampled: GenerateResult[] = [];
  for (const img of images) seqSampled.push(await seq.report(img, sampled));
  t.same(tokensOf(await Promise.all(images.map((img) => par.report(img, sampled)))), tokensOf(seqSampled), 'temperature 0.8, top-p 0.9');
  // Top-k is drawn from the backend's top_k; with logprobs the full logits come to the host instead.
  const topK = { temperature: 1, topK: 5, topP: 1, maxTokens: 24, seed: 5 } as const;
  const viaBackend = await Promise.all(images.map((img) => par.report(img, topK)));
  const viaHost = await Promise.all(images.map((img) => par.report(img, { ...topK, logprobs: 1 })));
  t.same(tokensOf(viaBackend), tokensOf(viaHost), 'top-k on the backend = top-k on the host');
});

t.test('the PyTorch goldens still match when their sequence runs with others', async (t) => {
  const llama = JSON.parse(readFileSync(new URL('./fixtures/tiny-llama/golden.json', import.meta.url), 'utf8')) as {
    prompt: string;
    greedy_ids_stop_at_eos: number[];
  };
  const cxr = JSON.parse(readFileSync(new URL('./fixtures/tiny-cxr-llava/golden.json', import.meta.url), 'utf8')) as {
    image: { pixels: number[]; mean: number[]; std: number[] };
    greedy_steps: number;
    greedy_ids_stop_at_eos: number[];
  };
  for (const kvCacheType of ['f32', 'f16'] as const) {
    const m = await open(t, { parallel: 4, kvCacheType });
    const goldenImage = await m.encodeImage(normaliseGray(cxr.image.pixels, cxr.image.mean[0]!, cxr.image.std[0]!));
    const [textRun, imageRun] = await Promise.all([
      m.generate({ prompt: llama.prompt, raw: true, temperature: 0, maxTokens: 32 }),
      m.generate({ image: goldenImage, prompt: REPORT_PROMPT, temperature: 0, maxTokens: cxr.greedy_steps }),
      m.report(images[0]!, greedy),
      m.report(images[1]!, greedy),
    ]);
    t.same(textRun!.tokens, llama.greedy_ids_stop_at_eos, `LLaMA golden, batched (KV ${kvCacheType})`);
    t.same(imageRun!.tokens, cxr.greedy_ids_stop_at_eos, `multimodal golden, batched (KV ${kvCacheType})`);
  }
});

t.test('images are keyed by content: the same image is recognised, a different one is not served its cache', async (t) => {
  // One sequence, so the second image must share the first one's cache.
  const m = await open(t, { parallel: 1 });
  const a1 = await m.encodeImage(images[0]!);
  const first = await m.report(a1, greedy);
  const a2 = await m.encodeImage(images[0]!); // another encode of the same picture
  const again = await m.report(a2, greedy);
  t.equal(again.timings.prefillTokens, 1, 'the same pixels: everything but the last position came from the cache');
  t.same(again.tokens, first.tokens);

  const ids = m.promptTokens({ prompt: REPORT_PROMPT, image: true });
  const before = ids.indexOf(-1);
  const other = await m.report(images[1]!, greedy);
  t.equal(other.timings.prefillTokens, ids.length - before, 'a different image: recomputed from its first embedding row on');
  const cold = await open(t, { parallel: 1 });
  t.same(other.tokens, (await cold.report(images[1]!, greedy)).tokens, 'and its report is the one a fresh model writes');
});

t.test('a request that does not fit in the KV cache waits for room, then runs', async (t) => {
  const m = await loadModel({ model: text, threads: 2, parallel: 2, contextSize: 64, kvCacheSize: 64 });
  t.teardown(() => m.close());
  t.equal(m.info.runtime.kvCacheSize, 64);
  t.equal(m.info.runtime.contextSize, 64);
  const h = m.info.hparams;
  t.equal(m.info.runtime.kvCacheBytes, 64 * h.blockCount * 2 * h.headCountKv * (h.embeddingLength / h.headCount) * 2, 'one allocation for every sequence: 64 positions, f16 K and V');
  const events: string[] = [];
  const run = (name: string, maxTokens: number): Promise<GenerateResult> =>
    m
      .generate({ prompt: 'The heart is enlarged.', raw: true, temperature: 0, maxTokens, ignoreEos: true, onToken: () => void events.push(name) })
      .then((r) => (events.push(`${name} done`), r));
  // A reserves its prompt plus 40 tokens; B wants the whole context and must wait for A.
  const [a, b] = await Promise.all([run('A', 40), run('B', 200)]);
  t.equal(a.tokens.length, 40);
  t.equal(b.finishReason, 'length', 'B ran until the context was full');
  t.ok(events.indexOf('B') > events.indexOf('A done'), 'B started after A ended');
  const alone = await m.generate({ prompt: 'The heart is enlarged.', raw: true, temperature: 0, maxTokens: 200, ignoreEos: true });
  t.same(b.tokens, alone.tokens, 'waiting changed nothing in its output');
});

t.test('chat follow-ups keep their own cache while other calls run', async (t) => {
  const m = await open(t, { parallel: 2 });
  const chats = [m.chat(images[0]!), m.chat(images[1]!)];
  await Promise.all(chats.map((c) => c.send('Is there cardiomegaly?', greedy)));
  const follow = await Promise.all(chats.map((c) => c.send('Which side?', greedy)));
  for (const [i, r] of follow.entries()) {
    const full = m.promptTokens({ messages: chats[i]!.messages.slice(0, 3), image: true });
    t.ok(r.timings.prefillTokens < full.length - 16, `chat ${i}: follow-up computed ${r.timings.prefillTokens} of ${full.length} positions`);
    const cold = await open(t, { parallel: 1 });
    t.same(r.tokens, (await cold.generate({ ...greedy, image: images[i]!, messages: chats[i]!.messages.slice(0, 3) })).tokens, `chat ${i}: the answer of a cold run`);
  }
});

t.test('an abort ends its own call at once and leaves the others alone', async (t) => {
  const m = await open(t, { parallel: 4 });
  const alone = await m.generate({ prompt: 'Findings:', raw: true, temperature: 0, maxTokens: 30, ignoreEos: true });
  const ac = new AbortController();
  const reason = new Error('enough');
  let afterAbort = 0;
  let aborted = false;
  const victim = m.generate({
    prompt: 'Impression:',
    raw: true,
    temperature: 0,
    maxTokens: 200,
    ignoreEos: true,
    signal: ac.signal,
    onToken: () => {
      if (aborted) afterAbort++;
      else if (!aborted) {
        aborted = true;
        ac.abort(reason);
      }
    },
  });
  const others = [0, 1].map(() => m.generate({ prompt: 'Findings:', raw: true, temperature: 0, maxTokens: 30, ignoreEos: true }));
  await t.rejects(victim, reason);
  t.equal(afterAbort, 0, 'no onToken call after the abort');
  for (const r of await Promise.all(others)) t.same(r.tokens, alone.tokens);
});

t.test('report --parallel 3 writes the same records, in input order, as --parallel 1', async (t) => {
  const cliDir = path.join(dir, 'cli');
  const modelDir = path.join(cliDir, 'model');
  await writeTinyCxrModel(modelDir);
  const imgDir = path.join(cliDir, 'images');
  await writeImageFolder(imgDir);
  const env = cleanEnv(cliDir);
  const args = ['report', imgDir, '--jsonl', '--model', modelDir, '--temperature', '0', '--max-tokens', '8', '--threads', '2'];
  const one = await runCli([...args, '--parallel', '1'], { env });
  const three = await runCli([...args, '--parallel', '3'], { env });
  t.equal(three.code, one.code);
  const strip = (s: string): unknown[] =>
    s
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => {
        const r = JSON.parse(l) as { file: string; text: string | null; error: string | null };
        return { file: r.file, text: r.text, error: r.error };
      });
  t.same(strip(three.stdout), strip(one.stdout));
  t.equal(three.stderr.split('\n').filter((l) => l.startsWith('error:')).join('\n'), one.stderr.split('\n').filter((l) => l.startsWith('error:')).join('\n'), 'errors reported in the same order');
  const bad = await runCli([...args, '--parallel', '0'], { env });
  t.equal(bad.code, 2, 'usage error');
  t.match(bad.stderr, /--parallel/);
});
