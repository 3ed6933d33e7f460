// norm.cu - RMSNorm and LayerNorm, optionally fused with the residual add
// before them (x += y, then normalise x). One block per row; the statistics
// are reduced with the merges of row_math.h.
#include "backend/cuda/device.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/row_math.h"

namespace cxr {
namespace cuda {
namespace {

__device__ float block_sum(float v, float* sh) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  float t = lane < static_cast<int>(blockDim.x / 32) ? sh[lane] : 0.0f;
  t = warp_sum(t);
  __syncthreads();
  return t;
}

__global__ void rmsnorm_kernel(float* x, const float* y, const float* w, int64_t dim, float eps, float* out) {
  __shared__ float sh[32];
  float* xr = x + blockIdx.x * dim;
  const float* yr = y ? y + blockIdx.x * dim : nullptr;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = xr[i];
    if (yr) xr[i] = v = v + yr[i];  // out may be y: this thread reads y[i] before it writes out[i]
    ss += v * v;
  }
  const float r = rms_scale(block_sum(ss, sh), static_cast<int>(dim), eps);
  float* o = out + blockIdx.x * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = xr[i] * r * w[i];
}

__device__ MeanVar shfl_meanvar(MeanVar s, int o) {
  MeanVar t;
  t.n = __shfl_xor_sync(0xffffffffu, s.n, o);
  t.mean = __shfl_xor_sync(0xffffffffu, s.mean, o);
  t.m2 = __shfl_xor_sync(0xffffffffu, s.m2, o);
  return t;
}

__global__ void layernorm_kernel(float* x, const float* y, const float* w, const float* b, int64_t dim, float eps,
                                 float* out) {
  __shared__ MeanVar sh[32];
  __shared__ MeanVar total;
  float* xr = x + blockIdx.x * dim;
  const float* yr = y ? y + blockIdx.x * dim : nullptr;
  MeanVar st;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = xr[i];
    if (yr) xr[i] = v = v + yr[i];
    st = meanvar_add(st, v);
  }
  for (int o = 16; o > 0; o >>= 1) st = meanvar_merge(st, shfl_meanvar(st, o));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) sh[warp] = st;
  __syncthreads();
  if (warp == 0) {
    MeanVar t = lane < static_cast<int>(blockDim.x / 32) ? sh[lane] : MeanVar{};
    for (int o = 16; o > 0; o >>= 1) t = meanvar_merge(t, shfl_meanvar(t, o));
    if (lane == 0) total = t;
  }
  __syncthreads();
  const float mean = total.mean, r = layernorm_scale(total, eps);
  float* o = out + blockIdx.x * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = (xr[i] - mean) * r * w[i] + b[i];
}

}  // namespace

void rmsnorm(cudaStream_t s, float* x, const float* y, const float* w, int64_t n, int64_t dim, float eps, float* out) {
  rmsnorm_kernel<<<static_cast<unsigned>(n), kThreads, 0, s>>>(x, y, w, dim, eps, out);
}

void layernorm(cudaStream_t s, float* x, const float* y, const float* w, const float* b, int64_t n, int64_t dim,
               float eps, float* out) {
  layernorm_kernel<<<static_cast<unsigned>(n), kThreads, 0, s>>>(x, y, w, b, dim, eps, out);
}

}  // namespace cuda
}  // namespace cxr
