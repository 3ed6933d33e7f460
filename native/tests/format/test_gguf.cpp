// test_gguf.cpp - the GGUF reader against files built byte by byte here: a valid
// file must read back exactly, and every hostile variant must throw EngineError
// without reading out of bounds (run under -fsanitize=address,undefined to prove it).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "types/error.h"
#include "format/gguf.h"
#include "support/files.h"
#include "support/gguf_builder.h"
#include "support/test.h"

using cxr::DType;
using cxr::EngineError;
using cxr::GgufFile;
using cxr::GgufType;

namespace {

using cxrtest::Bytes;
using cxrtest::TempFile;
using cxrtest::temp_dir;

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> ne;
  uint32_t type;
  uint64_t offset;  // relative to the data section
  uint64_t nbytes;  // bytes of data to fill with a pattern
};

// A whole file. kvs is pre-encoded so tests can put anything there.
struct FileSpec {
  uint32_t version = 3;
  uint64_t kv_count = 0;
  Bytes kvs;
  std::vector<TensorSpec> tensors;
  uint64_t alignment = 32;  // how the builder pads (the file says so only via kvs)
  uint64_t data_bytes = 0;  // size of the data section

  uint64_t tensor_count_override = UINT64_MAX;
};

uint8_t pattern(size_t tensor, uint64_t i) { return static_cast<uint8_t>(tensor * 31 + i * 7 + 1); }

std::vector<uint8_t> build(const FileSpec& s, uint64_t* data_offset = nullptr) {
  Bytes f;
  f.b = {'G', 'G', 'U', 'F'};
  f.u32(s.version);
  f.u64(s.tensor_count_override != UINT64_MAX ? s.tensor_count_override : s.tensors.size());
  f.u64(s.kv_count);
  f.raw(s.kvs);
  for (const TensorSpec& t : s.tensors) {
    f.str(t.name).u32(static_cast<uint32_t>(t.ne.size()));
    for (uint64_t n : t.ne) f.u64(n);
    f.u32(t.type).u64(t.offset);
  }
  while (f.b.size() % s.alignment) f.u8(0);
  uint64_t start = f.b.size();
  if (data_offset) *data_offset = start;
  f.b.resize(start + s.data_bytes, 0);
  for (size_t k = 0; k < s.tensors.size(); ++k) {
    const TensorSpec& t = s.tensors[k];
    for (uint64_t i = 0; t.offset < s.data_bytes && i < t.nbytes && i < s.data_bytes - t.offset; ++i) {
      f.b[start + t.offset + i] = pattern(k, i);
    }
  }
  return f.b;
}

std::unique_ptr<GgufFile> open_bytes(const std::vector<uint8_t>& bytes) {
  TempFile f(bytes);
  return GgufFile::open(f.path);  // the mapping outlives the unlinked file
}

