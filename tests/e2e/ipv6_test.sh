#!/usr/bin/env bash
# IPv6 end to end on the namespace test bed: an IPv6 VIP in front of IPv6 backends (fnat TCP
# with weights, UDP, dnat) and of IPv4 backends (NAT64), ping -6 of the VIP, IPv6 flows in conn list, lb-healthd marking an
# IPv6 backend down and up, and a transfer that only completes if a Packet Too Big from a
# router behind lbd reaches the client (path MTU discovery through the LB).
source "$(dirname "$0")/lib.sh"

testbed_up || exit 1
VIP=2001:db8:100::10
readonly VIP

lb=$(lbctl lb create --name e2e6 --vip $VIP)
tcp_group=$(lbctl group create "$lb" --name web6)
udp_group=$(lbctl group create "$lb" --name dns6)
dnat_group=$(lbctl group create "$lb" --name direct6)
for n in 1 2 3; do
  lbctl group add-backend "$tcp_group" "[2001:db8:1::1$n]:80" --weight $((n * 10)) >/dev/null
  lbctl group add-backend "$udp_group" "[2001:db8:1::1$n]:5353" --weight $((n * 10)) >/dev/null
  lbctl group add-backend "$dnat_group" "[2001:db8:1::1$n]:8080" >/dev/null
done
tcp=$(lbctl listener create "$lb" --protocol tcp --port 80 --group "$tcp_group" --hc-type none)
udp=$(lbctl listener create "$lb" --protocol udp --port 53 --group "$udp_group" --hc-type none --idle-timeout 4)
dnat=$(lbctl listener create "$lb" --protocol tcp --port 8080 --group "$dnat_group" --mode dnat --hc-type none)
check "an IPv6 VIP configured through lbctl" test -n "$lb" -a -n "$tcp" -a -n "$udp" -a -n "$dnat"
run lbctl --json lb show "$lb"
expect_eq "lb show gives the IPv6 VIP" "$(jqr '.vip')" "$VIP"

echo "ping -6 of the VIP"
check "the VIP answers ICMPv6 echo" in_client ping -6 -c 3 -i 0.2 -W 2 -q $VIP

echo "TCP over IPv6, fnat, weights 1:2:3 over 600 new connections"
curl_loop 600 "http://[$VIP]/whoami" "$E2E_TMP/tcp"
echo "  spread: $(spread "$E2E_TMP/tcp")"
expect_eq "every request answered" "$(count_of "$E2E_TMP/tcp" error)" "0"
for n in 1 2 3; do
  check "be$n got its share ($((n * 100)) ± 20%)" within 20 "$(count_of "$E2E_TMP/tcp" "be$n")" $((n * 100))
done
sources=$(awk '{print $2}' "$E2E_TMP/tcp" | sort -u | tr '\n' ' ')
only_local_sources() { ! awk '{print $2}' "$E2E_TMP/tcp" | grep -qvE '^2001:db8:1::[2-5]$'; }
check "backends see only IPv6 fnat local addresses ($sources)" only_local_sources

echo "TCP over IPv6, dnat"
curl_loop 30 "http://[$VIP]:8080/whoami" "$E2E_TMP/dnat"
expect_eq "every dnat request answered" "$(count_of "$E2E_TMP/dnat" error)" "0"
expect_eq "backends see the client's own IPv6 address" "$(awk '{print $2}' "$E2E_TMP/dnat" | sort -u)" "2001:db8::2"

echo "NAT64: the IPv6 VIP in front of IPv4 backends"
nat64_group=$(lbctl group create "$lb" --name v4pool)
for n in 1 2 3; do
  lbctl group add-backend "$nat64_group" "198.18.1.1$n:80" >/dev/null
done
nat64=$(lbctl listener create "$lb" --protocol tcp --port 8064 --group "$nat64_group" --hc-type none)
check "an fnat listener of the IPv6 VIP takes IPv4 backends" test -n "$nat64"
expect_rc 1 "a dnat listener on them is refused" lbctl listener create "$lb" --protocol tcp --port 8065 --group "$nat64_group" --mode dnat --hc-type none
expect_match "the refusal names the IPv4 backend" "$ERR" '198\.18\.1\.1[1-3]:80.*fnat'
curl_loop 90 "http://[$VIP]:8064/whoami" "$E2E_TMP/nat64"
echo "  spread: $(spread "$E2E_TMP/nat64")"
expect_eq "every NAT64 request answered" "$(count_of "$E2E_TMP/nat64" error)" "0"
for n in 1 2 3; do
  check "be$n served NAT64 requests" test "$(count_of "$E2E_TMP/nat64" "be$n")" -gt 0
