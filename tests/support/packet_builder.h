// Test support: builds Ethernet frames (IPv4 TCP/UDP/ICMP, ARP) byte by byte, and checks
// their checksums by full recomputation.
//
// Deliberately independent of nat/: its checksum is the naive RFC 1071 loop and it walks the
// headers itself, so a test comparing nat's results against it compares two implementations.
// Test-only code: it allocates freely.
#pragma once

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nat/flow_key.h"

namespace fulcrum::testing {

using Bytes = std::vector<std::uint8_t>;
using Mac = std::array<std::uint8_t, 6>;
using Ip6Bytes = std::array<std::uint8_t, 16>;

// A random global unicast IPv6 address (2000::/8: never multicast), for property tests.
inline Ip6Bytes RandomIp6(std::mt19937_64& random) {
  Ip6Bytes a;
  for (auto& byte : a) {
    byte = static_cast<std::uint8_t>(random());
  }
  a[0] = 0x20;
  return a;
}
inline std::uint16_t RandomPort(std::mt19937_64& random) {
  return static_cast<std::uint16_t>(random());
}

// "2001:db8::1" as 16 network-order bytes; all zero when malformed (test input is literal).
inline Ip6Bytes Ip6(const char* text) {
  Ip6Bytes out{};
  if (inet_pton(AF_INET6, text, out.data()) != 1) {
    out.fill(0);
  }
  return out;
}

// The address as the data plane holds it (nat::Ip6: two host-order halves).
inline nat::Ip6 Wide6(const Ip6Bytes& b) {
  nat::Ip6 ip;
  for (std::size_t i = 0; i < 8; ++i) {
    ip.hi = ip.hi << 8 | b[i];
    ip.lo = ip.lo << 8 | b[8 + i];
  }
  return ip;
}

// "198.18.0.2" in host order; 0 when malformed.
constexpr std::uint32_t Ip4(std::string_view text) {
  std::uint32_t value = 0;
  std::uint32_t octet = 0;
  int octets = 0;
  int digits = 0;
  for (char c : text) {
    if (c == '.') {
      if (digits == 0 || octets == 3) {
        return 0;
      }
      value = value << 8 | octet;
      octet = 0;
      digits = 0;
      ++octets;
    } else if (c >= '0' && c <= '9' && digits < 3) {
      octet = octet * 10 + static_cast<std::uint32_t>(c - '0');
      ++digits;
      if (octet > 255) {
        return 0;
      }
    } else {
      return 0;
    }
  }
  return octets == 3 && digits > 0 ? value << 8 | octet : 0;
}

// RFC 1071 as written: sum of big-endian 16-bit words, odd byte padded, folded, inverted.
inline std::uint16_t RefChecksum(std::span<const std::uint8_t> data, std::uint32_t initial = 0) {
  std::uint64_t sum = initial;
  for (std::size_t i = 0; i < data.size(); i += 2) {
    const std::uint32_t hi = data[i];
    const std::uint32_t lo = i + 1 < data.size() ? data[i + 1] : 0;
    sum += hi << 8 | lo;
  }
  while (sum >> 16) {
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<std::uint16_t>(~sum);
}

inline std::uint16_t Get16(std::span<const std::uint8_t> b, std::size_t at) {
  return static_cast<std::uint16_t>(b[at] << 8 | b[at + 1]);
}
inline std::uint32_t Get32(std::span<const std::uint8_t> b, std::size_t at) {
  return std::uint32_t{Get16(b, at)} << 16 | Get16(b, at + 2);
}
inline void Put16(Bytes& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v >> 8);
  b[at + 1] = static_cast<std::uint8_t>(v);
}
inline void Put32(Bytes& b, std::size_t at, std::uint32_t v) {
  Put16(b, at, static_cast<std::uint16_t>(v >> 16));
  Put16(b, at + 2, static_cast<std::uint16_t>(v));
}

inline std::uint32_t PseudoHeaderSum(std::uint32_t src, std::uint32_t dst, std::uint8_t proto,
                                     std::size_t l4_len) {
  return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto +
         static_cast<std::uint32_t>(l4_len);
}

class PacketBuilder {
 public:
  PacketBuilder& Macs(Mac dst, Mac src) {
    dst_mac_ = dst;
    src_mac_ = src;
    return *this;
  }
  PacketBuilder& Vlan(std::uint16_t tci) {
    vlan_ = tci;
    return *this;
  }
  PacketBuilder& Ethertype(std::uint16_t ethertype) {
    ethertype_ = ethertype;
    return *this;
  }
  PacketBuilder& Ipv4(std::uint32_t src, std::uint32_t dst) {
    src_ip_ = src;
    dst_ip_ = dst;
    return *this;
  }
  // An IPv6 packet instead of IPv4 (ethertype 0x86dd); Ttl sets its hop limit.
  PacketBuilder& Ipv6(const Ip6Bytes& src, const Ip6Bytes& dst) {
    ipv6_ = Ipv6Fields{src, dst};
    ethertype_ = 0x86dd;
    return *this;
  }
  // An IPv6 extension header after the fixed header (and the ones added before): `type` is
  // its protocol number, `rest` its bytes after the Next Header byte (the length byte first),
  // written as given so that tests can lie in them.
  PacketBuilder& Extension(std::uint8_t type, Bytes rest) {
    extensions_.push_back({type, std::move(rest)});
    return *this;
  }
  // The IPv6 payload length field, instead of the true one.
  PacketBuilder& Ipv6PayloadLength(std::uint16_t length) {
    ipv6_payload_length_ = length;
    return *this;
  }
  // An ICMPv6 message (RFC 4443): type, code, the 4 bytes after the checksum, then Payload.
  PacketBuilder& Icmpv6(std::uint8_t type, std::uint8_t code, std::uint32_t rest = 0) {
    proto_ = 58;
    icmp_type_ = type;
    icmp_code_ = code;
    icmp_rest_ = rest;
    return *this;
  }
  PacketBuilder& Ttl(std::uint8_t ttl) {
    ttl_ = ttl;
    return *this;
  }
  PacketBuilder& IpId(std::uint16_t id) {
    ip_id_ = id;
    return *this;
  }
  PacketBuilder& Protocol(std::uint8_t proto) {
    proto_ = proto;
    return *this;
  }
  // Padded with zeros (end of option list) to a multiple of 4 bytes.
  PacketBuilder& IpOptions(Bytes options) {
    ip_options_ = std::move(options);
    return *this;
  }
  PacketBuilder& Fragment(bool more_fragments, std::uint16_t offset_8byte_units) {
    frag_ =
        static_cast<std::uint16_t>((more_fragments ? 0x2000 : 0) | (offset_8byte_units & 0x1fff));
    return *this;
  }
  PacketBuilder& DontFragment() {
    frag_ |= 0x4000;
    return *this;
  }
  PacketBuilder& Tcp(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags) {
    proto_ = 6;
    sport_ = sport;
    dport_ = dport;
    tcp_flags_ = flags;
    return *this;
  }
  PacketBuilder& TcpSeq(std::uint32_t seq, std::uint32_t ack) {
    seq_ = seq;
    ack_ = ack;
    return *this;
  }
  // Padded with zeros to a multiple of 4 bytes.
  PacketBuilder& TcpWindow(std::uint16_t window) {
    tcp_window_ = window;
    return *this;
  }
  PacketBuilder& TcpOptions(Bytes options) {
    tcp_options_ = std::move(options);
    return *this;
  }
  PacketBuilder& Udp(std::uint16_t sport, std::uint16_t dport) {
    proto_ = 17;
    sport_ = sport;
    dport_ = dport;
    return *this;
  }
  // Sends the UDP checksum as 0 ("no checksum", RFC 768).
  PacketBuilder& UdpNoChecksum() {
    udp_no_checksum_ = true;
    return *this;
  }
  PacketBuilder& IcmpEcho(std::uint8_t type, std::uint16_t id, std::uint16_t seq) {
    proto_ = 1;
    icmp_type_ = type;
    icmp_code_ = 0;
    icmp_rest_ = std::uint32_t{id} << 16 | seq;
    return *this;
  }
  // `quoted` is the IP packet (header and at least 8 L4 bytes) the error is about; `mtu` goes
  // in the next-hop MTU field (RFC 1191) of fragmentation-needed errors.
  PacketBuilder& IcmpError(std::uint8_t type, std::uint8_t code, Bytes quoted,
                           std::uint16_t mtu = 0) {
    proto_ = 1;
    icmp_type_ = type;
    icmp_code_ = code;
    icmp_rest_ = mtu;
    payload_ = std::move(quoted);
    return *this;
  }
  PacketBuilder& Arp(std::uint16_t op, Mac sender_mac, std::uint32_t sender_ip,
                     std::uint32_t target_ip) {
    arp_ = ArpFields{op, sender_mac, sender_ip, target_ip};
    ethertype_ = 0x0806;
    return *this;
  }
  PacketBuilder& Payload(Bytes payload) {
    payload_ = std::move(payload);
    return *this;
  }
  // `len` bytes counting up from `first`.
  PacketBuilder& Payload(std::size_t len, std::uint8_t first = 0) {
    payload_.resize(len);
    for (std::size_t i = 0; i < len; ++i) {
      payload_[i] = static_cast<std::uint8_t>(first + i);
    }
    return *this;
  }
  // Pads the frame with zeros to at least `len` bytes (Ethernet minimum frame padding).
  PacketBuilder& PadTo(std::size_t len) {
    pad_to_ = len;
    return *this;
  }

