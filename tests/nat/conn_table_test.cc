#include "nat/conn_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

#include "nat/crc32c.h"
#include "nat/packet.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using testing::Ip4;

constexpr std::uint32_t kTimeoutMs = 10'000;

// Connection number i (< 2^24): distinct client and local address:port pairs, one VIP, four
// backends.
ConnEntry FnatConn(std::uint32_t i, std::uint8_t proto = kIpProtoTcp) {
  const Endpoint4 client{Ip4("198.18.0.0") + (i >> 16), static_cast<std::uint16_t>(i)};
  const Endpoint4 vip{Ip4("198.18.100.1"), 80};
  const Endpoint4 local{Ip4("198.18.1.2") + (i >> 16), static_cast<std::uint16_t>(i)};
  const Endpoint4 backend{Ip4("198.18.1.11") + i % 4, 8080};
  ConnEntry e = MakeFnatEntry(proto, client, vip, local, backend);
  e.backend = i % 4;
  e.timeout_ms = kTimeoutMs;
  return e;
}

ConnTable MakeTable(std::uint32_t capacity) {
  Result<ConnTable> table = ConnTable::Create(capacity);
  EXPECT_TRUE(table.ok()) << table.status().ToString();
  return std::move(table).value();
}

// ---------------------------------------------------------------------------------------------
// Hash

std::uint32_t BitwiseCrc32c(std::uint32_t crc, std::span<const std::uint8_t> bytes) {
  for (std::uint8_t byte : bytes) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
    }
  }
  return crc;
}

TEST(Crc32cTest, MatchesTheStandardAndEachOther) {
  const std::string check = "123456789";
  // The CRC-32C check value (with the customary pre- and post-inversion).
  EXPECT_EQ(~BitwiseCrc32c(~0u, {reinterpret_cast<const std::uint8_t*>(check.data()), 9}),
            0xe3069283u);
  std::mt19937_64 rng(3309);
  for (int i = 0; i < 10000; ++i) {
    const std::uint64_t word = rng();
    const auto crc = static_cast<std::uint32_t>(rng());
    std::uint8_t bytes[8];
    std::memcpy(bytes, &word, 8);  // little-endian: least significant byte first
    ASSERT_EQ(Crc32cU64Software(crc, word), BitwiseCrc32c(crc, bytes));
    ASSERT_EQ(Crc32cU64(crc, word), Crc32cU64Software(crc, word));
  }
}

// ---------------------------------------------------------------------------------------------
// Memory

TEST(ConnTableTest, EntryIsOneCacheLine) {
  EXPECT_EQ(sizeof(ConnEntry), 64u);
  EXPECT_EQ(alignof(ConnEntry), 64u);
}

TEST(ConnTableTest, AtMost160BytesPerConnectionAtAnyCapacity) {
  // Every capacity but 1 (whose two-bucket minimum index alone is 128 bytes). Power-of-two
  // bucket counts make the index share jump, so check around every jump as well.
  std::vector<std::uint32_t> capacities = {10'000'000, ConnTable::kMaxCapacity};
  for (std::uint32_t capacity = 2; capacity <= 100'000; ++capacity) {
    capacities.push_back(capacity);
  }
  for (std::uint32_t buckets = 2; buckets <= (1u << 27); buckets <<= 1) {
    const auto edge = static_cast<std::uint32_t>(std::uint64_t{buckets} * 8 * 85 / 200);
    capacities.insert(capacities.end(), {edge - 1, edge, edge + 1, edge + 2});
  }
  double worst = 0;
  for (std::uint32_t capacity : capacities) {
    if (capacity < 2 || capacity > ConnTable::kMaxCapacity) {
      continue;
    }
    const double per_conn =
        static_cast<double>(ConnTable::MemoryBytes(capacity)) / static_cast<double>(capacity);
    EXPECT_LE(per_conn, 160.0) << "capacity " << capacity;
    if (capacity >= 1000) {
      // Entry, free-stack slot, and two index slots of 8 bytes at <= 85% occupancy.
      EXPECT_GE(per_conn, 64.0 + 4.0 + 2 * 8.0 / 0.85) << "capacity " << capacity;
      worst = std::max(worst, per_conn);
    }
  }
  EXPECT_LT(worst, 110.0);
}

