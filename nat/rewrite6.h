// NAT rewrite of a parsed IPv6 packet, in place, with incremental checksums: what
// nat/rewrite.h's RewriteIpv4 is for IPv4, for fnat v6 -> v6 and dnat v6.
//
// IPv6 has no header checksum; the TCP and UDP checksums cover the addresses through the
// pseudo-header (RFC 8200 section 8.1), so they are patched with RFC 1624 eqn. 3 for the eight
// 32-bit address words and the two ports: a fixed handful of additions whatever the length.
// The hop limit is decremented (the LB is a router hop). UDP over IPv6 always has a checksum
// (nat::ParseIpv6 drops a zero one); a result of 0 is sent as 0xFFFF (RFC 8200 section 8.1).
//
// Preconditions: `p` is ParseIpv6()'s result for exactly these bytes, the frame has not been
// changed since, and p.kind is kTcp or kUdp. ParseIpv6 guarantees a hop limit >= 2 for these.
#pragma once

#include <cstdint>
#include <span>

#include "nat/bytes.h"
#include "nat/checksum.h"
#include "nat/conn_table.h"
#include "nat/packet.h"
#include "nat/packet6.h"

namespace fulcrum::nat {

// Sets the source and destination of a TCP or UDP packet, decrements the hop limit and patches
// the L4 checksum.
// `delta`: the L4 checksum's, for the addresses and ports (a connection's, precomputed).
[[gnu::always_inline]] inline void RewriteIpv6(std::span<std::uint8_t> frame,
                                               const ParsedPacket6& p, const Endpoint6& src,
                                               const Endpoint6& dst, const ChecksumDelta& delta) {
  std::uint8_t* ip = frame.data() + p.l3_offset;
  std::uint8_t* l4 = frame.data() + p.l4_offset;
  ip[7] = static_cast<std::uint8_t>(p.hop_limit - 1);
  StoreIp6(ip + 8, src.ip);
  StoreIp6(ip + 24, dst.ip);
  StoreBe16(l4, src.port);
  StoreBe16(l4 + 2, dst.port);
  std::uint8_t* checksum = l4 + (p.proto == kIpProtoTcp ? kTcpChecksumOffset : kUdpChecksumOffset);
  StoreBe16(checksum, p.proto == kIpProtoTcp ? delta.Apply(LoadBe16(checksum))
                                             : delta.ApplyUdp(LoadBe16(checksum)));
}
inline void RewriteIpv6(std::span<std::uint8_t> frame, const ParsedPacket6& p, const Endpoint6& src,
                        const Endpoint6& dst) {
  ChecksumDelta delta;
  AddIp6(delta, p.src_ip, src.ip);
  AddIp6(delta, p.dst_ip, dst.ip);
  delta.Add16(p.src_port, src.port);
  delta.Add16(p.dst_port, dst.port);
  RewriteIpv6(frame, p, src, dst, delta);
}

// A client's packet of `conn` (its tuple conn.from_client), on its way to the backend.
// `l4_extra`: as for IPv4 (nat/rewrite.h).
[[gnu::always_inline]] inline void RewriteToBackend(std::span<std::uint8_t> frame,
                                                    const ParsedPacket6& p, const ConnEntry6& conn,
                                                    const ChecksumDelta& l4_extra = {}) {
  ChecksumDelta l4 = ChecksumDelta::Folded(conn.deltas.l4);
  l4.Add(l4_extra);
  RewriteIpv6(frame, p, DstOf(conn.from_backend), SrcOf(conn.from_backend), l4);
}

// A backend's packet of `conn` (its tuple conn.from_backend), on its way to the client.
[[gnu::always_inline]] inline void RewriteToClient(std::span<std::uint8_t> frame,
                                                   const ParsedPacket6& p, const ConnEntry6& conn,
                                                   const ChecksumDelta& l4_extra = {}) {
  ChecksumDelta l4 = ChecksumDelta::Inverse(conn.deltas.l4);
  l4.Add(l4_extra);
  RewriteIpv6(frame, p, DstOf(conn.from_client), SrcOf(conn.from_client), l4);
}

[[gnu::always_inline]] inline void RewriteForConn(std::span<std::uint8_t> frame,
                                                  const ParsedPacket6& p, const ConnEntry6& conn,
                                                  FlowDir from) {
  if (from == FlowDir::kFromClient) {
    RewriteToBackend(frame, p, conn);
  } else {
    RewriteToClient(frame, p, conn);
  }
}

// The 5-tuple of the connection an ICMPv6 error is about, as the table holds it for packets
// coming the other way: the quoted packet went out, so its reply key is the quote reversed.
constexpr FlowKey6 IcmpQuoteReplyKey(const ParsedPacket6& p) {
  return FlowKey6{p.quote.dst_ip, p.quote.src_ip, p.quote.dst_port, p.quote.src_port,
                  p.quote.proto};
}

// Readdresses an ICMPv6 error (p.kind kIcmpError): the outer header gets outer_src ->
// outer_dst (hop limit decremented), the quoted packet quote_src -> quote_dst (its TCP or UDP
// checksum patched when the quote holds it), and the ICMPv6 checksum is computed anew over the
// whole message (nat::ParseIpv6 verified the old one). A Packet Too Big keeps its MTU: fnat
// and dnat v6 -> v6 leave the header sizes alone. Out of line: errors are rare.
void TranslateIcmpError(std::span<std::uint8_t> frame, const ParsedPacket6& p, const Ip6& outer_src,
                        const Ip6& outer_dst, const Endpoint6& quote_src,
                        const Endpoint6& quote_dst);

// An error from the backend side about a packet the LB sent there, as the client must see it:
// from the VIP, quoting the client's own client -> VIP packet.
void TranslateIcmpErrorToClient(std::span<std::uint8_t> frame, const ParsedPacket6& p,
                                const ConnEntry6& conn);

// An error from the client side about a packet the LB sent to the client, as the backend must
// see it: quoting the backend's own packet.
void TranslateIcmpErrorToBackend(std::span<std::uint8_t> frame, const ParsedPacket6& p,
                                 const ConnEntry6& conn);

}  // namespace fulcrum::nat
