// image_store.h - encoded images that stay in the engine.
//
// The vision tower's output for one image ([rows, dim] input embeddings) is
// written to backend memory once and stays there until its last holder lets
// go: the caller's handle (JS: EncodedImage) and any generation reading it.
// A generation copies its rows straight into the model's input, backend to
// backend, so the embeddings never cross to the host unless asked (to_host).
//
// Lifetimes. Every embedding belongs to its engine's store. Dropping the last
// reference does not free the memory on the spot (that may be the JS thread,
// and a GPU backend's free synchronises with work in flight): it is queued and
// freed on the engine thread (collect(), woken through `wake`). When the
// engine goes away the store is closed: everything still held is freed, and
// from then on data() is null and to_host() throws ERR_MODEL_CLOSED, so a
// handle that outlives its model can never reach freed memory.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "backend/backend.h"

namespace cxr {

class ImageStore;

class ImageEmbedding {
 public:
  ~ImageEmbedding();
  ImageEmbedding(const ImageEmbedding&) = delete;
  ImageEmbedding& operator=(const ImageEmbedding&) = delete;

  int64_t rows() const { return rows_; }
  int64_t dim() const { return dim_; }
  size_t bytes() const { return static_cast<size_t>(rows_ * dim_) * sizeof(float); }
  // Identifies the content for the KV cache: a hash of the pixels it was encoded from.
  uint64_t key() const { return key_; }
  const ImageStore* store() const { return store_.get(); }
  // Backend memory [rows, dim]; null once the store is closed. Read it only on
  // the engine thread, from a generation that holds this embedding.
  const float* data() const;
  // Copies the rows to host memory (rows * dim floats), from any thread.
  // Throws EngineError("ERR_MODEL_CLOSED") once the store is closed.
  void to_host(float* dst) const;

 private:
  friend class ImageStore;
  ImageEmbedding(std::shared_ptr<ImageStore> store, float* data, int64_t rows, int64_t dim, uint64_t key)
      : store_(std::move(store)), data_(data), rows_(rows), dim_(dim), key_(key) {}

  std::shared_ptr<ImageStore> store_;
  float* data_;  // guarded by store_->mu_
  int64_t rows_, dim_;
  uint64_t key_;
};

class ImageStore : public std::enable_shared_from_this<ImageStore> {
 public:
  // `wake` asks the engine thread to call collect() soon (thread-safe).
  static std::shared_ptr<ImageStore> create(Backend& be, std::function<void()> wake);

  // Engine thread: takes ownership of `data` (backend memory from be.alloc, [rows, dim]).
  std::shared_ptr<ImageEmbedding> adopt(float* data, int64_t rows, int64_t dim, uint64_t key);
  // Engine thread: frees what was let go since the last call.
  void collect();
  // Engine thread, when the engine goes away: frees everything; the store
  // stays as a tombstone for the embeddings still referenced.
  void close();

  bool closed() const;
  // Embeddings alive (not yet let go) and the backend memory they hold.
  size_t live() const;
  size_t live_bytes() const;
  // Buffers let go of and not yet freed (waiting for collect()).
  size_t pending() const;

 private:
  friend class ImageEmbedding;
  ImageStore(Backend& be, std::function<void()> wake) : be_(&be), wake_(std::move(wake)) {}
  void release(ImageEmbedding* e);  // from ~ImageEmbedding, any thread

  mutable std::mutex mu_;
  Backend* be_;                      // null once closed
  std::function<void()> wake_;
  std::vector<ImageEmbedding*> live_;
  std::vector<float*> garbage_;      // let go, not yet freed
  size_t live_bytes_ = 0;
};

}  // namespace cxr
