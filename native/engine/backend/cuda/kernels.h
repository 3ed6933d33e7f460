// kernels.h - the host-side launchers of the CUDA kernels, one .cu file per
// op family (matmul.cu, attention.cu, norm.cu, rope.cu, elementwise.cu). Each
// enqueues on `s` and returns at once; the backend (backend_cuda.cu) owns the
// memory and decides nothing about kernels. Pointers are device memory.
#pragma once
#include <cuda_runtime.h>
#include <cstddef>
#include <cstdint>

#include "backend/cuda/quant_math.h"
#include "types/dtype.h"

namespace cxr {
namespace cuda {

// --- matmul.cu ---------------------------------------------------------------
// y[n, rows] = x[n, cols] · Wᵀ (+ bias[rows]). `a8` is scratch for the
// quantized activations (n * cols / 32 blocks) of the quantized types.
// Decode (n <= kGemvRows): one warp per weight row, each weight byte read once
// for all n rows, dp4a dots for the quantized types. Prefill: tensor cores
// (int8 mma for Q8_0/Q4_0, f16 mma after dequantizing for F16/BF16/Q4_K/Q6_K);
// F32 weights take the GEMV in chunks of kGemvRows. `tiles` forces the prefill
// path for any n (prompt rows of a batch: a row's result must not depend on
// how many rows came with it).
constexpr int kGemvRows = 8;
void matmul(cudaStream_t s, DType type, const void* W, int64_t rows, int64_t cols, const float* x, int64_t n,
            float* y, const float* bias, block_a8* a8, bool tiles = false);
// Whether the matmul kernels handle this type and width.
bool matmul_supports(DType type, int64_t cols);

// --- attention.cu -----------------------------------------------------------
struct AttentionLaunch {
  const float* q;  // [n, n_heads * head_dim]
  const void* k;   // [n_kv, n_kv_heads * head_dim], F32 or F16
  const void* v;
  bool kv_f16;
  float* out;      // [n, n_heads * head_dim]
  int64_t n, n_kv, pos0;
  int n_heads, n_kv_heads, head_dim;
  bool causal;
  float scale;
  const int32_t* cells = nullptr;  // device memory: cache row of each key position (null: the position)
};
// Bytes of scratch attention() needs for these shapes (split-K partials).
size_t attention_scratch_bytes(int64_t n, int n_heads, int head_dim, int64_t n_kv);
void attention(cudaStream_t s, const AttentionLaunch& a, void* scratch);
constexpr int kMaxHeadDim = 128;  // LLaMA-2 and ViT-L use 128 and 64

// --- norm.cu ----------------------------------------------------------------
// `y` may be null (no residual add); out may alias y.
void rmsnorm(cudaStream_t s, float* x, const float* y, const float* w, int64_t n, int64_t dim, float eps, float* out);
void layernorm(cudaStream_t s, float* x, const float* y, const float* w, const float* b, int64_t n, int64_t dim,
               float eps, float* out);

// --- rope.cu ----------------------------------------------------------------
// inv_freq[head_dim / 2] = theta^(-2i/head_dim), rounded to float on the host.
// Row r is at position pos0 + r, or pos[r] when pos (device memory) is given.
void rope(cudaStream_t s, float* x, int64_t n, int n_heads, int head_dim, int64_t pos0, const float* inv_freq,
          const int32_t* pos = nullptr);

// --- elementwise.cu ---------------------------------------------------------
void silu_mul(cudaStream_t s, float* gate, const float* up, int64_t count);
void gelu(cudaStream_t s, float* x, int64_t count);
void add(cudaStream_t s, float* x, const float* y, int64_t count);
void to_f16(cudaStream_t s, const float* src, uint16_t* dst, int64_t count);
// out[r, :] = x[r, :] + w[r % w_rows, :] for n rows of width (x null: the rows of w).
void add_broadcast(cudaStream_t s, float* out, const float* x, const float* w, int64_t w_rows, int64_t width,
                   int64_t n);
// pixels [channels, size, size] -> out [(size / patch)², channels * patch * patch] (backend.h's im2col).
void im2col(cudaStream_t s, const float* pixels, int channels, int64_t size, int patch, float* out);
// Row i of src ([n, width]) into row rows[i] of dst (F16 or F32); rows is device memory.
void scatter_rows(cudaStream_t s, const float* src, void* dst, bool f16, const int32_t* rows, int64_t n, int64_t width);
// out[i, :] = row ids[i] of E (type, cols wide), dequantized; ids are device memory.
void get_rows(cudaStream_t s, DType type, const void* E, int64_t cols, const int32_t* ids, int64_t n, float* out);
// Index of the largest value of each row of x [n, width] (first on ties).
void argmax_rows(cudaStream_t s, const float* x, int64_t n, int64_t width, int32_t* out);
// The k largest values of each row, best first, lower index first on ties;
// NaN counts as -inf. k <= kMaxTopK.
constexpr int kMaxTopK = 256;
void top_k_rows(cudaStream_t s, const float* x, int64_t n, int64_t width, int k, float* vals, int32_t* ids);

}  // namespace cuda
}  // namespace cxr
