#include "nat/ndp.h"

#include <cstring>

#include "nat/bytes.h"
#include "nat/checksum.h"

namespace fulcrum::nat {
namespace {

constexpr std::size_t kNdpMessageLen = 24;  // type, code, checksum, flags, target
constexpr std::uint8_t kOptionSourceLinkLayer = 1;
constexpr std::uint8_t kOptionTargetLinkLayer = 2;
constexpr std::uint8_t kFlagRouter = 0x80;
constexpr std::uint8_t kFlagSolicited = 0x40;
constexpr std::uint8_t kFlagOverride = 0x20;

// The ICMPv6 checksum of `message` from `ip` (its IPv6 header, addresses filled in).
std::uint16_t Icmpv6Checksum(const std::uint8_t* ip, std::span<const std::uint8_t> message) {
  const std::uint64_t acc = Ipv6PseudoHeaderSum(ip, message.size(), kIpProtoIcmpv6);
  return static_cast<std::uint16_t>(~ChecksumFold(ChecksumAdd(message, acc)));
}

// An untagged Ethernet/IPv6/ICMPv6 neighbour discovery frame with one link-layer option.
std::size_t BuildNdp(std::span<std::uint8_t> out, const MacAddress& eth_dst,
                     const MacAddress& eth_src, const Ip6& src, const Ip6& dst, std::uint8_t type,
                     std::uint8_t flags, const Ip6& target, std::uint8_t option,
                     const MacAddress& option_mac) {
  std::uint8_t* eth = out.data();
  std::memcpy(eth, eth_dst.data(), 6);
  std::memcpy(eth + 6, eth_src.data(), 6);
  StoreBe16(eth + 12, kEthTypeIpv6);
  std::uint8_t* ip = eth + kEthHeaderLen;
  std::memset(ip, 0, kIpv6HeaderLen);
  ip[0] = 0x60;
  StoreBe16(ip + 4, kNdpMessageLen + 8);
  ip[6] = kIpProtoIcmpv6;
  ip[7] = kHopLimitNdp;
  StoreIp6(ip + 8, src);
  StoreIp6(ip + 24, dst);
  std::uint8_t* icmp = ip + kIpv6HeaderLen;
  std::memset(icmp, 0, kNdpMessageLen + 8);
  icmp[0] = type;
  icmp[4] = flags;
  StoreIp6(icmp + 8, target);
  icmp[24] = option;
  icmp[25] = 1;  // in units of 8 bytes
  std::memcpy(icmp + 26, option_mac.data(), 6);
  StoreBe16(icmp + 2, Icmpv6Checksum(ip, {icmp, kNdpMessageLen + 8}));
  return kNdpFrameBytes;
}

}  // namespace

std::optional<NeighborMessage> ParseNeighbor(std::span<const std::uint8_t> frame,
                                             const ParsedPacket6& p) {
  if (p.kind != PacketKind::kNeighbor || p.icmp_code != 0 ||
      p.l4_offset + kNdpMessageLen > p.payload_end || p.payload_end > frame.size()) {
    return std::nullopt;
  }
  const std::uint8_t* ip = frame.data() + p.l3_offset;
  const std::uint8_t* icmp = frame.data() + p.l4_offset;
  const std::span<const std::uint8_t> message(icmp, p.payload_end - p.l4_offset);
  const std::uint64_t acc = Ipv6PseudoHeaderSum(ip, message.size(), kIpProtoIcmpv6);
  if (ChecksumFold(ChecksumAdd(message, acc)) != 0xffff) {
    return std::nullopt;
  }
  NeighborMessage m;
  m.type = p.icmp_type;
  m.source = p.src_ip;
  m.destination = p.dst_ip;
  m.target = LoadIp6(icmp + 8);
  m.router = (icmp[4] & kFlagRouter) != 0;
  m.solicited = (icmp[4] & kFlagSolicited) != 0;
  m.override = (icmp[4] & kFlagOverride) != 0;
  if (IsMulticast(m.target)) {
    return std::nullopt;
  }
  const bool solicitation = m.type == kIcmpv6NeighborSolicitation;
  const std::uint8_t wanted = solicitation ? kOptionSourceLinkLayer : kOptionTargetLinkLayer;
  for (std::size_t at = kNdpMessageLen; at < message.size();) {
    if (at + 2 > message.size() || message[at + 1] == 0 ||
        at + std::size_t{message[at + 1]} * 8 > message.size()) {
      return std::nullopt;
    }
    if (message[at] == wanted && message[at + 1] == 1) {
      MacAddress mac;
      std::memcpy(mac.data(), message.data() + at + 2, 6);
      m.link_layer = mac;
    }
    at += std::size_t{message[at + 1]} * 8;
  }
  if (solicitation && IsUnspecified(m.source) &&
      (m.link_layer.has_value() || !(m.destination == SolicitedNode(m.target)))) {
    return std::nullopt;  // duplicate address detection: no address to answer, only a group
  }
  if (!solicitation && m.solicited && IsMulticast(m.destination)) {
    return std::nullopt;  // a solicited advertisement answers one node
  }
  return m;
}

std::size_t BuildNeighborAdvertisement(std::span<std::uint8_t> out, const MacAddress& my_mac,
                                       const Ip6& target, const Ip6& to, const MacAddress& to_mac,
                                       bool solicited) {
  const std::uint8_t flags =
      static_cast<std::uint8_t>(kFlagOverride | (solicited ? kFlagSolicited : 0));
  return BuildNdp(out, to_mac, my_mac, target, to, kIcmpv6NeighborAdvertisement, flags, target,
                  kOptionTargetLinkLayer, my_mac);
}

std::size_t AnswerSolicitation(std::span<std::uint8_t> out, const NeighborMessage& ns,
                               const MacAddress& sender_mac, const MacAddress& my_mac) {
  if (IsUnspecified(ns.source)) {
    return BuildNeighborAdvertisement(out, my_mac, ns.target, kAllNodes, MulticastMac(kAllNodes),
                                      false);
  }
  return BuildNeighborAdvertisement(out, my_mac, ns.target, ns.source,
                                    ns.link_layer.value_or(sender_mac), true);
}

std::size_t BuildNeighborSolicitation(std::span<std::uint8_t> out, const MacAddress& my_mac,
                                      const Ip6& my_ip, const Ip6& target) {
  const Ip6 group = SolicitedNode(target);
  return BuildNdp(out, MulticastMac(group), my_mac, my_ip, group, kIcmpv6NeighborSolicitation, 0,
                  target, kOptionSourceLinkLayer, my_mac);
}

void MakeIcmpv6EchoReply(std::span<std::uint8_t> frame, const ParsedPacket6& p) {
  std::uint8_t* eth = frame.data();
  std::uint8_t mac[6];
  std::memcpy(mac, eth, 6);
  std::memcpy(eth, eth + 6, 6);
  std::memcpy(eth + 6, mac, 6);
  std::uint8_t* ip = eth + p.l3_offset;
  std::uint8_t address[16];
  std::memcpy(address, ip + 8, 16);
  std::memcpy(ip + 8, ip + 24, 16);
  std::memcpy(ip + 24, address, 16);
  ip[7] = kDefaultTtl;
  std::uint8_t* icmp = eth + p.l4_offset;
  const std::uint16_t old_type_code = LoadBe16(icmp);
  icmp[0] = kIcmpv6EchoReply;
  icmp[1] = 0;
  StoreBe16(icmp + 2, ChecksumUpdate16(LoadBe16(icmp + 2), old_type_code, LoadBe16(icmp)));
}

}  // namespace fulcrum::nat
