// Parsing an IPv6 packet: the fixed header, the extension header chain, TCP, UDP and ICMPv6.
//
// Theory of operation: ParseIpv6() reads the packet at an offset of an Ethernet frame once,
// front to back, checking every length before reading, as nat::Parse does for IPv4 (the input
// is hostile; nothing past the frame or past the IPv6 payload length is read). It returns a
// ParsedPacket6: the kind (TCP, UDP, ICMPv6 echo, ICMPv6 error with the packet it quotes,
// neighbour discovery) with host-order addresses and ports and frame offsets, or kDrop with a
// nat/drop_reasons.h reason.
//
// The extension header chain (RFC 8200 section 4) is walked, at most kMaxExtensionHeaders
// long. What a load balancer in front of its VIPs does with each header:
// - Hop-by-Hop Options, first only (anywhere else: bad_header), and Destination Options: their
//   options are walked; Pad1, PadN and any option whose type says "skip if unrecognised" (the
//   two high bits 00, such as Router Alert) are skipped. An option whose type says discard is
//   dropped (bad_header), the Jumbo Payload option among them: jumbograms are not forwarded,
//   and an IPv6 payload length of 0 is dropped with them.
// - Routing: with segments left the packet is meant to travel on past us (source routing,
//   SRv6), which the load balancer does not do: bad_header. Without, it is skipped.
// - Fragment: dropped (fragment), as IPv4 fragments are: only the first carries ports.
// - ESP, AH, No Next Header and unknown next headers: unsupported_protocol.
// A hop limit <= 1 on what would be forwarded (TCP, UDP, ICMPv6 errors) is ttl_exceeded.
//
// UDP over IPv6 must have a checksum (RFC 8200 section 8.1): zero is bad_checksum. TCP and UDP
// checksums are not otherwise verified (the end hosts do; the rewrite keeps a bad one bad).
// ICMPv6 errors (destination unreachable, packet too big, time exceeded, parameter problem)
// have their checksum verified, since translating one recomputes it, and the packet they quote
// is walked the same way within the bytes the error carries: its TCP or UDP ports must be
// there. Neighbour solicitations and advertisements must arrive with hop limit 255 (RFC 4861
// section 7.1): they cannot have come from off the link.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "nat/bytes.h"
#include "nat/checksum.h"
#include "nat/drop_reasons.h"
#include "nat/flow_key.h"
#include "nat/packet.h"

namespace fulcrum::nat {

inline constexpr std::uint16_t kEthTypeIpv6 = 0x86dd;
inline constexpr std::size_t kIpv6HeaderLen = 40;
inline constexpr std::size_t kMaxExtensionHeaders = 8;

inline constexpr std::uint8_t kIpProtoHopByHop = 0;
inline constexpr std::uint8_t kIpProtoRouting = 43;
inline constexpr std::uint8_t kIpProtoFragment = 44;
inline constexpr std::uint8_t kIpProtoEsp = 50;
inline constexpr std::uint8_t kIpProtoAh = 51;
inline constexpr std::uint8_t kIpProtoIcmpv6 = 58;
inline constexpr std::uint8_t kIpProtoNoNext = 59;
inline constexpr std::uint8_t kIpProtoDestOptions = 60;

inline constexpr std::uint8_t kIcmpv6DestUnreachable = 1;
inline constexpr std::uint8_t kIcmpv6PacketTooBig = 2;
inline constexpr std::uint8_t kIcmpv6TimeExceeded = 3;
inline constexpr std::uint8_t kIcmpv6ParameterProblem = 4;
inline constexpr std::uint8_t kIcmpv6EchoRequest = 128;
inline constexpr std::uint8_t kIcmpv6EchoReply = 129;
inline constexpr std::uint8_t kIcmpv6NeighborSolicitation = 135;
inline constexpr std::uint8_t kIcmpv6NeighborAdvertisement = 136;

inline Ip6 LoadIp6(const std::uint8_t* p) {
  return {std::uint64_t{LoadBe32(p)} << 32 | LoadBe32(p + 4),
          std::uint64_t{LoadBe32(p + 8)} << 32 | LoadBe32(p + 12)};
}

inline void StoreIp6(std::uint8_t* p, const Ip6& ip) {
  StoreBe32(p, static_cast<std::uint32_t>(ip.hi >> 32));
  StoreBe32(p + 4, static_cast<std::uint32_t>(ip.hi));
  StoreBe32(p + 8, static_cast<std::uint32_t>(ip.lo >> 32));
  StoreBe32(p + 12, static_cast<std::uint32_t>(ip.lo));
}

// The packet an ICMPv6 error quotes: its IPv6 header and at least the first 8 bytes of its TCP
// or UDP header, which hold the ports.
struct Icmp6Quote {
  std::uint16_t l3_offset = 0;  // of the quoted IPv6 header, in the frame
  std::uint16_t l4_offset = 0;  // of the quoted TCP/UDP header, in the frame
  std::uint16_t l4_len = 0;     // quoted L4 bytes present in the frame (>= 8)
  std::uint8_t proto = 0;
  Ip6 src_ip;
  Ip6 dst_ip;
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
};

struct ParsedPacket6 {
  PacketKind kind = PacketKind::kDrop;
  DropReason drop = DropReason::kNone;  // set when kind == kDrop
  std::uint8_t hop_limit = 0;
  std::uint8_t proto = 0;         // the upper-layer protocol, after the extension headers
  std::uint8_t ext_headers = 0;   // extension headers walked
  std::uint16_t l3_offset = 0;    // of the IPv6 header
  std::uint16_t payload_end = 0;  // l3_offset + 40 + the IPv6 payload length
  Ip6 src_ip;
  Ip6 dst_ip;

  std::uint16_t l4_offset = 0;
  std::uint16_t src_port = 0;  // TCP/UDP
  std::uint16_t dst_port = 0;
  std::uint8_t tcp_flags = 0;
  std::uint8_t icmp_type = 0;
  std::uint8_t icmp_code = 0;
  std::uint16_t payload_offset = 0;
  std::uint16_t payload_len = 0;  // L4 payload (TCP data, UDP data, ICMPv6 body after 8 bytes)

  Icmp6Quote quote;  // kIcmpError only

  bool ok() const { return kind != PacketKind::kDrop; }
};

// The unfolded sum of the pseudo-header (RFC 8200 section 8.1) of the IPv6 header at `ip`, for
// an upper-layer packet of `length` bytes of protocol `proto`: what TCP, UDP and ICMPv6
// checksums start from.
inline std::uint64_t Ipv6PseudoHeaderSum(const std::uint8_t* ip, std::size_t length,
                                         std::uint8_t proto) {
  return ChecksumAdd({ip + 8, 32}) + (length >> 16) + (length & 0xffff) + proto;
}

// The 5-tuple of a TCP or UDP packet as received.
constexpr FlowKey6 FlowKeyOf(const ParsedPacket6& p) {
  return FlowKey6{p.src_ip, p.dst_ip, p.src_port, p.dst_port, p.proto};
}

// Parses the IPv6 packet at offset `l3` of `frame`.
ParsedPacket6 ParseIpv6(std::span<const std::uint8_t> frame, std::size_t l3);

}  // namespace fulcrum::nat