// The file the happy-path tests use: every metadata type and three tensors whose
// data ends exactly at the end of the file.
FileSpec valid_spec(uint64_t alignment = 32) {
  FileSpec s;
  s.alignment = alignment;
  Bytes& k = s.kvs;
  uint64_t n = 0;
  k.key("general.architecture", GgufType::STRING).str("llama"), ++n;
  k.key("v.u8", GgufType::UINT8).u8(200), ++n;
  k.key("v.i8", GgufType::INT8).u8(static_cast<uint8_t>(-5)), ++n;
  k.key("v.u16", GgufType::UINT16).u16(60000), ++n;
  k.key("v.i16", GgufType::INT16).u16(static_cast<uint16_t>(-30000)), ++n;
  k.key("v.u32", GgufType::UINT32).u32(4000000000u), ++n;
  k.key("v.i32", GgufType::INT32).u32(static_cast<uint32_t>(-2000000000)), ++n;
  k.key("v.f32", GgufType::FLOAT32).f32(1.5f), ++n;
  k.key("v.bool", GgufType::BOOL).u8(1), ++n;
  k.key("v.u64", GgufType::UINT64).u64(0x8000000000000005ull), ++n;
  k.key("v.i64", GgufType::INT64).u64(static_cast<uint64_t>(-(int64_t(1) << 40))), ++n;
  k.key("v.f64", GgufType::FLOAT64).f64(3.141592653589793), ++n;
  k.key("v.strs", GgufType::ARRAY).u32(uint32_t(GgufType::STRING)).u64(3).str("a").str("").str("h\xc3\xa9llo"), ++n;
  k.key("v.f32s", GgufType::ARRAY).u32(uint32_t(GgufType::FLOAT32)).u64(2).f32(0.5f).f32(-2.25f), ++n;
  k.key("v.i32s", GgufType::ARRAY).u32(uint32_t(GgufType::INT32)).u64(3).u32(1).u32(uint32_t(-2)).u32(3), ++n;
  k.key("v.bools", GgufType::ARRAY).u32(uint32_t(GgufType::BOOL)).u64(2).u8(0).u8(1), ++n;
  // [[7, 8], []] as uint16 arrays inside an array.
  k.key("v.nested", GgufType::ARRAY).u32(uint32_t(GgufType::ARRAY)).u64(2);
  k.u32(uint32_t(GgufType::UINT16)).u64(2).u16(7).u16(8);
  k.u32(uint32_t(GgufType::UINT16)).u64(0), ++n;
  if (alignment != 32) k.key("general.alignment", GgufType::UINT32).u32(static_cast<uint32_t>(alignment)), ++n;
  s.kv_count = n;

  auto up = [&](uint64_t x) { return (x + alignment - 1) / alignment * alignment; };
  uint64_t off = 0;
  s.tensors.push_back({"tok", {4, 3}, 0, off, 48});  // f32 4x3
  off = up(off + 48);
  s.tensors.push_back({"blk.0.q", {64, 2}, 8, off, 2 * 2 * 34});  // q8_0
  off = up(off + 136);
  s.tensors.push_back({"blk.0.k", {256, 1, 1, 2}, 12, off, 2 * 144});  // q4_k, 4-d
  s.data_bytes = off + 288;
  return s;
}

std::string code_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const EngineError& e) {
    return e.code();
  }
  return "";
}

// Opens a hostile file; checks it throws kGguf with `substr` in the message.
#define CHECK_BAD(bytes, substr)                                                 \
  do {                                                                           \
    TempFile _f(bytes);                                                          \
    CHECK_THROWS(GgufFile::open(_f.path), substr);                               \
    CHECK(code_of([&] { GgufFile::open(_f.path); }) == cxr::err::kGguf);        \
  } while (0)

}  // namespace