done
only_v4_locals() { ! awk '{print $2}' "$E2E_TMP/nat64" | grep -qvE '^198\.18\.1\.[2-5]$'; }
check "backends see IPv4 local addresses ($(awk '{print $2}' "$E2E_TMP/nat64" | sort -u | tr '\n' ' '))" only_v4_locals
got=$(in_client curl -g -s --max-time 120 "http://[$VIP]:8064/big" | sha256sum | cut -d' ' -f1)
expect_eq "64 MiB through NAT64, same sha256" "$got" "$(sha256sum /run/fulcrum-testbed/www/big | cut -d' ' -f1)"
nat64_udp=$(lbctl group create "$lb" --name v4dns)
lbctl group add-backend "$nat64_udp" "198.18.1.14:5353" >/dev/null
lbctl listener create "$lb" --protocol udp --port 54 --group "$nat64_udp" --hc-type none >/dev/null
answer=$(in_client python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(b"ping", (sys.argv[1], 54)); print(s.recv(2048).decode().split()[0])' "$VIP" 2>&1)
expect_eq "UDP through NAT64 answered by be4" "$answer" "be4"
run lbctl --json conn list --listener "$nat64" --limit 100000
expect_match "conn list shows NAT64 flows with IPv4 backends" "$(jqr '[.connections[] | .mode + " " + .backend] | unique | join(",")')" 'nat64 198\.18\.1\.1[1-3]:80'

echo "UDP over IPv6, weights 1:2:3 over 600 flows"
udp_flows "$VIP" 53 600 "$E2E_TMP/udp"
echo "  spread: $(spread "$E2E_TMP/udp")"
check "at most 1% of datagrams lost" test "$(count_of "$E2E_TMP/udp" error)" -le 6
for n in 1 2 3; do
  check "be$n got its share of UDP flows ($((n * 100)) ± 20%)" within 20 "$(count_of "$E2E_TMP/udp" "be$n")" $((n * 100))
done

echo "a large download over IPv6 is intact"
want=$(sha256sum /run/fulcrum-testbed/www/big | cut -d' ' -f1)
got=$(in_client curl -g -s --max-time 120 "http://[$VIP]/big" | sha256sum | cut -d' ' -f1)
expect_eq "64 MiB through the IPv6 VIP, same sha256" "$got" "$want"

echo "IPv6 flows in conn list and stats"
in_client python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(1)
s.bind(("2001:db8::2", 40053)); s.sendto(b"once", (sys.argv[1], 53)); s.recv(2048)' "$VIP"
run lbctl --json conn list --listener "$udp" --limit 100000
flow=$(jqr '[.connections[] | select(.client == "[2001:db8::2]:40053")][0]')
expect_eq "the UDP flow is listed with its IPv6 client" "$(jq -r '.vip' <<<"$flow")" "[$VIP]:53"
expect_match "its backend is an IPv6 backend" "$(jq -r '.backend' <<<"$flow")" '^\[2001:db8:1::1[1-3]\]:5353$'
expect_match "its local address is an IPv6 local address" "$(jq -r '.local' <<<"$flow")" '^\[2001:db8:1::[2-5]\]:[0-9]+$'
run lbctl --json stats
check "new IPv6 connections counted" test "$(jqr '.totals.new_conns')" -ge 1200

echo "lb-healthd probes IPv6 backends"
lbctl listener delete "$tcp" >/dev/null
hc=$(lbctl listener create "$lb" --protocol tcp --port 80 --group "$tcp_group" --hc-type http \
  --hc-path /status/200 --hc-interval 1 --hc-timeout 1 --hc-rise 2 --hc-fall 2)
health_of() {  # health_of BACKEND: its state under the health-checked listener
  lbctl --json group show "$tcp_group" |
    jq -r --arg b "$1" --arg l "$hc" '.backends[] | select(.addr == $b) | .health[] | select(.listener == $l) | .state'
}
is_health() { [[ $(health_of "$1") == "$2" ]]; }
check "[2001:db8:1::11]:80 becomes up" wait_until 20 is_health "[2001:db8:1::11]:80" up
"$E2E_ROOT/scripts/backends.sh" stop 1
check "[2001:db8:1::11]:80 is marked down when it stops answering" wait_until 20 is_health "[2001:db8:1::11]:80" down
curl_loop 60 "http://[$VIP]/whoami" "$E2E_TMP/hc"
expect_eq "no request fails while it is down" "$(count_of "$E2E_TMP/hc" error)" "0"
expect_eq "no request goes to it" "$(count_of "$E2E_TMP/hc" be1)" "0"
"$E2E_ROOT/scripts/backends.sh" start 1
check "it is marked up again" wait_until 20 is_health "[2001:db8:1::11]:80" up

echo "path MTU discovery through the LB: a Packet Too Big from a router behind lbd"
# A router (lbt-rt6: 2001:db8:1::30 on the backend bridge, 2001:db8:2::1 towards lbt-far6) whose
# route to the far backend 2001:db8:2::11 has an MTU of 1280. The client's full-size segments
# reach the router through lbd, which answers with a Packet Too Big to the fnat local address;
# only if lbd translates it for the client does the client shrink its segments and the upload
# complete.
far_down() {
  ip netns del lbt-far6 2>/dev/null
  ip netns del lbt-rt6 2>/dev/null
  ip -n lbt-sw link del rt-sw 2>/dev/null
}
E2E_EXTRA_CLEANUP="far_down; testbed_down"
for ns in lbt-rt6 lbt-far6; do
  ip netns add $ns
  ip -n $ns link set lo up
  ip netns exec $ns sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
done
ip netns exec lbt-rt6 sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv4.ip_forward=1
ip link add rt-sw netns lbt-sw type veth peer name rt0 netns lbt-rt6
ip link add rt1 netns lbt-rt6 type veth peer name far0 netns lbt-far6
ip -n lbt-sw link set rt-sw master br0 up
for dev in "lbt-sw rt-sw" "lbt-rt6 rt0" "lbt-rt6 rt1" "lbt-far6 far0"; do
  read -r ns link <<<"$dev"
  for feature in rx tx tso gso gro; do ip netns exec "$ns" ethtool -K "$link" $feature off >/dev/null 2>&1; done
done
ip -n lbt-rt6 addr add 2001:db8:1::30/64 dev rt0 nodad
ip -n lbt-rt6 addr add 2001:db8:2::1/64 dev rt1 nodad
ip -n lbt-far6 addr add 2001:db8:2::11/64 dev far0 nodad
ip -n lbt-rt6 addr add 198.18.1.30/24 dev rt0
ip -n lbt-rt6 addr add 198.18.2.1/24 dev rt1
ip -n lbt-far6 addr add 198.18.2.11/24 dev far0
ip -n lbt-rt6 link set rt0 up
ip -n lbt-rt6 link set rt1 up
ip -n lbt-far6 link set far0 up
ip -n lbt-far6 route add default via 2001:db8:2::1
ip -n lbt-far6 route add default via 198.18.2.1
# A host route (longer than the connected /64); "lock": a forwarding Linux honours a route MTU
# only when it is locked.
ip -n lbt-rt6 -6 route add 2001:db8:2::11/128 dev rt1 mtu lock 1280
ip -n lbt-rt6 route add 198.18.2.11/32 dev rt1 mtu lock 1280
ip netns exec lbt-far6 python3 -c '
import hashlib, socket
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 9000)); s.listen(8)
while True:
    c, _ = s.accept(); h = hashlib.sha256()
    while True:
        b = c.recv(65536)
        if not b: break
        h.update(b)
    c.sendall(h.hexdigest().encode()); c.close()' >/dev/null 2>&1 &
