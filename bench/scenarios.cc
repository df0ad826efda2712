#include "bench/scenarios.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <rte_cycles.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "bench/traffic.h"
#include "common/model.h"
#include "dataplane/forwarder.h"
#include "dataplane/snapshot.h"
#include "nat/conn_table.h"
#include "nat/maglev.h"
#include "nat/packet.h"
#include "nat/port_pool.h"

namespace fulcrum::bench {
namespace {

using dataplane::Forwarder;
using Clock = std::chrono::steady_clock;

// One output frame in kChecksumSample has every checksum recomputed from scratch.
constexpr std::uint64_t kChecksumSample = 64;
constexpr std::size_t kMaxErrors = 8;
constexpr std::int64_t kModelNow = 1795000000;
constexpr std::uint32_t kListenerSlots = 64;
constexpr std::uint32_t kBackendSlots = 256;
// Frames per rx ring per round in the established and io_floor scenarios.
constexpr unsigned kRoundPerQueue = 1024;
// Connections opened per round while an established scenario sets up.
constexpr unsigned kSetupBatch = 1024;
// Connections per stage of tcp_lifecycle (5 stages in flight: 2048 frames a round).
constexpr unsigned kLifecycleBatch = 256;
constexpr std::uint64_t kLifecycleWindow = 8192;  // BackendSide ring, >= 5 batches
constexpr unsigned kLifecyclePackets = 8;
constexpr std::uint32_t kMaglevSize = nat::MaglevTable::kDefaultSize;
constexpr std::uint64_t kSeed = 0x5eed'1b'be'c4'f0'0dULL;

// xorshift64*: cheap, deterministic, good enough to spread picks over the table.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed | 1) {}
  std::uint64_t Next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1DULL;
  }
  // Uniform enough in [0, n) for n far below 2^32.
  std::uint64_t Below(std::uint64_t n) { return ((Next() >> 32) * n) >> 32; }

 private:
  std::uint64_t state_;
};

