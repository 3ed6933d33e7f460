/**
 * The `batch` part of the bench: what running several sequences in one forward pass
 * buys, measured against one sequence at a time in the same run, alternating.
 *
 *   decode: N sequences with short prompts decode together (ignoring EOS); the
 *     aggregate rate is the tokens all of them produced while every one was decoding,
 *     over that time. N = 1 is one sequence alone (what `--parallel 1` gets).
 *   reports: `reports` reports of `gen` new tokens each, on different images, either one
 *     after another or with up to `parallel` in the model at once (a new one starts when
 *     one ends, as `cxr-llava report --parallel N` does); images per minute.
 */
import { native, type NativeImage, type NativeModel, type NativeResult, type NativeSegment } from '../lib/runtime/native.js';

export interface BatchOptions {
  threads: number;
  runs: number;
  /** Sequence counts of the decode measurement, 1 first (the anchor). */
  sequences: number[];
  /** Prompt tokens of each decoding sequence. */
  prompt: number;
  /** Tokens each decoding sequence generates. */
  gen: number;
  /** Reports per run, tokens per report, and sequences in the model at once. */
  reports: number;
  reportGen: number;
  reportPrompt: number;
  parallel: number;
  vocabSize: number;
  imageTokens: number;
  pixels: Float32Array;
  log: (msg: string) => void;
}

export interface BatchResult {
  /** Per sequence count: aggregate decode tokens/s of every run. */
  decode: { sequences: number; rates: number[] }[];
  /** Images per minute of every run, one at a time and `parallel` at once. */
  reports: { parallel: number; perMinute: number[] }[];
}

interface Timed {
  result: NativeResult;
  /** performance.now() of each token event. */
  tokenTimes: number[];
  done: number;
}

function generate(m: NativeModel, segments: NativeSegment[], gen: number): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const tokenTimes: number[] = [];
    m.generate(
      { segments, maxTokens: gen, temperature: 0, topP: 1, topK: 0, repeatPenalty: 1, repeatLastN: 64, seed: 0n, stop: [], logprobs: 0, stopAtEos: false },
      (kind, payload) => {
        if (kind === 'token') tokenTimes.push(performance.now());
        else if (kind === 'done') resolve({ result: payload as NativeResult, tokenTimes, done: performance.now() });
        else reject(payload as Error);
      },
    );
  });
}

function encode(m: NativeModel, pixels: Float32Array): Promise<NativeImage> {
  return new Promise((resolve, reject) => {
    m.encodeImage(pixels, (kind, payload) => {
      if (kind === 'encoded') resolve((payload as { image: NativeImage }).image);
      else reject(payload as Error);
    });
  });
}

/** Prompt ids past the byte pieces, different for every call (no cache reuse beyond BOS). */
let promptSeed = 1;
function randomIds(n: number, vocabSize: number, bos: number | null): Int32Array {
  const ids: number[] = bos === null ? [] : [bos];
  let x = promptSeed++ * 2654435761;
  while (ids.length < n) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    ids.push(259 + (x % (vocabSize - 259)));
  }
  return Int32Array.from(ids);
}

/** N sequences decoding together: tokens made while all N decode, per second. */
async function decodeRate(m: NativeModel, o: BatchOptions, n: number): Promise<number> {
  const bos = m.info().tokenizer.bos;
  const runs = await Promise.all(Array.from({ length: n }, () => generate(m, [{ tokens: randomIds(o.prompt, o.vocabSize, bos) }], o.gen)));
  const start = Math.max(...runs.map((r) => r.tokenTimes[0]!));
  const end = Math.min(...runs.map((r) => r.tokenTimes[r.tokenTimes.length - 1]!));
  const tokens = runs.reduce((s, r) => s + r.tokenTimes.filter((t) => t > start && t <= end).length, 0);
  return (tokens * 1000) / (end - start);
}

/** A different image for each report: the bench pixels with a few values changed. */
function imageFor(o: BatchOptions, i: number): Float32Array {
  const p = o.pixels.slice();
  for (let k = 0; k < 64; k++) p[(i * 7919 + k * 104729) % p.length] = ((i + k) % 5) - 2;
  return p;
}

/** `o.reports` reports, at most `width` in the model at once; images per minute. */
async function reportRate(m: NativeModel, o: BatchOptions, width: number, run: number): Promise<number> {
  const bos = m.info().tokenizer.bos;
  const t0 = performance.now();
  let next = 0;
  const one = async (i: number): Promise<void> => {
    const image = await encode(m, imageFor(o, run * o.reports + i));
    const before = randomIds(Math.ceil(o.reportPrompt / 2), o.vocabSize, bos);
    const after = randomIds(Math.floor(o.reportPrompt / 2), o.vocabSize, null);
    const r = await generate(m, [{ tokens: before }, { image, id: 0 }, { tokens: after }], o.reportGen);
    if (r.result.decodeTokens !== o.reportGen) throw new Error(`report ${i}: ${r.result.decodeTokens} tokens (${r.result.finishReason})`);
  };
  const lane = async (): Promise<void> => {
    while (next < o.reports) await one(next++);
  };
  await Promise.all(Array.from({ length: width }, lane));
  return (o.reports * 60000) / (performance.now() - t0);
}

export async function benchBatch(o: BatchOptions, textFile: string, mmproj: string): Promise<BatchResult> {
  const maxSeq = Math.max(...o.sequences, o.parallel);
  const decodeCtx = o.prompt + o.gen + 16;
  const reportCtx = o.reportPrompt + o.imageTokens + o.reportGen + 16;
  o.log(`[batch] loading (threads ${o.threads}, up to ${maxSeq} sequences)`);
  const dm = await native().loadModel({ model: textFile, threads: o.threads, contextSize: decodeCtx, kvType: 'f16', parallel: maxSeq });
  const res: BatchResult = { decode: o.sequences.map((sequences) => ({ sequences, rates: [] })), reports: [] };
  try {
    await decodeRate(dm, { ...o, gen: 4 }, 1); // warm-up: every weight page touched once
    for (let r = 0; r < o.runs; r++) {
      // Alternate the order, so drift in machine load hits every count alike.
      const order = r % 2 === 0 ? res.decode : [...res.decode].reverse();
      for (const d of order) {
        const rate = await decodeRate(dm, o, d.sequences);
        d.rates.push(rate);
        o.log(`[batch] run ${r + 1}/${o.runs} decode, ${d.sequences} sequence(s): ${rate.toFixed(2)} tok/s`);
      }
    }
  } finally {
    dm.close();
  }
  if (o.reports > 0) {
    const rm = await native().loadModel({ model: textFile, mmproj, threads: o.threads, contextSize: reportCtx, kvType: 'f16', parallel: o.parallel });
    res.reports = [1, o.parallel].map((parallel) => ({ parallel, perMinute: [] }));
    try {
      for (let r = 0; r < o.runs; r++) {
        const order = r % 2 === 0 ? res.reports : [...res.reports].reverse();
        for (const set of order) {
          const perMinute = await reportRate(rm, o, set.parallel, r * 2 + set.parallel);
          set.perMinute.push(perMinute);
          o.log(`[batch] run ${r + 1}/${o.runs} ${o.reports} reports, ${set.parallel} at once: ${perMinute.toFixed(3)} images/min`);
        }
      }
    } finally {
      rm.close();
    }
  }
  return res;
}
