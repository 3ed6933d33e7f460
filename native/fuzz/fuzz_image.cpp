// fuzz_image.cpp - the image preprocessor on arbitrary sizes and pixels. The
// first 16 bytes choose width, height (up to 48 each, or up to 256 when bit 0
// of byte 14 is set: small images keep a run fast, so the fuzzer spends its
// time on shapes, not on resampling; the size checks themselves see any int32),
// channels, output size and a crop rectangle; the rest are pixels. Bad shapes
// must be an EngineError.
#include <cstdint>
#include <cstring>
#include <vector>

#include "image/image.h"
#include "types/error.h"

namespace {
int32_t i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 16) return 0;
  const int32_t raw_w = i32(data), raw_h = i32(data + 4);
  const int32_t channels = static_cast<int8_t>(data[8]);
  const int32_t out = 1 + data[9] % 96;
  const int32_t rx = static_cast<int8_t>(data[10]), ry = static_cast<int8_t>(data[11]);
  const int32_t rw = data[12] % 128, rh = data[13] % 128;
  const uint8_t* px = data + 16;
  const size_t n_px = size - 16;

  // The size checks on any int32 (no pixels are read when they fail).
  int32_t ow = 0, oh = 0;
  try {
    cxr::shortest_edge_size(raw_w, raw_h, out, &ow, &oh);
  } catch (const cxr::EngineError&) {
  }

  // Decoded images as the addon hands them over: width*height*channels bytes.
  const uint32_t side = (data[14] & 1) ? 256 : 48;
  const int32_t w = 1 + static_cast<int32_t>(static_cast<uint32_t>(raw_w) % side);
  const int32_t h = 1 + static_cast<int32_t>(static_cast<uint32_t>(raw_h) % side);
  const int32_t c = channels >= 1 && channels <= 4 ? channels : 1 + (static_cast<uint8_t>(channels) % 4);
  const size_t need = static_cast<size_t>(w) * h * c;
  std::vector<uint8_t> pixels(need);
  for (size_t i = 0; i < need; ++i) pixels[i] = n_px ? px[i % n_px] : 0;
  try {
    cxr::Gray8 gray = cxr::luma_from_pixels(pixels.data(), w, h, c);
    try {
      (void)cxr::resize_lanczos(gray, out, out + rw % 7, cxr::Rect{rx, ry, rw, rh});
    } catch (const cxr::EngineError&) {
    }
    cxr::Gray8 pre = cxr::preprocess_gray8(pixels.data(), w, h, c, out);
    std::vector<float> norm(pre.data.size());
    cxr::normalize_gray8(pre, 0.5, 0.25, norm.data());
  } catch (const cxr::EngineError&) {
  }
  // An impossible channel count straight from the input.
  try {
    (void)cxr::luma_from_pixels(pixels.data(), w, h, channels);
  } catch (const cxr::EngineError&) {
  }
  return 0;
}
