// Writes the CXR-LLaVA image encoder (open_clip ViT + LLaVA's linear projector,
// official checkpoint layout in) as a GGUF "mmproj" file (architecture "clip") into
// a GgufWriter. docs/gguf-format.md documents every key and tensor written here.
//
// Facts followed here (llama.cpp's clip conventions, where they fit):
//  * hyperparameters under "clip.vision.*", tensors under "v.*" and the projector as "mm.0.*";
//  * ne lists dimensions fastest-first: a PyTorch [rows, cols] matrix has ne [cols, rows] and
//    conv1 [width, C, p, p] has ne [p, p, C, width];
//  * attention is stored as separate q/k/v projections: the fused in_proj of
//    nn.MultiheadAttention ([3*width, width], rows q then k then v) is split here.
// What llama.cpp has no key for (one input channel, the linear projector, which tokens are
// the image features, exact GELU) gets keys of our own under "cxr.*", so a later llama.cpp
// key can never collide with them. Tensors are converted lazily, one at a time.

import { GGML_TYPES, type GgmlTypeName } from './gguf-writer.js';
import { fitType, rowBytes, type GgufSink, type Quantizer, type TensorSource } from './llama-gguf.js';

/** Hyperparameters of the image encoder and projector. */
export interface ClipHParams {
  /** Square input side in pixels, e.g. 512. */
  imageSize: number;
  /** Patch side, e.g. 16. */
  patchSize: number;
  /** Input channels: 1 for CXR-LLaVA's grayscale images. */
  channels: number;
  /** Transformer width, e.g. 1024. */
  width: number;
  numLayers: number;
  numHeads: number;
  /** MLP hidden width, e.g. 4096. */
  mlpDim: number;
  /** Projector output width = the language model's embedding width, e.g. 4096. */
  projDim: number;
  /** LayerNorm epsilon (open_clip: 1e-5). */
  layerNormEps: number;
  /** Per-channel normalisation mean, `channels` values. */
  imageMean: number[];
  /** Per-channel normalisation std, `channels` values. */
  imageStd: number[];
}

/** One residual block, official open_clip names and shapes (w = width). */
export interface ClipLayerTensors {
  ln1Weight: TensorSource; // ln_1.weight [w]
  ln1Bias: TensorSource; // ln_1.bias [w]
  inProjWeight: TensorSource; // attn.in_proj_weight [3w, w], rows q, k, v
  inProjBias: TensorSource; // attn.in_proj_bias [3w]
  outProjWeight: TensorSource; // attn.out_proj.weight [w, w]
  outProjBias: TensorSource; // attn.out_proj.bias [w]
  ln2Weight: TensorSource; // ln_2.weight [w]
  ln2Bias: TensorSource; // ln_2.bias [w]
  fcWeight: TensorSource; // mlp.c_fc.weight [mlp, w]
  fcBias: TensorSource; // mlp.c_fc.bias [mlp]
  projWeight: TensorSource; // mlp.c_proj.weight [w, mlp]
  projBias: TensorSource; // mlp.c_proj.bias [w]
}

/** Every tensor the encoder uses, official names and shapes. vision_tower.proj is not used and not taken. */
export interface ClipTensors {
  conv1: TensorSource; // vision_tower.conv1.weight [w, C, p, p] (no bias)
  classEmbedding: TensorSource; // vision_tower.class_embedding [w]
  positionalEmbedding: TensorSource; // vision_tower.positional_embedding [1 + (size/p)^2, w]
  lnPreWeight: TensorSource; // vision_tower.ln_pre.weight [w]
  lnPreBias: TensorSource; // vision_tower.ln_pre.bias [w]
  layers: ClipLayerTensors[]; // vision_tower.transformer.resblocks.N.*
  lnPostWeight: TensorSource; // vision_tower.ln_post.weight [w]
  lnPostBias: TensorSource; // vision_tower.ln_post.bias [w]
  projectorWeight: TensorSource; // mm_projector.weight [projDim, w]
  projectorBias: TensorSource; // mm_projector.bias [projDim]
}

/** Picks the stored type of one tensor from its GGUF name and ne. */
export type ClipTypeChooser = (ggufName: string, ne: number[]) => GgmlTypeName;

/** A storage recipe: a type per tensor and its llama.cpp general.file_type number. */
export interface ClipRecipe {
  fileType: number;
  typeFor: ClipTypeChooser;
}

