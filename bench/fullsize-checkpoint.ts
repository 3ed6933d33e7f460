/**
 * A random-weight CXR-LLaVA checkpoint of the real size, in the layout of the official
 * Hugging Face repository (ECOFRI/CXR-LLAVA-v2): config.json, a SentencePiece
 * tokenizer.model of 32000 pieces, the tokenizer JSON files, and bf16 safetensors split
 * over three shards plus model.safetensors.index.json. It exists to time the converter,
 * whose cost depends on shapes, not values.
 *
 * Streaming: each shard's header is computed from the shapes alone, then every tensor is
 * generated and written a few MB at a time, so ~14 GB are written with a constant few
 * tens of MB of memory.
 */
import { closeSync, existsSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Shapes of the checkpoint: LLaMA-2-7B and the ViT-L/16 at 512 px of CXR-LLaVA-v2. */
export interface FullsizeShape {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  contextLength: number;
  imageSize: number;
  patchSize: number;
  visionWidth: number;
  visionLayers: number;
  /** Width of vision_tower.proj, the CLIP embedding the converter does not use. */
  clipEmbedDim: number;
}

export const FULL_SHAPE: FullsizeShape = {
  vocabSize: 32000,
  hiddenSize: 4096,
  intermediateSize: 11008,
  numLayers: 32,
  numHeads: 32,
  contextLength: 4096,
  imageSize: 512,
  patchSize: 16,
  visionWidth: 1024,
  visionLayers: 24,
  clipEmbedDim: 128,
};

/** Bump when the generated files change, so a reused folder from an older version is rebuilt. */
const GENERATOR = 'cxr-bench-fullsize-checkpoint-v1';
/** Written last; its presence (with matching contents) marks a complete checkpoint. */
const MARKER = '.cxr-bench-checkpoint.json';

export const SHARDS = ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'];
const INDEX = 'model.safetensors.index.json';
const SIDE_FILES = [
  'config.json', 'generation_config.json', 'special_tokens_map.json', 'added_tokens.json', 'tokenizer_config.json',
  'tokenizer.model', 'tokenizer.json',
];

/** Every file this module may write into a folder, so cleanup removes exactly those. */
export const CHECKPOINT_FILES = [...SIDE_FILES, INDEX, ...SHARDS, MARKER];

/** How a tensor's values are drawn. */
type Kind = 'matrix' | 'ones' | 'bias' | 'embedding';

interface Spec {
  name: string;
  shape: number[];
  kind: Kind;
}

const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** Official names and PyTorch shapes of every tensor, in state-dict order. */
export function tensorSpecs(s: FullsizeShape): Spec[] {
  const d = s.hiddenSize;
  const f = s.intermediateSize;
  const specs: Spec[] = [{ name: 'llama.embed_tokens.weight', shape: [s.vocabSize, d], kind: 'matrix' }];
  for (let i = 0; i < s.numLayers; i++) {
    const p = `llama.layers.${i}.`;
    specs.push(
      { name: p + 'self_attn.q_proj.weight', shape: [d, d], kind: 'matrix' },
      { name: p + 'self_attn.k_proj.weight', shape: [d, d], kind: 'matrix' },
      { name: p + 'self_attn.v_proj.weight', shape: [d, d], kind: 'matrix' },
      { name: p + 'self_attn.o_proj.weight', shape: [d, d], kind: 'matrix' },
      { name: p + 'mlp.gate_proj.weight', shape: [f, d], kind: 'matrix' },
      { name: p + 'mlp.up_proj.weight', shape: [f, d], kind: 'matrix' },
      { name: p + 'mlp.down_proj.weight', shape: [d, f], kind: 'matrix' },
      { name: p + 'input_layernorm.weight', shape: [d], kind: 'ones' },
      { name: p + 'post_attention_layernorm.weight', shape: [d], kind: 'ones' },
    );
  }
  specs.push({ name: 'llama.norm.weight', shape: [d], kind: 'ones' });

  const w = s.visionWidth;
  const p = s.patchSize;
  specs.push(
    { name: 'vision_tower.class_embedding', shape: [w], kind: 'embedding' },
    { name: 'vision_tower.positional_embedding', shape: [(s.imageSize / p) ** 2 + 1, w], kind: 'embedding' },
    { name: 'vision_tower.proj', shape: [w, s.clipEmbedDim], kind: 'matrix' },
    { name: 'vision_tower.conv1.weight', shape: [w, 1, p, p], kind: 'matrix' },
    { name: 'vision_tower.ln_pre.weight', shape: [w], kind: 'ones' },
    { name: 'vision_tower.ln_pre.bias', shape: [w], kind: 'bias' },
  );
  for (let i = 0; i < s.visionLayers; i++) {
    const b = `vision_tower.transformer.resblocks.${i}.`;
    specs.push(
      { name: b + 'ln_1.weight', shape: [w], kind: 'ones' },
      { name: b + 'ln_1.bias', shape: [w], kind: 'bias' },
      { name: b + 'attn.in_proj_weight', shape: [3 * w, w], kind: 'matrix' },
      { name: b + 'attn.in_proj_bias', shape: [3 * w], kind: 'bias' },
      { name: b + 'attn.out_proj.weight', shape: [w, w], kind: 'matrix' },
      { name: b + 'attn.out_proj.bias', shape: [w], kind: 'bias' },
      { name: b + 'ln_2.weight', shape: [w], kind: 'ones' },
      { name: b + 'ln_2.bias', shape: [w], kind: 'bias' },
      { name: b + 'mlp.c_fc.weight', shape: [4 * w, w], kind: 'matrix' },
      { name: b + 'mlp.c_fc.bias', shape: [4 * w], kind: 'bias' },
      { name: b + 'mlp.c_proj.weight', shape: [w, 4 * w], kind: 'matrix' },
      { name: b + 'mlp.c_proj.bias', shape: [w], kind: 'bias' },
    );
  }
  specs.push(
    { name: 'vision_tower.ln_post.weight', shape: [w], kind: 'ones' },
    { name: 'vision_tower.ln_post.bias', shape: [w], kind: 'bias' },
    { name: 'mm_projector.weight', shape: [d, w], kind: 'matrix' },
    { name: 'mm_projector.bias', shape: [d], kind: 'bias' },
    { name: 'lm_head.weight', shape: [s.vocabSize, d], kind: 'matrix' },
  );
  return specs;
}

/** The official config.json keys for these shapes (LlamaConfig defaults left out, as the real file does). */
export function fullsizeConfig(s: FullsizeShape): Record<string, unknown> {
  return {
    _name_or_path: 'ECOFRI/CXR-LLAVA-v2',
    architectures: ['CXRLLAVAModel'],
    auto_map: { AutoConfig: 'CXR_LLAVA_HF.CXRLLAVAConfig', AutoModel: 'CXR_LLAVA_HF.CXRLLAVAModel' },
    clip_embed_dim: s.clipEmbedDim,
    clip_vision_cfg: { image_size: s.imageSize, layers: s.visionLayers, patch_size: s.patchSize, width: s.visionWidth },
    image_preprocess_cfg: { mean: 0.5, std: 0.5 },
    llama: {
      architectures: ['LlamaForCausalLM'],
      hidden_size: s.hiddenSize,
      intermediate_size: s.intermediateSize,
      max_position_embeddings: s.contextLength,
      model_type: 'llama',
      num_attention_heads: s.numHeads,
      num_hidden_layers: s.numLayers,
      num_key_value_heads: s.numHeads,
      torch_dtype: 'bfloat16',
      vocab_size: s.vocabSize,
    },
    mm_projector_dim: s.visionWidth,
    model_type: 'CXR-LLAVA',
    torch_dtype: 'bfloat16',
    transformers_version: '4.34.0',
  };
}

// ---- tokenizer.model ---------------------------------------------------------------------

// Protobuf wire format (sentencepiece_model.proto): a tag is varint(field << 3 | wire type);
// wire 0 = varint, 2 = length-delimited, 5 = 32-bit little-endian.

function varint(n: number): number[] {
  // Negative int32 values are sign-extended to 64 bits, i.e. always 10 bytes.
  let lo = n >>> 0;
  let hi = n < 0 ? 0xffffffff : 0;
  const out: number[] = [];
  for (;;) {
    const b = lo & 0x7f;
    lo = (lo >>> 7) | ((hi & 0x7f) << 25);
    hi >>>= 7;
    if (lo === 0 && hi === 0) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const tag = (field: number, wire: number): number[] => varint((field << 3) | wire);
const varintField = (field: number, v: number): number[] => [...tag(field, 0), ...varint(v)];
function bytesField(field: number, payload: Uint8Array | number[]): number[] {
  return [...tag(field, 2), ...varint(payload.length), ...payload];
}
function floatField(field: number, v: number): number[] {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, v, true);
  return [...tag(field, 5), ...b];
}

/**
 * A serialized SentencePiece BPE ModelProto of `size` pieces, like LLaMA's: <unk>, <s>,
 * </s>, the 256 byte-fallback pieces <0x00>..<0xFF>, then unique filler words. Enough
 * for the converter and the engine; the benchmark feeds token ids, never text.
 */
export function syntheticSentencePieceModel(size: number): Buffer {
  const utf8 = new TextEncoder();
  const parts: Buffer[] = [];
  const piece = (text: string, score: number, type: number): void => {
    const body = [...bytesField(1, utf8.encode(text)), ...floatField(2, score), ...varintField(3, type)];
    parts.push(Buffer.from(bytesField(1, body)));
  };
  // SentencePiece types: 1 normal, 2 unknown, 3 control, 6 byte.
  piece('<unk>', 0, 2);
  piece('<s>', 0, 3);
  piece('</s>', 0, 3);
  for (let b = 0; b < 256; b++) piece(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 0, 6);
  for (let i = 0; parts.length < size; i++) piece(`▁w${i.toString(36)}`, -i, 1);
  // TrainerSpec: model_type BPE (2), byte_fallback, unk/bos/eos ids, no pad (-1).
  const trainer = [
    ...varintField(3, 2), ...varintField(35, 1), ...varintField(40, 0), ...varintField(41, 1), ...varintField(42, 2), ...varintField(43, -1),
  ];
  parts.push(Buffer.from(bytesField(2, trainer)));
  // NormalizerSpec: LLaMA's "identity" rule, a dummy prefix, spaces kept as they are.
  const normalizer = [...bytesField(1, utf8.encode('identity')), ...varintField(3, 1), ...varintField(4, 0)];
  parts.push(Buffer.from(bytesField(3, normalizer)));
  return Buffer.concat(parts);
}

// ---- tensors -----------------------------------------------------------------------------

/** Stable per-tensor seed (FNV-1a of the name), never 0. */
function seedOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h || 1;
}

const CHUNK_VALUES = 4 << 20; // values generated per write (8 MB of bf16)

/**
 * Streams one tensor's bf16 bytes to `fd`. Matrices are uniform with standard deviation
 * 1/sqrt(fan-in), so activations keep their scale through the layers; norm weights are
 * ones; biases and embeddings are small uniform values. bf16 is the float32's top half
 * (truncation: the values are random anyway).
 */
function writeTensor(fd: number, spec: Spec, f32: Float32Array, out: Uint16Array): void {
  const n = numel(spec.shape);
  const hi = new Uint16Array(f32.buffer); // little-endian: element 2i + 1 is float i's top half
  if (spec.kind === 'ones') {
    const chunk = out.subarray(0, n).fill(0x3f80); // 1.0 in bf16; 1-D tensors are small
    writeAll(fd, chunk);
    return;
  }
  const amp = spec.kind === 'matrix' ? Math.sqrt(3 / (n / spec.shape[0]!)) : spec.kind === 'bias' ? 0.01 : 0.02;
  const scale = (2 * amp) / 2 ** 32;
  let x = seedOf(spec.name);
  for (let done = 0; done < n; ) {
    const m = Math.min(CHUNK_VALUES, n - done);
    for (let i = 0; i < m; i++) {
      // xorshift32
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      f32[i] = (x >>> 0) * scale - amp;
    }
    for (let i = 0; i < m; i++) out[i] = hi[2 * i + 1]!;
    writeAll(fd, out.subarray(0, m));
    done += m;
  }
}

function writeAll(fd: number, data: Uint16Array): void {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
}

/** The safetensors header of one shard: u64 length, then JSON padded with spaces to 8 bytes. */
function shardHeader(specs: Spec[]): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const t of specs) {
    const bytes = numel(t.shape) * 2;
    header[t.name] = { dtype: 'BF16', shape: t.shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json]);
}

