#include "dataplane/dataplane.h"

#include <unistd.h>

#include <algorithm>

#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mempool.h>

#include "common/log.h"
#include "dataplane/packet_fanout.h"

namespace fulcrum::dataplane {
namespace {

Logger logger("dataplane");

using json = nlohmann::json;

json OffloadsToJson(const PortOffloads& offloads) {
  return {{"ipv4_cksum", offloads.ipv4_cksum},
          {"tcp_cksum", offloads.tcp_cksum},
          {"udp_cksum", offloads.udp_cksum},
          {"multi_segs", offloads.multi_segs},
          {"rss", offloads.rss},
          {"rss_hf", offloads.rss_hf},
          {"rte_flow", offloads.rte_flow}};
}

json PortToJson(const PortInfo& port) {
  LinkState link = ReadLink(port.port_id);
  PortCounters counters = ReadPortCounters(port.port_id);
  return {{"name", port.name},
          {"driver", port.driver},
          {"device", port.device},
          {"port_id", port.port_id},
          {"socket", port.socket},
          {"mac", MacToString(port.mac)},
          {"mtu", port.mtu},
          {"link_up", link.up},
          {"speed_mbps", link.speed_mbps},
          {"promiscuous", port.promiscuous},
          {"rx_queues", port.rx_queues},
          {"tx_queues", port.tx_queues},
          {"rx_descriptors", port.rx_descriptors},
          {"tx_descriptors", port.tx_descriptors},
          {"needs_handoff", port.needs_handoff},
          {"home_worker", port.home_worker},
          {"rx_packets", counters.rx_packets},
          {"tx_packets", counters.tx_packets},
          {"rx_bytes", counters.rx_bytes},
          {"tx_bytes", counters.tx_bytes},
          {"rx_missed", counters.rx_missed},
          {"rx_errors", counters.rx_errors},
          {"tx_errors", counters.tx_errors},
          {"rx_nombuf", counters.rx_nombuf},
          {"offloads", OffloadsToJson(port.offloads)}};
}

// Every af_packet queue socket joined its fanout group through lbd's setsockopt, which clears
// the rollover flag; otherwise a port with several queues would reorder flows.
Status CheckFanoutWithoutRollover(const std::vector<PortInfo>& ports) {
  std::uint32_t sockets = 0;
  const PortInfo* multi_queue = nullptr;
  for (const PortInfo& port : ports) {
    if (port.driver == "net_af_packet") {
      sockets += port.rx_queues;
      multi_queue = port.rx_queues > 1 ? &port : multi_queue;
    }
  }
  if (multi_queue == nullptr || FanoutJoinsWithoutRollover() >= sockets) {
    return Status::Ok();
  }
  return Error(ErrorCode::kUnavailable,
               "port \"{}\": its {} af_packet queues need the kernel's fanout rollover off, and "
               "lbd could not turn it off ({} of {} sockets joined through lbd's setsockopt); "
               "give the vdev qpairs=1",
               multi_queue->name, multi_queue->rx_queues, FanoutJoinsWithoutRollover(), sockets);
}

// A queue id, or null when the worker has no queue on that port.
json QueueToJson(bool present, std::uint32_t queue) { return present ? json(queue) : json(); }

json DropsToJson(const WorkerCounters& counters) {
  json drops = json::object();
  for (const nat::DropReasonInfo& info : nat::kDropReasons) {
    drops[std::string(info.name)] = counters.Drops(info.reason);
  }
  return drops;
}

}  // namespace

Result<std::unique_ptr<Dataplane>> Dataplane::Create(const DaemonConfig& config,
                                                     const DataplaneHooks& hooks) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  Result<EalPlan> plan = BuildEalPlan(config, cpus > 0 ? static_cast<std::uint32_t>(cpus) : 1);
  FULCRUM_RETURN_IF_ERROR(plan.status());
  FULCRUM_RETURN_IF_ERROR(InitEal(*plan));
  // From here on the destructor undoes whatever was set up, EAL included.
  std::unique_ptr<Dataplane> dataplane(new Dataplane(config));
  if (hooks.after_eal_init) {
    FULCRUM_RETURN_IF_ERROR(hooks.after_eal_init());
  }
  FULCRUM_RETURN_IF_ERROR(dataplane->CreatePools());
  FULCRUM_RETURN_IF_ERROR(dataplane->ConfigurePorts());
  dataplane->CreateWorkers(plan->worker_cpus);
  return dataplane;
}

