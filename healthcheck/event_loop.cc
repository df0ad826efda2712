#include "healthcheck/event_loop.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace fulcrum::hc {

Result<std::unique_ptr<EventLoop>> EventLoop::Create() {
  const int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) {
    return Error(ErrorCode::kInternal, "epoll_create1: {}", std::strerror(errno));
  }
  return std::unique_ptr<EventLoop>(new EventLoop(fd));
}

EventLoop::EventLoop(int epoll_fd) : epoll_fd_(epoll_fd), now_(Clock::now()) {}

EventLoop::~EventLoop() { close(epoll_fd_); }

void EventLoop::AddHandler(Handler* handler) {
  const auto free_slot = std::find(handlers_.begin(), handlers_.end(), nullptr);
  if (free_slot != handlers_.end()) {
    *free_slot = handler;
  } else {
    handlers_.push_back(handler);
  }
}

void EventLoop::RemoveHandler(Handler* handler) {
  std::replace(handlers_.begin(), handlers_.end(), handler, static_cast<Handler*>(nullptr));
}

Result<std::uint64_t> EventLoop::Tag(const Handler* handler, std::uint64_t cookie) const {
  const auto it = std::find(handlers_.begin(), handlers_.end(), handler);
  if (it == handlers_.end() || handler == nullptr || (cookie & ~kCookieMask) != 0) {
    return Error(ErrorCode::kInternal, "event loop: unknown handler or cookie too wide");
  }
  return (static_cast<std::uint64_t>(it - handlers_.begin()) << 56) | cookie;
}

Status EventLoop::Watch(int fd, std::uint32_t events, const Handler* handler,
                        std::uint64_t cookie) {
  return Control(EPOLL_CTL_ADD, fd, events, handler, cookie);
}

Status EventLoop::Rewatch(int fd, std::uint32_t events, const Handler* handler,
                          std::uint64_t cookie) {
  return Control(EPOLL_CTL_MOD, fd, events, handler, cookie);
}

Status EventLoop::Control(int op, int fd, std::uint32_t events, const Handler* handler,
                          std::uint64_t cookie) {
  Result<std::uint64_t> tag = Tag(handler, cookie);
  if (!tag.ok()) {
    return tag.status();
  }
  epoll_event event{};
  event.events = events;
  event.data.u64 = *tag;
  if (epoll_ctl(epoll_fd_, op, fd, &event) != 0) {
    return Error(ErrorCode::kInternal, "epoll_ctl {} fd {}: {}",
                 op == EPOLL_CTL_ADD ? "ADD" : "MOD", fd, std::strerror(errno));
  }
  return Status::Ok();
}

void EventLoop::Unwatch(int fd) { epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

Result<int> EventLoop::RunOnce(std::chrono::milliseconds max_wait) {
  const TimePoint before = Clock::now();
  TimePoint wake = before + max_wait;
  for (const Handler* handler : handlers_) {
    if (handler != nullptr) {
      if (const std::optional<TimePoint> deadline = handler->NextDeadline()) {
        wake = std::min(wake, *deadline);
      }
    }
  }
  // Round up so that a deadline 0.3 ms away does not spin through zero-length waits.
  const auto wait = std::chrono::ceil<std::chrono::milliseconds>(
      std::max(wake - before, Clock::duration::zero()));
  const int n = epoll_wait(epoll_fd_, events_.data(), static_cast<int>(events_.size()),
                           static_cast<int>(wait.count()));
  if (n < 0 && errno != EINTR) {
    return Error(ErrorCode::kInternal, "epoll_wait: {}", std::strerror(errno));
  }
  now_ = Clock::now();
  for (int i = 0; i < n; ++i) {
    const std::uint64_t tag = events_[i].data.u64;
    const std::size_t index = tag >> 56;
    if (index < handlers_.size() && handlers_[index] != nullptr) {
      handlers_[index]->OnIo(tag & kCookieMask, events_[i].events);
    }
  }
  for (std::size_t i = 0; i < handlers_.size(); ++i) {
    Handler* handler = handlers_[i];
    if (handler == nullptr) {
      continue;
    }
    const std::optional<TimePoint> deadline = handler->NextDeadline();
    if (deadline && *deadline <= now_) {
      handler->OnTime(now_);
    }
  }
  return std::max(n, 0);
}

}  // namespace fulcrum::hc
