// ParseIpv6 against frames built byte by byte (tests/support/packet_builder.h), well-formed and
// hostile. Every frame is parsed from a heap buffer of exactly its size, so that a read past
// its end is a heap overflow the sanitizers report.
#include "nat/packet6.h"

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "nat/packet.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using fulcrum::testing::Bytes;
using fulcrum::testing::Ip6Bytes;
using fulcrum::testing::PacketBuilder;

const Ip6Bytes kClient = fulcrum::testing::Ip6("2001:db8::2");
const Ip6Bytes kVip = fulcrum::testing::Ip6("2001:db8:100::10");
constexpr std::size_t kL3 = 14;

// Parses `frame` from an exactly sized heap copy.
ParsedPacket6 ParseExact(const Bytes& frame) {
  auto copy = std::make_unique<std::uint8_t[]>(frame.size());
  if (!frame.empty()) {
    std::memcpy(copy.get(), frame.data(), frame.size());
  }
  return ParseIpv6({copy.get(), frame.size()}, kL3);
}

Ip6 AsIp6(const Ip6Bytes& bytes) { return LoadIp6(bytes.data()); }

PacketBuilder Tcp6(std::uint8_t flags = kTcpSyn) {
  PacketBuilder b;
  b.Ipv6(kClient, kVip).Tcp(40000, 80, flags);
  return b;
}

PacketBuilder Udp6() {
  PacketBuilder b;
  b.Ipv6(kClient, kVip).Udp(40000, 53).Payload(12, 0x61);
  return b;
}

// An options header body (after the Next Header byte): length byte, then `options` padded with
// PadN to a multiple of 8 bytes in all.
Bytes OptionsHeader(Bytes options) {
  std::size_t total = 2 + options.size();
  const std::size_t padded = (total + 7) / 8 * 8;
  if (padded - total == 1) {
    options.push_back(0);  // Pad1
  } else if (padded > total) {
    options.push_back(1);  // PadN
    options.push_back(static_cast<std::uint8_t>(padded - total - 2));
    options.resize(options.size() + (padded - total - 2), 0);
  }
  // Appended a byte at a time: GCC 12 misreads a range insert as an overflow (-Warray-bounds).
  Bytes rest = {static_cast<std::uint8_t>(padded / 8 - 1)};
  for (std::uint8_t byte : options) {
    rest.push_back(byte);
  }
  return rest;
}

// A routing header body with `segments_left` (type 4, one address).
Bytes RoutingHeader(std::uint8_t segments_left) {
  Bytes rest = {2, 4, segments_left, 0, 0, 0, 0};
  for (std::uint8_t byte : kVip) {
    rest.push_back(byte);
  }
  return rest;
}

// A fragment header body: offset in 8-byte units, more-fragments flag.
Bytes FragmentHeader(std::uint16_t offset, bool more) {
  const auto field = static_cast<std::uint16_t>(offset << 3 | (more ? 1 : 0));
  return {0, static_cast<std::uint8_t>(field >> 8), static_cast<std::uint8_t>(field), 0, 0, 0, 1};
}

TEST(ParseIpv6, TcpAndUdp) {
  ParsedPacket6 p = ParseExact(Tcp6().TcpSeq(7, 0).Payload(5).Build());
  ASSERT_EQ(p.kind, PacketKind::kTcp) << DropReasonName(p.drop);
  EXPECT_EQ(p.src_ip, AsIp6(kClient));
  EXPECT_EQ(p.dst_ip, AsIp6(kVip));
  EXPECT_EQ(p.src_port, 40000);
  EXPECT_EQ(p.dst_port, 80);
  EXPECT_EQ(p.tcp_flags, kTcpSyn);
  EXPECT_EQ(p.hop_limit, 64);
  EXPECT_EQ(p.proto, kIpProtoTcp);
  EXPECT_EQ(p.ext_headers, 0);
  EXPECT_EQ(p.l4_offset, kL3 + 40);
  EXPECT_EQ(p.payload_offset, kL3 + 40 + 20);
  EXPECT_EQ(p.payload_len, 5);
  EXPECT_EQ(p.payload_end, kL3 + 40 + 25);

  p = ParseExact(Udp6().Build());
  ASSERT_EQ(p.kind, PacketKind::kUdp) << DropReasonName(p.drop);
  EXPECT_EQ(p.src_port, 40000);
  EXPECT_EQ(p.dst_port, 53);
  EXPECT_EQ(p.payload_len, 12);
}

