"""PyTorch bf16 anchor for tools/gpu-check.sh: CXR-LLaVA's official stack's
semantics at its real shapes, with random weights, on the same GPU as our
engine.

    python3 bench/anchors/gpu_torch.py [--device cuda] [--shape full|tiny]
        [--prompt 1100] [--gen 100] [--runs 3] [--batches 1,8,32]

What it mirrors (the official code runs Hugging Face LlamaForCausalLM and an
open_clip ViT in bf16 on CUDA):
  * ViT-L/16 at 512 px, one channel: conv1 patches, class and positional
    embeddings, ln_pre, 24 pre-norm blocks of nn.MultiheadAttention (as
    open_clip builds them) and a GELU MLP, ln_post on the patch tokens, then the
    Linear(1024 -> 4096) projector;
  * a LLaMA-2-7B-shaped decoder: RMSNorm, rotate-half RoPE, SDPA attention
    (the default attention of transformers >= 4.36) with a KV cache that grows
    by concatenation like transformers' DynamicCache, SwiGLU MLP, lm_head;
    greedy decoding, one token per step, logits of the last position only.
Prints one JSON object: median milliseconds per stage and reports/s for each
batch size. Every timing is bracketed by torch.cuda.synchronize().
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPES = {
    "full": dict(dim=4096, ffn=11008, layers=32, heads=32, vocab=32000,
                 vit_width=1024, vit_layers=24, vit_heads=16, vit_mlp=4096, image=512, patch=16),
    "tiny": dict(dim=256, ffn=768, layers=2, heads=8, vocab=1000,
                 vit_width=64, vit_layers=2, vit_heads=4, vit_mlp=256, image=64, patch=16),
}


def sdpa(q, k, v, causal):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    # torch < 2.0 (Debian's 1.13, for checking this script on a CPU): the same maths, eagerly
    s = (q @ k.transpose(-1, -2)) / (q.shape[-1] ** 0.5)
    if causal:
        n, m = s.shape[-2], s.shape[-1]
        s = s.masked_fill(torch.ones(n, m, dtype=torch.bool, device=s.device).triu(m - n + 1), float("-inf"))
    return torch.softmax(s.float(), dim=-1).to(q.dtype) @ v


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        # transformers' LlamaRMSNorm: the statistics in float32, the product back in bf16
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Rope:
    def __init__(self, head_dim, max_pos, device, theta=10000.0):
        inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
        t = torch.arange(max_pos, device=device, dtype=torch.float32)
        f = torch.outer(t, inv)
        emb = torch.cat((f, f), dim=-1)
        self.cos, self.sin = emb.cos().to(torch.bfloat16), emb.sin().to(torch.bfloat16)

    def __call__(self, q, k, pos0):
        n = q.shape[2]
        c, s = self.cos[pos0:pos0 + n][None, None], self.sin[pos0:pos0 + n][None, None]
        return q * c + rotate_half(q) * s, k * c + rotate_half(k) * s


class DecoderLayer(nn.Module):
    def __init__(self, d, ffn, heads):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(d), RMSNorm(d)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.gate_proj, self.up_proj = nn.Linear(d, ffn, bias=False), nn.Linear(d, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, d, bias=False)

    def forward(self, x, rope, cache, pos0):
        b, n, d = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(b, n, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(b, n, self.heads, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(b, n, self.heads, self.hd).transpose(1, 2)
        q, k = rope(q, k, pos0)
        if cache[0] is not None:  # DynamicCache.update: concatenate along the sequence
            k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
        cache[0], cache[1] = k, v
        a = sdpa(q, k, v, n > 1)
        x = x + self.o_proj(a.transpose(1, 2).reshape(b, n, d))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.embed_tokens = nn.Embedding(s["vocab"], s["dim"])
        self.layers = nn.ModuleList(DecoderLayer(s["dim"], s["ffn"], s["heads"]) for _ in range(s["layers"]))
        self.norm = RMSNorm(s["dim"])
        self.lm_head = nn.Linear(s["dim"], s["vocab"], bias=False)
        self.head_dim = s["dim"] // s["heads"]

    def forward(self, embeds, caches, pos0):
        x = embeds
        for layer, cache in zip(self.layers, caches):
            x = layer(x, self.rope, cache, pos0)
        return self.lm_head(self.norm(x[:, -1:]))  # generate() only needs the last position


class ResBlock(nn.Module):  # open_clip's ResidualAttentionBlock
    def __init__(self, w, heads, mlp):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(w), nn.LayerNorm(w)
        self.attn = nn.MultiheadAttention(w, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(w, mlp), nn.GELU(), nn.Linear(mlp, w))

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Vit(nn.Module):
    def __init__(self, s):
        super().__init__()
        w, p = s["vit_width"], s["patch"]
        grid = s["image"] // p
        self.conv1 = nn.Conv2d(1, w, p, stride=p, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w) * 0.02)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, w) * 0.02)
        self.ln_pre, self.ln_post = nn.LayerNorm(w), nn.LayerNorm(w)
        self.blocks = nn.ModuleList(ResBlock(w, s["vit_heads"], s["vit_mlp"]) for _ in range(s["vit_layers"]))
        self.projector = nn.Linear(w, s["dim"])

    def forward(self, px):
        x = self.conv1(px).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat((cls, x), dim=1) + self.positional_embedding.to(x.dtype))
        for blk in self.blocks:
            x = blk(x)
        return self.projector(self.ln_post(x[:, 1:]))  # LLaVA takes the patch tokens


def timed(fn, runs, device):
    def sync():
        if device == "cuda":
            torch.cuda.synchronize()
    fn()  # warm-up: kernels chosen, caches allocated
    sync()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--shape", default="full", choices=sorted(SHAPES))
    ap.add_argument("--prompt", type=int, default=1100)
    ap.add_argument("--gen", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batches", default="1,8,32")
    args = ap.parse_args()
    s = SHAPES[args.shape]
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("gpu_torch: no CUDA device visible to PyTorch", file=sys.stderr)
        return 1
    dtype = torch.bfloat16
    torch.manual_seed(0)
    # Built on the device where torch allows it (2.0+): 13 GB of weights need not pass through the host.
    if hasattr(torch, "set_default_device"):
        with torch.device(dev):
            llm, vit = Llama(s).to(dtype).eval(), Vit(s).to(dtype).eval()
    else:
        llm, vit = Llama(s).to(dev, dtype).eval(), Vit(s).to(dev, dtype).eval()
    for p in list(llm.parameters()) + list(vit.parameters()):
        if p.dim() > 1:
            nn.init.normal_(p, std=0.02)
    llm.rope = Rope(llm.head_dim, args.prompt + args.gen + 8, dev)
    n_image = (s["image"] // s["patch"]) ** 2
    n_text = max(1, args.prompt - n_image)

    def encode(b=1):
        px = torch.randn(b, 1, s["image"], s["image"], device=dev, dtype=dtype)
        return vit(px)

    def prefill(embeds):
        caches = [[None, None] for _ in llm.layers]
        return llm(embeds, caches, 0), caches

    def prompt_embeds(b, img):
        ids = torch.randint(3, s["vocab"], (b, n_text), device=dev)
        return torch.cat((img, llm.embed_tokens(ids)), dim=1)[:, :args.prompt]

    def generate(b, steps, img=None):
        img = encode(b) if img is None else img
        logits, caches = prefill(prompt_embeds(b, img))
        pos = args.prompt
        for _ in range(steps):
            tok = logits[:, -1].argmax(-1, keepdim=True)  # greedy
            logits = llm(llm.embed_tokens(tok), caches, pos)
            pos += 1
        return logits

    res = {"anchor": "pytorch-bf16", "torch": torch.__version__, "device": dev, "shape": args.shape,
           "prompt": args.prompt, "gen": args.gen}
    if dev == "cuda":
        res["gpu"] = torch.cuda.get_device_name(0)
    with torch.inference_mode():
        res["vit_encode_ms"] = timed(lambda: encode(1), args.runs, dev)
        img = encode(1)
        res["prefill_ms"] = timed(lambda: prefill(prompt_embeds(1, img)), args.runs, dev)
        # decode after `prompt` positions: the whole greedy loop, minus the prefill
        total = timed(lambda: generate(1, args.gen, img), args.runs, dev)
        res["decode_tok_s"] = args.gen / max(1e-9, (total - res["prefill_ms"]) / 1000)
        res["report_ms"] = timed(lambda: generate(1, args.gen), args.runs, dev)
        res["reports_per_s"] = {}
        for b in (int(x) for x in args.batches.split(",") if x):
            ms = timed(lambda: generate(b, args.gen), max(1, args.runs - 1), dev)
            res["reports_per_s"][str(b)] = b / (ms / 1000)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
