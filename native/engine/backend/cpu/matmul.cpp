// matmul.cpp - y = x · Wᵀ on the CPU for every weight type.
//
// Three routes, chosen per call:
//   Q4_0 / Q8_0 weights, blocked-matmul kernels in the table (cpu_kernels.h):
//     activations are quantized to Q8_0 once and rearranged for the integer
//     panel kernels (gemm.h); threads
//     take panels of weight rows, and each panel meets every token.
//   F32 / F16 / BF16 weights, a batch of tokens: the float panel kernels, on
//     chunks of rows converted to f32 a K block at a time.
//   Everything else (K-quants, single tokens with float weights, forced
//     scalar kernels): the type's vec_dot from the table, row by row.
// A batch mixing decoding tokens (Decode route) with prompt rows (Prompt
// route), cpu_matmul_batch, walks integer weights once, a panel at a time:
// the panel's rows meet the decoding tokens, then the prompt, while in cache.
// Q4_0 / Q8_0 weights the CPU backend repacked (WeightLayout::X8, repack.h)
// take the integer route through the x8 kernels, or the vec_dot route a row
// group at a time, unpacked.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/gemm.h"
#include "types/quant_blocks.h"
#include "types/quants.h"
#include "backend/cpu/repack.h"

namespace cxr {
namespace {

using detail::QActs;

// Rows of the output handed to a thread at a time on the vec_dot route. Small
// enough to balance 4096-row decode matmuls over many threads, large enough to
// amortise the atomic fetch.
constexpr int64_t kRowGrain = 16;
// Tokens processed together per weight row on the vec_dot route.
constexpr int64_t kTokenTile = 8;
// Float weights go through the panel kernels from this many tokens on; below
// it, converting a panel costs more than the vec_dot route's direct reads.
constexpr int64_t kFloatGemmMinTokens = 4;
// Up to this many tokens, integer matmuls stream rows (GEMV); from one more,
// packing a panel pays for itself.
constexpr int64_t kGemvMaxTokens = 3;
// The GEMV route hands out rows in shrinking fetches (parallel_for_shrinking),
// none under this many. Long early runs keep one sequential stream per core
// for the prefetchers (32-row fetches throughout ran the 7B Q4_0 decode at
// 7.3 tokens/s, quarter shares at 7.85); short late ones let both threads end
// together: in a perf profile of that decode, time spent waiting at the end of
// a matmul fell from 5.7% (quarter shares) to 2.2%.
constexpr int64_t kGemvMinRows = 32;
// Weight bytes that several decoding tokens take in turn before moving on:
// well inside a core's L2.
constexpr size_t kGemvTileBytes = size_t{128} << 10;
// Panels a thread takes at a time when decode and prompt rows share a matmul
// (int_matmul_mixed); each panel meets both kinds before the next.
constexpr int64_t kMixedPanelGrain = 4;

// A per-thread, 64-byte aligned buffer for packed panels, grown on demand and
// kept for the thread's life (pool threads live as long as the backend).
uint8_t* thread_buffer(size_t bytes) {
  struct Buf {
    void* p = nullptr;
    size_t size = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf buf;
  if (buf.size < bytes) {
    std::free(buf.p);
    buf.size = (bytes + 63) / 64 * 64;
    buf.p = std::aligned_alloc(64, buf.size);
    if (!buf.p) {
      buf.size = 0;
      throw std::bad_alloc();
    }
  }
  return static_cast<uint8_t*>(buf.p);
}

size_t align64(size_t n) { return (n + 63) / 64 * 64; }

void vec_dot_matmul(ThreadPool& pool, const CpuKernels& k, const CpuWeight& W, const float* x, int64_t n, float* y,
                    const float* bias, std::vector<uint8_t>& scratch) {
  const TypeTraits& wt = k.type(W.type);
  const int64_t rows = W.rows, cols = W.cols;
  const size_t wrow = dtype_row_bytes(W.type, cols);

  // Activations are converted once to the type the weight's dot product wants.
  const void* xq = x;
  size_t xrow = cols * sizeof(float);
  if (wt.vec_dot_type != DType::F32) {
    const TypeTraits& qt = k.type(wt.vec_dot_type);
    xrow = dtype_row_bytes(wt.vec_dot_type, cols);
    if (scratch.size() < xrow * n) scratch.resize(xrow * n);
    uint8_t* dst = scratch.data();
    pool.parallel_for(n, 1, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) qt.from_float(x + t * cols, dst + t * xrow, cols);
    });
    xq = dst;
  }
  const uint8_t* wbase = static_cast<const uint8_t*>(W.data);
  const uint8_t* xbase = static_cast<const uint8_t*>(xq);
  if (W.layout == WeightLayout::X8) {
    // A row group at a time, unpacked to plain rows, so the numbers are the
    // type's own vec_dot's.
    pool.parallel_for(rows / kX8Rows, 1, [&](int64_t g0, int64_t g1, int) {
      uint8_t* rows8 = thread_buffer(kX8Rows * wrow);
      for (int64_t g = g0; g < g1; ++g) {
        unpack_x8_group(W.type, wbase + g * kX8Rows * wrow, cols, rows8);
        for (int64_t t = 0; t < n; ++t)
          for (int i = 0; i < kX8Rows; ++i) {
            const int64_t r = g * kX8Rows + i;
            float s;
            wt.vec_dot(cols, &s, rows8 + i * wrow, xbase + t * xrow);
            y[t * rows + r] = s + (bias ? bias[r] : 0.0f);
          }
      }
    });
    return;
  }
  pool.parallel_for(rows, kRowGrain, [&](int64_t r0, int64_t r1, int) {
    for (int64_t t0 = 0; t0 < n; t0 += kTokenTile) {
      const int64_t t1 = std::min(n, t0 + kTokenTile);
      for (int64_t r = r0; r < r1; ++r) {
        const void* wr = wbase + r * wrow;
        const float b = bias ? bias[r] : 0.0f;
        for (int64_t t = t0; t < t1; ++t) {
          float s;
          wt.vec_dot(cols, &s, wr, xbase + t * xrow);
          y[t * rows + r] = s + b;
        }
      }
    }
  });
}

// Q8_0 activations of n tokens laid out for one integer route (gemm.h's
// QActs): block-major for the panels, token-major for decode so each token is
// a QActs of its own (for one token the two layouts coincide).
struct IntActs {
  int8_t* q;
  float* d;
  int32_t* c;
  int64_t n, nb;
  bool gemv;
  QActs token(int64_t t) const { return QActs{q + t * nb * 32, d + t * nb, c + t * nb, 1, nb}; }
  QActs all() const { return QActs{q, d, c, n, nb}; }
};

size_t int_acts_bytes(int64_t nb, int64_t n) {
  return align64(static_cast<size_t>(nb * n) * 32) + 2 * align64(static_cast<size_t>(nb * n) * sizeof(float));
}

// Quantizes x[n, cols] into mem (int_acts_bytes of it) for the decode (gemv)
// or the panel route.
IntActs quantize_int_acts(ThreadPool& pool, const CpuKernels& k, const CpuWeight& W, const float* x, int64_t n,
                          bool gemv, uint8_t* mem) {
  const int64_t cols = W.cols, nb = cols / QK8_0;
  // The decode and panel kernels may come from different sets (cpu_kernels.cpp).
  const int offset = gemv ? k.gemv.offset(W.type) : k.panels.offset(W.type);
  // Q4_0 decode wants its activations in the kernel's group order (gemm.h),
  // except from repacked weights.
  const bool x8 = W.layout == WeightLayout::X8;
  const int64_t group = gemv && W.type == DType::Q4_0 && !x8 ? k.gemv.q4_group : 1;
  const int64_t grouped = nb / group * group;  // blocks in whole groups

  const size_t q_bytes = align64(static_cast<size_t>(nb * n) * 32);
  const size_t d_bytes = align64(static_cast<size_t>(nb * n) * sizeof(float));
  int8_t* xq = reinterpret_cast<int8_t*>(mem);
  float* xd = reinterpret_cast<float*>(mem + q_bytes);
  int32_t* xc = reinterpret_cast<int32_t*>(mem + q_bytes + d_bytes);
  auto at = [&](int64_t b, int64_t t) { return gemv ? t * nb + b : b * n + t; };

  // The activation quantizer is the table's, so the quants are
  // bit-identical to the vec_dot route's (and to llama.cpp's Q8_0).
  const TypeTraits& qt = k.type(DType::Q8_0);
  const size_t xrow = dtype_row_bytes(DType::Q8_0, cols);
  pool.parallel_for(n, 1, [&](int64_t t0, int64_t t1, int) {
    auto* row = reinterpret_cast<block_q8_0*>(thread_buffer(xrow));
    for (int64_t t = t0; t < t1; ++t) {
      qt.from_float(x + t * cols, row, cols);
      for (int64_t b = 0; b < nb; ++b) {
        const block_q8_0& blk = row[b];
        const int64_t i = at(b, t);
        if (group > 1 && b < grouped) {
          // gemm.h's group order: this block's halves interleave with its group's.
          int8_t* first = xq + (i - b % group) * 32 + (b % group) * 16;
          std::memcpy(first, blk.qs, 16);
          std::memcpy(first + 16 * group, blk.qs + 16, 16);
        } else {
          std::memcpy(xq + i * 32, blk.qs, 32);
        }
        int32_t sum = 0;
        for (int j = 0; j < 32; ++j) sum += blk.qs[j];
        xd[i] = fp16_to_fp32(blk.d);
        xc[i] = -offset * sum;
      }
    }
  });
  return IntActs{xq, xd, xc, n, nb, gemv};
}

// The decode route over weight units [u0, u1) (rows, or x8 row groups), every
// token of a (gemv layout), `tile` units at a time: the tile they all read
// comes from memory once and from cache after.
void gemv_units(const CpuKernels& k, const CpuWeight& W, const IntActs& a, float* y, const float* bias, int64_t u0,
                int64_t u1, int64_t tile) {
  const int64_t rows = W.rows, n = a.n;
  const size_t wrow = dtype_row_bytes(W.type, W.cols);
  const bool x8 = W.layout == WeightLayout::X8;
  // Repacked weights go whole row groups (repack.h) at a time. A group is as
  // many bytes as its 8 rows were, so row r still starts at r * wrow.
  const int64_t unit = x8 ? kX8Rows : 1;
  // Q4_0 x8 weights meet several tokens in one kernel call where the set
  // has one (gemv.q4_x8_gemv_n), with each token's numbers unchanged.
  const bool q4_multi = n > 1 && x8 && W.type == DType::Q4_0 && k.gemv.q4_x8_gemv_n != nullptr;
  const uint8_t* wbase = static_cast<const uint8_t*>(W.data);
  for (int64_t s0 = u0; s0 < u1; s0 += tile) {
    const int64_t s1 = std::min(u1, s0 + tile);
    const int64_t r0 = s0 * unit;
    if (q4_multi) {
      // Up to kX8GemvTokens tokens per pass over the tile's blocks.
      for (int64_t t0 = 0; t0 < n; t0 += k.gemv.x8_tokens) {
        const int nt = static_cast<int>(std::min<int64_t>(k.gemv.x8_tokens, n - t0));
        QActs xs[kMaxX8GemvTokens];
        float* ys[kMaxX8GemvTokens];
        for (int j = 0; j < nt; ++j) {
          xs[j] = a.token(t0 + j);
          ys[j] = y + (t0 + j) * rows + r0;
        }
        k.gemv.q4_x8_gemv_n(wbase + r0 * wrow, s1 - s0, xs, nt, ys, bias ? bias + r0 : nullptr);
      }
      continue;
    }
    for (int64_t t = 0; t < n; ++t) {
      const QActs one = a.token(t);
      float* yt = y + t * rows + r0;
      const float* b = bias ? bias + r0 : nullptr;
      if (x8) k.gemv.x8_gemv(W.type, wbase + r0 * wrow, s1 - s0, one, yt, b);
      else k.gemv.int_gemv(W.type, wbase + r0 * wrow, wrow, (s1 - s0) * unit, one, yt, b);
    }
  }
}

// The panel route over panels [p0, p1) of k.panels.rows weight rows, every
// token of a (panel layout); buf is the thread's int_panel_bytes.
void panel_range(const CpuKernels& k, const CpuWeight& W, const IntActs& a, float* y, const float* bias, int64_t p0,
                 int64_t p1, uint8_t* buf) {
  const int64_t rows = W.rows;
  const size_t wrow = dtype_row_bytes(W.type, W.cols);
  const bool x8 = W.layout == WeightLayout::X8;
  const uint8_t* wbase = static_cast<const uint8_t*>(W.data);
  const QActs acts = a.all();
  const int P = k.panels.rows;  // a multiple of 8, so panels hold whole row groups
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t r0 = p * P;
    const int nr = static_cast<int>(std::min<int64_t>(P, rows - r0));
    const float* b = bias ? bias + r0 : nullptr;
    if (x8) k.panels.x8_panel(W.type, wbase + r0 * wrow, nr, acts, y + r0, rows, b, buf);
    else k.panels.int_panel(W.type, wbase + r0 * wrow, wrow, nr, acts, y + r0, rows, b, buf);
  }
}

