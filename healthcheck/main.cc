// lb-healthd: the out-of-band health prober (BRIEF §2, docs/health-checking.md).
//
//   lb-healthd [--socket PATH] [--source ADDR]... [--max-in-flight N] [--log-level L] [--once]
//
// --source may be given once per address family (e.g. --source 198.18.1.254 --source
// 2001:db8:1::fe): each probe is bound to the source of its backend's family, and a family
// without one is left to the kernel's choice.
//
// Runs until SIGTERM or SIGINT (exit 0). With --once: probes every target until each is
// decided, reports to lbd, prints a table and exits 0 (1 when some target stayed undecided or
// a report was refused, 2 when lbd could not be reached or on a usage error).
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/log.h"
#include "common/net_addr.h"
#include "healthcheck/agent.h"
#include "healthcheck/event_loop.h"
#include "healthcheck/hc_logger.h"
#include "healthcheck/lbd_client.h"
#include "healthcheck/prober.h"

namespace {

using fulcrum::Result;
using fulcrum::Status;
namespace hc = fulcrum::hc;

constexpr int kExitRefused = 1;
constexpr int kExitUsage = 2;
constexpr const char* kDefaultSocket = "/run/lbd/lbd.sock";
// Descriptors beyond the probes: the lbd socket, epoll, signalfd, stdio, slack.
constexpr rlim_t kSpareDescriptors = 64;

struct Flags {
  std::string socket;
  std::vector<std::string> sources;
  std::size_t max_in_flight = 1024;
  std::string log_level = "info";
  bool once = false;
};

// Stops the loop on SIGTERM or SIGINT, read from a signalfd so that no handler races the loop.
class SignalWatcher : public hc::EventLoop::Handler {
 public:
  static Result<std::unique_ptr<SignalWatcher>> Create(hc::EventLoop& loop) {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    if (sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) {
      return fulcrum::Error(fulcrum::ErrorCode::kInternal, "sigprocmask: {}", std::strerror(errno));
    }
    const int fd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
      return fulcrum::Error(fulcrum::ErrorCode::kInternal, "signalfd: {}", std::strerror(errno));
    }
    std::unique_ptr<SignalWatcher> watcher(new SignalWatcher(loop, fd));
    loop.AddHandler(watcher.get());
    const Status watched = loop.Watch(fd, EPOLLIN, watcher.get(), 0);
    if (!watched.ok()) {
      return watched;
    }
    return watcher;
  }
  ~SignalWatcher() override {
    loop_.RemoveHandler(this);
    close(fd_);
  }

  bool stopped() const { return signal_ != 0; }
  int signal() const { return signal_; }

  void OnIo(std::uint64_t, std::uint32_t) override {
    signalfd_siginfo info{};
    while (read(fd_, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
      signal_ = static_cast<int>(info.ssi_signo);
    }
  }
  std::optional<hc::TimePoint> NextDeadline() const override { return std::nullopt; }
  void OnTime(hc::TimePoint) override {}

 private:
  SignalWatcher(hc::EventLoop& loop, int fd) : loop_(loop), fd_(fd) {}

  hc::EventLoop& loop_;
  int fd_;
  int signal_ = 0;
};

// Raises the descriptor limit to what max_in_flight needs; returns the bound that fits.
std::size_t FitDescriptorLimit(std::size_t max_in_flight) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return max_in_flight;
  }
  const rlim_t wanted = static_cast<rlim_t>(max_in_flight) + kSpareDescriptors;
  if (limit.rlim_cur < wanted) {
    limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur < wanted) {
    const std::size_t fits =
        limit.rlim_cur > kSpareDescriptors * 2 ? limit.rlim_cur - kSpareDescriptors : 16;
    hc::HcLog().Warn("--max-in-flight {} needs {} descriptors, the limit is {}: using {}",
                     max_in_flight, wanted, limit.rlim_cur, fits);
    return fits;
  }
  return max_in_flight;
}

