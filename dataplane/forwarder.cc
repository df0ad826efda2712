#include "dataplane/forwarder.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_flow.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "common/log.h"
#include "dataplane/handoff.h"
#include "nat/arp.h"
#include "nat/ndp.h"

namespace fulcrum::dataplane {
namespace {

Logger logger("dataplane");

using json = nlohmann::json;

constexpr unsigned kMessageRingSize = 1024;
constexpr std::size_t kMaxNeighborsShown = 256;
// Ethernet's minimum frame without the CRC: ARP frames are padded to it.
constexpr std::uint16_t kMinFrame = 60;

std::atomic<std::uint32_t> instances{0};

std::string Ipv4Text(std::uint32_t ip) { return IpAddress::V4(ip).ToString(); }

std::string MacText(const nat::MacAddress& mac) { return MacToString(mac); }

std::string_view ProtoName(std::uint8_t proto) {
  return proto == nat::kIpProtoTcp ? "tcp" : proto == nat::kIpProtoUdp ? "udp" : "other";
}

rte_ring* CreateRing(const std::string& name, unsigned element_size, int socket) {
  return rte_ring_create_elem(name.c_str(), element_size, kMessageRingSize, socket,
                              RING_F_SP_ENQ | RING_F_SC_DEQ);
}

// Frees the mbufs still queued on a hand-off ring (low bit tags tx-only packets).
void DrainMbufRing(rte_ring* ring) {
  void* object = nullptr;
  while (rte_ring_dequeue(ring, &object) == 0) {
    rte_pktmbuf_free(
        reinterpret_cast<rte_mbuf*>(reinterpret_cast<std::uintptr_t>(object) & ~std::uintptr_t{1}));
  }
}

void DrainMessageRing(rte_ring* ring) {
  Message message;
  while (rte_ring_dequeue_elem(ring, &message, sizeof(Message)) == 0) {
    if (message.type == MessageType::kTransmit) {
      rte_pktmbuf_free(static_cast<rte_mbuf*>(message.pointer));
    }
  }
}

}  // namespace

Forwarder::Forwarder(Dataplane& dataplane, const ForwarderOptions& options)
    : dataplane_(dataplane),
      options_(options),
      instance_(instances.fetch_add(1)),
      grace_(dataplane),
      slots_(options.listener_slots, options.backend_slots),
      neighbors_(options.neighbors),
      neighbors6_(options.neighbors),
      started_(std::chrono::steady_clock::now()) {}

Result<std::unique_ptr<Forwarder>> Forwarder::Create(Dataplane& dataplane,
                                                     const ForwarderOptions& options) {
  if (dataplane.running()) {
    return Error(ErrorCode::kInternal, "the forwarder is installed only while workers stop");
  }
  std::unique_ptr<Forwarder> forwarder(new Forwarder(dataplane, options));
  FULCRUM_RETURN_IF_ERROR(forwarder->CreateWorkers());
  FULCRUM_RETURN_IF_ERROR(forwarder->CreateRings());
  forwarder->InstallSteering();
  std::vector<void*> states;
  for (auto& pw : forwarder->workers_) {
    states.push_back(pw.get());
  }
  FULCRUM_RETURN_IF_ERROR(dataplane.SetPipeline(ProcessBurst, PassBegin, states));
  return forwarder;
}

Forwarder::~Forwarder() {
  dataplane_.Stop();
  (void)dataplane_.SetBurstHandler(DropAllNoService, nullptr);
  for (std::size_t i = 0; i < steering_.size(); ++i) {
    RemoveSteeringRules(dataplane_.port(i).port_id, steering_[i].flows);
  }
  for (auto& pw : workers_) {
    for (rte_ring* ring : pw->handoff_in) {
      if (ring != nullptr) {
        DrainMbufRing(ring);
      }
    }
    DrainMessageRing(pw->to_worker);
    for (PipelineWorker::Staged& staged : pw->staged) {
      for (std::uint16_t i = 0; i < staged.count; ++i) {
        rte_pktmbuf_free(reinterpret_cast<rte_mbuf*>(
            reinterpret_cast<std::uintptr_t>(staged.packets[i]) & ~std::uintptr_t{1}));
      }
    }
  }
  for (rte_ring* ring : rings_) {
    rte_ring_free(ring);
  }
  delete current_;
  delete neighbor_map_;
  delete neighbor_map6_;
}

Status Forwarder::CreateWorkers() {
  const DaemonConfig& config = dataplane_.config();
  const auto workers = static_cast<std::uint32_t>(dataplane_.worker_count());
  shared_.workers = workers;
  shared_.steering = nat::PortSteering::ForWorkers(workers);
  shared_.port_index.fill(kNoPortIndex);
  shared_.tsc_base = rte_rdtsc();
  shared_.tsc_per_ms = std::max<std::uint64_t>(rte_get_tsc_hz() / 1000, 1);
  for (std::size_t i = 0; i < dataplane_.port_count(); ++i) {
    const PortInfo& port = dataplane_.port(i);
    shared_.port_index[port.port_id] = static_cast<std::uint8_t>(i);
    shared_.ports.push_back(PortView{.port_id = port.port_id,
                                     .mac = port.mac,
                                     .address = config.ports[i].address.addr().v4(),
                                     .rss_affinity = port.offloads.rss && port.rx_queues >= workers,
                                     .tx_worker = port.home_worker,
                                     .mtu = config.ports[i].mtu});
    const std::optional<Prefix>& address6 = config.ports[i].address6;
    port_address6_.push_back(address6.has_value() ? std::optional(Ip6Of(address6->addr()))
                                                  : std::nullopt);
  }
  if (options_.backend_slots > nat::PersistTable::kMaxBackendSlots) {
    return Error(ErrorCode::kInvalidParameter,
                 "{} backend slots: persistence entries name at most {}", options_.backend_slots,
                 nat::PersistTable::kMaxBackendSlots);
  }
  // Keyed per process, so that no client can aim its addresses at one bucket.
  std::random_device entropy;
  Result<nat::PersistTable> persist = nat::PersistTable::Create(
      config.conn_table.persistence_capacity, std::uint64_t{entropy()} << 32 | entropy());
  if (!persist.ok()) {
    return persist.status();
  }
  persist_.emplace(std::move(*persist));
  shared_.persist = &*persist_;
  // Each worker clears the whole table at least once an hour, a few buckets a millisecond.
  shared_.persist_sweep_buckets = persist_->bucket_count() / 3'600'000 + 1;
  const std::uint32_t capacity =
      options_.conn_capacity != 0 ? options_.conn_capacity : config.conn_table.capacity_per_worker;
  for (std::uint32_t w = 0; w < workers; ++w) {
    Result<nat::ConnTable> table = nat::ConnTable::Create(capacity);
    if (!table.ok()) {
      return Error(table.status().code(), "worker {}: {}", w, table.status().message());
    }
    Result<nat::ConnTable6> table6 = nat::ConnTable6::Create(
        options_.conn_capacity6 != 0 ? options_.conn_capacity6
                                     : config.conn_table.Ipv6Capacity(capacity));
    if (!table6.ok()) {
      return Error(table6.status().code(), "worker {}: IPv6: {}", w, table6.status().message());
    }
    auto pw = std::make_unique<PipelineWorker>(std::move(*table), std::move(*table6));
    pw->ctx = &dataplane_.worker(w);
    Status core = InitCore(*pw, w, shared_, pw->ctx->counters, config.ports,
                           options_.listener_slots, options_.backend_slots);
    if (!core.ok()) {
      return core;
    }
    pw->staged.resize(workers);
    shared_.all.push_back(pw.get());
    workers_.push_back(std::move(pw));
  }
  load_.resize(workers);
  load_previous_.resize(workers);
  sweep_backlog_.assign(workers, 0);
  return Status::Ok();
}

// The rx descriptors of every queue worker `w` polls.
std::uint32_t Forwarder::SenderRxDescriptors(std::uint32_t w) const {
  std::uint32_t total = 0;
  for (std::size_t i = 0; i < dataplane_.port_count(); ++i) {
    const PortInfo& port = dataplane_.port(i);
    if (WorkerQueue(w, port.home_worker, port.rx_queues, shared_.workers) >= 0) {
      total += port.rx_descriptors;
    }
  }
  return total;
}

Status Forwarder::CreateRings() {
  const std::uint32_t workers = shared_.workers;
  const int socket = dataplane_.port_count() > 0 ? dataplane_.port(0).socket : 0;
  auto make = [&](const std::string& name, unsigned element_size) -> rte_ring* {
    rte_ring* ring = CreateRing(name, element_size, socket);
    if (ring != nullptr) {
      rings_.push_back(ring);
    }
    return ring;
  };
  for (std::uint32_t w = 0; w < workers; ++w) {
    PipelineWorker& pw = *workers_[w];
    pw.to_worker = make(fmt::format("fw{}_c2w{}", instance_, w), sizeof(Message));
    pw.to_control = make(fmt::format("fw{}_w2c{}", instance_, w), sizeof(Message));
    if (pw.to_worker == nullptr || pw.to_control == nullptr) {
      return Error(ErrorCode::kUnavailable, "worker {}: cannot create its message rings: {}", w,
                   rte_strerror(rte_errno));
    }
    pw.handoff_in.assign(workers, nullptr);
    pw.handoff_out.assign(workers, nullptr);
  }
  for (std::uint32_t from = 0; from < workers; ++from) {
    const std::uint32_t size = HandoffRingSize(SenderRxDescriptors(from), kBurstSize);
    for (std::uint32_t to = 0; to < workers; ++to) {
      if (from == to) {
        continue;
      }
      rte_ring* ring = rte_ring_create(fmt::format("fw{}_ho{}_{}", instance_, from, to).c_str(),
                                       size, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (ring == nullptr) {
        return Error(ErrorCode::kUnavailable, "hand-off ring {} -> {}: {}", from, to,
                     rte_strerror(rte_errno));
      }
      rings_.push_back(ring);
      workers_[from]->handoff_out[to] = ring;
      workers_[to]->handoff_in[from] = ring;
    }
  }
  return Status::Ok();
}

void Forwarder::InstallSteering() {
  const DaemonConfig& config = dataplane_.config();
  steering_.resize(dataplane_.port_count());
  for (std::size_t i = 0; i < dataplane_.port_count(); ++i) {
    const PortInfo& port = dataplane_.port(i);
    std::vector<std::uint32_t> locals;
    for (const IpAddress& local : config.ports[i].local_addresses) {
      if (local.is_v4()) {  // the steering rules match an IPv4 destination
        locals.push_back(local.v4());
      }
    }
    const std::vector<SteeringRule> rules =
        BuildSteeringRules(locals, shared_.workers, port.rx_queues);
    PortSteeringState& state = steering_[i];
    if (rules.empty()) {
      state.reason = locals.empty()        ? "no IPv4 local addresses"
                     : shared_.workers < 2 ? "one worker"
                                           : "fewer rx queues than workers";
      continue;
    }
    Result<std::vector<rte_flow*>> flows = InstallSteeringRules(port.port_id, rules);
    if (!flows.ok()) {
      state.reason = "the device refused the rte_flow rules";
      logger.Info("port {}: fnat replies use the software hand-off ({})", port.name,
                  flows.status().message());
      continue;
    }
    state.mode = SteeringMode::kRteFlow;
    state.flows = std::move(*flows);
    logger.Info("port {}: {} rte_flow rules steer fnat replies to their core", port.name,
                state.flows.size());
  }
}

// ---- configuration

Status Forwarder::Apply(const model::Model& model) {
  ProcessReports();
  ReclaimSlots();
  const std::uint64_t generation = generation_ + 1;
  CompileOptions compile = options_.compile;
  compile.workers = shared_.workers;
  Result<CompileResult> compiled =
      CompileSnapshot(model, dataplane_.config(), compile, slots_, generation, current_);
  if (!compiled.ok()) {
    return compiled.status();
  }
  for (const std::string& warning : compiled->warnings) {
    logger.Warn("{}", warning);
  }
  generation_ = generation;
  // Without new slots the listeners and backends are those of the snapshot before: only their
  // health and weights changed.
  const bool layout_changed = compiled->slots.has_value();
  if (layout_changed) {
    slots_ = std::move(*compiled->slots);
    listener_slots_.clear();
    compiled->snapshot->ForEachListener(
        [this](const ListenerConfig& l) { listener_slots_[l.id] = l.slot; });
  }
  for (std::uint32_t slot : compiled->new_listener_slots) {
    baselines_[slot] = RawListenerTotals(slot);
  }
  const std::vector<std::uint32_t> old_vips =
      current_ != nullptr ? current_->v4.vips : std::vector<std::uint32_t>{};
  const std::vector<nat::Ip6> old_vips6 =
      current_ != nullptr ? current_->v6.vips : std::vector<nat::Ip6>{};
  const bool needs_sweep = compiled->needs_sweep;
  Status published = Publish(std::move(compiled->snapshot));
  if (needs_sweep) {
    RequestSweeps(generation);
  }
  AfterApply(old_vips, old_vips6, layout_changed);
  ReclaimRetired();
  if (!published.ok()) {
    return Error(published.code(), "configuration generation {} not acknowledged: {}", generation,
                 published.message());
  }
  return Status::Ok();
}

Status Forwarder::Publish(std::unique_ptr<ConfigSnapshot> snapshot) {
  const ConfigSnapshot* next = snapshot.release();
  for (auto& pw : workers_) {
    pw->published_snapshot.store(next, std::memory_order_release);
  }
  if (!dataplane_.running()) {
    for (auto& pw : workers_) {
      AdoptPublished(*pw);
    }
  }
  const ConfigSnapshot* previous = current_;
  current_ = next;
  const GracePeriods::Ticket ticket = grace_.Start();
  if (previous != nullptr) {
    grace_.Retire([previous] { delete previous; });
  }
  return grace_.Wait(ticket, options_.apply_timeout);
}

void Forwarder::RequestSweeps(std::uint64_t generation) {
  for (std::uint32_t w = 0; w < workers_.size(); ++w) {
    if (!dataplane_.running()) {
      SweepAll(*workers_[w]);
      continue;
    }
    sweep_backlog_[w] = std::max(sweep_backlog_[w], generation);
  }
  SendSweeps();
}

void Forwarder::SendSweeps() {
  for (std::uint32_t w = 0; w < workers_.size(); ++w) {
    if (sweep_backlog_[w] != 0 &&
        SendToWorker(w, Message{.type = MessageType::kSweep, .seq = sweep_backlog_[w]})) {
      sweep_backlog_[w] = 0;
    }
  }
}

void Forwarder::ReclaimRetired() {
  // Stopped workers count as past every grace period, but one that never ran since the last
  // publish still holds its previous snapshot for InheritConnections: adopt for it first.
  if (!dataplane_.running()) {
    for (auto& pw : workers_) {
      AdoptPublished(*pw);
    }
  }
  grace_.Reclaim();
}

std::uint64_t Forwarder::SweptGeneration() const {
  std::uint64_t swept = UINT64_MAX;
  for (const auto& pw : workers_) {
    swept = std::min(swept, pw->swept.load(std::memory_order_acquire));
  }
  return workers_.empty() ? 0 : swept;
}

void Forwarder::ReclaimSlots() {
  const std::uint64_t swept = SweptGeneration();
  slots_.listeners.Reclaim(swept);
  slots_.backends.Reclaim(swept);
}

void Forwarder::AfterApply(const std::vector<std::uint32_t>& old_vips,
                           const std::vector<nat::Ip6>& old_vips6, bool layout_changed) {
  const std::uint64_t now = NowMs();
  const DaemonConfig& config = dataplane_.config();
  // Resolve every next hop the snapshot may send to, before the first packet needs it (the
  // same as before when only health or weights changed).
  if (layout_changed) {
    current_->backends.ForEach([&](std::uint32_t, const BackendConfig& b) {
      if (b.alive && b.next_hop.ok()) {
        neighbors_.Want(b.next_hop.ip, b.next_hop.port, now);
      }
      if (b.alive && b.next_hop6.ok()) {
        neighbors6_.Want(b.next_hop6.ip, b.next_hop6.port, now);
      }
    });
  }
  if (const nat::NextHop& gateway = current_->v4.routes.default_gateway(); gateway.ok()) {
    neighbors_.Want(gateway.ip, gateway.port, now);
  }
  if (const nat::NextHop6& gateway = current_->v6.routes.default_gateway(); gateway.ok()) {
    neighbors6_.Want(gateway.ip, gateway.port, now);
  }
  // Announce what is new: every own address at the first apply, new VIPs afterwards.
  for (std::size_t i = 0; i < config.ports.size() && generation_ == 1; ++i) {
    const auto port = static_cast<std::uint8_t>(i);
    SendArp(port, shared_.ports[i].address, shared_.ports[i].address);
    if (port_address6_[i].has_value()) {
      SendAdvertisement(port, *port_address6_[i]);
    }
    for (const IpAddress& local : config.ports[i].local_addresses) {
      if (local.is_v4()) {
        SendArp(port, local.v4(), local.v4());
      } else {
        SendAdvertisement(port, Ip6Of(local));
      }
    }
  }
  for (std::uint32_t vip : current_->v4.vips) {
    if (std::binary_search(old_vips.begin(), old_vips.end(), vip)) {
      continue;
    }
    for (std::size_t i = 0; i < config.ports.size(); ++i) {
      SendArp(static_cast<std::uint8_t>(i), vip, vip);
    }
  }
  for (const nat::Ip6& vip : current_->v6.vips) {
    if (std::binary_search(old_vips6.begin(), old_vips6.end(), vip)) {
      continue;
    }
    for (std::size_t i = 0; i < config.ports.size(); ++i) {
      if (port_address6_[i].has_value()) {  // a port without IPv6 has no IPv6 neighbours
        SendAdvertisement(static_cast<std::uint8_t>(i), vip);
      }
    }
  }
  TickNeighbors();
}

// ---- control-thread housekeeping

std::uint64_t Forwarder::NowMs() const {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::steady_clock::now() - started_)
                                        .count());
}

