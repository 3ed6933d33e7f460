// Writes a LLaMA text model (Hugging Face layout in, llama.cpp GGUF conventions out)
// into a GgufWriter. Used by the converter and by the tests that build tiny models.
//
// Facts followed here (llama.cpp's GGUF conventions for architecture "llama"):
//  * hyperparameters live under "llama.*", the SentencePiece vocabulary under
//    "tokenizer.ggml.*" with model "llama";
//  * ne lists dimensions fastest-first, so a PyTorch [rows, cols] matrix has ne [cols, rows];
//  * Q and K rows are stored in adjacent-pair RoPE order (pairs 2i, 2i+1), while HF
//    checkpoints use rotate-half order (pairs i, i + head_dim/2); see hfToGgufRopeRows.
// Tensors are converted lazily: each data callback reads, permutes and quantizes one
// tensor, so a 7B conversion never holds more than one tensor in memory.

import { GGML_TYPES, type GgmlTypeName } from './gguf-writer.js';

/** Hyperparameters of a LLaMA text model. */
export interface LlamaHParams {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  rmsNormEps: number;
  ropeTheta: number;
  contextLength: number;
}

/** One weight tensor in HF layout, read on demand. */
export interface TensorSource {
  /** PyTorch shape, e.g. [out_features, in_features]. */
  shape: number[];
  /** The values, row-major. Must return a fresh array: the writer may permute it in place. */
  read(): Float32Array | Promise<Float32Array>;
}

/** The tensors of one decoder layer, HF layout (q/k rows in rotate-half order). */
export interface LlamaLayerTensors {
  attnNorm: TensorSource; // input_layernorm.weight [dim]
  q: TensorSource; // self_attn.q_proj.weight [numHeads*headDim, dim]
  k: TensorSource; // self_attn.k_proj.weight [numKvHeads*headDim, dim]
  v: TensorSource; // self_attn.v_proj.weight [numKvHeads*headDim, dim]
  o: TensorSource; // self_attn.o_proj.weight [dim, numHeads*headDim]
  ffnNorm: TensorSource; // post_attention_layernorm.weight [dim]
  gate: TensorSource; // mlp.gate_proj.weight [ffn, dim]
  up: TensorSource; // mlp.up_proj.weight [ffn, dim]
  down: TensorSource; // mlp.down_proj.weight [dim, ffn]
}

/** All tensors of a LLaMA text model, HF layout. */
export interface LlamaTensors {
  embed: TensorSource; // model.embed_tokens.weight [vocab, dim]
  norm: TensorSource; // model.norm.weight [dim]
  lmHead: TensorSource; // lm_head.weight [vocab, dim] (untied)
  layers: LlamaLayerTensors[];
}

/** One vocabulary entry; type uses SentencePiece's numbering, which GGUF shares (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte). */
export interface VocabPiece {
  piece: string;
  score: number;
  type: number;
}

/** A SentencePiece vocabulary as stored in GGUF. */
export interface Vocab {
  pieces: VocabPiece[];
  bosId: number;
  eosId: number;
  unkId: number;
  /** Padding id; not written when absent or negative (optional, default -1). */
  padId?: number;
  /** Whether prompts start with BOS (optional, default true). */
  addBos?: boolean;
  /** Whether prompts end with EOS (optional, default false). */
  addEos?: boolean;
}

/** Converts row-major float32 data of shape [rows, cols] to `type`'s GGUF bytes. */
/** Quantizes a [rows, cols] matrix into `type`; may work asynchronously (the converter's runs on worker threads). */
export type Quantizer = (type: GgmlTypeName, data: Float32Array, rows: number, cols: number) => Uint8Array | Promise<Uint8Array>;

/** Picks the stored type of one tensor from its GGUF name and ne. */
export type TypeChooser = (ggufName: string, ne: number[], hp: LlamaHParams) => GgmlTypeName;

/** What addLlamaToGguf needs from a GgufWriter (its structural subset, so tests can record calls). */
export interface GgufSink {
  set(key: string, type: 'u32' | 'i32' | 'f32' | 'bool' | 'string', value: number | boolean | string): unknown;
  setArray(key: string, elemType: 'i32' | 'f32' | 'string', values: ArrayLike<number> | ArrayLike<string>): unknown;
  addTensor(name: string, ne: number[], type: GgmlTypeName, data: () => Promise<Uint8Array>): unknown;
}

