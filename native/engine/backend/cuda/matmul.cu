// matmul.cu - y = x · Wᵀ for every weight type: the decode GEMV (dp4a for the
// quantized types) and the tensor-core prefill kernels.
//
// Weights stay in the file's block layout on the device (uploaded once), so
// the kernels read each byte of a decode step's weights exactly once. The
// arithmetic of every block is in quant_math.h and tested on the host; the
// fragment maps and tile split are in mma_layout.h (likewise tested).
#include <cuda_fp16.h>

#include "backend/cuda/device.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/mma_layout.h"

namespace cxr {
namespace cuda {
namespace {

constexpr bool is_quant(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K || t == DType::Q6_K;
}

// --- activations -> block_a8 -----------------------------------------------------

__global__ void quantize_a8_kernel(const float* x, block_a8* out, int64_t nblocks) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b < nblocks) quantize_a8(x + b * kA8, out + b);
}

// --- decode: one warp per weight row ---------------------------------------------

// The dot of 32-element piece j of a weight row with one activation block.
template <DType T>
__device__ __forceinline__ float piece_dot(const uint8_t* row, int j, const block_a8& a) {
  if constexpr (T == DType::Q8_0) return dot_q8_0_a8(reinterpret_cast<const block_q8_0*>(row)[j], a);
  if constexpr (T == DType::Q4_0) return dot_q4_0_a8(reinterpret_cast<const block_q4_0*>(row)[j], a);
  if constexpr (T == DType::Q4_K) return dot_q4_K_a8(reinterpret_cast<const block_q4_K*>(row)[j / 8], j % 8, a);
  if constexpr (T == DType::Q6_K) return dot_q6_K_a8(reinterpret_cast<const block_q6_K*>(row)[j / 8], j % 8, a);
  return 0.0f;
}

// y[t, r] for t < N: lanes take the row's 32-element pieces in turn, so a
// warp's loads cover one contiguous stretch of the row per step.
template <DType T, int N>
__global__ void gemv_quant_kernel(const uint8_t* W, size_t rb, int64_t rows, int nb, const block_a8* A, float* y,
                                  const float* bias) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const uint8_t* row = W + r * rb;
  float acc[N];
#pragma unroll
  for (int t = 0; t < N; ++t) acc[t] = 0.0f;
  for (int j = lane; j < nb; j += 32) {
#pragma unroll
    for (int t = 0; t < N; ++t) acc[t] += piece_dot<T>(row, j, A[t * static_cast<int64_t>(nb) + j]);
  }
#pragma unroll
  for (int t = 0; t < N; ++t) {
    const float v = warp_sum(acc[t]);
    if (lane == 0) y[t * rows + r] = v + (bias ? bias[r] : 0.0f);
  }
}

// Float weights: lanes take pairs of columns in turn.
template <DType T, int N>
__global__ void gemv_float_kernel(const uint8_t* W, size_t rb, int64_t rows, int64_t cols, const float* x, float* y,
                                  const float* bias) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const uint8_t* row = W + r * rb;
  float acc[N];
#pragma unroll
  for (int t = 0; t < N; ++t) acc[t] = 0.0f;
  for (int64_t c = lane; c < cols; c += 32) {
    const float w = weight_element<T>(row, c);
#pragma unroll
    for (int t = 0; t < N; ++t) acc[t] += w * x[t * cols + c];
  }
#pragma unroll
  for (int t = 0; t < N; ++t) {
    const float v = warp_sum(acc[t]);
    if (lane == 0) y[t * rows + r] = v + (bias ? bias[r] : 0.0f);
  }
}

constexpr int kGemvWarps = 4;

template <DType T, int N>
void launch_gemv(cudaStream_t s, const void* W, int64_t rows, int64_t cols, const float* x, float* y,
                 const float* bias, const block_a8* a8) {
  const dim3 grid(static_cast<unsigned>((rows + kGemvWarps - 1) / kGemvWarps)), block(32 * kGemvWarps);
  if constexpr (is_quant(T))
    gemv_quant_kernel<T, N><<<grid, block, 0, s>>>(static_cast<const uint8_t*>(W), dtype_row_bytes(T, cols), rows,
                                                  static_cast<int>(cols / 32), a8, y, bias);
  else
    gemv_float_kernel<T, N><<<grid, block, 0, s>>>(static_cast<const uint8_t*>(W), dtype_row_bytes(T, cols), rows, cols, x,
                                                  y, bias);
}

