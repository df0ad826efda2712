#include "ctl/control_plane.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/state_file.h"
#include "tests/support/fake_dataplane.h"

namespace fulcrum::ctl {
namespace {

using nlohmann::json;

constexpr std::int64_t kStart = 1795000000;

class ControlPlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/fulcrum-cp-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    state_file_ = dir_ + "/lbd/state.json";
    Start();
  }
  void TearDown() override {
    plane_.reset();
    std::filesystem::remove_all(dir_);
  }

  ControlPlaneOptions Options() {
    return ControlPlaneOptions{
        .state_file = state_file_,
        .socket_path = dir_ + "/lbd.sock",
        .reserved_addresses = {*IpAddress::Parse("198.18.0.1"), *IpAddress::Parse("198.18.1.1")},
        .ipv6 = ipv6_,
        .now = [this] { return now_; },
        .id_seed = 7,
    };
  }

  // (Re)starts the control plane on the same state file and data plane.
  void Start() {
    plane_.reset();
    Result<std::unique_ptr<ControlPlane>> plane = ControlPlane::Create(Options(), dataplane_);
    ASSERT_TRUE(plane.ok()) << plane.status().ToString();
    plane_ = std::move(plane).value();
  }

  Result<json> Call(const std::string& cmd, json args = json::object()) {
    return plane_->Handle(protocol::Request{.id = 1, .cmd = cmd, .args = std::move(args)});
  }

  // The result of a command that must succeed.
  json Ok(const std::string& cmd, json args = json::object()) {
    Result<json> result = Call(cmd, args);
    EXPECT_TRUE(result.ok()) << cmd << " " << args.dump() << ": " << result.status().ToString();
    return result.ok() ? *result : json();
  }

  // Expects `cmd` to fail with `code` and a message holding each of `words`.
  void ExpectError(const std::string& cmd, const json& args, ErrorCode code,
                   const std::vector<std::string>& words = {}) {
    Result<json> result = Call(cmd, args);
    ASSERT_FALSE(result.ok()) << cmd << " " << args.dump() << " succeeded: " << result->dump();
    EXPECT_EQ(result.status().code(), code)
        << cmd << " " << args.dump() << ": " << result.status().ToString();
    for (const std::string& word : words) {
      EXPECT_NE(result.status().message().find(word), std::string::npos)
          << "'" << word << "' not in: " << result.status().message();
    }
  }

  // Like ExpectError, and checks that nothing was committed, written or applied.
  void ExpectRefused(const std::string& cmd, const json& args, ErrorCode code,
                     const std::vector<std::string>& words = {}) {
    const json before = plane_->model().ToJson();
    const std::uint64_t version = plane_->model().version();
    const int applies = dataplane_.apply_calls;
    const std::string file = ReadFile(state_file_);
    ExpectError(cmd, args, code, words);
    EXPECT_EQ(plane_->model().ToJson(), before);
    EXPECT_EQ(plane_->model().version(), version);
    EXPECT_EQ(dataplane_.apply_calls, applies);
    EXPECT_EQ(ReadFile(state_file_), file);
  }

  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  std::string CreateLb(const std::string& name = "web", const std::string& vip = "198.18.100.10") {
    return Ok("lb.create", {{"name", name}, {"vip", vip}}).value("id", "");
  }
  std::string CreateGroup(const std::string& lb, const std::string& name = "pool") {
    return Ok("group.create", {{"lb", lb}, {"name", name}}).value("id", "");
  }
  std::string CreateListener(const std::string& lb, int port, const std::string& group,
                             json extra = json::object()) {
    extra.update({{"lb", lb}, {"protocol", "tcp"}, {"port", port}, {"group", group}});
    return Ok("listener.create", extra).value("id", "");
  }

  // An LB with a group of two backends and a tcp listener on port 80.
  void BuildBasic() {
    lb_ = CreateLb();
    group_ = CreateGroup(lb_);
    Ok("group.add_backend", {{"group", group_}, {"addr", "198.18.1.11:80"}});
    Ok("group.add_backend", {{"group", group_}, {"addr", "198.18.1.12:80"}, {"weight", 20}});
    listener_ = CreateListener(lb_, 80, group_);
  }

  std::string dir_;
  std::string state_file_;
  std::int64_t now_ = kStart;
  bool ipv6_ = false;  // lbd's ports carry IPv6
  FakeDataplane dataplane_;
  std::unique_ptr<ControlPlane> plane_;
  std::string lb_;
  std::string group_;
  std::string listener_;
};

TEST_F(ControlPlaneTest, StartsEmptyAndAppliesTheModel) {
  EXPECT_EQ(dataplane_.apply_calls, 1);
  ASSERT_EQ(dataplane_.applied.size(), 1u);
  EXPECT_TRUE(dataplane_.last_applied().lbs().empty());
  EXPECT_EQ(Ok("lb.list"), json({{"lbs", json::array()}}));
  EXPECT_FALSE(std::filesystem::exists(state_file_));
}

TEST_F(ControlPlaneTest, StatusReportsTheDaemonAndMergesTheDataPlane) {
  BuildBasic();
  now_ += 42;
  const json status = Ok("status");
  EXPECT_EQ(status["version"], FULCRUM_VERSION);
  EXPECT_EQ(status["pid"], getpid());
  EXPECT_EQ(status["uptime_s"], 42);
  EXPECT_EQ(status["state_file"], state_file_);
  EXPECT_EQ(status["socket"], dir_ + "/lbd.sock");
  EXPECT_EQ(status["ports"], dataplane_.describe["ports"]);
  EXPECT_EQ(status["workers"], dataplane_.describe["workers"]);
  EXPECT_EQ(status["objects"],
            json({{"lbs", 1}, {"groups", 1}, {"listeners", 1}, {"backends", 2}}));
  EXPECT_EQ(status["prober"], json({{"state", "never"}, {"last_seen", 0}}));
  EXPECT_EQ(status["apply_pending"], false);
  EXPECT_EQ(status["model_version"], plane_->model().version());
  ExpectError("status", {{"verbose", true}}, ErrorCode::kInvalidParameter, {"'verbose'"});
}

