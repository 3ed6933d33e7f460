// test_image.cpp - luma, the PIL-exact Lanczos resampler, crop and normalisation.
//
// test/fixtures/images/resample-cases.txt holds small resizes computed by PIL
// itself (tools/reference/make_image_goldens.py); the full-size goldens are
// checked from TypeScript (test/image-preprocess.test.ts), where PNGs can be decoded.
#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "types/error.h"
#include "image/image.h"
#include "support/files.h"
#include "support/test.h"

namespace {

using cxr::Gray8;

using cxrtest::repo_root;

Gray8 gray(int32_t w, int32_t h, std::vector<uint8_t> data) {
  Gray8 g;
  g.width = w;
  g.height = h;
  g.data = std::move(data);
  return g;
}

Gray8 constant(int32_t w, int32_t h, uint8_t v) {
  return gray(w, h, std::vector<uint8_t>(static_cast<size_t>(w) * static_cast<size_t>(h), v));
}

struct ResampleCase {
  std::string name;
  Gray8 in;
  int32_t out_w = 0, out_h = 0;
  std::vector<uint8_t> expected;
};

std::vector<uint8_t> read_pixels(std::istringstream& line, const char* tag) {
  std::string t;
  line >> t;
  if (t != tag) throw std::runtime_error(std::string("resample-cases.txt: expected ") + tag);
  std::vector<uint8_t> v;
  int x;
  while (line >> x) v.push_back(static_cast<uint8_t>(x));
  return v;
}

std::vector<ResampleCase> load_cases() {
  const std::string path = repo_root() + "/test/fixtures/images/resample-cases.txt";
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path + " (run from the repository or set CXR_REPO_ROOT)");
  std::vector<ResampleCase> cases;
  std::string head, in, out;
  while (std::getline(f, head) && std::getline(f, in) && std::getline(f, out)) {
    ResampleCase c;
    std::istringstream h(head), i(in), o(out);
    std::string tag;
    int32_t w = 0, hh = 0;
    h >> tag >> w >> hh >> c.out_w >> c.out_h >> c.name;
    c.in = gray(w, hh, read_pixels(i, "in"));
    c.expected = read_pixels(o, "out");
    cases.push_back(std::move(c));
  }
  return cases;
}

}  // namespace

TEST(image_luma_of_pure_colours) {
  // PIL: Image.new('RGB', (1, 1), c).convert('L') gives these values.
  const uint8_t rgb[] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 128, 128, 128};
  Gray8 g = cxr::luma_from_pixels(rgb, 6, 1, 3);
  CHECK(g.data[0] == 76);
  CHECK(g.data[1] == 150);
  CHECK(g.data[2] == 29);
  CHECK(g.data[3] == 255);
  CHECK(g.data[4] == 0);
  CHECK(g.data[5] == 128);
}

TEST(image_luma_ignores_alpha) {
  const uint8_t rgba[] = {255, 0, 0, 0, 255, 0, 0, 255, 10, 20, 30, 7};
  const uint8_t rgb[] = {255, 0, 0, 255, 0, 0, 10, 20, 30};
  Gray8 a = cxr::luma_from_pixels(rgba, 3, 1, 4);
  Gray8 b = cxr::luma_from_pixels(rgb, 3, 1, 3);
  CHECK(a.data == b.data);
  const uint8_t la[] = {9, 0, 200, 255, 33, 128};
  Gray8 c = cxr::luma_from_pixels(la, 3, 1, 2);
  CHECK((c.data == std::vector<uint8_t>{9, 200, 33}));
}

TEST(image_luma_rejects_bad_shapes) {
  const uint8_t px[4] = {};
  CHECK_THROWS(cxr::luma_from_pixels(px, 1, 1, 5), "1 to 4 channels");
  CHECK_THROWS(cxr::luma_from_pixels(px, 0, 1, 1), "not a valid image size");
  CHECK_THROWS(cxr::luma_from_pixels(px, 1 << 15, 1 << 15, 1), "exceeds the limit");
}

TEST(image_resize_same_size_is_identity) {
  Gray8 in = gray(4, 3, {0, 10, 250, 7, 99, 1, 2, 3, 255, 128, 64, 32});
  Gray8 out = cxr::resize_lanczos(in, 4, 3);
  CHECK(out.width == 4 && out.height == 3);
  CHECK(out.data == in.data);
}

TEST(image_resize_keeps_constant_images_constant) {
  // The weights sum to one, so any resize of a flat image stays flat, even
  // with the negative lobes; this also holds at the borders.
  for (uint8_t v : {uint8_t{0}, uint8_t{1}, uint8_t{128}, uint8_t{254}, uint8_t{255}}) {
    for (auto [w, h] : {std::pair{37, 53}, std::pair{600, 9}, std::pair{5, 2}}) {
      Gray8 out = cxr::resize_lanczos(constant(23, 31, v), w, h);
      bool flat = true;
      for (uint8_t p : out.data) flat = flat && p == v;
      CHECK(flat);
    }
  }
}

