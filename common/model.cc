#include "common/model.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <utility>

#include "common/ids.h"

namespace fulcrum::model {
namespace {

using nlohmann::json;

template <typename E>
struct NameEntry {
  E value;
  std::string_view name;
};

constexpr std::array kProtocolNames = {
    NameEntry<Protocol>{Protocol::kTcp, "tcp"}, NameEntry<Protocol>{Protocol::kUdp, "udp"},
    NameEntry<Protocol>{Protocol::kHttp, "http"}, NameEntry<Protocol>{Protocol::kHttps, "https"}};
constexpr std::array kSchedulerNames = {
    NameEntry<Scheduler>{Scheduler::kWrr, "wrr"}, NameEntry<Scheduler>{Scheduler::kWlc, "wlc"},
    NameEntry<Scheduler>{Scheduler::kRr, "rr"}, NameEntry<Scheduler>{Scheduler::kSh, "sh"},
    NameEntry<Scheduler>{Scheduler::kMaglev, "maglev"}};
constexpr std::array kForwardModeNames = {NameEntry<ForwardMode>{ForwardMode::kFnat, "fnat"},
                                          NameEntry<ForwardMode>{ForwardMode::kDnat, "dnat"}};
constexpr std::array kHealthCheckTypeNames = {
    NameEntry<HealthCheckType>{HealthCheckType::kTcp, "tcp"},
    NameEntry<HealthCheckType>{HealthCheckType::kHttp, "http"},
    NameEntry<HealthCheckType>{HealthCheckType::kUdp, "udp"},
    NameEntry<HealthCheckType>{HealthCheckType::kNone, "none"}};
constexpr std::array kHealthStateNames = {NameEntry<HealthState>{HealthState::kUnknown, "unknown"},
                                          NameEntry<HealthState>{HealthState::kUp, "up"},
                                          NameEntry<HealthState>{HealthState::kDown, "down"}};
constexpr std::array kBackendDownPolicyNames = {
    NameEntry<BackendDownPolicy>{BackendDownPolicy::kKeep, "keep"},
    NameEntry<BackendDownPolicy>{BackendDownPolicy::kReset, "reset"},
    NameEntry<BackendDownPolicy>{BackendDownPolicy::kReschedule, "reschedule"}};
constexpr std::array kClientIpModeNames = {
    NameEntry<ClientIpMode>{ClientIpMode::kOff, "off"},
    NameEntry<ClientIpMode>{ClientIpMode::kToa, "toa"},
    NameEntry<ClientIpMode>{ClientIpMode::kProxyV1, "proxy-v1"},
    NameEntry<ClientIpMode>{ClientIpMode::kProxyV2, "proxy-v2"}};
constexpr std::array kAclTypeNames = {NameEntry<AclType>{AclType::kAllow, "allow"},
                                      NameEntry<AclType>{AclType::kDeny, "deny"}};
constexpr std::array<std::string_view, 5> kCodeClasses = {"1xx", "2xx", "3xx", "4xx", "5xx"};

template <typename E, std::size_t N>
std::string_view NameOf(const std::array<NameEntry<E>, N>& table, E value) {
  for (const auto& entry : table) {
    if (entry.value == value) {
      return entry.name;
    }
  }
  return "?";
}

template <typename E, std::size_t N>
std::optional<E> ValueOf(const std::array<NameEntry<E>, N>& table, std::string_view name) {
  for (const auto& entry : table) {
    if (entry.name == name) {
      return entry.value;
    }
  }
  return std::nullopt;
}

// "one of wrr, wlc, rr, sh, maglev"
template <typename E, std::size_t N>
std::string OneOf(const std::array<NameEntry<E>, N>& table) {
  std::string text = "one of ";
  for (std::size_t i = 0; i < N; ++i) {
    text += fmt::format("{}{}", i == 0 ? "" : ", ", table[i].name);
  }
  return text;
}

template <typename E, std::size_t N>
std::optional<E> ReadEnum(JsonFields& fields, std::string_view key,
                          const std::array<NameEntry<E>, N>& table) {
  std::optional<std::string> text = fields.String(key, Presence::kOptional);
  if (!text) {
    return std::nullopt;
  }
  std::optional<E> value = ValueOf(table, *text);
  if (!value) {
    fields.Fail(fields.BadValue(key, OneOf(table)));
  }
  return value;
}

// ---- Validation of single values. `label` names the object ("listener lsn-0a1b2c3d").

Status CheckRange(std::string_view label, std::string_view field, std::int64_t value,
                  IntRange range) {
  if (!range.Contains(value)) {
    return Error(ErrorCode::kInvalidParameter, "{}: {} {} is out of range {}..{}", label, field,
                 value, range.min, range.max);
  }
  return Status::Ok();
}

Status CheckPersistence(std::string_view label, std::int64_t value) {
  if (value != 0 && !kPersistenceRange.Contains(value)) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: persistence {} is out of range: 0 (off) or {}..{} seconds", label, value,
                 kPersistenceRange.min, kPersistenceRange.max);
  }
  return Status::Ok();
}

Status CheckWeight(const std::string& group, const Endpoint& addr, std::int64_t weight) {
  if (!kWeightRange.Contains(weight)) {
    return Error(ErrorCode::kInvalidParameter,
                 "backend {} in group {}: weight {} is out of range {}..{}", addr.ToString(), group,
                 weight, kWeightRange.min, kWeightRange.max);
  }
  return Status::Ok();
}

Status ValidateName(std::string_view kind, std::string_view name) {
  const bool good_chars = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
  if (name.empty() || name.size() > kMaxNameLength || !good_chars) {
    return Error(ErrorCode::kInvalidParameter,
                 "{} name '{}' is invalid: use 1 to {} characters from [A-Za-z0-9._-]", kind,
                 name.substr(0, 80), kMaxNameLength);
  }
  return Status::Ok();
}

Status ValidateUnicast(std::string_view what, const IpAddress& addr) {
  if (addr.IsUnspecified() || addr.IsLoopback() || addr.IsMulticastOrBroadcast()) {
    return Error(ErrorCode::kInvalidParameter,
                 "{} {} is not a usable unicast address (unspecified, loopback, multicast or "
                 "broadcast)",
                 what, addr.ToString());
  }
  return Status::Ok();
}

bool IsPrintableNoSpace(char c) { return c > ' ' && c < 0x7f; }

Status ValidatePath(std::string_view label, const std::string& path) {
  if (path.empty() || path.size() > kMaxHcPathLength || path[0] != '/' ||
      !std::all_of(path.begin(), path.end(), IsPrintableNoSpace)) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: health_check.path '{}' is invalid: it must start with '/' and hold 1 to {} "
                 "printable characters without spaces",
                 label, path.substr(0, 80), kMaxHcPathLength);
  }
  return Status::Ok();
}

bool IsHostLabel(std::string_view text) {
  if (text.empty() || text.size() > 63 || text.front() == '-' || text.back() == '-') {
    return false;
  }
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
  });
}

bool IsHostName(std::string_view host) {
  while (true) {
    const std::size_t dot = host.find('.');
    if (!IsHostLabel(host.substr(0, dot))) {
      return false;
    }
    if (dot == std::string_view::npos) {
      return true;
    }
    host.remove_prefix(dot + 1);
  }
}

Status ValidateHost(std::string_view label, const std::string& host) {
  if (host.empty()) {
    return Status::Ok();
  }
  if (host.size() > kMaxHcHostLength || (!IsHostName(host) && !IpAddress::Parse(host).ok())) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: health_check.host '{}' is not a host name (at most {} characters) or an "
                 "IP address",
                 label, host.substr(0, 80), kMaxHcHostLength);
  }
  return Status::Ok();
}

