// Where a packet leaves: the egress port and the next-hop address whose MAC it is sent to.
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

namespace fulcrum::nat {

inline constexpr std::uint8_t kNoPort = 0xff;

struct NextHop {
  std::uint32_t ip = 0;         // host order
  std::uint8_t port = kNoPort;  // port index (config order)
  bool ok() const { return port != kNoPort; }
  friend bool operator==(const NextHop&, const NextHop&) = default;
};

// A port's connected subnet: `address` is the port's own address, host bits included.
struct ConnectedSpec {
  std::uint32_t address = 0;
  std::uint8_t length = 0;
  std::uint8_t port = 0;
  std::uint32_t gateway = 0;  // 0: none
};

struct RouteSpec {
  std::uint32_t network = 0;
  std::uint8_t length = 0;
  std::uint32_t via = 0;
  std::uint8_t port = 0;
};

constexpr std::uint32_t PrefixMask(std::uint8_t length) {
  return length == 0 ? 0u : ~std::uint32_t{0} << (32 - length);
}

class RouteTable {
 public:
  RouteTable() = default;

  static Result<RouteTable> Create(std::span<const ConnectedSpec> connected,
                                   std::span<const RouteSpec> routes) {
    RouteTable table;
    for (const ConnectedSpec& c : connected) {
      if (c.length > 32 || c.port == kNoPort) {
        return Error(ErrorCode::kInternal, "route table: bad connected prefix /{} on port {}",
                     c.length, c.port);
      }
      table.entries_.push_back(
          Entry{c.address & PrefixMask(c.length), PrefixMask(c.length), 0, c.length, c.port, true});
      if (c.gateway != 0 && !table.default_.ok()) {
        table.default_ = NextHop{c.gateway, c.port};
      }
    }
    for (const RouteSpec& r : routes) {
      if (r.length > 32 || r.port == kNoPort || r.via == 0) {
        return Error(ErrorCode::kInternal, "route table: bad route /{} via port {}", r.length,
                     r.port);
      }
      table.entries_.push_back(Entry{r.network & PrefixMask(r.length), PrefixMask(r.length), r.via,
                                     r.length, r.port, false});
    }
    // Longest first; among equal lengths a connected subnet before a route.
    std::stable_sort(
        table.entries_.begin(), table.entries_.end(), [](const Entry& a, const Entry& b) {
          return a.length != b.length ? a.length > b.length : a.connected && !b.connected;
        });
    return table;
  }

  NextHop Lookup(std::uint32_t dst) const {
    for (const Entry& e : entries_) {
      if ((dst & e.mask) == e.network) {
        return NextHop{e.connected ? dst : e.via, e.port};
      }
    }
    return default_;
  }

  // The port whose connected subnet holds `ip`, or kNoPort.
  std::uint8_t ConnectedPort(std::uint32_t ip) const {
    for (const Entry& e : entries_) {
      if (e.connected && (ip & e.mask) == e.network) {
        return e.port;
      }
    }
    return kNoPort;
  }

  const NextHop& default_gateway() const { return default_; }

 private:
  struct Entry {
    std::uint32_t network;
    std::uint32_t mask;
    std::uint32_t via;
    std::uint8_t length;
    std::uint8_t port;
    bool connected;
  };

  std::vector<Entry> entries_;
  NextHop default_;
};

}  // namespace fulcrum::nat
