// The pipeline's decisions as data: frames and core state in, actions, frames and counters out
// (tests/dataplane/core_bed.h). No EAL, no root, a fake clock; these run under the sanitizers.
//
// Every expected frame is built independently with the test packet builder: a rewrite is
// checked byte for byte, checksums included, and every row states each drop and event it
// causes (any other counter that moves fails the row).
#include "dataplane/decide.h"

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "nat/packet.h"
#include "tests/dataplane/core_bed.h"
#include "tests/dataplane/model_fixture.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::dataplane {
namespace {

using fulcrum::testing::PacketBuilder;
using model::ForwardMode;
using model::Protocol;
using nat::DropReason;
using testing::BackendIp;
using testing::BackendMac;
using testing::Bytes;
using testing::Consumed;
using testing::CoreBed;
using testing::Delta;
using testing::Describe;
using testing::DropFor;
using testing::ExpectDelta;
using testing::ExpectOutcome;
using testing::HandTo;
using testing::Ip4;
using testing::kBackendPort;
using testing::kBackendPortMac;
using testing::kClient2Ip;
using testing::kClient2Mac;
using testing::kClientIp;
using testing::kClientMac;
using testing::kClientPort;
using testing::kClientPortMac;
using testing::kVipIp;
using testing::ModelBuilder;
using testing::Outcome;
using testing::RunSteps;
using testing::SendOn;
using testing::Step;

constexpr std::uint8_t kSyn = nat::kTcpSyn;
constexpr std::uint8_t kAck = nat::kTcpAck;
constexpr std::uint8_t kFin = nat::kTcpFin;
constexpr std::uint8_t kRst = nat::kTcpRst;
constexpr std::uint8_t kPsh = nat::kTcpPsh;

const std::uint32_t kLocal1 = Ip4("198.18.1.2");
const std::uint32_t kLocal2 = Ip4("198.18.1.3");
// The first fnat local ports of a fresh pool: core w owns the ports whose low bit is w, and each
// local address hands out its free ports oldest first from 1024 (nat/port_pool.h); allocation
// rotates over the addresses.
constexpr std::uint16_t kFirstLocalPort0 = 1024;
constexpr std::uint16_t kFirstLocalPort1 = 1025;

// The listeners every table runs against: tcp :80 fnat to 198.18.1.11:8080, udp :53 fnat to
// 198.18.1.12:5353, tcp :81 dnat to 198.18.1.13:8081.
model::Model& StandardModel(ModelBuilder& b) {
  b.Group("sg-00000001", {"198.18.1.11:8080"})
      .Group("sg-00000002", {"198.18.1.12:5353"})
      .Group("sg-00000003", {"198.18.1.13:8081"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001")
      .Listener("lsn-00000002", Protocol::kUdp, 53, "sg-00000002", ForwardMode::kFnat, 30)
      .Listener("lsn-00000003", Protocol::kTcp, 81, "sg-00000003", ForwardMode::kDnat);
  return b.model();
}

// A segment from the client to the VIP.
PacketBuilder ClientTcp(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags,
                        std::uint32_t seq = 1000, std::uint32_t ack = 0) {
  PacketBuilder b;
  b.Macs(kClientPortMac, kClientMac).Ipv4(kClientIp, kVipIp).Tcp(sport, dport, flags);
  b.TcpSeq(seq, ack);
  return b;
}

// The same segment as the backend must see it through fnat: from a local address, TTL - 1.
PacketBuilder ToBackend(int backend, std::uint32_t local, std::uint16_t lport, std::uint16_t bport,
                        std::uint8_t flags, std::uint32_t seq = 1000, std::uint32_t ack = 0) {
  PacketBuilder b;
  b.Macs(BackendMac(backend), kBackendPortMac)
      .Ipv4(local, BackendIp(backend))
      .Ttl(63)
      .Tcp(lport, bport, flags)
      .TcpSeq(seq, ack);
  return b;
}

// A segment from a backend to an fnat local address.
PacketBuilder BackendTcp(int backend, std::uint32_t local, std::uint16_t lport, std::uint16_t bport,
                         std::uint8_t flags, std::uint32_t seq, std::uint32_t ack) {
  PacketBuilder b;
  b.Macs(kBackendPortMac, BackendMac(backend))
      .Ipv4(BackendIp(backend), local)
      .Tcp(bport, lport, flags)
      .TcpSeq(seq, ack);
  return b;
}

// The same segment as the client must see it: from the VIP, TTL - 1.
PacketBuilder ToClient(std::uint16_t vport, std::uint16_t cport, std::uint8_t flags,
                       std::uint32_t seq, std::uint32_t ack) {
  PacketBuilder b;
  b.Macs(kClientMac, kClientPortMac).Ipv4(kVipIp, kClientIp).Ttl(63).Tcp(vport, cport, flags);
  b.TcpSeq(seq, ack);
  return b;
}

// ---- one packet into a fresh bed

struct Row {
  std::string name;
  std::function<Bytes()> in;
  Action action;
  std::function<Bytes()> out;  // the frame sent or handed off; empty otherwise
  Delta delta;
  std::uint32_t core = 0;
  std::uint8_t port = kClientPort;
  bool handed_off = false;
  bool ipv4_checksum_verified = false;
};

// A client port core 0 owns, and one core 1 owns (ClientOwner of the bed's client).
std::uint16_t OwnedBy(std::uint32_t core) { return CoreBed().ClientPortOwnedBy(core); }

const std::vector<Row>& SinglePacketRows() {
  static const std::uint16_t p0 = OwnedBy(0);
  static const std::uint16_t p1 = OwnedBy(1);
  const Bytes options = {2, 4, 0x05, 0xb4, 1, 3, 3, 7};  // MSS 1460, NOP, window scale 7
  static const std::vector<Row> rows = {
      {"fnat SYN: scheduled, local address and port, to the backend",
       [=] { return ClientTcp(p0, 80, kSyn).TcpOptions(options).Build(); },
       SendOn(kBackendPort),
       [=] {
         return ToBackend(1, kLocal1, kFirstLocalPort0, 8080, kSyn).TcpOptions(options).Build();
       },
       {}},
      {"fnat SYN of a flow core 1 owns: handed off unchanged",
       [=] { return ClientTcp(p1, 80, kSyn).Build(); },
       HandTo(1),
       [=] { return ClientTcp(p1, 80, kSyn).Build(); },
       {.events = {{WorkerEvent::kHandoffs, 1}}}},
      {"a hand-off that is not ours either: wrong_core, never passed on again",
       [=] { return ClientTcp(p1, 80, kSyn).Build(); },
       DropFor(DropReason::kWrongCore),
       nullptr,
       {.drops = {{DropReason::kWrongCore, 1}}},
       0,
       kClientPort,
       true},
      {"fnat SYN on core 1 takes core 1's first local port",
       [=] { return ClientTcp(p1, 80, kSyn).Build(); },
       SendOn(kBackendPort),
       [=] { return ToBackend(1, kLocal1, kFirstLocalPort1, 8080, kSyn).Build(); },
       {},
       1},
      {"dnat SYN: only the destination changes",
       [=] { return ClientTcp(p0, 81, kSyn).Build(); },
       SendOn(kBackendPort),
       [=] {
         PacketBuilder b;
         b.Macs(BackendMac(3), kBackendPortMac).Ipv4(kClientIp, BackendIp(3)).Ttl(63);
         return b.Tcp(p0, 8081, kSyn).TcpSeq(1000, 0).Build();
       },
       {}},
      {"UDP datagram: opens a flow",
       [=] {
         PacketBuilder b;
         b.Macs(kClientPortMac, kClientMac).Ipv4(kClientIp, kVipIp).Udp(p0, 53);
         return b.Payload(20, 0x61).Build();
       },
       SendOn(kBackendPort),
       [=] {
         PacketBuilder b;
         b.Macs(BackendMac(2), kBackendPortMac).Ipv4(kLocal1, BackendIp(2)).Ttl(63);
         return b.Udp(kFirstLocalPort0, 5353).Payload(20, 0x61).Build();
       },
       {}},
      {"an ACK without a connection: not_syn_no_conn, answered with a reset (RFC 793: seq = ACK)",
       [=] { return ClientTcp(p0, 80, kAck | kPsh, 5000, 7777).Payload(10, 0x41).Build(); },
       SendOn(kClientPort, 54),
       [=] {
         PacketBuilder b;
         b.Macs(kClientMac, kClientPortMac).Ipv4(kVipIp, kClientIp).Tcp(80, p0, kRst);
         return b.TcpSeq(7777, 0).TcpWindow(0).Build();
       },
       {.drops = {{DropReason::kNotSynNoConn, 1}}, .events = {{WorkerEvent::kTcpResetsSent, 1}}}},
      {"a FIN without ACK and without a connection: the reset acknowledges SEQ + 1",
       [=] { return ClientTcp(p0, 80, kFin, 5000).Build(); },
       SendOn(kClientPort, 54),
       [=] {
         PacketBuilder b;
         b.Macs(kClientMac, kClientPortMac).Ipv4(kVipIp, kClientIp).Tcp(80, p0, kRst | kAck);
         return b.TcpSeq(0, 5001).TcpWindow(0).Build();
       },
       {.drops = {{DropReason::kNotSynNoConn, 1}}, .events = {{WorkerEvent::kTcpResetsSent, 1}}}},
      {"a reset without a connection: never answered",
       [=] { return ClientTcp(p0, 80, kRst).Build(); },
       Consumed(),
       nullptr,
       {.drops = {{DropReason::kNotSynNoConn, 1}}}},
      {"a port no listener serves: no_service",
       [=] { return ClientTcp(p0, 99, kSyn).Build(); },
       DropFor(DropReason::kNoService),
       nullptr,
       {.drops = {{DropReason::kNoService, 1}}}},
      {"an address that is not ours: not_local",
       [=] { return ClientTcp(p0, 80, kSyn).Ipv4(kClientIp, Ip4("198.18.100.99")).Build(); },
       DropFor(DropReason::kNotLocal),
       nullptr,
       {.drops = {{DropReason::kNotLocal, 1}}}},
      {"a UDP datagram to a local address without a connection: no_conn",
       [=] {
         PacketBuilder b;
         b.Macs(kBackendPortMac, BackendMac(2)).Ipv4(BackendIp(2), kLocal2).Udp(5353, 2048);
         return b.Payload(8).Build();
       },
       DropFor(DropReason::kNoConn),
       nullptr,
       {.drops = {{DropReason::kNoConn, 1}}},
       0,
       kBackendPort},
      {"a reply to a local port core 1 owns: handed off",
       [=] { return BackendTcp(1, kLocal2, 2049, 8080, kSyn | kAck, 1, 1001).Build(); },
       HandTo(1),
       [=] { return BackendTcp(1, kLocal2, 2049, 8080, kSyn | kAck, 1, 1001).Build(); },
       {.events = {{WorkerEvent::kHandoffs, 1}}},
       0,
       kBackendPort},
      {"a segment from a backend without a connection: reset towards the backend",
       [=] { return BackendTcp(1, kLocal2, 2048, 8080, kAck, 1, 1001).Build(); },
       SendOn(kBackendPort, 54),
       [=] {
         PacketBuilder b;
         b.Macs(BackendMac(1), kBackendPortMac).Ipv4(kLocal2, BackendIp(1)).Tcp(2048, 8080, kRst);
         return b.TcpSeq(1001, 0).TcpWindow(0).Build();
       },
       {.drops = {{DropReason::kNotSynNoConn, 1}}, .events = {{WorkerEvent::kTcpResetsSent, 1}}},
       0,
       kBackendPort},
      {"a bad IPv4 header checksum: bad_checksum",
       [=] {
         Bytes frame = ClientTcp(p0, 80, kSyn).Build();
         frame[24] ^= 0xff;
         return frame;
       },
       DropFor(DropReason::kBadChecksum),
       nullptr,
       {.drops = {{DropReason::kBadChecksum, 1}}}},
      {"the same header when the NIC verified it: not checked again",
       [=] {
         Bytes frame = ClientTcp(p0, 80, kSyn).Build();
         frame[24] ^= 0xff;
         return frame;
       },
       SendOn(kBackendPort),
       nullptr,
       {},
       0,
       kClientPort,
       false,
       true},
      {"a truncated frame: truncated",
       [=] {
         Bytes frame = ClientTcp(p0, 80, kSyn).Build();
         frame.resize(30);
         return frame;
       },
       DropFor(DropReason::kTruncated),
       nullptr,
       {.drops = {{DropReason::kTruncated, 1}}}},
      {"a fragment: fragment",
       [=] { return ClientTcp(p0, 80, kSyn).Fragment(true, 0).Build(); },
       DropFor(DropReason::kFragment),
       nullptr,
       {.drops = {{DropReason::kFragment, 1}}}},
      {"IPv4 bytes under the IPv6 ethertype: bad_header",
       [=] { return ClientTcp(p0, 80, kSyn).Ethertype(0x86dd).Build(); },
       DropFor(DropReason::kBadHeader),
       nullptr,
       {.drops = {{DropReason::kBadHeader, 1}}}},
      {"an ethertype neither family has: unsupported_ethertype",
       [=] { return ClientTcp(p0, 80, kSyn).Ethertype(0x88cc).Build(); },
       DropFor(DropReason::kUnsupportedEthertype),
       nullptr,
       {.drops = {{DropReason::kUnsupportedEthertype, 1}}}},
      {"GRE: unsupported_protocol",
       [=] {
         PacketBuilder b;
         b.Macs(kClientPortMac, kClientMac).Ipv4(kClientIp, kVipIp).Protocol(47);
         return b.Payload(20).Build();
       },
       DropFor(DropReason::kUnsupportedProtocol),
       nullptr,
       {.drops = {{DropReason::kUnsupportedProtocol, 1}}}},
      {"TTL 1: ttl_exceeded",
       [=] { return ClientTcp(p0, 80, kSyn).Ttl(1).Build(); },
       DropFor(DropReason::kTtlExceeded),
       nullptr,
       {.drops = {{DropReason::kTtlExceeded, 1}}}},
      {"a ping to the VIP: answered",
       [=] {
         PacketBuilder b;
         b.Macs(kClientPortMac, kClientMac).Ipv4(kClientIp, kVipIp).IcmpEcho(8, 77, 5);
         return b.Payload(32, 0x41).Build();
       },
       SendOn(kClientPort),
       [=] {
         PacketBuilder b;
         b.Macs(kClientMac, kClientPortMac).Ipv4(kVipIp, kClientIp).IcmpEcho(0, 77, 5);
         return b.Payload(32, 0x41).Build();
       },
       {.events = {{WorkerEvent::kIcmpEchoReplies, 1}}}},
      {"an echo reply to the VIP: unsupported_icmp",
       [=] {
         PacketBuilder b;
         b.Macs(kClientPortMac, kClientMac).Ipv4(kClientIp, kVipIp).IcmpEcho(0, 77, 5);
         return b.Build();
       },
       DropFor(DropReason::kUnsupportedIcmp),
       nullptr,
       {.drops = {{DropReason::kUnsupportedIcmp, 1}}}},
      {"an ARP request for the VIP: answered with the client port's MAC, the sender reported",
       [=] {
         return PacketBuilder()
             .Macs(nat::kBroadcastMac, kClientMac)
             .Arp(nat::kArpRequest, kClientMac, kClientIp, kVipIp)
             .Build();
       },
       SendOn(kClientPort),
       [=] {
         Bytes reply = PacketBuilder()
                           .Macs(kClientMac, kClientPortMac)
                           .Arp(nat::kArpReply, kClientPortMac, kVipIp, kClientIp)
                           .Build();
         std::copy(kClientMac.begin(), kClientMac.end(), reply.begin() + 14 + 18);  // target MAC
         return reply;
       },
       {.events = {{WorkerEvent::kArpLearned, 1}, {WorkerEvent::kArpRepliesSent, 1}}}},
      {"an ARP request for someone else: not_local",
       [=] {
         return PacketBuilder()
             .Macs(nat::kBroadcastMac, kClientMac)
             .Arp(nat::kArpRequest, kClientMac, kClientIp, Ip4("198.18.0.99"))
             .Build();
       },
       DropFor(DropReason::kNotLocal),
       nullptr,
       {.drops = {{DropReason::kNotLocal, 1}}}},
      {"an ARP reply from the client: consumed, reported",
       [=] {
         return PacketBuilder()
             .Macs(kClientPortMac, kClientMac)
             .Arp(nat::kArpReply, kClientMac, kClientIp, Ip4("198.18.0.1"))
             .Build();
       },
       Consumed(),
       nullptr,
       {.events = {{WorkerEvent::kArpLearned, 1}}}},
  };
  return rows;
}

TEST(DecideTable, OnePacket) {
  for (const Row& row : SinglePacketRows()) {
    SCOPED_TRACE(row.name);
    CoreBed bed;
    ModelBuilder b;
    bed.Apply(StandardModel(b));
    bed.LearnNeighbors();
    bed.TakeDelta();
    Bytes in = row.in();
    std::vector<PacketIn> packets = {PacketIn{
        .frame = in, .port = row.port, .ipv4_checksum_verified = row.ipv4_checksum_verified}};
    const std::span<const Action> actions =
        DecideBurst(bed.core(row.core), packets, row.handed_off);
    ASSERT_EQ(actions.size(), 1u);
    Bytes out = in;
    if (actions[0].length != 0) {
      out.resize(actions[0].length);
    }
    ExpectOutcome({actions[0], out}, row.action, row.out ? row.out() : out, row.name);
    ExpectDelta(bed, row.delta, row.name);
  }
}

// ---- conversations: steps on one bed, in order

// A whole fnat TCP connection both ways, then a segment after it expired (the fake clock).
TEST(DecideTable, FnatTcpConversation) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(StandardModel(b));
  bed.LearnNeighbors();
  const std::uint16_t c = bed.ClientPortOwnedBy(0);
  const std::uint16_t l = kFirstLocalPort0;
  const Bytes hello(100, 0x68);
  const std::vector<Step> steps = {
      {"SYN", kClientPort, [=] { return ClientTcp(c, 80, kSyn, 1000).Build(); },
       SendOn(kBackendPort), [=] { return ToBackend(1, kLocal1, l, 8080, kSyn, 1000).Build(); }},
      {"SYN-ACK", kBackendPort,
       [=] { return BackendTcp(1, kLocal1, l, 8080, kSyn | kAck, 5000, 1001).Build(); },
       SendOn(kClientPort), [=] { return ToClient(80, c, kSyn | kAck, 5000, 1001).Build(); }},
      {"ACK", kClientPort, [=] { return ClientTcp(c, 80, kAck, 1001, 5001).Build(); },
       SendOn(kBackendPort),
       [=] { return ToBackend(1, kLocal1, l, 8080, kAck, 1001, 5001).Build(); }},
      {"data", kClientPort,
       [=] { return ClientTcp(c, 80, kAck | kPsh, 1001, 5001).Payload(hello).Build(); },
       SendOn(kBackendPort),
       [=] {
         return ToBackend(1, kLocal1, l, 8080, kAck | kPsh, 1001, 5001).Payload(hello).Build();
       }},
      {"backend FIN", kBackendPort,
       [=] { return BackendTcp(1, kLocal1, l, 8080, kFin | kAck, 5001, 1101).Build(); },
       SendOn(kClientPort), [=] { return ToClient(80, c, kFin | kAck, 5001, 1101).Build(); }},
      {"client FIN", kClientPort, [=] { return ClientTcp(c, 80, kFin | kAck, 1101, 5002).Build(); },
       SendOn(kBackendPort),
       [=] { return ToBackend(1, kLocal1, l, 8080, kFin | kAck, 1101, 5002).Build(); }},
      {"last ACK", kBackendPort,
       [=] { return BackendTcp(1, kLocal1, l, 8080, kAck, 5002, 1102).Build(); },
       SendOn(kClientPort), [=] { return ToClient(80, c, kAck, 5002, 1102).Build(); }},
      // time_wait is 1 s in the test config: after it, the tuple is gone.
      {"a segment after time_wait",
       kClientPort,
       [=] { return ClientTcp(c, 80, kAck, 1102, 5002).Build(); },
       SendOn(kClientPort, 54),
       [=] {
         PacketBuilder r;
         r.Macs(kClientMac, kClientPortMac).Ipv4(kVipIp, kClientIp).Tcp(80, c, kRst);
         return r.TcpSeq(5002, 0).TcpWindow(0).Build();
       },
       {.drops = {{DropReason::kNotSynNoConn, 1}}, .events = {{WorkerEvent::kTcpResetsSent, 1}}},
       1001},
  };
  RunSteps(bed, 0, steps);
  const ListenerCounters& counters =
      bed.core(0).listener(bed.snapshot().v4.services.Find(kVipIp, 80, nat::kIpProtoTcp));
  EXPECT_EQ(counters.new_conns.Read(), 1u);
  EXPECT_EQ(counters.rx_packets.Read(), 8u);  // both ways, the late ACK included
  EXPECT_EQ(counters.tx_packets.Read(), 7u);
  EXPECT_EQ(bed.core(0).new_conns.Read(), 1u);
}

// The first packets of a flow in one burst: the first opens it, the others follow it as hits,
// in order, through the same local port.
TEST(DecideTable, ABurstOpensAFlowOnce) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(StandardModel(b));
  bed.LearnNeighbors();
  const std::uint16_t c = bed.ClientPortOwnedBy(0);
  auto datagram = [&](std::uint8_t n) {
    PacketBuilder d;
    d.Macs(kClientPortMac, kClientMac).Ipv4(kClientIp, kVipIp).Udp(c, 53).Payload(8, n);
    return d.Build();
  };
  auto forwarded = [&](std::uint8_t n) {
    PacketBuilder d;
    d.Macs(BackendMac(2), kBackendPortMac).Ipv4(kLocal1, BackendIp(2)).Ttl(63);
    return d.Udp(kFirstLocalPort0, 5353).Payload(8, n).Build();
  };
  const std::vector<Outcome> out =
      bed.Feed(0, kClientPort,
               {datagram(1), datagram(2), ClientTcp(c, 80, kSyn).Build(), datagram(3),
                ClientTcp(c, 80, kSyn).Build()});
  ASSERT_EQ(out.size(), 5u);
  ExpectOutcome(out[0], SendOn(kBackendPort), forwarded(1), "datagram 1");
  ExpectOutcome(out[1], SendOn(kBackendPort), forwarded(2), "datagram 2");
  ExpectOutcome(out[2], SendOn(kBackendPort),
                ToBackend(1, kLocal2, kFirstLocalPort0, 8080, kSyn).Build(), "SYN");
  ExpectOutcome(out[3], SendOn(kBackendPort), forwarded(3), "datagram 3");
  ExpectOutcome(out[4], SendOn(kBackendPort),
                ToBackend(1, kLocal2, kFirstLocalPort0, 8080, kSyn).Build(), "SYN again");
  ExpectDelta(bed, {}, "the burst");
  EXPECT_EQ(bed.core(0).table.size(), 2u);
  EXPECT_EQ(bed.core(0).new_conns.Read(), 2u);
}

// Replies to different clients in one burst: each leaves addressed to its own client's MAC, the
// neighbour found for one reply never reused for another's next hop.
TEST(DecideTable, RepliesInOneBurstReachEachTheirClient) {
  CoreBed bed(/*workers=*/1);
  ModelBuilder b;
  bed.Apply(StandardModel(b));
  bed.LearnNeighbors();
  struct Flow {
    std::uint32_t ip;
    testing::Mac mac;
    std::uint16_t port;
  };
  const std::vector<Flow> flows = {{kClientIp, kClientMac, 40000},
                                   {kClient2Ip, kClient2Mac, 40000},
                                   {kClientIp, kClientMac, 40001},
                                   {kClient2Ip, kClient2Mac, 40001}};
  std::vector<Bytes> queries;
  for (const Flow& f : flows) {
    PacketBuilder d;
    d.Macs(kClientPortMac, f.mac).Ipv4(f.ip, kVipIp).Udp(f.port, 53).Payload(8, 1);
    queries.push_back(d.Build());
  }
  const std::vector<Outcome> opened = bed.Feed(0, kClientPort, queries);
  ASSERT_EQ(opened.size(), flows.size());
  std::vector<Bytes> answers;
  for (const Outcome& o : opened) {
    ASSERT_EQ(o.action, SendOn(kBackendPort));
    const nat::ParsedPacket q = nat::Parse(o.frame, {});
    ASSERT_EQ(q.kind, nat::PacketKind::kUdp);
    PacketBuilder d;
    d.Macs(kBackendPortMac, BackendMac(2)).Ipv4(BackendIp(2), q.src_ip).Udp(5353, q.src_port);
    answers.push_back(d.Payload(8, 2).Build());
  }
  const std::vector<Outcome> out = bed.Feed(0, kBackendPort, answers);
  ASSERT_EQ(out.size(), flows.size());
  for (std::size_t i = 0; i < flows.size(); ++i) {
    PacketBuilder d;
    d.Macs(flows[i].mac, kClientPortMac).Ipv4(kVipIp, flows[i].ip).Ttl(63);
    ExpectOutcome(out[i], SendOn(kClientPort), d.Udp(53, flows[i].port).Payload(8, 2).Build(),
                  "answer " + std::to_string(i));
  }
  ExpectDelta(bed, {}, "both bursts");
}

// A next hop without a MAC: the packet is dropped and counted, and the control thread is asked
// once (not once per packet) to resolve it.
TEST(DecideTable, AnUnresolvedNextHopIsReportedOnce) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(StandardModel(b));
  bed.LearnNeighbors(/*with_backends=*/false);
  bed.TakeDelta();
  const std::uint16_t c = bed.ClientPortOwnedBy(0);
  const Outcome first = bed.FeedOne(0, kClientPort, ClientTcp(c, 80, kSyn).Build());
  EXPECT_EQ(first.action, DropFor(DropReason::kArpUnresolved));
  const std::vector<Message> reports = bed.Reports(0);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].type, MessageType::kResolve);
  EXPECT_EQ(reports[0].ip, BackendIp(1));
  EXPECT_EQ(reports[0].port, kBackendPort);
  ExpectDelta(bed,
              {.drops = {{DropReason::kArpUnresolved, 1}},
               .events = {{WorkerEvent::kArpResolveRequests, 1}}},
              "first SYN");
  // The retransmitted SYN finds its connection and is dropped again, without a second request
  // within the second.
  const Outcome again = bed.FeedOne(0, kClientPort, ClientTcp(c, 80, kSyn).Build());
  EXPECT_EQ(again.action, DropFor(DropReason::kArpUnresolved));
  EXPECT_TRUE(bed.Reports(0).empty());
  ExpectDelta(bed, {.drops = {{DropReason::kArpUnresolved, 1}}}, "second SYN");
  bed.Advance(1000);
  bed.FeedOne(0, kClientPort, ClientTcp(c, 80, kSyn).Build());
  EXPECT_EQ(bed.Reports(0).size(), 1u);
}

