// quants.h - conversion to and from every tensor type, and the dot products the
// matmuls are built from.
//
// Layouts are byte-identical to ggml's, so files move freely between this engine
// and llama.cpp. The block structs themselves live in quant_blocks.h.
//
// This layer holds the scalar reference kernels: always compiled, always
// correct, identical on every platform, and nothing that knows about SIMD.
// Backends start their own kernel tables from these and are tested against
// them. Includes only types/.
#pragma once
#include <cstddef>
#include <cstdint>

#include "types/dtype.h"

namespace cxr {

struct TypeTraits {
  DType type;
  const char* name;
  int64_t block_size;   // elements per block
  size_t block_bytes;   // bytes per block
  bool quantized;

  // dst[0..n) = dequantized src. n is a multiple of block_size.
  void (*to_float)(const void* src, float* dst, int64_t n);

  // Quantizes n floats into this type. Fast enough for activations on every
  // token; weight quantization may use quantize_weights() for better rounding.
  // nullptr for types we only read (none at present).
  void (*from_float)(const float* src, void* dst, int64_t n);

  // The type the other operand of vec_dot must be in (activations are converted
  // to it once per matmul). F32 means "plain floats".
  DType vec_dot_type;

  // *s = sum_i x[i] * y[i] over n elements; x is in this type, y in vec_dot_type.
  void (*vec_dot)(int64_t n, float* s, const void* x, const void* y);
};

// Scalar reference kernels, identical results on every platform.
const TypeTraits& type_traits_reference(DType t);

// Quantizes a [nrows, ncols] row-major float matrix for storage in a GGUF file.
// ncols must be a multiple of the type's block size. Returns bytes written,
// which is nrows * dtype_row_bytes(t, ncols). Throws EngineError for an
// unsupported type or a bad shape.
size_t quantize_weights(DType t, const float* src, void* dst, int64_t nrows, int64_t ncols);

// fp16 / bf16 <-> fp32, IEEE round-to-nearest-even like ggml.
uint16_t fp32_to_fp16(float f);
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);
float bf16_to_fp32(uint16_t h);

}  // namespace cxr
