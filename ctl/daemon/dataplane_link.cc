#include "ctl/daemon/dataplane_link.h"

#include "common/log.h"

namespace fulcrum::ctl {
namespace {

Logger logger("lbd");

using nlohmann::json;

}  // namespace

DpdkDataplaneLink::DpdkDataplaneLink(dataplane::Dataplane& dataplane,
                                     const dataplane::ForwarderOptions& options)
    : dataplane_(dataplane) {
  const bool was_running = dataplane_.running();
  dataplane_.Stop();
  Result<std::unique_ptr<dataplane::Forwarder>> created =
      dataplane::Forwarder::Create(dataplane_, options);
  if (created.ok()) {
    forwarder_ = std::move(*created);
  } else {
    setup_error_ = created.status();
    logger.Error("the forwarding pipeline could not be set up, every packet is dropped: {}",
                 setup_error_.ToString());
  }
  if (was_running) {
    if (Status started = dataplane_.Start(); !started.ok()) {
      logger.Error("restarting the workers failed: {}", started.ToString());
    }
  }
}

DpdkDataplaneLink::~DpdkDataplaneLink() {
  // The Forwarder stops the workers before it frees what they use.
  forwarder_.reset();
}

Status DpdkDataplaneLink::Apply(const model::Model& model) {
  if (forwarder_ == nullptr) {
    return Error(ErrorCode::kUnavailable, "the forwarding pipeline is not running: {}",
                 setup_error_.message());
  }
  return forwarder_->Apply(model);
}

json DpdkDataplaneLink::Describe() {
  return forwarder_ != nullptr ? forwarder_->Describe() : dataplane_.Describe();
}

void DpdkDataplaneLink::Tick() {
  if (forwarder_ != nullptr) {
    forwarder_->Tick();
  }
}

json DpdkDataplaneLink::Stats(const std::vector<std::string>& listener_ids) {
  return forwarder_ != nullptr ? forwarder_->Stats(listener_ids) : EmptyStats();
}

json DpdkDataplaneLink::Connections(const std::string& listener_id, std::size_t limit) {
  if (forwarder_ == nullptr) {
    return {{"connections", json::array()}, {"truncated", false}};
  }
  return forwarder_->Connections(listener_id, limit);
}

std::uint64_t DpdkDataplaneLink::ActiveConnections(const std::string& listener_id,
                                                   const std::string& backend) {
  return forwarder_ != nullptr ? forwarder_->ActiveConnections(listener_id, backend) : 0;
}

}  // namespace fulcrum::ctl
