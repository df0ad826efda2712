#include "dataplane/eal.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include <fmt/format.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_flow.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "common/log.h"

namespace fulcrum::dataplane {
namespace {

Logger logger("dataplane");

constexpr std::uint32_t kMempoolCache = 256;
// Room for two VLAN tags on top of the Ethernet header and CRC.
constexpr std::uint32_t kFrameOverhead = RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN + 8;

enum class EalState { kNever, kFailed, kInitialised, kCleanedUp };
std::mutex eal_mutex;
EalState eal_state = EalState::kNever;
// rte_eal_init may keep pointers into argv: the strings live as long as the process.
std::vector<std::string>* eal_argv_storage = nullptr;

std::string Join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (const std::string& part : parts) {
    if (!out.empty()) {
      out += separator;
    }
    out += part;
  }
  return out;
}

bool HasDevarg(std::string_view args, std::string_view key) {
  std::size_t pos = 0;
  while ((pos = args.find(',', pos)) != std::string_view::npos) {
    ++pos;
    if (args.substr(pos, key.size()) == key && args.substr(pos + key.size(), 1) == "=") {
      return true;
    }
  }
  return false;
}

Result<std::vector<std::uint32_t>> WorkerCpus(const DaemonConfig& config, std::uint32_t cpu_count) {
  std::vector<std::uint32_t> cpus = config.workers.cpus;
  if (cpus.empty()) {
    for (std::uint32_t i = 0; i < config.workers.count; ++i) {
      cpus.push_back((config.eal.main_cpu + 1 + i) % cpu_count);
    }
  }
  if (config.eal.main_cpu >= cpu_count) {
    return Error(ErrorCode::kInvalidParameter,
                 "eal.main_cpu: CPU {} does not exist (this machine has {} CPUs)",
                 config.eal.main_cpu, cpu_count);
  }
  for (std::size_t i = 0; i < cpus.size(); ++i) {
    if (cpus[i] >= cpu_count) {
      return Error(ErrorCode::kInvalidParameter,
                   "workers.cpus[{}]: CPU {} does not exist (this machine has {} CPUs)", i, cpus[i],
                   cpu_count);
    }
  }
  return cpus;
}

void AppendMemoryArgs(const EalConfig& eal, std::vector<std::string>& args) {
  if (eal.no_huge) {
    args.push_back("--no-huge");
  }
  if (eal.memory_mb > 0) {
    args.push_back("-m");
    args.push_back(std::to_string(eal.memory_mb));
  }
}

void AppendDeviceArgs(const DaemonConfig& config, std::vector<std::string>& args) {
  bool any_pci = std::any_of(config.ports.begin(), config.ports.end(),
                             [](const PortConfig& port) { return port.is_pci(); });
  if (!any_pci) {
    args.push_back("--no-pci");
  }
  for (const PortConfig& port : config.ports) {
    args.push_back(port.is_pci() ? "-a" : "--vdev");
    args.push_back(PortDeviceArgs(port, config.workers.count));
  }
}

// Toeplitz with a key of repeated 0x6d5a hashes (a,b) and (b,a) alike (Woo and Park,
// "Scalable TCP Session Monitoring with Symmetric Receive-side Scaling", 2012).
std::vector<std::uint8_t> SymmetricRssKey(std::size_t size) {
  std::vector<std::uint8_t> key(size);
  for (std::size_t i = 0; i < size; ++i) {
    key[i] = (i % 2 == 0) ? 0x6d : 0x5a;
  }
  return key;
}

Status DpdkError(int code, std::string_view what, std::string_view port) {
  return Error(ErrorCode::kUnavailable, "port \"{}\": {} failed: {}", port, what,
               rte_strerror(code < 0 ? -code : code));
}

PortOffloads TxOffloadCapabilities(const rte_eth_dev_info& info) {
  PortOffloads offloads;
  offloads.ipv4_cksum = (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) != 0;
  offloads.tcp_cksum = (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_TCP_CKSUM) != 0;
  offloads.udp_cksum = (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_UDP_CKSUM) != 0;
  offloads.multi_segs = (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS) != 0;
  return offloads;
}

void ConfigureRss(const rte_eth_dev_info& info, std::uint16_t rx_queues, rte_eth_conf& conf,
                  std::vector<std::uint8_t>& key, PortOffloads& offloads) {
  constexpr std::uint64_t kWanted = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
  std::uint64_t rss_hf = kWanted & info.flow_type_rss_offloads;
  if (rx_queues < 2 || rss_hf == 0) {
    return;
  }
  conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
  conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
  if (info.hash_key_size > 0) {
    key = SymmetricRssKey(info.hash_key_size);
    conf.rx_adv_conf.rss_conf.rss_key = key.data();
    conf.rx_adv_conf.rss_conf.rss_key_len = info.hash_key_size;
  }
  offloads.rss = true;
  offloads.rss_hf = rss_hf;
}

Status SetupQueues(PortInfo& info, const PortConfig& config, rte_mempool* pool) {
  std::uint16_t rx_desc = static_cast<std::uint16_t>(config.rx_descriptors);
  std::uint16_t tx_desc = static_cast<std::uint16_t>(config.tx_descriptors);
  int rc = rte_eth_dev_adjust_nb_rx_tx_desc(info.port_id, &rx_desc, &tx_desc);
  if (rc != 0) {
    return DpdkError(rc, "adjusting descriptor counts", info.name);
  }
  info.rx_descriptors = rx_desc;
  info.tx_descriptors = tx_desc;
  unsigned socket = static_cast<unsigned>(info.socket);
  for (std::uint16_t q = 0; q < info.rx_queues; ++q) {
    rc = rte_eth_rx_queue_setup(info.port_id, q, rx_desc, socket, nullptr, pool);
    if (rc != 0) {
      return DpdkError(rc, fmt::format("rx queue {} setup", q), info.name);
    }
  }
  for (std::uint16_t q = 0; q < info.tx_queues; ++q) {
    rc = rte_eth_tx_queue_setup(info.port_id, q, tx_desc, socket, nullptr);
    if (rc != 0) {
      return DpdkError(rc, fmt::format("tx queue {} setup", q), info.name);
    }
  }
  return Status::Ok();
}

// Whether the device accepts the rule the fnat reply steering needs: ipv4 destination =
// a local address and low bits of the tcp destination port -> one rx queue.
bool ProbeRteFlow(const PortInfo& port, const PortConfig& config) {
  rte_flow_attr attr{};
  attr.ingress = 1;
  // The first IPv4 local address, else the port's own: the probed rule is an IPv4 one.
  auto local = std::find_if(config.local_addresses.begin(), config.local_addresses.end(),
                            [](const IpAddress& addr) { return addr.is_v4(); });
  IpAddress dst = local == config.local_addresses.end() ? config.address.addr() : *local;
  rte_flow_item_ipv4 ip_spec{};
  rte_flow_item_ipv4 ip_mask{};
  ip_spec.hdr.dst_addr = htonl(dst.v4());
  ip_mask.hdr.dst_addr = 0xffffffff;
  rte_flow_item_tcp tcp_spec{};
  rte_flow_item_tcp tcp_mask{};
  tcp_mask.hdr.dst_port = htons(0x1);
  rte_flow_item pattern[4] = {};
  pattern[0].type = RTE_FLOW_ITEM_TYPE_ETH;
  pattern[1].type = RTE_FLOW_ITEM_TYPE_IPV4;
  pattern[1].spec = &ip_spec;
  pattern[1].mask = &ip_mask;
  pattern[2].type = RTE_FLOW_ITEM_TYPE_TCP;
  pattern[2].spec = &tcp_spec;
  pattern[2].mask = &tcp_mask;
  pattern[3].type = RTE_FLOW_ITEM_TYPE_END;
  rte_flow_action_queue queue{};
  queue.index = 0;
  rte_flow_action actions[2] = {};
  actions[0].type = RTE_FLOW_ACTION_TYPE_QUEUE;
  actions[0].conf = &queue;
  actions[1].type = RTE_FLOW_ACTION_TYPE_END;
  rte_flow_error error{};
  return rte_flow_validate(port.port_id, &attr, pattern, actions, &error) == 0;
}

}  // namespace