/** How each tensor is stored. */
export interface LlamaGgufOptions {
  /** Type of each tensor; a recipe's typeFor fits here. */
  typeFor: TypeChooser;
  /** llama.cpp's LLAMA_FTYPE for general.file_type; a recipe carries it. */
  fileType: number;
  /** Produces the bytes of every type except f32, which is written as is. */
  quantize: Quantizer;
  /** general.name (optional, default "llama"). */
  name?: string;
}

// ---- types and recipes -------------------------------------------------------------------

/** Bytes of one row of `cols` elements, or an error naming the tensor when cols is not a whole number of blocks. */
export function rowBytes(type: GgmlTypeName, cols: number, tensorName: string): number {
  const { blockSize, blockBytes } = GGML_TYPES[type];
  if (cols % blockSize !== 0) {
    throw new Error(`${tensorName}: row length ${cols} is not a multiple of ${type}'s block size ${blockSize}`);
  }
  return (cols / blockSize) * blockBytes;
}

/** The closest type to `want` whose blocks divide a row of `cols` elements: k-quants fall back to q8_0, then f16. */
export function fitType(want: GgmlTypeName, cols: number): GgmlTypeName {
  if (cols % GGML_TYPES[want].blockSize === 0) return want;
  // llama.cpp falls back from q4_k to q5_0, which we do not implement; q8_0 costs more
  // bytes but loses less, and these tensors are rare (odd row lengths only).
  return cols % GGML_TYPES.q8_0.blockSize === 0 ? 'q8_0' : 'f16';
}

/** The block index of a "blk.N.*" tensor name, or -1. */
function layerOf(ggufName: string): number {
  const m = /^blk\.(\d+)\./.exec(ggufName);
  return m ? Number(m[1]) : -1;
}

/** llama.cpp's rule for which layers get more bits: the first and last eighth, and every third one between. */
export function useMoreBits(layer: number, numLayers: number): boolean {
  const eighth = Math.floor(numLayers / 8);
  return layer < eighth || layer >= Math.floor((7 * numLayers) / 8) || (layer - eighth) % 3 === 2;
}

/** A storage recipe: a type per tensor and the llama.cpp file type it corresponds to. */
export interface LlamaRecipe {
  fileType: number;
  typeFor: TypeChooser;
}

/** 1-D tensors (the norms) stay f32 and every matrix gets `type`, token_embd and output included. */
function uniform(type: GgmlTypeName, fileType: number): LlamaRecipe {
  return { fileType, typeFor: (_name, ne) => (ne.length === 1 ? 'f32' : fitType(type, ne[0]!)) };
}

/**
 * Named recipes. general.file_type values are llama.cpp's LLAMA_FTYPE numbers
 * (ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7, MOSTLY_Q4_K_M 15, MOSTLY_BF16 32).
 *
 * q4_0 here is uniform, output.weight included; llama.cpp's own Q4_0 would store output
 * as q6_k. q4_k_m follows llama.cpp's Q4_K_M for a plain LLaMA:
 *  - default q4_k, token_embd.weight included;
 *  - output.weight q6_k;
 *  - attn_v.weight and ffn_down.weight q6_k in layers where useMoreBits(layer, numLayers)
 *    holds (16 of LLaMA-2-7B's 32 layers: 0-3, 6, 9, ..., 27, 28-31);
 *  - norms f32; rows that are not a multiple of 256 fall back per tensor (fitType).
 */
export const recipes = {
  f32: uniform('f32', 0),
  f16: uniform('f16', 1),
  bf16: uniform('bf16', 32),
  q8_0: uniform('q8_0', 7),
  q4_0: uniform('q4_0', 2),
  q4_k_m: {
    fileType: 15,
    typeFor: (name, ne, hp) => {
      if (ne.length === 1) return 'f32';
      const layer = layerOf(name);
      const moreBits =
        name === 'output.weight' ||
        ((name.endsWith('.attn_v.weight') || name.endsWith('.ffn_down.weight')) && useMoreBits(layer, hp.numLayers));
      return fitType(moreBits ? 'q6_k' : 'q4_k', ne[0]!);
    },
  },
} satisfies Record<string, LlamaRecipe>;

export type RecipeName = keyof typeof recipes;

// ---- conversion --------------------------------------------------------------------------

/**
 * Reorders the rows of a Q or K projection [heads*headDim, cols] from HF's rotate-half
 * RoPE order to GGUF's adjacent-pair order: within each head, HF rows i and
 * i + headDim/2 (one rotation pair) become rows 2i and 2i+1.
 */
