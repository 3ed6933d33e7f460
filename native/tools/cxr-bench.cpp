// cxr-bench - measures prefill and decode speed of a GGUF text model with the
// engine alone (no Node), e.g. on a machine without Node or to profile.
//
//   cxr-bench model.gguf [--threads N] [--prompt 512] [--gen 64] [--runs 3]
//
// Prompts are random token ids (BOS first); decoding is greedy with EOS ignored,
// so every run decodes exactly --gen tokens. Prints medians.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "types/error.h"
#include "models/model.h"
#include "backend/cpu/dispatch.h"
#include "types/quants.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int usage() {
  std::fprintf(stderr, "usage: cxr-bench model.gguf [--threads N] [--prompt N] [--gen N] [--runs N] [--ctx N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  cxr::ModelOptions opts;
  opts.model_path = argv[1];
  int prompt = 512, gen = 64, runs = 3;
  for (int i = 2; i < argc; ++i) {
    auto next = [&](int& out) {
      if (i + 1 >= argc) std::exit(usage());
      out = std::atoi(argv[++i]);
    };
    int v = 0;
    if (!std::strcmp(argv[i], "--threads")) next(opts.threads);
    else if (!std::strcmp(argv[i], "--prompt")) next(prompt);
    else if (!std::strcmp(argv[i], "--gen")) next(gen);
    else if (!std::strcmp(argv[i], "--runs")) next(runs);
    else if (!std::strcmp(argv[i], "--ctx")) { next(v); opts.n_ctx = v; }
    else return usage();
  }
  if (prompt < 1 || gen < 1 || runs < 1) return usage();
  if (opts.n_ctx == 0) opts.n_ctx = prompt + gen + 1;
  try {
    const auto t0 = std::chrono::steady_clock::now();
    cxr::Model model(opts);
    const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const int32_t vocab = model.text().config().n_vocab;
    std::printf("model %s: %d layers, dim %d, vocab %d; %d threads, %s kernels; loaded in %.2f s\n",
                opts.model_path.c_str(), model.text().config().n_layers, model.text().config().dim, vocab,
                model.backend().threads(), cxr::simd_level(), load_ms / 1000);
    std::vector<double> pf, dc;
    uint64_t state = 42;
    for (int r = 0; r < runs; ++r) {
      cxr::PromptSegment seg;
      seg.tokens.push_back(model.tokenizer().bos());
      for (int i = 1; i < prompt; ++i) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        seg.tokens.push_back(3 + static_cast<int32_t>((state >> 33) % static_cast<uint64_t>(vocab - 3)));
      }
      cxr::GenerateParams p;
      p.max_tokens = gen;
      p.stop_at_eos = false;
      model.reset_cache();
      cxr::GenerateResult res = model.generate({seg}, p, nullptr, nullptr);
      pf.push_back(res.prefill_tokens / (res.prefill_ms / 1000.0));
      dc.push_back(res.decode_tokens / (res.decode_ms / 1000.0));
      std::printf("run %d: prefill %.2f tok/s (%lld tokens), decode %.2f tok/s (%lld tokens)\n", r + 1, pf.back(),
                  static_cast<long long>(res.prefill_tokens), dc.back(), static_cast<long long>(res.decode_tokens));
    }
    std::printf("median: prefill %.2f tok/s, decode %.2f tok/s\n", median(pf), median(dc));
  } catch (const cxr::EngineError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
