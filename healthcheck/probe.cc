#include "healthcheck/probe.h"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>

namespace fulcrum::hc {
namespace {

// How much of an http answer is read and discarded before closing.
constexpr std::size_t kMaxDrainBytes = 64 * 1024;

int SocketError(int fd) {
  int error = 0;
  socklen_t length = sizeof(error);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) {
    return errno;
  }
  return error;
}

}  // namespace

SocketAddress SocketAddress::From(const IpAddress& addr, std::uint16_t port) {
  SocketAddress out;
  if (addr.is_v4()) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    std::memcpy(&sin.sin_addr, addr.bytes().data(), 4);
    std::memcpy(&out.storage, &sin, sizeof(sin));
    out.length = sizeof(sin);
  } else {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    std::memcpy(&sin6.sin6_addr, addr.bytes().data(), 16);
    std::memcpy(&out.storage, &sin6, sizeof(sin6));
    out.length = sizeof(sin6);
  }
  return out;
}

Result<ProbeSources> ProbeSources::Create(std::span<const IpAddress> addrs) {
  ProbeSources sources;
  for (const IpAddress& addr : addrs) {
    std::optional<Source>& slot = sources.Slot(addr.family());
    if (slot) {
      return Error(ErrorCode::kInvalidParameter,
                   "two {} addresses ({} and {}): give at most one per address family",
                   AddressFamilyName(addr.family()), slot->addr.ToString(), addr.ToString());
    }
    slot = Source{addr, SocketAddress::From(addr, 0)};
  }
  return sources;
}

const SocketAddress* ProbeSources::For(const SocketAddress& backend) const {
  const std::optional<Source>& source = backend.family() == AF_INET6 ? v6_ : v4_;
  if (!source || source->socket.family() != backend.family()) {
    return nullptr;
  }
  return &source->socket;
}

std::string ProbeSources::ToString() const {
  const auto name = [](const std::optional<Source>& source) {
    return source ? source->addr.ToString() : std::string("the kernel's choice");
  };
  return fmt::format("ipv4 {}, ipv6 {}", name(v4_), name(v6_));
}

Result<ProbeSpec> CompileProbe(const Target& target) {
  const model::HealthCheck& check = target.check;
  ProbeSpec spec;
  spec.type = check.type;
  const std::uint16_t port = check.port != 0 ? check.port : target.key.backend.port;
  spec.address = SocketAddress::From(target.key.backend.addr, port);
  spec.interval = std::chrono::seconds(check.interval);
  spec.timeout = std::chrono::seconds(check.timeout);
  if (check.type == model::HealthCheckType::kHttp) {
    Result<StatusClassSet> classes = ParseStatusClasses(check.codes);
    if (!classes.ok()) {
      return Error(ErrorCode::kInvalidParameter, "{}: {}", target.key.ToString(),
                   classes.status().message());
    }
    spec.classes = *classes;
    spec.payload = BuildHttpRequest(check.path, HttpHost(check.host, target.key.backend.addr));
  }
  if (check.type == model::HealthCheckType::kUdp) {
    Result<std::string> send = DecodeHex(check.send);
    Result<std::string> expect = DecodeHex(check.expect);
    if (!send.ok() || !expect.ok()) {
      return Error(ErrorCode::kInvalidParameter, "{}: health_check.{}: {}", target.key.ToString(),
                   send.ok() ? "expect" : "send",
                   (send.ok() ? expect.status() : send.status()).message());
    }
    spec.payload = std::move(*send);
    spec.expect = std::move(*expect);
  }
  return spec;
}

ProbeOutcome ProbeOutcome::FromErrno(int error, std::string_view during) {
  if (IsLocalError(error)) {
    return {Kind::kInconclusive,
            fmt::format("local error during {}: {}", during, std::strerror(error))};
  }
  return Failure(ReasonForErrno(error));
}

ProbeSocket::ProbeSocket(ProbeSocket&& other) noexcept { *this = std::move(other); }

ProbeSocket& ProbeSocket::operator=(ProbeSocket&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = std::exchange(other.fd_, -1);
    phase_ = std::exchange(other.phase_, Phase::kIdle);
    sent_ = other.sent_;
    head_ = other.head_;
    head_size_ = other.head_size_;
  }
  return *this;
}

std::uint32_t ProbeSocket::events() const {
  return phase_ == Phase::kConnecting || phase_ == Phase::kSending ? EPOLLOUT : EPOLLIN;
}

void ProbeSocket::Close() {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  phase_ = Phase::kIdle;
}

ProbeOutcome ProbeSocket::Finish(ProbeOutcome outcome) {
  Close();
  return outcome;
}

