// cxr-bench - measures prefill and decode speed of a GGUF text model with the
// engine alone (no Node), e.g. on a machine without Node or to profile.
//
//   cxr-bench model.gguf [--threads N] [--prompt 512] [--gen 64] [--runs 3] [--ctx N]
//             [--backend cpu|cuda|auto] [--device N] [--mmproj MM.gguf] [--parallel N] [--json]
//
// Prompts are random token ids (BOS first); decoding is greedy with EOS ignored,
// so every run decodes exactly --gen tokens. With --mmproj it also times the
// vision encode of a random image and one report end to end: encode, prefill of
// the image's embeddings plus text up to --prompt positions, --gen tokens.
// With --parallel N (N > 1) it also times N sequences decoding together (short
// prompts, --gen tokens each): tokens made while all N decode, per second, the
// figure the batching of several users or reports rides on; with --mmproj,
// also N reports at once (each its own image) against N one after another.
// Prints medians; --json prints them as one JSON object instead.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "types/error.h"
#include "models/model.h"
#include "runtime/engine.h"
#include "backend/cpu/cpu_kernels.h"
#include "types/quants.h"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int usage() {
  std::fprintf(stderr,
               "usage: cxr-bench model.gguf [--threads N] [--prompt N] [--gen N] [--runs N] [--ctx N]\n"
               "                 [--backend cpu|cuda|auto] [--device N] [--mmproj MM.gguf] [--parallel N] [--json]\n");
  return 2;
}

// Random token ids after BOS, the same sequence every run.
std::vector<int32_t> random_tokens(int n, int32_t bos, int32_t vocab, uint64_t* state) {
  std::vector<int32_t> t;
  if (bos >= 0) t.push_back(bos);
  while (static_cast<int>(t.size()) < n) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    t.push_back(3 + static_cast<int32_t>((*state >> 33) % static_cast<uint64_t>(vocab - 3)));
  }
  return t;
}

// N generations submitted together and run to the end on this thread; the
// time of every token of each, and of the end.
struct Timed {
  std::vector<Clock::time_point> tokens;
};
std::vector<Timed> run_together(cxr::Engine& engine, const std::vector<std::vector<cxr::PromptSegment>>& prompts,
                                int gen) {
  std::vector<Timed> out(prompts.size());
  std::string fail_code, failure;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto req = std::make_shared<cxr::GenerateRequest>();
    req->prompt = prompts[i];
    req->params.max_tokens = gen;
    req->params.stop_at_eos = false;
    Timed* t = &out[i];
    req->on_token = [t](const cxr::GeneratedToken& g) {
      if (g.id >= 0) t->tokens.push_back(Clock::now());
    };
    req->on_done = [](cxr::GenerateResult&&) {};
    req->on_error = [&](const std::string& code, const std::string& msg) {
      fail_code = code;
      failure = msg;
    };
    engine.scheduler().submit(req);
  }
  engine.scheduler().run_until_idle();
  if (!fail_code.empty()) throw cxr::EngineError(fail_code, failure);
  return out;
}

