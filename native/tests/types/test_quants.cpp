// test_quants.cpp - element types, quantizers and dot-product kernels.
//
// Layout tests build blocks by hand from the ggml layout (never with our own
// quantizer) and check the decoded values, so a packing mistake cannot hide
// behind a matching mistake in the quantizer. Kernel tests compare every fast
// kernel with the scalar reference, and the reference with a double-precision
// dot of the dequantized operands.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "types/dtype.h"
#include "types/error.h"
#include "types/quant_blocks.h"
#include "backend/cpu/cpu_kernels.h"
#include "types/quants.h"
#include "support/data.h"
#include "support/test.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

using namespace cxr;

namespace {

// Round-trip error limits, as RMS(error) / RMS(data), per type and distribution
// (normal, uniform), worst of three seeds. Measured values are in the comments;
// the limits leave ~15% margin. They follow from each format: e.g. Q4_0 spends
// 16 levels on +-max of 32 values, so a normal block (max ~2.1 sigma) gets a step
// of ~0.26 sigma and an error of ~0.08 sigma; Q4_K's min and fitted scale do
// better. A quantizer that dropped the min, chose a poor scale or swapped the
// nibble order lands far outside these.
struct RmseLimit {
  double normal, uniform;
};
constexpr RmseLimit kMaxRmse_Q8_0 = {0.0063, 0.0044};  // measured 0.00541, 0.00378
constexpr RmseLimit kMaxRmse_Q8_K = {0.0083, 0.0046};  // measured 0.00715, 0.00392 (256-wide blocks)
constexpr RmseLimit kMaxRmse_Q6_K = {0.0200, 0.0155};  // measured 0.01754, 0.01333
constexpr RmseLimit kMaxRmse_Q4_K = {0.0830, 0.0630};  // measured 0.07206, 0.05481
constexpr RmseLimit kMaxRmse_Q4_0 = {0.1000, 0.0750};  // measured 0.08670, 0.06490
constexpr RmseLimit kMaxRmse_F16 = {0.00025, 0.00025};  // 11-bit mantissa: measured 0.00021, 0.00022
constexpr RmseLimit kMaxRmse_BF16 = {0.0020, 0.0020};   // 8-bit mantissa: measured 0.00167, 0.00176

// Dot products: |fast - reference| and |reference - exact| must be within this
// fraction of sum |x_i * y_i| (float rounding of the block sums, nothing more).
constexpr double kDotRelTol = 2e-6;

const DType kAllTypes[] = {DType::F32, DType::F16, DType::Q4_0, DType::Q8_0,
                           DType::Q4_K, DType::Q6_K, DType::Q8_K, DType::BF16};
const DType kWeightTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q4_0,
                              DType::Q8_0, DType::Q4_K, DType::Q6_K};

std::vector<float> make_data(int64_t n, unsigned seed, bool normal, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::uniform_real_distribution<float> ud(-scale, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal ? nd(rng) : ud(rng);
  return v;
}

std::vector<uint8_t> quantize(const TypeTraits& tr, const std::vector<float>& x) {
  std::vector<uint8_t> q(dtype_row_bytes(tr.type, static_cast<int64_t>(x.size())));
  tr.from_float(x.data(), q.data(), static_cast<int64_t>(x.size()));
  return q;
}

std::vector<float> dequantize(const TypeTraits& tr, const std::vector<uint8_t>& q, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  tr.to_float(q.data(), y.data(), n);
  return y;
}

double relative_rmse(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    err += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    ref += static_cast<double>(a[i]) * a[i];
  }
  return std::sqrt(err / ref);
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

using cxrtest::ScalarMode;

}  // namespace

// --- types and sizes ---------------------------------------------------------

TEST(quants_block_sizes) {
  CHECK(sizeof(block_q4_0) == 18);
  CHECK(sizeof(block_q8_0) == 34);
  CHECK(sizeof(block_q4_K) == 144);
  CHECK(sizeof(block_q6_K) == 210);
  CHECK(sizeof(block_q8_K) == 292);
  CHECK(dtype_block_size(DType::Q4_0) == 32 && dtype_block_bytes(DType::Q4_0) == 18);
  CHECK(dtype_block_size(DType::Q8_0) == 32 && dtype_block_bytes(DType::Q8_0) == 34);
  CHECK(dtype_block_size(DType::Q4_K) == 256 && dtype_block_bytes(DType::Q4_K) == 144);
  CHECK(dtype_block_size(DType::Q6_K) == 256 && dtype_block_bytes(DType::Q6_K) == 210);
  CHECK(dtype_block_size(DType::Q8_K) == 256 && dtype_block_bytes(DType::Q8_K) == 292);
  CHECK(dtype_block_size(DType::F16) == 1 && dtype_block_bytes(DType::F16) == 2);
  CHECK(dtype_block_size(DType::BF16) == 1 && dtype_block_bytes(DType::BF16) == 2);
  CHECK(dtype_block_size(DType::F32) == 1 && dtype_block_bytes(DType::F32) == 4);
}

