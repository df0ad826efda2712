// The configuration snapshot: everything a worker reads to forward, compiled from the model.
//
// Theory of operation: the control thread compiles the object model (common/model.h) and the
// machine's configuration (ports, routes, TCP timeouts) into one immutable ConfigSnapshot and
// publishes it to the workers (dataplane/forwarder.h). A worker loads it at the start of a pass
// and never sees it change; nobody mutates a published snapshot. The per-core scheduler states
// are the workers' own (CoreState::scheduling), bound to the listener config they were sized for.
//
// A listener whose inputs did not change (ListenerInputs: its options, its VIP, its backends'
// endpoints, weights and health under it, the timeouts, the worker count) is not compiled
// again: the new snapshot shares the previous one's ListenerConfig (and the workers keep their
// scheduler states for it), so a health change or a weight change rebuilds only the listeners it
// touches (a BackendSet and its Maglev table cost up to ~1.7 ms each).
//
// What the compile decides, once, so the packet path does not:
//   - per address family (FamilyTables: v4 and v6), the services: (VIP, port, protocol) ->
//     listener slot (tcp, http and https listeners are forwarded as TCP at L4, no L7 proxy
//     yet); the addresses: VIPs (answered for ARP, neighbour discovery and ping), local
//     addresses, port addresses, and the addresses of dnat backends (whose replies come back
//     through us); the routes; the services of dnat backends, for the stateless fallback.
//   - per listener: protocol, fnat/dnat, idle timeout, the timeout of every TCP state (from
//     DaemonConfig::tcp_timeouts, established = the idle timeout), the BackendSet (weights and
//     health from model.health(): down is excluded, unknown counts as up, fail-open when every
//     backend is down), and what happens to a dead backend's connections (DownPolicy).
//   - per backend slot: its listener, its index in the set, its endpoint, whether its
//     connections are dead (down, not fail-open, policy not keep), and its next hop, resolved
//     through the route table so that packets to backends never look a route up.
// Listeners and backends are named by stable slots (dataplane/slots.h); SlotState is that
// bookkeeping, carried from one compile to the next. A compile never changes its input
// SlotState: it returns the next one, which the caller keeps only if it publishes the result.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/daemon_config.h"
#include "common/model.h"
#include "common/net_addr.h"
#include "common/status.h"
#include "dataplane/paged_slots.h"
#include "dataplane/slots.h"
#include "nat/address_set.h"
#include "nat/client_addr.h"
#include "nat/conn_table.h"
#include "nat/flat_map.h"
#include "nat/flow_key.h"
#include "nat/persist_table.h"
#include "nat/route_table.h"
#include "nat/scheduler.h"
#include "nat/service_table.h"
#include "nat/tcp_state.h"

namespace fulcrum::dataplane {

// What becomes of the connections of a backend that health checks mark down (issue 4 makes it
// a listener option; until then TCP listeners reset and UDP listeners reschedule).
enum class DownPolicy : std::uint8_t {
  kKeep,        // existing connections continue to the dead backend
  kReset,       // they are dropped; each side gets a TCP reset on its next segment
  kReschedule,  // they are dropped; the next datagram of the flow is scheduled anew
};
std::string_view DownPolicyName(DownPolicy policy);

inline constexpr std::uint32_t kNoSlot = 0xffffffffu;

// How a listener opens connections, compiled once from its mode (later also from its options:
// a SYN proxy, Proxy Protocol, L7 steering): the packet path dispatches on it once per new
// connection (dataplane/decide.cc, PrepareConn and Verdict) instead of testing the mode.
enum class OpenKind : std::uint8_t {
  kFnat,  // from a local address and port of ours; a full table drops (nothing maps back)
  kDnat,  // the client's address kept; a full table forwards statelessly by Maglev
};

// Everything a ListenerConfig is compiled from besides its slot: equal inputs, equal config.
struct ListenerInputs {
  std::uint8_t proto = 0;
  nat::NatMode mode = nat::NatMode::kFnat;
  nat::AnyEndpoint vip;
  std::uint32_t idle_timeout_ms = 0;
  std::array<std::uint32_t, nat::kTcpStateCount> tcp_timeout_ms{};
  DownPolicy down_policy = DownPolicy::kReset;
  nat::SchedulerKind scheduler = nat::SchedulerKind::kWrr;
  std::uint32_t maglev_size = 0;
  std::uint32_t persistence_s = 0;  // 0: off
  nat::ClientAddrMode client_addr = nat::ClientAddrMode::kOff;
  // Its access control list's entries (has_acl), and whether they are the clients allowed
  // (else the ones denied).
  bool has_acl = false;
  bool acl_allow = true;
  std::vector<nat::Cidr4> acl4;
  std::vector<nat::Cidr6> acl6;
  std::vector<nat::BackendSpec> backends;
  std::uint32_t workers = 0;
  friend bool operator==(const ListenerInputs&, const ListenerInputs&) = default;
};

// Shared between snapshots while its inputs stay the same.
struct ListenerConfig {
  ListenerInputs inputs;
  std::uint32_t slot = kNoSlot;
  std::string id;  // "lsn-…", for the control thread
  std::uint8_t proto = 0;
  nat::NatMode mode = nat::NatMode::kFnat;
  OpenKind open = OpenKind::kFnat;
  // On an RSS port the receiving queue may own the client side of a connection: true for fnat,
  // whose replies find their owner by the local port; dnat's replies carry only the client's
  // address, so a dnat connection belongs to ClientOwner on every port.
  bool rx_queue_may_own = true;
  nat::AnyEndpoint vip;  // its family is the listener's (the family its packets arrive in)
  std::uint32_t idle_timeout_ms = 0;
  // By nat::TcpState; established = idle_timeout_ms.
  std::array<std::uint32_t, nat::kTcpStateCount> tcp_timeout_ms{};
  DownPolicy down_policy = DownPolicy::kReset;
  // Session persistence by client address: the window in nat::PersistTable ticks; 0: off.
  std::uint16_t persist_ticks = 0;
  // What its TCP connections tell their backends about the client (tcp fnat only).
  nat::ClientAddrMode client_addr = nat::ClientAddrMode::kOff;
  // Its access control list, compiled: a new connection goes on only if acl.Contains(client)
  // == acl_allow.
  bool has_acl = false;
  bool acl_allow = true;
  nat::AddressSet acl;
  nat::BackendSet set;
  std::vector<std::uint32_t> backend_slots;  // by index in set.backends()

