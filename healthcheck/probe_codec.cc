#include "healthcheck/probe_codec.h"

#include <algorithm>
#include <cerrno>
#include <system_error>

#include <fmt/format.h>

namespace fulcrum::hc {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// The status line pattern, one predicate per byte of "HTTP/1.1 200 ".
bool StatusLineByteOk(std::size_t i, char c) {
  static constexpr std::string_view kHttp = "HTTP/";
  if (i < kHttp.size()) {
    return c == kHttp[i];
  }
  switch (i) {
    case 5:
    case 7:
    case 9:
    case 10:
    case 11:
      return IsDigit(c);
    case 6:
      return c == '.';
    case 8:
      return c == ' ';
    default:  // 12: the code ends with the reason's SP or the line's end
      return c == ' ' || c == '\r' || c == '\n';
  }
}

}  // namespace

Result<std::string> DecodeHex(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return Error(ErrorCode::kInvalidParameter, "hex string of {} digits: the length must be even",
                 hex.size());
  }
  std::string bytes;
  bytes.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int high = HexValue(hex[i]);
    const int low = HexValue(hex[i + 1]);
    if (high < 0 || low < 0) {
      return Error(ErrorCode::kInvalidParameter, "hex string: '{}' at offset {} is not a hex digit",
                   high < 0 ? hex[i] : hex[i + 1], high < 0 ? i : i + 1);
    }
    bytes.push_back(static_cast<char>(high * 16 + low));
  }
  return bytes;
}

bool UdpReplyMatches(std::string_view reply, std::string_view expected) {
  return reply.substr(0, expected.size()) == expected;
}

Result<StatusClassSet> ParseStatusClasses(const std::vector<std::string>& codes) {
  if (codes.empty()) {
    return Error(ErrorCode::kInvalidParameter, "health_check.codes is empty");
  }
  StatusClassSet classes = 0;
  for (const std::string& code : codes) {
    if (code.size() != 3 || code[0] < '1' || code[0] > '5' || code.substr(1) != "xx") {
      return Error(ErrorCode::kInvalidParameter,
                   "health_check.codes holds '{}': each code must be one of 1xx..5xx",
                   code.substr(0, 40));
    }
    classes |= static_cast<StatusClassSet>(1u << (code[0] - '0'));
  }
  return classes;
}

bool StatusAccepted(StatusClassSet classes, int status) {
  if (status < 100 || status > 599) {
    return false;
  }
  return (classes & (1u << (status / 100))) != 0;
}

std::string HttpHost(std::string_view configured_host, const IpAddress& backend) {
  if (!configured_host.empty()) {
    return std::string(configured_host);
  }
  return backend.is_v6() ? fmt::format("[{}]", backend.ToString()) : backend.ToString();
}

std::string BuildHttpRequest(std::string_view path, std::string_view host) {
  return fmt::format(
      "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: fulcrum-healthd\r\n\r\n",
      path, host);
}

StatusLine ParseStatusLine(std::string_view received, bool eof) {
  const std::size_t n = std::min(received.size(), kStatusLinePrefixBytes);
  for (std::size_t i = 0; i < n; ++i) {
    if (!StatusLineByteOk(i, received[i])) {
      return {StatusLine::Kind::kMalformed, 0};
    }
  }
  const bool code_read = n >= kStatusLinePrefixBytes - 1;
  if (!code_read || (n < kStatusLinePrefixBytes && !eof)) {
    return {eof ? StatusLine::Kind::kMalformed : StatusLine::Kind::kIncomplete, 0};
  }
  const int status = (received[9] - '0') * 100 + (received[10] - '0') * 10 + (received[11] - '0');
  if (status < 100 || status > 599) {
    return {StatusLine::Kind::kMalformed, 0};
  }
  return {StatusLine::Kind::kComplete, status};
}

std::string ReasonForErrno(int error) {
  switch (error) {
    case ECONNREFUSED:
      return "refused";
    case ECONNRESET:
    case EPIPE:
      return "reset";
    case ETIMEDOUT:
      return "timeout";
    case ENETUNREACH:
    case ENETDOWN:
      return "network unreachable";
    case EHOSTUNREACH:
    case EHOSTDOWN:
      return "host unreachable";
    case ECONNABORTED:
      return "aborted";
    case EACCES:
    case EPERM:
      return "not permitted";
    default:
      return fmt::format("error: {}", std::error_code(error, std::generic_category()).message());
  }
}

bool IsLocalError(int error) {
  switch (error) {
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case EADDRNOTAVAIL:
    case EADDRINUSE:
    case EAFNOSUPPORT:
    case EINVAL:
      return true;
    default:
      return false;
  }
}

}  // namespace fulcrum::hc
