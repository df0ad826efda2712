// lb-bench: the per-core figures of BRIEF §4, measured on the real worker code in-process.
//
//   lb-bench [--quick] [--json] [--only NAME[,NAME...]] [--reps N] [--packets N]
//            [--local-addresses N]
//
// Runs io_floor, established_1k, established_1m, established_10m, tcp_lifecycle and udp_new,
// then established_1m_v6, tcp_lifecycle_v6 and udp_new_v6, their IPv6 twins, and
// nat64_established_1m, and tcp_lifecycle_persist and udp_new_persist (bench/scenarios.h), on one
// worker driven on this thread over net_ring ports (bench/rig.h), then times a Maglev build of
// 65537 slots and a configuration change (Forwarder::Apply with a running worker). Prints a table,
// or with --json exactly one JSON object on stdout. Progress and DPDK's log go to stderr.
//
// Every forwarded frame is checked against its connection (bench/traffic.h); the run fails
// (exit 1) when a scenario forwarded nothing, dropped anything, or sent a wrong frame, so
// `lb-bench --quick` doubles as a self-test (meson test suite "unit"). Needs root (DPDK);
// exits 77 (skipped) otherwise.
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <rte_cycles.h>
#include <nlohmann/json.hpp>

#include "bench/rig.h"
#include "bench/scenarios.h"
#include "bench/traffic.h"
#include "common/log.h"

namespace fulcrum::bench {
namespace {

using json = nlohmann::ordered_json;

constexpr int kExitSkip = 77;
constexpr std::uint32_t kMillion = 1'000'000;
constexpr std::uint32_t kMaglevHeadline = 1000;  // backends of the maglev_build_ms figure

const std::vector<std::string> kScenarios = {"io_floor",
                                             "established_1k",
                                             "established_1m",
                                             "established_10m",
                                             "tcp_lifecycle",
                                             "udp_new",
                                             "established_1m_v6",
                                             "tcp_lifecycle_v6",
                                             "udp_new_v6",
                                             "nat64_established_1m",
                                             "tcp_lifecycle_persist",
                                             "udp_new_persist",
                                             "established_1m_proxy",
                                             "tcp_lifecycle_proxy",
                                             "tcp_lifecycle_acl",
                                             "udp_new_acl"};
const std::vector<std::string> kExtras = {"maglev", "publish", "health_flap"};

struct Flags {
  BenchOptions options;
  RigOptions rig;
  bool json = false;
  std::set<std::string> only;
};

void Usage() {
  std::string names;
  for (const std::vector<std::string>* list : {&kScenarios, &kExtras}) {
    for (const std::string& name : *list) {
      names += " " + name;
    }
  }
  std::fprintf(stderr,
               "usage: lb-bench [--quick] [--json] [--only NAME[,NAME...]] [--reps N] "
               "[--packets N] [--local-addresses N]\n  names:%s\n  --local-addresses: IPv4 "
               "fnat local addresses, 1..%u (default %u; IPv6: %u)\n",
               names.c_str(), Family4::kMaxLocalAddresses, RigOptions{}.local_addresses,
               RigOptions{}.local_addresses6);
}

bool ParseCount(std::string_view text, std::uint64_t& out) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out);
  return error == std::errc() && end == text.data() + text.size() && out > 0;
}

bool Known(const std::string& name) {
  return std::find(kScenarios.begin(), kScenarios.end(), name) != kScenarios.end() ||
         std::find(kExtras.begin(), kExtras.end(), name) != kExtras.end();
}