TEST_F(ControlPlaneTest, RefusesUnknownCommandsAndBadArguments) {
  ExpectRefused("lb.frobnicate", json::object(), ErrorCode::kUnknownCommand, {"lb.frobnicate"});
  ExpectRefused("lb.create", {{"name", "web"}}, ErrorCode::kMissingParameter, {"'vip'"});
  ExpectRefused("lb.create", {{"vip", "198.18.100.10"}}, ErrorCode::kMissingParameter, {"'name'"});
  ExpectRefused("lb.create", {{"name", "web"}, {"vip", "198.18.100.10"}, {"zone", "a"}},
                ErrorCode::kInvalidParameter, {"unknown argument 'zone'"});
  ExpectRefused("lb.create", {{"name", 5}, {"vip", "198.18.100.10"}}, ErrorCode::kInvalidParameter,
                {"'name' must be a string"});
  ExpectRefused("lb.create", {{"name", "web"}, {"vip", "198.18.100"}}, ErrorCode::kInvalidParameter,
                {"'vip'", "198.18.100"});
  ExpectRefused("lb.create", {{"name", "web site"}, {"vip", "198.18.100.10"}},
                ErrorCode::kInvalidParameter, {"name"});
  ExpectRefused("lb.list", {{"all", true}}, ErrorCode::kInvalidParameter, {"'all'"});
  ExpectRefused("lb.show", {{"id", "nonsense"}}, ErrorCode::kInvalidParameter, {"nonsense"});
  ExpectRefused("lb.show", {{"id", "lb-00000000"}}, ErrorCode::kResourceNotFound, {"lb-00000000"});
}

TEST_F(ControlPlaneTest, LoadBalancerLifecycle) {
  const std::string id = CreateLb("web", "198.18.100.10");
  EXPECT_TRUE(IsValidId(id, kLbIdPrefix)) << id;
  EXPECT_EQ(dataplane_.last_applied().lbs().count(id), 1u);
  const std::string other = CreateLb("web2", "198.18.100.11");

  const json list = Ok("lb.list");
  ASSERT_EQ(list["lbs"].size(), 2u);
  json shown = Ok("lb.show", {{"id", other}});
  EXPECT_EQ(shown["vip"], "198.18.100.11");
  EXPECT_EQ(shown["family"], "ipv4");
  EXPECT_EQ(shown["created_at"], kStart);
  EXPECT_EQ(shown["listener_objects"], json::array());

  const std::string group = CreateGroup(id);
  const std::string spare = CreateGroup(id, "spare");
  const std::string listener = CreateListener(id, 80, group);
  shown = Ok("lb.show", {{"id", id}});
  EXPECT_EQ(shown["listeners"], json({listener}));
  ASSERT_EQ(shown["listener_objects"].size(), 1u);
  EXPECT_EQ(shown["listener_objects"][0]["id"], listener);
  ASSERT_EQ(shown["group_objects"].size(), 2u);
  EXPECT_EQ(
      shown["group_objects"][0]["listeners"].size() + shown["group_objects"][1]["listeners"].size(),
      1u);

  const json deleted = Ok("lb.delete", {{"id", id}});
  EXPECT_EQ(deleted["id"], id);
  EXPECT_EQ(deleted["deleted_listeners"], json({listener}));
  json groups = json({group, spare});
  std::sort(groups.begin(), groups.end());
  EXPECT_EQ(deleted["deleted_groups"], groups);
  EXPECT_TRUE(dataplane_.last_applied().listeners().empty());
  ExpectRefused("lb.show", {{"id", id}}, ErrorCode::kResourceNotFound, {id});
  ExpectRefused("listener.show", {{"id", listener}}, ErrorCode::kResourceNotFound);
  ExpectRefused("lb.delete", {{"id", id}}, ErrorCode::kResourceNotFound);
}

// A VIP of a family no port of lbd carries is refused, not stored: it could never forward.
TEST_F(ControlPlaneTest, AnIpv6VipIsRefusedWhenNoPortHasAnIpv6Address) {
  const std::uint64_t version = Ok("status")["model_version"].get<std::uint64_t>();
  ExpectRefused("lb.create", {{"name", "web6"}, {"vip", "2001:db8:100::10"}},
                ErrorCode::kNotSupported, {"IPv6 VIP 2001:db8:100::10", "ports[].address6"});
  EXPECT_TRUE(Ok("lb.list")["lbs"].empty());
  EXPECT_TRUE(dataplane_.last_applied().lbs().empty());
  EXPECT_EQ(Ok("status")["model_version"].get<std::uint64_t>(), version);
}

