#include "common/daemon_config.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace fulcrum {
namespace {

using json = nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The test bed's configuration: two af_packet ports, two workers sharing the CPUs.
json TestbedConfig() {
  return json::parse(R"({
    "socket": "/run/lbd/test.sock",
    "state_file": "/var/lib/fulcrum-testbed/state.json",
    "log_level": "debug",
    "busy_poll": true,
    "eal": {"main_cpu": 1, "no_huge": true, "memory_mb": 256, "file_prefix": "lbd-test",
            "extra_args": ["--log-level=pmd.net.af_packet:debug"]},
    "workers": {"count": 2, "cpus": [0, 0]},
    "ports": [
      {"name": "client", "vdev": "net_af_packet0,iface=lb-c,qpairs=2",
       "address": "198.18.0.1/24", "mtu": 1500, "rx_descriptors": 512, "tx_descriptors": 256},
      {"name": "backend", "vdev": "net_af_packet1,iface=lb-b",
       "address": "198.18.1.1/24", "local_addresses": ["198.18.1.2-198.18.1.4", "198.18.1.5"],
       "gateway": "198.18.1.254"}
    ],
    "routes": [{"prefix": "198.18.64.0/18", "via": "198.18.1.254"},
               {"prefix": "198.18.2.0/24", "via": "198.18.1.13", "port": "backend"}],
    "conn_table": {"capacity_per_worker": 65536, "ipv6_capacity_per_worker": 4096,
                   "persistence_capacity": 4096},
    "tcp_timeouts": {"syn": 5, "fin": 6, "time_wait": 7, "close": 8},
    "mbufs_per_port": 100000
  })");
}

json MinimalConfig() {
  return json::parse(R"({"ports": [{"name": "p0", "pci": "0000:3b:00.0",
                                    "address": "198.18.0.1/24"}]})");
}

Result<DaemonConfig> ParseJson(const json& config) { return DaemonConfig::Parse(config.dump()); }

// The test bed with both families on both ports.
json DualFamilyConfig() {
  json config = TestbedConfig();
  config["ports"][0]["address6"] = "2001:db8::1/64";
  config["ports"][1]["address6"] = "2001:db8:1::1/64";
  return config;
}

// Parses `config` and returns the error message; fails the test when parsing succeeds or the
// code differs.
std::string ErrorOf(const json& config, ErrorCode code = ErrorCode::kInvalidParameter) {
  Result<DaemonConfig> parsed = ParseJson(config);
  EXPECT_FALSE(parsed.ok()) << config.dump() << " was accepted";
  EXPECT_EQ(parsed.status().code(), code) << parsed.status().ToString();
  return parsed.status().message();
}

// DualFamilyConfig with ports[index] merge-patched by `patch`.
std::string DualFamilyPortError(int index, const std::string& patch) {
  json config = DualFamilyConfig();
  config["ports"][index].merge_patch(json::parse(patch));
  return ErrorOf(config);
}

// DualFamilyConfig with `routes` replaced.
std::string DualFamilyRoutesError(const std::string& routes) {
  json config = DualFamilyConfig();
  config["routes"] = json::parse(routes);
  return ErrorOf(config);
}

std::vector<std::string> Texts(const std::vector<IpAddress>& addresses) {
  std::vector<std::string> texts;
  for (const IpAddress& addr : addresses) {
    texts.push_back(addr.ToString());
  }
  return texts;
}

// Applies `patch` (RFC 7386 merge patch: null deletes a key) to the test bed config and
// returns the parse error message; fails the test when parsing succeeds.
std::string ErrorAfterPatch(const std::string& patch,
                            ErrorCode code = ErrorCode::kInvalidParameter) {
  json config = TestbedConfig();
  config.merge_patch(json::parse(patch));
  Result<DaemonConfig> parsed = ParseJson(config);
  EXPECT_FALSE(parsed.ok()) << "patch " << patch << " was accepted";
  EXPECT_EQ(parsed.status().code(), code) << parsed.status().ToString();
  return parsed.status().message();
}

// Replaces ports[index] members with `patch` (merge patch semantics inside the port).
std::string ErrorAfterPortPatch(int index, const std::string& patch,
                                ErrorCode code = ErrorCode::kInvalidParameter) {
  json config = TestbedConfig();
  config["ports"][index].merge_patch(json::parse(patch));
  Result<DaemonConfig> parsed = ParseJson(config);
  EXPECT_FALSE(parsed.ok()) << "port patch " << patch << " was accepted";
  EXPECT_EQ(parsed.status().code(), code) << parsed.status().ToString();
  return parsed.status().message();
}

