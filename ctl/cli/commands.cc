#include "ctl/cli/commands.h"

#include <charconv>
#include <cmath>
#include <deque>
#include <map>
#include <sstream>
#include <utility>

#include <CLI/CLI.hpp>

namespace fulcrum::cli {
namespace {

using nlohmann::json;

// How a command-line value becomes a protocol argument.
enum class ArgKind {
  kString,
  kInteger,   // a JSON number: the protocol types its arguments exactly
  kCodeList,  // "2xx,3xx" -> ["2xx", "3xx"]
  kList,      // words given one by one or comma-separated ("A B", "A,B") -> ["A", "B"]
};

// Where the argument goes in the request's args.
enum class ArgTarget { kArgs, kHealthCheck };

struct ArgSpec {
  CLI::Option* option;
  std::string key;
  ArgKind kind;
  ArgTarget target;
  const std::string* value;
};

// A command that sends a request: `lbctl lb create`, `lbctl stats`...
struct Leaf {
  std::string cmd;
  View view;
  std::vector<ArgSpec> args;
};

std::optional<std::int64_t> ParseDecimal(const std::string& text) {
  std::int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value, 10);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return std::nullopt;
  }
  return value;
}

// CLI11 converts integers with strtoll(..., 0), which reads "010" as 8 and "0x50" as 80;
// an operator typing a port means decimal.
CLI::Validator DecimalInteger() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        return ParseDecimal(text) ? "" : "'" + text + "' is not a decimal integer";
      },
      "", "DecimalInteger");
}

CLI::Validator PositiveInteger() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const std::optional<std::int64_t> value = ParseDecimal(text);
        return value && *value > 0 ? "" : "'" + text + "' is not a positive decimal integer";
      },
      "", "PositiveInteger");
}

// Restricts an option to `words`, shown in help as "a|b|c".
CLI::Option* OneOf(CLI::Option* option, const std::vector<std::string>& words) {
  std::string shown;
  for (const std::string& word : words) {
    shown += (shown.empty() ? "" : "|") + word;
  }
  return option->check(CLI::IsMember(words).description(""))->type_name(shown);
}

std::vector<std::string> SplitCodes(const std::string& text) {
  std::vector<std::string> codes;
  std::istringstream stream(text);
  for (std::string code; std::getline(stream, code, ',');) {
    const auto first = code.find_first_not_of(' ');
    const auto last = code.find_last_not_of(' ');
    codes.push_back(first == std::string::npos ? "" : code.substr(first, last - first + 1));
  }
  return codes;
}

json ArgValue(const ArgSpec& spec) {
  switch (spec.kind) {
    case ArgKind::kInteger:
      return *ParseDecimal(*spec.value);  // the validator has accepted it
    case ArgKind::kCodeList:
    case ArgKind::kList:
      return SplitCodes(*spec.value);
    case ArgKind::kString:
      break;
  }
  return *spec.value;
}

std::chrono::milliseconds SecondsToMs(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000.0)));
}

// Owns the CLI11 app and the storage its options write into.
class CommandLine {
 public:
  CommandLine();
  Result<Invocation> Parse(const std::vector<std::string>& args);

 private:
  CLI::App* Group(const std::string& name, const std::string& help);
  CLI::App* AddLeaf(CLI::App* parent, const std::string& name, const std::string& help,
                    std::string cmd, View view);
  // Binds an option ("--port") or positional ("LB") of `leaf` to protocol argument `key`.
  CLI::Option* Arg(CLI::App* leaf, const std::string& name, std::string key, ArgKind kind,
                   const std::string& help, ArgTarget target = ArgTarget::kArgs);
  void AddListenerOptions(CLI::App* leaf);
  void AddStatus();
  void AddLb();
  void AddGroup();
  void AddAcl();
  void AddListener();
  void AddStats();
  void AddConn();
  void AddBackend();

  std::string CommandPath() const;
  const CLI::App& Deepest() const;
  std::optional<std::string> UnknownCommand() const;
  Invocation Build(const Leaf& leaf) const;

