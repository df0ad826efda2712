// Probe targets as lbd describes them, and the reading of lbd's `health.targets` answer.
//
// Theory of operation: health is per (listener, backend) (BRIEF §2), so a target is that
// pair plus the listener's health_check settings and the state lbd currently holds for it.
// lb-healthd learns the whole list from `health.targets` (docs/ctl-protocol.md) and never
// trusts it blindly: the answer is read strictly (exact JSON types, required fields, ranges of
// the model) and any mismatch refuses the whole answer with a message naming the field, e.g.
// "health.targets answer: targets[3].health_check.rise must be an integer, not \"3\"". A
// refused answer leaves the targets already known in place. Fields lb-healthd does not use
// (vip, weight, ...) are ignored so that lbd may add more.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/model.h"
#include "common/net_addr.h"
#include "common/status.h"

namespace fulcrum::hc {

struct TargetKey {
  std::string listener;
  Endpoint backend;

  std::string ToString() const;  // "lsn-11223344 198.18.1.11:80"

  friend auto operator<=>(const TargetKey&, const TargetKey&) = default;
  friend bool operator==(const TargetKey&, const TargetKey&) = default;
};

struct Target {
  TargetKey key;
  model::Protocol protocol = model::Protocol::kTcp;
  model::HealthCheck check;
  model::HealthState state = model::HealthState::kUnknown;  // as lbd holds it
  std::string reason;                                       // lbd's last reason
};

struct TargetsAnswer {
  std::uint64_t version = 0;
  bool unchanged = false;       // lbd's model is still at `version`; `targets` is empty
  std::vector<Target> targets;  // in lbd's order; (listener, backend) pairs are distinct
};

// Reads the result of `health.targets`.
Result<TargetsAnswer> ParseTargetsAnswer(const nlohmann::json& result);

// Checks one health check against the model's ranges (docs/ctl-protocol.md, "Listener
// options"); `label` names it in the message.
Status ValidateCheck(const std::string& label, const model::HealthCheck& check);

}  // namespace fulcrum::hc