// An IPv6 load balancer takes IPv6 backends (in brackets) and listeners, and reaches the data
// plane.
TEST_F(ControlPlaneTest, Ipv6LoadBalancersReachTheDataPlane) {
  ipv6_ = true;
  Start();
  const std::string lb = CreateLb("web6", "2001:db8:100::10");
  const std::string group = CreateGroup(lb);
  EXPECT_EQ(Ok("group.add_backend", {{"group", group}, {"addr", "[2001:db8:1::11]:8080"}}),
            json({{"group", group}, {"addr", "[2001:db8:1::11]:8080"}, {"weight", 10}}));
  const std::string listener = CreateListener(lb, 80, group);
  const model::Model& applied = dataplane_.last_applied();
  ASSERT_NE(applied.FindLb(lb), nullptr);
  EXPECT_EQ(applied.FindLb(lb)->vip.ToString(), "2001:db8:100::10");
  EXPECT_EQ(applied.listeners().size(), 1u);
  EXPECT_EQ(Ok("lb.show", {{"id", lb}})["vip"], "2001:db8:100::10");
  EXPECT_FALSE(listener.empty());
}

TEST_F(ControlPlaneTest, VipConflicts) {
  const std::string id = CreateLb("web", "198.18.100.10");
  ExpectRefused("lb.create", {{"name", "b"}, {"vip", "198.18.100.10"}}, ErrorCode::kAddressConflict,
                {"198.18.100.10", id});
  ExpectRefused("lb.create", {{"name", "b"}, {"vip", "198.18.1.1"}}, ErrorCode::kAddressConflict,
                {"198.18.1.1", "own"});
}

TEST_F(ControlPlaneTest, ServerGroupsAndBackends) {
  const std::string lb = CreateLb();
  ExpectRefused("group.create", {{"lb", "lb-00000000"}, {"name", "p"}},
                ErrorCode::kResourceNotFound, {"lb-00000000"});
  const std::string group = CreateGroup(lb);
  EXPECT_TRUE(IsValidId(group, kGroupIdPrefix)) << group;

  EXPECT_EQ(Ok("group.add_backend", {{"group", group}, {"addr", "198.18.1.11:80"}}),
            json({{"group", group}, {"addr", "198.18.1.11:80"}, {"weight", 10}}));
  EXPECT_EQ(Ok("group.add_backend",
               {{"group", group}, {"addr", "198.18.1.12:80"}, {"weight", 0}})["weight"],
            0);
  ExpectRefused("group.add_backend",
                {{"group", group}, {"addr", "198.18.1.13:80"}, {"weight", 101}},
                ErrorCode::kInvalidParameter, {"weight", "0..100"});
  ExpectRefused("group.add_backend",
                {{"group", group}, {"addr", "198.18.1.13:80"}, {"weight", "5"}},
                ErrorCode::kInvalidParameter, {"'weight' must be an integer"});
  ExpectRefused("group.add_backend", {{"group", group}, {"addr", "198.18.1.13"}},
                ErrorCode::kInvalidParameter, {"'addr'", "198.18.1.13"});
  ExpectRefused("group.add_backend", {{"group", group}, {"addr", "[2001:db8::1]:80"}},
                ErrorCode::kInvalidParameter, {"[2001:db8::1]:80", lb});
  ExpectRefused("group.add_backend", {{"group", group}, {"addr", "198.18.1.11:80"}},
                ErrorCode::kAlreadyExists, {"198.18.1.11:80", group});
  ExpectRefused("group.add_backend", {{"group", "sg-00000000"}, {"addr", "198.18.1.13:80"}},
                ErrorCode::kResourceNotFound, {"sg-00000000"});

  EXPECT_EQ(Ok("group.set_weight", {{"group", group}, {"addr", "198.18.1.12:80"}, {"weight", 50}}),
            json({{"group", group}, {"addr", "198.18.1.12:80"}, {"weight", 50}}));
  EXPECT_EQ(dataplane_.last_applied().FindGroup(group)->backends[1].weight, 50u);
  ExpectRefused("group.set_weight", {{"group", group}, {"addr", "198.18.1.12:80"}},
                ErrorCode::kMissingParameter, {"'weight'"});
  ExpectRefused("group.set_weight", {{"group", group}, {"addr", "198.18.1.19:80"}, {"weight", 5}},
                ErrorCode::kResourceNotFound, {"198.18.1.19:80"});

  EXPECT_EQ(Ok("group.remove_backend", {{"group", group}, {"addr", "198.18.1.11:80"}}),
            json({{"group", group}, {"addr", "198.18.1.11:80"}}));
  ExpectRefused("group.remove_backend", {{"group", group}, {"addr", "198.18.1.11:80"}},
                ErrorCode::kResourceNotFound, {"198.18.1.11:80", group});

  const json list = Ok("group.list", {{"lb", lb}});
  ASSERT_EQ(list["groups"].size(), 1u);
  EXPECT_EQ(list["groups"][0]["backends"].size(), 1u);
  ExpectRefused("group.list", {{"lb", "lb-00000000"}}, ErrorCode::kResourceNotFound);

  EXPECT_EQ(Ok("group.delete", {{"id", group}}), json({{"id", group}}));
  ExpectRefused("group.show", {{"id", group}}, ErrorCode::kResourceNotFound, {group});
}

TEST_F(ControlPlaneTest, GroupLimitIsLimitExceeded) {
  const std::string lb = CreateLb();
  for (std::size_t i = 0; i < model::kMaxGroupsPerLb; ++i) {
    ASSERT_FALSE(CreateGroup(lb).empty());
  }
  ExpectRefused("group.create", {{"lb", lb}, {"name", "one-more"}}, ErrorCode::kLimitExceeded,
                {lb, "64"});
}

