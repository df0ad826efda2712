#include "tests/dataplane/core_bed.h"

#include <fmt/format.h>

#include "nat/packet.h"
#include "nat/packet6.h"

namespace fulcrum::dataplane::testing {
namespace {

constexpr std::uint32_t kListenerSlots = 64;
constexpr std::uint32_t kBackendSlots = 256;
// Bytes after each frame that an answer built in place may use (an mbuf's tailroom).
constexpr std::uint16_t kFeedRoom = 128;  // an mbuf's (RTE_PKTMBUF_HEADROOM)

std::string Ip(std::uint32_t ip) {
  return fmt::format("{}.{}.{}.{}", ip >> 24, (ip >> 16) & 0xff, (ip >> 8) & 0xff, ip & 0xff);
}

std::string MacText(std::span<const std::uint8_t> mac) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0], mac[1], mac[2], mac[3],
                     mac[4], mac[5]);
}

std::string_view VerbName(Verb verb) {
  switch (verb) {
    case Verb::kDrop:
      return "drop";
    case Verb::kConsume:
      return "consume";
    case Verb::kSend:
      return "send";
    case Verb::kHandOff:
      return "hand-off";
  }
  return "?";
}

}  // namespace

std::string ToString(const Delta& delta) {
  std::string out = "drops {";
  for (const auto& [reason, n] : delta.drops) {
    out += fmt::format(" {}={}", nat::DropReasonName(reason), n);
  }
  out += " } events {";
  for (const auto& [event, n] : delta.events) {
    out += fmt::format(" {}={}", WorkerEventName(event), n);
  }
  return out + " }";
}

std::string ToString(const Action& action) {
  return fmt::format("{} port={} reason={} owner={} length={} offset={}", VerbName(action.verb),
                     action.port, nat::DropReasonName(action.reason), action.owner, action.length,
                     action.offset);
}

std::string Describe(const Bytes& frame) {
  std::string out;
  if (frame.size() >= 12) {
    out = fmt::format("eth {} <- {}", MacText({frame.data(), 6}), MacText({frame.data() + 6, 6}));
  }
  const nat::ParsedPacket p = nat::Parse(frame);
  const nat::ParsedPacket6 p6 =
      p.ethertype == nat::kEthTypeIpv6 ? nat::ParseIpv6(frame, p.l3_offset) : nat::ParsedPacket6{};
  if (p6.ok()) {
    out += fmt::format("; [{:x}:{:x}]:{} -> [{:x}:{:x}]:{} proto {} hop limit {} flags {:#04x}",
                       p6.src_ip.hi, p6.src_ip.lo, p6.src_port, p6.dst_ip.hi, p6.dst_ip.lo,
                       p6.dst_port, p6.proto, p6.hop_limit, p6.tcp_flags);
  } else if (p.ok()) {
    out += fmt::format("; {}:{} -> {}:{} proto {} ttl {} flags {:#04x}", Ip(p.src_ip), p.src_port,
                       Ip(p.dst_ip), p.dst_port, p.proto, p.ttl, p.tcp_flags);
  } else {
    out += fmt::format("; does not parse ({})", nat::DropReasonName(p.drop));
  }
  out += "\n";
  for (std::size_t i = 0; i < frame.size(); ++i) {
    out += fmt::format("{:02x}{}", frame[i], i % 16 == 15 ? "\n" : " ");
  }
  return out;
}

CoreBed::CoreBed(std::uint32_t workers, std::uint32_t conn_capacity)
    : config_(TestConfig()),
      persist_(nat::PersistTable::Create(4096, 0x5eed).value()),
      slots_(kListenerSlots, kBackendSlots) {
  shared_.workers = workers;
  shared_.persist = &persist_;
  shared_.steering = nat::PortSteering::ForWorkers(workers);
  shared_.port_index.fill(kNoPortIndex);
  const Mac macs[] = {kClientPortMac, kBackendPortMac};
  for (std::size_t i = 0; i < config_.ports.size(); ++i) {
    shared_.port_index[i] = static_cast<std::uint8_t>(i);
    shared_.ports.push_back(PortView{.port_id = static_cast<std::uint16_t>(i),
                                     .mac = macs[i],
                                     .address = config_.ports[i].address.addr().v4(),
                                     .mtu = config_.ports[i].mtu});
  }
  for (std::uint32_t w = 0; w < workers; ++w) {
    Result<nat::ConnTable> table = nat::ConnTable::Create(conn_capacity);
    Result<nat::ConnTable6> table6 = nat::ConnTable6::Create(conn_capacity);
    EXPECT_TRUE(table.ok() && table6.ok());
    counters_.push_back(std::make_unique<WorkerCounters>());
    cores_.push_back(std::make_unique<CoreState>(std::move(*table), std::move(*table6)));
    const Status init = InitCore(*cores_.back(), w, shared_, *counters_.back(), config_.ports,
                                 kListenerSlots, kBackendSlots);
    EXPECT_TRUE(init.ok()) << init.ToString();
    cores_.back()->now_ms = 1000;
    shared_.all.push_back(cores_.back().get());
  }
  TakeDelta();
}

