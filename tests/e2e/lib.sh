# Helpers for end-to-end tests: source this from a tests/e2e/*_test.sh script.
#
# Each test runs the real binaries from $FULCRUM_BUILD (default ./build), counts its checks,
# and exits non-zero if any failed. Every wait is bounded.
set -uo pipefail

E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FULCRUM_BUILD=${FULCRUM_BUILD:-$E2E_ROOT/build}
LBD=$FULCRUM_BUILD/ctl/daemon/lbd
LBCTL=$FULCRUM_BUILD/ctl/cli/lbctl
LB_HEALTHD=$FULCRUM_BUILD/healthcheck/lb-healthd

e2e_checks=0
e2e_failures=0
E2E_TMP=$(mktemp -d /tmp/fulcrum-e2e.XXXXXX)
LBD_PID=""
OUT=""
ERR=""
RC=0

e2e_cleanup() {
  lbd_stop >/dev/null 2>&1 || true
  if [[ -n ${E2E_EXTRA_CLEANUP:-} ]]; then
    eval "$E2E_EXTRA_CLEANUP" || true
  fi
  rm -rf "$E2E_TMP"
}
trap e2e_cleanup EXIT

pass() {
  e2e_checks=$((e2e_checks + 1))
  echo "  ok    $*"
}

fail() {
  e2e_checks=$((e2e_checks + 1))
  e2e_failures=$((e2e_failures + 1))
  echo "  FAIL  $*"
}

# check DESCRIPTION COMMAND...: passes when COMMAND succeeds.
check() {
  local description=$1
  shift
  if "$@"; then pass "$description"; else fail "$description"; fi
}

# run COMMAND...: runs it, keeping stdout in $OUT, stderr in $ERR and the status in $RC.
run() {
  "$@" >"$E2E_TMP/out" 2>"$E2E_TMP/err"
  RC=$?
  OUT=$(cat "$E2E_TMP/out")
  ERR=$(cat "$E2E_TMP/err")
}

# expect_rc CODE DESCRIPTION COMMAND...: runs COMMAND and checks its exit status.
expect_rc() {
  local want=$1 description=$2
  shift 2
  run "$@"
  if [[ $RC -eq $want ]]; then
    pass "$description (exit $RC)"
  else
    fail "$description: exit $RC, want $want; stdout: ${OUT:0:300}; stderr: ${ERR:0:300}"
  fi
}

# expect_eq DESCRIPTION GOT WANT
expect_eq() {
  if [[ "$2" == "$3" ]]; then pass "$1"; else fail "$1: got '$2', want '$3'"; fi
}

# expect_match DESCRIPTION TEXT REGEX
expect_match() {
  if [[ "$2" =~ $3 ]]; then pass "$1"; else fail "$1: '${2:0:300}' does not match /$3/"; fi
}

# jqr FILTER: applies a jq filter to $OUT (raw output).
jqr() { jq -r "$1" <<<"$OUT"; }

lbctl() { "$LBCTL" --socket "$LBD_SOCKET" "$@"; }

# wait_until SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds or time runs out.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  while ((SECONDS < deadline)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  "$@" >/dev/null 2>&1
}

# write_null_config PATH: an lbd config with two net_null ports, no hugepages, two workers.
write_null_config() {
  cat >"$1" <<JSON
{
  "socket": "$LBD_SOCKET",
  "state_file": "$E2E_TMP/state/state.json",
  "log_level": "info",
  "eal": {"no_huge": true, "memory_mb": 256, "file_prefix": "e2e$$"},
  "workers": {"count": 2, "cpus": [0, 1]},
  "ports": [
    {"name": "client", "vdev": "net_null0", "address": "198.18.0.1/24"},
    {"name": "backend", "vdev": "net_null1", "address": "198.18.1.1/24",
     "local_addresses": ["198.18.1.2", "198.18.1.3", "198.18.1.4", "198.18.1.5"]}
  ],
  "conn_table": {"capacity_per_worker": 65536}
}
JSON
}

# lbd_start CONFIG: starts lbd in the background and waits (bounded) until it answers.
lbd_start() {
  "$LBD" --config "$1" >>"$E2E_TMP/lbd.log" 2>&1 &
  LBD_PID=$!
  if ! wait_until 30 "$LBCTL" --socket "$LBD_SOCKET" status; then
    echo "lbd did not come up; log tail:"
    tail -n 30 "$E2E_TMP/lbd.log"
    return 1
  fi
}

