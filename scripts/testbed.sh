#!/usr/bin/env bash
# The one-machine test bed (BRIEF §3): network namespaces and veth pairs around lbd.
#
#   scripts/testbed.sh up       build the namespaces, write the lbd config, start lbd in lbt-lb
#   scripts/testbed.sh down     stop lbd, remove every namespace, link and file `up` made
#   scripts/testbed.sh restart  restart lbd alone (same config, same state file)
#   scripts/testbed.sh status   namespaces, links, addresses and lbd's state
#   scripts/testbed.sh prober start|stop   start or stop lb-healthd alone (up starts it)
#   scripts/testbed.sh lbd start|stop      start or stop lbd alone (same config, same state file)
#
#   lbt-client  lbt-c 198.18.0.2/24 and 198.18.0.3/24, route 198.18.100.0/24 via 198.18.0.1;
#                     2001:db8::2/64 and 2001:db8::3/64, route 2001:db8:100::/64 via 2001:db8::1
#       |
#   lbt-lb      lb-c  (DPDK af_packet, port "client", 198.18.0.1/24 and 2001:db8::1/64 owned by lbd)
#               lb-b  (DPDK af_packet, port "backend", 198.18.1.1/24, fnat 198.18.1.2-.5;
#                     2001:db8:1::1/64, fnat 2001:db8:1::2-2001:db8:1::5)
#               lb-m  198.18.1.254/24 and 2001:db8:1::fe/64 (kernel: management, lb-healthd
#                     probes from here)
#       |  lb-b, lb-m
#   lbt-sw      br0 joining sw-lb, sw-m, sw-be1..4
#       |
#   lbt-be1..4  eth0 198.18.1.11..14/24, default via 198.18.1.1; 2001:db8:1::11..14/64, default
#               via 2001:db8:1::1 (dnat replies go through lbd)
#
# The kernel interfaces DPDK drives carry no IP address, so the kernel in lbt-lb never answers
# for lbd's addresses; their IPv6 is off (no link-local address, router solicitation, MLD report
# or DAD probe on lbd's wires), as is lbt-sw's, which only bridges. Every link with a kernel
# address has IPv6 on (disable_ipv6=0), its IPv6 addresses added `nodad` (usable at once). IPv6
# routes are all static: no namespace forwards IPv6, solicits or takes router advertisements.
# br0 does no MLD snooping: lbd joins no multicast group, yet neighbour solicitations for its addresses
# go to their solicited-node groups. Checksum offload and TSO/GSO/GRO are off on every veth:
# af_packet would otherwise see partial checksums and super-packets. lbd gets its IPv6
# addresses from the config (address6, local_addresses).
#
# Environment: FULCRUM_BUILD (build dir holding ctl/daemon/lbd and ctl/cli/lbctl; default
# ./build), FULCRUM_TESTBED_NO_LBD=1 (topology only), FULCRUM_TESTBED_BUSY_POLL=1 (workers
# busy-poll), FULCRUM_TESTBED_LOG_LEVEL (lbd's log_level, default info),
# FULCRUM_TESTBED_NO_HEALTHD=1 (do not start lb-healthd), FULCRUM_TESTBED_PORTS=af_packet|af_xdp
# (the DPDK driver of lbd's two ports, below; default af_packet).
set -Eeuo pipefail

readonly NS_CLIENT=lbt-client
readonly NS_LB=lbt-lb
readonly NS_SW=lbt-sw
readonly BACKENDS=(1 2 3 4)
readonly RUN_DIR=/run/fulcrum-testbed
readonly STATE_DIR=/var/lib/fulcrum-testbed
readonly CONFIG="$RUN_DIR/lbd.json"
readonly PID_FILE="$RUN_DIR/lbd.pid"
readonly LOG_FILE="$RUN_DIR/lbd.log"
readonly SOCKET=/run/lbd/lbd.sock
readonly EAL_PREFIX=fulcrum-testbed
readonly WORKERS=2
# Frames of each port's receive ring: what the kernel holds while a worker is away (two vCPUs
# shared with the clients and backends); 1024 overflows under a bulk TCP flow.
readonly RX_DESCRIPTORS=4096
readonly START_TIMEOUT_S=20
readonly STOP_TIMEOUT_S=10
BUILD_DIR=${FULCRUM_BUILD:-./build}
readonly LBD="$BUILD_DIR/ctl/daemon/lbd"
readonly LBCTL="$BUILD_DIR/ctl/cli/lbctl"
readonly LB_HEALTHD="$BUILD_DIR/healthcheck/lb-healthd"
readonly HEALTHD_PID_FILE="$RUN_DIR/lb-healthd.pid"
readonly HEALTHD_LOG_FILE="$RUN_DIR/lb-healthd.log"

