#include "nat/scheduler.h"

#include <algorithm>
#include <array>
#include <limits>
#include <numeric>
#include <queue>

#include <arpa/inet.h>

#include <fmt/format.h>

namespace fulcrum::nat {
namespace {

constexpr std::array<std::string_view, 5> kSchedulerNames = {"wrr", "rr", "wlc", "sh", "maglev"};

// Knuth's multiplicative constant: spreads the workers' start positions over a schedule.
constexpr std::uint64_t kStaggerMultiplier = 2654435761ULL;

// "198.18.1.11:80", "[2001:db8:1::11]:80"
std::string ToString(AnyEndpoint endpoint) {
  if (endpoint.is_v4()) {
    const std::uint32_t ip = endpoint.v4().ip;
    return fmt::format("{}.{}.{}.{}:{}", ip >> 24, (ip >> 16) & 0xff, (ip >> 8) & 0xff, ip & 0xff,
                       endpoint.port);
  }
  std::array<std::uint8_t, 16> bytes;
  for (std::size_t i = 0; i < 8; ++i) {
    bytes[i] = static_cast<std::uint8_t>(endpoint.ip.hi >> (56 - 8 * i));
    bytes[8 + i] = static_cast<std::uint8_t>(endpoint.ip.lo >> (56 - 8 * i));
  }
  std::array<char, INET6_ADDRSTRLEN> text{};
  inet_ntop(AF_INET6, bytes.data(), text.data(), text.size());
  return fmt::format("[{}]:{}", text.data(), endpoint.port);
}

// Backends sort by address (IPv4 first, as IPv4-mapped addresses), then port: the order of
// indices and of Maglev turns.
bool EndpointLess(const AnyEndpoint& a, const AnyEndpoint& b) { return a < b; }

// A backend's name in the Maglev permutations: for IPv4 the address and port as one number, as
// before IPv6 existed (tables must agree across nodes and versions); IPv6 folds its halves.
std::uint64_t MaglevKey(const AnyEndpoint& e) {
  if (e.is_v4()) {
    return std::uint64_t{e.v4().ip} << 16 | e.port;
  }
  return Mix64(e.ip.hi ^ Mix64(e.ip.lo)) ^ e.port;
}

Status ValidateSpecs(std::span<const BackendSpec> specs) {
  if (specs.size() > BackendSet::kMaxBackends) {
    return Error(ErrorCode::kLimitExceeded, "server group has {} backends, at most {}",
                 specs.size(), BackendSet::kMaxBackends);
  }
  for (const BackendSpec& spec : specs) {
    if (spec.weight > BackendSet::kMaxWeight) {
      return Error(ErrorCode::kInvalidParameter, "backend {}: weight {} is out of range 0..{}",
                   ToString(spec.endpoint), spec.weight, BackendSet::kMaxWeight);
    }
  }
  return Status::Ok();
}

std::vector<Backend> SortedBackends(std::span<const BackendSpec> specs) {
  std::vector<Backend> backends;
  backends.reserve(specs.size());
  for (const BackendSpec& spec : specs) {
    backends.push_back(Backend{spec.endpoint, spec.weight, spec.health, false});
  }
  std::sort(backends.begin(), backends.end(), [](const Backend& a, const Backend& b) {
    return EndpointLess(a.endpoint, b.endpoint);
  });
  return backends;
}

Status CheckUnique(std::span<const Backend> sorted) {
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i].endpoint == sorted[i - 1].endpoint) {
      return Error(ErrorCode::kAlreadyExists, "backend {} appears twice in the server group",
                   ToString(sorted[i].endpoint));
    }
  }
  return Status::Ok();
}

// The k-th turn (from 0) of an eligible backend in the wrr schedule, due at (2k + 1) / (2w).
struct Turn {
  std::uint64_t twice_k_plus_one = 1;
  std::uint32_t weight = 1;
  std::uint16_t position = 0;
};

// std::priority_queue keeps the greatest on top: "greater" here means due later.
struct DueLater {
  bool operator()(const Turn& a, const Turn& b) const {
    const std::uint64_t a_due = a.twice_k_plus_one * b.weight;
    const std::uint64_t b_due = b.twice_k_plus_one * a.weight;
    return a_due != b_due ? a_due > b_due : a.position > b.position;
  }
};

}  // namespace

std::string_view SchedulerKindName(SchedulerKind kind) {
  return kSchedulerNames[static_cast<std::size_t>(kind)];
}

