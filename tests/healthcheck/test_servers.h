// Loopback servers and a fake lbd for the healthcheck tests.
//
// Each server runs one thread around poll() with a wake pipe, binds 127.0.0.1 (or ::1) on an
// ephemeral port (or a given one, to come back on the same port), and is stopped by its
// destructor.
// FakeLbd serves the control protocol on a Unix socket in a temp dir: it answers
// health.targets from a list the test sets (with "since"/"unchanged" like lbd) and records
// every backend.set_health, applying it to its list as lbd would.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/ctl_protocol.h"
#include "common/model.h"
#include "healthcheck/event_loop.h"

namespace fulcrum::hc::testing {

// A directory under /tmp, removed (with its files) at the end.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/hc-test-XXXXXX";
    const char* made = mkdtemp(pattern);
    path_ = made != nullptr ? made : "";
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::system(("rm -rf '" + path_ + "'").c_str());
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs the loop until `done()` or `limit` passes; returns done().
inline bool RunUntil(EventLoop& loop, const std::function<bool()>& done,
                     std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    Result<int> ran = loop.RunOnce(std::chrono::milliseconds(20));
    if (!ran.ok()) {
      ADD_FAILURE() << ran.status().ToString();
      return false;
    }
  }
  return done();
}

// A thread around poll(): subclasses handle readiness of their descriptors.
class PollThread {
 public:
  virtual ~PollThread() = default;

 protected:
  void StartThread() {
    if (pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
      ADD_FAILURE() << "pipe2 failed";
      return;
    }
    thread_ = std::thread([this] { Loop(); });
  }
  void StopThread() {
    if (thread_.joinable()) {
      stop_ = true;
      const char byte = 1;
      (void)!write(wake_[1], &byte, 1);
      thread_.join();
      close(wake_[0]);
      close(wake_[1]);
    }
  }
  // The descriptors to wait on (besides the wake pipe) and what to do when one is ready.
  virtual std::vector<pollfd> Fds() = 0;
  virtual void Ready(const pollfd& fd) = 0;

 private:
  void Loop() {
    while (!stop_) {
      std::vector<pollfd> fds = Fds();
      fds.push_back({wake_[0], POLLIN, 0});
      if (poll(fds.data(), fds.size(), 100) <= 0) {
        continue;
      }
      for (std::size_t i = 0; i + 1 < fds.size() && !stop_; ++i) {
        if (fds[i].revents != 0) {
          Ready(fds[i]);
        }
      }
    }
  }

  int wake_[2] = {-1, -1};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Binds the loopback address of `family` (AF_INET: 127.0.0.1, AF_INET6: ::1).
inline int BindLoopback(int type, std::uint16_t port, int family = AF_INET) {
  const int fd = socket(family, type | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (family == AF_INET6) {
    auto* addr = reinterpret_cast<sockaddr_in6*>(&storage);
    addr->sin6_family = AF_INET6;
    addr->sin6_port = htons(port);
    addr->sin6_addr = in6addr_loopback;
    length = sizeof(sockaddr_in6);
  } else {
    auto* addr = reinterpret_cast<sockaddr_in*>(&storage);
    addr->sin_family = AF_INET;
    addr->sin_port = htons(port);
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    length = sizeof(sockaddr_in);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0) {
    ADD_FAILURE() << "bind " << (family == AF_INET6 ? "[::1]:" : "127.0.0.1:") << port << ": "
                  << std::strerror(errno);
    close(fd);
    return -1;
  }
  return fd;
}

inline std::uint16_t LocalPort(int fd) {
  sockaddr_storage addr{};
  socklen_t length = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length);
  return addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                    : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

// Whether ::1 can be bound here (a container may run without IPv6).
inline bool Ipv6LoopbackUsable() {
  const int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  const bool bound = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return bound;
}

// The address of a socket address as text ("127.0.0.2", "::1").
inline std::string AddressText(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  const void* bytes =
      addr.ss_family == AF_INET6
          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr)
          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr);
  return inet_ntop(addr.ss_family, bytes, text, sizeof(text)) != nullptr ? text : "";
}

// A port on 127.0.0.1 with nothing listening (bound and closed again at once).
inline std::uint16_t ClosedPort() {
  const int fd = BindLoopback(SOCK_STREAM, 0);
  const std::uint16_t port = LocalPort(fd);
  close(fd);
  return port;
}

// A TCP server on 127.0.0.1, or on ::1 when `family` is AF_INET6.
//   kAccept: accepts and closes at once.
//   kHttp: reads the request head, writes `reply` (maybe empty), closes.
//   kSilent: accepts and never answers.
class TcpServer : public PollThread {
 public:
  enum class Mode { kAccept, kHttp, kSilent };

