#include "common/model.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/ids.h"

namespace fulcrum::model {
namespace {

using nlohmann::json;

constexpr std::int64_t kNow = 1795000000;

IpAddress Ip(std::string_view text) { return *IpAddress::Parse(text); }
Endpoint Ep(std::string_view text) { return *Endpoint::Parse(text); }

std::string LbId(int n) { return fmt::format("lb-{:08x}", n); }
std::string GroupId(int n) { return fmt::format("sg-{:08x}", n); }
std::string ListenerId(int n) { return fmt::format("lsn-{:08x}", n); }

#define EXPECT_OK(expr)                              \
  do {                                               \
    const ::fulcrum::Status status_ = (expr);        \
    EXPECT_TRUE(status_.ok()) << status_.ToString(); \
  } while (0)
#define ASSERT_OK(expr)                              \
  do {                                               \
    const ::fulcrum::Status status_ = (expr);        \
    ASSERT_TRUE(status_.ok()) << status_.ToString(); \
  } while (0)

// Expects `status` to fail with `code` and a message containing each of `words`.
void ExpectError(const Status& status, ErrorCode code, std::vector<std::string> words = {}) {
  ASSERT_FALSE(status.ok()) << "expected " << ErrorCodeName(code);
  EXPECT_EQ(status.code(), code) << status.ToString();
  for (const std::string& word : words) {
    EXPECT_NE(status.message().find(word), std::string::npos)
        << "'" << word << "' not in: " << status.message();
  }
}

ListenerOptions Options(const json& args) {
  JsonFields fields = JsonFields::ForArgs(args);
  ListenerOptions options = ReadListenerOptions(fields);
  const Status status = fields.Finish();
  EXPECT_TRUE(status.ok()) << status.ToString();
  return options;
}

ListenerOptions WithGroup(const std::string& group, json args = json::object()) {
  args["group"] = group;
  return Options(args);
}

// One IPv4 LB (lb 1, VIP 198.18.100.10) with group 1 holding two backends.
class ModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(model_.CreateLb(LbId(1), "web", Ip("198.18.100.10"), kNow));
    ASSERT_OK(model_.CreateGroup(GroupId(1), LbId(1), "pool"));
    ASSERT_OK(model_.AddBackend(GroupId(1), Ep("198.18.1.11:80"), 10));
    ASSERT_OK(model_.AddBackend(GroupId(1), Ep("198.18.1.12:80"), 20));
  }

  Status AddTcpListener(int n, std::int64_t port, json args = json::object()) {
    return model_.CreateListener(ListenerId(n), LbId(1), Protocol::kTcp, port,
                                 WithGroup(GroupId(1), std::move(args)), kNow);
  }

  // A failed mutation must leave the model exactly as it was.
  void ExpectUnchangedBy(const std::function<Status(Model&)>& mutation, ErrorCode code,
                         std::vector<std::string> words = {}) {
    const json before = model_.ToJson();
    const std::uint64_t version = model_.version();
    ExpectError(mutation(model_), code, std::move(words));
    EXPECT_EQ(model_.ToJson(), before);
    EXPECT_EQ(model_.version(), version);
  }

  Model model_{{Ip("198.18.0.1"), Ip("198.18.1.1")}};
};

TEST(ModelNamesTest, EveryEnumRoundTripsThroughItsName) {
  for (Protocol p : {Protocol::kTcp, Protocol::kUdp, Protocol::kHttp, Protocol::kHttps}) {
    EXPECT_EQ(ProtocolFromName(ProtocolName(p)), p);
  }
  for (Scheduler s :
       {Scheduler::kWrr, Scheduler::kWlc, Scheduler::kRr, Scheduler::kSh, Scheduler::kMaglev}) {
    EXPECT_EQ(SchedulerFromName(SchedulerName(s)), s);
  }
  for (ForwardMode m : {ForwardMode::kFnat, ForwardMode::kDnat}) {
    EXPECT_EQ(ForwardModeFromName(ForwardModeName(m)), m);
  }
  for (HealthCheckType t : {HealthCheckType::kTcp, HealthCheckType::kHttp, HealthCheckType::kUdp,
                            HealthCheckType::kNone}) {
    EXPECT_EQ(HealthCheckTypeFromName(HealthCheckTypeName(t)), t);
  }
  for (HealthState h : {HealthState::kUnknown, HealthState::kUp, HealthState::kDown}) {
    EXPECT_EQ(HealthStateFromName(HealthStateName(h)), h);
  }
  for (BackendDownPolicy d :
       {BackendDownPolicy::kKeep, BackendDownPolicy::kReset, BackendDownPolicy::kReschedule}) {
    EXPECT_EQ(BackendDownPolicyFromName(BackendDownPolicyName(d)), d);
  }
  EXPECT_EQ(BackendDownPolicyName(BackendDownPolicy::kReschedule), "reschedule");
  EXPECT_FALSE(BackendDownPolicyFromName("drop").has_value());
  EXPECT_EQ(ProtocolName(Protocol::kHttps), "https");
  EXPECT_EQ(SchedulerName(Scheduler::kMaglev), "maglev");
  EXPECT_FALSE(ProtocolFromName("TCP").has_value());
  EXPECT_FALSE(SchedulerFromName("lc").has_value());
  EXPECT_EQ(FamilyOf(Protocol::kHttps), ProtocolFamily::kTcp);
  EXPECT_EQ(FamilyOf(Protocol::kUdp), ProtocolFamily::kUdp);
}

TEST_F(ModelTest, CreatesLoadBalancers) {
  const LoadBalancer* lb = model_.FindLb(LbId(1));
  ASSERT_NE(lb, nullptr);
  EXPECT_EQ(lb->name, "web");
  EXPECT_EQ(lb->vip, Ip("198.18.100.10"));
  EXPECT_EQ(lb->created_at, kNow);
  EXPECT_OK(model_.CreateLb(LbId(2), "v6.web_2", Ip("2001:db8::10"), kNow));
  EXPECT_EQ(model_.lbs().size(), 2u);
}