double Median(std::vector<double> values) {
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

double Seconds(std::uint64_t cycles) {
  return static_cast<double>(cycles) / static_cast<double>(rte_get_tsc_hz());
}

bool SameSide(const BackendSide& a, const BackendSide& b) {
  return a.local == b.local && a.local_port == b.local_port && a.backend == b.backend;
}

// What one scenario accumulates: injection, collection and checks, drops, errors.
class Run {
 public:
  Run(Rig& rig, const std::string& name)
      : rig_(rig), macs_{rig.mac(kClientPort), rig.mac(kBackendPort)}, started_(Clock::now()) {
    result_.name = name;
    timed_before_ = rig.timed_packets();
    expired_before_ = rig.worker().counters.Events(dataplane::WorkerEvent::kConnsExpired);
    for (const nat::DropReasonInfo& info : nat::kDropReasons) {
      drops_before_[std::string(info.name)] = rig.worker().counters.Drops(info.reason);
    }
  }

  Rig& rig() { return rig_; }
  const LinkMacs& macs() const { return macs_; }
  // FrameSpec::spliced of the scenario's TCP traffic: its listeners' Proxy Protocol header.
  std::uint16_t spliced() const { return spliced_; }
  void set_spliced(std::uint16_t header_len) { spliced_ = header_len; }
  ScenarioResult& result() { return result_; }
  bool failed() const { return !result_.errors.empty(); }

  void Fail(std::string message) {
    if (result_.errors.size() < kMaxErrors) {
      result_.errors.push_back(std::move(message));
    }
  }

  // Allocates `count` mbufs of `frame_len` bytes, has write(i, data) fill each frame and puts
  // them on the rx ring of `port`, where the worker receives them.
  template <typename Write>
  bool Inject(std::size_t port, unsigned count, std::uint16_t frame_len, Write&& write) {
    if (count == 0) {
      return true;
    }
    rte_mbuf* mbufs[kMaxRoundPackets];
    if (count > kMaxRoundPackets || rte_pktmbuf_alloc_bulk(rig_.pool(), mbufs, count) != 0) {
      Fail(fmt::format("cannot allocate {} mbufs", count));
      return false;
    }
    for (unsigned i = 0; i < count; ++i) {
      write(i, rte_pktmbuf_mtod(mbufs[i], std::uint8_t*));
      mbufs[i]->data_len = frame_len;
      mbufs[i]->pkt_len = frame_len;
    }
    if (rte_ring_enqueue_bulk(rig_.rx(port), reinterpret_cast<void* const*>(mbufs), count,
                              nullptr) != count) {
      rte_pktmbuf_free_bulk(mbufs, count);
      Fail("an rx ring is full");
      return false;
    }
    return true;
  }

  // Takes every frame the worker sent on `port` and checks it with
  // check(frame, len, verify_checksums) -> OutputCheck; returns how many came (neighbour
  // discovery excluded).
  template <typename Check>
  std::uint64_t Collect(std::size_t port, Check&& check) {
    std::uint64_t forwarded = 0;
    void* objects[256];
    unsigned n;
    while ((n = rte_ring_dequeue_burst(rig_.tx(port), objects, 256, nullptr)) > 0) {
      for (unsigned i = 0; i < n; ++i) {
        auto* m = static_cast<rte_mbuf*>(objects[i]);
        const auto* frame = rte_pktmbuf_mtod(m, const std::uint8_t*);
        const std::uint16_t len = rte_pktmbuf_data_len(m);
        if (IsNeighborDiscovery(frame, len)) {
          continue;
        }
        ++forwarded;
        const bool verify = checked_++ % kChecksumSample == 0;
        const OutputCheck result = check(frame, len, verify);
        checksummed_ += verify ? 1 : 0;
        if (!result.ok) {
          Fail(fmt::format("port {} output: {}", port, result.error));
        }
      }
      rte_pktmbuf_free_bulk(reinterpret_cast<rte_mbuf**>(objects), n);
    }
    return forwarded;
  }

  ScenarioResult Finish() {
    ScenarioResult& r = result_;
    for (const nat::DropReasonInfo& info : nat::kDropReasons) {
      const std::uint64_t n =
          rig_.worker().counters.Drops(info.reason) - drops_before_[std::string(info.name)];
      if (n != 0) {
        r.drops[std::string(info.name)] = n;
        Fail(fmt::format("{} packets dropped as {}", n, info.name));
      }
    }
    r.checked = checked_;
    r.checksummed = checksummed_;
    r.timed_packets = rig_.timed_packets() - timed_before_;
    r.expired =
        rig_.worker().counters.Events(dataplane::WorkerEvent::kConnsExpired) - expired_before_;
    r.mpps = Median(r.mpps_reps);
    r.ns_per_packet = r.mpps > 0 ? 1000.0 / r.mpps : 0;
    if (r.forwarded == 0) {
      Fail("forwarded nothing");
    }
    r.seconds = std::chrono::duration<double>(Clock::now() - started_).count();
    rig_.DrainAll();
    return r;
  }

 private:
  Rig& rig_;
  LinkMacs macs_;
  Clock::time_point started_;
  ScenarioResult result_;
  std::map<std::string, std::uint64_t> drops_before_;
  std::uint64_t checked_ = 0;
  std::uint64_t checksummed_ = 0;
  std::uint64_t timed_before_ = 0;
  std::uint64_t expired_before_ = 0;
  std::uint16_t spliced_ = 0;
};

// ---- the configuration every pipeline scenario runs

struct ModelOptions {
  model::ForwardMode tcp_mode = model::ForwardMode::kFnat;
  std::int64_t udp_idle_timeout = model::kDefaultUdpIdleTimeout;
  std::uint32_t persistence = 0;  // every listener's window, seconds; 0: off
  model::ClientIpMode client_ip = model::ClientIpMode::kOff;  // every TCP listener's
  bool acl = false;  // every listener allows the clients through a kBenchAclEntries-entry list
};

// The *_acl scenarios' lists: this many entries, every one a range of its own (single
// addresses two apart, in neither family's client network), the last the clients' network.
constexpr std::uint32_t kBenchAclEntries = 1000;

template <typename F>
std::vector<std::string> BenchAclEntries() {
  std::vector<std::string> entries;
  for (std::uint32_t i = 0; i + 1 < kBenchAclEntries; ++i) {
    entries.push_back(F::kIpv6 ? fmt::format("2001:db8:1::{:x}/128", 2 * i)
                               : fmt::format("198.18.{}.{}/32", 2 * i / 256, 2 * i % 256));
  }
  entries.push_back(F::kIpv6 ? "2001:db8:ff::/48" : "198.19.0.0/16");
  return entries;
}

// Session persistence of the *_persist scenarios: longer than any run, so that every client's
// connection after its first is a hit.
constexpr std::uint32_t kBenchPersistence = 600;

// The Proxy Protocol v2 header of a TCP connection of F: what the *_proxy scenarios' listeners
// put ahead of each client's bytes.
template <typename F>
constexpr std::uint16_t kProxyV2Len = F::kIpv6 ? 16 + 36 : 16 + 12;

ModelOptions WithFeature(ModelOptions options, Feature feature) {
  if (feature == Feature::kPersist) {
    options.persistence = kBenchPersistence;
  } else if (feature == Feature::kProxy) {
    options.client_ip = model::ClientIpMode::kProxyV2;
  } else if (feature == Feature::kAcl) {
    options.acl = true;
  }
  return options;
}

// A scenario's name: its base, the feature's suffix, its family's suffix.
template <typename F>
std::string ScenarioName(const char* base, Feature feature) {
  const char* suffix = feature == Feature::kPersist ? "_persist"
                       : feature == Feature::kProxy ? "_proxy"
                       : feature == Feature::kAcl   ? "_acl"
                                                    : "";
  return std::string(base) + suffix + F::kNameSuffix;
}

std::string Id(const char* prefix, std::uint32_t n) { return fmt::format("{}{:08x}", prefix, n); }

// The rig's own addresses, both families: never a VIP.
model::Model EmptyModel() {
  std::vector<IpAddress> own;
  for (const std::size_t port : {kClientPort, kBackendPort}) {
    own.push_back(AddressOf(Family4::kPortAddresses[port]));
    own.push_back(AddressOf(Family6::kPortAddresses[port]));
  }
  return model::Model(std::move(own));
}

// Two LBs (F::kVips), each with a TCP listener on kTcpPort and a UDP listener on kUdpPort,
// each over kBackends backends of B (F's family, or IPv4 behind IPv6 VIPs: NAT64) of equal
// weight (wrr), no health checks.
template <typename F, typename B = F>
Result<model::Model> BenchModel(const ModelOptions& options) {
  model::Model model = EmptyModel();
  for (std::uint32_t v = 0; v < kVipCount; ++v) {
    const std::string lb = Id("lb-", v + 1);
    FULCRUM_RETURN_IF_ERROR(model.CreateLb(lb, "bench", AddressOf(F::kVips[v]), kModelNow));
    const std::string acl = Id("acl-", v + 1);
    if (options.acl) {
      FULCRUM_RETURN_IF_ERROR(model.CreateAcl(acl, lb, "clients", BenchAclEntries<F>()));
    }
    for (const bool tcp : {true, false}) {
      const std::uint32_t n = 2 * v + (tcp ? 1 : 2);
      const std::string group = Id("sg-", n);
      FULCRUM_RETURN_IF_ERROR(model.CreateGroup(group, lb, tcp ? "tcp" : "udp"));
      for (std::uint32_t b = 0; b < kBackends; ++b) {
        const Endpoint backend{AddressOf(Nth(B::kBackendBase, b)),
                               tcp ? kBackendTcpPort : kBackendUdpPort};
        FULCRUM_RETURN_IF_ERROR(model.AddBackend(group, backend, 10));
      }
      model::ListenerOptions listener;
      listener.group = group;
      listener.mode = tcp ? options.tcp_mode : model::ForwardMode::kFnat;
      listener.scheduler = model::Scheduler::kWrr;
      if (!tcp) {
        listener.idle_timeout = options.udp_idle_timeout;
      }
      listener.health_check.type = model::HealthCheckType::kNone;
      listener.persistence = options.persistence;
      listener.client_ip = tcp ? options.client_ip : model::ClientIpMode::kOff;
      if (options.acl) {
        listener.acl = acl;
        listener.acl_type = model::AclType::kAllow;
      }
      FULCRUM_RETURN_IF_ERROR(model.CreateListener(
          Id("lsn-", n), lb, tcp ? model::Protocol::kTcp : model::Protocol::kUdp,
          tcp ? kTcpPort : kUdpPort, listener, kModelNow));
    }
  }
  return model;
}

template <typename F, typename B = F>
void LearnNeighbors(Forwarder& fw) {
  fw.LearnNeighbor(F::kGateway, kGatewayMac, kClientPort);
  for (std::uint32_t b = 0; b < kBackends; ++b) {
    fw.LearnNeighbor(Nth(B::kBackendBase, b), BackendMac(b), kBackendPort);
  }
}

// The worker's connection table of F.
template <typename F>
auto& TableOf(dataplane::PipelineWorker& pw) {
  if constexpr (F::kIpv6) {
    return pw.table6;
  } else {
    return pw.table;
  }
}

// The smallest table a Forwarder takes: the size of the table of the family a scenario does
// not use.
constexpr std::uint32_t kUnusedTableCapacity = 1024;

// A Forwarder whose table of F holds `capacity` connections, the bench's model of F (with
// backends of B) applied (workers stopped: Apply adopts for them), neighbours learnt, the first
// Apply's announcements drained.
template <typename F, typename B = F>
std::unique_ptr<Forwarder> StartForwarder(Run& run, std::uint32_t capacity,
                                          const ModelOptions& options) {
  dataplane::ForwarderOptions fo;
  fo.conn_capacity = F::kIpv6 ? kUnusedTableCapacity : capacity;
  fo.conn_capacity6 = F::kIpv6 ? capacity : kUnusedTableCapacity;
  fo.listener_slots = kListenerSlots;
  fo.backend_slots = kBackendSlots;
  Result<std::unique_ptr<Forwarder>> created = Forwarder::Create(run.rig().dataplane(), fo);
  if (!created.ok()) {
    run.Fail(fmt::format("forwarder: {}", created.status().ToString()));
    return nullptr;
  }
  std::unique_ptr<Forwarder> fw = std::move(*created);
  if (TableOf<F>(fw->pipeline(0)).capacity() < capacity) {
    run.Fail(fmt::format("the connection table holds {} connections, not {}",
                         TableOf<F>(fw->pipeline(0)).capacity(), capacity));
    return nullptr;
  }
  LearnNeighbors<F, B>(*fw);
  Result<model::Model> model = BenchModel<F, B>(options);
  if (!model.ok()) {
    run.Fail(fmt::format("model: {}", model.status().ToString()));
    return nullptr;
  }
  const Status applied = fw->Apply(*model);
  if (!applied.ok()) {
    run.Fail(fmt::format("apply: {}", applied.ToString()));
    return nullptr;
  }
  run.rig().DrainAll();
  return fw;
}

struct Range {
  std::uint64_t first = 0;
  std::uint64_t count = 0;
};

// Connections [b * size, (b + 1) * size) clipped to `total`; empty outside 0..batches.
Range BatchOf(std::int64_t b, std::uint64_t size, std::uint64_t total) {
  if (b < 0 || static_cast<std::uint64_t>(b) * size >= total) {
    return {};
  }
  const std::uint64_t first = static_cast<std::uint64_t>(b) * size;
  return {first, std::min(size, total - first)};
}

// Puts `flags_list` segments of every connection of `range` from the clients on the client
// ring (per connection, in that order).
template <typename F>
bool InjectFromClients(Run& run, Range range, std::initializer_list<std::uint8_t> flags_list,
                       std::uint64_t first_id = 0) {
  const auto per_conn = static_cast<unsigned>(flags_list.size());
  return run.Inject(kClientPort, static_cast<unsigned>(range.count) * per_conn, F::kFrameLen,
                    [&](unsigned i, std::uint8_t* data) {
                      const std::uint8_t flags = flags_list.begin()[i % per_conn];
                      const FrameSpec spec{.id = first_id + range.first + i / per_conn,
                                           .proto = nat::kIpProtoTcp,
                                           .tcp_flags = flags,
                                           .payload = (flags & nat::kTcpPsh) != 0,
                                           .spliced = run.spliced()};
                      WriteFromClient<F>(data, run.macs(), spec);
                    });
}

template <typename F>
bool InjectFromBackends(Run& run, Range range, std::initializer_list<std::uint8_t> flags_list,
                        const std::vector<BackendSide>& sides, std::uint64_t window = 0,
                        std::uint64_t first_id = 0) {
  const auto per_conn = static_cast<unsigned>(flags_list.size());
  return run.Inject(kBackendPort, static_cast<unsigned>(range.count) * per_conn, F::kFrameLen,
                    [&](unsigned i, std::uint8_t* data) {
                      const std::uint64_t id = first_id + range.first + i / per_conn;
                      const FrameSpec spec{.id = id,
                                           .proto = nat::kIpProtoTcp,
                                           .tcp_flags = flags_list.begin()[i % per_conn],
                                           .spliced = run.spliced()};
                      WriteFromBackend<F>(data, run.macs(), spec, sides[window ? id % window : id]);
                    });
}

// The rig's fnat local addresses of F.
template <typename F>
std::uint32_t LocalAddresses(const Rig& rig) {
  return F::kIpv6 ? rig.options().local_addresses6 : rig.options().local_addresses;
}

// Checks of frames towards a backend from the local addresses of the rig.
template <typename F>
auto ToBackend(Run& run) {
  return [&run](const std::uint8_t* frame, std::uint16_t len, bool verify) {
    return CheckToBackend<F>(frame, len, run.macs(), LocalAddresses<F>(run.rig()), verify,
                             run.spliced());
  };
}

// Checks of frames towards a backend whose connection must use sides[id] (sides[id % window]).
template <typename F>
auto ToKnownBackend(Run& run, const std::vector<BackendSide>& sides, std::uint64_t window = 0) {
  return [&sides, window, to_backend = ToBackend<F>(run)](const std::uint8_t* frame,
                                                          std::uint16_t len, bool verify) {
    OutputCheck check = to_backend(frame, len, verify);
    const std::uint64_t slot = window != 0 ? check.id % window : check.id;
    if (check.ok && (slot >= sides.size() || !SameSide(check.side, sides[slot]))) {
      check.ok = false;
      check.error = fmt::format("connection {} is not where its SYN went", check.id);
    }
    return check;
  };
}

template <typename F>
auto ToClient(Run& run) {
  return [&run](const std::uint8_t* frame, std::uint16_t len, bool verify) {
    return CheckToClient<F>(frame, len, run.macs(), verify);
  };
}

// Records where the LB sent each SYN (frames towards backends with only SYN set), checks the
// rest against what was recorded.
template <typename F>
auto RecordingSyns(Run& run, std::vector<BackendSide>& sides, std::uint64_t window = 0) {
  return [&sides, window, to_backend = ToBackend<F>(run),
          known = ToKnownBackend<F>(run, sides, window)](const std::uint8_t* frame,
                                                         std::uint16_t len, bool verify) {
    OutputCheck check = to_backend(frame, len, verify);
    if (!check.ok || check.tcp_flags != nat::kTcpSyn) {
      return check.ok ? known(frame, len, verify) : check;
    }
    const std::uint64_t slot = window != 0 ? check.id % window : check.id;
    if (slot >= sides.size()) {
      check.ok = false;
      check.error = fmt::format("a SYN of unknown connection {}", check.id);
      return check;
    }
    sides[slot] = check.side;
    return check;
  };
}

// Opens sides.size() connections through the pipeline, kSetupBatch at a time: round r carries
// the SYNs of batch r, the SYN-ACKs of batch r-1 and the ACKs of batch r-2. Clients are of F,
// backends of B.
template <typename F, typename B = F>
bool OpenConnections(Run& run, std::vector<BackendSide>& sides) {
  const std::uint64_t total = sides.size();
  const auto batches = static_cast<std::int64_t>((total + kSetupBatch - 1) / kSetupBatch);
  for (std::int64_t r = 0; r < batches + 2 && !run.failed(); ++r) {
    const Range syn = BatchOf(r, kSetupBatch, total);
    const Range syn_ack = BatchOf(r - 1, kSetupBatch, total);
    const Range ack = BatchOf(r - 2, kSetupBatch, total);
    if (!InjectFromClients<F>(run, syn, {nat::kTcpSyn}) ||
        !InjectFromClients<F>(run, ack, {nat::kTcpAck}) ||
        !InjectFromBackends<B>(run, syn_ack, {nat::kTcpSyn | nat::kTcpAck}, sides)) {
      return false;
    }
    run.rig().RunUntilIdle();
    const std::uint64_t out = run.Collect(kBackendPort, RecordingSyns<B>(run, sides)) +
                              run.Collect(kClientPort, ToClient<F>(run));
    if (out != syn.count + syn_ack.count + ack.count) {
      run.Fail(fmt::format("setup round {}: {} frames in, {} out", r,
                           syn.count + syn_ack.count + ack.count, out));
    }
  }
  return !run.failed();
}

// ---- io_floor

// A burst handler that sends every packet out of the other port, untouched.
struct Untouched {
  std::array<std::uint16_t, dataplane::kMaxPortIds> out{};
};

void ForwardUntouched(dataplane::WorkerContext& worker, std::uint16_t rx_port, rte_mbuf** packets,
                      std::uint16_t count) {
  const auto& state = *static_cast<const Untouched*>(worker.handler_state);
  const std::uint16_t out = state.out[rx_port];
  for (std::uint16_t i = 0; i < count; ++i) {
    dataplane::EnqueueTx(worker, out, packets[i]);
  }
}

OutputCheck CheckUntouched(const std::uint8_t* frame, std::uint16_t len, bool /*verify*/) {
  OutputCheck check;
  check.ok = len == Family4::kFrameLen && frame[14 + Family4::kTtlAt] == 64;
  if (!check.ok) {
    check.error = "io_floor changed a frame";
  }
  return check;
}

// How many measured repetitions of `rounds_per_rep` rounds, and the rounds themselves.
std::uint64_t RoundsPerRep(const BenchOptions& options, std::uint64_t packets_per_round) {
  return std::max<std::uint64_t>(1, options.packets_per_rep / packets_per_round);
}

// Runs `round(measured)` until `seconds` of wall time have passed (the warm-up of a
// steady-state scenario) or `max_rounds` rounds ran, at least once, or until the run fails.
template <typename Round>
void WarmUp(Run& run, double seconds, Round&& round,
            std::uint64_t max_rounds = std::numeric_limits<std::uint64_t>::max()) {
  const Clock::time_point end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(seconds));
  std::uint64_t rounds = 0;
  do {
    round(false);
  } while (Clock::now() < end && ++rounds < max_rounds && !run.failed());
}

}  // namespace