/** How each tensor is stored. */
export interface ClipGgufOptions {
  /** Type of each tensor; a recipe's typeFor fits here. */
  typeFor: ClipTypeChooser;
  /** Produces the bytes of every type except f32, which is written as is. */
  quantize: Quantizer;
  /** general.name (optional, default "cxr-llava-vision"). */
  name?: string;
  /** llama.cpp's LLAMA_FTYPE for general.file_type (optional, default: not written). */
  fileType?: number;
}

/** The value of cxr.vision.image_features: every token goes through ln_post, then CLS is dropped. */
export const CLIP_IMAGE_FEATURES = 'patches_after_post_ln';

/** The value of clip.projector_type for LLaVA's single Linear projector. */
export const CLIP_PROJECTOR_LINEAR = 'linear';

/** Embeddings and vectors: the class/position embeddings and every norm and bias stay f32. */
function isVector(name: string, ne: number[]): boolean {
  return ne.length === 1 || name === 'v.position_embd.weight';
}

/**
 * `matrix` for every 2-D matrix (f32 when a row does not fit its blocks) and
 * `conv` for the patch embedding. ggml sees conv1 as 4-D with rows of patchSize (16)
 * elements, too short for q8_0's 32-element blocks, so it stays f16 whenever the
 * matrices are compressed (0.5 MB in f16 for ViT-L/16: nothing to gain).
 */
function recipe(matrix: GgmlTypeName, conv: GgmlTypeName, fileType: number): ClipRecipe {
  return {
    fileType,
    typeFor: (name, ne) => {
      if (isVector(name, ne)) return 'f32';
      if (name === 'v.patch_embd.weight') return conv;
      return fitType(matrix, ne[0]!);
    },
  };
}

/** Named recipes (general.file_type: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7). */
export const clipRecipes = {
  f32: recipe('f32', 'f32', 0),
  f16: recipe('f16', 'f16', 1),
  q8_0: recipe('q8_0', 'f16', 7),
} satisfies Record<string, ClipRecipe>;

export type ClipRecipeName = keyof typeof clipRecipes;

