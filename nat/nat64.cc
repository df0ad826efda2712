#include "nat/nat64.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

#include "nat/bytes.h"
#include "nat/checksum.h"
#include "nat/rewrite6.h"

namespace fulcrum::nat {
namespace {

// Moves the MACs and a VLAN tag, if any, from `from` to `to`: 16 bytes, a constant size that
// compiles to two loads and two stores. Untagged, the last 2 are the start of the IP header,
// which the caller writes afterwards, as it writes the ethertype. `to` lies at least 16 bytes
// from `from` or overlaps it, both fine for memmove.
void MoveEthernet(std::uint8_t* to, const std::uint8_t* from) { std::memmove(to, from, 16); }

std::uint8_t* ChecksumField(std::uint8_t* l4, std::uint8_t proto) {
  return l4 + (proto == kIpProtoTcp ? kTcpChecksumOffset : kUdpChecksumOffset);
}

}  // namespace

Translated TranslateToIpv4(std::span<std::uint8_t> frame, const ParsedPacket6& p, Endpoint4 src,
                           Endpoint4 dst) {
  ChecksumDelta delta;
  AddIp6(delta, p.src_ip, {});
  AddIp6(delta, p.dst_ip, {});
  delta.Add32(0, src.ip);
  delta.Add32(0, dst.ip);
  delta.Add16(p.src_port, src.port);
  delta.Add16(p.dst_port, dst.port);
  return TranslateToIpv4(frame, p, src, dst, delta);
}

Translated TranslateToIpv4(std::span<std::uint8_t> frame, const ParsedPacket6& p, Endpoint4 src,
                           Endpoint4 dst, const ChecksumDelta& delta) {
  const std::uint8_t* old_ip = frame.data() + p.l3_offset;
  const auto traffic_class = static_cast<std::uint8_t>((old_ip[0] & 0x0f) << 4 | old_ip[1] >> 4);

  std::uint8_t* l4 = frame.data() + p.l4_offset;
  const std::size_t l4_len = p.payload_end - p.l4_offset;
  StoreBe16(l4, src.port);
  StoreBe16(l4 + 2, dst.port);
  std::uint8_t* checksum = ChecksumField(l4, p.proto);
  StoreBe16(checksum, p.proto == kIpProtoTcp ? delta.Apply(LoadBe16(checksum))
                                             : delta.ApplyUdp(LoadBe16(checksum)));

  std::uint8_t* ip = l4 - kIpv4MinHeaderLen;
  std::uint8_t* start = ip - p.l3_offset;
  MoveEthernet(start, frame.data());
  const auto total_len = static_cast<std::uint16_t>(kIpv4MinHeaderLen + l4_len);
  const auto ttl = static_cast<std::uint8_t>(p.hop_limit - 1);
  constexpr std::uint16_t kDontFragment = 0x4000;
  ip[0] = 0x45;
  ip[1] = traffic_class;
  StoreBe16(ip + kIpv4TotalLenOffset, total_len);
  StoreBe16(ip + 4, 0);  // identification
  StoreBe16(ip + kIpv4FragOffset, kDontFragment);
  ip[kIpv4TtlOffset] = ttl;
  ip[9] = p.proto;
  StoreBe32(ip + kIpv4SrcOffset, src.ip);
  StoreBe32(ip + kIpv4DstOffset, dst.ip);
  // The header's ten words summed as values: fewer steps than reading the 20 bytes back.
  const std::uint64_t words = std::uint64_t{0x4500u | traffic_class} + total_len + kDontFragment +
                              (std::uint32_t{ttl} << 8 | p.proto) + src.ip + dst.ip;
  StoreBe16(ip + kIpv4ChecksumOffset, static_cast<std::uint16_t>(~ChecksumFold(words)));

  StoreBe16(start + p.l3_offset - 2, kEthTypeIpv4);
  const auto offset = static_cast<std::size_t>(start - frame.data());
  return {offset, p.l3_offset + kIpv4MinHeaderLen + l4_len};
}

Translated TranslateToIpv6(std::span<std::uint8_t> buffer, std::size_t headroom,
                           const ParsedPacket& p, const Endpoint6& src, const Endpoint6& dst) {
  ChecksumDelta delta;
  delta.Add32(p.src_ip, 0);
  delta.Add32(p.dst_ip, 0);
  AddIp6(delta, {}, src.ip);
  AddIp6(delta, {}, dst.ip);
  delta.Add16(p.src_port, src.port);
  delta.Add16(p.dst_port, dst.port);
  return TranslateToIpv6(buffer, headroom, p, src, dst, delta);
}

Translated TranslateToIpv6(std::span<std::uint8_t> buffer, std::size_t headroom,
                           const ParsedPacket& p, const Endpoint6& src, const Endpoint6& dst,
                           const ChecksumDelta& delta) {
  if (headroom + p.l4_offset < p.l3_offset + kIpv6HeaderLen) {
    return {};  // no room before the frame for the longer header
  }
  std::uint8_t* frame = buffer.data() + headroom;
  const std::uint8_t* old_ip = frame + p.l3_offset;
  const std::uint8_t tos = old_ip[1];

  std::uint8_t* l4 = frame + p.l4_offset;
  const std::size_t l4_len = p.ip_total_len - p.ip_header_len;
  std::uint8_t* checksum = ChecksumField(l4, p.proto);
  const bool udp_without_checksum = p.proto == kIpProtoUdp && LoadBe16(checksum) == 0;
  StoreBe16(l4, src.port);
  StoreBe16(l4 + 2, dst.port);

  std::uint8_t* ip = l4 - kIpv6HeaderLen;
  std::uint8_t* start = ip - p.l3_offset;
  MoveEthernet(start, frame);
  ip[0] = static_cast<std::uint8_t>(0x60 | tos >> 4);
  ip[1] = static_cast<std::uint8_t>((tos & 0x0f) << 4);
  ip[2] = 0;
  ip[3] = 0;
  StoreBe16(ip + 4, static_cast<std::uint16_t>(l4_len));
  ip[6] = p.proto;
  ip[7] = static_cast<std::uint8_t>(p.ttl - 1);
  StoreIp6(ip + 8, src.ip);
  StoreIp6(ip + 24, dst.ip);

  if (udp_without_checksum) {
    // IPv6 requires one: computed over the pseudo-header and the whole datagram.
    const std::uint64_t acc = Ipv6PseudoHeaderSum(ip, l4_len, kIpProtoUdp);
    const auto sum = static_cast<std::uint16_t>(~ChecksumFold(ChecksumAdd({l4, l4_len}, acc)));
    StoreBe16(checksum, sum == 0 ? 0xffff : sum);
  } else {
    StoreBe16(checksum, p.proto == kIpProtoTcp ? delta.Apply(LoadBe16(checksum))
                                               : delta.ApplyUdp(LoadBe16(checksum)));
  }

  StoreBe16(start + p.l3_offset - 2, kEthTypeIpv6);
  return {static_cast<std::size_t>(start - buffer.data()), p.l3_offset + kIpv6HeaderLen + l4_len};
}

namespace {

// The ICMPv6 type, code and 4-byte field of a translated ICMPv4 error (RFC 7915 section 4.2),
// or nullopt when it has none.
struct IcmpHeader {
  std::uint8_t type = 0;
  std::uint8_t code = 0;
  std::uint32_t rest = 0;
};

std::optional<IcmpHeader> Icmp6For(std::uint8_t type, std::uint8_t code, std::uint32_t rest) {
  if (type == kIcmpTimeExceeded) {
    return IcmpHeader{kIcmpv6TimeExceeded, code, 0};
  }
  if (type != kIcmpDestUnreachable) {
    return std::nullopt;  // parameter problems and the rest: not translated
  }
  switch (code) {
    case 0:  // net unreachable
    case 1:  // host unreachable
    case 5:  // source route failed
    case 6:
    case 7:
    case 8:
    case 11:
    case 12:
      return IcmpHeader{kIcmpv6DestUnreachable, 0, 0};  // no route
    case 2:  // protocol unreachable: a parameter problem at the next header field
      return IcmpHeader{kIcmpv6ParameterProblem, 1, 6};
    case 3:  // port unreachable
      return IcmpHeader{kIcmpv6DestUnreachable, 4, 0};
    case kIcmpCodeFragNeeded: {
      const std::uint32_t mtu = rest & 0xffff;
      if (mtu == 0) {
        return std::nullopt;  // an RFC 792 router that gives no MTU
      }
      return IcmpHeader{kIcmpv6PacketTooBig, 0, mtu + static_cast<std::uint32_t>(kNat64Growth)};
    }
    case 9:
    case 10:
    case 13:
    case 15:
      return IcmpHeader{kIcmpv6DestUnreachable, 1, 0};  // administratively prohibited
    default:
      return std::nullopt;
  }
}

// The ICMPv4 counterpart of an ICMPv6 error (RFC 7915 section 5.2), or nullopt.
std::optional<IcmpHeader> Icmp4For(std::uint8_t type, std::uint8_t code, std::uint32_t rest) {
  switch (type) {
    case kIcmpv6DestUnreachable:
      switch (code) {
        case 0:
        case 2:
        case 3:
          return IcmpHeader{kIcmpDestUnreachable, 1, 0};  // host unreachable
        case 1:
          return IcmpHeader{kIcmpDestUnreachable, 10, 0};  // host administratively prohibited
        case 4:
          return IcmpHeader{kIcmpDestUnreachable, 3, 0};  // port unreachable
        default:
          return std::nullopt;
      }
    case kIcmpv6PacketTooBig:
      if (rest < 68 + kNat64Growth) {
        return std::nullopt;
      }
      return IcmpHeader{
          kIcmpDestUnreachable, kIcmpCodeFragNeeded,
          std::min<std::uint32_t>(rest - static_cast<std::uint32_t>(kNat64Growth), 0xffff)};
    case kIcmpv6TimeExceeded:
      return IcmpHeader{kIcmpTimeExceeded, code, 0};
    case kIcmpv6ParameterProblem:
      if (code == 1) {  // unrecognised next header
        return IcmpHeader{kIcmpDestUnreachable, 2, 0};
      }
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

// Copies the quoted L4 bytes [l4, l4 + length) to `out` with ports quote_src -> quote_dst and
// the checksum they carry (UDP always, TCP when quoted) adjusted by `delta` and the ports.
void CopyQuotedL4(std::uint8_t* out, const std::uint8_t* l4, std::size_t length, std::uint8_t proto,
                  ChecksumDelta delta, std::uint16_t new_src_port, std::uint16_t new_dst_port) {
  std::memcpy(out, l4, length);
  delta.Add16(LoadBe16(l4), new_src_port);
  delta.Add16(LoadBe16(l4 + 2), new_dst_port);
  StoreBe16(out, new_src_port);
  StoreBe16(out + 2, new_dst_port);
  const std::size_t at = proto == kIpProtoTcp ? kTcpChecksumOffset : kUdpChecksumOffset;
  if (length >= at + 2) {
    const std::uint16_t old = LoadBe16(out + at);
    if (proto == kIpProtoUdp && old == 0) {
      return;  // an IPv4 datagram sent without a checksum
    }
    StoreBe16(out + at, proto == kIpProtoTcp ? delta.Apply(old) : delta.ApplyUdp(old));
  }
}

}  // namespace

Translated TranslateIcmpErrorToIpv6(std::span<std::uint8_t> buffer, std::size_t headroom,
                                    const ParsedPacket& p, const Ip6& outer_src,
                                    const Ip6& outer_dst, const Endpoint6& quote_src,
                                    const Endpoint6& quote_dst) {
  if (headroom < kNat64IcmpGrowth) {
    return {};
  }
  std::uint8_t* frame = buffer.data() + headroom;
  const std::uint8_t* icmp = frame + p.l4_offset;
  const std::optional<IcmpHeader> header = Icmp6For(icmp[0], icmp[1], LoadBe32(icmp + 4));
  if (!header) {
    return {};
  }
  const IcmpQuote& q = p.quote;
  const std::uint8_t* quoted_ip = frame + q.l3_offset;
  const std::size_t quoted_ihl = q.l4_offset - q.l3_offset;
  const std::uint16_t quoted_total = LoadBe16(quoted_ip + kIpv4TotalLenOffset);

  // Built in a scratch copy (an error is at most 576 bytes of IPv4; quotes longer than what
  // fits the IPv6 minimum MTU are cut), then moved into place.
  std::array<std::uint8_t, 1280> out;
  const std::size_t quote_l4 =
      std::min<std::size_t>(q.l4_len, out.size() - 2 * kIpv6HeaderLen - kIcmpHeaderLen);
  const std::size_t icmp_len = kIcmpHeaderLen + kIpv6HeaderLen + quote_l4;
  std::uint8_t* ip6 = out.data();
  const std::uint8_t tos = frame[p.l3_offset + 1];
  ip6[0] = static_cast<std::uint8_t>(0x60 | tos >> 4);
  ip6[1] = static_cast<std::uint8_t>((tos & 0x0f) << 4);
  ip6[2] = 0;
  ip6[3] = 0;
  StoreBe16(ip6 + 4, static_cast<std::uint16_t>(icmp_len));
  ip6[6] = kIpProtoIcmpv6;
  ip6[7] = static_cast<std::uint8_t>(p.ttl - 1);
  StoreIp6(ip6 + 8, outer_src);
  StoreIp6(ip6 + 24, outer_dst);
  std::uint8_t* icmp6 = ip6 + kIpv6HeaderLen;
  icmp6[0] = header->type;
  icmp6[1] = header->code;
  StoreBe16(icmp6 + 2, 0);
  StoreBe32(icmp6 + 4, header->rest);
  std::uint8_t* inner = icmp6 + kIcmpHeaderLen;
  const std::uint8_t inner_tos = quoted_ip[1];
  inner[0] = static_cast<std::uint8_t>(0x60 | inner_tos >> 4);
  inner[1] = static_cast<std::uint8_t>((inner_tos & 0x0f) << 4);
  inner[2] = 0;
  inner[3] = 0;
  StoreBe16(inner + 4, static_cast<std::uint16_t>(quoted_total - quoted_ihl));
  inner[6] = q.proto;
  inner[7] = quoted_ip[kIpv4TtlOffset];
  StoreIp6(inner + 8, quote_src.ip);
  StoreIp6(inner + 24, quote_dst.ip);
  ChecksumDelta delta;
  delta.Add32(q.src_ip, 0);
  delta.Add32(q.dst_ip, 0);
  AddIp6(delta, {}, quote_src.ip);
  AddIp6(delta, {}, quote_dst.ip);
  CopyQuotedL4(inner + kIpv6HeaderLen, frame + q.l4_offset, quote_l4, q.proto, delta,
               quote_src.port, quote_dst.port);
  StoreBe16(icmp6 + 2, InternetChecksum({icmp6, icmp_len},
                                        Ipv6PseudoHeaderSum(ip6, icmp_len, kIpProtoIcmpv6)));

  // The new packet ends where the old one did, or earlier when the quote was cut: it starts
  // in the headroom by as much as it grew.
  const std::size_t ip_len = kIpv6HeaderLen + icmp_len;
  const std::size_t growth = ip_len > p.ip_total_len ? ip_len - p.ip_total_len : 0;
  const std::size_t start = headroom - growth;
  std::memmove(buffer.data() + start, frame, p.l3_offset);
  std::memcpy(buffer.data() + start + p.l3_offset, out.data(), ip_len);
  StoreBe16(buffer.data() + start + p.l3_offset - 2, kEthTypeIpv6);
  return {start, p.l3_offset + ip_len};
}

Translated TranslateIcmpErrorToIpv4(std::span<std::uint8_t> frame, const ParsedPacket6& p,
                                    std::uint32_t outer_src, std::uint32_t outer_dst,
                                    Endpoint4 quote_src, Endpoint4 quote_dst) {
  const std::uint8_t* icmp = frame.data() + p.l4_offset;
  const std::optional<IcmpHeader> header = Icmp4For(icmp[0], icmp[1], LoadBe32(icmp + 4));
  if (!header) {
    return {};
  }
  const Icmp6Quote& q = p.quote;
  const std::uint8_t* quoted_ip = frame.data() + q.l3_offset;
  const std::uint16_t quoted_payload = LoadBe16(quoted_ip + 4);
  const std::size_t quoted_ext = q.l4_offset - q.l3_offset - kIpv6HeaderLen;

  std::array<std::uint8_t, 1280> out;
  const std::size_t quote_l4 =
      std::min<std::size_t>(q.l4_len, 576 - 2 * kIpv4MinHeaderLen - kIcmpHeaderLen);
  const std::size_t icmp_len = kIcmpHeaderLen + kIpv4MinHeaderLen + quote_l4;
  const std::size_t ip_len = kIpv4MinHeaderLen + icmp_len;
  const std::uint8_t* old_ip = frame.data() + p.l3_offset;
  std::uint8_t* ip = out.data();
  ip[0] = 0x45;
  ip[1] = static_cast<std::uint8_t>((old_ip[0] & 0x0f) << 4 | old_ip[1] >> 4);
  StoreBe16(ip + kIpv4TotalLenOffset, static_cast<std::uint16_t>(ip_len));
  StoreBe16(ip + 4, 0);
  StoreBe16(ip + kIpv4FragOffset, 0);
  ip[kIpv4TtlOffset] = static_cast<std::uint8_t>(p.hop_limit - 1);
  ip[9] = kIpProtoIcmp;
  StoreBe16(ip + kIpv4ChecksumOffset, 0);
  StoreBe32(ip + kIpv4SrcOffset, outer_src);
  StoreBe32(ip + kIpv4DstOffset, outer_dst);
  StoreBe16(ip + kIpv4ChecksumOffset, InternetChecksum({ip, kIpv4MinHeaderLen}));
  std::uint8_t* icmp4 = ip + kIpv4MinHeaderLen;
  icmp4[0] = header->type;
  icmp4[1] = header->code;
  StoreBe16(icmp4 + 2, 0);
  StoreBe32(icmp4 + 4, header->rest);
  std::uint8_t* inner = icmp4 + kIcmpHeaderLen;
  inner[0] = 0x45;
  inner[1] = static_cast<std::uint8_t>((quoted_ip[0] & 0x0f) << 4 | quoted_ip[1] >> 4);
  StoreBe16(inner + kIpv4TotalLenOffset,
            static_cast<std::uint16_t>(kIpv4MinHeaderLen + quoted_payload - quoted_ext));
  StoreBe16(inner + 4, 0);
  StoreBe16(inner + kIpv4FragOffset, 0x4000);
  inner[kIpv4TtlOffset] = quoted_ip[7];
  inner[9] = q.proto;
  StoreBe16(inner + kIpv4ChecksumOffset, 0);
  StoreBe32(inner + kIpv4SrcOffset, quote_src.ip);
  StoreBe32(inner + kIpv4DstOffset, quote_dst.ip);
  StoreBe16(inner + kIpv4ChecksumOffset, InternetChecksum({inner, kIpv4MinHeaderLen}));
  ChecksumDelta delta;
  AddIp6(delta, q.src_ip, {});
  AddIp6(delta, q.dst_ip, {});
  delta.Add32(0, quote_src.ip);
  delta.Add32(0, quote_dst.ip);
  CopyQuotedL4(inner + kIpv4MinHeaderLen, frame.data() + q.l4_offset, quote_l4, q.proto, delta,
               quote_src.port, quote_dst.port);
  StoreBe16(icmp4 + kIcmpChecksumOffset, InternetChecksum({icmp4, icmp_len}));

  // Shorter than the packet it replaces (40 bytes of headers less, the quote no longer): in
  // place, after the Ethernet header.
  std::memcpy(frame.data() + p.l3_offset, out.data(), ip_len);
  StoreBe16(frame.data() + p.l3_offset - 2, kEthTypeIpv4);
  return {0, p.l3_offset + ip_len};
}

}  // namespace fulcrum::nat
