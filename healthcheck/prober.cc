#include "healthcheck/prober.h"

#include <algorithm>
#include <set>
#include <utility>

#include "healthcheck/hc_logger.h"

namespace fulcrum::hc {
namespace {

using model::HealthCheckType;
using model::HealthState;

// A UDP reply or a drained http answer lands here; 64 KiB holds any datagram.
constexpr std::size_t kScratchBytes = 64 * 1024;
// Local errors (no descriptors, no ports) are logged at most this often.
constexpr Clock::duration kLocalErrorLogPeriod = std::chrono::seconds(10);

constexpr std::uint64_t kSeqBits = 24;
constexpr std::uint32_t kSeqMask = (1u << kSeqBits) - 1;

std::uint64_t Cookie(std::uint32_t slot, std::uint32_t seq) {
  return (static_cast<std::uint64_t>(seq & kSeqMask) << 32) | slot;
}

}  // namespace

std::unique_ptr<Prober> Prober::Create(EventLoop& loop, ProberOptions options) {
  std::unique_ptr<Prober> prober(new Prober(loop, std::move(options)));
  loop.AddHandler(prober.get());
  return prober;
}

Prober::Prober(EventLoop& loop, ProberOptions options)
    : loop_(loop),
      options_(std::move(options)),
      jitter_(options_.seed),
      admission_(options_.max_in_flight),
      scratch_(kScratchBytes) {}

Prober::~Prober() { loop_.RemoveHandler(this); }

// ---- Targets.

void Prober::SetTargets(const std::vector<Target>& targets, TimePoint now) {
  std::set<TargetKey> wanted;
  for (const Target& target : targets) {
    wanted.insert(target.key);
  }
  std::vector<std::uint32_t> gone;
  for (const auto& [key, slot] : index_) {
    if (wanted.count(key) == 0) {
      gone.push_back(slot);
    }
  }
  for (const std::uint32_t slot : gone) {
    HcLog().Debug("{}: no longer a target", slots_[slot].target.key.ToString());
    RemoveTarget(slot);
  }
  std::size_t added = 0;
  std::size_t changed = 0;
  for (const Target& target : targets) {
    const auto it = index_.find(target.key);
    if (it == index_.end()) {
      added += AddTarget(target, now) ? 1 : 0;
    } else {
      changed += UpdateTarget(it->second, target, now) ? 1 : 0;
    }
  }
  if (added + gone.size() + changed > 0) {
    HcLog().Info("{} targets: {} new, {} gone, {} with a changed check", index_.size(), added,
                 gone.size(), changed);
  }
  AdmitWaiting(now);
}

bool Prober::Arm(Slot& slot, std::uint32_t index, const Target& target, HealthState initial,
                 TimePoint first_probe, TimePoint now) {
  Result<ProbeSpec> spec = CompileProbe(target);
  if (!spec.ok()) {
    HcLog().Warn("{}: cannot probe: {}", target.key.ToString(), spec.status().message());
    return false;
  }
  CancelProbe(slot);
  ++slot.generation;
  slot.target = target;
  slot.spec = std::move(*spec);
  slot.machine = RiseFall(initial, target.check.rise, target.check.fall, now);
  if (target.check.type != HealthCheckType::kNone) {
    timers_.Push({first_probe, index, slot.generation, TimerKind::kProbe});
  }
  return true;
}

bool Prober::AddTarget(const Target& target, TimePoint now) {
  std::uint32_t index = 0;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    index = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& slot = slots_[index];
  const HealthState initial = options_.fresh_start ? HealthState::kUnknown : target.state;
  const Clock::duration delay =
      options_.fresh_start ? Clock::duration::zero()
                           : jitter_.FirstDelay(std::chrono::seconds(target.check.interval));
  if (!Arm(slot, index, target, initial, now + delay, now)) {
    free_.push_back(index);
    return false;
  }
  slot.live = true;
  slot.reason = target.reason;
  slot.lbd_state = target.state;
  slot.probes = 0;
  index_.emplace(target.key, index);
  HcLog().Debug("{}: new target ({} check, lbd says {})", target.key.ToString(),
                model::HealthCheckTypeName(target.check.type),
                model::HealthStateName(target.state));
  MarkDirty(index);
  return true;
}

bool Prober::UpdateTarget(std::uint32_t index, const Target& target, TimePoint now) {
  Slot& slot = slots_[index];
  slot.lbd_state = target.state;
  if (target.check == slot.target.check && target.protocol == slot.target.protocol) {
    slot.target.state = target.state;
    slot.target.reason = target.reason;
    MarkDirty(index);
    return false;
  }
  const HealthState current = slot.machine.state();
  const HealthState initial = current != HealthState::kUnknown ? current : target.state;
  HcLog().Debug("{}: health check changed, counting again from {}", target.key.ToString(),
                model::HealthStateName(initial));
  const TimePoint first = now + jitter_.FirstDelay(std::chrono::seconds(target.check.interval));
  if (!Arm(slot, index, target, initial, first, now)) {
    RemoveTarget(index);
    return false;
  }
  MarkDirty(index);
  return true;
}

void Prober::RemoveTarget(std::uint32_t index) {
  Slot& slot = slots_[index];
  CancelProbe(slot);
  ++slot.generation;
  slot.live = false;
  slot.dirty = false;
  slot.report_in_flight = false;
  index_.erase(slot.target.key);
  free_.push_back(index);
}

void Prober::CancelProbe(Slot& slot) {
  if (slot.probe.active()) {
    (void)slot.probe.Abandon();
    admission_.Leave();
  }
  slot.waiting = false;
  ++slot.probe_seq;
}

// ---- Probing.

void Prober::ProbeDue(std::uint32_t index, TimePoint now) {
  Slot& slot = slots_[index];
  if (slot.probe.active() || slot.waiting) {
    return;
  }
  if (admission_.Enter({index, slot.generation})) {
    StartProbe(index, now);
  } else {
    slot.waiting = true;
  }
}

void Prober::StartProbe(std::uint32_t index, TimePoint now) {
  Slot& slot = slots_[index];
  slot.waiting = false;
  ++slot.probe_seq;
  ++slot.probes;
  ++stats_.probes;
  slot.next_due = now + jitter_.Period(slot.spec.interval);
  stats_.max_in_flight_seen = std::max(stats_.max_in_flight_seen, admission_.in_flight());
  std::optional<ProbeOutcome> outcome =
      slot.probe.Start(slot.spec, options_.sources.For(slot.spec.address), scratch_);
  if (outcome) {
    Finish(index, *outcome, now);
    return;
  }
  const Status watched =
      loop_.Watch(slot.probe.fd(), slot.probe.events(), this, Cookie(index, slot.probe_seq));
  if (!watched.ok()) {
    (void)slot.probe.Abandon();
    Finish(index, {ProbeOutcome::Kind::kInconclusive, watched.message()}, now);
    return;
  }
  timers_.Push({now + slot.spec.timeout, index, slot.probe_seq, TimerKind::kTimeout});
}

void Prober::Finish(std::uint32_t index, const ProbeOutcome& outcome, TimePoint now) {
  Slot& slot = slots_[index];
  admission_.Leave();
  const std::string key = slot.target.key.ToString();
  switch (outcome.kind) {
    case ProbeOutcome::Kind::kInconclusive:
      ++stats_.inconclusive;
      if (now - last_local_error_log_ >= kLocalErrorLogPeriod) {
        HcLog().Warn("{}: probe inconclusive, not counted: {} ({} such probes so far)", key,
                     outcome.reason, stats_.inconclusive);
        last_local_error_log_ = now;
      }
      break;
    case ProbeOutcome::Kind::kSuccess:
    case ProbeOutcome::Kind::kFailure: {
      const bool success = outcome.kind == ProbeOutcome::Kind::kSuccess;
      ++(success ? stats_.successes : stats_.failures);
      HcLog().Debug("{}: {}", key, outcome.reason);
      slot.reason = outcome.reason;
      const HealthState before = slot.machine.state();
      if (const std::optional<HealthState> after = slot.machine.Observe(success, now)) {
        ++stats_.transitions;
        HcLog().Info(
            "{}: {} -> {} ({}, {} in a row)", key, model::HealthStateName(before),
            model::HealthStateName(*after), outcome.reason,
            success ? slot.machine.consecutive_successes() : slot.machine.consecutive_failures());
        MarkDirty(index);
        if (on_transition_) {
          on_transition_(slot.target.key, before, *after, outcome.reason);
        }
      }
      break;
    }
  }
  timers_.Push({std::max(slot.next_due, now), index, slot.generation, TimerKind::kProbe});
}

void Prober::AdmitWaiting(TimePoint now) {
  while (const std::optional<Admission::Ticket> ticket = admission_.Next()) {
    Slot& slot = slots_[ticket->slot];
    if (!slot.live || slot.generation != ticket->generation || !slot.waiting) {
      admission_.Leave();
      continue;
    }
    StartProbe(ticket->slot, now);
  }
}

void Prober::OnIo(std::uint64_t cookie, std::uint32_t events) {
  const auto index = static_cast<std::uint32_t>(cookie & 0xffffffffu);
  const auto seq = static_cast<std::uint32_t>(cookie >> 32);
  if (index >= slots_.size()) {
    return;
  }
  Slot& slot = slots_[index];
  if (!slot.live || !slot.probe.active() || (slot.probe_seq & kSeqMask) != seq) {
    return;  // an event for a probe that has already ended
  }
  const TimePoint now = loop_.now();
  const std::uint32_t before = slot.probe.events();
  std::optional<ProbeOutcome> outcome = slot.probe.OnReady(slot.spec, events, scratch_);
  if (outcome) {
    Finish(index, *outcome, now);
  } else if (slot.probe.events() != before) {
    const Status rewatched =
        loop_.Rewatch(slot.probe.fd(), slot.probe.events(), this, Cookie(index, slot.probe_seq));
    if (!rewatched.ok()) {
      (void)slot.probe.Abandon();
      Finish(index, {ProbeOutcome::Kind::kInconclusive, rewatched.message()}, now);
    }
  }
  AdmitWaiting(now);
}

void Prober::OnTime(TimePoint now) {
  while (const std::optional<Timer> timer = timers_.PopDue(now)) {
    Slot& slot = slots_[timer->slot];
    if (!slot.live) {
      continue;
    }
    if (timer->kind == TimerKind::kProbe) {
      if (slot.generation == timer->tag) {
        ProbeDue(timer->slot, now);
      }
    } else if (slot.probe.active() && slot.probe_seq == timer->tag) {
      Finish(timer->slot, slot.probe.Abandon(), now);
    }
  }
  AdmitWaiting(now);
}

// ---- Reports.

bool Prober::NeedsReport(const Slot& slot) const {
  const HealthState decided = slot.machine.state();
  return slot.live && slot.target.check.type != HealthCheckType::kNone &&
         decided != HealthState::kUnknown && decided != slot.lbd_state && !slot.report_in_flight;
}

void Prober::MarkDirty(std::uint32_t index) {
  Slot& slot = slots_[index];
  if (!slot.dirty && NeedsReport(slot)) {
    slot.dirty = true;
    dirty_.push_back(index);
  }
}

std::vector<Report> Prober::TakeReports(std::size_t max) {
  std::vector<Report> reports;
  while (!dirty_.empty() && reports.size() < max) {
    const std::uint32_t index = dirty_.back();
    dirty_.pop_back();
    Slot& slot = slots_[index];
    if (!slot.dirty) {
      continue;
    }
    slot.dirty = false;
    if (!NeedsReport(slot)) {
      continue;
    }
    slot.report_in_flight = true;
    ++reports_in_flight_;
    reports.push_back({slot.target.key, slot.machine.state(), slot.reason});
  }
  return reports;
}

void Prober::ReportDone(const TargetKey& key, HealthState state, bool accepted) {
  if (reports_in_flight_ > 0) {
    --reports_in_flight_;
  }
  const auto it = index_.find(key);
  if (it == index_.end()) {
    return;
  }
  Slot& slot = slots_[it->second];
  if (!slot.report_in_flight) {
    return;
  }
  slot.report_in_flight = false;
  if (accepted) {
    slot.lbd_state = state;
    MarkDirty(it->second);
  } else {
    retry_.push_back(it->second);
  }
}

void Prober::RetryRefused() {
  for (const std::uint32_t index : retry_) {
    MarkDirty(index);
  }
  retry_.clear();
}

// ---- Views.

bool Prober::AllDecided() const {
  return std::all_of(index_.begin(), index_.end(), [this](const auto& entry) {
    const Slot& slot = slots_[entry.second];
    return slot.target.check.type == HealthCheckType::kNone ||
           slot.machine.state() != HealthState::kUnknown;
  });
}

TargetView Prober::View(const Slot& slot) const {
  return TargetView{slot.target.key,      slot.target.check.type,
                    slot.machine.state(), slot.lbd_state,
                    slot.reason,          slot.probes};
}

std::vector<TargetView> Prober::Targets() const {
  std::vector<TargetView> views;
  views.reserve(index_.size());
  for (const auto& [key, index] : index_) {
    views.push_back(View(slots_[index]));
  }
  return views;
}

std::optional<TargetView> Prober::Find(const TargetKey& key) const {
  const auto it = index_.find(key);
  if (it == index_.end()) {
    return std::nullopt;
  }
  return View(slots_[it->second]);
}

}  // namespace fulcrum::hc