log() { printf 'testbed: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

all_namespaces() {
  printf '%s\n' "$NS_CLIENT" "$NS_LB" "$NS_SW"
  local n
  for n in "${BACKENDS[@]}"; do
    printf 'lbt-be%s\n' "$n"
  done
}

ns_exists() { [[ -e /run/netns/$1 ]]; }

in_ns() {  # in_ns NS COMMAND...
  local ns=$1
  shift
  ip netns exec "$ns" "$@"
}

require_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, DPDK)"
  local tool
  for tool in ip ethtool sysctl; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
  done
}

# --- topology -------------------------------------------------------------------------------

# make_namespace NS LINK_IPV6: lo has the kernel's IPv6 either way; links created in NS later
# have it when LINK_IPV6 is 1 (ipv6_on turns it on for one link when it is 0). A host with IPv6
# neither solicits nor accepts router advertisements: its routes are static.
make_namespace() {
  local ns=$1 link_ipv6=$2
  ip netns add "$ns"
  # Writing "all" writes "default" too, so "default" comes second.
  in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0
  in_ns "$ns" sysctl -qw "net.ipv6.conf.default.disable_ipv6=$((1 - link_ipv6))"
  in_ns "$ns" sysctl -qw net.ipv6.conf.default.router_solicitations=0
  in_ns "$ns" sysctl -qw net.ipv6.conf.default.accept_ra=0
  ip -n "$ns" link set lo up
}

ipv6_on() {  # ipv6_on NS DEV, before DEV gets an IPv6 address
  in_ns "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=0"
}

# veth NS_A NAME_A NS_B NAME_B: a pair created directly inside the two namespaces, so that
# nothing ever appears in the root namespace.
veth() {
  ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
  quiet_offloads "$1" "$2"
  quiet_offloads "$3" "$4"
  ip -n "$1" link set "$2" up
  ip -n "$3" link set "$4" up
}

quiet_offloads() {
  local ns=$1 dev=$2 feature
  for feature in rx tx tso gso gro lro; do
    # Some features are fixed on veth; the ones that matter (rx, tx, tso, gso, gro) are not.
    in_ns "$ns" ethtool -K "$dev" "$feature" off >/dev/null 2>&1 || true
  done
  local features
  features=$(in_ns "$ns" ethtool -k "$dev")
  [[ $features == *"tx-checksumming: off"* && $features == *"generic-segmentation-offload: off"* ]] ||
    die "$ns/$dev: tx checksum offload or GSO is still on"
}

build_topology() {
  local ns n
  while read -r ns; do
    case $ns in
      "$NS_LB" | "$NS_SW") make_namespace "$ns" 0 ;;
      *) make_namespace "$ns" 1 ;;
    esac
  done < <(all_namespaces)

  ip -n "$NS_SW" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
  ip -n "$NS_SW" link set br0 up

  veth "$NS_CLIENT" lbt-c "$NS_LB" lb-c
  veth "$NS_LB" lb-b "$NS_SW" sw-lb
  veth "$NS_LB" lb-m "$NS_SW" sw-m
  ip -n "$NS_SW" link set sw-lb master br0
  ip -n "$NS_SW" link set sw-m master br0

  # The second client address (198.18.0.3, 2001:db8::3) is for ACL and blocklist tests: only
  # a client that binds it uses it (a secondary IPv4 address; a deprecated IPv6 one, which the
  # kernel never picks as a source on its own).
  ip -n "$NS_CLIENT" addr add 198.18.0.2/24 dev lbt-c
  ip -n "$NS_CLIENT" addr add 198.18.0.3/24 dev lbt-c
  ip -n "$NS_CLIENT" route add 198.18.100.0/24 via 198.18.0.1
  ip -n "$NS_CLIENT" addr add 2001:db8::2/64 dev lbt-c nodad
  ip -n "$NS_CLIENT" addr add 2001:db8::3/64 dev lbt-c nodad preferred_lft 0
  ip -n "$NS_CLIENT" route add 2001:db8:100::/64 via 2001:db8::1
  ip -n "$NS_LB" addr add 198.18.1.254/24 dev lb-m
  ipv6_on "$NS_LB" lb-m
  ip -n "$NS_LB" addr add 2001:db8:1::fe/64 dev lb-m nodad

  for n in "${BACKENDS[@]}"; do
    ns="lbt-be$n"
    veth "$ns" eth0 "$NS_SW" "sw-be$n"
    ip -n "$NS_SW" link set "sw-be$n" master br0
    ip -n "$ns" addr add "198.18.1.1$n/24" dev eth0
    ip -n "$ns" route add default via 198.18.1.1
    ip -n "$ns" addr add "2001:db8:1::1$n/64" dev eth0 nodad
    ip -n "$ns" route add default via 2001:db8:1::1
  done
}

