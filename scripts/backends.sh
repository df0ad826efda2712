#!/usr/bin/env bash
# Real servers for the test bed's backends (lbt-be1..4, after `scripts/testbed.sh up`).
#
#   scripts/backends.sh start [N...]   start nginx and a UDP responder in lbt-beN (default 1-4)
#   scripts/backends.sh stop  [N...]   stop them
#
# Both listen on IPv4 and IPv6 (separate sockets, so IPv4 peers show as plain IPv4 addresses).
# nginx listens on 80 and 8080 and answers:
#   /whoami  "beN <address the backend sees as the client>\n"
#   /big     a 64 MiB file of pseudo-random bytes, the same on every backend
#   /status/CODE  a reply with that status, CODE in 200 302 404 500 503 (http health checks)
#   anything else  "beN\n"
# and on 8090 expects a Proxy Protocol header (v1 or v2) first, logs each request in
# $RUN_DIR/beN/proxied.log as "<client address> <client port> <TCP peer> "<request>" <status>",
# and answers:
#   /whoami  "beN <client address from the header> <its port> <address of the TCP peer>\n"
#   /big     the same file as on 80
# The UDP responder on port 5353 answers each datagram with "beN <source address> " followed
# by the datagram itself.
set -euo pipefail

readonly RUN_DIR=/run/fulcrum-testbed
readonly WWW=$RUN_DIR/www

log() { printf 'backends: %s\n' "$*" >&2; }

make_big_file() {
  [[ -s $WWW/big ]] && return 0
  mkdir -p "$WWW"
  # Deterministic content: a fixed-key keystream, so every run and every backend serve the same.
  openssl enc -aes-128-ctr -K 000102030405060708090a0b0c0d0e0f -iv 0 -nosalt \
    -in <(head -c $((64 << 20)) /dev/zero) -out "$WWW/big.tmp" 2>/dev/null ||
    head -c $((64 << 20)) /dev/urandom >"$WWW/big.tmp"
  mv "$WWW/big.tmp" "$WWW/big"
}

write_nginx_config() {  # write_nginx_config N DIR
  local n=$1 dir=$2
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 100000;
  log_format proxied '\$proxy_protocol_addr \$proxy_protocol_port \$remote_addr "\$request" \$status';
  server {
    listen 80 backlog=4096;
    listen [::]:80 backlog=4096;
    listen 8080 backlog=4096;
    listen [::]:8080 backlog=4096;
    default_type text/plain;
    location = /whoami { return 200 "be$n \$remote_addr\n"; }
    location = /big { root $WWW; }
    location = /status/200 { return 200; }
    location = /status/302 { return 302 /; }
    location = /status/404 { return 404; }
    location = /status/500 { return 500; }
    location = /status/503 { return 503; }
    location / { return 200 "be$n\n"; }
  }
  server {
    listen 8090 proxy_protocol backlog=4096;
    listen [::]:8090 proxy_protocol backlog=4096;
    access_log $dir/proxied.log proxied;
    default_type text/plain;
    location = /whoami {
      return 200 "be$n \$proxy_protocol_addr \$proxy_protocol_port \$remote_addr\n";
    }
    location = /big { root $WWW; }
    location / { return 200 "be$n\n"; }
  }
}
CONF
}

start_one() {
  local n=$1 ns=lbt-be$1 dir=$RUN_DIR/be$1
  [[ -e /run/netns/$ns ]] || { log "namespace $ns does not exist (run scripts/testbed.sh up)"; return 1; }
  stop_one "$n"
  mkdir -p "$dir"
  write_nginx_config "$n" "$dir"
  ip netns exec "$ns" nginx -c "$dir/nginx.conf" -e "$dir/error.log"
  # One socket and thread per family; an IPv6-only socket, so IPv4 peers are not ::ffff:a.b.c.d.
  ip netns exec "$ns" python3 -u -c '
import socket, sys, threading
name = sys.argv[1]

def bound(family, host):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, 5353))
    return s

def serve(s):
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(("%s %s " % (name, peer[0])).encode() + data, peer)

s4, s6 = bound(socket.AF_INET, "0.0.0.0"), bound(socket.AF_INET6, "::")
threading.Thread(target=serve, args=(s6,), daemon=True).start()
serve(s4)
' "be$n" >"$dir/udp.log" 2>&1 &
  echo $! >"$dir/udp.pid"
}

stop_one() {
  local n=$1 dir=$RUN_DIR/be$1
  if [[ -s $dir/nginx.pid ]]; then
    kill -QUIT "$(cat "$dir/nginx.pid")" 2>/dev/null || true
    local deadline=$((SECONDS + 5))
    while [[ -s $dir/nginx.pid ]] && kill -0 "$(cat "$dir/nginx.pid" 2>/dev/null)" 2>/dev/null &&
      ((SECONDS < deadline)); do sleep 0.1; done
    rm -f "$dir/nginx.pid"
  fi
  if [[ -s $dir/udp.pid ]]; then
    kill "$(cat "$dir/udp.pid")" 2>/dev/null || true
    rm -f "$dir/udp.pid"
  fi
}

main() {
  local command=${1:-}
  shift || true
  local ids=("$@")
  ((${#ids[@]} > 0)) || ids=(1 2 3 4)
  case $command in
    start)
      make_big_file
      for n in "${ids[@]}"; do start_one "$n"; done
      ;;
    stop)
      for n in "${ids[@]}"; do stop_one "$n"; done
      ;;
    *)
      echo "usage: $0 start|stop [N...]" >&2
      exit 2
      ;;
  esac
}

main "$@"
