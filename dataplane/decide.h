// The L4 pipeline's decisions: what each packet of a burst becomes, returned as data.
//
// Theory of operation
// -------------------
// DecideBurst takes a burst of frames (their bytes and arrival port: no rte_mbuf) and
// the core's state, rewrites the frames in place and returns one Action per packet: send it
// out of port P (its MACs already set), hand it to core C, or free it (a counted drop, or a
// packet consumed). It links no DPDK, so that the tests can table it: frames and state in,
// frames, actions and counters out, on a fake clock, under the sanitizers. The adapter
// (dataplane/pipeline.h) turns the actions into frees, transmissions and ring stagings.
//
// A burst goes through stages, so that the memory misses of one packet overlap with the work
// on others:
//   1. parse every packet (nat::Parse, prefetching the next ones) and classify it: ARP and
//      ICMP echo are answered at once; an ICMP error is matched to its connection by the
//      packet it quotes; TCP and UDP are sorted by destination (AddressTable): to a VIP:port
//      (client side: ServiceTable gives the listener), to a local address (an fnat reply), or
//      from a dnat backend (a dnat reply). A packet that another core owns (dataplane/handoff.h)
//      is handed off to that core instead.
//   2. look every remaining packet's 5-tuple up in the core's connection table at once
//      (ConnTable::LookupBulk: hash and prefetch all, then compare), then prepare every
//      connection the burst will open (backend, local port, entry) with its insert's buckets
//      prefetched (PreparedConn), so that the inserts' misses overlap too.
//   3. per packet: a hit updates the TCP state and timeout (nat/tcp_state.h, with the
//      listener's timeouts) and is rewritten (nat/rewrite.h); a client-side miss that may open a
//      connection (TCP SYN, any UDP datagram) is scheduled (the listener's BackendSet and this
//      core's SchedulerState), gets an fnat local port from this core's pool for the egress port,
//      and is inserted; a TCP segment that opens nothing is answered with a reset
//      (not_syn_no_conn, nat/tcp_reset.h). A full table sends dnat flows on statelessly (Maglev)
//      and drops fnat ones (table_full): an fnat reply cannot be translated back without state.
//   4. the next hop (the backend's, precomputed in the snapshot, or the route to the client)
//      and its MAC (the published NeighborMap; unresolved: arp_unresolved, and the control
//      thread is asked to resolve it, at most once a second per address per core).
// Connections whose listener or backend left the snapshot, or whose backend is dead, are
// treated as absent (a TCP client gets a reset, a UDP flow is scheduled anew), and are erased.
//
// Nothing here locks, allocates, makes a system call or logs; every drop is counted with a
// nat/drop_reasons.h reason, every other event with a WorkerEvent. Reports to the control
// thread (a neighbour seen, a next hop to resolve) are queued in `reports` for the adapter to
// send. Per-core counters per listener slot and per backend slot are single-writer Counters
// that the control thread reads.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/daemon_config.h"
#include "common/status.h"
#include "dataplane/messages.h"
#include "dataplane/snapshot.h"
#include "dataplane/worker.h"
#include "nat/conn_table.h"
#include "nat/drop_reasons.h"
#include "nat/neighbor_table.h"
#include "nat/packet.h"
#include "nat/packet6.h"
#include "nat/port_pool.h"
#include "nat/tcp_splice.h"

