// An immutable open-addressing hash map from non-zero keys to small values: 64-bit keys, or
// WideKey (three words) for what does not fit one, such as an IPv6 address and a port.
//
// Theory of operation: the control thread builds one (Create) inside a snapshot and workers
// only read it, so it needs no deletion, no resizing and no synchronisation; copies share the
// slots. Keys are packed
// fields (an IPv4 address, or address + port + protocol) made non-zero by construction; 0 marks
// an empty slot. The table has a power-of-two number of slots, at least twice the number of
// keys, and probes linearly from the Mix64 hash of the key (nat/flow_hash.h): at <= 50% load a
// successful lookup reads about 1.5 slots and a miss about 2.5 (Knuth, TAOCP vol. 3, 6.4), and
// 16-byte slots keep a probe sequence inside one or two cache lines. Find is inline: it runs per
// packet.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/status.h"
#include "nat/flow_hash.h"

namespace fulcrum::nat {

// A key of three 64-bit words; all zero is the empty slot, so builders set a marker bit.
struct WideKey {
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  std::uint64_t c = 0;
  friend bool operator==(const WideKey&, const WideKey&) = default;
};

constexpr bool IsEmptyKey(std::uint64_t key) { return key == 0; }
constexpr bool IsEmptyKey(const WideKey& key) { return (key.a | key.b | key.c) == 0; }
constexpr std::uint64_t HashKey(std::uint64_t key) { return Mix64(key); }
// The three words folded into one by odd multipliers and a rotation, then one finalising
// Mix64: a third of a chained form's work per lookup, and spread enough for the keys these maps
// hold (configured addresses and services, on-link neighbours).
constexpr std::uint64_t HashKey(const WideKey& key) {
  return Mix64(key.a ^ std::rotl(key.b * 0x9e3779b97f4a7c15ULL, 29) ^
               key.c * 0xc2b2ae3d27d4eb4fULL);
}

template <typename V, typename K = std::uint64_t>
class FlatMap {
 public:
  struct Item {
    K key{};
    V value{};
  };

  // An empty map: every Find misses.
  FlatMap() : storage_(std::make_shared<Item[]>(1)), slots_(storage_.get()), mask_(0) {}

  // Fails on a zero key or a key given twice (the message names the key in hex).
  static Result<FlatMap> Create(std::span<const Item> items) {
    FlatMap map;
    const std::size_t size = std::bit_ceil(std::max<std::size_t>(2 * items.size(), 2));
    std::shared_ptr<Item[]> slots = std::make_shared<Item[]>(size);
    map.slots_ = slots.get();
    map.mask_ = size - 1;
    for (const Item& item : items) {
      if (IsEmptyKey(item.key)) {
        return Error(ErrorCode::kInternal, "flat map: key 0 is reserved for empty slots");
      }
      std::size_t i = map.Home(item.key);
      while (!IsEmptyKey(slots[i].key)) {
        if (slots[i].key == item.key) {
          if constexpr (std::is_integral_v<K>) {
            return Error(ErrorCode::kInvalidParameter, "flat map: key {:#x} given twice", item.key);
          } else {
            return Error(ErrorCode::kInvalidParameter, "flat map: a key is given twice");
          }
        }
        i = (i + 1) & map.mask_;
      }
      slots[i] = item;
    }
    map.storage_ = std::move(slots);
    map.size_ = items.size();
    return map;
  }

  // The value of `key`, or nullptr (always for key 0).
  const V* Find(const K& key) const {
    for (std::size_t i = Home(key);; i = (i + 1) & mask_) {
      const Item& slot = slots_[i];
      if (IsEmptyKey(slot.key)) {
        return nullptr;
      }
      if (slot.key == key) {
        return &slot.value;
      }
    }
  }

  void Prefetch(const K& key) const { __builtin_prefetch(&slots_[Home(key)]); }

  std::size_t size() const { return size_; }
  // Every item, in slot order (for dumps and tests).
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const Item& slot : std::span<const Item>(slots_, mask_ + 1)) {
      if (!IsEmptyKey(slot.key)) {
        fn(slot.key, slot.value);
      }
    }
  }

 private:
  std::size_t Home(const K& key) const { return static_cast<std::size_t>(HashKey(key)) & mask_; }

  // Immutable once built, so copies share it (a snapshot compiled from the one before takes
  // its tables for the price of a reference count). With an empty map it holds one empty
  // slot, so Find needs no size check.
  std::shared_ptr<const Item[]> storage_;
  const Item* slots_ = nullptr;  // storage_.get(), kept apart so Find reads one pointer
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

}  // namespace fulcrum::nat
