#!/usr/bin/env bash
# ci/fuzz.sh - build and run the fuzz targets (fuzz/target_*.c) for a bounded
# time on all cores, seeded from corpus/<target>/, keep what they found in a
# working corpus outside the source tree (<build>/corpus/<target>, reused by
# the next run) and turn a crash into a minimized, named regression input in
# corpus/regressions/<target>/. The tracked corpus/<target>/ is only read,
# except by --merge (`make fuzz-merge`), which folds the working corpus back
# into it, minimized. `make fuzz` runs it; fuzz/README.md is the manual.
#
#   ci/fuzz.sh [--smoke] [--build-only] [--no-merge] [--merge] [TARGET...]
#
#   --smoke       CI check: FUZZ_SECONDS defaults to 60 in all, nothing is
#                 written to any corpus, a crash fails the run (minimized
#                 crash and replay command are still printed)
#   --build-only  build the fuzzers and the replay driver, run nothing
#   --no-merge    do not keep new inputs in the working corpus (FUZZ_MERGE=0)
#   --merge       no fuzzing: merge the working corpus into the tracked
#                 corpus/<target>/ (minimized: only inputs that add coverage;
#                 re-minimized past FUZZ_CORPUS_KB), then review and commit
#   --bench       exec/s of each target on one core (libFuzzer, in-process,
#                 from a copy of corpus/<target>, fixed -seed; nothing
#                 written back): wall and per-CPU-second figures
#   TARGET...     lifecycle schedule events parser addr (default: all, or $TARGETS)
#
# Environment:
#   ENGINE          libfuzzer (default: -fork=JOBS) or afl (AFL++: one -M
#                   main and JOBS-1 -S secondaries sharing a sync dir)
#   FUZZ_SECONDS    fuzzing wall time in all, split evenly over the targets
#                   (default 240; --smoke: 60)
#   JOBS            parallel fuzzing processes per target (default: nproc)
#   FUZZ_SANITIZE   address (ASan+UBSan) or none; default address for
#                   libfuzzer, none for afl (faster; crashes are replayed
#                   under ASan by `make replay` anyway)
#   FUZZ_BUILD      build dir (default build-fuzz-<engine>-<sanitize>)
#   FUZZ_WORK       scratch dir for logs, raw crashes and one run's finds
#                   (default <build>/work/<date>)
#   FUZZ_CORPUS     the working corpora, one dir per target, kept across runs
#                   (default <build>/corpus)
#   FUZZ_CC         compiler (default clang; afl: afl-clang-lto, else
#                   afl-clang-fast)
#   FUZZ_TIMEOUT    seconds one input may run before it counts as a hang (20)
#   FUZZ_MINIMIZE_SECONDS  time to minimize one crash (default 30)
#   FUZZ_CORPUS_KB  when a corpus grows past this after a merge it is
#                   re-minimized (edge coverage only; hand-named seeds stay)
#                   (default 120)
#   FUZZ_MERGE=0    same as --no-merge
#
# Exit status: 0 no crash, 1 a crash was found (written to
# corpus/regressions/<target>/, or only reported with --smoke), 2 setup error.
# Without a crash a run leaves the source tree as it was (git status clean).
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ALL_TARGETS=(lifecycle schedule events parser addr)

SMOKE=0
BENCH=0
BUILD_ONLY=0
MERGE_TREE=0
MERGE=${FUZZ_MERGE:-1}
targets=()
for arg in "$@"; do
  case $arg in
    --smoke) SMOKE=1 ;;
    --build-only) BUILD_ONLY=1 ;;
    --bench) BENCH=1 ;;
    --no-merge) MERGE=0 ;;
    --merge) MERGE_TREE=1 ;;
    -h | --help)
      sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "fuzz: unknown option $arg (see --help)" >&2
      exit 2
      ;;
    *) targets+=("$arg") ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  # shellcheck disable=SC2206
  targets=(${TARGETS:-${ALL_TARGETS[*]}})
fi
for t in "${targets[@]}"; do
  case " ${ALL_TARGETS[*]} " in
    *" $t "*) ;;
    *)
      echo "fuzz: unknown target '$t' (targets: ${ALL_TARGETS[*]})" >&2
      exit 2
      ;;
  esac
done

ENGINE=${ENGINE:-libfuzzer}
case $ENGINE in
  libfuzzer) SAN=${FUZZ_SANITIZE:-address} ;;
  afl) SAN=${FUZZ_SANITIZE:-none} ;;
  *)
    echo "fuzz: ENGINE must be libfuzzer or afl" >&2
    exit 2
    ;;
esac
case $SAN in address | none) ;; *)
  echo "fuzz: FUZZ_SANITIZE must be address or none" >&2
  exit 2
  ;;
esac
if [ $SMOKE = 1 ]; then
  MERGE=0
  TOTAL=${FUZZ_SECONDS:-60}
else
  TOTAL=${FUZZ_SECONDS:-240}
