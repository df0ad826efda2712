#include "dataplane/snapshot.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "nat/maglev.h"
#include "nat/packet.h"

namespace fulcrum::dataplane {
namespace {

using BackendKey = std::pair<std::uint32_t, nat::AnyEndpoint>;

// What a compile accumulates for one family before its tables are built.
template <typename Ip>
struct FamilyBuilder {
  std::vector<nat::BasicServiceSpec<Ip>> services;
  std::vector<nat::BasicAddressSpec<Ip>> addresses;
  std::vector<std::pair<typename nat::BasicServiceTable<Ip>::KeyType, DnatService>> dnat;
};

struct Builder {
  FamilyBuilder<std::uint32_t> v4;
  FamilyBuilder<nat::Ip6> v6;
  std::set<std::string> live_listeners;
  std::set<BackendKey> live_backends;
};

nat::Health HealthOf(model::HealthState state) {
  switch (state) {
    case model::HealthState::kUp:
      return nat::Health::kUp;
    case model::HealthState::kDown:
      return nat::Health::kDown;
    case model::HealthState::kUnknown:
      break;
  }
  return nat::Health::kUnknown;
}

std::array<std::uint32_t, nat::kTcpStateCount> TcpTimeouts(const TcpTimeouts& config,
                                                           std::uint32_t established_ms) {
  using nat::TcpState;
  std::array<std::uint32_t, nat::kTcpStateCount> ms{};
  auto set = [&ms](TcpState state, std::uint32_t value) {
    ms[static_cast<std::size_t>(state)] = value;
  };
  set(TcpState::kNone, config.syn * 1000);
  set(TcpState::kSynSent, config.syn * 1000);
  set(TcpState::kSynRecv, config.syn * 1000);
  set(TcpState::kEstablished, established_ms);
  set(TcpState::kFinWait, config.fin * 1000);
  set(TcpState::kCloseWait, config.fin * 1000);
  set(TcpState::kLastAck, config.fin * 1000);
  set(TcpState::kTimeWait, config.time_wait * 1000);
  set(TcpState::kClosed, config.close * 1000);
  return ms;
}

Result<nat::RouteTable> BuildRoutes4(const DaemonConfig& config) {
  std::vector<nat::ConnectedSpec> connected;
  for (std::size_t i = 0; i < config.ports.size(); ++i) {
    const PortConfig& port = config.ports[i];
    connected.push_back({port.address.addr().v4(), static_cast<std::uint8_t>(port.address.length()),
                         static_cast<std::uint8_t>(i),
                         port.gateway.has_value() ? port.gateway->v4() : 0u});
  }
  std::vector<nat::RouteSpec> routes;
  for (const RouteConfig& route : config.routes) {
    auto port = std::find_if(config.ports.begin(), config.ports.end(),
                             [&](const PortConfig& p) { return p.name == route.port; });
    if (port == config.ports.end()) {
      return Error(ErrorCode::kInvalidParameter, "route {}: no port is named \"{}\"",
                   route.prefix.ToString(), route.port);
    }
    if (route.prefix.addr().is_v4()) {
      routes.push_back({route.prefix.addr().v4(), static_cast<std::uint8_t>(route.prefix.length()),
                        route.via.v4(), static_cast<std::uint8_t>(port - config.ports.begin())});
    }
  }
  return nat::RouteTable::Create(connected, routes);
}

Result<nat::RouteTable6> BuildRoutes6(const DaemonConfig& config) {
  std::vector<nat::ConnectedSpec6> connected;
  for (std::size_t i = 0; i < config.ports.size(); ++i) {
    const PortConfig& port = config.ports[i];
    if (port.address6.has_value()) {
      connected.push_back({Ip6Of(port.address6->addr()),
                           static_cast<std::uint8_t>(port.address6->length()),
                           static_cast<std::uint8_t>(i),
                           port.gateway6.has_value() ? Ip6Of(*port.gateway6) : nat::Ip6{}});
    }
  }
  std::vector<nat::RouteSpec6> routes;
  for (const RouteConfig& route : config.routes) {
    auto port = std::find_if(config.ports.begin(), config.ports.end(),
                             [&](const PortConfig& p) { return p.name == route.port; });
    if (port != config.ports.end() && route.prefix.addr().is_v6()) {
      routes.push_back({Ip6Of(route.prefix.addr()),
                        static_cast<std::uint8_t>(route.prefix.length()), Ip6Of(route.via),
                        static_cast<std::uint8_t>(port - config.ports.begin())});
    }
  }
  return nat::RouteTable6::Create(connected, routes);
}

void AddOwnAddresses(const DaemonConfig& config, Builder& b) {
  for (std::size_t i = 0; i < config.ports.size(); ++i) {
    const PortConfig& port = config.ports[i];
    const auto index = static_cast<std::uint8_t>(i);
    b.v4.addresses.push_back({port.address.addr().v4(), nat::kAddressInterface, index});
    if (port.address6.has_value()) {
      b.v6.addresses.push_back({Ip6Of(port.address6->addr()), nat::kAddressInterface, index});
    }
    for (const IpAddress& local : port.local_addresses) {
      if (local.is_v4()) {
        b.v4.addresses.push_back({local.v4(), nat::kAddressLocal, index});
      } else {
        b.v6.addresses.push_back({Ip6Of(local), nat::kAddressLocal, index});
      }
    }
  }
}

template <typename Ip>
void AddDnatBackend(FamilyBuilder<Ip>& b, const Ip& ip, std::uint16_t port,
                    const ListenerConfig& lc) {
  b.addresses.push_back({ip, nat::kAddressDnatBackend, 0});
  b.dnat.push_back({nat::BasicServiceTable<Ip>::Key(ip, port, lc.proto), DnatService{lc.vip}});
}

template <typename Ip>
void AddService(FamilyBuilder<Ip>& b, const Ip& vip, const ListenerConfig& lc) {
  b.services.push_back({vip, lc.vip.port, lc.proto, lc.slot});
}

// The listener's on_backend_down option (the model gives each protocol its default).
DownPolicy PolicyFor(model::BackendDownPolicy policy) {
  switch (policy) {
    case model::BackendDownPolicy::kKeep:
      return DownPolicy::kKeep;
    case model::BackendDownPolicy::kReset:
      return DownPolicy::kReset;
    case model::BackendDownPolicy::kReschedule:
      return DownPolicy::kReschedule;
  }
  return DownPolicy::kReset;
}

// Whether a backend of `backend`'s family can serve a VIP of `vip`'s family in `mode`: the same
// family always; an IPv4 backend behind an IPv6 VIP in fnat (NAT64). The model refuses the rest.
bool FamiliesWork(const IpAddress& vip, const IpAddress& backend, model::ForwardMode mode) {
  return vip.family() == backend.family() ||
         (vip.is_v6() && backend.is_v4() && mode == model::ForwardMode::kFnat);
}

// The backends of `listener`'s group that can serve it, with their health under this listener.
std::vector<nat::BackendSpec> BackendSpecs(const model::Model& model,
                                           const model::Listener& listener,
                                           const model::LoadBalancer& lb,
                                           const model::ServerGroup& group) {
  std::vector<nat::BackendSpec> specs;
  for (const model::Backend& backend : group.backends) {
    if (!FamiliesWork(lb.vip, backend.addr.addr, listener.mode)) {
      continue;  // the model keeps a group to its LB's family
    }
    specs.push_back({AnyEndpointOf(backend.addr), backend.weight,
                     HealthOf(model.HealthOf(listener.id, backend.addr).state)});
  }
  return specs;
}

// Whether the connections of backend `index` of `lc` must go: it is down, not fail-open, and
// the policy is not keep.
bool BackendDead(const ListenerConfig& lc, std::size_t index) {
  return lc.set.backends()[index].health == nat::Health::kDown && !lc.set.fail_open() &&
         lc.down_policy != DownPolicy::kKeep;
}

// Slots, backend configs and dnat reverse entries for every backend of `lc`; returns the slots,
// by index in lc.set.backends().
Result<std::vector<std::uint32_t>> AddBackends(const ListenerConfig& lc, ConfigSnapshot& snap,
                                               CompileResult& result, Builder& b) {
  const auto backends = lc.set.backends();
  std::vector<std::uint32_t> slots;
  slots.reserve(backends.size());
  for (std::size_t i = 0; i < backends.size(); ++i) {
    const nat::Backend& backend = backends[i];
    const nat::AnyEndpoint& endpoint = backend.endpoint;
    const BackendKey key{lc.slot, endpoint};
    Result<std::uint32_t> slot = result.slots->backends.Acquire(key);
    if (!slot.ok()) {
      return Error(slot.status().code(), "listener {}: backend slots: {}", lc.id,
                   slot.status().message());
    }
    b.live_backends.insert(key);
    slots.push_back(*slot);
    BackendConfig& config = snap.backends.Mutable(*slot);
    config = BackendConfig{.alive = true,
                           .dead = BackendDead(lc, i),
                           .set_index = static_cast<std::uint16_t>(i),
                           .listener_slot = lc.slot,
                           .endpoint = endpoint};
    if (endpoint.is_v4()) {
      config.next_hop = snap.v4.routes.Lookup(endpoint.v4().ip);
    } else {
      config.next_hop6 = snap.v6.routes.Lookup(endpoint.ip);
    }
    if (lc.mode == nat::NatMode::kDnat) {
      if (endpoint.is_v4()) {
        AddDnatBackend(b.v4, endpoint.v4().ip, endpoint.port, lc);
      } else {
        AddDnatBackend(b.v6, endpoint.ip, endpoint.port, lc);
      }
    }
  }
  return slots;
}

nat::ClientAddrMode ClientAddrModeOf(model::ClientIpMode mode) {
  switch (mode) {
    case model::ClientIpMode::kOff:
      break;
    case model::ClientIpMode::kToa:
      return nat::ClientAddrMode::kToa;
    case model::ClientIpMode::kProxyV1:
      return nat::ClientAddrMode::kProxyV1;
    case model::ClientIpMode::kProxyV2:
      return nat::ClientAddrMode::kProxyV2;
  }
  return nat::ClientAddrMode::kOff;
}

// What `listener` compiles from.
ListenerInputs InputsOf(const model::Model& model, const model::Listener& listener,
                        const model::LoadBalancer& lb, const model::ServerGroup& group,
                        const DaemonConfig& config, const CompileOptions& options) {
  ListenerInputs in;
  in.proto = listener.protocol == model::Protocol::kUdp ? nat::kIpProtoUdp : nat::kIpProtoTcp;
  in.mode = listener.mode == model::ForwardMode::kDnat ? nat::NatMode::kDnat : nat::NatMode::kFnat;
  in.vip = AnyEndpointOf(Endpoint{lb.vip, listener.port});
  in.idle_timeout_ms = listener.idle_timeout * 1000;
  in.tcp_timeout_ms = TcpTimeouts(config.tcp_timeouts, in.idle_timeout_ms);
  in.down_policy = PolicyFor(listener.on_backend_down);
  in.scheduler = SchedulerKindOf(listener.scheduler);
  in.backends = BackendSpecs(model, listener, lb, group);
  in.maglev_size = MaglevSizeFor(listener.scheduler, in.backends.size());
  in.persistence_s = listener.persistence;
  in.client_addr = ClientAddrModeOf(listener.client_ip);
  if (const model::Acl* acl = model.FindAcl(listener.acl); acl != nullptr) {
    in.has_acl = true;
    in.acl_allow = listener.acl_type == model::AclType::kAllow;
    for (const Prefix& entry : acl->entries) {
      const auto length = static_cast<std::uint8_t>(entry.length());
      if (entry.addr().is_v4()) {
        in.acl4.push_back({entry.addr().v4(), length});
      } else {
        in.acl6.push_back({Ip6Of(entry.addr()), length});
      }
    }
  }
  in.workers = options.workers;
  return in;
}

// The previous snapshot's config of the listener in `slot`, if it was compiled from `inputs`.
std::shared_ptr<const ListenerConfig> Unchanged(const ConfigSnapshot* previous, std::uint32_t slot,
                                                const std::string& id,
                                                const ListenerInputs& inputs) {
  const std::shared_ptr<const ListenerConfig>* before =
      previous != nullptr ? previous->listeners.Find(slot) : nullptr;
  if (before == nullptr || *before == nullptr || (*before)->id != id ||
      !((*before)->inputs == inputs)) {
    return nullptr;
  }
  return *before;
}

// A listener compiled from `inputs` into `slot`: its BackendSet (and Maglev table) built.
Result<std::shared_ptr<ListenerConfig>> CompileListener(const model::Listener& listener,
                                                        const std::string& group_id,
                                                        std::uint32_t slot, ListenerInputs inputs) {
  auto lc = std::make_shared<ListenerConfig>();
  lc->id = listener.id;
  lc->slot = slot;
  lc->proto = inputs.proto;
  lc->mode = inputs.mode;
  lc->open = lc->mode == nat::NatMode::kDnat ? OpenKind::kDnat : OpenKind::kFnat;
  lc->rx_queue_may_own = lc->open == OpenKind::kFnat;
  lc->vip = inputs.vip;
  lc->idle_timeout_ms = inputs.idle_timeout_ms;
  lc->tcp_timeout_ms = inputs.tcp_timeout_ms;
  lc->down_policy = inputs.down_policy;
  lc->persist_ticks =
      inputs.persistence_s != 0 ? nat::PersistTable::WindowTicks(inputs.persistence_s) : 0;
  lc->has_acl = inputs.has_acl;
  lc->acl_allow = inputs.acl_allow;
  lc->acl = nat::AddressSet::Build(inputs.acl4, inputs.acl6);
  lc->client_addr = inputs.proto == nat::kIpProtoTcp && lc->open == OpenKind::kFnat
                        ? inputs.client_addr
                        : nat::ClientAddrMode::kOff;
  Result<nat::BackendSet> set = nat::BackendSet::Create(
      inputs.backends, {.scheduler = inputs.scheduler, .maglev_size = inputs.maglev_size});
  if (!set.ok()) {
    return Error(set.status().code(), "listener {} (group {}): {}", listener.id, group_id,
                 set.status().message());
  }
  lc->set = std::move(*set);
  lc->inputs = std::move(inputs);
  return lc;
}

Status AddListener(const model::Model& model, const model::Listener& listener,
                   const DaemonConfig& config, const CompileOptions& options,
                   const SlotState& before, const ConfigSnapshot* previous, ConfigSnapshot& snap,
                   CompileResult& result, Builder& b) {
  const model::LoadBalancer* lb = model.FindLb(listener.lb);
  const model::ServerGroup* group = model.FindGroup(listener.group);
  if (lb == nullptr || group == nullptr) {
    return Error(ErrorCode::kInternal, "listener {}: its LB or group is missing from the model",
                 listener.id);
  }
  const std::string key = fmt::format("{}/{}", listener.id, model::ForwardModeName(listener.mode));
  Result<std::uint32_t> slot = result.slots->listeners.Acquire(key);
  if (!slot.ok()) {
    return Error(slot.status().code(), "listener {}: listener slots: {}", listener.id,
                 slot.status().message());
  }
  if (!before.listeners.Find(key).has_value()) {
    result.new_listener_slots.push_back(*slot);
  }
  b.live_listeners.insert(key);

  ListenerInputs inputs = InputsOf(model, listener, *lb, *group, config, options);
  std::shared_ptr<const ListenerConfig> lc = Unchanged(previous, *slot, listener.id, inputs);
  if (lc != nullptr) {
    Result<std::vector<std::uint32_t>> slots = AddBackends(*lc, snap, result, b);
    FULCRUM_RETURN_IF_ERROR(slots.status());
    if (*slots != lc->backend_slots) {
      lc = nullptr;  // not expected: a live key keeps its slot; compile it anew to be safe
    }
  }
  if (lc == nullptr) {
    Result<std::shared_ptr<ListenerConfig>> compiled =
        CompileListener(listener, group->id, *slot, std::move(inputs));
    FULCRUM_RETURN_IF_ERROR(compiled.status());
    Result<std::vector<std::uint32_t>> slots = AddBackends(**compiled, snap, result, b);
    FULCRUM_RETURN_IF_ERROR(slots.status());
    (*compiled)->backend_slots = std::move(*slots);
    lc = std::move(*compiled);
    ++result.compiled_listeners;
  }
  if (lc->vip.is_v4()) {
    AddService(b.v4, lc->vip.v4().ip, *lc);
  } else {
    AddService(b.v6, lc->vip.ip, *lc);
  }
  const bool dnat = lc->mode == nat::NatMode::kDnat;
  snap.v4.has_dnat = snap.v4.has_dnat || (dnat && lc->vip.is_v4());
  snap.v6.has_dnat = snap.v6.has_dnat || (dnat && !lc->vip.is_v4());
  snap.listeners.Mutable(lc->slot) = std::move(lc);
  return Status::Ok();
}

// Whether `now` kills connections that `previous` did not.
bool BackendsDied(const ConfigSnapshot& now, const ConfigSnapshot* previous) {
  bool died = false;
  now.backends.ForEach([&](std::uint32_t slot, const BackendConfig& b) {
    if (b.alive && b.dead) {
      const BackendConfig* before = previous != nullptr ? previous->backend(slot) : nullptr;
      died = died || before == nullptr || !before->dead;
    }
  });
  return died;
}

// The slots whose listener config differs between `previous` and `now`.
void NoteChangedListeners(ConfigSnapshot& now, const ConfigSnapshot* previous) {
  now.base_generation = previous != nullptr ? previous->generation : 0;
  const std::uint32_t before = previous != nullptr ? previous->listeners.end() : 0;
  for (std::uint32_t slot = 0; slot < std::max(before, now.listeners.end()); ++slot) {
    if (now.listener(slot) != (previous != nullptr ? previous->listener(slot) : nullptr)) {
      now.changed_listener_slots.push_back(slot);
    }
  }
}

bool KeyLess(std::uint64_t a, std::uint64_t b) { return a < b; }
bool KeyLess(const nat::WideKey& a, const nat::WideKey& b) {
  return std::tie(a.a, a.b, a.c) < std::tie(b.a, b.b, b.c);
}

template <typename Ip>
Status BuildTables(FamilyTables<Ip>& tables, FamilyBuilder<Ip>& b) {
  Result<nat::BasicServiceTable<Ip>> services = nat::BasicServiceTable<Ip>::Create(b.services);
  FULCRUM_RETURN_IF_ERROR(services.status());
  tables.services = std::move(*services);
  Result<nat::BasicAddressTable<Ip>> addresses = nat::BasicAddressTable<Ip>::Create(b.addresses);
  FULCRUM_RETURN_IF_ERROR(addresses.status());
  tables.addresses = std::move(*addresses);
  // A backend serving several dnat services has no single service to answer as.
  std::stable_sort(b.dnat.begin(), b.dnat.end(),
                   [](const auto& x, const auto& y) { return KeyLess(x.first, y.first); });
  using Map = decltype(tables.dnat_services);
  std::vector<typename Map::Item> dnat;
  for (const auto& [key, service] : b.dnat) {
    if (!dnat.empty() && dnat.back().key == key) {
      dnat.back().value.ambiguous =
          dnat.back().value.ambiguous || !(dnat.back().value.vip == service.vip);
      continue;
    }
    dnat.push_back({key, service});
  }
  Result<Map> dnat_map = Map::Create(dnat);
  FULCRUM_RETURN_IF_ERROR(dnat_map.status());
  tables.dnat_services = std::move(*dnat_map);
  return Status::Ok();
}

}  // namespace

std::string_view DownPolicyName(DownPolicy policy) {
  switch (policy) {
    case DownPolicy::kKeep:
      return "keep";
    case DownPolicy::kReset:
      return "reset";
    case DownPolicy::kReschedule:
      return "reschedule";
  }
  return "invalid";
}

nat::SchedulerKind SchedulerKindOf(model::Scheduler scheduler) {
  switch (scheduler) {
    case model::Scheduler::kWrr:
      return nat::SchedulerKind::kWrr;
    case model::Scheduler::kWlc:
      return nat::SchedulerKind::kWlc;
    case model::Scheduler::kRr:
      return nat::SchedulerKind::kRr;
    case model::Scheduler::kSh:
      return nat::SchedulerKind::kSh;
    case model::Scheduler::kMaglev:
      return nat::SchedulerKind::kMaglev;
  }
  return nat::SchedulerKind::kWrr;
}

std::uint32_t NextPrime(std::uint32_t n) {
  n = std::max<std::uint32_t>(n, 2);
  while (!nat::MaglevTable::IsPrime(n)) {
    ++n;
  }
  return n;
}

std::uint32_t MaglevSizeFor(model::Scheduler scheduler, std::size_t backends) {
  if (scheduler == model::Scheduler::kSh || scheduler == model::Scheduler::kMaglev) {
    return nat::MaglevTable::kDefaultSize;
  }
  const std::uint64_t wanted = std::max<std::uint64_t>(1009, 101 * std::uint64_t{backends});
  return wanted >= nat::MaglevTable::kDefaultSize ? nat::MaglevTable::kDefaultSize
                                                  : NextPrime(static_cast<std::uint32_t>(wanted));
}

namespace {

// Whether every change since `previous` was a health report or a weight change.
bool OnlyTouchedSince(const model::Model& model, const CompileOptions& options,
                      const ConfigSnapshot* previous) {
  return previous != nullptr && previous->model_lineage == model.lineage() &&
         previous->model_version <= model.version() &&
         model.layout_version() <= previous->model_version && previous->workers == options.workers;
}

bool SameEndpoints(const std::vector<nat::BackendSpec>& a, const std::vector<nat::BackendSpec>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const nat::BackendSpec& x, const nat::BackendSpec& y) {
                      return x.endpoint == y.endpoint;
                    });
}

