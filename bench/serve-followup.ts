/**
 * Time to first token over HTTP: a first turn on a new image against a
 * follow-up question in the same conversation, through `cxr-llava serve`'s
 * chat completions (the server runs in this process, on 127.0.0.1). Each
 * round uses a new image (the radiograph resized by a few pixels, so its hash
 * differs), so every first turn pays the decode, the vision tower and the
 * whole prefill; the follow-up should pay only its own words. Medians.
 *
 *   node dist/bench/serve-followup.js --model <text.gguf> --mmproj <mmproj.gguf> --image chest.jpg [--rounds 5] [--threads 2]
 */
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { loadModel, REPORT_PROMPT } from '../lib/index.js';
import { closeGracefully, createServer } from '../lib/server/app.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    mmproj: { type: 'string' },
    image: { type: 'string' },
    rounds: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
    ctx: { type: 'string', default: '2048' },
    tokens: { type: 'string', default: '32' },
  },
});
if (!values.model || !values.mmproj || !values.image) {
  process.stderr.write('usage: node dist/bench/serve-followup.js --model <text.gguf> --mmproj <mmproj.gguf> --image <file> [--rounds N] [--threads N] [--tokens N]\n');
  process.exit(2);
}
const model = await loadModel({ model: values.model, mmproj: values.mmproj, threads: Number(values.threads), contextSize: Number(values.ctx) });
const server = await createServer(model);
const base = await server.app.listen({ host: '127.0.0.1', port: 0 });
const maxTokens = Number(values.tokens);

interface Turn {
  text: string;
  ttftMs: number;
  prefillTokens: number;
  cached: number;
  promptTokens: number;
}

async function turn(messages: unknown[]): Promise<Turn> {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages, temperature: 0, max_tokens: maxTokens }),
  });
  const r = (await res.json()) as {
    choices: { message: { content: string } }[];
    usage: { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } };
    timings: { ttftMs: number; prefillTokens: number };
    error?: { message: string };
  };
  if (!res.ok) throw new Error(r.error?.message ?? `HTTP ${res.status}`);
  return { text: r.choices[0]!.message.content, ttftMs: r.timings.ttftMs, prefillTokens: r.timings.prefillTokens, cached: r.usage.prompt_tokens_details.cached_tokens, promptTokens: r.usage.prompt_tokens };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const meta = await sharp(values.image).metadata();
const firsts: Turn[] = [];
const follows: Turn[] = [];
for (let i = 0; i < Number(values.rounds); i++) {
  const png = await sharp(values.image).resize({ width: meta.width! - i - 1 }).png().toBuffer();
  const user = { role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${png.toString('base64')}` } }, { type: 'text', text: REPORT_PROMPT }] };
  const a = await turn([user]);
  const b = await turn([user, { role: 'assistant', content: a.text }, { role: 'user', content: 'Is there a pleural effusion?' }]);
  firsts.push(a);
  follows.push(b);
}
await closeGracefully(server, 1000);
await model.close();

const row = (name: string, ts: Turn[]): string =>
  `${name.padEnd(24)} ttft ${median(ts.map((t) => t.ttftMs)).toFixed(1).padStart(9)} ms   computed ${median(ts.map((t) => t.prefillTokens))} of ${median(ts.map((t) => t.promptTokens))} prompt positions (${median(ts.map((t) => t.cached))} reused)`;
console.log(row('first turn, new image', firsts));
console.log(row('follow-up', follows));
console.log(`follow-up / first turn (median ttft): ${(median(follows.map((t) => t.ttftMs)) / median(firsts.map((t) => t.ttftMs))).toFixed(3)}`);
console.log(JSON.stringify({ rounds: firsts.length, first: firsts.map(({ text: _t, ...r }) => r), followUp: follows.map(({ text: _t, ...r }) => r) }));
