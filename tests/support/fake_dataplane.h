// A DataplaneLink for tests: records what the control plane applies, fails on demand and
// answers the read-only calls from canned data, filtered the way the real link filters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/model.h"
#include "common/status.h"
#include "ctl/dataplane_link.h"

namespace fulcrum::ctl {

class FakeDataplane : public DataplaneLink {
 public:
  Status Apply(const model::Model& model) override {
    ++apply_calls;
    if (!fail_apply.ok()) {
      return fail_apply;
    }
    applied.push_back(model);
    return Status::Ok();
  }

  nlohmann::json Describe() override { return describe; }

  // `stats` with its "listeners" narrowed to `listener_ids` (empty = all).
  nlohmann::json Stats(const std::vector<std::string>& listener_ids) override {
    stats_requests.push_back(listener_ids);
    nlohmann::json result = stats;
    if (!listener_ids.empty() && result.contains("listeners")) {
      nlohmann::json kept = nlohmann::json::array();
      for (const nlohmann::json& entry : result["listeners"]) {
        for (const std::string& id : listener_ids) {
          if (entry.value("id", "") == id) {
            kept.push_back(entry);
          }
        }
      }
      result["listeners"] = kept;
    }
    return result;
  }

  // The entries of `connections` for `listener_id` ("" = all), at most `limit`.
  nlohmann::json Connections(const std::string& listener_id, std::size_t limit) override {
    connection_requests.emplace_back(listener_id, limit);
    nlohmann::json entries = nlohmann::json::array();
    bool truncated = false;
    for (const nlohmann::json& entry : connections) {
      if (!listener_id.empty() && entry.value("listener", "") != listener_id) {
        continue;
      }
      if (entries.size() == limit) {
        truncated = true;
        break;
      }
      entries.push_back(entry);
    }
    return {{"connections", entries}, {"truncated", truncated}};
  }

  std::uint64_t ActiveConnections(const std::string& listener_id,
                                  const std::string& backend) override {
    auto it = active_conns.find({listener_id, backend});
    return it == active_conns.end() ? 0 : it->second;
  }

  const model::Model& last_applied() const { return applied.back(); }

  // Inputs.
  Status fail_apply;  // Apply returns this when it is not ok
  nlohmann::json describe = {{"ports", {{{"name", "client"}, {"driver", "net_ring"}}}},
                             {"workers", {{{"lcore", 1}}}}};
  nlohmann::json stats = {
      {"totals",
       {{"rx_packets", 10},
        {"rx_bytes", 640},
        {"tx_packets", 10},
        {"tx_bytes", 640},
        {"new_conns", 2},
        {"active_conns", 1},
        {"drops", 0}}},
      {"drops", {{"no_service", 0}}},
      {"counters", {{"handoffs", 0}}},
      {"rates", {{"pps", 1.0}, {"bps", 512.0}, {"new_conns_per_s", 0.5}}},
      {"listeners", nlohmann::json::array()},
      {"workers", {{{"lcore", 1}, {"rx_packets", 10}, {"tx_packets", 10}, {"busy_ratio", 0.1}}}}};
  nlohmann::json connections = nlohmann::json::array();  // conn.list entries
  std::map<std::pair<std::string, std::string>, std::uint64_t> active_conns;

  // Observations.
  int apply_calls = 0;
  std::vector<model::Model> applied;  // every model Apply accepted, in order
  std::vector<std::vector<std::string>> stats_requests;
  std::vector<std::pair<std::string, std::size_t>> connection_requests;
};

}  // namespace fulcrum::ctl
