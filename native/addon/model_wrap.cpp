// model_wrap.cpp - the JS-facing model object.
//
// Each model has one engine thread (not libuv's pool, which would starve fs
// work during a minutes-long report) running its scheduler (scheduler.h):
// generations are handed to it and run together, image encodes run on it
// between steps. It talks to JS only through thread-safe functions, one per
// call, never blocking on them. Lifetimes: the engine thread holds the engine
// model by shared_ptr, so close() only shuts the scheduler down (everything
// running or waiting is aborted and reported); memory is freed when the thread
// ends.
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "addon.h"
#include "image/image.h"
#include "models/model.h"
#include "runtime/engine.h"
#include "backend/cpu/cpu_kernels.h"
#include "types/quants.h"

namespace cxrnode {
namespace {

// One message from a generation thread to JS.
struct Event {
  enum Kind { Token, Done, Encoded, Logits, Error } kind;
  cxr::GeneratedToken token;
  cxr::GenerateResult result;
  std::string code, message;
  std::vector<float> embd;  // Logits: [ids, vocab]
  double ms = 0;            // Encoded: time the vision tower took
  std::shared_ptr<cxr::ImageEmbedding> image;  // Encoded: the embeddings, kept in the engine
  double preprocess_ms = 0;                    // Encoded: time the preprocessing took
};

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod("info", &ModelWrap::Info),
                        InstanceMethod("tokenize", &ModelWrap::Tokenize),
                        InstanceMethod("detokenize", &ModelWrap::Detokenize),
                        InstanceMethod("tokenPiece", &ModelWrap::TokenPiece),
                        InstanceMethod("generate", &ModelWrap::Generate),
                        InstanceMethod("encodeImage", &ModelWrap::EncodeImage),
                        InstanceMethod("evalLogits", &ModelWrap::EvalLogits),
                        InstanceMethod("imageStats", &ModelWrap::ImageStats),
                        InstanceMethod("close", &ModelWrap::Close)});
  }

  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    // Constructed only by loadModel's completion, which passes the engine model.
    if (info.Length() != 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "NativeModel cannot be constructed directly; use loadModel()");
    auto* holder = info[0].As<Napi::External<std::shared_ptr<cxr::Engine>>>().Data();
    model_ = *holder;
    start_engine(info.Env());
  }

 private:
  struct Job;  // one call's state and its line to JS (below)

  cxr::Model& require_open(Napi::Env env) {
    if (!model_) throw to_js_error(env, "ERR_MODEL_CLOSED", "The model is closed");
    return model_->model();
  }
  void require_idle(Napi::Env env) {
    if (busy_ > 0) throw to_js_error(env, "ERR_BUSY", "A generation is already running on this model");
  }

  // The engine thread: runs the scheduler until close() or the environment's
  // teardown shuts it down, then lets go of the model.
  void start_engine(Napi::Env env) {
    AddonData* data = env.GetInstanceData<AddonData>();
    std::shared_ptr<cxr::Engine> model = model_;
    auto flag = std::make_shared<std::atomic<bool>>(false);
    {
      std::lock_guard<std::mutex> lock(data->mu);
      data->running.insert(flag);
      data->stoppers[flag.get()] = [model] { model->scheduler().shutdown(); };
    }
    std::thread([model, flag, data]() mutable {
      model->scheduler().run();
      model.reset();
      std::lock_guard<std::mutex> lock(data->mu);
      data->stoppers.erase(flag.get());
      data->running.erase(flag);
      data->cv.notify_all();
    }).detach();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    cxr::Model& m = require_open(env);
    Napi::Object o = gguf_info_to_js(env, m.file(), false);
    const cxr::LlamaConfig& c = m.text().config();
    Napi::Object hp = Napi::Object::New(env);
    hp.Set("vocabSize", c.n_vocab);
    hp.Set("embeddingLength", c.dim);
    hp.Set("blockCount", c.n_layers);
    hp.Set("headCount", c.n_heads);
    hp.Set("headCountKv", c.n_kv_heads);
    hp.Set("feedForwardLength", c.ffn_dim);
    hp.Set("contextLength", Napi::Number::New(env, static_cast<double>(c.ctx_train)));
    hp.Set("ropeFreqBase", c.rope_base);
    hp.Set("rmsNormEps", c.norm_eps);
    o.Set("hparams", hp);
    Napi::Object rt = Napi::Object::New(env);
    rt.Set("backend", m.backend().name());
    rt.Set("backendReason", m.backend_reason());
    if (std::string(m.backend().name()) == "cuda") rt.Set("device", m.device());
    rt.Set("threads", m.backend().threads());
    rt.Set("simd", cxr::simd_level());
    rt.Set("contextSize", Napi::Number::New(env, static_cast<double>(m.text().n_ctx())));
    rt.Set("parallel", m.text().n_seq());
    rt.Set("kvCacheSize", Napi::Number::New(env, static_cast<double>(m.text().cells().cells())));
    rt.Set("kvCacheBytes", Napi::Number::New(env, static_cast<double>(m.text().kv_bytes())));
    o.Set("runtime", rt);
    Napi::Object tk = Napi::Object::New(env);
    tk.Set("bos", m.tokenizer().bos());
    tk.Set("eos", m.tokenizer().eos());
    tk.Set("unk", m.tokenizer().unk());
    o.Set("tokenizer", tk);
    if (const cxr::VisionModel* v = m.vision()) {
      const cxr::VisionConfig& vc = v->config();
      Napi::Object vo = Napi::Object::New(env);
      vo.Set("path", m.mmproj_file()->path());
      vo.Set("fileSize", Napi::Number::New(env, static_cast<double>(m.mmproj_file()->file_size())));
      vo.Set("imageSize", vc.image_size);
      vo.Set("patchSize", vc.patch_size);
      vo.Set("channels", vc.channels);
      vo.Set("width", vc.width);
      vo.Set("blockCount", vc.n_layers);
      vo.Set("headCount", vc.n_heads);
      vo.Set("tokens", vc.n_patches());
      vo.Set("projectionDim", vc.proj_dim);
      vo.Set("mean", vc.mean.empty() ? 0.0 : vc.mean[0]);
      vo.Set("std", vc.std.empty() ? 1.0 : vc.std[0]);
      Napi::Object meta = gguf_info_to_js(env, *m.mmproj_file(), false);
      vo.Set("metadata", meta.Get("metadata"));
      vo.Set("tensors", meta.Get("tensors"));
      o.Set("vision", vo);
    }
    return o;
  }

  // imageStats() -> { count, bytes }: encoded images the engine holds for JS or generations.
  Napi::Value ImageStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    require_open(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("count", Napi::Number::New(env, static_cast<double>(model_->images().live())));
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(model_->images().live_bytes())));
    return o;
  }

  Napi::Value Tokenize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    cxr::Model& m = require_open(env);
    const std::string text = info[0].As<Napi::String>().Utf8Value();
    const bool bos = info[1].ToBoolean().Value();
    const bool special = info[2].ToBoolean().Value();
    std::vector<int32_t> ids = m.tokenizer().encode(text, bos, special);
    auto out = Napi::Int32Array::New(env, ids.size());
    std::copy(ids.begin(), ids.end(), out.Data());
    return out;
  }

  // Token ids are checked once, in lib/ (validate.ts tokenIds); the engine keeps
  // its own bounds checks where an id indexes memory. Copied: the JS array may
  // change or be detached once this call returns.
  static std::vector<int32_t> read_ids(Napi::Env, const Napi::Value& v, int32_t) {
    auto arr = v.As<Napi::Int32Array>();
    return std::vector<int32_t>(arr.Data(), arr.Data() + arr.ElementLength());
  }

  Napi::Value Detokenize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    cxr::Model& m = require_open(env);
    return Napi::String::New(env, m.tokenizer().decode(read_ids(env, info[0], m.tokenizer().n_vocab())));
  }

  Napi::Value TokenPiece(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    cxr::Model& m = require_open(env);
    const int32_t id = info[0].As<Napi::Number>().Int32Value();
    if (id < 0 || id >= m.tokenizer().n_vocab())
      throw to_js_error(env, cxr::err::kArgument, "token id " + std::to_string(id) + " is outside the vocabulary");
    return Napi::String::New(env, m.tokenizer().piece(id));
  }

  // evalLogits(ids, onEvent) -> abort function. On the engine thread like an
  // encode, without blocking the event loop. Exactly one
  // onEvent('logits', Float32Array) or onEvent('error', err).
  Napi::Value EvalLogits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    cxr::Model& m = require_open(env);
    require_idle(env);
    auto job = std::make_shared<Job>();
    job->ids = read_ids(env, info[0], m.tokenizer().n_vocab());
    open_line(env, job, info[1].As<Napi::Function>());
    model_->scheduler().submit_task([job, engine = model_] {
      try {
        job->post(new Event{Event::Logits, {}, {}, {}, {}, engine->eval_logits(job->ids), 0, {}, 0});
      } catch (const cxr::EngineError& e) {
        job->post(new Event{Event::Error, {}, {}, e.code(), e.what(), {}, 0, {}, 0});
      } catch (const std::bad_alloc&) {
        job->post(new Event{Event::Error, {}, {}, "ERR_NO_MEMORY", "out of memory", {}, 0, {}, 0});
      } catch (const std::exception& e) {
        job->post(new Event{Event::Error, {}, {}, "ERR_INTERNAL", e.what(), {}, 0, {}, 0});
      }
      job->end();
    });
    return abort_function(env, job);
  }

  // generate(request, onEvent) -> abort function. onEvent('token', tok) per
  // token, then exactly one onEvent('done', result) or onEvent('error', err).
  // The scheduler runs it with the others, or queues it.
  Napi::Value Generate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    cxr::Model& m = require_open(env);
    Napi::Object req = info[0].As<Napi::Object>();
    Napi::Function on_event = info[1].As<Napi::Function>();

    auto job = std::make_shared<Job>();
    Napi::Array segs = req.Get("segments").As<Napi::Array>();
    const int32_t dim = m.text().config().dim;
    for (uint32_t i = 0; i < segs.Length(); ++i) {
      Napi::Object s = segs.Get(i).As<Napi::Object>();
      cxr::PromptSegment seg;
      if (s.Has("image")) {
        // Kept in the engine: only a reference travels.
        seg.image = unwrap_image_handle(env, s.Get("image"));
        if (seg.image->store() != &model_->images())
          throw to_js_error(env, cxr::err::kArgument, "this image was encoded by another model");
      } else if (s.Has("embd")) {
        auto e = s.Get("embd").As<Napi::Float32Array>();
        if (e.ElementLength() == 0 || e.ElementLength() % dim != 0)
          throw to_js_error(env, cxr::err::kArgument, "embeddings must be rows of " + std::to_string(dim) + " floats");
        // Copied: the JS array may be changed or collected while the thread runs.
        job->embd.emplace_back(e.Data(), e.Data() + e.ElementLength());
        seg.n_embd = static_cast<int64_t>(e.ElementLength() / dim);
        seg.embd_id = static_cast<uint64_t>(s.Get("id").As<Napi::Number>().Int64Value());
      } else {
        seg.tokens = read_ids(env, s.Get("tokens"), m.tokenizer().n_vocab());
      }
      job->prompt.push_back(std::move(seg));
    }
    // Point segments at their copies only now: job->embd no longer reallocates.
    for (size_t i = 0, k = 0; i < job->prompt.size(); ++i)
      if (!job->prompt[i].image && job->prompt[i].n_embd > 0) job->prompt[i].embd = job->embd[k++].data();

    cxr::GenerateParams& p = job->params;
    p.max_tokens = req.Get("maxTokens").As<Napi::Number>().Int32Value();
    p.sampling.temperature = req.Get("temperature").As<Napi::Number>().FloatValue();
    p.sampling.top_p = req.Get("topP").As<Napi::Number>().FloatValue();
    p.sampling.top_k = req.Get("topK").As<Napi::Number>().Int32Value();
    p.sampling.repeat_penalty = req.Get("repeatPenalty").As<Napi::Number>().FloatValue();
    p.sampling.repeat_last_n = req.Get("repeatLastN").As<Napi::Number>().Int32Value();
    bool lossless = false;
    p.sampling.seed = req.Get("seed").As<Napi::BigInt>().Uint64Value(&lossless);
    p.logprobs = req.Get("logprobs").As<Napi::Number>().Int32Value();
    p.stop_at_eos = req.Get("stopAtEos").ToBoolean().Value();
    Napi::Array stop = req.Get("stop").As<Napi::Array>();
    for (uint32_t i = 0; i < stop.Length(); ++i) p.stop.push_back(stop.Get(i).As<Napi::String>().Utf8Value());

    auto gr = std::make_shared<cxr::GenerateRequest>();
    gr->prompt = job->prompt;
    gr->params = job->params;
    gr->abort = job->abort;
    // The callbacks hold the job (and with it the embeddings the prompt points at).
    gr->on_token = [job](const cxr::GeneratedToken& t) { job->post(new Event{Event::Token, t, {}, {}, {}, {}, 0, {}, 0}); };
    gr->on_done = [job](cxr::GenerateResult&& r) {
      job->post(new Event{Event::Done, {}, std::move(r), {}, {}, {}, 0, {}, 0});
      job->end();
    };
    gr->on_error = [job](const std::string& code, const std::string& msg) {
      job->post(new Event{Event::Error, {}, {}, code, msg, {}, 0, {}, 0});
      job->end();
    };
    open_line(env, job, on_event);
    model_->scheduler().submit(std::move(gr));
    return abort_function(env, job);
  }

  // encodeImage(input, onEvent) -> abort function. input: the decoded image,
  // { data: Uint8Array, width, height, channels } (interleaved 8-bit, 1 to 4
  // channels), which is preprocessed here (image/image.h) on libuv's pool and
  // then encoded on the engine thread; or a Float32Array of pixels already
  // preprocessed ([channels, size, size], normalised). Exactly one
  // onEvent('encoded', { image: NativeImage, ms, preprocessMs }) or
  // onEvent('error', err); preprocessing failures have code ERR_IMAGE.
  Napi::Value EncodeImage(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    cxr::Model& m = require_open(env);
    if (!m.vision())
      throw to_js_error(env, cxr::err::kModel,
                        m.file().path() + ": no vision projector (mmproj) is loaded, so images cannot be read");
    const cxr::VisionConfig& vc = m.vision()->config();
    auto job = std::make_shared<Job>();
    Napi::Function on_event = info[1].As<Napi::Function>();
    if (info[0].IsTypedArray() && info[0].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array) {
      auto pixels = info[0].As<Napi::Float32Array>();
      const size_t want = static_cast<size_t>(vc.channels) * vc.image_size * vc.image_size;
      if (pixels.ElementLength() != want)
        throw to_js_error(env, cxr::err::kArgument,
                          "expected " + std::to_string(want) + " pixel values (" + std::to_string(vc.channels) + "x" +
                              std::to_string(vc.image_size) + "x" + std::to_string(vc.image_size) + "), got " +
                              std::to_string(pixels.ElementLength()));
      // Copied: the call may wait in the queue, and JS may reuse the array meanwhile.
      job->embd.emplace_back(pixels.Data(), pixels.Data() + pixels.ElementLength());
      open_line(env, job, on_event);
      submit_encode(job, 0);
      return abort_function(env, job);
    }
    if (vc.channels != 1)
      throw to_js_error(env, cxr::err::kModel, m.mmproj_file()->path() + ": the vision tower takes " +
                                                   std::to_string(vc.channels) +
                                                   " channels; only 1-channel (grey) towers preprocess natively");
    Napi::Object o = info[0].As<Napi::Object>();
    auto prep = std::make_unique<Prepare>();
    prep->width = o.Get("width").As<Napi::Number>().Int32Value();
    prep->height = o.Get("height").As<Napi::Number>().Int32Value();
    prep->channels = o.Get("channels").As<Napi::Number>().Int32Value();
    prep->size = vc.image_size;
    prep->mean = vc.mean.empty() ? cxr::kImageMean : vc.mean[0];
    prep->std = vc.std.empty() ? cxr::kImageStd : vc.std[0];
    auto data = o.Get("data").As<Napi::Uint8Array>();
    const uint64_t expected = static_cast<uint64_t>(prep->width < 0 ? 0 : prep->width) *
                              static_cast<uint64_t>(prep->height < 0 ? 0 : prep->height) *
                              static_cast<uint64_t>(prep->channels < 0 ? 0 : prep->channels);
    if (expected == 0 || data.ByteLength() != expected)
      throw to_js_error(env, cxr::err::kArgument,
                        "pixel data has " + std::to_string(data.ByteLength()) +
                            " bytes, expected width*height*channels = " + std::to_string(expected));
    // Copied before the worker runs: JS could otherwise detach or reuse the buffer while it reads.
    prep->pixels.assign(data.Data(), data.Data() + data.ByteLength());
    open_line(env, job, on_event);
    (new PrepareWorker(env, this, job, std::move(prep)))->Queue();
    return abort_function(env, job);
  }

  // What preprocessing an encode needs: the decoded pixels and the tower's input.
  struct Prepare {
    std::vector<uint8_t> pixels;
    int32_t width = 0, height = 0, channels = 0, size = 0;
    double mean = 0, std = 1;
  };

  // The official preprocessing (luma, Lanczos, crop, normalisation) off the
  // JS thread and off the engine thread; then the encode goes to the engine.
  class PrepareWorker : public Napi::AsyncWorker {
   public:
    PrepareWorker(Napi::Env env, ModelWrap* owner, std::shared_ptr<Job> job, std::unique_ptr<Prepare> prep)
        : Napi::AsyncWorker(env), owner_(owner), job_(std::move(job)), prep_(std::move(prep)) {}

    void Execute() override {
      if (job_->abort->load()) return;
      auto t0 = std::chrono::steady_clock::now();
      try {
        const Prepare& p = *prep_;
        const cxr::Gray8 gray = cxr::preprocess_gray8(p.pixels.data(), p.width, p.height, p.channels, p.size);
        std::vector<float> pixels(gray.data.size());
        cxr::normalize_gray8(gray, p.mean, p.std, pixels.data());
        prep_.reset();  // the decoded image is not needed any more
        job_->embd.push_back(std::move(pixels));
      } catch (const cxr::EngineError& e) {
        code_ = "ERR_IMAGE";
        message_ = e.what();
      } catch (const std::bad_alloc&) {
        code_ = "ERR_NO_MEMORY";
        message_ = "not enough memory to preprocess the image";
      } catch (const std::exception& e) {
        code_ = "ERR_INTERNAL";
        message_ = e.what();
      }
      ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
    // Always OnOK (failures travel as the job's error event, like every other).
    void OnOK() override {
      if (!code_.empty()) return owner_->fail_job(job_, code_, message_);
      if (job_->abort->load()) return owner_->fail_job(job_, cxr::err::kAborted, "image encoding aborted");
      owner_->submit_encode(job_, ms_);
    }

   private:
    ModelWrap* owner_;  // kept alive by the job's Ref() until its final event
    std::shared_ptr<Job> job_;
    std::unique_ptr<Prepare> prep_;
    std::string code_, message_;
    double ms_ = 0;
  };

  void fail_job(const std::shared_ptr<Job>& job, const std::string& code, const std::string& message) {
    job->post(new Event{Event::Error, {}, {}, code, message, {}, 0, {}, 0});
    job->end();
  }

  // The vision tower on the engine thread, between forward passes (it needs
  // the backend to itself). job->embd[0] holds the preprocessed pixels.
  void submit_encode(const std::shared_ptr<Job>& job, double preprocess_ms) {
    // Closed while the pixels were being prepared: the engine thread may be gone.
    if (!model_) return fail_job(job, "ERR_MODEL_CLOSED", "The model is closed");
    model_->scheduler().submit_task([job, engine = model_, preprocess_ms] {
      try {
        auto t0 = std::chrono::steady_clock::now();
        std::shared_ptr<cxr::ImageEmbedding> image = engine->encode_image(job->embd[0].data(), job->abort.get());
        job->embd.clear();
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        auto* ev = new Event{Event::Encoded, {}, {}, {}, {}, {}, ms, {}, 0};
        ev->image = std::move(image);
        ev->preprocess_ms = preprocess_ms;
        job->post(ev);
      } catch (const cxr::EngineError& e) {
        job->post(new Event{Event::Error, {}, {}, e.code(), e.what(), {}, 0, {}, 0});
      } catch (const std::bad_alloc&) {
        job->post(new Event{Event::Error, {}, {}, "ERR_NO_MEMORY", "out of memory", {}, 0, {}, 0});
      } catch (const std::exception& e) {
        job->post(new Event{Event::Error, {}, {}, "ERR_INTERNAL", e.what(), {}, 0, {}, 0});
      }
      job->end();
    });
  }

  // The job's line to JS: a thread-safe function that delivers its events;
  // the model counts as busy until the final one is delivered.
  void open_line(Napi::Env env, const std::shared_ptr<Job>& job, Napi::Function on_event) {
    job->owner = this;
    job->tsfn = Napi::ThreadSafeFunction::New(env, on_event, "cxr-llava job", 0, 1);
    Ref();  // keep this object alive until the final event
    ++busy_;
  }

  static Napi::Value abort_function(Napi::Env env, const std::shared_ptr<Job>& job) {
    std::shared_ptr<std::atomic<bool>> flag = job->abort;
    return Napi::Function::New(env, [flag](const Napi::CallbackInfo&) { flag->store(true); }, "abort");
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    // Aborts what runs and what waits (each reports 'done' with finishReason
    // 'abort', or an ERR_ABORTED error for an encode); the engine model is
    // freed when its thread ends.
    const bool was_busy = busy_ > 0;
    if (model_) model_->scheduler().shutdown();
    model_.reset();
    return Napi::Boolean::New(info.Env(), was_busy);
  }

  struct Job {
    std::shared_ptr<std::atomic<bool>> abort = std::make_shared<std::atomic<bool>>(false);
    std::vector<cxr::PromptSegment> prompt;
    std::vector<std::vector<float>> embd;
    std::vector<int32_t> ids;  // evalLogits
    cxr::GenerateParams params;
    Napi::ThreadSafeFunction tsfn;
    ModelWrap* owner = nullptr;

    // From the engine thread: hands an event to JS without waiting.
    void post(Event* ev) {
      auto status = tsfn.NonBlockingCall(ev, [owner = owner](Napi::Env env, Napi::Function cb, Event* e) {
        deliver(env, cb, e, owner);
      });
      if (status != napi_ok) {
        delete ev;  // JS is going away: stop working for it
        abort->store(true);
      }
    }
    // After the final event.
    void end() { tsfn.Release(); }
  };

  static Napi::Object token_to_js(Napi::Env env, const cxr::GeneratedToken& t) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("token", t.id);
    o.Set("text", Napi::String::New(env, t.text));
    if (!t.top.empty()) {
      o.Set("logprob", t.logprob);
      Napi::Array top = Napi::Array::New(env, t.top.size());
      for (uint32_t i = 0; i < t.top.size(); ++i) {
        Napi::Object e = Napi::Object::New(env);
        e.Set("token", t.top[i].token);
        e.Set("logprob", t.top[i].logprob);
        top.Set(i, e);
      }
      o.Set("top", top);
    }
    return o;
  }

  // Runs on the JS thread. env is null when the environment is shutting down.
  static void deliver(Napi::Env env, Napi::Function cb, Event* e, ModelWrap* owner) {
    std::unique_ptr<Event> ev(e);
    if (env == nullptr) return;
    Napi::HandleScope scope(env);
    if (ev->kind != Event::Token) {
      --owner->busy_;
      owner->Unref();
    }
    if (ev->kind == Event::Token) {
      cb.Call({Napi::String::New(env, "token"), token_to_js(env, ev->token)});
    } else if (ev->kind == Event::Done) {
      const cxr::GenerateResult& r = ev->result;
      Napi::Object o = Napi::Object::New(env);
      o.Set("text", Napi::String::New(env, r.text));
      Napi::Array toks = Napi::Array::New(env, r.tokens.size());
      for (uint32_t i = 0; i < r.tokens.size(); ++i) toks.Set(i, token_to_js(env, r.tokens[i]));
      o.Set("tokens", toks);
      o.Set("finishReason", Napi::String::New(env, r.finish_reason));
      o.Set("admitted", Napi::Boolean::New(env, r.admitted));
      o.Set("promptTokens", Napi::Number::New(env, static_cast<double>(r.prompt_tokens)));
      o.Set("prefillTokens", Napi::Number::New(env, static_cast<double>(r.prefill_tokens)));
      o.Set("prefillMs", r.prefill_ms);
      o.Set("decodeTokens", Napi::Number::New(env, static_cast<double>(r.decode_tokens)));
      o.Set("decodeMs", r.decode_ms);
      cb.Call({Napi::String::New(env, "done"), o});
    } else if (ev->kind == Event::Encoded) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("image", new_image_handle(env, std::move(ev->image)));
      o.Set("ms", ev->ms);
      o.Set("preprocessMs", ev->preprocess_ms);
      cb.Call({Napi::String::New(env, "encoded"), o});
    } else if (ev->kind == Event::Logits) {
      auto arr = Napi::Float32Array::New(env, ev->embd.size());
      std::copy(ev->embd.begin(), ev->embd.end(), arr.Data());
      cb.Call({Napi::String::New(env, "logits"), arr});
    } else {
      cb.Call({Napi::String::New(env, "error"), to_js_error(env, ev->code, ev->message).Value()});
    }
  }

  std::shared_ptr<cxr::Engine> model_;
  int busy_ = 0;  // calls whose final event is still to come (JS thread only)
};

