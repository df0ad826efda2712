// Dataplane: owns EAL, the mbuf pools, the ports and the worker lcores of one lbd process.
//
// Theory of operation: Create brings everything up to the point where packets could flow
// (EAL initialised, one mbuf pool per NUMA socket in use, every port configured with one rx
// and one tx queue per worker where the device allows, a WorkerContext per worker lcore with
// its queues assigned); Start starts the ports (the first time) and launches WorkerMain on
// every worker lcore; Stop raises every worker's stop flag and waits for the lcores. The ports
// stay started while the Dataplane lives (a stopped data plane's rx rings fill and the NIC
// counts rx_missed), so Start and Stop may alternate cheaply. The destructor stops the
// workers, stops and closes the ports and cleans EAL up, after which no Dataplane can be
// created again in this process (a DPDK limit).
//
// Threads: Create, Start, Stop, SetBurstHandler, SetPipeline and the destructor run on the main
// lcore's thread (the one that called Create). Describe and the accessors may run on any control
// thread: they read worker counters with relaxed loads (see worker.h) and the ethdev stats,
// which DPDK allows concurrently with the data path.
//
// Queue assignment: worker i polls rx queue i and transmits on tx queue i of every port that
// has that many queues. A worker beyond a port's queue count neither receives from nor
// transmits on that port (PortInfo::needs_handoff): the pipeline hands what it sends there to a
// worker that has a queue (dataplane/pipeline.h); EnqueueTx itself counts it as no_tx_queue.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/daemon_config.h"
#include "common/status.h"
#include "dataplane/eal.h"
#include "dataplane/worker.h"

struct rte_mempool;

namespace fulcrum::dataplane {

struct DataplaneHooks {
  // Runs once EAL is initialised, before the ports are looked up and configured. Tests use it
  // to replace a net_ring vdev by one built on rings of their own (rte_eth_from_rings).
  std::function<Status()> after_eal_init;
};

class Dataplane {
 public:
  // Initialises EAL (once per process) and configures pools, ports and workers.
  static Result<std::unique_ptr<Dataplane>> Create(const DaemonConfig& config,
                                                   const DataplaneHooks& hooks = {});

  Dataplane(const Dataplane&) = delete;
  Dataplane& operator=(const Dataplane&) = delete;
  ~Dataplane();

  // Starts the ports and launches the workers.
  Status Start();
  // Stops the workers and waits for them; the ports stay started. Idempotent.
  void Stop();
  bool running() const { return running_; }

  // {"ports": [...], "workers": [...]} for the status command (docs/config.md lists fields).
  nlohmann::json Describe() const;

  const DaemonConfig& config() const { return config_; }

  std::size_t port_count() const { return ports_.size(); }
  // Ports in config order; index i is config().ports[i].
  const PortInfo& port(std::size_t index) const { return ports_[index]; }
  // nullptr when no port has that name.
  const PortInfo* FindPort(std::string_view name) const;

  std::size_t worker_count() const { return workers_.size(); }
  WorkerContext& worker(std::size_t index) { return *workers_[index]; }
  const WorkerContext& worker(std::size_t index) const { return *workers_[index]; }

  // The mbuf pool of a NUMA socket (every port's socket has one); nullptr otherwise.
  rte_mempool* mbuf_pool(int socket) const;

  // Installs `handler` (with its `state`) on every worker, without a pass hook. Only while
  // stopped.
  Status SetBurstHandler(BurstHandler handler, void* state);
  // Installs a packet pipeline: `handler` and `hook` on every worker, worker i with
  // states[i]. Only while stopped.
  Status SetPipeline(BurstHandler handler, PassHook hook, const std::vector<void*>& states);

 private:
  explicit Dataplane(const DaemonConfig& config) : config_(config) {}

  Status CreatePools();
  Status ConfigurePorts();
  void CreateWorkers(const std::vector<std::uint32_t>& cpus);
  void StopPorts();

  DaemonConfig config_;
  std::map<int, rte_mempool*> pools_;  // by NUMA socket
  std::vector<PortInfo> ports_;
  std::vector<std::unique_ptr<WorkerContext>> workers_;
  bool ports_started_ = false;
  bool running_ = false;
};

}  // namespace fulcrum::dataplane