TEST(quants_row_bytes) {
  CHECK(dtype_row_bytes(DType::F32, 4096) == 16384);
  CHECK(dtype_row_bytes(DType::F16, 4096) == 8192);
  CHECK(dtype_row_bytes(DType::BF16, 4096) == 8192);
  CHECK(dtype_row_bytes(DType::Q4_0, 4096) == 2304);  // 128 blocks * 18
  CHECK(dtype_row_bytes(DType::Q8_0, 4096) == 4352);  // 128 * 34
  CHECK(dtype_row_bytes(DType::Q4_K, 4096) == 2304);  // 16 * 144
  CHECK(dtype_row_bytes(DType::Q6_K, 4096) == 3360);  // 16 * 210
  CHECK(dtype_row_bytes(DType::Q8_K, 4096) == 4672);  // 16 * 292
  CHECK(dtype_row_bytes(DType::Q4_K, 11008) == 6192); // LLaMA-2-7B FFN width: 43 * 144
}

TEST(quants_dtype_names) {
  // GGUF ids are fixed by ggml.
  CHECK(static_cast<uint32_t>(DType::Q4_K) == 12 && static_cast<uint32_t>(DType::BF16) == 30);
  CHECK(dtype_known(0) && dtype_known(1) && dtype_known(2) && dtype_known(8));
  CHECK(dtype_known(12) && dtype_known(14) && dtype_known(15) && dtype_known(30));
  CHECK(!dtype_known(3) && !dtype_known(13) && !dtype_known(29) && !dtype_known(1000));
  CHECK(std::strcmp(dtype_name(DType::Q4_K), "q4_k") == 0);
  CHECK(std::strcmp(dtype_name(static_cast<DType>(7)), "unknown") == 0);
  DType t = DType::F32;
  CHECK(dtype_from_name("Q6_K", &t) && t == DType::Q6_K);
  CHECK(dtype_from_name("bf16", &t) && t == DType::BF16);
  CHECK(!dtype_from_name("q5_k", &t));
  CHECK(!dtype_from_name("q4", &t));
  for (DType d : kAllTypes) {
    DType back;
    CHECK(dtype_from_name(dtype_name(d), &back) && back == d);
    const TypeTraits& tr = cpu_kernels().type(d);
    CHECK(tr.type == d && tr.block_size == dtype_block_size(d) && tr.block_bytes == dtype_block_bytes(d));
    CHECK(tr.to_float && tr.from_float);
  }
}

TEST(quants_vec_dot_types) {
  CHECK(cpu_kernels().type(DType::Q4_0).vec_dot_type == DType::Q8_0);
  CHECK(cpu_kernels().type(DType::Q8_0).vec_dot_type == DType::Q8_0);
  CHECK(cpu_kernels().type(DType::Q4_K).vec_dot_type == DType::Q8_K);
  CHECK(cpu_kernels().type(DType::Q6_K).vec_dot_type == DType::Q8_K);
  CHECK(cpu_kernels().type(DType::F32).vec_dot_type == DType::F32);
  CHECK(cpu_kernels().type(DType::F16).vec_dot_type == DType::F32);
  CHECK(cpu_kernels().type(DType::BF16).vec_dot_type == DType::F32);
  CHECK_THROWS(cpu_kernels().type(static_cast<DType>(3)), "unknown tensor type id 3");
}

TEST(quants_simd_level) {
  const std::string level = simd_level();
  CHECK(level == "avx2" || level == "neon" || level == "scalar");
  {
    ScalarMode scalar(true);
    CHECK(std::string(simd_level()) == "scalar");
    // Every per-type slot is the reference's, and no blocked matmul is left.
    for (DType t : {DType::F32, DType::F16, DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::Q8_K,
                    DType::BF16}) {
      const TypeTraits& k = cpu_kernels().type(t);
      const TypeTraits& r = type_traits_reference(t);
      CHECK(k.to_float == r.to_float && k.from_float == r.from_float && k.vec_dot == r.vec_dot);
    }
    CHECK(cpu_kernels().panels.int_panel == nullptr && cpu_kernels().gemv.int_gemv == nullptr);
  }
  CHECK(std::string(simd_level()) == level);
#if defined(__x86_64__) && defined(__GNUC__)
  // This machine's CPU decides; a silent fallback to scalar would hide a dispatch bug.
  // F16C asked of CPUID (leaf 1, ECX bit 29) here, not of the engine's probe:
  // clang before 16 has no "f16c" for __builtin_cpu_supports (the sanitizer build uses clang 14).
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) {
    CHECK(level == "avx2");
    if (level == "avx2")
      CHECK(cpu_kernels().type(DType::Q8_0).vec_dot != type_traits_reference(DType::Q8_0).vec_dot);
  }
