// Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//
// Theory of operation: the checksum is the ones' complement of the ones' complement sum of
// the data taken as 16-bit big-endian words. All values here are in host order and mean "the
// 16-bit big-endian word as a number", so a checksum read with LoadBe16 can be fed straight in
// and the result written back with StoreBe16.
//
// A NAT never recomputes a checksum per packet: it changes a few fields and patches the
// checksum from the old and new field values (RFC 1624 eqn. 3), which costs a few additions
// whatever the payload length, and keeps a corrupt packet corrupt (a recomputation would
// launder it). Full sums are for verification and for rare packets (ICMP errors).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>

namespace fulcrum::nat {

// Folds a ones' complement accumulator to 16 bits with end-around carry. The result is 0 only
// when the accumulator is 0. 64 to 32 bits: add the halves and the carry back in. 32 to 16: a
// word plus its 16-bit rotation holds hi + lo + the carry of lo + hi in its high half.
constexpr std::uint16_t ChecksumFold(std::uint64_t sum) {
  const auto low = static_cast<std::uint32_t>(sum);
  std::uint32_t folded = low + static_cast<std::uint32_t>(sum >> 32);
  folded += folded < low ? 1 : 0;
  folded += std::rotr(folded, 16);
  return static_cast<std::uint16_t>(folded >> 16);
}

// Adds `data` as big-endian 16-bit words (a trailing odd byte is padded with a zero byte, as
// RFC 1071 says) to the unfolded accumulator `acc`. Chained calls are only correct when every
// chunk but the last has an even length.
inline std::uint64_t ChecksumAdd(std::span<const std::uint8_t> data, std::uint64_t acc = 0) {
  // Sum native 32-bit words into a 64-bit accumulator (no carry lost for any realistic
  // length), then fold and swap: the ones' complement sum is byte-order independent
  // (RFC 1071 section 2.B), so the byte swap of the native sum is the big-endian sum.
  const std::uint8_t* p = data.data();
  std::size_t n = data.size();
  std::uint64_t native = 0;
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    native += (w & 0xffffffffu) + (w >> 32);
    p += 8;
    n -= 8;
  }
  // The tail starts at an even offset, so its pieces are whole native words (2^16 = 1 in
  // ones' complement arithmetic, so a 32-bit word adds as its two 16-bit halves).
  if ((n & 4) != 0) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    native += w;
    p += 4;
  }
  if ((n & 2) != 0) {
    std::uint16_t w;
    std::memcpy(&w, p, 2);
    native += w;
    p += 2;
  }
  if ((n & 1) != 0) {
    // The odd byte is the high half of a zero-padded big-endian word.
    native +=
        std::endian::native == std::endian::little ? std::uint64_t{*p} : std::uint64_t{*p} << 8;
  }
  std::uint16_t folded = ChecksumFold(native);
  if constexpr (std::endian::native == std::endian::little) {
    folded = static_cast<std::uint16_t>((folded >> 8) | (folded << 8));
  }
  return acc + folded;
}

// Whether an IPv4 header (`length` bytes from IHL: 20 or more, a multiple of 4) sums to 0xFFFF,
// i.e. has a correct checksum. Summed as native 32-bit words: the ones' complement sum is
// byte-order independent and 0xFFFF is its own byte swap.
inline bool Ipv4HeaderChecksumOk(const std::uint8_t* header, std::size_t length) {
  std::uint32_t w[5];
  std::memcpy(w, header, sizeof(w));  // every header has these 20 bytes
  std::uint64_t native = std::uint64_t{w[0]} + w[1] + w[2] + w[3] + w[4];
  for (std::size_t i = sizeof(w); i < length; i += 4) {  // options
    std::uint32_t option;
    std::memcpy(&option, header + i, 4);
    native += option;
  }
  return ChecksumFold(native) == 0xffff;
}

// The checksum of `data` (what goes in the header when the checksum field is zero in `data`).
inline std::uint16_t InternetChecksum(std::span<const std::uint8_t> data, std::uint64_t acc = 0) {
  return static_cast<std::uint16_t>(~ChecksumFold(ChecksumAdd(data, acc)));
}

