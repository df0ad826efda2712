// Smoke test of the real data plane on net_ring ports, without hugepages or a NIC.
//
// EAL starts once per process, so every EAL test of the binary shares one Dataplane
// (tests/dataplane/ring_dataplane.h); each test starts and stops the workers itself.
#include "dataplane/dataplane.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "tests/dataplane/ring_dataplane.h"

namespace fulcrum::dataplane {
namespace {

using json = nlohmann::json;
using nat::DropReason;
using testing::RingDataplane;
using namespace std::chrono_literals;

constexpr auto kDeadline = 5s;

// Sends every received packet back out of the port it came in on.
void Echo(WorkerContext& worker, std::uint16_t rx_port, rte_mbuf** packets, std::uint16_t count) {
  for (std::uint16_t i = 0; i < count; ++i) {
    EnqueueTx(worker, rx_port, packets[i]);
  }
}

std::uint64_t Drops(const WorkerContext& worker, DropReason reason) {
  return worker.counters.Drops(reason);
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
  void SetUp() override {
    FULCRUM_REQUIRE_DATAPLANE();
    env_ = RingDataplane::instance();
    dataplane_ = env_->dataplane();
  }

  void TearDown() override {
    if (dataplane_ != nullptr) {
      dataplane_->Stop();
      ASSERT_TRUE(dataplane_->SetBurstHandler(DropAllNoService, nullptr).ok());
      env_->Drain();
    }
  }

  // Puts `count` 60-byte frames on rx queue 0 of port `port`.
  void Inject(std::size_t port, std::uint16_t count) {
    const std::vector<std::uint8_t> frame(60, 0);
    for (std::uint16_t i = 0; i < count; ++i) {
      env_->Inject(port, 0, frame);
    }
  }

  RingDataplane* env_ = nullptr;
  Dataplane* dataplane_ = nullptr;
};

TEST_F(DataplaneTest, DescribesPortsAndWorkers) {
  ASSERT_TRUE(dataplane_->Start().ok());
  json described = dataplane_->Describe();
  ASSERT_EQ(described["ports"].size(), 2u);
  const char* names[] = {"client", "backend"};
  for (std::size_t i = 0; i < 2; ++i) {
    const json& port = described["ports"][i];
    EXPECT_EQ(port["name"], names[i]);
    EXPECT_EQ(port["driver"], "net_ring");
    EXPECT_EQ(port["device"], fmt::format("net_ring_p{}", i));
    EXPECT_EQ(port["link_up"], true);
    EXPECT_EQ(port["rx_queues"], 2);
    EXPECT_EQ(port["tx_queues"], 2);
    EXPECT_EQ(port["needs_handoff"], false);
    EXPECT_EQ(port["home_worker"], 0);
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
    EXPECT_EQ(worker["queues"][1]["port"], "backend");
    EXPECT_EQ(worker["queues"][1]["rx"], i);
    EXPECT_EQ(worker["queues"][1]["tx"], i);
    EXPECT_TRUE(worker["drops"].contains("no_service"));
    EXPECT_TRUE(worker["drops"].contains("tx_full"));
  }
  EXPECT_NE(dataplane_->FindPort("backend"), nullptr);
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
  Inject(1, 10);
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
  Inject(0, 3);
  ASSERT_TRUE(dataplane_->Start().ok());
  EXPECT_FALSE(dataplane_->SetBurstHandler(DropAllNoService, nullptr).ok());
  // Worker 0 receives on queue 0 and transmits on queue 0 of the same port.
  std::vector<testing::Frame> sent = env_->Await(0, 0, 3);
  EXPECT_EQ(sent.size(), 3u);
  for (const testing::Frame& frame : sent) {
    EXPECT_EQ(frame.size(), 60u);
  }
  EXPECT_TRUE(WaitFor([&] { return worker.counters.tx_packets.Read() >= tx_before + 3; }));
  dataplane_->Stop();
  EXPECT_EQ(worker.counters.tx_packets.Read() - tx_before, 3u);
  EXPECT_EQ(worker.counters.tx_bytes.Read() - tx_bytes_before, 3u * 60u);
  EXPECT_EQ(Drops(worker, DropReason::kTxFull), 0u);
  EXPECT_GT(dataplane_->Describe()["ports"][0]["tx_packets"].get<std::uint64_t>(), 0u);
}

TEST_F(DataplaneTest, SecondEalInitIsRefused) {
  Result<std::unique_ptr<Dataplane>> second = Dataplane::Create(testing::TestConfig());
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("already initialised"), std::string::npos)
      << second.status().ToString();
}

}  // namespace
}  // namespace fulcrum::dataplane
