// lb-bench's rig: one real Dataplane (EAL with --no-huge, one worker) whose two net_ring ports
// run on rings the bench owns, and the driver that runs that worker's passes on this thread.
//
// Theory of operation: EAL starts once per process, so the rig lives for the whole run. Right
// after EAL starts (DataplaneHooks::after_eal_init) each net_ring vdev is replaced by a port
// built with rte_eth_from_rings on one rx and one tx ring of ours (as
// tests/dataplane/ring_dataplane.h does), so the bench puts frames where the worker receives
// them and takes what it transmits, with no kernel in the way.
//
// The worker is driven from the main thread while the Dataplane is stopped (the control thread
// owns a stopped worker's state, dataplane/pipeline.h): Pass() is dataplane::RunPass, the body
// of WorkerMain's loop without the idle back-off: stamp the TSC, run the installed pass hook
// (PassBegin), receive a burst from every rx queue, hand it to the installed burst handler
// (ProcessBurst, which calls RunBurst), flush the tx buffers, bump the epoch. Whatever
// handler the Forwarder or the bench installed is what runs, exactly as on a worker lcore.
//
// Port 0 is the client side, port 1 the backend side.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "dataplane/dataplane.h"
#include "nat/arp.h"

struct rte_mempool;
struct rte_ring;
struct rte_mbuf;

namespace fulcrum::bench {

inline constexpr std::size_t kClientPort = 0;
inline constexpr std::size_t kBackendPort = 1;
inline constexpr std::size_t kPorts = 2;
// Room in every ring: a round puts at most kMaxRoundPackets frames on an rx ring.
inline constexpr unsigned kRingSize = 8192;
inline constexpr unsigned kMaxRoundPackets = 2048;

struct RigOptions {
  // fnat local addresses on the backend port, by family (bench/traffic.h: at most
  // Family4::kMaxLocalAddresses and Family6::kMaxLocalAddresses).
  std::uint32_t local_addresses = 192;
  std::uint32_t local_addresses6 = 64;
  std::uint32_t mbufs = 16383;  // the bench's own pool, for the frames it injects
};

class Rig {
 public:
  static Result<std::unique_ptr<Rig>> Create(const RigOptions& options);
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;
  // Destroys the Dataplane (EAL cleanup) and removes EAL's runtime directory.
  ~Rig();

  dataplane::Dataplane& dataplane() { return *dataplane_; }
  dataplane::WorkerContext& worker() { return dataplane_->worker(0); }
  const RigOptions& options() const { return options_; }
  rte_mempool* pool() const { return pool_; }
  rte_ring* rx(std::size_t port) const { return rx_[port]; }
  rte_ring* tx(std::size_t port) const { return tx_[port]; }
  std::uint16_t port_id(std::size_t port) const { return dataplane_->port(port).port_id; }
  const nat::MacAddress& mac(std::size_t port) const { return dataplane_->port(port).mac; }

  // One pass of the worker loop on this thread; returns the packets received. Only while the
  // Dataplane is stopped.
  std::uint32_t Pass();
  // Passes until one receives nothing; returns the TSC cycles they took.
  std::uint64_t RunUntilIdle();
  // RunUntilIdle for the timed rounds, kept out of line so that a profiler can collect it
  // alone (valgrind --toggle-collect); counts the packets it received in timed_packets().
  [[gnu::noinline]] std::uint64_t Measure();
  std::uint64_t timed_packets() const { return timed_packets_; }

  // Frees everything on the tx rings (and the rx rings); returns how many frames.
  unsigned DrainAll();

 private:
  Rig() = default;
  Status ReplaceRingPorts();

  RigOptions options_;
  std::unique_ptr<dataplane::Dataplane> dataplane_;
  std::string runtime_dir_;
  rte_mempool* pool_ = nullptr;
  std::array<rte_ring*, kPorts> rx_{};
  std::array<rte_ring*, kPorts> tx_{};
  std::uint64_t timed_packets_ = 0;
};

}  // namespace fulcrum::bench