template <DType T>
void gemv(cudaStream_t s, const void* W, int64_t rows, int64_t cols, const float* x, int64_t n, float* y,
          const float* bias, const block_a8* a8) {
  switch (n) {
    case 1: launch_gemv<T, 1>(s, W, rows, cols, x, y, bias, a8); break;
    case 2: launch_gemv<T, 2>(s, W, rows, cols, x, y, bias, a8); break;
    case 3: launch_gemv<T, 3>(s, W, rows, cols, x, y, bias, a8); break;
    case 4: launch_gemv<T, 4>(s, W, rows, cols, x, y, bias, a8); break;
    case 5: launch_gemv<T, 5>(s, W, rows, cols, x, y, bias, a8); break;
    case 6: launch_gemv<T, 6>(s, W, rows, cols, x, y, bias, a8); break;
    case 7: launch_gemv<T, 7>(s, W, rows, cols, x, y, bias, a8); break;
    default: launch_gemv<T, 8>(s, W, rows, cols, x, y, bias, a8); break;
  }
}

// --- prefill, int8 tensor cores (Q8_0, Q4_0) ---------------------------------------
// Block tile kTileM features x kTileN tokens, K in steps of kS8Chunk quant
// blocks. Per quant block each warp forms int32 tile products, then adds them
// into float accumulators scaled by the weight's and the token's block scales.

template <DType T>
__device__ __forceinline__ int32_t weight_s8_word(const uint8_t* row, int blk, int w) {
  if constexpr (T == DType::Q8_0) return q8_0_word(reinterpret_cast<const block_q8_0*>(row)[blk], w);
  else return q4_0_word(reinterpret_cast<const block_q4_0*>(row)[blk], w);
}

template <DType T>
__device__ __forceinline__ float weight_block_scale(const uint8_t* row, int blk) {
  if constexpr (T == DType::Q8_0) return half_to_float(reinterpret_cast<const block_q8_0*>(row)[blk].d);
  else return half_to_float(reinterpret_cast<const block_q4_0*>(row)[blk].d);
}

template <DType T>
__global__ void __launch_bounds__(kWarps * 32) mma_s8_kernel(const uint8_t* W, size_t rb, int64_t rows, int nb,
                                                              const block_a8* A, int64_t n, float* y,
                                                              const float* bias) {
  __shared__ __align__(16) uint8_t sa[kTileM * kS8Stride];
  __shared__ __align__(16) uint8_t sb[kTileN * kS8Stride];
  __shared__ float sad[kTileM][kS8Chunk], sbd[kTileN][kS8Chunk];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t row0 = blockIdx.x * static_cast<int64_t>(kTileM), tok0 = blockIdx.y * static_cast<int64_t>(kTileN);

  float acc[kMmaM][kMmaN][4] = {};
  for (int kb0 = 0; kb0 < nb; kb0 += kS8Chunk) {
    // Stage kS8Chunk quant blocks of 64 weight rows and 64 tokens as int8 rows.
    for (int p = tid; p < kTileM * kS8Chunk; p += kWarps * 32) {
      const int r = p / kS8Chunk, kb = p % kS8Chunk, blk = kb0 + kb;
      const bool ok = row0 + r < rows && blk < nb;
      const uint8_t* row = W + (row0 + r) * rb;
      uint32_t* dst = reinterpret_cast<uint32_t*>(sa + r * kS8Stride + 32 * kb);
#pragma unroll
      for (int w = 0; w < 8; ++w) dst[w] = ok ? static_cast<uint32_t>(weight_s8_word<T>(row, blk, w)) : 0u;
      sad[r][kb] = ok ? weight_block_scale<T>(row, blk) : 0.0f;
    }
    for (int p = tid; p < kTileN * kS8Chunk; p += kWarps * 32) {
      const int t = p / kS8Chunk, kb = p % kS8Chunk, blk = kb0 + kb;
      const bool ok = tok0 + t < n && blk < nb;
      const block_a8* a = A + (tok0 + t) * nb + blk;
      uint32_t* dst = reinterpret_cast<uint32_t*>(sb + t * kS8Stride + 32 * kb);
#pragma unroll
      for (int w = 0; w < 8; ++w) dst[w] = ok ? static_cast<uint32_t>(a8_word(*a, w)) : 0u;
      sbd[t][kb] = ok ? a->d : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kb = 0; kb < kS8Chunk; ++kb) {
      int32_t ci[kMmaM][kMmaN][4] = {};
      uint32_t fa[kMmaM][4], fb[kMmaN][2];
#pragma unroll
      for (int mi = 0; mi < kMmaM; ++mi) {
        const Coord o = warp_mma_origin(warp, mi, 0);
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const Coord l = load_a_s8(lane, r);
          fa[mi][r] = reinterpret_cast<const uint32_t*>(sa + (o.row + l.row) * kS8Stride + 32 * kb)[l.col];
        }
      }
#pragma unroll
      for (int nj = 0; nj < kMmaN; ++nj) {
        const Coord o = warp_mma_origin(warp, 0, nj);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const Coord l = load_b_s8(lane, r);
          fb[nj][r] = reinterpret_cast<const uint32_t*>(sb + (o.col + l.row) * kS8Stride + 32 * kb)[l.col];
        }
      }
#pragma unroll
      for (int mi = 0; mi < kMmaM; ++mi)
#pragma unroll
        for (int nj = 0; nj < kMmaN; ++nj) mma_s8_16x8x32(ci[mi][nj], fa[mi], fb[nj]);
#pragma unroll
      for (int mi = 0; mi < kMmaM; ++mi)
#pragma unroll
        for (int nj = 0; nj < kMmaN; ++nj)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const Coord c = tile_c(warp, lane, mi, nj, i);
            acc[mi][nj][i] += static_cast<float>(ci[mi][nj][i]) * (sad[c.row][kb] * sbd[c.col][kb]);
          }
    }
    __syncthreads();
  }
