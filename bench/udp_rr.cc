// udp-rr: a UDP request/response rate, and the echo server it can be pointed at.
//
//   udp-rr --target ADDR:PORT [--outstanding N] [--seconds S] [--timeout-ms T] [--payload B]
//          [--bind ADDR]
//   udp-rr --serve PORT [--bind ADDR] [--seconds S]
//
// Client: N connected UDP sockets, each its own flow (its own source port), each with exactly
// one request in flight. A socket sends its next request as soon as the answer to the current
// one arrives, or when the current one has waited --timeout-ms (then it counts as lost). After
// --seconds it stops and prints one JSON object on stdout:
//   {"answers":..., "answers_per_s":..., "sent":..., "lost":..., "late":..., ...}
// A request carries a 16-hex-digit sequence number in its last bytes; a reply answers it when
// the reply ends with the same bytes. That is the contract of both servers this is used with:
// the test bed's responder (scripts/backends.sh) prefixes "beN ADDR " and echoes the datagram,
// and --serve echoes it unchanged. A reply to an earlier, already timed-out request is "late".
//
// Server: echoes every datagram to its sender, in batches (recvmmsg/sendmmsg), until --seconds
// (default 3600) have passed or a signal ends it.
//
// No DPDK: plain POSIX sockets and epoll. Every run is bounded in time (at most 3600 s).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace fulcrum::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kMaxSeconds = 3600;
constexpr std::uint64_t kMaxOutstanding = 16384;
constexpr std::uint64_t kMaxPayload = 1400;
constexpr std::size_t kSeqDigits = 16;
constexpr std::size_t kMaxDatagram = 65536;
constexpr std::size_t kHistogramUs = 1'000'000;  // 1 µs buckets up to 1 s; above goes to the last
constexpr int kServeBatch = 64;
constexpr int kEpollBatch = 256;
constexpr int kIdleWaitMs = 10;

struct Flags {
  std::optional<sockaddr_in> target;
  std::optional<std::uint16_t> serve_port;
  in_addr bind_address{htonl(INADDR_ANY)};
  std::uint64_t outstanding = 32;
  std::uint64_t seconds = 10;
  bool seconds_given = false;
  std::uint64_t timeout_ms = 200;
  std::uint64_t payload = 32;
};

void Usage() {
  std::fprintf(stderr,
               "usage: udp-rr --target ADDR:PORT [--outstanding N] [--seconds S] "
               "[--timeout-ms T] [--payload BYTES] [--bind ADDR]\n"
               "       udp-rr --serve PORT [--bind ADDR] [--seconds S]\n"
               "  client: N flows, one request in flight each, for S seconds (default 32, 10);\n"
               "          prints one JSON object. Payload %zu..%llu bytes (default 32).\n"
               "  server: echoes every datagram back for S seconds (default 3600).\n",
               kSeqDigits, static_cast<unsigned long long>(kMaxPayload));
}

bool ParseNumber(std::string_view text, std::uint64_t min, std::uint64_t max, std::uint64_t& out) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out);
  return error == std::errc() && end == text.data() + text.size() && out >= min && out <= max;
}

bool ParseAddress(const std::string& text, in_addr& out) {
  return inet_pton(AF_INET, text.c_str(), &out) == 1;
}

bool ParseEndpoint(std::string_view text, sockaddr_in& out) {
  const std::size_t colon = text.rfind(':');
  std::uint64_t port = 0;
  if (colon == std::string_view::npos ||
      !ParseAddress(std::string(text.substr(0, colon)), out.sin_addr) ||
      !ParseNumber(text.substr(colon + 1), 1, 65535, port)) {
    return false;
  }
  out.sin_family = AF_INET;
  out.sin_port = htons(static_cast<std::uint16_t>(port));
  return true;
}