  // The IPv4 packet alone, checksums correct.
  Bytes BuildIp() const {
    Bytes l4 = BuildL4();
    Bytes options = ip_options_;
    options.resize((options.size() + 3) / 4 * 4, 0);
    const std::size_t header_len = 20 + options.size();
    Bytes ip(header_len, 0);
    ip[0] = static_cast<std::uint8_t>(0x40 | header_len / 4);
    Put16(ip, 2, static_cast<std::uint16_t>(header_len + l4.size()));
    Put16(ip, 4, ip_id_);
    Put16(ip, 6, frag_);
    ip[8] = ttl_;
    ip[9] = proto_;
    Put32(ip, 12, src_ip_);
    Put32(ip, 16, dst_ip_);
    std::copy(options.begin(), options.end(), ip.begin() + 20);
    Put16(ip, 10, RefChecksum(ip));
    ip.insert(ip.end(), l4.begin(), l4.end());
    return ip;
  }

  // The IPv6 packet alone, with its extension headers, checksums correct.
  Bytes BuildIp6() const {
    Bytes chain;
    for (std::size_t i = 0; i < extensions_.size(); ++i) {
      chain.push_back(i + 1 < extensions_.size() ? extensions_[i + 1].type : proto_);
      chain.insert(chain.end(), extensions_[i].rest.begin(), extensions_[i].rest.end());
    }
    const Bytes l4 = BuildL4();
    Bytes ip(40, 0);
    ip[0] = 0x60;
    Put16(ip, 4,
          ipv6_payload_length_.value_or(static_cast<std::uint16_t>(chain.size() + l4.size())));
    ip[6] = extensions_.empty() ? proto_ : extensions_[0].type;
    ip[7] = ttl_;
    std::copy(ipv6_->src.begin(), ipv6_->src.end(), ip.begin() + 8);
    std::copy(ipv6_->dst.begin(), ipv6_->dst.end(), ip.begin() + 24);
    // Appended a byte at a time: GCC 12 misreads a range insert here as an overflow
    // (-Warray-bounds).
    for (const Bytes* part : {static_cast<const Bytes*>(&chain), &l4}) {
      for (std::uint8_t byte : *part) {
        ip.push_back(byte);
      }
    }
    return ip;
  }

