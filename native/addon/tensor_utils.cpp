// tensor_utils.cpp - stateless functions: quantize/dequantize for the converter
// and the tests, GGUF inspection for `cxr-llava info`, and the CPU feature level.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "addon.h"
#include "types/dtype.h"
#include "format/gguf.h"
#include "backend/cpu/cpu_kernels.h"
#include "types/quants.h"

namespace cxrnode {
namespace {

cxr::DType parse_type(const Napi::Env& env, const Napi::Value& v) {
  cxr::DType t;
  std::string name = v.As<Napi::String>().Utf8Value();
  if (!cxr::dtype_from_name(name.c_str(), &t)) throw to_js_error(env, cxr::err::kArgument, "unknown tensor type " + name);
  return t;
}

// The (type, Float32Array data, rows, cols) arguments of quantize and
// quantizeAsync, checked against each other.
struct QuantizeArgs {
  cxr::DType type;
  Napi::Float32Array src;
  int64_t rows, cols;
};

QuantizeArgs quantize_args(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  QuantizeArgs a{parse_type(env, info[0]), info[1].As<Napi::Float32Array>(), info[2].As<Napi::Number>().Int64Value(),
                 info[3].As<Napi::Number>().Int64Value()};
  if (a.rows * a.cols != static_cast<int64_t>(a.src.ElementLength()))
    throw to_js_error(env, cxr::err::kArgument, "data has " + std::to_string(a.src.ElementLength()) +
                                                    " elements, expected rows*cols = " + std::to_string(a.rows * a.cols));
  if (a.cols % cxr::dtype_block_size(a.type) != 0)
    throw to_js_error(env, cxr::err::kArgument, "rows of " + std::to_string(a.cols) + " elements cannot be stored as " +
                                                    cxr::dtype_name(a.type) + " (block size " +
                                                    std::to_string(cxr::dtype_block_size(a.type)) + ")");
  return a;
}

// quantize(type, Float32Array data, rows, cols) -> Uint8Array
Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const QuantizeArgs a = quantize_args(info);
  const cxr::DType t = a.type;
  auto src = a.src;
  const int64_t rows = a.rows, cols = a.cols;
  const size_t bytes = static_cast<size_t>(rows) * cxr::dtype_row_bytes(t, cols);
  auto out = Napi::Uint8Array::New(env, bytes);
  try {
    cxr::quantize_weights(t, src.Data(), out.Data(), rows, cols);
  } catch (const cxr::EngineError& e) {
    throw to_js_error(env, e.code(), e.what());
  }
  return out;
}

// quantizeAsync(type, Float32Array data, rows, cols) -> Promise<Uint8Array>.
// The converter's workhorse: rows are split over every hardware thread, off
// the JS thread, so a 7B conversion uses the whole machine and the event loop
// (progress bars) stays free.
class QuantizeWorker : public Napi::AsyncWorker {
 public:
  QuantizeWorker(Napi::Env env, cxr::DType t, Napi::Float32Array src, int64_t rows, int64_t cols)
      : Napi::AsyncWorker(env), t_(t), rows_(rows), cols_(cols), deferred_(Napi::Promise::Deferred::New(env)) {
    const size_t bytes = static_cast<size_t>(rows) * cxr::dtype_row_bytes(t, cols);
    Napi::Uint8Array out = Napi::Uint8Array::New(env, bytes);
    // The input is copied: a reference keeps a JS array from being collected,
    // but not from being detached (transferred to a worker) or written while
    // the worker threads read it. The output is ours until OnOK hands it to JS,
    // so no script can reach it before then; the reference keeps it alive.
    src_.assign(src.Data(), src.Data() + src.ElementLength());
    out_ref_ = Napi::Persistent(out);
    out_ = out.Data();
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    const int64_t n_threads =
        std::max<int64_t>(1, std::min<int64_t>(static_cast<int64_t>(std::thread::hardware_concurrency()), rows_));
    const size_t row_bytes = cxr::dtype_row_bytes(t_, cols_);
    std::vector<std::thread> threads;
    std::vector<std::string> errors(n_threads);
    for (int64_t i = 0; i < n_threads; ++i) {
      const int64_t r0 = rows_ * i / n_threads, r1 = rows_ * (i + 1) / n_threads;
      threads.emplace_back([&, i, r0, r1] {
        try {
          cxr::quantize_weights(t_, src_.data() + r0 * cols_, out_ + r0 * row_bytes, r1 - r0, cols_);
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      });
    }
    for (auto& th : threads) th.join();
    for (const auto& e : errors)
      if (!e.empty()) return SetError(e);
  }
  void OnOK() override { deferred_.Resolve(out_ref_.Value()); }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(to_js_error(Env(), cxr::err::kArgument, e.Message()).Value());
  }