std::optional<SchedulerKind> SchedulerKindFromName(std::string_view name) {
  for (std::size_t i = 0; i < kSchedulerNames.size(); ++i) {
    if (kSchedulerNames[i] == name) {
      return static_cast<SchedulerKind>(i);
    }
  }
  return std::nullopt;
}

Result<BackendSet> BackendSet::Create(std::span<const BackendSpec> specs,
                                      const BackendSetOptions& options) {
  FULCRUM_RETURN_IF_ERROR(ValidateSpecs(specs));
  FULCRUM_RETURN_IF_ERROR(MaglevTable::ValidateSize(options.maglev_size));
  BackendSet set;
  set.backends_ = SortedBackends(specs);
  FULCRUM_RETURN_IF_ERROR(CheckUnique(set.backends_));
  set.scheduler_ = options.scheduler;
  set.ChooseEligible();
  if (!set.has_eligible()) {
    return set;
  }
  FULCRUM_RETURN_IF_ERROR(set.BuildMaglev(options.maglev_size));
  if (set.scheduler_ == SchedulerKind::kWrr && set.eligible_.size() > options.wrr_direct_max) {
    set.BuildWrrSequence();
  }
  return set;
}

// Weight > 0 and not down; if that leaves none while some have weight > 0, fail open to all
// of those (BRIEF §2: traffic goes to every backend when all are dead).
void BackendSet::ChooseEligible() {
  bool any_weighted = false;
  bool any_weighted_up = false;
  for (const Backend& b : backends_) {
    any_weighted |= b.weight > 0;
    any_weighted_up |= b.weight > 0 && b.health != Health::kDown;
  }
  fail_open_ = any_weighted && !any_weighted_up;
  eligible_position_.assign(backends_.size(), kNoBackend);
  for (std::size_t i = 0; i < backends_.size(); ++i) {
    Backend& b = backends_[i];
    b.eligible = b.weight > 0 && (fail_open_ || b.health != Health::kDown);
    if (b.eligible) {
      eligible_position_[i] = static_cast<std::uint16_t>(eligible_.size());
      eligible_.push_back(static_cast<std::uint16_t>(i));
      eligible_weight_.push_back(b.weight);
      eligible_weight_sum_ += b.weight;
    }
  }
}

Status BackendSet::BuildMaglev(std::uint32_t size) {
  std::vector<MaglevBackend> input;
  input.reserve(backends_.size());
  for (const Backend& b : backends_) {
    input.push_back(MaglevBackend{MaglevKey(b.endpoint), b.eligible ? b.weight : 0});
  }
  Result<MaglevTable> table = MaglevTable::Build(input, size);
  if (!table.ok()) {
    return table.status();
  }
  maglev_ = std::move(table).value();
  return Status::Ok();
}

// One period of the smooth schedule (see the header), weights reduced by their gcd so that the
// period is as short as the ratios allow.
void BackendSet::BuildWrrSequence() {
  std::uint32_t divisor = 0;
  for (std::uint32_t w : eligible_weight_) {
    divisor = std::gcd(divisor, w);
  }
  std::priority_queue<Turn, std::vector<Turn>, DueLater> due;
  std::uint64_t period = 0;
  for (std::size_t pos = 0; pos < eligible_weight_.size(); ++pos) {
    const std::uint32_t weight = eligible_weight_[pos] / divisor;
    due.push(Turn{1, weight, static_cast<std::uint16_t>(pos)});
    period += weight;
  }
  const std::size_t length =
      static_cast<std::size_t>(std::min<std::uint64_t>(period, kWrrMaxSequence));
  wrr_sequence_.reserve(length);
  while (wrr_sequence_.size() < length) {
    Turn turn = due.top();
    due.pop();
    wrr_sequence_.push_back(eligible_[turn.position]);
    turn.twice_k_plus_one += 2;
    due.push(turn);
  }
}

std::optional<std::uint16_t> BackendSet::Find(AnyEndpoint endpoint) const {
  auto it = std::lower_bound(
      backends_.begin(), backends_.end(), endpoint,
      [](const Backend& b, const AnyEndpoint& e) { return EndpointLess(b.endpoint, e); });
  if (it == backends_.end() || it->endpoint != endpoint) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(it - backends_.begin());
}

