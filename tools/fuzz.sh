#!/usr/bin/env bash
# tools/fuzz.sh <target> <seconds>  (npm run fuzz -- <target> <seconds>)
# Builds the libFuzzer harnesses (clang, ASan + UBSan) in build-fuzz/, writes
# seed corpora from the test fixtures, and fuzzes one target (gguf, tokenizer,
# image) for <seconds>. Prints libFuzzer's summary, including the executions
# done; a crash leaves build-fuzz/crash-* and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: npm run fuzz -- <gguf|tokenizer|image> <seconds>}
seconds=${2:-60}
case "$target" in gguf|tokenizer|image) ;; *) echo "unknown fuzz target '$target' (gguf, tokenizer, image)" >&2; exit 2 ;; esac
command -v clang++ >/dev/null || { echo "fuzzing needs clang and libclang-rt-dev: apt-get install -y clang libclang-rt-dev" >&2; exit 2; }
[ -f dist/lib/index.js ] || npx tsc -p tsconfig.json
if [ ! -f build-fuzz/CMakeCache.txt ]; then
  CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCXR_FUZZ=ON -DCXR_CUDA=OFF >/dev/null
fi
cmake --build build-fuzz -j "${CXR_JOBS:-2}" --target "fuzz_$target" >/dev/null
seeds=build-fuzz/seeds
[ -f "$seeds/vocab.gguf" ] || node native/fuzz/make-seeds.mjs "$seeds"
corpus=build-fuzz/corpus/$target
mkdir -p "$corpus"
cd build-fuzz
rc=0
CXR_FUZZ_VOCAB=seeds/vocab.gguf ASAN_OPTIONS=detect_leaks=1 \
  "./fuzz_$target" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
  "corpus/$target" "seeds/$target" >"fuzz-$target.log" 2>&1 || rc=$?
grep -E "^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY|Test unit written|INFO: seed corpus)" "fuzz-$target.log" || true
[ "$rc" -eq 0 ] || echo "fuzz_$target failed (exit $rc); full log: build-fuzz/fuzz-$target.log" >&2
exit "$rc"
