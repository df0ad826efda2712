// The per-core connection table: every tracked connection, found from either direction.
//
// Theory of operation
// -------------------
// Ownership: one worker owns a table and is its only reader and writer, so nothing here is
// atomic or locked. The control thread asks the worker (over its message ring) to dump or
// flush; it never touches the table itself.
//
// Memory: Create() reserves everything up front in one region (transparent huge pages where
// the kernel allows, prefaulted): the entries, the index and a stack of free entry numbers.
// Nothing is allocated afterwards; Insert reports kFull when either runs out and the worker
// falls back to stateless Maglev.
//
// Entries: one 64-byte, cache-line-aligned ConnEntry per connection holding both of its keys:
// from_client (client:cport -> vip:vport) and from_backend (backend:bport -> local:lport for
// fnat, backend:bport -> client:cport for dnat). A packet's own 5-tuple is one of the two.
// The table is a template over its entry: ConnTable holds IPv4 ConnEntry, ConnTable6 the
// 128-byte ConnEntry6 with 40-byte FlowKey6 keys, so IPv4 entries stay one cache line; a core
// has one table per family. Both are instantiated in conn_table.cc.
//
// Index: a bucketized cuckoo hash (after rte_hash and MemC3). Each 64-byte bucket holds 8
// slots of (32-bit tag, 32-bit reference = entry number << 1 | direction); each connection
// has two slots, one per key. A key hashes (two CRC32C chains) to a primary bucket and a tag;
// its alternate bucket is primary XOR f(tag), so a slot can be moved to its other bucket
// without reading its entry. Insert places a key in whichever bucket has room, otherwise
// searches breadth-first for a short chain of displacements. The index is sized for at most
// 85% slot occupancy at full capacity (power-of-two buckets, so usually less).
//
// A lookup reads two buckets and, on a tag match, one entry: three cache lines, all
// prefetchable. LookupBulk pipelines a burst: hash every key and prefetch its buckets, then
// match tags and prefetch candidate entries, then compare keys, so the misses of a burst
// overlap instead of adding up.
//
// Expiry: entries carry last_seen_ms and timeout_ms (set by the worker from nat/tcp_state.h).
// A lookup that finds an expired entry reports a miss; the entry is freed later by
// ExpireSome, which examines a fixed budget of entries per call from a round-robin cursor, so
// reclaiming never stops the worker for long. Free entries are handed out lowest number first,
// so every live entry lies below the high-water mark (one past the highest number ever used);
// the cursors stop there, which keeps a full expiry round of an oversized table as short as the
// peak occupancy allows. EraseIfSome does the same for a predicate
// (backend or listener removed). Both call the caller's on_free(entry) first, so it can return
// the fnat port and drop the backend's connection count.
//
// The worker may change an entry's non-key fields (state, timestamps, timeout, flags) through
// the pointer a lookup returns; the keys are fixed once inserted.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/status.h"
#include "nat/checksum.h"
#include "nat/crc32c.h"
#include "nat/flow_key.h"
#include "nat/tcp_state.h"

