// hc-scale: can one lb-healthd core keep 10,000 targets at a 1 s interval?
//
//   hc-scale [--targets N] [--seconds S] [--ports P] [--max-in-flight M] [--type tcp|http]
//
// A child process listens on P ports on 0.0.0.0 and accepts (tcp) or answers
// "HTTP/1.1 200 OK" (http). The parent runs the real Prober on its own event loop with N
// targets spread over 127.0.0.1.. (all of 127/8 reaches a 0.0.0.0 listener on Linux), so each
// target is a distinct 4-tuple. After one interval of warm-up (first probes are spread over
// it) it measures S seconds and prints probes/s and the CPU time the prober used
// (getrusage of the parent, which runs nothing else), and the server's CPU separately.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "common/log.h"
#include "healthcheck/event_loop.h"
#include "healthcheck/prober.h"

namespace {

namespace hc = fulcrum::hc;
using fulcrum::Result;

struct Flags {
  int targets = 10000;
  int seconds = 10;
  int ports = 4;
  std::size_t max_in_flight = 1024;
  std::string type = "tcp";
};

double CpuSeconds(const rusage& usage) {
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

int ListenAny(std::uint16_t* port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 4096) != 0) {
    std::perror("hc-scale: bind/listen");
    std::exit(1);
  }
  socklen_t length = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length);
  *port = ntohs(addr.sin_port);
  return fd;
}

// The child: accept everything; for http read the request and answer 200.
[[noreturn]] void Serve(const std::vector<int>& listeners, bool http) {
  const int epoll_fd = epoll_create1(0);
  for (const int fd : listeners) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = static_cast<std::uint64_t>(fd) | (std::uint64_t{1} << 32);
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
  }
  static constexpr char kReply[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  std::vector<epoll_event> events(256);
  for (;;) {
    const int n = epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()), -1);
    for (int i = 0; i < n; ++i) {
      const int fd = static_cast<int>(events[i].data.u64 & 0xffffffffu);
      if ((events[i].data.u64 >> 32) != 0) {
        for (int c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK); c >= 0;
             c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK)) {
          if (!http) {
            close(c);
            continue;
          }
          epoll_event event{};
          event.events = EPOLLIN;
          event.data.u64 = static_cast<std::uint64_t>(c);
          epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c, &event);
        }
        continue;
      }
      char buffer[2048];
      const ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
      if (got > 0) {
        (void)!send(fd, kReply, sizeof(kReply) - 1, MSG_NOSIGNAL);
      }
      close(fd);
    }
  }
}

std::vector<hc::Target> MakeTargets(const Flags& flags, const std::vector<std::uint16_t>& ports) {
  std::vector<hc::Target> targets;
  for (int i = 0; i < flags.targets; ++i) {
    hc::Target target;
    const std::uint32_t host = (127u << 24) + 1u + static_cast<std::uint32_t>(i);
    target.key.listener = fmt::format("lsn-{:08x}", i % flags.ports);
    target.key.backend.addr = fulcrum::IpAddress::V4(host);
    target.key.backend.port = ports[static_cast<std::size_t>(i % flags.ports)];
    target.check.type = flags.type == "http" ? fulcrum::model::HealthCheckType::kHttp
                                             : fulcrum::model::HealthCheckType::kTcp;
    target.check.interval = 1;
    target.check.timeout = 1;
    targets.push_back(target);
  }
  return targets;
}