#elif defined(__ARM_NEON)
  CHECK(level == "neon");
#endif
}

// --- fp16 / bf16 -------------------------------------------------------------

TEST(quants_fp16_edge_cases) {
  CHECK(fp32_to_fp16(1.0f) == 0x3c00);
  CHECK(fp32_to_fp16(-2.0f) == 0xc000);
  CHECK(fp32_to_fp16(0.0f) == 0x0000);
  CHECK(fp32_to_fp16(-0.0f) == 0x8000);
  CHECK(fp32_to_fp16(0.1f) == 0x2e66);
  CHECK(fp32_to_fp16(65504.0f) == 0x7bff);         // largest finite half
  CHECK(fp32_to_fp16(65519.0f) == 0x7bff);         // below the midpoint to 65536
  CHECK(fp32_to_fp16(65520.0f) == 0x7c00);         // midpoint: ties to even = infinity
  CHECK(fp32_to_fp16(1e10f) == 0x7c00);
  CHECK(fp32_to_fp16(-INFINITY) == 0xfc00);
  CHECK(fp32_to_fp16(INFINITY) == 0x7c00);
  // Ties to even among normals: 1 + 2^-11 sits between 0x3c00 and 0x3c01.
  CHECK(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
  CHECK(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
  CHECK(fp32_to_fp16(2049.0f) == 0x6800);  // 2049 between 2048 and 2050: even is 2048
  CHECK(fp32_to_fp16(2051.0f) == 0x6802);  // between 2050 and 2052: even is 2052
  // Subnormals (unit 2^-24) and their ties.
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);       // half a unit: tie to 0
  CHECK(fp32_to_fp16(std::ldexp(1.5f, -25)) == 0x0001);       // 0.75 unit
  CHECK(fp32_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);       // 1.5 units: tie to 2
  CHECK(fp32_to_fp16(std::ldexp(1023.0f, -24)) == 0x03ff);    // largest subnormal
  CHECK(fp32_to_fp16(std::ldexp(1023.5f, -24)) == 0x0400);    // tie rounds up into the normals
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -14)) == 0x0400);       // smallest normal
  CHECK(fp32_to_fp16(-std::ldexp(5.0f, -24)) == 0x8005);
  CHECK(fp32_to_fp16(1e-10f) == 0x0000);
  // NaN stays NaN (exponent all ones, mantissa non-zero), sign kept, even a
  // signalling NaN whose payload lies in the bits that get dropped.
  const uint16_t qnan = fp32_to_fp16(NAN);
  CHECK((qnan & 0x7c00) == 0x7c00 && (qnan & 0x3ff) != 0);
  const uint16_t snan = fp32_to_fp16(from_bits(0xff800001u));
  CHECK((snan & 0xfc00) == 0xfc00 && (snan & 0x3ff) != 0);

  CHECK(fp16_to_fp32(0x3c00) == 1.0f);
  CHECK(fp16_to_fp32(0x3555) == 0.333251953125f);
  CHECK(fp16_to_fp32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(fp16_to_fp32(0x83ff) == -std::ldexp(1023.0f, -24));
  CHECK(fp16_to_fp32(0x7bff) == 65504.0f);
  CHECK(std::isinf(fp16_to_fp32(0x7c00)) && fp16_to_fp32(0xfc00) < 0);
  CHECK(std::isnan(fp16_to_fp32(0x7e00)) && std::isnan(fp16_to_fp32(0x7c01)));
  CHECK(bits(fp16_to_fp32(0x8000)) == 0x80000000u);

  // Every half survives half -> float -> half.
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    if (fp32_to_fp16(f) != h) ++bad;
  }
  CHECK(bad == 0);
}