TEST(ParseIpv6, WalksTheExtensionHeadersItMaySkip) {
  const Bytes router_alert = {5, 2, 0, 0};  // type 5: skip if unrecognised (high bits 00)
  const ParsedPacket6 p = ParseExact(Tcp6()
                                         .Extension(kIpProtoHopByHop, OptionsHeader(router_alert))
                                         .Extension(kIpProtoDestOptions, OptionsHeader({}))
                                         .Extension(kIpProtoRouting, RoutingHeader(0))
                                         .Build());
  ASSERT_EQ(p.kind, PacketKind::kTcp) << DropReasonName(p.drop);
  EXPECT_EQ(p.ext_headers, 3);
  EXPECT_EQ(p.l4_offset, kL3 + 40 + 8 + 8 + 24);
  EXPECT_EQ(p.dst_port, 80);
}

TEST(ParseIpv6, EightExtensionHeadersAreTheMost) {
  PacketBuilder eight = Tcp6();
  for (int i = 0; i < 8; ++i) {
    eight.Extension(kIpProtoDestOptions, OptionsHeader({}));
  }
  EXPECT_EQ(ParseExact(eight.Build()).kind, PacketKind::kTcp);
  eight.Extension(kIpProtoDestOptions, OptionsHeader({}));
  const ParsedPacket6 nine = ParseExact(eight.Build());
  EXPECT_EQ(nine.drop, DropReason::kBadHeader);
}

TEST(ParseIpv6, Icmpv6) {
  PacketBuilder echo;
  echo.Ipv6(kClient, kVip).Icmpv6(kIcmpv6EchoRequest, 0, 0x00070001).Payload(16);
  ParsedPacket6 p = ParseExact(echo.Build());
  ASSERT_EQ(p.kind, PacketKind::kIcmpEcho) << DropReasonName(p.drop);
  EXPECT_EQ(p.icmp_type, kIcmpv6EchoRequest);
  EXPECT_EQ(p.payload_len, 16);

  // A ping with hop limit 1 is answered, not forwarded: not ttl_exceeded.
  EXPECT_EQ(ParseExact(echo.Ttl(1).Build()).kind, PacketKind::kIcmpEcho);

  PacketBuilder solicit;
  solicit.Ipv6(kClient, kVip)
      .Ttl(255)
      .Icmpv6(kIcmpv6NeighborSolicitation, 0)
      .Payload(Bytes(kVip.begin(), kVip.end()));
  EXPECT_EQ(ParseExact(solicit.Build()).kind, PacketKind::kNeighbor);
  // From off the link (a router decremented it): refused, RFC 4861 7.1.1.
  EXPECT_EQ(ParseExact(solicit.Ttl(254).Build()).drop, DropReason::kBadHeader);
}

