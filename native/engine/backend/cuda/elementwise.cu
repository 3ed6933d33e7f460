// elementwise.cu - the small ops: SiLU·up, GELU, residual add, F16 KV stores,
// embedding rows, the vision tower's im2col and embedding adds, and the greedy
// sampler's argmax, so a decode step never waits on the host.
#include <cuda_fp16.h>

#include "backend/cuda/device.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/row_math.h"

namespace cxr {
namespace cuda {
namespace {

__global__ void silu_mul_kernel(float* g, const float* u, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) g[i] = silu_mul(g[i], u[i]);
}

__global__ void gelu_kernel(float* x, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = gelu_erf(x[i]);
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] += y[i];
}

// out = x + w[r % w_rows] (x null: the row of w), one thread per element.
__global__ void add_broadcast_kernel(float* out, const float* x, const float* w, int64_t w_rows, int64_t width,
                                     int64_t count) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const float v = w[((i / width) % w_rows) * width + i % width];
  out[i] = x ? x[i] + v : v;
}

// One thread per output element: patch p, element (ch, ky, kx) of it.
__global__ void im2col_kernel(const float* pixels, int64_t size, int patch, int64_t grid, int64_t row, int64_t count,
                              float* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const int64_t p = i / row, e = i % row, pp = static_cast<int64_t>(patch) * patch;
  const int64_t ch = e / pp, ky = (e % pp) / patch, kx = e % patch;
  const int64_t gy = p / grid, gx = p % grid;
  out[i] = pixels[(ch * size + gy * patch + ky) * size + gx * patch + kx];
}

__global__ void to_f16_kernel(const float* src, uint16_t* dst, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = float_to_half(src[i]);
}

__global__ void scatter_rows_kernel(const float* src, void* dst, bool f16, const int32_t* rows, int64_t width) {
  const float* s = src + blockIdx.x * width;
  const int64_t r = rows[blockIdx.x];
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
    if (f16) static_cast<uint16_t*>(dst)[r * width + c] = float_to_half(s[c]);
    else static_cast<float*>(dst)[r * width + c] = s[c];
  }
}

template <DType T>
__global__ void get_rows_kernel(const uint8_t* E, size_t rb, int64_t cols, const int32_t* ids, float* out) {
  const uint8_t* row = E + static_cast<int64_t>(ids[blockIdx.x]) * rb;
  float* o = out + blockIdx.x * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = weight_element<T>(row, c);
}

struct GetRows {
  cudaStream_t s;
  const void* E;
  int64_t cols;
  const int32_t* ids;
  int64_t n;
  float* out;
  template <DType T>
  void operator()() const {
    get_rows_kernel<T><<<static_cast<unsigned>(n), kThreads, 0, s>>>(static_cast<const uint8_t*>(E),
                                                                    dtype_row_bytes(T, cols), cols, ids, out);
  }
};

// One block per row; the first index wins ties, like the CPU sampler.
__global__ void argmax_kernel(const float* x, int64_t width, int32_t* out) {
  __shared__ float sv[32];
  __shared__ int32_t si[32];
  const float* row = x + blockIdx.x * width;
  float best = -INFINITY;
  int32_t bi = 0x7fffffff;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    const float v = row[i];
    if (v > best) {  // strided: a later i of the same thread never wins a tie
      best = v;
      bi = static_cast<int32_t>(i);
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > best || (ov == best && oi < bi)) {
      best = ov;
      bi = oi;
    }
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = bi;
  }
  __syncthreads();
  if (warp == 0) {
    best = lane < static_cast<int>(blockDim.x / 32) ? sv[lane] : -INFINITY;
    bi = lane < static_cast<int>(blockDim.x / 32) ? si[lane] : 0x7fffffff;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > best || (ov == best && oi < bi)) {
        best = ov;
        bi = oi;
      }
    }
    if (lane == 0) out[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;
  }
}

