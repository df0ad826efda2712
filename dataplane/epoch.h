// Grace periods: when the control thread may free what it has unpublished from the workers.
//
// Theory of operation (quiescent-state-based reclamation, as in YANET's generation switch and
// DPDK's rte_rcu_qsbr, on the epochs the worker loop already keeps): every worker bumps its
// quiescent_epoch at the end of each pass (dataplane/worker.h). The control thread publishes
// an object by storing a pointer that workers load at the start of a pass, then takes a Ticket
// (every worker's epoch). When a worker's epoch has advanced by two past the ticket, the
// worker has completed a whole pass that began after the publish (both sides order their
// store before their load with a full barrier, as Dekker's pattern needs: the ticket after the
// publish, the worker's epoch store before the next pass's load), so
//   - it runs the new object (a change is acknowledged only then), and
//   - it no longer holds the old one: a worker keeps its adopted configuration snapshot from
//     one pass to the next (its scheduler states point into that snapshot's listeners until it
//     rebinds them to the next one's), and the pass that drops it is at the latest the first one
//     that begins after the publish, which the second epoch step proves complete.
// One rule therefore serves the configuration snapshots and the neighbour maps alike. While
// the workers are stopped (Dataplane::running() is false) nothing runs, so every ticket has
// passed; whoever publishes while stopped adopts on the workers' behalf (dataplane/forwarder.h).
//
// Threads: the control thread only (the one that starts and stops the Dataplane).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "common/status.h"
#include "dataplane/dataplane.h"

namespace fulcrum::dataplane {

class GracePeriods {
 public:
  struct Ticket {
    std::vector<std::uint64_t> epochs;  // by worker
  };

  explicit GracePeriods(const Dataplane& dataplane) : dataplane_(dataplane) {}
  GracePeriods(const GracePeriods&) = delete;
  GracePeriods& operator=(const GracePeriods&) = delete;
  // Frees whatever is still retired: only once the workers have stopped.
  ~GracePeriods();

  // Every worker's epoch now; take it after publishing.
  Ticket Start() const;
  // Whether every worker has completed a pass that began after Start(), or the workers are
  // stopped.
  bool Passed(const Ticket& ticket) const;
  // Sleeps (50 us steps) until Passed or `timeout`; kTimeout names the slow workers.
  Status Wait(const Ticket& ticket, std::chrono::milliseconds timeout) const;

  // Runs `free` once a grace period that starts now has passed (at a later Reclaim).
  void Retire(std::function<void()> free);
  // Runs the frees that are due; returns how many ran.
  std::size_t Reclaim();
  std::size_t retired() const { return retired_.size(); }

 private:
  struct Retired {
    Ticket ticket;
    std::function<void()> free;
  };

  const Dataplane& dataplane_;
  std::vector<Retired> retired_;
};

}  // namespace fulcrum::dataplane
