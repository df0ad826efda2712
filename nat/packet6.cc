#include "nat/packet6.h"

#include "nat/checksum.h"
#include "nat/packet.h"

namespace fulcrum::nat {
namespace {

// Where an extension header chain ends: the upper-layer protocol and its offset, or a drop.
struct ChainEnd {
  std::uint8_t proto = 0;
  std::size_t offset = 0;
  std::uint8_t headers = 0;
  DropReason drop = DropReason::kNone;
};

ChainEnd Dropped(DropReason reason) { return ChainEnd{.drop = reason}; }

// Walks the TLV options of a Hop-by-Hop or Destination Options header, [begin, end) of `data`.
// False when an option must not be skipped or overruns the header.
bool OptionsSkippable(const std::uint8_t* data, std::size_t begin, std::size_t end) {
  std::size_t at = begin;
  while (at < end) {
    const std::uint8_t type = data[at];
    if (type == 0) {  // Pad1
      ++at;
      continue;
    }
    if (at + 2 > end || at + 2 + data[at + 1] > end) {
      return false;
    }
    // The two high bits: 00 skip an unrecognised option; anything else discards the packet.
    // Only padding (PadN, type 1) and skippable options are known to be harmless here.
    if (type != 1 && (type >> 6) != 0) {
      return false;
    }
    at += 2 + std::size_t{data[at + 1]};
  }
  return true;
}

// Walks the extension headers of an IPv6 packet from `next` at `offset`, within [0, end) of
// `data`. `quoted`: the packet an ICMPv6 error carries, which may be cut short (truncated) and
// whose first fragment still has its ports; its options and routing are not ours to judge.
ChainEnd WalkChain(const std::uint8_t* data, std::uint8_t next, std::size_t offset, std::size_t end,
                   bool quoted) {
  ChainEnd chain;
  for (;;) {
    switch (next) {
      case kIpProtoTcp:
      case kIpProtoUdp:
      case kIpProtoIcmpv6:
        chain.proto = next;
        chain.offset = offset;
        return chain;
      case kIpProtoHopByHop:
      case kIpProtoRouting:
      case kIpProtoFragment:
      case kIpProtoDestOptions:
        break;
      default:  // ESP, AH, No Next Header, mobility, HIP, shim6, experiments, unknown
        return Dropped(DropReason::kUnsupportedProtocol);
    }
    if (chain.headers == kMaxExtensionHeaders) {
      return Dropped(DropReason::kBadHeader);
    }
    if (next == kIpProtoHopByHop && chain.headers != 0) {
      return Dropped(DropReason::kBadHeader);  // only directly after the fixed header (4.1)
    }
    if (offset + 8 > end) {
      return Dropped(quoted ? DropReason::kTruncated : DropReason::kBadHeader);
    }
    const std::uint8_t* header = data + offset;
    const std::size_t length = next == kIpProtoFragment ? 8 : (std::size_t{header[1]} + 1) * 8;
    if (offset + length > end) {
      return Dropped(quoted ? DropReason::kTruncated : DropReason::kBadHeader);
    }
    switch (next) {
      case kIpProtoHopByHop:
      case kIpProtoDestOptions:
        if (!quoted && !OptionsSkippable(data, offset + 2, offset + length)) {
          return Dropped(DropReason::kBadHeader);
        }
        break;
      case kIpProtoRouting:
        if (!quoted && header[3] != 0) {  // segments left: meant to travel on past us
          return Dropped(DropReason::kBadHeader);
        }
        break;
      case kIpProtoFragment:
        // A quoted first fragment still carries its ports; anything else cannot be matched.
        if (!quoted || (LoadBe16(header + 2) & 0xfff8) != 0) {
          return Dropped(DropReason::kFragment);
        }
        break;
      default:
        break;
    }
    ++chain.headers;
    next = header[0];
    offset += length;
  }
}

// The ICMPv6 checksum (RFC 4443 section 2.3) over the message [l4, end), with the pseudo-header.
bool Icmpv6ChecksumOk(std::span<const std::uint8_t> frame, std::size_t l3, std::size_t l4,
                      std::size_t end) {
  const std::uint64_t acc = Ipv6PseudoHeaderSum(frame.data() + l3, end - l4, kIpProtoIcmpv6);
  return ChecksumFold(ChecksumAdd(frame.subspan(l4, end - l4), acc)) == 0xffff;
}

void SetDrop(ParsedPacket6& p, DropReason reason) {
  p.kind = PacketKind::kDrop;
  p.drop = reason;
}

// The packet an ICMPv6 error quotes, in [offset, end) of the frame.
void ParseQuote(std::span<const std::uint8_t> frame, std::size_t offset, std::size_t end,
                ParsedPacket6& p) {
  if (offset + kIpv6HeaderLen > end) {
    return SetDrop(p, DropReason::kTruncated);
  }
  const std::uint8_t* ip = frame.data() + offset;
  if ((ip[0] >> 4) != 6) {
    return SetDrop(p, DropReason::kBadHeader);
  }
  const ChainEnd chain = WalkChain(frame.data(), ip[6], offset + kIpv6HeaderLen, end, true);
  if (chain.drop != DropReason::kNone) {
    return SetDrop(p, chain.drop);
  }
  if (chain.proto != kIpProtoTcp && chain.proto != kIpProtoUdp) {
    return SetDrop(p, DropReason::kUnsupportedProtocol);
  }
  if (chain.offset + 8 > end) {
    return SetDrop(p, DropReason::kTruncated);
  }
  Icmp6Quote& q = p.quote;
  q.l3_offset = static_cast<std::uint16_t>(offset);
  q.l4_offset = static_cast<std::uint16_t>(chain.offset);
  q.l4_len = static_cast<std::uint16_t>(end - chain.offset);
  q.proto = chain.proto;
  q.src_ip = LoadIp6(ip + 8);
  q.dst_ip = LoadIp6(ip + 24);
  q.src_port = LoadBe16(frame.data() + chain.offset);
  q.dst_port = LoadBe16(frame.data() + chain.offset + 2);
  p.kind = PacketKind::kIcmpError;
}

void ParseIcmpv6(std::span<const std::uint8_t> frame, std::size_t end, ParsedPacket6& p) {
  const std::size_t l4 = p.l4_offset;
  if (l4 + 8 > end) {
    return SetDrop(p, DropReason::kTruncated);
  }
  p.icmp_type = frame[l4];
  p.icmp_code = frame[l4 + 1];
  p.payload_offset = static_cast<std::uint16_t>(l4 + 8);
  p.payload_len = static_cast<std::uint16_t>(end - l4 - 8);
  switch (p.icmp_type) {
    case kIcmpv6EchoRequest:
    case kIcmpv6EchoReply:
      p.kind = PacketKind::kIcmpEcho;
      return;
    case kIcmpv6NeighborSolicitation:
    case kIcmpv6NeighborAdvertisement:
      if (p.hop_limit != 255) {
        return SetDrop(p, DropReason::kBadHeader);
      }
      p.kind = PacketKind::kNeighbor;
      return;
    case kIcmpv6DestUnreachable:
    case kIcmpv6PacketTooBig:
    case kIcmpv6TimeExceeded:
    case kIcmpv6ParameterProblem:
      break;
    default:
      return SetDrop(p, DropReason::kUnsupportedIcmp);
  }
  if (!Icmpv6ChecksumOk(frame, p.l3_offset, l4, end)) {
    return SetDrop(p, DropReason::kBadChecksum);
  }
  ParseQuote(frame, p.payload_offset, end, p);
}

}  // namespace

ParsedPacket6 ParseIpv6(std::span<const std::uint8_t> frame, std::size_t l3) {
  ParsedPacket6 p;
  p.l3_offset = static_cast<std::uint16_t>(l3);
  if (frame.size() < l3 + kIpv6HeaderLen) {
    SetDrop(p, DropReason::kTruncated);
    return p;
  }
  const std::uint8_t* ip = frame.data() + l3;
  const std::size_t payload_len = LoadBe16(ip + 4);
  if ((ip[0] >> 4) != 6 || payload_len == 0) {  // 0: a jumbogram (RFC 2675), not forwarded
    SetDrop(p, DropReason::kBadHeader);
    return p;
  }
  const std::size_t end = l3 + kIpv6HeaderLen + payload_len;
  if (end > frame.size()) {
    SetDrop(p, DropReason::kTruncated);
    return p;
  }
  p.payload_end = static_cast<std::uint16_t>(end);
  p.hop_limit = ip[7];
  p.src_ip = LoadIp6(ip + 8);
  p.dst_ip = LoadIp6(ip + 24);
  // Most packets carry no extension header: their upper layer is the fixed header's next.
  const std::uint8_t next = ip[6];
  const ChainEnd chain = next == kIpProtoTcp || next == kIpProtoUdp || next == kIpProtoIcmpv6
                             ? ChainEnd{.proto = next, .offset = l3 + kIpv6HeaderLen}
                             : WalkChain(frame.data(), next, l3 + kIpv6HeaderLen, end, false);
  p.ext_headers = chain.headers;
  if (chain.drop != DropReason::kNone) {
    SetDrop(p, chain.drop);
    return p;
  }
  p.proto = chain.proto;
  p.l4_offset = static_cast<std::uint16_t>(chain.offset);
  const std::uint8_t* l4 = frame.data() + chain.offset;
  const std::size_t l4_len = end - chain.offset;
  switch (chain.proto) {
    case kIpProtoTcp: {
      if (l4_len < kTcpMinHeaderLen) {
        SetDrop(p, DropReason::kTruncated);
        return p;
      }
      const std::size_t data_offset = static_cast<std::size_t>(l4[12] >> 4) * 4;
      if (data_offset < kTcpMinHeaderLen || data_offset > l4_len) {
        SetDrop(p, DropReason::kBadHeader);
        return p;
      }
      p.src_port = LoadBe16(l4);
      p.dst_port = LoadBe16(l4 + 2);
      p.tcp_flags = l4[13];
      p.payload_offset = static_cast<std::uint16_t>(chain.offset + data_offset);
      p.payload_len = static_cast<std::uint16_t>(l4_len - data_offset);
      p.kind = PacketKind::kTcp;
      break;
    }
    case kIpProtoUdp: {
      if (l4_len < kUdpHeaderLen) {
        SetDrop(p, DropReason::kTruncated);
        return p;
      }
      const std::size_t udp_len = LoadBe16(l4 + 4);
      if (udp_len < kUdpHeaderLen || udp_len > l4_len) {
        SetDrop(p, DropReason::kBadHeader);
        return p;
      }
      if (LoadBe16(l4 + kUdpChecksumOffset) == 0) {  // mandatory over IPv6
        SetDrop(p, DropReason::kBadChecksum);
        return p;
      }
      p.src_port = LoadBe16(l4);
      p.dst_port = LoadBe16(l4 + 2);
      p.payload_offset = static_cast<std::uint16_t>(chain.offset + kUdpHeaderLen);
      p.payload_len = static_cast<std::uint16_t>(udp_len - kUdpHeaderLen);
      p.kind = PacketKind::kUdp;
      break;
    }
    default:
      ParseIcmpv6(frame, end, p);
      break;
  }
  const bool forwarded =
      p.kind == PacketKind::kTcp || p.kind == PacketKind::kUdp || p.kind == PacketKind::kIcmpError;
  if (forwarded && p.hop_limit <= 1) {
    SetDrop(p, DropReason::kTtlExceeded);
  }
  return p;
}

}  // namespace fulcrum::nat
