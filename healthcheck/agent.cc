#include "healthcheck/agent.h"

#include <algorithm>
#include <array>
#include <utility>

#include <fmt/format.h>

#include "common/model.h"
#include "healthcheck/hc_logger.h"

namespace fulcrum::hc {
namespace {

using model::HealthState;
using nlohmann::json;

// Once mode gives up this long after the slowest target should have been decided.
constexpr Clock::duration kOnceSlack = std::chrono::seconds(5);

std::string Truncated(std::string text) {
  if (text.size() > model::kMaxHealthReasonLength) {
    text.resize(model::kMaxHealthReasonLength);
  }
  return text;
}

// The longest a fresh target can take to decide: rise or fall probes, an interval apart.
Clock::duration WorstDecisionTime(const std::vector<Target>& targets) {
  Clock::duration worst{};
  for (const Target& target : targets) {
    const model::HealthCheck& check = target.check;
    const auto probes = std::max(check.rise, check.fall);
    worst =
        std::max<Clock::duration>(worst, std::chrono::seconds(check.interval) * 11 / 10 * probes +
                                             std::chrono::seconds(check.timeout));
  }
  return worst;
}

}  // namespace

Agent::Agent(EventLoop& loop, LbdClient& lbd, Prober& prober, AgentOptions options)
    : loop_(loop), lbd_(lbd), prober_(prober), options_(options) {
  loop_.AddHandler(this);
}

Agent::~Agent() { loop_.RemoveHandler(this); }

void Agent::OnIo(std::uint64_t /*cookie*/, std::uint32_t /*events*/) {}

std::optional<TimePoint> Agent::NextDeadline() const {
  if (done_) {
    return std::nullopt;
  }
  if (!lbd_.connected()) {
    return next_connect_;
  }
  const TimePoint now = loop_.now();
  std::optional<TimePoint> next;
  const auto earliest = [&next](TimePoint when) { next = next ? std::min(*next, when) : when; };
  if (PollWanted() && lbd_.pending() == 0) {
    earliest(next_poll_);
  }
  if (ReportsMayGo(now) && prober_.has_reports() &&
      prober_.reports_in_flight() < options_.max_reports_in_flight) {
    earliest(now);
  }
  if (once_deadline_) {
    earliest(*once_deadline_);
  }
  if (options_.once && version_ && prober_.AllDecided() && !prober_.has_reports() &&
      prober_.reports_in_flight() == 0) {
    earliest(now);
  }
  return next;
}

bool Agent::PollWanted() const { return !poll_in_flight_ && !(options_.once && version_); }

bool Agent::ReportsMayGo(TimePoint now) const {
  return !poll_in_flight_ && !(PollWanted() && now >= next_poll_);
}

void Agent::OnTime(TimePoint now) {
  if (done_) {
    return;
  }
  if (!lbd_.connected()) {
    if (now < next_connect_) {
      return;
    }
    TryConnect(now);
    if (!lbd_.connected()) {
      return;
    }
  }
  if (lbd_.connection_count() != seen_connection_) {
    // A new connection: lbd may have restarted with every state unknown; learn it all again.
    seen_connection_ = lbd_.connection_count();
    version_.reset();
    next_poll_ = now;
  }
  if (PollWanted() && now >= next_poll_ && lbd_.pending() == 0) {
    Poll(now);
  }
  if (ReportsMayGo(now)) {
    FlushReports();
  }
  if (options_.once) {
    CheckOnce(now);
  }
}

void Agent::TryConnect(TimePoint now) {
  next_connect_ = now + options_.reconnect_interval;
  const Status connected = lbd_.Connect();
  if (connected.ok()) {
    HcLog().Info("connected to lbd at {}", lbd_.path());
    last_connect_error_.clear();
    return;
  }
  if (options_.once && !version_) {
    unreachable_ = true;
    Finish(connected);
    return;
  }
  if (options_.once) {
    Finish(Error(ErrorCode::kUnavailable, "lost lbd before every report was delivered: {}",
                 connected.message()));
    return;
  }
  WarnOnce(last_connect_error_, connected.message() + " (retrying every second)");
}

void Agent::Poll(TimePoint now) {
  next_poll_ = now + options_.poll_interval;
  json args = json::object();
  if (!options_.once) {
    args["prober"] = true;
  }
  if (version_) {
    args["since"] = *version_;
  }
  // Set first: a send that fails inside Call() answers the callback before Call() returns.
  poll_in_flight_ = true;
  const Status sent =
      lbd_.Call("health.targets", args, [this](const Result<json>& answer) { OnTargets(answer); });
  if (!sent.ok()) {
    poll_in_flight_ = false;
    return;
  }
  prober_.RetryRefused();
}

void Agent::OnTargets(const Result<json>& answer) {
  poll_in_flight_ = false;
  if (!answer.ok()) {
    // A lost connection is logged by the client; a refusal is lbd's answer.
    if (answer.status().code() != ErrorCode::kUnavailable) {
      ++answers_refused_;
      WarnOnce(last_answer_error_, "lbd refused health.targets: " + answer.status().ToString());
    }
    if (options_.once && !version_) {
      unreachable_ = true;
      Finish(answer.status());
    }
    return;
  }
  Result<TargetsAnswer> parsed = ParseTargetsAnswer(*answer);
  if (!parsed.ok()) {
    ++answers_refused_;
    WarnOnce(last_answer_error_,
             parsed.status().message() + "; probing goes on with the targets already known");
    if (options_.once) {
      Finish(parsed.status());
    }
    return;
  }
  last_answer_error_.clear();
  if (parsed->unchanged && version_ == parsed->version) {
    return;
  }
  if (parsed->unchanged) {
    // "Unchanged" from a version never applied: ask for the whole list.
    version_.reset();
    next_poll_ = loop_.now();
    return;
  }
  const TimePoint now = loop_.now();
  HcLog().Debug("lbd version {}: {} targets", parsed->version, parsed->targets.size());
  prober_.SetTargets(parsed->targets, now);
  version_ = parsed->version;
  ++lists_applied_;
  if (options_.once && !once_deadline_) {
    once_deadline_ = now + WorstDecisionTime(parsed->targets) + kOnceSlack;
  }
}

void Agent::FlushReports() {
  const std::size_t in_flight = prober_.reports_in_flight();
  if (!lbd_.connected() || in_flight >= options_.max_reports_in_flight) {
    return;
  }
  for (const Report& report : prober_.TakeReports(options_.max_reports_in_flight - in_flight)) {
    const json args = {{"listener", report.key.listener},
                       {"addr", report.key.backend.ToString()},
                       {"state", model::HealthStateName(report.state)},
                       {"reason", Truncated(report.reason)}};
    const Status sent =
        lbd_.Call("backend.set_health", args,
                  [this, report](const Result<json>& answer) { OnReported(report, answer); });
    if (!sent.ok()) {
      prober_.ReportDone(report.key, report.state, false);
      continue;
    }
    ++reports_sent_;
  }
}

void Agent::OnReported(const Report& report, const Result<json>& answer) {
  if (answer.ok()) {
    HcLog().Debug("{}: lbd holds {}", report.key.ToString(), model::HealthStateName(report.state));
    prober_.ReportDone(report.key, report.state, true);
    return;
  }
  if (answer.status().code() != ErrorCode::kUnavailable) {
    ++reports_refused_;
    WarnOnce(last_report_error_,
             fmt::format("lbd refused {} {}: {}", report.key.ToString(),
                         model::HealthStateName(report.state), answer.status().ToString()));
  }
  prober_.ReportDone(report.key, report.state, false);
}

void Agent::CheckOnce(TimePoint now) {
  if (!version_) {
    return;
  }
  const bool reported = !prober_.has_reports() && prober_.reports_in_flight() == 0;
  if (prober_.AllDecided() && reported) {
    Finish(reports_refused_ == 0 ? Status::Ok()
                                 : Error(ErrorCode::kUnavailable, "lbd refused {} of {} reports",
                                         reports_refused_, reports_sent_));
    return;
  }
  if (once_deadline_ && now >= *once_deadline_) {
    Finish(Error(ErrorCode::kTimeout,
                 "some targets were still undecided when the slowest should have been"));
  }
}

void Agent::Finish(Status outcome) {
  done_ = true;
  outcome_ = std::move(outcome);
}

void Agent::WarnOnce(std::string& last, const std::string& message) {
  if (message != last) {
    HcLog().Warn("{}", message);
    last = message;
  } else {
    HcLog().Debug("{}", message);
  }
}

std::string FormatTargetTable(const std::vector<TargetView>& targets) {
  std::vector<std::array<std::string, 7>> rows;
  rows.push_back({"LISTENER", "BACKEND", "CHECK", "STATE", "LBD", "PROBES", "REASON"});
  for (const TargetView& target : targets) {
    const bool none = target.type == model::HealthCheckType::kNone;
    rows.push_back({target.key.listener, target.key.backend.ToString(),
                    std::string(model::HealthCheckTypeName(target.type)),
                    none ? "-" : std::string(model::HealthStateName(target.state)),
                    std::string(model::HealthStateName(target.lbd_state)),
                    std::to_string(target.probes), target.reason});
  }
  std::array<std::size_t, 7> widths{};
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += i + 1 < row.size() ? fmt::format("{:<{}}  ", row[i], widths[i]) : row[i];
    }
    while (!line.empty() && line.back() == ' ') {
      line.pop_back();
    }
    out += line + "\n";
  }
  return out;
}

}  // namespace fulcrum::hc
