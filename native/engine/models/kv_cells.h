// kv_cells.h - which rows ("cells") of a shared KV cache each sequence holds.
//
// The backend owns the cache memory (KvCache); this is only the bookkeeping,
// on the host: a free list and, per sequence, the cell of each of its
// positions. A sequence grows as it is fed and gives its cells back when it is
// shortened or dropped, so N sequences share one allocation and a long one can
// use what short ones leave free. Cells are handed out lowest first, so a busy
// cache stays compact (and the untouched end of it costs no memory).
#pragma once
#include <cstdint>
#include <vector>

namespace cxr {

class KvCells {
 public:
  KvCells(int64_t cells, int n_seq);

  int64_t cells() const { return total_; }
  int n_seq() const { return static_cast<int>(seqs_.size()); }
  int64_t free() const { return static_cast<int64_t>(free_.size()); }
  // Positions of `seq` that have a cell (0 .. held).
  int64_t held(int seq) const { return static_cast<int64_t>(seqs_[seq].size()); }
  // Gives `seq` cells for positions [0, n). False (and nothing changes) when
  // fewer than n - held(seq) cells are free.
  bool grow(int seq, int64_t n);
  // Keeps positions [0, n) of `seq`; the rest of its cells become free.
  void shrink(int seq, int64_t n);
  // The cell of each position of `seq`, held(seq) entries.
  const int32_t* table(int seq) const { return seqs_[seq].data(); }

 private:
  int64_t total_;
  std::vector<int32_t> free_;  // descending, so back() is the lowest free cell
  std::vector<std::vector<int32_t>> seqs_;
};

}  // namespace cxr
