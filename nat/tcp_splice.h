// Splicing a TCP connection: sequence numbers shifted between the two sides, and bytes the LB
// inserts into a segment (a Proxy Protocol header in the payload, a TOA option in the header).
//
// Theory of operation
// -------------------
// When the LB adds bytes to the client's stream (a Proxy Protocol header before the client's
// first byte), the backend numbers the client's bytes `to_backend` higher than the client
// does; when the backend's initial sequence number differs from the one the client was given
// (a SYN proxy answers the client's SYN itself, before the backend is asked), the client
// numbers the backend's bytes `to_client` higher than the backend does. A SeqShift holds both,
// and the client's first sequence number (its ISN + 1), so that every segment of the
// connection can be moved between the two numberings:
//   - from the client: its sequence number, unless before client_start (the SYN), grows by
//     to_backend; its acknowledgement and the edges of its SACK blocks (RFC 2018) shrink by
//     to_client;
//   - from the backend: its sequence number grows by to_client; its acknowledgement and SACK
//     edges shrink by to_backend, and one that lies inside the inserted bytes (the backend has
//     acknowledged part of the header) becomes client_start: the client has sent nothing there.
// Comparisons are modulo 2^32 (RFC 793 section 3.3): SeqBefore. The TCP checksum is patched
// with the words that changed (RFC 1624), so shifting costs the same for every segment size.
//
// InsertIntoSegment grows a segment by moving its headers back into the buffer's headroom, so
// the payload stays where it is; the IP length and both checksums are recomputed (a few
// inserting segments per connection: the simple, exact way). A segment that would exceed the
// MTU with the insertion gives up the end of its payload (the client sends those bytes again:
// the backend never acknowledges them), or, for an option, is left as it is.
//
// Nothing here allocates or keeps state: the connection's SeqShift lives with its entry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "nat/bytes.h"
#include "nat/checksum.h"
#include "nat/flow_key.h"
#include "nat/packet.h"
#include "nat/packet6.h"

namespace fulcrum::nat {

inline constexpr std::size_t kTcpMaxHeaderLen = 60;
inline constexpr std::uint8_t kTcpOptEnd = 0;
inline constexpr std::uint8_t kTcpOptNop = 1;
inline constexpr std::uint8_t kTcpOptSack = 5;

// a < b in sequence space (RFC 793 section 3.3, modulo 2^32).
constexpr bool SeqBefore(std::uint32_t a, std::uint32_t b) {
  return static_cast<std::int32_t>(a - b) < 0;
}

struct SeqShift {
  std::uint32_t client_start = 0;  // the client's ISN + 1: the number of its first byte
  std::uint32_t to_backend = 0;    // bytes the LB inserted before the client's first byte
  std::uint32_t to_client = 0;     // added to the backend's sequence numbers

  // The client's sequence number `seq` as the backend numbers it.
  constexpr std::uint32_t ClientSeqToBackend(std::uint32_t seq) const {
    return SeqBefore(seq, client_start) ? seq : seq + to_backend;
  }
  // The backend's acknowledgement (or SACK edge) `ack` of client bytes, as the client numbers
  // them: an acknowledgement of inserted bytes only acknowledges the client's start.
  constexpr std::uint32_t BackendAckToClient(std::uint32_t ack) const {
    if (SeqBefore(ack, client_start)) {
      return ack;
    }
    return ack - client_start < to_backend ? client_start : ack - to_backend;
  }
  constexpr std::uint32_t BackendSeqToClient(std::uint32_t seq) const { return seq + to_client; }
  constexpr std::uint32_t ClientAckToBackend(std::uint32_t ack) const { return ack - to_client; }

