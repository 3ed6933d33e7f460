// image.cpp - luma, Lanczos resampling, crop and normalisation, matching PIL.
//
// The resampler follows Pillow's separable convolution (libImaging/Resample.c
// in Pillow 9.x), whose behaviour has to be reproduced to the bit:
//   - one axis at a time, horizontal first, with an 8-bit image in between;
//     an axis whose size does not change is skipped, and if neither changes
//     the image is copied;
//   - output pixel i samples the input around center = (i + 0.5) * scale,
//     scale = in/out; when shrinking the filter is stretched by `scale`
//     (support 3*scale), when enlarging it is not;
//   - the taps cover the input pixels [int(center - support + 0.5),
//     int(center + support + 0.5)) clipped to the image, weighted by
//     lanczos((j - center + 0.5) / filterscale) and divided by their sum;
//   - weights become Q22 fixed point (8 result bits + 2 spare bits in an int32),
//     rounded half away from zero; a pixel is (sum(w*p) + 2^21) >> 22 clamped
//     to 0..255.
#include "image/image.h"

#include <cmath>
#include <cstring>
#include <string>

#include "types/error.h"

namespace cxr {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr double kLanczosSupport = 3.0;
constexpr double kPi = 3.14159265358979323846;

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= kPi;
  return std::sin(x) / x;
}

// Lanczos with a = 3, on the half-open interval [-3, 3) as Pillow defines it.
double lanczos3(double x) {
  if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
  return 0.0;
}

// Fixed-point filter taps for a run of output positions along one axis.
struct Taps {
  int32_t ksize = 0;            // weight slots per output position
  std::vector<int32_t> first;   // (n) first input index read by each output position
  std::vector<int32_t> count;   // (n) number of input pixels read
  std::vector<int32_t> weight;  // (n, ksize) Q22 weights; slots past count are unused
};

// Taps for output positions [out_first, out_first + n) of an in_size -> out_size resize.
Taps make_taps(int32_t in_size, int32_t out_size, int32_t out_first, int32_t n) {
  // Pillow takes the box edges as floats; sizes below 2^24 convert exactly.
  const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = kLanczosSupport * filterscale;
  const double ss = 1.0 / filterscale;

  Taps t;
  t.ksize = static_cast<int32_t>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<size_t>(n));
  t.count.resize(static_cast<size_t>(n));
  t.weight.assign(static_cast<size_t>(n) * static_cast<size_t>(t.ksize), 0);
  std::vector<double> k(static_cast<size_t>(t.ksize));

  for (int32_t i = 0; i < n; ++i) {
    const double center = (out_first + i + 0.5) * scale;
    // int() truncates toward zero, as the C cast in Pillow does.
    int32_t lo = static_cast<int32_t>(center - support + 0.5);
    if (lo < 0) lo = 0;
    int32_t hi = static_cast<int32_t>(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    int32_t cnt = hi - lo;
    if (cnt < 0) cnt = 0;
    if (cnt > t.ksize) cnt = t.ksize;  // cannot happen (hi - lo <= 2*ceil(support) + 1); keeps writes in bounds

    double sum = 0.0;
    for (int32_t j = 0; j < cnt; ++j) {
      // Same operation order as Pillow: ((j + lo) - center) + 0.5, then scaled.
      const double w = lanczos3((static_cast<double>(j + lo) - center + 0.5) * ss);
      k[static_cast<size_t>(j)] = w;
      sum += w;
    }
    int32_t* wq = &t.weight[static_cast<size_t>(i) * static_cast<size_t>(t.ksize)];
    for (int32_t j = 0; j < cnt; ++j) {
      double w = k[static_cast<size_t>(j)];
      if (sum != 0.0) w /= sum;
      const double scaled = w * (1 << kPrecisionBits);
      wq[j] = static_cast<int32_t>(w < 0 ? -0.5 + scaled : 0.5 + scaled);
    }
    t.first[static_cast<size_t>(i)] = lo;
    t.count[static_cast<size_t>(i)] = cnt;
  }
  return t;
}

