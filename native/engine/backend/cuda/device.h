// device.h - device-only helpers the kernels share (CUDA C++ only): warp
// reductions, the tensor-core instructions, and the per-type element loader.
#pragma once
#include <cuda_fp16.h>
#include <cstdint>

#include "backend/cuda/hd.h"
#include "backend/cuda/quant_math.h"
#include "types/dtype.h"

namespace cxr {
namespace cuda {

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// D = A·B + D on one 16x8 tile, int8 in, int32 out (sm_80+).
__device__ __forceinline__ void mma_s8_16x8x32(int32_t* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// D = A·B + D on one 16x8 tile, f16 in, f32 out (sm_80+).
__device__ __forceinline__ void mma_f16_16x8x16(float* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Element e of row `row` (row_bytes apart) of a weight of type T, as a float.
template <DType T>
__device__ __forceinline__ float weight_element(const uint8_t* row, int64_t e) {
  if constexpr (T == DType::F32) return reinterpret_cast<const float*>(row)[e];
  if constexpr (T == DType::F16) return half_to_float(reinterpret_cast<const uint16_t*>(row)[e]);
  if constexpr (T == DType::BF16) return bf16_to_float(reinterpret_cast<const uint16_t*>(row)[e]);
  if constexpr (T == DType::Q8_0) return dequant_q8_0(reinterpret_cast<const block_q8_0*>(row)[e / 32], e % 32);
  if constexpr (T == DType::Q4_0) return dequant_q4_0(reinterpret_cast<const block_q4_0*>(row)[e / 32], e % 32);
  if constexpr (T == DType::Q4_K) return dequant_q4_K(reinterpret_cast<const block_q4_K*>(row)[e / 256], e % 256);
  if constexpr (T == DType::Q6_K) return dequant_q6_K(reinterpret_cast<const block_q6_K*>(row)[e / 256], e % 256);
  return 0.0f;
}

// Calls f.template operator()<T>() for the runtime type t (one of the weight types).
template <typename F>
bool dispatch_weight_type(DType t, F&& f) {
  switch (t) {
    case DType::F32: f.template operator()<DType::F32>(); return true;
    case DType::F16: f.template operator()<DType::F16>(); return true;
    case DType::BF16: f.template operator()<DType::BF16>(); return true;
    case DType::Q8_0: f.template operator()<DType::Q8_0>(); return true;
    case DType::Q4_0: f.template operator()<DType::Q4_0>(); return true;
    case DType::Q4_K: f.template operator()<DType::Q4_K>(); return true;
    case DType::Q6_K: f.template operator()<DType::Q6_K>(); return true;
    default: return false;
  }
}

constexpr int kThreads = 256;  // block size of the elementwise and row kernels

inline unsigned grid_for(int64_t n, int per_block = kThreads) {
  return static_cast<unsigned>((n + per_block - 1) / per_block);
}

}  // namespace cuda
}  // namespace cxr
