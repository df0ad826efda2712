#!/usr/bin/env bash
# The control plane end to end: the real lbd (on net_null ports, no hugepages) driven by the
# real lbctl through every command of the contract, the refusals with their exit codes, hostile
# socket clients, and the state surviving a restart.
source "$(dirname "$0")/lib.sh"

config=$E2E_TMP/lbd.json
write_null_config "$config"
lbd_start "$config" || exit 1

echo "status and usage"
expect_rc 0 "status answers" lbctl status
expect_rc 0 "status --json" lbctl --json status
expect_eq "status reports two workers" "$(jqr '.workers | length')" "2"
expect_eq "status reports two ports" "$(jqr '.ports | length')" "2"
expect_eq "status reports the socket" "$(jqr '.socket')" "$LBD_SOCKET"
expect_rc 2 "unknown subcommand is a usage error" lbctl frobnicate
expect_rc 2 "missing argument is a usage error" lbctl lb create --name web
expect_rc 2 "non-numeric port is a usage error" lbctl listener create lb-00000000 --protocol tcp --port eighty --group sg-00000000
expect_rc 2 "unreachable daemon exits 2" "$LBCTL" --socket "$E2E_TMP/nothing.sock" status
expect_rc 2 "LBD_SOCKET is honoured" env LBD_SOCKET="$E2E_TMP/nothing.sock" "$LBCTL" status
expect_rc 0 "LBD_SOCKET reaches the daemon" env LBD_SOCKET="$LBD_SOCKET" "$LBCTL" status

echo "load balancers"
expect_rc 0 "lb create" lbctl lb create --name web --vip 198.18.100.10
lb=$OUT
expect_match "create prints the id alone" "$lb" '^lb-[0-9a-f]{8}$'
expect_rc 1 "a VIP owned by another LB is refused" lbctl lb create --name web2 --vip 198.18.100.10
expect_match "the refusal names the code" "$ERR" 'AddressConflict'
expect_rc 1 "a bad VIP is refused" lbctl lb create --name bad --vip 198.18.100.300
expect_match "the refusal is InvalidParameter" "$ERR" 'InvalidParameter'
expect_rc 1 "a bad name is refused" lbctl lb create --name 'no spaces' --vip 198.18.100.11
expect_rc 1 "lbd's own address cannot be a VIP" lbctl lb create --name own --vip 198.18.0.1
expect_rc 0 "second lb" lbctl lb create --name other --vip 198.18.100.20
lb2=$OUT
expect_rc 0 "lb list --json" lbctl --json lb list
expect_eq "two LBs listed" "$(jqr '.lbs | length')" "2"
expect_rc 0 "lb list (table)" lbctl lb list
expect_match "table shows the VIP" "$OUT" '198\.18\.100\.10'
expect_rc 0 "lb show" lbctl --json lb show "$lb"
expect_eq "lb show gives the name" "$(jqr '.name')" "web"
expect_rc 1 "lb show of an unknown id" lbctl lb show lb-00000000
expect_match "unknown id is ResourceNotFound" "$ERR" 'ResourceNotFound'

echo "server groups"
expect_rc 0 "group create" lbctl group create "$lb" --name pool
group=$OUT
expect_match "group id" "$group" '^sg-[0-9a-f]{8}$'
expect_rc 0 "add backend with default weight" lbctl group add-backend "$group" 198.18.1.11:80
expect_rc 0 "add backend weight 20" lbctl group add-backend "$group" 198.18.1.12:80 --weight 20
expect_rc 0 "add backend weight 0 (drain)" lbctl group add-backend "$group" 198.18.1.13:80 --weight 0
expect_rc 1 "duplicate backend refused" lbctl group add-backend "$group" 198.18.1.11:80
expect_match "duplicate is AlreadyExists" "$ERR" 'AlreadyExists'
expect_rc 1 "weight 101 refused" lbctl group add-backend "$group" 198.18.1.14:80 --weight 101
expect_rc 1 "port 0 refused" lbctl group add-backend "$group" 198.18.1.14:0
expect_rc 1 "IPv6 backend in an IPv4 LB refused" lbctl group add-backend "$group" '[2001:db8::1]:80'
expect_rc 0 "set weight" lbctl group set-weight "$group" 198.18.1.11:80 30
expect_rc 1 "set weight of an unknown backend" lbctl group set-weight "$group" 198.18.1.99:80 5
expect_rc 0 "group show --json" lbctl --json group show "$group"
expect_eq "three backends" "$(jqr '.backends | length')" "3"
expect_eq "default weight is 10 then set to 30" "$(jqr '.backends[] | select(.addr=="198.18.1.11:80") | .weight')" "30"
expect_eq "weight 20 kept" "$(jqr '.backends[] | select(.addr=="198.18.1.12:80") | .weight')" "20"
expect_rc 0 "remove backend" lbctl group remove-backend "$group" 198.18.1.13:80
expect_rc 1 "remove it again" lbctl group remove-backend "$group" 198.18.1.13:80
expect_rc 0 "group list" lbctl --json group list "$lb"
expect_eq "one group" "$(jqr '.groups | length')" "1"
expect_rc 0 "group show (table)" lbctl group show "$group"
expect_match "table lists a backend" "$OUT" '198\.18\.1\.12:80'
expect_rc 0 "group in the other LB" lbctl group create "$lb2" --name foreign
foreign=$OUT