TEST(image_resize_matches_pil_small_cases) {
  const auto cases = load_cases();
  CHECK(cases.size() >= 8);
  for (const auto& c : cases) {
    Gray8 out = cxr::resize_lanczos(c.in, c.out_w, c.out_h);
    if (out.data != c.expected) {
      std::fprintf(stderr, "  resample case %s differs from PIL\n", c.name.c_str());
      CHECK(out.data == c.expected);
    }
  }
}

TEST(image_resize_window_equals_crop_of_full_resize) {
  const auto cases = load_cases();
  for (const auto& c : cases) {
    if (c.out_w < 3 || c.out_h < 3) continue;
    const cxr::Rect keep{1, 1, c.out_w - 2, c.out_h - 1};
    Gray8 part = cxr::resize_lanczos(c.in, c.out_w, c.out_h, keep);
    bool same = part.width == keep.width && part.height == keep.height;
    for (int32_t y = 0; same && y < keep.height; ++y)
      for (int32_t x = 0; x < keep.width; ++x)
        same = same && part.data[static_cast<size_t>(y * keep.width + x)] ==
                           c.expected[static_cast<size_t>((y + keep.y) * c.out_w + x + keep.x)];
    CHECK(same);
  }
}

TEST(image_resize_rejects_bad_regions) {
  Gray8 in = constant(8, 8, 3);
  CHECK_THROWS(cxr::resize_lanczos(in, 0, 4), "not a valid image size");
  CHECK_THROWS(cxr::resize_lanczos(in, 4, 4, cxr::Rect{1, 0, 4, 4}), "outside the 4x4 output");
  Gray8 broken = in;
  broken.data.pop_back();
  CHECK_THROWS(cxr::resize_lanczos(broken, 4, 4), "does not match its size");
}

TEST(image_shortest_edge_size) {
  int32_t w = 0, h = 0;
  cxr::shortest_edge_size(777, 1301, 512, &w, &h);
  CHECK(w == 512 && h == 857);  // int(512 * 1301 / 777) = int(857.28...)
  cxr::shortest_edge_size(1000, 700, 512, &w, &h);
  CHECK(w == 731 && h == 512);  // int(731.43)
  cxr::shortest_edge_size(300, 300, 512, &w, &h);
  CHECK(w == 512 && h == 512);
  cxr::shortest_edge_size(1, 4000, 512, &w, &h);
  CHECK(w == 512 && h == 2048000);
  CHECK_THROWS(cxr::shortest_edge_size(1, 99000000, 512, &w, &h), "aspect ratio");
}

TEST(image_preprocess_crops_the_centre) {
  // 600x512: no resize (short edge already 512, long edge int(512*600/512) = 600),
  // so the result is exactly columns 44..555.
  std::vector<uint8_t> px(600 * 512);
  for (int y = 0; y < 512; ++y)
    for (int x = 0; x < 600; ++x) px[static_cast<size_t>(y * 600 + x)] = static_cast<uint8_t>((x * 7 + y * 3) & 255);
  Gray8 out = cxr::preprocess_gray8(px.data(), 600, 512, 1, 512);
  CHECK(out.width == 512 && out.height == 512);
  CHECK(out.data[0] == px[44]);
  CHECK(out.data[511] == px[555]);
  CHECK(out.data[511 * 512 + 3] == px[511 * 600 + 47]);
}

TEST(image_preprocess_extreme_aspect_ratio_stays_small) {
  // A 1x4000 strip resizes to 512x2048000 in PIL; only the kept 512x512 is built here.
  std::vector<uint8_t> px(4000, 200);
  Gray8 out = cxr::preprocess_gray8(px.data(), 1, 4000, 1, 512);
  CHECK(out.width == 512 && out.height == 512 && out.data.size() == 512u * 512u);
  CHECK(out.data[12345] == 200);
}

TEST(image_normalize) {
  Gray8 g = gray(3, 1, {0, 141, 255});
  float out[3];
  cxr::normalize_gray8(g, cxr::kImageMean, cxr::kImageStd, out);
  CHECK_NEAR(out[0], (0.0 - 0.5518136078431373) / 0.3821719215686275, 1e-6);
  CHECK_NEAR(out[1], (141 / 255.0 - 0.5518136078431373) / 0.3821719215686275, 1e-6);
  CHECK_NEAR(out[2], (1.0 - 0.5518136078431373) / 0.3821719215686275, 1e-6);
  CHECK_NEAR(out[0], -1.443890, 1e-5);
}