namespace fulcrum::nat {

// kNat64 (ConnEntry6 only): fnat from an IPv6 client to an IPv4 backend; the entry's backend
// side holds IPv4 addresses as IPv4-mapped IPv6 ones (::ffff:a.b.c.d), the local address one of
// the backend port's IPv4 local addresses.
enum class NatMode : std::uint8_t { kFnat, kDnat, kNat64 };

// Adds an IPv6 address change to `delta`, as four 32-bit words.
constexpr void AddIp6(ChecksumDelta& delta, const Ip6& old_ip, const Ip6& new_ip) {
  delta.Add32(static_cast<std::uint32_t>(old_ip.hi >> 32),
              static_cast<std::uint32_t>(new_ip.hi >> 32));
  delta.Add32(static_cast<std::uint32_t>(old_ip.hi), static_cast<std::uint32_t>(new_ip.hi));
  delta.Add32(static_cast<std::uint32_t>(old_ip.lo >> 32),
              static_cast<std::uint32_t>(new_ip.lo >> 32));
  delta.Add32(static_cast<std::uint32_t>(old_ip.lo), static_cast<std::uint32_t>(new_ip.lo));
}
constexpr void AddIp(ChecksumDelta& delta, std::uint32_t old_ip, std::uint32_t new_ip) {
  delta.Add32(old_ip, new_ip);
}
constexpr void AddIp(ChecksumDelta& delta, const Ip6& old_ip, const Ip6& new_ip) {
  AddIp6(delta, old_ip, new_ip);
}

// The checksum deltas (RFC 1624) of the rewrite a client's packet of a connection gets: from
// its own tuple, `from_client`, to the reverse of `from_backend`. A backend's packet gets the
// inverse rewrite, whose deltas are these complemented (ChecksumDelta::Inverse). Kept folded in
// the entry, so that a packet's rewrite adds no address words. An IPv4-mapped address (NAT64's
// IPv4 side) sums like the IPv4 address alone: its 0xffff word is ones' complement zero.
struct RewriteDeltas {
  std::uint16_t addresses = 0;  // the addresses alone: what an IPv4 header's checksum covers
  std::uint16_t l4 = 0;         // the addresses and the ports: a TCP or UDP checksum's part
};
template <typename Key>
constexpr RewriteDeltas DeltasOf(const Key& from_client, const Key& from_backend) {
  ChecksumDelta delta;
  AddIp(delta, from_client.src_ip, from_backend.dst_ip);
  AddIp(delta, from_client.dst_ip, from_backend.src_ip);
  RewriteDeltas out;
  out.addresses = delta.Fold();
  delta.Add16(from_client.src_port, from_backend.dst_port);
  delta.Add16(from_client.dst_port, from_backend.src_port);
  out.l4 = delta.Fold();
  return out;
}

struct alignas(64) ConnEntry {
  FlowKey from_client;         // client:cport -> vip:vport; proto 0 marks a free entry
  FlowKey from_backend;        // backend:bport -> local:lport (fnat) or client:cport (dnat)
  std::uint32_t listener = 0;  // the worker's listener index
  std::uint32_t backend = 0;   // the worker's backend index
  std::uint32_t created_ms = 0;
  std::uint32_t last_seen_ms = 0;
  std::uint32_t timeout_ms = 0;  // idle timeout in the current state
  TcpState tcp_state = TcpState::kNone;
  NatMode mode = NatMode::kFnat;
  std::uint8_t flags = 0;  // the worker's own; the table never reads them
  // A spliced connection's (nat/tcp_splice.h, the worker's): the bytes inserted ahead of the
  // client's first byte, and that byte's number (SeqShift::to_backend, client_start).
  std::uint8_t splice_len = 0;
  RewriteDeltas deltas;  // DeltasOf(from_client, from_backend)
  std::uint32_t splice_start = 0;

