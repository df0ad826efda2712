#include "common/ids.h"

#include <set>
#include <string>

#include <gtest/gtest.h>

namespace fulcrum {
namespace {

TEST(IdsTest, ValidatesPrefixAndDigits) {
  EXPECT_TRUE(IsValidId("lb-0a1b2c3d", kLbIdPrefix));
  EXPECT_TRUE(IsValidId("sg-ffffffff", kGroupIdPrefix));
  EXPECT_TRUE(IsValidId("lsn-00000000", kListenerIdPrefix));
  EXPECT_TRUE(IsValidId("rule-12345678", kRuleIdPrefix));

  EXPECT_FALSE(IsValidId("lb-0A1B2C3D", kLbIdPrefix));  // upper case
  EXPECT_FALSE(IsValidId("lb-0a1b2c3", kLbIdPrefix));   // 7 digits
  EXPECT_FALSE(IsValidId("lb-0a1b2c3d0", kLbIdPrefix));
  EXPECT_FALSE(IsValidId("lb-0a1b2c3g", kLbIdPrefix));
  EXPECT_FALSE(IsValidId("sg-0a1b2c3d", kLbIdPrefix));  // other type
  EXPECT_FALSE(IsValidId("lb0a1b2c3d0", kLbIdPrefix));
  EXPECT_FALSE(IsValidId("", kLbIdPrefix));
}

TEST(IdsTest, GeneratesValidIdsDeterministicallyFromASeed) {
  IdGenerator first(42);
  IdGenerator second(42);
  IdGenerator other(43);
  const auto never = [](const std::string&) { return false; };
  const std::string a = first.Next(kLbIdPrefix, never);
  EXPECT_TRUE(IsValidId(a, kLbIdPrefix)) << a;
  EXPECT_EQ(second.Next(kLbIdPrefix, never), a);
  EXPECT_NE(other.Next(kLbIdPrefix, never), a);
  const std::string b = first.Next(kListenerIdPrefix, never);
  EXPECT_TRUE(IsValidId(b, kListenerIdPrefix)) << b;
}

TEST(IdsTest, NeverReturnsAnIdInUse) {
  // Learn the first three draws of seed 7, then mark the first two as used.
  IdGenerator probe(7);
  const auto never = [](const std::string&) { return false; };
  const std::string first = probe.Next(kGroupIdPrefix, never);
  const std::string second = probe.Next(kGroupIdPrefix, never);
  const std::string third = probe.Next(kGroupIdPrefix, never);
  ASSERT_NE(first, third);
  ASSERT_NE(second, third);

  std::set<std::string> used = {first, second};
  int asked = 0;
  IdGenerator generator(7);
  const std::string id = generator.Next(kGroupIdPrefix, [&](const std::string& candidate) {
    ++asked;
    return used.count(candidate) > 0;
  });
  EXPECT_EQ(id, third);
  EXPECT_EQ(asked, 3);
}

TEST(IdsTest, ManyIdsAreDistinct) {
  IdGenerator generator(1);
  std::set<std::string> issued;
  for (int i = 0; i < 5000; ++i) {
    std::string id =
        generator.Next(kLbIdPrefix, [&](const std::string& c) { return issued.count(c) > 0; });
    ASSERT_TRUE(IsValidId(id, kLbIdPrefix));
    ASSERT_TRUE(issued.insert(id).second) << id;
  }
}

TEST(IdsTest, RandomDeviceGeneratorProducesValidIds) {
  IdGenerator generator = IdGenerator::FromRandomDevice();
  EXPECT_TRUE(IsValidId(generator.Next(kRuleIdPrefix, [](const std::string&) { return false; }),
                        kRuleIdPrefix));
}

}  // namespace
}  // namespace fulcrum
