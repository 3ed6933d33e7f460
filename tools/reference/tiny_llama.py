"""Independent PyTorch reference for the tiny LLaMA test model.

Writes test/fixtures/tiny-llama/golden.json: prompt ids, full logits at every
prompt position, a 32-token greedy continuation and weight checksums. Our
engine is checked against this file, so nothing here may come from the engine.

Run: /usr/bin/python3 tools/reference/tiny_llama.py   (torch 1.13, sentencepiece)

Weight spec (mirrored bit for bit by test/helpers/prng-weights.ts):
  * Tensors are named and shaped as in Hugging Face's LlamaForCausalLM
    (e.g. "model.layers.0.self_attn.q_proj.weight", shape [out, in]), with
    q_proj/k_proj rows in HF's rotate-half RoPE order.
  * seed(name) = FNV-1a 32-bit over the UTF-8 bytes of the name
    (h = 0x811c9dc5; per byte: h ^= b; h = h * 0x01000193 mod 2^32); 0 -> 1.
  * Stream: xorshift32 on x = seed, one step per element, in row-major order of
    the PyTorch shape; each element uses the state *after* its step:
      x ^= x << 13; x ^= x >> 17; x ^= x << 5   (all mod 2^32, logical shifts)
  * u = (x >> 8) / 2^24 * 2 - 1, in [-1, 1) and exact in float32.
  * kind "embed"  (embed_tokens):          value = u
    kind "linear" (every 2-D projection):  value = u * 2^-k, with
        k = (smallest m such that 4^m >= fan_in) - 1, never below 0,
        fan_in = shape[1]; so |w| <= 2 / sqrt(fan_in), std ~ 1.15 / sqrt(fan_in).
    kind "norm"   (RMSNorm weights):       value = float32(1 + u / 8)
        (the only rounding step: 1 + u/8 needs 26 bits; round to nearest even).
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import sentencepiece as spm
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
DEFAULT_TOKENIZER = os.path.join(ROOT, 'test', 'fixtures', 'tokenizer', 'tiny-sp.model')
DEFAULT_OUT = os.path.join(ROOT, 'test', 'fixtures', 'tiny-llama', 'golden.json')
DEFAULT_OUT_BF16 = os.path.join(ROOT, 'test', 'fixtures', 'tiny-llama', 'golden-bf16.json')

PROMPT = 'Findings: mild cardiomegaly. No pleural effusion or pneumothorax. Impression: stable chest radiograph.'
GREEDY_STEPS = 32

# The model the tests build. vocab_size comes from the tokenizer.
DIMS = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=160,
            rms_norm_eps=1e-6, rope_theta=10000.0, context_length=256)

MASK32 = 0xFFFFFFFF


# ---- deterministic weights -------------------------------------------------------------

def fnv1a32(name):
    h = 0x811C9DC5
    for b in name.encode('utf-8'):
        h ^= b
        h = (h * 0x01000193) & MASK32
    return h or 1


def linear_shift(fan_in):
    m = 0
    while 4 ** m < fan_in:
        m += 1
    return max(m - 1, 0)


def make_weight(name, shape, kind):
    """float32 numpy array per the spec above."""
    n = int(np.prod(shape))
    x = fnv1a32(name)
    raw = np.empty(n, dtype=np.uint32)
    for i in range(n):
        x ^= (x << 13) & MASK32
        x ^= x >> 17
        x ^= (x << 5) & MASK32
        raw[i] = x
    # Everything below is exact in float64; the single cast to float32 rounds only
    # the norm weights, as the spec says.
    u = (raw >> 8).astype(np.float64) / 2.0 ** 24 * 2.0 - 1.0
    if kind == 'embed':
        v = u
    elif kind == 'linear':
        v = u * 2.0 ** -linear_shift(shape[1])
    elif kind == 'norm':
        v = 1.0 + u / 8.0
    else:
        raise ValueError('unknown weight kind ' + kind)
    return v.astype(np.float32).reshape(shape)


def tensor_specs(d):
    """(hf_name, pytorch_shape, kind) for every tensor of the model, in file order."""
    dim, ffn, v = d['hidden_size'], d['intermediate_size'], d['vocab_size']
    hd = dim // d['num_heads']
    kv = d['num_kv_heads'] * hd
    specs = [('model.embed_tokens.weight', [v, dim], 'embed')]
    for i in range(d['num_layers']):
        p = 'model.layers.%d.' % i
        specs += [
            (p + 'input_layernorm.weight', [dim], 'norm'),
            (p + 'self_attn.q_proj.weight', [dim, dim], 'linear'),
            (p + 'self_attn.k_proj.weight', [kv, dim], 'linear'),
            (p + 'self_attn.v_proj.weight', [kv, dim], 'linear'),
            (p + 'self_attn.o_proj.weight', [dim, dim], 'linear'),
            (p + 'post_attention_layernorm.weight', [dim], 'norm'),
            (p + 'mlp.gate_proj.weight', [ffn, dim], 'linear'),
            (p + 'mlp.up_proj.weight', [ffn, dim], 'linear'),
            (p + 'mlp.down_proj.weight', [dim, ffn], 'linear'),
        ]
    specs += [('model.norm.weight', [dim], 'norm'), ('lm_head.weight', [v, dim], 'linear')]
    return specs


# ---- forward pass (float64, HF LlamaForCausalLM semantics) -----------------------------

def rms_norm(x, w, eps):
    # LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * weight
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(n_pos, head_dim, theta):
    # inv_freq[i] = 1 / theta^(2i/d); the angle table is duplicated across both halves
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    freqs = torch.outer(torch.arange(n_pos, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def forward(W, d, ids):
    """Logits [len(ids), vocab] in float64 for a full causal pass over ids."""
    T = len(ids)
    dim, nh, nkv = d['hidden_size'], d['num_heads'], d['num_kv_heads']
    hd = dim // nh
    eps = d['rms_norm_eps']
    cos, sin = rope_cos_sin(T, hd, d['rope_theta'])
    causal = torch.full((T, T), float('-inf'), dtype=torch.float64).triu(1)

    # model.embed_tokens
    h = W['model.embed_tokens.weight'][torch.tensor(ids)]
    for i in range(d['num_layers']):
        p = 'model.layers.%d.' % i
        # input_layernorm
        x = rms_norm(h, W[p + 'input_layernorm.weight'], eps)
        # q_proj / k_proj / v_proj, split into heads: [heads, T, hd]
        q = (x @ W[p + 'self_attn.q_proj.weight'].T).view(T, nh, hd).transpose(0, 1)
        k = (x @ W[p + 'self_attn.k_proj.weight'].T).view(T, nkv, hd).transpose(0, 1)
        v = (x @ W[p + 'self_attn.v_proj.weight'].T).view(T, nkv, hd).transpose(0, 1)
        # apply_rotary_pos_emb (rotate_half convention)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # repeat_kv: query head j reads kv head j // (nh / nkv)
        k = k.repeat_interleave(nh // nkv, dim=0)
        v = v.repeat_interleave(nh // nkv, dim=0)
        # softmax(q k^T / sqrt(hd) + causal mask) v
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + causal, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(T, dim)
        # o_proj + residual
        h = h + o @ W[p + 'self_attn.o_proj.weight'].T
        # post_attention_layernorm, then down(silu(gate(x)) * up(x)) + residual
        x = rms_norm(h, W[p + 'post_attention_layernorm.weight'], eps)
        g = torch.nn.functional.silu(x @ W[p + 'mlp.gate_proj.weight'].T)
        u = x @ W[p + 'mlp.up_proj.weight'].T
        h = h + (g * u) @ W[p + 'mlp.down_proj.weight'].T
    # model.norm, lm_head (untied from embed_tokens)
    h = rms_norm(h, W['model.norm.weight'], eps)
    return h @ W['lm_head.weight'].T


# ---- golden file -----------------------------------------------------------------------

def f32(v):
    """A float32 value as the shortest decimal that round-trips through float32."""
    v = float(np.float32(v))
    for digits in range(6, 10):
        s = '%.*g' % (digits, v)
        if np.float32(float(s)) == np.float32(v):
            return float(s)
    return v


def fnv1a32_bytes(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & MASK32
    return h


def checksum(name, w):
    flat = w.reshape(-1)
    return {
        'name': name,
        'shape': list(w.shape),
        # float64 sum of the float32 values. Exact whatever the summation order: every
        # value is a multiple of 2^-27 below 2 in magnitude, so no partial sum needs 53 bits.
        'sum': float(flat.astype(np.float64).sum()),
        # FNV-1a 32 over the little-endian float32 bytes: pins every bit of every element
        'fnv1a32': fnv1a32_bytes(flat.astype('<f4').tobytes()),
        'first': [f32(x) for x in flat[:4]],
        'last': [f32(x) for x in flat[-4:]],
        # the raw bits make the check exact without any decimal conversion
        'first_bits': [int(b) for b in flat[:4].view(np.uint32)],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--tokenizer', default=DEFAULT_TOKENIZER)
    ap.add_argument('--out', default=None)
    ap.add_argument('--bf16', action='store_true',
                    help='round every weight to bfloat16 (nearest even) first, as the official '
                         'checkpoint stores them; writes golden-bf16.json by default')
    args = ap.parse_args()
    if args.out is None:
        args.out = DEFAULT_OUT_BF16 if args.bf16 else DEFAULT_OUT

    sp = spm.SentencePieceProcessor(model_file=args.tokenizer)
    d = dict(DIMS, vocab_size=sp.get_piece_size())
    if d['hidden_size'] % d['num_heads'] or d['num_heads'] % d['num_kv_heads']:
        sys.exit('bad dims')

    weights32 = {name: make_weight(name, shape, kind) for name, shape, kind in tensor_specs(d)}
    if args.bf16:
        # torch's float32 -> bfloat16 cast rounds to nearest, ties to even.
        weights32 = {name: torch.from_numpy(w).to(torch.bfloat16).to(torch.float32).numpy()
                     for name, w in weights32.items()}
    W = {name: torch.from_numpy(w.astype(np.float64)) for name, w in weights32.items()}

    bos, eos = sp.bos_id(), sp.eos_id()
    prompt_ids = [bos] + sp.encode(PROMPT)

    with torch.no_grad():
        logits = forward(W, d, prompt_ids)
        # Greedy: argmax, feed back, never stop at EOS. A full re-run per step keeps
        # the reference free of any KV-cache logic.
        ids = list(prompt_ids)
        margins = []
        for _ in range(GREEDY_STEPS):
            last = forward(W, d, ids)[-1]
            top2 = torch.topk(last, 2).values
            margins.append(float(top2[0] - top2[1]))
            ids.append(int(torch.argmax(last)))
    greedy = ids[len(prompt_ids):]
    eos_at = greedy.index(eos) if eos in greedy else -1
    stopped = greedy if eos_at < 0 else greedy[:eos_at]

    max_abs = float(logits.abs().max())
    golden = {
        'description': 'tiny LLaMA golden from tools/reference/tiny_llama.py (float64 torch reference)'
                       + (', weights rounded to bfloat16' if args.bf16 else ''),
        'weight_spec': 'fnv1a32(name) seed, xorshift32 stream, u=(x>>>8)/2^24*2-1; '
                       'embed=u, linear=u*2^-k (k=min m:4^m>=fan_in, minus 1), norm=f32(1+u/8)',
        'dims': d,
        'tokenizer': os.path.relpath(args.tokenizer, ROOT),
        'bos_id': bos,
        'eos_id': eos,
        'prompt': PROMPT,
        'prompt_ids': prompt_ids,
        'logits_max_abs': max_abs,
        'logits': [[f32(x) for x in row] for row in logits.numpy()],
        'greedy_steps': GREEDY_STEPS,
        'greedy_ids': greedy,
        'greedy_min_margin': min(margins),
        'greedy_eos_index': eos_at,
        'greedy_ids_stop_at_eos': stopped,
        'greedy_text': sp.decode(greedy),
        'checksums': [checksum(name, w) for name, w in weights32.items()],
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(golden, f, separators=(',', ':'))
        f.write('\n')
    print('wrote %s: %d prompt tokens, vocab %d, max|logit| %.4g, min greedy margin %.4g, eos at %d, %d bytes'
          % (args.out, len(prompt_ids), d['vocab_size'], max_abs, min(margins), eos_at, os.path.getsize(args.out)))


if __name__ == '__main__':
    main()
