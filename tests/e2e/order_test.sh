#!/usr/bin/env bash
# In-order delivery through lbd, on the test bed with both workers (docs/dataplane.md, "Order"):
#   - numbered UDP datagrams on 16 flows at once, paced at 60K/s in bursts; the
#     kernel's fanout spreads them over both workers' queues and their owners are spread by
#     ClientOwner, so some cross the hand-off ring: the backend sees every flow in order;
#   - TCP bulk transfers with iperf3 (1 and 4 streams, both directions): the kernels' reorder
#     counters in the client and backend namespaces stay at 0;
#   - one client address's flows use every worker.
# With FULCRUM_TESTBED_PORTS=af_xdp (scripts/testbed.sh) the same checks run on AF_XDP ports,
# whose single queue each is polled by one worker.
# The bed itself can reorder: a veth hands a frame to the backlog of the CPU that sends it, and
# a TCP socket sends from its process and from the softirq of the CPU where an ACK arrived. lbd
# sends every packet of a connection from its owner's CPU, so the TCP endpoints run on that CPU
# (the client ports are chosen so that one worker owns every stream), and the client resolves
# its gateway first (Linux sends the packets queued behind an ARP resolution beside new ones).
source "$(dirname "$0")/lib.sh"

testbed_up || exit 1
VIP=198.18.100.30
readonly VIP
readonly UDP_PORT=9000
readonly DATAGRAMS=8000
readonly FLOWS=16
readonly UDP_RATE=60000 # datagrams/s over all flows: 128,000 in about 2 s
readonly TRANSFER_S=4
E2E_EXTRA_CLEANUP="in_backend 1 pkill -f 'iperf3 -s' ; testbed_down"

lb=$(lbctl lb create --name order --vip $VIP)
udp_group=$(lbctl group create "$lb" --name sink)
tcp_group=$(lbctl group create "$lb" --name bulk)
lbctl group add-backend "$udp_group" "198.18.1.11:$UDP_PORT" >/dev/null
lbctl group add-backend "$tcp_group" 198.18.1.11:5201 >/dev/null
udp=$(lbctl listener create "$lb" --protocol udp --port $UDP_PORT --group "$udp_group" \
  --hc-type none --idle-timeout 120)
tcp=$(lbctl listener create "$lb" --protocol tcp --port 5201 --group "$tcp_group" --hc-type none)
check "configured through lbctl" test -n "$udp" -a -n "$tcp"

run lbctl --json status
expect_eq "two workers" "$(jqr '.workers | length')" "2"
if [[ ${FULCRUM_TESTBED_PORTS:-af_packet} == af_xdp ]]; then
  # AF_XDP on a veth: one queue per port, each polled by its port's home worker.
  expect_eq "each port has one polled queue" \
    "$(jqr '[.workers[].queues[] | select(.rx != null)] | length')" "2"
else
  expect_eq "both workers poll both ports" \
    "$(jqr '[.workers[].queues[] | select(.rx != null)] | length')" "4"
fi

# counter NAME: a worker event or drop, summed over the workers.
counter() {
  "$LBCTL" --socket "$LBD_SOCKET" --json stats |
    jq -r --arg n "$1" '(.counters[$n] // .drops[$n]) // "missing"'
}
# worker_cpu W: the CPU worker W runs on.
worker_cpu() { lbctl --json status | jq -r ".workers[$1].cpu"; }
check "the client resolves its gateway" in_client ping -c 1 -W 2 $VIP

# owner.py: dataplane/handoff.h's ClientOwner, and client ports a worker owns.
cat >"$E2E_TMP/owner.py" <<'PY'
import socket

def mix64(x):
    m = (1 << 64) - 1
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & m
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & m
    x ^= x >> 33
    return x

CLIENT = int.from_bytes(socket.inet_aton("198.18.0.2"), "big")

def owner(port, workers=2):
    h = mix64(((CLIENT << 16) | port) ^ 0x6A09E667F3BCC909)
    return ((h >> 32) * workers) >> 32

def run_of(worker, length, start=42000):  # `length` consecutive ports owned by `worker`
    return next(p for p in range(start, 60000)
                if all(owner(q) == worker for q in range(p, p + length)))
PY

echo "UDP: $FLOWS flows of $DATAGRAMS numbered datagrams each"
in_backend 1 python3 - "$UDP_PORT" >"$E2E_TMP/udp_rx" 2>&1 <<'PY' &
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: no loss in our own socket
s.bind(("198.18.1.11", int(sys.argv[1])))
s.settimeout(3.0)
print("ready", flush=True)
flows = {}  # source -> [received, out of order, highest seen]
while True:
    try:
        data, source = s.recvfrom(2048)
    except socket.timeout:
        break
    seq = int.from_bytes(data[:4], "big")
    f = flows.setdefault(source, [0, 0, -1])
    f[0] += 1
    if seq <= f[2]:
        f[1] += 1
    else:
        f[2] = seq
for source, (received, reordered, top) in sorted(flows.items()):
    print("flow %s:%d received %d reordered %d" % (source[0], source[1], received, reordered))
PY
receiver=$!
check "the UDP receiver is ready" wait_until 5 grep -q ready "$E2E_TMP/udp_rx"
handoffs_before=$(counter handoffs)
in_client taskset -c "$(worker_cpu 0)" python3 - "$VIP" "$UDP_PORT" "$DATAGRAMS" "$FLOWS" "$UDP_RATE" \
  >"$E2E_TMP/udp_tx" 2>&1 <<'PY'
