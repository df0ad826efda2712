// NAT64 translation against packets the independent builder makes from scratch for the other
// family: both ways, TCP and UDP, a VLAN tag, a UDP datagram without checksum, random packets.
#include "nat/nat64.h"

#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "nat/conn_table.h"

#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using fulcrum::testing::Bytes;
using fulcrum::testing::Ip4;
using fulcrum::testing::Ip6Bytes;
using fulcrum::testing::Mac;
using fulcrum::testing::PacketBuilder;
using fulcrum::testing::RandomIp6;
using fulcrum::testing::RandomPort;

constexpr Mac kDstMac = {0x02, 0, 0, 0, 0, 0x01};
constexpr Mac kSrcMac = {0x02, 0xc1, 0, 0, 0, 0x02};

Ip6 AsIp6(const Ip6Bytes& bytes) { return LoadIp6(bytes.data()); }
Ip6Bytes Text(const char* text) { return fulcrum::testing::Ip6(text); }

// The L4 part of a packet, the same in both families.
struct L4 {
  bool tcp = true;
  std::uint16_t sport = 0;
  std::uint16_t dport = 0;
  std::size_t payload = 0;
  std::uint8_t first = 0;
  bool udp_no_checksum = false;
};

PacketBuilder& WithL4(PacketBuilder& b, const L4& l4) {
  if (l4.tcp) {
    b.Tcp(l4.sport, l4.dport, kTcpAck | kTcpPsh).TcpSeq(1000, 2000);
  } else {
    b.Udp(l4.sport, l4.dport);
    if (l4.udp_no_checksum) {
      b.UdpNoChecksum();
    }
  }
  return b.Payload(l4.payload, l4.first);
}

Bytes V6(const Ip6Bytes& src, const Ip6Bytes& dst, std::uint8_t hop_limit, const L4& l4,
         std::optional<std::uint16_t> vlan = std::nullopt) {
  PacketBuilder b;
  b.Macs(kDstMac, kSrcMac).Ipv6(src, dst).Ttl(hop_limit);
  if (vlan) {
    b.Vlan(*vlan);
  }
  return WithL4(b, l4).Build();
}

// IPv4 as NAT64 writes it: DF set, identification 0.
Bytes V4(std::uint32_t src, std::uint32_t dst, std::uint8_t ttl, const L4& l4,
         std::optional<std::uint16_t> vlan = std::nullopt) {
  PacketBuilder b;
  b.Macs(kDstMac, kSrcMac).Ipv4(src, dst).Ttl(ttl).IpId(0).DontFragment();
  if (vlan) {
    b.Vlan(*vlan);
  }
  return WithL4(b, l4).Build();
}

// `delta`: a connection's L4 checksum delta; computed from the packet without one.
Bytes ToV4(Bytes frame, Endpoint4 src, Endpoint4 dst,
           std::optional<ChecksumDelta> delta = std::nullopt) {
  const std::size_t l3 = frame[12] == 0x81 ? 18 : 14;
  const ParsedPacket6 p = ParseIpv6(frame, l3);
  EXPECT_TRUE(p.ok()) << DropReasonName(p.drop);
  const Translated t =
      delta ? TranslateToIpv4(frame, p, src, dst, *delta) : TranslateToIpv4(frame, p, src, dst);
  EXPECT_LE(t.offset + t.length, frame.size());
  return Bytes(frame.begin() + static_cast<std::ptrdiff_t>(t.offset),
               frame.begin() + static_cast<std::ptrdiff_t>(t.offset + t.length));
}

Bytes ToV6(const Bytes& frame, const Endpoint6& src, const Endpoint6& dst,
           std::optional<ChecksumDelta> delta = std::nullopt) {
  const ParsedPacket p = Parse(frame);
  EXPECT_TRUE(p.ok()) << DropReasonName(p.drop);
  Bytes buffer(kNat64Growth, 0xee);
  for (std::uint8_t byte : frame) {
    buffer.push_back(byte);
  }
  const Translated t = delta ? TranslateToIpv6(buffer, kNat64Growth, p, src, dst, *delta)
                             : TranslateToIpv6(buffer, kNat64Growth, p, src, dst);
  EXPECT_LE(t.offset + t.length, buffer.size());
  return Bytes(buffer.begin() + static_cast<std::ptrdiff_t>(t.offset),
               buffer.begin() + static_cast<std::ptrdiff_t>(t.offset + t.length));
}

const Ip6Bytes kClient = Text("2001:db8::2");
const Ip6Bytes kVip = Text("2001:db8:100::10");
const std::uint32_t kLocal = Ip4("198.18.1.2");
const std::uint32_t kBackend = Ip4("198.18.1.11");

TEST(Nat64, AConnectionBothWays) {
  for (const bool tcp : {true, false}) {
    SCOPED_TRACE(tcp ? "tcp" : "udp");
    const L4 request{tcp, 40000, 80, 100, 0x41};
    EXPECT_EQ(ToV4(V6(kClient, kVip, 64, request), {kLocal, 1024}, {kBackend, 8080}),
              V4(kLocal, kBackend, 63, {tcp, 1024, 8080, 100, 0x41}));
    const L4 reply{tcp, 8080, 1024, 30, 0x61};
    EXPECT_EQ(ToV6(V4(kBackend, kLocal, 64, reply), {AsIp6(kVip), 80}, {AsIp6(kClient), 40000}),
              V6(kVip, kClient, 63, {tcp, 80, 40000, 30, 0x61}));
  }
}

