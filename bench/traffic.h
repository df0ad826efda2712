// lb-bench's synthetic traffic: the topology, minimal frames written straight into mbufs, and
// the check of what the workers sent. One generator serves both address families: its
// functions are templates over Family4 or Family6, which hold each family's addresses and
// header layout.
//
// Theory of operation: every frame is an untagged Ethernet header, an option-less IP header
// (IPv4: 20 bytes, IPv6: 40 bytes, no extension header) and a TCP header (20 bytes, up to 6
// bytes of data) or a UDP header with 18 bytes of payload: 60 bytes in the mbuf for IPv4 (64
// on the wire with the FCS), 80 for IPv6. Checksums are computed by DPDK's own rte_ipv4_cksum
// and rte_ipv4_udptcp_cksum / rte_ipv6_udptcp_cksum, not by nat/, so the check of the output
// compares nat's incremental updates with an independent full computation (tests/support).
//
// Connections are numbered. Connection `id` is the client ClientOf<F>(id) talking to the VIP
// VipOf<F>(id); every TCP segment of it, either way, carries `id` as its sequence number and
// every UDP datagram carries it in its first four payload bytes. The pipeline leaves both
// untouched, so each output frame says which connection it belongs to, and the check compares
// its addresses, ports, MACs and TTL (hop limit) with what that connection must have.
//
// Both families have the same shape: clients behind the client port's gateway, two VIPs,
// kBackends backends and fnat local addresses (up to F::kMaxLocalAddresses) on the backend
// port's subnet, each numbered from a base address (Nth).
#pragma once

#include <cstdint>
#include <string>

#include "common/net_addr.h"
#include "nat/arp.h"
#include "nat/flow_key.h"
#include "nat/packet.h"

