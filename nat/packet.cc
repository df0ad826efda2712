#include "nat/packet.h"

namespace fulcrum::nat::detail {
namespace {

bool IsIcmpError(std::uint8_t type) {
  return type == kIcmpDestUnreachable || type == kIcmpTimeExceeded || type == kIcmpParameterProblem;
}

// The quoted packet of an ICMP error: an IPv4 header and at least 8 bytes of TCP or UDP.
void ParseQuote(std::span<const std::uint8_t> frame, std::size_t offset, std::size_t len,
                ParsedPacket& p) {
  if (len < kIpv4MinHeaderLen) {
    return SetDrop(p, DropReason::kTruncated);
  }
  const std::uint8_t* ip = frame.data() + offset;
  const std::size_t header_len = static_cast<std::size_t>(ip[0] & 0x0f) * 4;
  if ((ip[0] >> 4) != 4 || header_len < kIpv4MinHeaderLen) {
    return SetDrop(p, DropReason::kBadHeader);
  }
  if (len < header_len + 8) {
    return SetDrop(p, DropReason::kTruncated);
  }
  // A non-first fragment carries no ports, so the error cannot be matched to a connection.
  if ((LoadBe16(ip + kIpv4FragOffset) & 0x1fff) != 0) {
    return SetDrop(p, DropReason::kFragment);
  }
  const std::uint8_t proto = ip[9];
  if (proto != kIpProtoTcp && proto != kIpProtoUdp) {
    return SetDrop(p, DropReason::kUnsupportedProtocol);
  }
  const std::uint8_t* l4 = ip + header_len;
  IcmpQuote& q = p.quote;
  q.l3_offset = static_cast<std::uint16_t>(offset);
  q.l4_offset = static_cast<std::uint16_t>(offset + header_len);
  q.l4_len = static_cast<std::uint16_t>(len - header_len);
  q.proto = proto;
  q.src_ip = LoadBe32(ip + kIpv4SrcOffset);
  q.dst_ip = LoadBe32(ip + kIpv4DstOffset);
  q.src_port = LoadBe16(l4);
  q.dst_port = LoadBe16(l4 + 2);
  p.kind = PacketKind::kIcmpError;
}

}  // namespace

void ParseArp(std::span<const std::uint8_t> frame, ParsedPacket& p) {
  const std::size_t l3 = p.l3_offset;
  if (frame.size() < l3 + kArpIpv4Len) {
    return SetDrop(p, DropReason::kTruncated);
  }
  const std::uint8_t* arp = frame.data() + l3;
  // Ethernet hardware (1), IPv4 protocol, 6-byte MACs, 4-byte addresses (RFC 826).
  if (LoadBe16(arp) != 1 || LoadBe16(arp + 2) != kEthTypeIpv4 || arp[4] != 6 || arp[5] != 4) {
    return SetDrop(p, DropReason::kBadHeader);
  }
  p.arp_op = LoadBe16(arp + 6);
  p.src_ip = LoadBe32(arp + 14);
  p.dst_ip = LoadBe32(arp + 24);
  p.kind = PacketKind::kArp;
}

void ParseIcmp(std::span<const std::uint8_t> frame, std::size_t l4_len, ParsedPacket& p) {
  if (l4_len < kIcmpHeaderLen) {
    return SetDrop(p, DropReason::kTruncated);
  }
  const std::uint8_t* icmp = frame.data() + p.l4_offset;
  p.icmp_type = icmp[0];
  p.icmp_code = icmp[1];
  p.payload_offset = static_cast<std::uint16_t>(p.l4_offset + kIcmpHeaderLen);
  p.payload_len = static_cast<std::uint16_t>(l4_len - kIcmpHeaderLen);
  if (p.icmp_type == kIcmpEchoRequest || p.icmp_type == kIcmpEchoReply) {
    p.kind = PacketKind::kIcmpEcho;
    return;
  }
  if (!IsIcmpError(p.icmp_type)) {
    return SetDrop(p, DropReason::kUnsupportedIcmp);
  }
  if (ChecksumFold(ChecksumAdd(frame.subspan(p.l4_offset, l4_len))) != 0xffff) {
    return SetDrop(p, DropReason::kBadChecksum);
  }
  ParseQuote(frame, p.payload_offset, p.payload_len, p);
}

}  // namespace fulcrum::nat::detail
