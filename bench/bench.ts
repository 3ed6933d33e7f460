/**
 * Prefill and decode speed of our engine, optionally against llama.cpp (node-llama-cpp,
 * installed by bench/anchors/install.sh) on the same random-weight GGUF file and thread
 * count. Runs alternate between the engines so that drift in machine load hits both.
 *
 *   npm run bench -- --shape 1b --type q4_0 --threads 2 --prompt 512 --gen 64 --runs 3 --compare
 *
 * Prints a table of medians on stdout, then one JSON line with every raw number.
 * Progress goes to stderr.
 */
import { mkdirSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { native, type NativeModel, type NativeResult } from '../lib/native.js';
import { simdLevel } from '../lib/tensors.js';
import { anchorMissingReason, LlamaCppModel, LLAMA_CPP_ANCHOR_VERSION } from './llama-cpp.js';
import {
  isCurrentSynthetic,
  SHAPES,
  syntheticFileName,
  writeSyntheticLlama,
  type BenchType,
  type ShapeName,
} from './synthetic-llama.js';

interface Options {
  shape: ShapeName;
  type: BenchType;
  threads: number;
  prompt: number;
  gen: number;
  runs: number;
  compare: boolean;
  dir: string;
}

const USAGE = `Usage: npm run bench -- [options]
  --shape tiny|1b|7b   model shape (default 1b)
  --type q4_0|q8_0     weight type (default q4_0)
  --threads N          CPU threads for both engines (default 2)
  --prompt N           prefill tokens, BOS included (default 512)
  --gen N              decode tokens (default 64)
  --runs N             measured runs per engine (default 3)
  --compare            also run llama.cpp (node-llama-cpp ${LLAMA_CPP_ANCHOR_VERSION})
  --dir PATH           GGUF cache folder (default ${path.join(tmpdir(), 'cxr-llava-bench')})`;

function positiveInt(name: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`Expected positive integer for --${name} but received ${v}`);
  return n;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      shape: { type: 'string' },
      type: { type: 'string' },
      threads: { type: 'string' },
      prompt: { type: 'string' },
      gen: { type: 'string' },
      runs: { type: 'string' },
      compare: { type: 'boolean' },
      dir: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const shape = values.shape ?? '1b';
  if (!(shape in SHAPES)) throw new Error(`Expected one of ${Object.keys(SHAPES).join(', ')} for --shape but received ${shape}`);
  const type = values.type ?? 'q4_0';
  if (type !== 'q4_0' && type !== 'q8_0') throw new Error(`Expected q4_0 or q8_0 for --type but received ${type}`);
  return {
    shape: shape as ShapeName,
    type,
    threads: positiveInt('threads', values.threads, 2),
    prompt: positiveInt('prompt', values.prompt, 512),
    gen: positiveInt('gen', values.gen, 64),
    runs: positiveInt('runs', values.runs, 3),
    compare: values.compare ?? false,
    dir: values.dir ?? path.join(tmpdir(), 'cxr-llava-bench'),
  };
}

/** One measured run: tokens processed and milliseconds, for prefill and for decode. */
interface Sample {
  prefillTokens: number;
  prefillMs: number;
  /** Single-token forward passes after the first generated token. */
  decodeTokens: number;
  decodeMs: number;
}

const rate = (tokens: number, ms: number): number => (tokens * 1000) / ms;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A prompt of `n` ids: BOS, then uniform random ids past the byte pieces (never EOS). */
function randomPrompt(n: number, vocabSize: number, bos: number): number[] {
  const ids = [bos];
  while (ids.length < n) ids.push(259 + Math.floor(Math.random() * (vocabSize - 259)));
  return ids;
}

// Our engine, driven through the addon directly: the public generate() takes text only
// and always stops at EOS, while a benchmark needs exact token ids and a fixed length.
async function oursRun(m: NativeModel, prompt: number[], gen: number): Promise<Sample> {
  const r = await new Promise<NativeResult>((resolve, reject) => {
    m.generate(
      {
        segments: [{ tokens: Int32Array.from(prompt) }],
        maxTokens: gen,
        temperature: 0,
        topP: 1,
        topK: 0,
        repeatPenalty: 1,
        repeatLastN: 64,
        seed: 0n,
        stop: [],
        logprobs: 0,
        stopAtEos: false,
      },
      (kind, payload) => {
        if (kind === 'done') resolve(payload as NativeResult);
        else if (kind === 'error') reject(payload as Error);
      },
    );
  });
  if (r.decodeTokens !== gen) throw new Error(`our engine generated ${r.decodeTokens} tokens, expected ${gen} (${r.finishReason})`);
  // decodeMs spans `gen` samplings and `gen - 1` forward passes (the first token comes from prefill).
  return { prefillTokens: r.prefillTokens, prefillMs: r.prefillMs, decodeTokens: r.decodeTokens - 1, decodeMs: r.decodeMs };
}

async function llamaRun(m: LlamaCppModel, prompt: number[], gen: number): Promise<Sample> {
  const r = await m.greedy(prompt, gen, { ignoreEos: true });
  if (r.tokens.length !== gen) throw new Error(`llama.cpp generated ${r.tokens.length} tokens, expected ${gen}`);
  return { prefillTokens: r.prefillTokens, prefillMs: r.prefillMs, decodeTokens: r.decodeTokens, decodeMs: r.decodeMs };
}

function log(msg: string): void {
  process.stderr.write(msg + '\n');
}

