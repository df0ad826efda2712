// Worker lcores: the poll loop and the per-core state it owns.
//
// Theory of operation: each worker lcore runs WorkerMain on one WorkerContext, which it
// alone writes (Seastar's shard, VPP's per-thread data). A pass of the loop
//   1. runs the pass hook, if one is installed: the packet pipeline adopts the newest
//      configuration snapshot there, serves its message ring, takes the packets other cores
//      handed over and reclaims a few expired connections (dataplane/pipeline.h);
//   2. receives a burst of up to kBurstSize packets from each of its rx queues and hands it
//      to the burst handler, which frees, drops (with a named counter) or queues each packet
//      for transmission with EnqueueTx;
//   3. flushes the tx buffers, counting whatever the NIC refuses as tx_full drops;
//   4. bumps quiescent_epoch (release). The epoch is the grace-period clock of everything the
//      control thread publishes to workers (dataplane/epoch.h): an object unpublished when a
//      worker's epoch read E is out of that worker's hands once the epoch reaches E + 2.
// Idle back-off: after kSpinPasses empty passes the worker pauses (rte_pause) for
// kPausePasses more, then sleeps 10 us doubling to 1 ms per empty pass, so an idle daemon
// costs almost no CPU on a two-core machine; any received packet (or work the pass hook
// reports) returns it to full speed. busy_poll disables the back-off. Busy and idle TSC cycles
// give the "load" figure.
//
// Counters are plain per-core values with a single writer. They are std::atomic only so that
// the control thread's concurrent reads are defined behaviour: the worker updates them with a
// relaxed load and store (no locked instruction), readers use relaxed loads and may see a
// value a few passes old, which is fine for statistics. Drops are counted by the reasons of
// nat/drop_reasons.h, the one list every drop counter comes from.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>
#include <vector>

#include "nat/drop_reasons.h"

struct rte_mbuf;

