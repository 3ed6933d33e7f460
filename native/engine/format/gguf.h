// gguf.h - a validating, mmap-based reader for GGUF v3 (and v2) files.
//
// File layout (all little-endian):
//   1. magic "GGUF" (4 bytes), version u32, tensor_count u64, kv_count u64
//   2. kv_count key/value pairs: key (string), value type u32, value
//        string = u64 length + bytes (no terminator)
//        array  = element type u32 + u64 count + elements (arrays of arrays allowed)
//   3. tensor_count tensor infos: name (string), n_dims u32, ne[n_dims] u64,
//        type u32, offset u64 (relative to the data section, aligned)
//   4. padding up to a multiple of `general.alignment` (default 32)
//   5. the data section: each tensor at data_offset + its offset
//
// Every count, length, dimension product and offset is checked against the file
// size with overflow-safe arithmetic before it is used. Anything wrong throws
// EngineError(err::kGguf, "<path>: <problem>"); nothing is read out of bounds and
// no allocation is sized by an unchecked number from the file.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "types/dtype.h"

namespace cxr {

enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5,
  FLOAT32 = 6, BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

const char* gguf_type_name(GgufType t);

// A metadata value. Scalars are decoded; strings and arrays point into the mapping.
struct GgufValue {
  GgufType type = GgufType::UINT8;
  union {
    uint64_t u64;  // all unsigned integers and bool (0/1)
    int64_t i64;   // all signed integers
    double f64;    // FLOAT32 and FLOAT64
  } num{0};
  std::string_view str;                 // STRING
  GgufType elem_type = GgufType::UINT8;  // ARRAY: element type
  uint64_t count = 0;                   // ARRAY: element count
  const uint8_t* raw = nullptr;         // ARRAY of fixed-size scalars: first element
  std::vector<std::string_view> strs;   // ARRAY of STRING
  std::vector<GgufValue> items;         // ARRAY of ARRAY (nested)
};

struct GgufKV {
  std::string key;
  GgufValue value;
};

struct GgufTensor {
  std::string name;
  uint32_t n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension, as in ggml
  DType type = DType::F32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;
  const void* data = nullptr;  // points into the mapping
  int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class GgufFile {
 public:
  // Maps and validates the file. Throws EngineError naming `path` on any problem.
  static std::unique_ptr<GgufFile> open(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t file_size() const { return size_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }

  const std::vector<GgufKV>& kvs() const { return kvs_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }

  // nullptr if absent.
  const GgufValue* find(std::string_view key) const;
  const GgufTensor* tensor(std::string_view name) const;

  // Typed getters. The `required` forms throw EngineError(kModel) naming the file
  // and key when the key is missing or has an incompatible type; the forms with a
  // fallback return it when the key is missing (and still throw on a wrong type).
  // Integer getters accept any integer type whose value fits.
  uint64_t get_u64(std::string_view key) const;
  uint64_t get_u64(std::string_view key, uint64_t fallback) const;
  double get_f64(std::string_view key) const;  // accepts FLOAT32/FLOAT64 and integers
  double get_f64(std::string_view key, double fallback) const;
  std::string get_str(std::string_view key) const;
  std::string get_str(std::string_view key, const std::string& fallback) const;
  bool get_bool(std::string_view key, bool fallback) const;

  // Array accessors. Throw EngineError(kModel) if the key is missing or not an
  // array of the expected element type.
  const std::vector<std::string_view>& get_str_array(std::string_view key) const;
  std::vector<float> get_f32_array(std::string_view key) const;
  std::vector<int32_t> get_i32_array(std::string_view key) const;

  // The tensor `name`, checked to have exactly the given shape (ne order, trailing
  // 1s may be omitted). Throws EngineError(kModel) naming the file and tensor.
  const GgufTensor& require_tensor(std::string_view name, std::initializer_list<int64_t> ne) const;

 private:
  GgufFile() = default;
  void parse();

  std::string path_;
  int fd_ = -1;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<GgufKV> kvs_;
  std::vector<GgufTensor> tensors_;
};

}  // namespace cxr
