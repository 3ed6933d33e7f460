// weights.h - weights for backend tests, made the way a model makes them:
// through Backend::upload from a tensor view.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace cxrtest {

// A Vector weight [rows, v.size() / rows] holding v.
inline std::unique_ptr<cxr::Weight> vector_weight(cxr::Backend& be, const std::vector<float>& v, int64_t rows = 1,
                                                  const std::string& name = "test.vector") {
  cxr::TensorView t;
  t.name = name;
  t.type = cxr::DType::F32;
  t.rows = rows;
  t.cols = static_cast<int64_t>(v.size()) / rows;
  t.data = v.data();
  return be.upload(t, cxr::WeightUse::Vector);
}

// A [rows, cols] matrix of type `type` whose bytes are at `data` (which must
// outlive the weight: a backend may keep pointing at it).
inline std::unique_ptr<cxr::Weight> matrix_weight(cxr::Backend& be, cxr::DType type, int64_t rows, int64_t cols,
                                                  const void* data, cxr::WeightUse use,
                                                  const std::string& name = "test.matrix") {
  cxr::TensorView t;
  t.name = name;
  t.type = type;
  t.rows = rows;
  t.cols = cols;
  t.data = data;
  return be.upload(t, use);
}

}  // namespace cxrtest
