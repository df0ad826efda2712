#include "nat/tcp_splice.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "nat/packet.h"
#include "nat/packet6.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using testing::Bytes;
using testing::CheckIpv4Checksums;
using testing::CheckIpv6Checksums;
using testing::Get16;
using testing::Get32;
using testing::Ip4;
using testing::Ip6;
using testing::PacketBuilder;

constexpr std::size_t kL3 = 14;
constexpr std::size_t kL4 = kL3 + 20;

// NOP NOP SACK with `edges` (pairs), then padding to a 4-byte multiple.
Bytes SackOption(const std::vector<std::uint32_t>& edges) {
  Bytes o = {1, 1, 5, static_cast<std::uint8_t>(2 + 4 * edges.size())};
  for (std::uint32_t e : edges) {
    for (int s = 24; s >= 0; s -= 8) {
      o.push_back(static_cast<std::uint8_t>(e >> s));
    }
  }
  return o;
}

Bytes Segment(std::uint8_t flags, std::uint32_t seq, std::uint32_t ack, Bytes options = {},
              std::size_t payload = 0) {
  return PacketBuilder()
      .Ipv4(Ip4("198.18.0.2"), Ip4("198.18.100.1"))
      .Tcp(40001, 80, flags)
      .TcpSeq(seq, ack)
      .TcpOptions(std::move(options))
      .Payload(payload, 7)
      .Build();
}

std::uint32_t SeqOf(const Bytes& f, std::size_t l4 = kL4) { return Get32(f, l4 + 4); }
std::uint32_t AckOf(const Bytes& f, std::size_t l4 = kL4) { return Get32(f, l4 + 8); }
std::span<const std::uint8_t> Ip(const Bytes& f) { return {f.data() + kL3, f.size() - kL3}; }

// ---- Sequence arithmetic.

TEST(SeqShiftTest, ComparesModulo2To32) {
  EXPECT_TRUE(SeqBefore(1, 2));
  EXPECT_FALSE(SeqBefore(2, 2));
  EXPECT_TRUE(SeqBefore(0xfffffff0u, 0x10u));  // across the wrap
  EXPECT_FALSE(SeqBefore(0x10u, 0xfffffff0u));
}

TEST(SeqShiftTest, MapsBothNumberingsAcrossTheWrap) {
  // The client's ISN is 0xffffffef: its first byte 0xfffffff0; a 28-byte header inserted.
  const SeqShift s{.client_start = 0xfffffff0u, .to_backend = 28, .to_client = 0};
  struct Case {
    std::uint32_t in;
    std::uint32_t seq_to_backend;
    std::uint32_t ack_to_client;
  };
  const Case cases[] = {
      {0xffffffefu, 0xffffffefu, 0xffffffefu},  // the SYN: before the start, unchanged
      {0xfffffff0u, 0x0000000cu, 0xfffffff0u},  // the first byte; an ack of no header byte
      {0x00000005u, 0x00000021u, 0xfffffff0u},  // an ack inside the header: the start
      {0x0000000bu, 0x00000027u, 0xfffffff0u},  // the header's last byte acked
      {0x0000000cu, 0x00000028u, 0xfffffff0u},  // the whole header acked, no client byte
      {0x0000000du, 0x00000029u, 0xfffffff1u},  // one client byte acked
      {0x7fff0000u, 0x7fff001cu, 0x7ffeffe4u},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(s.ClientSeqToBackend(c.in), c.seq_to_backend) << std::hex << c.in;
    EXPECT_EQ(s.BackendAckToClient(c.in), c.ack_to_client) << std::hex << c.in;
  }
  // The backend's numbering, shifted for a SYN proxy.
  const SeqShift p{.client_start = 100, .to_backend = 0, .to_client = 0x80000000u};
  EXPECT_EQ(p.BackendSeqToClient(0x90000000u), 0x10000000u);
  EXPECT_EQ(p.ClientAckToBackend(0x10000000u), 0x90000000u);
}

TEST(SeqShiftTest, EveryClientByteKeepsItsPlaceThroughBothMappings) {
  // Property: a backend acknowledgement of client byte k (shifted) maps back to k, for any
  // start and header length, wrap-around included.
  std::mt19937_64 random(793);
  for (int i = 0; i < 100000; ++i) {
    const SeqShift s{.client_start = static_cast<std::uint32_t>(random()),
                     .to_backend = static_cast<std::uint32_t>(random() % 108),
                     .to_client = 0};
    const std::uint32_t k = s.client_start + static_cast<std::uint32_t>(random() % (1u << 30));
    ASSERT_EQ(s.BackendAckToClient(s.ClientSeqToBackend(k)), k) << i;
  }
}