void Forwarder::Tick() {
  SendSweeps();
  ProcessReports();
  TickNeighbors();
  ReclaimRetired();
  ReclaimSlots();
  SampleRates();
}

void Forwarder::ProcessReports() {
  const std::uint64_t now = NowMs();
  for (auto& pw : workers_) {
    std::array<Message, 64> messages;
    unsigned n;
    do {
      n = rte_ring_dequeue_burst_elem(pw->to_control, messages.data(), sizeof(Message),
                                      messages.size(), nullptr);
      for (unsigned i = 0; i < n; ++i) {
        const Message& m = messages[i];
        switch (m.type) {
          case MessageType::kArpSeen:
            // Unsolicited news only refreshes what the cache already holds.
            if ((m.flags & kMessageForUs) != 0 || neighbors_.Find(m.ip) != nullptr) {
              neighbors_.Learn(m.ip, UnpackMac(m.value), m.port, now);
            }
            break;
          case MessageType::kResolve:
            neighbors_.Want(m.ip, m.port, now);
            break;
          case MessageType::kNeighborSeen6:
            if ((m.flags & kMessageForUs) != 0 || neighbors6_.Find(Ip6Of(m)) != nullptr) {
              neighbors6_.Learn(Ip6Of(m), UnpackMac(m.value), m.port, now);
            }
            break;
          case MessageType::kResolve6:
            neighbors6_.Want(Ip6Of(m), m.port, now);
            break;
          case MessageType::kDumpDone:
            if (auto it = dumps_in_flight_.find(m.seq); it != dumps_in_flight_.end()) {
              it->second->done = true;
            }
            break;
          default:
            break;
        }
      }
    } while (n == messages.size());
  }
}