#pragma unroll
  for (int mi = 0; mi < kMmaM; ++mi)
#pragma unroll
    for (int nj = 0; nj < kMmaN; ++nj)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const Coord c = tile_c(warp, lane, mi, nj, i);
        const int64_t r = row0 + c.row, t = tok0 + c.col;
        if (r < rows && t < n) y[t * rows + r] = acc[mi][nj][i] + (bias ? bias[r] : 0.0f);
      }
}

// --- prefill, f16 tensor cores (F16, BF16, Q4_K, Q6_K) ------------------------------
// The weight tile is dequantized to f16 in shared memory (BF16 values beyond
// f16's range saturate: weights never come near 65504), activations are
// rounded to f16, products accumulate in f32.

template <DType T>
__global__ void __launch_bounds__(kWarps * 32) mma_f16_kernel(const uint8_t* W, size_t rb, int64_t rows,
                                                               int64_t cols, const float* x, int64_t n, float* y,
                                                               const float* bias) {
  __shared__ __align__(16) uint8_t sa[kTileM * kF16Stride];
  __shared__ __align__(16) uint8_t sb[kTileN * kF16Stride];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t row0 = blockIdx.x * static_cast<int64_t>(kTileM), tok0 = blockIdx.y * static_cast<int64_t>(kTileN);
  constexpr int kPer = kTileM * kF16Chunk / (kWarps * 32);  // elements each thread stages per tile (32)

  float acc[kMmaM][kMmaN][4] = {};
  for (int64_t k0 = 0; k0 < cols; k0 += kF16Chunk) {
    {
      const int r = tid / (kF16Chunk / kPer), kk = (tid % (kF16Chunk / kPer)) * kPer;
      __half* dst = reinterpret_cast<__half*>(sa + r * kF16Stride) + kk;
      const bool okr = row0 + r < rows;
      const uint8_t* row = W + (row0 + r) * rb;
      for (int e = 0; e < kPer; ++e) {
        const int64_t k = k0 + kk + e;
        float v = okr && k < cols ? weight_element<T>(row, k) : 0.0f;
        v = fminf(fmaxf(v, -65504.0f), 65504.0f);
        dst[e] = __float2half_rn(v);
      }
      const int t = r;
      __half* db = reinterpret_cast<__half*>(sb + t * kF16Stride) + kk;
      const bool okt = tok0 + t < n;
      const float* xr = x + (tok0 + t) * cols;
      for (int e = 0; e < kPer; ++e) {
        const int64_t k = k0 + kk + e;
        db[e] = __float2half_rn(okt && k < cols ? xr[k] : 0.0f);
      }
    }
    __syncthreads();
#pragma unroll
    for (int ks = 0; ks < kF16Chunk / 16; ++ks) {
      uint32_t fa[kMmaM][4], fb[kMmaN][2];
#pragma unroll
      for (int mi = 0; mi < kMmaM; ++mi) {
        const Coord o = warp_mma_origin(warp, mi, 0);
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const Coord l = load_a_f16(lane, r);
          fa[mi][r] = reinterpret_cast<const uint32_t*>(sa + (o.row + l.row) * kF16Stride + 32 * ks)[l.col];
        }
      }
#pragma unroll
      for (int nj = 0; nj < kMmaN; ++nj) {
        const Coord o = warp_mma_origin(warp, 0, nj);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const Coord l = load_b_f16(lane, r);
          fb[nj][r] = reinterpret_cast<const uint32_t*>(sb + (o.col + l.row) * kF16Stride + 32 * ks)[l.col];
        }
      }
#pragma unroll
      for (int mi = 0; mi < kMmaM; ++mi)
#pragma unroll
        for (int nj = 0; nj < kMmaN; ++nj) mma_f16_16x8x16(acc[mi][nj], fa[mi], fb[nj]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int mi = 0; mi < kMmaM; ++mi)
#pragma unroll
    for (int nj = 0; nj < kMmaN; ++nj)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const Coord c = tile_c(warp, lane, mi, nj, i);
        const int64_t r = row0 + c.row, t = tok0 + c.col;
        if (r < rows && t < n) y[t * rows + r] = acc[mi][nj][i] + (bias ? bias[r] : 0.0f);
      }
}

