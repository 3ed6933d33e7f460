// scheduler.cpp - see scheduler.h.
#include "runtime/scheduler.h"

#include <algorithm>
#include <cstring>

#include "runtime/content_hash.h"
#include "types/error.h"

namespace cxr {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Tells an image's key (a hash of its pixels) from a hash of host embedding rows.
constexpr uint64_t kImageKeyTag = 0x5851C3A7E1D94B27ull;

// A cache key per prompt position: the token id, or for row r of an embedding
// (top bit set) a hash of the embedding's content and r.
std::vector<uint64_t> prompt_keys(const std::vector<PromptSegment>& prompt, int32_t dim) {
  std::vector<uint64_t> keys;
  for (const auto& s : prompt) {
    if (s.is_embd()) {
      const uint64_t h = s.image ? mix_hash(s.image->key() ^ kImageKeyTag)
                                 : content_hash(s.embd, static_cast<size_t>(s.n_embd) * dim * sizeof(float));
      const int64_t n = s.size();
      for (int64_t r = 0; r < n; ++r) keys.push_back((uint64_t{1} << 63) | (mix_hash(h + static_cast<uint64_t>(r)) >> 1));
    } else {
      for (int32_t t : s.tokens) keys.push_back(static_cast<uint32_t>(t));
    }
  }
  return keys;
}

}  // namespace

// A request that has been admitted to a sequence, or waits for one.
struct Scheduler::Active {
  std::shared_ptr<GenerateRequest> req;
  std::vector<uint64_t> keys;     // the prompt's
  int64_t n_prompt = 0;
  int64_t reuse = 0;              // prompt positions found in the cache
  bool decoding = false;          // the prompt is in; one token per step from now on
  int32_t pending = 0;            // decoding: the token to feed next
  int32_t produced = 0;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<TextState> text;
  std::vector<int32_t> history;   // prompt tokens and generated ones, for the repetition penalty
  GenerateResult res;
  Clock::time_point t_admit, t_decode;
};

Scheduler::Scheduler(TextModel& text, Backend& be, const Tokenizer& tok, SchedulerOptions opts)
    : text_(text), be_(be), tok_(tok), opts_(opts), slots_(static_cast<size_t>(text.n_seq())) {
  opts_.prefill_chunk = std::max<int64_t>(1, std::min(opts_.prefill_chunk, text.max_batch()));
}

Scheduler::~Scheduler() {
  if (dev_ids_) be_.free_ids(dev_ids_);
  if (dev_vals_) be_.free(dev_vals_);
}

void Scheduler::submit(std::shared_ptr<GenerateRequest> r) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox_.push_back(std::move(r));
  }
  cv_.notify_one();
}

void Scheduler::submit_task(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void Scheduler::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
  }
  stopping_.store(true);
  cv_.notify_one();
}

void Scheduler::take_inbox(std::vector<std::function<void()>>* tasks) {
  std::vector<std::shared_ptr<GenerateRequest>> in;
  {
    std::lock_guard<std::mutex> lock(mu_);
    in.swap(inbox_);
    tasks->swap(tasks_);
  }
  const LlamaConfig& c = text_.config();
  for (auto& r : in) {
    auto a = std::make_shared<Active>();
    a->req = r;
    try {
      for (const auto& s : r->prompt) {
        if (s.embd && s.n_embd <= 0) throw EngineError(err::kArgument, "an embedding segment has no rows");
        if (s.image && s.image->dim() != c.dim)
          throw EngineError(err::kArgument, "the image has embeddings of " + std::to_string(s.image->dim()) +
                                                " values per row but the model takes " + std::to_string(c.dim));
        if (s.image && !s.image->data())
          throw EngineError("ERR_MODEL_CLOSED", "the model that encoded this image is closed");
        for (int32_t t : s.tokens)
          if (t < 0 || t >= c.n_vocab)
            throw EngineError(err::kArgument, "token id " + std::to_string(t) + " is outside the vocabulary");
      }
      a->keys = prompt_keys(r->prompt, c.dim);
      a->n_prompt = static_cast<int64_t>(a->keys.size());
      if (a->n_prompt == 0) throw EngineError(err::kArgument, "the prompt is empty");
      if (a->n_prompt > text_.n_ctx())
        throw EngineError(err::kContext, "the prompt has " + std::to_string(a->n_prompt) +
                                             " positions but the context holds " + std::to_string(text_.n_ctx()) +
                                             " (raise contextSize)");
      a->sampler = std::make_unique<Sampler>(r->params.sampling);
    } catch (const EngineError& e) {
      if (r->on_error) r->on_error(e.code(), e.what());
      continue;
    }
    a->res.prompt_tokens = a->n_prompt;
    waiting_.push_back(std::move(a));
  }
}

