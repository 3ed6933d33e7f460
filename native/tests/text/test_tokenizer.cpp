// test_tokenizer.cpp - the SentencePiece tokenizer against SentencePiece itself.
//
// test/fixtures/tokenizer/ is written by tools/reference/make_tokenizer.py with the
// reference library: vocab.tsv is the vocabulary of tiny-sp.model, goldens.json
// holds sp.encode()/sp.decode() results for 250+ strings.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>
#include <vector>

#include "types/error.h"
#include "format/gguf.h"
#include "support/files.h"
#include "support/test.h"
#include "text/tokenizer.h"

namespace {

using cxr::TokenType;
using cxr::Tokenizer;

using cxrtest::read_file;
using cxrtest::repo_root;

std::string fixture(const std::string& name) { return repo_root() + "/test/fixtures/tokenizer/" + name; }

// --- the smallest JSON reader that reads goldens.json ---------------------------

struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  double num = 0;
  std::string str;
  std::vector<Json> arr;
  std::vector<std::pair<std::string, Json>> obj;
  const Json& operator[](const std::string& key) const {
    for (const auto& kv : obj)
      if (kv.first == key) return kv.second;
    throw std::runtime_error("json: no key " + key);
  }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& s) : s_(s) {}
  Json parse() {
    Json v = value();
    ws();
    if (i_ != s_.size()) fail("trailing data");
    return v;
  }

 private:
  [[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string("json: ") + what + " at " + std::to_string(i_));
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  char peek() {
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c) fail("unexpected character");
    ++i_;
  }
  static void put_utf8(uint32_t cp, std::string& out) {
    if (cp < 0x80) out += static_cast<char>(cp);
    else if (cp < 0x800) { out += static_cast<char>(0xC0 | (cp >> 6)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  uint32_t hex4() {
    if (i_ + 4 > s_.size()) fail("short \\u escape");
    uint32_t v = static_cast<uint32_t>(std::stoul(s_.substr(i_, 4), nullptr, 16));
    i_ += 4;
    return v;
  }
  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (c != '\\') { out += c; continue; }
      const char e = s_[i_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(i_, 2, "\\u") == 0) {
            i_ += 2;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4() - 0xDC00);
          }
          put_utf8(cp, out);
          break;
        }
        default: out += e;  // \" \\ \/
      }
    }
  }
  Json value() {
    Json v;
    const char c = peek();
    if (c == '{') {
      v.kind = Json::Object;
      ++i_;
      if (peek() == '}') { ++i_; return v; }
      while (true) {
        std::string k = string();
        expect(':');
        v.obj.emplace_back(std::move(k), value());
        if (peek() == ',') { ++i_; continue; }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.kind = Json::Array;
      ++i_;
      if (peek() == ']') { ++i_; return v; }
      while (true) {
        v.arr.push_back(value());
        if (peek() == ',') { ++i_; continue; }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.kind = Json::String;
      v.str = string();
      return v;
    }
    if (s_.compare(i_, 4, "true") == 0) { v.kind = Json::Bool; v.num = 1; i_ += 4; return v; }
    if (s_.compare(i_, 5, "false") == 0) { v.kind = Json::Bool; i_ += 5; return v; }
    if (s_.compare(i_, 4, "null") == 0) { i_ += 4; return v; }
    size_t used = 0;
    v.kind = Json::Number;
    v.num = std::stod(s_.substr(i_, 32), &used);
    i_ += used;
    return v;
  }

  const std::string& s_;
  size_t i_ = 0;
};

std::vector<int32_t> ids_of(const Json& a) {
  std::vector<int32_t> out;
  for (const auto& x : a.arr) out.push_back(static_cast<int32_t>(x.num));
  return out;
}

// --- fixtures -----------------------------------------------------------------

struct Vocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<TokenType> types;
  int32_t bos = -1, eos = -1, unk = -1;
};

