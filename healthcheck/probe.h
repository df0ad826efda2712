// One probe over the kernel's network stack: a non-blocking socket and its phase.
//
// Theory of operation: a ProbeSpec is a target compiled once, when lbd's list changes (the
// socket address, the bytes to send, what to expect), so that starting a probe allocates
// nothing. A ProbeSocket runs one probe of a spec as a small state machine driven by epoll
// readiness; it never blocks and never sleeps. Start() and OnReady() either finish with an
// outcome or say which readiness to wait for next; the owner registers the descriptor, keeps
// the timeout and calls Abandon() when it expires. The checks:
//   - tcp: a non-blocking connect; success as soon as it completes. The socket is then closed
//     with an ordinary close() (a FIN, no SO_LINGER 0 reset), as the backend would see from
//     any polite client.
//   - http: connect, send the GET request, read until the status line can be judged
//     (probe_codec.h). Before closing, whatever the server has already sent is read and
//     discarded, so that unread data does not turn the close into a reset (RFC 1122 §4.2.2.13).
//   - udp: a connected UDP socket sends the payload and waits for one datagram. A connected
//     socket receives the ICMP port unreachable as ECONNREFUSED: "refused", not "timeout".
// An outcome is a success, a failure with the reason lbd shows, or inconclusive: a local
// error (no descriptors, no source port) says nothing about the backend and is not counted.
// A probe is bound to the source address of its backend's family when one was given
// (ProbeSources), so a dual-stack prober can leave from one management address per family.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "common/model.h"
#include "common/net_addr.h"
#include "common/status.h"
#include "healthcheck/health_state.h"
#include "healthcheck/probe_codec.h"
#include "healthcheck/targets.h"

namespace fulcrum::hc {

// A socket address that lives inside its owner (no allocation).
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  static SocketAddress From(const IpAddress& addr, std::uint16_t port);
  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// The addresses probes are bound to, at most one per address family (lb-healthd --source).
// A family without one is left to the kernel's choice (the route's preferred source).
class ProbeSources {
 public:
  ProbeSources() = default;  // the kernel chooses for every family
  // Fails when two of `addrs` have the same family.
  static Result<ProbeSources> Create(std::span<const IpAddress> addrs);

  // The source for a probe of `backend`: the one of its family, or nullptr for the kernel's.
  const SocketAddress* For(const SocketAddress& backend) const;
  // For the log: "ipv4 198.18.1.254, ipv6 the kernel's choice".
  std::string ToString() const;

 private:
  struct Source {
    IpAddress addr;
    SocketAddress socket;
  };

  std::optional<Source>& Slot(AddressFamily family) {
    return family == AddressFamily::kIpv4 ? v4_ : v6_;
  }

  std::optional<Source> v4_;
  std::optional<Source> v6_;
};

struct ProbeSpec {
  model::HealthCheckType type = model::HealthCheckType::kTcp;
  SocketAddress address;  // the backend, at the check port
  std::string payload;    // http: the request; udp: the decoded `send`
  std::string expect;     // udp: the decoded `expect`
  StatusClassSet classes = 0;
  Clock::duration interval{};
  Clock::duration timeout{};
};

// Compiles a target's check; fails on a check it cannot run (bad hex, bad codes).
Result<ProbeSpec> CompileProbe(const Target& target);

struct ProbeOutcome {
  enum class Kind { kSuccess, kFailure, kInconclusive };
  Kind kind = Kind::kFailure;
  std::string reason;  // "connected", "status 200", "refused", "timeout", ...

  static ProbeOutcome Success(std::string reason) { return {Kind::kSuccess, std::move(reason)}; }
  static ProbeOutcome Failure(std::string reason) { return {Kind::kFailure, std::move(reason)}; }
  // A failed system call: inconclusive when the error is local, otherwise a failure.
  static ProbeOutcome FromErrno(int error, std::string_view during);
};

class ProbeSocket {
 public:
  ProbeSocket() = default;
  ProbeSocket(const ProbeSocket&) = delete;
  ProbeSocket& operator=(const ProbeSocket&) = delete;
  ProbeSocket(ProbeSocket&& other) noexcept;
  ProbeSocket& operator=(ProbeSocket&& other) noexcept;
  ~ProbeSocket() { Close(); }

  // Opens a socket (bound to `source` when it has the backend's family) and starts the
  // probe. An outcome means the probe already ended and the socket is closed; otherwise wait
  // for events() on fd(). `scratch` receives data that is not kept.
  std::optional<ProbeOutcome> Start(const ProbeSpec& spec, const SocketAddress* source,
                                    std::span<char> scratch);
  // Continues after epoll reported `events`.
  std::optional<ProbeOutcome> OnReady(const ProbeSpec& spec, std::uint32_t events,
                                      std::span<char> scratch);
  // Gives up at the deadline: closes the socket and says what was still awaited.
  ProbeOutcome Abandon();

  bool active() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  std::uint32_t events() const;  // EPOLLOUT while connecting or sending, else EPOLLIN

 private:
  enum class Phase { kIdle, kConnecting, kSending, kReceiving };

  std::optional<ProbeOutcome> Connected(const ProbeSpec& spec, std::span<char> scratch);
  std::optional<ProbeOutcome> Send(const ProbeSpec& spec);
  std::optional<ProbeOutcome> ReceiveHttp(const ProbeSpec& spec, std::span<char> scratch);
  std::optional<ProbeOutcome> ReceiveUdp(const ProbeSpec& spec, std::span<char> scratch);
  ProbeOutcome Finish(ProbeOutcome outcome);
  void DrainAndClose(std::span<char> scratch);
  void Close();

  int fd_ = -1;
  Phase phase_ = Phase::kIdle;
  std::size_t sent_ = 0;
  std::array<char, kStatusLinePrefixBytes> head_{};  // the first bytes of an http answer
  std::size_t head_size_ = 0;
};

}  // namespace fulcrum::hc
