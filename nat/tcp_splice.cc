#include "nat/tcp_splice.h"

#include <cstring>

#include "nat/bytes.h"
#include "nat/checksum.h"

namespace fulcrum::nat {
namespace {

// Replaces the 32-bit word at `p` with fn(word), adding the change to `delta`.
template <typename Fn>
void MapWord(std::uint8_t* p, ChecksumDelta& delta, Fn&& fn) {
  const std::uint32_t old_value = LoadBe32(p);
  const std::uint32_t new_value = fn(old_value);
  delta.Add32(old_value, new_value);
  StoreBe32(p, new_value);
}

// Calls fn(pointer to an edge) for every edge of every SACK block of the options at
// [options, end).
template <typename Fn>
void ForEachSackEdge(std::uint8_t* options, const std::uint8_t* end, Fn&& fn) {
  std::uint8_t* p = options;
  while (p < end) {
    const std::uint8_t kind = p[0];
    if (kind == kTcpOptEnd) {
      return;
    }
    if (kind == kTcpOptNop) {
      ++p;
      continue;
    }
    if (end - p < 2 || p[1] < 2 || p[1] > end - p) {
      return;  // malformed: read no further
    }
    const std::uint8_t length = p[1];
    if (kind == kTcpOptSack && (length - 2) % 8 == 0) {
      for (std::uint8_t* edge = p + 2; edge < p + length; edge += 4) {
        fn(edge);
      }
    }
    p += length;
  }
}

}  // namespace

void ShiftSackEdges(std::uint8_t* options, const std::uint8_t* end, const SeqShift& shift,
                    FlowDir from, ChecksumDelta& delta) {
  const auto map = [&](std::uint32_t edge) {
    return from == FlowDir::kFromClient ? shift.ClientAckToBackend(edge)
                                        : shift.BackendAckToClient(edge);
  };
  ForEachSackEdge(options, end, [&](std::uint8_t* edge) { MapWord(edge, delta, map); });
}

void ShiftSegment(std::uint8_t* tcp, std::size_t header_len, const SeqShift& shift, FlowDir from) {
  const ChecksumDelta delta = ShiftSegmentDelta(tcp, header_len, shift, from);
  std::uint8_t* checksum = tcp + kTcpChecksumOffset;
  StoreBe16(checksum, delta.Apply(LoadBe16(checksum)));
}

std::uint16_t TcpChecksumOf(std::span<const std::uint8_t> frame, const TcpSegment& s) {
  const std::uint8_t* ip = frame.data() + s.l3_offset;
  const std::size_t l4_len = s.l3_offset + s.l3_len - s.l4_offset;
  std::uint64_t pseudo = 0;
  if (s.ipv6) {
    pseudo = Ipv6PseudoHeaderSum(ip, l4_len, kIpProtoTcp);
  } else {
    pseudo = Ipv4PseudoHeaderSum(LoadBe32(ip + kIpv4SrcOffset), LoadBe32(ip + kIpv4DstOffset),
                                 kIpProtoTcp, static_cast<std::uint16_t>(l4_len));
  }
  return InternetChecksum(frame.subspan(s.l4_offset, l4_len), pseudo);
}

Spliced InsertIntoSegment(std::span<std::uint8_t> buffer, std::size_t head, const TcpSegment& s,
                          InsertWhere where, std::span<const std::uint8_t> bytes,
                          std::size_t max_l3_len) {
  const std::size_t n = bytes.size();
  const std::size_t header_len = s.payload_offset - s.l4_offset;
  if (n == 0 || head < n || head + s.l3_offset + s.l3_len > buffer.size()) {
    return {};
  }
  std::size_t trim = 0;
  if (s.l3_len + n > max_l3_len) {
    trim = s.l3_len + n - max_l3_len;
    if (where == InsertWhere::kOption || trim >= s.payload_len) {
      return {};
    }
  }
  if (where == InsertWhere::kOption && (n % 4 != 0 || header_len + n > kTcpMaxHeaderLen)) {
    return {};
  }

  // Headers back by n, the new bytes in the gap: the payload does not move.
  std::uint8_t* const frame = buffer.data() + head - n;
  std::memmove(frame, frame + n, s.payload_offset);
  std::memcpy(frame + s.payload_offset, bytes.data(), n);

  TcpSegment out = s;
  out.l3_len = static_cast<std::uint16_t>(s.l3_len + n - trim);
  out.payload_offset = static_cast<std::uint16_t>(
      where == InsertWhere::kOption ? s.payload_offset + n : s.payload_offset);
  out.payload_len = static_cast<std::uint16_t>(
      where == InsertWhere::kOption ? s.payload_len - trim : s.payload_len + n - trim);
  std::uint8_t* const ip = frame + s.l3_offset;
  std::uint8_t* const tcp = frame + s.l4_offset;
  if (where == InsertWhere::kOption) {
    tcp[12] = static_cast<std::uint8_t>(((header_len + n) / 4) << 4 | (tcp[12] & 0x0f));
  }
  if (trim != 0) {
    tcp[13] = static_cast<std::uint8_t>(tcp[13] & ~kTcpFin);
  }
  if (s.ipv6) {
    StoreBe16(ip + 4, static_cast<std::uint16_t>(out.l3_len - kIpv6HeaderLen));
  } else {
    const std::size_t ip_header_len = s.l4_offset - s.l3_offset;
    StoreBe16(ip + kIpv4TotalLenOffset, out.l3_len);
    StoreBe16(ip + kIpv4ChecksumOffset, 0);
    StoreBe16(ip + kIpv4ChecksumOffset, InternetChecksum({ip, ip_header_len}));
  }
  const std::span<std::uint8_t> spliced(frame, s.l3_offset + out.l3_len);
  StoreBe16(tcp + kTcpChecksumOffset, 0);
  StoreBe16(tcp + kTcpChecksumOffset, TcpChecksumOf(spliced, out));
  return {.ok = true,
          .grown = static_cast<std::uint16_t>(n),
          .trimmed = static_cast<std::uint16_t>(trim),
          .length = static_cast<std::uint16_t>(spliced.size())};
}

}  // namespace fulcrum::nat