Vocab load_vocab() {
  Vocab v;
  std::istringstream in(read_file(fixture("vocab.tsv")));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# bos=", 0) == 0) {
      std::sscanf(line.c_str(), "# bos=%d eos=%d unk=%d", &v.bos, &v.eos, &v.unk);
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    std::istringstream f(line);
    std::string id, hex, score, type;
    std::getline(f, id, '\t');
    std::getline(f, hex, '\t');
    std::getline(f, score, '\t');
    std::getline(f, type, '\t');
    if (std::stoul(id) != v.pieces.size()) throw std::runtime_error("vocab.tsv: ids out of order");
    std::string piece;
    for (size_t i = 0; i + 1 < hex.size(); i += 2)
      piece += static_cast<char>(std::stoul(hex.substr(i, 2), nullptr, 16));
    v.pieces.push_back(piece);
    v.scores.push_back(std::strtof(score.c_str(), nullptr));
    v.types.push_back(static_cast<TokenType>(std::stoi(type)));
  }
  return v;
}

const Tokenizer& tiny() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    Vocab v = load_vocab();
    return std::make_unique<Tokenizer>(v.pieces, v.scores, v.types, v.bos, v.eos, v.unk, true, "vocab.tsv");
  }();
  return *tok;
}

const Json& goldens() {
  static const std::string text = read_file(fixture("goldens.json"));
  static const Json j = JsonParser(text).parse();
  return j;
}

std::string show_ids(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

// Whether s is well-formed UTF-8: written here separately from the engine's
// checker, so the streaming test does not trust the code it tests.
bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; }
    else return false;
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      const unsigned char b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

int32_t byte_id(int b) {
  char name[8];
  std::snprintf(name, sizeof name, "<0x%02X>", b);
  for (int32_t i = 0; i < tiny().n_vocab(); ++i)
    if (tiny().piece(i) == name) return i;
  return -1;
}

}  // namespace

TEST(tokenizer_fixture_loads) {
  const Tokenizer& t = tiny();
  CHECK(t.n_vocab() == 1000);
  CHECK(t.bos() == 1 && t.eos() == 2 && t.unk() == 0);
  CHECK(t.type(0) == TokenType::Unknown && t.type(1) == TokenType::Control && t.type(3) == TokenType::Byte);
  CHECK(goldens()["encode"].arr.size() >= 220);
}

TEST(tokenizer_encode_matches_sentencepiece) {
  const Json& g = goldens()["encode"];
  size_t bad = 0;
  for (const Json& e : g.arr) {
    const std::vector<int32_t> want = ids_of(e["ids"]);
    const std::vector<int32_t> got = tiny().encode(e["text"].str, false, false);
    if (got != want && ++bad <= 5)
      std::fprintf(stderr, "  encode(\"%.60s\"): got %s want %s\n", e["text"].str.c_str(),
                   show_ids(got).substr(0, 200).c_str(), show_ids(want).substr(0, 200).c_str());
  }
  CHECK(bad == 0);
  std::printf("  %zu/%zu strings encode exactly as SentencePiece\n", g.arr.size() - bad, g.arr.size());
}

TEST(tokenizer_encode_bos) {
  const std::vector<int32_t> plain = tiny().encode("No acute process.", false, false);
  const std::vector<int32_t> with = tiny().encode("No acute process.", true, false);
  CHECK(with.size() == plain.size() + 1);
  CHECK(with[0] == 1);
  CHECK(std::vector<int32_t>(with.begin() + 1, with.end()) == plain);
  CHECK(tiny().encode("", true, false) == std::vector<int32_t>{1});
  CHECK(tiny().encode("", false, true).empty());
}

TEST(tokenizer_encode_special_markers) {
  // Expected ids: the Python side splits on <s>/</s> and sp.encode()s each chunk.
  size_t bad = 0;
  for (const Json& e : goldens()["encode_special"].arr) {
    const std::vector<int32_t> want = ids_of(e["ids"]);
    const std::vector<int32_t> got = tiny().encode(e["text"].str, false, true);
    if (got != want && ++bad <= 5)
      std::fprintf(stderr, "  encode_special(\"%s\"): got %s want %s\n", e["text"].str.c_str(),
                   show_ids(got).c_str(), show_ids(want).c_str());
  }
  CHECK(bad == 0);
  // Without `special` the markers are text: never a control id.
  for (int32_t id : tiny().encode("<s>a</s>", false, false)) CHECK(id != 1 && id != 2);
}

