// The HTTP API through the official `openai` client and plain fetch, against a
// real `cxr-llava serve` on the tiny model, checked against the CLI run on the
// same files: chat completions (plain and streamed), /v1/reports, follow-ups
// that reuse the KV cache, logprobs, system prompts, models, health, metrics.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { REPORT_PROMPT, DIFFERENTIAL_PROMPT } from '../lib/runtime/prompt.js';
import { cleanEnv, imageBytes, ROOT, runCli, writeTinyCxrModel } from './helpers/cli.js';
import { startServer } from './helpers/server.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-serve-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, 'model');
await writeTinyCxrModel(modelDir);
const env = cleanEnv(dir);
const png = new Uint8Array(await imageBytes(96, 80, 7));
const jpeg = new Uint8Array(await imageBytes(120, 100, 8, 'jpeg'));
writeFileSync(path.join(dir, 'chest.png'), png);
writeFileSync(path.join(dir, 'chest.jpg'), jpeg);
const dicom = new Uint8Array(readFileSync(path.join(ROOT, 'test/fixtures/dicom/evrle.dcm')));
writeFileSync(path.join(dir, 'chest.dcm'), dicom);

const server = await startServer(['--model', modelDir, '--threads', '1', '-q'], { env });
t.teardown(() => server.stop());
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
const dataUrl = (b: Uint8Array, type: string): string => `data:${type};base64,${Buffer.from(b).toString('base64')}`;

interface Rec {
  file: string;
  text: string;
  timings: { decodeTokens: number; prefillTokens: number; encodeMs: number } | null;
  [k: string]: unknown;
}

async function cliRecord(args: string[]): Promise<Rec> {
  const r = await runCli([...args, '--model', modelDir, '--threads', '1', '--jsonl', '-q'], { env, cwd: dir });
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as Rec;
}

for (const [name, bytes, type] of [
  ['chest.png', png, 'image/png'],
  ['chest.jpg', jpeg, 'image/jpeg'],
  ['chest.dcm', dicom, 'application/dicom'],
] as const) {
  t.test(`${name}: a temperature-0 chat completion equals \`cxr-llava report\`, token for token; streaming concatenates to it`, async (t) => {
    const cli = await cliRecord(['report', name, '--temperature', '0', '--max-tokens', '48']);
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
      { role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(bytes, type) } }, { type: 'text', text: REPORT_PROMPT }] },
    ];
    const r = await client.chat.completions.create({ model: 'cxr-llava', messages, temperature: 0, max_tokens: 48, logprobs: true });
    const choice = r.choices[0]!;
    t.equal(choice.message.content, cli.text, 'same text as the CLI');
    t.equal(r.usage!.completion_tokens, cli.timings!.decodeTokens, 'same number of tokens as the CLI');
    t.equal(choice.logprobs!.content!.length, cli.timings!.decodeTokens, 'one logprob per token');
    const spelt = Buffer.from(choice.logprobs!.content!.flatMap((l) => l.bytes!));
    t.equal(spelt.toString("utf8").trimStart(), cli.text.trimStart(), "the tokens' bytes spell the text");
    t.equal(r.object, 'chat.completion');
    t.equal(r.model, 'cxr-llava-v2.f32');
    t.equal(choice.finish_reason, cli['finishReason']);
    t.ok(r.usage!.prompt_tokens > 16, 'the image positions count in prompt_tokens');

    const stream = await client.chat.completions.create({ model: 'cxr-llava', messages, temperature: 0, max_tokens: 48, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let chunks = 0;
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const c of stream) {
      t.equal(c.object, 'chat.completion.chunk');
      if (c.usage) usage = c.usage;
      const ch = c.choices[0];
      if (!ch) continue;
      text += ch.delta.content ?? '';
      chunks++;
      finish = ch.finish_reason ?? finish;
    }
    t.equal(text, cli.text, 'the streamed pieces concatenate to the same text');
    t.ok(chunks > 3, `streamed in ${chunks} chunks`);
    t.equal(finish, cli['finishReason']);
    t.equal(usage!.completion_tokens, cli.timings!.decodeTokens);
  });
}

t.test('the raw SSE stream is OpenAI\'s chunk format and ends in [DONE]', async (t) => {
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ stream: true, temperature: 0, max_tokens: 4, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(png, 'image/png') } }, { type: 'text', text: 'hi' }] }] }),
  });
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/event-stream/);
  const body = await res.text();
  const events = body.split('\n\n').filter((e) => e !== '');
  t.ok(events.every((e) => e.startsWith('data: ')), 'every event is a data: line');
  t.equal(events[events.length - 1], 'data: [DONE]');
  const first = JSON.parse(events[0]!.slice(6)) as { choices: { delta: { role: string } }[] };
  t.equal(first.choices[0]!.delta.role, 'assistant');
});