TEST(ConnTableTest, ReportsItsOwnMemory) {
  ConnTable table = MakeTable(1u << 20);
  EXPECT_EQ(table.memory_bytes(), ConnTable::MemoryBytes(1u << 20));
  EXPECT_DOUBLE_EQ(table.bytes_per_connection(),
                   static_cast<double>(table.memory_bytes()) / (1u << 20));
  EXPECT_LE(table.bytes_per_connection(), 160.0);
  // The index is sized for at most 85% slot occupancy at full capacity.
  EXPECT_GE(table.bucket_count() * ConnTable::kSlotsPerBucket * 85, 2ull * (1u << 20) * 100);
}

TEST(ConnTableTest, RejectsCapacityOutOfRange) {
  EXPECT_EQ(ConnTable::Create(0).status().code(), ErrorCode::kInvalidParameter);
  EXPECT_EQ(ConnTable::Create(ConnTable::kMaxCapacity + 1).status().code(),
            ErrorCode::kInvalidParameter);
}

// ---------------------------------------------------------------------------------------------
// Insert, lookup, erase

TEST(ConnTableTest, FindsAConnectionFromBothSides) {
  ConnTable table = MakeTable(100);
  const ConnEntry conn = FnatConn(7);
  const InsertResult inserted = table.Insert(conn, 1000);
  ASSERT_EQ(inserted.status, InsertStatus::kInserted);
  EXPECT_EQ(table.size(), 1u);

  const ConnHit from_client = table.Lookup(conn.from_client, 1000);
  ASSERT_TRUE(from_client.hit());
  EXPECT_EQ(from_client.dir, FlowDir::kFromClient);
  EXPECT_EQ(from_client.index, inserted.index);
  EXPECT_EQ(from_client.entry->from_backend, conn.from_backend);
  EXPECT_EQ(from_client.entry->created_ms, 1000u);
  EXPECT_EQ(from_client.entry->last_seen_ms, 1000u);
  EXPECT_EQ(from_client.entry->backend, 7u % 4);

  const ConnHit from_backend = table.Lookup(conn.from_backend, 1000);
  ASSERT_TRUE(from_backend.hit());
  EXPECT_EQ(from_backend.dir, FlowDir::kFromBackend);
  EXPECT_EQ(from_backend.entry, from_client.entry);

  // Neither key reversed, nor another protocol, matches.
  EXPECT_FALSE(table.Lookup(conn.from_client.Reversed(), 1000).hit());
  EXPECT_FALSE(table.Lookup(conn.from_backend.Reversed(), 1000).hit());
  FlowKey udp = conn.from_client;
  udp.proto = kIpProtoUdp;
  EXPECT_FALSE(table.Lookup(udp, 1000).hit());
}

TEST(ConnTableTest, DnatIsIndexedByTheClientAddressOnTheBackendSide) {
  ConnTable table = MakeTable(10);
  const Endpoint4 client{Ip4("198.18.0.2"), 5555};
  const Endpoint4 backend{Ip4("198.18.1.12"), 80};
  ConnEntry conn = MakeDnatEntry(kIpProtoUdp, client, {Ip4("198.18.100.2"), 53}, backend);
  conn.timeout_ms = kTimeoutMs;
  ASSERT_EQ(table.Insert(conn, 0).status, InsertStatus::kInserted);
  const ConnHit hit = table.Lookup(FlowKey{backend.ip, client.ip, 80, 5555, kIpProtoUdp}, 0);
  ASSERT_TRUE(hit.hit());
  EXPECT_EQ(hit.dir, FlowDir::kFromBackend);
  EXPECT_EQ(hit.entry->mode, NatMode::kDnat);

  // Another VIP with the same backend and client port would be indistinguishable on the
  // backend side: refused.
  const ConnEntry twin = MakeDnatEntry(kIpProtoUdp, client, {Ip4("198.18.100.3"), 53}, backend);
  const InsertResult refused = table.Insert(twin, 0);
  EXPECT_EQ(refused.status, InsertStatus::kExists);
  EXPECT_EQ(refused.index, hit.index);
}