// loadModel(options) -> Promise<NativeModel>, loading on a worker thread.
class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, cxr::ModelOptions opts, Napi::FunctionReference* ctor)
      : Napi::AsyncWorker(env), opts_(std::move(opts)), ctor_(ctor), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      model_ = std::make_shared<cxr::Engine>(opts_);
    } catch (const cxr::EngineError& e) {
      code_ = e.code();
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      code_ = "ERR_NO_MEMORY";
      SetError(opts_.model_path + ": not enough memory to load the model");
    } catch (const std::exception& e) {
      code_ = "ERR_INTERNAL";
      SetError(opts_.model_path + ": " + e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    std::shared_ptr<cxr::Engine> m = std::move(model_);
    Napi::Object obj = ctor_->New({Napi::External<std::shared_ptr<cxr::Engine>>::New(env, &m)});
    deferred_.Resolve(obj);
  }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(to_js_error(Env(), code_, e.Message()).Value());
  }

 private:
  cxr::ModelOptions opts_;
  Napi::FunctionReference* ctor_;
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<cxr::Engine> model_;
  std::string code_;
};

}  // namespace

Napi::Object init_model(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = ModelWrap::Define(env);
  // The constructor reference lives as long as the environment.
  auto* ctor = new Napi::FunctionReference(Napi::Persistent(cls));
  env.AddCleanupHook([ctor] { delete ctor; });
  exports.Set("NativeModel", cls);
  exports.Set("loadModel", Napi::Function::New(
                               env,
                               [ctor](const Napi::CallbackInfo& info) -> Napi::Value {
                                 Napi::Object o = info[0].As<Napi::Object>();
                                 cxr::ModelOptions opts;
                                 opts.model_path = o.Get("model").As<Napi::String>().Utf8Value();
                                 if (o.Has("mmproj") && o.Get("mmproj").IsString())
                                   opts.mmproj_path = o.Get("mmproj").As<Napi::String>().Utf8Value();
                                 opts.threads = o.Get("threads").As<Napi::Number>().Int32Value();
                                 if (o.Has("backend") && o.Get("backend").IsString())
                                   opts.backend = o.Get("backend").As<Napi::String>().Utf8Value();
                                 else
                                   opts.backend = "auto";
                                 if (o.Has("device") && o.Get("device").IsNumber())
                                   opts.device = o.Get("device").As<Napi::Number>().Int32Value();
                                 opts.n_ctx = o.Get("contextSize").As<Napi::Number>().Int64Value();
                                 const std::string kv = o.Get("kvType").As<Napi::String>().Utf8Value();
                                 opts.kv_type = kv == "f32" ? cxr::DType::F32 : cxr::DType::F16;
                                 if (o.Has("parallel")) opts.parallel = o.Get("parallel").As<Napi::Number>().Int32Value();
                                 if (o.Has("kvCacheSize"))
                                   opts.kv_cells = o.Get("kvCacheSize").As<Napi::Number>().Int64Value();
                                 auto* w = new LoadWorker(info.Env(), std::move(opts), ctor);
                                 Napi::Promise p = w->promise();
                                 w->Queue();
                                 return p;
                               },
                               "loadModel"));
  return exports;
}

}  // namespace cxrnode
