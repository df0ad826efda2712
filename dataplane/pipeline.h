// The L4 packet pipeline each worker runs: fnat and dnat forwarding with per-core state.
//
// Theory of operation
// -------------------
// A burst (ProcessBurst, the worker's BurstHandler) goes through stages, so that the memory
// misses of one packet overlap with the work on others:
//   1. parse every packet (nat::Parse, prefetching the next ones) and classify it: ARP and
//      ICMP echo are answered at once; an ICMP error is matched to its connection by the
//      packet it quotes; TCP and UDP are sorted by destination (AddressTable): to a VIP:port
//      (client side: ServiceTable gives the listener), to a local address (an fnat reply), or
//      from a dnat backend (a dnat reply). A packet that another core owns (dataplane/handoff.h)
//      is staged for that core instead.
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
//      thread is asked to resolve it, at most once a second per address per core), then
//      batched transmission; packets staged for other cores go out on the hand-off rings.
// Connections whose listener or backend left the snapshot, or whose backend is dead, are
// treated as absent (a TCP client gets a reset, a UDP flow is scheduled anew), and are erased.
//
// Each pass also runs PassBegin (the worker's PassHook): adopt the newest snapshot (carrying the
// scheduler state over: SchedulerState::InheritConnections), read the newest NeighborMap, serve
// the control ring (frames to transmit, connection dumps), process what other cores handed over,
// free expired connections (ExpireSome, a small budget per pass) and, when the control thread
// asks, sweep the table for dead connections (EraseIfSome) and report the generation swept.
//
// Nothing here locks, allocates, makes a system call or logs; every drop is counted with a
// nat/drop_reasons.h reason, every other event with a WorkerEvent. Per-core counters per
// listener slot and per backend slot are single-writer Counters that the control thread reads.
//
// Ownership: a PipelineWorker belongs to its worker lcore while the Dataplane runs, and to the
// control thread while it is stopped. The control thread writes only the atomics marked so.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "dataplane/snapshot.h"
#include "dataplane/worker.h"
#include "nat/arp.h"
#include "nat/conn_table.h"
#include "nat/neighbor_table.h"
#include "nat/packet.h"
#include "nat/port_pool.h"

struct rte_mbuf;
struct rte_ring;

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

// A connection copied out for conn.list.
struct ConnRecord {
  nat::ConnEntry entry;
  std::uint32_t now_ms = 0;  // the worker's clock when it copied the entry
};

// A connection dump the control thread asks a worker for: the worker fills `records` and
// replies kDumpDone. The control thread owns the memory and waits for the reply.
struct DumpRequest {
  std::uint32_t listener_slot = kNoSlot;  // kNoSlot: every listener
  ConnRecord* records = nullptr;
  std::uint32_t capacity = 0;
  // Written by the worker before its reply.
  std::uint32_t count = 0;
  bool truncated = false;
};

enum class MessageType : std::uint8_t {
  // control -> worker
  kTransmit,  // send `pointer` (an rte_mbuf) out of port index `port`
  kDump,      // fill the DumpRequest at `pointer`
  kSweep,     // erase the connections snapshot `seq` (or newer) declares dead
  // worker -> control
  kArpSeen,   // `ip` is at MAC `value` (low 48 bits) on port `port`; flags & kForUs
  kResolve,   // next hop `ip` on port `port` has no MAC
  kDumpDone,  // the dump `seq` is complete
};

// One element of the message rings (rte_ring of 32-byte elements, SPSC).
struct Message {
  MessageType type = MessageType::kTransmit;
  std::uint8_t port = 0;
  std::uint8_t flags = 0;
  std::uint8_t pad = 0;
  std::uint32_t ip = 0;
  std::uint64_t value = 0;
  void* pointer = nullptr;
  std::uint64_t seq = 0;
};
static_assert(sizeof(Message) == 32);

inline constexpr std::uint8_t kMessageForUs = 1;       // kArpSeen: a reply, or asked for us
inline constexpr std::uint8_t kMessageArpRequest = 2;  // kTransmit: counts as arp_requests

inline std::uint64_t PackMac(const nat::MacAddress& mac) {
  std::uint64_t v = 0;
  for (std::uint8_t b : mac) {
    v = v << 8 | b;
  }
  return v;
}
inline nat::MacAddress UnpackMac(std::uint64_t v) {
  nat::MacAddress mac;
  for (int i = 5; i >= 0; --i) {
    mac[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v);
    v >>= 8;
  }
  return mac;
}

struct PipelineWorker;

// A TCP/UDP packet of the burst waiting for the bulk lookup.
struct PendingPacket {
  rte_mbuf* m;
  const ListenerConfig* listener;  // client side only
  nat::FlowDir side;               // which side sent it
  bool dnat_reply;                 // from a dnat backend (no local address involved)
};

// A connection the burst will open, prepared before the verdicts (backend picked, local port
// taken, entry built, its index buckets prefetched) so that the insert's cache misses overlap
// with the other packets' work instead of stalling the worker.
struct PreparedConn {
  nat::ConnEntry entry;
  nat::ConnHash client_hash;
  nat::ConnHash backend_hash;
  std::uint16_t set_index = 0;                    // the backend's index in the listener's set
  nat::DropReason drop = nat::DropReason::kNone;  // why no connection could be prepared
  bool ready = false;
};