// A backend marked down: its TCP connections are reset, its UDP flows scheduled anew.
TEST(DecideTable, ADeadBackendsConnectionsAreResetOrRescheduled) {
  CoreBed bed;
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.11:8080", "198.18.1.12:8080"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001")
      .Listener("lsn-00000002", Protocol::kUdp, 53, "sg-00000001", ForwardMode::kFnat, 30);
  bed.Apply(b.model());
  bed.LearnNeighbors();
  const std::uint16_t c = bed.ClientPortOwnedBy(0);
  PacketBuilder udp;
  udp.Macs(kClientPortMac, kClientMac).Ipv4(kClientIp, kVipIp).Udp(c, 53).Payload(8);
  const Outcome syn = bed.FeedOne(0, kClientPort, ClientTcp(c, 80, kSyn).Build());
  const Outcome datagram = bed.FeedOne(0, kClientPort, udp.Build());
  ASSERT_EQ(syn.action, SendOn(kBackendPort));
  ASSERT_EQ(datagram.action, SendOn(kBackendPort));
  const std::uint32_t tcp_backend = nat::Parse(syn.frame).dst_ip;
  const std::uint32_t udp_backend = nat::Parse(datagram.frame).dst_ip;
  bed.TakeDelta();

  // Both backends down for these listeners, one at a time: first each flow's own.
  const std::string tcp_name =
      tcp_backend == BackendIp(1) ? "198.18.1.11:8080" : "198.18.1.12:8080";
  b.Health("lsn-00000001", tcp_name, model::HealthState::kDown);
  const std::string udp_name =
      udp_backend == BackendIp(1) ? "198.18.1.11:8080" : "198.18.1.12:8080";
  b.Health("lsn-00000002", udp_name, model::HealthState::kDown);
  bed.Apply(b.model());

  const Outcome ack = bed.FeedOne(0, kClientPort, ClientTcp(c, 80, kAck, 1001, 1).Build());
  EXPECT_EQ(ack.action, SendOn(kClientPort, 54));
  ExpectDelta(bed,
              {.drops = {{DropReason::kNotSynNoConn, 1}},
               .events = {{WorkerEvent::kTcpResetsSent, 1}, {WorkerEvent::kConnsFlushed, 1}}},
              "TCP");
  const Outcome moved = bed.FeedOne(0, kClientPort, udp.Build());
  ASSERT_EQ(moved.action, SendOn(kBackendPort));
  EXPECT_NE(nat::Parse(moved.frame).dst_ip, udp_backend);
  ExpectDelta(bed,
              {.events = {{WorkerEvent::kConnsRescheduled, 1}, {WorkerEvent::kConnsFlushed, 1}}},
              "UDP");
}