TEST(DaemonConfigTest, ParsesEveryKey) {
  Result<DaemonConfig> parsed = ParseJson(TestbedConfig());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const DaemonConfig& config = *parsed;
  EXPECT_EQ(config.socket, "/run/lbd/test.sock");
  EXPECT_EQ(config.state_file, "/var/lib/fulcrum-testbed/state.json");
  EXPECT_EQ(config.log_level, LogLevel::kDebug);
  EXPECT_TRUE(config.busy_poll);
  EXPECT_EQ(config.eal.main_cpu, 1u);
  EXPECT_TRUE(config.eal.no_huge);
  EXPECT_EQ(config.eal.memory_mb, 256u);
  EXPECT_EQ(config.eal.file_prefix, "lbd-test");
  EXPECT_THAT(config.eal.extra_args, ElementsAre("--log-level=pmd.net.af_packet:debug"));
  EXPECT_EQ(config.workers.count, 2u);
  EXPECT_THAT(config.workers.cpus, ElementsAre(0u, 0u));
  ASSERT_EQ(config.ports.size(), 2u);

  const PortConfig& client = config.ports[0];
  EXPECT_EQ(client.name, "client");
  EXPECT_FALSE(client.is_pci());
  EXPECT_EQ(client.DeviceName(), "net_af_packet0");
  EXPECT_EQ(client.address.ToString(), "198.18.0.1/24");
  EXPECT_TRUE(client.local_addresses.empty());
  EXPECT_FALSE(client.gateway.has_value());
  EXPECT_EQ(client.rx_descriptors, 512u);
  EXPECT_EQ(client.tx_descriptors, 256u);

  const PortConfig& backend = config.ports[1];
  std::vector<std::string> locals;
  for (const IpAddress& addr : backend.local_addresses) {
    locals.push_back(addr.ToString());
  }
  EXPECT_THAT(locals, ElementsAre("198.18.1.2", "198.18.1.3", "198.18.1.4", "198.18.1.5"));
  ASSERT_TRUE(backend.gateway.has_value());
  EXPECT_EQ(backend.gateway->ToString(), "198.18.1.254");
  EXPECT_EQ(config.FindPort("backend"), &backend);
  EXPECT_EQ(config.FindPort("nope"), nullptr);

  ASSERT_EQ(config.routes.size(), 2u);
  EXPECT_EQ(config.routes[0].prefix.ToString(), "198.18.64.0/18");
  EXPECT_EQ(config.routes[0].port, "backend");  // derived from the next hop's subnet
  EXPECT_EQ(config.routes[1].via.ToString(), "198.18.1.13");

  EXPECT_EQ(config.conn_table.capacity_per_worker, 65536u);
  EXPECT_EQ(config.conn_table.Ipv6Capacity(65536), 4096u);  // as written, not derived
  EXPECT_EQ(config.conn_table.persistence_capacity, 4096u);
  EXPECT_EQ(config.tcp_timeouts.syn, 5u);
  EXPECT_EQ(config.tcp_timeouts.fin, 6u);
  EXPECT_EQ(config.tcp_timeouts.time_wait, 7u);
  EXPECT_EQ(config.tcp_timeouts.close, 8u);
  EXPECT_EQ(config.mbufs_per_port, 100000u);
}

TEST(DaemonConfigTest, FillsDefaults) {
  Result<DaemonConfig> parsed = ParseJson(MinimalConfig());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const DaemonConfig& config = *parsed;
  EXPECT_EQ(config.socket, "/run/lbd/lbd.sock");
  EXPECT_EQ(config.state_file, "/var/lib/lbd/state.json");
  EXPECT_EQ(config.log_level, LogLevel::kInfo);
  EXPECT_FALSE(config.busy_poll);
  EXPECT_EQ(config.eal.main_cpu, 0u);
  EXPECT_FALSE(config.eal.no_huge);
  EXPECT_EQ(config.eal.memory_mb, 0u);
  EXPECT_EQ(config.eal.file_prefix, "lbd");
  EXPECT_TRUE(config.eal.extra_args.empty());
  EXPECT_EQ(config.workers.count, 1u);
  EXPECT_TRUE(config.workers.cpus.empty());
  const PortConfig& port = config.ports.at(0);
  EXPECT_TRUE(port.is_pci());
  EXPECT_EQ(port.DeviceName(), "0000:3b:00.0");
  EXPECT_EQ(port.mtu, 1500u);
  EXPECT_EQ(port.rx_descriptors, 1024u);
  EXPECT_EQ(port.tx_descriptors, 1024u);
  EXPECT_TRUE(config.routes.empty());
  EXPECT_EQ(config.conn_table.capacity_per_worker, 1048576u);
  EXPECT_EQ(config.conn_table.Ipv6Capacity(1048576), 262144u);  // a quarter
  EXPECT_EQ(config.conn_table.Ipv6Capacity(2048), 1024u);       // at least 1024
  EXPECT_EQ(config.conn_table.persistence_capacity, 1048576u);
  EXPECT_EQ(config.tcp_timeouts.syn, 30u);
  EXPECT_EQ(config.tcp_timeouts.fin, 30u);
  EXPECT_EQ(config.tcp_timeouts.time_wait, 10u);
  EXPECT_EQ(config.tcp_timeouts.close, 5u);
  EXPECT_GE(config.mbufs_per_port, MinMbufsPerPort(port, 1));
}