void Forwarder::TickNeighbors() {
  const std::uint64_t now = NowMs();
  for (const nat::ArpProbe& probe : neighbors_.Tick(now)) {
    SendArp(probe.port, shared_.ports[probe.port].address, probe.ip);
  }
  for (const nat::NeighborProbe6& probe : neighbors6_.Tick(now)) {
    SendSolicitation(probe.port, probe.ip);
  }
  if (neighbors_.dirty() || neighbors6_.dirty()) {
    PublishNeighbors();
  }
}

namespace {

// Builds `cache`'s map and publishes it to every worker through `slot` of each; the previous
// map is freed after a grace period. Keeps the old map when the new one cannot be built.
template <typename Cache, typename Slot>
void PublishMap(Cache& cache, const typename Cache::Map*& current, GracePeriods& grace,
                std::vector<std::unique_ptr<PipelineWorker>>& workers, Slot slot) {
  Result<typename Cache::Map> map = cache.Build();
  if (!map.ok()) {
    logger.Error("neighbour map: {}", map.status().ToString());
    return;
  }
  const auto* next = new typename Cache::Map(std::move(*map));
  for (auto& pw : workers) {
    ((*pw).*slot).store(next, std::memory_order_release);
  }
  const typename Cache::Map* previous = current;
  current = next;
  if (previous != nullptr) {
    grace.Retire([previous] { delete previous; });
  }
}

}  // namespace