  CLI::App app_;
  std::deque<std::string> storage_;  // deque: stable addresses for CLI11's bindings
  std::map<const CLI::App*, Leaf> leaves_;
  bool json_ = false;
  std::string socket_;
  double timeout_s_ = std::chrono::duration<double>(kDefaultTimeout).count();
  CLI::Option* socket_option_ = nullptr;
  bool watch_ = false;
  double interval_s_ = 1.0;
  std::string count_;
  CLI::Option* interval_option_ = nullptr;
  CLI::Option* count_option_ = nullptr;
  std::vector<std::pair<std::string, const CLI::Option*>> fixed_options_;
};

CommandLine::CommandLine()
    : app_("Command-line client of the Fulcrum load balancer daemon lbd", "lbctl") {
  app_.fallthrough();  // inherited: global options are accepted after the subcommands
  app_.require_subcommand(1);
  app_.set_version_flag("--version", std::string("lbctl ") + FULCRUM_VERSION +
                                         " (control protocol v" +
                                         std::to_string(protocol::kVersion) + ")");
  app_.add_flag("--json", json_, "Print the raw result (or error) as JSON");
  socket_option_ = app_.add_option("--socket", socket_,
                                   "lbd's socket (default: $LBD_SOCKET, else /run/lbd/lbd.sock)")
                       ->type_name("PATH");
  app_.add_option("--timeout", timeout_s_, "Seconds to wait for lbd (connect, then answer)")
      ->type_name("SECONDS")
      ->check(CLI::Range(0.001, 86400.0).description(""));
  // Inherited by every subcommand, whose own help does not list the global options.
  app_.footer(
      "Global options (anywhere on the line): --json, --socket PATH, --timeout SECONDS.\n"
      "Exit status: 0 success, 1 refused by lbd (the message says why), 2 usage error or lbd "
      "unreachable.");
  AddStatus();
  AddLb();
  AddGroup();
  AddAcl();
  AddListener();
  AddStats();
  AddConn();
  AddBackend();
}

CLI::App* CommandLine::Group(const std::string& name, const std::string& help) {
  CLI::App* group = app_.add_subcommand(name, help);
  group->require_subcommand(1);
  return group;
}

CLI::App* CommandLine::AddLeaf(CLI::App* parent, const std::string& name, const std::string& help,
                               std::string cmd, View view) {
  CLI::App* leaf = parent->add_subcommand(name, help);
  leaves_.emplace(leaf, Leaf{.cmd = std::move(cmd), .view = view, .args = {}});
  return leaf;
}

CLI::Option* CommandLine::Arg(CLI::App* leaf, const std::string& name, std::string key,
                              ArgKind kind, const std::string& help, ArgTarget target) {
  std::string& value = storage_.emplace_back();
  CLI::Option* option = leaf->add_option(name, value, help);
  if (kind == ArgKind::kInteger) {
    option->check(DecimalInteger())->type_name("N");
  } else if (kind == ArgKind::kList) {
    // Every word given, joined with commas, split again when the request is built.
    option->expected(-1)->delimiter(',')->multi_option_policy(CLI::MultiOptionPolicy::Join);
  }
  if (kind != ArgKind::kInteger && name.front() != '-') {
    option->type_name("");  // the positional's name says it all: "LB", "ADDR:PORT"
  }
  leaves_.at(leaf).args.push_back(ArgSpec{
      .option = option, .key = std::move(key), .kind = kind, .target = target, .value = &value});
  return option;
}

