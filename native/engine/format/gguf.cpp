// gguf.cpp - maps a GGUF file and validates every byte of its header before
// anything else touches it. The layout is described in gguf.h.
#include "format/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <system_error>
#include <unordered_set>

#include "types/error.h"

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace cxr {

namespace {

constexpr uint64_t kDefaultAlignment = 32;
constexpr int kMaxArrayDepth = 8;  // arrays of arrays; real files use at most 1
// Each nested array costs ~100 bytes of GgufValue for 12 bytes of file; the cap
// keeps a hostile file from turning its size into ~8x as much memory.
constexpr uint64_t kMaxNestedArrays = uint64_t(1) << 16;

// The smallest possible encodings, used to bound counts before allocating.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;              // empty key, type, one u8
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, n_dims, ne[0], type, offset
constexpr uint64_t kMinStringBytes = 8;                  // length only
constexpr uint64_t kMinArrayBytes = 4 + 8;               // element type and count

constexpr uint64_t kMaxI64 = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// Size in bytes of a fixed-size scalar type, 0 for STRING/ARRAY/unknown.
uint64_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    default: return 0;
  }
}

bool value_type_known(uint32_t id) { return id <= static_cast<uint32_t>(GgufType::FLOAT64); }

bool is_unsigned(GgufType t) {
  return t == GgufType::UINT8 || t == GgufType::UINT16 || t == GgufType::UINT32 || t == GgufType::UINT64;
}
bool is_signed(GgufType t) {
  return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 || t == GgufType::INT64;
}

