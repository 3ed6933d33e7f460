// rope.cu - rotary position embedding in place, one thread per rotated pair;
// the rotation itself is rope_pair (row_math.h).
#include "backend/cuda/device.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/row_math.h"

namespace cxr {
namespace cuda {
namespace {

__global__ void rope_kernel(float* x, int64_t pairs, int n_heads, int head_dim, int64_t pos0, const float* inv_freq,
                            const int32_t* pos) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= pairs) return;
  const int half = head_dim / 2;
  const int i = static_cast<int>(p % half);
  const int64_t row = p / (static_cast<int64_t>(half) * n_heads);
  float* v = x + 2 * p;  // pairs are adjacent and rows are n_heads * head_dim wide
  rope_pair(v, v + 1, pos ? pos[row] : pos0 + row, inv_freq[i]);
}

}  // namespace

void rope(cudaStream_t s, float* x, int64_t n, int n_heads, int head_dim, int64_t pos0, const float* inv_freq,
          const int32_t* pos) {
  const int64_t pairs = n * n_heads * (head_dim / 2);
  rope_kernel<<<grid_for(pairs), kThreads, 0, s>>>(x, pairs, n_heads, head_dim, pos0, inv_freq, pos);
}

}  // namespace cuda
}  // namespace cxr
