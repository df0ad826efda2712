#!/usr/bin/env bash
# The L4 data plane end to end on the namespace test bed: real clients (curl, a UDP client) in
# lbt-client, real servers (nginx, a UDP responder) in lbt-be1..4, lbd forwarding between them.
source "$(dirname "$0")/lib.sh"

testbed_up || exit 1
VIP=198.18.100.10
readonly VIP

lb=$(lbctl lb create --name e2e --vip $VIP)
tcp_group=$(lbctl group create "$lb" --name web)
udp_group=$(lbctl group create "$lb" --name dns)
dnat_group=$(lbctl group create "$lb" --name direct)
for n in 1 2 3; do
  lbctl group add-backend "$tcp_group" "198.18.1.1$n:80" --weight $((n * 10)) >/dev/null
  lbctl group add-backend "$udp_group" "198.18.1.1$n:5353" --weight $((n * 10)) >/dev/null
  lbctl group add-backend "$dnat_group" "198.18.1.1$n:8080" >/dev/null
done
tcp=$(lbctl listener create "$lb" --protocol tcp --port 80 --group "$tcp_group" --hc-type none)
udp=$(lbctl listener create "$lb" --protocol udp --port 53 --group "$udp_group" --hc-type none --idle-timeout 4)
dnat=$(lbctl listener create "$lb" --protocol tcp --port 8080 --group "$dnat_group" --mode dnat --hc-type none)
check "configured through lbctl" test -n "$lb" -a -n "$tcp" -a -n "$udp" -a -n "$dnat"

echo "TCP, fnat, weights 1:2:3 over 600 new connections"
curl_loop 600 "http://$VIP/whoami" "$E2E_TMP/tcp"
echo "  spread: $(spread "$E2E_TMP/tcp")"
expect_eq "every request answered" "$(count_of "$E2E_TMP/tcp" error)" "0"
for n in 1 2 3; do
  check "be$n got its share ($((n * 100)) ± 20%)" within 20 "$(count_of "$E2E_TMP/tcp" "be$n")" $((n * 100))
done
expect_eq "be4 is not in the group" "$(count_of "$E2E_TMP/tcp" be4)" "0"
sources=$(awk '{print $2}' "$E2E_TMP/tcp" | sort -u | tr '\n' ' ')
only_local_sources() { ! awk '{print $2}' "$E2E_TMP/tcp" | grep -qvE '^198\.18\.1\.[2-5]$'; }
check "backends see only fnat local addresses ($sources)" only_local_sources

echo "TCP, dnat"
curl_loop 30 "http://$VIP:8080/whoami" "$E2E_TMP/dnat"
expect_eq "every dnat request answered" "$(count_of "$E2E_TMP/dnat" error)" "0"
expect_eq "backends see the client's own address" "$(awk '{print $2}' "$E2E_TMP/dnat" | sort -u)" "198.18.0.2"

echo "UDP, weights 1:2:3 over 600 flows"
udp_flows "$VIP" 53 600 "$E2E_TMP/udp"
echo "  spread: $(spread "$E2E_TMP/udp")"
check "at most 1% of datagrams lost" test "$(count_of "$E2E_TMP/udp" error)" -le 6
for n in 1 2 3; do
  check "be$n got its share of UDP flows ($((n * 100)) ± 20%)" within 20 "$(count_of "$E2E_TMP/udp" "be$n")" $((n * 100))
done

echo "a large download is intact"
want=$(sha256sum /run/fulcrum-testbed/www/big | cut -d' ' -f1)
got=$(in_client curl -s --max-time 120 "http://$VIP/big" | sha256sum | cut -d' ' -f1)
expect_eq "64 MiB through the VIP, same sha256" "$got" "$want"

echo "connections and counters"
run lbctl --json stats
check "new connections counted" test "$(jqr '.totals.new_conns')" -ge 1200
run lbctl --json conn list --limit 100000
check "conn list shows connections" test "$(jqr '.connections | length')" -gt 0
expect_match "entries carry the fields" "$(jqr '.connections[0] | keys | join(",")')" 'backend.*client.*idle_s.*local.*state'

echo "UDP idle timeout expiry"
in_client python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
s.bind(("198.18.0.2", 40053)); s.sendto(b"once", (sys.argv[1], 53)); s.recv(2048)' "$VIP"
has_flow() { lbctl --json conn list --listener "$udp" --limit 100000 | jq -e '[.connections[] | select(.client == "198.18.0.2:40053")] | length > 0' >/dev/null; }
check "the flow is listed" has_flow
sleep 5
no_flow() { ! has_flow; }
check "the flow is gone after its 4 s idle timeout" wait_until 10 no_flow

echo "restart: traffic flows again with no reconfiguration"
testbed_restart_lbd
check "lbd answers after restart" wait_until 30 lbctl status
curl_loop 20 "http://$VIP/whoami" "$E2E_TMP/after"
expect_eq "every request after restart answered" "$(count_of "$E2E_TMP/after" error)" "0"

echo "listener removal"
before=$(stat_of '.drops.no_service')
lbctl listener delete "$tcp" >/dev/null
curl_loop 5 "http://$VIP/whoami" "$E2E_TMP/removed"
expect_eq "new connections refused" "$(count_of "$E2E_TMP/removed" error)" "5"
after=$(stat_of '.drops.no_service')
check "no_service counts them ($before -> $after)" test "$after" -gt "$before"
curl_loop 3 "http://$VIP:8080/whoami" "$E2E_TMP/other"
expect_eq "the other listener still serves" "$(count_of "$E2E_TMP/other" error)" "0"

e2e_finish