  std::uint32_t TimeoutMs(nat::TcpState state) const {
    return tcp_timeout_ms[static_cast<std::size_t>(state)];
  }
  // The timeout of a connection of this listener in `state` (UDP: the idle timeout).
  std::uint32_t ConnTimeoutMs(nat::TcpState state) const {
    return proto == nat::kIpProtoTcp ? TimeoutMs(state) : idle_timeout_ms;
  }
};

struct BackendConfig {
  bool alive = false;  // the slot names a backend of a listener in this snapshot
  // Its connections must go (down with a policy other than keep, and not fail-open).
  bool dead = false;
  std::uint16_t set_index = 0;  // index in the listener's set.backends()
  std::uint32_t listener_slot = kNoSlot;
  nat::AnyEndpoint endpoint;
  // The next hop of its family (the other one stays !ok()); !ok(): no route to the backend.
  nat::NextHop next_hop;
  nat::NextHop6 next_hop6;

  bool is_v4() const { return endpoint.is_v4(); }
};

// For the stateless dnat fallback: the service a dnat backend's reply came from.
struct DnatService {
  nat::AnyEndpoint vip;
  bool ambiguous = false;  // the backend serves several dnat listeners: no stateless reply
};

// What a snapshot holds per address family; `Ip` is std::uint32_t or nat::Ip6.
template <typename Ip>
struct FamilyTables {
  nat::BasicServiceTable<Ip> services;
  nat::BasicAddressTable<Ip> addresses;
  nat::BasicRouteTable<Ip> routes;
  // Key: services.Key(backend address, backend port, proto).
  nat::FlatMap<DnatService, typename nat::BasicServiceTable<Ip>::KeyType> dnat_services;
  bool has_dnat = false;
  std::vector<Ip> vips;  // the VIPs of this family, sorted
};

struct ConfigSnapshot {
  std::uint64_t generation = 0;
  // The generation of the snapshot this one was compiled against (0: none), and the listener
  // slots whose config differs from that one's (added, recompiled or gone): a worker running
  // base_generation rebinds only these (AdoptSnapshot).
  std::uint64_t base_generation = 0;
  std::vector<std::uint32_t> changed_listener_slots;
  std::uint32_t workers = 0;
  // The model compiled (model::Model::lineage and ::version): a compile against this snapshot
  // rebuilds only what changed since, when the model can say what that is.
  std::uint64_t model_lineage = 0;
  std::uint64_t model_version = 0;
  // Their maps share storage with the snapshot before when they did not change.
  FamilyTables<std::uint32_t> v4;
  FamilyTables<nat::Ip6> v6;
  PagedSlots<std::shared_ptr<const ListenerConfig>> listeners;  // by slot; null: no listener
  PagedSlots<BackendConfig> backends;                           // by slot; !alive: none

  // The tables of a family by its address type.
  template <typename Ip>
  const FamilyTables<Ip>& tables() const {
    if constexpr (std::is_same_v<Ip, nat::Ip6>) {
      return v6;
    } else {
      return v4;
    }
  }