void Forwarder::PublishNeighbors() {
  if (neighbors_.dirty()) {
    PublishMap(neighbors_, neighbor_map_, grace_, workers_, &PipelineWorker::published_neighbors);
  }
  if (neighbors6_.dirty()) {
    PublishMap(neighbors6_, neighbor_map6_, grace_, workers_,
               &PipelineWorker::published_neighbors6);
  }
}

void Forwarder::LearnNeighbor(std::uint32_t ip, const nat::MacAddress& mac, std::uint8_t port) {
  neighbors_.Learn(ip, mac, port, NowMs());
  if (neighbors_.dirty()) {
    PublishNeighbors();
  }
}

void Forwarder::LearnNeighbor(const nat::Ip6& ip, const nat::MacAddress& mac, std::uint8_t port) {
  neighbors6_.Learn(ip, mac, port, NowMs());
  if (neighbors6_.dirty()) {
    PublishNeighbors();
  }
}

bool Forwarder::SendToWorker(std::uint32_t worker, Message message) {
  return rte_ring_enqueue_elem(workers_[worker]->to_worker, &message, sizeof(Message)) == 0;
}

template <typename Build>
void Forwarder::SendControlFrame(std::uint8_t port, std::size_t length, std::uint8_t flags,
                                 Build build) {
  const PortInfo& info = dataplane_.port(port);
  rte_mempool* pool = dataplane_.mbuf_pool(info.socket);
  rte_mbuf* m = pool != nullptr ? rte_pktmbuf_alloc(pool) : nullptr;
  if (m == nullptr) {
    return;
  }
  auto* data = reinterpret_cast<std::uint8_t*>(rte_pktmbuf_append(m, length));
  if (data == nullptr) {
    rte_pktmbuf_free(m);
    return;
  }
  std::memset(data, 0, length);
  build(std::span<std::uint8_t>(data, length), info.mac);
  const PortView& view = shared_.ports[port];
  if (!dataplane_.running()) {
    // Nobody uses the queues while the workers stop.
    const std::uint16_t queue = dataplane_.worker(view.tx_worker).tx[info.port_id].queue_id;
    if (queue == kNoQueue || rte_eth_tx_burst(info.port_id, queue, &m, 1) != 1) {
      rte_pktmbuf_free(m);
    }
    return;
  }
  if (!SendToWorker(
          view.tx_worker,
          Message{.type = MessageType::kTransmit, .port = port, .flags = flags, .pointer = m})) {
    rte_pktmbuf_free(m);
  }
}

