// The error type kernels and the runtime throw; the bindings turn it into a JavaScript Error with the same message.
#pragma once
#include <stdexcept>
#include <string>

namespace mae {

struct Error : std::runtime_error {
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace mae
