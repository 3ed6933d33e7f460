// attention.cpp - softmax(q kᵀ · scale) v on the CPU, over a KV cache in F32 or F16.
//
// Flash-style tiling: a task takes one KV head and a block of query rows (for
// every query head sharing that KV head), walks the keys a tile of kKeys at a
// time and keeps a running ("online") softmax per query row: its maximum m, its
// sum l and the unnormalised output o. The only scores ever stored are one
// [rows, kKeys] tile, whatever the sequence length (a ViT-L pass has 1025 tokens
// x 16 heads). Per tile, for each query row that sees at least one of its keys:
//   s_j = scale · q·k_j                      (keys past the row's last are masked)
//   m'  = max(m, max_j s_j),  c = e^(m - m')
//   p_j = e^(s_j - m'),       l = l·c + Σ p_j,  o = o·c + Σ p_j v_j
// and at the end out = o / l.
//
// A prompt (n > 1) first repacks K and V of the visible keys into F32 tiles:
// K transposed ([head_dim, kKeys] per tile) and V as is ([kKeys, head_dim]), so
// both products of a tile are small matrix products with unit-stride rows that
// a register-tiled kernel runs near the FMA peak; every query block then reuses
// the packed tiles. Decoding (n = 1) reads each key once and is bound by memory:
// it splits the keys among the threads instead (see decode()).
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "types/quants.h"
#include "backend/cpu/x86/simd_avx2.h"