function checkHParams(hp: ClipHParams): void {
  for (const key of ['imageSize', 'patchSize', 'channels', 'width', 'numLayers', 'numHeads', 'mlpDim', 'projDim'] as const) {
    if (!Number.isInteger(hp[key]) || hp[key] <= 0) {
      throw new Error(`CLIP hparams: expected positive integer for ${key} but received ${hp[key]}`);
    }
  }
  if (!(hp.layerNormEps > 0)) {
    throw new Error(`CLIP hparams: expected positive number for layerNormEps but received ${hp.layerNormEps}`);
  }
  if (hp.imageSize % hp.patchSize !== 0) {
    throw new Error(`CLIP hparams: imageSize ${hp.imageSize} is not a multiple of patchSize ${hp.patchSize}`);
  }
  if (hp.width % hp.numHeads !== 0) {
    throw new Error(`CLIP hparams: width ${hp.width} does not split into ${hp.numHeads} heads`);
  }
  for (const key of ['imageMean', 'imageStd'] as const) {
    const v = hp[key];
    if (!Array.isArray(v) || v.length !== hp.channels || !v.every((x) => Number.isFinite(x))) {
      throw new Error(`CLIP hparams: expected ${hp.channels} finite numbers for ${key} but received ${JSON.stringify(v)}`);
    }
  }
  if (!hp.imageStd.every((x) => x > 0)) {
    throw new Error(`CLIP hparams: imageStd must be positive, received ${JSON.stringify(hp.imageStd)}`);
  }
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Rows [part*rows, (part+1)*rows) of a row-major matrix with `cols` columns, as a fresh array. */
function rowSlice(data: Float32Array, part: number, rows: number, cols: number): Float32Array {
  return data.slice(part * rows * cols, (part + 1) * rows * cols);
}

/**
 * Adds the hyperparameters and every tensor of the image encoder and projector to `w`.
 * Shapes are checked here, before anything is written; tensor data is read and
 * converted only when the writer asks for it. A fused in_proj tensor is read once for
 * each of q, k and v (it is small; this keeps one tensor in memory at a time).
 */
export function addClipToGguf(w: GgufSink, hp: ClipHParams, tensors: ClipTensors, opts: ClipGgufOptions): void {
  checkHParams(hp);
  if (tensors.layers.length !== hp.numLayers) {
    throw new Error(`CLIP tensors: ${tensors.layers.length} layers given but numLayers is ${hp.numLayers}`);
  }
  const { width: d, mlpDim: mlp, patchSize: p, channels: c } = hp;
  const nPos = (hp.imageSize / p) ** 2 + 1;

  // [GGUF name, role (for errors), source, expected PyTorch shape, which third of a fused q/k/v (-1: none)]
  type Entry = [string, string, TensorSource, number[], number];
  const entries: Entry[] = [
    ['v.patch_embd.weight', 'conv1', tensors.conv1, [d, c, p, p], -1],
    ['v.class_embd', 'classEmbedding', tensors.classEmbedding, [d], -1],
    ['v.position_embd.weight', 'positionalEmbedding', tensors.positionalEmbedding, [nPos, d], -1],
    ['v.pre_ln.weight', 'lnPreWeight', tensors.lnPreWeight, [d], -1],
    ['v.pre_ln.bias', 'lnPreBias', tensors.lnPreBias, [d], -1],
  ];
  tensors.layers.forEach((l, i) => {
    const b = `v.blk.${i}.`;
    const r = `layers[${i}].`;
    entries.push([b + 'ln1.weight', r + 'ln1Weight', l.ln1Weight, [d], -1], [b + 'ln1.bias', r + 'ln1Bias', l.ln1Bias, [d], -1]);
    ['attn_q', 'attn_k', 'attn_v'].forEach((n, part) => {
      entries.push(
        [`${b}${n}.weight`, r + 'inProjWeight', l.inProjWeight, [3 * d, d], part],
        [`${b}${n}.bias`, r + 'inProjBias', l.inProjBias, [3 * d], part],
      );
    });
    entries.push(
      [b + 'attn_out.weight', r + 'outProjWeight', l.outProjWeight, [d, d], -1],
      [b + 'attn_out.bias', r + 'outProjBias', l.outProjBias, [d], -1],
      [b + 'ln2.weight', r + 'ln2Weight', l.ln2Weight, [d], -1],
      [b + 'ln2.bias', r + 'ln2Bias', l.ln2Bias, [d], -1],
      [b + 'ffn_up.weight', r + 'fcWeight', l.fcWeight, [mlp, d], -1],
      [b + 'ffn_up.bias', r + 'fcBias', l.fcBias, [mlp], -1],
      [b + 'ffn_down.weight', r + 'projWeight', l.projWeight, [d, mlp], -1],
      [b + 'ffn_down.bias', r + 'projBias', l.projBias, [d], -1],
    );
  });
  entries.push(
    ['v.post_ln.weight', 'lnPostWeight', tensors.lnPostWeight, [d], -1],
    ['v.post_ln.bias', 'lnPostBias', tensors.lnPostBias, [d], -1],
    ['mm.0.weight', 'projectorWeight', tensors.projectorWeight, [hp.projDim, d], -1],
    ['mm.0.bias', 'projectorBias', tensors.projectorBias, [hp.projDim], -1],
  );

  // Validate every shape and type choice before the first key is set.
  const planned = entries.map(([name, role, src, shape, part]) => {
    if (!sameShape(src.shape, shape)) {
      throw new Error(`tensor ${name} (${role}): expected shape [${shape.join(', ')}] but got [${src.shape.join(', ')}]`);
    }
    // The stored shape: a third of the fused rows, or the source shape.
    const stored = part >= 0 ? [shape[0]! / 3, ...shape.slice(1)] : shape;
    const ne = [...stored].reverse();
    const type = opts.typeFor(name, ne);
    if (!Object.prototype.hasOwnProperty.call(GGML_TYPES, type)) throw new Error(`tensor ${name}: unknown type ${String(type)}`);
    const cols = ne[0]!;
    const count = stored.reduce((a, b) => a * b, 1);
    const rows = count / cols;
    const size = rows * rowBytes(type, cols, `tensor ${name} as ${type}`);
    const total = shape.reduce((a, b) => a * b, 1);
    return { name, src, shape, ne, type, rows, cols, count, total, size, part };
  });
  const quantized = planned.some((t) => t.type !== 'f32' && t.type !== 'f16' && t.type !== 'bf16');

  w.set('general.architecture', 'string', 'clip');
  w.set('general.name', 'string', opts.name ?? 'cxr-llava-vision');
  w.set('general.description', 'string', 'CXR-LLaVA image encoder (open_clip ViT) and linear projector');
  if (opts.fileType !== undefined) w.set('general.file_type', 'u32', opts.fileType);
  if (quantized) w.set('general.quantization_version', 'u32', 2);

  w.set('clip.has_text_encoder', 'bool', false);
  w.set('clip.has_vision_encoder', 'bool', true);
  w.set('clip.has_llava_projector', 'bool', true);
  w.set('clip.projector_type', 'string', CLIP_PROJECTOR_LINEAR);
  w.set('clip.use_gelu', 'bool', true);

  w.set('clip.vision.image_size', 'u32', hp.imageSize);
  w.set('clip.vision.patch_size', 'u32', p);
  w.set('clip.vision.embedding_length', 'u32', d);
  w.set('clip.vision.feed_forward_length', 'u32', mlp);
  w.set('clip.vision.projection_dim', 'u32', hp.projDim);
  w.set('clip.vision.block_count', 'u32', hp.numLayers);
  w.set('clip.vision.attention.head_count', 'u32', hp.numHeads);
  w.set('clip.vision.attention.layer_norm_epsilon', 'f32', hp.layerNormEps);
  w.setArray('clip.vision.image_mean', 'f32', Float32Array.from(hp.imageMean));
  w.setArray('clip.vision.image_std', 'f32', Float32Array.from(hp.imageStd));

  w.set('cxr.vision.image_channels', 'u32', c);
  w.set('cxr.vision.image_features', 'string', CLIP_IMAGE_FEATURES);
  w.set('cxr.vision.gelu_exact', 'bool', true);

  for (const t of planned) {
    w.addTensor(t.name, t.ne, t.type, async () => {
      let data = await t.src.read();
      if (data.length !== t.total) {
        throw new Error(`tensor ${t.name}: source gave ${data.length} values for shape [${t.shape.join(', ')}]`);
      }
      if (t.part >= 0) data = rowSlice(data, t.part, t.count / t.cols, t.cols);
      const bytes =
        t.type === 'f32'
          ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) // GGUF and every Node target are little-endian
          : await opts.quantize(t.type, data, t.rows, t.cols);
      if (bytes.length !== t.size) {
        throw new Error(`tensor ${t.name}: quantizer returned ${bytes.length} bytes for ${t.type}, expected ${t.size}`);
      }
      return bytes;
    });
  }
}

