// cpu_features.cpp - the one CPU probe (cpu_features.h).
#include "backend/cpu/cpu_features.h"

#include <cstdlib>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define CXR_PROBE_X86 1
#include <cpuid.h>
#endif

namespace cxr {
namespace {

CpuFeatures probe() {
  CpuFeatures f;
#if defined(CXR_PROBE_X86)
  // cpu_init is needed if this runs from another file's static constructor,
  // before libgcc has filled in the CPU model.
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  // F16C from CPUID leaf 1 (ECX bit 29): clang before 16 has no "f16c" for
  // __builtin_cpu_supports, and the sanitizer and fuzz builds use Debian's clang 14.
  unsigned a = 0, b = 0, c = 0, d = 0;
  f.f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
  f.amd = __builtin_cpu_is("amd");
#elif defined(__ARM_NEON)
  f.neon = true;
#endif
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = probe();
  return f;
}

bool scalar_forced_by_env() {
  static const bool forced = [] {
    const char* v = std::getenv("CXR_FORCE_SCALAR");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return forced;
}

}  // namespace cxr
