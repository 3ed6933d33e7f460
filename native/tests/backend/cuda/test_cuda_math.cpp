// test_cuda_math.cpp - the arithmetic of the CUDA kernels (backend/cuda/*.h),
// compiled here by the plain C++ compiler and checked against the CPU
// reference kernels (quants.cpp, backend_cpu.cpp) and double-precision
// formulas, so it runs in CI on machines without a GPU.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "backend/cuda/hd.h"
#include "backend/cuda/mma_layout.h"
#include "backend/cuda/online_softmax.h"
#include "backend/cuda/quant_math.h"
#include "backend/cuda/row_math.h"
#include "types/dtype.h"
#include "types/quant_blocks.h"
#include "types/quants.h"
#include "support/test.h"

using namespace cxr;
using namespace cxr::cuda;

namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f, float shift = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng) * scale + shift;
  return v;
}

std::vector<uint8_t> quantize_row(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> q(dtype_row_bytes(t, static_cast<int64_t>(x.size())));
  quantize_weights(t, x.data(), q.data(), 1, static_cast<int64_t>(x.size()));
  return q;
}

std::vector<block_a8> quantize_a8_row(const std::vector<float>& x) {
  std::vector<block_a8> a(x.size() / kA8);
  for (size_t b = 0; b < a.size(); ++b) quantize_a8(x.data() + b * kA8, &a[b]);
  return a;
}

// The CUDA dequantizer of element e of a row of type t.
float cuda_dequant(DType t, const uint8_t* row, int64_t e) {
  switch (t) {
    case DType::F16: return half_to_float(reinterpret_cast<const uint16_t*>(row)[e]);
    case DType::BF16: return bf16_to_float(reinterpret_cast<const uint16_t*>(row)[e]);
    case DType::Q8_0: return dequant_q8_0(reinterpret_cast<const block_q8_0*>(row)[e / 32], static_cast<int>(e % 32));
    case DType::Q4_0: return dequant_q4_0(reinterpret_cast<const block_q4_0*>(row)[e / 32], static_cast<int>(e % 32));
    case DType::Q4_K: return dequant_q4_K(reinterpret_cast<const block_q4_K*>(row)[e / 256], static_cast<int>(e % 256));
    case DType::Q6_K: return dequant_q6_K(reinterpret_cast<const block_q6_K*>(row)[e / 256], static_cast<int>(e % 256));
    default: return NAN;
  }
}

// The CUDA GEMV's dot of one weight row with quantized activations.
double cuda_row_dot(DType t, const uint8_t* row, const std::vector<block_a8>& a) {
  double s = 0;
  for (size_t b = 0; b < a.size(); ++b) {
    switch (t) {
      case DType::Q8_0: s += dot_q8_0_a8(reinterpret_cast<const block_q8_0*>(row)[b], a[b]); break;
      case DType::Q4_0: s += dot_q4_0_a8(reinterpret_cast<const block_q4_0*>(row)[b], a[b]); break;
      case DType::Q4_K: s += dot_q4_K_a8(reinterpret_cast<const block_q4_K*>(row)[b / 8], static_cast<int>(b % 8), a[b]); break;
      case DType::Q6_K: s += dot_q6_K_a8(reinterpret_cast<const block_q6_K*>(row)[b / 8], static_cast<int>(b % 8), a[b]); break;
      default: return NAN;
    }
  }
  return s;
}

const DType kQuantTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K};

// Dots: within this fraction of Σ|w·x| of the exact dot of the operands as
// quantized (float rounding of the per-block products only).
constexpr double kDotRelTol = 2e-6;
// Against the float dot of unquantized activations, the activation
// quantization error: 32-wide int8 blocks give ~0.4% of Σ|w·x| at worst.
constexpr double kA8RelTol = 6e-3;

}  // namespace

TEST(cuda_half_and_bf16_conversions_match_the_cpu_for_every_bit_pattern) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float a = half_to_float(static_cast<uint16_t>(h)), b = fp16_to_fp32(static_cast<uint16_t>(h));
    if (!(a == b || (std::isnan(a) && std::isnan(b)))) ++bad;
    if (bf16_to_float(static_cast<uint16_t>(h)) != bf16_to_fp32(static_cast<uint16_t>(h)) &&
        !std::isnan(bf16_to_fp32(static_cast<uint16_t>(h))))
      ++bad;
  }
  CHECK(bad == 0);
  // float -> half rounding: normals, subnormals, ties, overflow, against the CPU's converter.
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  int bad_round = 0;
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = bits(rng);
    if (i % 3 == 0) u = (u & 0x80ffffffu) | (static_cast<uint32_t>(96 + i % 48) << 23);  // near half's range
    const float f = float_of_bits(u);
    if (std::isnan(f)) continue;
    if (float_to_half(f) != fp32_to_fp16(f)) ++bad_round;
  }
  for (float f : {65504.0f, 65519.99f, 65520.0f, 5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f, 8.940697e-8f, -0.0f})
    if (float_to_half(f) != fp32_to_fp16(f)) ++bad_round;
  CHECK(bad_round == 0);
}