far_sink=$!
E2E_EXTRA_CLEANUP="kill $far_sink; far_down; testbed_down"
# lbd reaches 2001:db8:2::/64 through the router: a static route in its config, then a restart
# (the state file keeps the model).
jq '.routes = [{"prefix": "2001:db8:2::/64", "via": "2001:db8:1::30"}, {"prefix": "198.18.2.0/24", "via": "198.18.1.30"}]' /run/fulcrum-testbed/lbd.json >"$E2E_TMP/lbd.json"
cp "$E2E_TMP/lbd.json" /run/fulcrum-testbed/lbd.json
testbed_restart_lbd >/dev/null
check "lbd answers after the restart with the route" wait_until 30 lbctl status
far_group=$(lbctl group create "$lb" --name far6)
lbctl group add-backend "$far_group" "[2001:db8:2::11]:9000" >/dev/null
lbctl listener create "$lb" --protocol tcp --port 9000 --group "$far_group" --hc-type none >/dev/null
# upload_through_router PORT WHAT MTU: the 2 MiB upload to VIP:PORT completes, lbd translated
# the router's ICMP error on the way, and the client learnt MTU as its path MTU to the VIP.
upload_through_router() {
  local before after
  before=$(stat_of '.counters.icmp_errors_translated')
  expect_eq "2 MiB uploaded $2, intact" "$(upload "$VIP" "$1" 2>&1)" "ok"
  after=$(stat_of '.counters.icmp_errors_translated')
  check "lbd translated the router's ICMP error ($before -> $after)" test "$after" -gt "$before"
  expect_match "the client learnt a path MTU of $3 to the VIP" "$(in_client ip -6 route get $VIP)" "mtu $3"
}
upload_through_router 9000 "to a backend behind a 1280-byte link" 1280

echo "path MTU discovery across NAT64: a 'fragmentation needed' from the IPv4 router"
# The same router, the same far host over IPv4 (198.18.2.11, behind a locked 1280-byte route):
# the IPv6 client's segments become 1480-byte IPv4 packets with DF set, the router answers
# with an ICMPv4 "fragmentation needed" (MTU 1280) to the IPv4 local address, and lbd turns
# it into a Packet Too Big of 1300 for the client, quoting the client's own segment.
in_client ip -6 route flush cache >/dev/null 2>&1
far4_group=$(lbctl group create "$lb" --name far4)
lbctl group add-backend "$far4_group" "198.18.2.11:9000" >/dev/null
lbctl listener create "$lb" --protocol tcp --port 9064 --group "$far4_group" --hc-type none >/dev/null
upload_through_router 9064 "through NAT64 to an IPv4 host behind a 1280-byte link" 1300

e2e_finish
