// IPv6 neighbour discovery (RFC 4861) and ICMPv6 echo (RFC 4443), on plain byte spans: what
// nat/arp.h is for IPv4.
//
// The data plane owns its IPv6 addresses (VIPs, port addresses, fnat local addresses) as it
// owns its IPv4 ones, so its workers answer neighbour solicitations and pings for them, and
// the control thread solicits next hops and backends and announces a VIP that appears with an
// unsolicited advertisement (RFC 4861 section 7.2.6).
//
// ParseNeighbor validates a solicitation or advertisement as RFC 4861 sections 7.1.1 and 7.1.2
// ask (nat::ParseIpv6 has checked the lengths and the hop limit of 255): code 0, a target that
// is not multicast, options of non-zero length that fit, no source link-layer address from the
// unspecified address, and a checksum that holds. Only the link-layer address options are
// read; the others are skipped.
//
// The builders write whole Ethernet frames, checksums computed in full (these frames are rare
// and 86 bytes long). The advertisements set Override and, when they answer a solicitation,
// Solicited; never Router: the load balancer answers for addresses, it does not route.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "nat/arp.h"
#include "nat/packet6.h"

namespace fulcrum::nat {

// An NS or NA with one link-layer address option, untagged: 14 + 40 + 24 + 8 bytes.
inline constexpr std::size_t kNdpFrameBytes = 86;
inline constexpr std::uint8_t kHopLimitNdp = 255;

// ff02::1, every node on the link.
inline constexpr Ip6 kAllNodes = {0xff02'0000'0000'0000, 1};

struct NeighborMessage {
  std::uint8_t type = 0;  // kIcmpv6NeighborSolicitation or kIcmpv6NeighborAdvertisement
  Ip6 source;             // the packet's; unspecified (::) for duplicate address detection
  Ip6 destination;
  Ip6 target;
  // The source (NS) or target (NA) link-layer address option, if there was one.
  std::optional<MacAddress> link_layer;
  bool router = false;  // NA flags
  bool solicited = false;
  bool override = false;
};

// The solicited-node multicast address of `ip` (ff02::1:ffXX:XXXX, RFC 4291 section 2.7.1).
constexpr Ip6 SolicitedNode(const Ip6& ip) {
  return {0xff02'0000'0000'0000, 0x0000'0001'ff00'0000 | (ip.lo & 0xff'ffff)};
}

// The Ethernet address of IPv6 multicast group `group` (33:33 and its last 32 bits, RFC 2464).
constexpr MacAddress MulticastMac(const Ip6& group) {
  return {0x33,
          0x33,
          static_cast<std::uint8_t>(group.lo >> 24),
          static_cast<std::uint8_t>(group.lo >> 16),
          static_cast<std::uint8_t>(group.lo >> 8),
          static_cast<std::uint8_t>(group.lo)};
}

constexpr bool IsMulticast(const Ip6& ip) { return (ip.hi >> 56) == 0xff; }
constexpr bool IsUnspecified(const Ip6& ip) { return ip.hi == 0 && ip.lo == 0; }

// The neighbour solicitation or advertisement of `frame`, parsed as `p` (kind kNeighbor), or
// nullopt when it is not valid.
std::optional<NeighborMessage> ParseNeighbor(std::span<const std::uint8_t> frame,
                                             const ParsedPacket6& p);

// The advertisement "`target` is at `my_mac`" to `to` at `to_mac`, into `out` (at least
// kNdpFrameBytes). An answer to a solicitation from the unspecified address (duplicate address
// detection) goes to every node (kAllNodes, not solicited). Returns the frame length.
std::size_t BuildNeighborAdvertisement(std::span<std::uint8_t> out, const MacAddress& my_mac,
                                       const Ip6& target, const Ip6& to, const MacAddress& to_mac,
                                       bool solicited);

// The answer to solicitation `ns` for one of our addresses, from `my_mac`, into `out`.
std::size_t AnswerSolicitation(std::span<std::uint8_t> out, const NeighborMessage& ns,
                               const MacAddress& sender_mac, const MacAddress& my_mac);

// The solicitation "who has `target`? tell `my_ip` at `my_mac`", to `target`'s solicited-node
// group, into `out` (at least kNdpFrameBytes). Returns the frame length.
std::size_t BuildNeighborSolicitation(std::span<std::uint8_t> out, const MacAddress& my_mac,
                                      const Ip6& my_ip, const Ip6& target);

// Turns an ICMPv6 echo request (parsed as `p`) into the echo reply, in place: MACs and
// addresses swapped, hop limit kDefaultTtl, the checksum updated for the new type (the swap
// leaves the pseudo-header sum as it was). `p` must be addressed to one of our unicast
// addresses and carry no extension headers (the caller drops the others).
void MakeIcmpv6EchoReply(std::span<std::uint8_t> frame, const ParsedPacket6& p);

}  // namespace fulcrum::nat
