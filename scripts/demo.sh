#!/usr/bin/env bash
# Fulcrum's main job on the one-machine test bed, start to finish:
#   1. installs what is missing and builds;
#   2. brings up the namespaces (scripts/testbed.sh) with lbd and lb-healthd in lbt-lb,
#      and nginx + a UDP responder in each backend (scripts/backends.sh);
#   3. configures a load balancer through lbctl: a VIP, a TCP listener (weighted round robin
#      over three backends weighted 1:2:3) and a UDP listener;
#   4. sends traffic from lbt-client and prints where it went, then lbctl's view;
#   5. does the same over IPv6: an IPv6 VIP in front of the backends' IPv6 addresses, and in
#      front of their IPv4 addresses (NAT64).
# The test bed stays up afterwards so you can keep exploring; `scripts/testbed.sh down` ends it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build.sh >/dev/null
build=${FULCRUM_BUILD:-$PWD/build}
export FULCRUM_BUILD=$build
lbctl() { "$build/ctl/cli/lbctl" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
VIP=198.18.100.10
VIP6=2001:db8:100::10

say "test bed"
scripts/backends.sh stop >/dev/null 2>&1 || true
scripts/testbed.sh down >/dev/null 2>&1 || true
scripts/testbed.sh up
scripts/backends.sh start
lbctl status

say "configuration"
set -x
lb=$(lbctl lb create --name demo --vip $VIP)
web=$(lbctl group create "$lb" --name web)
lbctl group add-backend "$web" 198.18.1.11:80 --weight 10
lbctl group add-backend "$web" 198.18.1.12:80 --weight 20
lbctl group add-backend "$web" 198.18.1.13:80 --weight 30
dns=$(lbctl group create "$lb" --name dns)
lbctl group add-backend "$dns" 198.18.1.11:5353
lbctl group add-backend "$dns" 198.18.1.14:5353
tcp=$(lbctl listener create "$lb" --protocol tcp --port 80 --group "$web")
udp=$(lbctl listener create "$lb" --protocol udp --port 53 --group "$dns" \
  --hc-type udp --hc-send 70696e67 --hc-expect 6265)
{ set +x; } 2>/dev/null
lbctl lb show "$lb"

say "300 HTTP requests, a new TCP connection each, to http://$VIP/whoami"
ip netns exec lbt-client bash -c \
  'for ((i = 0; i < 300; i++)); do curl -s --max-time 2 "http://$1/whoami" || echo error; done' _ $VIP |
  awk '{print $1}' | sort | uniq -c | awk '{printf "  %-6s %4d requests\n", $2, $1}'
echo "  (weights 10:20:30, so about 50:100:150)"

say "what the backends saw as the client address (full NAT: lbd's local addresses)"
ip netns exec lbt-client bash -c \
  'for ((i = 0; i < 8; i++)); do curl -s --max-time 2 "http://$1/whoami"; done' _ $VIP | sed 's/^/  /'

say "200 UDP flows to $VIP:53"
ip netns exec lbt-client python3 - $VIP <<'PY' | sort | uniq -c | awk '{printf "  %-6s %4d flows\n", $2, $1}'
import socket, sys
for i in range(200):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    try:
        s.sendto(b"hello", (sys.argv[1], 53))
        print(s.recv(2048).decode().split()[0])
    except OSError:
        print("lost")
    s.close()
PY

say "IPv6: a second load balancer on $VIP6, fnat to the backends' IPv6 addresses"
set -x
lb6=$(lbctl lb create --name demo6 --vip $VIP6)
web6=$(lbctl group create "$lb6" --name web6)
lbctl group add-backend "$web6" "[2001:db8:1::11]:80" --weight 10
lbctl group add-backend "$web6" "[2001:db8:1::12]:80" --weight 20
lbctl group add-backend "$web6" "[2001:db8:1::13]:80" --weight 30
lbctl listener create "$lb6" --protocol tcp --port 80 --group "$web6"
{ set +x; } 2>/dev/null
ip netns exec lbt-client ping -6 -c 2 -q $VIP6 | sed 's/^/  /'
echo "  300 HTTP requests to http://[$VIP6]/whoami:"
ip netns exec lbt-client bash -c \
  'for ((i = 0; i < 300; i++)); do curl -g -s --max-time 2 "http://[$1]/whoami" || echo error; done' _ $VIP6 |
  awk '{print $1}' | sort | uniq -c | awk '{printf "  %-6s %4d requests\n", $2, $1}'
echo "  what the backends saw as the client address:"
ip netns exec lbt-client bash -c \
  'for ((i = 0; i < 4; i++)); do curl -g -s --max-time 2 "http://[$1]/whoami"; done' _ $VIP6 | sed 's/^/  /'

say "NAT64: the same IPv6 VIP, port 8080, in front of the backends' IPv4 addresses"
set -x
v4pool=$(lbctl group create "$lb6" --name v4pool)
lbctl group add-backend "$v4pool" 198.18.1.11:80
lbctl group add-backend "$v4pool" 198.18.1.12:80
lbctl listener create "$lb6" --protocol tcp --port 8080 --group "$v4pool"
{ set +x; } 2>/dev/null
echo "  what the IPv4 backends saw as the client address (lbd's IPv4 local addresses):"
ip netns exec lbt-client bash -c \
  'for ((i = 0; i < 4; i++)); do curl -g -s --max-time 2 "http://[$1]:8080/whoami"; done' _ $VIP6 | sed 's/^/  /'

say "lbctl stats"
lbctl stats
say "lbctl group show $web"
lbctl group show "$web"
say "lbctl conn list --limit 5"
lbctl conn list --limit 5

cat <<TXT

The test bed is still up: try
  ip netns exec lbt-client curl http://$VIP/whoami
  ip netns exec lbt-client curl -g "http://[$VIP6]/whoami"
  $build/ctl/cli/lbctl stats --watch
and tear it down with
  scripts/testbed.sh down
TXT
