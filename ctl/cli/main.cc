// lbctl: parse the command line, ask lbd, print the answer, exit 0/1/2 (BRIEF §1).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

#include "ctl/cli/client.h"
#include "ctl/cli/commands.h"

namespace {

using fulcrum::Result;
using fulcrum::cli::Answer;
using fulcrum::cli::Invocation;
using fulcrum::cli::Outcome;

volatile sig_atomic_t g_interrupted = 0;

void OnInterrupt(int) { g_interrupted = 1; }

Outcome RunOnce(const Invocation& invocation, const std::string& socket) {
  Result<fulcrum::cli::Client> client = fulcrum::cli::Client::Connect(socket, invocation.timeout);
  if (!client.ok()) {
    return fulcrum::cli::Present(invocation, Result<Answer>(client.status()));
  }
  return fulcrum::cli::Present(invocation,
                               client->Call(invocation.request.cmd, invocation.request.args));
}

int Print(const Outcome& outcome) {
  std::cout << outcome.out << std::flush;
  std::cerr << outcome.err << std::flush;
  return outcome.exit_code;
}

// Sleeps up to `interval`, returning early when SIGINT arrives (nanosleep gets EINTR).
void SleepInterruptibly(std::chrono::milliseconds interval) {
  timespec left{.tv_sec = static_cast<time_t>(interval.count() / 1000),
                .tv_nsec = static_cast<long>((interval.count() % 1000) * 1000000)};
  while (!g_interrupted && nanosleep(&left, &left) != 0) {
  }
}

// Re-queries until SIGINT or --count rounds; a round that fails ends the watch with its
// status. A second SIGINT kills at once (SA_RESETHAND), should lbd stall mid-round.
int Watch(const Invocation& invocation, const std::string& socket) {
  struct sigaction action {};
  action.sa_handler = OnInterrupt;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  const bool clear = isatty(STDOUT_FILENO) == 1;
  for (std::uint64_t round = 1; !g_interrupted; ++round) {
    const Outcome outcome = RunOnce(invocation, socket);
    if (clear) {
      std::cout << "\033[H\033[2J";
    } else if (round > 1) {
      std::cout << "\n";
    }
    if (const int status = Print(outcome); status != fulcrum::cli::kExitOk) {
      return status;
    }
    if (invocation.watch.count && round >= *invocation.watch.count) {
      break;
    }
    SleepInterruptibly(invocation.watch.interval);
  }
  return fulcrum::cli::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  const Result<Invocation> invocation =
      fulcrum::cli::Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!invocation.ok()) {
    std::cerr << invocation.status().message() << "\n";
    return fulcrum::cli::kExitUsage;
  }
  if (invocation->info) {
    std::cout << *invocation->info;
    return fulcrum::cli::kExitOk;
  }
  const std::string socket =
      fulcrum::cli::ResolveSocketPath(invocation->socket, std::getenv(fulcrum::cli::kSocketEnv));
  if (invocation->watch.enabled) {
    return Watch(*invocation, socket);
  }
  return Print(RunOnce(*invocation, socket));
}
