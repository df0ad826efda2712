#include "nat/scheduler.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "nat/flow_hash.h"

namespace fulcrum::nat {
namespace {

constexpr SchedulerKind kAllKinds[] = {SchedulerKind::kWrr, SchedulerKind::kRr, SchedulerKind::kWlc,
                                       SchedulerKind::kSh, SchedulerKind::kMaglev};

// 198.18.1.11 + i, port 80: the test bed's backends.
Endpoint4 BackendAddr(std::uint32_t i) { return {0xc612010bU + i, 80}; }

BackendSpec Spec(std::uint32_t i, std::uint32_t weight, Health health = Health::kUp) {
  return {BackendAddr(i), weight, health};
}

// Client i of 198.18.0.0/16 to VIP 198.18.100.1:80.
FlowKey Flow(std::uint32_t client, std::uint16_t src_port = 40000) {
  return {0xc6120000U + client, 0xc6126401U, src_port, 80, 6};
}

BackendSet MakeSet(const std::vector<BackendSpec>& specs, SchedulerKind kind,
                   std::size_t wrr_direct_max = 32) {
  BackendSetOptions options;
  options.scheduler = kind;
  options.wrr_direct_max = wrr_direct_max;
  Result<BackendSet> set = BackendSet::Create(specs, options);
  EXPECT_TRUE(set.ok()) << set.status().ToString();
  return set.ok() ? std::move(set).value() : BackendSet();
}

// Picks `n` times with a distinct flow each time; returns the count per backend index.
std::map<std::uint16_t, std::size_t> PickCounts(SchedulerState& state, std::size_t n) {
  std::map<std::uint16_t, std::size_t> counts;
  for (std::size_t i = 0; i < n; ++i) {
    ++counts[state.Pick(Flow(static_cast<std::uint32_t>(i), static_cast<std::uint16_t>(i)))];
  }
  return counts;
}

std::uint16_t IndexOf(const BackendSet& set, std::uint32_t i) {
  std::optional<std::uint16_t> index = set.Find(BackendAddr(i));
  EXPECT_TRUE(index.has_value()) << i;
  return index.value_or(kNoBackend);
}

TEST(FlowHashTest, KnownAnswerPinsTheCrossNodeContract) {
  // Every node of a cluster must hash a flow the same way, across builds and CPUs: a change
  // here remaps every flow at upgrade, so it has to be deliberate. The expected values come
  // from an independent Python evaluation of the same formula (fmix64 over the packed tuple).
  static_assert(Mix64(0) == 0);
  static_assert(Mix64(1) != 1);
  EXPECT_EQ(HashFlow(Flow(1)), HashFlow(Flow(1)));
  EXPECT_EQ(HashFlow(FlowKey{0xc6120002U, 0xc6126401U, 40000, 80, 6}), 0x8644dbd3U);
  EXPECT_EQ(HashClient(0xc6120002U), 0x8632d28eU);
  // IPv6: 2001:db8::2 port 40000 -> 2001:db8:100::10 port 80, tcp.
  const Ip6 client{0x2001'0db8'0000'0000, 2};
  const Ip6 vip{0x2001'0db8'0100'0000, 0x10};
  EXPECT_EQ(HashFlow(FlowKey6{client, vip, 40000, 80, 6}), 0x63814009U);
  EXPECT_EQ(HashClient(client), 0xdd7bf434U);
}

TEST(FlowHashTest, EveryHalfOfAnIpv6AddressMatters) {
  const FlowKey6 base{Ip6{0x2001'0db8'0000'0000, 2}, Ip6{0x2001'0db8'0100'0000, 0x10}, 40000, 80,
                      6};
  const std::uint32_t h = HashFlow(base);
  for (int field = 0; field < 4; ++field) {
    FlowKey6 f = base;
    std::uint64_t* half = field == 0   ? &f.src_ip.hi
                          : field == 1 ? &f.src_ip.lo
                          : field == 2 ? &f.dst_ip.hi
                                       : &f.dst_ip.lo;
    *half ^= 1;
    EXPECT_NE(HashFlow(f), h) << field;
  }
  EXPECT_NE(HashClient(Ip6{base.src_ip.hi ^ 1, base.src_ip.lo}), HashClient(base.src_ip));
  EXPECT_NE(HashClient(Ip6{base.src_ip.hi, base.src_ip.lo ^ 1}), HashClient(base.src_ip));
}

TEST(FlowHashTest, EveryFieldAndTheSeedMatter) {
  const FlowKey base = Flow(2);
  const std::uint32_t h = HashFlow(base);
  FlowKey f = base;
  f.src_ip ^= 1;
  EXPECT_NE(HashFlow(f), h);
  f = base;
  f.dst_ip ^= 1;
  EXPECT_NE(HashFlow(f), h);
  f = base;
  f.src_port ^= 1;
  EXPECT_NE(HashFlow(f), h);
  f = base;
  f.dst_port ^= 1;
  EXPECT_NE(HashFlow(f), h);
  f = base;
  f.proto = 17;
  EXPECT_NE(HashFlow(f), h);
  EXPECT_NE(HashFlow(base, kFlowHashSeed + 1), h);
  EXPECT_NE(HashClient(base.src_ip), HashClient(base.src_ip ^ 1));
}

// Sequential source ports (what clients generate) must spread evenly over the high bits,
// which is what Maglev's multiply-shift reads.
TEST(FlowHashTest, SequentialPortsSpreadEvenly) {
  constexpr std::size_t kBuckets = 64;
  constexpr std::size_t kFlows = 64000;
  std::vector<std::size_t> buckets(kBuckets, 0);
  for (std::size_t i = 0; i < kFlows; ++i) {
    ++buckets[HashFlow(Flow(2, static_cast<std::uint16_t>(1024 + i))) >> 26];
  }
  const double expected = static_cast<double>(kFlows) / kBuckets;
  double chi2 = 0;
  for (std::size_t count : buckets) {
    chi2 += (count - expected) * (count - expected) / expected;
  }
  // 63 degrees of freedom: p(chi2 > 120) < 1e-5.
  EXPECT_LT(chi2, 120.0);
}

TEST(SchedulerTest, KindNamesRoundTrip) {
  for (SchedulerKind kind : kAllKinds) {
    EXPECT_EQ(SchedulerKindFromName(SchedulerKindName(kind)), kind);
  }
  EXPECT_EQ(SchedulerKindName(SchedulerKind::kWlc), "wlc");
  EXPECT_FALSE(SchedulerKindFromName("lc").has_value());
  EXPECT_FALSE(SchedulerKindFromName("").has_value());
}

TEST(BackendSetTest, RejectsInvalidGroups) {
  Result<BackendSet> heavy = BackendSet::Create(std::vector{Spec(0, 10), Spec(1, 101)});
  ASSERT_FALSE(heavy.ok());
  EXPECT_EQ(heavy.status().code(), ErrorCode::kInvalidParameter);
  EXPECT_NE(heavy.status().message().find("198.18.1.12:80"), std::string::npos);
  EXPECT_NE(heavy.status().message().find("101"), std::string::npos);

  Result<BackendSet> twice = BackendSet::Create(std::vector{Spec(3, 10), Spec(0, 5), Spec(3, 7)});
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.status().code(), ErrorCode::kAlreadyExists);
  EXPECT_NE(twice.status().message().find("198.18.1.14:80"), std::string::npos);

  std::vector<BackendSpec> many;
  for (std::uint32_t i = 0; i <= BackendSet::kMaxBackends; ++i) {
    many.push_back(Spec(i, 10));
  }
  EXPECT_EQ(BackendSet::Create(many).status().code(), ErrorCode::kLimitExceeded);

  BackendSetOptions options;
  options.maglev_size = 65536;
  EXPECT_EQ(BackendSet::Create(std::vector{Spec(0, 10)}, options).status().code(),
            ErrorCode::kInvalidParameter);
}

TEST(BackendSetTest, SortsByEndpointAndFinds) {
  const BackendSet set = MakeSet({Spec(5, 10), Spec(1, 20), Spec(3, 30)}, SchedulerKind::kRr);
  ASSERT_EQ(set.backends().size(), 3U);
  EXPECT_EQ(set.backends()[0].endpoint, BackendAddr(1));
  EXPECT_EQ(set.backends()[1].endpoint, BackendAddr(3));
  EXPECT_EQ(set.backends()[2].endpoint, BackendAddr(5));
  EXPECT_EQ(set.backends()[1].weight, 30U);
  EXPECT_EQ(set.Find(BackendAddr(5)), 2);
  EXPECT_FALSE(set.Find(BackendAddr(4)).has_value());
  EXPECT_FALSE(set.Find(Endpoint4{BackendAddr(1).ip, 81}).has_value());
}

// A set may hold both families (an IPv6 VIP serves IPv6 backends and, by NAT64, IPv4 ones):
// IPv4 endpoints sort first, as their IPv4-mapped addresses, and IPv4 Maglev keys are those
// of a set without IPv6, so IPv4-only tables do not change when IPv6 exists.
TEST(BackendSetTest, HoldsBothFamilies) {
  const Endpoint6 v6{{0x20010db800010000ULL, 0x11}, 80};  // [2001:db8:1::11]:80
  const BackendSet mixed =
      MakeSet({{v6, 10, Health::kUp}, Spec(1, 10), {Endpoint6{v6.ip, 81}, 10, Health::kUp}},
              SchedulerKind::kMaglev);
  ASSERT_EQ(mixed.backends().size(), 3U);
  EXPECT_TRUE(mixed.backends()[0].endpoint.is_v4());
  EXPECT_EQ(mixed.backends()[0].endpoint.v4(), BackendAddr(1));
  EXPECT_EQ(mixed.backends()[1].endpoint.v6(), v6);
  EXPECT_EQ(mixed.Find(Endpoint6{v6.ip, 81}), 2);
  EXPECT_FALSE(mixed.Find(Endpoint6{v6.ip, 82}).has_value());
  EXPECT_FALSE(mixed.Find(Endpoint6{MappedIp6(BackendAddr(1).ip), 81}).has_value());
  EXPECT_EQ(mixed.Find(Endpoint6{MappedIp6(BackendAddr(1).ip), 80}), 0);

  // Every member owns a share of the Maglev table, and an IPv6 flow picks as an IPv4 one does.
  std::vector<int> picks(3);
  SchedulerState state = SchedulerState::Create(mixed);
  for (std::uint64_t i = 0; i < 3000; ++i) {
    const FlowKey6 flow{{0x20010db8ULL << 32, i + 2}, {0x20010db800000100ULL, 0x10}, 40000, 80, 6};
    const std::uint16_t pick = state.Pick(flow);
    ASSERT_LT(pick, 3);
    EXPECT_EQ(pick, mixed.PickStateless(flow));
    ++picks[pick];
  }
  for (int n : picks) {
    EXPECT_GT(n, 800);
  }

  const BackendSet v4_only = MakeSet({Spec(1, 10), Spec(2, 10)}, SchedulerKind::kMaglev);
  const BackendSet v4_again = MakeSet({Spec(2, 10), Spec(1, 10)}, SchedulerKind::kMaglev);
  for (std::uint32_t c = 0; c < 1000; ++c) {
    EXPECT_EQ(v4_only.PickStateless(Flow(c)), v4_again.PickStateless(Flow(c)));
  }
}

// Smooth WRR is exact over each period: weights 1:2:3 give exactly 1, 2, 3 picks in every
// aligned window of 6, both per pick (nginx) and from the precomputed schedule.
TEST(WrrTest, OneTwoThreeIsExactInEveryPeriod) {
  for (std::size_t direct_max : {std::size_t{32}, std::size_t{0}}) {
    const BackendSet set =
        MakeSet({Spec(0, 1), Spec(1, 2), Spec(2, 3)}, SchedulerKind::kWrr, direct_max);
    EXPECT_EQ(set.wrr_sequence().empty(), direct_max == 32);
    SchedulerState state = SchedulerState::Create(set);
    for (int period = 0; period < 100; ++period) {
      std::size_t counts[3] = {0, 0, 0};
      for (int i = 0; i < 6; ++i) {
        const std::uint16_t b = state.Pick(Flow(0));
        ASSERT_LT(b, 3);
        ++counts[b];
      }
      EXPECT_EQ(counts[0], 1U) << "direct_max " << direct_max << " period " << period;
      EXPECT_EQ(counts[1], 2U) << "direct_max " << direct_max << " period " << period;
      EXPECT_EQ(counts[2], 3U) << "direct_max " << direct_max << " period " << period;
    }
    EXPECT_EQ(state.active_connections(0), 100U);
    EXPECT_EQ(state.active_connections(2), 300U);
  }
}

// nginx's order for {a=5, b=1, c=1} is a a b a c a a: the heavy backend is interleaved.
TEST(WrrTest, DirectModeFollowsNginxOrder) {
  const BackendSet set = MakeSet({Spec(0, 5), Spec(1, 1), Spec(2, 1)}, SchedulerKind::kWrr);
  SchedulerState state = SchedulerState::Create(set);
  std::vector<std::uint16_t> picks;
  for (int i = 0; i < 14; ++i) {
    picks.push_back(state.Pick(Flow(0)));
  }
  EXPECT_EQ(picks, (std::vector<std::uint16_t>{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}));
}

// A large group, both ways: weights 1..100 over 100 backends have a period of 5050 picks.
TEST(WrrTest, LargeGroupIsExactOverOnePeriodBothWays) {
  std::vector<BackendSpec> specs;
  for (std::uint32_t i = 0; i < 100; ++i) {
    specs.push_back(Spec(i, i + 1));
  }
  for (std::size_t direct_max : {std::size_t{1000}, std::size_t{32}}) {
    const BackendSet set = MakeSet(specs, SchedulerKind::kWrr, direct_max);
    EXPECT_EQ(set.wrr_sequence().size(), direct_max == 32 ? 5050U : 0U);
    SchedulerState state = SchedulerState::Create(set);
    const std::map<std::uint16_t, std::size_t> counts = PickCounts(state, 2 * 5050);
    for (std::uint32_t i = 0; i < 100; ++i) {
      EXPECT_EQ(counts.at(IndexOf(set, i)), 2 * (i + 1)) << "direct_max " << direct_max;
    }
  }
}

// Weights with a common factor shorten the schedule to the reduced period.
TEST(WrrTest, ScheduleUsesTheReducedPeriod) {
  std::vector<BackendSpec> specs;
  for (std::uint32_t i = 0; i < 40; ++i) {
    specs.push_back(Spec(i, i % 2 == 0 ? 20 : 40));
  }
  const BackendSet set = MakeSet(specs, SchedulerKind::kWrr);
  EXPECT_EQ(set.wrr_sequence().size(), 60U);
}

// A period longer than the cap is cut; each backend stays within a pick or two of its share.
TEST(WrrTest, CutScheduleStaysProportional) {
  std::vector<BackendSpec> specs;
  std::uint64_t total = 0;
  for (std::uint32_t i = 0; i < 1024; ++i) {
    specs.push_back(Spec(i, 61 + i % 40));
    total += specs.back().weight;
  }
  ASSERT_GT(total, BackendSet::kWrrMaxSequence);
  const BackendSet set = MakeSet(specs, SchedulerKind::kWrr);
  ASSERT_EQ(set.wrr_sequence().size(), BackendSet::kWrrMaxSequence);
  SchedulerState state = SchedulerState::Create(set);
  const std::map<std::uint16_t, std::size_t> counts =
      PickCounts(state, BackendSet::kWrrMaxSequence);
  for (std::uint32_t i = 0; i < 1024; ++i) {
    const double expected =
        static_cast<double>(BackendSet::kWrrMaxSequence) * specs[i].weight / total;
    EXPECT_NEAR(static_cast<double>(counts.at(IndexOf(set, i))), expected, 2.0) << i;
  }
}

TEST(WrrTest, WorkersStartAtDifferentPointsOfTheSchedule) {
  std::vector<BackendSpec> specs;
  for (std::uint32_t i = 0; i < 64; ++i) {
    specs.push_back(Spec(i, 10));
  }
  const BackendSet set = MakeSet(specs, SchedulerKind::kWrr);
  std::set<std::uint16_t> first_picks;
  for (std::uint32_t worker = 0; worker < 8; ++worker) {
    SchedulerState state = SchedulerState::Create(set, worker);
    first_picks.insert(state.Pick(Flow(0)));
  }
  EXPECT_EQ(first_picks.size(), 8U);
}

TEST(RrTest, EvenAndSkipsIneligible) {
  const BackendSet set =
      MakeSet({Spec(0, 10), Spec(1, 100), Spec(2, 0), Spec(3, 1), Spec(4, 10, Health::kDown)},
              SchedulerKind::kRr);
  SchedulerState state = SchedulerState::Create(set);
  std::vector<std::uint16_t> first;
  for (int i = 0; i < 6; ++i) {
    first.push_back(state.Pick(Flow(0)));
  }
  EXPECT_EQ(first, (std::vector<std::uint16_t>{0, 1, 3, 0, 1, 3}));
  const std::map<std::uint16_t, std::size_t> counts = PickCounts(state, 300);
  EXPECT_EQ(counts, (std::map<std::uint16_t, std::size_t>{{0, 100}, {1, 100}, {3, 100}}));

  SchedulerState second_worker = SchedulerState::Create(set, 1);
  EXPECT_EQ(second_worker.Pick(Flow(0)), 1);
}

TEST(WlcTest, HonoursWeightsAndCloses) {
  const BackendSet set = MakeSet({Spec(0, 1), Spec(1, 2), Spec(2, 3)}, SchedulerKind::kWlc);
  SchedulerState state = SchedulerState::Create(set);
  PickCounts(state, 600);
  EXPECT_NEAR(state.active_connections(0), 100, 1);
  EXPECT_NEAR(state.active_connections(1), 200, 1);
  EXPECT_NEAR(state.active_connections(2), 300, 1);

  // Backend 0's connections end: it is now the least loaded and takes the next ones.
  const std::uint32_t before = state.active_connections(0);
  for (int i = 0; i < 50; ++i) {
    state.OnConnectionClosed(0);
  }
  EXPECT_EQ(state.active_connections(0), before - 50);
  const std::map<std::uint16_t, std::size_t> counts = PickCounts(state, 50);
  EXPECT_EQ(counts, (std::map<std::uint16_t, std::size_t>{{0, 50}}));
}

// Connections placed by persistence count as wlc load: the next picks go elsewhere.
TEST(WlcTest, TakenConnectionsCountAsLoad) {
  const BackendSet set = MakeSet({Spec(0, 10), Spec(1, 10), Spec(2, 10)}, SchedulerKind::kWlc);
  SchedulerState state = SchedulerState::Create(set);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(state.Take(1), 1);
  }
  EXPECT_EQ(state.active_connections(1), 4u);
  const std::map<std::uint16_t, std::size_t> counts = PickCounts(state, 8);
  EXPECT_EQ(counts, (std::map<std::uint16_t, std::size_t>{{0, 4}, {2, 4}}));
  // Closing them makes backend 1 the lightest again.
  for (int i = 0; i < 4; ++i) {
    state.OnConnectionClosed(1);
  }
  EXPECT_EQ(state.Pick(Flow(0)), 1);
}

TEST(WlcTest, TiesRotate) {
  const BackendSet set =
      MakeSet({Spec(0, 10), Spec(1, 10), Spec(2, 10), Spec(3, 10)}, SchedulerKind::kWlc);
  SchedulerState state = SchedulerState::Create(set);
  std::vector<std::uint16_t> picks;
  for (int i = 0; i < 8; ++i) {
    const std::uint16_t b = state.Pick(Flow(0));
    picks.push_back(b);
    state.OnConnectionClosed(b);
  }
  EXPECT_EQ(picks, (std::vector<std::uint16_t>{0, 1, 2, 3, 0, 1, 2, 3}));
}

// The heap must choose exactly what a scan of every backend would: least (active + 1) / weight,
// then least recently picked. Random picks and closes over a large mixed group, fixed seed.
TEST(WlcTest, HeapAgreesWithAFullScan) {
  std::mt19937 rng(17);
  std::vector<BackendSpec> specs;
  for (std::uint32_t i = 0; i < 300; ++i) {
    specs.push_back(Spec(i, static_cast<std::uint32_t>(rng() % 101),
                         rng() % 10 == 0 ? Health::kDown : Health::kUp));
  }
  const BackendSet set = MakeSet(specs, SchedulerKind::kWlc);
  SchedulerState state = SchedulerState::Create(set, 5);
  const std::size_t n = set.backends().size();
  std::vector<std::uint64_t> last_pick(n, 0);
  for (std::size_t k = 0; k < set.eligible().size(); ++k) {
    // Create() orders the initial ties from eligible position `worker % eligible`.
    last_pick[set.eligible()[k]] =
        (k + set.eligible().size() - 5 % set.eligible().size()) % set.eligible().size();
  }
  std::uint64_t picks = set.eligible().size();
  std::vector<std::uint32_t> open;
  for (int step = 0; step < 20000; ++step) {
    if (!open.empty() && rng() % 3 == 0) {
      const std::size_t victim = rng() % open.size();
      state.OnConnectionClosed(static_cast<std::uint16_t>(open[victim]));
      open[victim] = open.back();
      open.pop_back();
      continue;
    }
    std::uint16_t expected = kNoBackend;
    for (std::uint16_t b : set.eligible()) {
      if (expected == kNoBackend) {
        expected = b;
        continue;
      }
      const std::uint64_t lhs =
          (std::uint64_t{state.active_connections(b)} + 1) * set.backends()[expected].weight;
      const std::uint64_t rhs =
          (std::uint64_t{state.active_connections(expected)} + 1) * set.backends()[b].weight;
      if (lhs < rhs || (lhs == rhs && last_pick[b] < last_pick[expected])) {
        expected = b;
      }
    }
    const std::uint16_t got = state.Pick(Flow(0));
    ASSERT_EQ(got, expected) << "step " << step;
    last_pick[got] = picks++;
    open.push_back(got);
  }
  for (std::uint16_t b = 0; b < n; ++b) {
    if (!set.backends()[b].eligible) {
      EXPECT_EQ(state.active_connections(b), 0U);
    }
  }
}

TEST(WlcTest, ClosesNeverGoBelowZeroOrOutOfRange) {
  const BackendSet set = MakeSet({Spec(0, 10), Spec(1, 10)}, SchedulerKind::kWlc);
  SchedulerState state = SchedulerState::Create(set);
  state.OnConnectionClosed(1);
  state.OnConnectionClosed(7);
  state.OnConnectionClosed(kNoBackend);
  EXPECT_EQ(state.active_connections(1), 0U);
  EXPECT_EQ(state.Pick(Flow(0)), 0);
  EXPECT_EQ(state.Pick(Flow(0)), 1);
}

TEST(ShTest, StablePerClientAndWeighted) {
  const BackendSet set = MakeSet({Spec(0, 1), Spec(1, 2), Spec(2, 3)}, SchedulerKind::kSh);
  SchedulerState state = SchedulerState::Create(set);
  constexpr std::uint32_t kClients = 60000;
  std::vector<std::size_t> counts(3, 0);
  for (std::uint32_t client = 0; client < kClients; ++client) {
    const std::uint16_t b = state.Pick(Flow(client, 1000));
    ASSERT_LT(b, 3);
    ++counts[b];
    FlowKey other = Flow(client, 2000);
    other.dst_port = 443;
    EXPECT_EQ(state.Pick(other), b) << client;
    EXPECT_EQ(set.PickStateless(other), b) << client;
  }
  for (std::uint32_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(static_cast<double>(counts[i]) / kClients, (i + 1) / 6.0, 0.01) << i;
  }
}

TEST(ShTest, RemovingABackendMovesFewClients) {
  std::vector<BackendSpec> specs;
  for (std::uint32_t i = 0; i < 10; ++i) {
    specs.push_back(Spec(i, 10));
  }
  const BackendSet before = MakeSet(specs, SchedulerKind::kSh);
  specs[4].health = Health::kDown;
  const BackendSet after = MakeSet(specs, SchedulerKind::kSh);
  SchedulerState before_state = SchedulerState::Create(before);
  SchedulerState after_state = SchedulerState::Create(after);
  constexpr std::uint32_t kClients = 20000;
  std::size_t moved_needlessly = 0;
  for (std::uint32_t client = 0; client < kClients; ++client) {
    const std::uint16_t old_pick = before_state.Pick(Flow(client));
    const std::uint16_t new_pick = after_state.Pick(Flow(client));
    EXPECT_NE(new_pick, 4);
    moved_needlessly += old_pick != 4 && old_pick != new_pick;
  }
  EXPECT_LE(static_cast<double>(moved_needlessly) / kClients, 0.03);
}

TEST(MaglevSchedulerTest, FlowStickyAndSpread) {
  std::vector<BackendSpec> specs;
  for (std::uint32_t i = 0; i < 8; ++i) {
    specs.push_back(Spec(i, 10));
  }
  const BackendSet set = MakeSet(specs, SchedulerKind::kMaglev);
  SchedulerState state = SchedulerState::Create(set);
  std::vector<std::size_t> counts(8, 0);
  for (std::uint16_t port = 1024; port < 1024 + 8000; ++port) {
    const FlowKey flow = Flow(2, port);
    const std::uint16_t b = state.Pick(flow);
    ASSERT_LT(b, 8);
    ++counts[b];
    EXPECT_EQ(state.Pick(flow), b);
    EXPECT_EQ(set.LookupStateless(HashFlow(flow)), b);
    EXPECT_EQ(set.PickStateless(flow), b);
  }
  for (std::size_t count : counts) {
    EXPECT_NEAR(static_cast<double>(count), 1000.0, 150.0);
  }
}

TEST(BackendSetTest, SameGroupInAnyOrderPicksTheSame) {
  std::vector<BackendSpec> specs;
  for (std::uint32_t i = 0; i < 20; ++i) {
    specs.push_back(Spec(i * 3, 1 + i % 7));
  }
  std::vector<BackendSpec> reversed(specs.rbegin(), specs.rend());
  const BackendSet a = MakeSet(specs, SchedulerKind::kMaglev);
  const BackendSet b = MakeSet(reversed, SchedulerKind::kMaglev);
  ASSERT_EQ(a.maglev().size(), b.maglev().size());
  EXPECT_TRUE(
      std::equal(a.maglev().slots().begin(), a.maglev().slots().end(), b.maglev().slots().begin()));
}

// Weight 0 (drain) and down backends never take new connections, whatever the scheduler and
// including the stateless fallback.
TEST(SchedulerTest, DrainedAndDownAreNeverChosen) {
  const std::vector<BackendSpec> specs = {Spec(0, 0), Spec(1, 10, Health::kDown),
                                          Spec(2, 10, Health::kUnknown), Spec(3, 30)};
  for (SchedulerKind kind : kAllKinds) {
    const BackendSet set = MakeSet(specs, kind);
    EXPECT_FALSE(set.fail_open());
    EXPECT_EQ(set.eligible().size(), 2U);
    SchedulerState state = SchedulerState::Create(set);
    const std::map<std::uint16_t, std::size_t> counts = PickCounts(state, 2000);
    EXPECT_EQ(counts.size(), 2U) << SchedulerKindName(kind);
    EXPECT_GT(counts.count(2), 0U) << SchedulerKindName(kind);
    EXPECT_GT(counts.count(3), 0U) << SchedulerKindName(kind);
    for (std::uint32_t i = 0; i < 2000; ++i) {
      const std::uint16_t b = set.PickStateless(Flow(i, static_cast<std::uint16_t>(i)));
      EXPECT_TRUE(b == 2 || b == 3) << SchedulerKindName(kind) << " " << b;
    }
  }
}

TEST(SchedulerTest, AllDownFailsOpenToEveryWeightedBackend) {
  const std::vector<BackendSpec> specs = {Spec(0, 10, Health::kDown), Spec(1, 0, Health::kDown),
                                          Spec(2, 20, Health::kDown), Spec(3, 30, Health::kDown)};
  for (SchedulerKind kind : kAllKinds) {
    const BackendSet set = MakeSet(specs, kind);
    EXPECT_TRUE(set.fail_open()) << SchedulerKindName(kind);
    EXPECT_FALSE(set.backends()[1].eligible);
    SchedulerState state = SchedulerState::Create(set);
    const std::map<std::uint16_t, std::size_t> counts = PickCounts(state, 3000);
    EXPECT_EQ(counts.size(), 3U) << SchedulerKindName(kind);
    EXPECT_EQ(counts.count(1), 0U) << SchedulerKindName(kind);
    for (std::uint16_t b : {0, 2, 3}) {
      EXPECT_GT(counts.count(b) ? counts.at(b) : 0, 300U) << SchedulerKindName(kind) << " " << b;
    }
  }
  std::vector<BackendSpec> one_up = specs;
  one_up[3].health = Health::kUnknown;
  EXPECT_FALSE(MakeSet(one_up, SchedulerKind::kWrr).fail_open());
}

TEST(SchedulerTest, NoEligibleBackendMeansNoBackend) {
  const std::vector<std::vector<BackendSpec>> groups = {{},
                                                        {Spec(0, 0), Spec(1, 0, Health::kDown)}};
  for (const std::vector<BackendSpec>& group : groups) {
    for (SchedulerKind kind : kAllKinds) {
      const BackendSet set = MakeSet(group, kind);
      EXPECT_FALSE(set.has_eligible());
      EXPECT_FALSE(set.fail_open());
      SchedulerState state = SchedulerState::Create(set);
      EXPECT_EQ(state.Pick(Flow(1)), kNoBackend) << SchedulerKindName(kind);
      EXPECT_EQ(set.PickStateless(Flow(1)), kNoBackend);
      EXPECT_EQ(set.LookupStateless(12345), kNoBackend);
    }
  }
  SchedulerState unbound;
  EXPECT_EQ(unbound.Pick(Flow(1)), kNoBackend);
}

TEST(SchedulerTest, NewSnapshotInheritsActiveCountsByEndpoint) {
  const BackendSet old_set = MakeSet({Spec(1, 10), Spec(2, 10), Spec(3, 10)}, SchedulerKind::kWlc);
  SchedulerState old_state = SchedulerState::Create(old_set);
  PickCounts(old_state, 30);
  old_state.OnConnectionClosed(IndexOf(old_set, 3));
  const BackendSet new_set =
      MakeSet({Spec(0, 10), Spec(2, 10), Spec(3, 10), Spec(4, 10)}, SchedulerKind::kWlc);
  SchedulerState new_state = SchedulerState::Create(new_set);
  new_state.InheritConnections(old_state);
  EXPECT_EQ(new_state.active_connections(IndexOf(new_set, 0)), 0U);
  EXPECT_EQ(new_state.active_connections(IndexOf(new_set, 2)), 10U);
  EXPECT_EQ(new_state.active_connections(IndexOf(new_set, 3)), 9U);
  EXPECT_EQ(new_state.active_connections(IndexOf(new_set, 4)), 0U);
  // The fresh backends are the least loaded now.
  const std::map<std::uint16_t, std::size_t> counts = PickCounts(new_state, 18);
  EXPECT_EQ(counts.at(IndexOf(new_set, 0)), 9U);
  EXPECT_EQ(counts.at(IndexOf(new_set, 4)), 9U);
}

// A worker rebinds its states in place (Reset), each kind picking exactly as a state created
// afresh, whatever it was bound to before; Unbind leaves a state that picks nothing and takes
// a late close without harm.
TEST(SchedulerTest, ResetPicksAsCreateAndUnbindForgets) {
  const BackendSet wide =
      MakeSet({Spec(1, 10), Spec(2, 20), Spec(3, 30), Spec(4, 5)}, SchedulerKind::kWlc);
  for (SchedulerKind kind : kAllKinds) {
    const BackendSet set = MakeSet({Spec(1, 1), Spec(2, 2), Spec(3, 3)}, kind);
    SchedulerState fresh = SchedulerState::Create(set, 1);
    SchedulerState reused = SchedulerState::Create(wide, 0);
    PickCounts(reused, 17);
    reused.Reset(set, 1);
    for (std::uint32_t i = 0; i < 60; ++i) {
      ASSERT_EQ(reused.Pick(Flow(i)), fresh.Pick(Flow(i))) << SchedulerKindName(kind) << " " << i;
    }
    reused.Unbind();
    EXPECT_EQ(reused.set(), nullptr);
    EXPECT_EQ(reused.Pick(Flow(1)), kNoBackend);
    reused.OnConnectionClosed(0);
  }
}

}  // namespace
}  // namespace fulcrum::nat