TEST(gguf_valid_file_reads_back_exactly) {
  FileSpec s = valid_spec();
  uint64_t data_offset = 0;
  std::vector<uint8_t> bytes = build(s, &data_offset);
  auto g = open_bytes(bytes);
  CHECK(g->version() == 3);
  CHECK(g->alignment() == 32);
  CHECK(g->file_size() == bytes.size());
  CHECK(g->data_offset() == data_offset);
  CHECK(g->data_offset() % 32 == 0);
  CHECK(g->kvs().size() == 17);
  CHECK(g->kvs()[0].key == "general.architecture");  // insertion order kept
  CHECK(g->kvs()[16].key == "v.nested");

  CHECK(g->get_str("general.architecture") == "llama");
  CHECK(g->find("v.u8")->type == GgufType::UINT8 && g->get_u64("v.u8") == 200);
  CHECK(g->find("v.i8")->num.i64 == -5);
  CHECK(g->get_u64("v.u16") == 60000);
  CHECK(g->find("v.i16")->num.i64 == -30000);
  CHECK(g->get_u64("v.u32") == 4000000000u);
  CHECK(g->find("v.i32")->num.i64 == -2000000000);
  CHECK(g->get_f64("v.f32") == 1.5);
  CHECK(g->get_bool("v.bool", false) == true);
  CHECK(g->get_u64("v.u64") == 0x8000000000000005ull);
  CHECK(g->find("v.i64")->num.i64 == -(int64_t(1) << 40));
  CHECK(g->get_f64("v.f64") == 3.141592653589793);
  CHECK(g->get_f64("v.u32") == 4000000000.0);  // integers widen to double

  const auto& strs = g->get_str_array("v.strs");
  CHECK(strs.size() == 3 && strs[0] == "a" && strs[1].empty() && strs[2] == "h\xc3\xa9llo");
  CHECK(g->get_f32_array("v.f32s") == (std::vector<float>{0.5f, -2.25f}));
  CHECK(g->get_i32_array("v.i32s") == (std::vector<int32_t>{1, -2, 3}));
  const cxr::GgufValue* bools = g->find("v.bools");
  CHECK(bools->elem_type == GgufType::BOOL && bools->count == 2 && bools->raw[0] == 0 && bools->raw[1] == 1);
  const cxr::GgufValue* nested = g->find("v.nested");
  CHECK(nested->type == GgufType::ARRAY && nested->elem_type == GgufType::ARRAY && nested->items.size() == 2);
  if (nested->items.size() == 2) {
    const cxr::GgufValue& a = nested->items[0];
    CHECK(a.elem_type == GgufType::UINT16 && a.count == 2 && a.raw[0] == 7 && a.raw[1] == 0 && a.raw[2] == 8);
    CHECK(nested->items[1].count == 0);
  }

  CHECK(g->tensors().size() == 3);
  for (size_t k = 0; k < s.tensors.size() && k < g->tensors().size(); ++k) {
    const cxr::GgufTensor& t = g->tensors()[k];
    const TensorSpec& want = s.tensors[k];
    CHECK(t.name == want.name);
    CHECK(t.n_dims == want.ne.size());
    CHECK(static_cast<uint32_t>(t.type) == want.type);
    CHECK(t.offset == want.offset);
    CHECK(t.nbytes == want.nbytes);
    // Data pointers sit exactly data_offset + offset into the mapping: check
    // relative to the first tensor and by content.
    CHECK(static_cast<const uint8_t*>(t.data) - static_cast<const uint8_t*>(g->tensors()[0].data) ==
          static_cast<ptrdiff_t>(want.offset));
    bool same = true;
    for (uint64_t i = 0; i < want.nbytes; ++i) same = same && static_cast<const uint8_t*>(t.data)[i] == pattern(k, i);
    CHECK(same);
  }
  const cxr::GgufTensor& k = g->require_tensor("blk.0.k", {256, 1, 1, 2});
  CHECK(k.nelements() == 512);
  CHECK(g->require_tensor("tok", {4, 3}).ne[2] == 1);  // trailing 1s omitted
  CHECK(g->tensor("nope") == nullptr);
  CHECK(g->find("nope") == nullptr);
}

TEST(gguf_typed_getters_report_problems) {
  auto g = open_bytes(build(valid_spec()));
  CHECK(g->get_u64("missing", 7) == 7);
  CHECK(g->get_f64("missing", 0.25) == 0.25);
  CHECK(g->get_str("missing", "x") == "x");
  CHECK(g->get_bool("missing", true) == true);
  CHECK_THROWS(g->get_u64("missing"), "metadata key 'missing' is missing");
  CHECK_THROWS(g->get_u64("v.i32"), "'v.i32' is negative (-2000000000)");
  CHECK_THROWS(g->get_u64("general.architecture"), "has type string, expected an integer");
  CHECK_THROWS(g->get_u64("v.f32", 1), "has type float32, expected an integer");
  CHECK_THROWS(g->get_f64("v.strs"), "has type array of string, expected a number");
  CHECK_THROWS(g->get_str("v.u8"), "has type uint8, expected string");
  CHECK_THROWS(g->get_bool("v.u8", false), "expected bool");
  CHECK_THROWS(g->get_str_array("v.f32s"), "has type array of float32, expected array of string");
  CHECK_THROWS(g->get_f32_array("v.i32s"), "expected array of float32");
  CHECK_THROWS(g->get_i32_array("missing"), "is missing");
  CHECK_THROWS(g->require_tensor("tok", {3, 4}), "tensor 'tok' has shape [4, 3], expected [3, 4]");
  CHECK_THROWS(g->require_tensor("tok", {4}), "expected [4]");
  CHECK_THROWS(g->require_tensor("absent", {1}), "tensor 'absent' is missing");
  CHECK(code_of([&] { g->get_u64("missing"); }) == cxr::err::kModel);
  CHECK(code_of([&] { g->require_tensor("tok", {1}); }) == cxr::err::kModel);
  std::string msg;
  try {
    g->get_str("v.u8");
  } catch (const EngineError& e) {
    msg = e.what();
  }
  CHECK(msg.find(temp_dir()) == 0);  // names the file
}