echo "listeners"
expect_rc 0 "tcp listener with defaults" lbctl listener create "$lb" --protocol tcp --port 80 --group "$group"
lsn=$OUT
expect_match "listener id" "$lsn" '^lsn-[0-9a-f]{8}$'
expect_rc 0 "listener show" lbctl --json listener show "$lsn"
expect_eq "default scheduler" "$(jqr '.scheduler')" "wrr"
expect_eq "default mode" "$(jqr '.mode')" "fnat"
expect_eq "default tcp idle timeout" "$(jqr '.idle_timeout')" "900"
expect_eq "default persistence" "$(jqr '.persistence')" "0"
expect_eq "default tcp health check" "$(jqr '.health_check.type')" "tcp"
expect_eq "default interval" "$(jqr '.health_check.interval')" "5"
expect_eq "default timeout" "$(jqr '.health_check.timeout')" "2"
expect_eq "default rise/fall" "$(jqr '"\(.health_check.rise)/\(.health_check.fall)"')" "3/3"
expect_rc 1 "same port, same family" lbctl listener create "$lb" --protocol tcp --port 80 --group "$group"
expect_match "PortConflict" "$ERR" 'PortConflict'
expect_rc 1 "http listener: no L7 tier yet" lbctl listener create "$lb" --protocol http --port 8088 --group "$group"
expect_match "NotSupported" "$ERR" 'NotSupported.*protocol http'
expect_rc 1 "udp listener without a health check" lbctl listener create "$lb" --protocol udp --port 80 --group "$group"
expect_match "udp needs hc settings" "$ERR" 'MissingParameter'
expect_rc 0 "udp on the same port is another family" lbctl listener create "$lb" --protocol udp --port 80 --group "$group" --hc-type udp --hc-send 70696e67 --hc-expect 706f6e67
udp=$OUT
expect_rc 0 "udp listener show" lbctl --json listener show "$udp"
expect_eq "udp idle timeout default" "$(jqr '.idle_timeout')" "300"
expect_rc 0 "tcp listener with http check and options" lbctl listener create "$lb" --protocol tcp --port 8080 --group "$group" --scheduler wlc --mode dnat --idle-timeout 60 --persistence 30 --hc-type http --hc-path /healthz --hc-codes 2xx --hc-interval 2 --hc-timeout 1 --hc-rise 2 --hc-fall 4
http=$OUT
expect_rc 0 "http listener show" lbctl --json listener show "$http"
expect_eq "http check" "$(jqr '.health_check.type')" "http"
expect_eq "http path" "$(jqr '.health_check.path')" "/healthz"
expect_eq "codes" "$(jqr '.health_check.codes | join(",")')" "2xx"
expect_eq "scheduler wlc" "$(jqr '.scheduler')" "wlc"
expect_rc 1 "a group of another LB" lbctl listener create "$lb" --protocol tcp --port 81 --group "$foreign"
expect_rc 2 "bad scheduler is a usage error" lbctl listener create "$lb" --protocol tcp --port 82 --group "$group" --scheduler fastest
expect_rc 1 "persistence 10 is out of range" lbctl listener create "$lb" --protocol tcp --port 83 --group "$group" --persistence 10
expect_rc 1 "timeout above interval" lbctl listener create "$lb" --protocol tcp --port 84 --group "$group" --hc-interval 2 --hc-timeout 5
expect_rc 1 "port 70000" lbctl listener create "$lb" --protocol tcp --port 70000 --group "$group"
expect_rc 0 "modify scheduler and timeout" lbctl listener modify "$lsn" --scheduler maglev --idle-timeout 120
expect_rc 0 "show after modify" lbctl --json listener show "$lsn"
expect_eq "modified scheduler" "$(jqr '.scheduler')" "maglev"
expect_eq "modified idle timeout" "$(jqr '.idle_timeout')" "120"
expect_eq "port unchanged" "$(jqr '.port')" "80"
expect_rc 2 "protocol cannot be modified" lbctl listener modify "$lsn" --protocol udp
expect_rc 2 "port cannot be modified" lbctl listener modify "$lsn" --port 81
expect_rc 0 "listener list" lbctl --json listener list "$lb"
expect_eq "three listeners" "$(jqr '.listeners | length')" "3"
expect_rc 0 "listener list (table)" lbctl listener list "$lb"
expect_match "table shows the port" "$OUT" '8080'

echo "in-use rules"
expect_rc 1 "a group in use cannot be deleted" lbctl group delete "$group"
expect_match "ResourceInUse names the listener" "$ERR" "ResourceInUse.*lsn-"

