// convert.ts - converts the official CXR-LLaVA checkpoint (Hugging Face layout,
// ECOFRI/CXR-LLAVA-v2: bf16 safetensors shards + config.json + tokenizer.model) into
// two GGUF files: the LLaMA text model and the vision "mmproj".
//
// Streaming: each tensor is read, converted and quantized inside the GGUF writer's data
// callback, so peak memory is a small multiple of the largest tensor (token_embd: 32000 x
// 4096, ~0.5 GB as float32), never the model.
//
// All-or-nothing: both files are written into a staging folder inside outDir and renamed
// into place only when both are complete. On any error the staging folder is removed, so
// outDir never holds one GGUF without the other, nor a partial one.
//
// Time: quantization runs on native worker threads, one slice of rows per hardware
// thread (quantizeAsync), so the event loop stays free for progress bars and the whole
// machine works on the K-quants' slow scale search.

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addClipToGguf, clipRecipes, officialClipTensors, type ClipHParams, type ClipRecipeName } from './clip-gguf.js';
import { humanBytes } from '../cli/format.js';
import { GGML_TYPES, GgufWriter, tensorBytes, type GgmlTypeName } from './gguf-writer.js';
import {
  addLlamaToGguf,
  recipes,
  type GgufSink,
  type LlamaHParams,
  type LlamaTensors,
  type TensorSource,
  type Vocab,
  type VocabPiece,
} from './llama-gguf.js';
import { SafetensorsCheckpoint } from './safetensors.js';
import { parseSentencePieceModel } from './sentencepiece.js';
import { quantizeAsync } from '../runtime/tensors.js';
import { diskFullError, invalidParameterError } from '../errors.js';

/** Storage types of the text model. */
export const CONVERT_TYPES = ['q8_0', 'q4_k_m', 'q4_0', 'f16', 'f32'] as const;
export type ConvertType = (typeof CONVERT_TYPES)[number];
/** Storage types of the vision model. */
export const VISION_TYPES = ['f16', 'q8_0', 'f32'] as const;
export type VisionType = (typeof VISION_TYPES)[number];

/** The licences of the converted model: the checkpoint's and its LLaMA 2 base model's (SPDX expression). */
export const MODEL_LICENSE = 'CC-BY-NC-4.0 AND LicenseRef-LLaMA-2-Community-License';

/** Progress of a conversion. */
export interface ConvertProgress {
  /** `hash`: checksumming the source files; `text` / `vision`: writing that GGUF. */
  phase: 'hash' | 'text' | 'vision';
  /** Fraction of this phase done, 0 to 1. */
  progress: number;
  /** The file (hash) or tensor (text, vision) being worked on. */
  item?: string;
}

export interface ConvertOptions {
  /** Folder for the two GGUF files; created if needed. */
  outDir: string;
  /** Storage type of the text model (optional, default 'q8_0'). */
  type?: ConvertType;
  /** Storage type of the vision model (optional, default 'f16', or 'f32' when type is 'f32'). */
  visionType?: VisionType;
  /** Called as the conversion proceeds (optional). */
  onProgress?: (p: ConvertProgress) => void;
  /** Hugging Face repository the checkpoint came from, recorded in the metadata (optional). */
  sourceRepo?: string;
  /** Its revision (commit), recorded in the metadata (optional). */
  revision?: string;
  /** sha256 (hex) of source files already verified, by file name; those are not hashed again (optional). */
  knownSha256?: Record<string, string>;
}

export interface ConvertResult {
  textPath: string;
  mmprojPath: string;
  type: ConvertType;
  visionType: VisionType;
  textBytes: number;
  mmprojBytes: number;
  /** The source files used, with their sha256, as recorded in both GGUFs. */
  sources: { file: string; sha256: string; size: number }[];
  /** Checkpoint tensors the converter does not use (e.g. vision_tower.proj). */
  unusedTensors: string[];
  seconds: number;
}