TEST_F(ModelTest, RefusesBadLoadBalancerNamesAndVips) {
  const std::string long_name(kMaxNameLength + 1, 'a');
  for (const std::string& name :
       {std::string(""), std::string("a b"), std::string("web/1"), long_name, std::string("ünï")}) {
    ExpectUnchangedBy([&](Model& m) { return m.CreateLb(LbId(2), name, Ip("198.18.100.11"), 0); },
                      ErrorCode::kInvalidParameter, {"name"});
  }
  EXPECT_OK(model_.CreateLb(LbId(2), std::string(kMaxNameLength, 'a'), Ip("198.18.100.11"), 0));
  for (std::string_view vip :
       {"0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "::", "ff02::1"}) {
    ExpectUnchangedBy([&](Model& m) { return m.CreateLb(LbId(3), "x", Ip(vip), 0); },
                      ErrorCode::kInvalidParameter, {std::string(vip)});
  }
}

TEST_F(ModelTest, RefusesVipConflicts) {
  ExpectUnchangedBy([](Model& m) { return m.CreateLb(LbId(2), "b", Ip("198.18.100.10"), 0); },
                    ErrorCode::kAddressConflict, {"198.18.100.10", LbId(1)});
  ExpectUnchangedBy([](Model& m) { return m.CreateLb(LbId(2), "b", Ip("198.18.1.1"), 0); },
                    ErrorCode::kAddressConflict, {"198.18.1.1", "own"});
}

TEST_F(ModelTest, RefusesBadOrReusedIds) {
  ExpectUnchangedBy([](Model& m) { return m.CreateLb("lb-1", "b", Ip("198.18.100.11"), 0); },
                    ErrorCode::kInvalidParameter, {"lb-1"});
  ExpectUnchangedBy([](Model& m) { return m.CreateLb(GroupId(9), "b", Ip("198.18.100.11"), 0); },
                    ErrorCode::kInvalidParameter);
  ExpectUnchangedBy([](Model& m) { return m.CreateLb(LbId(1), "b", Ip("198.18.100.11"), 0); },
                    ErrorCode::kAlreadyExists, {LbId(1)});
  ASSERT_OK(model_.CreateLb(LbId(2), "b", Ip("198.18.100.11"), 0));
  ASSERT_TRUE(model_.DeleteLb(LbId(2)).ok());
  EXPECT_TRUE(model_.IdTaken(LbId(2)));
  EXPECT_EQ(model_.retired_ids().count(LbId(2)), 1u);
  ExpectUnchangedBy([](Model& m) { return m.CreateLb(LbId(2), "b", Ip("198.18.100.11"), 0); },
                    ErrorCode::kAlreadyExists, {LbId(2)});
}

TEST(ModelLimitsTest, LoadBalancerLimit) {
  Model model;
  for (std::size_t i = 0; i < kMaxLbs; ++i) {
    ASSERT_OK(model.CreateLb(LbId(static_cast<int>(i)), "lb",
                             IpAddress::V4(0xc6126400u + static_cast<std::uint32_t>(i)), 0));
  }
  ExpectError(model.CreateLb(LbId(9999), "lb", Ip("198.18.200.1"), 0), ErrorCode::kLimitExceeded,
              {"256"});
  EXPECT_EQ(model.lbs().size(), kMaxLbs);
}

TEST_F(ModelTest, LooksUpObjectsWithClearErrors) {
  EXPECT_TRUE(model_.GetLb(LbId(1)).ok());
  ExpectError(model_.GetLb(LbId(7)).status(), ErrorCode::kResourceNotFound, {LbId(7)});
  ExpectError(model_.GetLb("web").status(), ErrorCode::kInvalidParameter, {"web"});
  ExpectError(model_.GetGroup(LbId(1)).status(), ErrorCode::kInvalidParameter);
  ExpectError(model_.GetListener(ListenerId(3)).status(), ErrorCode::kResourceNotFound,
              {ListenerId(3)});
}

TEST_F(ModelTest, GroupsBelongToAnExistingLbAndAreLimited) {
  ExpectUnchangedBy([](Model& m) { return m.CreateGroup(GroupId(2), LbId(9), "p"); },
                    ErrorCode::kResourceNotFound, {LbId(9)});
  ExpectUnchangedBy([](Model& m) { return m.CreateGroup(GroupId(2), LbId(1), "bad name"); },
                    ErrorCode::kInvalidParameter);
  for (int i = 2; i <= static_cast<int>(kMaxGroupsPerLb); ++i) {
    ASSERT_OK(model_.CreateGroup(GroupId(i), LbId(1), "p"));
  }
  ExpectUnchangedBy([](Model& m) { return m.CreateGroup(GroupId(999), LbId(1), "p"); },
                    ErrorCode::kLimitExceeded, {LbId(1), "64"});
  EXPECT_EQ(model_.GroupsOfLb(LbId(1)).size(), kMaxGroupsPerLb);
}

TEST_F(ModelTest, BackendsHaveWeightsInRange) {
  const ServerGroup* group = model_.FindGroup(GroupId(1));
  ASSERT_EQ(group->backends.size(), 2u);
  EXPECT_EQ(group->backends[0].addr, Ep("198.18.1.11:80"));
  EXPECT_EQ(group->backends[1].weight, 20u);
  EXPECT_OK(model_.AddBackend(GroupId(1), Ep("198.18.1.13:80"), 0));
  EXPECT_OK(model_.AddBackend(GroupId(1), Ep("198.18.1.14:80"), 100));
  ExpectUnchangedBy([](Model& m) { return m.AddBackend(GroupId(1), Ep("198.18.1.15:80"), 101); },
                    ErrorCode::kInvalidParameter, {"weight", "101", "0..100"});
  ExpectUnchangedBy([](Model& m) { return m.AddBackend(GroupId(1), Ep("198.18.1.15:80"), -1); },
                    ErrorCode::kInvalidParameter, {"weight"});
  EXPECT_OK(model_.SetWeight(GroupId(1), Ep("198.18.1.11:80"), 55));
  EXPECT_EQ(model_.FindGroup(GroupId(1))->FindBackend(Ep("198.18.1.11:80"))->weight, 55u);
  ExpectUnchangedBy([](Model& m) { return m.SetWeight(GroupId(1), Ep("198.18.1.11:80"), 200); },
                    ErrorCode::kInvalidParameter);
  ExpectUnchangedBy([](Model& m) { return m.SetWeight(GroupId(1), Ep("198.18.1.99:80"), 5); },
                    ErrorCode::kResourceNotFound, {"198.18.1.99:80", GroupId(1)});
}

// An IPv6 VIP may have IPv4 backends (NAT64) for full NAT only: a dnat listener refuses them,
// whichever comes first, the listener or the backend, naming the backend.
TEST_F(ModelTest, Ipv4BackendsBehindAnIpv6VipAreForFnatOnly) {
  ASSERT_OK(model_.CreateLb(LbId(2), "v6", Ip("2001:db8:100::10"), kNow));
  ASSERT_OK(model_.CreateGroup(GroupId(2), LbId(2), "mixed"));
  ASSERT_OK(model_.AddBackend(GroupId(2), Ep("[2001:db8:1::11]:80"), 10));
  ASSERT_OK(model_.AddBackend(GroupId(2), Ep("198.18.1.11:80"), 10));
  ASSERT_OK(model_.CreateListener(ListenerId(1), LbId(2), Protocol::kTcp, 80, WithGroup(GroupId(2)),
                                  kNow));
  ExpectUnchangedBy(
      [](Model& m) {
        return m.CreateListener(ListenerId(2), LbId(2), Protocol::kTcp, 81,
                                WithGroup(GroupId(2), {{"mode", "dnat"}}), kNow);
      },
      ErrorCode::kInvalidParameter, {"dnat", "198.18.1.11:80", GroupId(2), "fnat"});
  ExpectUnchangedBy(
      [](Model& m) {
        return m.ModifyListener(ListenerId(1), Options({{"mode", "dnat"}}));
      },
      ErrorCode::kInvalidParameter, {"dnat", "198.18.1.11:80"});
  ASSERT_OK(model_.CreateGroup(GroupId(3), LbId(2), "direct"));
  ASSERT_OK(model_.AddBackend(GroupId(3), Ep("[2001:db8:1::12]:80"), 10));
  ASSERT_OK(model_.CreateListener(ListenerId(3), LbId(2), Protocol::kTcp, 82,
                                  WithGroup(GroupId(3), {{"mode", "dnat"}}), kNow));
  ExpectUnchangedBy([](Model& m) { return m.AddBackend(GroupId(3), Ep("198.18.1.12:80"), 10); },
                    ErrorCode::kInvalidParameter, {"198.18.1.12:80", ListenerId(3), "dnat"});
}

TEST_F(ModelTest, RefusesDuplicateForeignFamilyAndUnusableBackends) {
  ExpectUnchangedBy([](Model& m) { return m.AddBackend(GroupId(1), Ep("198.18.1.11:80"), 10); },
                    ErrorCode::kAlreadyExists, {"198.18.1.11:80", GroupId(1)});
  EXPECT_OK(model_.AddBackend(GroupId(1), Ep("198.18.1.11:8080"), 10));
  ExpectUnchangedBy([](Model& m) { return m.AddBackend(GroupId(1), Ep("[2001:db8::1]:80"), 10); },
                    ErrorCode::kInvalidParameter, {"[2001:db8::1]:80", "ipv4", LbId(1)});
  ExpectUnchangedBy([](Model& m) { return m.AddBackend(GroupId(1), Ep("0.0.0.0:80"), 10); },
                    ErrorCode::kInvalidParameter);
  ExpectUnchangedBy([](Model& m) { return m.AddBackend(GroupId(1), Ep("198.18.1.1:80"), 10); },
                    ErrorCode::kInvalidParameter, {"198.18.1.1", "own"});
  ExpectUnchangedBy([](Model& m) { return m.AddBackend(GroupId(1), Ep("224.0.0.5:80"), 10); },
                    ErrorCode::kInvalidParameter);
  ExpectUnchangedBy([](Model& m) { return m.AddBackend(GroupId(7), Ep("198.18.1.20:80"), 10); },
                    ErrorCode::kResourceNotFound, {GroupId(7)});
}

TEST_F(ModelTest, BackendLimitPerGroup) {
  ASSERT_OK(model_.CreateGroup(GroupId(2), LbId(1), "big"));
  for (std::uint32_t i = 0; i < kMaxBackendsPerGroup; ++i) {
    ASSERT_OK(model_.AddBackend(
        GroupId(2),
        Endpoint{IpAddress::V4(0xc6120120u + i % 200), static_cast<std::uint16_t>(1000 + i)}, 10));
  }
  ExpectUnchangedBy([](Model& m) { return m.AddBackend(GroupId(2), Ep("198.18.1.11:9"), 10); },
                    ErrorCode::kLimitExceeded, {GroupId(2), "1024"});
  EXPECT_EQ(model_.backend_count(), kMaxBackendsPerGroup + 2);
}

TEST_F(ModelTest, ListenerDefaultsFollowTheProtocol) {
  ASSERT_OK(AddTcpListener(1, 80));
  const Listener* tcp = model_.FindListener(ListenerId(1));
  ASSERT_NE(tcp, nullptr);
  EXPECT_EQ(tcp->scheduler, Scheduler::kWrr);
  EXPECT_EQ(tcp->mode, ForwardMode::kFnat);
  EXPECT_EQ(tcp->idle_timeout, 900u);
  EXPECT_EQ(tcp->persistence, 0u);
  EXPECT_EQ(tcp->on_backend_down, BackendDownPolicy::kReset);
  EXPECT_EQ(tcp->health_check, HealthCheck{});
  EXPECT_EQ(tcp->health_check.type, HealthCheckType::kTcp);
  EXPECT_EQ(tcp->created_at, kNow);

  ASSERT_OK(model_.CreateListener(ListenerId(2), LbId(1), Protocol::kHttp, 8080,
                                  WithGroup(GroupId(1)), kNow));
  const HealthCheck& http = model_.FindListener(ListenerId(2))->health_check;
  EXPECT_EQ(http.type, HealthCheckType::kHttp);
  EXPECT_EQ(http.path, "/");
  EXPECT_EQ(http.codes, (std::vector<std::string>{"2xx", "3xx"}));
  EXPECT_EQ(http.interval, 5u);
  EXPECT_EQ(http.timeout, 2u);
  EXPECT_EQ(http.rise, 3u);
  EXPECT_EQ(http.fall, 3u);
  EXPECT_EQ(model_.FindListener(ListenerId(2))->on_backend_down, BackendDownPolicy::kReset);

  ASSERT_OK(model_.CreateListener(ListenerId(3), LbId(1), Protocol::kUdp, 53,
                                  WithGroup(GroupId(1), {{"health_check", {{"type", "none"}}}}),
                                  kNow));
  EXPECT_EQ(model_.FindListener(ListenerId(3))->idle_timeout, 300u);
  EXPECT_EQ(model_.FindListener(ListenerId(3))->health_check.type, HealthCheckType::kNone);
  // A udp flow pinned to a dead backend would wait out the whole idle timeout.
  EXPECT_EQ(model_.FindListener(ListenerId(3))->on_backend_down, BackendDownPolicy::kReschedule);
  EXPECT_EQ(DefaultBackendDownPolicy(Protocol::kHttps), BackendDownPolicy::kReset);
}

TEST_F(ModelTest, ListenerTakesEveryOption) {
  ASSERT_OK(AddTcpListener(1, 443,
                           {{"scheduler", "maglev"},
                            {"mode", "dnat"},
                            {"idle_timeout", 86400},
                            {"persistence", 3600},
                            {"on_backend_down", "keep"},
                            {"health_check",
                             {{"type", "http"},
                              {"port", 8080},
                              {"interval", 300},
                              {"timeout", 60},
                              {"rise", 10},
                              {"fall", 1},
                              {"path", "/healthz?full=1"},
                              {"host", "www.example.com"},
                              {"codes", {"3xx", "2xx", "2xx"}}}}}));
  const Listener& listener = *model_.FindListener(ListenerId(1));
  EXPECT_EQ(listener.scheduler, Scheduler::kMaglev);
  EXPECT_EQ(listener.mode, ForwardMode::kDnat);
  EXPECT_EQ(listener.idle_timeout, 86400u);
  EXPECT_EQ(listener.persistence, 3600u);
  EXPECT_EQ(listener.on_backend_down, BackendDownPolicy::kKeep);
  EXPECT_EQ(listener.health_check.port, 8080);
  EXPECT_EQ(listener.health_check.interval, 300u);
  EXPECT_EQ(listener.health_check.timeout, 60u);
  EXPECT_EQ(listener.health_check.path, "/healthz?full=1");
  EXPECT_EQ(listener.health_check.host, "www.example.com");
  EXPECT_EQ(listener.health_check.codes, (std::vector<std::string>{"2xx", "3xx"}));
}

TEST_F(ModelTest, RefusesOutOfRangeListenerOptions) {
  struct Case {
    json args;
    std::string word;
  };
  const std::vector<Case> cases = {
      {{{"idle_timeout", 0}}, "idle_timeout"},
      {{{"idle_timeout", 86401}}, "idle_timeout"},
      {{{"persistence", 29}}, "persistence"},
      {{{"persistence", 3601}}, "persistence"},
      {{{"persistence", -1}}, "persistence"},
      {{{"health_check", {{"port", 65536}}}}, "health_check.port"},
      {{{"health_check", {{"port", -1}}}}, "health_check.port"},
      {{{"health_check", {{"interval", 0}}}}, "health_check.interval"},
      {{{"health_check", {{"interval", 301}}}}, "health_check.interval"},
      {{{"health_check", {{"timeout", 61}, {"interval", 100}}}}, "health_check.timeout"},
      {{{"health_check", {{"timeout", 6}}}}, "exceeds health_check.interval"},
      {{{"health_check", {{"rise", 0}}}}, "health_check.rise"},
      {{{"health_check", {{"fall", 11}}}}, "health_check.fall"},
      {{{"health_check", {{"type", "http"}, {"path", "healthz"}}}}, "health_check.path"},
      {{{"health_check", {{"type", "http"}, {"path", "/a b"}}}}, "health_check.path"},
      {{{"health_check", {{"type", "http"}, {"path", "/" + std::string(200, 'a')}}}},
       "health_check.path"},
      {{{"health_check", {{"type", "http"}, {"host", "bad host"}}}}, "health_check.host"},
      {{{"health_check", {{"type", "http"}, {"host", std::string(254, 'a')}}}},
       "health_check.host"},
      {{{"health_check", {{"type", "http"}, {"host", "-bad.example"}}}}, "health_check.host"},
      {{{"health_check", {{"type", "http"}, {"codes", json::array()}}}}, "health_check.codes"},
      {{{"health_check", {{"type", "http"}, {"codes", {"200"}}}}}, "health_check.codes"},
      {{{"health_check", {{"type", "http"}, {"codes", {"6xx"}}}}}, "health_check.codes"},
      {{{"health_check", {{"path", "/x"}}}}, "only to http"},
      {{{"health_check", {{"type", "none"}, {"codes", {"2xx"}}}}}, "only to http"},
      {{{"health_check", {{"send", "00"}}}}, "only to udp"},
      {{{"health_check", {{"type", "udp"}, {"send", "00"}, {"expect", "00"}}}}, "udp"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args.dump());
    ExpectUnchangedBy(
        [&](Model& m) {
          return m.CreateListener(ListenerId(1), LbId(1), Protocol::kTcp, 80,
                                  WithGroup(GroupId(1), c.args), kNow);
        },
        ErrorCode::kInvalidParameter, {c.word, "tcp listener on " + LbId(1) + " port 80"});
  }
  EXPECT_OK(AddTcpListener(1, 80, {{"persistence", 0}, {"health_check", {{"timeout", 5}}}}));
  EXPECT_OK(AddTcpListener(2, 81, {{"persistence", 30}}));
  EXPECT_OK(AddTcpListener(3, 82, {{"health_check", {{"type", "http"}, {"host", "198.18.1.5"}}}}));
}

TEST_F(ModelTest, ClientIpIsForTcpListenersInFnatMode) {
  ASSERT_OK(AddTcpListener(1, 80, {{"client_ip", "proxy-v2"}}));
  EXPECT_EQ(model_.FindListener(ListenerId(1))->client_ip, ClientIpMode::kProxyV2);
  EXPECT_EQ(ClientIpModeFromName("proxy-v1"), ClientIpMode::kProxyV1);
  EXPECT_EQ(ClientIpModeFromName("toa"), ClientIpMode::kToa);
  EXPECT_EQ(ClientIpModeFromName("proxy"), std::nullopt);
  // A dnat backend sees the client itself; a udp datagram has no stream to carry a header.
  ExpectUnchangedBy(
      [](Model& m) {
        return m.CreateListener(ListenerId(2), LbId(1), Protocol::kTcp, 81,
                                WithGroup(GroupId(1), {{"mode", "dnat"}, {"client_ip", "toa"}}),
                                kNow);
      },
      ErrorCode::kInvalidParameter, {"client_ip toa", "fnat"});
  ExpectUnchangedBy(
      [](Model& m) {
        return m.CreateListener(ListenerId(2), LbId(1), Protocol::kUdp, 81,
                                WithGroup(GroupId(1), {{"client_ip", "proxy-v1"},
                                                       {"health_check", {{"type", "none"}}}}),
                                kNow);
      },
      ErrorCode::kInvalidParameter, {"client_ip proxy-v1", "udp"});
  ExpectUnchangedBy(
      [](Model& m) {
        return m.ModifyListener(ListenerId(1), Options({{"mode", "dnat"}}));
      },
      ErrorCode::kInvalidParameter, {"client_ip proxy-v2", "dnat"});
  ASSERT_OK(
      model_.ModifyListener(ListenerId(1), Options({{"mode", "dnat"}, {"client_ip", "off"}})));
  EXPECT_EQ(model_.FindListener(ListenerId(1))->client_ip, ClientIpMode::kOff);
}

TEST_F(ModelTest, ListenerPortRangeAndGroupChecks) {
  ExpectUnchangedBy(
      [](Model& m) {
        return m.CreateListener(ListenerId(1), LbId(1), Protocol::kTcp, 0, WithGroup(GroupId(1)),
                                kNow);
      },
      ErrorCode::kInvalidParameter, {"port"});
  ExpectUnchangedBy(
      [](Model& m) {
        return m.CreateListener(ListenerId(1), LbId(1), Protocol::kTcp, 65536,
                                WithGroup(GroupId(1)), kNow);
      },
      ErrorCode::kInvalidParameter, {"port"});
  ExpectUnchangedBy(
      [](Model& m) {
        return m.CreateListener(ListenerId(1), LbId(1), Protocol::kTcp, 80, ListenerOptions{},
                                kNow);
      },
      ErrorCode::kMissingParameter, {"group"});
  ExpectUnchangedBy(
      [](Model& m) {
        return m.CreateListener(ListenerId(1), LbId(1), Protocol::kTcp, 80, WithGroup(GroupId(5)),
                                kNow);
      },
      ErrorCode::kResourceNotFound, {GroupId(5)});
  ExpectUnchangedBy(
      [](Model& m) {
        return m.CreateListener(ListenerId(1), LbId(5), Protocol::kTcp, 80, WithGroup(GroupId(1)),
                                kNow);
      },
      ErrorCode::kResourceNotFound, {LbId(5)});
  ASSERT_OK(model_.CreateLb(LbId(2), "other", Ip("198.18.100.11"), kNow));
  ASSERT_OK(model_.CreateGroup(GroupId(2), LbId(2), "other-pool"));
  ExpectUnchangedBy(
      [](Model& m) {
        return m.CreateListener(ListenerId(1), LbId(1), Protocol::kTcp, 80, WithGroup(GroupId(2)),
                                kNow);
      },
      ErrorCode::kInvalidParameter, {GroupId(2), LbId(2), LbId(1)});
}

TEST_F(ModelTest, FrontendPortIsUniquePerProtocolFamily) {
  ASSERT_OK(AddTcpListener(1, 80));
  for (Protocol protocol : {Protocol::kTcp, Protocol::kHttp, Protocol::kHttps}) {
    ExpectUnchangedBy(
        [&](Model& m) {
          return m.CreateListener(ListenerId(2), LbId(1), protocol, 80, WithGroup(GroupId(1)),
                                  kNow);
        },
        ErrorCode::kPortConflict, {LbId(1), ListenerId(1), "tcp port 80"});
  }
  EXPECT_OK(model_.CreateListener(ListenerId(2), LbId(1), Protocol::kUdp, 80,
                                  WithGroup(GroupId(1), {{"health_check", {{"type", "none"}}}}),
                                  kNow));
  ExpectUnchangedBy(
      [](Model& m) {
        return m.CreateListener(ListenerId(3), LbId(1), Protocol::kUdp, 80,
                                WithGroup(GroupId(1), {{"health_check", {{"type", "none"}}}}),
                                kNow);
      },
      ErrorCode::kPortConflict, {ListenerId(2), "udp port 80"});
  // Another LB may use the same port.
  ASSERT_OK(model_.CreateLb(LbId(2), "other", Ip("198.18.100.11"), kNow));
  ASSERT_OK(model_.CreateGroup(GroupId(2), LbId(2), "p"));
  EXPECT_OK(model_.CreateListener(ListenerId(3), LbId(2), Protocol::kTcp, 80, WithGroup(GroupId(2)),
                                  kNow));
}

TEST_F(ModelTest, ListenerLimitPerLb) {
  for (int i = 0; i < static_cast<int>(kMaxListenersPerLb); ++i) {
    ASSERT_OK(AddTcpListener(i, 1000 + i));
  }
  ExpectUnchangedBy(
      [](Model& m) {
        return m.CreateListener(ListenerId(999), LbId(1), Protocol::kTcp, 2000,
                                WithGroup(GroupId(1)), kNow);
      },
      ErrorCode::kLimitExceeded, {LbId(1), "64"});
}

TEST_F(ModelTest, UdpListenersNeedAnExplicitHealthCheck) {
  const auto create = [](const json& args) {
    return [args](Model& m) {
      return m.CreateListener(ListenerId(1), LbId(1), Protocol::kUdp, 53,
                              WithGroup(GroupId(1), args), kNow);
    };
  };
  ExpectUnchangedBy(create(json::object()), ErrorCode::kMissingParameter,
                    {"health_check.type", "udp"});
  ExpectUnchangedBy(create({{"health_check", {{"interval", 3}}}}), ErrorCode::kMissingParameter);
  ExpectUnchangedBy(create({{"health_check", {{"type", "udp"}}}}), ErrorCode::kMissingParameter,
                    {"send", "expect"});
  ExpectUnchangedBy(create({{"health_check", {{"type", "udp"}, {"send", "00ff"}}}}),
                    ErrorCode::kMissingParameter, {"expect"});
  ExpectUnchangedBy(create({{"health_check", {{"type", "tcp"}}}}), ErrorCode::kInvalidParameter,
                    {"udp listener"});
  ExpectUnchangedBy(create({{"health_check", {{"type", "http"}}}}), ErrorCode::kInvalidParameter);
  ExpectUnchangedBy(create({{"health_check", {{"type", "udp"}, {"send", "0"}, {"expect", "00"}}}}),
                    ErrorCode::kInvalidParameter, {"health_check.send"});
  ExpectUnchangedBy(create({{"health_check", {{"type", "udp"}, {"send", "zz"}, {"expect", "00"}}}}),
                    ErrorCode::kInvalidParameter, {"health_check.send"});
  ExpectUnchangedBy(
      create({{"health_check",
               {{"type", "udp"}, {"send", "00"}, {"expect", std::string(1026, 'a')}}}}),
      ErrorCode::kInvalidParameter, {"health_check.expect"});
  ASSERT_OK(create({{"health_check",
                     {{"type", "udp"}, {"send", "DEADbeef"}, {"expect", std::string(1024, 'A')}}}})(
      model_));
  const HealthCheck& check = model_.FindListener(ListenerId(1))->health_check;
  EXPECT_EQ(check.send, "deadbeef");
  EXPECT_EQ(check.expect, std::string(1024, 'a'));
}

TEST_F(ModelTest, ModifyAppliesPartialUpdatesAndResetsOnTypeChange) {
  ASSERT_OK(AddTcpListener(1, 80));
  const std::uint64_t version = model_.version();
  ASSERT_OK(model_.ModifyListener(
      ListenerId(1), Options({{"scheduler", "wlc"}, {"health_check", {{"interval", 10}}}})));
  EXPECT_GT(model_.version(), version);
  const Listener* listener = model_.FindListener(ListenerId(1));
  EXPECT_EQ(listener->scheduler, Scheduler::kWlc);
  EXPECT_EQ(listener->health_check.interval, 10u);
  EXPECT_EQ(listener->health_check.timeout, 2u);
  EXPECT_EQ(listener->idle_timeout, 900u);
  EXPECT_EQ(listener->port, 80);

  ASSERT_OK(model_.ModifyListener(
      ListenerId(1),
      Options({{"health_check", {{"type", "http"}, {"path", "/ping"}, {"codes", {"2xx"}}}}})));
  EXPECT_EQ(model_.FindListener(ListenerId(1))->health_check.path, "/ping");
  EXPECT_EQ(model_.FindListener(ListenerId(1))->health_check.interval, 10u);

  // Back to tcp: the http fields return to their defaults, the generic ones stay.
  ASSERT_OK(model_.ModifyListener(ListenerId(1), Options({{"health_check", {{"type", "tcp"}}}})));
  const HealthCheck& check = model_.FindListener(ListenerId(1))->health_check;
  EXPECT_EQ(check.path, "/");
  EXPECT_EQ(check.codes, HealthCheck{}.codes);
  EXPECT_EQ(check.interval, 10u);

  ExpectUnchangedBy(
      [](Model& m) {
        return m.ModifyListener(ListenerId(1), Options({{"health_check", {{"path", "/x"}}}}));
      },
      ErrorCode::kInvalidParameter, {ListenerId(1), "only to http"});
  ExpectUnchangedBy(
      [](Model& m) {
        return m.ModifyListener(ListenerId(1), Options({{"health_check", {{"interval", 1}}}}));
      },
      ErrorCode::kInvalidParameter, {"exceeds"});
  ExpectUnchangedBy(
      [](Model& m) { return m.ModifyListener(ListenerId(9), Options(json::object())); },
      ErrorCode::kResourceNotFound, {ListenerId(9)});
}

TEST_F(ModelTest, OnBackendDownIsSetOnCreateAndModify) {
  ASSERT_OK(AddTcpListener(1, 80, {{"on_backend_down", "keep"}}));
  EXPECT_EQ(model_.FindListener(ListenerId(1))->on_backend_down, BackendDownPolicy::kKeep);
  // reschedule breaks a TCP stream, but it is the operator's call: allowed on tcp too.
  ASSERT_OK(model_.ModifyListener(ListenerId(1), Options({{"on_backend_down", "reschedule"}})));
  EXPECT_EQ(model_.FindListener(ListenerId(1))->on_backend_down, BackendDownPolicy::kReschedule);
  // A modify that does not name it keeps it.
  ASSERT_OK(model_.ModifyListener(ListenerId(1), Options({{"scheduler", "rr"}})));
  EXPECT_EQ(model_.FindListener(ListenerId(1))->on_backend_down, BackendDownPolicy::kReschedule);
  ASSERT_OK(model_.CreateListener(
      ListenerId(2), LbId(1), Protocol::kUdp, 53,
      WithGroup(GroupId(1), {{"on_backend_down", "reset"}, {"health_check", {{"type", "none"}}}}),
      kNow));
  EXPECT_EQ(model_.FindListener(ListenerId(2))->on_backend_down, BackendDownPolicy::kReset);
}

TEST_F(ModelTest, UdpListenerTypeChangeNeedsPayloadsAgain) {
  ASSERT_OK(model_.CreateListener(
      ListenerId(1), LbId(1), Protocol::kUdp, 53,
      WithGroup(GroupId(1),
                {{"health_check", {{"type", "udp"}, {"send", "01"}, {"expect", "02"}}}}),
      kNow));
  ASSERT_OK(model_.ModifyListener(ListenerId(1), Options({{"health_check", {{"type", "none"}}}})));
  EXPECT_EQ(model_.FindListener(ListenerId(1))->health_check.send, "");
  ExpectUnchangedBy(
      [](Model& m) {
        return m.ModifyListener(ListenerId(1), Options({{"health_check", {{"type", "udp"}}}}));
      },
      ErrorCode::kMissingParameter, {"send"});
  ExpectUnchangedBy(
      [](Model& m) {
        return m.ModifyListener(ListenerId(1), Options({{"health_check", {{"type", "tcp"}}}}));
      },
      ErrorCode::kInvalidParameter);
}

TEST_F(ModelTest, GroupInUseCannotBeDeleted) {
  ASSERT_OK(AddTcpListener(1, 80));
  ASSERT_OK(AddTcpListener(2, 81));
  ExpectUnchangedBy([](Model& m) { return m.DeleteGroup(GroupId(1)); }, ErrorCode::kResourceInUse,
                    {GroupId(1), ListenerId(1), ListenerId(2)});
  ASSERT_OK(model_.CreateGroup(GroupId(2), LbId(1), "spare"));
  EXPECT_OK(model_.DeleteGroup(GroupId(2)));
  EXPECT_EQ(model_.FindGroup(GroupId(2)), nullptr);
  EXPECT_TRUE(model_.IdTaken(GroupId(2)));
  ExpectError(model_.DeleteGroup(GroupId(2)), ErrorCode::kResourceNotFound);
}

TEST_F(ModelTest, DeletingAnLbDeletesItsListenersGroupsAndHealth) {
  ASSERT_OK(AddTcpListener(1, 80));
  ASSERT_OK(model_.CreateGroup(GroupId(2), LbId(1), "spare"));
  ASSERT_TRUE(
      model_.SetHealth(ListenerId(1), Ep("198.18.1.11:80"), HealthState::kUp, "", kNow).ok());
  ASSERT_OK(model_.CreateLb(LbId(2), "keep", Ip("198.18.100.11"), kNow));
  Result<DeletedLb> deleted = model_.DeleteLb(LbId(1));
  ASSERT_TRUE(deleted.ok()) << deleted.status().ToString();
  EXPECT_EQ(deleted->listeners, std::vector<std::string>{ListenerId(1)});
  EXPECT_EQ(deleted->groups, (std::vector<std::string>{GroupId(1), GroupId(2)}));
  EXPECT_TRUE(model_.listeners().empty());
  EXPECT_TRUE(model_.groups().empty());
  EXPECT_TRUE(model_.health().empty());
  EXPECT_EQ(model_.lbs().size(), 1u);
  for (const std::string& id : {LbId(1), GroupId(1), GroupId(2), ListenerId(1)}) {
    EXPECT_EQ(model_.retired_ids().count(id), 1u) << id;
  }
  ExpectError(model_.DeleteLb(LbId(1)).status(), ErrorCode::kResourceNotFound);
}

TEST_F(ModelTest, HealthIsPerListenerAndBackend) {
  ASSERT_OK(AddTcpListener(1, 80));
  ASSERT_OK(AddTcpListener(2, 81));
  const Endpoint be = Ep("198.18.1.11:80");
  EXPECT_EQ(model_.HealthOf(ListenerId(1), be).state, HealthState::kUnknown);

  std::uint64_t version = model_.version();
  Result<bool> changed = model_.SetHealth(ListenerId(1), be, HealthState::kDown, "refused", kNow);
  ASSERT_TRUE(changed.ok()) << changed.status().ToString();
  EXPECT_TRUE(*changed);
  EXPECT_GT(model_.version(), version);
  BackendHealth health = model_.HealthOf(ListenerId(1), be);
  EXPECT_EQ(health.state, HealthState::kDown);
  EXPECT_EQ(health.reason, "refused");
  EXPECT_EQ(health.since, kNow);
  EXPECT_EQ(health.last_probe, kNow);
  EXPECT_EQ(model_.HealthOf(ListenerId(2), be).state, HealthState::kUnknown);

  // The same state again: not a change, since stays, last_probe moves, no version bump.
  version = model_.version();
  changed = model_.SetHealth(ListenerId(1), be, HealthState::kDown, "refused", kNow + 5);
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);
  EXPECT_EQ(model_.version(), version);
  health = model_.HealthOf(ListenerId(1), be);
  EXPECT_EQ(health.since, kNow);
  EXPECT_EQ(health.last_probe, kNow + 5);
  // A new reason is news for lb-healthd's view, though not a state change.
  changed = model_.SetHealth(ListenerId(1), be, HealthState::kDown, "timeout", kNow + 10);
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);
  EXPECT_GT(model_.version(), version);

  ExpectError(
      model_.SetHealth(ListenerId(1), Ep("198.18.1.99:80"), HealthState::kUp, "", kNow).status(),
      ErrorCode::kResourceNotFound, {"198.18.1.99:80", GroupId(1), ListenerId(1)});
  ExpectError(model_.SetHealth(ListenerId(7), be, HealthState::kUp, "", kNow).status(),
              ErrorCode::kResourceNotFound, {ListenerId(7)});
  ExpectError(model_.SetHealth(ListenerId(1), be, HealthState::kUnknown, "", kNow).status(),
              ErrorCode::kInvalidParameter);
  ExpectError(model_
                  .SetHealth(ListenerId(1), be, HealthState::kUp,
                             std::string(kMaxHealthReasonLength + 1, 'x'), kNow)
                  .status(),
              ErrorCode::kInvalidParameter);
}

