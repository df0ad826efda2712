// The object model: load balancers, server groups, listeners and backend health.
//
// Theory of operation: a Model is a plain value. The control plane owns exactly one, and
// changes it copy-on-write: it copies the model, applies one mutation to the copy (every
// mutation validates everything it touches and leaves the model unchanged when it fails),
// persists the copy, then swaps it in. Nothing else ever mutates a model, so a published
// model can be compiled into a data-plane snapshot without locks.
//
// The rules are the cloud products' (BRIEF §1, docs/ctl-protocol.md): a frontend port is
// unique per LB and protocol family (tcp, http and https share one family, udp has its
// own); protocol and port are fixed at creation; a group in use by a listener cannot be
// deleted; deleting an LB deletes its listeners and groups; backend addresses have the
// family of the LB's VIP; a VIP belongs to one LB and is never one of lbd's own addresses.
// Objects live in std::maps keyed by id, so every listing comes out in the same order.
//
// Health is per (listener, backend): two listeners can check one backend differently. It
// is not configuration: ToJson()/FromJson() carry config objects only, and a restarted lbd
// starts with every backend unknown (which forwards). Every change, health included, bumps
// version(), which lb-healthd polls to learn cheaply that nothing changed.
//
// Two listener facts follow from health (BRIEF §2). A listener's on_backend_down policy says
// what becomes of a dead backend's existing connections (keep, reset, reschedule). And a
// listener is in fail-open when every backend that takes new connections (weight > 0) is
// down: the data plane then sends traffic to all of them, as Tencent CLB and AWS do, rather
// than to none. The model computes fail-open (HealthSummaryOf) so that lbctl can say so; the
// data plane computes the same rule on its own backend sets.
//
// Ids are issued by the caller (see common/ids.h); the model refuses an id that is live or
// was ever issued before in this state (deleted ids are remembered as "retired_ids").
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/json_fields.h"
#include "common/net_addr.h"
#include "common/status.h"

namespace fulcrum::model {

enum class Protocol { kTcp, kUdp, kHttp, kHttps };
// Ports are unique per LB within a family: tcp, http and https all listen on TCP.
enum class ProtocolFamily { kTcp, kUdp };
enum class Scheduler { kWrr, kWlc, kRr, kSh, kMaglev };
enum class ForwardMode { kFnat, kDnat };
enum class HealthCheckType { kTcp, kHttp, kUdp, kNone };
enum class HealthState { kUnknown, kUp, kDown };
// What becomes of a listener's existing connections to a backend marked down.
enum class BackendDownPolicy {
  kKeep,        // they continue until they end or idle out
  kReset,       // they are closed: TCP peers get a reset, UDP flows are forgotten
  kReschedule,  // the flow's next packet goes to a live backend (breaks a TCP stream)
};
// How a tcp fnat listener tells its backends the client's address (nat/client_addr.h).
enum class ClientIpMode { kOff, kToa, kProxyV1, kProxyV2 };
// What a listener's access control list says of the clients in it.
enum class AclType { kAllow, kDeny };

std::string_view ProtocolName(Protocol protocol);
std::optional<Protocol> ProtocolFromName(std::string_view name);
ProtocolFamily FamilyOf(Protocol protocol);
std::string_view SchedulerName(Scheduler scheduler);
std::optional<Scheduler> SchedulerFromName(std::string_view name);
std::string_view ForwardModeName(ForwardMode mode);
std::optional<ForwardMode> ForwardModeFromName(std::string_view name);
std::string_view HealthCheckTypeName(HealthCheckType type);
std::optional<HealthCheckType> HealthCheckTypeFromName(std::string_view name);
std::string_view HealthStateName(HealthState state);
std::optional<HealthState> HealthStateFromName(std::string_view name);
std::string_view BackendDownPolicyName(BackendDownPolicy policy);
std::optional<BackendDownPolicy> BackendDownPolicyFromName(std::string_view name);
std::string_view ClientIpModeName(ClientIpMode mode);
std::optional<ClientIpMode> ClientIpModeFromName(std::string_view name);
std::string_view AclTypeName(AclType type);
std::optional<AclType> AclTypeFromName(std::string_view name);
// reset for tcp, http and https; reschedule for udp, whose flows would otherwise stay pinned
// to a dead backend for the whole idle timeout.
BackendDownPolicy DefaultBackendDownPolicy(Protocol protocol);

// Limits (docs/ctl-protocol.md, "Limits").
inline constexpr std::size_t kMaxLbs = 256;
inline constexpr std::size_t kMaxListenersPerLb = 64;
inline constexpr std::size_t kMaxGroupsPerLb = 64;
inline constexpr std::size_t kMaxBackendsPerGroup = 1024;
inline constexpr std::size_t kMaxAclsPerLb = 64;
inline constexpr std::size_t kMaxAclEntries = 1000;
inline constexpr std::size_t kMaxNameLength = 64;

// Ranges and defaults (docs/ctl-protocol.md, "Listener options").
struct IntRange {
  std::int64_t min;
  std::int64_t max;
  bool Contains(std::int64_t value) const { return value >= min && value <= max; }
};
inline constexpr IntRange kPortRange{1, 65535};
inline constexpr IntRange kWeightRange{0, 100};
inline constexpr IntRange kIdleTimeoutRange{1, 86400};
inline constexpr IntRange kPersistenceRange{30, 3600};  // or 0 = off
inline constexpr IntRange kHcPortRange{0, 65535};
inline constexpr IntRange kHcIntervalRange{1, 300};
inline constexpr IntRange kHcTimeoutRange{1, 60};
inline constexpr IntRange kHcThresholdRange{1, 10};  // rise and fall
inline constexpr std::uint32_t kDefaultWeight = 10;
inline constexpr std::uint32_t kDefaultTcpIdleTimeout = 900;
inline constexpr std::uint32_t kDefaultUdpIdleTimeout = 300;
inline constexpr std::size_t kMaxHcPathLength = 200;
inline constexpr std::size_t kMaxHcHostLength = 253;
inline constexpr std::size_t kMaxHcPayloadHexDigits = 1024;
inline constexpr std::size_t kMaxHealthReasonLength = 512;

struct HealthCheck {
  HealthCheckType type = HealthCheckType::kTcp;
  std::uint16_t port = 0;  // 0 = the backend's own port
  std::uint32_t interval = 5;
  std::uint32_t timeout = 2;
  std::uint32_t rise = 3;
  std::uint32_t fall = 3;
  // http checks only.
  std::string path = "/";
  std::string host;                                 // "" = the backend's address
  std::vector<std::string> codes = {"2xx", "3xx"};  // sorted, distinct
  // udp checks only: lower-case hex.
  std::string send;
  std::string expect;

