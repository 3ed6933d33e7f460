/**
 * Time to first token of a chat follow-up against a fresh report, at full size:
 * a follow-up reuses the KV cache of the image and the earlier turns, so it
 * skips the image encode and the prefill of the 1024 image tokens.
 *
 *   node dist/bench/followup.js --model llama-7b-q4_0.gguf --mmproj vit-l16-512-q8_0.gguf --image chest.jpg
 *
 * Uses the public API only. Prints one table and a JSON line.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { loadModel, REPORT_PROMPT } from '../lib/index.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    mmproj: { type: 'string' },
    image: { type: 'string' },
    threads: { type: 'string', default: '2' },
  },
});
if (!values.model || !values.mmproj || !values.image) {
  process.stderr.write('usage: node dist/bench/followup.js --model <text.gguf> --mmproj <mmproj.gguf> --image <file> [--threads N]\n');
  process.exit(2);
}
const model = await loadModel({ model: values.model, mmproj: values.mmproj, threads: Number(values.threads), contextSize: 2048 });
const first = { temperature: 0, maxTokens: 1, ignoreEos: true };

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

// A fresh report: decode + preprocess + encode + prefill of everything, to the first token.
const [fresh, freshMs] = await timed(() => model.report(values.image!, first));
// A conversation: the first turn pays the same; the follow-up only its own words.
const chat = model.chat(values.image);
const [turn1, turn1Ms] = await timed(() => chat.send(REPORT_PROMPT, first));
const [turn2, turn2Ms] = await timed(() => chat.send('Is there a pleural effusion?', first));
await model.close();

const row = (name: string, ms: number, r: Pick<typeof fresh, 'timings'>): string =>
  `${name.padEnd(34)} ${(ms / 1000).toFixed(2).padStart(8)} s   prefill ${String(r.timings.prefillTokens).padStart(5)} positions` +
  (r.timings.encodeMs !== undefined ? `, encode ${(r.timings.encodeMs / 1000).toFixed(2)} s` : '');
console.log(row('fresh report, first token', freshMs, fresh));
console.log(row('chat turn 1, first token', turn1Ms, turn1));
console.log(row('chat follow-up, first token', turn2Ms, turn2));
console.log(`follow-up / fresh: ${(turn2Ms / freshMs).toFixed(3)}`);
console.log(JSON.stringify({ freshMs, turn1Ms, turn2Ms, fresh: fresh.timings, turn1: turn1.timings, turn2: turn2.timings }));
