// cpu_weight.h - the CPU backend's Weight: where its bytes are and how they
// are laid out, which no code outside backend/cpu/ sees.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace cxr {

// How a weight's rows are laid out in memory.
enum class WeightLayout : uint8_t {
  Rows,  // row after row, as in the file
  X8,    // Q4_0 or Q8_0 rows interleaved eight at a time (repack.h)
};

struct CpuWeight final : Weight {
  CpuWeight(const TensorView& t, WeightUse u) : Weight(t, u), data(t.data) {}
  // Matrices: a view into the file's mapping, or the backend's repacked copy
  // (layout). Vectors: values.data().
  const void* data;
  WeightLayout layout = WeightLayout::Rows;
  std::vector<float> values;  // a Vector weight's own F32 copy
  const float* f32() const { return static_cast<const float*>(data); }
};

// The CPU's view of a weight it made (only the backend that made a weight may be given it).
inline const CpuWeight& cpu_weight(const Weight& w) { return static_cast<const CpuWeight&>(w); }
inline const float* cpu_vector(const Weight* w) { return w ? cpu_weight(*w).f32() : nullptr; }

}  // namespace cxr
