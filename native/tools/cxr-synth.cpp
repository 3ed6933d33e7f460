// cxr-synth - writes random-weight GGUF files of real model shapes with the
// engine's own quantizer, for benchmarks on machines without Node (a lent GPU
// machine: tools/gpu-check.sh). Speed depends on shapes and types, not values.
//
//   cxr-synth text  OUT.gguf --shape 7b|tiny --type q4_0|q8_0|f16|q4_k|q6_k [--threads N]
//   cxr-synth mmproj OUT.gguf --shape vit-l|tiny --type f16|q8_0|f32 [--threads N]
//
// Text files carry a synthetic SentencePiece-like vocabulary (<unk>, <s>, </s>,
// the 256 byte pieces, filler words) so the engine loads them; benchmarks feed
// token ids. Weights are uniform in ±1/sqrt(cols) (activations stay O(1)
// through every layer), norms are 1, biases 0. Written to OUT.tmp, then renamed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "types/dtype.h"
#include "types/quants.h"

namespace {

using cxr::DType;

// --- a minimal GGUF v3 writer: metadata and tensor table first, then data ------

constexpr uint32_t kAlign = 32;

struct Tensor {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the row length
  DType type;
  enum Fill { Random, Ones, Zeros } fill;
  uint64_t offset = 0;
  int64_t rows() const {
    int64_t r = 1;
    for (size_t i = 1; i < ne.size(); ++i) r *= ne[i];
    return r;
  }
  uint64_t bytes() const { return cxr::dtype_row_bytes(type, ne[0]) * static_cast<uint64_t>(rows()); }
};

class Writer {
 public:
  void u32(uint32_t v) { put(&v, 4); }
  void u64(uint64_t v) { put(&v, 8); }
  void f32(float v) { put(&v, 4); }
  void str(const std::string& s) {
    u64(s.size());
    put(s.data(), s.size());
  }
  void put(const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    buf.insert(buf.end(), b, b + n);
  }
  // Key-value pairs (GGUF value types: 4 u32, 6 f32, 7 bool, 8 string, 9 array).
  void kv_u32(const std::string& k, uint32_t v) { str(k); u32(4); u32(v); ++n_kv; }
  void kv_f32(const std::string& k, float v) { str(k); u32(6); f32(v); ++n_kv; }
  void kv_bool(const std::string& k, bool v) { str(k); u32(7); uint8_t b = v; put(&b, 1); ++n_kv; }
  void kv_str(const std::string& k, const std::string& v) { str(k); u32(8); str(v); ++n_kv; }
  void kv_strs(const std::string& k, const std::vector<std::string>& v) {
    str(k); u32(9); u32(8); u64(v.size());
    for (const auto& s : v) str(s);
    ++n_kv;
  }
  void kv_f32s(const std::string& k, const std::vector<float>& v) {
    str(k); u32(9); u32(6); u64(v.size());
    for (float x : v) f32(x);
    ++n_kv;
  }
  void kv_i32s(const std::string& k, const std::vector<int32_t>& v) {
    str(k); u32(9); u32(5); u64(v.size());
    for (int32_t x : v) put(&x, 4);
    ++n_kv;
  }
  std::vector<uint8_t> buf;
  uint64_t n_kv = 0;
};

// xorshift32: uniform in [-amp, amp), seeded per tensor and row so threads agree.
void fill_uniform(float* out, int64_t n, uint32_t seed, float amp) {
  uint32_t x = seed ? seed : 0x9e3779b9u;
  for (int64_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = (static_cast<float>(x) * (1.0f / 4294967296.0f) * 2.0f - 1.0f) * amp;
  }
}

bool write_file(const std::string& path, Writer& meta, std::vector<Tensor>& tensors, int threads) {
  uint64_t off = 0;
  for (auto& t : tensors) {
    t.offset = off;
    off += (t.bytes() + kAlign - 1) / kAlign * kAlign;
  }
  Writer head;
  head.u32(0x46554747u);  // "GGUF"
  head.u32(3);
  head.u64(tensors.size());
  head.u64(meta.n_kv);
  head.put(meta.buf.data(), meta.buf.size());
  for (const auto& t : tensors) {
    head.str(t.name);
    head.u32(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) head.u64(static_cast<uint64_t>(d));
    head.u32(static_cast<uint32_t>(t.type));
    head.u64(t.offset);
  }
  while (head.buf.size() % kAlign) head.buf.push_back(0);

  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) {
    std::fprintf(stderr, "cxr-synth: cannot write %s\n", tmp.c_str());
    return false;
  }
  bool ok = std::fwrite(head.buf.data(), 1, head.buf.size(), f) == head.buf.size();
  uint64_t done = 0;
  int last_pct = -1;
  for (size_t ti = 0; ti < tensors.size() && ok; ++ti) {
    const Tensor& t = tensors[ti];
    const int64_t cols = t.ne[0], rows = t.rows();
    const size_t rb = cxr::dtype_row_bytes(t.type, cols);
    const int64_t chunk = std::max<int64_t>(1, (int64_t{64} << 20) / (cols * 4));  // ~64 MB of floats
    std::vector<uint8_t> out;
    const float amp = 1.0f / std::sqrt(static_cast<float>(cols));
    for (int64_t r0 = 0; r0 < rows && ok; r0 += chunk) {
      const int64_t nr = std::min(chunk, rows - r0);
      out.assign(static_cast<size_t>(nr) * rb, 0);
      std::vector<std::thread> pool;
      const int nt = std::max(1, std::min<int>(threads, static_cast<int>(nr)));
      for (int w = 0; w < nt; ++w) {
        pool.emplace_back([&, w] {
          std::vector<float> row(static_cast<size_t>(cols));
          for (int64_t r = r0 + w; r < r0 + nr; r += nt) {
            if (t.fill == Tensor::Random) fill_uniform(row.data(), cols, static_cast<uint32_t>(ti * 2654435761u + r * 40503u + 1), amp);
            else std::fill(row.begin(), row.end(), t.fill == Tensor::Ones ? 1.0f : 0.0f);
            cxr::quantize_weights(t.type, row.data(), out.data() + (r - r0) * rb, 1, cols);
          }
        });
      }
      for (auto& th : pool) th.join();
      ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
    }
    const uint64_t pad = (kAlign - t.bytes() % kAlign) % kAlign;
    static const uint8_t zeros[kAlign] = {};
    if (ok && pad) ok = std::fwrite(zeros, 1, pad, f) == pad;
    done += t.bytes();
    const int pct = static_cast<int>(100 * done / std::max<uint64_t>(1, off));
    if (pct != last_pct) std::fprintf(stderr, "\rcxr-synth: %s %3d%%", path.c_str(), last_pct = pct);
  }
  std::fprintf(stderr, "\n");
  ok = std::fclose(f) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    std::fprintf(stderr, "cxr-synth: writing %s failed\n", path.c_str());
    return false;
  }
  return true;
}

