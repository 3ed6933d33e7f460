#!/usr/bin/env bash
# tools/gpu-check.sh - one run on a lent GPU machine checks and benchmarks the
# CUDA backend. Needs the CUDA toolkit (nvcc), cmake, a C++17 compiler and
# python3 with numpy and PyTorch; no Node, nothing fetched. Meant to finish in
# under 8 minutes on an H100/H200 with 16 cores.
#
#   tools/gpu-check.sh [--out DIR] [--work DIR] [--runs N] [--skip-gpu]
#
#   1. builds the engine, its C++ tests and tools with cmake (CUDA for this GPU)
#   2. runs the C++ tests (host kernel arithmetic, CPU backend, the seam's
#      conformance suite on CUDA) and the end-to-end goldens of
#      the tiny text and multimodal models (test/fixtures/gpu-check) on CUDA
#   3. writes random-weight files of the real shapes with cxr-synth (7B Q4_0 and
#      Q8_0, ViT-L/16@512 F16 and Q8_0) and benchmarks them with cxr-bench: ViT
#      encode, 1100-token prefill, decode after 1100 positions, one report
#      (encode + prefill + 100 tokens)
#   4. runs the PyTorch bf16 anchor (bench/anchors/gpu_torch.py) at the same shapes
#   5. prints one table and writes DIR/gpu-check.json
#
# --skip-gpu checks the script itself on any machine: a CPU build, the C++
# tests, tiny shapes on the CPU backend, the anchor on the CPU when torch is
# there. A step that fails is reported and the others still run; the exit
# status is 1 when any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=gpu-check-out
WORK=
RUNS=3
SKIP_GPU=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --skip-gpu) SKIP_GPU=1; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-$OUT/work}
mkdir -p "$WORK"
JOBS=$(nproc 2>/dev/null || echo 4)
BUILD=build-gpu-check
START=$SECONDS
: >"$OUT/steps.jsonl"

# step NAME CMD...: runs CMD with its output in $OUT/NAME.log, records status and time.
step() {
  local name=$1; shift
  local t0=$SECONDS rc
  printf '=== %-28s ' "$name"
  "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  printf '%s in %ds\n' "$([ $rc -eq 0 ] && echo ok || echo "FAILED (rc $rc, see $OUT/$name.log)")" $((SECONDS - t0))
  printf '{"step": "%s", "ok": %s, "seconds": %d}\n' "$name" "$([ $rc -eq 0 ] && echo true || echo false)" \
    $((SECONDS - t0)) >>"$OUT/steps.jsonl"
  return $rc
}

if [ $SKIP_GPU -eq 1 ]; then
  BACKEND=cpu; CUDA_FLAGS=(-DCXR_CUDA=OFF); TEXT_SHAPE=tiny; VIT_SHAPE=tiny; PROMPT=300; GEN=16
  ANCHOR=(--device cpu --shape tiny --prompt 80 --gen 8 --runs 1 --batches 1,2)
else
  BACKEND=cuda; PROMPT=1100; GEN=100; TEXT_SHAPE=7b; VIT_SHAPE=vit-l
  # This GPU's architecture only: a third of the compile time of sm_80 + sm_90.
  CUDA_FLAGS=(-DCXR_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native)
  cmake --version | awk 'NR==1 {split($3, v, "."); exit !(v[1] > 3 || (v[1] == 3 && v[2] >= 24))}' ||
    CUDA_FLAGS=(-DCXR_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90)
  ANCHOR=(--device cuda --shape full --prompt $PROMPT --gen $GEN --runs $RUNS --batches 1,8,32)
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    >"$OUT/gpu.txt" 2>&1
fi

build() {
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "${CUDA_FLAGS[@]}" &&
    cmake --build "$BUILD" -j "$JOBS"
}
step build build || { echo "gpu-check: the build failed; nothing else can run"; exit 1; }

step cxx-tests "$BUILD/cxr-tests"
step goldens python3 tools/gpu-check/goldens.py --eval "$BUILD/cxr-eval" --backend "$BACKEND" --out "$WORK"

synth() {
  "$BUILD/cxr-synth" text "$WORK/text-q4_0.gguf" --shape $TEXT_SHAPE --type q4_0 --threads "$JOBS" &&
    "$BUILD/cxr-synth" text "$WORK/text-q8_0.gguf" --shape $TEXT_SHAPE --type q8_0 --threads "$JOBS" &&
    "$BUILD/cxr-synth" mmproj "$WORK/vit-f16.gguf" --shape $VIT_SHAPE --type f16 --threads "$JOBS" &&
    "$BUILD/cxr-synth" mmproj "$WORK/vit-q8_0.gguf" --shape $VIT_SHAPE --type q8_0 --threads "$JOBS"
}
step synth synth

# Q4_0 text with the F16 ViT, Q8_0 text with the Q8_0 ViT: every file once.
bench() {
  local text=$1 vit=$2
  "$BUILD/cxr-bench" "$WORK/text-$text.gguf" --mmproj "$WORK/vit-$vit.gguf" --backend "$BACKEND" \
    --prompt $PROMPT --gen $GEN --runs "$RUNS" --json | tail -1 >"$OUT/bench-$text.json"
}
step bench-q4_0 bench q4_0 f16
step bench-q8_0 bench q8_0 q8_0
# Reports/s with 1, 8 and 32 sequences together need the multi-sequence
# batching of cxr-bench (--parallel); run it when this build has it.
if "$BUILD/cxr-bench" 2>&1 | grep -q -- '--parallel'; then
  batch() {
    for n in 1 8 32; do
      "$BUILD/cxr-bench" "$WORK/text-q4_0.gguf" --mmproj "$WORK/vit-f16.gguf" --backend "$BACKEND" --prompt $PROMPT \
        --gen $GEN --runs 1 --parallel $n --json | tail -1
    done >"$OUT/bench-batch.jsonl"
  }
  step bench-batch batch
fi
rm -f "$WORK"/text-*.gguf "$WORK"/vit-*.gguf  # 11 GB at full size

anchor() { python3 bench/anchors/gpu_torch.py "${ANCHOR[@]}" | tail -1 >"$OUT/anchor.json"; }
if python3 -c 'import torch' 2>/dev/null; then
  step anchor anchor
else
  echo "=== anchor                       skipped: python3 has no torch" | tee "$OUT/anchor.log"
fi

step table python3 tools/gpu-check/table.py --out "$OUT" --seconds $((SECONDS - START))
cat "$OUT/table.log"
echo "gpu-check: $((SECONDS - START)) s; results in $OUT/gpu-check.json"
grep -q '"ok": false' "$OUT/steps.jsonl" && exit 1
exit 0