namespace fulcrum::dataplane {

inline constexpr std::uint8_t kNoPortIndex = 0xff;

// A port as the pipeline sees it; fixed for the life of the Dataplane.
struct PortView {
  std::uint16_t port_id = 0;
  nat::MacAddress mac{};
  std::uint32_t address = 0;
  // The receiving queue owns a client flow (RSS over as many queues as workers).
  bool rss_affinity = false;
  // A worker with a tx queue on this port: transmits for the workers without one.
  std::uint32_t tx_worker = 0;
  std::uint32_t mtu = 1500;  // the largest IP packet it sends
};

// Per-core figures of one listener slot.
struct ListenerCounters {
  Counter new_conns;
  Counter active_conns;  // gauge
  Counter rx_packets;
  Counter rx_bytes;
  Counter tx_packets;
  Counter tx_bytes;
};

// One packet of a burst, as the decisions see it.
struct PacketIn {
  // Its bytes, rewritten in place. Only the first segment of a multi-segment packet: such a
  // packet is never forwarded (nat::Parse finds it truncated), so this is its whole length
  // whenever a byte counter counts it.
  std::span<std::uint8_t> frame;
  std::uint8_t port = kNoPortIndex;     // the port index it arrived on
  bool ipv4_checksum_verified = false;  // the NIC found its IPv4 header checksum good
  // Bytes writable before the frame in its buffer: what a translation to IPv6 grows into.
  std::uint16_t headroom = 0;
};

// What becomes of one packet.
enum class Verb : std::uint8_t {
  kDrop,     // free it: dropped, `reason` counted
  kConsume,  // free it: used up, not a drop (an ARP reply, a reset that could not be built)
  kSend,     // transmit it out of port index `port`
  kHandOff,  // pass it to core `owner`, which processes it as if it had received it
};

struct Action {
  Verb verb = Verb::kDrop;
  std::uint8_t port = kNoPortIndex;  // kSend
  nat::DropReason reason = nat::DropReason::kNone;
  std::uint8_t owner = 0;  // kHandOff (kMaxWorkers fits)
  // kSend: the frame's new length (a reset is shorter, a neighbour advertisement may be longer,
  // within PacketIn::headroom and CoreState::tailroom_of); 0: as it is.
  std::uint16_t length = 0;
  // kSend: how far the frame's start moves, before `length` applies: forward (a NAT64
  // translation to IPv4 drops header bytes) or, negative, back into the headroom (to IPv6).
  // Only with a `length`.
  std::int16_t offset = 0;

