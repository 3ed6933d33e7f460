// dtype.cpp - names and sizes of the tensor element types.
#include "types/dtype.h"

#include <cctype>

#include "types/quant_blocks.h"

namespace cxr {

namespace {

struct DTypeInfo {
  DType type;
  const char* name;
  int64_t block_size;
  size_t block_bytes;
};

constexpr DTypeInfo kTypes[] = {
    {DType::F32, "f32", 1, sizeof(float)},
    {DType::F16, "f16", 1, sizeof(uint16_t)},
    {DType::Q4_0, "q4_0", QK4_0, sizeof(block_q4_0)},
    {DType::Q8_0, "q8_0", QK8_0, sizeof(block_q8_0)},
    {DType::Q4_K, "q4_k", QK_K, sizeof(block_q4_K)},
    {DType::Q6_K, "q6_k", QK_K, sizeof(block_q6_K)},
    {DType::Q8_K, "q8_k", QK_K, sizeof(block_q8_K)},
    {DType::BF16, "bf16", 1, sizeof(uint16_t)},
};

const DTypeInfo* find(DType t) {
  for (const auto& info : kTypes)
    if (info.type == t) return &info;
  return nullptr;
}

bool equal_nocase(const char* a, const char* b) {
  for (; *a && *b; ++a, ++b)
    if (std::tolower(static_cast<unsigned char>(*a)) != std::tolower(static_cast<unsigned char>(*b)))
      return false;
  return *a == *b;
}

}  // namespace

bool dtype_known(uint32_t id) { return find(static_cast<DType>(id)) != nullptr; }

const char* dtype_name(DType t) {
  const DTypeInfo* info = find(t);
  return info ? info->name : "unknown";
}

bool dtype_from_name(const char* name, DType* out) {
  if (!name) return false;
  for (const auto& info : kTypes) {
    if (equal_nocase(name, info.name)) {
      if (out) *out = info.type;
      return true;
    }
  }
  return false;
}

// Unknown types report 0 so a caller that forgot dtype_known() computes a size of
// zero rather than reading past a buffer.
int64_t dtype_block_size(DType t) {
  const DTypeInfo* info = find(t);
  return info ? info->block_size : 0;
}

size_t dtype_block_bytes(DType t) {
  const DTypeInfo* info = find(t);
  return info ? info->block_bytes : 0;
}

size_t dtype_row_bytes(DType t, int64_t n) {
  const DTypeInfo* info = find(t);
  if (!info || n < 0) return 0;
  return static_cast<size_t>(n / info->block_size) * info->block_bytes;
}

}  // namespace cxr
