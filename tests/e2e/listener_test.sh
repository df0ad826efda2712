#!/usr/bin/env bash
# Listener features end to end on the test bed, with real clients (curl) and servers (nginx).
# Session persistence (docs/dataplane.md, "Session persistence"), wrr over three backends:
#   - 100 new connections from one client within the window all reach one backend, while a
#     listener without persistence spreads the same client's connections over all three;
#   - a second client address has an entry of its own;
#   - with its backend down the client moves to another backend and stays there;
#   - after the window without a connection the entry ends: the next connection is scheduled
#     afresh (a new entry) and its followers stay with it.
source "$(dirname "$0")/lib.sh"

testbed_up || exit 1
VIP=198.18.100.40
readonly VIP
readonly WINDOW=30
hc=(--hc-type tcp --hc-interval 1 --hc-timeout 1 --hc-rise 2 --hc-fall 2)

lb=$(lbctl lb create --name listener --vip $VIP)
web=$(lbctl group create "$lb" --name web)
for n in 1 2 3; do
  lbctl group add-backend "$web" "198.18.1.1$n:80" >/dev/null
done
sticky=$(lbctl listener create "$lb" --protocol tcp --port 80 --group "$web" "${hc[@]}" \
  --persistence $WINDOW)
plain=$(lbctl listener create "$lb" --protocol tcp --port 81 --group "$web" --hc-type none)
check "configured through lbctl" test -n "$sticky" -a -n "$plain"
run lbctl --json listener show "$sticky"
expect_eq "listener show has the window" "$(jqr '.persistence')" "$WINDOW"

health_of() {  # health_of ADDR: the sticky listener's view of a backend
  lbctl --json group show "$web" |
    jq -r --arg l "$sticky" --arg a "$1" '.backends[] | select(.addr == $a) | .health[] | select(.listener == $l) | .state'
}
health_is() { [[ $(health_of "$1") == "$2" ]]; }
for n in 1 2 3; do
  check "be$n up" wait_until 15 health_is "198.18.1.1$n:80" up
done
# persist EVENT: a persistence counter, summed over the workers.
persist() { stat_of ".counters.persist_$1"; }
# from CLIENT_IP COUNT URL OUT: curl_loop from one of the client's addresses.
from() {
  in_client bash -c 'for ((i = 0; i < $2; i++)); do curl -s --max-time 2 --interface "$1" "$3" || echo error; done' \
    _ "$1" "$2" "$3" >"$4"
}
backends_in() { awk '{print $1}' "$1" | sort -u | tr '\n' ' ' | sed 's/ $//'; }

echo "without persistence: one client over every backend"
from 198.18.0.2 100 "http://$VIP:81/whoami" "$E2E_TMP/plain"
echo "  spread: $(spread "$E2E_TMP/plain")"
expect_eq "every request answered" "$(count_of "$E2E_TMP/plain" error)" "0"
expect_eq "all three backends used" "$(backends_in "$E2E_TMP/plain")" "be1 be2 be3"

echo "persistence $WINDOW s: 100 connections from one client"
from 198.18.0.2 100 "http://$VIP/whoami" "$E2E_TMP/sticky"
echo "  spread: $(spread "$E2E_TMP/sticky")"
expect_eq "every request answered" "$(count_of "$E2E_TMP/sticky" error)" "0"
chosen=$(backends_in "$E2E_TMP/sticky")
check "all 100 on one backend ($chosen)" test "$(wc -w <<<"$chosen")" -eq 1
expect_eq "one entry recorded" "$(persist recorded)" "1"
expect_eq "99 connections followed it" "$(persist hits)" "99"
from 198.18.0.3 20 "http://$VIP/whoami" "$E2E_TMP/second"
second=$(backends_in "$E2E_TMP/second")
check "a second client address stays on one backend too ($second)" test "$(wc -w <<<"$second")" -eq 1
expect_eq "an entry of its own" "$(persist recorded)" "2"

echo "its backend goes down: the client moves, once"
n=${chosen#be}
"$E2E_ROOT/scripts/backends.sh" stop "$n" >/dev/null
check "$chosen marked down" wait_until 10 health_is "198.18.1.1$n:80" down
from 198.18.0.2 30 "http://$VIP/whoami" "$E2E_TMP/moved"
echo "  spread: $(spread "$E2E_TMP/moved")"
expect_eq "every request answered" "$(count_of "$E2E_TMP/moved" error)" "0"
moved=$(backends_in "$E2E_TMP/moved")
check "all 30 on one other backend ($moved)" test "$(wc -w <<<"$moved")" -eq 1 -a "$moved" != "$chosen"
expect_eq "counted as moved once" "$(persist moved)" "1"
"$E2E_ROOT/scripts/backends.sh" start "$n" >/dev/null
check "$chosen up again" wait_until 15 health_is "198.18.1.1$n:80" up
from 198.18.0.2 10 "http://$VIP/whoami" "$E2E_TMP/back"
expect_eq "the client stays where it moved to, with $chosen back" "$(backends_in "$E2E_TMP/back")" "$moved"

echo "after $WINDOW s without a connection the entry ends"
recorded=$(persist recorded)
hits=$(persist hits)
sleep $((WINDOW + 2))
from 198.18.0.2 10 "http://$VIP/whoami" "$E2E_TMP/after"
expect_eq "every request answered" "$(count_of "$E2E_TMP/after" error)" "0"
expect_eq "the first connection was scheduled afresh (a new entry)" \
  "$(($(persist recorded) - recorded))" "1"
expect_eq "the nine after it followed the new entry" "$(($(persist hits) - hits))" "9"
check "all ten on one backend ($(backends_in "$E2E_TMP/after"))" \
  test "$(backends_in "$E2E_TMP/after" | wc -w)" -eq 1

e2e_finish
