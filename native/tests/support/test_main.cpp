// test_main.cpp - runs every registered TEST, or those whose name contains argv[1].
#include <cstring>
#include <exception>

#include "support/test.h"

namespace cxrtest {
std::vector<Case>& registry() {
  static std::vector<Case> r;
  return r;
}
int g_failures = 0;
}  // namespace cxrtest

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : nullptr;
  int passed = 0, failed = 0;
  for (auto& c : cxrtest::registry()) {
    if (filter && !std::strstr(c.name, filter)) continue;
    cxrtest::g_failures = 0;
    try {
      c.fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "  uncaught exception: %s\n", e.what());
      ++cxrtest::g_failures;
    }
    if (cxrtest::g_failures == 0) {
      ++passed;
      std::printf("ok - %s\n", c.name);
    } else {
      ++failed;
      std::printf("not ok - %s\n", c.name);
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
