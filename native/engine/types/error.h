// error.h - the one exception type the engine throws.
//
// The engine never exits or aborts the process: every failure travels up as an
// EngineError. `code` is a stable machine-readable tag (it becomes `.code` on the
// JS error); `what()` is a sentence for a human that names the file when there is one.
#pragma once
#include <stdexcept>
#include <string>

namespace cxr {

class EngineError : public std::runtime_error {
 public:
  EngineError(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// Error codes used across the engine. Kept as strings so JS can match on them.
namespace err {
inline const char* const kGguf = "ERR_GGUF";              // malformed or hostile GGUF file
inline const char* const kIo = "ERR_IO";                  // open/mmap/read failure
inline const char* const kModel = "ERR_MODEL";            // GGUF is valid but not a model we can run
inline const char* const kContext = "ERR_CONTEXT_FULL";   // prompt or generation exceeds context
inline const char* const kArgument = "ERR_INVALID_ARG";   // caller passed something impossible
inline const char* const kAborted = "ERR_ABORTED";        // generation stopped by the caller
inline const char* const kBackend = "ERR_BACKEND";        // the chosen backend cannot run here (no driver, no GPU, not built)
inline const char* const kNoMemory = "ERR_NO_MEMORY";     // a device ran out of memory
}  // namespace err

}  // namespace cxr