TEST(cuda_dp4a_and_unaligned_loads) {
  const uint8_t bytes[6] = {0x01, 0xff, 0x80, 0x7f, 0x05, 0xaa};
  CHECK(load_i32_a2(bytes) == static_cast<int32_t>(0x7f80ff01u));
  CHECK(load_i32_a2(bytes + 2) == static_cast<int32_t>(0xaa057f80u));
  // (1)(2) + (-1)(3) + (-128)(-1) + (127)(127) + 10
  const int32_t a = static_cast<int32_t>(0x7f80ff01u), b = static_cast<int32_t>(0x7fff0302u);
  CHECK(dp4a(a, b, 10) == 2 - 3 + 128 + 127 * 127 + 10);
}

TEST(cuda_dequantize_each_block_type_exactly_as_the_cpu) {
  for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    const int64_t n = 1024;
    const auto x = randn(n, 11, 0.7f);
    const auto q = quantize_row(t, x);
    std::vector<float> ref(n);
    type_traits_reference(t).to_float(q.data(), ref.data(), n);
    int bad = 0;
    for (int64_t e = 0; e < n; ++e)
      if (cuda_dequant(t, q.data(), e) != ref[e]) ++bad;
    if (bad) std::fprintf(stderr, "  %s: %d of %lld elements differ\n", dtype_name(t), bad, static_cast<long long>(n));
    CHECK(bad == 0);
  }
}

TEST(cuda_a8_quants_are_the_cpu_q8_0_quants) {
  const auto x = randn(4096, 3, 2.0f);
  const auto a = quantize_a8_row(x);
  std::vector<block_q8_0> q(x.size() / 32);
  type_traits_reference(DType::Q8_0).from_float(x.data(), q.data(), static_cast<int64_t>(x.size()));
  int bad = 0;
  for (size_t b = 0; b < a.size(); ++b) {
    int32_t sum = 0;
    for (int j = 0; j < 32; ++j) {
      if (a[b].qs[j] != q[b].qs[j]) ++bad;
      sum += a[b].qs[j];
    }
    if (sum != a[b].sum || fp32_to_fp16(a[b].d) != q[b].d) ++bad;
  }
  CHECK(bad == 0);
  block_a8 z;
  const float zeros[32] = {};
  quantize_a8(zeros, &z);
  CHECK(z.d == 0 && z.sum == 0 && z.qs[0] == 0 && z.qs[31] == 0);
}

TEST(cuda_block_dots_match_the_exact_dot_of_the_quantized_operands) {
  for (DType t : kQuantTypes) {
    for (uint32_t seed : {1u, 2u, 3u}) {
      const int64_t n = 4096;
      const auto w = randn(n, seed, 0.05f), x = randn(n, seed + 100, 1.5f);
      const auto q = quantize_row(t, w);
      const auto a = quantize_a8_row(x);
      std::vector<float> wd(n);
      type_traits_reference(t).to_float(q.data(), wd.data(), n);
      double exact = 0, mag = 0, exact_x = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double xq = static_cast<double>(a[i / 32].qs[i % 32]) * a[i / 32].d;
        exact += wd[i] * xq;
        exact_x += static_cast<double>(wd[i]) * x[i];
        mag += std::fabs(wd[i] * x[i]);
      }
      const double got = cuda_row_dot(t, q.data(), a);
      if (!(std::fabs(got - exact) <= kDotRelTol * mag))
        std::fprintf(stderr, "  %s seed %u: %.9g vs exact %.9g (mag %.3g)\n", dtype_name(t), seed, got, exact, mag);
      CHECK(std::fabs(got - exact) <= kDotRelTol * mag);
      CHECK(std::fabs(got - exact_x) <= kA8RelTol * mag);
    }
  }
}