  explicit TcpServer(Mode mode, std::string reply = "", std::uint16_t port = 0,
                     int family = AF_INET)
      : mode_(mode), reply_(std::move(reply)) {
    listen_fd_ = BindLoopback(SOCK_STREAM, port, family);
    listen(listen_fd_, 1024);
    port_ = LocalPort(listen_fd_);
    StartThread();
  }
  ~TcpServer() override {
    StopThread();
    for (const auto& [fd, request] : clients_) {
      close(fd);
    }
    close(listen_fd_);
  }

  std::uint16_t port() const { return port_; }
  int accepted() const { return accepted_; }
  std::string last_request() {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_request_;
  }
  // The source address of the last connection accepted.
  std::string last_peer() {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_peer_;
  }

 protected:
  std::vector<pollfd> Fds() override {
    std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
    if (mode_ == Mode::kHttp) {
      for (const auto& [fd, request] : clients_) {
        fds.push_back({fd, POLLIN, 0});
      }
    }
    return fds;
  }

  void Ready(const pollfd& ready) override {
    if (ready.fd == listen_fd_) {
      sockaddr_storage peer{};
      socklen_t length = sizeof(peer);
      const int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &length, SOCK_CLOEXEC);
      if (fd < 0) {
        return;
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        last_peer_ = AddressText(peer);
      }
      ++accepted_;
      if (mode_ == Mode::kAccept) {
        close(fd);
      } else {
        clients_[fd];
      }
      return;
    }
    char buffer[4096];
    const ssize_t n = recv(ready.fd, buffer, sizeof(buffer), 0);
    std::string& request = clients_[ready.fd];
    if (n > 0) {
      request.append(buffer, static_cast<std::size_t>(n));
    }
    if (n <= 0 || request.find("\r\n\r\n") != std::string::npos) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        last_request_ = request;
      }
      if (n > 0 && !reply_.empty()) {
        (void)!send(ready.fd, reply_.data(), reply_.size(), MSG_NOSIGNAL);
      }
      close(ready.fd);
      clients_.erase(ready.fd);
    }
  }

 private:
  Mode mode_;
  std::string reply_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::map<int, std::string> clients_;  // owned by the thread
  std::atomic<int> accepted_{0};
  std::mutex mutex_;
  std::string last_request_;
  std::string last_peer_;
};

// A UDP server on 127.0.0.1: answers every datagram with `reply`, or stays silent when
// `reply` is empty.
class UdpServer : public PollThread {
 public:
  explicit UdpServer(std::string reply) : reply_(std::move(reply)) {
    fd_ = BindLoopback(SOCK_DGRAM, 0);
    port_ = LocalPort(fd_);
    StartThread();
  }
  ~UdpServer() override {
    StopThread();
    close(fd_);
  }
  std::uint16_t port() const { return port_; }
  int received() const { return received_; }
  std::string last_datagram() {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_;
  }

 protected:
  std::vector<pollfd> Fds() override { return {{fd_, POLLIN, 0}}; }
  void Ready(const pollfd&) override {
    char buffer[2048];
    sockaddr_storage peer{};
    socklen_t length = sizeof(peer);
    const ssize_t n =
        recvfrom(fd_, buffer, sizeof(buffer), 0, reinterpret_cast<sockaddr*>(&peer), &length);
    if (n < 0) {
      return;
    }
    ++received_;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      last_.assign(buffer, static_cast<std::size_t>(n));
    }
    if (!reply_.empty()) {
      sendto(fd_, reply_.data(), reply_.size(), 0, reinterpret_cast<sockaddr*>(&peer), length);
    }
  }

 private:
  std::string reply_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<int> received_{0};
  std::mutex mutex_;
  std::string last_;
};

// One target as lbd's health.targets lists it (ctl/control_plane.cc, TargetsJson).
inline nlohmann::json TargetJson(const std::string& listener, const std::string& addr,
                                 const model::HealthCheck& check,
                                 const std::string& state = "unknown",
                                 const std::string& protocol = "tcp") {
  return {{"listener", listener},
          {"lb", "lb-0a1b2c3d"},
          {"vip", "198.18.100.10"},
          {"protocol", protocol},
          {"port", 80},
          {"addr", addr},
          {"weight", 10},
          {"health_check", model::HealthCheckJson(check)},
          {"state", state},
          {"reason", ""}};
}

inline model::HealthCheck TcpCheck(std::uint32_t rise, std::uint32_t fall,
                                   std::uint32_t interval = 1) {
  model::HealthCheck check;
  check.type = model::HealthCheckType::kTcp;
  check.interval = interval;
  check.timeout = 1;
  check.rise = rise;
  check.fall = fall;
  return check;
}

// A stand-in for lbd: health.targets and backend.set_health on a Unix socket.
class FakeLbd : public PollThread {
 public:
  struct HealthCall {
    std::string listener;
    std::string addr;
    std::string state;
    std::string reason;
  };