// Returns the flags, or an error message (empty for a plain usage error).
std::optional<Flags> ParseFlags(int argc, char** argv, std::string& error) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      return std::nullopt;
    }
    if (i + 1 >= argc) {
      error = fmt::format("{} needs a value", arg);
      return std::nullopt;
    }
    const std::string value = argv[++i];
    std::uint64_t n = 0;
    if (arg == "--target") {
      sockaddr_in target{};
      if (!ParseEndpoint(value, target)) {
        error = fmt::format("--target \"{}\": want IPV4:PORT", value);
        return std::nullopt;
      }
      flags.target = target;
    } else if (arg == "--serve") {
      if (!ParseNumber(value, 1, 65535, n)) {
        error = fmt::format("--serve \"{}\": want a port 1..65535", value);
        return std::nullopt;
      }
      flags.serve_port = static_cast<std::uint16_t>(n);
    } else if (arg == "--bind") {
      if (!ParseAddress(value, flags.bind_address)) {
        error = fmt::format("--bind \"{}\": want an IPv4 address", value);
        return std::nullopt;
      }
    } else if (arg == "--outstanding" && ParseNumber(value, 1, kMaxOutstanding, n)) {
      flags.outstanding = n;
    } else if (arg == "--seconds" && ParseNumber(value, 1, kMaxSeconds, n)) {
      flags.seconds = n;
      flags.seconds_given = true;
    } else if (arg == "--timeout-ms" && ParseNumber(value, 1, 10'000, n)) {
      flags.timeout_ms = n;
    } else if (arg == "--payload" && ParseNumber(value, kSeqDigits, kMaxPayload, n)) {
      flags.payload = n;
    } else {
      error = fmt::format("bad option or value: {} {}", arg, value);
      return std::nullopt;
    }
  }
  if (flags.target.has_value() == flags.serve_port.has_value()) {
    error = "give exactly one of --target and --serve";
    return std::nullopt;
  }
  if (flags.serve_port && !flags.seconds_given) {
    flags.seconds = kMaxSeconds;
  }
  return flags;
}

// Closes its descriptor when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string Errno(std::string_view what) {
  return fmt::format("{}: {}", what, std::strerror(errno));
}

// One socket per flow: raises the soft descriptor limit when N flows need it.
bool EnsureDescriptors(std::uint64_t flows, std::string& error) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    error = Errno("getrlimit(RLIMIT_NOFILE)");
    return false;
  }
  const rlim_t want = flows + 64;
  if (limit.rlim_cur >= want) return true;
  if (limit.rlim_max < want) {
    error = fmt::format("{} flows need {} descriptors; the hard limit is {}", flows, want,
                        static_cast<unsigned long long>(limit.rlim_max));
    return false;
  }
  limit.rlim_cur = want;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    error = Errno("setrlimit(RLIMIT_NOFILE)");
    return false;
  }
  return true;
}

// --- server -----------------------------------------------------------------------------------

// The server's socket, bound, with a receive timeout so that the loop sees its deadline.
std::optional<Fd> BindServer(const Flags& flags) {
  Fd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    std::fprintf(stderr, "udp-rr: %s\n", Errno("socket").c_str());
    return std::nullopt;
  }
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  const timeval poll_wait{0, 100'000};  // wake to check the deadline
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &poll_wait, sizeof(poll_wait));
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_addr = flags.bind_address;
  local.sin_port = htons(*flags.serve_port);
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&local), sizeof(local)) != 0) {
    char address[INET_ADDRSTRLEN] = "";
    inet_ntop(AF_INET, &flags.bind_address, address, sizeof(address));
    std::fprintf(stderr, "udp-rr: %s\n",
                 Errno(fmt::format("bind {}:{}", address, *flags.serve_port)).c_str());
    return std::nullopt;
  }
  return fd;
}

int Serve(const Flags& flags) {
  const std::optional<Fd> fd = BindServer(flags);
  if (!fd) return 1;
  static char buffers[kServeBatch][kMaxDatagram];
  sockaddr_in peers[kServeBatch];
  iovec iov[kServeBatch];
  mmsghdr messages[kServeBatch];
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(flags.seconds);
  std::uint64_t echoed = 0;
  while (Clock::now() < deadline) {
    for (int i = 0; i < kServeBatch; ++i) {
      iov[i] = {buffers[i], kMaxDatagram};
      messages[i] = {};
      messages[i].msg_hdr.msg_name = &peers[i];
      messages[i].msg_hdr.msg_namelen = sizeof(peers[i]);
      messages[i].msg_hdr.msg_iov = &iov[i];
      messages[i].msg_hdr.msg_iovlen = 1;
    }
    const int received = recvmmsg(fd->get(), messages, kServeBatch, MSG_WAITFORONE, nullptr);
    if (received < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      std::fprintf(stderr, "udp-rr: %s\n", Errno("recvmmsg").c_str());
      return 1;
    }
    for (int i = 0; i < received; ++i) {
      iov[i].iov_len = messages[i].msg_len;  // echo exactly what came in
    }
    // A reply that cannot be sent now (a full queue) is a lost answer the client counts.
    const int sent = sendmmsg(fd->get(), messages, static_cast<unsigned>(received), MSG_DONTWAIT);
    echoed += sent > 0 ? static_cast<std::uint64_t>(sent) : 0;
  }
  std::fprintf(stderr, "udp-rr: served %llu datagrams\n", static_cast<unsigned long long>(echoed));
  return 0;
}