// Two segments of a dead backend's connection in one burst: both reset, the connection
// released once (the second finds it erased by the first), its local port given back once.
TEST(DecideTable, ADeadConnectionTwiceInABurstIsReleasedOnce) {
  CoreBed bed;
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.11:8080", "198.18.1.12:8080"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001");
  bed.Apply(b.model());
  bed.LearnNeighbors();
  const std::uint16_t c = bed.ClientPortOwnedBy(0);
  const Outcome syn = bed.FeedOne(0, kClientPort, ClientTcp(c, 80, kSyn).Build());
  ASSERT_EQ(syn.action, SendOn(kBackendPort));
  const nat::PortPool& pool = *bed.core(0).pools[kBackendPort];
  ASSERT_EQ(pool.available(), pool.capacity() - 1);
  b.Health("lsn-00000001",
           nat::Parse(syn.frame).dst_ip == BackendIp(1) ? "198.18.1.11:8080" : "198.18.1.12:8080",
           model::HealthState::kDown);
  bed.Apply(b.model());
  bed.TakeDelta();
  const std::vector<Outcome> out =
      bed.Feed(0, kClientPort,
               {ClientTcp(c, 80, kAck, 1001, 1).Build(), ClientTcp(c, 80, kAck, 1001, 1).Build()});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].action, SendOn(kClientPort, 54));
  EXPECT_EQ(out[1].action, SendOn(kClientPort, 54));
  EXPECT_EQ(bed.core(0).table.size(), 0u);
  EXPECT_EQ(bed.core(0).active_conns.Read(), 0u);
  EXPECT_EQ(pool.available(), pool.capacity());
}

