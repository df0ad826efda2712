#include "nat/tcp_reset.h"

#include <gtest/gtest.h>

#include "nat/packet.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using testing::Bytes;
using testing::CheckFrameChecksums;
using testing::Get32;
using testing::Ip4;
using testing::PacketBuilder;

constexpr testing::Mac kLbMac = {2, 0, 0, 0, 0, 1};
constexpr testing::Mac kPeerMac = {2, 0, 0, 0, 0, 2};

// A segment from the client to the VIP, and the reset the LB makes of it.
struct ResetCase {
  Bytes frame;
  ParsedPacket parsed;
  std::size_t length = 0;
};

ResetCase Reset(PacketBuilder builder) {
  ResetCase c;
  c.frame = builder.Macs(kLbMac, kPeerMac).Ipv4(Ip4("198.18.0.2"), Ip4("198.18.100.10")).Build();
  ParsedPacket p = Parse(c.frame);
  EXPECT_EQ(p.kind, PacketKind::kTcp);
  c.length = MakeTcpReset(c.frame, p);
  c.frame.resize(c.length);
  c.parsed = Parse(c.frame);
  return c;
}

TEST(TcpResetTest, AnAckGetsAResetWithItsAckNumber) {
  ResetCase c =
      Reset(PacketBuilder().Tcp(40000, 80, kTcpAck | kTcpPsh).TcpSeq(1000, 5000).Payload(100));
  ASSERT_EQ(c.length, kEthHeaderLen + 40);
  EXPECT_EQ(CheckFrameChecksums(c.frame), "");
  ASSERT_EQ(c.parsed.kind, PacketKind::kTcp);
  EXPECT_EQ(c.parsed.src_ip, Ip4("198.18.100.10"));
  EXPECT_EQ(c.parsed.dst_ip, Ip4("198.18.0.2"));
  EXPECT_EQ(c.parsed.src_port, 80);
  EXPECT_EQ(c.parsed.dst_port, 40000);
  EXPECT_EQ(c.parsed.tcp_flags, kTcpRst);
  EXPECT_EQ(c.parsed.payload_len, 0);
  EXPECT_EQ(Get32(c.frame, c.parsed.l4_offset + 4), 5000u);
  EXPECT_TRUE(std::equal(kPeerMac.begin(), kPeerMac.end(), c.frame.begin()));
  EXPECT_TRUE(std::equal(kLbMac.begin(), kLbMac.end(), c.frame.begin() + 6));
}

TEST(TcpResetTest, ASegmentWithoutAckIsAcknowledged) {
  // A FIN without ACK and 10 bytes: SEG.LEN = 11.
  ResetCase c = Reset(PacketBuilder().Tcp(40000, 80, kTcpFin).TcpSeq(7, 0).Payload(10));
  ASSERT_EQ(c.parsed.kind, PacketKind::kTcp);
  EXPECT_EQ(CheckFrameChecksums(c.frame), "");
  EXPECT_EQ(c.parsed.tcp_flags, kTcpRst | kTcpAck);
  EXPECT_EQ(Get32(c.frame, c.parsed.l4_offset + 4), 0u);
  EXPECT_EQ(Get32(c.frame, c.parsed.l4_offset + 8), 18u);
}

TEST(TcpResetTest, OptionsAreDropped) {
  ResetCase c = Reset(PacketBuilder()
                          .IpOptions({0x94, 0x04, 0, 0})
                          .Tcp(40000, 80, kTcpAck)
                          .TcpOptions({1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
                          .TcpSeq(1, 99));
  ASSERT_EQ(c.length, kEthHeaderLen + 40);
  ASSERT_EQ(c.parsed.kind, PacketKind::kTcp);
  EXPECT_EQ(c.parsed.ip_header_len, 20);
  EXPECT_EQ(c.parsed.ttl, kDefaultTtl);
  EXPECT_EQ(CheckFrameChecksums(c.frame), "");
  EXPECT_EQ(Get32(c.frame, c.parsed.l4_offset + 4), 99u);
}

TEST(TcpResetTest, AResetIsNeverAnswered) {
  Bytes frame = PacketBuilder().Tcp(40000, 80, kTcpRst | kTcpAck).Build();
  const Bytes before = frame;
  EXPECT_EQ(MakeTcpReset(frame, Parse(frame)), 0u);
  EXPECT_EQ(frame, before);
}

}  // namespace
}  // namespace fulcrum::nat