  bool in_use() const { return from_client.proto != 0; }
  std::uint8_t proto() const { return from_client.proto; }
  Endpoint4 client() const { return SrcOf(from_client); }
  Endpoint4 vip() const { return DstOf(from_client); }
  Endpoint4 backend_endpoint() const { return SrcOf(from_backend); }
  // The address the backend sees as the source: local address (fnat) or client (dnat).
  Endpoint4 local() const { return DstOf(from_backend); }
  const FlowKey& key(FlowDir dir) const {
    return dir == FlowDir::kFromClient ? from_client : from_backend;
  }
};
static_assert(sizeof(ConnEntry) == 64);

// An fnat connection: the backend sees local:lport as the client.
constexpr ConnEntry MakeFnatEntry(std::uint8_t proto, Endpoint4 client, Endpoint4 vip,
                                  Endpoint4 local, Endpoint4 backend) {
  ConnEntry e;
  e.from_client = FlowKey{client.ip, vip.ip, client.port, vip.port, proto};
  e.from_backend = FlowKey{backend.ip, local.ip, backend.port, local.port, proto};
  e.mode = NatMode::kFnat;
  e.deltas = DeltasOf(e.from_client, e.from_backend);
  return e;
}

// A dnat connection: the backend sees the client itself and routes replies through the LB.
constexpr ConnEntry MakeDnatEntry(std::uint8_t proto, Endpoint4 client, Endpoint4 vip,
                                  Endpoint4 backend) {
  ConnEntry e;
  e.from_client = FlowKey{client.ip, vip.ip, client.port, vip.port, proto};
  e.from_backend = FlowKey{backend.ip, client.ip, backend.port, client.port, proto};
  e.mode = NatMode::kDnat;
  e.deltas = DeltasOf(e.from_client, e.from_backend);
  return e;
}

// An IPv6 connection: the same fields as ConnEntry with IPv6 keys, two cache lines. IPv4
// connections keep their one-line ConnEntry in a table of their own (one table per family per
// core).
struct alignas(64) ConnEntry6 {
  FlowKey6 from_client;   // client:cport -> vip:vport; proto 0 marks a free entry
  FlowKey6 from_backend;  // backend:bport -> local:lport (fnat) or client:cport (dnat)
  std::uint32_t listener = 0;
  std::uint32_t backend = 0;
  std::uint32_t created_ms = 0;
  std::uint32_t last_seen_ms = 0;
  std::uint32_t timeout_ms = 0;
  TcpState tcp_state = TcpState::kNone;
  NatMode mode = NatMode::kFnat;
  std::uint8_t flags = 0;
  std::uint8_t splice_len = 0;
  RewriteDeltas deltas;  // DeltasOf(from_client, from_backend)
  std::uint32_t splice_start = 0;

  bool in_use() const { return from_client.proto != 0; }
  std::uint8_t proto() const { return from_client.proto; }
  Endpoint6 client() const { return SrcOf(from_client); }
  Endpoint6 vip() const { return DstOf(from_client); }
  Endpoint6 backend_endpoint() const { return SrcOf(from_backend); }
  Endpoint6 local() const { return DstOf(from_backend); }
  const FlowKey6& key(FlowDir dir) const {
    return dir == FlowDir::kFromClient ? from_client : from_backend;
  }
};
static_assert(sizeof(ConnEntry6) == 128);

constexpr ConnEntry6 MakeFnatEntry(std::uint8_t proto, Endpoint6 client, Endpoint6 vip,
                                   Endpoint6 local, Endpoint6 backend) {
  ConnEntry6 e;
  e.from_client = FlowKey6{client.ip, vip.ip, client.port, vip.port, proto};
  e.from_backend = FlowKey6{backend.ip, local.ip, backend.port, local.port, proto};
  e.mode = NatMode::kFnat;
  e.deltas = DeltasOf(e.from_client, e.from_backend);
  return e;
}

constexpr ConnEntry6 MakeDnatEntry(std::uint8_t proto, Endpoint6 client, Endpoint6 vip,
                                   Endpoint6 backend) {
  ConnEntry6 e;
  e.from_client = FlowKey6{client.ip, vip.ip, client.port, vip.port, proto};
  e.from_backend = FlowKey6{backend.ip, client.ip, backend.port, client.port, proto};
  e.mode = NatMode::kDnat;
  e.deltas = DeltasOf(e.from_client, e.from_backend);
  return e;
}

struct ConnHash {
  std::uint32_t bucket = 0;  // primary bucket
  std::uint32_t tag = 0;     // never 0 (0 marks an empty slot)
};

template <typename Entry>
struct BasicConnHit {
  Entry* entry = nullptr;  // nullptr on a miss
  std::uint32_t index = 0;
  FlowDir dir = FlowDir::kFromClient;  // which of the entry's keys matched