namespace cxr {
namespace {

constexpr int kKeys = 64;       // keys per tile (a multiple of 16)
constexpr int64_t kRows = 48;   // query positions per prefill task (a multiple of the kernel's 6 rows)
constexpr int kDecodeKeys = 8;  // keys per online-softmax step when decoding

// The inner loops, in a scalar and an AVX2 flavour (chosen once per call).
struct Kernels {
  // C[r, 0..cols) = (c ? C[r, ·]·c[r] : 0) + Σ_k A[r·lda + k] · B[k·ldb + 0..cols), for r < rows.
  // cols is a multiple of 8 for the AVX2 flavour.
  void (*gemm)(const float* A, int lda, const float* B, int ldb, int kd, float* C, int ldc, int rows, int cols,
               const float* c);
  // p[j] = e^(s[j] - m) for j < vis, 0 for vis <= j < nk (in place); returns Σ p.
  float (*exp_row)(float* s, int vis, int nk, float m);
  // max of s[0..n), n >= 1.
  float (*row_max)(const float* s, int n);
  void (*f16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  // Decoding: one query head q (already scaled) against kDecodeKeys keys read
  // straight from the cache, rows[j] + off for key j (F16 or F32, hd values);
  // only keys j < nk count (the others' pointers are valid rows, but masked).
  // Brings the running max m, sum l and unnormalised output o[hd] up to date.
  void (*decode_tile)(const float* q, const uint8_t* const* krows, const uint8_t* const* vrows, size_t off, bool f16,
                      int hd, int nk, float* m, float* l, float* o);
};

// --- scalar ---------------------------------------------------------------------

void gemm_scalar(const float* A, int lda, const float* B, int ldb, int kd, float* C, int ldc, int rows, int cols,
                 const float* c) {
  for (int r = 0; r < rows; ++r) {
    float* cr = C + r * ldc;
    for (int x = 0; x < cols; ++x) cr[x] = c ? cr[x] * c[r] : 0.0f;
    for (int k = 0; k < kd; ++k) {
      const float a = A[r * lda + k];
      const float* b = B + k * ldb;
      for (int x = 0; x < cols; ++x) cr[x] += a * b[x];
    }
  }
}

float exp_row_scalar(float* s, int vis, int nk, float m) {
  float sum = 0;
  for (int j = 0; j < vis; ++j) sum += (s[j] = std::exp(s[j] - m));
  for (int j = vis; j < nk; ++j) s[j] = 0;
  return sum;
}

float row_max_scalar(const float* s, int n) {
  float m = s[0];
  for (int j = 1; j < n; ++j) m = std::max(m, s[j]);
  return m;
}

void f16_to_f32_scalar(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

inline float kv_at(const uint8_t* row, bool f16, int d) {
  return f16 ? fp16_to_fp32(reinterpret_cast<const uint16_t*>(row)[d]) : reinterpret_cast<const float*>(row)[d];
}

void decode_tile_scalar(const float* q, const uint8_t* const* krows, const uint8_t* const* vrows, size_t off,
                        bool f16, int hd, int nk, float* m, float* l, float* o) {
  float s[kDecodeKeys];
  float mt = -INFINITY;
  for (int j = 0; j < nk; ++j) {
    float acc = 0;
    for (int d = 0; d < hd; ++d) acc += q[d] * kv_at(krows[j] + off, f16, d);
    s[j] = acc;
    mt = std::max(mt, acc);
  }
  const float mnew = std::max(*m, mt);
  const float c = *m == -INFINITY ? 0.0f : std::exp(*m - mnew);
  float sum = 0;
  for (int j = 0; j < nk; ++j) sum += (s[j] = std::exp(s[j] - mnew));
  *l = *l * c + sum;
  *m = mnew;
  for (int d = 0; d < hd; ++d) {
    float acc = o[d] * c;
    for (int j = 0; j < nk; ++j) acc += s[j] * kv_at(vrows[j] + off, f16, d);
    o[d] = acc;
  }
}

constexpr Kernels kScalar = {gemm_scalar, exp_row_scalar, row_max_scalar, f16_to_f32_scalar, decode_tile_scalar};

// --- AVX2 -------------------------------------------------------------------------
#if CXR_HAVE_AVX2_KERNELS

// An R x 8W block of C in R·W registers: per step k, W loads of B and R
// broadcasts of A feed R·W FMAs. R = 6, W = 2 uses 12 accumulators + 3 operands
// of the 16 ymm registers.
template <int R, int W>
CXR_AVX2 void gemm_tile(const float* A, int lda, const float* B, int ldb, int kd, float* C, int ldc,
                        const float* c) {
  // The loops over r and w must unroll fully so that acc lives in registers.
  __m256 acc[R][W];
  CXR_UNROLL for (int r = 0; r < R; ++r)
    CXR_UNROLL for (int w = 0; w < W; ++w)
      acc[r][w] = c ? _mm256_mul_ps(_mm256_loadu_ps(C + r * ldc + 8 * w), _mm256_set1_ps(c[r]))
                    : _mm256_setzero_ps();
  for (int k = 0; k < kd; ++k) {
    __m256 b[W];
    CXR_UNROLL for (int w = 0; w < W; ++w) b[w] = _mm256_loadu_ps(B + k * ldb + 8 * w);
    CXR_UNROLL for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
      CXR_UNROLL for (int w = 0; w < W; ++w) acc[r][w] = _mm256_fmadd_ps(a, b[w], acc[r][w]);
    }
  }
  CXR_UNROLL for (int r = 0; r < R; ++r)
    CXR_UNROLL for (int w = 0; w < W; ++w) _mm256_storeu_ps(C + r * ldc + 8 * w, acc[r][w]);
}

template <int R>
CXR_AVX2 void gemm_rows(const float* A, int lda, const float* B, int ldb, int kd, float* C, int ldc, int cols,
                        const float* c) {
  int x = 0;
  for (; x + 16 <= cols; x += 16) gemm_tile<R, 2>(A, lda, B + x, ldb, kd, C + x, ldc, c);
  if (x < cols) gemm_tile<R, 1>(A, lda, B + x, ldb, kd, C + x, ldc, c);
}

CXR_AVX2 void gemm_avx2(const float* A, int lda, const float* B, int ldb, int kd, float* C, int ldc, int rows,
                        int cols, const float* c) {
  int r = 0;
  for (; r + 6 <= rows; r += 6)
    gemm_rows<6>(A + r * lda, lda, B, ldb, kd, C + r * ldc, ldc, cols, c ? c + r : nullptr);
  const float* cr = c ? c + r : nullptr;
  A += r * lda;
  C += r * ldc;
  switch (rows - r) {
    case 5: gemm_rows<5>(A, lda, B, ldb, kd, C, ldc, cols, cr); break;
    case 4: gemm_rows<4>(A, lda, B, ldb, kd, C, ldc, cols, cr); break;
    case 3: gemm_rows<3>(A, lda, B, ldb, kd, C, ldc, cols, cr); break;
    case 2: gemm_rows<2>(A, lda, B, ldb, kd, C, ldc, cols, cr); break;
    case 1: gemm_rows<1>(A, lda, B, ldb, kd, C, ldc, cols, cr); break;
    default: break;
  }
}

// s has room for whole vectors up to its tile width (kKeys), so lanes past
// `vis` are computed, then zeroed before they are summed or stored.
CXR_AVX2 float exp_row_avx2(float* s, int vis, int nk, float m) {
  const __m256 mv = _mm256_set1_ps(m);
  __m256 sum = _mm256_setzero_ps();
  int j = 0;
  for (; j < vis; j += 8) {
    __m256 e = avx2::exp(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
    if (j + 8 > vis) e = _mm256_and_ps(e, avx2::first_lanes(vis - j));
    _mm256_storeu_ps(s + j, e);
    sum = _mm256_add_ps(sum, e);
  }
  for (; j < nk; j += 8) _mm256_storeu_ps(s + j, _mm256_setzero_ps());
  return avx2::hsum(sum);
}

CXR_AVX2 float row_max_avx2(const float* s, int n) {
  __m256 m = _mm256_set1_ps(-INFINITY);
  int j = 0;
  for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + j));
  float r = avx2::hmax(m);
  for (; j < n; ++j) r = std::max(r, s[j]);
  return r;
}

CXR_AVX2 void f16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n) { avx2::f16_to_f32(src, dst, n); }

CXR_AVX2 inline __m256 load_kv(const uint8_t* row, bool f16, int d) {
  return f16 ? _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * d)))
             : _mm256_loadu_ps(reinterpret_cast<const float*>(row) + d);
}