Status ValidateCodes(std::string_view label, const std::vector<std::string>& codes) {
  if (codes.empty()) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: health_check.codes is empty: give at least one of 1xx..5xx", label);
  }
  for (std::size_t i = 0; i < codes.size(); ++i) {
    if (std::find(kCodeClasses.begin(), kCodeClasses.end(), codes[i]) == kCodeClasses.end()) {
      return Error(ErrorCode::kInvalidParameter,
                   "{}: health_check.codes holds '{}': each code must be one of 1xx, 2xx, 3xx, "
                   "4xx, 5xx",
                   label, codes[i].substr(0, 40));
    }
    if (i > 0 && codes[i - 1] >= codes[i]) {
      return Error(ErrorCode::kInvalidParameter,
                   "{}: health_check.codes must be sorted and distinct", label);
    }
  }
  return Status::Ok();
}

Status ValidateHex(std::string_view label, std::string_view field, const std::string& hex) {
  const bool hex_digits = std::all_of(hex.begin(), hex.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
  if (!hex_digits || hex.size() % 2 != 0 || hex.size() > kMaxHcPayloadHexDigits) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: health_check.{} must be an even number of hex digits, at most {}", label,
                 field, kMaxHcPayloadHexDigits);
  }
  return Status::Ok();
}

std::string LowerCase(std::string text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return text;
}

// ---- Whole health checks and listeners.

Status ValidateCheckType(std::string_view label, Protocol protocol, HealthCheckType type) {
  const bool udp_listener = FamilyOf(protocol) == ProtocolFamily::kUdp;
  if (udp_listener && (type == HealthCheckType::kTcp || type == HealthCheckType::kHttp)) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: health_check.type {} is not valid on a udp listener: use udp (with send "
                 "and expect) or none",
                 label, HealthCheckTypeName(type));
  }
  if (!udp_listener && type == HealthCheckType::kUdp) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: health_check.type udp is only valid on udp listeners", label);
  }
  return Status::Ok();
}

// The fields that belong to one check type must keep their defaults under the others.
Status CheckTypeSpecificDefaults(std::string_view label, const HealthCheck& check) {
  const HealthCheck defaults;
  const std::string_view type = HealthCheckTypeName(check.type);
  if (check.type != HealthCheckType::kHttp) {
    if (check.path != defaults.path || check.host != defaults.host ||
        check.codes != defaults.codes) {
      return Error(ErrorCode::kInvalidParameter,
                   "{}: health_check path, host and codes apply only to http checks, not {}", label,
                   type);
    }
  }
  if (check.type != HealthCheckType::kUdp && (!check.send.empty() || !check.expect.empty())) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: health_check send and expect apply only to udp checks, not {}", label, type);
  }
  return Status::Ok();
}

Status ValidateHealthCheck(std::string_view label, Protocol protocol, const HealthCheck& check) {
  FULCRUM_RETURN_IF_ERROR(ValidateCheckType(label, protocol, check.type));
  FULCRUM_RETURN_IF_ERROR(CheckRange(label, "health_check.port", check.port, kHcPortRange));
  FULCRUM_RETURN_IF_ERROR(
      CheckRange(label, "health_check.interval", check.interval, kHcIntervalRange));
  FULCRUM_RETURN_IF_ERROR(
      CheckRange(label, "health_check.timeout", check.timeout, kHcTimeoutRange));
  FULCRUM_RETURN_IF_ERROR(CheckRange(label, "health_check.rise", check.rise, kHcThresholdRange));
  FULCRUM_RETURN_IF_ERROR(CheckRange(label, "health_check.fall", check.fall, kHcThresholdRange));
  if (check.timeout > check.interval) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: health_check.timeout {} exceeds health_check.interval {}", label,
                 check.timeout, check.interval);
  }
  FULCRUM_RETURN_IF_ERROR(CheckTypeSpecificDefaults(label, check));
  if (check.type == HealthCheckType::kHttp) {
    FULCRUM_RETURN_IF_ERROR(ValidatePath(label, check.path));
    FULCRUM_RETURN_IF_ERROR(ValidateHost(label, check.host));
    FULCRUM_RETURN_IF_ERROR(ValidateCodes(label, check.codes));
  }
  if (check.type == HealthCheckType::kUdp) {
    if (check.send.empty() || check.expect.empty()) {
      return Error(ErrorCode::kMissingParameter,
                   "{}: a udp health check needs both health_check.send and health_check.expect",
                   label);
    }
    FULCRUM_RETURN_IF_ERROR(ValidateHex(label, "send", check.send));
    FULCRUM_RETURN_IF_ERROR(ValidateHex(label, "expect", check.expect));
  }
  return Status::Ok();
}

Status ValidateListener(std::string_view label, const Listener& listener) {
  FULCRUM_RETURN_IF_ERROR(CheckRange(label, "port", listener.port, kPortRange));
  FULCRUM_RETURN_IF_ERROR(
      CheckRange(label, "idle_timeout", listener.idle_timeout, kIdleTimeoutRange));
  FULCRUM_RETURN_IF_ERROR(CheckPersistence(label, listener.persistence));
  if (listener.client_ip != ClientIpMode::kOff &&
      (listener.protocol != Protocol::kTcp || listener.mode != ForwardMode::kFnat)) {
    // A dnat backend sees the client's address itself; UDP has no stream to put it in.
    return Error(ErrorCode::kInvalidParameter,
                 "{}: client_ip {} applies to tcp listeners in fnat mode, not {} in {}", label,
                 ClientIpModeName(listener.client_ip), ProtocolName(listener.protocol),
                 ForwardModeName(listener.mode));
  }
  return ValidateHealthCheck(label, listener.protocol, listener.health_check);
}

// ---- Applying options.

template <typename T>
Status SetChecked(std::string_view label, std::string_view field,
                  const std::optional<std::int64_t>& value, IntRange range, T& out) {
  if (value) {
    FULCRUM_RETURN_IF_ERROR(CheckRange(label, field, *value, range));
    out = static_cast<T>(*value);
  }
  return Status::Ok();
}

std::vector<std::string> Canonical(std::vector<std::string> codes) {
  std::sort(codes.begin(), codes.end());
  codes.erase(std::unique(codes.begin(), codes.end()), codes.end());
  return codes;
}

// Sets every present field on `check`, range-checking numbers before narrowing them.
Status OverlayHealthCheck(std::string_view label, const HealthCheckOptions& options,
                          HealthCheck& check) {
  check.type = options.type.value_or(check.type);
  FULCRUM_RETURN_IF_ERROR(
      SetChecked(label, "health_check.port", options.port, kHcPortRange, check.port));
  FULCRUM_RETURN_IF_ERROR(SetChecked(label, "health_check.interval", options.interval,
                                     kHcIntervalRange, check.interval));
  FULCRUM_RETURN_IF_ERROR(
      SetChecked(label, "health_check.timeout", options.timeout, kHcTimeoutRange, check.timeout));
  FULCRUM_RETURN_IF_ERROR(
      SetChecked(label, "health_check.rise", options.rise, kHcThresholdRange, check.rise));
  FULCRUM_RETURN_IF_ERROR(
      SetChecked(label, "health_check.fall", options.fall, kHcThresholdRange, check.fall));
  check.path = options.path.value_or(check.path);
  check.host = options.host.value_or(check.host);
  if (options.codes) {
    check.codes = Canonical(*options.codes);
  }
  if (options.send) {
    check.send = LowerCase(*options.send);
  }
  if (options.expect) {
    check.expect = LowerCase(*options.expect);
  }
  return Status::Ok();
}

