// cpu_ops.h - the heavy CPU kernels behind backend_cpu.cpp, one file each:
// matmul.cpp and attention.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_weight.h"
#include "backend/cpu/threadpool.h"

namespace cxr {

// How a matmul's rows are computed. Auto picks by row count; Decode rows are
// streamed against the weights (GEMV kernels, several rows sharing each read),
// Prompt rows go through the panel kernels: either way a row's result does not
// depend on how many rows come with it.
enum class MatmulRoute { Auto, Decode, Prompt };

// y[n, W.rows] = x[n, W.cols] · Wᵀ (+ bias). `scratch` holds the converted
// activations and is reused across calls.
void cpu_matmul(ThreadPool& pool, const CpuWeight& W, const float* x, int64_t n, float* y, const float* bias,
                std::vector<uint8_t>& scratch, MatmulRoute route = MatmulRoute::Auto);

// Backend::matmul_batch: y = x · Wᵀ for n_decode rows on the Decode route
// followed by n_prompt rows on the Prompt route, each row bit for bit what its
// route gives it alone. Integer weights are read from memory once for both.
void cpu_matmul_batch(ThreadPool& pool, const CpuWeight& W, const float* x, int64_t n_decode, int64_t n_prompt, float* y,
                      std::vector<uint8_t>& scratch);

// Multi-head attention as described by AttentionArgs (backend.h).
void cpu_attention(ThreadPool& pool, const AttentionArgs& a);

}  // namespace cxr
