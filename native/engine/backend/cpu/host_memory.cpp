// host_memory.cpp - see host_memory.h.
#include "backend/cpu/host_memory.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "types/error.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace cxr {

void* alloc_host(size_t bytes, bool zero) {
  constexpr size_t kHugePage = size_t{2} << 20;
  const bool huge = bytes >= kHugePage;
  const size_t align = huge ? kHugePage : 64;
  const size_t size = (std::max<size_t>(bytes, 1) + align - 1) / align * align;
  void* p = std::aligned_alloc(align, size);
  if (!p) throw EngineError(err::kArgument, "out of memory allocating " + std::to_string(bytes) + " bytes");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  // Before the first touch, so the pages are huge from the start. A refusal
  // (THP switched off) leaves ordinary pages, which is only slower.
  if (huge) madvise(p, size, MADV_HUGEPAGE);
#endif
  if (zero) std::memset(p, 0, size);
  return p;
}

void free_host(void* p) { std::free(p); }

void release_mapped(const void* p, size_t bytes) {
#if defined(__linux__)
  constexpr uintptr_t kPage = 4096;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kPage - 1) & ~(kPage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kPage - 1);
  // Only whole pages inside the range: a page shared with a neighbouring
  // tensor stays. Advice, so a failure changes nothing but memory use.
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace cxr
