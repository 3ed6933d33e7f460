// test_vision.cpp - the image encoder's config and weight validation against
// small mmproj files built here: every missing key, unsupported value and wrong
// tensor shape must throw EngineError(kModel) naming the file and the key or
// tensor. The numbers themselves are checked against the PyTorch reference by
// test/vision-golden.test.ts.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "types/error.h"
#include "format/gguf.h"
#include "support/files.h"
#include "support/gguf_builder.h"
#include "support/test.h"
#include "models/vision.h"

using cxr::EngineError;
using cxr::GgufFile;
using cxr::GgufType;

namespace {

// A tiny encoder: 32x32 image, 16x16 patches (4 patches, 5 tokens), width 8,
// 2 heads, mlp 16, one block, projected to 4.
constexpr int kImage = 32, kPatch = 16, kWidth = 8, kHeads = 2, kMlp = 16, kProj = 4, kTokens = 5;

using Mmproj = cxrtest::GgufBuilder;
using cxrtest::TempFile;

// Every key and tensor of a valid file. Weights are small constants; LayerNorm
// weights are 1 so nothing degenerates.
Mmproj valid_mmproj() {
  Mmproj m;
  m.set_str("general.architecture", "clip");
  m.set_bool("clip.has_vision_encoder", true);
  m.set_str("clip.projector_type", "linear");
  m.set_bool("clip.use_gelu", true);
  m.set_u32("clip.vision.image_size", kImage);
  m.set_u32("clip.vision.patch_size", kPatch);
  m.set_u32("clip.vision.embedding_length", kWidth);
  m.set_u32("clip.vision.feed_forward_length", kMlp);
  m.set_u32("clip.vision.projection_dim", kProj);
  m.set_u32("clip.vision.block_count", 1);
  m.set_u32("clip.vision.attention.head_count", kHeads);
  m.set_f32("clip.vision.attention.layer_norm_epsilon", 1e-5f);
  m.set_f32_array("clip.vision.image_mean", {0.5f});
  m.set_f32_array("clip.vision.image_std", {0.25f});
  m.set_u32("cxr.vision.image_channels", 1);
  m.set_str("cxr.vision.image_features", "patches_after_post_ln");
  m.set_bool("cxr.vision.gelu_exact", true);

  m.add("v.patch_embd.weight", {kPatch, kPatch, 1, kWidth}, 0.01f);
  m.add("v.class_embd", {kWidth}, 0.1f);
  m.add("v.position_embd.weight", {kWidth, kTokens}, 0.02f);
  m.add("v.pre_ln.weight", {kWidth}, 1.0f);
  m.add("v.pre_ln.bias", {kWidth}, 0.0f);
  m.add("v.blk.0.ln1.weight", {kWidth}, 1.0f);
  m.add("v.blk.0.ln1.bias", {kWidth}, 0.0f);
  for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_out"}) {
    m.add(std::string("v.blk.0.") + n + ".weight", {kWidth, kWidth}, 0.05f);
    m.add(std::string("v.blk.0.") + n + ".bias", {kWidth}, 0.01f);
  }
  m.add("v.blk.0.ln2.weight", {kWidth}, 1.0f);
  m.add("v.blk.0.ln2.bias", {kWidth}, 0.0f);
  m.add("v.blk.0.ffn_up.weight", {kWidth, kMlp}, 0.05f);
  m.add("v.blk.0.ffn_up.bias", {kMlp}, 0.01f);
  m.add("v.blk.0.ffn_down.weight", {kMlp, kWidth}, 0.05f);
  m.add("v.blk.0.ffn_down.bias", {kWidth}, 0.01f);
  m.add("v.post_ln.weight", {kWidth}, 1.0f);
  m.add("v.post_ln.bias", {kWidth}, 0.0f);
  m.add("mm.0.weight", {kWidth, kProj}, 0.1f);
  m.add("mm.0.bias", {kProj}, 0.0f);
  return m;
}

// Loads `m` as a VisionModel; the file path is returned through `path` for message checks.
void load(const Mmproj& m, std::string* path = nullptr) {
  TempFile tf(m.bytes());
  if (path) *path = tf.path;
  auto f = GgufFile::open(tf.path);
  auto be = cxr::make_cpu_backend(1);
  cxr::VisionModel model(*f, *be);
}

// Checks that loading `m` throws kModel with a message naming the file and containing `substr`.
void check_rejected(const Mmproj& m, const char* substr) {
  TempFile tf(m.bytes());
  bool threw = false;
  try {
    auto f = GgufFile::open(tf.path);
    auto be = cxr::make_cpu_backend(1);
    cxr::VisionModel model(*f, *be);
  } catch (const EngineError& e) {
    threw = true;
    const std::string msg = e.what();
    CHECK(e.code() == cxr::err::kModel);
    if (msg.find(tf.path) != 0 || msg.find(substr) == std::string::npos) {
      std::fprintf(stderr, "  error \"%s\" should start with the file and contain \"%s\"\n", msg.c_str(), substr);
      ++cxrtest::g_failures;
    }
  }
  if (!threw) {
    std::fprintf(stderr, "  loading did not throw (expected \"%s\")\n", substr);
    ++cxrtest::g_failures;
  }
}

}  // namespace

