// quants.cpp - scalar reference kernels and weight quantizers.
//
// The scalar kernels here are the definition of correct: the SIMD files are
// tested against them. They favour clarity over speed, except that the integer
// dot products keep ggml's order of work (integer sums per block, then one float
// multiply) so the SIMD versions can match them closely.
#include "types/quants.h"

#include <cstdlib>
#include <cmath>
#include <cstring>
#include <string>

#include "types/error.h"
#include "types/quant_blocks.h"

namespace cxr {

// ---------------------------------------------------------------------------
// fp16 / bf16

namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

}  // namespace

uint16_t fp32_to_fp16(float f) {
  const uint32_t u = bits_of(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  const uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) {
    if (a == 0x7f800000u) return sign | 0x7c00;  // infinity
    // NaN: keep the top payload bits and force the quiet bit so it stays a NaN.
    return static_cast<uint16_t>(sign | 0x7e00 | ((a >> 13) & 0x3ff));
  }
  // 65520 is halfway between 65504 (largest half) and 65536; ties go to even,
  // which here is infinity.
  if (a >= 0x477ff000u) return sign | 0x7c00;
  if (a < 0x38800000u) {
    // Result is a subnormal (or zero). Adding 0.5 puts the value in [0.5, 1)
    // where a float's spacing is 2^-24, exactly a half subnormal's unit, so the
    // FPU's own round-to-nearest-even does the rounding.
    const float r = float_of(a) + 0.5f;
    return static_cast<uint16_t>(sign | (bits_of(r) - 0x3f000000u));
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped mantissa
  // bits to nearest even. A carry out of the mantissa correctly bumps the exponent.
  const uint32_t odd = (a >> 13) & 1;
  const uint32_t r = a - (112u << 23) + 0xfffu + odd;
  return static_cast<uint16_t>(sign | (r >> 13));
}

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in a float.
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 31) return float_of(sign | 0x7f800000u | (mant << 13));  // inf / nan
  return float_of(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t fp32_to_bf16(float f) {
  const uint32_t u = bits_of(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    // NaN: truncating could clear every payload bit left and make it infinity.
    return static_cast<uint16_t>((u >> 16) | 0x40);
  }
  // Round to nearest even on the 16 dropped bits; overflow rounds to infinity.
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

float bf16_to_fp32(uint16_t h) { return float_of(static_cast<uint32_t>(h) << 16); }

// ---------------------------------------------------------------------------
// Scalar reference kernels

namespace {

// Round to nearest, ties to even, independent of the FPU rounding mode. Valid
// for |v| < 2^22, which every caller guarantees by clamping first.
inline int round_even(float v) {
  const float magic = 12582912.0f;  // 1.5 * 2^23: forces rounding at the units bit
  return static_cast<int>((v + magic) - magic);
}

// Clamps to [lo, hi] before rounding so huge or NaN inputs cannot overflow.
inline int round_clamp(float v, int lo, int hi) {
  // Written as comparisons, not fmin/fmax, which may be library calls; NaN -> lo.
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  v = !(v >= flo) ? flo : (v > fhi ? fhi : v);
  return round_even(v);
}

// The (scale, min) pair of Q4_K sub-block j, unpacked from the 12 packed bytes.
inline void q4k_scale_min(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// The 6-bit value (0..63) of element e (0..255) of a Q6_K block.
inline int q6k_quant(const block_q6_K& b, int e) {
  const int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
  const uint8_t lo = b.ql[64 * h + l + (k & 1) * 32];
  const int low4 = (k < 2) ? (lo & 15) : (lo >> 4);
  const int high2 = (b.qh[32 * h + l] >> (2 * k)) & 3;
  return low4 | (high2 << 4);
}

// --- F32 -------------------------------------------------------------------

void f32_to_float(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void f32_from_float(const float* src, void* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

// The float dots accumulate in double: the reference should be the most accurate
// answer, so the SIMD versions are judged against the truth, not against one
// particular float summation order.
void f32_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const float* x = static_cast<const float*>(vx);
  const float* y = static_cast<const float*>(vy);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * y[i];
  *s = static_cast<float>(sum);
}

// --- F16 / BF16 ------------------------------------------------------------

void f16_to_float(const void* src, float* dst, int64_t n) {
  const uint16_t* x = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(x[i]);
}

void f16_from_float(const float* src, void* dst, int64_t n) {
  uint16_t* y = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(src[i]);
}

void f16_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const uint16_t* x = static_cast<const uint16_t*>(vx);
  const float* y = static_cast<const float*>(vy);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(fp16_to_fp32(x[i])) * y[i];
  *s = static_cast<float>(sum);
}

void bf16_to_float(const void* src, float* dst, int64_t n) {
  const uint16_t* x = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(x[i]);
}

void bf16_from_float(const float* src, void* dst, int64_t n) {
  uint16_t* y = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_bf16(src[i]);
}

void bf16_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const uint16_t* x = static_cast<const uint16_t*>(vx);
  const float* y = static_cast<const float*>(vy);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(bf16_to_fp32(x[i])) * y[i];
  *s = static_cast<float>(sum);
}

// --- Q8_0 ------------------------------------------------------------------

void q8_0_to_float(const void* src, float* dst, int64_t n) {
  const block_q8_0* x = static_cast<const block_q8_0*>(src);
  for (int64_t i = 0; i < n / QK8_0; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < QK8_0; ++j) dst[i * QK8_0 + j] = x[i].qs[j] * d;
  }
}

// Round half away from zero (roundf), as ggml's reference Q8_0 quantizer does.
void q8_0_from_float(const float* src, void* dst, int64_t n) {
  block_q8_0* y = static_cast<block_q8_0*>(dst);
  for (int64_t i = 0; i < n / QK8_0; ++i) {
    const float* x = src + i * QK8_0;
    float amax = 0;
    for (int j = 0; j < QK8_0; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  }
}

void q8_0_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const block_q8_0* x = static_cast<const block_q8_0*>(vx);
  const block_q8_0* y = static_cast<const block_q8_0*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / QK8_0; ++i) {
    int32_t sumi = 0;
    for (int j = 0; j < QK8_0; ++j) sumi += x[i].qs[j] * y[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  *s = sum;
}

// --- Q4_0 ------------------------------------------------------------------

void q4_0_to_float(const void* src, float* dst, int64_t n) {
  const block_q4_0* x = static_cast<const block_q4_0*>(src);
  for (int64_t i = 0; i < n / QK4_0; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    float* out = dst + i * QK4_0;
    for (int j = 0; j < QK4_0 / 2; ++j) {
      out[j] = ((x[i].qs[j] & 15) - 8) * d;
      out[j + QK4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

// The element of largest magnitude maps to -8 (the end of the range with the
// extra level), so the other side still reaches +7; then round to nearest.
void q4_0_from_float(const float* src, void* dst, int64_t n) {
  block_q4_0* y = static_cast<block_q4_0*>(dst);
  for (int64_t i = 0; i < n / QK4_0; ++i) {
    const float* x = src + i * QK4_0;
    float amax = 0, max = 0;
    for (int j = 0; j < QK4_0; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      // x*id + 8 lies in [0, 16]; adding 0.5 and truncating rounds halves up.
      int q0 = static_cast<int>(x[j] * id + 8.5f);
      int q1 = static_cast<int>(x[j + QK4_0 / 2] * id + 8.5f);
      q0 = q0 < 0 ? 0 : (q0 > 15 ? 15 : q0);
      q1 = q1 < 0 ? 0 : (q1 > 15 ? 15 : q1);
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void q4_0_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const block_q4_0* x = static_cast<const block_q4_0*>(vx);
  const block_q8_0* y = static_cast<const block_q8_0*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / QK4_0; ++i) {
    int32_t sumi = 0;
    for (int j = 0; j < QK4_0 / 2; ++j) {
      sumi += ((x[i].qs[j] & 15) - 8) * y[i].qs[j];
      sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK4_0 / 2];
    }
    sum += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  *s = sum;
}

// --- Q8_K ------------------------------------------------------------------

void q8_K_to_float(const void* src, float* dst, int64_t n) {
  const block_q8_K* x = static_cast<const block_q8_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i)
    for (int j = 0; j < QK_K; ++j) dst[i * QK_K + j] = x[i].qs[j] * x[i].d;
}

// Symmetric: amax maps to 127, ties to even. The scale stays fp32 because
// activations can be large and this type never goes to disk.
void q8_K_from_float(const float* src, void* dst, int64_t n) {
  block_q8_K* y = static_cast<block_q8_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float* x = src + i * QK_K;
    float amax = 0;
    for (int j = 0; j < QK_K; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    if (amax == 0) {
      std::memset(&y[i], 0, sizeof(block_q8_K));
      continue;
    }
    const float iscale = 127.0f / amax;
    for (int j = 0; j < QK_K; ++j) y[i].qs[j] = static_cast<int8_t>(round_clamp(iscale * x[j], -127, 127));
    for (int b = 0; b < QK_K / 16; ++b) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += y[i].qs[16 * b + j];
      y[i].bsums[b] = static_cast<int16_t>(sum);
    }
    y[i].d = 1.0f / iscale;
  }
}

void q8_K_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const block_q8_K* x = static_cast<const block_q8_K*>(vx);
  const block_q8_K* y = static_cast<const block_q8_K*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int32_t sumi = 0;
    for (int j = 0; j < QK_K; ++j) sumi += x[i].qs[j] * y[i].qs[j];
    sum += static_cast<float>(sumi) * (x[i].d * y[i].d);
  }
  *s = sum;
}

// --- Q4_K ------------------------------------------------------------------

void q4_K_to_float(const void* src, float* dst, int64_t n) {
  const block_q4_K* x = static_cast<const block_q4_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const float dmin = fp16_to_fp32(x[i].dmin);
    float* out = dst + i * QK_K;
    for (int c = 0; c < QK_K / 64; ++c) {
      int sc0, m0, sc1, m1;
      q4k_scale_min(2 * c, x[i].scales, &sc0, &m0);
      q4k_scale_min(2 * c + 1, x[i].scales, &sc1, &m1);
      const uint8_t* q = x[i].qs + 32 * c;
      for (int l = 0; l < 32; ++l) {
        out[64 * c + l] = d * sc0 * (q[l] & 15) - dmin * m0;
        out[64 * c + 32 + l] = d * sc1 * (q[l] >> 4) - dmin * m1;
      }
    }
  }
}

// x . y = sum_j d*sc_j * sum(q4*q8) * dy  -  dmin * sum_j m_j * (sum of y's q8 in
// sub-block j) * dy; the second sum comes from y's bsums.
void q4_K_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const block_q4_K* x = static_cast<const block_q4_K*>(vx);
  const block_q8_K* y = static_cast<const block_q8_K*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int32_t sumi = 0, summ = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
      int sc, m;
      q4k_scale_min(j, x[i].scales, &sc, &m);
      const uint8_t* q = x[i].qs + 32 * (j / 2);
      const int8_t* q8 = y[i].qs + 32 * j;
      const int shift = (j & 1) * 4;
      int32_t dot = 0;
      for (int l = 0; l < 32; ++l) dot += ((q[l] >> shift) & 15) * q8[l];
      sumi += sc * dot;
      summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    sum += y[i].d * fp16_to_fp32(x[i].d) * static_cast<float>(sumi) -
           y[i].d * fp16_to_fp32(x[i].dmin) * static_cast<float>(summ);
  }
  *s = sum;
}

// --- Q6_K ------------------------------------------------------------------

void q6_K_to_float(const void* src, float* dst, int64_t n) {
  const block_q6_K* x = static_cast<const block_q6_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    for (int e = 0; e < QK_K; ++e)
      dst[i * QK_K + e] = d * x[i].scales[e / 16] * (q6k_quant(x[i], e) - 32);
  }
}

