// online_softmax.h - the running softmax of flash attention, as the CUDA
// attention kernels keep it per query row: the largest score m seen so far,
// the sum l of e^(s - m) and the output o = Σ e^(s - m)·v, unnormalised.
//
// A tile of scores s_j updates it with m' = max(m, max s_j), c = e^(m - m'),
// l = l·c + Σ e^(s_j - m'), o = o·c + Σ e^(s_j - m')·v_j; at the end out = o / l.
// Two states over disjoint key ranges merge the same way (split-K decoding).
// No [n, n] score matrix ever exists, whatever the sequence length.
#pragma once
#include <cmath>

#include "backend/cuda/hd.h"

namespace cxr {
namespace cuda {

// -inf stand-in that keeps e^(m - m') finite (0) before the first key.
constexpr float kNoScore = -3.0e38f;

CXR_HD float fast_exp(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x);
#else
  return std::exp(x);
#endif
}

struct SoftmaxState {
  float m = kNoScore;
  float l = 0.0f;
};

// Raises the running max to at least `tile_max`; returns the factor the old
// l and o must be multiplied by.
CXR_HD float softmax_rescale(SoftmaxState& st, float tile_max) {
  const float m_new = tile_max > st.m ? tile_max : st.m;
  const float c = fast_exp(st.m - m_new);
  st.m = m_new;
  st.l *= c;
  return c;
}

// Weight of one score under the current max (after softmax_rescale); adds it to l.
CXR_HD float softmax_weight(SoftmaxState& st, float s) {
  const float p = fast_exp(s - st.m);
  st.l += p;
  return p;
}

// Merges state b (with its unnormalised output ob[d]) into a (oa[d]).
CXR_HD void softmax_merge(SoftmaxState& a, float* oa, const SoftmaxState& b, const float* ob, int d) {
  const float m = a.m > b.m ? a.m : b.m;
  const float ca = fast_exp(a.m - m), cb = fast_exp(b.m - m);
  for (int i = 0; i < d; ++i) oa[i] = oa[i] * ca + ob[i] * cb;
  a.l = a.l * ca + b.l * cb;
  a.m = m;
}

// Number of keys query row r (of a chunk starting at position pos0) may see:
// causal rows see up to their own position, others all n_kv keys.
CXR_HD long long visible_keys(bool causal, long long pos0, long long r, long long n_kv) {
  if (!causal) return n_kv;
  const long long v = pos0 + r + 1;
  return v < n_kv ? v : n_kv;
}

}  // namespace cuda
}  // namespace cxr
