// test_text_model_batch.cpp - several sequences in one forward pass against
// each sequence run alone: a tiny random LLaMA (grouped-query attention, two
// layers) in F32, Q8_0 and Q4_0, with an F16 and an F32 KV cache. Prompt
// chunks of different sequences and decoding steps are mixed in the same
// passes, prompts are cut at other places than in the single runs, and the
// sequences' cache cells interleave; every logit must come out bit for bit as
// in the single runs (which also shows that no sequence sees another's keys).
// The numbers themselves are checked against PyTorch by test/llama-golden.test.ts.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "format/gguf.h"
#include "models/kv_cells.h"
#include "models/text_model.h"
#include "support/data.h"
#include "support/files.h"
#include "support/gguf_builder.h"
#include "support/test.h"
#include "types/error.h"
#include "types/quants.h"

using cxr::DType;
using cxr::SeqInput;
using cxr::TextModel;
using cxrtest::GgufBuilder;
using cxrtest::TempFile;

namespace {

constexpr int kDim = 64, kHeads = 4, kKvHeads = 2, kFfn = 128, kLayers = 2, kVocab = 96, kCtx = 64;

// A LLaMA GGUF with seeded random weights; matrices in `type`.
std::vector<uint8_t> tiny_llama(DType type) {
  GgufBuilder g;
  g.set_str("general.architecture", "llama");
  g.set_u32("llama.embedding_length", kDim);
  g.set_u32("llama.block_count", kLayers);
  g.set_u32("llama.attention.head_count", kHeads);
  g.set_u32("llama.attention.head_count_kv", kKvHeads);
  g.set_u32("llama.feed_forward_length", kFfn);
  g.set_u32("llama.context_length", kCtx);
  g.set_f32("llama.rope.freq_base", 10000.0f);
  g.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  uint32_t seed = 1;
  auto matrix = [&](const std::string& name, int cols, int rows) {
    std::vector<float> w = cxrtest::randn(static_cast<size_t>(rows) * cols, seed++, 0.3f);
    if (type == DType::F32) {
      g.tensors.push_back({name, {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows)}, w, DType::F32, {}});
      return;
    }
    std::vector<uint8_t> raw(cxr::dtype_row_bytes(type, cols) * rows);
    for (int r = 0; r < rows; ++r)
      cxr::cpu_kernels().type(type).from_float(w.data() + static_cast<size_t>(r) * cols,
                                        raw.data() + cxr::dtype_row_bytes(type, cols) * r, cols);
    g.add_raw(name, {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows)}, type, raw);
  };
  auto vector = [&](const std::string& name) {
    g.tensors.push_back({name, {kDim}, cxrtest::randn(kDim, seed++, 0.1f, 1.0f), DType::F32, {}});
  };
  const int kv = kDim / kHeads * kKvHeads;
  matrix("token_embd.weight", kDim, kVocab);
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vector(p + "attn_norm.weight");
    matrix(p + "attn_q.weight", kDim, kDim);
    matrix(p + "attn_k.weight", kDim, kv);
    matrix(p + "attn_v.weight", kDim, kv);
    matrix(p + "attn_output.weight", kDim, kDim);
    vector(p + "ffn_norm.weight");
    matrix(p + "ffn_gate.weight", kDim, kFfn);
    matrix(p + "ffn_up.weight", kDim, kFfn);
    matrix(p + "ffn_down.weight", kFfn, kDim);
  }
  vector("output_norm.weight");
  matrix("output.weight", kDim, kVocab);
  return g.bytes();
}