void q6_K_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const block_q6_K* x = static_cast<const block_q6_K*>(vx);
  const block_q8_K* y = static_cast<const block_q8_K*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int32_t sumi = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      int32_t dot = 0;
      for (int l = 0; l < 16; ++l) dot += (q6k_quant(x[i], 16 * j + l) - 32) * y[i].qs[16 * j + l];
      sumi += x[i].scales[j] * dot;
    }
    sum += y[i].d * fp16_to_fp32(x[i].d) * static_cast<float>(sumi);
  }
  *s = sum;
}

// ---------------------------------------------------------------------------
// Weight quantizers for the k-quants
//
// Both search, per sub-block, for the scale (and for Q4_K the min) that minimise
// a weighted squared error: try a fan of scales around the plain max-based one,
// round with each, refit the scale by least squares for the levels it produced,
// keep the best, then polish by re-rounding with the winner. The weights favour
// elements of large magnitude (w = block RMS + |x|): those dominate a matmul's
// output, so their relative error matters more than that of near-zero weights.

// Weighted sums of a sub-block that do not depend on the chosen levels.
struct FixedSums {
  double sw = 0, sx = 0, sxx = 0;
  FixedSums(const float* x, const float* w, int n) {
    for (int i = 0; i < n; ++i) {
      sw += w[i];
      sx += static_cast<double>(w[i]) * x[i];
      sxx += static_cast<double>(w[i]) * x[i] * x[i];
    }
  }
};