TEST_F(ModelTest, HealthEntriesGoWithTheirBackendOrListener) {
  ASSERT_OK(AddTcpListener(1, 80));
  ASSERT_OK(AddTcpListener(2, 81));
  const Endpoint a = Ep("198.18.1.11:80");
  const Endpoint b = Ep("198.18.1.12:80");
  for (int n : {1, 2}) {
    ASSERT_TRUE(model_.SetHealth(ListenerId(n), a, HealthState::kUp, "", kNow).ok());
    ASSERT_TRUE(model_.SetHealth(ListenerId(n), b, HealthState::kDown, "", kNow).ok());
  }
  ASSERT_EQ(model_.health().size(), 4u);
  ASSERT_OK(model_.RemoveBackend(GroupId(1), a));
  EXPECT_EQ(model_.health().size(), 2u);
  ASSERT_OK(model_.AddBackend(GroupId(1), a, 10));
  EXPECT_EQ(model_.HealthOf(ListenerId(1), a).state, HealthState::kUnknown);
  ASSERT_OK(model_.DeleteListener(ListenerId(2)));
  EXPECT_EQ(model_.health().size(), 1u);
  EXPECT_EQ(model_.HealthOf(ListenerId(1), b).state, HealthState::kDown);

  // Moving the listener to a group without b drops b's entry; a group with b keeps it.
  ASSERT_OK(model_.CreateGroup(GroupId(2), LbId(1), "other"));
  ASSERT_OK(model_.AddBackend(GroupId(2), b, 10));
  ASSERT_OK(model_.ModifyListener(ListenerId(1), Options({{"group", GroupId(2)}})));
  EXPECT_EQ(model_.HealthOf(ListenerId(1), b).state, HealthState::kDown);
  ASSERT_OK(model_.CreateGroup(GroupId(3), LbId(1), "empty"));
  ASSERT_OK(model_.ModifyListener(ListenerId(1), Options({{"group", GroupId(3)}})));
  EXPECT_TRUE(model_.health().empty());
  ExpectError(model_.RemoveBackend(GroupId(1), Ep("198.18.1.99:80")), ErrorCode::kResourceNotFound);
}

