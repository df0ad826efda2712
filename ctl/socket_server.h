// lbd's control socket: a single-threaded epoll server for the line protocol of
// docs/ctl-protocol.md ("Framing").
//
// Theory of operation. The caller owns the loop: each Poll() waits once for I/O (never longer
// than it is told), accepts, reads, answers every complete request line through the handler
// on the caller's thread, writes what the sockets take and closes the connections that broke a
// limit. Every socket is non-blocking, so no client can stall another:
//   - a half-written line waits in its connection's input buffer until the idle timeout;
//   - a line longer than max_line_bytes is answered RequestTooLarge and the connection closed
//     once that answer is flushed, since the start of the next request cannot be found;
//   - output the client does not read is queued up to max_pending_output, then it is dropped;
//   - at max_connections a newcomer gets one Unavailable line and is closed.
// Responses leave in request order because each connection answers its lines in sequence.
// A connection's idle clock restarts only on a complete request or on bytes it read from us,
// so trickling bytes (slowloris) does not keep it alive. A single response larger than
// max_pending_output is still sent whole when nothing else is queued for that client.
// Not thread-safe: create, poll and destroy the server on one thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/ctl_protocol.h"
#include "common/status.h"

namespace fulcrum::ctl {

struct SocketServerOptions {
  std::string path;  // e.g. /run/lbd/lbd.sock
  mode_t mode = 0660;
  std::size_t max_connections = 64;
  std::chrono::milliseconds idle_timeout{60000};
  std::size_t max_line_bytes = protocol::kMaxLineBytes;  // including the '\n'
  std::size_t max_pending_output = 4u << 20;
};

// Serves one request. Returning a failed Result sends that error to the client. Exceptions are
// caught at the server and answered as Internal.
using RequestHandler = std::function<Result<nlohmann::json>(const protocol::Request&)>;

class SocketServer {
 public:
  // Binds options.path (creating its parent directory, 0755, if missing). A stale socket file
  // nobody answers on is replaced; a live one is refused (kAddressConflict), as is a path that
  // is not a socket.
  static Result<std::unique_ptr<SocketServer>> Create(SocketServerOptions options,
                                                      RequestHandler handler);
  // Closes every connection and unlinks the socket path, if it is still the one we bound.
  ~SocketServer();

  SocketServer(const SocketServer&) = delete;
  SocketServer& operator=(const SocketServer&) = delete;

  // One round of the event loop: waits up to timeout_ms (0 = do not wait) for I/O, serves
  // every complete request line, writes what it can and closes idle or over-limit
  // connections. Never blocks longer than timeout_ms.
  void Poll(int timeout_ms);

  std::size_t connection_count() const { return connections_.size(); }
  const std::string& path() const { return options_.path; }

 private:
  struct Connection;
  using Clock = std::chrono::steady_clock;

  SocketServer(SocketServerOptions options, RequestHandler handler);

  Status Listen();
  int WaitBudget(int timeout_ms, Clock::time_point now) const;
  void AcceptAll();
  void Adopt(int fd);
  void Refuse(int fd, const Status& why);
  void OnEvent(std::uint64_t key, std::uint32_t events);
  void ReadInput(Connection& conn);
  void DiscardInput(Connection& conn);
  void ServeLines(Connection& conn);
  void Queue(Connection& conn, std::string line);
  std::string Answer(const protocol::ParsedRequest& parsed);
  void Flush(Connection& conn);
  void UpdateInterest(Connection& conn);
  void CloseIdle(Clock::time_point now);
  void Close(std::uint64_t key, const char* reason);

  SocketServerOptions options_;
  RequestHandler handler_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int spare_fd_ = -1;  // released to accept-and-close a client when out of descriptors
  bool bound_ = false;
  dev_t bound_dev_ = 0;
  ino_t bound_ino_ = 0;
  std::uint64_t next_key_ = 1;  // epoll key of the next connection; 0 is the listener
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> connections_;
};

}  // namespace fulcrum::ctl
