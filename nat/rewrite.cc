#include "nat/rewrite.h"

namespace fulcrum::nat {
namespace {

// Readdresses the outer IPv4 header and decrements its TTL.
void RewriteOuterIpv4(std::uint8_t* ip, const ParsedPacket& p, std::uint32_t src,
                      std::uint32_t dst) {
  ChecksumDelta delta;
  delta.Add32(p.src_ip, src);
  delta.Add32(p.dst_ip, dst);
  const auto ttl = static_cast<std::uint8_t>(p.ttl - 1);
  delta.Add16(static_cast<std::uint16_t>(p.ttl << 8 | p.proto),
              static_cast<std::uint16_t>(ttl << 8 | p.proto));
  ip[kIpv4TtlOffset] = ttl;
  StoreBe32(ip + kIpv4SrcOffset, src);
  StoreBe32(ip + kIpv4DstOffset, dst);
  StoreBe16(ip + kIpv4ChecksumOffset, delta.Apply(LoadBe16(ip + kIpv4ChecksumOffset)));
}

// Readdresses the quoted packet of an ICMP error; its TTL is left as quoted.
void RewriteQuote(std::span<std::uint8_t> frame, const IcmpQuote& q, Endpoint4 src, Endpoint4 dst) {
  std::uint8_t* ip = frame.data() + q.l3_offset;
  std::uint8_t* l4 = frame.data() + q.l4_offset;

  ChecksumDelta addresses;
  addresses.Add32(q.src_ip, src.ip);
  addresses.Add32(q.dst_ip, dst.ip);
  StoreBe32(ip + kIpv4SrcOffset, src.ip);
  StoreBe32(ip + kIpv4DstOffset, dst.ip);
  StoreBe16(ip + kIpv4ChecksumOffset, addresses.Apply(LoadBe16(ip + kIpv4ChecksumOffset)));

  ChecksumDelta l4_delta = addresses;
  l4_delta.Add16(q.src_port, src.port);
  l4_delta.Add16(q.dst_port, dst.port);
  StoreBe16(l4, src.port);
  StoreBe16(l4 + 2, dst.port);
  // The quote holds at least 8 L4 bytes: the UDP checksum always, the TCP one only when the
  // sender quoted more (RFC 1812 section 4.3.2.3 recommends as much as fits in 576 bytes).
  if (q.proto == kIpProtoUdp) {
    std::uint8_t* checksum = l4 + kUdpChecksumOffset;
    StoreBe16(checksum, l4_delta.ApplyUdp(LoadBe16(checksum)));
  } else if (q.l4_len >= kTcpChecksumOffset + 2) {
    std::uint8_t* checksum = l4 + kTcpChecksumOffset;
    StoreBe16(checksum, l4_delta.Apply(LoadBe16(checksum)));
  }
}

}  // namespace

void TranslateIcmpError(std::span<std::uint8_t> frame, const ParsedPacket& p,
                        std::uint32_t outer_src, std::uint32_t outer_dst, Endpoint4 quote_src,
                        Endpoint4 quote_dst) {
  RewriteQuote(frame, p.quote, quote_src, quote_dst);

  std::uint8_t* icmp = frame.data() + p.l4_offset;
  const std::size_t icmp_len = p.ip_total_len - p.ip_header_len;
  StoreBe16(icmp + kIcmpChecksumOffset, 0);
  StoreBe16(icmp + kIcmpChecksumOffset, InternetChecksum({icmp, icmp_len}));

  RewriteOuterIpv4(frame.data() + p.l3_offset, p, outer_src, outer_dst);
}

void TranslateIcmpErrorToClient(std::span<std::uint8_t> frame, const ParsedPacket& p,
                                const ConnEntry& conn) {
  TranslateIcmpError(frame, p, conn.from_client.dst_ip, conn.from_client.src_ip,
                     SrcOf(conn.from_client), DstOf(conn.from_client));
}

void TranslateIcmpErrorToBackend(std::span<std::uint8_t> frame, const ParsedPacket& p,
                                 const ConnEntry& conn) {
  TranslateIcmpError(frame, p, conn.from_backend.dst_ip, conn.from_backend.src_ip,
                     SrcOf(conn.from_backend), DstOf(conn.from_backend));
}

}  // namespace fulcrum::nat
