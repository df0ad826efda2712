// NAT rewrite of a parsed packet, in place, with incremental checksums.
//
// Theory of operation: a connection entry holds the two 5-tuples the connection's packets
// arrive with (nat/conn_table.h). A packet leaving towards one side carries the reverse of the
// tuple that side sends with, so a packet from the client leaves as the reverse of
// from_backend (fnat: local:lport -> backend:bport; dnat: client:cport -> backend:bport) and a
// packet from the backend leaves as the reverse of from_client (vip:vport -> client:cport).
// fnat and dnat need no separate code: in dnat the unchanged fields contribute nothing.
//
// Every rewrite decrements the TTL (the LB is a router hop) and patches the IPv4 header
// checksum and the TCP/UDP checksum, whose pseudo-header covers the addresses, with RFC 1624
// eqn. 3 (nat/checksum.h): a fixed handful of additions whatever the packet length. A UDP
// checksum of 0 (none, RFC 768) stays 0.
//
// ICMP errors about a connection (destination unreachable, fragmentation needed, time
// exceeded) are translated too, so that path MTU discovery (RFC 1191) works through the LB:
// the outer header is addressed like a packet of the connection, and the quoted packet is
// rewritten to look like the one the receiver itself sent. The MTU field is kept.
//
// Preconditions: `p` is Parse()'s result for exactly these bytes, the frame has not been
// changed since, and p.kind is kTcp or kUdp (RewriteIpv4) or kIcmpError (Translate...).
// Parse() guarantees TTL >= 2 for these kinds.
#pragma once

#include <cstdint>
#include <span>

#include "nat/bytes.h"
#include "nat/checksum.h"
#include "nat/conn_table.h"
#include "nat/flow_key.h"
#include "nat/packet.h"

namespace fulcrum::nat {

// Sets the source and destination of a TCP or UDP packet, decrements the TTL and patches the
// checksums. `addresses`: the checksum delta of the address change (the IPv4 header's part);
// `l4_delta`: that of the addresses and ports (the TCP or UDP checksum's); a connection's,
// precomputed.
// Inlined always: per packet, and its caller's constant deltas fold into it.
[[gnu::always_inline]] inline void RewriteIpv4(std::span<std::uint8_t> frame, const ParsedPacket& p,
                                               Endpoint4 src, Endpoint4 dst,
                                               const ChecksumDelta& addresses,
                                               const ChecksumDelta& l4_delta) {
  std::uint8_t* ip = frame.data() + p.l3_offset;
  std::uint8_t* l4 = frame.data() + p.l4_offset;

  ChecksumDelta ip_delta = addresses;
  const auto ttl = static_cast<std::uint8_t>(p.ttl - 1);
  ip_delta.Add16(static_cast<std::uint16_t>(p.ttl << 8 | p.proto),
                 static_cast<std::uint16_t>(ttl << 8 | p.proto));
  ip[kIpv4TtlOffset] = ttl;
  StoreBe32(ip + kIpv4SrcOffset, src.ip);
  StoreBe32(ip + kIpv4DstOffset, dst.ip);
  StoreBe16(ip + kIpv4ChecksumOffset, ip_delta.Apply(LoadBe16(ip + kIpv4ChecksumOffset)));

  StoreBe16(l4, src.port);
  StoreBe16(l4 + 2, dst.port);
  if (p.proto == kIpProtoTcp) {
    std::uint8_t* checksum = l4 + kTcpChecksumOffset;
    StoreBe16(checksum, l4_delta.Apply(LoadBe16(checksum)));
  } else {
    std::uint8_t* checksum = l4 + kUdpChecksumOffset;
    StoreBe16(checksum, l4_delta.ApplyUdp(LoadBe16(checksum)));
  }
}

// The same with the deltas computed from the packet's own tuple.
inline void RewriteIpv4(std::span<std::uint8_t> frame, const ParsedPacket& p, Endpoint4 src,
                        Endpoint4 dst) {
  ChecksumDelta addresses;
  addresses.Add32(p.src_ip, src.ip);
  addresses.Add32(p.dst_ip, dst.ip);
  ChecksumDelta l4 = addresses;
  l4.Add16(p.src_port, src.port);
  l4.Add16(p.dst_port, dst.port);
  RewriteIpv4(frame, p, src, dst, addresses, l4);
}

// A packet from the client (its tuple conn.from_client), on its way to the backend.
// `l4_extra`: a change the caller made to the L4 bytes, its checksum not yet patched (a
// spliced connection's sequence shift, nat/tcp_splice.h).
[[gnu::always_inline]] inline void RewriteToBackend(std::span<std::uint8_t> frame,
                                                    const ParsedPacket& p, const ConnEntry& conn,
                                                    const ChecksumDelta& l4_extra = {}) {
  ChecksumDelta l4 = ChecksumDelta::Folded(conn.deltas.l4);
  l4.Add(l4_extra);
  RewriteIpv4(frame, p, DstOf(conn.from_backend), SrcOf(conn.from_backend),
              ChecksumDelta::Folded(conn.deltas.addresses), l4);
}

// A packet from the backend (its tuple conn.from_backend), on its way to the client.
[[gnu::always_inline]] inline void RewriteToClient(std::span<std::uint8_t> frame,
                                                   const ParsedPacket& p, const ConnEntry& conn,
                                                   const ChecksumDelta& l4_extra = {}) {
  ChecksumDelta l4 = ChecksumDelta::Inverse(conn.deltas.l4);
  l4.Add(l4_extra);
  RewriteIpv4(frame, p, DstOf(conn.from_client), SrcOf(conn.from_client),
              ChecksumDelta::Inverse(conn.deltas.addresses), l4);
}

// The rewrite for a packet that matched `conn` arriving from `from`.
[[gnu::always_inline]] inline void RewriteForConn(std::span<std::uint8_t> frame,
                                                  const ParsedPacket& p, const ConnEntry& conn,
                                                  FlowDir from) {
  if (from == FlowDir::kFromClient) {
    RewriteToBackend(frame, p, conn);
  } else {
    RewriteToClient(frame, p, conn);
  }
}

// Readdresses an ICMP error: the outer header gets outer_src -> outer_dst (TTL decremented),
// the quoted packet gets quote_src -> quote_dst. Patches the quoted IPv4 and L4 checksums
// incrementally (the L4 one only if quoted), recomputes the ICMP checksum (Parse verified the
// old one) and patches the outer IPv4 checksum.
void TranslateIcmpError(std::span<std::uint8_t> frame, const ParsedPacket& p,
                        std::uint32_t outer_src, std::uint32_t outer_dst, Endpoint4 quote_src,
                        Endpoint4 quote_dst);

// An error from the backend side (found with IcmpQuoteReplyKey == conn.from_backend) about a
// packet the LB sent there, as the client must see it: from the VIP, quoting the client's
// own client -> VIP packet.
void TranslateIcmpErrorToClient(std::span<std::uint8_t> frame, const ParsedPacket& p,
                                const ConnEntry& conn);

// An error from the client side (IcmpQuoteReplyKey == conn.from_client) about a packet the
// LB sent to the client, as the backend must see it: quoting the backend's own packet.
void TranslateIcmpErrorToBackend(std::span<std::uint8_t> frame, const ParsedPacket& p,
                                 const ConnEntry& conn);

}  // namespace fulcrum::nat