// A full table: fnat drops what it cannot track (nothing could translate the reply back), dnat
// sends new flows on statelessly through the listener's Maglev table, and, for a while after,
// also segments that arrive without state.
TEST(DecideTable, AFullTableDropsFnatAndSendsDnatOnStatelessly) {
  constexpr std::uint32_t kCapacity = 1024;
  CoreBed bed(/*workers=*/1, kCapacity);
  ModelBuilder b;
  bed.Apply(StandardModel(b));
  bed.LearnNeighbors();
  // Fill core 0's table with UDP flows.
  std::uint32_t opened = 0;
  for (std::uint16_t base = 10000; opened < 2 * kCapacity && bed.core(0).table.size() < kCapacity;
       base = static_cast<std::uint16_t>(base + kBurstSize)) {
    std::vector<Bytes> burst;
    for (std::uint16_t i = 0; i < kBurstSize; ++i) {
      PacketBuilder d;
      d.Macs(kClientPortMac, kClientMac).Ipv4(kClientIp, kVipIp).Udp(base + i, 53);
      burst.push_back(d.Payload(8).Build());
    }
    for (const Outcome& out : bed.Feed(0, kClientPort, burst)) {
      opened += out.action.verb == Verb::kSend ? 1 : 0;
    }
  }
  bed.TakeDelta();
  ASSERT_GE(opened, kCapacity * 8 / 10) << "the table took too few connections";
  const std::uint16_t c = 7000;
  const std::vector<Step> steps = {
      {"fnat SYN: table_full",
       kClientPort,
       [=] { return ClientTcp(c, 80, kSyn).Build(); },
       DropFor(DropReason::kTableFull),
       nullptr,
       {.drops = {{DropReason::kTableFull, 1}}}},
      {"dnat SYN: forwarded without state",
       kClientPort,
       [=] { return ClientTcp(c, 81, kSyn).Build(); },
       SendOn(kBackendPort),
       [=] {
         PacketBuilder f;
         f.Macs(BackendMac(3), kBackendPortMac).Ipv4(kClientIp, BackendIp(3)).Ttl(63);
         return f.Tcp(c, 8081, kSyn).TcpSeq(1000, 0).Build();
       },
       {.events = {{WorkerEvent::kTableFullFallbacks, 1}}}},
      {"dnat ACK without state, while the table is full: forwarded too",
       kClientPort,
       [=] { return ClientTcp(c, 81, kAck, 1001, 1).Build(); },
       SendOn(kBackendPort),
       [=] {
         PacketBuilder f;
         f.Macs(BackendMac(3), kBackendPortMac).Ipv4(kClientIp, BackendIp(3)).Ttl(63);
         return f.Tcp(c, 8081, kAck).TcpSeq(1001, 1).Build();
       },
       {.events = {{WorkerEvent::kTableFullFallbacks, 1}}}},
      {"the backend's reply: back from the VIP without state",
       kBackendPort,
       [=] {
         PacketBuilder r;
         r.Macs(kBackendPortMac, BackendMac(3)).Ipv4(BackendIp(3), kClientIp);
         return r.Tcp(8081, c, kSyn | kAck).TcpSeq(1, 1001).Build();
       },
       SendOn(kClientPort),
       [=] { return ToClient(81, c, kSyn | kAck, 1, 1001).Build(); },
       {.events = {{WorkerEvent::kTableFullFallbacks, 1}}}},
      {"a minute later, an ACK without state is reset again",
       kClientPort,
       [=] { return ClientTcp(c, 81, kAck, 1001, 2).Build(); },
       SendOn(kClientPort, 54),
       [=] {
         PacketBuilder r;
         r.Macs(kClientMac, kClientPortMac).Ipv4(kVipIp, kClientIp).Tcp(81, c, kRst);
         return r.TcpSeq(2, 0).TcpWindow(0).Build();
       },
       {.drops = {{DropReason::kNotSynNoConn, 1}}, .events = {{WorkerEvent::kTcpResetsSent, 1}}},
       60'000},
  };
  RunSteps(bed, 0, steps);
}

// dnat both ways: the client's address reaches the backend, and the reply leaves from the VIP.
TEST(DecideTable, DnatConversation) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(StandardModel(b));
  bed.LearnNeighbors();
  const std::uint16_t c = bed.ClientPortOwnedBy(0);
  const auto other = bed.ClientPortOwnedBy(0, static_cast<std::uint16_t>(c + 1));
  auto to_backend = [c](std::uint8_t flags, std::uint32_t seq, std::uint32_t ack) {
    PacketBuilder f;
    f.Macs(BackendMac(3), kBackendPortMac).Ipv4(kClientIp, BackendIp(3)).Ttl(63);
    return f.Tcp(c, 8081, flags).TcpSeq(seq, ack).Build();
  };
  auto from_backend = [c](std::uint8_t flags, std::uint32_t seq, std::uint32_t ack) {
    PacketBuilder f;
    f.Macs(kBackendPortMac, BackendMac(3)).Ipv4(BackendIp(3), kClientIp);
    return f.Tcp(8081, c, flags).TcpSeq(seq, ack).Build();
  };
  const std::vector<Step> steps = {
      {"SYN", kClientPort, [=] { return ClientTcp(c, 81, kSyn, 1000).Build(); },
       SendOn(kBackendPort), [=] { return to_backend(kSyn, 1000, 0); }},
      {"SYN-ACK", kBackendPort, [=] { return from_backend(kSyn | kAck, 9000, 1001); },
       SendOn(kClientPort), [=] { return ToClient(81, c, kSyn | kAck, 9000, 1001).Build(); }},
      {"ACK", kClientPort, [=] { return ClientTcp(c, 81, kAck, 1001, 9001).Build(); },
       SendOn(kBackendPort), [=] { return to_backend(kAck, 1001, 9001); }},
      {"a backend's segment for a flow it has no state for: not ours",
       kBackendPort,
       [=] {
         PacketBuilder f;
         f.Macs(kBackendPortMac, BackendMac(3)).Ipv4(BackendIp(3), kClientIp);
         return f.Tcp(8081, other, kAck).Build();
       },
       DropFor(DropReason::kNotLocal),
       nullptr,
       {.drops = {{DropReason::kNotLocal, 1}}}},
  };
  RunSteps(bed, 0, steps);
}