void Scheduler::run() {
  for (;;) {
    std::vector<std::function<void()>> tasks;
    take_inbox(&tasks);
    for (auto& t : tasks) t();
    bool stop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop = shutdown_;
    }
    if (stop) {
      for (auto& s : slots_)
        if (s.active) s.active->req->abort->store(true);
      for (auto& w : waiting_) w->req->abort->store(true);
      drop_aborted();
      std::lock_guard<std::mutex> lock(mu_);
      if (inbox_.empty() && tasks_.empty()) return;
      continue;
    }
    if (step()) continue;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return shutdown_ || !inbox_.empty() || !tasks_.empty(); });
  }
}

void Scheduler::run_until_idle() {
  for (;;) {
    std::vector<std::function<void()>> tasks;
    take_inbox(&tasks);
    for (auto& t : tasks) t();
    if (!step()) return;
  }
}

void Scheduler::reset_cache() {
  for (int i = 0; i < n_seq(); ++i) {
    slots_[i].keys.clear();
    slots_[i].prompt_len = 0;
    text_.cells().shrink(i, 0);
  }
}

void Scheduler::drop_aborted() {
  for (int i = 0; i < n_seq(); ++i)
    if (slots_[i].active && slots_[i].active->req->abort->load()) finish(i, "abort");
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->req->abort->load()) {
      GenerateResult res = std::move((*it)->res);
      res.finish_reason = "abort";
      auto req = (*it)->req;
      it = waiting_.erase(it);
      if (req->on_done) req->on_done(std::move(res));
    } else {
      ++it;
    }
  }
}