echo "health, stats, connections"
expect_rc 0 "set health down" lbctl backend set-health "$lsn" 198.18.1.11:80 down --reason "test"
expect_rc 0 "group show reports it" lbctl --json group show "$group"
expect_eq "state is down" "$(jq -r --arg l "$lsn" '.backends[] | select(.addr=="198.18.1.11:80") | .health[] | select(.listener==$l) | .state' <<<"$OUT")" "down"
expect_rc 1 "set health of an unknown backend" lbctl backend set-health "$lsn" 198.18.1.99:80 up
expect_rc 2 "set health to a bad state" lbctl backend set-health "$lsn" 198.18.1.11:80 sideways
expect_rc 0 "stats" lbctl --json stats
expect_match "stats has totals" "$(jqr '.totals | keys | join(",")')" 'rx_packets'
expect_rc 0 "stats of an LB" lbctl stats "$lb"
expect_rc 0 "stats of a listener" lbctl --json stats "$lsn"
expect_rc 1 "stats of an unknown id" lbctl stats lsn-00000000
expect_rc 0 "stats --watch bounded" lbctl stats --watch --count 2 --interval 0.2
expect_rc 0 "conn list" lbctl --json conn list --limit 10
expect_eq "no connections yet" "$(jqr '.connections | length')" "0"
expect_rc 0 "conn list of a listener" lbctl conn list --listener "$lsn"

echo "hostile clients"
# Half a request, then silence: the daemon must keep serving others.
exec 7<> >(socat - "UNIX-CONNECT:$LBD_SOCKET" >/dev/null 2>&1)
printf '{"v":1,"id":1,"cmd":"sta' >&7
expect_rc 0 "status while a client is half-open" lbctl status
printf 'this is not json\n' | socat -t 2 - "UNIX-CONNECT:$LBD_SOCKET" >"$E2E_TMP/junk" 2>/dev/null
expect_match "junk gets MalformedRequest" "$(cat "$E2E_TMP/junk")" 'MalformedRequest'
printf '{"v":1,"id":5,"cmd":"nope"}\n' | socat -t 2 - "UNIX-CONNECT:$LBD_SOCKET" >"$E2E_TMP/unknown" 2>/dev/null
expect_match "unknown command" "$(cat "$E2E_TMP/unknown")" 'UnknownCommand'
head -c 1100000 /dev/zero | tr '\0' 'x' | socat -t 2 - "UNIX-CONNECT:$LBD_SOCKET" >"$E2E_TMP/big" 2>/dev/null
expect_match "oversized line refused" "$(cat "$E2E_TMP/big")" 'RequestTooLarge'
head -c 200000 /dev/urandom | socat -t 1 - "UNIX-CONNECT:$LBD_SOCKET" >/dev/null 2>&1
expect_rc 0 "still answering after random bytes" lbctl status
exec 7>&-
check "socket mode is 0660" test "$(stat -c %a "$LBD_SOCKET")" = "660"

echo "restart keeps the state"
# Health is not persisted (the prober re-learns it; docs/ctl-protocol.md "Durability").
before=$(lbctl --json lb show "$lb" | jq -S 'del(.group_objects[]?.backends[]?.health, .group_objects[]?.listener_health, .listener_objects[]?.fail_open)')
lbd_stop
lbd_start "$config" || exit 1
after=$(lbctl --json lb show "$lb" | jq -S 'del(.group_objects[]?.backends[]?.health, .group_objects[]?.listener_health, .listener_objects[]?.fail_open)')
expect_eq "LB, listeners and groups survive a restart" "$after" "$before"
expect_rc 0 "groups survive" lbctl --json group show "$group"
expect_eq "health starts unknown after a restart" "$(jq -r --arg l "$lsn" '.backends[] | select(.addr=="198.18.1.11:80") | .health[] | select(.listener==$l) | .state' <<<"$OUT")" "unknown"
expect_eq "weights survive" "$(jqr '.backends[] | select(.addr=="198.18.1.11:80") | .weight')" "30"
expect_rc 1 "rules still enforced after restart" lbctl listener create "$lb" --protocol tcp --port 80 --group "$group"

echo "deletes"
expect_rc 0 "listener delete" lbctl listener delete "$http"
expect_rc 1 "listener delete again" lbctl listener delete "$http"
expect_rc 0 "lb delete takes its listeners and groups" lbctl --json lb delete "$lb"
expect_rc 1 "its group is gone" lbctl group show "$group"
expect_rc 1 "its listener is gone" lbctl listener show "$lsn"
expect_rc 0 "group delete" lbctl group delete "$foreign"
expect_rc 0 "lb delete" lbctl lb delete "$lb2"
expect_rc 0 "empty list" lbctl --json lb list
expect_eq "no LBs left" "$(jqr '.lbs | length')" "0"

echo "a corrupt state file stops lbd"
lbd_stop
printf '{"format": "fulcrum-state", "version": 1, "lbs": [' >"$E2E_TMP/state/state.json"
run timeout 30 "$LBD" --config "$config"
check "lbd refuses to start on a corrupt state file" test "$RC" -ne 0
expect_match "and says why" "$ERR$OUT" 'state'
check "the corrupt file is left for the operator" test -s "$E2E_TMP/state/state.json"

e2e_finish
