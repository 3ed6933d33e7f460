// addon.cpp - module entry point: registers the model class, the encoded-image handle, the image preprocessing and the tensor utilities.
#include "addon.h"
#include "types/limits.h"

namespace cxrnode {

Napi::Error to_js_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", Napi::String::New(env, code));
  return e;
}

}  // namespace cxrnode

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new cxrnode::AddonData();
  env.SetInstanceData<cxrnode::AddonData>(data);
  cxrnode::init_model(env, exports);
  cxrnode::init_tensor_utils(env, exports);
  cxrnode::init_image(env, exports);
  cxrnode::init_image_handle(env, exports);
  // The size limits, read by lib/ so both sides check against one definition.
  Napi::Object limits = Napi::Object::New(env);
  limits.Set("maxImagePixels", Napi::Number::New(env, static_cast<double>(cxr::limits::kMaxImagePixels)));
  limits.Set("maxContext", Napi::Number::New(env, static_cast<double>(cxr::limits::kMaxContext)));
  limits.Set("maxThreads", cxr::limits::kMaxThreads);
  limits.Set("maxLogprobs", cxr::limits::kMaxLogprobs);
  limits.Freeze();
  exports.Set("limits", limits);
  return exports;
}

NODE_API_MODULE(cxr_llava, Init)
