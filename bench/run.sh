#!/usr/bin/env bash
# bench/run.sh - the benchmarks (`make bench`); never part of the test run.
#
# Builds Release without sanitizers into $BENCH_BUILD, starts the echo
# servers on ephemeral loopback ports (np_echo on netpoll tasks with one
# scheduler per CPU, np_echo with one scheduler (netpoll1), np_echo with a
# thread per connection (netpoll_threads), a single-thread raw epoll loop,
# Go's net package with 16 KiB (as np_echo), 1 KiB and 64 KiB read buffers
# (go, go1k, go64), libuv),
# and runs the same load client
# (bench/client.c) against each: ping-pong round trips (64 B) and streaming
# (16 KiB writes, 64 KiB in flight per connection) at 1, 100 and 1000
# connections. Every measurement is repeated BENCH_REPEAT times, the servers
# interleaved in a rotating order so that a noisy neighbour hits all of them
# alike; the tables give the median. Then perf stat (context switches,
# futex / epoll_wait / read / write calls per round trip, counted by perf
# over exactly the measured window) on ping-pong, and the micro benchmarks
# (bench/micro.c against bench/go_micro.go), once more pinned to one CPU to
# separate the runtime's own cost from cross-CPU wake-ups (which cost 20-40 us
# on an idle VM whose vCPUs halt).
# Prints markdown on stdout: the machine, the tables, the total run time.
# Servers run on 127.0.0.1 ephemeral ports and are killed on exit.
#
# Environment:
#   BENCH_BUILD    build dir (default build-bench)
#   BENCH_SECONDS  measured seconds per run (default 1.5), BENCH_WARMUP (default 0.5)
#   BENCH_REPEAT   runs per figure, median taken (default 5)
#   BENCH_CONNS    connection counts (default "1 100 1000")
#   BENCH_MODES    "pingpong stream" (default both)
#   BENCH_SERVERS  subset of "epoll netpoll netpoll1 netpoll_threads go go1k go64 libuv"
#                  (default all but netpoll_threads, where available)
#   BENCH_WAIT_IDLE  wait up to this many seconds for the CPUs to be < 10% busy (default 0)
#   BENCH_PERF=0   skip the perf stat section; BENCH_MICRO=0 skip the micro benchmarks
#   BENCH_PINNED=0 skip the ping-pong run with the server pinned to one CPU, the client to another
#   BENCH_CMAKE_FLAGS  extra cmake configure flags
# Raw client output is kept in $BENCH_BUILD/results/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BENCH_BUILD:-$ROOT/build-bench}
SECS=${BENCH_SECONDS:-1.5}
WARMUP=${BENCH_WARMUP:-0.5}
REPEAT=${BENCH_REPEAT:-5}
CONNS=${BENCH_CONNS:-"1 100 1000"}
MODES=${BENCH_MODES:-"pingpong stream"}
SERVERS=${BENCH_SERVERS:-"epoll netpoll netpoll1 go go1k go64 libuv"}
RES=$BUILD/results
T_START=$(date +%s.%N)

log() { echo "bench: $*" >&2; }

# ---- build -------------------------------------------------------------------------
log "building (Release, no sanitizers) in $BUILD"
mkdir -p "$BUILD"
# shellcheck disable=SC2086
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DNP_SANITIZE=none -DBUILD_TESTING=OFF \
  ${BENCH_CMAKE_FLAGS:-} >"$BUILD/bench-configure.log" 2>&1 || { cat "$BUILD/bench-configure.log" >&2; exit 1; }
targets="np_echo np_bench_client np_bench_epoll_echo np_bench_micro"
grep -q '^LIBUV_FOUND:INTERNAL=1' "$BUILD/CMakeCache.txt" && targets="$targets np_bench_uv_echo"
grep -q '^NP_GO:FILEPATH=.*go$' "$BUILD/CMakeCache.txt" && targets="$targets np_bench_go"
# shellcheck disable=SC2086
cmake --build "$BUILD" -j "$(nproc)" --target $targets >"$BUILD/bench-build.log" 2>&1 ||
  { tail -50 "$BUILD/bench-build.log" >&2; exit 1; }
