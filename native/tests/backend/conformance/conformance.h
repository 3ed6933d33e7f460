// conformance.h - the seam's conformance suite: every op of backend.h, with
// every weight type an op takes and a few shapes each (odd sizes, one row,
// many rows), run on one backend through alloc / from_host / to_host /
// upload only and checked against scalar references written in the suite
// (and the types/ reference converters), each within a named tolerance.
//
// A backend is checked by running this same suite on it: test_conformance.cpp
// does so for the CPU (CI runs it with SIMD and with CXR_FORCE_SCALAR=1),
// cuda/test_cuda_conformance.cpp for CUDA where a GPU is present.
// CXR_CONFORMANCE_VERBOSE=1 prints every case's measured error.
#pragma once
#include "backend/backend.h"

namespace cxrtest {
namespace conformance {

struct Result {
  int cases = 0;    // checks made
  int failed = 0;   // of which failed (each printed with its op, shape, error and tolerance)
  int skipped = 0;  // cases not run because the backend does not support their type (printed)
};

// Runs the whole suite on `be`; `quiet` keeps failing cases from being
// printed (for the test that feeds it backends meant to fail).
Result run(cxr::Backend& be, bool quiet = false);

}  // namespace conformance
}  // namespace cxrtest
