// Builds a tiny CXR-LLaVA checkpoint in the exact layout of the official Hugging Face
// repository (ECOFRI/CXR-LLAVA-v2): config.json with the `llama` / `clip_vision_cfg`
// dicts, the tokenizer files, and bf16 safetensors split over three shards plus the index.
//
// Weights: the deterministic spec of prng-weights.ts, seeded by the HF LLaMA names for
// the text model (official "llama.layers.N.*" <-> HF "model.layers.N.*") and by the
// official names for the vision tower (the spec of tools/reference/tiny_cxr_llava.py),
// each rounded once to bf16 (round to nearest even), as the official shards store them.

import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { makeWeight, TINY_LLAMA_DIMS, tinyLlamaWeights, type TinyLlamaDims } from './prng-weights.js';
import { TINY_SP_MODEL } from './tiny-llama.js';

/** The tiny model's vision tower (tools/reference/tiny_cxr_llava.py's VISION). */
export const TINY_VISION = {
  imageSize: 64,
  patchSize: 16,
  width: 64,
  layers: 2,
  headWidth: 16, // 4 heads; the official config omits head_width (open_clip default 64)
  clipEmbedDim: 32,
  mean: [0.5],
  std: [0.25],
};

/** The fixture tokenizer's vocabulary size. */
export const TINY_VOCAB = 1000;

export type Dtype = 'BF16' | 'F16' | 'F32';

export interface OfficialCheckpointOptions {
  /** Store these tensors with another dtype (optional). */
  dtypes?: Record<string, Dtype>;
  /** Declare (and generate) these tensors with another shape (optional). */
  shapes?: Record<string, number[]>;
  /** Edits config.json before it is written (optional). */
  editConfig?: (config: Record<string, any>) => void;
  /** Also write tensors the converter does not know (optional). */
  extraTensors?: Record<string, { shape: number[]; dtype: Dtype }>;
  /** Other LLaMA dims, e.g. for a timing run; the reference goldens hold only for the default (optional). */
  llamaDims?: Partial<Omit<TinyLlamaDims, 'vocabSize'>>;
}

export interface OfficialCheckpoint {
  dir: string;
  /** Every file written, relative to dir. */
  files: string[];
  /** The shard files in order. */
  shards: string[];
  /** tensor name -> its float32 values after bf16 rounding (what the converter must reproduce). */
  weights: Map<string, { shape: number[]; values: Float32Array }>;
}

export const SHARDS = ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'];

/** Rounds float32 values to bfloat16 (nearest, ties to even); returns the bf16 bit patterns. */
export function toBf16Bits(values: Float32Array): Uint16Array {
  const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < u.length; i++) {
    const b = u[i]!;
    out[i] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff; // no NaNs in these weights
  }
  return out;
}

function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i]! << 16;
  return out;
}