struct MatmulCall {
  cudaStream_t s;
  const void* W;
  int64_t rows, cols;
  const float* x;
  int64_t n;
  float* y;
  const float* bias;
  block_a8* a8;
  bool tiles;  // prompt rows: the tensor-core path whatever n is

  template <DType T>
  void operator()() const {
    // Activations as int8 blocks: for the dp4a GEMV and the int8 tensor-core
    // kernel (the f16 one reads the floats).
    const bool gemv_path = n <= kGemvRows && !tiles;
    if (is_quant(T) && (gemv_path || T == DType::Q8_0 || T == DType::Q4_0)) {
      const int64_t nblocks = n * cols / kA8;
      quantize_a8_kernel<<<grid_for(nblocks), kThreads, 0, s>>>(x, a8, nblocks);
    }
    if (gemv_path) {
      gemv<T>(s, W, rows, cols, x, n, y, bias, a8);
      return;
    }
    const dim3 grid(static_cast<unsigned>((rows + kTileM - 1) / kTileM), static_cast<unsigned>((n + kTileN - 1) / kTileN));
    if constexpr (T == DType::Q8_0 || T == DType::Q4_0) {
      mma_s8_kernel<T><<<grid, kWarps * 32, 0, s>>>(static_cast<const uint8_t*>(W), dtype_row_bytes(T, cols), rows,
                                                  static_cast<int>(cols / 32), a8, n, y, bias);
    } else if constexpr (T == DType::F32) {
      // F32 matrices are rare (small projections of some conversions): the
      // GEMV in chunks keeps their full precision.
      for (int64_t t = 0; t < n; t += kGemvRows)
        gemv<T>(s, W, rows, cols, x + t * cols, n - t < kGemvRows ? n - t : kGemvRows, y + t * rows, bias, nullptr);
    } else {
      mma_f16_kernel<T><<<grid, kWarps * 32, 0, s>>>(static_cast<const uint8_t*>(W), dtype_row_bytes(T, cols), rows, cols,
                                                   x, n, y, bias);
    }
  }
};

}  // namespace

bool matmul_supports(DType type, int64_t cols) {
  switch (type) {
    case DType::F32:
    case DType::F16:
    case DType::BF16: return cols > 0;
    case DType::Q8_0:
    case DType::Q4_0: return cols > 0 && cols % 32 == 0;
    case DType::Q4_K:
    case DType::Q6_K: return cols > 0 && cols % 256 == 0;
    default: return false;
  }
}

void matmul(cudaStream_t s, DType type, const void* W, int64_t rows, int64_t cols, const float* x, int64_t n,
            float* y, const float* bias, block_a8* a8, bool tiles) {
  dispatch_weight_type(type, MatmulCall{s, W, rows, cols, x, n, y, bias, a8, tiles});
}

}  // namespace cuda
}  // namespace cxr
