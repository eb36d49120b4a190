#!/usr/bin/env bash
# ci/fuzz-canary.sh - shows that the fuzzing set-up finds a real bug fast:
# copies the tree to a scratch dir, plants a deliberate bug (a mutant of
# tests/mutants/, by default the Go 59545 stale-tag one), and runs the same
# `ci/fuzz.sh` that `make fuzz` runs, on one target, for at most
# CANARY_SECONDS (60). Succeeds only if
#   - the fuzzer crashes within the limit (the time to crash is printed),
#   - the crash was minimized and written to the scratch tree's
#     corpus/regressions/<target>/ with a name saying what broke, and
#   - that regression input fails on the mutant and passes on the unmutated
#     tree (so the crash is the planted bug, not another one).
#
#   ci/fuzz-canary.sh [PATCH]
#
# Environment:
#   CANARY_PATCH    mutant patch (default tests/mutants/m01-ready-no-fdseq-check.patch;
#                   without tests/mutants an inline edit removes the same check)
#   CANARY_TARGET   fuzz target (default schedule: the Go-bug scenarios, the
#                   fuzzer steers the interleaving)
#   CANARY_SECONDS  fuzzing time limit (default 60)
#   CANARY_EMPTY_CORPUS=1  start from an empty corpus/<target>/ (the fuzzer
#                   must find the bug itself, not replay a stored seed)
#   FUZZ_SANITIZE   as for make fuzz (default address)
#   JOBS            fuzzing processes (default nproc)
#   CANARY_WORK     scratch dir (default: mktemp -d; removed on success)
#   CANARY_KEEP=1   keep the scratch dir
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PATCH=${1:-${CANARY_PATCH:-$ROOT/tests/mutants/m01-ready-no-fdseq-check.patch}}
TARGET=${CANARY_TARGET:-schedule}
LIMIT=${CANARY_SECONDS:-60}
WORK=${CANARY_WORK:-$(mktemp -d /tmp/np-fuzz-canary.XXXXXX)}
export JOBS=${JOBS:-$(nproc)}

say() { printf 'canary: %s\n' "$*"; }
fail() {
  printf 'canary: FAIL: %s\n' "$*" >&2
  say "scratch dir kept: $WORK"
  exit 1
}