// --- client -----------------------------------------------------------------------------------

struct Flow {
  Fd fd;
  std::uint64_t seq = 0;  // of the request in flight
  Clock::time_point sent_at;
  bool in_flight = false;
};

struct Totals {
  std::uint64_t sent = 0;
  std::uint64_t answers = 0;
  std::uint64_t lost = 0;  // timed out
  std::uint64_t late = 0;  // answers to requests that had already timed out
  std::uint64_t send_errors = 0;
  std::uint64_t recv_errors = 0;  // e.g. ECONNREFUSED from an ICMP port unreachable
  std::vector<std::uint64_t> latency_us = std::vector<std::uint64_t>(kHistogramUs + 1);
};

// The sequence number as kSeqDigits lower-case hex digits, most significant first.
void WriteSeq(std::uint64_t seq, char* out) {
  constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = kSeqDigits; i-- > 0; seq >>= 4) out[i] = kHex[seq & 0xf];
}

void SendRequest(Flow& flow, std::uint64_t seq, std::vector<char>& payload, Totals& totals) {
  WriteSeq(seq, payload.data() + payload.size() - kSeqDigits);
  flow.seq = seq;
  flow.sent_at = Clock::now();
  flow.in_flight = true;  // a failed send is retried at the timeout, so the rate stays bounded
  if (send(flow.fd.get(), payload.data(), payload.size(), MSG_DONTWAIT) < 0) {
    ++totals.send_errors;
    return;
  }
  ++totals.sent;
}

bool AnswersSeq(const char* reply, std::size_t length, std::uint64_t seq) {
  if (length < kSeqDigits) return false;
  char digits[kSeqDigits];
  WriteSeq(seq, digits);
  return std::memcmp(reply + length - kSeqDigits, digits, kSeqDigits) == 0;
}

std::uint64_t Percentile(const std::vector<std::uint64_t>& histogram, std::uint64_t count,
                         double p) {
  if (count == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(p * static_cast<double>(count - 1)) + 1;
  std::uint64_t seen = 0;
  for (std::size_t us = 0; us < histogram.size(); ++us) {
    seen += histogram[us];
    if (seen >= rank) return us;
  }
  return histogram.size() - 1;
}

std::optional<std::vector<Flow>> OpenFlows(const Flags& flags, int epoll_fd, std::string& error) {
  std::vector<Flow> flows(flags.outstanding);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_addr = flags.bind_address;
  for (std::size_t i = 0; i < flows.size(); ++i) {
    Fd fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
      error = Errno(fmt::format("socket for flow {}", i));
      return std::nullopt;
    }
    if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&local), sizeof(local)) != 0 ||
        connect(fd.get(), reinterpret_cast<const sockaddr*>(&*flags.target),
                sizeof(*flags.target)) != 0) {
      error = Errno(fmt::format("bind/connect of flow {}", i));
      return std::nullopt;
    }
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = i;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd.get(), &event) != 0) {
      error = Errno("epoll_ctl");
      return std::nullopt;
    }
    flows[i].fd = std::move(fd);
  }
  return flows;
}

// Reads every datagram waiting on the flow; sends the next request when one answers it.
void Drain(Flow& flow, std::uint64_t& next_seq, std::vector<char>& payload, Totals& totals) {
  static char reply[kMaxDatagram];
  while (true) {
    const ssize_t length = recv(flow.fd.get(), reply, sizeof(reply), MSG_DONTWAIT);
    if (length < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ++totals.recv_errors;
      return;
    }
    if (!flow.in_flight || !AnswersSeq(reply, static_cast<std::size_t>(length), flow.seq)) {
      ++totals.late;
      continue;
    }
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - flow.sent_at).count();
    ++totals.latency_us[std::min<std::size_t>(static_cast<std::size_t>(us), kHistogramUs)];
    ++totals.answers;
    flow.in_flight = false;
    SendRequest(flow, next_seq++, payload, totals);
  }
}