  const ListenerConfig* listener(std::uint32_t slot) const {
    const std::shared_ptr<const ListenerConfig>* l = listeners.Find(slot);
    return l != nullptr ? l->get() : nullptr;
  }
  // nullptr when the slot names no backend in this snapshot.
  const BackendConfig* backend(std::uint32_t slot) const {
    const BackendConfig* b = backends.Find(slot);
    return b != nullptr && b->alive ? b : nullptr;
  }
  // The backend in `slot`, which must be one of a listener of this snapshot's backend_slots.
  const BackendConfig& backend_at(std::uint32_t slot) const { return backends.at(slot); }
  // fn(config) for every listener, in slot order.
  template <typename Fn>
  void ForEachListener(Fn&& fn) const {
    listeners.ForEach([&fn](std::uint32_t, const std::shared_ptr<const ListenerConfig>& l) {
      if (l != nullptr) {
        fn(*l);
      }
    });
  }
  // Whether a connection of (listener, backend) slots has lost its listener or backend, or
  // its backend is dead: the sweep's predicate.
  bool ConnDead(std::uint32_t listener_slot, std::uint32_t backend_slot) const {
    const BackendConfig* b = backend(backend_slot);
    return listener(listener_slot) == nullptr || b == nullptr || b->dead;
  }
};

// A control-plane address (IPv6 only) or endpoint (either family) as the data plane holds it.
nat::Ip6 Ip6Of(const IpAddress& addr);
// The IPv6 address `ip` (never an IPv4 one, even when it is v4-mapped).
IpAddress IpAddressOf(const nat::Ip6& ip);
nat::AnyEndpoint AnyEndpointOf(const Endpoint& endpoint);
Endpoint EndpointOf(const nat::AnyEndpoint& endpoint);

struct SlotState {
  static constexpr std::uint32_t kDefaultListenerSlots =
      static_cast<std::uint32_t>(model::kMaxLbs * model::kMaxListenersPerLb);
  static constexpr std::uint32_t kDefaultBackendSlots = 65536;

  SlotState(std::uint32_t listener_slots = kDefaultListenerSlots,
            std::uint32_t backend_slots = kDefaultBackendSlots)
      : listeners(listener_slots), backends(backend_slots) {}

  // Key: listener id and mode ("lsn-0a1b2c3d/fnat"): a mode change is a new listener, whose
  // connections start afresh (the owner core of a connection depends on the mode).
  SlotAllocator<std::string> listeners;
  // Key: (listener slot, backend).
  SlotAllocator<std::pair<std::uint32_t, nat::AnyEndpoint>> backends;
};

struct CompileOptions {
  std::uint32_t workers = 1;
};

struct CompileResult {
  std::unique_ptr<ConfigSnapshot> snapshot;
  // The next slot state; nullopt when the compile took and retired no slot (the input's holds).
  std::optional<SlotState> slots;
  std::vector<std::uint32_t> new_listener_slots;  // given to a listener by this compile
  std::size_t retired_slots = 0;                  // listener and backend slots retired
  // Connections must be swept: slots were retired, or backends died since `previous`.
  bool needs_sweep = false;
  std::size_t compiled_listeners = 0;  // listeners compiled anew (the others are shared)
  std::vector<std::string> warnings;   // things the data plane ignores
};

// The model's listener options as a BackendSet scheduler.
nat::SchedulerKind SchedulerKindOf(model::Scheduler scheduler);
// The Maglev table size of a listener: the paper's 65537 when the scheduler hashes (sh,
// maglev); otherwise, since the table only serves the table-full fallback, the smallest prime
// >= max(1009, 101 x backends), at most 65537 (Maglev wants M >> N, the paper uses M >= 100 N).
std::uint32_t MaglevSizeFor(model::Scheduler scheduler, std::size_t backends);
// The smallest prime >= n.
std::uint32_t NextPrime(std::uint32_t n);

// Compiles `model` for `config`'s ports and routes. `previous` (may be null) is the snapshot
// being replaced, compiled from the same config and options with `slots`: its unchanged
// listeners are shared, and when the model changed since only by health reports and weight
// changes (model::Model::layout_version), only the listeners those touched are compiled and
// everything else is taken from `previous`, so the compile's cost does not grow with the
// listeners it leaves alone. Fails, naming the object, when a listener's backends cannot form
// a set or the slots run out.
Result<CompileResult> CompileSnapshot(const model::Model& model, const DaemonConfig& config,
                                      const CompileOptions& options, const SlotState& slots,
                                      std::uint64_t generation, const ConfigSnapshot* previous);

}  // namespace fulcrum::dataplane