TEST(vision_config_reads_every_key) {
  Mmproj m = valid_mmproj();
  TempFile tf(m.bytes());
  auto f = GgufFile::open(tf.path);
  const cxr::VisionConfig c = cxr::read_vision_config(*f);
  CHECK(c.image_size == kImage);
  CHECK(c.patch_size == kPatch);
  CHECK(c.channels == 1);
  CHECK(c.width == kWidth);
  CHECK(c.n_layers == 1);
  CHECK(c.n_heads == kHeads);
  CHECK(c.head_dim == kWidth / kHeads);
  CHECK(c.mlp_dim == kMlp);
  CHECK(c.proj_dim == kProj);
  CHECK_NEAR(c.eps, 1e-5, 1e-12);
  CHECK(c.mean.size() == 1 && c.mean[0] == 0.5f);
  CHECK(c.std.size() == 1 && c.std[0] == 0.25f);
  CHECK(c.n_patches() == 4);
  CHECK(c.n_tokens() == kTokens);
  CHECK(c.patch_dim() == kPatch * kPatch);
}

TEST(vision_encode_output_is_the_projector_bias_when_its_weight_is_zero) {
  // Whatever the tower computes, mm.0 with a zero weight must return its bias in
  // every row: checks the output layout and the bias path end to end.
  Mmproj m = valid_mmproj();
  m.tensor("mm.0.weight")->data.assign(kWidth * kProj, 0.0f);
  m.tensor("mm.0.bias")->data = {0.5f, -1.0f, 2.0f, 0.25f};
  TempFile tf(m.bytes());
  auto f = GgufFile::open(tf.path);
  auto be = cxr::make_cpu_backend(2);
  cxr::VisionModel model(*f, *be);
  std::vector<float> pixels(kImage * kImage, 0.3f), out(4 * kProj, NAN);
  model.encode(pixels.data(), out.data());
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < kProj; ++j) CHECK(out[r * kProj + j] == m.tensor("mm.0.bias")->data[j]);
}

TEST(vision_encode_features_are_finite_and_depend_on_the_image) {
  Mmproj m = valid_mmproj();
  // Give conv1 and the projector some structure so patches differ.
  std::vector<float>& conv = m.tensor("v.patch_embd.weight")->data;
  for (size_t i = 0; i < conv.size(); ++i) conv[i] = 0.01f * static_cast<float>(static_cast<int>(i % 7) - 3);
  std::vector<float>& mm = m.tensor("mm.0.weight")->data;
  for (size_t i = 0; i < mm.size(); ++i) mm[i] = 0.1f * static_cast<float>(static_cast<int>(i % 5) - 2);
  TempFile tf(m.bytes());
  auto f = GgufFile::open(tf.path);
  auto be = cxr::make_cpu_backend(1);
  cxr::VisionModel model(*f, *be);
  std::vector<float> a(kImage * kImage), b(kImage * kImage), fa(4 * kProj), fb(4 * kProj);
  for (int i = 0; i < kImage * kImage; ++i) {
    a[i] = std::sin(0.1f * static_cast<float>(i));
    b[i] = std::cos(0.07f * static_cast<float>(i));
  }
  model.encode(a.data(), fa.data());
  model.encode(b.data(), fb.data());
  double diff = 0;
  for (int i = 0; i < 4 * kProj; ++i) {
    CHECK(std::isfinite(fa[i]));
    diff += std::fabs(fa[i] - fb[i]);
  }
  CHECK(diff > 1e-3);
  // Deterministic: the same image gives the same bits.
  std::vector<float> again(4 * kProj);
  model.encode(a.data(), again.data());
  CHECK(std::memcmp(again.data(), fa.data(), fa.size() * sizeof(float)) == 0);
}

TEST(vision_encode_stops_when_aborted) {
  Mmproj m = valid_mmproj();
  TempFile tf(m.bytes());
  auto f = GgufFile::open(tf.path);
  auto be = cxr::make_cpu_backend(1);
  cxr::VisionModel model(*f, *be);
  std::vector<float> pixels(kImage * kImage, 0.0f), out(4 * kProj);
  std::atomic<bool> abort{true};
  CHECK_THROWS(model.encode(pixels.data(), out.data(), &abort), "image encoding aborted");
  CHECK_THROWS(model.encode(nullptr, out.data()), "needs pixel and output buffers");
}

TEST(vision_valid_mmproj_loads) {
  std::string path;
  bool ok = true;
  try {
    load(valid_mmproj(), &path);
  } catch (const EngineError& e) {
    std::fprintf(stderr, "  %s\n", e.what());
    ok = false;
  }
  CHECK(ok);
}

