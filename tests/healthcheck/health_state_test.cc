#include "healthcheck/health_state.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace fulcrum::hc {
namespace {

using std::chrono::seconds;

// A fake clock: probe results one interval apart, from a fixed origin.
class FakeClock {
 public:
  TimePoint Tick() {
    now_ += seconds(5);
    return now_;
  }
  TimePoint now() const { return now_; }

 private:
  TimePoint now_ = TimePoint{} + seconds(1000);
};

// Feeds "S"/"F" results and returns the state after each ("unknown", "up", "down").
std::vector<std::string> Feed(RiseFall& machine, FakeClock& clock, const std::string& results) {
  std::vector<std::string> states;
  for (const char result : results) {
    machine.Observe(result == 'S', clock.Tick());
    states.emplace_back(model::HealthStateName(machine.state()));
  }
  return states;
}

TEST(RiseFallTest, UnknownTurnsUpAfterRiseSuccesses) {
  FakeClock clock;
  RiseFall machine(HealthState::kUnknown, 3, 3, clock.now());
  EXPECT_EQ(Feed(machine, clock, "SSS"), (std::vector<std::string>{"unknown", "unknown", "up"}));
}

TEST(RiseFallTest, UnknownTurnsDownAfterFallFailures) {
  FakeClock clock;
  RiseFall machine(HealthState::kUnknown, 3, 2, clock.now());
  EXPECT_EQ(Feed(machine, clock, "FF"), (std::vector<std::string>{"unknown", "down"}));
}

TEST(RiseFallTest, UnknownNeedsAnUnbrokenRun) {
  FakeClock clock;
  RiseFall machine(HealthState::kUnknown, 3, 3, clock.now());
  EXPECT_EQ(Feed(machine, clock, "SSFSSFFS"),
            (std::vector<std::string>{"unknown", "unknown", "unknown", "unknown", "unknown",
                                      "unknown", "unknown", "unknown"}));
  EXPECT_EQ(machine.consecutive_successes(), 1u);
  EXPECT_EQ(machine.consecutive_failures(), 0u);
}

TEST(RiseFallTest, UpStaysUpUntilFallFailuresInARow) {
  FakeClock clock;
  RiseFall machine(HealthState::kUp, 2, 3, clock.now());
  EXPECT_EQ(Feed(machine, clock, "FFSFFF"),
            (std::vector<std::string>{"up", "up", "up", "up", "up", "down"}));
}

TEST(RiseFallTest, DownStaysDownUntilRiseSuccessesInARow) {
  FakeClock clock;
  RiseFall machine(HealthState::kDown, 2, 3, clock.now());
  EXPECT_EQ(Feed(machine, clock, "SFSS"), (std::vector<std::string>{"down", "down", "down", "up"}));
}

TEST(RiseFallTest, UpIgnoresSuccessesAndDownIgnoresFailures) {
  FakeClock clock;
  RiseFall up(HealthState::kUp, 1, 1, clock.now());
  RiseFall down(HealthState::kDown, 1, 1, clock.now());
  EXPECT_EQ(up.Observe(true, clock.Tick()), std::nullopt);
  EXPECT_EQ(down.Observe(false, clock.Tick()), std::nullopt);
  EXPECT_EQ(up.state(), HealthState::kUp);
  EXPECT_EQ(down.state(), HealthState::kDown);
}

TEST(RiseFallTest, ObserveReturnsOnlyTransitionsAndSinceFollowsThem) {
  FakeClock clock;
  const TimePoint start = clock.now();
  RiseFall machine(HealthState::kUnknown, 2, 2, start);
  EXPECT_EQ(machine.since(), start);
  EXPECT_EQ(machine.Observe(true, clock.Tick()), std::nullopt);
  const TimePoint up_at = clock.Tick();
  EXPECT_EQ(machine.Observe(true, up_at), HealthState::kUp);
  EXPECT_EQ(machine.since(), up_at);
  EXPECT_EQ(machine.Observe(false, clock.Tick()), std::nullopt);
  EXPECT_EQ(machine.since(), up_at);
  const TimePoint down_at = clock.Tick();
  EXPECT_EQ(machine.Observe(false, down_at), HealthState::kDown);
  EXPECT_EQ(machine.since(), down_at);
}

TEST(RiseFallTest, FlappingBackendThatNeverCompletesARunKeepsItsState) {
  FakeClock clock;
  RiseFall machine(HealthState::kUp, 3, 3, clock.now());
  for (int i = 0; i < 20; ++i) {
    machine.Observe(i % 3 != 2, clock.Tick());  // S S F, repeated
  }
  EXPECT_EQ(machine.state(), HealthState::kUp);
}

TEST(RiseFallTest, ThresholdsOfOneDecideOnEveryResult) {
  FakeClock clock;
  RiseFall machine(HealthState::kUnknown, 1, 1, clock.now());
  EXPECT_EQ(Feed(machine, clock, "SFSF"), (std::vector<std::string>{"up", "down", "up", "down"}));
}

TEST(RiseFallTest, ZeroThresholdsCountAsOne) {
  FakeClock clock;
  RiseFall machine(HealthState::kUnknown, 0, 0, clock.now());
  EXPECT_EQ(machine.rise(), 1u);
  EXPECT_EQ(machine.fall(), 1u);
  EXPECT_EQ(machine.Observe(false, clock.Tick()), HealthState::kDown);
}

TEST(RiseFallTest, CountersSaturateAtTheThreshold) {
  FakeClock clock;
  RiseFall machine(HealthState::kUp, 3, 2, clock.now());
  Feed(machine, clock, "SSSSSSSS");
  EXPECT_EQ(machine.consecutive_successes(), 3u);
  // Saturated successes must not delay the fall: two failures still take it down.
  EXPECT_EQ(Feed(machine, clock, "FF"), (std::vector<std::string>{"up", "down"}));
}

}  // namespace
}  // namespace fulcrum::hc
