// vision.cpp - the CXR-LLaVA image encoder, step for step as open_clip's
// VisionTransformer followed by LLaVA's linear mm_projector.
#include "models/vision.h"

#include <cmath>
#include <string>
#include <utility>

#include "types/error.h"
#include "format/gguf.h"
#include "types/quants.h"

namespace cxr {
namespace {

// Values of our own keys that this encoder implements (docs/gguf-format.md).
constexpr const char* kProjectorLinear = "linear";
constexpr const char* kFeaturesPatchesAfterPostLn = "patches_after_post_ln";

[[noreturn]] void fail(const GgufFile& f, const std::string& what) {
  throw EngineError(err::kModel, f.path() + ": " + what);
}

int32_t read_dim(const GgufFile& f, const char* key, uint64_t max) {
  const uint64_t v = f.get_u64(key);
  if (v == 0 || v > max) fail(f, std::string(key) + " = " + std::to_string(v) + " is out of range");
  return static_cast<int32_t>(v);
}

bool read_required_bool(const GgufFile& f, const char* key) {
  if (!f.find(key)) fail(f, std::string("metadata key '") + key + "' is missing");
  return f.get_bool(key, false);
}

// A bias or norm vector, converted to F32 and uploaded once.
VisionWeight read_vector(const GgufFile& f, Backend& be, const std::string& name, int64_t n) {
  return be.upload(tensor_view(f.require_tensor(name, {n})), WeightUse::Vector);
}

// A PyTorch [rows, cols] matrix (ggml ne {cols, rows}), read by matmul in
// whole images only.
VisionWeight read_matrix(const GgufFile& f, Backend& be, const std::string& name, int64_t rows, int64_t cols) {
  return be.upload(tensor_view(f.require_tensor(name, {cols, rows})), WeightUse::MatmulBatch);
}

// Host F32 values as a Vector weight [rows, cols].
VisionWeight host_vector(Backend& be, const std::string& name, const float* v, int64_t rows, int64_t cols) {
  TensorView t;
  t.name = name;
  t.type = DType::F32;
  t.rows = rows;
  t.cols = cols;
  t.data = v;
  return be.upload(t, WeightUse::Vector);
}

}  // namespace

VisionScratch::VisionScratch(Backend& b, const VisionConfig& c) : be(b) {
  const int64_t T = c.n_tokens(), w = c.width;
  try {
    pixels = be.alloc(static_cast<int64_t>(c.channels) * c.image_size * c.image_size);
    for (float** p : {&x, &xb, &q, &k, &v, &att}) *p = be.alloc(T * w);
    hb = be.alloc(T * c.mlp_dim);
    patches = be.alloc(static_cast<int64_t>(c.n_patches()) * c.patch_dim());
    out = be.alloc(static_cast<int64_t>(c.n_patches()) * c.proj_dim);
  } catch (...) {
    release();
    throw;
  }
}

void VisionScratch::release() {
  for (float** p : {&pixels, &x, &xb, &q, &k, &v, &att, &hb, &patches, &out}) {
    if (*p) be.free(*p);
    *p = nullptr;
  }
}

VisionConfig read_vision_config(const GgufFile& f) {
  const std::string arch = f.get_str("general.architecture");
  if (arch != "clip")
    fail(f, "architecture \"" + arch + "\" is not a CLIP image encoder (expected an mmproj file)");
  if (!f.get_bool("clip.has_vision_encoder", false)) fail(f, "clip.has_vision_encoder is not true");
  const std::string proj = f.get_str("clip.projector_type");
  if (proj != kProjectorLinear)
    fail(f, "clip.projector_type \"" + proj + "\" is not supported (only \"" + kProjectorLinear + "\")");
  const std::string features = f.get_str("cxr.vision.image_features");
  if (features != kFeaturesPatchesAfterPostLn)
    fail(f, "cxr.vision.image_features \"" + features + "\" is not supported (only \"" +
                kFeaturesPatchesAfterPostLn + "\")");
  // We implement exact (erf) GELU only; quick GELU or the tanh form would give wrong features.
  if (!read_required_bool(f, "clip.use_gelu") || !read_required_bool(f, "cxr.vision.gelu_exact"))
    fail(f, "only exact (erf) GELU is supported: clip.use_gelu and cxr.vision.gelu_exact must be true");

  VisionConfig c;
  c.image_size = read_dim(f, "clip.vision.image_size", 1 << 14);
  c.patch_size = read_dim(f, "clip.vision.patch_size", 1 << 10);
  c.channels = read_dim(f, "cxr.vision.image_channels", 16);
  c.width = read_dim(f, "clip.vision.embedding_length", 1 << 16);
  c.n_layers = read_dim(f, "clip.vision.block_count", 1024);
  c.n_heads = read_dim(f, "clip.vision.attention.head_count", 1024);
  c.mlp_dim = read_dim(f, "clip.vision.feed_forward_length", 1 << 20);
  c.proj_dim = read_dim(f, "clip.vision.projection_dim", 1 << 16);
  c.eps = static_cast<float>(f.get_f64("clip.vision.attention.layer_norm_epsilon"));
  if (!(c.eps > 0) || !std::isfinite(c.eps))
    fail(f, "clip.vision.attention.layer_norm_epsilon = " + std::to_string(c.eps) + " is invalid");
  if (c.image_size % c.patch_size != 0)
    fail(f, "clip.vision.image_size " + std::to_string(c.image_size) + " is not a multiple of patch_size " +
                std::to_string(c.patch_size));
  if (c.n_patches() > (1 << 20)) fail(f, "the image has too many patches");
  if (c.width % c.n_heads != 0)
    fail(f, "clip.vision.embedding_length " + std::to_string(c.width) + " is not divisible by head_count " +
                std::to_string(c.n_heads));
  c.head_dim = c.width / c.n_heads;
  c.mean = f.get_f32_array("clip.vision.image_mean");
  c.std = f.get_f32_array("clip.vision.image_std");
  for (const auto& [key, v] :
       {std::pair{"clip.vision.image_mean", &c.mean}, std::pair{"clip.vision.image_std", &c.std}}) {
    if (v->size() != static_cast<size_t>(c.channels))
      fail(f, std::string(key) + " has " + std::to_string(v->size()) + " values but the image has " +
                  std::to_string(c.channels) + " channel(s)");
  }
  for (float s : c.std) {
    if (!(s > 0) || !std::isfinite(s)) fail(f, "clip.vision.image_std values must be positive");
  }
  return c;
}

VisionModel::VisionModel(const GgufFile& f, Backend& be) : cfg_(read_vision_config(f)), be_(be) {
  const VisionConfig& c = cfg_;
  const int64_t w = c.width, p = c.patch_size;

  // conv1 is [width, C, p, p] (ne {p, p, C, width}); its rows are contiguous, so the
  // same bytes are the [width, C*p*p] matrix that multiplies im2col patch rows.
  {
    TensorView t = tensor_view(f.require_tensor("v.patch_embd.weight", {p, p, c.channels, w}));
    t.rows = w;
    t.cols = c.patch_dim();
    w_.patch_embd = be.upload(t, WeightUse::MatmulBatch);
  }
  {
    // [CLS; patches] + positions: the class token's row is a constant, added
    // here once (in float, as open_clip adds them).
    std::vector<float> cls(static_cast<size_t>(w)), pos(static_cast<size_t>(c.n_tokens()) * w);
    const GgufTensor& ct = f.require_tensor("v.class_embd", {w});
    type_traits_reference(ct.type).to_float(ct.data, cls.data(), w);
    const GgufTensor& pt = f.require_tensor("v.position_embd.weight", {w, c.n_tokens()});
    type_traits_reference(pt.type).to_float(pt.data, pos.data(), static_cast<int64_t>(pos.size()));
    for (int64_t i = 0; i < w; ++i) pos[i] += cls[i];
    w_.cls_pos = host_vector(be, "v.class_embd + v.position_embd.weight[0]", pos.data(), 1, w);
    w_.patch_pos = host_vector(be, "v.position_embd.weight[1:]", pos.data() + w, c.n_patches(), w);
  }
  w_.pre_ln_w = read_vector(f, be, "v.pre_ln.weight", w);
  w_.pre_ln_b = read_vector(f, be, "v.pre_ln.bias", w);
  w_.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "v.blk." + std::to_string(l) + ".";
    VisionLayer& L = w_.layers[l];
    L.ln1_w = read_vector(f, be, b + "ln1.weight", w);
    L.ln1_b = read_vector(f, be, b + "ln1.bias", w);
    L.wq = read_matrix(f, be, b + "attn_q.weight", w, w);
    L.bq = read_vector(f, be, b + "attn_q.bias", w);
    L.wk = read_matrix(f, be, b + "attn_k.weight", w, w);
    L.bk = read_vector(f, be, b + "attn_k.bias", w);
    L.wv = read_matrix(f, be, b + "attn_v.weight", w, w);
    L.bv = read_vector(f, be, b + "attn_v.bias", w);
    L.wo = read_matrix(f, be, b + "attn_out.weight", w, w);
    L.bo = read_vector(f, be, b + "attn_out.bias", w);
    L.ln2_w = read_vector(f, be, b + "ln2.weight", w);
    L.ln2_b = read_vector(f, be, b + "ln2.bias", w);
    L.w_up = read_matrix(f, be, b + "ffn_up.weight", c.mlp_dim, w);
    L.b_up = read_vector(f, be, b + "ffn_up.bias", c.mlp_dim);
    L.w_down = read_matrix(f, be, b + "ffn_down.weight", w, c.mlp_dim);
    L.b_down = read_vector(f, be, b + "ffn_down.bias", w);
  }
  // A file with more blocks than block_count would silently run a truncated tower.
  if (f.tensor("v.blk." + std::to_string(c.n_layers) + ".ln1.weight"))
    fail(f, "has more blocks than clip.vision.block_count = " + std::to_string(c.n_layers));
  w_.post_ln_w = read_vector(f, be, "v.post_ln.weight", w);
  w_.post_ln_b = read_vector(f, be, "v.post_ln.bias", w);
  w_.mm_w = read_matrix(f, be, "mm.0.weight", c.proj_dim, w);
  w_.mm_b = read_vector(f, be, "mm.0.bias", c.proj_dim);
  s_ = std::make_unique<VisionScratch>(be, c);
}

