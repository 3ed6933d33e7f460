// addon.h - shared pieces of the Node binding: error conversion and per-env state.
//
// The binding only converts: options are validated in lib/ (TypeScript) before
// they get here, so C++ copies them into plain engine structs and trusts them.
#pragma once
#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "types/error.h"
#include "format/gguf.h"
#include "runtime/image_store.h"

namespace cxrnode {

// A JS Error carrying the engine's `.code` (e.g. "ERR_GGUF").
Napi::Error to_js_error(Napi::Env env, const std::string& code, const std::string& message);

// Metadata and tensor table of a GGUF file as a JS object (arrays longer than 64
// elements are summarised unless `full`).
Napi::Object gguf_info_to_js(Napi::Env env, const cxr::GgufFile& f, bool full);

// Per-environment bookkeeping, so the process can exit cleanly while
// generations run: when the environment is torn down, every running
// generation is aborted and its thread waited for before anything is freed.
struct AddonData {
  std::mutex mu;
  std::condition_variable cv;
  std::set<std::shared_ptr<std::atomic<bool>>> running;  // abort flags of live engine threads
  std::map<void*, std::function<void()>> stoppers;       // how to stop each (keyed by its flag)
  Napi::FunctionReference* image_ctor = nullptr;          // NativeImage (image_handle.cpp), freed by a cleanup hook

  ~AddonData() {
    std::unique_lock<std::mutex> lock(mu);
    for (auto& flag : running) flag->store(true);
    for (auto& s : stoppers) s.second();
    cv.wait(lock, [&] { return running.empty(); });
  }
};

Napi::Object init_model(Napi::Env env, Napi::Object exports);
Napi::Object init_tensor_utils(Napi::Env env, Napi::Object exports);
Napi::Object init_image(Napi::Env env, Napi::Object exports);
Napi::Object init_image_handle(Napi::Env env, Napi::Object exports);

// An encoded image kept in the engine, wrapped for JS (a NativeImage), and back.
// unwrap throws a JS error when `v` is not a live NativeImage.
Napi::Object new_image_handle(Napi::Env env, std::shared_ptr<cxr::ImageEmbedding> image);
std::shared_ptr<cxr::ImageEmbedding> unwrap_image_handle(Napi::Env env, Napi::Value v);

}  // namespace cxrnode