std::optional<Flags> ParseFlags(int argc, char** argv) {
  Flags flags;
  std::optional<std::uint64_t> reps;
  std::optional<std::uint64_t> packets;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const bool has_value = i + 1 < argc;
    std::uint64_t n = 0;
    if (arg == "--quick") {
      flags.options.quick = true;
    } else if (arg == "--json") {
      flags.json = true;
    } else if (arg == "--only" && has_value) {
      std::string_view list = argv[++i];
      while (!list.empty()) {
        const std::size_t comma = list.find(',');
        const std::string name(list.substr(0, comma));
        if (!Known(name)) {
          std::fprintf(stderr, "lb-bench: unknown scenario \"%s\"\n", name.c_str());
          return std::nullopt;
        }
        flags.only.insert(name);
        list = comma == std::string_view::npos ? "" : list.substr(comma + 1);
      }
    } else if (arg == "--reps" && has_value && ParseCount(argv[++i], n)) {
      reps = n;
    } else if (arg == "--packets" && has_value && ParseCount(argv[++i], n)) {
      packets = n;
    } else if (arg == "--local-addresses" && has_value && ParseCount(argv[++i], n) &&
               n <= Family4::kMaxLocalAddresses) {
      flags.rig.local_addresses = static_cast<std::uint32_t>(n);
    } else {
      return std::nullopt;
    }
  }
  BenchOptions& o = flags.options;
  if (o.quick) {
    o.reps = 3;
    o.packets_per_rep = 200'000;
    o.steady_warmup_s = 0.2;
    o.steady_capacity = 1048576;
    o.scale_down = 10;
  }
  o.reps = reps ? static_cast<std::uint32_t>(*reps) : o.reps;
  o.packets_per_rep = packets.value_or(o.packets_per_rep);
  return flags;
}

bool Selected(const Flags& flags, const std::string& name) {
  return flags.only.empty() || flags.only.contains(name);
}

json Number(double value, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::round(value * scale) / scale;
}

struct Report {
  double tsc_ghz = 0;           // what DPDK converts cycles with
  double measured_tsc_ghz = 0;  // the TSC against the steady clock
  std::vector<ScenarioResult> scenarios;
  std::optional<MaglevFigures> maglev;
  std::optional<PublishFigures> publish;
  std::optional<HealthFlapFigures> health_flap;
  double bytes_per_conn = 0;
  double pool_bytes_per_conn = 0;
};

// {"1": ms, "1000": ms, ...}: a health change to every worker, by listener count.
json HealthFlapJson(const Report& report) {
  if (!report.health_flap) {
    return json();
  }
  json out = json::object();
  for (const auto& [listeners, ms] : report.health_flap->apply_ms) {
    out[std::to_string(listeners)] = Number(ms, 2);
  }
  return out;
}

json ToJson(const Report& report) {
  json scenarios = json::array();
  for (const ScenarioResult& s : report.scenarios) {
    scenarios.push_back({{"name", s.name},
                         {"mpps", Number(s.mpps, 3)},
                         {"ns_per_packet", Number(s.ns_per_packet, 1)},
                         {"ratio_to_io_floor", Number(s.ratio_to_io_floor, 3)},
                         {"conns_per_s", s.conns_per_s ? json(std::round(*s.conns_per_s)) : json()},
                         {"connections", s.connections != 0 ? json(s.connections) : json()}});
  }
  json maglev;
  if (report.maglev && report.maglev->build_ms.contains(kMaglevHeadline)) {
    maglev = Number(report.maglev->build_ms.at(kMaglevHeadline), 3);
  }
  return {{"scenarios", scenarios},
          {"bytes_per_conn", Number(report.bytes_per_conn, 1)},
          {"maglev_build_ms", maglev},
          {"publish_us", report.publish ? Number(report.publish->apply_us, 1) : json()},
          {"health_flap_ms", HealthFlapJson(report)}};
}