TEST(quants_bf16_edge_cases) {
  CHECK(fp32_to_bf16(1.0f) == 0x3f80);
  CHECK(fp32_to_bf16(-2.0f) == 0xc000);
  CHECK(fp32_to_bf16(from_bits(0x3f808000u)) == 0x3f80);  // tie, even stays
  CHECK(fp32_to_bf16(from_bits(0x3f818000u)) == 0x3f82);  // tie, odd rounds up
  CHECK(fp32_to_bf16(from_bits(0x3f808001u)) == 0x3f81);  // just above the tie
  CHECK(fp32_to_bf16(from_bits(0x00008000u)) == 0x0000);  // subnormal tie to even
  CHECK(fp32_to_bf16(from_bits(0x00018000u)) == 0x0002);
  CHECK(fp32_to_bf16(from_bits(0x00010001u)) == 0x0001);  // subnormals are kept, not flushed
  CHECK(fp32_to_bf16(from_bits(0x7f7fffffu)) == 0x7f80);  // FLT_MAX rounds to infinity
  CHECK(fp32_to_bf16(INFINITY) == 0x7f80);
  CHECK(fp32_to_bf16(-INFINITY) == 0xff80);
  // A NaN whose payload sits only in the low 16 bits must not become infinity.
  const uint16_t n = fp32_to_bf16(from_bits(0x7f800001u));
  CHECK((n & 0x7f80) == 0x7f80 && (n & 0x7f) != 0);
  CHECK(bf16_to_fp32(0x4049) == 3.140625f);
  CHECK(bf16_to_fp32(0x3f80) == 1.0f);
  CHECK(std::isinf(bf16_to_fp32(0xff80)));
  CHECK(std::isnan(bf16_to_fp32(0x7fc0)));
}

// F16 from_float in the fast table uses F16C on x86: a hardware opinion on the
// same rounding, checked on random bit patterns (NaN, inf, subnormals included).
TEST(quants_f16_fast_matches_reference) {
  std::mt19937 rng(7);
  std::vector<float> x(100003);
  for (auto& v : x) v = from_bits(rng());
  for (size_t i = 0; i < 1000; ++i) x[i] = from_bits((rng() & 0x80ffffffu) | 0x38000000u);  // near fp16 subnormals
  const auto ref = quantize(type_traits_reference(DType::F16), x);
  const auto fast = quantize(cpu_kernels().type(DType::F16), x);
  CHECK(ref == fast);
  std::vector<float> back_ref(x.size()), back_fast(x.size());
  type_traits_reference(DType::F16).to_float(ref.data(), back_ref.data(), static_cast<int64_t>(x.size()));
  cpu_kernels().type(DType::F16).to_float(ref.data(), back_fast.data(), static_cast<int64_t>(x.size()));
  CHECK(std::memcmp(back_ref.data(), back_fast.data(), x.size() * 4) == 0);
  cpu_kernels().type(DType::BF16).to_float(ref.data(), back_fast.data(), static_cast<int64_t>(x.size()));
  type_traits_reference(DType::BF16).to_float(ref.data(), back_ref.data(), static_cast<int64_t>(x.size()));
  CHECK(std::memcmp(back_ref.data(), back_fast.data(), x.size() * 4) == 0);
}

// --- known bytes: decode hand-built blocks -----------------------------------

TEST(quants_known_bytes_q4_0) {
  block_q4_0 b;
  b.d = 0x4000;  // 2.0
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  float y[32];
  cpu_kernels().type(DType::Q4_0).to_float(&b, y, 32);
  // Element j (j < 16) is the low nibble of byte j; element j+16 the high nibble.
  for (int j = 0; j < 16; ++j) {
    CHECK(y[j] == (j - 8) * 2.0f);
    CHECK(y[j + 16] == (7 - j) * 2.0f);
  }
  CHECK(y[0] == -16.0f && y[15] == 14.0f && y[16] == 14.0f && y[31] == -16.0f);
}

TEST(quants_known_bytes_q8_0) {
  block_q8_0 b;
  b.d = 0x3800;  // 0.5
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(j * 8 - 127);
  float y[32];
  cpu_kernels().type(DType::Q8_0).to_float(&b, y, 32);
  for (int j = 0; j < 32; ++j) CHECK(y[j] == (j * 8 - 127) * 0.5f);
}

TEST(quants_known_bytes_q8_K) {
  block_q8_K b;
  b.d = 0.25f;
  for (int j = 0; j < 256; ++j) b.qs[j] = static_cast<int8_t>(j % 255 - 127);
  for (int j = 0; j < 16; ++j) b.bsums[j] = 0;  // unused by to_float
  std::vector<float> y(256);
  cpu_kernels().type(DType::Q8_K).to_float(&b, y.data(), 256);
  for (int j = 0; j < 256; ++j) CHECK(y[j] == (j % 255 - 127) * 0.25f);
}

