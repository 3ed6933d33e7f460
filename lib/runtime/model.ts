/**
 * `loadModel()` and the `Model` it returns: tokenization, generation and
 * streaming over the native engine.
 */
import { randomBytes } from 'node:crypto';
import { CxrError, fromNative, invalidParameterError } from '../errors.js';
import { native, type NativeImage, type NativeModel, type NativeModelInfo, type NativePixels, type NativeResult, type NativeSegment } from './native.js';
import { decodeImage, type DecodeOptions, type ImageInput } from '../inputs/image.js';
import { EncodedImage } from './encoded-image.js';
import { chatText, DIFFERENTIAL_PROMPT, IMAGE_PLACEHOLDER, REPORT_PROMPT, type ChatMessage } from './prompt.js';
import { labelReport } from '../eval/labeler.js';
import type { Findings } from '../eval/observations.js';
import { checkNumber, optBoolean, optEnum, optFunction, optInteger, optNumberIn, optSeed, optStringArray, reqString, tokenIds } from '../validate.js';
import { generateRanges, loadRanges } from './option-ranges.js';

/** Progress of a long operation. */
export interface Progress {
  /** What is happening, e.g. `load`. */
  phase: string;
  /** Fraction done, 0 to 1. */
  progress: number;
}

export interface LoadModelOptions {
  /** Path to the text model GGUF (optional, default: the cached default model, see `cxr-llava pull`). */
  model?: string;
  /** Path to the vision projector GGUF ("mmproj"), for images (optional; with the default model, its own mmproj). */
  mmproj?: string;
  /** Which cached type to use when `model` is not given (optional, default: the most recently pulled). */
  type?: string;
  /** Download and convert the default model if it is not cached yet (optional, default false). */
  pull?: boolean;
  /** CPU threads (optional, default: the number of cores, halved on machines with 8 or more hardware threads). */
  threads?: number;
  /** KV cache length in tokens (optional, default min(trained context, 4096)). */
  contextSize?: number;
  /**
   * Where the model runs: `'cpu'`, `'cuda'` (an NVIDIA GPU; needs an addon built with `npm run build:cuda`),
   * or `'auto'`, CUDA when the addon has it and a usable device is there, else the CPU
   * (optional, default 'auto'). `model.info.runtime` says which was chosen and why.
   */
  backend?: 'auto' | 'cpu' | 'cuda';
  /** CUDA device index (optional, default 0). */
  device?: number;
  /** KV cache element type (optional, default 'f16'; 'f32' doubles its memory). */
  kvCacheType?: 'f16' | 'f32';
  /**
   * How many sequences run together: concurrent `generate()`/`report()` calls share each
   * forward pass, up to this many at a time; later calls wait their turn (optional, default 4).
   */
  parallel?: number;
  /**
   * KV cache positions shared by all sequences (optional, default contextSize × parallel).
   * A call whose prompt plus maxTokens does not fit in what is free waits until it does.
   */
  kvCacheSize?: number;
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
  /** The vision tower, when an mmproj was loaded. */
  vision?: NonNullable<NativeModelInfo['vision']>;
}

export { EncodedImage };

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
  /** A radiograph (path, Buffer, raw pixels) or an already encoded image; it takes the place of `<image>` in the first user turn (optional). */
  image?: ImageInput | EncodedImage;
  /** Display window for a DICOM or 16-bit image, instead of the file's VOI or the data range (optional). */
  window?: { center: number; width: number };
  /** Which of a DICOM file's VOI LUTs or windows to use, 1-based (optional, default 1). */
  voi?: number;
  /** Prompt text. With `raw`, fed as BOS + its SentencePiece encoding; otherwise wrapped in the chat format as the user's message. */
  prompt?: string;
  /** A conversation in the LLaMA-2 chat format, instead of `prompt` (optional). */
  messages?: ChatMessage[];
  /** Feed `prompt` without the chat template (optional, default false). */
  raw?: boolean;
  /** Prompt token ids, fed as they are (no BOS added), instead of `prompt` or `messages` (optional). */
  tokens?: number[];
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
  /** Keep going past the end-of-sequence token, e.g. for benchmarks (optional, default false). */
  ignoreEos?: boolean;
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
  /** Warnings about the image, e.g. a lateral view or a multi-frame DICOM (present when there is an image). */
  warnings?: string[];
  /** The image's DICOM SOP Instance UID, when it has one. */
  sopInstanceUid?: string;
  timings: Timings;
}

