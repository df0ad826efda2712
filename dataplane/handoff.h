// Which worker owns a connection, so that every packet of it is processed by one core.
//
// Theory of operation (BRIEF §2 "Flow affinity"):
//   - fnat, backend side: the reply is addressed to local:lport, and each worker allocates only
//     the local ports whose low bits name it (nat/port_pool.h). A NIC with rte_flow steers the
//     reply to that worker's queue (dataplane/flow_rules.h); elsewhere the worker that received
//     it hands it over.
//   - dnat, both sides: the reply comes from the backend to the client, with nothing of ours in
//     it to steer by, so the owner is a hash of the client's address and port: the client-side
//     packets carry them as source, the replies as destination.
//   - fnat, client side: on a port with RSS the receiving queue is the owner (RSS sends a flow
//     to one queue); on a port without RSS (af_packet, af_xdp, net_ring, many VFs) the client
//     hash decides, as for dnat. Either way a flow's packets arrive on one queue (lbd opens
//     each port kind so: docs/dataplane.md, "Order") and take one path to the owner, so they
//     stay in order.
// A packet that lands on the wrong core travels over an SPSC ring (one per ordered pair of
// cores) to its owner, which processes it as if it had received it.
#pragma once

#include <cstdint>

#include "nat/flow_hash.h"

namespace fulcrum::dataplane {

inline constexpr std::uint64_t kOwnerHashSeed = 0x6a09e667f3bcc909ULL;

// The worker (0..workers-1) that owns the connections of client ip:port.
// One worker owns everything: no hash to compute (the formula gives 0 too).
constexpr std::uint32_t ClientOwner(std::uint32_t client_ip, std::uint16_t client_port,
                                    std::uint32_t workers) {
  if (workers == 1) {
    return 0;
  }
  const std::uint64_t h =
      nat::Mix64((std::uint64_t{client_ip} << 16 | client_port) ^ kOwnerHashSeed);
  // Multiply-shift onto [0, workers) (Lemire 2019): no division, uniform for a mixed hash.
  return static_cast<std::uint32_t>(((h >> 32) * workers) >> 32);
}

// The same for an IPv6 client.
constexpr std::uint32_t ClientOwner(const nat::Ip6& client_ip, std::uint16_t client_port,
                                    std::uint32_t workers) {
  if (workers == 1) {
    return 0;
  }
  const std::uint64_t h =
      nat::Mix64(nat::Mix64(client_ip.hi ^ kOwnerHashSeed) ^ client_ip.lo ^ client_port);
  return static_cast<std::uint32_t>(((h >> 32) * workers) >> 32);
}

// Entries of the hand-off ring from one worker to another (a power of two; rte_ring uses all
// but one). The ring extends the sender's rx queues: it holds everything the sender can take
// off them at once (their descriptors) plus two bursts staged from its other work, so an owner
// that stalls loses no more to the ring than it would lose to an rx queue of its own. At
// least kMinHandoffRing.
inline constexpr std::uint32_t kMinHandoffRing = 1024;
constexpr std::uint32_t HandoffRingSize(std::uint32_t sender_rx_descriptors, std::uint32_t burst) {
  std::uint32_t size = kMinHandoffRing;
  while (size <= sender_rx_descriptors + 2 * burst) {
    size <<= 1;
  }
  return size;
}

}  // namespace fulcrum::dataplane