// `previous` with the listeners that health reports and weight changes touched since compiled
// anew (model::Model::ListenersTouchedSince); everything else is shared with it: the tables,
// the other listeners, the pages of backend slots that did not change. Slots stay as they
// are: the touched listeners keep their backends. nullopt when a touched listener is not as
// such changes would leave it (then the whole model is compiled).
Result<std::optional<CompileResult>> CompileTouched(
    const model::Model& model, const DaemonConfig& config, const CompileOptions& options,
    const SlotState& slots, std::uint64_t generation, const ConfigSnapshot& previous) {
  CompileResult result{.snapshot = std::make_unique<ConfigSnapshot>(previous)};
  ConfigSnapshot& snap = *result.snapshot;
  snap.generation = generation;
  snap.base_generation = previous.generation;
  snap.changed_listener_slots.clear();
  snap.model_version = model.version();
  for (const std::string& id : model.ListenersTouchedSince(previous.model_version)) {
    const model::Listener* listener = model.FindListener(id);
    const model::LoadBalancer* lb = listener != nullptr ? model.FindLb(listener->lb) : nullptr;
    const model::ServerGroup* group =
        listener != nullptr ? model.FindGroup(listener->group) : nullptr;
    if (lb == nullptr || group == nullptr) {
      return std::optional<CompileResult>();
    }
    const std::optional<std::uint32_t> slot = slots.listeners.Find(
        fmt::format("{}/{}", listener->id, model::ForwardModeName(listener->mode)));
    const ListenerConfig* before = slot.has_value() ? previous.listener(*slot) : nullptr;
    if (before == nullptr || before->id != id) {
      return std::optional<CompileResult>();
    }
    ListenerInputs inputs = InputsOf(model, *listener, *lb, *group, config, options);
    if (inputs == before->inputs) {
      continue;
    }
    if (!SameEndpoints(inputs.backends, before->inputs.backends)) {
      return std::optional<CompileResult>();
    }
    Result<std::shared_ptr<ListenerConfig>> compiled =
        CompileListener(*listener, group->id, *slot, std::move(inputs));
    FULCRUM_RETURN_IF_ERROR(compiled.status());
    ListenerConfig& lc = **compiled;
    lc.backend_slots = before->backend_slots;  // the same endpoints, sorted the same way
    for (std::size_t i = 0; i < lc.backend_slots.size(); ++i) {
      BackendConfig& backend = snap.backends.Mutable(lc.backend_slots[i]);
      const bool dead = BackendDead(lc, i);
      result.needs_sweep = result.needs_sweep || (dead && !backend.dead);
      backend.dead = dead;
    }
    snap.listeners.Mutable(*slot) = std::move(*compiled);
    snap.changed_listener_slots.push_back(*slot);
    ++result.compiled_listeners;
  }
  std::sort(snap.changed_listener_slots.begin(), snap.changed_listener_slots.end());
  return std::optional<CompileResult>(std::move(result));
}