// The IPv4 pseudo-header of TCP and UDP (RFC 793 section 3.1, RFC 768), as an accumulator.
constexpr std::uint64_t Ipv4PseudoHeaderSum(std::uint32_t src, std::uint32_t dst,
                                            std::uint8_t proto, std::uint16_t l4_len) {
  return std::uint64_t{src >> 16} + (src & 0xffffu) + (dst >> 16) + (dst & 0xffffu) + proto +
         l4_len;
}

// Accumulates field changes for one checksum so that several fields cost one fold.
class ChecksumDelta {
 public:
  constexpr void Add16(std::uint16_t old_value, std::uint16_t new_value) {
    sum_ += static_cast<std::uint16_t>(~old_value);
    sum_ += new_value;
  }
  // A 32-bit word adds as a whole: 2^16 = 1 in ones' complement arithmetic, so it counts as
  // its two 16-bit halves, and the fold in Apply takes the carries.
  constexpr void Add32(std::uint32_t old_value, std::uint32_t new_value) {
    sum_ += static_cast<std::uint32_t>(~old_value);
    sum_ += new_value;
  }
  constexpr void Add(const ChecksumDelta& other) { sum_ += other.sum_; }

  // The delta folded to 16 bits, to keep (a connection's, computed once); Folded() brings it
  // back and Inverse() undoes it: ones' complement arithmetic makes ~d the delta of the reverse
  // rewrite. Apply gives the same checksum from the folded form as from the sum.
  constexpr std::uint16_t Fold() const { return ChecksumFold(sum_); }
  static constexpr ChecksumDelta Folded(std::uint16_t folded) {
    ChecksumDelta delta;
    delta.sum_ = folded;
    return delta;
  }
  static constexpr ChecksumDelta Inverse(std::uint16_t folded) {
    return Folded(static_cast<std::uint16_t>(~folded));
  }

  // The updated checksum, RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). Eqn. 3 (unlike eqn. 2)
  // never produces the -0 form 0xFFFF where a full recomputation would give 0x0000.
  constexpr std::uint16_t Apply(std::uint16_t checksum) const {
    return static_cast<std::uint16_t>(
        ~ChecksumFold(std::uint64_t{static_cast<std::uint16_t>(~checksum)} + sum_));
  }

  // UDP over IPv4: 0 means "no checksum" and stays 0; a computed 0 is sent as 0xFFFF
  // (RFC 768).
  constexpr std::uint16_t ApplyUdp(std::uint16_t checksum) const {
    if (checksum == 0) {
      return 0;
    }
    std::uint16_t updated = Apply(checksum);
    return updated == 0 ? std::uint16_t{0xffff} : updated;
  }

 private:
  std::uint64_t sum_ = 0;
};

// Single-field forms of RFC 1624 eqn. 3.
constexpr std::uint16_t ChecksumUpdate16(std::uint16_t checksum, std::uint16_t old_value,
                                         std::uint16_t new_value) {
  ChecksumDelta delta;
  delta.Add16(old_value, new_value);
  return delta.Apply(checksum);
}

constexpr std::uint16_t ChecksumUpdate32(std::uint16_t checksum, std::uint32_t old_value,
                                         std::uint32_t new_value) {
  ChecksumDelta delta;
  delta.Add32(old_value, new_value);
  return delta.Apply(checksum);
}

// ChecksumUpdate16/32 for a UDP checksum field (0 stays 0, a computed 0 becomes 0xFFFF).
constexpr std::uint16_t UdpChecksumUpdate32(std::uint16_t checksum, std::uint32_t old_value,
                                            std::uint32_t new_value) {
  ChecksumDelta delta;
  delta.Add32(old_value, new_value);
  return delta.ApplyUdp(checksum);
}

constexpr std::uint16_t UdpChecksumUpdate16(std::uint16_t checksum, std::uint16_t old_value,
                                            std::uint16_t new_value) {
  ChecksumDelta delta;
  delta.Add16(old_value, new_value);
  return delta.ApplyUdp(checksum);
}

}  // namespace fulcrum::nat
