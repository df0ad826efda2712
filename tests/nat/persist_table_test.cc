#include "nat/persist_table.h"

#include <gtest/gtest.h>

#include <map>
#include <thread>
#include <vector>

#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using testing::Ip4;

constexpr std::uint64_t kSeed = 0x1234567890abcdefULL;
constexpr std::uint32_t kListener = 7;

PersistTable MakeTable(std::uint32_t capacity = 4096, std::uint64_t seed = kSeed) {
  Result<PersistTable> table = PersistTable::Create(capacity, seed);
  EXPECT_TRUE(table.ok()) << table.status().ToString();
  return std::move(table).value();
}

// Clients 198.18.x.y whose keys on kListener fall in one bucket, at least `count` of them.
std::vector<std::uint32_t> ClientsInOneBucket(const PersistTable& table, std::size_t count) {
  std::map<std::uint32_t, std::vector<std::uint32_t>> by_bucket;
  for (std::uint32_t i = 0;; ++i) {
    const std::uint32_t client = Ip4("198.18.0.0") + i;
    std::vector<std::uint32_t>& same = by_bucket[table.KeyOf(kListener, client).bucket];
    same.push_back(client);
    if (same.size() == count) {
      return same;
    }
  }
}

TEST(PersistTableTest, SizesToPowerOfTwoBucketsOfEightWords) {
  EXPECT_EQ(MakeTable(1).capacity(), PersistTable::kMinCapacity);
  EXPECT_EQ(MakeTable(5000).capacity(), 8192u);
  EXPECT_EQ(MakeTable(8192).capacity(), 8192u);
  EXPECT_EQ(MakeTable(8192).bucket_count(), 1024u);
  EXPECT_FALSE(PersistTable::Create(PersistTable::kMaxCapacity + 1, kSeed).ok());
}

TEST(PersistTableTest, WindowsAndTicks) {
  EXPECT_EQ(PersistTable::TickOf(1023), 0);
  EXPECT_EQ(PersistTable::TickOf(1024), 1);
  EXPECT_EQ(PersistTable::TickOf(0xffffffffu), 0xffff);  // now_ms wraps where the tick does
  EXPECT_EQ(PersistTable::WindowTicks(30), 30);          // 30,000 ms: 29.3 ticks, rounded up
  EXPECT_EQ(PersistTable::WindowTicks(3600), 3516);
  EXPECT_EQ(PersistTable::kMaxWindowTicks, 3516u);
  EXPECT_LT(PersistTable::kMaxWindowTicks, 1u << 15);  // a live entry never looks expired
}

TEST(PersistTableTest, KeysDependOnListenerClientAndSeed) {
  const PersistTable table = MakeTable();
  const PersistTable other_seed = MakeTable(4096, kSeed + 1);
  const auto same = [](PersistTable::Key a, PersistTable::Key b) {
    return a.bucket == b.bucket && a.fingerprint == b.fingerprint;
  };
  const std::uint32_t client = Ip4("198.18.0.2");
  EXPECT_TRUE(same(table.KeyOf(kListener, client), table.KeyOf(kListener, client)));
  EXPECT_FALSE(same(table.KeyOf(kListener, client), table.KeyOf(kListener + 1, client)));
  EXPECT_FALSE(same(table.KeyOf(kListener, client), table.KeyOf(kListener, client + 1)));
  EXPECT_FALSE(same(table.KeyOf(kListener, client), other_seed.KeyOf(kListener, client)));
  const Ip6 v6{0x20010db800000000ULL, 2};
  EXPECT_FALSE(same(table.KeyOf(kListener, v6), table.KeyOf(kListener, Ip6{v6.hi, 3})));
  EXPECT_NE(table.KeyOf(kListener, v6).fingerprint, 0u);
}

