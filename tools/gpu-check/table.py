"""The table of tools/gpu-check.sh: reads what the steps left in OUT and prints
one table (ours per weight type, the PyTorch bf16 anchor, the ratio, the
issue's target), then writes OUT/gpu-check.json with everything in it.

    python3 tools/gpu-check/table.py --out OUT [--seconds N]
"""
import argparse
import json
import os
import re


def load(path, many=False):
    if not os.path.exists(path):
        return [] if many else None
    with open(path) as f:
        lines = [l for l in f.read().splitlines() if l.strip().startswith("{")]
    try:
        rows = [json.loads(l) for l in lines]
    except json.JSONDecodeError:
        return [] if many else None
    return rows if many else (rows[-1] if rows else None)


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=int, default=None)
    a = ap.parse_args()
    o = a.out
    steps = load(os.path.join(o, "steps.jsonl"), many=True)
    q4, q8 = load(os.path.join(o, "bench-q4_0.json")), load(os.path.join(o, "bench-q8_0.json"))
    batch = load(os.path.join(o, "bench-batch.jsonl"), many=True)
    anchor = load(os.path.join(o, "anchor.json"))
    goldens = load(os.path.join(o, "goldens.log"))
    gpu = open(os.path.join(o, "gpu.txt")).read().strip() if os.path.exists(os.path.join(o, "gpu.txt")) else None
    tests = None
    if os.path.exists(os.path.join(o, "cxx-tests.log")):
        m = re.findall(r"^(\d+) passed, (\d+) failed$", open(os.path.join(o, "cxx-tests.log")).read(), re.M)
        tests = {"passed": int(m[-1][0]), "failed": int(m[-1][1])} if m else None
        skipped = re.search(r"^# cuda conformance skipped: (.*)$", open(os.path.join(o, "cxx-tests.log")).read(), re.M)
        if skipped and tests is not None:
            tests["cuda_conformance_skipped"] = skipped.group(1)

    def g(d, k):
        return None if d is None else d.get(k)

    ap_ = anchor or {}
    rows = [
        ("ViT-L/16@512 encode (ms)", g(q4, "encode_ms"), g(q8, "encode_ms"), ap_.get("vit_encode_ms"), "<= 10", False),
        ("1100-token prefill (ms)", g(q4, "prefill_ms"), g(q8, "prefill_ms"), ap_.get("prefill_ms"), "<= 60", False),
        ("decode after 1100 (tok/s)", g(q4, "decode_tok_s"), g(q8, "decode_tok_s"), ap_.get("decode_tok_s"),
         ">= 750 (Q4_0, H200)", True),
        ("one report (ms)", g(q4, "report_ms"), g(q8, "report_ms"), ap_.get("report_ms"), "<= 500, >= 5x anchor", False),
    ]
    per_seq = {str(r.get("parallel")): r.get("reports_per_s") for r in batch}
    for n in ("1", "8", "32"):
        rows.append((f"reports/s, {n} sequences", per_seq.get(n), None, (ap_.get("reports_per_s") or {}).get(n),
                     ">= 10" if n == "32" else "", True))

    lines = []
    if gpu:
        lines.append(f"GPU: {gpu}")
    if q4:
        lines.append(f"backend: {q4.get('backend')} ({q4.get('backend_reason')})")
    head = f"| {'measure':28} | {'ours Q4_0':>10} | {'ours Q8_0':>10} | {'PyTorch bf16':>12} | {'Q4_0 vs anchor':>14} | target"
    lines += [head, "|" + "-" * (len(head) - 1)]
    table = []
    for name, a4, a8, an, target, higher in rows:
        ratio = None
        if a4 and an:
            ratio = a4 / an if higher else an / a4  # > 1: ours is faster
        lines.append(f"| {name:28} | {fmt(a4):>10} | {fmt(a8):>10} | {fmt(an):>12} | {fmt(ratio, 2) + 'x' if ratio else '-':>14} | {target}")
        table.append({"measure": name, "ours_q4_0": a4, "ours_q8_0": a8, "anchor_bf16": an,
                      "speedup_q4_0_vs_anchor": ratio, "target": target})
    if not batch:
        lines.append("reports/s with several sequences: not measured (cxr-bench has no --parallel in this build)")
    if goldens:
        fails = [r["check"] for r in goldens.get("goldens", []) if not r["pass"]]
        lines.append(f"goldens on {goldens.get('backend')}: " + ("all pass" if not fails else "FAILED: " + ", ".join(fails)))
    if tests:
        lines.append(f"C++ tests: {tests['passed']} passed, {tests['failed']} failed" +
                     (f" (cuda conformance skipped: {tests['cuda_conformance_skipped']})" if "cuda_conformance_skipped" in tests else ""))
    bad = [s["step"] for s in steps if not s["ok"]]
    lines.append("steps: " + ", ".join(f"{s['step']} {s['seconds']}s{'' if s['ok'] else ' FAILED'}" for s in steps) +
                 (f"; total {a.seconds}s" if a.seconds is not None else ""))
    print("\n".join(lines))
    out = {"gpu": gpu, "table": table, "ours": {"q4_0": q4, "q8_0": q8, "batch": batch}, "anchor": anchor,
           "goldens": goldens, "cxx_tests": tests, "steps": steps, "failed_steps": bad, "seconds": a.seconds}
    tmp = os.path.join(o, "gpu-check.json.tmp")
    with open(tmp, "w") as f:
        json.dump(out, f, indent=2)
    os.replace(tmp, os.path.join(o, "gpu-check.json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