struct TextShape {
  int dim, ffn, layers, heads, kv_heads, vocab, ctx;
};

bool text(const std::string& path, const std::string& shape, DType type, int threads) {
  TextShape s;
  if (shape == "7b") s = {4096, 11008, 32, 32, 32, 32000, 4096};
  else if (shape == "tiny") s = {256, 768, 4, 8, 8, 8000, 2048};
  else return false;
  Writer m;
  m.kv_str("general.architecture", "llama");
  m.kv_str("general.name", "cxr-synth random " + shape);
  m.kv_u32("general.quantization_version", 2);
  m.kv_u32("llama.vocab_size", s.vocab);
  m.kv_u32("llama.context_length", s.ctx);
  m.kv_u32("llama.embedding_length", s.dim);
  m.kv_u32("llama.block_count", s.layers);
  m.kv_u32("llama.feed_forward_length", s.ffn);
  m.kv_u32("llama.rope.dimension_count", s.dim / s.heads);
  m.kv_u32("llama.attention.head_count", s.heads);
  m.kv_u32("llama.attention.head_count_kv", s.kv_heads);
  m.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  m.kv_f32("llama.rope.freq_base", 10000.0f);
  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char p[8];
    std::snprintf(p, sizeof p, "<0x%02X>", b);
    pieces.push_back(p);
    types.push_back(6);
  }
  for (int i = 0; static_cast<int>(pieces.size()) < s.vocab; ++i) {
    pieces.push_back("\xE2\x96\x81w" + std::to_string(i));
    types.push_back(1);
  }
  std::vector<float> scores(pieces.size());
  for (size_t i = 0; i < scores.size(); ++i) scores[i] = -static_cast<float>(i);
  m.kv_str("tokenizer.ggml.model", "llama");
  m.kv_strs("tokenizer.ggml.tokens", pieces);
  m.kv_f32s("tokenizer.ggml.scores", scores);
  m.kv_i32s("tokenizer.ggml.token_type", types);
  m.kv_u32("tokenizer.ggml.bos_token_id", 1);
  m.kv_u32("tokenizer.ggml.eos_token_id", 2);
  m.kv_u32("tokenizer.ggml.unknown_token_id", 0);
  m.kv_bool("tokenizer.ggml.add_bos_token", true);
  m.kv_bool("tokenizer.ggml.add_eos_token", false);

  const int64_t d = s.dim, kv = static_cast<int64_t>(s.kv_heads) * (s.dim / s.heads), f = s.ffn;
  std::vector<Tensor> t;
  t.push_back({"token_embd.weight", {d, s.vocab}, type, Tensor::Random});
  for (int l = 0; l < s.layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    t.push_back({b + "attn_norm.weight", {d}, DType::F32, Tensor::Ones});
    t.push_back({b + "attn_q.weight", {d, d}, type, Tensor::Random});
    t.push_back({b + "attn_k.weight", {d, kv}, type, Tensor::Random});
    t.push_back({b + "attn_v.weight", {d, kv}, type, Tensor::Random});
    t.push_back({b + "attn_output.weight", {d, d}, type, Tensor::Random});
    t.push_back({b + "ffn_norm.weight", {d}, DType::F32, Tensor::Ones});
    t.push_back({b + "ffn_gate.weight", {d, f}, type, Tensor::Random});
    t.push_back({b + "ffn_up.weight", {d, f}, type, Tensor::Random});
    t.push_back({b + "ffn_down.weight", {f, d}, type, Tensor::Random});
  }
  t.push_back({"output_norm.weight", {d}, DType::F32, Tensor::Ones});
  t.push_back({"output.weight", {d, s.vocab}, type, Tensor::Random});
  return write_file(path, m, t, threads);
}

