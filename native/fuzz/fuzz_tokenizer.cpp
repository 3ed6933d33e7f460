// fuzz_tokenizer.cpp - the SentencePiece tokenizer on arbitrary text and ids,
// with the vocabulary of the tiny test model (a GGUF named by CXR_FUZZ_VOCAB,
// written by make-seeds.mjs). First byte: bit 0 decode instead of encode,
// bit 1 add BOS, bit 2 parse control tokens; the rest is the text, or int32
// ids (any value: out-of-range ids must be an EngineError, nothing worse).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "format/gguf.h"
#include "text/tokenizer.h"
#include "types/error.h"

namespace {
std::unique_ptr<cxr::GgufFile> g_file;
std::unique_ptr<cxr::Tokenizer> g_tok;
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* vocab = std::getenv("CXR_FUZZ_VOCAB");
  if (!vocab) {
    std::fprintf(stderr, "fuzz_tokenizer: set CXR_FUZZ_VOCAB to a GGUF with tokenizer.ggml.* (npm run fuzz does)\n");
    std::exit(2);
  }
  g_file = cxr::GgufFile::open(vocab);
  g_tok = std::make_unique<cxr::Tokenizer>(*g_file);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const bool bos = mode & 2, special = mode & 4;
  if (mode & 1) {
    std::vector<int32_t> ids((size - 1) / 4);
    if (!ids.empty()) std::memcpy(ids.data(), data + 1, ids.size() * 4);
    try {
      (void)g_tok->decode(ids);
    } catch (const cxr::EngineError&) {
    }
    for (int32_t id : ids)
      if (id >= 0 && id < g_tok->n_vocab()) (void)g_tok->piece_bytes(id);
  } else {
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    std::vector<int32_t> ids = g_tok->encode(text, bos, special);
    // Whatever encode returns must be valid ids that decode.
    for (int32_t id : ids)
      if (id < 0 || id >= g_tok->n_vocab()) std::abort();
    (void)g_tok->decode(ids);
  }
  return 0;
}
