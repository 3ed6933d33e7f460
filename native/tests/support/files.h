// files.h - files for tests: the repository root (for fixtures), whole-file
// reads, and temp files that remove themselves.
#pragma once
#include <sys/stat.h>
#if !defined(_WIN32)
#include <unistd.h>
#endif

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrtest {

inline bool exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

// CXR_REPO_ROOT, else the nearest directory upwards holding package.json or CMakeLists.txt.
inline std::string repo_root() {
  if (const char* env = std::getenv("CXR_REPO_ROOT")) return env;
  std::string dir = ".";
  for (int i = 0; i < 12; ++i) {
    if (exists(dir + "/package.json") || exists(dir + "/CMakeLists.txt")) return dir;
    dir += "/..";
  }
  return ".";
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path + " (run from the repository or set CXR_REPO_ROOT)");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// One private directory for this process's temp files, removed (once empty) at exit.
inline std::string temp_dir() {
  static char dir[64] = "";
  if (!dir[0]) {
    std::strcpy(dir, "/tmp/cxr-test-XXXXXX");
    if (!mkdtemp(dir)) std::strcpy(dir, "/tmp");
    else std::atexit([] { rmdir(dir); });
  }
  return dir;
}

// A file in temp_dir() holding `bytes` (the first `len` of them), removed when it goes.
struct TempFile {
  std::string path;
  explicit TempFile(const std::vector<uint8_t>& bytes, size_t len = SIZE_MAX, const std::string& ext = ".gguf") {
    static int counter = 0;
    path = temp_dir() + "/f" + std::to_string(counter++) + ext;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(len < bytes.size() ? len : bytes.size()));
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() { std::remove(path.c_str()); }
};

}  // namespace cxrtest