SchedulerState SchedulerState::Create(const BackendSet& set, std::uint32_t worker) {
  SchedulerState state;
  state.Reset(set, worker);
  return state;
}

void SchedulerState::Reset(const BackendSet& set, std::uint32_t worker) {
  set_ = &set;
  active_.assign(set.backends_.size(), 0);
  wrr_current_.clear();
  wlc_entry_.clear();
  wlc_heap_.clear();
  wlc_slot_.clear();
  wlc_picks_ = 0;
  cursor_ = 0;
  const std::size_t eligible = set.eligible_.size();
  if (eligible == 0) {
    return;
  }
  const std::size_t start = worker % eligible;
  if (set.scheduler_ == SchedulerKind::kWrr && set.wrr_sequence_.empty()) {
    wrr_current_.assign(eligible, 0);
  } else if (set.scheduler_ == SchedulerKind::kWrr) {
    cursor_ = static_cast<std::uint32_t>((worker * kStaggerMultiplier) % set.wrr_sequence_.size());
  } else if (set.scheduler_ == SchedulerKind::kWlc) {
    // As if the eligible backends had been picked once each, in order from `start`.
    wlc_heap_.resize(eligible);
    wlc_slot_.resize(eligible);
    wlc_entry_.resize(eligible);
    for (std::size_t pos = 0; pos < eligible; ++pos) {
      wlc_heap_[pos] = static_cast<std::uint16_t>(pos);
      wlc_entry_[pos] = {.last_pick = (pos + eligible - start) % eligible,
                         .active = 0,
                         .weight = set.eligible_weight_[pos]};
    }
    wlc_picks_ = eligible;
    Heapify();
  } else {
    cursor_ = static_cast<std::uint32_t>(start);
  }
}

void SchedulerState::Unbind() {
  set_ = nullptr;
  active_.clear();
  wrr_current_.clear();
  wlc_entry_.clear();
  wlc_heap_.clear();
  wlc_slot_.clear();
}

template <class Key>
std::uint16_t SchedulerState::PickFor(const Key& flow) {
  if (set_ == nullptr || !set_->has_eligible()) {
    return kNoBackend;
  }
  switch (set_->scheduler_) {
    case SchedulerKind::kWrr:
      return Count(set_->wrr_sequence_.empty() ? PickWrrDirect() : PickWrrSequence());
    case SchedulerKind::kRr:
      return Count(PickRr());
    case SchedulerKind::kWlc:
      return PickWlc();
    case SchedulerKind::kSh:
      return Count(set_->maglev_.Lookup(HashClient(flow.src_ip)));
    case SchedulerKind::kMaglev:
      return Count(set_->maglev_.Lookup(HashFlow(flow)));
  }
  return kNoBackend;
}
template std::uint16_t SchedulerState::PickFor(const FlowKey& flow);
template std::uint16_t SchedulerState::PickFor(const FlowKey6& flow);

// nginx's smooth weighted round robin (ngx_http_upstream_get_peer): every backend gains its
// weight, the largest current weight wins (first on ties) and pays back the total.
std::uint16_t SchedulerState::PickWrrDirect() {
  // Raw pointers and the count read once: the stores to the current weights would otherwise
  // make the compiler reload the vectors' bounds on every turn. PickFor checked that there is
  // an eligible backend.
  const std::uint32_t* weight = set_->eligible_weight_.data();
  const std::size_t count = set_->eligible_weight_.size();
  std::int64_t* current = wrr_current_.data();
  std::size_t best = 0;
  std::int64_t best_current = current[0] += weight[0];
  for (std::size_t pos = 1; pos < count; ++pos) {
    const std::int64_t mine = current[pos] += weight[pos];
    if (mine > best_current) {
      best_current = mine;
      best = pos;
    }
  }
  current[best] -= set_->eligible_weight_sum_;
  return set_->eligible_[best];
}

std::uint16_t SchedulerState::PickWrrSequence() {
  const std::vector<std::uint16_t>& sequence = set_->wrr_sequence_;
  const std::uint16_t backend = sequence[cursor_];
  cursor_ = cursor_ + 1 == sequence.size() ? 0 : cursor_ + 1;
  return backend;
}

std::uint16_t SchedulerState::PickRr() {
  const std::vector<std::uint16_t>& eligible = set_->eligible_;
  const std::uint16_t backend = eligible[cursor_];
  cursor_ = cursor_ + 1 == eligible.size() ? 0 : cursor_ + 1;
  return backend;
}