void CoreBed::Apply(const model::Model& model, bool adopt) {
  Result<CompileResult> compiled =
      CompileSnapshot(model, config_, CompileOptions{.workers = shared_.workers}, slots_,
                      ++generation_, snapshot_.get());
  ASSERT_TRUE(compiled.ok()) << compiled.status().ToString();
  if (compiled->slots.has_value()) {
    slots_ = std::move(*compiled->slots);
  }
  for (auto& core : cores_) {
    if (adopt) {
      AdoptSnapshot(*core, compiled->snapshot.get());
    }
  }
  if (adopt) {
    retired_.clear();
  }
  if (snapshot_ != nullptr) {
    retired_.push_back(std::move(snapshot_));
  }
  snapshot_ = std::move(compiled->snapshot);
}

void CoreBed::LearnNeighbors(bool with_backends) { SetNeighbors(true, with_backends); }

void CoreBed::ForgetClient() { SetNeighbors(false, true); }

void CoreBed::SetNeighbors(bool client, bool backends) {
  std::vector<nat::FlatMap<nat::Neighbor>::Item> items;
  if (client) {
    items.push_back({nat::NeighborMap::Key(kClientIp), nat::Neighbor{kClientMac, kClientPort}});
    items.push_back({nat::NeighborMap::Key(kClient2Ip), nat::Neighbor{kClient2Mac, kClientPort}});
  }
  for (int n = 1; backends && n <= 4; ++n) {
    items.push_back(
        {nat::NeighborMap::Key(BackendIp(n)), nat::Neighbor{BackendMac(n), kBackendPort}});
  }
  Result<nat::FlatMap<nat::Neighbor>> map = nat::FlatMap<nat::Neighbor>::Create(items);
  ASSERT_TRUE(map.ok());
  neighbors_ = std::make_unique<nat::NeighborMap>(std::move(*map));
  using Map6 = nat::FlatMap<nat::Neighbor, nat::NeighborMap6::KeyType>;
  std::vector<Map6::Item> items6;
  if (client) {
    items6.push_back(
        {nat::NeighborMap6::Key(Wide6(ClientIp6())), nat::Neighbor{kClientMac, kClientPort}});
    items6.push_back(
        {nat::NeighborMap6::Key(Wide6(Client2Ip6())), nat::Neighbor{kClient2Mac, kClientPort}});
  }
  for (int n = 1; backends && n <= 4; ++n) {
    items6.push_back(
        {nat::NeighborMap6::Key(Wide6(BackendIp6(n))), nat::Neighbor{BackendMac(n), kBackendPort}});
  }
  Result<Map6> map6 = Map6::Create(items6);
  ASSERT_TRUE(map6.ok());
  neighbors6_ = std::make_unique<nat::NeighborMap6>(std::move(*map6));
  for (auto& core : cores_) {
    core->neighbors = neighbors_.get();
    core->neighbors6 = neighbors6_.get();
  }
}