void Forwarder::SendArp(std::uint8_t port, std::uint32_t sender_ip, std::uint32_t target_ip) {
  SendControlFrame(port, kMinFrame, kMessageArpRequest,
                   [&](std::span<std::uint8_t> frame, const nat::MacAddress& mac) {
                     nat::BuildArpRequest(frame, mac, sender_ip, target_ip);
                   });
}

void Forwarder::SendSolicitation(std::uint8_t port, const nat::Ip6& target) {
  if (!port_address6_[port].has_value()) {
    return;
  }
  const nat::Ip6 source = *port_address6_[port];
  SendControlFrame(port, nat::kNdpFrameBytes, kMessageArpRequest,
                   [&](std::span<std::uint8_t> frame, const nat::MacAddress& mac) {
                     nat::BuildNeighborSolicitation(frame, mac, source, target);
                   });
}

void Forwarder::SendAdvertisement(std::uint8_t port, const nat::Ip6& ip) {
  SendControlFrame(port, nat::kNdpFrameBytes, 0,
                   [&](std::span<std::uint8_t> frame, const nat::MacAddress& mac) {
                     nat::BuildNeighborAdvertisement(frame, mac, ip, nat::kAllNodes,
                                                     nat::MulticastMac(nat::kAllNodes), false);
                   });
}

