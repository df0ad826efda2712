#include "dataplane/pipeline.h"

#include <algorithm>
#include <cstring>
#include <span>

#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "dataplane/handoff.h"
#include "nat/packet.h"
#include "nat/rewrite.h"
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
// Room kept in the worker -> control ring for replies the control thread waits for.
constexpr unsigned kReplyReserve = 16;
constexpr unsigned kMessagesPerPass = 8;
// The control ring is served every kMessagePasses passes: the control thread can wait a few
// microseconds, and a burst should not pay for an empty ring every time.
constexpr std::uint32_t kMessagePasses = 8;

// Expiry must keep pace with opening: with k entries examined per connection opened, a full
// round of the table's used part takes at most 1/k of the time it took to fill it, so a
// connection lingers at most that long past its timeout and the table holds at most
// k / (k - 1) of the live connections (4/3 here).
constexpr std::uint32_t kExpirePerOpen = 4;
constexpr std::size_t kPrefetchAhead = 3;
constexpr std::uintptr_t kTxOnlyTag = 1;
constexpr std::uint32_t kHandoffDrainBursts = 8;

std::span<std::uint8_t> FrameOf(rte_mbuf* m) {
  return {rte_pktmbuf_mtod(m, std::uint8_t*), rte_pktmbuf_data_len(m)};
}

// The port index a packet arrived on; kNoPortIndex for a port the pipeline does not know.
std::uint8_t PortIndexOf(const PipelineWorker& pw, const rte_mbuf* m) {
  return m->port < kMaxPortIds ? pw.shared->port_index[m->port] : kNoPortIndex;
}

void Drop(PipelineWorker& pw, rte_mbuf* m, DropReason reason) {
  pw.ctx->counters.Drop(reason);
  rte_pktmbuf_free(m);
}

void Count(PipelineWorker& pw, WorkerEvent event, std::uint64_t n = 1) {
  pw.ctx->counters.Count(event, n);
}

// ---- hand-off
//
// Order: a flow's packets reach this core from one rx queue (docs/dataplane.md, "Order"), so
// they are staged, enqueued and dequeued in arrival order, and the owner processes them in
// ring order; nothing ever overtakes on this path. What cannot be handed over is dropped and
// counted by the ring it was meant for: handoff_ring_full (to the owner) or
// tx_handoff_ring_full (to the core that transmits on the egress port).

DropReason HandoffDrop(std::uintptr_t raw) {
  return (raw & kTxOnlyTag) != 0 ? DropReason::kTxHandoffRingFull : DropReason::kHandoffRingFull;
}

rte_mbuf* Untagged(std::uintptr_t raw) { return reinterpret_cast<rte_mbuf*>(raw & ~kTxOnlyTag); }

// `m` may carry kTxOnlyTag.
void Stage(PipelineWorker& pw, std::uint32_t owner, rte_mbuf* m) {
  PipelineWorker::Staged& staged = pw.staged[owner];
  if (staged.count == staged.packets.size()) {
    const auto raw = reinterpret_cast<std::uintptr_t>(m);
    Drop(pw, Untagged(raw), HandoffDrop(raw));
    return;
  }
  staged.packets[staged.count++] = m;
}

void FlushStaged(PipelineWorker& pw) {
  for (std::uint32_t w = 0; w < pw.staged.size(); ++w) {
    PipelineWorker::Staged& staged = pw.staged[w];
    if (staged.count == 0) {
      continue;
    }
    const unsigned sent = rte_ring_enqueue_burst(
        pw.handoff_out[w], reinterpret_cast<void* const*>(staged.packets.data()), staged.count,
        nullptr);
    for (unsigned i = sent; i < staged.count; ++i) {
      const auto raw = reinterpret_cast<std::uintptr_t>(staged.packets[i]);
      Drop(pw, Untagged(raw), HandoffDrop(raw));
    }
    staged.count = 0;
  }
}

// ---- transmission

// Sends `m` out of port index `port`, through another core when this one has no queue there.
void Transmit(PipelineWorker& pw, std::uint8_t port, rte_mbuf* m) {
  const PortView& view = pw.shared->ports[port];
  if (pw.ctx->tx[view.port_id].queue_id != kNoQueue) {
    EnqueueTx(*pw.ctx, view.port_id, m);
    return;
  }
  if (view.tx_worker == pw.index) {
    Drop(pw, m, DropReason::kNoTxQueue);
    return;
  }
  m->hash.usr = view.port_id;
  Stage(pw, view.tx_worker,
        reinterpret_cast<rte_mbuf*>(reinterpret_cast<std::uintptr_t>(m) | kTxOnlyTag));
  Count(pw, WorkerEvent::kTxHandoffs);
}

// ---- neighbours

std::uint32_t LearntSlot(std::uint32_t ip) {
  return static_cast<std::uint32_t>(nat::Mix64(ip) & (kLearntSlots - 1));
}

void WriteLearnt(PipelineWorker& pw, std::uint32_t ip, const nat::MacAddress& mac,
                 std::uint8_t port) {
  LearntNeighbor& slot = pw.learnt[LearntSlot(ip)];
  const std::uint32_t seq = slot.seq.load(std::memory_order_relaxed);
  slot.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  slot.ip.store(ip, std::memory_order_relaxed);
  slot.mac_port.store(PackMac(mac) << 8 | port, std::memory_order_relaxed);
  slot.at_ms.store(pw.now_ms, std::memory_order_relaxed);
  slot.seq.store(seq + 2, std::memory_order_release);
}

