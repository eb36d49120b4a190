#!/bin/sh
# user_guard.sh BINARY - each test that reaches past the simulation fails,
# naming the call; the clean one passes.
bin=$1
expect() { # test, text the failure must contain
  out=$("$bin" --test "$1" --quiet 2>&1)
  rc=$?
  if [ $rc -ne 1 ] || ! echo "$out" | grep -q "$2"; then echo "$1: rc=$rc, want '$2': $out"; exit 1; fi
  echo "$1: $(echo "$out" | grep '^FAIL')"
}
expect real_clock 'determinism: clock_gettime'
expect real_thread 'determinism: pthread_create'
expect real_sleep 'determinism: usleep'
expect real_gettimeofday 'determinism: gettimeofday'
expect real_time 'determinism: time'
expect real_nanosleep 'determinism: nanosleep'
expect real_sleep_seconds 'determinism: sleep'
expect real_random 'determinism: getrandom'
expect real_entropy 'determinism: getentropy'
expect real_fd 'determinism: np_open(fd'
expect mutex_across_switch 'determinism: pthread_mutex_lock waits for a mutex another task holds'
expect cond_wait 'determinism: pthread_cond_wait'
expect plain_assert 'assertion failed: x == 2'
expect stuck_read 'stuck: .* in np_read(fd'
"$bin" --test clean --seeds 1-50 --quiet || { echo "clean failed"; exit 1; }
"$bin" --test mutex_uncontended --seeds 1-50 --quiet || { echo "mutex_uncontended failed"; exit 1; }
"$bin" --test sysfd_reaches_no_real_file --seeds 1-20 --quiet || { echo "sysfd_reaches_no_real_file failed"; exit 1; }
"$bin" --test many_tasks --seeds 1-20 --quiet || { echo "many_tasks failed"; exit 1; }
"$bin" --test leftover_poller --seeds 1-50 --quiet || { echo "leftover_poller failed"; exit 1; }
"$bin" --seeds x 2>/dev/null; [ $? -eq 2 ] || { echo "bad option: want exit 2"; exit 1; }
"$bin" --seeds 1-99999999999999999999999 2>/dev/null; [ $? -eq 2 ] || { echo "seed overflow: want exit 2"; exit 1; }
"$bin" --test nosuch 2>/dev/null; [ $? -eq 2 ] || { echo "unknown test: want exit 2"; exit 1; }
echo ok
