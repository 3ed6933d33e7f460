"""PyTorch CPU anchor for the vision benchmark: the same ViT + projector as our engine,
built from the same mmproj GGUF, timed at the same thread count.

    /usr/bin/python3 bench/anchors/vision_torch.py MMPROJ.gguf --threads 2 --runs 3 \
        [--pixels in.f32 --ours out.f32] [--sgemm]

Prints one JSON line: per-run milliseconds, the BLAS torch reports, optionally the
largest difference from our engine's output (same input pixels), and optionally an
SGEMM rate as a FLOP/s reference. Run with Debian's python3-torch and OpenBLAS
(libopenblas0-pthread); without OpenBLAS torch falls back to the reference BLAS.
"""
import argparse
import json
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

# GGUF metadata value types and the sizes of the fixed-width ones.
_FIXED = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = bytes(self.data[self.pos : self.pos + n]).decode("utf-8")
        self.pos += n
        return s

    def value(self, t):
        if t in _FIXED:
            return self.take(_FIXED[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError(f"unknown GGUF value type {t}")


def read_gguf(path):
    """Metadata dict and {name: float32 numpy array in PyTorch shape order}."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    r = Reader(data)
    if bytes(data[:4]) != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    r.pos = 4
    r.take("<I")  # version
    n_tensors, n_kv = r.take("<Q"), r.take("<Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        ne = [r.take("<Q") for _ in range(r.take("<I"))]
        infos.append((name, ne, r.take("<I"), r.take("<Q")))
    align = meta.get("general.alignment", 32)
    base = (r.pos + align - 1) // align * align
    tensors = {}
    for name, ne, t, off in infos:
        count = int(np.prod(ne))
        start = base + off
        if t == 0:
            a = np.frombuffer(data, np.float32, count, start)
        elif t == 1:
            a = np.frombuffer(data, np.float16, count, start).astype(np.float32)
        elif t == 8:  # q8_0: blocks of an f16 scale and 32 int8 values
            blocks = np.frombuffer(data, np.uint8, count // 32 * 34, start).reshape(-1, 34)
            d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
            q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
            a = (q * d).reshape(-1)
        else:
            raise ValueError(f"{name}: tensor type {t} is not supported here")
        tensors[name] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32).reshape(list(reversed(ne))))
    return meta, tensors


def build(meta, t):
    heads = meta["clip.vision.attention.head_count"]
    layers = meta["clip.vision.block_count"]
    eps = meta["clip.vision.attention.layer_norm_epsilon"]
    p = meta["clip.vision.patch_size"]

    def encode(pixels):
        w = t["v.patch_embd.weight"].shape[0]
        x = F.conv2d(pixels, t["v.patch_embd.weight"], stride=p)  # [1, w, g, g]
        x = x.reshape(w, -1).t()
        x = torch.cat([t["v.class_embd"].reshape(1, w), x]) + t["v.position_embd.weight"]
        x = F.layer_norm(x, (w,), t["v.pre_ln.weight"], t["v.pre_ln.bias"], eps)
        n, hd = x.shape[0], w // heads
        for i in range(layers):
            b = f"v.blk.{i}."
            h = F.layer_norm(x, (w,), t[b + "ln1.weight"], t[b + "ln1.bias"], eps)
            q = F.linear(h, t[b + "attn_q.weight"], t[b + "attn_q.bias"]).reshape(n, heads, hd).transpose(0, 1)
            k = F.linear(h, t[b + "attn_k.weight"], t[b + "attn_k.bias"]).reshape(n, heads, hd).transpose(0, 1)
            v = F.linear(h, t[b + "attn_v.weight"], t[b + "attn_v.bias"]).reshape(n, heads, hd).transpose(0, 1)
            att = torch.softmax(torch.bmm(q, k.transpose(1, 2)) / hd**0.5, dim=-1)
            o = torch.bmm(att, v).transpose(0, 1).reshape(n, w)
            x = x + F.linear(o, t[b + "attn_out.weight"], t[b + "attn_out.bias"])
            h = F.layer_norm(x, (w,), t[b + "ln2.weight"], t[b + "ln2.bias"], eps)
            h = F.gelu(F.linear(h, t[b + "ffn_up.weight"], t[b + "ffn_up.bias"]))
            x = x + F.linear(h, t[b + "ffn_down.weight"], t[b + "ffn_down.bias"])
        x = F.layer_norm(x[1:], (w,), t["v.post_ln.weight"], t["v.post_ln.bias"], eps)
        return F.linear(x, t["mm.0.weight"], t["mm.0.bias"])

    return encode


def blas_name():
    for part in torch.__config__.show().replace("\n", ",").split(","):
        if "BLAS_INFO" in part:
            return part.strip().split()[-1]
    return "unknown"


def loaded_blas():
    """The BLAS shared objects actually mapped into this process."""
    try:
        with open("/proc/self/maps") as f:
            libs = {l.split()[-1] for l in f if "blas" in l.lower() and l.split()[-1].startswith("/")}
        return sorted(libs)
    except OSError:
        return []


def openblas_core():
    """OpenBLAS's own word on the kernel it runs (its core name and build config)."""
    import ctypes

    for lib in loaded_blas():
        try:
            so = ctypes.CDLL(lib)
            so.openblas_get_corename.restype = ctypes.c_char_p
            so.openblas_get_config.restype = ctypes.c_char_p
            return {"corename": so.openblas_get_corename().decode(), "config": so.openblas_get_config().decode()}
        except (OSError, AttributeError):
            continue
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mmproj")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pixels", help="raw float32 input image (size*size), as our engine got it")
    ap.add_argument("--ours", help="raw float32 output of our engine for --pixels")
    ap.add_argument("--sgemm", action="store_true", help="also time a 2048^3 SGEMM")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    meta, t = read_gguf(a.mmproj)
    encode = build(meta, t)
    size = meta["clip.vision.image_size"]
    if a.pixels:
        pixels = torch.from_numpy(np.fromfile(a.pixels, dtype=np.float32).reshape(1, 1, size, size))
    else:
        pixels = torch.randn(1, 1, size, size)
    out = {"threads": torch.get_num_threads(), "torch": torch.__version__, "blas": blas_name(), "blas_loaded": loaded_blas()}
    out["openblas"] = openblas_core()
    with torch.no_grad():
        y = encode(pixels)  # warm-up (first-touch of every weight page and allocator)
        ms = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            y = encode(pixels)
            ms.append((time.perf_counter() - t0) * 1000)
        out["ms"] = ms
        if a.ours:
            ours = torch.from_numpy(np.fromfile(a.ours, dtype=np.float32).reshape(y.shape))
            out["max_abs_diff"] = float((ours - y).abs().max())
            out["max_abs_ref"] = float(y.abs().max())
        if a.sgemm:
            m = torch.randn(2048, 2048)
            torch.mm(m, m)
            rates = []
            for _ in range(5):
                t0 = time.perf_counter()
                torch.mm(m, m)
                rates.append(2 * 2048**3 / (time.perf_counter() - t0) / 1e9)
            out["sgemm_gflop_s"] = sorted(rates)[len(rates) // 2]
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
