// rte_flow rules that steer fnat replies to the core that owns their local port.
//
// Theory of operation: worker w allocates the local ports p with (p & mask) == w
// (nat/port_pool.h). On a port whose NIC supports rte_flow, one rule per (local address,
// worker, protocol) matches "IPv4 destination = local address, L4 destination port & mask = w"
// and sends the packet to rx queue w, so replies never need a software hand-off; everything else
// keeps going through RSS. BuildSteeringRules computes the rules as plain data (unit-tested
// without a NIC); InstallSteeringRules validates every rule first and creates them only if the
// device accepts all of them, so a port is either fully steered or fully on the software
// hand-off (dataplane/handoff.h), never half.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

struct rte_flow;

namespace fulcrum::dataplane {

enum class SteeringMode : std::uint8_t { kSoftware, kRteFlow };
// "software_handoff", "rte_flow"
std::string_view SteeringModeName(SteeringMode mode);

struct SteeringRule {
  std::uint32_t dst_ip = 0;  // host order
  std::uint8_t proto = 0;    // 6 or 17
  std::uint16_t port_mask = 0;
  std::uint16_t port_value = 0;
  std::uint16_t queue = 0;
  friend bool operator==(const SteeringRule&, const SteeringRule&) = default;
};

// The rules for a port with `rx_queues` queues and these local addresses, when `workers`
// workers share the ports. Empty when the port cannot be steered by rules: no local address,
// a single worker (nothing to steer), or fewer rx queues than workers.
std::vector<SteeringRule> BuildSteeringRules(std::span<const std::uint32_t> local_ips,
                                             std::uint32_t workers, std::uint16_t rx_queues);

// Validates every rule on `port_id` and, if all pass, creates them. On failure nothing stays
// installed and the status says which rule the device refused and why.
Result<std::vector<rte_flow*>> InstallSteeringRules(std::uint16_t port_id,
                                                    std::span<const SteeringRule> rules);
void RemoveSteeringRules(std::uint16_t port_id, std::span<rte_flow* const> flows);

}  // namespace fulcrum::dataplane
