// Test support: the decisions of dataplane/decide.h on the test bed's shape, without EAL.
//
// CoreBed holds the cores of a two-worker data plane (CoreState, each with its own counters),
// the snapshot compiled from a model, the neighbours and a fake clock. Feed() runs one burst
// through DecideBurst on one core and returns, per packet, the action and the frame as it
// would leave (a reset trimmed to its length). Counters are read as deltas (Delta), so that
// a table row states every drop and event it causes and nothing else may move.
//
// Ports: index 0 "client" 198.18.0.1/24, MAC 02:00:00:00:00:01, the client 198.18.0.2 at
// kClientMac (and a second client, 198.18.0.3 at kClient2Mac); index 1 "backend" 198.18.1.1/24, MAC
// 02:00:00:00:00:02, fnat local addresses 198.18.1.2-5, backends 198.18.1.11-14 at BackendMac(n).
// IPv6 alike: the client port 2001:db8::1/64 with the clients 2001:db8::2 and ::3, the backend port
// 2001:db8:1::1/64 with local addresses 2001:db8:1::2-5 and backends 2001:db8:1::11-14 (the same
// MACs). An address of either family is written as the packet builder takes it (Ip4, Ip6) and as
// the data plane holds it (host-order uint32, nat::Ip6: Wide6).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dataplane/decide.h"
#include "dataplane/handoff.h"
#include "dataplane/snapshot.h"
#include "tests/dataplane/model_fixture.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::dataplane::testing {

using fulcrum::testing::Bytes;
using fulcrum::testing::Ip4;
using fulcrum::testing::Ip6;
using fulcrum::testing::Ip6Bytes;
using fulcrum::testing::Mac;
using fulcrum::testing::Wide6;

inline constexpr std::uint8_t kClientPort = 0;
inline constexpr std::uint8_t kBackendPort = 1;
inline constexpr Mac kClientPortMac = {0x02, 0, 0, 0, 0, 0x01};
inline constexpr Mac kBackendPortMac = {0x02, 0, 0, 0, 0, 0x02};
inline constexpr Mac kClientMac = {0x02, 0xc1, 0, 0, 0, 0x02};
inline constexpr std::uint32_t kClientIp = Ip4("198.18.0.2");
// A second client on the client port's link (2001:db8::3 for IPv6), with its own MAC.
inline constexpr Mac kClient2Mac = {0x02, 0xc1, 0, 0, 0, 0x03};
inline constexpr std::uint32_t kClient2Ip = Ip4("198.18.0.3");
inline constexpr std::uint32_t kVipIp = Ip4("198.18.100.10");

inline Mac BackendMac(int n) { return {0x02, 0xbe, 0, 0, 0, static_cast<std::uint8_t>(n)}; }
inline std::uint32_t BackendIp(int n) { return Ip4("198.18.1.10") + static_cast<std::uint32_t>(n); }

// IPv6: the builder's bytes and the data plane's nat::Ip6.
inline Ip6Bytes ClientIp6() { return Ip6("2001:db8::2"); }
inline Ip6Bytes Client2Ip6() { return Ip6("2001:db8::3"); }
inline Ip6Bytes VipIp6() { return Ip6("2001:db8:100::10"); }
inline Ip6Bytes BackendIp6(int n) {
  Ip6Bytes ip = Ip6("2001:db8:1::10");
  ip[15] = static_cast<std::uint8_t>(ip[15] + n);
  return ip;
}
inline Ip6Bytes LocalIp6(int n) {  // the n-th local address, from 1: 2001:db8:1::2 ...
  Ip6Bytes ip = Ip6("2001:db8:1::1");
  ip[15] = static_cast<std::uint8_t>(ip[15] + n);
  return ip;
}

// What became of one packet.
struct Outcome {
  Action action;
  Bytes frame;  // as it leaves (kSend) or is handed on (kHandOff); empty when freed
};

// Counter deltas: drops by reason and events, only the non-zero ones.
struct Delta {
  std::map<nat::DropReason, std::uint64_t> drops;
  std::map<WorkerEvent, std::uint64_t> events;
  friend bool operator==(const Delta&, const Delta&) = default;
};

