// The control plane's view of the DPDK data plane (ctl::DataplaneLink over dataplane::Dataplane).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ctl/dataplane_link.h"
#include "dataplane/dataplane.h"

namespace fulcrum::ctl {

class DpdkDataplaneLink : public DataplaneLink {
 public:
  explicit DpdkDataplaneLink(dataplane::Dataplane& dataplane) : dataplane_(dataplane) {}

  Status Apply(const model::Model& model) override;
  nlohmann::json Describe() override;
  nlohmann::json Stats(const std::vector<std::string>& listener_ids) override;
  nlohmann::json Connections(const std::string& listener_id, std::size_t limit) override;
  std::uint64_t ActiveConnections(const std::string& listener_id,
                                  const std::string& backend) override;

  // Called by lbd's loop every ~100 ms: samples the counters that the rates come from.
  void Tick();

 private:
  struct Sample {
    std::chrono::steady_clock::time_point at;
    std::uint64_t packets = 0;
    std::uint64_t bytes = 0;
    std::uint64_t new_conns = 0;
  };
  Sample Take() const;

  dataplane::Dataplane& dataplane_;
  Sample previous_;
  Sample latest_;
};

}  // namespace fulcrum::ctl
