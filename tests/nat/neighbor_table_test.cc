#include "nat/neighbor_table.h"

#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using ::testing::ElementsAre;
using testing::Ip4;
using ::testing::IsEmpty;

constexpr MacAddress kMacA = {2, 0, 0, 0, 0, 0xa};
constexpr MacAddress kMacB = {2, 0, 0, 0, 0, 0xb};

NeighborCacheOptions Options() {
  return {.reachable_ms = 60'000, .retry_ms = 1'000, .max_probes = 3, .max_entries = 4};
}

TEST(NeighborCacheTest, WantedAddressIsProbedThenDropped) {
  NeighborCache cache(Options());
  const std::uint32_t ip = Ip4("198.18.1.11");
  ASSERT_TRUE(cache.Want(ip, 1, 0));
  EXPECT_THAT(cache.Tick(0), ElementsAre(ArpProbe{ip, 1}));
  EXPECT_THAT(cache.Tick(500), IsEmpty());  // retry interval not over
  EXPECT_THAT(cache.Tick(1000), ElementsAre(ArpProbe{ip, 1}));
  EXPECT_THAT(cache.Tick(2000), ElementsAre(ArpProbe{ip, 1}));
  EXPECT_FALSE(cache.dirty());  // nothing with a MAC yet
  EXPECT_THAT(cache.Tick(3000), IsEmpty());
  EXPECT_EQ(cache.Find(ip), nullptr);  // three probes unanswered
  // Wanted again: probing starts over.
  ASSERT_TRUE(cache.Want(ip, 1, 4000));
  EXPECT_THAT(cache.Tick(4000), ElementsAre(ArpProbe{ip, 1}));
}

TEST(NeighborCacheTest, LearningResolvesAndPublishes) {
  NeighborCache cache(Options());
  const std::uint32_t ip = Ip4("198.18.1.11");
  ASSERT_TRUE(cache.Want(ip, 1, 0));
  EXPECT_THAT(cache.Tick(0), ElementsAre(ArpProbe{ip, 1}));
  EXPECT_TRUE(cache.Learn(ip, kMacA, 1, 100));
  EXPECT_TRUE(cache.dirty());
  Result<NeighborMap> map = cache.Build();
  ASSERT_TRUE(map.ok());
  EXPECT_FALSE(cache.dirty());
  const Neighbor* n = map->Find(ip);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->mac, kMacA);
  EXPECT_EQ(n->port, 1);
  EXPECT_EQ(map->Find(Ip4("198.18.1.12")), nullptr);
  // The same answer again changes nothing workers see.
  EXPECT_FALSE(cache.Learn(ip, kMacA, 1, 200));
  EXPECT_FALSE(cache.dirty());
  // A new MAC does.
  EXPECT_TRUE(cache.Learn(ip, kMacB, 1, 300));
  EXPECT_TRUE(cache.dirty());
  EXPECT_EQ(cache.Find(ip)->mac, kMacB);
  EXPECT_EQ(cache.Find(ip)->state, NeighborState::kReachable);
}

TEST(NeighborCacheTest, StaleEntriesKeepTheirMacWhileReprobed) {
  NeighborCache cache(Options());
  const std::uint32_t ip = Ip4("198.18.0.2");
  ASSERT_TRUE(cache.Learn(ip, kMacA, 0, 0));
  ASSERT_TRUE(cache.Build().ok());
  EXPECT_THAT(cache.Tick(59'999), IsEmpty());
  EXPECT_THAT(cache.Tick(60'000), ElementsAre(ArpProbe{ip, 0}));
  EXPECT_EQ(cache.Find(ip)->state, NeighborState::kStale);
  EXPECT_FALSE(cache.dirty());  // still usable
  // Confirmed again: reachable, no further probes.
  EXPECT_FALSE(cache.Learn(ip, kMacA, 0, 60'500));
  EXPECT_EQ(cache.Find(ip)->state, NeighborState::kReachable);
  EXPECT_THAT(cache.Tick(61'500), IsEmpty());
  // Never answered: dropped after three probes, and workers must stop using it.
  EXPECT_THAT(cache.Tick(120'500), ElementsAre(ArpProbe{ip, 0}));
  EXPECT_THAT(cache.Tick(121'500), ElementsAre(ArpProbe{ip, 0}));
  EXPECT_THAT(cache.Tick(122'500), ElementsAre(ArpProbe{ip, 0}));
  EXPECT_THAT(cache.Tick(123'500), IsEmpty());
  EXPECT_EQ(cache.Find(ip), nullptr);
  EXPECT_TRUE(cache.dirty());
  Result<NeighborMap> map = cache.Build();
  ASSERT_TRUE(map.ok());
  EXPECT_EQ(map->Find(ip), nullptr);
}

TEST(NeighborCacheTest, BoundedSize) {
  NeighborCache cache(Options());
  for (std::uint32_t i = 1; i <= 4; ++i) {
    EXPECT_TRUE(cache.Want(i, 0, 0));
  }
  EXPECT_FALSE(cache.Want(5, 0, 0));
  EXPECT_FALSE(cache.Learn(6, kMacA, 0, 0));
  EXPECT_EQ(cache.size(), 4u);
  EXPECT_TRUE(cache.Want(1, 0, 0));  // already there
  cache.Forget(1);
  EXPECT_TRUE(cache.Learn(6, kMacA, 0, 0));
}

TEST(NeighborCacheTest, ForgettingAResolvedAddressDirtiesTheMap) {
  NeighborCache cache(Options());
  ASSERT_TRUE(cache.Learn(7, kMacA, 0, 0));
  ASSERT_TRUE(cache.Build().ok());
  cache.Forget(7);
  EXPECT_TRUE(cache.dirty());
  EXPECT_EQ(cache.Entries().size(), 0u);
}

// The IPv6 cache is the same machine over 128-bit addresses: addresses that differ only in
// their upper half are separate entries, and the published map finds each by its whole address.
TEST(NeighborCacheTest, Ipv6CacheResolvesWholeAddresses) {
  NeighborCache6 cache(Options());
  const Ip6 a = testing::Wide6(testing::Ip6("2001:db8:1::11"));
  const Ip6 b = testing::Wide6(testing::Ip6("2001:db8:2::11"));
  ASSERT_TRUE(cache.Want(a, 1, 0));
  ASSERT_TRUE(cache.Want(b, 1, 0));
  EXPECT_THAT(cache.Tick(0), ElementsAre(NeighborProbe6{a, 1}, NeighborProbe6{b, 1}));
  EXPECT_TRUE(cache.Learn(a, kMacA, 1, 10));
  EXPECT_TRUE(cache.dirty());
  Result<NeighborMap6> map = cache.Build();
  ASSERT_TRUE(map.ok());
  EXPECT_FALSE(cache.dirty());
  ASSERT_NE(map->Find(a), nullptr);
  EXPECT_EQ(map->Find(a)->mac, kMacA);
  EXPECT_EQ(map->Find(b), nullptr);  // still incomplete
  EXPECT_THAT(cache.Tick(1000), ElementsAre(NeighborProbe6{b, 1}));
  ASSERT_NE(cache.Find(a), nullptr);
  EXPECT_EQ(cache.Find(a)->state, NeighborState::kReachable);
}

TEST(NeighborCacheTest, StateNames) {
  EXPECT_EQ(NeighborStateName(NeighborState::kIncomplete), "incomplete");
  EXPECT_EQ(NeighborStateName(NeighborState::kReachable), "reachable");
  EXPECT_EQ(NeighborStateName(NeighborState::kStale), "stale");
}

}  // namespace
}  // namespace fulcrum::nat