std::string PortDeviceArgs(const PortConfig& port, std::uint32_t workers) {
  if (port.is_pci()) {
    return port.pci;
  }
  std::string args = port.vdev;
  if (!port.DeviceName().starts_with("net_af_packet")) {
    return args;
  }
  // A queue pair per worker; the kernel's fanout keeps each flow on one of them because lbd
  // clears its rollover flag (dataplane/packet_fanout.h).
  if (!HasDevarg(args, "qpairs")) {
    args += fmt::format(",qpairs={}", workers);
  }
  // The packet ring is the queue the kernel fills while the worker is busy elsewhere; the PMD
  // ignores the descriptor counts, and its default (512 frames) overflows under a bulk flow.
  // Frames come in pairs per 4 KiB block: round up to even.
  if (!HasDevarg(args, "framecnt")) {
    args +=
        fmt::format(",framecnt={}", (std::max(port.rx_descriptors, port.tx_descriptors) + 1) & ~1u);
  }
  return args;
}

std::uint16_t OrderedQueueLimit(std::string_view driver) {
  return driver == "net_tap" ? 1 : 0xffff;
}

int DpdkLogLevel(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return RTE_LOG_INFO;
    case LogLevel::kInfo:
      return RTE_LOG_NOTICE;
    case LogLevel::kWarning:
      return RTE_LOG_WARNING;
    case LogLevel::kError:
      return RTE_LOG_ERR;
  }
  return RTE_LOG_NOTICE;
}

