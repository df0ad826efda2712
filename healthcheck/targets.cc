#include "healthcheck/targets.h"

#include <optional>
#include <set>
#include <utility>

#include <fmt/format.h>

#include "common/json_fields.h"
#include "healthcheck/probe_codec.h"

namespace fulcrum::hc {
namespace {

using nlohmann::json;

constexpr std::string_view kAnswer = "health.targets answer";

Status Refuse(const Status& status) {
  return Status(ErrorCode::kMalformedRequest, fmt::format("{}: {}", kAnswer, status.message()));
}

Status RangeError(const std::string& label, std::string_view field, std::int64_t value,
                  const model::IntRange& range) {
  return Error(ErrorCode::kMalformedRequest, "{}.{} is {}, outside {}..{}", label, field, value,
               range.min, range.max);
}

// Reads an integer field and checks it against `range`.
std::optional<std::uint32_t> ReadInRange(JsonFields& fields, const std::string& label,
                                         std::string_view key, const model::IntRange& range) {
  const std::optional<std::int64_t> value = fields.Int(key, Presence::kRequired);
  if (!value) {
    return std::nullopt;
  }
  if (!range.Contains(*value)) {
    fields.Fail(RangeError(label, key, *value, range));
    return std::nullopt;
  }
  return static_cast<std::uint32_t>(*value);
}

Result<model::HealthCheck> ReadCheck(JsonFields fields, const std::string& label) {
  model::HealthCheck check;
  const std::optional<std::string> type = fields.String("type", Presence::kRequired);
  const auto port = ReadInRange(fields, label, "port", model::kHcPortRange);
  const auto interval = ReadInRange(fields, label, "interval", model::kHcIntervalRange);
  const auto timeout = ReadInRange(fields, label, "timeout", model::kHcTimeoutRange);
  const auto rise = ReadInRange(fields, label, "rise", model::kHcThresholdRange);
  const auto fall = ReadInRange(fields, label, "fall", model::kHcThresholdRange);
  std::optional<std::string> path = fields.String("path", Presence::kRequired);
  std::optional<std::string> host = fields.String("host", Presence::kRequired);
  std::optional<std::vector<std::string>> codes = fields.StringArray("codes", Presence::kRequired);
  std::optional<std::string> send = fields.String("send", Presence::kRequired);
  std::optional<std::string> expect = fields.String("expect", Presence::kRequired);
  if (!fields.ok()) {
    return fields.Finish();
  }
  const std::optional<model::HealthCheckType> parsed_type = model::HealthCheckTypeFromName(*type);
  if (!parsed_type) {
    return Error(ErrorCode::kMalformedRequest, "{}.type is '{}', not tcp, http, udp or none", label,
                 type->substr(0, 40));
  }
  check.type = *parsed_type;
  check.port = static_cast<std::uint16_t>(*port);
  check.interval = *interval;
  check.timeout = *timeout;
  check.rise = *rise;
  check.fall = *fall;
  check.path = std::move(*path);
  check.host = std::move(*host);
  check.codes = std::move(*codes);
  check.send = std::move(*send);
  check.expect = std::move(*expect);
  FULCRUM_RETURN_IF_ERROR(ValidateCheck(label, check));
  return check;
}

Result<Target> ReadTarget(const json& object, const std::string& label) {
  JsonFields fields = JsonFields::ForState(object, label);
  if (!object.is_object()) {
    return Error(ErrorCode::kMalformedRequest, "{} is not an object", label);
  }
  Target target;
  const std::optional<std::string> listener = fields.String("listener", Presence::kRequired);
  // lbd names the backend "addr"; "backend" is accepted too, one of the two must be there.
  const std::string addr_key = fields.Has("backend") && !fields.Has("addr") ? "backend" : "addr";
  const std::optional<std::string> addr = fields.String(addr_key, Presence::kRequired);
  const std::optional<std::string> protocol = fields.String("protocol", Presence::kRequired);
  const std::optional<std::string> state = fields.String("state", Presence::kRequired);
  std::optional<std::string> reason = fields.String("reason", Presence::kRequired);
  if (!fields.ok()) {
    return fields.Finish();
  }
  JsonFields check_fields = fields.Nested("health_check", Presence::kRequired);
  if (!fields.ok()) {
    return fields.Finish();
  }
  Result<model::HealthCheck> check = ReadCheck(std::move(check_fields), label + ".health_check");
  if (!check.ok()) {
    return check.status();
  }
  Result<Endpoint> backend = Endpoint::Parse(*addr);
  if (!backend.ok()) {
    return Error(ErrorCode::kMalformedRequest, "{}.{}: {}", label, addr_key,
                 backend.status().message());
  }
  const std::optional<model::Protocol> parsed_protocol = model::ProtocolFromName(*protocol);
  if (!parsed_protocol) {
    return Error(ErrorCode::kMalformedRequest, "{}.protocol is '{}', not tcp, udp, http or https",
                 label, protocol->substr(0, 40));
  }
  const std::optional<model::HealthState> parsed_state = model::HealthStateFromName(*state);
  if (!parsed_state) {
    return Error(ErrorCode::kMalformedRequest, "{}.state is '{}', not unknown, up or down", label,
                 state->substr(0, 40));
  }
  if (listener->empty()) {
    return Error(ErrorCode::kMalformedRequest, "{}.listener is empty", label);
  }
  target.key = TargetKey{*listener, *backend};
  target.protocol = *parsed_protocol;
  target.check = std::move(*check);
  target.state = *parsed_state;
  target.reason = std::move(*reason);
  return target;
}

Result<std::uint64_t> ReadVersion(const json& result) {
  const auto it = result.find("version");
  if (it == result.end()) {
    return Error(ErrorCode::kMalformedRequest, "version is missing");
  }
  if (!it->is_number_integer() || (!it->is_number_unsigned() && it->get<std::int64_t>() < 0)) {
    return Error(ErrorCode::kMalformedRequest, "version must be an integer >= 0, not {}",
                 it->dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 64));
  }
  return it->get<std::uint64_t>();
}

}  // namespace

