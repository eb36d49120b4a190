#!/usr/bin/env bash
# ci/mutants.sh - mutation testing of the simulator: every patch under
# tests/mutants/ plants one deliberate bug in the core; each must be caught
# by a bounded npsim campaign.
#
# For each patch: copy the tree (no build dirs, no .git) to a scratch dir,
# apply the patch (patch -p1), build only npsim and np_rtsim (BUILD_TESTING=OFF,
# -Werror as always), run `npsim run --strategy random` over seeds 1-N and, if
# that passes, `--strategy pct` over the same seeds, stopping at the first
# failure. Runtime mutants (r*.patch: bugs in netpoll/src/sched_core.c, the
# task runtime's cross-thread protocol, and netpoll/src/fdtable.c, the
# schedulers' shared descriptor table) run np_rtsim instead, random then
# pct. Prints a markdown table; exits 1 if any mutant survives (or the
# baseline fails, a patch does not apply or a mutant does not build).
#
# Environment:
#   MUTANT_SEEDS   seeds per strategy (default 3000)
#   MUTANTS        glob on mutant names, e.g. 'm0*' or '*eintr*' (default *)
#   JOBS           mutants run in parallel (default 2)
#   MUTANT_BASELINE_SEEDS  seeds of the unpatched baseline, per strategy (default 300)
#   MUTANT_TIMEOUT wall seconds per campaign before it counts as a hang (default 900)
#   MUTANT_WORK    scratch dir (default: a fresh mktemp dir, removed on success)
#   MUTANT_KEEP=1  keep the scratch dir (failure reports are in its logs/)
#
# Internal: `ci/mutants.sh --one PATCH` runs a single mutant and writes its
# result row (used by the parallel driver).
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MDIR=$ROOT/tests/mutants
SEEDS=${MUTANT_SEEDS:-3000}
PATTERN=${MUTANTS:-*}
JOBS=${JOBS:-2}
BASE_SEEDS=${MUTANT_BASELINE_SEEDS:-300}
TIMEOUT=${MUTANT_TIMEOUT:-900}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# copy_tree DEST: the source tree without build dirs, .git or scratch dirs.
copy_tree() {
  mkdir -p "$1"
  tar -C "$ROOT" --exclude='./build*' --exclude='./.git' --exclude='./.cache' -cf - . | tar -C "$1" -xf -
}

# build_npsim SRC LOG: configure and build only npsim in SRC/_b.
build_npsim() {
  local par=$((JOBS > 1 ? 1 : 2))
  cmake -S "$1" -B "$1/_b" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$2" 2>&1 &&
    cmake --build "$1/_b" --target npsim np_rtsim -j "$par" >>"$2" 2>&1
}

# campaign NPSIM STRATEGY FIRST LAST LOG: one bounded run; echoes the exit code.
# Replay files of failures (npsim --out, when supported) go next to LOG.
campaign() {
  local rc=0 out=()
  if "$1" --help 2>/dev/null | grep -q -- '--out'; then
    if [ "$5" = /dev/null ]; then out=(--out "$WORK/logs/_bisect"); else out=(--out "$5.replays"); fi
  fi
  if [ "$2" = runtime ] || [ "$2" = runtime-pct ]; then
    local st=random
    [ "$2" = runtime-pct ] && st=pct
    timeout "$TIMEOUT" "$(dirname "$1")/np_rtsim" --seeds "$3-$4" --strategy "$st" --quiet >"$5" 2>&1 || rc=$?
  elif [ "$2" = scenarios ]; then
    # The hand-written Go-bug scenarios of the (patched) tree, each over its own seed range.
    timeout "$TIMEOUT" "$1" scenario "$(dirname "$1")/../../tests/scenarios/"*.scn --quiet --stop-on-fail \
      "${out[@]}" >"$5" 2>&1 || rc=$?
  else
    timeout "$TIMEOUT" "$1" run --seeds "$3-$4" --strategy "$2" --quiet --stop-on-fail "${out[@]}" >"$5" 2>&1 ||
      rc=$?
  fi
  echo "$rc"
}

