// tokenizer.h - SentencePiece BPE tokenizer built from a GGUF vocabulary
// (tokenizer.ggml.tokens / scores / token_type), as LLaMA-2 uses it:
// identity normalisation, a dummy "▁" prefix, spaces as "▁", byte fallback
// through the <0xXX> pieces.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cxr {

class GgufFile;

// tokenizer.ggml.token_type values (SentencePiece's ModelProto.SentencePiece.Type).
enum class TokenType : int32_t {
  Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* from the file. Throws EngineError(kModel) naming the
  // file if the vocabulary is missing, inconsistent, or not a SentencePiece ("llama") model.
  explicit Tokenizer(const GgufFile& file);

  // The same from a vocabulary already in memory (pieces, scores and types are
  // parallel arrays indexed by id). `source_name` prefixes every error message.
  Tokenizer(std::vector<std::string> pieces, std::vector<float> scores, std::vector<TokenType> types,
            int32_t bos, int32_t eos, int32_t unk, bool add_bos, std::string source_name);

  // SentencePiece encoding of `text`, with the dummy prefix. With bos, <s> comes
  // first. With special, the literal strings "<s>" and "</s>" in the text become
  // the BOS/EOS control tokens (the text between them is encoded piecewise, each
  // piece with its own dummy prefix, as SentencePiece would encode it alone);
  // without it they are plain text.
  std::vector<int32_t> encode(std::string_view text, bool bos, bool special) const;

  // Bytes of one token as it appears in output text: "▁" becomes a space, <0xXX>
  // becomes that byte, control tokens become "", <unk> becomes " ⁇ " (as
  // SentencePiece shows it). Not valid UTF-8 on its own for byte tokens; use
  // Detokenizer to stream. Throws EngineError(kArgument) for an id outside the vocabulary.
  std::string piece_bytes(int32_t id) const;

  // Whole-sequence decode. Like SentencePiece, drops the one leading space that
  // the dummy prefix put before the first piece. Invalid UTF-8 becomes U+FFFD.
  std::string decode(const std::vector<int32_t>& ids) const;

  int32_t n_vocab() const { return static_cast<int32_t>(pieces_.size()); }
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  int32_t unk() const { return unk_; }
  const std::string& piece(int32_t id) const { return pieces_.at(id); }
  TokenType type(int32_t id) const { return types_.at(id); }
  bool add_bos_default() const { return add_bos_; }

 private:
  void encode_chunk(std::string_view text, std::vector<int32_t>& out) const;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::unordered_map<std::string, int32_t> piece_to_id_;
  int32_t byte_ids_[256];
  int32_t bos_ = 1, eos_ = 2, unk_ = 0;
  bool add_bos_ = true;
};

// Turns a stream of token ids into text without ever emitting part of a UTF-8
// character: bytes that may still be completed by the next token are held back.
class Detokenizer {
 public:
  explicit Detokenizer(const Tokenizer& tok) : tok_(tok) {}
  // Appends the token and returns the text that is now complete (possibly "").
  std::string push(int32_t id);
  // Returns whatever is still held back, invalid tails as U+FFFD.
  std::string flush();

 private:
  const Tokenizer& tok_;
  std::string pending_;
  bool first_ = true;  // strip the dummy-prefix space from the first piece
};

}  // namespace cxr
