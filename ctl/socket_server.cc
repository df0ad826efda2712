#include "ctl/socket_server.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string_view>
#include <utility>
#include <vector>

#include "common/log.h"

namespace fulcrum::ctl {
namespace {

constexpr std::uint64_t kListenerKey = 0;
constexpr int kListenBacklog = 128;
constexpr int kMaxEventsPerPoll = 64;
constexpr int kMaxAcceptsPerPoll = 64;
// Per readable event, so one fast writer cannot starve the others in a round.
constexpr std::size_t kReadBudgetBytes = 1u << 20;
constexpr std::size_t kReadChunkBytes = 64u << 10;
// How long a connection closed for an oversized line keeps reading (and discarding) the rest
// of what its client sends, so that the error reply is not destroyed by a reset.
constexpr std::chrono::seconds kDrainTime{2};

Logger& Log() {
  static Logger logger("ctl");
  return logger;
}

std::string ErrnoText(int error) { return std::strerror(error); }

void CloseFd(int& fd) {
  if (fd >= 0) {
    ::close(fd);
    fd = -1;
  }
}

bool IsBlank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

// Peers that vanish are routine for a control socket, not worth a warning.
bool IsPeerGone(int error) { return error == EPIPE || error == ECONNRESET; }

Result<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return Error(ErrorCode::kInvalidParameter, "socket path '{}' must be 1 to {} bytes long", path,
                 sizeof(address.sun_path) - 1);
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

Status ValidateOptions(const SocketServerOptions& options, const RequestHandler& handler) {
  if (!handler) {
    return Error(ErrorCode::kInvalidParameter, "socket server for {} has no request handler",
                 options.path);
  }
  if (options.max_connections == 0) {
    return Error(ErrorCode::kInvalidParameter, "socket server for {}: max_connections must be > 0",
                 options.path);
  }
  if (options.max_line_bytes < 2 || options.max_line_bytes > protocol::kMaxLineBytes) {
    return Error(ErrorCode::kInvalidParameter,
                 "socket server for {}: max_line_bytes {} is outside 2..{}", options.path,
                 options.max_line_bytes, protocol::kMaxLineBytes);
  }
  if (options.max_pending_output == 0 || options.idle_timeout.count() <= 0) {
    return Error(ErrorCode::kInvalidParameter,
                 "socket server for {}: max_pending_output and idle_timeout must be > 0",
                 options.path);
  }
  if ((options.mode & ~mode_t{0777}) != 0) {
    return Error(ErrorCode::kInvalidParameter, "socket server for {}: mode {:o} is not 0..0777",
                 options.path, options.mode);
  }
  return UnixAddress(options.path).status();
}

Status MakeParentDirectory(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code error;
  if (parent.empty() || std::filesystem::exists(parent, error)) {
    return Status::Ok();
  }
  if (!std::filesystem::create_directories(parent, error) && error) {
    return Error(ErrorCode::kIoError, "cannot create directory {} for the control socket: {}",
                 parent.string(), error.message());
  }
  std::filesystem::permissions(parent, std::filesystem::perms(0755), error);
  if (error) {
    return Error(ErrorCode::kIoError, "cannot chmod 0755 {}: {}", parent.string(), error.message());
  }
  return Status::Ok();
}

// Removes `path` if it is a socket nobody listens on: what a crashed lbd leaves behind.
Status RemoveStaleSocket(const std::string& path, const sockaddr_un& address) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) {
      return Status::Ok();
    }
    return Error(ErrorCode::kIoError, "cannot stat {}: {}", path, ErrnoText(errno));
  }
  if (!S_ISSOCK(info.st_mode)) {
    return Error(ErrorCode::kAddressConflict,
                 "{} exists and is not a socket; refusing to replace it", path);
  }
  int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) {
    return Error(ErrorCode::kIoError, "cannot create a socket to probe {}: {}", path,
                 ErrnoText(errno));
  }
  const int rc = ::connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  const int connect_error = rc == 0 ? 0 : errno;
  CloseFd(probe);
  if (connect_error == 0 || connect_error == EAGAIN || connect_error == EINPROGRESS) {
    return Error(ErrorCode::kAddressConflict, "another lbd is serving {}", path);
  }
  if (connect_error == ENOENT) {
    return Status::Ok();
  }
  if (connect_error != ECONNREFUSED) {
    return Error(ErrorCode::kIoError, "cannot probe the existing socket {}: {}", path,
                 ErrnoText(connect_error));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Error(ErrorCode::kIoError, "cannot remove stale socket {}: {}", path, ErrnoText(errno));
  }
  Log().Info("removed stale socket {}", path);
  return Status::Ok();
}

}  // namespace

