// test.h - the smallest test runner that does the job: TEST() registers a
// function, CHECK*() record failures without stopping the test, and main()
// (test_main.cpp) ends with "N passed, N failed" like the rest of the project.
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace cxrtest {

struct Case {
  const char* name;
  std::function<void()> fn;
};
std::vector<Case>& registry();
extern int g_failures;  // failures in the running test

struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

}  // namespace cxrtest

#define CXR_CAT2(a, b) a##b
#define CXR_CAT(a, b) CXR_CAT2(a, b)
#define TEST(name)                                                              \
  static void CXR_CAT(test_, name)();                                           \
  static cxrtest::Registrar CXR_CAT(reg_, name)(#name, CXR_CAT(test_, name));   \
  static void CXR_CAT(test_, name)()

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++cxrtest::g_failures;                                                     \
    }                                                                            \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                    \
  do {                                                                           \
    double _a = (a), _b = (b), _t = (tol);                                       \
    if (!(std::fabs(_a - _b) <= _t)) {                                           \
      std::fprintf(stderr, "  %s:%d: |%s - %s| = |%g - %g| > %g\n", __FILE__, __LINE__, \
                   #a, #b, _a, _b, _t);                                          \
      ++cxrtest::g_failures;                                                     \
    }                                                                            \
  } while (0)

// Runs `expr` and checks that it throws cxr::EngineError whose message contains `substr`.
#define CHECK_THROWS(expr, substr)                                               \
  do {                                                                           \
    bool _threw = false;                                                         \
    try { expr; } catch (const cxr::EngineError& _e) {                           \
      _threw = true;                                                             \
      if (std::string(_e.what()).find(substr) == std::string::npos) {            \
        std::fprintf(stderr, "  %s:%d: error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, \
                     _e.what(), substr);                                         \
        ++cxrtest::g_failures;                                                   \
      }                                                                          \
    }                                                                            \
    if (!_threw) {                                                               \
      std::fprintf(stderr, "  %s:%d: %s did not throw\n", __FILE__, __LINE__, #expr); \
      ++cxrtest::g_failures;                                                     \
    }                                                                            \
  } while (0)