TEST_F(ControlPlaneTest, GroupShowFillsActiveConnsAndHealthPerListener) {
  BuildBasic();
  const std::string second = CreateListener(lb_, 8080, group_);
  dataplane_.active_conns[{listener_, "198.18.1.11:80"}] = 3;
  dataplane_.active_conns[{second, "198.18.1.11:80"}] = 4;
  dataplane_.active_conns[{second, "198.18.1.12:80"}] = 1;
  Ok("backend.set_health",
     {{"listener", second}, {"addr", "198.18.1.12:80"}, {"state", "down"}, {"reason", "refused"}});

  const json group = Ok("group.show", {{"id", group_}});
  EXPECT_EQ(group["id"], group_);
  EXPECT_EQ(group["lb"], lb_);
  EXPECT_EQ(group["name"], "pool");
  json users = json({listener_, second});
  std::sort(users.begin(), users.end());
  EXPECT_EQ(group["listeners"], users);
  ASSERT_EQ(group["backends"].size(), 2u);
  EXPECT_EQ(group["backends"][0]["addr"], "198.18.1.11:80");
  EXPECT_EQ(group["backends"][0]["active_conns"], 7);
  EXPECT_EQ(group["backends"][1]["active_conns"], 1);
  EXPECT_EQ(group["backends"][1]["weight"], 20);
  const json& health = group["backends"][1]["health"];
  ASSERT_EQ(health.size(), 2u);
  for (const json& entry : health) {
    if (entry["listener"] == second) {
      EXPECT_EQ(entry, json({{"listener", second},
                             {"state", "down"},
                             {"reason", "refused"},
                             {"since", kStart},
                             {"last_probe", kStart}}));
    } else {
      EXPECT_EQ(entry["state"], "unknown");
      EXPECT_EQ(entry["last_probe"], 0);
    }
  }
}

TEST_F(ControlPlaneTest, GroupInUseCannotBeDeleted) {
  BuildBasic();
  ExpectRefused("group.delete", {{"id", group_}}, ErrorCode::kResourceInUse, {group_, listener_});
  Ok("listener.delete", {{"id", listener_}});
  Ok("group.delete", {{"id", group_}});
}

TEST_F(ControlPlaneTest, ListenerLifecycleWithDefaults) {
  BuildBasic();
  EXPECT_TRUE(IsValidId(listener_, kListenerIdPrefix)) << listener_;
  const json shown = Ok("listener.show", {{"id", listener_}});
  EXPECT_EQ(shown, json({{"id", listener_},
                         {"lb", lb_},
                         {"protocol", "tcp"},
                         {"port", 80},
                         {"group", group_},
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
                         {"created_at", kStart},
                         {"fail_open", false}}));
  EXPECT_EQ(dataplane_.last_applied().listeners().count(listener_), 1u);

  const json modified =
      Ok("listener.modify", {{"id", listener_},
                             {"scheduler", "maglev"},
                             {"persistence", 300},
                             {"health_check", {{"type", "http"}, {"path", "/hc"}}}});
  EXPECT_EQ(modified["scheduler"], "maglev");
  EXPECT_EQ(modified["persistence"], 300);
  EXPECT_EQ(modified["health_check"]["type"], "http");
  EXPECT_EQ(modified["health_check"]["path"], "/hc");
  EXPECT_EQ(modified["port"], 80);
  EXPECT_EQ(Ok("listener.show", {{"id", listener_}}), modified);
  EXPECT_EQ(dataplane_.last_applied().FindListener(listener_)->scheduler,
            model::Scheduler::kMaglev);

  const json list = Ok("listener.list", {{"lb", lb_}});
  EXPECT_EQ(list, json({{"listeners", {modified}}}));
  ExpectRefused("listener.list", {{"lb", "lb-00000000"}}, ErrorCode::kResourceNotFound);
  EXPECT_EQ(Ok("listener.delete", {{"id", listener_}}), json({{"id", listener_}}));
  EXPECT_EQ(Ok("listener.list", {{"lb", lb_}}), json({{"listeners", json::array()}}));
}

TEST_F(ControlPlaneTest, ListenerValidation) {
  BuildBasic();
  const json base = {{"lb", lb_}, {"protocol", "tcp"}, {"port", 81}, {"group", group_}};
  const auto with = [&](json changes) {
    json args = base;
    args.update(changes);
    return args;
  };
  ExpectRefused("listener.create", with({{"port", 80}}), ErrorCode::kPortConflict,
                {lb_, listener_, "port 80"});
  // No L7 tier yet: http and https would be forwarded as plain TCP, so they are refused.
  for (const char* l7 : {"http", "https"}) {
    ExpectRefused("listener.create", with({{"protocol", l7}}), ErrorCode::kNotSupported,
                  {std::string("protocol ") + l7, "tcp listener"});
  }
  ExpectRefused("listener.create", with({{"port", "81"}}), ErrorCode::kInvalidParameter,
                {"'port' must be an integer"});
  ExpectRefused("listener.create", with({{"port", 0}}), ErrorCode::kInvalidParameter, {"port"});
  ExpectRefused("listener.create", with({{"protocol", "sctp"}}), ErrorCode::kInvalidParameter,
                {"'protocol'", "tcp, udp, http, https"});
  ExpectRefused("listener.create", with({{"protocol", "udp"}}), ErrorCode::kMissingParameter,
                {"health_check.type"});
  ExpectRefused("listener.create", with({{"idle_timeout", 0}}), ErrorCode::kInvalidParameter,
                {"idle_timeout"});
  ExpectRefused("listener.create", with({{"health_check", {{"color", "red"}}}}),
                ErrorCode::kInvalidParameter, {"'health_check.color'"});
  ExpectRefused("listener.create", with({{"group", "sg-00000000"}}), ErrorCode::kResourceNotFound,
                {"sg-00000000"});
  json no_group = base;
  no_group.erase("group");
  ExpectRefused("listener.create", no_group, ErrorCode::kMissingParameter, {"'group'"});

  ExpectRefused("listener.modify", {{"id", listener_}, {"port", 81}}, ErrorCode::kInvalidParameter,
                {"'port'", "cannot be modified"});
  ExpectRefused("listener.modify", {{"id", listener_}, {"protocol", "udp"}},
                ErrorCode::kInvalidParameter, {"'protocol'", "cannot be modified"});
  ExpectRefused("listener.modify", {{"id", listener_}, {"health_check", {{"send", "00"}}}},
                ErrorCode::kInvalidParameter, {listener_, "udp"});
  ExpectRefused("listener.modify", {{"id", "lsn-00000000"}}, ErrorCode::kResourceNotFound);

  const std::string udp =
      Ok("listener.create",
         with({{"protocol", "udp"},
               {"port", 80},
               {"health_check", {{"type", "udp"}, {"send", "abcd"}, {"expect", "ef"}}}}))
          .value("id", "");
  EXPECT_EQ(Ok("listener.show", {{"id", udp}})["idle_timeout"], 300);
}

