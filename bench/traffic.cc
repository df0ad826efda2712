#include "bench/traffic.h"

#include <cstring>
#include <span>

#include <fmt/format.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include "tests/support/packet_builder.h"

namespace fulcrum::bench {
namespace {

constexpr std::size_t kEthLen = 14;
constexpr std::size_t kIpLen = 20;
constexpr std::size_t kL4Offset = kEthLen + kIpLen;
constexpr std::uint8_t kTtl = 64;

struct Addresses {
  std::uint32_t src_ip;
  std::uint32_t dst_ip;
  std::uint16_t src_port;
  std::uint16_t dst_port;
};

void PutBe32(std::uint8_t* p, std::uint32_t v) {
  const std::uint32_t be = rte_cpu_to_be_32(v);
  std::memcpy(p, &be, 4);
}

std::uint16_t GetBe16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}
std::uint32_t GetBe32(const std::uint8_t* p) {
  return std::uint32_t{GetBe16(p)} << 16 | GetBe16(p + 2);
}

void WriteFrame(std::uint8_t* out, const nat::MacAddress& dst_mac, const nat::MacAddress& src_mac,
                const FrameSpec& spec, const Addresses& a) {
  std::memset(out, 0, kFrameLen);
  std::memcpy(out, dst_mac.data(), 6);
  std::memcpy(out + 6, src_mac.data(), 6);
  out[12] = 0x08;
  out[13] = 0x00;
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(out + kEthLen);
  const bool tcp = spec.proto == nat::kIpProtoTcp;
  const std::size_t l4_len =
      tcp ? sizeof(rte_tcp_hdr) + (spec.payload ? kTcpPayloadLen : 0) : kFrameLen - kL4Offset;
  ip->version_ihl = RTE_IPV4_VHL_DEF;
  ip->total_length = rte_cpu_to_be_16(static_cast<std::uint16_t>(kIpLen + l4_len));
  ip->packet_id = rte_cpu_to_be_16(static_cast<std::uint16_t>(spec.id));
  ip->time_to_live = kTtl;
  ip->next_proto_id = spec.proto;
  ip->src_addr = rte_cpu_to_be_32(a.src_ip);
  ip->dst_addr = rte_cpu_to_be_32(a.dst_ip);
  std::uint8_t* l4 = out + kL4Offset;
  const auto id32 = static_cast<std::uint32_t>(spec.id);
  if (tcp) {
    auto* th = reinterpret_cast<rte_tcp_hdr*>(l4);
    th->src_port = rte_cpu_to_be_16(a.src_port);
    th->dst_port = rte_cpu_to_be_16(a.dst_port);
    th->sent_seq = rte_cpu_to_be_32(id32);
    th->recv_ack = rte_cpu_to_be_32((spec.tcp_flags & nat::kTcpAck) != 0 ? 1 : 0);
    th->data_off = 5 << 4;
    th->tcp_flags = spec.tcp_flags;
    th->rx_win = rte_cpu_to_be_16(65535);
    if (spec.payload) {
      std::memcpy(l4 + sizeof(rte_tcp_hdr), "GET /\n", kTcpPayloadLen);
    }
    th->cksum = rte_ipv4_udptcp_cksum(ip, th);
  } else {
    auto* uh = reinterpret_cast<rte_udp_hdr*>(l4);
    uh->src_port = rte_cpu_to_be_16(a.src_port);
    uh->dst_port = rte_cpu_to_be_16(a.dst_port);
    uh->dgram_len = rte_cpu_to_be_16(static_cast<std::uint16_t>(l4_len));
    PutBe32(l4 + sizeof(rte_udp_hdr), id32);
    uh->dgram_cksum = rte_ipv4_udptcp_cksum(ip, uh);
  }
  ip->hdr_checksum = rte_ipv4_cksum(ip);
}

// The header fields every forwarded frame must have; fills `check` and returns false on a
// mismatch.
bool CheckCommon(const std::uint8_t* frame, std::uint16_t len, const nat::MacAddress& dst_mac,
                 const nat::MacAddress& src_mac, bool verify_checksums, OutputCheck& check) {
  if (len < kFrameLen) {
    check.error = fmt::format("a {}-byte frame", len);
    return false;
  }
  if (std::memcmp(frame, dst_mac.data(), 6) != 0 ||
      std::memcmp(frame + 6, src_mac.data(), 6) != 0) {
    check.error = "wrong MAC addresses";
    return false;
  }
  const std::uint8_t* ip = frame + kEthLen;
  if (GetBe16(frame + 12) != 0x0800 || ip[0] != RTE_IPV4_VHL_DEF) {
    check.error = "not an option-less IPv4 frame";
    return false;
  }
  if (ip[8] != kTtl - 1) {
    check.error = fmt::format("TTL {} instead of {}", ip[8], kTtl - 1);
    return false;
  }
  const std::uint8_t proto = ip[9];
  const std::uint8_t* l4 = frame + kL4Offset;
  if (proto == nat::kIpProtoTcp) {
    check.id = GetBe32(l4 + 4);
    check.tcp_flags = l4[13];
  } else if (proto == nat::kIpProtoUdp) {
    check.id = GetBe32(l4 + sizeof(rte_udp_hdr));
  } else {
    check.error = fmt::format("IP protocol {}", proto);
    return false;
  }
  if (verify_checksums) {
    const std::string wrong = testing::CheckFrameChecksums(std::span(frame, len));
    if (!wrong.empty()) {
      check.error = wrong;
      return false;
    }
  }
  return true;
}

Addresses AddressesOf(const std::uint8_t* frame) {
  const std::uint8_t* ip = frame + kEthLen;
  const std::uint8_t* l4 = frame + kL4Offset;
  return {GetBe32(ip + 12), GetBe32(ip + 16), GetBe16(l4), GetBe16(l4 + 2)};
}

std::uint16_t BackendPortFor(std::uint8_t proto) {
  return proto == nat::kIpProtoTcp ? kBackendTcpPort : kBackendUdpPort;
}
std::uint16_t VipPortFor(std::uint8_t proto) {
  return proto == nat::kIpProtoTcp ? kTcpPort : kUdpPort;
}

}  // namespace