 private:
  cxr::DType t_;
  int64_t rows_, cols_;
  Napi::Promise::Deferred deferred_;
  std::vector<float> src_;
  Napi::Reference<Napi::Uint8Array> out_ref_;
  uint8_t* out_ = nullptr;
};

Napi::Value QuantizeAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const QuantizeArgs a = quantize_args(info);
  const cxr::DType t = a.type;
  auto src = a.src;
  const int64_t rows = a.rows, cols = a.cols;
  auto* w = new QuantizeWorker(env, t, src, rows, cols);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// dequantize(type, Uint8Array bytes, n) -> Float32Array
Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cxr::DType t = parse_type(env, info[0]);
  auto src = info[1].As<Napi::Uint8Array>();
  const int64_t n = info[2].As<Napi::Number>().Int64Value();
  if (n % cxr::dtype_block_size(t) != 0 || cxr::dtype_row_bytes(t, n) != src.ByteLength())
    throw to_js_error(env, cxr::err::kArgument, "byte length does not match " + std::to_string(n) + " " +
                                                    cxr::dtype_name(t) + " elements");
  auto out = Napi::Float32Array::New(env, n);
  cxr::cpu_kernels().type(t).to_float(src.Data(), out.Data(), n);
  return out;
}

Napi::Value number_or_bigint(Napi::Env env, uint64_t v) {
  if (v <= (uint64_t{1} << 53)) return Napi::Number::New(env, static_cast<double>(v));
  return Napi::BigInt::New(env, v);
}
Napi::Value number_or_bigint(Napi::Env env, int64_t v) {
  if (v <= (int64_t{1} << 53) && v >= -(int64_t{1} << 53)) return Napi::Number::New(env, static_cast<double>(v));
  return Napi::BigInt::New(env, v);
}

bool is_signed(cxr::GgufType t) {
  return t == cxr::GgufType::INT8 || t == cxr::GgufType::INT16 || t == cxr::GgufType::INT32 ||
         t == cxr::GgufType::INT64;
}

// Arrays longer than this are summarised ({ type, length }) unless asked for in full.
constexpr uint64_t kArrayPreview = 64;

Napi::Value scalar_at(Napi::Env env, cxr::GgufType t, const uint8_t* p) {
  switch (t) {
    case cxr::GgufType::UINT8: return Napi::Number::New(env, p[0]);
    case cxr::GgufType::INT8: return Napi::Number::New(env, static_cast<int8_t>(p[0]));
    case cxr::GgufType::BOOL: return Napi::Boolean::New(env, p[0] != 0);
    case cxr::GgufType::UINT16: { uint16_t v; std::memcpy(&v, p, 2); return Napi::Number::New(env, v); }
    case cxr::GgufType::INT16: { int16_t v; std::memcpy(&v, p, 2); return Napi::Number::New(env, v); }
    case cxr::GgufType::UINT32: { uint32_t v; std::memcpy(&v, p, 4); return Napi::Number::New(env, v); }
    case cxr::GgufType::INT32: { int32_t v; std::memcpy(&v, p, 4); return Napi::Number::New(env, v); }
    case cxr::GgufType::FLOAT32: { float v; std::memcpy(&v, p, 4); return Napi::Number::New(env, v); }
    case cxr::GgufType::UINT64: { uint64_t v; std::memcpy(&v, p, 8); return number_or_bigint(env, v); }
    case cxr::GgufType::INT64: { int64_t v; std::memcpy(&v, p, 8); return number_or_bigint(env, v); }
    case cxr::GgufType::FLOAT64: { double v; std::memcpy(&v, p, 8); return Napi::Number::New(env, v); }
    default: return env.Undefined();
  }
}

size_t scalar_size(cxr::GgufType t) {
  switch (t) {
    case cxr::GgufType::UINT8: case cxr::GgufType::INT8: case cxr::GgufType::BOOL: return 1;
    case cxr::GgufType::UINT16: case cxr::GgufType::INT16: return 2;
    case cxr::GgufType::UINT32: case cxr::GgufType::INT32: case cxr::GgufType::FLOAT32: return 4;
    default: return 8;
  }
}

