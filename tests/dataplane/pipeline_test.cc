// The packet pipeline end to end in one process: real EAL, two real worker lcores, ports on
// rings (tests/dataplane/ring_dataplane.h). Each test builds frames, puts them on an rx queue,
// and checks the bytes that come out of the tx queues and the counters.
//
// Topology (the test bed's): port 0 "client" 198.18.0.1/24 with the client 198.18.0.2; port 1
// "backend" 198.18.1.1/24 with fnat local addresses 198.18.1.2-5 and backends 198.18.1.11-14.
// The VIP is 198.18.100.10. Neighbours are learnt up front so no frame waits for ARP.
#include "dataplane/pipeline.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <rte_ring.h>

#include "dataplane/forwarder.h"
#include "dataplane/handoff.h"
#include "nat/arp.h"
#include "nat/ndp.h"
#include "nat/packet.h"
#include "nat/packet6.h"
#include "tests/dataplane/model_fixture.h"
#include "tests/dataplane/ring_dataplane.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::dataplane {
namespace {

using fulcrum::testing::Bytes;
using fulcrum::testing::CheckFrameChecksums;
using fulcrum::testing::Get16;
using fulcrum::testing::Get32;
using fulcrum::testing::Ip4;
using fulcrum::testing::PacketBuilder;
using fulcrum::testing::Wide6;
using json = nlohmann::json;
using model::ForwardMode;
using model::Protocol;
using nat::DropReason;
using nat::ParsedPacket;
using testing::Frame;
using testing::ModelBuilder;
using testing::RingDataplane;
using namespace std::chrono_literals;

constexpr std::size_t kClientPort = 0;
constexpr std::size_t kBackendPort = 1;
constexpr std::uint32_t kWorkers = 2;
const std::uint32_t kClient = Ip4("198.18.0.2");
const std::uint32_t kVipIp = Ip4("198.18.100.10");
constexpr fulcrum::testing::Mac kClientMac = {0x02, 0xc1, 0, 0, 0, 0x02};

fulcrum::testing::Mac BackendMac(int n) {
  return {0x02, 0xbe, 0, 0, 0, static_cast<std::uint8_t>(n)};
}
std::uint32_t BackendIp(int n) { return Ip4("198.18.1.10") + static_cast<std::uint32_t>(n); }

bool IsLocal(std::uint32_t ip) { return ip >= Ip4("198.18.1.2") && ip <= Ip4("198.18.1.5"); }

std::uint16_t Other(std::uint16_t queue) { return static_cast<std::uint16_t>(1 - queue); }

// A client port whose connections worker `worker` owns.
std::uint16_t ClientPortOwnedBy(std::uint32_t worker, std::uint16_t from = 40000) {
  for (std::uint16_t port = from;; ++port) {
    if (ClientOwner(kClient, port, kWorkers) == worker) {
      return port;
    }
  }
}

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FULCRUM_REQUIRE_DATAPLANE();
    env_ = RingDataplane::instance();
    dp_ = env_->dataplane();
    dp_->Stop();
    env_->Drain();
    ForwarderOptions options;
    options.conn_capacity = 4096;
    options.listener_slots = 64;
    options.backend_slots = 256;
    Result<std::unique_ptr<Forwarder>> created = Forwarder::Create(*dp_, options);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    fw_ = std::move(*created);
    // Worker counters belong to the Dataplane that every test shares: tests look at deltas.
    for (const nat::DropReasonInfo& info : nat::kDropReasons) {
      drops_base_[info.reason] = TotalDrops(info.reason);
    }
    for (std::size_t e = 0; e < kWorkerEventCount; ++e) {
      events_base_[static_cast<WorkerEvent>(e)] = TotalEvents(static_cast<WorkerEvent>(e));
    }
    fw_->LearnNeighbor(kClient, kClientMac, kClientPort);
    for (int n = 1; n <= 4; ++n) {
      fw_->LearnNeighbor(BackendIp(n), BackendMac(n), kBackendPort);
    }
    ASSERT_TRUE(dp_->Start().ok());
  }

  void TearDown() override {
    fw_.reset();
    if (env_ != nullptr) {
      env_->Drain();
    }
  }

  // Applies the model, then waits until the workers have sent what Apply asked them to send
  // (gratuitous ARP) and drops it.
  void Apply(model::Model& model) {
    Status applied = fw_->Apply(model);
    ASSERT_TRUE(applied.ok()) << applied.ToString();
    Quiesce();
  }

  // lsn-00000001: udp VIP:53, fnat, idle timeout 30 s, to the one backend 198.18.1.12:5353.
  void ApplyUdpListener() {
    ModelBuilder b;
    b.Group("sg-00000001", {"198.18.1.12:5353"})
        .Listener("lsn-00000001", Protocol::kUdp, 53, "sg-00000001", ForwardMode::kFnat, 30);
    Apply(b.model());
  }

  void Quiesce() {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (std::size_t w = 0; w < kWorkers; ++w) {
      while (rte_ring_count(fw_->pipeline(w).to_worker) != 0 &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(100us);
      }
    }
    std::vector<std::uint64_t> epochs;
    for (std::size_t w = 0; w < kWorkers; ++w) {
      epochs.push_back(dp_->worker(w).quiescent_epoch.load());
    }
    for (std::size_t w = 0; w < kWorkers; ++w) {
      while (dp_->worker(w).quiescent_epoch.load() < epochs[w] + 2 &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(100us);
      }
    }
    for (std::size_t p = 0; p < testing::kRingPorts; ++p) {
      for (std::uint16_t q = 0; q < testing::kRingQueues; ++q) {
        env_->Take(p, q);
      }
    }
  }

  // Injects `frame` and returns the single frame that must come out of (out_port, out_queue).
  Frame Exchange(std::size_t port, std::uint16_t queue, const Bytes& frame, std::size_t out_port,
                 std::uint16_t out_queue) {
    env_->Inject(port, queue, frame);
    std::vector<Frame> out = env_->Await(out_port, out_queue, 1);
    EXPECT_EQ(out.size(), 1u) << "nothing came out of port " << out_port << " queue " << out_queue;
    return out.empty() ? Frame{} : out[0];
  }

  // Injects `frame` and expects nothing out anywhere, `reason` counted once more.
  void ExpectDropped(std::size_t port, std::uint16_t queue, const Bytes& frame, DropReason reason) {
    const std::uint64_t before = Drops(reason);
    env_->Inject(port, queue, frame);
    EXPECT_TRUE(WaitFor([&] { return Drops(reason) > before; }))
        << "no " << nat::DropReasonName(reason) << " drop";
    Quiesce();
  }

  // Drops and events since the test began.
  std::uint64_t Drops(DropReason reason) const {
    return TotalDrops(reason) - drops_base_.at(reason);
  }
  std::uint64_t Events(WorkerEvent event) const {
    return TotalEvents(event) - events_base_.at(event);
  }

  std::uint64_t TotalDrops(DropReason reason) const {
    std::uint64_t n = 0;
    for (std::size_t w = 0; w < kWorkers; ++w) {
      n += dp_->worker(w).counters.Drops(reason);
    }
    return n;
  }

  std::uint64_t TotalEvents(WorkerEvent event) const {
    std::uint64_t n = 0;
    for (std::size_t w = 0; w < kWorkers; ++w) {
      n += dp_->worker(w).counters.Events(event);
    }
    return n;
  }

  template <typename Predicate>
  static bool WaitFor(Predicate done) {
    const auto deadline = std::chrono::steady_clock::now() + testing::kWaitLimit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) {
        return false;
      }
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  PacketBuilder FromClient(std::uint16_t sport, std::uint16_t dport) const {
    PacketBuilder b;
    b.Macs(dp_->port(kClientPort).mac, kClientMac).Ipv4(kClient, kVipIp).Tcp(sport, dport, 0);
    return b;
  }

  PacketBuilder FromBackend(int n, std::uint32_t dst, std::uint16_t sport,
                            std::uint16_t dport) const {
    PacketBuilder b;
    b.Macs(dp_->port(kBackendPort).mac, BackendMac(n)).Ipv4(BackendIp(n), dst).Tcp(sport, dport, 0);
    return b;
  }

  static ParsedPacket ParseOut(const Frame& frame) {
    ParsedPacket p = nat::Parse(frame);
    EXPECT_TRUE(p.ok()) << "output does not parse: " << nat::DropReasonName(p.drop);
    EXPECT_EQ(CheckFrameChecksums(frame), "");
    return p;
  }

  static void ExpectMacs(const Frame& frame, const nat::MacAddress& dst,
                         const nat::MacAddress& src) {
    ASSERT_GE(frame.size(), 12u);
    EXPECT_TRUE(std::equal(dst.begin(), dst.end(), frame.begin())) << "destination MAC";
    EXPECT_TRUE(std::equal(src.begin(), src.end(), frame.begin() + 6)) << "source MAC";
  }

  std::vector<json> Conns(const std::string& listener = "") {
    json result = fw_->Connections(listener, 1000);
    EXPECT_FALSE(result["truncated"].get<bool>());
    return result["connections"].get<std::vector<json>>();
  }

  RingDataplane* env_ = nullptr;
  Dataplane* dp_ = nullptr;
  std::unique_ptr<Forwarder> fw_;
  std::map<DropReason, std::uint64_t> drops_base_;
  std::map<WorkerEvent, std::uint64_t> events_base_;
};

