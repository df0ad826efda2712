#include "ctl/daemon/dataplane_link.h"

namespace fulcrum::ctl {

using nlohmann::json;

Status DpdkDataplaneLink::Apply(const model::Model& /*model*/) {
  // The workers run no packet pipeline yet (every packet is counted as no_service), so there
  // is nothing to publish to them.
  return Status::Ok();
}

json DpdkDataplaneLink::Describe() { return dataplane_.Describe(); }

DpdkDataplaneLink::Sample DpdkDataplaneLink::Take() const {
  Sample sample{.at = std::chrono::steady_clock::now()};
  for (std::size_t i = 0; i < dataplane_.worker_count(); ++i) {
    const dataplane::WorkerCounters& counters = dataplane_.worker(i).counters;
    sample.packets += counters.rx_packets.Read();
    sample.bytes += counters.rx_bytes.Read();
  }
  return sample;
}

void DpdkDataplaneLink::Tick() {
  Sample now = Take();
  if (now.at - latest_.at >= std::chrono::seconds(1)) {
    previous_ = latest_;
    latest_ = now;
  }
}

json DpdkDataplaneLink::Stats(const std::vector<std::string>& /*listener_ids*/) {
  json totals = {{"rx_packets", 0}, {"rx_bytes", 0},     {"tx_packets", 0}, {"tx_bytes", 0},
                 {"new_conns", 0},  {"active_conns", 0}, {"drops", 0}};
  json drops = json::object();
  json workers = json::array();
  for (std::size_t i = 0; i < dataplane_.worker_count(); ++i) {
    const dataplane::WorkerContext& worker = dataplane_.worker(i);
    const dataplane::WorkerCounters& counters = worker.counters;
    std::uint64_t worker_drops = 0;
    for (std::size_t reason = 0; reason < dataplane::kDropReasonCount; ++reason) {
      const std::string name(dataplane::DropReasonName(static_cast<dataplane::DropReason>(reason)));
      const std::uint64_t count = counters.drops[reason].Read();
      drops[name] = drops.value(name, std::uint64_t{0}) + count;
      worker_drops += count;
    }
    totals["rx_packets"] = totals["rx_packets"].get<std::uint64_t>() + counters.rx_packets.Read();
    totals["rx_bytes"] = totals["rx_bytes"].get<std::uint64_t>() + counters.rx_bytes.Read();
    totals["tx_packets"] = totals["tx_packets"].get<std::uint64_t>() + counters.tx_packets.Read();
    totals["tx_bytes"] = totals["tx_bytes"].get<std::uint64_t>() + counters.tx_bytes.Read();
    totals["drops"] = totals["drops"].get<std::uint64_t>() + worker_drops;
    workers.push_back({{"lcore", worker.lcore_id},
                       {"rx_packets", counters.rx_packets.Read()},
                       {"tx_packets", counters.tx_packets.Read()}});
  }
  const double seconds = std::chrono::duration<double>(latest_.at - previous_.at).count();
  const bool have_rate = previous_.at.time_since_epoch().count() != 0 && seconds > 0;
  json rates = {
      {"pps", have_rate ? static_cast<double>(latest_.packets - previous_.packets) / seconds : 0.0},
      {"bps", have_rate ? static_cast<double>(latest_.bytes - previous_.bytes) * 8 / seconds : 0.0},
      {"new_conns_per_s", 0.0}};
  return {{"totals", totals},           {"drops", drops},
          {"counters", json::object()}, {"rates", rates},
          {"listeners", json::array()}, {"workers", workers}};
}

json DpdkDataplaneLink::Connections(const std::string& /*listener_id*/, std::size_t /*limit*/) {
  // No connection is tracked until the forwarding pipeline exists.
  return {{"connections", json::array()}, {"truncated", false}};
}

std::uint64_t DpdkDataplaneLink::ActiveConnections(const std::string& /*listener_id*/,
                                                   const std::string& /*backend*/) {
  return 0;
}

}  // namespace fulcrum::ctl
