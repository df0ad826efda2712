#include "nat/port_pool.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using testing::Ip4;

const std::vector<std::uint32_t> kLocals = {Ip4("198.18.1.2"), Ip4("198.18.1.3"), Ip4("198.18.1.4"),
                                            Ip4("198.18.1.5")};

PortPool MakePool(std::span<const std::uint32_t> locals, std::uint32_t worker,
                  std::uint32_t workers) {
  Result<PortPool> pool = PortPool::Create(locals, worker, workers);
  EXPECT_TRUE(pool.ok()) << pool.status().ToString();
  return std::move(pool).value();
}

TEST(PortSteeringTest, ShiftIsCeilLog2OfWorkers) {
  struct Row {
    std::uint32_t workers;
    std::uint32_t shift;
  };
  for (const Row& row : {Row{1, 0}, Row{2, 1}, Row{3, 2}, Row{4, 2}, Row{5, 3}, Row{8, 3},
                         Row{9, 4}, Row{64, 6}, Row{65, 7}}) {
    const PortSteering steering = PortSteering::ForWorkers(row.workers);
    EXPECT_EQ(steering.shift(), row.shift) << row.workers;
    EXPECT_EQ(steering.mask(), (1u << row.shift) - 1) << row.workers;
  }
  EXPECT_EQ(PortSteering::ForWorkers(4).OwnerOf(40001), 40001u % 4);
  EXPECT_EQ(PortSteering::ForWorkers(1).OwnerOf(40001), 0u);
}

TEST(PortPoolTest, AllocatesOnlyOwnPortsInRange) {
  constexpr std::uint32_t kWorkers = 4;
  for (std::uint32_t worker = 0; worker < kWorkers; ++worker) {
    PortPool pool = MakePool(kLocals, worker, kWorkers);
    EXPECT_EQ(pool.ports_per_address(), (65536u - 1024u) / 4);
    for (int i = 0; i < 2000; ++i) {
      const std::optional<Endpoint4> local = pool.Allocate();
      ASSERT_TRUE(local.has_value());
      EXPECT_GE(local->port, PortPool::kMinPort);
      EXPECT_EQ(pool.OwnerOf(local->port), worker);
      EXPECT_EQ(PortSteering::ForWorkers(kWorkers).OwnerOf(local->port), worker);
    }
  }
}

TEST(PortPoolTest, RotatesOverLocalAddresses) {
  PortPool pool = MakePool(kLocals, 0, 2);
  for (int round = 0; round < 3; ++round) {
    for (std::uint32_t ip : kLocals) {
      const std::optional<Endpoint4> local = pool.Allocate();
      ASSERT_TRUE(local.has_value());
      EXPECT_EQ(local->ip, ip);
    }
  }
}

TEST(PortPoolTest, ExhaustsWithoutDuplicatesThenRecoversOnRelease) {
  // 3 workers: shift 2, so worker 1 owns ports with p % 4 == 1 and p % 4 == 3 goes unused.
  const std::vector<std::uint32_t> locals = {Ip4("198.18.1.2"), Ip4("198.18.1.3")};
  PortPool pool = MakePool(locals, 1, 3);
  const std::uint32_t capacity = pool.capacity();
  EXPECT_EQ(capacity, 2 * (65536u - 1024u) / 4);
  std::set<std::pair<std::uint32_t, std::uint16_t>> seen;
  for (std::uint32_t i = 0; i < capacity; ++i) {
    const std::optional<Endpoint4> local = pool.Allocate();
    ASSERT_TRUE(local.has_value()) << i;
    EXPECT_EQ(local->port % 4, 1);
    EXPECT_TRUE(seen.insert({local->ip, local->port}).second) << "duplicate " << local->port;
  }
  EXPECT_EQ(pool.available(), 0u);
  EXPECT_FALSE(pool.Allocate().has_value());
  EXPECT_FALSE(pool.Allocate().has_value());

  const Endpoint4 returned{locals[1], 40001};  // 40001 % 4 == 1
  ASSERT_TRUE(pool.Release(returned));
  EXPECT_EQ(pool.available(), 1u);
  const std::optional<Endpoint4> again = pool.Allocate();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, returned);
  EXPECT_FALSE(pool.Allocate().has_value());
}

