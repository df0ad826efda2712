// Rise/fall thresholds: when a run of probe results changes a backend's health.
//
// Theory of operation: one RiseFall per (listener, backend) counts consecutive successes and
// consecutive failures. A target turns up after `rise` successes in a row and down after `fall`
// failures in a row; any other result breaks the run. The machine starts from the state lbd
// already holds, so a restarted prober does not flap: a backend lbd calls up stays up until
// `fall` failures, one it calls down stays down until `rise` successes, and an unknown one is
// decided by whichever run completes first. It is pure (no clock, no I/O): the caller passes
// the time of each result, which is kept only to say since when the state holds.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "common/model.h"

namespace fulcrum::hc {

using model::HealthState;
using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

class RiseFall {
 public:
  // `rise` and `fall` of 0 count as 1.
  RiseFall(HealthState initial, std::uint32_t rise, std::uint32_t fall, TimePoint now);

  // Feeds one probe result. Returns the new state when this result changed it.
  std::optional<HealthState> Observe(bool success, TimePoint now);

  HealthState state() const { return state_; }
  // When the current state began (construction time for the initial state).
  TimePoint since() const { return since_; }
  std::uint32_t consecutive_successes() const { return successes_; }
  std::uint32_t consecutive_failures() const { return failures_; }
  std::uint32_t rise() const { return rise_; }
  std::uint32_t fall() const { return fall_; }

 private:
  HealthState state_;
  std::uint32_t rise_;
  std::uint32_t fall_;
  std::uint32_t successes_ = 0;
  std::uint32_t failures_ = 0;
  TimePoint since_;
};

}  // namespace fulcrum::hc
