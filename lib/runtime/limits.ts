/**
 * The engine's size limits, as the addon exports them (`limits`, from
 * native/engine/types/limits.h): the one definition both sides read.
 */
import { native } from './native.js';

export interface Limits {
  /** Largest decoded image accepted, in pixels (decompression bombs). */
  maxImagePixels: number;
  /** Largest KV cache, in tokens. */
  maxContext: number;
  /** Most CPU threads a model may use. */
  maxThreads: number;
  /** Most alternatives `logprobs` may ask for per token. */
  maxLogprobs: number;
}

let cached: Limits | undefined;

/** The limits, read from the addon once. */
export function limits(): Limits {
  cached ??= Object.freeze({ ...native().limits });
  return cached;
}