// A Q22 accumulator (which started at 2^21 for rounding) to a pixel. The right
// shift of a negative sum floors, as in Pillow; the sums never leave int32.
inline uint8_t clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

void check_size(int32_t width, int32_t height, const char* what) {
  if (width < 1 || height < 1)
    throw EngineError(err::kArgument, std::string(what) + " size " + std::to_string(width) + "x" +
                                          std::to_string(height) + " is not a valid image size");
  if (static_cast<int64_t>(width) * height > kMaxImagePixels)
    throw EngineError(err::kArgument, std::string(what) + " size " + std::to_string(width) + "x" +
                                          std::to_string(height) + " exceeds the limit of " +
                                          std::to_string(kMaxImagePixels) + " pixels");
}

}  // namespace

Gray8 luma_from_pixels(const uint8_t* pixels, int32_t width, int32_t height, int32_t channels) {
  check_size(width, height, "image");
  if (channels < 1 || channels > 4)
    throw EngineError(err::kArgument, "images must have 1 to 4 channels, got " + std::to_string(channels));
  Gray8 out;
  out.width = width;
  out.height = height;
  const size_t n = static_cast<size_t>(width) * static_cast<size_t>(height);
  out.data.resize(n);
  uint8_t* dst = out.data.data();
  const size_t c = static_cast<size_t>(channels);
  if (channels <= 2) {
    // L and LA: the grey value is already there.
    for (size_t i = 0; i < n; ++i) dst[i] = pixels[i * c];
  } else {
    // PIL's rgb2l: L = (299 R + 587 G + 114 B)/1000 as 16.16 fixed point, rounded.
    for (size_t i = 0; i < n; ++i) {
      const uint8_t* p = pixels + i * c;
      dst[i] = static_cast<uint8_t>((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
    }
  }
  return out;
}

Gray8 resize_lanczos(const Gray8& in, int32_t out_w, int32_t out_h, const Rect& keep) {
  check_size(in.width, in.height, "input");
  if (in.data.size() != static_cast<size_t>(in.width) * static_cast<size_t>(in.height))
    throw EngineError(err::kArgument, "image data does not match its size");
  if (out_w < 1 || out_h < 1)
    throw EngineError(err::kArgument, "output size " + std::to_string(out_w) + "x" + std::to_string(out_h) +
                                          " is not a valid image size");
  check_size(keep.width, keep.height, "kept region");
  if (keep.x < 0 || keep.y < 0 || keep.x > out_w - keep.width || keep.y > out_h - keep.height)
    throw EngineError(err::kArgument, "kept region lies outside the " + std::to_string(out_w) + "x" +
                                          std::to_string(out_h) + " output");

  const bool need_h = out_w != in.width;
  const bool need_v = out_h != in.height;
  const size_t kw = static_cast<size_t>(keep.width);

  // The input rows that the kept output rows read.
  Taps vt;
  int32_t row0 = keep.y, row1 = keep.y + keep.height;
  if (need_v) {
    vt = make_taps(in.height, out_h, keep.y, keep.height);
    row0 = vt.first.front();
    row1 = vt.first.back() + vt.count.back();
  }

  // Horizontal pass (or a plain column copy) into an 8-bit intermediate, as in PIL.
  Gray8 mid;
  mid.width = keep.width;
  mid.height = row1 - row0;
  mid.data.resize(kw * static_cast<size_t>(mid.height));
  if (need_h) {
    const Taps ht = make_taps(in.width, out_w, keep.x, keep.width);
    for (int32_t y = 0; y < mid.height; ++y) {
      const uint8_t* src = &in.data[static_cast<size_t>(row0 + y) * static_cast<size_t>(in.width)];
      uint8_t* dst = &mid.data[static_cast<size_t>(y) * kw];
      for (size_t x = 0; x < kw; ++x) {
        const int32_t* w = &ht.weight[x * static_cast<size_t>(ht.ksize)];
        const uint8_t* s = src + ht.first[x];
        int32_t acc = 1 << (kPrecisionBits - 1);
        for (int32_t j = 0; j < ht.count[x]; ++j) acc += s[j] * w[j];
        dst[x] = clip8(acc);
      }
    }
  } else {
    for (int32_t y = 0; y < mid.height; ++y)
      std::memcpy(&mid.data[static_cast<size_t>(y) * kw],
                  &in.data[static_cast<size_t>(row0 + y) * static_cast<size_t>(in.width) + keep.x], kw);
  }
  if (!need_v) return mid;

  // Vertical pass over the intermediate, whose row 0 is input row `row0`.
  Gray8 out;
  out.width = keep.width;
  out.height = keep.height;
  out.data.resize(kw * static_cast<size_t>(keep.height));
  std::vector<int32_t> acc(kw);
  for (int32_t y = 0; y < keep.height; ++y) {
    const int32_t* w = &vt.weight[static_cast<size_t>(y) * static_cast<size_t>(vt.ksize)];
    const int32_t first = vt.first[static_cast<size_t>(y)] - row0;
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    // Row by row so the inner loop runs along memory; the sum per pixel is the
    // same integer sum as Pillow's, only accumulated in another order.
    for (int32_t j = 0; j < vt.count[static_cast<size_t>(y)]; ++j) {
      const uint8_t* s = &mid.data[static_cast<size_t>(first + j) * kw];
      const int32_t wj = w[j];
      for (size_t x = 0; x < kw; ++x) acc[x] += s[x] * wj;
    }
    uint8_t* dst = &out.data[static_cast<size_t>(y) * kw];
    for (size_t x = 0; x < kw; ++x) dst[x] = clip8(acc[x]);
  }
  return out;
}

Gray8 resize_lanczos(const Gray8& in, int32_t out_w, int32_t out_h) {
  check_size(out_w, out_h, "output");
  return resize_lanczos(in, out_w, out_h, Rect{0, 0, out_w, out_h});
}

void shortest_edge_size(int32_t width, int32_t height, int32_t target, int32_t* out_w, int32_t* out_h) {
  check_size(width, height, "image");
  if (target < 1) throw EngineError(err::kArgument, "target size must be positive, got " + std::to_string(target));
  const bool portrait = width <= height;
  const int64_t shorter = portrait ? width : height;
  const int64_t longer = portrait ? height : width;
  // Python's int(target * long / short): the true quotient (exact integers,
  // one correctly rounded division), truncated.
  const double scaled = static_cast<double>(int64_t{target} * longer) / static_cast<double>(shorter);
  if (scaled > static_cast<double>(int32_t{1} << 30))
    throw EngineError(err::kArgument, "image size " + std::to_string(width) + "x" + std::to_string(height) +
                                          " has too extreme an aspect ratio to resize");
  const int32_t long_out = static_cast<int32_t>(scaled);
  *out_w = portrait ? target : long_out;
  *out_h = portrait ? long_out : target;
}

Gray8 preprocess_gray8(const uint8_t* pixels, int32_t width, int32_t height, int32_t channels, int32_t size) {
  const Gray8 gray = luma_from_pixels(pixels, width, height, channels);
  int32_t rw = 0, rh = 0;
  shortest_edge_size(width, height, size, &rw, &rh);
  // Centre crop as the official code: top = (H - size)//2, left = (W - size)//2.
  const Rect keep{(rw - size) / 2, (rh - size) / 2, size, size};
  return resize_lanczos(gray, rw, rh, keep);
}

void normalize_gray8(const Gray8& img, double mean, double std, float* out) {
  const size_t n = img.data.size();
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>((img.data[i] / 255.0 - mean) / std);
}

}  // namespace cxr
