// backend.cpp - the one place that turns a backend name into a backend.
//
// The CUDA entry points below exist in every build: backend/cuda/ defines
// them when CMake builds that folder (CXR_CUDA), backend/no_cuda.cpp in every
// other build (npm install's node-gyp build, CXR_CUDA=OFF, no nvcc), where
// they say how to get a CUDA build. No source is compiled differently in the
// two builds, so turning CUDA on only adds files to an existing build.
#include "backend/backend.h"

#include <vector>

#include "format/gguf.h"
#include "types/error.h"
#include "types/quants.h"

namespace cxr {

// Whether this build contains the CUDA backend.
bool cuda_built();
// True when CUDA device `device` can run the backend; `what` says what was
// found (the GPU) or why not (not built, no driver, no device, compute
// capability < 8.0).
bool cuda_usable(int device, std::string* what);
// The CUDA backend on `device`; throws EngineError(kBackend) saying why not.
std::unique_ptr<Backend> make_cuda_backend(int device);

TensorView tensor_view(const GgufTensor& t) {
  TensorView v;
  v.name = t.name;
  v.type = t.type;
  v.cols = t.ne[0];
  v.rows = t.ne[1] * t.ne[2] * t.ne[3];
  v.data = t.data;
  v.file_mapped = true;
  return v;
}

const char* op_name(Op op) {
  switch (op) {
    case Op::Matmul: return "matmul";
    case Op::GetRows: return "get_rows";
    case Op::StoreRows: return "store_rows";
    case Op::Attention: return "attention";
    case Op::KvCache: return "kv_cache";
    case Op::Rmsnorm: return "rmsnorm";
    case Op::Layernorm: return "layernorm";
    case Op::Rope: return "rope";
    case Op::SiluMul: return "silu_mul";
    case Op::Gelu: return "gelu";
    case Op::Add: return "add";
    case Op::AddBroadcast: return "add_broadcast";
    case Op::Im2col: return "im2col";
    case Op::Argmax: return "argmax";
    case Op::TopK: return "top_k";
  }
  return "?";
}

std::unique_ptr<Weight> Backend::upload(const TensorView& t, WeightUse use) {
  if (use == WeightUse::Vector) {
    // Converted here, once, with the reference converters: every backend gets
    // the same F32 values (the models read them so before the seam owned them).
    std::vector<float> f32(static_cast<size_t>(t.rows * t.cols));
    type_traits_reference(t.type).to_float(t.data, f32.data(), t.rows * t.cols);
    TensorView v = t;
    v.type = DType::F32;
    v.data = f32.data();
    return make_weight(v, use);
  }
  const auto refuse = [&](Op op) {
    throw EngineError(err::kModel, "tensor " + t.name + " has type " + dtype_name(t.type) + ", which the " + name() +
                                       " backend cannot run " + op_name(op) + " on");
  };
  if (!supports(Op::Matmul, t.type)) refuse(Op::Matmul);
  if (use == WeightUse::Rows && !supports(Op::GetRows, t.type)) refuse(Op::GetRows);
  return make_weight(t, use);
}

bool supports_engine_types(Op op, DType type) {
    switch (op) {
      case Op::Matmul:
      case Op::GetRows:
        return type == DType::F32 || type == DType::F16 || type == DType::BF16 || type == DType::Q8_0 ||
               type == DType::Q4_0 || type == DType::Q4_K || type == DType::Q6_K;
      case Op::StoreRows:
      case Op::Attention:
      case Op::KvCache:
        return type == DType::F32 || type == DType::F16;
      default:
        return type == DType::F32;
    }
}

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