// One block per row, k rounds of a block-wide argmax that skips what earlier
// rounds took (k · width reads: the sampler's k is small next to the vocabulary).
__global__ void top_k_kernel(const float* x, int64_t width, int k, float* vals, int32_t* ids) {
  __shared__ float sv[32];
  __shared__ int32_t si[32];
  __shared__ float last_v;
  __shared__ int32_t last_i;
  const float* row = x + blockIdx.x * width;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // (v, i) ranks before (w, j) when v > w, or v == w and i < j; NaN is -inf.
  auto before = [](float v, int32_t i, float w, int32_t j) { return v > w || (v == w && i < j); };
  for (int round = 0; round < k; ++round) {
    float best = -INFINITY;
    int32_t bi = 0x7fffffff;
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
      float v = row[c];
      if (v != v) v = -INFINITY;
      const int32_t ci = static_cast<int32_t>(c);
      // only candidates ranked after the previous round's pick
      if (round > 0 && !before(last_v, last_i, v, ci)) continue;
      if (before(v, ci, best, bi)) {
        best = v;
        bi = ci;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (before(ov, oi, best, bi)) {
        best = ov;
        bi = oi;
      }
    }
    if (lane == 0) {
      sv[warp] = best;
      si[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
      best = lane < static_cast<int>(blockDim.x / 32) ? sv[lane] : -INFINITY;
      bi = lane < static_cast<int>(blockDim.x / 32) ? si[lane] : 0x7fffffff;
      for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, best, o);
        const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (before(ov, oi, best, bi)) {
          best = ov;
          bi = oi;
        }
      }
      if (lane == 0) {
        last_v = best;
        last_i = bi;
        vals[blockIdx.x * static_cast<int64_t>(k) + round] = best;
        ids[blockIdx.x * static_cast<int64_t>(k) + round] = bi == 0x7fffffff ? -1 : bi;
      }
    }
    __syncthreads();
  }
}

}  // namespace

void scatter_rows(cudaStream_t s, const float* src, void* dst, bool f16, const int32_t* rows, int64_t n, int64_t width) {
  scatter_rows_kernel<<<static_cast<unsigned>(n), kThreads, 0, s>>>(src, dst, f16, rows, width);
}

void top_k_rows(cudaStream_t s, const float* x, int64_t n, int64_t width, int k, float* vals, int32_t* ids) {
  top_k_kernel<<<static_cast<unsigned>(n), kThreads, 0, s>>>(x, width, k, vals, ids);
}

void silu_mul(cudaStream_t s, float* gate, const float* up, int64_t count) {
  silu_mul_kernel<<<grid_for(count), kThreads, 0, s>>>(gate, up, count);
}

void gelu(cudaStream_t s, float* x, int64_t count) { gelu_kernel<<<grid_for(count), kThreads, 0, s>>>(x, count); }

void add(cudaStream_t s, float* x, const float* y, int64_t count) {
  add_kernel<<<grid_for(count), kThreads, 0, s>>>(x, y, count);
}

void add_broadcast(cudaStream_t s, float* out, const float* x, const float* w, int64_t w_rows, int64_t width,
                   int64_t n) {
  const int64_t count = n * width;
  add_broadcast_kernel<<<grid_for(count), kThreads, 0, s>>>(out, x, w, w_rows, width, count);
}

void im2col(cudaStream_t s, const float* pixels, int channels, int64_t size, int patch, float* out) {
  const int64_t grid = size / patch, row = static_cast<int64_t>(channels) * patch * patch;
  const int64_t count = grid * grid * row;
  im2col_kernel<<<grid_for(count), kThreads, 0, s>>>(pixels, size, patch, grid, row, count, out);
}

void to_f16(cudaStream_t s, const float* src, uint16_t* dst, int64_t count) {
  to_f16_kernel<<<grid_for(count), kThreads, 0, s>>>(src, dst, count);
}

void get_rows(cudaStream_t s, DType type, const void* E, int64_t cols, const int32_t* ids, int64_t n, float* out) {
  dispatch_weight_type(type, GetRows{s, E, cols, ids, n, out});
}

void argmax_rows(cudaStream_t s, const float* x, int64_t n, int64_t width, int32_t* out) {
  argmax_kernel<<<static_cast<unsigned>(n), kThreads, 0, s>>>(x, width, out);
}

}  // namespace cuda
}  // namespace cxr