struct SocketServer::Connection {
  std::uint64_t key = 0;
  int fd = -1;
  std::string in;
  std::size_t scanned = 0;  // in[0, scanned) holds no '\n'
  std::string out;
  std::size_t sent = 0;  // out[0, sent) is already written
  std::uint32_t events = 0;
  Clock::time_point last_progress;
  bool read_closed = false;        // the peer shut down its side, or we stopped reading
  bool close_after_flush = false;  // framing is lost: answer what is queued, then close
  // After the last answer of a close_after_flush connection: our side is shut down and the
  // client's remaining bytes are read and discarded until it closes (or drain_deadline), so
  // that closing with unread input does not reset the connection and destroy the answer.
  bool draining = false;
  Clock::time_point drain_deadline;
  const char* drop = nullptr;  // set when the connection must close now, with the reason

  std::size_t pending() const { return out.size() - sent; }
};

SocketServer::SocketServer(SocketServerOptions options, RequestHandler handler)
    : options_(std::move(options)), handler_(std::move(handler)) {}

Result<std::unique_ptr<SocketServer>> SocketServer::Create(SocketServerOptions options,
                                                           RequestHandler handler) {
  FULCRUM_RETURN_IF_ERROR(ValidateOptions(options, handler));
  std::unique_ptr<SocketServer> server(new SocketServer(std::move(options), std::move(handler)));
  FULCRUM_RETURN_IF_ERROR(server->Listen());
  return server;
}

SocketServer::~SocketServer() {
  for (auto& [key, conn] : connections_) {
    CloseFd(conn->fd);
  }
  connections_.clear();
  struct stat info {};
  if (bound_ && ::lstat(options_.path.c_str(), &info) == 0 && info.st_dev == bound_dev_ &&
      info.st_ino == bound_ino_) {
    ::unlink(options_.path.c_str());
  }
  CloseFd(listen_fd_);
  CloseFd(epoll_fd_);
  CloseFd(spare_fd_);
}

Status SocketServer::Listen() {
  const std::string& path = options_.path;
  const sockaddr_un address = *UnixAddress(path);
  FULCRUM_RETURN_IF_ERROR(MakeParentDirectory(path));
  FULCRUM_RETURN_IF_ERROR(RemoveStaleSocket(path, address));

  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) {
    return Error(ErrorCode::kIoError, "cannot create the control socket: {}", ErrnoText(errno));
  }
  if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    const int error = errno;
    return Error(error == EADDRINUSE ? ErrorCode::kAddressConflict : ErrorCode::kIoError,
                 "cannot bind {}: {}", path, ErrnoText(error));
  }
  struct stat info {};
  if (::lstat(path.c_str(), &info) == 0) {
    bound_ = true;
    bound_dev_ = info.st_dev;
    bound_ino_ = info.st_ino;
  }
  // Before listen(), so the socket is never reachable with the umask's looser mode.
  if (::chmod(path.c_str(), options_.mode) != 0) {
    return Error(ErrorCode::kIoError, "cannot chmod {:04o} {}: {}", options_.mode, path,
                 ErrnoText(errno));
  }
  if (::listen(listen_fd_, kListenBacklog) != 0) {
    return Error(ErrorCode::kIoError, "cannot listen on {}: {}", path, ErrnoText(errno));
  }
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    return Error(ErrorCode::kIoError, "epoll_create1: {}", ErrnoText(errno));
  }
  epoll_event event{.events = EPOLLIN, .data = {.u64 = kListenerKey}};
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &event) != 0) {
    return Error(ErrorCode::kIoError, "epoll_ctl on {}: {}", path, ErrnoText(errno));
  }
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  Log().Info("serving the control protocol on {} (mode {:04o})", path, options_.mode);
  return Status::Ok();
}

