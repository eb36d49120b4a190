/*
 * user_crash_test.c - libnetpoll-sim's runner when a run cannot come back
 * (a crash, a stack overflow, abort, exit, a task that never yields: each
 * must still print its seed and replay command), and the runtime calls it
 * simulates as natively (stack sizes, np_blocking's thread, several
 * np_wait_tasks waiters, a blocked SIGPIPE). Run by ctest (sim_user_crash,
 * tests/sim/user_crash.sh), one --test at a time.
 */
#include <netpoll_test.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

NP_TEST(segv) {
  volatile uintptr_t address = 16; /* not NULL: UBSan would stop first */
  *(volatile int *)address = 1;
}

/* Under ASan: its report, then the FAIL line (the death callback). */
NP_TEST(heap_overflow) {
  volatile size_t n = 4;
  char *m = malloc(n);
  ((volatile char *)m)[n] = 1;
  free(m);
}

/* Under UBSan: its report names the seed. */
NP_TEST(signed_overflow) {
  volatile int big = INT_MAX;
  big += (int)(1 + (np_rand() & 1));
  NP_CHECK(big != 0);
}

NP_TEST(abort_call) { abort(); }

/* A handle used after np_free: its memory is poisoned, the run fails (I13). */
NP_TEST(use_after_free) {
  np_fd *pair[2];
  char c;
  NP_CHECK_EQ(np_socketpair(np_current(), pair), 0);
  np_free(pair[0]);
  (void)np_read(pair[0], &c, 1);
  np_free(pair[1]);
}

NP_TEST(exit_call) { exit(3); }

/* A loop that never reaches a netpoll call: the cooperative scheduler can
 * never take the CPU back; the watchdog reports it. */
NP_TEST(spin) {
  volatile unsigned long n = 0;
  for (;;) n++;
}

static unsigned depth_reached;

static unsigned recurse(unsigned depth) {
  volatile char frame[1024];
  frame[0] = (char)depth;
  depth_reached = depth;
  return depth > 100000 ? (unsigned)frame[0] : recurse(depth + 1) + (unsigned)frame[0];
}

static void deep(void *arg) {
  (void)arg;
  np_task_name("deep");
  (void)recurse(0);
}

/* A task overflows its stack: named, not a silent corruption. */
NP_TEST(stack_overflow) {
  NP_CHECK_EQ(np_go(np_current(), deep, NULL), 0);
  NP_CHECK_EQ(np_sleep(1000), 0);
}

static void uses_stack(void *arg) {
  size_t len = *(size_t *)arg;
  char *frame = __builtin_alloca(len);
  memset(frame, 1, len);
  NP_CHECK_EQ(np_sleep(1000), 0); /* a switch with the frame live */
  NP_CHECK(frame[len - 1] == 1 && frame[0] == 1);
}

/* np_options.stack_size is the size a task gets (natively too). */
NP_TEST(stack_size_option) {
  static size_t len = 512 * 1024;
  np_poller *p;
  np_options o = {.stack_size = 1024 * 1024};
  NP_CHECK_EQ(np_poller_create(&p, &o), 0);
  NP_CHECK_EQ(np_go(p, uses_stack, &len), 0);
  NP_CHECK_EQ(np_wait_tasks(p, 0), 0);
  np_poller_destroy(p);
}

typedef struct helper_job {
  np_poller *p;
  int64_t slept;
  int wait_err;
  bool in_task;
  np_poller *current;
} helper_job;

static void helper(void *arg) {
  helper_job *j = arg;
  j->in_task = np_in_task();
  j->current = np_current();
  j->wait_err = np_wait_tasks(j->p, 0); /* waits for the task that waits for this */
  int64_t t0 = np_now();
  NP_CHECK_EQ(np_sleep(5000000), 0); /* a thread sleeps its time */
  j->slept = np_now() - t0;
  char *big = __builtin_alloca(1 << 20); /* a thread's stack, not a task's */
  memset(big, 2, 1 << 20);
  NP_CHECK(big[12345] == 2);
}

static void calls_blocking(void *arg) { NP_CHECK_EQ(np_blocking(helper, arg), 0); }