std::string ToString(const Delta& delta);
std::string ToString(const Action& action);
// The frame's headers in words (addresses, ports, flags), then its bytes in hex.
std::string Describe(const Bytes& frame);

class CoreBed {
 public:
  // `conn_capacity`: connections each core's table holds.
  explicit CoreBed(std::uint32_t workers = 2, std::uint32_t conn_capacity = 4096);

  // Compiles `model` and has every core adopt it (as a worker's pass does), or none: then the
  // next Apply's snapshot finds the cores a generation behind, as a worker that skipped one.
  void Apply(const model::Model& model, bool adopt = true);
  // Gives every core the neighbours of both families: the two clients and the four backends,
  // unless `with_backends` is false.
  void LearnNeighbors(bool with_backends = true);
  // Takes the clients out of the neighbours (the backends stay).
  void ForgetClient();

  // Runs `frames` as one burst received on port index `port` of core `core`.
  std::vector<Outcome> Feed(std::uint32_t core, std::uint8_t port, std::vector<Bytes> frames,
                            bool handed_off = false);
  Outcome FeedOne(std::uint32_t core, std::uint8_t port, Bytes frame, bool handed_off = false);

  // The counters of every core since the last call (the first call: since creation).
  Delta TakeDelta();
  // The reports core `core` queued since its last burst began.
  std::vector<Message> Reports(std::uint32_t core) const;

  void Advance(std::uint32_t ms);
  CoreState& core(std::uint32_t i) { return *cores_[i]; }
  const ConfigSnapshot& snapshot() const { return *snapshot_; }
  std::uint32_t workers() const { return shared_.workers; }

  // A client port whose connections core `core` owns, from `from` up.
  std::uint16_t ClientPortOwnedBy(std::uint32_t core, std::uint16_t from = 40000) const;
  // The same for the IPv6 client.
  std::uint16_t Client6PortOwnedBy(std::uint32_t core, std::uint16_t from = 40000) const;

 private:
  void SetNeighbors(bool client, bool backends);

  DaemonConfig config_;
  nat::PersistTable persist_;
  PipelineShared shared_;
  std::vector<std::unique_ptr<WorkerCounters>> counters_;
  std::vector<std::unique_ptr<CoreState>> cores_;
  SlotState slots_;
  std::uint64_t generation_ = 0;
  std::unique_ptr<ConfigSnapshot> snapshot_;
  std::vector<std::unique_ptr<ConfigSnapshot>> retired_;  // what a core may still run
  std::unique_ptr<nat::NeighborMap> neighbors_;
  std::unique_ptr<nat::NeighborMap6> neighbors6_;
  std::vector<std::uint64_t> seen_;  // counter values at the last TakeDelta, flattened
};

inline Action SendOn(std::uint8_t port, std::uint16_t length = 0) {
  return {.verb = Verb::kSend, .port = port, .length = length};
}
inline Action DropFor(nat::DropReason reason) { return {.verb = Verb::kDrop, .reason = reason}; }
inline Action HandTo(std::uint8_t owner) { return {.verb = Verb::kHandOff, .owner = owner}; }
inline Action Consumed() { return {.verb = Verb::kConsume}; }

// Checks one outcome: the action, the frame for what is sent or handed off, nothing else.
void ExpectOutcome(const Outcome& got, const Action& action, const Bytes& frame,
                   const std::string& what);
// Checks the counters that moved since the last TakeDelta.
void ExpectDelta(CoreBed& bed, const Delta& want, const std::string& what);

// One step of a conversation on one bed: a frame in on `port`, its outcome and counters.
struct Step {
  std::string name;
  std::uint8_t port;
  std::function<Bytes()> in;
  Action action;
  std::function<Bytes()> out;
  Delta delta;
  std::uint32_t advance_ms = 0;  // the clock moves this much before the step
};

// Runs `steps` in order on core `core`.
void RunSteps(CoreBed& bed, std::uint32_t core, const std::vector<Step>& steps);

}  // namespace fulcrum::dataplane::testing
