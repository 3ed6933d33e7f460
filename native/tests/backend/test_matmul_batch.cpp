// test_matmul_batch.cpp - the batched matmul of the seam (Backend::matmul_batch):
// a row's result depends only on the row and its kind (decoding step or prompt
// row), never on how many rows share the call, bit for bit, for every weight
// type the models use, repacked (x8) or not. That is what lets a sequence get
// the same tokens alone and batched with others.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "format/gguf.h"
#include "support/data.h"
#include "support/test.h"
#include "types/quants.h"

using cxr::DType;

namespace {

// A weight in a file mapping, as a GGUF tensor is (the CPU backend releases the
// mapped pages of the matrices it repacks, which heap memory would not survive).
struct MappedWeight {
  cxr::GgufTensor tensor;
  void* map = MAP_FAILED;
  size_t bytes = 0;
  MappedWeight(DType t, int64_t rows, int64_t cols, uint32_t seed) {
    std::vector<float> wf = cxrtest::randn(static_cast<size_t>(rows * cols), seed, 0.5f);
    std::vector<uint8_t> raw(cxr::dtype_row_bytes(t, cols) * rows);
    for (int64_t r = 0; r < rows; ++r)
      cxr::cpu_kernels().type(t).from_float(wf.data() + r * cols, raw.data() + cxr::dtype_row_bytes(t, cols) * r, cols);
    char path[] = "/tmp/cxr-test-batch-XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) return;
    bytes = raw.size();
    if (write(fd, raw.data(), bytes) != static_cast<ssize_t>(bytes)) bytes = 0;
    map = mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    unlink(path);
    tensor.n_dims = 2;
    tensor.ne[0] = cols;
    tensor.ne[1] = rows;
    tensor.type = t;
    tensor.nbytes = bytes;
    tensor.data = map;
  }
  ~MappedWeight() {
    if (map != MAP_FAILED) munmap(map, bytes);
  }
};

}  // namespace

TEST(matmul_batch_rows_do_not_depend_on_their_company) {
  constexpr int64_t kN = 9;
  auto be = cxr::make_backend("cpu", 2);
  // One panel of rows; then many panels with a partial last one, repacked
  // (x8, rows a multiple of 8) and not, so a mixed batch walks the weights in
  // several pieces on both threads.
  const std::pair<int64_t, int64_t> shapes[] = {{64, 256}, {520, 512}, {300, 256}};
  for (const auto& [rows, cols] : shapes) {
    for (DType t : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) {
      MappedWeight mw(t, rows, cols, 17 + static_cast<uint32_t>(t));
      CHECK(mw.map != MAP_FAILED);
      if (mw.map == MAP_FAILED) continue;
      const auto wp = be->upload(cxr::tensor_view(mw.tensor), cxr::WeightUse::Matmul);
      const cxr::Weight& w = *wp;
      const std::vector<float> x = cxrtest::randn(static_cast<size_t>(kN * cols), 3);
      // Each row alone, as a decoding step and as a prompt row.
      std::vector<float> alone_dec(kN * rows), alone_prompt(kN * rows);
      for (int64_t r = 0; r < kN; ++r) {
        be->matmul_batch(w, x.data() + r * cols, 1, 0, alone_dec.data() + r * rows);
        be->matmul_batch(w, x.data() + r * cols, 0, 1, alone_prompt.data() + r * rows);
      }
      for (int64_t n_dec = 0; n_dec <= kN; ++n_dec) {
        std::vector<float> y(kN * rows);
        be->matmul_batch(w, x.data(), n_dec, kN - n_dec, y.data());
        for (int64_t r = 0; r < kN; ++r) {
          const float* want = (r < n_dec ? alone_dec.data() : alone_prompt.data()) + r * rows;
          if (std::memcmp(y.data() + r * rows, want, rows * sizeof(float)) != 0) {
            std::fprintf(stderr, "  %s: row %lld of %lld decode + %lld prompt rows differs from the row alone\n",
                         cxr::dtype_name(t), static_cast<long long>(r), static_cast<long long>(n_dec),
                         static_cast<long long>(kN - n_dec));
            CHECK(false);
          }
        }
      }
      // The two kinds agree to rounding: they are the same product.
      double worst = 0, scale = 0;
      for (size_t i = 0; i < alone_dec.size(); ++i) {
        worst = std::max(worst, static_cast<double>(std::fabs(alone_dec[i] - alone_prompt[i])));
        scale = std::max(scale, static_cast<double>(std::fabs(alone_dec[i])));
      }
      CHECK(worst <= 1e-4 * scale);
    }
  }
}