TEST(DaemonConfigTest, NoHugeDefaultsMemoryAndCpusImplyCount) {
  json config = MinimalConfig();
  config["eal"] = {{"no_huge", true}};
  config["workers"] = {{"cpus", {1, 0, 1}}};
  Result<DaemonConfig> parsed = ParseJson(config);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->eal.memory_mb, 512u);
  EXPECT_EQ(parsed->workers.count, 3u);
}

TEST(DaemonConfigTest, RefusesAfXdpWithoutHugepages) {
  json config = TestbedConfig();
  config["ports"][1]["vdev"] = "net_af_xdp1,iface=lb-b";
  EXPECT_EQ(ErrorOf(config, ErrorCode::kNotSupported),
            "ports[1]: net_af_xdp needs hugepages: eal.no_huge is not supported with it");
  config["eal"]["no_huge"] = false;
  Result<DaemonConfig> parsed = ParseJson(config);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->ports[1].DeviceName(), "net_af_xdp1");
}

TEST(DaemonConfigTest, DerivedMbufsGrowWithDescriptorsAndWorkers) {
  json config = MinimalConfig();
  config["workers"] = {{"count", 8}};
  config["ports"][0]["rx_descriptors"] = 4096;
  Result<DaemonConfig> parsed = ParseJson(config);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_GE(parsed->mbufs_per_port, (4096u + 1024u) * 8u);
}

TEST(DaemonConfigTest, RejectsSyntaxErrorsWithPosition) {
  Result<DaemonConfig> parsed = DaemonConfig::Parse("{\n  \"ports\": [,]\n}");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(parsed.status().message(), HasSubstr("line 2"));
  EXPECT_FALSE(DaemonConfig::Parse("").ok());
  EXPECT_FALSE(DaemonConfig::Parse("{} trailing").ok());
}

TEST(DaemonConfigTest, RejectsNonObjectRoot) {
  Result<DaemonConfig> parsed = DaemonConfig::Parse("[1, 2]");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(parsed.status().message(), HasSubstr("expected an object"));
}

TEST(DaemonConfigTest, RejectsUnknownKeysAtEveryLevel) {
  EXPECT_EQ(ErrorAfterPatch(R"({"sockett": "/x"})"), "sockett: unknown key");
  EXPECT_EQ(ErrorAfterPatch(R"({"eal": {"hugepages": 1}})"), "eal.hugepages: unknown key");
  EXPECT_EQ(ErrorAfterPatch(R"({"workers": {"pin": true}})"), "workers.pin: unknown key");
  EXPECT_EQ(ErrorAfterPortPatch(1, R"({"speed": 10})"), "ports[1].speed: unknown key");
  EXPECT_EQ(ErrorAfterPatch(R"({"conn_table": {"size": 1}})"), "conn_table.size: unknown key");
  EXPECT_EQ(ErrorAfterPatch(R"({"tcp_timeouts": {"established": 1}})"),
            "tcp_timeouts.established: unknown key");
  EXPECT_EQ(ErrorAfterPatch(R"({"routes": [{"prefix": "198.18.2.0/24", "via": "198.18.1.9",
                                            "metric": 1}]})"),
            "routes[0].metric: unknown key");
}

TEST(DaemonConfigTest, RejectsWrongTypes) {
  EXPECT_THAT(ErrorAfterPatch(R"({"busy_poll": "yes"})"),
              HasSubstr("busy_poll: expected true or false"));
  EXPECT_THAT(ErrorAfterPatch(R"({"socket": 5})"), HasSubstr("socket: expected a string"));
  EXPECT_THAT(ErrorAfterPatch(R"({"eal": "x"})"), HasSubstr("eal: expected an object"));
  EXPECT_THAT(ErrorAfterPatch(R"({"eal": {"memory_mb": 1.5}})"),
              HasSubstr("eal.memory_mb: expected an integer"));
  EXPECT_THAT(ErrorAfterPatch(R"({"eal": {"extra_args": [1]}})"),
              HasSubstr("eal.extra_args[0]: expected a non-empty string"));
  EXPECT_THAT(ErrorAfterPatch(R"({"workers": {"cpus": "0,1"}})"),
              HasSubstr("workers.cpus: expected an array"));
  EXPECT_THAT(ErrorAfterPatch(R"({"ports": {}})"), HasSubstr("ports: expected an array"));
  EXPECT_THAT(ErrorAfterPatch(R"({"ports": [5]})"), HasSubstr("ports[0]: expected an object"));
  EXPECT_THAT(ErrorAfterPortPatch(0, R"({"address": 5})"),
              HasSubstr("ports[0].address: expected an IPv4 prefix string"));
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"local_addresses": [7]})"),
              HasSubstr("ports[1].local_addresses[0]: expected an IPv4 or IPv6 address or range"));
  EXPECT_THAT(ErrorAfterPatch(R"({"routes": {}})"), HasSubstr("routes: expected an array"));
}