B=$BUILD/bench
CLIENT=$B/np_bench_client
declare -A SRV_CMD=([netpoll]=$BUILD/examples/np_echo [netpoll1]=$BUILD/examples/np_echo
  [netpoll_threads]=$BUILD/examples/np_echo [epoll]=$B/np_bench_epoll_echo
  [go]=$B/go_echo [go1k]=$B/go_echo [go64]=$B/go_echo [libuv]=$B/np_bench_uv_echo)
declare -A SRV_ARGS=([netpoll1]="--procs 1" [netpoll_threads]="--threads" [go1k]="-buf 1024" [go64]="-buf 65536")
avail=""
for s in $SERVERS; do
  if [ -x "${SRV_CMD[$s]:-/nonexistent}" ]; then avail="$avail $s"; else log "no $s server (${SRV_CMD[$s]:-?}), skipped"; fi
done
SERVERS=${avail# }

# ---- limits ------------------------------------------------------------------------
maxc=0
for c in $CONNS; do [ "$c" -gt "$maxc" ] && maxc=$c; done
need=$((maxc + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  if [ "$(ulimit -n)" -lt "$need" ]; then
    log "ulimit -n is $(ulimit -n) (hard $(ulimit -Hn)); $maxc connections need $need"; exit 1
  fi
fi

# ---- is the machine quiet? ------------------------------------------------------
cpu_busy() { # percent of all CPUs busy over 1 s
  local a b
  a=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat); sleep 1
  b=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
  echo "$a $b" | awk '{ busy = $3 - $1; all = busy + $4 - $2; printf "%.0f", all ? 100 * busy / all : 0 }'
}
busy=$(cpu_busy)
waited=0
while [ "$busy" -gt 10 ] && [ "$waited" -lt "${BENCH_WAIT_IDLE:-0}" ]; do
  log "machine ${busy}% busy, waiting for it to settle"; sleep 9; waited=$((waited + 10)); busy=$(cpu_busy)
done
[ "$busy" -gt 10 ] && log "WARNING: ${busy}% of the CPUs are busy with other work: the figures will be noisy"
LOAD_BEFORE="${busy}% busy, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- servers -----------------------------------------------------------------------
rm -rf "$RES"
mkdir -p "$RES"
declare -A PID PORT
servers_stop() {
  for s in "${!PID[@]}"; do kill "${PID[$s]}" 2>/dev/null || true; done
  for s in "${!PID[@]}"; do wait "${PID[$s]}" 2>/dev/null || true; done
  PID=()
}
trap servers_stop EXIT

start_server() { # name
  local s=$1 i
  # shellcheck disable=SC2086
  ${SRV_PREFIX:-} "${SRV_CMD[$s]}" ${SRV_ARGS[$s]:-} 127.0.0.1:0 >"$RES/server-$s.log" 2>&1 &
  PID[$s]=$!
  for i in $(seq 100); do
    if grep -q '^listening on ' "$RES/server-$s.log"; then
      PORT[$s]=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$RES/server-$s.log" | head -1)
      return 0
    fi
    sleep 0.05
  done
  log "$s did not start:"; cat "$RES/server-$s.log" >&2; exit 1
}
for s in $SERVERS; do start_server "$s"; done
log "servers: $(for s in $SERVERS; do printf '%s=%s(pid %s) ' "$s" "${PORT[$s]}" "${PID[$s]}"; done)"

run_client() { # server mode conns [extra client args...]
  local s=$1 m=$2 c=$3
  shift 3
  ${CLI_PREFIX:-} "$CLIENT" -a "127.0.0.1:${PORT[$s]}" -m "$m" -c "$c" -d "$SECS" -w "$WARMUP" -p "${PID[$s]}" "$@"
}

# ---- the matrix ------------------------------------------------------------------------
nsrv=$(echo "$SERVERS" | wc -w)
total=$((REPEAT * $(echo "$MODES" | wc -w) * $(echo "$CONNS" | wc -w) * nsrv))
n=0
for rep in $(seq "$REPEAT"); do
  for m in $MODES; do
    for c in $CONNS; do
      # rotate the order every run so no server always follows the same one
      set -- $SERVERS
      rot=$(((rep + c) % nsrv))
      order="${*:rot+1} ${*:1:rot}"
      for s in $order; do
        n=$((n + 1))
        log "[$n/$total] rep $rep $m $c conns: $s"
        line=$(run_client "$s" "$m" "$c") || { log "client failed against $s"; exit 1; }
        echo "server=$s rep=$rep $line" >>"$RES/matrix.txt"
      done
    done
  done
done

# ---- perf stat: what the thread-per-waiter runtime pays ------------------------------
PERF_CONNS=""
PERF_EVENTS=context-switches,cpu-migrations,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_read,syscalls:sys_enter_recvmsg,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto
perf_ok=0
if [ "${BENCH_PERF:-1}" != 0 ] && command -v perf >/dev/null &&
  perf stat -x, -e "$PERF_EVENTS" true >/dev/null 2>&1; then
  perf_ok=1
  PERF_CONNS="$(echo "$CONNS" | awk '{print $1}') $maxc"
  [ "$maxc" = "$(echo "$CONNS" | awk '{print $1}')" ] && PERF_CONNS=$maxc
  for c in $PERF_CONNS; do
    for s in $SERVERS; do
      log "perf stat: pingpong $c conns: $s"
      line=$(run_client "$s" pingpong "$c" -P "$RES/perf-$s-$c.csv" -E "$PERF_EVENTS") ||
        { log "client failed against $s"; exit 1; }
      echo "server=$s $line" >>"$RES/perf.txt"
    done
  done
elif [ "${BENCH_PERF:-1}" != 0 ]; then
  log "perf stat with syscall tracepoints unavailable (linux-perf, root or perf_event_paranoid); section skipped"
fi

servers_stop

# ---- pinned ping-pong: the server on the last CPU, the client on CPU 0 ----------------
# Nothing shares a core, so the figure is each server's cost per round trip
# rather than how its threads happen to share the two cores with the client.
# netpoll then runs one scheduler (its default follows the affinity mask, as
# Go's GOMAXPROCS does).
PINNED_SERVERS=""
if [ "${BENCH_PINNED:-1}" != 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  for s in epoll netpoll go64 libuv; do
    case " $SERVERS " in *" $s "*) PINNED_SERVERS="$PINNED_SERVERS $s" ;; esac
  done
  PINNED_SERVERS=${PINNED_SERVERS# }
  SRV_PREFIX="taskset -c $(($(nproc) - 1))" CLI_PREFIX="taskset -c 0"
  for s in $PINNED_SERVERS; do start_server "$s"; done
  for rep in $(seq "$REPEAT"); do
    for c in $CONNS; do
      set -- $PINNED_SERVERS
      rot=$(((rep + c) % $#))
      for s in ${*:rot+1} ${*:1:rot}; do
        log "pinned rep $rep pingpong $c conns: $s"
        line=$(run_client "$s" pingpong "$c") || { log "client failed against $s"; exit 1; }
        echo "server=$s rep=$rep $line" | sed 's/mode=pingpong/mode=pinned/' >>"$RES/matrix.txt"
      done
    done
  done
  servers_stop
  SRV_PREFIX="" CLI_PREFIX=""
fi

# ---- micro benchmarks -------------------------------------------------------------------
run_micro() { # file runs seconds wake_iterations tests [command prefix...]
  local rep file=$1 runs=$2 secs=$3 iters=$4 tests=$5
  shift 5
  for rep in $(seq "$runs"); do
    log "micro benchmarks $* run $rep/$runs"
    "$@" "$B/np_bench_micro" "$secs" "$iters" "$tests" | sed "s/^/rep=$rep /" >>"$file"
    if [ -x "$B/go_micro" ]; then "$@" "$B/go_micro" "$secs" "$iters" "$tests" | sed "s/^/rep=$rep /" >>"$file"; fi
  done
}
if [ "${BENCH_MICRO:-1}" != 0 ]; then
  run_micro "$RES/micro.txt" "$REPEAT" 1 5000 wake,pingpong,tasks,openclose,deadline
  # Everything on one CPU: no wake-up has to cross to the other (possibly
  # halted) vCPU, which separates the runtime's own cost from the machine's.
  if command -v taskset >/dev/null; then
    run_micro "$RES/micro-1cpu.txt" 3 0.5 2000 wake,pingpong,tasks taskset -c 0
  fi
fi

# ---- report -------------------------------------------------------------------------------
# ---- idle cost: memory per idle connection (bench/idle.sh) -------------------------------
if [ "${BENCH_IDLE:-1}" != 0 ]; then
  # 100,000 connections need as many descriptors in the server and in the
  # clients: root can raise the hard limit (to fs.nr_open), a container
  # without CAP_SYS_RESOURCE cannot (this project's machines: 20,000).
  ulimit -Hn "$(cat /proc/sys/fs/nr_open)" 2>/dev/null || true
  idle_default="1000 10000"
  hard=$(ulimit -Hn)
  if [ "$hard" = unlimited ] || [ "$hard" -ge 101000 ]; then
    idle_default="$idle_default 100000"
  else
    log "idle cost: 100,000 connections need ulimit -Hn >= 101000 (it is $hard): measured up to 10,000"
  fi
  IDLE_CONNS=${BENCH_IDLE_CONNS:-$idle_default}
  for s in netpoll netpoll_threads go; do
    [ -x "${SRV_CMD[$s]:-/nonexistent}" ] || continue
    conns=$IDLE_CONNS
    # A thread per connection: 100,000 threads are past this machine's
    # threads-max and 1.6 GB of kernel stacks; measured up to 10,000.
    [ "$s" = netpoll_threads ] && conns=$(for c in $IDLE_CONNS; do [ "$c" -le 10000 ] && echo "$c"; done)
    log "idle cost: $s at" $conns "connections"
    # shellcheck disable=SC2086
    "$ROOT/bench/idle.sh" "$s" "${SRV_CMD[$s]} ${SRV_ARGS[$s]:-}" $conns >>"$RES/idle.txt" ||
      log "idle cost: $s failed"
  done
fi

T_END=$(date +%s.%N)
model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "### Machine"
echo
echo "- CPU: ${model:-unknown}, $(nproc) cores online; $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM"
echo "- Kernel: $(uname -sr); $(gcc --version 2>/dev/null | head -1 || echo cc)"
command -v go >/dev/null && echo "- $(go version | sed 's/ linux.*//'); libuv $(pkg-config --modversion libuv 2>/dev/null || echo n/a)"
echo "- Before the run the CPUs were $LOAD_BEFORE (other processes)."
echo "- Client and server share the machine: the client is one thread (one core at most);"
echo "  each figure is the median of $REPEAT runs of ${SECS} s after ${WARMUP} s of warm-up, servers interleaved."
echo

# median of the values of field F for each (mode, conns, server)
awk -v servers="$SERVERS" -v conns="$CONNS" -v modes="$MODES${PINNED_SERVERS:+ pinned}" -v perf_ok="$perf_ok" -v perf_conns="${PERF_CONNS:-}" '
function med(key, f,    k, i, j, t, a) {
  k = cnt[key, f]
  if (k == 0) return ""
  for (i = 1; i <= k; i++) a[i] = val[key, f, i]
  for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
function fmt(v, p) { return v == "" ? "-" : sprintf(p, v) }
FILENAME ~ /matrix.txt$/ {
  delete kv
  for (i = 1; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
  key = kv["mode"] SUBSEP kv["conns"] SUBSEP kv["server"]
  for (f in kv) if (kv[f] ~ /^[0-9.]+$/) { cnt[key, f]++; val[key, f, cnt[key, f]] = kv[f] }
  next
}
FILENAME ~ /perf.txt$/ {
  delete kv
  for (i = 1; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
  pops[kv["server"], kv["conns"]] = kv["perf_ops"]
  next
}
FILENAME ~ /perf-.*csv$/ {
  # perf stat -x, : value,unit,event,...
  nparts = split(FILENAME, q, "/"); split(q[nparts], r, "[-.]"); s = r[2]; c = r[3]
  if ($0 ~ /^#/ || split($0, col, ",") < 3) next
  ev = col[3]; sub(/^syscalls:sys_enter_/, "", ev)
  v = col[1] + 0
  if (ev == "epoll_pwait") ev = "epoll_wait"
  if (ev == "writev") ev = "write"
  if (ev == "recvmsg") ev = "read"
  if (ev == "sendto") ev = "write" # netpoll writes sockets with send (MSG_NOSIGNAL)
  pv[s, c, ev] += v
  next
}
END {
  ns = split(servers, S, " "); nc = split(conns, C, " "); nm = split(modes, M, " ")
  for (mi = 1; mi <= nm; mi++) {
    m = M[mi]
    pp = m == "pingpong" || m == "pinned"
    if (m == "pinned") {
      print "### Ping-pong, the server pinned to one CPU and the client to another"
      print ""
    }
    if (m == "pingpong") {
      print "### Ping-pong: 64 B round trips per second"
      print ""
    }
    if (pp) {
      print "| conns | server | round trips/s | vs epoll | vs Go | vs Go 1K | vs Go 64K | p50 us | p99 us | server CPU (cores) | server CPU us/rt | ctx switches/rt |"
      print "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    } else {
      print "### Streaming: 16 KiB writes, 64 KiB in flight per connection, MB/s echoed"
      print ""
      print "| conns | server | MB/s | vs epoll | vs Go | vs Go 1K | vs Go 64K | server CPU (cores) | client CPU (cores) |"
      print "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    }
    rf = pp ? "rt_per_s" : "mb_per_s"
    for (ci = 1; ci <= nc; ci++) {
      c = C[ci]
      e = med(m SUBSEP c SUBSEP "epoll", rf); g = med(m SUBSEP c SUBSEP "go", rf); g64 = med(m SUBSEP c SUBSEP "go64", rf)
      g1k = med(m SUBSEP c SUBSEP "go1k", rf)
      for (si = 1; si <= ns; si++) {
        s = S[si]; k = m SUBSEP c SUBSEP s
        x = med(k, rf)
        if (x == "") continue
        if (pp)
          printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c, s, fmt(x, "%.0f"), ratio(x, e), ratio(x, g), ratio(x, g1k), ratio(x, g64),
            fmt(med(k, "p50_us"), "%.1f"), fmt(med(k, "p99_us"), "%.1f"), fmt(med(k, "srv_cpu"), "%.2f"),
            fmt(med(k, "srv_cpu_us_per_op"), "%.2f"), fmt(med(k, "srv_csw_per_op"), "%.2f")
        else
          printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c, s, fmt(x, "%.0f"), ratio(x, e), ratio(x, g), ratio(x, g1k), ratio(x, g64),
            fmt(med(k, "srv_cpu"), "%.2f"), fmt(med(k, "cli_cpu"), "%.2f")
      }
    }
    print ""
  }
  if (perf_ok == 1) {
    print "### Where the time goes: perf stat on the server, ping-pong, per round trip"
    print ""
    print "| conns | server | ctx switches | cpu migrations | futex | epoll_wait | read | write |"
    print "|---:|---|---:|---:|---:|---:|---:|---:|"
    npc = split(perf_conns, PC, " ")
    for (ci = 1; ci <= npc; ci++) for (si = 1; si <= ns; si++) {
      s = S[si]; c = PC[ci]; o = pops[s, c]
      if (o == "" || o == 0) continue
      printf "| %s | %s | %.2f | %.3f | %.2f | %.3f | %.2f | %.2f |\n", c, s, pv[s, c, "context-switches"] / o,
        pv[s, c, "cpu-migrations"] / o, pv[s, c, "futex"] / o, pv[s, c, "epoll_wait"] / o, pv[s, c, "read"] / o,
        pv[s, c, "write"] / o
    }
    print ""
  }
}' "$RES/matrix.txt" $( [ "$perf_ok" = 1 ] && echo "$RES/perf.txt" "$RES"/perf-*.csv )

micro_table() { # file title [wake_and_pingpong_only]
  awk -v title="$2" -v short="${3:-0}" '
  function med(key,    k, i, j, t, a) {
    k = cnt[key]
    if (k == 0) return ""
    for (i = 1; i <= k; i++) a[i] = val[key, i]
    for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  function r(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
  function f(v) { return v == "" ? "-" : sprintf("%.0f", v) }
  {
    delete kv
    for (i = 1; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
    for (fl in kv) if (kv[fl] ~ /^[0-9.]+$/ && fl != "rep" && fl != "n") {
      key = kv["name"] SUBSEP kv["impl"] SUBSEP fl
      cnt[key]++; val[key, cnt[key]] = kv[fl]
    }
  }
  function row(label, name, field, rawimpl, impl,    x, raw, g) {
    if (impl == "") impl = "netpoll"
    x = med(name SUBSEP impl SUBSEP field); raw = rawimpl == "" ? "" : med(name SUBSEP rawimpl SUBSEP field)
    g = med(name SUBSEP "go" SUBSEP field)
    printf "| %s | %s | %s | %s | %s | %s |\n", label, f(raw), f(x), f(g), r(x, raw), r(x, g)
  }
  END {
    print title
    print ""
    print "| figure | raw baseline | netpoll | Go | netpoll / raw | netpoll / Go |"
    print "|---|---:|---:|---:|---:|---:|"
    row("wake latency p50, ns (raw: thread in epoll_wait)", "wake", "p50_ns", "raw_epoll")
    row("wake latency p99, ns (raw: thread in epoll_wait)", "wake", "p99_ns", "raw_epoll")
    row("wake latency p50, ns (raw: thread in blocking read)", "wake", "p50_ns", "raw_read")
    row("wake latency p99, ns (raw: thread in blocking read)", "wake", "p99_ns", "raw_read")
    row("wake latency p50, ns, a parked task (raw: thread in epoll_wait)", "wake", "p50_ns", "raw_epoll", "netpoll_task")
    row("wake latency p99, ns, a parked task (raw: thread in epoll_wait)", "wake", "p99_ns", "raw_epoll", "netpoll_task")
    row("park/unpark ping-pong, round trips/s (raw: blocking pipes)", "pingpong", "per_s", "raw")
    row("the same, both sides tasks of one scheduler", "pingpong", "per_s", "raw", "netpoll_tasks")
    row("task park + ready + 2 switches, round trips/s", "task_park_unpark", "per_s", "")
    if (short) { print ""; exit }
    row("open+close, descriptors/s (raw: epoll_ctl ADD + close)", "openclose", "per_s", "raw")
    row("set deadline, calls/s, 1 descriptor", "deadline1", "per_s", "")
    row("set deadline, calls/s, round-robin over 1000 armed", "deadline1000", "per_s", "")
    print ""
  }' "$1"
}
if [ -s "$RES/micro.txt" ]; then
  micro_table "$RES/micro.txt" "### Micro benchmarks (median of $REPEAT runs; ratio = netpoll / reference)"
fi
if [ -s "$RES/micro-1cpu.txt" ]; then
  micro_table "$RES/micro-1cpu.txt" "### The same on one CPU (taskset -c 0: no cross-CPU wake-ups; median of 3 runs)" 1
fi

if [ -s "$RES/idle.txt" ]; then
  echo "### Idle cost: server memory per idle connection (RSS + page tables + 16 KiB kernel stack a thread)"
  echo
  echo "| conns | server | threads | bytes per connection |"
  echo "|---:|---|---:|---:|"
  awk '{ for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
         printf "| %s | %s | %s | %s |\n", kv["conns"], kv["server"], kv["threads"], kv["bytes_per_conn"] }' "$RES/idle.txt"
  echo
fi

awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "Total run time: %.0f s (raw output in build dir results/)\n", b - a }'