TEST(tokenizer_decode_matches_sentencepiece) {
  size_t bad = 0, n = 0;
  for (const Json& e : goldens()["encode"].arr) {
    ++n;
    const std::string got = tiny().decode(ids_of(e["ids"]));
    if (got != e["decoded"].str && ++bad <= 5)
      std::fprintf(stderr, "  decode(%s): got \"%s\" want \"%s\"\n", show_ids(ids_of(e["ids"])).c_str(),
                   got.c_str(), e["decoded"].str.c_str());
  }
  // Sequences SentencePiece never emits: control tokens inside, <unk>, broken bytes.
  for (const Json& e : goldens()["decode"].arr) {
    ++n;
    const std::string got = tiny().decode(ids_of(e["ids"]));
    if (got != e["decoded"].str && ++bad <= 10)
      std::fprintf(stderr, "  decode(%s): got \"%s\" want \"%s\"\n", show_ids(ids_of(e["ids"])).c_str(),
                   got.c_str(), e["decoded"].str.c_str());
  }
  CHECK(bad == 0);
  std::printf("  %zu/%zu id sequences decode exactly as SentencePiece\n", n - bad, n);
}

TEST(tokenizer_round_trip) {
  // With identity normalisation, decode(encode(s)) == s for all valid UTF-8 text
  // except text that itself contains "▁", which decodes as a space.
  size_t n = 0;
  for (const Json& e : goldens()["encode"].arr) {
    const std::string& s = e["text"].str;
    if (s.find("\xE2\x96\x81") != std::string::npos) continue;
    ++n;
    CHECK(tiny().decode(tiny().encode(s, true, false)) == s);
  }
  CHECK(n >= 200);
}