TEST(DaemonConfigTest, RejectsOutOfRangeNumbers) {
  EXPECT_EQ(ErrorAfterPatch(R"({"workers": {"count": 0, "cpus": null}})"),
            "workers.count: 0 is out of range 1..64");
  EXPECT_THAT(ErrorAfterPatch(R"({"workers": {"count": 65, "cpus": null}})"),
              HasSubstr("workers.count: 65 is out of range"));
  EXPECT_THAT(ErrorAfterPatch(R"({"workers": {"cpus": [0, -1]}})"),
              HasSubstr("workers.cpus[1]: -1 is out of range"));
  EXPECT_THAT(ErrorAfterPatch(R"({"eal": {"main_cpu": 5000}})"),
              HasSubstr("eal.main_cpu: 5000 is out of range"));
  EXPECT_THAT(ErrorAfterPatch(R"({"eal": {"memory_mb": 16}})"),
              HasSubstr("eal.memory_mb: 16 is out of range"));
  EXPECT_THAT(ErrorAfterPortPatch(0, R"({"mtu": 20000})"),
              HasSubstr("ports[0].mtu: 20000 is out of range"));
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"rx_descriptors": 8})"),
              HasSubstr("ports[1].rx_descriptors: 8 is out of range"));
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"tx_descriptors": 100000})"),
              HasSubstr("ports[1].tx_descriptors: 100000 is out of range"));
  EXPECT_THAT(ErrorAfterPatch(R"({"conn_table": {"capacity_per_worker": 10}})"),
              HasSubstr("conn_table.capacity_per_worker: 10 is out of range"));
  EXPECT_THAT(ErrorAfterPatch(R"({"conn_table": {"ipv6_capacity_per_worker": 100}})"),
              HasSubstr("conn_table.ipv6_capacity_per_worker: 100 is out of range"));
  EXPECT_THAT(ErrorAfterPatch(R"({"conn_table": {"persistence_capacity": 1000}})"),
              HasSubstr("conn_table.persistence_capacity: 1000 is out of range"));
  EXPECT_THAT(ErrorAfterPatch(R"({"conn_table": {"persistence_capacity": 268435457}})"),
              HasSubstr("conn_table.persistence_capacity: 268435457 is out of range"));
  EXPECT_THAT(ErrorAfterPatch(R"({"tcp_timeouts": {"fin": 0}})"),
              HasSubstr("tcp_timeouts.fin: 0 is out of range"));
  EXPECT_THAT(ErrorAfterPatch(R"({"mbufs_per_port": 100})"),
              HasSubstr("mbufs_per_port: 100 is out of range"));
}

TEST(DaemonConfigTest, RejectsBadScalars) {
  EXPECT_THAT(ErrorAfterPatch(R"({"socket": "run/lbd.sock"})"),
              HasSubstr("socket: \"run/lbd.sock\" is not an absolute path"));
  EXPECT_THAT(ErrorAfterPatch(R"({"socket": "/)" + std::string(120, 'a') + R"("})"),
              HasSubstr("socket:"));
  EXPECT_THAT(ErrorAfterPatch(R"({"state_file": ""})"), HasSubstr("state_file:"));
  EXPECT_THAT(ErrorAfterPatch(R"({"log_level": "loud"})"),
              HasSubstr("log_level: \"loud\" is not one of"));
  EXPECT_THAT(ErrorAfterPatch(R"({"eal": {"file_prefix": "a/b"}})"),
              HasSubstr("eal.file_prefix: \"a/b\""));
  EXPECT_THAT(ErrorAfterPatch(R"({"workers": {"count": 3}})"),
              HasSubstr("workers.cpus: 2 CPUs listed for workers.count 3"));
}

TEST(DaemonConfigTest, RejectsBadPorts) {
  EXPECT_EQ(ErrorAfterPatch(R"({"ports": null})", ErrorCode::kMissingParameter), "ports: missing");
  EXPECT_THAT(ErrorAfterPatch(R"({"ports": []})"), HasSubstr("ports: give 1..16 ports, got 0"));
  EXPECT_EQ(ErrorAfterPortPatch(0, R"({"name": null})", ErrorCode::kMissingParameter),
            "ports[0].name: missing");
  EXPECT_THAT(ErrorAfterPortPatch(0, R"({"name": "a b"})"), HasSubstr("ports[0].name: \"a b\""));
  EXPECT_EQ(ErrorAfterPortPatch(0, R"({"vdev": null})", ErrorCode::kMissingParameter),
            "ports[0]: give exactly one of pci and vdev");
  EXPECT_EQ(ErrorAfterPortPatch(0, R"({"pci": "0000:3b:00.0"})"),
            "ports[0]: give exactly one of pci and vdev");
  EXPECT_THAT(ErrorAfterPortPatch(0, R"({"vdev": null, "pci": "3b:00.0"})"),
              HasSubstr("ports[0].pci: \"3b:00.0\" is not a PCI address"));
  EXPECT_THAT(ErrorAfterPortPatch(0, R"({"vdev": "eth0"})"),
              HasSubstr("ports[0].vdev: \"eth0\" is not a DPDK vdev"));
  EXPECT_THAT(ErrorAfterPortPatch(0, R"({"vdev": "net_tap0,iface=a b"})"),
              HasSubstr("ports[0].vdev:"));
  EXPECT_EQ(ErrorAfterPortPatch(1, R"({"address": null})", ErrorCode::kMissingParameter),
            "ports[1].address: missing");
  EXPECT_EQ(ErrorAfterPortPatch(1, R"({"address": "198.18.1.1/33"})"),
            "ports[1].address: \"198.18.1.1/33\" is not an IPv4 prefix");
  EXPECT_EQ(ErrorAfterPortPatch(1, R"({"address": "2001:db8::1/64"})"),
            "ports[1].address: \"2001:db8::1/64\" is not an IPv4 prefix");
  EXPECT_THAT(ErrorAfterPortPatch(0, R"({"address": "198.18.0.0/24"})"),
              HasSubstr("ports[0].address: \"198.18.0.0/24\" is not a host address"));
}

