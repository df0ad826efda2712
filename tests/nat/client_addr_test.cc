#include "nat/client_addr.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using testing::Bytes;
using testing::Ip4;
using testing::Wide6;

std::string Text(const ClientAddrBytes& bytes, std::size_t length) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), length);
}
Bytes Prefix(const ClientAddrBytes& bytes, std::size_t length) {
  return Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(length));
}

const Bytes kV2Signature = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

TEST(ProxyV1Test, SpecificationsLongestHeadersAreExact) {
  // The specification's worst cases (section 2.1): 56 bytes for TCP4, 104 for TCP6.
  ClientAddrBytes out;
  const Endpoint4 all4{0xffffffffu, 65535};
  std::size_t n = EncodeClientAddr(ClientAddrMode::kProxyV1, all4, all4, out);
  EXPECT_EQ(Text(out, n), "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n");
  EXPECT_EQ(n, 56u);

  const Endpoint6 all6{Ip6{~0ULL, ~0ULL}, 65535};
  n = EncodeClientAddr(ClientAddrMode::kProxyV1, all6, all6, out);
  EXPECT_EQ(Text(out, n),
            "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n");
  EXPECT_EQ(n, 104u);
  EXPECT_LE(n, kProxyV1MaxLen);
}

TEST(ProxyV1Test, OrdinaryConnections) {
  ClientAddrBytes out;
  std::size_t n = EncodeClientAddr(ClientAddrMode::kProxyV1, Endpoint4{Ip4("198.18.0.2"), 40001},
                                   Endpoint4{Ip4("198.18.100.1"), 80}, out);
  EXPECT_EQ(Text(out, n), "PROXY TCP4 198.18.0.2 198.18.100.1 40001 80\r\n");
  n = EncodeClientAddr(ClientAddrMode::kProxyV1, Endpoint4{0, 0}, Endpoint4{Ip4("198.18.0.9"), 1},
                       out);
  EXPECT_EQ(Text(out, n), "PROXY TCP4 0.0.0.0 198.18.0.9 0 1\r\n");
  n = EncodeClientAddr(ClientAddrMode::kProxyV1,
                       Endpoint6{Wide6(testing::Ip6("2001:db8::2")), 51000},
                       Endpoint6{Wide6(testing::Ip6("2001:db8:100::1")), 443}, out);
  EXPECT_EQ(Text(out, n), "PROXY TCP6 2001:db8::2 2001:db8:100::1 51000 443\r\n");
}

TEST(ProxyV2Test, Ipv4HeaderLayout) {
  ClientAddrBytes out;
  const std::size_t n =
      EncodeClientAddr(ClientAddrMode::kProxyV2, Endpoint4{Ip4("198.18.0.2"), 0x9c41},
                       Endpoint4{Ip4("198.18.100.1"), 80}, out);
  Bytes want = kV2Signature;
  // Version 2 | PROXY, AF_INET | STREAM, 12 address bytes: source, destination, their ports.
  want.insert(want.end(),
              {0x21, 0x11, 0x00, 0x0c, 198, 18, 0, 2, 198, 18, 100, 1, 0x9c, 0x41, 0x00, 0x50});
  EXPECT_EQ(Prefix(out, n), want);
  EXPECT_EQ(n, 28u);
}

TEST(ProxyV2Test, Ipv6HeaderLayout) {
  ClientAddrBytes out;
  const auto client = testing::Ip6("2001:db8::2");
  const auto vip = testing::Ip6("2001:db8:100::1");
  const std::size_t n = EncodeClientAddr(ClientAddrMode::kProxyV2, Endpoint6{Wide6(client), 1234},
                                         Endpoint6{Wide6(vip), 443}, out);
  Bytes want = kV2Signature;
  want.insert(want.end(), {0x21, 0x21, 0x00, 0x24});  // AF_INET6 | STREAM, 36 address bytes
  want.insert(want.end(), client.begin(), client.end());
  want.insert(want.end(), vip.begin(), vip.end());
  want.insert(want.end(), {0x04, 0xd2, 0x01, 0xbb});
  EXPECT_EQ(Prefix(out, n), want);
  EXPECT_EQ(n, kProxyV2MaxLen);
}

TEST(ToaTest, OptionLayoutsTheBackendModulesRead) {
  ClientAddrBytes out;
  std::size_t n = EncodeClientAddr(ClientAddrMode::kToa, Endpoint4{Ip4("198.18.0.2"), 40001},
                                   Endpoint4{Ip4("198.18.100.1"), 80}, out);
  // Kind 254, length 8, port, address: struct toa_data of LVS's toa.ko.
  EXPECT_EQ(Prefix(out, n), (Bytes{254, 8, 0x9c, 0x41, 198, 18, 0, 2}));

  const auto client = testing::Ip6("2001:db8::2");
  n = EncodeClientAddr(ClientAddrMode::kToa, Endpoint6{Wide6(client), 40001},
                       Endpoint6{Wide6(testing::Ip6("2001:db8:100::1")), 80}, out);
  Bytes want = {253, 20, 0x9c, 0x41};
  want.insert(want.end(), client.begin(), client.end());
  EXPECT_EQ(Prefix(out, n), want);
  EXPECT_EQ(n % 4, 0u);  // options go in 4-byte multiples
}

TEST(ClientAddrTest, OffWritesNothing) {
  ClientAddrBytes out;
  EXPECT_EQ(EncodeClientAddr(ClientAddrMode::kOff, Endpoint4{1, 2}, Endpoint4{3, 4}, out), 0u);
}

TEST(FormatIp6Test, AgreesWithInetNtop) {
  std::mt19937_64 random(5952);
  for (int i = 0; i < 20000; ++i) {
    testing::Ip6Bytes a{};
    // Words zero often, so that runs of every length and position occur; a few mapped and
    // compatible IPv4 addresses, and the unspecified and loopback ones.
    for (std::size_t w = 0; w < 8; ++w) {
      if (random() % 3 != 0) {
        const auto v = static_cast<std::uint16_t>(random() % 4 == 0 ? random() % 16 : random());
        a[2 * w] = static_cast<std::uint8_t>(v >> 8);
        a[2 * w + 1] = static_cast<std::uint8_t>(v);
      }
    }
    switch (i % 16) {
      case 0:
        std::fill(a.begin(), a.begin() + 10, 0);
        a[10] = a[11] = 0xff;
        break;
      case 1:
        std::fill(a.begin(), a.begin() + 12, 0);
        break;
      case 2:
        a.fill(0);
        a[15] = static_cast<std::uint8_t>(random() % 2);
        break;
      default:
        break;
    }
    char want[INET6_ADDRSTRLEN];
    ASSERT_NE(inet_ntop(AF_INET6, a.data(), want, sizeof(want)), nullptr);
    char got[64];
    const std::size_t n = FormatIp6(Wide6(a), got);
    ASSERT_EQ(std::string(got, n), std::string(want)) << i;
  }
}

}  // namespace
}  // namespace fulcrum::nat