  explicit FakeLbd(std::string path) : path_(std::move(path)) {
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    unlink(path_.c_str());
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listen_fd_, 16) != 0) {
      ADD_FAILURE() << "fake lbd cannot listen on " << path_ << ": " << std::strerror(errno);
    }
    StartThread();
  }
  ~FakeLbd() override {
    StopThread();
    for (const auto& [fd, buffer] : clients_) {
      close(fd);
    }
    close(listen_fd_);
    unlink(path_.c_str());
  }

  void SetTargets(nlohmann::json targets) {
    std::lock_guard<std::mutex> lock(mutex_);
    targets_ = std::move(targets);
    ++version_;
  }
  // Answers health.targets with this result instead (a broken lbd), until cleared with null.
  void SetBrokenAnswer(nlohmann::json result) {
    std::lock_guard<std::mutex> lock(mutex_);
    broken_ = std::move(result);
  }
  // Answers every request with this raw text instead (a line that is not a response), until
  // cleared with "".
  void SetRawReply(std::string text) {
    std::lock_guard<std::mutex> lock(mutex_);
    raw_reply_ = std::move(text);
  }
  std::vector<HealthCall> calls() {
    std::lock_guard<std::mutex> lock(mutex_);
    return calls_;
  }
  int polls() const { return polls_; }
  bool prober_flag_seen() const { return prober_flag_seen_; }
  std::string StateOf(const std::string& listener, const std::string& addr) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const nlohmann::json& target : targets_) {
      if (target["listener"] == listener && target["addr"] == addr) {
        return target["state"].get<std::string>();
      }
    }
    return "";
  }

 protected:
  std::vector<pollfd> Fds() override {
    std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
    for (const auto& [fd, buffer] : clients_) {
      fds.push_back({fd, POLLIN, 0});
    }
    return fds;
  }

  void Ready(const pollfd& ready) override {
    if (ready.fd == listen_fd_) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        clients_[fd];
      }
      return;
    }
    char buffer[65536];
    const ssize_t n = recv(ready.fd, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      close(ready.fd);
      clients_.erase(ready.fd);
      return;
    }
    std::string& in = clients_[ready.fd];
    in.append(buffer, static_cast<std::size_t>(n));
    std::size_t end = 0;
    while ((end = in.find('\n')) != std::string::npos) {
      const std::string answer = Handle(in.substr(0, end));
      in.erase(0, end + 1);
      std::size_t sent = 0;
      while (sent < answer.size()) {
        const ssize_t w = send(ready.fd, answer.data() + sent, answer.size() - sent, MSG_NOSIGNAL);
        if (w <= 0) {
          break;
        }
        sent += static_cast<std::size_t>(w);
      }
    }
  }

 private:
  std::string Handle(const std::string& line) {
    protocol::ParsedRequest parsed = protocol::ParseRequest(line);
    if (!parsed.request.ok()) {
      return protocol::EncodeError(parsed.id, parsed.request.status());
    }
    const protocol::Request& request = *parsed.request;
    std::lock_guard<std::mutex> lock(mutex_);
    if (!raw_reply_.empty()) {
      return raw_reply_;
    }
    if (request.cmd == "health.targets") {
      ++polls_;
      if (request.args.contains("prober") && request.args["prober"] == true) {
        prober_flag_seen_ = true;
      }
      if (!broken_.is_null()) {
        return protocol::EncodeResult(request.id, broken_);
      }
      if (request.args.contains("since") && request.args["since"] == version_) {
        return protocol::EncodeResult(request.id, {{"version", version_}, {"unchanged", true}});
      }
      return protocol::EncodeResult(
          request.id, {{"version", version_}, {"unchanged", false}, {"targets", targets_}});
    }
    if (request.cmd == "backend.set_health") {
      const nlohmann::json& args = request.args;
      HealthCall call{args.value("listener", ""), args.value("addr", ""), args.value("state", ""),
                      args.value("reason", "")};
      calls_.push_back(call);
      for (nlohmann::json& target : targets_) {
        if (target["listener"] == call.listener && target["addr"] == call.addr) {
          const bool changed = target["state"] != call.state;
          if (changed || target["reason"] != call.reason) {
            ++version_;
          }
          target["state"] = call.state;
          target["reason"] = call.reason;
          return protocol::EncodeResult(request.id, {{"listener", call.listener},
                                                     {"addr", call.addr},
                                                     {"state", call.state},
                                                     {"changed", changed}});
        }
      }
      return protocol::EncodeError(
          request.id, Status(ErrorCode::kResourceNotFound, "backend " + call.addr + " not found"));
    }
    return protocol::EncodeError(request.id,
                                 Status(ErrorCode::kUnknownCommand, "unknown " + request.cmd));
  }

  std::string path_;
  int listen_fd_ = -1;
  std::map<int, std::string> clients_;  // owned by the thread
  std::mutex mutex_;
  nlohmann::json targets_ = nlohmann::json::array();
  nlohmann::json broken_;
  std::string raw_reply_;
  std::uint64_t version_ = 1795000000000000;
  std::vector<HealthCall> calls_;
  std::atomic<int> polls_{0};
  std::atomic<bool> prober_flag_seen_{false};
};

}  // namespace fulcrum::hc::testing
