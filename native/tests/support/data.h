// data.h - seeded test data and the scalar-kernel switch.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "backend/cpu/cpu_kernels.h"

namespace cxrtest {

// n normal values * scale + shift, the same for the same seed.
inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f, float shift = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng) * scale + shift;
  return v;
}

// Puts every CPU kernel on the scalar path for its lifetime, and restores the
// fast kernels even when a test body fails half way.
struct ScalarMode {
  explicit ScalarMode(bool on) { cxr::force_scalar_kernels(on); }
  ScalarMode(const ScalarMode&) = delete;
  ScalarMode& operator=(const ScalarMode&) = delete;
  ~ScalarMode() { cxr::force_scalar_kernels(false); }
};

}  // namespace cxrtest