TEST(ConnTableTest, RefusesDuplicatesAndInvalidEntries) {
  ConnTable table = MakeTable(10);
  const InsertResult first = table.Insert(FnatConn(1), 0);
  ASSERT_EQ(first.status, InsertStatus::kInserted);
  const InsertResult again = table.Insert(FnatConn(1), 0);
  EXPECT_EQ(again.status, InsertStatus::kExists);
  EXPECT_EQ(again.index, first.index);

  ConnEntry no_proto = FnatConn(2);
  no_proto.from_client.proto = 0;
  EXPECT_EQ(table.Insert(no_proto, 0).status, InsertStatus::kInvalid);
  ConnEntry loop = FnatConn(3);
  loop.from_backend = loop.from_client;
  EXPECT_EQ(table.Insert(loop, 0).status, InsertStatus::kInvalid);
  EXPECT_EQ(table.size(), 1u);
}

TEST(ConnTableTest, EraseRemovesBothKeys) {
  ConnTable table = MakeTable(10);
  const ConnEntry conn = FnatConn(3);
  const std::uint32_t index = table.Insert(conn, 0).index;
  table.Erase(index);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_FALSE(table.Lookup(conn.from_client, 0).hit());
  EXPECT_FALSE(table.Lookup(conn.from_backend, 0).hit());
  EXPECT_FALSE(table.entry(index).in_use());
  table.Erase(index);  // already free: ignored
  table.Erase(9999);   // out of range: ignored
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.Insert(conn, 0).status, InsertStatus::kInserted);
  EXPECT_TRUE(table.Lookup(conn.from_backend, 0).hit());
}

TEST(ConnTableTest, FullTableRefusesThenRecovers) {
  ConnTable table = MakeTable(1);
  ASSERT_EQ(table.Insert(FnatConn(1), 0).status, InsertStatus::kInserted);
  EXPECT_EQ(table.Insert(FnatConn(2), 0).status, InsertStatus::kFull);

  ConnTable bigger = MakeTable(500);
  for (std::uint32_t i = 0; i < 500; ++i) {
    ASSERT_EQ(bigger.Insert(FnatConn(i), 0).status, InsertStatus::kInserted) << i;
  }
  EXPECT_EQ(bigger.Insert(FnatConn(500), 0).status, InsertStatus::kFull);
  EXPECT_EQ(bigger.size(), 500u);
  const ConnHit victim = bigger.Lookup(FnatConn(123).from_client, 0);
  ASSERT_TRUE(victim.hit());
  bigger.Erase(victim.index);
  EXPECT_EQ(bigger.Insert(FnatConn(500), 0).status, InsertStatus::kInserted);
  EXPECT_TRUE(bigger.Lookup(FnatConn(500).from_backend, 0).hit());
  EXPECT_FALSE(bigger.Lookup(FnatConn(123).from_backend, 0).hit());
}

TEST(ConnTableTest, MovedTableKeepsItsEntries) {
  ConnTable table = MakeTable(64);
  ASSERT_EQ(table.Insert(FnatConn(5), 0).status, InsertStatus::kInserted);
  ConnTable moved = std::move(table);
  EXPECT_TRUE(moved.Lookup(FnatConn(5).from_client, 0).hit());
  EXPECT_EQ(moved.size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Expiry

TEST(ConnTableTest, ExpiredEntryIsAMissThenFreed) {
  ConnTable table = MakeTable(16);
  ConnEntry conn = FnatConn(1);
  conn.timeout_ms = 1000;
  ASSERT_EQ(table.Insert(conn, 5000).status, InsertStatus::kInserted);
  EXPECT_TRUE(table.Lookup(conn.from_client, 5999).hit());
  EXPECT_FALSE(table.Lookup(conn.from_client, 6000).hit());
  EXPECT_FALSE(table.Lookup(conn.from_backend, 6000).hit());
  EXPECT_EQ(table.size(), 1u);  // still holding its port until freed

  std::vector<ConnEntry> freed;
  EXPECT_EQ(table.ExpireSome(6000, 16, [&](const ConnEntry& e) { freed.push_back(e); }), 1u);
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0].from_backend, conn.from_backend);  // so the caller can release the port
  EXPECT_EQ(table.size(), 0u);
}

TEST(ConnTableTest, TouchedEntryStaysAlive) {
  ConnTable table = MakeTable(16);
  ConnEntry conn = FnatConn(1);
  conn.timeout_ms = 1000;
  table.Insert(conn, 0);
  for (std::uint32_t now = 500; now <= 5000; now += 500) {
    const ConnHit hit = table.Lookup(conn.from_client, now);
    ASSERT_TRUE(hit.hit()) << now;
    hit.entry->last_seen_ms = now;
    EXPECT_EQ(table.ExpireSome(now, 16, [](const ConnEntry&) {}), 0u);
  }
}

