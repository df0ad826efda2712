// Backend selection for new connections: wrr, rr, wlc, sh and maglev.
//
// Theory of operation: selection is split along ownership lines (STYLE §1, §2).
//
// - BackendSet is immutable. The control thread builds one per listener inside a config
//   snapshot from the group's backends (weight 0..100, health) and the listener's scheduler;
//   workers only read it. It sorts the backends by endpoint, so indices are the same on every
//   node for the same set, decides which backends take new connections ("eligible": weight > 0
//   and not down; "unknown" counts as up), and precomputes what a pick needs: the eligible list,
//   the Maglev table (sh, maglev, and the stateless fallback of every scheduler), and for large
//   wrr groups the smooth schedule over one period.
// - SchedulerState is mutable and owned by one worker core per listener: the wrr current
//   weights or cursor, the rr cursor, and this core's active-connection count per backend. The
//   control thread sizes it with the snapshot; the worker then only writes integers in place.
//
// Fail-open (as Tencent CLB and AWS do): when every backend with weight > 0 is down, the set
// treats them all as up and raises fail_open() so the caller can count and report it. A set
// with no backend of weight > 0 has no eligible backend: picks return kNoBackend and the caller
// drops the packet under its `no_backend` counter.
//
// Per-pick cost, with no allocation, lock, exception or virtual call: rr, sh, maglev and large
// wrr groups O(1); small wrr groups O(n) with n <= wrr_direct_max (the nginx algorithm, a few
// tens of adds); wlc O(log n).
//
// wlc keeps this core's eligible backends in a binary heap ordered by (active + 1) / weight,
// compared by cross-multiplication, then by least recently picked, so that ties rotate
// round-robin. A pick takes the root and sifts it down; a close sifts its backend up. LVS scans
// every backend per pick instead, which costs microseconds at 1024 backends.
//
// wrr, two ways. Up to wrr_direct_max eligible backends, each pick runs nginx's smooth weighted
// round robin on this core's current weights (exact order of nginx, no memory beyond n ints).
// Above that, the set precomputes one period of a smooth schedule and a pick reads the next
// entry: the schedule orders every backend's k-th turn by its deadline (k + 1/2) / weight
// (Sainte-Laguë's divisors), which puts exactly `weight` turns of each backend in a period of
// sum(weights) picks (after dividing the weights by their gcd) and keeps every prefix within
// about one pick of each backend's share. Periods longer than kWrrMaxSequence are cut there;
// each backend then stays within a pick or two of its share per cut period. The schedule is
// built in O(L log n) for L entries (a few ms for 1024 backends) and shared by all cores.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "nat/flow_hash.h"
#include "nat/flow_key.h"
#include "nat/maglev.h"

namespace fulcrum::nat {

enum class SchedulerKind : std::uint8_t { kWrr, kRr, kWlc, kSh, kMaglev };

// "wrr", "rr", "wlc", "sh", "maglev": the names of the control protocol and lbctl.
std::string_view SchedulerKindName(SchedulerKind kind);
std::optional<SchedulerKind> SchedulerKindFromName(std::string_view name);

// Health as the prober reports it; kUnknown (never probed, or checks off) counts as up.
enum class Health : std::uint8_t { kUnknown, kUp, kDown };

// Returned by a pick when the set has no eligible backend.
inline constexpr std::uint16_t kNoBackend = 0xffff;

// One backend of a group, as the control thread hands it over.
struct BackendSpec {
  AnyEndpoint endpoint;  // either family
  std::uint32_t weight = 10;
  Health health = Health::kUnknown;
  friend bool operator==(const BackendSpec&, const BackendSpec&) = default;
};

struct Backend {
  AnyEndpoint endpoint;
  std::uint32_t weight = 0;
  Health health = Health::kUnknown;
  // Takes new connections in this set (weight > 0 and up, or fail-open).
  bool eligible = false;
};

struct BackendSetOptions {
  SchedulerKind scheduler = SchedulerKind::kWrr;
  // Prime. Every set has a table (the stateless fallback needs one); listeners whose scheduler
  // does not hash may choose a smaller prime to save memory.
  std::uint32_t maglev_size = MaglevTable::kDefaultSize;
  // Largest eligible group that runs nginx wrr per pick; larger groups use the schedule.
  std::size_t wrr_direct_max = 16;
};

class BackendSet {
 public:
  static constexpr std::size_t kMaxBackends = 1024;
  static constexpr std::uint32_t kMaxWeight = 100;
  static constexpr std::size_t kWrrMaxSequence = 65536;

  // An empty set: no backend, every pick kNoBackend.
  BackendSet() = default;

  // Control thread. Fails on a weight above kMaxWeight, a repeated endpoint, more than
  // kMaxBackends backends, or a Maglev size that is not a prime.
  static Result<BackendSet> Create(std::span<const BackendSpec> specs,
                                   const BackendSetOptions& options = {});

