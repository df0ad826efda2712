#include "bench/traffic.h"

#include <cstring>
#include <span>

#include <fmt/format.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include "dataplane/snapshot.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::bench {
namespace {

constexpr std::size_t kEthLen = 14;
constexpr std::uint8_t kTtl = 64;
constexpr std::uint8_t kIpProtoIcmp6 = 58;

template <typename F>
struct Addresses {
  typename F::Ip src_ip;
  typename F::Ip dst_ip;
  std::uint16_t src_port;
  std::uint16_t dst_port;
};

void PutBe32(std::uint8_t* p, std::uint32_t v) {
  const std::uint32_t be = rte_cpu_to_be_32(v);
  std::memcpy(p, &be, 4);
}
void PutBe64(std::uint8_t* p, std::uint64_t v) {
  const std::uint64_t be = rte_cpu_to_be_64(v);
  std::memcpy(p, &be, 8);
}
void PutIp(std::uint8_t* p, std::uint32_t ip) { PutBe32(p, ip); }
void PutIp(std::uint8_t* p, const nat::Ip6& ip) {
  PutBe64(p, ip.hi);
  PutBe64(p + 8, ip.lo);
}

std::uint16_t GetBe16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}
std::uint32_t GetBe32(const std::uint8_t* p) {
  return std::uint32_t{GetBe16(p)} << 16 | GetBe16(p + 2);
}
std::uint64_t GetBe64(const std::uint8_t* p) {
  return std::uint64_t{GetBe32(p)} << 32 | GetBe32(p + 4);
}
template <typename F>
typename F::Ip GetIp(const std::uint8_t* p) {
  if constexpr (F::kIpv6) {
    return nat::Ip6{GetBe64(p), GetBe64(p + 8)};
  } else {
    return GetBe32(p);
  }
}

// The IP header of a frame whose L4 header and data take `l4_len` bytes, addresses left out.
void WriteIpHeader(Family4, std::uint8_t* out, const FrameSpec& spec, std::size_t l4_len) {
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(out);
  ip->version_ihl = RTE_IPV4_VHL_DEF;
  ip->total_length = rte_cpu_to_be_16(static_cast<std::uint16_t>(Family4::kIpLen + l4_len));
  ip->packet_id = rte_cpu_to_be_16(static_cast<std::uint16_t>(spec.id));
  ip->time_to_live = kTtl;
  ip->next_proto_id = spec.proto;
}
void WriteIpHeader(Family6, std::uint8_t* out, const FrameSpec& spec, std::size_t l4_len) {
  auto* ip = reinterpret_cast<rte_ipv6_hdr*>(out);
  ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
  ip->payload_len = rte_cpu_to_be_16(static_cast<std::uint16_t>(l4_len));
  ip->proto = spec.proto;
  ip->hop_limits = kTtl;
}

// The TCP or UDP checksum over the pseudo-header of `ip`.
std::uint16_t L4Checksum(Family4, const std::uint8_t* ip, const void* l4) {
  return rte_ipv4_udptcp_cksum(reinterpret_cast<const rte_ipv4_hdr*>(ip), l4);
}
std::uint16_t L4Checksum(Family6, const std::uint8_t* ip, const void* l4) {
  return rte_ipv6_udptcp_cksum(reinterpret_cast<const rte_ipv6_hdr*>(ip), l4);
}

// The IPv4 header checksum, last; IPv6 has none.
void FinishIpHeader(Family4, std::uint8_t* ip) {
  auto* header = reinterpret_cast<rte_ipv4_hdr*>(ip);
  header->hdr_checksum = rte_ipv4_cksum(header);
}
void FinishIpHeader(Family6, std::uint8_t*) {}

template <typename F>
void WriteFrame(std::uint8_t* out, const nat::MacAddress& dst_mac, const nat::MacAddress& src_mac,
                const FrameSpec& spec, const Addresses<F>& a, std::uint32_t seq,
                std::uint32_t ack) {
  constexpr std::size_t kL4Offset = kEthLen + F::kIpLen;
  std::memset(out, 0, F::kFrameLen);
  std::memcpy(out, dst_mac.data(), 6);
  std::memcpy(out + 6, src_mac.data(), 6);
  out[12] = static_cast<std::uint8_t>(F::kEtherType >> 8);
  out[13] = static_cast<std::uint8_t>(F::kEtherType);
  std::uint8_t* ip = out + kEthLen;
  const bool tcp = spec.proto == nat::kIpProtoTcp;
  const std::size_t l4_len =
      tcp ? sizeof(rte_tcp_hdr) + (spec.payload ? kTcpPayloadLen : 0) : F::kFrameLen - kL4Offset;
  WriteIpHeader(F{}, ip, spec, l4_len);
  PutIp(ip + F::kSrcAt, a.src_ip);
  PutIp(ip + F::kDstAt, a.dst_ip);
  std::uint8_t* l4 = out + kL4Offset;
  const auto id32 = static_cast<std::uint32_t>(spec.id);
  if (tcp) {
    auto* th = reinterpret_cast<rte_tcp_hdr*>(l4);
    th->src_port = rte_cpu_to_be_16(a.src_port);
    th->dst_port = rte_cpu_to_be_16(a.dst_port);
    th->sent_seq = rte_cpu_to_be_32(seq);
    th->recv_ack = rte_cpu_to_be_32((spec.tcp_flags & nat::kTcpAck) != 0 ? ack : 0);
    th->data_off = 5 << 4;
    th->tcp_flags = spec.tcp_flags;
    th->rx_win = rte_cpu_to_be_16(65535);
    if (spec.payload) {
      std::memcpy(l4 + sizeof(rte_tcp_hdr), "GET /\n", kTcpPayloadLen);
    }
    th->cksum = L4Checksum(F{}, ip, th);
  } else {
    auto* uh = reinterpret_cast<rte_udp_hdr*>(l4);
    uh->src_port = rte_cpu_to_be_16(a.src_port);
    uh->dst_port = rte_cpu_to_be_16(a.dst_port);
    uh->dgram_len = rte_cpu_to_be_16(static_cast<std::uint16_t>(l4_len));
    PutBe32(l4 + sizeof(rte_udp_hdr), id32);
    uh->dgram_cksum = L4Checksum(F{}, ip, uh);
  }
  FinishIpHeader(F{}, ip);
}

