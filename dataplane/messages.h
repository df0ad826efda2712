// The messages between the control thread and a worker: one SPSC rte_ring of 32-byte elements
// each way (the worker's to_worker and to_control), and the connection dump a worker fills.
#pragma once

#include <bit>
#include <cstdint>

#include "dataplane/snapshot.h"
#include "nat/arp.h"
#include "nat/conn_table.h"

namespace fulcrum::dataplane {

// A connection copied out for conn.list.
// One connection of either family as a dump reports it.
struct ConnRecord {
  nat::AnyEndpoint client;
  nat::AnyEndpoint vip;
  nat::AnyEndpoint local;  // what the backend sees as the source (the client itself in dnat)
  nat::AnyEndpoint backend;
  std::uint32_t listener = 0;
  std::uint32_t created_ms = 0;
  std::uint32_t last_seen_ms = 0;
  std::uint32_t timeout_ms = 0;
  std::uint32_t now_ms = 0;  // the worker's clock when it copied the entry
  nat::TcpState tcp_state = nat::TcpState::kNone;
  nat::NatMode mode = nat::NatMode::kFnat;
  std::uint8_t proto = 0;

  template <typename Entry>
  static ConnRecord Of(const Entry& e, std::uint32_t now_ms) {
    return {.client = e.client(),
            .vip = e.vip(),
            .local = e.local(),
            .backend = e.backend_endpoint(),
            .listener = e.listener,
            .created_ms = e.created_ms,
            .last_seen_ms = e.last_seen_ms,
            .timeout_ms = e.timeout_ms,
            .now_ms = now_ms,
            .tcp_state = e.tcp_state,
            .mode = e.mode,
            .proto = e.proto()};
  }
};

// A connection dump the control thread asks a worker for: the worker fills `records` and
// replies kDumpDone. The control thread owns the memory and waits for the reply.
struct DumpRequest {
  std::uint32_t listener_slot = kNoSlot;  // kNoSlot: every listener
  ConnRecord* records = nullptr;
  std::uint32_t capacity = 0;
  // Written by the worker before its reply.
  std::uint32_t count = 0;
  bool truncated = false;
};

enum class MessageType : std::uint8_t {
  // control -> worker
  kTransmit,  // send `pointer` (an rte_mbuf) out of port index `port`
  kDump,      // fill the DumpRequest at `pointer`
  kSweep,     // erase the connections snapshot `seq` (or newer) declares dead
  // worker -> control
  kArpSeen,  // `ip` is at MAC `value` (low 48 bits) on port `port`; flags & kForUs
  kResolve,  // next hop `ip` on port `port` has no MAC
  // The same for IPv6, the address in `seq` and `pointer` (SetIp6, Ip6Of).
  kNeighborSeen6,
  kResolve6,
  kDumpDone,  // the dump `seq` is complete
};

// One element of the message rings.
struct Message {
  MessageType type = MessageType::kTransmit;
  std::uint8_t port = 0;
  std::uint8_t flags = 0;
  std::uint8_t pad = 0;
  std::uint32_t ip = 0;
  std::uint64_t value = 0;
  void* pointer = nullptr;
  std::uint64_t seq = 0;
};
static_assert(sizeof(Message) == 32);

inline constexpr std::uint8_t kMessageForUs = 1;       // kArpSeen: a reply, or asked for us
inline constexpr std::uint8_t kMessageArpRequest = 2;  // kTransmit: counts as arp_requests

// An IPv6 address in a message: its high half in `seq`, its low half in `pointer`'s bits.
static_assert(sizeof(void*) == sizeof(std::uint64_t));
inline void SetIp6(Message& m, const nat::Ip6& ip) {
  m.seq = ip.hi;
  m.pointer = std::bit_cast<void*>(ip.lo);
}
inline nat::Ip6 Ip6Of(const Message& m) { return {m.seq, std::bit_cast<std::uint64_t>(m.pointer)}; }

inline std::uint64_t PackMac(const nat::MacAddress& mac) {
  std::uint64_t v = 0;
  for (std::uint8_t b : mac) {
    v = v << 8 | b;
  }
  return v;
}
inline nat::MacAddress UnpackMac(std::uint64_t v) {
  nat::MacAddress mac;
  for (int i = 5; i >= 0; --i) {
    mac[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v);
    v >>= 8;
  }
  return mac;
}

}  // namespace fulcrum::dataplane