void SocketServer::Poll(int timeout_ms) {
  std::array<epoll_event, kMaxEventsPerPoll> events;
  const int count =
      ::epoll_wait(epoll_fd_, events.data(), events.size(), WaitBudget(timeout_ms, Clock::now()));
  if (count < 0 && errno != EINTR) {
    Log().Error("epoll_wait on {}: {}", options_.path, ErrnoText(errno));
  }
  for (int i = 0; i < count; ++i) {
    OnEvent(events[i].data.u64, events[i].events);
  }
  CloseIdle(Clock::now());
}

// Wakes up in time for the earliest idle deadline, so idle connections close on time even
// when the caller polls with a long timeout.
int SocketServer::WaitBudget(int timeout_ms, Clock::time_point now) const {
  if (timeout_ms == 0 || connections_.empty()) {
    return timeout_ms;
  }
  Clock::time_point earliest = Clock::time_point::max();
  for (const auto& [key, conn] : connections_) {
    earliest = std::min(earliest, conn->last_progress + options_.idle_timeout);
  }
  const auto until = std::chrono::ceil<std::chrono::milliseconds>(earliest - now).count();
  const long long budget = std::max<long long>(until, 0);
  return timeout_ms < 0 ? static_cast<int>(std::min<long long>(budget, INT32_MAX))
                        : static_cast<int>(std::min<long long>(budget, timeout_ms));
}

void SocketServer::AcceptAll() {
  for (int i = 0; i < kMaxAcceptsPerPoll; ++i) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      if (connections_.size() >= options_.max_connections) {
        Log().Warn("control connection limit of {} reached on {}; refusing a client",
                   options_.max_connections, options_.path);
        Refuse(fd, Error(ErrorCode::kUnavailable,
                         "lbd is serving its limit of {} control connections; try again later",
                         options_.max_connections));
      } else {
        Adopt(fd);
      }
      continue;
    }
    const int error = errno;
    if (error == EINTR || error == ECONNABORTED) {
      continue;
    }
    if (error == EAGAIN || error == EWOULDBLOCK) {
      return;
    }
    if ((error == EMFILE || error == ENFILE) && spare_fd_ >= 0) {
      // Out of descriptors: the pending client would keep the listener readable forever.
      // Free the spare, take the client, tell it, and close it.
      Log().Warn("out of file descriptors; refusing a control connection on {}", options_.path);
      CloseFd(spare_fd_);
      Refuse(::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC),
             Error(ErrorCode::kUnavailable, "lbd is out of file descriptors; try again later"));
      spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      return;
    }
    Log().Error("accept on {}: {}", options_.path, ErrnoText(error));
    return;
  }
}

void SocketServer::Adopt(int fd) {
  auto conn = std::make_unique<Connection>();
  conn->key = next_key_++;
  conn->fd = fd;
  conn->events = EPOLLIN | EPOLLRDHUP;
  conn->last_progress = Clock::now();
  epoll_event event{.events = conn->events, .data = {.u64 = conn->key}};
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
    Log().Error("epoll_ctl on a control connection: {}", ErrnoText(errno));
    ::close(fd);
    return;
  }
  ucred peer{};
  socklen_t peer_size = sizeof(peer);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &peer_size) != 0) {
    peer = ucred{.pid = -1, .uid = static_cast<uid_t>(-1), .gid = static_cast<gid_t>(-1)};
  }
  Log().Debug("control connection {} opened by pid {} uid {} ({} open)", conn->key, peer.pid,
              peer.uid, connections_.size() + 1);
  connections_.emplace(conn->key, std::move(conn));
}

void SocketServer::Refuse(int fd, const Status& why) {
  if (fd < 0) {
    return;
  }
  const std::string line = protocol::EncodeError(std::nullopt, why);
  // A fresh socket's buffer is empty, so this short line fits; if not, the client loses it.
  [[maybe_unused]] ssize_t written = ::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
  ::close(fd);
}