TEST_F(ControlPlaneTest, OnBackendDownIsAListenerOption) {
  BuildBasic();
  const std::string udp = Ok("listener.create", {{"lb", lb_},
                                                 {"protocol", "udp"},
                                                 {"port", 53},
                                                 {"group", group_},
                                                 {"health_check", {{"type", "none"}}}})
                              .value("id", "");
  EXPECT_EQ(Ok("listener.show", {{"id", udp}})["on_backend_down"], "reschedule");
  const std::string kept = CreateListener(lb_, 81, group_, {{"on_backend_down", "keep"}});
  EXPECT_EQ(Ok("listener.show", {{"id", kept}})["on_backend_down"], "keep");

  const json modified =
      Ok("listener.modify", {{"id", listener_}, {"on_backend_down", "reschedule"}});
  EXPECT_EQ(modified["on_backend_down"], "reschedule");
  EXPECT_EQ(dataplane_.last_applied().FindListener(listener_)->on_backend_down,
            model::BackendDownPolicy::kReschedule);

  ExpectRefused("listener.modify", {{"id", listener_}, {"on_backend_down", "drop"}},
                ErrorCode::kInvalidParameter, {"'on_backend_down'", "keep, reset, reschedule"});
  ExpectRefused(
      "listener.create",
      {{"lb", lb_}, {"protocol", "tcp"}, {"port", 82}, {"group", group_}, {"on_backend_down", 1}},
      ErrorCode::kInvalidParameter, {"'on_backend_down' must be a string"});

  Start();
  EXPECT_EQ(Ok("listener.show", {{"id", listener_}})["on_backend_down"], "reschedule");
  EXPECT_EQ(Ok("listener.show", {{"id", kept}})["on_backend_down"], "keep");
}

TEST_F(ControlPlaneTest, StateFileWithoutOnBackendDownStillLoads) {
  BuildBasic();
  const std::string udp = Ok("listener.create", {{"lb", lb_},
                                                 {"protocol", "udp"},
                                                 {"port", 53},
                                                 {"group", group_},
                                                 {"on_backend_down", "keep"},
                                                 {"health_check", {{"type", "none"}}}})
                              .value("id", "");
  Ok("listener.modify", {{"id", listener_}, {"on_backend_down", "keep"}});
  // Rewrite the file as an lbd from before the option would have written it.
  Result<std::optional<json>> read = ReadStateFile(state_file_);
  ASSERT_TRUE(read.ok() && read->has_value()) << read.status().ToString();
  json state = **read;
  for (json& listener : state["listeners"]) {
    ASSERT_TRUE(listener.contains("on_backend_down"));
    listener.erase("on_backend_down");
  }
  ASSERT_TRUE(WriteStateFile(state_file_, state).ok());
  Start();
  EXPECT_EQ(Ok("listener.show", {{"id", listener_}})["on_backend_down"], "reset");
  EXPECT_EQ(Ok("listener.show", {{"id", udp}})["on_backend_down"], "reschedule");
}

TEST_F(ControlPlaneTest, FailOpenShowsWhenEveryBackendOfAListenerIsDown) {
  BuildBasic();
  const std::string second = CreateListener(lb_, 8080, group_);
  const auto set = [&](const std::string& listener, const char* addr, const char* state) {
    Ok("backend.set_health", {{"listener", listener}, {"addr", addr}, {"state", state}});
  };
  const auto fail_open = [&](const std::string& listener) {
    return Ok("listener.show", {{"id", listener}})["fail_open"];
  };
  set(listener_, "198.18.1.11:80", "down");
  EXPECT_EQ(fail_open(listener_), false);
  set(listener_, "198.18.1.12:80", "down");
  EXPECT_EQ(fail_open(listener_), true);
  EXPECT_EQ(fail_open(second), false);  // health is per listener

  const json list = Ok("listener.list", {{"lb", lb_}})["listeners"];
  ASSERT_EQ(list.size(), 2u);
  for (const json& listener : list) {
    EXPECT_EQ(listener["fail_open"], listener["id"] == listener_) << listener.dump();
  }
  const json lb = Ok("lb.show", {{"id", lb_}});
  for (const json& listener : lb["listener_objects"]) {
    EXPECT_EQ(listener["fail_open"], listener["id"] == listener_) << listener.dump();
  }
  json expected = json::array();
  for (const std::string& id : plane_->model().ListenersOfGroup(group_)) {
    const bool dead = id == listener_;
    expected.push_back(
        {{"listener", id}, {"healthy", dead ? 0 : 2}, {"total", 2}, {"fail_open", dead}});
  }
  EXPECT_EQ(Ok("group.show", {{"id", group_}})["listener_health"], expected);
  EXPECT_EQ(lb["group_objects"][0]["listener_health"], expected);
  EXPECT_EQ(Ok("group.list", {{"lb", lb_}})["groups"][0]["listener_health"], expected);

  // Draining a dead backend leaves the other dead one alone: still fail-open. One up ends it.
  Ok("group.set_weight", {{"group", group_}, {"addr", "198.18.1.11:80"}, {"weight", 0}});
  EXPECT_EQ(fail_open(listener_), true);
  set(listener_, "198.18.1.12:80", "up");
  EXPECT_EQ(fail_open(listener_), false);
  EXPECT_EQ(Ok("listener.modify", {{"id", listener_}, {"mode", "dnat"}})["fail_open"], false);
}

