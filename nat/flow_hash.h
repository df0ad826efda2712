// Flow hashing shared by the schedulers, Maglev and the stateless fallback.
//
// Theory of operation: every LB node of a cluster must map a flow to the same backend, so the
// hash is a fixed function of the packet's fields and of compile-time seeds: no std::hash
// (implementation-defined), no per-process random seed, no CPU-specific instruction whose
// portable fallback could differ. The mixer is the MurmurHash3 64-bit finaliser (fmix64), a
// public-domain bijection with full avalanche: two rounds over the 5-tuple packed into two
// 64-bit words cost a handful of multiplies and no memory access. The 32-bit results take the
// high half of the final mix, the best-mixed bits, because Maglev maps a hash onto its table by
// multiply-shift (see MaglevTable::Lookup), which reads the high bits.
//
// Flows are FlowKeys (nat/flow_key.h) as the client sent them (client -> VIP), host order. An
// IPv6 flow's addresses are folded in one 64-bit half at a time, a mix after each.
#pragma once

#include <cstdint>

#include "nat/flow_key.h"

namespace fulcrum::nat {

// Fixed seeds: changing any of them remaps every flow of every cluster at upgrade time.
inline constexpr std::uint64_t kFlowHashSeed = 0x5bd1e9955bd1e995ULL;
inline constexpr std::uint64_t kClientHashSeed = 0x2545f4914f6cdd1dULL;

// MurmurHash3's fmix64 (Appleby, public domain): a bijection on 64 bits with full avalanche.
constexpr std::uint64_t Mix64(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// Hash of the full 5-tuple: the maglev scheduler and the connection-table-full fallback.
constexpr std::uint32_t HashFlow(const FlowKey& flow, std::uint64_t seed = kFlowHashSeed) {
  const std::uint64_t addrs = (std::uint64_t{flow.src_ip} << 32) | flow.dst_ip;
  const std::uint64_t rest =
      (std::uint64_t{flow.src_port} << 32) | (std::uint64_t{flow.dst_port} << 16) | flow.proto;
  return static_cast<std::uint32_t>(Mix64(Mix64(addrs ^ seed) ^ rest) >> 32);
}

// Hash of the client address alone: the sh (source hash) scheduler.
constexpr std::uint32_t HashClient(std::uint32_t src_addr, std::uint64_t seed = kClientHashSeed) {
  return static_cast<std::uint32_t>(Mix64(src_addr ^ seed) >> 32);
}

constexpr std::uint32_t HashFlow(const FlowKey6& flow, std::uint64_t seed = kFlowHashSeed) {
  std::uint64_t h = Mix64(flow.src_ip.hi ^ seed);
  h = Mix64(h ^ flow.src_ip.lo);
  h = Mix64(h ^ flow.dst_ip.hi);
  h = Mix64(h ^ flow.dst_ip.lo);
  const std::uint64_t rest =
      (std::uint64_t{flow.src_port} << 32) | (std::uint64_t{flow.dst_port} << 16) | flow.proto;
  return static_cast<std::uint32_t>(Mix64(h ^ rest) >> 32);
}

// The whole /128: a client that changes its interface identifier (RFC 8981 temporary
// addresses) is a new client to sh, as it is to every server it talks to.
constexpr std::uint32_t HashClient(const Ip6& src_addr, std::uint64_t seed = kClientHashSeed) {
  return static_cast<std::uint32_t>(Mix64(Mix64(src_addr.hi ^ seed) ^ src_addr.lo) >> 32);
}

}  // namespace fulcrum::nat