TEST(gguf_custom_alignment_64) {
  FileSpec s = valid_spec(64);
  uint64_t data_offset = 0;
  std::vector<uint8_t> bytes = build(s, &data_offset);
  auto g = open_bytes(bytes);
  CHECK(g->alignment() == 64);
  CHECK(g->data_offset() == data_offset && data_offset % 64 == 0);
  CHECK(g->tensors().size() == 3);
  if (g->tensors().size() == 3) {
    CHECK(g->tensors()[1].offset == 64);
    CHECK(g->tensors()[2].offset == 256);
    CHECK(static_cast<const uint8_t*>(g->tensors()[2].data)[0] == pattern(2, 0));
  }
  // The same offsets are misaligned when the file claims 128.
  FileSpec s128 = valid_spec(64);
  s128.kvs.b[s128.kvs.b.size() - 4] = 128;  // the alignment value is the last kv
  CHECK_BAD(build(s128), "data offset 64 is not a multiple of the alignment 128");
}

TEST(gguf_large_file_mapped_on_a_2mib_boundary) {
  // From 2 MiB up the file is mapped at a 2 MiB-aligned address (Linux), so
  // the kernel can back it with huge pages; the contents read back the same.
  FileSpec s = valid_spec();
  uint64_t data_offset = 0;
  std::vector<uint8_t> bytes = build(s, &data_offset);
  const size_t small = bytes.size();
  bytes.resize((size_t{3} << 20) + 12345, 0xAB);  // trailing bytes past the last tensor
  auto g = open_bytes(bytes);
  CHECK(g->file_size() == bytes.size() && g->tensors().size() == 3);
  if (g->tensors().size() != 3) return;
  const cxr::GgufTensor& t = g->tensors()[2];
  const uintptr_t base = reinterpret_cast<uintptr_t>(t.data) - data_offset - t.offset;
#if defined(__linux__)
  CHECK(base % (uintptr_t{2} << 20) == 0);
#endif
  bool same = true;
  for (uint64_t i = 0; i < t.nbytes; ++i) same = same && static_cast<const uint8_t*>(t.data)[i] == pattern(2, i);
  CHECK(same);
  // The last byte of the file is mapped and readable.
  CHECK(reinterpret_cast<const uint8_t*>(base)[bytes.size() - 1] == 0xAB);
  CHECK(reinterpret_cast<const uint8_t*>(base)[small] == 0xAB);
}

TEST(gguf_version_2_accepted) {
  FileSpec s = valid_spec();
  s.version = 2;
  CHECK(open_bytes(build(s))->version() == 2);
}

TEST(gguf_empty_and_tiny_files) {
  CHECK_BAD(std::vector<uint8_t>{}, "file is empty");
  CHECK_BAD((std::vector<uint8_t>{'G', 'G', 'U', 'F', 3, 0, 0, 0}), "too small for a GGUF header");
}

TEST(gguf_bad_magic_and_versions) {
  std::vector<uint8_t> good = build(valid_spec());
  std::vector<uint8_t> b = good;
  b[0] = 'X';
  CHECK_BAD(b, "bad magic");
  FileSpec s = valid_spec();
  s.version = 1;
  CHECK_BAD(build(s), "unsupported GGUF version 1");
  s.version = 4;
  CHECK_BAD(build(s), "unsupported GGUF version 4");
  s.version = 0x03000000;
  CHECK_BAD(build(s), "big-endian GGUF files are not supported");
}

