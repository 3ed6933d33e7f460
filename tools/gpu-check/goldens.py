"""The end-to-end goldens on a chosen backend, without Node: the tiny text and
multimodal models (test/fixtures/gpu-check/, written by the test helpers)
run through cxr-eval and compared with the committed PyTorch goldens, as
test/llama-golden.test.ts and test/vision-golden.test.ts do on the CPU.

    python3 tools/gpu-check/goldens.py --eval build/cxr-eval --backend cuda --out DIR

Prints one line per check and a JSON summary line; exits 1 if any check fails.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "test", "fixtures")

# Logits and features: within this fraction of the reference's largest value.
# The CPU backend's bound is 1e-4 (float32 rounding); a GPU sums in other
# orders and with fused multiply-adds, which stays far inside 1e-3.
LOGIT_TOL = 1e-3
FEATURE_TOL = 1e-3


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval", required=True, help="the cxr-eval executable")
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    results, ok = [], True

    def check(name, passed, detail):
        nonlocal ok
        ok &= bool(passed)
        results.append({"check": name, "pass": bool(passed), "detail": detail})
        print(f"{'ok' if passed else 'FAIL'} - {name}: {detail}")

    text = os.path.join(FIX, "gpu-check", "tiny-llama.f32.gguf")
    mmproj = os.path.join(FIX, "gpu-check", "tiny-mmproj.f32.gguf")

    g = json.load(open(os.path.join(FIX, "tiny-llama", "golden.json")))
    logits_path = os.path.join(a.out, "tiny-logits.f32")
    try:
        r = run([a.eval, text, "--backend", a.backend, "--kv", "f32", "--ids", ",".join(map(str, g["prompt_ids"])),
                 "--logits", logits_path, "--greedy", str(g["greedy_steps"])])
        ref = np.array(g["logits"], dtype=np.float64)
        got = np.fromfile(logits_path, dtype=np.float32).reshape(ref.shape)
        worst = float(np.abs(got - ref).max())
        check("text logits at every prompt position", r["backend"] == a.backend and worst <= LOGIT_TOL * g["logits_max_abs"],
              f"backend {r['backend']}, max |diff| {worst:.3e} <= {LOGIT_TOL * g['logits_max_abs']:.3e}")
        check("text greedy 32 tokens", r["greedy"] == g["greedy_ids_stop_at_eos"], f"{r['greedy'][:8]}...")
    except Exception as e:  # one failing model must not hide the other's result
        check("text model", False, str(e))

    v = json.load(open(os.path.join(FIX, "tiny-cxr-llava", "golden.json")))
    img = v["image"]
    px = ((np.array(img["pixels"], dtype=np.float64) / 255 - img["mean"][0]) / img["std"][0]).astype(np.float32)
    px_path, feat_path = os.path.join(a.out, "tiny-pixels.f32"), os.path.join(a.out, "tiny-features.f32")
    px.tofile(px_path)
    p = v["prompt"]
    try:
        r = run([a.eval, text, "--backend", a.backend, "--kv", "f32", "--mmproj", mmproj, "--pixels", px_path,
                 "--ids", ",".join(map(str, p["before_image_ids"])), "--after", ",".join(map(str, p["after_image_ids"])),
                 "--features", feat_path, "--greedy", str(v["greedy_steps"])])
        ref = np.array(v["features"], dtype=np.float64)
        got = np.fromfile(feat_path, dtype=np.float32).reshape(ref.shape)
        worst = float(np.abs(got - ref).max())
        check("image features", worst <= FEATURE_TOL * v["features_max_abs"],
              f"max |diff| {worst:.3e} <= {FEATURE_TOL * v['features_max_abs']:.3e}")
        check("multimodal greedy 32 tokens", r["greedy"] == v["greedy_ids_stop_at_eos"], f"{r['greedy'][:8]}...")
    except Exception as e:
        check("multimodal model", False, str(e))

    print(json.dumps({"goldens": results, "backend": a.backend}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