TEST(ConnTableTest, ExpiryIsWrapSafe) {
  ConnTable table = MakeTable(16);
  ConnEntry conn = FnatConn(1);
  conn.timeout_ms = 2000;
  const std::uint32_t start = 0xffffffffu - 500;
  table.Insert(conn, start);
  EXPECT_TRUE(table.Lookup(conn.from_client, start + 1999).hit());  // wrapped to 1498
  EXPECT_EQ(table.ExpireSome(start + 1999, 16, [](const ConnEntry&) {}), 0u);
  EXPECT_FALSE(table.Lookup(conn.from_client, start + 2000).hit());
  EXPECT_EQ(table.ExpireSome(start + 2000, 16, [](const ConnEntry&) {}), 1u);
}

TEST(ConnTableTest, InsertReclaimsAnExpiredHolderOfItsKey) {
  ConnTable table = MakeTable(4);
  ConnEntry old_conn = FnatConn(1);
  old_conn.timeout_ms = 100;
  table.Insert(old_conn, 0);
  int reclaimed = 0;
  // Same client tuple, new backend side (a new connection after the old one timed out).
  ConnEntry new_conn = FnatConn(1);
  new_conn.from_backend.dst_port = 9;
  EXPECT_EQ(table.Insert(new_conn, 50, [&](const ConnEntry&) { ++reclaimed; }).status,
            InsertStatus::kExists);
  EXPECT_EQ(table.Insert(new_conn, 100, [&](const ConnEntry&) { ++reclaimed; }).status,
            InsertStatus::kInserted);
  EXPECT_EQ(reclaimed, 1);
  EXPECT_EQ(table.size(), 1u);
  EXPECT_FALSE(table.Lookup(old_conn.from_backend, 100).hit());
  EXPECT_TRUE(table.Lookup(new_conn.from_backend, 100).hit());
}

TEST(ConnTableTest, ExpireSomeCoversTheTableInBudgetSteps) {
  constexpr std::uint32_t kCapacity = 1000;
  ConnTable table = MakeTable(kCapacity);
  for (std::uint32_t i = 0; i < kCapacity; ++i) {
    ConnEntry conn = FnatConn(i);
    conn.timeout_ms = i % 2 == 0 ? 100 : 1'000'000;  // half expire
    ASSERT_EQ(table.Insert(conn, 0).status, InsertStatus::kInserted);
  }
  std::uint32_t freed = 0;
  for (int pass = 0; pass < 10; ++pass) {
    // Each pass examines 100 entries: 50 of them expired.
    EXPECT_EQ(table.ExpireSome(200, 100, [&](const ConnEntry&) { ++freed; }), 50u) << pass;
  }
  EXPECT_EQ(freed, 500u);
  EXPECT_EQ(table.size(), 500u);
  EXPECT_EQ(table.ExpireSome(200, 5000, [](const ConnEntry&) {}), 0u);
  for (std::uint32_t i = 0; i < kCapacity; ++i) {
    EXPECT_EQ(table.Lookup(FnatConn(i).from_backend, 200).hit(), i % 2 == 1) << i;
  }
}

TEST(ConnTableTest, ExpireSomeRoundsOnlyThePartEverUsed) {
  constexpr std::uint32_t kCapacity = 10'000;
  ConnTable table = MakeTable(kCapacity);
  for (std::uint32_t i = 0; i < 100; ++i) {
    ConnEntry conn = FnatConn(i);
    conn.timeout_ms = 100;
    ASSERT_EQ(table.Insert(conn, 0).status, InsertStatus::kInserted);
  }
  // Entries 0..99 are the only ones ever used: two calls of 50 free them all, and a third
  // call comes round to the front again instead of walking the 9,900 never-used entries.
  EXPECT_EQ(table.ExpireSome(200, 50, [](const ConnEntry&) {}), 50u);
  EXPECT_EQ(table.ExpireSome(200, 50, [](const ConnEntry&) {}), 50u);
  EXPECT_EQ(table.size(), 0u);
  ConnEntry again = FnatConn(7);
  again.timeout_ms = 100;
  ASSERT_EQ(table.Insert(again, 200).status, InsertStatus::kInserted);
  EXPECT_EQ(table.ExpireSome(250, 100, [](const ConnEntry&) {}), 0u);
  EXPECT_EQ(table.ExpireSome(400, 100, [](const ConnEntry&) {}), 1u);
  EXPECT_EQ(table.size(), 0u);
}

