#include "nat/maglev.h"

#include <algorithm>
#include <bit>
#include <numeric>

#include "nat/flow_hash.h"

namespace fulcrum::nat {
namespace {

// Fixed seeds for the paper's h1 (offset) and h2 (skip): every node must derive the same lists.
constexpr std::uint64_t kOffsetSeed = 0x6a09e667f3bcc908ULL;
constexpr std::uint64_t kSkipSeed = 0xbb67ae8584caa73bULL;
constexpr std::uint16_t kEmptySlot = 0xffff;

// A backend's position in its preference list and its pace of turns.
struct Candidate {
  std::uint32_t next = 0;
  std::uint32_t skip = 0;
  std::uint32_t weight = 0;
  // Accumulated weight left after the last turn: always < weight.
  std::uint32_t residue = 0;
  // max_weight = whole_rounds * weight + remainder.
  std::uint32_t whole_rounds = 0;
  std::uint32_t remainder = 0;
  std::uint16_t index = 0;
};

// Rounds from a turn (or from the start) to the candidate's next turn: the fewest d with
// residue + d * weight >= max_weight, i.e. whole_rounds, plus one if remainder > residue.
std::uint32_t RoundsToNextTurn(const Candidate& c) {
  return c.whole_rounds + (c.remainder > c.residue ? 1 : 0);
}

// Which candidates take a turn in each upcoming round, as one bitmap row per round over the
// candidates in key order; rows are reused modulo a power of two larger than the longest gap
// between two turns of one candidate. Walking a row's set bits in order replays the round's
// turns in key order without visiting the candidates that sit the round out, so a set with a
// few heavy and many light backends costs no more than one with equal weights.
class TurnCalendar {
 public:
  TurnCalendar(std::size_t candidates, std::uint32_t longest_gap)
      : words_((candidates + 63) / 64),
        mask_(std::bit_ceil(longest_gap + 1) - 1),
        bits_(std::size_t{mask_ + 1} * words_, 0) {}

  void Schedule(std::uint64_t round, std::size_t candidate) {
    Row(round)[candidate / 64] |= std::uint64_t{1} << (candidate % 64);
  }
  std::uint64_t* Row(std::uint64_t round) { return &bits_[(round & mask_) * words_]; }
  std::size_t words() const { return words_; }