Dataplane::~Dataplane() {
  Stop();
  StopPorts();
  for (const PortInfo& port : ports_) {
    ClosePort(port);
  }
  for (const auto& [socket, pool] : pools_) {
    rte_mempool_free(pool);
  }
  CleanupEal();
}

Status Dataplane::CreatePools() {
  std::map<int, std::uint32_t> mbufs;
  std::map<int, std::uint32_t> max_mtu;
  for (const PortConfig& port : config_.ports) {
    Result<int> socket = PortSocket(port);
    FULCRUM_RETURN_IF_ERROR(socket.status());
    mbufs[*socket] += config_.mbufs_per_port;
    max_mtu[*socket] = std::max(max_mtu[*socket], port.mtu);
  }
  for (const auto& [socket, count] : mbufs) {
    Result<rte_mempool*> pool = CreateMbufPool(socket, count, max_mtu[socket]);
    FULCRUM_RETURN_IF_ERROR(pool.status());
    pools_[socket] = *pool;
  }
  return Status::Ok();
}

Status Dataplane::ConfigurePorts() {
  auto workers = static_cast<std::uint16_t>(config_.workers.count);
  for (const PortConfig& config : config_.ports) {
    Result<int> socket = PortSocket(config);
    FULCRUM_RETURN_IF_ERROR(socket.status());
    Result<PortInfo> port = ConfigurePort(config, workers, pools_.at(*socket));
    FULCRUM_RETURN_IF_ERROR(port.status());
    if (port->port_id >= kMaxPortIds) {
      return Error(ErrorCode::kNotSupported, "port \"{}\": DPDK port id {} is above {}",
                   config.name, port->port_id, kMaxPortIds - 1);
    }
    if (port->needs_handoff) {
      port->home_worker = static_cast<std::uint32_t>(ports_.size()) % workers;
    }
    ports_.push_back(std::move(*port));
  }
  return CheckFanoutWithoutRollover(ports_);
}

void Dataplane::CreateWorkers(const std::vector<std::uint32_t>& cpus) {
  for (std::uint32_t i = 0; i < cpus.size(); ++i) {
    auto worker = std::make_unique<WorkerContext>();
    worker->index = i;
    worker->lcore_id = i + 1;
    worker->cpu = cpus[i];
    worker->busy_poll = config_.busy_poll;
    const auto workers = static_cast<std::uint32_t>(cpus.size());
    for (const PortInfo& port : ports_) {
      const int rx = WorkerQueue(i, port.home_worker, port.rx_queues, workers);
      if (rx >= 0) {
        worker->rx_queues.push_back({port.port_id, static_cast<std::uint16_t>(rx)});
      }
      const int tx = WorkerQueue(i, port.home_worker, port.tx_queues, workers);
      if (tx >= 0) {
        worker->tx[port.port_id].queue_id = static_cast<std::uint16_t>(tx);
        worker->tx_ports.push_back(port.port_id);
      }
    }
    workers_.push_back(std::move(worker));
  }
}

Status Dataplane::Start() {
  if (running_) {
    return Status::Ok();
  }
  if (!ports_started_) {
    for (std::size_t i = 0; i < ports_.size(); ++i) {
      Status started = StartPort(ports_[i], config_.ports[i]);
      if (!started.ok()) {
        for (std::size_t j = 0; j < i; ++j) {
          StopPort(ports_[j]);
        }
        return started;
      }
    }
    ports_started_ = true;
  }
  running_ = true;
  for (auto& worker : workers_) {
    worker->stop.store(false, std::memory_order_relaxed);
    int rc = rte_eal_remote_launch(WorkerMain, worker.get(), worker->lcore_id);
    if (rc != 0) {
      Stop();
      return Error(ErrorCode::kInternal, "launching worker {} on lcore {} failed: {}",
                   worker->index, worker->lcore_id, rc);
    }
  }
  logger.Info("{} workers running{}", workers_.size(),
              config_.busy_poll ? " (busy polling)" : " (idle back-off)");
  return Status::Ok();
}

