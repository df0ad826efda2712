#include "nat/tcp_state.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace fulcrum::nat {
namespace {

using enum TcpState;
constexpr FlowDir kC = FlowDir::kFromClient;
constexpr FlowDir kB = FlowDir::kFromBackend;
constexpr std::uint8_t kSynAck = kTcpSyn | kTcpAck;
constexpr std::uint8_t kFinAck = kTcpFin | kTcpAck;
constexpr std::uint8_t kRstAck = kTcpRst | kTcpAck;
constexpr std::uint8_t kPshAck = kTcpPsh | kTcpAck;
constexpr std::uint32_t kIdleMs = 900'000;

struct Transition {
  TcpState from;
  FlowDir dir;
  std::uint8_t flags;
  TcpState to;
};

std::string Describe(const Transition& t) {
  return std::string(TcpStateName(t.from)) + (t.dir == kC ? " +client " : " +backend ") +
         std::to_string(t.flags) + " -> " + std::string(TcpStateName(t.to));
}

TEST(TcpStateTest, TransitionTable) {
  const std::vector<Transition> table = {
      // Opening.
      {kNone, kC, kTcpSyn, kSynSent},
      {kNone, kC, kTcpAck, kNone},
      {kNone, kB, kSynAck, kNone},
      {kNone, kC, kTcpRst, kNone},
      {kSynSent, kC, kTcpSyn, kSynSent},
      {kSynSent, kB, kSynAck, kSynRecv},
      {kSynSent, kC, kSynAck, kSynSent},
      {kSynSent, kB, kTcpAck, kSynSent},
      {kSynSent, kB, kRstAck, kClosed},
      {kSynRecv, kC, kTcpAck, kEstablished},
      {kSynRecv, kC, kPshAck, kEstablished},
      {kSynRecv, kB, kSynAck, kSynRecv},
      {kSynRecv, kB, kTcpAck, kSynRecv},
      {kSynRecv, kC, kFinAck, kFinWait},
      {kSynRecv, kC, kTcpRst, kClosed},
      // Established.
      {kEstablished, kC, kPshAck, kEstablished},
      {kEstablished, kB, kPshAck, kEstablished},
      {kEstablished, kC, kTcpSyn, kEstablished},
      {kEstablished, kC, kFinAck, kFinWait},
      {kEstablished, kB, kFinAck, kCloseWait},
      {kEstablished, kB, kTcpRst, kClosed},
      {kEstablished, kC, kRstAck, kClosed},
      // Closing.
      {kFinWait, kB, kTcpAck, kFinWait},
      {kFinWait, kC, kFinAck, kFinWait},
      {kFinWait, kB, kFinAck, kLastAck},
      {kFinWait, kC, kTcpRst, kClosed},
      {kCloseWait, kC, kPshAck, kCloseWait},
      {kCloseWait, kB, kFinAck, kCloseWait},
      {kCloseWait, kC, kFinAck, kLastAck},
      {kLastAck, kC, kTcpAck, kTimeWait},
      {kLastAck, kB, kTcpAck, kTimeWait},
      {kLastAck, kB, kFinAck, kLastAck},
      {kLastAck, kB, kTcpRst, kClosed},
      {kTimeWait, kC, kTcpAck, kTimeWait},
      {kTimeWait, kC, kTcpSyn, kSynSent},
      {kTimeWait, kB, kTcpSyn, kTimeWait},
      {kTimeWait, kB, kTcpRst, kClosed},
      {kClosed, kC, kTcpAck, kClosed},
      {kClosed, kB, kSynAck, kClosed},
      {kClosed, kC, kTcpSyn, kSynSent},
      // Impossible flag sets change nothing.
      {kEstablished, kC, kTcpSyn | kTcpFin, kEstablished},
      {kEstablished, kC, kTcpSyn | kTcpRst, kEstablished},
      {kEstablished, kB, 0, kEstablished},
      {kSynSent, kC, kTcpSyn | kTcpFin, kSynSent},
  };
  for (const Transition& t : table) {
    EXPECT_EQ(TcpNextState(t.from, t.dir, t.flags), t.to) << Describe(t);
  }
}

TEST(TcpStateTest, RstClosesEveryTrackedState) {
  for (std::size_t s = 1; s < kTcpStateCount; ++s) {
    const auto state = static_cast<TcpState>(s);
    EXPECT_EQ(TcpNextState(state, kC, kTcpRst), kClosed) << TcpStateName(state);
    EXPECT_EQ(TcpNextState(state, kB, kRstAck), kClosed) << TcpStateName(state);
  }
}

TEST(TcpStateTest, ClassifiesFlags) {
  EXPECT_EQ(ClassifyTcpFlags(kTcpSyn), TcpEvent::kSyn);
  EXPECT_EQ(ClassifyTcpFlags(kTcpSyn | 0xc0), TcpEvent::kSyn);  // ECN setup
  EXPECT_EQ(ClassifyTcpFlags(kSynAck), TcpEvent::kSynAck);
  EXPECT_EQ(ClassifyTcpFlags(kFinAck | kTcpPsh), TcpEvent::kFin);
  EXPECT_EQ(ClassifyTcpFlags(kTcpFin), TcpEvent::kFin);
  EXPECT_EQ(ClassifyTcpFlags(kPshAck), TcpEvent::kAck);
  EXPECT_EQ(ClassifyTcpFlags(kRstAck), TcpEvent::kRst);
  EXPECT_EQ(ClassifyTcpFlags(kTcpRst | kTcpFin), TcpEvent::kRst);
  EXPECT_EQ(ClassifyTcpFlags(kTcpSyn | kTcpFin), TcpEvent::kInvalid);
  EXPECT_EQ(ClassifyTcpFlags(kTcpSyn | kTcpRst), TcpEvent::kInvalid);
  EXPECT_EQ(ClassifyTcpFlags(0), TcpEvent::kInvalid);
  EXPECT_EQ(ClassifyTcpFlags(kTcpPsh), TcpEvent::kInvalid);
}

TEST(TcpStateTest, TimeoutPerState) {
  struct Row {
    TcpState state;
    std::uint32_t want_ms;
  };
  const std::vector<Row> rows = {
      {kNone, 10'000},         {kSynSent, 10'000},  {kSynRecv, 10'000},
      {kEstablished, kIdleMs}, {kFinWait, 30'000},  {kCloseWait, 30'000},
      {kLastAck, 30'000},      {kTimeWait, 10'000}, {kClosed, 2'000},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(TcpTimeoutMs(row.state, kIdleMs), row.want_ms) << TcpStateName(row.state);
  }
  EXPECT_EQ(TcpTimeoutMs(kEstablished, 60'000), 60'000u);
  EXPECT_EQ(UdpTimeoutMs(300'000), 300'000u);
}

TEST(TcpStateTest, NamesAreDistinct) {
  std::set<std::string_view> names;
  for (std::size_t s = 0; s < kTcpStateCount; ++s) {
    EXPECT_TRUE(names.insert(TcpStateName(static_cast<TcpState>(s))).second);
  }
  EXPECT_EQ(TcpStateName(kEstablished), "established");
  EXPECT_EQ(TcpStateName(kTimeWait), "time_wait");
}

// A connection driven packet by packet with a fake clock, as the worker would: each packet
// moves the state and restarts the idle timer with the new state's timeout.
class FakeConnection {
 public:
  explicit FakeConnection(std::uint32_t start_ms) : now_ms_(start_ms), last_seen_ms_(start_ms) {}

  void Advance(std::uint32_t ms) { now_ms_ += ms; }
  void Packet(FlowDir dir, std::uint8_t flags) {
    state_ = TcpNextState(state_, dir, flags);
    last_seen_ms_ = now_ms_;
    timeout_ms_ = TcpTimeoutMs(state_, kIdleMs);
  }
  bool Expired() const { return IdleExpired(now_ms_, last_seen_ms_, timeout_ms_); }
  TcpState state() const { return state_; }
  std::uint32_t timeout_ms() const { return timeout_ms_; }

 private:
  std::uint32_t now_ms_;
  std::uint32_t last_seen_ms_;
  std::uint32_t timeout_ms_ = 0;
  TcpState state_ = kNone;
};

// Steps to `ms` before the timeout, expecting the connection alive, then to the timeout.
void ExpectTimeoutIs(FakeConnection& conn, std::uint32_t ms) {
  ASSERT_EQ(conn.timeout_ms(), ms) << TcpStateName(conn.state());
  conn.Advance(ms - 1);
  EXPECT_FALSE(conn.Expired()) << TcpStateName(conn.state());
  conn.Advance(1);
  EXPECT_TRUE(conn.Expired()) << TcpStateName(conn.state());
}

struct Lifecycle {
  std::string name;
  std::uint32_t start_ms;  // near the 32-bit wrap for some, to check wrap safety
  std::vector<std::pair<FlowDir, std::uint8_t>> packets;
  TcpState final_state;
  std::uint32_t final_timeout_ms;
};

class TcpLifecycleTest : public ::testing::TestWithParam<Lifecycle> {};

TEST_P(TcpLifecycleTest, EndsInStateWithItsTimeout) {
  const Lifecycle& lc = GetParam();
  FakeConnection conn(lc.start_ms);
  for (const auto& [dir, flags] : lc.packets) {
    conn.Advance(5);
    conn.Packet(dir, flags);
    EXPECT_FALSE(conn.Expired());
  }
  EXPECT_EQ(conn.state(), lc.final_state) << TcpStateName(conn.state());
  ExpectTimeoutIs(conn, lc.final_timeout_ms);
}

INSTANTIATE_TEST_SUITE_P(
    Scenarios, TcpLifecycleTest,
    ::testing::Values(
        Lifecycle{"syn_only", 0, {{kC, kTcpSyn}}, kSynSent, 10'000},
        Lifecycle{"handshake",
                  1000,
                  {{kC, kTcpSyn}, {kB, kSynAck}, {kC, kTcpAck}},
                  kEstablished,
                  kIdleMs},
        Lifecycle{"handshake_across_wrap",
                  0xffffffffu - 7,
                  {{kC, kTcpSyn}, {kB, kSynAck}, {kC, kTcpAck}, {kC, kPshAck}},
                  kEstablished,
                  kIdleMs},
        Lifecycle{"client_closes",
                  0,
                  {{kC, kTcpSyn},
                   {kB, kSynAck},
                   {kC, kTcpAck},
                   {kC, kFinAck},
                   {kB, kTcpAck},
                   {kB, kFinAck},
                   {kC, kTcpAck}},
                  kTimeWait,
                  10'000},
        Lifecycle{"backend_closes_half",
                  0,
                  {{kC, kTcpSyn}, {kB, kSynAck}, {kC, kTcpAck}, {kB, kFinAck}, {kC, kPshAck}},
                  kCloseWait,
                  30'000},
        Lifecycle{"both_fins_waiting_ack",
                  0xfffff000u,
                  {{kC, kTcpSyn}, {kB, kSynAck}, {kC, kTcpAck}, {kB, kFinAck}, {kC, kFinAck}},
                  kLastAck,
                  30'000},
        Lifecycle{"refused", 0, {{kC, kTcpSyn}, {kB, kRstAck}}, kClosed, 2'000},
        Lifecycle{"reset_mid_stream",
                  0,
                  {{kC, kTcpSyn}, {kB, kSynAck}, {kC, kTcpAck}, {kC, kPshAck}, {kC, kTcpRst}},
                  kClosed,
                  2'000},
        Lifecycle{"port_reuse_after_time_wait",
                  0,
                  {{kC, kTcpSyn},
                   {kB, kSynAck},
                   {kC, kTcpAck},
                   {kC, kFinAck},
                   {kB, kFinAck},
                   {kC, kTcpAck},
                   {kC, kTcpSyn}},
                  kSynSent,
                  10'000}),
    [](const ::testing::TestParamInfo<Lifecycle>& param_info) { return param_info.param.name; });

TEST(TcpStateTest, IdleTimerIsWrapSafe) {
  const std::uint32_t last_seen = 0xffffff00u;
  EXPECT_FALSE(IdleExpired(last_seen + 2'000 - 1, last_seen, 2'000));  // wrapped "now"
  EXPECT_TRUE(IdleExpired(last_seen + 2'000, last_seen, 2'000));
  EXPECT_EQ(ElapsedMs(5, 0xfffffffbu), 10u);
}

}  // namespace
}  // namespace fulcrum::nat