  friend bool operator==(const HealthCheck&, const HealthCheck&) = default;
};

struct LoadBalancer {
  std::string id;
  std::string name;
  IpAddress vip;
  std::int64_t created_at = 0;
};

struct Backend {
  Endpoint addr;
  std::uint32_t weight = kDefaultWeight;  // 0 = drain: no new connections
};

struct ServerGroup {
  std::string id;
  std::string lb;
  std::string name;
  std::vector<Backend> backends;  // in the order they were added

  const Backend* FindBackend(const Endpoint& addr) const;
};

// An access control list: client networks of either family, an object of its LB.
struct Acl {
  std::string id;
  std::string lb;
  std::string name;
  std::vector<Prefix> entries;  // sorted, distinct, host bits clear
};

// Parses an ACL entry: "198.18.0.0/24", "2001:db8::/32", or an address alone (/32, /128).
// Refuses host bits set, naming the network meant.
Result<Prefix> ParseAclEntry(std::string_view text);

struct Listener {
  std::string id;
  std::string lb;
  Protocol protocol = Protocol::kTcp;
  std::uint16_t port = 0;
  std::string group;
  Scheduler scheduler = Scheduler::kWrr;
  ForwardMode mode = ForwardMode::kFnat;
  std::uint32_t idle_timeout = kDefaultTcpIdleTimeout;  // seconds
  std::uint32_t persistence = 0;                        // seconds, 0 = off
  ClientIpMode client_ip = ClientIpMode::kOff;          // tcp fnat only
  std::string acl;                                      // "" = none
  AclType acl_type = AclType::kAllow;                   // with `acl` only
  BackendDownPolicy on_backend_down = BackendDownPolicy::kReset;
  HealthCheck health_check;
  std::int64_t created_at = 0;
};

struct BackendHealth {
  HealthState state = HealthState::kUnknown;
  std::string reason;
  std::int64_t since = 0;       // Unix time of the last state change
  std::int64_t last_probe = 0;  // Unix time of the last report, 0 = none
};

struct HealthKey {
  std::string listener;
  Endpoint backend;