  // The Ethernet frame.
  Bytes Build() const {
    Bytes frame(dst_mac_.begin(), dst_mac_.end());
    frame.insert(frame.end(), src_mac_.begin(), src_mac_.end());
    if (vlan_) {
      frame.push_back(0x81);
      frame.push_back(0x00);
      frame.push_back(static_cast<std::uint8_t>(*vlan_ >> 8));
      frame.push_back(static_cast<std::uint8_t>(*vlan_));
    }
    frame.push_back(static_cast<std::uint8_t>(ethertype_ >> 8));
    frame.push_back(static_cast<std::uint8_t>(ethertype_));
    Bytes l3 = arp_ ? BuildArp() : ipv6_ ? BuildIp6() : BuildIp();
    frame.insert(frame.end(), l3.begin(), l3.end());
    if (frame.size() < pad_to_) {
      frame.resize(pad_to_, 0);
    }
    return frame;
  }

 private:
  struct Ipv6Fields {
    Ip6Bytes src;
    Ip6Bytes dst;
  };
  struct ExtensionHeader {
    std::uint8_t type;
    Bytes rest;
  };

  // The pseudo-header sum of the TCP, UDP or ICMPv6 checksum, IPv4 or IPv6 (RFC 8200 8.1).
  std::uint32_t PseudoSum(std::uint8_t proto, std::size_t l4_len) const {
    if (!ipv6_) {
      return PseudoHeaderSum(src_ip_, dst_ip_, proto, l4_len);
    }
    std::uint32_t sum = proto + static_cast<std::uint32_t>(l4_len);
    for (std::size_t i = 0; i < 16; i += 2) {
      sum += static_cast<std::uint32_t>(ipv6_->src[i] << 8 | ipv6_->src[i + 1]);
      sum += static_cast<std::uint32_t>(ipv6_->dst[i] << 8 | ipv6_->dst[i + 1]);
    }
    return sum;
  }

  struct ArpFields {
    std::uint16_t op;
    Mac sender_mac;
    std::uint32_t sender_ip;
    std::uint32_t target_ip;
  };

