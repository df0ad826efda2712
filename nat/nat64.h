// NAT64 header translation (RFC 7915) of TCP and UDP packets, in place: an IPv6 VIP in front of
// IPv4 backends. The client's IPv6 packet leaves for the backend as IPv4 (from a local address
// of ours), and the backend's IPv4 reply leaves for the client as IPv6 (from the VIP).
//
// Theory of operation: the IPv6 header is 20 bytes longer than an IPv4 header without options,
// so a translation moves where the frame starts. Both functions write the new headers
// immediately before the packet's L4 header, which does not move, and return where the new
// frame starts; the caller adjusts its buffer (rte_pktmbuf_adj or _prepend). IPv6 to IPv4 the
// frame starts later (the IPv6 header and any extension headers are dropped); IPv4 to IPv6 it
// starts kNat64Growth bytes earlier when the IPv4 header had no options, so the buffer must
// have that much headroom.
//
// Header fields (RFC 7915 sections 4.1 and 5.1): the traffic class and TOS are copied, the flow
// label is 0, the hop limit or TTL is decremented (the LB is a router hop). IPv4 gets DF set and
// identification 0 (RFC 6864 allows it for atomic datagrams), its header checksum computed in
// full. IPv4 options are not translated; IPv4 fragments never get here (nat::Parse drops them),
// so no Fragment header is added. The TCP and UDP checksums are adjusted, not recomputed: the
// pseudo-headers differ only in the addresses (the length and the protocol number count the
// same in both), so the addresses and ports are all that change (RFC 1624 eqn. 3). A UDP
// checksum of 0 from IPv4 (none) cannot be sent over IPv6: it is computed in full (RFC 7915
// section 4.5).
//
// Preconditions: `p` is the parser's result for exactly these bytes (ParseIpv6 or Parse), the
// frame has not been changed since, and p.kind is TCP or UDP.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "nat/checksum.h"
#include "nat/flow_key.h"
#include "nat/packet.h"
#include "nat/packet6.h"

namespace fulcrum::nat {

// What IPv4 to IPv6 adds to a packet without IPv4 options: the headroom TranslateToIpv6 needs.
inline constexpr std::size_t kNat64Growth = kIpv6HeaderLen - kIpv4MinHeaderLen;

// Where a translated frame now lies in the buffer that was passed.
struct Translated {
  std::size_t offset = 0;  // of its first byte (the Ethernet header)
  std::size_t length = 0;
};

// The IPv6 TCP or UDP packet of `frame` (parsed as `p`) as the IPv4 packet src -> dst. The
// Ethernet header is kept (its type becomes IPv4) and moves to the returned offset.
Translated TranslateToIpv4(std::span<std::uint8_t> frame, const ParsedPacket6& p, Endpoint4 src,
                           Endpoint4 dst);
// The same with the L4 checksum's delta given: a NAT64 connection's entry.deltas.l4.
Translated TranslateToIpv4(std::span<std::uint8_t> frame, const ParsedPacket6& p, Endpoint4 src,
                           Endpoint4 dst, const ChecksumDelta& l4);

// The IPv4 TCP or UDP packet of a frame as the IPv6 packet src -> dst. `buffer` holds
// `headroom` bytes (at least kNat64Growth) and then the frame, which `p` was parsed from (its
// offsets count from the frame). The Ethernet header is kept (its type becomes IPv6). A length
// of 0: the headroom was too small, nothing was written.
Translated TranslateToIpv6(std::span<std::uint8_t> buffer, std::size_t headroom,
                           const ParsedPacket& p, const Endpoint6& src, const Endpoint6& dst);
// The same with the L4 checksum's delta given: the inverse of a NAT64 connection's
// entry.deltas.l4.
Translated TranslateToIpv6(std::span<std::uint8_t> buffer, std::size_t headroom,
                           const ParsedPacket& p, const Endpoint6& src, const Endpoint6& dst,
                           const ChecksumDelta& l4);

// ICMP errors about a NAT64 connection (RFC 7915 sections 4.2 and 5.2): the error and the packet
// it quotes are both translated, so that each side sees an error of its own family about its own
// packet. Types without a counterpart are not translated (a length of 0). A Packet Too Big
// becomes a "fragmentation needed" with an MTU 20 bytes smaller, and the other way 20 bytes
// larger (the header sizes differ by that much). The message is built anew (these are rare):
// headers from the parsed fields, the quoted L4 bytes copied with their ports rewritten and the
// checksum they carry adjusted for the new pseudo-header, the ICMP checksum computed in full.

// The ICMPv4 error of a frame (parsed as `p`, kind kIcmpError) as the ICMPv6 error
// outer_src -> outer_dst quoting quote_src -> quote_dst. `buffer` holds `headroom` bytes (at
// least kNat64IcmpGrowth) and then the frame. The Ethernet header is kept.
inline constexpr std::size_t kNat64IcmpGrowth = 2 * kNat64Growth;
Translated TranslateIcmpErrorToIpv6(std::span<std::uint8_t> buffer, std::size_t headroom,
                                    const ParsedPacket& p, const Ip6& outer_src,
                                    const Ip6& outer_dst, const Endpoint6& quote_src,
                                    const Endpoint6& quote_dst);

// The ICMPv6 error of `frame` (parsed as `p`, kind kIcmpError) as the ICMPv4 error
// outer_src -> outer_dst quoting quote_src -> quote_dst. The frame starts later.
Translated TranslateIcmpErrorToIpv4(std::span<std::uint8_t> frame, const ParsedPacket6& p,
                                    std::uint32_t outer_src, std::uint32_t outer_dst,
                                    Endpoint4 quote_src, Endpoint4 quote_dst);

}  // namespace fulcrum::nat
