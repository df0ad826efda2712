// The pipeline's decisions for IPv6, as data (tests/dataplane/core_bed.h): the same stages as
// IPv4 with the family as a type parameter, so these tables mirror decide_test.cc's: frames and
// core state in, actions, frames and counters out, every expected frame built independently.
// The model serves both families at once: an IPv6 VIP next to the IPv4 one.
#include <algorithm>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dataplane/decide.h"
#include "nat/bytes.h"
#include "nat/ndp.h"
#include "nat/packet6.h"
#include "tests/dataplane/core_bed.h"
#include "tests/dataplane/model_fixture.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::dataplane {
namespace {

using fulcrum::testing::PacketBuilder;
using model::ForwardMode;
using model::Protocol;
using nat::DropReason;
using testing::BackendIp6;
using testing::BackendMac;
using testing::Bytes;
using testing::Client2Ip6;
using testing::ClientIp6;
using testing::Consumed;
using testing::CoreBed;
using testing::DropFor;
using testing::ExpectDelta;
using testing::ExpectOutcome;
using testing::HandTo;
using testing::Ip6;
using testing::Ip6Bytes;
using testing::kBackendPort;
using testing::kBackendPortMac;
using testing::kClient2Mac;
using testing::kClientMac;
using testing::kClientPort;
using testing::kClientPortMac;
using testing::kLb6;
using testing::kVip6;
using testing::LocalIp6;
using testing::ModelBuilder;
using testing::Outcome;
using testing::RunSteps;
using testing::SendOn;
using testing::Step;
using testing::VipIp6;
using testing::Wide6;

constexpr std::uint8_t kSyn = nat::kTcpSyn;
constexpr std::uint8_t kAck = nat::kTcpAck;
constexpr std::uint8_t kFin = nat::kTcpFin;
constexpr std::uint8_t kPsh = nat::kTcpPsh;
constexpr std::uint16_t kFirstLocalPort0 = 1024;
constexpr std::uint16_t kFirstLocalPort1 = 1025;
// An IPv6 TCP reset: Ethernet, the fixed header, 20 bytes of TCP.
constexpr std::uint16_t kReset6Bytes = 14 + 40 + 20;

// An IPv4 listener (tcp :80 fnat) and, on the IPv6 VIP, tcp :80 fnat to [2001:db8:1::11]:8080,
// udp :53 fnat to [2001:db8:1::12]:5353, tcp :81 dnat to [2001:db8:1::13]:8081, and NAT64: tcp
// :84 to 198.18.1.14:8084 and udp :54 to 198.18.1.14:5354.
model::Model& DualModel(ModelBuilder& b) {
  b.Group("sg-00000001", {"198.18.1.11:8080"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001")
      .Lb(kLb6, kVip6)
      .Group("sg-00000011", {"[2001:db8:1::11]:8080"})
      .Group("sg-00000012", {"[2001:db8:1::12]:5353"})
      .Group("sg-00000013", {"[2001:db8:1::13]:8081"})
      .Listener("lsn-00000011", Protocol::kTcp, 80, "sg-00000011")
      .Listener("lsn-00000012", Protocol::kUdp, 53, "sg-00000012", ForwardMode::kFnat, 30)
      .Listener("lsn-00000013", Protocol::kTcp, 81, "sg-00000013", ForwardMode::kDnat)
      .Group("sg-00000014", {"198.18.1.14:8084"})
      .Group("sg-00000015", {"198.18.1.14:5354"})
      .Listener("lsn-00000014", Protocol::kTcp, 84, "sg-00000014")
      .Listener("lsn-00000015", Protocol::kUdp, 54, "sg-00000015", ForwardMode::kFnat, 30);
  return b.model();
}

PacketBuilder ClientTcp6(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags,
                         std::uint32_t seq = 1000, std::uint32_t ack = 0) {
  PacketBuilder b;
  b.Macs(kClientPortMac, kClientMac).Ipv6(ClientIp6(), VipIp6()).Tcp(sport, dport, flags);
  b.TcpSeq(seq, ack);
  return b;
}

// The segment as the backend must see it through fnat: from local address `local` (1..4),
// hop limit - 1.
PacketBuilder ToBackend6(int backend, int local, std::uint16_t lport, std::uint16_t bport,
                         std::uint8_t flags, std::uint32_t seq = 1000, std::uint32_t ack = 0) {
  PacketBuilder b;
  b.Macs(BackendMac(backend), kBackendPortMac)
      .Ipv6(LocalIp6(local), BackendIp6(backend))
      .Ttl(63)
      .Tcp(lport, bport, flags)
      .TcpSeq(seq, ack);
  return b;
}

PacketBuilder BackendTcp6(int backend, int local, std::uint16_t lport, std::uint16_t bport,
                          std::uint8_t flags, std::uint32_t seq, std::uint32_t ack) {
  PacketBuilder b;
  b.Macs(kBackendPortMac, BackendMac(backend))
      .Ipv6(BackendIp6(backend), LocalIp6(local))
      .Tcp(bport, lport, flags)
      .TcpSeq(seq, ack);
  return b;
}

PacketBuilder ToClient6(std::uint16_t vport, std::uint16_t cport, std::uint8_t flags,
                        std::uint32_t seq, std::uint32_t ack) {
  PacketBuilder b;
  b.Macs(kClientMac, kClientPortMac).Ipv6(VipIp6(), ClientIp6()).Ttl(63).Tcp(vport, cport, flags);
  b.TcpSeq(seq, ack);
  return b;
}

Bytes Concat(const Ip6Bytes& ip, Bytes rest) {
  Bytes out(ip.begin(), ip.end());
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

// The client's neighbour solicitation for `target`, to its solicited-node group.
Bytes Solicitation(const Ip6Bytes& target) {
  Ip6Bytes group = Ip6("ff02::1:ff00:0");
  std::copy(target.begin() + 13, target.end(), group.begin() + 13);
  const testing::Mac group_mac = {0x33, 0x33, 0xff, target[13], target[14], target[15]};
  PacketBuilder b;
  b.Macs(group_mac, kClientMac).Ipv6(ClientIp6(), group).Ttl(255).Icmpv6(135, 0, 0);
  return b
      .Payload(Concat(target, {1, 1, kClientMac[0], kClientMac[1], kClientMac[2], kClientMac[3],
                               kClientMac[4], kClientMac[5]}))
      .Build();
}

// Our advertisement "`target` is at the client port's MAC", solicited, override.
Bytes Advertisement(const Ip6Bytes& target) {
  PacketBuilder b;
  b.Macs(kClientMac, kClientPortMac).Ipv6(target, ClientIp6()).Ttl(255).Icmpv6(136, 0, 0x60000000);
  return b
      .Payload(Concat(target, {2, 1, kClientPortMac[0], kClientPortMac[1], kClientPortMac[2],
                               kClientPortMac[3], kClientPortMac[4], kClientPortMac[5]}))
      .Build();
}

struct Row {
  std::string name;
  std::function<Bytes()> in;
  Action action;
  std::function<Bytes()> out;  // the frame sent or handed off; empty otherwise
  testing::Delta delta;
  std::uint32_t core = 0;
  std::uint8_t port = kClientPort;
};

const std::vector<Row>& Rows() {
  static const std::uint16_t p0 = CoreBed().Client6PortOwnedBy(0);
  static const std::uint16_t p1 = CoreBed().Client6PortOwnedBy(1);
  static const std::vector<Row> rows = {
      {"fnat SYN: scheduled, an IPv6 local address and port, to the backend",
       [=] { return ClientTcp6(p0, 80, kSyn).Build(); },
       SendOn(kBackendPort),
       [=] { return ToBackend6(1, 1, kFirstLocalPort0, 8080, kSyn).Build(); },
       {}},
      {"fnat SYN of a flow core 1 owns: handed off unchanged",
       [=] { return ClientTcp6(p1, 80, kSyn).Build(); },
       HandTo(1),
       [=] { return ClientTcp6(p1, 80, kSyn).Build(); },
       {.events = {{WorkerEvent::kHandoffs, 1}}}},
      {"fnat SYN on core 1 takes core 1's first local port",
       [=] { return ClientTcp6(p1, 80, kSyn).Build(); },
       SendOn(kBackendPort),
       [=] { return ToBackend6(1, 1, kFirstLocalPort1, 8080, kSyn).Build(); },
       {},
       1},
      {"dnat SYN: only the destination changes",
       [=] { return ClientTcp6(p0, 81, kSyn).Build(); },
       SendOn(kBackendPort),
       [=] {
         PacketBuilder b;
         b.Macs(BackendMac(3), kBackendPortMac).Ipv6(ClientIp6(), BackendIp6(3)).Ttl(63);
         return b.Tcp(p0, 8081, kSyn).TcpSeq(1000, 0).Build();
       },
       {}},
      {"UDP datagram: opens a flow",
       [=] {
         PacketBuilder b;
         b.Macs(kClientPortMac, kClientMac).Ipv6(ClientIp6(), VipIp6()).Udp(p0, 53);
         return b.Payload(20, 0x61).Build();
       },
       SendOn(kBackendPort),
       [=] {
         PacketBuilder b;
         b.Macs(BackendMac(2), kBackendPortMac).Ipv6(LocalIp6(1), BackendIp6(2)).Ttl(63);
         return b.Udp(kFirstLocalPort0, 5353).Payload(20, 0x61).Build();
       },
       {}},
      {"an ACK without a connection: an IPv6 reset (seq = ACK), extension headers gone",
       [=] {
         return ClientTcp6(p0, 80, kAck | kPsh, 5000, 7777)
             .Extension(nat::kIpProtoDestOptions, {0, 1, 4, 0, 0, 0, 0})  // PadN
             .Payload(10, 0x41)
             .Build();
       },
       SendOn(kClientPort, kReset6Bytes),
       [=] {
         PacketBuilder b;
         b.Macs(kClientMac, kClientPortMac).Ipv6(VipIp6(), ClientIp6()).Tcp(80, p0, nat::kTcpRst);
         return b.TcpSeq(7777, 0).TcpWindow(0).Build();
       },
       {.drops = {{DropReason::kNotSynNoConn, 1}}, .events = {{WorkerEvent::kTcpResetsSent, 1}}}},
      {"a port no listener serves: no_service",
       [=] { return ClientTcp6(p0, 99, kSyn).Build(); },
       DropFor(DropReason::kNoService),
       nullptr,
       {.drops = {{DropReason::kNoService, 1}}}},
      {"an address that is not ours: not_local",
       [=] { return ClientTcp6(p0, 80, kSyn).Ipv6(ClientIp6(), Ip6("2001:db8:100::99")).Build(); },
       DropFor(DropReason::kNotLocal),
       nullptr,
       {.drops = {{DropReason::kNotLocal, 1}}}},
      {"the IPv4 VIP's port on the IPv6 VIP is another service: no_service for udp :80",
       [=] {
         PacketBuilder b;
         b.Macs(kClientPortMac, kClientMac).Ipv6(ClientIp6(), VipIp6()).Udp(p0, 80);
         return b.Payload(4).Build();
       },
       DropFor(DropReason::kNoService),
       nullptr,
       {.drops = {{DropReason::kNoService, 1}}}},
      {"a fragment header: fragment",
       [=] {
         return ClientTcp6(p0, 80, kSyn)
             .Extension(nat::kIpProtoFragment, {0, 0, 1, 0, 0, 0, 7})
             .Build();
       },
       DropFor(DropReason::kFragment),
       nullptr,
       {.drops = {{DropReason::kFragment, 1}}}},
      {"a routing header with segments left: bad_header",
       [=] {
         Bytes routing = {2, 4, 1, 0, 0, 0, 0};  // length 2 (24 bytes), type 4, 1 segment left
         routing.resize(23, 0);
         return ClientTcp6(p0, 80, kSyn).Extension(nat::kIpProtoRouting, routing).Build();
       },
       DropFor(DropReason::kBadHeader),
       nullptr,
       {.drops = {{DropReason::kBadHeader, 1}}}},
      {"hop limit 1: ttl_exceeded",
       [=] { return ClientTcp6(p0, 80, kSyn).Ttl(1).Build(); },
       DropFor(DropReason::kTtlExceeded),
       nullptr,
       {.drops = {{DropReason::kTtlExceeded, 1}}}},
      {"a truncated header: truncated",
       [=] {
         Bytes frame = ClientTcp6(p0, 80, kSyn).Build();
         frame.resize(14 + 30);
         return frame;
       },
       DropFor(DropReason::kTruncated),
       nullptr,
       {.drops = {{DropReason::kTruncated, 1}}}},
      {"a ping to the VIP: answered",
       [=] {
         PacketBuilder b;
         b.Macs(kClientPortMac, kClientMac).Ipv6(ClientIp6(), VipIp6());
         return b.Icmpv6(nat::kIcmpv6EchoRequest, 0, 77 << 16 | 5).Payload(32, 0x41).Build();
       },
       SendOn(kClientPort),
       [=] {
         PacketBuilder b;
         b.Macs(kClientMac, kClientPortMac).Ipv6(VipIp6(), ClientIp6());
         return b.Icmpv6(nat::kIcmpv6EchoReply, 0, 77 << 16 | 5).Payload(32, 0x41).Build();
       },
       {.events = {{WorkerEvent::kIcmpEchoReplies, 1}}}},
      {"a solicitation for the VIP: advertised with the client port's MAC, the client learnt",
       [=] { return Solicitation(VipIp6()); },
       SendOn(kClientPort, nat::kNdpFrameBytes),
       [=] { return Advertisement(VipIp6()); },
       {.events = {{WorkerEvent::kArpLearned, 1}, {WorkerEvent::kArpRepliesSent, 1}}}},
      {"a solicitation for the client port's own address: advertised",
       [=] { return Solicitation(Ip6("2001:db8::1")); },
       SendOn(kClientPort, nat::kNdpFrameBytes),
       [=] { return Advertisement(Ip6("2001:db8::1")); },
       {.events = {{WorkerEvent::kArpLearned, 1}, {WorkerEvent::kArpRepliesSent, 1}}}},
      {"a solicitation for a local address on the wrong port: not_local",
       [=] { return Solicitation(LocalIp6(1)); },
       DropFor(DropReason::kNotLocal),
       nullptr,
       {.drops = {{DropReason::kNotLocal, 1}}}},
      {"a solicitation for someone else: not_local, the sender not learnt",
       [=] { return Solicitation(Ip6("2001:db8::99")); },
       DropFor(DropReason::kNotLocal),
       nullptr,
       {.drops = {{DropReason::kNotLocal, 1}}}},
      {"a solicitation that came through a router (hop limit 254): dropped by the parser",
       [=] {
         Bytes frame = Solicitation(VipIp6());
         frame[14 + 7] = 254;
         return frame;
       },
       DropFor(DropReason::kBadHeader),
       nullptr,
       {.drops = {{DropReason::kBadHeader, 1}}}},
  };
  return rows;
}

TEST(DecideIpv6Table, OnePacket) {
  for (const Row& row : Rows()) {
    SCOPED_TRACE(row.name);
    CoreBed bed;
    ModelBuilder b;
    bed.Apply(DualModel(b));
    bed.LearnNeighbors();
    bed.TakeDelta();
    const Outcome got = bed.FeedOne(row.core, row.port, row.in());
    ExpectOutcome(got, row.action, row.out ? row.out() : Bytes{}, row.name);
    ExpectDelta(bed, row.delta, row.name);
  }
}

// A whole fnat TCP connection both ways over IPv6.
TEST(DecideIpv6Table, FnatTcpConversation) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(DualModel(b));
  bed.LearnNeighbors();
  const std::uint16_t c = bed.Client6PortOwnedBy(0);
  const std::uint16_t l = kFirstLocalPort0;
  const Bytes hello(100, 0x68);
  const std::vector<Step> steps = {
      {"SYN", kClientPort, [=] { return ClientTcp6(c, 80, kSyn, 1000).Build(); },
       SendOn(kBackendPort), [=] { return ToBackend6(1, 1, l, 8080, kSyn, 1000).Build(); }},
      {"SYN-ACK", kBackendPort,
       [=] { return BackendTcp6(1, 1, l, 8080, kSyn | kAck, 5000, 1001).Build(); },
       SendOn(kClientPort), [=] { return ToClient6(80, c, kSyn | kAck, 5000, 1001).Build(); }},
      {"ACK with data", kClientPort,
       [=] { return ClientTcp6(c, 80, kAck | kPsh, 1001, 5001).Payload(hello).Build(); },
       SendOn(kBackendPort),
       [=] { return ToBackend6(1, 1, l, 8080, kAck | kPsh, 1001, 5001).Payload(hello).Build(); }},
      {"backend FIN", kBackendPort,
       [=] { return BackendTcp6(1, 1, l, 8080, kFin | kAck, 5001, 1101).Build(); },
       SendOn(kClientPort), [=] { return ToClient6(80, c, kFin | kAck, 5001, 1101).Build(); }},
      {"client FIN", kClientPort,
       [=] { return ClientTcp6(c, 80, kFin | kAck, 1101, 5002).Build(); }, SendOn(kBackendPort),
       [=] { return ToBackend6(1, 1, l, 8080, kFin | kAck, 1101, 5002).Build(); }},
      {"last ACK", kBackendPort,
       [=] { return BackendTcp6(1, 1, l, 8080, kAck, 5002, 1102).Build(); }, SendOn(kClientPort),
       [=] { return ToClient6(80, c, kAck, 5002, 1102).Build(); }},
      {"a segment after time_wait: reset",
       kClientPort,
       [=] { return ClientTcp6(c, 80, kAck, 1102, 5002).Build(); },
       SendOn(kClientPort, kReset6Bytes),
       [=] {
         PacketBuilder r;
         r.Macs(kClientMac, kClientPortMac).Ipv6(VipIp6(), ClientIp6()).Tcp(80, c, nat::kTcpRst);
         return r.TcpSeq(5002, 0).TcpWindow(0).Build();
       },
       {.drops = {{DropReason::kNotSynNoConn, 1}}, .events = {{WorkerEvent::kTcpResetsSent, 1}}},
       1001},
  };
  RunSteps(bed, 0, steps);
  CoreState& core = bed.core(0);
  EXPECT_EQ(core.table.size(), 0u);  // IPv6 connections never enter the IPv4 table
  EXPECT_EQ(core.new_conns.Read(), 1u);
  // The expired entry stays until an expiry pass, which gives its local port back.
  ASSERT_EQ(core.table6.size(), 1u);
  EXPECT_EQ(core.active_conns.Read(), 1u);
  const nat::PortPool6& pool = *core.pools6[kBackendPort];
  EXPECT_EQ(pool.available(), pool.capacity() - 1);
  core.table6.ExpireSome(core.now_ms, 1024,
                         [&core](const nat::ConnEntry6& e) { ReleaseConn(core, e); });
  EXPECT_EQ(core.table6.size(), 0u);
  EXPECT_EQ(core.active_conns.Read(), 0u);
  EXPECT_EQ(pool.available(), pool.capacity());
}

// The IPv6 packet inside `frame` (its Ethernet header dropped): what an ICMPv6 error quotes.
Bytes Quote(Bytes frame) { return Bytes(frame.begin() + 14, frame.end()); }

// An ICMPv6 Packet Too Big (MTU 1400) on `b`, quoting `quoted`.
Bytes TooBig(PacketBuilder& b, Bytes quoted) {
  return b.Icmpv6(nat::kIcmpv6PacketTooBig, 0, 1400).Payload(std::move(quoted)).Build();
}

// The same with MTU 1300.
Bytes TooBig1300(PacketBuilder& b, Bytes quoted) {
  return b.Icmpv6(nat::kIcmpv6PacketTooBig, 0, 1300).Payload(std::move(quoted)).Build();
}

// Path MTU discovery through the LB, both ways: a Packet Too Big about a tracked connection is
// translated for the other side, quoting that side's own packet, checksums right.
TEST(DecideIpv6Table, PacketTooBigIsTranslatedBothWays) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(DualModel(b));
  bed.LearnNeighbors();
  const std::uint16_t c = bed.Client6PortOwnedBy(0);
  const std::uint16_t l = kFirstLocalPort0;
  const Bytes data(1200, 0x64);
  const Ip6Bytes router = Ip6("2001:db8:1::fe");
  const std::vector<Step> steps = {
      {"SYN", kClientPort, [=] { return ClientTcp6(c, 80, kSyn, 1000).Build(); },
       SendOn(kBackendPort), [=] { return ToBackend6(1, 1, l, 8080, kSyn, 1000).Build(); }},
      {"SYN-ACK", kBackendPort,
       [=] { return BackendTcp6(1, 1, l, 8080, kSyn | kAck, 5000, 1001).Build(); },
       SendOn(kClientPort), [=] { return ToClient6(80, c, kSyn | kAck, 5000, 1001).Build(); }},
      {"a router on the backend side: too big, about our segment to the backend",
       kBackendPort,
       [=] {
         PacketBuilder e;
         e.Macs(kBackendPortMac, BackendMac(1)).Ipv6(router, LocalIp6(1));
         return TooBig(
             e, Quote(ToBackend6(1, 1, l, 8080, kAck | kPsh, 1001, 5001).Payload(data).Build()));
       },
       SendOn(kClientPort),
       [=] {
         PacketBuilder e;
         e.Macs(kClientMac, kClientPortMac).Ipv6(VipIp6(), ClientIp6()).Ttl(63);
         return TooBig(
             e, Quote(ClientTcp6(c, 80, kAck | kPsh, 1001, 5001).Ttl(63).Payload(data).Build()));
       },
       {.events = {{WorkerEvent::kIcmpErrorsTranslated, 1}}}},
      {"the client's side: too big, about our segment to the client",
       kClientPort,
       [=] {
         PacketBuilder e;
         e.Macs(kClientPortMac, kClientMac).Ipv6(ClientIp6(), VipIp6());
         return TooBig(e, Quote(ToClient6(80, c, kAck, 5001, 1001).Payload(data).Build()));
       },
       SendOn(kBackendPort),
       [=] {
         PacketBuilder e;
         e.Macs(BackendMac(1), kBackendPortMac).Ipv6(LocalIp6(1), BackendIp6(1)).Ttl(63);
         return TooBig(
             e, Quote(BackendTcp6(1, 1, l, 8080, kAck, 5001, 1001).Ttl(63).Payload(data).Build()));
       },
       {.events = {{WorkerEvent::kIcmpErrorsTranslated, 1}}}},
      {"an error about no connection: icmp_no_conn",
       kBackendPort,
       [=] {
         PacketBuilder e;
         e.Macs(kBackendPortMac, BackendMac(1)).Ipv6(router, LocalIp6(1));
         return TooBig(e, Quote(ToBackend6(1, 1, l + 2, 8080, kAck, 1, 1).Build()));
       },
       DropFor(DropReason::kIcmpNoConn),
       nullptr,
       {.drops = {{DropReason::kIcmpNoConn, 1}}}},
      {"an error quoting garbage (not IPv6): bad_header",
       kBackendPort,
       [=] {
         PacketBuilder e;
         e.Macs(kBackendPortMac, BackendMac(1)).Ipv6(router, LocalIp6(1));
         Bytes garbage(48, 0x45);
         return TooBig(e, garbage);
       },
       DropFor(DropReason::kBadHeader),
       nullptr,
       {.drops = {{DropReason::kBadHeader, 1}}}},
      {"an error quoting a cut IPv6 header: truncated",
       kBackendPort,
       [=] {
         PacketBuilder e;
         e.Macs(kBackendPortMac, BackendMac(1)).Ipv6(router, LocalIp6(1));
         Bytes cut = Quote(ToBackend6(1, 1, l, 8080, kAck, 1001, 5001).Build());
         cut.resize(30);
         return TooBig(e, cut);
       },
       DropFor(DropReason::kTruncated),
       nullptr,
       {.drops = {{DropReason::kTruncated, 1}}}},
  };
  RunSteps(bed, 0, steps);
}

// The IPv4 packet NAT64 sends to backend 4 (198.18.1.14) from local address 198.18.1.2:`lport`
// (RFC 7915: TTL from the hop limit less one, DF set, identification 0).
PacketBuilder ToV4Backend(std::uint16_t lport, std::uint16_t bport) {
  PacketBuilder b;
  b.Macs(BackendMac(4), kBackendPortMac)
      .Ipv4(testing::Ip4("198.18.1.2"), testing::BackendIp(4))
      .Ttl(63)
      .DontFragment()
      .IpId(0);
  b.Tcp(lport, bport, 0);
  return b;
}

PacketBuilder FromV4Backend(std::uint16_t bport, std::uint16_t lport) {
  PacketBuilder b;
  b.Macs(kBackendPortMac, BackendMac(4)).Ipv4(testing::BackendIp(4), testing::Ip4("198.18.1.2"));
  b.Tcp(bport, lport, 0);
  return b;
}

// NAT64: an IPv6 client, an IPv4 backend. Each way the packet is translated (RFC 7915), the
// frame moving by the 20 bytes the headers differ by; the backend sees an IPv4 local address.
TEST(DecideIpv6Table, Nat64TcpConversation) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(DualModel(b));
  bed.LearnNeighbors();
  const std::uint16_t c = bed.Client6PortOwnedBy(0);
  const std::uint16_t l = kFirstLocalPort0;
  const Bytes hello(100, 0x68);
  Action to_v4 = SendOn(kBackendPort, 14 + 20 + 20);
  to_v4.offset = 20;
  Action to_v4_data = SendOn(kBackendPort, 14 + 20 + 20 + 100);
  to_v4_data.offset = 20;
  Action to_v6 = SendOn(kClientPort, 14 + 40 + 20);
  to_v6.offset = -20;
  const std::vector<Step> steps = {
      {"SYN: IPv6 in, IPv4 out", kClientPort, [=] { return ClientTcp6(c, 84, kSyn, 1000).Build(); },
       to_v4, [=] { return ToV4Backend(l, 8084).Tcp(l, 8084, kSyn).TcpSeq(1000, 0).Build(); }},
      {"SYN-ACK: IPv4 in, IPv6 out from the VIP", kBackendPort,
       [=] { return FromV4Backend(8084, l).Tcp(8084, l, kSyn | kAck).TcpSeq(5000, 1001).Build(); },
       to_v6, [=] { return ToClient6(84, c, kSyn | kAck, 5000, 1001).Build(); }},
      {"data", kClientPort,
       [=] { return ClientTcp6(c, 84, kAck | kPsh, 1001, 5001).Payload(hello).Build(); },
       to_v4_data,
       [=] {
         return ToV4Backend(l, 8084)
             .Tcp(l, 8084, kAck | kPsh)
             .TcpSeq(1001, 5001)
             .Payload(hello)
             .Build();
       }},
  };
  RunSteps(bed, 0, steps);
  CoreState& core = bed.core(0);
  ASSERT_EQ(core.table6.size(), 1u);  // the connection lives in the IPv6 table
  EXPECT_EQ(core.table.size(), 0u);
  const nat::PortPool& pool = *core.pools[kBackendPort];
  EXPECT_EQ(pool.available(), pool.capacity() - 1);  // an IPv4 local port is taken
  core.now_ms += 3'600'000;
  core.table6.ExpireSome(core.now_ms, 1024,
                         [&core](const nat::ConnEntry6& e) { ReleaseConn(core, e); });
  EXPECT_EQ(core.table6.size(), 0u);
  EXPECT_EQ(pool.available(), pool.capacity());  // and given back on expiry
}

// Replies to two clients in one burst, each over IPv6 and over NAT64 (the IPv4 backend's reply
// translated): every one leaves addressed to its own client's MAC, the neighbour found for one
// reply never reused for another's next hop.
TEST(DecideIpv6Table, RepliesInOneBurstReachEachTheirClient) {
  CoreBed bed(/*workers=*/1);
  ModelBuilder b;
  bed.Apply(DualModel(b));
  bed.LearnNeighbors();
  struct Flow {
    Ip6Bytes ip;
    testing::Mac mac;
    std::uint16_t port;
    bool nat64;  // to the listener on :54 with an IPv4 backend; else :53, IPv6
  };
  const std::vector<Flow> flows = {{ClientIp6(), kClientMac, 40000, false},
                                   {Client2Ip6(), kClient2Mac, 40000, true},
                                   {ClientIp6(), kClientMac, 40001, true},
                                   {Client2Ip6(), kClient2Mac, 40001, false},
                                   {ClientIp6(), kClientMac, 40002, false}};
  std::vector<Bytes> queries;
  for (const Flow& f : flows) {
    PacketBuilder d;
    d.Macs(kClientPortMac, f.mac).Ipv6(f.ip, VipIp6()).Udp(f.port, f.nat64 ? 54 : 53);
    queries.push_back(d.Payload(8, 1).Build());
  }
  const std::vector<Outcome> opened = bed.Feed(0, kClientPort, queries);
  ASSERT_EQ(opened.size(), flows.size());
  std::vector<Bytes> answers;
  for (std::size_t i = 0; i < flows.size(); ++i) {
    const Bytes& q = opened[i].frame;
    PacketBuilder d;
    if (flows[i].nat64) {  // the backend answers the IPv4 local address and port it saw
      ASSERT_EQ(opened[i].action.verb, Verb::kSend);
      ASSERT_GE(q.size(), 14u + 20 + 8);
      const std::uint32_t local = nat::LoadBe32(q.data() + 14 + 12);
      d.Macs(kBackendPortMac, BackendMac(4)).Ipv4(testing::BackendIp(4), local);
      d.Udp(5354, nat::LoadBe16(q.data() + 14 + 20));
    } else {
      ASSERT_EQ(opened[i].action, SendOn(kBackendPort));
      ASSERT_GE(q.size(), 14u + 40 + 8);
      Ip6Bytes local;
      std::copy_n(q.begin() + 14 + 8, local.size(), local.begin());
      d.Macs(kBackendPortMac, BackendMac(2)).Ipv6(BackendIp6(2), local);
      d.Udp(5353, nat::LoadBe16(q.data() + 14 + 40));
    }
    answers.push_back(d.Payload(8, 2).Build());
  }
  const std::vector<Outcome> out = bed.Feed(0, kBackendPort, answers);
  ASSERT_EQ(out.size(), flows.size());
  for (std::size_t i = 0; i < flows.size(); ++i) {
    const Flow& f = flows[i];
    PacketBuilder d;
    d.Macs(f.mac, kClientPortMac).Ipv6(VipIp6(), f.ip).Ttl(63);
    const Bytes want = d.Udp(f.nat64 ? 54 : 53, f.port).Payload(8, 2).Build();
    Action sent = SendOn(kClientPort);
    if (f.nat64) {
      sent.offset = -20;
      sent.length = static_cast<std::uint16_t>(want.size());
    }
    ExpectOutcome(out[i], sent, want, "answer " + std::to_string(i));
  }
  ExpectDelta(bed, {}, "both bursts");
}

// The IPv4 packet inside `frame`, as an ICMPv4 error quotes it.
Bytes Quote4(Bytes frame) { return Bytes(frame.begin() + 14, frame.end()); }

// ICMP errors across NAT64 (RFC 7915): a "fragmentation needed" about our IPv4 segment to the
// backend reaches the client as a Packet Too Big 20 bytes larger, quoting its own IPv6 segment;
// a Packet Too Big from the client about our IPv6 segment reaches the backend as a
// "fragmentation needed" 20 bytes smaller, quoting its own IPv4 segment.
TEST(DecideIpv6Table, Nat64IcmpErrorsAreTranslatedBothWays) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(DualModel(b));
  bed.LearnNeighbors();
  const std::uint16_t c = bed.Client6PortOwnedBy(0);
  const std::uint16_t l = kFirstLocalPort0;
  const Bytes data(100, 0x64);
  const std::uint32_t router = testing::Ip4("198.18.1.254");
  Action to_v4 = SendOn(kBackendPort, 14 + 20 + 20);
  to_v4.offset = 20;
  Action to_v6 = SendOn(kClientPort, 14 + 40 + 20);
  to_v6.offset = -20;
  Action too_big = SendOn(kClientPort, 14 + 40 + 8 + 40 + 20 + 100);
  too_big.offset = -40;
  const Action frag_needed = SendOn(kBackendPort, 14 + 20 + 8 + 20 + 20 + 100);
  const std::vector<Step> steps = {
      {"SYN", kClientPort, [=] { return ClientTcp6(c, 84, kSyn, 1000).Build(); }, to_v4,
       [=] { return ToV4Backend(l, 8084).Tcp(l, 8084, kSyn).TcpSeq(1000, 0).Build(); }},
      {"SYN-ACK", kBackendPort,
       [=] { return FromV4Backend(8084, l).Tcp(8084, l, kSyn | kAck).TcpSeq(5000, 1001).Build(); },
       to_v6, [=] { return ToClient6(84, c, kSyn | kAck, 5000, 1001).Build(); }},
      {"fragmentation needed (MTU 1400) from a router behind the LB",
       kBackendPort,
       [=] {
         PacketBuilder e;
         e.Macs(kBackendPortMac, BackendMac(4)).Ipv4(router, testing::Ip4("198.18.1.2"));
         const Bytes quoted = Quote4(ToV4Backend(l, 8084)
                                         .Tcp(l, 8084, kAck | kPsh)
                                         .TcpSeq(1001, 5001)
                                         .Payload(data)
                                         .Build());
         return e.IcmpError(3, 4, quoted, 1400).Build();
       },
       too_big,
       [=] {
         PacketBuilder e;
         e.Macs(kClientMac, kClientPortMac).Ipv6(VipIp6(), ClientIp6()).Ttl(63);
         const Bytes quoted =
             Quote(ClientTcp6(c, 84, kAck | kPsh, 1001, 5001).Ttl(63).Payload(data).Build());
         return e.Icmpv6(nat::kIcmpv6PacketTooBig, 0, 1420).Payload(quoted).Build();
       },
       {.events = {{WorkerEvent::kIcmpErrorsTranslated, 1}}}},
      {"Packet Too Big (MTU 1300) from the client's side",
       kClientPort,
       [=] {
         PacketBuilder e;
         e.Macs(kClientPortMac, kClientMac).Ipv6(ClientIp6(), VipIp6());
         return TooBig1300(e,
                           Quote(ToClient6(84, c, kAck | kPsh, 5001, 1001).Payload(data).Build()));
       },
       frag_needed,
       [=] {
         PacketBuilder e;
         e.Macs(BackendMac(4), kBackendPortMac)
             .Ipv4(testing::Ip4("198.18.1.2"), testing::BackendIp(4))
             .Ttl(63)
             .IpId(0);
         PacketBuilder quoted = FromV4Backend(8084, l);
         quoted.Ttl(63).DontFragment().IpId(0).Tcp(8084, l, kAck | kPsh).TcpSeq(5001, 1001);
         return e.IcmpError(3, 4, Quote4(quoted.Payload(data).Build()), 1280).Build();
       },
       {.events = {{WorkerEvent::kIcmpErrorsTranslated, 1}}}},
      {"a redirect has no IPv6 counterpart: unsupported_icmp",
       kBackendPort,
       [=] {
         PacketBuilder e;
         e.Macs(kBackendPortMac, BackendMac(4)).Ipv4(router, testing::Ip4("198.18.1.2"));
         const Bytes quoted =
             Quote4(ToV4Backend(l, 8084).Tcp(l, 8084, kAck).TcpSeq(1001, 5001).Build());
         return e.IcmpError(3, 14, quoted).Build();
       },
       DropFor(DropReason::kUnsupportedIcmp),
       nullptr,
       {.drops = {{DropReason::kUnsupportedIcmp, 1}}}},
  };
  RunSteps(bed, 0, steps);
}