// Eight keys at a time: the eight dot products run side by side (one q load
// feeds eight FMAs) and are reduced together into one vector, lane j = key j;
// the output is then read and written once per tile, not once per key.
CXR_AVX2 void decode_tile_avx2(const float* q, const uint8_t* const* krows, const uint8_t* const* vrows, size_t off,
                               bool f16, int hd, int nk, float* m, float* l, float* o) {
  static_assert(kDecodeKeys == 8, "one lane per key");
  const uint8_t* k[8];
  CXR_UNROLL for (int j = 0; j < 8; ++j) k[j] = krows[j] + off;
  __m256 acc[8];
  CXR_UNROLL for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
  for (int d = 0; d < hd; d += 8) {
    const __m256 qv = _mm256_loadu_ps(q + d);
    CXR_UNROLL for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(qv, load_kv(k[j], f16, d), acc[j]);
  }
  // hadd twice leaves, per 128-bit half, the sums of four keys over that half
  // of their lanes; adding the halves crosswise finishes all eight.
  const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
  const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
  const __m256 live = avx2::first_lanes(nk);
  __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
  s = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, live);

  const float mnew = std::max(*m, avx2::hmax(s));
  const float c = *m == -INFINITY ? 0.0f : std::exp(*m - mnew);
  const __m256 p = _mm256_and_ps(avx2::exp(_mm256_sub_ps(s, _mm256_set1_ps(mnew))), live);
  *l = *l * c + avx2::hsum(p);
  *m = mnew;
  alignas(32) float pj[8];
  _mm256_store_ps(pj, p);

  const uint8_t* v[8];
  CXR_UNROLL for (int j = 0; j < 8; ++j) v[j] = vrows[j] + off;
  const __m256 cv = _mm256_set1_ps(c);
  int d = 0;
  for (; d + 32 <= hd; d += 32) {  // four accumulators of o at a time
    __m256 o0 = _mm256_mul_ps(_mm256_loadu_ps(o + d), cv), o1 = _mm256_mul_ps(_mm256_loadu_ps(o + d + 8), cv);
    __m256 o2 = _mm256_mul_ps(_mm256_loadu_ps(o + d + 16), cv), o3 = _mm256_mul_ps(_mm256_loadu_ps(o + d + 24), cv);
    for (int j = 0; j < nk; ++j) {
      const __m256 pb = _mm256_broadcast_ss(pj + j);
      o0 = _mm256_fmadd_ps(pb, load_kv(v[j], f16, d), o0);
      o1 = _mm256_fmadd_ps(pb, load_kv(v[j], f16, d + 8), o1);
      o2 = _mm256_fmadd_ps(pb, load_kv(v[j], f16, d + 16), o2);
      o3 = _mm256_fmadd_ps(pb, load_kv(v[j], f16, d + 24), o3);
    }
    _mm256_storeu_ps(o + d, o0);
    _mm256_storeu_ps(o + d + 8, o1);
    _mm256_storeu_ps(o + d + 16, o2);
    _mm256_storeu_ps(o + d + 24, o3);
  }
  for (; d < hd; d += 8) {
    __m256 o0 = _mm256_mul_ps(_mm256_loadu_ps(o + d), cv);
    for (int j = 0; j < nk; ++j) o0 = _mm256_fmadd_ps(_mm256_broadcast_ss(pj + j), load_kv(v[j], f16, d), o0);
    _mm256_storeu_ps(o + d, o0);
  }
}

