// Neighbours (RFC 826 ARP, RFC 4861 NDP): the control thread's cache and the workers' read-only
// map, one of each per address family.
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

// A solicitation to send: who-has `ip`, out of `port` (an ARP request for IPv4, a neighbour
// solicitation for IPv6).
template <typename Ip>
struct NeighborProbe {
  Ip ip{};
  std::uint8_t port = 0;
  friend bool operator==(const NeighborProbe&, const NeighborProbe&) = default;
};
using ArpProbe = NeighborProbe<std::uint32_t>;
using NeighborProbe6 = NeighborProbe<Ip6>;

template <typename Ip>
struct BasicNeighborEntry {
  Ip ip{};
  NeighborState state = NeighborState::kIncomplete;
  MacAddress mac{};
  std::uint8_t port = 0;
  std::uint64_t confirmed_ms = 0;  // last ARP or NDP packet from it
  std::uint64_t probed_ms = 0;     // last probe sent (valid when probes > 0)
  std::uint32_t probes = 0;        // unanswered probes since the last confirmation
};
using NeighborEntry = BasicNeighborEntry<std::uint32_t>;
using NeighborEntry6 = BasicNeighborEntry<Ip6>;

// One cache per family: NeighborCache (ARP) and NeighborCache6 (NDP, whose reachability states
// are the same ones, RFC 4861 section 7.3.2, without DELAY).
template <typename Ip>
class BasicNeighborCache {
 public:
  using Entry = BasicNeighborEntry<Ip>;
  using Probe = NeighborProbe<Ip>;
  using Map = BasicNeighborMap<Ip>;

  explicit BasicNeighborCache(NeighborCacheOptions options = {}) : options_(options) {}

  // A packet from `ip` that shows its MAC (an ARP reply or request for one of our addresses; a
  // neighbour advertisement or solicitation). Returns true when the cache changed in a way
  // workers must see (new MAC, other MAC or port).
  bool Learn(const Ip& ip, const MacAddress& mac, std::uint8_t port, std::uint64_t now_ms) {
    auto it = entries_.find(ip);
    if (it == entries_.end()) {
      if (entries_.size() >= options_.max_entries) {
        return false;
      }
      it = entries_.emplace(ip, Entry{.ip = ip}).first;
    }
    Entry& e = it->second;
    const bool changed = e.state == NeighborState::kIncomplete || e.mac != mac || e.port != port;
    e.state = NeighborState::kReachable;
    e.mac = mac;
    e.port = port;
    e.confirmed_ms = now_ms;
    e.probes = 0;
    dirty_ = dirty_ || changed;
    return changed;
  }

  // The data plane needs `ip`'s MAC on `port`: starts resolving it unless it is known or
  // being resolved. Returns false when the cache is full.
  bool Want(const Ip& ip, std::uint8_t port, std::uint64_t /*now_ms*/) {
    if (entries_.contains(ip)) {
      return true;
    }
    if (entries_.size() >= options_.max_entries) {
      return false;
    }
    entries_.emplace(ip, Entry{.ip = ip, .port = port});
    return true;
  }

  // Ages the entries and returns the probes to send now; entries whose probes ran out are
  // removed. Call it periodically (every ~100 ms).
  std::vector<Probe> Tick(std::uint64_t now_ms) {
    std::vector<Probe> probes;
    for (auto it = entries_.begin(); it != entries_.end();) {
      Entry& e = it->second;
      if (e.state == NeighborState::kReachable) {
        if (now_ms - e.confirmed_ms < options_.reachable_ms) {
          ++it;
          continue;
        }
        e.state = NeighborState::kStale;
        e.probes = 0;
      }
      const bool due = e.probes == 0 || now_ms - e.probed_ms >= options_.retry_ms;
      if (!due) {
        ++it;
        continue;
      }
      if (e.probes >= options_.max_probes) {
        dirty_ = dirty_ || e.state == NeighborState::kStale;
        it = entries_.erase(it);
        continue;
      }
      probes.push_back(Probe{e.ip, e.port});
      ++e.probes;
      e.probed_ms = now_ms;
      ++it;
    }
    return probes;
  }

  // Forgets an address (e.g. a port's subnet went away).
  void Forget(const Ip& ip) {
    auto it = entries_.find(ip);
    if (it == entries_.end()) {
      return;
    }
    dirty_ = dirty_ || it->second.state != NeighborState::kIncomplete;
    entries_.erase(it);
  }

  // The entries that have a MAC, as workers see them. Clears dirty().
  Result<Map> Build() {
    using Flat = FlatMap<Neighbor, typename Map::KeyType>;
    std::vector<typename Flat::Item> items;
    for (const auto& [ip, e] : entries_) {
      if (e.state != NeighborState::kIncomplete) {
        items.push_back({Map::Key(ip), Neighbor{e.mac, e.port}});
      }
    }
    Result<Flat> map = Flat::Create(items);
    if (!map.ok()) {
      return map.status();
    }
    dirty_ = false;
    return Map(std::move(*map));
  }
  bool dirty() const { return dirty_; }

  const Entry* Find(const Ip& ip) const {
    auto it = entries_.find(ip);
    return it == entries_.end() ? nullptr : &it->second;
  }
  std::vector<Entry> Entries() const {
    std::vector<Entry> out;
    out.reserve(entries_.size());
    for (const auto& [ip, e] : entries_) {
      out.push_back(e);
    }
    return out;
  }
  std::size_t size() const { return entries_.size(); }

 private:
  NeighborCacheOptions options_;
  std::map<Ip, Entry> entries_;
  bool dirty_ = false;
};

using NeighborCache = BasicNeighborCache<std::uint32_t>;
using NeighborCache6 = BasicNeighborCache<Ip6>;

}  // namespace fulcrum::nat
