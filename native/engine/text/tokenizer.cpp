// tokenizer.cpp - SentencePiece BPE encoding and decoding, LLaMA-2 style.
//
// Encoding, as SentencePiece does it for a BPE model with an identity normaliser:
//   1. spaces become "▁" (U+2581) and one "▁" is put in front (the dummy prefix);
//   2. the text is split into UTF-8 characters (a malformed byte is a symbol of its own);
//   3. repeatedly, of all adjacent symbol pairs whose concatenation is a Normal or
//      UserDefined piece, the pair with the highest score is merged (ties: leftmost);
//   4. each remaining symbol becomes its piece id, or, when it is not a piece, one
//      <0xXX> byte piece per UTF-8 byte (byte fallback), or <unk>.
#include "text/tokenizer.h"

#include <queue>

#include "types/error.h"
#include "format/gguf.h"

namespace cxr {

namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";     // U+2581, SentencePiece's space
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";   // U+FFFD
constexpr std::string_view kUnkSurface = " \xE2\x81\x87 ";  // " ⁇ ", SentencePiece's text for <unk>

// Length of the well-formed UTF-8 character at s[0..n) (Unicode table 3-7:
// no overlongs, no surrogates, nothing above U+10FFFF). Returns 0 when the n
// bytes are a well-formed start that more bytes could complete, -1 when s[0]
// cannot start a well-formed character.
int utf8_char_len(const unsigned char* s, size_t n) {
  const unsigned char c = s[0];
  int need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) need = 2;
  else if (c == 0xE0) { need = 3; lo = 0xA0; }
  else if (c >= 0xE1 && c <= 0xEC) need = 3;
  else if (c == 0xED) { need = 3; hi = 0x9F; }
  else if (c >= 0xEE && c <= 0xEF) need = 3;
  else if (c == 0xF0) { need = 4; lo = 0x90; }
  else if (c >= 0xF1 && c <= 0xF3) need = 4;
  else if (c == 0xF4) { need = 4; hi = 0x8F; }
  else return -1;
  for (int i = 1; i < need; ++i) {
    if (static_cast<size_t>(i) >= n) return 0;
    const unsigned char b = s[i];
    if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) return -1;
  }
  return need;
}

// Appends the complete characters of bytes[0..n) to `out`, malformed bytes as
// U+FFFD (one per byte, as SentencePiece does). With `hold_tail`, a final
// incomplete-but-valid character is not consumed; returns the bytes consumed.
size_t append_valid_utf8(const char* bytes, size_t n, bool hold_tail, std::string& out) {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes);
  size_t i = 0;
  while (i < n) {
    const int len = utf8_char_len(s + i, n - i);
    if (len > 0) {
      out.append(bytes + i, static_cast<size_t>(len));
      i += static_cast<size_t>(len);
    } else if (len == 0 && hold_tail) {
      break;
    } else {
      out += kReplacement;
      ++i;
    }
  }
  return i;
}

bool is_text_type(TokenType t) {
  return t == TokenType::Normal || t == TokenType::UserDefined || t == TokenType::Unused;
}

// Pieces that merges may produce and symbols may end as; Control, Unknown and
// Byte pieces are never spelled out by the text itself.
bool is_mergeable(TokenType t) { return t == TokenType::Normal || t == TokenType::UserDefined; }

// "<0x1F>" -> 0x1F; -1 if the piece is not of that form.
int parse_byte_piece(const std::string& p) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
  const int h = hex(p[3]), l = hex(p[4]);
  return h < 0 || l < 0 ? -1 : h * 16 + l;
}

}  // namespace

