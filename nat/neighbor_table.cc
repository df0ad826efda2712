#include "nat/neighbor_table.h"

namespace fulcrum::nat {

std::string_view NeighborStateName(NeighborState state) {
  switch (state) {
    case NeighborState::kIncomplete:
      return "incomplete";
    case NeighborState::kReachable:
      return "reachable";
    case NeighborState::kStale:
      return "stale";
  }
  return "invalid";
}

bool NeighborCache::Learn(std::uint32_t ip, const MacAddress& mac, std::uint8_t port,
                          std::uint64_t now_ms) {
  auto it = entries_.find(ip);
  if (it == entries_.end()) {
    if (entries_.size() >= options_.max_entries) {
      return false;
    }
    it = entries_.emplace(ip, NeighborEntry{.ip = ip}).first;
  }
  NeighborEntry& e = it->second;
  const bool changed = e.state == NeighborState::kIncomplete || e.mac != mac || e.port != port;
  e.state = NeighborState::kReachable;
  e.mac = mac;
  e.port = port;
  e.confirmed_ms = now_ms;
  e.probes = 0;
  dirty_ = dirty_ || changed;
  return changed;
}

bool NeighborCache::Want(std::uint32_t ip, std::uint8_t port, std::uint64_t /*now_ms*/) {
  if (entries_.contains(ip)) {
    return true;
  }
  if (entries_.size() >= options_.max_entries) {
    return false;
  }
  entries_.emplace(ip, NeighborEntry{.ip = ip, .port = port});
  return true;
}

std::vector<ArpProbe> NeighborCache::Tick(std::uint64_t now_ms) {
  std::vector<ArpProbe> probes;
  for (auto it = entries_.begin(); it != entries_.end();) {
    NeighborEntry& e = it->second;
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
    probes.push_back(ArpProbe{e.ip, e.port});
    ++e.probes;
    e.probed_ms = now_ms;
    ++it;
  }
  return probes;
}

void NeighborCache::Forget(std::uint32_t ip) {
  auto it = entries_.find(ip);
  if (it == entries_.end()) {
    return;
  }
  dirty_ = dirty_ || it->second.state != NeighborState::kIncomplete;
  entries_.erase(it);
}

Result<NeighborMap> NeighborCache::Build() {
  std::vector<FlatMap<Neighbor>::Item> items;
  for (const auto& [ip, e] : entries_) {
    if (e.state != NeighborState::kIncomplete) {
      items.push_back({NeighborMap::Key(ip), Neighbor{e.mac, e.port}});
    }
  }
  Result<FlatMap<Neighbor>> map = FlatMap<Neighbor>::Create(items);
  if (!map.ok()) {
    return map.status();
  }
  dirty_ = false;
  return NeighborMap(std::move(*map));
}

const NeighborEntry* NeighborCache::Find(std::uint32_t ip) const {
  auto it = entries_.find(ip);
  return it == entries_.end() ? nullptr : &it->second;
}

std::vector<NeighborEntry> NeighborCache::Entries() const {
  std::vector<NeighborEntry> out;
  out.reserve(entries_.size());
  for (const auto& [ip, e] : entries_) {
    out.push_back(e);
  }
  return out;
}

}  // namespace fulcrum::nat
