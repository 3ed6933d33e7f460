/**
 * Random-weight LLaMA GGUF files of real model shapes, for benchmarks: speed depends on
 * shapes and types, not on the values. Written by our own writer and quantizer, tensor
 * by tensor and row block by row block, so even a 7B file never holds more than one
 * quantized tensor plus a few MB of floats in memory.
 */
import { existsSync } from 'node:fs';
import { GgufWriter, type GgmlTypeName } from '../lib/convert/gguf-writer.js';
import { addLlamaToGguf, recipes, type GgufSink, type LlamaHParams, type LlamaTensors, type TensorSource, type Vocab } from '../lib/convert/llama-gguf.js';
import { quantize, readGgufInfo } from '../lib/runtime/tensors.js';

/** Model shapes the benchmark knows. */
export const SHAPES = {
  /** Small enough for a smoke run in seconds. */
  tiny: { hiddenSize: 256, intermediateSize: 768, numLayers: 4, numHeads: 8, numKvHeads: 8, vocabSize: 8000, contextLength: 2048 },
  /** A TinyLlama-1.1B-like shape with full multi-head attention. */
  '1b': { hiddenSize: 2048, intermediateSize: 5632, numLayers: 16, numHeads: 16, numKvHeads: 16, vocabSize: 32000, contextLength: 4096 },
  /** LLaMA-2-7B, the language model of CXR-LLaVA. */
  '7b': { hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32, numKvHeads: 32, vocabSize: 32000, contextLength: 4096 },
} as const;
export type ShapeName = keyof typeof SHAPES;

export type BenchType = 'q4_0' | 'q8_0';

/** Bump when the file contents change, so cached files from older versions are rebuilt. */
const GENERATOR = 'cxr-bench-synthetic-v1';

export function shapeHParams(shape: ShapeName): LlamaHParams {
  return { ...SHAPES[shape], rmsNormEps: 1e-5, ropeTheta: 10000 };
}

/**
 * A SentencePiece-like vocabulary of `size` pieces: <unk>, <s>, </s>, the 256 byte
 * pieces, then unique filler words. Enough for both engines to load it; the benchmark
 * feeds token ids, never text.
 */
export function syntheticVocab(size: number): Vocab {
  const pieces: Vocab['pieces'] = [
    { piece: '<unk>', score: 0, type: 2 },
    { piece: '<s>', score: 0, type: 3 },
    { piece: '</s>', score: 0, type: 3 },
  ];
  for (let b = 0; b < 256; b++) pieces.push({ piece: `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, score: 0, type: 6 });
  for (let i = 0; pieces.length < size; i++) pieces.push({ piece: `▁w${i.toString(36)}`, score: -i, type: 1 });
  return { pieces, bosId: 1, eosId: 2, unkId: 0 };
}

/** xorshift32 filling `out` with uniform values in [-amp, amp). Returns the next state. */
function fillUniform(out: Float32Array, state: number, amp: number): number {
  let x = state;
  const scale = (2 * amp) / 2 ** 32;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (x >>> 0) * scale - amp;
  }
  return x;
}

/** Stable per-tensor seed (FNV-1a of the name), never 0. */
function seedOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h || 1;
}

const ROW_BLOCK_VALUES = 1 << 20; // floats generated per quantize call (4 MB)

/**
 * The bytes of one random tensor of ggml shape `ne` stored as `type`. Matrices get
 * uniform values with standard deviation 1/sqrt(ne[0]) (so activations keep their
 * scale through the layers); 1-D tensors (the RMSNorm weights) are all ones.
 */
function randomTensor(name: string, ne: number[], type: GgmlTypeName): Uint8Array {
  const cols = ne[0]!;
  const rows = ne.length === 2 ? ne[1]! : 1;
  if (ne.length === 1) {
    if (type !== 'f32') throw new Error(`${name}: expected a 1-D tensor to be f32, got ${type}`);
    return new Uint8Array(new Float32Array(cols).fill(1).buffer);
  }
  const amp = Math.sqrt(3 / cols);
  const blockRows = Math.max(1, Math.floor(ROW_BLOCK_VALUES / cols));
  const floats = new Float32Array(blockRows * cols);
  let out: Uint8Array | undefined;
  let state = seedOf(name);
  for (let r = 0; r < rows; r += blockRows) {
    const n = Math.min(blockRows, rows - r);
    const part = floats.subarray(0, n * cols);
    state = fillUniform(part, state, amp);
    const bytes = type === 'f32' ? new Uint8Array(part.slice().buffer) : quantize(type, part, n, cols);
    out ??= new Uint8Array((bytes.length / n) * rows);
    out.set(bytes, (bytes.length / n) * r);
  }
  return out!;
}

/** The cache file name for a shape and type. */
export function syntheticFileName(shape: ShapeName, type: BenchType): string {
  return `llama-${shape}-${type}.gguf`;
}

/** Whether `file` is a complete synthetic model written by this generator version. */
export function isCurrentSynthetic(file: string): boolean {
  if (!existsSync(file)) return false;
  try {
    return readGgufInfo(file).metadata['general.name'] === GENERATOR;
  } catch {
    return false;
  }
}

/**
 * Writes a random-weight LLaMA of `shape` with every matrix in `type` (norms f32) to
 * `file`, reporting progress as a fraction. The file appears only when complete.
 */
export async function writeSyntheticLlama(
  file: string,
  shape: ShapeName,
  type: BenchType,
  onProgress?: (fraction: number, tensor: string) => void,
): Promise<void> {
  const hp = shapeHParams(shape);
  const vocab = syntheticVocab(hp.vocabSize);
  // addLlamaToGguf lays out the metadata and names, shapes and types every tensor; the
  // values come from randomTensor instead of a TensorSource, which would have to hand
  // over a whole f32 tensor (0.5 GB for a 7B embedding) and needs no RoPE row reorder.
  const unused = (shapeOf: number[]): TensorSource => ({
    shape: shapeOf,
    read: () => {
      throw new Error('synthetic tensors are generated by randomTensor');
    },
  });
  const dim = hp.hiddenSize;
  const kv = (dim / hp.numHeads) * hp.numKvHeads;
  const ffn = hp.intermediateSize;
  const tensors: LlamaTensors = {
    embed: unused([hp.vocabSize, dim]),
    norm: unused([dim]),
    lmHead: unused([hp.vocabSize, dim]),
    layers: Array.from({ length: hp.numLayers }, () => ({
      attnNorm: unused([dim]),
      q: unused([dim, dim]),
      k: unused([kv, dim]),
      v: unused([kv, dim]),
      o: unused([dim, dim]),
      ffnNorm: unused([dim]),
      gate: unused([ffn, dim]),
      up: unused([ffn, dim]),
      down: unused([dim, ffn]),
    })),
  };
  const w = new GgufWriter();
  const sink: GgufSink = {
    set: (key, t, value) => w.set(key, t, value),
    setArray: (key, t, values) => w.setArray(key, t, values),
    addTensor: (name, ne, t) => w.addTensor(name, ne, t, () => randomTensor(name, ne, t)),
  };
  addLlamaToGguf(sink, hp, vocab, tensors, { ...recipes[type], quantize, name: GENERATOR });
  await w.write(file, (done, total, tensor) => onProgress?.(done / total, tensor));
}
