// image.h - CXR-LLaVA's official image preprocessing on decoded 8-bit pixels.
//
// The official pipeline (Python, PIL):
//   1. img.convert('L')                 ITU-R 601 luma in PIL's fixed point
//   2. img.resize(.., Image.LANCZOS)    shortest edge -> 512, long edge -> int(512*long/short)
//   3. centre crop 512x512              top = (H-512)//2, left = (W-512)//2
//   4. x/255, then (x - mean)/std
// Every step here reproduces PIL (Pillow 9.x) bit for bit on 8-bit data,
// including the 8-bit image between the two resampling passes. Decoding is not
// done here: the caller hands over raw pixels (sharp in lib/inputs/image.ts, or the
// DICOM reader's 8-bit output).
#pragma once
#include <cstdint>
#include <vector>

#include "types/limits.h"

namespace cxr {

// An 8-bit single-channel image, rows top to bottom, no padding.
struct Gray8 {
  int32_t width = 0;
  int32_t height = 0;
  std::vector<uint8_t> data;  // (height, width)
};

// A rectangle of output pixels: [x, x + width) x [y, y + height).
struct Rect {
  int32_t x = 0, y = 0, width = 0, height = 0;
};

// Defaults from the CXR-LLaVA release (the model GGUF may carry its own).
inline constexpr int32_t kImageSize = 512;
inline constexpr double kImageMean = 0.5518136078431373;
inline constexpr double kImageStd = 0.3821719215686275;

// Largest input accepted (pixels), so a hostile size cannot exhaust memory.
inline constexpr int64_t kMaxImagePixels = limits::kMaxImagePixels;

// PIL's convert('L') of interleaved 8-bit pixels with 1 (L), 2 (LA), 3 (RGB)
// or 4 (RGBA) channels. Alpha is ignored, as PIL ignores it.
// Throws ERR_INVALID_ARG for impossible sizes or channel counts.
Gray8 luma_from_pixels(const uint8_t* pixels, int32_t width, int32_t height, int32_t channels);

// PIL's Image.resize((out_w, out_h), Image.LANCZOS) of a mode 'L' image.
Gray8 resize_lanczos(const Gray8& in, int32_t out_w, int32_t out_h);

// The same resize, but only the output pixels inside `keep` are computed and
// returned (a keep.width x keep.height image). Equal to cropping the full
// resize, without ever holding it: a 1x4000 input would otherwise become a
// 512x2048000 intermediate.
Gray8 resize_lanczos(const Gray8& in, int32_t out_w, int32_t out_h, const Rect& keep);

// The size after scaling the shortest edge to `target`, as the official code
// computes it: the long edge is int(target * long / short).
void shortest_edge_size(int32_t width, int32_t height, int32_t target, int32_t* out_w, int32_t* out_h);

// Steps 1-3: luma, shortest edge to `size`, centre crop size x size.
Gray8 preprocess_gray8(const uint8_t* pixels, int32_t width, int32_t height, int32_t channels, int32_t size);

// Step 4: out[i] = (in[i]/255 - mean)/std, computed in double, stored as float.
void normalize_gray8(const Gray8& img, double mean, double std, float* out);

}  // namespace cxr
