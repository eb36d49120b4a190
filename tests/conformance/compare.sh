#!/bin/sh
# compare.sh NPSIM RUNNER FILE - conformance of the simulated kernel with
# Linux for one scenario: `npsim outcome FILE --seed S` for S in 1..10 must
# all agree (else the outcome depends on the schedule and the scenario is no
# conformance scenario), the native runner twice must agree (else it depends
# on real timing), and the two must be identical.
set -u
if [ $# -ne 3 ]; then
  echo "usage: compare.sh NPSIM RUNNER FILE" >&2
  exit 2
fi
npsim=$1
runner=$2
file=$3
name=$(basename "$file" .scn)
if ! grep -q '^conformance[[:space:]]\+yes' "$file"; then
  echo "$name: not marked 'conformance yes'" >&2
  exit 2
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/conf-$name.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT

# -- simulator: ten schedules -------------------------------------------------
for s in 1 2 3 4 5 6 7 8 9 10; do
  if ! "$npsim" outcome "$file" --seed "$s" >"$tmp/sim.$s" 2>"$tmp/sim.$s.err"; then
    echo "$name: npsim outcome --seed $s failed:"
    cat "$tmp/sim.$s.err" "$tmp/sim.$s"
    echo "--- real epoll (np_scenario_native) for comparison:"
    "$runner" "$file" 2>&1
    exit 1
  fi
  if [ ! -s "$tmp/sim.$s" ]; then
    echo "$name: npsim outcome --seed $s printed nothing"
    exit 1
  fi
  if [ "$s" -gt 1 ] && ! cmp -s "$tmp/sim.1" "$tmp/sim.$s"; then
    echo "$name: the simulator's outcome depends on the schedule (seed 1 vs seed $s):"
    echo "the scenario is not timing independent"
    diff "$tmp/sim.1" "$tmp/sim.$s"
    exit 1
  fi
done

# -- real epoll: twice ---------------------------------------------------------
for i in 1 2; do
  "$runner" "$file" >"$tmp/native.$i" 2>"$tmp/native.$i.err"
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "$name: native run $i failed (exit $rc):"
    cat "$tmp/native.$i.err"
    echo "--- its outcome:"
    cat "$tmp/native.$i"
    echo "--- simulator:"
    cat "$tmp/sim.1"
    exit 1
  fi
done
if ! cmp -s "$tmp/native.1" "$tmp/native.2"; then
  echo "$name: the outcome on real epoll differs between two runs: the scenario depends on timing"
  diff "$tmp/native.1" "$tmp/native.2"
  exit 1
fi

# -- simulator vs Linux ------------------------------------------------------------
if ! cmp -s "$tmp/sim.1" "$tmp/native.1"; then
  echo "$name: the simulated kernel disagrees with Linux"
  printf '%-40s | %s\n' "simulator (npsim outcome)" "real epoll (np_scenario_native)"
  diff --side-by-side --width=83 "$tmp/sim.1" "$tmp/native.1"
  exit 1
fi
echo "$name: simulator and Linux agree ($(wc -l <"$tmp/sim.1") results)"
exit 0
