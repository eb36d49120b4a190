#!/bin/sh
# bug_check.sh BINARY SEEDS - a buggy example must fail within SEEDS seeds,
# print its seed and a replay command, and that command must fail the same
# way, printing the trace.
bin=$1 seeds=$2
out=$("$bin" --seeds 1-"$seeds" --quiet 2>&1)
rc=$?
[ $rc -eq 1 ] || { echo "expected exit 1, got $rc: $out"; exit 1; }
fail=$(echo "$out" | grep '^FAIL' | head -1)
replay=$(echo "$out" | sed -n 's/^replay: //p' | head -1)
[ -n "$fail" ] && [ -n "$replay" ] || { echo "no FAIL or replay line: $out"; exit 1; }
echo "$fail"
again=$(sh -c "$replay" 2>&1)
[ $? -eq 1 ] || { echo "the replay did not fail: $again"; exit 1; }
msg=${fail#*virtual: }
echo "$again" | grep -qF "$msg" || { echo "the replay failed differently: $again"; exit 1; }
echo "$again" | grep -q ' ms  ' || { echo "the replay printed no trace"; exit 1; }
echo "replayed: $replay"