TEST_F(PipelineTest, AnswersArpForOwnAddressesAndLearnsTheSender) {
  ModelBuilder b;
  Apply(b.model());
  const fulcrum::testing::Mac other_mac = {0x02, 0xc1, 0, 0, 0, 0x03};
  const std::uint32_t other = Ip4("198.18.0.3");
  Bytes request = PacketBuilder()
                      .Macs(nat::kBroadcastMac, other_mac)
                      .Arp(nat::kArpRequest, other_mac, other, kVipIp)
                      .PadTo(60)
                      .Build();
  Frame reply = Exchange(kClientPort, 1, request, kClientPort, 1);
  ASSERT_FALSE(reply.empty());
  std::optional<nat::ArpMessage> arp = nat::ParseArp(reply);
  ASSERT_TRUE(arp.has_value());
  EXPECT_EQ(arp->op, nat::kArpReply);
  EXPECT_EQ(arp->sender_ip, kVipIp);
  EXPECT_EQ(arp->sender_mac, dp_->port(kClientPort).mac);
  EXPECT_EQ(arp->target_ip, other);
  ExpectMacs(reply, other_mac, dp_->port(kClientPort).mac);
  EXPECT_EQ(Events(WorkerEvent::kArpRepliesSent), 1u);

  // A local address answers on its own port, with that port's MAC.
  Bytes for_local =
      PacketBuilder().Arp(nat::kArpRequest, BackendMac(1), BackendIp(1), Ip4("198.18.1.3")).Build();
  Frame local_reply = Exchange(kBackendPort, 0, for_local, kBackendPort, 0);
  arp = nat::ParseArp(local_reply);
  ASSERT_TRUE(arp.has_value());
  EXPECT_EQ(arp->sender_mac, dp_->port(kBackendPort).mac);
  EXPECT_EQ(arp->sender_ip, Ip4("198.18.1.3"));

  // Not ours: no answer.
  ExpectDropped(kClientPort, 0,
                PacketBuilder().Arp(nat::kArpRequest, other_mac, other, Ip4("198.18.0.99")).Build(),
                DropReason::kNotLocal);

  // The requester is learnt by the control thread on its next tick.
  fw_->Tick();
  const nat::NeighborEntry* learnt = fw_->neighbor_cache().Find(other);
  ASSERT_NE(learnt, nullptr);
  EXPECT_EQ(learnt->mac, other_mac);
  EXPECT_EQ(learnt->port, kClientPort);
}

TEST_F(PipelineTest, AnswersPingsForVipsAndPortAddresses) {
  ModelBuilder b;
  Apply(b.model());
  for (std::uint32_t target : {kVipIp, Ip4("198.18.0.1")}) {
    Bytes ping = PacketBuilder()
                     .Macs(dp_->port(kClientPort).mac, kClientMac)
                     .Ipv4(kClient, target)
                     .IcmpEcho(nat::kIcmpEchoRequest, 77, 5)
                     .Payload(32, 0x41)
                     .Build();
    Frame reply = Exchange(kClientPort, 0, ping, kClientPort, 0);
    ParsedPacket p = ParseOut(reply);
    EXPECT_EQ(p.kind, nat::PacketKind::kIcmpEcho);
    EXPECT_EQ(p.icmp_type, nat::kIcmpEchoReply);
    EXPECT_EQ(p.src_ip, target);
    EXPECT_EQ(p.dst_ip, kClient);
    ExpectMacs(reply, kClientMac, dp_->port(kClientPort).mac);
  }
  EXPECT_EQ(Events(WorkerEvent::kIcmpEchoReplies), 2u);
}