Napi::Value value_to_js(Napi::Env env, const cxr::GgufValue& v, bool full) {
  switch (v.type) {
    case cxr::GgufType::STRING: return Napi::String::New(env, std::string(v.str));
    case cxr::GgufType::BOOL: return Napi::Boolean::New(env, v.num.u64 != 0);
    case cxr::GgufType::FLOAT32: case cxr::GgufType::FLOAT64: return Napi::Number::New(env, v.num.f64);
    case cxr::GgufType::ARRAY: {
      if (!full && v.count > kArrayPreview) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("type", Napi::String::New(env, std::string("array<") + cxr::gguf_type_name(v.elem_type) + ">"));
        o.Set("length", Napi::Number::New(env, static_cast<double>(v.count)));
        return o;
      }
      Napi::Array a = Napi::Array::New(env, v.count);
      for (uint32_t i = 0; i < v.count; ++i) {
        if (v.elem_type == cxr::GgufType::STRING) a.Set(i, Napi::String::New(env, std::string(v.strs[i])));
        else if (v.elem_type == cxr::GgufType::ARRAY) a.Set(i, value_to_js(env, v.items[i], full));
        else a.Set(i, scalar_at(env, v.elem_type, v.raw + i * scalar_size(v.elem_type)));
      }
      return a;
    }
    default:
      return is_signed(v.type) ? number_or_bigint(env, v.num.i64) : number_or_bigint(env, v.num.u64);
  }
}

}  // namespace

Napi::Object gguf_info_to_js(Napi::Env env, const cxr::GgufFile& f, bool full) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", f.path());
  o.Set("version", f.version());
  o.Set("fileSize", Napi::Number::New(env, static_cast<double>(f.file_size())));
  o.Set("alignment", Napi::Number::New(env, static_cast<double>(f.alignment())));
  o.Set("dataOffset", Napi::Number::New(env, static_cast<double>(f.data_offset())));
  Napi::Object meta = Napi::Object::New(env);
  // Defined, not assigned: a key such as "__proto__" must become a property of its own, not the prototype.
  for (const auto& kv : f.kvs())
    meta.DefineProperty(Napi::PropertyDescriptor::Value(kv.key, value_to_js(env, kv.value, full), napi_default_jsproperty));
  o.Set("metadata", meta);
  Napi::Array ts = Napi::Array::New(env, f.tensors().size());
  uint32_t i = 0;
  for (const auto& t : f.tensors()) {
    Napi::Object to = Napi::Object::New(env);
    to.Set("name", t.name);
    to.Set("type", cxr::dtype_name(t.type));
    Napi::Array ne = Napi::Array::New(env, t.n_dims);
    for (uint32_t d = 0; d < t.n_dims; ++d) ne.Set(d, Napi::Number::New(env, static_cast<double>(t.ne[d])));
    to.Set("ne", ne);
    to.Set("offset", Napi::Number::New(env, static_cast<double>(t.offset)));
    to.Set("bytes", Napi::Number::New(env, static_cast<double>(t.nbytes)));
    ts.Set(i++, to);
  }
  o.Set("tensors", ts);
  return o;
}

namespace {

// ggufInfo(path, full) -> { path, version, fileSize, metadata, tensors }
Napi::Value GgufInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const bool full = info.Length() > 1 && info[1].ToBoolean().Value();
  try {
    auto f = cxr::GgufFile::open(path);
    return gguf_info_to_js(env, *f, full);
  } catch (const cxr::EngineError& e) {
    throw to_js_error(env, e.code(), e.what());
  }
}

Napi::Value SimdLevel(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), cxr::simd_level()); }

}  // namespace

Napi::Object init_tensor_utils(Napi::Env env, Napi::Object exports) {
  exports.Set("quantize", Napi::Function::New(env, Quantize, "quantize"));
  exports.Set("quantizeAsync", Napi::Function::New(env, QuantizeAsync, "quantizeAsync"));
  exports.Set("dequantize", Napi::Function::New(env, Dequantize, "dequantize"));
  exports.Set("ggufInfo", Napi::Function::New(env, GgufInfo, "ggufInfo"));
  exports.Set("simdLevel", Napi::Function::New(env, SimdLevel, "simdLevel"));
  return exports;
}

}  // namespace cxrnode
