#include "healthcheck/scheduler.h"

namespace fulcrum::hc {

std::optional<TimePoint> TimerHeap::Earliest() const {
  if (heap_.empty()) {
    return std::nullopt;
  }
  return heap_.top().when;
}

std::optional<Timer> TimerHeap::PopDue(TimePoint now) {
  if (heap_.empty() || heap_.top().when > now) {
    return std::nullopt;
  }
  Timer timer = heap_.top();
  heap_.pop();
  return timer;
}

Clock::duration Jitter::Uniform(Clock::duration low, Clock::duration high) {
  if (high <= low) {
    return low;
  }
  std::uniform_int_distribution<Clock::rep> pick(low.count(), high.count() - 1);
  return Clock::duration(pick(rng_));
}

Clock::duration Jitter::FirstDelay(Clock::duration interval) {
  return Uniform(Clock::duration::zero(), interval);
}

Clock::duration Jitter::Period(Clock::duration interval) {
  const Clock::duration tenth = interval / 10;
  return Uniform(interval - tenth, interval + tenth + Clock::duration(1));
}

bool Admission::Enter(const Ticket& ticket) {
  if (in_flight_ < limit_ && waiting_.empty()) {
    ++in_flight_;
    return true;
  }
  waiting_.push_back(ticket);
  return false;
}

void Admission::Leave() {
  if (in_flight_ > 0) {
    --in_flight_;
  }
}

std::optional<Admission::Ticket> Admission::Next() {
  if (in_flight_ >= limit_ || waiting_.empty()) {
    return std::nullopt;
  }
  const Ticket ticket = waiting_.front();
  waiting_.pop_front();
  ++in_flight_;
  return ticket;
}

}  // namespace fulcrum::hc
