// vision.h - the CXR-LLaVA image encoder (GGUF architecture "clip", the
// "mmproj" file): an open_clip ViT with a 1-channel patch embedding, then the
// linear projector into the language model's embedding space.
//
// Data path: normalised pixels [C, H, W] -> patches (im2col) -> conv1 as a
// matmul -> [CLS; patches] + positions -> ln_pre -> N pre-LN blocks ->
// ln_post -> drop CLS -> mm projector -> [n_patches, proj_dim].
//
// docs/gguf-format.md lists every key and tensor read here.
#pragma once
#include <atomic>
#include <cstdint>
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

struct VisionLayer {
  std::vector<float> ln1_w, ln1_b;   // (width)
  Weight wq, wk, wv;                 // (width, width) each: nn.MultiheadAttention's in_proj, split
  std::vector<float> bq, bk, bv;     // (width)
  Weight wo;                         // (width, width) out_proj
  std::vector<float> bo;             // (width)
  std::vector<float> ln2_w, ln2_b;   // (width)
  Weight w_up;                       // (mlp_dim, width) mlp.c_fc
  std::vector<float> b_up;           // (mlp_dim)
  Weight w_down;                     // (width, mlp_dim) mlp.c_proj
  std::vector<float> b_down;         // (width)
};

struct VisionWeights {
  Weight patch_embd;                      // (width, channels * patch * patch): conv1 viewed as a matrix
  std::vector<float> class_embd;          // (width)
  std::vector<float> pos_embd;            // (n_tokens, width)
  std::vector<float> pre_ln_w, pre_ln_b;  // (width)
  std::vector<VisionLayer> layers;
  std::vector<float> post_ln_w, post_ln_b;  // (width)
  Weight mm_w;                            // (proj_dim, width) mm_projector
  std::vector<float> mm_b;                // (proj_dim)
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
  // Scratch activations (about 60 MB for ViT-L/16 at 512 px) live only for the call.
  void encode_into(const float* pixels, float* out, const std::atomic<bool>* abort = nullptr);
  // The same with `out` in host memory.
  void encode(const float* pixels, float* out, const std::atomic<bool>* abort = nullptr);

 private:
  VisionConfig cfg_;
  Backend& be_;
  VisionWeights w_;
};

}  // namespace cxr
