// lbctl: argv -> request for every command, usage errors, rendering, and the client's exit
// codes against a fake lbd answering canned lines on a temporary socket.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/ctl_protocol.h"
#include "ctl/cli/client.h"
#include "ctl/cli/commands.h"
#include "ctl/cli/table.h"

namespace fulcrum::cli {
namespace {

using nlohmann::json;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::vector<std::string> Words(const std::string& line) {
  std::istringstream stream(line);
  std::vector<std::string> words;
  for (std::string word; stream >> word;) {
    words.push_back(word);
  }
  return words;
}

Invocation MustParse(const std::vector<std::string>& args) {
  Result<Invocation> invocation = Parse(args);
  EXPECT_TRUE(invocation.ok()) << invocation.status().message();
  return invocation.ok() ? *invocation : Invocation{};
}

Invocation MustParse(const std::string& line) { return MustParse(Words(line)); }

// A usage error's message (empty, with a test failure, if the line parsed).
std::string UsageError(const std::vector<std::string>& args) {
  Result<Invocation> invocation = Parse(args);
  EXPECT_FALSE(invocation.ok()) << "parsed: " << invocation->request.cmd;
  return invocation.ok() ? "" : invocation.status().message();
}

std::string UsageError(const std::string& line) { return UsageError(Words(line)); }

void ExpectRequest(const std::string& line, const std::string& cmd, const json& args) {
  SCOPED_TRACE(line);
  const Invocation invocation = MustParse(line);
  EXPECT_EQ(invocation.request.cmd, cmd);
  EXPECT_EQ(invocation.request.args, args) << invocation.request.args.dump();
  EXPECT_FALSE(invocation.info.has_value());
}

// ---------------------------------------------------------------------------------------------
// argv -> request

TEST(ParseTest, StatusAndLoadBalancers) {
  ExpectRequest("status", "status", json::object());
  ExpectRequest("lb create --name web --vip 198.18.100.10", "lb.create",
                {{"name", "web"}, {"vip", "198.18.100.10"}});
  ExpectRequest("lb create --vip=198.18.100.10 --name=web", "lb.create",
                {{"name", "web"}, {"vip", "198.18.100.10"}});
  ExpectRequest("lb list", "lb.list", json::object());
  ExpectRequest("lb show lb-0a1b2c3d", "lb.show", {{"id", "lb-0a1b2c3d"}});
  ExpectRequest("lb delete lb-0a1b2c3d", "lb.delete", {{"id", "lb-0a1b2c3d"}});
}

TEST(ParseTest, Groups) {
  ExpectRequest("group create lb-0a1b2c3d --name pool", "group.create",
                {{"lb", "lb-0a1b2c3d"}, {"name", "pool"}});
  ExpectRequest("group add-backend sg-55667788 198.18.1.11:80", "group.add_backend",
                {{"group", "sg-55667788"}, {"addr", "198.18.1.11:80"}});
  ExpectRequest("group add-backend sg-55667788 [2001:db8::11]:80 --weight 25", "group.add_backend",
                {{"group", "sg-55667788"}, {"addr", "[2001:db8::11]:80"}, {"weight", 25}});
  ExpectRequest("group set-weight sg-55667788 198.18.1.11:80 0", "group.set_weight",
                {{"group", "sg-55667788"}, {"addr", "198.18.1.11:80"}, {"weight", 0}});
  ExpectRequest("group remove-backend sg-55667788 198.18.1.11:80", "group.remove_backend",
                {{"group", "sg-55667788"}, {"addr", "198.18.1.11:80"}});
  ExpectRequest("group list lb-0a1b2c3d", "group.list", {{"lb", "lb-0a1b2c3d"}});
  ExpectRequest("group show sg-55667788", "group.show", {{"id", "sg-55667788"}});
  ExpectRequest("group delete sg-55667788", "group.delete", {{"id", "sg-55667788"}});
}

TEST(ParseTest, AccessControlLists) {
  ExpectRequest(
      "acl create lb-1 --name office --entries 198.18.0.0/24,2001:db8::/32", "acl.create",
      {{"lb", "lb-1"}, {"name", "office"}, {"entries", {"198.18.0.0/24", "2001:db8::/32"}}});
  ExpectRequest("acl create lb-1 --name empty", "acl.create", {{"lb", "lb-1"}, {"name", "empty"}});
  // Entries one by one, comma-separated, or both.
  ExpectRequest("acl add acl-1 198.18.0.3 198.18.9.0/24,198.18.10.0/24", "acl.add",
                {{"id", "acl-1"}, {"entries", {"198.18.0.3", "198.18.9.0/24", "198.18.10.0/24"}}});
  ExpectRequest("acl remove acl-1 198.18.0.3", "acl.remove",
                {{"id", "acl-1"}, {"entries", {"198.18.0.3"}}});
  ExpectRequest("acl list lb-1", "acl.list", {{"lb", "lb-1"}});
  ExpectRequest("acl show acl-1", "acl.show", {{"id", "acl-1"}});
  ExpectRequest("acl delete acl-1", "acl.delete", {{"id", "acl-1"}});
  ExpectRequest("listener modify lsn-1 --acl acl-1 --acl-type deny", "listener.modify",
                {{"id", "lsn-1"}, {"acl", "acl-1"}, {"acl_type", "deny"}});
  ExpectRequest("listener modify lsn-1 --acl off", "listener.modify",
                {{"id", "lsn-1"}, {"acl", "off"}});
}

TEST(ParseTest, IntegersAreJsonNumbersInDecimal) {
  const Invocation weight = MustParse("group add-backend sg-1 198.18.1.11:80 --weight 010");
  ASSERT_TRUE(weight.request.args["weight"].is_number_integer());
  EXPECT_EQ(weight.request.args["weight"].get<int>(), 10);  // not octal 8
  // Range is the daemon's to judge, with its own message.
  ExpectRequest("group set-weight sg-1 198.18.1.11:80 -1", "group.set_weight",
                {{"group", "sg-1"}, {"addr", "198.18.1.11:80"}, {"weight", -1}});
  ExpectRequest("listener create lb-1 --protocol tcp --port 70000 --group sg-1", "listener.create",
                {{"lb", "lb-1"}, {"protocol", "tcp"}, {"port", 70000}, {"group", "sg-1"}});
}

TEST(ParseTest, ListenerCreateSendsOnlyWhatWasGiven) {
  ExpectRequest("listener create lb-1 --protocol tcp --port 80 --group sg-1", "listener.create",
                {{"lb", "lb-1"}, {"protocol", "tcp"}, {"port", 80}, {"group", "sg-1"}});
}

TEST(ParseTest, ListenerCreateWithEveryOption) {
  ExpectRequest(
      "listener create lb-1 --protocol http --port 8080 --group sg-1 --scheduler maglev "
      "--mode dnat --idle-timeout 120 --persistence 300 --on-backend-down keep --hc-type http "
      "--hc-port 8081 --hc-interval 10 --hc-timeout 3 --hc-rise 2 --hc-fall 4 --hc-path /healthz "
      "--hc-host www.example.com --hc-codes 2xx,3xx",
      "listener.create",
      {{"lb", "lb-1"},
       {"protocol", "http"},
       {"port", 8080},
       {"group", "sg-1"},
       {"scheduler", "maglev"},
       {"mode", "dnat"},
       {"idle_timeout", 120},
       {"persistence", 300},
       {"on_backend_down", "keep"},
       {"health_check",
        {{"type", "http"},
         {"port", 8081},
         {"interval", 10},
         {"timeout", 3},
         {"rise", 2},
         {"fall", 4},
         {"path", "/healthz"},
         {"host", "www.example.com"},
         {"codes", {"2xx", "3xx"}}}}});
  ExpectRequest(
      "listener create lb-1 --protocol udp --port 53 --group sg-1 --hc-type udp "
      "--hc-send 0001 --hc-expect 8001",
      "listener.create",
      {{"lb", "lb-1"},
       {"protocol", "udp"},
       {"port", 53},
       {"group", "sg-1"},
       {"health_check", {{"type", "udp"}, {"send", "0001"}, {"expect", "8001"}}}});
}

TEST(ParseTest, HealthCheckCodesAreSplitAndTrimmed) {
  const Invocation invocation =
      MustParse(std::vector<std::string>{"listener", "modify", "lsn-1", "--hc-codes", "2xx, 5xx"});
  EXPECT_EQ(invocation.request.args["health_check"]["codes"], json({"2xx", "5xx"}));
}

TEST(ParseTest, ListenerModifySendsPartialUpdates) {
  ExpectRequest("listener modify lsn-1 --hc-interval 10", "listener.modify",
                {{"id", "lsn-1"}, {"health_check", {{"interval", 10}}}});
  ExpectRequest("listener modify lsn-1 --scheduler wlc --group sg-2 --idle-timeout 60",
                "listener.modify",
                {{"id", "lsn-1"}, {"scheduler", "wlc"}, {"group", "sg-2"}, {"idle_timeout", 60}});
  ExpectRequest("listener modify lsn-1 --on-backend-down reschedule", "listener.modify",
                {{"id", "lsn-1"}, {"on_backend_down", "reschedule"}});
  // An explicitly empty host is sent: it resets the Host header to the backend's address.
  const Invocation empty_host =
      MustParse(std::vector<std::string>{"listener", "modify", "lsn-1", "--hc-host", ""});
  EXPECT_EQ(empty_host.request.args, json({{"id", "lsn-1"}, {"health_check", {{"host", ""}}}}));
}

TEST(ParseTest, ListenersStatsConnsBackends) {
  ExpectRequest("listener list lb-1", "listener.list", {{"lb", "lb-1"}});
  ExpectRequest("listener show lsn-1", "listener.show", {{"id", "lsn-1"}});
  ExpectRequest("listener delete lsn-1", "listener.delete", {{"id", "lsn-1"}});
  ExpectRequest("stats", "stats", json::object());
  ExpectRequest("stats lsn-1", "stats", {{"target", "lsn-1"}});
  ExpectRequest("conn list", "conn.list", json::object());
  ExpectRequest("conn list --listener lsn-1 --limit 50", "conn.list",
                {{"listener", "lsn-1"}, {"limit", 50}});
  ExpectRequest("backend set-health lsn-1 198.18.1.11:80 up", "backend.set_health",
                {{"listener", "lsn-1"}, {"addr", "198.18.1.11:80"}, {"state", "up"}});
  const Invocation down = MustParse(std::vector<std::string>{
      "backend", "set-health", "lsn-1", "198.18.1.11:80", "down", "--reason", "connect refused"});
  EXPECT_EQ(down.request.args, json({{"listener", "lsn-1"},
                                     {"addr", "198.18.1.11:80"},
                                     {"state", "down"},
                                     {"reason", "connect refused"}}));
}

TEST(ParseTest, ViewsFollowTheCommand) {
  EXPECT_EQ(MustParse("lb create --name a --vip 198.18.100.1").view, View::kCreated);
  EXPECT_EQ(MustParse("group create lb-1 --name a").view, View::kCreated);
  EXPECT_EQ(MustParse("listener create lb-1 --protocol tcp --port 1 --group sg-1").view,
            View::kCreated);
  EXPECT_EQ(MustParse("lb list").view, View::kLbList);
  EXPECT_EQ(MustParse("group show sg-1").view, View::kGroupShow);
  EXPECT_EQ(MustParse("listener modify lsn-1 --mode fnat").view, View::kListenerModified);
  EXPECT_EQ(MustParse("conn list").view, View::kConnList);
  EXPECT_EQ(MustParse("backend set-health lsn-1 198.18.1.11:80 up").view, View::kHealthSet);
}

TEST(ParseTest, GlobalOptionsDefaultsAndPositions) {
  const Invocation plain = MustParse("lb list");
  EXPECT_FALSE(plain.json);
  EXPECT_FALSE(plain.socket.has_value());
  EXPECT_EQ(plain.timeout, kDefaultTimeout);
  EXPECT_FALSE(plain.watch.enabled);

  for (const char* line : {"--json lb list", "lb --json list", "lb list --json"}) {
    EXPECT_TRUE(MustParse(line).json) << line;
  }
  const Invocation tuned = MustParse("lb show lb-1 --socket /tmp/x.sock --timeout 2.5");
  EXPECT_EQ(tuned.socket, "/tmp/x.sock");
  EXPECT_EQ(tuned.timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(tuned.request.args, json({{"id", "lb-1"}}));  // globals are not request arguments
}

TEST(ParseTest, StatsWatch) {
  const Invocation watch = MustParse("stats --watch");
  EXPECT_TRUE(watch.watch.enabled);
  EXPECT_EQ(watch.watch.interval, std::chrono::milliseconds(1000));
  EXPECT_FALSE(watch.watch.count.has_value());
  EXPECT_EQ(watch.request.args, json::object());

  const Invocation counted = MustParse("stats lb-1 --count 3 --interval 0.5");
  EXPECT_TRUE(counted.watch.enabled);
  EXPECT_EQ(counted.watch.count, 3u);
  EXPECT_EQ(counted.watch.interval, std::chrono::milliseconds(500));
  EXPECT_EQ(counted.request.args, json({{"target", "lb-1"}}));
}

TEST(ParseTest, HelpAndVersionPrintAndSendNothing) {
  const Invocation version = MustParse("--version");
  ASSERT_TRUE(version.info.has_value());
  EXPECT_THAT(*version.info, HasSubstr(FULCRUM_VERSION));

  const Invocation help = MustParse("--help");
  ASSERT_TRUE(help.info.has_value());
  EXPECT_THAT(*help.info, AllOf(HasSubstr("Usage: lbctl"), HasSubstr("listener"),
                                HasSubstr("backend"), HasSubstr("--socket")));

  const Invocation modify_help = MustParse("listener modify --help");
  ASSERT_TRUE(modify_help.info.has_value());
  EXPECT_THAT(*modify_help.info,
              AllOf(HasSubstr("Usage: lbctl listener modify"), HasSubstr("--hc-codes"),
                    Not(HasSubstr("--protocol")), Not(HasSubstr("--port "))));
  const Invocation create_help = MustParse("listener create --help");
  ASSERT_TRUE(create_help.info.has_value());
  EXPECT_THAT(*create_help.info, AllOf(HasSubstr("--protocol tcp|udp|http|https"),
                                       HasSubstr("--scheduler wrr|wlc|rr|sh|maglev")));
}

// ---------------------------------------------------------------------------------------------
// usage errors (exit 2)

TEST(ParseTest, UsageErrorsNameTheProblemAndPointAtHelp) {
  struct Case {
    std::vector<std::string> args;
    std::string mentions;
  };
  const std::vector<Case> cases = {
      {{}, "subcommand is required"},
      {{"frobnicate"}, "frobnicate"},
      {{"lb"}, "subcommand is required"},
      {{"lb", "show"}, "LB is required"},
      {{"lb", "create", "--name", "web"}, "--vip is required"},
      {{"lb", "list", "--foo"}, "--foo"},
      {{"lb", "list", "extra"}, "extra"},
      {{"group", "set-weight", "sg-1", "198.18.1.11:80"}, "N is required"},
      {{"group", "set-weight", "sg-1", "198.18.1.11:80", "ten"}, "'ten' is not a decimal integer"},
      {{"group", "add-backend", "sg-1", "198.18.1.11:80", "--weight", "1.5"}, "--weight"},
      {{"listener", "create", "lb-1", "--protocol", "tcp", "--port", "eighty", "--group", "sg-1"},
       "'eighty' is not a decimal integer"},
      {{"listener", "create", "lb-1", "--protocol", "tcp", "--port", "0x50", "--group", "sg-1"},
       "'0x50' is not a decimal integer"},
      {{"listener", "create", "lb-1", "--protocol", "ftp", "--port", "21", "--group", "sg-1"},
       "ftp"},
      {{"listener", "create", "lb-1", "--protocol", "tcp", "--port", "80"}, "--group is required"},
      {{"listener", "modify", "lsn-1", "--scheduler", "random"}, "random"},
      {{"listener", "modify", "lsn-1", "--hc-type", "icmp"}, "icmp"},
      {{"listener", "modify", "lsn-1", "--on-backend-down", "drop"}, "drop"},
      {{"listener", "modify", "lsn-1", "--protocol", "udp"}, "--protocol cannot be modified"},
      {{"listener", "modify", "lsn-1", "--port", "81"}, "--port cannot be modified"},
      {{"backend", "set-health", "lsn-1", "198.18.1.11:80", "sideways"}, "sideways"},
      {{"stats", "--count", "0"}, "--count"},
      {{"stats", "lb-1", "lsn-1"}, "lsn-1"},
      {{"status", "--timeout", "0"}, "--timeout"},
      {{"status", "--timeout", "soon"}, "--timeout"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::PrintToString(c.args));
    EXPECT_THAT(UsageError(c.args),
                AllOf(StartsWith("lbctl: "), HasSubstr(c.mentions), HasSubstr("--help")));
  }
  EXPECT_THAT(UsageError("listener modify lsn-1 --port 81"),
              HasSubstr("Run 'lbctl listener modify --help'"));
}

TEST(ResolveSocketPathTest, FlagThenEnvironmentThenDefault) {
  EXPECT_EQ(ResolveSocketPath(std::string("/tmp/a.sock"), "/tmp/b.sock"), "/tmp/a.sock");
  EXPECT_EQ(ResolveSocketPath(std::nullopt, "/tmp/b.sock"), "/tmp/b.sock");
  EXPECT_EQ(ResolveSocketPath(std::nullopt, ""), kDefaultSocket);
  EXPECT_EQ(ResolveSocketPath(std::nullopt, nullptr), kDefaultSocket);
}

// ---------------------------------------------------------------------------------------------
// tables and rendering

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) {
    lines.push_back(line);
  }
  return lines;
}

void ExpectNoTrailingSpaces(const std::string& text) {
  for (const std::string& line : Lines(text)) {
    EXPECT_TRUE(line.empty() || line.back() != ' ') << "'" << line << "'";
  }
}

TEST(TableTest, PadsColumnsAndRightAlignsNumbers) {
  Table table({{"NAME"}, {"PORT", Table::Align::kRight}, {"NOTE"}});
  table.AddRow({"web", "80", "x"});
  table.AddRow({"api-gateway", "8443", ""});
  EXPECT_EQ(table.Render(),
            "NAME         PORT  NOTE\n"
            "web            80  x\n"
            "api-gateway  8443\n");
}

TEST(TableTest, CountsUtf8CodePointsAndPadsShortRows) {
  Table table({{"A"}, {"B"}});
  table.AddRow({"héllo", "1"});
  table.AddRow({"x"});
  EXPECT_EQ(table.Render(),
            "A      B\n"
            "héllo  1\n"
            "x\n");
  EXPECT_EQ(DisplayWidth("héllo"), 5u);
}

Invocation ViewOf(const std::string& line) { return MustParse(line); }

TEST(RenderTest, CreatePrintsTheIdAlone) {
  const json result = {{"id", "lb-0a1b2c3d"}};
  EXPECT_EQ(Render(ViewOf("lb create --name web --vip 198.18.100.10"), result), "lb-0a1b2c3d\n");
  EXPECT_EQ(Render(ViewOf("listener create lb-1 --protocol tcp --port 80 --group sg-1"),
                   {{"id", "lsn-11223344"}}),
            "lsn-11223344\n");
}

// Each of `cells` sits in column `title` of its row: same start as the title, whole word.
void ExpectColumnAligned(const std::vector<std::string>& lines, const std::string& title,
                         const std::vector<std::string>& cells) {
  ASSERT_EQ(lines.size(), cells.size() + 1);
  const std::size_t column = lines[0].find(title);
  ASSERT_NE(column, std::string::npos);
  for (std::size_t i = 0; i < cells.size(); ++i) {
    const std::string& line = lines[i + 1];
    const std::size_t end = column + cells[i].size();
    EXPECT_TRUE(line.compare(column, cells[i].size(), cells[i]) == 0 &&
                (end == line.size() || line[end] == ' ') && line[column - 1] == ' ')
        << "'" << cells[i] << "' not under " << title << " in '" << line << "'";
  }
}

// Each of `cells` ends where the (right-aligned) column `title` ends.
void ExpectRightAligned(const std::vector<std::string>& lines, const std::string& title,
                        const std::vector<std::string>& cells) {
  ASSERT_EQ(lines.size(), cells.size() + 1);
  const std::size_t end = lines[0].find(title) + title.size();
  for (std::size_t i = 0; i < cells.size(); ++i) {
    const std::string& line = lines[i + 1];
    ASSERT_GE(end, cells[i].size());
    const std::size_t start = end - cells[i].size();
    EXPECT_TRUE(line.compare(start, cells[i].size(), cells[i]) == 0 && line[start - 1] == ' ' &&
                (end == line.size() || line[end] == ' '))
        << "'" << cells[i] << "' not right-aligned under " << title << " in '" << line << "'";
  }
}

TEST(RenderTest, LbListIsAnAlignedTable) {
  const json result = {{"lbs",
                        {{{"id", "lb-0a1b2c3d"},
                          {"name", "web"},
                          {"vip", "198.18.100.10"},
                          {"family", "ipv4"},
                          {"listeners", {"lsn-11223344", "lsn-11223345"}},
                          {"groups", {"sg-55667788"}},
                          {"created_at", 1795000000}},
                         {{"id", "lb-ffeeddcc"},
                          {"name", "payments-internal"},
                          {"vip", "2001:db8::10"},
                          {"family", "ipv6"},
                          {"listeners", json::array()},
                          {"groups", json::array()},
                          {"created_at", 1795000100}}}}};
  const std::string text = Render(ViewOf("lb list"), result);
  ExpectNoTrailingSpaces(text);
  const std::vector<std::string> lines = Lines(text);
  ExpectColumnAligned(lines, "NAME", {"web", "payments-internal"});
  ExpectColumnAligned(lines, "VIP", {"198.18.100.10", "2001:db8::10"});
  ExpectColumnAligned(lines, "CREATED", {"2026-11-18T11:06:40Z", "2026-11-18T11:08:20Z"});
  ExpectRightAligned(lines, "LISTENERS", {"2", "0"});
}

TEST(RenderTest, EmptyListIsTheHeaderAlone) {
  EXPECT_EQ(Lines(Render(ViewOf("lb list"), {{"lbs", json::array()}})).size(), 1u);
}

json SampleListener() {
  return {{"id", "lsn-11223344"},
          {"lb", "lb-0a1b2c3d"},
          {"protocol", "http"},
          {"port", 80},
          {"group", "sg-55667788"},
          {"scheduler", "wrr"},
          {"mode", "fnat"},
          {"idle_timeout", 900},
          {"persistence", 0},
          {"on_backend_down", "reset"},
          {"health_check",
           {{"type", "http"},
            {"port", 0},
            {"interval", 5},
            {"timeout", 2},
            {"rise", 3},
            {"fall", 3},
            {"path", "/healthz"},
            {"host", ""},
            {"codes", {"2xx", "3xx"}},
            {"send", ""},
            {"expect", ""}}},
          {"created_at", 1795000000},
          {"fail_open", false}};
}

json SampleGroup() {
  return {{"id", "sg-55667788"},
          {"lb", "lb-0a1b2c3d"},
          {"name", "pool"},
          {"listeners", {"lsn-11223344", "lsn-99887766"}},
          {"listener_health",
           {{{"listener", "lsn-11223344"}, {"healthy", 1}, {"total", 1}, {"fail_open", false}},
            {{"listener", "lsn-99887766"}, {"healthy", 0}, {"total", 1}, {"fail_open", true}}}},
          {"backends",
           {{{"addr", "198.18.1.11:80"},
             {"weight", 10},
             {"active_conns", 3},
             {"health",
              {{{"listener", "lsn-11223344"},
                {"state", "up"},
                {"reason", ""},
                {"since", 1795000100},
                {"last_probe", 1795000400}},
               {{"listener", "lsn-99887766"},
                {"state", "down"},
                {"reason", "connect: connection refused"},
                {"since", 1795000000},
                {"last_probe", 1795000400}}}}},
            {{"addr", "198.18.1.12:80"},
             {"weight", 0},
             {"active_conns", 12},
             {"health", json::array()}}}}};
}

TEST(RenderTest, GroupShowListsHealthPerBackendAndListener) {
  const std::string text = Render(ViewOf("group show sg-55667788"), SampleGroup());
  ExpectNoTrailingSpaces(text);
  EXPECT_THAT(text, AllOf(HasSubstr("name:"), HasSubstr("pool"),
                          HasSubstr("lsn-11223344,lsn-99887766"), HasSubstr("Backends:")));
  std::vector<std::string> lines = Lines(text);
  const auto header = std::find_if(lines.begin(), lines.end(),
                                   [](const std::string& l) { return l.starts_with("BACKEND"); });
  ASSERT_NE(header, lines.end());
  const std::vector<std::string> table(header, lines.end());
  ExpectColumnAligned(table, "HEALTH", {"up", "down", "-"});
  ExpectColumnAligned(table, "REASON", {"-", "connect: connection refused", "-"});
  ExpectColumnAligned(table, "SINCE", {"2026-11-18T11:08:20Z", "2026-11-18T11:06:40Z", "-"});
  ExpectRightAligned(table, "WEIGHT", {"10", "10", "0"});
  ExpectRightAligned(table, "CONNS", {"3", "3", "12"});
  ExpectColumnAligned(table, "LISTENER", {"lsn-11223344", "lsn-99887766", "-"});
}

// The lines of `text` from the one starting with `header` up to the next blank line.
std::vector<std::string> TableAt(const std::string& text, const std::string& header) {
  const std::vector<std::string> lines = Lines(text);
  auto begin = std::find_if(lines.begin(), lines.end(),
                            [&](const std::string& l) { return l.starts_with(header); });
  auto end = std::find(begin, lines.end(), std::string());
  return std::vector<std::string>(begin, end);
}

TEST(RenderTest, GroupShowSaysWhichListenersAreInFailOpen) {
  json group = SampleGroup();
  std::string text = Render(ViewOf("group show sg-55667788"), group);
  ExpectNoTrailingSpaces(text);
  EXPECT_THAT(text, HasSubstr("\nFAIL-OPEN on lsn-99887766: its only backend is down, traffic "
                              "goes to it anyway\n"));
  EXPECT_THAT(text, Not(HasSubstr("FAIL-OPEN on lsn-11223344")));
  const std::vector<std::string> table = TableAt(text, "LISTENER  ");
  ExpectRightAligned(table, "HEALTHY", {"1/1", "0/1"});
  ExpectColumnAligned(table, "FAIL-OPEN", {"no", "YES"});

  group["listener_health"][0] = {
      {"listener", "lsn-11223344"}, {"healthy", 0}, {"total", 3}, {"fail_open", true}};
  text = Render(ViewOf("group show sg-55667788"), group);
  EXPECT_THAT(text, HasSubstr("FAIL-OPEN on lsn-11223344: all 3 backends are down, traffic goes "
                              "to all of them\n"));
  group["listener_health"] = json::array();
  text = Render(ViewOf("group show sg-55667788"), group);
  EXPECT_THAT(text, AllOf(Not(HasSubstr("FAIL-OPEN")), HasSubstr("Listener health: none")));
}

TEST(RenderTest, ListenerListShowsOnBackendDownAndFailOpen) {
  json dead = SampleListener();
  dead["id"] = "lsn-99887766";
  dead["protocol"] = "udp";
  dead["on_backend_down"] = "reschedule";
  dead["fail_open"] = true;
  const std::string text =
      Render(ViewOf("listener list lb-0a1b2c3d"), {{"listeners", {SampleListener(), dead}}});
  ExpectNoTrailingSpaces(text);
  const std::vector<std::string> lines = Lines(text);
  ExpectColumnAligned(lines, "ON DOWN", {"reset", "reschedule"});
  ExpectColumnAligned(lines, "FAIL-OPEN", {"no", "YES"});
  EXPECT_THAT(Render(ViewOf("lb show lb-0a1b2c3d"), {{"id", "lb-0a1b2c3d"},
                                                     {"listener_objects", {dead}},
                                                     {"group_objects", json::array()}}),
              HasSubstr("\nFAIL-OPEN on lsn-99887766: all backends are down, traffic goes to all "
                        "of them\n\nListeners:\n"));
}

TEST(RenderTest, ListenerShowSaysFailOpenAndThePolicy) {
  json listener = SampleListener();
  std::string text = Render(ViewOf("listener show lsn-11223344"), listener);
  EXPECT_THAT(text, AllOf(HasSubstr("on backend down: reset\n"), Not(HasSubstr("FAIL-OPEN"))));
  EXPECT_THAT(Lines(text), ::testing::Contains(::testing::MatchesRegex("fail-open: +no")));
  listener["fail_open"] = true;
  text = Render(ViewOf("listener show lsn-11223344"), listener);
  ExpectNoTrailingSpaces(text);
  EXPECT_THAT(Lines(text), ::testing::Contains(::testing::MatchesRegex("fail-open: +YES")));
  EXPECT_THAT(text, testing::EndsWith(
                        "\n\nFAIL-OPEN: all backends are down, traffic goes to all of them\n"));
}

TEST(RenderTest, LbShowIncludesListenersAndGroups) {
  json lb = {{"id", "lb-0a1b2c3d"},
             {"name", "web"},
             {"vip", "198.18.100.10"},
             {"family", "ipv4"},
             {"created_at", 1795000000},
             {"listener_objects", {SampleListener()}},
             {"group_objects", json::array({SampleGroup()})}};
  const std::string text = Render(ViewOf("lb show lb-0a1b2c3d"), lb);
  ExpectNoTrailingSpaces(text);
  EXPECT_THAT(text,
              AllOf(HasSubstr("vip:"), HasSubstr("198.18.100.10"), HasSubstr("Listeners:\n"),
                    HasSubstr("lsn-11223344"), HasSubstr("Groups:\n"), HasSubstr("sg-55667788")));
  lb["listener_objects"] = json::array();
  EXPECT_THAT(Render(ViewOf("lb show lb-0a1b2c3d"), lb), HasSubstr("Listeners: none"));
}

TEST(RenderTest, KeyValueBlocksAlignTheirValues) {
  const std::string text = Render(ViewOf("listener show lsn-11223344"), SampleListener());
  ExpectNoTrailingSpaces(text);
  const std::vector<std::string> lines = Lines(text);
  ASSERT_GE(lines.size(), 2u);
  const std::size_t value_column = lines[0].find("lsn-11223344");
  for (const std::string& line : lines) {
    ASSERT_NE(line.find(':'), std::string::npos) << line;
    EXPECT_NE(line[value_column], ' ') << line;
    EXPECT_EQ(line[value_column - 1], ' ') << line;
  }
  EXPECT_THAT(text, AllOf(HasSubstr("/healthz"), HasSubstr("2xx,3xx"), HasSubstr("persistence:"),
                          Not(HasSubstr("send"))));  // udp-only fields hide on http checks
}

TEST(RenderTest, StatusShowsDaemonPortsAndWorkers) {
  const json status = {{"version", "0.1.0"},
                       {"pid", 4242},
                       {"uptime_s", 93784},
                       {"state_file", "/var/lib/lbd/state.json"},
                       {"socket", "/run/lbd/lbd.sock"},
                       {"ports",
                        {{{"name", "client"},
                          {"device", "net_af_xdp0"},
                          {"link", "up"},
                          {"offloads", {{"rss", true}}}},
                         {{"name", "backend"},
                          {"device", "net_af_xdp1"},
                          {"link", "down"},
                          {"offloads", {{"rss", false}}}}}},
                       {"workers",
                        {{{"lcore", 1}, {"drops", {{"no_service", 3}}}, {"queues", {1, 2}}},
                         {{"lcore", 2}, {"drops", {{"no_service", 0}}}, {"queues", {3}}}}},
                       {"prober", {{"state", "present"}, {"last_seen", 1795000100}}},
                       {"objects", {{"lbs", 1}, {"groups", 2}, {"listeners", 3}, {"backends", 0}}}};
  const std::string text = Render(ViewOf("status"), status);
  ExpectNoTrailingSpaces(text);
  EXPECT_THAT(text, AllOf(HasSubstr("1d 2h 3m 4s"),
                          HasSubstr("1 load balancer, 2 groups, 3 listeners, 0 backends"),
                          HasSubstr("2026-11-18T11:08:20Z"), HasSubstr("Workers:\nLCORE\n1\n2\n"),
                          // Nested members do not fit a cell: --json has them.
                          Not(HasSubstr("OFFLOADS")), Not(HasSubstr("rss")),
                          Not(HasSubstr("DROPS")), Not(HasSubstr("QUEUES"))));
  EXPECT_THAT(Lines(text), ::testing::Contains(::testing::MatchesRegex(
                               "prober: +present \\(last poll 2026-11-18T11:08:20Z\\)")));
  const std::vector<std::string> lines = Lines(text);
  const auto header = std::find_if(lines.begin(), lines.end(),
                                   [](const std::string& l) { return l.starts_with("NAME"); });
  ASSERT_NE(header, lines.end());
  ExpectColumnAligned({*header, header[1], header[2]}, "LINK", {"up", "down"});
  ExpectColumnAligned({*header, header[1], header[2]}, "DEVICE", {"net_af_xdp0", "net_af_xdp1"});
}

TEST(RenderTest, StatusSaysWhetherAProberIsChecking) {
  const auto prober_line = [](const json& prober) {
    for (const std::string& line : Lines(Render(ViewOf("status"), {{"prober", prober}}))) {
      if (line.starts_with("prober")) {
        return line;
      }
    }
    return std::string("(no prober line)");
  };
  EXPECT_THAT(prober_line({{"state", "absent"}, {"last_seen", 1795000100}}),
              AllOf(HasSubstr("ABSENT"), HasSubstr("last poll 2026-11-18T11:08:20Z"),
                    HasSubstr("stays as last reported")));
  EXPECT_THAT(prober_line({{"state", "never"}, {"last_seen", 0}}),
              AllOf(HasSubstr("never seen"), HasSubstr("not health-checked")));
  EXPECT_THAT(prober_line({{"state", "sleepy"}}), testing::EndsWith(" sleepy"));
  EXPECT_THAT(prober_line(nullptr), testing::EndsWith(" -"));
}

TEST(RenderTest, StatsShowsNonZeroDropsAndRates) {
  const json stats = {
      {"target", "all"},
      {"totals",
       {{"rx_packets", 1000},
        {"rx_bytes", 64000},
        {"tx_packets", 990},
        {"tx_bytes", 63360},
        {"new_conns", 10},
        {"active_conns", 4},
        {"drops", 10}}},
      {"drops", {{"no_service", 0}, {"bad_checksum", 7}, {"ttl_exceeded", 3}}},
      {"counters", {{"handoffs", 0}, {"table_full_fallbacks", 2}}},
      {"rates", {{"pps", 1234567.0}, {"bps", 9.87e9}, {"new_conns_per_s", 12.0}}},
      {"listeners",
       {{{"id", "lsn-11223344"},
         {"new_conns", 10},
         {"active_conns", 4},
         {"rx_packets", 1000},
         {"rx_bytes", 64000},
         {"tx_packets", 990},
         {"tx_bytes", 63360}}}},
      {"workers",
       {{{"lcore", 1}, {"rx_packets", 600}, {"tx_packets", 590}, {"busy_ratio", 0.25}},
        {{"lcore", 2}, {"rx_packets", 400}, {"tx_packets", 400}, {"busy_ratio", 0.1}}}}};
  const std::string text = Render(ViewOf("stats"), stats);
  ExpectNoTrailingSpaces(text);
  EXPECT_THAT(text, AllOf(HasSubstr("bad_checksum"), HasSubstr("ttl_exceeded"),
                          Not(HasSubstr("no_service")), HasSubstr("table_full_fallbacks"),
                          Not(HasSubstr("handoffs")), HasSubstr("1.23M"), HasSubstr("9.87G"),
                          HasSubstr("25.0%"), HasSubstr("Workers:")));
  json quiet = stats;
  quiet["drops"] = {{"no_service", 0}};
  EXPECT_THAT(Render(ViewOf("stats"), quiet), HasSubstr("Drops: none"));
}

TEST(RenderTest, ConnListIsATableAndSaysWhenTruncated) {
  const json conn = {{"worker", 1},
                     {"listener", "lsn-11223344"},
                     {"protocol", "tcp"},
                     {"client", "198.18.0.2:40000"},
                     {"vip", "198.18.100.10:80"},
                     {"local", "198.18.1.2:1025"},
                     {"backend", "198.18.1.11:80"},
                     {"state", "established"},
                     {"age_s", 12},
                     {"idle_s", 3},
                     {"timeout_s", 900}};
  const std::string text =
      Render(ViewOf("conn list"), {{"connections", {conn, conn}}, {"truncated", true}});
  ExpectNoTrailingSpaces(text);
  const std::vector<std::string> lines = Lines(text);
  ASSERT_EQ(lines.size(), 4u);
  ExpectColumnAligned({lines[0], lines[1], lines[2]}, "BACKEND",
                      {"198.18.1.11:80", "198.18.1.11:80"});
  EXPECT_THAT(lines[3], HasSubstr("truncated after 2 connections"));
}

TEST(RenderTest, ConfirmationLines) {
  EXPECT_EQ(Render(ViewOf("lb delete lb-1"), {{"id", "lb-1"},
                                              {"deleted_listeners", {"lsn-1", "lsn-2"}},
                                              {"deleted_groups", {"sg-1"}}}),
            "deleted lb-1 with 2 listeners and 1 group\n");
  EXPECT_EQ(Render(ViewOf("group delete sg-1"), {{"id", "sg-1"}}), "deleted sg-1\n");
  EXPECT_EQ(Render(ViewOf("group add-backend sg-1 198.18.1.11:80"),
                   {{"group", "sg-1"}, {"addr", "198.18.1.11:80"}, {"weight", 10}}),
            "added 198.18.1.11:80 to sg-1 with weight 10\n");
  EXPECT_EQ(Render(ViewOf("listener modify lsn-1 --mode dnat"), SampleListener()),
            "modified lsn-11223344\n");
  EXPECT_EQ(
      Render(ViewOf("backend set-health lsn-1 198.18.1.11:80 down"), {{"listener", "lsn-1"},
                                                                      {"addr", "198.18.1.11:80"},
                                                                      {"state", "down"},
                                                                      {"changed", true}}),
      "198.18.1.11:80 down on lsn-1 (changed)\n");
}

TEST(RenderTest, UnexpectedShapesDegradeToDashes) {
  const json odd = json::array({1, 2});
  for (const char* line : {"status", "lb list", "lb show lb-1", "group show sg-1",
                           "listener show lsn-1", "stats", "conn list"}) {
    EXPECT_FALSE(Render(ViewOf(line), odd).empty()) << line;
  }
  EXPECT_EQ(Render(ViewOf("group delete sg-1"), json::object()), "deleted -\n");
  ExpectColumnAligned(Lines(Render(ViewOf("lb list"), {{"lbs", {{{"id", 5}, {"name", nullptr}}}}})),
                      "NAME", {"-"});
}

// ---------------------------------------------------------------------------------------------
// Present: exit codes and streams

TEST(PresentTest, SuccessRefusalAndUnreachable) {
  const Invocation human = MustParse("lb create --name web --vip 198.18.100.10");
  const Invocation as_json = MustParse("lb create --name web --vip 198.18.100.10 --json");
  const Answer created = json{{"id", "lb-0a1b2c3d"}};
  const Answer refused = Status(ErrorCode::kAddressConflict, "VIP 198.18.100.10 is used by lb-1");

  Outcome ok = Present(human, Result<Answer>(created));
  EXPECT_EQ(ok.exit_code, kExitOk);
  EXPECT_EQ(ok.out, "lb-0a1b2c3d\n");
  EXPECT_EQ(ok.err, "");

  Outcome ok_json = Present(as_json, Result<Answer>(created));
  EXPECT_EQ(ok_json.exit_code, kExitOk);
  EXPECT_EQ(json::parse(ok_json.out), json({{"id", "lb-0a1b2c3d"}}));
  EXPECT_THAT(ok_json.out, HasSubstr("\n  \"id\""));  // pretty, 2-space

  Outcome no = Present(human, Result<Answer>(refused));
  EXPECT_EQ(no.exit_code, kExitRefused);
  EXPECT_EQ(no.out, "");
  EXPECT_EQ(no.err, "lbctl: AddressConflict: VIP 198.18.100.10 is used by lb-1\n");

  Outcome no_json = Present(as_json, Result<Answer>(refused));
  EXPECT_EQ(no_json.exit_code, kExitRefused);
  EXPECT_EQ(json::parse(no_json.out),
            json({{"code", "AddressConflict"}, {"message", "VIP 198.18.100.10 is used by lb-1"}}));

  const Result<Answer> unreachable =
      Status(ErrorCode::kUnavailable, "cannot reach lbd at /x: No such file or directory");
  Outcome gone = Present(as_json, unreachable);
  EXPECT_EQ(gone.exit_code, kExitUsage);
  EXPECT_EQ(gone.out, "");
  EXPECT_EQ(gone.err, "lbctl: cannot reach lbd at /x: No such file or directory\n");
}

// ---------------------------------------------------------------------------------------------
// Client against a fake lbd

// A one-connection lbd stand-in: answers each request line with reply(request): a line to
// send (written `chunk` bytes at a time), "" to stay silent, or nullopt to hang up. It stops
// after `replies` requests, or when the client hangs up. Every wait is bounded so that a
// broken test cannot hang.
class FakeLbd {
 public:
  using Reply = std::function<std::optional<std::string>(const json& request)>;

