// fnat local ports: each worker allocates from its own slice of every local address.
//
// Theory of operation: a reply from a backend arrives at local:lport, and must be processed by
// the worker that owns the connection. Ports are therefore split between workers by their low
// bits, as DPVS's sapool does: with shift = ceil(log2(workers)) and mask = (1 << shift) - 1,
// worker w owns the ports p with (p & mask) == w. A NIC steers replies with one rte_flow rule
// per (local address, worker) matching the masked destination port; without rte_flow the
// receiving worker computes OwnerOf(port) and hands the packet over. Low bits rather than high
// bits keep every worker's slice spread over the whole usable range, so a range limit shrinks
// all slices evenly. When workers is not a power of two, ports whose low bits name no worker
// are never allocated.
//
// Usable ports are 1024..65535. Each local address keeps a FIFO ring of its free ports
// (preallocated at creation): allocation takes the port released longest ago, so the backend's
// TIME_WAIT for a (local:lport, backend:bport) pair has the longest time to pass before the
// pair is used again. Allocation rotates over the local addresses; a bitmap of allocated ports
// makes a double or foreign release a refused no-op instead of a corrupted pool. O(1)
// allocate and release: release finds the address through a small open-addressing index, as
// a node may have hundreds of local addresses.
//
// One owner: the worker. No locks, no allocation after Create().
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/status.h"
#include "nat/flow_key.h"

namespace fulcrum::nat {

// Which worker owns a local port.
class PortSteering {
 public:
  // shift = ceil(log2(workers)); workers >= 1.
  static constexpr PortSteering ForWorkers(std::uint32_t workers) {
    std::uint32_t shift = 0;
    while ((std::uint32_t{1} << shift) < workers) {
      ++shift;
    }
    return PortSteering(shift);
  }

  constexpr std::uint32_t shift() const { return shift_; }
  constexpr std::uint16_t mask() const {
    return static_cast<std::uint16_t>((std::uint32_t{1} << shift_) - 1);
  }
  // The worker owning `port`; may be >= the worker count when workers is not a power of two,
  // for ports no worker allocates.
  constexpr std::uint32_t OwnerOf(std::uint16_t port) const { return port & mask(); }

 private:
  explicit constexpr PortSteering(std::uint32_t shift) : shift_(shift) {}
  std::uint32_t shift_;
};

// The local endpoint type of an address type: Endpoint4 for IPv4 (host-order uint32), Endpoint6
// for IPv6.
template <typename Ip>
struct EndpointFor;
template <>
struct EndpointFor<std::uint32_t> {
  using type = Endpoint4;
};
template <>
struct EndpointFor<Ip6> {
  using type = Endpoint6;
};

// The pool of one address family: PortPool over IPv4 local addresses, PortPool6 over IPv6 ones.
template <typename Ip>
class BasicPortPool {
 public:
  using Endpoint = typename EndpointFor<Ip>::type;

  static constexpr std::uint16_t kMinPort = 1024;
  static constexpr std::uint16_t kMaxPort = 65535;
  static constexpr std::uint32_t kMaxWorkers = 1024;

  // The pool of worker `worker` (0-based) of `workers`, over `local_ips` (host order).
  static Result<BasicPortPool> Create(std::span<const Ip> local_ips, std::uint32_t worker,
                                      std::uint32_t workers);

  // A free local address:port, rotating over the addresses; nullopt when all are exhausted.
  // `translated`: the port carries a NAT64 connection (an IPv6 client's, to an IPv4 backend)
  // until its release, which Translated() tells.
  std::optional<Endpoint> Allocate(bool translated = false);

  // Returns a port to its address's pool. False (and nothing changes) when the address is not
  // one of ours, the port is not this worker's, or it is not allocated.
  bool Release(const Endpoint& local);

  // Whether `local` was allocated for a NAT64 connection: its backend's replies belong to the
  // IPv6 connection table, and need no IPv4 lookup. Cheap when none is (translated() == 0).
  bool Translated(const Endpoint& local) const { return translated_ != 0 && TranslatedSlow(local); }
  std::uint32_t translated() const { return translated_; }

  std::uint32_t OwnerOf(std::uint16_t port) const { return steering_.OwnerOf(port); }
  const PortSteering& steering() const { return steering_; }
  std::uint32_t worker() const { return worker_; }
  std::uint32_t ports_per_address() const { return ports_per_address_; }
  std::uint32_t capacity() const {
    return ports_per_address_ * static_cast<std::uint32_t>(addresses_.size());
  }
  std::uint32_t available() const { return available_; }
  std::span<const Ip> local_ips() const { return ips_; }

 private:
  struct Address {
    std::uint32_t head = 0;   // ring index of the next port to allocate
    std::uint32_t count = 0;  // free ports in the ring
  };

  BasicPortPool(PortSteering steering, std::uint32_t worker)
      : steering_(steering), worker_(worker) {}

  std::uint16_t* ring(std::size_t address) { return &rings_[address * ports_per_address_]; }
  // Bit for `port` in the allocated-port bitmap of `address`.
  std::size_t BitOf(std::size_t address, std::uint16_t port) const {
    return address * bits_per_address_ + (port >> steering_.shift());
  }
  // The index of local address `ip` in ips_, or -1.
  std::int32_t AddressOf(const Ip& ip) const;
  static bool Test(const std::vector<std::uint64_t>& bits, std::size_t bit) {
    return (bits[bit / 64] >> (bit % 64) & 1) != 0;
  }
  static void Set(std::vector<std::uint64_t>& bits, std::size_t bit, bool on) {
    const std::uint64_t mask = std::uint64_t{1} << (bit % 64);
    bits[bit / 64] = on ? bits[bit / 64] | mask : bits[bit / 64] & ~mask;
  }
  bool TranslatedSlow(const Endpoint& local) const;

  PortSteering steering_;
  std::uint32_t worker_;
  std::uint32_t ports_per_address_ = 0;
  std::uint32_t bits_per_address_ = 0;
  std::uint32_t available_ = 0;
  std::uint32_t translated_ = 0;  // allocated ports with their bit in translated_bits_
  std::uint32_t next_address_ = 0;
  std::vector<Ip> ips_;
  std::vector<std::uint32_t> address_index_;  // open addressing: ips_ index + 1, 0 = empty
  std::uint32_t address_index_mask_ = 0;
  std::vector<Address> addresses_;
  std::vector<std::uint16_t> rings_;            // ports_per_address_ per address
  std::vector<std::uint64_t> allocated_;        // bits_per_address_ bits per address
  std::vector<std::uint64_t> translated_bits_;  // as allocated_: ports of NAT64 connections
};

using PortPool = BasicPortPool<std::uint32_t>;
using PortPool6 = BasicPortPool<Ip6>;
extern template class BasicPortPool<std::uint32_t>;
extern template class BasicPortPool<Ip6>;

}  // namespace fulcrum::nat
