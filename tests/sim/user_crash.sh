#!/bin/sh
# user_crash.sh CRASH_TEST PROGRAM - a run that crashes, overflows a task's
# stack, aborts, exits or never yields still prints its FAIL line with the
# seed and a replay command, and the replay fails the same way; np_run's
# settings come from NP_SIM_*; calls outside a run stop with a message.
bin=$1 prog=$2
fail() { echo "FAILED: $*"; exit 1; }

# expect TEST WANT_RC TEXT [OPTIONS]: the run fails with TEXT, a FAIL line
# and a replay line; the replay ends the same way.
expect() {
  t=$1 want=$2 text=$3
  shift 3
  out=$("$bin" --test "$t" --seeds 1-3 --quiet "$@" 2>&1)
  rc=$?
  [ $rc -eq "$want" ] || fail "$t: rc=$rc, want $want: $out"
  echo "$out" | grep '^FAIL' | grep -q "$text" || fail "$t: no FAIL line with '$text': $out"
  replay=$(echo "$out" | sed -n 's/^replay: //p' | head -1)
  [ -n "$replay" ] || fail "$t: no replay line: $out"
  echo "$replay" | grep -q -- "--seed 1 " || fail "$t: replay names no seed: $replay"
  again=$(sh -c "$replay" 2>&1)
  [ $? -eq "$want" ] || fail "$t: the replay ended otherwise: $again"
  echo "$again" | grep '^FAIL' | grep -q "$text" || fail "$t: the replay failed differently: $again"
  echo "$t: $(echo "$out" | grep '^FAIL')"
}

expect segv 139 'crashed: SIGSEGV at address 0x10 in task segv'
if ldd "$bin" | grep -q libasan; then # a sanitizer's own stop names the seed too
  expect heap_overflow 1 'a sanitizer stopped the run'
  out=$("$bin" --test signed_overflow --quiet 2>&1)
  [ $? -eq 1 ] && echo "$out" | grep -q 'report above is from signed_overflow seed 1 ' || fail "ubsan: $out"
  echo "$out" | grep -q "^replay: .* --test signed_overflow --seed 1 " || fail "ubsan: no replay line: $out"
fi
expect use_after_free 1 'I13: use after free: use_after_free touched a freed np_fd .*used after np_free returned'
expect abort_call 134 'crashed: SIGABRT (abort) in task abort_call'
expect exit_call 1 'the program called exit(3) in task exit_call'
expect stack_overflow 139 'stack overflow in task deep: its [0-9]*-byte stack is too small'
expect spin 1 'hang: task spin has run for 2 s of real time' --stall 2
echo "$out" | grep -q 'replay: .* --stall 2 --trace' || fail "spin: the replay drops --stall: $out"
expect stuck_two 1 'stuck: .*reader2 in np_read(fd [0-9]*)'
echo "$out" | grep '^FAIL' | grep -q 'stuck: .*stuck_two in np_read(fd [0-9]*)' || fail "stuck_two: one task missing: $out"

for t in stack_size_option blocking_runs_on_a_thread two_waiters sigpipe_blocked; do
  "$bin" --test $t --seeds 1-30 --quiet || fail "$t did not pass"
done

out=$("$bin" --test too_many_tasks --seeds 1-2 --quiet 2>&1) || fail "too_many_tasks: $out"
[ "$(echo "$out" | grep -c 'np_go: at most 1024 tasks at once; returns -ENOMEM (a limit of the simulator')" -eq 1 ] ||
  fail "too_many_tasks: the limit is not said once: $out"

# A program's own np_run: settings from the environment, in its replay line.
out=$(NP_SIM_STEPS=500 "$prog" yield 2>&1)
[ $? -eq 1 ] || fail "yield: want exit 1: $out"
echo "$out" | grep -q '^FAIL np_run seed 1 .*step limit 500' || fail "yield: no step-limit FAIL: $out"
replay=$(echo "$out" | sed -n 's/^replay: //p')
echo "$replay" | grep -q "NP_SIM_STEPS=500 .*user_program yield$" || fail "yield: replay line: $replay"
again=$(sh -c "$replay" 2>&1)
echo "$again" | grep -q '^FAIL np_run seed 1 .*step limit 500' || fail "yield: the replay differs: $again"
echo "$again" | grep -q ' ms  .*np_yield\|return' || true
echo "np_run yield: $(echo "$out" | grep '^FAIL')"

out=$(NP_SIM_SEED=4 "$prog" exit 2>&1)
[ $? -eq 1 ] || fail "exit: want exit 1: $out"
echo "$out" | grep -q '^FAIL np_run seed 4 .*called exit(5)' || fail "exit: $out"
echo "$out" | grep -q '^replay: NP_SIM_SEED=4 NP_SIM_TRACE=1 .*user_program exit$' || fail "exit replay: $out"

out=$(NP_SIM_TRACE=0 "$prog" talk 2>&1)
[ "$out" = "talked !" ] || fail "NP_SIM_TRACE=0 traced, or the run failed: $out"
out=$(NP_SIM_TRACE=1 "$prog" talk 2>&1)
echo "$out" | grep -q ' ms  .*np_socketpair' || fail "NP_SIM_TRACE=1 printed no trace: $out"
NP_SIM_STRATEGY=pct NP_SIM_SEED=9 "$prog" talk > /dev/null || fail "NP_SIM_STRATEGY=pct"
out=$(NP_SIM_STRATEGY=bogus "$prog" talk 2>&1)
[ $? -eq 2 ] && echo "$out" | grep -q 'bad NP_SIM_STRATEGY=bogus' || fail "bad strategy: $out"

out=$("$prog" create 2>&1)
[ $? -eq 2 ] || fail "create outside a run: want exit 2: $out"
echo "$out" | grep -q 'np_poller_create called outside a simulated run' || fail "create: $out"
"$prog" before > /dev/null || fail "np_now/np_yield before np_run"
echo ok
