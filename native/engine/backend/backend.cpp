// backend.cpp - the one place that turns a backend name into a backend.
//
// A backend folder that is not built defines nothing here: its entry is
// compiled in only when the build enables it (CMake option CXR_CUDA defines
// CXR_HAVE_CUDA and adds backend/cuda/), so the CPU-only builds never see it.
#include "backend/backend.h"

#include "types/error.h"

namespace cxr {

#if defined(CXR_HAVE_CUDA)
// Defined in backend/cuda/backend_cuda.cu.
std::unique_ptr<Backend> make_cuda_backend(int device);
// True when CUDA device `device` can run the backend; `what` says what was
// found (the GPU) or why not (no driver, no device, compute capability < 8.0).
bool cuda_usable(int device, std::string* what);
#endif

namespace {
const char* const kNoCuda =
    "this build of cxr-llava has no CUDA backend: build it from source with `npm run build:cuda` "
    "(needs the CUDA toolkit and cmake)";
}  // namespace

std::vector<std::string> backend_names() {
  std::vector<std::string> names;
#if defined(CXR_HAVE_CUDA)
  names.push_back("cuda");
#endif
  names.push_back("cpu");
  return names;
}

std::unique_ptr<Backend> make_backend(const std::string& name, int threads) {
  if (name == "cpu") return make_cpu_backend(threads);
#if defined(CXR_HAVE_CUDA)
  if (name == "cuda") return make_cuda_backend(0);
#endif
  std::string known;
  for (const auto& n : backend_names()) known += (known.empty() ? "" : ", ") + n;
  throw EngineError(err::kArgument, "unknown backend \"" + name + "\"; this build has: " + known);
}

}  // namespace cxr

namespace cxr {

BackendChoice choose_backend(const std::string& name, int threads, int device) {
  BackendChoice c;
  if (name == "cpu") {
    c.backend = make_cpu_backend(threads);
    c.reason = "cpu: asked for";
    return c;
  }
  if (name != "cuda" && name != "auto") {
    c.backend = make_backend(name, threads);  // throws, naming the backends there are
    return c;
  }
#if defined(CXR_HAVE_CUDA)
  std::string what;
  const bool usable = cuda_usable(device, &what);
  if (usable || name == "cuda") {
    c.backend = make_cuda_backend(device);  // throws with `what` when not usable
    c.reason = (name == "auto" ? "auto: " : "cuda: asked for; ") + what;
    return c;
  }
  c.backend = make_cpu_backend(threads);
  c.reason = "auto: CUDA not usable (" + what + "), so the CPU";
#else
  if (name == "cuda") throw EngineError(err::kBackend, kNoCuda);
  c.backend = make_cpu_backend(threads);
  c.reason = std::string("auto: ") + kNoCuda + ", so the CPU";
#endif
  return c;
}

}  // namespace cxr
