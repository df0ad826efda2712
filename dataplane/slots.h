// Stable small-integer slots for listeners and (listener, backend) pairs.
//
// Theory of operation: a connection entry names its listener and backend by slot
// (nat::ConnEntry::listener and ::backend), and the per-core counters (new connections,
// packets, active connections per backend) are arrays indexed by slot. Slots must therefore
// outlive configuration snapshots: an object keeps its slot for as long as it exists, whatever
// else changes around it. When an object disappears its slot is retired at the generation of
// the first snapshot without it; the workers then sweep their connection tables for entries
// that name a slot the snapshot no longer has (dataplane/pipeline.h). Only when every worker has
// completed a sweep that began at or after that generation can the slot be given to a new
// object: by then no entry names it and its active-connection gauges are back at zero. An object
// that reappears while its old slot is still retired gets a new slot, so a sweep in progress
// never spares the old object's connections.
//
// Free slots are handed out lowest first, so the arrays stay as short as the configuration.
// Pure and single-threaded: the control thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "common/status.h"

namespace fulcrum::dataplane {

template <typename Key>
class SlotAllocator {
 public:
  explicit SlotAllocator(std::uint32_t capacity) : capacity_(capacity) {}

  // The slot of `key`, or a new one. kLimitExceeded when every slot is live or retired.
  Result<std::uint32_t> Acquire(const Key& key) {
    if (auto it = live_.find(key); it != live_.end()) {
      return it->second;
    }
    std::uint32_t slot;
    if (!free_.empty()) {
      slot = *free_.begin();
      free_.erase(free_.begin());
    } else if (end_ < capacity_) {
      slot = end_++;
    } else {
      return Error(ErrorCode::kLimitExceeded, "all {} slots are in use ({} awaiting a sweep)",
                   capacity_, retired_.size());
    }
    live_.emplace(key, slot);
    return slot;
  }

  std::optional<std::uint32_t> Find(const Key& key) const {
    auto it = live_.find(key);
    return it == live_.end() ? std::nullopt : std::optional(it->second);
  }

  // Retires the slot of every live key for which keep(key) is false, at `generation`; returns
  // the slots retired.
  template <typename Keep>
  std::vector<std::uint32_t> RetireUnless(Keep&& keep, std::uint64_t generation) {
    std::vector<std::uint32_t> slots;
    for (auto it = live_.begin(); it != live_.end();) {
      if (keep(it->first)) {
        ++it;
        continue;
      }
      slots.push_back(it->second);
      retired_.push_back({it->second, generation});
      it = live_.erase(it);
    }
    return slots;
  }

  // Frees the retired slots whose generation is at or below `swept_generation` (the oldest
  // sweep start among the workers); returns how many.
  std::size_t Reclaim(std::uint64_t swept_generation) {
    std::size_t freed = 0;
    std::erase_if(retired_, [&](const Retired& r) {
      if (r.generation > swept_generation) {
        return false;
      }
      free_.insert(r.slot);
      ++freed;
      return true;
    });
    return freed;
  }

  std::size_t live() const { return live_.size(); }
  std::size_t retired() const { return retired_.size(); }
  // One past the highest slot ever handed out: the length per-slot arrays need.
  std::uint32_t end() const { return end_; }
  std::uint32_t capacity() const { return capacity_; }
  const std::map<Key, std::uint32_t>& live_slots() const { return live_; }

 private:
  struct Retired {
    std::uint32_t slot;
    std::uint64_t generation;
  };

  std::uint32_t capacity_;
  std::uint32_t end_ = 0;
  std::map<Key, std::uint32_t> live_;
  std::vector<Retired> retired_;
  std::set<std::uint32_t> free_;
};

}  // namespace fulcrum::dataplane
