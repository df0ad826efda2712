#include "dataplane/worker.h"

#include <algorithm>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_pause.h>

namespace fulcrum::dataplane {
namespace {

using nat::DropReason;

// Counts how long the worker has found nothing to do and decides how to wait.
class IdleBackoff {
 public:
  void Reset() {
    empty_passes_ = 0;
    sleep_us_ = kFirstSleepUs;
  }

  void Wait() {
    ++empty_passes_;
    if (empty_passes_ <= kSpinPasses) {
      return;
    }
    if (empty_passes_ <= kSpinPasses + kPausePasses) {
      rte_pause();
      return;
    }
    rte_delay_us_sleep(sleep_us_);
    sleep_us_ = std::min(sleep_us_ * 2, kMaxSleepUs);
  }

 private:
  std::uint32_t empty_passes_ = 0;
  std::uint32_t sleep_us_ = kFirstSleepUs;
};

// Receives one burst from each rx queue and hands it to the handler; returns the number of
// packets received.
std::uint32_t PollRxQueues(WorkerContext& worker) {
  std::uint32_t received = 0;
  rte_mbuf* burst[kBurstSize];
  for (const RxQueue& queue : worker.rx_queues) {
    std::uint16_t count = rte_eth_rx_burst(queue.port_id, queue.queue_id, burst, kBurstSize);
    if (count == 0) {
      continue;
    }
    std::uint64_t bytes = 0;
    for (std::uint16_t i = 0; i < count; ++i) {
      bytes += rte_pktmbuf_pkt_len(burst[i]);
    }
    worker.counters.rx_packets.Add(count);
    worker.counters.rx_bytes.Add(bytes);
    worker.handler(worker, queue.port_id, burst, count);
    received += count;
  }
  return received;
}

}  // namespace

void FlushPort(WorkerContext& worker, std::uint16_t port_id, TxBuffer& buffer) {
  std::uint64_t bytes = 0;
  for (std::uint16_t i = 0; i < buffer.count; ++i) {
    bytes += rte_pktmbuf_pkt_len(buffer.packets[i]);
  }
  std::uint16_t sent =
      rte_eth_tx_burst(port_id, buffer.queue_id, buffer.packets.data(), buffer.count);
  if (sent < buffer.count) {
    for (std::uint16_t i = sent; i < buffer.count; ++i) {
      bytes -= rte_pktmbuf_pkt_len(buffer.packets[i]);
    }
    DropAndFree(worker, DropReason::kTxFull, buffer.packets.data() + sent,
                static_cast<std::uint16_t>(buffer.count - sent));
  }
  worker.counters.tx_packets.Add(sent);
  worker.counters.tx_bytes.Add(bytes);
  buffer.count = 0;
}

void DropAndFree(WorkerContext& worker, DropReason reason, rte_mbuf** packets,
                 std::uint16_t count) {
  worker.counters.Drop(reason, count);
  rte_pktmbuf_free_bulk(packets, count);
}

void DropAllNoService(WorkerContext& worker, std::uint16_t /*rx_port*/, rte_mbuf** packets,
                      std::uint16_t count) {
  DropAndFree(worker, DropReason::kNoService, packets, count);
}

void FlushTx(WorkerContext& worker) {
  for (std::uint16_t port_id : worker.tx_ports) {
    TxBuffer& buffer = worker.tx[port_id];
    if (buffer.count > 0) {
      FlushPort(worker, port_id, buffer);
    }
  }
}

std::uint32_t RunPass(WorkerContext& worker) {
  worker.tsc = rte_rdtsc();
  std::uint32_t work = worker.pass_hook != nullptr ? worker.pass_hook(worker) : 0;
  work += PollRxQueues(worker);
  FlushTx(worker);
  // Single writer: a plain increment. Sequentially consistent (a full barrier) so that the
  // next pass's load of the published snapshot cannot be ordered before it (dataplane/epoch.h).
  worker.quiescent_epoch.store(worker.quiescent_epoch.load(std::memory_order_relaxed) + 1,
                               std::memory_order_seq_cst);
  worker.counters.passes.Add(1);
  return work;
}

int WorkerMain(void* arg) {
  WorkerContext& worker = *static_cast<WorkerContext*>(arg);
  worker.online.store(true);
  IdleBackoff backoff;
  while (!worker.stop.load(std::memory_order_relaxed)) {
    const std::uint32_t work = RunPass(worker);
    if (work > 0) {
      backoff.Reset();
    } else if (!worker.busy_poll) {
      backoff.Wait();
    }
    const std::uint64_t cycles = rte_rdtsc() - worker.tsc;
    (work > 0 ? worker.counters.busy_cycles : worker.counters.idle_cycles).Add(cycles);
  }
  worker.online.store(false, std::memory_order_release);
  return 0;
}

}  // namespace fulcrum::dataplane
