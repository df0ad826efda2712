#include "healthcheck/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace fulcrum::hc {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const TimePoint kStart = TimePoint{} + seconds(100);

TEST(TimerHeapTest, PopsInTimeOrderOnlyWhenDue) {
  TimerHeap heap;
  heap.Push({kStart + milliseconds(30), 3, 0, TimerKind::kProbe});
  heap.Push({kStart + milliseconds(10), 1, 0, TimerKind::kTimeout});
  heap.Push({kStart + milliseconds(20), 2, 0, TimerKind::kProbe});
  EXPECT_EQ(heap.Earliest(), kStart + milliseconds(10));
  EXPECT_FALSE(heap.PopDue(kStart).has_value());
  std::vector<std::uint32_t> order;
  while (const std::optional<Timer> timer = heap.PopDue(kStart + milliseconds(25))) {
    order.push_back(timer->slot);
  }
  EXPECT_EQ(order, (std::vector<std::uint32_t>{1, 2}));
  EXPECT_EQ(heap.size(), 1u);
  EXPECT_EQ(heap.Earliest(), kStart + milliseconds(30));
}

TEST(JitterTest, FirstDelaysStayWithinOneIntervalAndSpreadEvenly) {
  Jitter jitter(42);
  const Clock::duration interval = seconds(1);
  std::vector<int> per_tenth(10, 0);
  constexpr int kTargets = 10000;
  for (int i = 0; i < kTargets; ++i) {
    const Clock::duration delay = jitter.FirstDelay(interval);
    ASSERT_GE(delay, Clock::duration::zero());
    ASSERT_LT(delay, interval);
    ++per_tenth[static_cast<std::size_t>(delay * 10 / interval)];
  }
  // 10,000 targets learnt at once: no tenth of the interval gets more than 12% of them.
  for (const int count : per_tenth) {
    EXPECT_GT(count, kTargets / 10 * 8 / 10);
    EXPECT_LT(count, kTargets / 10 * 12 / 10);
  }
}

TEST(JitterTest, PeriodsStayWithinTenPercent) {
  Jitter jitter(7);
  const Clock::duration interval = seconds(5);
  Clock::duration low = interval * 2;
  Clock::duration high{};
  for (int i = 0; i < 10000; ++i) {
    const Clock::duration period = jitter.Period(interval);
    low = std::min(low, period);
    high = std::max(high, period);
  }
  EXPECT_GE(low, milliseconds(4500));
  EXPECT_LE(high, milliseconds(5500));
  // The spread is actually used, not a fixed period.
  EXPECT_LT(low, milliseconds(4600));
  EXPECT_GT(high, milliseconds(5400));
}

TEST(JitterTest, SameSeedSameSchedule) {
  Jitter a(1234);
  Jitter b(1234);
  Jitter c(4321);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const Clock::duration x = a.FirstDelay(seconds(1));
    EXPECT_EQ(x, b.FirstDelay(seconds(1)));
    differs = differs || x != c.FirstDelay(seconds(1));
  }
  EXPECT_TRUE(differs);
}

TEST(AdmissionTest, BoundsInFlightAndAdmitsInArrivalOrder) {
  Admission admission(2);
  EXPECT_TRUE(admission.Enter({1, 0}));
  EXPECT_TRUE(admission.Enter({2, 0}));
  EXPECT_FALSE(admission.Enter({3, 0}));
  EXPECT_FALSE(admission.Enter({4, 0}));
  EXPECT_EQ(admission.in_flight(), 2u);
  EXPECT_EQ(admission.waiting(), 2u);
  EXPECT_FALSE(admission.Next().has_value());  // no place free
  admission.Leave();
  const std::optional<Admission::Ticket> next = admission.Next();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->slot, 3u);
  EXPECT_EQ(admission.in_flight(), 2u);
  EXPECT_FALSE(admission.Next().has_value());
  admission.Leave();
  admission.Leave();
  EXPECT_EQ(admission.Next()->slot, 4u);
  EXPECT_EQ(admission.in_flight(), 1u);
  EXPECT_EQ(admission.waiting(), 0u);
}

TEST(AdmissionTest, NewcomersDoNotOvertakeTheQueue) {
  Admission admission(1);
  EXPECT_TRUE(admission.Enter({1, 0}));
  EXPECT_FALSE(admission.Enter({2, 0}));
  admission.Leave();
  // A place is free, but slot 2 was first.
  EXPECT_FALSE(admission.Enter({3, 0}));
  EXPECT_EQ(admission.Next()->slot, 2u);
  admission.Leave();
  EXPECT_EQ(admission.Next()->slot, 3u);
}

TEST(AdmissionTest, ZeroLimitStillAdmitsOne) {
  Admission admission(0);
  EXPECT_EQ(admission.limit(), 1u);
  EXPECT_TRUE(admission.Enter({1, 0}));
  EXPECT_FALSE(admission.Enter({2, 0}));
}

}  // namespace
}  // namespace fulcrum::hc