function f32ToF16Bits(v: number): number {
  // Round to nearest even; values below f16's normal range become zero, enough for a dtype test.
  const f = new Float32Array([v]);
  const b = new Uint32Array(f.buffer)[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = ((b >>> 23) & 0xff) - 127 + 15;
  const mant = b & 0x7fffff;
  if (exp <= 0) return sign; // flush tiny values; enough for a dtype test
  const r = mant + 0xfff + ((mant >>> 13) & 1);
  return sign | ((exp << 10) + (r >>> 13));
}

type Kind = 'embed' | 'linear' | 'norm' | 'bias';

/** Vision weights per tools/reference/tiny_cxr_llava.py's spec. */
function visionWeight(name: string, shape: number[], kind: Kind): Float32Array {
  if (kind === 'linear') return makeWeight(name, [shape[0]!, shape.slice(1).reduce((a, b) => a * b, 1)], 'linear');
  if (kind === 'bias') return makeWeight(name, shape, 'embed').map((x) => x / 16);
  return makeWeight(name, shape, kind);
}

/** Official names, shapes and kinds of every vision tensor. */
export function visionSpecs(v = TINY_VISION, llamaDim = TINY_LLAMA_DIMS.hiddenSize): [string, number[], Kind][] {
  const w = v.width;
  const p = v.patchSize;
  const nPos = (v.imageSize / p) ** 2 + 1;
  const specs: [string, number[], Kind][] = [
    ['vision_tower.conv1.weight', [w, 1, p, p], 'linear'],
    ['vision_tower.class_embedding', [w], 'embed'],
    ['vision_tower.positional_embedding', [nPos, w], 'embed'],
    ['vision_tower.ln_pre.weight', [w], 'norm'],
    ['vision_tower.ln_pre.bias', [w], 'bias'],
  ];
  for (let i = 0; i < v.layers; i++) {
    const b = `vision_tower.transformer.resblocks.${i}.`;
    specs.push(
      [b + 'ln_1.weight', [w], 'norm'],
      [b + 'ln_1.bias', [w], 'bias'],
      [b + 'attn.in_proj_weight', [3 * w, w], 'linear'],
      [b + 'attn.in_proj_bias', [3 * w], 'bias'],
      [b + 'attn.out_proj.weight', [w, w], 'linear'],
      [b + 'attn.out_proj.bias', [w], 'bias'],
      [b + 'ln_2.weight', [w], 'norm'],
      [b + 'ln_2.bias', [w], 'bias'],
      [b + 'mlp.c_fc.weight', [4 * w, w], 'linear'],
      [b + 'mlp.c_fc.bias', [4 * w], 'bias'],
      [b + 'mlp.c_proj.weight', [w, 4 * w], 'linear'],
      [b + 'mlp.c_proj.bias', [w], 'bias'],
    );
  }
  specs.push(
    ['vision_tower.ln_post.weight', [w], 'norm'],
    ['vision_tower.ln_post.bias', [w], 'bias'],
    ['vision_tower.proj', [w, v.clipEmbedDim], 'linear'],
    ['mm_projector.weight', [llamaDim, w], 'linear'],
    ['mm_projector.bias', [llamaDim], 'bias'],
  );
  return specs;
}

/** Official LLaMA name for an HF LlamaForCausalLM name. */
export function officialLlamaName(hf: string): string {
  return hf.startsWith('model.') ? 'llama.' + hf.slice('model.'.length) : hf;
}

/** Serialises tensors as one safetensors file. */
export function safetensorsBytes(tensors: { name: string; dtype: Dtype; shape: number[]; data: Uint8Array }[]): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.length))]);
}

/** The config.json of the tiny model: the official keys, LLaMA fields left to their defaults where the tiny model allows. */
export function tinyConfig(d: Omit<TinyLlamaDims, 'vocabSize'> = TINY_LLAMA_DIMS): Record<string, any> {
  return {
    _name_or_path: 'ECOFRI/CXR-LLAVA-v2',
    architectures: ['CXRLLAVAModel'],
    auto_map: { AutoConfig: 'CXR_LLAVA_HF.CXRLLAVAConfig', AutoModel: 'CXR_LLAVA_HF.CXRLLAVAModel' },
    clip_embed_dim: TINY_VISION.clipEmbedDim,
    clip_vision_cfg: {
      image_size: TINY_VISION.imageSize,
      layers: TINY_VISION.layers,
      patch_size: TINY_VISION.patchSize,
      width: TINY_VISION.width,
      head_width: TINY_VISION.headWidth,
    },
    image_preprocess_cfg: { mean: TINY_VISION.mean, std: TINY_VISION.std },
    // rms_norm_eps 1e-6, rope_theta 10000, hidden_act silu: LlamaConfig defaults, so omitted.
    llama: {
      architectures: ['LlamaForCausalLM'],
      hidden_size: d.hiddenSize,
      intermediate_size: d.intermediateSize,
      max_position_embeddings: d.contextLength,
      model_type: 'llama',
      num_attention_heads: d.numHeads,
      num_hidden_layers: d.numLayers,
      num_key_value_heads: d.numKvHeads,
      torch_dtype: 'bfloat16',
      vocab_size: TINY_VOCAB,
    },
    mm_projector_dim: TINY_VISION.width,
    model_type: 'CXR-LLAVA',
    torch_dtype: 'bfloat16',
    transformers_version: '4.34.0',
  };
}