TEST(cuda_block_dots_agree_with_the_cpu_reference_vec_dot) {
  // The CPU pairs Q4_0/Q8_0 with Q8_0 activations (same quants, fp16 scale)
  // and Q4_K/Q6_K with 256-wide Q8_K ones: both are compared at the level the
  // activation formats allow.
  for (DType t : kQuantTypes) {
    const int64_t n = 4096;
    const auto w = randn(n, 21, 0.05f), x = randn(n, 22, 1.0f);
    const auto q = quantize_row(t, w);
    const TypeTraits& tr = type_traits_reference(t);
    std::vector<uint8_t> xa(dtype_row_bytes(tr.vec_dot_type, n));
    type_traits_reference(tr.vec_dot_type).from_float(x.data(), xa.data(), n);
    float cpu = 0;
    tr.vec_dot(n, &cpu, q.data(), xa.data());
    double mag = 0;
    std::vector<float> wd(n);
    tr.to_float(q.data(), wd.data(), n);
    for (int64_t i = 0; i < n; ++i) mag += std::fabs(wd[i] * x[i]);
    const double got = cuda_row_dot(t, q.data(), quantize_a8_row(x));
    const double tol = tr.vec_dot_type == DType::Q8_0 ? 1e-3 : kA8RelTol;  // Q8_0: only the fp16 scale differs
    if (!(std::fabs(got - cpu) <= tol * mag))
      std::fprintf(stderr, "  %s: cuda %.7g cpu %.7g (mag %.3g)\n", dtype_name(t), got, cpu, mag);
    CHECK(std::fabs(got - cpu) <= tol * mag);
  }
}

TEST(cuda_int8_words_for_the_tensor_core_path_are_the_signed_quants) {
  const auto w = randn(256, 5, 0.1f);
  const auto q8 = quantize_row(DType::Q8_0, w), q4 = quantize_row(DType::Q4_0, w);
  int bad = 0;
  for (int b = 0; b < 8; ++b) {
    const auto& b8 = reinterpret_cast<const block_q8_0*>(q8.data())[b];
    const auto& b4 = reinterpret_cast<const block_q4_0*>(q4.data())[b];
    for (int i = 0; i < 8; ++i) {
      const uint32_t w8 = static_cast<uint32_t>(q8_0_word(b8, i)), w4 = static_cast<uint32_t>(q4_0_word(b4, i));
      for (int k = 0; k < 4; ++k) {
        const int e = 4 * i + k;
        if (static_cast<int8_t>(w8 >> (8 * k)) != b8.qs[e]) ++bad;
        const int nib = e < 16 ? (b4.qs[e] & 15) : (b4.qs[e - 16] >> 4);
        if (static_cast<int8_t>(w4 >> (8 * k)) != nib - 8) ++bad;
      }
    }
  }
  CHECK(bad == 0);
}

TEST(cuda_mma_fragments_cover_each_tile_element_once) {
  // Every (row, col) of A (16x16 f16, 16x32 s8), B and C is held by exactly one (lane, register).
  auto covers = [](int rows, int cols, int regs, Coord (*f)(int, int)) {
    std::vector<int> seen(rows * cols, 0);
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < regs; ++i) {
        const Coord c = f(lane, i);
        if (c.row < 0 || c.row >= rows || c.col < 0 || c.col >= cols) return false;
        ++seen[c.row * cols + c.col];
      }
    return std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; });
  };
  CHECK(covers(16, 16, 8, mma_a_f16));
  CHECK(covers(16, 8, 4, mma_b_f16));
  CHECK(covers(16, 32, 16, mma_a_s8));
  CHECK(covers(32, 8, 8, mma_b_s8));
  CHECK(covers(16, 8, 4, mma_c));
  // Registers are 32-bit words of consecutive K: pairs (f16) or quads (s8) in one row.
  bool words = true;
  for (int lane = 0; lane < 32; ++lane) {
    for (int r = 0; r < 4; ++r) {
      const Coord a0 = mma_a_f16(lane, 2 * r), a1 = mma_a_f16(lane, 2 * r + 1);
      words &= a0.row == a1.row && a1.col == a0.col + 1 && a0.col % 2 == 0;
      const Coord s0 = mma_a_s8(lane, 4 * r);
      for (int k = 1; k < 4; ++k) words &= mma_a_s8(lane, 4 * r + k).row == s0.row && mma_a_s8(lane, 4 * r + k).col == s0.col + k;
      words &= s0.col % 4 == 0;
    }
  }
  CHECK(words);
  // The warp tiles of a block tile cover the kTileM x kTileN block once.
  std::vector<int> seen(kTileM * kTileN, 0);
  for (int warp = 0; warp < kWarps; ++warp)
    for (int lane = 0; lane < 32; ++lane)
      for (int mi = 0; mi < kMmaM; ++mi)
        for (int nj = 0; nj < kMmaN; ++nj)
          for (int i = 0; i < 4; ++i) {
            const Coord c = tile_c(warp, lane, mi, nj, i);
            if (c.row >= 0 && c.row < kTileM && c.col >= 0 && c.col < kTileN) ++seen[c.row * kTileN + c.col];
          }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
}