export function hfToGgufRopeRows(data: Float32Array, heads: number, headDim: number, cols: number): Float32Array {
  if (data.length !== heads * headDim * cols || headDim % 2 !== 0) {
    throw new Error(`cannot permute ${data.length} values as ${heads} heads x ${headDim} rows x ${cols} columns`);
  }
  const out = new Float32Array(data.length);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    const base = h * headDim;
    for (let i = 0; i < half; i++) {
      out.set(data.subarray((base + i) * cols, (base + i + 1) * cols), (base + 2 * i) * cols);
      out.set(data.subarray((base + half + i) * cols, (base + half + i + 1) * cols), (base + 2 * i + 1) * cols);
    }
  }
  return out;
}

function checkHParams(hp: LlamaHParams): void {
  for (const key of ['vocabSize', 'hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'numKvHeads', 'contextLength'] as const) {
    if (!Number.isInteger(hp[key]) || hp[key] <= 0) {
      throw new Error(`LLaMA hparams: expected positive integer for ${key} but received ${hp[key]}`);
    }
  }
  for (const key of ['rmsNormEps', 'ropeTheta'] as const) {
    if (!(hp[key] > 0)) throw new Error(`LLaMA hparams: expected positive number for ${key} but received ${hp[key]}`);
  }
  if (hp.hiddenSize % hp.numHeads !== 0 || (hp.hiddenSize / hp.numHeads) % 2 !== 0) {
    throw new Error(`LLaMA hparams: hiddenSize ${hp.hiddenSize} must split into ${hp.numHeads} heads of even size`);
  }
  if (hp.numHeads % hp.numKvHeads !== 0) {
    throw new Error(`LLaMA hparams: numHeads ${hp.numHeads} is not a multiple of numKvHeads ${hp.numKvHeads}`);
  }
}

function checkVocab(vocab: Vocab, hp: LlamaHParams): void {
  if (vocab.pieces.length !== hp.vocabSize) {
    throw new Error(`vocabulary has ${vocab.pieces.length} pieces but vocabSize is ${hp.vocabSize}`);
  }
  for (const [what, id] of [['bosId', vocab.bosId], ['eosId', vocab.eosId], ['unkId', vocab.unkId]] as const) {
    if (!Number.isInteger(id) || id < 0 || id >= hp.vocabSize) {
      throw new Error(`vocabulary ${what} ${id} is outside [0, ${hp.vocabSize})`);
    }
  }
  const pad = vocab.padId ?? -1;
  if (!Number.isInteger(pad) || pad >= hp.vocabSize) {
    throw new Error(`vocabulary padId ${pad} is outside [0, ${hp.vocabSize})`);
  }
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Adds the hyperparameters, vocabulary and every tensor of a LLaMA text model to `w`.
 * Shapes are checked here, before anything is written; tensor data is read and
 * converted only when the writer asks for it.
 */
export function addLlamaToGguf(
  w: GgufSink,
  hp: LlamaHParams,
  vocab: Vocab,
  tensors: LlamaTensors,
  opts: LlamaGgufOptions,
): void {
  checkHParams(hp);
  checkVocab(vocab, hp);
  if (tensors.layers.length !== hp.numLayers) {
    throw new Error(`LLaMA tensors: ${tensors.layers.length} layers given but numLayers is ${hp.numLayers}`);
  }
  const dim = hp.hiddenSize;
  const headDim = dim / hp.numHeads;
  const kvDim = hp.numKvHeads * headDim;

  // [GGUF name, role (for errors), source, expected PyTorch shape, rope heads to permute or 0]
  type Entry = [string, string, TensorSource, number[], number];
  const entries: Entry[] = [['token_embd.weight', 'embed', tensors.embed, [hp.vocabSize, dim], 0]];
  tensors.layers.forEach((l, i) => {
    const b = `blk.${i}.`;
    entries.push(
      [b + 'attn_norm.weight', `layers[${i}].attnNorm`, l.attnNorm, [dim], 0],
      [b + 'attn_q.weight', `layers[${i}].q`, l.q, [dim, dim], hp.numHeads],
      [b + 'attn_k.weight', `layers[${i}].k`, l.k, [kvDim, dim], hp.numKvHeads],
      [b + 'attn_v.weight', `layers[${i}].v`, l.v, [kvDim, dim], 0],
      [b + 'attn_output.weight', `layers[${i}].o`, l.o, [dim, dim], 0],
      [b + 'ffn_norm.weight', `layers[${i}].ffnNorm`, l.ffnNorm, [dim], 0],
      [b + 'ffn_gate.weight', `layers[${i}].gate`, l.gate, [hp.intermediateSize, dim], 0],
      [b + 'ffn_up.weight', `layers[${i}].up`, l.up, [hp.intermediateSize, dim], 0],
      [b + 'ffn_down.weight', `layers[${i}].down`, l.down, [dim, hp.intermediateSize], 0],
    );
  });
  entries.push(
    ['output_norm.weight', 'norm', tensors.norm, [dim], 0],
    ['output.weight', 'lmHead', tensors.lmHead, [hp.vocabSize, dim], 0],
  );

  // Validate every shape and type choice before the first key is set.
  const planned = entries.map(([name, role, src, shape, ropeHeads]) => {
    if (!sameShape(src.shape, shape)) {
      throw new Error(`tensor ${name} (${role}): expected shape [${shape.join(', ')}] but got [${src.shape.join(', ')}]`);
    }
    const ne = [...shape].reverse();
    const type = opts.typeFor(name, ne, hp);
    if (!Object.prototype.hasOwnProperty.call(GGML_TYPES, type)) throw new Error(`tensor ${name}: unknown type ${String(type)}`);
    const cols = ne[0]!;
    const rows = shape.length === 2 ? shape[0]! : 1;
    const size = rows * rowBytes(type, cols, `tensor ${name} as ${type}`);
    return { name, src, shape, ne, type, rows, cols, size, ropeHeads };
  });
  const quantized = planned.some((p) => p.type !== 'f32' && p.type !== 'f16' && p.type !== 'bf16');

  w.set('general.architecture', 'string', 'llama');
  w.set('general.name', 'string', opts.name ?? 'llama');
  w.set('general.file_type', 'u32', opts.fileType);
  // llama.cpp marks files with block quants by the quantization format version (2 since 2023).
  if (quantized) w.set('general.quantization_version', 'u32', 2);

  w.set('llama.vocab_size', 'u32', hp.vocabSize);
  w.set('llama.context_length', 'u32', hp.contextLength);
  w.set('llama.embedding_length', 'u32', dim);
  w.set('llama.block_count', 'u32', hp.numLayers);
  w.set('llama.feed_forward_length', 'u32', hp.intermediateSize);
  w.set('llama.rope.dimension_count', 'u32', headDim);
  w.set('llama.attention.head_count', 'u32', hp.numHeads);
  w.set('llama.attention.head_count_kv', 'u32', hp.numKvHeads);
  w.set('llama.attention.layer_norm_rms_epsilon', 'f32', hp.rmsNormEps);
  w.set('llama.rope.freq_base', 'f32', hp.ropeTheta);

  w.set('tokenizer.ggml.model', 'string', 'llama');
  w.setArray('tokenizer.ggml.tokens', 'string', vocab.pieces.map((p) => p.piece));
  w.setArray('tokenizer.ggml.scores', 'f32', Float32Array.from(vocab.pieces, (p) => p.score));
  w.setArray('tokenizer.ggml.token_type', 'i32', Int32Array.from(vocab.pieces, (p) => p.type));
  w.set('tokenizer.ggml.bos_token_id', 'u32', vocab.bosId);
  w.set('tokenizer.ggml.eos_token_id', 'u32', vocab.eosId);
  w.set('tokenizer.ggml.unknown_token_id', 'u32', vocab.unkId);
  if ((vocab.padId ?? -1) >= 0) w.set('tokenizer.ggml.padding_token_id', 'u32', vocab.padId!);
  w.set('tokenizer.ggml.add_bos_token', 'bool', vocab.addBos ?? true);
  w.set('tokenizer.ggml.add_eos_token', 'bool', vocab.addEos ?? false);

  for (const p of planned) {
    w.addTensor(p.name, p.ne, p.type, async () => {
      let data = await p.src.read();
      if (data.length !== p.rows * p.cols) {
        throw new Error(`tensor ${p.name}: source gave ${data.length} values for shape [${p.shape.join(', ')}]`);
      }
      if (p.ropeHeads > 0) data = hfToGgufRopeRows(data, p.ropeHeads, headDim, p.cols);
      const bytes =
        p.type === 'f32'
          ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) // GGUF and every Node target are little-endian
          : await opts.quantize(p.type, data, p.rows, p.cols);
      if (bytes.length !== p.size) {
        throw new Error(`tensor ${p.name}: quantizer returned ${bytes.length} bytes for ${p.type}, expected ${p.size}`);
      }
      return bytes;
    });
  }
}