std::optional<ProbeOutcome> ProbeSocket::Start(const ProbeSpec& spec, const SocketAddress* source,
                                               std::span<char> scratch) {
  Close();
  sent_ = 0;
  head_size_ = 0;
  const bool udp = spec.type == model::HealthCheckType::kUdp;
  fd_ = socket(spec.address.family(),
               (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    return ProbeOutcome::FromErrno(errno, "socket");
  }
  if (source != nullptr && source->family() == spec.address.family()) {
    // Take the port at connect time, not at bind, so that binding does not reserve one port
    // per probe for every destination (Linux IP_BIND_ADDRESS_NO_PORT).
    const int one = 1;
    setsockopt(fd_, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(fd_, source->get(), source->length) != 0) {
      return Finish(ProbeOutcome::FromErrno(errno, "bind to the source address"));
    }
  }
  if (connect(fd_, spec.address.get(), spec.address.length) != 0) {
    if (errno != EINPROGRESS) {
      return Finish(ProbeOutcome::FromErrno(errno, "connect"));
    }
    phase_ = Phase::kConnecting;
    return std::nullopt;
  }
  return Connected(spec, scratch);
}

std::optional<ProbeOutcome> ProbeSocket::Connected(const ProbeSpec& spec, std::span<char> scratch) {
  if (spec.type == model::HealthCheckType::kTcp) {
    return Finish(ProbeOutcome::Success("connected"));
  }
  phase_ = Phase::kSending;
  std::optional<ProbeOutcome> sent = Send(spec);
  if (sent || phase_ != Phase::kReceiving) {
    return sent;
  }
  // A fast server may have answered already; reading now saves a wakeup.
  return spec.type == model::HealthCheckType::kUdp ? std::nullopt : ReceiveHttp(spec, scratch);
}

std::optional<ProbeOutcome> ProbeSocket::Send(const ProbeSpec& spec) {
  while (sent_ < spec.payload.size()) {
    const ssize_t n = send(fd_, spec.payload.data() + sent_, spec.payload.size() - sent_,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return std::nullopt;
      }
      if (errno == EINTR) {
        continue;
      }
      return Finish(ProbeOutcome::FromErrno(errno, "send"));
    }
    sent_ += static_cast<std::size_t>(n);
  }
  phase_ = Phase::kReceiving;
  return std::nullopt;
}

std::optional<ProbeOutcome> ProbeSocket::OnReady(const ProbeSpec& spec, std::uint32_t events,
                                                 std::span<char> scratch) {
  switch (phase_) {
    case Phase::kIdle:
      return std::nullopt;
    case Phase::kConnecting: {
      const int error = SocketError(fd_);
      if (error != 0) {
        return Finish(ProbeOutcome::FromErrno(error, "connect"));
      }
      if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) {
        return std::nullopt;
      }
      return Connected(spec, scratch);
    }
    case Phase::kSending: {
      std::optional<ProbeOutcome> sent = Send(spec);
      if (sent || phase_ != Phase::kReceiving || spec.type == model::HealthCheckType::kUdp) {
        return sent;
      }
      return ReceiveHttp(spec, scratch);
    }
    case Phase::kReceiving:
      return spec.type == model::HealthCheckType::kUdp ? ReceiveUdp(spec, scratch)
                                                       : ReceiveHttp(spec, scratch);
  }
  return std::nullopt;
}

std::optional<ProbeOutcome> ProbeSocket::ReceiveHttp(const ProbeSpec& spec,
                                                     std::span<char> scratch) {
  std::array<char, 512> buffer{};
  for (;;) {
    const ssize_t n = recv(fd_, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return std::nullopt;
      }
      return Finish(ProbeOutcome::FromErrno(errno, "recv"));
    }
    const bool eof = n == 0;
    if (eof && head_size_ == 0) {
      return Finish(ProbeOutcome::Failure("closed without reply"));
    }
    const std::size_t take = std::min(static_cast<std::size_t>(n), head_.size() - head_size_);
    std::memcpy(head_.data() + head_size_, buffer.data(), take);
    head_size_ += take;
    const StatusLine line = ParseStatusLine(std::string_view(head_.data(), head_size_), eof);
    if (line.kind == StatusLine::Kind::kIncomplete) {
      continue;
    }
    if (!eof) {
      DrainAndClose(scratch);
    }
    if (line.kind == StatusLine::Kind::kMalformed) {
      return Finish(ProbeOutcome::Failure("bad status line"));
    }
    if (!StatusAccepted(spec.classes, line.status)) {
      return Finish(ProbeOutcome::Failure(fmt::format("unexpected status {}", line.status)));
    }
    return Finish(ProbeOutcome::Success(fmt::format("status {}", line.status)));
  }
}

void ProbeSocket::DrainAndClose(std::span<char> scratch) {
  std::size_t drained = 0;
  while (!scratch.empty() && drained < kMaxDrainBytes) {
    const ssize_t n = recv(fd_, scratch.data(), scratch.size(), MSG_DONTWAIT);
    if (n <= 0) {
      break;
    }
    drained += static_cast<std::size_t>(n);
  }
  Close();
}

std::optional<ProbeOutcome> ProbeSocket::ReceiveUdp(const ProbeSpec& spec,
                                                    std::span<char> scratch) {
  for (;;) {
    const ssize_t n = recv(fd_, scratch.data(), scratch.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return std::nullopt;
      }
      return Finish(ProbeOutcome::FromErrno(errno, "recv"));
    }
    const std::size_t size = std::min(static_cast<std::size_t>(n), scratch.size());
    if (UdpReplyMatches(std::string_view(scratch.data(), size), spec.expect)) {
      return Finish(ProbeOutcome::Success("reply matched"));
    }
    return Finish(ProbeOutcome::Failure("unexpected reply"));
  }
}

ProbeOutcome ProbeSocket::Abandon() {
  const Phase phase = phase_;
  Close();
  return ProbeOutcome::Failure(phase == Phase::kConnecting ? "timeout" : "timeout awaiting reply");
}

}  // namespace fulcrum::hc
