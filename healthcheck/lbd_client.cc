#include "healthcheck/lbd_client.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/ctl_protocol.h"
#include "healthcheck/hc_logger.h"

namespace fulcrum::hc {
namespace {

constexpr std::uint64_t kCookie = 1;

}  // namespace

LbdClient::LbdClient(EventLoop& loop, std::string socket_path)
    : loop_(loop), path_(std::move(socket_path)) {
  loop_.AddHandler(this);
}

LbdClient::~LbdClient() {
  if (fd_ >= 0) {
    close(fd_);
  }
  loop_.RemoveHandler(this);
}

Status LbdClient::Connect() {
  if (fd_ >= 0) {
    return Status::Ok();
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof(addr.sun_path)) {
    return Error(ErrorCode::kInvalidParameter, "lbd socket path '{}' must be 1 to {} bytes long",
                 path_, sizeof(addr.sun_path) - 1);
  }
  std::memcpy(addr.sun_path, path_.data(), path_.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Error(ErrorCode::kUnavailable, "lbd socket: {}", std::strerror(errno));
  }
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int error = errno;
    close(fd);
    return Error(ErrorCode::kUnavailable, "cannot reach lbd at {}: {}", path_,
                 std::strerror(error));
  }
  const Status watched = loop_.Watch(fd, EPOLLIN, this, kCookie);
  if (!watched.ok()) {
    close(fd);
    return watched;
  }
  fd_ = fd;
  watching_out_ = false;
  ++connections_;
  return Status::Ok();
}

void LbdClient::Disconnect(const std::string& why) {
  if (fd_ >= 0) {
    // The same failure again (lbd restarting in a loop) is not repeated at warning.
    HcLog().Log(why == last_failure_ ? LogLevel::kDebug : LogLevel::kWarning, "{}", why);
    last_failure_ = why;
    close(fd_);  // also leaves the epoll set
    fd_ = -1;
  }
  out_.clear();
  out_sent_ = 0;
  in_.clear();
  scanned_ = 0;
  std::deque<Pending> pending = std::exchange(pending_, {});
  const Status status(ErrorCode::kUnavailable, why);
  for (Pending& request : pending) {
    request.callback(Result<nlohmann::json>(status));
  }
}

Status LbdClient::Call(std::string_view cmd, const nlohmann::json& args, Callback callback) {
  if (fd_ < 0) {
    return Error(ErrorCode::kUnavailable, "not connected to lbd at {}", path_);
  }
  protocol::Request request;
  request.id = next_id_++;
  request.cmd = std::string(cmd);
  request.args = args;
  out_ += protocol::EncodeRequest(request);
  pending_.push_back({request.id, Clock::now(), std::move(callback)});
  Flush();
  return Status::Ok();
}

void LbdClient::Flush() {
  while (fd_ >= 0 && out_sent_ < out_.size()) {
    const ssize_t n =
        send(fd_, out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      }
      Disconnect(fmt::format("lost lbd at {}: {}", path_, std::strerror(errno)));
      return;
    }
    out_sent_ += static_cast<std::size_t>(n);
  }
  if (out_sent_ == out_.size()) {
    out_.clear();
    out_sent_ = 0;
  }
  UpdateWatch();
}

void LbdClient::UpdateWatch() {
  if (fd_ < 0) {
    return;
  }
  const bool want_out = !out_.empty();
  if (want_out == watching_out_) {
    return;
  }
  const Status rewatched =
      loop_.Rewatch(fd_, want_out ? EPOLLIN | EPOLLOUT : EPOLLIN, this, kCookie);
  if (!rewatched.ok()) {
    Disconnect(rewatched.message());
    return;
  }
  watching_out_ = want_out;
}

void LbdClient::OnIo(std::uint64_t /*cookie*/, std::uint32_t events) {
  if (fd_ < 0) {
    return;
  }
  if ((events & EPOLLOUT) != 0) {
    Flush();
  }
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
    Read();
  }
}

void LbdClient::Read() {
  std::array<char, 64 * 1024> buffer{};
  while (fd_ >= 0) {
    const ssize_t n = recv(fd_, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        Disconnect(fmt::format("lost lbd at {}: {}", path_, std::strerror(errno)));
      }
      return;
    }
    if (n == 0) {
      Disconnect(fmt::format("lbd at {} closed the connection", path_));
      return;
    }
    in_.append(buffer.data(), static_cast<std::size_t>(n));
    if (!HandleLines()) {
      return;
    }
    if (in_.size() > kMaxAnswerBytes) {
      Disconnect(fmt::format("lbd at {} sent a line longer than {} bytes", path_, kMaxAnswerBytes));
      return;
    }
  }
}

bool LbdClient::HandleLines() {
  const std::uint64_t connection = connections_;
  std::size_t start = 0;
  for (;;) {
    // Bytes before scanned_ hold no '\n': a long answer arriving in pieces is scanned once.
    const std::size_t end = in_.find('\n', std::max(start, scanned_));
    if (end == std::string::npos) {
      break;
    }
    // The line is copied out: a callback may send, disconnect, or even reconnect.
    const std::string line = in_.substr(start, end - start);
    start = end + 1;
    if (!HandleLine(line) || fd_ < 0 || connections_ != connection) {
      return false;
    }
  }
  in_.erase(0, start);
  scanned_ = in_.size();
  return true;
}

bool LbdClient::HandleLine(std::string_view line) {
  protocol::Response response = protocol::ParseResponse(line);
  if (pending_.empty()) {
    Disconnect(fmt::format("lbd at {} sent an answer nobody asked for", path_));
    return false;
  }
  if (!response.id || *response.id != pending_.front().id) {
    if (!response.result.ok() && !response.id) {
      // A line that is not a response, or lbd refusing the line itself (id null).
      Disconnect(fmt::format("lbd at {} sent an unusable line: {}", path_,
                             response.result.status().ToString()));
    } else {
      Disconnect(fmt::format("lbd at {} answered request {} out of order (expected {})", path_,
                             response.id.value_or(0), pending_.front().id));
    }
    return false;
  }
  Pending request = std::move(pending_.front());
  pending_.pop_front();
  last_failure_.clear();
  request.callback(response.result);
  return true;
}

std::optional<TimePoint> LbdClient::NextDeadline() const {
  if (pending_.empty()) {
    return std::nullopt;
  }
  return pending_.front().sent_at + kAnswerTimeout;
}

void LbdClient::OnTime(TimePoint now) {
  if (!pending_.empty() && now >= pending_.front().sent_at + kAnswerTimeout) {
    Disconnect(fmt::format("lbd at {} did not answer within {} s", path_, kAnswerTimeout.count()));
  }
}

}  // namespace fulcrum::hc