ScenarioResult RunIoFloor(Rig& rig, const BenchOptions& options) {
  Run run(rig, "io_floor");
  Untouched untouched;
  untouched.out[rig.port_id(kClientPort)] = rig.port_id(kBackendPort);
  untouched.out[rig.port_id(kBackendPort)] = rig.port_id(kClientPort);
  if (const Status set = rig.dataplane().SetBurstHandler(ForwardUntouched, &untouched); !set.ok()) {
    run.Fail(set.ToString());
    return run.Finish();
  }
  const BackendSide any{.local_port = 1024, .known = 1};
  const std::uint64_t rounds = RoundsPerRep(options, 2 * kRoundPerQueue);
  for (std::uint32_t rep = 0; rep <= options.reps && !run.failed(); ++rep) {
    std::uint64_t cycles = 0;
    for (std::uint64_t round = 0; round < rounds && !run.failed(); ++round) {
      if (!InjectFromClients<Family4>(run, {0, kRoundPerQueue}, {nat::kTcpAck}) ||
          !run.Inject(kBackendPort, kRoundPerQueue, Family4::kFrameLen,
                      [&](unsigned i, std::uint8_t* data) {
                        WriteFromBackend<Family4>(data, run.macs(),
                                                  {.id = i, .tcp_flags = nat::kTcpAck}, any);
                      })) {
        break;
      }
      cycles += rig.Measure();
      const std::uint64_t out =
          run.Collect(kBackendPort, CheckUntouched) + run.Collect(kClientPort, CheckUntouched);
      if (rep > 0) {
        run.result().packets += 2 * kRoundPerQueue;
        run.result().forwarded += out;
      }
    }
    if (rep > 0) {
      run.result().mpps_reps.push_back(2.0 * kRoundPerQueue * rounds / Seconds(cycles) / 1e6);
    }
  }
  (void)rig.dataplane().SetBurstHandler(dataplane::DropAllNoService, nullptr);
  return run.Finish();
}

