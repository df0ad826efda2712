// The identity of an IPv4 flow as a packet arrives: its 5-tuple in host byte order.
//
// The connection table indexes every connection under two FlowKeys, one per direction
// (nat/conn_table.h), so that a packet's own 5-tuple finds its connection without knowing
// which side it came from. The layout is fixed at 16 bytes with zeroed padding so that a key
// hashes and compares as two 64-bit words. IPv6 will get its own key type rather than widening
// this one, which would double the entry size for the IPv4 majority.
#pragma once

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

}  // namespace fulcrum::nat
