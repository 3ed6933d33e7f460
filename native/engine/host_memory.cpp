// host_memory.cpp - see host_memory.h.
#include "host_memory.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "error.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace cxr {

void* alloc_host(size_t bytes) {
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
  std::memset(p, 0, size);
  return p;
}

void free_host(void* p) { std::free(p); }

}  // namespace cxr