// NAT64 for UDP: an IPv4 reply without a checksum gets one computed over IPv6 (RFC 7915 4.5).
TEST(DecideIpv6Table, Nat64UdpGetsTheChecksumIpv4LeftOut) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(DualModel(b));
  bed.LearnNeighbors();
  const std::uint16_t c = bed.Client6PortOwnedBy(0);
  const std::uint16_t l = kFirstLocalPort0;
  const Bytes query(20, 0x71);
  Action to_v4 = SendOn(kBackendPort, 14 + 20 + 8 + 20);
  to_v4.offset = 20;
  Action to_v6 = SendOn(kClientPort, 14 + 40 + 8 + 20);
  to_v6.offset = -20;
  const std::vector<Step> steps = {
      {"query", kClientPort,
       [=] {
         PacketBuilder q;
         q.Macs(kClientPortMac, kClientMac).Ipv6(ClientIp6(), VipIp6()).Udp(c, 54);
         return q.Payload(query).Build();
       },
       to_v4,
       [=] {
         PacketBuilder q;
         q.Macs(BackendMac(4), kBackendPortMac)
             .Ipv4(testing::Ip4("198.18.1.2"), testing::BackendIp(4))
             .Ttl(63)
             .DontFragment()
             .IpId(0)
             .Udp(l, 5354);
         return q.Payload(query).Build();
       }},
      {"answer without a UDP checksum", kBackendPort,
       [=] {
         PacketBuilder a;
         a.Macs(kBackendPortMac, BackendMac(4))
             .Ipv4(testing::BackendIp(4), testing::Ip4("198.18.1.2"))
             .Udp(5354, l)
             .UdpNoChecksum();
         return a.Payload(query).Build();
       },
       to_v6,
       [=] {
         PacketBuilder a;
         a.Macs(kClientMac, kClientPortMac).Ipv6(VipIp6(), ClientIp6()).Ttl(63).Udp(54, c);
         return a.Payload(query).Build();
       }},
  };
  RunSteps(bed, 0, steps);
}