  Bytes BuildL4() const {
    Bytes l4;
    if (proto_ == 6) {
      Bytes options = tcp_options_;
      options.resize((options.size() + 3) / 4 * 4, 0);
      l4.assign(20 + options.size(), 0);
      Put16(l4, 0, sport_);
      Put16(l4, 2, dport_);
      Put32(l4, 4, seq_);
      Put32(l4, 8, ack_);
      l4[12] = static_cast<std::uint8_t>((l4.size() / 4) << 4);
      l4[13] = tcp_flags_;
      Put16(l4, 14, tcp_window_);
      std::copy(options.begin(), options.end(), l4.begin() + 20);
      l4.insert(l4.end(), payload_.begin(), payload_.end());
      Put16(l4, 16, RefChecksum(l4, PseudoSum(6, l4.size())));
    } else if (proto_ == 17) {
      l4.assign(8, 0);
      Put16(l4, 0, sport_);
      Put16(l4, 2, dport_);
      Put16(l4, 4, static_cast<std::uint16_t>(8 + payload_.size()));
      l4.insert(l4.end(), payload_.begin(), payload_.end());
      if (!udp_no_checksum_) {
        const std::uint16_t sum = RefChecksum(l4, PseudoSum(17, l4.size()));
        Put16(l4, 6, sum == 0 ? 0xffff : sum);
      }
    } else if (proto_ == 1) {
      l4.assign(8, 0);
      l4[0] = icmp_type_;
      l4[1] = icmp_code_;
      Put32(l4, 4, icmp_rest_);
      l4.insert(l4.end(), payload_.begin(), payload_.end());
      Put16(l4, 2, RefChecksum(l4));
    } else if (proto_ == 58) {
      l4.assign(8, 0);
      l4[0] = icmp_type_;
      l4[1] = icmp_code_;
      Put32(l4, 4, icmp_rest_);
      l4.insert(l4.end(), payload_.begin(), payload_.end());
      Put16(l4, 2, RefChecksum(l4, PseudoSum(58, l4.size())));
    } else {
      l4 = payload_;
    }
    return l4;
  }

  Bytes BuildArp() const {
    Bytes arp(28, 0);
    Put16(arp, 0, 1);
    Put16(arp, 2, 0x0800);
    arp[4] = 6;
    arp[5] = 4;
    Put16(arp, 6, arp_->op);
    std::copy(arp_->sender_mac.begin(), arp_->sender_mac.end(), arp.begin() + 8);
    Put32(arp, 14, arp_->sender_ip);
    Put32(arp, 24, arp_->target_ip);
    return arp;
  }

