// Session persistence by source address: the backend a client's connections to a listener
// went to, remembered for the listener's window.
//
// Theory of operation:
// - One table shared by every worker. A client's next connection may reach any core (RSS, the
//   software hand-off and ClientOwner all spread one address's flows by port), so a per-core
//   table would keep a client on one backend per core, not one backend. Only new connections
//   read or write it, never the packets of an established one.
// - Lock-free. An entry is one 64-bit word: a plain load reads it whole and a compare-and-swap
//   changes it, so no worker ever waits for another and a lost race costs a reread.
//     bits 63..36  fingerprint (28 bits of the keyed hash; never 0, so 0 is a free word)
//     bits 35..16  backend slot (the snapshot's, dataplane/slots.h: below 2^20)
//     bits 15..0   deadline, in ticks of 1,024 ms (now_ms >> 10), modulo 2^16
//   The deadline is the last new connection's tick plus the listener's window, so any core can
//   tell a live entry from an expired one without knowing whose it is: live while
//   (int16)(deadline - now) >= 0. Windows are at most kMaxWindowTicks (3,600 s), so a live
//   entry never looks expired; an expired one would look live again 2^15 ticks (9.3 h) later,
//   and ExpireSome, run by the workers in turn, clears every bucket far more often than that.
// - Buckets of kWays words, one cache line, at the keyed hash's low bits; the fingerprint is
//   its top 28 bits, so a key is told apart by 28 + log2(buckets) bits. Two clients whose keys
//   agree in all of them (about 1 in 2^45 per pair at a million entries) share one entry: the
//   second follows the first one's backend, which is a valid backend of the listener. The hash
//   is keyed with a per-process seed, so that a client cannot aim its addresses at one bucket.
// - A key's entry is the first of its bucket with its fingerprint. Recording a new one claims
//   that word if the key has an expired entry, else the first free or expired word, else the
//   word that expires first (a live entry of another key: evicted, and counted). Every core
//   scans in the same order, so two cores recording the same key at once contend for the same
//   word; the loser rereads the bucket, finds the winner's entry and takes its backend.
// - Memory: 8 bytes per entry; capacity rounds up to a power of two of buckets.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/status.h"
#include "nat/flow_hash.h"
#include "nat/flow_key.h"

namespace fulcrum::nat {

class PersistTable {
 public:
  static constexpr std::uint32_t kWays = 8;
  static constexpr std::uint32_t kTickShift = 10;  // a tick is 1,024 ms
  static constexpr std::uint32_t kMaxBackendSlots = 1u << 20;
  static constexpr std::uint32_t kMaxWindowSeconds = 3600;
  static constexpr std::uint32_t kMaxWindowTicks = (kMaxWindowSeconds * 1000 + 1023) >> 10;
  static constexpr std::uint32_t kNone = 0xffffffffu;
  static constexpr std::uint32_t kMinCapacity = 1024;
  static constexpr std::uint32_t kMaxCapacity = 1u << 28;

  // At least `capacity` entries (rounded up to a power of two of buckets; kMinCapacity at
  // least, kMaxCapacity at most). `seed` keys the hash.
  static Result<PersistTable> Create(std::uint32_t capacity, std::uint64_t seed);

  PersistTable(PersistTable&&) noexcept = default;
  PersistTable& operator=(PersistTable&&) noexcept = default;

  static constexpr std::uint16_t TickOf(std::uint32_t now_ms) {
    return static_cast<std::uint16_t>(now_ms >> kTickShift);
  }
  // A window of `seconds` (1..kMaxWindowSeconds) in ticks, rounded up.
  static constexpr std::uint16_t WindowTicks(std::uint32_t seconds) {
    return static_cast<std::uint16_t>((std::uint64_t{seconds} * 1000 + 1023) >> kTickShift);
  }