TEST(Nat64, AVlanTagIsKept) {
  EXPECT_EQ(
      ToV4(V6(kClient, kVip, 64, {true, 40000, 80, 8, 1}, 100), {kLocal, 1024}, {kBackend, 8080}),
      V4(kLocal, kBackend, 63, {true, 1024, 8080, 8, 1}, 100));
  EXPECT_EQ(ToV6(V4(kBackend, kLocal, 64, {true, 8080, 1024, 8, 1}, 100), {AsIp6(kVip), 80},
                 {AsIp6(kClient), 40000}),
            V6(kVip, kClient, 63, {true, 80, 40000, 8, 1}, 100));
}

// IPv4 UDP may go without a checksum, IPv6 UDP may not: one is computed.
TEST(Nat64, AUdpDatagramWithoutChecksumGetsOne) {
  const Bytes out = ToV6(V4(kBackend, kLocal, 64, {false, 53, 1024, 20, 7, true}),
                         {AsIp6(kVip), 53}, {AsIp6(kClient), 40000});
  EXPECT_EQ(out, V6(kVip, kClient, 63, {false, 53, 40000, 20, 7}));
}

TEST(Nat64, TooLittleHeadroomWritesNothing) {
  Bytes frame = V4(kBackend, kLocal, 64, {true, 8080, 1024, 8, 1});
  const Bytes before = frame;
  const ParsedPacket p = Parse(frame);
  const Translated t = TranslateToIpv6(frame, 0, p, {AsIp6(kVip), 80}, {AsIp6(kClient), 40000});
  EXPECT_EQ(t.length, 0u);
  EXPECT_EQ(frame, before);
}

TEST(Nat64, RandomPacketsBothWays) {
  std::mt19937_64 random(5);
  for (int i = 0; i < 1000 && !::testing::Test::HasFailure(); ++i) {
    const bool tcp = i % 2 == 0;
    const std::size_t payload = static_cast<std::size_t>(random() % 300);
    const auto first = static_cast<std::uint8_t>(random());
    const Ip6Bytes a = RandomIp6(random);
    const Ip6Bytes b = RandomIp6(random);
    const auto c = static_cast<std::uint32_t>(random());
    const auto d = static_cast<std::uint32_t>(random());
    const std::uint16_t p1 = RandomPort(random), p2 = RandomPort(random), p3 = RandomPort(random),
                        p4 = RandomPort(random);
    EXPECT_EQ(ToV4(V6(a, b, 64, {tcp, p1, p2, payload, first}), {c, p3}, {d, p4}),
              V4(c, d, 63, {tcp, p3, p4, payload, first}));
    EXPECT_EQ(ToV6(V4(c, d, 64, {tcp, p1, p2, payload, first}), {AsIp6(a), p3}, {AsIp6(b), p4}),
              V6(a, b, 63, {tcp, p3, p4, payload, first}));
  }
}

// A NAT64 connection's translations use the L4 delta its entry keeps (computed over the
// IPv4-mapped backend side): the same frames as the deltas computed from each packet.
TEST(Nat64, EntryDeltasBothWays) {
  std::mt19937_64 random(6);
  for (int i = 0; i < 1000 && !::testing::Test::HasFailure(); ++i) {
    const bool tcp = i % 2 == 0;
    const std::size_t payload = static_cast<std::size_t>(random() % 100);
    const auto first = static_cast<std::uint8_t>(random());
    const Ip6Bytes client = RandomIp6(random);
    const Ip6Bytes vip = RandomIp6(random);
    const auto local = static_cast<std::uint32_t>(random());
    const auto backend = static_cast<std::uint32_t>(random());
    const std::uint16_t cport = RandomPort(random), vport = RandomPort(random),
                        lport = RandomPort(random), bport = RandomPort(random);
    const ConnEntry6 e =
        MakeFnatEntry(tcp ? kIpProtoTcp : kIpProtoUdp, {AsIp6(client), cport}, {AsIp6(vip), vport},
                      {MappedIp6(local), lport}, {MappedIp6(backend), bport});
    EXPECT_EQ(ToV4(V6(client, vip, 64, {tcp, cport, vport, payload, first}), {local, lport},
                   {backend, bport}, ChecksumDelta::Folded(e.deltas.l4)),
              V4(local, backend, 63, {tcp, lport, bport, payload, first}));
    EXPECT_EQ(ToV6(V4(backend, local, 64, {tcp, bport, lport, payload, first}), {AsIp6(vip), vport},
                   {AsIp6(client), cport}, ChecksumDelta::Inverse(e.deltas.l4)),
              V6(vip, client, 63, {tcp, vport, cport, payload, first}));
  }
}

}  // namespace
}  // namespace fulcrum::nat