TEST(ConnTableTest, EraseIfSomeSweepsIncrementally) {
  constexpr std::uint32_t kCapacity = 300;
  ConnTable table = MakeTable(kCapacity);
  for (std::uint32_t i = 0; i < 250; ++i) {
    table.Insert(FnatConn(i), 0);
  }
  SweepCursor cursor;
  std::set<std::uint32_t> erased_backends;
  std::uint32_t erased = 0;
  int calls = 0;
  while (!cursor.done) {
    erased += table.EraseIfSome(
        cursor, 64, [](const ConnEntry& e) { return e.backend == 2; },
        [&](const ConnEntry& e) { erased_backends.insert(e.backend); });
    ++calls;
  }
  EXPECT_EQ(calls, 4);  // ceil(250 / 64): the sweep stops at the high-water mark, not at 300
  std::uint32_t want = 0;
  for (std::uint32_t i = 0; i < 250; ++i) {
    want += i % 4 == 2 ? 1 : 0;
  }
  EXPECT_EQ(erased, want);
  EXPECT_EQ(erased_backends, std::set<std::uint32_t>{2});
  for (std::uint32_t i = 0; i < 250; ++i) {
    EXPECT_EQ(table.Lookup(FnatConn(i).from_client, 0).hit(), i % 4 != 2) << i;
  }
}

TEST(ConnTableTest, VisitSomeSeesEveryLiveEntryOnce) {
  ConnTable table = MakeTable(200);
  for (std::uint32_t i = 0; i < 150; ++i) {
    table.Insert(FnatConn(i), 0);
  }
  for (std::uint32_t i = 0; i < 150; i += 3) {
    table.Erase(table.Lookup(FnatConn(i).from_client, 0).index);
  }
  SweepCursor cursor;
  std::multiset<std::uint16_t> seen;
  while (!cursor.done) {
    table.VisitSome(cursor, 7, [&](std::uint32_t index, const ConnEntry& e) {
      EXPECT_EQ(&table.entry(index), &e);
      seen.insert(e.client().port);
    });
  }
  EXPECT_EQ(seen.size(), 100u);
  for (std::uint32_t i = 0; i < 150; ++i) {
    EXPECT_EQ(seen.count(static_cast<std::uint16_t>(i)), i % 3 == 0 ? 0u : 1u) << i;
  }
}

// ---------------------------------------------------------------------------------------------
// Bulk and scale

TEST(ConnTableTest, BulkLookupEqualsScalar) {
  ConnTable table = MakeTable(2000);
  for (std::uint32_t i = 0; i < 1500; ++i) {
    ConnEntry conn = FnatConn(i);
    conn.timeout_ms = i % 10 == 0 ? 50 : kTimeoutMs;  // some expire by t=100
    table.Insert(conn, 0);
  }
  std::mt19937 rng(7);
  std::vector<FlowKey> keys;
  for (int i = 0; i < 997; ++i) {                   // not a multiple of the chunk size
    const ConnEntry conn = FnatConn(rng() % 3000);  // half of these were never inserted
    keys.push_back(rng() % 2 == 0 ? conn.from_client : conn.from_backend);
  }
  std::vector<ConnHit> bulk(keys.size());
  table.LookupBulk(keys, bulk, 100);
  int hits = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const ConnHit scalar = table.Lookup(keys[i], 100);
    ASSERT_EQ(bulk[i].entry, scalar.entry) << i;
    if (scalar.hit()) {
      EXPECT_EQ(bulk[i].dir, scalar.dir);
      EXPECT_EQ(bulk[i].index, scalar.index);
      EXPECT_EQ(scalar.entry->key(scalar.dir), keys[i]);
      ++hits;
    }
  }
  EXPECT_GT(hits, 300);
  EXPECT_LT(hits, 600);
}

