// Micro-benchmarks of the packet core: connection table at 1K, 1M and 10M connections, Maglev
// table build and lookup, and the per-packet parse, rewrite and checksum work. Run:
// build-x/tests/bench/bench_nat
// ("per_op" is the CPU time of one lookup, insert, packet or connection lifecycle).
//
// Tables are built once per size and shared by the benchmarks (10M takes ~1 GB and a few
// seconds). Keys are drawn at random over the whole table so that, beyond the caches' size,
// every lookup pays for its memory accesses as a worker's would.
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "nat/checksum.h"
#include "nat/conn_table.h"
#include "nat/flow_hash.h"
#include "nat/maglev.h"
#include "nat/packet.h"
#include "nat/port_pool.h"
#include "nat/rewrite.h"
#include "nat/tcp_state.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::nat {
namespace {

using testing::Bytes;
using testing::Ip4;
using testing::PacketBuilder;

constexpr std::uint32_t kTimeoutMs = 900'000;
constexpr std::size_t kBurst = 32;
constexpr std::size_t kKeyPool = 1 << 20;

ConnEntry Conn(std::uint32_t i) {
  const Endpoint4 client{Ip4("198.18.0.0") + (i >> 16), static_cast<std::uint16_t>(i)};
  const Endpoint4 vip{Ip4("198.18.100.1"), 80};
  const Endpoint4 local{Ip4("198.18.1.2") + (i >> 16), static_cast<std::uint16_t>(i)};
  const Endpoint4 backend{Ip4("198.18.1.11") + i % 4, 8080};
  ConnEntry e = MakeFnatEntry(kIpProtoTcp, client, vip, local, backend);
  e.timeout_ms = kTimeoutMs;
  e.tcp_state = TcpState::kEstablished;
  return e;
}

void SetTimePerOp(benchmark::State& state, std::size_t ops_per_iteration) {
  state.counters["per_op"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(ops_per_iteration),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// A table holding `size` connections (with room for a few more), and random keys of them
// (both directions).
struct Fixture {
  ConnTable table;
  std::vector<FlowKey> keys;
};

Fixture& FullTable(std::uint32_t size) {
  static std::map<std::uint32_t, std::unique_ptr<Fixture>> fixtures;
  auto& slot = fixtures[size];
  if (!slot) {
    Result<ConnTable> table = ConnTable::Create(size + 4096);
    if (!table.ok()) {
      std::abort();
    }
    slot = std::make_unique<Fixture>(Fixture{std::move(table).value(), {}});
    for (std::uint32_t i = 0; i < size; ++i) {
      (void)slot->table.Insert(Conn(i), 0);
    }
    std::mt19937 rng(size);
    slot->keys.reserve(kKeyPool);
    for (std::size_t i = 0; i < kKeyPool; ++i) {
      const ConnEntry e = Conn(rng() % size);
      slot->keys.push_back(rng() % 2 == 0 ? e.from_client : e.from_backend);
    }
  }
  return *slot;
}

void BM_ConnLookup(benchmark::State& state) {
  Fixture& f = FullTable(static_cast<std::uint32_t>(state.range(0)));
  std::size_t i = 0;
  for (auto _ : state) {
    const ConnHit hit = f.table.Lookup(f.keys[i], 1);
    benchmark::DoNotOptimize(hit);
    i = (i + 1) & (kKeyPool - 1);
  }
  SetTimePerOp(state, 1);
}

void BM_ConnLookupBulk(benchmark::State& state) {
  Fixture& f = FullTable(static_cast<std::uint32_t>(state.range(0)));
  std::array<ConnHit, kBurst> hits;
  std::size_t i = 0;
  for (auto _ : state) {
    f.table.LookupBulk(std::span<const FlowKey>(&f.keys[i], kBurst), hits, 1);
    benchmark::DoNotOptimize(hits.data());
    i = (i + kBurst) & (kKeyPool - 1);
  }
  SetTimePerOp(state, kBurst);
}

// Steady churn in a table kept 90% full: each op erases the oldest connection and inserts a
// new one.
void BM_ConnInsertErase(benchmark::State& state) {
  const auto capacity = static_cast<std::uint32_t>(state.range(0));
  Result<ConnTable> created = ConnTable::Create(capacity);
  ConnTable& table = created.value();
  const std::uint32_t live = capacity / 10 * 9;
  std::vector<std::uint32_t> ring(live);
  for (std::uint32_t i = 0; i < live; ++i) {
    ring[i] = table.Insert(Conn(i), 0).index;
  }
  std::uint32_t next = live;
  std::uint32_t oldest = 0;
  for (auto _ : state) {
    table.Erase(ring[oldest]);
    const InsertResult r = table.Insert(Conn(next % (1u << 24)), 0);
    ring[oldest] = r.index;
    oldest = oldest + 1 == live ? 0 : oldest + 1;
    ++next;
  }
  if (table.stats().index_full != 0) {
    state.SkipWithError("index full");
  }
  SetTimePerOp(state, 1);
}

// The cost of examining entries for expiry when none has expired (the common case).
void BM_ConnExpireScan(benchmark::State& state) {
  Fixture& f = FullTable(static_cast<std::uint32_t>(state.range(0)));
  constexpr std::uint32_t kBudget = 256;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.table.ExpireSome(1, kBudget, [](const ConnEntry&) {}));
  }
  SetTimePerOp(state, kBudget);
}

// Freeing expired entries (both index slots each); the table is refilled when empty.
void BM_ConnExpireFree(benchmark::State& state) {
  const auto capacity = static_cast<std::uint32_t>(state.range(0));
  Result<ConnTable> created = ConnTable::Create(capacity);
  ConnTable& table = created.value();
  constexpr std::uint32_t kBudget = 256;
  std::uint64_t freed = 0;
  for (auto _ : state) {
    if (table.size() == 0) {
      state.PauseTiming();
      for (std::uint32_t i = 0; i < capacity; ++i) {
        ConnEntry e = Conn(i);
        e.timeout_ms = 10;
        (void)table.Insert(e, 0);
      }
      state.ResumeTiming();
    }
    freed += table.ExpireSome(100, kBudget, [](const ConnEntry&) {});
  }
  state.counters["per_op"] = benchmark::Counter(
      static_cast<double>(freed), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// One TCP connection's whole life through the table, as a worker handles it: miss, local port,
// insert, 7 packets (handshake, a data segment, both FINs, last ACK) each looked up and moved
// through the state machine, then expiry (erase) and port release, in a table holding
// range(0) other connections.
void BM_TcpLifecycle(benchmark::State& state) {
  ConnTable& table = FullTable(static_cast<std::uint32_t>(state.range(0))).table;
  const std::vector<std::uint32_t> locals = {Ip4("198.18.1.2"), Ip4("198.18.1.3"),
                                             Ip4("198.18.1.4"), Ip4("198.18.1.5")};
  PortPool pool = std::move(PortPool::Create(locals, 0, 1)).value();
  struct Step {
    FlowDir dir;
    std::uint8_t flags;
  };
  constexpr std::array<Step, 7> kSteps = {{{FlowDir::kFromClient, kTcpSyn},
                                           {FlowDir::kFromBackend, kTcpSyn | kTcpAck},
                                           {FlowDir::kFromClient, kTcpAck},
                                           {FlowDir::kFromClient, kTcpAck | kTcpPsh},
                                           {FlowDir::kFromClient, kTcpFin | kTcpAck},
                                           {FlowDir::kFromBackend, kTcpFin | kTcpAck},
                                           {FlowDir::kFromClient, kTcpAck}}};
  std::uint32_t n = 0;
  const Endpoint4 vip{Ip4("198.18.100.9"), 443};
  const Endpoint4 backend{Ip4("198.18.1.12"), 443};
  for (auto _ : state) {
    const Endpoint4 client{Ip4("198.18.50.0") + (n >> 16), static_cast<std::uint16_t>(n)};
    ++n;
    const FlowKey syn_key{client.ip, vip.ip, client.port, vip.port, kIpProtoTcp};
    if (table.Lookup(syn_key, n).hit()) {
      state.SkipWithError("unexpected hit");
      break;
    }
    const std::optional<Endpoint4> local = pool.Allocate();
    ConnEntry e = MakeFnatEntry(kIpProtoTcp, client, vip, *local, backend);
    e.timeout_ms = kTcpSynTimeoutMs;
    const InsertResult inserted = table.Insert(e, n);
    if (inserted.status != InsertStatus::kInserted) {
      state.SkipWithError("insert failed");
      break;
    }
    for (const Step& step : kSteps) {
      const FlowKey key = step.dir == FlowDir::kFromClient ? e.from_client : e.from_backend;
      const ConnHit hit = table.Lookup(key, n);
      hit.entry->tcp_state = TcpNextState(hit.entry->tcp_state, hit.dir, step.flags);
      hit.entry->timeout_ms = TcpTimeoutMs(hit.entry->tcp_state, kTimeoutMs);
      hit.entry->last_seen_ms = n;
    }
    table.Erase(inserted.index);
    pool.Release(*local);
  }
  SetTimePerOp(state, 1);
}

Bytes TcpFrame(const FlowKey& key) {
  return PacketBuilder()
      .Ipv4(key.src_ip, key.dst_ip)
      .Tcp(key.src_port, key.dst_port, kTcpAck)
      .PadTo(60)
      .Build();
}

void BM_Parse(benchmark::State& state) {
  const Bytes frame = TcpFrame(Conn(1).from_client);
  for (auto _ : state) {
    ParsedPacket p = Parse(std::span<const std::uint8_t>(frame));
    benchmark::DoNotOptimize(p);
  }
  SetTimePerOp(state, 1);
}

void BM_ParseRewrite(benchmark::State& state) {
  const ConnEntry conn = Conn(1);
  const Bytes original = TcpFrame(conn.from_client);
  Bytes frame = original;
  for (auto _ : state) {
    std::memcpy(frame.data(), original.data(), original.size());  // a fresh mbuf
    const ParsedPacket p = Parse(std::span<const std::uint8_t>(frame));
    RewriteToBackend(frame, p, conn);
    benchmark::DoNotOptimize(frame.data());
  }
  SetTimePerOp(state, 1);
}

void BM_InternetChecksum(benchmark::State& state) {
  Bytes data(static_cast<std::size_t>(state.range(0)));
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<std::uint8_t>(i * 7);
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(InternetChecksum(data));
  }
  SetTimePerOp(state, 1);
}

// The established-flow packet path minus I/O, per packet: parse a burst, look it up in bulk,
// update state and timestamps, rewrite. Frames come from random connections of the table.
void BM_EstablishedBurst(benchmark::State& state) {
  Fixture& f = FullTable(static_cast<std::uint32_t>(state.range(0)));
  // Received frames sit in a pool of 64-byte buffers, as in an mbuf pool.
  constexpr std::size_t kFrames = 1 << 16;
  constexpr std::size_t kStride = 64;
  std::vector<std::uint8_t> pool(kFrames * kStride);
  std::size_t frame_len = 0;
  for (std::size_t i = 0; i < kFrames; ++i) {
    const Bytes frame = TcpFrame(f.keys[i * 7 % kKeyPool]);
    frame_len = frame.size();
    std::memcpy(&pool[i * kStride], frame.data(), frame.size());
  }
  alignas(64) std::array<std::array<std::uint8_t, kStride>, kBurst> burst;
  std::array<ParsedPacket, kBurst> parsed;
  std::array<FlowKey, kBurst> keys;
  std::array<ConnHit, kBurst> hits;
  std::size_t next = 0;
  std::uint64_t missed = 0;
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBurst; ++i) {
      std::memcpy(burst[i].data(), &pool[next * kStride], kStride);  // rx
      next = (next + 1) & (kFrames - 1);
      parsed[i] = Parse(std::span<const std::uint8_t>(burst[i].data(), frame_len));
      keys[i] = FlowKeyOf(parsed[i]);
    }
    f.table.LookupBulk(keys, hits, 1);
    for (std::size_t i = 0; i < kBurst; ++i) {
      if (!hits[i].hit()) {
        ++missed;
        continue;
      }
      ConnEntry& e = *hits[i].entry;
      e.tcp_state = TcpNextState(e.tcp_state, hits[i].dir, parsed[i].tcp_flags);
      e.last_seen_ms = 1;
      RewriteForConn(std::span<std::uint8_t>(burst[i].data(), frame_len), parsed[i], e,
                     hits[i].dir);
    }
    benchmark::DoNotOptimize(burst.data());
  }
  if (missed != 0) {
    state.SkipWithError("lookup missed");
  }
  SetTimePerOp(state, kBurst);
}

