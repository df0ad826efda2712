#include "healthcheck/targets.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/healthcheck/test_servers.h"

namespace fulcrum::hc {
namespace {

using nlohmann::json;
using testing::TargetJson;
using testing::TcpCheck;

json Answer(json targets, std::uint64_t version = 7) {
  return {{"version", version}, {"unchanged", false}, {"targets", std::move(targets)}};
}

model::HealthCheck HttpCheck() {
  model::HealthCheck check;
  check.type = model::HealthCheckType::kHttp;
  check.port = 8080;
  check.path = "/healthz";
  check.host = "app.example";
  check.codes = {"2xx"};
  return check;
}

std::string ErrorOf(const json& answer) {
  Result<TargetsAnswer> parsed = ParseTargetsAnswer(answer);
  EXPECT_FALSE(parsed.ok());
  return parsed.ok() ? "" : parsed.status().message();
}

TEST(ParseTargetsTest, ReadsTheShapeLbdSends) {
  const json answer =
      Answer({TargetJson("lsn-11223344", "198.18.1.11:80", HttpCheck(), "up", "http"),
              TargetJson("lsn-11223344", "[2001:db8::12]:80", TcpCheck(2, 4), "down")});
  Result<TargetsAnswer> parsed = ParseTargetsAnswer(answer);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->version, 7u);
  EXPECT_FALSE(parsed->unchanged);
  ASSERT_EQ(parsed->targets.size(), 2u);
  const Target& http = parsed->targets[0];
  EXPECT_EQ(http.key.ToString(), "lsn-11223344 198.18.1.11:80");
  EXPECT_EQ(http.protocol, model::Protocol::kHttp);
  EXPECT_EQ(http.check, HttpCheck());
  EXPECT_EQ(http.state, model::HealthState::kUp);
  const Target& tcp = parsed->targets[1];
  EXPECT_EQ(tcp.key.backend.ToString(), "[2001:db8::12]:80");
  EXPECT_EQ(tcp.check.rise, 2u);
  EXPECT_EQ(tcp.check.fall, 4u);
  EXPECT_EQ(tcp.state, model::HealthState::kDown);
}

TEST(ParseTargetsTest, UnchangedAnswerHasNoTargets) {
  Result<TargetsAnswer> parsed =
      ParseTargetsAnswer({{"version", 1795000000000001}, {"unchanged", true}});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_TRUE(parsed->unchanged);
  EXPECT_EQ(parsed->version, 1795000000000001u);
  EXPECT_TRUE(parsed->targets.empty());
}

TEST(ParseTargetsTest, EmptyListIsFine) {
  Result<TargetsAnswer> parsed = ParseTargetsAnswer(Answer(json::array()));
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->targets.empty());
}

TEST(ParseTargetsTest, BackendIsAcceptedForAddr) {
  json target = TargetJson("lsn-11223344", "198.18.1.11:80", TcpCheck(3, 3));
  target.erase("addr");
  target["backend"] = "198.18.1.11:80";
  Result<TargetsAnswer> parsed = ParseTargetsAnswer(Answer({target}));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->targets[0].key.backend.ToString(), "198.18.1.11:80");
}

TEST(ParseTargetsTest, UnusedExtraFieldsAreIgnored) {
  json target = TargetJson("lsn-11223344", "198.18.1.11:80", TcpCheck(3, 3));
  target["zone"] = "a";
  EXPECT_TRUE(ParseTargetsAnswer(Answer({target})).ok());
}

TEST(ParseTargetsTest, MismatchesNameTheField) {
  const json good = TargetJson("lsn-11223344", "198.18.1.11:80", TcpCheck(3, 3));
  json missing = good;
  missing.erase("state");
  EXPECT_EQ(ErrorOf(Answer({missing})), "health.targets answer: targets[0].state is missing");

  json wrong_type = good;
  wrong_type["health_check"]["rise"] = "3";
  EXPECT_EQ(ErrorOf(Answer({good, wrong_type})),
            "health.targets answer: targets[1].health_check.rise must be an integer, not \"3\"");

  json out_of_range = good;
  out_of_range["health_check"]["interval"] = 0;
  EXPECT_NE(ErrorOf(Answer({out_of_range})).find("targets[0].health_check.interval is 0"),
            std::string::npos);

  json bad_addr = good;
  bad_addr["addr"] = "198.18.1.11";
  EXPECT_NE(ErrorOf(Answer({bad_addr})).find("targets[0].addr"), std::string::npos);

  json bad_state = good;
  bad_state["state"] = "sick";
  EXPECT_NE(ErrorOf(Answer({bad_state})).find("targets[0].state is 'sick'"), std::string::npos);

  json bad_type = good;
  bad_type["health_check"]["type"] = "icmp";
  EXPECT_NE(ErrorOf(Answer({bad_type})).find("icmp"), std::string::npos);

  json no_check = good;
  no_check.erase("health_check");
  EXPECT_NE(ErrorOf(Answer({no_check})).find("targets[0].health_check is missing"),
            std::string::npos);
}

TEST(ParseTargetsTest, RefusesTopLevelMismatches) {
  EXPECT_NE(ErrorOf(json::array()).find("not an object"), std::string::npos);
  EXPECT_NE(ErrorOf({{"targets", json::array()}}).find("version is missing"), std::string::npos);
  EXPECT_NE(ErrorOf({{"version", -1}, {"targets", json::array()}}).find("version must be"),
            std::string::npos);
  EXPECT_NE(ErrorOf({{"version", 1}}).find("targets must be an array"), std::string::npos);
  EXPECT_NE(ErrorOf({{"version", 1}, {"unchanged", "no"}}).find("unchanged"), std::string::npos);
  EXPECT_NE(ErrorOf(Answer({42})).find("targets[0] is not an object"), std::string::npos);
}

TEST(ParseTargetsTest, RefusesRepeatedTargets) {
  const json target = TargetJson("lsn-11223344", "198.18.1.11:80", TcpCheck(3, 3));
  EXPECT_NE(ErrorOf(Answer({target, target})).find("targets[1] repeats"), std::string::npos);
}

TEST(ParseTargetsTest, RefusesChecksThatCannotRun) {
  model::HealthCheck udp;
  udp.type = model::HealthCheckType::kUdp;
  udp.send = "abc";
  udp.expect = "00";
  EXPECT_NE(ErrorOf(Answer({TargetJson("lsn-1", "198.18.1.11:53", udp, "unknown", "udp")}))
                .find("targets[0].health_check.send"),
            std::string::npos);

  model::HealthCheck slow = TcpCheck(3, 3, 2);
  slow.timeout = 5;
  EXPECT_NE(ErrorOf(Answer({TargetJson("lsn-1", "198.18.1.11:80", slow)})).find("exceeds"),
            std::string::npos);

  model::HealthCheck codes = HttpCheck();
  codes.codes = {"9xx"};
  EXPECT_NE(ErrorOf(Answer({TargetJson("lsn-1", "198.18.1.11:80", codes)})).find("9xx"),
            std::string::npos);
}

}  // namespace
}  // namespace fulcrum::hc