// A dnat conversation: the backend's reply comes from its own address to the client's.
TEST(DecideIpv6Table, DnatConversation) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(DualModel(b));
  bed.LearnNeighbors();
  const std::uint16_t c = bed.Client6PortOwnedBy(0);
  const std::vector<Step> steps = {
      {"SYN", kClientPort, [=] { return ClientTcp6(c, 81, kSyn).Build(); }, SendOn(kBackendPort),
       [=] {
         PacketBuilder p;
         p.Macs(BackendMac(3), kBackendPortMac).Ipv6(ClientIp6(), BackendIp6(3)).Ttl(63);
         return p.Tcp(c, 8081, kSyn).TcpSeq(1000, 0).Build();
       }},
      {"SYN-ACK from the backend to the client's own address", kBackendPort,
       [=] {
         PacketBuilder p;
         p.Macs(kBackendPortMac, BackendMac(3)).Ipv6(BackendIp6(3), ClientIp6());
         return p.Tcp(8081, c, kSyn | kAck).TcpSeq(9, 1001).Build();
       },
       SendOn(kClientPort), [=] { return ToClient6(81, c, kSyn | kAck, 9, 1001).Build(); }},
  };
  RunSteps(bed, 0, steps);
  EXPECT_EQ(bed.core(0).table6.size(), 1u);
}

