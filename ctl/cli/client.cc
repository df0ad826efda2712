#include "ctl/cli/client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "common/ctl_protocol.h"

namespace fulcrum::cli {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// Answers can be far longer than a request (conn.list returns up to 100000 connections); the
// cap only stops a runaway peer from exhausting memory.
constexpr std::size_t kMaxResponseBytes = std::size_t{256} << 20;
constexpr std::size_t kReadChunk = 64 * 1024;

int RemainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(std::min<std::int64_t>(left.count(), 1 << 30));
}

timeval ToTimeval(std::chrono::milliseconds timeout) {
  return {.tv_sec = static_cast<time_t>(timeout.count() / 1000),
          .tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
}

// ParseResponse reports both a garbled line and a daemon's own MalformedRequest error as
// kMalformedRequest; only the second has the shape of a failed response.
bool IsWellFormedRefusal(std::string_view line) {
  const json object = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!object.is_object()) {
    return false;
  }
  auto ok = object.find("ok");
  auto error = object.find("error");
  return ok != object.end() && ok->is_boolean() && !ok->get<bool>() && error != object.end() &&
         error->is_object();
}

}  // namespace

Result<Client> Client::Connect(const std::string& path, std::chrono::milliseconds timeout) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return Error(ErrorCode::kUnavailable, "cannot reach lbd at {}: {}", path,
                 std::strerror(path.empty() ? ENOENT : ENAMETOOLONG));
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Error(ErrorCode::kUnavailable, "cannot reach lbd at {}: {}", path, std::strerror(errno));
  }
  Client client(fd, path, timeout);
  // A Unix connect only blocks while the server's backlog is full; SO_SNDTIMEO bounds that
  // wait (unix_stream_connect sleeps for the socket's send timeout).
  const timeval send_timeout =
      ToTimeval(timeout.count() > 0 ? timeout : std::chrono::milliseconds(1));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
  int rc;
  do {
    rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    return client.Unreachable(errno == EAGAIN || errno == EINPROGRESS ? ETIMEDOUT : errno);
  }
  if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    return client.Unreachable(errno);
  }
  return client;
}

Client::Client(int fd, std::string path, std::chrono::milliseconds timeout)
    : fd_(fd), path_(std::move(path)), timeout_(timeout) {}

Client::Client(Client&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      path_(std::move(other.path_)),
      timeout_(other.timeout_),
      next_id_(other.next_id_),
      buffer_(std::move(other.buffer_)) {}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
    timeout_ = other.timeout_;
    next_id_ = other.next_id_;
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

Client::~Client() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Result<Answer> Client::Call(std::string_view cmd, const json& args) {
  const Clock::time_point deadline = Clock::now() + timeout_;
  const protocol::Request request{.id = next_id_++, .cmd = std::string(cmd), .args = args};
  FULCRUM_RETURN_IF_ERROR(SendLine(protocol::EncodeRequest(request), deadline));
  Result<std::string> line = ReadLine(deadline);
  if (!line.ok()) {
    return line.status();
  }
  protocol::Response response = protocol::ParseResponse(*line);
  const bool refused = !response.result.ok();
  if (refused && response.result.status().code() == ErrorCode::kMalformedRequest &&
      !IsWellFormedRefusal(*line)) {
    return Garbled(response.result.status().message());
  }
  // A refusal may carry a null id: the daemon could not read ours (or, at its connection
  // limit, never tried), and it is still the daemon's answer.
  if (response.id ? *response.id != request.id : !refused) {
    return Garbled(fmt::format("answer has id {} instead of {}",
                               response.id ? std::to_string(*response.id) : "null", request.id));
  }
  return Answer(std::move(response.result));
}

Status Client::SendLine(const std::string& line, Clock::time_point deadline) {
  std::size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t n = ::send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      return Unreachable(errno);
    }
    FULCRUM_RETURN_IF_ERROR(WaitFor(POLLOUT, deadline));
  }
  return Status::Ok();
}

Result<std::string> Client::ReadLine(Clock::time_point deadline) {
  std::size_t scanned = 0;
  for (;;) {
    const std::size_t newline = buffer_.find('\n', scanned);
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    scanned = buffer_.size();
    if (buffer_.size() > kMaxResponseBytes) {
      return Garbled(fmt::format("answer longer than {} bytes", kMaxResponseBytes));
    }
    char chunk[kReadChunk];
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
    } else if (n == 0) {
      return Error(ErrorCode::kUnavailable,
                   "cannot reach lbd at {}: connection closed before the answer", path_);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      FULCRUM_RETURN_IF_ERROR(WaitFor(POLLIN, deadline));
    } else if (errno != EINTR) {
      return Unreachable(errno);
    }
  }
}

Status Client::WaitFor(short events, Clock::time_point deadline) {
  for (;;) {
    pollfd entry{.fd = fd_, .events = events, .revents = 0};
    const int rc = ::poll(&entry, 1, RemainingMs(deadline));
    if (rc > 0) {
      return Status::Ok();  // readiness or an error: the next recv/send reports which
    }
    if (rc == 0) {
      return Error(ErrorCode::kTimeout, "cannot reach lbd at {}: no answer within {:g} s", path_,
                   static_cast<double>(timeout_.count()) / 1000.0);
    }
    if (errno != EINTR) {
      return Unreachable(errno);
    }
  }
}

Status Client::Unreachable(int error) const {
  return Error(ErrorCode::kUnavailable, "cannot reach lbd at {}: {}", path_, std::strerror(error));
}

Status Client::Garbled(std::string_view why) const {
  return Error(ErrorCode::kUnavailable, "cannot reach lbd at {}: garbled answer: {}", path_, why);
}

}  // namespace fulcrum::cli