// Established connections of clients of F with backends of B (B = F, or NAT64: IPv6 clients
// and IPv4 backends).
template <typename F, typename B>
ScenarioResult RunEstablished(Rig& rig, const BenchOptions& options, const std::string& name,
                              std::uint64_t connections, Feature feature) {
  Run run(rig, name);
  if (feature == Feature::kProxy) {
    run.set_spliced(kProxyV2Len<F>);
  }
  connections = std::max<std::uint64_t>(1000, connections / options.scale_down);
  run.result().connections = connections;
  const std::uint64_t ports = nat::PortPool::kMaxPort - nat::PortPool::kMinPort + 1;
  if (connections > std::uint64_t{LocalAddresses<B>(rig)} * ports) {
    run.Fail(fmt::format("{} fnat connections need {} local addresses, the rig has {}", connections,
                         (connections + ports - 1) / ports, LocalAddresses<B>(rig)));
    return run.Finish();
  }
  const auto capacity = static_cast<std::uint32_t>(connections + connections / 8 + 4096);
  std::unique_ptr<Forwarder> fw =
      StartForwarder<F, B>(run, capacity, WithFeature(ModelOptions{}, feature));
  if (fw == nullptr) {
    return run.Finish();
  }
  const auto& table = TableOf<F>(fw->pipeline(0));
  std::vector<BackendSide> sides(connections);
  if (!OpenConnections<F, B>(run, sides)) {
    return run.Finish();
  }
  if (table.size() != connections) {
    run.Fail(fmt::format("{} connections opened, the table holds {}", connections, table.size()));
    return run.Finish();
  }
  Rng rng(kSeed);
  const std::uint64_t rounds = RoundsPerRep(options, 2 * kRoundPerQueue);
  for (std::uint32_t rep = 0; rep <= options.reps && !run.failed(); ++rep) {
    std::uint64_t cycles = 0;
    for (std::uint64_t round = 0; round < rounds && !run.failed(); ++round) {
      const bool injected =
          run.Inject(kClientPort, kRoundPerQueue, F::kFrameLen,
                     [&](unsigned, std::uint8_t* data) {
                       WriteFromClient<F>(data, run.macs(),
                                          {.id = rng.Below(connections),
                                           .tcp_flags = nat::kTcpAck,
                                           .spliced = run.spliced()});
                     }) &&
          run.Inject(kBackendPort, kRoundPerQueue, B::kFrameLen, [&](unsigned, std::uint8_t* data) {
            const std::uint64_t id = rng.Below(connections);
            WriteFromBackend<B>(data, run.macs(),
                                {.id = id, .tcp_flags = nat::kTcpAck, .spliced = run.spliced()},
                                sides[id]);
          });
      if (!injected) {
        break;
      }
      cycles += rig.Measure();
      const std::uint64_t out = run.Collect(kBackendPort, ToKnownBackend<B>(run, sides)) +
                                run.Collect(kClientPort, ToClient<F>(run));
      if (out != 2 * kRoundPerQueue) {
        run.Fail(fmt::format("{} frames in, {} out", 2 * kRoundPerQueue, out));
      }
      if (rep > 0) {
        run.result().packets += 2 * kRoundPerQueue;
        run.result().forwarded += out;
      }
    }
    if (rep > 0) {
      run.result().mpps_reps.push_back(2.0 * kRoundPerQueue * rounds / Seconds(cycles) / 1e6);
    }
  }
  if (table.size() != connections) {
    run.Fail(fmt::format("the table holds {} connections after the run, not {}", table.size(),
                         connections));
  }
  return run.Finish();
}

