// Worker lcores: the poll loop and the per-core state it owns.
//
// Theory of operation: each worker lcore runs WorkerMain on one WorkerContext, which it
// alone writes (Seastar's shard, VPP's per-thread data). A pass of the loop
//   1. loads the current configuration snapshot once (acquire), so a whole pass sees one
//      consistent snapshot;
//   2. receives a burst of up to kBurstSize packets from each of its rx queues and hands it
//      to the burst handler (the packet pipeline), which frees, drops (with a named counter)
//      or queues each packet for transmission with EnqueueTx;
//   3. flushes the tx buffers, counting whatever the NIC refuses as kTxFull drops;
//   4. bumps quiescent_epoch (release): the worker holds no reference to any snapshot
//      between passes, so once every online worker's epoch has moved past the value read
//      when a snapshot was unpublished, that snapshot may be freed (QSBR, as in YANET's
//      generation switch and DPDK's rte_rcu_qsbr).
// Idle back-off: after kSpinPasses empty passes the worker pauses (rte_pause) for
// kPausePasses more, then sleeps 10 us doubling to 1 ms per empty pass, so an idle daemon
// costs almost no CPU on a two-core machine; any received packet returns it to full speed.
// busy_poll disables the back-off. Busy and idle TSC cycles give the "load" figure.
//
// Counters are plain per-core values with a single writer. They are std::atomic only so that
// the control thread's concurrent reads are defined behaviour: the worker updates them with a
// relaxed load and store (no locked instruction), readers use relaxed loads and may see a
// value a few passes old, which is fine for statistics.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>
#include <vector>

struct rte_mbuf;

namespace fulcrum::dataplane {

// Drop reasons counted by the worker loop itself. PROVISIONAL: the canonical drop-reason list
// is being written in nat/; when it lands this list should become (or include) that one.
#define FULCRUM_WORKER_DROP_REASONS(X)                                   \
  X(kNoService, "no_service")  /* no pipeline installed yet */           \
  X(kTxFull, "tx_full")        /* the tx queue refused the packet */     \
  X(kNoTxQueue, "no_tx_queue") /* this worker has no tx queue on port */ \
  X(kBadPort, "bad_port")      /* EnqueueTx to a port out of range */

enum class DropReason : std::uint8_t {
#define FULCRUM_DROP_ENUM(name, text) name,
  FULCRUM_WORKER_DROP_REASONS(FULCRUM_DROP_ENUM)
#undef FULCRUM_DROP_ENUM
};

inline constexpr std::size_t kDropReasonCount = 0
#define FULCRUM_DROP_COUNT(name, text) +1
    FULCRUM_WORKER_DROP_REASONS(FULCRUM_DROP_COUNT)
#undef FULCRUM_DROP_COUNT
    ;

// "no_service", ... (the name the CLI and stats show).
std::string_view DropReasonName(DropReason reason);

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
  Counter busy_cycles;  // TSC cycles of passes that received packets
  Counter idle_cycles;  // TSC cycles of empty passes, pauses and sleeps included
  std::array<Counter, kDropReasonCount> drops;

  void Drop(DropReason reason, std::uint64_t n = 1) {
    drops[static_cast<std::size_t>(reason)].Add(n);
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

// Defined by the snapshot publisher (next task); workers only carry the pointer.
struct ConfigSnapshot;

struct WorkerContext;

// Processes one received burst: every packet must be freed, dropped with a counter, or
// passed to EnqueueTx. Runs on the worker lcore: no locks, no allocation, no syscalls.
using BurstHandler = void (*)(WorkerContext& worker, std::uint16_t rx_port, rte_mbuf** packets,
                              std::uint16_t count);

// The default handler until the pipeline exists: counts and frees every packet as kNoService.
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
  void* handler_state = nullptr;  // owned by whoever installed the handler

  // Written by the control thread.
  std::atomic<bool> stop{false};
  // The snapshot to use from the next pass on; the publisher stores (release), the worker
  // loads it once per pass (acquire) into `snapshot`.
  std::atomic<const ConfigSnapshot*> published_snapshot{nullptr};

  // Written by the worker only.
  alignas(64) std::atomic<std::uint64_t> quiescent_epoch{0};
  // True while WorkerMain runs; a worker that is not online holds no snapshot.
  std::atomic<bool> online{false};
  const ConfigSnapshot* snapshot = nullptr;  // this pass's snapshot
  std::uint64_t tsc = 0;                     // rte_rdtsc() at the start of this pass
  std::array<TxBuffer, kMaxPortIds> tx;      // indexed by DPDK port id
  WorkerCounters counters;
};

// Queues `packet` for transmission on `port_id`; flushes when the buffer is full. Packets
// that cannot be sent are freed and counted.
void EnqueueTx(WorkerContext& worker, std::uint16_t port_id, rte_mbuf* packet);

// Transmits every buffered packet.
void FlushTx(WorkerContext& worker);

// The lcore entry point for rte_eal_remote_launch; `arg` is the WorkerContext*. Returns 0
// after `stop` is set.
int WorkerMain(void* arg);

}  // namespace fulcrum::dataplane