  Mac dst_mac_ = {0x02, 0, 0, 0, 0, 0x01};
  Mac src_mac_ = {0x02, 0, 0, 0, 0, 0x02};
  std::optional<std::uint16_t> vlan_;
  std::uint16_t ethertype_ = 0x0800;
  std::uint32_t src_ip_ = Ip4("198.18.0.2");
  std::uint32_t dst_ip_ = Ip4("198.18.100.1");
  std::uint8_t ttl_ = 64;
  std::uint16_t ip_id_ = 1;
  std::uint16_t frag_ = 0;
  std::uint8_t proto_ = 6;
  Bytes ip_options_;
  std::uint16_t sport_ = 40000;
  std::uint16_t dport_ = 80;
  std::uint8_t tcp_flags_ = 0x10;
  std::uint32_t seq_ = 1;
  std::uint32_t ack_ = 0;
  std::uint16_t tcp_window_ = 65535;
  Bytes tcp_options_;
  bool udp_no_checksum_ = false;
  std::uint8_t icmp_type_ = 8;
  std::uint8_t icmp_code_ = 0;
  std::uint32_t icmp_rest_ = 0;
  std::optional<ArpFields> arp_;
  std::optional<Ipv6Fields> ipv6_;
  std::vector<ExtensionHeader> extensions_;
  std::optional<std::uint16_t> ipv6_payload_length_;
  Bytes payload_;
  std::size_t pad_to_ = 0;
};

// The IPv4 header offset of an untagged or single-tagged IPv4 frame.
inline std::size_t L3OffsetOf(std::span<const std::uint8_t> frame) {
  return Get16(frame, 12) == 0x8100 ? 18 : 14;
}

// Recomputes every checksum of an IPv4 packet from scratch and compares it, bit for bit, with
// the one in the packet: IPv4 header, TCP/UDP (pseudo-header included; a UDP 0 is accepted),
// ICMP, and for an ICMP error the quoted packet (all of it when it is quoted whole, else its
// IPv4 header). Returns "" when all match, otherwise which one is wrong.
inline std::string CheckIpv4Checksums(std::span<const std::uint8_t> packet) {
  const std::size_t header_len = (packet[0] & 0x0f) * 4u;
  const std::size_t total_len = Get16(packet, 2);
  if (packet.size() < total_len || total_len < header_len) {
    return "IPv4 lengths";
  }
  Bytes ip(packet.begin(), packet.begin() + static_cast<std::ptrdiff_t>(total_len));
  const std::uint16_t ip_sum = Get16(ip, 10);
  Put16(ip, 10, 0);
  if (RefChecksum({ip.data(), header_len}) != ip_sum) {
    return "IPv4 header checksum";
  }
  const std::uint8_t proto = ip[9];
  const std::uint32_t src = Get32(ip, 12);
  const std::uint32_t dst = Get32(ip, 16);
  Bytes l4(ip.begin() + static_cast<std::ptrdiff_t>(header_len), ip.end());
  if (proto == 6) {
    const std::uint16_t sum = Get16(l4, 16);
    Put16(l4, 16, 0);
    return RefChecksum(l4, PseudoHeaderSum(src, dst, 6, l4.size())) == sum ? "" : "TCP checksum";
  }
  if (proto == 17) {
    const std::uint16_t sum = Get16(l4, 6);
    if (sum == 0) {
      return "";
    }
    Put16(l4, 6, 0);
    std::uint16_t expected = RefChecksum(l4, PseudoHeaderSum(src, dst, 17, l4.size()));
    expected = expected == 0 ? 0xffff : expected;
    return expected == sum ? "" : "UDP checksum";
  }
  if (proto == 1) {
    const std::uint16_t sum = Get16(l4, 2);
    Put16(l4, 2, 0);
    if (RefChecksum(l4) != sum) {
      return "ICMP checksum";
    }
    const std::uint8_t type = l4[0];
    if ((type == 3 || type == 11 || type == 12) && l4.size() >= 28) {
      std::span<const std::uint8_t> quoted(l4.data() + 8, l4.size() - 8);
      if (Get16(quoted, 2) == quoted.size()) {
        const std::string inner = CheckIpv4Checksums(quoted);
        return inner.empty() ? "" : "quoted " + inner;
      }
      Bytes quoted_header(quoted.begin(), quoted.begin() + (quoted[0] & 0x0f) * 4);
      const std::uint16_t quoted_sum = Get16(quoted_header, 10);
      Put16(quoted_header, 10, 0);
      if (RefChecksum(quoted_header) != quoted_sum) {
        return "quoted IPv4 header checksum";
      }
    }
  }
  return "";
}

// The same for an IPv6 packet whose TCP, UDP or ICMPv6 header follows the fixed header (no
// extension headers): its checksum over the IPv6 pseudo-header (RFC 8200 section 8.1), a UDP
// checksum of 0 refused as IPv6 requires.
inline std::string CheckIpv6Checksums(std::span<const std::uint8_t> packet) {
  if (packet.size() < 40 || packet.size() < 40u + Get16(packet, 4)) {
    return "IPv6 lengths";
  }
  const std::uint8_t next = packet[6];
  Bytes l4(packet.begin() + 40, packet.begin() + 40 + Get16(packet, 4));
  std::uint32_t pseudo = next + static_cast<std::uint32_t>(l4.size());
  for (std::size_t i = 8; i < 40; i += 2) {
    pseudo += Get16(packet, i);
  }
  const std::size_t at = next == 6 ? 16 : next == 17 ? 6 : next == 58 ? 2 : 0;
  if (at == 0) {
    return "";
  }
  if (l4.size() < at + 2) {
    return "L4 length";
  }
  const std::uint16_t sum = Get16(l4, at);
  Put16(l4, at, 0);
  std::uint16_t expected = RefChecksum(l4, pseudo);
  if (next == 17 && expected == 0) {
    expected = 0xffff;
  }
  if (expected == sum) {
    return "";
  }
  return next == 6 ? "TCP checksum" : next == 17 ? "UDP checksum" : "ICMPv6 checksum";
}

// CheckIpv4Checksums or CheckIpv6Checksums on the IP packet of an Ethernet frame.
inline std::string CheckFrameChecksums(std::span<const std::uint8_t> frame) {
  const std::size_t l3 = L3OffsetOf(frame);
  if (frame.size() <= l3) {
    return "no IP header";
  }
  const std::span<const std::uint8_t> packet = frame.subspan(l3);
  return (packet[0] >> 4) == 6 ? CheckIpv6Checksums(packet) : CheckIpv4Checksums(packet);
}

}  // namespace fulcrum::testing