// Both families in one burst: each packet goes through its family's stages, the actions come
// back in burst order.
TEST(DecideIpv6Table, ABurstOfBothFamilies) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(DualModel(b));
  bed.LearnNeighbors();
  bed.TakeDelta();
  const std::uint16_t c6 = bed.Client6PortOwnedBy(0);
  const std::uint16_t c4 = bed.ClientPortOwnedBy(0);
  PacketBuilder v4;
  v4.Macs(kClientPortMac, kClientMac)
      .Ipv4(testing::kClientIp, testing::kVipIp)
      .Tcp(c4, 80, kSyn)
      .TcpSeq(1000, 0);
  const std::vector<Outcome> out =
      bed.Feed(0, kClientPort,
               {ClientTcp6(c6, 80, kSyn).Build(), v4.Build(), ClientTcp6(c6 + 2, 99, kSyn).Build(),
                ClientTcp6(c6, 80, kSyn).Build()});
  ASSERT_EQ(out.size(), 4u);
  ExpectOutcome(out[0], SendOn(kBackendPort),
                ToBackend6(1, 1, kFirstLocalPort0, 8080, kSyn).Build(), "IPv6 SYN");
  EXPECT_EQ(out[1].action, SendOn(kBackendPort)) << "IPv4 SYN";
  EXPECT_EQ(out[2].action, DropFor(DropReason::kNoService)) << "IPv6 SYN to no service";
  ExpectOutcome(out[3], SendOn(kBackendPort),
                ToBackend6(1, 1, kFirstLocalPort0, 8080, kSyn).Build(),
                "the retransmitted SYN follows the first");
  EXPECT_EQ(bed.core(0).table6.size(), 1u);
  EXPECT_EQ(bed.core(0).table.size(), 1u);
  ExpectDelta(bed, {.drops = {{DropReason::kNoService, 1}}}, "the burst");
}

