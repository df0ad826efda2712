// The identity of a flow as a packet arrives: its 5-tuple in host byte order, one key type per
// address family.
//
// The connection table indexes every connection under two keys, one per direction
// (nat/conn_table.h), so that a packet's own 5-tuple finds its connection without knowing
// which side it came from. FlowKey (IPv4) is fixed at 16 bytes and FlowKey6 at 40, with zeroed
// padding, so that a key hashes and compares as whole 64-bit words (Words()). IPv6 has its own
// key type rather than a wider common one, which would double the entry size for the IPv4
// majority.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace fulcrum::nat {

struct FlowKey {
  std::uint32_t src_ip = 0;
  std::uint32_t dst_ip = 0;
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  std::uint8_t proto = 0;
  std::uint8_t pad[3] = {};  // always zero: part of the hashed and compared bytes

  // The key of a packet travelling the other way.
  constexpr FlowKey Reversed() const { return FlowKey{dst_ip, src_ip, dst_port, src_port, proto}; }

  friend bool operator==(const FlowKey& a, const FlowKey& b) {
    std::uint64_t a0, a1, b0, b1;
    std::memcpy(&a0, &a, 8);
    std::memcpy(&a1, reinterpret_cast<const char*>(&a) + 8, 8);
    std::memcpy(&b0, &b, 8);
    std::memcpy(&b1, reinterpret_cast<const char*>(&b) + 8, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
  }
};
static_assert(sizeof(FlowKey) == 16);

// An IPv6 address in host order, as two 64-bit halves (IPv4 addresses are host-order uint32).
struct Ip6 {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
  friend auto operator<=>(const Ip6&, const Ip6&) = default;
  friend bool operator==(const Ip6&, const Ip6&) = default;
};

struct FlowKey6 {
  Ip6 src_ip;
  Ip6 dst_ip;
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  std::uint8_t proto = 0;
  std::uint8_t pad[3] = {};  // always zero: part of the hashed and compared bytes

  constexpr FlowKey6 Reversed() const {
    return FlowKey6{dst_ip, src_ip, dst_port, src_port, proto};
  }

  friend bool operator==(const FlowKey6& a, const FlowKey6& b) {
    std::uint64_t diff = 0;
    for (std::size_t i = 0; i < 5; ++i) {
      std::uint64_t x, y;
      std::memcpy(&x, reinterpret_cast<const char*>(&a) + 8 * i, 8);
      std::memcpy(&y, reinterpret_cast<const char*>(&b) + 8 * i, 8);
      diff |= x ^ y;
    }
    return diff == 0;
  }
};
static_assert(sizeof(FlowKey6) == 40);

// A key as the 64-bit words it hashes as.
inline std::array<std::uint64_t, 2> Words(const FlowKey& key) {
  std::array<std::uint64_t, 2> w;
  std::memcpy(w.data(), &key, sizeof(key));
  return w;
}
inline std::array<std::uint64_t, 5> Words(const FlowKey6& key) {
  std::array<std::uint64_t, 5> w;
  std::memcpy(w.data(), &key, sizeof(key));
  return w;
}

// Which side of a connection a packet comes from.
enum class FlowDir : std::uint8_t { kFromClient = 0, kFromBackend = 1 };

// An IPv4 address and port in host byte order.
struct Endpoint4 {
  std::uint32_t ip = 0;
  std::uint16_t port = 0;
  friend bool operator==(const Endpoint4&, const Endpoint4&) = default;
};

inline constexpr Endpoint4 SrcOf(const FlowKey& key) { return {key.src_ip, key.src_port}; }
inline constexpr Endpoint4 DstOf(const FlowKey& key) { return {key.dst_ip, key.dst_port}; }

// An IPv6 address and port in host byte order.
struct Endpoint6 {
  Ip6 ip;
  std::uint16_t port = 0;
  friend bool operator==(const Endpoint6&, const Endpoint6&) = default;
};

inline constexpr Endpoint6 SrcOf(const FlowKey6& key) { return {key.src_ip, key.src_port}; }
inline constexpr Endpoint6 DstOf(const FlowKey6& key) { return {key.dst_ip, key.dst_port}; }

// The IPv4-mapped IPv6 address of an IPv4 address (::ffff:a.b.c.d, RFC 4291 section 2.5.5.2).
constexpr Ip6 MappedIp6(std::uint32_t ip) { return {0, 0xffff00000000ULL | ip}; }
constexpr bool IsMappedIp4(const Ip6& ip) { return ip.hi == 0 && (ip.lo >> 32) == 0xffff; }

// An endpoint of either family where both meet (a backend set's members): an IPv4 endpoint is
// held as its IPv4-mapped address, so endpoints order and compare as one type.
struct AnyEndpoint {
  Ip6 ip;
  std::uint16_t port = 0;

  constexpr AnyEndpoint() = default;
  constexpr AnyEndpoint(Endpoint4 e) : ip(MappedIp6(e.ip)), port(e.port) {}  // NOLINT: implicit
  constexpr AnyEndpoint(Endpoint6 e) : ip(e.ip), port(e.port) {}             // NOLINT: implicit

  constexpr bool is_v4() const { return IsMappedIp4(ip); }
  constexpr Endpoint4 v4() const { return {static_cast<std::uint32_t>(ip.lo), port}; }
  constexpr Endpoint6 v6() const { return {ip, port}; }

  friend auto operator<=>(const AnyEndpoint&, const AnyEndpoint&) = default;
  friend bool operator==(const AnyEndpoint&, const AnyEndpoint&) = default;
};

}  // namespace fulcrum::nat
