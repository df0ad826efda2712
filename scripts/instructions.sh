#!/usr/bin/env bash
# Prints the instructions the pipeline executes per packet in each lb-bench scenario, counted by
# callgrind. Unlike Mpps, these counts are the same on every machine: they are the figures to
# compare across commits and against targets.
#
# usage: scripts/instructions.sh [--build DIR] [SCENARIO...]
#   default scenarios: io_floor established_1k established_1m tcp_lifecycle udp_new
#                      established_1m_v6 tcp_lifecycle_v6 udp_new_v6 nat64_established_1m
#
# Method: lb-bench --quick runs each scenario under callgrind, collecting only inside
# Rig::Measure (the timed passes: PassBegin, rx burst, the pipeline, tx flush), and prints the
# packets the worker received there ("timed packets with warm-up"). Instructions per packet are
# the two divided. Setup (opening the established connections) runs outside Rig::Measure and
# is in neither figure. tcp_lifecycle also shows the count per connection (8 packets), udp_new
# the expiries per packet its count moves with (the clock is real: how many connections time
# out inside the measured passes varies from run to run). Each IPv6
# scenario (NAME_v6, and nat64_NAME) whose IPv4 twin (NAME) ran too is then compared with it.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

build=${FULCRUM_BUILD:-build}
scenarios=()
while (($#)); do
  case $1 in
    --build)
      build=${2:?--build needs a directory}
      shift 2
      ;;
    -h | --help)
      sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "instructions.sh: unknown option $1" >&2
      exit 2
      ;;
    *)
      scenarios+=("$1")
      shift
      ;;
  esac
done
((${#scenarios[@]})) || scenarios=(io_floor established_1k established_1m tcp_lifecycle udp_new
  established_1m_v6 tcp_lifecycle_v6 udp_new_v6 nat64_established_1m)

bench=$build/bench/lb-bench
[[ -x $bench ]] || {
  echo "instructions.sh: $bench not found (scripts/build.sh builds it)" >&2
  exit 1
}
command -v valgrind >/dev/null || {
  echo "instructions.sh: valgrind is not installed (scripts/setup.sh installs it)" >&2
  exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

declare -A per_packet_of
printf '%-20s %14s %10s %12s\n' scenario instructions packets per_packet
for scenario in "${scenarios[@]}"; do
  log=$work/$scenario.log
  if ! valgrind --tool=callgrind --collect-atstart=no \
    --toggle-collect='fulcrum::bench::Rig::Measure()' \
    --callgrind-out-file="$work/$scenario.out" \
    "$bench" --quick --only "$scenario" >"$log" 2>&1; then
    echo "instructions.sh: lb-bench --only $scenario failed:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  instructions=$(sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$log")
  packets=$(sed -n "s/^$scenario: .*; \([0-9]*\) timed packets with warm-up.*/\1/p" "$log")
  if [[ -z $instructions || -z $packets || $packets == 0 ]]; then
    echo "instructions.sh: no counts for $scenario in lb-bench's output:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  per_packet=$((instructions / packets))
  per_packet_of[$scenario]=$(awk -v i="$instructions" -v p="$packets" 'BEGIN { print i / p }')
  extra=""
  [[ $scenario == tcp_lifecycle* ]] && extra="  ($((instructions * 8 / packets)) per connection)"
  if [[ $scenario == udp_new* ]]; then
    # Each expiry costs ~450: the count moves with how many fall inside the measured passes.
    expired=$(sed -n "s/^$scenario: .* \([0-9]*\) expired.*/\1/p" "$log")
    [[ -n $expired ]] &&
      extra=$(awk -v e="$expired" -v p="$packets" 'BEGIN { printf "  (%.2f expiries per packet)", e / p }')
  fi
  printf '%-20s %14s %10s %12s%s\n' "$scenario" "$instructions" "$packets" "$per_packet" "$extra"
done

for scenario in "${scenarios[@]}"; do
  twin=${scenario%_v6}
  twin=${twin#nat64_}
  [[ $twin != "$scenario" && -n ${per_packet_of[$twin]:-} ]] || continue
  awk -v s="$scenario" -v t="$twin" -v a="${per_packet_of[$scenario]}" -v b="${per_packet_of[$twin]}" \
    'BEGIN { printf "%s / %s: %.3f\n", s, t, a / b }'
done
