// The image API on the tiny CXR-LLaVA: report/ask/differential use the official
// prompts, a chat follow-up reuses the KV cache (no second encode or image
// prefill), and image-related mistakes are clear errors.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { DIFFERENTIAL_PROMPT, REPORT_PROMPT, loadModel } from '../lib/index.js';
import { quantize } from '../lib/runtime/tensors.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';
import { writeTinyMmproj } from './helpers/tiny-vision.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-mm-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const text = path.join(dir, 'tiny.gguf');
const mmproj = path.join(dir, 'mmproj.gguf');
await writeTinyLlama(text, 'f32');
await writeTinyMmproj(mmproj, 'f32', { quantize });

// A radiograph-like 8-bit image, larger than the tiny model's 64x64 input.
const W = 96;
const H = 80;
const px = Buffer.alloc(W * H);
for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) px[y * W + x] = Math.round(128 + 90 * Math.sin(x / 9) * Math.cos(y / 13));
const png = path.join(dir, 'chest.png');
await sharp(px, { raw: { width: W, height: H, channels: 1 } }).png().toFile(png);

const model = await loadModel({ model: text, mmproj, threads: 2 });
t.teardown(() => model.close());
const greedy = { temperature: 0, maxTokens: 6 } as const;

t.test('report, differential and ask use the official prompts', async (t) => {
  const img = await model.encodeImage(png);
  t.equal(img.tokens, 16);
  t.equal(img.dim, 64);
  t.equal(img.data.length, 16 * 64);
  const cases: [string, Promise<{ tokens: number[] }>, string][] = [
    ['report', model.report(img, greedy), REPORT_PROMPT],
    ['differential', model.differential(img, greedy), DIFFERENTIAL_PROMPT],
    ['ask', model.ask(img, '  Is the heart enlarged?  ', greedy), 'Is the heart enlarged?'],
  ];
  for (const [name, p, prompt] of cases) {
    const viaGenerate = await model.generate({ ...greedy, image: img, prompt });
    t.same((await p).tokens, viaGenerate.tokens, `${name} = generate with its prompt`);
  }
  const ids = model.promptTokens({ prompt: REPORT_PROMPT, image: true });
  t.same(ids.slice(0, 2), [1, 1], 'two BOS tokens, as the official code feeds them');
  t.equal(ids.filter((x) => x === -1).length, 16, 'one placeholder per image embedding');
});

t.test('a path, a Buffer and an encoded image give the same report', async (t) => {
  const a = await model.report(png, greedy);
  t.ok(a.timings.encodeMs !== undefined && a.timings.encodeMs >= 0, 'encodeMs when the call encoded the image');
  const { readFile } = await import('node:fs/promises');
  const b = await model.report(await readFile(png), greedy);
  const c = await model.report(await model.encodeImage(png), greedy);
  t.same(b.tokens, a.tokens);
  t.same(c.tokens, a.tokens);
  t.equal(c.timings.encodeMs, undefined, 'no encodeMs for a pre-encoded image');
});

t.test('a chat follow-up reuses the cache: no second encode, no image prefill', async (t) => {
  // A picture no earlier call has seen (the cache recognises images by content).
  const fresh = path.join(dir, 'chest-negative.png');
  await sharp(px.map((v) => 255 - v), { raw: { width: W, height: H, channels: 1 } }).png().toFile(fresh);
  const chat = model.chat(fresh);
  const first = await chat.send('Is there cardiomegaly?', greedy);
  t.ok(first.timings.prefillTokens > 16, 'the first turn computes the image and the prompt');
  const second = await chat.send('Which side?', greedy);
  t.equal(second.timings.encodeMs, undefined, 'the image is not encoded again');
  const fullPrompt = model.promptTokens({ messages: chat.messages.slice(0, 2).concat({ role: 'user', content: 'Which side?' }), image: true });
  t.ok(second.timings.prefillTokens < fullPrompt.length - 16, `follow-up computed ${second.timings.prefillTokens} of ${fullPrompt.length} positions`);
  t.equal(chat.messages.length, 4);
  // The follow-up's answer equals a cold run of the same conversation.
  const cold = await loadModel({ model: text, mmproj, threads: 2 });
  t.teardown(() => cold.close());
  const ref = await cold.generate({ ...greedy, image: fresh, messages: chat.messages.slice(0, 2).concat({ role: 'user', content: 'Which side?' }) });
  t.same(second.tokens, ref.tokens);
});

t.test('image mistakes are clear errors', async (t) => {
  const textOnly = await loadModel({ model: text, threads: 1 });
  t.teardown(() => textOnly.close());
  await t.rejects(textOnly.report(png), { code: 'ERR_MODEL', message: /no vision projector \(mmproj\) is loaded/ });
  await t.rejects(textOnly.encodeImage(png), { code: 'ERR_MODEL', message: text });
  await t.rejects(model.report(path.join(dir, 'missing.png')), { code: 'ERR_IMAGE', message: /missing\.png/ });
  await t.rejects(loadModel({ model: text, mmproj: path.join(dir, 'nope.gguf') }), { code: 'ERR_IO', message: /nope\.gguf/ });
  await t.rejects(model.generate({ prompt: 'x', raw: true, image: png }), { message: /raw/ });
  const ac = new AbortController();
  ac.abort(new Error('stop now'));
  await t.rejects(model.encodeImage(png, { signal: ac.signal }), { message: 'stop now' });
});