// Units of `gemv_units` a tile for n decoding tokens.
int64_t gemv_tile(const CpuWeight& W, int64_t n) {
  const int64_t unit = W.layout == WeightLayout::X8 ? kX8Rows : 1;
  if (n == 1) return W.rows / unit;
  const size_t wrow = dtype_row_bytes(W.type, W.cols);
  return std::max<int64_t>(1, static_cast<int64_t>(kGemvTileBytes / (wrow * unit)));
}

void int_matmul(ThreadPool& pool, const CpuKernels& k, const CpuWeight& W, const float* x, int64_t n, float* y,
                const float* bias, std::vector<uint8_t>& scratch, MatmulRoute route) {
  const int64_t nb = W.cols / QK8_0;
  const bool gemv = route == MatmulRoute::Decode || (route == MatmulRoute::Auto && n <= kGemvMaxTokens);
  const size_t need = int_acts_bytes(nb, n);
  if (scratch.size() < need) scratch.resize(need);
  const IntActs a = quantize_int_acts(pool, k, W, x, n, gemv, scratch.data());

  if (gemv) {
    const int64_t unit = W.layout == WeightLayout::X8 ? kX8Rows : 1;
    const int64_t tile = gemv_tile(W, n);
    pool.parallel_for_shrinking(W.rows / unit, std::max<int64_t>(1, kGemvMinRows / unit),
                                [&](int64_t u0, int64_t u1, int) { gemv_units(k, W, a, y, bias, u0, u1, tile); });
    return;
  }
  const int64_t panels = (W.rows + k.panels.rows - 1) / k.panels.rows;
  const size_t buf_bytes = k.panels.int_panel_bytes(W.cols);
  pool.parallel_for(panels, 1, [&](int64_t p0, int64_t p1, int) {
    panel_range(k, W, a, y, bias, p0, p1, thread_buffer(buf_bytes));
  });
}