TEST(gguf_huge_counts_rejected_before_allocation) {
  FileSpec s = valid_spec();
  s.kv_count = uint64_t(1) << 62;
  CHECK_BAD(build(s), "metadata count 4611686018427387904 cannot fit");
  s = valid_spec();
  s.tensor_count_override = uint64_t(1) << 61;
  CHECK_BAD(build(s), "tensor count 2305843009213693952 cannot fit");
  s = valid_spec();
  s.tensor_count_override = UINT64_MAX - 1;
  CHECK_BAD(build(s), "tensor count");

  // A key whose length claims 2^60 bytes.
  FileSpec k;
  k.kv_count = 1;
  k.kvs.u64(uint64_t(1) << 60).u32(0);
  CHECK_BAD(build(k), "key length 1152921504606846976 exceeds");
  // A string value that is too long.
  k.kvs.b.clear();
  k.kvs.key("s", GgufType::STRING).u64(UINT64_MAX);
  CHECK_BAD(build(k), "string length 18446744073709551615 exceeds");
  // Array counts for fixed-size, string and nested elements.
  const GgufType elems[] = {GgufType::UINT64, GgufType::UINT8, GgufType::STRING, GgufType::ARRAY};
  for (GgufType e : elems) {
    k.kvs.b.clear();
    k.kvs.key("a", GgufType::ARRAY).u32(uint32_t(e)).u64(uint64_t(1) << 61).u64(0);
    CHECK_BAD(build(k), "array count 2305843009213693952");
  }
  k.kvs.b.clear();  // count * 8 would wrap to 0 without the division check
  k.kvs.key("a", GgufType::ARRAY).u32(uint32_t(GgufType::UINT64)).u64(uint64_t(1) << 61);
  CHECK_BAD(build(k), "does not fit");
}

TEST(gguf_bad_metadata_values) {
  FileSpec k;
  k.kv_count = 1;
  k.kvs.key("t", static_cast<GgufType>(13)).u32(0);
  CHECK_BAD(build(k), "metadata entry 0 't': unknown metadata value type 13");
  k.kvs.b.clear();
  k.kvs.key("a", GgufType::ARRAY).u32(99).u64(0);
  CHECK_BAD(build(k), "unknown metadata value type 99");
  k.kvs.b.clear();
  k.kvs.key("b", GgufType::BOOL).u8(2);
  CHECK_BAD(build(k), "bool value 2 is not 0 or 1");
  k.kvs.b.clear();
  k.kvs.key("b", GgufType::ARRAY).u32(uint32_t(GgufType::BOOL)).u64(3).u8(1).u8(0).u8(5);
  CHECK_BAD(build(k), "bool array element 5");

  // Nesting: 8 levels are fine, 9 are not.
  auto nested = [](int levels) {
    FileSpec f;
    f.kv_count = 1;
    f.kvs.key("n", GgufType::ARRAY);
    for (int i = 1; i < levels; ++i) f.kvs.u32(uint32_t(GgufType::ARRAY)).u64(1);
    f.kvs.u32(uint32_t(GgufType::UINT8)).u64(1).u8(42);
    return build(f);
  };
  auto g = open_bytes(nested(8));
  const cxr::GgufValue* v = g->find("n");
  for (int i = 1; i < 8 && v; ++i) v = v->items.size() == 1 ? &v->items[0] : nullptr;
  CHECK(v && v->elem_type == GgufType::UINT8 && v->count == 1 && v->raw[0] == 42);
  CHECK_BAD(nested(9), "arrays nested deeper than 8");

  // 2^16 nested arrays in all are allowed, one more is not.
  auto many = [](uint64_t n) {
    FileSpec f;
    f.kv_count = 2;
    f.kvs.key("m", GgufType::ARRAY).u32(uint32_t(GgufType::ARRAY)).u64(n - 1);
    for (uint64_t i = 0; i + 1 < n; ++i) f.kvs.u32(uint32_t(GgufType::UINT8)).u64(0);
    f.kvs.key("m2", GgufType::ARRAY).u32(uint32_t(GgufType::ARRAY)).u64(1).u32(uint32_t(GgufType::UINT8)).u64(0);
    return build(f);
  };
  CHECK(open_bytes(many(65536))->find("m")->items.size() == 65535);
  CHECK_BAD(many(65537), "metadata entry 1 'm2': more than 65536 nested arrays in the file");

  k.kvs.b.clear();
  k.kv_count = 2;
  k.kvs.key("d", GgufType::UINT8).u8(1).key("d", GgufType::UINT8).u8(2);
  CHECK_BAD(build(k), "metadata entry 1 'd': duplicate metadata key");
}