void RaiseDescriptorLimit(std::size_t wanted) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < wanted) {
    limit.rlim_cur = std::min<rlim_t>(wanted, limit.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

void RunFor(hc::EventLoop& loop, std::chrono::seconds length) {
  const auto end = hc::Clock::now() + length;
  while (hc::Clock::now() < end) {
    Result<int> ran = loop.RunOnce(std::chrono::milliseconds(100));
    if (!ran.ok()) {
      std::fprintf(stderr, "hc-scale: %s\n", ran.status().message().c_str());
      std::exit(1);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  CLI::App app{"hc-scale: probes N loopback targets at a 1 s interval and reports the cost"};
  app.add_option("--targets", flags.targets)->check(CLI::Range(1, 16000000));
  app.add_option("--seconds", flags.seconds)->check(CLI::Range(1, 3600));
  app.add_option("--ports", flags.ports)->check(CLI::Range(1, 64));
  app.add_option("--max-in-flight", flags.max_in_flight)->check(CLI::Range(1, 65536));
  app.add_option("--type", flags.type)->check(CLI::IsMember({"tcp", "http"}));
  CLI11_PARSE(app, argc, argv);
  fulcrum::SetDefaultLogLevel(fulcrum::LogLevel::kWarning);
  fulcrum::SetLogLevel("*", fulcrum::LogLevel::kWarning);
  RaiseDescriptorLimit(flags.max_in_flight + 256);

  std::vector<int> listeners;
  std::vector<std::uint16_t> ports;
  for (int i = 0; i < flags.ports; ++i) {
    std::uint16_t port = 0;
    listeners.push_back(ListenAny(&port));
    ports.push_back(port);
  }
  const pid_t server = fork();
  if (server == 0) {
    Serve(listeners, flags.type == "http");
  }
  for (const int fd : listeners) {
    close(fd);
  }

  Result<std::unique_ptr<hc::EventLoop>> loop = hc::EventLoop::Create();
  if (!loop.ok()) {
    return 1;
  }
  hc::ProberOptions options;
  options.max_in_flight = flags.max_in_flight;
  options.seed = 1;
  std::unique_ptr<hc::Prober> prober = hc::Prober::Create(**loop, options);
  prober->SetTargets(MakeTargets(flags, ports), hc::Clock::now());

  RunFor(**loop, std::chrono::seconds(2));  // first probes spread over the first interval
  const hc::ProberStats before = prober->stats();
  rusage cpu_before{};
  getrusage(RUSAGE_SELF, &cpu_before);
  const auto start = hc::Clock::now();
  RunFor(**loop, std::chrono::seconds(flags.seconds));
  const double wall = std::chrono::duration<double>(hc::Clock::now() - start).count();
  rusage cpu_after{};
  getrusage(RUSAGE_SELF, &cpu_after);
  const hc::ProberStats after = prober->stats();

  kill(server, SIGTERM);
  int status = 0;
  rusage server_cpu{};
  wait4(server, &status, 0, &server_cpu);

  std::map<std::string, int> states;
  std::map<std::string, int> reasons;
  for (const hc::TargetView& view : prober->Targets()) {
    ++states[std::string(fulcrum::model::HealthStateName(view.state))];
    ++reasons[view.reason];
  }
  const double probes = static_cast<double>(after.probes - before.probes);
  const double cpu = CpuSeconds(cpu_after) - CpuSeconds(cpu_before);
  std::printf("targets %d (%s, interval 1 s, %d ports), window %.1f s\n", flags.targets,
              flags.type.c_str(), flags.ports, wall);
  std::printf("probes/s %.0f (expected ~%d), successes %llu, failures %llu, inconclusive %llu\n",
              probes / wall, flags.targets,
              static_cast<unsigned long long>(after.successes - before.successes),
              static_cast<unsigned long long>(after.failures - before.failures),
              static_cast<unsigned long long>(after.inconclusive - before.inconclusive));
  std::printf(
      "prober cpu %.2f s in %.1f s = %.1f%% of one core (user %.2f s, sys %.2f s), "
      "%.1f us per probe\n",
      cpu, wall, 100.0 * cpu / wall,
      static_cast<double>(cpu_after.ru_utime.tv_sec - cpu_before.ru_utime.tv_sec) +
          static_cast<double>(cpu_after.ru_utime.tv_usec - cpu_before.ru_utime.tv_usec) / 1e6,
      static_cast<double>(cpu_after.ru_stime.tv_sec - cpu_before.ru_stime.tv_sec) +
          static_cast<double>(cpu_after.ru_stime.tv_usec - cpu_before.ru_stime.tv_usec) / 1e6,
      probes > 0 ? 1e6 * cpu / probes : 0.0);
  std::printf("most probes in flight %zu (bound %zu); server cpu %.2f s over the whole run\n",
              after.max_in_flight_seen, flags.max_in_flight, CpuSeconds(server_cpu));
  for (const auto& [state, count] : states) {
    std::printf("  state %-8s %d\n", state.c_str(), count);
  }
  for (const auto& [reason, count] : reasons) {
    std::printf("  last probe %-24s %d\n", reason.c_str(), count);
  }
  return 0;
}