// ---- Shifting segments.

TEST(ShiftSegmentTest, ClientSegmentMovesSeqAndBackendAcksAndSackEdgesBack) {
  const SeqShift s{.client_start = 0xfffffff0u, .to_backend = 28, .to_client = 0};
  Bytes f = Segment(kTcpAck | kTcpPsh, 0xfffffff8u, 5000, {}, 100);
  ShiftSegment(f.data() + kL4, 20, s, FlowDir::kFromClient);
  EXPECT_EQ(SeqOf(f), 0x00000014u);
  EXPECT_EQ(AckOf(f), 5000u);
  EXPECT_EQ(CheckIpv4Checksums(Ip(f)), "");

  // The backend acknowledges up to client byte 0x10 (shifted: 0x2c) and SACKs two blocks.
  Bytes b = Segment(kTcpAck, 5000, 0x0000002cu, SackOption({0x40, 0x80, 0x0a, 0x0b}));
  ShiftSegment(b.data() + kL4, 20 + 20, s, FlowDir::kFromBackend);
  EXPECT_EQ(AckOf(b), 0x00000010u);
  EXPECT_EQ(Get32(b, kL4 + 24), 0x24u);        // 0x40 - 28
  EXPECT_EQ(Get32(b, kL4 + 28), 0x64u);        // 0x80 - 28
  EXPECT_EQ(Get32(b, kL4 + 32), 0xfffffff0u);  // inside the header: the start
  EXPECT_EQ(Get32(b, kL4 + 36), 0xfffffff0u);
  EXPECT_EQ(SeqOf(b), 5000u);
  EXPECT_EQ(CheckIpv4Checksums(Ip(b)), "");
}

TEST(ShiftSegmentTest, SynProxyShiftMovesBackendSeqAndClientAcks) {
  const SeqShift s{.client_start = 1001, .to_backend = 0, .to_client = 0x10000};
  Bytes c = Segment(kTcpAck, 1001, 0xffff8000u + 0x10000, SackOption({0x10000 + 5, 0x10000 + 9}));
  ShiftSegment(c.data() + kL4, 32, s, FlowDir::kFromClient);
  EXPECT_EQ(SeqOf(c), 1001u);
  EXPECT_EQ(AckOf(c), 0xffff8000u);
  EXPECT_EQ(Get32(c, kL4 + 24), 5u);
  EXPECT_EQ(Get32(c, kL4 + 28), 9u);
  EXPECT_EQ(CheckIpv4Checksums(Ip(c)), "");

  Bytes b = Segment(kTcpAck, 0xffffff00u, 1001);
  ShiftSegment(b.data() + kL4, 20, s, FlowDir::kFromBackend);
  EXPECT_EQ(SeqOf(b), 0xffffff00u + 0x10000);
  EXPECT_EQ(CheckIpv4Checksums(Ip(b)), "");
}

TEST(ShiftSegmentTest, WithoutAckFlagTheAckFieldStays) {
  const SeqShift s{.client_start = 10, .to_backend = 5, .to_client = 7};
  Bytes f = Segment(kTcpRst, 20, 12345);
  ShiftSegment(f.data() + kL4, 20, s, FlowDir::kFromClient);
  EXPECT_EQ(SeqOf(f), 25u);
  EXPECT_EQ(AckOf(f), 12345u);
}

TEST(ShiftSegmentTest, MalformedOptionsAreNotReadPast) {
  const SeqShift s{.client_start = 10, .to_backend = 5, .to_client = 0};
  // A SACK option claiming 34 bytes in a 12-byte option area: left alone.
  Bytes f = Segment(kTcpAck, 20, 40, Bytes{5, 34, 0, 0, 0, 40, 0, 0, 0, 50, 0, 0});
  ShiftSegment(f.data() + kL4, 32, s, FlowDir::kFromBackend);
  EXPECT_EQ(AckOf(f), 35u);
  EXPECT_EQ(Get32(f, kL4 + 22), 40u);
  EXPECT_EQ(CheckIpv4Checksums(Ip(f)), "");
}

// ---- Inserting bytes.

constexpr std::size_t kHead = 128;

