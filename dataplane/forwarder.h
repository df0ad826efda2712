// The forwarding engine's control side: snapshots, neighbours, rings, sweeps and statistics.
//
// Theory of operation: Forwarder owns everything the packet pipeline (dataplane/pipeline.h)
// needs besides the Dataplane's ports and lcores: one PipelineWorker per worker (connection
// table, fnat port pools, message rings, hand-off rings, per-slot counters), the slot
// bookkeeping, the published configuration snapshot and neighbour map, and the neighbour cache.
// It runs on the control thread only (lbd's main thread: Apply, Tick and the read-only calls
// come from the control plane through ctl::DpdkDataplaneLink).
//
//   Apply(model)  compiles a ConfigSnapshot (dataplane/snapshot.h), stores it in every worker's
//                 published_snapshot and waits for a grace period (dataplane/epoch.h): it
//                 returns when every worker runs it, or kTimeout after apply_timeout. The
//                 replaced snapshot is freed once no worker can hold it. If the new snapshot
//                 retires slots or kills backends, every worker is asked to sweep its table;
//                 retired slots are reused only after every worker has swept past them.
//                 Apply also asks for the MACs of the new next hops and announces new VIPs
//                 with gratuitous ARP.
//   Tick()        drains the workers' reports (ARP seen, next hops to resolve, dump replies),
//                 ages the neighbour cache and sends its ARP requests (through a worker that
//                 has a tx queue on the port: the control thread never touches the queues
//                 while workers run), publishes a new NeighborMap when the cache changed,
//                 reclaims retired objects and slots, and samples the rates.
//   Stats, Connections, ActiveConnections, Describe  read the per-core counters (relaxed
//                 loads) and dump connections over the message rings (bounded, incremental).
//
// fnat replies are steered to their owner core by rte_flow where a port accepts the rules
// (dataplane/flow_rules.h); elsewhere the pipeline hands them over in software. Describe says
// which, per port.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/model.h"
#include "common/status.h"
#include "dataplane/dataplane.h"
#include "dataplane/epoch.h"
#include "dataplane/flow_rules.h"
#include "dataplane/pipeline.h"
#include "dataplane/snapshot.h"
#include "nat/neighbor_table.h"

struct rte_flow;

namespace fulcrum::dataplane {

struct ForwarderOptions {
  // Connection entries per worker; 0 = the config's conn_table.capacity_per_worker.
  std::uint32_t conn_capacity = 0;
  // IPv6 connection entries per worker; 0 = the config's (ConnTableConfig::Ipv6Capacity).
  std::uint32_t conn_capacity6 = 0;
  std::uint32_t listener_slots = SlotState::kDefaultListenerSlots;
  std::uint32_t backend_slots = SlotState::kDefaultBackendSlots;
  std::chrono::milliseconds apply_timeout{5000};
  // How long Connections waits for the workers' dumps.
  std::chrono::milliseconds dump_timeout{2000};
  nat::NeighborCacheOptions neighbors;
  CompileOptions compile;
  // How often Tick samples the rates.
  std::chrono::milliseconds rate_interval{1000};
};

class Forwarder {
 public:
  // The Dataplane must be stopped; the pipeline is installed on its workers, who run it from
  // the next Start.
  static Result<std::unique_ptr<Forwarder>> Create(Dataplane& dataplane,
                                                   const ForwarderOptions& options = {});
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;
  // Stops the workers and puts the default handler back.
  ~Forwarder();

  Status Apply(const model::Model& model);
  void Tick();

  // The `stats` result of docs/ctl-protocol.md without "target"; empty ids = everything.
  nlohmann::json Stats(const std::vector<std::string>& listener_ids);
  // conn.list entries of one listener ("" = all), at most `limit`.
  nlohmann::json Connections(const std::string& listener_id, std::size_t limit);
  // Active connections of `backend` ("198.18.1.11:80") under `listener_id`, all workers.
  std::uint64_t ActiveConnections(const std::string& listener_id, const std::string& backend);
  // Dataplane::Describe plus steering, load, connection table and neighbours.
  nlohmann::json Describe();

  // For tests and tools.
  std::size_t worker_count() const { return workers_.size(); }
  const PipelineWorker& pipeline(std::size_t worker) const { return *workers_[worker]; }
  PipelineWorker& pipeline(std::size_t worker) { return *workers_[worker]; }
  const nat::NeighborCache& neighbor_cache() const { return neighbors_; }
  const nat::NeighborCache6& neighbor_cache6() const { return neighbors6_; }
  std::uint64_t generation() const { return generation_; }
  const ConfigSnapshot* snapshot() const { return current_; }
  SteeringMode steering(std::size_t port) const { return steering_[port].mode; }
  // The lowest generation every worker has swept.
  std::uint64_t SweptGeneration() const;
  std::size_t retired_slots() const {
    return slots_.listeners.retired() + slots_.backends.retired();
  }
  std::optional<std::uint32_t> ListenerSlot(const std::string& listener_id) const;
  // Learns a neighbour as if a worker had reported it (tests, static neighbours).
  void LearnNeighbor(std::uint32_t ip, const nat::MacAddress& mac, std::uint8_t port);
  void LearnNeighbor(const nat::Ip6& ip, const nat::MacAddress& mac, std::uint8_t port);