// The stages' working set for one burst. It lives in the PipelineWorker, not on the stack, so
// that a burst does not pay to initialise ~7 KiB of it.
struct BurstState {
  std::uint16_t count = 0;
  std::array<PendingPacket, kBurstSize> pending;
  std::array<nat::ParsedPacket, kBurstSize> parsed;
  std::array<nat::FlowKey, kBurstSize> keys;
  std::array<nat::ConnHit, kBurstSize> hits;
  std::array<PreparedConn, kBurstSize> prepared;
};

// Read-only after creation; shared by every worker.
struct PipelineShared {
  std::uint32_t workers = 1;
  nat::PortSteering steering = nat::PortSteering::ForWorkers(1);
  std::array<std::uint8_t, kMaxPortIds> port_index{};  // by DPDK port id; kNoPortIndex
  std::vector<PortView> ports;                         // by port index (config order)
  std::vector<PipelineWorker*> all;                    // by worker index
  std::uint64_t tsc_base = 0;
  std::uint64_t tsc_per_ms = 1;
  // Entries ExpireSome examines per pass: the busy budget plus kExpirePerOpen for each
  // connection opened since the last pass while packets arrive, the idle budget otherwise.
  std::uint32_t expire_budget_busy = 64;
  std::uint32_t expire_budget_idle = 1024;
  std::uint32_t sweep_budget = 4096;
};

// A neighbour a worker learnt from ARP, visible to the other workers at once (a seqlock with
// this worker as the single writer), until the control thread's NeighborMap has it.
struct LearntNeighbor {
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint32_t> ip{0};
  std::atomic<std::uint64_t> mac_port{0};  // PackMac << 8 | port index
  std::atomic<std::uint32_t> at_ms{0};
};
inline constexpr std::size_t kLearntSlots = 256;
inline constexpr std::uint32_t kLearntTtlMs = 10'000;

struct alignas(64) PipelineWorker {
  explicit PipelineWorker(nat::ConnTable conn_table) : table(std::move(conn_table)) {}

  std::uint32_t index = 0;
  const PipelineShared* shared = nullptr;
  WorkerContext* ctx = nullptr;

  // Written by the control thread (release), read by the worker once per pass.
  std::atomic<const ConfigSnapshot*> published_snapshot{nullptr};
  std::atomic<const nat::NeighborMap*> published_neighbors{nullptr};

  // Written by the worker, read by the control thread.
  std::atomic<std::uint64_t> adopted_generation{0};
  // Generation of the snapshot the last completed sweep used (the reply to kSweep).
  std::atomic<std::uint64_t> swept{0};

  // The worker's own.
  const ConfigSnapshot* snapshot = nullptr;  // adopted; kept across passes
  const nat::NeighborMap* neighbors = nullptr;
  std::uint32_t now_ms = 0;
  std::uint32_t passes = 0;
  std::uint32_t received = 0;  // packets RunBurst took since the last PassBegin
  std::uint32_t opened = 0;    // connections opened since the last PassBegin
  nat::ConnTable table;
  std::vector<std::optional<nat::PortPool>> pools;  // by egress port index
  rte_ring* to_worker = nullptr;
  rte_ring* to_control = nullptr;
  std::vector<rte_ring*> handoff_in;   // by source worker (nullptr for self)
  std::vector<rte_ring*> handoff_out;  // by destination worker (nullptr for self)
  struct Staged {
    std::uint16_t count = 0;
    std::array<rte_mbuf*, 2 * kBurstSize> packets{};
  };
  std::vector<Staged> staged;  // by destination worker
  BurstState burst;
  std::uint64_t sweep_requested = 0;  // from kSweep: sweep while it is above `swept`
  bool sweeping = false;
  std::uint64_t sweep_generation = 0;
  nat::SweepCursor sweep_cursor;
  DumpRequest* dump = nullptr;
  std::uint64_t dump_seq = 0;
  nat::SweepCursor dump_cursor;
  std::optional<Message> pending_reply;
  std::uint32_t table_full_ms = 0;
  bool table_full_seen = false;
  struct Asked {
    std::uint32_t ip = 0;
    std::uint32_t at_ms = 0;
  };
  std::array<Asked, 64> asked{};
  std::array<LearntNeighbor, kLearntSlots> learnt{};

  // This core's connections (the pipeline's, not the worker's: they end with the pipeline).
  Counter new_conns;
  Counter active_conns;  // gauge
  // Per-slot counters (this core), sized at creation.
  std::uint32_t listener_capacity = 0;
  std::uint32_t backend_capacity = 0;
  std::unique_ptr<ListenerCounters[]> listener_counters;
  std::unique_ptr<Counter[]> backend_active;

  ListenerCounters& listener(std::uint32_t slot) { return listener_counters[slot]; }
};

// The BurstHandler: `worker.handler_state` is the PipelineWorker.
void ProcessBurst(WorkerContext& worker, std::uint16_t rx_port, rte_mbuf** packets,
                  std::uint16_t count);
// The PassHook.
std::uint32_t PassBegin(WorkerContext& worker);

// The same stages for one burst, callable directly (benchmarks): `handed_off` is true for
// packets another core passed over (never passed on again). Each mbuf's `port` must name the
// DPDK port it arrived on (ProcessBurst sets it; not every PMD does).
void RunBurst(PipelineWorker& pw, rte_mbuf** packets, std::uint16_t count, bool handed_off);

// Control thread, workers stopped: what PassBegin would do with the newest snapshot and a
// whole sweep, done on the worker's behalf.
void AdoptPublished(PipelineWorker& pw);
void SweepAll(PipelineWorker& pw);

// Frees a connection the way expiry does (port back to the pool, gauges down).
void ReleaseConn(PipelineWorker& pw, const nat::ConnEntry& entry);

}  // namespace fulcrum::dataplane
