// The seam between the control plane and the data plane.
//
// Theory of operation: ControlPlane owns the object model and knows nothing of DPDK. It
// hands every committed model to a DataplaneLink, which compiles it into an immutable
// snapshot, publishes it to the workers and returns once each worker runs it (or fails
// with kUnavailable / kTimeout). The read-only calls serve the status, stats, conn.list and
// group.show commands. lbd implements this over the real workers (ctl/daemon); tests use
// tests/support/fake_dataplane.h. Every call comes from the control thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/model.h"
#include "common/status.h"

namespace fulcrum::ctl {

class DataplaneLink {
 public:
  virtual ~DataplaneLink() = default;
  // Compiles `model` (config + health) into the data plane and returns once every worker runs it.
  virtual Status Apply(const model::Model& model) = 0;
  // {"ports": [...], "workers": [...]} for the status command.
  virtual nlohmann::json Describe() = 0;
  // The `stats` result of docs/ctl-protocol.md without "target". Empty ids = everything.
  virtual nlohmann::json Stats(const std::vector<std::string>& listener_ids) = 0;
  // conn.list entries of one listener ("" = all), at most `limit`; sets "truncated".
  virtual nlohmann::json Connections(const std::string& listener_id, std::size_t limit) = 0;
  // Active connections of one backend ("198.18.1.11:80") under one listener, summed over workers.
  virtual std::uint64_t ActiveConnections(const std::string& listener_id,
                                          const std::string& backend) = 0;
};

// The `stats` result (without "target") when nothing has been counted: a target without
// listeners, or a data plane that is not forwarding.
inline nlohmann::json EmptyStats() {
  return {{"totals",
           {{"rx_packets", 0},
            {"rx_bytes", 0},
            {"tx_packets", 0},
            {"tx_bytes", 0},
            {"new_conns", 0},
            {"active_conns", 0},
            {"drops", 0}}},
          {"drops", nlohmann::json::object()},
          {"counters", nlohmann::json::object()},
          {"rates", {{"pps", 0.0}, {"bps", 0.0}, {"new_conns_per_s", 0.0}}},
          {"listeners", nlohmann::json::array()},
          {"workers", nlohmann::json::array()}};
}

}  // namespace fulcrum::ctl