TEST_F(PipelineTest, FnatTcpLifecycleWithHandOff) {
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.11:80"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001");
  Apply(b.model());
  const std::uint32_t owner = 1;
  const std::uint16_t cport = ClientPortOwnedBy(owner);
  const std::uint16_t other = Other(owner);

  // SYN, received by the other worker: handed to the owner, sent to the backend from a local
  // address and a port the owner owns.
  Frame syn = Exchange(kClientPort, other,
                       FromClient(cport, 80).Tcp(cport, 80, nat::kTcpSyn).TcpSeq(1000, 0).Build(),
                       kBackendPort, owner);
  ParsedPacket p = ParseOut(syn);
  ASSERT_EQ(p.kind, nat::PacketKind::kTcp);
  EXPECT_TRUE(IsLocal(p.src_ip)) << IpAddress::V4(p.src_ip).ToString();
  EXPECT_EQ(p.src_port & 1u, owner);
  EXPECT_GE(p.src_port, 1024);
  EXPECT_EQ(p.dst_ip, BackendIp(1));
  EXPECT_EQ(p.dst_port, 80);
  EXPECT_EQ(p.tcp_flags, nat::kTcpSyn);
  EXPECT_EQ(p.ttl, 63);
  EXPECT_EQ(Get32(syn, p.l4_offset + 4), 1000u);
  ExpectMacs(syn, BackendMac(1), dp_->port(kBackendPort).mac);
  const std::uint32_t local_ip = p.src_ip;
  const std::uint16_t lport = p.src_port;
  EXPECT_EQ(Events(WorkerEvent::kHandoffs), 1u);

  // SYN-ACK from the backend, received by the other worker's queue: handed off, to the client.
  Frame syn_ack = Exchange(kBackendPort, other,
                           FromBackend(1, local_ip, 80, lport)
                               .Tcp(80, lport, nat::kTcpSyn | nat::kTcpAck)
                               .TcpSeq(5000, 1001)
                               .Build(),
                           kClientPort, owner);
  p = ParseOut(syn_ack);
  EXPECT_EQ(p.src_ip, kVipIp);
  EXPECT_EQ(p.src_port, 80);
  EXPECT_EQ(p.dst_ip, kClient);
  EXPECT_EQ(p.dst_port, cport);
  EXPECT_EQ(p.tcp_flags, nat::kTcpSyn | nat::kTcpAck);
  ExpectMacs(syn_ack, kClientMac, dp_->port(kClientPort).mac);
  EXPECT_EQ(Events(WorkerEvent::kHandoffs), 2u);

  // ACK: established.
  Exchange(kClientPort, owner, FromClient(cport, 80).Tcp(cport, 80, nat::kTcpAck).Build(),
           kBackendPort, owner);
  std::vector<json> conns = Conns("lsn-00000001");
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_EQ(conns[0]["state"], "established");
  EXPECT_EQ(conns[0]["worker"], owner);
  EXPECT_EQ(conns[0]["protocol"], "tcp");
  EXPECT_EQ(conns[0]["client"], fmt::format("198.18.0.2:{}", cport));
  EXPECT_EQ(conns[0]["vip"], "198.18.100.10:80");
  EXPECT_EQ(conns[0]["local"], fmt::format("{}:{}", IpAddress::V4(local_ip).ToString(), lport));
  EXPECT_EQ(conns[0]["backend"], "198.18.1.11:80");
  EXPECT_EQ(conns[0]["timeout_s"], 900);

  // Data both ways, payload intact.
  Frame data = Exchange(
      kClientPort, owner,
      FromClient(cport, 80).Tcp(cport, 80, nat::kTcpAck | nat::kTcpPsh).Payload(100, 7).Build(),
      kBackendPort, owner);
  p = ParseOut(data);
  EXPECT_EQ(p.payload_len, 100);
  EXPECT_EQ(data[p.payload_offset + 99], 106);
  Frame answer = Exchange(kBackendPort, other,
                          FromBackend(1, local_ip, 80, lport)
                              .Tcp(80, lport, nat::kTcpAck | nat::kTcpPsh)
                              .Payload(200, 3)
                              .Build(),
                          kClientPort, owner);
  p = ParseOut(answer);
  EXPECT_EQ(p.payload_len, 200);
  EXPECT_EQ(p.dst_port, cport);

  // FIN both ways, then the last ACK.
  Exchange(kClientPort, owner,
           FromClient(cport, 80).Tcp(cport, 80, nat::kTcpFin | nat::kTcpAck).Build(), kBackendPort,
           owner);
  EXPECT_EQ(Conns()[0]["state"], "fin_wait");
  Exchange(kBackendPort, other,
           FromBackend(1, local_ip, 80, lport).Tcp(80, lport, nat::kTcpFin | nat::kTcpAck).Build(),
           kClientPort, owner);
  EXPECT_EQ(Conns()[0]["state"], "last_ack");
  Exchange(kClientPort, owner, FromClient(cport, 80).Tcp(cport, 80, nat::kTcpAck).Build(),
           kBackendPort, owner);
  conns = Conns();
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_EQ(conns[0]["state"], "time_wait");
  EXPECT_EQ(conns[0]["timeout_s"], 1);

  json stats = fw_->Stats({});
  EXPECT_EQ(stats["totals"]["new_conns"], 1);
  EXPECT_EQ(stats["totals"]["active_conns"], 1);
  ASSERT_EQ(stats["listeners"].size(), 1u);
  EXPECT_EQ(stats["listeners"][0]["id"], "lsn-00000001");
  EXPECT_EQ(stats["listeners"][0]["rx_packets"], 8);
  EXPECT_EQ(stats["listeners"][0]["tx_packets"], 8);
  EXPECT_EQ(Events(WorkerEvent::kHandoffs), 4u);
  EXPECT_EQ(Events(WorkerEvent::kHandoffsReceived), 4u);
  EXPECT_EQ(fw_->ActiveConnections("lsn-00000001", "198.18.1.11:80"), 1u);
  EXPECT_EQ(fw_->ActiveConnections("lsn-00000001", "198.18.1.12:80"), 0u);
  EXPECT_EQ(Drops(DropReason::kArpUnresolved), 0u);

  // The client reuses its port while the tuple is in time_wait: the SYN reopens the entry
  // (same local port and backend) and counts as a new connection.
  Frame again =
      Exchange(kClientPort, owner,
               FromClient(cport, 80).Tcp(cport, 80, nat::kTcpSyn).TcpSeq(90000, 0).Build(),
               kBackendPort, owner);
  p = ParseOut(again);
  EXPECT_EQ(p.src_ip, local_ip);
  EXPECT_EQ(p.src_port, lport);
  EXPECT_EQ(p.tcp_flags, nat::kTcpSyn);
  conns = Conns();
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_EQ(conns[0]["state"], "syn_sent");
  stats = fw_->Stats({});
  EXPECT_EQ(stats["totals"]["new_conns"], 2);
  EXPECT_EQ(stats["listeners"][0]["new_conns"], 2);
  EXPECT_EQ(stats["totals"]["active_conns"], 1);
}