// Weighted least-squares fit of x ~= s*L + b with b <= 0 (Q4_K stores -b as an
// unsigned min), from the level sums sl = sum wL, sll = sum wL^2, slx = sum wLx.
// Returns the weighted squared error in closed form, or +inf if unusable.
double solve_affine(const FixedSums& f, double sl, double sll, double slx, float* s_out, float* b_out) {
  const double det = f.sw * sll - sl * sl;
  double s = 0, b = 0;
  if (det > 0) {
    s = (f.sw * slx - sl * f.sx) / det;
    b = (sll * f.sx - sl * slx) / det;
  }
  if (det <= 0 || b > 0) {
    b = 0;
    s = sll > 0 ? slx / sll : 0;
  }
  if (!(s > 0)) return INFINITY;
  *s_out = static_cast<float>(s);
  *b_out = static_cast<float>(b);
  // sum w (sL + b - x)^2 expanded.
  return f.sxx + s * s * sll + b * b * f.sw + 2 * s * b * sl - 2 * s * slx - 2 * b * f.sx;
}

// Rounds x to levels 0..nmax with q = (x - offset) * iscale, fits (s, b) to those
// levels and returns the fit's error.
double try_affine(const float* x, const float* w, int n, int nmax, const FixedSums& f, float offset, float iscale,
                  float* s, float* b) {
  double sl = 0, sll = 0, slx = 0;
  for (int i = 0; i < n; ++i) {
    const int l = round_clamp(iscale * (x[i] - offset), 0, nmax);
    sl += w[i] * l;
    sll += w[i] * l * l;
    slx += static_cast<double>(w[i]) * l * x[i];
  }
  return solve_affine(f, sl, sll, slx, s, b);
}

