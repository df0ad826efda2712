// DaemonConfig: lbd's start-up configuration, read once from a JSON file.
//
// Theory of operation: the file says what the machine looks like (ports, CPUs, memory, where
// the socket and the state file live); the object model (load balancers, listeners, groups)
// does not belong here, it arrives over the control socket and persists in the state file.
// Parsing is strict: an unknown key, a wrong type, a bad address or an out-of-range number is
// refused with a message that names the key path (`ports[1].address: "198.18.1.1/33" is not
// an IPv4 prefix`), so a typo never silently falls back to a default. Defaults are filled in
// here, once, so every consumer (EAL argument builder, data plane, lbd) reads final values.
// docs/config.md lists every key. This module is DPDK-free so it is unit-tested without EAL.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "common/net_addr.h"
#include "common/status.h"

namespace fulcrum {

struct EalConfig {
  // CPU of the main lcore (lcore 0), which runs lbd's control thread.
  std::uint32_t main_cpu = 0;
  // Run without hugepages (development, CI, the test bed).
  bool no_huge = false;
  // EAL memory (-m) in MiB; 0 lets EAL size it (hugepages only; no_huge defaults to 512).
  std::uint32_t memory_mb = 0;
  // Names the EAL runtime directory; two primaries with the same prefix refuse to coexist.
  std::string file_prefix = "lbd";
  // Passed to rte_eal_init verbatim, after the generated arguments.
  std::vector<std::string> extra_args;
};

struct WorkersConfig {
  std::uint32_t count = 1;
  // CPU of each worker lcore; CPUs may repeat (workers share a core). Empty: the EAL
  // argument builder places worker i on the (i+1)-th CPU after main_cpu, wrapping around.
  std::vector<std::uint32_t> cpus;
};

struct PortConfig {
  std::string name;
  // Exactly one of pci ("0000:3b:00.0", optionally ",devargs") and vdev
  // ("net_af_packet0,iface=lb-c") is set.
  std::string pci;
  std::string vdev;
  // The port's own IPv4 address and its connected subnet ("198.18.0.1/24"); required.
  Prefix address;
  // The port's own IPv6 address and its connected subnet ("2001:db8::1/64"); optional. A port
  // with both carries both families.
  std::optional<Prefix> address6;
  // fnat source addresses on this port, expanded from singles and "A-B" ranges, in file
  // order. Either family: IPv4 ones lie in `address`, IPv6 ones in `address6`. Consumers that
  // handle one family skip the other's entries.
  std::vector<IpAddress> local_addresses;
  // Next hop for IPv4 destinations outside every connected subnet and route.
  std::optional<IpAddress> gateway;
  // The same for IPv6: a neighbour on `address6` (only set when address6 is).
  std::optional<IpAddress> gateway6;
  std::uint32_t mtu = 1500;
  std::uint32_t rx_descriptors = 1024;
  std::uint32_t tx_descriptors = 1024;

  bool is_pci() const { return !pci.empty(); }
  // The device name EAL gives the port: the PCI address or the vdev name, without devargs.
  std::string DeviceName() const;
};

struct RouteConfig {
  Prefix prefix;     // host bits cleared; IPv4 or IPv6
  IpAddress via;     // the prefix's family, a neighbour on `port`'s subnet of that family
  std::string port;  // a port name; the port whose subnet holds `via` when not written
};

struct ConnTableConfig {
  std::uint32_t capacity_per_worker = 1048576;  // IPv4 connections
  // IPv6 connections (their own table, 128-byte entries); unset: a quarter of
  // capacity_per_worker, at least 1024 (Ipv6Capacity()).
  std::optional<std::uint32_t> ipv6_capacity_per_worker;
  // Session persistence entries (client address -> backend), one table shared by every worker,
  // 8 bytes each; rounded up to a power of two of 8-entry buckets.
  std::uint32_t persistence_capacity = 1048576;

  std::uint32_t Ipv6Capacity(std::uint32_t ipv4_capacity) const {
    return ipv6_capacity_per_worker.value_or(std::max<std::uint32_t>(1024, ipv4_capacity / 4));
  }
};

// Seconds a TCP connection may stay in a transient state. Established connections use the
// listener's idle timeout instead.
struct TcpTimeouts {
  std::uint32_t syn = 30;
  std::uint32_t fin = 30;
  std::uint32_t time_wait = 10;
  std::uint32_t close = 5;
};

struct DaemonConfig {
  std::string socket = "/run/lbd/lbd.sock";
  std::string state_file = "/var/lib/lbd/state.json";
  LogLevel log_level = LogLevel::kInfo;
  // Workers never back off when idle: lowest latency, one full CPU per worker.
  bool busy_poll = false;
  EalConfig eal;
  WorkersConfig workers;
  std::vector<PortConfig> ports;
  std::vector<RouteConfig> routes;
  ConnTableConfig conn_table;
  TcpTimeouts tcp_timeouts;
  // Size of each port's share of its NUMA socket's mbuf pool; always set after Parse (when
  // absent it is derived from the descriptor counts and the worker count).
  std::uint32_t mbufs_per_port = 0;

  static Result<DaemonConfig> Load(const std::string& path);
  static Result<DaemonConfig> Parse(std::string_view json_text);

  // The port named `name`, or nullptr.
  const PortConfig* FindPort(std::string_view name) const;
};

// Upper bounds the parser enforces; exported for the tests and docs/config.md.
inline constexpr std::uint32_t kMaxWorkers = 64;
inline constexpr std::uint32_t kMaxPorts = 16;
inline constexpr std::uint32_t kMaxCpu = 1023;
inline constexpr std::uint32_t kMaxLocalAddressesPerPort = 256;
inline constexpr std::uint32_t kMaxRoutes = 1024;

// The smallest mbufs_per_port that keeps every rx and tx ring of one port full.
std::uint32_t MinMbufsPerPort(const PortConfig& port, std::uint32_t workers);

}  // namespace fulcrum
