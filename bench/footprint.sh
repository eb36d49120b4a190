#!/usr/bin/env bash
# bench/footprint.sh - what one ping-pong round trip costs the server in user
# space, counted rather than timed: instructions, data references and D1
# misses per round trip, from valgrind's callgrind (simulated 32 KiB L1), for
# the raw epoll loop and np_echo on one scheduler (tasks). The same figures
# on every run and every machine, so a change of the runtime's hot path can
# be judged on a noisy 2-core VM where ratios move by 5% between runs.
# It does not see the kernel (the loop's syscalls are the same for both
# servers: bench/run.sh's perf stat section) nor what the kernel's own work
# evicts between two syscalls, so time per round trip is bench/run.sh's.
#
# Environment: BENCH_BUILD (default build-bench, made by bench/run.sh or
# `make bench`), FOOTPRINT_CONNS (default 1000), FOOTPRINT_SERVERS
# (default "epoll netpoll1").
# Prints a markdown table on stdout. Needs valgrind.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BENCH_BUILD:-$ROOT/build-bench}
CONNS=${FOOTPRINT_CONNS:-1000}
SERVERS=${FOOTPRINT_SERVERS:-"epoll netpoll1"}
command -v valgrind >/dev/null || { echo "footprint: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DNP_SANITIZE=none -DBUILD_TESTING=OFF >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target np_echo np_bench_client np_bench_epoll_echo >/dev/null
CLIENT=$BUILD/bench/np_bench_client
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# Per round trip: the read syscalls the server made inside the counted
# window (the epoll loop calls read(), the library ep_read: one each per
# round trip), and the window's totals.
per_round_trip() { # callgrind dump
  awk '
    /^summary:/ { ir = $2; dr = $3; dw = $4; d1r = $6; d1w = $7 }
    /^c?fn=/ {
      id = $0; sub(/^c?fn=/, "", id); name = id
      if (match(id, /^\([0-9]+\)/)) {
        key = substr(id, RSTART, RLENGTH); name = substr(id, RLENGTH + 2)
        if (name != "") names[key] = name; else name = names[key]
      }
      if ($0 ~ /^cfn=/) callee = name
      next
    }
    /^calls=/ { split($0, c, /[= ]/); if (callee == "read" || callee == "ep_read") rt += c[2] }
    END {
      if (rt == 0) { print "no round trips counted" > "/dev/stderr"; exit 1 }
      printf "%d | %.0f | %.0f | %.1f\n", rt, ir / rt, (dr + dw) / rt, (d1r + d1w) / rt
    }' "$1"
}

measure() { # name command...
  local name=$1 vp port
  shift
  valgrind --tool=callgrind --cache-sim=yes --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$OUT/cg.$name" "$@" 127.0.0.1:0 >"$OUT/$name.log" 2>&1 &
  vp=$!
  port=""
  for _ in $(seq 200); do
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$OUT/$name.log")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "footprint: $name did not start" >&2; cat "$OUT/$name.log" >&2; exit 1; }
  "$CLIENT" -a "127.0.0.1:$port" -m pingpong -c "$CONNS" -d 4 -w 1 >/dev/null &
  local cp=$!
  sleep 1.5 # connected and warm: count from here
  callgrind_control -z "$vp" >/dev/null 2>&1
  sleep 2
  callgrind_control -d "$vp" >/dev/null 2>&1
  wait "$cp"
  kill "$vp"
  wait "$vp" 2>/dev/null || true
  echo "| $name | $(per_round_trip "$OUT/cg.$name.1") |"
}

echo "### User-space footprint of one ping-pong round trip ($CONNS connections, callgrind)"
echo
echo "| server | round trips counted | instructions | data refs | D1 misses |"
echo "|---|---|---|---|---|"
for s in $SERVERS; do
  case $s in
    epoll) measure epoll "$BUILD/bench/np_bench_epoll_echo" ;;
    netpoll1) measure netpoll1 "$BUILD/examples/np_echo" --procs 1 ;;
    netpoll_threads) measure netpoll_threads "$BUILD/examples/np_echo" --threads ;;
    *) echo "footprint: unknown server $s" >&2; exit 2 ;;
  esac
done
