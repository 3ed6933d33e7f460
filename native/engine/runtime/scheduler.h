// scheduler.h - many generations on one model at once (continuous batching).
//
// Requests arrive from any thread; one engine thread runs them in steps. At
// every step boundary the scheduler drops what was aborted, admits waiting
// requests in arrival order while a sequence and enough KV cells are free,
// then runs one forward pass over the next token of every decoding sequence
// and a chunk of every prompt still being read. Each request's tokens go to
// its own callback as they are sampled, with its own stop rules.
//
// Sequences keep their cache after a request ends, so a follow-up whose prompt
// starts with an earlier one (a chat turn) is placed on that sequence and only
// computes what is new. Image embeddings are keyed by a hash of their content:
// the same image is recognised, a different one never matches.
//
// Memory: a request reserves KV cells for its prompt plus maxTokens (up to the
// context) when it is admitted; one that does not fit waits, taking cells from
// idle sequences' caches first.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/generation.h"
#include "text/sampler.h"
#include "models/text_model.h"
#include "text/tokenizer.h"

namespace cxr {

struct GenerateRequest {
  std::vector<PromptSegment> prompt;  // embedding pointers stay valid while the request lives
  GenerateParams params;
  std::function<void(const GeneratedToken&)> on_token;
  // Exactly one of these is called, on the engine thread.
  std::function<void(GenerateResult&&)> on_done;
  std::function<void(const std::string& code, const std::string& message)> on_error;
  std::shared_ptr<std::atomic<bool>> abort = std::make_shared<std::atomic<bool>>(false);
};

struct SchedulerOptions {
  // Prompt rows per step while other sequences decode: small enough that they
  // keep getting tokens, large enough to keep the prompt's matmuls wide.
  int64_t prefill_chunk = 256;
};

class Scheduler {
 public:
  Scheduler(TextModel& text, Backend& be, const Tokenizer& tok, SchedulerOptions opts = {});
  ~Scheduler();

  // Thread-safe. The request is checked and admitted on the engine thread.
  void submit(std::shared_ptr<GenerateRequest> r);
  // Thread-safe: runs `task` on the engine thread at the next step boundary
  // (e.g. an image encode, which needs the backend to itself).
  void submit_task(std::function<void()> task);
  // Thread-safe: aborts everything, waiting and running, and makes run() return
  // once it has reported them.
  void shutdown();

  // The engine loop: runs until shutdown(). Call it on one thread only.
  void run();
  // Runs steps on the calling thread until nothing is waiting or running.
  void run_until_idle();

  // Forgets every sequence's cache (nothing may be running).
  void reset_cache();

  int n_seq() const { return static_cast<int>(slots_.size()); }

 private:
  struct Active;
  struct Slot {
    std::vector<uint64_t> keys;  // what the cache holds, one key per position
    int64_t prompt_len = 0;      // how much of it was the last request's prompt
    uint64_t last_used = 0;
    std::shared_ptr<Active> active;
  };

  void take_inbox(std::vector<std::function<void()>>* tasks);
  bool step();  // false when there was nothing to do
  void drop_aborted();
  void admit();
  bool try_admit(const std::shared_ptr<Active>& a);
  void finish(int slot, const std::string& reason);
  void fail(int slot, const std::string& code, const std::string& message);
  // After a forward pass: samples the sequence's next token, reports it, and
  // decides whether it goes on.
  void next_token(int slot, const float* logits_row);

  TextModel& text_;
  Backend& be_;
  const Tokenizer& tok_;
  SchedulerOptions opts_;
  std::vector<Slot> slots_;
  std::deque<std::shared_ptr<Active>> waiting_;
  uint64_t clock_ = 0;  // for least-recently-used slots

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<GenerateRequest>> inbox_;
  std::vector<std::function<void()>> tasks_;
  bool shutdown_ = false;
  std::atomic<bool> stopping_{false};

  // Scratch for the sampling ops.
  std::vector<float> host_logits_;
  std::vector<std::pair<float, int32_t>> cand_;
  int32_t* dev_ids_ = nullptr;
  float* dev_vals_ = nullptr;
  int32_t dev_k_ = 0;
};

}  // namespace cxr