void Dataplane::Stop() {
  if (running_) {
    for (auto& worker : workers_) {
      worker->stop.store(true, std::memory_order_relaxed);
    }
    rte_eal_mp_wait_lcore();
    running_ = false;
    logger.Info("workers stopped");
  }
}

void Dataplane::StopPorts() {
  if (ports_started_) {
    for (const PortInfo& port : ports_) {
      StopPort(port);
    }
    ports_started_ = false;
  }
}

const PortInfo* Dataplane::FindPort(std::string_view name) const {
  auto it = std::find_if(ports_.begin(), ports_.end(),
                         [&](const PortInfo& port) { return port.name == name; });
  return it == ports_.end() ? nullptr : &*it;
}

rte_mempool* Dataplane::mbuf_pool(int socket) const {
  auto it = pools_.find(socket);
  return it == pools_.end() ? nullptr : it->second;
}

Status Dataplane::SetBurstHandler(BurstHandler handler, void* state) {
  if (running_) {
    return Error(ErrorCode::kInternal, "the burst handler can change only while workers stop");
  }
  for (auto& worker : workers_) {
    worker->handler = handler;
    worker->handler_state = state;
    worker->pass_hook = nullptr;
  }
  return Status::Ok();
}

Status Dataplane::SetPipeline(BurstHandler handler, PassHook hook,
                              const std::vector<void*>& states) {
  if (running_) {
    return Error(ErrorCode::kInternal, "the pipeline can change only while workers stop");
  }
  if (states.size() != workers_.size()) {
    return Error(ErrorCode::kInternal, "pipeline: {} worker states for {} workers", states.size(),
                 workers_.size());
  }
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    workers_[i]->handler = handler;
    workers_[i]->pass_hook = hook;
    workers_[i]->handler_state = states[i];
  }
  return Status::Ok();
}

json Dataplane::Describe() const {
  json ports = json::array();
  for (const PortInfo& port : ports_) {
    ports.push_back(PortToJson(port));
  }
  json workers = json::array();
  for (const auto& worker : workers_) {
    const WorkerCounters& counters = worker->counters;
    std::uint64_t busy = counters.busy_cycles.Read();
    std::uint64_t idle = counters.idle_cycles.Read();
    json queues = json::array();
    for (const PortInfo& port : ports_) {
      const int rx = WorkerQueue(worker->index, port.home_worker, port.rx_queues,
                                 static_cast<std::uint32_t>(workers_.size()));
      queues.push_back({{"port", port.name},
                        {"rx", QueueToJson(rx >= 0, static_cast<std::uint16_t>(rx))},
                        {"tx", QueueToJson(worker->tx[port.port_id].queue_id != kNoQueue,
                                           worker->tx[port.port_id].queue_id)}});
    }
    workers.push_back(
        {{"index", worker->index},
         {"lcore", worker->lcore_id},
         {"cpu", worker->cpu},
         {"online", worker->online.load(std::memory_order_relaxed)},
         {"queues", queues},
         {"rx_packets", counters.rx_packets.Read()},
         {"tx_packets", counters.tx_packets.Read()},
         {"rx_bytes", counters.rx_bytes.Read()},
         {"tx_bytes", counters.tx_bytes.Read()},
         {"drops", DropsToJson(counters)},
         {"passes", counters.passes.Read()},
         {"busy_cycles", busy},
         {"idle_cycles", idle},
         {"busy_ratio",
          busy + idle == 0 ? 0.0 : static_cast<double>(busy) / static_cast<double>(busy + idle)}});
  }
  return {{"ports", ports}, {"workers", workers}};
}

}  // namespace fulcrum::dataplane
