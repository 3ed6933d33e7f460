// row_math.h - the per-element and per-row arithmetic of the small CUDA ops:
// RMSNorm and LayerNorm statistics (reduced in parallel by the kernels, so the
// partial sums must merge exactly like a sequential pass), the RoPE rotation of
// one pair, SiLU·up and exact GELU.
#pragma once
#include <cmath>

#include "backend/cuda/hd.h"

namespace cxr {
namespace cuda {

// 1 / sqrt(mean(x²) + eps) from the row's Σ x².
CXR_HD float rms_scale(float sum_sq, int dim, float eps) {
  return 1.0f / sqrtf(sum_sq / static_cast<float>(dim) + eps);
}

// Mean and variance of a row in parallel pieces (Chan et al.'s merge of
// Welford states): count n, mean, and M2 = Σ (x - mean)². Merging in any tree
// order gives the two-pass result to rounding, without the cancellation of
// Σx² - (Σx)²/n on rows with a large mean (LayerNorm inputs of the ViT).
struct MeanVar {
  float n = 0, mean = 0, m2 = 0;
};

CXR_HD MeanVar meanvar_add(MeanVar s, float x) {
  s.n += 1.0f;
  const float d = x - s.mean;
  s.mean += d / s.n;
  s.m2 += d * (x - s.mean);
  return s;
}

CXR_HD MeanVar meanvar_merge(MeanVar a, MeanVar b) {
  if (b.n == 0) return a;
  if (a.n == 0) return b;
  MeanVar r;
  r.n = a.n + b.n;
  const float d = b.mean - a.mean;
  r.mean = a.mean + d * (b.n / r.n);
  r.m2 = a.m2 + b.m2 + d * d * (a.n * b.n / r.n);
  return r;
}

CXR_HD float layernorm_scale(const MeanVar& s, float eps) { return 1.0f / sqrtf(s.m2 / s.n + eps); }

// The rotation of pair i of a head at position pos: inv_freq = theta^(-2i/head_dim)
// is rounded to float once (the kernels read it from a table made on the host),
// the angle pos·inv_freq is formed and its cosine taken in double, as the CPU
// backend and the PyTorch reference do: at 4096 positions a float angle would
// be off by ~2e-4 rad.
CXR_HD void rope_pair(float* a, float* b, long long pos, float inv_freq) {
  const double ang = static_cast<double>(pos) * static_cast<double>(inv_freq);
  const float c = static_cast<float>(cos(ang)), s = static_cast<float>(sin(ang));
  const float x = *a, y = *b;
  *a = x * c - y * s;
  *b = x * s + y * c;
}

CXR_HD float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

CXR_HD float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

}  // namespace cuda
}  // namespace cxr
