#!/bin/sh
# tests/sim/tools.sh NPSIM REPLAY_TOOL SRCDIR WORKDIR - the simulator's tools
# against hostile input: every case asserts the exit status and the message.
#   clock   a scenario that passes the 100-year clock at run time is an input
#           error (exit 2): no FAIL verdict, no replay file, nothing to shrink
#   replay  replay files carry a build and a checksum: truncated at any line
#           or damaged -> exit 2; another build's -> a warning; unwritable
#           --out -> a correct replay command and the file's text on stderr
#   files   any number of file arguments (70)
#   shard   --shard I/N partitions seed ranges exactly (npsim seeds), and run
#           runs exactly its shard
#   pct     every PCT run reaches its first change point (drawn over the
#           run's measured length, not a fixed window)
#   docs    every ```scenario example of sim/SCENARIOS.md parses
set -u
NPSIM=$1 TOOL=$2 SRC=$3 W=$4
rm -rf "$W"
mkdir -p "$W"
fails=0
bad() {
  echo "FAIL: $*"
  fails=$((fails + 1))
}
SCN=$SRC/tests/scenarios

# ---- clock --------------------------------------------------------------------
out=$("$NPSIM" scenario "$SCN/input-errors/clock-end.scn" --seeds 1-3 --quiet --trace-tail 0 --out "$W/clock" 2>&1)
rc=$?
[ $rc = 2 ] || bad "clock: scenario exit $rc, want 2: $out"
echo "$out" | grep -q 'input error: virtual time would pass 100 years' || bad "clock: no input error message: $out"
echo "$out" | grep -q '^FAIL' && bad "clock: a FAIL verdict for an input error: $out"
[ -e "$W/clock" ] && bad "clock: a replay file was written for an input error"
out=$("$NPSIM" shrink "$SCN/input-errors/clock-end.scn" --quiet --out "$W/clock.min" 2>&1)
rc=$?
[ $rc = 2 ] && echo "$out" | grep -q 'input error' || bad "clock: shrink exit $rc, want 2 and 'input error': $out"
[ -e "$W/clock.min" ] && bad "clock: shrink wrote a reduced scenario of an input error"