namespace fulcrum::dataplane {

// Events the workers count that are not drops (docs/dataplane.md describes each).
// X(enumerator, name)
#define FULCRUM_WORKER_EVENTS(X)                                                               \
  X(kHandoffs, "handoffs")                       /* packets handed to the owning core */       \
  X(kHandoffsReceived, "handoffs_received")      /* packets taken from other cores */          \
  X(kTxHandoffs, "tx_handoffs")                  /* sent through a core with a tx queue */     \
  X(kTableFullFallbacks, "table_full_fallbacks") /* dnat flows forwarded without state */      \
  X(kArpRepliesSent, "arp_replies_sent")         /* answers to requests for our addresses */   \
  X(kArpRequests, "arp_requests")                /* requests sent for the control thread */    \
  X(kArpLearned, "arp_learned")                  /* ARP senders reported to the control */     \
  X(kArpResolveRequests, "arp_resolve_requests") /* unresolved next hops reported */           \
  X(kIcmpEchoReplies, "icmp_echo_replies")                                                     \
  X(kIcmpErrorsTranslated, "icmp_errors_translated")                                           \
  X(kTcpResetsSent, "tcp_resets_sent")                                                         \
  X(kConnsRescheduled, "conns_rescheduled") /* flows of a dead backend scheduled again */      \
  X(kConnsFlushed, "conns_flushed")         /* removed by a sweep (listener/backend gone) */   \
  X(kConnsExpired, "conns_expired")                                                            \
  X(kControlRingFull, "control_ring_full")       /* reports to the control thread lost */      \
  X(kPersistHits, "persist_hits")                /* new conns sent to the client's backend */  \
  X(kPersistRecorded, "persist_recorded")        /* clients given a persistence entry */       \
  X(kPersistMoved, "persist_moved")              /* its backend was down, at weight 0, gone */ \
  X(kPersistEvicted, "persist_evicted")          /* live entries replaced: bucket full */      \
  X(kPersistContended, "persist_contended")      /* not recorded: the bucket kept changing */  \
  X(kClientAddrInserted, "client_addr_inserted") /* Proxy Protocol headers, TOA options */     \
  X(kClientAddrTrimmed, "client_addr_trimmed")   /* segments that gave up data for one */      \
  X(kToaNoRoom, "toa_no_room")                   /* segments without option space for TOA */

enum class WorkerEvent : std::uint8_t {
#define FULCRUM_EVENT_ENUM(name, text) name,
  FULCRUM_WORKER_EVENTS(FULCRUM_EVENT_ENUM)
#undef FULCRUM_EVENT_ENUM
};

inline constexpr std::size_t kWorkerEventCount = 0
#define FULCRUM_EVENT_COUNT(name, text) +1
    FULCRUM_WORKER_EVENTS(FULCRUM_EVENT_COUNT)
#undef FULCRUM_EVENT_COUNT
    ;

inline constexpr std::string_view kWorkerEventNames[] = {
#define FULCRUM_EVENT_NAME(name, text) text,
    FULCRUM_WORKER_EVENTS(FULCRUM_EVENT_NAME)
#undef FULCRUM_EVENT_NAME
};

// "handoffs", ... (the name the CLI and stats show).
constexpr std::string_view WorkerEventName(WorkerEvent event) {
  return kWorkerEventNames[static_cast<std::size_t>(event)];
}

inline constexpr std::uint16_t kBurstSize = 32;
inline constexpr std::uint16_t kNoQueue = 0xffff;
// DPDK port ids a worker can transmit on (RTE_MAX_ETHPORTS in Debian's build).
inline constexpr std::uint16_t kMaxPortIds = 32;
inline constexpr std::uint32_t kSpinPasses = 64;
inline constexpr std::uint32_t kPausePasses = 256;
inline constexpr std::uint32_t kFirstSleepUs = 10;
inline constexpr std::uint32_t kMaxSleepUs = 1000;

// A single-writer counter: see the header comment.
class Counter {
 public:
  void Add(std::uint64_t n) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  // For gauges (active connections): the writer may go down as well as up.
  void Sub(std::uint64_t n) {
    value_.store(value_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  std::uint64_t Read() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

struct WorkerCounters {
  Counter rx_packets;
  Counter rx_bytes;
  Counter tx_packets;
  Counter tx_bytes;
  Counter passes;
  Counter busy_cycles;  // TSC cycles of passes that did work
  Counter idle_cycles;  // TSC cycles of empty passes, pauses and sleeps included
  Counter new_conns;
  Counter active_conns;                              // gauge
  std::array<Counter, nat::kDropReasonCount> drops;  // by nat::DropReason (kNone unused)
  std::array<Counter, kWorkerEventCount> events;

  void Drop(nat::DropReason reason, std::uint64_t n = 1) {
    drops[static_cast<std::size_t>(reason)].Add(n);
  }
  void Count(WorkerEvent event, std::uint64_t n = 1) {
    events[static_cast<std::size_t>(event)].Add(n);
  }
  std::uint64_t Drops(nat::DropReason reason) const {
    return drops[static_cast<std::size_t>(reason)].Read();
  }
  std::uint64_t Events(WorkerEvent event) const {
    return events[static_cast<std::size_t>(event)].Read();
  }
};

// One rx queue a worker polls.
struct RxQueue {
  std::uint16_t port_id = 0;
  std::uint16_t queue_id = 0;
};

// Packets waiting for rte_eth_tx_burst on one port.
struct TxBuffer {
  std::uint16_t queue_id = kNoQueue;
  std::uint16_t count = 0;
  std::array<rte_mbuf*, kBurstSize> packets{};
};

struct WorkerContext;

// Processes one received burst: every packet must be freed, dropped with a counter, or
// passed to EnqueueTx. Runs on the worker lcore: no locks, no allocation, no syscalls.
using BurstHandler = void (*)(WorkerContext& worker, std::uint16_t rx_port, rte_mbuf** packets,
                              std::uint16_t count);

// Runs at the start of every pass, before the rx queues are polled. Returns how much work it
// did (packets, messages); non-zero keeps the worker from backing off.
using PassHook = std::uint32_t (*)(WorkerContext& worker);

// The default handler until the pipeline exists: counts and frees every packet as no_service.
void DropAllNoService(WorkerContext& worker, std::uint16_t rx_port, rte_mbuf** packets,
                      std::uint16_t count);

struct alignas(64) WorkerContext {
  // Set before launch, read-only while running.
  std::uint32_t index = 0;     // 0 .. workers-1
  std::uint32_t lcore_id = 0;  // EAL lcore (index + 1; lcore 0 is the main lcore)
  std::uint32_t cpu = 0;
  bool busy_poll = false;
  std::vector<RxQueue> rx_queues;
  std::vector<std::uint16_t> tx_ports;  // port ids where tx[port].queue_id != kNoQueue
  BurstHandler handler = DropAllNoService;
  PassHook pass_hook = nullptr;
  void* handler_state = nullptr;  // owned by whoever installed the handler

  // Written by the control thread.
  std::atomic<bool> stop{false};

  // Written by the worker only.
  alignas(64) std::atomic<std::uint64_t> quiescent_epoch{0};
  // True while WorkerMain runs.
  std::atomic<bool> online{false};
  std::uint64_t tsc = 0;                 // rte_rdtsc() at the start of this pass
  std::array<TxBuffer, kMaxPortIds> tx;  // indexed by DPDK port id
  WorkerCounters counters;
};

// Counts and frees `count` packets.
void DropAndFree(WorkerContext& worker, nat::DropReason reason, rte_mbuf** packets,
                 std::uint16_t count);

// Transmits the packets buffered for `port_id`, counting what the NIC refuses as tx_full.
void FlushPort(WorkerContext& worker, std::uint16_t port_id, TxBuffer& buffer);

// Queues `packet` for transmission on `port_id`; flushes when the buffer is full. Packets
// that cannot be sent are freed and counted (no_tx_queue, tx_full). Inline: every forwarded
// packet comes through here.
inline void EnqueueTx(WorkerContext& worker, std::uint16_t port_id, rte_mbuf* packet) {
  if (port_id >= kMaxPortIds || worker.tx[port_id].queue_id == kNoQueue) {
    DropAndFree(worker, nat::DropReason::kNoTxQueue, &packet, 1);
    return;
  }
  TxBuffer& buffer = worker.tx[port_id];
  buffer.packets[buffer.count++] = packet;
  if (buffer.count == kBurstSize) {
    FlushPort(worker, port_id, buffer);
  }
}

// Transmits every buffered packet.
void FlushTx(WorkerContext& worker);

// One pass of the worker loop: stamp tsc, run the pass hook, receive a burst from every rx
// queue and hand it to the handler, flush the tx buffers, bump quiescent_epoch. Returns the work
// done (the hook's plus the packets received). WorkerMain runs it with the idle back-off in
// between; a benchmark may run it directly on a stopped Dataplane's worker.
std::uint32_t RunPass(WorkerContext& worker);

// The lcore entry point for rte_eal_remote_launch; `arg` is the WorkerContext*. Returns 0
// after `stop` is set.
int WorkerMain(void* arg);

}  // namespace fulcrum::dataplane