// A buffer holding `frame` after kHead bytes of headroom.
struct Buffer {
  Bytes bytes;
  explicit Buffer(const Bytes& frame) : bytes(kHead, 0xee) {
    for (std::uint8_t byte : frame) {  // a range insert trips GCC 12's -Warray-bounds
      bytes.push_back(byte);
    }
  }
  Bytes Frame(const Spliced& r) const {
    const auto start = static_cast<std::ptrdiff_t>(kHead - r.grown);
    return Bytes(bytes.begin() + start, bytes.begin() + start + r.length);
  }
  Spliced Insert(const TcpSegment& s, InsertWhere where, const Bytes& what, std::size_t mtu,
                 std::size_t head = kHead) {
    return InsertIntoSegment(bytes, head, s, where, what, mtu);
  }
};

Bytes Slice(const Bytes& b, std::size_t from, std::size_t to) {
  return Bytes(b.begin() + static_cast<std::ptrdiff_t>(from),
               b.begin() + static_cast<std::ptrdiff_t>(to));
}

const Bytes kHeader = {'P', 'R', 'O', 'X', 'Y', ' ', 'x', '\r', '\n'};  // odd length on purpose

TEST(InsertIntoSegmentTest, HeaderBecomesThePayloadOfAPureAck) {
  Bytes frame = Segment(kTcpAck, 1001, 5001);
  frame.resize(60, 0);  // Ethernet padding after the 54-byte frame
  const ParsedPacket p = Parse(frame);
  ASSERT_EQ(p.kind, PacketKind::kTcp);
  Buffer buf(frame);
  const Spliced r = buf.Insert(TcpSegmentOf(p), InsertWhere::kPayload, kHeader, 1500);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.grown, kHeader.size());
  EXPECT_EQ(r.trimmed, 0u);
  const Bytes out = buf.Frame(r);
  ASSERT_EQ(out.size(), 54 + kHeader.size());  // the padding is not carried along
  EXPECT_EQ(Slice(out, 0, kL3 + 2), Slice(frame, 0, kL3 + 2));
  EXPECT_EQ(Get16(out, kL3 + 2), 40 + kHeader.size());
  EXPECT_EQ(Slice(out, kL3 + 12, kL4 + 16), Slice(frame, kL3 + 12, kL4 + 16)) << "addresses, TCP";
  EXPECT_EQ(Slice(out, kL4 + 18, 54), Slice(frame, kL4 + 18, 54));
  EXPECT_EQ(Slice(out, 54, out.size()), kHeader);
  EXPECT_EQ(CheckIpv4Checksums(Ip(out)), "");
  const ParsedPacket q = Parse(out);
  ASSERT_EQ(q.kind, PacketKind::kTcp);
  EXPECT_EQ(q.payload_len, kHeader.size());
}

TEST(InsertIntoSegmentTest, HeaderGoesBeforeTheClientsData) {
  const Bytes frame = Segment(kTcpAck | kTcpPsh, 1001, 5001, {}, 300);
  Buffer buf(frame);
  const Spliced r = buf.Insert(TcpSegmentOf(Parse(frame)), InsertWhere::kPayload, kHeader, 1500);
  ASSERT_TRUE(r.ok);
  const Bytes out = buf.Frame(r);
  EXPECT_EQ(Slice(out, 54, 54 + kHeader.size()), kHeader);
  EXPECT_EQ(Slice(out, 54 + kHeader.size(), out.size()), Slice(frame, 54, frame.size()));
  EXPECT_EQ(CheckIpv4Checksums(Ip(out)), "");
}

TEST(InsertIntoSegmentTest, AFullSegmentGivesUpItsTailAndItsFin) {
  const Bytes frame = Segment(kTcpAck | kTcpFin, 1001, 5001, {}, 1460);  // IP packet 1500
  Buffer buf(frame);
  const Spliced r = buf.Insert(TcpSegmentOf(Parse(frame)), InsertWhere::kPayload, kHeader, 1500);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.trimmed, kHeader.size());
  const Bytes out = buf.Frame(r);
  EXPECT_EQ(out.size(), frame.size());
  EXPECT_EQ(Get16(out, kL3 + 2), 1500);
  EXPECT_EQ(Slice(out, 54 + kHeader.size(), out.size()),
            Slice(frame, 54, frame.size() - kHeader.size()));
  EXPECT_EQ(out[kL4 + 13], kTcpAck) << "the FIN comes after bytes not sent";
  EXPECT_EQ(CheckIpv4Checksums(Ip(out)), "");
}

