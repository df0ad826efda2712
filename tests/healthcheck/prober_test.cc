// The prober on a real event loop against loopback servers, targets given directly.
#include "healthcheck/prober.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/healthcheck/test_servers.h"

namespace fulcrum::hc {
namespace {

using std::chrono::milliseconds;
using testing::ClosedPort;
using testing::RunUntil;
using testing::TcpCheck;
using testing::TcpServer;

Target MakeTarget(const std::string& listener, std::uint16_t port, model::HealthCheck check,
                  model::HealthState state = model::HealthState::kUnknown) {
  Target target;
  target.key.listener = listener;
  target.key.backend = *Endpoint::Parse("127.0.0.1:" + std::to_string(port));
  target.check = check;
  target.state = state;
  return target;
}

class ProberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
  }
  std::unique_ptr<Prober> MakeProber(bool fresh_start, std::size_t max_in_flight = 64,
                                     ProbeSources sources = {}) {
    ProberOptions options;
    options.seed = 99;
    options.fresh_start = fresh_start;
    options.max_in_flight = max_in_flight;
    options.sources = std::move(sources);
    return Prober::Create(*loop_, options);
  }
  std::uint64_t Probes(const Prober& prober, const Target& target) {
    const std::optional<TargetView> view = prober.Find(target.key);
    return view ? view->probes : 0;
  }

  std::unique_ptr<EventLoop> loop_;
};

ProbeSources Sources(const std::vector<std::string>& texts) {
  std::vector<IpAddress> addrs;
  for (const std::string& text : texts) {
    addrs.push_back(*IpAddress::Parse(text));
  }
  Result<ProbeSources> sources = ProbeSources::Create(addrs);
  EXPECT_TRUE(sources.ok()) << sources.status().ToString();
  return sources.ok() ? *sources : ProbeSources{};
}

// The server's thread may not have accepted yet when the prober has decided.
bool WaitForAccepts(TcpServer& server, int count) {
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(1000);
  while (server.accepted() < count && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  return server.accepted() >= count;
}

TEST_F(ProberTest, UpTargetFallsAfterExactlyFallFailuresAndIsReported) {
  std::unique_ptr<Prober> prober = MakeProber(false);
  const Target target =
      MakeTarget("lsn-00000001", ClosedPort(), TcpCheck(2, 2), model::HealthState::kUp);
  std::vector<std::uint64_t> probes_at_transition;
  prober->set_on_transition([&](const TargetKey& key, model::HealthState from,
                                model::HealthState to, const std::string& reason) {
    EXPECT_EQ(key, target.key);
    EXPECT_EQ(from, model::HealthState::kUp);
    EXPECT_EQ(to, model::HealthState::kDown);
    EXPECT_EQ(reason, "refused");
    probes_at_transition.push_back(prober->Find(key)->probes);
  });
  prober->SetTargets({target}, loop_->now());
  EXPECT_FALSE(prober->has_reports());  // lbd already holds its starting state
  ASSERT_TRUE(RunUntil(
      *loop_, [&] { return prober->has_reports(); }, milliseconds(4000)));
  EXPECT_EQ(probes_at_transition, std::vector<std::uint64_t>{2});
  const std::vector<Report> reports = prober->TakeReports(10);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].key, target.key);
  EXPECT_EQ(reports[0].state, model::HealthState::kDown);
  EXPECT_EQ(reports[0].reason, "refused");
  EXPECT_EQ(prober->reports_in_flight(), 1u);
  EXPECT_TRUE(prober->TakeReports(10).empty());  // handed out once
  prober->ReportDone(target.key, model::HealthState::kDown, true);
  EXPECT_EQ(prober->Find(target.key)->lbd_state, model::HealthState::kDown);
  EXPECT_FALSE(prober->has_reports());
}

TEST_F(ProberTest, HealthyTargetThatLbdCallsUpCausesNoReport) {
  TcpServer server(TcpServer::Mode::kAccept);
  std::unique_ptr<Prober> prober = MakeProber(true);
  const Target target =
      MakeTarget("lsn-00000001", server.port(), TcpCheck(1, 1), model::HealthState::kUp);
  prober->SetTargets({target}, loop_->now());
  // fresh_start begins unknown and probes at once; one success decides "up", which lbd holds.
  ASSERT_TRUE(RunUntil(
      *loop_, [&] { return prober->AllDecided(); }, milliseconds(2000)));
  EXPECT_EQ(prober->Find(target.key)->state, model::HealthState::kUp);
  EXPECT_FALSE(prober->has_reports());
  EXPECT_EQ(prober->stats().transitions, 1u);
}

