#include "nat/packet.h"

#include <gtest/gtest.h>

#include <cctype>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "nat/drop_reasons.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using testing::Bytes;
using testing::Ip4;
using testing::PacketBuilder;

constexpr std::uint32_t kClient = Ip4("198.18.0.2");
constexpr std::uint32_t kVip = Ip4("198.18.100.1");
constexpr std::uint32_t kBackend = Ip4("198.18.1.11");
constexpr std::uint32_t kLocal = Ip4("198.18.1.2");

ParsedPacket ParseBytes(const Bytes& frame, ParseOptions options = {}) {
  return Parse(std::span<const std::uint8_t>(frame), options);
}

TEST(PacketTest, ParsesTcpSegment) {
  const Bytes frame = PacketBuilder()
                          .Ipv4(kClient, kVip)
                          .Ttl(17)
                          .Tcp(40001, 80, kTcpSyn | kTcpAck)
                          .Payload(10)
                          .Build();
  const ParsedPacket p = ParseBytes(frame);
  ASSERT_EQ(p.kind, PacketKind::kTcp) << DropReasonName(p.drop);
  EXPECT_EQ(p.drop, DropReason::kNone);
  EXPECT_FALSE(p.has_vlan);
  EXPECT_EQ(p.ethertype, kEthTypeIpv4);
  EXPECT_EQ(p.l3_offset, 14);
  EXPECT_EQ(p.ip_header_len, 20);
  EXPECT_EQ(p.ip_total_len, 20 + 20 + 10);
  EXPECT_EQ(p.ttl, 17);
  EXPECT_EQ(p.proto, kIpProtoTcp);
  EXPECT_EQ(p.src_ip, kClient);
  EXPECT_EQ(p.dst_ip, kVip);
  EXPECT_EQ(p.l4_offset, 34);
  EXPECT_EQ(p.src_port, 40001);
  EXPECT_EQ(p.dst_port, 80);
  EXPECT_EQ(p.tcp_flags, kTcpSyn | kTcpAck);
  EXPECT_EQ(p.payload_offset, 54);
  EXPECT_EQ(p.payload_len, 10);
  EXPECT_EQ(FlowKeyOf(p), (FlowKey{kClient, kVip, 40001, 80, kIpProtoTcp}));
}

TEST(PacketTest, SkipsTcpOptionsAndIpOptions) {
  const Bytes frame = PacketBuilder()
                          .IpOptions({0x94, 0x04, 0x00, 0x00})  // router alert
                          .Tcp(1234, 443, kTcpSyn)
                          .TcpOptions({0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x04, 0x02})
                          .Payload(3)
                          .Build();
  const ParsedPacket p = ParseBytes(frame);
  ASSERT_EQ(p.kind, PacketKind::kTcp) << DropReasonName(p.drop);
  EXPECT_EQ(p.ip_header_len, 24);
  EXPECT_EQ(p.l4_offset, 14 + 24);
  EXPECT_EQ(p.payload_offset, 14 + 24 + 28);
  EXPECT_EQ(p.payload_len, 3);
  EXPECT_EQ(p.src_port, 1234);
  EXPECT_EQ(p.dst_port, 443);
}

TEST(PacketTest, ParsesUdpDatagramIgnoringEthernetPadding) {
  const Bytes frame =
      PacketBuilder().Ipv4(kBackend, kLocal).Udp(53, 20001).Payload(5).PadTo(60).Build();
  ASSERT_EQ(frame.size(), 60u);
  const ParsedPacket p = ParseBytes(frame);
  ASSERT_EQ(p.kind, PacketKind::kUdp) << DropReasonName(p.drop);
  EXPECT_EQ(p.ip_total_len, 20 + 8 + 5);
  EXPECT_EQ(p.payload_offset, 14 + 20 + 8);
  EXPECT_EQ(p.payload_len, 5);
  EXPECT_EQ(p.src_ip, kBackend);
  EXPECT_EQ(p.dst_ip, kLocal);
  EXPECT_EQ(p.src_port, 53);
  EXPECT_EQ(p.dst_port, 20001);
}

TEST(PacketTest, ParsesOneVlanTag) {
  const Bytes frame = PacketBuilder().Vlan(0x2064).Tcp(1000, 80, kTcpAck).Build();
  const ParsedPacket p = ParseBytes(frame);
  ASSERT_EQ(p.kind, PacketKind::kTcp) << DropReasonName(p.drop);
  EXPECT_TRUE(p.has_vlan);
  EXPECT_EQ(p.vlan_tci, 0x2064);
  EXPECT_EQ(p.ethertype, kEthTypeIpv4);
  EXPECT_EQ(p.l3_offset, 18);
  EXPECT_EQ(p.l4_offset, 38);
}

