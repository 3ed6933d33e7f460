// dispatch.cpp - probes the CPU once and builds the fast kernel table: the
// reference table, with the slots the SIMD files have faster kernels for
// overwritten (quants_impl.h).
#include "backend/cpu/dispatch.h"

#include <atomic>
#include <cstdlib>
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#include "backend/cpu/quants_impl.h"

namespace cxr {
namespace {

constexpr DType kTypes[] = {DType::F32, DType::F16, DType::Q4_0, DType::Q8_0,
                            DType::Q4_K, DType::Q6_K, DType::Q8_K, DType::BF16};
constexpr size_t kNumTypes = sizeof(kTypes) / sizeof(kTypes[0]);

struct Tables {
  TypeTraits fast[kNumTypes];
  const char* level;

  Tables() {
    for (size_t i = 0; i < kNumTypes; ++i) fast[i] = type_traits_reference(kTypes[i]);
    level = "scalar";
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
    // cpu_init is needed if this runs from another file's static constructor,
    // before libgcc has filled in the CPU model.
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c()) {
      detail::install_avx2_kernels(fast, kNumTypes);
      level = "avx2";
    }
#elif defined(__ARM_NEON)
    detail::install_neon_kernels(fast, kNumTypes);
    level = "neon";
#endif
  }

  const TypeTraits& of(DType t) const {
    for (size_t i = 0; i < kNumTypes; ++i)
      if (kTypes[i] == t) return fast[i];
    return type_traits_reference(t);  // throws the "unknown tensor type" error
  }
};

const Tables& tables() {
  static const Tables t;  // built once, thread-safely, on first use
  return t;
}

// CXR_FORCE_SCALAR=1 in the environment starts the process on the scalar
// kernels, so CI can run every test on the reference path too.
bool scalar_from_env() {
  const char* v = std::getenv("CXR_FORCE_SCALAR");
  return v != nullptr && v[0] != '\0' && v[0] != '0';
}
std::atomic<bool> g_force_scalar{scalar_from_env()};

}  // namespace

const TypeTraits& type_traits(DType t) {
  return g_force_scalar.load(std::memory_order_relaxed) ? type_traits_reference(t) : tables().of(t);
}

const char* simd_level() { return g_force_scalar.load() ? "scalar" : tables().level; }

void force_scalar_kernels(bool on) { g_force_scalar.store(on); }

// F16C from CPUID leaf 1 (ECX bit 29): clang before 16 has no "f16c" for
// __builtin_cpu_supports, and the sanitizer and fuzz builds use Debian's clang 14.
bool cpu_has_f16c() {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
#else
  return false;
#endif
}

}  // namespace cxr
