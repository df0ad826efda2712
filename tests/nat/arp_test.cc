#include "nat/arp.h"

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "nat/packet.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using testing::Bytes;
using testing::CheckFrameChecksums;
using testing::Get16;
using testing::Get32;
using testing::Ip4;
using testing::PacketBuilder;

constexpr MacAddress kMyMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
constexpr testing::Mac kPeerMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x99};

TEST(ArpTest, ParsesARequest) {
  Bytes frame = PacketBuilder()
                    .Macs({0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, kPeerMac)
                    .Arp(kArpRequest, kPeerMac, Ip4("198.18.0.2"), Ip4("198.18.0.1"))
                    .Build();
  std::optional<ArpMessage> message = ParseArp(frame);
  ASSERT_TRUE(message.has_value());
  EXPECT_EQ(message->op, kArpRequest);
  EXPECT_EQ(message->sender_ip, Ip4("198.18.0.2"));
  EXPECT_EQ(message->target_ip, Ip4("198.18.0.1"));
  EXPECT_EQ(message->sender_mac, kPeerMac);
  EXPECT_EQ(message->target_mac, MacAddress{});
}

TEST(ArpTest, RefusesTruncatedAndForeignArp) {
  Bytes frame = PacketBuilder().Arp(kArpRequest, kPeerMac, 1, 2).Build();
  EXPECT_FALSE(ParseArp(std::span(frame).first(kEthHeaderLen + kArpIpv4Len - 1)).has_value());
  Bytes ipv6_arp = frame;
  ipv6_arp[kEthHeaderLen + 2] = 0x86;  // protocol type 0x86dd
  ipv6_arp[kEthHeaderLen + 3] = 0xdd;
  EXPECT_FALSE(ParseArp(ipv6_arp).has_value());
  Bytes long_hw = frame;
  long_hw[kEthHeaderLen + 4] = 8;
  EXPECT_FALSE(ParseArp(long_hw).has_value());
}

TEST(ArpTest, ReplyAnswersTheRequesterInPlace) {
  Bytes frame = PacketBuilder()
                    .Macs({0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, kPeerMac)
                    .Arp(kArpRequest, kPeerMac, Ip4("198.18.0.2"), Ip4("198.18.100.10"))
                    .PadTo(60)
                    .Build();
  const std::size_t size = frame.size();
  std::optional<ArpMessage> request = ParseArp(frame);
  ASSERT_TRUE(request.has_value());
  MakeArpReply(frame, *request, kMyMac);
  ASSERT_EQ(frame.size(), size);
  EXPECT_TRUE(std::equal(kPeerMac.begin(), kPeerMac.end(), frame.begin()));
  EXPECT_TRUE(std::equal(kMyMac.begin(), kMyMac.end(), frame.begin() + 6));
  EXPECT_EQ(Get16(frame, 12), kEthTypeArp);
  std::optional<ArpMessage> reply = ParseArp(frame);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->op, kArpReply);
  EXPECT_EQ(reply->sender_mac, kMyMac);
  EXPECT_EQ(reply->sender_ip, Ip4("198.18.100.10"));
  EXPECT_EQ(reply->target_mac, kPeerMac);
  EXPECT_EQ(reply->target_ip, Ip4("198.18.0.2"));
  // What the parser of the peer sees.
  ParsedPacket parsed = Parse(frame);
  EXPECT_EQ(parsed.kind, PacketKind::kArp);
  EXPECT_EQ(parsed.arp_op, kArpReply);
}

TEST(ArpTest, ReplyKeepsAVlanTag) {
  Bytes frame = PacketBuilder()
                    .Vlan(7)
                    .Arp(kArpRequest, kPeerMac, Ip4("198.18.0.2"), Ip4("198.18.0.1"))
                    .Build();
  std::optional<ArpMessage> request = ParseArp(frame, kEthHeaderLen + kVlanTagLen);
  ASSERT_TRUE(request.has_value());
  MakeArpReply(frame, *request, kMyMac, kEthHeaderLen + kVlanTagLen);
  EXPECT_EQ(Get16(frame, 12), kEthTypeVlan);
  EXPECT_EQ(Get16(frame, 14), 7);
  std::optional<ArpMessage> reply = ParseArp(frame, kEthHeaderLen + kVlanTagLen);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->op, kArpReply);
  EXPECT_EQ(reply->sender_ip, Ip4("198.18.0.1"));
}