TEST(DaemonConfigTest, RejectsConflictsBetweenPorts) {
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"name": "client"})"),
              HasSubstr("ports[1].name: \"client\" is already ports[0]"));
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"vdev": "net_af_packet0,iface=other"})"),
              HasSubstr("ports[1]: device \"net_af_packet0\" is already used by port \"client\""));
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"address": "198.18.1.1/23", "local_addresses": null,
                                        "gateway": null})"),
              HasSubstr("ports[1].address: subnet 198.18.0.0/23 overlaps port \"client\""));
}

TEST(DaemonConfigTest, RejectsBadLocalAddressesAndGateway) {
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"local_addresses": ["198.18.2.7"]})"),
              HasSubstr("ports[1].local_addresses[0]: 198.18.2.7 is outside the port's subnet "
                        "198.18.1.0/24"));
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"local_addresses": ["198.18.1.2", "198.18.1.1"]})"),
              HasSubstr("ports[1].local_addresses[1]: 198.18.1.1 is the port's own address"));
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"local_addresses": ["198.18.1.5-198.18.1.2"]})"),
              HasSubstr("ends before it starts"));
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"local_addresses": ["198.18.1.2-x"]})"),
              HasSubstr("is not an IPv4 or IPv6 address or range"));
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"address": "198.18.0.1/16", "local_addresses":
                                          ["198.18.2.0-198.18.3.255"], "gateway": null})"),
              HasSubstr("more than 256 local addresses"));
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"local_addresses": ["198.18.1.2", "198.18.1.2"]})"),
              HasSubstr("198.18.1.2 is already used by ports[1].local_addresses"));
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"gateway": "198.18.0.9"})"),
              HasSubstr("ports[1].gateway: 198.18.0.9 is not a neighbour on the port's subnet"));
  EXPECT_THAT(ErrorAfterPortPatch(1, R"({"gateway": "1.2.3"})"),
              HasSubstr("ports[1].gateway: \"1.2.3\" is not an IPv4 address"));
}

TEST(DaemonConfigTest, RejectsBadRoutes) {
  EXPECT_EQ(ErrorAfterPatch(R"({"routes": [{"via": "198.18.1.9"}]})", ErrorCode::kMissingParameter),
            "routes[0].prefix: missing");
  EXPECT_THAT(ErrorAfterPatch(R"({"routes": [{"prefix": "198.18.2.1/24", "via": "198.18.1.9"}]})"),
              HasSubstr("routes[0].prefix: \"198.18.2.1/24\" has host bits set (did you mean "
                        "198.18.2.0/24?)"));
  EXPECT_THAT(ErrorAfterPatch(R"({"routes": [{"prefix": "198.18.2.0/24", "via": "198.18.9.9"}]})"),
              HasSubstr("routes[0].via: next hop 198.18.9.9 is not a neighbour on any port"));
  EXPECT_THAT(ErrorAfterPatch(R"({"routes": [{"prefix": "198.18.2.0/24", "via": "198.18.1.9",
                                             "port": "client"}]})"),
              HasSubstr("next hop 198.18.1.9 is not a neighbour on port \"client\""));
  EXPECT_THAT(ErrorAfterPatch(R"({"routes": [{"prefix": "198.18.2.0/24", "via": "198.18.1.9",
                                             "port": "wan"}]})"),
              HasSubstr("routes[0].port: no port is named \"wan\""));
  EXPECT_THAT(ErrorAfterPatch(R"({"routes": [{"prefix": "198.18.2.0/24", "via": "198.18.1.9"},
                                            {"prefix": "198.18.2.0/24", "via": "198.18.1.8"}]})"),
              HasSubstr("routes[1].prefix: 198.18.2.0/24 is already routes[0]"));
}

