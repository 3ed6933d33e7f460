// kv_cells.cpp - see kv_cells.h.
#include "models/kv_cells.h"

#include <algorithm>
#include <functional>
#include <string>

#include "types/error.h"

namespace cxr {

KvCells::KvCells(int64_t cells, int n_seq) : total_(cells), seqs_(static_cast<size_t>(n_seq)) {
  if (cells <= 0 || cells > INT32_MAX || n_seq <= 0)
    throw EngineError(err::kArgument, "KV cache of " + std::to_string(cells) + " positions for " +
                                          std::to_string(n_seq) + " sequences is not possible");
  free_.resize(static_cast<size_t>(cells));
  for (int64_t i = 0; i < cells; ++i) free_[i] = static_cast<int32_t>(cells - 1 - i);
}

bool KvCells::grow(int seq, int64_t n) {
  std::vector<int32_t>& s = seqs_[seq];
  const int64_t need = n - static_cast<int64_t>(s.size());
  if (need <= 0) return true;
  if (need > free()) return false;
  for (int64_t i = 0; i < need; ++i) {
    s.push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void KvCells::shrink(int seq, int64_t n) {
  std::vector<int32_t>& s = seqs_[seq];
  if (n >= static_cast<int64_t>(s.size())) return;
  free_.insert(free_.end(), s.begin() + std::max<int64_t>(n, 0), s.end());
  s.resize(static_cast<size_t>(std::max<int64_t>(n, 0)));
  std::sort(free_.begin(), free_.end(), std::greater<int32_t>());
}

}  // namespace cxr
