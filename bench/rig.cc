#include "bench/rig.h"

#include <unistd.h>

#include <array>
#include <filesystem>
#include <string>

#include <fmt/format.h>
#include <rte_bus_vdev.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "bench/traffic.h"
#include "common/daemon_config.h"

namespace fulcrum::bench {
namespace {

// rte_eth_from_rings names its device "net_ring_" + name.
constexpr std::array<const char*, kPorts> kRingNames = {"lbbc", "lbbb"};

// Both families' local addresses sit on the backend port.
static_assert(Family4::kMaxLocalAddresses + Family6::kMaxLocalAddresses <=
              kMaxLocalAddressesPerPort);

// The machine lb-bench pretends to be: configs/bench-ring.json's shape (one worker, no
// hugepages, a client port and a backend port), with both address families, a gateway towards
// the clients and enough fnat local addresses of each family for 10M connections on one worker.
Result<DaemonConfig> BenchConfig(const RigOptions& options) {
  const std::string text = fmt::format(
      R"({{
        "log_level": "warning",
        "busy_poll": true,
        "eal": {{"no_huge": true, "memory_mb": 512, "file_prefix": "lb-bench-{pid}",
                 "extra_args": ["--no-shconf"]}},
        "workers": {{"count": 1}},
        "tcp_timeouts": {{"syn": 10, "fin": 10, "time_wait": 1, "close": 1}},
        "ports": [
          {{"name": "client", "vdev": "net_ring_{c}", "address": "{c4}/{bits4}",
            "address6": "{c6}/{bits6}", "gateway": "{gateway}", "gateway6": "{gateway6}"}},
          {{"name": "backend", "vdev": "net_ring_{b}", "address": "{b4}/{bits4}",
            "address6": "{b6}/{bits6}",
            "local_addresses": ["{first}-{last}", "{first6}-{last6}"]}}]}})",
      fmt::arg("pid", getpid()), fmt::arg("c", kRingNames[kClientPort]),
      fmt::arg("b", kRingNames[kBackendPort]), fmt::arg("bits4", Family4::kSubnetBits),
      fmt::arg("bits6", Family6::kSubnetBits),
      fmt::arg("c4", IpText(Family4::kPortAddresses[kClientPort])),
      fmt::arg("c6", IpText(Family6::kPortAddresses[kClientPort])),
      fmt::arg("b4", IpText(Family4::kPortAddresses[kBackendPort])),
      fmt::arg("b6", IpText(Family6::kPortAddresses[kBackendPort])),
      fmt::arg("gateway", IpText(Family4::kGateway)),
      fmt::arg("gateway6", IpText(Family6::kGateway)),
      fmt::arg("first", IpText(Family4::kLocalBase)),
      fmt::arg("last", IpText(Nth(Family4::kLocalBase, options.local_addresses - 1))),
      fmt::arg("first6", IpText(Family6::kLocalBase)),
      fmt::arg("last6", IpText(Nth(Family6::kLocalBase, options.local_addresses6 - 1))));
  return DaemonConfig::Parse(text);
}

}  // namespace

Result<std::unique_ptr<Rig>> Rig::Create(const RigOptions& options) {
  if (options.local_addresses == 0 || options.local_addresses > Family4::kMaxLocalAddresses ||
      options.local_addresses6 == 0 || options.local_addresses6 > Family6::kMaxLocalAddresses) {
    return Error(ErrorCode::kInvalidParameter,
                 "local addresses: {} and {} are not within 1..{} and 1..{}",
                 options.local_addresses, options.local_addresses6, Family4::kMaxLocalAddresses,
                 Family6::kMaxLocalAddresses);
  }
  Result<DaemonConfig> config = BenchConfig(options);
  FULCRUM_RETURN_IF_ERROR(config.status());
  std::unique_ptr<Rig> rig(new Rig());
  rig->options_ = options;
  dataplane::DataplaneHooks hooks{.after_eal_init = [&rig] { return rig->ReplaceRingPorts(); }};
  Result<std::unique_ptr<dataplane::Dataplane>> created =
      dataplane::Dataplane::Create(*config, hooks);
  FULCRUM_RETURN_IF_ERROR(created.status());
  rig->dataplane_ = std::move(*created);
  rig->runtime_dir_ = rte_eal_get_runtime_dir();
  // The ports start with the first Start (a stopped port receives nothing); the workers stop
  // again at once, leaving their state to this thread.
  FULCRUM_RETURN_IF_ERROR(rig->dataplane_->Start());
  rig->dataplane_->Stop();
  rig->pool_ = rte_pktmbuf_pool_create("lbb_frames", options.mbufs, 256, 0,
                                       RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
  if (rig->pool_ == nullptr) {
    return Error(ErrorCode::kUnavailable, "the bench's mbuf pool ({} mbufs): {}", options.mbufs,
                 rte_strerror(rte_errno));
  }
  return rig;
}

Rig::~Rig() {
  if (dataplane_ != nullptr) {
    dataplane_->Stop();
    DrainAll();
  }
  dataplane_.reset();  // closes the ports and cleans EAL up; the pool and rings go with it
  if (!runtime_dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(runtime_dir_, ignored);
  }
}

Status Rig::ReplaceRingPorts() {
  for (std::size_t p = 0; p < kPorts; ++p) {
    const std::string device = fmt::format("net_ring_{}", kRingNames[p]);
    if (rte_vdev_uninit(device.c_str()) != 0) {
      return Error(ErrorCode::kInternal, "cannot remove {}", device);
    }
    rx_[p] = rte_ring_create(fmt::format("lbb_rx{}", p).c_str(), kRingSize, SOCKET_ID_ANY,
                             RING_F_SP_ENQ | RING_F_SC_DEQ);
    tx_[p] = rte_ring_create(fmt::format("lbb_tx{}", p).c_str(), kRingSize, SOCKET_ID_ANY,
                             RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (rx_[p] == nullptr || tx_[p] == nullptr) {
      return Error(ErrorCode::kInternal, "cannot create the rings of {}: {}", device,
                   rte_strerror(rte_errno));
    }
    if (rte_eth_from_rings(kRingNames[p], &rx_[p], 1, &tx_[p], 1, rte_socket_id()) < 0) {
      return Error(ErrorCode::kInternal, "cannot rebuild {} on rings: {}", device,
                   rte_strerror(rte_errno));
    }
  }
  return Status::Ok();
}

std::uint32_t Rig::Pass() { return dataplane::RunPass(worker()); }

std::uint64_t Rig::RunUntilIdle() {
  const std::uint64_t start = rte_rdtsc();
  while (Pass() > 0) {
  }
  return rte_rdtsc() - start;
}

std::uint64_t Rig::Measure() {
  const std::uint64_t received = worker().counters.rx_packets.Read();
  const std::uint64_t start = rte_rdtsc();
  while (Pass() > 0) {
  }
  const std::uint64_t cycles = rte_rdtsc() - start;
  timed_packets_ += worker().counters.rx_packets.Read() - received;
  return cycles;
}

unsigned Rig::DrainAll() {
  unsigned drained = 0;
  for (std::size_t p = 0; p < kPorts; ++p) {
    for (rte_ring* ring : {tx_[p], rx_[p]}) {
      if (ring == nullptr) {
        continue;
      }
      void* objects[256];
      unsigned n;
      while ((n = rte_ring_dequeue_burst(ring, objects, 256, nullptr)) > 0) {
        rte_pktmbuf_free_bulk(reinterpret_cast<rte_mbuf**>(objects), n);
        drained += n;
      }
    }
  }
  return drained;
}

}  // namespace fulcrum::bench