TEST(DaemonConfigTest, AcceptsDualFamilyPorts) {
  json config = DualFamilyConfig();
  config["ports"][1]["gateway6"] = "2001:db8:1::fe";
  // IPv4 and IPv6 entries in one array, in file order; the last range carries over two
  // 16-bit groups.
  config["ports"][1]["local_addresses"] = {"198.18.1.2-198.18.1.3", "2001:db8:1::a",
                                           "2001:db8:1::ffff:fffe-2001:db8:1::1:0:1"};
  Result<DaemonConfig> parsed = ParseJson(config);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();

  const PortConfig& client = parsed->ports[0];
  ASSERT_TRUE(client.address6.has_value());
  EXPECT_EQ(client.address6->ToString(), "2001:db8::1/64");
  EXPECT_FALSE(client.gateway6.has_value());

  const PortConfig& backend = parsed->ports[1];
  EXPECT_EQ(backend.address.ToString(), "198.18.1.1/24");
  ASSERT_TRUE(backend.address6.has_value());
  EXPECT_EQ(backend.address6->ToString(), "2001:db8:1::1/64");
  ASSERT_TRUE(backend.gateway.has_value());
  EXPECT_EQ(backend.gateway->ToString(), "198.18.1.254");
  ASSERT_TRUE(backend.gateway6.has_value());
  EXPECT_EQ(backend.gateway6->ToString(), "2001:db8:1::fe");
  EXPECT_THAT(Texts(backend.local_addresses),
              ElementsAre("198.18.1.2", "198.18.1.3", "2001:db8:1::a", "2001:db8:1::ffff:fffe",
                          "2001:db8:1::ffff:ffff", "2001:db8:1::1:0:0", "2001:db8:1::1:0:1"));
}

TEST(DaemonConfigTest, AddressSixIsOptionalAndPointToPointMayEndInZero) {
  Result<DaemonConfig> parsed = ParseJson(TestbedConfig());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_FALSE(parsed->ports[0].address6.has_value());
  EXPECT_FALSE(parsed->ports[1].gateway6.has_value());

  json config = DualFamilyConfig();
  config["ports"][0]["address6"] = "2001:db8::/127";
  config["ports"][1]["address6"] = "2001:db8:1::/128";
  parsed = ParseJson(config);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->ports[0].address6->ToString(), "2001:db8::/127");
}

TEST(DaemonConfigTest, ParsesIpv6RoutesAndResolvesTheirPort) {
  json config = DualFamilyConfig();
  config["routes"] = json::parse(R"([
    {"prefix": "198.18.64.0/18", "via": "198.18.1.254"},
    {"prefix": "2001:db8:99::/48", "via": "2001:db8:1::fe"},
    {"prefix": "2001:db8:aa::/48", "via": "2001:db8::9", "port": "client"},
    {"prefix": "::/0", "via": "2001:db8::fe"}
  ])");
  Result<DaemonConfig> parsed = ParseJson(config);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const std::vector<RouteConfig>& routes = parsed->routes;
  ASSERT_EQ(routes.size(), 4u);
  EXPECT_EQ(routes[0].port, "backend");
  EXPECT_EQ(routes[1].prefix.ToString(), "2001:db8:99::/48");
  EXPECT_EQ(routes[1].via.ToString(), "2001:db8:1::fe");
  EXPECT_EQ(routes[1].port, "backend");  // the port whose address6 subnet holds via
  EXPECT_EQ(routes[2].port, "client");
  EXPECT_EQ(routes[3].prefix.ToString(), "::/0");
  EXPECT_EQ(routes[3].port, "client");
}

TEST(DaemonConfigTest, RejectsBadAddressSix) {
  EXPECT_EQ(DualFamilyPortError(1, R"({"address6": "198.18.5.1/24"})"),
            "ports[1].address6: \"198.18.5.1/24\" is not an IPv6 prefix");
  EXPECT_EQ(DualFamilyPortError(1, R"({"address6": "2001:db8:1::1/129"})"),
            "ports[1].address6: \"2001:db8:1::1/129\" is not an IPv6 prefix");
  EXPECT_EQ(DualFamilyPortError(1, R"({"address6": "2001:db8:1::1"})"),
            "ports[1].address6: \"2001:db8:1::1\" is not an IPv6 prefix");
  EXPECT_THAT(DualFamilyPortError(1, R"({"address6": 6})"),
              HasSubstr("ports[1].address6: expected an IPv6 prefix string"));
  EXPECT_THAT(DualFamilyPortError(1, R"({"address6": "2001:db8:1::/64"})"),
              HasSubstr("ports[1].address6: \"2001:db8:1::/64\" is not a host address"));
  EXPECT_THAT(DualFamilyPortError(1, R"({"address6": "::/0"})"),
              HasSubstr("ports[1].address6: \"::/0\" is not a host address"));
  // address stays IPv4 and required.
  EXPECT_EQ(DualFamilyPortError(1, R"({"address": "2001:db8:1::1/64"})"),
            "ports[1].address: \"2001:db8:1::1/64\" is not an IPv4 prefix");
}