copy_tree() {
  mkdir -p "$1"
  tar -C "$ROOT" --exclude='./build*' --exclude='./.git' --exclude='./.cache' --exclude='./npsim-failures' \
    -cf - . | tar -C "$1" -xf -
  # the tree's known regressions are not this canary's business
  rm -rf "$1/corpus/regressions"/*/
}

if ! command -v patch >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q patch >/dev/null || exit 2
  else
    echo "canary: needs patch: sudo apt-get install -y patch" >&2
    exit 2
  fi
fi
say "scratch dir $WORK"
copy_tree "$WORK/mutant"
copy_tree "$WORK/clean"
cd "$WORK/mutant" || exit 2
if [ "${CANARY_EMPTY_CORPUS:-0}" = 1 ]; then
  say "emptying corpus/$TARGET/ of the scratch tree"
  rm -rf "corpus/$TARGET"
  mkdir -p "corpus/$TARGET"
fi
if [ -f "$PATCH" ]; then
  say "planting $(basename "$PATCH"): $(sed -n 's/^# Models: //p' "$PATCH" | head -1)"
  patch -p1 --silent <"$PATCH" || fail "patch $PATCH does not apply"
else
  say "no patch file ($PATCH): removing the fdseq check of np__pd_ready inline"
  before=$(md5sum netpoll/src/pd.c)
  sed -i 's/if (!pd->in_use || pd->closing || pd->fdseq != fdseq) {/if (!pd->in_use || pd->closing) { (void)fdseq;/' \
    netpoll/src/pd.c
  [ "$before" != "$(md5sum netpoll/src/pd.c)" ] || fail "the inline edit did not change netpoll/src/pd.c"
fi

say "make fuzz on the mutant: target $TARGET, at most $LIMIT s, $JOBS job(s)"
start=$(date +%s.%N)
FUZZ_SECONDS=$LIMIT TARGETS=$TARGET FUZZ_WORK=$WORK/work ci/fuzz.sh 2>&1 | tee "$WORK/fuzz.out"
rc=${PIPESTATUS[0]}
total=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
[ "$rc" = 1 ] || fail "make fuzz exited $rc: no crash found within $LIMIT s"
# "crash after X s": 0 s when a stored seed already fails (the preflight),
# then the time the fuzzer took from the remaining seeds.
seedfail=$(sed -n "s/^=== SEED FAILS in $TARGET: \([0-9]*\) seed.*/\1/p" "$WORK/fuzz.out" | head -1)
seedfail=${seedfail:-0}
ttc=$(sed -n "s/^fuzz: $TARGET: crash after \([0-9.]*\) s (.*crash file.*/\1/p" "$WORK/fuzz.out" | head -1)
[ -n "$ttc" ] || [ "$seedfail" -gt 0 ] || fail "no crash time in the output"
[ -z "$ttc" ] || awk -v t="$ttc" -v l="$LIMIT" 'BEGIN { exit !(t <= l) }' || fail "crash after $ttc s, over the $LIMIT s limit"
reg=$(sed -n 's/^    input: *//p' "$WORK/fuzz.out" | head -1)
[ -n "$reg" ] && reg=$WORK/mutant/$reg
[ -n "$reg" ] && [ -f "$reg" ] || reg=$(find "$WORK/mutant/corpus/regressions/$TARGET" -type f 2>/dev/null | head -1)
[ -n "$reg" ] || fail "no regression input written to corpus/regressions/$TARGET/"

# The regression must fail on the mutant and pass on the clean tree.
for tree in mutant clean; do
  cmake -S "$WORK/$tree" -B "$WORK/$tree/build-replay" -DBUILD_TESTING=OFF -DNP_SANITIZE="${FUZZ_SANITIZE:-address}" \
    >"$WORK/$tree.replay-build.log" 2>&1 &&
    cmake --build "$WORK/$tree/build-replay" --target np_fuzz_replay -j "$JOBS" >>"$WORK/$tree.replay-build.log" 2>&1 ||
    fail "building the replay driver in the $tree tree (log: $WORK/$tree.replay-build.log)"
  ("$WORK/$tree/build-replay/fuzz/np_fuzz_replay" "$TARGET" "$reg"; exit $?) >"$WORK/$tree.replay.out" 2>&1
  eval "replay_$tree=$?"
done
# shellcheck disable=SC2154
[ "$replay_mutant" != 0 ] || fail "the regression input passes on the mutant: not reproducible"
# shellcheck disable=SC2154
[ "$replay_clean" = 0 ] || fail "the regression input also fails on the unmutated tree: another bug ($WORK/clean.replay.out)"

echo
if [ "$seedfail" -gt 0 ]; then
  say "PASS: $seedfail stored seed(s) of corpus/$TARGET already fail on the mutant (crash after 0 s)"
  [ -n "$ttc" ] && say "      and fuzz_$TARGET found a new crasher after $ttc s of fuzzing (limit $LIMIT s)"
else
  say "PASS: fuzz_$TARGET crashed after $ttc s (limit $LIMIT s)"
fi
say "      $total s in all with build, minimization and replay checks"
say "regression: corpus/regressions/$TARGET/$(basename "$reg") ($(wc -c <"$reg") bytes);" \
  "fails on the mutant, passes on the clean tree"
grep -a -m 1 '^np_fuzz_' "$WORK/mutant.replay.out" | sed 's/^/    /'
if [ "${CANARY_KEEP:-0}" = 1 ] || [ -n "${CANARY_WORK:-}" ]; then
  say "scratch dir kept: $WORK"
else
  rm -rf "$WORK"
fi
exit 0