void CommandLine::AddListenerOptions(CLI::App* leaf) {
  using K = ArgKind;
  constexpr ArgTarget kHc = ArgTarget::kHealthCheck;
  OneOf(Arg(leaf, "--scheduler", "scheduler", K::kString, "Scheduler (default wrr)"),
        {"wrr", "wlc", "rr", "sh", "maglev"});
  OneOf(Arg(leaf, "--mode", "mode", K::kString, "Forwarding mode (default fnat)"),
        {"fnat", "dnat"});
  Arg(leaf, "--idle-timeout", "idle_timeout", K::kInteger,
      "Idle timeout, s (default 900 tcp/http/https, 300 udp)")
      ->type_name("SECONDS");
  Arg(leaf, "--persistence", "persistence", K::kInteger,
      "Source-IP persistence, s (0 off, or 30..3600)")
      ->type_name("SECONDS");
  OneOf(Arg(leaf, "--client-ip", "client_ip", K::kString,
            "Tell tcp fnat backends the client's address (default off)"),
        {"off", "toa", "proxy-v1", "proxy-v2"});
  Arg(leaf, "--acl", "acl", K::kString, "Access control list id, or off (default none)")
      ->type_name("ACL");
  OneOf(Arg(leaf, "--acl-type", "acl_type", K::kString,
            "allow: only the list's clients; deny: all but them"),
        {"allow", "deny"});
  OneOf(Arg(leaf, "--on-backend-down", "on_backend_down", K::kString,
            "Existing connections of a backend marked down (default reset tcp/http/https, "
            "reschedule udp)"),
        {"keep", "reset", "reschedule"});
  OneOf(Arg(leaf, "--hc-type", "type", K::kString, "Health check type", kHc),
        {"tcp", "http", "udp", "none"});
  Arg(leaf, "--hc-port", "port", K::kInteger, "Health check port (0: the backend's)", kHc)
      ->type_name("PORT");
  Arg(leaf, "--hc-interval", "interval", K::kInteger, "Seconds between probes (default 5)", kHc)
      ->type_name("SECONDS");
  Arg(leaf, "--hc-timeout", "timeout", K::kInteger, "Probe timeout, s (default 2)", kHc)
      ->type_name("SECONDS");
  Arg(leaf, "--hc-rise", "rise", K::kInteger, "Successes to mark up (default 3)", kHc);
  Arg(leaf, "--hc-fall", "fall", K::kInteger, "Failures to mark down (default 3)", kHc);
  Arg(leaf, "--hc-path", "path", K::kString, "http check: request path (default /)", kHc)
      ->type_name("PATH");
  Arg(leaf, "--hc-host", "host", K::kString, "http check: Host header", kHc)->type_name("HOST");
  Arg(leaf, "--hc-codes", "codes", K::kCodeList, "http check: codes, e.g. 2xx,3xx", kHc)
      ->type_name("CODES");
  Arg(leaf, "--hc-send", "send", K::kString, "udp check: payload to send, hex", kHc)
      ->type_name("HEX");
  Arg(leaf, "--hc-expect", "expect", K::kString, "udp check: expected reply prefix, hex", kHc)
      ->type_name("HEX");
}

void CommandLine::AddStatus() {
  AddLeaf(&app_, "status", "Show the daemon: version, uptime, ports, workers", "status",
          View::kStatus);
}

void CommandLine::AddLb() {
  CLI::App* lb = Group("lb", "Load balancers");
  CLI::App* create =
      AddLeaf(lb, "create", "Create a load balancer; prints its id", "lb.create", View::kCreated);
  Arg(create, "--name", "name", ArgKind::kString, "Name ([A-Za-z0-9._-], 1..64)")
      ->required()
      ->type_name("NAME");
  Arg(create, "--vip", "vip", ArgKind::kString, "Virtual IP address")
      ->required()
      ->type_name("ADDR");
  AddLeaf(lb, "list", "List load balancers", "lb.list", View::kLbList);
  CLI::App* show = AddLeaf(lb, "show", "Show a load balancer with its listeners and groups",
                           "lb.show", View::kLbShow);
  Arg(show, "LB", "id", ArgKind::kString, "Load balancer id")->required();
  CLI::App* remove = AddLeaf(lb, "delete", "Delete a load balancer, its listeners and groups",
                             "lb.delete", View::kLbDeleted);
  Arg(remove, "LB", "id", ArgKind::kString, "Load balancer id")->required();
}