TEST_F(ControlPlaneTest, StatsResolvesItsTarget) {
  BuildBasic();
  const std::string second = CreateListener(lb_, 81, group_);
  dataplane_.stats["listeners"] = {{{"id", listener_}, {"new_conns", 5}},
                                   {{"id", second}, {"new_conns", 6}}};

  json stats = Ok("stats");
  EXPECT_EQ(stats["target"], "all");
  EXPECT_TRUE(dataplane_.stats_requests.back().empty());
  EXPECT_EQ(stats["totals"], dataplane_.stats["totals"]);
  EXPECT_EQ(stats["listeners"].size(), 2u);

  stats = Ok("stats", {{"target", lb_}});
  EXPECT_EQ(stats["target"], lb_);
  std::vector<std::string> both = {listener_, second};
  std::sort(both.begin(), both.end());
  EXPECT_EQ(dataplane_.stats_requests.back(), both);

  stats = Ok("stats", {{"target", second}});
  EXPECT_EQ(stats["target"], second);
  EXPECT_EQ(dataplane_.stats_requests.back(), std::vector<std::string>{second});
  EXPECT_EQ(stats["listeners"], json({{{"id", second}, {"new_conns", 6}}}));

  // An LB without listeners has had no traffic; the data plane is not asked for "everything".
  const std::string empty = CreateLb("empty", "198.18.100.20");
  const std::size_t asked = dataplane_.stats_requests.size();
  stats = Ok("stats", {{"target", empty}});
  EXPECT_EQ(dataplane_.stats_requests.size(), asked);
  EXPECT_EQ(stats["target"], empty);
  EXPECT_EQ(stats["totals"]["rx_packets"], 0);
  EXPECT_EQ(stats["listeners"], json::array());

  ExpectRefused("stats", {{"target", "lb-00000000"}}, ErrorCode::kResourceNotFound);
  ExpectRefused("stats", {{"target", "lsn-00000000"}}, ErrorCode::kResourceNotFound);
  ExpectRefused("stats", {{"target", group_}}, ErrorCode::kInvalidParameter, {"'target'"});
}

TEST_F(ControlPlaneTest, ConnListPassesListenerAndLimit) {
  BuildBasic();
  const std::string second = CreateListener(lb_, 81, group_);
  for (int i = 0; i < 3; ++i) {
    dataplane_.connections.push_back(
        {{"listener", listener_}, {"client", "198.18.0.2:4000" + std::to_string(i)}});
  }
  dataplane_.connections.push_back({{"listener", second}, {"client", "198.18.0.2:5000"}});

  json conns = Ok("conn.list");
  EXPECT_EQ(dataplane_.connection_requests.back(),
            std::make_pair(std::string(), std::size_t{1000}));
  EXPECT_EQ(conns["connections"].size(), 4u);
  EXPECT_EQ(conns["truncated"], false);

  conns = Ok("conn.list", {{"listener", listener_}, {"limit", 2}});
  EXPECT_EQ(dataplane_.connection_requests.back(), std::make_pair(listener_, std::size_t{2}));
  EXPECT_EQ(conns["connections"].size(), 2u);
  EXPECT_EQ(conns["truncated"], true);

  Ok("conn.list", {{"limit", 100000}});
  ExpectRefused("conn.list", {{"limit", 0}}, ErrorCode::kInvalidParameter, {"'limit'"});
  ExpectRefused("conn.list", {{"limit", 100001}}, ErrorCode::kInvalidParameter, {"'limit'"});
  ExpectRefused("conn.list", {{"listener", "lsn-00000000"}}, ErrorCode::kResourceNotFound);
}