TEST_F(ModelTest, FailOpenWhenEveryServingBackendIsDown) {
  ASSERT_OK(AddTcpListener(1, 80));
  ASSERT_OK(AddTcpListener(2, 81));
  const Endpoint a = Ep("198.18.1.11:80");
  const Endpoint b = Ep("198.18.1.12:80");
  const auto down = [&](int n, const Endpoint& backend) {
    ASSERT_TRUE(model_.SetHealth(ListenerId(n), backend, HealthState::kDown, "", kNow).ok());
  };
  // Unknown forwards, as if up.
  EXPECT_EQ(model_.HealthSummaryOf(ListenerId(1)), (HealthSummary{.healthy = 2, .total = 2}));
  down(1, a);
  EXPECT_EQ(model_.HealthSummaryOf(ListenerId(1)), (HealthSummary{.healthy = 1, .total = 2}));
  EXPECT_FALSE(model_.HealthSummaryOf(ListenerId(1)).fail_open());
  down(1, b);
  EXPECT_EQ(model_.HealthSummaryOf(ListenerId(1)), (HealthSummary{.healthy = 0, .total = 2}));
  EXPECT_TRUE(model_.HealthSummaryOf(ListenerId(1)).fail_open());
  // Health is per listener: the other listener of the group still has both.
  EXPECT_FALSE(model_.HealthSummaryOf(ListenerId(2)).fail_open());
  EXPECT_EQ(model_.HealthSummaryOf(ListenerId(2)).healthy, 2u);

  // Draining backends take no new connections, fail-open or not: they do not count.
  ASSERT_OK(model_.SetWeight(GroupId(1), a, 0));
  EXPECT_EQ(model_.HealthSummaryOf(ListenerId(1)), (HealthSummary{.healthy = 0, .total = 1}));
  EXPECT_TRUE(model_.HealthSummaryOf(ListenerId(1)).fail_open());
  ASSERT_TRUE(model_.SetHealth(ListenerId(1), a, HealthState::kUp, "", kNow).ok());
  EXPECT_TRUE(model_.HealthSummaryOf(ListenerId(1)).fail_open());  // a is up but drained
  ASSERT_TRUE(model_.SetHealth(ListenerId(1), b, HealthState::kUp, "", kNow).ok());
  EXPECT_EQ(model_.HealthSummaryOf(ListenerId(1)), (HealthSummary{.healthy = 1, .total = 1}));
  EXPECT_FALSE(model_.HealthSummaryOf(ListenerId(1)).fail_open());

  // Nothing to serve is not fail-open: there is nobody to send traffic to.
  down(1, b);
  ASSERT_OK(model_.SetWeight(GroupId(1), b, 0));
  EXPECT_EQ(model_.HealthSummaryOf(ListenerId(1)), (HealthSummary{.healthy = 0, .total = 0}));
  EXPECT_FALSE(model_.HealthSummaryOf(ListenerId(1)).fail_open());
  ASSERT_OK(model_.CreateGroup(GroupId(2), LbId(1), "empty"));
  ASSERT_OK(model_.ModifyListener(ListenerId(2), Options({{"group", GroupId(2)}})));
  EXPECT_FALSE(model_.HealthSummaryOf(ListenerId(2)).fail_open());
  EXPECT_EQ(model_.HealthSummaryOf(ListenerId(9)), HealthSummary{});
}