void CommandLine::AddGroup() {
  CLI::App* group = Group("group", "Server groups and their backends");
  CLI::App* create = AddLeaf(group, "create", "Create a server group; prints its id",
                             "group.create", View::kCreated);
  Arg(create, "LB", "lb", ArgKind::kString, "Load balancer id")->required();
  Arg(create, "--name", "name", ArgKind::kString, "Name ([A-Za-z0-9._-], 1..64)")
      ->required()
      ->type_name("NAME");

  CLI::App* add =
      AddLeaf(group, "add-backend", "Add a backend", "group.add_backend", View::kBackendAdded);
  Arg(add, "GROUP", "group", ArgKind::kString, "Server group id")->required();
  Arg(add, "ADDR:PORT", "addr", ArgKind::kString, "Backend address")->required();
  Arg(add, "--weight", "weight", ArgKind::kInteger, "Weight 0..100 (default 10; 0 drains)");

  CLI::App* set = AddLeaf(group, "set-weight", "Change a backend's weight", "group.set_weight",
                          View::kWeightSet);
  Arg(set, "GROUP", "group", ArgKind::kString, "Server group id")->required();
  Arg(set, "ADDR:PORT", "addr", ArgKind::kString, "Backend address")->required();
  Arg(set, "N", "weight", ArgKind::kInteger, "Weight 0..100 (0 drains)")->required();

  CLI::App* remove = AddLeaf(group, "remove-backend", "Remove a backend", "group.remove_backend",
                             View::kBackendRemoved);
  Arg(remove, "GROUP", "group", ArgKind::kString, "Server group id")->required();
  Arg(remove, "ADDR:PORT", "addr", ArgKind::kString, "Backend address")->required();

  CLI::App* list = AddLeaf(group, "list", "List a load balancer's server groups", "group.list",
                           View::kGroupList);
  Arg(list, "LB", "lb", ArgKind::kString, "Load balancer id")->required();
  CLI::App* show = AddLeaf(group, "show", "Show a group: backends, weights, health, connections",
                           "group.show", View::kGroupShow);
  Arg(show, "GROUP", "id", ArgKind::kString, "Server group id")->required();
  CLI::App* remove_group = AddLeaf(group, "delete", "Delete a server group no listener uses",
                                   "group.delete", View::kGroupDeleted);
  Arg(remove_group, "GROUP", "id", ArgKind::kString, "Server group id")->required();
}

void CommandLine::AddAcl() {
  CLI::App* acl = Group("acl", "Access control lists: client networks a listener allows or denies");
  CLI::App* create = AddLeaf(acl, "create", "Create an access control list; prints its id",
                             "acl.create", View::kCreated);
  Arg(create, "LB", "lb", ArgKind::kString, "Load balancer id")->required();
  Arg(create, "--name", "name", ArgKind::kString, "Name ([A-Za-z0-9._-], 1..64)")
      ->required()
      ->type_name("NAME");
  Arg(create, "--entries", "entries", ArgKind::kList,
      "Client networks, comma-separated (198.18.0.0/24,2001:db8::/32; an address alone is /32 "
      "or /128)")
      ->type_name("CIDR,...");
  CLI::App* add = AddLeaf(acl, "add", "Add entries to a list", "acl.add", View::kAclShow);
  Arg(add, "ACL", "id", ArgKind::kString, "Access control list id")->required();
  Arg(add, "CIDR", "entries", ArgKind::kList, "Client networks to add")->required();
  CLI::App* remove =
      AddLeaf(acl, "remove", "Remove entries from a list", "acl.remove", View::kAclShow);
  Arg(remove, "ACL", "id", ArgKind::kString, "Access control list id")->required();
  Arg(remove, "CIDR", "entries", ArgKind::kList, "Client networks to remove")->required();
  CLI::App* list = AddLeaf(acl, "list", "List a load balancer's access control lists", "acl.list",
                           View::kAclList);
  Arg(list, "LB", "lb", ArgKind::kString, "Load balancer id")->required();
  CLI::App* show =
      AddLeaf(acl, "show", "Show a list: its entries and listeners", "acl.show", View::kAclShow);
  Arg(show, "ACL", "id", ArgKind::kString, "Access control list id")->required();
  CLI::App* remove_acl =
      AddLeaf(acl, "delete", "Delete a list no listener uses", "acl.delete", View::kAclDeleted);
  Arg(remove_acl, "ACL", "id", ArgKind::kString, "Access control list id")->required();
}

