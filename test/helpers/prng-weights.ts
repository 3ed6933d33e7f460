// Deterministic weights for the tiny LLaMA test models, bit-identical to
// tools/reference/tiny_llama.py without sharing any file with it.
//
// Weight spec (the Python file carries the same text):
//   * Tensors are named and shaped as in Hugging Face's LlamaForCausalLM
//     (e.g. "model.layers.0.self_attn.q_proj.weight", shape [out, in]), with
//     q_proj/k_proj rows in HF's rotate-half RoPE order.
//   * seed(name) = FNV-1a 32-bit over the UTF-8 bytes of the name
//     (h = 0x811c9dc5; per byte: h ^= b; h = h * 0x01000193 mod 2^32); 0 -> 1.
//   * Stream: xorshift32 on x = seed, one step per element, in row-major order of
//     the PyTorch shape; each element uses the state *after* its step:
//       x ^= x << 13; x ^= x >>> 17; x ^= x << 5   (all mod 2^32)
//   * u = (x >>> 8) / 2^24 * 2 - 1, in [-1, 1) and exact in float32.
//   * kind 'embed'  (embed_tokens):          value = u
//     kind 'linear' (every 2-D projection):  value = u * 2^-k, with
//         k = (smallest m such that 4^m >= fan_in) - 1, never below 0,
//         fan_in = shape[1]; so |w| <= 2 / sqrt(fan_in), std ~ 1.15 / sqrt(fan_in).
//     kind 'norm'   (RMSNorm weights):       value = fround(1 + u / 8)
//         (the only rounding step: 1 + u/8 needs 26 bits; round to nearest even).

import type { LlamaHParams, LlamaTensors, TensorSource } from '../../lib/convert/llama-gguf.js';

export type WeightKind = 'embed' | 'linear' | 'norm';

/** Dimensions of a tiny LLaMA (the text model's hparams); vocabSize comes from the tokenizer. */
export type TinyLlamaDims = LlamaHParams;

/** The model that tools/reference/tiny_llama.py checks (vocabulary of the fixture tokenizer). */
export const TINY_LLAMA_DIMS: Omit<TinyLlamaDims, 'vocabSize'> = {
  hiddenSize: 64,
  intermediateSize: 160,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  contextLength: 256,
};

/** FNV-1a 32-bit hash of the UTF-8 bytes of name; never 0 (xorshift32 would stay at 0). */
export function weightSeed(name: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(name)) {
    h = Math.imul(h ^ b, 0x01000193) >>> 0;
  }
  return h === 0 ? 1 : h;
}

/** The power-of-two shift k for a linear weight with this fan-in. */
export function linearShift(fanIn: number): number {
  let m = 0;
  while (4 ** m < fanIn) m++;
  return Math.max(m - 1, 0);
}

/** One tensor per the spec above, row-major in PyTorch shape order. */
export function makeWeight(name: string, shape: number[], kind: WeightKind): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  if (kind === 'linear' && shape.length !== 2) {
    throw new Error(`linear weight ${name} must be 2-D, got shape [${shape.join(', ')}]`);
  }
  const scale = kind === 'linear' ? 2 ** -linearShift(shape[1]!) : 1;
  const out = new Float32Array(n);
  let x = weightSeed(name);
  for (let i = 0; i < n; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    const u = ((x >>> 8) / 2 ** 24) * 2 - 1;
    // Doubles hold every intermediate exactly; the Float32Array store rounds once.
    out[i] = kind === 'norm' ? 1 + u / 8 : u * scale;
  }
  return out;
}

/** One tensor of the model: its HF name, PyTorch shape and spec kind. */
export interface WeightSpec {
  name: string;
  shape: number[];
  kind: WeightKind;
}

/** Every tensor of a tiny LLaMA with these dims, in HF naming and the reference's order. */
export function tinyLlamaSpecs(d: TinyLlamaDims): WeightSpec[] {
  const dim = d.hiddenSize;
  const ffn = d.intermediateSize;
  const kv = d.numKvHeads * (dim / d.numHeads);
  const specs: WeightSpec[] = [{ name: 'model.embed_tokens.weight', shape: [d.vocabSize, dim], kind: 'embed' }];
  for (let i = 0; i < d.numLayers; i++) {
    const p = `model.layers.${i}.`;
    specs.push(
      { name: p + 'input_layernorm.weight', shape: [dim], kind: 'norm' },
      { name: p + 'self_attn.q_proj.weight', shape: [dim, dim], kind: 'linear' },
      { name: p + 'self_attn.k_proj.weight', shape: [kv, dim], kind: 'linear' },
      { name: p + 'self_attn.v_proj.weight', shape: [kv, dim], kind: 'linear' },
      { name: p + 'self_attn.o_proj.weight', shape: [dim, dim], kind: 'linear' },
      { name: p + 'post_attention_layernorm.weight', shape: [dim], kind: 'norm' },
      { name: p + 'mlp.gate_proj.weight', shape: [ffn, dim], kind: 'linear' },
      { name: p + 'mlp.up_proj.weight', shape: [ffn, dim], kind: 'linear' },
      { name: p + 'mlp.down_proj.weight', shape: [dim, ffn], kind: 'linear' },
    );
  }
  specs.push(
    { name: 'model.norm.weight', shape: [dim], kind: 'norm' },
    { name: 'lm_head.weight', shape: [d.vocabSize, dim], kind: 'linear' },
  );
  return specs;
}

/** A tensor built on demand, so a large variant never holds every weight at once. */
export interface LazyWeight {
  shape: number[];
  read(): Float32Array;
}

/** All tensors of a tiny LLaMA by HF name, each generated when read. */
export function tinyLlamaWeights(d: TinyLlamaDims): Map<string, LazyWeight> {
  if (d.hiddenSize % d.numHeads !== 0 || d.numHeads % d.numKvHeads !== 0) {
    throw new Error(
      `tiny LLaMA dims need hiddenSize % numHeads == 0 and numHeads % numKvHeads == 0, ` +
        `got ${d.hiddenSize}, ${d.numHeads}, ${d.numKvHeads}`,
    );
  }
  return new Map(
    tinyLlamaSpecs(d).map((s) => [s.name, { shape: s.shape, read: () => makeWeight(s.name, s.shape, s.kind) }]),
  );
}

/** The deterministic weights of a tiny LLaMA, grouped as addLlamaToGguf wants them. */
export function tinyLlamaTensors(dims: TinyLlamaDims): LlamaTensors {
  const all = tinyLlamaWeights(dims);
  const get = (name: string): TensorSource => {
    const t = all.get(name);
    if (!t) throw new Error(`tiny LLaMA has no tensor ${name}`);
    return t;
  };
  return {
    embed: get('model.embed_tokens.weight'),
    norm: get('model.norm.weight'),
    lmHead: get('lm_head.weight'),
    layers: Array.from({ length: dims.numLayers }, (_, i) => {
      const p = `model.layers.${i}.`;
      return {
        attnNorm: get(p + 'input_layernorm.weight'),
        q: get(p + 'self_attn.q_proj.weight'),
        k: get(p + 'self_attn.k_proj.weight'),
        v: get(p + 'self_attn.v_proj.weight'),
        o: get(p + 'self_attn.o_proj.weight'),
        ffnNorm: get(p + 'post_attention_layernorm.weight'),
        gate: get(p + 'mlp.gate_proj.weight'),
        up: get(p + 'mlp.up_proj.weight'),
        down: get(p + 'mlp.down_proj.weight'),
      };
    }),
  };
}
