#include "nat/client_addr.h"

#include <cstring>
#include <type_traits>

#include "nat/bytes.h"

namespace fulcrum::nat {
namespace {

constexpr std::array<std::uint8_t, 12> kProxyV2Signature = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                                            0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
constexpr std::uint8_t kProxyV2Proxy = 0x21;     // version 2, command PROXY
constexpr std::uint8_t kProxyV2TcpOver4 = 0x11;  // AF_INET, STREAM
constexpr std::uint8_t kProxyV2TcpOver6 = 0x21;  // AF_INET6, STREAM

// Appends the decimal form of `value`; returns the new end.
char* PutDecimal(char* out, unsigned value) {
  char digits[10];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  while (n > 0) {
    *out++ = digits[--n];
  }
  return out;
}

char* PutText(char* out, const char* text) {
  const std::size_t n = std::strlen(text);
  std::memcpy(out, text, n);
  return out + n;
}

char* PutIp4(char* out, std::uint32_t ip) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out = PutDecimal(out, (ip >> shift) & 0xffu);
    if (shift != 0) {
      *out++ = '.';
    }
  }
  return out;
}

char* PutHex16(char* out, unsigned value) {
  static constexpr char kHex[] = "0123456789abcdef";
  bool started = false;
  for (int shift = 12; shift >= 0; shift -= 4) {
    const unsigned digit = (value >> shift) & 0xfu;
    if (digit != 0 || started || shift == 0) {
      *out++ = kHex[digit];
      started = true;
    }
  }
  return out;
}

char* PutIp6(char* out, const Ip6& ip) { return out + FormatIp6(ip, out); }

// The v1 line: "PROXY TCP4 client vip cport vport\r\n".
template <typename Endpoint>
std::size_t EncodeV1(const char* family, Endpoint client, Endpoint vip, ClientAddrBytes& bytes) {
  char* const start = reinterpret_cast<char*>(bytes.data());
  char* out = PutText(start, "PROXY ");
  out = PutText(out, family);
  *out++ = ' ';
  if constexpr (std::is_same_v<Endpoint, Endpoint4>) {
    out = PutIp4(out, client.ip);
    *out++ = ' ';
    out = PutIp4(out, vip.ip);
  } else {
    out = PutIp6(out, client.ip);
    *out++ = ' ';
    out = PutIp6(out, vip.ip);
  }
  *out++ = ' ';
  out = PutDecimal(out, client.port);
  *out++ = ' ';
  out = PutDecimal(out, vip.port);
  out = PutText(out, "\r\n");
  return static_cast<std::size_t>(out - start);
}

// The v2 header's fixed part: signature, version and command, family, address length.
std::uint8_t* PutV2Head(std::uint8_t* out, std::uint8_t family, std::uint16_t address_len) {
  std::memcpy(out, kProxyV2Signature.data(), kProxyV2Signature.size());
  out += kProxyV2Signature.size();
  *out++ = kProxyV2Proxy;
  *out++ = family;
  StoreBe16(out, address_len);
  return out + 2;
}

void PutIp6Bytes(std::uint8_t* out, const Ip6& ip) {
  StoreBe32(out, static_cast<std::uint32_t>(ip.hi >> 32));
  StoreBe32(out + 4, static_cast<std::uint32_t>(ip.hi));
  StoreBe32(out + 8, static_cast<std::uint32_t>(ip.lo >> 32));
  StoreBe32(out + 12, static_cast<std::uint32_t>(ip.lo));
}

}  // namespace

std::size_t FormatIp6(const Ip6& ip, char* out) {
  std::array<unsigned, 8> words{};
  for (int i = 0; i < 4; ++i) {
    words[i] = static_cast<unsigned>(ip.hi >> (48 - 16 * i)) & 0xffffu;
    words[4 + i] = static_cast<unsigned>(ip.lo >> (48 - 16 * i)) & 0xffffu;
  }
  // The longest run of zero words (the first of equal ones), if at least two long.
  int best = -1;
  int best_len = 0;
  for (int i = 0; i < 8;) {
    if (words[i] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < 8 && words[j] == 0) {
      ++j;
    }
    if (j - i > best_len) {
      best = i;
      best_len = j - i;
    }
    i = j;
  }
  if (best_len < 2) {
    best = -1;
  }
  char* const start = out;
  for (int i = 0; i < 8; ++i) {
    if (i == best) {
      *out++ = ':';
      if (i == 0) {
        *out++ = ':';
      }
      i += best_len - 1;
      continue;
    }
    // An IPv4-mapped (::ffff:a.b.c.d) or IPv4-compatible (::a.b.c.d) address ends in dotted
    // IPv4, as inet_ntop writes them.
    if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xffff))) {
      out = PutIp4(out, static_cast<std::uint32_t>(ip.lo));
      break;
    }
    out = PutHex16(out, words[i]);
    if (i != 7) {
      *out++ = ':';
    }
  }
  return static_cast<std::size_t>(out - start);
}

std::size_t EncodeClientAddr(ClientAddrMode mode, Endpoint4 client, Endpoint4 vip,
                             ClientAddrBytes& out) {
  switch (mode) {
    case ClientAddrMode::kOff:
      return 0;
    case ClientAddrMode::kToa:
      out[0] = kTcpOptToa;
      out[1] = kToaLen;
      StoreBe16(&out[2], client.port);
      StoreBe32(&out[4], client.ip);
      return kToaLen;
    case ClientAddrMode::kProxyV1:
      return EncodeV1("TCP4", client, vip, out);
    case ClientAddrMode::kProxyV2: {
      std::uint8_t* p = PutV2Head(out.data(), kProxyV2TcpOver4, 12);
      StoreBe32(p, client.ip);
      StoreBe32(p + 4, vip.ip);
      StoreBe16(p + 8, client.port);
      StoreBe16(p + 10, vip.port);
      return 16 + 12;
    }
  }
  return 0;
}

std::size_t EncodeClientAddr(ClientAddrMode mode, Endpoint6 client, Endpoint6 vip,
                             ClientAddrBytes& out) {
  switch (mode) {
    case ClientAddrMode::kOff:
      return 0;
    case ClientAddrMode::kToa:
      out[0] = kTcpOptToa6;
      out[1] = kToa6Len;
      StoreBe16(&out[2], client.port);
      PutIp6Bytes(&out[4], client.ip);
      return kToa6Len;
    case ClientAddrMode::kProxyV1:
      return EncodeV1("TCP6", client, vip, out);
    case ClientAddrMode::kProxyV2: {
      std::uint8_t* p = PutV2Head(out.data(), kProxyV2TcpOver6, 36);
      PutIp6Bytes(p, client.ip);
      PutIp6Bytes(p + 16, vip.ip);
      StoreBe16(p + 32, client.port);
      StoreBe16(p + 34, vip.port);
      return 16 + 36;
    }
  }
  return 0;
}

}  // namespace fulcrum::nat
