// Neighbour discovery and ICMPv6 echo: parsed from frames built byte by byte, answered, and the
// answers compared with frames the independent packet builder makes.
#include "nat/ndp.h"

#include <array>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using fulcrum::testing::Bytes;
using fulcrum::testing::Ip6Bytes;
using fulcrum::testing::PacketBuilder;

const Ip6Bytes kClient = fulcrum::testing::Ip6("2001:db8::2");
const Ip6Bytes kVip = fulcrum::testing::Ip6("2001:db8:100::10");
const Ip6Bytes kUnspecified{};
constexpr MacAddress kClientMac = {0x02, 0xc1, 0, 0, 0, 0x02};
constexpr MacAddress kMyMac = {0x02, 0, 0, 0, 0, 0x01};
constexpr std::uint8_t kSolicited = 0x40;
constexpr std::uint8_t kOverride = 0x20;

Ip6 AsIp6(const Ip6Bytes& bytes) { return LoadIp6(bytes.data()); }

Ip6Bytes AsBytes(const Ip6& ip) {
  Ip6Bytes out;
  for (int i = 0; i < 8; ++i) {
    out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(ip.hi >> (56 - 8 * i));
    out[static_cast<std::size_t>(8 + i)] = static_cast<std::uint8_t>(ip.lo >> (56 - 8 * i));
  }
  return out;
}

// An NS or NA body after the 4 flag bytes: the target, then `options`.
Bytes Body(const Ip6Bytes& target, const Bytes& options) {
  Bytes body(target.begin(), target.end());
  for (std::uint8_t byte : options) {
    body.push_back(byte);
  }
  return body;
}

Bytes LinkLayerOption(std::uint8_t type, const MacAddress& mac) {
  return {type, 1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]};
}

// A neighbour discovery frame from `src` to `dst`.
Bytes NdpFrame(std::uint8_t type, std::uint8_t flags, const Ip6Bytes& src, const Ip6Bytes& dst,
               const Ip6Bytes& target, const Bytes& options, const MacAddress& eth_dst,
               const MacAddress& eth_src, std::uint8_t code = 0) {
  PacketBuilder b;
  b.Macs(eth_dst, eth_src).Ipv6(src, dst).Ttl(255);
  b.Icmpv6(type, code, std::uint32_t{flags} << 24).Payload(Body(target, options));
  return b.Build();
}

std::optional<NeighborMessage> Parse(const Bytes& frame) {
  const ParsedPacket6 p = ParseIpv6(frame, kEthHeaderLen);
  EXPECT_EQ(p.kind, PacketKind::kNeighbor) << DropReasonName(p.drop);
  return ParseNeighbor(frame, p);
}

TEST(Ndp, ASolicitationForTheVipIsAnswered) {
  const Ip6Bytes group = AsBytes(SolicitedNode(AsIp6(kVip)));
  const Bytes ns = NdpFrame(kIcmpv6NeighborSolicitation, 0, kClient, group, kVip,
                            LinkLayerOption(1, kClientMac), MulticastMac(AsIp6(group)), kClientMac);
  const std::optional<NeighborMessage> m = Parse(ns);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->type, kIcmpv6NeighborSolicitation);
  EXPECT_EQ(m->source, AsIp6(kClient));
  EXPECT_EQ(m->target, AsIp6(kVip));
  ASSERT_TRUE(m->link_layer.has_value());
  EXPECT_EQ(*m->link_layer, kClientMac);

  std::array<std::uint8_t, kNdpFrameBytes> out{};
  ASSERT_EQ(AnswerSolicitation(out, *m, kClientMac, kMyMac), kNdpFrameBytes);
  const Bytes want = NdpFrame(kIcmpv6NeighborAdvertisement, kSolicited | kOverride, kVip, kClient,
                              kVip, LinkLayerOption(2, kMyMac), kClientMac, kMyMac);
  EXPECT_EQ(Bytes(out.begin(), out.end()), want);

  // The answer is itself a valid advertisement.
  const std::optional<NeighborMessage> na = Parse(want);
  ASSERT_TRUE(na.has_value());
  EXPECT_TRUE(na->solicited);
  EXPECT_TRUE(na->override);
  EXPECT_FALSE(na->router);
  EXPECT_EQ(na->link_layer, kMyMac);
}

// Duplicate address detection (RFC 4862): from ::, to the target's solicited-node group; the
// answer goes to every node and is not solicited.
TEST(Ndp, DuplicateAddressDetectionIsAnsweredToEveryNode) {
  const Ip6Bytes group = AsBytes(SolicitedNode(AsIp6(kVip)));
  const Bytes dad = NdpFrame(kIcmpv6NeighborSolicitation, 0, kUnspecified, group, kVip, {},
                             MulticastMac(AsIp6(group)), kClientMac);
  const std::optional<NeighborMessage> m = Parse(dad);
  ASSERT_TRUE(m.has_value());
  std::array<std::uint8_t, kNdpFrameBytes> out{};
  AnswerSolicitation(out, *m, kClientMac, kMyMac);
  const Ip6Bytes all_nodes = fulcrum::testing::Ip6("ff02::1");
  EXPECT_EQ(Bytes(out.begin(), out.end()),
            NdpFrame(kIcmpv6NeighborAdvertisement, kOverride, kVip, all_nodes, kVip,
                     LinkLayerOption(2, kMyMac), {0x33, 0x33, 0, 0, 0, 1}, kMyMac));
}