Result<EalPlan> BuildEalPlan(const DaemonConfig& config, std::uint32_t cpu_count) {
  if (cpu_count == 0) {
    return Error(ErrorCode::kInternal, "cannot build EAL arguments: no CPU count");
  }
  Result<std::vector<std::uint32_t>> cpus = WorkerCpus(config, cpu_count);
  FULCRUM_RETURN_IF_ERROR(cpus.status());
  EalPlan plan;
  plan.worker_cpus = *cpus;
  std::vector<std::string> lcores = {fmt::format("0@{}", config.eal.main_cpu)};
  for (std::size_t i = 0; i < plan.worker_cpus.size(); ++i) {
    lcores.push_back(fmt::format("{}@{}", i + 1, plan.worker_cpus[i]));
  }
  std::vector<std::string>& args = plan.args;
  args = {"lbd",         "--lcores", Join(lcores, ","), "--main-lcore",         "0",
          "--proc-type", "primary",  "--file-prefix",   config.eal.file_prefix, "--no-telemetry"};
  AppendMemoryArgs(config.eal, args);
  AppendDeviceArgs(config, args);
  args.push_back("--log-level");
  args.push_back(std::to_string(DpdkLogLevel(config.log_level)));
  args.insert(args.end(), config.eal.extra_args.begin(), config.eal.extra_args.end());
  return plan;
}

Status InitEal(const EalPlan& plan) {
  std::lock_guard lock(eal_mutex);
  if (eal_state != EalState::kNever) {
    return Error(ErrorCode::kInternal,
                 "DPDK EAL was already initialised in this process; it can start only once");
  }
  eal_argv_storage = new std::vector<std::string>(plan.args);
  std::vector<char*> argv;
  for (std::string& arg : *eal_argv_storage) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  logger.Info("starting EAL: {}", Join(plan.args, " "));
  int rc = rte_eal_init(static_cast<int>(argv.size() - 1), argv.data());
  eal_state = rc < 0 ? EalState::kFailed : EalState::kInitialised;
  if (rc < 0) {
    return Error(ErrorCode::kUnavailable, "DPDK EAL initialisation failed: {} (arguments: {})",
                 rte_strerror(rte_errno), Join(plan.args, " "));
  }
  for (std::size_t i = 0; i < plan.worker_cpus.size(); ++i) {
    if (!rte_lcore_is_enabled(static_cast<unsigned>(i + 1))) {
      return Error(ErrorCode::kInternal, "EAL did not enable lcore {} for worker {}", i + 1, i);
    }
  }
  return Status::Ok();
}