namespace fulcrum::bench {

inline constexpr std::uint16_t kTcpPayloadLen = 6;

// Addresses in host order.
inline constexpr std::uint32_t Ip4(std::uint32_t a, std::uint32_t b, std::uint32_t c,
                                   std::uint32_t d) {
  return a << 24 | b << 16 | c << 8 | d;
}

// The address `n` after `base` (n below 2^32, never crossing the low 64 bits of an IPv6 one).
inline constexpr std::uint32_t Nth(std::uint32_t base, std::uint32_t n) { return base + n; }
inline constexpr nat::Ip6 Nth(const nat::Ip6& base, std::uint32_t n) {
  return {base.hi, base.lo + n};
}
// How far `ip` lies after `base`: the n of Nth(base, n), or a huge number when `ip` is not
// after `base`.
inline constexpr std::uint64_t IndexFrom(std::uint32_t base, std::uint32_t ip) {
  return std::uint32_t{ip - base};
}
inline constexpr std::uint64_t IndexFrom(const nat::Ip6& base, const nat::Ip6& ip) {
  return ip.hi == base.hi ? ip.lo - base.lo : ~std::uint64_t{0};
}

IpAddress AddressOf(std::uint32_t ip);
IpAddress AddressOf(const nat::Ip6& ip);
// Dotted quad or RFC 5952 text.
template <typename Ip>
std::string IpText(const Ip& ip) {
  return AddressOf(ip).ToString();
}

// Clients come from 198.19.0.0/16 through the client port's gateway (a router, as in front of
// a real LB); the backends and the fnat local addresses sit on the backend port's subnet.
struct Family4 {
  static constexpr bool kIpv6 = false;
  using Ip = std::uint32_t;
  using Endpoint = nat::Endpoint4;
  static constexpr const char* kNameSuffix = "";  // of the scenario names
  static constexpr std::uint16_t kEtherType = 0x0800;
  static constexpr std::uint16_t kIpLen = 20;
  static constexpr std::uint16_t kFrameLen = 60;
  // The first byte of the IP header, under a mask: version 4, 20 bytes.
  static constexpr std::uint8_t kFirstByte = 0x45;
  static constexpr std::uint8_t kFirstByteMask = 0xff;
  // Offsets in the IP header.
  static constexpr std::size_t kTtlAt = 8;
  static constexpr std::size_t kProtoAt = 9;
  static constexpr std::size_t kSrcAt = 12;
  static constexpr std::size_t kDstAt = 16;
  // The ports' own addresses (client, backend) and their subnets' prefix length.
  static constexpr Ip kPortAddresses[] = {Ip4(198, 18, 0, 1), Ip4(198, 18, 1, 1)};
  static constexpr int kSubnetBits = 24;
  static constexpr Ip kClientBase = Ip4(198, 19, 0, 0);
  static constexpr Ip kGateway = Ip4(198, 18, 0, 254);
  static constexpr Ip kVips[] = {Ip4(198, 18, 100, 10), Ip4(198, 18, 100, 11)};
  static constexpr Ip kBackendBase = Ip4(198, 18, 1, 11);  // .11 ..
  static constexpr Ip kLocalBase = Ip4(198, 18, 1, 32);    // .32 .. .223
  static constexpr std::uint32_t kMaxLocalAddresses = 192;
};

// The same shape in IPv6: clients from 2001:db8:ff::/64 through the gateway 2001:db8::fe,
// VIPs 2001:db8:100::10 and ::11, backends from 2001:db8:1::11, local addresses from
// 2001:db8:1::20. lbd takes at most 256 local addresses per port (kMaxLocalAddressesPerPort),
// so the backend port has 192 of IPv4 and 64 of IPv6: 4.1M fnat ports, as many as the IPv6
// scenarios' largest table.
struct Family6 {
  static constexpr bool kIpv6 = true;
  using Ip = nat::Ip6;
  using Endpoint = nat::Endpoint6;
  static constexpr const char* kNameSuffix = "_v6";
  static constexpr std::uint16_t kEtherType = 0x86dd;
  static constexpr std::uint16_t kIpLen = 40;
  static constexpr std::uint16_t kFrameLen = 80;
  static constexpr std::uint8_t kFirstByte = 0x60;  // version 6, any traffic class
  static constexpr std::uint8_t kFirstByteMask = 0xf0;
  static constexpr std::size_t kTtlAt = 7;  // the hop limit
  static constexpr std::size_t kProtoAt = 6;
  static constexpr std::size_t kSrcAt = 8;
  static constexpr std::size_t kDstAt = 24;
  static constexpr std::uint64_t kClientNet = 0x20010db8'00000000;   // 2001:db8::/64
  static constexpr std::uint64_t kBackendNet = 0x20010db8'00010000;  // 2001:db8:1::/64
  static constexpr Ip kPortAddresses[] = {{kClientNet, 1}, {kBackendNet, 1}};
  static constexpr int kSubnetBits = 64;
  static constexpr Ip kClientBase = {0x20010db8'00ff0000, 0};
  static constexpr Ip kGateway = {kClientNet, 0xfe};
  static constexpr Ip kVips[] = {{0x20010db8'01000000, 0x10}, {0x20010db8'01000000, 0x11}};
  static constexpr Ip kBackendBase = {kBackendNet, 0x11};
  static constexpr Ip kLocalBase = {kBackendNet, 0x20};  // ::20 .. ::5f
  static constexpr std::uint32_t kMaxLocalAddresses = 64;
};

inline constexpr std::uint32_t kClientIps = 65536;
inline constexpr std::uint32_t kVipCount = 2;
inline constexpr std::uint16_t kTcpPort = 80;
inline constexpr std::uint16_t kUdpPort = 53;
inline constexpr std::uint16_t kBackendTcpPort = 8080;
inline constexpr std::uint16_t kBackendUdpPort = 5353;
inline constexpr std::uint32_t kBackends = 8;

inline constexpr nat::MacAddress kGatewayMac = {0x02, 0x9a, 0, 0, 0, 0xfe};
inline nat::MacAddress BackendMac(std::uint32_t backend) {
  return {0x02, 0xbe, 0, 0, 0, static_cast<std::uint8_t>(backend + 1)};
}

// Connection `id`'s client address and port: 65536 client addresses, then the next port.
template <typename F>
typename F::Endpoint ClientOf(std::uint64_t id) {
  return {Nth(F::kClientBase, static_cast<std::uint32_t>(id % kClientIps)),
          static_cast<std::uint16_t>(1024 + id / kClientIps)};
}
// The largest id ClientOf keeps unique.
inline constexpr std::uint64_t kMaxConnId = std::uint64_t{kClientIps} * (65536 - 1024) - 1;

template <typename F>
typename F::Ip VipOf(std::uint64_t id) {
  return F::kVips[id % kVipCount];
}

// What the backend side of an fnat connection looks like, learnt from the SYN the LB sent.
struct BackendSide {
  std::uint16_t local_port = 0;
  std::uint8_t local = 0;    // index: Nth(kLocalBase, local)
  std::uint8_t backend = 0;  // index: Nth(kBackendBase, backend)
  std::uint8_t known = 0;
};
static_assert(sizeof(BackendSide) <= 8);

// The MACs a worker sees on a frame it receives.
struct LinkMacs {
  nat::MacAddress client_port;   // the LB's client-side port
  nat::MacAddress backend_port;  // the LB's backend-side port
};

// A TCP segment or UDP datagram of connection `id`.
struct FrameSpec {
  std::uint64_t id = 0;
  std::uint8_t proto = nat::kIpProtoTcp;
  std::uint8_t tcp_flags = 0;
  bool payload = false;  // TCP: 6 bytes of data
  // A connection whose client address goes to its backend in a Proxy Protocol header of this
  // many bytes (0: none): the client's segments after its SYN start at its first byte (id + 1,
  // where the header goes), the backend's acknowledgements cover the header.
  std::uint16_t spliced = 0;
};

// Writes the client's frame (client -> VIP) of `spec` into `out` (F::kFrameLen bytes).
template <typename F>
void WriteFromClient(std::uint8_t* out, const LinkMacs& macs, const FrameSpec& spec);
// Writes the backend's frame (backend -> local address) of `spec`: `side` says where the LB
// sent the connection.
template <typename F>
void WriteFromBackend(std::uint8_t* out, const LinkMacs& macs, const FrameSpec& spec,
                      const BackendSide& side);

// What the check of one output frame found.
struct OutputCheck {
  bool ok = false;
  std::uint64_t id = 0;
  std::uint8_t tcp_flags = 0;
  BackendSide side;  // for a frame towards a backend: where it went
  std::string error;
};

// A frame the worker sent towards a backend (backend port tx): from one of the first
// `local_addresses` local addresses to a backend; `side` says which (the caller compares it
// with what the connection must use). `verify_checksums` recomputes every checksum from
// scratch (slow: use on a sample).
// `spliced`: FrameSpec::spliced of the traffic; a TCP segment other than a SYN then belongs to
// its sequence number less one (the header's own segment, which carries the header) or less
// one and the header (every other one, shifted by it).
template <typename F>
OutputCheck CheckToBackend(const std::uint8_t* frame, std::uint16_t len, const LinkMacs& macs,
                           std::uint32_t local_addresses, bool verify_checksums,
                           std::uint16_t spliced = 0);
// A frame the worker sent towards a client (client port tx).
template <typename F>
OutputCheck CheckToClient(const std::uint8_t* frame, std::uint16_t len, const LinkMacs& macs,
                          bool verify_checksums);

// Whether a frame is neighbour resolution (ARP, or ICMPv6 neighbour discovery): Apply
// announces addresses; not a forwarded packet.
bool IsNeighborDiscovery(const std::uint8_t* frame, std::uint16_t len);

}  // namespace fulcrum::bench