TEST_F(ProberTest, RefusedReportWaitsForRetry) {
  TcpServer server(TcpServer::Mode::kAccept);
  std::unique_ptr<Prober> prober = MakeProber(true);
  const Target target = MakeTarget("lsn-00000001", server.port(), TcpCheck(1, 1));
  prober->SetTargets({target}, loop_->now());
  ASSERT_TRUE(RunUntil(
      *loop_, [&] { return prober->has_reports(); }, milliseconds(2000)));
  ASSERT_EQ(prober->TakeReports(10).size(), 1u);
  prober->ReportDone(target.key, model::HealthState::kUp, false);
  EXPECT_FALSE(prober->has_reports());
  EXPECT_EQ(prober->reports_in_flight(), 0u);
  prober->RetryRefused();
  const std::vector<Report> again = prober->TakeReports(10);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].state, model::HealthState::kUp);
  EXPECT_EQ(again[0].reason, "connected");
}

TEST_F(ProberTest, InFlightProbesAreBounded) {
  TcpServer silent(TcpServer::Mode::kSilent);
  std::unique_ptr<Prober> prober = MakeProber(true, 3);
  model::HealthCheck check = TcpCheck(1, 1);
  check.type = model::HealthCheckType::kHttp;
  std::vector<Target> targets;
  for (int i = 0; i < 6; ++i) {
    targets.push_back(MakeTarget("lsn-0000000" + std::to_string(i), silent.port(), check));
  }
  prober->SetTargets(targets, loop_->now());
  std::size_t most = 0;
  ASSERT_TRUE(RunUntil(
      *loop_,
      [&] {
        most = std::max(most, prober->in_flight());
        return prober->AllDecided();
      },
      milliseconds(5000)));
  EXPECT_EQ(most, 3u);
  EXPECT_EQ(prober->stats().max_in_flight_seen, 3u);
  EXPECT_EQ(prober->stats().failures, 6u);  // every target got its turn: all timed out once
  for (const TargetView& view : prober->Targets()) {
    EXPECT_EQ(view.state, model::HealthState::kDown);
    EXPECT_EQ(view.reason, "timeout awaiting reply");
  }
}

TEST_F(ProberTest, ReconcileAddsRemovesAndRestartsChangedChecks) {
  TcpServer server(TcpServer::Mode::kAccept);
  std::unique_ptr<Prober> prober = MakeProber(true);
  const Target a = MakeTarget("lsn-0000000a", server.port(), TcpCheck(3, 3));
  const Target b = MakeTarget("lsn-0000000b", server.port(), TcpCheck(3, 3));
  prober->SetTargets({a, b}, loop_->now());
  ASSERT_TRUE(RunUntil(
      *loop_, [&] { return Probes(*prober, a) >= 1 && Probes(*prober, b) >= 1; },
      milliseconds(2000)));
  const std::uint64_t a_probes = Probes(*prober, a);

  // The same list again changes nothing: counters and schedules stay.
  prober->SetTargets({a, b}, loop_->now());
  EXPECT_EQ(Probes(*prober, a), a_probes);
  EXPECT_EQ(prober->target_count(), 2u);

  // b's check changes, a goes away, c comes.
  Target b2 = b;
  b2.check.fall = 5;
  const Target c = MakeTarget("lsn-0000000c", server.port(), TcpCheck(3, 3));
  prober->SetTargets({b2, c}, loop_->now());
  EXPECT_FALSE(prober->Find(a.key).has_value());
  EXPECT_EQ(prober->target_count(), 2u);
  EXPECT_TRUE(prober->Find(c.key).has_value());
  EXPECT_EQ(prober->in_flight(), 0u);
  ASSERT_TRUE(RunUntil(
      *loop_, [&] { return Probes(*prober, c) >= 1; }, milliseconds(2000)));
}

TEST_F(ProberTest, NoneChecksAreNeverProbedNorReported) {
  std::unique_ptr<Prober> prober = MakeProber(true);
  model::HealthCheck none = TcpCheck(1, 1);
  none.type = model::HealthCheckType::kNone;
  const Target target = MakeTarget("lsn-00000001", ClosedPort(), none, model::HealthState::kUp);
  prober->SetTargets({target}, loop_->now());
  EXPECT_TRUE(prober->AllDecided());
  RunUntil(
      *loop_, [] { return false; }, milliseconds(300));
  EXPECT_EQ(Probes(*prober, target), 0u);
  EXPECT_EQ(prober->stats().probes, 0u);
  EXPECT_FALSE(prober->has_reports());
}

