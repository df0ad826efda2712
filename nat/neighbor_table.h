// IPv4 neighbours (RFC 826 ARP): the control thread's cache and the workers' read-only map.
//
// Theory of operation: workers see ARP packets but own no shared state, so they hand what they
// learn (the sender of a reply, or of a request for one of our addresses) and what they miss (a
// next hop without a MAC) to the control thread, which alone owns the NeighborCache. The cache
// keeps one entry per address, with the state machine of a host's ARP cache (after RFC 1122
// 2.3.2.1 and Linux's neighbour states, simplified):
//
//   incomplete  wanted, no MAC yet: probed every retry_ms, dropped after max_probes
//   reachable   MAC confirmed by an ARP packet within reachable_ms
//   stale       not confirmed for reachable_ms: the MAC is still used while it is re-probed
//               every retry_ms; dropped after max_probes unanswered probes
//
// Only addresses the load balancer needs (next hops it asked for) or that talk to it (a request
// for one of our addresses, a reply to us) enter the cache, and it holds at most max_entries, so
// a flood of unrelated ARP cannot grow it. Whenever an address gains, changes or loses its MAC the
// cache is dirty; the control thread then builds a NeighborMap, an immutable flat hash map that
// workers read per packet, and publishes it apart from the configuration snapshot, so ARP churn
// never rebuilds the Maglev tables. All times are the caller's milliseconds (a fake clock in
// tests).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "nat/arp.h"
#include "nat/flat_map.h"
#include "nat/service_table.h"

namespace fulcrum::nat {

struct Neighbor {
  MacAddress mac{};
  std::uint8_t port = 0;  // port index the neighbour was learnt on
};

// What workers read: address -> MAC, immutable; one map per family (NeighborMap for IPv4,
// NeighborMap6 for IPv6), keyed as the address tables are (nat::AddressKey).
template <typename Ip>
class BasicNeighborMap {
 public:
  using KeyType = decltype(AddressKey(Ip{}));

  BasicNeighborMap() = default;
  explicit BasicNeighborMap(FlatMap<Neighbor, KeyType> map) : map_(std::move(map)) {}

  const Neighbor* Find(const Ip& ip) const { return map_.Find(Key(ip)); }
  void Prefetch(const Ip& ip) const { map_.Prefetch(Key(ip)); }
  std::size_t size() const { return map_.size(); }

  static constexpr KeyType Key(const Ip& ip) { return AddressKey(ip); }

 private:
  FlatMap<Neighbor, KeyType> map_;
};

using NeighborMap = BasicNeighborMap<std::uint32_t>;
using NeighborMap6 = BasicNeighborMap<Ip6>;

enum class NeighborState : std::uint8_t { kIncomplete, kReachable, kStale };
std::string_view NeighborStateName(NeighborState state);

struct NeighborCacheOptions {
  std::uint64_t reachable_ms = 60'000;
  std::uint64_t retry_ms = 1'000;
  std::uint32_t max_probes = 3;
  std::size_t max_entries = 65'536;
};

// An ARP request to send: who-has `ip`, out of `port`.
struct ArpProbe {
  std::uint32_t ip = 0;
  std::uint8_t port = 0;
  friend bool operator==(const ArpProbe&, const ArpProbe&) = default;
};

struct NeighborEntry {
  std::uint32_t ip = 0;
  NeighborState state = NeighborState::kIncomplete;
  MacAddress mac{};
  std::uint8_t port = 0;
  std::uint64_t confirmed_ms = 0;  // last ARP packet from it
  std::uint64_t probed_ms = 0;     // last probe sent (valid when probes > 0)
  std::uint32_t probes = 0;        // unanswered probes since the last confirmation
};

class NeighborCache {
 public:
  explicit NeighborCache(NeighborCacheOptions options = {}) : options_(options) {}

  // An ARP packet from `ip` (a reply, or a request for one of our addresses). Returns true when
  // the cache changed in a way workers must see (new MAC, other MAC or port).
  bool Learn(std::uint32_t ip, const MacAddress& mac, std::uint8_t port, std::uint64_t now_ms);

  // The data plane needs `ip`'s MAC on `port`: starts resolving it unless it is known or
  // being resolved. Returns false when the cache is full.
  bool Want(std::uint32_t ip, std::uint8_t port, std::uint64_t now_ms);

  // Ages the entries and returns the probes to send now; entries whose probes ran out are
  // removed. Call it periodically (every ~100 ms).
  std::vector<ArpProbe> Tick(std::uint64_t now_ms);

  // Forgets an address (e.g. a port's subnet went away).
  void Forget(std::uint32_t ip);

  // The entries that have a MAC, as workers see them. Clears dirty().
  Result<NeighborMap> Build();
  bool dirty() const { return dirty_; }

  const NeighborEntry* Find(std::uint32_t ip) const;
  std::vector<NeighborEntry> Entries() const;
  std::size_t size() const { return entries_.size(); }

 private:
  NeighborCacheOptions options_;
  std::map<std::uint32_t, NeighborEntry> entries_;
  bool dirty_ = false;
};

}  // namespace fulcrum::nat
