#!/usr/bin/env bash
# Fulcrum side by side with Linux nftables DNAT and HAProxy on the namespace test bed (BRIEF §4).
#
#   scripts/bench-testbed.sh [--seconds N] [--runs N] [--quick] [--json] [--connections N]
#                            [--udp-outstanding N] [--bulk-seconds N] [--only-bulk | --no-bulk]
#
# The same client (lbt-client), the same four backends (lbt-be1..4: nginx on 80, and an echo
# server `udp-rr --serve 5354` that this script starts) and the same workload go through three
# load balancers in turn, each set up by this script in lbt-lb and torn down completely before
# the next:
#   Fulcrum    lbd (af_packet ports, or af_xdp with FULCRUM_TESTBED_PORTS=af_xdp when this
#              script brings the bed up: as scripts/testbed.sh runs it), fnat, wrr over the four
#              backends, a tcp listener on VIP:80 and a udp listener on VIP:53; a tcp listener
#              on VIP:5201 whose group holds only 198.18.1.11:5201 (bulk; --hc-type none);
#   HAProxy    `mode tcp`, roundrobin, nbthread 2, bound to VIP:80 (no UDP: n/a); a `listen`
#              on VIP:5201 -> 198.18.1.11:5201;
#   nftables   DNAT with kernel conntrack: ip_forward on, `dnat to numgen inc mod 4 map`,
#              tcp VIP:80 -> backend:80 and udp VIP:53 -> backend:5354; tcp VIP:5201 ->
#              198.18.1.11:5201.
# For the two kernel load balancers lbd is stopped and the kernel in lbt-lb gets the addresses
# lbd owns otherwise (198.18.0.1/24 and the VIP on lb-c, 198.18.1.1/24 on lb-b); the backends
# already route their default via 198.18.1.1, so replies come back through lbt-lb. lb-m (the
# management veth, same subnet as lb-b) is taken down meanwhile so that the kernel has exactly
# one way to the backends, and lb-healthd is stopped for the whole run.
#
# Workload, from lbt-client, per load balancer:
#   wrk -t1 -cC -dS --latency http://VIP/whoami                        (keep-alive)
#   wrk -t1 -cC -dS --latency -H 'Connection: close' http://VIP/whoami  (a new connection each)
#   udp-rr --target VIP:53 --outstanding U --seconds S                  (U flows, 1 in flight each)
# and the CPU the load balancer used during the keep-alive run (see the notes printed with the
# table for what each CPU column covers). The client namespace runs with tcp_tw_reuse=1, as
# load generators do (restored afterwards), so that its own ports do not set the
# new-connection rate.
#
# Bulk TCP, per load balancer after the workload above (--no-bulk skips it, --only-bulk runs it
# alone): iperf3 -J from lbt-client to VIP:5201, all to ONE iperf3 server (`iperf3 -s -D`,
# started in lbt-be1 for the bulk part and stopped after it), each transfer --bulk-seconds S
# long (default 6, --quick 2) and bounded by `timeout` (S + 15 s):
#   1 stream client -> backend, 1 stream backend -> client (-R), 4 streams (-P 4), 4 streams -R;
# those four on the clean path, then again with 1% random loss: for that a bridge-family nft
# table in lbt-sw (br0, between the load balancer's backend side and the backends) drops 1% of
# the forwarded TCP frames in both directions; it is removed after the lossy transfers and by
# the exit trap. Per transfer: the receiver's Gbit/s (end.sum_received.bits_per_second), the
# sender's retransmits (end.sum_sent.retransmits) as a share of the data segments sent
# (TcpOutSegs delta in the sending namespace), and the kernels' reordering counters (sender:
# TcpExtTCPSACKReorder + TCPTSReorder + TCPRenoReorder; receiver: TcpExtTCPOFOQueue), read as
# absolute values with `nstat -asz` before and after (nstat's history file is per user, shared
# by all namespaces). lbt-lb's counters are added to both sides and its retransmits shown apart:
# only HAProxy terminates TCP there. A transfer that fails is reported as failed, not as 0.
#
# With --runs N the three take turns N times on the same bed (F, H, N, F, H, N, ...), and every
# figure is reported as the median of the N runs. Prints a markdown table (ratios to Fulcrum in
# parentheses; with N > 1 one table per run, then the medians) and the bulk table (medians), or
# with --json one JSON object (the bulk figures under "bulk").
# Progress goes to stderr. If the test bed is not up, the script brings it up and down again;
# if it is up, the script leaves it as it found it (lbd, lb-healthd and the backends' servers
# running or not as before). Needs root. Environment: FULCRUM_BUILD (default ./build).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
readonly REPO=$PWD

SECONDS_PER_RUN=10
RUNS=1
QUICK=0
JSON=0
CONNECTIONS=32
UDP_OUTSTANDING=64
BULK_SECONDS=6
REQUEST_RESPONSE=1  # 0 with --only-bulk
BULK=1              # 0 with --no-bulk

readonly VIP=198.18.100.80
readonly UDP_VIP_PORT=53
readonly UDP_ECHO_PORT=5354
readonly BACKEND_IDS=(1 2 3 4)
readonly NS_CLIENT=lbt-client
readonly NS_LB=lbt-lb
readonly NFT_TABLE=fulcrum_bench
readonly RUN_DIR=/run/fulcrum-testbed
readonly LBD_PID_FILE=$RUN_DIR/lbd.pid
readonly LBD_CONFIG=$RUN_DIR/lbd.json
readonly LBD_SOCKET=/run/lbd/lbd.sock
readonly HEALTHD_PID_FILE=$RUN_DIR/lb-healthd.pid
readonly WARMUP_S=1
readonly STOP_TIMEOUT_S=10
readonly NS_SW=lbt-sw
readonly NS_BULK=lbt-be1
readonly BULK_BACKEND=198.18.1.11
readonly BULK_PORT=5201
readonly LOSS_TABLE=fulcrum_bench_loss
readonly LOSS_PCT=1
readonly BULK_PATHS=(clean loss)
readonly BULK_TRANSFERS=(c2b-1 b2c-1 c2b-4 b2c-4)  # direction-streams
readonly TCP_COUNTERS=(TcpOutSegs TcpRetransSegs TcpExtTCPSACKReorder TcpExtTCPTSReorder
  TcpExtTCPRenoReorder TcpExtTCPOFOQueue)

usage() {
  cat >&2 <<EOF
usage: $0 [--seconds N] [--runs N] [--quick] [--json] [--connections N] [--udp-outstanding N]
          [--bulk-seconds N] [--only-bulk | --no-bulk]
  --seconds N          length of each measured run (default 10, 1..300)
  --runs N             take turns N times and report medians (default 1, 1..10)
  --quick              2 s runs and 2 s bulk transfers (a smoke check)
  --json               print one JSON object instead of the markdown tables
  --connections N      wrk connections (default 32)
  --udp-outstanding N  UDP flows, one request in flight each (default 64)
  --bulk-seconds N     length of each iperf3 bulk transfer (default 6, 1..120)
  --only-bulk          only the bulk TCP transfers (no wrk, no UDP)
  --no-bulk            no bulk TCP transfers
EOF
  exit 2
}

log() { printf 'bench-testbed: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

is_count() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); }