TEST(PacketTest, ParsesArp) {
  const Bytes frame =
      PacketBuilder().Arp(kArpRequest, {2, 0, 0, 0, 0, 9}, kClient, Ip4("198.18.0.1")).Build();
  const ParsedPacket p = ParseBytes(frame);
  ASSERT_EQ(p.kind, PacketKind::kArp) << DropReasonName(p.drop);
  EXPECT_EQ(p.ethertype, kEthTypeArp);
  EXPECT_EQ(p.arp_op, kArpRequest);
  EXPECT_EQ(p.src_ip, kClient);
  EXPECT_EQ(p.dst_ip, Ip4("198.18.0.1"));
}

TEST(PacketTest, ParsesIcmpEchoEvenWithTtlOne) {
  const Bytes frame = PacketBuilder()
                          .Ipv4(kClient, kVip)
                          .Ttl(1)
                          .IcmpEcho(kIcmpEchoRequest, 7, 1)
                          .Payload(56)
                          .Build();
  const ParsedPacket p = ParseBytes(frame);
  ASSERT_EQ(p.kind, PacketKind::kIcmpEcho) << DropReasonName(p.drop);
  EXPECT_EQ(p.icmp_type, kIcmpEchoRequest);
  EXPECT_EQ(p.icmp_code, 0);
  EXPECT_EQ(p.payload_len, 56);
}

TEST(PacketTest, ParsesIcmpErrorQuote) {
  // The backend says "fragmentation needed" about the LB's packet local:20001 -> backend:80.
  const Bytes quoted =
      PacketBuilder().Ipv4(kLocal, kBackend).Tcp(20001, 80, kTcpAck).Payload(100).BuildIp();
  const Bytes frame = PacketBuilder()
                          .Ipv4(kBackend, kLocal)
                          .IcmpError(kIcmpDestUnreachable, kIcmpCodeFragNeeded,
                                     Bytes(quoted.begin(), quoted.begin() + 28), 1400)
                          .Build();
  const ParsedPacket p = ParseBytes(frame);
  ASSERT_EQ(p.kind, PacketKind::kIcmpError) << DropReasonName(p.drop);
  EXPECT_EQ(p.icmp_type, kIcmpDestUnreachable);
  EXPECT_EQ(p.icmp_code, kIcmpCodeFragNeeded);
  EXPECT_EQ(p.quote.l3_offset, 14 + 20 + 8);
  EXPECT_EQ(p.quote.l4_offset, 14 + 20 + 8 + 20);
  EXPECT_EQ(p.quote.l4_len, 8);
  EXPECT_EQ(p.quote.proto, kIpProtoTcp);
  EXPECT_EQ(p.quote.src_ip, kLocal);
  EXPECT_EQ(p.quote.dst_ip, kBackend);
  EXPECT_EQ(p.quote.src_port, 20001);
  EXPECT_EQ(p.quote.dst_port, 80);
  EXPECT_EQ(IcmpQuoteReplyKey(p), (FlowKey{kBackend, kLocal, 80, 20001, kIpProtoTcp}));
}

TEST(PacketTest, ChecksumVerificationCanBeLeftToTheNic) {
  Bytes frame = PacketBuilder().Tcp(1000, 80, kTcpAck).Build();
  frame[14 + 10] ^= 0x01;
  EXPECT_EQ(ParseBytes(frame).drop, DropReason::kBadChecksum);
  EXPECT_EQ(ParseBytes(frame, ParseOptions{.verify_ipv4_checksum = false}).kind, PacketKind::kTcp);
}

// Sets a byte of the IPv4 header and fixes the header checksum, so that only the intended
// defect remains.
void SetIpByte(Bytes& frame, std::size_t at, std::uint8_t value) {
  frame[14 + at] = value;
  const std::size_t header_len = (frame[14] & 0x0f) * 4u;
  if (header_len < 20 || 14 + header_len > frame.size()) {
    return;
  }
  testing::Put16(frame, 14 + 10, 0);
  testing::Put16(frame, 14 + 10, testing::RefChecksum({frame.data() + 14, header_len}));
}

void SetIpTotalLen(Bytes& frame, std::uint16_t len) {
  SetIpByte(frame, 2, static_cast<std::uint8_t>(len >> 8));
  SetIpByte(frame, 3, static_cast<std::uint8_t>(len));
}

