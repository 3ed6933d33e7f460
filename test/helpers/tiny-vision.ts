// Builds the tiny CXR-LLaVA image encoder as an mmproj GGUF: deterministic weights,
// bit-identical to tools/reference/tiny_cxr_llava.py without sharing any file with it.
//
// Weight spec (the Python file carries the same text): the generator of
// prng-weights.ts, seeded by the official checkpoint names, with these kinds:
//   * 'linear' (every Linear and conv1): makeWeight's linear kind; conv1
//     [w, C, p, p] is generated as its 2-D view [w, C*p*p] (same row-major order).
//   * 'embed'  (class_embedding, positional_embedding): u.
//   * 'norm'   (LayerNorm weights): fround(1 + u/8).
//   * 'bias'   (every bias, LayerNorm biases included): the 'embed' value / 16 (exact).

import { GgufWriter } from '../../lib/convert/gguf-writer.js';
import { addClipToGguf, clipRecipes, officialClipTensors, type ClipHParams, type ClipRecipeName, type ClipTensors } from '../../lib/convert/clip-gguf.js';
import type { Quantizer, TensorSource } from '../../lib/convert/llama-gguf.js';
import { makeWeight } from './prng-weights.js';

export type VisionWeightKind = 'linear' | 'embed' | 'norm' | 'bias';

/** The encoder that tools/reference/tiny_cxr_llava.py checks: 16 patch tokens projected to the tiny LLaMA's width 64. */
export const TINY_VISION_HPARAMS: ClipHParams = {
  imageSize: 64,
  patchSize: 16,
  channels: 1,
  width: 64,
  numLayers: 2,
  numHeads: 4,
  mlpDim: 256,
  projDim: 64,
  layerNormEps: 1e-5,
  imageMean: [0.5],
  imageStd: [0.25],
};

/** One tensor per the spec above, row-major in PyTorch shape order. */
export function makeVisionWeight(name: string, shape: number[], kind: VisionWeightKind): Float32Array {
  switch (kind) {
    case 'linear':
      return makeWeight(name, [shape[0]!, shape.slice(1).reduce((a, b) => a * b, 1)], 'linear');
    case 'bias':
      return makeWeight(name, shape, 'embed').map((v) => v / 16);
    default:
      return makeWeight(name, shape, kind);
  }
}

/** One tensor of the encoder: its official name, PyTorch shape and spec kind. */
export interface VisionWeightSpec {
  name: string;
  shape: number[];
  kind: VisionWeightKind;
}

/** Every tensor the encoder uses, official names, in the reference's order. */
export function tinyVisionSpecs(hp: ClipHParams = TINY_VISION_HPARAMS): VisionWeightSpec[] {
  const { width: w, channels: c, patchSize: p, mlpDim: mlp } = hp;
  const nPos = (hp.imageSize / p) ** 2 + 1;
  const vt = 'vision_tower.';
  const specs: VisionWeightSpec[] = [
    { name: vt + 'conv1.weight', shape: [w, c, p, p], kind: 'linear' },
    { name: vt + 'class_embedding', shape: [w], kind: 'embed' },
    { name: vt + 'positional_embedding', shape: [nPos, w], kind: 'embed' },
    { name: vt + 'ln_pre.weight', shape: [w], kind: 'norm' },
    { name: vt + 'ln_pre.bias', shape: [w], kind: 'bias' },
  ];
  for (let i = 0; i < hp.numLayers; i++) {
    const b = `${vt}transformer.resblocks.${i}.`;
    specs.push(
      { name: b + 'ln_1.weight', shape: [w], kind: 'norm' },
      { name: b + 'ln_1.bias', shape: [w], kind: 'bias' },
      { name: b + 'attn.in_proj_weight', shape: [3 * w, w], kind: 'linear' },
      { name: b + 'attn.in_proj_bias', shape: [3 * w], kind: 'bias' },
      { name: b + 'attn.out_proj.weight', shape: [w, w], kind: 'linear' },
      { name: b + 'attn.out_proj.bias', shape: [w], kind: 'bias' },
      { name: b + 'ln_2.weight', shape: [w], kind: 'norm' },
      { name: b + 'ln_2.bias', shape: [w], kind: 'bias' },
      { name: b + 'mlp.c_fc.weight', shape: [mlp, w], kind: 'linear' },
      { name: b + 'mlp.c_fc.bias', shape: [mlp], kind: 'bias' },
      { name: b + 'mlp.c_proj.weight', shape: [w, mlp], kind: 'linear' },
      { name: b + 'mlp.c_proj.bias', shape: [w], kind: 'bias' },
    );
  }
  specs.push(
    { name: vt + 'ln_post.weight', shape: [w], kind: 'norm' },
    { name: vt + 'ln_post.bias', shape: [w], kind: 'bias' },
    { name: 'mm_projector.weight', shape: [hp.projDim, w], kind: 'linear' },
    { name: 'mm_projector.bias', shape: [hp.projDim], kind: 'bias' },
  );
  return specs;
}

/** The deterministic tensors grouped as addClipToGguf wants them, each generated when read. */
export function tinyVisionTensors(hp: ClipHParams = TINY_VISION_HPARAMS): ClipTensors {
  const all = new Map(tinyVisionSpecs(hp).map((s) => [s.name, s]));
  const get = (name: string): TensorSource => {
    const s = all.get(name);
    if (!s) throw new Error(`tiny vision tower has no tensor ${name}`);
    return { shape: s.shape, read: () => makeVisionWeight(s.name, s.shape, s.kind) };
  };
  return officialClipTensors(get, hp.numLayers);
}

/** Options of writeTinyMmproj. */
export interface TinyMmprojOptions {
  /** Produces every non-f32 type (optional for the f32 recipe, required otherwise). */
  quantize?: Quantizer;
  /** Overrides of the golden encoder's hparams (optional, default TINY_VISION_HPARAMS). */
  hparams?: Partial<ClipHParams>;
  /** general.name (optional, default "tiny-cxr-llava-vision"). */
  name?: string;
}

/** Writes the tiny mmproj GGUF stored per `recipe`; returns the hparams it used. */
export async function writeTinyMmproj(path: string, recipe: ClipRecipeName, opts: TinyMmprojOptions = {}): Promise<ClipHParams> {
  const hp: ClipHParams = { ...TINY_VISION_HPARAMS, ...opts.hparams };
  const quantize: Quantizer =
    opts.quantize ??
    ((type) => {
      throw new Error(`writeTinyMmproj: recipe ${recipe} needs a quantizer for ${type}`);
    });
  const w = new GgufWriter();
  addClipToGguf(w, hp, tinyVisionTensors(hp), { ...clipRecipes[recipe], quantize, name: opts.name ?? 'tiny-cxr-llava-vision' });
  await w.write(path);
  return hp;
}

/** The golden's test image normalised as the reference does: fround((pixel/255 - mean) / std), one channel. */
export function normaliseGray(pixels: readonly number[], mean: number, std: number): Float32Array {
  return Float32Array.from(pixels, (p) => (p / 255 - mean) / std);
}