# --- lbd ------------------------------------------------------------------------------------

worker_cpus() {  # one CPU per worker after CPU 0, wrapping: workers share the CPUs
  local cpus count i list=""
  cpus=$(nproc)
  count=$WORKERS
  for ((i = 0; i < count; i++)); do
    list+="${list:+, }$(((1 + i) % cpus))"
  done
  printf '%s' "$list"
}

# port_vdev N IFACE: the DPDK vdev for lbd's port on IFACE. af_packet (the default), with a
# queue pair per worker (lbd adds qpairs) over which the kernel's fanout spreads flows by hash,
# each flow on one queue (lbd turns the fanout's rollover off); or, with
# FULCRUM_TESTBED_PORTS=af_xdp, an AF_XDP socket on the veth's one queue (native XDP).
port_vdev() {
  case ${FULCRUM_TESTBED_PORTS:-af_packet} in
    af_packet) printf 'net_af_packet%s,iface=%s' "$1" "$2" ;;
    af_xdp) printf 'net_af_xdp%s,iface=%s,start_queue=0,queue_count=1' "$1" "$2" ;;
    *) die "FULCRUM_TESTBED_PORTS must be af_packet or af_xdp, not ${FULCRUM_TESTBED_PORTS}" ;;
  esac
}

# reserve_hugepages N: at least N free 2 MiB hugepages, and hugetlbfs mounted for EAL.
reserve_hugepages() {
  local want=$1 free total
  free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
  total=$(awk '/^HugePages_Total:/ {print $2}' /proc/meminfo)
  if ((free < want)); then
    echo $((total + want - free)) >/proc/sys/vm/nr_hugepages
    free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
    ((free >= want)) || die "af_xdp ports need $want free 2 MiB hugepages; the kernel gave $free"
  fi
  if ! grep -qs ' hugetlbfs ' /proc/mounts; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs nodev /dev/hugepages || die "cannot mount hugetlbfs on /dev/hugepages"
  fi
}

write_config() {
  mkdir -p "$RUN_DIR" "$STATE_DIR"
  local busy_poll=false
  [[ ${FULCRUM_TESTBED_BUSY_POLL:-0} == 1 ]] && busy_poll=true
  # af_xdp needs hugepages (lbd refuses it with no_huge): 1 GiB of them, reserved here and
  # left reserved. --huge-unlink: EAL's hugepage files go as soon as they are mapped, so the
  # pages return to the kernel's pool when lbd exits instead of staying held by the files.
  local eal_memory='"no_huge": true, "memory_mb": 512'
  if [[ ${FULCRUM_TESTBED_PORTS:-af_packet} == af_xdp ]]; then
    reserve_hugepages 512
    eal_memory='"no_huge": false, "memory_mb": 1024, "extra_args": ["--huge-unlink"]'
  fi
  cat >"$CONFIG" <<EOF
{
  "socket": "$SOCKET",
  "state_file": "$STATE_DIR/state.json",
  "log_level": "${FULCRUM_TESTBED_LOG_LEVEL:-info}",
  "busy_poll": $busy_poll,
  "eal": {"main_cpu": 0, $eal_memory, "file_prefix": "$EAL_PREFIX"},
  "workers": {"count": $WORKERS, "cpus": [$(worker_cpus)]},
  "ports": [
    {"name": "client", "vdev": "$(port_vdev 0 lb-c)",
     "address": "198.18.0.1/24", "address6": "2001:db8::1/64",
     "rx_descriptors": $RX_DESCRIPTORS},
    {"name": "backend", "vdev": "$(port_vdev 1 lb-b)",
     "address": "198.18.1.1/24", "address6": "2001:db8:1::1/64",
     "local_addresses": ["198.18.1.2-198.18.1.5", "2001:db8:1::2-2001:db8:1::5"],
     "rx_descriptors": $RX_DESCRIPTORS}
  ]
}
EOF
}