// An unknown client MAC is learnt from its SYN (as for IPv4), and the resolve report carries the
// IPv6 address.
TEST(DecideIpv6Table, AClientIsLearntFromItsSyn) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(DualModel(b));
  bed.LearnNeighbors();
  bed.ForgetClient();
  bed.TakeDelta();
  const std::uint16_t c = bed.Client6PortOwnedBy(0);
  Outcome out = bed.FeedOne(0, kClientPort, ClientTcp6(c, 80, kSyn).Build());
  ExpectOutcome(out, SendOn(kBackendPort), ToBackend6(1, 1, kFirstLocalPort0, 8080, kSyn).Build(),
                "SYN");
  const std::vector<Message> reports = bed.Reports(0);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].type, MessageType::kResolve6);
  EXPECT_EQ(Ip6Of(reports[0]), Wide6(ClientIp6()));
  EXPECT_EQ(reports[0].port, kClientPort);
  out = bed.FeedOne(0, kBackendPort,
                    BackendTcp6(1, 1, kFirstLocalPort0, 8080, kSyn | kAck, 5, 1001).Build());
  ExpectOutcome(out, SendOn(kClientPort), ToClient6(80, c, kSyn | kAck, 5, 1001).Build(),
                "SYN-ACK to the learnt MAC");
  ExpectDelta(bed, {.events = {{WorkerEvent::kArpResolveRequests, 1}}}, "the exchange");
}