void Forwarder::SampleRates() {
  const auto now = std::chrono::steady_clock::now();
  if (now - latest_sample_.at < options_.rate_interval) {
    return;
  }
  Sample sample{.at = now};
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    const WorkerCounters& c = dataplane_.worker(w).counters;
    sample.packets += c.rx_packets.Read();
    sample.bytes += c.rx_bytes.Read();
    sample.new_conns += workers_[w]->new_conns.Read();
    WorkerLoad load{c.busy_cycles.Read(), c.idle_cycles.Read(), 0};
    const std::uint64_t busy = load.busy - load_previous_[w].busy;
    const std::uint64_t total = busy + (load.idle - load_previous_[w].idle);
    load.ratio = total == 0 ? 0.0 : static_cast<double>(busy) / static_cast<double>(total);
    load_previous_[w] = load;
    load_[w] = load;
  }
  previous_sample_ = latest_sample_;
  latest_sample_ = sample;
  listener_previous_ = std::move(listener_latest_);
  listener_latest_.clear();
  for (const auto& [id, slot] : listener_slots_) {
    const Totals totals = ListenerTotals(slot);
    listener_latest_[slot] = Sample{now, totals.rx_packets, totals.rx_bytes, totals.new_conns};
  }
}

// ---- observation

Forwarder::Totals Forwarder::RawListenerTotals(std::uint32_t slot) const {
  Totals t;
  for (const auto& pw : workers_) {
    const ListenerCounters& c = pw->listener_counters[slot];
    t.new_conns += c.new_conns.Read();
    t.active_conns += c.active_conns.Read();
    t.rx_packets += c.rx_packets.Read();
    t.rx_bytes += c.rx_bytes.Read();
    t.tx_packets += c.tx_packets.Read();
    t.tx_bytes += c.tx_bytes.Read();
  }
  return t;
}

Forwarder::Totals Forwarder::ListenerTotals(std::uint32_t slot) const {
  Totals t = RawListenerTotals(slot);
  // The cumulative counters started before this listener got the slot.
  if (auto it = baselines_.find(slot); it != baselines_.end()) {
    t.new_conns -= it->second.new_conns;
    t.rx_packets -= it->second.rx_packets;
    t.rx_bytes -= it->second.rx_bytes;
    t.tx_packets -= it->second.tx_packets;
    t.tx_bytes -= it->second.tx_bytes;
  }
  return t;
}

Forwarder::Rates Forwarder::RatesOf(const Sample& before, const Sample& after) const {
  const double seconds = std::chrono::duration<double>(after.at - before.at).count();
  if (before.at.time_since_epoch().count() == 0 || seconds <= 0) {
    return {};
  }
  return {static_cast<double>(after.packets - before.packets) / seconds,
          static_cast<double>(after.bytes - before.bytes) * 8 / seconds,
          static_cast<double>(after.new_conns - before.new_conns) / seconds};
}

json Forwarder::ListenerJson(const ListenerConfig& listener) const {
  const Totals t = ListenerTotals(listener.slot);
  return {
      {"id", listener.id},          {"new_conns", t.new_conns}, {"active_conns", t.active_conns},
      {"rx_packets", t.rx_packets}, {"rx_bytes", t.rx_bytes},   {"tx_packets", t.tx_packets},
      {"tx_bytes", t.tx_bytes}};
}