TEST(cuda_fragment_loads_put_the_documented_elements_in_each_register) {
  // The kernels fill each 32-bit register with one word of a shared-memory
  // row (load_*); the PTX fragment maps (mma_*) say which elements each
  // register must hold. Tiles of distinct values show whether the two agree.
  int bad = 0;
  uint8_t a8[16][32], b8[8][32];  // [feature][k], [token][k]
  uint16_t a16[16][16], b16[8][16];
  for (int r = 0; r < 16; ++r) for (int k = 0; k < 32; ++k) a8[r][k] = static_cast<uint8_t>(r * 32 + k);
  for (int n = 0; n < 8; ++n) for (int k = 0; k < 32; ++k) b8[n][k] = static_cast<uint8_t>(n * 32 + k);
  for (int r = 0; r < 16; ++r) for (int k = 0; k < 16; ++k) a16[r][k] = static_cast<uint16_t>(r * 16 + k);
  for (int n = 0; n < 8; ++n) for (int k = 0; k < 16; ++k) b16[n][k] = static_cast<uint16_t>(1000 + n * 16 + k);
  for (int lane = 0; lane < 32; ++lane) {
    for (int r = 0; r < 4; ++r) {
      const Coord la = load_a_s8(lane, r);
      for (int k = 0; k < 4; ++k) {
        const Coord e = mma_a_s8(lane, 4 * r + k);
        if (a8[la.row][4 * la.col + k] != a8[e.row][e.col]) ++bad;
      }
      const Coord fa = load_a_f16(lane, r);
      for (int k = 0; k < 2; ++k) {
        const Coord e = mma_a_f16(lane, 2 * r + k);
        if (a16[fa.row][2 * fa.col + k] != a16[e.row][e.col]) ++bad;
      }
    }
    for (int r = 0; r < 2; ++r) {
      const Coord lb = load_b_s8(lane, r);
      for (int k = 0; k < 4; ++k) {
        const Coord e = mma_b_s8(lane, 4 * r + k);  // (k, token)
        if (b8[lb.row][4 * lb.col + k] != b8[e.col][e.row]) ++bad;
      }
      const Coord fb = load_b_f16(lane, r);
      for (int k = 0; k < 2; ++k) {
        const Coord e = mma_b_f16(lane, 2 * r + k);
        if (b16[fb.row][2 * fb.col + k] != b16[e.col][e.row]) ++bad;
      }
    }
  }
  CHECK(bad == 0);
}

TEST(cuda_shared_tile_strides_are_free_of_bank_conflicts) {
  for (int stride : {kS8Stride, kF16Stride}) {
    std::set<int> banks;
    for (int g = 0; g < 8; ++g)
      for (int t = 0; t < 4; ++t) banks.insert(bank_of(g, t, stride));
    CHECK(banks.size() == 32);
  }
  CHECK(kS8Stride % 16 == 0 && kF16Stride % 16 == 0);  // rows stay 16-byte aligned for vector stores
}

