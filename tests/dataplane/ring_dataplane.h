// Test support: one real Dataplane per test process, on net_ring ports whose queues are rings
// the test reads and writes.
//
// EAL starts once per process, so every EAL test of unit_dataplane shares this Dataplane (a
// gtest global environment creates it before the first test and destroys it after the last).
// Plain `--vdev net_ring0` ports loop each queue's tx back into its rx, which would feed a
// worker its own output; the environment therefore replaces them, right after EAL starts, by
// ports built with rte_eth_from_rings on separate rx and tx rings per queue. A test injects a
// frame by enqueueing an mbuf on a queue's rx ring (the worker polling that queue receives it)
// and collects what a worker transmitted from the queue's tx ring: worker w polls rx queue w and
// transmits on tx queue w of every port. Needs root (DPDK); tests skip otherwise.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <rte_bus_vdev.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "dataplane/dataplane.h"
#include "tests/dataplane/model_fixture.h"

namespace fulcrum::dataplane::testing {

using Frame = std::vector<std::uint8_t>;

inline constexpr std::size_t kRingPorts = 2;
inline constexpr std::uint16_t kRingQueues = 2;
inline constexpr auto kWaitLimit = std::chrono::seconds(5);

class RingDataplane : public ::testing::Environment {
 public:
  static RingDataplane* instance() { return instance_; }

  void SetUp() override {
    instance_ = this;
    if (geteuid() != 0) {
      return;
    }
    const std::string eal = fmt::format(
        R"("no_huge": true, "memory_mb": 256, "file_prefix": "fulcrum-test-{}",
           "extra_args": ["--no-shconf"])",
        getpid());
    DataplaneHooks hooks{.after_eal_init = [this] { return ReplaceRingPorts(); }};
    Result<std::unique_ptr<Dataplane>> created = Dataplane::Create(TestConfig(eal), hooks);
    // A failed assertion here would skip every test of the binary; the EAL tests report it.
    if (!created.ok()) {
      error_ = created.status().ToString();
      return;
    }
    dataplane_ = std::move(*created);
    runtime_dir_ = rte_eal_get_runtime_dir();
  }

  // EAL leaves its runtime directory behind; this one is ours (the prefix has our pid).
  void TearDown() override {
    dataplane_.reset();
    if (!runtime_dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(runtime_dir_, ignored);
    }
  }

  Dataplane* dataplane() { return dataplane_.get(); }
  // Why dataplane() is null when running as root.
  const std::string& error() const { return error_; }

  std::uint16_t port_id(std::size_t port) const { return dataplane_->port(port).port_id; }

  // Puts `frame` on rx queue `queue` of `port`: the worker polling that queue receives it.
  void Inject(std::size_t port, std::uint16_t queue, std::span<const std::uint8_t> frame) {
    rte_mbuf* m = rte_pktmbuf_alloc(dataplane_->mbuf_pool(dataplane_->port(port).socket));
    ASSERT_NE(m, nullptr);
    auto* data = reinterpret_cast<std::uint8_t*>(
        rte_pktmbuf_append(m, static_cast<std::uint16_t>(frame.size())));
    ASSERT_NE(data, nullptr);
    std::copy(frame.begin(), frame.end(), data);
    ASSERT_EQ(rte_ring_enqueue(rx_[port][queue], m), 0) << "rx ring full";
  }

  // Whatever the workers transmitted on tx queue `queue` of `port` so far.
  std::vector<Frame> Take(std::size_t port, std::uint16_t queue) {
    std::vector<Frame> frames;
    void* object = nullptr;
    while (rte_ring_dequeue(tx_[port][queue], &object) == 0) {
      auto* m = static_cast<rte_mbuf*>(object);
      const auto* data = rte_pktmbuf_mtod(m, const std::uint8_t*);
      frames.emplace_back(data, data + rte_pktmbuf_data_len(m));
      rte_pktmbuf_free(m);
    }
    return frames;
  }

  // Waits (bounded) until `count` frames came out of (port, queue); returns what came.
  std::vector<Frame> Await(std::size_t port, std::uint16_t queue, std::size_t count) {
    std::vector<Frame> frames;
    const auto deadline = std::chrono::steady_clock::now() + kWaitLimit;
    while (frames.size() < count && std::chrono::steady_clock::now() < deadline) {
      std::vector<Frame> more = Take(port, queue);
      frames.insert(frames.end(), more.begin(), more.end());
      if (frames.size() < count) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
    return frames;
  }

  // Empties every rx and tx ring.
  void Drain() {
    for (std::size_t p = 0; p < kRingPorts; ++p) {
      for (std::uint16_t q = 0; q < kRingQueues; ++q) {
        Take(p, q);
        void* object = nullptr;
        while (rte_ring_dequeue(rx_[p][q], &object) == 0) {
          rte_pktmbuf_free(static_cast<rte_mbuf*>(object));
        }
      }
    }
  }

 private:
  Status ReplaceRingPorts() {
    for (std::size_t p = 0; p < kRingPorts; ++p) {
      // rte_eth_from_rings names its device "net_ring_" + name.
      const std::string name = fmt::format("net_ring_p{}", p);
      if (rte_vdev_uninit(name.c_str()) != 0) {
        return Error(ErrorCode::kInternal, "cannot remove {}", name);
      }
      for (std::uint16_t q = 0; q < kRingQueues; ++q) {
        rx_[p][q] = rte_ring_create(fmt::format("trx{}_{}", p, q).c_str(), 1024, SOCKET_ID_ANY,
                                    RING_F_SP_ENQ | RING_F_SC_DEQ);
        tx_[p][q] = rte_ring_create(fmt::format("ttx{}_{}", p, q).c_str(), 1024, SOCKET_ID_ANY,
                                    RING_F_SP_ENQ | RING_F_SC_DEQ);
        if (rx_[p][q] == nullptr || tx_[p][q] == nullptr) {
          return Error(ErrorCode::kInternal, "cannot create the rings of {}", name);
        }
      }
      const int port_id = rte_eth_from_rings(name.substr(9).c_str(), rx_[p].data(), kRingQueues,
                                             tx_[p].data(), kRingQueues, rte_socket_id());
      if (port_id < 0) {
        return Error(ErrorCode::kInternal, "cannot rebuild {} on rings", name);
      }
    }
    return Status::Ok();
  }

  static inline RingDataplane* instance_ = nullptr;
  std::unique_ptr<Dataplane> dataplane_;
  std::string error_;
  std::string runtime_dir_;
  std::array<std::array<rte_ring*, kRingQueues>, kRingPorts> rx_{};
  std::array<std::array<rte_ring*, kRingQueues>, kRingPorts> tx_{};
};

// Registered once for the whole binary (an inline variable: one definition across files).
inline ::testing::Environment* const kRingDataplaneEnvironment =
    ::testing::AddGlobalTestEnvironment(new RingDataplane);

// Skips the test when not root, and fails it when the environment could not start DPDK.
#define FULCRUM_REQUIRE_DATAPLANE()                                                           \
  do {                                                                                        \
    if (geteuid() != 0) {                                                                     \
      GTEST_SKIP() << "DPDK needs root";                                                      \
    }                                                                                         \
    ASSERT_NE(::fulcrum::dataplane::testing::RingDataplane::instance(), nullptr);             \
    ASSERT_NE(::fulcrum::dataplane::testing::RingDataplane::instance()->dataplane(), nullptr) \
        << ::fulcrum::dataplane::testing::RingDataplane::instance()->error();                 \
  } while (0)

}  // namespace fulcrum::dataplane::testing