TEST(DaemonConfigTest, RejectsBadGatewaySix) {
  EXPECT_EQ(ErrorAfterPortPatch(1, R"({"gateway6": "2001:db8:1::fe"})"),
            "ports[1].gateway6: 2001:db8:1::fe needs ports[1].address6 (the port has no IPv6 "
            "subnet)");
  EXPECT_EQ(DualFamilyPortError(1, R"({"gateway6": "2001:db8:2::fe"})"),
            "ports[1].gateway6: 2001:db8:2::fe is not a neighbour on the port's subnet "
            "2001:db8:1::/64");
  EXPECT_THAT(DualFamilyPortError(1, R"({"gateway6": "2001:db8:1::1"})"),
              HasSubstr("ports[1].gateway6: 2001:db8:1::1 is not a neighbour"));
  EXPECT_EQ(DualFamilyPortError(1, R"({"gateway6": "198.18.1.254"})"),
            "ports[1].gateway6: \"198.18.1.254\" is not an IPv6 address");
  EXPECT_EQ(DualFamilyPortError(1, R"({"gateway": "2001:db8:1::fe"})"),
            "ports[1].gateway: \"2001:db8:1::fe\" is not an IPv4 address");
}

TEST(DaemonConfigTest, RejectsBadIpv6LocalAddresses) {
  EXPECT_EQ(ErrorAfterPortPatch(1, R"({"local_addresses": ["198.18.1.2", "2001:db8:1::2"]})"),
            "ports[1].local_addresses[1]: 2001:db8:1::2 is an IPv6 address but ports[1].address6 "
            "is not set (an IPv6 local address needs the port's IPv6 subnet)");
  EXPECT_EQ(DualFamilyPortError(1, R"({"local_addresses": ["2001:db8:2::2"]})"),
            "ports[1].local_addresses[0]: 2001:db8:2::2 is outside the port's subnet "
            "2001:db8:1::/64");
  EXPECT_EQ(DualFamilyPortError(1, R"({"local_addresses": ["2001:db8:1::1"]})"),
            "ports[1].local_addresses[0]: 2001:db8:1::1 is the port's own address");
  EXPECT_EQ(DualFamilyPortError(1, R"({"local_addresses": ["2001:db8:1::0-2001:db8:1::3"]})"),
            "ports[1].local_addresses[0]: 2001:db8:1::1 is the port's own address");
  EXPECT_EQ(DualFamilyPortError(1, R"({"local_addresses": ["2001:db8:1::5-2001:db8:1::2"]})"),
            "ports[1].local_addresses[0]: range \"2001:db8:1::5-2001:db8:1::2\" ends before it "
            "starts");
  EXPECT_EQ(DualFamilyPortError(1, R"({"local_addresses": ["198.18.1.2-2001:db8:1::5"]})"),
            "ports[1].local_addresses[0]: range \"198.18.1.2-2001:db8:1::5\" mixes IPv4 and IPv6");
  EXPECT_EQ(DualFamilyPortError(1, R"({"local_addresses": ["2001:db8:1::2-198.18.1.5"]})"),
            "ports[1].local_addresses[0]: range \"2001:db8:1::2-198.18.1.5\" mixes IPv4 and IPv6");
  EXPECT_THAT(DualFamilyPortError(1, R"({"local_addresses": ["2001:db8:1::2", "2001:db8:1::2"]})"),
              HasSubstr("ports[1].local_addresses: 2001:db8:1::2 is already used by "
                        "ports[1].local_addresses"));
}

TEST(DaemonConfigTest, LimitsLocalAddressesOfBothFamiliesTogether) {
  // 100 IPv4 + 156 IPv6 = 256: the limit exactly.
  json config = DualFamilyConfig();
  config["ports"][1]["local_addresses"] = {"198.18.1.2-198.18.1.101",
                                           "2001:db8:1::1:0-2001:db8:1::1:9b"};
  Result<DaemonConfig> parsed = ParseJson(config);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->ports[1].local_addresses.size(), kMaxLocalAddressesPerPort);
  EXPECT_EQ(parsed->ports[1].local_addresses.back().ToString(), "2001:db8:1::1:9b");

  config["ports"][1]["local_addresses"].push_back("2001:db8:1::2:0");
  EXPECT_EQ(ErrorOf(config),
            "ports[1].local_addresses[2]: more than 256 local addresses on one port");
  // A range far wider than the limit stops at the limit instead of expanding.
  EXPECT_EQ(DualFamilyPortError(
                1, R"({"local_addresses": ["2001:db8:1::2-2001:db8:1:0:ffff:ffff:ffff:ffff"]})"),
            "ports[1].local_addresses[0]: more than 256 local addresses on one port");
}