/** File names of the converted model. */
export function ggufFileNames(type: string): { text: string; mmproj: string } {
  return { text: `cxr-llava-v2.${type}.gguf`, mmproj: `mmproj-cxr-llava-v2.${type}.gguf` };
}

/** This package's version, from the package.json above this file (dist/lib or lib). */
export function converterVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const p = path.join(dir, 'package.json');
    if (existsSync(p)) {
      const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'cxr-llava' && typeof pkg.version === 'string') return pkg.version;
    }
    dir = path.dirname(dir);
  }
  return 'unknown';
}

// ---- config.json -------------------------------------------------------------------------

/** What the converter takes from config.json. */
export interface CheckpointConfig {
  llama: LlamaHParams;
  vision: ClipHParams;
  /** clip_embed_dim: the width of the unused vision_tower.proj. */
  clipEmbedDim: number;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads the hyperparameters from a parsed config.json. Fields the official file leaves
 * out take the defaults of transformers' LlamaConfig and open_clip's CLIPVisionCfg;
 * a missing field with no default is an error naming `file` and the key.
 */
export function parseCheckpointConfig(config: unknown, file = 'config.json'): CheckpointConfig {
  if (!isObject(config)) throw new Error(`${file}: not a JSON object`);
  const section = (key: string): Json => {
    const v = config[key];
    if (v === undefined) throw new Error(`${file}: missing key "${key}" (it has no default)`);
    if (!isObject(v)) throw new Error(`${file}: "${key}" is not an object`);
    return v;
  };
  const num = (obj: Json, prefix: string, key: string, def: number | undefined, integer: boolean): number => {
    const v = obj[key];
    if (v === undefined || v === null) {
      if (def === undefined) throw new Error(`${file}: missing key "${prefix}${key}" (it has no default)`);
      return def;
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
      throw new Error(`${file}: "${prefix}${key}" must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(v)}`);
    }
    return v;
  };

  const l = section('llama');
  // transformers' LlamaConfig defaults (the LLaMA-7B shape).
  const numHeads = num(l, 'llama.', 'num_attention_heads', 32, true);
  const llama: LlamaHParams = {
    vocabSize: num(l, 'llama.', 'vocab_size', 32000, true),
    hiddenSize: num(l, 'llama.', 'hidden_size', 4096, true),
    intermediateSize: num(l, 'llama.', 'intermediate_size', 11008, true),
    numLayers: num(l, 'llama.', 'num_hidden_layers', 32, true),
    numHeads,
    numKvHeads: num(l, 'llama.', 'num_key_value_heads', numHeads, true),
    rmsNormEps: num(l, 'llama.', 'rms_norm_eps', 1e-6, false),
    ropeTheta: num(l, 'llama.', 'rope_theta', 10000, false),
    contextLength: num(l, 'llama.', 'max_position_embeddings', 2048, true),
  };
  const act = l.hidden_act ?? 'silu';
  if (act !== 'silu') throw new Error(`${file}: "llama.hidden_act" is ${JSON.stringify(act)}; only "silu" is supported`);
  if (l.rope_scaling !== undefined && l.rope_scaling !== null) {
    throw new Error(`${file}: "llama.rope_scaling" is set; RoPE scaling is not supported`);
  }
  if (l.tie_word_embeddings === true) throw new Error(`${file}: "llama.tie_word_embeddings" is true; LLaMA 2 keeps lm_head separate`);

  const v = section('clip_vision_cfg');
  const width = num(v, 'clip_vision_cfg.', 'width', undefined, true);
  // open_clip's CLIPVisionCfg defaults: head_width 64, mlp_ratio 4.0; LayerNorm eps 1e-5.
  const headWidth = num(v, 'clip_vision_cfg.', 'head_width', 64, true);
  const mlpRatio = num(v, 'clip_vision_cfg.', 'mlp_ratio', 4.0, false);
  if (width % headWidth !== 0) throw new Error(`${file}: "clip_vision_cfg.width" ${width} is not a multiple of head_width ${headWidth}`);
  if (!Number.isInteger(width * mlpRatio)) throw new Error(`${file}: "clip_vision_cfg.mlp_ratio" ${mlpRatio} x width ${width} is not an integer`);

  const pre = section('image_preprocess_cfg');
  const stats = (key: 'mean' | 'std'): number[] => {
    const a = pre[key];
    if (a === undefined) throw new Error(`${file}: missing key "image_preprocess_cfg.${key}" (it has no default)`);
    const arr = typeof a === 'number' ? [a] : a;
    if (!Array.isArray(arr) || arr.length === 0 || !arr.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      throw new Error(`${file}: "image_preprocess_cfg.${key}" must be a number or a list of numbers, got ${JSON.stringify(a)}`);
    }
    return arr as number[];
  };

  const mmIn = num(config, '', 'mm_projector_dim', undefined, true);
  if (mmIn !== width) {
    throw new Error(`${file}: "mm_projector_dim" ${mmIn} differs from "clip_vision_cfg.width" ${width}; the projector reads the tower's output`);
  }
  const vision: ClipHParams = {
    imageSize: num(v, 'clip_vision_cfg.', 'image_size', undefined, true),
    patchSize: num(v, 'clip_vision_cfg.', 'patch_size', undefined, true),
    channels: 1, // set from conv1's shape by the converter
    width,
    numLayers: num(v, 'clip_vision_cfg.', 'layers', undefined, true),
    numHeads: width / headWidth,
    mlpDim: width * mlpRatio,
    projDim: llama.hiddenSize,
    layerNormEps: 1e-5,
    imageMean: stats('mean'),
    imageStd: stats('std'),
  };
  if (vision.imageSize % vision.patchSize !== 0) {
    throw new Error(`${file}: "clip_vision_cfg.image_size" ${vision.imageSize} is not a multiple of patch_size ${vision.patchSize}`);
  }
  return { llama, vision, clipEmbedDim: num(config, '', 'clip_embed_dim', undefined, true) };
}

// ---- tokenizer ---------------------------------------------------------------------------

/**
 * The GGUF vocabulary: tokenizer.model's pieces, then added_tokens.json's tokens (ids
 * after the SentencePiece pieces, user-defined), with add_bos/add_eos from tokenizer_config.json.
 */
async function readVocab(dir: string, vocabSize: number): Promise<{ vocab: Vocab; used: string[] }> {
  const spPath = path.join(dir, 'tokenizer.model');
  let bytes: Buffer;
  try {
    bytes = await readFile(spPath);
  } catch (err) {
    throw new Error(`${spPath}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const sp = parseSentencePieceModel(bytes, spPath);
  if (sp.modelType !== 'bpe') throw new Error(`${spPath}: a ${sp.modelType} model; LLaMA's tokenizer is BPE`);
  if (sp.bosId < 0 || sp.eosId < 0) throw new Error(`${spPath}: the model has no ${sp.bosId < 0 ? 'BOS' : 'EOS'} piece`);
  const pieces: VocabPiece[] = sp.pieces.map((p) => ({ piece: p.piece, score: p.score, type: p.type }));
  const used = ['tokenizer.model'];

  const added = await readJsonIfPresent(path.join(dir, 'added_tokens.json'));
  if (added !== undefined) {
    used.push('added_tokens.json');
    if (!isObject(added)) throw new Error(`${path.join(dir, 'added_tokens.json')}: not a JSON object`);
    const entries = Object.entries(added).sort((a, b) => Number(a[1]) - Number(b[1]));
    for (const [piece, id] of entries) {
      if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${path.join(dir, 'added_tokens.json')}: "${piece}" has id ${JSON.stringify(id)}`);
      const i = id as number;
      if (i < pieces.length) {
        // Re-declared special pieces (e.g. "<unk>": 0) must agree with tokenizer.model.
        if (pieces[i]!.piece !== piece) {
          throw new Error(`${path.join(dir, 'added_tokens.json')}: "${piece}" has id ${i}, which tokenizer.model calls "${pieces[i]!.piece}"`);
        }
      } else if (i === pieces.length) {
        pieces.push({ piece, score: 0, type: 4 });
      } else {
        throw new Error(`${path.join(dir, 'added_tokens.json')}: "${piece}" has id ${i}, leaving a gap after ${pieces.length - 1}`);
      }
    }
  }
  if (pieces.length !== vocabSize) {
    throw new Error(`config.json: "llama.vocab_size" is ${vocabSize} but tokenizer.model${added ? ' + added_tokens.json' : ''} has ${pieces.length} tokens`);
  }

  let addBos = true;
  let addEos = false;
  const tc = await readJsonIfPresent(path.join(dir, 'tokenizer_config.json'));
  if (isObject(tc)) {
    used.push('tokenizer_config.json');
    if (typeof tc.add_bos_token === 'boolean') addBos = tc.add_bos_token;
    if (typeof tc.add_eos_token === 'boolean') addEos = tc.add_eos_token;
  }
  return { vocab: { pieces, bosId: sp.bosId, eosId: sp.eosId, unkId: sp.unkId, padId: sp.padId, addBos, addEos }, used };
}

async function readJsonIfPresent(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${file}: cannot read (${(err as Error).message})`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
}

// ---- tensors -----------------------------------------------------------------------------

/** Official tensor name -> expected PyTorch shape, for every tensor the converter reads. */
function expectedTensors(cfg: CheckpointConfig, channels: number): Map<string, number[]> {
  const { llama: l, vision: v } = cfg;
  const headDim = l.hiddenSize / l.numHeads;
  const kv = l.numKvHeads * headDim;
  const d = l.hiddenSize;
  const m = new Map<string, number[]>();
  m.set('llama.embed_tokens.weight', [l.vocabSize, d]);
  for (let i = 0; i < l.numLayers; i++) {
    const p = `llama.layers.${i}.`;
    m.set(p + 'input_layernorm.weight', [d]);
    m.set(p + 'self_attn.q_proj.weight', [d, d]);
    m.set(p + 'self_attn.k_proj.weight', [kv, d]);
    m.set(p + 'self_attn.v_proj.weight', [kv, d]);
    m.set(p + 'self_attn.o_proj.weight', [d, d]);
    m.set(p + 'post_attention_layernorm.weight', [d]);
    m.set(p + 'mlp.gate_proj.weight', [l.intermediateSize, d]);
    m.set(p + 'mlp.up_proj.weight', [l.intermediateSize, d]);
    m.set(p + 'mlp.down_proj.weight', [d, l.intermediateSize]);
  }
  m.set('llama.norm.weight', [d]);
  m.set('lm_head.weight', [l.vocabSize, d]);

  const w = v.width;
  m.set('vision_tower.conv1.weight', [w, channels, v.patchSize, v.patchSize]);
  m.set('vision_tower.class_embedding', [w]);
  m.set('vision_tower.positional_embedding', [(v.imageSize / v.patchSize) ** 2 + 1, w]);
  m.set('vision_tower.ln_pre.weight', [w]);
  m.set('vision_tower.ln_pre.bias', [w]);
  for (let i = 0; i < v.numLayers; i++) {
    const b = `vision_tower.transformer.resblocks.${i}.`;
    for (const n of ['ln_1', 'ln_2']) {
      m.set(`${b}${n}.weight`, [w]);
      m.set(`${b}${n}.bias`, [w]);
    }
    m.set(b + 'attn.in_proj_weight', [3 * w, w]);
    m.set(b + 'attn.in_proj_bias', [3 * w]);
    m.set(b + 'attn.out_proj.weight', [w, w]);
    m.set(b + 'attn.out_proj.bias', [w]);
    m.set(b + 'mlp.c_fc.weight', [v.mlpDim, w]);
    m.set(b + 'mlp.c_fc.bias', [v.mlpDim]);
    m.set(b + 'mlp.c_proj.weight', [w, v.mlpDim]);
    m.set(b + 'mlp.c_proj.bias', [w]);
  }
  m.set('vision_tower.ln_post.weight', [w]);
  m.set('vision_tower.ln_post.bias', [w]);
  m.set('vision_tower.proj', [w, cfg.clipEmbedDim]); // checked, not converted
  m.set('mm_projector.weight', [d, w]);
  m.set('mm_projector.bias', [d]);
  return m;
}

/** Checks presence, dtype (BF16, as the official shards store everything) and shape of every tensor used. */
function checkTensors(ckpt: SafetensorsCheckpoint, expected: Map<string, number[]>): void {
  const where = ckpt.indexPath ?? ckpt.files[0]!.path;
  for (const [name, shape] of expected) {
    const t = ckpt.tensors.get(name);
    if (!t) throw new Error(`${where}: tensor ${name} is missing`);
    if (t.dtype !== 'BF16') throw new Error(`${t.file}: tensor ${name} has dtype ${t.dtype}, expected BF16`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${t.file}: tensor ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}] (from config.json)`);
    }
  }
}

function llamaTensors(src: (name: string) => TensorSource, numLayers: number): LlamaTensors {
  return {
    embed: src('llama.embed_tokens.weight'),
    norm: src('llama.norm.weight'),
    lmHead: src('lm_head.weight'),
    layers: Array.from({ length: numLayers }, (_, i) => {
      const p = `llama.layers.${i}.`;
      return {
        attnNorm: src(p + 'input_layernorm.weight'),
        q: src(p + 'self_attn.q_proj.weight'),
        k: src(p + 'self_attn.k_proj.weight'),
        v: src(p + 'self_attn.v_proj.weight'),
        o: src(p + 'self_attn.o_proj.weight'),
        ffnNorm: src(p + 'post_attention_layernorm.weight'),
        gate: src(p + 'mlp.gate_proj.weight'),
        up: src(p + 'mlp.up_proj.weight'),
        down: src(p + 'mlp.down_proj.weight'),
      };
    }),
  };
}

// ---- progress while the writers work ------------------------------------------------------

/**
 * A GgufSink that passes everything to a writer and reports, as each tensor's
 * bytes are produced, the fraction of the file's tensor bytes done so far.
 * Quantization itself runs on native worker threads (quantizeAsync), so the
 * event loop stays free for the progress bar.
 */
class ProgressSink implements GgufSink {
  private readonly sizes = new Map<string, number>();
  private total = 0;
  private done = 0;

  constructor(
    private readonly w: GgufWriter,
    private readonly onProgress: (fraction: number, tensor: string) => void,
  ) {}

  set(key: string, type: 'u32' | 'i32' | 'f32' | 'bool' | 'string', value: number | boolean | string): unknown {
    return this.w.set(key, type, value);
  }

  setArray(key: string, elemType: 'i32' | 'f32' | 'string', values: ArrayLike<number> | ArrayLike<string>): unknown {
    return this.w.setArray(key, elemType, values);
  }

  addTensor(name: string, ne: number[], type: GgmlTypeName, data: () => Promise<Uint8Array>): unknown {
    const size = tensorBytes(type, ne);
    this.sizes.set(name, size);
    this.total += size;
    return this.w.addTensor(name, ne, type, async () => {
      this.onProgress(this.total ? this.done / this.total : 0, name);
      const bytes = await data();
      this.done += size;
      this.onProgress(this.total ? this.done / this.total : 1, name);
      return bytes;
    });
  }
}

// ---- hashing -----------------------------------------------------------------------------

/** sha256 (hex) of a file, streamed. */
export async function sha256File(file: string, onBytes?: (n: number) => void): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 4 << 20 })) {
    h.update(chunk as Buffer);
    onBytes?.((chunk as Buffer).length);
  }
  return h.digest('hex');
}

// ---- the conversion ----------------------------------------------------------------------

/**
 * Converts the official CXR-LLaVA checkpoint in `hfDir` into `outDir`/cxr-llava-v2.<type>.gguf
 * and `outDir`/mmproj-cxr-llava-v2.<type>.gguf. Everything (config keys, tokenizer, every
 * tensor's presence, dtype and shape) is validated before a byte is written; errors name
 * the file, and the tensor when there is one. On error neither GGUF is left in outDir.
 */
export async function convertCheckpoint(hfDir: string, options: ConvertOptions): Promise<ConvertResult> {
  if (typeof hfDir !== 'string' || hfDir.length === 0) throw invalidParameterError('hfDir', 'non-empty string', hfDir);
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'object', options);
  const outDir = options.outDir;
  if (typeof outDir !== 'string' || outDir.length === 0) throw invalidParameterError('outDir', 'non-empty string', outDir);
  const type = options.type ?? 'q8_0';
  if (!(CONVERT_TYPES as readonly string[]).includes(type)) throw invalidParameterError('type', `one of ${CONVERT_TYPES.join(', ')}`, type);
  const visionType = options.visionType ?? (type === 'f32' ? 'f32' : 'f16');
  if (!(VISION_TYPES as readonly string[]).includes(visionType)) {
    throw invalidParameterError('visionType', `one of ${VISION_TYPES.join(', ')}`, visionType);
  }
  const onProgress = options.onProgress;
  const t0 = Date.now();

  const configPath = path.join(hfDir, 'config.json');
  const config = await readJsonIfPresent(configPath);
  if (config === undefined) throw new Error(`${configPath}: not found; is ${hfDir} a CXR-LLaVA checkpoint folder?`);
  const cfg = parseCheckpointConfig(config, configPath);
  const { vocab, used: tokenizerFiles } = await readVocab(hfDir, cfg.llama.vocabSize);

  const ckpt = await SafetensorsCheckpoint.open(hfDir);
  const staging = path.join(outDir, `.cxr-convert-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    // Input channels come from conv1 (1 for CXR-LLaVA); mean/std must give one value per channel.
    const conv1 = ckpt.tensors.get('vision_tower.conv1.weight');
    const channels = conv1 && conv1.shape.length === 4 ? conv1.shape[1]! : 1;
    const vision: ClipHParams = { ...cfg.vision, channels };
    for (const key of ['imageMean', 'imageStd'] as const) {
      if (vision[key].length !== channels) {
        throw new Error(`${configPath}: "image_preprocess_cfg.${key === 'imageMean' ? 'mean' : 'std'}" has ${vision[key].length} values but conv1 takes ${channels} channel(s)`);
      }
    }
    const expected = expectedTensors(cfg, channels);
    checkTensors(ckpt, expected);
    const unusedTensors = [...ckpt.tensors.keys()].filter((n) => !expected.has(n) || n === 'vision_tower.proj').sort();

    // Checksums of every source file used, recorded in both GGUFs.
    const sourceNames = [
      'config.json',
      ...tokenizerFiles,
      ...(ckpt.indexPath ? [path.basename(ckpt.indexPath)] : []),
      ...ckpt.files.map((f) => path.basename(f.path)),
    ].sort();
    const sizes = await Promise.all(sourceNames.map(async (f) => (await stat(path.join(hfDir, f))).size));
    const hashTotal = sourceNames.reduce((a, f, i) => a + (options.knownSha256?.[f] ? 0 : sizes[i]!), 0);
    let hashed = 0;
    const sources: ConvertResult['sources'] = [];
    for (let i = 0; i < sourceNames.length; i++) {
      const file = sourceNames[i]!;
      const known = options.knownSha256?.[file];
      const sha256 =
        known ??
        (await sha256File(path.join(hfDir, file), (n) => {
          hashed += n;
          onProgress?.({ phase: 'hash', progress: hashTotal ? hashed / hashTotal : 1, item: file });
        }));
      sources.push({ file, sha256, size: sizes[i]! });
    }
    onProgress?.({ phase: 'hash', progress: 1 });

    const source = (name: string): TensorSource => ({ shape: ckpt.tensor(name).shape, read: () => ckpt.readFloat32(name) });
    const names = ggufFileNames(type);
    await mkdir(staging, { recursive: true });
    const version = converterVersion();
    const provenance = (w: GgufWriter, quant: string): void => {
      w.set('general.license', 'string', MODEL_LICENSE);
      if (options.sourceRepo) {
        w.set('general.source.huggingface.repository', 'string', options.sourceRepo);
        w.set('general.source.url', 'string', `https://huggingface.co/${options.sourceRepo}`);
      }
      if (options.revision) w.set('cxr.source.revision', 'string', options.revision);
      w.set('cxr.converter.version', 'string', version);
      w.set('cxr.quantization', 'string', quant);
      w.setArray('cxr.source.files', 'string', sources.map((s) => s.file));
      w.setArray('cxr.source.sha256', 'string', sources.map((s) => s.sha256));
    };

    // Text model.
    const textWriter = new GgufWriter();
    const textSink = new ProgressSink(textWriter, (progress, item) => onProgress?.({ phase: 'text', progress, item }));
    addLlamaToGguf(textSink, cfg.llama, vocab, llamaTensors(source, cfg.llama.numLayers), {
      ...recipes[type],
      quantize: quantizeAsync,
      name: 'CXR-LLaVA-v2',
    });
    provenance(textWriter, type);

    // Vision model.
    const visionWriter = new GgufWriter();
    const visionSink = new ProgressSink(visionWriter, (progress, item) => onProgress?.({ phase: 'vision', progress, item }));
    const vr = clipRecipes[visionType as ClipRecipeName];
    addClipToGguf(visionSink, vision, officialClipTensors(source, vision.numLayers), {
      typeFor: vr.typeFor,
      fileType: vr.fileType,
      quantize: quantizeAsync,
      name: 'CXR-LLaVA-v2 vision',
    });
    provenance(visionWriter, visionType);

    const stagedText = path.join(staging, names.text);
    const stagedMmproj = path.join(staging, names.mmproj);
    const textPath = path.join(outDir, names.text);
    const mmprojPath = path.join(outDir, names.mmproj);
    let writing = textPath;
    try {
      await textWriter.write(stagedText);
      writing = mmprojPath;
      await visionWriter.write(stagedMmproj);
    } catch (err) {
      // The staging folder goes below, so the space it took is free again.
      const need = humanBytes(textWriter.fileBytes + visionWriter.fileBytes);
      throw diskFullError(writing, err, `the two GGUF files need ${need} free in ${outDir}; free some space there, then run the command again (nothing was left behind)`);
    }

    await mkdir(outDir, { recursive: true });
    await rename(stagedText, textPath);
    try {
      await rename(stagedMmproj, mmprojPath);
    } catch (err) {
      await rm(textPath, { force: true });
      throw err;
    }
    return {
      textPath,
      mmprojPath,
      type,
      visionType,
      textBytes: (await stat(textPath)).size,
      mmprojBytes: (await stat(mmprojPath)).size,
      sources,
      unusedTensors,
      seconds: (Date.now() - t0) / 1000,
    };
  } finally {
    await ckpt.close().catch(() => {});
    await rm(staging, { recursive: true, force: true }).catch(() => {});
  }
}

/** CLI-facing wrapper: validates string options as commander passes them, then converts. */
export async function convertCommand(
  input: string,
  opts: { outDir?: string; type?: string; visionType?: string },
  onProgress?: (p: ConvertProgress) => void,
): Promise<ConvertResult> {
  const type = (opts.type ?? 'q8_0') as ConvertType;
  if (!(CONVERT_TYPES as readonly string[]).includes(type)) throw invalidParameterError('type', `one of ${CONVERT_TYPES.join(', ')}`, opts.type);
  const visionType = opts.visionType as VisionType | undefined;
  if (visionType !== undefined && !(VISION_TYPES as readonly string[]).includes(visionType)) {
    throw invalidParameterError('visionType', `one of ${VISION_TYPES.join(', ')}`, opts.visionType);
  }
  return convertCheckpoint(input, { outDir: opts.outDir ?? '.', type, ...(visionType ? { visionType } : {}), ...(onProgress ? { onProgress } : {}) });
}
