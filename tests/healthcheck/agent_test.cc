// The whole loop (event loop, prober, lbd client, agent) against a fake lbd on a Unix socket.
#include "healthcheck/agent.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/healthcheck/test_servers.h"

namespace fulcrum::hc {
namespace {

using std::chrono::milliseconds;
using testing::ClosedPort;
using testing::FakeLbd;
using testing::RunUntil;
using testing::TargetJson;
using testing::TcpCheck;
using testing::TcpServer;
using testing::TempDir;

std::string Loopback(std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

std::vector<std::string> States(const std::vector<FakeLbd::HealthCall>& calls) {
  std::vector<std::string> states;
  for (const FakeLbd::HealthCall& call : calls) {
    states.push_back(call.state);
  }
  return states;
}

// One lb-healthd, minus main(): loop, prober, client, agent.
class Healthd {
 public:
  Healthd(const std::string& socket, bool once) {
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
    EXPECT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    ProberOptions prober_options;
    prober_options.seed = 5;
    prober_options.fresh_start = once;
    prober_ = Prober::Create(*loop_, prober_options);
    lbd_ = std::make_unique<LbdClient>(*loop_, socket);
    AgentOptions agent_options;
    agent_options.once = once;
    agent_ = std::make_unique<Agent>(*loop_, *lbd_, *prober_, agent_options);
  }

  bool RunUntil(const std::function<bool()>& done, milliseconds limit) {
    return testing::RunUntil(*loop_, done, limit);
  }

  Prober& prober() { return *prober_; }
  LbdClient& lbd() { return *lbd_; }
  Agent& agent() { return *agent_; }

 private:
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Prober> prober_;
  std::unique_ptr<LbdClient> lbd_;
  std::unique_ptr<Agent> agent_;
};

class AgentTest : public ::testing::Test {
 protected:
  std::string SocketPath() const { return dir_.path() + "/lbd.sock"; }

  TempDir dir_;
};

TEST_F(AgentTest, BackendGoesAwayAndComesBack) {
  auto server = std::make_unique<TcpServer>(TcpServer::Mode::kAccept);
  const std::uint16_t port = server->port();
  const std::string addr = Loopback(port);
  FakeLbd lbd(SocketPath());
  lbd.SetTargets({TargetJson("lsn-11223344", addr, TcpCheck(2, 2))});
  Healthd healthd(SocketPath(), false);

  // Unknown -> up after two successes.
  ASSERT_TRUE(healthd.RunUntil([&] { return lbd.calls().size() == 1; }, milliseconds(5000)));
  FakeLbd::HealthCall up = lbd.calls()[0];
  EXPECT_EQ(up.listener, "lsn-11223344");
  EXPECT_EQ(up.addr, addr);
  EXPECT_EQ(up.state, "up");
  EXPECT_EQ(up.reason, "connected");
  // A probe's connect completes in the kernel before the server's thread accepts it, so the
  // server's count may trail the report for a moment.
  const auto accept_deadline = std::chrono::steady_clock::now() + milliseconds(2000);
  while (server->accepted() < 2 && std::chrono::steady_clock::now() < accept_deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_GE(server->accepted(), 2);
  EXPECT_TRUE(lbd.prober_flag_seen());

  // The server goes away: down after two failures, with the reason.
  server.reset();
  const TargetKey key{"lsn-11223344", *Endpoint::Parse(addr)};
  const std::uint64_t probes_before = healthd.prober().Find(key)->probes;
  ASSERT_TRUE(healthd.RunUntil([&] { return lbd.calls().size() == 2; }, milliseconds(5000)));
  EXPECT_EQ(lbd.calls()[1].state, "down");
  EXPECT_EQ(lbd.calls()[1].reason, "refused");
  EXPECT_EQ(healthd.prober().Find(key)->probes - probes_before, 2u);
  EXPECT_EQ(lbd.StateOf("lsn-11223344", addr), "down");

  // Back on the same port: up again after two successes.
  server = std::make_unique<TcpServer>(TcpServer::Mode::kAccept, "", port);
  ASSERT_TRUE(healthd.RunUntil([&] { return lbd.calls().size() == 3; }, milliseconds(5000)));
  EXPECT_EQ(States(lbd.calls()), (std::vector<std::string>{"up", "down", "up"}));
  // Nothing else was sent: only transitions are reported.
  healthd.RunUntil([] { return false; }, milliseconds(300));
  EXPECT_EQ(lbd.calls().size(), 3u);
}

TEST_F(AgentTest, LbdRestartIsToldAgain) {
  TcpServer server(TcpServer::Mode::kAccept);
  const std::string addr = Loopback(server.port());
  const nlohmann::json targets = {TargetJson("lsn-11223344", addr, TcpCheck(1, 1))};
  auto lbd = std::make_unique<FakeLbd>(SocketPath());
  lbd->SetTargets(targets);
  Healthd healthd(SocketPath(), false);
  ASSERT_TRUE(healthd.RunUntil([&] { return lbd->calls().size() == 1; }, milliseconds(3000)));

  // lbd goes away: probing goes on.
  lbd.reset();
  const std::uint64_t probes = healthd.prober().stats().probes;
  ASSERT_TRUE(healthd.RunUntil(
      [&] { return !healthd.lbd().connected() && healthd.prober().stats().probes > probes; },
      milliseconds(3000)));

  // A new lbd knows nothing (unknown): it is reconnected to and told "up" again.
  lbd = std::make_unique<FakeLbd>(SocketPath());
  lbd->SetTargets(targets);
  ASSERT_TRUE(healthd.RunUntil([&] { return lbd->calls().size() == 1; }, milliseconds(4000)));
  EXPECT_EQ(lbd->calls()[0].state, "up");
  EXPECT_EQ(lbd->StateOf("lsn-11223344", addr), "up");
}

TEST_F(AgentTest, BadAnswersAreSurvivedAndTargetsKept) {
  TcpServer server(TcpServer::Mode::kAccept);
  const std::string addr = Loopback(server.port());
  FakeLbd lbd(SocketPath());
  lbd.SetTargets({TargetJson("lsn-11223344", addr, TcpCheck(1, 1))});
  Healthd healthd(SocketPath(), false);
  ASSERT_TRUE(
      healthd.RunUntil([&] { return healthd.prober().target_count() == 1; }, milliseconds(3000)));

  // A result of the wrong shape: refused, the known target stays.
  lbd.SetBrokenAnswer({{"version", 5}, {"unchanged", false}, {"targets", "nope"}});
  lbd.SetTargets(nlohmann::json::array());  // a change the prober must not see
  const std::uint64_t refused = healthd.agent().answers_refused();
  ASSERT_TRUE(healthd.RunUntil([&] { return healthd.agent().answers_refused() >= refused + 2; },
                               milliseconds(4000)));
  EXPECT_EQ(healthd.prober().target_count(), 1u);

  // A line that is not a response at all: the connection is dropped and made again.
  lbd.SetBrokenAnswer(nullptr);
  lbd.SetRawReply("this is not json\n");
  ASSERT_TRUE(
      healthd.RunUntil([&] { return healthd.lbd().connection_count() >= 2; }, milliseconds(4000)));
  EXPECT_EQ(healthd.prober().target_count(), 1u);

  // lbd comes to its senses: the (now empty) list is applied.
  lbd.SetRawReply("");
  ASSERT_TRUE(
      healthd.RunUntil([&] { return healthd.prober().target_count() == 0; }, milliseconds(4000)));
}

TEST_F(AgentTest, OnceDecidesEveryTargetReportsAndStops) {
  TcpServer server(TcpServer::Mode::kAccept);
  const std::string up_addr = Loopback(server.port());
  const std::string down_addr = Loopback(ClosedPort());
  model::HealthCheck none = TcpCheck(1, 1);
  none.type = model::HealthCheckType::kNone;
  FakeLbd lbd(SocketPath());
  lbd.SetTargets({TargetJson("lsn-11223344", up_addr, TcpCheck(2, 2)),
                  TargetJson("lsn-11223344", down_addr, TcpCheck(2, 2), "up"),
                  TargetJson("lsn-55667788", up_addr, none)});
  Healthd healthd(SocketPath(), true);
  ASSERT_TRUE(healthd.RunUntil([&] { return healthd.agent().done(); }, milliseconds(6000)));
  EXPECT_TRUE(healthd.agent().outcome().ok()) << healthd.agent().outcome().ToString();
  EXPECT_FALSE(lbd.prober_flag_seen());  // a one-off run does not pose as the resident prober
  EXPECT_EQ(lbd.StateOf("lsn-11223344", up_addr), "up");
  EXPECT_EQ(lbd.StateOf("lsn-11223344", down_addr), "down");
  EXPECT_EQ(lbd.StateOf("lsn-55667788", up_addr), "unknown");
  EXPECT_EQ(lbd.calls().size(), 2u);

  const std::string table = FormatTargetTable(healthd.prober().Targets());
  EXPECT_EQ(table.substr(0, table.find('\n')),
            "LISTENER      BACKEND          CHECK  STATE  LBD      PROBES  REASON");
  EXPECT_NE(table.find(down_addr + "  tcp    down   down     2       refused"), std::string::npos)
      << table;
  EXPECT_NE(table.find("lsn-55667788  " + up_addr + "  none   -      unknown  0"),
            std::string::npos)
      << table;
}

TEST_F(AgentTest, OnceWithoutLbdIsUnreachable) {
  Healthd healthd(SocketPath(), true);
  ASSERT_TRUE(healthd.RunUntil([&] { return healthd.agent().done(); }, milliseconds(2000)));
  EXPECT_TRUE(healthd.agent().unreachable());
  EXPECT_EQ(healthd.agent().outcome().code(), ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace fulcrum::hc