  bool hit() const { return entry != nullptr; }
};
using ConnHit = BasicConnHit<ConnEntry>;
using ConnHit6 = BasicConnHit<ConnEntry6>;

enum class InsertStatus : std::uint8_t {
  kInserted,
  kFull,     // no free entry or no room in the index: fall back to stateless scheduling
  kExists,   // a live connection already has one of the keys (index = that connection)
  kInvalid,  // proto 0, or both keys equal
};

struct InsertResult {
  InsertStatus status = InsertStatus::kFull;
  std::uint32_t index = 0;
};

// Where an incremental sweep (EraseIfSome, VisitSome) resumes.
struct SweepCursor {
  std::uint32_t next = 0;
  bool done = false;  // set once the sweep has passed the last entry
};

struct ConnTableStats {
  std::uint64_t inserts = 0;
  std::uint64_t erases = 0;
  std::uint64_t expired = 0;               // freed by ExpireSome or reclaimed by Insert
  std::uint64_t cuckoo_displacements = 0;  // slots moved to make room
  std::uint64_t index_full = 0;            // inserts refused for lack of a path in the index
};

// The table of one address family: Entry is ConnEntry (IPv4) or ConnEntry6 (IPv6).
template <typename Entry>
class BasicConnTable {
 public:
  using Key = std::remove_cvref_t<decltype(std::declval<Entry>().from_client)>;
  using Hit = BasicConnHit<Entry>;
  using EntryType = Entry;

  static constexpr std::uint32_t kMaxCapacity = 1u << 30;
  static constexpr std::size_t kSlotsPerBucket = 8;
  static constexpr std::size_t kBulkChunk = 32;
  static constexpr std::size_t kExpireBatch = 16;

  // Reserves and prefaults all memory for `capacity` connections.
  static Result<BasicConnTable> Create(std::uint32_t capacity);
  // Bytes Create(capacity) reserves.
  static std::size_t MemoryBytes(std::uint32_t capacity);

  BasicConnTable(BasicConnTable&& other) noexcept;
  BasicConnTable& operator=(BasicConnTable&& other) noexcept;
  BasicConnTable(const BasicConnTable&) = delete;
  BasicConnTable& operator=(const BasicConnTable&) = delete;
  ~BasicConnTable();

  std::uint32_t capacity() const { return capacity_; }
  std::uint32_t size() const { return size_; }  // live entries, expired-but-unfreed included
  std::size_t memory_bytes() const { return region_bytes_; }
  // Reserved bytes per connection at full capacity: entry, index share and free-stack share.
  double bytes_per_connection() const {
    return static_cast<double>(region_bytes_) / static_cast<double>(capacity_);
  }
  std::uint32_t bucket_count() const { return bucket_mask_ + 1; }
  const ConnTableStats& stats() const { return stats_; }

  ConnHash Hash(const Key& key) const {
    const auto words = Words(key);
    // Two chains over the words in opposite orders: independent bits for bucket and tag.
    std::uint32_t a = kSeedBucket;
    std::uint32_t t = kSeedTag;
    for (std::size_t i = 0; i < words.size(); ++i) {
      a = Crc32cU64(a, words[i]);
      t = Crc32cU64(t, words[words.size() - 1 - i]);
    }
    return ConnHash{a & bucket_mask_, t != 0 ? t : 1u};
  }

  void Prefetch(const ConnHash& h) const {
    __builtin_prefetch(&buckets_[h.bucket]);
    __builtin_prefetch(&buckets_[AltBucket(h.bucket, h.tag)]);
  }

  // The live connection with `key`, or a miss (also when it has expired at `now_ms`).
  Hit Lookup(const Key& key, const ConnHash& h, std::uint32_t now_ms) {
    Hit hit = Find(key, h);
    if (hit.hit() && Expired(*hit.entry, now_ms)) {
      return Hit{};
    }
    return hit;
  }
  Hit Lookup(const Key& key, std::uint32_t now_ms) { return Lookup(key, Hash(key), now_ms); }

  // hits[i] = Lookup(keys[i], now_ms) for every i; hits.size() must be >= keys.size().
  void LookupBulk(std::span<const Key> keys, std::span<Hit> hits, std::uint32_t now_ms);