/* np_blocking's function runs on a helper thread: no task, no poller, as
 * natively; np_wait_tasks there for its own poller is -EDEADLK. */
NP_TEST(blocking_runs_on_a_thread) {
  np_poller *p;
  NP_CHECK_EQ(np_poller_create(&p, NULL), 0);
  helper_job j = {.p = p, .in_task = true, .current = p};
  NP_CHECK_EQ(np_go(p, calls_blocking, &j), 0);
  NP_CHECK_EQ(np_wait_tasks(p, 0), 0);
  np_poller_destroy(p);
  NP_CHECK(!j.in_task);
  NP_CHECK(j.current == NULL);
  NP_CHECK_EQ(j.wait_err, -EDEADLK);
  NP_CHECK(j.slept >= 5000000);
}

static void sleeper(void *arg) { NP_CHECK_EQ(np_sleep(*(int64_t *)arg), 0); }

static void sleeper_cut(void *arg) { /* until destroy ends its sleep */
  NP_CHECK_EQ(np_sleep(*(int64_t *)arg), NP_ECLOSING);
}

static np_poller *waited;
static int waiters_done;

static void waits_for_p(void *arg) {
  (void)arg;
  NP_CHECK_EQ(np_wait_tasks(waited, 0), 0);
  waiters_done++;
}

/* Several callers wait for one poller's tasks: each returns. */
NP_TEST(two_waiters) {
  static int64_t ms10 = 10000000;
  waiters_done = 0;
  NP_CHECK_EQ(np_poller_create(&waited, NULL), 0);
  NP_CHECK_EQ(np_go(waited, sleeper, &ms10), 0);
  NP_CHECK_EQ(np_go(np_current(), waits_for_p, NULL), 0);
  NP_CHECK_EQ(np_go(np_current(), waits_for_p, NULL), 0);
  NP_CHECK_EQ(np_wait_tasks(waited, 0), 0);
  NP_CHECK_EQ(np_sleep(1000000), 0);
  NP_CHECK_EQ(waiters_done, 2);
  int64_t t0 = np_now();
  static int64_t s1 = 1000000000;
  NP_CHECK_EQ(np_go(waited, sleeper_cut, &s1), 0);
  NP_CHECK_EQ(np_wait_tasks(waited, t0 + 2000000), NP_ETIMEOUT);
  NP_CHECK(np_now() >= t0 + 2000000 && np_now() < t0 + 1000000000);
  np_poller_destroy(waited);
}

/* A blocked SIGPIPE does not kill a process: the write fails with EPIPE. */
NP_TEST(sigpipe_blocked) {
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  NP_CHECK_EQ(sigprocmask(SIG_BLOCK, &set, &old), 0);
  np_fd *pipe[2];
  NP_CHECK_EQ(np_pipe(np_current(), pipe), 0);
  np_free(pipe[0]);
  int err = np_write(pipe[1], "x", 1, NULL);
  np_free(pipe[1]);
  NP_CHECK_EQ(sigprocmask(SIG_SETMASK, &old, NULL), 0);
  NP_CHECK_EQ(err, -EPIPE);
}

static void reads_forever(void *arg) {
  char c;
  np_task_name("reader2");
  (void)np_read(arg, &c, 1);
}

/* Two tasks wait forever: the report names both, whichever blocked last. */
NP_TEST(stuck_two) {
  np_fd *a[2], *b[2];
  char c;
  NP_CHECK_EQ(np_socketpair(np_current(), a), 0);
  NP_CHECK_EQ(np_socketpair(np_current(), b), 0);
  NP_CHECK_EQ(np_go(np_current(), reads_forever, a[0]), 0);
  (void)np_read(b[0], &c, 1);
}

static void naps(void *arg) {
  (void)arg;
  (void)np_sleep(1000000);
}

/* Past the simulator's 1,024 tasks np_go is -ENOMEM, and stderr says it
 * is the simulator's limit. */
NP_TEST(too_many_tasks) {
  int err = 0, started = 0;
  while (err == 0 && started < 2000) {
    err = np_go(np_current(), naps, NULL);
    started += err == 0;
  }
  NP_CHECK_EQ(err, -ENOMEM);
  NP_CHECK(started > 1000 && started < 1024);
}

NP_TEST_MAIN()
