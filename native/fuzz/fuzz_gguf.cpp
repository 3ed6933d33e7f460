// fuzz_gguf.cpp - the GGUF reader on arbitrary bytes. GgufFile maps a path, so
// the bytes go into an in-memory file (memfd) and are opened through /proc.
// Every accessor is exercised on what parsed; the only allowed failure is an
// EngineError (a clear error naming the file).
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "format/gguf.h"
#include "text/tokenizer.h"
#include "types/error.h"

namespace {

struct MemFile {
  int fd = -1;
  std::string path;
  MemFile(const uint8_t* data, size_t size) {
    fd = memfd_create("fuzz.gguf", 0);
    if (fd < 0) std::abort();
    for (size_t done = 0; done < size;) {
      const ssize_t n = write(fd, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  ~MemFile() { close(fd); }
};

void touch(const cxr::GgufFile& f) {
  for (const auto& kv : f.kvs()) {
    const std::string key(kv.key);
    // Each getter either returns or throws EngineError for a wrong type.
    try { (void)f.get_u64(key, 0); } catch (const cxr::EngineError&) {}
    try { (void)f.get_f64(key, 0.0); } catch (const cxr::EngineError&) {}
    try { (void)f.get_str(key, ""); } catch (const cxr::EngineError&) {}
    try { (void)f.get_bool(key, false); } catch (const cxr::EngineError&) {}
    try { (void)f.get_str_array(key).size(); } catch (const cxr::EngineError&) {}
    try { (void)f.get_f32_array(key).size(); } catch (const cxr::EngineError&) {}
    try { (void)f.get_i32_array(key).size(); } catch (const cxr::EngineError&) {}
  }
  // Tensor data must lie inside the mapping: read its first and last byte.
  volatile uint8_t sink = 0;
  for (const auto& t : f.tensors()) {
    if (t.nbytes == 0) continue;
    const auto* p = static_cast<const uint8_t*>(t.data);
    sink = sink ^ p[0] ^ p[t.nbytes - 1];
    (void)f.tensor(t.name);
  }
  try {
    cxr::Tokenizer tok(f);
    (void)tok.encode("The heart is enlarged.", true, true);
  } catch (const cxr::EngineError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  MemFile mem(data, size);
  try {
    auto f = cxr::GgufFile::open(mem.path);
    touch(*f);
  } catch (const cxr::EngineError&) {
  }
  return 0;
}
