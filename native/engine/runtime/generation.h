// generation.h - what a generation asks for and what it returns, and the
// per-request text state: tokens become text, stop strings end it, and text
// that might still turn into a stop string is held back.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/image_store.h"

#include "text/sampler.h"
#include "text/tokenizer.h"

namespace cxr {

// A run of prompt positions: token ids, or rows of input embeddings that
// stand for something the tokenizer cannot express, like an image: an encoded
// image kept in the engine (`image`, backend memory, held for as long as the
// request lives), or `n_embd` rows in host memory ([n_embd, dim]). The cache
// recognises embeddings by content: the image's key, or a hash of the rows
// (embd_id is not used for that any more).
struct PromptSegment {
  std::vector<int32_t> tokens;
  std::shared_ptr<const ImageEmbedding> image;
  const float* embd = nullptr;
  int64_t n_embd = 0;
  uint64_t embd_id = 0;

  bool is_embd() const { return image != nullptr || embd != nullptr; }
  int64_t size() const {
    return image ? image->rows() : embd ? n_embd : static_cast<int64_t>(tokens.size());
  }
};

struct GenerateParams {
  SamplerParams sampling;
  int32_t max_tokens = 512;
  std::vector<std::string> stop;  // text that ends generation (not included in the output)
  int32_t logprobs = 0;           // >0: record that many alternatives per token
  bool stop_at_eos = true;
};

// One step of generation as on_token sees it. A final step with id == -1
// carries only text: what was held back (a possible stop string, a partial
// UTF-8 character) when generation ended for another reason.
struct GeneratedToken {
  int32_t id;
  std::string text;                // text completed by this token (may be empty)
  float logprob = 0;               // only with logprobs > 0
  std::vector<TokenLogprob> top;   // only with logprobs > 0
};

struct GenerateResult {
  std::vector<GeneratedToken> tokens;
  std::string text;
  std::string finish_reason;       // "stop" (EOS or a stop string), "length", "abort"
  bool admitted = false;           // false: aborted while still waiting for a sequence
  int64_t prompt_tokens = 0;       // positions in the prompt
  int64_t prefill_tokens = 0;      // positions actually computed (the rest came from the cache)
  double prefill_ms = 0;
  int64_t decode_tokens = 0;
  double decode_ms = 0;
};

// Turns sampled tokens into text for one request.
class TextState {
 public:
  TextState(const Tokenizer& tok, const GenerateParams& p) : tok_(tok), p_(p), detok_(tok) {}
  // Adds token `gt.id`, fills gt.text with what can be handed out now, and
  // returns true when generation must stop here (EOS or a stop string; the
  // result's finish_reason is then "stop").
  bool push(GeneratedToken& gt);
  // Generation ended for another reason: the held-back text, if any.
  std::string finish();
  const std::string& text() const { return text_; }

 private:
  const Tokenizer& tok_;
  const GenerateParams& p_;
  Detokenizer detok_;
  std::string text_;   // everything decoded so far
  size_t emitted_ = 0; // bytes of text_ already handed out
  bool stopped_ = false;
};

}  // namespace cxr
