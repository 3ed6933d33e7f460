// test_conformance.cpp - the seam's conformance suite (conformance/) on the
// CPU backend. CI runs cxr-tests twice, so the suite checks the SIMD kernels
// and, under CXR_FORCE_SCALAR=1, the scalar ones. Alone: `cxr-tests conformance_cpu`.
#include <cstdio>

#include "backend/backend.h"
#include "backend/conformance/conformance.h"
#include "backend/cpu/cpu_kernels.h"
#include "support/test.h"

TEST(conformance_cpu) {
  auto be = cxr::make_backend("cpu", 2);
  const cxrtest::conformance::Result r = cxrtest::conformance::run(*be);
  std::printf("# conformance cpu (%s): %d cases, %d failed, %d skipped\n", cxr::simd_level(), r.cases, r.failed,
              r.skipped);
  CHECK(r.failed == 0);
  CHECK(r.skipped == 0);  // the CPU runs every op on every type the suite uses
  CHECK(r.cases > 300);   // the suite ran, not an empty list
}