// The heap root is the least loaded; it takes the connection and sinks to its new place.
std::uint16_t SchedulerState::PickWlc() {
  const std::uint16_t position = wlc_heap_[0];
  const std::uint16_t backend = Count(set_->eligible_[position]);
  ++wlc_entry_[position].active;
  wlc_entry_[position].last_pick = wlc_picks_++;
  SiftDown(0);
  return backend;
}

// Least (active + 1) / weight, compared by cross-multiplication; then least recently picked.
bool SchedulerState::Lighter(std::uint16_t a, std::uint16_t b) const {
  const WlcEntry& ea = wlc_entry_[a];
  const WlcEntry& eb = wlc_entry_[b];
  const std::uint64_t a_load = (std::uint64_t{ea.active} + 1) * eb.weight;
  const std::uint64_t b_load = (std::uint64_t{eb.active} + 1) * ea.weight;
  return a_load != b_load ? a_load < b_load : ea.last_pick < eb.last_pick;
}

void SchedulerState::Place(std::size_t slot, std::uint16_t position) {
  wlc_heap_[slot] = position;
  wlc_slot_[position] = static_cast<std::uint16_t>(slot);
}

void SchedulerState::SiftUp(std::size_t slot) {
  const std::uint16_t moving = wlc_heap_[slot];
  while (slot > 0) {
    const std::size_t parent = (slot - 1) / 2;
    if (!Lighter(moving, wlc_heap_[parent])) {
      break;
    }
    Place(slot, wlc_heap_[parent]);
    slot = parent;
  }
  Place(slot, moving);
}

void SchedulerState::SiftDown(std::size_t slot) {
  const std::uint16_t moving = wlc_heap_[slot];
  const std::size_t n = wlc_heap_.size();
  while (true) {
    std::size_t child = 2 * slot + 1;
    if (child >= n) {
      break;
    }
    if (child + 1 < n && Lighter(wlc_heap_[child + 1], wlc_heap_[child])) {
      ++child;
    }
    if (!Lighter(wlc_heap_[child], moving)) {
      break;
    }
    Place(slot, wlc_heap_[child]);
    slot = child;
  }
  Place(slot, moving);
}

void SchedulerState::Heapify() {
  for (std::size_t slot = wlc_heap_.size() / 2; slot-- > 0;) {
    SiftDown(slot);
  }
  for (std::size_t slot = 0; slot < wlc_heap_.size(); ++slot) {
    wlc_slot_[wlc_heap_[slot]] = static_cast<std::uint16_t>(slot);
  }
}

std::uint16_t SchedulerState::Count(std::uint16_t backend) {
  ++active_[backend];
  return backend;
}

std::uint16_t SchedulerState::Take(std::uint16_t backend) {
  ++active_[backend];
  const std::uint16_t position = set_->eligible_position_[backend];
  if (!wlc_heap_.empty() && position != kNoBackend) {
    ++wlc_entry_[position].active;
    SiftDown(wlc_slot_[position]);
  }
  return backend;
}

void SchedulerState::OnConnectionClosed(std::uint16_t backend) {
  // A connection counted under an older set may no longer map here: never go below zero.
  if (backend >= active_.size() || active_[backend] == 0) {
    return;
  }
  --active_[backend];
  const std::uint16_t position = set_->eligible_position_[backend];
  if (!wlc_heap_.empty() && position != kNoBackend) {
    --wlc_entry_[position].active;
    SiftUp(wlc_slot_[position]);
  }
}

void SchedulerState::InheritConnections(const SchedulerState& previous) {
  if (set_ == nullptr || previous.set_ == nullptr) {
    return;
  }
  const std::vector<Backend>& now = set_->backends_;
  const std::vector<Backend>& before = previous.set_->backends_;
  std::size_t j = 0;
  for (std::size_t i = 0; i < now.size(); ++i) {
    while (j < before.size() && EndpointLess(before[j].endpoint, now[i].endpoint)) {
      ++j;
    }
    if (j < before.size() && before[j].endpoint == now[i].endpoint) {
      active_[i] = previous.active_[j];
    }
  }
  if (!wlc_heap_.empty()) {
    for (std::size_t pos = 0; pos < wlc_entry_.size(); ++pos) {
      wlc_entry_[pos].active = active_[set_->eligible_[pos]];
    }
    Heapify();
  }
}

}  // namespace fulcrum::nat