  // Adds a connection (created_ms and last_seen_ms are set to now_ms). An expired connection
  // holding one of its keys is reclaimed first, through on_free(const Entry&).
  template <typename OnFree>
  InsertResult Insert(const Entry& entry, std::uint32_t now_ms, OnFree&& on_free);
  // For entries that hold nothing to give back (no fnat port, no per-backend count).
  InsertResult Insert(const Entry& entry, std::uint32_t now_ms) {
    return Insert(entry, now_ms, [](const Entry&) {});
  }
  // Insert with the keys' hashes already computed (Hash(entry.from_client) and
  // Hash(entry.from_backend)), for a caller that prefetched with PrefetchInsert.
  template <typename OnFree>
  InsertResult InsertHashed(const Entry& entry, const ConnHash& client_hash,
                            const ConnHash& backend_hash, std::uint32_t now_ms, OnFree&& on_free);
  // Prefetches what the `ahead`-th next insert (0 = the next) with these hashes will touch:
  // the four buckets and the free entry it will most likely take.
  void PrefetchInsert(const ConnHash& client_hash, const ConnHash& backend_hash,
                      std::uint32_t ahead) const {
    Prefetch(client_hash);
    Prefetch(backend_hash);
    if (free_top_ > ahead) {
      __builtin_prefetch(&entries_[free_[free_top_ - 1 - ahead]], 1);
    }
  }

  // Removes entry `index` and both of its index slots; a free index is ignored.
  void Erase(std::uint32_t index);

  Entry& entry(std::uint32_t index) { return entries_[index]; }
  const Entry& entry(std::uint32_t index) const { return entries_[index]; }

  static bool Expired(const Entry& e, std::uint32_t now_ms) {
    return IdleExpired(now_ms, e.last_seen_ms, e.timeout_ms);
  }

  // Examines the next `budget` entries (round-robin) and frees the expired ones, calling
  // on_free(const Entry&) for each first. Returns how many were freed.
  template <typename OnFree>
  std::uint32_t ExpireSome(std::uint32_t now_ms, std::uint32_t budget, OnFree&& on_free);

  // Examines up to `budget` entries from `cursor` and erases the live ones for which
  // pred(const Entry&) holds, calling on_free first. Returns how many were erased.
  template <typename Pred, typename OnFree>
  std::uint32_t EraseIfSome(SweepCursor& cursor, std::uint32_t budget, Pred&& pred,
                            OnFree&& on_free);

  // Calls fn(index, const Entry&) for the live entries among the next `budget` from
  // `cursor` (expired-but-unfreed ones included; check Expired() to skip them).
  template <typename Fn>
  void VisitSome(SweepCursor& cursor, std::uint32_t budget, Fn&& fn) const;

 private:
  struct alignas(64) Bucket {
    std::uint32_t tags[kSlotsPerBucket];
    std::uint32_t refs[kSlotsPerBucket];
  };
  static_assert(sizeof(Bucket) == 64);

  static constexpr std::uint32_t kSeedBucket = 0x9e3779b9u;
  static constexpr std::uint32_t kSeedTag = 0x85ebca6bu;

  BasicConnTable() = default;

  static std::uint32_t Ref(std::uint32_t index, FlowDir dir) {
    return index << 1 | static_cast<std::uint32_t>(dir);
  }

  std::uint32_t AltBucket(std::uint32_t bucket, std::uint32_t tag) const {
    // Depends on the tag only, so Alt(Alt(b)) == b; the low bit forces a different bucket.
    return bucket ^ (((tag * 0x5bd1e995u) & bucket_mask_) | 1u);
  }

  // Bit i set when slot i of `b` holds `tag`.
  static std::uint32_t MatchTags(const Bucket& b, std::uint32_t tag) {
#if defined(__SSE2__)
    const __m128i want = _mm_set1_epi32(static_cast<int>(tag));
    const __m128i lo = _mm_load_si128(reinterpret_cast<const __m128i*>(b.tags));
    const __m128i hi = _mm_load_si128(reinterpret_cast<const __m128i*>(b.tags + 4));
    const int m_lo = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(lo, want)));
    const int m_hi = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(hi, want)));
    return static_cast<std::uint32_t>(m_lo | (m_hi << 4));
#else
    std::uint32_t mask = 0;
    for (std::size_t i = 0; i < kSlotsPerBucket; ++i) {
      mask |= static_cast<std::uint32_t>(b.tags[i] == tag) << i;
    }
    return mask;