/**
 * The vision tensors by their names in the official checkpoint (`vision_tower.*`,
 * `mm_projector.*`), fetched through `src`. The converter and the test fixtures
 * both name tensors this way.
 */
export function officialClipTensors(src: (name: string) => TensorSource, numLayers: number): ClipTensors {
  const v = 'vision_tower.';
  return {
    conv1: src(v + 'conv1.weight'),
    classEmbedding: src(v + 'class_embedding'),
    positionalEmbedding: src(v + 'positional_embedding'),
    lnPreWeight: src(v + 'ln_pre.weight'),
    lnPreBias: src(v + 'ln_pre.bias'),
    layers: Array.from({ length: numLayers }, (_, i) => {
      const b = `${v}transformer.resblocks.${i}.`;
      return {
        ln1Weight: src(b + 'ln_1.weight'),
        ln1Bias: src(b + 'ln_1.bias'),
        inProjWeight: src(b + 'attn.in_proj_weight'),
        inProjBias: src(b + 'attn.in_proj_bias'),
        outProjWeight: src(b + 'attn.out_proj.weight'),
        outProjBias: src(b + 'attn.out_proj.bias'),
        ln2Weight: src(b + 'ln_2.weight'),
        ln2Bias: src(b + 'ln_2.bias'),
        fcWeight: src(b + 'mlp.c_fc.weight'),
        fcBias: src(b + 'mlp.c_fc.bias'),
        projWeight: src(b + 'mlp.c_proj.weight'),
        projBias: src(b + 'mlp.c_proj.bias'),
      };
    }),
    lnPostWeight: src(v + 'ln_post.weight'),
    lnPostBias: src(v + 'ln_post.bias'),
    projectorWeight: src('mm_projector.weight'),
    projectorBias: src('mm_projector.bias'),
  };
}