// The header fields every forwarded frame must have; fills `check` and returns false on a
// mismatch.
// The shortest frame a check reads: the headers and a TCP header without data. Frames the
// generator writes are F::kFrameLen long, but a NAT64 translation to IPv4 leaves a segment
// without data at 54 bytes (a NIC pads it to the Ethernet minimum on the wire).
template <typename F>
constexpr std::uint16_t MinCheckedLen() {
  return static_cast<std::uint16_t>(kEthLen + F::kIpLen + sizeof(rte_tcp_hdr));
}

template <typename F>
bool CheckCommon(const std::uint8_t* frame, std::uint16_t len, const nat::MacAddress& dst_mac,
                 const nat::MacAddress& src_mac, bool verify_checksums, OutputCheck& check) {
  if (len < MinCheckedLen<F>()) {
    check.error = fmt::format("a {}-byte frame", len);
    return false;
  }
  if (std::memcmp(frame, dst_mac.data(), 6) != 0 ||
      std::memcmp(frame + 6, src_mac.data(), 6) != 0) {
    check.error = "wrong MAC addresses";
    return false;
  }
  const std::uint8_t* ip = frame + kEthLen;
  if (GetBe16(frame + 12) != F::kEtherType || (ip[0] & F::kFirstByteMask) != F::kFirstByte) {
    check.error = fmt::format("not an option-less IP frame of ethertype {:#x}", F::kEtherType);
    return false;
  }
  if (ip[F::kTtlAt] != kTtl - 1) {
    check.error = fmt::format("TTL {} instead of {}", ip[F::kTtlAt], kTtl - 1);
    return false;
  }
  const std::uint8_t proto = ip[F::kProtoAt];
  const std::uint8_t* l4 = ip + F::kIpLen;
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

template <typename F>
Addresses<F> AddressesOf(const std::uint8_t* frame) {
  const std::uint8_t* ip = frame + kEthLen;
  const std::uint8_t* l4 = ip + F::kIpLen;
  return {GetIp<F>(ip + F::kSrcAt), GetIp<F>(ip + F::kDstAt), GetBe16(l4), GetBe16(l4 + 2)};
}

std::uint16_t BackendPortFor(std::uint8_t proto) {
  return proto == nat::kIpProtoTcp ? kBackendTcpPort : kBackendUdpPort;
}
std::uint16_t VipPortFor(std::uint8_t proto) {
  return proto == nat::kIpProtoTcp ? kTcpPort : kUdpPort;
}

}  // namespace

IpAddress AddressOf(std::uint32_t ip) { return IpAddress::V4(ip); }
IpAddress AddressOf(const nat::Ip6& ip) { return dataplane::IpAddressOf(ip); }

template <typename F>
void WriteFromClient(std::uint8_t* out, const LinkMacs& macs, const FrameSpec& spec) {
  const typename F::Endpoint client = ClientOf<F>(spec.id);
  const auto id = static_cast<std::uint32_t>(spec.id);
  const bool after_syn = spec.spliced != 0 && (spec.tcp_flags & nat::kTcpSyn) == 0;
  WriteFrame<F>(out, macs.client_port, kGatewayMac, spec,
                {client.ip, VipOf<F>(spec.id), client.port, VipPortFor(spec.proto)},
                after_syn ? id + 1 : id, 1);
}

template <typename F>
void WriteFromBackend(std::uint8_t* out, const LinkMacs& macs, const FrameSpec& spec,
                      const BackendSide& side) {
  const auto id = static_cast<std::uint32_t>(spec.id);
  std::uint32_t ack = 1;
  if (spec.spliced != 0) {  // the SYN-ACK acknowledges the SYN, later segments the header too
    ack = (spec.tcp_flags & nat::kTcpSyn) != 0 ? id + 1 : id + 1 + spec.spliced;
  }
  WriteFrame<F>(out, macs.backend_port, BackendMac(side.backend), spec,
                {Nth(F::kBackendBase, side.backend), Nth(F::kLocalBase, side.local),
                 BackendPortFor(spec.proto), side.local_port},
                id, ack);
}