#endif
  }

  Hit MatchIn(const Bucket& b, std::uint32_t tag, const Key& key) {
    for (std::uint32_t m = MatchTags(b, tag); m != 0; m &= m - 1) {
      const std::uint32_t ref = b.refs[__builtin_ctz(m)];
      Entry& e = entries_[ref >> 1];
      const auto dir = static_cast<FlowDir>(ref & 1);
      if (e.key(dir) == key) {
        return Hit{&e, ref >> 1, dir};
      }
    }
    return Hit{};
  }

  // The connection with `key`, expired or not.
  Hit Find(const Key& key, const ConnHash& h) {
    Hit hit = MatchIn(buckets_[h.bucket], h.tag, key);
    if (!hit.hit()) {
      hit = MatchIn(buckets_[AltBucket(h.bucket, h.tag)], h.tag, key);
    }
    return hit;
  }

  // The reference in the first slot matching h.tag, or kNoRef.
  std::uint32_t FirstCandidate(const ConnHash& h) const;

  InsertResult InsertNew(const Entry& entry, const ConnHash& client_hash,
                         const ConnHash& backend_hash, std::uint32_t now_ms);
  // Puts `ref` under `tag` in a free slot of `bucket`; false when it has none.
  static bool FillSlot(Bucket& bucket, std::uint32_t tag, std::uint32_t ref) {
    const std::uint32_t empty = MatchTags(bucket, 0);
    if (empty == 0) {
      return false;
    }
    const int slot = __builtin_ctz(empty);
    bucket.tags[slot] = tag;
    bucket.refs[slot] = ref;
    return true;
  }
  // Frees the slot of `bucket` holding `ref` under `tag`; false when none does.
  static bool ClearSlot(Bucket& bucket, std::uint32_t tag, std::uint32_t ref) {
    for (std::uint32_t m = MatchTags(bucket, tag); m != 0; m &= m - 1) {
      const int slot = __builtin_ctz(m);
      if (bucket.refs[slot] == ref) {
        bucket.tags[slot] = 0;
        return true;
      }
    }
    return false;
  }
  bool AddSlot(const ConnHash& h, std::uint32_t ref);
  bool AddSlotByDisplacement(const ConnHash& h, std::uint32_t ref);
  void RemoveSlot(const ConnHash& h, std::uint32_t ref);
  // Erase of a live entry whose keys' hashes the caller already has.
  void EraseHashed(std::uint32_t index, const ConnHash& client_hash, const ConnHash& backend_hash);

  static constexpr std::uint32_t kNoRef = 0xffffffffu;

  void* region_ = nullptr;
  std::size_t region_bytes_ = 0;   // what MemoryBytes() promised
  std::size_t mapping_bytes_ = 0;  // what was mapped (alignment slack included)
  void* mapping_ = nullptr;
  Bucket* buckets_ = nullptr;
  Entry* entries_ = nullptr;
  std::uint32_t* free_ = nullptr;  // stack of free entry numbers
  std::uint32_t free_top_ = 0;
  std::uint32_t bucket_mask_ = 0;
  std::uint32_t capacity_ = 0;
  std::uint32_t size_ = 0;
  std::uint32_t expire_cursor_ = 0;
  std::uint32_t high_water_ = 0;  // every entry in use has a lower number
  ConnTableStats stats_;
};

template <typename Entry>
template <typename OnFree>
InsertResult BasicConnTable<Entry>::Insert(const Entry& entry, std::uint32_t now_ms,
                                           OnFree&& on_free) {
  const ConnHash client_hash = Hash(entry.from_client);
  const ConnHash backend_hash = Hash(entry.from_backend);
  // Overlap the misses: four buckets, and the entry the insert will most likely take.
  PrefetchInsert(client_hash, backend_hash, 0);
  return InsertHashed(entry, client_hash, backend_hash, now_ms, on_free);
}