// A flow another core owns, both ways: each side arrives at the wrong core, is handed to the
// owner unchanged, and leaves from there, through the owner's own local port.
TEST(DecideTable, FnatAcrossCores) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(StandardModel(b));
  bed.LearnNeighbors();
  bed.TakeDelta();
  const std::uint16_t c = bed.ClientPortOwnedBy(1);
  const Bytes syn = ClientTcp(c, 80, kSyn).Build();
  Outcome out = bed.FeedOne(0, kClientPort, syn);
  ExpectOutcome(out, HandTo(1), syn, "SYN at core 0");
  out = bed.FeedOne(1, kClientPort, out.frame, /*handed_off=*/true);
  ExpectOutcome(out, SendOn(kBackendPort),
                ToBackend(1, kLocal1, kFirstLocalPort1, 8080, kSyn).Build(), "SYN at core 1");

  const Bytes syn_ack =
      BackendTcp(1, kLocal1, kFirstLocalPort1, 8080, kSyn | kAck, 5, 1001).Build();
  out = bed.FeedOne(0, kBackendPort, syn_ack);
  ExpectOutcome(out, HandTo(1), syn_ack, "SYN-ACK at core 0 (the local port is core 1's)");
  out = bed.FeedOne(1, kBackendPort, out.frame, /*handed_off=*/true);
  ExpectOutcome(out, SendOn(kClientPort), ToClient(80, c, kSyn | kAck, 5, 1001).Build(),
                "SYN-ACK at core 1");
  ExpectDelta(bed, {.events = {{WorkerEvent::kHandoffs, 2}}}, "the hand-offs");
  EXPECT_EQ(bed.core(0).table.size(), 0u);
  EXPECT_EQ(bed.core(1).table.size(), 1u);
}

// A client whose MAC nobody has resolved (lbd restarted; the client's ARP cache still holds
// ours): its SYN's source MAC is kept, and the reply uses it at once, while the control thread
// is asked to confirm it.
TEST(DecideTable, AClientIsLearntFromItsSyn) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(StandardModel(b));
  bed.LearnNeighbors();
  bed.ForgetClient();
  bed.TakeDelta();
  const std::uint16_t c = bed.ClientPortOwnedBy(0);
  Outcome out = bed.FeedOne(0, kClientPort, ClientTcp(c, 80, kSyn).Build());
  ExpectOutcome(out, SendOn(kBackendPort),
                ToBackend(1, kLocal1, kFirstLocalPort0, 8080, kSyn).Build(), "SYN");
  const std::vector<Message> reports = bed.Reports(0);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].type, MessageType::kResolve);
  EXPECT_EQ(reports[0].ip, kClientIp);
  EXPECT_EQ(reports[0].port, kClientPort);
  out = bed.FeedOne(0, kBackendPort,
                    BackendTcp(1, kLocal1, kFirstLocalPort0, 8080, kSyn | kAck, 5, 1001).Build());
  ExpectOutcome(out, SendOn(kClientPort), ToClient(80, c, kSyn | kAck, 5, 1001).Build(),
                "SYN-ACK to the learnt MAC");
  ExpectDelta(bed, {.events = {{WorkerEvent::kArpResolveRequests, 1}}}, "the exchange");
}