template <typename F>
OutputCheck CheckToBackend(const std::uint8_t* frame, std::uint16_t len, const LinkMacs& macs,
                           std::uint32_t local_addresses, bool verify_checksums,
                           std::uint16_t spliced) {
  OutputCheck check;
  const Addresses<F> a = len >= MinCheckedLen<F>() ? AddressesOf<F>(frame) : Addresses<F>{};
  const std::uint64_t backend = IndexFrom(F::kBackendBase, a.dst_ip);
  if (backend >= kBackends) {
    check.error = fmt::format("destination {} is no backend", IpText(a.dst_ip));
    return check;
  }
  if (!CheckCommon<F>(frame, len, BackendMac(static_cast<std::uint32_t>(backend)),
                      macs.backend_port, verify_checksums, check)) {
    return check;
  }
  const std::uint8_t proto = frame[kEthLen + F::kProtoAt];
  if (spliced != 0 && proto == nat::kIpProtoTcp && (check.tcp_flags & nat::kTcpSyn) == 0) {
    const std::uint8_t* ip = frame + kEthLen;
    const std::uint8_t* tcp = ip + F::kIpLen;
    const std::size_t l4_len =
        F::kIpv6 ? GetBe16(ip + 4) : static_cast<std::size_t>(GetBe16(ip + 2) - F::kIpLen);
    const std::size_t payload = l4_len - static_cast<std::size_t>(tcp[12] >> 4) * 4;
    check.id = static_cast<std::uint32_t>(check.id - 1 - (payload >= spliced ? 0 : spliced));
  }
  const std::uint64_t local = IndexFrom(F::kLocalBase, a.src_ip);
  check.side = {a.src_port, static_cast<std::uint8_t>(local), static_cast<std::uint8_t>(backend),
                1};
  if (a.dst_port != BackendPortFor(proto)) {
    check.error = fmt::format("backend port {}", a.dst_port);
  } else if (local >= local_addresses || a.src_port < 1024) {
    check.error =
        fmt::format("source {} port {} is no local address and port", IpText(a.src_ip), a.src_port);
  } else {
    check.ok = true;
  }
  return check;
}

template <typename F>
OutputCheck CheckToClient(const std::uint8_t* frame, std::uint16_t len, const LinkMacs& macs,
                          bool verify_checksums) {
  OutputCheck check;
  if (!CheckCommon<F>(frame, len, kGatewayMac, macs.client_port, verify_checksums, check)) {
    return check;
  }
  const Addresses<F> a = AddressesOf<F>(frame);
  const typename F::Endpoint client = ClientOf<F>(check.id);
  const std::uint8_t proto = frame[kEthLen + F::kProtoAt];
  if (a.src_ip != VipOf<F>(check.id) || a.src_port != VipPortFor(proto) || a.dst_ip != client.ip ||
      a.dst_port != client.port) {
    check.error =
        fmt::format("connection {}: {} port {} -> {} port {}, not from its VIP to its client",
                    check.id, IpText(a.src_ip), a.src_port, IpText(a.dst_ip), a.dst_port);
    return check;
  }
  check.ok = true;
  return check;
}

bool IsNeighborDiscovery(const std::uint8_t* frame, std::uint16_t len) {
  if (len >= kEthLen && GetBe16(frame + 12) == 0x0806) {
    return true;
  }
  // ICMPv6 router solicitation .. redirect (133..137), RFC 4861.
  constexpr std::size_t kIcmp6At = kEthLen + Family6::kIpLen;
  return len > kIcmp6At && GetBe16(frame + 12) == Family6::kEtherType &&
         frame[kEthLen + Family6::kProtoAt] == kIpProtoIcmp6 && frame[kIcmp6At] >= 133 &&
         frame[kIcmp6At] <= 137;
}

template void WriteFromClient<Family4>(std::uint8_t*, const LinkMacs&, const FrameSpec&);
template void WriteFromClient<Family6>(std::uint8_t*, const LinkMacs&, const FrameSpec&);
template void WriteFromBackend<Family4>(std::uint8_t*, const LinkMacs&, const FrameSpec&,
                                        const BackendSide&);
template void WriteFromBackend<Family6>(std::uint8_t*, const LinkMacs&, const FrameSpec&,
                                        const BackendSide&);
template OutputCheck CheckToBackend<Family4>(const std::uint8_t*, std::uint16_t, const LinkMacs&,
                                             std::uint32_t, bool, std::uint16_t);
template OutputCheck CheckToBackend<Family6>(const std::uint8_t*, std::uint16_t, const LinkMacs&,
                                             std::uint32_t, bool, std::uint16_t);
template OutputCheck CheckToClient<Family4>(const std::uint8_t*, std::uint16_t, const LinkMacs&,
                                            bool);
template OutputCheck CheckToClient<Family6>(const std::uint8_t*, std::uint16_t, const LinkMacs&,
                                            bool);

}  // namespace fulcrum::bench