// Finds scale > 0 and min >= 0 such that x ~= scale*q - min, q in 0..nmax.
void search_scale_min(const float* x, const float* w, int n, int nmax, float* scale, float* min) {
  float xmin = 0, xmax = x[0];
  for (int i = 0; i < n; ++i) {
    xmin = std::fmin(xmin, x[i]);
    xmax = std::fmax(xmax, x[i]);
  }
  if (!(xmax > xmin)) {  // all equal and <= 0: the min alone represents them
    *scale = 0;
    *min = -xmin;
    return;
  }
  const FixedSums f(x, w, n);
  double best_err = INFINITY;
  float best_s = (xmax - xmin) / nmax, best_b = xmin;
  // Candidate ranges nmax-1 .. nmax+1 levels wide across [xmin, xmax], step 0.1.
  for (int k = 0; k <= 20; ++k) {
    float s, b;
    const double err = try_affine(x, w, n, nmax, f, xmin, (nmax - 1 + 0.1f * k) / (xmax - xmin), &s, &b);
    if (err < best_err) {
      best_err = err;
      best_s = s;
      best_b = b;
    }
  }
  // Polish: re-round against the best fit and refit while that helps.
  for (int iter = 0; iter < 3; ++iter) {
    float s, b;
    const double err = try_affine(x, w, n, nmax, f, best_b, 1.0f / best_s, &s, &b);
    if (!(err < best_err)) break;
    best_err = err;
    best_s = s;
    best_b = b;
  }
  *scale = best_s;
  *min = -best_b;
}