// The life cycle of one client's entry: recorded, found while live, refreshed by a new
// connection, gone after the window without one, recorded again in the same word.
TEST(PersistTableTest, EntryLivesForTheWindowFromTheLastConnection) {
  PersistTable table = MakeTable();
  const PersistTable::Key key = table.KeyOf(kListener, Ip4("198.18.0.2"));
  const std::uint16_t window = 30;
  std::uint16_t now = 1000;
  EXPECT_FALSE(table.Find(key, now).hit());
  const PersistTable::Recorded first = table.Remember(key, table.Find(key, now), 42, now, window);
  EXPECT_EQ(first.backend, 42u);
  EXPECT_FALSE(first.evicted);

  struct Row {
    std::uint16_t at;
    bool refresh;  // a new connection at `at` (a hit refreshes)
    bool live;
  };
  // Recorded at 1000 (deadline 1030); a connection at 1030 refreshes it (deadline 1060).
  for (const Row& row :
       {Row{1000, false, true}, Row{1029, false, true}, Row{1030, true, true},
        Row{1060, false, true}, Row{1061, false, false}, Row{1100, false, false}}) {
    const PersistTable::Found found = table.Find(key, row.at);
    EXPECT_EQ(found.hit(), row.live) << row.at;
    if (found.hit()) {
      EXPECT_EQ(found.backend, 42u) << row.at;
      if (row.refresh) {
        table.Refresh(key, found, row.at, window);
      }
    }
  }
  now = 1100;
  const PersistTable::Found expired = table.Find(key, now);
  EXPECT_LT(expired.way, PersistTable::kWays);  // its word, expired, is where it goes again
  EXPECT_EQ(table.Remember(key, expired, 43, now, window).backend, 43u);
  const PersistTable::Found again = table.Find(key, now);
  EXPECT_EQ(again.backend, 43u);
  EXPECT_EQ(again.way, expired.way);
  EXPECT_EQ(table.CountLive(now), 1u);
}

TEST(PersistTableTest, LiveAcrossTheTickWrap) {
  PersistTable table = MakeTable();
  const PersistTable::Key key = table.KeyOf(kListener, Ip4("198.18.0.9"));
  table.Remember(key, {}, 5, 65530, 30);  // deadline 65560 mod 2^16 = 24
  for (std::uint16_t now : {65530, 65535, 0, 24}) {
    EXPECT_EQ(table.Find(key, now).backend, 5u) << now;
  }
  EXPECT_FALSE(table.Find(key, 25).hit());
}

TEST(PersistTableTest, ReplacesTheEntryOfABackendTheCallerCannotUse) {
  PersistTable table = MakeTable();
  const PersistTable::Key key = table.KeyOf(kListener, Ip4("198.18.0.2"));
  table.Remember(key, {}, 1, 100, 60);
  const PersistTable::Found stale = table.Find(key, 110);
  ASSERT_EQ(stale.backend, 1u);
  // Backend 1 went down: the caller schedules anew (backend 2) and records it over the old one.
  EXPECT_EQ(table.Remember(key, stale, 2, 110, 60).backend, 2u);
  EXPECT_EQ(table.Find(key, 110).backend, 2u);
  EXPECT_EQ(table.CountLive(110), 1u);
}

// Two cores open a client's first connections at once: both miss, both schedule, both record.
// The second to record finds the first's entry and is told its backend.
TEST(PersistTableTest, TheFirstRecordOfARaceWins) {
  PersistTable table = MakeTable();
  const PersistTable::Key key = table.KeyOf(kListener, Ip4("198.18.0.2"));
  const PersistTable::Found a = table.Find(key, 5);
  const PersistTable::Found b = table.Find(key, 5);
  const PersistTable::Recorded first = table.Remember(key, a, 10, 5, 30);
  EXPECT_EQ(first.backend, 10u);
  EXPECT_FALSE(first.raced);
  const PersistTable::Recorded second = table.Remember(key, b, 20, 5, 30);
  EXPECT_EQ(second.backend, 10u);
  EXPECT_TRUE(second.raced);
  // A racer that picked the same backend is still told it raced: it did not record.
  EXPECT_TRUE(table.Remember(key, b, 10, 5, 30).raced);
  EXPECT_EQ(table.Find(key, 5).backend, 10u);
  EXPECT_EQ(table.CountLive(5), 1u);
  // The same when both saw a stale entry of a backend gone down, and both replace it.
  const PersistTable::Found stale_a = table.Find(key, 6);
  const PersistTable::Found stale_b = table.Find(key, 6);
  EXPECT_EQ(table.Remember(key, stale_a, 11, 6, 30).backend, 11u);
  EXPECT_EQ(table.Remember(key, stale_b, 21, 6, 30).backend, 11u);
}

