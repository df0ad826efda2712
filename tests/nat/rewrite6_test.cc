// RewriteIpv6 against packets the independent builder makes with the new addresses and ports,
// checksums computed from scratch: fixed cases, then random addresses, ports and payloads.
#include "nat/rewrite6.h"

#include <random>

#include <gtest/gtest.h>

#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using fulcrum::testing::Bytes;
using fulcrum::testing::Ip6Bytes;
using fulcrum::testing::PacketBuilder;
using fulcrum::testing::RandomIp6;
using fulcrum::testing::RandomPort;

Ip6 AsIp6(const Ip6Bytes& bytes) { return LoadIp6(bytes.data()); }
Ip6Bytes Text(const char* text) { return fulcrum::testing::Ip6(text); }

// A TCP (or UDP) packet from src to dst with `hop_limit` and a payload.
Bytes Packet(bool tcp, const Ip6Bytes& src, std::uint16_t sport, const Ip6Bytes& dst,
             std::uint16_t dport, std::uint8_t hop_limit, std::size_t payload,
             std::uint8_t first = 0x30) {
  PacketBuilder b;
  b.Ipv6(src, dst).Ttl(hop_limit);
  if (tcp) {
    b.Tcp(sport, dport, kTcpAck | kTcpPsh).TcpSeq(77, 88);
  } else {
    b.Udp(sport, dport);
  }
  return b.Payload(payload, first).Build();
}

void ExpectRewrite(bool tcp, const Ip6Bytes& src, std::uint16_t sport, const Ip6Bytes& dst,
                   std::uint16_t dport, const Ip6Bytes& new_src, std::uint16_t new_sport,
                   const Ip6Bytes& new_dst, std::uint16_t new_dport, std::size_t payload,
                   std::uint8_t first) {
  Bytes frame = Packet(tcp, src, sport, dst, dport, 64, payload, first);
  const ParsedPacket6 p = ParseIpv6(frame, kEthHeaderLen);
  ASSERT_TRUE(p.ok()) << DropReasonName(p.drop);
  RewriteIpv6(frame, p, {AsIp6(new_src), new_sport}, {AsIp6(new_dst), new_dport});
  EXPECT_EQ(frame, Packet(tcp, new_src, new_sport, new_dst, new_dport, 63, payload, first));
}

TEST(RewriteIpv6, FnatBothWays) {
  const Ip6Bytes client = Text("2001:db8::2");
  const Ip6Bytes vip = Text("2001:db8:100::10");
  const Ip6Bytes local = Text("2001:db8:1::2");
  const Ip6Bytes backend = Text("2001:db8:1::11");
  for (const bool tcp : {true, false}) {
    SCOPED_TRACE(tcp ? "tcp" : "udp");
    // client -> vip becomes local -> backend; backend -> local becomes vip -> client.
    ExpectRewrite(tcp, client, 40000, vip, 80, local, 1024, backend, 8080, 100, 0x41);
    ExpectRewrite(tcp, backend, 8080, local, 1024, vip, 80, client, 40000, 3, 0x42);
  }
}

TEST(RewriteIpv6, RandomAddressesAndPorts) {
  std::mt19937_64 random(11);
  for (int i = 0; i < 2000; ++i) {
    ExpectRewrite(i % 2 == 0, RandomIp6(random), RandomPort(random), RandomIp6(random),
                  RandomPort(random), RandomIp6(random), RandomPort(random), RandomIp6(random),
                  RandomPort(random), static_cast<std::size_t>(random() % 200),
                  static_cast<std::uint8_t>(random()));
    if (::testing::Test::HasFailure()) {
      break;
    }
  }
}

// A connection's rewrites use the checksum deltas its entry keeps (folded, and complemented for
// the backend's direction): the same frames as RewriteIpv6's own sums, both ways.
TEST(RewriteIpv6, EntryDeltasBothWays) {
  std::mt19937_64 random(12);
  for (int i = 0; i < 2000 && !::testing::Test::HasFailure(); ++i) {
    const bool tcp = i % 2 == 0;
    const Ip6Bytes client = RandomIp6(random);
    const Ip6Bytes vip = RandomIp6(random);
    const Ip6Bytes local = RandomIp6(random);
    const Ip6Bytes backend = RandomIp6(random);
    const std::uint16_t cport = RandomPort(random);
    const std::uint16_t vport = RandomPort(random);
    const std::uint16_t lport = RandomPort(random);
    const std::uint16_t bport = RandomPort(random);
    const auto payload = static_cast<std::size_t>(random() % 64);
    const auto first = static_cast<std::uint8_t>(random());
    const ConnEntry6 e = i % 4 == 1 ? MakeDnatEntry(kIpProtoUdp, {AsIp6(client), cport},
                                                    {AsIp6(vip), vport}, {AsIp6(backend), bport})
                                    : MakeFnatEntry(tcp ? kIpProtoTcp : kIpProtoUdp,
                                                    {AsIp6(client), cport}, {AsIp6(vip), vport},
                                                    {AsIp6(local), lport}, {AsIp6(backend), bport});
    const bool is_tcp = e.proto() == kIpProtoTcp;
    const Ip6Bytes& seen = e.mode == NatMode::kDnat ? client : local;
    const std::uint16_t seen_port = e.mode == NatMode::kDnat ? cport : lport;

    Bytes in = Packet(is_tcp, client, cport, vip, vport, 64, payload, first);
    RewriteForConn(in, ParseIpv6(in, kEthHeaderLen), e, FlowDir::kFromClient);
    EXPECT_EQ(in, Packet(is_tcp, seen, seen_port, backend, bport, 63, payload, first)) << i;

    Bytes out = Packet(is_tcp, backend, bport, seen, seen_port, 64, payload, first);
    RewriteForConn(out, ParseIpv6(out, kEthHeaderLen), e, FlowDir::kFromBackend);
    EXPECT_EQ(out, Packet(is_tcp, vip, vport, client, cport, 63, payload, first)) << i;
  }
}

}  // namespace
}  // namespace fulcrum::nat
