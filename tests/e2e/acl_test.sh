#!/usr/bin/env bash
# Access control lists end to end (docs/dataplane.md, "Access control"), with curl from two
# client addresses (198.18.0.2 and .3) and nginx backends:
#   - allow: only the list's clients connect; the other's SYNs get no answer, each counted as
#     acl_denied;
#   - deny: the reverse; adding and removing entries takes effect for new connections;
#   - an IPv6 entry lets the IPv6 client through an IPv6 listener's allow list;
#   - lbctl's refusals: a list in use, host bits, an entry twice, a list of another LB.
source "$(dirname "$0")/lib.sh"

testbed_up || exit 1
readonly VIP=198.18.100.42
readonly VIP6=2001:db8:100::42

lb=$(lbctl lb create --name acl --vip $VIP)
web=$(lbctl group create "$lb" --name web)
for n in 1 2 3; do
  lbctl group add-backend "$web" "198.18.1.1$n:80" >/dev/null
done
acl=$(lbctl acl create "$lb" --name office --entries 198.18.0.2,198.18.7.0/24)
check "an acl created through lbctl" test -n "$acl"
lsn=$(lbctl listener create "$lb" --protocol tcp --port 80 --group "$web" --hc-type none \
  --acl "$acl" --acl-type allow)
run lbctl --json acl show "$acl"
expect_eq "acl show lists the entries" "$(jqr '.entries | join(" ")')" "198.18.0.2/32 198.18.7.0/24"
expect_eq "and the listener using it" "$(jqr '.listeners | join(" ")')" "$lsn"
run lbctl listener show "$lsn"
expect_match "listener show names the list and its type" "$OUT" "acl: +$acl \(allow\)"

# answered CLIENT_IP: how many of 10 requests from that address were answered.
answered() {
  in_client bash -c 'n=0; for i in $(seq 10); do curl -s --max-time 1 --interface "$1" "$2" >/dev/null && n=$((n + 1)); done; echo $n' \
    _ "$1" "http://$VIP/"
}
denied() { stat_of '.drops.acl_denied'; }

echo "allow: only the list's clients"
expect_eq "198.18.0.2 (in the list): every request answered" "$(answered 198.18.0.2)" 10
before=$(denied)
expect_eq "198.18.0.3 (not in it): none answered" "$(answered 198.18.0.3)" 0
check "its SYNs counted as acl_denied ($before -> $(denied))" test "$(denied)" -ge $((before + 10))

echo "deny: the reverse"
run lbctl listener modify "$lsn" --acl-type deny
expect_eq "198.18.0.2 (in the list): none answered" "$(answered 198.18.0.2)" 0
expect_eq "198.18.0.3: every request answered" "$(answered 198.18.0.3)" 10
run lbctl acl add "$acl" 198.18.0.3
expect_eq "acl add: 198.18.0.3 is denied too" "$(answered 198.18.0.3)" 0
run lbctl acl remove "$acl" 198.18.0.2 198.18.0.3
expect_eq "acl remove: 198.18.0.2 back" "$(answered 198.18.0.2)" 10
run lbctl --json acl show "$acl"
expect_eq "one entry left" "$(jqr '.entries | join(" ")')" "198.18.7.0/24"

echo "IPv6"
lb6=$(lbctl lb create --name acl6 --vip $VIP6)
web6=$(lbctl group create "$lb6" --name web6)
lbctl group add-backend "$web6" "[2001:db8:1::11]:80" >/dev/null
acl6=$(lbctl acl create "$lb6" --name v6 --entries 2001:db8::/64)
lbctl listener create "$lb6" --protocol tcp --port 80 --group "$web6" --hc-type none \
  --acl "$acl6" --acl-type allow >/dev/null
reply=$(in_client curl -g -s --max-time 2 "http://[$VIP6]/" || echo error)
expect_eq "the IPv6 client, in 2001:db8::/64, is answered" "$reply" "be1"
run lbctl acl remove "$acl6" 2001:db8::/64
reply=$(in_client curl -g -s --max-time 2 "http://[$VIP6]/" || echo error)
expect_eq "with the list empty, an allow list lets nobody in" "$reply" "error"

echo "refusals"
expect_rc 1 "a list in use cannot be deleted" lbctl acl delete "$acl"
expect_match "  naming the listener" "$ERR" "ResourceInUse.*$lsn"
expect_rc 1 "host bits set" lbctl acl add "$acl" 198.18.9.1/24
expect_match "  naming the network meant" "$ERR" "198.18.9.0/24"
expect_rc 1 "an entry twice" lbctl acl add "$acl" 198.18.7.0/24
expect_rc 1 "a list of another load balancer" lbctl listener modify "$lsn" --acl "$acl6"
expect_rc 1 "--acl without --acl-type on a listener without a list" \
  lbctl listener create "$lb" --protocol tcp --port 81 --group "$web" --hc-type none --acl "$acl"
run lbctl listener modify "$lsn" --acl off
expect_rc 0 "detached, the list can go" lbctl acl delete "$acl"
expect_eq "and every client is answered again" "$(answered 198.18.0.3)" 10

e2e_finish
