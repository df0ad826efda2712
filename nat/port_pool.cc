#include "nat/port_pool.h"

#include <algorithm>

namespace fulcrum::nat {

Result<PortPool> PortPool::Create(std::span<const std::uint32_t> local_ips, std::uint32_t worker,
                                  std::uint32_t workers) {
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
  std::vector<std::uint32_t> sorted(local_ips.begin(), local_ips.end());
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return Error(ErrorCode::kInvalidParameter,
                 "port pool of worker {}: a local address is listed twice", worker);
  }

  PortPool pool(PortSteering::ForWorkers(workers), worker);
  std::vector<std::uint16_t> slice;
  for (std::uint32_t port = kMinPort; port <= kMaxPort; ++port) {
    if (pool.steering_.OwnerOf(static_cast<std::uint16_t>(port)) == worker) {
      slice.push_back(static_cast<std::uint16_t>(port));
    }
  }
  pool.ports_per_address_ = static_cast<std::uint32_t>(slice.size());
  pool.bits_per_address_ = (std::uint32_t{kMaxPort} >> pool.steering_.shift()) + 1;
  pool.ips_.assign(local_ips.begin(), local_ips.end());
  pool.addresses_.resize(local_ips.size());
  pool.rings_.reserve(slice.size() * local_ips.size());
  for (std::size_t a = 0; a < local_ips.size(); ++a) {
    pool.rings_.insert(pool.rings_.end(), slice.begin(), slice.end());
    pool.addresses_[a].count = pool.ports_per_address_;
  }
  pool.allocated_.assign((std::size_t{pool.bits_per_address_} * local_ips.size() + 63) / 64, 0);
  pool.available_ = pool.capacity();
  return pool;
}

std::optional<Endpoint4> PortPool::Allocate() {
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
    SetAllocated(BitOf(a, port), true);
    return Endpoint4{ips_[a], port};
  }
  return std::nullopt;
}

bool PortPool::Release(Endpoint4 local) {
  if (local.port < kMinPort || steering_.OwnerOf(local.port) != worker_) {
    return false;
  }
  const auto it = std::find(ips_.begin(), ips_.end(), local.ip);
  if (it == ips_.end()) {
    return false;
  }
  const auto a = static_cast<std::size_t>(it - ips_.begin());
  const std::size_t bit = BitOf(a, local.port);
  if (!Allocated(bit)) {
    return false;
  }
  SetAllocated(bit, false);
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

}  // namespace fulcrum::nat