t.test('/v1/reports equals the CLI\'s JSONL record (timings aside): raw body and multipart, report, ddx and ask', async (t) => {
  const strip = (r: Rec): Rec => ({ ...r, timings: null });
  for (const [task, extra] of [
    ['report', []],
    ['ddx', []],
    ['ask', ['Is the heart enlarged?']],
  ] as const) {
    const cliArgs = task === 'ask' ? ['ask', 'chest.png', ...extra] : [task, 'chest.png'];
    const cli = await cliRecord([...cliArgs, '--temperature', '0', '--max-tokens', '24', '--seed', '42']);
    const qs = new URLSearchParams({ task, temperature: '0', max_tokens: '24', seed: '42', name: 'chest.png', ...(task === 'ask' ? { question: extra[0]! } : {}) });
    const raw = await fetch(`${server.url}/v1/reports?${qs}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });
    t.equal(raw.status, 200, task);
    const rec = (await raw.json()) as Rec;
    t.same(strip(rec), strip(cli), `${task}: raw body`);
    t.same(Object.keys(rec), Object.keys(cli), `${task}: the same fields in the same order`);
    qs.delete('name');
    const form = new FormData();
    form.append('image', new Blob([png], { type: 'image/png' }), 'chest.png');
    const multi = await fetch(`${server.url}/v1/reports?${qs}`, { method: 'POST', body: form });
    t.equal(multi.status, 200);
    t.same(strip((await multi.json()) as Rec), strip(cli), `${task}: multipart`);
  }
  // The prompts the page builds on are the official ones.
  const info = (await (await fetch(`${server.url}/v1/info`)).json()) as { prompts: { report: string; ddx: string } };
  t.same(info.prompts, { system: info.prompts['system' as 'report'], report: REPORT_PROMPT, ddx: DIFFERENTIAL_PROMPT });
});

t.test('/v1/reports streams token events, then the record', async (t) => {
  const res = await fetch(`${server.url}/v1/reports?temperature=0&max_tokens=12&stream=true`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });
  const body = await res.text();
  const tokens = [...body.matchAll(/event: token\ndata: (.*)\n/g)].map((m) => (JSON.parse(m[1]!) as { text: string }).text);
  const rec = JSON.parse(/event: record\ndata: (.*)\n/.exec(body)![1]!) as Rec;
  t.ok(tokens.length > 3);
  t.equal(tokens.join(''), rec.text);
  t.equal(rec.file, 'upload');
});

t.test('a follow-up with the same image and the earlier turns reuses the encoded image and the KV prefix', async (t) => {
  const img = await imageBytes(90, 90, 11);
  const first: OpenAI.Chat.ChatCompletionMessageParam[] = [
    { role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(img, 'image/png') } }, { type: 'text', text: REPORT_PROMPT }] },
  ];
  type Timed = OpenAI.Chat.ChatCompletion & { timings: { imageCached: boolean; prefillTokens: number; encodeMs: number } };
  const a = (await client.chat.completions.create({ model: 'm', messages: first, temperature: 0, max_tokens: 16 })) as Timed;
  t.equal(a.timings.imageCached, false, 'the first turn encodes the image');
  t.ok(a.timings.encodeMs > 0);
  // Only the text before the image (the system prompt) may come from an earlier request's cache.
  t.ok(a.usage!.prompt_tokens_details!.cached_tokens! <= a.usage!.prompt_tokens - 16 - 20, 'the new image and the text after it were computed');
  const followUp: OpenAI.Chat.ChatCompletionMessageParam[] = [...first, { role: 'assistant', content: a.choices[0]!.message.content! }, { role: 'user', content: 'Is there a pleural effusion?' }];
  const b = (await client.chat.completions.create({ model: 'm', messages: followUp, temperature: 0, max_tokens: 8 })) as Timed;
  t.equal(b.timings.imageCached, true, 'the follow-up reuses the encoded image');
  const cached = b.usage!.prompt_tokens_details!.cached_tokens!;
  t.ok(cached >= a.usage!.prompt_tokens, `${cached} of ${b.usage!.prompt_tokens} prompt positions came from the KV cache`);
  t.equal(b.timings.prefillTokens, b.usage!.prompt_tokens - cached, 'only the new turn was computed');
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  t.match(metrics, /cxr_image_cache_total\{result="hit"\} [1-9]/);
});

t.test('a system message replaces the official system prompt; stop, seed and top_logprobs work', async (t) => {
  const user: OpenAI.Chat.ChatCompletionMessageParam = { role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(png, 'image/png') } }, { type: 'text', text: REPORT_PROMPT }] };
  const plain = await client.chat.completions.create({ model: 'm', messages: [user], temperature: 0, max_tokens: 24 });
  const sys = await client.chat.completions.create({ model: 'm', messages: [{ role: 'system', content: 'You are terse.' }, user], temperature: 0, max_tokens: 24 });
  t.ok(sys.usage!.prompt_tokens !== plain.usage!.prompt_tokens || sys.choices[0]!.message.content !== plain.choices[0]!.message.content, 'a different system prompt gives a different prompt');
  const s1 = await client.chat.completions.create({ model: 'm', messages: [user], temperature: 1, seed: 7, max_tokens: 16 });
  const s2 = await client.chat.completions.create({ model: 'm', messages: [user], temperature: 1, seed: 7, max_tokens: 16 });
  t.equal(s1.choices[0]!.message.content, s2.choices[0]!.message.content, 'the same seed gives the same text');
  const text = plain.choices[0]!.message.content!;
  const word = text.trim().split(/\s+/)[1] ?? text.trim().slice(2, 5);
  const stopped = await client.chat.completions.create({ model: 'm', messages: [user], temperature: 0, max_tokens: 24, stop: [word] });
  t.equal(stopped.choices[0]!.finish_reason, 'stop');
  t.ok(!stopped.choices[0]!.message.content!.includes(word), 'the stop string is not in the text');
  t.ok(text.startsWith(stopped.choices[0]!.message.content!), 'the text up to the stop string');
  const lp = await client.chat.completions.create({ model: 'm', messages: [user], temperature: 0, max_tokens: 4, logprobs: true, top_logprobs: 3 });
  for (const c of lp.choices[0]!.logprobs!.content!) {
    t.equal(c.top_logprobs.length, 3);
    t.ok(c.logprob <= 0);
    t.equal(c.top_logprobs[0]!.token, c.token, 'greedy: the chosen token is the most likely');
    t.ok(c.top_logprobs[0]!.logprob >= c.top_logprobs[1]!.logprob);
  }
  // max_completion_tokens is the newer name of max_tokens.
  const mct = await client.chat.completions.create({ model: 'm', messages: [user], temperature: 0, max_completion_tokens: 3 });
  t.equal(mct.usage!.completion_tokens, 3);
});

t.test('two chat completions at once (the default parallel) give the texts they give one after another', async (t) => {
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  t.match(metrics, /^cxr_parallel_slots 4$/m, "serve runs the model's default of 4 requests at once");
  const ask = (bytes: Uint8Array, type: string, prompt: string) =>
    client.chat.completions.create({
      model: 'm',
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(bytes, type) } }, { type: 'text', text: prompt }] }],
      temperature: 0,
      max_tokens: 32,
    });
  const other = new Uint8Array(await imageBytes(100, 84, 21));
  const alone = [await ask(png, 'image/png', REPORT_PROMPT), await ask(other, 'image/png', DIFFERENTIAL_PROMPT)];
  const together = await Promise.all([ask(png, 'image/png', REPORT_PROMPT), ask(other, 'image/png', DIFFERENTIAL_PROMPT)]);
  const text = (r: OpenAI.Chat.ChatCompletion): string => r.choices[0]!.message.content!;
  t.not(text(alone[0]!), text(alone[1]!), 'different requests, different answers');
  t.same(together.map(text), alone.map(text), 'temperature 0: the same text, batched or not');
  // Fresh images, so neither can be served from the cache of the runs above.
  const c = new Uint8Array(await imageBytes(88, 96, 31));
  const d = new Uint8Array(await imageBytes(92, 70, 41));
  const [tc, td] = await Promise.all([ask(c, 'image/png', REPORT_PROMPT), ask(d, 'image/png', REPORT_PROMPT)]);
  t.equal(text(tc), text(await ask(c, 'image/png', REPORT_PROMPT)), 'a fresh image computed alongside another = the same asked again alone');
  t.equal(text(td), text(await ask(d, 'image/png', REPORT_PROMPT)));
});

t.test('/v1/models, /health, /metrics, the preview and the page', async (t) => {
  const models = await client.models.list();
  t.same(models.data.map((m) => m.id), ['cxr-llava-v2.f32']);
  const health = (await (await fetch(`${server.url}/health`)).json()) as { status: string };
  t.equal(health.status, 'ok');
  const metrics = await fetch(`${server.url}/metrics`);
  t.match(metrics.headers.get('content-type'), /^text\/plain/);
  const m = await metrics.text();
  for (const name of ['cxr_http_requests_total', 'cxr_queue_depth', 'cxr_decode_tokens_per_second', 'cxr_encode_seconds_bucket', 'cxr_prefill_seconds_bucket', 'cxr_decode_seconds_bucket', 'cxr_time_to_first_token_seconds_bucket', 'process_resident_memory_bytes']) {
    t.match(m, new RegExp(`^${name}`, 'm'), name);
  }
  t.match(m, /cxr_http_requests_total\{route="\/v1\/chat\/completions",status="200"\} [1-9]/);
  const prev = await fetch(`${server.url}/v1/images/preview`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });
  t.equal(prev.status, 200);
  t.equal(prev.headers.get('content-type'), 'image/png');
  const sharp = (await import('sharp')).default;
  const meta = await sharp(Buffer.from(await prev.arrayBuffer())).metadata();
  t.same([meta.width, meta.height], [64, 64], "the tiny model's input size");
  const page = await fetch(`${server.url}/`);
  t.equal(page.status, 200);
  t.match(page.headers.get('content-security-policy'), /default-src 'self'/);
  const html = await page.text();
  t.match(html, /Not for clinical use/);
  t.notMatch(html, /https?:\/\//, 'the page loads nothing from the network');
});