Bytes Tcp() { return PacketBuilder().Tcp(1000, 80, kTcpAck).Payload(4).Build(); }
Bytes Udp() { return PacketBuilder().Udp(1000, 53).Payload(4).Build(); }
Bytes QuotedTcp() {
  return PacketBuilder().Ipv4(kLocal, kBackend).Tcp(20001, 80, kTcpAck).BuildIp();
}

struct DropCase {
  std::string name;
  std::function<Bytes()> make;
  DropReason want;
};

class PacketDropTest : public ::testing::TestWithParam<DropCase> {};

TEST_P(PacketDropTest, DropsWithReason) {
  const Bytes frame = GetParam().make();
  const ParsedPacket p = ParseBytes(frame);
  EXPECT_EQ(p.kind, PacketKind::kDrop);
  EXPECT_EQ(DropReasonName(p.drop), DropReasonName(GetParam().want));
}

INSTANTIATE_TEST_SUITE_P(
    Hostile, PacketDropTest,
    ::testing::Values(
        DropCase{"empty", [] { return Bytes{}; }, DropReason::kTruncated},
        DropCase{"short_ethernet", [] { return Bytes(13, 0); }, DropReason::kTruncated},
        DropCase{"short_vlan",
                 [] {
                   Bytes f = PacketBuilder().Vlan(5).Build();
                   f.resize(17);
                   return f;
                 },
                 DropReason::kTruncated},
        DropCase{"stacked_vlan",
                 [] {
                   Bytes f = PacketBuilder().Vlan(5).Build();
                   f[16] = 0x81;
                   f[17] = 0x00;
                   return f;
                 },
                 DropReason::kUnsupportedEthertype},
        DropCase{"ipv6", [] { return PacketBuilder().Ethertype(0x86dd).Build(); },
                 DropReason::kUnsupportedEthertype},
        DropCase{"short_ip_header",
                 [] {
                   Bytes f = Tcp();
                   f.resize(14 + 19);
                   return f;
                 },
                 DropReason::kTruncated},
        DropCase{"ip_version_6",
                 [] {
                   Bytes f = Tcp();
                   SetIpByte(f, 0, 0x65);
                   return f;
                 },
                 DropReason::kBadHeader},
        DropCase{"ihl_4",
                 [] {
                   Bytes f = Tcp();
                   SetIpByte(f, 0, 0x44);
                   return f;
                 },
                 DropReason::kBadHeader},
        DropCase{"ihl_beyond_total_len",
                 [] {
                   Bytes f = Tcp();
                   SetIpByte(f, 0, 0x4f);  // 60-byte header in a 44-byte packet
                   return f;
                 },
                 DropReason::kBadHeader},
        DropCase{"ihl_beyond_frame",
                 [] {
                   Bytes f = Tcp();
                   f.resize(14 + 30);
                   SetIpByte(f, 0, 0x4f);
                   SetIpTotalLen(f, 60);
                   return f;
                 },
                 DropReason::kTruncated},
        DropCase{"total_len_below_ihl",
                 [] {
                   Bytes f = Tcp();
                   SetIpTotalLen(f, 19);
                   return f;
                 },
                 DropReason::kBadHeader},
        DropCase{"total_len_beyond_frame",
                 [] {
                   Bytes f = Tcp();
                   SetIpTotalLen(f, static_cast<std::uint16_t>(f.size() - 14 + 1));
                   return f;
                 },
                 DropReason::kTruncated},
        DropCase{"bad_ip_checksum",
                 [] {
                   Bytes f = Tcp();
                   f[14 + 11] ^= 0x40;
                   return f;
                 },
                 DropReason::kBadChecksum},
        DropCase{"more_fragments",
                 [] { return PacketBuilder().Fragment(true, 0).Tcp(1, 2, kTcpAck).Build(); },
                 DropReason::kFragment},
        DropCase{"fragment_offset",
                 [] { return PacketBuilder().Fragment(false, 185).Udp(1, 2).Build(); },
                 DropReason::kFragment},
        DropCase{"ttl_1", [] { return PacketBuilder().Ttl(1).Tcp(1, 2, kTcpSyn).Build(); },
                 DropReason::kTtlExceeded},
        DropCase{"ttl_0", [] { return PacketBuilder().Ttl(0).Udp(1, 2).Build(); },
                 DropReason::kTtlExceeded},
        DropCase{"gre", [] { return PacketBuilder().Protocol(47).Payload(8).Build(); },
                 DropReason::kUnsupportedProtocol},
        DropCase{"tcp_short",
                 [] {
                   Bytes f = Tcp();
                   SetIpTotalLen(f, 20 + 19);
                   return f;
                 },
                 DropReason::kTruncated},
        DropCase{"tcp_data_offset_4",
                 [] {
                   Bytes f = Tcp();
                   f[14 + 20 + 12] = 0x40;
                   return f;
                 },
                 DropReason::kBadHeader},
        DropCase{"tcp_data_offset_beyond_packet",
                 [] {
                   Bytes f = Tcp();
                   f[14 + 20 + 12] = 0x70;  // 28 bytes, the segment has 24
                   return f;
                 },
                 DropReason::kBadHeader},
        DropCase{"udp_short",
                 [] {
                   Bytes f = Udp();
                   SetIpTotalLen(f, 20 + 7);
                   return f;
                 },
                 DropReason::kTruncated},
        DropCase{"udp_length_below_header",
                 [] {
                   Bytes f = Udp();
                   testing::Put16(f, 14 + 20 + 4, 7);
                   return f;
                 },
                 DropReason::kBadHeader},
        DropCase{"udp_length_beyond_packet",
                 [] {
                   Bytes f = Udp();
                   testing::Put16(f, 14 + 20 + 4, 8 + 5);
                   return f;
                 },
                 DropReason::kBadHeader},
        DropCase{"icmp_short",
                 [] {
                   Bytes f = PacketBuilder().IcmpEcho(8, 1, 1).Build();
                   SetIpTotalLen(f, 20 + 7);
                   return f;
                 },
                 DropReason::kTruncated},
        DropCase{"icmp_timestamp",
                 [] {
                   Bytes f = PacketBuilder().IcmpEcho(13, 1, 1).Build();
                   return f;
                 },
                 DropReason::kUnsupportedIcmp},
        DropCase{"icmp_error_bad_checksum",
                 [] {
                   Bytes f = PacketBuilder().IcmpError(3, 1, QuotedTcp()).Build();
                   f[14 + 20 + 3] ^= 0x01;
                   return f;
                 },
                 DropReason::kBadChecksum},
        DropCase{"icmp_error_quote_too_short",
                 [] {
                   const Bytes q = QuotedTcp();
                   return PacketBuilder().IcmpError(3, 1, Bytes(q.begin(), q.begin() + 27)).Build();
                 },
                 DropReason::kTruncated},
        DropCase{"icmp_error_quote_not_ipv4",
                 [] {
                   Bytes q = QuotedTcp();
                   q[0] = 0x65;
                   return PacketBuilder().IcmpError(11, 0, q).Build();
                 },
                 DropReason::kBadHeader},
        DropCase{"icmp_error_quote_icmp",
                 [] {
                   const Bytes q = PacketBuilder().IcmpEcho(8, 1, 1).BuildIp();
                   return PacketBuilder().IcmpError(3, 3, q).Build();
                 },
                 DropReason::kUnsupportedProtocol},
        DropCase{"icmp_error_quote_later_fragment",
                 [] {
                   const Bytes q = PacketBuilder().Fragment(false, 100).Udp(1, 2).BuildIp();
                   return PacketBuilder().IcmpError(11, 1, q).Build();
                 },
                 DropReason::kFragment},
        DropCase{"icmp_error_ttl_1",
                 [] { return PacketBuilder().Ttl(1).IcmpError(3, 1, QuotedTcp()).Build(); },
                 DropReason::kTtlExceeded},
        DropCase{"arp_short",
                 [] {
                   Bytes f = PacketBuilder().Arp(1, {}, kClient, kVip).Build();
                   f.resize(14 + 27);
                   return f;
                 },
                 DropReason::kTruncated},
        DropCase{"arp_not_ethernet",
                 [] {
                   Bytes f = PacketBuilder().Arp(1, {}, kClient, kVip).Build();
                   f[15] = 6;
                   return f;
                 },
                 DropReason::kBadHeader}),
    [](const ::testing::TestParamInfo<DropCase>& param_info) { return param_info.param.name; });