TEST(quants_known_bytes_q4_K) {
  block_q4_K b;
  b.d = 0x3c00;     // 1.0
  b.dmin = 0x3800;  // 0.5
  // Scale bytes chosen so every 6-bit field has a distinct value and the high
  // bits of sub-blocks 4..7 are exercised. Decoded by hand from the layout:
  //   bytes 0..3 = sc0..3 (low 6 bits), top 2 bits = sc4..7 >> 4
  //   bytes 4..7 = m0..3, top 2 bits = m4..7 >> 4
  //   bytes 8..11 = sc4..7 & 15 (low nibble), m4..7 & 15 (high nibble)
  const uint8_t scales[12] = {0x41, 0x02, 0x83, 0xC4, 0x05, 0x46, 0x07, 0x88, 0x21, 0x43, 0x65, 0x87};
  const int sc[8] = {1, 2, 3, 4, 17, 3, 37, 55};
  const int m[8] = {5, 6, 7, 8, 2, 20, 6, 40};
  std::memcpy(b.scales, scales, 12);
  for (int i = 0; i < 128; ++i) b.qs[i] = static_cast<uint8_t>((i % 16) | (((i * 7) % 16) << 4));
  std::vector<float> y(256);
  cpu_kernels().type(DType::Q4_K).to_float(&b, y.data(), 256);
  for (int e = 0; e < 256; ++e) {
    // 64-element chunk c uses bytes 32c..32c+31: low nibbles first, then high.
    const int c = e / 64, r = e % 64;
    const uint8_t byte = b.qs[32 * c + r % 32];
    const int q = r < 32 ? (byte & 15) : (byte >> 4);
    const int j = e / 32;
    CHECK(y[e] == 1.0f * sc[j] * q - 0.5f * m[j]);
  }
  // Spot values worked out by hand: element 0: byte 0 = 0x00 -> q=0 -> -0.5*5.
  CHECK(y[0] == -2.5f);
  // Element 33: chunk 0, high nibble of byte 1 = 7 -> 2*7 - 0.5*6 = 11.
  CHECK(y[33] == 11.0f);
  // Element 200: chunk 3, r=8, low nibble of byte 104 = 8 -> sc6=37: 296 - 3 = 293.
  CHECK(y[200] == 293.0f);
  // Element 255: chunk 3, high nibble of byte 127 = (127*7)%16 = 9 -> 55*9 - 20 = 475.
  CHECK(y[255] == 475.0f);
}

TEST(quants_known_bytes_q6_K) {
  block_q6_K b;
  for (int i = 0; i < 128; ++i) b.ql[i] = static_cast<uint8_t>(i * 37);
  for (int i = 0; i < 64; ++i) b.qh[i] = static_cast<uint8_t>(i * 53);
  for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<int8_t>(j - 8);
  b.d = 0x3400;  // 0.25
  std::vector<float> y(256);
  cpu_kernels().type(DType::Q6_K).to_float(&b, y.data(), 256);
  for (int e = 0; e < 256; ++e) {
    // Half h: ql[64h..], qh[32h..]. Group g of 32 within the half takes its low
    // 4 bits from ql[l] (g=0,2) or ql[l+32] (g=1,3), low nibble for g<2 and high
    // nibble for g>=2; its high 2 bits are bits 2g..2g+1 of qh[l].
    const int h = e / 128, g = (e % 128) / 32, l = e % 32;
    const uint8_t lo_byte = b.ql[64 * h + l + (g % 2) * 32];
    const int lo = g < 2 ? (lo_byte & 15) : (lo_byte >> 4);
    const int hi = (b.qh[32 * h + l] >> (2 * g)) & 3;
    const int q = (lo | (hi << 4)) - 32;
    CHECK(y[e] == 0.25f * b.scales[e / 16] * q);
  }
  // By hand: element 0: ql[0]=0, qh[0]=0 -> q=-32, scale[0]=-8 -> 0.25*-8*-32 = 64.
  CHECK(y[0] == 64.0f);
  // Element 97: h=0, g=3, l=1: ql[33]=33*37%256=197=0xC5 -> high nibble 12;
  // qh[1]=53=0b00110101 -> bits 6..7 = 0 -> q=12-32=-20; scale[6]=-2 -> 10.
  CHECK(y[97] == 10.0f);
  // Element 130: h=1, g=0, l=2: ql[66]=66*37%256=138=0x8A -> 10; qh[34]=34*53%256=10
  // -> bits 0..1 = 2 -> q=(10|32)-32=10; scale[8]=0 -> 0.
  CHECK(y[130] == 0.0f);
  // Element 180: h=1, g=1, l=20: ql[116]=116*37%256=196=0xC4 -> 4; qh[52]=52*53%256=196
  // = 0b11000100 -> bits 2..3 = 1 -> q=(4|16)-32=-12; scale[11]=3 -> 0.25*3*-12 = -9.
  CHECK(y[180] == -9.0f);
}

