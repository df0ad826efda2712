// TCP connection state as a middlebox sees it, and how long an idle connection is kept.
//
// Theory of operation: the load balancer sees both directions of a connection but tracks no
// sequence numbers, so it follows only the flags: the handshake (to know a connection is
// real before giving it the long idle timeout), the FINs (to shorten the timeout once the
// connection is closing) and RST (to forget it quickly). The states, after LVS/DPVS:
//
//   none         no segment seen yet (a new entry before its first SYN is applied)
//   syn_sent     client SYN seen                                   timeout: 10 s
//   syn_recv     backend SYN-ACK seen                              timeout: 10 s
//   established  client ACK after the SYN-ACK                      timeout: listener idle
//   fin_wait     client FIN seen first (client half-closed)        timeout: 30 s
//   close_wait   backend FIN seen first (backend half-closed)      timeout: 30 s
//   last_ack     both FINs seen, waiting for the last ACK          timeout: 30 s
//   time_wait    an ACK seen after both FINs                       timeout: 10 s
//   closed       RST seen from either side                         timeout: 2 s
//
// Timeouts are idle timeouts: every packet of the connection restarts them. A client SYN in
// time_wait or closed reopens the tuple (syn_sent), as a new connection reusing the client
// port would. In last_ack any ACK moves to time_wait: without sequence numbers the middlebox
// cannot tell which FIN an ACK acknowledges, and the short time_wait still carries the final
// ACK through. Segments with impossible flag sets (SYN with FIN or RST, no flags) change
// nothing.
//
// Times are uint32 milliseconds from any monotonic origin; they wrap every 49.7 days, so
// elapsed time is always `now - then` in unsigned arithmetic, never a comparison of stamps.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "nat/flow_key.h"
#include "nat/packet.h"

namespace fulcrum::nat {

enum class TcpState : std::uint8_t {
  kNone,
  kSynSent,
  kSynRecv,
  kEstablished,
  kFinWait,
  kCloseWait,
  kLastAck,
  kTimeWait,
  kClosed,
};
inline constexpr std::size_t kTcpStateCount = 9;

// "syn_sent", "established", ... (the names `conn list` prints).
std::string_view TcpStateName(TcpState state);

inline constexpr std::uint32_t kTcpSynTimeoutMs = 10'000;
inline constexpr std::uint32_t kTcpFinTimeoutMs = 30'000;
inline constexpr std::uint32_t kTcpTimeWaitTimeoutMs = 10'000;
inline constexpr std::uint32_t kTcpClosedTimeoutMs = 2'000;

// What a segment's flags mean to the state machine.
enum class TcpEvent : std::uint8_t { kSyn, kSynAck, kFin, kAck, kRst, kInvalid };
inline constexpr std::size_t kTcpEventCount = 6;

constexpr TcpEvent ClassifyTcpFlags(std::uint8_t flags) {
  if ((flags & kTcpSyn) != 0) {
    if ((flags & (kTcpFin | kTcpRst)) != 0) {
      return TcpEvent::kInvalid;
    }
    return (flags & kTcpAck) != 0 ? TcpEvent::kSynAck : TcpEvent::kSyn;
  }
  if ((flags & kTcpRst) != 0) {
    return TcpEvent::kRst;
  }
  if ((flags & kTcpFin) != 0) {
    return TcpEvent::kFin;
  }
  return (flags & kTcpAck) != 0 ? TcpEvent::kAck : TcpEvent::kInvalid;
}

namespace detail {

// The transition rules; TcpNextState looks them up in a table built from this at compile time.
constexpr TcpState TcpRule(TcpState s, FlowDir dir, TcpEvent e) {
  using enum TcpState;
  const bool client = dir == FlowDir::kFromClient;
  if (e == TcpEvent::kInvalid) {
    return s;
  }
  if (e == TcpEvent::kRst) {
    return s == kNone ? kNone : kClosed;
  }
  switch (s) {
    case kNone:
      return client && e == TcpEvent::kSyn ? kSynSent : kNone;
    case kSynSent:
      return !client && e == TcpEvent::kSynAck ? kSynRecv : kSynSent;
    case kSynRecv:
      if (client && e == TcpEvent::kAck) {
        return kEstablished;
      }
      if (e == TcpEvent::kFin) {
        return client ? kFinWait : kCloseWait;
      }
      return kSynRecv;
    case kEstablished:
      if (e == TcpEvent::kFin) {
        return client ? kFinWait : kCloseWait;
      }
      return kEstablished;
    case kFinWait:
      return !client && e == TcpEvent::kFin ? kLastAck : kFinWait;
    case kCloseWait:
      return client && e == TcpEvent::kFin ? kLastAck : kCloseWait;
    case kLastAck:
      return e == TcpEvent::kAck ? kTimeWait : kLastAck;
    case kTimeWait:
    case kClosed:
      return client && e == TcpEvent::kSyn ? kSynSent : s;
  }
  return s;
}

using TcpTransitionTable =
    std::array<std::array<std::array<TcpState, kTcpEventCount>, 2>, kTcpStateCount>;

constexpr TcpTransitionTable MakeTcpTransitionTable() {
  TcpTransitionTable table{};
  for (std::size_t s = 0; s < kTcpStateCount; ++s) {
    for (std::size_t d = 0; d < 2; ++d) {
      for (std::size_t e = 0; e < kTcpEventCount; ++e) {
        table[s][d][e] =
            TcpRule(static_cast<TcpState>(s), static_cast<FlowDir>(d), static_cast<TcpEvent>(e));
      }
    }
  }
  return table;
}

inline constexpr TcpTransitionTable kTcpTransitions = MakeTcpTransitionTable();

}  // namespace detail

// The state after a segment with `flags` travelling in `dir`.
constexpr TcpState TcpNextState(TcpState state, FlowDir dir, std::uint8_t flags) {
  return detail::kTcpTransitions[static_cast<std::size_t>(state)][static_cast<std::size_t>(dir)]
                                [static_cast<std::size_t>(ClassifyTcpFlags(flags))];
}

// The idle timeout of a TCP connection in `state`; `established_ms` is the listener's idle
// timeout.
constexpr std::uint32_t TcpTimeoutMs(TcpState state, std::uint32_t established_ms) {
  switch (state) {
    case TcpState::kNone:
    case TcpState::kSynSent:
    case TcpState::kSynRecv:
      return kTcpSynTimeoutMs;
    case TcpState::kEstablished:
      return established_ms;
    case TcpState::kFinWait:
    case TcpState::kCloseWait:
    case TcpState::kLastAck:
      return kTcpFinTimeoutMs;
    case TcpState::kTimeWait:
      return kTcpTimeWaitTimeoutMs;
    case TcpState::kClosed:
      return kTcpClosedTimeoutMs;
  }
  return kTcpClosedTimeoutMs;
}

// A UDP flow has no states: the listener's idle timeout applies throughout.
constexpr std::uint32_t UdpTimeoutMs(std::uint32_t idle_ms) { return idle_ms; }

// Milliseconds from `then` to `now`, correct across the 32-bit wrap as long as the true
// interval is below 49.7 days.
constexpr std::uint32_t ElapsedMs(std::uint32_t now, std::uint32_t then) { return now - then; }

// Whether something last seen at `last_seen_ms` with an idle timeout of `timeout_ms` has
// expired at `now_ms`.
constexpr bool IdleExpired(std::uint32_t now_ms, std::uint32_t last_seen_ms,
                           std::uint32_t timeout_ms) {
  return ElapsedMs(now_ms, last_seen_ms) >= timeout_ms;
}

}  // namespace fulcrum::nat