lbd_pid() {  # prints the pid of the lbd this script started, if it still runs
  [[ -f $PID_FILE ]] || return 1
  local pid
  pid=$(cat "$PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  local cmdline
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == *"--config $CONFIG"* ]] || return 1
  printf '%s' "$pid"
}

socket_answers() {
  [[ -S $SOCKET ]] || return 1
  if [[ -x $LBCTL ]]; then
    "$LBCTL" --socket "$SOCKET" status >/dev/null 2>&1
  elif command -v socat >/dev/null; then
    socat -u OPEN:/dev/null "UNIX-CONNECT:$SOCKET" >/dev/null 2>&1
  else
    nc -zU "$SOCKET" >/dev/null 2>&1
  fi
}

start_lbd() {
  [[ -x $LBD ]] || die "no lbd at $LBD (build first, or set FULCRUM_BUILD)"
  lbd_pid >/dev/null && die "lbd already runs (pid $(lbd_pid))"
  mkdir -p "$RUN_DIR" "$STATE_DIR" "$(dirname "$SOCKET")"
  log "starting lbd in $NS_LB (log $LOG_FILE)"
  local lbd_path
  lbd_path=$(realpath "$LBD")
  # setsid: lbd outlives this shell and its terminal; ip netns exec execs, so $! is lbd.
  setsid ip netns exec "$NS_LB" "$lbd_path" --config "$CONFIG" >>"$LOG_FILE" 2>&1 </dev/null &
  local pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until socket_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "lbd exited during start-up; last log lines:"
      tail -n 30 "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "lbd did not answer on $SOCKET within ${START_TIMEOUT_S}s; last log lines:"
      tail -n 30 "$LOG_FILE" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  log "lbd running (pid $pid), socket $SOCKET"
}