// A new snapshot keeps the scheduler's count of a core's connections: shared with an unchanged
// listener, carried over (by backend) to a listener compiled anew.
TEST(DecideTable, SchedulerCountsSurviveANewSnapshot) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(StandardModel(b));
  bed.LearnNeighbors();
  const std::uint16_t c = bed.ClientPortOwnedBy(0);
  ASSERT_EQ(bed.FeedOne(0, kClientPort, ClientTcp(c, 80, kSyn).Build()).action,
            SendOn(kBackendPort));
  auto tcp_listener = [&bed]() -> const ListenerConfig* {
    return bed.snapshot().listener(bed.snapshot().v4.services.Find(kVipIp, 80, nat::kIpProtoTcp));
  };
  const ListenerConfig* before = tcp_listener();
  ASSERT_NE(before, nullptr);
  auto active = [&bed](const ListenerConfig* l, std::uint16_t index) {
    return bed.core(0).scheduler(l->slot).active_connections(index);
  };
  EXPECT_EQ(bed.core(0).scheduling[before->slot].config, before);
  EXPECT_EQ(active(before, 0), 1u);

  // Another listener's backend goes down: this one is shared, its count untouched.
  b.Health("lsn-00000002", "198.18.1.12:5353", model::HealthState::kDown);
  bed.Apply(b.model());
  EXPECT_EQ(tcp_listener(), before);
  EXPECT_EQ(active(tcp_listener(), 0), 1u);

  // Its own group changes: compiled anew, the count carried over.
  ASSERT_TRUE(b.model().AddBackend("sg-00000001", testing::Ep("198.18.1.14:8080"), 10).ok());
  bed.Apply(b.model());
  const ListenerConfig* after = tcp_listener();
  ASSERT_NE(after, before);
  const std::optional<std::uint16_t> index = after->set.Find(nat::Endpoint4{BackendIp(1), 8080});
  ASSERT_TRUE(index.has_value());
  EXPECT_EQ(bed.core(0).scheduling[after->slot].config, after);
  EXPECT_EQ(active(after, *index), 1u);
}

// A core rebinds only the listeners the snapshot lists as changed since the one it runs; a
// core that skipped a generation (it never ran the snapshot the next was compiled against)
// compares every slot, so nothing the skipped snapshot changed is missed.
TEST(DecideTable, ACoreThatSkippedAGenerationRebindsEveryChangedListener) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(StandardModel(b));
  bed.LearnNeighbors();
  const std::uint16_t c = bed.ClientPortOwnedBy(0);
  ASSERT_EQ(bed.FeedOne(0, kClientPort, ClientTcp(c, 80, kSyn).Build()).action,
            SendOn(kBackendPort));
  const std::uint32_t tcp = bed.snapshot().v4.services.Find(kVipIp, 80, nat::kIpProtoTcp);
  const std::uint32_t udp = bed.snapshot().v4.services.Find(kVipIp, 53, nat::kIpProtoUdp);
  const std::uint32_t dnat = bed.snapshot().v4.services.Find(kVipIp, 81, nat::kIpProtoTcp);
  const ListenerConfig* dnat_config = bed.snapshot().listener(dnat);

  ASSERT_TRUE(b.model().AddBackend("sg-00000001", testing::Ep("198.18.1.14:8080"), 10).ok());
  bed.Apply(b.model(), /*adopt=*/false);
  EXPECT_EQ(bed.snapshot().changed_listener_slots, std::vector<std::uint32_t>{tcp});
  ASSERT_TRUE(b.model().DeleteListener("lsn-00000002").ok());
  bed.Apply(b.model());
  // Against the skipped snapshot only the UDP listener changed; the core rebinds both.
  EXPECT_EQ(bed.snapshot().changed_listener_slots, std::vector<std::uint32_t>{udp});
  const ListenerConfig* now = bed.snapshot().listener(tcp);
  ASSERT_NE(now, nullptr);
  EXPECT_EQ(bed.core(0).scheduling[tcp].config, now);
  const std::optional<std::uint16_t> index = now->set.Find(nat::Endpoint4{BackendIp(1), 8080});
  ASSERT_TRUE(index.has_value());
  EXPECT_EQ(bed.core(0).scheduler(tcp).active_connections(*index), 1u);
  EXPECT_EQ(bed.core(0).scheduling[udp].config, nullptr);
  EXPECT_EQ(bed.core(0).scheduler(udp).set(), nullptr);
  EXPECT_EQ(bed.core(0).scheduling[dnat].config, dnat_config);  // shared all along
}

// Session persistence: a client's new connections, on whichever core, go where its first went
// while the window lasts; a listener without it spreads the same client over the group.
TEST(DecideTable, PersistenceKeepsAClientOnOneBackendOnEveryCore) {
  CoreBed bed;
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.11:8080", "198.18.1.12:8080", "198.18.1.13:8080"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001")
      .Listener("lsn-00000002", Protocol::kTcp, 81, "sg-00000001")
      .Persistence("lsn-00000001", 30);
  bed.Apply(b.model());
  bed.LearnNeighbors();
  bed.TakeDelta();
  std::uint16_t next_port = 40000;
  // Opens `count` connections from `client` to `vport`, alternating the owning core; returns
  // the backends they reached, by backend address.
  const auto open = [&](std::uint32_t client, std::uint16_t vport, int count) {
    std::map<std::uint32_t, int> reached;
    for (int i = 0; i < count; ++i) {
      const std::uint32_t core = static_cast<std::uint32_t>(i) % 2;
      while (ClientOwner(client, next_port, 2) != core) {
        ++next_port;
      }
      PacketBuilder syn;
      syn.Macs(kClientPortMac, client == kClientIp ? kClientMac : kClient2Mac)
          .Ipv4(client, kVipIp)
          .Tcp(next_port++, vport, kSyn);
      const Outcome out = bed.FeedOne(core, kClientPort, syn.Build());
      EXPECT_EQ(out.action, SendOn(kBackendPort)) << i;
      ++reached[nat::Parse(out.frame).dst_ip];
    }
    return reached;
  };

  const std::map<std::uint32_t, int> spread = open(kClientIp, 81, 12);
  EXPECT_EQ(spread.size(), 3u) << "wrr without persistence";
  ExpectDelta(bed, {}, "no persistence on :81");

  const std::map<std::uint32_t, int> first = open(kClientIp, 80, 12);
  ASSERT_EQ(first.size(), 1u);
  const std::uint32_t chosen = first.begin()->first;
  ExpectDelta(bed,
              {.events = {{WorkerEvent::kPersistRecorded, 1}, {WorkerEvent::kPersistHits, 11}}},
              "one client, twelve connections on two cores");
  EXPECT_EQ(open(kClient2Ip, 80, 4).size(), 1u);
  ExpectDelta(bed, {.events = {{WorkerEvent::kPersistRecorded, 1}, {WorkerEvent::kPersistHits, 3}}},
              "another client has an entry of its own");

  // Each connection extends the window: 20 s later the entry still holds, 31 s after the last
  // connection it has ended and the client is scheduled afresh.
  bed.Advance(20'000);
  EXPECT_EQ(open(kClientIp, 80, 2), (std::map<std::uint32_t, int>{{chosen, 2}}));
  ExpectDelta(bed, {.events = {{WorkerEvent::kPersistHits, 2}}}, "20 s later");
  bed.Advance(29'000);
  EXPECT_EQ(open(kClientIp, 80, 1), (std::map<std::uint32_t, int>{{chosen, 1}}));
  ExpectDelta(bed, {.events = {{WorkerEvent::kPersistHits, 1}}}, "29 s after the last");
  bed.Advance(32'000);
  const std::map<std::uint32_t, int> after = open(kClientIp, 80, 6);
  EXPECT_EQ(after.size(), 1u);
  ExpectDelta(bed, {.events = {{WorkerEvent::kPersistRecorded, 1}, {WorkerEvent::kPersistHits, 5}}},
              "after the window: a new entry");

  // Its backend goes down, then comes back at weight 0: the client moves, each time once.
  const std::uint32_t now_on = after.begin()->first;
  const auto name = [](std::uint32_t ip) {
    return "198.18.1." + std::to_string(ip & 0xff) + ":8080";
  };
  b.Health("lsn-00000001", name(now_on), model::HealthState::kDown);
  bed.Apply(b.model());
  const std::map<std::uint32_t, int> moved = open(kClientIp, 80, 4);
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_NE(moved.begin()->first, now_on);
  ExpectDelta(bed,
              {.events = {{WorkerEvent::kPersistMoved, 1},
                          {WorkerEvent::kPersistRecorded, 1},
                          {WorkerEvent::kPersistHits, 3}}},
              "its backend down");
  b.Health("lsn-00000001", name(now_on), model::HealthState::kUp);
  ASSERT_TRUE(b.model().SetWeight("sg-00000001", testing::Ep(name(moved.begin()->first)), 0).ok());
  bed.Apply(b.model());
  const std::map<std::uint32_t, int> again = open(kClientIp, 80, 4);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_NE(again.begin()->first, moved.begin()->first);
  ExpectDelta(bed,
              {.events = {{WorkerEvent::kPersistMoved, 1},
                          {WorkerEvent::kPersistRecorded, 1},
                          {WorkerEvent::kPersistHits, 3}}},
              "its backend at weight 0");
}

}  // namespace
}  // namespace fulcrum::dataplane

