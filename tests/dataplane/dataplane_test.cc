// Smoke test of the real data plane on net_ring vdevs, without hugepages or a NIC.
//
// EAL starts once per process, so one Dataplane is shared by every test of the suite
// (created in SetUpTestSuite, destroyed in TearDownTestSuite); each test starts and stops
// the workers itself. net_ring ports without arguments loop back: what a queue transmits,
// the same queue receives.
#include "dataplane/dataplane.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

namespace fulcrum::dataplane {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kDeadline = 5s;

DaemonConfig SmokeConfig() {
  std::string text = fmt::format(R"({{
    "eal": {{"no_huge": true, "memory_mb": 256, "file_prefix": "fulcrum-test-{}",
             "extra_args": ["--no-shconf"]}},
    "workers": {{"count": 2}},
    "ports": [
      {{"name": "ring0", "vdev": "net_ring0", "address": "198.18.0.1/24",
        "rx_descriptors": 256, "tx_descriptors": 256}},
      {{"name": "ring1", "vdev": "net_ring1", "address": "198.18.1.1/24",
        "local_addresses": ["198.18.1.2-198.18.1.5"],
        "rx_descriptors": 256, "tx_descriptors": 256}}]}})",
                                 getpid());
  Result<DaemonConfig> config = DaemonConfig::Parse(text);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return config.ok() ? *config : DaemonConfig{};
}

// Sends every received packet back out of the port it came in on.
void Echo(WorkerContext& worker, std::uint16_t rx_port, rte_mbuf** packets, std::uint16_t count) {
  for (std::uint16_t i = 0; i < count; ++i) {
    EnqueueTx(worker, rx_port, packets[i]);
  }
}

std::uint64_t Drops(const WorkerContext& worker, DropReason reason) {
  return worker.counters.drops[static_cast<std::size_t>(reason)].Read();
}

// Waits (bounded) until `done` holds.
template <typename Predicate>
bool WaitFor(Predicate done) {
  auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

class DataplaneTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      return;
    }
    Result<std::unique_ptr<Dataplane>> created = Dataplane::Create(SmokeConfig());
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    dataplane_ = std::move(created).value().release();
    runtime_dir_ = rte_eal_get_runtime_dir();
  }

  // EAL leaves its runtime directory behind; this one is ours (the prefix has our pid).
  static void TearDownTestSuite() {
    delete dataplane_;
    dataplane_ = nullptr;
    if (!runtime_dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(runtime_dir_, ignored);
    }
  }

  void SetUp() override {
    if (geteuid() != 0) {
      GTEST_SKIP() << "DPDK needs root";
    }
    ASSERT_NE(dataplane_, nullptr);
  }

  void TearDown() override {
    if (dataplane_ != nullptr) {
      dataplane_->Stop();
      ASSERT_TRUE(dataplane_->SetBurstHandler(DropAllNoService, nullptr).ok());
    }
  }

  // Puts `count` 60-byte packets on queue 0 of `port_id` while the workers are stopped
  // (nobody else uses the queue then); the loop-back makes rx queue 0 receive them.
  static void Inject(std::uint16_t port_id, std::uint16_t count) {
    ASSERT_FALSE(dataplane_->running());
    rte_mempool* pool = dataplane_->mbuf_pool(dataplane_->port(0).socket);
    ASSERT_NE(pool, nullptr);
    for (std::uint16_t i = 0; i < count; ++i) {
      rte_mbuf* packet = rte_pktmbuf_alloc(pool);
      ASSERT_NE(packet, nullptr);
      ASSERT_NE(rte_pktmbuf_append(packet, 60), nullptr);
      ASSERT_EQ(rte_eth_tx_burst(port_id, 0, &packet, 1), 1);
    }
  }

  static Dataplane* dataplane_;
  static std::string runtime_dir_;
};

Dataplane* DataplaneTest::dataplane_ = nullptr;
std::string DataplaneTest::runtime_dir_;

TEST_F(DataplaneTest, DescribesPortsAndWorkers) {
  ASSERT_TRUE(dataplane_->Start().ok());
  json described = dataplane_->Describe();
  ASSERT_EQ(described["ports"].size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const json& port = described["ports"][i];
    EXPECT_EQ(port["name"], fmt::format("ring{}", i));
    EXPECT_EQ(port["driver"], "net_ring");
    EXPECT_EQ(port["device"], fmt::format("net_ring{}", i));
    EXPECT_EQ(port["link_up"], true);
    EXPECT_EQ(port["rx_queues"], 2);
    EXPECT_EQ(port["tx_queues"], 2);
    EXPECT_EQ(port["needs_handoff"], false);
    EXPECT_EQ(port["mtu"], 1500);
    EXPECT_TRUE(port["offloads"].contains("rte_flow"));
  }
  ASSERT_EQ(described["workers"].size(), 2u);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  for (std::size_t i = 0; i < 2; ++i) {
    const json& worker = described["workers"][i];
    EXPECT_EQ(worker["lcore"], i + 1);
    EXPECT_LT(worker["cpu"].get<long>(), cpus);
    ASSERT_EQ(worker["queues"].size(), 2u);
    EXPECT_EQ(worker["queues"][1]["port"], "ring1");
    EXPECT_EQ(worker["queues"][1]["rx"], i);
    EXPECT_EQ(worker["queues"][1]["tx"], i);
  }
  EXPECT_NE(dataplane_->FindPort("ring1"), nullptr);
  EXPECT_EQ(dataplane_->FindPort("ring2"), nullptr);
}