// Capacity 3481 gets 1024 buckets: 85% slot occupancy when full, which needs displacements.
TEST(ConnTableTest, ChurnAtFullLoadMatchesAModel) {
  constexpr std::uint32_t kCapacity = 3481;
  ConnTable table = MakeTable(kCapacity);
  ASSERT_EQ(table.bucket_count(), 1024u);
  std::mt19937 rng(11);
  std::unordered_map<std::uint32_t, std::uint32_t> model;  // connection number -> index
  std::vector<std::uint32_t> live;
  for (int op = 0; op < 60000; ++op) {
    const bool insert = live.size() < kCapacity &&
                        (live.empty() || rng() % 8 != 0 || live.size() < kCapacity * 9 / 10);
    if (insert) {
      const std::uint32_t id = rng() % 1'000'000;
      const InsertResult r = table.Insert(FnatConn(id), 0);
      if (model.count(id) != 0) {
        ASSERT_EQ(r.status, InsertStatus::kExists);
        continue;
      }
      ASSERT_EQ(r.status, InsertStatus::kInserted) << "op " << op << " size " << live.size();
      model[id] = r.index;
      live.push_back(id);
    } else {
      const std::size_t pick = rng() % live.size();
      const std::uint32_t id = live[pick];
      table.Erase(model[id]);
      model.erase(id);
      live[pick] = live.back();
      live.pop_back();
    }
  }
  EXPECT_GT(table.stats().cuckoo_displacements, 0u);
  EXPECT_EQ(table.stats().index_full, 0u);
  EXPECT_EQ(table.size(), live.size());
  for (const auto& [id, index] : model) {
    const ConnEntry conn = FnatConn(id);
    const ConnHit c = table.Lookup(conn.from_client, 0);
    const ConnHit b = table.Lookup(conn.from_backend, 0);
    ASSERT_TRUE(c.hit() && b.hit()) << id;
    EXPECT_EQ(c.index, index);
    EXPECT_EQ(b.index, index);
  }
}

TEST(ConnTableTest, MillionEntries) {
  constexpr std::uint32_t kCapacity = 1u << 20;
  ConnTable table = MakeTable(kCapacity);
  for (std::uint32_t i = 0; i < kCapacity; ++i) {
    ASSERT_EQ(table.Insert(FnatConn(i), 0).status, InsertStatus::kInserted) << i;
  }
  EXPECT_EQ(table.size(), kCapacity);
  EXPECT_EQ(table.Insert(FnatConn(kCapacity), 0).status, InsertStatus::kFull);
  std::vector<FlowKey> keys;
  std::vector<ConnHit> hits(ConnTable::kBulkChunk);
  std::uint32_t found = 0;
  for (std::uint32_t i = 0; i < kCapacity; i += ConnTable::kBulkChunk) {
    keys.clear();
    for (std::uint32_t j = i; j < i + ConnTable::kBulkChunk; ++j) {
      keys.push_back(j % 2 == 0 ? FnatConn(j).from_client : FnatConn(j).from_backend);
    }
    table.LookupBulk(keys, hits, 0);
    for (std::size_t j = 0; j < keys.size(); ++j) {
      found += hits[j].hit() && hits[j].entry->key(hits[j].dir) == keys[j] ? 1 : 0;
    }
  }
  EXPECT_EQ(found, kCapacity);
}

// ---------------------------------------------------------------------------------------------
// The IPv6 table: the same code over ConnEntry6 and FlowKey6.