TEST(PortPoolTest, RefusesForeignAndDoubleReleases) {
  PortPool pool = MakePool(kLocals, 2, 4);
  const std::optional<Endpoint4> local = pool.Allocate();
  ASSERT_TRUE(local.has_value());
  const std::uint32_t available = pool.available();

  EXPECT_FALSE(pool.Release({local->ip, static_cast<std::uint16_t>(local->port + 1)}))
      << "another worker's port";
  EXPECT_FALSE(pool.Release({Ip4("198.18.1.99"), local->port})) << "not a local address";
  EXPECT_FALSE(pool.Release({local->ip, 1002})) << "below 1024";
  EXPECT_FALSE(pool.Release({kLocals[1], local->port})) << "never allocated on that address";
  EXPECT_EQ(pool.available(), available);

  EXPECT_TRUE(pool.Release(*local));
  EXPECT_FALSE(pool.Release(*local)) << "double release";
  EXPECT_EQ(pool.available(), available + 1);
}

TEST(PortPoolTest, MarksTranslatedPortsUntilTheirRelease) {
  PortPool pool = MakePool(kLocals, 1, 2);
  const std::optional<Endpoint4> fnat = pool.Allocate();
  const std::optional<Endpoint4> nat64 = pool.Allocate(true);
  const std::optional<Endpoint4> nat64_too = pool.Allocate(true);
  ASSERT_TRUE(fnat && nat64 && nat64_too);
  EXPECT_EQ(pool.translated(), 2u);
  EXPECT_FALSE(pool.Translated(*fnat));
  EXPECT_TRUE(pool.Translated(*nat64));
  EXPECT_TRUE(pool.Translated(*nat64_too));
  EXPECT_FALSE(pool.Translated({nat64->ip, static_cast<std::uint16_t>(nat64->port + 1)}))
      << "another worker's port";
  EXPECT_FALSE(pool.Translated({Ip4("198.18.1.99"), nat64->port})) << "not a local address";

  EXPECT_FALSE(pool.Release({Ip4("198.18.1.99"), nat64->port}));
  EXPECT_EQ(pool.translated(), 2u) << "a refused release unmarks nothing";
  EXPECT_TRUE(pool.Release(*nat64));
  EXPECT_FALSE(pool.Translated(*nat64));
  EXPECT_TRUE(pool.Translated(*nat64_too));
  EXPECT_EQ(pool.translated(), 1u);
  EXPECT_TRUE(pool.Release(*fnat));
  EXPECT_EQ(pool.translated(), 1u);
  EXPECT_TRUE(pool.Release(*nat64_too));
  EXPECT_EQ(pool.translated(), 0u);
  EXPECT_FALSE(pool.Translated(*nat64_too));
}

TEST(PortPoolTest, ReleaseFindsEachOfManyAddresses) {
  // Hundreds of local addresses, scattered, some with equal low bits: every one is found,
  // and addresses next to them are not.
  std::vector<std::uint32_t> locals;
  for (std::uint32_t i = 0; i < 300; ++i) {
    locals.push_back(Ip4("198.18.0.0") + i * 257);
  }
  PortPool pool = MakePool(locals, 0, 1);
  std::vector<Endpoint4> taken;
  for (std::size_t i = 0; i < 2 * locals.size(); ++i) {
    const std::optional<Endpoint4> local = pool.Allocate();
    ASSERT_TRUE(local.has_value());
    taken.push_back(*local);
  }
  const std::uint32_t available = pool.available();
  for (const std::uint32_t ip : locals) {
    EXPECT_FALSE(pool.Release({ip + 1, taken.front().port})) << ip;
  }
  EXPECT_EQ(pool.available(), available);
  for (const Endpoint4& local : taken) {
    EXPECT_TRUE(pool.Release(local)) << local.ip << ":" << local.port;
  }
  EXPECT_EQ(pool.available(), pool.capacity());
}

