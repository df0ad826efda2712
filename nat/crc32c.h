// CRC32C (Castagnoli) of 64-bit words: the connection table's hash.
//
// x86-64 with SSE4.2 computes it in one instruction (3-cycle latency); nat_dep adds -msse4.2
// where the compiler supports it. Elsewhere a table-driven software version gives bit-identical
// results, so a hash never depends on which translation unit computed it. Both are the raw
// update step (no pre- or post-inversion), with the word's bytes taken least significant first,
// as the SSE4.2 CRC32 instruction does.
#pragma once

#include <array>
#include <cstdint>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

namespace fulcrum::nat {
namespace detail {

constexpr std::array<std::uint32_t, 256> MakeCrc32cTable() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;  // reflected 0x1EDC6F41
    }
    table[i] = crc;
  }
  return table;
}

inline constexpr std::array<std::uint32_t, 256> kCrc32cTable = MakeCrc32cTable();

}  // namespace detail

constexpr std::uint32_t Crc32cU64Software(std::uint32_t crc, std::uint64_t word) {
  for (int byte = 0; byte < 8; ++byte) {
    crc = detail::kCrc32cTable[(crc ^ static_cast<std::uint32_t>(word)) & 0xff] ^ (crc >> 8);
    word >>= 8;
  }
  return crc;
}

inline std::uint32_t Crc32cU64(std::uint32_t crc, std::uint64_t word) {
#if defined(__SSE4_2__)
  return static_cast<std::uint32_t>(_mm_crc32_u64(crc, word));
#else
  return Crc32cU64Software(crc, word);
#endif
}

}  // namespace fulcrum::nat
