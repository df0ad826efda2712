// EAL and port bring-up: from a DaemonConfig to started DPDK ports.
//
// Theory of operation: BuildEalPlan turns the configuration into rte_eal_init's argv and
// the worker CPU placement. It is a pure function, so the argument rules are unit-tested
// without EAL:
//   --lcores 0@<main_cpu>,1@<cpu of worker 0>,...   lcore 0 is the main (control) lcore,
//                                                   lcore i+1 is worker i; CPUs may repeat
//   --main-lcore 0, --proc-type primary, --file-prefix <eal.file_prefix>, --no-telemetry
//   --no-pci when no port is PCI, else -a <pci> for each PCI port (allow-list)
//   --vdev <args> per vdev port (net_af_packet gets qpairs=<workers> and framecnt unless it
//                               says)
//   --no-huge -m N, or -m N with hugepages when eal.memory_mb is set
//   --log-level <n> from log_level, then eal.extra_args verbatim.
// InitEal runs rte_eal_init once per process: DPDK cannot initialise again after
// rte_eal_cleanup, so a second call is refused with a clear error instead of undefined
// behaviour. Ports get one rx and one tx queue per worker, or as many as the device has
// when that is fewer (PortInfo::needs_handoff: the software hand-off between cores covers
// the rest); multi-queue rx uses RSS with a symmetric Toeplitz key so that both directions
// of a flow hash to the same queue. Order within a flow is kept only if every packet of a
// flow arrives on one queue (docs/dataplane.md, "Order"): af_packet's fanout does so once lbd
// clears its rollover flag (dataplane/packet_fanout.h); tun steers a flow to the queue lbd
// last sent it on, so net_tap ports get one queue pair. A port with fewer queues than
// workers spreads them from its home worker on (QueueWorker), so that two single-queue ports
// are polled by two workers.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/daemon_config.h"
#include "common/status.h"

struct rte_mempool;

namespace fulcrum::dataplane {

struct EalPlan {
  std::vector<std::string> args;           // argv, args[0] is the program name
  std::vector<std::uint32_t> worker_cpus;  // CPU of worker i (lcore i + 1)
};

// `cpu_count`: CPUs the machine has; every CPU named must be below it.
Result<EalPlan> BuildEalPlan(const DaemonConfig& config, std::uint32_t cpu_count);

// The --vdev / -a argument for `port`.
std::string PortDeviceArgs(const PortConfig& port, std::uint32_t workers);

// The most queues of a device (DPDK driver name) that keep each flow on one queue: 1 for
// net_tap, unlimited (0xffff) for the others.
std::uint16_t OrderedQueueLimit(std::string_view driver);

// The worker that polls rx queue (and owns tx queue) `queue` of a port with `queues` queues
// whose home worker is `home`. Queue q goes to worker (home + q) mod workers.
constexpr std::uint32_t QueueWorker(std::uint16_t queue, std::uint32_t home,
                                    std::uint32_t workers) {
  return (home + queue) % workers;
}

// The queue of a port that `worker` polls (or transmits on), or -1 when it has none: the
// inverse of QueueWorker for `queues` <= `workers`.
constexpr int WorkerQueue(std::uint32_t worker, std::uint32_t home, std::uint16_t queues,
                          std::uint32_t workers) {
  const std::uint32_t q = (worker + workers - home % workers) % workers;
  return q < queues ? static_cast<int>(q) : -1;
}

// DPDK's numeric log level (RTE_LOG_*) for lbd's level: EAL is one notch quieter than lbd,
// because DPDK's info level is chatty.
int DpdkLogLevel(LogLevel level);

// rte_eal_init with `plan.args`; refused when EAL was initialised before in this process.
Status InitEal(const EalPlan& plan);
// rte_eal_cleanup; safe to call when InitEal did not succeed.
void CleanupEal();

struct PortOffloads {
  bool ipv4_cksum = false;  // tx offloads
  bool tcp_cksum = false;
  bool udp_cksum = false;
  bool multi_segs = false;
  bool rss = false;  // RSS is in use on this port (multi-queue and supported)
  std::uint64_t rss_hf = 0;
  bool rte_flow = false;  // a per-queue steering rule (ipv4 dst + tcp port bits) validates
};

struct PortInfo {
  std::string name;    // from the config
  std::string device;  // EAL device name (PCI address or vdev name)
  std::string driver;
  std::uint16_t port_id = 0;
  int socket = 0;
  std::array<std::uint8_t, 6> mac{};
  std::uint32_t mtu = 0;
  std::uint16_t rx_queues = 0;
  std::uint16_t tx_queues = 0;
  std::uint16_t rx_descriptors = 0;  // after the device's alignment rules
  std::uint16_t tx_descriptors = 0;
  bool needs_handoff = false;  // fewer rx or tx queues than workers
  // The worker that polls queue 0 (QueueWorker): the port's index in the config modulo the
  // workers when the port has fewer queues than workers, else 0.
  std::uint32_t home_worker = 0;
  bool promiscuous = false;
  PortOffloads offloads;
};

struct LinkState {
  bool up = false;
  std::uint32_t speed_mbps = 0;
};

struct PortCounters {
  std::uint64_t rx_packets = 0;
  std::uint64_t tx_packets = 0;
  std::uint64_t rx_bytes = 0;
  std::uint64_t tx_bytes = 0;
  std::uint64_t rx_missed = 0;
  std::uint64_t rx_errors = 0;
  std::uint64_t tx_errors = 0;
  std::uint64_t rx_nombuf = 0;
};

// One mbuf pool for a NUMA socket, sized `mbufs`, with room for frames of `max_mtu`.
Result<rte_mempool*> CreateMbufPool(int socket, std::uint32_t mbufs, std::uint32_t max_mtu);

// The NUMA socket a port's memory should live on (the main lcore's socket for vdevs).
Result<int> PortSocket(const PortConfig& port);

// Configures the port and its queues (not started). `workers` is the wanted queue count.
Result<PortInfo> ConfigurePort(const PortConfig& port, std::uint16_t workers, rte_mempool* pool);

// Starts a configured port, enables promiscuous mode where supported, probes rte_flow.
Status StartPort(PortInfo& port, const PortConfig& config);
void StopPort(const PortInfo& port);
void ClosePort(const PortInfo& port);

LinkState ReadLink(std::uint16_t port_id);
PortCounters ReadPortCounters(std::uint16_t port_id);

// "02:00:00:00:00:01"
std::string MacToString(const std::array<std::uint8_t, 6>& mac);

}  // namespace fulcrum::dataplane