TEST_F(ModelTest, ViewsShowFailOpen) {
  ASSERT_OK(AddTcpListener(1, 80));
  ASSERT_OK(AddTcpListener(2, 81));
  for (const char* backend : {"198.18.1.11:80", "198.18.1.12:80"}) {
    ASSERT_TRUE(
        model_.SetHealth(ListenerId(2), Ep(backend), HealthState::kDown, "refused", kNow).ok());
  }
  ASSERT_TRUE(
      model_.SetHealth(ListenerId(1), Ep("198.18.1.12:80"), HealthState::kDown, "", kNow).ok());
  EXPECT_EQ(model_.ListenerView(*model_.FindListener(ListenerId(1)))["fail_open"], false);
  const json view = model_.ListenerView(*model_.FindListener(ListenerId(2)));
  EXPECT_EQ(view["fail_open"], true);
  // The view is the configuration plus fail_open; the state file has no fail_open.
  json config = view;
  config.erase("fail_open");
  EXPECT_EQ(config, ListenerJson(*model_.FindListener(ListenerId(2))));
  EXPECT_FALSE(model_.ToJson()["listeners"][1].contains("fail_open"));

  const json group = model_.GroupJson(*model_.FindGroup(GroupId(1)), nullptr);
  EXPECT_EQ(
      group["listener_health"],
      json({{{"listener", ListenerId(1)}, {"healthy", 1}, {"total", 2}, {"fail_open", false}},
            {{"listener", ListenerId(2)}, {"healthy", 0}, {"total", 2}, {"fail_open", true}}}));
  ASSERT_OK(model_.CreateGroup(GroupId(2), LbId(1), "unused"));
  EXPECT_EQ(model_.GroupJson(*model_.FindGroup(GroupId(2)), nullptr)["listener_health"],
            json::array());
}