TEST(ArpTest, BuildsBroadcastAndGratuitousRequests) {
  std::vector<std::uint8_t> out(kArpFrameBytes);
  ASSERT_EQ(BuildArpRequest(out, kMyMac, Ip4("198.18.1.1"), Ip4("198.18.1.11")), kArpFrameBytes);
  EXPECT_TRUE(std::equal(kBroadcastMac.begin(), kBroadcastMac.end(), out.begin()));
  ParsedPacket parsed = Parse(out);
  ASSERT_EQ(parsed.kind, PacketKind::kArp);
  EXPECT_EQ(parsed.arp_op, kArpRequest);
  EXPECT_EQ(parsed.src_ip, Ip4("198.18.1.1"));
  EXPECT_EQ(parsed.dst_ip, Ip4("198.18.1.11"));
  std::optional<ArpMessage> message = ParseArp(out);
  ASSERT_TRUE(message.has_value());
  EXPECT_EQ(message->sender_mac, kMyMac);
  EXPECT_EQ(message->target_mac, MacAddress{});

  ASSERT_EQ(BuildArpRequest(out, kMyMac, Ip4("198.18.100.10"), Ip4("198.18.100.10")),
            kArpFrameBytes);
  message = ParseArp(out);
  ASSERT_TRUE(message.has_value());
  EXPECT_EQ(message->sender_ip, message->target_ip);
}

TEST(IcmpEchoTest, ReplySwapsAddressesAndKeepsChecksumsRight) {
  Bytes frame = PacketBuilder()
                    .Macs({0x02, 0, 0, 0, 0, 0x01}, kPeerMac)
                    .Ipv4(Ip4("198.18.0.2"), Ip4("198.18.100.10"))
                    .Ttl(17)
                    .IcmpEcho(kIcmpEchoRequest, 0x1234, 9)
                    .Payload(56, 0x30)
                    .Build();
  ParsedPacket p = Parse(frame);
  ASSERT_EQ(p.kind, PacketKind::kIcmpEcho);
  Bytes payload(frame.begin() + p.payload_offset, frame.end());
  MakeIcmpEchoReply(frame, p.l3_offset, p.l4_offset);
  EXPECT_EQ(CheckFrameChecksums(frame), "");
  ParsedPacket reply = Parse(frame);
  ASSERT_EQ(reply.kind, PacketKind::kIcmpEcho);
  EXPECT_EQ(reply.icmp_type, kIcmpEchoReply);
  EXPECT_EQ(reply.src_ip, Ip4("198.18.100.10"));
  EXPECT_EQ(reply.dst_ip, Ip4("198.18.0.2"));
  EXPECT_EQ(reply.ttl, kDefaultTtl);
  EXPECT_TRUE(std::equal(kPeerMac.begin(), kPeerMac.end(), frame.begin()));
  EXPECT_EQ(Get32(frame, p.l4_offset + 4), 0x12340009u);
  EXPECT_TRUE(std::equal(payload.begin(), payload.end(), frame.begin() + p.payload_offset));
}

TEST(IcmpEchoTest, ChecksumsStayRightForEveryTtl) {
  for (int ttl = 1; ttl < 256; ttl += 7) {
    Bytes frame = PacketBuilder()
                      .Ipv4(Ip4("198.18.0.2"), Ip4("198.18.0.1"))
                      .Ttl(static_cast<std::uint8_t>(ttl))
                      .IcmpEcho(kIcmpEchoRequest, static_cast<std::uint16_t>(ttl * 31), 1)
                      .Build();
    ParsedPacket p = Parse(frame);
    ASSERT_EQ(p.kind, PacketKind::kIcmpEcho);
    MakeIcmpEchoReply(frame, p.l3_offset, p.l4_offset);
    EXPECT_EQ(CheckFrameChecksums(frame), "") << "ttl " << ttl;
  }
}

}  // namespace
}  // namespace fulcrum::nat