template <typename Entry>
template <typename OnFree>
InsertResult BasicConnTable<Entry>::InsertHashed(const Entry& entry, const ConnHash& client_hash,
                                                 const ConnHash& backend_hash, std::uint32_t now_ms,
                                                 OnFree&& on_free) {
  if (!entry.in_use() || entry.from_client == entry.from_backend) {
    return InsertResult{InsertStatus::kInvalid, 0};
  }
  for (const auto& [key, hash] : {std::pair{&entry.from_client, &client_hash},
                                  std::pair{&entry.from_backend, &backend_hash}}) {
    const Hit existing = Find(*key, *hash);
    if (!existing.hit()) {
      continue;
    }
    if (!Expired(*existing.entry, now_ms)) {
      return InsertResult{InsertStatus::kExists, existing.index};
    }
    on_free(std::as_const(*existing.entry));
    Erase(existing.index);
    ++stats_.expired;
  }
  return InsertNew(entry, client_hash, backend_hash, now_ms);
}

template <typename Entry>
template <typename OnFree>
std::uint32_t BasicConnTable<Entry>::ExpireSome(std::uint32_t now_ms, std::uint32_t budget,
                                                OnFree&& on_free) {
  // The expired entries of a stretch are found first, with their index buckets prefetched,
  // and erased after: the erases' cache misses overlap instead of adding up.
  struct Expiring {
    std::uint32_t index;
    ConnHash client_hash;
    ConnHash backend_hash;
  };
  std::array<Expiring, kExpireBatch> batch;
  std::uint32_t freed = 0;
  std::uint32_t left = budget < high_water_ ? budget : high_water_;
  std::uint32_t index = expire_cursor_ < high_water_ ? expire_cursor_ : 0;
  while (left > 0) {
    std::size_t count = 0;
    // Runs of entries up to the high-water mark (where the cursor wraps), so that the scan of
    // an entry, most often live and not expired, is a load and two tests.
    while (left > 0 && count < batch.size()) {
      const std::uint32_t from = index;
      const std::uint32_t stop = high_water_ - index <= left ? high_water_ : index + left;
      for (; index < stop; ++index) {
        const Entry& e = entries_[index];
        if (e.in_use() && Expired(e, now_ms)) [[unlikely]] {
          Expiring& x = batch[count++];
          x = {index, Hash(e.from_client), Hash(e.from_backend)};
          Prefetch(x.client_hash);
          Prefetch(x.backend_hash);
          if (count == batch.size()) {
            ++index;
            break;
          }
        }
      }
      left -= index - from;
      index = index >= high_water_ ? 0 : index;
    }
    for (std::size_t i = 0; i < count; ++i) {
      on_free(std::as_const(entries_[batch[i].index]));
      EraseHashed(batch[i].index, batch[i].client_hash, batch[i].backend_hash);
    }
    freed += static_cast<std::uint32_t>(count);
  }
  expire_cursor_ = index;
  stats_.expired += freed;
  return freed;
}

template <typename Entry>
template <typename Pred, typename OnFree>
std::uint32_t BasicConnTable<Entry>::EraseIfSome(SweepCursor& cursor, std::uint32_t budget,
                                                 Pred&& pred, OnFree&& on_free) {
  std::uint32_t erased = 0;
  for (; budget > 0 && cursor.next < high_water_; --budget, ++cursor.next) {
    const Entry& e = entries_[cursor.next];
    if (e.in_use() && pred(e)) {
      on_free(e);
      Erase(cursor.next);
      ++erased;
    }
  }
  cursor.done = cursor.next >= high_water_;
  return erased;
}

template <typename Entry>
template <typename Fn>
void BasicConnTable<Entry>::VisitSome(SweepCursor& cursor, std::uint32_t budget, Fn&& fn) const {
  for (; budget > 0 && cursor.next < high_water_; --budget, ++cursor.next) {
    const Entry& e = entries_[cursor.next];
    if (e.in_use()) {
      fn(cursor.next, e);
    }
  }
  cursor.done = cursor.next >= high_water_;
}

using ConnTable = BasicConnTable<ConnEntry>;
using ConnTable6 = BasicConnTable<ConnEntry6>;
extern template class BasicConnTable<ConnEntry>;
extern template class BasicConnTable<ConnEntry6>;

}  // namespace fulcrum::nat
