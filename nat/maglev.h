// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
// Load Balancer", NSDI 2016, §3.4).
//
// Theory of operation: a table of M slots (M prime) maps a flow hash to a backend. Each backend
// derives from its key an offset = h1(key) mod M and a skip = h2(key) mod (M-1) + 1; because M
// is prime every skip is coprime with M, so offset, offset+skip, ... (mod M) visits every slot:
// that is the backend's preference list. Backends take turns in a fixed order (sorted by key);
// on its turn a backend claims the first free slot of its preference list. Balance comes first
// (every backend ends within one slot of its share) and disruption second: removing one of N
// backends frees ~1/N of the slots, and the others keep nearly all of theirs, because each
// backend's preference list does not depend on the rest of the set.
//
// Weights: the paper only says they alter "the relative frequency of the backends' turns". We
// use accumulated weight against the maximum weight (the scheme of Katran's MaglevHashV2): every
// round each backend adds its weight to an accumulator and takes a turn whenever the accumulator
// reaches the largest weight, which then is subtracted. The heaviest backend takes a turn every
// round; a backend of weight w takes w/max of them, so its slot count stays within about one
// slot of M * w / sum(w). Weight 0 gets no slots.
//
// Determinism: the table is a function of the set of (key, weight) pairs and M only. The build
// sorts by key (so insertion order does not matter) and derives h1/h2 from fixed seeds, so every
// LB node computes the same table. Slots hold indices into the caller's span.
//
// Cost: building is O(M log M) expected (the paper measures 1.8 ms for M = 65537); a calendar
// of turns (see maglev.cc) keeps skewed weights from adding a scan of every backend per round.
// It runs on the control thread inside a config snapshot. Lookup is one multiply, one shift and one
// load.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"

namespace fulcrum::nat {

// One backend as the table builder sees it.
struct MaglevBackend {
  // Stable identity (e.g. the endpoint's address and port packed): hashed for offset and skip,
  // and the turn order. Must be unique within a build.
  std::uint64_t key = 0;
  // Relative frequency of turns; 0 = no slots.
  std::uint32_t weight = 0;
};

// A backend's preference list: slot j is (offset + j * skip) mod size.
struct MaglevPermutation {
  std::uint32_t offset = 0;
  std::uint32_t skip = 0;
};

class MaglevTable {
 public:
  // The paper's production size: 128 KiB of uint16_t slots, > 100 slots per backend up to 655.
  static constexpr std::uint32_t kDefaultSize = 65537;
  // Slots hold 16-bit indices; one value is the "empty" marker used during the build.
  static constexpr std::size_t kMaxBackends = 65535;
  // Weights are relative; the cap bounds the build's turn calendar (rows = max/min weight).
  static constexpr std::uint32_t kMaxWeight = 1000;
  // Bounds memory (32 MiB) and build time for a mistyped size.
  static constexpr std::uint32_t kMaxSize = 1U << 24;

  // An empty table: Lookup must not be called on it (size() == 0).
  MaglevTable() = default;

  // Builds the table for `backends` (at least one with weight > 0, weights <= kMaxWeight, keys
  // unique) with `size` slots; `size` must be a prime in [3, kMaxSize]. Slots hold indices into
  // `backends`.
  static Result<MaglevTable> Build(std::span<const MaglevBackend> backends,
                                   std::uint32_t size = kDefaultSize);

  // The paper's offset = h1(key) mod size and skip = h2(key) mod (size - 1) + 1, from fixed
  // seeds.
  static MaglevPermutation PermutationOf(std::uint64_t key, std::uint32_t size);

  static bool IsPrime(std::uint32_t n);
  // Ok when `size` is a prime in [3, kMaxSize].
  static Status ValidateSize(std::uint32_t size);

  // Backend index for a 32-bit flow hash. Maps the hash onto [0, size) by multiply-shift
  // (Lemire, "Fast random integer generation in an interval", 2019) instead of `hash % M`:
  // same uniformity for a well-mixed hash, without a division per packet.
  std::uint16_t Lookup(std::uint32_t hash) const {
    return slots_[static_cast<std::uint32_t>((std::uint64_t{hash} * size_) >> 32)];
  }

  std::uint32_t size() const { return size_; }
  std::span<const std::uint16_t> slots() const { return slots_; }

 private:
  MaglevTable(std::vector<std::uint16_t> slots, std::uint32_t size)
      : slots_(std::move(slots)), size_(size) {}

  std::vector<std::uint16_t> slots_;
  std::uint32_t size_ = 0;
};

}  // namespace fulcrum::nat