# first_bad NPSIM STRATEGY FIRST LAST: the first seed of a range that makes
# npsim exit non-zero (bisection; for crashes, which print no FAIL line).
first_bad() {
  local lo=$3 hi=$4 mid rc
  while ((lo < hi)); do
    mid=$(((lo + hi) / 2))
    rc=$(campaign "$1" "$2" "$lo" "$mid" /dev/null)
    if [ "$rc" != 0 ]; then hi=$mid; else lo=$((mid + 1)); fi
  done
  echo "$lo"
}

# invariant_of MESSAGE: the invariant a failure names ("I6", "I3/I6"), else a tag.
invariant_of() {
  local inv
  inv=$(grep -oE '[IR][0-9]+(/I[0-9]+)*' <<<"$1" | head -1)
  if [ -n "$inv" ]; then
    echo "$inv"
  elif grep -q 'step limit' <<<"$1"; then
    echo "hang"
  elif grep -q '^crash' <<<"$1"; then
    echo "crash"
  else
    echo "none named"
  fi
}

# models_of PATCH: the short description on its "# Models:" line.
models_of() { sed -n 's/^# Models: //p' "$1" | head -1; }

# run_one PATCH: apply, build, campaign; writes WORK/results/NAME.row:
#   name|models|caught|strategy|seed|invariant|seconds|message
run_one() {
  local patch=$1 name src log npsim t0 rc strategy seed msg row
  name=$(basename "$patch" .patch)
  src=$WORK/src/$name
  log=$WORK/logs/$name
  rm -rf "$src"
  copy_tree "$src"
  if ! (cd "$src" && patch -p1 --no-backup-if-mismatch -s <"$patch") >"$log.patch" 2>&1; then
    row="$name|$(models_of "$patch")|ERROR|-|-|-|-|patch does not apply (see $log.patch)"
  elif ! build_npsim "$src" "$log.build"; then
    row="$name|$(models_of "$patch")|ERROR|-|-|-|-|build failed (see $log.build)"
  else
    npsim=$src/_b/sim/npsim
    t0=$(now)
    row=""
    local strategies="scenarios random pct"
    [[ $name == r* ]] && strategies="runtime runtime-pct"
    for strategy in $strategies; do
      rc=$(campaign "$npsim" "$strategy" 1 "$SEEDS" "$log.$strategy")
      [ "$rc" = 0 ] && continue
      # "FAIL [name] seed=N strategy=S: message"
      msg=$(sed -n 's/^FAIL.* strategy=[a-z]*: //p' "$log.$strategy" | head -1)
      seed=$(sed -n 's/^FAIL.* seed=\([0-9]*\) .*/\1/p' "$log.$strategy" | head -1)
      if [ "$rc" = 124 ]; then
        msg="hang: campaign exceeded ${TIMEOUT}s wall time"
        seed="?"
      elif [ -z "$seed" ]; then
        # No report: npsim died (signal or abort outside the sim's hooks).
        msg="crash: npsim exit status $rc"
        if [ "$strategy" = scenarios ] || [[ $strategy == runtime* ]]; then
          seed="?"
        else
          seed=$(first_bad "$npsim" "$strategy" 1 "$SEEDS")
        fi
        msg="$msg at seed $seed"
      fi
      msg=${msg//$src\//}
      msg=${msg//|/\/}
      row="$name|$(models_of "$patch")|yes|$strategy|$seed|$(invariant_of "$msg")|$(elapsed "$t0")|$msg"
      break
    done
    [ -n "$row" ] || row="$name|$(models_of "$patch")|NO|-|-|-|$(elapsed "$t0")|survived $SEEDS random + $SEEDS pct seeds"
  fi
  echo "$row" >"$WORK/results/$name.row"
  rm -rf "$src" # the logs keep what matters
  IFS='|' read -r _ _ caught strategy seed inv secs msg <<<"$row"
  printf '[mutants] %-44s caught=%-5s %-6s seed=%-5s %-6s %6ss  %s\n' "$name" "$caught" "$strategy" "$seed" \
    "$inv" "$secs" "${msg:0:90}" >&2
}

if [ "${1:-}" = "--one" ]; then
  WORK=${MUTANT_WORK:?}
  run_one "$2"
  exit 0
fi

# ---- driver ------------------------------------------------------------------
command -v patch >/dev/null || { echo "mutants: 'patch' is required" >&2; exit 2; }
shopt -s nullglob
patches=()
for p in "$MDIR"/*.patch; do
  # shellcheck disable=SC2053 # PATTERN is a glob on purpose
  [[ $(basename "$p" .patch) == $PATTERN ]] && patches+=("$p")
done
((${#patches[@]} > 0)) || { echo "mutants: no patch matches MUTANTS='$PATTERN'" >&2; exit 2; }

WORK=${MUTANT_WORK:-$(mktemp -d /tmp/np-mutants.XXXXXX)}
export MUTANT_WORK=$WORK MUTANT_SEEDS=$SEEDS MUTANT_TIMEOUT=$TIMEOUT JOBS
mkdir -p "$WORK/src" "$WORK/logs" "$WORK/results"
rm -f "$WORK"/results/*.row
T0=$(now)
status=0

# Baseline: the unpatched tree builds, every patch applies to it, and a short
# campaign of each strategy passes (otherwise "caught" would mean nothing).
echo "[mutants] baseline: ${#patches[@]} patches, $SEEDS seeds per strategy, $JOBS in parallel, scratch $WORK" >&2
base=$WORK/src/_baseline
copy_tree "$base"
for p in "${patches[@]}"; do
  if ! (cd "$base" && patch -p1 --dry-run -s <"$p") >/dev/null 2>&1; then
    echo "[mutants] ERROR: $(basename "$p") does not apply to the current tree" >&2
    status=1
  fi
done
if ! build_npsim "$base" "$WORK/logs/_baseline.build"; then
  echo "[mutants] ERROR: the unpatched tree does not build npsim (see $WORK/logs/_baseline.build)" >&2
  exit 1
fi
for strategy in random pct runtime runtime-pct; do
  rc=$(campaign "$base/_b/sim/npsim" "$strategy" 1 "$BASE_SEEDS" "$WORK/logs/_baseline.$strategy")
  if [ "$rc" != 0 ]; then
    echo "[mutants] ERROR: the unpatched tree fails its $strategy baseline (seeds 1-$BASE_SEEDS):" >&2
    grep -m1 '^FAIL' "$WORK/logs/_baseline.$strategy" >&2 || echo "npsim exit status $rc (no FAIL report)" >&2
    echo "logs: $WORK/logs" >&2
    exit 1
  fi
done
rm -rf "$base"
echo "[mutants] baseline passed (random and pct, seeds 1-$BASE_SEEDS)" >&2
[ "$status" = 0 ] || { echo "[mutants] fix the patches above first" >&2; exit 1; }

printf '%s\n' "${patches[@]}" | xargs -P "$JOBS" -I{} "$0" --one {}

echo
echo "| mutant | models | caught | strategy | seed | invariant | seconds | failure |"
echo "|---|---|---|---|---|---|---|---|"
caught=0 total=0
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  total=$((total + 1))
  row=$(cat "$WORK/results/$name.row" 2>/dev/null) || row="$name|$(models_of "$p")|ERROR|-|-|-|-|no result"
  IFS='|' read -r n models c strategy seed inv secs msg <<<"$row"
  [ "$c" = yes ] && caught=$((caught + 1)) || status=1
  [ ${#msg} -gt 100 ] && msg="${msg:0:97}..."
  echo "| $n | $models | $c | $strategy | $seed | $inv | $secs | $msg |"
done
echo
echo "caught $caught of $total mutants (seeds 1-$SEEDS per strategy; $(elapsed "$T0") s wall)"
if [ "$status" != 0 ] || [ "${MUTANT_KEEP:-0}" = 1 ]; then
  echo "logs: $WORK/logs" >&2
else
  rm -rf "$WORK"
fi
exit "$status"