std::vector<Outcome> CoreBed::Feed(std::uint32_t core, std::uint8_t port, std::vector<Bytes> frames,
                                   bool handed_off) {
  EXPECT_LE(frames.size(), kBurstSize);
  std::vector<PacketIn> in;
  std::vector<std::size_t> sizes;
  for (Bytes& frame : frames) {
    // kFeedRoom bytes before and after the frame, as an mbuf has head- and tailroom.
    sizes.push_back(frame.size());
    frame.insert(frame.begin(), kFeedRoom, 0);
    frame.resize(frame.size() + kFeedRoom);
    in.push_back(PacketIn{
        .frame = {frame.data() + kFeedRoom, sizes.back()}, .port = port, .headroom = kFeedRoom});
  }
  CoreState& c = *cores_[core];
  std::vector<const void*> buffers(frames.size(), nullptr);
  c.buffers = buffers.data();
  c.tailroom_of = [](const void*) { return kFeedRoom; };
  c.report_count = 0;
  const std::span<const Action> actions = DecideBurst(c, in, handed_off);
  c.buffers = nullptr;  // `buffers` ends with this call
  EXPECT_EQ(actions.size(), frames.size());
  std::vector<Outcome> out;
  for (std::size_t i = 0; i < actions.size(); ++i) {
    Outcome outcome{actions[i], {}};
    if (actions[i].verb == Verb::kSend || actions[i].verb == Verb::kHandOff) {
      const std::ptrdiff_t start = std::ptrdiff_t{kFeedRoom} + actions[i].offset;
      const std::size_t length =
          actions[i].length != 0
              ? actions[i].length
              : static_cast<std::size_t>(static_cast<std::ptrdiff_t>(sizes[i]) - actions[i].offset);
      EXPECT_GE(start, 0);
      EXPECT_LE(static_cast<std::size_t>(start) + length, frames[i].size());
      outcome.frame.assign(frames[i].begin() + start,
                           frames[i].begin() + start + static_cast<std::ptrdiff_t>(length));
    }
    out.push_back(std::move(outcome));
  }
  return out;
}

Outcome CoreBed::FeedOne(std::uint32_t core, std::uint8_t port, Bytes frame, bool handed_off) {
  std::vector<Outcome> out = Feed(core, port, {std::move(frame)}, handed_off);
  return out.empty() ? Outcome{} : out[0];
}

Delta CoreBed::TakeDelta() {
  std::vector<std::uint64_t> now;
  for (const auto& counters : counters_) {
    for (const Counter& c : counters->drops) {
      now.push_back(c.Read());
    }
    for (const Counter& c : counters->events) {
      now.push_back(c.Read());
    }
  }
  Delta delta;
  const std::size_t per_core = nat::kDropReasonCount + kWorkerEventCount;
  for (std::size_t i = 0; i < now.size() && !seen_.empty(); ++i) {
    const std::uint64_t n = now[i] - seen_[i];
    if (n == 0) {
      continue;
    }
    const std::size_t k = i % per_core;
    if (k < nat::kDropReasonCount) {
      delta.drops[static_cast<nat::DropReason>(k)] += n;
    } else {
      delta.events[static_cast<WorkerEvent>(k - nat::kDropReasonCount)] += n;
    }
  }
  seen_ = std::move(now);
  return delta;
}

std::vector<Message> CoreBed::Reports(std::uint32_t core) const {
  const CoreState& c = *cores_[core];
  return {c.reports.begin(), c.reports.begin() + c.report_count};
}

void CoreBed::Advance(std::uint32_t ms) {
  for (auto& core : cores_) {
    core->now_ms += ms;
  }
}

std::uint16_t CoreBed::ClientPortOwnedBy(std::uint32_t core, std::uint16_t from) const {
  for (std::uint16_t port = from;; ++port) {
    if (ClientOwner(kClientIp, port, shared_.workers) == core) {
      return port;
    }
  }
}

std::uint16_t CoreBed::Client6PortOwnedBy(std::uint32_t core, std::uint16_t from) const {
  for (std::uint16_t port = from;; ++port) {
    if (ClientOwner(Wide6(ClientIp6()), port, shared_.workers) == core) {
      return port;
    }
  }
}

void ExpectOutcome(const Outcome& got, const Action& action, const Bytes& frame,
                   const std::string& what) {
  EXPECT_EQ(got.action, action) << what << ": got " << ToString(got.action) << ", want "
                                << ToString(action);
  if (action.verb == Verb::kSend || action.verb == Verb::kHandOff) {
    EXPECT_EQ(got.frame, frame) << what << ":\n got  " << Describe(got.frame) << "\n want "
                                << Describe(frame);
  }
}

void ExpectDelta(CoreBed& bed, const Delta& want, const std::string& what) {
  const Delta got = bed.TakeDelta();
  EXPECT_EQ(got, want) << what << ": got " << ToString(got) << ", want " << ToString(want);
}

void RunSteps(CoreBed& bed, std::uint32_t core, const std::vector<Step>& steps) {
  bed.TakeDelta();
  for (const Step& step : steps) {
    SCOPED_TRACE(step.name);
    bed.Advance(step.advance_ms);
    const Outcome got = bed.FeedOne(core, step.port, step.in());
    ExpectOutcome(got, step.action, step.out ? step.out() : Bytes{}, step.name);
    ExpectDelta(bed, step.delta, step.name);
  }
}

}  // namespace fulcrum::dataplane::testing
