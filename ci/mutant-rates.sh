#!/usr/bin/env bash
# ci/mutant-rates.sh - detection rate of each strategy on the mutant suite:
# for every tests/mutants/*.patch, the fraction of seeds 1-N whose random
# world fails, under `--strategy random`, `--strategy pct` (change points
# over the probe-measured run length) and `--strategy pct --pct-steps 20000`
# (change points in a fixed window of the first 20,000 steps, as before the
# fix), and the time to the first failure (wall time of the campaign times
# the position of the first failing seed; --fast, one core). Prints a
# markdown table (tests/mutants/README.md keeps one). Not part of CI.
#
# Environment: RATE_SEEDS (default 500), MUTANTS (glob, default *),
#              RATE_WORK (scratch dir, default a mktemp dir)
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SEEDS=${RATE_SEEDS:-500}
PATTERN=${MUTANTS:-*}
WORK=${RATE_WORK:-$(mktemp -d /tmp/np-rates.XXXXXX)}
mkdir -p "$WORK"
[ -n "${RATE_WORK:-}" ] || trap 'rm -rf "$WORK"' EXIT # a scratch dir of our own: removed at the end

now() { date +%s.%N; }

# rate NPSIM LABEL ARGS...: "fails/N first ttf_seconds"
rate() {
  local npsim=$1 label=$2 t0 t1 out fails first
  shift 2
  out=$WORK/$label.log
  t0=$(now)
  "$npsim" run --seeds "1-$SEEDS" --quiet --fast --trace-tail 0 --out "$WORK/replays" "$@" >"$out" 2>&1
  local rc=$?
  t1=$(now)
  fails=$(grep -c '^FAIL' "$out")
  first=$(sed -n 's/^FAIL.* seed=\([0-9]*\) .*/\1/p' "$out" | head -1)
  local note=""
  [ "$rc" -gt 2 ] && note=" (npsim died, rc $rc, after seed ${first:-?})"
  if [ -z "$first" ]; then
    echo "0/$SEEDS - -$note"
  else
    awk -v a="$t0" -v b="$t1" -v f="$first" -v n="$SEEDS" -v k="$fails" -v note="$note" \
      'BEGIN { printf "%d/%d %d %.2f%s\n", k, n, f, (b - a) * f / n, note }'
  fi
}

echo "| mutant | random: failing seeds | first | s to first | PCT (run length): failing | first | s to first | PCT (fixed 20k window): failing | first | s to first |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for patch in "$ROOT"/tests/mutants/*.patch; do
  name=$(basename "$patch" .patch)
  # shellcheck disable=SC2053
  [[ $name == $PATTERN ]] || continue
  src=$WORK/src
  rm -rf "$src" "$WORK/replays"
  mkdir -p "$src"
  tar -C "$ROOT" --exclude='./build*' --exclude='./.git' -cf - . | tar -C "$src" -xf -
  if ! (cd "$src" && patch -p1 -s <"$patch") >/dev/null 2>&1 ||
    ! { cmake -S "$src" -B "$src/_b" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null 2>&1 &&
      cmake --build "$src/_b" --target npsim -j 1 >/dev/null 2>&1; }; then
    echo "| $name | patch or build failed | | | | | | | | |"
    continue
  fi
  npsim=$src/_b/sim/npsim
  read -r rf rfirst rt rnote <<<"$(rate "$npsim" random --strategy random)"
  read -r pf pfirst pt pnote <<<"$(rate "$npsim" pct --strategy pct)"
  read -r wf wfirst wt wnote <<<"$(rate "$npsim" window --strategy pct --pct-steps 20000)"
  echo "| $name | $rf${rnote:+ $rnote} | $rfirst | $rt | $pf${pnote:+ $pnote} | $pfirst | $pt | $wf${wnote:+ $wnote} | $wfirst | $wt |"
done
rm -rf "$WORK/src"