// A neighbour some worker learnt in the last kLearntTtlMs (rare path: the NeighborMap missed).
bool ReadLearnt(const PipelineWorker& pw, std::uint32_t ip, nat::Neighbor& out) {
  const std::uint32_t index = LearntSlot(ip);
  for (const PipelineWorker* other : pw.shared->all) {
    const LearntNeighbor& slot = other->learnt[index];
    const std::uint32_t before = slot.seq.load(std::memory_order_acquire);
    const std::uint32_t slot_ip = slot.ip.load(std::memory_order_relaxed);
    const std::uint64_t mac_port = slot.mac_port.load(std::memory_order_relaxed);
    const std::uint32_t at = slot.at_ms.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (before % 2 != 0 || slot.seq.load(std::memory_order_relaxed) != before || slot_ip != ip ||
        before == 0 || pw.now_ms - at >= kLearntTtlMs) {
      continue;
    }
    out.mac = UnpackMac(mac_port >> 8);
    out.port = static_cast<std::uint8_t>(mac_port);
    return true;
  }
  return false;
}

// Reports to the control thread; refused (and counted) when only the reply reserve is left.
void Report(PipelineWorker& pw, Message message) {
  if (rte_ring_free_count(pw.to_control) <= kReplyReserve ||
      rte_ring_enqueue_elem(pw.to_control, &message, sizeof(Message)) != 0) {
    Count(pw, WorkerEvent::kControlRingFull);
  }
}

void AskResolve(PipelineWorker& pw, const nat::NextHop& hop) {
  PipelineWorker::Asked& asked = pw.asked[nat::Mix64(hop.ip) % pw.asked.size()];
  if (asked.ip == hop.ip && pw.now_ms - asked.at_ms < kResolveIntervalMs) {
    return;
  }
  asked = {hop.ip, pw.now_ms};
  Count(pw, WorkerEvent::kArpResolveRequests);
  Report(pw, Message{.type = MessageType::kResolve, .port = hop.port, .ip = hop.ip});
}

// Addresses the frame to `hop` and transmits it; false (dropped) without route or MAC.
bool SendVia(PipelineWorker& pw, rte_mbuf* m, const nat::NextHop& hop, ListenerCounters* counters) {
  if (!hop.ok()) {
    Drop(pw, m, DropReason::kNoRoute);
    return false;
  }
  nat::Neighbor neighbor;
  const nat::Neighbor* found = pw.neighbors != nullptr ? pw.neighbors->Find(hop.ip) : nullptr;
  if (found != nullptr) {
    neighbor = *found;
  } else if (!ReadLearnt(pw, hop.ip, neighbor)) {
    AskResolve(pw, hop);
    Drop(pw, m, DropReason::kArpUnresolved);
    return false;
  }
  std::uint8_t* eth = rte_pktmbuf_mtod(m, std::uint8_t*);
  std::memcpy(eth, neighbor.mac.data(), 6);
  std::memcpy(eth + 6, pw.shared->ports[hop.port].mac.data(), 6);
  if (counters != nullptr) {
    counters->tx_packets.Add(1);
    counters->tx_bytes.Add(rte_pktmbuf_pkt_len(m));
  }
  Transmit(pw, hop.port, m);
  return true;
}

// Turns a TCP segment nobody may receive into the reset that answers it and sends it back.
void SendReset(PipelineWorker& pw, rte_mbuf* m, const ParsedPacket& p) {
  const std::size_t length = nat::MakeTcpReset(FrameOf(m), p);
  if (length == 0) {
    rte_pktmbuf_free(m);
    return;
  }
  const std::uint8_t port = PortIndexOf(pw, m);
  if (port == kNoPortIndex) {
    rte_pktmbuf_free(m);
    return;
  }
  rte_pktmbuf_trim(m, static_cast<std::uint16_t>(rte_pktmbuf_pkt_len(m) - length));
  Count(pw, WorkerEvent::kTcpResetsSent);
  Transmit(pw, port, m);
}

// A new connection from an on-link client whose MAC nobody knows yet (after a restart, the
// client's ARP cache still holds ours, so it will not ARP): its frame's source MAC is the
// client's, and the reply will need it within a millisecond, long before the control thread
// could resolve it. Kept in this core's learnt table, and the control thread is asked to
// confirm it with ARP.
void LearnFromClient(PipelineWorker& pw, const rte_mbuf* m, const ParsedPacket& p) {
  if (pw.neighbors != nullptr && pw.neighbors->Find(p.src_ip) != nullptr) {
    return;
  }
  const std::uint8_t port = PortIndexOf(pw, m);
  nat::Neighbor known;
  if (port == kNoPortIndex || pw.snapshot->routes.ConnectedPort(p.src_ip) != port ||
      ReadLearnt(pw, p.src_ip, known)) {
    return;
  }
  nat::MacAddress mac;
  std::memcpy(mac.data(), rte_pktmbuf_mtod(m, const std::uint8_t*) + 6, mac.size());
  WriteLearnt(pw, p.src_ip, mac, port);
  AskResolve(pw, nat::NextHop{p.src_ip, port});
}

// ---- connections

