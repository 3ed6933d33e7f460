// image_handle.cpp - an encoded image kept in the engine, as JS holds it.
//
//   handle.rows, handle.dim   the embeddings' shape
//   handle.read()   -> Float32Array   a copy of the embeddings (rows * dim floats)
//   handle.release()                  lets go now instead of at garbage collection
//   handle.released -> boolean
//
// The handle holds the engine's ImageEmbedding (runtime/image_store.h), so the
// backend memory lives while JS can reach the handle or a generation reads it,
// and not past the model: once the model is closed, read() throws
// ERR_MODEL_CLOSED. V8 is told how much memory each handle keeps (external
// memory), so dropping many of them prompts a collection.
#include <cstring>

#include "addon.h"
#include "runtime/image_store.h"

namespace cxrnode {
namespace {

class ImageWrap : public Napi::ObjectWrap<ImageWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeImage",
                       {InstanceAccessor("rows", &ImageWrap::Rows, nullptr),
                        InstanceAccessor("dim", &ImageWrap::Dim, nullptr),
                        InstanceAccessor("released", &ImageWrap::Released, nullptr),
                        InstanceMethod("read", &ImageWrap::Read), InstanceMethod("release", &ImageWrap::Release)});
  }

  explicit ImageWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ImageWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "NativeImage cannot be constructed directly; use model.encodeImage()");
    image_ = *info[0].As<Napi::External<std::shared_ptr<cxr::ImageEmbedding>>>().Data();
    rows_ = image_->rows();
    dim_ = image_->dim();
    accounted_ = static_cast<int64_t>(image_->bytes());
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), accounted_);
  }

  void Finalize(Napi::Env env) override { drop(env); }

  std::shared_ptr<cxr::ImageEmbedding> image() const { return image_; }

 private:
  void drop(Napi::Env env) {
    if (!image_) return;
    image_.reset();  // the engine frees the memory on its thread
    Napi::MemoryManagement::AdjustExternalMemory(env, -accounted_);
    accounted_ = 0;
  }

  Napi::Value Rows(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(rows_)); }
  Napi::Value Dim(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(dim_)); }
  Napi::Value Released(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !image_); }

  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!image_) throw to_js_error(env, "ERR_IMAGE_DISPOSED", "this encoded image was disposed; encode the image again");
    auto out = Napi::Float32Array::New(env, static_cast<size_t>(rows_ * dim_));
    try {
      image_->to_host(out.Data());
    } catch (const cxr::EngineError& e) {
      throw to_js_error(env, e.code(), e.what());
    }
    return out;
  }

  Napi::Value Release(const Napi::CallbackInfo& info) {
    drop(info.Env());
    return info.Env().Undefined();
  }

  std::shared_ptr<cxr::ImageEmbedding> image_;
  int64_t rows_ = 0, dim_ = 0;
  int64_t accounted_ = 0;
};

}  // namespace

Napi::Object init_image_handle(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = ImageWrap::Define(env);
  auto* ctor = new Napi::FunctionReference(Napi::Persistent(cls));
  env.AddCleanupHook([ctor] { delete ctor; });
  env.GetInstanceData<AddonData>()->image_ctor = ctor;
  exports.Set("NativeImage", cls);
  return exports;
}

Napi::Object new_image_handle(Napi::Env env, std::shared_ptr<cxr::ImageEmbedding> image) {
  Napi::FunctionReference* ctor = env.GetInstanceData<AddonData>()->image_ctor;
  return ctor->New({Napi::External<std::shared_ptr<cxr::ImageEmbedding>>::New(env, &image)});
}

std::shared_ptr<cxr::ImageEmbedding> unwrap_image_handle(Napi::Env env, Napi::Value v) {
  Napi::FunctionReference* ctor = env.GetInstanceData<AddonData>()->image_ctor;
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor->Value()))
    throw to_js_error(env, cxr::err::kArgument, "an image segment needs a NativeImage from encodeImage()");
  std::shared_ptr<cxr::ImageEmbedding> image = ImageWrap::Unwrap(v.As<Napi::Object>())->image();
  if (!image) throw to_js_error(env, "ERR_IMAGE_DISPOSED", "this encoded image was disposed; encode the image again");
  return image;
}

}  // namespace cxrnode
