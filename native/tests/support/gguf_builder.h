// gguf_builder.h - writes GGUF files byte by byte, so tests can make any file,
// valid or hostile, without a writer that could share the reader's mistakes.
//
// Bytes appends little-endian pieces; GgufBuilder holds keys and tensors that
// a test edits before bytes() lays them out (version 3, alignment 32).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "types/dtype.h"

namespace cxrtest {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Little-endian byte builder for GGUF pieces.
struct Bytes {
  std::vector<uint8_t> b;
  Bytes& le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  Bytes& u8(uint8_t v) { return le(v, 1); }
  Bytes& u16(uint16_t v) { return le(v, 2); }
  Bytes& u32(uint32_t v) { return le(v, 4); }
  Bytes& u64(uint64_t v) { return le(v, 8); }
  Bytes& f32(float f) { return u32(f32_bits(f)); }
  Bytes& f64(double d) {
    uint64_t u;
    std::memcpy(&u, &d, 8);
    return u64(u);
  }
  Bytes& str(const std::string& s) {
    u64(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& raw(const Bytes& o) { return raw(o.b); }
  Bytes& raw(const std::vector<uint8_t>& o) {
    b.insert(b.end(), o.begin(), o.end());
    return *this;
  }
  Bytes& key(const std::string& k, cxr::GgufType t) { return str(k).u32(static_cast<uint32_t>(t)); }
  Bytes& pad(size_t alignment) {
    while (b.size() % alignment) b.push_back(0);
    return *this;
  }
};

// A whole file as lists of keys and tensors.
struct GgufBuilder {
  struct Kv {
    std::string key;
    cxr::GgufType type;
    std::vector<uint8_t> payload;  // the encoded value, without key and type
  };
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    std::vector<float> data;        // F32 data, used when `raw` is empty
    cxr::DType type = cxr::DType::F32;
    std::vector<uint8_t> raw;       // data already in `type`
  };
  std::vector<Kv> kvs;
  std::vector<Tensor> tensors;

  void set(const std::string& k, cxr::GgufType t, const std::vector<uint8_t>& p) {
    remove_key(k);
    kvs.push_back({k, t, p});
  }
  void set_u32(const std::string& k, uint32_t v) { set(k, cxr::GgufType::UINT32, Bytes().u32(v).b); }
  void set_f32(const std::string& k, float v) { set(k, cxr::GgufType::FLOAT32, Bytes().f32(v).b); }
  void set_bool(const std::string& k, bool v) { set(k, cxr::GgufType::BOOL, {static_cast<uint8_t>(v)}); }
  void set_str(const std::string& k, const std::string& v) { set(k, cxr::GgufType::STRING, Bytes().str(v).b); }
  void set_f32_array(const std::string& k, const std::vector<float>& v) {
    Bytes p;
    p.u32(static_cast<uint32_t>(cxr::GgufType::FLOAT32)).u64(v.size());
    for (float f : v) p.f32(f);
    set(k, cxr::GgufType::ARRAY, p.b);
  }
  void remove_key(const std::string& k) {
    for (size_t i = 0; i < kvs.size(); ++i)
      if (kvs[i].key == k) kvs.erase(kvs.begin() + static_cast<long>(i));
  }
  Tensor* tensor(const std::string& name) {
    for (Tensor& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  // An F32 tensor filled with `value`.
  void add(const std::string& name, std::vector<uint64_t> ne, float value) {
    uint64_t n = 1;
    for (uint64_t d : ne) n *= d;
    tensors.push_back({name, std::move(ne), std::vector<float>(n, value), cxr::DType::F32, {}});
  }
  // A tensor of any type from its encoded bytes.
  void add_raw(const std::string& name, std::vector<uint64_t> ne, cxr::DType type, std::vector<uint8_t> raw) {
    tensors.push_back({name, std::move(ne), {}, type, std::move(raw)});
  }
  void remove_tensor(const std::string& name) {
    for (size_t i = 0; i < tensors.size(); ++i)
      if (tensors[i].name == name) tensors.erase(tensors.begin() + static_cast<long>(i));
  }

  std::vector<uint8_t> bytes() const {
    Bytes f;
    f.b = {'G', 'G', 'U', 'F'};
    f.u32(3).u64(tensors.size()).u64(kvs.size());
    for (const Kv& kv : kvs) f.str(kv.key).u32(static_cast<uint32_t>(kv.type)).raw(kv.payload);
    uint64_t offset = 0;
    for (const Tensor& t : tensors) {
      f.str(t.name).u32(static_cast<uint32_t>(t.ne.size()));
      for (uint64_t d : t.ne) f.u64(d);
      f.u32(static_cast<uint32_t>(t.type)).u64(offset);
      offset += (data_bytes(t) + 31) / 32 * 32;
    }
    f.pad(32);
    for (const Tensor& t : tensors) {
      if (t.raw.empty())
        for (float x : t.data) f.f32(x);
      else
        f.raw(t.raw);
      f.pad(32);
    }
    return f.b;
  }

 private:
  static size_t data_bytes(const Tensor& t) { return t.raw.empty() ? t.data.size() * 4 : t.raw.size(); }
};

}  // namespace cxrtest