// Tokens/s over the time all of `runs` were decoding (after the last one's
// first token, up to the first one's last).
double together_rate(const std::vector<Timed>& runs) {
  Clock::time_point start = runs[0].tokens.front(), end = runs[0].tokens.back();
  for (const Timed& r : runs) {
    start = std::max(start, r.tokens.front());
    end = std::min(end, r.tokens.back());
  }
  int64_t n = 0;
  for (const Timed& r : runs)
    for (const auto& t : r.tokens) n += t > start && t <= end;
  const double s = std::chrono::duration<double>(end - start).count();
  return s > 0 ? n / s : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  cxr::ModelOptions opts;
  opts.model_path = argv[1];
  int prompt = 512, gen = 64, runs = 3, parallel = 1;
  bool json = false;
  for (int i = 2; i < argc; ++i) {
    auto next = [&](int& out) {
      if (i + 1 >= argc) std::exit(usage());
      out = std::atoi(argv[++i]);
    };
    auto next_str = [&](std::string& out) {
      if (i + 1 >= argc) std::exit(usage());
      out = argv[++i];
    };
    int v = 0;
    if (!std::strcmp(argv[i], "--threads")) next(opts.threads);
    else if (!std::strcmp(argv[i], "--prompt")) next(prompt);
    else if (!std::strcmp(argv[i], "--gen")) next(gen);
    else if (!std::strcmp(argv[i], "--runs")) next(runs);
    else if (!std::strcmp(argv[i], "--ctx")) { next(v); opts.n_ctx = v; }
    else if (!std::strcmp(argv[i], "--backend")) next_str(opts.backend);
    else if (!std::strcmp(argv[i], "--device")) next(opts.device);
    else if (!std::strcmp(argv[i], "--mmproj")) next_str(opts.mmproj_path);
    else if (!std::strcmp(argv[i], "--parallel")) next(parallel);
    else if (!std::strcmp(argv[i], "--json")) json = true;
    else return usage();
  }
  if (prompt < 1 || gen < 1 || runs < 1 || parallel < 1) return usage();
  if (opts.n_ctx == 0) opts.n_ctx = prompt + gen + 1;
  opts.parallel = parallel;
  try {
    const auto t0 = Clock::now();
    cxr::Engine engine(opts);
    cxr::Model& model = engine.model();
    const double load_ms = ms_since(t0);
    const int32_t vocab = model.text().config().n_vocab;
    if (!json)
      std::printf("model %s: %d layers, dim %d, vocab %d; backend %s (%s), %d threads, %s kernels; loaded in %.2f s\n",
                  opts.model_path.c_str(), model.text().config().n_layers, model.text().config().dim, vocab,
                  model.backend().name(), model.backend_reason().c_str(), model.backend().threads(), cxr::simd_level(),
                  load_ms / 1000);
    std::vector<double> pf, pf_ms, dc, enc, rep;
    uint64_t state = 42;
    for (int r = 0; r < runs; ++r) {
      cxr::PromptSegment seg;
      seg.tokens = random_tokens(prompt, model.tokenizer().bos(), vocab, &state);
      cxr::GenerateParams p;
      p.max_tokens = gen;
      p.stop_at_eos = false;
      engine.scheduler().reset_cache();
      cxr::GenerateResult res = engine.generate({seg}, p, nullptr, nullptr);
      pf.push_back(res.prefill_tokens / (res.prefill_ms / 1000.0));
      pf_ms.push_back(res.prefill_ms);
      dc.push_back(res.decode_tokens / (res.decode_ms / 1000.0));
      if (!json)
        std::printf("run %d: prefill %.2f tok/s (%lld tokens), decode %.2f tok/s (%lld tokens)\n", r + 1, pf.back(),
                    static_cast<long long>(res.prefill_tokens), dc.back(), static_cast<long long>(res.decode_tokens));
    }
    if (model.vision()) {
      const cxr::VisionConfig& vc = model.vision()->config();
      std::vector<float> px(static_cast<size_t>(vc.channels) * vc.image_size * vc.image_size);
      for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<float>((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
      for (int r = 0; r < runs + 1; ++r) {  // the first encode warms up the kernels
        const auto te = Clock::now();
        const std::vector<float> img = model.encode_image(px.data(), nullptr);
        if (r > 0) enc.push_back(ms_since(te));
        // one report: image embeddings between text, --prompt positions in all, --gen tokens
        const int64_t n_img = vc.n_patches();
        cxr::PromptSegment before, image, after;
        before.tokens = random_tokens(std::max<int>(1, static_cast<int>((prompt - n_img) / 2)), model.tokenizer().bos(), vocab, &state);
        image.embd = img.data();
        image.n_embd = n_img;
        image.embd_id = static_cast<uint64_t>(r + 1);
        after.tokens = random_tokens(std::max<int>(1, prompt - static_cast<int>(n_img) - static_cast<int>(before.tokens.size())), -1, vocab, &state);
        cxr::GenerateParams p;
        p.max_tokens = gen;
        p.stop_at_eos = false;
        engine.scheduler().reset_cache();
        engine.generate({before, image, after}, p, nullptr, nullptr);
        if (r > 0) rep.push_back(ms_since(te));
      }
      if (!json) std::printf("encode %.2f ms, one report %.1f ms (median of %d)\n", median(enc), median(rep), runs);
    }
    // Several sequences together: short prompts, so the figure is the decode's.
    std::vector<double> one_seq, n_seq, n_rep;
    if (parallel > 1) {
      const int short_prompt = std::min(prompt, 16);
      for (int r = 0; r < runs; ++r) {
        for (int n : {1, parallel}) {  // alternating, so both see the same machine
          std::vector<std::vector<cxr::PromptSegment>> prompts(n);
          for (auto& p : prompts) {
            p.resize(1);
            p[0].tokens = random_tokens(short_prompt, model.tokenizer().bos(), vocab, &state);
          }
          engine.scheduler().reset_cache();
          const double rate = together_rate(run_together(engine, prompts, gen));
          (n == 1 ? one_seq : n_seq).push_back(rate);
          if (!json) std::printf("run %d: decode, %d sequence(s) together: %.2f tok/s\n", r + 1, n, rate);
        }
      }
      if (model.vision()) {
        const cxr::VisionConfig& vc = model.vision()->config();
        const size_t n_px = static_cast<size_t>(vc.channels) * vc.image_size * vc.image_size;
        for (int r = 0; r < runs; ++r) {
          engine.scheduler().reset_cache();
          const auto tr = Clock::now();
          std::vector<std::shared_ptr<cxr::ImageEmbedding>> imgs;
          std::vector<std::vector<cxr::PromptSegment>> prompts(parallel);
          for (int i = 0; i < parallel; ++i) {
            std::vector<float> px(n_px);
            for (size_t j = 0; j < n_px; ++j)
              px[j] = static_cast<float>(((j + 977 * (i + 1) + 7919 * r) * 2654435761u) % 2001) / 1000.0f - 1.0f;
            imgs.push_back(engine.encode_image(px.data(), nullptr));
            const int rows = static_cast<int>(imgs.back()->rows());
            cxr::PromptSegment before, image, after;
            before.tokens = random_tokens(std::max(1, (prompt - rows) / 2), model.tokenizer().bos(), vocab, &state);
            image.image = imgs.back();
            after.tokens = random_tokens(std::max(1, prompt - rows - static_cast<int>(before.tokens.size())), -1,
                                         vocab, &state);
            prompts[i] = {before, image, after};
          }
          run_together(engine, prompts, gen);
          n_rep.push_back(parallel / (ms_since(tr) / 1000));
          if (!json) std::printf("run %d: %d reports together: %.3f reports/s\n", r + 1, parallel, n_rep.back());
        }
      }
      if (!json) {
        std::printf("median: %d sequences together decode %.2f tok/s, %.2fx one sequence's %.2f tok/s\n", parallel,
                    median(n_seq), median(n_seq) / median(one_seq), median(one_seq));
        if (!n_rep.empty())
          std::printf("median: %d reports together %.3f reports/s (one alone: %.3f reports/s)\n", parallel,
                      median(n_rep), 1000 / median(rep));
      }
    }
    if (json) {
      std::printf("{\"model\": \"%s\", \"backend\": \"%s\", \"backend_reason\": \"%s\", \"load_s\": %.3f, \"prompt\": %d, "
                  "\"gen\": %d, \"runs\": %d, \"prefill_tok_s\": %.3f, \"prefill_ms\": %.3f, \"decode_tok_s\": %.3f",
                  opts.model_path.c_str(), model.backend().name(), model.backend_reason().c_str(), load_ms / 1000, prompt,
                  gen, runs, median(pf), median(pf_ms), median(dc));
      if (model.vision()) std::printf(", \"encode_ms\": %.3f, \"report_ms\": %.3f", median(enc), median(rep));
      // tools/gpu-check/table.py reads parallel and reports_per_s.
      std::printf(", \"parallel\": %d", parallel);
      if (parallel > 1)
        std::printf(", \"decode_1_tok_s\": %.3f, \"decode_parallel_tok_s\": %.3f", median(one_seq), median(n_seq));
      if (model.vision())
        std::printf(", \"reports_per_s\": %.3f", n_rep.empty() ? 1000 / median(rep) : median(n_rep));
      std::printf("}\n");
    } else {
      std::printf("median: prefill %.2f tok/s, decode %.2f tok/s\n", median(pf), median(dc));
    }
  } catch (const cxr::EngineError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