// Decoding goes byte by byte so the result is little-endian on any host and
// never depends on the alignment of the mapping.
uint64_t load_le(const uint8_t* p, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

float f32_from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

double f64_from_bits(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return true;
  *out = a * b;
  return false;
}

std::string quoted(std::string_view s) {
  std::string q = "'";
  q.append(s.data(), s.size());
  q += "'";
  return q;
}

// A bounds-checked cursor over the mapping. Every read checks the remaining
// length first; `where_` names the entry being read for error messages.
class Cursor {
 public:
  Cursor(const uint8_t* base, uint64_t size, const std::string& path)
      : base_(base), size_(size), path_(path) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  void set_where(std::string w) { where_ = std::move(w); }
  uint64_t nested_arrays_left = kMaxNestedArrays;

  [[noreturn]] void fail_at(uint64_t offset, const std::string& problem) const {
    std::string msg = path_ + ": ";
    if (!where_.empty()) msg += where_ + ": ";
    msg += problem + " (at byte offset " + std::to_string(offset) + ")";
    throw EngineError(err::kGguf, msg);
  }
  [[noreturn]] void fail(const std::string& problem) const { fail_at(pos_, problem); }

  const uint8_t* take(uint64_t n, const char* what) {
    if (n > remaining()) {
      fail("file ends inside " + std::string(what) + " (needs " + std::to_string(n) + " bytes, " +
           std::to_string(remaining()) + " left)");
    }
    const uint8_t* p = base_ + pos_;
    pos_ += n;
    return p;
  }
  uint32_t u32(const char* what) { return static_cast<uint32_t>(load_le(take(4, what), 4)); }
  uint64_t u64(const char* what) { return load_le(take(8, what), 8); }

  std::string_view str(const char* what) {
    uint64_t at = pos_;
    uint64_t len = u64(what);
    if (len > remaining()) {
      fail_at(at, std::string(what) + " length " + std::to_string(len) + " exceeds the " +
                      std::to_string(remaining()) + " bytes left in the file");
    }
    return std::string_view(reinterpret_cast<const char*>(take(len, what)), len);
  }

 private:
  const uint8_t* base_;
  uint64_t size_;
  const std::string& path_;
  uint64_t pos_ = 0;
  std::string where_;
};

GgufType read_value_type(Cursor& c, const char* what) {
  uint64_t at = c.pos();
  uint32_t id = c.u32(what);
  if (!value_type_known(id)) c.fail_at(at, "unknown metadata value type " + std::to_string(id));
  return static_cast<GgufType>(id);
}

void read_array(Cursor& c, GgufValue& v, int depth);

// Reads one value of type `v.type` (already set) at the cursor.
void read_value(Cursor& c, GgufValue& v, int depth) {
  uint64_t at = c.pos();
  switch (v.type) {
    case GgufType::STRING: v.str = c.str("string"); return;
    case GgufType::ARRAY: read_array(c, v, depth + 1); return;
    case GgufType::FLOAT32: v.num.f64 = f32_from_bits(c.u32("float32 value")); return;
    case GgufType::FLOAT64: v.num.f64 = f64_from_bits(c.u64("float64 value")); return;
    default: break;
  }
  unsigned n = static_cast<unsigned>(scalar_size(v.type));
  uint64_t bits = load_le(c.take(n, "scalar value"), n);
  if (v.type == GgufType::BOOL && bits > 1) c.fail_at(at, "bool value " + std::to_string(bits) + " is not 0 or 1");
  if (is_signed(v.type)) {
    // Sign-extend from n bytes.
    unsigned shift = 64 - 8 * n;
    v.num.i64 = static_cast<int64_t>(bits << shift) >> shift;
  } else {
    v.num.u64 = bits;
  }
}

void read_array(Cursor& c, GgufValue& v, int depth) {
  if (depth > kMaxArrayDepth) c.fail("arrays nested deeper than " + std::to_string(kMaxArrayDepth));
  v.elem_type = read_value_type(c, "array element type");
  uint64_t count_at = c.pos();
  v.count = c.u64("array count");
  auto too_many = [&](uint64_t min_bytes) {
    if (v.count > c.remaining() / min_bytes) {
      c.fail_at(count_at, "array count " + std::to_string(v.count) + " of " + gguf_type_name(v.elem_type) +
                              " does not fit in the " + std::to_string(c.remaining()) + " bytes left");
    }
  };
  if (v.elem_type == GgufType::STRING) {
    too_many(kMinStringBytes);
    v.strs.reserve(v.count);
    for (uint64_t i = 0; i < v.count; ++i) v.strs.push_back(c.str("string array element"));
  } else if (v.elem_type == GgufType::ARRAY) {
    too_many(kMinArrayBytes);
    if (v.count > c.nested_arrays_left) {
      c.fail_at(count_at, "more than " + std::to_string(kMaxNestedArrays) + " nested arrays in the file");
    }
    c.nested_arrays_left -= v.count;
    v.items.resize(v.count);
    for (GgufValue& item : v.items) {
      item.type = GgufType::ARRAY;
      read_array(c, item, depth + 1);
    }
  } else {
    uint64_t size = scalar_size(v.elem_type);
    too_many(size);
    uint64_t at = c.pos();
    v.raw = c.take(v.count * size, "array data");
    if (v.elem_type == GgufType::BOOL) {
      for (uint64_t i = 0; i < v.count; ++i) {
        if (v.raw[i] > 1) c.fail_at(at + i, "bool array element " + std::to_string(v.raw[i]) + " is not 0 or 1");
      }
    }
  }
}

std::string os_error(int code) { return std::error_code(code, std::system_category()).message(); }

[[noreturn]] void io_fail(const std::string& path, const std::string& problem) {
  throw EngineError(err::kIo, path + ": " + problem);
}

#if !defined(_WIN32)
// Maps the whole file read-only. On Linux the mapping starts on a 2 MiB
// boundary and asks for transparent huge pages: file offsets and addresses
// then agree modulo 2 MiB, so the kernel can read the file into 2 MiB page-
// cache folios and map each with one TLB entry instead of 512 (see
// host_memory.h for why decoding cares). Pages the cache already holds in
// smaller pieces stay as they are; nothing is copied either way.
void* map_huge_aligned(int fd, size_t size) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kHuge = size_t{2} << 20;
  if (size >= kHuge) {
    // Reserve room to slide to a boundary, map the file over it, free the rest.
    void* area = mmap(nullptr, size + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (area != MAP_FAILED) {
      const uintptr_t a = reinterpret_cast<uintptr_t>(area);
      const uintptr_t at = (a + kHuge - 1) / kHuge * kHuge;
      void* p = mmap(reinterpret_cast<void*>(at), size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        munmap(area, size + kHuge);
        errno = e;
        return MAP_FAILED;
      }
      const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
      const uintptr_t end = (at + size + page - 1) / page * page;
      if (at > a) munmap(area, at - a);
      if (a + size + kHuge > end) munmap(reinterpret_cast<void*>(end), a + size + kHuge - end);
      madvise(p, size, MADV_HUGEPAGE);  // a hint: refused, it is an ordinary mapping
      return p;
    }
  }
#endif
  return mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
}
#endif

// Maps `path` read-only. Returns the base pointer and size; throws on failure.
// Empty files are reported before mapping since a zero-length mapping fails.
const uint8_t* map_file(const std::string& path, uint64_t* size_out) {
#ifdef _WIN32
  int wlen = MultiByteToWideChar(CP_UTF8, 0, path.c_str(), -1, nullptr, 0);
  std::wstring wpath(wlen > 0 ? wlen : 1, L'\0');
  if (wlen <= 0 || MultiByteToWideChar(CP_UTF8, 0, path.c_str(), -1, &wpath[0], wlen) <= 0) {
    io_fail(path, "path is not valid UTF-8");
  }
  HANDLE file = CreateFileW(wpath.c_str(), GENERIC_READ, FILE_SHARE_READ, nullptr, OPEN_EXISTING,
                            FILE_ATTRIBUTE_NORMAL, nullptr);
  if (file == INVALID_HANDLE_VALUE) io_fail(path, "cannot open: " + os_error(static_cast<int>(GetLastError())));
  LARGE_INTEGER li;
  if (!GetFileSizeEx(file, &li)) {
    int e = static_cast<int>(GetLastError());
    CloseHandle(file);
    io_fail(path, "cannot get file size: " + os_error(e));
  }
  uint64_t size = static_cast<uint64_t>(li.QuadPart);
  *size_out = size;
  if (size == 0) {
    CloseHandle(file);
    return nullptr;
  }
  HANDLE mapping = CreateFileMappingW(file, nullptr, PAGE_READONLY, 0, 0, nullptr);
  if (!mapping) {
    int e = static_cast<int>(GetLastError());
    CloseHandle(file);
    io_fail(path, "cannot map: " + os_error(e));
  }
  void* p = MapViewOfFile(mapping, FILE_MAP_READ, 0, 0, 0);
  int e = static_cast<int>(GetLastError());
  // The view keeps the mapping and file alive on its own.
  CloseHandle(mapping);
  CloseHandle(file);
  if (!p) io_fail(path, "cannot map: " + os_error(e));
  return static_cast<const uint8_t*>(p);
#else
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_fail(path, "cannot open: " + os_error(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    io_fail(path, "cannot stat: " + os_error(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    io_fail(path, "not a regular file");
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  *size_out = size;
  if (size == 0) {
    ::close(fd);
    return nullptr;
  }
  if (size > std::numeric_limits<size_t>::max()) {
    ::close(fd);
    io_fail(path, "file is too large to map on this platform");
  }
  void* p = map_huge_aligned(fd, static_cast<size_t>(size));
  int e = errno;
  ::close(fd);  // the mapping stays valid without the descriptor
  if (p == MAP_FAILED) io_fail(path, "cannot map: " + os_error(e));
  return static_cast<const uint8_t*>(p);
#endif
}

void unmap_file(const uint8_t* base, uint64_t size) {
  if (!base) return;
#ifdef _WIN32
  (void)size;
  UnmapViewOfFile(base);
#else
  munmap(const_cast<uint8_t*>(base), static_cast<size_t>(size));
#endif
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8: return "uint8";
    case GgufType::INT8: return "int8";
    case GgufType::UINT16: return "uint16";
    case GgufType::INT16: return "int16";
    case GgufType::UINT32: return "uint32";
    case GgufType::INT32: return "int32";
    case GgufType::FLOAT32: return "float32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::UINT64: return "uint64";
    case GgufType::INT64: return "int64";
    case GgufType::FLOAT64: return "float64";
  }
  return "unknown";
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->base_ = map_file(path, &f->size_);
  f->parse();  // on a throw, ~GgufFile unmaps
  return f;
}

GgufFile::~GgufFile() { unmap_file(base_, size_); }

void GgufFile::parse() {
  constexpr uint64_t kHeaderBytes = 4 + 4 + 8 + 8;
  if (size_ == 0) throw EngineError(err::kGguf, path_ + ": file is empty, not a GGUF file");
  Cursor c(base_, size_, path_);
  if (size_ < kHeaderBytes) {
    c.fail_at(0, "file is " + std::to_string(size_) + " bytes, too small for a GGUF header (" +
                     std::to_string(kHeaderBytes) + " bytes)");
  }

  // 1. Header.
  if (std::memcmp(c.take(4, "magic"), "GGUF", 4) != 0) c.fail_at(0, "not a GGUF file (bad magic)");
  version_ = c.u32("version");
  if (version_ == 0x02000000u || version_ == 0x03000000u) {
    c.fail_at(4, "big-endian GGUF files are not supported");
  }
  if (version_ != 2 && version_ != 3) c.fail_at(4, "unsupported GGUF version " + std::to_string(version_));
  uint64_t tensor_count = c.u64("tensor count");
  uint64_t kv_count = c.u64("metadata count");
  // Both sections must fit in what is left before anything is allocated.
  uint64_t left = c.remaining();
  if (kv_count > left / kMinKvBytes) {
    c.fail_at(16, "metadata count " + std::to_string(kv_count) + " cannot fit in a " + std::to_string(size_) +
                      "-byte file");
  }
  if (tensor_count > left / kMinTensorInfoBytes ||
      tensor_count * kMinTensorInfoBytes > left - kv_count * kMinKvBytes) {
    c.fail_at(8, "tensor count " + std::to_string(tensor_count) + " cannot fit in a " + std::to_string(size_) +
                     "-byte file");
  }

  // 2. Metadata.
  kvs_.reserve(kv_count);
  std::unordered_set<std::string_view> seen;
  seen.reserve(kv_count);
  uint64_t align_at = 0;
  for (uint64_t i = 0; i < kv_count; ++i) {
    c.set_where("metadata entry " + std::to_string(i));
    uint64_t at = c.pos();
    std::string_view key = c.str("key");
    c.set_where("metadata entry " + std::to_string(i) + " " + quoted(key));
    if (!seen.insert(key).second) c.fail_at(at, "duplicate metadata key");
    if (key == "general.alignment") align_at = at;
    GgufKV kv;
    kv.key.assign(key.data(), key.size());
    kv.value.type = read_value_type(c, "value type");
    read_value(c, kv.value, 0);
    kvs_.push_back(std::move(kv));
  }
  c.set_where("");

  alignment_ = kDefaultAlignment;
  if (const GgufValue* a = find("general.alignment")) {
    if (a->type != GgufType::UINT32) {
      c.fail_at(align_at, std::string("general.alignment must be a uint32, not ") + gguf_type_name(a->type));
    }
    uint64_t v = a->num.u64;
    if (v == 0 || (v & (v - 1)) != 0) {
      c.fail_at(align_at, "general.alignment must be a nonzero power of two, not " + std::to_string(v));
    }
    alignment_ = v;
  }

  // 3. Tensor infos.
  tensors_.reserve(tensor_count);
  std::vector<uint64_t> info_at;
  info_at.reserve(tensor_count);
  std::unordered_set<std::string_view> names;
  names.reserve(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) {
    c.set_where("tensor info " + std::to_string(i));
    uint64_t at = c.pos();
    std::string_view name = c.str("tensor name");
    c.set_where("tensor " + quoted(name));
    if (!names.insert(name).second) c.fail_at(at, "duplicate tensor name");
    GgufTensor t;
    t.name.assign(name.data(), name.size());
    uint64_t dims_at = c.pos();
    t.n_dims = c.u32("n_dims");
    if (t.n_dims < 1 || t.n_dims > 4) c.fail_at(dims_at, "n_dims " + std::to_string(t.n_dims) + " is not 1..4");
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      uint64_t ne_at = c.pos();
      uint64_t ne = c.u64("dimension");
      if (ne > kMaxI64) c.fail_at(ne_at, "dimension " + std::to_string(d) + " is negative or too large");
      t.ne[d] = static_cast<int64_t>(ne);
    }
    uint64_t type_at = c.pos();
    uint32_t type_id = c.u32("tensor type");
    if (!dtype_known(type_id)) c.fail_at(type_at, "unknown tensor type id " + std::to_string(type_id));
    t.type = static_cast<DType>(type_id);
    t.offset = c.u64("tensor data offset");
    tensors_.push_back(std::move(t));
    info_at.push_back(at);
  }

  // 4. The data section starts at the next multiple of the alignment.
  uint64_t header_end = c.pos();
  // No overflow: header_end <= size_ and alignment_ < 2^32.
  data_offset_ = (header_end + alignment_ - 1) / alignment_ * alignment_;
  uint64_t data_size = data_offset_ <= size_ ? size_ - data_offset_ : 0;

  // 5. Shapes, sizes and data ranges.
  for (size_t i = 0; i < tensors_.size(); ++i) {
    GgufTensor& t = tensors_[i];
    c.set_where("tensor " + quoted(t.name));
    uint64_t at = info_at[i];
    uint64_t n = 1;
    for (int d = 0; d < 4; ++d) {
      if (mul_overflows(n, static_cast<uint64_t>(t.ne[d]), &n) || n > kMaxI64) {
        c.fail_at(at, "element count overflows");
      }
    }
    uint64_t block = static_cast<uint64_t>(dtype_block_size(t.type));
    uint64_t ne0 = static_cast<uint64_t>(t.ne[0]);
    if (ne0 % block != 0) {
      c.fail_at(at, "row length " + std::to_string(ne0) + " is not a multiple of the " + dtype_name(t.type) +
                        " block size " + std::to_string(block));
    }
    uint64_t rows = n == 0 ? 0 : n / ne0;
    uint64_t row_bytes = 0;
    if (mul_overflows(ne0 / block, dtype_block_bytes(t.type), &row_bytes) ||
        mul_overflows(row_bytes, rows, &t.nbytes)) {
      c.fail_at(at, "byte size overflows");
    }
    if (t.offset % alignment_ != 0) {
      c.fail_at(at, "data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                        std::to_string(alignment_));
    }
    if (t.offset > data_size || t.nbytes > data_size - t.offset) {
      c.fail_at(at, "data (" + std::to_string(t.nbytes) + " bytes at data offset " + std::to_string(t.offset) +
                        ") runs past the end of the file (" + std::to_string(size_) + " bytes, data section at " +
                        std::to_string(data_offset_) + ")");
    }
    // min(): an empty tensor in a file whose data section is empty must not
    // point past the mapping.
    t.data = base_ + std::min(data_offset_ + t.offset, size_);
  }

  // Tensors must not share bytes: a write through one would corrupt another,
  // and a hostile file could alias weights.
  std::vector<size_t> order;
  order.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (tensors_[i].nbytes > 0) order.push_back(i);
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return tensors_[a].offset != tensors_[b].offset ? tensors_[a].offset < tensors_[b].offset : a < b;
  });
  for (size_t k = 1; k < order.size(); ++k) {
    const GgufTensor& prev = tensors_[order[k - 1]];
    const GgufTensor& cur = tensors_[order[k]];
    if (cur.offset < prev.offset + prev.nbytes) {
      c.set_where("");
      c.fail_at(info_at[order[k]], "tensor " + quoted(cur.name) + " data overlaps tensor " + quoted(prev.name));
    }
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const GgufKV& kv : kvs_) {
    if (kv.key == key) return &kv.value;
  }
  return nullptr;
}

const GgufTensor* GgufFile::tensor(std::string_view name) const {
  for (const GgufTensor& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

namespace {

[[noreturn]] void model_fail(const std::string& path, std::string_view key, const std::string& problem) {
  throw EngineError(err::kModel, path + ": metadata key " + quoted(key) + " " + problem);
}

[[noreturn]] void wrong_type(const std::string& path, std::string_view key, const GgufValue& v, const char* expected) {
  std::string has = gguf_type_name(v.type);
  if (v.type == GgufType::ARRAY) has = std::string("array of ") + gguf_type_name(v.elem_type);
  model_fail(path, key, "has type " + has + ", expected " + expected);
}

uint64_t as_u64(const std::string& path, std::string_view key, const GgufValue& v) {
  if (is_unsigned(v.type)) return v.num.u64;
  if (is_signed(v.type)) {
    if (v.num.i64 < 0) model_fail(path, key, "is negative (" + std::to_string(v.num.i64) + ")");
    return static_cast<uint64_t>(v.num.i64);
  }
  wrong_type(path, key, v, "an integer");
}

double as_f64(const std::string& path, std::string_view key, const GgufValue& v) {
  if (v.type == GgufType::FLOAT32 || v.type == GgufType::FLOAT64) return v.num.f64;
  if (is_unsigned(v.type)) return static_cast<double>(v.num.u64);
  if (is_signed(v.type)) return static_cast<double>(v.num.i64);
  wrong_type(path, key, v, "a number");
}

const GgufValue& array_of(const std::string& path, std::string_view key, const GgufValue* v, GgufType elem) {
  if (!v) model_fail(path, key, "is missing");
  if (v->type != GgufType::ARRAY || v->elem_type != elem) {
    wrong_type(path, key, *v, (std::string("array of ") + gguf_type_name(elem)).c_str());
  }
  return *v;
}

}  // namespace

uint64_t GgufFile::get_u64(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) model_fail(path_, key, "is missing");
  return as_u64(path_, key, *v);
}

uint64_t GgufFile::get_u64(std::string_view key, uint64_t fallback) const {
  const GgufValue* v = find(key);
  return v ? as_u64(path_, key, *v) : fallback;
}

double GgufFile::get_f64(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) model_fail(path_, key, "is missing");
  return as_f64(path_, key, *v);
}

double GgufFile::get_f64(std::string_view key, double fallback) const {
  const GgufValue* v = find(key);
  return v ? as_f64(path_, key, *v) : fallback;
}

std::string GgufFile::get_str(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) model_fail(path_, key, "is missing");
  if (v->type != GgufType::STRING) wrong_type(path_, key, *v, "string");
  return std::string(v->str);
}

std::string GgufFile::get_str(std::string_view key, const std::string& fallback) const {
  const GgufValue* v = find(key);
  if (!v) return fallback;
  if (v->type != GgufType::STRING) wrong_type(path_, key, *v, "string");
  return std::string(v->str);
}

bool GgufFile::get_bool(std::string_view key, bool fallback) const {
  const GgufValue* v = find(key);
  if (!v) return fallback;
  if (v->type != GgufType::BOOL) wrong_type(path_, key, *v, "bool");
  return v->num.u64 != 0;
}

const std::vector<std::string_view>& GgufFile::get_str_array(std::string_view key) const {
  return array_of(path_, key, find(key), GgufType::STRING).strs;
}

std::vector<float> GgufFile::get_f32_array(std::string_view key) const {
  const GgufValue& v = array_of(path_, key, find(key), GgufType::FLOAT32);
  std::vector<float> out(v.count);  // count * 4 bytes were checked to lie in the file
  for (uint64_t i = 0; i < v.count; ++i) out[i] = f32_from_bits(static_cast<uint32_t>(load_le(v.raw + 4 * i, 4)));
  return out;
}

std::vector<int32_t> GgufFile::get_i32_array(std::string_view key) const {
  const GgufValue& v = array_of(path_, key, find(key), GgufType::INT32);
  std::vector<int32_t> out(v.count);
  for (uint64_t i = 0; i < v.count; ++i) {
    out[i] = static_cast<int32_t>(static_cast<uint32_t>(load_le(v.raw + 4 * i, 4)));
  }
  return out;
}

const GgufTensor& GgufFile::require_tensor(std::string_view name, std::initializer_list<int64_t> ne) const {
  const GgufTensor* t = tensor(name);
  if (!t) throw EngineError(err::kModel, path_ + ": tensor " + quoted(name) + " is missing");
  bool ok = ne.size() <= 4;
  size_t d = 0;
  for (int64_t want : ne) {
    if (d < 4 && t->ne[d] != want) ok = false;
    ++d;
  }
  for (; d < 4; ++d) {
    if (t->ne[d] != 1) ok = false;
  }
  if (!ok) {
    auto fmt = [](const int64_t* p, size_t n) {
      std::string s = "[";
      for (size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(p[i]);
      return s + "]";
    };
    std::vector<int64_t> want(ne);
    throw EngineError(err::kModel, path_ + ": tensor " + quoted(name) + " has shape " + fmt(t->ne, t->n_dims) +
                                       ", expected " + fmt(want.data(), want.size()));
  }
  return *t;
}

}  // namespace cxr
