// Test support: small object models and the daemon config the data-plane tests compile them
// against (the test bed's shape: a client port and a backend port with four local addresses).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/daemon_config.h"
#include "common/model.h"
#include "common/net_addr.h"

namespace fulcrum::dataplane::testing {

inline constexpr std::int64_t kNow = 1795000000;
inline constexpr char kLb[] = "lb-00000001";
inline constexpr char kVip[] = "198.18.100.10";
inline constexpr char kLb6[] = "lb-00000002";
inline constexpr char kVip6[] = "2001:db8:100::10";

inline Endpoint Ep(const std::string& text) {
  Result<Endpoint> e = Endpoint::Parse(text);
  EXPECT_TRUE(e.ok()) << text;
  return e.ok() ? *e : Endpoint{};
}

inline IpAddress Ip(const std::string& text) {
  Result<IpAddress> ip = IpAddress::Parse(text);
  EXPECT_TRUE(ip.ok()) << text;
  return ip.ok() ? *ip : IpAddress{};
}

// `extra` goes inside the top-level object (e.g. "\"routes\": [...],").
inline DaemonConfig TestConfig(const std::string& eal = R"("no_huge": true)",
                               const std::string& ports_suffix = "",
                               const std::string& extra = "") {
  const std::string text = R"({
    )" + extra + R"(
    "eal": {)" + eal + R"(},
    "workers": {"count": 2},
    "tcp_timeouts": {"syn": 3, "fin": 3, "time_wait": 1, "close": 1},
    "ports": [
      {"name": "client", "vdev": "net_ring_p0", "address": "198.18.0.1/24",
       "address6": "2001:db8::1/64",
       "rx_descriptors": 256, "tx_descriptors": 256)" +
                           ports_suffix + R"(},
      {"name": "backend", "vdev": "net_ring_p1", "address": "198.18.1.1/24",
       "address6": "2001:db8:1::1/64",
       "local_addresses": ["198.18.1.2-198.18.1.5", "2001:db8:1::2-2001:db8:1::5"],
       "rx_descriptors": 256, "tx_descriptors": 256}]})";
  Result<DaemonConfig> config = DaemonConfig::Parse(text);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return config.ok() ? *config : DaemonConfig{};
}

// Builds a model step by step, failing the test on any refused mutation.
class ModelBuilder {
 public:
  ModelBuilder() : model_({Ip("198.18.0.1"), Ip("198.18.1.1")}) {
    EXPECT_TRUE(model_.CreateLb(kLb, "web", Ip(kVip), kNow).ok());
  }

  // Creates load balancer `id` with `vip`; the groups and listeners that follow belong to it.
  ModelBuilder& Lb(const std::string& id, const std::string& vip) {
    EXPECT_TRUE(model_.CreateLb(id, id, Ip(vip), kNow).ok());
    lb_ = id;
    return *this;
  }

  ModelBuilder& Group(const std::string& id, const std::vector<std::string>& backends,
                      const std::vector<std::int64_t>& weights = {}) {
    EXPECT_TRUE(model_.CreateGroup(id, lb_, id).ok());
    for (std::size_t i = 0; i < backends.size(); ++i) {
      Status added = model_.AddBackend(id, Ep(backends[i]), i < weights.size() ? weights[i] : 10);
      EXPECT_TRUE(added.ok()) << added.ToString();
    }
    return *this;
  }

  ModelBuilder& Listener(const std::string& id, model::Protocol protocol, std::int64_t port,
                         const std::string& group,
                         model::ForwardMode mode = model::ForwardMode::kFnat,
                         std::int64_t idle_timeout = 0,
                         model::Scheduler scheduler = model::Scheduler::kWrr) {
    model::ListenerOptions options;
    options.group = group;
    options.mode = mode;
    options.scheduler = scheduler;
    if (idle_timeout > 0) {
      options.idle_timeout = idle_timeout;
    }
    options.health_check.type = model::HealthCheckType::kNone;
    Status created = model_.CreateListener(id, lb_, protocol, port, options, kNow);
    EXPECT_TRUE(created.ok()) << created.ToString();
    return *this;
  }

  ModelBuilder& Health(const std::string& listener, const std::string& backend,
                       model::HealthState state) {
    EXPECT_TRUE(model_.SetHealth(listener, Ep(backend), state, "test", kNow).ok());
    return *this;
  }

  // Sets listener `id`'s session persistence window (0: off).
  ModelBuilder& Persistence(const std::string& id, std::int64_t seconds) {
    model::ListenerOptions options;
    options.persistence = seconds;
    Status modified = model_.ModifyListener(id, options);
    EXPECT_TRUE(modified.ok()) << modified.ToString();
    return *this;
  }

  // Sets how listener `id` tells its backends the client's address.
  ModelBuilder& ClientIp(const std::string& id, model::ClientIpMode mode) {
    model::ListenerOptions options;
    options.client_ip = mode;
    Status modified = model_.ModifyListener(id, options);
    EXPECT_TRUE(modified.ok()) << modified.ToString();
    return *this;
  }

  // Creates ACL `id` on the current LB with `entries`, and has listener `listener` use it.
  ModelBuilder& Acl(const std::string& id, const std::vector<std::string>& entries,
                    const std::string& listener, model::AclType type) {
    Status created = model_.CreateAcl(id, lb_, "acl", entries);
    EXPECT_TRUE(created.ok()) << created.ToString();
    model::ListenerOptions options;
    options.acl = id;
    options.acl_type = type;
    Status modified = model_.ModifyListener(listener, options);
    EXPECT_TRUE(modified.ok()) << modified.ToString();
    return *this;
  }

  model::Model& model() { return model_; }

 private:
  model::Model model_;
  std::string lb_ = kLb;
};

}  // namespace fulcrum::dataplane::testing