constexpr Kernels kAvx2 = {gemm_avx2, exp_row_avx2, row_max_avx2, f16_to_f32_avx2, decode_tile_avx2};

#endif

// The online-softmax step for `rows` rows of scores s (row stride ld), each
// seeing its first vis[r] keys of nk: turns s into probabilities and brings the
// running max m and sum l up to date; c gets the factor for the old output.
void softmax_step(const Kernels& kern, float* s, int ld, int rows, const int* vis, int nk, float* m, float* l,
                  float* c) {
  for (int r = 0; r < rows; ++r) {
    float* sr = s + r * ld;
    const float mnew = std::max(m[r], kern.row_max(sr, vis[r]));
    c[r] = m[r] == -INFINITY ? 0.0f : std::exp(m[r] - mnew);
    l[r] = l[r] * c[r] + kern.exp_row(sr, vis[r], nk, mnew);
    m[r] = mnew;
  }
}

// One query position (decoding). Every key is read once, so the cost is
// memory traffic. Tasks split the keys, not the heads (the "split-K" of flash
// decoding): a task walks its share of the keys kDecodeKeys at a time and, for
// each query head, folds those keys into a running softmax; the shares are
// merged at the end. Within a tile the heads advance through the same few
// cache rows side by side, so every row is still read front to back once.
void decode(ThreadPool& pool, const AttentionArgs& a, const Kernels& kern) {
  const int hd = a.head_dim, H = a.n_heads, KVH = a.n_kv_heads;
  const int group = H / KVH;
  const size_t esize = a.kv_type == DType::F16 ? 2 : 4;
  const bool f16 = a.kv_type == DType::F16;
  const size_t row_bytes = static_cast<size_t>(KVH) * hd * esize;
  const int64_t n_keys = a.causal ? std::min(a.n_kv, a.pos0 + 1) : a.n_kv;
  // A few shares per thread for balance, none shorter than a few tiles.
  const int64_t shares = std::max<int64_t>(1, std::min<int64_t>(4 * pool.size(), n_keys / (8 * kDecodeKeys)));
  const int64_t per = (n_keys + shares - 1) / shares;
  // Per share and query head: unnormalised output [hd], running max, running sum.
  const int64_t stride = hd + 2;
  // Kept per calling thread across layers and tokens (a name, not a capture,
  // inside the lambda would mean the worker's own copy).
  thread_local std::vector<float> partial_buf;
  partial_buf.resize(static_cast<size_t>(shares) * H * stride);
  float* const partial = partial_buf.data();

  const uint8_t* kbase = static_cast<const uint8_t*>(a.k);
  const uint8_t* vbase = static_cast<const uint8_t*>(a.v);
  pool.parallel_for(shares, 1, [&](int64_t b, int64_t e, int) {
    thread_local std::vector<float> q;
    q.resize(static_cast<size_t>(H) * hd);
    for (int64_t i = 0; i < H * hd; ++i) q[i] = a.q[i] * a.scale;
    for (int64_t share = b; share < e; ++share) {
      float* part = partial + share * H * stride;  // [query head, stride]
      for (int h = 0; h < H; ++h) {
        std::fill_n(part + h * stride, hd, 0.0f);
        part[h * stride + hd] = -INFINITY;
        part[h * stride + hd + 1] = 0.0f;
      }
      const int64_t k0 = share * per, k1 = std::min(n_keys, k0 + per);
      for (int64_t j0 = k0; j0 < k1; j0 += kDecodeKeys) {
        const int nk = static_cast<int>(std::min<int64_t>(kDecodeKeys, k1 - j0));
        // Keys past nk point at the tile's first row: valid memory, masked out.
        const uint8_t* krows[kDecodeKeys];
        const uint8_t* vrows[kDecodeKeys];
        for (int j = 0; j < kDecodeKeys; ++j) {
          const int64_t key = j0 + (j < nk ? j : 0);
          const int64_t row = a.cells ? a.cells[key] : key;
          krows[j] = kbase + row * row_bytes;
          vrows[j] = vbase + row * row_bytes;
        }
        for (int h = 0; h < H; ++h) {
          float* o = part + h * stride;
          kern.decode_tile(q.data() + h * hd, krows, vrows, static_cast<size_t>(h / group) * hd * esize, f16, hd, nk,
                           o + hd, o + hd + 1, o);
        }
      }
    }
  });

  // out = Σ o_s·e^(m_s - M) / Σ l_s·e^(m_s - M) over the shares, M the overall max.
  for (int h = 0; h < H; ++h) {
    float M = -INFINITY;
    for (int64_t sh = 0; sh < shares; ++sh) M = std::max(M, partial[(sh * H + h) * stride + hd]);
    float* out = a.out + static_cast<int64_t>(h) * hd;
    std::fill_n(out, hd, 0.0f);
    double L = 0;
    for (int64_t sh = 0; sh < shares; ++sh) {
      const float* part = partial + (sh * H + h) * stride;
      if (part[hd] == -INFINITY) continue;  // an empty share
      const float w = std::exp(part[hd] - M);
      L += static_cast<double>(part[hd + 1]) * w;
      for (int d = 0; d < hd; ++d) out[d] += part[d] * w;
    }
    const float inv = L > 0 ? static_cast<float>(1.0 / L) : 0.0f;
    for (int d = 0; d < hd; ++d) out[d] *= inv;
  }
}