TEST_F(PipelineTest, UdpBothWays) {
  ApplyUdpListener();
  const std::uint32_t owner = 0;
  const std::uint16_t cport = ClientPortOwnedBy(owner, 50000);
  PacketBuilder query;
  query.Macs(dp_->port(kClientPort).mac, kClientMac)
      .Ipv4(kClient, kVipIp)
      .Udp(cport, 53)
      .Payload(40, 1);
  Frame out = Exchange(kClientPort, owner, query.Build(), kBackendPort, owner);
  ParsedPacket p = ParseOut(out);
  ASSERT_EQ(p.kind, nat::PacketKind::kUdp);
  EXPECT_TRUE(IsLocal(p.src_ip));
  EXPECT_EQ(p.src_port & 1u, owner);
  EXPECT_EQ(p.dst_ip, BackendIp(2));
  EXPECT_EQ(p.dst_port, 5353);
  EXPECT_EQ(p.payload_len, 40);

  PacketBuilder answer;
  answer.Macs(dp_->port(kBackendPort).mac, BackendMac(2))
      .Ipv4(BackendIp(2), p.src_ip)
      .Udp(5353, p.src_port)
      .Payload(80, 9);
  Frame back = Exchange(kBackendPort, Other(owner), answer.Build(), kClientPort, owner);
  ParsedPacket r = ParseOut(back);
  EXPECT_EQ(r.src_ip, kVipIp);
  EXPECT_EQ(r.src_port, 53);
  EXPECT_EQ(r.dst_ip, kClient);
  EXPECT_EQ(r.dst_port, cport);
  EXPECT_EQ(r.payload_len, 80);

  std::vector<json> conns = Conns();
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_EQ(conns[0]["protocol"], "udp");
  EXPECT_EQ(conns[0]["timeout_s"], 30);
  EXPECT_EQ(Events(WorkerEvent::kHandoffs), 1u);
}

// Order through the hand-off (docs/dataplane.md, "Order"): two UDP flows arrive interleaved on
// worker 0's queue; worker 1 owns one of them, so its datagrams cross the hand-off ring while
// the other flow's are forwarded in place. Each flow leaves in the order it came, none lost.
TEST_F(PipelineTest, EachFlowKeepsItsOrderThroughTheHandOff) {
  ApplyUdpListener();
  constexpr std::uint16_t kReceiver = 0;
  constexpr std::uint32_t kPerFlow = 500;
  const std::array<std::uint16_t, 2> cports = {ClientPortOwnedBy(kReceiver, 51000),
                                               ClientPortOwnedBy(Other(kReceiver), 51000)};
  for (std::uint32_t seq = 0; seq < kPerFlow; ++seq) {
    for (std::uint16_t cport : cports) {
      PacketBuilder datagram;
      datagram.Macs(dp_->port(kClientPort).mac, kClientMac)
          .Ipv4(kClient, kVipIp)
          .Udp(cport, 53)
          .Payload(Bytes{static_cast<std::uint8_t>(seq >> 8), static_cast<std::uint8_t>(seq)});
      env_->Inject(kClientPort, kReceiver, datagram.Build());
    }
  }
  for (std::uint16_t owner : {kReceiver, Other(kReceiver)}) {
    std::vector<Frame> out = env_->Await(kBackendPort, owner, kPerFlow);
    for (const nat::DropReasonInfo& info : nat::kDropReasons) {
      EXPECT_EQ(Drops(info.reason), 0u) << info.name;
    }
    ASSERT_EQ(out.size(), kPerFlow) << "worker " << owner;
    std::uint32_t expected = 0;
    for (const Frame& frame : out) {
      ParsedPacket p = nat::Parse(frame);
      ASSERT_EQ(p.kind, nat::PacketKind::kUdp);
      ASSERT_EQ(p.payload_len, 2);
      EXPECT_EQ(p.src_port & 1u, owner);
      const std::uint32_t seq = Get16(frame, p.l4_offset + 8);
      ASSERT_EQ(seq, expected) << "worker " << owner << ": datagram " << seq << " overtook";
      ++expected;
    }
  }
  // Datagrams of a new flow that share a burst with its first one follow it into the
  // connection it opens (they were tuple_conflict drops once): one connection per flow.
  EXPECT_EQ(Conns("lsn-00000001").size(), 2u);
  EXPECT_EQ(Events(WorkerEvent::kHandoffs), kPerFlow);
  EXPECT_EQ(Events(WorkerEvent::kHandoffsReceived), kPerFlow);
  EXPECT_EQ(Drops(DropReason::kHandoffRingFull), 0u);
  EXPECT_EQ(Drops(DropReason::kTxFull), 0u);
}

TEST_F(PipelineTest, DnatRewritesTheDestinationOnly) {
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.13:8080"})
      .Listener("lsn-00000001", Protocol::kTcp, 8080, "sg-00000001", ForwardMode::kDnat);
  Apply(b.model());
  const std::uint32_t owner = 1;
  const std::uint16_t cport = ClientPortOwnedBy(owner, 41000);
  Frame syn =
      Exchange(kClientPort, Other(owner),
               FromClient(cport, 8080).Tcp(cport, 8080, nat::kTcpSyn).Build(), kBackendPort, owner);
  ParsedPacket p = ParseOut(syn);
  EXPECT_EQ(p.src_ip, kClient);
  EXPECT_EQ(p.src_port, cport);
  EXPECT_EQ(p.dst_ip, BackendIp(3));
  EXPECT_EQ(p.dst_port, 8080);
  ExpectMacs(syn, BackendMac(3), dp_->port(kBackendPort).mac);

  // The backend answers the client itself, through us: both directions have one owner.
  Frame syn_ack = Exchange(
      kBackendPort, Other(owner),
      FromBackend(3, kClient, 8080, cport).Tcp(8080, cport, nat::kTcpSyn | nat::kTcpAck).Build(),
      kClientPort, owner);
  p = ParseOut(syn_ack);
  EXPECT_EQ(p.src_ip, kVipIp);
  EXPECT_EQ(p.src_port, 8080);
  EXPECT_EQ(p.dst_ip, kClient);
  EXPECT_EQ(p.dst_port, cport);
  ExpectMacs(syn_ack, kClientMac, dp_->port(kClientPort).mac);
  std::vector<json> conns = Conns();
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_EQ(conns[0]["mode"], "dnat");
  EXPECT_EQ(conns[0]["state"], "syn_recv");
  EXPECT_EQ(conns[0]["local"], fmt::format("198.18.0.2:{}", cport));
}