void CommandLine::AddListener() {
  CLI::App* listener = Group("listener", "Listeners (protocol and port on a load balancer)");
  CLI::App* create = AddLeaf(listener, "create", "Create a listener; prints its id",
                             "listener.create", View::kCreated);
  Arg(create, "LB", "lb", ArgKind::kString, "Load balancer id")->required();
  OneOf(Arg(create, "--protocol", "protocol", ArgKind::kString, "Protocol")->required(),
        {"tcp", "udp", "http", "https"});
  Arg(create, "--port", "port", ArgKind::kInteger, "Frontend port")->required()->type_name("PORT");
  Arg(create, "--group", "group", ArgKind::kString, "Default server group id")
      ->required()
      ->type_name("GROUP");
  AddListenerOptions(create);

  CLI::App* modify = AddLeaf(listener, "modify", "Change a listener's options", "listener.modify",
                             View::kListenerModified);
  // Protocol and port are fixed at creation. Modify does not offer them (they are hidden and
  // not sent); it catches them only to say why they are a usage error.
  for (const char* fixed : {"--protocol", "--port"}) {
    fixed_options_.emplace_back(fixed,
                                modify->add_option(fixed, storage_.emplace_back())->group(""));
  }
  Arg(modify, "LSN", "id", ArgKind::kString, "Listener id")->required();
  Arg(modify, "--group", "group", ArgKind::kString, "Default server group id")->type_name("GROUP");
  AddListenerOptions(modify);

  CLI::App* list = AddLeaf(listener, "list", "List a load balancer's listeners", "listener.list",
                           View::kListenerList);
  Arg(list, "LB", "lb", ArgKind::kString, "Load balancer id")->required();
  CLI::App* show =
      AddLeaf(listener, "show", "Show a listener", "listener.show", View::kListenerShow);
  Arg(show, "LSN", "id", ArgKind::kString, "Listener id")->required();
  CLI::App* remove =
      AddLeaf(listener, "delete", "Delete a listener", "listener.delete", View::kListenerDeleted);
  Arg(remove, "LSN", "id", ArgKind::kString, "Listener id")->required();
}

void CommandLine::AddStats() {
  CLI::App* stats = AddLeaf(&app_, "stats", "Traffic, rates and drops (all, or one LB/listener)",
                            "stats", View::kStats);
  Arg(stats, "TARGET", "target", ArgKind::kString, "A load balancer or listener id");
  stats->add_flag("--watch", watch_, "Repeat until interrupted (Ctrl-C)");
  interval_option_ =
      stats->add_option("--interval", interval_s_, "Seconds between rounds (default 1)")
          ->type_name("SECONDS")
          ->check(CLI::Range(0.1, 86400.0).description(""));
  count_option_ = stats->add_option("--count", count_, "Stop after N rounds (implies --watch)")
                      ->check(PositiveInteger())
                      ->type_name("N");
}

void CommandLine::AddConn() {
  CLI::App* conn = Group("conn", "Connections in the workers' tables");
  CLI::App* list = AddLeaf(conn, "list", "List connections", "conn.list", View::kConnList);
  Arg(list, "--listener", "listener", ArgKind::kString, "Only this listener's connections")
      ->type_name("LSN");
  Arg(list, "--limit", "limit", ArgKind::kInteger, "At most N connections (default 1000)");
}

void CommandLine::AddBackend() {
  CLI::App* backend = Group("backend", "Backends as seen by one listener");
  CLI::App* set = AddLeaf(backend, "set-health", "Report a backend up or down (the prober's call)",
                          "backend.set_health", View::kHealthSet);
  Arg(set, "LSN", "listener", ArgKind::kString, "Listener id")->required();
  Arg(set, "ADDR:PORT", "addr", ArgKind::kString, "Backend address")->required();
  OneOf(Arg(set, "STATE", "state", ArgKind::kString, "up or down")->required(), {"up", "down"});
  Arg(set, "--reason", "reason", ArgKind::kString, "Why (the prober's text)")->type_name("TEXT");
}

// The last subcommand selected so far: a leaf after a successful parse.
const CLI::App& CommandLine::Deepest() const {
  const CLI::App* node = &app_;
  while (!node->get_subcommands().empty()) {
    node = node->get_subcommands().front();
  }
  return *node;
}

