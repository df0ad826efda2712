#include "nat/rewrite.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "nat/checksum.h"
#include "nat/conn_table.h"
#include "nat/packet.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using testing::Bytes;
using testing::CheckFrameChecksums;
using testing::Get16;
using testing::Ip4;
using testing::PacketBuilder;
using testing::RefChecksum;

constexpr Endpoint4 kClient{Ip4("198.18.0.2"), 40001};
constexpr Endpoint4 kVip{Ip4("198.18.100.1"), 80};
constexpr Endpoint4 kLocal{Ip4("198.18.1.2"), 20003};
constexpr Endpoint4 kBackend{Ip4("198.18.1.11"), 8080};

// ---------------------------------------------------------------------------------------------
// Checksums

TEST(ChecksumTest, Rfc1071Example) {
  // RFC 1071 section 3: these bytes sum to 0xddf2.
  const std::vector<std::uint8_t> data = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(ChecksumFold(ChecksumAdd(data)), 0xddf2);
  EXPECT_EQ(InternetChecksum(data), 0x220d);
}

TEST(ChecksumTest, MatchesReferenceOnRandomUnalignedData) {
  std::mt19937 rng(1071);
  std::vector<std::uint8_t> buffer(300);
  for (int iteration = 0; iteration < 5000; ++iteration) {
    for (auto& b : buffer) {
      b = static_cast<std::uint8_t>(rng());
    }
    const std::size_t offset = rng() % 8;
    const std::size_t len = rng() % 250;
    const std::span<const std::uint8_t> data(buffer.data() + offset, len);
    ASSERT_EQ(InternetChecksum(data), RefChecksum(data)) << "len " << len;
  }
  EXPECT_EQ(InternetChecksum({}), 0xffff);
}