# lbd_stop: SIGTERM, then SIGKILL after 10 s.
lbd_stop() {
  [[ -n $LBD_PID ]] || return 0
  kill -TERM "$LBD_PID" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while kill -0 "$LBD_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -KILL "$LBD_PID" 2>/dev/null || true
  wait "$LBD_PID" 2>/dev/null
  LBD_PID=""
}

e2e_finish() {
  echo "  $((e2e_checks - e2e_failures)) of $e2e_checks checks passed"
  ((e2e_failures == 0))
}

LBD_SOCKET=$E2E_TMP/lbd.sock

# --- The namespace test bed (scripts/testbed.sh) -------------------------------------------

# testbed_up: builds the bed, starts lbd in lbt-lb and the backends' servers; tears it all down
# when the test exits.
testbed_up() {
  LBD_SOCKET=/run/lbd/lbd.sock
  E2E_EXTRA_CLEANUP="testbed_down"
  FULCRUM_BUILD=$FULCRUM_BUILD "$E2E_ROOT/scripts/testbed.sh" down >/dev/null 2>&1 || true
  if ! FULCRUM_BUILD=$FULCRUM_BUILD "$E2E_ROOT/scripts/testbed.sh" up; then
    echo "test bed did not come up"
    return 1
  fi
  "$E2E_ROOT/scripts/backends.sh" start
}

testbed_down() {
  "$E2E_ROOT/scripts/backends.sh" stop >/dev/null 2>&1 || true
  FULCRUM_BUILD=$FULCRUM_BUILD "$E2E_ROOT/scripts/testbed.sh" down >/dev/null 2>&1 || true
}

testbed_restart_lbd() {
  FULCRUM_BUILD=$FULCRUM_BUILD "$E2E_ROOT/scripts/testbed.sh" restart
}

in_client() { ip netns exec lbt-client "$@"; }
in_backend() {  # in_backend N COMMAND...
  local n=$1
  shift
  ip netns exec "lbt-be$n" "$@"
}

# curl_loop COUNT URL OUT: COUNT requests from lbt-client, a new connection each, their answers
# (or "error") in OUT. -g: URLs with IPv6 literals ([2001:db8::1]) are taken as they are.
curl_loop() {
  in_client bash -c 'for ((i = 0; i < $1; i++)); do curl -g -s --max-time 2 "$2" || echo "error"; done' _ "$1" "$2" >"$3"
}

# udp_flows VIP PORT COUNT OUT: COUNT datagrams from lbt-client, a new socket (a new flow) each;
# the first word of each answer (the backend's name), or "error", in OUT. VIP of either family.
udp_flows() {
  in_client python3 - "$1" "$2" "$3" >"$4" <<'PY'
import socket, sys
vip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
family = socket.AF_INET6 if ":" in vip else socket.AF_INET
for i in range(count):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    try:
        s.sendto(b"ping %d" % i, (vip, port))
        print(s.recv(2048).decode().split()[0])
    except OSError:
        print("error")
    finally:
        s.close()
PY
}

# upload VIP PORT: sends 2 MiB from lbt-client to VIP:PORT over TCP and prints "ok" when the
# far end answers with their sha256 (the sink tests/e2e/ipv6_test.sh runs), else "corrupt".
upload() {
  in_client timeout 60 python3 -c '
import hashlib, os, socket, sys
data = os.urandom(2 << 20)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
s.sendall(data); s.shutdown(socket.SHUT_WR)
reply = b""
while True:
    b = s.recv(4096)
    if not b: break
    reply += b
print("ok" if reply.decode() == hashlib.sha256(data).hexdigest() else "corrupt")' "$1" "$2"
}

# spread FILE: counts lines per first word ("be1 ...") as "be1=N be2=M ...", sorted.
spread() { awk '{print $1}' "$1" | sort | uniq -c | awk '{printf "%s=%s ", $2, $1}'; }

# count_of FILE NAME: how many lines start with NAME.
count_of() { awk -v name="$2" '$1 == name {n++} END {print n + 0}' "$1"; }

# within PERCENT GOT WANT: true when GOT is within PERCENT % of WANT.
within() { awk -v p="$1" -v got="$2" -v want="$3" 'BEGIN {d = got - want; if (d < 0) d = -d; exit !(d <= want * p / 100)}'; }

# stat_of JQ_PATH: a number from `lbctl --json stats`.
stat_of() { "$LBCTL" --socket "$LBD_SOCKET" --json stats | jq -r "$1"; }