Status OverlayListener(std::string_view label, const ListenerOptions& options, Listener& listener) {
  listener.group = options.group.value_or(listener.group);
  listener.scheduler = options.scheduler.value_or(listener.scheduler);
  listener.mode = options.mode.value_or(listener.mode);
  listener.on_backend_down = options.on_backend_down.value_or(listener.on_backend_down);
  listener.client_ip = options.client_ip.value_or(listener.client_ip);
  if (options.acl) {
    const bool none = options.acl->empty() || *options.acl == "off";
    if (!none && listener.acl.empty() && !options.acl_type) {
      return Error(ErrorCode::kMissingParameter,
                   "{}: acl {} needs acl_type: allow (only its clients) or deny (all but them)",
                   label, options.acl->substr(0, 80));
    }
    listener.acl = none ? "" : *options.acl;
  }
  listener.acl_type = options.acl_type.value_or(listener.acl_type);
  FULCRUM_RETURN_IF_ERROR(SetChecked(label, "idle_timeout", options.idle_timeout, kIdleTimeoutRange,
                                     listener.idle_timeout));
  if (options.persistence) {
    FULCRUM_RETURN_IF_ERROR(CheckPersistence(label, *options.persistence));
    listener.persistence = static_cast<std::uint32_t>(*options.persistence);
  }
  return OverlayHealthCheck(label, options.health_check, listener.health_check);
}

// Refuses a field given for a check type it does not apply to.
Status CheckOptionsApply(std::string_view label, const HealthCheckOptions& options,
                         HealthCheckType type) {
  const std::string_view name = HealthCheckTypeName(type);
  if (type != HealthCheckType::kHttp && (options.path || options.host || options.codes)) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: health_check path, host and codes apply only to http checks, not {}", label,
                 name);
  }
  if (type != HealthCheckType::kUdp && (options.send || options.expect)) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: health_check send and expect apply only to udp checks, not {}", label, name);
  }
  return Status::Ok();
}

// `current` with `options` applied as a request: a type change resets the old type's fields
// to their defaults, and fields that do not apply to the resulting type are refused.
Result<Listener> ApplyOptions(std::string_view label, const Listener& current,
                              const ListenerOptions& options) {
  Listener next = current;
  const HealthCheckOptions& check = options.health_check;
  if (check.type && *check.type != next.health_check.type) {
    const HealthCheck defaults;
    next.health_check.path = defaults.path;
    next.health_check.host = defaults.host;
    next.health_check.codes = defaults.codes;
    next.health_check.send = defaults.send;
    next.health_check.expect = defaults.expect;
  }
  FULCRUM_RETURN_IF_ERROR(
      CheckOptionsApply(label, check, check.type.value_or(next.health_check.type)));
  FULCRUM_RETURN_IF_ERROR(OverlayListener(label, options, next));
  FULCRUM_RETURN_IF_ERROR(ValidateListener(label, next));
  return next;
}

Listener DefaultListener(Protocol protocol) {
  Listener listener;
  listener.protocol = protocol;
  listener.on_backend_down = DefaultBackendDownPolicy(protocol);
  switch (protocol) {
    case Protocol::kTcp:
      listener.health_check.type = HealthCheckType::kTcp;
      break;
    case Protocol::kHttp:
    case Protocol::kHttps:
      listener.health_check.type = HealthCheckType::kHttp;
      break;
    case Protocol::kUdp:
      listener.idle_timeout = kDefaultUdpIdleTimeout;
      listener.health_check.type = HealthCheckType::kNone;  // a udp create must choose
      break;
  }
  return listener;
}

HealthCheckOptions ReadHealthCheckOptions(JsonFields& fields) {
  HealthCheckOptions options;
  options.type = ReadEnum(fields, "type", kHealthCheckTypeNames);
  options.port = fields.Int("port", Presence::kOptional);
  options.interval = fields.Int("interval", Presence::kOptional);
  options.timeout = fields.Int("timeout", Presence::kOptional);
  options.rise = fields.Int("rise", Presence::kOptional);
  options.fall = fields.Int("fall", Presence::kOptional);
  options.path = fields.String("path", Presence::kOptional);
  options.host = fields.String("host", Presence::kOptional);
  options.codes = fields.StringArray("codes", Presence::kOptional);
  options.send = fields.String("send", Presence::kOptional);
  options.expect = fields.String("expect", Presence::kOptional);
  return options;
}

// A mutation's error re-worded for the state file: kCorruptState at `path`.
Status Corrupt(const std::string& path, const Status& status) {
  if (status.ok()) {
    return status;
  }
  return Error(ErrorCode::kCorruptState, "{}: {}", path, status.message());
}

std::string_view KindOfId(const std::string& id) {
  if (IsValidId(id, kLbIdPrefix)) {
    return "load balancer";
  }
  if (IsValidId(id, kGroupIdPrefix)) {
    return "server group";
  }
  if (IsValidId(id, kListenerIdPrefix)) {
    return "listener";
  }
  if (IsValidId(id, kRuleIdPrefix)) {
    return "rule";
  }
  if (IsValidId(id, kAclIdPrefix)) {
    return "access control list";
  }
  return "";
}

// Finds `id` in `objects`, or explains why not.
template <typename T>
Result<const T*> Lookup(const std::map<std::string, T>& objects, const std::string& id,
                        std::string_view prefix, std::string_view kind) {
  if (!IsValidId(id, prefix)) {
    return Error(ErrorCode::kInvalidParameter, "'{}' is not a {} id ({} and 8 hex digits)",
                 id.substr(0, 80), kind, prefix);
  }
  auto it = objects.find(id);
  if (it == objects.end()) {
    return Error(ErrorCode::kResourceNotFound, "{} {} does not exist", kind, id);
  }
  return &it->second;
}

std::string JoinIds(const std::vector<std::string>& ids) {
  std::string text;
  for (const std::string& id : ids) {
    text += (text.empty() ? "" : ", ") + id;
  }
  return text;
}

}  // namespace

std::string_view ProtocolName(Protocol protocol) { return NameOf(kProtocolNames, protocol); }
std::optional<Protocol> ProtocolFromName(std::string_view name) {
  return ValueOf(kProtocolNames, name);
}
ProtocolFamily FamilyOf(Protocol protocol) {
  return protocol == Protocol::kUdp ? ProtocolFamily::kUdp : ProtocolFamily::kTcp;
}
std::string_view SchedulerName(Scheduler scheduler) { return NameOf(kSchedulerNames, scheduler); }
std::optional<Scheduler> SchedulerFromName(std::string_view name) {
  return ValueOf(kSchedulerNames, name);
}
std::string_view ForwardModeName(ForwardMode mode) { return NameOf(kForwardModeNames, mode); }
std::optional<ForwardMode> ForwardModeFromName(std::string_view name) {
  return ValueOf(kForwardModeNames, name);
}
std::string_view HealthCheckTypeName(HealthCheckType type) {
  return NameOf(kHealthCheckTypeNames, type);
}
std::optional<HealthCheckType> HealthCheckTypeFromName(std::string_view name) {
  return ValueOf(kHealthCheckTypeNames, name);
}
std::string_view HealthStateName(HealthState state) { return NameOf(kHealthStateNames, state); }
std::optional<HealthState> HealthStateFromName(std::string_view name) {
  return ValueOf(kHealthStateNames, name);
}
std::string_view BackendDownPolicyName(BackendDownPolicy policy) {
  return NameOf(kBackendDownPolicyNames, policy);
}
std::optional<BackendDownPolicy> BackendDownPolicyFromName(std::string_view name) {
  return ValueOf(kBackendDownPolicyNames, name);
}
std::string_view ClientIpModeName(ClientIpMode mode) { return NameOf(kClientIpModeNames, mode); }
std::optional<ClientIpMode> ClientIpModeFromName(std::string_view name) {
  return ValueOf(kClientIpModeNames, name);
}
std::string_view AclTypeName(AclType type) { return NameOf(kAclTypeNames, type); }
std::optional<AclType> AclTypeFromName(std::string_view name) {
  return ValueOf(kAclTypeNames, name);
}

