// Parsing an Ethernet frame into the fields the load balancer acts on.
//
// Theory of operation: Parse() reads a frame once, front to back, checking every length
// against frame.size() before reading, and returns a ParsedPacket: the packet's kind (TCP, UDP,
// ICMP echo, ICMP error, ARP) with offsets and fields, or kDrop with the reason (one of
// nat/drop_reasons.h). Input is hostile: nothing past frame.size() is read, whatever the
// headers claim. Addresses and ports are converted to host byte order; offsets index the
// frame, so rewrite functions (nat/rewrite.h) patch the frame in place without re-parsing.
//
// What is dropped here, and why:
// - IPv4 fragments: only the first carries ports, so the others cannot be matched to a
//   connection or steered to the core that owns it.
// - TTL <= 1 on packets that would be forwarded (TCP, UDP, ICMP errors): forwarding would
//   decrement it to 0 (RFC 1812 section 5.3.1). ICMP echo is answered, not forwarded.
// - ICMP errors whose checksum is wrong: translation recomputes the ICMP checksum, which must
//   not launder a corrupt message.
// The TCP and UDP checksums are not verified: the end hosts do that, and the incremental
// rewrite keeps a bad checksum bad.
//
// Parse() is inline because it runs per packet; the rarer ARP and ICMP paths are out of line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "nat/bytes.h"
#include "nat/checksum.h"
#include "nat/drop_reasons.h"
#include "nat/flow_key.h"

namespace fulcrum::nat {

inline constexpr std::uint16_t kEthTypeIpv4 = 0x0800;
inline constexpr std::uint16_t kEthTypeArp = 0x0806;
inline constexpr std::uint16_t kEthTypeVlan = 0x8100;
inline constexpr std::size_t kEthHeaderLen = 14;
inline constexpr std::size_t kVlanTagLen = 4;
inline constexpr std::size_t kIpv4MinHeaderLen = 20;
inline constexpr std::size_t kTcpMinHeaderLen = 20;
inline constexpr std::size_t kUdpHeaderLen = 8;
inline constexpr std::size_t kIcmpHeaderLen = 8;
inline constexpr std::size_t kArpIpv4Len = 28;

inline constexpr std::uint8_t kIpProtoIcmp = 1;
inline constexpr std::uint8_t kIpProtoTcp = 6;
inline constexpr std::uint8_t kIpProtoUdp = 17;

// Byte offsets inside the IPv4, TCP, UDP and ICMP headers.
inline constexpr std::size_t kIpv4TotalLenOffset = 2;
inline constexpr std::size_t kIpv4FragOffset = 6;
inline constexpr std::size_t kIpv4TtlOffset = 8;
inline constexpr std::size_t kIpv4ChecksumOffset = 10;
inline constexpr std::size_t kIpv4SrcOffset = 12;
inline constexpr std::size_t kIpv4DstOffset = 16;
inline constexpr std::size_t kTcpChecksumOffset = 16;
inline constexpr std::size_t kUdpChecksumOffset = 6;
inline constexpr std::size_t kIcmpChecksumOffset = 2;

inline constexpr std::uint8_t kTcpFin = 0x01;
inline constexpr std::uint8_t kTcpSyn = 0x02;
inline constexpr std::uint8_t kTcpRst = 0x04;
inline constexpr std::uint8_t kTcpPsh = 0x08;
inline constexpr std::uint8_t kTcpAck = 0x10;

inline constexpr std::uint8_t kIcmpEchoReply = 0;
inline constexpr std::uint8_t kIcmpDestUnreachable = 3;
inline constexpr std::uint8_t kIcmpEchoRequest = 8;
inline constexpr std::uint8_t kIcmpTimeExceeded = 11;
inline constexpr std::uint8_t kIcmpParameterProblem = 12;
inline constexpr std::uint8_t kIcmpCodeFragNeeded = 4;  // with kIcmpDestUnreachable (RFC 1191)

inline constexpr std::uint16_t kArpRequest = 1;
inline constexpr std::uint16_t kArpReply = 2;

// What a packet of either family is (nat::Parse for IPv4 and ARP, nat::ParseIpv6 for IPv6).
enum class PacketKind : std::uint8_t {
  kDrop,       // see ParsedPacket::drop
  kArp,        // Ethernet/IPv4 ARP
  kTcp,        // TCP; IPv4: first fragment only, IPv6: unfragmented
  kUdp,        // UDP; IPv6: with a checksum
  kIcmpEcho,   // ICMP or ICMPv6 echo request or reply
  kIcmpError,  // destination unreachable, (IPv6) packet too big, time exceeded, parameter problem
  kNeighbor,   // ICMPv6 neighbour solicitation or advertisement, hop limit 255
};

// The IPv4 packet quoted by an ICMP error (RFC 792: its IP header and at least the first 8
// bytes of its L4 header, which hold the ports).
struct IcmpQuote {
  std::uint16_t l3_offset = 0;  // of the quoted IPv4 header, in the frame
  std::uint16_t l4_offset = 0;  // of the quoted TCP/UDP header, in the frame
  std::uint16_t l4_len = 0;     // quoted L4 bytes present in the frame (>= 8)
  std::uint8_t proto = 0;
  std::uint32_t src_ip = 0;
  std::uint32_t dst_ip = 0;
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
};

struct ParsedPacket {
  PacketKind kind = PacketKind::kDrop;
  DropReason drop = DropReason::kNone;  // set when kind == kDrop
  bool has_vlan = false;
  std::uint16_t vlan_tci = 0;
  std::uint16_t ethertype = 0;  // after the VLAN tag, if any

