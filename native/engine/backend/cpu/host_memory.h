// host_memory.h - large host buffers, on huge pages where the OS has them.
//
// Decoding streams every weight and the whole KV cache once per token. With
// 4 KiB pages that is a TLB miss every 4 KiB, and in a virtual machine each
// miss walks two page tables; the hardware prefetchers also stop at every
// page edge. Measured on a 2-core EPYC guest: a read loop over 4 KiB pages ran
// at ~31 GB/s, over 2 MiB transparent huge pages at ~55 GB/s. The weights get
// huge pages through their mapping (gguf.cpp, map_huge_aligned); buffers the
// engine allocates itself, the KV cache above all, get them here.
#pragma once
#include <cstddef>

namespace cxr {

// A buffer of `bytes`, zeroed unless zero is false, 64-byte aligned; from
// 2 MiB up it is 2 MiB aligned and asks for transparent huge pages (Linux).
// Free with free_host(). Throws EngineError(kArgument) when memory runs out.
void* alloc_host(size_t bytes, bool zero = true);
void free_host(void* p);

// Says that [p, p + bytes) of a read-only file mapping will not be read
// again for a while: its whole pages leave the process's resident set (the
// OS page cache keeps the file; a later read maps them back). Used once a
// weight has been repacked into a buffer of its own (Linux; elsewhere a no-op).
void release_mapped(const void* p, size_t bytes);

}  // namespace cxr