 private:
  struct PortSteeringState {
    SteeringMode mode = SteeringMode::kSoftware;
    std::string reason;
    std::vector<rte_flow*> flows;
  };
  struct Totals {
    std::uint64_t new_conns = 0;
    std::uint64_t active_conns = 0;
    std::uint64_t rx_packets = 0;
    std::uint64_t rx_bytes = 0;
    std::uint64_t tx_packets = 0;
    std::uint64_t tx_bytes = 0;
  };
  struct Sample {
    std::chrono::steady_clock::time_point at{};
    std::uint64_t packets = 0;
    std::uint64_t bytes = 0;
    std::uint64_t new_conns = 0;
  };
  struct Rates {
    double pps = 0;
    double bps = 0;
    double new_conns_per_s = 0;
  };
  struct WorkerLoad {
    std::uint64_t busy = 0;
    std::uint64_t idle = 0;
    double ratio = 0;
  };
  struct Dump {
    std::uint32_t worker = 0;
    DumpRequest request;
    std::vector<ConnRecord> records;
    bool done = false;
  };

  Forwarder(Dataplane& dataplane, const ForwarderOptions& options);

  Status CreateWorkers();
  Status CreateRings();
  std::uint32_t SenderRxDescriptors(std::uint32_t w) const;
  void InstallSteering();
  Status Publish(std::unique_ptr<ConfigSnapshot> snapshot);
  void RequestSweeps(std::uint64_t generation);
  void SendSweeps();
  void ReclaimSlots();
  void ReclaimRetired();
  void AfterApply(const std::vector<std::uint32_t>& old_vips,
                  const std::vector<nat::Ip6>& old_vips6, bool layout_changed);
  void ProcessReports();
  void TickNeighbors();
  void PublishNeighbors();
  void SendArp(std::uint8_t port, std::uint32_t sender_ip, std::uint32_t target_ip);
  // A neighbour solicitation for `target` from the port's IPv6 address (none: nothing sent).
  void SendSolicitation(std::uint8_t port, const nat::Ip6& target);
  // An unsolicited advertisement of `ip` to every node on the port's link.
  void SendAdvertisement(std::uint8_t port, const nat::Ip6& ip);
  // Sends a control frame of `length` bytes that `build` writes, out of `port`; `flags` are
  // the kTransmit message's.
  template <typename Build>
  void SendControlFrame(std::uint8_t port, std::size_t length, std::uint8_t flags, Build build);
  bool SendToWorker(std::uint32_t worker, Message message);
  void SampleRates();
  std::uint64_t NowMs() const;

  Totals ListenerTotals(std::uint32_t slot) const;
  Totals RawListenerTotals(std::uint32_t slot) const;
  Rates RatesOf(const Sample& before, const Sample& after) const;
  nlohmann::json ListenerJson(const ListenerConfig& listener) const;
  nlohmann::json ConnJson(std::uint32_t worker, const ConnRecord& record) const;
  bool RunDumps(std::vector<std::unique_ptr<Dump>>& dumps);

  Dataplane& dataplane_;
  ForwarderOptions options_;
  std::uint32_t instance_ = 0;  // makes ring names unique within the process
  PipelineShared shared_;
  std::optional<nat::PersistTable> persist_;  // shared_.persist
  std::vector<std::unique_ptr<PipelineWorker>> workers_;
  std::vector<PortSteeringState> steering_;
  std::vector<rte_ring*> rings_;  // every ring created, for the destructor
  GracePeriods grace_;
  SlotState slots_;
  std::uint64_t generation_ = 0;
  const ConfigSnapshot* current_ = nullptr;
  const nat::NeighborMap* neighbor_map_ = nullptr;
  const nat::NeighborMap6* neighbor_map6_ = nullptr;
  nat::NeighborCache neighbors_;
  nat::NeighborCache6 neighbors6_;
  std::vector<std::optional<nat::Ip6>> port_address6_;  // by port: its IPv6 address, if any
  std::map<std::uint32_t, Totals> baselines_;  // by listener slot: counters when it was given
  std::map<std::string, std::uint32_t> listener_slots_;  // id -> slot, current snapshot
  std::vector<std::uint64_t> sweep_backlog_;  // by worker: a kSweep the ring had no room for
  std::uint64_t dump_seq_ = 0;
  std::map<std::uint64_t, std::unique_ptr<Dump>> dumps_in_flight_;  // by seq
  std::chrono::steady_clock::time_point started_;
  Sample previous_sample_;
  Sample latest_sample_;
  std::map<std::uint32_t, Sample> listener_previous_;
  std::map<std::uint32_t, Sample> listener_latest_;
  std::vector<WorkerLoad> load_previous_;
  std::vector<WorkerLoad> load_;
};

}  // namespace fulcrum::dataplane
