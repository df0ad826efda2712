#include "nat/service_table.h"

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "nat/flat_map.h"
#include "nat/packet.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using testing::Ip4;

TEST(FlatMapTest, FindsEveryKeyAndMissesOthers) {
  std::vector<FlatMap<std::uint32_t>::Item> items;
  for (std::uint32_t i = 1; i <= 1000; ++i) {
    items.push_back({std::uint64_t{i} * 0x9e3779b97f4a7c15ULL, i});
  }
  Result<FlatMap<std::uint32_t>> map = FlatMap<std::uint32_t>::Create(items);
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  EXPECT_EQ(map->size(), 1000u);
  for (const auto& item : items) {
    const std::uint32_t* value = map->Find(item.key);
    ASSERT_NE(value, nullptr);
    EXPECT_EQ(*value, item.value);
  }
  EXPECT_EQ(map->Find(12345), nullptr);
  EXPECT_EQ(map->Find(0), nullptr);
  std::size_t visited = 0;
  map->ForEach([&](std::uint64_t, std::uint32_t) { ++visited; });
  EXPECT_EQ(visited, 1000u);
}

TEST(FlatMapTest, EmptyMapMissesEverything) {
  FlatMap<int> empty;
  EXPECT_EQ(empty.Find(1), nullptr);
  EXPECT_EQ(empty.Find(0), nullptr);
  Result<FlatMap<int>> created = FlatMap<int>::Create({});
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(created->Find(7), nullptr);
}

TEST(FlatMapTest, RefusesDuplicateAndZeroKeys) {
  std::vector<FlatMap<int>::Item> twice = {{5, 1}, {5, 2}};
  Result<FlatMap<int>> dup = FlatMap<int>::Create(twice);
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("0x5"), std::string::npos) << dup.status().ToString();
  std::vector<FlatMap<int>::Item> zero = {{0, 1}};
  EXPECT_FALSE(FlatMap<int>::Create(zero).ok());
}

TEST(ServiceTableTest, MatchesVipPortAndProtocol) {
  const std::uint32_t vip_a = Ip4("198.18.100.10");
  const std::uint32_t vip_b = Ip4("198.18.100.11");
  std::vector<ServiceSpec> services = {{vip_a, 80, kIpProtoTcp, 3},
                                       {vip_a, 80, kIpProtoUdp, 4},
                                       {vip_a, 443, kIpProtoTcp, 5},
                                       {vip_b, 80, kIpProtoTcp, 6}};
  Result<ServiceTable> table = ServiceTable::Create(services);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->Find(vip_a, 80, kIpProtoTcp), 3u);
  EXPECT_EQ(table->Find(vip_a, 80, kIpProtoUdp), 4u);
  EXPECT_EQ(table->Find(vip_a, 443, kIpProtoTcp), 5u);
  EXPECT_EQ(table->Find(vip_b, 80, kIpProtoTcp), 6u);
  EXPECT_EQ(table->Find(vip_b, 80, kIpProtoUdp), ServiceTable::kNone);
  EXPECT_EQ(table->Find(vip_a, 81, kIpProtoTcp), ServiceTable::kNone);
  EXPECT_EQ(table->Find(Ip4("198.18.100.12"), 80, kIpProtoTcp), ServiceTable::kNone);
  EXPECT_EQ(ServiceTable().Find(vip_a, 80, kIpProtoTcp), ServiceTable::kNone);
}

TEST(ServiceTableTest, RefusesAServiceGivenTwice) {
  std::vector<ServiceSpec> services = {{1, 80, kIpProtoTcp, 1}, {1, 80, kIpProtoTcp, 2}};
  EXPECT_FALSE(ServiceTable::Create(services).ok());
  std::vector<ServiceSpec> no_proto = {{1, 80, 0, 1}};
  EXPECT_FALSE(ServiceTable::Create(no_proto).ok());
}

TEST(ServiceTableTest, KeysOfDifferentFieldsNeverCollide) {
  // The packing keeps the fields apart: swapping port and protocol bits gives another key.
  EXPECT_NE(ServiceTable::Key(1, 6, 80), ServiceTable::Key(1, 80, 6));
  EXPECT_NE(ServiceTable::Key(1, 0x0100, 6), ServiceTable::Key(2, 0, 6));
}