TEST(PacketTest, AcceptsDontFragmentAndTtlTwo) {
  const Bytes frame = PacketBuilder().DontFragment().Ttl(2).Tcp(1, 2, kTcpSyn).Build();
  EXPECT_EQ(ParseBytes(frame).kind, PacketKind::kTcp);
}

// Every strict prefix of an unpadded frame is truncated somewhere: the parser must say so,
// and must not read past the prefix (the ASan build checks the latter).
TEST(PacketTest, EveryPrefixIsTruncated) {
  const Bytes quoted = QuotedTcp();
  const std::vector<Bytes> frames = {
      PacketBuilder().Vlan(3).IpOptions({1, 1, 1, 1}).Tcp(1, 2, kTcpAck).Payload(7).Build(),
      PacketBuilder().Udp(1, 2).Payload(9).Build(),
      PacketBuilder().IcmpEcho(8, 1, 2).Payload(3).Build(),
      PacketBuilder().IcmpError(3, 4, quoted, 1400).Build(),
      PacketBuilder().Arp(2, {}, kClient, kVip).Build(),
  };
  for (const Bytes& full : frames) {
    ASSERT_TRUE(ParseBytes(full).ok());
    for (std::size_t len = 0; len < full.size(); ++len) {
      const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
      const ParsedPacket p = ParseBytes(prefix);
      EXPECT_EQ(p.drop, DropReason::kTruncated) << "prefix " << len << " of " << full.size();
    }
  }
}

