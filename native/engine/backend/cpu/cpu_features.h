// cpu_features.h - what the running CPU can do, probed once.
//
// The one place that asks the CPU (cpuid on x86, the compile target on ARM)
// and reads CXR_FORCE_SCALAR; cpu_kernels.cpp turns the answers into the
// kernel table. The features are the hardware's whatever the environment says.
#pragma once

namespace cxr {

struct CpuFeatures {
  // x86: the AVX2 kernels need all three.
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  // x86: the AVX-512 matmul kernels need all five (VPDPBUSD on 512-bit vectors).
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;
  // An AMD core: Zen 4 splits each 512-bit op in two, so decoding takes the
  // AVX2 kernels there (cpu_kernels.cpp).
  bool amd = false;
  // ARM: built for NEON (always so on AArch64).
  bool neon = false;

  bool avx2_level() const { return avx2 && fma && f16c; }
  bool avx512_level() const { return avx2_level() && avx512f && avx512bw && avx512vl && avx512dq && avx512vnni; }
};

// The running CPU's features, probed on first use (thread-safely) and kept.
const CpuFeatures& cpu_features();

// CXR_FORCE_SCALAR=1 (any value but empty or "0") in the environment: the
// process starts on the scalar kernels, so CI can run every test on the
// reference path too. Read once.
bool scalar_forced_by_env();

}  // namespace cxr
