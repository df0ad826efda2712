// The agent: lb-healthd's conversation with lbd around the prober.
//
// Theory of operation: the agent keeps lbd and the prober in step, on the same event loop.
//   - Learning: every poll interval (1 s) it asks `health.targets` with `since` = the version
//     it last applied and `prober: true` (which shows the prober present in `lbctl status`).
//     lbd answers "unchanged" cheaply, or the full list, which goes to Prober::SetTargets().
//     An answer that cannot be read is logged (once per distinct error) and ignored: probing
//     goes on with the targets already known.
//   - Reporting: transitions become `backend.set_health` requests, at most
//     max_reports_in_flight at a time; a refused report is retried at the next poll.
//   - Taking turns: a full list can be larger than lbd's bound on unread output (4 MiB), which
//     lbd tolerates only for a response queued alone. So a poll is sent only when no report
//     is pending, and reports wait while a poll is pending or due (a poll that is due stops
//     new reports until the pending ones are answered, so neither starves the other).
//   - Losing lbd: probing goes on; the agent reconnects every reconnect interval and, once
//     back, asks for the whole list again (lbd may have restarted and forgotten every
//     state), after which the prober re-tells lbd whatever it does not hold.
// In once mode (lb-healthd --once) the agent learns the list once, lets the prober decide
// every target from scratch, reports what lbd does not hold, and then says it is done.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "healthcheck/event_loop.h"
#include "healthcheck/lbd_client.h"
#include "healthcheck/prober.h"

namespace fulcrum::hc {

struct AgentOptions {
  Clock::duration poll_interval = std::chrono::seconds(1);
  Clock::duration reconnect_interval = std::chrono::seconds(1);
  std::size_t max_reports_in_flight = 64;
  bool once = false;
};

class Agent : public EventLoop::Handler {
 public:
  Agent(EventLoop& loop, LbdClient& lbd, Prober& prober, AgentOptions options);
  ~Agent() override;
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Once mode: true when finished; outcome() then says how (ok, or why not).
  bool done() const { return done_; }
  const Status& outcome() const { return outcome_; }
  // True when the targets could not be learnt at all (lbctl's "unreachable", exit 2).
  bool unreachable() const { return unreachable_; }

  // The lbd model version last applied; nullopt before the first list or after reconnecting.
  std::optional<std::uint64_t> version() const { return version_; }
  std::uint64_t lists_applied() const { return lists_applied_; }
  std::uint64_t answers_refused() const { return answers_refused_; }
  std::uint64_t reports_sent() const { return reports_sent_; }

  // EventLoop::Handler
  void OnIo(std::uint64_t cookie, std::uint32_t events) override;
  std::optional<TimePoint> NextDeadline() const override;
  void OnTime(TimePoint now) override;

 private:
  // A poll is wanted when none is pending (in once mode: until the list is learnt).
  bool PollWanted() const;
  // Reports may be sent when no poll is pending or due.
  bool ReportsMayGo(TimePoint now) const;
  void TryConnect(TimePoint now);
  void Poll(TimePoint now);
  void OnTargets(const Result<nlohmann::json>& answer);
  void FlushReports();
  void OnReported(const Report& report, const Result<nlohmann::json>& answer);
  void CheckOnce(TimePoint now);
  void Finish(Status outcome);
  // Logs `message` at warning unless it repeats the previous warning of this kind.
  void WarnOnce(std::string& last, const std::string& message);

  EventLoop& loop_;
  LbdClient& lbd_;
  Prober& prober_;
  AgentOptions options_;
  TimePoint next_connect_{};
  TimePoint next_poll_{};
  bool poll_in_flight_ = false;
  std::uint64_t seen_connection_ = 0;
  std::optional<std::uint64_t> version_;
  std::uint64_t lists_applied_ = 0;
  std::uint64_t answers_refused_ = 0;
  std::uint64_t reports_sent_ = 0;
  std::uint64_t reports_refused_ = 0;
  std::string last_connect_error_;
  std::string last_answer_error_;
  std::string last_report_error_;
  // Once mode.
  std::optional<TimePoint> once_deadline_;
  bool done_ = false;
  bool unreachable_ = false;
  Status outcome_;
};

// The --once table, one row per target: LISTENER BACKEND CHECK STATE (decided here) LBD (as
// lbd holds it) PROBES REASON (of the last probe).
std::string FormatTargetTable(const std::vector<TargetView>& targets);

}  // namespace fulcrum::hc
