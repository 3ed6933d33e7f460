// image_wrap.cpp - the official image preprocessing (native/engine/image.h) for JS.
//
//   preprocess({ data, width, height, channels, size, mean, std }) -> Promise<Float32Array>
//   preprocessGray8({ data, width, height, channels, size })       -> Promise<Uint8Array>
//   luma({ data, width, height, channels })                         -> Promise<Uint8Array>
//
// `data` is interleaved 8-bit pixels (1..4 channels) already decoded by lib/inputs/image.ts.
// Options are validated in JS; here only the byte length is checked, because a
// wrong one would read outside the buffer. The pixels are copied before the
// worker runs: JS could otherwise detach or reuse the buffer while it reads.
#include <cstring>
#include <new>
#include <vector>

#include "addon.h"
#include "image/image.h"

namespace cxrnode {
namespace {

// How far along the pipeline a job goes.
enum class Stage { kLuma, kCrop, kNormalized };

struct PreprocessJob {
  std::vector<uint8_t> pixels;
  int32_t width = 0, height = 0, channels = 0, size = 0;
  Stage stage = Stage::kNormalized;
  double mean = 0.0, std = 1.0;
};

class PreprocessWorker : public Napi::AsyncWorker {
 public:
  PreprocessWorker(Napi::Env env, PreprocessJob job)
      : Napi::AsyncWorker(env), job_(std::move(job)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      if (job_.stage == Stage::kLuma)
        gray_ = cxr::luma_from_pixels(job_.pixels.data(), job_.width, job_.height, job_.channels);
      else
        gray_ = cxr::preprocess_gray8(job_.pixels.data(), job_.width, job_.height, job_.channels, job_.size);
      job_.pixels = {};
      if (job_.stage == Stage::kNormalized) {
        normalized_.resize(gray_.data.size());
        cxr::normalize_gray8(gray_, job_.mean, job_.std, normalized_.data());
      }
    } catch (const cxr::EngineError& e) {
      code_ = e.code();
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      code_ = "ERR_NO_MEMORY";
      SetError("not enough memory to preprocess a " + std::to_string(job_.width) + "x" +
               std::to_string(job_.height) + " image");
    } catch (const std::exception& e) {
      code_ = "ERR_INTERNAL";
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (job_.stage == Stage::kNormalized) {
      auto out = Napi::Float32Array::New(env, normalized_.size());
      std::memcpy(out.Data(), normalized_.data(), normalized_.size() * sizeof(float));
      deferred_.Resolve(out);
    } else {
      auto out = Napi::Uint8Array::New(env, gray_.data.size());
      std::memcpy(out.Data(), gray_.data.data(), gray_.data.size());
      deferred_.Resolve(out);
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(to_js_error(Env(), code_, e.Message()).Value()); }

 private:
  PreprocessJob job_;
  Napi::Promise::Deferred deferred_;
  cxr::Gray8 gray_;
  std::vector<float> normalized_;
  std::string code_;
};

Napi::Value queue_preprocess(const Napi::CallbackInfo& info, Stage stage) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  PreprocessJob job;
  job.width = o.Get("width").As<Napi::Number>().Int32Value();
  job.height = o.Get("height").As<Napi::Number>().Int32Value();
  job.channels = o.Get("channels").As<Napi::Number>().Int32Value();
  job.stage = stage;
  if (stage != Stage::kLuma) job.size = o.Get("size").As<Napi::Number>().Int32Value();
  if (stage == Stage::kNormalized) {
    job.mean = o.Get("mean").As<Napi::Number>().DoubleValue();
    job.std = o.Get("std").As<Napi::Number>().DoubleValue();
  }
  auto data = o.Get("data").As<Napi::Uint8Array>();
  const uint64_t expected = static_cast<uint64_t>(job.width < 0 ? 0 : job.width) *
                            static_cast<uint64_t>(job.height < 0 ? 0 : job.height) *
                            static_cast<uint64_t>(job.channels < 0 ? 0 : job.channels);
  if (expected == 0 || data.ByteLength() != expected)
    throw to_js_error(env, cxr::err::kArgument,
                      "pixel data has " + std::to_string(data.ByteLength()) + " bytes, expected width*height*channels = " +
                          std::to_string(expected));
  job.pixels.assign(data.Data(), data.Data() + data.ByteLength());
  auto* w = new PreprocessWorker(env, std::move(job));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value Preprocess(const Napi::CallbackInfo& info) { return queue_preprocess(info, Stage::kNormalized); }
Napi::Value PreprocessGray8(const Napi::CallbackInfo& info) { return queue_preprocess(info, Stage::kCrop); }
Napi::Value Luma(const Napi::CallbackInfo& info) { return queue_preprocess(info, Stage::kLuma); }

}  // namespace

Napi::Object init_image(Napi::Env env, Napi::Object exports) {
  exports.Set("preprocess", Napi::Function::New(env, Preprocess, "preprocess"));
  exports.Set("preprocessGray8", Napi::Function::New(env, PreprocessGray8, "preprocessGray8"));
  exports.Set("luma", Napi::Function::New(env, Luma, "luma"));
  return exports;
}

}  // namespace cxrnode