// Finds a signed scale such that x ~= scale*q, q in -nmax..nmax-1. The element of
// largest magnitude goes towards -nmax, the side with the extra level.
float search_scale_symmetric(const float* x, const float* w, int n, int nmax) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax == 0) return 0;
  const FixedSums f(x, w, n);
  double best_err = INFINITY;
  float best_s = max / -nmax;
  // Rounds with iscale, fits s = sum wLx / sum wL^2; error = sxx - slx^2 / sll.
  auto try_scale = [&](float iscale) {
    double slx = 0, sll = 0;
    for (int i = 0; i < n; ++i) {
      const int l = round_clamp(iscale * x[i], -nmax, nmax - 1);
      slx += static_cast<double>(w[i]) * l * x[i];
      sll += w[i] * l * l;
    }
    if (sll <= 0) return false;
    const double err = f.sxx - slx * slx / sll;
    if (!(err < best_err)) return false;
    best_err = err;
    best_s = static_cast<float>(slx / sll);
    return true;
  };
  for (int k = -9; k <= 9; ++k) try_scale(-(nmax + 0.1f * k) / max);
  for (int iter = 0; iter < 3 && best_s != 0; ++iter)
    if (!try_scale(1.0f / best_s)) break;
  return best_s;
}

void block_weights(const float* x, float* w) {
  double sum2 = 0;
  for (int i = 0; i < QK_K; ++i) sum2 += static_cast<double>(x[i]) * x[i];
  const float rms = static_cast<float>(std::sqrt(sum2 / QK_K));
  for (int i = 0; i < QK_K; ++i) w[i] = rms + std::fabs(x[i]);
}

void q4_K_from_float(const float* src, void* dst, int64_t n) {
  block_q4_K* y = static_cast<block_q4_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float* x = src + i * QK_K;
    float w[QK_K], scales[8], mins[8];
    block_weights(x, w);
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      search_scale_min(x + 32 * j, w + 32 * j, 32, 15, &scales[j], &mins[j]);
      max_scale = std::fmax(max_scale, scales[j]);
      max_min = std::fmax(max_min, mins[j]);
    }
    // Second level: each scale and min becomes a 6-bit multiple of d / dmin.
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; ++j) {
      ls[j] = static_cast<uint8_t>(round_clamp(inv_scale * scales[j], 0, 63));
      lm[j] = static_cast<uint8_t>(round_clamp(inv_min * mins[j], 0, 63));
    }
    std::memset(y[i].scales, 0, sizeof y[i].scales);
    for (int j = 0; j < 8; ++j) {
      if (j < 4) {
        y[i].scales[j] |= ls[j];
        y[i].scales[j + 4] |= lm[j];
      } else {
        y[i].scales[j + 4] = static_cast<uint8_t>((ls[j] & 15) | ((lm[j] & 15) << 4));
        y[i].scales[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
        y[i].scales[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
      }
    }
    y[i].d = fp32_to_fp16(max_scale / 63.0f);
    y[i].dmin = fp32_to_fp16(max_min / 63.0f);
    // Re-round every element against the scales as stored, fp16 rounding included.
    const float d = fp16_to_fp32(y[i].d), dmin = fp16_to_fp32(y[i].dmin);
    uint8_t L[QK_K];
    for (int j = 0; j < 8; ++j) {
      const float s = d * ls[j], m = dmin * lm[j];
      for (int l = 0; l < 32; ++l)
        L[32 * j + l] = s > 0 ? static_cast<uint8_t>(round_clamp((x[32 * j + l] + m) / s, 0, 15)) : 0;
    }
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        y[i].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
  }
}

void q6_K_from_float(const float* src, void* dst, int64_t n) {
  block_q6_K* y = static_cast<block_q6_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float* x = src + i * QK_K;
    float w[QK_K], scales[16];
    block_weights(x, w);
    float amax = 0, max = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = search_scale_symmetric(x + 16 * j, w + 16 * j, 16, 32);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max = scales[j];
      }
    }
    if (amax == 0) {
      std::memset(&y[i], 0, sizeof(block_q6_K));  // d = 0: every element decodes to 0
      continue;
    }
    // Second level: signed 8-bit multiples of d; the largest scale maps to -128.
    const float iscale = -128.0f / max;
    for (int j = 0; j < 16; ++j) y[i].scales[j] = static_cast<int8_t>(round_clamp(iscale * scales[j], -128, 127));
    y[i].d = fp32_to_fp16(1.0f / iscale);
    const float d = fp16_to_fp32(y[i].d);
    uint8_t L[QK_K];
    for (int j = 0; j < 16; ++j) {
      const float s = d * y[i].scales[j];
      for (int l = 0; l < 16; ++l)
        L[16 * j + l] = static_cast<uint8_t>((s != 0 ? round_clamp(x[16 * j + l] / s, -32, 31) : 0) + 32);
    }
    for (int h = 0; h < 2; ++h) {
      uint8_t* ql = y[i].ql + 64 * h;
      uint8_t* qh = y[i].qh + 32 * h;
      const uint8_t* q = L + 128 * h;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((q[l] & 15) | ((q[l + 64] & 15) << 4));
        ql[l + 32] = static_cast<uint8_t>((q[l + 32] & 15) | ((q[l + 96] & 15) << 4));
        qh[l] = static_cast<uint8_t>((q[l] >> 4) | ((q[l + 32] >> 4) << 2) | ((q[l + 64] >> 4) << 4) |
                                     ((q[l + 96] >> 4) << 6));
      }
    }
  }
}

