#include "nat/conn_table.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

namespace fulcrum::nat {
namespace {

constexpr std::size_t kHugePage = 2u << 20;
// Index slots per connection (one per key) and the highest slot occupancy at full capacity
// that the index is sized for, in percent. Bucketized cuckoo hashing with 8-slot buckets
// still inserts reliably well above this (MemC3 reports ~95%).
constexpr std::uint64_t kSlotsPerConn = 2;
constexpr std::uint64_t kMaxLoadPercent = 85;
// Bounds the breadth-first search for a displacement path: 2 roots, 16 children, 128
// grandchildren, i.e. paths of up to 3 moves.
constexpr std::size_t kMaxSearchNodes = 2 + 16 + 128;

struct Layout {
  std::uint32_t buckets = 0;
  std::size_t bucket_bytes = 0;
  std::size_t entry_bytes = 0;
  std::size_t free_bytes = 0;
  std::size_t total() const { return bucket_bytes + entry_bytes + free_bytes; }
};

template <typename Entry>
Layout LayoutFor(std::uint32_t capacity) {
  const std::uint64_t slots =
      (std::uint64_t{capacity} * kSlotsPerConn * 100 + kMaxLoadPercent - 1) / kMaxLoadPercent;
  const std::uint64_t buckets =
      (slots + BasicConnTable<Entry>::kSlotsPerBucket - 1) / BasicConnTable<Entry>::kSlotsPerBucket;
  Layout layout;
  layout.buckets = static_cast<std::uint32_t>(std::bit_ceil(std::max<std::uint64_t>(buckets, 2)));
  layout.bucket_bytes = std::size_t{layout.buckets} * 64;
  layout.entry_bytes = std::size_t{capacity} * sizeof(Entry);
  layout.free_bytes = std::size_t{capacity} * sizeof(std::uint32_t);
  return layout;
}

}  // namespace

template <typename Entry>
std::size_t BasicConnTable<Entry>::MemoryBytes(std::uint32_t capacity) {
  return LayoutFor<Entry>(capacity).total();
}

template <typename Entry>
Result<BasicConnTable<Entry>> BasicConnTable<Entry>::Create(std::uint32_t capacity) {
  if (capacity == 0 || capacity > kMaxCapacity) {
    return Error(ErrorCode::kInvalidParameter,
                 "connection table capacity {} is out of range (1..{})", capacity, kMaxCapacity);
  }
  const Layout layout = LayoutFor<Entry>(capacity);
  // Map with a huge page of slack so the region can start on a huge-page boundary.
  const std::size_t mapping_bytes = layout.total() + kHugePage;
  void* mapping =
      mmap(nullptr, mapping_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED) {
    return Error(ErrorCode::kLimitExceeded,
                 "cannot reserve {} bytes for a connection table of {} connections: {}",
                 mapping_bytes, capacity, std::strerror(errno));
  }
  const auto base = reinterpret_cast<std::uintptr_t>(mapping);
  auto* region = reinterpret_cast<std::byte*>((base + kHugePage - 1) & ~(kHugePage - 1));
  // Best effort: fewer TLB misses on random access. Failure only costs speed.
  (void)madvise(region, layout.total(), MADV_HUGEPAGE);
  // Prefault now so that no page fault lands on the packet path.
  std::memset(region, 0, layout.total());

  BasicConnTable table;
  table.mapping_ = mapping;
  table.mapping_bytes_ = mapping_bytes;
  table.region_ = region;
  table.region_bytes_ = layout.total();
  table.buckets_ = reinterpret_cast<Bucket*>(region);
  table.entries_ = reinterpret_cast<Entry*>(region + layout.bucket_bytes);
  table.free_ = reinterpret_cast<std::uint32_t*>(region + layout.bucket_bytes + layout.entry_bytes);
  table.bucket_mask_ = layout.buckets - 1;
  table.capacity_ = capacity;
  // Popped in ascending order: a lightly used table stays dense at the front.
  for (std::uint32_t i = 0; i < capacity; ++i) {
    table.free_[i] = capacity - 1 - i;
  }
  table.free_top_ = capacity;
  return table;
}

template <typename Entry>
BasicConnTable<Entry>::BasicConnTable(BasicConnTable&& other) noexcept {
  *this = std::move(other);
}

template <typename Entry>
BasicConnTable<Entry>& BasicConnTable<Entry>::operator=(BasicConnTable&& other) noexcept {
  if (this != &other) {
    if (mapping_ != nullptr) {
      munmap(mapping_, mapping_bytes_);
    }
    region_ = std::exchange(other.region_, nullptr);
    region_bytes_ = std::exchange(other.region_bytes_, 0);
    mapping_bytes_ = std::exchange(other.mapping_bytes_, 0);
    mapping_ = std::exchange(other.mapping_, nullptr);
    buckets_ = std::exchange(other.buckets_, nullptr);
    entries_ = std::exchange(other.entries_, nullptr);
    free_ = std::exchange(other.free_, nullptr);
    free_top_ = std::exchange(other.free_top_, 0);
    bucket_mask_ = std::exchange(other.bucket_mask_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
    size_ = std::exchange(other.size_, 0);
    expire_cursor_ = std::exchange(other.expire_cursor_, 0);
    high_water_ = std::exchange(other.high_water_, 0);
    stats_ = std::exchange(other.stats_, {});
  }
  return *this;
}

template <typename Entry>
BasicConnTable<Entry>::~BasicConnTable() {
  if (mapping_ != nullptr) {
    munmap(mapping_, mapping_bytes_);
  }
}

template <typename Entry>
std::uint32_t BasicConnTable<Entry>::FirstCandidate(const ConnHash& h) const {
  const Bucket& primary = buckets_[h.bucket];
  if (const std::uint32_t m = MatchTags(primary, h.tag); m != 0) {
    return primary.refs[__builtin_ctz(m)];
  }
  const Bucket& alternate = buckets_[AltBucket(h.bucket, h.tag)];
  if (const std::uint32_t m = MatchTags(alternate, h.tag); m != 0) {
    return alternate.refs[__builtin_ctz(m)];
  }
  return kNoRef;
}

template <typename Entry>
void BasicConnTable<Entry>::LookupBulk(std::span<const Key> keys, std::span<Hit> hits,
                                       std::uint32_t now_ms) {
  std::array<ConnHash, kBulkChunk> hashes;
  std::array<std::uint32_t, kBulkChunk> candidates;
  for (std::size_t base = 0; base < keys.size(); base += kBulkChunk) {
    const std::size_t n = std::min(kBulkChunk, keys.size() - base);
    // Stage 1: hash and prefetch both buckets of every key.
    for (std::size_t i = 0; i < n; ++i) {
      hashes[i] = Hash(keys[base + i]);
      Prefetch(hashes[i]);
    }
    // Stage 2: match tags and prefetch the first candidate entry of every key.
    for (std::size_t i = 0; i < n; ++i) {
      candidates[i] = FirstCandidate(hashes[i]);
      if (candidates[i] != kNoRef) {
        __builtin_prefetch(&entries_[candidates[i] >> 1]);
      }
    }
    // Stage 3: confirm the candidate; a tag collision (rare) falls back to the full search.
    for (std::size_t i = 0; i < n; ++i) {
      const Key& key = keys[base + i];
      Hit& out = hits[base + i];
      const std::uint32_t ref = candidates[i];
      if (ref == kNoRef) {
        out = Hit{};
        continue;
      }
      Entry& e = entries_[ref >> 1];
      const auto dir = static_cast<FlowDir>(ref & 1);
      out = e.key(dir) == key ? Hit{&e, ref >> 1, dir} : Find(key, hashes[i]);
      if (out.hit() && Expired(*out.entry, now_ms)) {
        out = Hit{};
      }
    }
  }
}

template <typename Entry>
InsertResult BasicConnTable<Entry>::InsertNew(const Entry& entry, const ConnHash& client_hash,
                                              const ConnHash& backend_hash, std::uint32_t now_ms) {
  if (free_top_ == 0) {
    return InsertResult{InsertStatus::kFull, 0};
  }
  const std::uint32_t index = free_[free_top_ - 1];
  const std::uint32_t client_ref = Ref(index, FlowDir::kFromClient);
  if (!AddSlot(client_hash, client_ref)) {
    ++stats_.index_full;
    return InsertResult{InsertStatus::kFull, 0};
  }
  if (!AddSlot(backend_hash, Ref(index, FlowDir::kFromBackend))) {
    RemoveSlot(client_hash, client_ref);
    ++stats_.index_full;
    return InsertResult{InsertStatus::kFull, 0};
  }
  --free_top_;
  high_water_ = index >= high_water_ ? index + 1 : high_water_;
  Entry& e = entries_[index];
  e = entry;
  e.created_ms = now_ms;
  e.last_seen_ms = now_ms;
  ++size_;
  ++stats_.inserts;
  return InsertResult{InsertStatus::kInserted, index};
}

template <typename Entry>
bool BasicConnTable<Entry>::AddSlot(const ConnHash& h, std::uint32_t ref) {
  // The alternate bucket is computed only when the primary is full.
  return FillSlot(buckets_[h.bucket], h.tag, ref) ||
         FillSlot(buckets_[AltBucket(h.bucket, h.tag)], h.tag, ref) ||
         AddSlotByDisplacement(h, ref);
}

// Breadth-first search for a bucket with a free slot, reachable by moving slots to their
// alternate buckets (MemC3, Fan et al., NSDI 2013, section 4.3). The moves are then made from
// the free end backwards, so every slot stays findable at every step.
template <typename Entry>
bool BasicConnTable<Entry>::AddSlotByDisplacement(const ConnHash& h, std::uint32_t ref) {
  struct Node {
    std::uint32_t bucket;
    std::int16_t parent;       // node whose slot moves into this bucket; -1 for the roots
    std::uint8_t parent_slot;  // which slot of the parent's bucket moves
  };
  std::array<Node, kMaxSearchNodes> nodes;
  std::size_t count = 0;
  nodes[count++] = Node{h.bucket, -1, 0};
  nodes[count++] = Node{AltBucket(h.bucket, h.tag), -1, 0};

  auto on_path = [&nodes](std::size_t node, std::uint32_t bucket) {
    for (auto i = static_cast<std::int32_t>(node); i >= 0; i = nodes[i].parent) {
      if (nodes[i].bucket == bucket) {
        return true;
      }
    }
    return false;
  };

  for (std::size_t head = 0; head < count; ++head) {
    const Bucket& bucket = buckets_[nodes[head].bucket];
    for (std::uint8_t slot = 0; slot < kSlotsPerBucket; ++slot) {
      const std::uint32_t alt = AltBucket(nodes[head].bucket, bucket.tags[slot]);
      // A bucket may appear only once on a path, or a move could pick up a slot that an
      // earlier move already replaced.
      if (on_path(head, alt)) {
        continue;
      }
      Bucket& target = buckets_[alt];
      if (const std::uint32_t empty = MatchTags(target, 0); empty != 0) {
        // Move head's slot into the free slot, then each parent's slot into the slot just
        // vacated, until a root bucket has room for the new key.
        std::size_t node = head;
        std::uint8_t moving = slot;
        Bucket* into = &target;
        int into_slot = __builtin_ctz(empty);
        while (true) {
          Bucket& from = buckets_[nodes[node].bucket];
          into->tags[into_slot] = from.tags[moving];
          into->refs[into_slot] = from.refs[moving];
          ++stats_.cuckoo_displacements;
          into = &from;
          into_slot = moving;
          if (nodes[node].parent < 0) {
            break;
          }
          moving = nodes[node].parent_slot;
          node = static_cast<std::size_t>(nodes[node].parent);
        }
        into->tags[into_slot] = h.tag;
        into->refs[into_slot] = ref;
        return true;
      }
      if (count < nodes.size()) {
        nodes[count++] = Node{alt, static_cast<std::int16_t>(head), slot};
      }
    }
  }
  return false;
}

template <typename Entry>
void BasicConnTable<Entry>::RemoveSlot(const ConnHash& h, std::uint32_t ref) {
  if (!ClearSlot(buckets_[h.bucket], h.tag, ref)) {
    ClearSlot(buckets_[AltBucket(h.bucket, h.tag)], h.tag, ref);
  }
}

template <typename Entry>
void BasicConnTable<Entry>::Erase(std::uint32_t index) {
  if (index >= capacity_ || !entries_[index].in_use()) {
    return;
  }
  const Entry& e = entries_[index];
  const ConnHash client_hash = Hash(e.from_client);
  const ConnHash backend_hash = Hash(e.from_backend);
  Prefetch(client_hash);
  Prefetch(backend_hash);
  EraseHashed(index, client_hash, backend_hash);
}

template <typename Entry>
void BasicConnTable<Entry>::EraseHashed(std::uint32_t index, const ConnHash& client_hash,
                                        const ConnHash& backend_hash) {
  RemoveSlot(client_hash, Ref(index, FlowDir::kFromClient));
  RemoveSlot(backend_hash, Ref(index, FlowDir::kFromBackend));
  entries_[index].from_client.proto = 0;
  free_[free_top_++] = index;
  --size_;
  ++stats_.erases;
}

template class BasicConnTable<ConnEntry>;
template class BasicConnTable<ConnEntry6>;

}  // namespace fulcrum::nat
