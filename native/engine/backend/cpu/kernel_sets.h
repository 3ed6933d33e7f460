// kernel_sets.h - the seam between cpu_kernels.cpp and the files that hold
// kernels: each set writes its kernels into the slots of a CpuKernels table it
// is handed, and touches no other slot.
//
// cpu_kernels.cpp calls an instruction-set file's functions only after
// cpu_features() reported every extension that file is compiled for.
#pragma once

#include "backend/cpu/cpu_kernels.h"

namespace cxr {
namespace detail {

// A set's faster kernels for one tensor type; a nullptr keeps the slot as it is.
struct TypeKernelSet {
  DType type;
  void (*to_float)(const void* src, float* dst, int64_t n);
  void (*from_float)(const float* src, void* dst, int64_t n);
  void (*vec_dot)(int64_t n, float* s, const void* x, const void* y);
};
// Writes the non-null kernels of sets[0..n) into k's per-type entries (cpu_kernels.cpp).
void install_type_kernels(CpuKernels& k, const TypeKernelSet* sets, size_t n);

// scalar_kernels.cpp: the rows and attention slots, plain C++ (the per-type
// slots come from types/quants.h).
void install_scalar_kernels(CpuKernels& k);

// Which blocked-matmul sub-tables a set fills: the prompt panels, the decode
// kernels, or both.
enum MatmulPart : unsigned { kPanels = 1, kDecode = 2, kAllMatmul = 3 };

// The x86 sets need GCC or clang (target attributes, cpuid.h); elsewhere
// the table keeps its scalar kernels.
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define CXR_X86_KERNEL_SETS 1
// x86/: AVX2 + FMA + F16C.
void install_avx2_types(CpuKernels& k);       // quants_avx2.cpp: per-type slots
void install_avx2_rows(CpuKernels& k);        // rows_avx2.cpp
void install_avx2_attention(CpuKernels& k);   // attention_avx2.cpp
void install_avx2_matmul(CpuKernels& k, unsigned parts);    // gemm_avx2.cpp
// x86/: AVX-512 F/BW/VL/DQ/VNNI on top of the AVX2 set.
void install_avx512_matmul(CpuKernels& k, unsigned parts);  // gemm_avx512.cpp
#endif

#if defined(__ARM_NEON)
// arm/quants_neon.cpp: per-type slots.
void install_neon_types(CpuKernels& k);
#endif

}  // namespace detail
}  // namespace cxr
