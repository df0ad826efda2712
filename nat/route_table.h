// Where a packet leaves: the egress port and the next-hop address whose MAC it is sent to, for
// IPv4 (RouteTable) and IPv6 (RouteTable6).
//
// Theory of operation: the longest matching prefix wins among the ports' connected subnets
// (next hop = the destination itself) and the static routes (next hop = the route's `via`); a
// destination no prefix holds goes to the default gateway, the `gateway` of the first port (in
// config order) that has one. Nothing matching and no gateway: no next hop, and the caller drops
// the packet (`no_route`).
//
// Lookup scans the prefixes longest first. Configurations have a handful of ports and routes,
// and the scan touches one or two cache lines of 16-byte entries; a node with hundreds of routes
// would want a DIR-24-8 table (rte_lpm) behind the same interface. Packets to backends do not
// look up at all: the snapshot resolves each backend's next hop once (see dataplane/snapshot.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "nat/flow_key.h"

namespace fulcrum::nat {

inline constexpr std::uint8_t kNoPort = 0xff;

// Prefix arithmetic per family: IPv4 addresses are host-order uint32, IPv6 ones Ip6.
constexpr std::uint32_t PrefixMask(std::uint8_t length) {
  return length == 0 ? 0u : ~std::uint32_t{0} << (32 - length);
}
constexpr std::uint64_t HalfMask(int bits) {  // the top `bits` (0..64) of a 64-bit half
  return bits <= 0 ? 0 : bits >= 64 ? ~std::uint64_t{0} : ~std::uint64_t{0} << (64 - bits);
}
constexpr std::uint32_t MaskFor(std::uint32_t, std::uint8_t length) { return PrefixMask(length); }
constexpr Ip6 MaskFor(const Ip6&, std::uint8_t length) {
  return {HalfMask(length), HalfMask(length - 64)};
}
constexpr std::uint32_t Masked(std::uint32_t ip, std::uint32_t mask) { return ip & mask; }
constexpr Ip6 Masked(const Ip6& ip, const Ip6& mask) { return {ip.hi & mask.hi, ip.lo & mask.lo}; }
constexpr std::uint8_t MaxPrefix(std::uint32_t) { return 32; }
constexpr std::uint8_t MaxPrefix(const Ip6&) { return 128; }
constexpr bool IsZero(std::uint32_t ip) { return ip == 0; }
constexpr bool IsZero(const Ip6& ip) { return (ip.hi | ip.lo) == 0; }

template <typename Ip>
struct BasicNextHop {
  Ip ip{};                      // host order
  std::uint8_t port = kNoPort;  // port index (config order)
  bool ok() const { return port != kNoPort; }
  friend bool operator==(const BasicNextHop&, const BasicNextHop&) = default;
};

// A port's connected subnet: `address` is the port's own address, host bits included.
template <typename Ip>
struct BasicConnectedSpec {
  Ip address{};
  std::uint8_t length = 0;
  std::uint8_t port = 0;
  Ip gateway{};  // zero: none
};

template <typename Ip>
struct BasicRouteSpec {
  Ip network{};
  std::uint8_t length = 0;
  Ip via{};
  std::uint8_t port = 0;
};

// The table of one family: RouteTable (IPv4) and RouteTable6 (IPv6) are the same code.
template <typename Ip>
class BasicRouteTable {
 public:
  using Hop = BasicNextHop<Ip>;

  BasicRouteTable() = default;

  static Result<BasicRouteTable> Create(std::span<const BasicConnectedSpec<Ip>> connected,
                                        std::span<const BasicRouteSpec<Ip>> routes) {
    BasicRouteTable table;
    for (const BasicConnectedSpec<Ip>& c : connected) {
      if (c.length > MaxPrefix(Ip{}) || c.port == kNoPort) {
        return Error(ErrorCode::kInternal, "route table: bad connected prefix /{} on port {}",
                     c.length, c.port);
      }
      const Ip mask = MaskFor(Ip{}, c.length);
      table.entries_.push_back(Entry{Masked(c.address, mask), mask, Ip{}, c.length, c.port, true});
      if (!IsZero(c.gateway) && !table.default_.ok()) {
        table.default_ = Hop{c.gateway, c.port};
      }
    }
    for (const BasicRouteSpec<Ip>& r : routes) {
      if (r.length > MaxPrefix(Ip{}) || r.port == kNoPort || IsZero(r.via)) {
        return Error(ErrorCode::kInternal, "route table: bad route /{} via port {}", r.length,
                     r.port);
      }
      const Ip mask = MaskFor(Ip{}, r.length);
      table.entries_.push_back(
          Entry{Masked(r.network, mask), mask, r.via, r.length, r.port, false});
    }
    // Longest first; among equal lengths a connected subnet before a route.
    std::stable_sort(
        table.entries_.begin(), table.entries_.end(), [](const Entry& a, const Entry& b) {
          return a.length != b.length ? a.length > b.length : a.connected && !b.connected;
        });
    return table;
  }

  Hop Lookup(const Ip& dst) const {
    for (const Entry& e : entries_) {
      if (Masked(dst, e.mask) == e.network) {
        return Hop{e.connected ? dst : e.via, e.port};
      }
    }
    return default_;
  }

  // The port whose connected subnet holds `ip`, or kNoPort.
  std::uint8_t ConnectedPort(const Ip& ip) const {
    for (const Entry& e : entries_) {
      if (e.connected && Masked(ip, e.mask) == e.network) {
        return e.port;
      }
    }
    return kNoPort;
  }

  const Hop& default_gateway() const { return default_; }

 private:
  struct Entry {
    Ip network;
    Ip mask;
    Ip via;
    std::uint8_t length;
    std::uint8_t port;
    bool connected;
  };

  std::vector<Entry> entries_;
  Hop default_;
};

using NextHop = BasicNextHop<std::uint32_t>;
using ConnectedSpec = BasicConnectedSpec<std::uint32_t>;
using RouteSpec = BasicRouteSpec<std::uint32_t>;
using RouteTable = BasicRouteTable<std::uint32_t>;
using NextHop6 = BasicNextHop<Ip6>;
using ConnectedSpec6 = BasicConnectedSpec<Ip6>;
using RouteSpec6 = BasicRouteSpec<Ip6>;
using RouteTable6 = BasicRouteTable<Ip6>;

}  // namespace fulcrum::nat
