// lb-healthd's connection to lbd: the control protocol (docs/ctl-protocol.md) on the event
// loop, never blocking the probes.
//
// Theory of operation: one non-blocking Unix stream socket carries pipelined requests; lbd
// answers in request order, so the pending callbacks form a FIFO and each answer must carry
// the id at its head. Anything else (a line that is not a response, an answer to another id,
// a line past kMaxAnswerBytes, no answer within kAnswerTimeout) means the stream cannot be
// trusted: the connection is dropped, and every pending callback is told Unavailable.
// Reconnecting is the owner's decision (the agent retries every second). Each callback runs
// exactly once: with lbd's result, lbd's refusal (its code and message), or Unavailable.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "healthcheck/event_loop.h"

namespace fulcrum::hc {

class LbdClient : public EventLoop::Handler {
 public:
  using Callback = std::function<void(const Result<nlohmann::json>& answer)>;

  // health.targets for 10^5 targets is tens of MiB; anything longer is refused.
  static constexpr std::size_t kMaxAnswerBytes = 256u << 20;
  static constexpr std::chrono::seconds kAnswerTimeout{15};

  LbdClient(EventLoop& loop, std::string socket_path);
  ~LbdClient() override;
  LbdClient(const LbdClient&) = delete;
  LbdClient& operator=(const LbdClient&) = delete;

  // Connects (a Unix socket connects at once or fails). Ok when already connected.
  Status Connect();
  // Drops the connection; pending callbacks get Unavailable with `why`.
  void Disconnect(const std::string& why);
  bool connected() const { return fd_ >= 0; }
  // Bumped by every successful Connect(): tells a caller that lbd may have restarted.
  std::uint64_t connection_count() const { return connections_; }

  // Sends a request; fails (without calling `callback`) when not connected.
  Status Call(std::string_view cmd, const nlohmann::json& args, Callback callback);
  std::size_t pending() const { return pending_.size(); }
  const std::string& path() const { return path_; }

  // EventLoop::Handler
  void OnIo(std::uint64_t cookie, std::uint32_t events) override;
  std::optional<TimePoint> NextDeadline() const override;
  void OnTime(TimePoint now) override;

 private:
  struct Pending {
    std::uint64_t id;
    TimePoint sent_at;
    Callback callback;
  };

  void Flush();
  void Read();
  // Handles every complete line in the input; false once the connection was dropped.
  bool HandleLines();
  bool HandleLine(std::string_view line);
  void UpdateWatch();

  EventLoop& loop_;
  std::string path_;
  int fd_ = -1;
  std::uint64_t connections_ = 0;
  std::uint64_t next_id_ = 1;
  std::deque<Pending> pending_;
  std::string out_;
  std::size_t out_sent_ = 0;
  std::string in_;
  std::size_t scanned_ = 0;
  bool watching_out_ = false;
  std::string last_failure_;  // why the last connection was dropped
};

}  // namespace fulcrum::hc