TEST_F(ModelTest, EveryMutationBumpsTheVersion) {
  std::uint64_t version = model_.version();
  const auto bumped = [&]() {
    const bool result = model_.version() > version;
    version = model_.version();
    return result;
  };
  ASSERT_OK(AddTcpListener(1, 80));
  EXPECT_TRUE(bumped());
  ASSERT_OK(model_.SetWeight(GroupId(1), Ep("198.18.1.11:80"), 3));
  EXPECT_TRUE(bumped());
  ASSERT_OK(model_.RemoveBackend(GroupId(1), Ep("198.18.1.11:80")));
  EXPECT_TRUE(bumped());
  ASSERT_OK(model_.CreateGroup(GroupId(2), LbId(1), "x"));
  EXPECT_TRUE(bumped());
  ASSERT_OK(model_.DeleteGroup(GroupId(2)));
  EXPECT_TRUE(bumped());
  ASSERT_OK(model_.DeleteListener(ListenerId(1)));
  EXPECT_TRUE(bumped());
  ASSERT_TRUE(model_.DeleteLb(LbId(1)).ok());
  EXPECT_TRUE(bumped());
}

// Health reports and weight changes name the listeners they touch and leave the layout
// version alone; every other mutation moves the layout version. Copies share the lineage.
TEST_F(ModelTest, RecordsWhatHealthAndWeightChangesTouch) {
  ASSERT_OK(AddTcpListener(1, 80));
  ASSERT_OK(AddTcpListener(2, 81));
  const std::uint64_t start = model_.version();
  EXPECT_EQ(model_.layout_version(), start);
  EXPECT_TRUE(model_.ListenersTouchedSince(start).empty());

  ASSERT_TRUE(
      model_.SetHealth(ListenerId(2), Ep("198.18.1.11:80"), HealthState::kDown, "", kNow).ok());
  EXPECT_EQ(model_.ListenersTouchedSince(start), std::vector<std::string>{ListenerId(2)});
  const std::uint64_t after_health = model_.version();
  ASSERT_OK(model_.SetWeight(GroupId(1), Ep("198.18.1.12:80"), 5));  // both use group 1
  EXPECT_EQ(model_.ListenersTouchedSince(after_health),
            (std::vector<std::string>{ListenerId(1), ListenerId(2)}));
  EXPECT_EQ(model_.ListenersTouchedSince(start),
            (std::vector<std::string>{ListenerId(1), ListenerId(2)}));
  EXPECT_TRUE(model_.ListenersTouchedSince(model_.version()).empty());
  EXPECT_EQ(model_.layout_version(), start);
  // A report that changes nothing touches nothing.
  const std::uint64_t quiet = model_.version();
  ASSERT_TRUE(
      model_.SetHealth(ListenerId(2), Ep("198.18.1.11:80"), HealthState::kDown, "", kNow).ok());
  EXPECT_TRUE(model_.ListenersTouchedSince(quiet).empty());

  const Model copy = model_;
  EXPECT_EQ(copy.lineage(), model_.lineage());
  EXPECT_NE(Model().lineage(), model_.lineage());

  ASSERT_OK(model_.AddBackend(GroupId(1), Ep("198.18.1.13:80"), 1));
  EXPECT_EQ(model_.layout_version(), model_.version());
  ASSERT_OK(model_.DeleteListener(ListenerId(2)));
  EXPECT_EQ(model_.ListenersTouchedSince(start), std::vector<std::string>{ListenerId(1)});
  model_.set_version(1'000'000);
  EXPECT_EQ(model_.layout_version(), 1'000'000u);
  EXPECT_TRUE(model_.ListenersTouchedSince(0).empty());
}