Tokenizer::Tokenizer(std::vector<std::string> pieces, std::vector<float> scores,
                     std::vector<TokenType> types, int32_t bos, int32_t eos, int32_t unk,
                     bool add_bos, std::string source_name)
    : pieces_(std::move(pieces)), scores_(std::move(scores)), types_(std::move(types)),
      bos_(bos), eos_(eos), unk_(unk), add_bos_(add_bos) {
  const std::string& src = source_name;
  const size_t n = pieces_.size();
  if (n == 0) throw EngineError(err::kModel, src + ": the tokenizer vocabulary is empty");
  if (n > static_cast<size_t>(INT32_MAX))
    throw EngineError(err::kModel, src + ": the tokenizer vocabulary has too many pieces");
  if (scores_.size() != n)
    throw EngineError(err::kModel, src + ": the tokenizer has " + std::to_string(n) + " pieces but " +
                                       std::to_string(scores_.size()) + " scores");
  if (types_.size() != n)
    throw EngineError(err::kModel, src + ": the tokenizer has " + std::to_string(n) + " pieces but " +
                                       std::to_string(types_.size()) + " token types");
  const auto check_id = [&](int32_t id, const char* what) {
    if (id < 0 || static_cast<size_t>(id) >= n)
      throw EngineError(err::kModel, src + ": the " + what + " token id " + std::to_string(id) +
                                         " is outside the vocabulary (" + std::to_string(n) + " pieces)");
  };
  check_id(bos_, "BOS");
  check_id(eos_, "EOS");
  check_id(unk_, "unknown");

  for (int& b : byte_ids_) b = -1;
  piece_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto t = static_cast<int32_t>(types_[i]);
    if (t < static_cast<int32_t>(TokenType::Normal) || t > static_cast<int32_t>(TokenType::Byte))
      throw EngineError(err::kModel, src + ": token " + std::to_string(i) + " has unknown type " +
                                         std::to_string(t));
    if (types_[i] == TokenType::Byte) {
      const int b = parse_byte_piece(pieces_[i]);
      if (b < 0)
        throw EngineError(err::kModel, src + ": byte token " + std::to_string(i) + " is \"" + pieces_[i] +
                                           "\", not of the form <0xXX>");
      if (byte_ids_[b] < 0) byte_ids_[b] = static_cast<int32_t>(i);
    }
    piece_to_id_.emplace(pieces_[i], static_cast<int32_t>(i));  // first occurrence wins
  }
}

Tokenizer::Tokenizer(const GgufFile& file) {
  const std::string& path = file.path();
  const std::string model = file.get_str("tokenizer.ggml.model");
  if (model != "llama")
    throw EngineError(err::kModel, path + ": tokenizer.ggml.model is \"" + model +
                                       "\"; only SentencePiece (\"llama\") tokenizers are supported");
  const auto& tokens = file.get_str_array("tokenizer.ggml.tokens");
  std::vector<std::string> pieces(tokens.begin(), tokens.end());
  std::vector<float> scores = file.get_f32_array("tokenizer.ggml.scores");
  std::vector<int32_t> raw_types = file.get_i32_array("tokenizer.ggml.token_type");
  std::vector<TokenType> types;
  types.reserve(raw_types.size());
  for (int32_t t : raw_types) types.push_back(static_cast<TokenType>(t));  // range-checked below
  const auto id = [&](const char* key, uint64_t fallback) -> int32_t {
    const uint64_t v = file.get_u64(key, fallback);
    if (v > static_cast<uint64_t>(INT32_MAX))
      throw EngineError(err::kModel, path + ": " + key + " = " + std::to_string(v) + " is not a valid token id");
    return static_cast<int32_t>(v);
  };
  const int32_t bos = id("tokenizer.ggml.bos_token_id", 1);
  const int32_t eos = id("tokenizer.ggml.eos_token_id", 2);
  const int32_t unk = id("tokenizer.ggml.unknown_token_id", 0);
  const bool add_bos = file.get_bool("tokenizer.ggml.add_bos_token", true);
  // Delegating would evaluate the GGUF reads in unspecified order; build, then move in.
  *this = Tokenizer(std::move(pieces), std::move(scores), std::move(types), bos, eos, unk, add_bos, path);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool bos, bool special) const {
  std::vector<int32_t> out;
  if (bos) out.push_back(bos_);
  if (!special) {
    encode_chunk(text, out);
    return out;
  }
  // Split on the literal markers; each chunk is encoded alone (own dummy prefix).
  size_t start = 0, i = 0;
  while (i < text.size()) {
    int32_t marker = -1;
    size_t len = 0;
    if (text.compare(i, 3, "<s>") == 0) { marker = bos_; len = 3; }
    else if (text.compare(i, 4, "</s>") == 0) { marker = eos_; len = 4; }
    if (marker < 0) { ++i; continue; }
    encode_chunk(text.substr(start, i - start), out);
    out.push_back(marker);
    i += len;
    start = i;
  }
  encode_chunk(text.substr(start), out);
  return out;
}