TEST_F(ControlPlaneTest, SetHealthChangesHealthOnlyAndApplies) {
  BuildBasic();
  const std::string file = ReadFile(state_file_);
  const int applies = dataplane_.apply_calls;
  now_ += 10;
  EXPECT_EQ(Ok("backend.set_health", {{"listener", listener_},
                                      {"addr", "198.18.1.11:80"},
                                      {"state", "down"},
                                      {"reason", "connect: refused"}}),
            json({{"listener", listener_},
                  {"addr", "198.18.1.11:80"},
                  {"state", "down"},
                  {"changed", true}}));
  EXPECT_EQ(dataplane_.apply_calls, applies + 1);
  EXPECT_EQ(dataplane_.last_applied().HealthOf(listener_, *Endpoint::Parse("198.18.1.11:80")).state,
            model::HealthState::kDown);
  EXPECT_EQ(ReadFile(state_file_), file);  // health is not persisted

  // The same report again changes nothing and is not re-applied.
  now_ += 5;
  EXPECT_EQ(Ok("backend.set_health", {{"listener", listener_},
                                      {"addr", "198.18.1.11:80"},
                                      {"state", "down"},
                                      {"reason", "connect: refused"}})["changed"],
            false);
  EXPECT_EQ(dataplane_.apply_calls, applies + 1);
  const json health = Ok("group.show", {{"id", group_}})["backends"][0]["health"][0];
  EXPECT_EQ(health["since"], kStart + 10);
  EXPECT_EQ(health["last_probe"], kStart + 15);

  ExpectError("backend.set_health",
              {{"listener", listener_}, {"addr", "198.18.1.11:80"}, {"state", "unknown"}},
              ErrorCode::kInvalidParameter, {"'state'"});
  ExpectError("backend.set_health",
              {{"listener", listener_}, {"addr", "198.18.1.11:80"}, {"state", "UP"}},
              ErrorCode::kInvalidParameter, {"'state'"});
  ExpectError("backend.set_health",
              {{"listener", listener_}, {"addr", "198.18.1.99:80"}, {"state", "up"}},
              ErrorCode::kResourceNotFound, {"198.18.1.99:80", listener_});
  ExpectError("backend.set_health",
              {{"listener", "lsn-00000000"}, {"addr", "198.18.1.11:80"}, {"state", "up"}},
              ErrorCode::kResourceNotFound, {"lsn-00000000"});
  ExpectError("backend.set_health", {{"listener", listener_}, {"addr", "198.18.1.11:80"}},
              ErrorCode::kMissingParameter, {"'state'"});

  // A restart forgets health: every backend starts unknown, which forwards.
  Start();
  EXPECT_EQ(Ok("group.show", {{"id", group_}})["backends"][0]["health"][0]["state"], "unknown");
}

TEST_F(ControlPlaneTest, HealthTargetsListEveryPairAndPollCheaply) {
  BuildBasic();
  Ok("listener.modify", {{"id", listener_}, {"health_check", {{"interval", 7}}}});
  Ok("backend.set_health",
     {{"listener", listener_}, {"addr", "198.18.1.12:80"}, {"state", "up"}, {"reason", "ok"}});
  const json first = Ok("health.targets");
  const std::uint64_t version = first["version"];
  EXPECT_EQ(version, plane_->model().version());
  EXPECT_EQ(first["unchanged"], false);
  ASSERT_EQ(first["targets"].size(), 2u);
  const json check = Ok("listener.show", {{"id", listener_}})["health_check"];
  EXPECT_EQ(first["targets"][1], json({{"listener", listener_},
                                       {"lb", lb_},
                                       {"vip", "198.18.100.10"},
                                       {"protocol", "tcp"},
                                       {"port", 80},
                                       {"addr", "198.18.1.12:80"},
                                       {"weight", 20},
                                       {"health_check", check},
                                       {"state", "up"},
                                       {"reason", "ok"}}));
  EXPECT_EQ(first["targets"][0]["state"], "unknown");
  EXPECT_EQ(first["targets"][0]["health_check"]["interval"], 7);

  EXPECT_EQ(Ok("health.targets", {{"since", version}}),
            json({{"version", version}, {"unchanged", true}}));
  Ok("group.set_weight", {{"group", group_}, {"addr", "198.18.1.11:80"}, {"weight", 1}});
  const json after = Ok("health.targets", {{"since", version}});
  EXPECT_NE(after["version"], version);
  EXPECT_EQ(after["targets"][0]["weight"], 1);
  ExpectError("health.targets", {{"since", -1}}, ErrorCode::kInvalidParameter, {"'since'"});
  ExpectError("health.targets", {{"since", "1"}}, ErrorCode::kInvalidParameter, {"'since'"});
}

TEST_F(ControlPlaneTest, VersionsOfARestartedDaemonNeverMatchTheOldOnes) {
  BuildBasic();
  const std::uint64_t old_version = Ok("health.targets")["version"];
  EXPECT_GE(old_version, static_cast<std::uint64_t>(kStart) * 1000000);
  now_ += 1;
  Start();
  const json fresh = Ok("health.targets", {{"since", old_version}});
  EXPECT_EQ(fresh["unchanged"], false);
  EXPECT_EQ(fresh["targets"].size(), 2u);
}

TEST_F(ControlPlaneTest, ProberPresenceFollowsItsPolls) {
  Ok("health.targets");  // not a prober
  EXPECT_EQ(Ok("status")["prober"]["state"], "never");
  Ok("health.targets", {{"prober", true}});
  EXPECT_EQ(Ok("status")["prober"], json({{"state", "present"}, {"last_seen", kStart}}));
  now_ += kProberPresenceSeconds;
  EXPECT_EQ(Ok("status")["prober"]["state"], "present");
  now_ += 1;
  EXPECT_EQ(Ok("status")["prober"], json({{"state", "absent"}, {"last_seen", kStart}}));
  ExpectError("health.targets", {{"prober", 1}}, ErrorCode::kInvalidParameter, {"'prober'"});
}

TEST_F(ControlPlaneTest, StatePersistsAcrossRestarts) {
  BuildBasic();
  const std::string doomed = CreateGroup(lb_, "doomed");
  Ok("group.delete", {{"id", doomed}});
  const json lbs = Ok("lb.list");
  const json listeners = Ok("listener.list", {{"lb", lb_}});
  const json group = Ok("group.show", {{"id", group_}});

  Start();
  EXPECT_EQ(Ok("lb.list"), lbs);
  EXPECT_EQ(Ok("listener.list", {{"lb", lb_}}), listeners);
  EXPECT_EQ(Ok("group.show", {{"id", group_}}), group);
  EXPECT_TRUE(plane_->model().IdTaken(doomed));
  EXPECT_EQ(dataplane_.last_applied().listeners().count(listener_), 1u);

  // The same seed replays the same id sequence; retired and live ids are skipped.
  const std::string again = CreateGroup(lb_, "again");
  EXPECT_NE(again, doomed);
  EXPECT_NE(again, group_);
}

