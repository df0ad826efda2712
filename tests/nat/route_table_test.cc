#include "nat/route_table.h"

#include <vector>

#include <gtest/gtest.h>

#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using testing::Ip4;

RouteTable Testbed(bool with_gateway, std::vector<RouteSpec> routes = {}) {
  std::vector<ConnectedSpec> connected = {
      {Ip4("198.18.0.1"), 24, 0, with_gateway ? Ip4("198.18.0.254") : 0},
      {Ip4("198.18.1.1"), 24, 1, 0}};
  Result<RouteTable> table = RouteTable::Create(connected, routes);
  EXPECT_TRUE(table.ok()) << table.status().ToString();
  return table.ok() ? *table : RouteTable();
}

TEST(RouteTableTest, ConnectedSubnetsReachTheDestinationItself) {
  RouteTable table = Testbed(false);
  EXPECT_EQ(table.Lookup(Ip4("198.18.0.2")), (NextHop{Ip4("198.18.0.2"), 0}));
  EXPECT_EQ(table.Lookup(Ip4("198.18.1.11")), (NextHop{Ip4("198.18.1.11"), 1}));
  EXPECT_EQ(table.ConnectedPort(Ip4("198.18.1.200")), 1);
  EXPECT_EQ(table.ConnectedPort(Ip4("198.18.2.1")), kNoPort);
}

TEST(RouteTableTest, WithoutGatewayUnknownDestinationsHaveNoNextHop) {
  RouteTable table = Testbed(false);
  EXPECT_FALSE(table.Lookup(Ip4("203.0.113.5")).ok());
  EXPECT_FALSE(RouteTable().Lookup(Ip4("198.18.0.2")).ok());
}

TEST(RouteTableTest, GatewayCatchesTheRest) {
  RouteTable table = Testbed(true);
  EXPECT_EQ(table.Lookup(Ip4("203.0.113.5")), (NextHop{Ip4("198.18.0.254"), 0}));
  EXPECT_EQ(table.default_gateway(), (NextHop{Ip4("198.18.0.254"), 0}));
}

TEST(RouteTableTest, LongestPrefixWins) {
  RouteTable table = Testbed(true, {{Ip4("198.51.100.0"), 24, Ip4("198.18.1.250"), 1},
                                    {Ip4("198.51.100.128"), 25, Ip4("198.18.0.250"), 0},
                                    {Ip4("198.18.0.0"), 16, Ip4("198.18.1.251"), 1}});
  EXPECT_EQ(table.Lookup(Ip4("198.51.100.7")), (NextHop{Ip4("198.18.1.250"), 1}));
  EXPECT_EQ(table.Lookup(Ip4("198.51.100.200")), (NextHop{Ip4("198.18.0.250"), 0}));
  // The /24 connected subnets beat the /16 route; the rest of the /16 takes the route.
  EXPECT_EQ(table.Lookup(Ip4("198.18.0.9")), (NextHop{Ip4("198.18.0.9"), 0}));
  EXPECT_EQ(table.Lookup(Ip4("198.18.7.9")), (NextHop{Ip4("198.18.1.251"), 1}));
  EXPECT_EQ(table.Lookup(Ip4("192.0.2.1")), (NextHop{Ip4("198.18.0.254"), 0}));
}

TEST(RouteTableTest, DefaultRouteEntryBeatsPortGateway) {
  RouteTable table = Testbed(true, {{0, 0, Ip4("198.18.1.250"), 1}});
  EXPECT_EQ(table.Lookup(Ip4("192.0.2.1")), (NextHop{Ip4("198.18.1.250"), 1}));
}

TEST(RouteTableTest, RefusesMalformedEntries) {
  std::vector<ConnectedSpec> bad_length = {{1, 33, 0, 0}};
  EXPECT_FALSE(RouteTable::Create(bad_length, {}).ok());
  std::vector<RouteSpec> no_via = {{Ip4("198.51.100.0"), 24, 0, 0}};
  EXPECT_FALSE(RouteTable::Create({}, no_via).ok());
}

TEST(RouteTableTest, PrefixMasks) {
  EXPECT_EQ(PrefixMask(0), 0u);
  EXPECT_EQ(PrefixMask(8), 0xff000000u);
  EXPECT_EQ(PrefixMask(32), 0xffffffffu);
}

// ---- IPv6: the same table over Ip6 (the test bed's 2001:db8::/64 and 2001:db8:1::/64).

constexpr std::uint64_t kDb8 = 0x2001'0db8'0000'0000;

TEST(PrefixMask6Test, EveryLengthBoundary) {
  EXPECT_EQ(MaskFor(Ip6{}, 0), (Ip6{0, 0}));
  EXPECT_EQ(MaskFor(Ip6{}, 1), (Ip6{0x8000'0000'0000'0000, 0}));
  EXPECT_EQ(MaskFor(Ip6{}, 64), (Ip6{~0ULL, 0}));
  EXPECT_EQ(MaskFor(Ip6{}, 65), (Ip6{~0ULL, 0x8000'0000'0000'0000}));
  EXPECT_EQ(MaskFor(Ip6{}, 128), (Ip6{~0ULL, ~0ULL}));
}

TEST(RouteTable6Test, ConnectedRoutesGatewayAndLongestPrefix) {
  const Ip6 client_port{kDb8, 1};
  const Ip6 backend_port{kDb8 | 0x1'0000, 1};
  const Ip6 gateway{kDb8, 0xfe};
  const std::vector<ConnectedSpec6> connected = {{client_port, 64, 0, gateway},
                                                 {backend_port, 64, 1, Ip6{}}};
  const Ip6 router{kDb8 | 0x1'0000, 0xfa};
  // 2001:db8:2::/48 via a router on the backend side; one /128 of it back on the client side.
  const std::vector<RouteSpec6> routes = {{Ip6{kDb8 | 0x2'0000, 0}, 48, router, 1},
                                          {Ip6{kDb8 | 0x2'0000, 7}, 128, gateway, 0}};
  Result<RouteTable6> table = RouteTable6::Create(connected, routes);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  const Ip6 client{kDb8, 2};
  EXPECT_EQ(table->Lookup(client), (NextHop6{client, 0}));
  const Ip6 backend{kDb8 | 0x1'0000, 0x11};
  EXPECT_EQ(table->Lookup(backend), (NextHop6{backend, 1}));
  EXPECT_EQ(table->Lookup(Ip6{kDb8 | 0x2'0000, 5}), (NextHop6{router, 1}));
  EXPECT_EQ(table->Lookup(Ip6{kDb8 | 0x2'0000, 7}), (NextHop6{gateway, 0}));
  EXPECT_EQ(table->Lookup(Ip6{kDb8 | 0x2'ffff, 5}), (NextHop6{router, 1}));   // still in the /48
  EXPECT_EQ(table->Lookup(Ip6{kDb8 | 0x3'0000, 5}), (NextHop6{gateway, 0}));  // the default
  EXPECT_EQ(table->ConnectedPort(backend), 1);
  EXPECT_EQ(table->ConnectedPort(Ip6{kDb8 | 0x2'0000, 5}), kNoPort);
  const std::vector<RouteSpec6> bad = {{Ip6{kDb8, 0}, 129, router, 1}};
  EXPECT_FALSE(RouteTable6::Create(connected, bad).ok());
  const std::vector<RouteSpec6> no_via = {{Ip6{kDb8, 0}, 48, Ip6{}, 1}};
  EXPECT_FALSE(RouteTable6::Create(connected, no_via).ok());
}

}  // namespace
}  // namespace fulcrum::nat
