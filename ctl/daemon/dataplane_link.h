// The control plane's view of the DPDK data plane (ctl::DataplaneLink over
// dataplane::Forwarder).
//
// Theory of operation: the link owns the Forwarder, the forwarding engine's control side
// (dataplane/forwarder.h), and forwards every DataplaneLink call to it. Constructing the link
// installs the packet pipeline on the Dataplane's workers: they are stopped for that instant and
// restarted if they were running. If the pipeline cannot be set up (not enough memory for the
// connection tables, rings), the link logs why, the workers keep dropping every packet as
// no_service, and Apply reports the reason as kUnavailable, so lbd stays up and says what is
// wrong. All calls come from lbd's control thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ctl/dataplane_link.h"
#include "dataplane/dataplane.h"
#include "dataplane/forwarder.h"

namespace fulcrum::ctl {

class DpdkDataplaneLink : public DataplaneLink {
 public:
  explicit DpdkDataplaneLink(dataplane::Dataplane& dataplane,
                             const dataplane::ForwarderOptions& options = {});
  ~DpdkDataplaneLink() override;

  Status Apply(const model::Model& model) override;
  nlohmann::json Describe() override;
  nlohmann::json Stats(const std::vector<std::string>& listener_ids) override;
  nlohmann::json Connections(const std::string& listener_id, std::size_t limit) override;
  std::uint64_t ActiveConnections(const std::string& listener_id,
                                  const std::string& backend) override;

  // Called by lbd's loop every ~100 ms: neighbours, worker reports, reclamation, rates.
  void Tick();

  // nullptr when the pipeline could not be set up (see the header comment).
  dataplane::Forwarder* forwarder() { return forwarder_.get(); }

 private:
  dataplane::Dataplane& dataplane_;
  std::unique_ptr<dataplane::Forwarder> forwarder_;
  Status setup_error_;
};

}  // namespace fulcrum::ctl