namespace fulcrum::dataplane {
namespace {

// The Proxy Protocol v2 header of the bed's client at `cport` to the VIP's `vport`, written out
// byte by byte from the specification (section 2.2).
Bytes ProxyV2(std::uint16_t cport, std::uint16_t vport) {
  Bytes h = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
             0x21, 0x11, 0x00, 0x0c, 198,  18,   0,    2,    198,  18,   100,  10};
  for (std::uint16_t port : {cport, vport}) {
    h.push_back(static_cast<std::uint8_t>(port >> 8));
    h.push_back(static_cast<std::uint8_t>(port));
  }
  return h;
}

// Sent to the backend grown by `grown` bytes into the headroom, `length` long.
Action SentGrown(std::size_t length, std::size_t grown) {
  return {.verb = Verb::kSend,
          .port = kBackendPort,
          .length = static_cast<std::uint16_t>(length),
          .offset = static_cast<std::int16_t>(-static_cast<int>(grown))};
}

// NOP NOP SACK with one block.
Bytes Sack(std::uint32_t left, std::uint32_t right) {
  Bytes o = {1, 1, 5, 10};
  for (std::uint32_t edge : {left, right}) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      o.push_back(static_cast<std::uint8_t>(edge >> shift));
    }
  }
  return o;
}

TEST(DecideTable, ProxyV2HeaderGoesAheadOfTheClientsBytesAndEveryNumberShifts) {
  CoreBed bed;
  ModelBuilder b;
  StandardModel(b);
  b.ClientIp("lsn-00000001", model::ClientIpMode::kProxyV2);
  bed.Apply(b.model());
  bed.LearnNeighbors();
  const std::uint16_t c = bed.ClientPortOwnedBy(0);
  const std::uint16_t l = kFirstLocalPort0;
  const Bytes header = ProxyV2(c, 80);
  const std::uint32_t n = static_cast<std::uint32_t>(header.size());  // 28
  const Bytes hello(100, 0x68);
  const Delta one_header = {.events = {{WorkerEvent::kClientAddrInserted, 1}}};
  // The client's ISN is 0xffffffe0: its numbers wrap to 0 within the first 32 bytes.
  constexpr std::uint32_t kIsn = 0xffffffe0u;
  constexpr std::uint32_t kStart = kIsn + 1;
  const std::vector<Step> steps = {
      {"SYN: unchanged", kClientPort, [=] { return ClientTcp(c, 80, kSyn, kIsn).Build(); },
       SendOn(kBackendPort), [=] { return ToBackend(1, kLocal1, l, 8080, kSyn, kIsn).Build(); }},
      {"SYN-ACK: acknowledges the SYN alone", kBackendPort,
       [=] { return BackendTcp(1, kLocal1, l, 8080, kSyn | kAck, 5000, kStart).Build(); },
       SendOn(kClientPort), [=] { return ToClient(80, c, kSyn | kAck, 5000, kStart).Build(); }},
      {"the handshake's ACK carries the header", kClientPort,
       [=] { return ClientTcp(c, 80, kAck, kStart, 5001).Build(); }, SentGrown(54 + n, n),
       [=] { return ToBackend(1, kLocal1, l, 8080, kAck, kStart, 5001).Payload(header).Build(); },
       one_header},
      {"the first data follows the header", kClientPort,
       [=] { return ClientTcp(c, 80, kAck | kPsh, kStart, 5001).Payload(hello).Build(); },
       SendOn(kBackendPort),
       [=] {
         return ToBackend(1, kLocal1, l, 8080, kAck | kPsh, kStart + n, 5001)
             .Payload(hello)
             .Build();
       }},
      {"an ACK of part of the header acknowledges none of the client's bytes", kBackendPort,
       [=] { return BackendTcp(1, kLocal1, l, 8080, kAck, 5001, kStart + 10).Build(); },
       SendOn(kClientPort), [=] { return ToClient(80, c, kAck, 5001, kStart).Build(); }},
      {"the client's retransmission brings the header again", kClientPort,
       [=] { return ClientTcp(c, 80, kAck | kPsh, kStart, 5001).Payload(hello).Build(); },
       SentGrown(154 + n, n),
       [=] {
         Bytes both = header;
         both.insert(both.end(), hello.begin(), hello.end());
         return ToBackend(1, kLocal1, l, 8080, kAck | kPsh, kStart, 5001).Payload(both).Build();
       },
       one_header},
      {"the backend's reply: its ACK and SACK edges in the client's numbering", kBackendPort,
       [=] {
         return BackendTcp(1, kLocal1, l, 8080, kAck | kPsh, 5001, kStart + n + 50)
             .TcpOptions(Sack(kStart + n + 60, kStart + n + 100))
             .Payload(hello)
             .Build();
       },
       SendOn(kClientPort),
       [=] {
         return ToClient(80, c, kAck | kPsh, 5001, kStart + 50)
             .TcpOptions(Sack(kStart + 60, kStart + 100))
             .Payload(hello)
             .Build();
       }},
      {"the whole header acknowledged: a repeat of the first data goes without it", kClientPort,
       [=] { return ClientTcp(c, 80, kAck | kPsh, kStart, 5101).Payload(hello).Build(); },
       SendOn(kBackendPort),
       [=] {
         return ToBackend(1, kLocal1, l, 8080, kAck | kPsh, kStart + n, 5101)
             .Payload(hello)
             .Build();
       }},
      {"a repeated SYN-ACK after that owes nothing", kBackendPort,
       [=] { return BackendTcp(1, kLocal1, l, 8080, kAck, 5101, kStart + 10).Build(); },
       SendOn(kClientPort), [=] { return ToClient(80, c, kAck, 5101, kStart).Build(); }},
      {"later data: shifted", kClientPort,
       [=] { return ClientTcp(c, 80, kAck | kPsh, kStart + 100, 5101).Payload(hello).Build(); },
       SendOn(kBackendPort),
       [=] {
         return ToBackend(1, kLocal1, l, 8080, kAck | kPsh, kStart + 100 + n, 5101)
             .Payload(hello)
             .Build();
       }},
      {"client FIN", kClientPort,
       [=] { return ClientTcp(c, 80, kFin | kAck, kStart + 200, 5101).Build(); },
       SendOn(kBackendPort),
       [=] { return ToBackend(1, kLocal1, l, 8080, kFin | kAck, kStart + 200 + n, 5101).Build(); }},
  };
  RunSteps(bed, 0, steps);
}