void PrintTable(const Report& report, const BenchOptions& options) {
  std::printf(
      "lb-bench%s: one worker core, 64-byte frames (84 in IPv6), medians of %u repetitions; "
      "TSC %.3f GHz (measured %.3f)\n\n",
      options.quick ? " --quick" : "", options.reps, report.tsc_ghz, report.measured_tsc_ghz);
  std::printf("%-22s %12s %8s %9s %7s %12s %10s\n", "scenario", "connections", "Mpps", "ns/pkt",
              "ratio", "conns/s", "min-max");
  for (const ScenarioResult& s : report.scenarios) {
    const auto [lo, hi] = std::minmax_element(s.mpps_reps.begin(), s.mpps_reps.end());
    const std::string spread = s.mpps_reps.empty() ? "-" : fmt::format("{:.2f}-{:.2f}", *lo, *hi);
    std::printf("%-22s %12s %8.2f %9.1f %7.2f %12s %10s\n", s.name.c_str(),
                s.connections != 0 ? std::to_string(s.connections).c_str() : "-", s.mpps,
                s.ns_per_packet, s.ratio_to_io_floor,
                s.conns_per_s ? fmt::format("{:.0f}", *s.conns_per_s).c_str() : "-",
                spread.c_str());
  }
  std::printf(
      "\nmemory per connection: %.1f bytes reserved in the connection table at 1M "
      "(+%.1f for the fnat port pools of 16 local addresses)\n",
      report.bytes_per_conn, report.pool_bytes_per_conn);
  if (report.maglev) {
    std::printf("maglev build, 65537 slots:");
    for (const auto& [backends, ms] : report.maglev->build_ms) {
      std::printf(" %u backends %.3f ms;", backends, ms);
    }
    std::printf("\n");
  }
  if (report.publish) {
    std::printf(
        "config change to every worker (Forwarder::Apply, running worker): %.1f us "
        "median, %.1f us max (compile alone %.1f us)\n",
        report.publish->apply_us, report.publish->max_apply_us, report.publish->compile_us);
  }
  if (report.health_flap) {
    std::printf("one backend's health change to every worker, listeners of 10 backends (Maglev):");
    for (const auto& [listeners, ms] : report.health_flap->apply_ms) {
      std::printf(" %u listeners %.2f ms (compile %.2f ms);", listeners, ms,
                  report.health_flap->compile_ms.at(listeners));
    }
    std::printf("\n");
  }
  for (const ScenarioResult& s : report.scenarios) {
    std::printf(
        "%s: %s packets measured, %s forwarded; %s frames checked, %s of them with every "
        "checksum; %s timed packets with warm-up%s\n",
        s.name.c_str(), fmt::to_string(s.packets).c_str(), fmt::to_string(s.forwarded).c_str(),
        fmt::to_string(s.checked).c_str(), fmt::to_string(s.checksummed).c_str(),
        fmt::to_string(s.timed_packets).c_str(),
        s.opened != 0
            ? fmt::format("; {} connections opened, {} expired", s.opened, s.expired).c_str()
            : "");
  }
}

// The self-check: every scenario forwarded, checked and dropped nothing.
int Verdict(const Report& report) {
  int failures = 0;
  for (const ScenarioResult& s : report.scenarios) {
    for (const std::string& error : s.errors) {
      std::fprintf(stderr, "lb-bench: %s: %s\n", s.name.c_str(), error.c_str());
      ++failures;
    }
  }
  if (report.publish) {
    for (const std::string& error : report.publish->errors) {
      std::fprintf(stderr, "lb-bench: publish: %s\n", error.c_str());
      ++failures;
    }
  }
  if (report.health_flap) {
    for (const std::string& error : report.health_flap->errors) {
      std::fprintf(stderr, "lb-bench: health_flap: %s\n", error.c_str());
      ++failures;
    }
  }
  if (report.maglev) {
    for (const auto& [backends, ms] : report.maglev->build_ms) {
      if (ms <= 0) {
        std::fprintf(stderr, "lb-bench: maglev: no table built for %u backends\n", backends);
        ++failures;
      }
    }
  }
  return failures == 0 ? 0 : 1;
}

// Every rate is cycles / rte_get_tsc_hz(): a wrong TSC frequency would skew them all, so it is
// checked against the steady clock.
double MeasureTscGhz() {
  const auto start = std::chrono::steady_clock::now();
  const std::uint64_t cycles = rte_rdtsc();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(rte_rdtsc() - cycles) / elapsed / 1e9;
}