TEST(cuda_online_softmax_in_tiles_and_merged_equals_softmax) {
  const int n = 1025, d = 8;
  const auto s = randn(n, 4, 6.0f), v = randn(n * d, 5);
  // reference in double
  double m = -1e300;
  for (float x : s) m = std::max(m, static_cast<double>(x));
  double l = 0;
  std::vector<double> ref(d, 0.0);
  for (int j = 0; j < n; ++j) {
    const double p = std::exp(s[j] - m);
    l += p;
    for (int i = 0; i < d; ++i) ref[i] += p * v[j * d + i];
  }
  for (auto& r : ref) r /= l;
  // two halves, each in tiles of 32 as the kernels walk them, then merged
  auto run = [&](int lo, int hi, SoftmaxState& st, std::vector<float>& o) {
    o.assign(d, 0.0f);
    for (int t = lo; t < hi; t += 32) {
      const int e = std::min(hi, t + 32);
      float tmax = kNoScore;
      for (int j = t; j < e; ++j) tmax = std::max(tmax, s[j]);
      const float c = softmax_rescale(st, tmax);
      for (auto& x : o) x *= c;
      for (int j = t; j < e; ++j) {
        const float p = softmax_weight(st, s[j]);
        for (int i = 0; i < d; ++i) o[i] += p * v[j * d + i];
      }
    }
  };
  SoftmaxState a, b, empty;
  std::vector<float> oa, ob, oe(d, 0.0f);
  run(0, 517, a, oa);
  run(517, n, b, ob);
  softmax_merge(a, oa.data(), b, ob.data(), d);
  softmax_merge(a, oa.data(), empty, oe.data(), d);  // a split that saw no key changes nothing
  for (int i = 0; i < d; ++i) CHECK_NEAR(oa[i] / a.l, ref[i], 2e-6);
  CHECK(visible_keys(true, 10, 0, 100) == 11);
  CHECK(visible_keys(true, 10, 200, 100) == 100);
  CHECK(visible_keys(false, 10, 0, 100) == 100);
}

TEST(cuda_norm_statistics_merge_like_a_sequential_pass) {
  // A ViT-like row with a large mean, reduced as 256 threads would (strided
  // pieces, then a tree of merges), against the double two-pass formula.
  const int dim = 1024;
  const auto x = randn(dim, 6, 0.5f, 40.0f), w = randn(dim, 7), b = randn(dim, 8);
  std::vector<MeanVar> part(256);
  for (int i = 0; i < dim; ++i) part[i % 256] = meanvar_add(part[i % 256], x[i]);
  for (int step = 128; step >= 1; step /= 2)
    for (int i = 0; i < step; ++i) part[i] = meanvar_merge(part[i], part[i + step]);
  double mean = 0, var = 0, ss = 0;
  for (float v : x) mean += v;
  mean /= dim;
  for (float v : x) { var += (v - mean) * (v - mean); ss += static_cast<double>(v) * v; }
  var /= dim;
  CHECK_NEAR(part[0].mean, mean, 1e-5 * std::fabs(mean));
  CHECK_NEAR(part[0].m2 / part[0].n, var, 1e-4 * var);
  const float r = layernorm_scale(part[0], 1e-5f);
  double worst = 0;
  for (int i = 0; i < dim; ++i) {
    const double want = (x[i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i];
    worst = std::max(worst, std::fabs((x[i] - part[0].mean) * r * w[i] + b[i] - want));
  }
  CHECK(worst < 2e-3);  // dominated by float x - mean at |x| ~ 40
  CHECK_NEAR(rms_scale(static_cast<float>(ss), dim, 1e-5f), 1.0 / std::sqrt(ss / dim + 1e-5), 1e-7);
}

TEST(cuda_rope_pair_matches_the_double_formula_at_long_positions) {
  const int head_dim = 128;
  const float theta = 10000.0f;
  double worst = 0;
  for (long long pos : {0LL, 1LL, 1099LL, 4095LL}) {
    for (int i = 0; i < head_dim / 2; ++i) {
      const float inv = static_cast<float>(std::pow(static_cast<double>(theta), -2.0 * i / head_dim));
      float a = 0.3f, c = -1.2f;
      rope_pair(&a, &c, pos, inv);
      const double ang = static_cast<double>(pos) * inv;
      worst = std::max(worst, std::fabs(a - (0.3 * std::cos(ang) + 1.2 * std::sin(ang))));
      worst = std::max(worst, std::fabs(c - (0.3 * std::sin(ang) - 1.2 * std::cos(ang))));
    }
  }
  CHECK(worst < 1e-6);
}

TEST(cuda_activations_match_double_formulas) {
  double worst = 0;
  for (float g : {-20.0f, -3.5f, -0.1f, 0.0f, 0.7f, 4.0f, 30.0f}) {
    const double silu = g / (1.0 + std::exp(-static_cast<double>(g))) * 1.5;
    worst = std::max(worst, std::fabs(silu_mul(g, 1.5f) - silu) / (1 + std::fabs(silu)));
    const double gelu = 0.5 * g * (1.0 + std::erf(g / std::sqrt(2.0)));
    worst = std::max(worst, std::fabs(gelu_erf(g) - gelu) / (1 + std::fabs(gelu)));
  }
  CHECK(worst < 1e-6);
}