template <typename F>
ScenarioResult RunTcpLifecycle(Rig& rig, const BenchOptions& options, Feature feature) {
  Run run(rig, ScenarioName<F>("tcp_lifecycle", feature));
  if (feature == Feature::kProxy) {
    run.set_spliced(kProxyV2Len<F>);
  }
  std::unique_ptr<Forwarder> fw =
      StartForwarder<F>(run, options.steady_capacity, WithFeature(ModelOptions{}, feature));
  if (fw == nullptr) {
    return run.Finish();
  }
  std::vector<BackendSide> sides(kLifecycleWindow);
  // Round r: from clients the SYNs of batch r, ACK + data + FIN of batch r-2 and the last ACK
  // of batch r-4; from backends the SYN-ACKs of batch r-1 and ACK + FIN of batch r-3. Batch
  // r-4 is complete after round r.
  std::int64_t r = 0;
  constexpr std::uint8_t kAck = nat::kTcpAck;
  auto round = [&](bool measured) -> std::uint64_t {
    auto batch = [&](std::int64_t b) { return BatchOf(b, kLifecycleBatch, kMaxConnId); };
    const Range syn = batch(r), syn_ack = batch(r - 1), close = batch(r - 2),
                backend_close = batch(r - 3), last_ack = batch(r - 4);
    const bool injected =
        InjectFromClients<F>(run, syn, {nat::kTcpSyn}) &&
        InjectFromClients<F>(run, close, {kAck, kAck | nat::kTcpPsh, kAck | nat::kTcpFin}) &&
        InjectFromClients<F>(run, last_ack, {kAck}) &&
        InjectFromBackends<F>(run, syn_ack, {nat::kTcpSyn | kAck}, sides, kLifecycleWindow) &&
        InjectFromBackends<F>(run, backend_close, {kAck, kAck | nat::kTcpFin}, sides,
                              kLifecycleWindow);
    ++r;
    if (!injected) {
      return 0;
    }
    const std::uint64_t in =
        syn.count + syn_ack.count + 3 * close.count + 2 * backend_close.count + last_ack.count;
    const std::uint64_t cycles = rig.Measure();
    const std::uint64_t out =
        run.Collect(kBackendPort, RecordingSyns<F>(run, sides, kLifecycleWindow)) +
        run.Collect(kClientPort, ToClient<F>(run));
    if (out != in) {
      run.Fail(fmt::format("round {}: {} frames in, {} out", r - 1, in, out));
    }
    if (measured) {
      run.result().packets += in;
      run.result().forwarded += out;
    }
    return cycles;
  };
  WarmUp(run, options.steady_warmup_s, round);
  const std::uint64_t rounds = RoundsPerRep(options, kLifecyclePackets * kLifecycleBatch);
  std::vector<double> conns_per_s;
  for (std::uint32_t rep = 0; rep < options.reps && !run.failed(); ++rep) {
    std::uint64_t cycles = 0;
    const std::uint64_t packets_before = run.result().packets;
    for (std::uint64_t i = 0; i < rounds && !run.failed(); ++i) {
      cycles += round(true);
    }
    const double seconds = Seconds(cycles);
    run.result().mpps_reps.push_back(static_cast<double>(run.result().packets - packets_before) /
                                     seconds / 1e6);
    conns_per_s.push_back(static_cast<double>(rounds * kLifecycleBatch) / seconds);
  }
  run.result().conns_per_s = Median(conns_per_s);
  run.result().connections = TableOf<F>(fw->pipeline(0)).size();
  run.result().opened = fw->pipeline(0).new_conns.Read();
  return run.Finish();
}

