// test_image_store.cpp - lifetimes of encoded images kept in the engine
// (runtime/image_store.h), on the CPU backend: memory let go of from
// another thread is freed only by collect() (the engine thread), close() frees
// everything still held, and a handle that outlives its store reads nothing.
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "runtime/image_store.h"
#include "support/test.h"
#include "types/error.h"

namespace {

float* filled(cxr::Backend& be, size_t n, float v) {
  std::vector<float> h(n, v);
  float* p = be.alloc(n);
  be.from_host(p, h.data(), n);
  return p;
}

}  // namespace

TEST(image_store_frees_on_the_engine_thread_after_the_last_holder) {
  auto cpu = cxr::make_cpu_backend(1);
  cxr::Backend& be = *cpu;
  std::atomic<int> wakes{0};
  auto store = cxr::ImageStore::create(be, [&] { ++wakes; });
  auto a = store->adopt(filled(be, 12, 1.5f), 3, 4, 42);
  std::shared_ptr<const cxr::ImageEmbedding> reader = a;  // a generation holding it
  CHECK(store->live() == 1);
  CHECK(store->live_bytes() == 12 * sizeof(float));
  std::vector<float> out(12);
  a->to_host(out.data());
  CHECK(out[0] == 1.5f && out[11] == 1.5f);
  CHECK(a->key() == 42);

  a.reset();  // the JS handle goes; the generation still reads
  CHECK(store->live() == 1);
  CHECK(reader->data() != nullptr);
  // The last holder lets go on another thread: nothing is freed there.
  std::thread([&] { reader.reset(); }).join();
  CHECK(store->live() == 0);
  CHECK(wakes == 1);
  CHECK(store->pending() == 1);
  store->collect();
  CHECK(store->pending() == 0);
  // Two more let go before the engine wakes: one wake-up for both.
  auto c = store->adopt(filled(be, 4, 0), 1, 4, 7);
  auto d = store->adopt(filled(be, 4, 0), 1, 4, 8);
  c.reset();
  d.reset();
  CHECK(wakes == 2);
  CHECK(store->pending() == 2);
  store->close();
  CHECK(store->pending() == 0);
}

TEST(image_store_close_frees_everything_and_handles_read_nothing) {
  auto cpu = cxr::make_cpu_backend(1);
  cxr::Backend& be = *cpu;
  auto store = cxr::ImageStore::create(be, [] {});
  auto a = store->adopt(filled(be, 8, 2.0f), 2, 4, 1);
  auto b = store->adopt(filled(be, 8, 3.0f), 2, 4, 2);
  b.reset();  // let go, not yet collected
  CHECK(store->pending() == 1);
  store->close();
  CHECK(store->pending() == 0);
  CHECK(store->closed());
  CHECK(store->live() == 0);
  CHECK(a->data() == nullptr);
  std::vector<float> out(8);
  CHECK_THROWS(a->to_host(out.data()), "closed");
  float* late = be.alloc(8);
  CHECK_THROWS(store->adopt(late, 2, 4, 3), "closed");
  be.free(late);  // still the caller's, as in Engine::encode_image
  a.reset();      // after the close: nothing left to free, nothing queued
  CHECK(store->pending() == 0);
  store->collect();
}