  friend bool operator==(const Action&, const Action&) = default;
};
static_assert(sizeof(Action) == 8);
static_assert(kMaxWorkers <= 256);

// The address families, as the type parameter of the stages (dataplane/decide.cc): what a
// packet, its key, its connection and its next hop are in each.
struct Inet4 {
  static constexpr bool kIpv6 = false;
  using Ip = std::uint32_t;
  using Parsed = nat::ParsedPacket;
  using Key = nat::FlowKey;
  using Entry = nat::ConnEntry;
  using Table = nat::ConnTable;
  using Hit = nat::ConnHit;
  using Endpoint = nat::Endpoint4;
  using Hop = nat::NextHop;
  using Pool = nat::PortPool;
  using Neighbors = nat::NeighborMap;
};

struct Inet6 {
  static constexpr bool kIpv6 = true;
  using Ip = nat::Ip6;
  using Parsed = nat::ParsedPacket6;
  using Key = nat::FlowKey6;
  using Entry = nat::ConnEntry6;
  using Table = nat::ConnTable6;
  using Hit = nat::ConnHit6;
  using Endpoint = nat::Endpoint6;
  using Hop = nat::NextHop6;
  using Pool = nat::PortPool6;
  using Neighbors = nat::NeighborMap6;
};

// A TCP/UDP packet of the burst waiting for the bulk lookup.
struct PendingPacket {
  const ListenerConfig* listener;  // client side only
  std::uint16_t index;             // in the burst
  nat::FlowDir side;               // which side sent it
  bool dnat_reply;                 // from a dnat backend (no local address involved)
};

// A connection the burst will open, prepared before the verdicts (backend picked, local port
// taken, entry built, its index buckets prefetched) so that the insert's cache misses overlap
// with the other packets' work instead of stalling the worker.
template <typename F>
struct PreparedConn {
  typename F::Entry entry;
  nat::ConnHash client_hash;
  nat::ConnHash backend_hash;
  const BackendConfig* backend = nullptr;         // the chosen backend, in the core's snapshot
  std::uint16_t set_index = 0;                    // the backend's index in the listener's set
  nat::DropReason drop = nat::DropReason::kNone;  // why no connection could be prepared
  bool ready = false;
  // Its client's session persistence key, computed and prefetched ahead of the pick when its
  // listener keeps sessions; fingerprint 0: not computed.
  nat::PersistTable::Key persist;
};

// The stages' working set for one burst, per family. It lives in the CoreState, not on the
// stack, so that a burst does not pay to initialise ~7 KiB (IPv6: ~14 KiB) of it.
template <typename F>
struct BurstState {
  std::uint16_t count = 0;  // pending packets, from the arrays' start
  // IPv4 only: pending NAT64 replies, from the arrays' end (their connections are IPv6; they
  // have no IPv4 key to look up).
  std::uint16_t translated = 0;
  std::array<PendingPacket, kBurstSize> pending;
  std::array<typename F::Parsed, kBurstSize> parsed;
  std::array<typename F::Key, kBurstSize> keys;
  std::array<typename F::Hit, kBurstSize> hits;
  std::array<PreparedConn<F>, kBurstSize> prepared;
};

struct CoreState;

// Read-only after creation; shared by every worker.
struct PipelineShared {
  std::uint32_t workers = 1;
  nat::PortSteering steering = nat::PortSteering::ForWorkers(1);
  std::array<std::uint8_t, kMaxPortIds> port_index{};  // by DPDK port id; kNoPortIndex
  std::vector<PortView> ports;                         // by port index (config order)
  std::vector<const CoreState*> all;                   // by worker index
  std::uint64_t tsc_base = 0;
  std::uint64_t tsc_per_ms = 1;
  // Entries ExpireSome examines per pass: the busy budget plus kExpirePerOpen for each
  // connection opened since the last pass while packets arrive, the idle budget otherwise.
  std::uint32_t expire_budget_busy = 64;
  std::uint32_t expire_budget_idle = 1024;
  std::uint32_t sweep_budget = 4096;
  // Session persistence, shared by every worker (its words change by compare-and-swap only);
  // every worker clears expired entries of persist_sweep_buckets buckets per millisecond.
  nat::PersistTable* persist = nullptr;
  std::uint32_t persist_sweep_buckets = 1;
};

// A neighbour a worker learnt from ARP or neighbour discovery, visible to the other workers at
// once (a seqlock with this worker as the single writer), until the control thread's neighbour
// map has it. The address is IPv6, IPv4 as its IPv4-mapped address.
struct LearntNeighbor {
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint32_t> at_ms{0};
  std::atomic<std::uint64_t> ip_hi{0};
  std::atomic<std::uint64_t> ip_lo{0};
  std::atomic<std::uint64_t> mac_port{0};  // PackMac << 8 | port index
};
inline constexpr std::size_t kLearntSlots = 256;
inline constexpr std::uint32_t kLearntTtlMs = 10'000;
// Reports one burst can queue: a packet reports at most twice (a client learnt, a next hop).
inline constexpr std::size_t kMaxReports = 2 * kBurstSize;

// What the decisions read and write on one core. Ownership: the worker lcore's while the
// Dataplane runs, the control thread's while it is stopped; other workers read only `learnt`.
struct alignas(64) CoreState {
  CoreState(nat::ConnTable conn_table, nat::ConnTable6 conn_table6)
      : table(std::move(conn_table)), table6(std::move(conn_table6)) {}

  std::uint32_t index = 0;
  const PipelineShared* shared = nullptr;
  WorkerCounters* counters = nullptr;  // the worker's drops and events

