#include "common/ids.h"

#include <fmt/format.h>

namespace fulcrum {

bool IsValidId(std::string_view id, std::string_view prefix) {
  if (id.size() != prefix.size() + kIdHexDigits || id.substr(0, prefix.size()) != prefix) {
    return false;
  }
  for (char c : id.substr(prefix.size())) {
    const bool digit = c >= '0' && c <= '9';
    const bool lower_hex = c >= 'a' && c <= 'f';
    if (!digit && !lower_hex) {
      return false;
    }
  }
  return true;
}

IdGenerator IdGenerator::FromRandomDevice() {
  std::random_device device;
  const std::uint64_t seed = (std::uint64_t{device()} << 32) ^ device();
  return IdGenerator(seed);
}

std::string IdGenerator::Next(std::string_view prefix,
                              const std::function<bool(const std::string&)>& in_use) {
  while (true) {
    const auto value = static_cast<std::uint32_t>(random_() >> 32);
    std::string id = fmt::format("{}{:08x}", prefix, value);
    if (!in_use(id)) {
      return id;
    }
  }
}

}  // namespace fulcrum
