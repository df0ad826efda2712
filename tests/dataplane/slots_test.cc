// Stable slots with deferred reuse (pure: no EAL).
#include "dataplane/slots.h"

#include <string>

#include <gtest/gtest.h>

namespace fulcrum::dataplane {
namespace {

TEST(SlotAllocatorTest, KeysKeepTheirSlot) {
  SlotAllocator<std::string> slots(8);
  Result<std::uint32_t> a = slots.Acquire("a");
  Result<std::uint32_t> b = slots.Acquire("b");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, 0u);
  EXPECT_EQ(*b, 1u);
  EXPECT_EQ(*slots.Acquire("a"), 0u);
  EXPECT_EQ(slots.Find("b"), std::optional<std::uint32_t>(1));
  EXPECT_EQ(slots.Find("c"), std::nullopt);
  EXPECT_EQ(slots.live(), 2u);
  EXPECT_EQ(slots.end(), 2u);
}

TEST(SlotAllocatorTest, RetiredSlotsWaitForTheSweep) {
  SlotAllocator<std::string> slots(8);
  ASSERT_TRUE(slots.Acquire("a").ok());
  ASSERT_TRUE(slots.Acquire("b").ok());
  std::vector<std::uint32_t> retired =
      slots.RetireUnless([](const std::string& key) { return key != "a"; }, 7);
  EXPECT_EQ(retired, std::vector<std::uint32_t>{0});
  EXPECT_EQ(slots.retired(), 1u);
  EXPECT_EQ(slots.Find("a"), std::nullopt);
  // "a" comes back while its old slot awaits a sweep: it gets another slot.
  EXPECT_EQ(*slots.Acquire("a"), 2u);
  // A sweep of an older generation frees nothing; generation 7 does.
  EXPECT_EQ(slots.Reclaim(6), 0u);
  EXPECT_EQ(slots.Reclaim(7), 1u);
  EXPECT_EQ(slots.retired(), 0u);
  // The lowest free slot goes first.
  EXPECT_EQ(*slots.Acquire("c"), 0u);
  EXPECT_EQ(*slots.Acquire("d"), 3u);
}

TEST(SlotAllocatorTest, FullWhenEverySlotIsLiveOrRetired) {
  SlotAllocator<int> slots(2);
  ASSERT_TRUE(slots.Acquire(1).ok());
  ASSERT_TRUE(slots.Acquire(2).ok());
  slots.RetireUnless([](int key) { return key == 2; }, 1);
  Result<std::uint32_t> third = slots.Acquire(3);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), ErrorCode::kLimitExceeded);
  EXPECT_NE(third.status().message().find("1 awaiting a sweep"), std::string::npos)
      << third.status().ToString();
  slots.Reclaim(1);
  EXPECT_EQ(*slots.Acquire(3), 0u);
}

}  // namespace
}  // namespace fulcrum::dataplane