json Forwarder::Stats(const std::vector<std::string>& listener_ids) {
  ProcessReports();
  json drops = json::object();
  for (const nat::DropReasonInfo& info : nat::kDropReasons) {
    std::uint64_t n = 0;
    for (std::size_t w = 0; w < workers_.size(); ++w) {
      n += dataplane_.worker(w).counters.Drops(info.reason);
    }
    drops[std::string(info.name)] = n;
  }
  json counters = json::object();
  for (std::size_t e = 0; e < kWorkerEventCount; ++e) {
    std::uint64_t n = 0;
    for (std::size_t w = 0; w < workers_.size(); ++w) {
      n += dataplane_.worker(w).counters.Events(static_cast<WorkerEvent>(e));
    }
    counters[std::string(WorkerEventName(static_cast<WorkerEvent>(e)))] = n;
  }
  std::uint64_t total_drops = 0;
  for (const auto& [name, n] : drops.items()) {
    total_drops += n.get<std::uint64_t>();
  }
  json workers = json::array();
  Totals totals;
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    const WorkerContext& ctx = dataplane_.worker(w);
    const WorkerCounters& c = ctx.counters;
    workers.push_back({{"lcore", ctx.lcore_id},
                       {"rx_packets", c.rx_packets.Read()},
                       {"tx_packets", c.tx_packets.Read()},
                       {"busy_ratio", load_[w].ratio},
                       {"active_conns", workers_[w]->active_conns.Read()}});
    totals.rx_packets += c.rx_packets.Read();
    totals.rx_bytes += c.rx_bytes.Read();
    totals.tx_packets += c.tx_packets.Read();
    totals.tx_bytes += c.tx_bytes.Read();
    totals.new_conns += workers_[w]->new_conns.Read();
    totals.active_conns += workers_[w]->active_conns.Read();
  }
  Rates rates = RatesOf(previous_sample_, latest_sample_);
  json listeners = json::array();
  const bool filtered = !listener_ids.empty();
  if (filtered) {
    totals = {};
    rates = {};
  }
  std::vector<const ListenerConfig*> configs;
  if (current_ != nullptr) {
    current_->ForEachListener([&configs](const ListenerConfig& l) { configs.push_back(&l); });
  }
  std::sort(configs.begin(), configs.end(),
            [](const ListenerConfig* a, const ListenerConfig* b) { return a->id < b->id; });
  for (const ListenerConfig* l : configs) {
    if (filtered &&
        std::find(listener_ids.begin(), listener_ids.end(), l->id) == listener_ids.end()) {
      continue;
    }
    listeners.push_back(ListenerJson(*l));
    if (filtered) {
      const Totals t = ListenerTotals(l->slot);
      totals.new_conns += t.new_conns;
      totals.active_conns += t.active_conns;
      totals.rx_packets += t.rx_packets;
      totals.rx_bytes += t.rx_bytes;
      totals.tx_packets += t.tx_packets;
      totals.tx_bytes += t.tx_bytes;
      auto before = listener_previous_.find(l->slot);
      auto after = listener_latest_.find(l->slot);
      if (before != listener_previous_.end() && after != listener_latest_.end()) {
        const Rates r = RatesOf(before->second, after->second);
        rates.pps += r.pps;
        rates.bps += r.bps;
        rates.new_conns_per_s += r.new_conns_per_s;
      }
    }
  }
  return {{"totals",
           {{"rx_packets", totals.rx_packets},
            {"rx_bytes", totals.rx_bytes},
            {"tx_packets", totals.tx_packets},
            {"tx_bytes", totals.tx_bytes},
            {"new_conns", totals.new_conns},
            {"active_conns", totals.active_conns},
            {"drops", total_drops}}},
          {"drops", drops},
          {"counters", counters},
          {"rates",
           {{"pps", rates.pps}, {"bps", rates.bps}, {"new_conns_per_s", rates.new_conns_per_s}}},
          {"listeners", listeners},
          {"workers", workers}};
}

std::optional<std::uint32_t> Forwarder::ListenerSlot(const std::string& listener_id) const {
  auto it = listener_slots_.find(listener_id);
  return it == listener_slots_.end() ? std::nullopt : std::optional(it->second);
}

std::uint64_t Forwarder::ActiveConnections(const std::string& listener_id,
                                           const std::string& backend) {
  const std::optional<std::uint32_t> listener = ListenerSlot(listener_id);
  Result<Endpoint> endpoint = Endpoint::Parse(backend);
  if (!listener || !endpoint.ok()) {
    return 0;
  }
  const std::optional<std::uint32_t> slot =
      slots_.backends.Find({*listener, AnyEndpointOf(*endpoint)});
  if (!slot) {
    return 0;
  }
  std::uint64_t active = 0;
  for (const auto& pw : workers_) {
    active += pw->backend_active[*slot].Read();
  }
  return active;
}

json Forwarder::ConnJson(std::uint32_t worker, const ConnRecord& record) const {
  const ListenerConfig* l = current_ != nullptr ? current_->listener(record.listener) : nullptr;
  return {{"worker", worker},
          {"listener", l != nullptr ? l->id : ""},
          {"protocol", ProtoName(record.proto)},
          {"mode", record.mode == nat::NatMode::kFnat   ? "fnat"
                   : record.mode == nat::NatMode::kDnat ? "dnat"
                                                        : "nat64"},
          {"client", EndpointOf(record.client).ToString()},
          {"vip", EndpointOf(record.vip).ToString()},
          {"local", EndpointOf(record.local).ToString()},
          {"backend", EndpointOf(record.backend).ToString()},
          {"state", record.proto == nat::kIpProtoTcp ? nat::TcpStateName(record.tcp_state)
                                                     : std::string_view("udp")},
          {"age_s", (record.now_ms - record.created_ms) / 1000},
          {"idle_s", (record.now_ms - record.last_seen_ms) / 1000},
          {"timeout_s", record.timeout_ms / 1000}};
}