// What expiry, sweeps and replacement do when a connection ends.
void OnConnFreed(PipelineWorker& pw, const ConnEntry& e) {
  if (e.mode == nat::NatMode::kFnat) {
    const BackendConfig* b = pw.snapshot != nullptr ? pw.snapshot->backend(e.backend) : nullptr;
    // The pool of the port the connection left by; every pool refuses a foreign address.
    bool released = b != nullptr && b->next_hop.ok() && pw.pools[b->next_hop.port].has_value() &&
                    pw.pools[b->next_hop.port]->Release(e.local());
    for (std::size_t i = 0; !released && i < pw.pools.size(); ++i) {
      released = pw.pools[i].has_value() && pw.pools[i]->Release(e.local());
    }
  }
  if (e.listener < pw.listener_capacity) {
    pw.listener(e.listener).active_conns.Sub(1);
  }
  if (e.backend < pw.backend_capacity) {
    pw.backend_active[e.backend].Sub(1);
  }
  pw.active_conns.Sub(1);
  if (pw.snapshot == nullptr) {
    return;
  }
  const ListenerConfig* l = pw.snapshot->listener(e.listener);
  const BackendConfig* b = pw.snapshot->backend(e.backend);
  if (l != nullptr && b != nullptr && b->listener_slot == e.listener) {
    l->schedulers[pw.index].OnConnectionClosed(b->set_index);
  }
}

void EraseConn(PipelineWorker& pw, std::uint32_t index) {
  OnConnFreed(pw, pw.table.entry(index));
  pw.table.Erase(index);
}

auto FreeFn(PipelineWorker& pw) {
  return [&pw](const ConnEntry& e) { OnConnFreed(pw, e); };
}

// The next hop of a packet leaving towards the backend of `e`.
nat::NextHop BackendHop(const PipelineWorker& pw, const ConnEntry& e) {
  const BackendConfig* b = pw.snapshot->backend(e.backend);
  return b != nullptr ? b->next_hop : nat::NextHop{};
}

// ---- per-packet work of the burst

// Forwards a dnat packet without state (the table is full): to a Maglev-chosen backend, or
// from a backend as its service.
void ForwardStateless(PipelineWorker& pw, rte_mbuf* m, const ParsedPacket& p,
                      const ListenerConfig* l) {
  const ConfigSnapshot& snap = *pw.snapshot;
  if (l != nullptr) {
    const std::uint16_t index = l->set.PickStateless(nat::FlowKeyOf(p));
    if (index == nat::kNoBackend) {
      Drop(pw, m, DropReason::kNoBackend);
      return;
    }
    const BackendConfig* b = snap.backend(l->backend_slots[index]);
    const nat::Endpoint4 backend = l->set.backends()[index].endpoint;
    nat::RewriteIpv4(FrameOf(m), p, {p.src_ip, p.src_port}, backend);
    Count(pw, WorkerEvent::kTableFullFallbacks);
    SendVia(pw, m, b != nullptr ? b->next_hop : nat::NextHop{}, &pw.listener(l->slot));
    return;
  }
  const DnatService* service =
      snap.dnat_services.Find(nat::ServiceTable::Key(p.src_ip, p.src_port, p.proto));
  if (service == nullptr || service->ambiguous) {
    Drop(pw, m, DropReason::kNotLocal);
    return;
  }
  nat::RewriteIpv4(FrameOf(m), p, service->vip, {p.dst_ip, p.dst_port});
  Count(pw, WorkerEvent::kTableFullFallbacks);
  SendVia(pw, m, snap.routes.Lookup(p.dst_ip), nullptr);
}

bool TableFullRecently(const PipelineWorker& pw) {
  return pw.table_full_seen && pw.now_ms - pw.table_full_ms < kTableFullWindowMs;
}

// Whether Verdict will open a connection for the packet: a client-side miss that may start one.
bool Opens(const PendingPacket& pending, const ParsedPacket& p, const ConnHit& hit) {
  return !hit.hit() && pending.side == FlowDir::kFromClient &&
         (p.proto == nat::kIpProtoUdp || nat::ClassifyTcpFlags(p.tcp_flags) == nat::TcpEvent::kSyn);
}

