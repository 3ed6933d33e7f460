/**
 * `cxr-llava bench`: how fast this machine runs the loaded model. Each run
 * encodes a synthetic image (the vision tower), prefills the report prompt
 * around it and decodes a fixed number of tokens (end-of-text ignored, so every
 * run decodes the same count). Medians over the runs are printed.
 */
import { REPORT_PROMPT } from '../runtime/prompt.js';
import type { Model } from '../runtime/model.js';
import { perSecond } from './format.js';

export interface BenchOptions {
  model: Model;
  runs: number;
  tokens: number;
}

export interface BenchResult {
  model: string;
  mmproj: string | null;
  threads: number;
  simd: string;
  runs: number;
  /** Medians. encodeMs is null for a text-only model. */
  encodeMs: number | null;
  prefillTokens: number;
  prefillTokensPerSecond: number;
  decodeTokens: number;
  decodeTokensPerSecond: number;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A smooth diagonal gradient, already normalised: no file, no decoder, same work as a radiograph. */
function syntheticPixels(size: number, channels: number): Float32Array {
  const px = new Float32Array(channels * size * size);
  for (let c = 0; c < channels; c++)
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) px[(c * size + y) * size + x] = (x + y) / (2 * size) - 0.5;
  return px;
}

export async function runBench(o: BenchOptions, onRun?: (i: number) => void): Promise<BenchResult> {
  const { model } = o;
  const vision = model.info.vision;
  const encode: number[] = [];
  const prefill: number[] = [];
  const prefillTok: number[] = [];
  const decode: number[] = [];
  for (let i = 0; i < o.runs; i++) {
    onRun?.(i);
    const gen = { maxTokens: o.tokens, ignoreEos: true, temperature: 0 };
    let r;
    if (vision) {
      // A fresh encoding each run: a new image invalidates the KV cache from the
      // image onwards, so every run prefills the image and the prompt again.
      const img = await model.encodeImage(syntheticPixels(vision.imageSize, vision.channels));
      encode.push(img.encodeMs);
      r = await model.generate({ ...gen, image: img, prompt: REPORT_PROMPT });
    } else {
      // Without a vision tower: a raw prompt from an empty cache, so nothing is reused.
      r = await model.generate({ ...gen, raw: true, prompt: `${i} ${REPORT_PROMPT}` });
    }
    prefill.push(perSecond(r.timings.prefillTokens, r.timings.prefillMs));
    prefillTok.push(r.timings.prefillTokens);
    decode.push(perSecond(r.timings.decodeTokens, r.timings.decodeMs));
  }
  return {
    model: model.info.path,
    mmproj: vision?.path ?? null,
    threads: model.info.runtime.threads,
    simd: String(model.info.runtime.simd),
    runs: o.runs,
    encodeMs: vision ? median(encode) : null,
    prefillTokens: median(prefillTok),
    prefillTokensPerSecond: median(prefill),
    decodeTokens: o.tokens,
    decodeTokensPerSecond: median(decode),
  };
}

export function formatBench(r: BenchResult): string {
  return [
    `model    ${r.model}`,
    `mmproj   ${r.mmproj ?? '(none: text only)'}`,
    `threads  ${r.threads}, ${r.simd} kernels, median of ${r.runs} run${r.runs === 1 ? '' : 's'}`,
    `encode   ${r.encodeMs === null ? 'n/a' : `${r.encodeMs.toFixed(1)} ms per image`}`,
    `prefill  ${r.prefillTokensPerSecond.toFixed(1)} tok/s (${r.prefillTokens} tokens)`,
    `decode   ${r.decodeTokensPerSecond.toFixed(1)} tok/s (${r.decodeTokens} tokens)`,
  ].join('\n');
}