std::string TargetKey::ToString() const {
  return fmt::format("{} {}", listener, backend.ToString());
}

Status ValidateCheck(const std::string& label, const model::HealthCheck& check) {
  if (check.timeout > check.interval) {
    return Error(ErrorCode::kMalformedRequest, "{}: timeout {} exceeds interval {}", label,
                 check.timeout, check.interval);
  }
  if (check.type == model::HealthCheckType::kHttp) {
    if (check.path.empty() || check.path[0] != '/' || check.path.size() > model::kMaxHcPathLength ||
        check.path.find_first_of(" \r\n") != std::string::npos) {
      return Error(ErrorCode::kMalformedRequest, "{}.path must start with '/' and hold no spaces",
                   label);
    }
    if (check.host.size() > model::kMaxHcHostLength ||
        check.host.find_first_of(" \r\n") != std::string::npos) {
      return Error(ErrorCode::kMalformedRequest, "{}.host is not a host name", label);
    }
    Result<StatusClassSet> classes = ParseStatusClasses(check.codes);
    if (!classes.ok()) {
      return Error(ErrorCode::kMalformedRequest, "{}: {}", label, classes.status().message());
    }
  }
  if (check.type == model::HealthCheckType::kUdp) {
    for (const auto& [field, hex] :
         {std::pair<std::string_view, const std::string&>{"send", check.send},
          {"expect", check.expect}}) {
      Result<std::string> bytes = DecodeHex(hex);
      if (!bytes.ok() || hex.size() > model::kMaxHcPayloadHexDigits) {
        return Error(ErrorCode::kMalformedRequest,
                     "{}.{} is not an even-length hex string of at "
                     "most {} digits",
                     label, field, model::kMaxHcPayloadHexDigits);
      }
    }
    if (check.send.empty()) {
      return Error(ErrorCode::kMalformedRequest, "{}.send is empty: a udp check needs a payload",
                   label);
    }
  }
  return Status::Ok();
}

Result<TargetsAnswer> ParseTargetsAnswer(const json& result) {
  if (!result.is_object()) {
    return Refuse(Error(ErrorCode::kMalformedRequest, "the result is not an object"));
  }
  TargetsAnswer answer;
  Result<std::uint64_t> version = ReadVersion(result);
  if (!version.ok()) {
    return Refuse(version.status());
  }
  answer.version = *version;
  const auto unchanged = result.find("unchanged");
  if (unchanged != result.end()) {
    if (!unchanged->is_boolean()) {
      return Refuse(Error(ErrorCode::kMalformedRequest, "unchanged must be true or false"));
    }
    answer.unchanged = unchanged->get<bool>();
  }
  const auto targets = result.find("targets");
  if (answer.unchanged) {
    return answer;
  }
  if (targets == result.end() || !targets->is_array()) {
    return Refuse(Error(ErrorCode::kMalformedRequest, "targets must be an array"));
  }
  answer.targets.reserve(targets->size());
  std::set<TargetKey> seen;
  for (std::size_t i = 0; i < targets->size(); ++i) {
    const std::string label = fmt::format("targets[{}]", i);
    Result<Target> target = ReadTarget((*targets)[i], label);
    if (!target.ok()) {
      return Refuse(target.status());
    }
    if (!seen.insert(target->key).second) {
      return Refuse(
          Error(ErrorCode::kMalformedRequest, "{} repeats {}", label, target->key.ToString()));
    }
    answer.targets.push_back(std::move(*target));
  }
  return answer;
}

}  // namespace fulcrum::hc
