// backend.cpp - the one place that turns a backend name into a backend.
//
// A backend folder that is not built defines nothing here: its entry is
// compiled in only when the build enables it (CMake option CXR_CUDA defines
// CXR_HAVE_CUDA and adds backend/cuda/), so the CPU-only builds never see it.
#include "backend/backend.h"

#include "types/error.h"

namespace cxr {

#if defined(CXR_HAVE_CUDA)
// Defined in backend/cuda/.
std::unique_ptr<Backend> make_cuda_backend(int threads);
#endif

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
  if (name == "cuda") return make_cuda_backend(threads);
#endif
  std::string known;
  for (const auto& n : backend_names()) known += (known.empty() ? "" : ", ") + n;
  throw EngineError(err::kArgument, "unknown backend \"" + name + "\"; this build has: " + known);
}

}  // namespace cxr
