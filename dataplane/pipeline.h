// The L4 packet pipeline each worker runs: the adapter between DPDK and the decisions.
//
// Theory of operation
// -------------------
// RunBurst (ProcessBurst, the worker's BurstHandler) hands a burst's frames to DecideBurst
// (dataplane/decide.h, where the stages and every decision are) and carries out the actions it
// returns: frees what is dropped or consumed, trims a reset, transmits (through the core that
// has a tx queue on the egress port, when this one has none), and stages what another core
// owns for the hand-off rings. Then it sends the reports the decisions queued for the control
// thread. Only this file touches rte_mbuf and rte_ring.
//
// Each pass also runs PassBegin (the worker's PassHook): adopt the newest snapshot (carrying the
// scheduler state over: SchedulerState::InheritConnections), read the newest NeighborMap, serve
// the control ring (frames to transmit, connection dumps), process what other cores handed over,
// free expired connections (ExpireSome, a small budget per pass) and, when the control thread
// asks, sweep the table for dead connections (EraseIfSome) and report the generation swept.
//
// Nothing here locks, allocates, makes a system call or logs; what the adapter itself drops
// (rings full, no tx queue) is counted by a nat/drop_reasons.h reason.
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

#include "dataplane/decide.h"
#include "dataplane/messages.h"
#include "dataplane/snapshot.h"
#include "dataplane/worker.h"
#include "nat/conn_table.h"
#include "nat/neighbor_table.h"

struct rte_mbuf;
struct rte_ring;

namespace fulcrum::dataplane {

// The bytes writable after the frame in `buffer`, an rte_mbuf (CoreState::tailroom_of).
std::uint16_t MbufTailroom(const void* buffer);

// A worker's core state (the decisions') and what the adapter adds: rings, staging, the
// control thread's requests.
struct alignas(64) PipelineWorker : CoreState {
  PipelineWorker(nat::ConnTable conn_table, nat::ConnTable6 conn_table6)
      : CoreState(std::move(conn_table), std::move(conn_table6)) {
    tailroom_of = MbufTailroom;
  }

  WorkerContext* ctx = nullptr;

  // Written by the control thread (release), read by the worker once per pass.
  std::atomic<const ConfigSnapshot*> published_snapshot{nullptr};
  std::atomic<const nat::NeighborMap*> published_neighbors{nullptr};
  std::atomic<const nat::NeighborMap6*> published_neighbors6{nullptr};

  // Written by the worker, read by the control thread.
  std::atomic<std::uint64_t> adopted_generation{0};
  // Generation of the snapshot the last completed sweep used (the reply to kSweep).
  std::atomic<std::uint64_t> swept{0};

  // The worker's own.
  std::uint32_t passes = 0;
  std::uint32_t received = 0;  // packets RunBurst took since the last PassBegin
  rte_ring* to_worker = nullptr;
  rte_ring* to_control = nullptr;
  std::vector<rte_ring*> handoff_in;   // by source worker (nullptr for self)
  std::vector<rte_ring*> handoff_out;  // by destination worker (nullptr for self)
  struct Staged {
    std::uint16_t count = 0;
    std::array<rte_mbuf*, 2 * kBurstSize> packets{};
  };
  std::vector<Staged> staged;  // by destination worker
  std::array<PacketIn, kBurstSize> in{};
  std::uint64_t sweep_requested = 0;  // from kSweep: sweep while it is above `swept`
  bool sweeping = false;
  std::uint64_t sweep_generation = 0;
  nat::SweepCursor sweep_cursor;
  nat::SweepCursor sweep_cursor6;
  // The persistence table's bucket to clear next, and when it last cleared some.
  std::uint32_t persist_cursor = 0;
  std::uint32_t persist_swept_ms = 0;
  DumpRequest* dump = nullptr;
  std::uint64_t dump_seq = 0;
  nat::SweepCursor dump_cursor;   // the IPv4 table, then
  nat::SweepCursor dump_cursor6;  // the IPv6 one
  std::optional<Message> pending_reply;
};

// The BurstHandler: `worker.handler_state` is the PipelineWorker.
void ProcessBurst(WorkerContext& worker, std::uint16_t rx_port, rte_mbuf** packets,
                  std::uint16_t count);
// The PassHook.
std::uint32_t PassBegin(WorkerContext& worker);

// The same stages for one burst, callable directly (benchmarks): `handed_off` is true for
// packets another core passed over (never passed on again). Each mbuf's `port` must name the
// DPDK port it arrived on (ProcessBurst takes it as an argument instead: not every PMD sets it).
void RunBurst(PipelineWorker& pw, rte_mbuf** packets, std::uint16_t count, bool handed_off);

// Control thread, workers stopped: what PassBegin would do with the newest snapshot and a
// whole sweep, done on the worker's behalf.
void AdoptPublished(PipelineWorker& pw);
void SweepAll(PipelineWorker& pw);

// Copies up to `budget` entries' worth of `table` into `dump`, from `cursor`.
template <typename Table>
inline void DumpSome(const Table& table, nat::SweepCursor& cursor, std::uint32_t budget,
                     std::uint32_t now_ms, DumpRequest& dump) {
  table.VisitSome(cursor, budget, [&](std::uint32_t, const typename Table::EntryType& e) {
    if (Table::Expired(e, now_ms) ||
        (dump.listener_slot != kNoSlot && e.listener != dump.listener_slot)) {
      return;
    }
    if (dump.count == dump.capacity) {
      dump.truncated = true;
      return;
    }
    dump.records[dump.count++] = ConnRecord::Of(e, now_ms);
  });
}

}  // namespace fulcrum::dataplane