// The pipeline scenario `base` (its name without the family's suffix) in address family F.
template <typename F>
ScenarioResult RunPipelineScenario(Rig& rig, const BenchOptions& options, const std::string& base) {
  const std::string name = base + F::kNameSuffix;
  if (base == "established_1k") {
    return RunEstablished<F>(rig, options, name, 1000);
  }
  if (base == "established_1m") {
    return RunEstablished<F>(rig, options, name, kMillion);
  }
  if (base == "established_1m_proxy") {
    return RunEstablished<F>(rig, options, name, kMillion, Feature::kProxy);
  }
  if (base == "established_10m") {
    return RunEstablished<F>(rig, options, name, 10 * kMillion);
  }
  const Feature feature = base.ends_with("_persist") ? Feature::kPersist
                          : base.ends_with("_proxy") ? Feature::kProxy
                          : base.ends_with("_acl")   ? Feature::kAcl
                                                     : Feature::kNone;
  if (base.starts_with("tcp_lifecycle")) {
    return RunTcpLifecycle<F>(rig, options, feature);
  }
  return RunUdpNew<F>(rig, options, feature);
}

ScenarioResult RunScenario(Rig& rig, const BenchOptions& options, const std::string& name) {
  if (name == "io_floor") {
    return RunIoFloor(rig, options);
  }
  if (name == "nat64_established_1m") {
    return RunEstablished<Family6, Family4>(rig, options, name, kMillion);
  }
  const std::string_view v6 = Family6::kNameSuffix;
  if (name.ends_with(v6)) {
    return RunPipelineScenario<Family6>(rig, options, name.substr(0, name.size() - v6.size()));
  }
  return RunPipelineScenario<Family4>(rig, options, name);
}

int Main(int argc, char** argv) {
  std::optional<Flags> flags = ParseFlags(argc, argv);
  if (!flags) {
    Usage();
    return 2;
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "lb-bench: DPDK needs root; skipped\n");
    return kExitSkip;
  }
  SetDefaultLogLevel(LogLevel::kWarning);
  SetLogLevel("*", LogLevel::kWarning);
  Result<std::unique_ptr<Rig>> rig = Rig::Create(flags->rig);
  if (!rig.ok()) {
    std::fprintf(stderr, "lb-bench: %s\n", rig.status().ToString().c_str());
    return 1;
  }
  Report report;
  report.tsc_ghz = static_cast<double>(rte_get_tsc_hz()) / 1e9;
  report.measured_tsc_ghz = MeasureTscGhz();
  if (std::abs(report.measured_tsc_ghz / report.tsc_ghz - 1) > 0.02) {
    std::fprintf(stderr, "lb-bench: warning: the TSC runs at %.3f GHz, DPDK assumes %.3f\n",
                 report.measured_tsc_ghz, report.tsc_ghz);
  }
  for (const std::string& name : kScenarios) {
    if (!Selected(*flags, name)) {
      continue;
    }
    std::fprintf(stderr, "lb-bench: %s ...\n", name.c_str());
    report.scenarios.push_back(RunScenario(**rig, flags->options, name));
    const ScenarioResult& s = report.scenarios.back();
    std::fprintf(stderr, "lb-bench: %s: %.2f Mpps, %.1f ns/packet (%.1f s)\n", name.c_str(), s.mpps,
                 s.ns_per_packet, s.seconds);
  }
  double floor = 0;
  for (const ScenarioResult& s : report.scenarios) {
    floor = s.name == "io_floor" ? s.mpps : floor;
  }
  for (ScenarioResult& s : report.scenarios) {
    s.ratio_to_io_floor = floor > 0 ? s.mpps / floor : 0;
  }
  report.bytes_per_conn = TableBytesPerConnection(kMillion);
  report.pool_bytes_per_conn = PoolBytesPerConnection(16, kMillion);
  if (Selected(*flags, "maglev")) {
    report.maglev = RunMaglev(flags->options);
  }
  if (Selected(*flags, "publish")) {
    std::fprintf(stderr, "lb-bench: publish ...\n");
    report.publish = RunPublish(**rig, flags->options);
  }
  if (Selected(*flags, "health_flap")) {
    std::fprintf(stderr, "lb-bench: health_flap ...\n");
    report.health_flap = RunHealthFlap(**rig, flags->options);
  }
  if (flags->json) {
    std::printf("%s\n", ToJson(report).dump().c_str());
  } else {
    PrintTable(report, flags->options);
  }
  return Verdict(report);
}

}  // namespace
}  // namespace fulcrum::bench

int main(int argc, char** argv) { return fulcrum::bench::Main(argc, argv); }