TEST(gguf_bad_alignment_values) {
  for (uint32_t a : {0u, 3u, 48u}) {
    FileSpec s = valid_spec();
    s.kvs.key("general.alignment", GgufType::UINT32).u32(a);
    ++s.kv_count;
    CHECK_BAD(build(s), ("general.alignment must be a nonzero power of two, not " + std::to_string(a)).c_str());
  }
  FileSpec s = valid_spec();
  s.kvs.key("general.alignment", GgufType::UINT64).u64(32);
  ++s.kv_count;
  CHECK_BAD(build(s), "general.alignment must be a uint32, not uint64");
}

TEST(gguf_bad_tensor_infos) {
  auto with = [](const std::function<void(FileSpec&)>& edit) {
    FileSpec s = valid_spec();
    edit(s);
    return build(s);
  };
  CHECK_BAD(with([](FileSpec& s) { s.tensors[1].offset += 16; }),
            "tensor 'blk.0.q': data offset 80 is not a multiple of the alignment 32");
  CHECK_BAD(with([](FileSpec& s) { s.data_bytes -= 1; }), "tensor 'blk.0.k': data (288 bytes at data offset");
  CHECK_BAD(with([](FileSpec& s) { s.tensors[0].offset = uint64_t(1) << 40; }), "runs past the end of the file");
  CHECK_BAD(with([](FileSpec& s) { s.tensors[0].offset = UINT64_MAX - 31; }), "runs past the end of the file");
  CHECK_BAD(with([](FileSpec& s) { s.tensors[0].ne = {1, 1, 1, 1, 1}; }), "tensor 'tok': n_dims 5 is not 1..4");
  CHECK_BAD(with([](FileSpec& s) { s.tensors[0].ne = {}; }), "n_dims 0 is not 1..4");
  CHECK_BAD(with([](FileSpec& s) { s.tensors[0].ne = {uint64_t(1) << 32, uint64_t(1) << 32}; }),
            "tensor 'tok': element count overflows");
  CHECK_BAD(with([](FileSpec& s) { s.tensors[0].ne = {uint64_t(1) << 62}; }), "tensor 'tok': byte size overflows");
  CHECK_BAD(with([](FileSpec& s) { s.tensors[0].ne = {4, uint64_t(1) << 63}; }), "dimension 1 is negative");
  CHECK_BAD(with([](FileSpec& s) { s.tensors[2].type = 3; }), "tensor 'blk.0.k': unknown tensor type id 3");
  CHECK_BAD(with([](FileSpec& s) { s.tensors[1].ne = {33, 2}; }),
            "tensor 'blk.0.q': row length 33 is not a multiple of the q8_0 block size 32");
  CHECK_BAD(with([](FileSpec& s) { s.tensors[2].name = "tok"; }), "tensor 'tok': duplicate tensor name");
  CHECK_BAD(with([](FileSpec& s) { s.tensors[2].offset = s.tensors[1].offset; }),
            "tensor 'blk.0.k' data overlaps tensor 'blk.0.q'");
  // Zero-sized tensors are allowed and overlap nothing.
  auto g = open_bytes(with([](FileSpec& s) { s.tensors[0].ne = {4, 0}; }));
  CHECK(g->tensors()[0].nbytes == 0 && g->tensors()[0].nelements() == 0);
}

TEST(gguf_missing_path_is_io_error) {
  std::string missing = temp_dir() + "/does-not-exist.gguf";
  CHECK_THROWS(GgufFile::open(missing), "does-not-exist.gguf: cannot open: No such file or directory");
  CHECK(code_of([&] { GgufFile::open(missing); }) == cxr::err::kIo);
  CHECK_THROWS(GgufFile::open(temp_dir()), "not a regular file");
}

