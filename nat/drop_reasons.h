// Why the data plane drops a packet: the one list every drop counter comes from.
//
// Each worker keeps one counter per reason; lbctl stats, the metrics and the tests all read
// this list, so a reason's name is a stable API (snake_case, never renamed or reused). The
// parser (nat/packet.h) returns the parse-time reasons; the worker adds the rest. Events that
// are not drops (a full connection table falling back to stateless Maglev, a hand-off to
// another core) are counters of their own, not reasons here.
//
// Header-only (constexpr tables) so that lbctl can print names without linking nat.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace fulcrum::nat {

// X(enumerator, name, description)
#define FULCRUM_DROP_REASONS(X)                                                               \
  /* Parse-time reasons (nat::Parse). */                                                      \
  X(kTruncated, "truncated", "frame shorter than its headers")                                \
  X(kBadHeader, "bad_header",                                                                 \
    "malformed header (IP version, header or total length, TCP data offset, UDP length)")     \
  X(kBadChecksum, "bad_checksum", "bad IPv4 header or ICMP checksum")                         \
  X(kFragment, "fragment", "IPv4 fragment (cannot be steered to its connection's core)")      \
  X(kTtlExceeded, "ttl_exceeded", "TTL would expire at the load balancer")                    \
  X(kUnsupportedEthertype, "unsupported_ethertype", "neither IPv4 nor ARP, or stacked VLANs") \
  X(kUnsupportedProtocol, "unsupported_protocol", "IPv4 protocol other than TCP, UDP, ICMP")  \
  X(kUnsupportedIcmp, "unsupported_icmp", "ICMP type other than echo and errors")             \
  /* Worker reasons. */                                                                       \
  X(kNotLocal, "not_local", "destination is neither a VIP nor a local address")               \
  X(kNoService, "no_service", "no listener on the destination VIP:port")                      \
  X(kNoBackend, "no_backend", "the listener's server group has no backend to choose")         \
  X(kPortExhausted, "port_exhausted", "no free fnat local port on this core")                 \
  X(kNotSynNoConn, "not_syn_no_conn", "TCP segment other than SYN without a connection")      \
  X(kIcmpNoConn, "icmp_no_conn", "ICMP error about no tracked connection")                    \
  X(kWrongCore, "wrong_core", "reply for a local port no worker owns")                        \
  X(kArpUnresolved, "arp_unresolved", "next hop has no ARP entry")                            \
  X(kTxFull, "tx_full", "transmit queue full")                                                \
  X(kHandoffRingFull, "handoff_ring_full", "hand-off ring to the owning core full")           \
  X(kNoRoute, "no_route", "no connected subnet, route or gateway for the destination")        \
  X(kNoConn, "no_conn", "UDP datagram to a local address with no connection")                 \
  X(kTableFull, "table_full", "connection table full and fnat cannot forward without state")  \
  X(kNoTxQueue, "no_tx_queue", "no transmit queue on the egress port")                        \
  X(kTupleConflict, "tuple_conflict", "a new connection's backend-side 5-tuple is in use")    \
  X(kAclDenied, "acl_denied", "a new connection from a client the listener's ACL refuses")    \
  X(kTxHandoffRingFull, "tx_handoff_ring_full",                                               \
    "hand-off ring to the core that transmits on the egress port full")

enum class DropReason : std::uint8_t {
  kNone,
#define FULCRUM_DROP_ENUM_ENTRY(name, wire, description) name,
  FULCRUM_DROP_REASONS(FULCRUM_DROP_ENUM_ENTRY)
#undef FULCRUM_DROP_ENUM_ENTRY
};

struct DropReasonInfo {
  DropReason reason;
  std::string_view name;
  std::string_view description;
};

// Every reason except kNone, in declaration order (the order counters are reported in).
inline constexpr std::array kDropReasons = {
#define FULCRUM_DROP_INFO_ENTRY(name, wire, description) \
  DropReasonInfo{DropReason::name, wire, description},
    FULCRUM_DROP_REASONS(FULCRUM_DROP_INFO_ENTRY)
#undef FULCRUM_DROP_INFO_ENTRY
};

// Size of a per-reason counter array indexed by static_cast<size_t>(reason) (kNone included).
inline constexpr std::size_t kDropReasonCount = kDropReasons.size() + 1;

// "none" for kNone.
constexpr std::string_view DropReasonName(DropReason reason) {
  auto index = static_cast<std::size_t>(reason);
  return index == 0 || index > kDropReasons.size() ? std::string_view("none")
                                                   : kDropReasons[index - 1].name;
}

constexpr std::string_view DropReasonDescription(DropReason reason) {
  auto index = static_cast<std::size_t>(reason);
  return index == 0 || index > kDropReasons.size() ? std::string_view("not dropped")
                                                   : kDropReasons[index - 1].description;
}

constexpr std::optional<DropReason> DropReasonFromName(std::string_view name) {
  for (const auto& info : kDropReasons) {
    if (info.name == name) {
      return info.reason;
    }
  }
  return std::nullopt;
}

}  // namespace fulcrum::nat
