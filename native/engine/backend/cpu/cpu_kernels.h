// cpu_kernels.h - the one table of CPU kernels: every kernel the CPU backend
// calls through a pointer has one slot here, filled once for the running CPU.
//
// cpu_kernels.cpp starts from the scalar kernels (types/quants.h's reference
// converters and dots, scalar_kernels.cpp's rows and attention), then lets
// each instruction-set file the CPU can run (x86/, arm/; kernel_sets.h)
// overwrite the slots it has faster kernels for, in the order of
// cpu_features.h's probe. A slot left alone keeps its scalar kernel; the
// blocked-matmul slots have none and stay nullptr, which sends matmul.cpp
// down the vec_dot route.
//
// CXR_FORCE_SCALAR=1 in the environment, or force_scalar_kernels(true), makes
// cpu_kernels() the scalar table, so the reference path is tested as a whole.
// CXR_GEMM=off leaves the blocked-matmul slots empty; CXR_GEMM=avx2 fills
// them from the AVX2 set on CPUs that also have AVX-512 (for comparisons).
#pragma once
#include <cstddef>
#include <cstdint>

#include "types/dtype.h"
#include "types/quants.h"

namespace cxr {
namespace detail {
struct QActs;  // gemm.h: Q8_0 activations laid out for the integer matmuls
}  // namespace detail

// Keys per decode_tile step of attention (attention.cpp walks the cache this
// many keys at a time; the AVX2 kernel puts one key in each of 8 lanes).
constexpr int kAttnDecodeKeys = 8;

// Most tokens one q4_x8_gemv_n call may take (matmul.cpp sizes its arrays by it).
constexpr int kMaxX8GemvTokens = 8;

// Tensor types with a slot in CpuKernels::types.
constexpr int kCpuTypeSlots = 8;

// The blocked matmul kernels of one instruction set (gemm.h holds the
// layouts). Integer slots take Q4_0 / Q8_0 weights against Q8_0 activations
// (QActs), the float ones F32 / F16 / BF16 weights against f32 activations.

// Prompts: panels of weight rows packed once and run against every token.
struct PanelKernels {
  // Weight rows per integer panel (a multiple of 8).
  int rows;
  // Weight offset the integer kernels for t (Q4_0 or Q8_0) expect; see QActs.
  int (*offset)(DType t);
  // Bytes of the per-thread buffer int_panel / x8_panel need for `cols` columns.
  size_t (*int_panel_bytes)(int64_t cols);
  // Packs weight rows [0, nr) (nr <= rows; w points at the first row, rows
  // are wrow bytes apart) into buf and computes y[t * ldy + r] for every
  // token t < x.n and row r < nr, adding bias[r] if bias is given.
  void (*int_panel)(DType t, const uint8_t* w, size_t wrow, int nr, const detail::QActs& x, float* y, int64_t ldy,
                    const float* bias, uint8_t* buf);
  // As int_panel, for x8 weights (repack.h): nr rows (a multiple of 8, <=
  // rows) whose row groups start at w.
  void (*x8_panel)(DType t, const uint8_t* w, int nr, const detail::QActs& x, float* y, int64_t ldy,
                   const float* bias, uint8_t* buf);
  // Float family: rows per packed column chunk and columns per K block.
  int float_chunk_rows;
  int float_k_block;
  // Bytes of the per-thread buffer float_chunk needs.
  size_t (*float_chunk_bytes)();
  // y[t * ldy + r] = sum_k x[t * ldx + k] * W[r, k] (+ bias[r]) for rows r < nr
  // (nr <= float_chunk_rows; w points at the first row, wrow bytes apart) and
  // every token t < n. W is F32, F16 or BF16.
  void (*float_chunk)(DType t, const uint8_t* w, size_t wrow, int nr, int64_t cols, const float* x, int64_t ldx,
                      int64_t n, float* y, int64_t ldy, const float* bias, float* buf);
};

// Decode: weight rows streamed once against one token (or a few).
struct GemvKernels {
  // Weight offset the decode kernels for t expect; see QActs.
  int (*offset)(DType t);
  // y[r] = row r · x (+ bias[r]) for rows r < nrows of one token, x a
  // single-token QActs (n == 1). Streams each row once, in order. For Q4_0
  // weights x.q is in group order, G = q4_group blocks to a group: the 32·G
  // bytes of blocks Gj .. Gj+G-1 hold elements 0..15 of each block in turn,
  // then elements 16..31 of each, which matches the nibbles of G weight
  // blocks loaded side by side (blocks past the last whole group stay in
  // element order).
  void (*int_gemv)(DType t, const uint8_t* w, size_t wrow, int64_t nrows, const detail::QActs& x, float* y,
                   const float* bias);
  int q4_group;
  // x8 weights, activations in plain block order: y[8g + r] (+ bias) for the
  // first `groups` row groups at w, one token (x.n == 1).
  void (*x8_gemv)(DType t, const uint8_t* w, int64_t groups, const detail::QActs& x, float* y, const float* bias);
  // Q4_0 x8 weights against nt <= x8_tokens tokens at once (x[t], y[t]):
  // each block's nibbles are unpacked once for all of them, and every token's
  // result is bit for bit what x8_gemv gives it alone. nullptr: one at a time.
  void (*q4_x8_gemv_n)(const uint8_t* w, int64_t groups, const detail::QActs* x, int nt, float* const* y,
                       const float* bias);
  int x8_tokens;  // at most kMaxX8GemvTokens
};

struct CpuKernels {
  // What simd_level() reports for this table: "avx2", "neon" or "scalar".
  const char* level;
  // Which blocked-matmul kernels fill the matmul slots: "avx512vnni",
  // "avx2", "avx512vnni+avx2" (prompts on one, decode on the other) or "none".
  const char* matmul;