  SchedulerKind scheduler() const { return scheduler_; }
  // Sorted by endpoint; a pick returns an index into this span.
  std::span<const Backend> backends() const { return backends_; }
  // Indices of the eligible backends, ascending.
  std::span<const std::uint16_t> eligible() const { return eligible_; }
  bool has_eligible() const { return !eligible_.empty(); }
  // Every backend of weight > 0 is down, and they all take new connections anyway.
  bool fail_open() const { return fail_open_; }
  // Empty when has_eligible() is false.
  const MaglevTable& maglev() const { return maglev_; }
  // The precomputed wrr schedule (indices into backends()); empty when wrr runs per pick.
  std::span<const std::uint16_t> wrr_sequence() const { return wrr_sequence_; }

  // Index of `endpoint` in backends(), by binary search.
  std::optional<std::uint16_t> Find(AnyEndpoint endpoint) const;

  // The stateless choice for a flow hash: the Maglev table's entry; kNoBackend when none. Every
  // packet of a flow maps to the same backend without state (the connection-table-full path).
  std::uint16_t LookupStateless(std::uint32_t flow_hash) const {
    return has_eligible() ? maglev_.Lookup(flow_hash) : kNoBackend;
  }
  // LookupStateless with this scheduler's hash: the client address for sh, else the 5-tuple.
  template <class Key>  // FlowKey or FlowKey6
  std::uint16_t PickStateless(const Key& flow) const {
    return LookupStateless(scheduler_ == SchedulerKind::kSh ? HashClient(flow.src_ip)
                                                            : HashFlow(flow));
  }

 private:
  friend class SchedulerState;

  void ChooseEligible();
  Status BuildMaglev(std::uint32_t size);
  void BuildWrrSequence();

  std::vector<Backend> backends_;
  std::vector<std::uint16_t> eligible_;
  // Weight of each eligible backend, by eligible position: contiguous for the wrr/wlc scans.
  std::vector<std::uint32_t> eligible_weight_;
  // Eligible position of each backend index, kNoBackend when not eligible.
  std::vector<std::uint16_t> eligible_position_;
  std::int64_t eligible_weight_sum_ = 0;
  std::vector<std::uint16_t> wrr_sequence_;
  MaglevTable maglev_;
  SchedulerKind scheduler_ = SchedulerKind::kWrr;
  bool fail_open_ = false;
};

class SchedulerState {
 public:
  // Unbound: every pick kNoBackend.
  SchedulerState() = default;

  // Sizes the state for `set`, which must outlive it and stay in place. `worker` staggers the
  // cursors so that cores do not all start on one backend.
  static SchedulerState Create(const BackendSet& set, std::uint32_t worker = 0);
  // Create in place: the state is sized for `set` anew, reusing the storage it has, so that a
  // worker rebinding to a set no larger than the last allocates nothing.
  void Reset(const BackendSet& set, std::uint32_t worker);
  // Unbound again (every pick kNoBackend); keeps its storage for the next Reset.
  void Unbind();

  // Worker: chooses a backend for a new connection and counts it active on this core. Returns
  // an index into set().backends(), or kNoBackend. Every pick that does not end in a connection
  // (e.g. no local port left) and every connection that ends is reported to OnConnectionClosed.
  std::uint16_t Pick(const FlowKey& flow) { return PickFor(flow); }
  std::uint16_t Pick(const FlowKey6& flow) { return PickFor(flow); }
  // Worker: counts a new connection on `backend` (an index into set().backends(), eligible),
  // chosen without a pick (session persistence). Returns `backend`.
  std::uint16_t Take(std::uint16_t backend);
  // Worker: a connection this core counted on `backend` (an index into set().backends()) ended.
  void OnConnectionClosed(std::uint16_t backend);
  // Worker, when it adopts a new snapshot: carries this core's active counts over from the state
  // of the previous snapshot, matching backends by endpoint. O(n + m), no allocation.
  void InheritConnections(const SchedulerState& previous);

  std::uint32_t active_connections(std::uint16_t backend) const { return active_[backend]; }
  const BackendSet* set() const { return set_; }

 private:
  template <class Key>
  std::uint16_t PickFor(const Key& flow);
  std::uint16_t PickWrrDirect();
  std::uint16_t PickWrrSequence();
  std::uint16_t PickRr();
  std::uint16_t PickWlc();
  std::uint16_t Count(std::uint16_t backend);
  // wlc heap over eligible positions.
  bool Lighter(std::uint16_t a, std::uint16_t b) const;
  void SiftUp(std::size_t slot);
  void SiftDown(std::size_t slot);
  void Heapify();
  void Place(std::size_t slot, std::uint16_t position);

  const BackendSet* set_ = nullptr;
  // nginx current_weight per eligible position (direct wrr only).
  std::vector<std::int64_t> wrr_current_;
  // Per backend index, this core only.
  std::vector<std::uint32_t> active_;
  // wrr schedule position or rr position, per the scheduler.
  std::uint32_t cursor_ = 0;
  // wlc only, by eligible position: what the heap compares, in one place (active mirrors
  // active_ of the eligible backend, so a comparison reads one 16-byte entry per side).
  struct WlcEntry {
    std::uint64_t last_pick = 0;
    std::uint32_t active = 0;
    std::uint32_t weight = 0;
  };
  std::vector<WlcEntry> wlc_entry_;
  // wlc only: the heap of eligible positions, and each position's heap slot.
  std::vector<std::uint16_t> wlc_heap_;
  std::vector<std::uint16_t> wlc_slot_;
  std::uint64_t wlc_picks_ = 0;
};

}  // namespace fulcrum::nat