TEST(PortPoolTest, ReusesTheLongestFreedPortFirst) {
  // One address, one worker: the ring hands out ports in order, and a released port goes
  // to the back, behind every port never used.
  PortPool pool = MakePool(std::vector<std::uint32_t>{kLocals[0]}, 0, 1);
  const std::optional<Endpoint4> first = pool.Allocate();
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(pool.Release(*first));
  const std::optional<Endpoint4> next = pool.Allocate();
  ASSERT_TRUE(next.has_value());
  EXPECT_NE(next->port, first->port);
  // Drain everything else: the released port comes last.
  std::optional<Endpoint4> last;
  while (std::optional<Endpoint4> local = pool.Allocate()) {
    last = local;
  }
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->port, first->port);
}

TEST(PortPoolTest, WorkersPartitionThePorts) {
  constexpr std::uint32_t kWorkers = 8;
  const std::vector<std::uint32_t> locals = {kLocals[0]};
  std::vector<int> owners(65536, -1);
  std::uint32_t total = 0;
  for (std::uint32_t worker = 0; worker < kWorkers; ++worker) {
    PortPool pool = MakePool(locals, worker, kWorkers);
    while (std::optional<Endpoint4> local = pool.Allocate()) {
      ASSERT_EQ(owners[local->port], -1) << "port " << local->port << " owned twice";
      owners[local->port] = static_cast<int>(worker);
      ++total;
    }
  }
  EXPECT_EQ(total, 65536u - 1024u);
}

TEST(PortPoolTest, RejectsBadConfiguration) {
  EXPECT_FALSE(PortPool::Create(kLocals, 0, 0).ok());
  EXPECT_FALSE(PortPool::Create(kLocals, 4, 4).ok());
  EXPECT_FALSE(PortPool::Create(kLocals, 0, PortPool::kMaxWorkers + 1).ok());
  EXPECT_FALSE(PortPool::Create({}, 0, 1).ok());
  const std::vector<std::uint32_t> twice = {kLocals[0], kLocals[1], kLocals[0]};
  const Result<PortPool> duplicate = PortPool::Create(twice, 0, 1);
  EXPECT_EQ(duplicate.status().code(), ErrorCode::kInvalidParameter);
}

// The IPv6 pool: the same code over Ip6 local addresses.
TEST(PortPool6Test, AllocatesRotatesReleasesAndRefusesForeignAddresses) {
  const std::vector<Ip6> locals = {Ip6{0x2001'0db8'0001'0000, 2}, Ip6{0x2001'0db8'0001'0000, 3},
                                   Ip6{0x2001'0db8'0001'0000, 0x1'0000'0000'0002}};
  Result<PortPool6> created = PortPool6::Create(locals, 1, 2);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  PortPool6 pool = std::move(created).value();
  EXPECT_EQ(pool.capacity(), 3 * pool.ports_per_address());
  std::set<std::pair<std::uint64_t, std::uint16_t>> seen;
  std::vector<Endpoint6> taken;
  for (int i = 0; i < 9; ++i) {
    const std::optional<Endpoint6> local = pool.Allocate();
    ASSERT_TRUE(local.has_value());
    EXPECT_EQ(local->ip, locals[static_cast<std::size_t>(i) % 3]) << "rotates over the addresses";
    EXPECT_EQ(pool.OwnerOf(local->port), 1u);
    EXPECT_TRUE(seen.insert({local->ip.lo, local->port}).second);
    taken.push_back(*local);
  }
  EXPECT_EQ(pool.available(), pool.capacity() - 9);
  // An address that differs in its high half only is not ours.
  EXPECT_FALSE(pool.Release({Ip6{0x2001'0db8'0002'0000, 2}, taken[0].port}));
  for (const Endpoint6& local : taken) {
    EXPECT_TRUE(pool.Release(local));
    EXPECT_FALSE(pool.Release(local)) << "a double release is refused";
  }
  EXPECT_EQ(pool.available(), pool.capacity());
  EXPECT_FALSE(PortPool6::Create(std::vector<Ip6>{locals[0], locals[0]}, 0, 1).ok());
}

}  // namespace
}  // namespace fulcrum::nat
