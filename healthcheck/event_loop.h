// One epoll loop for everything lb-healthd waits on: probe sockets, the lbd connection,
// signals, and deadlines.
//
// Theory of operation: lb-healthd is single-threaded. Every socket is non-blocking and
// registered here with a handler and a 64-bit cookie; the handler decodes the cookie (the
// prober packs a target slot and a generation into it, so that an event for a socket closed
// earlier in the same batch is recognised as stale and dropped). Deadlines are each handler's
// business: before every wait the loop asks each handler for its earliest deadline, sleeps no
// longer than that, and afterwards lets every handler run what is due. A handler's own timer
// heap thus decides the timeout of epoll_wait, and nothing polls.
#pragma once

#include <sys/epoll.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "common/status.h"
#include "healthcheck/health_state.h"

namespace fulcrum::hc {

class EventLoop {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // `fd` registered with `cookie` is ready with epoll `events`.
    virtual void OnIo(std::uint64_t cookie, std::uint32_t events) = 0;
    // The earliest time this handler wants OnTime(); nullopt when it waits for nothing.
    virtual std::optional<TimePoint> NextDeadline() const = 0;
    // Runs what is due at `now`.
    virtual void OnTime(TimePoint now) = 0;
  };

  static Result<std::unique_ptr<EventLoop>> Create();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Handlers are called in the order they were added; the loop does not own them.
  void AddHandler(Handler* handler);
  void RemoveHandler(Handler* handler);

  // epoll_ctl ADD / MOD / DEL. The cookie's top 8 bits are the loop's (handler index);
  // `cookie` must fit in the low 56 bits.
  Status Watch(int fd, std::uint32_t events, const Handler* handler, std::uint64_t cookie);
  Status Rewatch(int fd, std::uint32_t events, const Handler* handler, std::uint64_t cookie);
  void Unwatch(int fd);

  // Waits for I/O or the earliest handler deadline (at most `max_wait`), then dispatches I/O
  // and due deadlines. Returns the number of I/O events handled.
  Result<int> RunOnce(std::chrono::milliseconds max_wait);

  // The time taken after the last wait.
  TimePoint now() const { return now_; }

  static constexpr std::uint64_t kCookieMask = (std::uint64_t{1} << 56) - 1;

 private:
  explicit EventLoop(int epoll_fd);
  Result<std::uint64_t> Tag(const Handler* handler, std::uint64_t cookie) const;
  Status Control(int op, int fd, std::uint32_t events, const Handler* handler,
                 std::uint64_t cookie);

  int epoll_fd_;
  std::vector<Handler*> handlers_;  // index = the cookie's top byte; removed = nullptr
  std::array<epoll_event, 512> events_{};
  TimePoint now_;
};

}  // namespace fulcrum::hc
