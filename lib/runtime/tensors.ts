/**
 * Tensor-level utilities over the native kernels: quantization for the
 * converter and GGUF inspection for `cxr-llava info`.
 */
import { fromNative, invalidParameterError } from '../errors.js';
import { GGML_TYPES, type GgmlTypeName } from '../convert/gguf-writer.js';
import { native, type NativeGgufInfo } from './native.js';

function checkType(type: unknown): GgmlTypeName {
  if (typeof type !== 'string' || !(type in GGML_TYPES)) {
    throw invalidParameterError('type', `one of ${Object.keys(GGML_TYPES).join(', ')}`, type);
  }
  return type as GgmlTypeName;
}

/**
 * Quantizes a row-major `[rows, cols]` float matrix into `type`, byte for byte
 * as llama.cpp lays it out. `cols` must be a multiple of the type's block size
 * (32 for q8_0/q4_0, 256 for q4_k/q6_k).
 */
export function quantize(type: GgmlTypeName, data: Float32Array, rows: number, cols: number): Uint8Array {
  const t = checkType(type);
  if (!(data instanceof Float32Array)) throw invalidParameterError('data', 'Float32Array', data);
  if (!Number.isInteger(rows) || rows < 1) throw invalidParameterError('rows', 'positive integer', rows);
  if (!Number.isInteger(cols) || cols < 1) throw invalidParameterError('cols', 'positive integer', cols);
  try {
    return native().quantize(t, data, rows, cols);
  } catch (err) {
    throw fromNative(err);
  }
}

/**
 * `quantize()` on native worker threads (the rows are split over every hardware
 * thread), leaving the event loop free. The bytes are identical to `quantize()`'s.
 */
export async function quantizeAsync(type: GgmlTypeName, data: Float32Array, rows: number, cols: number): Promise<Uint8Array> {
  const t = checkType(type);
  if (!(data instanceof Float32Array)) throw invalidParameterError('data', 'Float32Array', data);
  if (!Number.isInteger(rows) || rows < 1) throw invalidParameterError('rows', 'positive integer', rows);
  if (!Number.isInteger(cols) || cols < 1) throw invalidParameterError('cols', 'positive integer', cols);
  try {
    return await native().quantizeAsync(t, data, rows, cols);
  } catch (err) {
    throw fromNative(err);
  }
}

/** Dequantizes `n` elements of `type` back to floats. */
export function dequantize(type: GgmlTypeName, bytes: Uint8Array, n: number): Float32Array {
  const t = checkType(type);
  if (!(bytes instanceof Uint8Array)) throw invalidParameterError('bytes', 'Uint8Array', bytes);
  if (!Number.isInteger(n) || n < 1) throw invalidParameterError('n', 'positive integer', n);
  try {
    return native().dequantize(t, bytes, n);
  } catch (err) {
    throw fromNative(err);
  }
}

export type GgufInfo = NativeGgufInfo;

/**
 * Reads a GGUF file's header: metadata and tensor table (no weights are
 * loaded). With `full`, long arrays such as the vocabulary come back whole.
 * Throws `ERR_GGUF` naming the file for a corrupt one.
 */
export function readGgufInfo(path: string, options: { full?: boolean } = {}): GgufInfo {
  if (typeof path !== 'string' || path.length === 0) throw invalidParameterError('path', 'non-empty string', path);
  try {
    return native().ggufInfo(path, options.full === true);
  } catch (err) {
    throw fromNative(err);
  }
}

/** The SIMD kernels the engine chose for this CPU: "avx2", "neon" or "scalar". */
export function simdLevel(): string {
  return native().simdLevel();
}
