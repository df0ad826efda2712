// ControlPlane: the owner of the object model, serving the commands of docs/ctl-protocol.md.
//
// Theory of operation: one ControlPlane lives on lbd's control thread and is driven one
// request at a time by the socket server, so it takes no locks. A mutating command works
// copy-on-write: it copies the model, applies the change to the copy (the model validates),
// writes the copy to the state file, swaps it in and only then hands it to the data plane.
// If the write fails nothing changed (IoError). If the data plane fails to acknowledge, the
// change is committed anyway (it is on disk, and the next restart would apply it), so the
// error says so; the model is re-applied by the next change or by RetryPendingApply().
// backend.set_health touches health only: it is not persisted (the prober re-learns it).
// Listener and group views add what health makes of the configuration (fail_open, and a
// group's healthy/total counts per listener); a listener entering fail-open is logged at
// warning, since it then forwards to backends known to be dead.
//
// lb-healthd polls health.targets with the model version it last saw and gets a cheap
// "unchanged" answer when nothing moved. The version starts at start-time x 10^6, so that a
// restarted lbd never answers "unchanged" to a prober that knew the previous process.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ctl_protocol.h"
#include "common/ids.h"
#include "common/json_fields.h"
#include "common/model.h"
#include "common/net_addr.h"
#include "common/status.h"
#include "ctl/dataplane_link.h"

namespace fulcrum::ctl {

struct ControlPlaneOptions {
  std::string state_file;                     // "" = no persistence (tests only)
  std::string socket_path;                    // reported by status
  std::vector<IpAddress> reserved_addresses;  // lbd's own addresses: never a VIP
  // The address families lbd's ports carry (IPv6: some port has an address6); a VIP of another
  // family is refused.
  bool ipv4 = true;
  bool ipv6 = false;
  std::function<std::int64_t()> now;     // Unix seconds; default real clock
  std::optional<std::uint64_t> id_seed;  // fixed id sequence (tests); default random
};

// A prober counts as present when it polled health.targets this recently.
inline constexpr std::int64_t kProberPresenceSeconds = 15;

class ControlPlane {
 public:
  // Loads the state file (missing -> empty model; corrupt -> the error, lbd must not start) and
  // applies it to the data plane.
  static Result<std::unique_ptr<ControlPlane>> Create(ControlPlaneOptions options,
                                                      DataplaneLink& link);

  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // Serves one request of docs/ctl-protocol.md. Never throws.
  Result<nlohmann::json> Handle(const protocol::Request& request);

  // Re-applies the model if the data plane missed the last change; lbd's loop calls it now
  // and then. Ok when nothing is pending.
  fulcrum::Status RetryPendingApply();
  bool apply_pending() const { return apply_pending_; }

  const model::Model& model() const { return model_; }

 private:
  using Handler = Result<nlohmann::json> (ControlPlane::*)(JsonFields&);
  struct Command {
    std::string_view name;
    Handler handler;
    bool changes_config;  // logged when it succeeds
  };

  ControlPlane(ControlPlaneOptions options, DataplaneLink& link, model::Model model);
  static const std::vector<Command>& Commands();

  std::int64_t Now() const { return options_.now(); }
  std::string NewId(std::string_view prefix);
  fulcrum::Status Apply();
  // Persists `next`, makes it the model, applies it; `result` is the success answer.
  Result<nlohmann::json> Commit(model::Model next, nlohmann::json result);
  nlohmann::json GroupView(const model::ServerGroup& group);
  nlohmann::json ProberJson() const;
  nlohmann::json TargetsJson() const;

  Result<nlohmann::json> ShowStatus(JsonFields& args);
  Result<nlohmann::json> LbCreate(JsonFields& args);
  Result<nlohmann::json> LbList(JsonFields& args);
  Result<nlohmann::json> LbShow(JsonFields& args);
  Result<nlohmann::json> LbDelete(JsonFields& args);
  Result<nlohmann::json> GroupCreate(JsonFields& args);
  Result<nlohmann::json> GroupAddBackend(JsonFields& args);
  Result<nlohmann::json> GroupSetWeight(JsonFields& args);
  Result<nlohmann::json> GroupRemoveBackend(JsonFields& args);
  Result<nlohmann::json> GroupList(JsonFields& args);
  Result<nlohmann::json> GroupShow(JsonFields& args);
  Result<nlohmann::json> GroupDelete(JsonFields& args);
  Result<nlohmann::json> AclCreate(JsonFields& args);
  Result<nlohmann::json> AclAdd(JsonFields& args);
  Result<nlohmann::json> AclRemove(JsonFields& args);
  Result<nlohmann::json> AclList(JsonFields& args);
  Result<nlohmann::json> AclShow(JsonFields& args);
  Result<nlohmann::json> AclDelete(JsonFields& args);
  Result<nlohmann::json> ListenerCreate(JsonFields& args);
  Result<nlohmann::json> ListenerModify(JsonFields& args);
  Result<nlohmann::json> ListenerList(JsonFields& args);
  Result<nlohmann::json> ListenerShow(JsonFields& args);
  Result<nlohmann::json> ListenerDelete(JsonFields& args);
  Result<nlohmann::json> Stats(JsonFields& args);
  Result<nlohmann::json> ConnList(JsonFields& args);
  Result<nlohmann::json> BackendSetHealth(JsonFields& args);
  Result<nlohmann::json> HealthTargets(JsonFields& args);

  ControlPlaneOptions options_;
  DataplaneLink& link_;
  model::Model model_;
  IdGenerator ids_;
  std::int64_t started_at_;
  std::optional<std::int64_t> prober_seen_at_;
  bool apply_pending_ = false;
};

}  // namespace fulcrum::ctl