TEST(DaemonConfigTest, RejectsIpv6ConflictsBetweenPorts) {
  EXPECT_EQ(DualFamilyPortError(1, R"({"address6": "2001:db8:0:0:1::1/80"})"),
            "ports[1].address6: subnet 2001:db8:0:0:1::/80 overlaps port \"client\" "
            "(2001:db8::1/64)");
  EXPECT_EQ(DualFamilyPortError(1, R"({"address6": "2001:db8::2/48"})"),
            "ports[1].address6: subnet 2001:db8::/48 overlaps port \"client\" (2001:db8::1/64)");
  // One port with address6, the other without: nothing to overlap.
  json config = DualFamilyConfig();
  config["ports"][0].erase("address6");
  EXPECT_TRUE(ParseJson(config).ok());
}

TEST(DaemonConfigTest, RejectsBadIpv6Routes) {
  EXPECT_EQ(DualFamilyRoutesError(R"([{"prefix": "2001:db8:99::/48", "via": "198.18.1.9"}])"),
            "routes[0].via: next hop 198.18.1.9 is not of the same address family as the prefix "
            "2001:db8:99::/48");
  EXPECT_EQ(DualFamilyRoutesError(R"([{"prefix": "198.18.2.0/24", "via": "2001:db8:1::9"}])"),
            "routes[0].via: next hop 2001:db8:1::9 is not of the same address family as the "
            "prefix 198.18.2.0/24");
  EXPECT_EQ(DualFamilyRoutesError(R"([{"prefix": "2001:db8:99::/48", "via": "2001:db8:7::1"}])"),
            "routes[0].via: next hop 2001:db8:7::1 is not a neighbour on any port's address6 "
            "subnet");
  EXPECT_EQ(DualFamilyRoutesError(R"([{"prefix": "2001:db8:99::/48", "via": "2001:db8:1::1"}])"),
            "routes[0].via: next hop 2001:db8:1::1 is not a neighbour on any port's address6 "
            "subnet");  // the port's own address
  EXPECT_EQ(DualFamilyRoutesError(
                R"([{"prefix": "2001:db8:99::/48", "via": "2001:db8:1::9", "port": "client"}])"),
            "routes[0].via: next hop 2001:db8:1::9 is not a neighbour on port \"client\"");
  EXPECT_EQ(
      ErrorAfterPatch(R"({"routes": [{"prefix": "2001:db8:99::/48", "via": "2001:db8::9"}]})"),
      "routes[0].via: next hop 2001:db8::9 is not a neighbour on any port's address6 subnet");
  EXPECT_EQ(DualFamilyRoutesError(R"([{"prefix": "2001:db8:99::1/48", "via": "2001:db8:1::9"}])"),
            "routes[0].prefix: \"2001:db8:99::1/48\" has host bits set (did you mean "
            "2001:db8:99::/48?)");
  EXPECT_EQ(DualFamilyRoutesError(R"([{"prefix": "2001:db8:99::/129", "via": "2001:db8:1::9"}])"),
            "routes[0].prefix: \"2001:db8:99::/129\" is not an IPv4 or IPv6 prefix");
  EXPECT_THAT(DualFamilyRoutesError(R"([{"prefix": "2001:db8:99::/48", "via": 1}])"),
              HasSubstr("routes[0].via: expected an IPv4 or IPv6 address string"));
  EXPECT_EQ(DualFamilyRoutesError(R"([{"prefix": "2001:db8:99::/48", "via": "2001:db8:1::9"},
                                      {"prefix": "2001:db8:99::/48", "via": "2001:db8:1::8"}])"),
            "routes[1].prefix: 2001:db8:99::/48 is already routes[0]");
}

TEST(DaemonConfigTest, LoadReadsFileAndNamesIt) {
  char dir_template[] = "/tmp/daemon_config_test.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  std::string dir = dir_template;
  std::string path = dir + "/lbd.json";
  {
    std::ofstream file(path);
    file << MinimalConfig().dump(2);
  }
  Result<DaemonConfig> loaded = DaemonConfig::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->ports.at(0).name, "p0");
  {
    std::ofstream file(path);
    file << R"({"ports": [], "x": 1})";
  }
  Result<DaemonConfig> bad = DaemonConfig::Load(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("config file " + path + ": ports:"));
  unlink(path.c_str());
  Result<DaemonConfig> missing = DaemonConfig::Load(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ErrorCode::kIoError);
  rmdir(dir.c_str());
}

// configs/ holds the documented examples; each must stay valid. meson compiles this file as
// ../tests/common/..., relative to the build directory that meson test runs in.
TEST(DaemonConfigTest, ExampleConfigsParse) {
  std::filesystem::path configs =
      std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "configs";
  std::error_code error;
  if (!std::filesystem::is_directory(configs, error)) {
    GTEST_SKIP() << "no configs/ at " << configs << " (run from the build directory)";
  }
  int parsed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(configs)) {
    if (entry.path().extension() != ".json") {
      continue;
    }
    Result<DaemonConfig> config = DaemonConfig::Load(entry.path().string());
    EXPECT_TRUE(config.ok()) << config.status().ToString();
    ++parsed;
  }
  EXPECT_GE(parsed, 4);
}

}  // namespace
}  // namespace fulcrum
