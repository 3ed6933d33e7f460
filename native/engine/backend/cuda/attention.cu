// attention.cu - flash attention: softmax(q kᵀ · scale) v over a KV cache in
// F32 or F16, with the running softmax of online_softmax.h and no [n, n]
// score buffer.
//
// Prompt and vision (n > kDecodeRows): a block takes kRowsPerBlock query rows
// of one head (a warp each) and walks the keys kKeyTile at a time, staged in
// shared memory once for all its rows; a lane scores one key of the tile and
// owns head_dim/32 output dimensions. Query heads that share a KV head (GQA)
// read the same K/V rows.
// Decoding (n <= kDecodeRows): too few rows to fill the GPU, so the keys are
// split among blocks (split-K); each writes a partial state (m, l, o) and a
// second kernel merges them with softmax_merge.
#include <cuda_fp16.h>

#include "backend/cuda/device.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/online_softmax.h"

namespace cxr {
namespace cuda {
namespace {

constexpr int kKeyTile = 32;       // keys per step (one per lane)
constexpr int kRowsPerBlock = 8;   // query rows (warps) per block in the prompt kernel
constexpr int kDecodeRows = 4;     // at most this many query rows take the split-K path
constexpr int kSplitKeys = 256;    // keys per split when decoding
constexpr int kMaxSplits = 128;

// The cache row of key position `key`: the position itself, or cells[key]
// when a sequence's positions are scattered over a shared cache.
__device__ __forceinline__ int64_t kv_row(const AttentionLaunch& a, int64_t key) { return a.cells ? a.cells[key] : key; }

__device__ __forceinline__ float kv_at(const void* p, bool f16, int64_t i) {
  return f16 ? half_to_float(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
}

template <int HDP>  // head_dim <= 32 * HDP
__global__ void __launch_bounds__(kRowsPerBlock * 32) flash_prompt_kernel(AttentionLaunch a) {
  constexpr int kMaxD = 32 * HDP;
  __shared__ float sk[kKeyTile][kMaxD + 1];  // +1: lane j reads row j, a different bank each
  __shared__ float sv[kKeyTile][kMaxD];
  __shared__ float sq[kRowsPerBlock][kMaxD];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, hd = a.head_dim;
  const int h = blockIdx.y, kvh = h / (a.n_heads / a.n_kv_heads);
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + warp;
  const int64_t q_stride = static_cast<int64_t>(a.n_heads) * hd, kv_stride = static_cast<int64_t>(a.n_kv_heads) * hd;
  const bool active = r < a.n;
  const int64_t vis = active ? visible_keys(a.causal, a.pos0, r, a.n_kv) : 0;
  // the block's last row sees the most keys
  const int64_t r_last = min(a.n - 1, blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + kRowsPerBlock - 1);
  const int64_t block_vis = visible_keys(a.causal, a.pos0, r_last, a.n_kv);

  for (int d = lane; d < kMaxD; d += 32) sq[warp][d] = active && d < hd ? a.q[r * q_stride + h * hd + d] * a.scale : 0.0f;
  float o[HDP];
#pragma unroll
  for (int i = 0; i < HDP; ++i) o[i] = 0.0f;
  SoftmaxState st;

  for (int64_t k0 = 0; k0 < block_vis; k0 += kKeyTile) {
    __syncthreads();  // the previous tile is consumed (and sq is written, first time round)
    for (int e = threadIdx.x; e < kKeyTile * hd; e += blockDim.x) {
      const int j = e / hd, d = e % hd;
      const int64_t key = k0 + j;
      const bool ok = key < block_vis;
      const int64_t at = ok ? kv_row(a, key) * kv_stride + kvh * hd + d : 0;
      sk[j][d] = ok ? kv_at(a.k, a.kv_f16, at) : 0.0f;
      sv[j][d] = ok ? kv_at(a.v, a.kv_f16, at) : 0.0f;
    }
    __syncthreads();
    if (!active || k0 >= vis) continue;
    float s = 0.0f;
    for (int d = 0; d < hd; ++d) s += sq[warp][d] * sk[lane][d];
    const bool seen = k0 + lane < vis;
    const float tmax = warp_max(seen ? s : kNoScore);
    const float c = softmax_rescale(st, tmax);
    const float p = seen ? fast_exp(s - st.m) : 0.0f;
    st.l += warp_sum(p);
#pragma unroll
    for (int i = 0; i < HDP; ++i) o[i] *= c;
    const int nj = vis - k0 < kKeyTile ? static_cast<int>(vis - k0) : kKeyTile;
    for (int j = 0; j < nj; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
      for (int i = 0; i < HDP; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) o[i] += pj * sv[j][d];
      }
    }
  }
  if (!active) return;
  const float inv = st.l > 0 ? 1.0f / st.l : 0.0f;
#pragma unroll
  for (int i = 0; i < HDP; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) a.out[r * q_stride + h * hd + d] = o[i] * inv;
  }
}

// One partial state of the split-K decode: m, l, then o[head_dim].
struct Partial {
  static __host__ __device__ size_t floats(int hd) { return 2 + static_cast<size_t>(hd); }
};

// grid (n_heads, splits, n): block = 4 warps over the split's keys, a lane
// per key; the warps' states merge in shared memory into one partial.
template <int HDP>
__global__ void __launch_bounds__(128) flash_decode_kernel(AttentionLaunch a, int splits, float* part) {
  constexpr int kMaxD = 32 * HDP, kW = 4;
  __shared__ float sq[kMaxD];
  __shared__ float so[kW][kMaxD];
  __shared__ float sm[kW], sl[kW];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, hd = a.head_dim;
  const int h = blockIdx.x, split = blockIdx.y;
  const int64_t r = blockIdx.z;
  const int kvh = h / (a.n_heads / a.n_kv_heads);
  const int64_t q_stride = static_cast<int64_t>(a.n_heads) * hd, kv_stride = static_cast<int64_t>(a.n_kv_heads) * hd;
  const int64_t vis = visible_keys(a.causal, a.pos0, r, a.n_kv);
  const int64_t lo = split * static_cast<int64_t>(kSplitKeys);
  const int64_t hi = min(vis, lo + kSplitKeys);

  for (int d = threadIdx.x; d < kMaxD; d += blockDim.x) sq[d] = d < hd ? a.q[r * q_stride + h * hd + d] * a.scale : 0.0f;
  __syncthreads();
  float o[HDP];
#pragma unroll
  for (int i = 0; i < HDP; ++i) o[i] = 0.0f;
  SoftmaxState st;
  for (int64_t k0 = lo + warp * kKeyTile; k0 < hi; k0 += kW * kKeyTile) {
    const int64_t key = k0 + lane;
    const bool seen = key < hi;
    float s = 0.0f;
    if (seen) {
      const int64_t base = kv_row(a, key) * kv_stride + kvh * hd;
      for (int d = 0; d < hd; ++d) s += sq[d] * kv_at(a.k, a.kv_f16, base + d);
    }
    const float c = softmax_rescale(st, warp_max(seen ? s : kNoScore));
    const float p = seen ? fast_exp(s - st.m) : 0.0f;
    st.l += warp_sum(p);
#pragma unroll
    for (int i = 0; i < HDP; ++i) o[i] *= c;
    const int nj = hi - k0 < kKeyTile ? static_cast<int>(hi - k0) : kKeyTile;
    for (int j = 0; j < nj; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, j);
      const int64_t base = kv_row(a, k0 + j) * kv_stride + kvh * hd;
#pragma unroll
      for (int i = 0; i < HDP; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) o[i] += pj * kv_at(a.v, a.kv_f16, base + d);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < HDP; ++i) so[warp][lane + 32 * i] = o[i];
  if (lane == 0) {
    sm[warp] = st.m;
    sl[warp] = st.l;
  }
  __syncthreads();
  if (warp != 0) return;
  SoftmaxState acc{sm[0], sl[0]};
  float merged[HDP];
#pragma unroll
  for (int i = 0; i < HDP; ++i) merged[i] = so[0][lane + 32 * i];
  for (int w = 1; w < kW; ++w) {
    float ow[HDP];
#pragma unroll
    for (int i = 0; i < HDP; ++i) ow[i] = so[w][lane + 32 * i];
    softmax_merge(acc, merged, SoftmaxState{sm[w], sl[w]}, ow, HDP);
  }
  float* dst = part + ((r * a.n_heads + h) * splits + split) * Partial::floats(hd);
  if (lane == 0) {
    dst[0] = acc.m;
    dst[1] = acc.l;
  }
#pragma unroll
  for (int i = 0; i < HDP; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) dst[2 + d] = merged[i];
  }
}

// grid (n_heads, n): one warp merges a row's splits and normalises.
template <int HDP>
__global__ void flash_merge_kernel(AttentionLaunch a, int splits, const float* part) {
  const int lane = threadIdx.x, h = blockIdx.x, hd = a.head_dim;
  const int64_t r = blockIdx.y;
  const float* src = part + (r * a.n_heads + h) * splits * Partial::floats(hd);
  SoftmaxState acc;
  float o[HDP];
#pragma unroll
  for (int i = 0; i < HDP; ++i) o[i] = 0.0f;
  for (int sp = 0; sp < splits; ++sp) {
    const float* p = src + sp * Partial::floats(hd);
    float ob[HDP];
#pragma unroll
    for (int i = 0; i < HDP; ++i) {
      const int d = lane + 32 * i;
      ob[i] = d < hd ? p[2 + d] : 0.0f;
    }
    softmax_merge(acc, o, SoftmaxState{p[0], p[1]}, ob, HDP);
  }
  const float inv = acc.l > 0 ? 1.0f / acc.l : 0.0f;
  const int64_t q_stride = static_cast<int64_t>(a.n_heads) * hd;
#pragma unroll
  for (int i = 0; i < HDP; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) a.out[r * q_stride + h * hd + d] = o[i] * inv;
  }
}