  std::uint16_t l3_offset = 0;
  // IPv4 (also set for kDrop when the IPv4 header was read that far).
  std::uint8_t ip_header_len = 0;  // bytes, options included
  std::uint8_t ttl = 0;
  std::uint8_t proto = 0;
  std::uint16_t ip_total_len = 0;
  std::uint32_t src_ip = 0;  // host order; ARP: sender protocol address
  std::uint32_t dst_ip = 0;  // host order; ARP: target protocol address

  std::uint16_t l4_offset = 0;
  std::uint16_t src_port = 0;  // host order, TCP/UDP
  std::uint16_t dst_port = 0;
  std::uint8_t tcp_flags = 0;  // kTcpSyn | kTcpAck ...
  std::uint8_t icmp_type = 0;
  std::uint8_t icmp_code = 0;
  std::uint16_t arp_op = 0;  // kArpRequest, kArpReply
  std::uint16_t payload_offset = 0;
  std::uint16_t payload_len = 0;  // L4 payload (TCP data, UDP data, ICMP body)

  IcmpQuote quote;  // kIcmpError only

  bool ok() const { return kind != PacketKind::kDrop; }
};

struct ParseOptions {
  // Off when the NIC already verified the IPv4 header checksum (RX offload).
  bool verify_ipv4_checksum = true;
};

// The 5-tuple of a TCP or UDP packet as received.
constexpr FlowKey FlowKeyOf(const ParsedPacket& p) {
  return FlowKey{p.src_ip, p.dst_ip, p.src_port, p.dst_port, p.proto};
}

// For an ICMP error: the key of the tracked flow the quoted packet answers, i.e. the quoted
// packet reversed. A backend's error about the LB's packet local:lport -> backend:bport
// yields backend:bport -> local:lport, the connection's from-backend key.
constexpr FlowKey IcmpQuoteReplyKey(const ParsedPacket& p) {
  return FlowKey{p.quote.dst_ip, p.quote.src_ip, p.quote.dst_port, p.quote.src_port, p.quote.proto};
}

namespace detail {

inline void SetDrop(ParsedPacket& p, DropReason reason) {
  p.kind = PacketKind::kDrop;
  p.drop = reason;
}

// Out of line (packet.cc): rare packet kinds. `l4_len` is the IPv4 payload length.
void ParseArp(std::span<const std::uint8_t> frame, ParsedPacket& p);
void ParseIcmp(std::span<const std::uint8_t> frame, std::size_t l4_len, ParsedPacket& p);

inline void ParseTcp(const std::uint8_t* l4, std::size_t l4_len, ParsedPacket& p) {
  if (l4_len < kTcpMinHeaderLen) {
    return SetDrop(p, DropReason::kTruncated);
  }
  const std::size_t data_offset = static_cast<std::size_t>(l4[12] >> 4) * 4;
  if (data_offset < kTcpMinHeaderLen || data_offset > l4_len) {
    return SetDrop(p, DropReason::kBadHeader);
  }
  p.src_port = LoadBe16(l4);
  p.dst_port = LoadBe16(l4 + 2);
  p.tcp_flags = l4[13];
  p.payload_offset = static_cast<std::uint16_t>(p.l4_offset + data_offset);
  p.payload_len = static_cast<std::uint16_t>(l4_len - data_offset);
  p.kind = PacketKind::kTcp;
}

inline void ParseUdp(const std::uint8_t* l4, std::size_t l4_len, ParsedPacket& p) {
  if (l4_len < kUdpHeaderLen) {
    return SetDrop(p, DropReason::kTruncated);
  }
  const std::size_t udp_len = LoadBe16(l4 + 4);
  if (udp_len < kUdpHeaderLen || udp_len > l4_len) {
    return SetDrop(p, DropReason::kBadHeader);
  }
  p.src_port = LoadBe16(l4);
  p.dst_port = LoadBe16(l4 + 2);
  p.payload_offset = static_cast<std::uint16_t>(p.l4_offset + kUdpHeaderLen);
  p.payload_len = static_cast<std::uint16_t>(udp_len - kUdpHeaderLen);
  p.kind = PacketKind::kUdp;
}

inline void ParseIpv4(std::span<const std::uint8_t> frame, const ParseOptions& options,
                      ParsedPacket& p) {
  const std::size_t l3 = p.l3_offset;
  if (frame.size() < l3 + kIpv4MinHeaderLen) {
    return SetDrop(p, DropReason::kTruncated);
  }
  const std::uint8_t* ip = frame.data() + l3;
  const std::size_t header_len = static_cast<std::size_t>(ip[0] & 0x0f) * 4;
  if ((ip[0] >> 4) != 4 || header_len < kIpv4MinHeaderLen) {
    return SetDrop(p, DropReason::kBadHeader);
  }
  const std::size_t total_len = LoadBe16(ip + kIpv4TotalLenOffset);
  if (total_len < header_len) {
    return SetDrop(p, DropReason::kBadHeader);
  }
  if (frame.size() < l3 + total_len) {
    return SetDrop(p, DropReason::kTruncated);
  }
  if (options.verify_ipv4_checksum && !Ipv4HeaderChecksumOk(ip, header_len)) {
    return SetDrop(p, DropReason::kBadChecksum);
  }
  p.ip_header_len = static_cast<std::uint8_t>(header_len);
  p.ip_total_len = static_cast<std::uint16_t>(total_len);
  p.ttl = ip[kIpv4TtlOffset];
  p.proto = ip[9];
  p.src_ip = LoadBe32(ip + kIpv4SrcOffset);
  p.dst_ip = LoadBe32(ip + kIpv4DstOffset);
  p.l4_offset = static_cast<std::uint16_t>(l3 + header_len);
  // More-fragments flag (0x2000) or a fragment offset (0x1fff).
  if ((LoadBe16(ip + kIpv4FragOffset) & 0x3fff) != 0) {
    return SetDrop(p, DropReason::kFragment);
  }
  const std::size_t l4_len = total_len - header_len;
  const std::uint8_t* l4 = ip + header_len;
  switch (p.proto) {
    case kIpProtoTcp:
      ParseTcp(l4, l4_len, p);
      break;
    case kIpProtoUdp:
      ParseUdp(l4, l4_len, p);
      break;
    case kIpProtoIcmp:
      ParseIcmp(frame, l4_len, p);
      break;
    default:
      return SetDrop(p, DropReason::kUnsupportedProtocol);
  }
  const bool forwarded =
      p.kind == PacketKind::kTcp || p.kind == PacketKind::kUdp || p.kind == PacketKind::kIcmpError;
  if (forwarded && p.ttl <= 1) {
    SetDrop(p, DropReason::kTtlExceeded);
  }
}

}  // namespace detail

inline ParsedPacket Parse(std::span<const std::uint8_t> frame, const ParseOptions& options = {}) {
  ParsedPacket p;
  if (frame.size() < kEthHeaderLen) {
    detail::SetDrop(p, DropReason::kTruncated);
    return p;
  }
  std::uint16_t ethertype = LoadBe16(frame.data() + 12);
  std::size_t l3 = kEthHeaderLen;
  if (ethertype == kEthTypeVlan) {
    if (frame.size() < kEthHeaderLen + kVlanTagLen) {
      detail::SetDrop(p, DropReason::kTruncated);
      return p;
    }
    p.has_vlan = true;
    p.vlan_tci = LoadBe16(frame.data() + 14);
    ethertype = LoadBe16(frame.data() + 16);
    l3 += kVlanTagLen;
  }
  p.ethertype = ethertype;
  p.l3_offset = static_cast<std::uint16_t>(l3);
  if (ethertype == kEthTypeIpv4) {
    detail::ParseIpv4(frame, options, p);
  } else if (ethertype == kEthTypeArp) {
    detail::ParseArp(frame, p);
  } else {
    detail::SetDrop(p, DropReason::kUnsupportedEthertype);
  }
  return p;
}

}  // namespace fulcrum::nat