bool Scheduler::try_admit(const std::shared_ptr<Active>& a) {
  // Which free sequence: one whose whole cache the prompt extends (a chat
  // follow-up; an empty sequence extends trivially) or that holds the whole
  // prompt, the longest such; else
  // the one sharing the longest prefix, least recently used among equals. So
  // a new conversation does not overwrite another's cache while room is left.
  int best = -1;
  int64_t best_match = -1;
  bool best_whole = false;
  for (int i = 0; i < n_seq(); ++i) {
    const Slot& s = slots_[i];
    if (s.active) continue;
    int64_t m = 0;
    const int64_t lim = std::min<int64_t>(static_cast<int64_t>(s.keys.size()), a->n_prompt);
    while (m < lim && s.keys[m] == a->keys[m]) ++m;
    // Nothing of value is lost: the prompt extends the cache, the cache
    // extends the prompt, or the prompt continues the cached one (all but
    // maybe its last token, which a longer text may spell differently) and
    // only the earlier answer gives way.
    const bool whole = m == static_cast<int64_t>(s.keys.size()) || m == a->n_prompt || m + 1 >= s.prompt_len;
    bool better;
    if (best < 0) better = true;
    else if (whole != best_whole) better = whole;
    else if (m != best_match) better = m > best_match;
    else better = s.last_used < slots_[best].last_used;
    if (better) {
      best = i;
      best_match = m;
      best_whole = whole;
    }
  }
  if (best < 0) return false;
  KvCells& cells = text_.cells();
  // At least the last prompt position is recomputed: its logits give the first token.
  const int64_t reuse = std::min(best_match, a->n_prompt - 1);
  const int64_t need = std::min<int64_t>(a->n_prompt + a->req->params.max_tokens, text_.n_ctx());
  const int64_t extra = need - reuse;
  if (extra > cells.free()) {
    // Take cells from idle caches, least recently used first; give up (and wait) if that is not enough.
    int64_t could = cells.free();
    for (int i = 0; i < n_seq(); ++i)
      if (i != best && !slots_[i].active) could += cells.held(i);
    if (extra > could + (cells.held(best) - reuse)) return false;
    std::vector<int> idle;
    for (int i = 0; i < n_seq(); ++i)
      if (i != best && !slots_[i].active && cells.held(i) > 0) idle.push_back(i);
    std::sort(idle.begin(), idle.end(), [&](int x, int y) { return slots_[x].last_used < slots_[y].last_used; });
    for (int i : idle) {
      if (extra <= cells.free() + (cells.held(best) - reuse)) break;
      slots_[i].keys.clear();
      slots_[i].prompt_len = 0;
      cells.shrink(i, 0);
    }
  }
  Slot& s = slots_[best];
  s.prompt_len = a->n_prompt;
  s.keys.resize(static_cast<size_t>(reuse));
  cells.shrink(best, reuse);
  if (!cells.grow(best, need)) return false;  // cannot happen after the check above
  a->reuse = reuse;
  a->res.admitted = true;
  a->text = std::make_unique<TextState>(tok_, a->req->params);
  for (uint64_t k : a->keys)
    if (!(k >> 63)) a->history.push_back(static_cast<int32_t>(k));
  a->t_admit = Clock::now();
  s.active = a;
  s.last_used = ++clock_;
  return true;
}

void Scheduler::admit() {
  // In arrival order: one that does not fit holds back the ones behind it, so
  // a long request is not starved by a stream of short ones.
  while (!waiting_.empty() && try_admit(waiting_.front())) waiting_.pop_front();
}

void Scheduler::finish(int slot, const std::string& reason) {
  Slot& s = slots_[slot];
  std::shared_ptr<Active> a = std::move(s.active);
  s.active.reset();
  s.last_used = ++clock_;
  // Give back the cells reserved beyond what the cache now holds.
  text_.cells().shrink(slot, static_cast<int64_t>(s.keys.size()));
  GenerateResult& res = a->res;
  res.finish_reason = reason;
  if (!a->decoding) res.prefill_ms = ms_since(a->t_admit);
  if (a->text && !res.tokens.empty()) {
    // Held-back text that never became a stop string belongs to the output.
    const std::string tail = reason == "stop" ? std::string() : a->text->finish();
    if (!tail.empty()) {
      res.tokens.back().text += tail;
      if (a->req->on_token) a->req->on_token(GeneratedToken{-1, tail, 0, {}});
    }
  }
  if (a->text) res.text = a->text->text();
  if (a->decoding) res.decode_ms = ms_since(a->t_decode);
  if (a->req->on_done) a->req->on_done(std::move(res));
}

void Scheduler::fail(int slot, const std::string& code, const std::string& message) {
  Slot& s = slots_[slot];
  std::shared_ptr<Active> a = std::move(s.active);
  s.active.reset();
  text_.cells().shrink(slot, static_cast<int64_t>(s.keys.size()));
  if (a->req->on_error) a->req->on_error(code, message);
}

