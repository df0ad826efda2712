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

}  // namespace
}  // namespace fulcrum::nat
