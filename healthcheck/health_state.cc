#include "healthcheck/health_state.h"

#include <algorithm>

namespace fulcrum::hc {

RiseFall::RiseFall(HealthState initial, std::uint32_t rise, std::uint32_t fall, TimePoint now)
    : state_(initial),
      rise_(std::max<std::uint32_t>(rise, 1)),
      fall_(std::max<std::uint32_t>(fall, 1)),
      since_(now) {}

std::optional<HealthState> RiseFall::Observe(bool success, TimePoint now) {
  if (success) {
    failures_ = 0;
    if (successes_ < rise_) {
      ++successes_;
    }
  } else {
    successes_ = 0;
    if (failures_ < fall_) {
      ++failures_;
    }
  }
  HealthState next = state_;
  if (state_ != HealthState::kUp && successes_ >= rise_) {
    next = HealthState::kUp;
  } else if (state_ != HealthState::kDown && failures_ >= fall_) {
    next = HealthState::kDown;
  }
  if (next == state_) {
    return std::nullopt;
  }
  state_ = next;
  since_ = now;
  return next;
}

}  // namespace fulcrum::hc