 private:
  std::size_t words_;
  std::uint32_t mask_;
  std::vector<std::uint64_t> bits_;
};

// Indices of `backends` in key order; fails on a repeated key or a weight out of range.
Result<std::vector<std::uint16_t>> KeyOrder(std::span<const MaglevBackend> backends) {
  std::vector<std::uint16_t> order(backends.size());
  std::iota(order.begin(), order.end(), std::uint16_t{0});
  std::sort(order.begin(), order.end(),
            [&](std::uint16_t a, std::uint16_t b) { return backends[a].key < backends[b].key; });
  for (std::uint16_t index : order) {
    if (backends[index].weight > MaglevTable::kMaxWeight) {
      return Error(ErrorCode::kInvalidParameter,
                   "maglev backend key {:#x}: weight {} is out of range 0..{}", backends[index].key,
                   backends[index].weight, MaglevTable::kMaxWeight);
    }
  }
  for (std::size_t i = 1; i < order.size(); ++i) {
    if (backends[order[i]].key == backends[order[i - 1]].key) {
      return Error(ErrorCode::kInvalidParameter, "maglev backend key {:#x} appears twice",
                   backends[order[i]].key);
    }
  }
  return order;
}

std::vector<Candidate> MakeCandidates(std::span<const MaglevBackend> backends,
                                      std::span<const std::uint16_t> order, std::uint32_t size) {
  std::vector<Candidate> candidates;
  candidates.reserve(order.size());
  for (std::uint16_t index : order) {
    const MaglevBackend& backend = backends[index];
    if (backend.weight == 0) {
      continue;
    }
    Candidate c;
    const MaglevPermutation permutation = MaglevTable::PermutationOf(backend.key, size);
    c.next = permutation.offset;
    c.skip = permutation.skip;
    c.weight = backend.weight;
    c.index = index;
    candidates.push_back(c);
  }
  return candidates;
}

// Sets every candidate's pace against the largest weight, which it returns.
std::uint32_t PaceTurns(std::vector<Candidate>& candidates) {
  std::uint32_t max_weight = 0;
  for (const Candidate& c : candidates) {
    max_weight = std::max(max_weight, c.weight);
  }
  for (Candidate& c : candidates) {
    c.whole_rounds = max_weight / c.weight;
    c.remainder = max_weight % c.weight;
  }
  return max_weight;
}

// Claims the first free slot of `c`'s preference list. A free slot exists whenever this is
// called, and the list visits every slot (prime size), so the probe loop ends.
void ClaimNextSlot(Candidate& c, std::vector<std::uint16_t>& slots, std::uint32_t size) {
  std::uint32_t pos = c.next;
  while (slots[pos] != kEmptySlot) {
    pos += c.skip;
    pos = pos >= size ? pos - size : pos;
  }
  slots[pos] = c.index;
  pos += c.skip;
  c.next = pos >= size ? pos - size : pos;
}

// Paper §3.4 Pseudocode 1 with weighted turns: in round r (from 1) every candidate adds its
// weight to its accumulator and takes a turn if that reaches the largest weight, which is then
// subtracted; within a round, turns go in key order. The calendar jumps from turn to turn.
std::vector<std::uint16_t> Populate(std::vector<Candidate>& candidates, std::uint32_t size) {
  const std::uint32_t max_weight = PaceTurns(candidates);
  // With nothing accumulated yet, the first gap is each candidate's longest.
  std::uint32_t longest_gap = 0;
  for (const Candidate& c : candidates) {
    longest_gap = std::max(longest_gap, RoundsToNextTurn(c));
  }
  TurnCalendar calendar(candidates.size(), longest_gap);
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    calendar.Schedule(RoundsToNextTurn(candidates[i]), i);
  }
  std::vector<std::uint16_t> slots(size, kEmptySlot);
  std::uint32_t filled = 0;
  for (std::uint64_t round = 1;; ++round) {
    std::uint64_t* row = calendar.Row(round);
    for (std::size_t word = 0; word < calendar.words(); ++word) {
      while (row[word] != 0) {
        const std::size_t i = word * 64 + static_cast<std::size_t>(std::countr_zero(row[word]));
        row[word] &= row[word] - 1;
        Candidate& c = candidates[i];
        ClaimNextSlot(c, slots, size);
        if (++filled == size) {
          return slots;
        }
        c.residue = c.residue + RoundsToNextTurn(c) * c.weight - max_weight;
        calendar.Schedule(round + RoundsToNextTurn(c), i);
      }
    }
  }
}

}  // namespace

MaglevPermutation MaglevTable::PermutationOf(std::uint64_t key, std::uint32_t size) {
  return MaglevPermutation{static_cast<std::uint32_t>(Mix64(key ^ kOffsetSeed) % size),
                           static_cast<std::uint32_t>(Mix64(key ^ kSkipSeed) % (size - 1)) + 1};
}

bool MaglevTable::IsPrime(std::uint32_t n) {
  if (n < 2) {
    return false;
  }
  for (std::uint32_t d = 2; std::uint64_t{d} * d <= n; ++d) {
    if (n % d == 0) {
      return false;
    }
  }
  return true;
}

Status MaglevTable::ValidateSize(std::uint32_t size) {
  if (size < 3 || size > kMaxSize) {
    return Error(ErrorCode::kInvalidParameter, "maglev table size {} is out of range 3..{}", size,
                 kMaxSize);
  }
  if (!IsPrime(size)) {
    return Error(ErrorCode::kInvalidParameter,
                 "maglev table size {} is not prime (every skip must be coprime with it)", size);
  }
  return Status::Ok();
}

Result<MaglevTable> MaglevTable::Build(std::span<const MaglevBackend> backends,
                                       std::uint32_t size) {
  FULCRUM_RETURN_IF_ERROR(ValidateSize(size));
  if (backends.size() > kMaxBackends) {
    return Error(ErrorCode::kLimitExceeded, "maglev table: {} backends, at most {}",
                 backends.size(), kMaxBackends);
  }
  Result<std::vector<std::uint16_t>> order = KeyOrder(backends);
  if (!order.ok()) {
    return order.status();
  }
  std::vector<Candidate> candidates = MakeCandidates(backends, *order, size);
  if (candidates.empty()) {
    return Error(ErrorCode::kInvalidParameter, "maglev table: no backend with weight > 0");
  }
  return MaglevTable(Populate(candidates, size), size);
}

}  // namespace fulcrum::nat