// A next hop without a MAC: arp_unresolved, and one kResolve6 report per second at most.
TEST(DecideIpv6Table, AnUnresolvedBackendIsReportedOnce) {
  CoreBed bed;
  ModelBuilder b;
  bed.Apply(DualModel(b));
  bed.LearnNeighbors(/*with_backends=*/false);
  bed.TakeDelta();
  const std::uint16_t c = bed.Client6PortOwnedBy(0);
  Outcome out = bed.FeedOne(0, kClientPort, ClientTcp6(c, 80, kSyn).Build());
  EXPECT_EQ(out.action, DropFor(DropReason::kArpUnresolved));
  std::vector<Message> reports = bed.Reports(0);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].type, MessageType::kResolve6);
  EXPECT_EQ(Ip6Of(reports[0]), Wide6(BackendIp6(1)));
  EXPECT_EQ(reports[0].port, kBackendPort);
  out = bed.FeedOne(0, kClientPort, ClientTcp6(c, 80, kSyn).Build());
  EXPECT_EQ(out.action, DropFor(DropReason::kArpUnresolved));
  EXPECT_TRUE(bed.Reports(0).empty());
  ExpectDelta(bed,
              {.drops = {{DropReason::kArpUnresolved, 2}},
               .events = {{WorkerEvent::kArpResolveRequests, 1}}},
              "two SYNs");
}