# ---- replay ----------------------------------------------------------------------
"$NPSIM" scenario "$SCN/shrinkable/wrong-expectation.scn" --quiet --trace-tail 0 --out "$W/r" >"$W/r.log" 2>&1
file=$(ls "$W"/r/*.scn 2>/dev/null | head -1)
if [ -z "$file" ]; then
  bad "replay: no replay file written: $(cat "$W/r.log")"
else
  grep -q '^build ' "$file" && tail -1 "$file" | grep -q '^checksum fnv1a64:[0-9a-f]\{16\}$' ||
    bad "replay: no build or final checksum line in $file"
  "$NPSIM" replay "$file" >"$W/r.out" 2>"$W/r.err"
  rc=$?
  [ $rc = 1 ] && grep -q '^FAIL' "$W/r.out" || bad "replay: the replay file does not fail (exit $rc)"
  grep -q warning "$W/r.err" && bad "replay: a warning for the same build: $(cat "$W/r.err")"
  lines=$(wc -l <"$file")
  n=1
  while [ $n -lt "$lines" ]; do
    head -n $n "$file" >"$W/cut.scn"
    out=$("$NPSIM" replay "$W/cut.scn" 2>&1)
    rc=$?
    [ $rc = 2 ] || bad "replay: cut after line $n of $lines: exit $rc, want 2: $(echo "$out" | tail -1)"
    n=$((n + 1))
  done
  sed 's/expect timeout/expect data/' "$file" >"$W/damaged.scn"
  out=$("$NPSIM" replay "$W/damaged.scn" 2>&1)
  rc=$?
  [ $rc = 2 ] && echo "$out" | grep -q 'line [0-9]*: checksum mismatch' ||
    bad "replay: damaged file: exit $rc, want 2 and a checksum mismatch: $out"
  "$TOOL" "$file" "0000000+src.000000000000" >"$W/other.scn" || bad "replay: np_replay_tool failed"
  out=$("$NPSIM" replay "$W/other.scn" 2>&1 >/dev/null)
  rc=$?
  [ $rc = 1 ] && echo "$out" | grep -q 'warning: .* recorded by build 0000000+src.000000000000' ||
    bad "replay: another build's file: exit $rc, want 1 and a warning: $out"
fi
# --out cannot be created: a command that replays this very run, and the file on stderr
"$NPSIM" scenario "$SCN/shrinkable/wrong-expectation.scn" --quiet --trace-tail 0 --out /proc/npsim-no/such \
  >"$W/nw.out" 2>"$W/nw.err"
cmd=$(sed -n 's/^replay: (could not write [^)]*) //p' "$W/nw.out")
case $cmd in
  "npsim replay $SCN/shrinkable/wrong-expectation.scn --seed 1") ;;
  *) bad "replay: unwritable --out: command '$cmd', want 'npsim replay FILE --seed 1': $(cat "$W/nw.out")" ;;
esac
sed -n '/^--- replay file/,/^--- end of replay file/p' "$W/nw.err" | sed '1d;$d' >"$W/fromstderr.scn"
"$NPSIM" replay "$W/fromstderr.scn" >/dev/null 2>&1
rc=$?
[ $rc = 1 ] || bad "replay: the replay file printed on stderr does not replay the failure (exit $rc)"

# ---- files -------------------------------------------------------------------------
set --
i=0
while [ $i -lt 70 ]; do
  set -- "$@" "$SCN/long-deadline.scn"
  i=$((i + 1))
done
n=$("$NPSIM" check "$@" 2>&1 | grep -c ': ok')
[ "$n" = 70 ] || bad "files: check of 70 files: $n ok"

# ---- shard ---------------------------------------------------------------------------
for range in 1-10 0-0 5-1004 1-3 7-7 1000-1999999; do
  a=${range%-*} b=${range#*-}
  for n in 1 2 3 4 5 7 64; do
    expect=$a i=1 empty=0
    while [ $i -le $n ]; do
      got=$("$NPSIM" seeds --seeds "$range" --shard "$i/$n")
      if [ "$got" = empty ]; then
        empty=$((empty + 1))
      else
        lo=${got%-*} hi=${got#*-}
        [ "$lo" = "$expect" ] || bad "shard: $range $i/$n starts at $lo, want $expect"
        size=$((hi - lo + 1)) want=$(((b - a + 1) / n))
        [ $size = $want ] || [ $size = $((want + 1)) ] || bad "shard: $range $i/$n has $size seeds, want $want or +1"
        if [ "$hi" = "$b" ]; then expect=done; else expect=$((hi + 1)); fi
      fi
      i=$((i + 1))
    done
    [ "$expect" = done ] || bad "shard: $range in $n shards does not end at $b (next $expect)"
    [ "$empty" = 0 ] || [ $((b - a + 1)) -lt $n ] || bad "shard: $range $n: $empty empty shards"
  done
done
# the whole 64-bit range (its count, 2^64, overflows 64-bit arithmetic)
got=$(for i in 1 2 3; do "$NPSIM" seeds --seeds 0-18446744073709551615 --shard $i/3; done | tr '\n' ' ')
[ "$got" = "0-6148914691236517204 6148914691236517205-12297829382473034409 12297829382473034410-18446744073709551615 " ] ||
  bad "shard: 0-2^64-1 in 3 shards: $got"
for spec in 0/3 4/3 3/0 x/2 1/; do
  "$NPSIM" seeds --seeds 1-10 --shard "$spec" >/dev/null 2>&1 && bad "shard: '--shard $spec' accepted"
done
runs=$("$NPSIM" run --seeds 1-10 --shard 2/3 --quiet --out "$W/s" | sed -n 's/.* runs=\([0-9]*\) .*/\1/p')
[ "$runs" = 3 ] || bad "shard: run --seeds 1-10 --shard 2/3 made $runs runs, want 3 (seeds 4-6)"

# ---- pct ----------------------------------------------------------------------------
# Change points are drawn from the run's measured length: the first one is
# always reached (the run equals its probe up to there). From the old fixed
# window of 20,000 steps most short runs reached none (no preemption at all).
i=1
while [ $i -le 12 ]; do
  line=$("$NPSIM" replay --seed $i --strategy pct | grep '^pct:')
  reached=$(echo "$line" | sed -n 's/.*, \([0-9]*\) reached$/\1/p')
  [ -n "$reached" ] && [ "$reached" -ge 1 ] || bad "pct: seed $i reached no change point: '$line'"
  i=$((i + 1))
done

# ---- docs ----------------------------------------------------------------------------
awk -v dir="$W" '/^```scenario/ { n++; f = dir "/doc-" n ".scn"; on = 1; next } /^```/ { on = 0 } on { print > f }' \
  "$SRC/sim/SCENARIOS.md"
docs=$(ls "$W"/doc-*.scn 2>/dev/null | wc -l)
[ "$docs" -ge 1 ] || bad "docs: no \`\`\`scenario example in sim/SCENARIOS.md"
for f in "$W"/doc-*.scn; do
  [ -f "$f" ] || continue
  out=$("$NPSIM" check "$f" 2>&1) || bad "docs: an example of sim/SCENARIOS.md does not parse: $out"
done

[ $fails = 0 ] && echo "tools: all checks passed"
exit $((fails > 0))