void Scheduler::next_token(int slot, const float* logits_row) {
  Slot& s = slots_[slot];
  Active& a = *s.active;
  const GenerateParams& p = a.req->params;
  const SamplerParams& sp = p.sampling;
  const int32_t n_vocab = text_.config().n_vocab;
  const bool penalty = sp.repeat_penalty != 1.0f && sp.repeat_last_n > 0;

  GeneratedToken gt;
  if (p.logprobs == 0 && !penalty && sp.temperature == 0.0f) {
    // Greedy: only the winner leaves the backend.
    if (!dev_ids_) dev_ids_ = be_.alloc_ids(1);
    be_.argmax(logits_row, 1, n_vocab, dev_ids_);
    be_.sync();
    be_.ids_to_host(&gt.id, dev_ids_, 1);
  } else if (p.logprobs == 0 && !penalty && sp.top_k > 0 && sp.top_k < n_vocab) {
    // Top-k: the k best leave the backend, and the draw runs on them.
    if (dev_k_ < sp.top_k) {
      if (dev_ids_) be_.free_ids(dev_ids_);
      if (dev_vals_) be_.free(dev_vals_);
      dev_ids_ = be_.alloc_ids(static_cast<size_t>(sp.top_k));
      dev_vals_ = be_.alloc(static_cast<size_t>(sp.top_k));
      dev_k_ = sp.top_k;
    }
    be_.top_k(logits_row, 1, n_vocab, sp.top_k, dev_vals_, dev_ids_);
    be_.sync();
    std::vector<int32_t> ids(static_cast<size_t>(sp.top_k));
    host_logits_.resize(static_cast<size_t>(sp.top_k));
    be_.ids_to_host(ids.data(), dev_ids_, ids.size());
    be_.to_host(host_logits_.data(), dev_vals_, ids.size());
    cand_.resize(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) cand_[i] = {host_logits_[i], ids[i]};
    gt.id = a.sampler->sample_top_k(cand_);
  } else {
    host_logits_.resize(static_cast<size_t>(n_vocab));
    be_.sync();
    be_.to_host(host_logits_.data(), logits_row, static_cast<size_t>(n_vocab));
    std::vector<float> raw;
    if (p.logprobs > 0) raw = host_logits_;  // the sampler modifies logits in place
    gt.id = a.sampler->sample(host_logits_.data(), n_vocab, a.history);
    if (p.logprobs > 0) top_logprobs(raw.data(), n_vocab, gt.id, p.logprobs, &gt.logprob, &gt.top);
  }
  if (!a.decoding) {
    a.decoding = true;
    a.res.prefill_tokens = a.n_prompt - a.reuse;
    a.res.prefill_ms = ms_since(a.t_admit);
    a.t_decode = Clock::now();
  }
  a.history.push_back(gt.id);
  ++a.res.decode_tokens;
  ++a.produced;
  const bool done = a.text->push(gt);
  a.res.tokens.push_back(gt);
  if (a.req->on_token) a.req->on_token(a.res.tokens.back());
  if (done) return finish(slot, "stop");
  // The context is full, or this was the last token asked for.
  if (static_cast<int64_t>(s.keys.size()) >= text_.n_ctx() || a.produced >= p.max_tokens)
    return finish(slot, "length");
  a.pending = gt.id;
}

