#include "dataplane/epoch.h"

#include <atomic>
#include <thread>

#include <fmt/format.h>

namespace fulcrum::dataplane {

GracePeriods::~GracePeriods() {
  for (Retired& retired : retired_) {
    retired.free();
  }
}

GracePeriods::Ticket GracePeriods::Start() const {
  // The publish (a store) must be visible before the epochs are read (loads): without a full
  // barrier the CPU may read an epoch first, and a pass that began before the store lands
  // would then count as having seen it.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  Ticket ticket;
  ticket.epochs.reserve(dataplane_.worker_count());
  for (std::size_t i = 0; i < dataplane_.worker_count(); ++i) {
    ticket.epochs.push_back(dataplane_.worker(i).quiescent_epoch.load(std::memory_order_acquire));
  }
  return ticket;
}

bool GracePeriods::Passed(const Ticket& ticket) const {
  if (!dataplane_.running()) {
    return true;
  }
  for (std::size_t i = 0; i < ticket.epochs.size(); ++i) {
    if (dataplane_.worker(i).quiescent_epoch.load(std::memory_order_acquire) <
        ticket.epochs[i] + 2) {
      return false;
    }
  }
  return true;
}

Status GracePeriods::Wait(const Ticket& ticket, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!Passed(ticket)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      std::string slow;
      for (std::size_t i = 0; i < ticket.epochs.size(); ++i) {
        if (dataplane_.worker(i).quiescent_epoch.load(std::memory_order_acquire) <
            ticket.epochs[i] + 2) {
          slow += fmt::format("{}{}", slow.empty() ? "" : ", ", i);
        }
      }
      return Error(ErrorCode::kTimeout, "worker(s) {} did not finish a pass within {} ms", slow,
                   timeout.count());
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return Status::Ok();
}

void GracePeriods::Retire(std::function<void()> free) {
  retired_.push_back({Start(), std::move(free)});
}

std::size_t GracePeriods::Reclaim() {
  std::size_t freed = 0;
  std::erase_if(retired_, [&](Retired& retired) {
    if (!Passed(retired.ticket)) {
      return false;
    }
    retired.free();
    ++freed;
    return true;
  });
  return freed;
}

}  // namespace fulcrum::dataplane
