#include "dataplane/eal.h"

#include <algorithm>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rte_log.h>

namespace fulcrum::dataplane {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

DaemonConfig ParseOrDie(const std::string& text) {
  Result<DaemonConfig> config = DaemonConfig::Parse(text);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return config.ok() ? *config : DaemonConfig{};
}

DaemonConfig TestbedConfig() {
  return ParseOrDie(R"({
    "eal": {"main_cpu": 0, "no_huge": true, "file_prefix": "lbt",
            "extra_args": ["--huge-unlink", "--vmware-tsc-map"]},
    "workers": {"count": 2, "cpus": [1, 1]},
    "ports": [{"name": "client", "vdev": "net_af_packet0,iface=lb-c",
               "address": "198.18.0.1/24"},
              {"name": "backend", "vdev": "net_af_packet1,iface=lb-b,qpairs=1",
               "address": "198.18.1.1/24"}]})");
}

// The value following `flag` in `args`, or "" when the flag is absent.
std::string ValueOf(const std::vector<std::string>& args, const std::string& flag) {
  auto it = std::find(args.begin(), args.end(), flag);
  return it == args.end() || it + 1 == args.end() ? "" : *(it + 1);
}

std::vector<std::string> ValuesOf(const std::vector<std::string>& args, const std::string& flag) {
  std::vector<std::string> values;
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == flag) {
      values.push_back(args[i + 1]);
    }
  }
  return values;
}

bool Has(const std::vector<std::string>& args, const std::string& flag) {
  return std::find(args.begin(), args.end(), flag) != args.end();
}

TEST(EalPlanTest, TestbedArguments) {
  Result<EalPlan> plan = BuildEalPlan(TestbedConfig(), 2);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  const std::vector<std::string>& args = plan->args;
  EXPECT_EQ(args.at(0), "lbd");
  EXPECT_EQ(ValueOf(args, "--lcores"), "0@0,1@1,2@1");
  EXPECT_EQ(ValueOf(args, "--main-lcore"), "0");
  EXPECT_EQ(ValueOf(args, "--proc-type"), "primary");
  EXPECT_EQ(ValueOf(args, "--file-prefix"), "lbt");
  EXPECT_TRUE(Has(args, "--no-telemetry"));
  EXPECT_TRUE(Has(args, "--no-pci"));
  EXPECT_FALSE(Has(args, "-a"));
  EXPECT_TRUE(Has(args, "--no-huge"));
  EXPECT_EQ(ValueOf(args, "-m"), "512");
  // af_packet gets a queue pair per worker unless the vdev says otherwise, and a packet ring of
  // the port's descriptor count.
  EXPECT_THAT(ValuesOf(args, "--vdev"),
              ElementsAre("net_af_packet0,iface=lb-c,qpairs=2,framecnt=1024",
                          "net_af_packet1,iface=lb-b,qpairs=1,framecnt=1024"));
  EXPECT_EQ(ValueOf(args, "--log-level"), std::to_string(RTE_LOG_NOTICE));
  // Extra arguments come last, verbatim, so they can override.
  ASSERT_GE(args.size(), 2u);
  EXPECT_THAT(std::vector<std::string>(args.end() - 2, args.end()),
              ElementsAre("--huge-unlink", "--vmware-tsc-map"));
  EXPECT_THAT(plan->worker_cpus, ElementsAre(1u, 1u));
}

TEST(EalPlanTest, PciPortsAreAllowListed) {
  DaemonConfig config = ParseOrDie(R"({
    "log_level": "error",
    "eal": {"memory_mb": 2048},
    "ports": [{"name": "wan", "pci": "0000:3b:00.0", "address": "198.18.0.1/24"},
              {"name": "dev", "vdev": "net_tap0", "address": "198.18.1.1/24"}]})");
  Result<EalPlan> plan = BuildEalPlan(config, 8);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_FALSE(Has(plan->args, "--no-pci"));
  EXPECT_FALSE(Has(plan->args, "--no-huge"));
  EXPECT_EQ(ValueOf(plan->args, "-a"), "0000:3b:00.0");
  EXPECT_THAT(ValuesOf(plan->args, "--vdev"), ElementsAre("net_tap0"));
  EXPECT_EQ(ValueOf(plan->args, "-m"), "2048");
  EXPECT_EQ(ValueOf(plan->args, "--log-level"), std::to_string(RTE_LOG_ERR));
}

TEST(EalPlanTest, HugepagesWithoutMemoryLetEalSize) {
  DaemonConfig config = ParseOrDie(
      R"({"ports": [{"name": "p", "pci": "0000:00:04.0", "address": "198.18.0.1/24"}]})");
  Result<EalPlan> plan = BuildEalPlan(config, 4);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_FALSE(Has(plan->args, "-m"));
  EXPECT_EQ(ValueOf(plan->args, "--file-prefix"), "lbd");
}

