#!/usr/bin/env bash
# The client's address told to fnat backends end to end (docs/dataplane.md, "Client address"),
# read by the real consumers:
#   - --client-ip proxy-v2 and proxy-v1 to nginx `listen ... proxy_protocol`: $proxy_protocol_addr
#     (answered and logged) is the client, for each of two client addresses, while the TCP peer
#     nginx sees is an fnat local address; a 64 MiB download and a 16 MiB upload arrive intact
#     through the sequence shift; the listener switches from v2 to v1 for new connections;
#   - proxy-v2 to HAProxy `bind ... accept-proxy`: its %[src] is the client;
#   - proxy-v1 over IPv6 (TCP6) to nginx;
#   - toa: the option (kind 254, the client's port and address) in the segments that start the
#     client's stream, seen by a packet capture in the backend's namespace, the request served;
#   - refusals: udp, dnat, an unknown mode.
source "$(dirname "$0")/lib.sh"

testbed_up || exit 1
readonly VIP=198.18.100.41
readonly VIP6=2001:db8:100::41
hc=(--hc-type tcp --hc-interval 1 --hc-timeout 1 --hc-rise 1 --hc-fall 2)

lb=$(lbctl lb create --name client-ip --vip $VIP)
pp=$(lbctl group create "$lb" --name proxied)
lbctl group add-backend "$pp" 198.18.1.11:8090 >/dev/null
ha=$(lbctl group create "$lb" --name haproxy)
lbctl group add-backend "$ha" 198.18.1.12:8091 >/dev/null
plain=$(lbctl group create "$lb" --name plain)
lbctl group add-backend "$plain" 198.18.1.13:80 >/dev/null
v2=$(lbctl listener create "$lb" --protocol tcp --port 80 --group "$pp" "${hc[@]}" --client-ip proxy-v2)
hap=$(lbctl listener create "$lb" --protocol tcp --port 81 --group "$ha" --hc-type none --client-ip proxy-v2)
toa=$(lbctl listener create "$lb" --protocol tcp --port 82 --group "$plain" --hc-type none --client-ip toa)
check "configured through lbctl" test -n "$v2" -a -n "$hap" -a -n "$toa"
run lbctl --json listener show "$v2"
expect_eq "listener show has the mode" "$(jqr '.client_ip')" "proxy-v2"
run lbctl listener show "$toa"
expect_match "the table view names it" "$OUT" "client ip: +toa"

healthy() {
  [[ $(lbctl --json group show "$pp" | jq -r '.backends[0].health[0].state') == up ]]
}
check "a tcp health check passes against a proxy_protocol port" wait_until 10 healthy

# whoami CLIENT_IP URL: one request from that client address.
whoami() { in_client curl -g -s --max-time 3 --interface "$1" "$2" || echo error; }
is_local() { [[ $1 =~ ^198\.18\.1\.[2-5]$ ]]; }

echo "proxy-v2 to nginx"
for client in 198.18.0.2 198.18.0.3; do
  read -r name addr port peer <<<"$(whoami $client "http://$VIP/whoami")"
  expect_eq "nginx: \$proxy_protocol_addr is the client $client" "$name $addr" "be1 $client"
  check "  with a client port ($port)" test "${port:-0}" -gt 0
  check "  while the TCP peer is a local address ($peer)" is_local "$peer"
done
log=/run/fulcrum-testbed/be1/proxied.log
check "nginx logged the client as \$proxy_protocol_addr" grep -q '^198\.18\.0\.3 [0-9]* 198\.18\.1\.[2-5] "GET /whoami' "$log"

echo "a 64 MiB transfer through the sequence shift"
want=$(sha256sum </run/fulcrum-testbed/www/big | cut -d' ' -f1)
got=$(in_client curl -s --max-time 60 "http://$VIP/big" | sha256sum | cut -d' ' -f1)
expect_eq "the file arrives intact" "$got" "$want"
inserted=$(stat_of '.counters.client_addr_inserted')
check "headers counted (client_addr_inserted $inserted)" test "$inserted" -ge 3

echo "a 16 MiB upload through the sequence shift (the client's numbers move)"
sink_group=$(lbctl group create "$lb" --name sink)
lbctl group add-backend "$sink_group" 198.18.1.14:8092 >/dev/null
lbctl listener create "$lb" --protocol tcp --port 83 --group "$sink_group" --hc-type none \
  --client-ip proxy-v2 >/dev/null
# A sink in lbt-be4: reads the v2 header, then hashes the stream; answers "CLIENT SHA256".
in_backend 4 timeout 60 python3 - <<'PY' &
import hashlib, socket, struct
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8092))
srv.listen(1)
c, _ = srv.accept()
buf = b""
while len(buf) < 16:
    buf += c.recv(65536)
length = struct.unpack("!H", buf[14:16])[0]
while len(buf) < 16 + length:
    buf += c.recv(65536)
