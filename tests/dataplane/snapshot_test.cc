// Compiling object models into configuration snapshots (pure: no EAL).
#include "dataplane/snapshot.h"

#include <algorithm>

#include <gtest/gtest.h>

#include "nat/packet.h"
#include "tests/dataplane/model_fixture.h"
#include "tests/support/packet_builder.h"

namespace fulcrum::dataplane {
namespace {

using fulcrum::testing::Ip4;
using model::ForwardMode;
using model::HealthState;
using model::Protocol;
using testing::ModelBuilder;
using testing::TestConfig;

struct Compiled {
  CompileResult result;
  SlotState slots;  // after the compile
  const ConfigSnapshot& snap() const { return *result.snapshot; }
};

Compiled Compile(const model::Model& model, const SlotState& slots = {},
                 std::uint64_t generation = 1, const ConfigSnapshot* previous = nullptr) {
  Result<CompileResult> result =
      CompileSnapshot(model, TestConfig(), {.workers = 2}, slots, generation, previous);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  SlotState after = result->slots.value_or(slots);
  return Compiled{std::move(*result), std::move(after)};
}

ModelBuilder WebModel() {
  ModelBuilder b;
  b.Group("sg-00000001", {"198.18.1.11:80", "198.18.1.12:80"}, {10, 30})
      .Group("sg-00000002", {"198.18.1.13:5353"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001")
      .Listener("lsn-00000002", Protocol::kUdp, 53, "sg-00000002", ForwardMode::kFnat, 30)
      .Listener("lsn-00000003", Protocol::kHttp, 8080, "sg-00000001", ForwardMode::kDnat);
  return b;
}

TEST(SnapshotTest, ServicesMapVipPortProtocolToListeners) {
  ModelBuilder b = WebModel();
  Compiled c = Compile(b.model());
  const ConfigSnapshot& snap = c.snap();
  const std::uint32_t vip = Ip4("198.18.100.10");
  const ListenerConfig* tcp = snap.listener(snap.v4.services.Find(vip, 80, nat::kIpProtoTcp));
  ASSERT_NE(tcp, nullptr);
  EXPECT_EQ(tcp->id, "lsn-00000001");
  EXPECT_EQ(tcp->mode, nat::NatMode::kFnat);
  EXPECT_EQ(tcp->idle_timeout_ms, 900'000u);
  EXPECT_EQ(tcp->down_policy, DownPolicy::kReset);
  const ListenerConfig* udp = snap.listener(snap.v4.services.Find(vip, 53, nat::kIpProtoUdp));
  ASSERT_NE(udp, nullptr);
  EXPECT_EQ(udp->idle_timeout_ms, 30'000u);
  EXPECT_EQ(udp->ConnTimeoutMs(nat::TcpState::kNone), 30'000u);
  EXPECT_EQ(udp->down_policy, DownPolicy::kReschedule);
  // An http listener is forwarded as TCP.
  const ListenerConfig* http = snap.listener(snap.v4.services.Find(vip, 8080, nat::kIpProtoTcp));
  ASSERT_NE(http, nullptr);
  EXPECT_EQ(http->mode, nat::NatMode::kDnat);
  EXPECT_TRUE(snap.v4.has_dnat);
  EXPECT_EQ(snap.v4.services.Find(vip, 53, nat::kIpProtoTcp), nat::ServiceTable::kNone);
  EXPECT_EQ(snap.v4.services.size(), 3u);
}

TEST(SnapshotTest, TcpTimeoutsComeFromTheConfigAndTheListener) {
  ModelBuilder b = WebModel();
  Compiled c = Compile(b.model());
  const ListenerConfig& l = *c.snap().listener(*c.slots.listeners.Find("lsn-00000001/fnat"));
  EXPECT_EQ(l.TimeoutMs(nat::TcpState::kSynSent), 3000u);
  EXPECT_EQ(l.TimeoutMs(nat::TcpState::kEstablished), 900'000u);
  EXPECT_EQ(l.TimeoutMs(nat::TcpState::kFinWait), 3000u);
  EXPECT_EQ(l.TimeoutMs(nat::TcpState::kTimeWait), 1000u);
  EXPECT_EQ(l.TimeoutMs(nat::TcpState::kClosed), 1000u);
}

TEST(SnapshotTest, AddressesAreClassified) {
  ModelBuilder b = WebModel();
  Compiled c = Compile(b.model());
  const nat::AddressTable& a = c.snap().v4.addresses;
  EXPECT_TRUE(a.Is(Ip4("198.18.100.10"), nat::kAddressVip));
  EXPECT_TRUE(a.Is(Ip4("198.18.0.1"), nat::kAddressInterface));
  EXPECT_EQ(a.Find(Ip4("198.18.1.1")).port, 1);
  for (const char* local : {"198.18.1.2", "198.18.1.3", "198.18.1.4", "198.18.1.5"}) {
    EXPECT_TRUE(a.Is(Ip4(local), nat::kAddressLocal)) << local;
    EXPECT_EQ(a.Find(Ip4(local)).port, 1) << local;
  }
  // Backends of the dnat listener are known as such; the udp-only backend is not.
  EXPECT_TRUE(a.Is(Ip4("198.18.1.11"), nat::kAddressDnatBackend));
  EXPECT_FALSE(a.Is(Ip4("198.18.1.13"), nat::kAddressDnatBackend));
  EXPECT_EQ(c.snap().v4.vips, std::vector<std::uint32_t>{Ip4("198.18.100.10")});
}

// An IPv6 VIP compiles into the IPv6 tables, next to the IPv4 ones: services, addresses (VIP,
// port addresses, local addresses, dnat backends), next hops through the IPv6 routes, and
// dnat services for the stateless fallback.
TEST(SnapshotTest, AnIpv6VipCompilesIntoTheIpv6Tables) {
  ModelBuilder b = WebModel();
  b.Lb(testing::kLb6, testing::kVip6)
      .Group("sg-00000011", {"[2001:db8:1::11]:80", "[2001:db8:1::12]:80"})
      .Listener("lsn-00000011", Protocol::kTcp, 80, "sg-00000011")
      .Listener("lsn-00000012", Protocol::kTcp, 81, "sg-00000011", ForwardMode::kDnat);
  Compiled c = Compile(b.model());
  const ConfigSnapshot& snap = c.snap();
  const nat::Ip6 vip = Ip6Of(testing::Ip(testing::kVip6));
  const auto ip6 = [](const char* text) { return Ip6Of(testing::Ip(text)); };

  const ListenerConfig* l = snap.listener(snap.v6.services.Find(vip, 80, nat::kIpProtoTcp));
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->id, "lsn-00000011");
  EXPECT_FALSE(l->vip.is_v4());
  EXPECT_EQ(l->vip.v6(), (nat::Endpoint6{vip, 80}));
  ASSERT_EQ(l->set.backends().size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const BackendConfig* backend = snap.backend(l->backend_slots[i]);
    ASSERT_NE(backend, nullptr);
    EXPECT_FALSE(backend->is_v4());
    EXPECT_EQ(backend->next_hop6, (nat::NextHop6{backend->endpoint.ip, 1}));
    EXPECT_FALSE(backend->next_hop.ok());
  }
  EXPECT_EQ(snap.v6.services.size(), 2u);
  EXPECT_EQ(snap.v4.services.size(), 3u);
  EXPECT_EQ(snap.v4.services.Find(Ip4("198.18.100.10"), 81, nat::kIpProtoTcp),
            nat::ServiceTable::kNone);

  const nat::AddressTable6& a = snap.v6.addresses;
  EXPECT_TRUE(a.Is(vip, nat::kAddressVip));
  EXPECT_TRUE(a.Is(ip6("2001:db8::1"), nat::kAddressInterface));
  EXPECT_EQ(a.Find(ip6("2001:db8:1::1")).port, 1);
  for (const char* local : {"2001:db8:1::2", "2001:db8:1::5"}) {
    EXPECT_TRUE(a.Is(ip6(local), nat::kAddressLocal)) << local;
    EXPECT_EQ(a.Find(ip6(local)).port, 1) << local;
  }
  EXPECT_FALSE(a.Is(ip6("2001:db8:1::6"), nat::kAddressLocal));
  EXPECT_TRUE(a.Is(ip6("2001:db8:1::11"), nat::kAddressDnatBackend));
  EXPECT_TRUE(snap.v6.has_dnat);
  EXPECT_EQ(snap.v6.vips, std::vector<nat::Ip6>{vip});

  const DnatService* service = snap.v6.dnat_services.Find(
      nat::ServiceTable6::Key(ip6("2001:db8:1::12"), 80, nat::kIpProtoTcp));
  ASSERT_NE(service, nullptr);
  EXPECT_EQ(service->vip, (nat::AnyEndpoint{nat::Endpoint6{vip, 81}}));
  EXPECT_FALSE(service->ambiguous);
  EXPECT_EQ(snap.v6.routes.Lookup(ip6("2001:db8::77")), (nat::NextHop6{ip6("2001:db8::77"), 0}));
  EXPECT_FALSE(snap.v6.routes.Lookup(ip6("2001:db8:5::1")).ok());  // no IPv6 gateway
}

TEST(SnapshotTest, BackendsGetSlotsNextHopsAndWeights) {
  ModelBuilder b = WebModel();
  Compiled c = Compile(b.model());
  const ConfigSnapshot& snap = c.snap();
  const ListenerConfig& l = *snap.listener(*c.slots.listeners.Find("lsn-00000001/fnat"));
  ASSERT_EQ(l.set.backends().size(), 2u);
  ASSERT_EQ(l.backend_slots.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const BackendConfig* backend = snap.backend(l.backend_slots[i]);
    ASSERT_NE(backend, nullptr);
    EXPECT_EQ(backend->listener_slot, l.slot);
    EXPECT_EQ(backend->set_index, i);
    EXPECT_EQ(backend->endpoint, l.set.backends()[i].endpoint);
    EXPECT_EQ(backend->next_hop, (nat::NextHop{backend->endpoint.v4().ip, 1}));
    EXPECT_FALSE(backend->dead);
  }
  EXPECT_EQ(l.set.backends()[1].weight, 30u);
  // The dnat listener shares the group but has slots of its own.
  const ListenerConfig& dnat = *snap.listener(*c.slots.listeners.Find("lsn-00000003/dnat"));
  EXPECT_NE(dnat.backend_slots[0], l.backend_slots[0]);
  EXPECT_EQ(c.slots.backends.live(), 5u);
}

TEST(SnapshotTest, SlotsSurviveRecompilesAndRetireWhenObjectsGo) {
  ModelBuilder b = WebModel();
  Compiled first = Compile(b.model());
  const std::uint32_t tcp_slot = *first.slots.listeners.Find("lsn-00000001/fnat");
  const std::uint32_t udp_slot = *first.slots.listeners.Find("lsn-00000002/fnat");
  EXPECT_EQ(first.result.new_listener_slots.size(), 3u);
  EXPECT_TRUE(b.model().SetWeight("sg-00000001", testing::Ep("198.18.1.11:80"), 50).ok());
  Compiled second = Compile(b.model(), first.slots, 2, &first.snap());
  EXPECT_EQ(*second.slots.listeners.Find("lsn-00000001/fnat"), tcp_slot);
  EXPECT_TRUE(second.result.new_listener_slots.empty());
  EXPECT_EQ(second.result.retired_slots, 0u);
  EXPECT_FALSE(second.result.needs_sweep);

  ASSERT_TRUE(b.model().DeleteListener("lsn-00000002").ok());
  Compiled third = Compile(b.model(), second.slots, 3, &second.snap());
  EXPECT_EQ(third.snap().listener(udp_slot), nullptr);
  EXPECT_EQ(third.result.retired_slots, 2u);  // the listener and its backend
  EXPECT_TRUE(third.result.needs_sweep);
  EXPECT_TRUE(third.snap().ConnDead(udp_slot, 0));
  // A new listener does not get the retired slot before the workers swept.
  b.Listener("lsn-00000004", Protocol::kUdp, 54, "sg-00000002", ForwardMode::kFnat, 30);
  Compiled fourth = Compile(b.model(), third.slots, 4, &third.snap());
  const std::uint32_t new_slot = *fourth.slots.listeners.Find("lsn-00000004/fnat");
  EXPECT_NE(new_slot, udp_slot);
  // Once every worker swept generation 3, the slot is free again.
  SlotState swept = fourth.slots;
  EXPECT_EQ(swept.listeners.Reclaim(3), 1u);
  ASSERT_TRUE(b.model().DeleteListener("lsn-00000004").ok());
  b.Listener("lsn-00000005", Protocol::kUdp, 55, "sg-00000002", ForwardMode::kFnat, 30);
  Compiled fifth = Compile(b.model(), swept, 5, &fourth.snap());
  EXPECT_EQ(*fifth.slots.listeners.Find("lsn-00000005/fnat"), udp_slot);
}

TEST(SnapshotTest, ModeChangeIsANewListenerSlot) {
  ModelBuilder b = WebModel();
  Compiled first = Compile(b.model());
  model::ListenerOptions to_dnat;
  to_dnat.mode = ForwardMode::kDnat;
  ASSERT_TRUE(b.model().ModifyListener("lsn-00000001", to_dnat).ok());
  Compiled second = Compile(b.model(), first.slots, 2, &first.snap());
  EXPECT_FALSE(second.slots.listeners.Find("lsn-00000001/fnat").has_value());
  EXPECT_TRUE(second.slots.listeners.Find("lsn-00000001/dnat").has_value());
  EXPECT_TRUE(second.result.needs_sweep);
}

TEST(SnapshotTest, DownBackendsAreExcludedAndTheirConnectionsDead) {
  ModelBuilder b = WebModel();
  Compiled first = Compile(b.model());
  b.Health("lsn-00000001", "198.18.1.11:80", HealthState::kDown);
  Compiled second = Compile(b.model(), first.slots, 2, &first.snap());
  const ListenerConfig& l =
      *second.snap().listener(*second.slots.listeners.Find("lsn-00000001/fnat"));
  EXPECT_FALSE(l.set.backends()[0].eligible);
  EXPECT_TRUE(l.set.backends()[1].eligible);
  EXPECT_TRUE(second.snap().backend(l.backend_slots[0])->dead);
  EXPECT_FALSE(second.snap().backend(l.backend_slots[1])->dead);
  EXPECT_TRUE(second.result.needs_sweep);
  // The same health again: nothing new dies, no sweep.
  Compiled third = Compile(b.model(), second.slots, 3, &second.snap());
  EXPECT_FALSE(third.result.needs_sweep);
  // Every backend down: fail-open, nobody's connections are killed.
  b.Health("lsn-00000001", "198.18.1.12:80", HealthState::kDown);
  Compiled fourth = Compile(b.model(), third.slots, 4, &third.snap());
  const ListenerConfig& all_down = *fourth.snap().listener(l.slot);
  EXPECT_TRUE(all_down.set.fail_open());
  EXPECT_FALSE(fourth.snap().backend(all_down.backend_slots[0])->dead);
  EXPECT_FALSE(fourth.snap().backend(all_down.backend_slots[1])->dead);
}

TEST(SnapshotTest, KeepPolicyLeavesDownBackendsConnectionsAlone) {
  ModelBuilder b = WebModel();
  model::ListenerOptions keep;
  keep.on_backend_down = model::BackendDownPolicy::kKeep;
  ASSERT_TRUE(b.model().ModifyListener("lsn-00000001", keep).ok());
  b.Health("lsn-00000001", "198.18.1.11:80", HealthState::kDown);
  Result<CompileResult> c =
      CompileSnapshot(b.model(), TestConfig(), {.workers = 1}, SlotState{}, 1, nullptr);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->snapshot->listener(*c->slots->listeners.Find("lsn-00000001/fnat"))->down_policy,
            DownPolicy::kKeep);
  const ListenerConfig& l = *c->snapshot->listener(*c->slots->listeners.Find("lsn-00000001/fnat"));
  EXPECT_FALSE(l.set.backends()[0].eligible);
  EXPECT_FALSE(c->snapshot->backend(l.backend_slots[0])->dead);
}

TEST(SnapshotTest, DnatServicesForTheStatelessFallback) {
  ModelBuilder b = WebModel();
  Compiled c = Compile(b.model());
  const DnatService* service = c.snap().v4.dnat_services.Find(
      nat::ServiceTable::Key(Ip4("198.18.1.12"), 80, nat::kIpProtoTcp));
  ASSERT_NE(service, nullptr);
  EXPECT_EQ(service->vip, (nat::Endpoint4{Ip4("198.18.100.10"), 8080}));
  EXPECT_FALSE(service->ambiguous);
}

TEST(SnapshotTest, RunsOutOfSlotsWithAClearError) {
  ModelBuilder b = WebModel();
  Result<CompileResult> c =
      CompileSnapshot(b.model(), TestConfig(), {.workers = 1}, SlotState(2, 64), 1, nullptr);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), ErrorCode::kLimitExceeded);
  EXPECT_NE(c.status().message().find("lsn-00000003"), std::string::npos) << c.status().ToString();
}

TEST(SnapshotTest, RoutesGatewaysAndBackendsOffLink) {
  DaemonConfig config =
      TestConfig(R"("no_huge": true)", R"(, "gateway": "198.18.0.254")",
                 R"("routes": [{"prefix": "198.51.100.0/24", "via": "198.18.1.250"}],)");
  ModelBuilder b;
  b.Group("sg-00000001", {"198.51.100.7:80", "203.0.113.9:80"})
      .Listener("lsn-00000001", Protocol::kTcp, 80, "sg-00000001");
  Result<CompileResult> c =
      CompileSnapshot(b.model(), config, {.workers = 1}, SlotState{}, 1, nullptr);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const ListenerConfig& l = *c->snapshot->listener(*c->slots->listeners.Find("lsn-00000001/fnat"));
  EXPECT_EQ(c->snapshot->backend(l.backend_slots[0])->next_hop,
            (nat::NextHop{Ip4("198.18.1.250"), 1}));
  EXPECT_EQ(c->snapshot->backend(l.backend_slots[1])->next_hop,
            (nat::NextHop{Ip4("198.18.0.254"), 0}));
}

TEST(SnapshotTest, MaglevSizes) {
  EXPECT_EQ(MaglevSizeFor(model::Scheduler::kMaglev, 3), 65537u);
  EXPECT_EQ(MaglevSizeFor(model::Scheduler::kSh, 3), 65537u);
  EXPECT_EQ(MaglevSizeFor(model::Scheduler::kWrr, 3), 1009u);
  EXPECT_EQ(MaglevSizeFor(model::Scheduler::kWrr, 100), NextPrime(10100));
  EXPECT_EQ(MaglevSizeFor(model::Scheduler::kRr, 1024), 65537u);
  EXPECT_EQ(NextPrime(1000), 1009u);
  EXPECT_EQ(NextPrime(65537), 65537u);
}

// A health change recompiles the listener it is about and nothing else: the other listeners'
// configs (BackendSet, Maglev table, scheduler states) are the previous snapshot's, shared.
TEST(SnapshotTest, UnchangedListenersAreSharedWithThePreviousSnapshot) {
  ModelBuilder b = WebModel();
  Compiled first = Compile(b.model());
  EXPECT_EQ(first.result.compiled_listeners, 3u);
  auto config_of = [](const Compiled& c, const std::string& id) -> const ListenerConfig* {
    const ListenerConfig* found = nullptr;
    c.snap().ForEachListener([&](const ListenerConfig& l) {
      if (l.id == id) {
        found = &l;
      }
    });
    return found;
  };

  b.Health("lsn-00000001", "198.18.1.12:80", HealthState::kDown);
  Compiled second = Compile(b.model(), first.slots, 2, &first.snap());
  EXPECT_EQ(second.result.compiled_listeners, 1u);
  EXPECT_NE(config_of(second, "lsn-00000001"), config_of(first, "lsn-00000001"));
  EXPECT_EQ(config_of(second, "lsn-00000002"), config_of(first, "lsn-00000002"));
  // lsn-00000003 uses the same group, but health is per listener: its backends are all up.
  EXPECT_EQ(config_of(second, "lsn-00000003"), config_of(first, "lsn-00000003"));
  // The shared config's backends keep their slots, and the snapshot's backend table has them.
  const ListenerConfig* shared = config_of(second, "lsn-00000003");
  ASSERT_NE(shared, nullptr);
  for (std::size_t i = 0; i < shared->backend_slots.size(); ++i) {
    const BackendConfig* backend = second.snap().backend(shared->backend_slots[i]);
    ASSERT_NE(backend, nullptr);
    EXPECT_EQ(backend->listener_slot, shared->slot);
    EXPECT_EQ(backend->set_index, i);
  }
  // The changed listener's new set knows the backend is down.
  const ListenerConfig* changed = config_of(second, "lsn-00000001");
  ASSERT_NE(changed, nullptr);
  EXPECT_EQ(changed->set.eligible().size(), 1u);

  // A weight change in the group two listeners use recompiles both.
  ASSERT_TRUE(b.model().SetWeight("sg-00000001", testing::Ep("198.18.1.11:80"), 50).ok());
  Compiled third = Compile(b.model(), second.slots, 3, &second.snap());
  EXPECT_EQ(third.result.compiled_listeners, 2u);
  EXPECT_EQ(config_of(third, "lsn-00000002"), config_of(first, "lsn-00000002"));
  EXPECT_NE(config_of(third, "lsn-00000003"), config_of(second, "lsn-00000003"));

  // Without a previous snapshot, everything is compiled.
  EXPECT_EQ(Compile(b.model(), third.slots, 4, nullptr).result.compiled_listeners, 3u);
}

void ExpectSameSnapshot(const ConfigSnapshot& a, const ConfigSnapshot& b) {
  const std::uint32_t listener_end = std::max(a.listeners.end(), b.listeners.end());
  for (std::uint32_t slot = 0; slot < listener_end; ++slot) {
    const ListenerConfig* x = a.listener(slot);
    const ListenerConfig* y = b.listener(slot);
    ASSERT_EQ(x == nullptr, y == nullptr) << "listener slot " << slot;
    if (x != nullptr) {
      EXPECT_EQ(x->id, y->id);
      EXPECT_TRUE(x->inputs == y->inputs) << x->id;
      EXPECT_EQ(x->backend_slots, y->backend_slots) << x->id;
      EXPECT_TRUE(std::ranges::equal(x->set.eligible(), y->set.eligible())) << x->id;
      EXPECT_EQ(x->set.fail_open(), y->set.fail_open()) << x->id;
    }
  }
  const std::uint32_t backend_end = std::max(a.backends.end(), b.backends.end());
  for (std::uint32_t slot = 0; slot < backend_end; ++slot) {
    const BackendConfig* x = a.backend(slot);
    const BackendConfig* y = b.backend(slot);
    ASSERT_EQ(x == nullptr, y == nullptr) << "backend slot " << slot;
    if (x != nullptr) {
      EXPECT_EQ(x->dead, y->dead) << "backend slot " << slot;
      EXPECT_EQ(x->set_index, y->set_index);
      EXPECT_EQ(x->listener_slot, y->listener_slot);
      EXPECT_EQ(x->endpoint, y->endpoint);
      EXPECT_EQ(x->next_hop, y->next_hop);
      EXPECT_EQ(x->next_hop6, y->next_hop6);
    }
  }
  EXPECT_EQ(a.v4.services.size(), b.v4.services.size());
  EXPECT_EQ(a.v4.vips, b.v4.vips);
  EXPECT_EQ(a.v6.vips, b.v6.vips);
  EXPECT_EQ(a.v4.has_dnat, b.v4.has_dnat);
}

// After health reports and weight changes only, the compile takes the touched listeners alone
// (no slot taken or retired, the rest shared) and gives what compiling everything gives.
TEST(SnapshotTest, CompilingTheTouchedListenersEqualsCompilingEverything) {
  ModelBuilder b = WebModel();
  Compiled first = Compile(b.model());
  b.Health("lsn-00000001", "198.18.1.12:80", HealthState::kDown);
  ASSERT_TRUE(b.model().SetWeight("sg-00000001", testing::Ep("198.18.1.11:80"), 50).ok());
  b.Health("lsn-00000002", "198.18.1.13:5353", HealthState::kDown);  // its only one: fail-open
  Compiled touched = Compile(b.model(), first.slots, 2, &first.snap());
  EXPECT_FALSE(touched.result.slots.has_value());
  EXPECT_EQ(touched.result.compiled_listeners, 3u);  // 1 (health, weight), 2 (health), 3 (weight)
  EXPECT_EQ(touched.snap().changed_listener_slots.size(), 3u);
  EXPECT_TRUE(touched.result.needs_sweep);  // 198.18.1.12 died under lsn-00000001
  EXPECT_EQ(touched.snap().base_generation, 1u);
  ExpectSameSnapshot(touched.snap(), Compile(b.model(), first.slots, 2, nullptr).snap());

  // Up again: nothing dies, the same listener compiled once more.
  b.Health("lsn-00000001", "198.18.1.12:80", HealthState::kUp);
  Compiled up = Compile(b.model(), touched.slots, 3, &touched.snap());
  EXPECT_FALSE(up.result.slots.has_value());
  EXPECT_EQ(up.result.compiled_listeners, 1u);
  EXPECT_FALSE(up.result.needs_sweep);
  ExpectSameSnapshot(up.snap(), Compile(b.model(), first.slots, 3, nullptr).snap());

  // Any other change compiles the whole model (slots and tables anew, listeners still shared).
  ASSERT_TRUE(b.model().AddBackend("sg-00000002", testing::Ep("198.18.1.14:5353"), 10).ok());
  Compiled added = Compile(b.model(), up.slots, 4, &up.snap());
  EXPECT_TRUE(added.result.slots.has_value());
  EXPECT_EQ(added.result.compiled_listeners, 1u);
  ExpectSameSnapshot(added.snap(), Compile(b.model(), added.slots, 4, nullptr).snap());
  // A model with another history is compiled whole, even at a version past the snapshot's.
  ModelBuilder other = WebModel();
  other.model().set_version(b.model().version() + 10);
  EXPECT_TRUE(Compile(other.model(), added.slots, 5, &added.snap()).result.slots.has_value());
}

}  // namespace
}  // namespace fulcrum::dataplane