template <typename F>
ScenarioResult RunUdpNew(Rig& rig, const BenchOptions& options, Feature feature) {
  Run run(rig, ScenarioName<F>("udp_new", feature));
  std::unique_ptr<Forwarder> fw = StartForwarder<F>(run, options.steady_capacity,
                                                    WithFeature({.udp_idle_timeout = 1}, feature));
  if (fw == nullptr) {
    return run.Finish();
  }
  std::uint64_t next_id = 0;
  auto round = [&](bool measured) -> std::uint64_t {
    const std::uint64_t first = next_id;
    next_id += kMaxRoundPackets;
    if (!run.Inject(
            kClientPort, kMaxRoundPackets, F::kFrameLen, [&](unsigned i, std::uint8_t* data) {
              WriteFromClient<F>(data, run.macs(), {.id = first + i, .proto = nat::kIpProtoUdp});
            })) {
      return 0;
    }
    const std::uint64_t cycles = rig.Measure();
    const std::uint64_t out =
        run.Collect(kBackendPort, [&, to_backend = ToBackend<F>(run)](
                                      const std::uint8_t* frame, std::uint16_t len, bool verify) {
          OutputCheck check = to_backend(frame, len, verify);
          if (check.ok && (check.id < first || check.id >= next_id)) {
            check.ok = false;
            check.error = fmt::format("datagram {} out of round {}..{}", check.id, first, next_id);
          }
          return check;
        });
    if (out != kMaxRoundPackets) {
      run.Fail(fmt::format("{} datagrams in, {} out", kMaxRoundPackets, out));
    }
    if (measured) {
      run.result().packets += kMaxRoundPackets;
      run.result().forwarded += out;
    }
    return cycles;
  };
  // --quick runs for less than the 1 s idle timeout, so nothing expires and the table must
  // hold every flow: the warm-up leaves room for the measured packets, however fast it runs.
  const std::uint64_t measured = options.reps * options.packets_per_rep;
  const std::uint64_t room =
      options.steady_capacity > measured ? options.steady_capacity - measured : 0;
  WarmUp(run, options.steady_warmup_s, round,
         options.quick ? room / 2 / kMaxRoundPackets : std::numeric_limits<std::uint64_t>::max());
  const std::uint64_t rounds = RoundsPerRep(options, kMaxRoundPackets);
  std::vector<double> conns_per_s;
  for (std::uint32_t rep = 0; rep < options.reps && !run.failed(); ++rep) {
    std::uint64_t cycles = 0;
    for (std::uint64_t i = 0; i < rounds && !run.failed(); ++i) {
      cycles += round(true);
    }
    const double rate = static_cast<double>(rounds * kMaxRoundPackets) / Seconds(cycles);
    run.result().mpps_reps.push_back(rate / 1e6);
    conns_per_s.push_back(rate);
  }
  run.result().conns_per_s = Median(conns_per_s);
  run.result().connections = TableOf<F>(fw->pipeline(0)).size();
  run.result().opened = fw->pipeline(0).new_conns.Read();
  return run.Finish();
}