void SocketServer::OnEvent(std::uint64_t key, std::uint32_t events) {
  if (key == kListenerKey) {
    AcceptAll();
    return;
  }
  auto it = connections_.find(key);
  if (it == connections_.end()) {
    return;  // closed earlier in this round
  }
  Connection& conn = *it->second;
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0 && !conn.read_closed) {
    if (conn.draining) {
      DiscardInput(conn);
    } else if (!conn.close_after_flush) {
      ReadInput(conn);
    }
  }
  if (conn.drop == nullptr && conn.pending() > 0) {
    Flush(conn);
  }
  if (conn.drop == nullptr && conn.pending() == 0) {
    if (conn.close_after_flush && !conn.draining) {
      ::shutdown(conn.fd, SHUT_WR);
      conn.draining = true;
      conn.drain_deadline = Clock::now() + kDrainTime;
      DiscardInput(conn);
    }
    if (conn.draining) {
      if (conn.read_closed) {
        conn.drop = "request too large";
      }
    } else if (conn.read_closed) {
      conn.drop = "closed by peer";
    }
  }
  if (conn.drop != nullptr) {
    Close(key, conn.drop);
    return;
  }
  UpdateInterest(conn);
}

void SocketServer::ReadInput(Connection& conn) {
  std::array<char, kReadChunkBytes> chunk;
  std::size_t budget = kReadBudgetBytes;
  while (budget > 0 && conn.drop == nullptr && !conn.close_after_flush && !conn.read_closed) {
    const ssize_t n = ::recv(conn.fd, chunk.data(), chunk.size(), 0);
    if (n > 0) {
      conn.in.append(chunk.data(), static_cast<std::size_t>(n));
      budget -= std::min(budget, static_cast<std::size_t>(n));
      ServeLines(conn);
      continue;
    }
    if (n == 0) {
      conn.read_closed = true;
      conn.in.clear();  // a request cut off by the peer's shutdown is never answered
      return;
    }
    const int error = errno;
    if (error == EINTR) {
      continue;
    }
    if (error != EAGAIN && error != EWOULDBLOCK) {
      if (!IsPeerGone(error)) {
        Log().Warn("read from control connection {}: {}", conn.key, ErrnoText(error));
      }
      conn.drop = "read error";
    }
    return;
  }
}