// At most one --source per address family.
Result<hc::ProbeSources> ParseSources(const std::vector<std::string>& texts) {
  std::vector<fulcrum::IpAddress> addrs;
  for (const std::string& text : texts) {
    Result<fulcrum::IpAddress> parsed = fulcrum::IpAddress::Parse(text);
    if (!parsed.ok()) {
      return parsed.status();
    }
    addrs.push_back(*parsed);
  }
  return hc::ProbeSources::Create(addrs);
}

int Run(const Flags& flags) {
  Result<hc::ProbeSources> sources = ParseSources(flags.sources);
  if (!sources.ok()) {
    std::cerr << "lb-healthd: --source: " << sources.status().message() << "\n";
    return kExitUsage;
  }
  Result<std::unique_ptr<hc::EventLoop>> loop = hc::EventLoop::Create();
  if (!loop.ok()) {
    std::cerr << "lb-healthd: " << loop.status().message() << "\n";
    return kExitRefused;
  }
  Result<std::unique_ptr<SignalWatcher>> signals = SignalWatcher::Create(**loop);
  if (!signals.ok()) {
    std::cerr << "lb-healthd: " << signals.status().message() << "\n";
    return kExitRefused;
  }
  hc::ProberOptions prober_options;
  prober_options.max_in_flight = FitDescriptorLimit(flags.max_in_flight);
  prober_options.sources = *sources;
  prober_options.seed = std::random_device{}();
  prober_options.fresh_start = flags.once;
  std::unique_ptr<hc::Prober> prober = hc::Prober::Create(**loop, prober_options);
  hc::LbdClient lbd(**loop, flags.socket);
  hc::AgentOptions agent_options;
  agent_options.once = flags.once;
  hc::Agent agent(**loop, lbd, *prober, agent_options);

  hc::HcLog().Info("lb-healthd {} starting: lbd at {}, at most {} probes in flight, sources {}",
                   FULCRUM_VERSION, flags.socket, prober_options.max_in_flight,
                   prober_options.sources.ToString());
  while (!(*signals)->stopped() && !agent.done()) {
    Result<int> ran = (*loop)->RunOnce(std::chrono::seconds(1));
    if (!ran.ok()) {
      hc::HcLog().Error("{}", ran.status().message());
      return kExitRefused;
    }
  }
  if ((*signals)->stopped()) {
    hc::HcLog().Info("stopping on signal {}", (*signals)->signal());
    return 0;
  }
  if (agent.unreachable()) {
    std::cerr << "lb-healthd: " << agent.outcome().message() << "\n";
    return kExitUsage;
  }
  std::cout << hc::FormatTargetTable(prober->Targets()) << std::flush;
  if (!agent.outcome().ok()) {
    std::cerr << "lb-healthd: " << agent.outcome().message() << "\n";
    return kExitRefused;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  const char* env_socket = std::getenv("LBD_SOCKET");
  flags.socket = env_socket != nullptr && *env_socket != '\0' ? env_socket : kDefaultSocket;
  CLI::App app{"lb-healthd: probes lbd's backends and reports their health"};
  app.add_option(
      "--socket", flags.socket,
      "lbd's control socket (default $LBD_SOCKET or " + std::string(kDefaultSocket) + ")");
  app.add_option("--source", flags.sources,
                 "bind probes of backends of this address's family to it; once per family")
      ->allow_extra_args(false);
  app.add_option("--max-in-flight", flags.max_in_flight, "probes in flight at most")
      ->check(CLI::Range(1, 65536));
  app.add_option("--log-level", flags.log_level, "debug, info, warning or error");
  app.add_flag("--once", flags.once,
               "probe every target until decided, report, print a table and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : kExitUsage;
  }
  const std::optional<fulcrum::LogLevel> level = fulcrum::LogLevelFromName(flags.log_level);
  if (!level) {
    std::cerr << "lb-healthd: --log-level must be debug, info, warning or error\n";
    return kExitUsage;
  }
  fulcrum::SetDefaultLogLevel(*level);
  fulcrum::SetLogLevel("*", *level);
  signal(SIGPIPE, SIG_IGN);
  return Run(flags);
}