bool mmproj(const std::string& path, const std::string& shape, DType type, int threads) {
  // ViT-L/16 at 512 px, one grayscale channel, projected to LLaMA-2-7B's 4096.
  int width = 1024, layers = 24, heads = 16, mlp = 4096, image = 512, patch = 16, proj = 4096;
  if (shape == "tiny") { width = 64; layers = 2; heads = 4; mlp = 256; image = 64; proj = 256; }
  else if (shape != "vit-l") return false;
  const int64_t n_pos = static_cast<int64_t>(image / patch) * (image / patch) + 1;
  Writer m;
  m.kv_str("general.architecture", "clip");
  m.kv_str("general.name", "cxr-synth random " + shape);
  m.kv_bool("clip.has_text_encoder", false);
  m.kv_bool("clip.has_vision_encoder", true);
  m.kv_bool("clip.has_llava_projector", true);
  m.kv_str("clip.projector_type", "linear");
  m.kv_bool("clip.use_gelu", true);
  m.kv_u32("clip.vision.image_size", image);
  m.kv_u32("clip.vision.patch_size", patch);
  m.kv_u32("clip.vision.embedding_length", width);
  m.kv_u32("clip.vision.feed_forward_length", mlp);
  m.kv_u32("clip.vision.projection_dim", proj);
  m.kv_u32("clip.vision.block_count", layers);
  m.kv_u32("clip.vision.attention.head_count", heads);
  m.kv_f32("clip.vision.attention.layer_norm_epsilon", 1e-5f);
  m.kv_f32s("clip.vision.image_mean", {0.5f});
  m.kv_f32s("clip.vision.image_std", {0.5f});
  m.kv_u32("cxr.vision.image_channels", 1);
  m.kv_str("cxr.vision.image_features", "patches_after_post_ln");
  m.kv_bool("cxr.vision.gelu_exact", true);
  const int64_t w = width;
  std::vector<Tensor> t;
  t.push_back({"v.patch_embd.weight", {patch, patch, 1, w}, type == DType::Q8_0 ? DType::F16 : type, Tensor::Random});
  t.push_back({"v.class_embd", {w}, DType::F32, Tensor::Random});
  t.push_back({"v.position_embd.weight", {w, n_pos}, DType::F32, Tensor::Random});
  t.push_back({"v.pre_ln.weight", {w}, DType::F32, Tensor::Ones});
  t.push_back({"v.pre_ln.bias", {w}, DType::F32, Tensor::Zeros});
  for (int l = 0; l < layers; ++l) {
    const std::string b = "v.blk." + std::to_string(l) + ".";
    t.push_back({b + "ln1.weight", {w}, DType::F32, Tensor::Ones});
    t.push_back({b + "ln1.bias", {w}, DType::F32, Tensor::Zeros});
    for (const char* n : {"attn_q", "attn_k", "attn_v"}) {
      t.push_back({b + n + ".weight", {w, w}, type, Tensor::Random});
      t.push_back({b + n + ".bias", {w}, DType::F32, Tensor::Zeros});
    }
    t.push_back({b + "attn_out.weight", {w, w}, type, Tensor::Random});
    t.push_back({b + "attn_out.bias", {w}, DType::F32, Tensor::Zeros});
    t.push_back({b + "ln2.weight", {w}, DType::F32, Tensor::Ones});
    t.push_back({b + "ln2.bias", {w}, DType::F32, Tensor::Zeros});
    t.push_back({b + "ffn_up.weight", {w, mlp}, type, Tensor::Random});
    t.push_back({b + "ffn_up.bias", {mlp}, DType::F32, Tensor::Zeros});
    t.push_back({b + "ffn_down.weight", {mlp, w}, type, Tensor::Random});
    t.push_back({b + "ffn_down.bias", {w}, DType::F32, Tensor::Zeros});
  }
  t.push_back({"v.post_ln.weight", {w}, DType::F32, Tensor::Ones});
  t.push_back({"v.post_ln.bias", {w}, DType::F32, Tensor::Zeros});
  t.push_back({"mm.0.weight", {w, proj}, type, Tensor::Random});
  t.push_back({"mm.0.bias", {proj}, DType::F32, Tensor::Zeros});
  return write_file(path, m, t, threads);
}