void CleanupEal() {
  std::lock_guard lock(eal_mutex);
  if (eal_state == EalState::kInitialised) {
    rte_eal_cleanup();
    eal_state = EalState::kCleanedUp;
  }
}

Result<rte_mempool*> CreateMbufPool(int socket, std::uint32_t mbufs, std::uint32_t max_mtu) {
  std::uint32_t data_room = std::max<std::uint32_t>(
      RTE_MBUF_DEFAULT_BUF_SIZE, max_mtu + kFrameOverhead + RTE_PKTMBUF_HEADROOM);
  std::string name = fmt::format("lbd_mbuf_s{}", socket);
  rte_mempool* pool = rte_pktmbuf_pool_create(name.c_str(), mbufs, kMempoolCache, 0,
                                              static_cast<std::uint16_t>(data_room), socket);
  if (pool == nullptr) {
    return Error(ErrorCode::kUnavailable,
                 "mbuf pool for NUMA socket {} ({} mbufs of {} bytes) failed: {}; raise "
                 "eal.memory_mb or lower mbufs_per_port",
                 socket, mbufs, data_room, rte_strerror(rte_errno));
  }
  return pool;
}

Result<int> PortSocket(const PortConfig& port) {
  std::uint16_t port_id = 0;
  if (rte_eth_dev_get_port_by_name(port.DeviceName().c_str(), &port_id) != 0) {
    return Error(ErrorCode::kUnavailable,
                 "port \"{}\": DPDK has no device \"{}\" (is the PMD loaded and the device "
                 "present? see the EAL log)",
                 port.name, port.DeviceName());
  }
  int socket = rte_eth_dev_socket_id(port_id);
  return socket < 0 ? static_cast<int>(rte_socket_id()) : socket;
}

Result<PortInfo> ConfigurePort(const PortConfig& config, std::uint16_t workers, rte_mempool* pool) {
  PortInfo info;
  info.name = config.name;
  info.device = config.DeviceName();
  if (rte_eth_dev_get_port_by_name(info.device.c_str(), &info.port_id) != 0) {
    return Error(ErrorCode::kUnavailable, "port \"{}\": DPDK has no device \"{}\"", config.name,
                 info.device);
  }
  Result<int> socket = PortSocket(config);
  FULCRUM_RETURN_IF_ERROR(socket.status());
  info.socket = *socket;
  rte_eth_dev_info dev_info{};
  int rc = rte_eth_dev_info_get(info.port_id, &dev_info);
  if (rc != 0) {
    return DpdkError(rc, "reading device info", config.name);
  }
  info.driver = dev_info.driver_name != nullptr ? dev_info.driver_name : "";
  if (info.driver == "net_af_packet" && dev_info.max_rx_queues > workers) {
    // The kernel's fanout would hand some flows to sockets that no worker polls.
    return Error(ErrorCode::kNotSupported,
                 "port \"{}\": qpairs={} is more than the {} workers: the kernel would send "
                 "the flows of the extra queues where no worker reads them",
                 config.name, dev_info.max_rx_queues, workers);
  }
  const std::uint16_t limit = std::min(workers, OrderedQueueLimit(info.driver));
  info.rx_queues = std::min<std::uint16_t>(limit, dev_info.max_rx_queues);
  info.tx_queues = std::min<std::uint16_t>(limit, dev_info.max_tx_queues);
  if (info.rx_queues == 0 || info.tx_queues == 0) {
    return Error(ErrorCode::kUnavailable, "port \"{}\": device offers no rx or tx queue",
                 config.name);
  }
  info.needs_handoff = info.rx_queues < workers || info.tx_queues < workers;
  if (config.mtu < dev_info.min_mtu || config.mtu > dev_info.max_mtu) {
    return Error(ErrorCode::kNotSupported, "port \"{}\": mtu {} is outside the device's {}..{}",
                 config.name, config.mtu, dev_info.min_mtu, dev_info.max_mtu);
  }
  info.mtu = config.mtu;
  info.offloads = TxOffloadCapabilities(dev_info);
  rte_eth_conf conf{};
  conf.rxmode.mtu = config.mtu;
  std::vector<std::uint8_t> rss_key;
  ConfigureRss(dev_info, info.rx_queues, conf, rss_key, info.offloads);
  rc = rte_eth_dev_configure(info.port_id, info.rx_queues, info.tx_queues, &conf);
  if (rc != 0) {
    return DpdkError(rc, "configure", config.name);
  }
  FULCRUM_RETURN_IF_ERROR(SetupQueues(info, config, pool));
  rte_ether_addr mac{};
  if (rte_eth_macaddr_get(info.port_id, &mac) == 0) {
    std::copy(std::begin(mac.addr_bytes), std::end(mac.addr_bytes), info.mac.begin());
  }
  return info;
}