  struct Key {
    std::uint32_t bucket = 0;
    std::uint64_t fingerprint = 0;  // 1..2^28-1
  };
  // The key of client `client` on listener `listener` (its slot).
  Key KeyOf(std::uint32_t listener, std::uint32_t client) const {
    return KeyOfHash(Mix64(Mix64(client ^ seed_) ^ listener));
  }
  Key KeyOf(std::uint32_t listener, const Ip6& client) const {
    return KeyOfHash(Mix64(Mix64(Mix64(client.hi ^ seed_) ^ client.lo) ^ listener));
  }
  void Prefetch(Key key) const { __builtin_prefetch(&buckets_[key.bucket], 0, 3); }

  // What Find saw of a key's entry, for Refresh and Remember.
  struct Found {
    std::uint32_t backend = kNone;  // the live entry's backend slot; kNone: no live entry
    std::uint32_t way = kWays;      // where it is
    std::uint64_t word = 0;         // as read
    bool hit() const { return backend != kNone; }
  };
  // The key's live entry at tick `now`.
  Found Find(Key key, std::uint16_t now) const;

  // The key's entry `found` (a hit) lives on for `window` ticks from `now`: one CAS, none when
  // its deadline is already that; a lost race (another core refreshed or replaced it) is fine.
  void Refresh(Key key, const Found& found, std::uint16_t now, std::uint16_t window);

  struct Recorded {
    // The backend slot the key's entry names now: `backend`, or the one another core recorded
    // first (the caller should then use that one), or kNone when nothing was recorded (the
    // bucket kept changing under us).
    std::uint32_t backend = kNone;
    bool evicted = false;  // a live entry of another key made room
    bool raced = false;    // `backend` is another core's record, not this call's
  };
  // Records `backend` for `key` until `now + window`. `found` is what Find returned for this
  // key: a live entry whose backend the caller could not use is replaced.
  Recorded Remember(Key key, const Found& found, std::uint32_t backend, std::uint16_t now,
                    std::uint16_t window);

  // Clears the expired entries of `buckets` buckets from `cursor` (advanced, wrapping); returns
  // how many it cleared.
  std::uint32_t ExpireSome(std::uint32_t& cursor, std::uint32_t buckets, std::uint16_t now);

  // Live entries at `now` (the control thread's statistics: reads every bucket).
  std::size_t CountLive(std::uint16_t now) const;
  std::size_t capacity() const { return std::size_t{mask_ + 1} * kWays; }
  std::uint32_t bucket_count() const { return mask_ + 1; }

  static constexpr std::uint64_t Pack(std::uint64_t fingerprint, std::uint32_t backend,
                                      std::uint16_t deadline) {
    return fingerprint << 36 | std::uint64_t{backend} << 16 | deadline;
  }
  static constexpr std::uint64_t FingerprintOf(std::uint64_t word) { return word >> 36; }
  static constexpr std::uint32_t BackendOf(std::uint64_t word) {
    return static_cast<std::uint32_t>(word >> 16) & (kMaxBackendSlots - 1);
  }
  static constexpr bool Live(std::uint64_t word, std::uint16_t now) {
    return word != 0 && static_cast<std::int16_t>(static_cast<std::uint16_t>(word) - now) >= 0;
  }

 private:
  struct alignas(64) Bucket {
    std::atomic<std::uint64_t> way[kWays];
  };

  PersistTable(std::unique_ptr<Bucket[]> buckets, std::uint32_t mask, std::uint64_t seed)
      : buckets_(std::move(buckets)), mask_(mask), seed_(seed) {}

  Key KeyOfHash(std::uint64_t h) const {
    const std::uint64_t fingerprint = h >> 36;
    return {static_cast<std::uint32_t>(h) & mask_, fingerprint != 0 ? fingerprint : 1};
  }

  std::unique_ptr<Bucket[]> buckets_;
  std::uint32_t mask_ = 0;
  std::uint64_t seed_ = 0;
};

}  // namespace fulcrum::nat