Result<Prefix> ParseAclEntry(std::string_view text) {
  Result<Prefix> prefix = Error(ErrorCode::kInvalidParameter, "");
  if (text.find('/') == std::string_view::npos) {
    Result<IpAddress> addr = IpAddress::Parse(text);
    if (!addr.ok()) {
      return Error(ErrorCode::kInvalidParameter, "ACL entry '{}' is neither an address nor a CIDR",
                   text.substr(0, 80));
    }
    prefix = Prefix::Create(*addr, addr->is_v4() ? 32 : 128);
  } else {
    prefix = Prefix::Parse(text);
  }
  if (!prefix.ok()) {
    return Error(ErrorCode::kInvalidParameter, "ACL entry '{}': {}", text.substr(0, 80),
                 prefix.status().message());
  }
  if (prefix->Network() != prefix->addr()) {
    return Error(ErrorCode::kInvalidParameter,
                 "ACL entry '{}' has host bits set: the network is {}/{}", text.substr(0, 80),
                 prefix->Network().ToString(), prefix->length());
  }
  return prefix;
}

BackendDownPolicy DefaultBackendDownPolicy(Protocol protocol) {
  return protocol == Protocol::kUdp ? BackendDownPolicy::kReschedule : BackendDownPolicy::kReset;
}

const Backend* ServerGroup::FindBackend(const Endpoint& addr) const {
  auto it = std::find_if(backends.begin(), backends.end(),
                         [&](const Backend& backend) { return backend.addr == addr; });
  return it == backends.end() ? nullptr : &*it;
}

ListenerOptions ReadListenerOptions(JsonFields& fields) {
  ListenerOptions options;
  options.group = fields.String("group", Presence::kOptional);
  options.scheduler = ReadEnum(fields, "scheduler", kSchedulerNames);
  options.mode = ReadEnum(fields, "mode", kForwardModeNames);
  options.idle_timeout = fields.Int("idle_timeout", Presence::kOptional);
  options.persistence = fields.Int("persistence", Presence::kOptional);
  // Asked only when present: a state file reader requires every field it asks for, and state
  // files written before this option existed lack it (they load with the protocol's default).
  if (fields.Has("client_ip")) {
    options.client_ip = ReadEnum(fields, "client_ip", kClientIpModeNames);
  }
  if (fields.Has("acl")) {
    options.acl = fields.String("acl", Presence::kRequired);
  }
  if (fields.Has("acl_type")) {
    options.acl_type = ReadEnum(fields, "acl_type", kAclTypeNames);
  }
  if (fields.Has("on_backend_down")) {
    options.on_backend_down = ReadEnum(fields, "on_backend_down", kBackendDownPolicyNames);
  }
  JsonFields check = fields.Nested("health_check", Presence::kOptional);
  options.health_check = ReadHealthCheckOptions(check);
  fields.Fail(check.Finish());
  return options;
}

// ---- Model: queries.

namespace {
std::atomic<std::uint64_t> next_lineage{1};
}  // namespace

Model::Model(std::vector<IpAddress> reserved_addresses)
    : reserved_addresses_(reserved_addresses.begin(), reserved_addresses.end()),
      lineage_(next_lineage.fetch_add(1, std::memory_order_relaxed)) {}

void Model::set_version(std::uint64_t version) {
  version_ = version;
  layout_version_ = version;
  touched_.clear();
  touch_order_.clear();
}

void Model::Touch(const std::vector<std::string>& listeners) {
  ++version_;
  for (const std::string& id : listeners) {
    auto [it, fresh] = touched_.try_emplace(id, version_);
    if (!fresh) {
      touch_order_.erase({it->second, id});
      it->second = version_;
    }
    touch_order_.insert({version_, id});
  }
}

void Model::ForgetTouches(const std::string& listener) {
  if (auto touched = touched_.find(listener); touched != touched_.end()) {
    touch_order_.erase({touched->second, listener});
    touched_.erase(touched);
  }
}

std::vector<std::string> Model::ListenersTouchedSince(std::uint64_t version) const {
  std::vector<std::string> ids;
  for (auto it = touch_order_.lower_bound({version + 1, std::string()}); it != touch_order_.end();
       ++it) {
    ids.push_back(it->second);
  }
  return ids;
}

std::size_t Model::backend_count() const {
  std::size_t count = 0;
  for (const auto& [id, group] : groups_) {
    count += group.backends.size();
  }
  return count;
}

const LoadBalancer* Model::FindLb(const std::string& id) const {
  auto it = lbs_.find(id);
  return it == lbs_.end() ? nullptr : &it->second;
}

const ServerGroup* Model::FindGroup(const std::string& id) const {
  auto it = groups_.find(id);
  return it == groups_.end() ? nullptr : &it->second;
}

const Listener* Model::FindListener(const std::string& id) const {
  auto it = listeners_.find(id);
  return it == listeners_.end() ? nullptr : &it->second;
}

Result<const LoadBalancer*> Model::GetLb(const std::string& id) const {
  return Lookup(lbs_, id, kLbIdPrefix, "load balancer");
}

Result<const ServerGroup*> Model::GetGroup(const std::string& id) const {
  return Lookup(groups_, id, kGroupIdPrefix, "server group");
}

Result<const Listener*> Model::GetListener(const std::string& id) const {
  return Lookup(listeners_, id, kListenerIdPrefix, "listener");
}

bool Model::IdTaken(const std::string& id) const {
  return lbs_.count(id) > 0 || groups_.count(id) > 0 || listeners_.count(id) > 0 ||
         acls_.count(id) > 0 || retired_ids_.count(id) > 0;
}

std::vector<std::string> Model::ListenersOfLb(const std::string& lb) const {
  std::vector<std::string> ids;
  for (const auto& [id, listener] : listeners_) {
    if (listener.lb == lb) {
      ids.push_back(id);
    }
  }
  return ids;
}

std::vector<std::string> Model::GroupsOfLb(const std::string& lb) const {
  std::vector<std::string> ids;
  for (const auto& [id, group] : groups_) {
    if (group.lb == lb) {
      ids.push_back(id);
    }
  }
  return ids;
}

std::vector<std::string> Model::ListenersOfGroup(const std::string& group) const {
  std::vector<std::string> ids;
  for (const auto& [id, listener] : listeners_) {
    if (listener.group == group) {
      ids.push_back(id);
    }
  }
  return ids;
}

BackendHealth Model::HealthOf(const std::string& listener, const Endpoint& backend) const {
  auto it = health_.find(HealthKey{listener, backend});
  return it == health_.end() ? BackendHealth{} : it->second;
}

HealthSummary Model::HealthSummaryOf(const std::string& listener_id) const {
  HealthSummary summary;
  const Listener* listener = FindListener(listener_id);
  if (listener == nullptr) {
    return summary;
  }
  for (const Backend& backend : groups_.at(listener->group).backends) {
    if (backend.weight == 0) {
      continue;  // draining: takes no new connections, fail-open or not
    }
    ++summary.total;
    if (HealthOf(listener_id, backend.addr).state != HealthState::kDown) {
      ++summary.healthy;
    }
  }
  return summary;
}

// ---- Model: load balancers.

Status Model::CheckIdFree(const std::string& id, std::string_view prefix,
                          std::string_view kind) const {
  if (!IsValidId(id, prefix)) {
    return Error(ErrorCode::kInvalidParameter, "'{}' is not a {} id ({} and 8 hex digits)",
                 id.substr(0, 80), kind, prefix);
  }
  if (IdTaken(id)) {
    return Error(ErrorCode::kAlreadyExists, "id {} is already used in this state", id);
  }
  return Status::Ok();
}

void Model::Retire(const std::string& id) { retired_ids_.insert(id); }