Result<CompileResult> CompileAll(const model::Model& model, const DaemonConfig& config,
                                 const CompileOptions& options, const SlotState& slots,
                                 std::uint64_t generation, const ConfigSnapshot* previous) {
  CompileResult result{.snapshot = std::make_unique<ConfigSnapshot>(), .slots = slots};
  ConfigSnapshot& snap = *result.snapshot;
  snap.generation = generation;
  snap.workers = options.workers;
  snap.model_lineage = model.lineage();
  snap.model_version = model.version();
  Result<nat::RouteTable> routes = BuildRoutes4(config);
  FULCRUM_RETURN_IF_ERROR(routes.status());
  snap.v4.routes = std::move(*routes);
  Result<nat::RouteTable6> routes6 = BuildRoutes6(config);
  FULCRUM_RETURN_IF_ERROR(routes6.status());
  snap.v6.routes = std::move(*routes6);

  Builder b;
  AddOwnAddresses(config, b);
  for (const auto& [id, lb] : model.lbs()) {
    if (lb.vip.is_v4()) {
      b.v4.addresses.push_back({lb.vip.v4(), nat::kAddressVip, 0});
      snap.v4.vips.push_back(lb.vip.v4());
    } else {
      b.v6.addresses.push_back({Ip6Of(lb.vip), nat::kAddressVip, 0});
      snap.v6.vips.push_back(Ip6Of(lb.vip));
    }
  }
  std::sort(snap.v4.vips.begin(), snap.v4.vips.end());
  std::sort(snap.v6.vips.begin(), snap.v6.vips.end());
  for (const auto& [id, listener] : model.listeners()) {
    FULCRUM_RETURN_IF_ERROR(
        AddListener(model, listener, config, options, slots, previous, snap, result, b));
  }
  result.retired_slots +=
      result.slots->listeners
          .RetireUnless([&](const std::string& key) { return b.live_listeners.contains(key); },
                        generation)
          .size();
  result.retired_slots +=
      result.slots->backends
          .RetireUnless([&](const BackendKey& key) { return b.live_backends.contains(key); },
                        generation)
          .size();
  result.needs_sweep = result.retired_slots > 0 || BackendsDied(snap, previous);
  NoteChangedListeners(snap, previous);
  FULCRUM_RETURN_IF_ERROR(BuildTables(snap.v4, b.v4));
  FULCRUM_RETURN_IF_ERROR(BuildTables(snap.v6, b.v6));
  return result;
}

}  // namespace

