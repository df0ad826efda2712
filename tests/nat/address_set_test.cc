#include "nat/address_set.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using testing::Ip4;
using testing::Wide6;

// The reference: an address is in the set when some prefix's first `length` bits are its own.
bool BruteContains(const std::vector<Cidr4>& cidrs, std::uint32_t ip) {
  for (const Cidr4& c : cidrs) {
    const std::uint32_t mask = c.length == 0 ? 0 : ~0u << (32 - c.length);
    if ((ip & mask) == (c.ip & mask)) {
      return true;
    }
  }
  return false;
}
bool BruteContains(const std::vector<Cidr6>& cidrs, const Ip6& ip) {
  for (const Cidr6& c : cidrs) {
    const int hi_bits = std::min<int>(c.length, 64);
    const int lo_bits = std::max<int>(c.length - 64, 0);
    const std::uint64_t hi_mask = hi_bits == 0 ? 0 : ~0ULL << (64 - hi_bits);
    const std::uint64_t lo_mask = lo_bits == 0 ? 0 : ~0ULL << (64 - lo_bits);
    if ((ip.hi & hi_mask) == (c.ip.hi & hi_mask) && (ip.lo & lo_mask) == (c.ip.lo & lo_mask)) {
      return true;
    }
  }
  return false;
}

TEST(AddressSetTest, EmptyContainsNothing) {
  const AddressSet set;
  EXPECT_FALSE(set.Contains(Ip4("198.18.0.2")));
  EXPECT_FALSE(set.Contains(Ip6{}));
}

TEST(AddressSetTest, PrefixesAndTheirEdges) {
  const std::vector<Cidr4> v4 = {{Ip4("198.18.0.0"), 24},
                                 {Ip4("198.18.1.7"), 32},
                                 {Ip4("198.18.1.8"), 29},
                                 {Ip4("198.19.0.0"), 16}};
  const std::vector<Cidr6> v6 = {{Wide6(testing::Ip6("2001:db8::")), 64}};
  const AddressSet set = AddressSet::Build(v4, v6);
  EXPECT_TRUE(set.Contains(Ip4("198.18.0.0")));
  EXPECT_TRUE(set.Contains(Ip4("198.18.0.255")));
  EXPECT_FALSE(set.Contains(Ip4("198.18.1.6")));
  EXPECT_TRUE(set.Contains(Ip4("198.18.1.7")));
  EXPECT_TRUE(set.Contains(Ip4("198.18.1.15")));
  EXPECT_FALSE(set.Contains(Ip4("198.18.1.16")));
  EXPECT_FALSE(set.Contains(Ip4("198.17.255.255")));
  EXPECT_TRUE(set.Contains(Ip4("198.19.255.255")));
  EXPECT_EQ(set.ranges4(), 3u) << "198.18.1.7/32 and 198.18.1.8/29 touch: one range";
  EXPECT_TRUE(set.Contains(Wide6(testing::Ip6("2001:db8::ffff:1"))));
  EXPECT_FALSE(set.Contains(Wide6(testing::Ip6("2001:db8:0:1::"))));
  EXPECT_FALSE(set.Contains(Ip4("0.0.0.0")));
}

TEST(AddressSetTest, WholeSpacesAndTheirEnds) {
  const std::vector<Cidr4> v4 = {{0, 0}};
  const std::vector<Cidr6> v6 = {{Ip6{~0ULL, ~0ULL}, 128}, {Ip6{0, 0}, 128}};
  const AddressSet set = AddressSet::Build(v4, v6);
  EXPECT_TRUE(set.Contains(0u));
  EXPECT_TRUE(set.Contains(~0u));
  EXPECT_TRUE(set.Contains(Ip6{~0ULL, ~0ULL}));
  EXPECT_TRUE(set.Contains(Ip6{0, 0}));
  EXPECT_FALSE(set.Contains(Ip6{0, 1}));
  EXPECT_FALSE(set.Contains(Ip6{~0ULL, ~0ULL - 1}));
}

TEST(AddressSetTest, AgreesWithBruteForceOnRandomPrefixes) {
  std::mt19937_64 random(1000);
  for (int round = 0; round < 200; ++round) {
    // A base near which most prefixes and probes fall, so that they overlap and nest.
    const auto base4 = static_cast<std::uint32_t>(random());
    const Ip6 base6{random(), random()};
    std::vector<Cidr4> v4;
    std::vector<Cidr6> v6;
    const int count = 1 + static_cast<int>(random() % 1000);
    for (int i = 0; i < count; ++i) {
      const auto near4 = static_cast<std::uint32_t>(base4 ^ (random() & 0xffffff));
      v4.push_back({near4, static_cast<std::uint8_t>(8 + random() % 25)});
      v6.push_back({Ip6{base6.hi ^ (random() & 0xffff), random()},
                    static_cast<std::uint8_t>(32 + random() % 97)});
    }
    const AddressSet set = AddressSet::Build(v4, v6);
    for (int probe = 0; probe < 2000; ++probe) {
      // IPv4: random, near the base, and just inside and outside a prefix's edges.
      const Cidr4& edge = v4[random() % v4.size()];
      const std::uint32_t host = edge.length == 32 ? 0 : ~0u >> edge.length;
      const std::uint32_t edges[] = {(edge.ip & ~host) - 1, edge.ip & ~host, edge.ip | host,
                                     (edge.ip | host) + 1};
      const std::uint32_t ip4 = probe % 4 == 0 ? static_cast<std::uint32_t>(random())
                                : probe % 4 == 1
                                    ? edges[random() % 4]
                                    : base4 ^ static_cast<std::uint32_t>(random() & 0xffffff);
      ASSERT_EQ(set.Contains(ip4), BruteContains(v4, ip4)) << round << " " << ip4;
      // Probes at and around the prefixes' own edges as well as random ones.
      const Cidr6& near = v6[random() % v6.size()];
      const Ip6 ip6 = probe % 3 == 0   ? Ip6{base6.hi ^ (random() & 0xffff), random()}
                      : probe % 3 == 1 ? near.ip
                                       : Ip6{near.ip.hi, near.ip.lo ^ (random() & 0xff)};
      ASSERT_EQ(set.Contains(ip6), BruteContains(v6, ip6)) << round;
    }
  }
}

}  // namespace
}  // namespace fulcrum::nat
