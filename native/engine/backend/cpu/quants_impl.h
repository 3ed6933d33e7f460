// quants_impl.h - the seam between dispatch.cpp and the SIMD kernel files.
//
// dispatch.cpp copies the scalar reference table (types/quants.h), and lets the SIMD file for the
// running CPU overwrite the slots it has faster kernels for. A slot left alone
// keeps the scalar kernel, so a partial SIMD port is always safe.
#pragma once
#include <cstddef>

#include "types/quants.h"

namespace cxr {
namespace detail {

#if defined(__x86_64__) || defined(_M_X64)
// Defined in quants_avx2.cpp. Call only after the CPU reported avx2, fma and f16c.
void install_avx2_kernels(TypeTraits* table, size_t n);
#endif

#if defined(__ARM_NEON)
// Defined in quants_neon.cpp.
void install_neon_kernels(TypeTraits* table, size_t n);
#endif

}  // namespace detail
}  // namespace cxr