bool Scheduler::step() {
  drop_aborted();
  admit();

  // The inputs of this pass: every decoding sequence's next token first, then
  // prompt chunks in admission order (by slot clock), as many rows as fit.
  std::vector<SeqInput> batch;
  std::vector<int> owner;          // slot of each input
  std::vector<int> logits_slot;    // slots whose logits come out, in order
  std::vector<int64_t> advance(slots_.size(), 0);
  int64_t rows = 0, n_decode = 0;
  for (int i = 0; i < n_seq(); ++i) {
    Slot& s = slots_[i];
    if (!s.active || !s.active->decoding) continue;
    SeqInput in;
    in.seq = i;
    in.pos0 = static_cast<int64_t>(s.keys.size());
    in.n = 1;
    in.tokens = &s.active->pending;
    in.decode = true;
    in.logits = true;
    batch.push_back(in);
    owner.push_back(i);
    logits_slot.push_back(i);
    advance[i] = 1;
    ++rows;
    ++n_decode;
  }
  int64_t budget = text_.max_batch() - rows;
  if (n_decode > 0) budget = std::min(budget, opts_.prefill_chunk);
  std::vector<int> prefill;
  for (int i = 0; i < n_seq(); ++i)
    if (slots_[i].active && !slots_[i].active->decoding) prefill.push_back(i);
  std::sort(prefill.begin(), prefill.end(), [&](int x, int y) { return slots_[x].last_used < slots_[y].last_used; });
  for (int i : prefill) {
    if (budget <= 0) break;
    Slot& s = slots_[i];
    Active& a = *s.active;
    const int64_t from = static_cast<int64_t>(s.keys.size());
    const int64_t take = std::min(budget, a.n_prompt - from);
    const bool completes = from + take == a.n_prompt;
    // Split the chunk where the prompt's segments change (tokens / embeddings).
    int64_t pos = 0;
    for (const PromptSegment& seg : a.req->prompt) {
      const int64_t len = seg.size();
      const int64_t lo = std::max(from, pos), hi = std::min(from + take, pos + len);
      if (lo < hi) {
        SeqInput in;
        in.seq = i;
        in.pos0 = lo;
        in.n = hi - lo;
        if (seg.image) in.embd_backend = seg.image->data() + (lo - pos) * text_.config().dim;
        else if (seg.embd) in.embd = seg.embd + (lo - pos) * text_.config().dim;
        else in.tokens = seg.tokens.data() + (lo - pos);
        in.logits = completes && hi == a.n_prompt;
        batch.push_back(in);
        owner.push_back(i);
        if (in.logits) logits_slot.push_back(i);
      }
      pos += len;
    }
    advance[i] = take;
    budget -= take;
  }
  if (batch.empty()) return false;

  // A pass stops early (between layers) only when every request in it was
  // aborted, or at shutdown; otherwise aborted ones end at the next step.
  std::vector<const std::atomic<bool>*> flags;
  for (int i = 0; i < n_seq(); ++i)
    if (advance[i] > 0) flags.push_back(slots_[i].active->req->abort.get());
  const std::function<bool()> stop = [&] {
    if (stopping_.load(std::memory_order_relaxed)) return true;
    for (const auto* f : flags)
      if (!f->load(std::memory_order_relaxed)) return false;
    return true;
  };
  const float* logits = nullptr;
  try {
    logits = text_.forward_batch(batch, stop);
  } catch (const EngineError& e) {
    if (e.code() == err::kAborted) return true;  // reported by drop_aborted() next step
    for (int i = 0; i < n_seq(); ++i)
      if (advance[i] > 0) fail(i, e.code(), e.what());
    return true;
  } catch (const std::bad_alloc&) {
    for (int i = 0; i < n_seq(); ++i)
      if (advance[i] > 0) fail(i, "ERR_NO_MEMORY", "out of memory");
    return true;
  }

  // The cache now holds the new positions.
  for (size_t j = 0; j < batch.size(); ++j) {
    Slot& s = slots_[owner[j]];
    const SeqInput& in = batch[j];
    if (in.decode) s.keys.push_back(static_cast<uint32_t>(in.tokens[0]));
  }
  for (int i = 0; i < n_seq(); ++i) {
    Slot& s = slots_[i];
    if (advance[i] == 0 || s.active->decoding) continue;
    const int64_t from = static_cast<int64_t>(s.keys.size());
    s.keys.insert(s.keys.end(), s.active->keys.begin() + from, s.active->keys.begin() + from + advance[i]);
  }
  const int64_t n_vocab = text_.config().n_vocab;
  for (size_t j = 0; j < logits_slot.size(); ++j) {
    const int i = logits_slot[j];
    // An abort during the pass: no token follows it; drop_aborted() ends it.
    if (!slots_[i].active || slots_[i].active->req->abort->load()) continue;
    try {
      next_token(i, logits + static_cast<int64_t>(j) * n_vocab);
    } catch (const EngineError& e) {
      fail(i, e.code(), e.what());
    }
  }
  return true;
}

}  // namespace cxr