// ---------------------------------------------------------------------------
// The reference table

constexpr int kNumTypes = 8;

int slot_of(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q8_0: return 3;
    case DType::Q4_K: return 4;
    case DType::Q6_K: return 5;
    case DType::Q8_K: return 6;
    case DType::BF16: return 7;
  }
  return -1;
}

TypeTraits make(DType t, bool quantized, void (*to_float)(const void*, float*, int64_t),
                void (*from_float)(const float*, void*, int64_t), DType vec_dot_type,
                void (*vec_dot)(int64_t, float*, const void*, const void*)) {
  return TypeTraits{t,          dtype_name(t), dtype_block_size(t), dtype_block_bytes(t), quantized, to_float,
                    from_float, vec_dot_type,  vec_dot};
}

struct Table {
  TypeTraits reference[kNumTypes];

  Table() {
    reference[0] = make(DType::F32, false, f32_to_float, f32_from_float, DType::F32, f32_vec_dot);
    reference[1] = make(DType::F16, false, f16_to_float, f16_from_float, DType::F32, f16_vec_dot);
    reference[2] = make(DType::Q4_0, true, q4_0_to_float, q4_0_from_float, DType::Q8_0, q4_0_vec_dot);
    reference[3] = make(DType::Q8_0, true, q8_0_to_float, q8_0_from_float, DType::Q8_0, q8_0_vec_dot);
    reference[4] = make(DType::Q4_K, true, q4_K_to_float, q4_K_from_float, DType::Q8_K, q4_K_vec_dot);
    reference[5] = make(DType::Q6_K, true, q6_K_to_float, q6_K_from_float, DType::Q8_K, q6_K_vec_dot);
    reference[6] = make(DType::Q8_K, true, q8_K_to_float, q8_K_from_float, DType::Q8_K, q8_K_vec_dot);
    reference[7] = make(DType::BF16, false, bf16_to_float, bf16_from_float, DType::F32, bf16_vec_dot);
  }
};

const Table& table() {
  static const Table t;  // built once, thread-safely, on first use
  return t;
}

int checked_slot(DType t) {
  const int s = slot_of(t);
  if (s < 0)
    throw EngineError(err::kArgument, "unknown tensor type id " + std::to_string(static_cast<uint32_t>(t)));
  return s;
}

}  // namespace

const TypeTraits& type_traits_reference(DType t) { return table().reference[checked_slot(t)]; }

size_t quantize_weights(DType t, const float* src, void* dst, int64_t nrows, int64_t ncols) {
  const int s = checked_slot(t);
  if (t == DType::Q8_K)
    throw EngineError(err::kArgument, "quantize_weights: q8_K is an activation type, not a weight type");
  const int64_t bs = dtype_block_size(t);
  if (nrows < 0 || ncols <= 0 || ncols % bs != 0)
    throw EngineError(err::kArgument, "quantize_weights: shape [" + std::to_string(nrows) + ", " +
                                          std::to_string(ncols) + "] does not fit " + dtype_name(t) +
                                          " (columns must be a positive multiple of " + std::to_string(bs) + ")");
  if (nrows > 0 && (!src || !dst)) throw EngineError(err::kArgument, "quantize_weights: null buffer");
  // Always the reference quantizers: a file's bytes must not depend on the CPU
  // that wrote it.
  const TypeTraits& tr = table().reference[s];
  const size_t row_bytes = dtype_row_bytes(t, ncols);
  for (int64_t r = 0; r < nrows; ++r)
    tr.from_float(src + r * ncols, static_cast<uint8_t*>(dst) + static_cast<size_t>(r) * row_bytes, ncols);
  return static_cast<size_t>(nrows) * row_bytes;
}

}  // namespace cxr
