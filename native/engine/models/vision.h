// vision.h - the CXR-LLaVA image encoder (GGUF architecture "clip", the
// "mmproj" file): an open_clip ViT with a 1-channel patch embedding, then the
// linear projector into the language model's embedding space.
//
// Data path: normalised pixels [C, H, W] -> patches (im2col) -> conv1 as a
// matmul -> [CLS; patches] + positions -> ln_pre -> N pre-LN blocks ->
// ln_post -> drop CLS -> mm projector -> [n_patches, proj_dim], every step a
// backend op on backend memory.
//
// docs/gguf-format.md lists every key and tensor read here.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"

namespace cxr {

class GgufFile;

struct VisionConfig {
  int32_t image_size = 0;   // square input side, e.g. 512
  int32_t patch_size = 0;   // e.g. 16
  int32_t channels = 0;     // 1 for CXR-LLaVA
  int32_t width = 0;        // transformer width, e.g. 1024
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t head_dim = 0;     // width / n_heads
  int32_t mlp_dim = 0;      // e.g. 4096
  int32_t proj_dim = 0;     // output width = the language model's embedding width
  float eps = 1e-5f;        // LayerNorm epsilon
  std::vector<float> mean;  // per channel, for preprocessing
  std::vector<float> std;
  int32_t grid() const { return image_size / patch_size; }
  int32_t n_patches() const { return grid() * grid(); }
  int32_t n_tokens() const { return n_patches() + 1; }  // CLS first
  int32_t patch_dim() const { return channels * patch_size * patch_size; }
};

// Handles to the backend's copies (backend.h): the model holds no weight bytes.
using VisionWeight = std::unique_ptr<Weight>;

struct VisionLayer {
  VisionWeight ln1_w, ln1_b;         // (width) vectors
  VisionWeight wq, wk, wv;           // (width, width) each: nn.MultiheadAttention's in_proj, split
  VisionWeight bq, bk, bv;           // (width) vectors
  VisionWeight wo;                   // (width, width) out_proj
  VisionWeight bo;                   // (width)
  VisionWeight ln2_w, ln2_b;         // (width)
  VisionWeight w_up;                 // (mlp_dim, width) mlp.c_fc
  VisionWeight b_up;                 // (mlp_dim)
  VisionWeight w_down;               // (width, mlp_dim) mlp.c_proj
  VisionWeight b_down;               // (width)
};

struct VisionWeights {
  VisionWeight patch_embd;                // (width, channels * patch * patch): conv1 viewed as a matrix
  VisionWeight cls_pos;                   // (1, width): class_embedding + positional_embedding[0]
  VisionWeight patch_pos;                 // (n_patches, width): positional_embedding[1:]
  VisionWeight pre_ln_w, pre_ln_b;        // (width)
  std::vector<VisionLayer> layers;
  VisionWeight post_ln_w, post_ln_b;      // (width)
  VisionWeight mm_w;                      // (proj_dim, width) mm_projector
  VisionWeight mm_b;                      // (proj_dim)
};

// The activations of one encode() in backend memory, allocated once with the
// model (about 60 MB for ViT-L/16 at 512 px) and reused by every image.
struct VisionScratch {
  Backend& be;
  float* pixels = nullptr;   // (channels, image_size, image_size)
  float* x = nullptr;        // (n_tokens, width) the residual stream
  float* xb = nullptr;       // (n_tokens, width) normed input / branch output
  float* q = nullptr;        // (n_tokens, width)
  float* k = nullptr;        // (n_tokens, width)
  float* v = nullptr;        // (n_tokens, width)
  float* att = nullptr;      // (n_tokens, width)
  float* hb = nullptr;       // (n_tokens, mlp_dim)
  float* patches = nullptr;  // (n_patches, channels * patch * patch) im2col rows
  float* out = nullptr;      // (n_patches, proj_dim) encode()'s result on its way to the host

  VisionScratch(Backend& b, const VisionConfig& c);
  ~VisionScratch() { release(); }
  VisionScratch(const VisionScratch&) = delete;
  VisionScratch& operator=(const VisionScratch&) = delete;
  void release();
};

// Reads clip.* and cxr.vision.* keys; throws EngineError(kModel) naming the file
// on anything missing or unsupported.
VisionConfig read_vision_config(const GgufFile& f);

class VisionModel {
 public:
  // Reads the config and takes views of every weight (shapes checked, errors name
  // the file and tensor). `f` and `be` must outlive the model.
  VisionModel(const GgufFile& f, Backend& be);
  ~VisionModel() = default;
  VisionModel(const VisionModel&) = delete;
  VisionModel& operator=(const VisionModel&) = delete;

  const VisionConfig& config() const { return cfg_; }

  // pixels: host [channels, image_size, image_size], already normalised.
  // out: backend memory [n_patches, proj_dim] (be.alloc), written by work
  // queued on the backend (sync() before reading it). Throws
  // EngineError(kAborted) if `abort` turns true (checked between layers).
  // The pixels are copied to backend memory once; everything after runs
  // there, in the model's own scratch.
  void encode_into(const float* pixels, float* out, const std::atomic<bool>* abort = nullptr);
  // The same with `out` in host memory (through the scratch's own output rows).
  void encode(const float* pixels, float* out, const std::atomic<bool>* abort = nullptr);

 private:
  VisionConfig cfg_;
  Backend& be_;
  VisionWeights w_;
  std::unique_ptr<VisionScratch> s_;
};

}  // namespace cxr