// Random mutations of valid frames: whatever the parser accepts must lie inside the frame.
TEST(PacketTest, MutatedFramesStayInBounds) {
  std::mt19937 rng(20240601);
  const Bytes quoted = QuotedTcp();
  const std::vector<Bytes> seeds = {
      PacketBuilder().Tcp(1, 2, kTcpAck).Payload(20).Build(),
      PacketBuilder().Vlan(9).Udp(1, 2).Payload(20).Build(),
      PacketBuilder().IcmpError(3, 4, quoted).Build(),
      PacketBuilder().IcmpEcho(8, 1, 1).Build(),
      PacketBuilder().Arp(1, {}, 1, 2).Build(),
  };
  int accepted = 0;
  for (int iteration = 0; iteration < 100000; ++iteration) {
    Bytes frame = seeds[rng() % seeds.size()];
    const int mutations = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < mutations; ++m) {
      frame[rng() % frame.size()] = static_cast<std::uint8_t>(rng());
    }
    frame.resize(rng() % (frame.size() + 1));
    const ParsedPacket p = ParseBytes(frame);
    if (!p.ok()) {
      EXPECT_NE(p.drop, DropReason::kNone);
      continue;
    }
    ++accepted;
    EXPECT_EQ(p.drop, DropReason::kNone);
    if (p.kind == PacketKind::kArp) {
      EXPECT_LE(p.l3_offset + kArpIpv4Len, frame.size());
      continue;
    }
    EXPECT_LE(p.l3_offset + p.ip_total_len, frame.size());
    EXPECT_LE(p.payload_offset + p.payload_len, p.l3_offset + p.ip_total_len);
    EXPECT_GE(p.ttl, p.kind == PacketKind::kIcmpEcho ? 0 : 2);
    if (p.kind == PacketKind::kIcmpError) {
      EXPECT_LE(p.quote.l4_offset + p.quote.l4_len, p.l3_offset + p.ip_total_len);
      EXPECT_GE(p.quote.l4_len, 8);
    }
  }
  // Mutations of payload, ports and addresses keep a frame valid: the accepted path is
  // exercised too, not only the drops.
  EXPECT_GT(accepted, 300);
}

TEST(DropReasonsTest, NamesAreUniqueStableSnakeCase) {
  std::set<std::string_view> names;
  for (const auto& info : kDropReasons) {
    EXPECT_TRUE(names.insert(info.name).second) << info.name;
    EXPECT_FALSE(info.description.empty()) << info.name;
    for (char c : info.name) {
      EXPECT_TRUE(std::islower(static_cast<unsigned char>(c)) || c == '_') << info.name;
    }
    EXPECT_EQ(DropReasonFromName(info.name), info.reason);
    EXPECT_EQ(DropReasonName(info.reason), info.name);
  }
  EXPECT_EQ(kDropReasonCount, kDropReasons.size() + 1);
  EXPECT_EQ(DropReasonName(DropReason::kNone), "none");
  EXPECT_FALSE(DropReasonFromName("none").has_value());
  EXPECT_FALSE(DropReasonFromName("table_full_fallbacks").has_value());
  for (std::string_view required :
       {"no_service", "no_backend", "port_exhausted", "not_syn_no_conn", "ttl_exceeded", "fragment",
        "bad_checksum", "truncated", "bad_header", "unsupported_protocol", "arp_unresolved",
        "tx_full", "handoff_ring_full", "icmp_no_conn"}) {
    EXPECT_TRUE(DropReasonFromName(required).has_value()) << required;
  }
}

}  // namespace
}  // namespace fulcrum::nat
