// What a probe sends and how its answer is judged, as pure functions over bytes.
//
// Theory of operation: the socket code (probe.h) only moves bytes; every decision about them
// lives here so that tests can drive it without a network:
//   - http: the request line and headers lb-healthd sends, and the status line it reads back
//     (RFC 9112 §4: "HTTP/" DIGIT "." DIGIT SP 3DIGIT). A check passes when the status class
//     (2xx, 3xx, ...) is one of the listener's codes. Only the first 13 bytes of the answer
//     matter; headers and body are never parsed.
//   - udp: the payload is the listener's `send` hex decoded; a reply passes when it starts with
//     the decoded `expect` bytes (a prefix match, so a server may append data such as a
//     timestamp; an empty `expect` accepts any reply).
//   - errno values: a failed connect, send or receive becomes a short reason ("refused",
//     "timeout", "reset", ...) that lbd shows to operators. Errors that say something about
//     this host rather than the backend (no file descriptors, no buffers, no local port) are
//     "local": such a probe is inconclusive and is not held against the backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/net_addr.h"
#include "common/status.h"

namespace fulcrum::hc {

// Decodes an even-length string of hex digits (either case) into bytes.
Result<std::string> DecodeHex(std::string_view hex);

// True when `reply` starts with `expected` (an empty `expected` matches every reply).
bool UdpReplyMatches(std::string_view reply, std::string_view expected);

// A bit set of status classes: bit c is set when "cxx" is accepted (c in 1..5).
using StatusClassSet = std::uint8_t;

// Parses ["2xx", "3xx"]; refuses an empty list and anything but 1xx..5xx.
Result<StatusClassSet> ParseStatusClasses(const std::vector<std::string>& codes);

// True when `status` (100..599) is in a class of `classes`.
bool StatusAccepted(StatusClassSet classes, int status);

// The value of the Host header: the configured host, or else the backend's address
// (bracketed for IPv6, RFC 3986 §3.2.2).
std::string HttpHost(std::string_view configured_host, const IpAddress& backend);

// `GET <path> HTTP/1.1` with Host, Connection: close and User-Agent: fulcrum-healthd.
std::string BuildHttpRequest(std::string_view path, std::string_view host);

// How far the start of an HTTP answer has been understood.
struct StatusLine {
  enum class Kind {
    kIncomplete,  // too few bytes yet to judge
    kMalformed,   // not an HTTP/1.x status line
    kComplete,    // `status` holds the code
  };
  Kind kind = Kind::kIncomplete;
  int status = 0;
};

// The number of leading bytes ParseStatusLine needs to decide: "HTTP/1.1 200" plus the byte
// after the code.
inline constexpr std::size_t kStatusLinePrefixBytes = 13;

// Judges the first bytes of an answer. `eof` says that no more bytes will come, which lets a
// bare "HTTP/1.1 200" at the very end count as complete.
StatusLine ParseStatusLine(std::string_view received, bool eof);

// The reason for a failed socket call: "refused", "reset", "network unreachable", ...
std::string ReasonForErrno(int error);

// True for errors about this host (EMFILE, ENOBUFS, EADDRNOTAVAIL, ...), not the backend.
bool IsLocalError(int error);

}  // namespace fulcrum::hc
