#include "nat/persist_table.h"

#include <algorithm>
#include <bit>
#include <new>

namespace fulcrum::nat {

namespace {

// Recording gives up after this many lost races in a row (the bucket changing under it).
constexpr int kRememberAttempts = 4;

std::uint64_t Load(const std::atomic<std::uint64_t>& word) {
  return word.load(std::memory_order_relaxed);
}

// Ticks until `word` expires (negative: expired).
std::int16_t TicksLeft(std::uint64_t word, std::uint16_t now) {
  return static_cast<std::int16_t>(static_cast<std::uint16_t>(word) - now);
}

}  // namespace

Result<PersistTable> PersistTable::Create(std::uint32_t capacity, std::uint64_t seed) {
  if (capacity > kMaxCapacity) {
    return Error(ErrorCode::kInvalidParameter,
                 "persistence table capacity {} is above the maximum of {} entries", capacity,
                 kMaxCapacity);
  }
  const std::uint32_t entries = std::max(capacity, kMinCapacity);
  const std::uint32_t buckets = std::bit_ceil((entries + kWays - 1) / kWays);
  std::unique_ptr<Bucket[]> storage(new (std::nothrow) Bucket[buckets]());
  if (storage == nullptr) {
    return Error(ErrorCode::kLimitExceeded, "no memory for a persistence table of {} entries",
                 std::size_t{buckets} * kWays);
  }
  return PersistTable(std::move(storage), buckets - 1, seed);
}

PersistTable::Found PersistTable::Find(Key key, std::uint16_t now) const {
  const Bucket& b = buckets_[key.bucket];
  for (std::uint32_t i = 0; i < kWays; ++i) {
    const std::uint64_t word = Load(b.way[i]);
    if (FingerprintOf(word) == key.fingerprint) {
      return Live(word, now) ? Found{BackendOf(word), i, word} : Found{kNone, i, word};
    }
  }
  return {};
}

void PersistTable::Refresh(Key key, const Found& found, std::uint16_t now, std::uint16_t window) {
  const std::uint64_t desired =
      Pack(key.fingerprint, found.backend, static_cast<std::uint16_t>(now + window));
  if (!found.hit() || desired == found.word) {
    return;
  }
  std::uint64_t expected = found.word;
  buckets_[key.bucket].way[found.way].compare_exchange_strong(expected, desired,
                                                              std::memory_order_relaxed);
}

PersistTable::Recorded PersistTable::Remember(Key key, const Found& found, std::uint32_t backend,
                                              std::uint16_t now, std::uint16_t window) {
  const std::uint64_t desired =
      Pack(key.fingerprint, backend, static_cast<std::uint16_t>(now + window));
  Bucket& b = buckets_[key.bucket];
  for (int attempt = 0; attempt < kRememberAttempts; ++attempt) {
    std::uint64_t words[kWays];
    for (std::uint32_t i = 0; i < kWays; ++i) {
      words[i] = Load(b.way[i]);
    }
    // The key's own entry, if it has one: live and not the one the caller saw, it is another
    // core's record, made since (its backend wins); otherwise it is replaced.
    std::uint32_t target = kWays;
    for (std::uint32_t i = 0; i < kWays; ++i) {
      if (FingerprintOf(words[i]) == key.fingerprint) {
        if (Live(words[i], now) && words[i] != found.word) {
          return {.backend = BackendOf(words[i]), .raced = true};
        }
        target = i;
        break;
      }
    }
    for (std::uint32_t i = 0; target == kWays && i < kWays; ++i) {
      if (!Live(words[i], now)) {
        target = i;
      }
    }
    bool evicted = false;
    if (target == kWays) {  // every word is another key's live entry: the one nearest its end
      target = 0;
      for (std::uint32_t i = 1; i < kWays; ++i) {
        if (TicksLeft(words[i], now) < TicksLeft(words[target], now)) {
          target = i;
        }
      }
      evicted = true;
    }
    std::uint64_t expected = words[target];
    if (b.way[target].compare_exchange_strong(expected, desired, std::memory_order_relaxed)) {
      return {.backend = backend, .evicted = evicted};
    }
  }
  return {};
}

std::uint32_t PersistTable::ExpireSome(std::uint32_t& cursor, std::uint32_t buckets,
                                       std::uint16_t now) {
  std::uint32_t cleared = 0;
  for (std::uint32_t n = 0; n < buckets; ++n) {
    Bucket& b = buckets_[cursor & mask_];
    cursor = (cursor + 1) & mask_;
    for (std::uint32_t i = 0; i < kWays; ++i) {
      std::uint64_t word = Load(b.way[i]);
      if (word != 0 && !Live(word, now) &&
          b.way[i].compare_exchange_strong(word, 0, std::memory_order_relaxed)) {
        ++cleared;
      }
    }
  }
  return cleared;
}

std::size_t PersistTable::CountLive(std::uint16_t now) const {
  std::size_t live = 0;
  for (std::uint32_t bucket = 0; bucket <= mask_; ++bucket) {
    for (std::uint32_t i = 0; i < kWays; ++i) {
      live += Live(Load(buckets_[bucket].way[i]), now) ? 1 : 0;
    }
  }
  return live;
}

}  // namespace fulcrum::nat
