// generation.cpp - see generation.h.
#include "runtime/generation.h"

#include <algorithm>

namespace cxr {
namespace {

// Length of the longest suffix of `text` that is a proper prefix of some stop
// string: that much must be held back, as the next token may complete it.
size_t held_back(const std::string& text, const std::vector<std::string>& stop) {
  size_t keep = 0;
  for (const auto& s : stop) {
    if (s.empty()) continue;
    for (size_t len = std::min(s.size() - 1, text.size()); len > keep; --len) {
      if (text.compare(text.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  return keep;
}

}  // namespace

bool TextState::push(GeneratedToken& gt) {
  bool done = false;
  if (p_.stop_at_eos && gt.id == tok_.eos()) {
    text_ += detok_.flush();
    done = true;
  } else {
    text_ += detok_.push(gt.id);
    // A stop string can only start in text not yet handed out (see held_back).
    size_t cut = std::string::npos;
    for (const auto& st : p_.stop)
      if (!st.empty()) cut = std::min(cut, text_.find(st, emitted_));
    if (cut != std::string::npos) {
      text_.resize(cut);
      done = true;
    }
  }
  // Hand over the text that can no longer turn out to be part of a stop string.
  const size_t safe = done ? text_.size() : text_.size() - held_back(text_, p_.stop);
  if (safe > emitted_) {
    gt.text = text_.substr(emitted_, safe - emitted_);
    emitted_ = safe;
  }
  stopped_ = done;
  return done;
}

std::string TextState::finish() {
  if (!stopped_) text_ += detok_.flush();
  std::string tail = text_.size() > emitted_ ? text_.substr(emitted_) : std::string();
  emitted_ = text_.size();
  return tail;
}

}  // namespace cxr