while (($# > 0)); do
  case $1 in
    --seconds)
      { (($# >= 2)) && is_count "$2" 1 300; } || usage
      SECONDS_PER_RUN=$2
      shift 2
      ;;
    --runs)
      { (($# >= 2)) && is_count "$2" 1 10; } || usage
      RUNS=$2
      shift 2
      ;;
    --quick)
      QUICK=1
      shift
      ;;
    --json)
      JSON=1
      shift
      ;;
    --connections)
      { (($# >= 2)) && is_count "$2" 1 4000; } || usage
      CONNECTIONS=$2
      shift 2
      ;;
    --udp-outstanding)
      { (($# >= 2)) && is_count "$2" 1 4096; } || usage
      UDP_OUTSTANDING=$2
      shift 2
      ;;
    --bulk-seconds)
      { (($# >= 2)) && is_count "$2" 1 120; } || usage
      BULK_SECONDS=$2
      shift 2
      ;;
    --only-bulk)
      REQUEST_RESPONSE=0
      shift
      ;;
    --no-bulk)
      BULK=0
      shift
      ;;
    *) usage ;;
  esac
done
((REQUEST_RESPONSE == 1 || BULK == 1)) || usage
if ((QUICK == 1)); then
  SECONDS_PER_RUN=2
  BULK_SECONDS=2
fi
readonly SECONDS_PER_RUN RUNS QUICK JSON CONNECTIONS UDP_OUTSTANDING BULK_SECONDS
readonly REQUEST_RESPONSE BULK
readonly RUN_TIMEOUT_S=$((SECONDS_PER_RUN + 30))  # a hard bound on every client run
readonly BULK_TIMEOUT_S=$((BULK_SECONDS + 15))    # and on every iperf3 transfer

BUILD_DIR=$(realpath -m "${FULCRUM_BUILD:-$REPO/build}")
readonly BUILD_DIR
readonly LBCTL_BIN=$BUILD_DIR/ctl/cli/lbctl
readonly UDP_RR=$BUILD_DIR/bench/udp-rr
export FULCRUM_BUILD=$BUILD_DIR

# --- preconditions --------------------------------------------------------------------------

[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, lbd, nftables, haproxy)"
for tool in ip nft haproxy wrk curl jq awk timeout setsid getconf; do
  command -v "$tool" >/dev/null || die "missing tool: $tool (scripts/setup.sh installs it)"
done
if ((BULK == 1)); then
  for tool in iperf3 nstat ss; do
    command -v "$tool" >/dev/null || die "missing tool: $tool (needed for the bulk transfers)"
  done
fi
[[ -x $BUILD_DIR/ctl/daemon/lbd ]] || die "no lbd in $BUILD_DIR (build first, or set FULCRUM_BUILD)"
[[ -x $LBCTL_BIN ]] || die "no lbctl in $BUILD_DIR (build first, or set FULCRUM_BUILD)"
[[ -x $UDP_RR ]] || die "no udp-rr in $BUILD_DIR/bench (build first, or set FULCRUM_BUILD)"
CLK_TCK=$(getconf CLK_TCK)
readonly CLK_TCK

lbctl() { "$LBCTL_BIN" --socket "$LBD_SOCKET" "$@"; }
in_ns() {
  local ns=$1
  shift
  ip netns exec "$ns" "$@"
}

TMP=$(mktemp -d /tmp/fulcrum-bench-testbed.XXXXXX)
readonly TMP

# --- what we found, and what we changed (the cleanup undoes exactly that) ---------------------

BED_BROUGHT_UP=0
LBD_WAS_RUNNING=0
HEALTHD_WAS_RUNNING=0
BACKENDS_STARTED=0
FULCRUM_LB=""
HAPROXY_PID=""
ECHO_PIDS=()
KERNEL_LB_ON=0
LB_M_WAS_UP=0
IP_FORWARD_BEFORE=""
CLIENT_TW_REUSE_BEFORE=""
IPERF_PID=""

bed_namespaces() {
  printf '%s\n' lbt-client lbt-lb lbt-sw
  local n
  for n in "${BACKEND_IDS[@]}"; do printf 'lbt-be%s\n' "$n"; done
}

bed_state() {  # prints up, down or partial
  local ns present=0 total=0
  while read -r ns; do
    total=$((total + 1))
    [[ -e /run/netns/$ns ]] && present=$((present + 1))
  done < <(bed_namespaces)
  if ((present == total)); then
    echo up
  elif ((present == 0)); then
    echo down
  else
    echo partial
  fi
}

pid_from_file() {  # pid_from_file FILE PATTERN: the live pid in FILE whose cmdline has PATTERN
  [[ -s $1 ]] || return 1
  local pid
  pid=$(cat "$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == *"$2"* ]] || return 1
  printf '%s' "$pid"
}

lbd_pid() { pid_from_file "$LBD_PID_FILE" "--config $LBD_CONFIG"; }
healthd_pid() { pid_from_file "$HEALTHD_PID_FILE" lb-healthd; }

backends_running() {
  local n
  for n in "${BACKEND_IDS[@]}"; do
    pid_from_file "$RUN_DIR/be$n/nginx.pid" nginx >/dev/null || return 1
  done
}

terminate() {  # terminate PID: TERM, a bounded wait, then KILL
  local pid=$1 deadline=$((SECONDS + STOP_TIMEOUT_S))
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_lbd() { "$REPO/scripts/testbed.sh" lbd stop >&2; }

start_lbd() {
  "$REPO/scripts/testbed.sh" lbd start >&2 || return 1
  lbd_pid >/dev/null
}

# --- teardown of each load balancer (idempotent; also the exit trap's work) -------------------

teardown_fulcrum() {
  if [[ -n $FULCRUM_LB ]]; then
    lbctl lb delete "$FULCRUM_LB" >/dev/null 2>&1 || log "could not delete $FULCRUM_LB from lbd"
    FULCRUM_LB=""
  fi
  stop_lbd
}

teardown_haproxy() {
  [[ -n $HAPROXY_PID ]] || return 0
  terminate "$HAPROXY_PID"
  HAPROXY_PID=""
}

teardown_nft() {
  in_ns "$NS_LB" nft list table ip "$NFT_TABLE" >/dev/null 2>&1 || return 0
  in_ns "$NS_LB" nft delete table ip "$NFT_TABLE" || log "could not delete nft table $NFT_TABLE"
}

stop_echo_servers() {
  local pid
  for pid in "${ECHO_PIDS[@]}"; do terminate "$pid"; done
  ECHO_PIDS=()
}

stop_bulk_server() {
  local pid=$IPERF_PID
  [[ -n $pid ]] || pid=$(pid_from_file "$TMP/iperf3.pid" iperf3) || return 0
  terminate "$pid"
  IPERF_PID=""
}

# Removes the lossy path's table from the backend switch (also one an interrupted run left).
loss_off() {
  in_ns "$NS_SW" nft list table bridge "$LOSS_TABLE" >/dev/null 2>&1 || return 0
  in_ns "$NS_SW" nft delete table bridge "$LOSS_TABLE" || {
    log "could not delete nft table bridge $LOSS_TABLE in $NS_SW"
    return 1
  }
}

# Gives the kernel in lbt-lb the addresses lbd owns when it runs.
kernel_lb_on() {
  KERNEL_LB_ON=1
  IP_FORWARD_BEFORE=$(in_ns "$NS_LB" sysctl -n net.ipv4.ip_forward)
  if ip -n "$NS_LB" link show lb-m 2>/dev/null | grep -q '[<,]UP[,>]'; then
    LB_M_WAS_UP=1
    ip -n "$NS_LB" link set lb-m down || return 1
  fi
  ip -n "$NS_LB" addr add 198.18.0.1/24 dev lb-c &&
    ip -n "$NS_LB" addr add "$VIP/32" dev lb-c &&
    ip -n "$NS_LB" addr add 198.18.1.1/24 dev lb-b
}

kernel_lb_off() {
  ((KERNEL_LB_ON == 1)) || return 0
  ip -n "$NS_LB" addr del 198.18.0.1/24 dev lb-c 2>/dev/null || true
  ip -n "$NS_LB" addr del "$VIP/32" dev lb-c 2>/dev/null || true
  ip -n "$NS_LB" addr del 198.18.1.1/24 dev lb-b 2>/dev/null || true
  ip -n "$NS_LB" neigh flush dev lb-c 2>/dev/null || true
  ip -n "$NS_LB" neigh flush dev lb-b 2>/dev/null || true
  if [[ -n $IP_FORWARD_BEFORE ]]; then
    in_ns "$NS_LB" sysctl -qw "net.ipv4.ip_forward=$IP_FORWARD_BEFORE" || true
  fi
  if ((LB_M_WAS_UP == 1)); then
    ip -n "$NS_LB" link set lb-m up || log "could not bring lb-m up again"
    LB_M_WAS_UP=0
  fi
  KERNEL_LB_ON=0
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  stop_echo_servers
  stop_bulk_server
  loss_off
  teardown_haproxy
  teardown_nft
  kernel_lb_off
  if ((BED_BROUGHT_UP == 1)); then
    teardown_fulcrum
    "$REPO/scripts/backends.sh" stop >/dev/null 2>&1
    "$REPO/scripts/testbed.sh" down >/dev/null 2>&1 || log "testbed.sh down failed"
  elif [[ $(bed_state) == up ]]; then
    [[ -n $FULCRUM_LB ]] && lbctl lb delete "$FULCRUM_LB" >/dev/null 2>&1
    [[ -n $CLIENT_TW_REUSE_BEFORE ]] &&
      in_ns "$NS_CLIENT" sysctl -qw "net.ipv4.tcp_tw_reuse=$CLIENT_TW_REUSE_BEFORE"
    if ((LBD_WAS_RUNNING == 1)) && ! lbd_pid >/dev/null; then
      start_lbd >/dev/null 2>&1 || log "could not restart lbd; run scripts/testbed.sh restart"
    elif ((LBD_WAS_RUNNING == 0)); then
      stop_lbd
    fi
    if ((HEALTHD_WAS_RUNNING == 1)) && ! healthd_pid >/dev/null; then
      "$REPO/scripts/testbed.sh" prober start >/dev/null 2>&1 || log "could not restart lb-healthd"
    fi
    ((BACKENDS_STARTED == 1)) && "$REPO/scripts/backends.sh" stop >/dev/null 2>&1
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- measurement --------------------------------------------------------------------------

cpu_totals() {  # prints "busy kernel" ticks over all CPUs from /proc/stat
  # user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
  awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9, $4 + $7 + $8}' /proc/stat
}

process_ticks() {  # "utime stime" of PID (all its threads); the comm field may hold spaces
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12, $13}'
}

to_ms() {  # wrk's latency ("643.00us", "5.16ms", "1.02s") in milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000;
    else if (v ~ /s$/) n *= 1000
    printf "%.3f", n }'
}

# run_wrk NAME LABEL [wrk args...]: writes $TMP/NAME.LABEL.json {rps, p99_ms, requests, errors}
run_wrk() {
  local name=$1 label=$2
  shift 2
  local out=$TMP/$name.$label.wrk
  if ! timeout "$RUN_TIMEOUT_S" ip netns exec "$NS_CLIENT" wrk -t1 -c"$CONNECTIONS" \
    -d"${SECONDS_PER_RUN}s" --latency "$@" "http://$VIP/whoami" >"$out" 2>&1; then
    log "$name: wrk ($label) failed: $(tail -n 3 "$out" | tr '\n' ' ')"
    return 1
  fi
  local rps p99 requests errors non2xx
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p99=$(awk '$1 == "99%" {print $2}' "$out")
  requests=$(awk '/ requests in / {print $1}' "$out")
  errors=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
  grep -E 'Socket errors|Non-2xx' "$out" | sed "s/^ */bench-testbed: $name ($label): /" >&2 || true
  [[ -n $rps && -n $p99 && -n $requests ]] || {
    log "$name: could not parse wrk's output ($label): $(tr '\n' ' ' <"$out")"
    return 1
  }
  jq -n --argjson rps "$rps" --argjson p99 "$(to_ms "$p99")" --argjson requests "$requests" \
    --argjson errors "${errors:-0}" --argjson non2xx "${non2xx:-0}" \
    '{rps: $rps, p99_ms: $p99, requests: $requests, socket_errors: $errors,
      non_2xx: $non2xx}' >"$TMP/$name.$label.json"
}

start_echo_servers() {
  local n
  for n in "${BACKEND_IDS[@]}"; do
    ip netns exec "lbt-be$n" "$UDP_RR" --serve "$UDP_ECHO_PORT" \
      --seconds $((RUN_TIMEOUT_S + 30)) 2>>"$TMP/echo.log" &
    ECHO_PIDS+=($!)
  done
  sleep 0.3
  local pid
  for pid in "${ECHO_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || {
      log "a UDP echo server did not start: $(cat "$TMP/echo.log")"
      return 1
    }
  done
}

run_udp() {  # run_udp NAME: writes $TMP/NAME.udp.json (udp-rr's object)
  local name=$1
  start_echo_servers || return 1
  local status=0
  timeout "$RUN_TIMEOUT_S" ip netns exec "$NS_CLIENT" "$UDP_RR" \
    --target "$VIP:$UDP_VIP_PORT" --outstanding "$UDP_OUTSTANDING" \
    --seconds "$SECONDS_PER_RUN" >"$TMP/$name.udp.json" 2>"$TMP/$name.udp.err" || status=$?
  stop_echo_servers
  if ((status != 0)) || ! jq -e . "$TMP/$name.udp.json" >/dev/null 2>&1; then
    log "$name: udp-rr failed: $(cat "$TMP/$name.udp.err")"
    return 1
  fi
}

wait_for_vip() {  # a few real requests must succeed before anything is measured
  local name=$1 tries=0
  until in_ns "$NS_CLIENT" curl -sf --max-time 1 -o /dev/null "http://$VIP/whoami"; do
    tries=$((tries + 1))
    ((tries < 30)) || {
      log "$name: http://$VIP/whoami does not answer"
      return 1
    }
    sleep 0.2
  done
}

# measure NAME PID|"" UDP(0|1): warm-up, keep-alive run with CPU, new-connection run, UDP run.
measure() {
  local name=$1 pid=$2 udp=$3
  wait_for_vip "$name" || return 1
  # Whatever else keeps the machine busy while the bed is idle competes with every run.
  local idle_before idle_after
  idle_before=$(cpu_totals)
  sleep 1
  idle_after=$(cpu_totals)
  jq -n --argjson busy "$((${idle_after% *} - ${idle_before% *}))" --argjson tck "$CLK_TCK" \
    --argjson cpus "$(nproc)" '{background_busy_pct: ($busy / $tck / $cpus * 100 | round)}' \
    >"$TMP/$name.background.json"
  timeout "$RUN_TIMEOUT_S" ip netns exec "$NS_CLIENT" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP_S}s" \
    "http://$VIP/whoami" >/dev/null 2>&1 || true

  log "$name: keep-alive, ${SECONDS_PER_RUN}s"
  local machine_before machine_after lb_before="0 0" lb_after="0 0"
  machine_before=$(cpu_totals)
  [[ -n $pid ]] && lb_before=$(process_ticks "$pid")
  run_wrk "$name" keepalive || return 1
  [[ -n $pid ]] && lb_after=$(process_ticks "$pid")
  machine_after=$(cpu_totals)
  jq -n --argjson tck "$CLK_TCK" \
    --argjson user "$((${lb_after% *} - ${lb_before% *}))" \
    --argjson system "$((${lb_after#* } - ${lb_before#* }))" \
    --argjson busy "$((${machine_after% *} - ${machine_before% *}))" \
    --argjson kernel "$((${machine_after#* } - ${machine_before#* }))" \
    --argjson process "$([[ -n $pid ]] && echo true || echo false)" \
    '{process: $process, lb_user_s: ($user / $tck), lb_system_s: ($system / $tck),
      machine_busy_s: ($busy / $tck), machine_kernel_s: ($kernel / $tck)}' >"$TMP/$name.cpu.json"

  sleep 1
  log "$name: new connection per request, ${SECONDS_PER_RUN}s"
  run_wrk "$name" newconn -H 'Connection: close' || return 1
  if ((udp == 1)); then
    sleep 1
    log "$name: UDP request/response, $UDP_OUTSTANDING flows, ${SECONDS_PER_RUN}s"
    run_udp "$name" || return 1
  fi
}

# --- bulk TCP (iperf3) ----------------------------------------------------------------------

start_bulk_server() {
  if in_ns "$NS_BULK" ss -Hltn "sport = :$BULK_PORT" | grep -q .; then
    log "bulk: something else already listens on port $BULK_PORT in $NS_BULK"
    return 1
  fi
  rm -f "$TMP/iperf3.pid"
  in_ns "$NS_BULK" iperf3 -s -D -B "$BULK_BACKEND" -p "$BULK_PORT" -I "$TMP/iperf3.pid" \
    --logfile "$TMP/iperf3.log" || {
    log "bulk: iperf3 -s did not start"
    return 1
  }
  local tries=0
  until IPERF_PID=$(pid_from_file "$TMP/iperf3.pid" iperf3) &&
    in_ns "$NS_BULK" ss -Hltn "sport = :$BULK_PORT" | grep -q .; do
    tries=$((tries + 1))
    ((tries < 30)) || {
      log "bulk: the iperf3 server does not listen: $(tail -n 3 "$TMP/iperf3.log" 2>/dev/null)"
      return 1
    }
    sleep 0.1
  done
}

# 1% of the TCP frames br0 forwards (both directions) dropped at random, counted before and at
# the drop so that the loss actually applied is known. This kernel has no netem.
loss_on() {
  in_ns "$NS_SW" nft -f - <<EOF
table bridge $LOSS_TABLE {
  chain forward {
    type filter hook forward priority filter; policy accept;
    meta l4proto tcp counter
    meta l4proto tcp numgen random mod 100 < $LOSS_PCT counter drop
  }
}
EOF
}

loss_counters() {  # prints [tcp frames seen, dropped] of the lossy path, [0,0] without it
  in_ns "$NS_SW" nft -j list table bridge "$LOSS_TABLE" 2>/dev/null |
    jq -c '[.nftables[].rule // empty | .expr[].counter // empty | .packets]' 2>/dev/null ||
    echo '[0,0]'
}

tcp_counters() {  # tcp_counters NS: NS's absolute TCP counters as one JSON object
  # -a absolute, -s no history update: nstat's history file is per user, not per namespace.
  NSTAT_HISTORY=$TMP/nstat.$1 in_ns "$1" nstat -asz --json "${TCP_COUNTERS[@]}" | jq -c .kernel
}

path_counters() {  # path_counters SENDER_NS RECEIVER_NS: {sender, receiver, lb, loss}
  local sender receiver lb
  sender=$(tcp_counters "$1") && receiver=$(tcp_counters "$2") && lb=$(tcp_counters "$NS_LB") ||
    return 1
  jq -nc --argjson s "$sender" --argjson r "$receiver" --argjson l "$lb" \
    --argjson loss "$(loss_counters)" '{sender: $s, receiver: $r, lb: $l, loss: $loss}'
}

# run_bulk_transfer NAME PATH TRANSFER: writes $TMP/NAME.bulk.PATH.TRANSFER.json, the figures
# or {failed: true, error}; TRANSFER is c2b-N or b2c-N (direction, streams).
run_bulk_transfer() {
  local name=$1 path=$2 transfer=$3
  local out=$TMP/$name.bulk.$path.$transfer streams=${transfer#*-} args=()
  local sender=$NS_CLIENT receiver=$NS_BULK
  if [[ $transfer == b2c-* ]]; then
    args+=(-R)
    sender=$NS_BULK
    receiver=$NS_CLIENT
  fi
  ((streams > 1)) && args+=(-P "$streams")
  local before after status=0 error=""
  before=$(path_counters "$sender" "$receiver") || error="nstat failed"
  if [[ -z $error ]]; then
    timeout "$BULK_TIMEOUT_S" ip netns exec "$NS_CLIENT" iperf3 -c "$VIP" -p "$BULK_PORT" \
      -t "$BULK_SECONDS" --connect-timeout 3000 -J "${args[@]}" >"$out.iperf.json" \
      2>"$out.err" || status=$?
    after=$(path_counters "$sender" "$receiver") || error="nstat failed"
  fi
  # iperf3 -J exits 0 with an "error" key for some failures (connection refused, for one).
  if ((status == 124)); then
    error="timed out after ${BULK_TIMEOUT_S}s"
  elif [[ -z $error ]]; then
    error=$(jq -r '.error // (if .end.sum_received.bits_per_second == null then
                     "no receiver summary" else empty end)' "$out.iperf.json" 2>/dev/null) ||
      error="no JSON from iperf3"
    ((status == 0)) || error="iperf3 exited with $status${error:+: $error}"
  fi
  if [[ -n $error ]]; then
    local detail
    detail=$(tail -n 2 "$out.err" 2>/dev/null | tr '\n' ' ')
    [[ -n ${detail// /} ]] && error+=" (${detail% })"
    jq -n --arg error "$error" '{failed: true, error: $error}' >"$out.json"
    return 1
  fi
  jq --argjson b "$before" --argjson a "$after" '
    def delta($ns): $a[$ns] as $x | $b[$ns] as $y | $x | with_entries(.value -= ($y[.key] // 0));
    def reorder: .TcpExtTCPSACKReorder + .TcpExtTCPTSReorder + .TcpExtTCPRenoReorder;
    def share($n; $of): if $of > 0 then $n / $of * 100 else null end;
    {sender: delta("sender"), receiver: delta("receiver"), lb: delta("lb")} as $k |
    .end.sum_sent.retransmits as $retransmits |
    {failed: false, gbps: (.end.sum_received.bits_per_second / 1e9),
     bytes_received: .end.sum_received.bytes,
     retransmits: $retransmits, segments_sent: $k.sender.TcpOutSegs,
     retransmit_pct: share($retransmits; $k.sender.TcpOutSegs),
     lb_retransmits: $k.lb.TcpRetransSegs,
     lb_retransmit_pct: share($k.lb.TcpRetransSegs; $k.sender.TcpOutSegs),
     reorder_sender: (($k.sender | reorder) + ($k.lb | reorder)),
     ofo_receiver: ($k.receiver.TcpExtTCPOFOQueue + $k.lb.TcpExtTCPOFOQueue),
     loss_path: {tcp_frames: ($a.loss[0] - $b.loss[0]), dropped: ($a.loss[1] - $b.loss[1])},
     kernel: $k}' "$out.iperf.json" >"$out.json" 2>"$out.err" || {
    jq -n --arg error "unreadable iperf3 JSON: $(head -c 200 "$out.err")" \
      '{failed: true, error: $error}' >"$out.json"
    return 1
  }
}

transfer_label() {
  local streams=${1#*-} direction="client→backend"
  [[ $1 == b2c-* ]] && direction="backend→client"
  if ((streams == 1)); then
    printf '1 stream %s' "$direction"
  else
    printf '%s streams %s' "$streams" "$direction"
  fi
}

# run_bulk NAME: the four transfers on the clean path, then on the lossy one. A failed transfer
# leaves its failure in its file and the others go on; returns 1 if any failed.
run_bulk() {
  local name=$1 path transfer failed=0
  start_bulk_server || return 1
  for path in "${BULK_PATHS[@]}"; do
    if [[ $path == loss ]] && ! loss_on; then
      log "$name: could not install the ${LOSS_PCT}% loss rule in $NS_SW"
      loss_off
      failed=1
      continue
    fi
    for transfer in "${BULK_TRANSFERS[@]}"; do
      sleep 1
      log "$name: bulk, $(transfer_label "$transfer"), $path, ${BULK_SECONDS}s"
      run_bulk_transfer "$name" "$path" "$transfer" && continue
      failed=1
      log "$name: bulk $transfer ($path) failed: $(jq -r .error "$TMP/$name.bulk.$path.$transfer.json")"
      # A client that timed out can leave the server in its test: start afresh.
      stop_bulk_server
      start_bulk_server || break
    done
    loss_off || failed=1
  done
  stop_bulk_server
  return "$failed"
}

# bulk_rows NAME LABEL RUN: one JSON line per transfer appended to $TMP/bulk-rows.jsonl.
bulk_rows() {
  local name=$1 label=$2 run=$3 path transfer file row
  for path in "${BULK_PATHS[@]}"; do
    for transfer in "${BULK_TRANSFERS[@]}"; do
      file=$TMP/$name.bulk.$path.$transfer.json
      row='{"failed": true, "error": "not run (see the log)"}'
      [[ -s $file ]] && row=$(cat "$file")
      jq -nc --argjson run "$run" --arg name "$name" --arg title "$label" --arg path "$path" \
        --arg transfer "$transfer" --arg tlabel "$(transfer_label "$transfer")" \
        --argjson row "$row" '{run: $run, lb: $name, label: $title, path: $path,
          transfer: $transfer, transfer_label: $tlabel} + $row' >>"$TMP/bulk-rows.jsonl"
    done
  done
}

# --- the three load balancers ---------------------------------------------------------------

bench_fulcrum() {
  if ! lbd_pid >/dev/null; then
    log "fulcrum: starting lbd"
    start_lbd || {
      log "fulcrum: lbd did not start"
      return 1
    }
  fi
  local pid web dns bulk n
  pid=$(lbd_pid)
  FULCRUM_LB=$(lbctl lb create --name bench-testbed --vip "$VIP") || return 1
  web=$(lbctl group create "$FULCRUM_LB" --name web) || return 1
  dns=$(lbctl group create "$FULCRUM_LB" --name echo) || return 1
  bulk=$(lbctl group create "$FULCRUM_LB" --name bulk) || return 1
  for n in "${BACKEND_IDS[@]}"; do
    lbctl group add-backend "$web" "198.18.1.1$n:80" >/dev/null || return 1
    lbctl group add-backend "$dns" "198.18.1.1$n:$UDP_ECHO_PORT" >/dev/null || return 1
  done
  lbctl group add-backend "$bulk" "$BULK_BACKEND:$BULK_PORT" >/dev/null || return 1
  lbctl listener create "$FULCRUM_LB" --protocol tcp --port 80 --group "$web" --mode fnat \
    --scheduler wrr --hc-type none >/dev/null || return 1
  lbctl listener create "$FULCRUM_LB" --protocol udp --port "$UDP_VIP_PORT" --group "$dns" \
    --mode fnat --scheduler wrr --hc-type none >/dev/null || return 1
  lbctl listener create "$FULCRUM_LB" --protocol tcp --port "$BULK_PORT" --group "$bulk" \
    --mode fnat --scheduler wrr --hc-type none >/dev/null || return 1
  local status=0
  if ((REQUEST_RESPONSE == 1)); then
    if measure fulcrum "$pid" 1; then
      lbctl --json stats >"$TMP/fulcrum.stats.json" 2>/dev/null || true
    else
      status=1
    fi
  fi
  if ((BULK == 1)); then
    bulk_part fulcrum || true
    log "lbd after the bulk transfers (counters since lbd started): $(lbctl --json stats 2>/dev/null |
      jq -c '{drops: .totals.drops, drop_reasons: (.drops | with_entries(select(.value > 0)))}')"
  fi
  return "$status"
}

# bulk_part NAME: the bulk transfers through a load balancer that is set up. With --only-bulk
# nothing else has checked yet that the VIP answers.
bulk_part() {
  local name=$1
  if ((REQUEST_RESPONSE == 0)); then
    wait_for_vip "$name" || return 1
  else
    sleep 1
  fi
  run_bulk "$name"
}

# rr_and_bulk NAME PID|"" UDP(0|1): the request/response part and the bulk part; the status is
# the request/response part's (bulk transfers report their own failures).
rr_and_bulk() {
  local status=0
  if ((REQUEST_RESPONSE == 1)); then
    measure "$@" || status=1
  fi
  if ((BULK == 1)); then
    bulk_part "$1" || true
  fi
  return "$status"
}

bench_haproxy() {
  kernel_lb_on || return 1
  local config=$TMP/haproxy.cfg n
  {
    # maxconn stays under the descriptor limit haproxy can raise itself to (2 fds a session).
    printf 'global\n  maxconn 4096\n  nbthread 2\n'
    printf 'defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n'
    printf '  timeout server 30s\n'
    printf 'frontend vip\n  bind %s:80\n  default_backend web\n' "$VIP"
    printf 'backend web\n  balance roundrobin\n'
    for n in "${BACKEND_IDS[@]}"; do printf '  server be%s 198.18.1.1%s:80\n' "$n" "$n"; done
    printf 'listen bulk\n  bind %s:%s\n  server be1 %s:%s\n' "$VIP" "$BULK_PORT" \
      "$BULK_BACKEND" "$BULK_PORT"
  } >"$config"
  haproxy -c -q -f "$config" || {
    log "haproxy: the generated config is invalid"
    return 1
  }
  # -db: foreground, one process (two threads), so $! is haproxy itself (ip netns exec execs).
  setsid ip netns exec "$NS_LB" haproxy -f "$config" -db >"$TMP/haproxy.log" 2>&1 </dev/null &
  HAPROXY_PID=$!
  sleep 0.3
  kill -0 "$HAPROXY_PID" 2>/dev/null || {
    log "haproxy exited: $(cat "$TMP/haproxy.log")"
    HAPROXY_PID=""
    return 1
  }
  rr_and_bulk haproxy "$HAPROXY_PID" 0
}

bench_nftables() {
  kernel_lb_on || return 1
  in_ns "$NS_LB" sysctl -qw net.ipv4.ip_forward=1 || return 1
  local map="" n i=0
  for n in "${BACKEND_IDS[@]}"; do
    map+="${map:+, }$i : 198.18.1.1$n"
    i=$((i + 1))
  done
  in_ns "$NS_LB" nft -f - <<EOF || return 1
table ip $NFT_TABLE {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr $VIP tcp dport 80 dnat to numgen inc mod ${#BACKEND_IDS[@]} map { $map }
    ip daddr $VIP udp dport $UDP_VIP_PORT dnat to numgen inc mod ${#BACKEND_IDS[@]} map { $map } : $UDP_ECHO_PORT
    ip daddr $VIP tcp dport $BULK_PORT dnat to $BULK_BACKEND:$BULK_PORT
  }
}
EOF
  rr_and_bulk nftables "" 1 || return 1
  log "nftables: $(in_ns "$NS_LB" cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null) conntrack entries in $NS_LB after the runs"
}

# --- report ---------------------------------------------------------------------------------

# One object per load balancer: its figures, or {"failed": true}.
lb_object() {  # lb_object NAME LABEL OK(0|1)
  local name=$1 label=$2 ok=$3
  if ((ok == 0)); then
    jq -n --arg name "$name" --arg title "$label" '{name: $name, label: $title, failed: true}'
    return
  fi
  local udp='null' stats='null'
  [[ -s $TMP/$name.udp.json ]] && udp=$(cat "$TMP/$name.udp.json")
  [[ -s $TMP/$name.stats.json ]] &&
    stats=$(jq -c '{drops: .totals.drops, drop_reasons: (.drops | with_entries(select(.value > 0))),
                     new_conns: .totals.new_conns, counters: .counters}' "$TMP/$name.stats.json")
  jq -n --arg name "$name" --arg title "$label" \
    --slurpfile ka "$TMP/$name.keepalive.json" --slurpfile nc "$TMP/$name.newconn.json" \
    --slurpfile cpu "$TMP/$name.cpu.json" --slurpfile bg "$TMP/$name.background.json" \
    --argjson udp "$udp" --argjson stats "$stats" '
    ($ka[0].requests) as $r | $cpu[0] as $c |
    {name: $name, label: $title, failed: false,
     background_busy_pct: $bg[0].background_busy_pct,
     keepalive: $ka[0], new_conn: $nc[0],
     udp: (if $udp == null then null else
             {answers_per_s: $udp.answers_per_s, lost: $udp.lost, late: $udp.late,
              send_errors: $udp.send_errors, recv_errors: $udp.recv_errors,
              p99_us: $udp.p99_us} end),
     cpu: {lb_us_per_req: (if $c.process then ($c.lb_user_s + $c.lb_system_s) * 1e6 / $r
                           else $c.machine_kernel_s * 1e6 / $r end),
           lb_scope: (if $c.process then "process utime+stime"
                      else "system-wide system+irq+softirq" end),
           lb_user_us_per_req: (if $c.process then $c.lb_user_s * 1e6 / $r else null end),
           lb_system_us_per_req: (if $c.process then $c.lb_system_s * 1e6 / $r else null end),
           machine_us_per_req: ($c.machine_busy_s * 1e6 / $r),
           machine_busy_s: $c.machine_busy_s, machine_kernel_s: $c.machine_kernel_s},
     lbd_stats: $stats}'
}

# jq functions over one run's array of load balancers (Fulcrum first) and over the runs.
# shellcheck disable=SC2016  # a jq program: its $names are jq variables
readonly JQ_LIB='
  def ratio($a; $b): if $a == null or $b == null or $b == 0 then null
                     else ($a / $b * 100 | round / 100) end;
  # Ratios to the first entry (Fulcrum), added to every entry.
  def with_ratios:
    .[0] as $f |
    map(del(.ratio_to_fulcrum) | if .failed or $f.failed then . else . + {ratio_to_fulcrum: {
      keepalive_rps: ratio(.keepalive.rps; $f.keepalive.rps),
      keepalive_p99: ratio(.keepalive.p99_ms; $f.keepalive.p99_ms),
      new_conn_rps: ratio(.new_conn.rps; $f.new_conn.rps),
      new_conn_p99: ratio(.new_conn.p99_ms; $f.new_conn.p99_ms),
      udp_answers_per_s: ratio(.udp.answers_per_s; $f.udp.answers_per_s),
      cpu_lb_us_per_req: ratio(.cpu.lb_us_per_req; $f.cpu.lb_us_per_req),
      cpu_machine_us_per_req: ratio(.cpu.machine_us_per_req; $f.cpu.machine_us_per_req)}} end);
  def median: sort | if length == 0 then null elif length % 2 == 1 then .[(length - 1) / 2]
                     else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  # One object shaped like a run entry, every number the median of the runs that did not fail.
  def median_entry:
    (map(select(.failed | not)) | map(del(.lbd_stats, .ratio_to_fulcrum))) as $ok |
    if ($ok | length) == 0 then .[0] | del(.lbd_stats, .ratio_to_fulcrum) else
      reduce ([$ok[0] | paths(numbers)][]) as $p
        ($ok[0]; setpath($p; [$ok[] | getpath($p) | numbers] | median)) +
      {runs_measured: ($ok | length)} end;
  def medians: transpose | map(median_entry) | with_ratios;
  def fixed($d): if . == null then "n/a" else
    (. * pow(10; $d) | round) as $n | ($n | tostring) as $s |
    if $d == 0 then $s else
      ([range(0; [$d + 1 - ($s | length), 0] | max)] | map("0") | join("")) + $s |
      .[0:length - $d] + "." + .[length - $d:] end end;
  def cell($v; $r; $d; $unit):
    if $v == null then "n/a" else ($v | fixed($d)) + $unit +
      (if $r == null then "" else " (" + ($r | fixed(2)) + "×)" end) end;
  def table:
    "| load balancer | keep-alive req/s | keep-alive p99 | new-conn req/s | new-conn p99 " +
    "| UDP answers/s | LB CPU µs/req (keep-alive) | machine CPU µs/req (keep-alive) |",
    "|---|---|---|---|---|---|---|---|",
    (.[] | if .failed then "| \(.label) | failed | | | | | | |" else
      .ratio_to_fulcrum as $q |
      "| \(.label) | \(cell(.keepalive.rps; $q.keepalive_rps; 0; ""))" +
      " | \(cell(.keepalive.p99_ms; $q.keepalive_p99; 2; " ms"))" +
      " | \(cell(.new_conn.rps; $q.new_conn_rps; 0; ""))" +
      " | \(cell(.new_conn.p99_ms; $q.new_conn_p99; 2; " ms"))" +
      " | \(if .udp == null then "n/a (no UDP)" else
             cell(.udp.answers_per_s; $q.udp_answers_per_s; 0; "") end)" +
      " | \(cell(.cpu.lb_us_per_req; $q.cpu_lb_us_per_req; 1; ""))" +
      (if .cpu.lb_scope | startswith("system") then " †" else "" end) +
      " | \(cell(.cpu.machine_us_per_req; $q.cpu_machine_us_per_req; 1; "")) |" end);
  # Bulk rows: one per (load balancer, path, transfer) and run; table order clean before loss,
  # then the transfer, then Fulcrum, nftables, HAProxy (as in the table above).
  def bulk_order: sort_by([(if .path == "clean" then 0 else 1 end),
    ({"c2b-1": 0, "b2c-1": 1, "c2b-4": 2, "b2c-4": 3}[.transfer]),
    ({fulcrum: 0, nftables: 1, haproxy: 2}[.lb])]);
  def bulk_with_ratios:
    . as $rows | map(. as $r |
      first($rows[] | select(.lb == "fulcrum" and .path == $r.path and
                             .transfer == $r.transfer)) as $f |
      . + {ratio_to_fulcrum: (if .failed or $f.failed then null
                              else ratio(.gbps; $f.gbps) end)});
  def bulk_median_row:
    map(select(.failed | not) | del(.ratio_to_fulcrum)) as $ok |
    if ($ok | length) == 0 then .[0] | del(.run, .ratio_to_fulcrum) + {runs_measured: 0} else
      reduce ([$ok[0] | paths(numbers)][]) as $p
        ($ok[0]; setpath($p; [$ok[] | getpath($p) | numbers] | median)) |
      del(.run) + {runs_measured: ($ok | length)} end;
  def bulk_medians: group_by([.lb, .path, .transfer]) | map(bulk_median_row) | bulk_order |
    bulk_with_ratios;
  def share: if . == null then "n/a" elif . == 0 then "0%" elif . < 0.01 then "<0.01%"
             else fixed(2) + "%" end;
  def bulk_table($loss_pct):
    "| transfer | path | load balancer | Gbit/s | retransmits (% of segments sent) " +
    "| reorder events (sender) | OFO-queued segments (receiver) |",
    "|---|---|---|---|---|---|---|",
    (.[] | "| \(.transfer_label) | \(if .path == "loss" then "\($loss_pct)% loss" else "clean" end)" +
      " | \(.label) | " +
      (if .failed then "failed: \(.error) | | | |" else
        "\(cell(.gbps; .ratio_to_fulcrum; 2; "")) | \(.retransmits | fixed(0))" +
        " (\(.retransmit_pct | share))" +
        (if .lb_retransmits > 0 then
           " + \(.lb_retransmits | fixed(0)) by the proxy (\(.lb_retransmit_pct | share))"
         else "" end) +
        " | \(.reorder_sender | fixed(0)) | \(.ofo_receiver | fixed(0)) |" end));
'

print_markdown() {  # print_markdown RESULT_JSON_FILE
  if jq -e '.runs != null' "$1" >/dev/null; then
    print_markdown_rr "$1"
    jq -e '.bulk != null' "$1" >/dev/null && echo
  fi
  jq -e '.bulk != null' "$1" >/dev/null || return 0
  jq -r "$JQ_LIB"'
    .bulk as $b | ($b.runs | length) as $n |
    "Bulk TCP (iperf3): \($b.seconds) s per transfer, iperf3 -J from lbt-client through " +
    "VIP:\($b.port) to one iperf3 server (\($b.server) in lbt-be1); the four transfers on the " +
    "clean path, then with \($b.loss_pct)% random loss between the load balancer and the " +
    "backends. " + (if $n > 1 then "Medians of \($n) runs. " else "" end) +
    "Gbit/s at the receiver; ratios to Fulcrum in parentheses.",
    "", ($b.rows | bulk_table($b.loss_pct)), "",
    ($b.notes[] | "- " + .),
    "- The loss rule saw \($b.loss_rule.tcp_frames) TCP frames and dropped " +
      "\($b.loss_rule.dropped) of them (\(if $b.loss_rule.tcp_frames > 0 then
        $b.loss_rule.dropped / $b.loss_rule.tcp_frames * 100 | fixed(2) else "n/a" end)%) " +
      "over all the lossy transfers that completed.",
    ($b.runs | to_entries[] | (.key + 1) as $run | .value[] | select(.failed) |
     "- Run \($run), \(.label), \(.transfer_label), \(.path): failed: \(.error).")' "$1"
}

print_markdown_rr() {  # the request/response part
  jq -r "$JQ_LIB"'
    "Side by side on the test bed: \(.seconds) s per run, wrk -t1 -c\(.connections) " +
    "http://VIP/whoami, UDP \(.udp_outstanding) flows × 1 request in flight; " +
    "2 CPUs shared by everything; load average \(.loadavg) at start. " +
    "Ratios to Fulcrum in parentheses.",
    (if (.runs | length) > 1 then
       (.runs | length) as $n | .runs | to_entries[] |
       "", "Run \(.key + 1) of \($n):", "", (.value | table)
     else empty end),
    "", (if (.runs | length) > 1 then "Medians of \(.runs | length) runs:" else empty end),
    "", (.lbs | table), "",
    (.notes[] | "- " + .),
    (.runs | to_entries[] | "- Run \(.key + 1): the machine was \([.value[] |
       "\(.background_busy_pct // "?")% (\(.name))"] | join(", ")) busy in the second before " +
       "each load balancer was measured, with the bed idle (other work on the machine)."),
    (.runs | to_entries[] | (.key + 1) as $run | .value[] | select(.failed | not) | . as $e |
     ([(if .keepalive.socket_errors + .keepalive.non_2xx > 0 then
          "keep-alive: \(.keepalive.socket_errors) socket errors, \(.keepalive.non_2xx) non-2xx"
        else empty end),
       (if .new_conn.socket_errors + .new_conn.non_2xx > 0 then
          "new-conn: \(.new_conn.socket_errors) socket errors, \(.new_conn.non_2xx) non-2xx"
        else empty end),
       (if .udp != null and (.udp.lost + .udp.send_errors + .udp.recv_errors) > 0 then
          "UDP: \(.udp.lost) requests lost, \(.udp.send_errors + .udp.recv_errors) socket errors"
        else empty end)] | join("; ")) as $problems |
     select($problems != "") | "- Run \($run), \($e.label): \($problems).")' "$1"
}

NOTES=(
  "LB CPU: for Fulcrum, lbd's utime+stime (all threads) from /proc/PID/stat during the keep-alive run; its workers poll with idle back-off, so this includes polling. For HAProxy, the haproxy process's utime+stime."
  "† nftables forwards in the kernel (softirq), which no process owns: its LB CPU is the system-wide system+irq+softirq time, which also holds the kernel work of wrk, nginx and anything else running on the machine, so it overstates nftables' own cost."
  "Machine CPU: all non-idle CPU time of the whole machine (client, backends, LB and anything else running) divided by the requests; the same measure for all three. This kernel has no IRQ time accounting, so softirq work is charged to whichever task it interrupts (lbd's and haproxy's figures include some veth delivery work for other namespaces, and the reverse)."
  "UDP: udp-rr against VIP:$UDP_VIP_PORT, answered by a C++ echo server (udp-rr --serve) on port $UDP_ECHO_PORT of each backend; HAProxy has no UDP load balancing (n/a)."
  "New-conn: wrk with 'Connection: close', so every request opens a TCP connection; through HAProxy that is two TCP handshakes (client-HAProxy and HAProxy-backend). The client namespace runs with net.ipv4.tcp_tw_reuse=1: without it, whenever wrk closes first its one address runs out of ephemeral ports within seconds (TIME_WAIT) and connect() bounds the rate, whichever load balancer is behind the VIP."
)

BULK_NOTES=(
  "Bulk: iperf3 -c VIP -p $BULK_PORT -t S -J, 1 stream or -P 4, backend→client with -R; one server, $BULK_BACKEND:$BULK_PORT in $NS_BULK, behind each load balancer (Fulcrum: a tcp listener VIP:$BULK_PORT, fnat, hc none, whose group holds that backend alone; HAProxy: listen VIP:$BULK_PORT; nftables: dnat to it). Gbit/s is the receiver's end.sum_received.bits_per_second."
  "Loss: a bridge-family nft table in $NS_SW drops ${LOSS_PCT}% of the TCP frames br0 forwards, at random and in both directions (data and ACKs), i.e. between the load balancer's backend side and the backends; the client-side link loses nothing."
  "Retransmits: iperf3's end.sum_sent.retransmits (the sending endpoint's TCP_INFO); the % is of the segments the sending endpoint's namespace sent meanwhile, the TcpOutSegs delta from nstat (Linux leaves retransmissions out of it; it also holds the few ACKs and the control connection's segments). HAProxy terminates TCP in lbt-lb, so the lossy leg is its own: '+ N by the proxy' is lbt-lb's TcpRetransSegs delta, as % of the same segment count (each leg carries the same data at the same MSS)."
  "Reorder events: delta of TcpExtTCPSACKReorder + TcpExtTCPTSReorder + TcpExtTCPRenoReorder in the sending namespace; OFO-queued: delta of TcpExtTCPOFOQueue (segments the receiver queued out of order) in the receiving namespace; both add lbt-lb's counters (only HAProxy's connections move them). Absolute values from nstat -asz before and after each transfer."
)

# --- main -----------------------------------------------------------------------------------

main() {
  case $(bed_state) in
    partial) die "the test bed is partly up; run scripts/testbed.sh down first" ;;
    up)
      log "the test bed is up; using it and leaving it as it is"
      lbd_pid >/dev/null && LBD_WAS_RUNNING=1
      healthd_pid >/dev/null && HEALTHD_WAS_RUNNING=1
      ;;
    down)
      log "bringing the test bed up (FULCRUM_BUILD=$BUILD_DIR)"
      BED_BROUGHT_UP=1
      FULCRUM_TESTBED_NO_HEALTHD=1 "$REPO/scripts/testbed.sh" up >&2 ||
        die "the test bed did not come up"
      LBD_WAS_RUNNING=1
      ;;
  esac
  if ((HEALTHD_WAS_RUNNING == 1)); then
    "$REPO/scripts/testbed.sh" prober stop >&2  # its probes would add load to the backends
  fi
  if ! backends_running; then
    BACKENDS_STARTED=1
    "$REPO/scripts/backends.sh" start >&2 || die "the backends' servers did not start"
  fi
  # One client address cycles through its ephemeral ports in seconds at these rates; whenever
  # wrk closes first, the port sits in TIME_WAIT and connect() runs out of ports, which then
  # sets the new-connection rate instead of the load balancer. Load generators reuse them.
  CLIENT_TW_REUSE_BEFORE=$(in_ns "$NS_CLIENT" sysctl -n net.ipv4.tcp_tw_reuse)
  in_ns "$NS_CLIENT" sysctl -qw net.ipv4.tcp_tw_reuse=1
  local loadavg
  loadavg=$(cut -d' ' -f1-3 /proc/loadavg)

  local round name label ok objects=()
  for ((round = 1; round <= RUNS; round++)); do
    for name in fulcrum haproxy nftables; do
      case $name in
        fulcrum) label="Fulcrum (lbd, fnat)" ;;
        haproxy) label="HAProxy (mode tcp)" ;;
        nftables) label="nftables DNAT (conntrack)" ;;
      esac
      log "--- run $round of $RUNS: $label"
      rm -f "$TMP/$name".*
      ok=1
      "bench_$name" || ok=0
      # Complete teardown before the next one: each measurement starts clean.
      case $name in
        fulcrum) teardown_fulcrum ;;
        haproxy) teardown_haproxy ;;
        nftables) teardown_nft ;;
      esac
      stop_echo_servers
      kernel_lb_off
      ((ok == 1)) || log "$name: failed"
      if [[ -s $TMP/$name.stats.json ]]; then
        log "lbd after its runs: $(jq -c '{drops: .totals.drops, drop_reasons: (.drops |
          with_entries(select(.value > 0))), new_conns: .totals.new_conns}' \
          "$TMP/$name.stats.json")"
      fi
      ((REQUEST_RESPONSE == 1)) && objects+=("$(lb_object "$name" "$label" "$ok")")
      ((BULK == 1)) && bulk_rows "$name" "$label" "$round"
    done
  done

  # Table rows: Fulcrum, nftables, HAProxy (HAProxy runs before nftables so that the kernel in
  # lbt-lb has never loaded conntrack state when HAProxy is measured).
  if ((REQUEST_RESPONSE == 1)); then
    printf '%s\n' "${objects[@]}" |
      jq -s "$JQ_LIB"'[range(0; length; 3) as $i | [.[$i], .[$i + 2], .[$i + 1]] | with_ratios]' \
        >"$TMP/runs.json"
  else
    echo null >"$TMP/runs.json"
  fi
  write_bulk_result >"$TMP/bulk.json"
  local notes
  notes=$(printf '%s\n' "${NOTES[@]}" | jq -R . | jq -s .)
  jq "$JQ_LIB"'{seconds: $seconds, connections: $connections, udp_outstanding: $udp,
      vip: $vip, loadavg: $loadavg, lbs: (if . == null then null else medians end), runs: .,
      notes: $notes, bulk: $bulk[0]}' \
    --argjson notes "$notes" --argjson seconds "$SECONDS_PER_RUN" \
    --argjson connections "$CONNECTIONS" --argjson udp "$UDP_OUTSTANDING" \
    --arg loadavg "$loadavg" --arg vip "$VIP" --slurpfile bulk "$TMP/bulk.json" \
    "$TMP/runs.json" >"$TMP/result.json"
  if ((JSON == 1)); then
    jq . "$TMP/result.json"
  else
    print_markdown "$TMP/result.json"
  fi
  jq -e '.runs == null or all(.runs[][]; .failed | not)' "$TMP/result.json" >/dev/null ||
    die "a load balancer failed"
  jq -e '.bulk == null or all(.bulk.runs[][]; .failed | not)' "$TMP/result.json" >/dev/null ||
    die "a bulk transfer failed"
}

write_bulk_result() {  # the "bulk" object (null with --no-bulk): medians, runs, notes
  if ((BULK == 0)); then
    echo null
    return
  fi
  printf '%s\n' "${BULK_NOTES[@]}" | jq -R . | jq -s . >"$TMP/bulk-notes.json"
  jq -s "$JQ_LIB"'{seconds: $seconds, loss_pct: $loss, server: $server, port: $port,
      rows: bulk_medians, runs: (group_by(.run) | map(bulk_order | bulk_with_ratios)),
      loss_rule: ([.[] | select(.path == "loss" and (.failed | not)) | .loss_path] |
                  {tcp_frames: (map(.tcp_frames) | add // 0),
                   dropped: (map(.dropped) | add // 0)}),
      notes: $notes[0]}' \
    --argjson seconds "$BULK_SECONDS" --argjson loss "$LOSS_PCT" --argjson port "$BULK_PORT" \
    --arg server "$BULK_BACKEND:$BULK_PORT" --slurpfile notes "$TMP/bulk-notes.json" \
    "$TMP/bulk-rows.jsonl"
}

main
