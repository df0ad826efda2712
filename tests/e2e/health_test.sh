#!/usr/bin/env bash
# Health checking end to end on the test bed: lb-healthd (started by scripts/testbed.sh in
# lbt-lb) probes real servers; lbd stops sending new connections to dead backends and takes
# them back when they recover; fail-open; a prober that dies and comes back.
source "$(dirname "$0")/lib.sh"

testbed_up || exit 1
VIP=198.18.100.20
INTERVAL=1
RISE=2
FALL=2
# "marked down within interval x fall + one interval" (and the same for rise), plus 0.5 s for
# this test's own 0.1 s polling and lbctl round trips.
DOWN_BOUND=$(awk -v i=$INTERVAL -v f=$FALL 'BEGIN {print i * f + i + 0.5}')
UP_BOUND=$(awk -v i=$INTERVAL -v r=$RISE 'BEGIN {print i * r + i + 0.5}')
hc=(--hc-interval $INTERVAL --hc-timeout 1 --hc-rise $RISE --hc-fall $FALL)

lb=$(lbctl lb create --name health --vip $VIP)
web=$(lbctl group create "$lb" --name web)
dns=$(lbctl group create "$lb" --name dns)
for n in 1 2 3; do
  lbctl group add-backend "$web" "198.18.1.1$n:80" >/dev/null
  lbctl group add-backend "$dns" "198.18.1.1$n:5353" >/dev/null
done
tcp=$(lbctl listener create "$lb" --protocol tcp --port 80 --group "$web" --hc-type tcp "${hc[@]}")
http=$(lbctl listener create "$lb" --protocol tcp --port 8080 --group "$web" --hc-type http --hc-path /whoami "${hc[@]}")
udp=$(lbctl listener create "$lb" --protocol udp --port 53 --group "$dns" --hc-type udp --hc-send 70696e67 --hc-expect 6265 "${hc[@]}")
check "configured" test -n "$tcp" -a -n "$http" -a -n "$udp"

state_of() {  # state_of GROUP LISTENER ADDR
  lbctl --json group show "$1" |
    jq -r --arg l "$2" --arg a "$3" '.backends[] | select(.addr == $a) | .health[] | select(.listener == $l) | .state'
}
reason_of() {
  lbctl --json group show "$1" |
    jq -r --arg l "$2" --arg a "$3" '.backends[] | select(.addr == $a) | .health[] | select(.listener == $l) | .reason'
}
# wait_state SECONDS GROUP LISTENER ADDR STATE: prints the seconds it took; fails on time-out.
wait_state() {
  local limit=$1 start=$EPOCHREALTIME
  while true; do
    [[ $(state_of "$2" "$3" "$4") == "$5" ]] && break
    if awk -v s="$start" -v now="$EPOCHREALTIME" -v l="$limit" 'BEGIN {exit !(now - s > l + 5)}'; then
      echo "never"
      return 1
    fi
    sleep 0.1
  done
  awk -v s="$start" -v now="$EPOCHREALTIME" 'BEGIN {printf "%.1f", now - s}'
}
state_is() { [[ $(state_of "$1" "$2" "$3") == "$4" ]]; }
prober_is() { [[ $("$LBCTL" --socket "$LBD_SOCKET" --json status | jq -r '.prober.state') == "$1" ]]; }
le() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a <= b)}'; }

echo "every backend comes up"
for n in 1 2 3; do
  check "be$n up for tcp" wait_until 15 state_is "$web" "$tcp" "198.18.1.1$n:80" up
done
check "the prober is present" wait_until 10 prober_is present

# A steady stream of new connections from the client, one line per request: "<time> <answer>".
stream_start() {
  in_client bash -c 'while true; do printf "%s %s\n" "$EPOCHREALTIME" "$(curl -s --max-time 1 "$1" || echo error)"; sleep 0.05; done' _ "$1" >"$2" &
  STREAM_PID=$!
}
stream_stop() { kill "$STREAM_PID" 2>/dev/null; wait "$STREAM_PID" 2>/dev/null; }
# failures_after FILE TIME: requests after TIME that failed or reached ADDR's backend NAME.
answers_after() { awk -v t="$2" '$1 > t {print $2}' "$1"; }

echo "tcp check: kill be2 under a steady stream"
stream_start "http://$VIP/whoami" "$E2E_TMP/tcp-stream"
sleep 1
"$E2E_ROOT/scripts/backends.sh" stop 2
killed=$EPOCHREALTIME
took=$(wait_state "$DOWN_BOUND" "$web" "$tcp" 198.18.1.12:80 down)
check "be2 marked down in ${took}s (bound ${DOWN_BOUND}s)" le "${took/never/999}" "$DOWN_BOUND"
expect_match "the reason is given" "$(reason_of "$web" "$tcp" 198.18.1.12:80)" 'refused|reset|timeout'
marked=$EPOCHREALTIME
sleep 4
stream_stop
after=$(answers_after "$E2E_TMP/tcp-stream" "$marked")
check "requests after the mark: $(wc -l <<<"$after")" test "$(wc -l <<<"$after")" -ge 20
expect_eq "no request failed after be2 was marked down" "$(grep -c error <<<"$after")" "0"
expect_eq "be2 got no new connections" "$(grep -c be2 <<<"$after")" "0"
echo "  before the mark: $(awk -v a="$killed" -v b="$marked" '$1 > a && $1 <= b && $2 == "error"' "$E2E_TMP/tcp-stream" | wc -l) failed"