/** What `report()` gives: the generation result and the CheXpert labels of its text (`labelReport(text)`). */
export interface ReportResult extends GenerateResult {
  /** The 14 CheXpert observations the report states, each positive, negative or uncertain; unmentioned ones are left out. */
  findings: Findings;
}

/** A loaded model. Create it with `loadModel()`; free it with `close()`. */
export class Model {
  #native: NativeModel | null;
  /** Calls still running, so close() can wait for them. */
  #inflight = new Set<Promise<unknown>>();
  /** Settles when the latest logits() call ends; calls made after it wait for it. */
  #gate: Promise<undefined> | undefined;
  readonly info: ModelInfo;

  /** @internal */
  constructor(nativeModel: NativeModel, info: ModelInfo) {
    this.#native = nativeModel;
    this.info = info;
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#native === null;
  }

  #open(): NativeModel {
    if (!this.#native) throw new CxrError('ERR_MODEL_CLOSED', 'The model is closed');
    return this.#native;
  }

  /**
   * Encoded images this model's engine holds, and the memory they take: each
   * `EncodedImage` still reachable (or not yet collected), and any a running
   * generation reads. Dropping the objects, `image.dispose()` or `close()` frees them.
   */
  encodedImages(): { count: number; bytes: number } {
    return this.#open().imageStats();
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
    checkNumber('id', id, { integer: true, min: 0, max: this.info.hparams.vocabSize - 1 });
    return this.#open().tokenPiece(id);
  }

  /**
   * Logits of every position of `ids`, evaluated from an empty cache, as one
   * `[ids.length × vocabSize]` array: for checking the engine against a
   * reference. Runs on the engine's thread, after the calls made before it and
   * before those made after it (it needs the engine to itself).
   */
  logits(ids: readonly number[]): Promise<Float32Array> {
    let input: Int32Array;
    try {
      input = this.#ids('ids', ids);
      if (input.length === 0) throw invalidParameterError('ids', 'non-empty array of token ids', ids);
    } catch (err) {
      return Promise.reject(err);
    }
    // The evaluation starts from an empty cache, which the running calls rely
    // on: it waits for the calls made before it.
    const before = [...this.#inflight];
    const run = async (): Promise<Float32Array> => {
      await Promise.all(before);
      return new Promise<Float32Array>((resolve, reject) => {
        try {
          this.#open().evalLogits(input, (kind, payload) => {
            if (kind === 'logits') resolve(payload);
            else reject(fromNative(payload));
          });
        } catch (err) {
          reject(fromNative(err));
        }
      });
    };
    const p = this.#track(run());
    // Calls made from now on wait for it: one started meanwhile would make the engine refuse it (ERR_BUSY).
    const gate = p.then(
      () => undefined,
      () => undefined,
    );
    this.#gate = gate;
    void gate.then(() => {
      if (this.#gate === gate) this.#gate = undefined;
    });
    return p;
  }

