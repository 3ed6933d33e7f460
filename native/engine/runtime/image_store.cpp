// image_store.cpp - see image_store.h.
#include "runtime/image_store.h"

#include <algorithm>

#include "types/error.h"

namespace cxr {

ImageEmbedding::~ImageEmbedding() { store_->release(this); }

const float* ImageEmbedding::data() const {
  std::lock_guard<std::mutex> lock(store_->mu_);
  return data_;
}

void ImageEmbedding::to_host(float* dst) const {
  std::lock_guard<std::mutex> lock(store_->mu_);
  if (!data_ || !store_->be_)
    throw EngineError("ERR_MODEL_CLOSED", "the model that encoded this image is closed, so its embeddings are gone");
  store_->be_->to_host(dst, data_, static_cast<size_t>(rows_ * dim_));
}

std::shared_ptr<ImageStore> ImageStore::create(Backend& be, std::function<void()> wake) {
  return std::shared_ptr<ImageStore>(new ImageStore(be, std::move(wake)));
}

std::shared_ptr<ImageEmbedding> ImageStore::adopt(float* data, int64_t rows, int64_t dim, uint64_t key) {
  std::shared_ptr<ImageEmbedding> e(new ImageEmbedding(shared_from_this(), data, rows, dim, key));
  std::lock_guard<std::mutex> lock(mu_);
  if (!be_) throw EngineError("ERR_MODEL_CLOSED", "the model is closed");
  live_.push_back(e.get());
  live_bytes_ += e->bytes();
  return e;
}

void ImageStore::release(ImageEmbedding* e) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find(live_.begin(), live_.end(), e);
  if (it == live_.end()) return;  // freed by close() already
  live_.erase(it);
  live_bytes_ -= e->bytes();
  if (e->data_ && be_) {
    // One wake-up per batch of releases. Under the lock, so close() (and the
    // engine's end) cannot come between deciding to wake and waking.
    if (garbage_.empty() && wake_) wake_();
    garbage_.push_back(e->data_);
  }
  e->data_ = nullptr;
}

void ImageStore::collect() {
  std::vector<float*> g;
  Backend* be;
  {
    std::lock_guard<std::mutex> lock(mu_);
    g.swap(garbage_);
    be = be_;
  }
  if (be)
    for (float* p : g) be->free(p);
}

void ImageStore::close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!be_) return;
  for (float* p : garbage_) be_->free(p);
  garbage_.clear();
  for (ImageEmbedding* e : live_) {
    be_->free(e->data_);
    e->data_ = nullptr;
  }
  live_.clear();
  live_bytes_ = 0;
  be_ = nullptr;
  wake_ = nullptr;
}

bool ImageStore::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return be_ == nullptr;
}

size_t ImageStore::live() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_.size();
}

size_t ImageStore::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return garbage_.size();
}

size_t ImageStore::live_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_bytes_;
}

}  // namespace cxr
