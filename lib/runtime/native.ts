/**
 * The native addon, loaded once, with a type for exactly what it exports
 * (native/addon/*.cpp). Nothing outside lib/ should import the addon directly.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { CxrError } from '../errors.js';
import type { GgmlTypeName } from '../convert/gguf-writer.js';

/** A GGUF metadata value as the addon returns it. Long arrays are summarised. */
export type GgufMetaValue = number | bigint | boolean | string | GgufMetaValue[] | { type: string; length: number };

export interface NativeTensorInfo {
  name: string;
  type: string;
  /** Dimensions in ggml order: ne[0] is the row length. */
  ne: number[];
  offset: number;
  bytes: number;
}

export interface NativeGgufInfo {
  path: string;
  version: number;
  fileSize: number;
  alignment: number;
  dataOffset: number;
  metadata: Record<string, GgufMetaValue>;
  tensors: NativeTensorInfo[];
}

export interface NativeModelInfo extends NativeGgufInfo {
  hparams: {
    vocabSize: number;
    embeddingLength: number;
    blockCount: number;
    headCount: number;
    headCountKv: number;
    feedForwardLength: number;
    contextLength: number;
    ropeFreqBase: number;
    rmsNormEps: number;
  };
  runtime: {
    /** The backend running the model: 'cpu' or 'cuda'. */
    backend: string;
    /** Why that backend: asked for, or what `backend: 'auto'` found (e.g. no CUDA device, or the GPU's name). */
    backendReason: string;
    /** The CUDA device index, with backend 'cuda'. */
    device?: number;
    threads: number;
    simd: string;
    /** The most positions one sequence may hold. */
    contextSize: number;
    /** Sequences that run together. */
    parallel: number;
    /** KV cache positions shared by all sequences. */
    kvCacheSize: number;
    /** Bytes of the KV cache, allocated once for all sequences. */
    kvCacheBytes: number;
  };
  tokenizer: { bos: number; eos: number; unk: number };
  vision?: {
    path: string;
    fileSize: number;
    imageSize: number;
    patchSize: number;
    channels: number;
    width: number;
    blockCount: number;
    headCount: number;
    /** Image tokens per image (patches, CLS dropped). */
    tokens: number;
    projectionDim: number;
    mean: number;
    std: number;
    metadata: Record<string, GgufMetaValue>;
    tensors: NativeTensorInfo[];
  };
}

export interface NativeToken {
  /** -1 for a final text-only flush */
  token: number;
  text: string;
  logprob?: number;
  top?: { token: number; logprob: number }[];
}

export interface NativeResult {
  text: string;
  tokens: NativeToken[];
  finishReason: 'stop' | 'length' | 'abort';
  /** False when the request was aborted while it still waited for a sequence. */
  admitted: boolean;
  promptTokens: number;
  prefillTokens: number;
  prefillMs: number;
  decodeTokens: number;
  decodeMs: number;
}

export interface NativeSegment {
  tokens?: Int32Array;
  /** Embeddings kept in the engine (an encoded image of this model). */
  image?: NativeImage;
  /** Embeddings in JS memory, copied in (an image encoded by another model). */
  embd?: Float32Array;
  id?: number;
}

/** An encoded image kept in the engine (native/addon/image_handle.cpp). */
export interface NativeImage {
  readonly rows: number;
  readonly dim: number;
  /** True once release() was called. */
  readonly released: boolean;
  /** A copy of the embeddings, rows × dim; throws ERR_MODEL_CLOSED once the model is closed. */
  read(): Float32Array;
  /** Lets go of the embeddings now rather than at garbage collection. */
  release(): void;
}

