/**
 * The accepted range of every numeric option of `loadModel()` and
 * `generate()`, in one table. The API checks options against it and the CLI
 * parses its flags with it, so `--top-p 0` and `{ topP: 0 }` fail with the same
 * message before any work is done. The README's option tables list these.
 */
import type { NumberRange } from '../validate.js';
import { limits } from './limits.js';

export interface GenerateRanges {
  maxTokens: NumberRange;
  temperature: NumberRange;
  topP: NumberRange;
  topK: NumberRange;
  repeatPenalty: NumberRange;
  logprobs: NumberRange;
}

export interface LoadRanges {
  /** 0 picks the default. */
  threads: NumberRange;
  /** 0 picks the default. */
  contextSize: NumberRange;
  /** CUDA device index. */
  device: NumberRange;
}

/** Ranges of generate()'s options (and report/ask/differential/chat send). */
export function generateRanges(): GenerateRanges {
  const l = limits();
  return {
    maxTokens: { integer: true, min: 1, max: l.maxContext },
    temperature: { min: 0, max: 100 },
    topP: { min: 0, minOpen: true, max: 1 },
    topK: { integer: true, min: 0 },
    repeatPenalty: { min: 0, minOpen: true, max: 100 },
    logprobs: { integer: true, min: 0, max: l.maxLogprobs },
  };
}

/** Ranges of loadModel()'s options. */
export function loadRanges(): LoadRanges {
  const l = limits();
  return {
    threads: { integer: true, min: 0, max: l.maxThreads },
    contextSize: { integer: true, min: 0, max: l.maxContext },
    device: { integer: true, min: 0, max: 1023 },
  };
}

/** The same, as the CLI takes them: no 0-for-default, and a context of at least 16. */
export function cliLoadRanges(): LoadRanges {
  const l = limits();
  return {
    threads: { integer: true, min: 1, max: l.maxThreads },
    contextSize: { integer: true, min: 16, max: l.maxContext },
    device: { integer: true, min: 0, max: 1023 },
  };
}