Result<CompileResult> CompileSnapshot(const model::Model& model, const DaemonConfig& config,
                                      const CompileOptions& options, const SlotState& slots,
                                      std::uint64_t generation, const ConfigSnapshot* previous) {
  if (OnlyTouchedSince(model, options, previous)) {
    Result<std::optional<CompileResult>> touched =
        CompileTouched(model, config, options, slots, generation, *previous);
    FULCRUM_RETURN_IF_ERROR(touched.status());
    if (touched->has_value()) {
      return std::move(**touched);
    }
  }
  return CompileAll(model, config, options, slots, generation, previous);
}

nat::Ip6 Ip6Of(const IpAddress& addr) {
  nat::Ip6 ip;
  for (std::size_t i = 0; i < 8; ++i) {
    ip.hi = ip.hi << 8 | addr.bytes()[i];
    ip.lo = ip.lo << 8 | addr.bytes()[8 + i];
  }
  return ip;
}

IpAddress IpAddressOf(const nat::Ip6& ip) {
  std::array<std::uint8_t, 16> bytes{};
  for (std::size_t i = 0; i < 8; ++i) {
    bytes[i] = static_cast<std::uint8_t>(ip.hi >> (56 - 8 * i));
    bytes[8 + i] = static_cast<std::uint8_t>(ip.lo >> (56 - 8 * i));
  }
  return IpAddress::V6(bytes);
}

Endpoint EndpointOf(const nat::AnyEndpoint& endpoint) {
  if (endpoint.is_v4()) {
    return {IpAddress::V4(endpoint.v4().ip), endpoint.port};
  }
  return {IpAddressOf(endpoint.ip), endpoint.port};
}

nat::AnyEndpoint AnyEndpointOf(const Endpoint& endpoint) {
  if (endpoint.addr.is_v4()) {
    return nat::Endpoint4{endpoint.addr.v4(), endpoint.port};
  }
  return nat::Endpoint6{Ip6Of(endpoint.addr), endpoint.port};
}

}  // namespace fulcrum::dataplane
