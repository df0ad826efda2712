// Big-endian field access on raw packet bytes.
//
// Packet headers are in network byte order and not necessarily aligned (a VLAN tag or IPv4
// options shift everything by 4 bytes), so fields are read and written through memcpy, which
// compilers turn into a single (possibly unaligned) load plus a byte swap.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace fulcrum::nat {

inline std::uint16_t LoadBe16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  if constexpr (std::endian::native == std::endian::little) {
    v = static_cast<std::uint16_t>((v >> 8) | (v << 8));
  }
  return v;
}

inline std::uint32_t LoadBe32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  if constexpr (std::endian::native == std::endian::little) {
    v = __builtin_bswap32(v);
  }
  return v;
}

inline void StoreBe16(std::uint8_t* p, std::uint16_t v) {
  if constexpr (std::endian::native == std::endian::little) {
    v = static_cast<std::uint16_t>((v >> 8) | (v << 8));
  }
  std::memcpy(p, &v, sizeof(v));
}

inline void StoreBe32(std::uint8_t* p, std::uint32_t v) {
  if constexpr (std::endian::native == std::endian::little) {
    v = __builtin_bswap32(v);
  }
  std::memcpy(p, &v, sizeof(v));
}

}  // namespace fulcrum::nat