// Decode rows and prompt rows against one integer weight in one pass over
// it: a panel's rows meet the decoding tokens (decode kernels) and then the
// prompt (panel kernels) while they are in cache, so the decode rows add no
// read of the weights from memory. Each row's numbers are its route's.
void int_matmul_mixed(ThreadPool& pool, const CpuKernels& k, const CpuWeight& W, const float* x, int64_t n_decode,
                      int64_t n_prompt, float* y, std::vector<uint8_t>& scratch) {
  const int64_t nb = W.cols / QK8_0;
  const size_t dec_bytes = int_acts_bytes(nb, n_decode);
  const size_t need = dec_bytes + int_acts_bytes(nb, n_prompt);
  if (scratch.size() < need) scratch.resize(need);
  const IntActs dec = quantize_int_acts(pool, k, W, x, n_decode, true, scratch.data());
  const IntActs prm = quantize_int_acts(pool, k, W, x + n_decode * W.cols, n_prompt, false, scratch.data() + dec_bytes);
  float* y_prompt = y + n_decode * W.rows;

  const int P = k.panels.rows;
  const int64_t unit = W.layout == WeightLayout::X8 ? kX8Rows : 1;  // P is a multiple of it
  const int64_t panels = (W.rows + P - 1) / P;
  const int64_t tile = gemv_tile(W, n_decode);
  const size_t buf_bytes = k.panels.int_panel_bytes(W.cols);
  pool.parallel_for(panels, kMixedPanelGrain, [&](int64_t p0, int64_t p1, int) {
    uint8_t* buf = thread_buffer(buf_bytes);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t r0 = p * P, r1 = std::min<int64_t>(W.rows, r0 + P);
      gemv_units(k, W, dec, y, nullptr, r0 / unit, r1 / unit, tile);
      panel_range(k, W, prm, y_prompt, nullptr, p, p + 1, buf);
    }
  });
}

