// One validation layer: each numeric option is checked once, in lib/, against
// one table of ranges; the CLI parses its flags with the same table, so a flag
// and the option it sets fail with the same words, and a bad flag exits 2
// before any work. The engine's size limits are defined once (native
// limits.h) and read by lib/ from the addon.
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadModel, preprocessImage } from '../lib/index.js';
import { limits } from '../lib/runtime/limits.js';
import { native } from '../lib/runtime/native.js';
import { generateRanges } from '../lib/runtime/option-ranges.js';
import { describeRange, parseNumberArg } from '../lib/validate.js';
import { cleanEnv, imageBytes, runCli } from './helpers/cli.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';
import { writeFile } from 'node:fs/promises';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-valid-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'tiny.gguf');
await writeTinyLlama(file, 'f32');
const model = await loadModel({ model: file, threads: 1 });
t.teardown(() => model.close());
const env = cleanEnv(dir);
const scans = path.join(dir, 'scans');
mkdirSync(scans);
await writeFile(path.join(scans, 'a.png'), await imageBytes(32, 32, 1));

// API option, a bad value, the flag that sets it and the same value as text, the message.
const cases: [string, unknown, string, string, string][] = [
  ['topP', 0, '--top-p', '0', 'Expected a number in (0, 1] for topP but received 0'],
  ['topP', 1.01, '--top-p', '1.01', 'Expected a number in (0, 1] for topP but received 1.01'],
  ['temperature', -0.5, '--temperature', '-0.5', 'Expected a number in [0, 100] for temperature but received -0.5'],
  ['maxTokens', 0, '--max-tokens', '0', `Expected an integer in [1, ${limits().maxContext}] for maxTokens but received 0`],
  ['maxTokens', 2.5, '--max-tokens', '2.5', `Expected an integer in [1, ${limits().maxContext}] for maxTokens but received 2.5`],
];

t.test('the API and the CLI reject a bad value with the same message', async (t) => {
  for (const [option, value, flag, text, message] of cases) {
    await t.rejects(model.generate({ prompt: 'x', [option]: value }), { code: 'ERR_INVALID_ARG', message }, `${option}: ${String(value)}`);
    // The model path does not exist and the output folder is not there yet:
    // exit 2 with the message shows the flag was refused before any work.
    const out = path.join(dir, `out-${option}-${text}`);
    const r = await runCli(['report', scans, '--model', path.join(dir, 'missing.gguf'), '--output', out, flag, text], { env });
    t.equal(r.code, 2, `${flag} ${text} exits 2`);
    t.match(r.stderr, message, `${flag} ${text}: the API's message`);
    t.equal(r.stderr.split('\n').length, 2, 'one line');
    t.notOk(existsSync(out), 'nothing written');
  }
  const r = await runCli(['report', scans, '--top-p', '0'], { env });
  t.equal(r.stderr, "error: option '--top-p <p>' argument '0' is invalid. Expected a number in (0, 1] for topP but received 0\n");
  t.equal(r.code, 2);
});

t.test('the other generate options and loadModel options', async (t) => {
  const r = generateRanges();
  await t.rejects(model.generate({ prompt: 'x', topK: -1 }), { message: 'Expected an integer >= 0 for topK but received -1' });
  await t.rejects(model.generate({ prompt: 'x', repeatPenalty: 0 }), { message: `Expected ${describeRange(r.repeatPenalty)} for repeatPenalty but received 0` });
  await t.rejects(model.generate({ prompt: 'x', logprobs: limits().maxLogprobs + 1 }), { message: `Expected an integer in [0, ${limits().maxLogprobs}] for logprobs but received ${limits().maxLogprobs + 1}` });
  await t.rejects(model.generate({ prompt: 'x', temperature: NaN }), { message: 'Expected a number in [0, 100] for temperature but received NaN' });
  await t.rejects(model.generate({ prompt: 'x', topP: '0.5' as never }), { message: 'Expected a number in (0, 1] for topP but received "0.5" of type string' });
  await t.rejects(model.generate({ prompt: 'x', seed: -1 }), { message: 'Expected an integer in [0, 18446744073709551615] for seed but received -1' });
  await t.rejects(model.generate({ prompt: 'x', seed: 1n << 64n }), { message: /for seed but received 18446744073709551616$/ });
  await t.rejects(loadModel({ model: file, contextSize: limits().maxContext + 1 }), { message: `Expected an integer in [0, ${limits().maxContext}] for contextSize but received ${limits().maxContext + 1}` });
  await t.rejects(loadModel({ model: file, threads: limits().maxThreads + 1 }), { message: /for threads/ });
  // The CLI's own floor for --ctx, above the API's 0-for-default.
  const c = await runCli(['report', scans, '--ctx', '8'], { env });
  t.equal(c.code, 2);
  t.match(c.stderr, 'Expected an integer in [16, 1048576] for contextSize but received 8');
});

t.test('flag text must be a plain number', async (t) => {
  const topP = generateRanges().topP;
  t.equal(parseNumberArg('topP', ' 0.25 ', topP), 0.25);
  t.equal(parseNumberArg('topP', '1e-1', topP), 0.1);
  for (const bad of ['', '0x1', '1,5', 'Infinity', '.', '1..2', '0.5abc']) {
    t.throws(() => parseNumberArg('topP', bad, topP), { message: /^Expected a number in \(0, 1\] for topP but received / }, JSON.stringify(bad));
  }
  t.throws(() => parseNumberArg('maxTokens', '3.5', generateRanges().maxTokens), { message: /for maxTokens but received 3.5$/ }, 'integers');
});

t.test('token ids are checked once, in lib/, against the vocabulary', async (t) => {
  const n = model.info.hparams.vocabSize;
  await t.rejects(model.generate({ tokens: [1, n] }), { code: 'ERR_INVALID_ARG', message: `Expected a token id in [0, ${n - 1}] for tokens[1] but received ${n}` });
  await t.rejects(model.generate({ tokens: [-1] }), { message: `Expected a token id in [0, ${n - 1}] for tokens[0] but received -1` });
  t.throws(() => model.detokenize([1, 2.5]), { message: `Expected a token id in [0, ${n - 1}] for ids[1] but received 2.5` });
  await t.rejects(model.logits([0, n + 5]), { message: /for ids\[1\] but received/ });
  t.throws(() => model.tokenPiece(n), { message: `Expected an integer in [0, ${n - 1}] for id but received ${n}` });
  t.throws(() => model.tokenPiece(undefined as never), { message: /for id but received undefined/ });
  t.equal(model.detokenize([n - 1]).length >= 0, true, 'the last id is accepted');
});

t.test('the pixel limit is one number, the engine\'s, read by lib/', async (t) => {
  const max = limits().maxImagePixels;
  t.equal(max, native().limits.maxImagePixels);
  t.equal(max, 100_000_000);
  const width = 10_001;
  const height = Math.ceil(max / width) + 1;
  await t.rejects(preprocessImage({ data: new Uint8Array(1), width, height, channels: 1 }), {
    code: 'ERR_IMAGE',
    message: `<pixels>: the image is ${width}x${height} pixels, more than the limit of ${max} pixels`,
  });
});
