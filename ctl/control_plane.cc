#include "ctl/control_plane.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <utility>

#include "common/log.h"
#include "common/state_file.h"

#ifndef FULCRUM_VERSION
#define FULCRUM_VERSION "unknown"
#endif

namespace fulcrum::ctl {
namespace {

using nlohmann::json;

constexpr std::int64_t kDefaultConnLimit = 1000;
constexpr std::int64_t kMaxConnLimit = 100000;

Logger& Log() {
  static Logger logger("ctl");
  return logger;
}

std::int64_t RealNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The endpoint in argument `key`, or an error naming the argument.
Result<Endpoint> ParseAddr(const JsonFields& args, std::string_view key, const std::string& text) {
  Result<Endpoint> addr = Endpoint::Parse(text);
  if (!addr.ok()) {
    return args.Wrap(key, addr.status());
  }
  return addr;
}

// Entering fail-open is worth a warning: the listener now forwards to backends known dead.
void LogFailOpenChange(const std::string& listener, const model::HealthSummary& before,
                       const model::HealthSummary& after) {
  if (!before.fail_open() && after.fail_open()) {
    Log().Warn(
        "listener {} is in fail-open: all {} of its backends are down, so traffic goes to "
        "all of them",
        listener, after.total);
  } else if (before.fail_open() && !after.fail_open()) {
    Log().Info("listener {} leaves fail-open: {} of {} backends are up", listener, after.healthy,
               after.total);
  }
}

}  // namespace

const std::vector<ControlPlane::Command>& ControlPlane::Commands() {
  static const std::vector<Command> kCommands = {
      {"status", &ControlPlane::ShowStatus, false},
      {"lb.create", &ControlPlane::LbCreate, true},
      {"lb.list", &ControlPlane::LbList, false},
      {"lb.show", &ControlPlane::LbShow, false},
      {"lb.delete", &ControlPlane::LbDelete, true},
      {"group.create", &ControlPlane::GroupCreate, true},
      {"group.add_backend", &ControlPlane::GroupAddBackend, true},
      {"group.set_weight", &ControlPlane::GroupSetWeight, true},
      {"group.remove_backend", &ControlPlane::GroupRemoveBackend, true},
      {"group.list", &ControlPlane::GroupList, false},
      {"group.show", &ControlPlane::GroupShow, false},
      {"group.delete", &ControlPlane::GroupDelete, true},
      {"acl.create", &ControlPlane::AclCreate, true},
      {"acl.add", &ControlPlane::AclAdd, true},
      {"acl.remove", &ControlPlane::AclRemove, true},
      {"acl.list", &ControlPlane::AclList, false},
      {"acl.show", &ControlPlane::AclShow, false},
      {"acl.delete", &ControlPlane::AclDelete, true},
      {"listener.create", &ControlPlane::ListenerCreate, true},
      {"listener.modify", &ControlPlane::ListenerModify, true},
      {"listener.list", &ControlPlane::ListenerList, false},
      {"listener.show", &ControlPlane::ListenerShow, false},
      {"listener.delete", &ControlPlane::ListenerDelete, true},
      {"stats", &ControlPlane::Stats, false},
      {"conn.list", &ControlPlane::ConnList, false},
      {"backend.set_health", &ControlPlane::BackendSetHealth, false},
      {"health.targets", &ControlPlane::HealthTargets, false},
  };
  return kCommands;
}

Result<std::unique_ptr<ControlPlane>> ControlPlane::Create(ControlPlaneOptions options,
                                                           DataplaneLink& link) {
  if (!options.now) {
    options.now = RealNow;
  }
  model::Model model(options.reserved_addresses);
  if (!options.state_file.empty()) {
    Result<std::optional<json>> state = ReadStateFile(options.state_file);
    if (!state.ok()) {
      return state.status();
    }
    if (state->has_value()) {
      Result<model::Model> loaded = model::Model::FromJson(**state, options.reserved_addresses);
      if (!loaded.ok()) {
        return Error(ErrorCode::kCorruptState,
                     "state file {}: {}; lbd refuses to start rather than start with an empty "
                     "configuration (fix or move the file away to start empty)",
                     options.state_file, loaded.status().message());
      }
      model = std::move(loaded).value();
    }
  }
  std::unique_ptr<ControlPlane> plane(new ControlPlane(std::move(options), link, std::move(model)));
  const fulcrum::Status applied = plane->Apply();
  if (!applied.ok()) {
    return Error(applied.code(), "the data plane did not take the configuration at start: {}",
                 applied.message());
  }
  Log().Info("control plane up: {} load balancers, {} listeners, state file '{}'",
             plane->model_.lbs().size(), plane->model_.listeners().size(),
             plane->options_.state_file);
  return plane;
}

ControlPlane::ControlPlane(ControlPlaneOptions options, DataplaneLink& link, model::Model model)
    : options_(std::move(options)),
      link_(link),
      model_(std::move(model)),
      ids_(options_.id_seed ? IdGenerator(*options_.id_seed) : IdGenerator::FromRandomDevice()),
      started_at_(options_.now()) {
  model_.set_version(static_cast<std::uint64_t>(std::max<std::int64_t>(started_at_, 1)) *
                     1'000'000);
}

Result<json> ControlPlane::Handle(const protocol::Request& request) {
  try {
    const auto& commands = Commands();
    auto command = std::find_if(commands.begin(), commands.end(),
                                [&](const Command& c) { return c.name == request.cmd; });
    if (command == commands.end()) {
      return Error(ErrorCode::kUnknownCommand, "unknown command '{}'", request.cmd.substr(0, 80));
    }
    JsonFields args = JsonFields::ForArgs(request.args);
    Result<json> result = (this->*command->handler)(args);
    if (command->changes_config && result.ok()) {
      Log().Info("{} {} (model version {})", request.cmd,
                 request.args.dump(-1, ' ', false, json::error_handler_t::replace),
                 model_.version());
    }
    return result;
  } catch (const std::exception& e) {
    return Error(ErrorCode::kInternal,
                 "{} failed unexpectedly ({}); this is a bug: please report it",
                 request.cmd.substr(0, 80), e.what());
  } catch (...) {
    return Error(ErrorCode::kInternal, "{} failed unexpectedly; this is a bug: please report it",
                 request.cmd.substr(0, 80));
  }
}

fulcrum::Status ControlPlane::RetryPendingApply() {
  return apply_pending_ ? Apply() : fulcrum::Status::Ok();
}

std::string ControlPlane::NewId(std::string_view prefix) {
  return ids_.Next(prefix, [this](const std::string& id) { return model_.IdTaken(id); });
}

fulcrum::Status ControlPlane::Apply() {
  fulcrum::Status status = link_.Apply(model_);
  apply_pending_ = !status.ok();
  if (!status.ok()) {
    Log().Warn("data plane did not take model version {}: {}", model_.version(), status.ToString());
  }
  return status;
}

Result<json> ControlPlane::Commit(model::Model next, json result) {
  for (const auto& [id, lb] : next.lbs()) {
    const model::LoadBalancer* before = model_.FindLb(id);
    const bool served = lb.vip.is_v4() ? options_.ipv4 : options_.ipv6;
    if (!served && (before == nullptr || before->vip != lb.vip)) {
      const char* family = lb.vip.is_v4() ? "IPv4" : "IPv6";
      return Error(ErrorCode::kNotSupported,
                   "{} VIP {}: none of lbd's ports has an {} address (ports[].{} in lbd's "
                   "config)",
                   family, lb.vip.ToString(), family, lb.vip.is_v4() ? "address" : "address6");
    }
  }
  if (!options_.state_file.empty()) {
    const fulcrum::Status written = WriteStateFile(options_.state_file, next.ToJson());
    if (!written.ok()) {
      Log().Error("{}", written.ToString());
      return Error(ErrorCode::kIoError, "{}; the change was not made", written.message());
    }
  }
  model_ = std::move(next);
  const fulcrum::Status applied = Apply();
  if (!applied.ok()) {
    return Error(applied.code(),
                 "the change is {} but the data plane has not taken it yet ({}); it will be "
                 "applied with the next change or retry",
                 options_.state_file.empty() ? "committed" : "saved in the state file",
                 applied.message());
  }
  return result;
}

json ControlPlane::GroupView(const model::ServerGroup& group) {
  return model_.GroupJson(group, [this](const std::string& listener, const std::string& backend) {
    return link_.ActiveConnections(listener, backend);
  });
}

// ---- status

json ControlPlane::ProberJson() const {
  if (!prober_seen_at_) {
    return json{{"state", "never"}, {"last_seen", 0}};
  }
  const bool present = Now() - *prober_seen_at_ <= kProberPresenceSeconds;
  return json{{"state", present ? "present" : "absent"}, {"last_seen", *prober_seen_at_}};
}

Result<json> ControlPlane::ShowStatus(JsonFields& args) {
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  json result = link_.Describe();
  if (!result.is_object()) {
    result = json::object();
  }
  for (const char* key : {"ports", "workers"}) {
    if (!result.contains(key)) {
      result[key] = json::array();
    }
  }
  result["version"] = FULCRUM_VERSION;
  result["pid"] = static_cast<std::int64_t>(getpid());
  result["uptime_s"] = std::max<std::int64_t>(0, Now() - started_at_);
  result["state_file"] = options_.state_file;
  result["socket"] = options_.socket_path;
  result["objects"] = {{"lbs", model_.lbs().size()},
                       {"groups", model_.groups().size()},
                       {"listeners", model_.listeners().size()},
                       {"backends", model_.backend_count()}};
  result["prober"] = ProberJson();
  result["model_version"] = model_.version();
  result["apply_pending"] = apply_pending_;
  return result;
}

// ---- load balancers

Result<json> ControlPlane::LbCreate(JsonFields& args) {
  const std::optional<std::string> name = args.String("name", Presence::kRequired);
  const std::optional<std::string> vip_text = args.String("vip", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  Result<IpAddress> vip = IpAddress::Parse(*vip_text);
  if (!vip.ok()) {
    return args.Wrap("vip", vip.status());
  }
  model::Model next = model_;
  const std::string id = NewId(kLbIdPrefix);
  FULCRUM_RETURN_IF_ERROR(next.CreateLb(id, *name, *vip, Now()));
  return Commit(std::move(next), {{"id", id}});
}

Result<json> ControlPlane::LbList(JsonFields& args) {
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  json lbs = json::array();
  for (const auto& [id, lb] : model_.lbs()) {
    lbs.push_back(model_.LbJson(lb));
  }
  return json{{"lbs", lbs}};
}

Result<json> ControlPlane::LbShow(JsonFields& args) {
  const std::optional<std::string> id = args.String("id", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  Result<const model::LoadBalancer*> lb = model_.GetLb(*id);
  if (!lb.ok()) {
    return lb.status();
  }
  json result = model_.LbJson(**lb);
  result["listener_objects"] = json::array();
  for (const std::string& listener : model_.ListenersOfLb(*id)) {
    result["listener_objects"].push_back(model_.ListenerView(*model_.FindListener(listener)));
  }
  result["group_objects"] = json::array();
  for (const std::string& group : model_.GroupsOfLb(*id)) {
    result["group_objects"].push_back(GroupView(*model_.FindGroup(group)));
  }
  return result;
}

Result<json> ControlPlane::LbDelete(JsonFields& args) {
  const std::optional<std::string> id = args.String("id", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  model::Model next = model_;
  Result<model::DeletedLb> deleted = next.DeleteLb(*id);
  if (!deleted.ok()) {
    return deleted.status();
  }
  return Commit(std::move(next), {{"id", *id},
                                  {"deleted_listeners", deleted->listeners},
                                  {"deleted_groups", deleted->groups},
                                  {"deleted_acls", deleted->acls}});
}

// ---- server groups

Result<json> ControlPlane::GroupCreate(JsonFields& args) {
  const std::optional<std::string> lb = args.String("lb", Presence::kRequired);
  const std::optional<std::string> name = args.String("name", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  model::Model next = model_;
  const std::string id = NewId(kGroupIdPrefix);
  FULCRUM_RETURN_IF_ERROR(next.CreateGroup(id, *lb, *name));
  return Commit(std::move(next), {{"id", id}});
}

Result<json> ControlPlane::GroupAddBackend(JsonFields& args) {
  const std::optional<std::string> group = args.String("group", Presence::kRequired);
  const std::optional<std::string> addr_text = args.String("addr", Presence::kRequired);
  const std::optional<std::int64_t> weight = args.Int("weight", Presence::kOptional);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  Result<Endpoint> addr = ParseAddr(args, "addr", *addr_text);
  if (!addr.ok()) {
    return addr.status();
  }
  model::Model next = model_;
  const std::int64_t chosen = weight.value_or(model::kDefaultWeight);
  FULCRUM_RETURN_IF_ERROR(next.AddBackend(*group, *addr, chosen));
  return Commit(std::move(next),
                {{"group", *group}, {"addr", addr->ToString()}, {"weight", chosen}});
}

Result<json> ControlPlane::GroupSetWeight(JsonFields& args) {
  const std::optional<std::string> group = args.String("group", Presence::kRequired);
  const std::optional<std::string> addr_text = args.String("addr", Presence::kRequired);
  const std::optional<std::int64_t> weight = args.Int("weight", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  Result<Endpoint> addr = ParseAddr(args, "addr", *addr_text);
  if (!addr.ok()) {
    return addr.status();
  }
  model::Model next = model_;
  FULCRUM_RETURN_IF_ERROR(next.SetWeight(*group, *addr, *weight));
  return Commit(std::move(next),
                {{"group", *group}, {"addr", addr->ToString()}, {"weight", *weight}});
}

Result<json> ControlPlane::GroupRemoveBackend(JsonFields& args) {
  const std::optional<std::string> group = args.String("group", Presence::kRequired);
  const std::optional<std::string> addr_text = args.String("addr", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  Result<Endpoint> addr = ParseAddr(args, "addr", *addr_text);
  if (!addr.ok()) {
    return addr.status();
  }
  model::Model next = model_;
  FULCRUM_RETURN_IF_ERROR(next.RemoveBackend(*group, *addr));
  return Commit(std::move(next), {{"group", *group}, {"addr", addr->ToString()}});
}

Result<json> ControlPlane::GroupList(JsonFields& args) {
  const std::optional<std::string> lb = args.String("lb", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  FULCRUM_RETURN_IF_ERROR(model_.GetLb(*lb).status());
  json groups = json::array();
  for (const std::string& group : model_.GroupsOfLb(*lb)) {
    groups.push_back(GroupView(*model_.FindGroup(group)));
  }
  return json{{"groups", groups}};
}

Result<json> ControlPlane::GroupShow(JsonFields& args) {
  const std::optional<std::string> id = args.String("id", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  Result<const model::ServerGroup*> group = model_.GetGroup(*id);
  if (!group.ok()) {
    return group.status();
  }
  return GroupView(**group);
}

Result<json> ControlPlane::GroupDelete(JsonFields& args) {
  const std::optional<std::string> id = args.String("id", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  model::Model next = model_;
  FULCRUM_RETURN_IF_ERROR(next.DeleteGroup(*id));
  return Commit(std::move(next), {{"id", *id}});
}

// ---- access control lists

Result<json> ControlPlane::AclCreate(JsonFields& args) {
  const std::optional<std::string> lb = args.String("lb", Presence::kRequired);
  const std::optional<std::string> name = args.String("name", Presence::kRequired);
  const std::optional<std::vector<std::string>> entries =
      args.StringArray("entries", Presence::kOptional);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  model::Model next = model_;
  const std::string id = NewId(kAclIdPrefix);
  FULCRUM_RETURN_IF_ERROR(
      next.CreateAcl(id, *lb, *name, entries.value_or(std::vector<std::string>{})));
  return Commit(std::move(next), {{"id", id}});
}

// acl.add and acl.remove: {"id", "entries"}; the ACL as it is after.
Result<json> ControlPlane::AclAdd(JsonFields& args) {
  const std::optional<std::string> id = args.String("id", Presence::kRequired);
  const std::optional<std::vector<std::string>> entries =
      args.StringArray("entries", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  model::Model next = model_;
  FULCRUM_RETURN_IF_ERROR(next.AddAclEntries(*id, *entries));
  json result = next.AclJson(*next.FindAcl(*id));
  return Commit(std::move(next), std::move(result));
}

Result<json> ControlPlane::AclRemove(JsonFields& args) {
  const std::optional<std::string> id = args.String("id", Presence::kRequired);
  const std::optional<std::vector<std::string>> entries =
      args.StringArray("entries", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  model::Model next = model_;
  FULCRUM_RETURN_IF_ERROR(next.RemoveAclEntries(*id, *entries));
  json result = next.AclJson(*next.FindAcl(*id));
  return Commit(std::move(next), std::move(result));
}

Result<json> ControlPlane::AclList(JsonFields& args) {
  const std::optional<std::string> lb = args.String("lb", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  FULCRUM_RETURN_IF_ERROR(model_.GetLb(*lb).status());
  json acls = json::array();
  for (const std::string& acl : model_.AclsOfLb(*lb)) {
    acls.push_back(model_.AclJson(*model_.FindAcl(acl)));
  }
  return json{{"acls", acls}};
}

Result<json> ControlPlane::AclShow(JsonFields& args) {
  const std::optional<std::string> id = args.String("id", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  Result<const model::Acl*> acl = model_.GetAcl(*id);
  if (!acl.ok()) {
    return acl.status();
  }
  return model_.AclJson(**acl);
}

Result<json> ControlPlane::AclDelete(JsonFields& args) {
  const std::optional<std::string> id = args.String("id", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  model::Model next = model_;
  FULCRUM_RETURN_IF_ERROR(next.DeleteAcl(*id));
  return Commit(std::move(next), {{"id", *id}});
}

// ---- listeners

Result<json> ControlPlane::ListenerCreate(JsonFields& args) {
  const std::optional<std::string> lb = args.String("lb", Presence::kRequired);
  const std::optional<std::string> protocol_name = args.String("protocol", Presence::kRequired);
  const std::optional<std::int64_t> port = args.Int("port", Presence::kRequired);
  args.String("group", Presence::kRequired);
  const model::ListenerOptions options = model::ReadListenerOptions(args);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  const std::optional<model::Protocol> protocol = model::ProtocolFromName(*protocol_name);
  if (!protocol) {
    return args.BadValue("protocol", "one of tcp, udp, http, https");
  }
  if (*protocol == model::Protocol::kHttp || *protocol == model::Protocol::kHttps) {
    return Error(ErrorCode::kNotSupported,
                 "protocol {} is not supported yet: lbd has no L7 tier and would forward it as "
                 "plain TCP; create a tcp listener (with health_check type http, lbctl's "
                 "--hc-type http, for HTTP backends)",
                 *protocol_name);
  }
  model::Model next = model_;
  const std::string id = NewId(kListenerIdPrefix);
  FULCRUM_RETURN_IF_ERROR(next.CreateListener(id, *lb, *protocol, *port, options, Now()));
  return Commit(std::move(next), {{"id", id}});
}

Result<json> ControlPlane::ListenerModify(JsonFields& args) {
  const std::optional<std::string> id = args.String("id", Presence::kRequired);
  for (const char* fixed : {"protocol", "port"}) {
    if (args.Has(fixed)) {
      return Error(ErrorCode::kInvalidParameter,
                   "{} cannot be modified: a listener's protocol and port are fixed at creation "
                   "(delete the listener and create a new one)",
                   args.Name(fixed));
    }
  }
  const model::ListenerOptions options = model::ReadListenerOptions(args);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  model::Model next = model_;
  FULCRUM_RETURN_IF_ERROR(next.ModifyListener(*id, options));
  json result = next.ListenerView(*next.FindListener(*id));
  return Commit(std::move(next), std::move(result));
}

Result<json> ControlPlane::ListenerList(JsonFields& args) {
  const std::optional<std::string> lb = args.String("lb", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  FULCRUM_RETURN_IF_ERROR(model_.GetLb(*lb).status());
  json listeners = json::array();
  for (const std::string& listener : model_.ListenersOfLb(*lb)) {
    listeners.push_back(model_.ListenerView(*model_.FindListener(listener)));
  }
  return json{{"listeners", listeners}};
}

Result<json> ControlPlane::ListenerShow(JsonFields& args) {
  const std::optional<std::string> id = args.String("id", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  Result<const model::Listener*> listener = model_.GetListener(*id);
  if (!listener.ok()) {
    return listener.status();
  }
  return model_.ListenerView(**listener);
}

Result<json> ControlPlane::ListenerDelete(JsonFields& args) {
  const std::optional<std::string> id = args.String("id", Presence::kRequired);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  model::Model next = model_;
  FULCRUM_RETURN_IF_ERROR(next.DeleteListener(*id));
  return Commit(std::move(next), {{"id", *id}});
}

// ---- observation

Result<json> ControlPlane::Stats(JsonFields& args) {
  const std::optional<std::string> target = args.String("target", Presence::kOptional);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  std::vector<std::string> listener_ids;
  if (target && IsValidId(*target, kLbIdPrefix)) {
    FULCRUM_RETURN_IF_ERROR(model_.GetLb(*target).status());
    listener_ids = model_.ListenersOfLb(*target);
    if (listener_ids.empty()) {
      json zero = EmptyStats();
      zero["target"] = *target;
      return zero;
    }
  } else if (target && IsValidId(*target, kListenerIdPrefix)) {
    FULCRUM_RETURN_IF_ERROR(model_.GetListener(*target).status());
    listener_ids = {*target};
  } else if (target) {
    return args.BadValue("target", "a load balancer or listener id");
  }
  json result = link_.Stats(listener_ids);
  if (!result.is_object()) {
    return Error(ErrorCode::kInternal, "the data plane returned stats that are not an object");
  }
  result["target"] = target.value_or("all");
  return result;
}

Result<json> ControlPlane::ConnList(JsonFields& args) {
  const std::optional<std::string> listener = args.String("listener", Presence::kOptional);
  const std::optional<std::int64_t> limit = args.Int("limit", Presence::kOptional);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  if (listener) {
    FULCRUM_RETURN_IF_ERROR(model_.GetListener(*listener).status());
  }
  if (limit && (*limit < 1 || *limit > kMaxConnLimit)) {
    return args.BadValue("limit", fmt::format("an integer in 1..{}", kMaxConnLimit));
  }
  json result = link_.Connections(listener.value_or(""),
                                  static_cast<std::size_t>(limit.value_or(kDefaultConnLimit)));
  if (!result.is_object()) {
    return Error(ErrorCode::kInternal,
                 "the data plane returned connections that are not an object");
  }
  return result;
}

// ---- health

Result<json> ControlPlane::BackendSetHealth(JsonFields& args) {
  const std::optional<std::string> listener = args.String("listener", Presence::kRequired);
  const std::optional<std::string> addr_text = args.String("addr", Presence::kRequired);
  const std::optional<std::string> state_name = args.String("state", Presence::kRequired);
  const std::optional<std::string> reason = args.String("reason", Presence::kOptional);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  const std::optional<model::HealthState> state = model::HealthStateFromName(*state_name);
  if (!state || *state == model::HealthState::kUnknown) {
    return args.BadValue("state", "\"up\" or \"down\"");
  }
  Result<Endpoint> addr = ParseAddr(args, "addr", *addr_text);
  if (!addr.ok()) {
    return addr.status();
  }
  // SetHealth changes nothing when it fails, so the model is updated in place: health is
  // not persisted and needs no copy-on-write.
  const model::HealthSummary before = model_.HealthSummaryOf(*listener);
  Result<bool> changed = model_.SetHealth(*listener, *addr, *state, reason.value_or(""), Now());
  if (!changed.ok()) {
    return changed.status();
  }
  if (*changed) {
    Log().Info("backend {} of listener {} is {} ({})", addr->ToString(), *listener, *state_name,
               reason.value_or(""));
    LogFailOpenChange(*listener, before, model_.HealthSummaryOf(*listener));
    const fulcrum::Status applied = Apply();
    if (!applied.ok()) {
      return Error(applied.code(),
                   "backend {} of listener {} is recorded {} but the data plane has not taken it "
                   "yet ({}); it will be applied with the next change or retry",
                   addr->ToString(), *listener, *state_name, applied.message());
    }
  }
  return json{{"listener", *listener},
              {"addr", addr->ToString()},
              {"state", *state_name},
              {"changed", *changed}};
}

json ControlPlane::TargetsJson() const {
  json targets = json::array();
  for (const auto& [id, listener] : model_.listeners()) {
    const model::LoadBalancer& lb = *model_.FindLb(listener.lb);
    const model::ServerGroup& group = *model_.FindGroup(listener.group);
    const json check = model::HealthCheckJson(listener.health_check);
    for (const model::Backend& backend : group.backends) {
      const model::BackendHealth health = model_.HealthOf(id, backend.addr);
      targets.push_back({{"listener", id},
                         {"lb", lb.id},
                         {"vip", lb.vip.ToString()},
                         {"protocol", model::ProtocolName(listener.protocol)},
                         {"port", listener.port},
                         {"addr", backend.addr.ToString()},
                         {"weight", backend.weight},
                         {"health_check", check},
                         {"state", model::HealthStateName(health.state)},
                         {"reason", health.reason}});
    }
  }
  return targets;
}

Result<json> ControlPlane::HealthTargets(JsonFields& args) {
  const std::optional<std::int64_t> since = args.Int("since", Presence::kOptional);
  const std::optional<bool> prober = args.Bool("prober", Presence::kOptional);
  FULCRUM_RETURN_IF_ERROR(args.Finish());
  if (since && *since < 0) {
    return args.BadValue("since", "a version number (an integer >= 0)");
  }
  if (prober.value_or(false)) {
    prober_seen_at_ = Now();
  }
  const std::uint64_t version = model_.version();
  if (since && static_cast<std::uint64_t>(*since) == version) {
    return json{{"version", version}, {"unchanged", true}};
  }
  return json{{"version", version}, {"unchanged", false}, {"targets", TargetsJson()}};
}

}  // namespace fulcrum::ctl