TEST(DecideTable, ProxyV2HeaderIsOwedAgainWhenTheBackendRepeatsItsSynAck) {
  CoreBed bed;
  ModelBuilder b;
  StandardModel(b);
  b.ClientIp("lsn-00000001", model::ClientIpMode::kProxyV2);
  bed.Apply(b.model());
  bed.LearnNeighbors();
  const std::uint16_t c = bed.ClientPortOwnedBy(0);
  const std::uint16_t l = kFirstLocalPort0;
  const Bytes header = ProxyV2(c, 80);
  const Delta one_header = {.events = {{WorkerEvent::kClientAddrInserted, 1}}};
  const auto ack_with_header = [=] {
    return ToBackend(1, kLocal1, l, 8080, kAck, 1001, 5001).Payload(header).Build();
  };
  const auto syn_ack = [=] {
    return BackendTcp(1, kLocal1, l, 8080, kSyn | kAck, 5000, 1001).Build();
  };
  const std::vector<Step> steps = {
      {"SYN", kClientPort, [=] { return ClientTcp(c, 80, kSyn, 1000).Build(); },
       SendOn(kBackendPort), [=] { return ToBackend(1, kLocal1, l, 8080, kSyn, 1000).Build(); }},
      {"SYN-ACK", kBackendPort, syn_ack, SendOn(kClientPort),
       [=] { return ToClient(80, c, kSyn | kAck, 5000, 1001).Build(); }},
      {"ACK with the header (lost on the way)", kClientPort,
       [=] { return ClientTcp(c, 80, kAck, 1001, 5001).Build(); },
       SentGrown(54 + header.size(), header.size()), ack_with_header, one_header},
      {"the backend, still waiting, repeats its SYN-ACK", kBackendPort, syn_ack,
       SendOn(kClientPort), [=] { return ToClient(80, c, kSyn | kAck, 5000, 1001).Build(); }},
      {"the client's duplicate ACK brings the header again", kClientPort,
       [=] { return ClientTcp(c, 80, kAck, 1001, 5001).Build(); },
       SentGrown(54 + header.size(), header.size()), ack_with_header, one_header},
      {"the backend has it", kBackendPort,
       [=] { return BackendTcp(1, kLocal1, l, 8080, kAck, 5001, 1001 + 28).Build(); },
       SendOn(kClientPort), [=] { return ToClient(80, c, kAck, 5001, 1001).Build(); }},
      {"a pure ACK at the start later: shifted, no header", kClientPort,
       [=] { return ClientTcp(c, 80, kAck, 1001, 5001).Build(); }, SendOn(kBackendPort),
       [=] { return ToBackend(1, kLocal1, l, 8080, kAck, 1001 + 28, 5001).Build(); }},
  };
  RunSteps(bed, 0, steps);
}

TEST(DecideTable, ToaGoesInEverySegmentThatStartsAtTheClientsFirstByte) {
  CoreBed bed;
  ModelBuilder b;
  StandardModel(b);
  b.ClientIp("lsn-00000001", model::ClientIpMode::kToa);
  bed.Apply(b.model());
  bed.LearnNeighbors();
  const std::uint16_t c = bed.ClientPortOwnedBy(0);
  const std::uint16_t l = kFirstLocalPort0;
  const Bytes toa = {
      254, 8, static_cast<std::uint8_t>(c >> 8), static_cast<std::uint8_t>(c), 198, 18, 0, 2};
  const Bytes ts = {1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9};
  Bytes ts_toa = ts;
  ts_toa.insert(ts_toa.end(), toa.begin(), toa.end());
  const Bytes hello(100, 0x68);
  const Delta one_option = {.events = {{WorkerEvent::kClientAddrInserted, 1}}};
  const std::vector<Step> steps = {
      {"SYN", kClientPort, [=] { return ClientTcp(c, 80, kSyn, 1000).Build(); },
       SendOn(kBackendPort), [=] { return ToBackend(1, kLocal1, l, 8080, kSyn, 1000).Build(); }},
      {"SYN-ACK", kBackendPort,
       [=] { return BackendTcp(1, kLocal1, l, 8080, kSyn | kAck, 5000, 1001).Build(); },
       SendOn(kClientPort), [=] { return ToClient(80, c, kSyn | kAck, 5000, 1001).Build(); }},
      {"the handshake's ACK: TOA after its options", kClientPort,
       [=] { return ClientTcp(c, 80, kAck, 1001, 5001).TcpOptions(ts).Build(); },
       SentGrown(54 + 12 + 8, 8),
       [=] { return ToBackend(1, kLocal1, l, 8080, kAck, 1001, 5001).TcpOptions(ts_toa).Build(); },
       one_option},
      {"the first data: TOA too, numbers unchanged", kClientPort,
       [=] { return ClientTcp(c, 80, kAck | kPsh, 1001, 5001).Payload(hello).Build(); },
       SentGrown(54 + 8 + 100, 8),
       [=] {
         return ToBackend(1, kLocal1, l, 8080, kAck | kPsh, 1001, 5001)
             .TcpOptions(toa)
             .Payload(hello)
             .Build();
       },
       one_option},
      {"a full first segment has no room: sent as it is, counted",
       kClientPort,
       [=] { return ClientTcp(c, 80, kAck | kPsh, 1001, 5001).Payload(Bytes(1460, 1)).Build(); },
       SendOn(kBackendPort),
       [=] {
         return ToBackend(1, kLocal1, l, 8080, kAck | kPsh, 1001, 5001)
             .Payload(Bytes(1460, 1))
             .Build();
       },
       {.events = {{WorkerEvent::kToaNoRoom, 1}}}},
      {"the reply: unchanged", kBackendPort,
       [=] { return BackendTcp(1, kLocal1, l, 8080, kAck, 5001, 1101).Build(); },
       SendOn(kClientPort), [=] { return ToClient(80, c, kAck, 5001, 1101).Build(); }},
      {"later data: no option", kClientPort,
       [=] { return ClientTcp(c, 80, kAck | kPsh, 1101, 5001).Payload(hello).Build(); },
       SendOn(kBackendPort),
       [=] {
         return ToBackend(1, kLocal1, l, 8080, kAck | kPsh, 1101, 5001).Payload(hello).Build();
       }},
  };
  RunSteps(bed, 0, steps);
}

}  // namespace
}  // namespace fulcrum::dataplane

namespace fulcrum::dataplane {
namespace {

TEST(DecideTable, AclsRefuseNewConnectionsOfClientsTheyExclude) {
  CoreBed bed;
  ModelBuilder b;
  StandardModel(b);
  // tcp :80 allows only 198.18.0.2; udp :53 denies 198.18.0.0/30 (both clients' .2 and .3).
  b.Acl("acl-00000001", {"198.18.0.2", "2001:db8::/32"}, "lsn-00000001", model::AclType::kAllow)
      .Acl("acl-00000002", {"198.18.0.0/30"}, "lsn-00000002", model::AclType::kDeny);
  bed.Apply(b.model());
  bed.LearnNeighbors();
  bed.TakeDelta();
  const auto syn_from = [](std::uint32_t client, const testing::Mac& mac, std::uint16_t port) {
    PacketBuilder syn;
    return syn.Macs(kClientPortMac, mac).Ipv4(client, kVipIp).Tcp(port, 80, kSyn).Build();
  };
  const std::uint16_t p0 = bed.ClientPortOwnedBy(0);
  EXPECT_EQ(bed.FeedOne(0, kClientPort, syn_from(kClientIp, kClientMac, p0)).action,
            SendOn(kBackendPort));
  ExpectDelta(bed, {}, "an allowed client opens");
  std::uint16_t p2 = 40000;
  while (ClientOwner(kClient2Ip, p2, 2) != 0) {
    ++p2;
  }
  EXPECT_EQ(bed.FeedOne(0, kClientPort, syn_from(kClient2Ip, kClient2Mac, p2)).action,
            DropFor(DropReason::kAclDenied));
  ExpectDelta(bed, {.drops = {{DropReason::kAclDenied, 1}}}, "another client: no answer");

  PacketBuilder dns;
  dns.Macs(kClientPortMac, kClientMac).Ipv4(kClientIp, kVipIp).Udp(p0, 53).Payload(Bytes(20, 1));
  EXPECT_EQ(bed.FeedOne(0, kClientPort, dns.Build()).action, DropFor(DropReason::kAclDenied));
  ExpectDelta(bed, {.drops = {{DropReason::kAclDenied, 1}}}, "a denied network's datagram");

  // Dropping the list lets everyone in again; existing connections were never affected.
  model::ListenerOptions off;
  off.acl = "off";
  ASSERT_TRUE(b.model().ModifyListener("lsn-00000001", off).ok());
  bed.Apply(b.model());
  EXPECT_EQ(bed.FeedOne(0, kClientPort, syn_from(kClient2Ip, kClient2Mac, p2)).action,
            SendOn(kBackendPort));
  ExpectDelta(bed, {}, "without the list");
}

}  // namespace
}  // namespace fulcrum::dataplane