/** Decoded 8-bit pixels as the native encode takes them: interleaved, 1 to 4 channels. */
export interface NativePixels {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

export interface NativeGenerateRequest {
  segments: NativeSegment[];
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  repeatPenalty: number;
  repeatLastN: number;
  seed: bigint;
  stop: string[];
  logprobs: number;
  stopAtEos: boolean;
}

export type NativeEvent =
  | ['token', NativeToken]
  | ['done', NativeResult]
  | ['error', Error & { code?: string }];

export interface NativeModel {
  info(): NativeModelInfo;
  tokenize(text: string, bos: boolean, special: boolean): Int32Array;
  detokenize(ids: Int32Array): string;
  tokenPiece(id: number): string;
  /**
   * Hands a generation to the engine's scheduler, which runs up to `parallel` of them in one
   * forward pass and queues the rest; returns a function that aborts it.
   */
  generate(req: NativeGenerateRequest, onEvent: (...ev: NativeEvent) => void): () => void;
  /** Logits of every position, on a native thread; returns a function that aborts it. */
  evalLogits(ids: Int32Array, onEvent: (...ev: ['logits', Float32Array] | ['error', Error & { code?: string }]) => void): () => void;
  /**
   * Preprocesses decoded pixels (libuv's pool) and runs the vision tower (the engine's thread,
   * between forward passes), or takes pixels already preprocessed ([channels × size × size]);
   * the embeddings stay in the engine. Returns a function that aborts it. Preprocessing
   * failures have code ERR_IMAGE.
   */
  encodeImage(
    input: NativePixels | Float32Array,
    onEvent: (...ev: ['encoded', { image: NativeImage; ms: number; preprocessMs: number }] | ['error', Error & { code?: string }]) => void,
  ): () => void;
  /** Encoded images the engine holds (for JS handles or running generations) and their bytes. */
  imageStats(): { count: number; bytes: number };
  /** Returns true if a generation was running (it is aborted). */
  close(): boolean;
}

export interface NativeAddon {
  /** The engine's size limits (native/engine/types/limits.h). */
  readonly limits: { maxImagePixels: number; maxContext: number; maxThreads: number; maxLogprobs: number };
  loadModel(opts: {
    model: string;
    mmproj?: string;
    threads: number;
    contextSize: number;
    kvType: 'f16' | 'f32';
    /** Default 'auto'. */
    backend?: 'auto' | 'cpu' | 'cuda';
    /** Default 0. */
    device?: number;
    /** Sequences per forward pass (default 1). */
    parallel?: number;
    /** KV cache positions for all sequences (default 0: contextSize × parallel). */
    kvCacheSize?: number;
  }): Promise<NativeModel>;
  quantize(type: GgmlTypeName, data: Float32Array, rows: number, cols: number): Uint8Array;
  quantizeAsync(type: GgmlTypeName, data: Float32Array, rows: number, cols: number): Promise<Uint8Array>;
  dequantize(type: GgmlTypeName, data: Uint8Array, n: number): Float32Array;
  ggufInfo(path: string, full: boolean): NativeGgufInfo;
  simdLevel(): string;
  /**
   * CXR-LLaVA's official preprocessing of interleaved 8-bit pixels (channels 1-4,
   * data.length = width*height*channels), normalised: size*size floats.
   */
  preprocess(opts: { data: Uint8Array; width: number; height: number; channels: number; size: number; mean: number; std: number }): Promise<Float32Array>;
  /** The same up to the centre crop: the size*size 8-bit image before normalisation. */
  preprocessGray8(opts: { data: Uint8Array; width: number; height: number; channels: number; size: number }): Promise<Uint8Array>;
  /** PIL's convert('L') of the pixels: width*height grey values. */
  luma(opts: { data: Uint8Array; width: number; height: number; channels: number }): Promise<Uint8Array>;
}

/** The package folder: the nearest parent holding binding.gyp (from lib/ in source, dist/lib/ when built). */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'binding.gyp'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new CxrError('ERR_NATIVE_LOAD', 'cannot find the cxr-llava package folder (binding.gyp)');
    dir = parent;
  }
}
let cached: NativeAddon | undefined;

/** Loads the addon (a local build, else a prebuilt binary) and explains what to do if neither works. */
export function native(): NativeAddon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  try {
    const load = require('node-gyp-build') as (dir: string) => NativeAddon;
    cached = load(packageRoot());
    return cached;
  } catch (err) {
    const message = [
      `Could not load the cxr-llava native addon for ${process.platform}-${process.arch} (Node ${process.version}).`,
      `  ${(err as Error).message.split('\n')[0]}`,
      'Possible solutions:',
      '- Reinstall so the addon is rebuilt: npm rebuild cxr-llava (needs a C++17 compiler and Python for node-gyp).',
      '- Build it by hand from the package folder: npx node-gyp rebuild, or npx cmake-js compile.',
      '- Check that prebuilds/ has a binary for this platform if you expected a prebuilt one.',
    ].join('\n');
    throw new CxrError('ERR_NATIVE_LOAD', message, { cause: err });
  }
}