int usage() {
  std::fprintf(stderr,
               "usage: cxr-synth text OUT.gguf --shape 7b|tiny --type q4_0|q8_0|q4_k|q6_k|f16 [--threads N]\n"
               "       cxr-synth mmproj OUT.gguf --shape vit-l|tiny --type f16|q8_0|f32 [--threads N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string kind = argv[1], out = argv[2];
  std::string shape = kind == "text" ? "7b" : "vit-l", type_name = kind == "text" ? "q4_0" : "f16";
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 3; i < argc; ++i) {
    if (i + 1 >= argc) return usage();
    if (!std::strcmp(argv[i], "--shape")) shape = argv[++i];
    else if (!std::strcmp(argv[i], "--type")) type_name = argv[++i];
    else if (!std::strcmp(argv[i], "--threads")) threads = std::max(1, std::atoi(argv[++i]));
    else return usage();
  }
  DType type;
  if (!cxr::dtype_from_name(type_name.c_str(), &type) || type == DType::Q8_K) return usage();
  try {
    if (kind == "text") return text(out, shape, type, threads) ? 0 : usage();
    if (kind == "mmproj") return mmproj(out, shape, type, threads) ? 0 : usage();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cxr-synth: %s\n", e.what());
    return 1;
  }
  return usage();
}