/** Tensors split over three shards of about equal size, in order, as save_pretrained splits them. */
function shardPlan(specs: Spec[]): Spec[][] {
  const total = specs.reduce((a, t) => a + numel(t.shape) * 2, 0);
  const groups: Spec[][] = [[], [], []];
  let acc = 0;
  for (const t of specs) {
    groups[Math.min(2, Math.floor((acc / total) * 3))]!.push(t);
    acc += numel(t.shape) * 2;
  }
  return groups;
}

/** What the marker records: enough to tell a complete checkpoint of these shapes. */
function markerContents(s: FullsizeShape): { generator: string; shape: FullsizeShape; shardBytes: number[] } {
  const shardBytes = shardPlan(tensorSpecs(s)).map((g) => shardHeader(g).length + g.reduce((a, t) => a + numel(t.shape) * 2, 0));
  return { generator: GENERATOR, shape: s, shardBytes };
}

/** Whether `dir` holds a complete checkpoint of shape `s` written by this generator version. */
export function isCompleteCheckpoint(dir: string, s: FullsizeShape): boolean {
  const marker = path.join(dir, MARKER);
  if (!existsSync(marker)) return false;
  try {
    const want = markerContents(s);
    if (readFileSync(marker, 'utf8') !== JSON.stringify(want)) return false;
    return SHARDS.every((f, i) => statSync(path.join(dir, f)).size === want.shardBytes[i]);
  } catch {
    return false;
  }
}