void SocketServer::DiscardInput(Connection& conn) {
  std::array<char, kReadChunkBytes> chunk;
  std::size_t budget = kReadBudgetBytes;
  while (budget > 0 && !conn.read_closed && conn.drop == nullptr) {
    const ssize_t n = ::recv(conn.fd, chunk.data(), chunk.size(), 0);
    if (n > 0) {
      budget -= std::min(budget, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) {
      conn.read_closed = true;
      return;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      conn.drop = "read error while draining";
    }
    return;
  }
}

void SocketServer::ServeLines(Connection& conn) {
  std::size_t start = 0;
  while (conn.drop == nullptr && !conn.close_after_flush) {
    const std::size_t newline = conn.in.find('\n', std::max(start, conn.scanned));
    if (newline == std::string::npos) {
      break;
    }
    const std::string_view line(conn.in.data() + start, newline - start);
    start = newline + 1;
    if (line.size() + 1 > options_.max_line_bytes) {
      Log().Warn("control connection {} sent a {}-byte request line (limit {}); closing it",
                 conn.key, line.size() + 1, options_.max_line_bytes);
      conn.close_after_flush = true;
      Queue(conn, protocol::EncodeError(std::nullopt,
                                        Error(ErrorCode::kRequestTooLarge,
                                              "request line of {} bytes exceeds the limit of {}",
                                              line.size() + 1, options_.max_line_bytes)));
      break;
    }
    if (IsBlank(line)) {
      continue;
    }
    conn.last_progress = Clock::now();
    Queue(conn, Answer(protocol::ParseRequest(line)));
  }
  if (conn.close_after_flush || conn.drop != nullptr) {
    conn.in.clear();
    conn.scanned = 0;
    return;
  }
  conn.in.erase(0, start);
  conn.scanned = conn.in.size();
  if (conn.in.size() + 1 > options_.max_line_bytes) {
    Log().Warn("control connection {} sent {} bytes without a newline (limit {}); closing it",
               conn.key, conn.in.size(), options_.max_line_bytes);
    conn.close_after_flush = true;
    Queue(conn, protocol::EncodeError(
                    std::nullopt, Error(ErrorCode::kRequestTooLarge,
                                        "request line exceeds the limit of {} bytes before its end",
                                        options_.max_line_bytes)));
    conn.in.clear();
    conn.scanned = 0;
  }
}

// Appends one response. A client whose unread responses pass max_pending_output is not
// reading and is dropped; a single response larger than the limit is still sent whole when
// nothing else is queued, and the idle timeout ends it if the client never reads it.
void SocketServer::Queue(Connection& conn, std::string line) {
  const bool was_empty = conn.pending() == 0;
  conn.out.append(line);
  if (conn.pending() <= options_.max_pending_output || was_empty) {
    return;
  }
  Flush(conn);
  if (conn.drop == nullptr && conn.pending() > options_.max_pending_output) {
    Log().Warn("control connection {} has {} bytes of unread responses (limit {}); dropping it",
               conn.key, conn.pending(), options_.max_pending_output);
    conn.drop = "not reading its responses";
  }
}

std::string SocketServer::Answer(const protocol::ParsedRequest& parsed) {
  if (!parsed.request.ok()) {
    return protocol::EncodeError(parsed.id, parsed.request.status());
  }
  const protocol::Request& request = *parsed.request;
  try {
    Result<nlohmann::json> result = handler_(request);
    return result.ok() ? protocol::EncodeResult(request.id, *result)
                       : protocol::EncodeError(request.id, result.status());
  } catch (const std::exception& e) {
    Log().Error("command '{}' (id {}) threw: {}", request.cmd, request.id, e.what());
    return protocol::EncodeError(
        request.id,
        Error(ErrorCode::kInternal, "command '{}' failed unexpectedly: {}", request.cmd, e.what()));
  } catch (...) {
    Log().Error("command '{}' (id {}) threw a non-standard exception", request.cmd, request.id);
    return protocol::EncodeError(
        request.id, Error(ErrorCode::kInternal, "command '{}' failed unexpectedly", request.cmd));
  }
}

void SocketServer::Flush(Connection& conn) {
  while (conn.pending() > 0) {
    const ssize_t n =
        ::send(conn.fd, conn.out.data() + conn.sent, conn.pending(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      conn.sent += static_cast<std::size_t>(n);
      conn.last_progress = Clock::now();
      continue;
    }
    const int error = n < 0 ? errno : EAGAIN;
    if (error == EINTR) {
      continue;
    }
    if (error != EAGAIN && error != EWOULDBLOCK) {
      if (!IsPeerGone(error)) {
        Log().Warn("write to control connection {}: {}", conn.key, ErrnoText(error));
      }
      conn.drop = "write error";
    }
    break;
  }
  if (conn.pending() == 0) {
    conn.out.clear();
    conn.sent = 0;
  } else if (conn.sent >= kReadChunkBytes && conn.sent * 2 >= conn.out.size()) {
    conn.out.erase(0, conn.sent);
    conn.sent = 0;
  }
}

void SocketServer::UpdateInterest(Connection& conn) {
  std::uint32_t wanted = 0;
  if (!conn.read_closed && (!conn.close_after_flush || conn.draining)) {
    wanted |= EPOLLIN | EPOLLRDHUP;
  }
  if (conn.pending() > 0) {
    wanted |= EPOLLOUT;
  }
  if (wanted == conn.events) {
    return;
  }
  epoll_event event{.events = wanted, .data = {.u64 = conn.key}};
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn.fd, &event) != 0) {
    Log().Error("epoll_ctl on control connection {}: {}", conn.key, ErrnoText(errno));
    Close(conn.key, "epoll_ctl failed");
    return;
  }
  conn.events = wanted;
}

void SocketServer::CloseIdle(Clock::time_point now) {
  std::vector<std::uint64_t> idle;
  for (const auto& [key, conn] : connections_) {
    if (conn->draining ? now >= conn->drain_deadline
                       : now - conn->last_progress >= options_.idle_timeout) {
      idle.push_back(key);
    }
  }
  for (std::uint64_t key : idle) {
    if (connections_.at(key)->draining) {
      Close(key, "request too large");
      continue;
    }
    Log().Warn("control connection {} idle for {} ms; closing it", key,
               options_.idle_timeout.count());
    Close(key, "idle timeout");
  }
}

void SocketServer::Close(std::uint64_t key, const char* reason) {
  auto it = connections_.find(key);
  if (it == connections_.end()) {
    return;
  }
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, it->second->fd, nullptr);
  CloseFd(it->second->fd);
  connections_.erase(it);
  Log().Debug("control connection {} closed: {} ({} open)", key, reason, connections_.size());
}

}  // namespace fulcrum::ctl