  friend auto operator<=>(const HealthKey&, const HealthKey&) = default;
  friend bool operator==(const HealthKey&, const HealthKey&) = default;
};

// A partial health-check update: absent fields keep their value (on create, the default).
struct HealthCheckOptions {
  std::optional<HealthCheckType> type;
  std::optional<std::int64_t> port;
  std::optional<std::int64_t> interval;
  std::optional<std::int64_t> timeout;
  std::optional<std::int64_t> rise;
  std::optional<std::int64_t> fall;
  std::optional<std::string> path;
  std::optional<std::string> host;
  std::optional<std::vector<std::string>> codes;
  std::optional<std::string> send;
  std::optional<std::string> expect;
};

// The listener options of listener.create and listener.modify; absent = keep/default.
struct ListenerOptions {
  std::optional<std::string> group;
  std::optional<Scheduler> scheduler;
  std::optional<ForwardMode> mode;
  std::optional<std::int64_t> idle_timeout;
  std::optional<std::int64_t> persistence;
  std::optional<ClientIpMode> client_ip;
  std::optional<std::string> acl;  // "" or "off": none
  std::optional<AclType> acl_type;
  std::optional<BackendDownPolicy> on_backend_down;
  HealthCheckOptions health_check;
};

// Reads the listener options ("group", "scheduler", "mode", "idle_timeout", "persistence",
// "client_ip", "on_backend_down", "health_check") from `fields`; type errors are recorded in
// `fields`. Ranges are the model's to check. "client_ip" and "on_backend_down" are optional even
// in the state file, which did not have them at first.
ListenerOptions ReadListenerOptions(JsonFields& fields);

struct DeletedLb {
  std::vector<std::string> listeners;
  std::vector<std::string> groups;
  std::vector<std::string> acls;
};

// How a listener's group serves it now. `total` counts the backends that take new
// connections (weight > 0); `healthy` those of them not down (unknown forwards, as if up).
struct HealthSummary {
  std::size_t healthy = 0;
  std::size_t total = 0;

  // Every backend that could serve is down: traffic goes to all of them.
  bool fail_open() const { return total > 0 && healthy == 0; }
  friend bool operator==(const HealthSummary&, const HealthSummary&) = default;
};

// active_conns of one backend ("198.18.1.11:80") under one listener, for GroupJson.
using ActiveConnsFn =
    std::function<std::uint64_t(const std::string& listener, const std::string& backend)>;

class Model {
 public:
  // `reserved_addresses`: lbd's own addresses, never a VIP.
  explicit Model(std::vector<IpAddress> reserved_addresses = {});

  const std::map<std::string, LoadBalancer>& lbs() const { return lbs_; }
  const std::map<std::string, ServerGroup>& groups() const { return groups_; }
  const std::map<std::string, Listener>& listeners() const { return listeners_; }
  const std::map<std::string, Acl>& acls() const { return acls_; }
  // Reported health only; a pair without an entry is unknown.
  const std::map<HealthKey, BackendHealth>& health() const { return health_; }
  const std::set<std::string>& retired_ids() const { return retired_ids_; }
  std::size_t backend_count() const;

  // Bumped by every successful mutation, health included.
  std::uint64_t version() const { return version_; }
  // Also starts the change record afresh: everything counts as changed at `version`.
  void set_version(std::uint64_t version);

  // What changed, for compiles that rebuild only what a change touches (dataplane/snapshot.h).
  // layout_version() is the version of the last mutation that was neither a health report nor
  // a weight change (objects created or removed, listener options, backends added or removed);
  // ListenersTouchedSince(v) names the listeners whose backends' health or weights changed
  // after version v. lineage() names the history these versions count in: every model built
  // or loaded starts its own, and a copy shares its original's (ControlPlane commits a copy).
  std::uint64_t lineage() const { return lineage_; }
  std::uint64_t layout_version() const { return layout_version_; }
  std::vector<std::string> ListenersTouchedSince(std::uint64_t version) const;

  // nullptr when absent.
  const LoadBalancer* FindLb(const std::string& id) const;
  const ServerGroup* FindGroup(const std::string& id) const;
  const Listener* FindListener(const std::string& id) const;
  const Acl* FindAcl(const std::string& id) const;
  // The object, or InvalidParameter for a malformed id and ResourceNotFound for an absent one.
  Result<const LoadBalancer*> GetLb(const std::string& id) const;
  Result<const ServerGroup*> GetGroup(const std::string& id) const;
  Result<const Listener*> GetListener(const std::string& id) const;
  Result<const Acl*> GetAcl(const std::string& id) const;
  // True when `id` names a live object or was issued before (never reuse it).
  bool IdTaken(const std::string& id) const;

  // Ids in order.
  std::vector<std::string> ListenersOfLb(const std::string& lb) const;
  std::vector<std::string> GroupsOfLb(const std::string& lb) const;
  std::vector<std::string> ListenersOfGroup(const std::string& group) const;
  std::vector<std::string> AclsOfLb(const std::string& lb) const;
  std::vector<std::string> ListenersOfAcl(const std::string& acl) const;
  BackendHealth HealthOf(const std::string& listener, const Endpoint& backend) const;
  // All zero for an absent listener.
  HealthSummary HealthSummaryOf(const std::string& listener) const;