  FakeLbd() {
    char pattern[] = "/tmp/lbctl-test-XXXXXX";
    dir_ = mkdtemp(pattern);
    path_ = dir_ + "/lbd.sock";
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path_.c_str(), sizeof(address.sun_path) - 1);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(listen(listen_fd_, 4), 0);
  }

  ~FakeLbd() {
    if (thread_.joinable()) {
      thread_.join();
    }
    close(listen_fd_);
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }

  void Serve(Reply reply, int replies = 1, std::size_t chunk = 1 << 20) {
    thread_ = std::thread(
        [this, reply = std::move(reply), replies, chunk] { Run(reply, replies, chunk); });
  }

  // Waits for the session to end and returns the request lines it read.
  std::vector<std::string> Requests() {
    thread_.join();
    return requests_;
  }

  const std::string& path() const { return path_; }

 private:
  static bool WaitReadable(int fd) {
    pollfd entry{.fd = fd, .events = POLLIN, .revents = 0};
    return poll(&entry, 1, 5000) == 1;
  }

  // Writes `answer` in pieces with pauses, so that the client sees partial lines.
  static void WriteChunked(int fd, const std::string& answer, std::size_t chunk) {
    for (std::size_t offset = 0; offset < answer.size(); offset += chunk) {
      const std::size_t size = std::min(chunk, answer.size() - offset);
      EXPECT_EQ(write(fd, answer.data() + offset, size), static_cast<ssize_t>(size));
      if (offset + size < answer.size()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  }

  void Run(const Reply& reply, int replies, std::size_t write_size) {
    if (!WaitReadable(listen_fd_)) {
      return;
    }
    const int fd = accept(listen_fd_, nullptr, nullptr);
    std::string buffer;
    bool hang_up = false;
    while (!hang_up && static_cast<int>(requests_.size()) < replies && WaitReadable(fd)) {
      char chunk[4096];
      const ssize_t n = read(fd, chunk, sizeof(chunk));
      if (n <= 0) {
        break;
      }
      buffer.append(chunk, static_cast<std::size_t>(n));
      for (std::size_t newline; (newline = buffer.find('\n')) != std::string::npos;) {
        requests_.push_back(buffer.substr(0, newline));
        buffer.erase(0, newline + 1);
        const std::optional<std::string> answer = reply(json::parse(requests_.back()));
        hang_up = !answer.has_value();
        if (!hang_up) {
          WriteChunked(fd, *answer, write_size);
        }
      }
    }
    // Otherwise hold the connection until the client hangs up: silence is then a timeout.
    while (!hang_up && WaitReadable(fd)) {
      char chunk[256];
      if (read(fd, chunk, sizeof(chunk)) <= 0) {
        break;
      }
    }
    close(fd);
  }

  std::string dir_;
  std::string path_;
  int listen_fd_ = -1;
  std::thread thread_;
  std::vector<std::string> requests_;
};

std::uint64_t IdOf(const json& request) { return request.at("id").get<std::uint64_t>(); }

std::string OkLine(std::uint64_t id, const json& result) {
  return protocol::EncodeResult(id, result);
}

constexpr std::chrono::milliseconds kTestTimeout{2000};

Result<Answer> CallOnce(const std::string& path, const std::string& cmd, const json& args,
                        std::chrono::milliseconds timeout = kTestTimeout) {
  Result<Client> client = Client::Connect(path, timeout);
  if (!client.ok()) {
    return client.status();
  }
  return client->Call(cmd, args);
}

TEST(ClientTest, SuccessReturnsTheResultAndSendsAProtocolLine) {
  FakeLbd lbd;
  lbd.Serve([](const json& request) { return OkLine(IdOf(request), {{"id", "lb-0a1b2c3d"}}); });
  const Invocation invocation = MustParse("lb create --name web --vip 198.18.100.10");
  const Result<Answer> answer =
      CallOnce(lbd.path(), invocation.request.cmd, invocation.request.args);
  const Outcome outcome = Present(invocation, answer);
  EXPECT_EQ(outcome.exit_code, kExitOk);
  EXPECT_EQ(outcome.out, "lb-0a1b2c3d\n");

  const std::vector<std::string> requests = lbd.Requests();
  ASSERT_EQ(requests.size(), 1u);
  const protocol::ParsedRequest parsed = protocol::ParseRequest(requests[0]);
  ASSERT_TRUE(parsed.request.ok()) << parsed.request.status().message();
  EXPECT_EQ(parsed.request->cmd, "lb.create");
  EXPECT_EQ(parsed.request->args, json({{"name", "web"}, {"vip", "198.18.100.10"}}));
}

TEST(ClientTest, IdsIncreaseOnOneConnection) {
  FakeLbd lbd;
  lbd.Serve(
      [](const json& request) {
        return OkLine(IdOf(request), {{"echo", IdOf(request)}});
      },
      3);
  {
    Result<Client> client = Client::Connect(lbd.path(), kTestTimeout);
    ASSERT_TRUE(client.ok()) << client.status().message();
    for (std::uint64_t expected = 1; expected <= 3; ++expected) {
      Result<Answer> answer = client->Call("lb.list", json::object());
      ASSERT_TRUE(answer.ok()) << answer.status().message();
      ASSERT_TRUE(answer->ok());
      EXPECT_EQ((**answer)["echo"], expected);
    }
  }
  EXPECT_EQ(lbd.Requests().size(), 3u);
}

TEST(ClientTest, RefusalExitsOne) {
  FakeLbd lbd;
  lbd.Serve([](const json& request) {
    return protocol::EncodeError(
        IdOf(request), Status(ErrorCode::kResourceNotFound, "lb-deadbeef does not exist"));
  });
  const Invocation invocation = MustParse("lb show lb-deadbeef");
  const Outcome outcome =
      Present(invocation, CallOnce(lbd.path(), invocation.request.cmd, invocation.request.args));
  EXPECT_EQ(outcome.exit_code, kExitRefused);
  EXPECT_EQ(outcome.err, "lbctl: ResourceNotFound: lb-deadbeef does not exist\n");
}

TEST(ClientTest, RefusalWithNullIdIsStillTheDaemonsAnswer) {
  FakeLbd lbd;  // what lbd sends when it is at its connection limit
  lbd.Serve([](const json&) {
    return protocol::EncodeError(std::nullopt,
                                 Status(ErrorCode::kUnavailable, "too many connections (64)"));
  });
  const Result<Answer> answer = CallOnce(lbd.path(), "status", json::object());
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer->status().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(Present(MustParse("status"), answer).exit_code, kExitRefused);
}

TEST(ClientTest, DaemonMalformedRequestErrorIsARefusal) {
  FakeLbd lbd;
  lbd.Serve([](const json& request) {
    return protocol::EncodeError(IdOf(request),
                                 Status(ErrorCode::kMalformedRequest, "malformed request: x"));
  });
  const Result<Answer> answer = CallOnce(lbd.path(), "status", json::object());
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer->status().code(), ErrorCode::kMalformedRequest);
}

TEST(ClientTest, AnswerSplitAcrossWritesIsReassembled) {
  FakeLbd lbd;
  lbd.Serve(
      [](const json& request) {
        return OkLine(IdOf(request), {{"lbs", json::array({{{"id", std::string(20000, 'x')}}})}});
      },
      1, /*chunk=*/4096);
  const Result<Answer> answer = CallOnce(lbd.path(), "lb.list", json::object());
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  ASSERT_TRUE(answer->ok());
  EXPECT_EQ((**answer)["lbs"][0]["id"].get<std::string>().size(), 20000u);
}

struct BadAnswerCase {
  const char* name;
  FakeLbd::Reply reply;
  const char* mentions;
};

class ClientBadAnswerTest : public ::testing::TestWithParam<BadAnswerCase> {};

TEST_P(ClientBadAnswerTest, ExitsTwo) {
  FakeLbd lbd;
  lbd.Serve(GetParam().reply);
  const Result<Answer> answer =
      CallOnce(lbd.path(), "status", json::object(), std::chrono::milliseconds(300));
  ASSERT_FALSE(answer.ok());
  const Outcome outcome = Present(MustParse("status"), answer);
  EXPECT_EQ(outcome.exit_code, kExitUsage);
  EXPECT_THAT(outcome.err, AllOf(StartsWith("lbctl: cannot reach lbd at " + lbd.path() + ": "),
                                 HasSubstr(GetParam().mentions)));
  EXPECT_EQ(outcome.out, "");
}

INSTANTIATE_TEST_SUITE_P(
    Answers, ClientBadAnswerTest,
    ::testing::Values(
        BadAnswerCase{"Garbage", [](const json&) { return std::string("hello\n"); }, "garbled"},
        BadAnswerCase{"NotAResponse",
                      [](const json& r) {
                        return json({{"v", 1}, {"id", IdOf(r)}}).dump() + "\n";
                      },
                      "garbled"},
        BadAnswerCase{"WrongId", [](const json& r) { return OkLine(IdOf(r) + 1, json::object()); },
                      "instead of"},
        BadAnswerCase{"SuccessWithNullId",
                      [](const json&) { return protocol::EncodeResult(std::nullopt, {}); }, "null"},
        BadAnswerCase{"Silence", [](const json&) { return std::string(); }, "no answer within"},
        BadAnswerCase{"HalfALine", [](const json&) { return std::string("{\"v\": 1, "); },
                      "no answer within"},
        BadAnswerCase{"HangUp",
                      [](const json&) -> std::optional<std::string> { return std::nullopt; },
                      "connection closed before the answer"}),
    [](const ::testing::TestParamInfo<BadAnswerCase>& param) { return param.param.name; });

TEST(ClientTest, UnreachableSocketExitsTwo) {
  char pattern[] = "/tmp/lbctl-test-XXXXXX";
  const std::string dir = mkdtemp(pattern);
  const std::string path = dir + "/absent.sock";
  const Result<Answer> answer = CallOnce(path, "status", json::object());
  ASSERT_FALSE(answer.ok());
  const Outcome outcome = Present(MustParse("status --json"), answer);
  EXPECT_EQ(outcome.exit_code, kExitUsage);
  EXPECT_EQ(outcome.err,
            "lbctl: cannot reach lbd at " + path + ": " + std::strerror(ENOENT) + "\n");
  EXPECT_EQ(outcome.out, "");

  // A socket file nobody listens on.
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string stale = dir + "/stale.sock";
  std::strncpy(address.sun_path, stale.c_str(), sizeof(address.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  const Result<Answer> refused = CallOnce(stale, "status", json::object());
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr(std::strerror(ECONNREFUSED)));
  close(fd);
  unlink(stale.c_str());
  rmdir(dir.c_str());

  const Result<Answer> too_long = CallOnce("/tmp/" + std::string(200, 'x'), "status", {});
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(Present(MustParse("status"), too_long).exit_code, kExitUsage);
}

}  // namespace
}  // namespace fulcrum::cli
