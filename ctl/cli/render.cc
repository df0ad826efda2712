// The human form of lbctl's results (Render in commands.h): tables for lists, aligned
// "key: value" blocks for single objects, one line for changes.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "ctl/cli/commands.h"
#include "ctl/cli/table.h"

namespace fulcrum::cli {
namespace {

using nlohmann::json;
using Pairs = std::vector<std::pair<std::string, std::string>>;
constexpr Table::Align kRight = Table::Align::kRight;
constexpr char kNone[] = "-";

const json& Member(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) {
    return kNull;
  }
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

const json& ArrayMember(const json& object, const char* key) {
  static const json kEmpty = json::array();
  const json& value = Member(object, key);
  return value.is_array() ? value : kEmpty;
}

std::string Scalar(const json& value) {
  switch (value.type()) {
    case json::value_t::string:
      return value.get_ref<const std::string&>().empty() ? kNone : value.get<std::string>();
    case json::value_t::boolean:
      return value.get<bool>() ? "yes" : "no";
    case json::value_t::number_integer:
      return std::to_string(value.get<std::int64_t>());
    case json::value_t::number_unsigned:
      return std::to_string(value.get<std::uint64_t>());
    case json::value_t::number_float:
      return fmt::format("{:.2f}", value.get<double>());
    case json::value_t::array: {
      std::string joined;
      for (const json& item : value) {
        joined += (joined.empty() ? "" : ",") + Scalar(item);
      }
      return joined.empty() ? kNone : joined;
    }
    case json::value_t::null:
    case json::value_t::discarded:
      return kNone;
    default:
      return value.dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

std::string Field(const json& object, const char* key) { return Scalar(Member(object, key)); }

double Number(const json& object, const char* key) {
  const json& value = Member(object, key);
  return value.is_number() ? value.get<double>() : 0.0;
}

// Unix time as ISO 8601 UTC; 0 (never) and non-numbers as "-".
std::string Timestamp(const json& object, const char* key) {
  const json& value = Member(object, key);
  if (!value.is_number_integer() || value.get<std::int64_t>() <= 0) {
    return kNone;
  }
  const std::time_t seconds = static_cast<std::time_t>(value.get<std::int64_t>());
  std::tm utc{};
  char text[32];
  if (gmtime_r(&seconds, &utc) == nullptr ||
      std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc) == 0) {
    return kNone;
  }
  return text;
}

std::string Duration(const json& object, const char* key) {
  const json& value = Member(object, key);
  if (!value.is_number_integer()) {
    return kNone;
  }
  std::int64_t left = value.get<std::int64_t>();
  std::string text;
  for (const auto& [unit, seconds] :
       {std::pair{"d", 86400}, std::pair{"h", 3600}, std::pair{"m", 60}}) {
    if (left >= seconds || !text.empty()) {
      text += fmt::format("{}{} ", left / seconds, unit);
      left %= seconds;
    }
  }
  return text + fmt::format("{}s", left);
}

// 1234567 -> "1.23M": rates read at a glance; the exact counters are in the totals.
std::string Si(double value) {
  constexpr std::pair<double, const char*> kUnits[] = {
      {1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "K"}};
  for (const auto& [scale, unit] : kUnits) {
    if (value >= scale) {
      return fmt::format("{:.2f}{}", value / scale, unit);
    }
  }
  return fmt::format("{:.1f}", value);
}

// "3 listeners" from a count member; "- listeners" when it is missing.
std::string Counted(const json& object, const char* key, const char* noun) {
  const json& value = Member(object, key);
  if (!value.is_number_unsigned() && !value.is_number_integer()) {
    return fmt::format("{} {}s", kNone, noun);
  }
  const std::int64_t n = value.get<std::int64_t>();
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

std::string Count(const json& object, const char* key) {
  return std::to_string(ArrayMember(object, key).size());
}

std::string Plural(std::size_t n, const char* noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

std::string KeyValues(const Pairs& pairs) {
  std::size_t width = 0;
  for (const auto& [key, value] : pairs) {
    width = std::max(width, key.size() + 1);
  }
  std::string out;
  for (const auto& [key, value] : pairs) {
    out += fmt::format("{:<{}} {}\n", key + ":", width, value);
  }
  return out;
}

// A titled section: the table, or "Title: none" when it has no rows.
std::string Section(const std::string& title, const Table& table) {
  if (table.rows() == 0) {
    return "\n" + title + ": none\n";
  }
  return "\n" + title + ":\n" + table.Render();
}

std::string Upper(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) {
    return c == '_' ? ' ' : static_cast<char>(std::toupper(c));
  });
  return text;
}

// A member of an object whose shape lbctl does not fix. Times are recognised by the
// protocol's naming: "since", "*_at", "last_*".
std::string Loose(const json& object, const std::string& key) {
  const bool is_time = key == "since" || key.ends_with("_at") || key.starts_with("last_");
  return is_time ? Timestamp(object, key.c_str()) : Field(object, key.c_str());
}

// A table of an array of objects whose shape lbctl does not fix (status's ports, workers):
// one column per scalar member of the first element, the naming ones ("name", "lcore") first.
// Nested members (per-reason drops, offload flags, queue lists) would not fit a cell; --json
// shows them.
Table GenericTable(const json& items) {
  std::vector<std::string> keys;
  if (!items.empty() && items.front().is_object()) {
    for (const auto& [key, value] : items.front().items()) {
      if (!value.is_structured()) {
        keys.push_back(key);
      }
    }
    std::stable_partition(keys.begin(), keys.end(),
                          [](const std::string& key) { return key == "name" || key == "lcore"; });
  }
  std::vector<Table::Column> columns;
  for (const std::string& key : keys) {
    columns.push_back({Upper(key)});
  }
  Table table(keys.empty() ? std::vector<Table::Column>{{"VALUE"}} : columns);
  for (const json& item : items) {
    std::vector<std::string> row;
    if (keys.empty()) {
      row.push_back(Scalar(item));
    }
    for (const std::string& key : keys) {
      row.push_back(Loose(item, key));
    }
    table.AddRow(std::move(row));
  }
  return table;
}

// The prober's state in words: whether anything is checking the backends at all.
std::string ProberText(const json& prober) {
  const std::string state = Field(prober, "state");
  const std::string last = Timestamp(prober, "last_seen");
  if (state == "present") {
    return fmt::format("present (last poll {})", last);
  }
  if (state == "absent") {
    return fmt::format("ABSENT: last poll {}, over 15 s ago; backend health stays as last reported",
                       last);
  }
  if (state == "never") {
    return "never seen: no lb-healthd has polled since lbd started; backends are not "
           "health-checked";
  }
  return last == kNone ? state : fmt::format("{} (last poll {})", state, last);
}

std::string RenderStatus(const json& r) {
  const json& objects = Member(r, "objects");
  Pairs pairs = {{"version", Field(r, "version")},
                 {"pid", Field(r, "pid")},
                 {"uptime", Duration(r, "uptime_s")},
                 {"socket", Field(r, "socket")},
                 {"state file", Field(r, "state_file")},
                 {"objects", fmt::format("{}, {}, {}, {}", Counted(objects, "lbs", "load balancer"),
                                         Counted(objects, "groups", "group"),
                                         Counted(objects, "listeners", "listener"),
                                         Counted(objects, "backends", "backend"))}};
  pairs.emplace_back("prober", ProberText(Member(r, "prober")));
  return KeyValues(pairs) + Section("Ports", GenericTable(ArrayMember(r, "ports"))) +
         Section("Workers", GenericTable(ArrayMember(r, "workers")));
}

Table LbTable(const json& lbs) {
  Table table({{"ID"},
               {"NAME"},
               {"VIP"},
               {"FAMILY"},
               {"LISTENERS", kRight},
               {"GROUPS", kRight},
               {"CREATED"}});
  for (const json& lb : lbs) {
    table.AddRow({Field(lb, "id"), Field(lb, "name"), Field(lb, "vip"), Field(lb, "family"),
                  Count(lb, "listeners"), Count(lb, "groups"), Timestamp(lb, "created_at")});
  }
  return table;
}

bool IsFailOpen(const json& object) { return Member(object, "fail_open") == json(true); }

// Loud when on: fail-open means traffic goes to backends known to be dead.
std::string FailOpenCell(const json& object) {
  const json& value = Member(object, "fail_open");
  if (!value.is_boolean()) {
    return kNone;
  }
  return value.get<bool>() ? "YES" : "no";
}

// What fail-open means for a listener with `total` serving backends (null when unknown).
std::string AllDownText(const json& total) {
  if (total == json(1)) {
    return "its only backend is down, traffic goes to it anyway";
  }
  if (total.is_number_integer()) {
    return fmt::format("all {} backends are down, traffic goes to all of them", Scalar(total));
  }
  return "all backends are down, traffic goes to all of them";
}

// "FAIL-OPEN on lsn-...: all 2 backends are down, ..." for each listener in fail-open;
// `id_key` names the listener's id member.
std::string FailOpenLines(const json& listeners, const char* id_key) {
  std::string out;
  for (const json& l : listeners) {
    if (IsFailOpen(l)) {
      out +=
          fmt::format("FAIL-OPEN on {}: {}\n", Field(l, id_key), AllDownText(Member(l, "total")));
    }
  }
  return out.empty() ? "" : "\n" + out;
}

Table ListenerTable(const json& listeners) {
  Table table({{"ID"},
               {"PROTOCOL"},
               {"PORT", kRight},
               {"GROUP"},
               {"SCHEDULER"},
               {"MODE"},
               {"IDLE", kRight},
               {"PERSIST", kRight},
               {"CHECK"},
               {"ON DOWN"},
               {"FAIL-OPEN"}});
  for (const json& l : listeners) {
    table.AddRow({Field(l, "id"), Field(l, "protocol"), Field(l, "port"), Field(l, "group"),
                  Field(l, "scheduler"), Field(l, "mode"), Field(l, "idle_timeout"),
                  Field(l, "persistence"), Field(Member(l, "health_check"), "type"),
                  Field(l, "on_backend_down"), FailOpenCell(l)});
  }
  return table;
}

Table GroupTable(const json& groups) {
  Table table({{"ID"}, {"NAME"}, {"BACKENDS", kRight}, {"LISTENERS"}});
  for (const json& g : groups) {
    table.AddRow({Field(g, "id"), Field(g, "name"), Count(g, "backends"), Field(g, "listeners")});
  }
  return table;
}

Table AclTable(const json& acls) {
  Table table({{"ID"}, {"NAME"}, {"ENTRIES", kRight}, {"LISTENERS"}});
  for (const json& a : acls) {
    table.AddRow({Field(a, "id"), Field(a, "name"), Count(a, "entries"), Field(a, "listeners")});
  }
  return table;
}

std::string RenderAclShow(const json& r) {
  std::string out = KeyValues({{"id", Field(r, "id")},
                               {"lb", Field(r, "lb")},
                               {"name", Field(r, "name")},
                               {"listeners", Field(r, "listeners")},
                               {"entries", Count(r, "entries")}});
  Table entries({{"ENTRY"}});
  for (const json& entry : ArrayMember(r, "entries")) {
    entries.AddRow({Scalar(entry)});
  }
  return out + Section("Entries", entries);
}

std::string RenderLbShow(const json& r) {
  const std::string out = KeyValues({{"id", Field(r, "id")},
                                     {"name", Field(r, "name")},
                                     {"vip", Field(r, "vip")},
                                     {"family", Field(r, "family")},
                                     {"created", Timestamp(r, "created_at")}});
  const json& listeners = ArrayMember(r, "listener_objects");
  return out + FailOpenLines(listeners, "id") + Section("Listeners", ListenerTable(listeners)) +
         Section("Groups", GroupTable(ArrayMember(r, "group_objects")));
}

// One row per backend and listener that uses the group, since health is per listener.
Table BackendTable(const json& backends) {
  Table table({{"BACKEND"},
               {"WEIGHT", kRight},
               {"CONNS", kRight},
               {"LISTENER"},
               {"HEALTH"},
               {"REASON"},
               {"SINCE"}});
  for (const json& b : backends) {
    const json& health = ArrayMember(b, "health");
    const std::vector<std::string> head = {Field(b, "addr"), Field(b, "weight"),
                                           Field(b, "active_conns")};
    if (health.empty()) {  // no listener uses the group yet
      std::vector<std::string> row = head;
      row.insert(row.end(), 4, kNone);
      table.AddRow(std::move(row));
    }
    for (const json& h : health) {
      std::vector<std::string> row = head;
      row.insert(row.end(), {Field(h, "listener"), Field(h, "state"), Field(h, "reason"),
                             Timestamp(h, "since")});
      table.AddRow(std::move(row));
    }
  }
  return table;
}

std::string RenderGroupShow(const json& r) {
  const std::string out = KeyValues({{"id", Field(r, "id")},
                                     {"lb", Field(r, "lb")},
                                     {"name", Field(r, "name")},
                                     {"listeners", Field(r, "listeners")}});
  const json& summaries = ArrayMember(r, "listener_health");
  Table health({{"LISTENER"}, {"HEALTHY", kRight}, {"FAIL-OPEN"}});
  for (const json& l : summaries) {
    health.AddRow({Field(l, "listener"),
                   fmt::format("{}/{}", Field(l, "healthy"), Field(l, "total")), FailOpenCell(l)});
  }
  return out + FailOpenLines(summaries, "listener") + Section("Listener health", health) +
         Section("Backends", BackendTable(ArrayMember(r, "backends")));
}

std::string RenderListenerShow(const json& r) {
  Pairs pairs = {
      {"id", Field(r, "id")},
      {"lb", Field(r, "lb")},
      {"protocol", Field(r, "protocol")},
      {"port", Field(r, "port")},
      {"group", Field(r, "group")},
      {"scheduler", Field(r, "scheduler")},
      {"mode", Field(r, "mode")},
      {"idle timeout", Field(r, "idle_timeout") + " s"},
      {"persistence", Number(r, "persistence") > 0 ? Field(r, "persistence") + " s" : "off"},
      {"client ip", Field(r, "client_ip")},
      {"acl",
       Field(r, "acl").empty() ? "none" : Field(r, "acl") + " (" + Field(r, "acl_type") + ")"},
      {"on backend down", Field(r, "on_backend_down")},
      {"fail-open", FailOpenCell(r)},
      {"created", Timestamp(r, "created_at")}};
  const json& hc = Member(r, "health_check");
  const std::string type = Field(hc, "type");
  pairs.emplace_back("check", type);
  if (type != "none" && type != kNone) {
    const std::string port = Field(hc, "port");
    pairs.insert(pairs.end(), {{"check port", port == "0" ? "backend's port" : port},
                               {"check interval", Field(hc, "interval") + " s"},
                               {"check timeout", Field(hc, "timeout") + " s"},
                               {"check rise", Field(hc, "rise")},
                               {"check fall", Field(hc, "fall")}});
  }
  if (type == "http") {
    pairs.insert(pairs.end(), {{"check path", Field(hc, "path")},
                               {"check host", Field(hc, "host")},
                               {"check codes", Field(hc, "codes")}});
  }
  if (type == "udp") {
    pairs.insert(pairs.end(),
                 {{"check send", Field(hc, "send")}, {"check expect", Field(hc, "expect")}});
  }
  const std::string banner = IsFailOpen(r) ? "\nFAIL-OPEN: " + AllDownText(nullptr) + "\n" : "";
  return KeyValues(pairs) + banner;
}

// Non-zero counters of an object, as NAME/COUNT rows.
Table NonZeroTable(const char* title, const json& counters) {
  Table table({{title}, {"COUNT", kRight}});
  if (counters.is_object()) {
    for (const auto& [key, value] : counters.items()) {
      if (value.is_number() && value.get<double>() != 0) {
        table.AddRow({key, Scalar(value)});
      }
    }
  }
  return table;
}

std::string RenderStats(const json& r) {
  const json& totals = Member(r, "totals");
  const json& rates = Member(r, "rates");
  std::string out = KeyValues({{"target", Field(r, "target")},
                               {"rx packets", Field(totals, "rx_packets")},
                               {"rx bytes", Field(totals, "rx_bytes")},
                               {"tx packets", Field(totals, "tx_packets")},
                               {"tx bytes", Field(totals, "tx_bytes")},
                               {"new conns", Field(totals, "new_conns")},
                               {"active conns", Field(totals, "active_conns")},
                               {"drops", Field(totals, "drops")},
                               {"pps", Si(Number(rates, "pps"))},
                               {"bps", Si(Number(rates, "bps"))},
                               {"new conns/s", Si(Number(rates, "new_conns_per_s"))}});
  out += Section("Drops", NonZeroTable("REASON", Member(r, "drops")));
  out += Section("Counters", NonZeroTable("COUNTER", Member(r, "counters")));

  Table listeners({{"LISTENER"},
                   {"NEW CONNS", kRight},
                   {"ACTIVE", kRight},
                   {"RX PKTS", kRight},
                   {"RX BYTES", kRight},
                   {"TX PKTS", kRight},
                   {"TX BYTES", kRight}});
  for (const json& l : ArrayMember(r, "listeners")) {
    listeners.AddRow({Field(l, "id"), Field(l, "new_conns"), Field(l, "active_conns"),
                      Field(l, "rx_packets"), Field(l, "rx_bytes"), Field(l, "tx_packets"),
                      Field(l, "tx_bytes")});
  }
  Table workers({{"LCORE", kRight}, {"RX PKTS", kRight}, {"TX PKTS", kRight}, {"BUSY", kRight}});
  for (const json& w : ArrayMember(r, "workers")) {
    const json& busy = Member(w, "busy_ratio");
    workers.AddRow({Field(w, "lcore"), Field(w, "rx_packets"), Field(w, "tx_packets"),
                    busy.is_number() ? fmt::format("{:.1f}%", busy.get<double>() * 100) : kNone});
  }
  return out + Section("Listeners", listeners) + Section("Workers", workers);
}

std::string RenderConnList(const json& r) {
  Table table({{"WORKER", kRight},
               {"LISTENER"},
               {"PROTO"},
               {"CLIENT"},
               {"VIP"},
               {"LOCAL"},
               {"BACKEND"},
               {"STATE"},
               {"AGE", kRight},
               {"IDLE", kRight},
               {"TIMEOUT", kRight}});
  const json& connections = ArrayMember(r, "connections");
  for (const json& c : connections) {
    table.AddRow({Field(c, "worker"), Field(c, "listener"), Field(c, "protocol"),
                  Field(c, "client"), Field(c, "vip"), Field(c, "local"), Field(c, "backend"),
                  Field(c, "state"), Field(c, "age_s"), Field(c, "idle_s"), Field(c, "timeout_s")});
  }
  std::string out = table.Render();
  if (Member(r, "truncated") == json(true)) {
    out += fmt::format("(truncated after {}; raise --limit to see more)\n",
                       Plural(connections.size(), "connection"));
  }
  return out;
}

std::string RenderLbDeleted(const json& r) {
  const std::size_t listeners = ArrayMember(r, "deleted_listeners").size();
  const std::size_t groups = ArrayMember(r, "deleted_groups").size();
  return fmt::format("deleted {} with {} and {}\n", Field(r, "id"), Plural(listeners, "listener"),
                     Plural(groups, "group"));
}

std::string RenderHealthSet(const json& r) {
  return fmt::format("{} {} on {} ({})\n", Field(r, "addr"), Field(r, "state"),
                     Field(r, "listener"),
                     Member(r, "changed") == json(true) ? "changed" : "unchanged");
}

}  // namespace

std::string Render(const Invocation& invocation, const json& result) {
  switch (invocation.view) {
    case View::kStatus:
      return RenderStatus(result);
    case View::kCreated:
      return Field(result, "id") + "\n";
    case View::kLbList:
      return LbTable(ArrayMember(result, "lbs")).Render();
    case View::kLbShow:
      return RenderLbShow(result);
    case View::kLbDeleted:
      return RenderLbDeleted(result);
    case View::kGroupList:
      return GroupTable(ArrayMember(result, "groups")).Render();
    case View::kGroupShow:
      return RenderGroupShow(result);
    case View::kAclList:
      return AclTable(ArrayMember(result, "acls")).Render();
    case View::kAclShow:
      return RenderAclShow(result);
    case View::kGroupDeleted:
    case View::kAclDeleted:
    case View::kListenerDeleted:
      return "deleted " + Field(result, "id") + "\n";
    case View::kBackendAdded:
      return fmt::format("added {} to {} with weight {}\n", Field(result, "addr"),
                         Field(result, "group"), Field(result, "weight"));
    case View::kWeightSet:
      return fmt::format("set weight of {} in {} to {}\n", Field(result, "addr"),
                         Field(result, "group"), Field(result, "weight"));
    case View::kBackendRemoved:
      return fmt::format("removed {} from {}\n", Field(result, "addr"), Field(result, "group"));
    case View::kListenerList:
      return ListenerTable(ArrayMember(result, "listeners")).Render();
    case View::kListenerShow:
      return RenderListenerShow(result);
    case View::kListenerModified:
      return "modified " + Field(result, "id") + "\n";
    case View::kStats:
      return RenderStats(result);
    case View::kConnList:
      return RenderConnList(result);
    case View::kHealthSet:
      return RenderHealthSet(result);
  }
  return result.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace fulcrum::cli
