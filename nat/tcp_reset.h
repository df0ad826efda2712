// The TCP reset the load balancer sends for a segment it has no connection for.
//
// Theory of operation: a worker that receives a TCP segment other than a SYN with no tracked
// connection (after a restart, a flush, or a backend marked down) answers it with a reset, so
// that the peer fails at once instead of retransmitting into a void for minutes. The reset is
// built in place from the offending frame, per RFC 793 ("Reset Generation", p. 36): if the
// segment carries an ACK, the reset's sequence number is that acknowledgment number; otherwise
// the reset has sequence 0 and acknowledges SEG.SEQ + SEG.LEN (SYN and FIN count one each). A
// reset is never answered with a reset. The reply goes back the way the segment came: MACs,
// addresses and ports swapped, IP options and TCP options and payload dropped, checksums
// computed in full (the frame is 54 bytes or so, and this path is rare).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "nat/arp.h"
#include "nat/bytes.h"
#include "nat/checksum.h"
#include "nat/packet.h"

namespace fulcrum::nat {

// Rewrites the TCP segment of `frame` (parsed as `p`, kind kTcp) into the reset that answers it.
// Returns the new frame length (shorter than or equal to the old one), or 0 when the segment is
// itself a reset and must not be answered.
inline std::size_t MakeTcpReset(std::span<std::uint8_t> frame, const ParsedPacket& p) {
  if ((p.tcp_flags & kTcpRst) != 0) {
    return 0;
  }
  std::uint8_t* eth = frame.data();
  std::uint8_t mac[6];
  std::memcpy(mac, eth, 6);
  std::memcpy(eth, eth + 6, 6);
  std::memcpy(eth + 6, mac, 6);

  const std::uint8_t* in_tcp = frame.data() + p.l4_offset;
  const std::uint32_t seg_seq = LoadBe32(in_tcp + 4);
  const std::uint32_t seg_ack = LoadBe32(in_tcp + 8);
  std::uint32_t seg_len = p.payload_len;
  seg_len += (p.tcp_flags & kTcpSyn) != 0 ? 1 : 0;
  seg_len += (p.tcp_flags & kTcpFin) != 0 ? 1 : 0;
  const bool had_ack = (p.tcp_flags & kTcpAck) != 0;

  std::uint8_t* ip = frame.data() + p.l3_offset;
  const std::uint16_t ip_id = LoadBe16(ip + 4);
  std::memset(ip, 0, kIpv4MinHeaderLen);
  ip[0] = 0x45;
  StoreBe16(ip + kIpv4TotalLenOffset,
            static_cast<std::uint16_t>(kIpv4MinHeaderLen + kTcpMinHeaderLen));
  StoreBe16(ip + 4, ip_id);
  ip[kIpv4TtlOffset] = kDefaultTtl;
  ip[9] = kIpProtoTcp;
  StoreBe32(ip + kIpv4SrcOffset, p.dst_ip);
  StoreBe32(ip + kIpv4DstOffset, p.src_ip);
  StoreBe16(ip + kIpv4ChecksumOffset, InternetChecksum({ip, kIpv4MinHeaderLen}));

  std::uint8_t* tcp = ip + kIpv4MinHeaderLen;
  std::memset(tcp, 0, kTcpMinHeaderLen);
  StoreBe16(tcp, p.dst_port);
  StoreBe16(tcp + 2, p.src_port);
  StoreBe32(tcp + 4, had_ack ? seg_ack : 0);
  StoreBe32(tcp + 8, had_ack ? 0 : seg_seq + seg_len);
  tcp[12] = static_cast<std::uint8_t>((kTcpMinHeaderLen / 4) << 4);
  tcp[13] = had_ack ? kTcpRst : static_cast<std::uint8_t>(kTcpRst | kTcpAck);
  const std::uint64_t pseudo = Ipv4PseudoHeaderSum(p.dst_ip, p.src_ip, kIpProtoTcp,
                                                   static_cast<std::uint16_t>(kTcpMinHeaderLen));
  StoreBe16(tcp + kTcpChecksumOffset, InternetChecksum({tcp, kTcpMinHeaderLen}, pseudo));
  return p.l3_offset + kIpv4MinHeaderLen + kTcpMinHeaderLen;
}

}  // namespace fulcrum::nat