TEST(quants_known_bytes_plain_types) {
  const uint16_t h[4] = {0x3c00, 0xc000, 0x3555, 0x0001};
  float y[4];
  cpu_kernels().type(DType::F16).to_float(h, y, 4);
  CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == 0.333251953125f && y[3] == std::ldexp(1.0f, -24));
  const uint16_t b[3] = {0x3f80, 0xc000, 0x4049};
  cpu_kernels().type(DType::BF16).to_float(b, y, 3);
  CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == 3.140625f);
  const float f[2] = {1.5f, -3.25f};
  cpu_kernels().type(DType::F32).to_float(f, y, 2);
  CHECK(y[0] == 1.5f && y[1] == -3.25f);
}

// --- quantizer accuracy ------------------------------------------------------

TEST(quants_round_trip_rmse) {
  struct Limit {
    DType t;
    RmseLimit max_rmse;
  };
  const Limit limits[] = {{DType::Q8_0, kMaxRmse_Q8_0}, {DType::Q6_K, kMaxRmse_Q6_K}, {DType::Q4_K, kMaxRmse_Q4_K},
                          {DType::Q4_0, kMaxRmse_Q4_0}, {DType::F16, kMaxRmse_F16},   {DType::BF16, kMaxRmse_BF16},
                          {DType::Q8_K, kMaxRmse_Q8_K}};
  const int64_t n = 256 * 64;
  for (const Limit& lim : limits) {
    const TypeTraits& tr = type_traits_reference(lim.t);
    for (bool normal : {true, false}) {
      double worst = 0;
      for (unsigned seed = 1; seed <= 3; ++seed) {
        const auto x = make_data(n, seed, normal, 0.02f * seed);  // weight-like magnitudes
        const auto y = dequantize(tr, quantize(tr, x), n);
        worst = std::fmax(worst, relative_rmse(x, y));
      }
      const double limit = normal ? lim.max_rmse.normal : lim.max_rmse.uniform;
      std::printf("  %-5s %-7s rel rmse %.5f (limit %.5f)\n", tr.name, normal ? "normal" : "uniform", worst, limit);
      CHECK(worst < limit);
      CHECK(worst > 0);  // a lossless result would mean the test data is broken
    }
  }
}

// The k-quant search must beat the plain min/max choice it starts from; this is
// what "close to llama.cpp's quality" rests on. Compared per sub-block against a
// min/max Q4_K-style rounding computed here (no 6-bit scale rounding, which only
// favours the naive side).
TEST(quants_q4_K_search_beats_min_max) {
  const int64_t n = 256 * 32;
  const auto x = make_data(n, 11, true);
  const TypeTraits& tr = type_traits_reference(DType::Q4_K);
  const auto y = dequantize(tr, quantize(tr, x), n);
  double naive_err = 0, ref = 0;
  for (int64_t s = 0; s < n; s += 32) {
    float lo = 0, hi = x[s];
    for (int i = 0; i < 32; ++i) {
      lo = std::fmin(lo, x[s + i]);
      hi = std::fmax(hi, x[s + i]);
    }
    const float step = (hi - lo) / 15;
    for (int i = 0; i < 32; ++i) {
      const float q = std::round((x[s + i] - lo) / step);
      const double e = lo + q * step - x[s + i];
      naive_err += e * e;
    }
  }
  for (float v : x) ref += static_cast<double>(v) * v;
  const double naive = std::sqrt(naive_err / ref), ours = relative_rmse(x, y);
  std::printf("  q4_K rel rmse: searched %.5f, plain min/max %.5f\n", ours, naive);
  CHECK(ours < 0.95 * naive);
}

TEST(quants_special_blocks) {
  // All-zero, constant and single-spike rows decode without NaN, and zero stays zero.
  const int64_t n = 512;
  std::vector<std::vector<float>> cases;
  cases.push_back(std::vector<float>(n, 0.0f));
  cases.push_back(std::vector<float>(n, -0.75f));
  cases.push_back(std::vector<float>(n, 3.0f));
  std::vector<float> spike(n, 0.0f);
  spike[37] = 100.0f;
  spike[300] = -5.0f;
  cases.push_back(spike);
  for (DType t : kAllTypes) {
    const TypeTraits& tr = type_traits_reference(t);
    for (size_t c = 0; c < cases.size(); ++c) {
      const auto y = dequantize(tr, quantize(tr, cases[c]), n);
      double max_err = 0, max_abs = 0;
      for (int64_t i = 0; i < n; ++i) {
        CHECK(std::isfinite(y[i]));
        max_err = std::fmax(max_err, std::fabs(y[i] - cases[c][i]));
        max_abs = std::fmax(max_abs, std::fabs(cases[c][i]));
      }
      if (c == 0) CHECK(max_err == 0);
      // Constant blocks are exact up to fp16 scale rounding; the spike's own
      // element keeps its magnitude to within the coarsest type's step.
      if (c == 1 || c == 2) CHECK(max_err <= 2e-3 * max_abs);
      if (c == 3) {
        CHECK_NEAR(y[37], 100.0f, 0.5);
        CHECK_NEAR(y[300], -5.0f, 0.1);
      }
    }
  }
}