void Tokenizer::encode_chunk(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;  // no dummy prefix for nothing

  // 1. Normalise: dummy prefix, spaces -> "▁".
  std::string s;
  s.reserve(text.size() + 3 + 8);
  s += kSpaceMark;
  for (char c : text) {
    if (c == ' ') s += kSpaceMark;
    else s += c;
  }

  // 2. One symbol per character, as a doubly linked list over `s`.
  struct Symbol {
    size_t off, len;  // bytes of `s`; len == 0 once merged into its left neighbour
    int prev, next;   // -1 at the ends
  };
  std::vector<Symbol> sym;
  sym.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const int len = utf8_char_len(reinterpret_cast<const unsigned char*>(s.data()) + i, s.size() - i);
    const size_t step = len > 0 ? static_cast<size_t>(len) : 1;
    const int idx = static_cast<int>(sym.size());
    sym.push_back({i, step, idx - 1, idx + 1});
    i += step;
  }
  sym.back().next = -1;

  const auto lookup = [&](size_t off, size_t len) -> int32_t {
    const auto it = piece_to_id_.find(s.substr(off, len));
    if (it == piece_to_id_.end() || !is_mergeable(types_[it->second])) return -1;
    return it->second;
  };

  // 3. Merge best-first. Queue entries go stale when either side changes; they
  // are recognised on pop by the symbols no longer being adjacent with that length.
  struct Pair {
    float score;
    int left, right;
    size_t len;
  };
  const auto worse = [](const Pair& a, const Pair& b) {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;  // on equal scores the leftmost pair wins
  };
  std::priority_queue<Pair, std::vector<Pair>, decltype(worse)> agenda(worse);
  const auto consider = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const size_t len = sym[l].len + sym[r].len;
    const int32_t id = lookup(sym[l].off, len);
    if (id >= 0) agenda.push({scores_[id], l, r, len});
  };
  for (size_t i = 0; i + 1 < sym.size(); ++i) consider(static_cast<int>(i), static_cast<int>(i + 1));

  while (!agenda.empty()) {
    const Pair p = agenda.top();
    agenda.pop();
    Symbol& l = sym[p.left];
    Symbol& r = sym[p.right];
    if (l.len == 0 || r.len == 0 || l.next != p.right || l.len + r.len != p.len) continue;
    l.len += r.len;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = p.left;
    r.len = 0;
    consider(l.prev, p.left);
    consider(p.left, l.next);
  }

  // 4. Symbols to ids, with byte fallback.
  bool last_unk = false;
  for (int i = 0; i >= 0; i = sym[i].next) {
    const int32_t id = lookup(sym[i].off, sym[i].len);
    if (id >= 0) {
      out.push_back(id);
      last_unk = false;
      continue;
    }
    for (size_t k = 0; k < sym[i].len; ++k) {
      const int32_t b = byte_ids_[static_cast<unsigned char>(s[sym[i].off + k])];
      if (b >= 0) {
        out.push_back(b);
        last_unk = false;
      } else if (!last_unk) {  // SentencePiece folds a run of unknowns into one <unk>
        out.push_back(unk_);
        last_unk = true;
      }
    }
  }
}

std::string Tokenizer::piece_bytes(int32_t id) const {
  if (id < 0 || id >= n_vocab())
    throw EngineError(err::kArgument, "token id " + std::to_string(id) + " is outside the vocabulary (" +
                                          std::to_string(n_vocab()) + " pieces)");
  const std::string& p = pieces_[id];
  switch (types_[id]) {
    case TokenType::Control: return "";
    case TokenType::Unknown: return std::string(kUnkSurface);
    case TokenType::Byte: return std::string(1, static_cast<char>(parse_byte_piece(p)));
    default: break;
  }
  std::string out;
  out.reserve(p.size());
  for (size_t i = 0; i < p.size();) {
    if (p.compare(i, kSpaceMark.size(), kSpaceMark) == 0) {
      out += ' ';
      i += kSpaceMark.size();
    } else {
      out += p[i++];
    }
  }
  return out;
}

// The dummy-prefix space belongs to the first token that shows any text; control
// tokens before it (BOS) do not count, while <unk> and byte tokens do (as in
// SentencePiece, they are shown as they are and end the chance to strip).
static bool strips_prefix_space(const Tokenizer& tok, int32_t id) {
  return is_text_type(tok.type(id)) && tok.piece(id).compare(0, kSpaceMark.size(), kSpaceMark) == 0;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    std::string p = piece_bytes(id);  // validates id
    if (types_[id] == TokenType::Control) continue;
    if (first && strips_prefix_space(*this, id)) p.erase(0, 1);
    first = false;
    bytes += p;
  }
  std::string out;
  out.reserve(bytes.size());
  append_valid_utf8(bytes.data(), bytes.size(), false, out);
  return out;
}

std::string Detokenizer::push(int32_t id) {
  std::string p = tok_.piece_bytes(id);  // validates id
  if (tok_.type(id) == TokenType::Control) return "";
  if (first_ && strips_prefix_space(tok_, id)) p.erase(0, 1);
  first_ = false;
  pending_ += p;
  std::string out;
  const size_t used = append_valid_utf8(pending_.data(), pending_.size(), true, out);
  pending_.erase(0, used);
  return out;
}

std::string Detokenizer::flush() {
  std::string out;
  append_valid_utf8(pending_.data(), pending_.size(), false, out);
  pending_.clear();
  return out;
}

}  // namespace cxr