  const ConfigSnapshot* snapshot = nullptr;  // adopted; kept across passes
  const nat::NeighborMap* neighbors = nullptr;
  const nat::NeighborMap6* neighbors6 = nullptr;
  // The next hop towards clients last resolved in this burst, per family: replies mostly leave
  // through one router, whose neighbour entry is then found once per burst, not per packet.
  template <typename Ip>
  struct HopMemo {
    Ip ip{};
    const nat::Neighbor* neighbor = nullptr;  // nullptr: nothing resolved yet
  };
  HopMemo<std::uint32_t> client_hop;
  HopMemo<nat::Ip6> client_hop6;
  // The burst's buffers, by packet index (the adapter's: rte_mbufs), and the bytes writable
  // after the frame in one of them. Asked only when an answer built in place is longer than
  // the question (a neighbour advertisement answering a solicitation without options), so
  // that no packet pays for it.
  const void* const* buffers = nullptr;
  std::uint16_t (*tailroom_of)(const void* buffer) = nullptr;
  std::uint32_t now_ms = 0;
  std::uint32_t opened = 0;  // connections opened since the pass began
  // One connection table per family, so that IPv4 entries stay one cache line.
  nat::ConnTable table;
  nat::ConnTable6 table6;
  std::vector<std::optional<nat::PortPool>> pools;    // by egress port index
  std::vector<std::optional<nat::PortPool6>> pools6;  // by egress port index
  // IPv4 local ports held by NAT64 connections, over all of `pools`: while there are none, an
  // IPv4 reply is not checked for being one of theirs.
  std::uint32_t translated_ports = 0;
  BurstState<Inet4> burst;
  BurstState<Inet6> burst6;
  std::array<Action, kBurstSize> actions;  // by the packet's index in the burst
  std::uint32_t table_full_ms = 0;
  bool table_full_seen = false;
  struct Asked {
    nat::Ip6 ip;  // IPv4 as IPv4-mapped
    std::uint32_t at_ms = 0;
  };
  std::array<Asked, 64> asked{};
  std::array<LearntNeighbor, kLearntSlots> learnt{};
  // Reports for the control thread, queued by the decisions and sent by the adapter.
  std::array<Message, kMaxReports> reports{};
  std::uint16_t report_count = 0;

  // This core's connections (the pipeline's, not the worker's: they end with the pipeline).
  Counter new_conns;
  Counter active_conns;  // gauge
  // Per-slot counters (this core), sized at creation.
  std::uint32_t listener_capacity = 0;
  std::uint32_t backend_capacity = 0;
  std::unique_ptr<ListenerCounters[]> listener_counters;
  std::unique_ptr<Counter[]> backend_active;

  // This core's scheduler state per listener slot (mutable per-core state, so the worker's and
  // not the snapshot's), bound to the ListenerConfig whose BackendSet it was sized for.
  // AdoptSnapshot rebinds the slots whose config changed, carrying active counts over.
  struct Scheduling {
    const ListenerConfig* config = nullptr;
    nat::SchedulerState state;
  };
  std::unique_ptr<Scheduling[]> scheduling;  // by listener slot, listener_capacity of them
  nat::SchedulerState spare_scheduler;       // the storage a rebind swaps in and out

  ListenerCounters& listener(std::uint32_t slot) { return listener_counters[slot]; }
  nat::SchedulerState& scheduler(std::uint32_t slot) { return scheduling[slot].state; }
  // The adopted snapshot's listener in `slot`, or nullptr: the same as snapshot->listener(slot),
  // read from this flat array instead of the snapshot's pages (one load on the packet path).
  const ListenerConfig* config(std::uint32_t slot) const {
    return slot < listener_capacity ? scheduling[slot].config : nullptr;
  }
};

// Gives core `index` of `shared` its fnat port pools (one per port of `ports` with local
// addresses) and its per-slot counters.
Status InitCore(CoreState& core, std::uint32_t index, const PipelineShared& shared,
                WorkerCounters& counters, const std::vector<PortConfig>& ports,
                std::uint32_t listener_slots, std::uint32_t backend_slots);

// Decides a burst of at most kBurstSize packets: `handed_off` is true for packets another core
// passed over (never passed on again). Returns an action per packet, by index; valid until the
// next call.
std::span<const Action> DecideBurst(CoreState& core, std::span<PacketIn> packets, bool handed_off);

// What expiry, sweeps and replacement do when a connection ends: its local port back to the
// pool, its gauges down, its scheduler told.
void ReleaseConn(CoreState& core, const nat::ConnEntry& entry);
void ReleaseConn(CoreState& core, const nat::ConnEntry6& entry);

// Adopts `next`: rebinds the scheduler state of each listener slot whose config changed
// (carrying active counts over: SchedulerState::InheritConnections). Only the slots `next`
// lists as changed since the snapshot the core runs, or every slot when the core skipped a
// generation. Reuses the states' storage: a health or weight change allocates nothing.
void AdoptSnapshot(CoreState& core, const ConfigSnapshot* next);

}  // namespace fulcrum::dataplane
