// dispatch.h - which CPU kernels run: the SIMD level of the running CPU and the
// per-type kernel table for it.
//
// The CPU is probed once. CXR_FORCE_SCALAR=1 in the environment (or
// force_scalar_kernels()) puts every CPU kernel on the scalar reference path,
// so the reference is tested as a whole.
#pragma once

#include "types/dtype.h"
#include "types/quants.h"

namespace cxr {

// Fastest kernels for the running CPU (the reference ones when forced scalar).
// Valid for every known DType.
const TypeTraits& type_traits(DType t);

// Name of the SIMD level type_traits() selected: "avx2", "neon" or "scalar".
const char* simd_level();

// Forces the scalar kernels (for tests and for comparing speed). Not thread-safe:
// call before any inference.
void force_scalar_kernels(bool on);

// Whether the CPU has F16C (x86 only; false elsewhere).
bool cpu_has_f16c();

}  // namespace cxr