TEST_F(PipelineTest, RefusesWhatHasNoServiceOrConnection) {
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.11:80"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001");
  Apply(b.model());
  const std::uint16_t cport = ClientPortOwnedBy(0, 42000);
  ExpectDropped(kClientPort, 0, FromClient(cport, 81).Tcp(cport, 81, nat::kTcpSyn).Build(),
                DropReason::kNoService);
  // A non-SYN segment with no connection: counted, and the client gets a reset.
  Frame rst = Exchange(kClientPort, 0,
                       FromClient(cport, 80).Tcp(cport, 80, nat::kTcpAck).TcpSeq(10, 777).Build(),
                       kClientPort, 0);
  ParsedPacket p = ParseOut(rst);
  EXPECT_EQ(p.tcp_flags, nat::kTcpRst);
  EXPECT_EQ(p.src_ip, kVipIp);
  EXPECT_EQ(p.dst_port, cport);
  EXPECT_EQ(Get32(rst, p.l4_offset + 4), 777u);
  EXPECT_EQ(Drops(DropReason::kNotSynNoConn), 1u);
  EXPECT_EQ(Events(WorkerEvent::kTcpResetsSent), 1u);
  // A backend writing to a local port with no connection gets a reset too.
  const std::uint16_t lport = 2048;  // owned by worker 0
  Frame backend_rst =
      Exchange(kBackendPort, 0,
               FromBackend(1, Ip4("198.18.1.2"), 80, lport).Tcp(80, lport, nat::kTcpAck).Build(),
               kBackendPort, 0);
  EXPECT_EQ(ParseOut(backend_rst).tcp_flags, nat::kTcpRst);
  // UDP to a local port without connection; TCP to an address that is not ours.
  ExpectDropped(kBackendPort, 0,
                PacketBuilder().Ipv4(BackendIp(1), Ip4("198.18.1.2")).Udp(53, lport).Build(),
                DropReason::kNoConn);
  ExpectDropped(
      kClientPort, 0,
      FromClient(cport, 80).Ipv4(kClient, Ip4("198.18.7.7")).Tcp(cport, 80, nat::kTcpSyn).Build(),
      DropReason::kNotLocal);
  // Nothing opened a connection.
  EXPECT_EQ(fw_->Stats({})["totals"]["new_conns"], 0);
}

TEST_F(PipelineTest, WeightsAreHonouredOverManySyns) {
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.11:80", "198.18.1.12:80", "198.18.1.13:80"}, {10, 20, 30})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001");
  Apply(b.model());
  std::map<std::uint32_t, int> per_backend;
  std::uint16_t cport = 20000;
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 100; ++i, ++cport) {
      const auto owner = static_cast<std::uint16_t>(ClientOwner(kClient, cport, kWorkers));
      env_->Inject(kClientPort, owner, FromClient(cport, 80).Tcp(cport, 80, nat::kTcpSyn).Build());
    }
    std::size_t got = 0;
    const auto deadline = std::chrono::steady_clock::now() + testing::kWaitLimit;
    while (got < 100 && std::chrono::steady_clock::now() < deadline) {
      for (std::uint16_t q = 0; q < testing::kRingQueues; ++q) {
        for (const Frame& frame : env_->Take(kBackendPort, q)) {
          ++per_backend[nat::Parse(frame).dst_ip];
          ++got;
        }
      }
      std::this_thread::sleep_for(200us);
    }
    ASSERT_EQ(got, 100u) << "round " << round;
  }
  EXPECT_NEAR(per_backend[BackendIp(1)], 100, 5);
  EXPECT_NEAR(per_backend[BackendIp(2)], 200, 5);
  EXPECT_NEAR(per_backend[BackendIp(3)], 300, 5);
  EXPECT_EQ(Events(WorkerEvent::kHandoffs), 0u);
  EXPECT_EQ(fw_->Stats({})["totals"]["new_conns"], 600);
  EXPECT_EQ(fw_->ActiveConnections("lsn-00000001", "198.18.1.13:80") +
                fw_->ActiveConnections("lsn-00000001", "198.18.1.12:80") +
                fw_->ActiveConnections("lsn-00000001", "198.18.1.11:80"),
            600u);
}