  Status CreateLb(const std::string& id, const std::string& name, const IpAddress& vip,
                  std::int64_t now);
  Result<DeletedLb> DeleteLb(const std::string& id);
  Status CreateGroup(const std::string& id, const std::string& lb, const std::string& name);
  Status DeleteGroup(const std::string& id);
  Status AddBackend(const std::string& group, const Endpoint& addr, std::int64_t weight);
  Status SetWeight(const std::string& group, const Endpoint& addr, std::int64_t weight);
  Status RemoveBackend(const std::string& group, const Endpoint& addr);
  // `options.group` is required here.
  Status CreateListener(const std::string& id, const std::string& lb, Protocol protocol,
                        std::int64_t port, const ListenerOptions& options, std::int64_t now);
  Status ModifyListener(const std::string& id, const ListenerOptions& options);
  Status DeleteListener(const std::string& id);
  // ACLs: entries as ParseAclEntry reads them. Adding an entry the list has, or removing one
  // it lacks, is refused (InvalidParameter, ResourceNotFound), as is more than
  // kMaxAclEntries; deleting one a listener uses is ResourceInUse.
  Status CreateAcl(const std::string& id, const std::string& lb, const std::string& name,
                   const std::vector<std::string>& entries);
  Status AddAclEntries(const std::string& id, const std::vector<std::string>& entries);
  Status RemoveAclEntries(const std::string& id, const std::vector<std::string>& entries);
  Status DeleteAcl(const std::string& id);
  // Records a prober report (`state` up or down). Returns whether the state changed.
  Result<bool> SetHealth(const std::string& listener, const Endpoint& backend, HealthState state,
                         const std::string& reason, std::int64_t now);

  // The config objects for the state file: {"lbs", "groups", "acls", "listeners",
  // "retired_ids"}.
  nlohmann::json ToJson() const;
  // Rebuilds a model from ToJson() output, re-validating every object; any failure is
  // kCorruptState naming the path ("listeners[2].port").
  static Result<Model> FromJson(const nlohmann::json& state,
                                std::vector<IpAddress> reserved_addresses = {});

  // Views in the shapes of docs/ctl-protocol.md, "Objects as they appear in results".
  nlohmann::json LbJson(const LoadBalancer& lb) const;
  // The group, with "listener_health": one HealthSummary per listener that uses it.
  nlohmann::json GroupJson(const ServerGroup& group, const ActiveConnsFn& active_conns) const;
  // ListenerJson(listener) with what health makes of it: "fail_open".
  nlohmann::json ListenerView(const Listener& listener) const;
  // The ACL with "listeners": the ids of those that use it.
  nlohmann::json AclJson(const Acl& acl) const;

 private:
  Status LoadLb(const nlohmann::json& object, const std::string& path);
  Status LoadGroup(const nlohmann::json& object, const std::string& path);
  Status LoadListener(const nlohmann::json& object, const std::string& path);
  Status LoadAcl(const nlohmann::json& object, const std::string& path);
  Status CheckListenerAcl(const Listener& listener, std::string_view label) const;
  Status LoadRetiredId(const std::string& id, const std::string& path);
  Status AddListener(const Listener& listener, std::string_view label);
  Status CheckListenerGroup(const Listener& listener, std::string_view label) const;
  Status CheckIdFree(const std::string& id, std::string_view prefix, std::string_view kind) const;
  Result<ServerGroup*> MutableGroup(const std::string& id);
  void DropHealth(const std::function<bool(const HealthKey&)>& doomed);
  void Retire(const std::string& id);
  // A mutation that may change the layout; Touch: one that changes only the health or
  // weights of the backends of `listeners`.
  void Bump() { layout_version_ = ++version_; }
  void Touch(const std::vector<std::string>& listeners);
  void ForgetTouches(const std::string& listener);

  std::set<IpAddress> reserved_addresses_;
  std::map<std::string, LoadBalancer> lbs_;
  std::map<std::string, ServerGroup> groups_;
  std::map<std::string, Listener> listeners_;
  std::map<std::string, Acl> acls_;
  std::map<HealthKey, BackendHealth> health_;
  std::set<std::string> retired_ids_;
  std::uint64_t version_ = 1;
  std::uint64_t lineage_;
  std::uint64_t layout_version_ = 1;
  // The version at which each listener was last touched, and the same ordered by version.
  std::map<std::string, std::uint64_t> touched_;
  std::set<std::pair<std::uint64_t, std::string>> touch_order_;
};

nlohmann::json HealthCheckJson(const HealthCheck& check);
// The listener's configuration, as in the state file (Model::ListenerView adds the live view).
nlohmann::json ListenerJson(const Listener& listener);

}  // namespace fulcrum::model