Status Model::CreateLb(const std::string& id, const std::string& name, const IpAddress& vip,
                       std::int64_t now) {
  FULCRUM_RETURN_IF_ERROR(CheckIdFree(id, kLbIdPrefix, "load balancer"));
  FULCRUM_RETURN_IF_ERROR(ValidateName("load balancer", name));
  FULCRUM_RETURN_IF_ERROR(ValidateUnicast("VIP", vip));
  if (reserved_addresses_.count(vip) > 0) {
    return Error(ErrorCode::kAddressConflict,
                 "VIP {} is one of lbd's own addresses and cannot be a load balancer's VIP",
                 vip.ToString());
  }
  for (const auto& [other_id, other] : lbs_) {
    if (other.vip == vip) {
      return Error(ErrorCode::kAddressConflict, "VIP {} is already used by load balancer {} ({})",
                   vip.ToString(), other_id, other.name);
    }
  }
  if (lbs_.size() >= kMaxLbs) {
    return Error(ErrorCode::kLimitExceeded,
                 "cannot create load balancer '{}': the limit of {} load balancers is reached",
                 name, kMaxLbs);
  }
  lbs_[id] = LoadBalancer{.id = id, .name = name, .vip = vip, .created_at = now};
  Bump();
  return Status::Ok();
}

Result<DeletedLb> Model::DeleteLb(const std::string& id) {
  Result<const LoadBalancer*> lb = GetLb(id);
  if (!lb.ok()) {
    return lb.status();
  }
  DeletedLb deleted{ListenersOfLb(id), GroupsOfLb(id), AclsOfLb(id)};
  for (const std::string& listener : deleted.listeners) {
    listeners_.erase(listener);
    ForgetTouches(listener);
    DropHealth([&](const HealthKey& key) { return key.listener == listener; });
    Retire(listener);
  }
  for (const std::string& group : deleted.groups) {
    groups_.erase(group);
    Retire(group);
  }
  for (const std::string& acl : deleted.acls) {
    acls_.erase(acl);
    Retire(acl);
  }
  lbs_.erase(id);
  Retire(id);
  Bump();
  return deleted;
}

// ---- Model: server groups.

Result<ServerGroup*> Model::MutableGroup(const std::string& id) {
  Result<const ServerGroup*> group = GetGroup(id);
  if (!group.ok()) {
    return group.status();
  }
  return &groups_.at(id);
}

Status Model::CreateGroup(const std::string& id, const std::string& lb, const std::string& name) {
  FULCRUM_RETURN_IF_ERROR(CheckIdFree(id, kGroupIdPrefix, "server group"));
  FULCRUM_RETURN_IF_ERROR(GetLb(lb).status());
  FULCRUM_RETURN_IF_ERROR(ValidateName("server group", name));
  if (GroupsOfLb(lb).size() >= kMaxGroupsPerLb) {
    return Error(ErrorCode::kLimitExceeded,
                 "cannot create server group '{}': load balancer {} already has {} server "
                 "groups, the limit",
                 name, lb, kMaxGroupsPerLb);
  }
  groups_[id] = ServerGroup{.id = id, .lb = lb, .name = name, .backends = {}};
  Bump();
  return Status::Ok();
}

Status Model::DeleteGroup(const std::string& id) {
  FULCRUM_RETURN_IF_ERROR(GetGroup(id).status());
  const std::vector<std::string> users = ListenersOfGroup(id);
  if (!users.empty()) {
    return Error(ErrorCode::kResourceInUse,
                 "server group {} is the default group of listener {}: delete the listener or "
                 "give it another group first",
                 id, JoinIds(users));
  }
  groups_.erase(id);
  Retire(id);
  Bump();
  return Status::Ok();
}

Status Model::AddBackend(const std::string& group_id, const Endpoint& addr, std::int64_t weight) {
  Result<ServerGroup*> group = MutableGroup(group_id);
  if (!group.ok()) {
    return group.status();
  }
  const std::string what = fmt::format("backend {} of group {}:", addr.ToString(), group_id);
  FULCRUM_RETURN_IF_ERROR(ValidateUnicast(what, addr.addr));
  if (addr.port == 0) {
    return Error(ErrorCode::kInvalidParameter, "{} port 0 is not a port", what);
  }
  if (reserved_addresses_.count(addr.addr) > 0) {
    return Error(ErrorCode::kInvalidParameter, "{} {} is one of lbd's own addresses", what,
                 addr.addr.ToString());
  }
  FULCRUM_RETURN_IF_ERROR(CheckWeight(group_id, addr, weight));
  const LoadBalancer& lb = lbs_.at((*group)->lb);
  if (addr.addr.family() != lb.vip.family()) {
    if (lb.vip.is_v4()) {
      return Error(ErrorCode::kInvalidParameter,
                   "backend {} is ipv6 but load balancer {} has the ipv4 VIP {}: an IPv4 VIP "
                   "serves IPv4 backends only",
                   addr.ToString(), lb.id, lb.vip.ToString());
    }
    // An IPv4 backend behind an IPv6 VIP: NAT64, which only full NAT does.
    for (const auto& [listener_id, listener] : listeners_) {
      if (listener.group == group_id && listener.mode == ForwardMode::kDnat) {
        return Error(ErrorCode::kInvalidParameter,
                     "backend {} is ipv4 but dnat listener {} of the ipv6 VIP {} uses server "
                     "group {}: IPv6 clients reach IPv4 backends through fnat (NAT64) only",
                     addr.ToString(), listener_id, lb.vip.ToString(), group_id);
      }
    }
  }
  if ((*group)->FindBackend(addr) != nullptr) {
    return Error(ErrorCode::kAlreadyExists, "backend {} is already in server group {}",
                 addr.ToString(), group_id);
  }
  if ((*group)->backends.size() >= kMaxBackendsPerGroup) {
    return Error(ErrorCode::kLimitExceeded,
                 "cannot add backend {}: server group {} already has {} backends, the limit",
                 addr.ToString(), group_id, kMaxBackendsPerGroup);
  }
  (*group)->backends.push_back(Backend{addr, static_cast<std::uint32_t>(weight)});
  Bump();
  return Status::Ok();
}

Status Model::SetWeight(const std::string& group_id, const Endpoint& addr, std::int64_t weight) {
  Result<ServerGroup*> group = MutableGroup(group_id);
  if (!group.ok()) {
    return group.status();
  }
  FULCRUM_RETURN_IF_ERROR(CheckWeight(group_id, addr, weight));
  for (Backend& backend : (*group)->backends) {
    if (backend.addr == addr) {
      backend.weight = static_cast<std::uint32_t>(weight);
      Touch(ListenersOfGroup(group_id));
      return Status::Ok();
    }
  }
  return Error(ErrorCode::kResourceNotFound, "backend {} is not in server group {}",
               addr.ToString(), group_id);
}

Status Model::RemoveBackend(const std::string& group_id, const Endpoint& addr) {
  Result<ServerGroup*> group = MutableGroup(group_id);
  if (!group.ok()) {
    return group.status();
  }
  std::vector<Backend>& backends = (*group)->backends;
  auto it = std::find_if(backends.begin(), backends.end(),
                         [&](const Backend& backend) { return backend.addr == addr; });
  if (it == backends.end()) {
    return Error(ErrorCode::kResourceNotFound, "backend {} is not in server group {}",
                 addr.ToString(), group_id);
  }
  backends.erase(it);
  const std::vector<std::string> users = ListenersOfGroup(group_id);
  DropHealth([&](const HealthKey& key) {
    return key.backend == addr &&
           std::find(users.begin(), users.end(), key.listener) != users.end();
  });
  Bump();
  return Status::Ok();
}

void Model::DropHealth(const std::function<bool(const HealthKey&)>& doomed) {
  std::erase_if(health_, [&](const auto& entry) { return doomed(entry.first); });
}

// ---- Model: access control lists.