TEST(InsertIntoSegmentTest, OptionGoesAfterTheOptionsAndTheDataOffsetGrows) {
  const Bytes ts = {1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2};  // NOP NOP timestamps
  const Bytes toa = {254, 8, 0x9c, 0x41, 198, 18, 0, 2};
  const Bytes frame = Segment(kTcpAck, 1001, 5001, ts, 10);
  Buffer buf(frame);
  const Spliced r = buf.Insert(TcpSegmentOf(Parse(frame)), InsertWhere::kOption, toa, 1500);
  ASSERT_TRUE(r.ok);
  const Bytes out = buf.Frame(r);
  EXPECT_EQ(out[kL4 + 12] >> 4, (20 + 12 + 8) / 4);
  EXPECT_EQ(Slice(out, kL4 + 20, kL4 + 32), ts);
  EXPECT_EQ(Slice(out, kL4 + 32, kL4 + 40), toa);
  EXPECT_EQ(Slice(out, kL4 + 40, out.size()), Slice(frame, kL4 + 32, frame.size()));
  EXPECT_EQ(CheckIpv4Checksums(Ip(out)), "");
  const ParsedPacket q = Parse(out);
  ASSERT_EQ(q.kind, PacketKind::kTcp);
  EXPECT_EQ(q.payload_len, 10u);
}

TEST(InsertIntoSegmentTest, RefusesWhatDoesNotFitAndChangesNothing) {
  const Bytes toa = {254, 8, 0x9c, 0x41, 198, 18, 0, 2};
  struct Case {
    const char* what;
    Bytes frame;
    InsertWhere where;
    Bytes bytes;
    std::size_t mtu;
    std::size_t head;
  };
  const Case cases[] = {
      {"an option past 60 header bytes", Segment(kTcpAck, 1, 2, Bytes(36, 1)), InsertWhere::kOption,
       toa, 1500, kHead},
      {"an option past the MTU", Segment(kTcpAck, 1, 2, {}, 1460), InsertWhere::kOption, toa, 1500,
       kHead},
      {"an option not a 4-byte multiple", Segment(kTcpAck, 1, 2), InsertWhere::kOption, kHeader,
       1500, kHead},
      {"a header longer than the payload it would displace", Segment(kTcpAck, 1, 2, {}, 4),
       InsertWhere::kPayload, kHeader, 44, kHead},
      {"no headroom", Segment(kTcpAck, 1, 2), InsertWhere::kPayload, kHeader, 1500, 4},
  };
  for (const Case& c : cases) {
    Buffer buf(c.frame);
    const Bytes before = buf.bytes;
    const Spliced r = buf.Insert(TcpSegmentOf(Parse(c.frame)), c.where, c.bytes, c.mtu, c.head);
    EXPECT_FALSE(r.ok) << c.what;
    EXPECT_EQ(buf.bytes, before) << c.what;
  }
}

TEST(InsertIntoSegmentTest, Ipv6HeaderAndOption) {
  const auto client = Ip6("2001:db8::2");
  const auto vip = Ip6("2001:db8:100::1");
  const Bytes frame = PacketBuilder()
                          .Ipv6(client, vip)
                          .Tcp(40001, 80, kTcpAck | kTcpPsh)
                          .TcpSeq(1001, 5001)
                          .Payload(100, 3)
                          .Build();
  const ParsedPacket6 p = ParseIpv6(frame, kL3);
  ASSERT_EQ(p.kind, PacketKind::kTcp);
  const Bytes header(52, 0x5a);
  Buffer buf(frame);
  Spliced r = buf.Insert(TcpSegmentOf(p), InsertWhere::kPayload, header, 1500);
  ASSERT_TRUE(r.ok);
  Bytes out = buf.Frame(r);
  EXPECT_EQ(Get16(out, kL3 + 4), 20 + 52 + 100);
  EXPECT_EQ(Slice(out, kL3 + 60, kL3 + 60 + 52), header);
  EXPECT_EQ(CheckIpv6Checksums({out.data() + kL3, out.size() - kL3}), "");

  Bytes toa6 = {253, 20, 0x9c, 0x41};
  toa6.insert(toa6.end(), client.begin(), client.end());
  Buffer buf6(frame);
  r = buf6.Insert(TcpSegmentOf(p), InsertWhere::kOption, toa6, 1500);
  ASSERT_TRUE(r.ok);
  out = buf6.Frame(r);
  EXPECT_EQ(out[kL3 + 40 + 12] >> 4, 10);
  EXPECT_EQ(Slice(out, kL3 + 60, kL3 + 80), toa6);
  EXPECT_EQ(CheckIpv6Checksums({out.data() + kL3, out.size() - kL3}), "");
  EXPECT_EQ(ParseIpv6(out, kL3).payload_len, 100u);
}

}  // namespace
}  // namespace fulcrum::nat
