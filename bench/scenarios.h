// lb-bench's scenarios: what traffic each one offers the worker, and how it is measured.
//
// Theory of operation: a scenario runs in rounds. A round (1) puts up to kMaxRoundPackets
// pre-built frames on each rx ring (allocation and frame writing are not measured), (2) runs
// worker passes (Rig::Pass: PassBegin, rx burst, ProcessBurst/RunBurst, tx flush) until the
// rings are empty, timed with rte_rdtsc, and (3) takes what the worker transmitted off the tx
// rings and checks every frame's addresses, ports, MACs and TTL against the connection it
// belongs to, and one frame in kChecksumSample's checksums from scratch (not measured). A
// repetition is many rounds; its rate is packets / measured time, and a scenario reports the
// median over its repetitions, after a warm-up (the first repetition, or the first seconds
// when the scenario reaches a steady state of creation and expiry).
//
//   io_floor         the same rings, forwarded untouched: rx burst -> tx burst (a burst
//                    handler that only calls EnqueueTx), the cost the pipeline adds to.
//   established_N    ACKs of N established fnat connections, picked at random, half from
//                    clients and half from backends. The connections are opened through the
//                    pipeline first (SYN, SYN-ACK, ACK), not measured.
//   tcp_lifecycle    whole fnat connections: SYN, SYN-ACK, ACK, data, then FIN and ACK both
//                    ways (8 packets), no RST; time_wait lasts 1 s, after which expiry frees
//                    the entry and its port, so connections are created and destroyed.
//   udp_new          every datagram opens a new fnat flow (1 s idle timeout).
//   tcp_lifecycle_persist, udp_new_persist
//                    the same with session persistence (600 s) on every listener: each of
//                    the 65,536 client addresses is scheduled and recorded once, and every
//                    later connection of it looks its entry up (a hit).
//   tcp_lifecycle_acl, udp_new_acl
//                    the same with a 1,000-entry allow list on every listener (999 single
//                    addresses two apart and the clients' network: 1,000 ranges), which
//                    every new connection is looked up in.
//   established_1m_proxy, tcp_lifecycle_proxy
//                    the same with --client-ip proxy-v2 on the TCP listeners: the client's
//                    segments after its SYN start at its first byte, so the handshake's ACK
//                    carries the 28-byte header (the frame grows into the headroom) and every
//                    later segment is shifted by it; the backends' acknowledgements cover it.
//   established_1m_v6, tcp_lifecycle_v6, udp_new_v6
//                    the same traffic in IPv6: IPv6 clients, VIPs, backends and fnat local
//                    addresses (bench/traffic.h, Family6).
//   nat64_established_1m
//                    established_1m with IPv6 clients and VIPs and the IPv4 backends and
//                    local addresses: every packet is translated (RFC 7915) one way or the
//                    other.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench/rig.h"

namespace fulcrum::bench {

struct BenchOptions {
  bool quick = false;
  std::uint32_t reps = 7;                       // measured repetitions per scenario
  std::uint64_t packets_per_rep = 4'000'000;    // packets offered per repetition
  double steady_warmup_s = 2.5;                 // lifecycle and udp_new warm-up
  std::uint32_t steady_capacity = 4 * 1048576;  // their connection table
  std::uint64_t scale_down = 1;                 // divides established_N's N (quick)
};

struct ScenarioResult {
  std::string name;
  std::uint64_t connections = 0;  // concurrent connections held (established_N)
  std::vector<double> mpps_reps;
  double mpps = 0;  // median of mpps_reps
  double ns_per_packet = 0;
  double ratio_to_io_floor = 0;
  std::optional<double> conns_per_s;  // median, lifecycle scenarios
  std::uint64_t packets = 0;          // offered in measured rounds
  std::uint64_t forwarded = 0;        // frames out of the worker in measured rounds
  std::uint64_t checked = 0;          // output frames whose addresses were checked
  std::uint64_t checksummed = 0;      // ... and whose checksums were recomputed
  std::uint64_t timed_packets = 0;    // received inside Rig::Measure (warm-up included)
  std::uint64_t opened = 0;           // connections the pipeline opened (lifecycle scenarios)
  std::uint64_t expired = 0;          // ... and freed by expiry
  std::map<std::string, std::uint64_t> drops;  // non-zero drop counters, whole scenario
  std::vector<std::string> errors;             // what failed (first few)
  double seconds = 0;                          // wall time of the scenario, setup included
};

// Time to build a Maglev table of 65537 slots, by backend count.
struct MaglevFigures {
  std::map<std::uint32_t, double> build_ms;  // median
};

struct PublishFigures {
  double apply_us = 0;    // median Forwarder::Apply with running workers: compile + publish
  double compile_us = 0;  // median CompileSnapshot alone
  double max_apply_us = 0;
  std::vector<std::string> errors;
};

// Time from one backend's health change to every worker running it, by listener count (each
// listener over 10 backends, Maglev): Forwarder::Apply with running workers, which compiles,
// publishes and returns once every worker has adopted the snapshot.
struct HealthFlapFigures {
  std::map<std::uint32_t, double> apply_ms;    // median, by listeners
  std::map<std::uint32_t, double> compile_ms;  // median CompileSnapshot alone, by listeners
  std::vector<std::string> errors;
};

ScenarioResult RunIoFloor(Rig& rig, const BenchOptions& options);
// The pipeline scenarios in address family F (bench/traffic.h: Family4 or Family6); Family6's
// are named with the suffix _v6. RunEstablished<Family6, Family4> is NAT64: IPv6 clients and
// VIPs, IPv4 backends (nat64_established_1m).
// A listener feature a scenario runs with, to measure its cost against the plain one.
enum class Feature {
  kNone,
  kPersist,  // *_persist: session persistence, 600 s
  kProxy,    // *_proxy: --client-ip proxy-v2 on the TCP listeners
  kAcl,      // *_acl: a 1,000-entry allow list on every listener
};
template <typename F, typename B = F>
ScenarioResult RunEstablished(Rig& rig, const BenchOptions& options, const std::string& name,
                              std::uint64_t connections, Feature feature = Feature::kNone);
template <typename F>
ScenarioResult RunTcpLifecycle(Rig& rig, const BenchOptions& options,
                               Feature feature = Feature::kNone);
template <typename F>
ScenarioResult RunUdpNew(Rig& rig, const BenchOptions& options, Feature feature = Feature::kNone);
MaglevFigures RunMaglev(const BenchOptions& options);
PublishFigures RunPublish(Rig& rig, const BenchOptions& options);
HealthFlapFigures RunHealthFlap(Rig& rig, const BenchOptions& options);

// Reserved bytes per connection of a connection table of `capacity` (entry, index, free stack).
double TableBytesPerConnection(std::uint32_t capacity);
// fnat port pool bytes per connection when `connections` fill one worker's pool.
double PoolBytesPerConnection(std::uint32_t local_addresses, std::uint64_t connections);

}  // namespace fulcrum::bench
