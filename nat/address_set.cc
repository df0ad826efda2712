#include "nat/address_set.h"

#include <algorithm>
#include <utility>

namespace fulcrum::nat {
namespace {

std::pair<std::uint32_t, std::uint32_t> RangeOf(const Cidr4& c) {
  const std::uint8_t length = std::min<std::uint8_t>(c.length, 32);
  const std::uint32_t host = length == 0 ? ~0u : (length == 32 ? 0u : ~0u >> length);
  return {c.ip & ~host, c.ip | host};
}

// The host mask of a 64-bit half whose first `bits` bits are network bits (0..64).
std::uint64_t HostMask(int bits) { return bits <= 0 ? ~0ULL : bits >= 64 ? 0ULL : ~0ULL >> bits; }

std::pair<Ip6, Ip6> RangeOf(const Cidr6& c) {
  const int length = std::min<int>(c.length, 128);
  const std::uint64_t hi_host = HostMask(length);
  const std::uint64_t lo_host = HostMask(length - 64);
  return {Ip6{c.ip.hi & ~hi_host, c.ip.lo & ~lo_host}, Ip6{c.ip.hi | hi_host, c.ip.lo | lo_host}};
}

bool Less(std::uint32_t a, std::uint32_t b) { return a < b; }
bool Less(const Ip6& a, const Ip6& b) { return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo; }

// The address after `ip`, and whether there is one.
bool Next(std::uint32_t ip, std::uint32_t& out) {
  out = ip + 1;
  return ip != ~0u;
}
bool Next(const Ip6& ip, Ip6& out) {
  out = Ip6{ip.lo == ~0ULL ? ip.hi + 1 : ip.hi, ip.lo + 1};
  return !(ip.hi == ~0ULL && ip.lo == ~0ULL);
}

// Sorts `ranges` and merges the overlapping and adjacent ones into `firsts` and `lasts`.
template <typename Ip>
void Merge(std::vector<std::pair<Ip, Ip>> ranges, std::vector<Ip>& firsts, std::vector<Ip>& lasts) {
  std::sort(ranges.begin(), ranges.end(),
            [](const auto& a, const auto& b) { return Less(a.first, b.first); });
  for (const auto& [first, last] : ranges) {
    Ip after_last{};
    if (!lasts.empty() && (!Next(lasts.back(), after_last) || !Less(after_last, first))) {
      // Overlaps or touches the previous range (or that one reaches the end of the space).
      if (Less(lasts.back(), last)) {
        lasts.back() = last;
      }
      continue;
    }
    firsts.push_back(first);
    lasts.push_back(last);
  }
}

}  // namespace

AddressSet AddressSet::Build(std::span<const Cidr4> v4, std::span<const Cidr6> v6) {
  AddressSet set;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges4;
  for (const Cidr4& c : v4) {
    ranges4.push_back(RangeOf(c));
  }
  std::vector<std::pair<Ip6, Ip6>> ranges6;
  for (const Cidr6& c : v6) {
    ranges6.push_back(RangeOf(c));
  }
  Merge(std::move(ranges4), set.first4_, set.last4_);
  Merge(std::move(ranges6), set.first6_, set.last6_);
  return set;
}

}  // namespace fulcrum::nat