TEST(tokenizer_invalid_utf8_input_falls_back_to_bytes) {
  // A malformed byte is a symbol of its own and can only become its byte piece.
  const std::vector<int32_t> a = tiny().encode("a", false, false);
  std::vector<int32_t> want = a;
  want.push_back(byte_id(0xFF));
  CHECK(tiny().encode("a\xFF", false, false) == want);
  want = a;
  want.push_back(byte_id(0xE2));
  want.push_back(byte_id(0x82));
  CHECK(tiny().encode("a\xE2\x82", false, false) == want);  // truncated "€"
  CHECK(tiny().decode(tiny().encode("a\xE2\x82", false, false)) == "a\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(tokenizer_piece_bytes) {
  const Tokenizer& t = tiny();
  CHECK(t.piece_bytes(1).empty());  // <s>
  CHECK(t.piece_bytes(2).empty());  // </s>
  CHECK(t.piece_bytes(byte_id(0x41)) == "A");
  CHECK(t.piece_bytes(byte_id(0x00)) == std::string(1, '\0'));
  const std::vector<int32_t> ids = t.encode("There", false, false);
  CHECK(ids.size() == 1 && t.piece(ids[0]) == "\xE2\x96\x81There" && t.piece_bytes(ids[0]) == " There");
  CHECK_THROWS(t.piece_bytes(-1), "token id -1 is outside the vocabulary (1000 pieces)");
  CHECK_THROWS(t.piece_bytes(1000), "token id 1000 is outside the vocabulary");
  CHECK_THROWS(t.decode({5, 1000}), "token id 1000");
}

TEST(detokenizer_streams_like_decode) {
  std::vector<std::vector<int32_t>> seqs;
  for (const Json& e : goldens()["encode"].arr) {
    std::vector<int32_t> ids = ids_of(e["ids"]);
    seqs.push_back(ids);
    ids.insert(ids.begin(), 1);  // and with BOS first, as generation sees it
    seqs.push_back(ids);
  }
  for (const Json& e : goldens()["decode"].arr) seqs.push_back(ids_of(e["ids"]));
  size_t bad_text = 0, bad_chunks = 0;
  for (const auto& ids : seqs) {
    cxr::Detokenizer d(tiny());
    std::string all;
    for (int32_t id : ids) {
      const std::string chunk = d.push(id);
      if (!valid_utf8(chunk)) ++bad_chunks;
      all += chunk;
    }
    const std::string tail = d.flush();
    if (!valid_utf8(tail)) ++bad_chunks;
    all += tail;
    if (all != tiny().decode(ids) && ++bad_text <= 5)
      std::fprintf(stderr, "  stream(%s) = \"%s\", decode = \"%s\"\n", show_ids(ids).c_str(), all.c_str(),
                   tiny().decode(ids).c_str());
  }
  CHECK(bad_text == 0);
  CHECK(bad_chunks == 0);
}

TEST(detokenizer_holds_back_partial_characters) {
  // "€" = E2 82 AC as three byte tokens: nothing comes out until it is whole.
  cxr::Detokenizer d(tiny());
  CHECK(d.push(byte_id(0xE2)).empty());
  CHECK(d.push(byte_id(0x82)).empty());
  CHECK(d.push(byte_id(0xAC)) == "\xE2\x82\xAC");
  // A character that is never finished comes out as U+FFFD per byte on flush.
  CHECK(d.push(byte_id(0xF0)).empty());
  CHECK(d.flush() == "\xEF\xBF\xBD");
  CHECK(d.flush().empty());
  // A byte that cannot start a character is replaced at once.
  CHECK(d.push(byte_id(0x80)) == "\xEF\xBF\xBD");
}

TEST(tokenizer_long_input_is_fast) {
  // 250 KB of report text; a quadratic merge loop would take minutes here.
  std::string text;
  while (text.size() < 250000) text += "There is a small right pleural effusion measuring 12 mm. No pneumothorax.  ";
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tiny().encode(text, true, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("  encoded %zu bytes into %zu tokens in %.3f s\n", text.size(), ids.size(), s);
  CHECK(s < 2.0);
  CHECK(tiny().decode(ids) == text);
}

TEST(tokenizer_rejects_inconsistent_vocab) {
  using V = std::vector<std::string>;
  using S = std::vector<float>;
  using T = std::vector<TokenType>;
  const V p = {"<unk>", "<s>", "</s>", "a"};
  const S s = {0, 0, 0, -1};
  const T t = {TokenType::Unknown, TokenType::Control, TokenType::Control, TokenType::Normal};
  CHECK_THROWS(Tokenizer(V{}, S{}, T{}, 1, 2, 0, true, "m.gguf"), "m.gguf: the tokenizer vocabulary is empty");
  CHECK_THROWS(Tokenizer(p, S{0, 0}, t, 1, 2, 0, true, "m.gguf"), "m.gguf: the tokenizer has 4 pieces but 2 scores");
  CHECK_THROWS(Tokenizer(p, s, T{TokenType::Normal}, 1, 2, 0, true, "m.gguf"),
               "m.gguf: the tokenizer has 4 pieces but 1 token types");
  CHECK_THROWS(Tokenizer(p, s, t, 7, 2, 0, true, "m.gguf"),
               "m.gguf: the BOS token id 7 is outside the vocabulary (4 pieces)");
  CHECK_THROWS(Tokenizer(p, s, t, 1, -1, 0, true, "m.gguf"), "m.gguf: the EOS token id -1");
  CHECK_THROWS(Tokenizer(p, s, T{TokenType::Unknown, TokenType::Control, TokenType::Control, TokenType(9)}, 1, 2, 0,
                         true, "m.gguf"),
               "m.gguf: token 3 has unknown type 9");
  CHECK_THROWS(Tokenizer(p, s, T{TokenType::Unknown, TokenType::Control, TokenType::Control, TokenType::Byte}, 1, 2,
                         0, true, "m.gguf"),
               "m.gguf: byte token 3 is \"a\", not of the form <0xXX>");
  // Without byte pieces, unknown characters become <unk> (a run of them, one).
  Tokenizer tok(p, s, t, 1, 2, 0, false, "m.gguf");
  CHECK(!tok.add_bos_default());
  CHECK(tok.encode("a", false, false) == (std::vector<int32_t>{0, 3}));  // "▁" is not a piece
  CHECK(tok.encode("a\xC3\xA9\xC3\xA9" "a", false, false) == (std::vector<int32_t>{0, 3, 0, 3}));
}

TEST(tokenizer_merge_ties_go_left) {
  // "▁aaa": pieces "aa" and "▁a" with equal scores; the leftmost pair merges first.
  const std::vector<std::string> p = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "aa", "\xE2\x96\x81" "a"};
  const std::vector<float> s = {0, 0, 0, -5, -5, -1, -1};
  const std::vector<TokenType> t = {TokenType::Unknown, TokenType::Control, TokenType::Control, TokenType::Normal,
                                    TokenType::Normal, TokenType::Normal, TokenType::Normal};
  Tokenizer tok(p, s, t, 1, 2, 0, true, "ties");
  // Pairs at the start: (▁,a) -1, (a,a) -1, (a,a) -1 -> (▁,a) wins, then "aa".
  CHECK(tok.encode("aaa", false, false) == (std::vector<int32_t>{6, 5}));
  // A higher score beats position: make "aa" better.
  std::vector<float> s2 = s;
  s2[5] = 0.5f;
  Tokenizer tok2(p, s2, t, 1, 2, 0, true, "ties");
  CHECK(tok2.encode("aaa", false, false) == (std::vector<int32_t>{3, 5, 4}));
}

// --- through a GGUF file ----------------------------------------------------------

namespace {

// Writes a tensor-less GGUF v3 holding the tiny vocabulary (and `model` as
// tokenizer.ggml.model), so the GgufFile constructor is tested end to end.
std::string write_vocab_gguf(const std::string& name, const std::string& model) {
  const Vocab v = load_vocab();
  std::string b;
  auto u32 = [&](uint32_t x) { b.append(reinterpret_cast<const char*>(&x), 4); };
  auto u64 = [&](uint64_t x) { b.append(reinterpret_cast<const char*>(&x), 8); };
  auto str = [&](const std::string& s) { u64(s.size()); b += s; };
  b += "GGUF";
  u32(3);
  u64(0);  // tensors
  u64(7);  // key/value pairs
  str("tokenizer.ggml.model"); u32(8); str(model);
  str("tokenizer.ggml.tokens"); u32(9); u32(8); u64(v.pieces.size());
  for (const auto& p : v.pieces) str(p);
  str("tokenizer.ggml.scores"); u32(9); u32(6); u64(v.scores.size());
  for (float f : v.scores) b.append(reinterpret_cast<const char*>(&f), 4);
  str("tokenizer.ggml.token_type"); u32(9); u32(5); u64(v.types.size());
  for (TokenType t : v.types) u32(static_cast<uint32_t>(t));
  str("tokenizer.ggml.bos_token_id"); u32(4); u32(static_cast<uint32_t>(v.bos));
  str("tokenizer.ggml.eos_token_id"); u32(4); u32(static_cast<uint32_t>(v.eos));
  str("tokenizer.ggml.add_bos_token"); u32(7); b += '\0';
  while (b.size() % 32) b += '\0';
  const std::string path = "/tmp/cxr-test-tokenizer-" + std::to_string(getpid()) + "-" + name + ".gguf";
  std::ofstream(path, std::ios::binary) << b;
  return path;
}

}  // namespace

TEST(tokenizer_from_gguf) {
  const std::string path = write_vocab_gguf("llama", "llama");
  const auto file = cxr::GgufFile::open(path);
  const Tokenizer tok(*file);
  CHECK(tok.n_vocab() == tiny().n_vocab());
  CHECK(tok.bos() == 1 && tok.eos() == 2 && tok.unk() == 0);  // unk from the default
  CHECK(!tok.add_bos_default());
  for (const Json& e : goldens()["encode"].arr) CHECK(tok.encode(e["text"].str, false, false) == ids_of(e["ids"]));
  std::remove(path.c_str());

  const std::string gpt2 = write_vocab_gguf("gpt2", "gpt2");
  const auto f2 = cxr::GgufFile::open(gpt2);
  CHECK_THROWS(Tokenizer{*f2}, (gpt2 + ": tokenizer.ggml.model is \"gpt2\"; only SentencePiece").c_str());
  std::remove(gpt2.c_str());
}
