// af_packet ports without fanout rollover: each flow on one queue.
//
// Theory of operation: DPDK's af_packet PMD gives every queue pair of a port its own packet
// socket and joins them to one PACKET_FANOUT group, so that the kernel spreads frames over the
// queues by a symmetric hash of the flow (PACKET_FANOUT_HASH). DPDK 22.11 also sets
// PACKET_FANOUT_FLAG_ROLLOVER, with no devarg to clear it (later DPDK releases added
// `rollover=0`): when a socket's ring is three quarters full and one flow dominates it, the
// kernel moves that flow's next frames to another socket, so a bulk flow reaches two workers
// at once and leaves lbd out of order (docs/dataplane.md, "Order").
//
// lbd therefore defines setsockopt itself (exported from the executable, so the PMD, loaded as
// a plugin, binds to it) and clears the rollover flag of every PACKET_FANOUT join; everything
// else goes to the C library's setsockopt unchanged. A full ring then drops a frame, which TCP
// repairs, instead of reordering the flow. The Dataplane checks, once the PMD has opened its
// sockets, that every join went through here, and refuses to run an af_packet port with more
// than one queue otherwise.
#pragma once

#include <cstdint>

namespace fulcrum::dataplane {

// PACKET_FANOUT joins whose rollover flag lbd cleared, since the process started.
std::uint32_t FanoutJoinsWithoutRollover();

}  // namespace fulcrum::dataplane
