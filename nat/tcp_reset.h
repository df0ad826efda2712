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
// computed in full (the frame is 54 bytes or so, and this path is rare). IPv6 alike, without
// extension headers (74 bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "nat/arp.h"
#include "nat/bytes.h"
#include "nat/checksum.h"
#include "nat/packet.h"
#include "nat/packet6.h"

namespace fulcrum::nat {

namespace detail {

// The reset's TCP header, from the segment it answers (read before anything is overwritten).
struct ResetTcp {
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  std::uint32_t seq = 0;
  std::uint32_t ack = 0;
  std::uint8_t flags = 0;
};

template <typename Parsed>
ResetTcp ResetFor(std::span<const std::uint8_t> frame, const Parsed& p) {
  const std::uint8_t* in_tcp = frame.data() + p.l4_offset;
  std::uint32_t seg_len = p.payload_len;
  seg_len += (p.tcp_flags & kTcpSyn) != 0 ? 1 : 0;
  seg_len += (p.tcp_flags & kTcpFin) != 0 ? 1 : 0;
  const bool had_ack = (p.tcp_flags & kTcpAck) != 0;
  return ResetTcp{.src_port = p.dst_port,
                  .dst_port = p.src_port,
                  .seq = had_ack ? LoadBe32(in_tcp + 8) : 0,
                  .ack = had_ack ? 0 : LoadBe32(in_tcp + 4) + seg_len,
                  .flags = had_ack ? kTcpRst : static_cast<std::uint8_t>(kTcpRst | kTcpAck)};
}

inline void SwapMacs(std::uint8_t* eth) {
  std::uint8_t mac[6];
  std::memcpy(mac, eth, 6);
  std::memcpy(eth, eth + 6, 6);
  std::memcpy(eth + 6, mac, 6);
}

// Writes the reset's 20-byte TCP header at `tcp`, its checksum from the pseudo-header sum.
inline void WriteResetTcp(std::uint8_t* tcp, const ResetTcp& r, std::uint64_t pseudo) {
  std::memset(tcp, 0, kTcpMinHeaderLen);
  StoreBe16(tcp, r.src_port);
  StoreBe16(tcp + 2, r.dst_port);
  StoreBe32(tcp + 4, r.seq);
  StoreBe32(tcp + 8, r.ack);
  tcp[12] = static_cast<std::uint8_t>((kTcpMinHeaderLen / 4) << 4);
  tcp[13] = r.flags;
  StoreBe16(tcp + kTcpChecksumOffset, InternetChecksum({tcp, kTcpMinHeaderLen}, pseudo));
}

}  // namespace detail

// Rewrites the TCP segment of `frame` (parsed as `p`, kind kTcp) into the reset that answers it.
// Returns the new frame length (shorter than or equal to the old one), or 0 when the segment is
// itself a reset and must not be answered.
inline std::size_t MakeTcpReset(std::span<std::uint8_t> frame, const ParsedPacket& p) {
  if ((p.tcp_flags & kTcpRst) != 0) {
    return 0;
  }
  const detail::ResetTcp reset = detail::ResetFor(frame, p);
  detail::SwapMacs(frame.data());
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
  detail::WriteResetTcp(ip + kIpv4MinHeaderLen, reset,
                        Ipv4PseudoHeaderSum(p.dst_ip, p.src_ip, kIpProtoTcp,
                                            static_cast<std::uint16_t>(kTcpMinHeaderLen)));
  return p.l3_offset + kIpv4MinHeaderLen + kTcpMinHeaderLen;
}

// The same for IPv6: a 40-byte header without extension headers, hop limit kDefaultTtl.
inline std::size_t MakeTcpReset(std::span<std::uint8_t> frame, const ParsedPacket6& p) {
  if ((p.tcp_flags & kTcpRst) != 0) {
    return 0;
  }
  const detail::ResetTcp reset = detail::ResetFor(frame, p);
  detail::SwapMacs(frame.data());
  std::uint8_t* ip = frame.data() + p.l3_offset;
  std::memset(ip, 0, 8);
  ip[0] = 0x60;
  StoreBe16(ip + 4, static_cast<std::uint16_t>(kTcpMinHeaderLen));
  ip[6] = kIpProtoTcp;
  ip[7] = kDefaultTtl;
  StoreIp6(ip + 8, p.dst_ip);
  StoreIp6(ip + 24, p.src_ip);
  detail::WriteResetTcp(ip + kIpv6HeaderLen, reset,
                        Ipv6PseudoHeaderSum(ip, kTcpMinHeaderLen, kIpProtoTcp));
  return p.l3_offset + kIpv6HeaderLen + kTcpMinHeaderLen;
}

}  // namespace fulcrum::nat