MaglevFigures RunMaglev(const BenchOptions& options) {
  MaglevFigures figures;
  for (const std::uint32_t count : {10u, 100u, 1000u}) {
    std::vector<nat::MaglevBackend> backends;
    for (std::uint32_t b = 0; b < count; ++b) {
      backends.push_back({.key = std::uint64_t{Ip4(10, 0, 0, 0) + b} << 16 | 80, .weight = 1});
    }
    std::vector<double> ms;
    for (std::uint32_t rep = 0; rep < std::max<std::uint32_t>(3, options.reps); ++rep) {
      const Clock::time_point start = Clock::now();
      Result<nat::MaglevTable> table = nat::MaglevTable::Build(backends, kMaglevSize);
      const double elapsed =
          std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      if (table.ok() && table->size() == kMaglevSize) {
        ms.push_back(elapsed);
      }
    }
    figures.build_ms[count] = Median(ms);
  }
  return figures;
}

PublishFigures RunPublish(Rig& rig, const BenchOptions& options) {
  PublishFigures figures;
  Run run(rig, "publish");
  std::unique_ptr<Forwarder> fw = StartForwarder<Family4>(run, 65536, {});
  Result<model::Model> model = BenchModel<Family4>({});
  if (fw == nullptr || !model.ok()) {
    figures.errors = run.result().errors;
    return figures;
  }
  const std::uint32_t applies = options.quick ? 10 : 50;
  std::vector<double> compile_us;
  for (std::uint32_t i = 0; i < applies; ++i) {
    const Clock::time_point start = Clock::now();
    Result<dataplane::CompileResult> compiled =
        dataplane::CompileSnapshot(*model, rig.dataplane().config(), {.workers = 1},
                                   dataplane::SlotState(kListenerSlots, kBackendSlots), 1, nullptr);
    compile_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    if (!compiled.ok()) {
      figures.errors.push_back(compiled.status().ToString());
      return figures;
    }
  }
  figures.compile_us = Median(compile_us);
  if (const Status started = rig.dataplane().Start(); !started.ok()) {
    figures.errors.push_back(started.ToString());
    return figures;
  }
  const Endpoint first_backend{AddressOf(Family4::kBackendBase), kBackendTcpPort};
  std::vector<double> apply_us;
  for (std::uint32_t i = 0; i < applies; ++i) {
    // A weight change: the listener's BackendSet and scheduler state are rebuilt.
    if (const Status changed = model->SetWeight(Id("sg-", 1), first_backend, i % 2 == 0 ? 20 : 10);
        !changed.ok()) {
      figures.errors.push_back(changed.ToString());
      break;
    }
    const Clock::time_point start = Clock::now();
    const Status applied = fw->Apply(*model);
    apply_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    if (!applied.ok()) {
      figures.errors.push_back(applied.ToString());
      break;
    }
    for (std::size_t w = 0; w < fw->worker_count(); ++w) {
      if (fw->pipeline(w).adopted_generation.load() != fw->generation()) {
        figures.errors.push_back(fmt::format("worker {} runs generation {} after Apply of {}", w,
                                             fw->pipeline(w).adopted_generation.load(),
                                             fw->generation()));
      }
    }
  }
  rig.dataplane().Stop();
  fw.reset();
  rig.DrainAll();
  figures.apply_us = Median(apply_us);
  figures.max_apply_us = apply_us.empty() ? 0 : *std::max_element(apply_us.begin(), apply_us.end());
  return figures;
}

// `listeners` tcp listeners, 64 per LB (VIPs from 198.19.0.1), each LB's over one group of 10
// backends, Maglev, no health checks.
Result<model::Model> FlapModel(std::uint32_t listeners) {
  constexpr std::uint32_t kPerLb = model::kMaxListenersPerLb;
  constexpr std::uint32_t kFlapBackends = 10;
  model::Model model = EmptyModel();
  for (std::uint32_t l = 0; l < listeners; ++l) {
    const std::uint32_t lb_index = l / kPerLb;
    const std::string lb = Id("lb-", lb_index + 1);
    const std::string group = Id("sg-", lb_index + 1);
    if (l % kPerLb == 0) {
      const IpAddress vip = IpAddress::V4(Ip4(198, 19, 0, 1) + lb_index);
      FULCRUM_RETURN_IF_ERROR(model.CreateLb(lb, "flap", vip, kModelNow));
      FULCRUM_RETURN_IF_ERROR(model.CreateGroup(group, lb, "flap"));
      for (std::uint32_t b = 0; b < kFlapBackends; ++b) {
        FULCRUM_RETURN_IF_ERROR(model.AddBackend(
            group, {AddressOf(Nth(Family4::kBackendBase, b)), kBackendTcpPort}, 10));
      }
    }
    model::ListenerOptions options;
    options.group = group;
    options.scheduler = model::Scheduler::kMaglev;
    options.health_check.type = model::HealthCheckType::kNone;
    FULCRUM_RETURN_IF_ERROR(model.CreateListener(Id("lsn-", l + 1), lb, model::Protocol::kTcp,
                                                 1000 + l % kPerLb, options, kModelNow));
  }
  return model;
}