// Whether an earlier packet of the burst opens the connection packet `i` would open (the first
// datagrams of a UDP flow, a retransmitted SYN): that one opens it and this one follows it as
// a hit, instead of a second connection for one tuple. `filter` has a bit per opening key,
// so that only a likely repeat pays for comparing keys.
bool OpensEarlierInBurst(const BurstState& burst, std::uint16_t i, std::uint64_t& filter) {
  const FlowKey& key = burst.keys[i];
  const std::uint64_t bit =
      std::uint64_t{1} << ((key.src_ip ^ key.src_port ^ (key.src_port >> 6) ^ key.dst_port) & 63);
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

// Picks the backend and the local port of a new connection, builds its entry and prefetches
// what inserting it will touch (`ahead`: how many inserts come before it).
void PrepareConn(PipelineWorker& pw, const ParsedPacket& p, const ListenerConfig& l,
                 std::uint32_t ahead, PreparedConn& out) {
  out.ready = true;
  out.drop = DropReason::kNone;
  nat::SchedulerState& scheduler = l.schedulers[pw.index];
  out.set_index = scheduler.Pick(nat::FlowKeyOf(p));
  if (out.set_index == nat::kNoBackend) {
    out.drop = DropReason::kNoBackend;
    return;
  }
  const std::uint32_t backend_slot = l.backend_slots[out.set_index];
  const BackendConfig& b = pw.snapshot->backend_by_slot[backend_slot];
  const nat::Endpoint4 client{p.src_ip, p.src_port};
  if (l.mode == nat::NatMode::kFnat) {
    std::optional<nat::Endpoint4> local;
    if (b.next_hop.ok() && pw.pools[b.next_hop.port].has_value()) {
      local = pw.pools[b.next_hop.port]->Allocate();
    }
    if (!local) {
      scheduler.OnConnectionClosed(out.set_index);
      out.drop = DropReason::kPortExhausted;
      return;
    }
    out.entry = nat::MakeFnatEntry(p.proto, client, l.vip, *local, b.endpoint);
  } else {
    out.entry = nat::MakeDnatEntry(p.proto, client, l.vip, b.endpoint);
  }
  out.entry.listener = l.slot;
  out.entry.backend = backend_slot;
  out.entry.tcp_state =
      p.proto == nat::kIpProtoTcp
          ? nat::TcpNextState(nat::TcpState::kNone, FlowDir::kFromClient, p.tcp_flags)
          : nat::TcpState::kNone;
  out.entry.timeout_ms = l.ConnTimeoutMs(out.entry.tcp_state);
  out.client_hash = pw.table.Hash(out.entry.from_client);
  out.backend_hash = pw.table.Hash(out.entry.from_backend);
  pw.table.PrefetchInsert(out.client_hash, out.backend_hash, ahead);
}

// Opens a connection for a client-side packet without one, from `prepared` when the burst
// prepared it.
void OpenConn(PipelineWorker& pw, rte_mbuf* m, const ParsedPacket& p, const ListenerConfig& l,
              PreparedConn& prepared) {
  const bool tcp = p.proto == nat::kIpProtoTcp;
  if (tcp && nat::ClassifyTcpFlags(p.tcp_flags) != nat::TcpEvent::kSyn) {
    if (l.mode == nat::NatMode::kDnat && TableFullRecently(pw)) {
      ForwardStateless(pw, m, p, &l);
      return;
    }
    pw.ctx->counters.Drop(DropReason::kNotSynNoConn);
    SendReset(pw, m, p);
    return;
  }
  if (!prepared.ready) {
    PrepareConn(pw, p, l, 0, prepared);
  }
  prepared.ready = false;
  if (prepared.drop != DropReason::kNone) {
    Drop(pw, m, prepared.drop);
    return;
  }
  const ConnEntry& entry = prepared.entry;
  nat::SchedulerState& scheduler = l.schedulers[pw.index];
  const BackendConfig& b = pw.snapshot->backend_by_slot[entry.backend];
  const nat::InsertResult inserted = pw.table.InsertHashed(
      entry, prepared.client_hash, prepared.backend_hash, pw.now_ms, FreeFn(pw));
  if (inserted.status != nat::InsertStatus::kInserted) {
    if (l.mode == nat::NatMode::kFnat) {
      pw.pools[b.next_hop.port]->Release(entry.local());
    }
    scheduler.OnConnectionClosed(prepared.set_index);
    if (inserted.status != nat::InsertStatus::kFull) {
      // The backend-side tuple belongs to a live connection (dnat: the same client port to
      // another VIP with the same backend).
      Drop(pw, m, DropReason::kTupleConflict);
    } else if (l.mode == nat::NatMode::kDnat) {
      pw.table_full_seen = true;
      pw.table_full_ms = pw.now_ms;
      ForwardStateless(pw, m, p, &l);
    } else {
      Drop(pw, m, DropReason::kTableFull);
    }
    return;
  }
  LearnFromClient(pw, m, p);
  ++pw.opened;
  ListenerCounters& counters = pw.listener(l.slot);
  counters.new_conns.Add(1);
  counters.active_conns.Add(1);
  pw.backend_active[entry.backend].Add(1);
  pw.new_conns.Add(1);
  pw.active_conns.Add(1);
  nat::RewriteToBackend(FrameOf(m), p, pw.table.entry(inserted.index));
  SendVia(pw, m, b.next_hop, &counters);
}

// A packet of a tracked connection.
void ForwardHit(PipelineWorker& pw, rte_mbuf* m, const ParsedPacket& p, const ConnHit& hit) {
  ConnEntry& e = *hit.entry;
  const ListenerConfig* l = pw.snapshot->listener(e.listener);
  ListenerCounters& counters = pw.listener(e.listener);
  if (e.proto() == nat::kIpProtoTcp) {
    const nat::TcpState before = e.tcp_state;
    e.tcp_state = nat::TcpNextState(before, hit.dir, p.tcp_flags);
    if (e.tcp_state == nat::TcpState::kSynSent && before != nat::TcpState::kSynSent) {
      // A client SYN reopened a time_wait or closed tuple: a new connection on the old entry
      // (same backend and local port), counted and aged as one.
      e.created_ms = pw.now_ms;
      counters.new_conns.Add(1);
      pw.new_conns.Add(1);
    }
  }
  e.timeout_ms = l->ConnTimeoutMs(e.tcp_state);
  e.last_seen_ms = pw.now_ms;
  nat::RewriteForConn(FrameOf(m), p, e, hit.dir);
  const nat::NextHop hop = hit.dir == FlowDir::kFromClient
                               ? BackendHop(pw, e)
                               : pw.snapshot->routes.Lookup(e.from_client.src_ip);
  SendVia(pw, m, hop, &counters);
}

// A backend-side packet without a connection.
void BackendMiss(PipelineWorker& pw, rte_mbuf* m, const ParsedPacket& p, bool dnat_reply) {
  if (dnat_reply) {
    if (TableFullRecently(pw)) {
      ForwardStateless(pw, m, p, nullptr);
    } else {
      Drop(pw, m, DropReason::kNotLocal);
    }
    return;
  }
  if (p.proto == nat::kIpProtoTcp) {
    pw.ctx->counters.Drop(DropReason::kNotSynNoConn);
    SendReset(pw, m, p);
    return;
  }
  Drop(pw, m, DropReason::kNoConn);
}

void Verdict(PipelineWorker& pw, const PendingPacket& pending, const ParsedPacket& p, ConnHit hit,
             PreparedConn& prepared) {
  if (hit.hit() && pw.snapshot->ConnDead(hit.entry->listener, hit.entry->backend)) {
    // Its listener or backend is gone or dead: forget it and treat the packet as new.
    if (pending.side == FlowDir::kFromClient && p.proto == nat::kIpProtoUdp) {
      Count(pw, WorkerEvent::kConnsRescheduled);
    }
    Count(pw, WorkerEvent::kConnsFlushed);
    EraseConn(pw, hit.index);
    hit = ConnHit{};
  }
  if (hit.hit()) {
    ListenerCounters& counters = pw.listener(hit.entry->listener);
    counters.rx_packets.Add(1);
    counters.rx_bytes.Add(rte_pktmbuf_pkt_len(pending.m));
    ForwardHit(pw, pending.m, p, hit);
    return;
  }
  if (pending.side == FlowDir::kFromBackend) {
    BackendMiss(pw, pending.m, p, pending.dnat_reply);
    return;
  }
  ListenerCounters& counters = pw.listener(pending.listener->slot);
  counters.rx_packets.Add(1);
  counters.rx_bytes.Add(rte_pktmbuf_pkt_len(pending.m));
  OpenConn(pw, pending.m, p, *pending.listener, prepared);
}

// ---- classification (stage 1)

// Whether this core processes a packet owned by `owner`; stages it for the owner otherwise.
bool Mine(PipelineWorker& pw, rte_mbuf* m, std::uint32_t owner, bool handed_off) {
  if (owner == pw.index) {
    return true;
  }
  if (owner >= pw.shared->workers || handed_off) {
    Drop(pw, m, DropReason::kWrongCore);
    return false;
  }
  Count(pw, WorkerEvent::kHandoffs);
  Stage(pw, owner, m);
  return false;
}

bool ClientOwnedHere(const PipelineWorker& pw, const rte_mbuf* m, const ListenerConfig& l) {
  const std::uint8_t port = PortIndexOf(pw, m);
  return l.mode == nat::NatMode::kFnat && port != kNoPortIndex &&
         pw.shared->ports[port].rss_affinity;
}

void ClassifyL4(PipelineWorker& pw, rte_mbuf* m, const ParsedPacket& p, bool handed_off,
                BurstState& burst) {
  const ConfigSnapshot& snap = *pw.snapshot;
  const nat::AddressInfo dst = snap.addresses.Find(p.dst_ip);
  PendingPacket pending{m, nullptr, FlowDir::kFromClient, false};
  std::uint32_t owner;
  if ((dst.kinds & nat::kAddressVip) != 0) {
    const std::uint32_t slot = snap.services.Find(p.dst_ip, p.dst_port, p.proto);
    pending.listener = snap.listener(slot);
    if (pending.listener == nullptr) {
      Drop(pw, m, DropReason::kNoService);
      return;
    }
    owner = ClientOwnedHere(pw, m, *pending.listener)
                ? pw.index
                : ClientOwner(p.src_ip, p.src_port, pw.shared->workers);
  } else if ((dst.kinds & nat::kAddressLocal) != 0) {
    pending.side = FlowDir::kFromBackend;
    owner = pw.shared->steering.OwnerOf(p.dst_port);
  } else if (snap.has_dnat && snap.addresses.Is(p.src_ip, nat::kAddressDnatBackend)) {
    pending.side = FlowDir::kFromBackend;
    pending.dnat_reply = true;
    owner = ClientOwner(p.dst_ip, p.dst_port, pw.shared->workers);
  } else {
    Drop(pw, m, DropReason::kNotLocal);
    return;
  }
  if (!Mine(pw, m, owner, handed_off)) {
    return;
  }
  const std::uint16_t i = burst.count++;
  burst.pending[i] = pending;
  burst.parsed[i] = p;
  burst.keys[i] = nat::FlowKeyOf(p);
}

void HandleArp(PipelineWorker& pw, rte_mbuf* m, const ParsedPacket& p) {
  const std::uint8_t port = PortIndexOf(pw, m);
  const std::optional<nat::ArpMessage> arp = nat::ParseArp(FrameOf(m), p.l3_offset);
  if (!arp || port == kNoPortIndex) {
    Drop(pw, m, DropReason::kBadHeader);
    return;
  }
  const ConfigSnapshot& snap = *pw.snapshot;
  const nat::AddressInfo target = snap.addresses.Find(arp->target_ip);
  const bool ours =
      (target.kinds & nat::kAddressVip) != 0 ||
      ((target.kinds & (nat::kAddressLocal | nat::kAddressInterface)) != 0 && target.port == port);
  const bool on_link = arp->sender_ip != 0 && snap.routes.ConnectedPort(arp->sender_ip) == port;
  const bool for_us = arp->op == nat::kArpReply || ours;
  if (on_link && (for_us || arp->sender_ip == arp->target_ip)) {
    if (for_us) {
      WriteLearnt(pw, arp->sender_ip, arp->sender_mac, port);
    }
    Count(pw, WorkerEvent::kArpLearned);
    Report(pw, Message{.type = MessageType::kArpSeen,
                       .port = port,
                       .flags = for_us ? kMessageForUs : std::uint8_t{0},
                       .ip = arp->sender_ip,
                       .value = PackMac(arp->sender_mac)});
  }
  if (arp->op == nat::kArpRequest && ours) {
    nat::MakeArpReply(FrameOf(m), *arp, pw.shared->ports[port].mac, p.l3_offset);
    Count(pw, WorkerEvent::kArpRepliesSent);
    Transmit(pw, port, m);
    return;
  }
  if (arp->op == nat::kArpReply) {
    rte_pktmbuf_free(m);  // consumed: its news went to the control thread
    return;
  }
  Drop(pw, m, DropReason::kNotLocal);
}

void HandleEcho(PipelineWorker& pw, rte_mbuf* m, const ParsedPacket& p) {
  const std::uint8_t port = PortIndexOf(pw, m);
  const std::uint8_t kinds = pw.snapshot->addresses.Find(p.dst_ip).kinds;
  if ((kinds & (nat::kAddressVip | nat::kAddressLocal | nat::kAddressInterface)) == 0 ||
      port == kNoPortIndex) {
    Drop(pw, m, DropReason::kNotLocal);
    return;
  }
  if (p.icmp_type != nat::kIcmpEchoRequest) {
    Drop(pw, m, DropReason::kUnsupportedIcmp);
    return;
  }
  nat::MakeIcmpEchoReply(FrameOf(m), p.l3_offset, p.l4_offset);
  Count(pw, WorkerEvent::kIcmpEchoReplies);
  Transmit(pw, port, m);
}

// The owner of the connection an ICMP error is about, judged by the packet it quotes.
std::optional<std::uint32_t> IcmpOwner(const PipelineWorker& pw, const rte_mbuf* m,
                                       const ParsedPacket& p) {
  const ConfigSnapshot& snap = *pw.snapshot;
  const nat::IcmpQuote& q = p.quote;
  const std::uint8_t kinds = snap.addresses.Find(q.src_ip).kinds;
  if ((kinds & nat::kAddressLocal) != 0) {
    return pw.shared->steering.OwnerOf(q.src_port);  // fnat: our packet to a backend
  }
  if ((kinds & nat::kAddressVip) != 0) {  // our packet to a client
    const ListenerConfig* l = snap.listener(snap.services.Find(q.src_ip, q.src_port, q.proto));
    if (l == nullptr) {
      return std::nullopt;
    }
    return ClientOwnedHere(pw, m, *l) ? pw.index
                                      : ClientOwner(q.dst_ip, q.dst_port, pw.shared->workers);
  }
  if (snap.has_dnat) {  // dnat: the client's packet, as forwarded to a backend
    return ClientOwner(q.src_ip, q.src_port, pw.shared->workers);
  }
  return std::nullopt;
}

void HandleIcmpError(PipelineWorker& pw, rte_mbuf* m, const ParsedPacket& p, bool handed_off) {
  const std::optional<std::uint32_t> owner = IcmpOwner(pw, m, p);
  if (!owner) {
    Drop(pw, m, DropReason::kIcmpNoConn);
    return;
  }
  if (!Mine(pw, m, *owner, handed_off)) {
    return;
  }
  const ConnHit hit = pw.table.Lookup(nat::IcmpQuoteReplyKey(p), pw.now_ms);
  if (!hit.hit() || pw.snapshot->ConnDead(hit.entry->listener, hit.entry->backend)) {
    Drop(pw, m, DropReason::kIcmpNoConn);
    return;
  }
  const ConnEntry& e = *hit.entry;
  nat::NextHop hop;
  if (hit.dir == FlowDir::kFromBackend) {
    nat::TranslateIcmpErrorToClient(FrameOf(m), p, e);
    hop = pw.snapshot->routes.Lookup(e.from_client.src_ip);
  } else {
    nat::TranslateIcmpErrorToBackend(FrameOf(m), p, e);
    hop = BackendHop(pw, e);
  }
  Count(pw, WorkerEvent::kIcmpErrorsTranslated);
  SendVia(pw, m, hop, &pw.listener(e.listener));
}

nat::ParseOptions ParseOptionsFor(const rte_mbuf* m) {
  return {.verify_ipv4_checksum =
              (m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) != RTE_MBUF_F_RX_IP_CKSUM_GOOD};
}

void Classify(PipelineWorker& pw, rte_mbuf* m, bool handed_off, BurstState& burst) {
  const ParsedPacket p = nat::Parse(FrameOf(m), ParseOptionsFor(m));
  switch (p.kind) {
    case PacketKind::kTcp:
    case PacketKind::kUdp:
      ClassifyL4(pw, m, p, handed_off, burst);
      return;
    case PacketKind::kArp:
      HandleArp(pw, m, p);
      return;
    case PacketKind::kIcmpEcho:
      HandleEcho(pw, m, p);
      return;
    case PacketKind::kIcmpError:
      HandleIcmpError(pw, m, p, handed_off);
      return;
    case PacketKind::kDrop:
      break;
  }
  Drop(pw, m, p.drop);
}

// ---- pass work

void Adopt(PipelineWorker& pw, const ConfigSnapshot* next) {
  const ConfigSnapshot* previous = pw.snapshot;
  if (previous != nullptr) {
    for (const auto& l : next->listeners) {
      if (const ListenerConfig* before = previous->listener(l->slot); before != nullptr) {
        l->schedulers[pw.index].InheritConnections(before->schedulers[pw.index]);
      }
    }
  }
  pw.snapshot = next;
  pw.adopted_generation.store(next->generation, std::memory_order_release);
}

void Reply(PipelineWorker& pw, Message message) {
  if (rte_ring_enqueue_elem(pw.to_control, &message, sizeof(Message)) != 0) {
    pw.pending_reply = message;  // retried next pass; the reserve makes this rare
  }
}

std::uint32_t ServeMessages(PipelineWorker& pw) {
  if (pw.pending_reply) {
    const Message reply = *pw.pending_reply;
    pw.pending_reply.reset();
    Reply(pw, reply);
    if (pw.pending_reply) {
      return 1;
    }
  }
  std::array<Message, kMessagesPerPass> messages;
  const unsigned n = rte_ring_dequeue_burst_elem(pw.to_worker, messages.data(), sizeof(Message),
                                                 kMessagesPerPass, nullptr);
  for (unsigned i = 0; i < n; ++i) {
    const Message& message = messages[i];
    switch (message.type) {
      case MessageType::kTransmit:
        if ((message.flags & kMessageArpRequest) != 0) {
          Count(pw, WorkerEvent::kArpRequests);
        }
        Transmit(pw, message.port, static_cast<rte_mbuf*>(message.pointer));
        break;
      case MessageType::kSweep:
        pw.sweep_requested = std::max(pw.sweep_requested, message.seq);
        break;
      case MessageType::kDump:
        pw.dump = static_cast<DumpRequest*>(message.pointer);
        pw.dump->count = 0;
        pw.dump->truncated = false;
        pw.dump_seq = message.seq;
        pw.dump_cursor = {};
        break;
      default:
        break;  // worker -> control types never come this way
    }
  }
  return n;
}

// One burst from a hand-off ring, in ring order: tx-only packets are queued for transmission,
// the others go through the stages as if received here. Returns the packets dequeued.
unsigned DrainHandoffBurst(PipelineWorker& pw, rte_ring* ring) {
  std::array<rte_mbuf*, kBurstSize> burst;
  const unsigned n =
      rte_ring_dequeue_burst(ring, reinterpret_cast<void**>(burst.data()), kBurstSize, nullptr);
  std::uint16_t kept = 0;
  for (unsigned i = 0; i < n; ++i) {
    const auto raw = reinterpret_cast<std::uintptr_t>(burst[i]);
    if ((raw & kTxOnlyTag) != 0) {
      rte_mbuf* m = Untagged(raw);
      EnqueueTx(*pw.ctx, static_cast<std::uint16_t>(m->hash.usr), m);
    } else {
      burst[kept++] = burst[i];
    }
  }
  if (kept > 0) {
    Count(pw, WorkerEvent::kHandoffsReceived, kept);
    RunBurst(pw, burst.data(), kept, true);
  }
  return n;
}

// Takes up to kHandoffDrainBursts bursts from every ring: a sender stages up to a burst per rx
// queue per pass, so draining one burst per pass would let a busy ring grow until it drops.
std::uint32_t DrainHandoffs(PipelineWorker& pw) {
  std::uint32_t received = 0;
  for (rte_ring* ring : pw.handoff_in) {
    if (ring == nullptr) {
      continue;
    }
    for (std::uint32_t b = 0; b < kHandoffDrainBursts; ++b) {
      const unsigned n = DrainHandoffBurst(pw, ring);
      received += n;
      if (n < kBurstSize) {
        break;
      }
    }
  }
  return received;
}

void StepSweep(PipelineWorker& pw) {
  if (!pw.sweeping) {
    const std::uint64_t requested = pw.sweep_requested;
    if (requested <= pw.swept.load(std::memory_order_relaxed) ||
        pw.snapshot->generation < requested) {
      return;
    }
    pw.sweeping = true;
    pw.sweep_generation = pw.snapshot->generation;
    pw.sweep_cursor = {};
  }
  const ConfigSnapshot& snap = *pw.snapshot;
  const std::uint32_t erased = pw.table.EraseIfSome(
      pw.sweep_cursor, pw.shared->sweep_budget,
      [&snap](const ConnEntry& e) { return snap.ConnDead(e.listener, e.backend); }, FreeFn(pw));
  Count(pw, WorkerEvent::kConnsFlushed, erased);
  if (pw.sweep_cursor.done) {
    pw.sweeping = false;
    pw.swept.store(pw.sweep_generation, std::memory_order_release);
  }
}

void StepDump(PipelineWorker& pw) {
  DumpRequest& dump = *pw.dump;
  pw.table.VisitSome(pw.dump_cursor, pw.shared->sweep_budget,
                     [&](std::uint32_t, const ConnEntry& e) {
                       if (nat::ConnTable::Expired(e, pw.now_ms) ||
                           (dump.listener_slot != kNoSlot && e.listener != dump.listener_slot)) {
                         return;
                       }
                       if (dump.count == dump.capacity) {
                         dump.truncated = true;
                         return;
                       }
                       dump.records[dump.count++] = ConnRecord{e, pw.now_ms};
                     });
  if (pw.dump_cursor.done || dump.truncated) {
    pw.dump = nullptr;
    Reply(pw, Message{.type = MessageType::kDumpDone, .seq = pw.dump_seq});
  }
}

// A busy worker (packets arrived or the hook had work) examines few entries per pass, so
// forwarding keeps the core; an idle one catches up.
std::uint32_t ExpireBudget(const PipelineWorker& pw, bool busy) {
  return busy ? pw.shared->expire_budget_busy + kExpirePerOpen * pw.opened
              : pw.shared->expire_budget_idle;
}

std::uint32_t Housekeeping(PipelineWorker& pw, bool busy) {
  const std::uint32_t expired = pw.table.ExpireSome(pw.now_ms, ExpireBudget(pw, busy), FreeFn(pw));
  Count(pw, WorkerEvent::kConnsExpired, expired);
  StepSweep(pw);
  if (pw.dump != nullptr) {
    StepDump(pw);
  }
  return pw.sweeping || pw.dump != nullptr ? 1 : 0;
}

void UpdateClock(PipelineWorker& pw, std::uint64_t tsc) {
  pw.now_ms = static_cast<std::uint32_t>((tsc - pw.shared->tsc_base) / pw.shared->tsc_per_ms);
}

}  // namespace

