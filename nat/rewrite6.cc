#include "nat/rewrite6.h"

namespace fulcrum::nat {

void TranslateIcmpError(std::span<std::uint8_t> frame, const ParsedPacket6& p, const Ip6& outer_src,
                        const Ip6& outer_dst, const Endpoint6& quote_src,
                        const Endpoint6& quote_dst) {
  const Icmp6Quote& q = p.quote;
  std::uint8_t* quoted_ip = frame.data() + q.l3_offset;
  std::uint8_t* quoted_l4 = frame.data() + q.l4_offset;
  ChecksumDelta delta;
  AddIp6(delta, q.src_ip, quote_src.ip);
  AddIp6(delta, q.dst_ip, quote_dst.ip);
  delta.Add16(q.src_port, quote_src.port);
  delta.Add16(q.dst_port, quote_dst.port);
  StoreIp6(quoted_ip + 8, quote_src.ip);
  StoreIp6(quoted_ip + 24, quote_dst.ip);
  StoreBe16(quoted_l4, quote_src.port);
  StoreBe16(quoted_l4 + 2, quote_dst.port);
  // The quote holds at least 8 L4 bytes: the UDP checksum always, the TCP one when the sender
  // quoted more (RFC 4443 section 2.4 (c): as much as fits in the minimum MTU).
  if (q.proto == kIpProtoUdp) {
    std::uint8_t* checksum = quoted_l4 + kUdpChecksumOffset;
    StoreBe16(checksum, delta.ApplyUdp(LoadBe16(checksum)));
  } else if (q.l4_len >= kTcpChecksumOffset + 2) {
    std::uint8_t* checksum = quoted_l4 + kTcpChecksumOffset;
    StoreBe16(checksum, delta.Apply(LoadBe16(checksum)));
  }

  std::uint8_t* ip = frame.data() + p.l3_offset;
  ip[7] = static_cast<std::uint8_t>(p.hop_limit - 1);
  StoreIp6(ip + 8, outer_src);
  StoreIp6(ip + 24, outer_dst);
  std::uint8_t* icmp = frame.data() + p.l4_offset;
  const std::size_t length = p.payload_end - p.l4_offset;
  StoreBe16(icmp + 2, 0);
  StoreBe16(icmp + 2,
            InternetChecksum({icmp, length}, Ipv6PseudoHeaderSum(ip, length, kIpProtoIcmpv6)));
}

void TranslateIcmpErrorToClient(std::span<std::uint8_t> frame, const ParsedPacket6& p,
                                const ConnEntry6& conn) {
  TranslateIcmpError(frame, p, conn.from_client.dst_ip, conn.from_client.src_ip,
                     SrcOf(conn.from_client), DstOf(conn.from_client));
}

void TranslateIcmpErrorToBackend(std::span<std::uint8_t> frame, const ParsedPacket6& p,
                                 const ConnEntry6& conn) {
  TranslateIcmpError(frame, p, conn.from_backend.dst_ip, conn.from_backend.src_ip,
                     SrcOf(conn.from_backend), DstOf(conn.from_backend));
}

}  // namespace fulcrum::nat
