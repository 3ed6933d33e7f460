// test_backend_choice.cpp - choose_backend(): "cpu", "cuda" and "auto", and the
// reason each choice gives, in whatever build and on whatever machine this runs
// (a CPU-only build, a CUDA build without a GPU, a GPU machine).
#include <string>

#include "backend/backend.h"
#include "types/error.h"
#include "support/test.h"

using namespace cxr;

namespace {

bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

bool built_with_cuda() {
  for (const auto& n : backend_names())
    if (n == "cuda") return true;
  return false;
}

}  // namespace

TEST(choose_backend_cpu_says_it_was_asked_for) {
  BackendChoice c = choose_backend("cpu", 1, 0);
  CHECK(std::string(c.backend->name()) == "cpu");
  CHECK(c.reason == "cpu: asked for");
}

TEST(choose_backend_auto_falls_back_to_the_cpu_with_the_reason) {
  BackendChoice c = choose_backend("auto", 1, 0);
  CHECK(has(c.reason, "auto: "));
  if (std::string(c.backend->name()) == "cpu") {
    CHECK(has(c.reason, "so the CPU"));
    // The reason names what was missing: the CUDA backend in this build, or a usable GPU.
    CHECK(built_with_cuda() ? has(c.reason, "CUDA not usable") : has(c.reason, "npm run build:cuda"));
  } else {
    CHECK(built_with_cuda() && std::string(c.backend->name()) == "cuda");
    CHECK(has(c.reason, "compute capability"));
  }
}

TEST(choose_backend_cuda_fails_clearly_where_it_cannot_run) {
  // On a GPU machine with a CUDA build this succeeds, and says which device.
  try {
    BackendChoice c = choose_backend("cuda", 1, 0);
    CHECK(built_with_cuda());
    CHECK(std::string(c.backend->name()) == "cuda");
    CHECK(has(c.reason, "cuda: asked for; CUDA device 0: "));
  } catch (const EngineError& e) {
    CHECK(e.code() == "ERR_BACKEND");
    if (!built_with_cuda()) CHECK(has(e.what(), "has no CUDA backend: build it from source with `npm run build:cuda`"));
    else CHECK(has(e.what(), "CUDA backend: "));
  }
}

TEST(choose_backend_a_device_that_is_not_there_is_named) {
  if (!built_with_cuda()) CHECK_THROWS(choose_backend("cuda", 1, 7), "npm run build:cuda");
  else CHECK_THROWS(choose_backend("cuda", 1, 1023), "CUDA backend: ");
}

TEST(choose_backend_an_unknown_name_lists_the_known_ones) {
  CHECK_THROWS(choose_backend("metal", 1, 0), "unknown backend \"metal\"; this build has: ");
}
