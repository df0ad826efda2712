// IP addresses, endpoints and prefixes as the control plane sees them.
//
// Theory of operation: every address that crosses the control protocol or the state file is
// text ("198.18.1.11", "[2001:db8::1]:80", "198.18.0.1/24"); these value types are the one
// place that text is parsed and printed. Parsing defers to inet_pton, so an address is
// accepted exactly when the C library accepts it (no leading zeros in IPv4 octets, no zone
// ids, no trailing junk), and printing uses inet_ntop, so output is canonical (RFC 5952 for
// IPv6). The types are plain values: totally ordered and hashable so that they can key
// std::map and std::unordered_map. Nothing here touches the packet path.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace fulcrum {

enum class AddressFamily : std::uint8_t { kIpv4 = 4, kIpv6 = 6 };

// "ipv4" or "ipv6".
std::string_view AddressFamilyName(AddressFamily family);

class IpAddress {
 public:
  // 0.0.0.0
  IpAddress() = default;

  // `host_order` is the address as a number: 198.18.0.1 is 0xc6120001.
  static IpAddress V4(std::uint32_t host_order);
  // `bytes` in network order.
  static IpAddress V6(const std::array<std::uint8_t, 16>& bytes);
  // Dotted quad or RFC 4291 text; no brackets, no zone, no surrounding spaces.
  static Result<IpAddress> Parse(std::string_view text);

  AddressFamily family() const { return family_; }
  bool is_v4() const { return family_ == AddressFamily::kIpv4; }
  bool is_v6() const { return family_ == AddressFamily::kIpv6; }
  // Host-order value of an IPv4 address; 0 for IPv6.
  std::uint32_t v4() const;
  // Network-order bytes: all 16 for IPv6, the first 4 for IPv4 (the rest are zero).
  const std::array<std::uint8_t, 16>& bytes() const { return bytes_; }
  // 4 or 16.
  std::size_t size() const { return is_v4() ? 4 : 16; }

  // 0.0.0.0 or ::
  bool IsUnspecified() const;
  bool IsLoopback() const;
  // IPv4 224/4 and 255.255.255.255, IPv6 ff00::/8: never a unicast VIP or backend.
  bool IsMulticastOrBroadcast() const;

  std::string ToString() const;

  friend auto operator<=>(const IpAddress&, const IpAddress&) = default;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;

 private:
  // family_ first so that every IPv4 address sorts before every IPv6 address.
  AddressFamily family_ = AddressFamily::kIpv4;
  std::array<std::uint8_t, 16> bytes_{};
};

struct Endpoint {
  IpAddress addr;
  std::uint16_t port = 0;

  // "198.18.1.11:80" or "[2001:db8::1]:80"; the port is 1..65535 in plain decimal.
  static Result<Endpoint> Parse(std::string_view text);
  std::string ToString() const;

  friend auto operator<=>(const Endpoint&, const Endpoint&) = default;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// An address and a prefix length. The host bits are kept as written ("198.18.0.1/24" is the
// interface address 198.18.0.1 on 198.18.0.0/24), so that one type serves for routes and
// for interface addresses.
class Prefix {
 public:
  Prefix() = default;
  // Fails when `length` exceeds the family's width.
  static Result<Prefix> Create(const IpAddress& addr, int length);
  // "198.18.0.1/24", "2001:db8::/32"; the length is plain decimal.
  static Result<Prefix> Parse(std::string_view text);

  const IpAddress& addr() const { return addr_; }
  int length() const { return length_; }
  // The address with its host bits cleared.
  IpAddress Network() const;
  // True when `addr` has the same family and the same first length() bits.
  bool Contains(const IpAddress& addr) const;
  std::string ToString() const;

  friend auto operator<=>(const Prefix&, const Prefix&) = default;
  friend bool operator==(const Prefix&, const Prefix&) = default;

 private:
  Prefix(const IpAddress& addr, int length) : addr_(addr), length_(length) {}

  IpAddress addr_;
  int length_ = 0;
};

}  // namespace fulcrum

template <>
struct std::hash<fulcrum::IpAddress> {
  std::size_t operator()(const fulcrum::IpAddress& addr) const noexcept;
};

template <>
struct std::hash<fulcrum::Endpoint> {
  std::size_t operator()(const fulcrum::Endpoint& endpoint) const noexcept;
};

template <>
struct std::hash<fulcrum::Prefix> {
  std::size_t operator()(const fulcrum::Prefix& prefix) const noexcept;
};
