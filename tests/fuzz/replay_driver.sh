#!/bin/sh
# tests/fuzz/replay_driver.sh NP_FUZZ_REPLAY WORKDIR - the replay driver runs
# inputs whole and finds them at any depth:
#   - a 2 MiB parser input whose scenario starts after 1.5 MiB of comments
#     (the driver used to cut inputs at 1 MiB: "no tasks") must parse and
#     run (-v prints the dumped scenario's name), from a directory 8 levels
#     deep (the driver used to skip anything below 3 levels, silently);
#   - a directory nested deeper than the limit (64) is an error, not a skip;
#   - an unreadable directory is an error.
set -u
BIN=$1 W=$2
rm -rf "$W"
deep=$W/a/b/c/d/e/f/g/h
mkdir -p "$deep"
fails=0
bad() {
  echo "FAIL: $*"
  fails=$((fails + 1))
}
i=0
line='# padding padding padding padding padding padding padding padding padding padding padding'
{
  while [ $i -lt 17000 ]; do
    echo "$line"
    i=$((i + 1))
  done
  printf 'name big-input\ntask t\n  sleep 1ms\n'
  i=0
  while [ $i -lt 6000 ]; do
    echo "$line"
    i=$((i + 1))
  done
} >"$deep/big.scn"
size=$(wc -c <"$deep/big.scn")
[ "$size" -gt 2000000 ] || bad "test input is only $size bytes"
out=$("$BIN" -v parser "$deep/big.scn" 2>&1)
echo "$out" | grep -q '^name big-input$' || bad "the 2 MiB input, given as a file, was cut short (no 'name big-input')"
out=$("$BIN" -v parser "$W/a" 2>&1)
rc=$?
[ $rc = 0 ] || bad "exit $rc on a valid deep, large input: $(echo "$out" | tail -3)"
echo "$out" | grep -q '^name big-input$' || bad "the 2 MiB input was not parsed whole (no 'name big-input' in -v output)"
echo "$out" | grep -q '1 inputs, 0 failures' || bad "want '1 inputs, 0 failures': $(echo "$out" | tail -1)"

d=$W/deep
i=0
while [ $i -lt 70 ]; do
  d=$d/x
  i=$((i + 1))
done
mkdir -p "$d"
cp "$deep/big.scn" "$d/"
out=$("$BIN" parser "$W/deep" 2>&1)
rc=$?
[ $rc != 0 ] && echo "$out" | grep -q 'nested deeper than 64' || bad "70 levels: exit $rc, want an error: $(echo "$out" | tail -2)"

if [ "$(id -u)" != 0 ]; then
  mkdir -p "$W/locked"
  chmod 000 "$W/locked"
  out=$("$BIN" parser "$W/locked" 2>&1)
  rc=$?
  chmod 755 "$W/locked"
  [ $rc != 0 ] || bad "an unreadable directory passed: $out"
fi
[ $fails = 0 ] && echo "replay driver: all checks passed"
exit $((fails > 0))
