#include "nat/nat64.h"

#include <array>
#include <cstring>

#include "nat/bytes.h"
#include "nat/checksum.h"
#include "nat/rewrite6.h"

namespace fulcrum::nat {
namespace {

std::uint8_t* ChecksumField(std::uint8_t* l4, std::uint8_t proto) {
  return l4 + (proto == kIpProtoTcp ? kTcpChecksumOffset : kUdpChecksumOffset);
}

}  // namespace

Translated TranslateToIpv4(std::span<std::uint8_t> frame, const ParsedPacket6& p, Endpoint4 src,
                           Endpoint4 dst) {
  const std::uint8_t* old_ip = frame.data() + p.l3_offset;
  const auto traffic_class = static_cast<std::uint8_t>((old_ip[0] & 0x0f) << 4 | old_ip[1] >> 4);
  std::array<std::uint8_t, 18> eth;  // MACs and, after a VLAN tag, the tag
  std::memcpy(eth.data(), frame.data(), p.l3_offset);

  std::uint8_t* l4 = frame.data() + p.l4_offset;
  const std::size_t l4_len = p.payload_end - p.l4_offset;
  ChecksumDelta delta;
  AddIp6(delta, p.src_ip, {});
  AddIp6(delta, p.dst_ip, {});
  delta.Add32(0, src.ip);
  delta.Add32(0, dst.ip);
  delta.Add16(p.src_port, src.port);
  delta.Add16(p.dst_port, dst.port);
  StoreBe16(l4, src.port);
  StoreBe16(l4 + 2, dst.port);
  std::uint8_t* checksum = ChecksumField(l4, p.proto);
  StoreBe16(checksum, p.proto == kIpProtoTcp ? delta.Apply(LoadBe16(checksum))
                                             : delta.ApplyUdp(LoadBe16(checksum)));

  std::uint8_t* ip = l4 - kIpv4MinHeaderLen;
  ip[0] = 0x45;
  ip[1] = traffic_class;
  StoreBe16(ip + kIpv4TotalLenOffset, static_cast<std::uint16_t>(kIpv4MinHeaderLen + l4_len));
  StoreBe16(ip + 4, 0);                     // identification
  StoreBe16(ip + kIpv4FragOffset, 0x4000);  // DF
  ip[kIpv4TtlOffset] = static_cast<std::uint8_t>(p.hop_limit - 1);
  ip[9] = p.proto;
  StoreBe16(ip + kIpv4ChecksumOffset, 0);
  StoreBe32(ip + kIpv4SrcOffset, src.ip);
  StoreBe32(ip + kIpv4DstOffset, dst.ip);
  StoreBe16(ip + kIpv4ChecksumOffset, InternetChecksum({ip, kIpv4MinHeaderLen}));

  std::uint8_t* start = ip - p.l3_offset;
  std::memcpy(start, eth.data(), p.l3_offset - 2);
  StoreBe16(start + p.l3_offset - 2, kEthTypeIpv4);
  const auto offset = static_cast<std::size_t>(start - frame.data());
  return {offset, p.l3_offset + kIpv4MinHeaderLen + l4_len};
}

Translated TranslateToIpv6(std::span<std::uint8_t> buffer, std::size_t headroom,
                           const ParsedPacket& p, const Endpoint6& src, const Endpoint6& dst) {
  if (headroom + p.l4_offset < p.l3_offset + kIpv6HeaderLen) {
    return {};  // no room before the frame for the longer header
  }
  std::uint8_t* frame = buffer.data() + headroom;
  const std::uint8_t* old_ip = frame + p.l3_offset;
  const std::uint8_t tos = old_ip[1];
  std::array<std::uint8_t, 18> eth;
  std::memcpy(eth.data(), frame, p.l3_offset);

  std::uint8_t* l4 = frame + p.l4_offset;
  const std::size_t l4_len = p.ip_total_len - p.ip_header_len;
  std::uint8_t* checksum = ChecksumField(l4, p.proto);
  const bool udp_without_checksum = p.proto == kIpProtoUdp && LoadBe16(checksum) == 0;
  ChecksumDelta delta;
  delta.Add32(p.src_ip, 0);
  delta.Add32(p.dst_ip, 0);
  AddIp6(delta, {}, src.ip);
  AddIp6(delta, {}, dst.ip);
  delta.Add16(p.src_port, src.port);
  delta.Add16(p.dst_port, dst.port);
  StoreBe16(l4, src.port);
  StoreBe16(l4 + 2, dst.port);

  std::uint8_t* ip = l4 - kIpv6HeaderLen;
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

  std::uint8_t* start = ip - p.l3_offset;
  std::memcpy(start, eth.data(), p.l3_offset - 2);
  StoreBe16(start + p.l3_offset - 2, kEthTypeIpv6);
  return {static_cast<std::size_t>(start - buffer.data()), p.l3_offset + kIpv6HeaderLen + l4_len};
}

}  // namespace fulcrum::nat
