#include "common/net_addr.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>
#include <optional>

namespace fulcrum {
namespace {

// Longest text inet_pton can accept (an IPv6 address with an embedded IPv4 tail).
constexpr std::size_t kMaxAddressText = INET6_ADDRSTRLEN - 1;

// Parses plain decimal without sign, leading zeros or surrounding text.
std::optional<std::uint32_t> ParseDecimal(std::string_view text, std::uint32_t max) {
  if (text.empty() || text.size() > 10 || (text.size() > 1 && text[0] == '0')) {
    return std::nullopt;
  }
  std::uint32_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value > max) {
    return std::nullopt;
  }
  return value;
}

std::size_t HashBytes(const IpAddress& addr, std::size_t seed) {
  // FNV-1a over the family and the bytes: cheap and good enough for control-plane maps.
  std::size_t hash = seed ^ 1469598103934665603ull;
  hash = (hash ^ static_cast<std::size_t>(addr.family())) * 1099511628211ull;
  for (std::uint8_t byte : addr.bytes()) {
    hash = (hash ^ byte) * 1099511628211ull;
  }
  return hash;
}

}  // namespace

std::string_view AddressFamilyName(AddressFamily family) {
  return family == AddressFamily::kIpv4 ? "ipv4" : "ipv6";
}

IpAddress IpAddress::V4(std::uint32_t host_order) {
  IpAddress addr;
  addr.family_ = AddressFamily::kIpv4;
  addr.bytes_[0] = static_cast<std::uint8_t>(host_order >> 24);
  addr.bytes_[1] = static_cast<std::uint8_t>(host_order >> 16);
  addr.bytes_[2] = static_cast<std::uint8_t>(host_order >> 8);
  addr.bytes_[3] = static_cast<std::uint8_t>(host_order);
  return addr;
}

IpAddress IpAddress::V6(const std::array<std::uint8_t, 16>& bytes) {
  IpAddress addr;
  addr.family_ = AddressFamily::kIpv6;
  addr.bytes_ = bytes;
  return addr;
}

Result<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.empty()) {
    return Error(ErrorCode::kInvalidParameter, "an empty string is not an IP address");
  }
  if (text.size() > kMaxAddressText || text.find('\0') != std::string_view::npos) {
    return Error(ErrorCode::kInvalidParameter, "'{}' is not an IP address", text.substr(0, 64));
  }
  const std::string terminated(text);
  std::array<std::uint8_t, 16> bytes{};
  if (text.find(':') == std::string_view::npos) {
    if (inet_pton(AF_INET, terminated.c_str(), bytes.data()) == 1) {
      IpAddress addr;
      std::memcpy(addr.bytes_.data(), bytes.data(), 4);
      return addr;
    }
    return Error(ErrorCode::kInvalidParameter, "'{}' is not an IPv4 address (dotted quad)", text);
  }
  if (inet_pton(AF_INET6, terminated.c_str(), bytes.data()) == 1) {
    return V6(bytes);
  }
  return Error(ErrorCode::kInvalidParameter, "'{}' is not an IPv6 address", text);
}

std::uint32_t IpAddress::v4() const {
  if (!is_v4()) {
    return 0;
  }
  return (std::uint32_t{bytes_[0]} << 24) | (std::uint32_t{bytes_[1]} << 16) |
         (std::uint32_t{bytes_[2]} << 8) | std::uint32_t{bytes_[3]};
}

bool IpAddress::IsUnspecified() const { return bytes_ == std::array<std::uint8_t, 16>{}; }

bool IpAddress::IsLoopback() const {
  if (is_v4()) {
    return bytes_[0] == 127;
  }
  std::array<std::uint8_t, 16> loopback{};
  loopback[15] = 1;
  return bytes_ == loopback;
}

bool IpAddress::IsMulticastOrBroadcast() const {
  if (is_v4()) {
    return (bytes_[0] & 0xf0) == 0xe0 || v4() == 0xffffffffu;
  }
  return bytes_[0] == 0xff;
}

std::string IpAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes_.data(), text, sizeof(text));
  return text;
}

