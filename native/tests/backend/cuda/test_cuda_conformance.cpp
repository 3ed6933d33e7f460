// test_cuda_conformance.cpp - the seam's conformance suite (conformance/), the
// same cases and tolerances the CPU backend passes in test_conformance.cpp, on
// the CUDA backend. Without a usable GPU (or in a build without the CUDA
// backend) it says so in one line and checks that choosing "cuda" fails with
// that reason. Run it alone with `cxr-tests cuda_conformance`.
#include <cstdio>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/conformance/conformance.h"
#include "support/test.h"
#include "types/error.h"

namespace cxr {
bool cuda_usable(int device, std::string* what);
}

TEST(cuda_conformance) {
  std::string why;
  if (!cxr::cuda_usable(0, &why)) {
    std::printf("# cuda conformance skipped: %s\n", why.c_str());
    CHECK_THROWS(cxr::choose_backend("cuda", 1, 0), why.c_str());
    return;
  }
  auto be = cxr::make_backend("cuda", 0);
  const cxrtest::conformance::Result r = cxrtest::conformance::run(*be);
  std::printf("# conformance cuda: %d cases, %d failed, %d skipped\n", r.cases, r.failed, r.skipped);
  CHECK(r.failed == 0);
  CHECK(r.cases > 300);
}