Status StartPort(PortInfo& port, const PortConfig& config) {
  int rc = rte_eth_dev_start(port.port_id);
  if (rc != 0) {
    return DpdkError(rc, "start", port.name);
  }
  rc = rte_eth_promiscuous_enable(port.port_id);
  port.promiscuous = rc == 0 && rte_eth_promiscuous_get(port.port_id) == 1;
  port.offloads.rte_flow = ProbeRteFlow(port, config);
  LinkState link = ReadLink(port.port_id);
  logger.Info(
      "port {} ({} {}, port id {}) started: mac {}, link {}, {} Mb/s, {} rx / {} tx queues{}",
      port.name, port.driver, port.device, port.port_id, MacToString(port.mac),
      link.up ? "up" : "down", link.speed_mbps, port.rx_queues, port.tx_queues,
      port.needs_handoff ? " (fewer queues than workers: software hand-off)" : "");
  return Status::Ok();
}

void StopPort(const PortInfo& port) {
  int rc = rte_eth_dev_stop(port.port_id);
  if (rc != 0) {
    logger.Warn("port {}: stop failed: {}", port.name, rte_strerror(-rc));
  }
}

void ClosePort(const PortInfo& port) { rte_eth_dev_close(port.port_id); }

LinkState ReadLink(std::uint16_t port_id) {
  rte_eth_link link{};
  LinkState state;
  if (rte_eth_link_get_nowait(port_id, &link) == 0) {
    state.up = link.link_status == RTE_ETH_LINK_UP;
    state.speed_mbps = link.link_speed == RTE_ETH_SPEED_NUM_UNKNOWN ? 0 : link.link_speed;
  }
  return state;
}

PortCounters ReadPortCounters(std::uint16_t port_id) {
  rte_eth_stats stats{};
  PortCounters counters;
  if (rte_eth_stats_get(port_id, &stats) == 0) {
    counters.rx_packets = stats.ipackets;
    counters.tx_packets = stats.opackets;
    counters.rx_bytes = stats.ibytes;
    counters.tx_bytes = stats.obytes;
    counters.rx_missed = stats.imissed;
    counters.rx_errors = stats.ierrors;
    counters.tx_errors = stats.oerrors;
    counters.rx_nombuf = stats.rx_nombuf;
  }
  return counters;
}

std::string MacToString(const std::array<std::uint8_t, 6>& mac) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0], mac[1], mac[2], mac[3],
                     mac[4], mac[5]);
}

}  // namespace fulcrum::dataplane
