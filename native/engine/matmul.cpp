// matmul.cpp - y = x · Wᵀ on the CPU for every weight type.
//
// Activations are converted once to the type the weight's dot product wants
// (Q8_0 for Q4_0/Q8_0, Q8_K for the K-quants, plain floats otherwise); then
// output rows are shared out among threads, and each weight row meets a tile
// of activation rows while it is hot in L1.
#include <algorithm>

#include "cpu_ops.h"
#include "quants.h"

namespace cxr {
namespace {

// Rows of the output handed to a thread at a time. Small enough to balance
// 4096-row decode matmuls over many threads, large enough to amortise the
// atomic fetch.
constexpr int64_t kRowGrain = 16;
// Tokens processed together per weight row during prefill.
constexpr int64_t kTokenTile = 8;

}  // namespace

void cpu_matmul(ThreadPool& pool, const Weight& W, const float* x, int64_t n, float* y, const float* bias,
                std::vector<uint8_t>& scratch) {
  const TypeTraits& wt = type_traits(W.type);
  const int64_t rows = W.rows, cols = W.cols;
  const size_t wrow = dtype_row_bytes(W.type, cols);

  // Activations are converted once to the type the weight's dot product wants.
  const void* xq = x;
  size_t xrow = cols * sizeof(float);
  if (wt.vec_dot_type != DType::F32) {
    const TypeTraits& qt = type_traits(wt.vec_dot_type);
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

}  // namespace cxr
