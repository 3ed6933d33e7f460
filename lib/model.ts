/**
 * `loadModel()` and the `Model` it returns: tokenization, generation and
 * streaming over the native engine.
 */
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { CxrError, fromNative, invalidParameterError } from './errors.js';
import { native, type NativeModel, type NativeModelInfo, type NativeResult, type NativeSegment } from './native.js';
import { chatText, type ChatMessage } from './prompt.js';
import { optBoolean, optEnum, optFunction, optInteger, optNumber, optStringArray, reqString } from './validate.js';

/** Progress of a long operation. */
export interface Progress {
  /** What is happening, e.g. `load`. */
  phase: string;
  /** Fraction done, 0 to 1. */
  progress: number;
}

export interface LoadModelOptions {
  /** Path to the text model GGUF. */
  model: string;
  /** Path to the vision projector GGUF ("mmproj"), for images (optional). */
  mmproj?: string;
  /** CPU threads (optional, default: the number of cores, halved on machines with 8 or more hardware threads). */
  threads?: number;
  /** KV cache length in tokens (optional, default min(trained context, 4096)). */
  contextSize?: number;
  /** KV cache element type (optional, default 'f16'; 'f32' doubles its memory). */
  kvCacheType?: 'f16' | 'f32';
  /** Called as loading proceeds (optional). */
  onProgress?: (p: Progress) => void;
}

/** What a loaded model is: file metadata, architecture, tensor table and runtime settings. */
export interface ModelInfo {
  path: string;
  /** File size in bytes. */
  fileSize: number;
  /** `general.architecture`, e.g. "llama". */
  architecture: string;
  /** `general.name`, if the file has one. */
  name?: string;
  /** GGUF metadata; arrays longer than 64 elements are summarised as `{ type, length }`. */
  metadata: NativeModelInfo['metadata'];
  /** Every tensor: name, type, dimensions (ggml order) and size in bytes. */
  tensors: NativeModelInfo['tensors'];
  /** Count of tensors per type, e.g. `{ q8_0: 224, f32: 65 }`. */
  tensorTypes: Record<string, number>;
  hparams: NativeModelInfo['hparams'];
  runtime: NativeModelInfo['runtime'];
  tokenizer: NativeModelInfo['tokenizer'];
  mmproj?: { path: string; fileSize: number };
}

export interface TokenizeOptions {
  /** Put the BOS token first (optional, default false). */
  bos?: boolean;
  /** Turn literal `<s>` and `</s>` into control tokens (optional, default false). */
  special?: boolean;
}

/** One generated token with its log-probability and the most likely alternatives. */
export interface TokenLogprob {
  token: number;
  logprob: number;
  top: { token: number; logprob: number }[];
}

export interface GenerateOptions {
  /** Prompt text. With `raw`, fed as BOS + its SentencePiece encoding; otherwise wrapped in the chat format as the user's message. */
  prompt?: string;
  /** A conversation in the LLaMA-2 chat format, instead of `prompt` (optional). */
  messages?: ChatMessage[];
  /** Feed `prompt` without the chat template (optional, default false). */
  raw?: boolean;
  /** Most tokens to generate (optional, default 512). */
  maxTokens?: number;
  /** Sampling temperature; 0 is greedy (optional, default 0.2, the official setting). */
  temperature?: number;
  /** Nucleus sampling mass (optional, default 0.8, the official setting). */
  topP?: number;
  /** Keep only the k most likely tokens; 0 disables (optional, default 0). */
  topK?: number;
  /** Penalty for repeating recent tokens; 1 disables (optional, default 1). */
  repeatPenalty?: number;
  /** Random seed; the same seed gives the same text (optional, default random, reported in the result). */
  seed?: number | bigint;
  /** Strings that end generation; not included in the text (optional). */
  stop?: string | string[];
  /** Return this many alternatives with each token's log-probability (optional, default 0: none). */
  logprobs?: number;
  /** Stops generation between tokens; the promise rejects with the signal's reason (optional). */
  signal?: AbortSignal;
  /** Called with each piece of text as it is produced (optional). */
  onToken?: (text: string, token: number) => void;
}

export interface Timings {
  /** Prompt positions computed (cached positions are not counted). */
  prefillTokens: number;
  prefillMs: number;
  decodeTokens: number;
  decodeMs: number;
  /** Time spent encoding an image, when one was encoded. */
  encodeMs?: number;
}

export interface GenerateResult {
  text: string;
  /** Generated token ids (the final EOS included when generation stopped on it). */
  tokens: number[];
  /** Per-token log-probabilities, when `logprobs` was asked for. */
  logprobs?: TokenLogprob[];
  /** `stop`: EOS or a stop string; `length`: maxTokens or the context ran out. */
  finishReason: 'stop' | 'length';
  /** The seed used, so a run can be repeated. */
  seed: bigint;
  timings: Timings;
}