TEST(EalPlanTest, DefaultPlacementFollowsMainCpuAndWraps) {
  DaemonConfig config = ParseOrDie(R"({
    "eal": {"main_cpu": 2},
    "workers": {"count": 3},
    "ports": [{"name": "p", "vdev": "net_null0", "address": "198.18.0.1/24"}]})");
  Result<EalPlan> plan = BuildEalPlan(config, 4);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_THAT(plan->worker_cpus, ElementsAre(3u, 0u, 1u));
  EXPECT_EQ(ValueOf(plan->args, "--lcores"), "0@2,1@3,2@0,3@1");
}

TEST(EalPlanTest, RejectsCpusTheMachineLacks) {
  Result<EalPlan> plan = BuildEalPlan(TestbedConfig(), 1);
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.status().message(),
              HasSubstr("workers.cpus[0]: CPU 1 does not exist (this machine has 1 CPUs)"));
  DaemonConfig config = TestbedConfig();
  config.eal.main_cpu = 7;
  plan = BuildEalPlan(config, 4);
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.status().message(), HasSubstr("eal.main_cpu: CPU 7 does not exist"));
}

TEST(EalPlanTest, DeviceArgsForAfPacket) {
  PortConfig port;
  port.vdev = "net_af_packet3,iface=x,qpairs=1,framecnt=64,blocksz=4096";
  EXPECT_EQ(PortDeviceArgs(port, 2), port.vdev);
  port.vdev = "net_af_packet3,iface=xqpairs";
  port.rx_descriptors = 4096;
  port.tx_descriptors = 1024;
  EXPECT_EQ(PortDeviceArgs(port, 2), "net_af_packet3,iface=xqpairs,qpairs=2,framecnt=4096");
  port.rx_descriptors = 511;
  port.tx_descriptors = 64;
  EXPECT_EQ(PortDeviceArgs(port, 4), "net_af_packet3,iface=xqpairs,qpairs=4,framecnt=512");
  port.vdev = "net_ring0";
  EXPECT_EQ(PortDeviceArgs(port, 2), "net_ring0");
  port.vdev.clear();
  port.pci = "0000:3b:00.1,rxq_cqe_comp_en=1";
  EXPECT_EQ(PortDeviceArgs(port, 2), port.pci);
}

// Devices whose kernel side may move a flow between queues get one; the others get a queue
// per worker (as many as the device has).
TEST(EalPlanTest, OrderedQueueLimitByDriver) {
  EXPECT_EQ(OrderedQueueLimit("net_tap"), 1);
  EXPECT_EQ(OrderedQueueLimit("net_af_packet"), 0xffff);  // fanout without rollover
  EXPECT_EQ(OrderedQueueLimit("net_af_xdp"), 0xffff);
  EXPECT_EQ(OrderedQueueLimit("net_ring"), 0xffff);
  EXPECT_EQ(OrderedQueueLimit("net_ice"), 0xffff);
}

// Single-queue ports are spread over the workers from their home worker on; a port with a
// queue per worker gives worker w queue w.
TEST(EalPlanTest, QueuesSpreadFromTheHomeWorker) {
  struct Case {
    std::uint32_t home;
    std::uint16_t queues;
    std::uint32_t workers;
    std::vector<int> queue_of_worker;
  };
  const Case cases[] = {
      {0, 2, 2, {0, 1}},         {0, 1, 2, {0, -1}},
      {1, 1, 2, {-1, 0}},        {2, 1, 2, {0, -1}},
      {1, 2, 4, {-1, 0, 1, -1}}, {3, 2, 4, {1, -1, -1, 0}},
      {0, 4, 4, {0, 1, 2, 3}},   {0, 1, 1, {0}},
  };
  for (const Case& c : cases) {
    std::vector<int> got;
    for (std::uint32_t w = 0; w < c.workers; ++w) {
      const int q = WorkerQueue(w, c.home, c.queues, c.workers);
      got.push_back(q);
      if (q >= 0) {
        EXPECT_EQ(QueueWorker(static_cast<std::uint16_t>(q), c.home, c.workers), w);
      }
    }
    EXPECT_EQ(got, c.queue_of_worker) << "home " << c.home << " queues " << c.queues;
  }
}

TEST(EalPlanTest, LogLevelsMapOneNotchQuieter) {
  EXPECT_EQ(DpdkLogLevel(LogLevel::kDebug), RTE_LOG_INFO);
  EXPECT_EQ(DpdkLogLevel(LogLevel::kInfo), RTE_LOG_NOTICE);
  EXPECT_EQ(DpdkLogLevel(LogLevel::kWarning), RTE_LOG_WARNING);
  EXPECT_EQ(DpdkLogLevel(LogLevel::kError), RTE_LOG_ERR);
}

TEST(EalPlanTest, MacFormatting) {
  EXPECT_EQ(MacToString({0x02, 0x00, 0xab, 0x0c, 0xff, 0x01}), "02:00:ab:0c:ff:01");
}

}  // namespace
}  // namespace fulcrum::dataplane
