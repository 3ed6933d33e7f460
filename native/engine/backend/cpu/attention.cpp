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
#include "backend/cpu/cpu_kernels.h"

namespace cxr {
namespace {

constexpr int kKeys = 64;       // keys per tile (a multiple of 16)
constexpr int64_t kRows = 48;   // query positions per prefill task (a multiple of the kernel's 6 rows)
constexpr int kDecodeKeys = kAttnDecodeKeys;  // keys per online-softmax step when decoding

// The online-softmax step for `rows` rows of scores s (row stride ld), each
// seeing its first vis[r] keys of nk: turns s into probabilities and brings the
// running max m and sum l up to date; c gets the factor for the old output.
void softmax_step(const CpuKernels& kern, float* s, int ld, int rows, const int* vis, int nk, float* m, float* l,
                  float* c) {
  for (int r = 0; r < rows; ++r) {
    float* sr = s + r * ld;
    const float mnew = std::max(m[r], kern.attn_row_max(sr, vis[r]));
    c[r] = m[r] == -INFINITY ? 0.0f : std::exp(m[r] - mnew);
    l[r] = l[r] * c[r] + kern.attn_exp_row(sr, vis[r], nk, mnew);
    m[r] = mnew;
  }
}

// One query position (decoding). Every key is read once, so the cost is
// memory traffic. Tasks split the keys, not the heads (the "split-K" of flash
// decoding): a task walks its share of the keys kDecodeKeys at a time and, for
// each query head, folds those keys into a running softmax; the shares are
// merged at the end. Within a tile the heads advance through the same few
// cache rows side by side, so every row is still read front to back once.
void decode(ThreadPool& pool, const AttentionArgs& a, const CpuKernels& kern) {
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
          kern.attn_decode_tile(q.data() + h * hd, krows, vrows, static_cast<size_t>(h / group) * hd * esize, f16, hd, nk,
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
void prompt(ThreadPool& pool, const AttentionArgs& a, const CpuKernels& kern) {
  const int hd = a.head_dim;
  const int group = a.n_heads / a.n_kv_heads;  // query heads sharing one KV head
  const int64_t kv_width = static_cast<int64_t>(a.n_kv_heads) * hd;
  const int64_t q_width = static_cast<int64_t>(a.n_heads) * hd;
  const bool f16 = a.kv_type == DType::F16;
  const int64_t n_blocks = (a.n + kRows - 1) / kRows;
  const int rows_max = static_cast<int>(std::min<int64_t>(kRows, a.n));
  const int64_t n_keys = a.causal ? std::min(a.n_kv, a.pos0 + a.n) : a.n_kv;  // keys any row sees
  const int64_t n_tiles = (n_keys + kKeys - 1) / kKeys;
  const auto f16_to_f32 = kern.type(DType::F16).to_float;

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
          f16_to_f32(static_cast<const uint16_t*>(a.k) + at, row.data(), hd);
          f16_to_f32(static_cast<const uint16_t*>(a.v) + at, vt + j * hd, hd);
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
          kern.attn_gemm(w.qt.data() + row0 * hd, hd, ktile, kKeys, hd, s, kKeys, nq - r0, cols, nullptr);
          // p = e^(s - m'), with the running max and sum brought up to date
          softmax_step(kern, s, kKeys, nq - r0, w.vis.data() + r0, nk, w.m.data() + row0, w.l.data() + row0,
                       w.c.data() + r0);
          // o = o·c + p · v
          kern.attn_gemm(s, kKeys, vtile, hd, nk, w.ot.data() + row0 * hd, hd, nq - r0, hd, w.c.data() + r0);
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
  // The SIMD inner loops want whole vectors per head; other heads take the scalar ones.
  const CpuKernels& k = cpu_kernels();
  const CpuKernels& kern = a.head_dim % k.attn_head_multiple == 0 ? k : cpu_kernels_scalar();
  if (a.n <= 0) return;
  if (a.n == 1 && a.decode) decode(pool, a, kern);
  else prompt(pool, a, kern);
}

}  // namespace cxr