namespace {

// Parses `texts` into distinct prefixes; a repeat within them is refused.
Result<std::vector<Prefix>> ParseAclEntries(std::string_view label,
                                            const std::vector<std::string>& texts) {
  std::vector<Prefix> out;
  for (const std::string& text : texts) {
    Result<Prefix> prefix = ParseAclEntry(text);
    if (!prefix.ok()) {
      return Status(prefix.status().code(),
                    fmt::format("{}: {}", label, prefix.status().message()));
    }
    if (std::find(out.begin(), out.end(), *prefix) != out.end()) {
      return Error(ErrorCode::kInvalidParameter, "{}: {} is given twice", label,
                   prefix->ToString());
    }
    out.push_back(*prefix);
  }
  return out;
}

}  // namespace

const Acl* Model::FindAcl(const std::string& id) const {
  auto it = acls_.find(id);
  return it == acls_.end() ? nullptr : &it->second;
}

Result<const Acl*> Model::GetAcl(const std::string& id) const {
  if (!IsValidId(id, kAclIdPrefix)) {
    return Error(ErrorCode::kInvalidParameter, "'{}' is not an acl id ({} and 8 hex digits)",
                 id.substr(0, 80), kAclIdPrefix);
  }
  const Acl* acl = FindAcl(id);
  if (acl == nullptr) {
    return Error(ErrorCode::kResourceNotFound, "acl {} does not exist", id);
  }
  return acl;
}

std::vector<std::string> Model::AclsOfLb(const std::string& lb) const {
  std::vector<std::string> ids;
  for (const auto& [id, acl] : acls_) {
    if (acl.lb == lb) {
      ids.push_back(id);
    }
  }
  return ids;
}

std::vector<std::string> Model::ListenersOfAcl(const std::string& acl) const {
  std::vector<std::string> ids;
  for (const auto& [id, listener] : listeners_) {
    if (listener.acl == acl) {
      ids.push_back(id);
    }
  }
  return ids;
}

Status Model::CreateAcl(const std::string& id, const std::string& lb, const std::string& name,
                        const std::vector<std::string>& entries) {
  FULCRUM_RETURN_IF_ERROR(CheckIdFree(id, kAclIdPrefix, "acl"));
  FULCRUM_RETURN_IF_ERROR(GetLb(lb).status());
  FULCRUM_RETURN_IF_ERROR(ValidateName("acl", name));
  if (AclsOfLb(lb).size() >= kMaxAclsPerLb) {
    return Error(ErrorCode::kLimitExceeded,
                 "cannot create acl '{}': load balancer {} already has {} acls, the limit", name,
                 lb, kMaxAclsPerLb);
  }
  const std::string label = fmt::format("new acl '{}'", name);
  Result<std::vector<Prefix>> parsed = ParseAclEntries(label, entries);
  if (!parsed.ok()) {
    return parsed.status();
  }
  if (parsed->size() > kMaxAclEntries) {
    return Error(ErrorCode::kLimitExceeded, "{}: {} entries, the limit is {}", label,
                 parsed->size(), kMaxAclEntries);
  }
  std::sort(parsed->begin(), parsed->end());
  acls_[id] = Acl{.id = id, .lb = lb, .name = name, .entries = std::move(*parsed)};
  Bump();
  return Status::Ok();
}

Status Model::AddAclEntries(const std::string& id, const std::vector<std::string>& entries) {
  FULCRUM_RETURN_IF_ERROR(GetAcl(id).status());
  Acl& acl = acls_.at(id);
  const std::string label = fmt::format("acl {}", id);
  Result<std::vector<Prefix>> parsed = ParseAclEntries(label, entries);
  if (!parsed.ok()) {
    return parsed.status();
  }
  for (const Prefix& prefix : *parsed) {
    if (std::binary_search(acl.entries.begin(), acl.entries.end(), prefix)) {
      return Error(ErrorCode::kInvalidParameter, "{} already has {}", label, prefix.ToString());
    }
  }
  if (acl.entries.size() + parsed->size() > kMaxAclEntries) {
    return Error(ErrorCode::kLimitExceeded, "{} has {} entries: {} more would pass the limit of {}",
                 label, acl.entries.size(), parsed->size(), kMaxAclEntries);
  }
  acl.entries.insert(acl.entries.end(), parsed->begin(), parsed->end());
  std::sort(acl.entries.begin(), acl.entries.end());
  Bump();
  return Status::Ok();
}

Status Model::RemoveAclEntries(const std::string& id, const std::vector<std::string>& entries) {
  FULCRUM_RETURN_IF_ERROR(GetAcl(id).status());
  Acl& acl = acls_.at(id);
  const std::string label = fmt::format("acl {}", id);
  Result<std::vector<Prefix>> parsed = ParseAclEntries(label, entries);
  if (!parsed.ok()) {
    return parsed.status();
  }
  for (const Prefix& prefix : *parsed) {
    if (!std::binary_search(acl.entries.begin(), acl.entries.end(), prefix)) {
      return Error(ErrorCode::kResourceNotFound, "{} has no entry {}", label, prefix.ToString());
    }
  }
  std::erase_if(acl.entries, [&](const Prefix& prefix) {
    return std::find(parsed->begin(), parsed->end(), prefix) != parsed->end();
  });
  Bump();
  return Status::Ok();
}

Status Model::DeleteAcl(const std::string& id) {
  FULCRUM_RETURN_IF_ERROR(GetAcl(id).status());
  const std::vector<std::string> users = ListenersOfAcl(id);
  if (!users.empty()) {
    return Error(ErrorCode::kResourceInUse,
                 "acl {} is used by listener {}: give it another acl or none (--acl off) first", id,
                 JoinIds(users));
  }
  acls_.erase(id);
  Retire(id);
  Bump();
  return Status::Ok();
}

json Model::AclJson(const Acl& acl) const {
  std::vector<std::string> entries;
  for (const Prefix& prefix : acl.entries) {
    entries.push_back(prefix.ToString());
  }
  return json{{"id", acl.id},
              {"lb", acl.lb},
              {"name", acl.name},
              {"entries", entries},
              {"listeners", ListenersOfAcl(acl.id)}};
}

// ---- Model: listeners.

Status Model::CheckListenerGroup(const Listener& listener, std::string_view label) const {
  if (listener.group.empty()) {
    return Error(ErrorCode::kMissingParameter, "{}: a default server group is required", label);
  }
  Result<const ServerGroup*> group = GetGroup(listener.group);
  if (!group.ok()) {
    return Status(group.status().code(), fmt::format("{}: {}", label, group.status().message()));
  }
  if ((*group)->lb != listener.lb) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: server group {} belongs to load balancer {}, not {}", label, listener.group,
                 (*group)->lb, listener.lb);
  }
  if (listener.mode == ForwardMode::kDnat) {
    const LoadBalancer& lb = lbs_.at(listener.lb);
    for (const Backend& backend : (*group)->backends) {
      if (backend.addr.addr.family() != lb.vip.family()) {
        return Error(ErrorCode::kInvalidParameter,
                     "{}: dnat cannot send the ipv6 VIP {}'s clients to the ipv4 backend {} of "
                     "server group {}: use fnat (NAT64)",
                     label, lb.vip.ToString(), backend.addr.ToString(), listener.group);
      }
    }
  }
  return Status::Ok();
}

Status Model::CheckListenerAcl(const Listener& listener, std::string_view label) const {
  if (listener.acl.empty()) {
    return Status::Ok();
  }
  Result<const Acl*> acl = GetAcl(listener.acl);
  if (!acl.ok()) {
    return Status(acl.status().code(), fmt::format("{}: {}", label, acl.status().message()));
  }
  if ((*acl)->lb != listener.lb) {
    return Error(ErrorCode::kInvalidParameter, "{}: acl {} belongs to load balancer {}, not {}",
                 label, listener.acl, (*acl)->lb, listener.lb);
  }
  return Status::Ok();
}