TEST_F(ProberTest, LbdForgettingAStateGetsItReportedAgain) {
  TcpServer server(TcpServer::Mode::kAccept);
  std::unique_ptr<Prober> prober = MakeProber(true);
  Target target = MakeTarget("lsn-00000001", server.port(), TcpCheck(1, 1));
  prober->SetTargets({target}, loop_->now());
  ASSERT_TRUE(RunUntil(
      *loop_, [&] { return prober->has_reports(); }, milliseconds(2000)));
  ASSERT_EQ(prober->TakeReports(10).size(), 1u);
  prober->ReportDone(target.key, model::HealthState::kUp, true);
  target.state = model::HealthState::kUp;
  prober->SetTargets({target}, loop_->now());
  EXPECT_FALSE(prober->has_reports());
  // A restarted lbd lists the target as unknown: the prober tells it again at once.
  target.state = model::HealthState::kUnknown;
  prober->SetTargets({target}, loop_->now());
  const std::vector<Report> reports = prober->TakeReports(10);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].state, model::HealthState::kUp);
}

// 127.0.0.2 is a loopback address on Linux but not the kernel's choice for 127.0.0.1, so the
// v4 server seeing it proves the v4 source was used; ::1 is the only IPv6 loopback address.
TEST_F(ProberTest, EachProbeIsBoundToTheSourceOfItsBackendsFamily) {
  if (!testing::Ipv6LoopbackUsable()) {
    GTEST_SKIP() << "no ::1 here";
  }
  TcpServer v4_server(TcpServer::Mode::kAccept);
  TcpServer v6_server(TcpServer::Mode::kAccept, "", 0, AF_INET6);
  std::unique_ptr<Prober> prober = MakeProber(true, 64, Sources({"::1", "127.0.0.2"}));
  const Target v4 = MakeTarget("lsn-00000004", v4_server.port(), TcpCheck(1, 1));
  Target v6 = MakeTarget("lsn-00000006", v6_server.port(), TcpCheck(1, 1));
  v6.key.backend = *Endpoint::Parse("[::1]:" + std::to_string(v6_server.port()));
  prober->SetTargets({v4, v6}, loop_->now());
  ASSERT_TRUE(RunUntil(
      *loop_, [&] { return prober->AllDecided(); }, milliseconds(2000)));
  EXPECT_EQ(prober->Find(v4.key)->state, model::HealthState::kUp);
  EXPECT_EQ(prober->Find(v6.key)->state, model::HealthState::kUp);
  ASSERT_TRUE(WaitForAccepts(v4_server, 1));
  ASSERT_TRUE(WaitForAccepts(v6_server, 1));
  EXPECT_EQ(v4_server.last_peer(), "127.0.0.2");
  EXPECT_EQ(v6_server.last_peer(), "::1");
}

TEST_F(ProberTest, AFamilyWithoutASourceIsLeftToTheKernel) {
  if (!testing::Ipv6LoopbackUsable()) {
    GTEST_SKIP() << "no ::1 here";
  }
  TcpServer v4_server(TcpServer::Mode::kAccept);
  TcpServer v6_server(TcpServer::Mode::kAccept, "", 0, AF_INET6);
  // Only an IPv6 source, and one this host does not have: IPv6 probes cannot bind (a local
  // error, not counted), IPv4 probes leave from the kernel's choice.
  std::unique_ptr<Prober> prober = MakeProber(true, 64, Sources({"2001:db8::1"}));
  const Target v4 = MakeTarget("lsn-00000004", v4_server.port(), TcpCheck(1, 1));
  Target v6 = MakeTarget("lsn-00000006", v6_server.port(), TcpCheck(1, 1));
  v6.key.backend = *Endpoint::Parse("[::1]:" + std::to_string(v6_server.port()));
  prober->SetTargets({v4, v6}, loop_->now());
  ASSERT_TRUE(RunUntil(
      *loop_,
      [&] {
        return prober->Find(v4.key)->state != model::HealthState::kUnknown &&
               prober->stats().inconclusive >= 1;
      },
      milliseconds(2000)));
  EXPECT_EQ(prober->Find(v4.key)->state, model::HealthState::kUp);
  EXPECT_EQ(prober->Find(v6.key)->state, model::HealthState::kUnknown);
  ASSERT_TRUE(WaitForAccepts(v4_server, 1));
  EXPECT_EQ(v4_server.last_peer(), "127.0.0.1");
  EXPECT_EQ(v6_server.accepted(), 0);
}

}  // namespace
}  // namespace fulcrum::hc