int32_t argmax(const float* x) {
  int32_t best = 0;
  for (int32_t i = 1; i < kVocab; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

std::vector<float> logits_of(const TextModel& m, cxr::Backend& be, const float* dev, int row) {
  std::vector<float> out(kVocab);
  be.to_host(out.data(), dev + static_cast<size_t>(row) * kVocab, kVocab);
  (void)m;
  return out;
}

// One sequence alone: its prompt in one pass, then `steps` greedy decoding
// steps; every logits vector, in order.
std::vector<std::vector<float>> alone(TextModel& m, cxr::Backend& be, const std::vector<int32_t>& prompt, int steps) {
  m.cells().shrink(0, 0);
  std::vector<std::vector<float>> out;
  const int64_t n = static_cast<int64_t>(prompt.size());
  CHECK(m.cells().grow(0, n + steps));
  SeqInput in;
  in.seq = 0;
  in.pos0 = 0;
  in.n = n;
  in.tokens = prompt.data();
  in.logits = true;
  out.push_back(logits_of(m, be, m.forward_batch({in}), 0));
  for (int s = 0; s < steps; ++s) {
    const int32_t tok = argmax(out.back().data());
    SeqInput d;
    d.seq = 0;
    d.pos0 = n + s;
    d.n = 1;
    d.tokens = &tok;
    d.decode = true;
    d.logits = true;
    out.push_back(logits_of(m, be, m.forward_batch({d}), 0));
  }
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void check_batched_equals_alone(DType wtype, DType kvtype) {
  TempFile tf(tiny_llama(wtype));
  auto file = cxr::GgufFile::open(tf.path);
  auto be = cxr::make_backend("cpu", 2);
  constexpr int kSteps = 6;
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 5, 9, 14, 3},
      {1, 40, 41, 42, 43, 44, 45, 46, 7},
      {1, 90, 2, 60, 61, 62, 70, 71, 72, 73, 74, 75, 8},
  };
  std::vector<std::vector<std::vector<float>>> ref;
  {
    TextModel single(*file, *be, kCtx, kvtype, 1);
    for (const auto& p : prompts) ref.push_back(alone(single, *be, p, kSteps));
  }

  TextModel m(*file, *be, kCtx, kvtype, 3);
  CHECK(m.n_seq() == 3);
  std::vector<std::vector<std::vector<float>>> got(3);
  std::vector<int64_t> fed(3, 0);      // prompt rows in the cache
  std::vector<int32_t> next(3, -1);    // token to decode next (-1: still reading the prompt)
  // Prompt rows fed per pass for each sequence (0: none this pass); after its
  // prompt a sequence decodes one token per pass.
  const std::vector<std::vector<int64_t>> plan = {{5, 4, 0}, {0, 5, 7}, {0, 0, 6}};
  for (int pass = 0; pass < 3 + kSteps; ++pass) {
    std::vector<SeqInput> batch;
    std::vector<int> who;
    // Grow the cells a little per pass and sequence, so the sequences' cells interleave.
    for (int s = 0; s < 3; ++s) {
      const int64_t n = static_cast<int64_t>(prompts[s].size());
      if (next[s] >= 0) {
        if (static_cast<int>(got[s].size()) > kSteps) continue;
        CHECK(m.cells().grow(s, fed[s] + 1));
        SeqInput d;
        d.seq = s;
        d.pos0 = fed[s];
        d.n = 1;
        d.tokens = &next[s];
        d.decode = true;
        d.logits = true;
        batch.push_back(d);
        who.push_back(s);
        continue;
      }
      const int64_t take = pass < 3 ? plan[pass][s] : 0;
      if (take == 0) continue;
      CHECK(m.cells().grow(s, fed[s] + take));
      SeqInput in;
      in.seq = s;
      in.pos0 = fed[s];
      in.n = take;
      in.tokens = prompts[s].data() + fed[s];
      in.logits = fed[s] + take == n;
      batch.push_back(in);
      if (in.logits) who.push_back(s);
    }
    if (batch.empty()) break;
    const float* dev = m.forward_batch(batch);
    for (size_t j = 0; j < who.size(); ++j) {
      const int s = who[j];
      got[s].push_back(logits_of(m, *be, dev, static_cast<int>(j)));
      next[s] = argmax(got[s].back().data());
    }
    for (const SeqInput& in : batch) fed[in.seq] += in.n;
  }
  // The interleaving really happened: sequence 2's cells are not one run.
  const int32_t* t2 = m.cells().table(2);
  bool scattered = false;
  for (int64_t p = 1; p < m.cells().held(2); ++p) scattered |= t2[p] != t2[p - 1] + 1;
  CHECK(scattered);
  for (int s = 0; s < 3; ++s) {
    CHECK(got[s].size() == ref[s].size());
    for (size_t k = 0; k < got[s].size() && k < ref[s].size(); ++k) {
      if (!same_bits(got[s][k], ref[s][k])) {
        std::fprintf(stderr, "  weights %s, kv %s: sequence %d, logits %zu differ from the single run\n",
                     cxr::dtype_name(wtype), cxr::dtype_name(kvtype), s, k);
        CHECK(false);
      }
    }
  }
}

}  // namespace

TEST(text_model_batch_equals_sequences_alone_f32) {
  check_batched_equals_alone(DType::F32, DType::F32);
  check_batched_equals_alone(DType::F32, DType::F16);
}

TEST(text_model_batch_equals_sequences_alone_q8_0) { check_batched_equals_alone(DType::Q8_0, DType::F16); }

TEST(text_model_batch_equals_sequences_alone_q4_0) { check_batched_equals_alone(DType::Q4_0, DType::F16); }

TEST(text_model_batch_refuses_rows_without_cells) {
  TempFile tf(tiny_llama(DType::F32));
  auto file = cxr::GgufFile::open(tf.path);
  auto be = cxr::make_backend("cpu", 1);
  TextModel m(*file, *be, kCtx, DType::F16, 2, kCtx);
  const int32_t toks[3] = {1, 2, 3};
  SeqInput in;
  in.seq = 1;
  in.n = 3;
  in.tokens = toks;
  CHECK_THROWS(m.forward_batch({in}), "has no cache for positions 0..3");
  CHECK(m.cells().grow(1, 3));
  m.forward_batch({in});
  CHECK(m.cells().free() == kCtx - 3);
  CHECK_THROWS(TextModel(*file, *be, kCtx, DType::F16, 2, kCtx - 1), "cannot hold one full context");
}

TEST(kv_cells_share_one_pool) {
  cxr::KvCells c(10, 3);
  CHECK(c.free() == 10);
  CHECK(c.grow(0, 4));
  CHECK(c.grow(1, 4));
  CHECK(!c.grow(2, 3));  // 2 free: nothing changes
  CHECK(c.held(2) == 0 && c.free() == 2);
  c.shrink(0, 1);        // cells 1..3 come back, lowest handed out first
  CHECK(c.free() == 5);
  CHECK(c.grow(2, 3));
  CHECK(c.table(2)[0] == 1 && c.table(2)[1] == 2 && c.table(2)[2] == 3);
  CHECK(c.table(0)[0] == 0);
  c.shrink(1, 0);
  c.shrink(2, 0);
  c.shrink(0, 0);
  CHECK(c.free() == 10);
}