TEST_F(ControlPlaneTest, WriteFailureIsIoErrorAndChangesNothing) {
  BuildBasic();
  // A directory where the temp file must go makes the write fail, even for root.
  std::filesystem::create_directory(StateFileTempPath(state_file_));
  ExpectRefused("lb.create", {{"name", "b"}, {"vip", "198.18.100.11"}}, ErrorCode::kIoError,
                {state_file_, "not made"});
  ExpectRefused("lb.delete", {{"id", lb_}}, ErrorCode::kIoError);
  EXPECT_EQ(Ok("lb.list")["lbs"].size(), 1u);
  std::filesystem::remove(StateFileTempPath(state_file_));
  CreateLb("b", "198.18.100.11");
  EXPECT_EQ(Ok("lb.list")["lbs"].size(), 2u);
}

TEST_F(ControlPlaneTest, ApplyFailureKeepsTheCommittedChange) {
  dataplane_.fail_apply = Status(ErrorCode::kTimeout, "worker 2 did not acknowledge in 5 s");
  ExpectError("lb.create", {{"name", "web"}, {"vip", "198.18.100.10"}}, ErrorCode::kTimeout,
              {"saved", "worker 2"});
  ASSERT_EQ(Ok("lb.list")["lbs"].size(), 1u);
  EXPECT_NE(ReadFile(state_file_).find("198.18.100.10"), std::string::npos);
  EXPECT_EQ(Ok("status")["apply_pending"], true);
  EXPECT_EQ(plane_->RetryPendingApply().code(), ErrorCode::kTimeout);

  dataplane_.fail_apply = Status::Ok();
  EXPECT_TRUE(plane_->RetryPendingApply().ok());
  EXPECT_FALSE(plane_->apply_pending());
  EXPECT_EQ(dataplane_.last_applied().lbs().size(), 1u);
  const int applies = dataplane_.apply_calls;
  EXPECT_TRUE(plane_->RetryPendingApply().ok());
  EXPECT_EQ(dataplane_.apply_calls, applies);  // nothing pending, nothing applied
}

TEST_F(ControlPlaneTest, WithoutAStateFileNothingIsWritten) {
  state_file_.clear();
  Start();
  CreateLb();
  EXPECT_EQ(Ok("status")["state_file"], "");
  EXPECT_TRUE(std::filesystem::is_empty(dir_));
}

TEST_F(ControlPlaneTest, CorruptStateRefusesToStart) {
  BuildBasic();
  plane_.reset();
  const std::string good = ReadFile(state_file_);
  const auto expect_refused = [&](const std::string& text, const std::string& word) {
    std::ofstream(state_file_, std::ios::trunc) << text;
    const int applies = dataplane_.apply_calls;
    Result<std::unique_ptr<ControlPlane>> plane = ControlPlane::Create(Options(), dataplane_);
    ASSERT_FALSE(plane.ok());
    EXPECT_EQ(plane.status().code(), ErrorCode::kCorruptState) << plane.status().ToString();
    EXPECT_NE(plane.status().message().find(word), std::string::npos) << plane.status().message();
    EXPECT_NE(plane.status().message().find("refuses to start"), std::string::npos);
    EXPECT_EQ(dataplane_.apply_calls, applies);
  };
  expect_refused(good.substr(0, good.size() - 10), "not valid JSON");
  json state = json::parse(good);
  state["listeners"][0]["port"] = 70000;
  expect_refused(state.dump(), "listeners[0].port");
  state = json::parse(good);
  state["lbs"][0]["vip"] = "198.18.0.1";  // now one of lbd's own addresses
  expect_refused(state.dump(), "lbs[0]");
  state = json::parse(good);
  state["version"] = 2;
  expect_refused(state.dump(), "version 2");
}

TEST_F(ControlPlaneTest, DataPlaneRefusalAtStartIsAnError) {
  dataplane_.fail_apply = Status(ErrorCode::kUnavailable, "no ports");
  Result<std::unique_ptr<ControlPlane>> plane = ControlPlane::Create(Options(), dataplane_);
  ASSERT_FALSE(plane.ok());
  EXPECT_EQ(plane.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(plane.status().message().find("no ports"), std::string::npos);
}

class ThrowingDataplane : public FakeDataplane {
 public:
  nlohmann::json Describe() override { throw std::runtime_error("boom"); }
};

TEST(ControlPlaneRobustnessTest, HandleTurnsExceptionsIntoInternal) {
  ThrowingDataplane dataplane;
  Result<std::unique_ptr<ControlPlane>> plane = ControlPlane::Create(
      ControlPlaneOptions{.now = [] { return kStart; }, .id_seed = 1}, dataplane);
  ASSERT_TRUE(plane.ok()) << plane.status().ToString();
  Result<json> status = (*plane)->Handle(protocol::Request{.id = 1, .cmd = "status"});
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.status().code(), ErrorCode::kInternal);
  EXPECT_NE(status.status().message().find("boom"), std::string::npos);
  // Non-UTF-8 text in arguments is refused or stored, never thrown.
  Result<json> created = (*plane)->Handle(protocol::Request{
      .id = 2, .cmd = "lb.create", .args = {{"name", "\xff\xfe"}, {"vip", "198.18.100.10"}}});
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), ErrorCode::kInvalidParameter);
}

}  // namespace
}  // namespace fulcrum::ctl