bool Forwarder::RunDumps(std::vector<std::unique_ptr<Dump>>& dumps) {
  if (!dataplane_.running()) {
    for (auto& dump : dumps) {
      PipelineWorker& pw = *workers_[dump->worker];
      nat::SweepCursor cursor;
      nat::SweepCursor cursor6;
      DumpSome(pw.table, cursor, pw.table.capacity(), pw.now_ms, dump->request);
      DumpSome(pw.table6, cursor6, pw.table6.capacity(), pw.now_ms, dump->request);
      dump->done = true;
    }
    return true;
  }
  std::vector<std::uint64_t> seqs;
  for (auto& dump : dumps) {
    const bool busy = std::any_of(dumps_in_flight_.begin(), dumps_in_flight_.end(),
                                  [&](const auto& d) { return d.second->worker == dump->worker; });
    const std::uint64_t seq = ++dump_seq_;
    if (busy ||
        !SendToWorker(dump->worker,
                      Message{.type = MessageType::kDump, .pointer = &dump->request, .seq = seq})) {
      continue;
    }
    seqs.push_back(seq);
    dumps_in_flight_[seq] = std::move(dump);
  }
  const auto deadline = std::chrono::steady_clock::now() + options_.dump_timeout;
  bool complete = seqs.size() == dumps.size();
  while (true) {
    ProcessReports();
    const bool all_done = std::all_of(seqs.begin(), seqs.end(), [&](std::uint64_t seq) {
      return dumps_in_flight_.at(seq)->done;
    });
    if (all_done) {
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      complete = false;
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  // Finished dumps come back to the caller; unfinished ones stay until their reply (the worker
  // may still write into them).
  dumps.clear();
  for (std::uint64_t seq : seqs) {
    auto it = dumps_in_flight_.find(seq);
    if (it->second->done) {
      dumps.push_back(std::move(it->second));
      dumps_in_flight_.erase(it);
    }
  }
  std::erase_if(dumps_in_flight_, [](const auto& d) { return d.second->done; });
  return complete;
}

json Forwarder::Connections(const std::string& listener_id, std::size_t limit) {
  std::uint32_t filter = kNoSlot;
  if (!listener_id.empty()) {
    const std::optional<std::uint32_t> slot = ListenerSlot(listener_id);
    if (!slot) {
      return {{"connections", json::array()}, {"truncated", false}};
    }
    filter = *slot;
  }
  std::vector<std::unique_ptr<Dump>> dumps;
  for (std::uint32_t w = 0; w < workers_.size(); ++w) {
    auto dump = std::make_unique<Dump>();
    dump->worker = w;
    dump->records.resize(limit);
    dump->request.listener_slot = filter;
    dump->request.records = dump->records.data();
    dump->request.capacity = static_cast<std::uint32_t>(limit);
    dumps.push_back(std::move(dump));
  }
  const bool complete = RunDumps(dumps);
  json connections = json::array();
  bool truncated = !complete;
  for (const auto& dump : dumps) {
    truncated = truncated || dump->request.truncated;
    for (std::uint32_t i = 0; i < dump->request.count; ++i) {
      if (connections.size() == limit) {
        truncated = true;
        break;
      }
      connections.push_back(ConnJson(dump->worker, dump->records[i]));
    }
  }
  return {{"connections", connections}, {"truncated", truncated}};
}

json Forwarder::Describe() {
  json described = dataplane_.Describe();
  for (std::size_t i = 0; i < steering_.size() && i < described["ports"].size(); ++i) {
    described["ports"][i]["steering"] = SteeringModeName(steering_[i].mode);
    described["ports"][i]["steering_detail"] = steering_[i].reason;
  }
  const std::uint32_t capacity = workers_.empty() ? 0 : workers_[0]->table.capacity();
  for (std::size_t w = 0; w < workers_.size() && w < described["workers"].size(); ++w) {
    const PipelineWorker& pw = *workers_[w];
    described["workers"][w]["load"] = load_[w].ratio;
    described["workers"][w]["active_conns"] = pw.active_conns.Read();
    described["workers"][w]["conn_table_entries"] = pw.table.size();
    described["workers"][w]["conn_table6_entries"] = pw.table6.size();
    described["workers"][w]["snapshot_generation"] =
        pw.adopted_generation.load(std::memory_order_relaxed);
  }
  described["conn_table"] = {
      {"capacity_per_worker", capacity},
      {"entry_bytes", sizeof(nat::ConnEntry)},
      {"bytes_per_connection", workers_.empty() ? 0.0 : workers_[0]->table.bytes_per_connection()},
      {"memory_bytes_per_worker", workers_.empty() ? 0 : workers_[0]->table.memory_bytes()}};
  described["conn_table6"] = {
      {"capacity_per_worker", workers_.empty() ? 0 : workers_[0]->table6.capacity()},
      {"entry_bytes", sizeof(nat::ConnEntry6)},
      {"memory_bytes_per_worker", workers_.empty() ? 0 : workers_[0]->table6.memory_bytes()}};
  json neighbors = json::array();
  const auto show = [&](const auto& cache, const auto& text) {
    for (const auto& e : cache.Entries()) {
      if (neighbors.size() == kMaxNeighborsShown) {
        return;
      }
      neighbors.push_back({{"ip", text(e.ip)},
                           {"mac", MacText(e.mac)},
                           {"port", dataplane_.port(e.port).name},
                           {"state", nat::NeighborStateName(e.state)}});
    }
  };
  show(neighbors_, Ipv4Text);
  show(neighbors6_, [](const nat::Ip6& ip) { return IpAddressOf(ip).ToString(); });
  described["neighbors"] = neighbors;
  described["config_generation"] = generation_;
  described["slots"] = {{"listeners", slots_.listeners.live()},
                        {"backends", slots_.backends.live()},
                        {"awaiting_sweep", retired_slots()}};
  return described;
}

}  // namespace fulcrum::dataplane
