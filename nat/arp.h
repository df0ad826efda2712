// ARP (RFC 826) and ICMP echo (RFC 792) answered in place, on plain byte spans.
//
// The data plane owns its addresses (VIPs, port addresses, fnat local addresses); the kernel
// never sees them. Workers therefore answer ARP requests and pings for them directly, turning
// the received frame into the reply without copying. The control thread builds the requests
// that resolve next hops, and the gratuitous ARP (RFC 5227 "announcement": a request whose
// sender and target address are both ours) sent when an address appears.
//
// Preconditions: the frames were accepted by nat::Parse (nat/packet.h), which checked the
// lengths and the ARP hardware/protocol types, so these functions do not check them again,
// except ParseArp, which is safe on any input.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

#include "nat/bytes.h"
#include "nat/checksum.h"
#include "nat/packet.h"

namespace fulcrum::nat {

using MacAddress = std::array<std::uint8_t, 6>;

inline constexpr MacAddress kBroadcastMac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
// An untagged Ethernet ARP frame without padding (NICs pad to the 60-byte minimum).
inline constexpr std::size_t kArpFrameBytes = kEthHeaderLen + kArpIpv4Len;
// The TTL of packets the load balancer originates (RFC 1700's default).
inline constexpr std::uint8_t kDefaultTtl = 64;

// The fields of an Ethernet/IPv4 ARP packet (addresses in host order).
struct ArpMessage {
  std::uint16_t op = 0;
  MacAddress sender_mac{};
  std::uint32_t sender_ip = 0;
  MacAddress target_mac{};
  std::uint32_t target_ip = 0;
};

// Parses the ARP packet at `l3` (14, or 18 after a VLAN tag). Returns nullopt for anything
// that is not Ethernet/IPv4 ARP or is truncated.
inline std::optional<ArpMessage> ParseArp(std::span<const std::uint8_t> frame,
                                          std::size_t l3 = kEthHeaderLen) {
  if (frame.size() < l3 + kArpIpv4Len) {
    return std::nullopt;
  }
  const std::uint8_t* arp = frame.data() + l3;
  // htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4.
  if (LoadBe16(arp) != 1 || LoadBe16(arp + 2) != kEthTypeIpv4 || arp[4] != 6 || arp[5] != 4) {
    return std::nullopt;
  }
  ArpMessage message;
  message.op = LoadBe16(arp + 6);
  std::memcpy(message.sender_mac.data(), arp + 8, 6);
  message.sender_ip = LoadBe32(arp + 14);
  std::memcpy(message.target_mac.data(), arp + 18, 6);
  message.target_ip = LoadBe32(arp + 24);
  return message;
}

// Turns `request` (parsed from `frame`, ARP at `l3`) into the reply "target_ip is at my_mac",
// in place (same length, VLAN tag kept).
inline void MakeArpReply(std::span<std::uint8_t> frame, const ArpMessage& request,
                         const MacAddress& my_mac, std::size_t l3 = kEthHeaderLen) {
  std::uint8_t* eth = frame.data();
  std::memcpy(eth, request.sender_mac.data(), 6);
  std::memcpy(eth + 6, my_mac.data(), 6);
  std::uint8_t* arp = eth + l3;
  StoreBe16(arp + 6, kArpReply);
  std::memcpy(arp + 8, my_mac.data(), 6);
  StoreBe32(arp + 14, request.target_ip);
  std::memcpy(arp + 18, request.sender_mac.data(), 6);
  StoreBe32(arp + 24, request.sender_ip);
}

// Writes a broadcast "who has target_ip, tell my_ip" into `out` (at least kArpFrameBytes);
// with target_ip == my_ip it is a gratuitous ARP announcement. Returns the frame length.
inline std::size_t BuildArpRequest(std::span<std::uint8_t> out, const MacAddress& my_mac,
                                   std::uint32_t my_ip, std::uint32_t target_ip) {
  std::uint8_t* eth = out.data();
  std::memcpy(eth, kBroadcastMac.data(), 6);
  std::memcpy(eth + 6, my_mac.data(), 6);
  StoreBe16(eth + 12, kEthTypeArp);
  std::uint8_t* arp = eth + kEthHeaderLen;
  StoreBe16(arp, 1);
  StoreBe16(arp + 2, kEthTypeIpv4);
  arp[4] = 6;
  arp[5] = 4;
  StoreBe16(arp + 6, kArpRequest);
  std::memcpy(arp + 8, my_mac.data(), 6);
  StoreBe32(arp + 14, my_ip);
  std::memset(arp + 18, 0, 6);
  StoreBe32(arp + 24, target_ip);
  return kArpFrameBytes;
}

// Turns an ICMP echo request (IPv4 header at `l3`, ICMP at `l4`) into the echo reply, in place:
// swaps the MACs and the addresses, sets the TTL to kDefaultTtl and updates both checksums
// incrementally (RFC 1624). The identifier, sequence number and data are echoed unchanged.
inline void MakeIcmpEchoReply(std::span<std::uint8_t> frame, std::size_t l3, std::size_t l4) {
  std::uint8_t* eth = frame.data();
  std::uint8_t mac[6];
  std::memcpy(mac, eth, 6);
  std::memcpy(eth, eth + 6, 6);
  std::memcpy(eth + 6, mac, 6);

  std::uint8_t* ip = eth + l3;
  std::uint8_t address[4];
  std::memcpy(address, ip + kIpv4SrcOffset, 4);
  std::memcpy(ip + kIpv4SrcOffset, ip + kIpv4DstOffset, 4);
  // Swapping the addresses leaves the header checksum unchanged (the sum commutes).
  std::memcpy(ip + kIpv4DstOffset, address, 4);
  const std::uint16_t old_ttl_proto = LoadBe16(ip + kIpv4TtlOffset);
  ip[kIpv4TtlOffset] = kDefaultTtl;
  const std::uint16_t new_ttl_proto = LoadBe16(ip + kIpv4TtlOffset);
  StoreBe16(ip + kIpv4ChecksumOffset,
            ChecksumUpdate16(LoadBe16(ip + kIpv4ChecksumOffset), old_ttl_proto, new_ttl_proto));

  std::uint8_t* icmp = eth + l4;
  const std::uint16_t old_type_code = LoadBe16(icmp);
  icmp[0] = kIcmpEchoReply;
  icmp[1] = 0;
  StoreBe16(icmp + kIcmpChecksumOffset,
            ChecksumUpdate16(LoadBe16(icmp + kIcmpChecksumOffset), old_type_code, LoadBe16(icmp)));
}

}  // namespace fulcrum::nat