void float_matmul(ThreadPool& pool, const CpuKernels& k, const CpuWeight& W, const float* x, int64_t n, float* y,
                  const float* bias) {
  const int64_t rows = W.rows, cols = W.cols;
  const size_t wrow = dtype_row_bytes(W.type, cols);
  const int C = k.panels.float_chunk_rows;
  const int64_t chunks = (rows + C - 1) / C;
  const uint8_t* wbase = static_cast<const uint8_t*>(W.data);
  pool.parallel_for(chunks, 1, [&](int64_t c0, int64_t c1, int) {
    float* buf = reinterpret_cast<float*>(thread_buffer(k.panels.float_chunk_bytes()));
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r0 = c * C;
      const int nr = static_cast<int>(std::min<int64_t>(C, rows - r0));
      k.panels.float_chunk(W.type, wbase + r0 * wrow, wrow, nr, cols, x, cols, n, y + r0, rows,
                     bias ? bias + r0 : nullptr, buf);
    }
  });
}

bool int_route(const CpuKernels& k, const CpuWeight& W) {
  if (!k.panels.int_panel || (W.type != DType::Q4_0 && W.type != DType::Q8_0)) return false;
  // The kernels address a panel's rows with 32-bit offsets.
  const size_t wrow = dtype_row_bytes(W.type, W.cols);
  return wrow * k.panels.rows < static_cast<size_t>(std::numeric_limits<int32_t>::max());
}

}  // namespace

