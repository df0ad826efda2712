// What the data plane answers for: VIP:port services, and the addresses it knows, per family.
//
// Theory of operation: a worker classifies every TCP/UDP packet with at most two lookups in
// immutable flat hash maps (nat/flat_map.h) that the control thread builds into each
// configuration snapshot:
//   - AddressTable, by destination: is it a VIP (client side), an fnat local address (a reply
//     from a backend), or one of the ports' own addresses? By source: is it a backend of a dnat
//     listener (a reply that the backend routed through the load balancer)?
//   - ServiceTable, for a VIP: which listener serves (VIP, port, protocol). http and https
//     listeners are entered as TCP: until the L7 proxy exists they are forwarded at L4.
// IPv4 keys pack the fields into one non-zero 64-bit word, so a lookup is one hash, one compare;
// IPv6 keys are a WideKey (the address's two halves and a word for the rest, with a marker bit
// that keeps it non-zero). ServiceTable and AddressTable are the IPv4 tables, ServiceTable6 and
// AddressTable6 the IPv6 ones: the same code over the address type.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "nat/flat_map.h"
#include "nat/flow_key.h"

namespace fulcrum::nat {

// The map keys of a service and of an address, per family.
constexpr std::uint64_t ServiceKey(std::uint32_t vip, std::uint16_t port, std::uint8_t proto) {
  return std::uint64_t{vip} << 24 | std::uint64_t{port} << 8 | proto;
}
constexpr WideKey ServiceKey(const Ip6& vip, std::uint16_t port, std::uint8_t proto) {
  return {vip.hi, vip.lo, std::uint64_t{1} << 63 | std::uint64_t{port} << 8 | proto};
}
// Bit 32 set: never 0, even for 0.0.0.0.
constexpr std::uint64_t AddressKey(std::uint32_t ip) { return std::uint64_t{1} << 32 | ip; }
constexpr WideKey AddressKey(const Ip6& ip) { return {ip.hi, ip.lo, std::uint64_t{1} << 63}; }

template <typename Ip>
struct BasicServiceSpec {
  Ip vip{};  // host order
  std::uint16_t port = 0;
  std::uint8_t proto = 0;      // kIpProtoTcp or kIpProtoUdp
  std::uint32_t listener = 0;  // the caller's listener number
};

template <typename Ip>
class BasicServiceTable {
 public:
  static constexpr std::uint32_t kNone = 0xffffffffu;
  using KeyType = decltype(ServiceKey(Ip{}, 0, 0));
  using Map = FlatMap<std::uint32_t, KeyType>;

  BasicServiceTable() = default;

  // Fails when a (vip, port, proto) is given twice or proto is 0.
  static Result<BasicServiceTable> Create(std::span<const BasicServiceSpec<Ip>> services) {
    std::vector<typename Map::Item> items;
    items.reserve(services.size());
    for (const BasicServiceSpec<Ip>& s : services) {
      if (s.proto == 0) {
        return Error(ErrorCode::kInternal, "service table: protocol 0 for port {}", s.port);
      }
      items.push_back({Key(s.vip, s.port, s.proto), s.listener});
    }
    Result<Map> map = Map::Create(items);
    if (!map.ok()) {
      return Error(ErrorCode::kInternal, "service table: {}", map.status().message());
    }
    BasicServiceTable table;
    table.map_ = std::move(*map);
    return table;
  }

  // The listener of (vip, port, proto), or kNone.
  std::uint32_t Find(const Ip& vip, std::uint16_t port, std::uint8_t proto) const {
    const std::uint32_t* listener = map_.Find(Key(vip, port, proto));
    return listener != nullptr ? *listener : kNone;
  }

  std::size_t size() const { return map_.size(); }

  static constexpr KeyType Key(const Ip& vip, std::uint16_t port, std::uint8_t proto) {
    return ServiceKey(vip, port, proto);
  }

 private:
  Map map_;
};

using ServiceSpec = BasicServiceSpec<std::uint32_t>;
using ServiceTable = BasicServiceTable<std::uint32_t>;
using ServiceSpec6 = BasicServiceSpec<Ip6>;
using ServiceTable6 = BasicServiceTable<Ip6>;

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

template <typename Ip>
struct BasicAddressSpec {
  Ip ip{};  // host order
  std::uint8_t kind = 0;
  std::uint8_t port = 0;
};

template <typename Ip>
class BasicAddressTable {
 public:
  using KeyType = decltype(AddressKey(Ip{}));
  using Map = FlatMap<AddressInfo, KeyType>;

  BasicAddressTable() = default;

  // An address given several times gets the union of its kinds; its port is the one given with
  // kAddressLocal or kAddressInterface.
  static Result<BasicAddressTable> Create(std::span<const BasicAddressSpec<Ip>> addresses) {
    std::vector<BasicAddressSpec<Ip>> sorted(addresses.begin(), addresses.end());
    std::sort(sorted.begin(), sorted.end(),
              [](const BasicAddressSpec<Ip>& a, const BasicAddressSpec<Ip>& b) {
                return Less(a.ip, b.ip);
              });
    std::vector<typename Map::Item> items;
    items.reserve(sorted.size());
    for (std::size_t i = 0; i < sorted.size(); ++i) {
      const BasicAddressSpec<Ip>& a = sorted[i];
      if (i == 0 || !(sorted[i - 1].ip == a.ip)) {
        items.push_back({Key(a.ip), AddressInfo{}});
      }
      AddressInfo& info = items.back().value;
      info.kinds |= a.kind;
      if ((a.kind & (kAddressLocal | kAddressInterface)) != 0) {
        info.port = a.port;
      }
    }
    Result<Map> map = Map::Create(items);
    if (!map.ok()) {
      return Error(ErrorCode::kInternal, "address table: {}", map.status().message());
    }
    BasicAddressTable table;
    table.map_ = std::move(*map);
    return table;
  }

  // The kinds of `ip` (0 when unknown) and its port.
  AddressInfo Find(const Ip& ip) const {
    const AddressInfo* info = map_.Find(Key(ip));
    return info != nullptr ? *info : AddressInfo{};
  }
  bool Is(const Ip& ip, AddressKind kind) const { return (Find(ip).kinds & kind) != 0; }

  std::size_t size() const { return map_.size(); }

  static constexpr KeyType Key(const Ip& ip) { return AddressKey(ip); }

 private:
  static bool Less(std::uint32_t a, std::uint32_t b) { return a < b; }
  static bool Less(const Ip6& a, const Ip6& b) {
    return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo);
  }

  Map map_;
};

using AddressSpec = BasicAddressSpec<std::uint32_t>;
using AddressTable = BasicAddressTable<std::uint32_t>;
using AddressSpec6 = BasicAddressSpec<Ip6>;
using AddressTable6 = BasicAddressTable<Ip6>;

}  // namespace fulcrum::nat
