// Owner computation and rte_flow steering rules as data (pure: no EAL).
#include "dataplane/handoff.h"

#include <vector>

#include <gtest/gtest.h>

#include "dataplane/flow_rules.h"
#include "nat/port_pool.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::dataplane {
namespace {

using fulcrum::testing::Ip4;

TEST(ClientOwnerTest, IsInRangeAndStable) {
  for (std::uint32_t workers : {1u, 2u, 3u, 8u, 64u}) {
    for (std::uint16_t port = 1024; port < 1124; ++port) {
      const std::uint32_t owner = ClientOwner(Ip4("198.18.0.2"), port, workers);
      EXPECT_LT(owner, workers);
      EXPECT_EQ(owner, ClientOwner(Ip4("198.18.0.2"), port, workers));
    }
  }
  EXPECT_EQ(ClientOwner(Ip4("198.18.0.2"), 40000, 1), 0u);
}

TEST(ClientOwnerTest, SpreadsClientsEvenly) {
  constexpr std::uint32_t kWorkers = 4;
  std::vector<int> per_worker(kWorkers);
  for (std::uint32_t i = 0; i < 40000; ++i) {
    ++per_worker[ClientOwner(Ip4("198.18.0.2") + i % 200, static_cast<std::uint16_t>(1024 + i),
                             kWorkers)];
  }
  for (int count : per_worker) {
    EXPECT_NEAR(count, 10000, 500);
  }
}

// Many users behind one address (a NAT gateway, a carrier): the flows of ONE client address
// with consecutive ephemeral ports use every worker, about evenly.
TEST(ClientOwnerTest, SpreadsOneClientAddressOverEveryWorker) {
  for (std::uint32_t workers : {2u, 3u, 4u, 8u}) {
    std::vector<int> per_worker(workers);
    constexpr int kFlows = 8000;
    for (int i = 0; i < kFlows; ++i) {
      ++per_worker[ClientOwner(Ip4("198.18.0.2"), static_cast<std::uint16_t>(32768 + i), workers)];
    }
    const double even = static_cast<double>(kFlows) / workers;
    for (std::uint32_t w = 0; w < workers; ++w) {
      EXPECT_NEAR(per_worker[w], even, even * 0.1) << workers << " workers, worker " << w;
    }
  }
}

// An IPv6 client behind which many users sit: its ports use every worker, about evenly, and
// both halves of the address count.
TEST(ClientOwnerTest, SpreadsOneIpv6ClientOverEveryWorkerAndReadsTheWholeAddress) {
  const nat::Ip6 client{0x2001'0db8'0000'0000, 2};
  for (std::uint32_t workers : {2u, 3u, 4u, 8u}) {
    std::vector<int> per_worker(workers);
    constexpr int kFlows = 8000;
    for (int i = 0; i < kFlows; ++i) {
      const std::uint32_t owner =
          ClientOwner(client, static_cast<std::uint16_t>(32768 + i), workers);
      ASSERT_LT(owner, workers);
      ++per_worker[owner];
    }
    const double even = static_cast<double>(kFlows) / workers;
    for (std::uint32_t w = 0; w < workers; ++w) {
      EXPECT_NEAR(per_worker[w], even, even * 0.1) << workers << " workers, worker " << w;
    }
  }
  int differs_by_high = 0;
  int differs_by_low = 0;
  for (std::uint16_t port = 1024; port < 1124; ++port) {
    differs_by_high +=
        ClientOwner(client, port, 2) != ClientOwner(nat::Ip6{client.hi + 1, client.lo}, port, 2);
    differs_by_low +=
        ClientOwner(client, port, 2) != ClientOwner(nat::Ip6{client.hi, client.lo + 1}, port, 2);
  }
  EXPECT_GT(differs_by_high, 20);
  EXPECT_GT(differs_by_low, 20);
}

TEST(HandoffRingSizeTest, HoldsTheSendersRxQueuesAndTwoBursts) {
  EXPECT_EQ(HandoffRingSize(0, 32), kMinHandoffRing);
  EXPECT_EQ(HandoffRingSize(512, 32), 1024u);
  EXPECT_EQ(HandoffRingSize(1024, 32), 2048u);      // 1024 + 64 needs the next power of two
  EXPECT_EQ(HandoffRingSize(2 * 1024, 32), 4096u);  // a worker polling two ports' queues
  EXPECT_EQ(HandoffRingSize(4096, 32), 8192u);
  for (std::uint32_t descriptors : {0u, 100u, 959u, 960u, 4000u, 16384u}) {
    const std::uint32_t size = HandoffRingSize(descriptors, 32);
    EXPECT_EQ(size & (size - 1), 0u);
    EXPECT_GE(size - 1, descriptors + 64) << "rte_ring keeps one slot empty";
  }
}

TEST(ClientOwnerTest, DependsOnAddressAndPort) {
  int differs_by_port = 0;
  int differs_by_address = 0;
  for (std::uint16_t port = 1024; port < 1124; ++port) {
    differs_by_port += ClientOwner(Ip4("198.18.0.2"), port, 2) !=
                       ClientOwner(Ip4("198.18.0.2"), static_cast<std::uint16_t>(port + 1), 2);
    differs_by_address +=
        ClientOwner(Ip4("198.18.0.2"), port, 2) != ClientOwner(Ip4("198.18.0.3"), port, 2);
  }
  EXPECT_GT(differs_by_port, 20);
  EXPECT_GT(differs_by_address, 20);
}

TEST(SteeringRulesTest, OneRulePerAddressWorkerAndProtocol) {
  const std::vector<std::uint32_t> locals = {Ip4("198.18.1.2"), Ip4("198.18.1.3")};
  std::vector<SteeringRule> rules = BuildSteeringRules(locals, 4, 4);
  ASSERT_EQ(rules.size(), 2u * 4u * 2u);
  for (const SteeringRule& rule : rules) {
    EXPECT_EQ(rule.port_mask, 0x3);
    EXPECT_EQ(rule.queue, rule.port_value);
    EXPECT_TRUE(rule.proto == 6 || rule.proto == 17);
  }
  EXPECT_EQ(rules[0], (SteeringRule{Ip4("198.18.1.2"), 6, 0x3, 0, 0}));
  EXPECT_EQ(rules[1], (SteeringRule{Ip4("198.18.1.2"), 17, 0x3, 0, 0}));
  EXPECT_EQ(rules.back(), (SteeringRule{Ip4("198.18.1.3"), 17, 0x3, 3, 3}));
}

TEST(SteeringRulesTest, MatchThePortPoolsOwnership) {
  // Every port a worker's pool hands out is matched by that worker's rule, and only by it.
  const std::vector<std::uint32_t> locals = {Ip4("198.18.1.2")};
  constexpr std::uint32_t kWorkers = 3;
  std::vector<SteeringRule> rules = BuildSteeringRules(locals, kWorkers, kWorkers);
  for (std::uint32_t w = 0; w < kWorkers; ++w) {
    Result<nat::PortPool> pool = nat::PortPool::Create(locals, w, kWorkers);
    ASSERT_TRUE(pool.ok());
    for (int i = 0; i < 100; ++i) {
      std::optional<nat::Endpoint4> local = pool->Allocate();
      ASSERT_TRUE(local.has_value());
      int matches = 0;
      for (const SteeringRule& rule : rules) {
        if (rule.proto == 6 && rule.dst_ip == local->ip &&
            (local->port & rule.port_mask) == rule.port_value) {
          ++matches;
          EXPECT_EQ(rule.queue, w);
        }
      }
      EXPECT_EQ(matches, 1);
    }
  }
}

TEST(SteeringRulesTest, NoRulesWhereSteeringCannotWork) {
  const std::vector<std::uint32_t> locals = {Ip4("198.18.1.2")};
  EXPECT_TRUE(BuildSteeringRules(locals, 1, 1).empty());  // one worker: nothing to steer
  EXPECT_TRUE(BuildSteeringRules(locals, 4, 2).empty());  // fewer queues than workers
  EXPECT_TRUE(BuildSteeringRules({}, 4, 4).empty());      // no local address
  EXPECT_EQ(SteeringModeName(SteeringMode::kRteFlow), "rte_flow");
  EXPECT_EQ(SteeringModeName(SteeringMode::kSoftware), "software_handoff");
}

}  // namespace
}  // namespace fulcrum::dataplane