TEST(AddressTableTest, ClassifiesAndMergesKinds) {
  std::vector<AddressSpec> addresses = {
      {Ip4("198.18.100.10"), kAddressVip, 0},       {Ip4("198.18.0.1"), kAddressInterface, 0},
      {Ip4("198.18.1.1"), kAddressInterface, 1},    {Ip4("198.18.1.2"), kAddressLocal, 1},
      {Ip4("198.18.1.11"), kAddressDnatBackend, 0}, {Ip4("198.18.1.11"), kAddressDnatBackend, 0},
  };
  Result<AddressTable> table = AddressTable::Create(addresses);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->size(), 5u);
  EXPECT_EQ(table->Find(Ip4("198.18.100.10")).kinds, kAddressVip);
  EXPECT_TRUE(table->Is(Ip4("198.18.1.2"), kAddressLocal));
  EXPECT_EQ(table->Find(Ip4("198.18.1.2")).port, 1);
  EXPECT_EQ(table->Find(Ip4("198.18.1.1")).port, 1);
  EXPECT_TRUE(table->Is(Ip4("198.18.1.11"), kAddressDnatBackend));
  EXPECT_FALSE(table->Is(Ip4("198.18.1.11"), kAddressLocal));
  EXPECT_EQ(table->Find(Ip4("198.18.1.99")).kinds, 0);
  EXPECT_EQ(table->Find(0).kinds, 0);
}

// ---- IPv6: the same tables over Ip6, keyed by WideKey.

constexpr std::uint64_t kDb8 = 0x2001'0db8'0000'0000;

TEST(ServiceTable6Test, FindsListenersByVipPortAndProtocol) {
  const Ip6 vip{kDb8 | 0x100'0000, 0x10};
  const Ip6 other{kDb8 | 0x100'0000, 0x11};
  const std::vector<ServiceSpec6> services = {
      {vip, 80, 6, 1}, {vip, 80, 17, 2}, {vip, 443, 6, 3}, {other, 80, 6, 4}};
  Result<ServiceTable6> table = ServiceTable6::Create(services);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->Find(vip, 80, 6), 1u);
  EXPECT_EQ(table->Find(vip, 80, 17), 2u);
  EXPECT_EQ(table->Find(vip, 443, 6), 3u);
  EXPECT_EQ(table->Find(other, 80, 6), 4u);
  EXPECT_EQ(table->Find(vip, 8080, 6), ServiceTable6::kNone);
  // Another address in either half is another VIP.
  EXPECT_EQ(table->Find(Ip6{vip.hi ^ 1, vip.lo}, 80, 6), ServiceTable6::kNone);
  EXPECT_EQ(table->Find(Ip6{vip.hi, vip.lo ^ 0x100}, 80, 6), ServiceTable6::kNone);
  const std::vector<ServiceSpec6> twice = {{vip, 80, 6, 1}, {vip, 80, 6, 2}};
  EXPECT_FALSE(ServiceTable6::Create(twice).ok());
}

TEST(AddressTable6Test, ClassifiesAndMergesKinds) {
  const Ip6 vip{kDb8 | 0x100'0000, 0x10};
  const Ip6 local{kDb8 | 0x1'0000, 2};
  const Ip6 backend{kDb8 | 0x1'0000, 0x11};
  const std::vector<AddressSpec6> addresses = {{vip, kAddressVip, 0},
                                               {local, kAddressLocal, 1},
                                               {backend, kAddressDnatBackend, 0},
                                               {backend, kAddressDnatBackend, 0},
                                               {Ip6{}, kAddressInterface, 0}};
  Result<AddressTable6> table = AddressTable6::Create(addresses);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->size(), 4u);
  EXPECT_EQ(table->Find(vip).kinds, kAddressVip);
  EXPECT_TRUE(table->Is(local, kAddressLocal));
  EXPECT_EQ(table->Find(local).port, 1);
  EXPECT_TRUE(table->Is(backend, kAddressDnatBackend));
  EXPECT_TRUE(table->Is(Ip6{}, kAddressInterface)) << ":: is a key like any other";
  EXPECT_EQ(table->Find(Ip6{kDb8 | 0x1'0000, 3}).kinds, 0);
}

}  // namespace
}  // namespace fulcrum::nat
