"""Independent PyTorch reference for the tiny CXR-LLaVA test model (vision side).

Writes test/fixtures/tiny-cxr-llava/golden.json: the test image, the projected
image features [16, 64], weight checksums, and a 32-token greedy multimodal
generation with the official prompt through the tiny LLaMA of tiny_llama.py.
Our engine is checked against this file, so nothing here may come from the engine.

Run: /usr/bin/python3 tools/reference/tiny_cxr_llava.py   (torch 1.13, sentencepiece)

The model, in the official checkpoint's layout (open_clip VisionTransformer +
LLaVA's linear mm_projector), shrunk:
  conv1 (no bias, 1 input channel, 16x16 stride 16) on a 64x64 image -> 16 patch
  tokens; prepend class_embedding; add positional_embedding [17, 64]; ln_pre;
  2 pre-LN residual blocks (nn.MultiheadAttention with 4 heads and a fused
  in_proj; mlp = c_fc -> exact GELU -> c_proj); ln_post over all 17 tokens;
  drop CLS; mm_projector Linear(64 -> 64) with bias. LayerNorm eps 1e-5.

Weight spec: the same generator as tiny_llama.py (FNV-1a 32 seed of the name,
xorshift32 stream, u = (x >> 8) / 2^24 * 2 - 1), seeded by the official names
("vision_tower.transformer.resblocks.0.attn.in_proj_weight", "mm_projector.weight", ...):
  * "linear" (every Linear and conv1): u * 2^-k with k from fan_in as in
    tiny_llama.py; conv1 [64, 1, 16, 16] is generated as its 2-D view [64, 256]
    (same row-major order), so fan_in = C * 16 * 16 = 256.
  * "embed"  (class_embedding, positional_embedding): u.
  * "norm"   (LayerNorm weights): float32(1 + u / 8).
  * "bias"   (every bias, LayerNorm biases included): u / 16, i.e. the "embed"
    value scaled by 2^-4 (exact).

Test image (64x64, one channel, 8-bit):
  noise: xorshift32 stream seeded with fnv1a32("tiny-cxr-llava.image"), one step
  per pixel in row-major order (state after the step, as for weights);
  pixel[y][x] = min(255, ((x*x + y*y) >> 5) + 3*((x + 2*y) & 15) + (state >> 28))
  normalised[y][x] = float32((pixel / 255 - MEAN) / STD), computed in float64,
  with the tiny model's own MEAN = 0.5, STD = 0.25 (stored in its GGUF).
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_llama  # noqa: E402  (the text model's weights and forward pass)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
DEFAULT_OUT = os.path.join(ROOT, 'test', 'fixtures', 'tiny-cxr-llava', 'golden.json')

VISION = dict(image_size=64, patch_size=16, channels=1, width=64, layers=2, heads=4, mlp_dim=256,
              proj_dim=64, layer_norm_eps=1e-5, image_mean=[0.5], image_std=[0.25])
IMAGE_SEED_NAME = 'tiny-cxr-llava.image'
GREEDY_STEPS = 32

# lib/runtime/prompt.ts, word for word.
SYSTEM_PROMPT = ('You are a helpful radiologist. Try to interpret chest x ray image and answer to the '
                 'question that user provides.')
REPORT_PROMPT = ('Write a radiologic report on the given chest radiograph, including information about '
                 'atelectasis, cardiomegaly, consolidation, pulmonary edema, pleural effusion, and pneumothorax.')

MASK32 = 0xFFFFFFFF


# ---- deterministic weights and image ---------------------------------------------------

def make_vision_weight(name, shape, kind):
    if kind == 'linear':
        # Convolutions are generated as their [out, in * kh * kw] view.
        flat = [shape[0], int(np.prod(shape[1:]))]
        return tiny_llama.make_weight(name, flat, 'linear').reshape(shape)
    if kind == 'bias':
        return (tiny_llama.make_weight(name, shape, 'embed') / np.float32(16)).astype(np.float32)
    return tiny_llama.make_weight(name, shape, kind)


def vision_specs(v):
    """(official_name, pytorch_shape, kind) for every tensor the model uses, in file order."""
    w, c, p, mlp = v['width'], v['channels'], v['patch_size'], v['mlp_dim']
    n_pos = (v['image_size'] // p) ** 2 + 1
    specs = [
        ('vision_tower.conv1.weight', [w, c, p, p], 'linear'),
        ('vision_tower.class_embedding', [w], 'embed'),
        ('vision_tower.positional_embedding', [n_pos, w], 'embed'),
        ('vision_tower.ln_pre.weight', [w], 'norm'),
        ('vision_tower.ln_pre.bias', [w], 'bias'),
    ]
    for i in range(v['layers']):
        b = 'vision_tower.transformer.resblocks.%d.' % i
        specs += [
            (b + 'ln_1.weight', [w], 'norm'),
            (b + 'ln_1.bias', [w], 'bias'),
            (b + 'attn.in_proj_weight', [3 * w, w], 'linear'),
            (b + 'attn.in_proj_bias', [3 * w], 'bias'),
            (b + 'attn.out_proj.weight', [w, w], 'linear'),
            (b + 'attn.out_proj.bias', [w], 'bias'),
            (b + 'ln_2.weight', [w], 'norm'),
            (b + 'ln_2.bias', [w], 'bias'),
            (b + 'mlp.c_fc.weight', [mlp, w], 'linear'),
            (b + 'mlp.c_fc.bias', [mlp], 'bias'),
            (b + 'mlp.c_proj.weight', [w, mlp], 'linear'),
            (b + 'mlp.c_proj.bias', [w], 'bias'),
        ]
    specs += [
        ('vision_tower.ln_post.weight', [w], 'norm'),
        ('vision_tower.ln_post.bias', [w], 'bias'),
        ('mm_projector.weight', [v['proj_dim'], w], 'linear'),
        ('mm_projector.bias', [v['proj_dim']], 'bias'),
    ]
    return specs


def test_image(v):
    """(uint8 pixels [H, W], normalised float32 [C, H, W]) per the spec above."""
    size = v['image_size']
    x = tiny_llama.fnv1a32(IMAGE_SEED_NAME)
    pix = np.empty((size, size), dtype=np.uint8)
    for yy in range(size):
        for xx in range(size):
            x ^= (x << 13) & MASK32
            x ^= x >> 17
            x ^= (x << 5) & MASK32
            pix[yy, xx] = min(255, ((xx * xx + yy * yy) >> 5) + 3 * ((xx + 2 * yy) & 15) + (x >> 28))
    norm = ((pix.astype(np.float64) / 255.0 - v['image_mean'][0]) / v['image_std'][0]).astype(np.float32)
    return pix, norm.reshape(1, size, size)


# ---- forward pass (float64, open_clip VisionTransformer + LLaVA projector semantics) ----

def encode_image(W, v, image):
    """Projected features [n_patches, proj_dim] (float64) of one normalised image [C, H, W]."""
    w, heads, eps = v['width'], v['heads'], v['layer_norm_eps']
    vt = 'vision_tower.'
    # conv1: [1, width, grid, grid] -> [1, grid*grid, width], patches in row-major order
    x = F.conv2d(image[None], W[vt + 'conv1.weight'], stride=v['patch_size'])
    x = x.reshape(1, w, -1).permute(0, 2, 1)
    # prepend class_embedding, add positional_embedding
    cls = W[vt + 'class_embedding'].reshape(1, 1, w)
    x = torch.cat([cls, x], dim=1) + W[vt + 'positional_embedding']
    # ln_pre
    x = F.layer_norm(x, (w,), W[vt + 'ln_pre.weight'], W[vt + 'ln_pre.bias'], eps)
    gelu = torch.nn.GELU()  # exact erf form
    for i in range(v['layers']):
        b = vt + 'transformer.resblocks.%d.' % i
        mha = torch.nn.MultiheadAttention(w, heads, batch_first=True).double()
        mha.load_state_dict({
            'in_proj_weight': W[b + 'attn.in_proj_weight'],
            'in_proj_bias': W[b + 'attn.in_proj_bias'],
            'out_proj.weight': W[b + 'attn.out_proj.weight'],
            'out_proj.bias': W[b + 'attn.out_proj.bias'],
        })
        mha.eval()
        # x = x + attn(ln_1(x))
        h = F.layer_norm(x, (w,), W[b + 'ln_1.weight'], W[b + 'ln_1.bias'], eps)
        x = x + mha(h, h, h, need_weights=False)[0]
        # x = x + mlp(ln_2(x)), mlp = c_proj(gelu(c_fc(.)))
        h = F.layer_norm(x, (w,), W[b + 'ln_2.weight'], W[b + 'ln_2.bias'], eps)
        h = gelu(F.linear(h, W[b + 'mlp.c_fc.weight'], W[b + 'mlp.c_fc.bias']))
        x = x + F.linear(h, W[b + 'mlp.c_proj.weight'], W[b + 'mlp.c_proj.bias'])
    # ln_post over every token, then drop CLS: LLaVA takes the patch tokens
    x = F.layer_norm(x, (w,), W[vt + 'ln_post.weight'], W[vt + 'ln_post.bias'], eps)
    x = x[0, 1:, :]
    # mm_projector
    return F.linear(x, W['mm_projector.weight'], W['mm_projector.bias'])


# ---- multimodal generation ----------------------------------------------------------------

def prompt_chunks(sp):
    """The official prompt around the image: (ids before the image, ids after it).

    The LLaVA code splits "<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n<image>\\n{user} [/INST]"
    at <image> and tokenizes each side on its own (each with SentencePiece's dummy
    prefix). The tokenizer's own BOS plus the literal <s> (a control token) give
    two BOS tokens first; the second chunk's own BOS is dropped.
    """
    bos = sp.bos_id()
    before_text = '[INST] <<SYS>>\n' + SYSTEM_PROMPT + '\n<</SYS>>\n\n'
    after_text = '\n' + REPORT_PROMPT + ' [/INST]'
    return before_text, [bos, bos] + sp.encode(before_text), after_text, sp.encode(after_text)


def greedy_multimodal(Wt, d, before, feats, after, steps):
    """Greedy ids after [before ids, image rows, after ids], via tiny_llama.forward.

    tiny_llama.forward looks its inputs up in model.embed_tokens.weight; appending the
    image rows to that table (ids vocab .. vocab+n-1) feeds them through the unchanged
    reference forward pass. lm_head is a separate tensor, so the logits are unaffected.
    """
    vocab = d['vocab_size']
    W = dict(Wt)
    W['model.embed_tokens.weight'] = torch.cat([Wt['model.embed_tokens.weight'], feats], dim=0)
    ids = list(before) + [vocab + i for i in range(feats.shape[0])] + list(after)
    n_prompt = len(ids)
    margins = []
    for _ in range(steps):
        last = tiny_llama.forward(W, d, ids)[-1]
        top2 = torch.topk(last, 2).values
        margins.append(float(top2[0] - top2[1]))
        ids.append(int(torch.argmax(last)))
    return ids[n_prompt:], margins


# ---- golden file -----------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--tokenizer', default=tiny_llama.DEFAULT_TOKENIZER)
    ap.add_argument('--out', default=DEFAULT_OUT)
    args = ap.parse_args()
    v = VISION

    weights32 = {name: make_vision_weight(name, shape, kind) for name, shape, kind in vision_specs(v)}
    W = {name: torch.from_numpy(w.astype(np.float64)) for name, w in weights32.items()}
    pixels, image32 = test_image(v)

    sp = spm.SentencePieceProcessor(model_file=args.tokenizer)
    d = dict(tiny_llama.DIMS, vocab_size=sp.get_piece_size())
    if v['proj_dim'] != d['hidden_size']:
        sys.exit('projector output must match the tiny LLaMA width')
    text32 = {name: tiny_llama.make_weight(name, shape, kind) for name, shape, kind in tiny_llama.tensor_specs(d)}
    Wt = {name: torch.from_numpy(w.astype(np.float64)) for name, w in text32.items()}

    before_text, before_ids, after_text, after_ids = prompt_chunks(sp)
    with torch.no_grad():
        feats = encode_image(W, v, torch.from_numpy(image32.astype(np.float64)))
        # The language model sees the features as the golden stores them (float32).
        feats32 = feats.numpy().astype(np.float32)
        greedy, margins = greedy_multimodal(Wt, d, before_ids, torch.from_numpy(feats32.astype(np.float64)),
                                            after_ids, GREEDY_STEPS)
    eos = sp.eos_id()
    eos_at = greedy.index(eos) if eos in greedy else -1
    n_prompt = len(before_ids) + feats32.shape[0] + len(after_ids)
    if n_prompt + GREEDY_STEPS > d['context_length']:
        sys.exit('prompt does not fit the tiny LLaMA context')

    golden = {
        'description': 'tiny CXR-LLaVA vision golden from tools/reference/tiny_cxr_llava.py (float64 torch reference)',
        'weight_spec': 'as tiny_llama.py, seeded by official names; linear=u*2^-k over the [out, in*kh*kw] view, '
                       'embed=u (class/positional embedding), norm=f32(1+u/8), bias=u/16',
        'vision': v,
        'text_dims': d,
        'image': {
            'spec': 'noise: xorshift32 from fnv1a32(seed_name), one step per pixel, row-major; '
                    'pixel[y][x] = min(255, ((x*x + y*y) >> 5) + 3*((x + 2*y) & 15) + (state >> 28)); '
                    'normalised = float32((pixel/255 - mean) / std) computed in float64',
            'seed_name': IMAGE_SEED_NAME,
            'height': v['image_size'],
            'width': v['image_size'],
            'channels': v['channels'],
            'mean': v['image_mean'],
            'std': v['image_std'],
            'pixels': [int(p) for p in pixels.reshape(-1)],
            'normalised_sum': float(image32.astype(np.float64).sum()),
        },
        'features_shape': list(feats32.shape),
        'features_max_abs': float(np.abs(feats32).max()),
        'features': [[tiny_llama.f32(x) for x in row] for row in feats32],
        'prompt': {
            'system': SYSTEM_PROMPT,
            'user': REPORT_PROMPT,
            'before_image_text': before_text,
            'before_image_ids': before_ids,
            'image_tokens': int(feats32.shape[0]),
            'after_image_text': after_text,
            'after_image_ids': after_ids,
            'total_positions': n_prompt,
        },
        'bos_id': sp.bos_id(),
        'eos_id': eos,
        'greedy_steps': GREEDY_STEPS,
        'greedy_ids': greedy,
        'greedy_min_margin': min(margins),
        'greedy_eos_index': eos_at,
        'greedy_ids_stop_at_eos': greedy if eos_at < 0 else greedy[:eos_at],
        'greedy_text': sp.decode(greedy),
        'checksums': [tiny_llama.checksum(name, w) for name, w in weights32.items()],
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(golden, f, separators=(',', ':'))
        f.write('\n')
    print('wrote %s: features %s max|f| %.4g, prompt %d positions, min greedy margin %.4g, eos at %d, %d bytes'
          % (args.out, list(feats32.shape), golden['features_max_abs'], n_prompt, min(margins), eos_at,
             os.path.getsize(args.out)))


if __name__ == '__main__':
    main()
