// lb-bench's synthetic traffic: the topology, 64-byte frames written straight into mbufs, and
// the check of what the workers sent.
//
// Theory of operation: every frame is 60 bytes in the mbuf (64 on the wire with the FCS): an
// untagged Ethernet header, a 20-byte IPv4 header and a TCP header (20 bytes, up to 6 bytes of
// data) or a UDP header with 18 bytes of payload. Checksums are computed by DPDK's own
// rte_ipv4_cksum / rte_ipv4_udptcp_cksum, not by nat/, so the check of the output compares
// nat's incremental updates with an independent full computation (tests/support).
//
// Connections are numbered. Connection `id` is the client ClientOf(id) talking to the VIP
// VipOf(id); every TCP segment of it, either way, carries `id` as its sequence number and every
// UDP datagram carries it in its first four payload bytes. The pipeline leaves both untouched,
// so each output frame says which connection it belongs to, and the check compares its
// addresses, ports, MACs and TTL with what that connection must have.
#pragma once

#include <cstdint>
#include <string>

#include "nat/arp.h"
#include "nat/flow_key.h"
#include "nat/packet.h"

namespace fulcrum::bench {

inline constexpr std::uint16_t kFrameLen = 60;
inline constexpr std::uint16_t kTcpPayloadLen = 6;

// Addresses in host order.
inline constexpr std::uint32_t Ip4(std::uint32_t a, std::uint32_t b, std::uint32_t c,
                                   std::uint32_t d) {
  return a << 24 | b << 16 | c << 8 | d;
}

// Clients come from 198.19.0.0/16 through the client port's gateway (a router, as in front of
// a real LB); the backends and the fnat local addresses sit on the backend port's subnet.
inline constexpr std::uint32_t kClientBase = Ip4(198, 19, 0, 0);
inline constexpr std::uint32_t kClientIps = 65536;
inline constexpr std::uint32_t kGateway = Ip4(198, 18, 0, 254);
inline constexpr std::uint32_t kVips[] = {Ip4(198, 18, 100, 10), Ip4(198, 18, 100, 11)};
inline constexpr std::uint32_t kVipCount = 2;
inline constexpr std::uint16_t kTcpPort = 80;
inline constexpr std::uint16_t kUdpPort = 53;
inline constexpr std::uint16_t kBackendTcpPort = 8080;
inline constexpr std::uint16_t kBackendUdpPort = 5353;
inline constexpr std::uint32_t kBackendBase = Ip4(198, 18, 1, 11);  // .11 ..
inline constexpr std::uint32_t kBackends = 8;
inline constexpr std::uint32_t kLocalBase = Ip4(198, 18, 1, 32);  // .32 ..
inline constexpr std::uint32_t kMaxLocalAddresses = 192;          // .. .223

inline constexpr nat::MacAddress kGatewayMac = {0x02, 0x9a, 0, 0, 0, 0xfe};
inline nat::MacAddress BackendMac(std::uint32_t backend) {
  return {0x02, 0xbe, 0, 0, 0, static_cast<std::uint8_t>(backend + 1)};
}

// Connection `id`'s client address and port: 65536 client addresses, then the next port.
inline nat::Endpoint4 ClientOf(std::uint64_t id) {
  return {kClientBase + static_cast<std::uint32_t>(id % kClientIps),
          static_cast<std::uint16_t>(1024 + id / kClientIps)};
}
// The largest id ClientOf keeps unique.
inline constexpr std::uint64_t kMaxConnId = std::uint64_t{kClientIps} * (65536 - 1024) - 1;

inline std::uint32_t VipOf(std::uint64_t id) { return kVips[id % kVipCount]; }

// What the backend side of an fnat connection looks like, learnt from the SYN the LB sent.
struct BackendSide {
  std::uint32_t local_ip = 0;
  std::uint16_t local_port = 0;
  std::uint8_t backend = 0;  // index: kBackendBase + backend
  std::uint8_t known = 0;
};
static_assert(sizeof(BackendSide) == 8);

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
};

// Writes the client's frame (client -> VIP) of `spec` into `out` (kFrameLen bytes).
void WriteFromClient(std::uint8_t* out, const LinkMacs& macs, const FrameSpec& spec);
// Writes the backend's frame (backend -> local address) of `spec`: `side` says where the LB
// sent the connection.
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
OutputCheck CheckToBackend(const std::uint8_t* frame, std::uint16_t len, const LinkMacs& macs,
                           std::uint32_t local_addresses, bool verify_checksums);
// A frame the worker sent towards a client (client port tx).
OutputCheck CheckToClient(const std::uint8_t* frame, std::uint16_t len, const LinkMacs& macs,
                          bool verify_checksums);

// Whether a frame is ARP (Apply announces addresses; not a forwarded packet).
bool IsArp(const std::uint8_t* frame, std::uint16_t len);

}  // namespace fulcrum::bench