TEST_F(ModelTest, ViewsHaveTheProtocolShapes) {
  ASSERT_OK(AddTcpListener(1, 80));
  ASSERT_TRUE(
      model_.SetHealth(ListenerId(1), Ep("198.18.1.12:80"), HealthState::kUp, "ok", kNow).ok());
  const json lb = model_.LbJson(*model_.FindLb(LbId(1)));
  EXPECT_EQ(lb, (json{{"id", LbId(1)},
                      {"name", "web"},
                      {"vip", "198.18.100.10"},
                      {"family", "ipv4"},
                      {"listeners", {ListenerId(1)}},
                      {"groups", {GroupId(1)}},
                      {"acls", json::array()},
                      {"created_at", kNow}}));

  const json group = model_.GroupJson(
      *model_.FindGroup(GroupId(1)),
      [](const std::string& listener, const std::string& backend) -> std::uint64_t {
        return listener == ListenerId(1) && backend == "198.18.1.12:80" ? 7 : 0;
      });
  EXPECT_EQ(group["listeners"], json({ListenerId(1)}));
  EXPECT_EQ(
      group["listener_health"],
      json({{{"listener", ListenerId(1)}, {"healthy", 2}, {"total", 2}, {"fail_open", false}}}));
  ASSERT_EQ(group["backends"].size(), 2u);
  EXPECT_EQ(group["backends"][0], (json{{"addr", "198.18.1.11:80"},
                                        {"weight", 10},
                                        {"active_conns", 0},
                                        {"health",
                                         {{{"listener", ListenerId(1)},
                                           {"state", "unknown"},
                                           {"reason", ""},
                                           {"since", 0},
                                           {"last_probe", 0}}}}}));
  EXPECT_EQ(group["backends"][1]["active_conns"], 7);
  EXPECT_EQ(group["backends"][1]["health"][0]["state"], "up");
  EXPECT_EQ(group["backends"][1]["health"][0]["since"], kNow);

  const json listener = ListenerJson(*model_.FindListener(ListenerId(1)));
  EXPECT_EQ(listener, (json{{"id", ListenerId(1)},
                            {"lb", LbId(1)},
                            {"protocol", "tcp"},
                            {"port", 80},
                            {"group", GroupId(1)},
                            {"scheduler", "wrr"},
                            {"mode", "fnat"},
                            {"idle_timeout", 900},
                            {"persistence", 0},
                            {"client_ip", "off"},
                            {"acl", ""},
                            {"acl_type", "allow"},
                            {"on_backend_down", "reset"},
                            {"health_check",
                             {{"type", "tcp"},
                              {"port", 0},
                              {"interval", 5},
                              {"timeout", 2},
                              {"rise", 3},
                              {"fall", 3},
                              {"path", "/"},
                              {"host", ""},
                              {"codes", {"2xx", "3xx"}},
                              {"send", ""},
                              {"expect", ""}}},
                            {"created_at", kNow}}));
}

TEST(ListenerOptionsTest, ReadsTypedArgumentsAndNamesBadOnes) {
  const ListenerOptions options = Options({{"group", "sg-00000001"},
                                           {"scheduler", "sh"},
                                           {"persistence", 60},
                                           {"health_check", {{"type", "udp"}, {"send", "ab"}}}});
  EXPECT_EQ(options.group, "sg-00000001");
  EXPECT_EQ(options.scheduler, Scheduler::kSh);
  EXPECT_FALSE(options.mode.has_value());
  EXPECT_EQ(options.persistence, 60);
  EXPECT_FALSE(options.on_backend_down.has_value());
  EXPECT_EQ(options.health_check.type, HealthCheckType::kUdp);
  EXPECT_EQ(options.health_check.send, "ab");
  EXPECT_FALSE(options.health_check.expect.has_value());

  struct Case {
    json args;
    std::string word;
  };
  for (const Case& c : std::vector<Case>{
           {{{"idle_timeout", "900"}}, "argument 'idle_timeout' must be an integer"},
           {{{"idle_timeout", 9.5}}, "argument 'idle_timeout' must be an integer"},
           {{{"scheduler", "fastest"}}, "one of wrr, wlc, rr, sh, maglev"},
           {{{"mode", 1}}, "argument 'mode' must be a string"},
           {{{"on_backend_down", "drop"}}, "one of keep, reset, reschedule"},
           {{{"on_backend_down", true}}, "argument 'on_backend_down' must be a string"},
           {{{"health_check", "tcp"}}, "argument 'health_check' must be an object"},
           {{{"health_check", {{"port", "80"}}}}, "argument 'health_check.port'"},
           {{{"health_check", {{"codes", {2}}}}}, "argument 'health_check.codes'"},
           {{{"health_check", {{"type", "icmp"}}}}, "one of tcp, http, udp, none"},
           {{{"health_check", {{"bogus", 1}}}}, "unknown argument 'health_check.bogus'"},
           {{{"bogus", 1}}, "unknown argument 'bogus'"},
       }) {
    JsonFields fields = JsonFields::ForArgs(c.args);
    (void)ReadListenerOptions(fields);
    ExpectError(fields.Finish(), ErrorCode::kInvalidParameter, {c.word});
  }
}

class ModelJsonTest : public ModelTest {
 protected:
  void SetUp() override {
    ModelTest::SetUp();
    ASSERT_OK(AddTcpListener(1, 80, {{"health_check", {{"type", "http"}, {"path", "/h"}}}}));
    ASSERT_OK(model_.CreateListener(
        ListenerId(2), LbId(1), Protocol::kUdp, 53,
        WithGroup(GroupId(1),
                  {{"health_check", {{"type", "udp"}, {"send", "01"}, {"expect", "02"}}}}),
        kNow));
    ASSERT_OK(model_.CreateLb(LbId(2), "v6", Ip("2001:db8::10"), kNow + 1));
    ASSERT_OK(model_.CreateGroup(GroupId(2), LbId(2), "v6pool"));
    ASSERT_OK(model_.AddBackend(GroupId(2), Ep("[2001:db8::11]:80"), 0));
    ASSERT_OK(model_.CreateGroup(GroupId(3), LbId(2), "gone"));
    ASSERT_OK(model_.DeleteGroup(GroupId(3)));
  }

  // Expects FromJson to refuse `state` with kCorruptState and a message holding `words`.
  void ExpectCorrupt(const json& state, std::vector<std::string> words) {
    Result<Model> loaded = Model::FromJson(state, {Ip("198.18.0.1")});
    ExpectError(loaded.status(), ErrorCode::kCorruptState, std::move(words));
  }
};

TEST_F(ModelJsonTest, RoundTripsThroughJson) {
  const json state = model_.ToJson();
  Result<Model> loaded = Model::FromJson(state);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->ToJson(), state);
  EXPECT_EQ(loaded->lbs().size(), 2u);
  EXPECT_EQ(loaded->listeners().size(), 2u);
  EXPECT_EQ(loaded->FindListener(ListenerId(1))->health_check.path, "/h");
  EXPECT_EQ(state["listeners"][0]["on_backend_down"], "reset");
  EXPECT_EQ(state["listeners"][1]["on_backend_down"], "reschedule");
  EXPECT_EQ(loaded->FindGroup(GroupId(2))->backends[0].weight, 0u);
  EXPECT_TRUE(loaded->IdTaken(GroupId(3)));
  EXPECT_EQ(loaded->version(), 1u);
  EXPECT_EQ(state["retired_ids"], json({GroupId(3)}));
}

TEST_F(ModelJsonTest, OnBackendDownSurvivesAndOlderStateGetsTheDefault) {
  ASSERT_OK(model_.ModifyListener(ListenerId(1), Options({{"on_backend_down", "keep"}})));
  json state = model_.ToJson();
  Result<Model> loaded = Model::FromJson(state);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->FindListener(ListenerId(1))->on_backend_down, BackendDownPolicy::kKeep);
  EXPECT_EQ(loaded->FindListener(ListenerId(2))->on_backend_down, BackendDownPolicy::kReschedule);

  // A state file written before the option existed: each listener gets its protocol's default.
  for (json& listener : state["listeners"]) {
    listener.erase("on_backend_down");
  }
  loaded = Model::FromJson(state);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->FindListener(ListenerId(1))->on_backend_down, BackendDownPolicy::kReset);
  EXPECT_EQ(loaded->FindListener(ListenerId(2))->on_backend_down, BackendDownPolicy::kReschedule);
  EXPECT_EQ(loaded->ToJson()["listeners"][1]["on_backend_down"], "reschedule");
}

TEST_F(ModelJsonTest, HealthIsNotPartOfTheState) {
  ASSERT_TRUE(
      model_.SetHealth(ListenerId(1), Ep("198.18.1.11:80"), HealthState::kDown, "x", kNow).ok());
  Result<Model> loaded = Model::FromJson(model_.ToJson());
  ASSERT_TRUE(loaded.ok());
  EXPECT_TRUE(loaded->health().empty());
}