// What a backend's router says about the LB's packet to a client: Packet Too Big, quoting it.
TEST(ParseIpv6, AnIcmpv6ErrorQuotesItsPacket) {
  const Bytes quoted = PacketBuilder().Ipv6(kVip, kClient).Tcp(80, 40000, kTcpAck).BuildIp6();
  PacketBuilder error;
  error.Ipv6(fulcrum::testing::Ip6("2001:db8::fe"), kVip).Icmpv6(kIcmpv6PacketTooBig, 0, 1280);
  ParsedPacket6 p = ParseExact(error.Payload(quoted).Build());
  ASSERT_EQ(p.kind, PacketKind::kIcmpError) << DropReasonName(p.drop);
  EXPECT_EQ(p.icmp_type, kIcmpv6PacketTooBig);
  EXPECT_EQ(p.quote.src_ip, AsIp6(kVip));
  EXPECT_EQ(p.quote.dst_ip, AsIp6(kClient));
  EXPECT_EQ(p.quote.proto, kIpProtoTcp);
  EXPECT_EQ(p.quote.src_port, 80);
  EXPECT_EQ(p.quote.dst_port, 40000);
  EXPECT_EQ(p.quote.l3_offset, kL3 + 40 + 8);
  EXPECT_EQ(p.quote.l4_offset, kL3 + 40 + 8 + 40);
  EXPECT_EQ(p.quote.l4_len, 20);

  // Cut to the ports: still matched.
  const Bytes cut(quoted.begin(), quoted.begin() + 48);
  p = ParseExact(error.Payload(cut).Build());
  ASSERT_EQ(p.kind, PacketKind::kIcmpError) << DropReasonName(p.drop);
  EXPECT_EQ(p.quote.l4_len, 8);

  // A first fragment quoted keeps its ports.
  const Bytes first = PacketBuilder()
                          .Ipv6(kVip, kClient)
                          .Extension(kIpProtoFragment, FragmentHeader(0, true))
                          .Tcp(80, 40000, kTcpAck)
                          .BuildIp6();
  p = ParseExact(error.Payload(first).Build());
  ASSERT_EQ(p.kind, PacketKind::kIcmpError) << DropReasonName(p.drop);
  EXPECT_EQ(p.quote.dst_port, 40000);
}

struct HostileRow {
  std::string name;
  Bytes frame;
  DropReason reason;
};