TEST(quants_rounding_ties) {
  // Q8_0 rounds half away from zero (ggml's roundf); scale 1 when amax = 127.
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 3.5f;
  x[4] = 0.49999997f;
  for (bool scalar : {false, true}) {
    ScalarMode mode(scalar);
    block_q8_0 b;
    cpu_kernels().type(DType::Q8_0).from_float(x.data(), &b, 32);
    CHECK(b.qs[0] == 127 && b.qs[1] == 3 && b.qs[2] == -3 && b.qs[3] == 4 && b.qs[4] == 0);
    CHECK(b.d == 0x3c00);
  }
  // Q8_K rounds ties to even.
  std::vector<float> k(256, 0.0f);
  k[0] = -127.0f;
  k[1] = 2.5f;
  k[2] = -2.5f;
  k[3] = 3.5f;
  k[17] = 1.0f;
  for (bool scalar : {false, true}) {
    ScalarMode mode(scalar);
    block_q8_K b;
    cpu_kernels().type(DType::Q8_K).from_float(k.data(), &b, 256);
    CHECK(b.qs[0] == -127 && b.qs[1] == 2 && b.qs[2] == -2 && b.qs[3] == 4 && b.qs[17] == 1);
    CHECK(b.d == 1.0f);
    CHECK(b.bsums[0] == -127 + 2 - 2 + 4 && b.bsums[1] == 1 && b.bsums[2] == 0);
  }
  // Q4_0: the largest magnitude maps to -8 exactly; halves round up (+8.5 then truncate).
  std::vector<float> q(32, 0.0f);
  q[0] = -16.0f;  // d = -16 / -8 = 2
  q[1] = 3.0f;    // 1.5 steps -> rounds to 2
  q[2] = -3.0f;   // -1.5 steps -> -1
  q[3] = 15.0f;   // 7.5 steps -> clamps at 7
  block_q4_0 b;
  cpu_kernels().type(DType::Q4_0).from_float(q.data(), &b, 32);
  CHECK(b.d == 0x4000);
  CHECK((b.qs[0] & 15) == 0 && (b.qs[1] & 15) == 10 && (b.qs[2] & 15) == 7 && (b.qs[3] & 15) == 15);
}

// --- fast kernels against the reference --------------------------------------

TEST(quants_fast_from_float_matches_reference) {
  for (DType t : {DType::Q8_0, DType::Q8_K, DType::F16}) {
    for (unsigned seed = 1; seed <= 4; ++seed) {
      auto x = make_data(256 * 9, seed, seed % 2 == 0, seed * 3.0f);
      x[5] = 0;  // a block with an exact zero and one outlier
      x[300] = 1e4f;
      for (int i = 512; i < 768; ++i) x[static_cast<size_t>(i)] = 0;  // an all-zero block
      const auto ref = quantize(type_traits_reference(t), x);
      const auto fast = quantize(cpu_kernels().type(t), x);
      CHECK(ref == fast);
    }
  }
}

namespace {

// Checks one weight type's vec_dot (fast and reference) on n elements.
void check_vec_dot(DType t, int64_t n, unsigned seed) {
  const TypeTraits& ref = type_traits_reference(t);
  const TypeTraits& fast = cpu_kernels().type(t);
  const TypeTraits& yref = type_traits_reference(ref.vec_dot_type);
  const auto xf = make_data(n, seed, true, 0.05f);
  const auto yf = make_data(n, seed + 100, seed % 2 == 0, 2.0f);
  const auto xq = quantize(ref, xf);
  const auto yq = quantize(yref, yf);
  const auto xd = dequantize(ref, xq, n);
  const auto yd = dequantize(yref, yq, n);
  double exact = 0, mag = 0;
  for (int64_t i = 0; i < n; ++i) {
    exact += static_cast<double>(xd[i]) * yd[i];
    mag += std::fabs(static_cast<double>(xd[i]) * yd[i]);
  }
  float s_ref = NAN, s_fast = NAN;
  ref.vec_dot(n, &s_ref, xq.data(), yq.data());
  fast.vec_dot(n, &s_fast, xq.data(), yq.data());
  if (std::fabs(s_ref - exact) > kDotRelTol * mag || std::fabs(s_fast - s_ref) > kDotRelTol * mag)
    std::fprintf(stderr, "  %s n=%lld: exact %.9g ref %.9g fast %.9g (|xy| %.3g)\n", ref.name,
                 static_cast<long long>(n), exact, s_ref, s_fast, mag);
  CHECK_NEAR(s_ref, exact, kDotRelTol * mag);
  CHECK_NEAR(s_fast, s_ref, kDotRelTol * mag);
}

}  // namespace