void WriteFromClient(std::uint8_t* out, const LinkMacs& macs, const FrameSpec& spec) {
  const nat::Endpoint4 client = ClientOf(spec.id);
  WriteFrame(out, macs.client_port, kGatewayMac, spec,
             {client.ip, VipOf(spec.id), client.port, VipPortFor(spec.proto)});
}

void WriteFromBackend(std::uint8_t* out, const LinkMacs& macs, const FrameSpec& spec,
                      const BackendSide& side) {
  WriteFrame(
      out, macs.backend_port, BackendMac(side.backend), spec,
      {kBackendBase + side.backend, side.local_ip, BackendPortFor(spec.proto), side.local_port});
}

OutputCheck CheckToBackend(const std::uint8_t* frame, std::uint16_t len, const LinkMacs& macs,
                           std::uint32_t local_addresses, bool verify_checksums) {
  OutputCheck check;
  const Addresses a = len >= kFrameLen ? AddressesOf(frame) : Addresses{};
  const std::uint32_t backend = a.dst_ip - kBackendBase;
  if (backend >= kBackends) {
    check.error = fmt::format("destination {:#x} is no backend", a.dst_ip);
    return check;
  }
  if (!CheckCommon(frame, len, BackendMac(backend), macs.backend_port, verify_checksums, check)) {
    return check;
  }
  const std::uint8_t proto = frame[kEthLen + 9];
  check.side = {a.src_ip, a.src_port, static_cast<std::uint8_t>(backend), 1};
  if (a.dst_port != BackendPortFor(proto)) {
    check.error = fmt::format("backend port {}", a.dst_port);
  } else if (a.src_ip - kLocalBase >= local_addresses || a.src_port < 1024) {
    check.error = fmt::format("source {:#x}:{} is no local address and port", a.src_ip, a.src_port);
  } else {
    check.ok = true;
  }
  return check;
}

OutputCheck CheckToClient(const std::uint8_t* frame, std::uint16_t len, const LinkMacs& macs,
                          bool verify_checksums) {
  OutputCheck check;
  if (!CheckCommon(frame, len, kGatewayMac, macs.client_port, verify_checksums, check)) {
    return check;
  }
  const Addresses a = AddressesOf(frame);
  const nat::Endpoint4 client = ClientOf(check.id);
  const std::uint8_t proto = frame[kEthLen + 9];
  if (a.src_ip != VipOf(check.id) || a.src_port != VipPortFor(proto) || a.dst_ip != client.ip ||
      a.dst_port != client.port) {
    check.error = fmt::format("connection {}: {:#x}:{} -> {:#x}:{}, not from its VIP to its client",
                              check.id, a.src_ip, a.src_port, a.dst_ip, a.dst_port);
    return check;
  }
  check.ok = true;
  return check;
}

bool IsArp(const std::uint8_t* frame, std::uint16_t len) {
  return len >= kEthLen && GetBe16(frame + 12) == 0x0806;
}

}  // namespace fulcrum::bench