std::vector<HostileRow> HostileRows() {
  const Bytes valid = Tcp6().Build();
  Bytes cut_header(valid.begin(), valid.begin() + kL3 + 30);
  Bytes not_six = valid;
  not_six[kL3] = 0x45;
  Bytes tcp_cut = Tcp6().Build();
  tcp_cut.resize(kL3 + 40 + 12);
  Bytes bad_offset = Tcp6().Build();
  bad_offset[kL3 + 40 + 12] = 0x30;  // data offset 12 bytes
  Bytes udp_zero = Udp6().Build();
  udp_zero[kL3 + 40 + 6] = 0;
  udp_zero[kL3 + 40 + 7] = 0;

  const Bytes quoted = PacketBuilder().Ipv6(kVip, kClient).Tcp(80, 40000, kTcpAck).BuildIp6();
  auto error_quoting = [](Bytes quote) {
    PacketBuilder e;
    e.Ipv6(fulcrum::testing::Ip6("2001:db8::fe"), kVip).Icmpv6(kIcmpv6DestUnreachable, 4);
    return e.Payload(std::move(quote)).Build();
  };
  Bytes bad_checksum = error_quoting(quoted);
  bad_checksum[kL3 + 40 + 2] ^= 0x01;
  Bytes quote_v4 = quoted;
  quote_v4[0] = 0x45;
  const Bytes quote_short(quoted.begin(), quoted.begin() + 30);
  const Bytes quote_no_ports(quoted.begin(), quoted.begin() + 44);
  const Bytes quote_icmp =
      PacketBuilder().Ipv6(kVip, kClient).Icmpv6(kIcmpv6EchoReply, 0).BuildIp6();
  const Bytes quote_later_fragment = PacketBuilder()
                                         .Ipv6(kVip, kClient)
                                         .Extension(kIpProtoFragment, FragmentHeader(185, false))
                                         .Tcp(80, 40000, kTcpAck)
                                         .BuildIp6();
  Bytes quote_looping = PacketBuilder()
                            .Ipv6(kVip, kClient)
                            .Extension(kIpProtoDestOptions, OptionsHeader({}))
                            .Tcp(80, 40000, kTcpAck)
                            .BuildIp6();
  quote_looping[41] = 255;  // its options header claims 2048 bytes

  PacketBuilder ten;
  ten.Ipv6(kClient, kVip).Tcp(40000, 80, kTcpSyn);
  for (int i = 0; i < 10; ++i) {
    ten.Extension(kIpProtoDestOptions, OptionsHeader({}));
  }
  Bytes long_length = Tcp6().Extension(kIpProtoDestOptions, OptionsHeader({})).Build();
  long_length[kL3 + 40 + 1] = 255;  // (255 + 1) * 8 bytes, far past the packet

  return {
      {"cut inside the fixed header", cut_header, DropReason::kTruncated},
      {"version 4 under the IPv6 ethertype", not_six, DropReason::kBadHeader},
      {"payload length 0: a jumbogram", Tcp6().Ipv6PayloadLength(0).Build(),
       DropReason::kBadHeader},
      {"payload length past the frame", Tcp6().Ipv6PayloadLength(400).Build(),
       DropReason::kTruncated},
      {"a Jumbo Payload option",
       Tcp6().Extension(kIpProtoHopByHop, OptionsHeader({0xc2, 4, 0, 1, 0, 0})).Build(),
       DropReason::kBadHeader},
      {"an option that says discard if unrecognised",
       Tcp6().Extension(kIpProtoDestOptions, OptionsHeader({0x9e, 2, 0, 0})).Build(),
       DropReason::kBadHeader},
      {"an option longer than its header",
       Tcp6().Extension(kIpProtoDestOptions, Bytes{0, 1, 30, 0, 0, 0, 0}).Build(),
       DropReason::kBadHeader},
      {"Hop-by-Hop after another header",
       Tcp6()
           .Extension(kIpProtoDestOptions, OptionsHeader({}))
           .Extension(kIpProtoHopByHop, OptionsHeader({}))
           .Build(),
       DropReason::kBadHeader},
      {"a header whose length runs past the packet", long_length, DropReason::kBadHeader},
      {"a header cut by the payload length",
       Tcp6().Extension(kIpProtoDestOptions, OptionsHeader({})).Ipv6PayloadLength(4).Build(),
       DropReason::kBadHeader},
      {"ten extension headers", ten.Build(), DropReason::kBadHeader},
      {"a routing header with segments left",
       Tcp6().Extension(kIpProtoRouting, RoutingHeader(1)).Build(), DropReason::kBadHeader},
      {"a fragment header", Tcp6().Extension(kIpProtoFragment, FragmentHeader(0, true)).Build(),
       DropReason::kFragment},
      {"an atomic fragment", Tcp6().Extension(kIpProtoFragment, FragmentHeader(0, false)).Build(),
       DropReason::kFragment},
      {"ESP", PacketBuilder().Ipv6(kClient, kVip).Protocol(kIpProtoEsp).Payload(24).Build(),
       DropReason::kUnsupportedProtocol},
      {"AH", PacketBuilder().Ipv6(kClient, kVip).Protocol(kIpProtoAh).Payload(24).Build(),
       DropReason::kUnsupportedProtocol},
      {"No Next Header",
       PacketBuilder().Ipv6(kClient, kVip).Protocol(kIpProtoNoNext).Payload(8).Build(),
       DropReason::kUnsupportedProtocol},
      {"an unknown next header after a known one",
       PacketBuilder()
           .Ipv6(kClient, kVip)
           .Extension(kIpProtoDestOptions, OptionsHeader({}))
           .Protocol(253)
           .Payload(8)
           .Build(),
       DropReason::kUnsupportedProtocol},
      {"TCP cut short", tcp_cut, DropReason::kTruncated},
      {"TCP data offset past the segment", bad_offset, DropReason::kBadHeader},
      {"UDP without a checksum", udp_zero, DropReason::kBadChecksum},
      {"UDP longer than its packet", Udp6().Ipv6PayloadLength(12).Build(), DropReason::kBadHeader},
      {"hop limit 1 on TCP", Tcp6().Ttl(1).Build(), DropReason::kTtlExceeded},
      {"an ICMPv6 error with a bad checksum", bad_checksum, DropReason::kBadChecksum},
      {"an error quoting an IPv4 header", error_quoting(quote_v4), DropReason::kBadHeader},
      {"an error quoting 30 bytes", error_quoting(quote_short), DropReason::kTruncated},
      {"an error quoting no ports", error_quoting(quote_no_ports), DropReason::kTruncated},
      {"an error quoting ICMPv6", error_quoting(quote_icmp), DropReason::kUnsupportedProtocol},
      {"an error quoting a later fragment", error_quoting(quote_later_fragment),
       DropReason::kFragment},
      {"an error quoting a header that claims 2 KB", error_quoting(quote_looping),
       DropReason::kTruncated},
      {"a router advertisement",
       PacketBuilder().Ipv6(kClient, kVip).Ttl(255).Icmpv6(134, 0).Payload(8).Build(),
       DropReason::kUnsupportedIcmp},
      {"an ICMPv6 type nobody defined", PacketBuilder().Ipv6(kClient, kVip).Icmpv6(200, 0).Build(),
       DropReason::kUnsupportedIcmp},
  };
}