TEST(gguf_truncation_at_every_offset_throws) {
  std::vector<uint8_t> bytes = build(valid_spec());
  TempFile f(bytes);
  int threw = 0, wrong = 0;
  for (size_t len = 0; len < bytes.size(); ++len) {
    if (truncate(f.path.c_str(), static_cast<off_t>(len)) != 0) {
      ++wrong;
      continue;
    }
    std::string code = code_of([&] { GgufFile::open(f.path); });
    if (code == cxr::err::kGguf) {
      ++threw;
    } else {
      std::fprintf(stderr, "  truncated to %zu bytes: code '%s'\n", len, code.c_str());
      ++wrong;
    }
  }
  CHECK(wrong == 0);
  CHECK(threw == static_cast<int>(bytes.size()));
}

TEST(gguf_random_bit_flips_never_crash) {
  const std::vector<uint8_t> good = build(valid_spec());
  int loaded = 0, threw = 0, bad = 0;
  for (uint32_t seed = 0; seed < 3000; ++seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> b = good;
    // Mostly the header: flips in the data section only change tensor bytes.
    size_t span = seed % 4 == 0 ? b.size() : b.size() - 512;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) b[rng() % span] ^= static_cast<uint8_t>(1u << (rng() % 8));
    std::unique_ptr<GgufFile> g;
    try {
      g = open_bytes(b);
    } catch (const EngineError& e) {
      if (e.code() == cxr::err::kGguf) ++threw;
      else ++bad;
      continue;
    }
    ++loaded;
    // A file that loads must be self-consistent; touching every byte it points
    // at lets the sanitizers see any out-of-range pointer.
    unsigned sum = 0;
    for (const cxr::GgufTensor& t : g->tensors()) {
      if (t.offset % g->alignment() || g->data_offset() + t.offset + t.nbytes > g->file_size()) ++bad;
      for (uint64_t i = 0; i < t.nbytes; ++i) sum += static_cast<const uint8_t*>(t.data)[i];
    }
    std::function<void(const cxr::GgufValue&)> walk = [&](const cxr::GgufValue& v) {
      for (char ch : v.str) sum += static_cast<uint8_t>(ch);
      for (std::string_view s : v.strs) for (char ch : s) sum += static_cast<uint8_t>(ch);
      for (const cxr::GgufValue& item : v.items) walk(item);
      if (v.raw) {
        uint64_t size = 1;
        switch (v.elem_type) {
          case GgufType::UINT16: case GgufType::INT16: size = 2; break;
          case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: size = 4; break;
          case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: size = 8; break;
          default: break;
        }
        for (uint64_t i = 0; i < v.count * size; ++i) sum += v.raw[i];
      }
    };
    for (const cxr::GgufKV& kv : g->kvs()) walk(kv.value);
    if (sum == 0xdeadbeef) std::printf("%u\n", sum);  // keeps the reads alive
  }
  std::printf("  bit flips: %d loaded, %d rejected\n", loaded, threw);
  CHECK(bad == 0);
  CHECK(loaded > 0);  // both outcomes were exercised
  CHECK(threw > 0);
}

// Under the sanitizers a read past the mapping only faults beyond the last page,
// so cut a file with a multi-page header exactly at page boundaries: reading even
// one byte too far would crash here.
TEST(gguf_truncation_at_page_boundaries_throws) {
  FileSpec s;
  s.kv_count = 1;
  s.kvs.key("tokenizer.ggml.tokens", GgufType::ARRAY).u32(uint32_t(GgufType::STRING)).u64(3000);
  for (int i = 0; i < 3000; ++i) s.kvs.str("tok" + std::to_string(i));
  std::vector<uint8_t> bytes = build(s);
  CHECK(bytes.size() > 3 * 4096);
  CHECK(open_bytes(bytes)->get_str_array("tokenizer.ggml.tokens").size() == 3000);
  long page = sysconf(_SC_PAGESIZE);
  for (size_t len = static_cast<size_t>(page); len < bytes.size(); len += static_cast<size_t>(page)) {
    TempFile f(bytes, len);
    CHECK_THROWS(GgufFile::open(f.path), "metadata entry 0 'tokenizer.ggml.tokens': ");
  }
}
