#!/usr/bin/env bash
# bench/idle.sh - what an idle connection costs the server: N clients each
# echo one byte and then stay connected and silent; the server's memory is
# read from /proc before and after: resident memory (VmRSS), page tables
# (VmPTE) and kernel stacks (16 KiB a thread on x86-64). Prints one line per
# server and connection count:
#   idle server=S conns=N threads=T rss_kib=.. pte_kib=.. kstack_kib=.. bytes_per_conn=..
#
#   bench/idle.sh SERVER_NAME "COMMAND..." CONNS...
# The command must print "listening on ADDR:PORT" on stdout. The clients
# are one Python process (its own memory is not measured).
set -euo pipefail
name=$1 cmd=$2
shift 2
log=$(mktemp)
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
# 100,000 connections need 100,000 descriptors in the server and as many in
# the clients: as root the hard limit can be raised (to fs.nr_open).
ulimit -Hn "$(cat /proc/sys/fs/nr_open)" 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# shellcheck disable=SC2086
$cmd 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q '^listening on ' "$log" && break; sleep 0.05; done
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$log" | head -1)
[ -n "$port" ] || { echo "idle: $name did not start" >&2; cat "$log" >&2; exit 1; }
mem() { # rss_kib pte_kib threads of the server
  awk '/^VmRSS:/ {r = $2} /^VmPTE:/ {p = $2} /^Threads:/ {t = $2} END {print r, p, t}' "/proc/$pid/status"
}
sleep 0.3
read -r rss0 pte0 thr0 < <(mem)
for n in "$@"; do
  python3 - "$port" "$n" "$pid" <<'PY' | while read -r rss pte thr; do
import os, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(n):
    # About 28,000 ephemeral ports per source address: 127.0.0.2, .3, ...
    # (IP_BIND_ADDRESS_NO_PORT: the port is picked at connect, per address)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IP, 24, 1)
    s.bind(("127.0.0.%d" % (2 + i // 20000), 0))
    s.connect(("127.0.0.1", port))
    s.sendall(b"x")
    socks.append(s)
for s in socks:
    assert s.recv(1) == b"x"
time.sleep(1.0)  # every server handler is back in its read, parked
st = open("/proc/%s/status" % sys.argv[3]).read().split("\n")
kv = {l.split(":")[0]: l.split()[1] for l in st if ":" in l and len(l.split()) > 1}
print(kv["VmRSS"], kv["VmPTE"], kv["Threads"])
for s in socks:
    s.close()
PY
    ks=$(((thr - thr0) * 16))
    per=$(((rss - rss0 + pte - pte0 + ks) * 1024 / n))
    echo "idle server=$name conns=$n threads=$thr rss_kib=$((rss - rss0)) pte_kib=$((pte - pte0)) kstack_kib=$ks bytes_per_conn=$per"
  done
  sleep 1 # the server closes the connections
done
