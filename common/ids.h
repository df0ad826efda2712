// Object ids: a type prefix plus 8 lower-case hex digits ("lb-0a1b2c3d").
//
// Theory of operation: ids are random rather than sequential so that an id seen by one
// client (a log line, a prober that has not polled yet) is unlikely to name a different
// object later. The caller decides what "in use" means (the model counts live objects and
// every id ever issued in its state file), and the generator draws until it finds a free
// id. The random source is injected: production seeds from std::random_device, tests pass a
// fixed seed and get the same ids every run.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>

namespace fulcrum {

inline constexpr std::string_view kLbIdPrefix = "lb-";
inline constexpr std::string_view kGroupIdPrefix = "sg-";
inline constexpr std::string_view kListenerIdPrefix = "lsn-";
inline constexpr std::string_view kRuleIdPrefix = "rule-";
inline constexpr std::string_view kAclIdPrefix = "acl-";
inline constexpr std::size_t kIdHexDigits = 8;

// True when `id` is `prefix` followed by exactly 8 lower-case hex digits.
bool IsValidId(std::string_view id, std::string_view prefix);

class IdGenerator {
 public:
  explicit IdGenerator(std::uint64_t seed) : random_(seed) {}
  // Seeded from std::random_device.
  static IdGenerator FromRandomDevice();

  // A fresh id with `prefix` for which `in_use` is false. The id space (2^32 per prefix)
  // dwarfs every limit of the model, so the loop ends after a draw or two.
  std::string Next(std::string_view prefix, const std::function<bool(const std::string&)>& in_use);

 private:
  std::mt19937_64 random_;
};

}  // namespace fulcrum