Status Model::AddListener(const Listener& listener, std::string_view label) {
  FULCRUM_RETURN_IF_ERROR(CheckIdFree(listener.id, kListenerIdPrefix, "listener"));
  FULCRUM_RETURN_IF_ERROR(GetLb(listener.lb).status());
  FULCRUM_RETURN_IF_ERROR(ValidateListener(label, listener));
  FULCRUM_RETURN_IF_ERROR(CheckListenerGroup(listener, label));
  FULCRUM_RETURN_IF_ERROR(CheckListenerAcl(listener, label));
  const std::vector<std::string> siblings = ListenersOfLb(listener.lb);
  for (const std::string& sibling_id : siblings) {
    const Listener& sibling = listeners_.at(sibling_id);
    if (sibling.port == listener.port &&
        FamilyOf(sibling.protocol) == FamilyOf(listener.protocol)) {
      return Error(ErrorCode::kPortConflict, "{} already has listener {} on {} port {}{}",
                   listener.lb, sibling_id, ProtocolName(sibling.protocol), sibling.port,
                   FamilyOf(listener.protocol) == ProtocolFamily::kTcp
                       ? " (tcp, http and https listeners share the TCP ports)"
                       : "");
    }
  }
  if (siblings.size() >= kMaxListenersPerLb) {
    return Error(ErrorCode::kLimitExceeded,
                 "cannot create {}: load balancer {} already has {} listeners, the limit", label,
                 listener.lb, kMaxListenersPerLb);
  }
  listeners_[listener.id] = listener;
  Bump();
  return Status::Ok();
}

Status Model::CreateListener(const std::string& id, const std::string& lb, Protocol protocol,
                             std::int64_t port, const ListenerOptions& options, std::int64_t now) {
  FULCRUM_RETURN_IF_ERROR(GetLb(lb).status());
  const std::string label =
      fmt::format("new {} listener on {} port {}", ProtocolName(protocol), lb, port);
  FULCRUM_RETURN_IF_ERROR(CheckRange(label, "port", port, kPortRange));
  if (protocol == Protocol::kUdp && !options.health_check.type) {
    return Error(ErrorCode::kMissingParameter,
                 "{}: a udp listener needs health_check.type: udp (with send and expect) or none",
                 label);
  }
  Listener base = DefaultListener(protocol);
  base.id = id;
  base.lb = lb;
  base.port = static_cast<std::uint16_t>(port);
  base.created_at = now;
  Result<Listener> listener = ApplyOptions(label, base, options);
  if (!listener.ok()) {
    return listener.status();
  }
  return AddListener(*listener, label);
}

Status Model::ModifyListener(const std::string& id, const ListenerOptions& options) {
  FULCRUM_RETURN_IF_ERROR(GetListener(id).status());
  const std::string label = fmt::format("listener {}", id);
  const Listener& current = listeners_.at(id);
  Result<Listener> next = ApplyOptions(label, current, options);
  if (!next.ok()) {
    return next.status();
  }
  FULCRUM_RETURN_IF_ERROR(CheckListenerGroup(*next, label));
  FULCRUM_RETURN_IF_ERROR(CheckListenerAcl(*next, label));
  if (next->group != current.group) {
    const ServerGroup& group = groups_.at(next->group);
    DropHealth([&](const HealthKey& key) {
      return key.listener == id && group.FindBackend(key.backend) == nullptr;
    });
  }
  listeners_[id] = std::move(next).value();
  Bump();
  return Status::Ok();
}

Status Model::DeleteListener(const std::string& id) {
  FULCRUM_RETURN_IF_ERROR(GetListener(id).status());
  listeners_.erase(id);
  ForgetTouches(id);
  DropHealth([&](const HealthKey& key) { return key.listener == id; });
  Retire(id);
  Bump();
  return Status::Ok();
}

Result<bool> Model::SetHealth(const std::string& listener_id, const Endpoint& backend,
                              HealthState state, const std::string& reason, std::int64_t now) {
  Result<const Listener*> listener = GetListener(listener_id);
  if (!listener.ok()) {
    return listener.status();
  }
  if (state == HealthState::kUnknown) {
    return Error(ErrorCode::kInvalidParameter,
                 "backend {} of listener {}: a report must say up or down, not unknown",
                 backend.ToString(), listener_id);
  }
  if (reason.size() > kMaxHealthReasonLength) {
    return Error(ErrorCode::kInvalidParameter,
                 "backend {} of listener {}: the reason is longer than {} bytes",
                 backend.ToString(), listener_id, kMaxHealthReasonLength);
  }
  const std::string& group = (*listener)->group;
  if (groups_.at(group).FindBackend(backend) == nullptr) {
    return Error(ErrorCode::kResourceNotFound,
                 "backend {} is not in server group {} of listener {}", backend.ToString(), group,
                 listener_id);
  }
  BackendHealth& health = health_[HealthKey{listener_id, backend}];
  const bool changed = health.state != state;
  const bool reason_changed = health.reason != reason;
  if (changed) {
    health.state = state;
    health.since = now;
  }
  health.reason = reason;
  health.last_probe = now;
  if (changed || reason_changed) {
    Touch({listener_id});
  }
  return changed;
}

// ---- JSON.

json HealthCheckJson(const HealthCheck& check) {
  return json{{"type", HealthCheckTypeName(check.type)},
              {"port", check.port},
              {"interval", check.interval},
              {"timeout", check.timeout},
              {"rise", check.rise},
              {"fall", check.fall},
              {"path", check.path},
              {"host", check.host},
              {"codes", check.codes},
              {"send", check.send},
              {"expect", check.expect}};
}

json ListenerJson(const Listener& listener) {
  return json{{"id", listener.id},
              {"lb", listener.lb},
              {"protocol", ProtocolName(listener.protocol)},
              {"port", listener.port},
              {"group", listener.group},
              {"scheduler", SchedulerName(listener.scheduler)},
              {"mode", ForwardModeName(listener.mode)},
              {"idle_timeout", listener.idle_timeout},
              {"persistence", listener.persistence},
              {"client_ip", ClientIpModeName(listener.client_ip)},
              {"acl", listener.acl},
              {"acl_type", AclTypeName(listener.acl_type)},
              {"on_backend_down", BackendDownPolicyName(listener.on_backend_down)},
              {"health_check", HealthCheckJson(listener.health_check)},
              {"created_at", listener.created_at}};
}

json Model::LbJson(const LoadBalancer& lb) const {
  return json{{"id", lb.id},
              {"name", lb.name},
              {"vip", lb.vip.ToString()},
              {"family", AddressFamilyName(lb.vip.family())},
              {"listeners", ListenersOfLb(lb.id)},
              {"groups", GroupsOfLb(lb.id)},
              {"acls", AclsOfLb(lb.id)},
              {"created_at", lb.created_at}};
}

json Model::ListenerView(const Listener& listener) const {
  json view = ListenerJson(listener);
  view["fail_open"] = HealthSummaryOf(listener.id).fail_open();
  return view;
}

json Model::GroupJson(const ServerGroup& group, const ActiveConnsFn& active_conns) const {
  const std::vector<std::string> users = ListenersOfGroup(group.id);
  json listener_health = json::array();
  for (const std::string& listener : users) {
    const HealthSummary summary = HealthSummaryOf(listener);
    listener_health.push_back({{"listener", listener},
                               {"healthy", summary.healthy},
                               {"total", summary.total},
                               {"fail_open", summary.fail_open()}});
  }
  json backends = json::array();
  for (const Backend& backend : group.backends) {
    const std::string addr = backend.addr.ToString();
    std::uint64_t conns = 0;
    json health = json::array();
    for (const std::string& listener : users) {
      conns += active_conns ? active_conns(listener, addr) : 0;
      const BackendHealth state = HealthOf(listener, backend.addr);
      health.push_back({{"listener", listener},
                        {"state", HealthStateName(state.state)},
                        {"reason", state.reason},
                        {"since", state.since},
                        {"last_probe", state.last_probe}});
    }
    backends.push_back(
        {{"addr", addr}, {"weight", backend.weight}, {"active_conns", conns}, {"health", health}});
  }
  return json{{"id", group.id},
              {"lb", group.lb},
              {"name", group.name},
              {"listeners", users},
              {"listener_health", listener_health},
              {"backends", backends}};
}