// IPv6 connection number i: client 2001:db8::/64 hosts, VIP 2001:db8:100::10, fnat local
// addresses 2001:db8:1::2.., backends 2001:db8:1::11..14. Addresses differ only in their
// low bits, as a /64's hosts do, so the hash must take all 40 key bytes in.
ConnEntry6 FnatConn6(std::uint32_t i, std::uint8_t proto = kIpProtoTcp) {
  constexpr std::uint64_t kDb8 = 0x2001'0db8'0000'0000;
  ConnEntry6 e;
  e.from_client = FlowKey6{Ip6{kDb8, 2 + (i >> 16)}, Ip6{kDb8 | 0x100'0000, 0x10},
                           static_cast<std::uint16_t>(i), 80, proto};
  e.from_backend = FlowKey6{Ip6{kDb8 | 0x1'0000, 0x11 + i % 4}, Ip6{kDb8 | 0x1'0000, 2 + (i >> 16)},
                            8080, static_cast<std::uint16_t>(i), proto};
  e.backend = i % 4;
  e.timeout_ms = kTimeoutMs;
  return e;
}

ConnTable6 MakeTable6(std::uint32_t capacity) {
  Result<ConnTable6> table = ConnTable6::Create(capacity);
  EXPECT_TRUE(table.ok()) << table.status().ToString();
  return std::move(table).value();
}

TEST(ConnTable6Test, EntryIsTwoCacheLinesAndCostsItsSize) {
  EXPECT_EQ(sizeof(ConnEntry6), 128u);
  // 128 bytes of entry, the same index and free stack as IPv4.
  EXPECT_LT(ConnTable6::MemoryBytes(1u << 20) - ConnTable::MemoryBytes(1u << 20),
            std::size_t{65} << 20);
}

TEST(ConnTable6Test, FindsAConnectionFromBothSidesAndForgetsIt) {
  ConnTable6 table = MakeTable6(64);
  const ConnEntry6 conn = FnatConn6(7);
  const InsertResult r = table.Insert(conn, 1000);
  ASSERT_EQ(r.status, InsertStatus::kInserted);
  const ConnHit6 c = table.Lookup(conn.from_client, 1000);
  ASSERT_TRUE(c.hit());
  EXPECT_EQ(c.dir, FlowDir::kFromClient);
  EXPECT_EQ(c.index, r.index);
  const ConnHit6 b = table.Lookup(conn.from_backend, 1000);
  ASSERT_TRUE(b.hit());
  EXPECT_EQ(b.dir, FlowDir::kFromBackend);
  EXPECT_EQ(b.entry->created_ms, 1000u);
  // A key that differs in one address bit, or only in the port, is another connection.
  FlowKey6 other = conn.from_client;
  other.src_ip.hi ^= 1;
  EXPECT_FALSE(table.Lookup(other, 1000).hit());
  EXPECT_EQ(table.Insert(conn, 1000).status, InsertStatus::kExists);
  table.Erase(r.index);
  EXPECT_FALSE(table.Lookup(conn.from_client, 1000).hit());
  EXPECT_FALSE(table.Lookup(conn.from_backend, 1000).hit());
  EXPECT_EQ(table.size(), 0u);
}

TEST(ConnTable6Test, ExpiryAndBulkLookup) {
  ConnTable6 table = MakeTable6(4000);
  for (std::uint32_t i = 0; i < 3000; ++i) {
    ConnEntry6 conn = FnatConn6(i);
    conn.timeout_ms = i % 10 == 0 ? 50 : kTimeoutMs;
    ASSERT_EQ(table.Insert(conn, 0).status, InsertStatus::kInserted) << i;
  }
  std::vector<FlowKey6> keys;
  for (std::uint32_t i = 0; i < 200; ++i) {
    const ConnEntry6 conn = FnatConn6(i * 29 % 6000);  // half never inserted
    keys.push_back(i % 2 == 0 ? conn.from_client : conn.from_backend);
  }
  std::vector<ConnHit6> bulk(keys.size());
  table.LookupBulk(keys, bulk, 100);
  int hits = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const ConnHit6 scalar = table.Lookup(keys[i], 100);
    ASSERT_EQ(bulk[i].entry, scalar.entry) << i;
    hits += scalar.hit() ? 1 : 0;
  }
  EXPECT_GT(hits, 50);
  EXPECT_EQ(table.ExpireSome(100, 4000, [](const ConnEntry6&) {}), 300u);
  EXPECT_EQ(table.size(), 2700u);
}

// A /64 of clients on one port each: keys differ only in the low 16 bits of the source, yet
// the table fills without running out of index room.
TEST(ConnTable6Test, ClientsOfOneSubnetFillTheTable) {
  constexpr std::uint32_t kCapacity = 1u << 16;
  ConnTable6 table = MakeTable6(kCapacity);
  for (std::uint32_t i = 0; i < kCapacity; ++i) {
    ASSERT_EQ(table.Insert(FnatConn6(i), 0).status, InsertStatus::kInserted) << i;
  }
  EXPECT_EQ(table.stats().index_full, 0u);
  for (std::uint32_t i = 0; i < kCapacity; i += 97) {
    EXPECT_TRUE(table.Lookup(FnatConn6(i).from_backend, 0).hit()) << i;
  }
}

}  // namespace
}  // namespace fulcrum::nat
