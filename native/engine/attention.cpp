// attention.cpp - softmax(q kᵀ · scale) v on the CPU, over a KV cache in F32 or F16.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu_ops.h"
#include "quants.h"

namespace cxr {

void cpu_attention(ThreadPool& pool, const AttentionArgs& a) {
  // One task per (query row, head): a streaming ("online") softmax over the
  // keys, so no score matrix is ever stored, whatever the sequence length.
  const int64_t tasks = a.n * a.n_heads;
  const int group = a.n_heads / a.n_kv_heads;  // query heads sharing one KV head
  const int64_t kv_width = static_cast<int64_t>(a.n_kv_heads) * a.head_dim;
  const int64_t q_width = static_cast<int64_t>(a.n_heads) * a.head_dim;
  const TypeTraits& kt = type_traits(a.kv_type);
  const size_t esize = a.kv_type == DType::F32 ? 4 : 2;
  pool.parallel_for(tasks, 4, [&](int64_t b, int64_t e, int) {
    std::vector<float> acc(a.head_dim), vrow(a.head_dim);
    for (int64_t task = b; task < e; ++task) {
      const int64_t i = task / a.n_heads;
      const int h = static_cast<int>(task % a.n_heads);
      const int kvh = h / group;
      const float* q = a.q + i * q_width + static_cast<int64_t>(h) * a.head_dim;
      const int64_t visible = a.causal ? a.pos0 + i + 1 : a.n_kv;
      float m = -INFINITY, l = 0.0f;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t j = 0; j < visible; ++j) {
        const uint8_t* krow = static_cast<const uint8_t*>(a.k) + (j * kv_width + kvh * a.head_dim) * esize;
        const uint8_t* vr = static_cast<const uint8_t*>(a.v) + (j * kv_width + kvh * a.head_dim) * esize;
        float s;
        kt.vec_dot(a.head_dim, &s, krow, q);
        s *= a.scale;
        const float* vp;
        if (a.kv_type == DType::F32) {
          vp = reinterpret_cast<const float*>(vr);
        } else {
          kt.to_float(vr, vrow.data(), a.head_dim);
          vp = vrow.data();
        }
        if (s > m) {
          // New maximum: rescale what was accumulated so far.
          const float c = std::exp(m - s);
          l *= c;
          for (int d = 0; d < a.head_dim; ++d) acc[d] *= c;
          m = s;
        }
        const float p = std::exp(s - m);
        l += p;
        for (int d = 0; d < a.head_dim; ++d) acc[d] += p * vp[d];
      }
      float* o = a.out + i * q_width + static_cast<int64_t>(h) * a.head_dim;
      const float inv = l > 0 ? 1.0f / l : 0.0f;
      for (int d = 0; d < a.head_dim; ++d) o[d] = acc[d] * inv;
    }
  });
}

}  // namespace cxr