std::vector<MaglevBackend> MaglevBackends(std::size_t count) {
  std::vector<MaglevBackend> backends;
  for (std::size_t i = 0; i < count; ++i) {
    backends.push_back(
        {.key = std::uint64_t{Ip4("198.18.1.0") + static_cast<std::uint32_t>(i)} << 16 | 8080,
         .weight = 1});
  }
  return backends;
}

// One build of the 65,537-slot table for state.range(0) backends of equal weight.
void BM_MaglevBuild(benchmark::State& state) {
  const std::vector<MaglevBackend> backends =
      MaglevBackends(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    Result<MaglevTable> table = MaglevTable::Build(backends);
    if (!table.ok()) {
      state.SkipWithError("maglev build failed");
      return;
    }
    benchmark::DoNotOptimize(table.value().slots().data());
  }
  SetTimePerOp(state, 1);
}

// A backend pick per packet as the stateless path makes it: flow hash, then the table slot.
void BM_MaglevLookup(benchmark::State& state) {
  Result<MaglevTable> table = MaglevTable::Build(MaglevBackends(100));
  if (!table.ok()) {
    state.SkipWithError("maglev build failed");
    return;
  }
  std::mt19937 rng(65537);
  std::vector<FlowKey> flows;
  for (std::size_t i = 0; i < 4096; ++i) {
    flows.push_back(Conn(static_cast<std::uint32_t>(rng())).from_client);
  }
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(table.value().Lookup(HashFlow(flows[i++ & 4095])));
  }
  SetTimePerOp(state, 1);
}

#define FULCRUM_TABLE_SIZES Arg(1'000)->Arg(1'000'000)->Arg(10'000'000)

BENCHMARK(BM_ConnLookup)->FULCRUM_TABLE_SIZES;
BENCHMARK(BM_ConnLookupBulk)->FULCRUM_TABLE_SIZES;
BENCHMARK(BM_ConnInsertErase)->FULCRUM_TABLE_SIZES;
BENCHMARK(BM_ConnExpireScan)->FULCRUM_TABLE_SIZES;
BENCHMARK(BM_ConnExpireFree)->Arg(1'000)->Arg(1'000'000);
BENCHMARK(BM_TcpLifecycle)->FULCRUM_TABLE_SIZES;
BENCHMARK(BM_EstablishedBurst)->FULCRUM_TABLE_SIZES;
BENCHMARK(BM_MaglevBuild)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MaglevLookup);
BENCHMARK(BM_Parse);
BENCHMARK(BM_ParseRewrite);
BENCHMARK(BM_InternetChecksum)->Arg(20)->Arg(64)->Arg(1500);

}  // namespace
}  // namespace fulcrum::nat

BENCHMARK_MAIN();
