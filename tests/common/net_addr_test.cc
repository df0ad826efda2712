#include "common/net_addr.h"

#include <map>
#include <string>
#include <unordered_set>

#include <gtest/gtest.h>

namespace fulcrum {
namespace {

IpAddress Ip(std::string_view text) {
  Result<IpAddress> addr = IpAddress::Parse(text);
  EXPECT_TRUE(addr.ok()) << text << ": " << addr.status().ToString();
  return addr.ok() ? *addr : IpAddress();
}

TEST(IpAddressTest, ParsesIpv4) {
  const IpAddress addr = Ip("198.18.0.1");
  EXPECT_TRUE(addr.is_v4());
  EXPECT_EQ(addr.family(), AddressFamily::kIpv4);
  EXPECT_EQ(addr.v4(), 0xc6120001u);
  EXPECT_EQ(addr.size(), 4u);
  EXPECT_EQ(addr.bytes()[0], 198);
  EXPECT_EQ(addr.bytes()[3], 1);
  EXPECT_EQ(addr.ToString(), "198.18.0.1");
  EXPECT_EQ(IpAddress::V4(0xc6120001u), addr);
}

TEST(IpAddressTest, ParsesIpv6AndPrintsCanonically) {
  const IpAddress addr = Ip("2001:0db8:0:0:0:0:0:0001");
  EXPECT_TRUE(addr.is_v6());
  EXPECT_EQ(addr.size(), 16u);
  EXPECT_EQ(addr.v4(), 0u);
  EXPECT_EQ(addr.bytes()[0], 0x20);
  EXPECT_EQ(addr.bytes()[15], 0x01);
  EXPECT_EQ(addr.ToString(), "2001:db8::1");
  EXPECT_EQ(Ip("::ffff:198.18.0.1").ToString(), "::ffff:198.18.0.1");
}

TEST(IpAddressTest, RejectsGarbage) {
  using namespace std::string_view_literals;
  const std::string_view kBad[] = {""sv,       "1.2.3"sv,          "1.2.3.4.5",     "256.1.1.1",
                                   "01.2.3.4", " 1.2.3.4",         "1.2.3.4 ",      "1.2.3.4/24",
                                   "abc",      "2001:db8::1%eth0", "[2001:db8::1]", "2001:db8:::1",
                                   "1.2.3.-4", "1.2.3.4\0"sv};
  for (std::string_view text : kBad) {
    Result<IpAddress> addr = IpAddress::Parse(text);
    EXPECT_FALSE(addr.ok()) << "accepted '" << text << "'";
    if (!addr.ok()) {
      EXPECT_EQ(addr.status().code(), ErrorCode::kInvalidParameter);
    }
  }
  EXPECT_FALSE(IpAddress::Parse(std::string(200, '1')).ok());
}

TEST(IpAddressTest, ClassifiesSpecialAddresses) {
  EXPECT_TRUE(Ip("0.0.0.0").IsUnspecified());
  EXPECT_TRUE(Ip("::").IsUnspecified());
  EXPECT_FALSE(Ip("198.18.0.1").IsUnspecified());
  EXPECT_TRUE(Ip("127.0.0.5").IsLoopback());
  EXPECT_TRUE(Ip("::1").IsLoopback());
  EXPECT_FALSE(Ip("::2").IsLoopback());
  EXPECT_TRUE(Ip("224.0.0.1").IsMulticastOrBroadcast());
  EXPECT_TRUE(Ip("239.255.255.255").IsMulticastOrBroadcast());
  EXPECT_TRUE(Ip("255.255.255.255").IsMulticastOrBroadcast());
  EXPECT_TRUE(Ip("ff02::1").IsMulticastOrBroadcast());
  EXPECT_FALSE(Ip("198.18.100.10").IsMulticastOrBroadcast());
  EXPECT_FALSE(Ip("2001:db8::1").IsMulticastOrBroadcast());
}

TEST(IpAddressTest, OrdersIpv4BeforeIpv6AndNumerically) {
  EXPECT_LT(Ip("198.18.0.2"), Ip("198.18.0.10"));
  EXPECT_LT(Ip("255.255.255.255"), Ip("::"));
  EXPECT_EQ(Ip("2001:db8::1"), Ip("2001:db8:0::1"));
  EXPECT_NE(Ip("0.0.0.0"), Ip("::"));
  std::map<IpAddress, int> ordered = {
      {Ip("2001:db8::1"), 3}, {Ip("198.18.0.10"), 2}, {Ip("198.18.0.2"), 1}};
  int expected = 1;
  for (const auto& [addr, rank] : ordered) {
    EXPECT_EQ(rank, expected++) << addr.ToString();
  }
}

TEST(IpAddressTest, HashesEqualAddressesEqually) {
  std::unordered_set<IpAddress> set = {Ip("198.18.0.1"), Ip("2001:db8::1")};
  EXPECT_EQ(set.count(Ip("198.18.0.1")), 1u);
  EXPECT_EQ(set.count(Ip("2001:db8:0:0::1")), 1u);
  EXPECT_EQ(set.count(Ip("198.18.0.2")), 0u);
  EXPECT_NE(std::hash<IpAddress>()(Ip("0.0.0.0")), std::hash<IpAddress>()(Ip("::")));
}

TEST(EndpointTest, ParsesAndPrintsBothFamilies) {
  Result<Endpoint> v4 = Endpoint::Parse("198.18.1.11:80");
  ASSERT_TRUE(v4.ok()) << v4.status().ToString();
  EXPECT_EQ(v4->addr, Ip("198.18.1.11"));
  EXPECT_EQ(v4->port, 80);
  EXPECT_EQ(v4->ToString(), "198.18.1.11:80");

  Result<Endpoint> v6 = Endpoint::Parse("[2001:0db8::1]:65535");
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  EXPECT_EQ(v6->addr, Ip("2001:db8::1"));
  EXPECT_EQ(v6->port, 65535);
  EXPECT_EQ(v6->ToString(), "[2001:db8::1]:65535");
}

TEST(EndpointTest, RejectsBadEndpoints) {
  for (std::string_view text :
       {"", "198.18.1.11", "198.18.1.11:", "198.18.1.11:0", "198.18.1.11:65536", "198.18.1.11:080",
        "198.18.1.11:+80", "198.18.1.11:80x", "198.18.1.11:-1", ":80", "2001:db8::1:80",
        "[2001:db8::1]", "[2001:db8::1]80", "[2001:db8::1:80", "[198.18.1.11]:80", "host:80",
        "198.18.1.11:99999999999"}) {
    Result<Endpoint> endpoint = Endpoint::Parse(text);
    EXPECT_FALSE(endpoint.ok()) << "accepted '" << text << "'";
    if (!endpoint.ok()) {
      EXPECT_EQ(endpoint.status().code(), ErrorCode::kInvalidParameter);
      EXPECT_NE(endpoint.status().message().find("endpoint"), std::string::npos)
          << endpoint.status().message();
    }
  }
}

TEST(EndpointTest, OrdersByAddressThenPortAndHashes) {
  const Endpoint a = *Endpoint::Parse("198.18.1.11:80");
  const Endpoint b = *Endpoint::Parse("198.18.1.11:443");
  const Endpoint c = *Endpoint::Parse("198.18.1.12:22");
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  std::unordered_set<Endpoint> set = {a, c};
  EXPECT_EQ(set.count(*Endpoint::Parse("198.18.1.11:80")), 1u);
  EXPECT_EQ(set.count(b), 0u);
}

TEST(PrefixTest, KeepsHostBitsAndContains) {
  Result<Prefix> prefix = Prefix::Parse("198.18.0.1/24");
  ASSERT_TRUE(prefix.ok()) << prefix.status().ToString();
  EXPECT_EQ(prefix->addr(), Ip("198.18.0.1"));
  EXPECT_EQ(prefix->length(), 24);
  EXPECT_EQ(prefix->Network(), Ip("198.18.0.0"));
  EXPECT_EQ(prefix->ToString(), "198.18.0.1/24");
  EXPECT_TRUE(prefix->Contains(Ip("198.18.0.255")));
  EXPECT_FALSE(prefix->Contains(Ip("198.18.1.1")));
  EXPECT_FALSE(prefix->Contains(Ip("::ffff:198.18.0.2")));
}

TEST(PrefixTest, HandlesIpv6AndEdgeLengths) {
  Result<Prefix> v6 = Prefix::Parse("2001:db8::1/32");
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  EXPECT_EQ(v6->Network(), Ip("2001:db8::"));
  EXPECT_TRUE(v6->Contains(Ip("2001:db8:ffff::5")));
  EXPECT_FALSE(v6->Contains(Ip("2001:db9::1")));
  EXPECT_FALSE(v6->Contains(Ip("198.18.0.1")));

  Result<Prefix> odd = Prefix::Parse("198.18.0.129/25");
  ASSERT_TRUE(odd.ok());
  EXPECT_TRUE(odd->Contains(Ip("198.18.0.200")));
  EXPECT_FALSE(odd->Contains(Ip("198.18.0.127")));

  Result<Prefix> all = Prefix::Parse("0.0.0.0/0");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->Contains(Ip("203.0.113.9")));
  Result<Prefix> host = Prefix::Parse("2001:db8::7/128");
  ASSERT_TRUE(host.ok());
  EXPECT_TRUE(host->Contains(Ip("2001:db8::7")));
  EXPECT_FALSE(host->Contains(Ip("2001:db8::8")));
}

TEST(PrefixTest, RejectsBadPrefixes) {
  for (std::string_view text : {"198.18.0.1", "198.18.0.1/33", "198.18.0.1/", "198.18.0.1/024",
                                "198.18.0.1/-1", "2001:db8::/129", "bad/8", "/8"}) {
    EXPECT_FALSE(Prefix::Parse(text).ok()) << "accepted '" << text << "'";
  }
  EXPECT_FALSE(Prefix::Create(Ip("198.18.0.1"), 33).ok());
  EXPECT_FALSE(Prefix::Create(Ip("198.18.0.1"), -1).ok());
  EXPECT_TRUE(Prefix::Create(Ip("2001:db8::"), 128).ok());
}

}  // namespace
}  // namespace fulcrum
