// When probes run: a timer heap, jitter, and the bound on probes in flight.
//
// Theory of operation: every target is probed every `interval`, but thousands of targets
// learnt in one answer must not fire in the same millisecond, nor stay locked in step
// forever. So a new target's first probe waits a uniform delay in [0, interval), which
// spreads a batch evenly over one interval, and every later gap is interval x U[0.9, 1.1]
// (±10%), which keeps targets from drifting back into step. The random source is seeded,
// so tests replay exact schedules.
//
// Deadlines (next probe, probe timeout) sit in one binary heap ordered by time. Entries are
// never removed early: each carries the (slot, tag) it was made for, and its owner drops an
// entry whose tag no longer matches (the target was removed or reconfigured, the probe
// already ended). That keeps every operation O(log n) with no search.
//
// An Admission queue bounds the probes in flight (sockets open at once): a probe that comes
// due while the bound is reached waits in FIFO order and starts when another ends, so the
// bound smooths bursts without starving anyone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <queue>
#include <random>
#include <vector>

#include "healthcheck/health_state.h"

namespace fulcrum::hc {

enum class TimerKind : std::uint8_t { kProbe, kTimeout };

struct Timer {
  TimePoint when;
  std::uint32_t slot = 0;
  std::uint32_t tag = 0;  // kProbe: the slot's generation; kTimeout: the probe's sequence
  TimerKind kind = TimerKind::kProbe;
};

class TimerHeap {
 public:
  void Push(const Timer& timer) { heap_.push(timer); }
  std::optional<TimePoint> Earliest() const;
  // The earliest timer if it is due at `now`, removed from the heap.
  std::optional<Timer> PopDue(TimePoint now);
  std::size_t size() const { return heap_.size(); }

 private:
  struct Later {
    bool operator()(const Timer& a, const Timer& b) const { return a.when > b.when; }
  };
  std::priority_queue<Timer, std::vector<Timer>, Later> heap_;
};

class Jitter {
 public:
  explicit Jitter(std::uint64_t seed) : rng_(seed) {}

  // The delay before a new target's first probe: uniform in [0, interval).
  Clock::duration FirstDelay(Clock::duration interval);
  // The gap to the next probe: uniform in [0.9, 1.1] x interval.
  Clock::duration Period(Clock::duration interval);

 private:
  Clock::duration Uniform(Clock::duration low, Clock::duration high);

  std::mt19937_64 rng_;
};

// Bounds the probes in flight; waiting entries leave in arrival order.
class Admission {
 public:
  struct Ticket {
    std::uint32_t slot;
    std::uint32_t generation;
  };

  explicit Admission(std::size_t limit) : limit_(limit == 0 ? 1 : limit) {}

  // True when the caller may start now (and holds a place); false when `ticket` was queued,
  // which it also is while others wait, so that nobody overtakes the queue.
  bool Enter(const Ticket& ticket);
  // Gives a place back.
  void Leave();
  // The next waiting ticket, when a place is free; it then holds that place. The caller
  // checks the ticket is still current and calls Leave() if it is not.
  std::optional<Ticket> Next();

  std::size_t in_flight() const { return in_flight_; }
  std::size_t waiting() const { return waiting_.size(); }
  std::size_t limit() const { return limit_; }

 private:
  std::size_t limit_;
  std::size_t in_flight_ = 0;
  std::deque<Ticket> waiting_;
};

}  // namespace fulcrum::hc