// One prompt block's working memory, kept per thread across tasks and calls.
struct Scratch {
  std::vector<float> qt, ot;     // [group, rows, head_dim] the task's queries (· scale) and outputs
  std::vector<float> s;          // [rows, kKeys] scores, then probabilities
  std::vector<float> m, l, c;    // per row: running max, running sum, this tile's rescale
  std::vector<int64_t> limit;    // per row: keys visible (causal: pos0 + i + 1)
  std::vector<int> vis;          // per row: keys visible in this tile
};

// Several query positions (a prompt, or the vision tower).
void prompt(ThreadPool& pool, const AttentionArgs& a, const Kernels& kern) {
  const int hd = a.head_dim;
  const int group = a.n_heads / a.n_kv_heads;  // query heads sharing one KV head
  const int64_t kv_width = static_cast<int64_t>(a.n_kv_heads) * hd;
  const int64_t q_width = static_cast<int64_t>(a.n_heads) * hd;
  const bool f16 = a.kv_type == DType::F16;
  const int64_t n_blocks = (a.n + kRows - 1) / kRows;
  const int rows_max = static_cast<int>(std::min<int64_t>(kRows, a.n));
  const int64_t n_keys = a.causal ? std::min(a.n_kv, a.pos0 + a.n) : a.n_kv;  // keys any row sees
  const int64_t n_tiles = (n_keys + kKeys - 1) / kKeys;

  // Repack K (transposed per tile) and V into F32 tiles, zero past the last
  // key. Kept per calling thread: one buffer serves every layer.
  thread_local std::vector<float> packed;
  const size_t tile_floats = static_cast<size_t>(kKeys) * hd;
  const size_t head_floats = static_cast<size_t>(n_tiles) * tile_floats;
  if (packed.size() < 2 * a.n_kv_heads * head_floats) packed.resize(2 * a.n_kv_heads * head_floats);
  float* kp = packed.data();
  float* vp = kp + a.n_kv_heads * head_floats;
  pool.parallel_for(a.n_kv_heads * n_tiles, 4, [&](int64_t b, int64_t e, int) {
    std::vector<float> row(hd);
    for (int64_t task = b; task < e; ++task) {
      const int64_t h = task / n_tiles, t = task % n_tiles;
      float* kt = kp + h * head_floats + t * tile_floats;  // [hd, kKeys]
      float* vt = vp + h * head_floats + t * tile_floats;  // [kKeys, hd]
      for (int j = 0; j < kKeys; ++j) {
        const int64_t key = t * kKeys + j;
        if (key >= n_keys) {
          for (int d = 0; d < hd; ++d) kt[d * kKeys + j] = 0.0f;
          std::fill_n(vt + j * hd, hd, 0.0f);
          continue;
        }
        const int64_t at = (a.cells ? a.cells[key] : key) * kv_width + h * hd;
        if (f16) {
          kern.f16_to_f32(static_cast<const uint16_t*>(a.k) + at, row.data(), hd);
          kern.f16_to_f32(static_cast<const uint16_t*>(a.v) + at, vt + j * hd, hd);
        } else {
          std::copy_n(static_cast<const float*>(a.k) + at, hd, row.data());
          std::copy_n(static_cast<const float*>(a.v) + at, hd, vt + j * hd);
        }
        for (int d = 0; d < hd; ++d) kt[d * kKeys + j] = row[d];
      }
    }
  });

  // Heaviest tasks first (causal: the last query block sees the most keys), so
  // the stragglers at the end are small ones.
  pool.parallel_for(n_blocks * a.n_kv_heads, 1, [&](int64_t b, int64_t e, int) {
    thread_local Scratch w;
    w.qt.resize(static_cast<size_t>(group) * rows_max * hd);
    w.ot.resize(w.qt.size());
    w.s.resize(static_cast<size_t>(rows_max) * kKeys);
    w.m.resize(static_cast<size_t>(group) * rows_max);
    w.l.resize(w.m.size());
    w.c.resize(rows_max);
    w.limit.resize(rows_max);
    w.vis.resize(rows_max);
    for (int64_t task = b; task < e; ++task) {
      const int64_t i0 = (n_blocks - 1 - task / a.n_kv_heads) * kRows;
      const int kvh = static_cast<int>(task % a.n_kv_heads);
      const int nq = static_cast<int>(std::min(a.n, i0 + kRows) - i0);
      for (int r = 0; r < nq; ++r) w.limit[r] = a.causal ? std::min(a.n_kv, a.pos0 + i0 + r + 1) : a.n_kv;
      // Row r of set g: query position i0 + r of head kvh·group + g.
      auto offset_of = [&](int g, int r) { return (i0 + r) * q_width + static_cast<int64_t>(kvh * group + g) * hd; };
      for (int g = 0; g < group; ++g)
        for (int r = 0; r < nq; ++r) {
          const float* src = a.q + offset_of(g, r);
          float* dst = w.qt.data() + (static_cast<size_t>(g) * rows_max + r) * hd;
          for (int d = 0; d < hd; ++d) dst[d] = src[d] * a.scale;
        }
      std::fill(w.ot.begin(), w.ot.end(), 0.0f);
      std::fill(w.m.begin(), w.m.end(), -INFINITY);
      std::fill(w.l.begin(), w.l.end(), 0.0f);

      const int64_t keys = w.limit[nq - 1];  // the last row sees the most
      for (int64_t j0 = 0; j0 < keys; j0 += kKeys) {
        const int nk = static_cast<int>(std::min<int64_t>(kKeys, keys - j0));
        const int cols = (nk + 7) / 8 * 8;
        int r0 = 0;  // rows before r0 see no key of this tile (limits grow with r)
        while (w.limit[r0] <= j0) ++r0;
        for (int r = r0; r < nq; ++r) w.vis[r] = static_cast<int>(std::min<int64_t>(nk, w.limit[r] - j0));
        const float* ktile = kp + kvh * head_floats + (j0 / kKeys) * tile_floats;
        const float* vtile = vp + kvh * head_floats + (j0 / kKeys) * tile_floats;
        for (int g = 0; g < group; ++g) {
          const size_t row0 = static_cast<size_t>(g) * rows_max + r0;
          float* s = w.s.data() + r0 * kKeys;
          // s = q · kᵀ
          kern.gemm(w.qt.data() + row0 * hd, hd, ktile, kKeys, hd, s, kKeys, nq - r0, cols, nullptr);
          // p = e^(s - m'), with the running max and sum brought up to date
          softmax_step(kern, s, kKeys, nq - r0, w.vis.data() + r0, nk, w.m.data() + row0, w.l.data() + row0,
                       w.c.data() + r0);
          // o = o·c + p · v
          kern.gemm(s, kKeys, vtile, hd, nk, w.ot.data() + row0 * hd, hd, nq - r0, hd, w.c.data() + r0);
        }
      }
      // out = o / l
      for (int g = 0; g < group; ++g)
        for (int r = 0; r < nq; ++r) {
          const size_t row = static_cast<size_t>(g) * rows_max + r;
          const float inv = w.l[row] > 0 ? 1.0f / w.l[row] : 0.0f;
          const float* o = w.ot.data() + row * hd;
          float* dst = a.out + offset_of(g, r);
          for (int d = 0; d < hd; ++d) dst[d] = o[d] * inv;
        }
    }
  });
}

}  // namespace

void cpu_attention(ThreadPool& pool, const AttentionArgs& a) {
  const Kernels& kern =
#if CXR_HAVE_AVX2_KERNELS
      cpu_avx2() && a.head_dim % 8 == 0 ? kAvx2 :
#endif
                                          kScalar;
  if (a.n <= 0) return;
  if (a.n == 1 && a.decode) decode(pool, a, kern);
  else prompt(pool, a, kern);
}

}  // namespace cxr