TEST(ParseIpv6, HostileFramesAreCountedDrops) {
  for (const HostileRow& row : HostileRows()) {
    const ParsedPacket6 p = ParseExact(row.frame);
    EXPECT_EQ(p.kind, PacketKind::kDrop) << row.name;
    EXPECT_EQ(DropReasonName(p.drop), DropReasonName(row.reason)) << row.name;
  }
}

// Every prefix of a frame with every kind of header, and random corruptions of it: never a read
// past the frame (the sanitizers watch), always a kind or a drop reason.
TEST(ParseIpv6, PrefixesAndCorruptionsNeverReadPastTheFrame) {
  const Bytes quoted = PacketBuilder()
                           .Ipv6(kVip, kClient)
                           .Extension(kIpProtoDestOptions, OptionsHeader({}))
                           .Tcp(80, 40000, kTcpAck)
                           .BuildIp6();
  std::vector<Bytes> seeds = {
      Tcp6()
          .Extension(kIpProtoHopByHop, OptionsHeader({5, 2, 0, 0}))
          .Extension(kIpProtoRouting, RoutingHeader(0))
          .Extension(kIpProtoDestOptions, OptionsHeader({}))
          .Payload(10)
          .Build(),
      PacketBuilder()
          .Ipv6(fulcrum::testing::Ip6("2001:db8::fe"), kVip)
          .Icmpv6(kIcmpv6TimeExceeded, 0)
          .Payload(quoted)
          .Build(),
  };
  std::size_t parsed = 0;
  for (const Bytes& seed : seeds) {
    ASSERT_TRUE(ParseExact(seed).ok()) << DropReasonName(ParseExact(seed).drop);
    for (std::size_t n = 0; n < seed.size(); ++n) {
      const ParsedPacket6 p = ParseExact(Bytes(seed.begin(), seed.begin() + n));
      EXPECT_FALSE(p.ok()) << "a prefix of " << n << " bytes parsed";
      ++parsed;
    }
    std::mt19937 random(7);
    for (int i = 0; i < 20000; ++i) {
      Bytes frame = seed;
      for (int flips = 1 + static_cast<int>(random() % 4); flips > 0; --flips) {
        const std::size_t at = kL3 + random() % (frame.size() - kL3);
        frame[at] = static_cast<std::uint8_t>(random());
      }
      const ParsedPacket6 p = ParseExact(frame);
      if (p.ok()) {
        EXPECT_LE(p.l4_offset, frame.size());
        EXPECT_LE(p.payload_end, frame.size());
      } else {
        EXPECT_NE(p.drop, DropReason::kNone);
      }
      ++parsed;
    }
  }
  EXPECT_GT(parsed, 40000u);
}

}  // namespace
}  // namespace fulcrum::nat