healthd_pid() {  # prints the pid of the lb-healthd this script started, if it still runs
  [[ -f $HEALTHD_PID_FILE ]] || return 1
  local pid
  pid=$(cat "$HEALTHD_PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == *lb-healthd* ]] || return 1
  printf '%s' "$pid"
}

# lb-healthd probes from lbt-lb over the management veth (198.18.1.254 and 2001:db8:1::fe, one
# source per family), with the kernel's stack, and reports to lbd over the same socket lbctl
# uses.
start_healthd() {
  [[ -x $LB_HEALTHD ]] || die "no lb-healthd at $LB_HEALTHD (build first, or set FULCRUM_BUILD)"
  healthd_pid >/dev/null && die "lb-healthd already runs (pid $(healthd_pid))"
  local path
  path=$(realpath "$LB_HEALTHD")
  setsid ip netns exec "$NS_LB" "$path" --socket "$SOCKET" --source 198.18.1.254 --source 2001:db8:1::fe \
    >>"$HEALTHD_LOG_FILE" 2>&1 </dev/null &
  printf '%s\n' "$!" >"$HEALTHD_PID_FILE"
  log "lb-healthd running (pid $!, log $HEALTHD_LOG_FILE)"
}

stop_healthd() {
  local pid
  if pid=$(healthd_pid); then
    log "stopping lb-healthd (pid $pid)"
    terminate "$pid"
  fi
  rm -f "$HEALTHD_PID_FILE"
}

# Sends TERM, waits (bounded), then KILL. Only to pids this test bed owns.
terminate() {
  local pid=$1 deadline=$((SECONDS + STOP_TIMEOUT_S))
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "pid $pid ignored TERM for ${STOP_TIMEOUT_S}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
}

stop_lbd() {
  local pid
  if pid=$(lbd_pid); then
    log "stopping lbd (pid $pid)"
    terminate "$pid"
  fi
  rm -f "$PID_FILE"
  # A killed lbd leaves its socket behind; nothing else may own the test bed's socket now.
  [[ -S $SOCKET ]] && rm -f "$SOCKET"
  return 0
}

# Processes still inside the bed's namespaces (clients, servers, probers started by tests)
# keep a namespace alive after `ip netns del`; they belong to the bed, so they go with it.
stop_namespace_processes() {
  local ns pid
  while read -r ns; do
    ns_exists "$ns" || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      terminate "$pid"
    done
  done < <(all_namespaces)
}

# --- commands -------------------------------------------------------------------------------

cmd_up() {
  require_root
  local ns
  while read -r ns; do
    ns_exists "$ns" && die "namespace $ns exists: the bed is (partly) up; run '$0 down' first"
  done < <(all_namespaces)
  if [[ ${FULCRUM_TESTBED_NO_LBD:-0} != 1 ]]; then
    [[ -x $LBD ]] || die "no lbd at $LBD (build first, set FULCRUM_BUILD, or FULCRUM_TESTBED_NO_LBD=1)"
  fi
  trap 'log "up failed; run \"$0 down\" to clean up"' ERR
  build_topology
  write_config
  log "topology up; lbd config $CONFIG"
  if [[ ${FULCRUM_TESTBED_NO_LBD:-0} == 1 ]]; then
    log "FULCRUM_TESTBED_NO_LBD=1: not starting lbd"
  else
    start_lbd
    [[ ${FULCRUM_TESTBED_NO_HEALTHD:-0} == 1 ]] || start_healthd
  fi
  trap - ERR
}

cmd_down() {
  require_root
  stop_healthd
  stop_lbd
  stop_namespace_processes
  local ns
  while read -r ns; do
    if ns_exists "$ns"; then
      ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"
    fi
  done < <(all_namespaces)
  rm -rf "$RUN_DIR" "$STATE_DIR" "/var/run/dpdk/$EAL_PREFIX"
  rmdir "$(dirname "$SOCKET")" 2>/dev/null || true  # only when empty
  log "down"
}

require_bed_up() {
  ns_exists "$NS_LB" || die "the bed is not up; run '$0 up'"
  [[ -f $CONFIG ]] || die "no config at $CONFIG; run '$0 down' and '$0 up'"
}

cmd_restart() {
  require_root
  require_bed_up
  stop_lbd
  start_lbd
}

cmd_status() {
  local ns pid
  echo "namespaces:"
  while read -r ns; do
    if ns_exists "$ns"; then
      echo "  $ns"
      ip -n "$ns" -brief address show | sed 's/^/    /'
    else
      echo "  $ns (absent)"
    fi
  done < <(all_namespaces)
  if ns_exists "$NS_SW"; then
    echo "bridge br0 ports:"
    ip -n "$NS_SW" -brief link show master br0 | sed 's/^/  /'
  fi
  if pid=$(healthd_pid); then
    echo "lb-healthd: running, pid $pid, log $HEALTHD_LOG_FILE"
  else
    echo "lb-healthd: not running"
  fi
  if pid=$(lbd_pid); then
    echo "lbd: running, pid $pid, config $CONFIG, log $LOG_FILE"
    if [[ -x $LBCTL ]]; then
      "$LBCTL" --socket "$SOCKET" status || echo "lbd: not answering on $SOCKET"
    elif socket_answers; then
      echo "lbd: answering on $SOCKET"
    else
      echo "lbd: not answering on $SOCKET"
    fi
  else
    echo "lbd: not running"
  fi
}

main() {
  case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    restart) cmd_restart ;;
    prober)
      require_root
      case "${2:-}" in
        start) start_healthd ;;
        stop) stop_healthd ;;
        *) die "usage: $0 prober start|stop" ;;
      esac
      ;;
    lbd)
      require_root
      case "${2:-}" in
        start) require_bed_up && start_lbd ;;
        stop) stop_lbd ;;
        *) die "usage: $0 lbd start|stop" ;;
      esac
      ;;
    status) cmd_status ;;
    *)
      echo "usage: $0 up|down|restart|status|prober start|stop|lbd start|stop" >&2
      exit 2
      ;;
  esac
}

main "$@"