TEST(ChecksumTest, Ipv4HeaderCheckAcceptsCorrectAndRefusesAnyOneBitError) {
  std::mt19937 rng(791);
  for (int iteration = 0; iteration < 2000; ++iteration) {
    std::vector<std::uint8_t> header(4 * (5 + rng() % 11));  // 20..60 bytes, options included
    for (auto& b : header) {
      b = static_cast<std::uint8_t>(rng() % 4 == 0 ? 0 : rng());
    }
    testing::Put16(header, 10, 0);
    testing::Put16(header, 10, RefChecksum(header));
    ASSERT_TRUE(Ipv4HeaderChecksumOk(header.data(), header.size())) << iteration;
    const std::size_t bit = rng() % (8 * header.size());
    header[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    ASSERT_FALSE(Ipv4HeaderChecksumOk(header.data(), header.size())) << iteration << " " << bit;
  }
}

TEST(ChecksumTest, Rfc1624Example) {
  // RFC 1624 section 4: eqn. 3 gives 0x0000 where eqn. 2 gives the -0 form 0xFFFF.
  EXPECT_EQ(ChecksumUpdate16(0xdd2f, 0x5555, 0x3285), 0x0000);
  // The same change to a UDP checksum must not produce "no checksum" (RFC 768).
  EXPECT_EQ(UdpChecksumUpdate16(0xdd2f, 0x5555, 0x3285), 0xffff);
  EXPECT_EQ(UdpChecksumUpdate16(0x0000, 0x5555, 0x3285), 0x0000);
  EXPECT_EQ(UdpChecksumUpdate32(0x0000, 0x01020304, 0x05060708), 0x0000);
}

TEST(ChecksumTest, IncrementalUpdateEqualsRecomputation) {
  std::mt19937 rng(1624);
  for (int iteration = 0; iteration < 20000; ++iteration) {
    std::vector<std::uint8_t> data(2 * (2 + rng() % 40));
    for (auto& b : data) {
      b = static_cast<std::uint8_t>(rng() % 4 == 0 ? 0 : rng());  // zeros make -0 cases likely
    }
    const std::uint16_t before = RefChecksum(data);
    const bool wide = rng() % 2 == 0;
    const std::size_t at = 2 * (rng() % (data.size() / 2 - 1));
    std::uint16_t after;
    if (wide) {
      const std::uint32_t old_value = testing::Get32(data, at);
      const std::uint32_t new_value = rng();
      testing::Put32(data, at, new_value);
      after = ChecksumUpdate32(before, old_value, new_value);
    } else {
      const std::uint16_t old_value = Get16(data, at);
      const auto new_value = static_cast<std::uint16_t>(rng());
      testing::Put16(data, at, new_value);
      after = ChecksumUpdate16(before, old_value, new_value);
    }
    ASSERT_EQ(after, RefChecksum(data)) << "iteration " << iteration;
  }
}

// ---------------------------------------------------------------------------------------------
// TCP/UDP rewrite

ParsedPacket MustParse(const Bytes& frame) {
  const ParsedPacket p = Parse(std::span<const std::uint8_t>(frame));
  EXPECT_TRUE(p.ok()) << DropReasonName(p.drop);
  return p;
}

// Rewrites `frame` as the worker would for `conn`, and checks the result from scratch.
void RewriteAndCheck(Bytes& frame, const ConnEntry& conn, FlowDir from, Endpoint4 want_src,
                     Endpoint4 want_dst) {
  const ParsedPacket before = MustParse(frame);
  const Bytes payload(frame.begin() + before.payload_offset,
                      frame.begin() + before.payload_offset + before.payload_len);
  const std::uint16_t udp_checksum_before =
      before.proto == kIpProtoUdp ? Get16(frame, before.l4_offset + 6) : 1;

  RewriteForConn(frame, before, conn, from);

  EXPECT_EQ(CheckFrameChecksums(frame), "");
  const ParsedPacket after = MustParse(frame);
  EXPECT_EQ(after.kind, before.kind);
  EXPECT_EQ(SrcOf(FlowKeyOf(after)), want_src);
  EXPECT_EQ(DstOf(FlowKeyOf(after)), want_dst);
  EXPECT_EQ(after.ttl, before.ttl - 1);
  EXPECT_EQ(after.tcp_flags, before.tcp_flags);
  EXPECT_EQ(Bytes(frame.begin() + after.payload_offset,
                  frame.begin() + after.payload_offset + after.payload_len),
            payload);
  if (udp_checksum_before == 0) {
    EXPECT_EQ(Get16(frame, after.l4_offset + 6), 0) << "UDP 'no checksum' must stay 0";
  }
}

TEST(RewriteTest, FnatBothDirections) {
  const ConnEntry conn = MakeFnatEntry(kIpProtoTcp, kClient, kVip, kLocal, kBackend);
  Bytes in = PacketBuilder()
                 .Ipv4(kClient.ip, kVip.ip)
                 .Tcp(kClient.port, kVip.port, kTcpSyn)
                 .Payload(11)
                 .Build();
  RewriteAndCheck(in, conn, FlowDir::kFromClient, kLocal, kBackend);

  Bytes out = PacketBuilder()
                  .Ipv4(kBackend.ip, kLocal.ip)
                  .Tcp(kBackend.port, kLocal.port, kTcpSyn | kTcpAck)
                  .Payload(11)
                  .Build();
  RewriteAndCheck(out, conn, FlowDir::kFromBackend, kVip, kClient);
}

// A connection's rewrites use the checksum deltas its entry keeps (folded, and complemented for
// the backend's direction): the same bytes as RewriteIpv4's own sums, both ways, TCP and UDP.
TEST(RewriteTest, EntryDeltasMatchTheComputedOnes) {
  std::mt19937 rng(5);
  auto endpoint = [&rng] {
    return Endpoint4{static_cast<std::uint32_t>(rng()), static_cast<std::uint16_t>(rng())};
  };
  for (int i = 0; i < 4000 && !::testing::Test::HasFailure(); ++i) {
    const std::uint8_t proto = i % 2 == 0 ? kIpProtoTcp : kIpProtoUdp;
    const Endpoint4 client = endpoint();
    const Endpoint4 vip = endpoint();
    const Endpoint4 local = endpoint();
    const Endpoint4 backend = endpoint();
    const ConnEntry e = i % 4 == 1 ? MakeDnatEntry(proto, client, vip, backend)
                                   : MakeFnatEntry(proto, client, vip, local, backend);
    auto build = [&](Endpoint4 src, Endpoint4 dst) {
      PacketBuilder b;
      b.Ipv4(src.ip, dst.ip).Ttl(static_cast<std::uint8_t>(2 + rng() % 250));
      if (proto == kIpProtoTcp) {
        b.Tcp(src.port, dst.port, kTcpAck);
      } else {
        b.Udp(src.port, dst.port);
      }
      return b.Payload(rng() % 40).Build();
    };
    for (const FlowDir from : {FlowDir::kFromClient, FlowDir::kFromBackend}) {
      const FlowKey& key = e.key(from);
      Bytes with_entry = build(SrcOf(key), DstOf(key));
      Bytes computed = with_entry;
      const ParsedPacket p = MustParse(with_entry);
      RewriteForConn(with_entry, p, e, from);
      const FlowKey& out =
          e.key(from == FlowDir::kFromClient ? FlowDir::kFromBackend : FlowDir::kFromClient);
      RewriteIpv4(computed, p, DstOf(out), SrcOf(out));
      EXPECT_EQ(with_entry, computed) << i;
      EXPECT_EQ(CheckFrameChecksums(with_entry), "") << i;
    }
  }
}

TEST(RewriteTest, DnatKeepsTheClientAddress) {
  const ConnEntry conn = MakeDnatEntry(kIpProtoUdp, kClient, kVip, kBackend);
  Bytes in =
      PacketBuilder().Ipv4(kClient.ip, kVip.ip).Udp(kClient.port, kVip.port).Payload(7).Build();
  RewriteAndCheck(in, conn, FlowDir::kFromClient, kClient, kBackend);

  Bytes out = PacketBuilder()
                  .Ipv4(kBackend.ip, kClient.ip)
                  .Udp(kBackend.port, kClient.port)
                  .Payload(7)
                  .Build();
  RewriteAndCheck(out, conn, FlowDir::kFromBackend, kVip, kClient);
}

TEST(RewriteTest, UdpWithoutChecksumStaysWithout) {
  const ConnEntry conn = MakeFnatEntry(kIpProtoUdp, kClient, kVip, kLocal, kBackend);
  Bytes frame = PacketBuilder()
                    .Ipv4(kClient.ip, kVip.ip)
                    .Udp(kClient.port, kVip.port)
                    .UdpNoChecksum()
                    .Payload(5)
                    .Build();
  RewriteAndCheck(frame, conn, FlowDir::kFromClient, kLocal, kBackend);
  EXPECT_EQ(Get16(frame, 14 + 20 + 6), 0);
}

TEST(RewriteTest, UdpChecksumThatComputesToZeroIsSentAsOnes) {
  const ConnEntry conn = MakeFnatEntry(kIpProtoUdp, kClient, kVip, kLocal, kBackend);
  auto build = [](std::uint16_t word) {
    return PacketBuilder()
        .Ipv4(kClient.ip, kVip.ip)
        .Udp(kClient.port, kVip.port)
        .Payload(Bytes{static_cast<std::uint8_t>(word >> 8), static_cast<std::uint8_t>(word)})
        .Build();
  };
  // With a zero payload word the rewritten checksum is ~S; a payload word equal to it makes
  // the rewritten sum 0xFFFF, i.e. a computed checksum of 0.
  Bytes probe = build(0);
  RewriteToBackend(probe, MustParse(probe), conn);
  const std::uint16_t complement = Get16(probe, 14 + 20 + 6);
  ASSERT_NE(complement, 0xffff);

  Bytes frame = build(complement);
  RewriteAndCheck(frame, conn, FlowDir::kFromClient, kLocal, kBackend);
  EXPECT_EQ(Get16(frame, 14 + 20 + 6), 0xffff);
}

TEST(RewriteTest, TtlTwoLeavesWithTtlOne) {
  const ConnEntry conn = MakeFnatEntry(kIpProtoTcp, kClient, kVip, kLocal, kBackend);
  Bytes frame = PacketBuilder()
                    .Ipv4(kClient.ip, kVip.ip)
                    .Ttl(2)
                    .Tcp(kClient.port, kVip.port, kTcpAck)
                    .Build();
  RewriteToBackend(frame, MustParse(frame), conn);
  EXPECT_EQ(frame[14 + 8], 1);
  EXPECT_EQ(CheckFrameChecksums(frame), "");
  // The next router would drop it; so would the LB, were it to come back.
  EXPECT_EQ(Parse(std::span<const std::uint8_t>(frame)).drop, DropReason::kTtlExceeded);
}

Endpoint4 RandomEndpoint(std::mt19937& rng) {
  // 198.18.0.0/15 only, as the test bed requires.
  return Endpoint4{Ip4("198.18.0.0") | static_cast<std::uint32_t>(rng() & 0x1ffff),
                   static_cast<std::uint16_t>(rng())};
}

Bytes RandomOptions(std::mt19937& rng) {
  Bytes options((rng() % 4) * 4 + (rng() % 2), 0x01);  // NOPs; odd counts get padded
  return options;
}

TEST(RewriteTest, RandomPacketsKeepEveryChecksumExact) {
  std::mt19937 rng(42);
  for (int iteration = 0; iteration < 3000; ++iteration) {
    const bool tcp = rng() % 2 == 0;
    const std::uint8_t proto = tcp ? kIpProtoTcp : kIpProtoUdp;
    const Endpoint4 client = RandomEndpoint(rng);
    const Endpoint4 vip = RandomEndpoint(rng);
    const Endpoint4 backend = RandomEndpoint(rng);
    const Endpoint4 local = RandomEndpoint(rng);
    const bool fnat = rng() % 2 == 0;
    const ConnEntry conn = fnat ? MakeFnatEntry(proto, client, vip, local, backend)
                                : MakeDnatEntry(proto, client, vip, backend);
    const auto from = static_cast<FlowDir>(rng() % 2);
    const FlowKey& in_key = conn.key(from);

    PacketBuilder builder;
    builder.Ipv4(in_key.src_ip, in_key.dst_ip)
        .Ttl(static_cast<std::uint8_t>(3 + rng() % 253))  // TTL 2 -> 1: see TtlTwo test
        .IpOptions(RandomOptions(rng))
        .Payload(rng() % 64, static_cast<std::uint8_t>(rng()));
    if (rng() % 4 == 0) {
      builder.Vlan(static_cast<std::uint16_t>(rng() & 0x0fff));
    }
    if (tcp) {
      builder.Tcp(in_key.src_port, in_key.dst_port, static_cast<std::uint8_t>(rng()))
          .TcpSeq(rng(), rng());
    } else {
      builder.Udp(in_key.src_port, in_key.dst_port);
      if (rng() % 4 == 0) {
        builder.UdpNoChecksum();
      }
    }
    Bytes frame = builder.Build();
    const FlowKey out_key =
        conn.key(from == FlowDir::kFromClient ? FlowDir::kFromBackend : FlowDir::kFromClient)
            .Reversed();
    SCOPED_TRACE("iteration " + std::to_string(iteration));
    RewriteAndCheck(frame, conn, from, SrcOf(out_key), DstOf(out_key));
    if (::testing::Test::HasFailure()) {
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// ICMP errors

// What the backend side sends: an error about the LB's packet to the backend.
Bytes ErrorFromBackend(const ConnEntry& conn, const Bytes& quoted, std::uint8_t type,
                       std::uint8_t code, std::uint16_t mtu) {
  // The error comes from the backend (or a router on its side) to the address the LB used.
  return PacketBuilder()
      .Ipv4(conn.from_backend.src_ip, conn.from_backend.dst_ip)
      .Ttl(63)
      .IcmpError(type, code, quoted, mtu)
      .Build();
}

Bytes PacketToBackend(const ConnEntry& conn, std::size_t payload) {
  const FlowKey to_backend = conn.from_backend.Reversed();
  PacketBuilder builder;
  builder.Ipv4(to_backend.src_ip, to_backend.dst_ip).Ttl(63).Payload(payload, 3);
  if (conn.proto() == kIpProtoTcp) {
    builder.Tcp(to_backend.src_port, to_backend.dst_port, kTcpAck);
  } else {
    builder.Udp(to_backend.src_port, to_backend.dst_port);
  }
  return builder.BuildIp();
}

void CheckTranslatedToClient(const Bytes& frame, const ParsedPacket& before,
                             const ConnEntry& conn) {
  EXPECT_EQ(CheckFrameChecksums(frame), "");
  const ParsedPacket after = MustParse(frame);
  ASSERT_EQ(after.kind, PacketKind::kIcmpError);
  EXPECT_EQ(after.src_ip, conn.vip().ip);
  EXPECT_EQ(after.dst_ip, conn.client().ip);
  EXPECT_EQ(after.ttl, before.ttl - 1);
  EXPECT_EQ(after.icmp_type, before.icmp_type);
  EXPECT_EQ(after.icmp_code, before.icmp_code);
  // The client sees an error about its own packet client:cport -> vip:vport.
  EXPECT_EQ(IcmpQuoteReplyKey(after), conn.from_client.Reversed());
  EXPECT_EQ(after.quote.src_ip, conn.client().ip);
  EXPECT_EQ(after.quote.src_port, conn.client().port);
  EXPECT_EQ(after.quote.dst_ip, conn.vip().ip);
  EXPECT_EQ(after.quote.dst_port, conn.vip().port);
}

TEST(IcmpTranslateTest, FragNeededFromBackendReachesClientWithItsMtu) {
  const ConnEntry conn = MakeFnatEntry(kIpProtoTcp, kClient, kVip, kLocal, kBackend);
  const Bytes to_backend = PacketToBackend(conn, 1460);
  Bytes frame = ErrorFromBackend(conn, Bytes(to_backend.begin(), to_backend.begin() + 28),
                                 kIcmpDestUnreachable, kIcmpCodeFragNeeded, 1400);
  const ParsedPacket p = MustParse(frame);
  ASSERT_EQ(p.kind, PacketKind::kIcmpError);
  ASSERT_EQ(IcmpQuoteReplyKey(p), conn.from_backend);

  TranslateIcmpErrorToClient(frame, p, conn);

  CheckTranslatedToClient(frame, p, conn);
  EXPECT_EQ(Get16(frame, p.l4_offset + 6), 1400) << "next-hop MTU (RFC 1191) must survive";
}

TEST(IcmpTranslateTest, DnatErrorFromBackendReachesClient) {
  const ConnEntry conn = MakeDnatEntry(kIpProtoUdp, kClient, kVip, kBackend);
  const Bytes to_backend = PacketToBackend(conn, 33);
  Bytes frame = ErrorFromBackend(conn, to_backend, kIcmpDestUnreachable, 3, 0);
  const ParsedPacket p = MustParse(frame);
  ASSERT_EQ(IcmpQuoteReplyKey(p), conn.from_backend);

  TranslateIcmpErrorToClient(frame, p, conn);

  CheckTranslatedToClient(frame, p, conn);  // the whole quoted UDP datagram checks out too
}

TEST(IcmpTranslateTest, ErrorFromClientSideReachesBackend) {
  const ConnEntry conn = MakeFnatEntry(kIpProtoTcp, kClient, kVip, kLocal, kBackend);
  // A router near the client: time exceeded for the LB's packet vip:vport -> client:cport.
  const Bytes to_client = PacketBuilder()
                              .Ipv4(kVip.ip, kClient.ip)
                              .Tcp(kVip.port, kClient.port, kTcpAck)
                              .Payload(40)
                              .BuildIp();
  Bytes frame = PacketBuilder()
                    .Ipv4(Ip4("198.18.0.254"), kVip.ip)
                    .IcmpError(kIcmpTimeExceeded, 0, to_client)
                    .Build();
  const ParsedPacket p = MustParse(frame);
  ASSERT_EQ(IcmpQuoteReplyKey(p), conn.from_client);

  TranslateIcmpErrorToBackend(frame, p, conn);

  EXPECT_EQ(CheckFrameChecksums(frame), "");
  const ParsedPacket after = MustParse(frame);
  EXPECT_EQ(after.src_ip, kLocal.ip);
  EXPECT_EQ(after.dst_ip, kBackend.ip);
  // The backend sees an error about its own packet backend:bport -> local:lport.
  EXPECT_EQ(IcmpQuoteReplyKey(after), conn.from_backend.Reversed());
}

TEST(IcmpTranslateTest, RandomQuotesKeepEveryChecksumExact) {
  std::mt19937 rng(792);
  for (int iteration = 0; iteration < 1000; ++iteration) {
    const std::uint8_t proto = rng() % 2 == 0 ? kIpProtoTcp : kIpProtoUdp;
    const bool fnat = rng() % 2 == 0;
    const Endpoint4 client = RandomEndpoint(rng);
    const Endpoint4 vip = RandomEndpoint(rng);
    const Endpoint4 backend = RandomEndpoint(rng);
    const ConnEntry conn = fnat ? MakeFnatEntry(proto, client, vip, RandomEndpoint(rng), backend)
                                : MakeDnatEntry(proto, client, vip, backend);
    const FlowKey to_backend = conn.from_backend.Reversed();
    PacketBuilder quoted_builder;
    quoted_builder.Ipv4(to_backend.src_ip, to_backend.dst_ip)
        .IpOptions(RandomOptions(rng))
        .Payload(rng() % 50, static_cast<std::uint8_t>(rng()));
    if (proto == kIpProtoTcp) {
      quoted_builder.Tcp(to_backend.src_port, to_backend.dst_port, kTcpAck);
    } else {
      quoted_builder.Udp(to_backend.src_port, to_backend.dst_port);
      if (rng() % 3 == 0) {
        quoted_builder.UdpNoChecksum();
      }
    }
    Bytes quoted = quoted_builder.BuildIp();
    const std::size_t header_len = (quoted[0] & 0x0f) * 4u;
    // Quote 8 L4 bytes, a bit more, or everything.
    const std::size_t keep = header_len + 8 + rng() % (quoted.size() - header_len - 7);
    quoted.resize(keep);
    Bytes frame =
        ErrorFromBackend(conn, quoted, rng() % 2 == 0 ? kIcmpDestUnreachable : kIcmpTimeExceeded,
                         static_cast<std::uint8_t>(rng() % 5), 1280);
    const ParsedPacket p = MustParse(frame);
    ASSERT_EQ(p.kind, PacketKind::kIcmpError);
    ASSERT_EQ(IcmpQuoteReplyKey(p), conn.from_backend);
    TranslateIcmpErrorToClient(frame, p, conn);
    SCOPED_TRACE("iteration " + std::to_string(iteration));
    CheckTranslatedToClient(frame, p, conn);
    if (::testing::Test::HasFailure()) {
      return;
    }
  }
}

}  // namespace
}  // namespace fulcrum::nat
