// backend.cpp - the one place that turns a backend name into a backend.
//
// The CUDA entry points below exist in every build: backend/cuda/ defines
// them when CMake builds that folder (CXR_CUDA), backend/no_cuda.cpp in every
// other build (npm install's node-gyp build, CXR_CUDA=OFF, no nvcc), where
// they say how to get a CUDA build. No source is compiled differently in the
// two builds, so turning CUDA on only adds files to an existing build.
#include "backend/backend.h"

#include "types/error.h"

namespace cxr {

// Whether this build contains the CUDA backend.
bool cuda_built();
// True when CUDA device `device` can run the backend; `what` says what was
// found (the GPU) or why not (not built, no driver, no device, compute
// capability < 8.0).
bool cuda_usable(int device, std::string* what);
// The CUDA backend on `device`; throws EngineError(kBackend) saying why not.
std::unique_ptr<Backend> make_cuda_backend(int device);

std::vector<std::string> backend_names() {
  std::vector<std::string> names;
  if (cuda_built()) names.push_back("cuda");
  names.push_back("cpu");
  return names;
}

std::unique_ptr<Backend> make_backend(const std::string& name, int threads) {
  if (name == "cpu") return make_cpu_backend(threads);
  if (name == "cuda") return make_cuda_backend(0);
  std::string known;
  for (const auto& n : backend_names()) known += (known.empty() ? "" : ", ") + n;
  throw EngineError(err::kArgument, "unknown backend \"" + name + "\"; this build has: " + known);
}

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
  std::string what;
  const bool usable = cuda_usable(device, &what);
  if (usable || name == "cuda") {
    c.backend = make_cuda_backend(device);  // throws, saying `what`, when not usable
    c.reason = (name == "auto" ? "auto: " : "cuda: asked for; ") + what;
    return c;
  }
  c.backend = make_cpu_backend(threads);
  c.reason = cuda_built() ? "auto: CUDA not usable (" + what + "), so the CPU" : "auto: " + what + ", so the CPU";
  return c;
}

}  // namespace cxr