void RunBurst(PipelineWorker& pw, rte_mbuf** packets, std::uint16_t count, bool handed_off) {
  if (pw.snapshot == nullptr) {
    pw.ctx->counters.Drop(DropReason::kNoService, count);
    rte_pktmbuf_free_bulk(packets, count);
    return;
  }
  BurstState& burst = pw.burst;
  burst.count = 0;
  pw.received += count;
  for (std::uint16_t i = 0; i < count && i < kPrefetchAhead; ++i) {
    rte_prefetch0(rte_pktmbuf_mtod(packets[i], void*));
  }
  for (std::uint16_t i = 0; i < count; ++i) {
    if (i + kPrefetchAhead < count) {
      rte_prefetch0(rte_pktmbuf_mtod(packets[i + kPrefetchAhead], void*));
    }
    Classify(pw, packets[i], handed_off, burst);
  }
  pw.table.LookupBulk(std::span(burst.keys.data(), burst.count),
                      std::span(burst.hits.data(), burst.count), pw.now_ms);
  std::uint32_t opening = 0;
  std::uint64_t opening_filter = 0;
  std::uint32_t repeats = 0;  // bit i: an earlier packet of the burst opens packet i's connection
  static_assert(kBurstSize <= 32);
  for (std::uint16_t i = 0; i < burst.count; ++i) {
    PreparedConn& prepared = burst.prepared[i];
    prepared.ready = false;
    if (!Opens(burst.pending[i], burst.parsed[i], burst.hits[i])) {
      continue;
    }
    if (OpensEarlierInBurst(burst, i, opening_filter)) {
      repeats |= 1u << i;
      continue;
    }
    PrepareConn(pw, burst.parsed[i], *burst.pending[i].listener, opening++, prepared);
  }
  for (std::uint16_t i = 0; i < burst.count; ++i) {
    if (repeats != 0 && ((repeats >> i) & 1u) != 0) [[unlikely]] {
      // The flow's first packet in this burst opened it (or failed to): look again.
      burst.hits[i] = pw.table.Lookup(burst.keys[i], pw.now_ms);
    }
    Verdict(pw, burst.pending[i], burst.parsed[i], burst.hits[i], burst.prepared[i]);
  }
  FlushStaged(pw);
}

