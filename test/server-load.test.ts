// Load: 32 concurrent clients on the tiny model for CXR_LOAD_SECONDS (default
// 10 here; the README's figures come from a 60 s run), each sending chat
// completions with one of eight images as fast as it is answered. Checks: no
// errors except the designed 429s, resident memory flat, /health answering at
// the end. Prints p50/p99 latency, throughput and RSS as tap comments.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cleanEnv, imageBytes, writeTinyCxrModel } from './helpers/cli.js';
import { startServer } from './helpers/server.js';

const SECONDS = Number(process.env.CXR_LOAD_SECONDS ?? 10);
const CLIENTS = 32;
const dir = mkdtempSync(path.join(tmpdir(), 'cxr-serve-load-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, 'model');
await writeTinyCxrModel(modelDir);
const images = await Promise.all(Array.from({ length: 8 }, async (_, i) => `data:image/png;base64,${(await imageBytes(80 + i * 8, 96, 20 + i)).toString('base64')}`));
// The default --parallel (the model's, 4) with a queue of 16, so 32 clients overrun it.
const server = await startServer(['--model', modelDir, '--threads', '1', '-q', '--ctx', '1024', '--max-queue', '16'], { env: cleanEnv(dir) });
t.teardown(() => server.stop());

async function rss(): Promise<number> {
  const m = /^process_resident_memory_bytes (\d+)/m.exec(await (await fetch(`${server.url}/metrics`)).text());
  return Number(m![1]);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

t.test(`${CLIENTS} clients for ${SECONDS} s: only designed 429s, flat memory, still healthy`, async (t) => {
  const end = Date.now() + SECONDS * 1000;
  const latencies: number[] = [];
  const statuses = new Map<string, number>();
  let tokens = 0;
  let retryAfterMissing = 0;
  const samples: number[] = [];
  const sampler = (async () => {
    while (Date.now() < end) {
      samples.push(await rss());
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  const client = async (c: number): Promise<void> => {
    for (let i = 0; Date.now() < end; i++) {
      const t0 = performance.now();
      let status: string;
      try {
        const res = await fetch(`${server.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'm',
            temperature: 0.7,
            max_tokens: 32,
            messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: images[(c + i) % images.length] } }, { type: 'text', text: `Question ${i % 5}: is the heart enlarged?` }] }],
          }),
        });
        status = String(res.status);
        const body = (await res.json()) as { usage?: { completion_tokens: number } };
        if (res.status === 200) {
          latencies.push(performance.now() - t0);
          tokens += body.usage!.completion_tokens;
        } else if (res.status === 429) {
          if (!/^\d+$/.test(res.headers.get('retry-after') ?? '')) retryAfterMissing++;
          // A bounded client: back off a little, then try again (Retry-After says 1 s or more).
          await new Promise((r) => setTimeout(r, 100));
        }
      } catch (err) {
        status = `error: ${(err as Error).message}`;
      }
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
  const wall = (performance.now() - t0) / 1000;
  await sampler;

  const counts = Object.fromEntries(statuses);
  t.same(Object.keys(counts).filter((s) => s !== '200' && s !== '429'), [], `only 200 and 429: ${JSON.stringify(counts)}`);
  t.ok((counts['200'] ?? 0) > 0, 'requests were served');
  t.ok((counts['429'] ?? 0) > 0, 'the queue bound was reached (32 clients, 4 running + 16 waiting)');
  t.equal(retryAfterMissing, 0, 'every 429 says when to retry');

  // Memory: after the first quarter (allocator and caches warming up), the peak stays near the level it reached.
  const q = Math.max(1, Math.floor(samples.length / 4));
  const warm = [...samples.slice(q, 2 * q)].sort((a, b) => a - b);
  const settled = percentile(warm, 50);
  const peakLate = Math.max(...samples.slice(2 * q));
  const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
  t.ok(peakLate <= settled * 1.15 + 16 * 2 ** 20, `RSS flat: ${mib(settled)} MiB after warm-up, ${mib(peakLate)} MiB at most later (${samples.length} samples)`);

  const sorted = latencies.sort((a, b) => a - b);
  const figures = {
    seconds: Math.round(wall),
    clients: CLIENTS,
    served: counts['200'] ?? 0,
    refused429: counts['429'] ?? 0,
    p50Ms: Math.round(percentile(sorted, 50)),
    p99Ms: Math.round(percentile(sorted, 99)),
    requestsPerS: Number(((counts['200'] ?? 0) / wall).toFixed(1)),
    tokensPerS: Math.round(tokens / wall),
    rssMiB: { first: Number(mib(samples[0]!)), settled: Number(mib(settled)), last: Number(mib(samples[samples.length - 1]!)), max: Number(mib(Math.max(...samples))) },
  };
  t.comment(`load: ${JSON.stringify(figures)}`);
  if (process.env.CXR_LOAD_REPORT) writeFileSync(process.env.CXR_LOAD_REPORT, JSON.stringify(figures, null, 2) + '\n');

  const health = await fetch(`${server.url}/health`);
  t.equal(health.status, 200, '/health answers at the end');
  t.match(await health.json(), { status: 'ok', waiting: 0 });
});