  // --- per tensor type (backend_cpu.cpp get_rows, matmul.cpp vec_dot route,
  // the float panel packers). Each entry starts as the type's reference
  // (type_traits_reference) and keeps its name, block size and vec_dot_type;
  // to_float, from_float and vec_dot may be faster versions with identical
  // results for to_float / from_float and within float rounding for vec_dot.
  TypeTraits types[kCpuTypeSlots];
  // The entry for t; throws EngineError ("unknown tensor type id N") for a
  // type without one.
  const TypeTraits& type(DType t) const;

  // --- rows (backend_cpu.cpp): one row or a run of elements per call, the
  // caller splits the work over threads.
  // o = x · w / sqrt(mean(x²) + eps), one row of dim.
  void (*rmsnorm)(const float* x, const float* w, int64_t dim, float eps, float* o);
  // x += y, then o = rmsnorm(x) (the row is still in L1 for the norm).
  void (*add_rmsnorm)(float* x, const float* y, const float* w, int64_t dim, float eps, float* o);
  // o = (x - mean(x)) / sqrt(var(x) + eps) · w + b, one row of dim.
  void (*layernorm)(const float* x, const float* w, const float* b, int64_t dim, float eps, float* o);
  // x += y, then o = layernorm(x).
  void (*add_layernorm)(float* x, const float* y, const float* w, const float* b, int64_t dim, float eps, float* o);
  // Rotates the adjacent pairs of one head: (a, c) -> (a cos - c sin, a sin + c cos),
  // cs and sn holding each pair's cosine and sine twice (index 2i and 2i + 1).
  void (*rope_head)(float* v, const float* cs, const float* sn, int head_dim);
  // g[i] = silu(g[i]) · u[i] for n elements.
  void (*silu_mul)(float* g, const float* u, int64_t n);
  // x[i] = gelu(x[i]) (the erf form) for n elements.
  void (*gelu)(float* x, int64_t n);
  // x[i] += y[i] for n elements.
  void (*add)(float* x, const float* y, int64_t n);

  // --- attention inner loops (attention.cpp). They need head_dim to be a
  // multiple of attn_head_multiple; for other heads attention takes the
  // scalar table's.
  int attn_head_multiple;
  // C[r, 0..cols) = (c ? C[r, ·]·c[r] : 0) + Σ_k A[r·lda + k] · B[k·ldb + 0..cols), for r < rows;
  // cols is a multiple of 8.
  void (*attn_gemm)(const float* A, int lda, const float* B, int ldb, int kd, float* C, int ldc, int rows, int cols,
                    const float* c);
  // p[j] = e^(s[j] - m) for j < vis, 0 for vis <= j < nk (in place); returns Σ p.
  // s has room for nk rounded up to a multiple of 8.
  float (*attn_exp_row)(float* s, int vis, int nk, float m);
  // max of s[0..n), n >= 1.
  float (*attn_row_max)(const float* s, int n);
  // Decoding: one query head q (already scaled) against kAttnDecodeKeys keys
  // read straight from the cache, krows[j] + off / vrows[j] + off for key j
  // (F16 or F32, hd values); only keys j < nk count (the others' pointers are
  // valid rows, but masked). Brings the running max m, sum l and unnormalised
  // output o[hd] up to date.
  void (*attn_decode_tile)(const float* q, const uint8_t* const* krows, const uint8_t* const* vrows, size_t off,
                           bool f16, int hd, int nk, float* m, float* l, float* o);

  // --- blocked matmul (matmul.cpp): the prompt and decode sub-tables, which
  // may come from different sets (cpu_kernels.cpp). All nullptr (no SIMD set,
  // CXR_GEMM=off, forced scalar): every matmul takes the vec_dot route.
  PanelKernels panels;
  GemvKernels gemv;
};

// The table in force: the scalar one when forced (CXR_FORCE_SCALAR=1,
// force_scalar_kernels), else a test's override_cpu_kernels, else the fastest
// for this CPU. Cheap: callers fetch it once per op.
const CpuKernels& cpu_kernels();

// The scalar table: reference kernels only, no blocked matmul.
const CpuKernels& cpu_kernels_scalar();

// Instruction-set levels a table can be built for.
enum class CpuIsa { Scalar, Avx2, Avx512, Neon };
// The table of one level on its own (Avx512: the AVX-512 matmul kernels for
// prompts and decode alike, with the AVX2 kernels elsewhere), or nullptr when
// this CPU cannot run it. For tests that try every kernel set the CPU has.
const CpuKernels* cpu_kernels_for(CpuIsa isa);

// k without its blocked-matmul kernels: every matmul then takes the vec_dot route.
CpuKernels without_blocked_matmul(CpuKernels k);

// For tests: cpu_kernels() returns *k (nullptr: its own choice again) unless
// the scalar kernels are forced. k must outlive the override. Not
// thread-safe, like force_scalar_kernels().
void override_cpu_kernels(const CpuKernels* k);

// Name of the SIMD level cpu_kernels() runs: "avx2", "neon" or "scalar".
const char* simd_level();

// Forces the scalar kernels (for tests and for comparing speed). Not thread-safe:
// call before any inference.
void force_scalar_kernels(bool on);

}  // namespace cxr
