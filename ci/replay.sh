#!/usr/bin/env bash
# ci/replay.sh - reproduce one failure deterministically, printing the full
# simulator trace. `make replay` runs it.
#
#   ci/replay.sh FILE [TARGET]      a fuzz input (crasher, regression, corpus
#                                   entry): np_fuzz_replay -v TARGET|auto FILE
#   ci/replay.sh --seed N           a failing random-campaign seed: npsim replay --seed N
#   ci/replay.sh --scenario PATH    a scenario or npsim replay file: npsim replay PATH
#
# The same through the environment (what `make replay` passes):
#   FILE=... [TARGET=...] | SEED=N | SCENARIO=path.scn
#
# Builds np_fuzz_replay and npsim in REPLAY_BUILD (default build-replay,
# configured with NP_SANITIZE=${REPLAY_SANITIZE:-address}, i.e. ASan+UBSan,
# so memory and UB crashers reproduce too; REPLAY_SANITIZE=none for a plain
# build). Exit status: that of the replayed run (non-zero: it still fails).
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${REPLAY_BUILD:-$ROOT/build-replay}
SAN=${REPLAY_SANITIZE:-address}

file=${FILE:-}
target=${TARGET:-}
seed=${SEED:-}
scenario=${SCENARIO:-}
while [ $# -gt 0 ]; do
  case $1 in
    --seed)
      seed=${2:-}
      shift
      ;;
    --scenario)
      scenario=${2:-}
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      if [ -z "$file" ]; then file=$1; else target=$1; fi
      ;;
  esac
  shift
done
n=0
[ -n "$file" ] && n=$((n + 1))
[ -n "$seed" ] && n=$((n + 1))
[ -n "$scenario" ] && n=$((n + 1))
if [ $n != 1 ]; then
  echo "usage: make replay FILE=path [TARGET=t] | SEED=N | SCENARIO=path.scn" >&2
  echo "       ci/replay.sh FILE [TARGET] | --seed N | --scenario PATH" >&2
  exit 2
fi
if [ -n "$seed" ] && ! [[ $seed =~ ^[0-9]+$ ]]; then
  echo "replay: SEED must be a number" >&2
  exit 2
fi

# Paths are given relative to where make/the user ran; make them absolute.
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac }
[ -n "$file" ] && file=$(abs "$file")
[ -n "$scenario" ] && scenario=$(abs "$scenario")
for p in "$file" "$scenario"; do
  if [ -n "$p" ] && [ ! -e "$p" ]; then
    echo "replay: $p: no such file" >&2
    exit 2
  fi
done

# Build what is needed (quietly; the log is kept on failure).
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  echo "replay: configuring $BUILD (NP_SANITIZE=$SAN)" >&2
  cmake -S "$ROOT" -B "$BUILD" -DNP_SANITIZE="$SAN" -DBUILD_TESTING=OFF >"$BUILD.configure.log" 2>&1 || {
    cat "$BUILD.configure.log" >&2
    exit 2
  }
  rm -f "$BUILD.configure.log"
fi
if [ -n "$file" ]; then bin=np_fuzz_replay; else bin=npsim; fi
if ! cmake --build "$BUILD" --target "$bin" -j "$(nproc)" >"$BUILD/replay-build.log" 2>&1; then
  tail -30 "$BUILD/replay-build.log" >&2
  echo "replay: build failed (log: $BUILD/replay-build.log)" >&2
  exit 2
fi

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
if [ -n "$file" ]; then
  cmd=("$BUILD/fuzz/np_fuzz_replay" -v "${target:-auto}" "$file")
  if [ -z "$target" ]; then
    case $file in
      */lifecycle/* | */schedule/* | */events/* | */parser/*) ;;
      *)
        echo "replay: cannot tell the target from $file: add TARGET=lifecycle|schedule|events|parser" >&2
        exit 2
        ;;
    esac
  fi
elif [ -n "$seed" ]; then
  cmd=("$BUILD/sim/npsim" replay --seed "$seed")
else
  cmd=("$BUILD/sim/npsim" replay "$scenario")
fi
echo "replay: ${cmd[*]#"$ROOT"/}" >&2
# line-buffered: the failure report (stderr) lands between whole trace lines
# (stdbuf preloads a library: ASan must be told that this is fine)
if command -v stdbuf >/dev/null; then
  export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
  cmd=(stdbuf -oL "${cmd[@]}")
fi
"${cmd[@]}"
rc=$?
if [ $rc = 0 ]; then
  echo "replay: passes (exit 0): no failure on this tree" >&2
else
  echo "replay: FAILS (exit $rc): reproduced" >&2
fi
exit $rc