TEST_F(ModelJsonTest, RefusesMalformedState) {
  const json good = model_.ToJson();
  json state = good;
  state["extra"] = 1;
  ExpectCorrupt(state, {"unknown extra"});
  state = good;
  state.erase("listeners");
  ExpectCorrupt(state, {"listeners is missing"});
  state = good;
  state["listeners"][1]["port"] = "53";
  ExpectCorrupt(state, {"listeners[1].port must be an integer"});
  state = good;
  state["listeners"][1]["port"] = 0;
  ExpectCorrupt(state, {"listeners[1].port"});
  state = good;
  state["listeners"][0]["health_check"].erase("rise");
  ExpectCorrupt(state, {"listeners[0].health_check.rise is missing"});
  state = good;
  state["listeners"][0]["health_check"]["interval"] = 0;
  ExpectCorrupt(state, {"listeners[0]", "health_check.interval"});
  state = good;
  state["listeners"][0]["scheduler"] = "random";
  ExpectCorrupt(state, {"listeners[0].scheduler"});
  state = good;
  state["listeners"][1]["on_backend_down"] = "drop";
  ExpectCorrupt(state, {"listeners[1].on_backend_down", "keep, reset, reschedule"});
  state = good;
  state["listeners"][1]["on_backend_down"] = nullptr;
  ExpectCorrupt(state, {"listeners[1].on_backend_down must be a string"});
  state = good;
  state["lbs"][0]["vip"] = "198.18.100";
  ExpectCorrupt(state, {"lbs[0].vip"});
  state = good;
  state["groups"][0]["backends"][1]["weight"] = 101;
  ExpectCorrupt(state, {"groups[0].backends[1]", "weight"});
  state = good;
  state["groups"][0]["backends"][1]["addr"] = "198.18.1.11:80";
  ExpectCorrupt(state, {"groups[0].backends[1]", "already"});
  state = good;
  state["lbs"][1]["vip"] = "198.18.100.10";
  ExpectCorrupt(state, {"lbs[1]", "198.18.100.10"});
  state = good;
  state["lbs"][0]["vip"] = "198.18.0.1";
  ExpectCorrupt(state, {"lbs[0]", "own addresses"});
  state = good;
  state["listeners"][1]["port"] = 80;
  state["listeners"][1]["protocol"] = "http";
  ExpectCorrupt(state, {"listeners[1]"});
  state = good;
  state["listeners"][0]["group"] = GroupId(2);
  ExpectCorrupt(state, {"listeners[0]", GroupId(2)});
  state = good;
  state["listeners"][0]["health_check"]["send"] = "00";
  ExpectCorrupt(state, {"listeners[0]", "only to udp"});
  state = good;
  state["groups"][1]["id"] = GroupId(1);
  ExpectCorrupt(state, {"groups[1]", GroupId(1)});
  state = good;
  state["retired_ids"].push_back(LbId(1));
  ExpectCorrupt(state, {"retired_ids[1]", LbId(1)});
  state = good;
  state["retired_ids"].push_back("garbage");
  ExpectCorrupt(state, {"retired_ids[1]"});
  ExpectCorrupt(json::array(), {"must be an object"});
  ExpectCorrupt(json{{"lbs", 1},
                     {"groups", json::array()},
                     {"listeners", json::array()},
                     {"retired_ids", json::array()}},
                {"lbs must be an array"});
}

TEST_F(ModelJsonTest, StateRespectsLimits) {
  json state = Model().ToJson();
  for (int i = 0; i <= static_cast<int>(kMaxLbs); ++i) {
    state["lbs"].push_back(
        {{"id", LbId(i)},
         {"name", "lb"},
         {"vip", IpAddress::V4(0xc6126400u + static_cast<std::uint32_t>(i)).ToString()},
         {"created_at", 0}});
  }
  ExpectCorrupt(state, {"lbs[256]", "limit"});
}

}  // namespace
}  // namespace fulcrum::model

namespace fulcrum::model {
namespace {

std::string AclId(int n) { return fmt::format("acl-{:08x}", n); }

TEST_F(ModelTest, AclLifecycle) {
  ASSERT_OK(model_.CreateAcl(AclId(1), LbId(1), "office", {"198.18.0.0/24", "2001:db8::/32"}));
  const Acl& acl = *model_.FindAcl(AclId(1));
  EXPECT_EQ(acl.entries.size(), 2u);
  ASSERT_OK(model_.AddAclEntries(AclId(1), {"198.18.5.7", "2001:db8:ffff::1"}));
  EXPECT_EQ(model_.AclJson(*model_.FindAcl(AclId(1)))["entries"],
            json({"198.18.0.0/24", "198.18.5.7/32", "2001:db8::/32", "2001:db8:ffff::1/128"}));
  ASSERT_OK(model_.RemoveAclEntries(AclId(1), {"198.18.5.7/32"}));
  EXPECT_EQ(model_.FindAcl(AclId(1))->entries.size(), 3u);

  struct Case {
    std::function<Status(Model&)> mutation;
    ErrorCode code;
    std::vector<std::string> words;
  };
  const std::vector<Case> refused = {
      {[](Model& m) { return m.AddAclEntries(AclId(1), {"198.18.0.0/24"}); },
       ErrorCode::kInvalidParameter,
       {"already has 198.18.0.0/24"}},
      {[](Model& m) { return m.AddAclEntries(AclId(1), {"198.18.0.5/24"}); },
       ErrorCode::kInvalidParameter,
       {"host bits", "198.18.0.0/24"}},
      {[](Model& m) { return m.AddAclEntries(AclId(1), {"198.18.9.0/33"}); },
       ErrorCode::kInvalidParameter,
       {"198.18.9.0/33"}},
      {[](Model& m) { return m.AddAclEntries(AclId(1), {"office"}); },
       ErrorCode::kInvalidParameter,
       {"neither an address nor a CIDR"}},
      {[](Model& m) {
         return m.AddAclEntries(AclId(1), {"198.18.7.0/24", "198.18.7.0/24"});
       },
       ErrorCode::kInvalidParameter,
       {"given twice"}},
      {[](Model& m) { return m.RemoveAclEntries(AclId(1), {"198.18.6.0/24"}); },
       ErrorCode::kResourceNotFound,
       {"no entry 198.18.6.0/24"}},
      {[](Model& m) { return m.AddAclEntries(AclId(2), {"198.18.6.0/24"}); },
       ErrorCode::kResourceNotFound,
       {AclId(2)}},
      {[](Model& m) { return m.CreateAcl(AclId(3), LbId(9), "x", {}); },
       ErrorCode::kResourceNotFound,
       {LbId(9)}},
      // A listener's acl needs its type, and must be of the listener's own LB.
      {[](Model& m) {
         return m.CreateListener(ListenerId(1), LbId(1), Protocol::kTcp, 80,
                                 WithGroup(GroupId(1), {{"acl", AclId(1)}}), kNow);
       },
       ErrorCode::kMissingParameter,
       {"acl_type"}},
      {[](Model& m) {
         return m.CreateListener(ListenerId(1), LbId(1), Protocol::kTcp, 80,
                                 WithGroup(GroupId(1), {{"acl", AclId(7)}, {"acl_type", "deny"}}),
                                 kNow);
       },
       ErrorCode::kResourceNotFound,
       {AclId(7)}},
  };
  for (const Case& c : refused) {
    ExpectUnchangedBy(c.mutation, c.code, c.words);
  }

  // 1,000 entries at most.
  std::vector<std::string> many;
  for (int i = 0; i < 997; ++i) {  // with its 3: 1,000
    many.push_back(fmt::format("198.19.{}.{}/32", i / 256, i % 256));
  }
  ASSERT_OK(model_.AddAclEntries(AclId(1), many));
  ExpectUnchangedBy([](Model& m) { return m.AddAclEntries(AclId(1), {"198.18.8.0/24"}); },
                    ErrorCode::kLimitExceeded, {"1000"});

  ASSERT_OK(AddTcpListener(1, 80, {{"acl", AclId(1)}, {"acl_type", "deny"}}));
  EXPECT_EQ(model_.FindListener(ListenerId(1))->acl_type, AclType::kDeny);
  EXPECT_EQ(model_.ListenersOfAcl(AclId(1)), std::vector<std::string>{ListenerId(1)});
  ExpectUnchangedBy([](Model& m) { return m.DeleteAcl(AclId(1)); }, ErrorCode::kResourceInUse,
                    {ListenerId(1), "--acl off"});
  // The type stays when only the list changes; "off" detaches it.
  ASSERT_OK(model_.CreateAcl(AclId(4), LbId(1), "partners", {"198.18.0.3"}));
  ASSERT_OK(model_.ModifyListener(ListenerId(1), Options({{"acl", AclId(4)}})));
  EXPECT_EQ(model_.FindListener(ListenerId(1))->acl_type, AclType::kDeny);
  ASSERT_OK(model_.ModifyListener(ListenerId(1), Options({{"acl", "off"}})));
  EXPECT_EQ(model_.FindListener(ListenerId(1))->acl, "");
  ASSERT_OK(model_.DeleteAcl(AclId(1)));
  EXPECT_TRUE(model_.IdTaken(AclId(1)));

  // Through the state file, and with the LB.
  ASSERT_OK(
      model_.ModifyListener(ListenerId(1), Options({{"acl", AclId(4)}, {"acl_type", "allow"}})));
  Result<Model> loaded = Model::FromJson(model_.ToJson());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->ToJson(), model_.ToJson());
  EXPECT_EQ(loaded->FindListener(ListenerId(1))->acl, AclId(4));
  json old_state = model_.ToJson();
  old_state.erase("acls");
  for (json& listener : old_state["listeners"]) {
    listener.erase("acl");
    listener.erase("acl_type");
  }
  EXPECT_TRUE(Model::FromJson(old_state).ok())
      << "a state file from before ACLs loads: " << Model::FromJson(old_state).status().ToString();
  Result<DeletedLb> deleted = model_.DeleteLb(LbId(1));
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->acls, std::vector<std::string>{AclId(4)});
  EXPECT_TRUE(model_.acls().empty());
}

}  // namespace
}  // namespace fulcrum::model
