#!/usr/bin/env bash
# test.sh - the CI matrix. Each configuration is configured in its own build
# directory, built, and tested with ctest:
#
#   gcc      gcc, no sanitizer                      build-ci-gcc
#   clang    clang, no sanitizer                    build-ci-clang
#   asan     gcc, ASan + UBSan (NP_SANITIZE=address) build-ci-asan
#   tsan     clang, TSan (NP_SANITIZE=thread)        build-ci-tsan
#   format   make check-format (clang-format, tracked *.c / *.h) and ci/func-length.sh
#            (no function over 70 lines in netpoll/src, sim, fuzz, examples)
#   install  ci/install-check.sh (install, find_package, pkg-config, symbols)
#   fuzz     ci/fuzz.sh --smoke: every libFuzzer target for about a minute in
#            all (clang, ASan+UBSan); a crash fails the step
#   mutants  ci/mutants.sh: every deliberate bug of tests/mutants must be caught
#            by the simulator (Go-bug scenarios, random and PCT campaigns)
#
#   ci/test.sh [STEP...]     default: all steps, in this order
#
# Every step runs even if an earlier one failed (CI_FAIL_FAST=1 stops at the
# first failure); the summary at the end gives each step's result and time,
# and the exit status is non-zero if any step failed. JOBS (default nproc)
# sets build and ctest parallelism; CI_CLEAN=1 removes the build dirs first.
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-$(nproc)}
ALL_STEPS=(gcc clang asan tsan format install fuzz mutants)
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=("${ALL_STEPS[@]}")

# Sanitizer run-time options, unless the caller chose their own.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-second_deadlock_stack=1}

say() { printf '\n==== %s\n' "$*"; }

# TSan (clang 14) maps its shadow at fixed addresses and dies with "unexpected
# memory mapping" when the kernel randomizes mmap with more than 28 bits
# (newer kernels default to 32). Probe with a tiny threaded program; if it
# fails, run ctest without ASLR (setarch -R, inherited by every test), or as
# root lower vm.mmap_rnd_bits to 28.
TSAN_RUNNER=()
tsan_setup() {
  local dir=$1 probe=$1/tsan-probe
  cat >"$probe.c" <<'C'
#include <pthread.h>
static int x;
static void *f(void *a) { (void)a; __atomic_fetch_add(&x, 1, __ATOMIC_SEQ_CST); return 0; }
int main(void) { pthread_t t; pthread_create(&t, 0, f, 0); pthread_join(t, 0); return x == 1 ? 0 : 1; }
C
  clang -fsanitize=thread -g -o "$probe" "$probe.c"
  if "$probe" >/dev/null 2>&1; then
    echo "tsan: runs as is"
    return 0
  fi
  if setarch "$(uname -m)" -R "$probe" >/dev/null 2>&1; then
    echo "tsan: needs ASLR off here; running ctest under setarch -R"
    TSAN_RUNNER=(setarch "$(uname -m)" -R)
    return 0
  fi
  if [ "$(id -u)" -eq 0 ] && [ -w /proc/sys/vm/mmap_rnd_bits ]; then
    echo "tsan: setting vm.mmap_rnd_bits=28 (was $(cat /proc/sys/vm/mmap_rnd_bits))"
    echo 28 >/proc/sys/vm/mmap_rnd_bits
    "$probe" >/dev/null 2>&1 && return 0
  fi
  "$probe" || true
  echo "tsan: cannot run TSan binaries here (try: sudo sysctl vm.mmap_rnd_bits=28)" >&2
  return 1
}

# configure + build + ctest one configuration
config() {
  local cc=$2 sanitize=$3 dir=build-ci-$1
  [ "${CI_CLEAN:-0}" = 1 ] && rm -rf "$dir"
  cmake -S . -B "$dir" -DCMAKE_C_COMPILER="$cc" -DNP_SANITIZE="$sanitize" -DBUILD_TESTING=ON
  cmake --build "$dir" -j "$JOBS"
  local runner=()
  if [ "$sanitize" = thread ]; then
    tsan_setup "$dir"
    runner=("${TSAN_RUNNER[@]}")
  fi
  "${runner[@]}" ctest --test-dir "$dir" --output-on-failure -j "$JOBS"
}

step() {
  case $1 in
    gcc) config gcc gcc none ;;
    clang) config clang clang none ;;
    asan) config asan gcc address ;;
    tsan) config tsan clang thread ;;
    format) make check-format && ci/func-length.sh 70 netpoll/src/*.c sim/*.c sim/lib/*.c fuzz/*.c examples/*.c examples/sim/*.c examples/sim/bugs/*.c \
      tests/conformance/native_runner.c tests/conformance/events_probe.c ;;
    install) BUILD=build-ci-install CC=gcc JOBS=$JOBS ci/install-check.sh ;;
    fuzz) JOBS=$JOBS ci/fuzz.sh --smoke ;;
    mutants) JOBS=$JOBS ci/mutants.sh ;;
    *) echo "unknown step '$1' (steps: ${ALL_STEPS[*]})" >&2; return 2 ;;
  esac
}

results=()
failed=0
start_all=$(date +%s)
for s in "${STEPS[@]}"; do
  say "$s"
  t0=$(date +%s)
  set +e
  (set -e; step "$s")
  rc=$?
  set -e
  secs=$(($(date +%s) - t0))
  if [ $rc -eq 0 ]; then
    results+=("$(printf '%-8s pass  %4ds' "$s" "$secs")")
  else
    results+=("$(printf '%-8s FAIL  %4ds  (exit %d)' "$s" "$secs" "$rc")")
    failed=1
    if [ "${CI_FAIL_FAST:-0}" = 1 ]; then break; fi
  fi
done

say "summary ($(($(date +%s) - start_all))s total, JOBS=$JOBS)"
printf '%s\n' "${results[@]}"
exit $failed
