// no_cuda.cpp - the CUDA entry points of a build without the CUDA backend
// (npm install, CXR_CUDA=OFF, or no nvcc): they say how to get one. CMake
// leaves this file out when it builds backend/cuda/, which defines them.
#include <memory>
#include <string>

#include "backend/backend.h"
#include "types/error.h"

namespace cxr {

namespace {
const char* const kNoCuda =
    "this build of cxr-llava has no CUDA backend: build it from source with `npm run build:cuda` "
    "(needs the CUDA toolkit and cmake)";
}  // namespace

bool cuda_built() { return false; }

bool cuda_usable(int, std::string* what) {
  *what = kNoCuda;
  return false;
}

std::unique_ptr<Backend> make_cuda_backend(int) { throw EngineError(err::kBackend, kNoCuda); }

}  // namespace cxr
