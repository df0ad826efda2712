#include "dataplane/flow_rules.h"

#include <arpa/inet.h>

#include <fmt/format.h>
#include <rte_flow.h>

#include "nat/port_pool.h"

namespace fulcrum::dataplane {
namespace {

constexpr std::uint8_t kTcp = 6;
constexpr std::uint8_t kUdp = 17;

// rte_flow keeps no pointer to the pattern after a call, so the specs live on the stack.
struct RuleSpec {
  rte_flow_attr attr{};
  rte_flow_item_ipv4 ip_spec{};
  rte_flow_item_ipv4 ip_mask{};
  rte_flow_item_tcp tcp_spec{};
  rte_flow_item_tcp tcp_mask{};
  rte_flow_item_udp udp_spec{};
  rte_flow_item_udp udp_mask{};
  rte_flow_item pattern[4] = {};
  rte_flow_action_queue queue{};
  rte_flow_action actions[2] = {};

  explicit RuleSpec(const SteeringRule& rule) {
    attr.ingress = 1;
    ip_spec.hdr.dst_addr = htonl(rule.dst_ip);
    ip_mask.hdr.dst_addr = 0xffffffff;
    pattern[0].type = RTE_FLOW_ITEM_TYPE_ETH;
    pattern[1].type = RTE_FLOW_ITEM_TYPE_IPV4;
    pattern[1].spec = &ip_spec;
    pattern[1].mask = &ip_mask;
    if (rule.proto == kTcp) {
      tcp_spec.hdr.dst_port = htons(rule.port_value);
      tcp_mask.hdr.dst_port = htons(rule.port_mask);
      pattern[2].type = RTE_FLOW_ITEM_TYPE_TCP;
      pattern[2].spec = &tcp_spec;
      pattern[2].mask = &tcp_mask;
    } else {
      udp_spec.hdr.dst_port = htons(rule.port_value);
      udp_mask.hdr.dst_port = htons(rule.port_mask);
      pattern[2].type = RTE_FLOW_ITEM_TYPE_UDP;
      pattern[2].spec = &udp_spec;
      pattern[2].mask = &udp_mask;
    }
    pattern[3].type = RTE_FLOW_ITEM_TYPE_END;
    queue.index = rule.queue;
    actions[0].type = RTE_FLOW_ACTION_TYPE_QUEUE;
    actions[0].conf = &queue;
    actions[1].type = RTE_FLOW_ACTION_TYPE_END;
  }
};

std::string Describe(const SteeringRule& rule) {
  return fmt::format("{}.{}.{}.{} {} dport&{:#x}={} -> queue {}", rule.dst_ip >> 24,
                     (rule.dst_ip >> 16) & 0xff, (rule.dst_ip >> 8) & 0xff, rule.dst_ip & 0xff,
                     rule.proto == kTcp ? "tcp" : "udp", rule.port_mask, rule.port_value,
                     rule.queue);
}

}  // namespace

std::string_view SteeringModeName(SteeringMode mode) {
  return mode == SteeringMode::kRteFlow ? "rte_flow" : "software_handoff";
}

std::vector<SteeringRule> BuildSteeringRules(std::span<const std::uint32_t> local_ips,
                                             std::uint32_t workers, std::uint16_t rx_queues) {
  std::vector<SteeringRule> rules;
  if (workers < 2 || rx_queues < workers) {
    return rules;
  }
  const nat::PortSteering steering = nat::PortSteering::ForWorkers(workers);
  for (std::uint32_t ip : local_ips) {
    for (std::uint32_t w = 0; w < workers; ++w) {
      for (std::uint8_t proto : {kTcp, kUdp}) {
        rules.push_back(SteeringRule{ip, proto, steering.mask(), static_cast<std::uint16_t>(w),
                                     static_cast<std::uint16_t>(w)});
      }
    }
  }
  return rules;
}

Result<std::vector<rte_flow*>> InstallSteeringRules(std::uint16_t port_id,
                                                    std::span<const SteeringRule> rules) {
  for (const SteeringRule& rule : rules) {
    RuleSpec spec(rule);
    rte_flow_error error{};
    if (rte_flow_validate(port_id, &spec.attr, spec.pattern, spec.actions, &error) != 0) {
      return Error(ErrorCode::kNotSupported, "rule {} refused: {}", Describe(rule),
                   error.message != nullptr ? error.message : "no reason given");
    }
  }
  std::vector<rte_flow*> flows;
  for (const SteeringRule& rule : rules) {
    RuleSpec spec(rule);
    rte_flow_error error{};
    rte_flow* flow = rte_flow_create(port_id, &spec.attr, spec.pattern, spec.actions, &error);
    if (flow == nullptr) {
      RemoveSteeringRules(port_id, flows);
      return Error(ErrorCode::kNotSupported, "rule {} validated but could not be created: {}",
                   Describe(rule), error.message != nullptr ? error.message : "no reason given");
    }
    flows.push_back(flow);
  }
  return flows;
}

void RemoveSteeringRules(std::uint16_t port_id, std::span<rte_flow* const> flows) {
  for (rte_flow* flow : flows) {
    rte_flow_error error{};
    rte_flow_destroy(port_id, flow, &error);
  }
}

}  // namespace fulcrum::dataplane