  /** `work` now, or once the last logits() call made before it has ended. */
  #afterGate<T>(work: () => Promise<T>): Promise<T> {
    const gate = this.#gate;
    return gate ? gate.then(work) : work();
  }

  /** The one check token ids get: the addon and the engine take them as valid. */
  #ids(name: string, ids: readonly number[]): Int32Array {
    return tokenIds(name, ids, this.info.hparams.vocabSize);
  }

  /**
   * The prompt exactly as `generate()` feeds it: token ids, with `-1` standing
   * for each image embedding row when `image` is true. See the README's
   * "Prompt format" for how the official code builds this sequence.
   */
  promptTokens(options: Pick<GenerateOptions, 'prompt' | 'messages' | 'raw' | 'tokens'> & { image?: boolean }): number[] {
    const imageTokens = options.image ? (this.info.vision?.tokens ?? 0) : 0;
    if (options.image && imageTokens === 0) throw new CxrError('ERR_MODEL', `${this.info.path}: no vision projector (mmproj) is loaded`);
    const out: number[] = [];
    for (const s of this.#segments(options, options.image === true)) {
      if (s.tokens) out.push(...s.tokens);
      else out.push(...new Array<number>(imageTokens).fill(-1));
    }
    return out;
  }

  /** Prompt segments: token runs, and one embedding placeholder where the image goes. */
  #segments(options: Pick<GenerateOptions, 'prompt' | 'messages' | 'raw' | 'tokens'>, withImage: boolean, image?: EncodedImage): NativeSegment[] {
    const m = this.#open();
    const raw = optBoolean('raw', options.raw, false);
    if (options.tokens !== undefined) {
      if (withImage || options.prompt !== undefined || options.messages !== undefined) {
        throw invalidParameterError('tokens', 'the only prompt (no prompt, messages or image with it)', options.tokens);
      }
      const ids = this.#ids('tokens', options.tokens);
      if (ids.length === 0) throw invalidParameterError('tokens', 'non-empty array of token ids', options.tokens);
      return [{ tokens: ids }];
    }
    let text: string;
    if (options.messages !== undefined) {
      if (raw) throw invalidParameterError('raw', 'false when messages are given', raw);
      if (!Array.isArray(options.messages)) throw invalidParameterError('messages', 'array of chat messages', options.messages);
      text = chatText(options.messages, undefined, withImage);
    } else {
      const prompt = options.prompt;
      if (typeof prompt !== 'string') throw invalidParameterError('prompt', 'string (or messages)', prompt);
      if (raw) {
        if (withImage) throw invalidParameterError('raw', 'false when an image is given', raw);
        return [{ tokens: m.tokenize(prompt, true, false) }];
      }
      text = chatText([{ role: 'user', content: prompt }], undefined, withImage);
    }
    if (!withImage) return [{ tokens: m.tokenize(text, true, true) }];
    // The official code splits the text at <image> and encodes each side on its
    // own (each with SentencePiece's dummy prefix); the embeddings go between.
    const at = text.indexOf(IMAGE_PLACEHOLDER);
    const before = text.slice(0, at);
    const after = text.slice(at + IMAGE_PLACEHOLDER.length);
    const embd: NativeSegment = image ? EncodedImage.segment(image, this) : {};
    return [{ tokens: m.tokenize(before, true, true) }, embd, { tokens: m.tokenize(after, false, true) }];
  }

  /**
   * Runs the vision tower on a radiograph: decoding and the official
   * preprocessing (grayscale, Lanczos resize to 512 on the short side, centre
   * crop, normalisation), then the ViT and projector. A `Float32Array` is taken
   * as already-preprocessed pixels `[channels × size × size]`.
   */
  encodeImage(input: ImageInput | Float32Array, options: { signal?: AbortSignal } & Pick<DecodeOptions, 'window' | 'voi' | 'name'> = {}): Promise<EncodedImage> {
    const vision = this.info.vision;
    if (!vision) return Promise.reject(new CxrError('ERR_MODEL', `${this.info.path}: no vision projector (mmproj) is loaded, so images cannot be read; pass mmproj to loadModel()`));
    // Raw pixels are taken as they are now: the call may wait in the queue, and
    // the caller may reuse or transfer the array meanwhile.
    const own = input instanceof Float32Array ? input.slice() : input;
    return this.#track(this.#afterGate(() => this.#encode(own, options.signal, options)));
  }

  /**
   * The work of encodeImage(). Decoding (sharp, the DICOM reader) runs in JS;
   * the decoded pixels go to the engine, which preprocesses them, runs the
   * vision tower and keeps the embeddings: nothing but a handle comes back.
   */
  async #encode(input: ImageInput | Float32Array, signal: AbortSignal | undefined, decode: Pick<DecodeOptions, 'window' | 'voi' | 'name'> = {}): Promise<EncodedImage> {
    let pixels: Float32Array | NativePixels;
    let source = '<pixels>';
    let warnings: string[] = [];
    let sopInstanceUid: string | undefined;
    if (input instanceof Float32Array) {
      pixels = input;
    } else {
      const img = await decodeImage(input, {
        ...(decode.name !== undefined ? { name: decode.name } : {}),
        ...(decode.window ? { window: decode.window } : {}),
        ...(decode.voi !== undefined ? { voi: decode.voi } : {}),
      });
      pixels = { data: img.data, width: img.width, height: img.height, channels: img.channels };
      ({ source, warnings } = img);
      sopInstanceUid = img.sopInstanceUid;
    }
    const m = this.#open();
    signal?.throwIfAborted();
    const r = await new Promise<{ image: NativeImage; ms: number; preprocessMs: number }>((resolve, reject) => {
      let abort: (() => void) | undefined;
      const onAbort = (): void => abort?.();
      try {
        abort = m.encodeImage(pixels, (kind, payload) => {
          signal?.removeEventListener('abort', onAbort);
          // The abort rule: a signal raised before this settles wins, even when
          // the native thread had already finished (its result was in flight).
          if (signal?.aborted) {
            if (kind === 'encoded') payload.image.release();
            reject(signal.reason);
          } else if (kind === 'encoded') resolve(payload);
          else reject(payload.code === 'ERR_IMAGE' ? new CxrError('ERR_IMAGE', `${source}: ${payload.message}`, { cause: payload }) : fromNative(payload));
        });
      } catch (err) {
        reject(fromNative(err));
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    return new EncodedImage(r.image, this, {
      encodeMs: r.ms,
      preprocessMs: r.preprocessMs,
      warnings,
      ...(sopInstanceUid ? { sopInstanceUid } : {}),
    });
  }

  /** Remembers a running call until it settles, for close(). */
  #track<T>(p: Promise<T>): Promise<T> {
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    this.#inflight.add(settled);
    void settled.then(() => this.#inflight.delete(settled));
    return p;
  }

  /** A radiology report on the image, with the official prompt and sampling defaults, and the CheXpert labels of its text. */
  report(image: ImageInput | EncodedImage, options: Omit<GenerateOptions, 'prompt' | 'messages' | 'image' | 'raw'> = {}): Promise<ReportResult> {
    return this.generate({ ...options, image, prompt: REPORT_PROMPT }).then((r) => ({ ...r, findings: labelReport(r.text) }));
  }

  /** Possible differential diagnoses for the image, with the official prompt. */
  differential(image: ImageInput | EncodedImage, options: Omit<GenerateOptions, 'prompt' | 'messages' | 'image' | 'raw'> = {}): Promise<GenerateResult> {
    return this.generate({ ...options, image, prompt: DIFFERENTIAL_PROMPT });
  }

  /** Answers a free-text question about the image. */
  ask(image: ImageInput | EncodedImage, question: string, options: Omit<GenerateOptions, 'prompt' | 'messages' | 'image' | 'raw'> = {}): Promise<GenerateResult> {
    return this.generate({ ...options, image, prompt: reqString('question', question) });
  }

  /**
   * A conversation about one image. Each `send()` adds a turn; follow-ups reuse
   * the KV cache of the image and the earlier turns, so only the new text is
   * computed (as long as no other call ran on this model in between).
   */
  chat(image: ImageInput | EncodedImage, options: { system?: string } = {}): ChatSession {
    return new ChatSession(this, image, options.system);
  }

  /**
   * Generates text. Up to `parallel` calls on one model run together (see
   * loadModel); the others wait and start in call order. Rejects with the
   * signal's reason when aborted.
   */
  generate(options: GenerateOptions): Promise<GenerateResult> {
    // Bad options reject like every other failure, rather than throwing synchronously.
    try {
      return this.#track(this.#afterGate(this.#prepare(options)));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Validates generate() options and returns the work to queue. */
  #prepare(options: GenerateOptions): () => Promise<GenerateResult> {
    if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'object', options);
    const withImage = options.image !== undefined;
    if (withImage && !this.info.vision) {
      throw new CxrError('ERR_MODEL', `${this.info.path}: an image was given but no vision projector (mmproj) is loaded; pass mmproj to loadModel()`);
    }
    this.#segments(options, withImage); // validates the prompt options now, before queueing
    const r = generateRanges();
    const maxTokens = optNumberIn('maxTokens', options.maxTokens, 512, r.maxTokens);
    const temperature = optNumberIn('temperature', options.temperature, 0.2, r.temperature);
    const topP = optNumberIn('topP', options.topP, 0.8, r.topP);
    const topK = optNumberIn('topK', options.topK, 0, r.topK);
    const repeatPenalty = optNumberIn('repeatPenalty', options.repeatPenalty, 1, r.repeatPenalty);
    const logprobs = optNumberIn('logprobs', options.logprobs, 0, r.logprobs);
    const stop = optStringArray('stop', options.stop);
    const ignoreEos = optBoolean('ignoreEos', options.ignoreEos, false);
    const onToken = optFunction<(text: string, token: number) => void>('onToken', options.onToken);
    const seed = optSeed('seed', options.seed) ?? randomBytes(8).readBigUInt64LE();
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidParameterError('signal', 'AbortSignal', signal);

    const run = async (): Promise<GenerateResult> => {
      signal?.throwIfAborted();
      let encoded: EncodedImage | undefined;
      if (withImage) {
        const img = options.image!;
        encoded = isEncoded(img) ? img : await this.#encode(img, signal, { ...(options.window ? { window: options.window } : {}), ...(options.voi !== undefined ? { voi: options.voi } : {}) });
      }
      const segments = this.#segments(options, withImage, encoded);
      const m = this.#open();
      signal?.throwIfAborted();
      const result = await new Promise<NativeResult>((resolve, reject) => {
        let abort: (() => void) | undefined;
        // Set by the signal or a throwing onToken. From then on no onToken call
        // is made and the result is discarded: the native thread may have run
        // ahead (on a small model it often finishes before JS sees the abort),
        // so its later events are drained, not believed. The promise settles
        // only at the final event, so the model is idle when the next call runs.
        let failure: { error: unknown } | undefined;
        const onAbort = (): void => {
          failure ??= { error: signal!.reason };
          abort?.();
        };
        try {
          abort = m.generate(
            { segments, maxTokens, temperature, topP, topK, repeatPenalty, repeatLastN: 64, seed, stop, logprobs, stopAtEos: !ignoreEos },
            (kind, payload) => {
              if (kind === 'token') {
                if (failure === undefined && onToken && payload.text.length > 0) {
                  try {
                    onToken(payload.text, payload.token);
                  } catch (err) {
                    // A throwing callback ends the generation with its error.
                    failure ??= { error: err };
                    abort?.();
                  }
                }
                return;
              }
              signal?.removeEventListener('abort', onAbort);
              if (failure !== undefined) reject(failure.error);
              // close() before the result reached JS wins, as an abort does:
              // the native thread may have finished the last tokens first.
              else if (kind === 'done' && this.#native !== m && payload.finishReason !== 'abort')
                reject(new CxrError('ERR_ABORTED', 'Generation was aborted because the model was closed'));
              else if (kind === 'done') resolve(payload);
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
        // Closing the model aborts what runs and turns away what was still waiting.
        if (!result.admitted) throw new CxrError('ERR_MODEL_CLOSED', 'The model is closed');
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
          ...(encoded && !isEncoded(options.image!) ? { encodeMs: encoded.encodeMs } : {}),
        },
        ...(encoded ? { warnings: [...encoded.warnings] } : {}),
        ...(encoded?.sopInstanceUid ? { sopInstanceUid: encoded.sopInstanceUid } : {}),
      };
      if (logprobs > 0) out.logprobs = tokens.map((t) => ({ token: t.token, logprob: t.logprob!, top: t.top ?? [] }));
      return out;
    };
    return run;
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
      // No chunk is yielded once the signal has fired, even one produced before it.
      for (;;) {
        if (controller.signal.aborted) break;
        if (chunks.length > 0) {
          yield chunks.shift()!;
          continue;
        }
        if (finished) break;
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
      const result = await done;
      outer?.throwIfAborted();
      return result;
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
    await Promise.all(this.#inflight);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Sequences per forward pass unless loadModel() is told otherwise (README: "Many calls at once"). */
export const DEFAULT_PARALLEL = 4;

/** Loads a model. Errors name the file and the problem (`ERR_IO`, `ERR_GGUF`, `ERR_MODEL`). */
export async function loadModel(options: LoadModelOptions = {}): Promise<Model> {
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'object', options);
  let modelPath: string;
  let defaultMmproj: string | undefined;
  if (options.model === undefined) {
    // No path: the cached default model (and its mmproj), pulled on request.
    const type = options.type === undefined ? undefined : reqString('type', options.type);
    const { resolveDefaultModel } = await import('../hub/cache.js');
    const cached = await resolveDefaultModel(type ? { type } : {}).catch(async (err: unknown) => {
      if (optBoolean('pull', options.pull, false) !== true) throw err;
      const { pullModel } = await import('../hub/hub.js');
      return pullModel(type ? { type: type as never } : {});
    });
    modelPath = cached.textPath;
    defaultMmproj = cached.mmprojPath;
  } else {
    modelPath = reqString('model', options.model);
  }
  const lr = loadRanges();
  const threads = optNumberIn('threads', options.threads, 0, lr.threads);
  const contextSize = optNumberIn('contextSize', options.contextSize, 0, lr.contextSize);
  const kvType = optEnum('kvCacheType', options.kvCacheType, ['f16', 'f32'] as const, 'f16');
  const backend = optEnum('backend', options.backend, ['auto', 'cpu', 'cuda'] as const, 'auto');
  const device = optNumberIn('device', options.device, 0, lr.device);
  const parallel = optInteger('parallel', options.parallel, DEFAULT_PARALLEL, 1, 64);
  const kvCacheSize = optInteger('kvCacheSize', options.kvCacheSize, 0, 0, 1 << 24);
  const onProgress = optFunction<(p: Progress) => void>('onProgress', options.onProgress);
  const mmproj = options.mmproj === undefined ? defaultMmproj : reqString('mmproj', options.mmproj);
  onProgress?.({ phase: 'load', progress: 0 });
  let nm: NativeModel;
  try {
    nm = await native().loadModel({ model: modelPath, ...(mmproj ? { mmproj } : {}), threads, contextSize, kvType, backend, device, parallel, kvCacheSize });
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
    ...(raw.vision ? { vision: raw.vision } : {}),
  };
  onProgress?.({ phase: 'load', progress: 1 });
  return new Model(nm, info);
}

function isEncoded(x: unknown): x is EncodedImage {
  return x instanceof EncodedImage;
}

/** A conversation about one image; create it with `model.chat(image)`. */
export class ChatSession {
  readonly #model: Model;
  readonly #input: ImageInput | EncodedImage;
  readonly #system: string | undefined;
  #image: EncodedImage | undefined;
  /** The turns so far. */
  readonly messages: ChatMessage[] = [];

  /** @internal */
  constructor(model: Model, image: ImageInput | EncodedImage, system?: string) {
    this.#model = model;
    this.#input = image;
    this.#system = system;
    if (isEncoded(image)) this.#image = image;
  }

  /** Asks `text` and returns the answer; the turn is added to `messages` once it completes. */
  async send(text: string, options: Omit<GenerateOptions, 'prompt' | 'messages' | 'image' | 'raw'> = {}): Promise<GenerateResult> {
    const question = reqString('text', text);
    this.#image ??= await this.#model.encodeImage(this.#input as ImageInput, options.signal ? { signal: options.signal } : {});
    const messages: ChatMessage[] = [
      ...(this.#system !== undefined ? [{ role: 'system' as const, content: this.#system }] : []),
      ...this.messages,
      { role: 'user', content: question },
    ];
    const r = await this.#model.generate({ ...options, image: this.#image, messages });
    this.messages.push({ role: 'user', content: question }, { role: 'assistant', content: r.text });
    return r;
  }
}
