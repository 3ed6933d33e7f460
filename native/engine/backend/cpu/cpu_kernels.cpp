// cpu_kernels.cpp - builds the kernel tables (cpu_kernels.h) from the one CPU
// probe (cpu_features.h) and picks the one in force.
#include "backend/cpu/cpu_kernels.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernel_sets.h"

namespace cxr {
namespace {

constexpr DType kTypes[kCpuTypeSlots] = {DType::F32,  DType::F16,  DType::Q4_0, DType::Q8_0,
                                         DType::Q4_K, DType::Q6_K, DType::Q8_K, DType::BF16};

CpuKernels scalar_table() {
  CpuKernels k{};
  k.level = "scalar";
  k.matmul = "none";
  for (int i = 0; i < kCpuTypeSlots; ++i) k.types[i] = type_traits_reference(kTypes[i]);
  detail::install_scalar_kernels(k);
  return k;
}

// Which blocked-matmul sets to use: CXR_GEMM=off|avx2 or the CPU's best.
enum class MatmulChoice { None, Avx2, Avx512, Avx512PanelsAvx2Decode };

MatmulChoice matmul_choice(const CpuFeatures& f) {
  const char* env = std::getenv("CXR_GEMM");
  if (env && !std::strcmp(env, "off")) return MatmulChoice::None;
  if (!f.avx2_level()) return MatmulChoice::None;
  if (env && !std::strcmp(env, "avx2")) return MatmulChoice::Avx2;
  if (!f.avx512_level()) return MatmulChoice::Avx2;
  // On AMD cores (Zen 4 splits each 512-bit op into two 256-bit halves) the
  // AVX2 decode kernels beat the AVX-512 ones in every alternating run on 7B
  // Q4_0 and Q8_0 decode (+1% to +17%), while the AVX-512 panels stay far
  // ahead for prompts; elsewhere the AVX-512 set decodes too.
  return f.amd ? MatmulChoice::Avx512PanelsAvx2Decode : MatmulChoice::Avx512;
}

// The table for a CPU with features f, with the blocked matmul from `mm`.
CpuKernels build(const CpuFeatures& f, MatmulChoice mm) {
  CpuKernels k = scalar_table();
#if defined(CXR_X86_KERNEL_SETS)
  if (f.avx2_level()) {
    k.level = "avx2";
    detail::install_avx2_types(k);
    detail::install_avx2_rows(k);
    detail::install_avx2_attention(k);
    switch (mm) {
      case MatmulChoice::None: break;
      case MatmulChoice::Avx2:
        detail::install_avx2_matmul(k, detail::kAllMatmul);
        k.matmul = "avx2";
        break;
      case MatmulChoice::Avx512:
        detail::install_avx512_matmul(k, detail::kAllMatmul);
        k.matmul = "avx512vnni";
        break;
      case MatmulChoice::Avx512PanelsAvx2Decode:
        detail::install_avx512_matmul(k, detail::kPanels);
        detail::install_avx2_matmul(k, detail::kDecode);
        k.matmul = "avx512vnni+avx2";
        break;
    }
  }
#elif defined(__ARM_NEON)
  if (f.neon) {
    k.level = "neon";
    detail::install_neon_types(k);
  }
#endif
  (void)f;
  (void)mm;
  return k;
}

const CpuKernels& best() {
  static const CpuKernels k = build(cpu_features(), matmul_choice(cpu_features()));
  return k;
}

std::atomic<bool> g_force_scalar{scalar_forced_by_env()};
std::atomic<const CpuKernels*> g_override{nullptr};

}  // namespace

const TypeTraits& CpuKernels::type(DType t) const {
  for (int i = 0; i < kCpuTypeSlots; ++i)
    if (kTypes[i] == t) return types[i];
  return type_traits_reference(t);  // throws the "unknown tensor type" error
}

const CpuKernels& cpu_kernels_scalar() {
  static const CpuKernels k = scalar_table();
  return k;
}

const CpuKernels& cpu_kernels() {
  if (g_force_scalar.load(std::memory_order_relaxed)) return cpu_kernels_scalar();
  if (const CpuKernels* o = g_override.load(std::memory_order_relaxed)) return *o;
  return best();
}

const CpuKernels* cpu_kernels_for(CpuIsa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case CpuIsa::Scalar: return &cpu_kernels_scalar();
    case CpuIsa::Avx2:
      if (!f.avx2_level()) return nullptr;
      {
        static const CpuKernels k = build(f, MatmulChoice::Avx2);
        return &k;
      }
    case CpuIsa::Avx512:
      if (!f.avx512_level()) return nullptr;
      {
        static const CpuKernels k = build(f, MatmulChoice::Avx512);
        return &k;
      }
    case CpuIsa::Neon:
      if (!f.neon) return nullptr;
      {
        static const CpuKernels k = build(f, MatmulChoice::None);
        return &k;
      }
  }
  return nullptr;
}

CpuKernels without_blocked_matmul(CpuKernels k) {
  k.matmul = "none";
  k.panels = PanelKernels{};
  k.gemv = GemvKernels{};
  return k;
}

namespace detail {

void install_type_kernels(CpuKernels& k, const TypeKernelSet* sets, size_t n) {
  for (size_t i = 0; i < n; ++i)
    for (TypeTraits& t : k.types) {
      if (t.type != sets[i].type) continue;
      if (sets[i].to_float) t.to_float = sets[i].to_float;
      if (sets[i].from_float) t.from_float = sets[i].from_float;
      if (sets[i].vec_dot) t.vec_dot = sets[i].vec_dot;
    }
}

}  // namespace detail

void override_cpu_kernels(const CpuKernels* k) { g_override.store(k); }

const char* simd_level() { return cpu_kernels().level; }

void force_scalar_kernels(bool on) { g_force_scalar.store(on); }

}  // namespace cxr
