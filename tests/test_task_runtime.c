/*
 * test_task_runtime.c - the task runtime's internals, observed from
 * outside: the fd lock handed between tasks of two schedulers (the
 * semaphore's park, commit and hand-off), task stacks given back to the
 * system once the pool is full, and tasks woken by one poll running in the
 * order of their events. Each test was written against a planted bug that
 * the rest of the suite let through (the runtime's own code is native only:
 * the simulator runs its cross-thread protocol, not these parts).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <netpoll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"
#include "np_internal.h"

static np_poller *poller_procs(int procs) {
  np_poller *p = NULL;
  np_options o = {.procs = procs};
  assert_int_equal(np_poller_create(&p, &o), 0);
  return p;
}

/* ---- the fd lock between schedulers ---------------------------------------------- */

#define WRITERS 8
#define WRITES 20000

typedef struct contended {
  np_fd *w, *r;
  atomic_int failed;
  uint64_t got;
} contended;

/* One byte at a time: every np_write takes the write lock, and a writer
 * that finds it held parks on the lock's semaphore until the holder's
 * release hands it over, often from the other scheduler's thread. */
static void lock_writer(void *arg) {
  contended *c = arg;
  for (int i = 0; i < WRITES; i++)
    if (np_write(c->w, "x", 1, NULL) != 0) atomic_fetch_add(&c->failed, 1);
}

static void lock_reader(void *arg) {
  contended *c = arg;
  char buf[4096];
  while (c->got < (uint64_t)WRITERS * WRITES) {
    ssize_t n = np_read(c->r, buf, sizeof(buf));
    if (n <= 0) {
      atomic_fetch_add(&c->failed, 1);
      return;
    }
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] != 'x') atomic_fetch_add(&c->failed, 1);
    c->got += (uint64_t)n;
  }
}

/* Between queuing on the semaphore and parking: a few microseconds here
 * (NP_TEST_HOOKS) let the holder's release find most waiters not yet
 * parked, a window of nanoseconds otherwise. */
static void queued_pause(void) {
  int64_t until = np_now() + 3000;
  while (np_now() < until) {
  }
}

static void *thread_writer(void *arg) {
  lock_writer(arg);
  return NULL;
}

/* A hand-off that readied a task before its park committed put it on two
 * queues (it ran twice, or the scheduler panicked); the release must leave
 * such a waiter to fail its commit and run on. Plain threads write too: a
 * woken task moves to the waker's scheduler, so tasks alone soon share one
 * scheduler and never contend at the same instant; threads stay. */
static void test_fd_lock_handoff_between_schedulers(void **state) {
  (void)state;
  np__test_hook_sema_queued = queued_pause;
  np_poller *p = poller_procs(2);
  static contended c;
  memset(&c, 0, sizeof(c));
  np_fd *pair[2];
  assert_int_equal(np_socketpair(p, pair), 0);
  c.w = pair[0];
  c.r = pair[1];
  assert_int_equal(np_go(p, lock_reader, &c), 0);
  pthread_t threads[WRITERS / 2];
  for (int i = 0; i < WRITERS / 2; i++) {
    assert_int_equal(np_go(p, lock_writer, &c), 0);
    assert_int_equal(pthread_create(&threads[i], NULL, thread_writer, &c), 0);
  }
  for (int i = 0; i < WRITERS / 2; i++) pthread_join(threads[i], NULL);
  assert_int_equal(np_wait_tasks(p, np_deadline_after(60000 * MS)), 0);
  np__test_hook_sema_queued = NULL;
  assert_int_equal(atomic_load(&c.failed), 0);
  assert_int_equal(c.got, (uint64_t)WRITERS * WRITES);
  np_free(pair[0]);
  np_free(pair[1]);
  np_poller_destroy(p);
}

/* ---- stacks given back ----------------------------------------------------------- */

#define STACK_TASKS 3000

static void *g_frames[STACK_TASKS];