fi
JOBS=${JOBS:-$(nproc)}
[ "$JOBS" -ge 1 ] 2>/dev/null || JOBS=1
TIMEOUT=${FUZZ_TIMEOUT:-20}
MIN_SECS=${FUZZ_MINIMIZE_SECONDS:-30}
CORPUS_KB=${FUZZ_CORPUS_KB:-120}
BUILD=${FUZZ_BUILD:-$ROOT/build-fuzz-$ENGINE-$SAN}
WORK=${FUZZ_WORK:-$BUILD/work/$(date +%Y%m%d-%H%M%S)}
CORPUS=${FUZZ_CORPUS:-$BUILD/corpus}
PER=$((TOTAL / ${#targets[@]}))
[ $PER -ge 5 ] || PER=5

log() { printf 'fuzz: %s\n' "$*"; }
die() {
  printf 'fuzz: %s\n' "$*" >&2
  exit 2
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---- dependencies ----------------------------------------------------------
# need_pkgs CHECK-COMMAND PACKAGES...: install (as root) or say how to.
need_pkgs() {
  local check=$1
  shift
  eval "$check" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing $* (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null ||
      { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; } ||
      die "could not install $*"
    eval "$check" >/dev/null 2>&1 && return 0
  fi
  die "missing tools; install them with: sudo apt-get install -y $*"
}
command -v cmake >/dev/null || need_pkgs "command -v cmake" cmake make
if [ "$ENGINE" = libfuzzer ]; then
  CC_=${FUZZ_CC:-clang}
  need_pkgs "command -v $CC_ && test -f \"\$($CC_ -print-file-name=libclang_rt.fuzzer-x86_64.a)\"" clang libclang-rt-14-dev
else
  need_pkgs "command -v afl-fuzz && command -v afl-clang-fast" afl++
  if [ -n "${FUZZ_CC:-}" ]; then
    CC_=$FUZZ_CC
  elif command -v afl-clang-lto >/dev/null && echo 'int main(void){return 0;}' |
    afl-clang-lto -x c - -o /tmp/fuzz-lto-probe.$$ >/dev/null 2>&1; then
    CC_=afl-clang-lto
  else
    CC_=afl-clang-fast
  fi
  rm -f /tmp/fuzz-lto-probe.$$
fi

# ---- build -------------------------------------------------------------------
bins=()
for t in "${targets[@]}"; do
  if [ "$ENGINE" = libfuzzer ]; then bins+=("fuzz_$t"); else bins+=("fuzz_${t}_afl"); fi
done
cfg=(-S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF
  -DNP_FUZZ_ENGINE="$ENGINE" -DNP_SANITIZE="$SAN")
# Without ASan nothing provides the sancov callbacks that fuzzer-no-link code
# calls in the non-fuzzer executables (np_fuzz_replay, npsim); this links them.
[ "$ENGINE" = libfuzzer ] && [ "$SAN" = none ] && cfg+=(-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=fuzzer-no-link)
log "building ${bins[*]} ($ENGINE, sanitize=$SAN, $CC_) in ${BUILD#"$ROOT"/}"
t0=$(now)
mkdir -p "$BUILD"
if ! { CC=$CC_ cmake "${cfg[@]}" && cmake --build "$BUILD" -j "$JOBS" --target "${bins[@]}" np_fuzz_replay; } \
  >"$BUILD/fuzz-build.log" 2>&1; then
  tail -30 "$BUILD/fuzz-build.log" >&2
  die "build failed (log: $BUILD/fuzz-build.log)"
fi
log "built in $(since "$t0") s"
REPLAY_BIN=$BUILD/fuzz/np_fuzz_replay
[ $BUILD_ONLY = 1 ] && exit 0

mkdir -p "$WORK"
TTY=0
[ -t 1 ] && TTY=1
CRASHED=0
STOP=0
cur_pids=()
on_int() {
  STOP=1
  for p in "${cur_pids[@]}"; do kill -INT "$p" 2>/dev/null; done
}
trap on_int INT TERM

# ---- crash naming --------------------------------------------------------------
# classify < OUTPUT: a file-name fragment saying what broke, taken from the
# harness's report ("np_fuzz_<t>: invariant violated: I6: ...") or the sanitizer.
classify() {
  awk '
    function slug(s, n) {
      s = tolower(s); gsub(/0x[0-9a-f]+/, "", s); gsub(/[^a-z0-9]+/, "-", s)
      gsub(/^-+|-+$/, "", s); n = split(s, w, "-"); s = ""
      for (i = 1; i <= n && length(s) < 36; i++) if (w[i] != "" && w[i] !~ /^[0-9]+$/) s = s (s == "" ? "" : "-") w[i]
      return s
    }
    function emit(c, m) { c = (m == "" ? c : c "-" slug(m)); gsub(/-+$/, "", c); print c; done = 1; exit }
    /^np_fuzz_[a-z]+: / && !harness {
      m = $0; sub(/^np_fuzz_[a-z]+: /, "", m); sub(/^invariant violated: /, "", m)
      sub(/^[A-Za-z0-9_.-]+ failed: /, "", m)          # schedule: "<scenario> failed: "
      harness = m
    }
    /ERROR: AddressSanitizer: / && !san { m = $0; sub(/.*AddressSanitizer: /, "", m); split(m, a, " "); san = "asan-" a[1] }
    /ERROR: LeakSanitizer/ && !san { san = "leak" }
    /runtime error: / && !san {
      m = $0; f = $0; sub(/.*runtime error: /, "", m); sub(/:.*/, "", m)
      sub(/: runtime error: .*/, "", f); sub(/:[0-9]+:[0-9]+$/, "", f); sub(/.*\//, "", f)
      san = "ubsan-" slug(m) "-" f
    }
    /ERROR: libFuzzer: timeout/ && !san { san = "timeout" }
    /ERROR: libFuzzer: out-of-memory/ && !san { san = "oom" }
    END {
      if (done) exit
      if (harness != "") {
        m = harness
        if (match(m, /^(I[0-9]+(\/I[0-9]+)*|expectation|data):/)) {
          c = substr(m, 1, RLENGTH - 1); gsub(/\//, "-", c); emit(c, substr(m, RLENGTH + 1))
        }
        if (match(m, /\(I[0-9]+(\/I[0-9]+)*/)) {
          c = substr(m, RSTART + 1, RLENGTH - 1); gsub(/\//, "-", c); sub(/ *\(.*/, "", m); emit(c, m)
        }
        if (match(m, /\(Go [0-9]+/)) { c = "go" substr(m, RSTART + 4, RLENGTH - 4); sub(/ *\(.*/, "", m); emit(c, m) }
        if (FILENAME ~ /parser/ || m ~ /scenario|parse|dump/) emit("parser", m)
        emit("harness", m)
      }
      if (san != "") { print san; exit }
      print "crash"
    }'
}

# run_input BIN FILE: run one input the way the engine's binary does; output on stdout.
run_input() {
  if [ "$ENGINE" = libfuzzer ]; then
    timeout -k 5 $((TIMEOUT * 3)) "$1" -timeout="$TIMEOUT" "$2" 2>&1
  else
    timeout -k 5 $((TIMEOUT * 3)) "$1" <"$2" 2>&1
  fi
}

# handle_crash TARGET BIN RAW: minimize, name, store; prints the replay command.
handle_crash() {
  local t=$1 bin=$2 raw=$3 w=$WORK/$1 min out rc cls name dest
  min=$w/min-$(basename "$raw")
  min=${min//:/_}
  log "$t: minimizing $(basename "$raw") ($(wc -c <"$raw") bytes, at most ${MIN_SECS} s)"
  case $(basename "$raw") in
    timeout-* | oom-*) cp "$raw" "$min" ;;
    *)
      if [ "$ENGINE" = libfuzzer ]; then
        timeout -k 5 $((MIN_SECS + 30)) "$bin" -minimize_crash=1 -max_total_time="$MIN_SECS" -timeout="$TIMEOUT" \
          -exact_artifact_path="$min" "$raw" >"$w/minimize.log" 2>&1
      else
        AFL_SKIP_CPUFREQ=1 AFL_ALLOW_TMP=1 timeout -k 5 $((MIN_SECS + 30)) afl-tmin -t $((TIMEOUT * 1000)) -m none \
          -i "$raw" -o "$min" -- "$bin" >"$w/minimize.log" 2>&1
      fi
      ;;
  esac
  out=$(run_input "$bin" "$min")
  rc=$?
  if [ ! -s "$min" ] || [ $rc = 0 ]; then
    # minimization failed or lost the crash: keep the raw input
    cp "$raw" "$min"
    out=$(run_input "$bin" "$min")
    rc=$?
    [ $rc = 0 ] && log "$t: WARNING: $(basename "$raw") does not crash when run alone (flaky?)"
  fi
  cls=$(printf '%s\n' "$out" | classify)
  [ "$t" = parser ] && case $cls in parser*) ;; *) cls="parser-$cls" ;; esac
  name=$cls-$(sha1sum "$min" | cut -c1-8)
  # A stored regression of the same class that still fails: the same, known bug.
  local known="" k kout
  for k in "$ROOT/corpus/regressions/$t/$cls"-*; do
    [ -f "$k" ] || continue
    kout=$( (timeout -k 5 $((TIMEOUT * 3)) "$REPLAY_BIN" "$t" "$k"; exit $?) 2>&1) && continue
    if [ "$(printf '%s\n' "$kout" | classify)" = "$cls" ] || [ "parser-$(printf '%s\n' "$kout" | classify)" = "$cls" ]; then
      known=$k
      break
    fi
  done
  if [ $SMOKE = 1 ]; then
    dest=$WORK/crashes/$t/$name
    mkdir -p "$(dirname "$dest")"
    cp "$min" "$dest"
  elif [ -n "$known" ]; then
    dest=$WORK/crashes/$t/$name
    mkdir -p "$(dirname "$dest")"
    cp "$min" "$dest"
  else
    dest=$(store_regression "$t" "$min" "$name")
  fi
  local rel=${dest#"$ROOT"/}
  echo
  echo "=== CRASH in $t: $cls ($(wc -c <"$dest") bytes after minimization)"
  printf '%s\n' "$out" | grep -a -m 3 -E '^np_fuzz_|ERROR: |runtime error: ' | sed 's/^/    /'
  echo "    input:   $rel"
  echo "    replay:  make replay FILE=$rel"
  echo "             (= ci/replay.sh $rel: np_fuzz_replay -v $t FILE, the decoded program and the simulator trace)"
  if [ -n "$known" ]; then
    echo "    a known bug: corpus/regressions/$t/$(basename "$known") fails the same way (not stored again)"
  elif [ $SMOKE = 0 ]; then
    echo "    it is now a regression input: ctest (fuzz_corpus_replay) fails until the bug is fixed"
  fi
  echo
}

# ---- progress --------------------------------------------------------------------
# stats_libfuzzer LOG: "execs cov ft corp" from the newest status line.
stats_libfuzzer() {
  # -fork prints "#N: cov: ..." (the children's own "#N\tNEW ..." lines only
  # show up in crash logs); in-process runs print "#N\tNEW|pulse|DONE cov: ..."
  local pat='^#[0-9]+[[:space:]]'
  [ "$JOBS" -gt 1 ] && pat='^#[0-9]+: cov:'
  grep -a -E "$pat" "$1" 2>/dev/null | tail -1 | awk '{
    e = $1; gsub(/[^0-9]/, "", e); cov = ft = corp = 0
    for (i = 2; i < NF; i++) {
      if ($i == "cov:") cov = $(i + 1); if ($i == "ft:") ft = $(i + 1)
      if ($i == "corp:") { corp = $(i + 1); sub(/\/.*/, "", corp) }
    }
    print e + 0, cov + 0, ft + 0, corp + 0 }'
}
# stats_afl SYNC LOGS...: "execs edges map% corp" over the instances, from the
# newest line of each plot_data. AFL++ 4.04c (Debian 12) writes plot_data and
# fuzzer_stats only about once a minute (and at exit) when it runs without
# its UI, so for most of a short run there is nothing to read: execs is then
# -1 (shown as n/a, not as a false 0) and the corpus size comes from the
# instances' own log lines ("Fuzzing test case #N (T total, ...").
stats_afl() {
  local sync=$1 f
  shift
  {
    for f in "$sync"/*/plot_data; do [ -f "$f" ] && grep -v '^#' "$f" | tail -1 | sed 's/^/P /'; done
    for f in "$@"; do
      [ -f "$f" ] && tr '\r' '\n' <"$f" | grep -a -o 'Fuzzing test case #[0-9]* ([0-9]* total' | tail -1 | sed 's/^/L /'
    done
  } 2>/dev/null | awk -F', *' '
    /^P / { sub(/^P /, ""); p = 1; e += $12; if ($13 > ed) ed = $13; v = $7; sub(/%/, "", v); if (v + 0 > cov) cov = v + 0
            if ($4 > c) c = $4; next }
    /^L / { n = $0; sub(/.*\(/, "", n); sub(/ total.*/, "", n); if (n + 0 > lc) lc = n + 0 }
    END { if (!p) { e = -1; c = lc } else if (lc > c) c = lc; print e + 0, ed + 0, cov + 0, c + 0 }'
}
count_crashes() {
  if [ "$ENGINE" = libfuzzer ]; then
    find "$1" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l
  else
    find "$1" -path '*/crashes/id:*' -type f 2>/dev/null | wc -l
  fi
}
# first_crash_time DIR START: seconds from START to the oldest crash file.
first_crash_time() {
  local m
  m=$(find "$1" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' -o -path '*/crashes/id:*' \) \
    -printf '%T@\n' 2>/dev/null | sort -n | head -1)
  awk -v m="${m:-0}" -v s="$1" -v a="$2" 'BEGIN { d = m - a; if (m == 0 || d < 0) d = 0; printf "%.1f", d }'
}
progress_line() { # target elapsed secs execs cov ft corp crashes (execs -1: not known yet)
  local rate execs=$4
  rate=$(awk -v e="$4" -v s="$2" 'BEGIN { if (e < 0) print "n/a"; else printf "%d", (s > 0 ? e / s : 0) }')
  [ "$execs" -lt 0 ] 2>/dev/null && execs="n/a"
  set -- "$1" "$2" "$3" "$execs" "$5" "$6" "$7" "$8"
  if [ "$ENGINE" = libfuzzer ]; then
    printf '[%-9s] %4ds/%ds  execs %-10s %7s exec/s  cov %-5s ft %-6s corpus %-5s crashes %s' \
      "$1" "${2%.*}" "$3" "$4" "$rate" "$5" "$6" "$7" "$8"
  else
    printf '[%-9s] %4ds/%ds  execs %-10s %7s exec/s  edges %-5s map %s%%  corpus %-5s crashes %s' \
      "$1" "${2%.*}" "$3" "$4" "$rate" "$5" "$6" "$7" "$8"
  fi
}

# ---- seeds that fail --------------------------------------------------------------
# store_regression TARGET FILE NAME: copy FILE to corpus/regressions/<target>/NAME
# unless the same bytes are stored there already; echoes the stored path.
store_regression() {
  local dir=$ROOT/corpus/regressions/$1 h f
  mkdir -p "$dir"
  h=$(sha1sum "$2" | cut -c1-40)
  for f in "$dir"/*; do
    if [ -f "$f" ] && [ "$(sha1sum "$f" | cut -c1-40)" = "$h" ]; then
      echo "$f"
      return 0
    fi
  done
  cp "$2" "$dir/$3"
  echo "$dir/$3"
}

# preflight TARGET: replays corpus/<target>/. A failing seed would stop the
# fuzzer at once, so the fuzzer then starts from the passing seeds only
# (SEEDS_FOR_FUZZER), and the smallest failing seed is stored, named, as a
# regression input (not with --smoke). The failing seeds stay in
# corpus/<target>/: ctest fails on them until the bug is fixed.
preflight() {
  local t=$1 seeds=$ROOT/corpus/$1 f out cls name bad=0 smallest="" smallest_out="" stored
  SEEDS_FOR_FUZZER=$seeds
  [ -d "$seeds" ] || return 0
  ("$REPLAY_BIN" "$t" "$seeds"; exit $?) >/dev/null 2>&1 && return 0
  SEEDS_FOR_FUZZER=$WORK/$t/seeds
  rm -rf "$SEEDS_FOR_FUZZER"
  mkdir -p "$SEEDS_FOR_FUZZER"
  for f in "$seeds"/*; do
    [ -f "$f" ] || continue
    if out=$( (timeout -k 5 $((TIMEOUT * 3)) "$REPLAY_BIN" "$t" "$f"; exit $?) 2>&1); then
      cp "$f" "$SEEDS_FOR_FUZZER/"
      continue
    fi
    bad=$((bad + 1))
    if [ -z "$smallest" ] || [ "$(wc -c <"$f")" -lt "$(wc -c <"$smallest")" ]; then
      smallest=$f
      smallest_out=$out
    fi
  done
  [ $bad -gt 0 ] || return 0
  CRASHED=1
  cls=$(printf '%s\n' "$smallest_out" | classify)
  [ "$t" = parser ] && case $cls in parser*) ;; *) cls="parser-$cls" ;; esac
  name=$cls-$(sha1sum "$smallest" | cut -c1-8)
  echo "=== SEED FAILS in $t: $bad seed(s) of corpus/$t fail on this build; the smallest: $(basename "$smallest"): $cls"
  printf '%s\n' "$smallest_out" | grep -a -m 2 -E '^np_fuzz_|ERROR: |runtime error: ' | sed 's/^/    /'
  if [ $SMOKE = 0 ]; then
    stored=$(store_regression "$t" "$smallest" "$name")
    echo "    input:   ${stored#"$ROOT"/}"
    echo "    replay:  make replay FILE=${stored#"$ROOT"/}"
  else
    echo "    replay:  make replay FILE=corpus/$t/$(basename "$smallest")"
  fi
  log "$t: crash after 0 s: $bad seed(s) fail (fuzzing from the $(find "$SEEDS_FOR_FUZZER" -type f | wc -l) that pass)"
  return 0
}

# ---- one target -------------------------------------------------------------------
summary=()
run_target() {
  local t=$1 secs=$2 w=$WORK/$1 seeds=$ROOT/corpus/$1 store=$CORPUS/$1 dict=$ROOT/fuzz/dict/$1.dict bin
  mkdir -p "$w" "$store"
  local start crash_at="" n_crash=0 st elapsed last_print=0
  cur_pids=()
  preflight "$t"
  if [ "$ENGINE" = libfuzzer ]; then
    bin=$BUILD/fuzz/fuzz_$t
    mkdir -p "$w/corpus" "$w/artifacts"
    local args=(-max_total_time="$secs" -timeout="$TIMEOUT" -rss_limit_mb=2048 -artifact_prefix="$w/artifacts/"
      -print_final_stats=1)
    [ -f "$dict" ] && args+=(-dict="$dict")
    [ "$JOBS" -gt 1 ] && args+=(-fork="$JOBS")
    log "$t: $secs s, $JOBS job(s), seeds ${SEEDS_FOR_FUZZER#"$ROOT"/} ($(find "$SEEDS_FOR_FUZZER" -type f | wc -l) files)"
    start=$(now)
    local dirs=("$w/corpus" "$SEEDS_FOR_FUZZER")
    [ -n "$(ls -A "$store")" ] && dirs+=("$store")
    timeout -k 10 $((secs + 120)) "$bin" "${args[@]}" "${dirs[@]}" >"$w/fuzz.log" 2>&1 &
    cur_pids=($!)
    local crashdir=$w/artifacts
  else
    bin=$BUILD/fuzz/fuzz_${t}_afl
    local in=$w/in
    mkdir -p "$in"
    find "$SEEDS_FOR_FUZZER" "$store" -maxdepth 1 -type f -size -1024k -exec cp {} "$in/" \;
    [ -n "$(ls -A "$in")" ] || printf '\0\0\0\0\0\0\0\0' >"$in/empty"
    local common=(-i "$in" -o "$w/sync" -V "$secs" -t $((TIMEOUT * 1000)) -m none)
    [ -f "$dict" ] && common+=(-x "$dict")
    log "$t: $secs s, 1 main + $((JOBS - 1)) secondary AFL++ instance(s), sync dir ${w#"$ROOT"/}/sync"
    start=$(now)
    export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SHUFFLE_QUEUE=1 AFL_ALLOW_TMP=1
    for ((i = 0; i < JOBS; i++)); do
      local role=(-M main)
      [ $i -gt 0 ] && role=(-S "s$i")
      timeout -k 10 $((secs + 120)) afl-fuzz "${role[@]}" "${common[@]}" -- "$bin" >"$w/afl-$i.log" 2>&1 &
      cur_pids+=($!)
      [ $i = 0 ] && sleep 1 # the main instance creates the sync dir layout
    done
    local crashdir=$w/sync
  fi
  # progress until every process has exited
  while :; do
    local alive=0
    for p in "${cur_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    elapsed=$(since "$start")
    n_crash=$(count_crashes "$crashdir")
    if [ "$n_crash" -gt 0 ] && [ -z "$crash_at" ]; then
      crash_at=$(first_crash_time "$crashdir" "$start")
      # one crash is enough: stop the other instances (libFuzzer -fork stops by itself)
      [ "$ENGINE" = afl ] && for p in "${cur_pids[@]}"; do kill -INT "$p" 2>/dev/null; done
    fi
    if [ "$ENGINE" = libfuzzer ]; then st=$(stats_libfuzzer "$w/fuzz.log"); else st=$(stats_afl "$w/sync" "$w"/afl-*.log); fi
    # shellcheck disable=SC2086
    set -- $st
    if [ $TTY = 1 ]; then
      printf '\r%s\033[K' "$(progress_line "$t" "$elapsed" "$secs" "${1:-0}" "${2:-0}" "${3:-0}" "${4:-0}" "$n_crash")"
    elif [ $alive = 0 ] || [ "${elapsed%.*}" -ge $((last_print + 15)) ]; then
      progress_line "$t" "$elapsed" "$secs" "${1:-0}" "${2:-0}" "${3:-0}" "${4:-0}" "$n_crash"
      echo
      last_print=${elapsed%.*}
    fi
    [ $alive = 0 ] && break
    sleep 1
  done
  [ $TTY = 1 ] && echo
  local frc=0
  for p in "${cur_pids[@]}"; do wait "$p" 2>/dev/null || frc=$?; done
  cur_pids=()
  elapsed=$(since "$start")
  if [ "$ENGINE" = afl ]; then # the instances have exited: their final figures are written
    # shellcheck disable=SC2086
    set -- $(stats_afl "$w/sync" "$w"/afl-*.log)
  fi
  local execs=${1:-0} cov=${2:-0} rate
  rate=$(awk -v e="$execs" -v s="$elapsed" 'BEGIN { if (e < 0) print "n/a"; else printf "%d", (s > 0 ? e / s : 0) }')
  [ "$execs" -lt 0 ] 2>/dev/null && execs="n/a"
  n_crash=$(count_crashes "$crashdir")
  [ "$n_crash" -gt 0 ] && [ -z "$crash_at" ] && crash_at=$(first_crash_time "$crashdir" "$start")
  if [ "$n_crash" = 0 ] && [ $frc != 0 ] && [ $STOP = 0 ]; then
    local flog=$w/fuzz.log
    [ "$ENGINE" = afl ] && flog=$w/afl-0.log
    log "$t: the fuzzer exited with status $frc without a crash file; log: $flog"
    tail -20 "$flog"
    CRASHED=1
  fi

  # crashes: minimize and name the first one (one bug is usually behind all)
  local first=""
  if [ "$n_crash" -gt 0 ]; then
    CRASHED=1
    if [ "$ENGINE" = libfuzzer ]; then
      first=$(ls -tr "$crashdir"/crash-* "$crashdir"/timeout-* "$crashdir"/oom-* "$crashdir"/leak-* 2>/dev/null | head -1)
    else
      first=$(find "$crashdir" -path '*/crashes/id:*' -type f | sort | head -1)
    fi
    log "$t: crash after ${crash_at} s ($n_crash crash file(s), raw in ${crashdir#"$ROOT"/})"
    handle_crash "$t" "$bin" "$first"
  fi

  # keep the new inputs in the working corpus (outside the tree), minimized
  local added=0
  if [ $MERGE = 1 ]; then
    local before after
    before=$(find "$store" -maxdepth 1 -type f | wc -l)
    local found=("$w/corpus")
    [ "$ENGINE" = afl ] && found=("$w"/sync/*/queue)
    merge_into "$t" "$bin" "$store" "${found[@]}"
    after=$(find "$store" -maxdepth 1 -type f | wc -l)
    added=$((after - before))
    reduce_if_big "$t" "$bin" "$store"
  fi
  local kb
  kb=$(kbytes "$store")
  summary+=("$(printf '%-9s %6.0f %11s %8s %6s %7s %5s %6s %s' "$t" "$elapsed" "$execs" "$rate" "$cov" \
    "$(if [ $MERGE = 1 ]; then echo "+$added"; else echo "-"; fi)" "${kb}K" "$n_crash" \
    "${crash_at:+(first after ${crash_at}s)}")")
}

# kbytes DIR: the size of the files in DIR (bytes, not disk blocks), in KB.
kbytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", (s + 1023) / 1024 }'; }

# merge_into TARGET BIN DEST DIR...: add to DEST the inputs of DIR... that add
# coverage to what DEST has (libFuzzer -merge=1 / afl-cmin), by content hash.
merge_into() {
  local t=$1 bin=$2 dest=$3 w=$WORK/$1 f
  shift 3
  mkdir -p "$w" "$dest"
  if [ "$ENGINE" = libfuzzer ]; then
    local src=()
    for f in "$@"; do [ -d "$f" ] && [ -n "$(ls -A "$f")" ] && src+=("$f"); done
    [ ${#src[@]} -gt 0 ] || return 0
    timeout -k 5 600 "$bin" -merge=1 -timeout="$TIMEOUT" -merge_control_file="$w/merge.ctl" "$dest" "${src[@]}" \
      >"$w/merge.log" 2>&1 || log "$t: merge failed (log: $w/merge.log)"
    return 0
  fi
  local all=$w/cmin-in
  rm -rf "$all" "$w/cmin-out"
  mkdir -p "$all"
  find "$dest" -maxdepth 1 -type f -exec cp {} "$all/" \;
  for d in "$@"; do
    for f in "$d"/*; do [ -f "$f" ] && cp "$f" "$all/$(sha1sum "$f" | cut -c1-40)"; done
  done
  [ -n "$(ls -A "$all")" ] || return 0
  if AFL_SKIP_CPUFREQ=1 AFL_ALLOW_TMP=1 timeout -k 5 600 afl-cmin -i "$all" -o "$w/cmin-out" -t $((TIMEOUT * 1000)) -m none \
    -- "$bin" >"$w/merge.log" 2>&1; then
    declare -A have=()
    for f in "$dest"/*; do [ -f "$f" ] && have[$(sha1sum "$f" | cut -c1-40)]=1; done
    for f in "$w"/cmin-out/*; do
      [ -f "$f" ] || continue
      local h
      h=$(sha1sum "$f" | cut -c1-40)
      [ -n "${have[$h]:-}" ] || cp "$f" "$dest/$h"
    done
  else
    log "$t: afl-cmin failed (log: $w/merge.log)"
  fi
}

# reduce_if_big TARGET BIN DIR: re-minimize DIR (edge coverage only) when it
# outgrew FUZZ_CORPUS_KB. Hand-named seeds (not a 40-hex name) stay.
reduce_if_big() {
  local t=$1 bin=$2 seeds=$3 w=$WORK/$1 kb
  kb=$(kbytes "$seeds")
  [ "$kb" -le "$CORPUS_KB" ] && return 0
  log "$t: ${seeds#"$ROOT"/} is ${kb} KB > FUZZ_CORPUS_KB=$CORPUS_KB: re-minimizing"
  local keep=$w/reduce-keep gen=$w/reduce-gen out=$w/reduce-out
  rm -rf "$keep" "$gen" "$out"
  mkdir -p "$keep" "$gen" "$out"
  for f in "$seeds"/*; do
    [ -f "$f" ] || continue
    if [[ $(basename "$f") =~ ^[0-9a-f]{40}$ ]]; then cp "$f" "$gen/"; else cp "$f" "$keep/"; fi
  done
  if [ "$ENGINE" = libfuzzer ]; then
    timeout -k 5 600 "$bin" -merge=1 -use_counters=0 -timeout="$TIMEOUT" "$out" "$keep" "$gen" >"$w/reduce.log" 2>&1 ||
      {
        log "$t: re-minimizing failed (log: $w/reduce.log)"
        return 0
      }
    # the merge copied the hand-named seeds that add coverage; put all of them back by name
    for f in "$out"/*; do [ -f "$f" ] && [ -f "$gen/$(basename "$f")" ] || rm -f "$f"; done
  else
    cp "$keep"/* "$gen/" 2>/dev/null
    AFL_SKIP_CPUFREQ=1 AFL_ALLOW_TMP=1 timeout -k 5 600 afl-cmin -e -i "$gen" -o "$out" -t $((TIMEOUT * 1000)) -m none -- "$bin" \
      >"$w/reduce.log" 2>&1 || {
      log "$t: re-minimizing failed (log: $w/reduce.log)"
      return 0
    }
    for f in "$out"/*; do [ -f "$f" ] && [[ $(basename "$f") =~ ^[0-9a-f]{40}$ ]] || rm -f "$f"; done
  fi
  find "$seeds" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9a-f]{40}' -delete
  cp "$out"/* "$seeds/" 2>/dev/null
  log "$t: ${seeds#"$ROOT"/} now $(find "$seeds" -type f | wc -l) files, $(kbytes "$seeds") KB"
}

# ---- --bench: one core, in-process ------------------------------------------------
if [ $BENCH = 1 ]; then
  [ "$ENGINE" = libfuzzer ] || die "--bench measures libFuzzer builds only"
  echo "exec/s on one core, sanitize=$SAN, ${PER} s per target, from corpus/<target> (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "target        execs  exec/s(wall)  exec/s(cpu)   cov"
  for t in "${targets[@]}"; do
    w=$WORK/bench-$t
    rm -rf "$w"
    mkdir -p "$w/corpus"
    cp "$ROOT/corpus/$t"/* "$w/corpus/" 2>/dev/null
    dict=()
    [ -f "$ROOT/fuzz/dict/$t.dict" ] && dict=(-dict="$ROOT/fuzz/dict/$t.dict")
    TIMEFORMAT='%R %U %S'
    { time "$BUILD/fuzz/fuzz_$t" -max_total_time="$PER" -seed=1 -print_final_stats=1 -timeout="$TIMEOUT" \
      -artifact_prefix="$w/" "${dict[@]}" "$w/corpus" >"$w/log" 2>&1; } 2>"$w/time"
    read -r wall usr sys <"$w/time"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$w/log")
    cov=$(grep -a -E '^#[0-9]+' "$w/log" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    awk -v t="$t" -v e="${execs:-0}" -v w="$wall" -v c="$(awk -v u="$usr" -v s="$sys" 'BEGIN { print u + s }')" \
      -v cov="${cov:-0}" 'BEGIN { printf "%-9s %9d %13d %12d %5d\n", t, e, (w > 0 ? e / w : 0), (c > 0 ? e / c : 0), cov }'
    ls "$w"/crash-* >/dev/null 2>&1 && echo "  ($t crashed during the measurement: $(ls "$w"/crash-* | head -1))"
  done
  exit 0
fi

# ---- --merge: the working corpus into the tracked one ------------------------------
if [ $MERGE_TREE = 1 ]; then
  mkdir -p "$WORK"
  for t in "${targets[@]}"; do
    if [ "$ENGINE" = libfuzzer ]; then bin=$BUILD/fuzz/fuzz_$t; else bin=$BUILD/fuzz/fuzz_${t}_afl; fi
    if [ -z "$(ls -A "$CORPUS/$t" 2>/dev/null)" ]; then
      log "$t: no working corpus in ${CORPUS#"$ROOT"/}/$t (run make fuzz first)"
      continue
    fi
    before=$(find "$ROOT/corpus/$t" -maxdepth 1 -type f | wc -l)
    merge_into "$t" "$bin" "$ROOT/corpus/$t" "$CORPUS/$t"
    reduce_if_big "$t" "$bin" "$ROOT/corpus/$t"
    after=$(find "$ROOT/corpus/$t" -maxdepth 1 -type f | wc -l)
    log "$t: corpus/$t: $before -> $after files ($(kbytes "$ROOT/corpus/$t") KB)"
  done
  log "review with git status corpus/ and commit what you want to keep"
  exit 0
fi

log "engine $ENGINE, targets ${targets[*]}, ${PER} s each, $JOBS job(s), work dir ${WORK#"$ROOT"/}, corpus ${CORPUS#"$ROOT"/}"
for t in "${targets[@]}"; do
  [ $STOP = 1 ] && break
  run_target "$t" "$PER"
done

echo
echo "target     secs       execs   exec/s    cov  corpus  size crashes"
for line in "${summary[@]}"; do echo "$line"; done
[ "$ENGINE" = afl ] && echo "(afl: cov = edges found)"
if [ $CRASHED = 1 ]; then
  echo "fuzz: CRASH FOUND (see above for the input and the replay command)"
  exit 1
fi
[ $STOP = 1 ] && {
  echo "fuzz: interrupted"
  exit 130
}
echo "fuzz: no crash"
exit 0