TEST_F(DataplaneTest, WorkersPollAndBackOffWhenIdle) {
  std::uint64_t passes_before[2] = {dataplane_->worker(0).counters.passes.Read(),
                                    dataplane_->worker(1).counters.passes.Read()};
  ASSERT_TRUE(dataplane_->Start().ok());
  EXPECT_TRUE(WaitFor([&] {
    return dataplane_->worker(0).counters.passes.Read() > passes_before[0] + 100 &&
           dataplane_->worker(1).counters.passes.Read() > passes_before[1] + 100;
  }));
  EXPECT_TRUE(dataplane_->worker(0).online.load());
  std::uint64_t epoch = dataplane_->worker(1).quiescent_epoch.load();
  EXPECT_TRUE(WaitFor([&] { return dataplane_->worker(1).quiescent_epoch.load() > epoch; }));

  // Two idle workers sleeping up to 1 ms per pass must cost far less than a core each.
  std::this_thread::sleep_for(100ms);  // past the spin and pause phases
  double cpu_before = ProcessCpuSeconds();
  auto wall_before = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(500ms);
  double cpu = ProcessCpuSeconds() - cpu_before;
  double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_before).count();
  EXPECT_LT(cpu / wall, 0.5) << "idle workers used " << cpu << " s of CPU in " << wall << " s";
  EXPECT_LT(dataplane_->Describe()["workers"][0]["busy_ratio"].get<double>(), 0.5);

  dataplane_->Stop();
  EXPECT_FALSE(dataplane_->worker(0).online.load());
  std::uint64_t stopped_passes = dataplane_->worker(0).counters.passes.Read();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(dataplane_->worker(0).counters.passes.Read(), stopped_passes);
}

TEST_F(DataplaneTest, DefaultHandlerDropsEveryPacketAsNoService) {
  const WorkerContext& worker = dataplane_->worker(0);
  std::uint64_t rx_before = worker.counters.rx_packets.Read();
  std::uint64_t drops_before = Drops(worker, DropReason::kNoService);
  std::uint16_t port_id = dataplane_->port(1).port_id;
  Inject(port_id, 10);
  ASSERT_TRUE(dataplane_->Start().ok());
  EXPECT_TRUE(WaitFor([&] { return Drops(worker, DropReason::kNoService) >= drops_before + 10; }));
  EXPECT_EQ(worker.counters.rx_packets.Read(), rx_before + 10);
  EXPECT_EQ(Drops(worker, DropReason::kNoService), drops_before + 10);
  dataplane_->Stop();
  json described = dataplane_->Describe();
  EXPECT_EQ(described["workers"][0]["drops"]["no_service"], drops_before + 10);
}

TEST_F(DataplaneTest, HandlerTransmitsThroughTxBuffers) {
  ASSERT_TRUE(dataplane_->SetBurstHandler(Echo, nullptr).ok());
  const WorkerContext& worker = dataplane_->worker(0);
  std::uint64_t tx_before = worker.counters.tx_packets.Read();
  std::uint64_t tx_bytes_before = worker.counters.tx_bytes.Read();
  Inject(dataplane_->port(0).port_id, 3);
  ASSERT_TRUE(dataplane_->Start().ok());
  EXPECT_FALSE(dataplane_->SetBurstHandler(DropAllNoService, nullptr).ok());
  // The three packets circulate: each pass receives and re-sends them.
  EXPECT_TRUE(WaitFor([&] { return worker.counters.tx_packets.Read() >= tx_before + 300; }));
  dataplane_->Stop();
  std::uint64_t sent = worker.counters.tx_packets.Read() - tx_before;
  EXPECT_EQ(worker.counters.tx_bytes.Read() - tx_bytes_before, sent * 60);
  EXPECT_EQ(Drops(worker, DropReason::kTxFull), 0u);
  EXPECT_GT(dataplane_->Describe()["ports"][0]["tx_packets"].get<std::uint64_t>(), 0u);
  // Drain what is still in flight so later tests start from empty rings.
  ASSERT_TRUE(dataplane_->SetBurstHandler(DropAllNoService, nullptr).ok());
  ASSERT_TRUE(dataplane_->Start().ok());
  std::this_thread::sleep_for(20ms);
}

TEST_F(DataplaneTest, SecondEalInitIsRefused) {
  Result<std::unique_ptr<Dataplane>> second = Dataplane::Create(SmokeConfig());
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("already initialised"), std::string::npos)
      << second.status().ToString();
}

}  // namespace
}  // namespace fulcrum::dataplane