void PrintReport(const Flags& flags, const Totals& totals, double elapsed,
                 std::uint64_t in_flight) {
  char target[INET_ADDRSTRLEN] = "";
  inet_ntop(AF_INET, &flags.target->sin_addr, target, sizeof(target));
  fmt::print(
      "{{\"target\":\"{}:{}\",\"outstanding\":{},\"seconds\":{:.3f},\"sent\":{},"
      "\"answers\":{},\"answers_per_s\":{:.0f},\"lost\":{},\"late\":{},"
      "\"in_flight_at_end\":{},\"send_errors\":{},\"recv_errors\":{},"
      "\"p50_us\":{},\"p99_us\":{}}}\n",
      target, ntohs(flags.target->sin_port), flags.outstanding, elapsed, totals.sent,
      totals.answers, static_cast<double>(totals.answers) / elapsed, totals.lost, totals.late,
      in_flight, totals.send_errors, totals.recv_errors,
      Percentile(totals.latency_us, totals.answers, 0.50),
      Percentile(totals.latency_us, totals.answers, 0.99));
}

int RunClient(const Flags& flags) {
  std::string error;
  if (!EnsureDescriptors(flags.outstanding, error)) {
    std::fprintf(stderr, "udp-rr: %s\n", error.c_str());
    return 1;
  }
  Fd epoll_fd(epoll_create1(EPOLL_CLOEXEC));
  if (epoll_fd.get() < 0) {
    std::fprintf(stderr, "udp-rr: %s\n", Errno("epoll_create1").c_str());
    return 1;
  }
  std::optional<std::vector<Flow>> opened = OpenFlows(flags, epoll_fd.get(), error);
  if (!opened) {
    std::fprintf(stderr, "udp-rr: %s\n", error.c_str());
    return 1;
  }
  std::vector<Flow>& flows = *opened;
  std::vector<char> payload(flags.payload, 'x');
  Totals totals;
  std::uint64_t next_seq = 0;
  const auto timeout = std::chrono::milliseconds(flags.timeout_ms);
  const Clock::time_point start = Clock::now();
  const Clock::time_point end = start + std::chrono::seconds(flags.seconds);
  for (Flow& flow : flows) SendRequest(flow, next_seq++, payload, totals);

  epoll_event events[kEpollBatch];
  Clock::time_point next_scan = start + timeout;
  Clock::time_point now = start;
  while ((now = Clock::now()) < end) {
    const int ready = epoll_wait(epoll_fd.get(), events, kEpollBatch, kIdleWaitMs);
    if (ready < 0 && errno != EINTR) {
      std::fprintf(stderr, "udp-rr: %s\n", Errno("epoll_wait").c_str());
      return 1;
    }
    for (int i = 0; i < ready; ++i) {
      Drain(flows[events[i].data.u64], next_seq, payload, totals);
    }
    now = Clock::now();
    if (now < next_scan) continue;
    next_scan = now + timeout / 4;
    for (Flow& flow : flows) {
      if (flow.in_flight && now - flow.sent_at >= timeout) {
        ++totals.lost;
        SendRequest(flow, next_seq++, payload, totals);
      }
    }
  }
  std::uint64_t in_flight = 0;
  for (const Flow& flow : flows) in_flight += flow.in_flight ? 1 : 0;
  PrintReport(flags, totals, std::chrono::duration<double>(now - start).count(), in_flight);
  return 0;
}

}  // namespace
}  // namespace fulcrum::bench

int main(int argc, char** argv) {
  std::string error;
  const std::optional<fulcrum::bench::Flags> flags = fulcrum::bench::ParseFlags(argc, argv, error);
  if (!flags) {
    if (!error.empty()) std::fprintf(stderr, "udp-rr: %s\n", error.c_str());
    fulcrum::bench::Usage();
    return 2;
  }
  return flags->serve_port ? fulcrum::bench::Serve(*flags) : fulcrum::bench::RunClient(*flags);
}