int splits_for(int64_t n_kv) {
  const int64_t s = (n_kv + kSplitKeys - 1) / kSplitKeys;
  return static_cast<int>(s < 1 ? 1 : (s > kMaxSplits ? kMaxSplits : s));
}

template <int HDP>
void launch(cudaStream_t s, const AttentionLaunch& a, void* scratch) {
  if (a.n <= kDecodeRows) {
    // Splits cover the keys the last row sees; each split handles kSplitKeys
    // of them, so with kMaxSplits the cache may hold kMaxSplits * kSplitKeys.
    const int splits = splits_for(a.n_kv);
    float* part = static_cast<float*>(scratch);
    flash_decode_kernel<HDP><<<dim3(a.n_heads, splits, static_cast<unsigned>(a.n)), 128, 0, s>>>(a, splits, part);
    flash_merge_kernel<HDP><<<dim3(a.n_heads, static_cast<unsigned>(a.n)), 32, 0, s>>>(a, splits, part);
    return;
  }
  const dim3 grid(static_cast<unsigned>((a.n + kRowsPerBlock - 1) / kRowsPerBlock), a.n_heads);
  flash_prompt_kernel<HDP><<<grid, kRowsPerBlock * 32, 0, s>>>(a);
}

}  // namespace

size_t attention_scratch_bytes(int64_t n, int n_heads, int head_dim, int64_t n_kv) {
  if (n > kDecodeRows) return 0;
  return static_cast<size_t>(n) * n_heads * splits_for(n_kv) * Partial::floats(head_dim) * sizeof(float);
}

void attention(cudaStream_t s, const AttentionLaunch& a, void* scratch) {
  if (a.head_dim <= 32) launch<1>(s, a, scratch);
  else if (a.head_dim <= 64) launch<2>(s, a, scratch);
  else launch<4>(s, a, scratch);  // head_dim <= kMaxHeadDim, checked by the backend
}

}  // namespace cuda
}  // namespace cxr