TEST_F(PipelineTest, RemovingAListenerRefusesNewSynsAndFlushesItsConnections) {
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.11:80"})
      .Group("sg-00000002", {"198.18.1.12:5353"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001")
      .Listener("lsn-00000002", Protocol::kUdp, 53, "sg-00000002", ForwardMode::kFnat, 60);
  Apply(b.model());
  std::vector<std::uint16_t> cports;
  for (std::uint16_t cport = 43000; cport < 43005; ++cport) {
    const auto owner = static_cast<std::uint16_t>(ClientOwner(kClient, cport, kWorkers));
    Exchange(kClientPort, owner, FromClient(cport, 80).Tcp(cport, 80, nat::kTcpSyn).Build(),
             kBackendPort, owner);
    cports.push_back(cport);
  }
  const std::uint16_t udp_port = ClientPortOwnedBy(0, 44000);
  Exchange(kClientPort, 0,
           PacketBuilder().Ipv4(kClient, kVipIp).Udp(udp_port, 53).Payload(8).Build(), kBackendPort,
           0);
  EXPECT_EQ(fw_->Stats({})["totals"]["active_conns"], 6);
  const std::optional<std::uint32_t> tcp_slot = fw_->ListenerSlot("lsn-00000001");
  ASSERT_TRUE(tcp_slot.has_value());

  ASSERT_TRUE(b.model().DeleteListener("lsn-00000001").ok());
  Apply(b.model());
  EXPECT_EQ(fw_->ListenerSlot("lsn-00000001"), std::nullopt);
  // Every worker sweeps its table; the UDP connection of the other listener stays.
  EXPECT_TRUE(WaitFor([&] { return fw_->SweptGeneration() >= fw_->generation(); }));
  json stats = fw_->Stats({});
  EXPECT_EQ(stats["totals"]["active_conns"], 1);
  EXPECT_EQ(Events(WorkerEvent::kConnsFlushed), 5u);
  std::vector<json> conns = Conns();
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_EQ(conns[0]["listener"], "lsn-00000002");
  // The retired slots become free once the sweep is seen.
  EXPECT_GT(fw_->retired_slots(), 0u);
  fw_->Tick();
  EXPECT_EQ(fw_->retired_slots(), 0u);
  // A new SYN is refused.
  const auto owner0 = static_cast<std::uint16_t>(ClientOwner(kClient, cports[0], kWorkers));
  ExpectDropped(kClientPort, owner0,
                FromClient(cports[0], 80).Tcp(cports[0], 80, nat::kTcpSyn).Build(),
                DropReason::kNoService);
  // A new listener gets the freed slot, and its figures start from zero.
  b.Listener("lsn-00000003", Protocol::kTcp, 80, "sg-00000001");
  Apply(b.model());
  EXPECT_EQ(fw_->ListenerSlot("lsn-00000003"), tcp_slot);
  json fresh = fw_->Stats({"lsn-00000003"});
  ASSERT_EQ(fresh["listeners"].size(), 1u);
  EXPECT_EQ(fresh["listeners"][0]["new_conns"], 0);
  EXPECT_EQ(fresh["listeners"][0]["rx_packets"], 0);
  EXPECT_EQ(fresh["listeners"][0]["active_conns"], 0);
  Exchange(kClientPort, owner0, FromClient(cports[0], 80).Tcp(cports[0], 80, nat::kTcpSyn).Build(),
           kBackendPort, owner0);
  fresh = fw_->Stats({"lsn-00000003"});
  EXPECT_EQ(fresh["listeners"][0]["new_conns"], 1);
  EXPECT_EQ(fresh["totals"]["new_conns"], 1);
  EXPECT_EQ(fresh["totals"]["active_conns"], 1);
}

TEST_F(PipelineTest, IdleConnectionsExpire) {
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.12:5353"})
      .Listener("lsn-00000001", Protocol::kUdp, 53, "sg-00000001", ForwardMode::kFnat, 1);
  Apply(b.model());
  const std::uint16_t cport = ClientPortOwnedBy(1, 45000);
  PacketBuilder datagram;
  datagram.Ipv4(kClient, kVipIp).Udp(cport, 53).Payload(8);
  Exchange(kClientPort, 1, datagram.Build(), kBackendPort, 1);
  EXPECT_EQ(Conns().size(), 1u);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor([&] { return fw_->Stats({})["totals"]["active_conns"] == 0; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 900ms);
  EXPECT_EQ(Events(WorkerEvent::kConnsExpired), 1u);
  EXPECT_TRUE(Conns().empty());
  EXPECT_EQ(fw_->ActiveConnections("lsn-00000001", "198.18.1.12:5353"), 0u);
  // The flow comes back as a new connection.
  Exchange(kClientPort, 1, datagram.Build(), kBackendPort, 1);
  EXPECT_EQ(fw_->Stats({})["totals"]["new_conns"], 2);
}

TEST_F(PipelineTest, FragmentationNeededFromTheBackendReachesTheClient) {
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.11:80"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001");
  Apply(b.model());
  const std::uint32_t owner = 0;
  const std::uint16_t cport = ClientPortOwnedBy(owner, 46000);
  Frame to_backend = Exchange(
      kClientPort, owner, FromClient(cport, 80).Tcp(cport, 80, nat::kTcpSyn).TcpSeq(1, 0).Build(),
      kBackendPort, owner);
  ParsedPacket sent = ParseOut(to_backend);
  // The backend (or a router before it) quotes our packet: IP header and the TCP header.
  const Bytes quoted(to_backend.begin() + sent.l3_offset, to_backend.begin() + sent.l4_offset + 20);
  PacketBuilder error;
  error.Macs(dp_->port(kBackendPort).mac, BackendMac(1))
      .Ipv4(BackendIp(1), sent.src_ip)
      .IcmpError(nat::kIcmpDestUnreachable, nat::kIcmpCodeFragNeeded, quoted, 1400);
  Frame out = Exchange(kBackendPort, Other(owner), error.Build(), kClientPort, owner);
  ParsedPacket p = ParseOut(out);
  ASSERT_EQ(p.kind, nat::PacketKind::kIcmpError);
  EXPECT_EQ(p.icmp_type, nat::kIcmpDestUnreachable);
  EXPECT_EQ(p.icmp_code, nat::kIcmpCodeFragNeeded);
  EXPECT_EQ(Get16(out, p.l4_offset + 6), 1400);  // next-hop MTU kept
  EXPECT_EQ(p.src_ip, kVipIp);
  EXPECT_EQ(p.dst_ip, kClient);
  // The client sees its own packet quoted.
  EXPECT_EQ(p.quote.src_ip, kClient);
  EXPECT_EQ(p.quote.src_port, cport);
  EXPECT_EQ(p.quote.dst_ip, kVipIp);
  EXPECT_EQ(p.quote.dst_port, 80);
  ExpectMacs(out, kClientMac, dp_->port(kClientPort).mac);
  EXPECT_EQ(Events(WorkerEvent::kIcmpErrorsTranslated), 1u);
}

TEST_F(PipelineTest, ADeadBackendsTcpIsResetAndUdpRescheduled) {
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.11:80", "198.18.1.12:80"}, {100, 1})
      .Group("sg-00000002", {"198.18.1.11:53", "198.18.1.12:53"}, {100, 1})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001")
      .Listener("lsn-00000002", Protocol::kUdp, 53, "sg-00000002", ForwardMode::kFnat, 60);
  Apply(b.model());
  const std::uint16_t cport = ClientPortOwnedBy(0, 47000);
  ParsedPacket p = ParseOut(Exchange(
      kClientPort, 0, FromClient(cport, 80).Tcp(cport, 80, nat::kTcpSyn).Build(), kBackendPort, 0));
  EXPECT_EQ(p.dst_ip, BackendIp(1));
  PacketBuilder datagram;
  datagram.Ipv4(kClient, kVipIp).Udp(cport, 53).Payload(8);
  p = ParseOut(Exchange(kClientPort, 0, datagram.Build(), kBackendPort, 0));
  EXPECT_EQ(p.dst_ip, BackendIp(1));

  b.Health("lsn-00000001", "198.18.1.11:80", model::HealthState::kDown)
      .Health("lsn-00000002", "198.18.1.11:53", model::HealthState::kDown);
  Apply(b.model());
  EXPECT_TRUE(WaitFor([&] { return fw_->SweptGeneration() >= fw_->generation(); }));
  EXPECT_EQ(Events(WorkerEvent::kConnsFlushed), 2u);
  // TCP: the client's next segment is answered with a reset.
  Frame rst = Exchange(kClientPort, 0, FromClient(cport, 80).Tcp(cport, 80, nat::kTcpAck).Build(),
                       kClientPort, 0);
  EXPECT_EQ(ParseOut(rst).tcp_flags, nat::kTcpRst);
  // UDP: the next datagram of the flow goes to the live backend.
  p = ParseOut(Exchange(kClientPort, 0, datagram.Build(), kBackendPort, 0));
  EXPECT_EQ(p.dst_ip, BackendIp(2));
  EXPECT_EQ(fw_->ActiveConnections("lsn-00000002", "198.18.1.12:53"), 1u);
  EXPECT_EQ(fw_->ActiveConnections("lsn-00000002", "198.18.1.11:53"), 0u);
}

TEST_F(PipelineTest, UnresolvedNextHopIsCountedAndResolved) {
  // A backend whose MAC nobody knows: Apply asks for it at once, on the backend port.
  const std::uint32_t stranger = Ip4("198.18.1.20");
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.20:80"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001");
  const std::uint64_t requests_before = Events(WorkerEvent::kArpRequests);
  ASSERT_TRUE(fw_->Apply(b.model()).ok());
  bool asked = false;
  const auto deadline = std::chrono::steady_clock::now() + testing::kWaitLimit;
  while (!asked && std::chrono::steady_clock::now() < deadline) {
    for (const Frame& frame : env_->Take(kBackendPort, 0)) {
      std::optional<nat::ArpMessage> arp = nat::ParseArp(frame);
      asked = asked || (arp && arp->op == nat::kArpRequest && arp->target_ip == stranger &&
                        arp->sender_ip == Ip4("198.18.1.1"));
    }
    std::this_thread::sleep_for(200us);
  }
  EXPECT_TRUE(asked) << "no ARP request for the backend";
  EXPECT_GT(Events(WorkerEvent::kArpRequests), requests_before);
  Quiesce();

  // Until it answers, SYNs to it are dropped, and counted.
  const std::uint16_t cport = ClientPortOwnedBy(0, 48000);
  Bytes syn = FromClient(cport, 80).Tcp(cport, 80, nat::kTcpSyn).Build();
  ExpectDropped(kClientPort, 0, syn, DropReason::kArpUnresolved);
  EXPECT_EQ(Events(WorkerEvent::kArpResolveRequests), 1u);

  // Its reply is learnt; the client's retransmitted SYN goes through.
  const fulcrum::testing::Mac stranger_mac = {0x02, 0xbe, 0, 0, 0, 0x20};
  Bytes reply = PacketBuilder()
                    .Macs(dp_->port(kBackendPort).mac, stranger_mac)
                    .Arp(nat::kArpReply, stranger_mac, stranger, Ip4("198.18.1.1"))
                    .Build();
  const std::uint64_t learnt_before = Events(WorkerEvent::kArpLearned);
  env_->Inject(kBackendPort, 1, reply);
  ASSERT_TRUE(WaitFor([&] { return Events(WorkerEvent::kArpLearned) > learnt_before; }));
  // Worker 1 learnt it; worker 0 forwards with it before the control thread publishes it.
  Frame out = Exchange(kClientPort, 0, syn, kBackendPort, 0);
  ExpectMacs(out, stranger_mac, dp_->port(kBackendPort).mac);
  fw_->Tick();
  const nat::NeighborEntry* learnt = fw_->neighbor_cache().Find(stranger);
  ASSERT_NE(learnt, nullptr);
  EXPECT_EQ(learnt->mac, stranger_mac);
  EXPECT_EQ(learnt->state, nat::NeighborState::kReachable);
}

// IPv6 neighbours through the control thread: a new IPv6 VIP is announced with an unsolicited
// advertisement, an unknown IPv6 backend is solicited from the backend port's address, its
// advertisement is learnt and published, and a SYN to the VIP then reaches it.
TEST_F(PipelineTest, Ipv6NeighboursAreAnnouncedSolicitedAndLearnt) {
  const nat::Ip6 vip = Wide6(fulcrum::testing::Ip6(testing::kVip6));
  const fulcrum::testing::Ip6Bytes backend = fulcrum::testing::Ip6("2001:db8:1::20");
  const fulcrum::testing::Ip6Bytes client = fulcrum::testing::Ip6("2001:db8::2");
  fw_->LearnNeighbor(Wide6(client), kClientMac, kClientPort);
  ModelBuilder b;
  b.Lb(testing::kLb6, testing::kVip6)
      .Group("sg-00000001", {"[2001:db8:1::20]:80"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001");
  ASSERT_TRUE(fw_->Apply(b.model()).ok());
  bool announced = false;
  bool solicited = false;
  const auto deadline = std::chrono::steady_clock::now() + testing::kWaitLimit;
  while (!(announced && solicited) && std::chrono::steady_clock::now() < deadline) {
    for (const Frame& frame : env_->Take(kClientPort, 0)) {
      nat::ParsedPacket6 p = nat::ParseIpv6(frame, 14);
      std::optional<nat::NeighborMessage> m;
      if (p.kind == nat::PacketKind::kNeighbor) {
        m = nat::ParseNeighbor(frame, p);
      }
      announced =
          announced || (m && m->type == nat::kIcmpv6NeighborAdvertisement && m->target == vip &&
                        m->destination == nat::kAllNodes && !m->solicited && m->override);
    }
    for (const Frame& frame : env_->Take(kBackendPort, 0)) {
      nat::ParsedPacket6 p = nat::ParseIpv6(frame, 14);
      std::optional<nat::NeighborMessage> m;
      if (p.kind == nat::PacketKind::kNeighbor) {
        m = nat::ParseNeighbor(frame, p);
      }
      solicited = solicited || (m && m->type == nat::kIcmpv6NeighborSolicitation &&
                                m->target == Wide6(backend) &&
                                m->source == Wide6(fulcrum::testing::Ip6("2001:db8:1::1")) &&
                                m->link_layer == dp_->port(kBackendPort).mac);
    }
    std::this_thread::sleep_for(200us);
  }
  EXPECT_TRUE(announced) << "no unsolicited advertisement of the VIP on the client port";
  EXPECT_TRUE(solicited) << "no solicitation for the backend on the backend port";
  Quiesce();

  // The backend answers (solicited, to the port address); the control thread learns it.
  const fulcrum::testing::Mac backend_mac = {0x02, 0xbe, 0, 0, 0, 0x20};
  Bytes option = {2, 1};
  option.insert(option.end(), backend_mac.begin(), backend_mac.end());
  Bytes body(backend.begin(), backend.end());
  body.insert(body.end(), option.begin(), option.end());
  PacketBuilder advert;
  advert.Macs(dp_->port(kBackendPort).mac, backend_mac)
      .Ipv6(backend, fulcrum::testing::Ip6("2001:db8:1::1"))
      .Ttl(255)
      .Icmpv6(nat::kIcmpv6NeighborAdvertisement, 0, 0x60000000)
      .Payload(body);
  const std::uint64_t learnt_before = Events(WorkerEvent::kArpLearned);
  env_->Inject(kBackendPort, 0, advert.Build());
  ASSERT_TRUE(WaitFor([&] { return Events(WorkerEvent::kArpLearned) > learnt_before; }));
  fw_->Tick();
  const nat::NeighborEntry6* learnt = fw_->neighbor_cache6().Find(Wide6(backend));
  ASSERT_NE(learnt, nullptr);
  EXPECT_EQ(learnt->mac, backend_mac);
  EXPECT_EQ(learnt->state, nat::NeighborState::kReachable);
  EXPECT_EQ(learnt->port, kBackendPort);
  Quiesce();

  // Both workers now have the MAC: a SYN to the VIP, taken by either, goes to the backend.
  for (std::uint16_t queue = 0; queue < kWorkers; ++queue) {
    PacketBuilder syn;
    syn.Macs(dp_->port(kClientPort).mac, kClientMac)
        .Ipv6(client, fulcrum::testing::Ip6(testing::kVip6))
        .Tcp(static_cast<std::uint16_t>(41000 + queue), 80, nat::kTcpSyn);
    env_->Inject(kClientPort, queue, syn.Build());
    std::vector<Frame> out;
    for (std::uint16_t q = 0; q < kWorkers && out.empty(); ++q) {
      WaitFor([&] {
        for (std::uint16_t r = 0; r < kWorkers; ++r) {
          for (Frame& f : env_->Take(kBackendPort, r)) {
            out.push_back(std::move(f));
          }
        }
        return !out.empty();
      });
    }
    ASSERT_EQ(out.size(), 1u);
    nat::ParsedPacket6 p = nat::ParseIpv6(out[0], 14);
    ASSERT_EQ(p.kind, nat::PacketKind::kTcp);
    EXPECT_EQ(p.dst_ip, Wide6(backend));
    ExpectMacs(out[0], backend_mac, dp_->port(kBackendPort).mac);
    EXPECT_EQ(CheckFrameChecksums(out[0]), "");
  }
  // The connection list shows both IPv6 flows, addresses in brackets.
  std::vector<json> conns = Conns("lsn-00000001");
  ASSERT_EQ(conns.size(), 2u);
  std::sort(conns.begin(), conns.end(), [](const json& x, const json& y) {
    return x["client"].get<std::string>() < y["client"].get<std::string>();
  });
  EXPECT_EQ(conns[0]["client"], "[2001:db8::2]:41000");
  EXPECT_EQ(conns[1]["client"], "[2001:db8::2]:41001");
  EXPECT_EQ(conns[0]["vip"], "[2001:db8:100::10]:80");
  EXPECT_EQ(conns[0]["backend"], "[2001:db8:1::20]:80");
  EXPECT_EQ(conns[0]["mode"], "fnat");
  EXPECT_EQ(conns[0]["state"], "syn_sent");
  const std::string local = conns[0]["local"].get<std::string>();
  EXPECT_EQ(local.rfind("[2001:db8:1::", 0), 0u) << local;
}

TEST_F(PipelineTest, LearnsAnOnLinkClientFromItsSyn) {
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.11:80"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001");
  Apply(b.model());
  // A client the LB never heard of (its ARP cache still has us, from before a restart).
  const std::uint32_t stranger = Ip4("198.18.0.77");
  const fulcrum::testing::Mac stranger_mac = {0x02, 0xc1, 0, 0, 0, 0x77};
  const std::uint16_t cport = 48000;
  const auto owner = static_cast<std::uint16_t>(ClientOwner(stranger, cport, kWorkers));
  PacketBuilder from_stranger;
  from_stranger.Macs(dp_->port(kClientPort).mac, stranger_mac).Ipv4(stranger, kVipIp);
  ParsedPacket syn = ParseOut(Exchange(
      kClientPort, owner, from_stranger.Tcp(cport, 80, nat::kTcpSyn).Build(), kBackendPort, owner));
  // The SYN-ACK, received by the other core, finds the MAC the SYN came from.
  Frame syn_ack = Exchange(kBackendPort, Other(owner),
                           FromBackend(1, syn.src_ip, 80, syn.src_port)
                               .Tcp(80, syn.src_port, nat::kTcpSyn | nat::kTcpAck)
                               .Build(),
                           kClientPort, owner);
  ExpectMacs(syn_ack, stranger_mac, dp_->port(kClientPort).mac);
  EXPECT_EQ(Drops(DropReason::kArpUnresolved), 0u);
  // The control thread is asked to confirm it with ARP.
  EXPECT_EQ(Events(WorkerEvent::kArpResolveRequests), 1u);
  fw_->Tick();
  std::vector<Frame> requests = env_->Await(kClientPort, 0, 1);
  ASSERT_EQ(requests.size(), 1u);
  std::optional<nat::ArpMessage> request = nat::ParseArp(requests[0]);
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->target_ip, stranger);
  EXPECT_EQ(request->sender_ip, Ip4("198.18.0.1"));
}

TEST_F(PipelineTest, StatsAndStatusCarryEveryCounter) {
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.11:80"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001");
  Apply(b.model());
  json stats = fw_->Stats({});
  EXPECT_EQ(stats["drops"].size(), nat::kDropReasons.size());
  for (const nat::DropReasonInfo& info : nat::kDropReasons) {
    EXPECT_TRUE(stats["drops"].contains(std::string(info.name))) << info.name;
  }
  EXPECT_EQ(stats["counters"].size(), kWorkerEventCount);
  EXPECT_TRUE(stats["counters"].contains("table_full_fallbacks"));
  EXPECT_TRUE(stats["rates"].contains("new_conns_per_s"));
  ASSERT_EQ(stats["workers"].size(), 2u);
  EXPECT_EQ(stats["workers"][1]["lcore"], 2);
  EXPECT_TRUE(stats["workers"][0].contains("busy_ratio"));
  // Narrowed to a listener that carried nothing.
  json narrowed = fw_->Stats({"lsn-00000001"});
  EXPECT_EQ(narrowed["listeners"].size(), 1u);
  EXPECT_EQ(narrowed["totals"]["rx_packets"], 0);

  json status = fw_->Describe();
  EXPECT_EQ(status["ports"][1]["steering"], "software_handoff");
  EXPECT_GT(status["conn_table"]["bytes_per_connection"].get<double>(), 64.0);
  EXPECT_LT(status["conn_table"]["bytes_per_connection"].get<double>(), 160.0);
  EXPECT_EQ(status["conn_table"]["capacity_per_worker"], 4096);
  EXPECT_EQ(status["workers"][0]["snapshot_generation"], fw_->generation());
  EXPECT_EQ(status["config_generation"], 1);
  EXPECT_GE(status["neighbors"].size(), 5u);
}

}  // namespace
}  // namespace fulcrum::dataplane
