#include "nat/port_pool.h"

#include <algorithm>
#include <tuple>

#include "nat/flow_hash.h"

namespace fulcrum::nat {
namespace {

// Fibonacci hashing: the high bits of ip * 2^32/phi spread consecutive addresses well.
std::uint32_t IndexSlot(std::uint32_t ip, std::uint32_t mask) {
  return static_cast<std::uint32_t>((std::uint64_t{ip} * 0x9E3779B1u) >> 16) & mask;
}
std::uint32_t IndexSlot(const Ip6& ip, std::uint32_t mask) {
  return static_cast<std::uint32_t>(Mix64(ip.hi ^ Mix64(ip.lo)) >> 32) & mask;
}

struct IpLess {
  bool operator()(std::uint32_t a, std::uint32_t b) const { return a < b; }
  bool operator()(const Ip6& a, const Ip6& b) const {
    return std::tie(a.hi, a.lo) < std::tie(b.hi, b.lo);
  }
};

}  // namespace

template <typename Ip>
Result<BasicPortPool<Ip>> BasicPortPool<Ip>::Create(std::span<const Ip> local_ips,
                                                    std::uint32_t worker, std::uint32_t workers) {
  if (workers == 0 || workers > kMaxWorkers) {
    return Error(ErrorCode::kInvalidParameter, "port pool: worker count {} is out of range (1..{})",
                 workers, kMaxWorkers);
  }
  if (worker >= workers) {
    return Error(ErrorCode::kInvalidParameter, "port pool: worker index {} is not below {}", worker,
                 workers);
  }
  if (local_ips.empty()) {
    return Error(ErrorCode::kInvalidParameter, "port pool of worker {}: no local address for fnat",
                 worker);
  }
  std::vector<Ip> sorted(local_ips.begin(), local_ips.end());
  std::sort(sorted.begin(), sorted.end(), IpLess{});
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return Error(ErrorCode::kInvalidParameter,
                 "port pool of worker {}: a local address is listed twice", worker);
  }

  BasicPortPool pool(PortSteering::ForWorkers(workers), worker);
  std::vector<std::uint16_t> slice;
  for (std::uint32_t port = kMinPort; port <= kMaxPort; ++port) {
    if (pool.steering_.OwnerOf(static_cast<std::uint16_t>(port)) == worker) {
      slice.push_back(static_cast<std::uint16_t>(port));
    }
  }
  pool.ports_per_address_ = static_cast<std::uint32_t>(slice.size());
  pool.bits_per_address_ = (std::uint32_t{kMaxPort} >> pool.steering_.shift()) + 1;
  pool.ips_.assign(local_ips.begin(), local_ips.end());
  std::size_t index_size = 4;
  while (index_size < 2 * local_ips.size()) {
    index_size *= 2;
  }
  pool.address_index_.assign(index_size, 0);
  pool.address_index_mask_ = static_cast<std::uint32_t>(index_size - 1);
  for (std::size_t a = 0; a < local_ips.size(); ++a) {
    std::uint32_t slot = IndexSlot(local_ips[a], pool.address_index_mask_);
    while (pool.address_index_[slot] != 0) {
      slot = (slot + 1) & pool.address_index_mask_;
    }
    pool.address_index_[slot] = static_cast<std::uint32_t>(a + 1);
  }
  pool.addresses_.resize(local_ips.size());
  pool.rings_.reserve(slice.size() * local_ips.size());
  for (std::size_t a = 0; a < local_ips.size(); ++a) {
    pool.rings_.insert(pool.rings_.end(), slice.begin(), slice.end());
    pool.addresses_[a].count = pool.ports_per_address_;
  }
  pool.allocated_.assign((std::size_t{pool.bits_per_address_} * local_ips.size() + 63) / 64, 0);
  pool.translated_bits_.assign(pool.allocated_.size(), 0);
  pool.available_ = pool.capacity();
  return pool;
}

template <typename Ip>
std::optional<typename BasicPortPool<Ip>::Endpoint> BasicPortPool<Ip>::Allocate(bool translated) {
  const auto n = static_cast<std::uint32_t>(addresses_.size());
  for (std::uint32_t tried = 0; tried < n; ++tried) {
    const std::uint32_t a = next_address_;
    next_address_ = a + 1 == n ? 0 : a + 1;
    Address& address = addresses_[a];
    if (address.count == 0) {
      continue;
    }
    const std::uint16_t port = ring(a)[address.head];
    address.head = address.head + 1 == ports_per_address_ ? 0 : address.head + 1;
    --address.count;
    --available_;
    const std::size_t bit = BitOf(a, port);
    Set(allocated_, bit, true);
    if (translated) {
      Set(translated_bits_, bit, true);
      ++translated_;
    }
    return Endpoint{ips_[a], port};
  }
  return std::nullopt;
}

template <typename Ip>
std::int32_t BasicPortPool<Ip>::AddressOf(const Ip& ip) const {
  // At most half full, so a probe ends at an empty slot soon.
  for (std::uint32_t slot = IndexSlot(ip, address_index_mask_);;
       slot = (slot + 1) & address_index_mask_) {
    const std::uint32_t entry = address_index_[slot];
    if (entry == 0) {
      return -1;
    }
    if (ips_[entry - 1] == ip) {
      return static_cast<std::int32_t>(entry - 1);
    }
  }
}

template <typename Ip>
bool BasicPortPool<Ip>::Release(const Endpoint& local) {
  if (local.port < kMinPort || steering_.OwnerOf(local.port) != worker_) {
    return false;
  }
  const std::int32_t found = AddressOf(local.ip);
  if (found < 0) {
    return false;
  }
  const auto a = static_cast<std::size_t>(found);
  const std::size_t bit = BitOf(a, local.port);
  if (!Test(allocated_, bit)) {
    return false;
  }
  Set(allocated_, bit, false);
  if (Test(translated_bits_, bit)) {
    Set(translated_bits_, bit, false);
    --translated_;
  }
  Address& address = addresses_[a];
  std::uint32_t tail = address.head + address.count;
  if (tail >= ports_per_address_) {
    tail -= ports_per_address_;
  }
  ring(a)[tail] = local.port;
  ++address.count;
  ++available_;
  return true;
}

template <typename Ip>
bool BasicPortPool<Ip>::TranslatedSlow(const Endpoint& local) const {
  if (local.port < kMinPort || steering_.OwnerOf(local.port) != worker_) {
    return false;
  }
  const std::int32_t found = AddressOf(local.ip);
  return found >= 0 && Test(translated_bits_, BitOf(static_cast<std::size_t>(found), local.port));
}

template class BasicPortPool<std::uint32_t>;
template class BasicPortPool<Ip6>;

}  // namespace fulcrum::nat