/** A loaded model. Create it with `loadModel()`; free it with `close()`. */
export class Model {
  #native: NativeModel | null;
  #queue: Promise<unknown> = Promise.resolve();
  readonly info: ModelInfo;

  /** @internal */
  constructor(nativeModel: NativeModel, info: ModelInfo) {
    this.#native = nativeModel;
    this.info = info;
  }

  #open(): NativeModel {
    if (!this.#native) throw new CxrError('ERR_MODEL_CLOSED', 'The model is closed');
    return this.#native;
  }

  /** SentencePiece token ids of `text`. */
  tokenize(text: string, options: TokenizeOptions = {}): number[] {
    if (typeof text !== 'string') throw invalidParameterError('text', 'string', text);
    const bos = optBoolean('bos', options.bos, false);
    const special = optBoolean('special', options.special, false);
    return Array.from(this.#open().tokenize(text, bos, special));
  }

  /** Text of a token sequence (a leading dummy-prefix space is dropped, as SentencePiece does). */
  detokenize(ids: readonly number[]): string {
    return this.#open().detokenize(this.#ids('ids', ids));
  }

  /** The vocabulary piece of one token, e.g. "▁heart". */
  tokenPiece(id: number): string {
    optInteger('id', id, 0, 0, this.info.hparams.vocabSize - 1);
    return this.#open().tokenPiece(id);
  }

  /**
   * Logits of every position of `ids`, evaluated from an empty cache, as one
   * `[ids.length × vocabSize]` array. Synchronous: meant for checking the
   * engine against a reference on small models.
   */
  logits(ids: readonly number[]): Float32Array {
    try {
      return this.#open().evalLogits(this.#ids('ids', ids));
    } catch (err) {
      throw fromNative(err);
    }
  }

  #ids(name: string, ids: readonly number[]): Int32Array {
    if (!Array.isArray(ids) || !ids.every((x) => Number.isInteger(x))) throw invalidParameterError(name, 'array of integer token ids', ids);
    return Int32Array.from(ids);
  }

  /** The prompt token ids `generate()` would feed for these options (no image). */
  promptTokens(options: Pick<GenerateOptions, 'prompt' | 'messages' | 'raw'>): number[] {
    return Array.from(this.#segments(options)[0]!.tokens!);
  }

  #segments(options: Pick<GenerateOptions, 'prompt' | 'messages' | 'raw'>): NativeSegment[] {
    const m = this.#open();
    const raw = optBoolean('raw', options.raw, false);
    if (options.messages !== undefined) {
      if (raw) throw invalidParameterError('raw', 'false when messages are given', raw);
      if (!Array.isArray(options.messages)) throw invalidParameterError('messages', 'array of chat messages', options.messages);
      return [{ tokens: m.tokenize(chatText(options.messages), true, true) }];
    }
    const prompt = options.prompt;
    if (typeof prompt !== 'string') throw invalidParameterError('prompt', 'string (or messages)', prompt);
    if (raw) return [{ tokens: m.tokenize(prompt, true, false) }];
    return [{ tokens: m.tokenize(chatText([{ role: 'user', content: prompt }]), true, true) }];
  }

  /**
   * Generates text. Calls on one model run one at a time, in call order.
   * Rejects with the signal's reason when aborted.
   */
  generate(options: GenerateOptions): Promise<GenerateResult> {
    if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'object', options);
    const segments = this.#segments(options);
    const maxTokens = optInteger('maxTokens', options.maxTokens, 512, 1);
    const temperature = optNumber('temperature', options.temperature, 0.2, 0, 100);
    const topP = optNumber('topP', options.topP, 0.8, 0, 1);
    const topK = optInteger('topK', options.topK, 0, 0);
    const repeatPenalty = optNumber('repeatPenalty', options.repeatPenalty, 1, 0.01, 100);
    const logprobs = optInteger('logprobs', options.logprobs, 0, 0, 100);
    const stop = optStringArray('stop', options.stop);
    const onToken = optFunction<(text: string, token: number) => void>('onToken', options.onToken);
    let seed: bigint;
    if (options.seed === undefined) seed = randomBytes(8).readBigUInt64LE();
    else if (typeof options.seed === 'bigint' && options.seed >= 0n && options.seed < 1n << 64n) seed = options.seed;
    else if (typeof options.seed === 'number' && Number.isSafeInteger(options.seed) && options.seed >= 0) seed = BigInt(options.seed);
    else throw invalidParameterError('seed', 'non-negative integer', options.seed);
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidParameterError('signal', 'AbortSignal', signal);

