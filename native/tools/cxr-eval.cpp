// cxr-eval - runs a model on given token ids (and optionally an image) with a
// chosen backend and writes what a reference can be compared with: the logits
// of every prompt position, the image features, and a greedy continuation.
// tools/gpu-check.sh uses it to check the CUDA backend against the committed
// PyTorch goldens on a machine without Node.
//
//   cxr-eval MODEL.gguf --ids 1,2,3 [--backend cpu|cuda] [--device N] [--greedy N]
//            [--logits OUT.f32] [--kv f16|f32]
//            [--mmproj MM.gguf --pixels PX.f32 --after 4,5 --features OUT.f32]
//
// With --mmproj the prompt is ids, then the image's embeddings, then --after;
// without it the logits of the ids are written. Prints one JSON line:
// {"backend": ..., "greedy": [...]}; greedy decoding stops at EOS.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "models/model.h"
#include "runtime/engine.h"
#include "types/error.h"

namespace {

std::vector<int32_t> parse_ids(const char* s) {
  std::vector<int32_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) if (!item.empty()) v.push_back(std::atoi(item.c_str()));
  return v;
}

bool write_f32(const std::string& path, const std::vector<float>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  return static_cast<bool>(f);
}

std::vector<float> read_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw cxr::EngineError(cxr::err::kIo, path + ": cannot open");
  const std::streamsize n = f.tellg();
  std::vector<float> v(static_cast<size_t>(n) / sizeof(float));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), n);
  return v;
}

int usage() {
  std::fprintf(stderr,
               "usage: cxr-eval MODEL.gguf --ids 1,2,3 [--backend cpu|cuda] [--device N] [--greedy N] [--logits OUT.f32]\n"
               "                [--kv f16|f32] [--mmproj MM.gguf --pixels PX.f32 --after 4,5 --features OUT.f32]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  cxr::ModelOptions opts;
  opts.model_path = argv[1];
  std::vector<int32_t> ids, after;
  std::string logits_out, features_out, pixels_path;
  int greedy = 0;
  for (int i = 2; i < argc; ++i) {
    if (i + 1 >= argc) return usage();
    const char* a = argv[i];
    const char* v = argv[++i];
    if (!std::strcmp(a, "--ids")) ids = parse_ids(v);
    else if (!std::strcmp(a, "--after")) after = parse_ids(v);
    else if (!std::strcmp(a, "--backend")) opts.backend = v;
    else if (!std::strcmp(a, "--device")) opts.device = std::atoi(v);
    else if (!std::strcmp(a, "--greedy")) greedy = std::atoi(v);
    else if (!std::strcmp(a, "--logits")) logits_out = v;
    else if (!std::strcmp(a, "--features")) features_out = v;
    else if (!std::strcmp(a, "--mmproj")) opts.mmproj_path = v;
    else if (!std::strcmp(a, "--pixels")) pixels_path = v;
    else if (!std::strcmp(a, "--kv")) opts.kv_type = std::strcmp(v, "f32") ? cxr::DType::F16 : cxr::DType::F32;
    else return usage();
  }
  if (ids.empty() || (!opts.mmproj_path.empty() && pixels_path.empty())) return usage();
  try {
    cxr::Engine engine(opts);
    cxr::Model& model = engine.model();
    std::vector<cxr::PromptSegment> prompt(1);
    prompt[0].tokens = ids;
    std::vector<float> features;
    if (!opts.mmproj_path.empty()) {
      const std::vector<float> px = read_f32(pixels_path);
      const cxr::VisionConfig& vc = model.vision()->config();
      if (px.size() != static_cast<size_t>(vc.channels) * vc.image_size * vc.image_size)
        throw cxr::EngineError(cxr::err::kArgument, pixels_path + ": wrong number of pixels for the mmproj's image size");
      features = model.encode_image(px.data(), nullptr);
      if (!features_out.empty() && !write_f32(features_out, features))
        throw cxr::EngineError(cxr::err::kIo, features_out + ": cannot write");
      cxr::PromptSegment img;
      img.embd = features.data();
      img.n_embd = static_cast<int64_t>(features.size()) / model.text().config().dim;
      img.embd_id = 1;
      prompt.push_back(img);
      cxr::PromptSegment tail;
      tail.tokens = after;
      prompt.push_back(tail);
    } else if (!logits_out.empty()) {
      if (!write_f32(logits_out, engine.eval_logits(ids))) throw cxr::EngineError(cxr::err::kIo, logits_out + ": cannot write");
    }
    std::string out = std::string("{\"backend\": \"") + model.backend().name() + "\", \"greedy\": [";
    if (greedy > 0) {
      cxr::GenerateParams p;
      p.max_tokens = greedy;  // temperature 0: greedy
      const cxr::GenerateResult r = engine.generate(prompt, p, nullptr, nullptr);
      bool first = true;
      for (const auto& t : r.tokens) {
        if (t.id < 0) continue;
        out += (first ? "" : ", ") + std::to_string(t.id);
        first = false;
      }
    }
    std::printf("%s]}\n", out.c_str());
  } catch (const cxr::EngineError& e) {
    std::fprintf(stderr, "cxr-eval: %s\n", e.what());
    return 1;
  }
  return 0;
}
