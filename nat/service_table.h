// What the data plane answers for: VIP:port services, and the IPv4 addresses it knows.
//
// Theory of operation: a worker classifies every TCP/UDP packet with at most two lookups in
// immutable flat hash maps (nat/flat_map.h) that the control thread builds into each
// configuration snapshot:
//   - AddressTable, by destination: is it a VIP (client side), an fnat local address (a reply
//     from a backend), or one of the ports' own addresses? By source: is it a backend of a dnat
//     listener (a reply that the backend routed through the load balancer)?
//   - ServiceTable, for a VIP: which listener serves (VIP, port, protocol). http and https
//     listeners are entered as TCP: until the L7 proxy exists they are forwarded at L4.
// Keys pack the fields into one non-zero 64-bit word, so a lookup is one hash, one compare.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "nat/flat_map.h"

namespace fulcrum::nat {

struct ServiceSpec {
  std::uint32_t vip = 0;  // host order
  std::uint16_t port = 0;
  std::uint8_t proto = 0;      // kIpProtoTcp or kIpProtoUdp
  std::uint32_t listener = 0;  // the caller's listener number
};

class ServiceTable {
 public:
  static constexpr std::uint32_t kNone = 0xffffffffu;

  ServiceTable() = default;

  // Fails when a (vip, port, proto) is given twice or proto is 0.
  static Result<ServiceTable> Create(std::span<const ServiceSpec> services) {
    std::vector<FlatMap<std::uint32_t>::Item> items;
    items.reserve(services.size());
    for (const ServiceSpec& s : services) {
      if (s.proto == 0) {
        return Error(ErrorCode::kInternal, "service table: protocol 0 for port {}", s.port);
      }
      items.push_back({Key(s.vip, s.port, s.proto), s.listener});
    }
    Result<FlatMap<std::uint32_t>> map = FlatMap<std::uint32_t>::Create(items);
    if (!map.ok()) {
      return Error(ErrorCode::kInternal, "service table: {}", map.status().message());
    }
    ServiceTable table;
    table.map_ = std::move(*map);
    return table;
  }

  // The listener of (vip, port, proto), or kNone.
  std::uint32_t Find(std::uint32_t vip, std::uint16_t port, std::uint8_t proto) const {
    const std::uint32_t* listener = map_.Find(Key(vip, port, proto));
    return listener != nullptr ? *listener : kNone;
  }

  std::size_t size() const { return map_.size(); }

  static constexpr std::uint64_t Key(std::uint32_t vip, std::uint16_t port, std::uint8_t proto) {
    return std::uint64_t{vip} << 24 | std::uint64_t{port} << 8 | proto;
  }

 private:
  FlatMap<std::uint32_t> map_;
};

// Kinds of address, as bits: one address may be several (none of the model's rules forbid a
// dnat backend on a port's subnet sharing nothing else, but a VIP is never a local address).
enum AddressKind : std::uint8_t {
  kAddressVip = 1,          // a load balancer's VIP
  kAddressLocal = 2,        // an fnat local address
  kAddressInterface = 4,    // a port's own address
  kAddressDnatBackend = 8,  // the address of a backend of some dnat listener
};

struct AddressInfo {
  std::uint8_t kinds = 0;  // AddressKind bits
  std::uint8_t port = 0;   // port index (config order) for kAddressLocal and kAddressInterface
};

struct AddressSpec {
  std::uint32_t ip = 0;  // host order
  std::uint8_t kind = 0;
  std::uint8_t port = 0;
};

class AddressTable {
 public:
  AddressTable() = default;

  // An address given several times gets the union of its kinds; its port is the one given with
  // kAddressLocal or kAddressInterface.
  static Result<AddressTable> Create(std::span<const AddressSpec> addresses) {
    std::vector<AddressSpec> sorted(addresses.begin(), addresses.end());
    std::sort(sorted.begin(), sorted.end(),
              [](const AddressSpec& a, const AddressSpec& b) { return a.ip < b.ip; });
    std::vector<FlatMap<AddressInfo>::Item> items;
    items.reserve(sorted.size());
    for (std::size_t i = 0; i < sorted.size(); ++i) {
      const AddressSpec& a = sorted[i];
      if (i == 0 || sorted[i - 1].ip != a.ip) {
        items.push_back({Key(a.ip), AddressInfo{}});
      }
      AddressInfo& info = items.back().value;
      info.kinds |= a.kind;
      if ((a.kind & (kAddressLocal | kAddressInterface)) != 0) {
        info.port = a.port;
      }
    }
    Result<FlatMap<AddressInfo>> map = FlatMap<AddressInfo>::Create(items);
    if (!map.ok()) {
      return Error(ErrorCode::kInternal, "address table: {}", map.status().message());
    }
    AddressTable table;
    table.map_ = std::move(*map);
    return table;
  }

  // The kinds of `ip` (0 when unknown) and its port.
  AddressInfo Find(std::uint32_t ip) const {
    const AddressInfo* info = map_.Find(Key(ip));
    return info != nullptr ? *info : AddressInfo{};
  }
  bool Is(std::uint32_t ip, AddressKind kind) const { return (Find(ip).kinds & kind) != 0; }

  std::size_t size() const { return map_.size(); }

  // Bit 32 set: never 0, even for 0.0.0.0.
  static constexpr std::uint64_t Key(std::uint32_t ip) { return std::uint64_t{1} << 32 | ip; }

 private:
  FlatMap<AddressInfo> map_;
};

}  // namespace fulcrum::nat
