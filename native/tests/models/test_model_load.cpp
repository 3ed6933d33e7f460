// test_model_load.cpp - a model whose file holds a tensor of a type the backend
// cannot run fails at load, before any work, with an error that names the
// tensor, its type and the backend (Backend::supports, checked by upload).
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "format/gguf.h"
#include "models/text_model.h"
#include "support/data.h"
#include "support/files.h"
#include "support/gguf_builder.h"
#include "support/test.h"
#include "types/error.h"

using cxr::DType;

TEST(model_load_refuses_a_matrix_type_the_backend_cannot_run) {
  // Q8_K is a valid GGUF type (the activation partner of the K-quants) that no
  // backend multiplies by: a file may hold it, a model must refuse it.
  constexpr int kDim = 256, kVocab = 8;
  cxrtest::GgufBuilder g;
  g.set_str("general.architecture", "llama");
  g.set_u32("llama.embedding_length", kDim);
  g.set_u32("llama.block_count", 1);
  g.set_u32("llama.attention.head_count", 2);
  g.set_u32("llama.feed_forward_length", kDim);
  g.set_u32("llama.context_length", 16);
  g.tensors.push_back({"token_embd.weight", {kDim, kVocab}, cxrtest::randn(kDim * kVocab, 1), DType::F32, {}});
  g.tensors.push_back({"blk.0.attn_norm.weight", {kDim}, cxrtest::randn(kDim, 2), DType::F32, {}});
  g.add_raw("blk.0.attn_q.weight", {kDim, kDim}, DType::Q8_K,
            std::vector<uint8_t>(cxr::dtype_row_bytes(DType::Q8_K, kDim) * kDim, 0));
  cxrtest::TempFile tf(g.bytes());
  auto file = cxr::GgufFile::open(tf.path);
  auto be = cxr::make_backend("cpu", 1);
  CHECK(!be->supports(cxr::Op::Matmul, DType::Q8_K));
  CHECK_THROWS(cxr::TextModel(*file, *be, 16, DType::F16),
               "tensor blk.0.attn_q.weight has type q8_k, which the cpu backend cannot run matmul on");
  try {
    cxr::TextModel m(*file, *be, 16, DType::F16);
  } catch (const cxr::EngineError& e) {
    CHECK(e.code() == cxr::err::kModel);
  }
}