// Session persistence keys IPv6 clients by their whole address, for UDP as for TCP: a client's
// new flows on both cores reach one backend of three; another client has its own entry.
TEST(DecideIpv6Table, PersistenceKeepsAnIpv6ClientsFlowsOnOneBackend) {
  CoreBed bed;
  ModelBuilder b;
  b.Lb(kLb6, kVip6)
      .Group("sg-00000011",
             {"[2001:db8:1::11]:5353", "[2001:db8:1::12]:5353", "[2001:db8:1::13]:5353"})
      .Listener("lsn-00000011", Protocol::kUdp, 53, "sg-00000011", ForwardMode::kFnat, 30)
      .Persistence("lsn-00000011", 60);
  bed.Apply(b.model());
  bed.LearnNeighbors();
  bed.TakeDelta();
  std::uint16_t next_port = 40000;
  const auto open = [&](const Ip6Bytes& client, int count) {
    std::set<Ip6Bytes> reached;
    for (int i = 0; i < count; ++i) {
      const std::uint32_t core = static_cast<std::uint32_t>(i) % 2;
      while (ClientOwner(Wide6(client), next_port, 2) != core) {
        ++next_port;
      }
      PacketBuilder d;
      d.Macs(kClientPortMac, client == ClientIp6() ? kClientMac : kClient2Mac)
          .Ipv6(client, VipIp6())
          .Udp(next_port++, 53)
          .Payload(8);
      const Outcome out = bed.FeedOne(core, kClientPort, d.Build());
      EXPECT_EQ(out.action, SendOn(kBackendPort)) << i;
      Ip6Bytes dst{};
      std::copy_n(out.frame.begin() + 14 + 24, 16, dst.begin());
      reached.insert(dst);
    }
    return reached;
  };
  EXPECT_EQ(open(ClientIp6(), 8).size(), 1u);
  ExpectDelta(bed, {.events = {{WorkerEvent::kPersistRecorded, 1}, {WorkerEvent::kPersistHits, 7}}},
              "one client, eight flows on two cores");
  EXPECT_EQ(open(Client2Ip6(), 4).size(), 1u);
  ExpectDelta(bed, {.events = {{WorkerEvent::kPersistRecorded, 1}, {WorkerEvent::kPersistHits, 3}}},
              "the second client");
}

}  // namespace
}  // namespace fulcrum::dataplane

