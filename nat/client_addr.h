// What a full-NAT backend is told about its client: the bytes of a Proxy Protocol header (v1
// text or v2 binary) or of a TOA TCP option.
//
// In fnat a backend's TCP peer is a local address of the LB, so the client's address has to
// travel in band. Two conventions are in use, and a listener picks one (`--client-ip`):
//   - Proxy Protocol (HAProxy's specification, versions 1 and 2): a header at the start of the
//     stream the backend receives, before the client's first byte. nginx, HAProxy, Envoy and
//     most proxies read it. The data plane inserts it and shifts the connection's sequence
//     numbers by its length (nat/tcp_splice.h).
//   - TOA ("TCP option address", LVS and DPVS): a TCP option in the segments that carry the
//     client's first sequence number (the handshake's ACK, the first data), which a kernel
//     module on the backend (toa.ko) attaches to the accepted socket, so that getpeername()
//     returns the client. IPv4 clients: kind 254, length 8, the port then the address; IPv6
//     clients: kind 253, length 20, the port then the address, as the IPv6-aware modules read.
//     Both in network byte order. An option takes no sequence space: nothing is shifted.
//
// The header describes the client's connection as it reached the VIP: source the client,
// destination the VIP, in the client's family (a NAT64 connection's header is TCP6 although its
// backend speaks IPv4). Encoding writes into a caller's buffer: no allocation.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "nat/flow_key.h"

namespace fulcrum::nat {

enum class ClientAddrMode : std::uint8_t { kOff, kToa, kProxyV1, kProxyV2 };

// The longest v1 header ("PROXY TCP6 " and two full IPv6 addresses and ports, CRLF included)
// is 104 bytes; the specification bounds every v1 header by 107.
inline constexpr std::size_t kProxyV1MaxLen = 107;
// v2 with the addresses of TCP over IPv6, no TLVs.
inline constexpr std::size_t kProxyV2MaxLen = 16 + 36;
inline constexpr std::size_t kClientAddrMaxLen = kProxyV1MaxLen;

inline constexpr std::uint8_t kTcpOptToa = 254;   // IPv4 client
inline constexpr std::uint8_t kTcpOptToa6 = 253;  // IPv6 client
inline constexpr std::size_t kToaLen = 8;         // kind, length, port, IPv4 address
inline constexpr std::size_t kToa6Len = 20;       // kind, length, port, IPv6 address

using ClientAddrBytes = std::array<std::uint8_t, kClientAddrMaxLen>;

// Writes what `mode` sends for the connection client -> vip into `out`: its length (0 for
// kOff). Every v1 and v2 header and TOA option fits in kClientAddrMaxLen.
std::size_t EncodeClientAddr(ClientAddrMode mode, Endpoint4 client, Endpoint4 vip,
                             ClientAddrBytes& out);
std::size_t EncodeClientAddr(ClientAddrMode mode, Endpoint6 client, Endpoint6 vip,
                             ClientAddrBytes& out);

// The text form of an IPv6 address that RFC 5952 recommends (lower case, no leading zeros, the
// longest run of two or more zero groups, the first of equal runs, as "::"), and dotted
// IPv4 for an IPv4-mapped address: what inet_ntop writes. Returns its length (at most 45).
std::size_t FormatIp6(const Ip6& ip, char* out);

}  // namespace fulcrum::nat