import socket, sys, time
vip, port, count, flows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
RATE = int(sys.argv[5])
sockets = []
for i in range(flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("198.18.0.2", 41000 + i))
    s.connect((vip, port))
    sockets.append(s)
pad = bytes(60)
# Paced: the sender shares its CPU with a worker, and an unpaced sender starves that worker
# until its queue's ring overflows (a loss the bed makes, not lbd). Bursts of 16 per flow at
# RATE datagrams/s still keep both rings busy and both workers handing off.
start = time.monotonic()
for seq in range(count):
    data = seq.to_bytes(4, "big") + pad
    for s in sockets:
        s.send(data)
    if seq % 16 == 15:
        ahead = start + (seq + 1) * flows / RATE - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
PY
wait "$receiver"
sed 's/^/  /' "$E2E_TMP/udp_rx"
expect_eq "every flow reached the backend" "$(grep -c '^flow' "$E2E_TMP/udp_rx")" "$FLOWS"
expect_eq "no datagram arrived out of order" \
  "$(awk '/^flow/ {n += $6} END {print n + 0}' "$E2E_TMP/udp_rx")" "0"
received=$(awk '/^flow/ {n += $4} END {print n + 0}' "$E2E_TMP/udp_rx")
# Where datagrams went missing, if any: the ports' rings (rx_missed) or lbd's own drops.
echo "  rx_missed by port: $(lbctl --json status | jq -c '[.ports[].rx_missed]')," \
  "lbd drops: $("$LBCTL" --socket "$LBD_SOCKET" --json stats | jq -c '.drops | with_entries(select(.value > 0))')"
check "most datagrams arrived ($received of $((FLOWS * DATAGRAMS)))" \
  test "$received" -ge $((FLOWS * DATAGRAMS * 9 / 10))
handoffs=$(($(counter handoffs) - handoffs_before))
check "flows crossed the hand-off ring ($handoffs handoffs)" test "$handoffs" -ge "$DATAGRAMS"

echo "One client address, 64 flows: every worker gets some"
in_client python3 - "$VIP" "$UDP_PORT" <<'PY'
import socket, sys
for i in range(64):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"\0\0\0\0spread", (sys.argv[1], int(sys.argv[2])))
    s.close()
PY
udp_conns() { lbctl --json conn list --listener "$udp" --limit 1000 | jq '.connections | length'; }
enough_udp_conns() { (($(udp_conns) >= 66)); }
wait_until 5 enough_udp_conns
run lbctl --json status
per_worker=$(jqr '[.workers[].active_conns] | join(" ")')
echo "  active connections per worker: $per_worker"
for w in 0 1; do
  conns=$(jqr ".workers[$w].active_conns")
  check "worker $w owns at least a quarter of the 64 flows ($conns)" test "$conns" -ge 16
done

# nstat_deltas NS: the kernel's TCP counters in NS since the last call for NS.
nstat_deltas() { NSTAT_HISTORY=$E2E_TMP/nstat.$1 ip netns exec "$1" nstat -s; }
reorder_events() {  # reorder_events FILE: the reordering counters' sum
  awk '$1 ~ /Reorder$/ {n += $2} END {print n + 0}' "$1"
}

echo "TCP bulk: iperf3, ${TRANSFER_S} s per transfer"
iperf_listening() { in_backend 1 ss -ltn 'sport = :5201' | grep -q LISTEN; }
completed() { [[ -s $E2E_TMP/iperf.json ]] && jq -e '.end.sum_received.bytes > 0' "$E2E_TMP/iperf.json" >/dev/null; }
w=0
for transfer in "1:" "1:-R" "4:" "4:-R"; do
  streams=${transfer%%:*}
  reverse=${transfer#*:}
  cport=$(cd "$E2E_TMP" && python3 -c "import owner; print(owner.run_of($w, $streams))")
  cpu=$(worker_cpu $w)
  name="$streams stream(s)${reverse:+, backend to client} (worker $w, CPU $cpu)"
  in_backend 1 taskset -c "$cpu" iperf3 -s -1 -B 198.18.1.11 -p 5201 >/dev/null 2>&1 &
  wait_until 5 iperf_listening
  NSTAT_HISTORY=$E2E_TMP/nstat.lbt-client ip netns exec lbt-client nstat -n
  NSTAT_HISTORY=$E2E_TMP/nstat.lbt-be1 ip netns exec lbt-be1 nstat -n
  in_client taskset -c "$cpu" timeout $((TRANSFER_S + 15)) iperf3 -c $VIP -p 5201 \
    -t $TRANSFER_S -P "$streams" --cport "$cport" $reverse -J >"$E2E_TMP/iperf.json"
  check "$name: completed" completed
  nstat_deltas lbt-client >"$E2E_TMP/nstat_client"
  nstat_deltas lbt-be1 >"$E2E_TMP/nstat_backend"
  gbits=$(jq -r '.end.sum_received.bits_per_second / 1e9 * 100 | floor / 100' "$E2E_TMP/iperf.json")
  retransmits=$(jq -r '.end.sum_sent.retransmits' "$E2E_TMP/iperf.json")
  echo "  $name: $gbits Gbit/s, $retransmits retransmitted"
  expect_eq "$name: no reordering seen by the client's kernel" \
    "$(reorder_events "$E2E_TMP/nstat_client")" "0"
  expect_eq "$name: no reordering seen by the backend's kernel" \
    "$(reorder_events "$E2E_TMP/nstat_backend")" "0"
  w=$((1 - w))
done
for reason in handoff_ring_full tx_handoff_ring_full; do
  echo "  $reason: $(counter $reason)"
done

e2e_finish
