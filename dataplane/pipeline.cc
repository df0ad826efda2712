#include "dataplane/pipeline.h"

#include <algorithm>
#include <cstring>
#include <span>

#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

namespace fulcrum::dataplane {
namespace {

using nat::ConnEntry;
using nat::DropReason;

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
constexpr std::uintptr_t kTxOnlyTag = 1;
constexpr std::uint32_t kHandoffDrainBursts = 8;
// RunBurstFrom's rx_port for packets whose mbufs name their port (handed over by another core).
constexpr std::uint32_t kPortInMbuf = 0xffffffffu;

std::span<std::uint8_t> FrameOf(rte_mbuf* m) {
  return {rte_pktmbuf_mtod(m, std::uint8_t*), rte_pktmbuf_data_len(m)};
}

// The port index a packet arrived on; kNoPortIndex for a port the pipeline does not know.
std::uint8_t PortIndexOf(const PipelineWorker& pw, const rte_mbuf* m) {
  return m->port < kMaxPortIds ? pw.shared->port_index[m->port] : kNoPortIndex;
}

void Drop(PipelineWorker& pw, rte_mbuf* m, DropReason reason) {
  pw.counters->Drop(reason);
  rte_pktmbuf_free(m);
}

void Count(PipelineWorker& pw, WorkerEvent event, std::uint64_t n = 1) {
  pw.counters->Count(event, n);
}

}  // namespace

std::uint16_t MbufTailroom(const void* buffer) {
  const auto* m = static_cast<const rte_mbuf*>(buffer);
  return m->nb_segs == 1 ? rte_pktmbuf_tailroom(m) : 0;
}

namespace {

auto FreeFn(PipelineWorker& pw) {
  return [&pw](const auto& e) { ReleaseConn(pw, e); };
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
[[gnu::always_inline]] inline void Transmit(PipelineWorker& pw, std::uint8_t port, rte_mbuf* m) {
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

// ---- actions

// Sends the reports the burst's decisions queued; refused (and counted) when only the reply
// reserve is left.
void SendReports(PipelineWorker& pw) {
  for (std::uint16_t i = 0; i < pw.report_count; ++i) {
    if (rte_ring_free_count(pw.to_control) <= kReplyReserve ||
        rte_ring_enqueue_elem(pw.to_control, &pw.reports[i], sizeof(Message)) != 0) {
      Count(pw, WorkerEvent::kControlRingFull);
    }
  }
  pw.report_count = 0;
}

// Moves the start of `m`'s frame by `offset` bytes and makes it `length` bytes long, within the
// room the decision had (PacketIn::headroom, MbufTailroom()): a single segment's fields set
// directly, a chain through DPDK's checked calls.
void Reframe(rte_mbuf* m, std::int16_t offset, std::uint16_t length) {
  if (m->nb_segs == 1) [[likely]] {
    m->data_off = static_cast<std::uint16_t>(m->data_off + offset);
    m->data_len = length;
    m->pkt_len = length;
    return;
  }
  if (offset > 0) {
    rte_pktmbuf_adj(m, static_cast<std::uint16_t>(offset));
  } else if (offset < 0) {
    // Within PacketIn::headroom, the first segment's: cannot fail.
    rte_pktmbuf_prepend(m, static_cast<std::uint16_t>(-offset));
  }
  const std::uint32_t now = rte_pktmbuf_pkt_len(m);
  if (length < now) {
    rte_pktmbuf_trim(m, static_cast<std::uint16_t>(now - length));
  } else if (length > now) {
    // Within MbufTailroom(), 0 for a chain: not reached.
    rte_pktmbuf_append(m, static_cast<std::uint16_t>(length - now));
  }
}

// Carries out the decisions on the burst's mbufs, in burst order. `rx_port`: as RunBurstFrom's;
// a packet handed to another core carries it in its mbuf.
void Act(PipelineWorker& pw, rte_mbuf** packets, std::span<const Action> actions,
         std::uint32_t rx_port) {
  std::array<rte_mbuf*, kBurstSize> freed;
  unsigned free_count = 0;
  for (std::size_t i = 0; i < actions.size(); ++i) {
    const Action& action = actions[i];
    rte_mbuf* m = packets[i];
    if (action.verb == Verb::kSend) [[likely]] {
      if (action.length != 0) [[unlikely]] {  // set whenever the offset is
        Reframe(m, action.offset, action.length);
      }
      Transmit(pw, action.port, m);
    } else if (action.verb == Verb::kHandOff) {
      if (rx_port != kPortInMbuf) {
        m->port = static_cast<std::uint16_t>(rx_port);
      }
      Stage(pw, action.owner, m);
    } else {
      freed[free_count++] = m;  // dropped (counted) or consumed
    }
  }
  if (free_count != 0) {
    rte_pktmbuf_free_bulk(freed.data(), free_count);
  }
}

// ---- pass work

void Adopt(PipelineWorker& pw, const ConfigSnapshot* next) {
  AdoptSnapshot(pw, next);
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
        pw.dump_cursor6 = {};
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
    pw.sweep_cursor6 = {};
  }
  const ConfigSnapshot& snap = *pw.snapshot;
  const auto dead = [&snap](const auto& e) { return snap.ConnDead(e.listener, e.backend); };
  // IPv4 first, then IPv6, a budget per pass.
  const std::uint32_t erased =
      !pw.sweep_cursor.done
          ? pw.table.EraseIfSome(pw.sweep_cursor, pw.shared->sweep_budget, dead, FreeFn(pw))
          : pw.table6.EraseIfSome(pw.sweep_cursor6, pw.shared->sweep_budget, dead, FreeFn(pw));
  Count(pw, WorkerEvent::kConnsFlushed, erased);
  if (pw.sweep_cursor.done && pw.sweep_cursor6.done) {
    pw.sweeping = false;
    pw.swept.store(pw.sweep_generation, std::memory_order_release);
  }
}

void StepDump(PipelineWorker& pw) {
  DumpRequest& dump = *pw.dump;
  if (!pw.dump_cursor.done) {
    DumpSome(pw.table, pw.dump_cursor, pw.shared->sweep_budget, pw.now_ms, dump);
  } else {
    DumpSome(pw.table6, pw.dump_cursor6, pw.shared->sweep_budget, pw.now_ms, dump);
  }
  if (pw.dump_cursor6.done || dump.truncated) {
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
  const std::uint32_t budget = ExpireBudget(pw, busy);
  std::uint32_t expired = pw.table.ExpireSome(pw.now_ms, budget, FreeFn(pw));
  if (pw.table6.size() != 0) {
    expired += pw.table6.ExpireSome(pw.now_ms, budget, FreeFn(pw));
  }
  Count(pw, WorkerEvent::kConnsExpired, expired);
  if (pw.now_ms != pw.persist_swept_ms && pw.shared->persist != nullptr) {
    pw.persist_swept_ms = pw.now_ms;
    pw.shared->persist->ExpireSome(pw.persist_cursor, pw.shared->persist_sweep_buckets,
                                   nat::PersistTable::TickOf(pw.now_ms));
  }
  StepSweep(pw);
  if (pw.dump != nullptr) {
    StepDump(pw);
  }
  return pw.sweeping || pw.dump != nullptr ? 1 : 0;
}

void UpdateClock(PipelineWorker& pw, std::uint64_t tsc) {
  pw.now_ms = static_cast<std::uint32_t>((tsc - pw.shared->tsc_base) / pw.shared->tsc_per_ms);
}

// RunBurst, for packets that arrived on DPDK port `rx_port`, or kPortInMbuf when each mbuf names
// its port (handed over by another core). Not every PMD fills in the mbuf's port (net_ring does
// not): Act writes it into the packets it hands over, whose new core reads it there.
void RunBurstFrom(PipelineWorker& pw, rte_mbuf** packets, std::uint16_t count, bool handed_off,
                  std::uint32_t rx_port) {
  pw.received += count;
  const std::uint8_t rx_index =
      rx_port < kMaxPortIds ? pw.shared->port_index[rx_port] : kNoPortIndex;
  for (std::uint16_t done = 0; done < count;) {
    const auto n = static_cast<std::uint16_t>(std::min<unsigned>(count - done, kBurstSize));
    for (std::uint16_t i = 0; i < n; ++i) {
      rte_mbuf* m = packets[done + i];
      const std::uint8_t port = rx_port == kPortInMbuf ? PortIndexOf(pw, m) : rx_index;
      pw.in[i] = PacketIn{.frame = FrameOf(m),
                          .port = port,
                          .ipv4_checksum_verified = (m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) ==
                                                    RTE_MBUF_F_RX_IP_CKSUM_GOOD,
                          .headroom = rte_pktmbuf_headroom(m)};
    }
    pw.buffers = reinterpret_cast<const void* const*>(packets + done);
    Act(pw, packets + done, DecideBurst(pw, std::span(pw.in.data(), n), handed_off), rx_port);
    done = static_cast<std::uint16_t>(done + n);
  }
  FlushStaged(pw);
  if (pw.report_count != 0) {
    SendReports(pw);
  }
}

}  // namespace

void RunBurst(PipelineWorker& pw, rte_mbuf** packets, std::uint16_t count, bool handed_off) {
  RunBurstFrom(pw, packets, count, handed_off, kPortInMbuf);
}

void ProcessBurst(WorkerContext& worker, std::uint16_t rx_port, rte_mbuf** packets,
                  std::uint16_t count) {
  RunBurstFrom(*static_cast<PipelineWorker*>(worker.handler_state), packets, count, false, rx_port);
}

std::uint32_t PassBegin(WorkerContext& worker) {
  PipelineWorker& pw = *static_cast<PipelineWorker*>(worker.handler_state);
  UpdateClock(pw, worker.tsc);
  const ConfigSnapshot* next = pw.published_snapshot.load(std::memory_order_acquire);
  if (next != pw.snapshot && next != nullptr) {
    Adopt(pw, next);
  }
  pw.neighbors = pw.published_neighbors.load(std::memory_order_acquire);
  pw.neighbors6 = pw.published_neighbors6.load(std::memory_order_acquire);
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

}  // namespace fulcrum::dataplane