void cpu_matmul_batch(ThreadPool& pool, const CpuWeight& W, const float* x, int64_t n_decode, int64_t n_prompt, float* y,
                      std::vector<uint8_t>& scratch) {
  if (n_decode > 0 && n_prompt > 0 && W.rows > 0 && int_route(cpu_kernels(), W))
    return int_matmul_mixed(pool, cpu_kernels(), W, x, n_decode, n_prompt, y, scratch);
  if (n_decode > 0) cpu_matmul(pool, W, x, n_decode, y, nullptr, scratch, MatmulRoute::Decode);
  if (n_prompt > 0)
    cpu_matmul(pool, W, x + n_decode * W.cols, n_prompt, y + n_decode * W.rows, nullptr, scratch, MatmulRoute::Prompt);
}

void cpu_matmul(ThreadPool& pool, const CpuWeight& W, const float* x, int64_t n, float* y, const float* bias,
                std::vector<uint8_t>& scratch, MatmulRoute route) {
  if (n <= 0 || W.rows <= 0) return;
  const CpuKernels& k = cpu_kernels();
  if (int_route(k, W)) return int_matmul(pool, k, W, x, n, y, bias, scratch, route);
  const bool panels = route == MatmulRoute::Prompt || (route == MatmulRoute::Auto && n >= kFloatGemmMinTokens);
  if (k.panels.float_chunk && (W.type == DType::F32 || W.type == DType::F16 || W.type == DType::BF16) && panels)
    return float_matmul(pool, k, W, x, n, y, bias);
  vec_dot_matmul(pool, k, W, x, n, y, bias, scratch);
}

}  // namespace cxr