static atomic_int g_release;

/* Alive until every task has started: each holds its own stack. */
static void nap(void *arg) {
  g_frames[(intptr_t)arg] = __builtin_frame_address(0); /* on the task's own stack */
  while (!atomic_load(&g_release)) assert_int_equal(np_sleep(MS), 0);
}

/* Is the page of addr mapped? msync says ENOMEM for an unmapped range. */
static bool mapped(void *addr) {
  long page = sysconf(_SC_PAGESIZE);
  void *base = (void *)((uintptr_t)addr & ~(uintptr_t)(page - 1));
  return msync(base, (size_t)page, MS_ASYNC) == 0;
}

/* 3,000 tasks alive at once need 3,000 stacks; the pool keeps 1,024 for
 * reuse and unmaps the rest as tasks end, and destroy unmaps the pool:
 * afterwards no task's stack is mapped (a few pages may be mapped again by
 * then for something else; a leak is the 1,976 stacks past the pool). A
 * task's frame address is on its stack under ASan and TSan too. */
static void test_stacks_unmapped(void **state) {
  (void)state;
  np_poller *p = poller_procs(1);
  atomic_store(&g_release, 0);
  for (intptr_t i = 0; i < STACK_TASKS; i++) assert_int_equal(np_go(p, nap, (void *)i), 0);
  atomic_store(&g_release, 1);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  int alive = 0;
  for (int i = 0; i < STACK_TASKS; i++) alive += g_frames[i] != NULL && mapped(g_frames[i]);
  assert_true(alive >= 512 && alive <= 1024 + 16); /* the pool's only: at most 1,024 kept */
  np_poller_destroy(p);
  int left = 0;
  for (int i = 0; i < STACK_TASKS; i++) left += mapped(g_frames[i]);
  assert_true(left <= 16);
}

/* ---- run order of one poll's wake-ups -------------------------------------------- */

#define READERS 8

typedef struct ordered {
  np_fd *r[READERS], *w[READERS];
  int order[READERS];
  atomic_int next;
} ordered;

typedef struct ordered_reader {
  ordered *o;
  int id;
} ordered_reader;

static void order_reader(void *arg) {
  ordered_reader *me = arg;
  char b;
  assert_int_equal(np_read(me->o->r[me->id], &b, 1), 1);
  me->o->order[atomic_fetch_add(&me->o->next, 1)] = me->id;
}

static void order_writer(void *arg) {
  ordered *o = arg;
  for (int i = 0; i < READERS; i++) assert_int_equal(np_write(o->w[i], "x", 1, NULL), 0);
}

/* The writer makes every pipe readable, in order, before the scheduler
 * polls again; the poll wakes the readers in event order (each to the run
 * queue's tail, not the runnext slot, which is for a wake by the running
 * task): they run in the order their data came. */
static void test_poll_wakes_run_in_event_order(void **state) {
  (void)state;
  np_poller *p = poller_procs(1);
  static ordered o;
  memset(&o, 0, sizeof(o));
  ordered_reader readers[READERS];
  for (int i = 0; i < READERS; i++) {
    np_fd *fds[2];
    assert_int_equal(np_pipe(p, fds), 0);
    o.r[i] = fds[0];
    o.w[i] = fds[1];
    readers[i] = (ordered_reader){&o, i};
    assert_int_equal(np_go(p, order_reader, &readers[i]), 0);
  }
  th_wait_parked(p, READERS);
  assert_int_equal(np_go(p, order_writer, &o), 0);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  for (int i = 0; i < READERS; i++) assert_int_equal(o.order[i], i);
  for (int i = 0; i < READERS; i++) {
    np_free(o.r[i]);
    np_free(o.w[i]);
  }
  np_poller_destroy(p);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fd_lock_handoff_between_schedulers),
      cmocka_unit_test(test_stacks_unmapped),
      cmocka_unit_test(test_poll_wakes_run_in_event_order),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