TEST(quants_vec_dot_fast_and_reference) {
  for (bool scalar : {false, true}) {
    ScalarMode mode(scalar);
    for (DType t : kWeightTypes) {
      const int64_t bs = dtype_block_size(t);
      // One block, an odd block count (tails of unrolled loops), and a model row.
      const int64_t sizes[] = {bs == 1 ? 7 : bs, bs == 1 ? 4096 + 13 : bs * 3, 4096};
      for (int64_t n : sizes)
        for (unsigned seed = 1; seed <= 3; ++seed) check_vec_dot(t, n, seed);
    }
  }
}

// Extreme activations: every q8 value at +-127 and the weights at their range
// ends, where int16 intermediate sums in the SIMD kernels are closest to overflow.
TEST(quants_vec_dot_extremes) {
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    const TypeTraits& ref = type_traits_reference(t);
    const TypeTraits& fast = cpu_kernels().type(t);
    const TypeTraits& yref = type_traits_reference(ref.vec_dot_type);
    const int64_t n = 1024;
    for (int pattern = 0; pattern < 3; ++pattern) {
      std::vector<float> xf(n), yf(n);
      for (int64_t i = 0; i < n; ++i) {
        xf[i] = (pattern == 0) ? 1.0f : (pattern == 1 ? ((i % 2) ? 1.0f : -1.0f) : ((i / 7) % 2 ? 1.0f : -0.99f));
        yf[i] = (pattern == 2) ? -xf[i] : 1.0f;
      }
      const auto xq = quantize(ref, xf);
      const auto yq = quantize(yref, yf);
      const auto xd = dequantize(ref, xq, n);
      const auto yd = dequantize(yref, yq, n);
      double exact = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        exact += static_cast<double>(xd[i]) * yd[i];
        mag += std::fabs(static_cast<double>(xd[i]) * yd[i]);
      }
      float s_ref, s_fast;
      ref.vec_dot(n, &s_ref, xq.data(), yq.data());
      fast.vec_dot(n, &s_fast, xq.data(), yq.data());
      CHECK_NEAR(s_ref, exact, kDotRelTol * mag);
      CHECK_NEAR(s_fast, s_ref, kDotRelTol * mag);
    }
  }
}

// --- quantize_weights --------------------------------------------------------

TEST(quants_quantize_weights) {
  const int64_t rows = 3, cols = 512;
  const auto x = make_data(rows * cols, 5, true, 0.03f);
  for (DType t : kWeightTypes) {
    std::vector<uint8_t> out(dtype_row_bytes(t, cols) * rows, 0xAB);
    const size_t written = quantize_weights(t, x.data(), out.data(), rows, cols);
    CHECK(written == out.size());
    // Row r is exactly the reference quantization of row r.
    const TypeTraits& tr = type_traits_reference(t);
    std::vector<uint8_t> row(dtype_row_bytes(t, cols));
    for (int64_t r = 0; r < rows; ++r) {
      tr.from_float(x.data() + r * cols, row.data(), cols);
      CHECK(std::memcmp(row.data(), out.data() + r * row.size(), row.size()) == 0);
    }
  }
  std::vector<uint8_t> out(1 << 16);
  CHECK_THROWS(quantize_weights(DType::Q4_K, x.data(), out.data(), 1, 100),
               "shape [1, 100] does not fit q4_k (columns must be a positive multiple of 256)");
  CHECK_THROWS(quantize_weights(DType::Q8_0, x.data(), out.data(), -1, 32), "shape [-1, 32]");
  CHECK_THROWS(quantize_weights(DType::Q8_K, x.data(), out.data(), 1, 256), "q8_K is an activation type");
  CHECK_THROWS(quantize_weights(static_cast<DType>(9), x.data(), out.data(), 1, 256), "unknown tensor type id 9");
  CHECK_THROWS(quantize_weights(DType::F16, nullptr, out.data(), 1, 256), "null buffer");
  CHECK(quantize_weights(DType::Q4_0, x.data(), out.data(), 0, 32) == 0);
}
