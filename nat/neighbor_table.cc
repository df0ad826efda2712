#include "nat/neighbor_table.h"

namespace fulcrum::nat {

std::string_view NeighborStateName(NeighborState state) {
  switch (state) {
    case NeighborState::kIncomplete:
      return "incomplete";
    case NeighborState::kReachable:
      return "reachable";
    case NeighborState::kStale:
      return "stale";
  }
  return "invalid";
}

}  // namespace fulcrum::nat
