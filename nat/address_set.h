// A set of client addresses given as CIDR prefixes (an access control list), both families,
// for the packet path to ask "is this address in it?" at a cost that grows with the logarithm
// of its size, not with it.
//
// Theory of operation: Build turns the prefixes into the sorted, disjoint, merged ranges of
// addresses they cover (a prefix is the range [network, network | host mask]; overlapping and
// adjacent ranges become one), one array of first addresses and one of last addresses per
// family. Contains finds the last range starting at or before the address by binary search and
// checks that it reaches the address: log2(ranges) + 1 steps over arrays that stay in cache
// (1,000 IPv4 prefixes: at most 8 KiB, 10 steps). Membership is all an allow or deny list
// needs, so there is no longest-match bookkeeping: nested prefixes merge.
//
// Immutable once built; the snapshot owns it and every worker reads it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "nat/flow_key.h"

namespace fulcrum::nat {

struct Cidr4 {
  std::uint32_t ip = 0;  // host order; host bits ignored
  std::uint8_t length = 0;
  friend bool operator==(const Cidr4&, const Cidr4&) = default;
};
struct Cidr6 {
  Ip6 ip;
  std::uint8_t length = 0;
  friend bool operator==(const Cidr6&, const Cidr6&) = default;
};

class AddressSet {
 public:
  AddressSet() = default;
  static AddressSet Build(std::span<const Cidr4> v4, std::span<const Cidr6> v6);

  bool Contains(std::uint32_t ip) const {
    const std::size_t i = LastAtOrBefore(first4_, ip);
    return i != kNone && ip <= last4_[i];
  }
  bool Contains(const Ip6& ip) const {
    const std::size_t i = LastAtOrBefore(first6_, ip);
    return i != kNone && !Less(last6_[i], ip);
  }

  std::size_t ranges4() const { return first4_.size(); }
  std::size_t ranges6() const { return first6_.size(); }

  friend bool operator==(const AddressSet&, const AddressSet&) = default;

 private:
  static constexpr std::size_t kNone = ~std::size_t{0};

  static bool Less(std::uint32_t a, std::uint32_t b) { return a < b; }
  static bool Less(const Ip6& a, const Ip6& b) { return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo; }

  // The index of the last element of sorted `firsts` not after `ip`, or kNone.
  template <typename Ip>
  static std::size_t LastAtOrBefore(const std::vector<Ip>& firsts, const Ip& ip) {
    std::size_t lo = 0;
    std::size_t n = firsts.size();
    // Invariant: the answer lies in [lo - 1, lo + n - 1].
    while (n > 0) {
      const std::size_t half = n / 2;
      if (!Less(ip, firsts[lo + half])) {
        lo += half + 1;
        n -= half + 1;
      } else {
        n = half;
      }
    }
    return lo == 0 ? kNone : lo - 1;
  }

  std::vector<std::uint32_t> first4_;
  std::vector<std::uint32_t> last4_;
  std::vector<Ip6> first6_;
  std::vector<Ip6> last6_;
};

}  // namespace fulcrum::nat