TEST(Ndp, ASolicitationForABackendGoesToItsGroup) {
  const Ip6Bytes backend = fulcrum::testing::Ip6("2001:db8:1::11");
  const Ip6Bytes me = fulcrum::testing::Ip6("2001:db8:1::1");
  std::array<std::uint8_t, kNdpFrameBytes> out{};
  ASSERT_EQ(BuildNeighborSolicitation(out, kMyMac, AsIp6(me), AsIp6(backend)), kNdpFrameBytes);
  const Ip6Bytes group = fulcrum::testing::Ip6("ff02::1:ff00:11");
  EXPECT_EQ(Bytes(out.begin(), out.end()),
            NdpFrame(kIcmpv6NeighborSolicitation, 0, me, group, backend, LinkLayerOption(1, kMyMac),
                     {0x33, 0x33, 0xff, 0, 0, 0x11}, kMyMac));
}

TEST(Ndp, InvalidMessagesAreRefused) {
  const Ip6Bytes group = AsBytes(SolicitedNode(AsIp6(kVip)));
  const MacAddress group_mac = MulticastMac(AsIp6(group));
  const Bytes sll = LinkLayerOption(1, kClientMac);
  struct Row {
    std::string name;
    Bytes frame;
  };
  Bytes bad_checksum =
      NdpFrame(kIcmpv6NeighborSolicitation, 0, kClient, group, kVip, sll, group_mac, kClientMac);
  bad_checksum[kEthHeaderLen + 40 + 3] ^= 1;
  const std::vector<Row> rows = {
      {"code 1", NdpFrame(kIcmpv6NeighborSolicitation, 0, kClient, group, kVip, sll, group_mac,
                          kClientMac, 1)},
      {"a multicast target",
       NdpFrame(kIcmpv6NeighborSolicitation, 0, kClient, group, group, sll, group_mac, kClientMac)},
      {"an option of length 0", NdpFrame(kIcmpv6NeighborSolicitation, 0, kClient, group, kVip,
                                         {1, 0, 0, 0, 0, 0, 0, 0}, group_mac, kClientMac)},
      {"an option longer than the message",
       NdpFrame(kIcmpv6NeighborSolicitation, 0, kClient, group, kVip, {1, 4, 0, 0, 0, 0, 0, 0},
                group_mac, kClientMac)},
      {"a link-layer address from ::", NdpFrame(kIcmpv6NeighborSolicitation, 0, kUnspecified, group,
                                                kVip, sll, group_mac, kClientMac)},
      {"from :: to someone's unicast address",
       NdpFrame(kIcmpv6NeighborSolicitation, 0, kUnspecified, kVip, kVip, {}, kMyMac, kClientMac)},
      {"a solicited advertisement to a group",
       NdpFrame(kIcmpv6NeighborAdvertisement, kSolicited, kClient, group, kClient,
                LinkLayerOption(2, kClientMac), group_mac, kClientMac)},
      {"a bad checksum", bad_checksum},
  };
  for (const Row& row : rows) {
    EXPECT_FALSE(Parse(row.frame).has_value()) << row.name;
  }
  // A message too short for its target never reaches ParseNeighbor as a neighbour message.
  PacketBuilder short_ns;
  short_ns.Macs(group_mac, kClientMac).Ipv6(kClient, group).Ttl(255);
  const Bytes cut = short_ns.Icmpv6(kIcmpv6NeighborSolicitation, 0).Payload(8).Build();
  const ParsedPacket6 p = ParseIpv6(cut, kEthHeaderLen);
  EXPECT_FALSE(ParseNeighbor(cut, p).has_value());
}

TEST(Ndp, PingsAreAnsweredInPlace) {
  PacketBuilder request;
  request.Macs(kMyMac, kClientMac).Ipv6(kClient, kVip).Ttl(57);
  Bytes frame = request.Icmpv6(kIcmpv6EchoRequest, 0, 0x00070002).Payload(24, 0x41).Build();
  const ParsedPacket6 p = ParseIpv6(frame, kEthHeaderLen);
  ASSERT_EQ(p.kind, PacketKind::kIcmpEcho);
  MakeIcmpv6EchoReply(frame, p);
  PacketBuilder reply;
  reply.Macs(kClientMac, kMyMac).Ipv6(kVip, kClient).Ttl(64);
  EXPECT_EQ(frame, reply.Icmpv6(kIcmpv6EchoReply, 0, 0x00070002).Payload(24, 0x41).Build());
}

}  // namespace
}  // namespace fulcrum::nat