void VisionModel::encode(const float* pixels, float* out, const std::atomic<bool>* abort) {
  if (!pixels || !out) throw EngineError(err::kArgument, "encode() needs pixel and output buffers");
  const size_t n = static_cast<size_t>(cfg_.n_patches()) * cfg_.proj_dim;
  encode_into(pixels, s_->out, abort);
  be_.sync();
  be_.to_host(out, s_->out, n);
}

void VisionModel::encode_into(const float* pixels, float* out, const std::atomic<bool>* abort) {
  if (!pixels || !out) throw EngineError(err::kArgument, "encode() needs pixel and output buffers");
  const VisionConfig& c = cfg_;
  const int64_t w = c.width, n = c.n_patches(), T = c.n_tokens();
  const int64_t size = c.image_size, ps = c.patch_size;
  Backend& be = be_;
  VisionScratch& s = *s_;

  // The pixels go to backend memory once; im2col makes one row per patch in
  // row-major patch order, elements in conv1's (channel, ky, kx) order, so
  // conv1(pixels) is one matmul.
  be.from_host(s.pixels, pixels, static_cast<size_t>(c.channels) * size * size);
  be.im2col(s.pixels, c.channels, size, static_cast<int>(ps), s.patches);
  // x = conv1(pixels).reshape(width, -1).permute(1, 0): [n_patches, width]
  be.matmul(*w_.patch_embd, s.patches, n, s.xb);
  // x = cat([class_embedding, x]) + positional_embedding
  be.add_broadcast(s.x, nullptr, *w_.cls_pos, 1);
  be.add_broadcast(s.x + w, s.xb, *w_.patch_pos, n);
  // x = ln_pre(x)
  be.layernorm(s.x, *w_.pre_ln_w, *w_.pre_ln_b, T, w, c.eps, s.xb);
  std::swap(s.x, s.xb);

  for (int l = 0; l < c.n_layers; ++l) {
    if (abort && abort->load(std::memory_order_relaxed)) throw EngineError(err::kAborted, "image encoding aborted");
    const VisionLayer& L = w_.layers[l];
    // xb = ln_1(x) (from block 1 on, the previous block's fused residual step did it)
    if (l == 0) be.layernorm(s.x, *L.ln1_w, *L.ln1_b, T, w, c.eps, s.xb);
    // q, k, v = in_proj(xb).chunk(3)
    be.matmul(*L.wq, s.xb, T, s.q, L.bq.get());
    be.matmul(*L.wk, s.xb, T, s.k, L.bk.get());
    be.matmul(*L.wv, s.xb, T, s.v, L.bv.get());
    // att = softmax(q kᵀ / sqrt(head_dim)) v per head, every token seeing every token
    AttentionArgs a;
    a.q = s.q;
    a.k = s.k;
    a.v = s.v;
    a.kv_type = DType::F32;
    a.out = s.att;
    a.n = T;
    a.n_kv = T;
    a.pos0 = 0;
    a.n_heads = c.n_heads;
    a.n_kv_heads = c.n_heads;
    a.head_dim = c.head_dim;
    a.causal = false;
    a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    be.attention(a);
    // x = x + out_proj(att); xb = ln_2(x)
    be.matmul(*L.wo, s.att, T, s.xb, L.bo.get());
    be.add_layernorm(s.x, s.xb, *L.ln2_w, *L.ln2_b, T, w, c.eps, s.xb);
    // x = x + c_proj(gelu(c_fc(xb)))
    be.matmul(*L.w_up, s.xb, T, s.hb, L.b_up.get());
    be.gelu(s.hb, T * c.mlp_dim);
    be.matmul(*L.w_down, s.hb, T, s.xb, L.b_down.get());
    if (l + 1 < c.n_layers) {
      // ...and xb = the next block's ln_1(x), in the same pass
      const VisionLayer& next = w_.layers[l + 1];
      be.add_layernorm(s.x, s.xb, *next.ln1_w, *next.ln1_b, T, w, c.eps, s.xb);
    } else {
      be.add(s.x, s.xb, T * w);
    }
  }
  if (abort && abort->load(std::memory_order_relaxed)) throw EngineError(err::kAborted, "image encoding aborted");

  // xb = ln_post(x)[1:]: LayerNorm is per token, so normalising only the patch rows
  // is the same as normalising all and dropping CLS.
  be.layernorm(s.x + w, *w_.post_ln_w, *w_.post_ln_b, n, w, c.eps, s.xb);
  // out = mm_projector(xb)
  be.matmul(*w_.mm_w, s.xb, n, out, w_.mm_b.get());
}

}  // namespace cxr