async function ensureModel(o: Options): Promise<string> {
  mkdirSync(o.dir, { recursive: true });
  const file = path.join(o.dir, syntheticFileName(o.shape, o.type));
  if (isCurrentSynthetic(file)) {
    log(`using cached ${file}`);
    return file;
  }
  log(`writing ${file} (random weights, ${o.shape} shape, ${o.type})`);
  const t0 = performance.now();
  let shown = -1;
  await writeSyntheticLlama(file, o.shape, o.type, (f, tensor) => {
    const pct = Math.floor(f * 100);
    if (pct !== shown) {
      shown = pct;
      process.stderr.write(`\r  ${String(pct).padStart(3)}%  ${tensor.padEnd(28)}`);
    }
  });
  process.stderr.write('\n');
  log(`  done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return file;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n');
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const missing = o.compare ? anchorMissingReason() : null;
  if (missing) throw new Error(`--compare needs llama.cpp: ${missing}`);
  const file = await ensureModel(o);
  // Both engines spin-wait between parallel steps, so other busy processes skew results badly.
  const loadBefore = loadavg()[0]!;
  if (loadBefore > 0.5) log(`warning: 1-minute load average is ${loadBefore.toFixed(2)}; other processes will skew the numbers`);
  const hp = SHAPES[o.shape];
  const contextSize = o.prompt + o.gen + 16;

  log(`loading (threads ${o.threads}, context ${contextSize}, KV cache f16)`);
  const ours = await native().loadModel({ model: file, threads: o.threads, contextSize, kvType: 'f16' });
  const lc = o.compare ? await LlamaCppModel.load(file, { threads: o.threads, contextSize, batchSize: Math.min(o.prompt, 512) }) : null;
  const bos = ours.info().tokenizer.bos;

  try {
    // Warm-up: touches every weight page of the mmapped file and the code paths once.
    log('warm-up');
    // Twice, alternating: the first run after the other engine was busy is measurably slower.
    for (let i = 0; i < 2; i++) {
      const warm = randomPrompt(Math.min(o.prompt, 64), hp.vocabSize, bos);
      await oursRun(ours, warm, 4);
      if (lc) await llamaRun(lc, warm, 4);
    }

    const samples: { ours: Sample[]; llamaCpp: Sample[] } = { ours: [], llamaCpp: [] };
    for (let r = 0; r < o.runs; r++) {
      // A fresh prompt per run, so no engine can reuse a cached prefix beyond BOS.
      const prompt = randomPrompt(o.prompt, hp.vocabSize, bos);
      // Alternate which engine goes first.
      const order: ('ours' | 'llamaCpp')[] = lc && r % 2 === 1 ? ['llamaCpp', 'ours'] : ['ours', 'llamaCpp'];
      for (const who of order) {
        if (who === 'llamaCpp' && !lc) continue;
        const s = who === 'ours' ? await oursRun(ours, prompt, o.gen) : await llamaRun(lc!, prompt, o.gen);
        samples[who].push(s);
        log(
          `run ${r + 1}/${o.runs} ${who === 'ours' ? 'ours     ' : 'llama.cpp'}: prefill ${rate(s.prefillTokens, s.prefillMs).toFixed(2)} tok/s ` +
            `(${s.prefillTokens} in ${(s.prefillMs / 1000).toFixed(2)} s), decode ${rate(s.decodeTokens, s.decodeMs).toFixed(2)} tok/s`,
        );
      }
    }

    const med = (xs: Sample[], which: 'prefill' | 'decode'): number =>
      median(xs.map((s) => (which === 'prefill' ? rate(s.prefillTokens, s.prefillMs) : rate(s.decodeTokens, s.decodeMs))));
    const cpu = cpus()[0]?.model ?? 'unknown CPU';
    console.log(
      `\n${o.shape} ${o.type}, ${o.threads} threads, prompt ${o.prompt}, gen ${o.gen}, ${o.runs} runs; ${cpu}; our SIMD ${simdLevel()}`,
    );
    // Best-of is shown too: on a busy machine the slow outliers are other processes' doing.
    const best = (xs: Sample[], which: 'prefill' | 'decode'): number =>
      Math.max(...xs.map((s) => (which === 'prefill' ? rate(s.prefillTokens, s.prefillMs) : rate(s.decodeTokens, s.decodeMs))));
    const rows = [['tokens/s', 'ours', ...(lc ? ['llama.cpp', 'ours/llama.cpp'] : [])]];
    for (const which of ['prefill', 'decode'] as const) {
      for (const [stat, f] of [['median', med], ['best', best]] as const) {
        const a = f(samples.ours, which);
        const row = [`${which} ${stat}`, a.toFixed(2)];
        if (lc) {
          const b = f(samples.llamaCpp, which);
          row.push(b.toFixed(2), (a / b).toFixed(3));
        }
        rows.push(row);
      }
    }
    console.log(table(rows));
    console.log(
      JSON.stringify({
        shape: o.shape,
        type: o.type,
        threads: o.threads,
        prompt: o.prompt,
        gen: o.gen,
        runs: o.runs,
        file,
        cpu,
        simd: simdLevel(),
        loadavg: { before: loadBefore, after: loadavg()[0] },
        anchor: lc ? `node-llama-cpp@${LLAMA_CPP_ANCHOR_VERSION}` : null,
        samples,
      }),
    );
  } finally {
    ours.close();
    if (lc) await lc.close();
    await LlamaCppModel.shutdown();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