json Model::ToJson() const {
  json lbs = json::array();
  for (const auto& [id, lb] : lbs_) {
    lbs.push_back(
        {{"id", id}, {"name", lb.name}, {"vip", lb.vip.ToString()}, {"created_at", lb.created_at}});
  }
  json groups = json::array();
  for (const auto& [id, group] : groups_) {
    json backends = json::array();
    for (const Backend& backend : group.backends) {
      backends.push_back({{"addr", backend.addr.ToString()}, {"weight", backend.weight}});
    }
    groups.push_back({{"id", id}, {"lb", group.lb}, {"name", group.name}, {"backends", backends}});
  }
  json acls = json::array();
  for (const auto& [id, acl] : acls_) {
    json object = AclJson(acl);
    object.erase("listeners");
    acls.push_back(std::move(object));
  }
  json listeners = json::array();
  for (const auto& [id, listener] : listeners_) {
    listeners.push_back(ListenerJson(listener));
  }
  return json{{"lbs", lbs},
              {"groups", groups},
              {"acls", acls},
              {"listeners", listeners},
              {"retired_ids", retired_ids_}};
}

Status Model::LoadLb(const json& object, const std::string& path) {
  JsonFields fields = JsonFields::ForState(object, path);
  std::optional<std::string> id = fields.String("id", Presence::kRequired);
  std::optional<std::string> name = fields.String("name", Presence::kRequired);
  std::optional<std::string> vip_text = fields.String("vip", Presence::kRequired);
  std::optional<std::int64_t> created_at = fields.Int("created_at", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(fields.Finish());
  Result<IpAddress> vip = IpAddress::Parse(*vip_text);
  if (!vip.ok()) {
    return fields.Wrap("vip", vip.status());
  }
  return Corrupt(path, CreateLb(*id, *name, *vip, *created_at));
}

Status Model::LoadGroup(const json& object, const std::string& path) {
  JsonFields fields = JsonFields::ForState(object, path);
  std::optional<std::string> id = fields.String("id", Presence::kRequired);
  std::optional<std::string> lb = fields.String("lb", Presence::kRequired);
  std::optional<std::string> name = fields.String("name", Presence::kRequired);
  const json* backends = fields.Array("backends", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(fields.Finish());
  FULCRUM_RETURN_IF_ERROR(Corrupt(path, CreateGroup(*id, *lb, *name)));
  for (std::size_t i = 0; i < backends->size(); ++i) {
    const std::string backend_path = fmt::format("{}.backends[{}]", path, i);
    JsonFields backend = JsonFields::ForState((*backends)[i], backend_path);
    std::optional<std::string> addr_text = backend.String("addr", Presence::kRequired);
    std::optional<std::int64_t> weight = backend.Int("weight", Presence::kRequired);
    FULCRUM_RETURN_IF_ERROR(backend.Finish());
    Result<Endpoint> addr = Endpoint::Parse(*addr_text);
    if (!addr.ok()) {
      return backend.Wrap("addr", addr.status());
    }
    FULCRUM_RETURN_IF_ERROR(Corrupt(backend_path, AddBackend(*id, *addr, *weight)));
  }
  return Status::Ok();
}

Status Model::LoadAcl(const json& object, const std::string& path) {
  JsonFields fields = JsonFields::ForState(object, path);
  std::optional<std::string> id = fields.String("id", Presence::kRequired);
  std::optional<std::string> lb = fields.String("lb", Presence::kRequired);
  std::optional<std::string> name = fields.String("name", Presence::kRequired);
  std::optional<std::vector<std::string>> entries =
      fields.StringArray("entries", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(fields.Finish());
  return Corrupt(path, CreateAcl(*id, *lb, *name, *entries));
}

Status Model::LoadListener(const json& object, const std::string& path) {
  JsonFields fields = JsonFields::ForState(object, path);
  Listener listener;
  listener.id = fields.String("id", Presence::kRequired).value_or("");
  listener.lb = fields.String("lb", Presence::kRequired).value_or("");
  std::optional<std::string> protocol = fields.String("protocol", Presence::kRequired);
  std::optional<std::int64_t> port = fields.Int("port", Presence::kRequired);
  listener.created_at = fields.Int("created_at", Presence::kRequired).value_or(0);
  const ListenerOptions options = ReadListenerOptions(fields);
  FULCRUM_RETURN_IF_ERROR(fields.Finish());
  std::optional<Protocol> parsed = ProtocolFromName(*protocol);
  if (!parsed) {
    return fields.BadValue("protocol", OneOf(kProtocolNames));
  }
  if (!kPortRange.Contains(*port)) {
    return fields.BadValue("port", "an integer in 1..65535");
  }
  listener.protocol = *parsed;
  listener.port = static_cast<std::uint16_t>(*port);
  listener.on_backend_down = DefaultBackendDownPolicy(listener.protocol);
  const std::string label = fmt::format("listener {}", listener.id);
  FULCRUM_RETURN_IF_ERROR(Corrupt(path, OverlayListener(label, options, listener)));
  return Corrupt(path, AddListener(listener, label));
}

Status Model::LoadRetiredId(const std::string& id, const std::string& path) {
  if (KindOfId(id).empty()) {
    return Error(ErrorCode::kCorruptState, "{}: '{}' is not an object id", path, id.substr(0, 80));
  }
  if (IdTaken(id)) {
    return Error(ErrorCode::kCorruptState, "{}: {} is both live and retired, or listed twice", path,
                 id);
  }
  retired_ids_.insert(id);
  return Status::Ok();
}

Result<Model> Model::FromJson(const json& state, std::vector<IpAddress> reserved_addresses) {
  Model model(std::move(reserved_addresses));
  JsonFields fields = JsonFields::ForState(state, "");
  const json* lbs = fields.Array("lbs", Presence::kRequired);
  const json* groups = fields.Array("groups", Presence::kRequired);
  const json* listeners = fields.Array("listeners", Presence::kRequired);
  // Optional: state files written before ACLs existed lack it.
  const json* acls = fields.Has("acls") ? fields.Array("acls", Presence::kRequired) : nullptr;
  std::optional<std::vector<std::string>> retired =
      fields.StringArray("retired_ids", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(fields.Finish());
  for (std::size_t i = 0; i < lbs->size(); ++i) {
    FULCRUM_RETURN_IF_ERROR(model.LoadLb((*lbs)[i], fmt::format("lbs[{}]", i)));
  }
  for (std::size_t i = 0; i < groups->size(); ++i) {
    FULCRUM_RETURN_IF_ERROR(model.LoadGroup((*groups)[i], fmt::format("groups[{}]", i)));
  }
  for (std::size_t i = 0; acls != nullptr && i < acls->size(); ++i) {
    FULCRUM_RETURN_IF_ERROR(model.LoadAcl((*acls)[i], fmt::format("acls[{}]", i)));
  }
  for (std::size_t i = 0; i < listeners->size(); ++i) {
    FULCRUM_RETURN_IF_ERROR(model.LoadListener((*listeners)[i], fmt::format("listeners[{}]", i)));
  }
  for (std::size_t i = 0; i < retired->size(); ++i) {
    FULCRUM_RETURN_IF_ERROR(model.LoadRetiredId((*retired)[i], fmt::format("retired_ids[{}]", i)));
  }
  model.version_ = 1;
  return model;
}

}  // namespace fulcrum::model
