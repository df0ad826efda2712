// The prober: every target, its schedule, its probe in flight, its rise/fall state, and what
// lbd still has to be told.
//
// Theory of operation: targets live in slots (a vector with a free list) found by
// (listener, backend). A slot's generation changes whenever its target is removed or
// reconfigured, and each probe gets a new sequence number; timers and epoll cookies carry
// them, so anything left over from an earlier life of a slot is recognised and dropped.
//
// SetTargets() reconciles with the list lbd gave: new targets start from the state lbd holds
// (no flapping when the prober restarts) with their first probe spread over one interval;
// targets whose check is unchanged keep their counters and schedule; a changed check starts
// over from the current state; vanished targets are closed. A target with check type `none`
// is listed but never probed nor reported.
//
// One probe per target is in flight at most, and at most `max_in_flight` in all (scheduler.h).
// Each conclusive outcome feeds the target's RiseFall (health_state.h); inconclusive ones
// (local errors) are logged and skipped. A transition is logged at info and queued for lbd.
//
// Reporting keeps "what lbd holds" per target (from its list, then from its acks). A target
// whose decided state (up or down) differs from that is dirty; TakeReports() hands dirty
// targets out once each, ReportDone() records lbd's answer. Only the latest state is ever
// sent, so a report lost to an lbd restart is simply sent again after re-learning the list,
// and lbd ends up holding the prober's view: a restarted lbd (all unknown) is re-told at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/model.h"
#include "common/net_addr.h"
#include "common/status.h"
#include "healthcheck/event_loop.h"
#include "healthcheck/health_state.h"
#include "healthcheck/probe.h"
#include "healthcheck/scheduler.h"
#include "healthcheck/targets.h"

namespace fulcrum::hc {

struct ProberOptions {
  std::size_t max_in_flight = 1024;
  ProbeSources sources;    // each probe is bound to the source of its backend's family
  std::uint64_t seed = 0;  // jitter seed
  // --once: ignore lbd's states (start unknown) and probe new targets at once.
  bool fresh_start = false;
};

struct ProberStats {
  std::uint64_t probes = 0;  // started
  std::uint64_t successes = 0;
  std::uint64_t failures = 0;
  std::uint64_t inconclusive = 0;
  std::uint64_t transitions = 0;
  std::size_t max_in_flight_seen = 0;
};

// What the prober knows of one target, for tables and tests.
struct TargetView {
  TargetKey key;
  model::HealthCheckType type = model::HealthCheckType::kTcp;
  model::HealthState state = model::HealthState::kUnknown;      // decided by the prober
  model::HealthState lbd_state = model::HealthState::kUnknown;  // as lbd holds it
  std::string reason;                                           // of the last probe
  std::uint64_t probes = 0;
};

struct Report {
  TargetKey key;
  model::HealthState state = model::HealthState::kUnknown;
  std::string reason;
};

class Prober : public EventLoop::Handler {
 public:
  using TransitionFn = std::function<void(const TargetKey& key, model::HealthState from,
                                          model::HealthState to, const std::string& reason)>;

  static std::unique_ptr<Prober> Create(EventLoop& loop, ProberOptions options);
  ~Prober() override;
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  // Makes `targets` the set probed.
  void SetTargets(const std::vector<Target>& targets, TimePoint now);
  // Called on every state change (after it is logged); optional.
  void set_on_transition(TransitionFn fn) { on_transition_ = std::move(fn); }

  // Up to `max` targets lbd must be told about; each is handed out once until ReportDone().
  std::vector<Report> TakeReports(std::size_t max);
  // lbd's answer to a report: `accepted` means lbd now holds `state`. A report that was not
  // accepted waits for RetryRefused(), so that a refusing lbd is not asked again at once.
  void ReportDone(const TargetKey& key, model::HealthState state, bool accepted);
  void RetryRefused();
  bool has_reports() const { return !dirty_.empty(); }
  std::size_t reports_in_flight() const { return reports_in_flight_; }

  // True when every probed target is up or down.
  bool AllDecided() const;
  std::vector<TargetView> Targets() const;
  std::optional<TargetView> Find(const TargetKey& key) const;
  std::size_t target_count() const { return index_.size(); }
  std::size_t in_flight() const { return admission_.in_flight(); }
  const ProberStats& stats() const { return stats_; }

  // EventLoop::Handler
  void OnIo(std::uint64_t cookie, std::uint32_t events) override;
  std::optional<TimePoint> NextDeadline() const override { return timers_.Earliest(); }
  void OnTime(TimePoint now) override;

 private:
  struct Slot {
    bool live = false;
    std::uint32_t generation = 0;
    std::uint32_t probe_seq = 0;
    Target target;
    ProbeSpec spec;
    RiseFall machine{model::HealthState::kUnknown, 1, 1, TimePoint{}};
    ProbeSocket probe;
    bool waiting = false;  // queued for admission
    TimePoint next_due;
    std::string reason;
    model::HealthState lbd_state = model::HealthState::kUnknown;
    bool dirty = false;
    bool report_in_flight = false;
    std::uint64_t probes = 0;
  };

  Prober(EventLoop& loop, ProberOptions options);

  // Each returns whether it added (or restarted) a target.
  bool AddTarget(const Target& target, TimePoint now);
  bool UpdateTarget(std::uint32_t slot, const Target& target, TimePoint now);
  void RemoveTarget(std::uint32_t slot);
  bool Arm(Slot& slot, std::uint32_t index, const Target& target, model::HealthState initial,
           TimePoint first_probe, TimePoint now);
  void CancelProbe(Slot& slot);
  void ProbeDue(std::uint32_t slot, TimePoint now);
  void StartProbe(std::uint32_t slot, TimePoint now);
  void Finish(std::uint32_t slot, const ProbeOutcome& outcome, TimePoint now);
  void AdmitWaiting(TimePoint now);
  void MarkDirty(std::uint32_t slot);
  bool NeedsReport(const Slot& slot) const;
  TargetView View(const Slot& slot) const;

  EventLoop& loop_;
  ProberOptions options_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
  std::map<TargetKey, std::uint32_t> index_;
  TimerHeap timers_;
  Jitter jitter_;
  Admission admission_;
  std::vector<std::uint32_t> dirty_;
  std::vector<std::uint32_t> retry_;
  std::size_t reports_in_flight_ = 0;
  std::vector<char> scratch_;
  ProberStats stats_;
  TransitionFn on_transition_;
  TimePoint last_local_error_log_{};
};

}  // namespace fulcrum::hc
