// lbctl's side of the control protocol (docs/ctl-protocol.md): a blocking Unix-socket client.
//
// One request at a time: Call() writes one line and reads lines until the answer with the
// same id arrives. Every wait goes through poll() with what is left of the timeout, so a
// stalled or silent daemon cannot hang lbctl.
//
// Two ways to fail are kept apart because lbctl exits differently on each:
//   - no usable answer (cannot connect, timeout, connection closed, a line that is not a
//     response, an answer to another id): the outer Result fails, lbctl exits 2;
//   - the daemon answered and refused: the outer Result holds an Answer whose status carries
//     the daemon's code and message, lbctl exits 1.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace fulcrum::cli {

// The daemon's answer to one request: its result, or the error it refused the request with.
using Answer = Result<nlohmann::json>;

class Client {
 public:
  // Connects to the daemon's socket at `path`. `timeout` bounds the connect, and then each
  // Call() from its start to its answer.
  static Result<Client> Connect(const std::string& path, std::chrono::milliseconds timeout);

  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  // Sends `cmd` with `args` under the next id (1, 2, ...) and waits for the answer.
  Result<Answer> Call(std::string_view cmd, const nlohmann::json& args);

  const std::string& path() const { return path_; }

 private:
  Client(int fd, std::string path, std::chrono::milliseconds timeout);

  Status SendLine(const std::string& line, std::chrono::steady_clock::time_point deadline);
  Result<std::string> ReadLine(std::chrono::steady_clock::time_point deadline);
  Status WaitFor(short events, std::chrono::steady_clock::time_point deadline);
  Status Unreachable(int error) const;
  Status Garbled(std::string_view why) const;

  int fd_ = -1;
  std::string path_;
  std::chrono::milliseconds timeout_;
  std::uint64_t next_id_ = 1;
  std::string buffer_;  // bytes read past the last complete line
};

}  // namespace fulcrum::cli