/** Total bytes of the tensor data (all bf16). */
export function checkpointTensorBytes(s: FullsizeShape): number {
  return tensorSpecs(s).reduce((a, t) => a + numel(t.shape) * 2, 0);
}

/**
 * Writes the checkpoint of shape `s` into `dir` (created if needed), reporting progress
 * as a fraction of the tensor bytes. The marker is written last, after everything else.
 */
export async function writeFullsizeCheckpoint(dir: string, s: FullsizeShape, onProgress?: (fraction: number, tensor: string) => void): Promise<void> {
  await mkdir(dir, { recursive: true });
  await rm(path.join(dir, MARKER), { force: true });
  const specs = tensorSpecs(s);
  const groups = shardPlan(specs);
  const total = checkpointTensorBytes(s);
  const f32 = new Float32Array(CHUNK_VALUES);
  const out = new Uint16Array(CHUNK_VALUES);
  let written = 0;
  const weightMap: Record<string, string> = {};
  for (let i = 0; i < 3; i++) {
    const fd = openSync(path.join(dir, SHARDS[i]!), 'w');
    try {
      const header = shardHeader(groups[i]!);
      for (let off = 0; off < header.length; ) off += writeSync(fd, header, off, header.length - off);
      for (const t of groups[i]!) {
        writeTensor(fd, t, f32, out);
        weightMap[t.name] = SHARDS[i]!;
        written += numel(t.shape) * 2;
        onProgress?.(written / total, t.name);
      }
    } finally {
      closeSync(fd);
    }
  }
  await writeFile(path.join(dir, INDEX), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(fullsizeConfig(s), null, 2));
  await writeFile(path.join(dir, 'generation_config.json'), JSON.stringify({ _from_model_config: true, bos_token_id: 1, eos_token_id: 2 }));
  await writeFile(path.join(dir, 'special_tokens_map.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' }));
  await writeFile(path.join(dir, 'added_tokens.json'), JSON.stringify({}));
  await writeFile(
    path.join(dir, 'tokenizer_config.json'),
    JSON.stringify({ add_bos_token: true, add_eos_token: false, model_max_length: s.contextLength, tokenizer_class: 'LlamaTokenizer' }),
  );
  await writeFile(path.join(dir, 'tokenizer.model'), syntheticSentencePieceModel(s.vocabSize));
  await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify({ version: '1.0', model: { type: 'BPE' } }));
  await writeFile(path.join(dir, MARKER), JSON.stringify(markerContents(s)));
}