echo "tcp check: restart be2"
"$E2E_ROOT/scripts/backends.sh" start 2
took=$(wait_state "$UP_BOUND" "$web" "$tcp" 198.18.1.12:80 up)
check "be2 re-admitted in ${took}s (bound ${UP_BOUND}s)" le "${took/never/999}" "$UP_BOUND"
in_client bash -c 'for ((i = 0; i < 60; i++)); do curl -s --max-time 1 "$1" || echo error; done' _ "http://$VIP/whoami" >"$E2E_TMP/back"
check "be2 gets new connections again" test "$(count_of "$E2E_TMP/back" be2)" -gt 0

echo "http check vs tcp check: a backend answering 500"
# be3 answers 500 on the http check's path but still accepts connections.
lbctl listener modify "$http" --hc-path /status/500 >/dev/null
took=$(wait_state "$DOWN_BOUND" "$web" "$http" 198.18.1.13:80 down)
check "the http check takes be3 out (${took}s)" le "${took/never/999}" "$DOWN_BOUND"
expect_match "reason names the status" "$(reason_of "$web" "$http" 198.18.1.13:80)" '500'
expect_eq "the tcp check keeps be3" "$(state_of "$web" "$tcp" 198.18.1.13:80)" "up"

echo "fail-open: every backend of the http listener is down"
for n in 1 2; do
  check "be$n down for http" wait_until 10 state_is "$web" "$http" "198.18.1.1$n:80" down
done
run lbctl --json listener show "$http"
expect_eq "lbctl says the listener is failing open" "$(jqr '.fail_open')" "true"
in_client bash -c 'for ((i = 0; i < 60; i++)); do curl -s --max-time 1 "$1" || echo error; done' _ "http://$VIP:8080/whoami" >"$E2E_TMP/failopen"
expect_eq "traffic still flows" "$(count_of "$E2E_TMP/failopen" error)" "0"
check "spread over all backends ($(spread "$E2E_TMP/failopen"))" \
  test "$(count_of "$E2E_TMP/failopen" be1)" -gt 0 -a "$(count_of "$E2E_TMP/failopen" be2)" -gt 0 -a "$(count_of "$E2E_TMP/failopen" be3)" -gt 0
lbctl listener modify "$http" --hc-path /whoami >/dev/null

echo "udp check: kill be1's responder, then bring it back"
"$E2E_ROOT/scripts/backends.sh" stop 1
took=$(wait_state "$DOWN_BOUND" "$dns" "$udp" 198.18.1.11:5353 down)
check "be1 marked down for udp in ${took}s" le "${took/never/999}" "$DOWN_BOUND"
in_client python3 - "$VIP" >"$E2E_TMP/udp" <<'PY'
import socket, sys
for i in range(60):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    try:
        s.sendto(b"ping", (sys.argv[1], 53))
        print(s.recv(2048).decode().split()[0])
    except OSError:
        print("error")
    s.close()
PY
expect_eq "no UDP flow goes to the dead backend" "$(count_of "$E2E_TMP/udp" error)" "0"
"$E2E_ROOT/scripts/backends.sh" start 1
took=$(wait_state "$UP_BOUND" "$dns" "$udp" 198.18.1.11:5353 up)
check "be1 re-admitted for udp in ${took}s" le "${took/never/999}" "$UP_BOUND"

echo "the prober dies: lbd keeps the last states"
"$E2E_ROOT/scripts/backends.sh" stop 3
check "be3 down for tcp" wait_until 10 state_is "$web" "$tcp" "198.18.1.13:80" down
FULCRUM_BUILD=$FULCRUM_BUILD "$E2E_ROOT/scripts/testbed.sh" prober stop
check "status shows the prober absent" wait_until 30 prober_is absent
expect_eq "be3 stays down" "$(state_of "$web" "$tcp" 198.18.1.13:80)" "down"
expect_eq "be1 stays up" "$(state_of "$web" "$tcp" 198.18.1.11:80)" "up"
since_before=$(lbctl --json group show "$web" | jq -r --arg l "$tcp" '.backends[] | select(.addr == "198.18.1.11:80") | .health[] | select(.listener == $l) | .since')
"$E2E_ROOT/scripts/backends.sh" start 3
FULCRUM_BUILD=$FULCRUM_BUILD "$E2E_ROOT/scripts/testbed.sh" prober start
check "a restarted prober brings be3 back" wait_until 15 state_is "$web" "$tcp" "198.18.1.13:80" up
since_after=$(lbctl --json group show "$web" | jq -r --arg l "$tcp" '.backends[] | select(.addr == "198.18.1.11:80") | .health[] | select(.listener == $l) | .since')
expect_eq "healthy be1 did not flap on the prober's restart" "$since_after" "$since_before"

e2e_finish
