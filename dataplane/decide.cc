#include "dataplane/decide.h"

#include <cstddef>
#include <cstring>
#include <type_traits>

#include "dataplane/handoff.h"
#include "nat/arp.h"
#include "nat/nat64.h"
#include "nat/ndp.h"
#include "nat/packet6.h"
#include "nat/rewrite.h"
#include "nat/rewrite6.h"
#include "nat/tcp_reset.h"
#include "nat/tcp_state.h"

namespace fulcrum::dataplane {
namespace {

using nat::ConnEntry;
using nat::ConnHit;
using nat::DropReason;
using nat::FlowDir;
using nat::FlowKey;
using nat::PacketKind;
using nat::ParsedPacket;

constexpr std::uint32_t kResolveIntervalMs = 1000;
// A full table keeps dnat's stateless fallback on for flows that arrive without state.
constexpr std::uint32_t kTableFullWindowMs = 60'000;
constexpr std::size_t kPrefetchAhead = 3;

Action Drop(CoreState& c, DropReason reason) {
  c.counters->Drop(reason);
  return {.verb = Verb::kDrop, .reason = reason};
}

constexpr Action Consume() { return {.verb = Verb::kConsume}; }

constexpr Action Send(std::uint8_t port, std::size_t length = 0) {
  return {.verb = Verb::kSend, .port = port, .length = static_cast<std::uint16_t>(length)};
}

void Count(CoreState& c, WorkerEvent event, std::uint64_t n = 1) { c.counters->Count(event, n); }

// ---- the families' parts of the core and the snapshot

template <typename F>
auto& TableOf(CoreState& c) {
  if constexpr (F::kIpv6) {
    return c.table6;
  } else {
    return c.table;
  }
}

template <typename F>
auto& PoolsOf(CoreState& c) {
  if constexpr (F::kIpv6) {
    return c.pools6;
  } else {
    return c.pools;
  }
}

template <typename F>
BurstState<F>& BurstOf(CoreState& c) {
  if constexpr (F::kIpv6) {
    return c.burst6;
  } else {
    return c.burst;
  }
}

template <typename F>
const FamilyTables<typename F::Ip>& TablesOf(const CoreState& c) {
  return c.snapshot->tables<typename F::Ip>();
}

template <typename F>
const typename F::Neighbors* NeighborsOf(const CoreState& c) {
  if constexpr (F::kIpv6) {
    return c.neighbors6;
  } else {
    return c.neighbors;
  }
}

template <typename F>
CoreState::HopMemo<typename F::Ip>* ClientHopOf(CoreState& c) {
  if constexpr (F::kIpv6) {
    return &c.client_hop6;
  } else {
    return &c.client_hop;
  }
}

template <typename F>
const typename F::Hop& HopOf(const BackendConfig& b) {
  if constexpr (F::kIpv6) {
    return b.next_hop6;
  } else {
    return b.next_hop;
  }
}

template <typename F>
typename F::Endpoint EndpointOf(const nat::AnyEndpoint& e) {
  if constexpr (F::kIpv6) {
    return e.v6();
  } else {
    return e.v4();
  }
}

// Where both families meet (the learnt neighbours, the resolve cache): IPv4 as IPv4-mapped.
nat::Ip6 Wide(std::uint32_t ip) { return nat::MappedIp6(ip); }
const nat::Ip6& Wide(const nat::Ip6& ip) { return ip; }

// ---- neighbours

std::uint32_t LearntSlot(const nat::Ip6& ip) {
  return static_cast<std::uint32_t>(nat::Mix64(ip.hi ^ nat::Mix64(ip.lo)) & (kLearntSlots - 1));
}

void WriteLearnt(CoreState& c, const nat::Ip6& ip, const nat::MacAddress& mac, std::uint8_t port) {
  LearntNeighbor& slot = c.learnt[LearntSlot(ip)];
  const std::uint32_t seq = slot.seq.load(std::memory_order_relaxed);
  slot.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  slot.ip_hi.store(ip.hi, std::memory_order_relaxed);
  slot.ip_lo.store(ip.lo, std::memory_order_relaxed);
  slot.mac_port.store(PackMac(mac) << 8 | port, std::memory_order_relaxed);
  slot.at_ms.store(c.now_ms, std::memory_order_relaxed);
  slot.seq.store(seq + 2, std::memory_order_release);
}

// A neighbour some worker learnt in the last kLearntTtlMs (rare path: the neighbour map missed).
bool ReadLearnt(const CoreState& c, const nat::Ip6& ip, nat::Neighbor& out) {
  const std::uint32_t index = LearntSlot(ip);
  for (const CoreState* other : c.shared->all) {
    const LearntNeighbor& slot = other->learnt[index];
    const std::uint32_t before = slot.seq.load(std::memory_order_acquire);
    const nat::Ip6 slot_ip{slot.ip_hi.load(std::memory_order_relaxed),
                           slot.ip_lo.load(std::memory_order_relaxed)};
    const std::uint64_t mac_port = slot.mac_port.load(std::memory_order_relaxed);
    const std::uint32_t at = slot.at_ms.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (before % 2 != 0 || slot.seq.load(std::memory_order_relaxed) != before || slot_ip != ip ||
        before == 0 || c.now_ms - at >= kLearntTtlMs) {
      continue;
    }
    out.mac = UnpackMac(mac_port >> 8);
    out.port = static_cast<std::uint8_t>(mac_port);
    return true;
  }
  return false;
}

// Queues a report for the control thread; counted as lost when the burst's queue is full.
void Report(CoreState& c, const Message& message) {
  if (c.report_count == c.reports.size()) {
    Count(c, WorkerEvent::kControlRingFull);
    return;
  }
  c.reports[c.report_count++] = message;
}

// A neighbour seen on `port` (ARP, or neighbour discovery), for the control thread.
void ReportNeighbor(CoreState& c, std::uint32_t ip, const nat::MacAddress& mac, std::uint8_t port,
                    bool for_us) {
  Report(c, Message{.type = MessageType::kArpSeen,
                    .port = port,
                    .flags = for_us ? kMessageForUs : std::uint8_t{0},
                    .ip = ip,
                    .value = PackMac(mac)});
}
void ReportNeighbor(CoreState& c, const nat::Ip6& ip, const nat::MacAddress& mac, std::uint8_t port,
                    bool for_us) {
  Message m{.type = MessageType::kNeighborSeen6,
            .port = port,
            .flags = for_us ? kMessageForUs : std::uint8_t{0},
            .value = PackMac(mac)};
  SetIp6(m, ip);
  Report(c, m);
}

template <typename Hop>
void AskResolve(CoreState& c, const Hop& hop) {
  const nat::Ip6 wide = Wide(hop.ip);
  CoreState::Asked& asked = c.asked[LearntSlot(wide) % c.asked.size()];
  if (asked.ip == wide && c.now_ms - asked.at_ms < kResolveIntervalMs) {
    return;
  }
  asked = {wide, c.now_ms};
  Count(c, WorkerEvent::kArpResolveRequests);
  if constexpr (std::is_same_v<Hop, nat::NextHop6>) {
    Message m{.type = MessageType::kResolve6, .port = hop.port};
    SetIp6(m, hop.ip);
    Report(c, m);
  } else {
    Report(c, Message{.type = MessageType::kResolve, .port = hop.port, .ip = hop.ip});
  }
}

// Addresses the frame to `hop`: sent out of its port, or dropped without route or MAC. `memo`:
// where the burst's last neighbour of this kind of hop is kept (ClientHopOf), or nullptr.
template <typename F>
Action SendVia(CoreState& c, const PacketIn& in, const typename F::Hop& hop,
               ListenerCounters* counters, CoreState::HopMemo<typename F::Ip>* memo = nullptr) {
  if (!hop.ok()) [[unlikely]] {
    return Drop(c, DropReason::kNoRoute);
  }
  const nat::Neighbor* neighbor = nullptr;
  if (memo != nullptr && memo->neighbor != nullptr && memo->ip == hop.ip) {
    neighbor = memo->neighbor;
  } else if (const typename F::Neighbors* map = NeighborsOf<F>(c); map != nullptr) {
    neighbor = map->Find(hop.ip);
    if (memo != nullptr && neighbor != nullptr) {
      *memo = {hop.ip, neighbor};
    }
  }
  nat::Neighbor learnt;
  if (neighbor == nullptr) [[unlikely]] {
    if (!ReadLearnt(c, Wide(hop.ip), learnt)) {
      AskResolve(c, hop);
      return Drop(c, DropReason::kArpUnresolved);
    }
    neighbor = &learnt;
  }
  std::memcpy(in.frame.data(), neighbor->mac.data(), 6);
  std::memcpy(in.frame.data() + 6, c.shared->ports[hop.port].mac.data(), 6);
  if (counters != nullptr) {
    counters->tx_packets.Add(1);
    counters->tx_bytes.Add(in.frame.size());
  }
  return Send(hop.port);
}

// Turns a TCP segment nobody may receive into the reset that answers it, sent back.
template <typename Parsed>
Action SendReset(CoreState& c, const PacketIn& in, const Parsed& p) {
  const std::size_t length = nat::MakeTcpReset(in.frame, p);
  if (length == 0 || in.port == kNoPortIndex) {
    return Consume();
  }
  Count(c, WorkerEvent::kTcpResetsSent);
  return Send(in.port, length);
}

// A new connection from an on-link client whose MAC nobody knows yet (after a restart, the
// client's neighbour cache still holds ours, so it will not ask): its frame's source MAC is
// the client's, and the reply will need it within a millisecond, long before the control
// thread could resolve it. Kept in this core's learnt table, and the control thread is asked to
// confirm it.
template <typename F>
void LearnFromClient(CoreState& c, const PacketIn& in, const typename F::Parsed& p) {
  // Most clients are not on the link: the connected-route test comes first, as it rules them
  // out without a neighbour lookup that would miss.
  if (in.port == kNoPortIndex || TablesOf<F>(c).routes.ConnectedPort(p.src_ip) != in.port) {
    return;
  }
  const typename F::Neighbors* map = NeighborsOf<F>(c);
  nat::Neighbor known;
  if ((map != nullptr && map->Find(p.src_ip) != nullptr) || ReadLearnt(c, Wide(p.src_ip), known)) {
    return;
  }
  nat::MacAddress mac;
  std::memcpy(mac.data(), in.frame.data() + 6, mac.size());
  WriteLearnt(c, Wide(p.src_ip), mac, in.port);
  AskResolve(c, typename F::Hop{p.src_ip, in.port});
}

// ---- connections

template <typename F>
void EraseConn(CoreState& c, std::uint32_t index) {
  const typename F::Entry& e = TableOf<F>(c).entry(index);
  if (!e.in_use()) {
    return;  // an earlier packet of the burst found it dead and erased it
  }
  ReleaseConn(c, e);
  TableOf<F>(c).Erase(index);
}

auto FreeFn(CoreState& c) {
  return [&c](const auto& e) { ReleaseConn(c, e); };
}

// The next hop of a packet leaving towards the backend of `e`.
template <typename F>
typename F::Hop BackendHop(const CoreState& c, const typename F::Entry& e) {
  const BackendConfig* b = c.snapshot->backend(e.backend);
  return b != nullptr ? HopOf<F>(*b) : typename F::Hop{};
}

template <typename F>
void Rewrite(std::span<std::uint8_t> frame, const typename F::Parsed& p,
             const typename F::Endpoint& src, const typename F::Endpoint& dst) {
  if constexpr (F::kIpv6) {
    nat::RewriteIpv6(frame, p, src, dst);
  } else {
    nat::RewriteIpv4(frame, p, src, dst);
  }
}

// ---- per-packet work of the burst

// Forwards a dnat packet without state (the table is full): to a Maglev-chosen backend, or
// from a backend as its service.
template <typename F>
Action ForwardStateless(CoreState& c, const PacketIn& in, const typename F::Parsed& p,
                        const ListenerConfig* l) {
  const ConfigSnapshot& snap = *c.snapshot;
  const FamilyTables<typename F::Ip>& tables = TablesOf<F>(c);
  if (l != nullptr) {
    if (l->has_acl && l->acl.Contains(p.src_ip) != l->acl_allow) {
      return Drop(c, DropReason::kAclDenied);
    }
    const std::uint16_t index = l->set.PickStateless(nat::FlowKeyOf(p));
    if (index == nat::kNoBackend) {
      return Drop(c, DropReason::kNoBackend);
    }
    const BackendConfig* b = snap.backend(l->backend_slots[index]);
    Rewrite<F>(in.frame, p, {p.src_ip, p.src_port},
               EndpointOf<F>(l->set.backends()[index].endpoint));
    Count(c, WorkerEvent::kTableFullFallbacks);
    return SendVia<F>(c, in, b != nullptr ? HopOf<F>(*b) : typename F::Hop{}, &c.listener(l->slot));
  }
  const DnatService* service =
      tables.dnat_services.Find(tables.services.Key(p.src_ip, p.src_port, p.proto));
  if (service == nullptr || service->ambiguous) {
    return Drop(c, DropReason::kNotLocal);
  }
  Rewrite<F>(in.frame, p, EndpointOf<F>(service->vip), {p.dst_ip, p.dst_port});
  Count(c, WorkerEvent::kTableFullFallbacks);
  return SendVia<F>(c, in, tables.routes.Lookup(p.dst_ip), nullptr);
}

bool TableFullRecently(const CoreState& c) {
  return c.table_full_seen && c.now_ms - c.table_full_ms < kTableFullWindowMs;
}

// Whether Verdict will open a connection for the packet: a client-side miss that may start one.
template <typename Parsed, typename Hit>
bool Opens(const PendingPacket& pending, const Parsed& p, const Hit& hit) {
  return !hit.hit() && pending.side == FlowDir::kFromClient &&
         (p.proto == nat::kIpProtoUdp || nat::ClassifyTcpFlags(p.tcp_flags) == nat::TcpEvent::kSyn);
}

// A cheap 6-bit digest of a client key, for OpensEarlierInBurst's filter.
std::uint32_t FilterBits(const FlowKey& key) {
  return key.src_ip ^ key.src_port ^ (key.src_port >> 6) ^ key.dst_port;
}
std::uint32_t FilterBits(const nat::FlowKey6& key) {
  return static_cast<std::uint32_t>(key.src_ip.lo) ^ key.src_port ^ (key.src_port >> 6) ^
         key.dst_port;
}

// Whether an earlier packet of the burst opens the connection packet `i` would open (the first
// datagrams of a UDP flow, a retransmitted SYN): that one opens it and this one follows it as
// a hit, instead of a second connection for one tuple. `filter` has a bit per opening key,
// so that only a likely repeat pays for comparing keys.
template <typename F>
bool OpensEarlierInBurst(const BurstState<F>& burst, std::uint16_t i, std::uint64_t& filter) {
  const typename F::Key& key = burst.keys[i];
  const std::uint64_t bit = std::uint64_t{1} << (FilterBits(key) & 63);
  if ((filter & bit) != 0) {
    for (std::uint16_t j = 0; j < i; ++j) {
      if (burst.prepared[j].ready && burst.keys[j] == key) {
        return true;
      }
    }
  }
  filter |= bit;
  return false;
}

// The IPv4 address and port an IPv4-mapped endpoint stands for.
nat::Endpoint4 V4Of(const nat::Endpoint6& e) { return nat::AnyEndpoint(e).v4(); }

// A local address and port from the pool of the port `hop` leaves by, or nothing when there is
// no such pool or it is exhausted. `translated`: for a NAT64 connection.
template <typename Pools, typename Hop>
auto AllocateLocal(Pools& pools, const Hop& hop, bool translated = false)
    -> decltype(pools[0]->Allocate()) {
  if (!hop.ok() || !pools[hop.port].has_value()) {
    return std::nullopt;
  }
  return pools[hop.port]->Allocate(translated);
}

// The entry of a NAT64 connection from `p`'s client to the IPv4 backend `b`: a local IPv4
// address and port of ours on the backend's port, held IPv4-mapped.
std::optional<nat::ConnEntry6> Nat64Entry(CoreState& c, const nat::ParsedPacket6& p,
                                          const ListenerConfig& l, const BackendConfig& b) {
  const std::optional<nat::Endpoint4> local = AllocateLocal(c.pools, b.next_hop, true);
  if (!local) {
    return std::nullopt;
  }
  ++c.translated_ports;
  nat::ConnEntry6 e = nat::MakeFnatEntry(p.proto, nat::Endpoint6{p.src_ip, p.src_port}, l.vip.v6(),
                                         nat::AnyEndpoint(*local).v6(), b.endpoint.v6());
  e.mode = nat::NatMode::kNat64;
  return e;
}

// The entry of an fnat connection from `client` to backend `b`: a local address and port of
// ours on the backend's port, or nothing when the pool there is exhausted.
template <typename F>
std::optional<typename F::Entry> FnatEntry(CoreState& c, const typename F::Parsed& p,
                                           const ListenerConfig& l, const BackendConfig& b) {
  if constexpr (F::kIpv6) {
    if (b.endpoint.is_v4()) [[unlikely]] {
      return Nat64Entry(c, p, l, b);
    }
  }
  const std::optional<typename F::Endpoint> local = AllocateLocal(PoolsOf<F>(c), HopOf<F>(b));
  if (!local) {
    return std::nullopt;
  }
  return nat::MakeFnatEntry(p.proto, typename F::Endpoint{p.src_ip, p.src_port},
                            EndpointOf<F>(l.vip), *local, EndpointOf<F>(b.endpoint));
}

// Gives `local` back to its pool: that of the port `hop` leaves by, else whichever pool holds
// it (every pool refuses a foreign address).
template <typename Pools, typename Hop, typename Endpoint>
bool ReleaseFrom(Pools& pools, const Hop* hop, const Endpoint& local) {
  bool released = hop != nullptr && hop->ok() && pools[hop->port].has_value() &&
                  pools[hop->port]->Release(local);
  for (std::size_t i = 0; !released && i < pools.size(); ++i) {
    released = pools[i].has_value() && pools[i]->Release(local);
  }
  return released;
}

// Gives the local address and port of fnat or NAT64 entry `e` (to backend `b`, if it still
// exists) back to this core's pool.
template <typename F>
void ReleaseLocal(CoreState& c, const typename F::Entry& e, const BackendConfig* b) {
  if constexpr (F::kIpv6) {
    if (e.mode == nat::NatMode::kNat64) {
      if (ReleaseFrom(c.pools, b != nullptr ? &b->next_hop : nullptr, V4Of(e.local()))) {
        --c.translated_ports;
      }
      return;
    }
  }
  ReleaseFrom(PoolsOf<F>(c), b != nullptr ? &HopOf<F>(*b) : nullptr, e.local());
}

// Counts a packet of tracked connection `e` (of listener `l`) and moves its TCP state and
// idle timeout on. Returns the listener's counters.
template <typename Entry>
[[gnu::always_inline]] inline ListenerCounters& Track(CoreState& c, const PacketIn& in, Entry& e,
                                                      FlowDir dir, std::uint8_t tcp_flags,
                                                      const ListenerConfig& l) {
  ListenerCounters& counters = c.listener(e.listener);
  counters.rx_packets.Add(1);
  counters.rx_bytes.Add(in.frame.size());
  if (e.proto() == nat::kIpProtoTcp) {
    const nat::TcpState before = e.tcp_state;
    e.tcp_state = nat::TcpNextState(before, dir, tcp_flags);
    if (e.tcp_state == nat::TcpState::kSynSent && before != nat::TcpState::kSynSent) [[unlikely]] {
      // A client SYN reopened a time_wait or closed tuple: a new connection on the old entry
      // (same backend and local port), counted and aged as one.
      e.created_ms = c.now_ms;
      counters.new_conns.Add(1);
      c.new_conns.Add(1);
    }
  }
  e.timeout_ms = l.ConnTimeoutMs(e.tcp_state);
  e.last_seen_ms = c.now_ms;
  return counters;
}

// Sends what a NAT64 translation left at [t.offset, t.offset + t.length) of `buffer`, which
// starts `head` bytes before the received frame, towards `hop`: the action tells the adapter
// how far the frame's start moved and its new length.
template <typename F>
[[gnu::always_inline]] inline Action SendTranslated(
    CoreState& c, const PacketIn& in, std::span<std::uint8_t> buffer, std::size_t head,
    const nat::Translated& t, const typename F::Hop& hop, ListenerCounters* counters,
    CoreState::HopMemo<typename F::Ip>* memo = nullptr) {
  PacketIn out = in;
  out.frame = buffer.subspan(t.offset, t.length);
  Action action = SendVia<F>(c, out, hop, counters, memo);
  if (action.verb == Verb::kSend) {
    action.offset = static_cast<std::int16_t>(static_cast<std::ptrdiff_t>(t.offset) -
                                              static_cast<std::ptrdiff_t>(head));
    action.length = static_cast<std::uint16_t>(t.length);
  }
  return action;
}

// The buffer of packet `i` of the burst from its headroom on: what a translation to IPv6 may
// grow the frame into.
struct Headroom {
  std::span<std::uint8_t> buffer;
  std::size_t head = 0;  // bytes before the frame
};
Headroom HeadroomOf(const PacketIn& in) {
  return {{in.frame.data() - in.headroom, in.headroom + in.frame.size()}, in.headroom};
}

// The NAT64 connection whose IPv4 backend side `key` is (an IPv4 packet from the backend, or
// the reply key of one an ICMPv4 error quotes), found under its IPv4-mapped tuple; a miss
// when there is none.
[[gnu::always_inline]] inline Inet6::Hit FindNat64(CoreState& c, const FlowKey& key) {
  const Inet6::Hit hit = c.table6.Lookup({nat::MappedIp6(key.src_ip), nat::MappedIp6(key.dst_ip),
                                          key.src_port, key.dst_port, key.proto},
                                         c.now_ms);
  return hit.hit() && hit.entry->mode == nat::NatMode::kNat64 && hit.dir == FlowDir::kFromBackend
             ? hit
             : Inet6::Hit{};
}

// The client's IPv6 packet `p` of NAT64 connection `e` to backend `b`, translated into the IPv4
// packet from our local address to the backend (RFC 7915) and sent towards the backend. The
// frame starts later: the action's offset says by how much.
[[gnu::noinline]] Action ToIpv4Backend(CoreState& c, const PacketIn& in,
                                       const nat::ParsedPacket6& p, const nat::ConnEntry6& e,
                                       const BackendConfig& b, ListenerCounters* counters) {
  const nat::Translated t =
      nat::TranslateToIpv4(in.frame, p, V4Of(e.local()), V4Of(e.backend_endpoint()),
                           nat::ChecksumDelta::Folded(e.deltas.l4));
  return SendTranslated<Inet4>(c, in, in.frame, 0, t, b.next_hop, counters);
}

// The index in `l`'s set of the backend in `slot`, when it is one of `l`'s and takes new
// connections (weight > 0, not down); else kNoBackend.
std::uint16_t UsableIndex(const CoreState& c, const ListenerConfig& l, std::uint32_t slot) {
  const BackendConfig* b = c.snapshot->backend(slot);
  if (b == nullptr || b->listener_slot != l.slot || !l.set.backends()[b->set_index].eligible) {
    return nat::kNoBackend;
  }
  return b->set_index;
}

// Session persistence (nat/persist_table.h): the backend the client's last connection to `l`
// went to within the window, if it still takes new connections; else a pick, remembered for
// the client's next connections. Whichever core records a client first decides for every core.
template <typename F>
[[gnu::noinline]] std::uint16_t PickPersistent(CoreState& c, const typename F::Parsed& p,
                                               const ListenerConfig& l,
                                               nat::SchedulerState& scheduler,
                                               nat::PersistTable::Key key) {
  nat::PersistTable& table = *c.shared->persist;
  const std::uint16_t now = nat::PersistTable::TickOf(c.now_ms);
  if (key.fingerprint == 0) {  // not computed ahead
    key = table.KeyOf(l.slot, p.src_ip);
  }
  const nat::PersistTable::Found found = table.Find(key, now);
  if (found.hit()) {
    const std::uint16_t kept = UsableIndex(c, l, found.backend);
    if (kept != nat::kNoBackend) {
      table.Refresh(key, found, now, l.persist_ticks);
      Count(c, WorkerEvent::kPersistHits);
      return scheduler.Take(kept);
    }
    Count(c, WorkerEvent::kPersistMoved);
  }
  const std::uint16_t picked = scheduler.Pick(nat::FlowKeyOf(p));
  if (picked == nat::kNoBackend) {
    return picked;
  }
  const std::uint32_t slot = l.backend_slots[picked];
  const nat::PersistTable::Recorded recorded =
      table.Remember(key, found, slot, now, l.persist_ticks);
  if (!recorded.raced && recorded.backend == slot) {
    Count(c, WorkerEvent::kPersistRecorded);
    Count(c, WorkerEvent::kPersistEvicted, recorded.evicted ? 1 : 0);
    return picked;
  }
  // Another core recorded this client first (its backend wins, if it can take the connection),
  // or the bucket kept changing and nothing was recorded.
  const std::uint16_t theirs = recorded.backend != nat::PersistTable::kNone
                                   ? UsableIndex(c, l, recorded.backend)
                                   : nat::kNoBackend;
  if (theirs == nat::kNoBackend) {
    Count(c, WorkerEvent::kPersistContended);
    return picked;
  }
  scheduler.OnConnectionClosed(picked);
  Count(c, WorkerEvent::kPersistHits);
  return scheduler.Take(theirs);
}

// ---- Telling backends the client's address (nat/client_addr.h) by splicing the connection
// (nat/tcp_splice.h). A spliced connection's entry flags hold its mode, kept from its opening
// (a listener's change leaves open connections as they began), and the state of its Proxy
// Protocol header; its splice_start and splice_len make its SeqShift. In the entry, so that a
// spliced connection's packets touch the cache line every connection's do, and no more.
//
// The header goes in front of the client's first sequence number once: in the handshake's
// ACK, so that a backend that speaks first (SMTP, MySQL) hears it without waiting for client
// data. It is owed again only when the backend shows that it lacks it (a segment whose
// acknowledgement stops short of the header's end, before any has covered it: the header was
// lost, or the backend's SYN-ACK was sent again), and then goes with the client's next segment
// that starts at its first number: the dup ACK that answers a repeated SYN-ACK, or the
// retransmission of its first data. A copy that arrives twice is trimmed by the backend's TCP
// as any repeated bytes.

constexpr std::uint8_t kConnClientAddrMask = 0x03;  // nat::ClientAddrMode
constexpr std::uint8_t kConnHeaderOwed = 0x04;      // goes with the next segment that may carry it
constexpr std::uint8_t kConnHeaderAcked = 0x08;     // the backend has all of it

nat::ClientAddrMode ClientAddrOf(std::uint8_t flags) {
  return static_cast<nat::ClientAddrMode>(flags & kConnClientAddrMask);
}

template <typename Entry>
nat::SeqShift ShiftOf(const Entry& e) {
  return {.client_start = e.splice_start, .to_backend = e.splice_len, .to_client = 0};
}

// What connection `e` tells its backend: a Proxy Protocol header or a TOA option.
template <typename Entry>
std::size_t ClientAddrBytesOf(const Entry& e, nat::ClientAddrBytes& out) {
  return nat::EncodeClientAddr(ClientAddrOf(e.flags), e.client(), e.vip(), out);
}

// Starts splicing connection `e` at the client's SYN `p`: its first sequence number and, for
// Proxy Protocol, the header's length, by which the backend numbers the client's bytes
// higher. Again on a repeated SYN, or one that reopens the entry.
template <typename F>
void StartSplice(const PacketIn& in, const typename F::Parsed& p, typename F::Entry& e) {
  e.splice_start = nat::LoadBe32(in.frame.data() + p.l4_offset + nat::kTcpSeqOffset) + 1;
  e.splice_len = 0;
  if (ClientAddrOf(e.flags) != nat::ClientAddrMode::kToa) {
    nat::ClientAddrBytes bytes;
    static_assert(nat::kClientAddrMaxLen <= 0xff);
    e.splice_len = static_cast<std::uint8_t>(ClientAddrBytesOf(e, bytes));
  }
  e.flags = static_cast<std::uint8_t>((e.flags & kConnClientAddrMask) | kConnHeaderOwed);
}

// A backend's segment of spliced connection `e`, at `tcp`: notes whether the backend has the
// whole header, and moves the segment's numbers into the client's numbering. Returns the
// change for the segment's checksum.
template <typename Entry>
nat::ChecksumDelta SpliceFromBackend(Entry& e, std::uint8_t* tcp, std::size_t header_len,
                                     std::uint8_t tcp_flags) {
  const nat::SeqShift shift = ShiftOf(e);
  if ((tcp_flags & nat::kTcpAck) != 0 && shift.to_backend != 0 &&
      (e.flags & kConnHeaderAcked) == 0) {
    const bool has_all = !nat::SeqBefore(nat::LoadBe32(tcp + nat::kTcpAckOffset),
                                         shift.client_start + shift.to_backend);
    e.flags = static_cast<std::uint8_t>((e.flags & ~kConnHeaderOwed) |
                                        (has_all ? kConnHeaderAcked : kConnHeaderOwed));
  }
  return nat::ShiftSegmentDelta(tcp, header_len, shift, FlowDir::kFromBackend);
}

// Whether the client's segment `p` of spliced connection `e` carries the client's address:
// it starts at the client's first byte, and the mode is TOA or the header is owed.
template <typename F>
bool CarriesClientAddr(const PacketIn& in, const typename F::Parsed& p,
                       const typename F::Entry& e) {
  return (p.tcp_flags & (nat::kTcpSyn | nat::kTcpRst)) == 0 &&
         nat::LoadBe32(in.frame.data() + p.l4_offset + nat::kTcpSeqOffset) == e.splice_start &&
         (ClientAddrOf(e.flags) == nat::ClientAddrMode::kToa || (e.flags & kConnHeaderOwed) != 0);
}

// The client's segment `p` of spliced connection `e` to backend `b`, with the client's address
// inserted (a Proxy Protocol header ahead of its data, or a TOA option): the frame grows into
// its headroom, its numbers move (the header's own segment keeps the client's first number:
// the header starts there), and it goes on as any other.
template <typename F>
[[gnu::noinline]] Action ForwardWithClientAddr(CoreState& c, const PacketIn& in,
                                               const typename F::Parsed& p, typename F::Entry& e,
                                               const BackendConfig& b, ListenerCounters& counters) {
  const nat::ClientAddrMode mode = ClientAddrOf(e.flags);
  bool translated = false;
  if constexpr (F::kIpv6) {
    translated = e.mode == nat::NatMode::kNat64;
  }
  // The egress port's MTU bounds the packet as sent: a NAT64 translation (to the IPv4 hop)
  // sheds 20 bytes.
  const typename F::Hop& hop = HopOf<F>(b);
  const bool hop_ok = translated ? b.next_hop.ok() : hop.ok();
  const std::size_t mtu =
      (hop_ok ? c.shared->ports[translated ? b.next_hop.port : hop.port].mtu : 1500) +
      (translated ? nat::kIpv6HeaderLen - nat::kIpv4MinHeaderLen : 0);
  nat::ClientAddrBytes bytes;
  const std::size_t n = ClientAddrBytesOf(e, bytes);
  const Headroom room = HeadroomOf(in);
  const nat::Spliced r = nat::InsertIntoSegment(
      room.buffer, room.head, nat::TcpSegmentOf(p),
      mode == nat::ClientAddrMode::kToa ? nat::InsertWhere::kOption : nat::InsertWhere::kPayload,
      {bytes.data(), n}, mtu);
  PacketIn out = in;
  typename F::Parsed q = p;
  nat::SeqShift shift = ShiftOf(e);
  if (r.ok) {
    out.frame = room.buffer.subspan(room.head - r.grown, r.length);
    out.headroom = static_cast<std::uint16_t>(in.headroom - r.grown);
    if constexpr (F::kIpv6) {
      q = nat::ParseIpv6(out.frame, p.l3_offset);
    } else {
      q = nat::Parse(out.frame);
    }
    Count(c, WorkerEvent::kClientAddrInserted);
    if (r.trimmed != 0) {
      Count(c, WorkerEvent::kClientAddrTrimmed);
    }
    if (mode != nat::ClientAddrMode::kToa) {
      shift.to_backend = 0;  // the header itself starts at the client's first number
      e.flags = static_cast<std::uint8_t>(e.flags & ~kConnHeaderOwed);
    }
  } else if (mode == nat::ClientAddrMode::kToa) {
    Count(c, WorkerEvent::kToaNoRoom);
  } else {
    // Without the header the backend would take the client's bytes for it; the client sends
    // them again. Only a buffer without headroom (not from a port) comes here.
    return Drop(c, DropReason::kTruncated);
  }
  nat::ShiftSegment(out.frame.data() + q.l4_offset, q.payload_offset - q.l4_offset, shift,
                    FlowDir::kFromClient);
  Action action;
  if constexpr (F::kIpv6) {
    if (translated) {
      action = ToIpv4Backend(c, out, q, e, b, &counters);
      if (action.verb == Verb::kSend) {
        action.offset = static_cast<std::int16_t>(action.offset - r.grown);
      }
      return action;
    }
  }
  nat::RewriteToBackend(out.frame, q, e);
  action = SendVia<F>(c, out, hop, &counters);
  if (action.verb == Verb::kSend && r.grown != 0) {
    action.offset = static_cast<std::int16_t>(-r.grown);
    action.length = static_cast<std::uint16_t>(out.frame.size());
  }
  return action;
}

// A packet of spliced connection `hit`, of backend `b`. The client's segments that start at
// its first sequence number (the handshake's ACK, the first data, their retransmissions) carry
// the client's address: every one a TOA option, the one the header is owed to the Proxy
// Protocol header before its data. Every segment's numbers move between the two numberings,
// their checksum patched with the NAT rewrite's.
template <typename F>
[[gnu::noinline]] Action ForwardSpliced(CoreState& c, const PacketIn& in,
                                        const typename F::Parsed& p, const typename F::Hit& hit,
                                        const BackendConfig& b, ListenerCounters& counters) {
  typename F::Entry& e = *hit.entry;
  std::uint8_t* const tcp = in.frame.data() + p.l4_offset;
  const std::size_t header_len = p.payload_offset - p.l4_offset;
  if (hit.dir == FlowDir::kFromBackend) {
    nat::RewriteToClient(in.frame, p, e, SpliceFromBackend(e, tcp, header_len, p.tcp_flags));
    return SendVia<F>(c, in, TablesOf<F>(c).routes.Lookup(e.from_client.src_ip), &counters,
                      ClientHopOf<F>(c));
  }
  if ((p.tcp_flags & nat::kTcpSyn) != 0) {
    StartSplice<F>(in, p, e);  // again: a repeated SYN, or one that reopens the entry
  }
  if (CarriesClientAddr<F>(in, p, e)) {
    return ForwardWithClientAddr<F>(c, in, p, e, b, counters);
  }
  if constexpr (F::kIpv6) {
    if (e.mode == nat::NatMode::kNat64) {
      nat::ShiftSegment(tcp, header_len, ShiftOf(e), FlowDir::kFromClient);
      return ToIpv4Backend(c, in, p, e, b, &counters);
    }
  }
  nat::RewriteToBackend(in.frame, p, e,
                        nat::ShiftSegmentDelta(tcp, header_len, ShiftOf(e), FlowDir::kFromClient));
  return SendVia<F>(c, in, HopOf<F>(b), &counters);
}

// Picks the backend (and for fnat the local port) of a new connection, builds its entry and
// prefetches what inserting it will touch (`ahead`: how many inserts come before it).
template <typename F>
void PrepareConn(CoreState& c, const typename F::Parsed& p, const ListenerConfig& l,
                 std::uint32_t ahead, PreparedConn<F>& out) {
  out.ready = true;
  out.drop = DropReason::kNone;
  if (l.has_acl && l.acl.Contains(p.src_ip) != l.acl_allow) [[unlikely]] {
    out.drop = DropReason::kAclDenied;
    return;
  }
  nat::SchedulerState& scheduler = c.scheduler(l.slot);
  out.set_index = l.persist_ticks == 0 ? scheduler.Pick(nat::FlowKeyOf(p))
                                       : PickPersistent<F>(c, p, l, scheduler, out.persist);
  if (out.set_index == nat::kNoBackend) {
    out.drop = DropReason::kNoBackend;
    return;
  }
  const std::uint32_t backend_slot = l.backend_slots[out.set_index];
  const BackendConfig& b = c.snapshot->backend_at(backend_slot);
  out.backend = &b;
  switch (l.open) {
    case OpenKind::kFnat:
      if (std::optional<typename F::Entry> entry = FnatEntry<F>(c, p, l, b)) {
        out.entry = *entry;
        break;
      }
      scheduler.OnConnectionClosed(out.set_index);
      out.drop = DropReason::kPortExhausted;
      return;
    case OpenKind::kDnat:
      out.entry = nat::MakeDnatEntry(p.proto, typename F::Endpoint{p.src_ip, p.src_port},
                                     EndpointOf<F>(l.vip), EndpointOf<F>(b.endpoint));
      break;
  }
  out.entry.listener = l.slot;
  out.entry.backend = backend_slot;
  out.entry.flags = static_cast<std::uint8_t>(l.client_addr);  // kOff unless tcp fnat
  out.entry.tcp_state =
      p.proto == nat::kIpProtoTcp
          ? nat::TcpNextState(nat::TcpState::kNone, FlowDir::kFromClient, p.tcp_flags)
          : nat::TcpState::kNone;
  out.entry.timeout_ms = l.ConnTimeoutMs(out.entry.tcp_state);
  auto& table = TableOf<F>(c);
  out.client_hash = table.Hash(out.entry.from_client);
  out.backend_hash = table.Hash(out.entry.from_backend);
  table.PrefetchInsert(out.client_hash, out.backend_hash, ahead);
}

// A client-side packet without a connection that starts one: a UDP datagram or a TCP SYN.
template <typename Parsed>
bool StartsConnection(const Parsed& p) {
  return p.proto != nat::kIpProtoTcp || nat::ClassifyTcpFlags(p.tcp_flags) == nat::TcpEvent::kSyn;
}

// Inserts the connection `prepared` (prepared now if the burst did not): the insert's result,
// or nullopt when no connection could be prepared (`drop` says why).
template <typename F>
std::optional<nat::InsertResult> InsertPrepared(CoreState& c, const typename F::Parsed& p,
                                                const ListenerConfig& l,
                                                PreparedConn<F>& prepared) {
  if (!prepared.ready) {
    prepared.persist = {};  // not computed ahead for this packet
    PrepareConn<F>(c, p, l, 0, prepared);
  }
  prepared.ready = false;
  if (prepared.drop != DropReason::kNone) {
    return std::nullopt;
  }
  const nat::InsertResult inserted = TableOf<F>(c).InsertHashed(
      prepared.entry, prepared.client_hash, prepared.backend_hash, c.now_ms, FreeFn(c));
  if (inserted.status != nat::InsertStatus::kInserted) {
    c.scheduler(l.slot).OnConnectionClosed(prepared.set_index);
  }
  return inserted;
}

// The first packet of the connection just inserted at `index` towards `b`, counted and sent to
// its backend.
template <typename F>
Action Opened(CoreState& c, const PacketIn& in, const typename F::Parsed& p,
              const ListenerConfig& l, std::uint32_t index, const BackendConfig& b) {
  const typename F::Entry& entry = TableOf<F>(c).entry(index);
  LearnFromClient<F>(c, in, p);
  ++c.opened;
  ListenerCounters& counters = c.listener(l.slot);
  counters.new_conns.Add(1);
  counters.active_conns.Add(1);
  c.backend_active[entry.backend].Add(1);
  c.new_conns.Add(1);
  c.active_conns.Add(1);
  if (entry.flags != 0) [[unlikely]] {
    StartSplice<F>(in, p, TableOf<F>(c).entry(index));
  }
  if constexpr (F::kIpv6) {
    if (entry.mode == nat::NatMode::kNat64) [[unlikely]] {
      return ToIpv4Backend(c, in, p, entry, b, &counters);
    }
  }
  nat::RewriteToBackend(in.frame, p, entry);
  return SendVia<F>(c, in, HopOf<F>(b), &counters);
}

// fnat opens from a local address and port of ours. Without its entry nothing could translate
// a reply back, so a full table drops.
template <typename F>
Action OpenFnat(CoreState& c, const PacketIn& in, const typename F::Parsed& p,
                const ListenerConfig& l, PreparedConn<F>& prepared) {
  if (!StartsConnection(p)) {
    c.counters->Drop(DropReason::kNotSynNoConn);
    return SendReset(c, in, p);
  }
  const std::optional<nat::InsertResult> inserted = InsertPrepared<F>(c, p, l, prepared);
  if (!inserted) {
    return Drop(c, prepared.drop);
  }
  if (inserted->status == nat::InsertStatus::kInserted) {
    return Opened<F>(c, in, p, l, inserted->index, *prepared.backend);
  }
  ReleaseLocal<F>(c, prepared.entry, prepared.backend);
  return Drop(c, inserted->status == nat::InsertStatus::kFull ? DropReason::kTableFull
                                                              : DropReason::kTupleConflict);
}

// dnat keeps the client's address. While the table is full (and for a minute after), flows
// without state are sent on statelessly, by the listener's Maglev table.
template <typename F>
Action OpenDnat(CoreState& c, const PacketIn& in, const typename F::Parsed& p,
                const ListenerConfig& l, PreparedConn<F>& prepared) {
  if (!StartsConnection(p)) {
    if (TableFullRecently(c)) {
      return ForwardStateless<F>(c, in, p, &l);
    }
    c.counters->Drop(DropReason::kNotSynNoConn);
    return SendReset(c, in, p);
  }
  const std::optional<nat::InsertResult> inserted = InsertPrepared<F>(c, p, l, prepared);
  if (!inserted) {
    return Drop(c, prepared.drop);
  }
  switch (inserted->status) {
    case nat::InsertStatus::kInserted:
      return Opened<F>(c, in, p, l, inserted->index, *prepared.backend);
    case nat::InsertStatus::kFull:
      c.table_full_seen = true;
      c.table_full_ms = c.now_ms;
      return ForwardStateless<F>(c, in, p, &l);
    case nat::InsertStatus::kExists:
    case nat::InsertStatus::kInvalid:
      break;
  }
  // The backend-side tuple belongs to a live connection: the same client port to another VIP
  // with the same backend.
  return Drop(c, DropReason::kTupleConflict);
}

// A packet of a tracked connection of listener `l` and backend `b`.
template <typename F>
Action ForwardHit(CoreState& c, const PacketIn& in, const typename F::Parsed& p,
                  const typename F::Hit& hit, const ListenerConfig& l, const BackendConfig& b) {
  typename F::Entry& e = *hit.entry;
  if constexpr (F::kIpv6) {
    if (e.mode == nat::NatMode::kNat64) [[unlikely]] {
      if (hit.dir != FlowDir::kFromClient) {  // its backend side speaks IPv4
        return Drop(c, DropReason::kNotLocal);
      }
      ListenerCounters& counters = Track(c, in, e, hit.dir, p.tcp_flags, l);
      if (e.flags != 0) [[unlikely]] {
        return ForwardSpliced<F>(c, in, p, hit, b, counters);
      }
      return ToIpv4Backend(c, in, p, e, b, &counters);
    }
  }
  ListenerCounters& counters = Track(c, in, e, hit.dir, p.tcp_flags, l);
  if (e.flags != 0) [[unlikely]] {
    return ForwardSpliced<F>(c, in, p, hit, b, counters);
  }
  nat::RewriteForConn(in.frame, p, e, hit.dir);
  if (hit.dir == FlowDir::kFromClient) {
    return SendVia<F>(c, in, HopOf<F>(b), &counters);
  }
  return SendVia<F>(c, in, TablesOf<F>(c).routes.Lookup(e.from_client.src_ip), &counters,
                    ClientHopOf<F>(c));
}

// A backend-side packet without a connection.
template <typename F>
Action BackendMiss(CoreState& c, const PacketIn& in, const typename F::Parsed& p, bool dnat_reply) {
  if (dnat_reply) {
    return TableFullRecently(c) ? ForwardStateless<F>(c, in, p, nullptr)
                                : Drop(c, DropReason::kNotLocal);
  }
  if (p.proto == nat::kIpProtoTcp) {
    c.counters->Drop(DropReason::kNotSynNoConn);
    return SendReset(c, in, p);
  }
  return Drop(c, DropReason::kNoConn);
}

// A backend's IPv4 packet to a local port of ours that a NAT64 connection holds (the port
// pool says so): the reply of the connection the IPv6 table holds under the IPv4-mapped tuple,
// translated into the IPv6 packet from the VIP to the client, in the buffer's headroom. Without
// that connection, a backend-side miss.
Action Nat64Reply(CoreState& c, const PacketIn& in, const ParsedPacket& p) {
  const Inet6::Hit hit = FindNat64(c, nat::FlowKeyOf(p));
  if (!hit.hit()) {
    return BackendMiss<Inet4>(c, in, p, false);
  }
  nat::ConnEntry6& e = *hit.entry;
  const ListenerConfig* l = c.config(e.listener);
  const BackendConfig* b = c.snapshot->backend(e.backend);
  if (l == nullptr || b == nullptr || b->dead) {
    Count(c, WorkerEvent::kConnsFlushed);
    EraseConn<Inet6>(c, hit.index);
    return BackendMiss<Inet4>(c, in, p, false);
  }
  const Headroom room = HeadroomOf(in);
  if (room.head < nat::kNat64Growth) {
    return Drop(c, DropReason::kTruncated);  // a buffer without headroom: not from a port
  }
  ListenerCounters& counters = Track(c, in, e, hit.dir, p.tcp_flags, *l);
  if (e.flags != 0) [[unlikely]] {
    const std::size_t header_len = p.payload_offset - p.l4_offset;
    std::uint8_t* tcp = in.frame.data() + p.l4_offset;
    const nat::ChecksumDelta shifted = SpliceFromBackend(e, tcp, header_len, p.tcp_flags);
    nat::StoreBe16(tcp + nat::kTcpChecksumOffset,
                   shifted.Apply(nat::LoadBe16(tcp + nat::kTcpChecksumOffset)));
  }
  const nat::Translated t = nat::TranslateToIpv6(room.buffer, room.head, p, e.vip(), e.client(),
                                                 nat::ChecksumDelta::Inverse(e.deltas.l4));
  if (t.length == 0) {
    return Drop(c, DropReason::kTruncated);
  }
  return SendTranslated<Inet6>(c, in, room.buffer, room.head, t,
                               c.snapshot->v6.routes.Lookup(e.from_client.src_ip), &counters,
                               &c.client_hop6);
}

template <typename F>
Action Verdict(CoreState& c, const PendingPacket& pending, const PacketIn& in,
               const typename F::Parsed& p, const typename F::Hit& hit, PreparedConn<F>& prepared) {
  if (hit.hit()) {
    // What ConfigSnapshot::ConnDead checks, with the listener and backend kept for the hit.
    const ListenerConfig* l = c.config(hit.entry->listener);
    const BackendConfig* b = c.snapshot->backend(hit.entry->backend);
    if (l != nullptr && b != nullptr && !b->dead) [[likely]] {
      return ForwardHit<F>(c, in, p, hit, *l, *b);
    }
    // Its listener or backend is gone or dead: forget it and treat the packet as new.
    if (pending.side == FlowDir::kFromClient && p.proto == nat::kIpProtoUdp) {
      Count(c, WorkerEvent::kConnsRescheduled);
    }
    Count(c, WorkerEvent::kConnsFlushed);
    EraseConn<F>(c, hit.index);
  }
  if (pending.side == FlowDir::kFromBackend) {
    return BackendMiss<F>(c, in, p, pending.dnat_reply);
  }
  const ListenerConfig& l = *pending.listener;
  ListenerCounters& counters = c.listener(l.slot);
  counters.rx_packets.Add(1);
  counters.rx_bytes.Add(in.frame.size());
  switch (l.open) {
    case OpenKind::kFnat:
      return OpenFnat<F>(c, in, p, l, prepared);
    case OpenKind::kDnat:
      return OpenDnat<F>(c, in, p, l, prepared);
  }
  return Drop(c, DropReason::kNoService);  // not reached: every kind is above
}

// ---- classification (stage 1)

// Whether this core processes a packet owned by `owner`; `out` says what becomes of it
// otherwise (handed off, or dropped if it was handed here already).
bool Mine(CoreState& c, std::uint32_t owner, bool handed_off, Action& out) {
  if (owner == c.index) {
    return true;
  }
  if (owner >= c.shared->workers || handed_off) {
    out = Drop(c, DropReason::kWrongCore);
    return false;
  }
  Count(c, WorkerEvent::kHandoffs);
  out = {.verb = Verb::kHandOff, .owner = static_cast<std::uint8_t>(owner)};
  return false;
}

bool ClientOwnedHere(const CoreState& c, std::uint8_t port, const ListenerConfig& l) {
  return l.rx_queue_may_own && port != kNoPortIndex && c.shared->ports[port].rss_affinity;
}

// Whether the IPv4 packet `p` to a local address on port `port` is for a port of NAT64
// connections.
bool Translated(const CoreState& c, std::uint8_t port, const ParsedPacket& p) {
  return c.translated_ports != 0 && port < c.pools.size() && c.pools[port].has_value() &&
         c.pools[port]->Translated({p.dst_ip, p.dst_port});
}

// Sorts a TCP or UDP packet: pending for the bulk lookup (a NAT64 reply for its own), or
// decided in `out`.
template <typename F>
void ClassifyL4(CoreState& c, std::uint16_t i, const PacketIn& in, const typename F::Parsed& p,
                bool handed_off, Action& out) {
  const FamilyTables<typename F::Ip>& tables = TablesOf<F>(c);
  const nat::AddressInfo dst = tables.addresses.Find(p.dst_ip);
  BurstState<F>& burst = BurstOf<F>(c);
  PendingPacket& pending = burst.pending[burst.count];
  pending = {nullptr, i, FlowDir::kFromClient, false};
  bool translated = false;
  std::uint32_t owner;
  if ((dst.kinds & nat::kAddressVip) != 0) {
    const std::uint32_t slot = tables.services.Find(p.dst_ip, p.dst_port, p.proto);
    pending.listener = c.config(slot);
    if (pending.listener == nullptr) {
      out = Drop(c, DropReason::kNoService);
      return;
    }
    owner = ClientOwnedHere(c, in.port, *pending.listener)
                ? c.index
                : ClientOwner(p.src_ip, p.src_port, c.shared->workers);
  } else if ((dst.kinds & nat::kAddressLocal) != 0) {
    pending.side = FlowDir::kFromBackend;
    owner = c.shared->steering.OwnerOf(p.dst_port);
    if constexpr (!F::kIpv6) {
      translated = Translated(c, dst.port, p);
    }
  } else if (tables.has_dnat && tables.addresses.Is(p.src_ip, nat::kAddressDnatBackend)) {
    pending.side = FlowDir::kFromBackend;
    pending.dnat_reply = true;
    owner = ClientOwner(p.dst_ip, p.dst_port, c.shared->workers);
  } else {
    out = Drop(c, DropReason::kNotLocal);
    return;
  }
  if (!Mine(c, owner, handed_off, out)) {
    return;
  }
  std::uint16_t k;
  if (translated) [[unlikely]] {
    // A NAT64 connection's reply: its connection is in the IPv6 table, not looked up here.
    k = static_cast<std::uint16_t>(kBurstSize - 1 - burst.translated++);
    burst.pending[k] = pending;
  } else {
    k = burst.count++;
    burst.keys[k] = nat::FlowKeyOf(p);
  }
  // Without the ICMP quote (the last member): only ICMP errors have one, and they never wait
  // for the bulk lookup. A third less to copy per packet.
  using Parsed = typename F::Parsed;
  static_assert(offsetof(Parsed, quote) + sizeof(Parsed::quote) == sizeof(Parsed));
  std::memcpy(static_cast<void*>(&burst.parsed[k]), &p, offsetof(Parsed, quote));
}

Action HandleArp(CoreState& c, const PacketIn& in, const ParsedPacket& p) {
  const std::optional<nat::ArpMessage> arp = nat::ParseArp(in.frame, p.l3_offset);
  if (!arp || in.port == kNoPortIndex) {
    return Drop(c, DropReason::kBadHeader);
  }
  const std::uint8_t port = in.port;
  const ConfigSnapshot& snap = *c.snapshot;
  const nat::AddressInfo target = snap.v4.addresses.Find(arp->target_ip);
  const bool ours =
      (target.kinds & nat::kAddressVip) != 0 ||
      ((target.kinds & (nat::kAddressLocal | nat::kAddressInterface)) != 0 && target.port == port);
  const bool on_link = arp->sender_ip != 0 && snap.v4.routes.ConnectedPort(arp->sender_ip) == port;
  const bool for_us = arp->op == nat::kArpReply || ours;
  if (on_link && (for_us || arp->sender_ip == arp->target_ip)) {
    if (for_us) {
      WriteLearnt(c, Wide(arp->sender_ip), arp->sender_mac, port);
    }
    Count(c, WorkerEvent::kArpLearned);
    ReportNeighbor(c, arp->sender_ip, arp->sender_mac, port, for_us);
  }
  if (arp->op == nat::kArpRequest && ours) {
    nat::MakeArpReply(in.frame, *arp, c.shared->ports[port].mac, p.l3_offset);
    Count(c, WorkerEvent::kArpRepliesSent);
    return Send(port);
  }
  if (arp->op == nat::kArpReply) {
    return Consume();  // its news went to the control thread
  }
  return Drop(c, DropReason::kNotLocal);
}

// Neighbour discovery, what ARP is for IPv4: a solicitation for one of our addresses is
// answered in place; what it and an advertisement say about an on-link sender is learnt, as
// HandleArp does.
Action HandleNeighbor(CoreState& c, std::uint16_t i, const PacketIn& in,
                      const nat::ParsedPacket6& p) {
  const std::optional<nat::NeighborMessage> m = nat::ParseNeighbor(in.frame, p);
  if (!m || in.port == kNoPortIndex) {
    return Drop(c, DropReason::kBadHeader);
  }
  const std::uint8_t port = in.port;
  const ConfigSnapshot& snap = *c.snapshot;
  const nat::AddressInfo target = snap.v6.addresses.Find(m->target);
  const bool ours =
      (target.kinds & nat::kAddressVip) != 0 ||
      ((target.kinds & (nat::kAddressLocal | nat::kAddressInterface)) != 0 && target.port == port);
  const bool advert = m->type == nat::kIcmpv6NeighborAdvertisement;
  // A solicitation names its sender as the source; an advertisement names the target.
  const nat::Ip6& sender = advert ? m->target : m->source;
  const bool for_us = advert || ours;
  if (m->link_layer.has_value() && !nat::IsUnspecified(sender) &&
      snap.v6.routes.ConnectedPort(sender) == port && for_us) {
    WriteLearnt(c, sender, *m->link_layer, port);
    Count(c, WorkerEvent::kArpLearned);
    ReportNeighbor(c, sender, *m->link_layer, port, true);
  }
  if (!advert && ours) {
    nat::MacAddress from;
    std::memcpy(from.data(), in.frame.data() + 6, from.size());
    const std::size_t room = c.tailroom_of != nullptr ? c.tailroom_of(c.buffers[i]) : 0;
    if (in.frame.size() + room < nat::kNdpFrameBytes) {
      return Drop(c, DropReason::kTruncated);
    }
    const std::size_t length = nat::AnswerSolicitation({in.frame.data(), nat::kNdpFrameBytes}, *m,
                                                       from, c.shared->ports[port].mac);
    Count(c, WorkerEvent::kArpRepliesSent);
    return Send(port, length);
  }
  if (advert) {
    return Consume();  // its news went to the control thread
  }
  return Drop(c, DropReason::kNotLocal);
}

template <typename F>
Action HandleEcho(CoreState& c, const PacketIn& in, const typename F::Parsed& p) {
  const std::uint8_t kinds = TablesOf<F>(c).addresses.Find(p.dst_ip).kinds;
  if ((kinds & (nat::kAddressVip | nat::kAddressLocal | nat::kAddressInterface)) == 0 ||
      in.port == kNoPortIndex) {
    return Drop(c, DropReason::kNotLocal);
  }
  if constexpr (F::kIpv6) {
    if (p.icmp_type != nat::kIcmpv6EchoRequest || p.ext_headers != 0) {
      return Drop(c, DropReason::kUnsupportedIcmp);
    }
    nat::MakeIcmpv6EchoReply(in.frame, p);
  } else {
    if (p.icmp_type != nat::kIcmpEchoRequest) {
      return Drop(c, DropReason::kUnsupportedIcmp);
    }
    nat::MakeIcmpEchoReply(in.frame, p.l3_offset, p.l4_offset);
  }
  Count(c, WorkerEvent::kIcmpEchoReplies);
  return Send(in.port);
}

// The owner of the connection an ICMP error is about, judged by the packet it quotes.
template <typename F>
std::optional<std::uint32_t> IcmpOwner(const CoreState& c, const PacketIn& in,
                                       const typename F::Parsed& p) {
  const FamilyTables<typename F::Ip>& tables = TablesOf<F>(c);
  const auto& q = p.quote;
  const std::uint8_t kinds = tables.addresses.Find(q.src_ip).kinds;
  if ((kinds & nat::kAddressLocal) != 0) {
    return c.shared->steering.OwnerOf(q.src_port);  // fnat: our packet to a backend
  }
  if ((kinds & nat::kAddressVip) != 0) {  // our packet to a client
    const ListenerConfig* l = c.config(tables.services.Find(q.src_ip, q.src_port, q.proto));
    if (l == nullptr) {
      return std::nullopt;
    }
    return ClientOwnedHere(c, in.port, *l) ? c.index
                                           : ClientOwner(q.dst_ip, q.dst_port, c.shared->workers);
  }
  if (tables.has_dnat) {  // dnat: the client's packet, as forwarded to a backend
    return ClientOwner(q.src_ip, q.src_port, c.shared->workers);
  }
  return std::nullopt;
}

// An ICMPv4 error from the backend side that no IPv4 connection knows: about a NAT64
// connection if the IPv6 table holds its quote's tuple IPv4-mapped, then translated into the
// ICMPv6 error the client must see, quoting its own packet (RFC 7915 section 4.2).
[[gnu::noinline]] Action Nat64IcmpToClient(CoreState& c, const PacketIn& in,
                                           const ParsedPacket& p) {
  const Inet6::Hit hit = FindNat64(c, nat::IcmpQuoteReplyKey(p));
  if (!hit.hit() || c.snapshot->ConnDead(hit.entry->listener, hit.entry->backend)) {
    return Drop(c, DropReason::kIcmpNoConn);
  }
  const nat::ConnEntry6& e = *hit.entry;
  const Headroom room = HeadroomOf(in);
  const nat::Translated t = nat::TranslateIcmpErrorToIpv6(
      room.buffer, room.head, p, e.from_client.dst_ip, e.from_client.src_ip, SrcOf(e.from_client),
      DstOf(e.from_client));
  if (t.length == 0) {
    return Drop(c, DropReason::kUnsupportedIcmp);
  }
  Count(c, WorkerEvent::kIcmpErrorsTranslated);
  return SendTranslated<Inet6>(c, in, room.buffer, room.head, t,
                               c.snapshot->v6.routes.Lookup(e.from_client.src_ip),
                               &c.listener(e.listener));
}

// An ICMPv6 error from the client about a NAT64 connection, as the ICMPv4 error its IPv4
// backend must see, quoting the backend's own packet (RFC 7915 section 5.2).
[[gnu::noinline]] Action Nat64IcmpToBackend(CoreState& c, const PacketIn& in,
                                            const nat::ParsedPacket6& p, const nat::ConnEntry6& e,
                                            FlowDir dir) {
  if (dir != FlowDir::kFromClient) {
    return Drop(c, DropReason::kIcmpNoConn);
  }
  const nat::Endpoint4 local = V4Of(e.local());
  const nat::Endpoint4 backend = V4Of(e.backend_endpoint());
  const nat::Translated t =
      nat::TranslateIcmpErrorToIpv4(in.frame, p, local.ip, backend.ip, backend, local);
  if (t.length == 0) {
    return Drop(c, DropReason::kUnsupportedIcmp);
  }
  Count(c, WorkerEvent::kIcmpErrorsTranslated);
  const BackendConfig* b = c.snapshot->backend(e.backend);
  return SendTranslated<Inet4>(c, in, in.frame, 0, t, b != nullptr ? b->next_hop : nat::NextHop{},
                               &c.listener(e.listener));
}

// An ICMP error about a tracked connection (a "fragmentation needed" or Packet Too Big among
// them: path MTU discovery through the LB), translated for the other side of it.
template <typename F>
Action HandleIcmpError(CoreState& c, const PacketIn& in, const typename F::Parsed& p,
                       bool handed_off) {
  const std::optional<std::uint32_t> owner = IcmpOwner<F>(c, in, p);
  if (!owner) {
    return Drop(c, DropReason::kIcmpNoConn);
  }
  Action handed;
  if (!Mine(c, *owner, handed_off, handed)) {
    return handed;
  }
  const auto hit = TableOf<F>(c).Lookup(nat::IcmpQuoteReplyKey(p), c.now_ms);
  if constexpr (!F::kIpv6) {
    if (!hit.hit() && c.table6.size() != 0) {
      return Nat64IcmpToClient(c, in, p);
    }
  }
  if (!hit.hit() || c.snapshot->ConnDead(hit.entry->listener, hit.entry->backend)) {
    return Drop(c, DropReason::kIcmpNoConn);
  }
  const typename F::Entry& e = *hit.entry;
  if constexpr (F::kIpv6) {
    if (e.mode == nat::NatMode::kNat64) {
      return Nat64IcmpToBackend(c, in, p, e, hit.dir);
    }
  }
  typename F::Hop hop;
  if (hit.dir == FlowDir::kFromBackend) {
    nat::TranslateIcmpErrorToClient(in.frame, p, e);
    hop = TablesOf<F>(c).routes.Lookup(e.from_client.src_ip);
  } else {
    nat::TranslateIcmpErrorToBackend(in.frame, p, e);
    hop = BackendHop<F>(c, e);
  }
  Count(c, WorkerEvent::kIcmpErrorsTranslated);
  return SendVia<F>(c, in, hop, &c.listener(e.listener));
}

// Stage 1 for an IPv6 packet (its Ethernet header parsed as `eth`).
void Classify6(CoreState& c, std::uint16_t i, const PacketIn& in, const ParsedPacket& eth,
               bool handed_off, Action& out) {
  const nat::ParsedPacket6 p = nat::ParseIpv6(in.frame, eth.l3_offset);
  switch (p.kind) {
    case PacketKind::kTcp:
    case PacketKind::kUdp:
      ClassifyL4<Inet6>(c, i, in, p, handed_off, out);
      return;
    case PacketKind::kNeighbor:
      out = HandleNeighbor(c, i, in, p);
      return;
    case PacketKind::kIcmpEcho:
      out = HandleEcho<Inet6>(c, in, p);
      return;
    case PacketKind::kIcmpError:
      out = HandleIcmpError<Inet6>(c, in, p, handed_off);
      return;
    case PacketKind::kArp:
    case PacketKind::kDrop:
      break;
  }
  out = Drop(c, p.drop);
}

// Stage 1 for packet `i`: its action, unless it waits for the bulk lookup.
void Classify(CoreState& c, std::uint16_t i, const PacketIn& in, bool handed_off, Action& out) {
  const ParsedPacket p = nat::Parse(in.frame, {.verify_ipv4_checksum = !in.ipv4_checksum_verified});
  if (p.kind == PacketKind::kTcp || p.kind == PacketKind::kUdp) [[likely]] {
    ClassifyL4<Inet4>(c, i, in, p, handed_off, out);
    return;
  }
  switch (p.kind) {
    case PacketKind::kTcp:
    case PacketKind::kUdp:
      break;  // classified above
    case PacketKind::kArp:
      out = HandleArp(c, in, p);
      return;
    case PacketKind::kIcmpEcho:
      out = HandleEcho<Inet4>(c, in, p);
      return;
    case PacketKind::kIcmpError:
      out = HandleIcmpError<Inet4>(c, in, p, handed_off);
      return;
    case PacketKind::kNeighbor:
      break;
    case PacketKind::kDrop:
      if (p.ethertype == nat::kEthTypeIpv6) {
        Classify6(c, i, in, p, handed_off, out);
        return;
      }
      break;
  }
  out = Drop(c, p.drop);
}

// Stages 2 and 3 for the packets of one family that wait for the bulk lookup.
template <typename F>
void DecidePending(CoreState& c, std::span<PacketIn> packets) {
  BurstState<F>& burst = BurstOf<F>(c);
  auto& table = TableOf<F>(c);
  table.LookupBulk(std::span(burst.keys.data(), burst.count),
                   std::span(burst.hits.data(), burst.count), c.now_ms);
  std::uint64_t opening_filter = 0;
  std::uint32_t repeats = 0;  // bit k: an earlier packet of the burst opens packet k's connection
  static_assert(kBurstSize <= 32);
  std::array<std::uint8_t, kBurstSize> opens;  // the packets that open a connection, in order
  std::uint32_t opening = 0;
  for (std::uint16_t k = 0; k < burst.count; ++k) {
    PreparedConn<F>& prepared = burst.prepared[k];
    prepared.ready = false;
    if (!Opens(burst.pending[k], burst.parsed[k], burst.hits[k])) {
      continue;
    }
    if (OpensEarlierInBurst(burst, k, opening_filter)) {
      repeats |= 1u << k;
      continue;
    }
    const ListenerConfig& l = *burst.pending[k].listener;
    prepared.persist = {};
    if (l.persist_ticks != 0) {  // its client's entry, fetched while the others are picked
      prepared.persist = c.shared->persist->KeyOf(l.slot, burst.parsed[k].src_ip);
      c.shared->persist->Prefetch(prepared.persist);
    }
    prepared.ready = true;  // for OpensEarlierInBurst; PrepareConn fills it in below
    opens[opening++] = static_cast<std::uint8_t>(k);
  }
  for (std::uint32_t n = 0; n < opening; ++n) {
    const std::uint8_t k = opens[n];
    PrepareConn<F>(c, burst.parsed[k], *burst.pending[k].listener, n, burst.prepared[k]);
  }
  for (std::uint16_t k = 0; k < burst.count; ++k) {
    if (repeats != 0 && ((repeats >> k) & 1u) != 0) [[unlikely]] {
      // The flow's first packet in this burst opened it (or failed to): look again.
      burst.hits[k] = table.Lookup(burst.keys[k], c.now_ms);
    }
    const PendingPacket& pending = burst.pending[k];
    c.actions[pending.index] = Verdict<F>(c, pending, packets[pending.index], burst.parsed[k],
                                          burst.hits[k], burst.prepared[k]);
  }
  if constexpr (!F::kIpv6) {
    for (std::uint16_t k = kBurstSize - burst.translated; k < kBurstSize; ++k) {
      const PendingPacket& pending = burst.pending[k];
      c.actions[pending.index] = Nat64Reply(c, packets[pending.index], burst.parsed[k]);
    }
  }
}

}  // namespace

namespace {

// The port's pool of `F` local addresses on this core, if it has any.
template <typename F>
Status AddPool(CoreState& core, const PortConfig& port, const std::vector<typename F::Ip>& locals) {
  auto& pools = PoolsOf<F>(core);
  if (locals.empty()) {
    pools.emplace_back(std::nullopt);
    return Status::Ok();
  }
  Result<typename F::Pool> pool = F::Pool::Create(locals, core.index, core.shared->workers);
  if (!pool.ok()) {
    return Error(pool.status().code(), "port {}: {}", port.name, pool.status().message());
  }
  pools.emplace_back(std::move(*pool));
  return Status::Ok();
}

}  // namespace

Status InitCore(CoreState& core, std::uint32_t index, const PipelineShared& shared,
                WorkerCounters& counters, const std::vector<PortConfig>& ports,
                std::uint32_t listener_slots, std::uint32_t backend_slots) {
  core.index = index;
  core.shared = &shared;
  core.counters = &counters;
  core.pools.clear();
  core.pools6.clear();
  for (const PortConfig& port : ports) {
    std::vector<std::uint32_t> locals;
    std::vector<nat::Ip6> locals6;
    for (const IpAddress& local : port.local_addresses) {
      if (local.is_v4()) {
        locals.push_back(local.v4());
      } else {
        locals6.push_back(Ip6Of(local));
      }
    }
    FULCRUM_RETURN_IF_ERROR(AddPool<Inet4>(core, port, locals));
    FULCRUM_RETURN_IF_ERROR(AddPool<Inet6>(core, port, locals6));
  }
  core.listener_capacity = listener_slots;
  core.backend_capacity = backend_slots;
  core.listener_counters = std::make_unique<ListenerCounters[]>(listener_slots);
  core.backend_active = std::make_unique<Counter[]>(backend_slots);
  core.scheduling = std::make_unique<CoreState::Scheduling[]>(listener_slots);
  return Status::Ok();
}

std::span<const Action> DecideBurst(CoreState& c, std::span<PacketIn> packets, bool handed_off) {
  const auto count = static_cast<std::uint16_t>(packets.size());
  if (c.snapshot == nullptr) {
    for (std::uint16_t i = 0; i < count; ++i) {
      c.actions[i] = Drop(c, DropReason::kNoService);
    }
    return {c.actions.data(), count};
  }
  c.burst.count = 0;
  c.burst.translated = 0;
  c.client_hop.neighbor = nullptr;
  c.client_hop6.neighbor = nullptr;
  c.burst6.count = 0;
  for (std::uint16_t i = 0; i < count && i < kPrefetchAhead; ++i) {
    __builtin_prefetch(packets[i].frame.data());
  }
  for (std::uint16_t i = 0; i < count; ++i) {
    if (i + kPrefetchAhead < count) {
      __builtin_prefetch(packets[i + kPrefetchAhead].frame.data());
    }
    Classify(c, i, packets[i], handed_off, c.actions[i]);
  }
  DecidePending<Inet4>(c, packets);
  if (c.burst6.count != 0) {
    DecidePending<Inet6>(c, packets);
  }
  return {c.actions.data(), count};
}

namespace {

template <typename F>
void Release(CoreState& c, const typename F::Entry& e) {
  const BackendConfig* b = c.snapshot != nullptr ? c.snapshot->backend(e.backend) : nullptr;
  if (e.mode != nat::NatMode::kDnat) {
    ReleaseLocal<F>(c, e, b);
  }
  if (e.listener < c.listener_capacity) {
    c.listener(e.listener).active_conns.Sub(1);
    CoreState::Scheduling& s = c.scheduling[e.listener];
    if (s.config != nullptr && b != nullptr && b->listener_slot == e.listener) {
      s.state.OnConnectionClosed(b->set_index);
    }
  }
  if (e.backend < c.backend_capacity) {
    c.backend_active[e.backend].Sub(1);
  }
  c.active_conns.Sub(1);
}

}  // namespace

void ReleaseConn(CoreState& c, const nat::ConnEntry& e) { Release<Inet4>(c, e); }
void ReleaseConn(CoreState& c, const nat::ConnEntry6& e) { Release<Inet6>(c, e); }

namespace {

void Rebind(CoreState& c, std::uint32_t slot, const ListenerConfig* l) {
  if (slot >= c.listener_capacity) {
    return;
  }
  CoreState::Scheduling& s = c.scheduling[slot];
  if (s.config == l) {
    return;  // shared with the snapshot before: its state stays as it is
  }
  if (l == nullptr) {
    s.state.Unbind();
  } else {
    c.spare_scheduler.Reset(l->set, c.index);
    if (s.config != nullptr) {
      c.spare_scheduler.InheritConnections(s.state);
    }
    std::swap(s.state, c.spare_scheduler);
  }
  s.config = l;
}

}  // namespace

void AdoptSnapshot(CoreState& c, const ConfigSnapshot* next) {
  if (c.snapshot != nullptr && next->base_generation == c.snapshot->generation) {
    for (const std::uint32_t slot : next->changed_listener_slots) {
      Rebind(c, slot, next->listener(slot));
    }
  } else {
    for (std::uint32_t slot = 0; slot < c.listener_capacity; ++slot) {
      Rebind(c, slot, next->listener(slot));
    }
  }
  c.snapshot = next;
}

}  // namespace fulcrum::dataplane