  friend bool operator==(const SeqShift&, const SeqShift&) = default;
};

inline constexpr std::size_t kTcpSeqOffset = 4;
inline constexpr std::size_t kTcpAckOffset = 8;

// Moves the sequence number, acknowledgement and SACK blocks of the TCP segment whose header
// (`header_len` bytes, options included) is at `tcp`, sent by `from`, into the other side's
// numbering, and patches the TCP checksum. The options must lie within header_len (Parse
// checked the data offset); a malformed option list is left unread from there on.
void ShiftSegment(std::uint8_t* tcp, std::size_t header_len, const SeqShift& shift, FlowDir from);

// Moves the edges of the SACK blocks (RFC 2018) in the options at [options, end) with `map`
// (a backend's into the client's numbering, or the reverse), adding the changes to `delta`.
// Stops at a malformed option.
void ShiftSackEdges(std::uint8_t* options, const std::uint8_t* end, const SeqShift& shift,
                    FlowDir from, ChecksumDelta& delta);

// The same without patching the checksum: returns the change for the caller to add to its own
// checksum update (the NAT rewrite's), so that a segment's checksum is patched once. Touches
// only the fields whose shift is not 0 (for Proxy Protocol: a client's sequence number, a
// backend's acknowledgement and SACK edges). Inline: it runs for every segment of a spliced
// connection.
inline ChecksumDelta ShiftSegmentDelta(std::uint8_t* tcp, std::size_t header_len,
                                       const SeqShift& shift, FlowDir from) {
  ChecksumDelta delta;
  const bool from_client = from == FlowDir::kFromClient;
  if ((from_client ? shift.to_backend : shift.to_client) != 0) {
    const std::uint32_t seq = LoadBe32(tcp + kTcpSeqOffset);
    const std::uint32_t moved =
        from_client ? shift.ClientSeqToBackend(seq) : shift.BackendSeqToClient(seq);
    delta.Add32(seq, moved);
    StoreBe32(tcp + kTcpSeqOffset, moved);
  }
  if ((tcp[13] & kTcpAck) == 0 || (from_client ? shift.to_client : shift.to_backend) == 0) {
    return delta;
  }
  const std::uint32_t ack = LoadBe32(tcp + kTcpAckOffset);
  const std::uint32_t moved =
      from_client ? shift.ClientAckToBackend(ack) : shift.BackendAckToClient(ack);
  delta.Add32(ack, moved);
  StoreBe32(tcp + kTcpAckOffset, moved);
  if (header_len > kTcpMinHeaderLen) [[unlikely]] {
    ShiftSackEdges(tcp + kTcpMinHeaderLen, tcp + header_len, shift, from, delta);
  }
  return delta;
}

// Where a TCP segment lies in its frame (offsets from the frame's start).
struct TcpSegment {
  bool ipv6 = false;
  std::uint16_t l3_offset = 0;
  std::uint16_t l3_len = 0;  // the IP packet: IPv4 total length, IPv6 40 + payload length
  std::uint16_t l4_offset = 0;
  std::uint16_t payload_offset = 0;  // l4_offset + the TCP header's length
  std::uint16_t payload_len = 0;
};
constexpr TcpSegment TcpSegmentOf(const ParsedPacket& p) {
  return {false, p.l3_offset, p.ip_total_len, p.l4_offset, p.payload_offset, p.payload_len};
}
constexpr TcpSegment TcpSegmentOf(const ParsedPacket6& p) {
  return {true,        p.l3_offset,      static_cast<std::uint16_t>(p.payload_end - p.l3_offset),
          p.l4_offset, p.payload_offset, p.payload_len};
}

enum class InsertWhere : std::uint8_t {
  kOption,   // after the TCP options, which grow (the data offset with them): 4-byte multiples
  kPayload,  // before the payload's first byte
};

struct Spliced {
  bool ok = false;
  std::uint16_t grown = 0;    // bytes inserted: the frame now starts this much earlier
  std::uint16_t trimmed = 0;  // payload bytes dropped from the end to stay within the MTU
  std::uint16_t length = 0;   // the frame's new length, to the IP packet's end
};

// Inserts `bytes` into the segment `s` of the frame that starts `head` bytes into `buffer`
// (the bytes before are headroom), moving the headers back by bytes.size(). The IP packet
// stays within `max_l3_len` (the egress MTU): kPayload trims the payload's end (and clears
// FIN, which then has not been sent), kOption gives up. Not ok (nothing changed) when the
// headroom is short, the TCP header would exceed 60 bytes, or nothing fits.
Spliced InsertIntoSegment(std::span<std::uint8_t> buffer, std::size_t head, const TcpSegment& s,
                          InsertWhere where, std::span<const std::uint8_t> bytes,
                          std::size_t max_l3_len);

// The TCP checksum of the segment `s` of `frame`, computed over its pseudo-header and bytes.
std::uint16_t TcpChecksumOf(std::span<const std::uint8_t> frame, const TcpSegment& s);

}  // namespace fulcrum::nat