/** Writes the tiny checkpoint into `dir` (created if needed). */
export async function writeOfficialCheckpoint(dir: string, opts: OfficialCheckpointOptions = {}): Promise<OfficialCheckpoint> {
  await mkdir(dir, { recursive: true });
  const dims: TinyLlamaDims = { ...TINY_LLAMA_DIMS, ...opts.llamaDims, vocabSize: TINY_VOCAB };
  const specs: { name: string; shape: number[]; gen: (shape: number[]) => Float32Array }[] = [];
  for (const [hf, w] of tinyLlamaWeights(dims)) {
    const kind = hf.endsWith('norm.weight') ? 'norm' : hf.endsWith('embed_tokens.weight') ? 'embed' : 'linear';
    specs.push({ name: officialLlamaName(hf), shape: w.shape, gen: (shape) => makeWeight(hf, shape, kind) });
  }
  for (const [name, shape, kind] of visionSpecs(TINY_VISION, dims.hiddenSize)) specs.push({ name, shape, gen: (s) => visionWeight(name, s, kind) });
  for (const [name, t] of Object.entries(opts.extraTensors ?? {})) {
    specs.push({ name, shape: t.shape, gen: (s) => makeWeight(name, [1, s.reduce((a, b) => a * b, 1)], 'linear') });
  }

  const weights = new Map<string, { shape: number[]; values: Float32Array }>();
  const encoded = specs.map((s) => {
    const shape = opts.shapes?.[s.name] ?? s.shape;
    const dtype = opts.dtypes?.[s.name] ?? opts.extraTensors?.[s.name]?.dtype ?? 'BF16';
    const f32 = s.gen(shape);
    let data: Uint8Array;
    if (dtype === 'BF16') {
      const bits = toBf16Bits(f32);
      weights.set(s.name, { shape, values: bf16ToF32(bits) });
      data = new Uint8Array(bits.buffer);
    } else if (dtype === 'F16') {
      data = new Uint8Array(Uint16Array.from(f32, f32ToF16Bits).buffer);
    } else {
      weights.set(s.name, { shape, values: f32 });
      data = new Uint8Array(f32.buffer.slice(0));
    }
    return { name: s.name, dtype, shape, data };
  });

  // Three shards of about equal size, tensors in order, as save_pretrained splits them.
  const total = encoded.reduce((a, t) => a + t.data.length, 0);
  const groups: (typeof encoded)[] = [[], [], []];
  let acc = 0;
  for (const t of encoded) {
    groups[Math.min(2, Math.floor((acc / total) * 3))]!.push(t);
    acc += t.data.length;
  }
  const weightMap: Record<string, string> = {};
  for (let i = 0; i < 3; i++) {
    await writeFile(path.join(dir, SHARDS[i]!), safetensorsBytes(groups[i]!));
    for (const t of groups[i]!) weightMap[t.name] = SHARDS[i]!;
  }
  await writeFile(
    path.join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2),
  );

  const config = tinyConfig(dims);
  opts.editConfig?.(config);
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  await writeFile(path.join(dir, 'generation_config.json'), JSON.stringify({ _from_model_config: true, bos_token_id: 1, eos_token_id: 2 }));
  await writeFile(
    path.join(dir, 'special_tokens_map.json'),
    JSON.stringify({ bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' }),
  );
  await writeFile(path.join(dir, 'added_tokens.json'), JSON.stringify({}));
  await writeFile(
    path.join(dir, 'tokenizer_config.json'),
    JSON.stringify({ add_bos_token: true, add_eos_token: false, model_max_length: 2048, tokenizer_class: 'LlamaTokenizer' }),
  );
  await copyFile(TINY_SP_MODEL, path.join(dir, 'tokenizer.model'));
  await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify({ version: '1.0', model: { type: 'BPE' } }));
  // The official repository also carries pickled duplicates of the shards; a pull must never fetch them.
  await writeFile(path.join(dir, 'pytorch_model-00001-of-00003.bin'), Buffer.alloc(4096, 0xab));

  const files = [
    'config.json', 'generation_config.json', 'special_tokens_map.json', 'added_tokens.json', 'tokenizer_config.json',
    'tokenizer.model', 'tokenizer.json', 'model.safetensors.index.json', ...SHARDS, 'pytorch_model-00001-of-00003.bin',
  ];
  return { dir, files, shards: [...SHARDS], weights };
}