namespace fulcrum::dataplane {
namespace {

// NAT64 with Proxy Protocol v1: the header names the IPv6 client and VIP (TCP6) although the
// backend speaks IPv4; it goes in before the translation, and the numbers shift across it.
TEST(DecideIpv6Table, Nat64ProxyV1HeaderNamesTheIpv6Client) {
  CoreBed bed;
  ModelBuilder b;
  DualModel(b);
  b.ClientIp("lsn-00000014", model::ClientIpMode::kProxyV1);
  bed.Apply(b.model());
  bed.LearnNeighbors();
  const std::uint16_t c = bed.Client6PortOwnedBy(0);
  const std::uint16_t l = kFirstLocalPort0;
  const std::string text =
      "PROXY TCP6 2001:db8::2 2001:db8:100::10 " + std::to_string(c) + " 84\r\n";
  const Bytes header(text.begin(), text.end());
  const auto n = static_cast<std::uint32_t>(header.size());
  const Bytes hello(100, 0x68);
  Action to_v4 = SendOn(kBackendPort, 14 + 20 + 20);
  to_v4.offset = 20;
  Action to_v4_header = SendOn(kBackendPort, static_cast<std::uint16_t>(14 + 20 + 20 + n));
  to_v4_header.offset = static_cast<std::int16_t>(20 - static_cast<int>(n));
  Action to_v4_data = SendOn(kBackendPort, 14 + 20 + 20 + 100);
  to_v4_data.offset = 20;
  Action to_v6 = SendOn(kClientPort, 14 + 40 + 20);
  to_v6.offset = -20;
  const std::vector<Step> steps = {
      {"SYN", kClientPort, [=] { return ClientTcp6(c, 84, kSyn, 1000).Build(); }, to_v4,
       [=] { return ToV4Backend(l, 8084).Tcp(l, 8084, kSyn).TcpSeq(1000, 0).Build(); }},
      {"SYN-ACK", kBackendPort,
       [=] { return FromV4Backend(8084, l).Tcp(8084, l, kSyn | kAck).TcpSeq(5000, 1001).Build(); },
       to_v6, [=] { return ToClient6(84, c, kSyn | kAck, 5000, 1001).Build(); }},
      {"ACK: the header, translated with it",
       kClientPort,
       [=] { return ClientTcp6(c, 84, kAck, 1001, 5001).Build(); },
       to_v4_header,
       [=] {
         return ToV4Backend(l, 8084).Tcp(l, 8084, kAck).TcpSeq(1001, 5001).Payload(header).Build();
       },
       {.events = {{WorkerEvent::kClientAddrInserted, 1}}}},
      {"data: shifted by the header", kClientPort,
       [=] { return ClientTcp6(c, 84, kAck | kPsh, 1001, 5001).Payload(hello).Build(); },
       to_v4_data,
       [=] {
         return ToV4Backend(l, 8084)
             .Tcp(l, 8084, kAck | kPsh)
             .TcpSeq(1001 + n, 5001)
             .Payload(hello)
             .Build();
       }},
      {"the IPv4 backend's ACK, shifted back", kBackendPort,
       [=] { return FromV4Backend(8084, l).Tcp(8084, l, kAck).TcpSeq(5001, 1101 + n).Build(); },
       to_v6, [=] { return ToClient6(84, c, kAck, 5001, 1101).Build(); }},
  };
  RunSteps(bed, 0, steps);
}

TEST(DecideIpv6Table, ToaOfAnIpv6ClientIsKind253) {
  CoreBed bed;
  ModelBuilder b;
  DualModel(b);
  b.ClientIp("lsn-00000011", model::ClientIpMode::kToa);
  bed.Apply(b.model());
  bed.LearnNeighbors();
  const std::uint16_t c = bed.Client6PortOwnedBy(0);
  const std::uint16_t l = kFirstLocalPort0;
  Bytes toa = {253, 20, static_cast<std::uint8_t>(c >> 8), static_cast<std::uint8_t>(c)};
  const Ip6Bytes client = ClientIp6();
  toa.insert(toa.end(), client.begin(), client.end());
  Action grown = SendOn(kBackendPort, 14 + 40 + 20 + 20);
  grown.offset = -20;
  const std::vector<Step> steps = {
      {"SYN", kClientPort, [=] { return ClientTcp6(c, 80, kSyn, 1000).Build(); },
       SendOn(kBackendPort), [=] { return ToBackend6(1, 1, l, 8080, kSyn, 1000).Build(); }},
      {"ACK: the option",
       kClientPort,
       [=] { return ClientTcp6(c, 80, kAck, 1001, 5001).Build(); },
       grown,
       [=] { return ToBackend6(1, 1, l, 8080, kAck, 1001, 5001).TcpOptions(toa).Build(); },
       {.events = {{WorkerEvent::kClientAddrInserted, 1}}}},
  };
  RunSteps(bed, 0, steps);
}

}  // namespace
}  // namespace fulcrum::dataplane