ok = buf[:12] == b"\r\n\r\n\x00\r\nQUIT\n" and buf[12] == 0x21 and buf[13] == 0x11
client = socket.inet_ntoa(buf[16:20]) if ok else "bad-header"
digest = hashlib.sha256(buf[16 + length:])
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    digest.update(b)
c.sendall(("%s %s" % (client, digest.hexdigest())).encode())
c.close()
PY
sink=$!
sink_listening() { in_backend 4 ss -ltn | grep -q ':8092 '; }
check "the sink listens" wait_until 5 sink_listening
upload_result=$(in_client timeout 60 python3 -c '
import hashlib, os, socket, sys
data = os.urandom(16 << 20)
s = socket.create_connection((sys.argv[1], 83), timeout=30)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
reply = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    reply += b
want = "198.18.0.2 " + hashlib.sha256(data).hexdigest()
print("ok" if reply.decode() == want else "got " + reply.decode())' $VIP 2>&1)
wait $sink || true
expect_eq "the sink read the client from the header and every byte after it" "$upload_result" "ok"

echo "proxy-v1 for new connections"
run lbctl listener modify "$v2" --client-ip proxy-v1
run lbctl --json listener show "$v2"
expect_eq "modified" "$(jqr '.client_ip')" "proxy-v1"
read -r name addr _ peer <<<"$(whoami 198.18.0.2 "http://$VIP/whoami")"
expect_eq "nginx reads the v1 header" "$name $addr" "be1 198.18.0.2"
check "  while the TCP peer is a local address ($peer)" is_local "$peer"

echo "proxy-v2 to HAProxy accept-proxy"
cat >"$E2E_TMP/haproxy.cfg" <<'CFG'
global
  maxconn 256
defaults
  mode http
  timeout connect 2s
  timeout client 5s
  timeout server 5s
frontend proxied
  bind *:8091 accept-proxy
  http-request return status 200 content-type text/plain lf-string "haproxy %[src] %[src_port]\n"
CFG
in_backend 2 haproxy -D -f "$E2E_TMP/haproxy.cfg" -p "$E2E_TMP/haproxy.pid"
read -r name addr port <<<"$(whoami 198.18.0.3 "http://$VIP:81/")"
kill "$(cat "$E2E_TMP/haproxy.pid")" 2>/dev/null
expect_eq "HAProxy's src is the client" "$name $addr" "haproxy 198.18.0.3"

echo "toa: the option in the first segments"
# A capture in the backend's namespace: every TCP segment to port 80 with a kind 254 option,
# as "ADDRESS:PORT", until 6 s have passed.
in_backend 3 timeout 6 python3 - >"$E2E_TMP/toa" <<'PY' &
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.settimeout(0.5)
while True:
    try:
        frame = s.recv(65535)
    except socket.timeout:
        continue
    if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        continue
    ihl = (frame[14] & 0x0F) * 4
    tcp = frame[14 + ihl:]
    if struct.unpack("!H", tcp[2:4])[0] != 80:
        continue
    options, i = tcp[20:(tcp[12] >> 4) * 4], 0
    while i < len(options) and options[i] != 0:
        if options[i] == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            break
        kind, length = options[i], options[i + 1]
        if kind == 254 and length == 8:
            port = struct.unpack("!H", options[i + 2:i + 4])[0]
            print("%s:%d" % (socket.inet_ntoa(options[i + 4:i + 8]), port), flush=True)
        i += length
PY
sniffer=$!
sleep 1
reply=$(whoami 198.18.0.2 "http://$VIP:82/whoami")
wait $sniffer || true
read -r name peer <<<"$reply"
expect_eq "the backend serves the request (its kernel ignores the option)" "$name" "be3"
check "  its TCP peer is a local address ($peer)" is_local "$peer"
seen=$(sort -u "$E2E_TMP/toa" | tr '\n' ' ')
expect_match "the capture saw TOA naming the client ($seen)" "$seen" "^198\.18\.0\.2:[0-9]+ $"
check "in the handshake's ACK and the first data" test "$(wc -l <"$E2E_TMP/toa")" -ge 2

echo "proxy-v1 over IPv6"
lb6=$(lbctl lb create --name client-ip6 --vip $VIP6)
pp6=$(lbctl group create "$lb6" --name proxied6)
lbctl group add-backend "$pp6" "[2001:db8:1::11]:8090" >/dev/null
v1six=$(lbctl listener create "$lb6" --protocol tcp --port 80 --group "$pp6" --hc-type none --client-ip proxy-v1)
check "an IPv6 listener with proxy-v1" test -n "$v1six"
read -r name addr _ peer <<<"$(in_client curl -g -s --max-time 3 "http://[$VIP6]/whoami" || echo error)"
expect_eq "nginx reads TCP6: the IPv6 client" "$name $addr" "be1 2001:db8::2"
check "  while the TCP peer is a local address ($peer)" test "${peer#2001:db8:1::}" != "$peer"

echo "refusals"
udp=$(lbctl group create "$lb" --name udp)
expect_rc 1 "udp: refused" lbctl listener create "$lb" --protocol udp --port 53 --group "$udp" \
  --hc-type none --client-ip proxy-v2
expect_match "  naming the option" "$ERR" "client_ip proxy-v2 applies to tcp listeners in fnat mode"
expect_rc 1 "dnat: refused" lbctl listener modify "$toa" --mode dnat
expect_rc 2 "an unknown mode: a usage error" lbctl listener modify "$toa" --client-ip proxy-v3

e2e_finish
