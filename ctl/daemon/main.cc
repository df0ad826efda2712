// lbd: the load balancer daemon.
//
// Wires the modules together, and does nothing else: it loads the config, claims the control
// socket (so a second lbd is refused before it touches EAL), brings up the data plane,
// restores the state file into the control plane and serves the socket until SIGTERM/SIGINT.
#include <csignal>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "common/daemon_config.h"
#include "common/log.h"
#include "ctl/control_plane.h"
#include "ctl/daemon/dataplane_link.h"
#include "ctl/socket_server.h"
#include "dataplane/dataplane.h"

namespace fulcrum {
namespace {

Logger logger("lbd");
std::atomic<bool> stop_requested{false};

void OnSignal(int) { stop_requested.store(true); }

void InstallSignalHandlers() {
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

// Addresses lbd owns, of both families: no VIP or backend may take one of them.
std::vector<IpAddress> OwnAddresses(const DaemonConfig& config) {
  std::vector<IpAddress> addresses;
  for (const PortConfig& port : config.ports) {
    addresses.push_back(port.address.addr());
    if (port.address6.has_value()) {
      addresses.push_back(port.address6->addr());
    }
    addresses.insert(addresses.end(), port.local_addresses.begin(), port.local_addresses.end());
  }
  return addresses;
}

int Fail(const Status& status) {
  logger.Error("{}", status.ToString());
  std::fprintf(stderr, "lbd: %s\n", status.ToString().c_str());
  return 1;
}

int Run(const std::string& config_path, bool check_only, bool busy_poll) {
  Result<DaemonConfig> config = DaemonConfig::Load(config_path);
  if (!config.ok()) {
    return Fail(config.status());
  }
  if (busy_poll) {
    config->busy_poll = true;
  }
  SetDefaultLogLevel(config->log_level);
  if (check_only) {
    std::printf("lbd: %s is valid\n", config_path.c_str());
    return 0;
  }

  ctl::ControlPlane* control_plane = nullptr;
  auto handler = [&control_plane](const protocol::Request& request) -> Result<nlohmann::json> {
    return control_plane->Handle(request);
  };
  Result<std::unique_ptr<ctl::SocketServer>> server =
      ctl::SocketServer::Create({.path = config->socket}, handler);
  if (!server.ok()) {
    return Fail(server.status());
  }

  Result<std::unique_ptr<dataplane::Dataplane>> dataplane = dataplane::Dataplane::Create(*config);
  if (!dataplane.ok()) {
    return Fail(dataplane.status());
  }
  if (Status started = (*dataplane)->Start(); !started.ok()) {
    return Fail(started);
  }

  ctl::DpdkDataplaneLink link(**dataplane);
  Result<std::unique_ptr<ctl::ControlPlane>> created = ctl::ControlPlane::Create(
      {.state_file = config->state_file,
       .socket_path = config->socket,
       .reserved_addresses = OwnAddresses(*config),
       .ipv6 = std::any_of(config->ports.begin(), config->ports.end(),
                           [](const PortConfig& port) { return port.address6.has_value(); })},
      link);
  if (!created.ok()) {
    (*dataplane)->Stop();
    return Fail(created.status());
  }
  control_plane = created->get();
  logger.Info("lbd {} serving {} with {} workers; state in {}", FULCRUM_VERSION, config->socket,
              (*dataplane)->worker_count(), config->state_file);

  InstallSignalHandlers();
  auto last_retry = std::chrono::steady_clock::now();
  while (!stop_requested.load()) {
    (*server)->Poll(100);
    link.Tick();
    const auto now = std::chrono::steady_clock::now();
    if (control_plane->apply_pending() && now - last_retry > std::chrono::seconds(1)) {
      last_retry = now;
      if (Status retried = control_plane->RetryPendingApply(); !retried.ok()) {
        logger.Warn("data plane still behind the configuration: {}", retried.ToString());
      }
    }
  }
  logger.Info("shutting down");
  server->reset();
  (*dataplane)->Stop();
  return 0;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  CLI::App app{"lbd: the Fulcrum load balancer daemon"};
  std::string config_path;
  bool check_only = false;
  bool busy_poll = false;
  app.add_option("-c,--config", config_path, "config file (JSON, see docs/config.md)")->required();
  app.add_flag("--check-config", check_only, "validate the config file and exit");
  app.add_flag("--busy-poll", busy_poll, "workers never back off when idle (production)");
  app.set_version_flag("--version", std::string("lbd ") + FULCRUM_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  return fulcrum::Run(config_path, check_only, busy_poll);
}