TEST(vision_rejects_missing_keys) {
  for (const char* key : {"clip.use_gelu", "cxr.vision.gelu_exact", "clip.vision.image_size",
                          "clip.vision.patch_size", "clip.vision.embedding_length", "clip.vision.feed_forward_length",
                          "clip.vision.projection_dim", "clip.vision.block_count",
                          "clip.vision.attention.head_count", "clip.vision.attention.layer_norm_epsilon",
                          "clip.vision.image_mean", "clip.vision.image_std", "cxr.vision.image_channels",
                          "clip.projector_type", "cxr.vision.image_features"}) {
    Mmproj m = valid_mmproj();
    m.remove_key(key);
    check_rejected(m, (std::string("metadata key '") + key + "' is missing").c_str());
  }
}

TEST(vision_rejects_unsupported_values) {
  Mmproj m = valid_mmproj();
  m.set_str("general.architecture", "llama");
  check_rejected(m, "architecture \"llama\" is not a CLIP image encoder (expected an mmproj file)");

  m = valid_mmproj();
  m.set_bool("clip.has_vision_encoder", false);
  check_rejected(m, "clip.has_vision_encoder is not true");

  m = valid_mmproj();
  m.set_str("clip.projector_type", "mlp");
  check_rejected(m, "clip.projector_type \"mlp\" is not supported (only \"linear\")");

  m = valid_mmproj();
  m.set_str("cxr.vision.image_features", "cls");
  check_rejected(m, "cxr.vision.image_features \"cls\" is not supported (only \"patches_after_post_ln\")");

  m = valid_mmproj();
  m.set_bool("cxr.vision.gelu_exact", false);
  check_rejected(m, "only exact (erf) GELU is supported");

  m = valid_mmproj();
  m.set_u32("clip.vision.image_size", 40);
  check_rejected(m, "clip.vision.image_size 40 is not a multiple of patch_size 16");

  m = valid_mmproj();
  m.set_u32("clip.vision.attention.head_count", 3);
  check_rejected(m, "clip.vision.embedding_length 8 is not divisible by head_count 3");

  m = valid_mmproj();
  m.set_u32("clip.vision.patch_size", 0);
  check_rejected(m, "clip.vision.patch_size = 0 is out of range");

  m = valid_mmproj();
  m.set_f32_array("clip.vision.image_mean", {0.5f, 0.5f, 0.5f});
  check_rejected(m, "clip.vision.image_mean has 3 values but the image has 1 channel(s)");

  m = valid_mmproj();
  m.set_f32_array("clip.vision.image_std", {0.0f});
  check_rejected(m, "clip.vision.image_std values must be positive");

  m = valid_mmproj();
  m.set_f32("clip.vision.attention.layer_norm_epsilon", -1.0f);
  check_rejected(m, "layer_norm_epsilon = -1.000000 is invalid");

  m = valid_mmproj();
  m.set_str("clip.vision.image_size", "big");
  check_rejected(m, "clip.vision.image_size");
}

TEST(vision_rejects_missing_and_misshapen_tensors) {
  Mmproj m = valid_mmproj();
  m.remove_tensor("v.blk.0.attn_k.bias");
  check_rejected(m, "tensor 'v.blk.0.attn_k.bias' is missing");

  m = valid_mmproj();
  m.remove_tensor("mm.0.weight");
  check_rejected(m, "tensor 'mm.0.weight' is missing");

  // The fused in_proj left unsplit: [3w, w] where attn_q expects [w, w].
  m = valid_mmproj();
  m.tensor("v.blk.0.attn_q.weight")->ne = {kWidth, 3 * kWidth};
  m.tensor("v.blk.0.attn_q.weight")->data.resize(3 * kWidth * kWidth);
  check_rejected(m, "tensor 'v.blk.0.attn_q.weight' has shape [8, 24], expected [8, 8]");

  // Three input channels where the file says one.
  m = valid_mmproj();
  m.tensor("v.patch_embd.weight")->ne = {kPatch, kPatch, 3, kWidth};
  m.tensor("v.patch_embd.weight")->data.resize(kPatch * kPatch * 3 * kWidth);
  check_rejected(m, "tensor 'v.patch_embd.weight' has shape [16, 16, 3, 8], expected [16, 16, 1, 8]");

  // Positions for a different image size.
  m = valid_mmproj();
  m.tensor("v.position_embd.weight")->ne = {kWidth, 17};
  m.tensor("v.position_embd.weight")->data.resize(kWidth * 17);
  check_rejected(m, "tensor 'v.position_embd.weight' has shape [8, 17], expected [8, 5]");

  // A projector that does not produce projection_dim.
  m = valid_mmproj();
  m.tensor("mm.0.weight")->ne = {kWidth, 6};
  m.tensor("mm.0.weight")->data.resize(kWidth * 6);
  check_rejected(m, "tensor 'mm.0.weight' has shape [8, 6], expected [8, 4]");

  m = valid_mmproj();
  m.tensor("v.blk.0.ffn_up.weight")->ne = {kMlp, kWidth};
  check_rejected(m, "tensor 'v.blk.0.ffn_up.weight' has shape [16, 8], expected [8, 16]");

  // More blocks in the file than block_count.
  m = valid_mmproj();
  m.add("v.blk.1.ln1.weight", {kWidth}, 1.0f);
  check_rejected(m, "has more blocks than clip.vision.block_count = 1");
}