    const run = async (): Promise<GenerateResult> => {
      const m = this.#open();
      signal?.throwIfAborted();
      const result = await new Promise<NativeResult>((resolve, reject) => {
        let abort: (() => void) | undefined;
        const onAbort = (): void => abort?.();
        try {
          abort = m.generate(
            { segments, maxTokens, temperature, topP, topK, repeatPenalty, repeatLastN: 64, seed, stop, logprobs, stopAtEos: true },
            (kind, payload) => {
              if (kind === 'token') {
                if (onToken && payload.text.length > 0) {
                  try {
                    onToken(payload.text, payload.token);
                  } catch (err) {
                    // A throwing callback ends the generation with its error.
                    abort?.();
                    signal?.removeEventListener('abort', onAbort);
                    reject(err);
                  }
                }
                return;
              }
              signal?.removeEventListener('abort', onAbort);
              if (kind === 'done') resolve(payload);
              else reject(fromNative(payload));
            },
          );
        } catch (err) {
          reject(fromNative(err));
          return;
        }
        signal?.addEventListener('abort', onAbort, { once: true });
      });
      if (result.finishReason === 'abort') {
        if (signal?.aborted) throw signal.reason;
        throw new CxrError('ERR_ABORTED', 'Generation was aborted because the model was closed');
      }
      const tokens = result.tokens.filter((t) => t.token >= 0);
      const out: GenerateResult = {
        text: result.text,
        tokens: tokens.map((t) => t.token),
        finishReason: result.finishReason,
        seed,
        timings: {
          prefillTokens: result.prefillTokens,
          prefillMs: result.prefillMs,
          decodeTokens: result.decodeTokens,
          decodeMs: result.decodeMs,
        },
      };
      if (logprobs > 0) out.logprobs = tokens.map((t) => ({ token: t.token, logprob: t.logprob!, top: t.top ?? [] }));
      return out;
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  /**
   * Like `generate()`, as an async iterator of text chunks. Breaking out of the
   * loop stops the generation.
   */
  async *stream(options: GenerateOptions): AsyncGenerator<string, GenerateResult, undefined> {
    const chunks: string[] = [];
    let wake: (() => void) | undefined;
    const controller = new AbortController();
    const outer = options.signal;
    const relay = (): void => controller.abort(outer?.reason);
    if (outer?.aborted) relay();
    outer?.addEventListener('abort', relay, { once: true });
    let finished = false;
    const done = this.generate({
      ...options,
      signal: controller.signal,
      onToken: (text, token) => {
        options.onToken?.(text, token);
        chunks.push(text);
        wake?.();
      },
    }).finally(() => {
      finished = true;
      wake?.();
    });
    done.catch(() => undefined); // surfaced below, not as an unhandled rejection
    try {
      for (;;) {
        if (chunks.length > 0) {
          yield chunks.shift()!;
          continue;
        }
        if (finished) break;
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
      return await done;
    } finally {
      outer?.removeEventListener('abort', relay);
      if (!finished) {
        controller.abort(new CxrError('ERR_ABORTED', 'The stream was closed before generation finished'));
        await done.catch(() => undefined);
      }
    }
  }

  /** Frees the model. A running generation is aborted; later calls throw ERR_MODEL_CLOSED. */
  async close(): Promise<void> {
    if (!this.#native) return;
    const m = this.#native;
    this.#native = null;
    m.close();
    await this.#queue;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Loads a model. Errors name the file and the problem (`ERR_IO`, `ERR_GGUF`, `ERR_MODEL`). */
export async function loadModel(options: LoadModelOptions): Promise<Model> {
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'object', options);
  const modelPath = reqString('model', options.model);
  const threads = optInteger('threads', options.threads, 0, 0, 1024);
  const contextSize = optInteger('contextSize', options.contextSize, 0, 0, 1 << 20);
  const kvType = optEnum('kvCacheType', options.kvCacheType, ['f16', 'f32'] as const, 'f16');
  const onProgress = optFunction<(p: Progress) => void>('onProgress', options.onProgress);
  let mmproj: ModelInfo['mmproj'];
  if (options.mmproj !== undefined) {
    const p = reqString('mmproj', options.mmproj);
    const st = await stat(p).catch((err: NodeJS.ErrnoException) => {
      throw new CxrError('ERR_IO', `${p}: cannot open the mmproj file (${err.code ?? err.message})`);
    });
    mmproj = { path: p, fileSize: st.size };
  }
  onProgress?.({ phase: 'load', progress: 0 });
  let nm: NativeModel;
  try {
    nm = await native().loadModel({ model: modelPath, threads, contextSize, kvType });
  } catch (err) {
    throw fromNative(err);
  }
  const raw = nm.info();
  const tensorTypes: Record<string, number> = {};
  for (const t of raw.tensors) tensorTypes[t.type] = (tensorTypes[t.type] ?? 0) + 1;
  const name = raw.metadata['general.name'];
  const info: ModelInfo = {
    path: raw.path,
    fileSize: raw.fileSize,
    architecture: String(raw.metadata['general.architecture']),
    ...(typeof name === 'string' ? { name } : {}),
    metadata: raw.metadata,
    tensors: raw.tensors,
    tensorTypes,
    hparams: raw.hparams,
    runtime: raw.runtime,
    tokenizer: raw.tokenizer,
    ...(mmproj ? { mmproj } : {}),
  };
  onProgress?.({ phase: 'load', progress: 1 });
  return new Model(nm, info);
}