Result<Endpoint> Endpoint::Parse(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Error(ErrorCode::kInvalidParameter, "'{}' is not an endpoint: expected [IPV6]:PORT",
                   text.substr(0, 64));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return Error(ErrorCode::kInvalidParameter, "'{}' is not an endpoint: expected ADDR:PORT",
                   text.substr(0, 64));
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Error(ErrorCode::kInvalidParameter,
                   "'{}' is not an endpoint: write an IPv6 endpoint as [ADDR]:PORT",
                   text.substr(0, 64));
    }
  }
  Result<IpAddress> addr = IpAddress::Parse(host);
  if (!addr.ok()) {
    return Error(ErrorCode::kInvalidParameter, "'{}' is not an endpoint: {}", text.substr(0, 64),
                 addr.status().message());
  }
  if (text.front() == '[' && addr->is_v4()) {
    return Error(ErrorCode::kInvalidParameter,
                 "'{}' is not an endpoint: brackets are for IPv6 addresses only", text);
  }
  std::optional<std::uint32_t> number = ParseDecimal(port, 65535);
  if (!number || *number == 0) {
    return Error(ErrorCode::kInvalidParameter,
                 "'{}' is not an endpoint: the port must be a number in 1..65535",
                 text.substr(0, 64));
  }
  return Endpoint{*addr, static_cast<std::uint16_t>(*number)};
}

std::string Endpoint::ToString() const {
  if (addr.is_v6()) {
    return fmt::format("[{}]:{}", addr.ToString(), port);
  }
  return fmt::format("{}:{}", addr.ToString(), port);
}

Result<Prefix> Prefix::Create(const IpAddress& addr, int length) {
  const int width = addr.is_v4() ? 32 : 128;
  if (length < 0 || length > width) {
    return Error(ErrorCode::kInvalidParameter, "prefix length {} is out of range 0..{} for {}",
                 length, width, addr.ToString());
  }
  return Prefix(addr, length);
}

Result<Prefix> Prefix::Parse(std::string_view text) {
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return Error(ErrorCode::kInvalidParameter, "'{}' is not a prefix: expected ADDR/LENGTH",
                 text.substr(0, 64));
  }
  Result<IpAddress> addr = IpAddress::Parse(text.substr(0, slash));
  if (!addr.ok()) {
    return Error(ErrorCode::kInvalidParameter, "'{}' is not a prefix: {}", text.substr(0, 64),
                 addr.status().message());
  }
  const std::uint32_t width = addr->is_v4() ? 32 : 128;
  std::optional<std::uint32_t> length = ParseDecimal(text.substr(slash + 1), width);
  if (!length) {
    return Error(ErrorCode::kInvalidParameter,
                 "'{}' is not a prefix: the length must be a number in 0..{}", text.substr(0, 64),
                 width);
  }
  return Prefix(*addr, static_cast<int>(*length));
}

IpAddress Prefix::Network() const {
  std::array<std::uint8_t, 16> bytes = addr_.bytes();
  const int width = static_cast<int>(addr_.size()) * 8;
  for (int bit = length_; bit < width; ++bit) {
    bytes[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
  }
  if (addr_.is_v4()) {
    return IpAddress::V4((std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
                         (std::uint32_t{bytes[2]} << 8) | std::uint32_t{bytes[3]});
  }
  return IpAddress::V6(bytes);
}

bool Prefix::Contains(const IpAddress& addr) const {
  if (addr.family() != addr_.family()) {
    return false;
  }
  Result<Prefix> other = Prefix::Create(addr, length_);
  return other.ok() && other->Network() == Network();
}

std::string Prefix::ToString() const { return fmt::format("{}/{}", addr_.ToString(), length_); }

}  // namespace fulcrum

std::size_t std::hash<fulcrum::IpAddress>::operator()(
    const fulcrum::IpAddress& addr) const noexcept {
  return fulcrum::HashBytes(addr, 0);
}

std::size_t std::hash<fulcrum::Endpoint>::operator()(
    const fulcrum::Endpoint& endpoint) const noexcept {
  return fulcrum::HashBytes(endpoint.addr, endpoint.port);
}

std::size_t std::hash<fulcrum::Prefix>::operator()(const fulcrum::Prefix& prefix) const noexcept {
  return fulcrum::HashBytes(prefix.addr(), static_cast<std::size_t>(prefix.length()) << 32);
}