HealthFlapFigures RunHealthFlap(Rig& rig, const BenchOptions& options) {
  HealthFlapFigures figures;
  const std::vector<std::uint32_t> counts = options.quick
                                                ? std::vector<std::uint32_t>{1, 100, 1000}
                                                : std::vector<std::uint32_t>{1, 1000, 10000};
  const std::uint32_t flaps = options.quick ? 2 : 4;
  const Endpoint flapped{AddressOf(Family4::kBackendBase), kBackendTcpPort};
  for (const std::uint32_t listeners : counts) {
    Result<model::Model> model = FlapModel(listeners);
    if (!model.ok()) {
      figures.errors.push_back(model.status().ToString());
      return figures;
    }
    dataplane::ForwarderOptions fo;
    fo.conn_capacity = 4096;
    fo.listener_slots = listeners + 64;
    fo.backend_slots = 16 * listeners + 256;
    fo.apply_timeout = std::chrono::minutes(2);
    Result<std::unique_ptr<Forwarder>> created = Forwarder::Create(rig.dataplane(), fo);
    if (!created.ok()) {
      figures.errors.push_back(created.status().ToString());
      return figures;
    }
    std::unique_ptr<Forwarder> fw = std::move(*created);
    const Clock::time_point compile_start = Clock::now();
    Result<dataplane::CompileResult> compiled = dataplane::CompileSnapshot(
        *model, rig.dataplane().config(), {.workers = 1},
        dataplane::SlotState(fo.listener_slots, fo.backend_slots), 1, nullptr);
    figures.compile_ms[listeners] =
        std::chrono::duration<double, std::milli>(Clock::now() - compile_start).count();
    if (!compiled.ok()) {
      figures.errors.push_back(compiled.status().ToString());
      return figures;
    }
    compiled->snapshot.reset();
    if (const Status applied = fw->Apply(*model); !applied.ok()) {
      figures.errors.push_back(applied.ToString());
      return figures;
    }
    if (const Status started = rig.dataplane().Start(); !started.ok()) {
      figures.errors.push_back(started.ToString());
      return figures;
    }
    std::vector<double> apply_ms;
    for (std::uint32_t i = 0; i < flaps; ++i) {
      const model::HealthState state =
          i % 2 == 0 ? model::HealthState::kDown : model::HealthState::kUp;
      if (Result<bool> set = model->SetHealth(Id("lsn-", 1), flapped, state, "bench", kModelNow);
          !set.ok()) {
        figures.errors.push_back(set.status().ToString());
        break;
      }
      const Clock::time_point start = Clock::now();
      const Status applied = fw->Apply(*model);
      apply_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      if (!applied.ok()) {
        figures.errors.push_back(applied.ToString());
        break;
      }
      if (fw->pipeline(0).adopted_generation.load() != fw->generation()) {
        figures.errors.push_back(
            fmt::format("{} listeners: the worker runs generation {} after "
                        "Apply of {}",
                        listeners, fw->pipeline(0).adopted_generation.load(), fw->generation()));
      }
    }
    rig.dataplane().Stop();
    fw.reset();
    rig.DrainAll();
    figures.apply_ms[listeners] = Median(apply_ms);
    std::fprintf(stderr, "lb-bench: health_flap: %u listeners: %.2f ms (compile %.2f ms)\n",
                 listeners, figures.apply_ms[listeners], figures.compile_ms[listeners]);
  }
  return figures;
}

template ScenarioResult RunEstablished<Family4>(Rig&, const BenchOptions&, const std::string&,
                                                std::uint64_t, Feature);
template ScenarioResult RunEstablished<Family6>(Rig&, const BenchOptions&, const std::string&,
                                                std::uint64_t, Feature);
template ScenarioResult RunEstablished<Family6, Family4>(Rig&, const BenchOptions&,
                                                         const std::string&, std::uint64_t,
                                                         Feature);
template ScenarioResult RunTcpLifecycle<Family4>(Rig&, const BenchOptions&, Feature);
template ScenarioResult RunTcpLifecycle<Family6>(Rig&, const BenchOptions&, Feature);
template ScenarioResult RunUdpNew<Family4>(Rig&, const BenchOptions&, Feature);
template ScenarioResult RunUdpNew<Family6>(Rig&, const BenchOptions&, Feature);

double TableBytesPerConnection(std::uint32_t capacity) {
  return static_cast<double>(nat::ConnTable::MemoryBytes(capacity)) / capacity;
}

double PoolBytesPerConnection(std::uint32_t local_addresses, std::uint64_t connections) {
  const double ports = nat::PortPool::kMaxPort - nat::PortPool::kMinPort + 1;
  // A FIFO ring of 2-byte ports and a bitmap of 65536 bits per local address (one worker).
  const double per_address = ports * 2 + 65536 / 8.0;
  return per_address * local_addresses / static_cast<double>(connections);
}

}  // namespace fulcrum::bench
