/**
 * A random-weight image encoder of CXR-LLaVA's shape (ViT-L/16 at 512x512, one input
 * channel, linear projector 1024 -> 4096) as an mmproj GGUF, for benchmarks: speed
 * depends on shapes and types, not on the values. Tensors are generated one at a time
 * when the writer asks for them.
 */
import { existsSync } from 'node:fs';
import { addClipToGguf, clipRecipes, type ClipHParams, type ClipTensors } from '../lib/convert/clip-gguf.js';
import { GgufWriter } from '../lib/convert/gguf-writer.js';
import type { TensorSource } from '../lib/convert/llama-gguf.js';
import { quantize, readGgufInfo } from '../lib/runtime/tensors.js';

/** ViT-L/16 at 512 px: 1024 patches + CLS = 1025 tokens, 24 layers of width 1024. */
export const VIT_L_512: ClipHParams = {
  imageSize: 512,
  patchSize: 16,
  channels: 1,
  width: 1024,
  numLayers: 24,
  numHeads: 16,
  mlpDim: 4096,
  projDim: 4096,
  layerNormEps: 1e-5,
  imageMean: [0.5],
  imageStd: [0.25],
};

export type VisionBenchType = 'f16' | 'q8_0';

/** Bump when the file contents change, so cached files from older versions are rebuilt. */
const GENERATOR = 'cxr-bench-synthetic-vit-v1';

/** The cache file name for a weight type. */
export function syntheticVisionFileName(type: VisionBenchType): string {
  return `vit-l16-512-${type}.gguf`;
}

/** Whether `file` is a complete synthetic encoder written by this generator version. */
export function isCurrentSyntheticVision(file: string): boolean {
  if (!existsSync(file)) return false;
  try {
    return readGgufInfo(file).metadata['general.name'] === GENERATOR;
  } catch {
    return false;
  }
}

/** Stable per-tensor seed (FNV-1a of the name), never 0. */
function seedOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h || 1;
}

/**
 * xorshift32 values, uniform in [-amp, amp). Matrices get amp = sqrt(3 / fan_in) (unit
 * variance through each layer), embeddings 0.5, biases 0.02 and LayerNorm weights 1 ± 0.1,
 * so activations stay in a realistic range through all 24 layers.
 */
function source(name: string, shape: number[], kind: 'matrix' | 'embed' | 'bias' | 'norm'): TensorSource {
  return {
    shape,
    read: () => {
      const n = shape.reduce((a, b) => a * b, 1);
      const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
      const amp = kind === 'matrix' ? Math.sqrt(3 / fanIn) : kind === 'embed' ? 0.5 : kind === 'bias' ? 0.02 : 0.1;
      const out = new Float32Array(n);
      let x = seedOf(name);
      const scale = (2 * amp) / 2 ** 32;
      for (let i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        out[i] = (x >>> 0) * scale - amp + (kind === 'norm' ? 1 : 0);
      }
      return out;
    },
  };
}

function tensors(hp: ClipHParams): ClipTensors {
  const { width: w, channels: c, patchSize: p, mlpDim: mlp } = hp;
  const nPos = (hp.imageSize / p) ** 2 + 1;
  return {
    conv1: source('conv1', [w, c, p, p], 'matrix'),
    classEmbedding: source('class', [w], 'embed'),
    positionalEmbedding: source('pos', [nPos, w], 'embed'),
    lnPreWeight: source('ln_pre.w', [w], 'norm'),
    lnPreBias: source('ln_pre.b', [w], 'bias'),
    layers: Array.from({ length: hp.numLayers }, (_, i) => ({
      ln1Weight: source(`${i}.ln1.w`, [w], 'norm'),
      ln1Bias: source(`${i}.ln1.b`, [w], 'bias'),
      inProjWeight: source(`${i}.in_proj.w`, [3 * w, w], 'matrix'),
      inProjBias: source(`${i}.in_proj.b`, [3 * w], 'bias'),
      outProjWeight: source(`${i}.out_proj.w`, [w, w], 'matrix'),
      outProjBias: source(`${i}.out_proj.b`, [w], 'bias'),
      ln2Weight: source(`${i}.ln2.w`, [w], 'norm'),
      ln2Bias: source(`${i}.ln2.b`, [w], 'bias'),
      fcWeight: source(`${i}.fc.w`, [mlp, w], 'matrix'),
      fcBias: source(`${i}.fc.b`, [mlp], 'bias'),
      projWeight: source(`${i}.proj.w`, [w, mlp], 'matrix'),
      projBias: source(`${i}.proj.b`, [w], 'bias'),
    })),
    lnPostWeight: source('ln_post.w', [w], 'norm'),
    lnPostBias: source('ln_post.b', [w], 'bias'),
    projectorWeight: source('mm.w', [hp.projDim, w], 'matrix'),
    projectorBias: source('mm.b', [hp.projDim], 'bias'),
  };
}

/** Writes the random ViT-L/16@512 encoder with its matrices in `type` to `file`. */
export async function writeSyntheticVision(
  file: string,
  type: VisionBenchType,
  onProgress?: (fraction: number, tensor: string) => void,
): Promise<void> {
  const w = new GgufWriter();
  addClipToGguf(w, VIT_L_512, tensors(VIT_L_512), { ...clipRecipes[type], quantize, name: GENERATOR });
  await w.write(file, (done, total, tensor) => onProgress?.(done / total, tensor));
}

/** Multiply-adds x 2 of one encode: patch embedding, 24 blocks (projections, attention, MLP), projector. */
export function visionFlops(hp: ClipHParams = VIT_L_512): number {
  const n = (hp.imageSize / hp.patchSize) ** 2;
  const t = n + 1;
  const w = hp.width;
  const patch = 2 * n * w * hp.channels * hp.patchSize ** 2;
  const block = 2 * t * w * (4 * w + 2 * hp.mlpDim) + 4 * t * t * w;
  return patch + hp.numLayers * block + 2 * n * w * hp.projDim;
}