// CLI11 reports a misspelt command as "A subcommand is required"; name the word instead.
std::optional<std::string> CommandLine::UnknownCommand() const {
  if (leaves_.contains(&Deepest())) {
    return std::nullopt;
  }
  for (const std::string& word : app_.remaining(/*recurse=*/true)) {
    if (!word.starts_with("-")) {
      return "unknown command '" + word + "'";
    }
  }
  return std::nullopt;
}

// "lbctl listener modify": the subcommands selected so far, for help hints.
std::string CommandLine::CommandPath() const {
  std::string path = app_.get_name();
  for (const CLI::App* node = &app_; !node->get_subcommands().empty();) {
    node = node->get_subcommands().front();
    path += " " + node->get_name();
  }
  return path;
}

Invocation CommandLine::Build(const Leaf& leaf) const {
  Invocation invocation;
  invocation.request.cmd = leaf.cmd;
  invocation.view = leaf.view;
  for (const ArgSpec& spec : leaf.args) {
    if (spec.option->count() == 0) {
      continue;  // absent: the daemon applies its default
    }
    json& target = spec.target == ArgTarget::kHealthCheck ? invocation.request.args["health_check"]
                                                          : invocation.request.args;
    target[spec.key] = ArgValue(spec);
  }
  invocation.json = json_;
  if (socket_option_->count() > 0) {
    invocation.socket = socket_;
  }
  invocation.timeout = SecondsToMs(timeout_s_);
  invocation.watch.enabled = watch_ || interval_option_->count() > 0 || count_option_->count() > 0;
  invocation.watch.interval = SecondsToMs(interval_s_);
  if (count_option_->count() > 0) {
    invocation.watch.count = static_cast<std::uint64_t>(*ParseDecimal(count_));
  }
  return invocation;
}

Result<Invocation> CommandLine::Parse(const std::vector<std::string>& args) {
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 pops from the back
  try {
    app_.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    std::ostringstream out, err;
    app_.exit(e, out, err);
    return Invocation{.info = out.str()};
  } catch (const CLI::CallForVersion& e) {
    return Invocation{.info = std::string(e.what()) + "\n"};
  } catch (const CLI::ParseError& e) {
    return Error(ErrorCode::kInvalidParameter, "lbctl: {}\nRun '{} --help' for usage.",
                 UnknownCommand().value_or(e.what()), CommandPath());
  }
  for (const auto& [name, fixed] : fixed_options_) {
    if (fixed->count() > 0) {
      return Error(ErrorCode::kInvalidParameter,
                   "lbctl: {} cannot be modified: a listener's protocol and port are fixed at "
                   "creation\nRun '{} --help' for usage.",
                   name, CommandPath());
    }
  }
  auto leaf = leaves_.find(&Deepest());
  if (leaf == leaves_.end()) {
    return Error(ErrorCode::kInvalidParameter,
                 "lbctl: a command is required\nRun '{} --help' for usage.", CommandPath());
  }
  return Build(leaf->second);
}

std::string PrettyJson(const json& value) {
  return value.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace

Result<Invocation> Parse(const std::vector<std::string>& args) {
  CommandLine command_line;
  return command_line.Parse(args);
}

std::string ResolveSocketPath(const std::optional<std::string>& flag, const char* env_value) {
  if (flag) {
    return *flag;
  }
  if (env_value != nullptr && *env_value != '\0') {
    return env_value;
  }
  return kDefaultSocket;
}

Outcome Present(const Invocation& invocation, const Result<Answer>& answer) {
  if (!answer.ok()) {
    return {
        .exit_code = kExitUsage, .out = "", .err = "lbctl: " + answer.status().message() + "\n"};
  }
  const Answer& reply = *answer;
  if (!reply.ok()) {
    const Status& refusal = reply.status();
    if (invocation.json) {
      const json error = {{"code", ErrorCodeName(refusal.code())}, {"message", refusal.message()}};
      return {.exit_code = kExitRefused, .out = PrettyJson(error), .err = ""};
    }
    return {.exit_code = kExitRefused, .out = "", .err = "lbctl: " + refusal.ToString() + "\n"};
  }
  return {.exit_code = kExitOk,
          .out = invocation.json ? PrettyJson(*reply) : Render(invocation, *reply),
          .err = ""};
}

}  // namespace fulcrum::cli