TEST(PersistTableTest, AFullBucketEvictsTheEntryNearestItsEnd) {
  PersistTable table = MakeTable();
  const std::vector<std::uint32_t> clients = ClientsInOneBucket(table, PersistTable::kWays + 2);
  // Eight clients fill the bucket, each with a deadline of its own: client i at 100 + i.
  for (std::uint32_t i = 0; i < PersistTable::kWays; ++i) {
    const PersistTable::Key key = table.KeyOf(kListener, clients[i]);
    const PersistTable::Recorded r =
        table.Remember(key, table.Find(key, 50), i, 50, static_cast<std::uint16_t>(50 + i));
    EXPECT_EQ(r.backend, i);
    EXPECT_FALSE(r.evicted);
  }
  const PersistTable::Key ninth = table.KeyOf(kListener, clients[8]);
  const PersistTable::Recorded r = table.Remember(ninth, table.Find(ninth, 60), 99, 60, 30);
  EXPECT_EQ(r.backend, 99u);
  EXPECT_TRUE(r.evicted);
  EXPECT_FALSE(table.Find(table.KeyOf(kListener, clients[0]), 60).hit());  // deadline 100
  for (std::uint32_t i = 1; i < PersistTable::kWays; ++i) {
    EXPECT_EQ(table.Find(table.KeyOf(kListener, clients[i]), 60).backend, i);
  }
  // Once client 1's entry has expired (deadline 101), the tenth client takes its word: no
  // eviction.
  const PersistTable::Key tenth = table.KeyOf(kListener, clients[9]);
  const PersistTable::Recorded later = table.Remember(tenth, table.Find(tenth, 102), 98, 102, 30);
  EXPECT_FALSE(later.evicted);
  EXPECT_FALSE(table.Find(table.KeyOf(kListener, clients[1]), 102).hit());
  EXPECT_EQ(table.Find(table.KeyOf(kListener, clients[2]), 102).backend, 2u);
}

TEST(PersistTableTest, ExpireSomeClearsOnlyExpiredEntries) {
  PersistTable table = MakeTable(4096);
  for (std::uint32_t i = 0; i < 300; ++i) {
    const PersistTable::Key key = table.KeyOf(kListener, Ip4("198.18.0.0") + i);
    table.Remember(key, table.Find(key, 0), i, 0, static_cast<std::uint16_t>(i % 2 == 0 ? 10 : 40));
  }
  ASSERT_EQ(table.CountLive(20), 150u);  // the odd ones
  std::uint32_t cursor = 0;
  std::uint32_t cleared = 0;
  for (std::uint32_t n = 0; n < table.bucket_count(); n += 16) {
    cleared += table.ExpireSome(cursor, 16, 20);
  }
  EXPECT_EQ(cursor, 0u);  // wrapped round once
  EXPECT_EQ(cleared, 150u);
  EXPECT_EQ(table.CountLive(20), 150u);
  EXPECT_EQ(table.ExpireSome(cursor, table.bucket_count(), 20), 0u);
  for (std::uint32_t i = 1; i < 300; i += 2) {
    EXPECT_EQ(table.Find(table.KeyOf(kListener, Ip4("198.18.0.0") + i), 20).backend, i);
  }
}

// Two threads open the first connection of the same clients at the same time, each scheduling
// its own backend: every client ends with one entry, and both threads send it to one backend.
TEST(PersistTableTest, ConcurrentFirstConnectionsAgreeOnOneBackend) {
  PersistTable table = MakeTable(1 << 16);
  constexpr std::uint32_t kClients = 4000;
  std::vector<std::uint32_t> chosen[2];
  const auto open = [&table](std::uint32_t thread, std::vector<std::uint32_t>& out) {
    out.resize(kClients);
    for (std::uint32_t i = 0; i < kClients; ++i) {
      const PersistTable::Key key = table.KeyOf(kListener, Ip4("198.18.0.0") + i);
      const PersistTable::Found found = table.Find(key, 10);
      out[i] = found.hit() ? found.backend : table.Remember(key, found, thread, 10, 30).backend;
    }
  };
  std::thread first(open, 0, std::ref(chosen[0]));
  std::thread second(open, 1, std::ref(chosen[1]));
  first.join();
  second.join();
  for (std::uint32_t i = 0; i < kClients; ++i) {
    ASSERT_NE(chosen[0][i], PersistTable::kNone) << i;
    EXPECT_EQ(chosen[0][i], chosen[1][i]) << i;
  }
  EXPECT_EQ(table.CountLive(10), kClients);
}

}  // namespace
}  // namespace fulcrum::nat
