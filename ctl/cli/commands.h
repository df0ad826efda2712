// lbctl's commands: argv in, a protocol request out; a result in, text for people out.
//
// Everything here is pure (no sockets, no environment, no clock) so that the whole command
// surface is testable as data. main.cc does the I/O around it.
//
// lbctl checks syntax only: that an integer is a decimal integer, that an enum word is one
// of its words, that required arguments are present. Ranges, existence and ADDR:PORT shapes
// are the daemon's to judge, so that there is one set of rules and one set of messages.
// Options the user did not give are left out of the request, so that the daemon applies its
// own defaults (docs/ctl-protocol.md).
//
// CLI11 reports parse errors by throwing; Parse catches them at its boundary and returns them
// as a failed Result, so nothing outside commands.cc sees an exception.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ctl_protocol.h"
#include "common/status.h"
#include "ctl/cli/client.h"

namespace fulcrum::cli {

// Exit statuses (BRIEF §1).
inline constexpr int kExitOk = 0;
inline constexpr int kExitRefused = 1;  // the daemon refused the request
inline constexpr int kExitUsage = 2;    // bad command line, or no usable answer from the daemon

inline constexpr char kDefaultSocket[] = "/run/lbd/lbd.sock";
inline constexpr char kSocketEnv[] = "LBD_SOCKET";
inline constexpr std::chrono::milliseconds kDefaultTimeout{15000};

// How a successful result is shown without --json.
enum class View {
  kStatus,
  kCreated,  // the new id alone
  kLbList,
  kLbShow,
  kLbDeleted,
  kGroupList,
  kGroupShow,
  kGroupDeleted,
  kAclList,
  kAclShow,
  kAclDeleted,
  kBackendAdded,
  kWeightSet,
  kBackendRemoved,
  kListenerList,
  kListenerShow,
  kListenerModified,
  kListenerDeleted,
  kStats,
  kConnList,
  kHealthSet,
};

struct WatchOptions {
  bool enabled = false;
  std::chrono::milliseconds interval{1000};
  std::optional<std::uint64_t> count;  // rounds; none: until SIGINT
};

struct Invocation {
  protocol::Request request;  // id is left 0: the Client numbers requests
  View view = View::kStatus;
  bool json = false;
  std::optional<std::string> socket;  // --socket, if given
  std::chrono::milliseconds timeout = kDefaultTimeout;
  WatchOptions watch;
  // Set for --help and --version: print this on stdout, exit 0, send nothing.
  std::optional<std::string> info;
};

// Parses the arguments after the program name. A failed Result is a usage error (exit 2);
// its message is ready for stderr and ends with a hint on getting help.
Result<Invocation> Parse(const std::vector<std::string>& args);

// --socket wins, then $LBD_SOCKET (when set and non-empty), then the default.
std::string ResolveSocketPath(const std::optional<std::string>& flag, const char* env_value);

// The human form of a successful result, ending in '\n'. Fields missing from `result` show
// as "-": the text degrades, it never fails.
std::string Render(const Invocation& invocation, const nlohmann::json& result);

// What lbctl prints and returns for one answer (or for the failure to get one).
struct Outcome {
  int exit_code = kExitOk;
  std::string out;
  std::string err;
};
Outcome Present(const Invocation& invocation, const Result<Answer>& answer);

}  // namespace fulcrum::cli