void ProcessBurst(WorkerContext& worker, std::uint16_t rx_port, rte_mbuf** packets,
                  std::uint16_t count) {
  // Not every PMD fills in the port (net_ring does not); replies and hand-offs rely on it.
  for (std::uint16_t i = 0; i < count; ++i) {
    packets[i]->port = rx_port;
  }
  RunBurst(*static_cast<PipelineWorker*>(worker.handler_state), packets, count, false);
}

std::uint32_t PassBegin(WorkerContext& worker) {
  PipelineWorker& pw = *static_cast<PipelineWorker*>(worker.handler_state);
  UpdateClock(pw, worker.tsc);
  const ConfigSnapshot* next = pw.published_snapshot.load(std::memory_order_acquire);
  if (next != pw.snapshot && next != nullptr) {
    Adopt(pw, next);
  }
  pw.neighbors = pw.published_neighbors.load(std::memory_order_acquire);
  std::uint32_t work = ++pw.passes % kMessagePasses == 0 ? ServeMessages(pw) : 0;
  work += DrainHandoffs(pw);
  FlushStaged(pw);
  if (pw.snapshot != nullptr) {
    work += Housekeeping(pw, work > 0 || pw.received > 0);
  }
  pw.received = 0;
  pw.opened = 0;
  return work;
}

void AdoptPublished(PipelineWorker& pw) {
  const ConfigSnapshot* next = pw.published_snapshot.load(std::memory_order_acquire);
  if (next != pw.snapshot && next != nullptr) {
    Adopt(pw, next);
  }
  pw.neighbors = nullptr;
}

void SweepAll(PipelineWorker& pw) {
  if (pw.snapshot == nullptr) {
    return;
  }
  pw.sweeping = false;
  pw.sweep_requested = pw.snapshot->generation;
  pw.swept.store(0, std::memory_order_relaxed);
  do {
    StepSweep(pw);
  } while (pw.sweeping);
}

void ReleaseConn(PipelineWorker& pw, const nat::ConnEntry& entry) { OnConnFreed(pw, entry); }

}  // namespace fulcrum::dataplane
