/*
 * test_tasks.c - the task API: many tasks, ping-pong between tasks, tasks
 * blocked and closed, deadlines, sleep ordering, yield, np_blocking, tasks
 * exiting while others wait, shutdown with parked tasks (all woken with
 * NP_ECLOSING, nothing leaked), bad arguments, and the stack overflow
 * report. The fd/deadline/close/fault tests also run with task actors
 * (NP_TEST_WAITER=task, tests/CMakeLists.txt); this file covers what only
 * tasks have.
 */
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "helpers.h"
#include "task.h" /* np__test_stacks_mapped */

static np_poller *poller_procs(int procs) {
  np_poller *p = NULL;
  np_options o = {.procs = procs};
  assert_int_equal(np_poller_create(&p, &o), 0);
  return p;
}

/* ---- many tasks ----------------------------------------------------------------- */

static atomic_int g_count;

static void count_task(void *arg) {
  (void)arg;
  np_yield();
  atomic_fetch_add(&g_count, 1);
}

static void test_many_tasks(void **state) {
  (void)state;
  np_poller *p = poller_procs(2);
  atomic_store(&g_count, 0);
  for (int i = 0; i < 20000; i++) assert_int_equal(np_go(p, count_task, NULL), 0);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  assert_int_equal(atomic_load(&g_count), 20000);
  np_stats st;
  np_poller_stats(p, &st);
  assert_int_equal(st.tasks, 0);
  assert_int_equal(st.procs, 2);
  np_poller_destroy(p);
}

/* The default scheduler count is the CPUs the process may run on, as Go's
 * GOMAXPROCS: a process restricted to one CPU (taskset, a cpuset) gets one
 * scheduler, not one per online CPU. */
static void test_default_procs_follow_affinity(void **state) {
  (void)state;
  cpu_set_t all, one;
  assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
  int first = 0;
  while (!CPU_ISSET(first, &all)) first++;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  np_stats st;
  np_poller *p = NULL;
  assert_int_equal(np_poller_create(&p, NULL), 0);
  np_poller_stats(p, &st);
  np_poller_destroy(p);
  assert_int_equal(st.procs, (uint64_t)(CPU_COUNT(&all) < 256 ? CPU_COUNT(&all) : 256));
  assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
  assert_int_equal(np_poller_create(&p, NULL), 0);
  np_poller_stats(p, &st);
  np_poller_destroy(p);
  assert_int_equal(sched_setaffinity(0, sizeof(all), &all), 0);
  assert_int_equal(st.procs, 1);
}

/* Tasks starting tasks: a tree of 2^12 leaves. */
static void tree_task(void *arg) {
  intptr_t depth = (intptr_t)arg;
  if (depth == 0) {
    atomic_fetch_add(&g_count, 1);
    return;
  }
  assert_int_equal(np_go(np_current(), tree_task, (void *)(depth - 1)), 0);
  assert_int_equal(np_go(np_current(), tree_task, (void *)(depth - 1)), 0);
}

static void test_tasks_start_tasks(void **state) {
  (void)state;
  np_poller *p = poller_procs(2);
  atomic_store(&g_count, 0);
  assert_int_equal(np_go(p, tree_task, (void *)12), 0);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  assert_int_equal(atomic_load(&g_count), 4096);
  np_poller_destroy(p);
}

/* ---- ping-pong between tasks over socket pairs ------------------------------------ */

typedef struct pong {
  np_fd *f;
  int rounds;
  bool starter;
  uint64_t sum;
  int err;
} pong;

/* The starter writes then reads, its partner reads then writes back v + 1. */
static void pong_task(void *arg) {
  pong *g = arg;
  uint64_t v = 0;
  for (int i = 0; i < g->rounds; i++) {
    for (int step = 0; step < 2; step++) {
      if ((step == 0) == g->starter) {
        size_t w;
        v++;
        int err = np_write(g->f, &v, sizeof(v), &w);
        if (err != 0) g->err = err;
        continue;
      }
      ssize_t n = np_read(g->f, &v, sizeof(v));
      if (n != (ssize_t)sizeof(v)) {
        g->err = n < 0 ? (int)n : -EIO;
        return;
      }
      g->sum += v;
    }
  }
}

static void test_ping_pong(void **state) {
  (void)state;
  np_poller *p = poller_procs(2);
  enum { PAIRS = 64, ROUNDS = 300 };
  pong *g = calloc(2 * PAIRS, sizeof(*g));
  for (int i = 0; i < PAIRS; i++) {
    int fds[2];
    np_fd *f[2];
    th_socketpair(fds);
    th_open_pair(p, fds, f);
    g[2 * i] = (pong){.f = f[0], .rounds = ROUNDS, .starter = true};
    g[2 * i + 1] = (pong){.f = f[1], .rounds = ROUNDS, .starter = false};
    assert_int_equal(np_go(p, pong_task, &g[2 * i]), 0);
    assert_int_equal(np_go(p, pong_task, &g[2 * i + 1]), 0);
  }
  assert_int_equal(np_wait_tasks(p, 0), 0);
  /* The starter reads 2, 4, .., 2R; its partner 1, 3, .., 2R - 1. */
  for (int i = 0; i < 2 * PAIRS; i++) {
    assert_int_equal(g[i].err, 0);
    uint64_t expect = g[i].starter ? (uint64_t)ROUNDS * (ROUNDS + 1) : (uint64_t)ROUNDS * ROUNDS;
    assert_int_equal(g[i].sum, expect);
  }
  free(g);
  np_poller_destroy(p);
}

/* ---- blocked tasks closed, deadlines ------------------------------------------------- */

typedef struct blocked {
  np_fd *f;
  int64_t deadline; /* from the task's start; 0 none */
  ssize_t ret;
  int64_t elapsed;
} blocked;

static void read_task(void *arg) {
  blocked *b = arg;
  char c;
  int64_t t0 = np_now();
  if (b->deadline != 0) np_set_read_deadline(b->f, np_deadline_after(b->deadline));
  b->ret = np_read(b->f, &c, 1);
  b->elapsed = np_now() - t0;
}

static void test_blocked_tasks_closed(void **state) {
  (void)state;
  np_poller *p = poller_procs(2);
  int fds[2];
  np_fd *f[2];
  th_socketpair(fds);
  th_open_pair(p, fds, f);
  blocked b[4] = {{.f = f[0]}, {.f = f[0]}, {.f = f[0]}, {.f = f[0]}};
  for (int i = 0; i < 4; i++) assert_int_equal(np_go(p, read_task, &b[i]), 0);
  th_wait_parked(p, 1); /* one parked on rg, three queued on the read lock */
  th_sleep_ms(20);
  assert_int_equal(np_close(f[0]), 0);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  for (int i = 0; i < 4; i++) assert_int_equal(b[i].ret, NP_ECLOSING);
  np_free(f[0]);
  np_free(f[1]);
  np_poller_destroy(p);
}

static void test_task_deadline(void **state) {
  (void)state;
  np_poller *p = poller_procs(1);
  int fds[2];
  np_fd *f[2];
  th_socketpair(fds);
  th_open_pair(p, fds, f);
  blocked b = {.f = f[0], .deadline = 30 * MS}; /* relative: armed by the task */
  assert_int_equal(np_go(p, read_task, &b), 0);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  assert_int_equal(b.ret, NP_ETIMEOUT);
  assert_true(b.elapsed >= 30 * MS);
  assert_true(b.elapsed < 5000 * MS);
  np_poller_destroy(p);
}

/* A deadline passes while its task keeps its scheduler busy with np_yield
 * and nothing is parked: the read after it fails although data is queued
 * (Go, with runtime.Gosched: "i/o timeout"). Found by testing from outside:
 * the busy scheduler ran no timers, and the read returned the byte. */
static void yield_past_deadline_task(void *arg) {
  blocked *b = arg;
  char c;
  assert_int_equal(np_set_read_deadline(b->f, np_deadline_after(b->deadline)), 0);
  int64_t t0 = np_now();
  while (np_now() - t0 < 5 * b->deadline) np_yield();
  b->ret = np_read(b->f, &c, 1);
}

static void test_deadline_passes_while_yielding(void **state) {
  (void)state;
  np_poller *p = poller_procs(1);
  int fds[2];
  np_fd *f[2];
  th_socketpair(fds);
  th_open_pair(p, fds, f);
  assert_int_equal(np_write(f[1], "x", 1, NULL), 0);
  blocked b = {.f = f[0], .deadline = 10 * MS};
  assert_int_equal(np_go(p, yield_past_deadline_task, &b), 0);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  assert_int_equal(b.ret, NP_ETIMEOUT);
  np_poller_destroy(p);
}

/* A thread writes, a task reads: the two waiter kinds on one descriptor. */
static void test_thread_wakes_task(void **state) {
  (void)state;
  np_poller *p = poller_procs(2);
  int fds[2];
  np_fd *f[2];
  th_socketpair(fds);
  th_open_pair(p, fds, f);
  blocked b = {.f = f[0]};
  assert_int_equal(np_go(p, read_task, &b), 0);
  th_wait_parked(p, 1);
  size_t w;
  assert_int_equal(np_write(f[1], "x", 1, &w), 0);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  assert_int_equal(b.ret, 1);
  np_poller_destroy(p);
}

/* ---- accepted connections spread over the schedulers ------------------------------ */

typedef struct acceptor {
  np_fd *l;
  np_fd *conns[8];
  int n;
} acceptor;

static void accept_task(void *arg) {
  acceptor *a = arg;
  while (a->n < 8 && np_accept(a->l, &a->conns[a->n], NULL, NULL) == 0) a->n++;
}

static void test_accepted_connections_spread(void **state) {
  (void)state;
  np_poller *p = poller_procs(2);
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "np-spread-%d", (int)getpid()); /* abstract */
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sa.sun_path + 1));
  assert_int_equal(bind(lfd, (struct sockaddr *)&sa, len), 0);
  assert_int_equal(listen(lfd, 16), 0);
  acceptor a = {0};
  assert_int_equal(np_open(p, lfd, &a.l), 0);
  assert_int_equal(np_go(p, accept_task, &a), 0);
  int cl[8];
  for (int i = 0; i < 8; i++) {
    cl[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(cl[i], (struct sockaddr *)&sa, len), 0);
  }
  assert_int_equal(np_wait_tasks(p, np_deadline_after(10000 * MS)), 0);
  assert_int_equal(a.n, 8);
  int on_leader = 0;
  for (int i = 0; i < 8; i++) on_leader += a.conns[i]->poller == p;
  assert_int_equal(on_leader, 4); /* round robin over the two schedulers' pollers */
  /* Each number is owned, whichever scheduler's epoll instance has it:
   * np_open of one is -EEXIST (half of them used to open a second handle,
   * the other instance knowing nothing of them). */
  for (int i = 0; i < 8; i++) {
    np_fd *twice = NULL;
    assert_int_equal(np_open(p, np_sysfd(a.conns[i]), &twice), -EEXIST);
    assert_null(twice);
  }
  /* Freed, a number is free again for a new file. */
  for (int i = 0; i < 2; i++) {
    int num = np_sysfd(a.conns[i]);
    np_free(a.conns[i]);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s != num) {
      assert_int_equal(dup2(s, num), num);
      close(s);
    }
    np_fd *f = NULL;
    assert_int_equal(np_open(p, num, &f), 0);
    np_free(f);
  }
  for (int i = 0; i < 8; i++) close(cl[i]);
  np_poller_destroy(p);
}

/* A stale handle (its number closed behind the library and reused) must
 * not drop the claim of the handle that owns the number now: np_open of
 * it is -EEXIST on every scheduler, also on one whose epoll instance has
 * never seen the number (only the group's table can say it there). */
typedef struct reopener {
  np_poller *p;
  int num;
  int ret;
  np_poller *home;
} reopener;

static void reopen_task(void *arg) {
  reopener *r = arg;
  r->home = np__home_poller(r->p, false);
  np_fd *f = NULL;
  r->ret = np_open(r->p, r->num, &f);
  if (f != NULL) np_free(f);
}

static void test_stale_handle_keeps_new_claim(void **state) {
  (void)state;
  np_poller *p = poller_procs(2);
  int fds[2], other[2];
  th_socketpair(fds);
  np_fd *stale = NULL, *owner = NULL;
  assert_int_equal(np_open(p, fds[0], &stale), 0);
  assert_int_equal(close(fds[0]), 0); /* behind the library */
  th_socketpair(other);
  if (other[0] != fds[0]) { /* the number names a new file */
    assert_int_equal(dup2(other[0], fds[0]), fds[0]);
    close(other[0]);
  }
  assert_int_equal(np_open(p, fds[0], &owner), 0);
  np_free(stale); /* its destroy must leave owner's claim alone */
  reopener r[2] = {{.p = p, .num = fds[0]}, {.p = p, .num = fds[0]}};
  for (int i = 0; i < 2; i++) assert_int_equal(np_go(p, reopen_task, &r[i]), 0);
  assert_int_equal(np_wait_tasks(p, np_deadline_after(10000 * MS)), 0);
  assert_ptr_not_equal(r[0].home, r[1].home); /* one task on each scheduler */
  for (int i = 0; i < 2; i++) assert_int_equal(r[i].ret, -EEXIST);
  assert_int_equal(np_write(owner, "x", 1, NULL), 0); /* the owner still works */
  char c;
  assert_int_equal(read(other[1], &c, 1), 1);
  np_free(owner);
  close(fds[1]);
  close(other[1]);
  np_poller_destroy(p);
}

/* ---- sleep ------------------------------------------------------------------------- */

static atomic_int g_order[8];
static atomic_int g_order_len;

static void sleeper(void *arg) {
  intptr_t ms = (intptr_t)arg;
  assert_int_equal(np_sleep(ms * MS), 0);
  g_order[atomic_fetch_add(&g_order_len, 1)] = (int)ms;
}

static void test_sleep_order(void **state) {
  (void)state;
  np_poller *p = poller_procs(1);
  atomic_store(&g_order_len, 0);
  static const int ms[] = {60, 20, 100, 40, 80};
  int64_t t0 = np_now();
  for (int i = 0; i < 5; i++) assert_int_equal(np_go(p, sleeper, (void *)(intptr_t)ms[i]), 0);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  assert_true(np_now() - t0 >= 100 * MS);
  assert_int_equal(atomic_load(&g_order_len), 5);
  for (int i = 0; i < 5; i++) assert_int_equal(g_order[i], 20 * (i + 1));
  np_poller_destroy(p);
}

/* ---- yield: tasks of one scheduler interleave -------------------------------------- */

static int g_trace[16];
static int g_trace_len;

static void yielder(void *arg) {
  for (int i = 0; i < 3; i++) {
    g_trace[g_trace_len++] = (int)(intptr_t)arg;
    np_yield();
  }
}

static void start_yielders(void *arg) {
  (void)arg;
  assert_int_equal(np_go(np_current(), yielder, (void *)1), 0);
  assert_int_equal(np_go(np_current(), yielder, (void *)2), 0);
}

static void test_yield_interleaves(void **state) {
  (void)state;
  np_poller *p = poller_procs(1);
  g_trace_len = 0;
  assert_int_equal(np_go(p, start_yielders, NULL), 0);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  assert_int_equal(g_trace_len, 6);
  int ones = 0;
  for (int i = 0; i < 6; i++) {
    ones += g_trace[i] == 1;
    if (i > 0) assert_int_not_equal(g_trace[i], g_trace[i - 1]); /* each yield lets the other run */
  }
  assert_int_equal(ones, 3);
  np_poller_destroy(p);
}

/* ---- np_blocking ------------------------------------------------------------------- */

typedef struct blk {
  pthread_t ran_on;
  atomic_int *ticks_seen;
} blk;

static atomic_int g_ticks;

static void slow_job(void *arg) {
  blk *b = arg;
  b->ran_on = pthread_self();
  int before = atomic_load(&g_ticks);
  usleep(100 * 1000); /* blocks a thread: must not be a scheduler */
  atomic_store(b->ticks_seen, atomic_load(&g_ticks) - before);
}

static void ticker(void *arg) {
  (void)arg;
  for (int i = 0; i < 20; i++) {
    atomic_fetch_add(&g_ticks, 1);
    np_sleep(2 * MS);
  }
}

static atomic_int g_seen;
static pthread_t g_task_thread;

static void blocking_task(void *arg) {
  blk *b = arg;
  g_task_thread = pthread_self();
  assert_int_equal(np_blocking(slow_job, b), 0);
}

static void test_blocking_offload(void **state) {
  (void)state;
  np_poller *p = poller_procs(1);
  atomic_store(&g_ticks, 0);
  blk b = {.ticks_seen = &g_seen};
  assert_int_equal(np_go(p, blocking_task, &b), 0);
  assert_int_equal(np_go(p, ticker, NULL), 0);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  assert_false(pthread_equal(b.ran_on, g_task_thread));
  assert_true(atomic_load(&g_seen) >= 5); /* the one scheduler kept running the ticker */
  np_poller_destroy(p);
  atomic_int direct = 0;
  blk b2 = {.ticks_seen = &direct};
  assert_int_equal(np_blocking(slow_job, &b2), 0); /* outside a task: runs here */
  assert_true(pthread_equal(b2.ran_on, pthread_self()));
}

/* A task that busy-waits with np_yield for an np_blocking job's result:
 * the job's task is woken from the helper thread, into the scheduler's
 * inbox, and must be taken in although the run queue never empties and
 * nothing waits on the poller (np_rtsim's spinner found it). Bounded: a
 * starved job shows as a spinner that gave up. */
static atomic_int g_job_done;

static void quick_job(void *arg) {
  (void)arg;
  usleep(5 * 1000);
}

static void job_task(void *arg) {
  (void)arg;
  assert_int_equal(np_blocking(quick_job, NULL), 0);
  atomic_store(&g_job_done, 1);
}

static void spinner_task(void *arg) {
  int *saw = arg;
  int64_t give_up = np_now() + 5 * 1000 * MS;
  while (!atomic_load(&g_job_done) && np_now() < give_up) np_yield();
  *saw = atomic_load(&g_job_done);
}

static void test_spinner_does_not_starve_inbox(void **state) {
  (void)state;
  np_poller *p = poller_procs(1);
  atomic_store(&g_job_done, 0);
  int saw = -1;
  assert_int_equal(np_go(p, job_task, NULL), 0);
  assert_int_equal(np_go(p, spinner_task, &saw), 0);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  assert_int_equal(saw, 1);
  np_poller_destroy(p);
}

/* An idle scheduler sleeps in epoll_wait. Tasks started from this thread
 * and woken from np_blocking's helpers reach the scheduler through its
 * inbox, several per drain; afterwards, with nothing to run, the process
 * must burn (almost) no CPU. An inbox count that drifts from the inbox
 * keeps the scheduler awake for ever: a whole core here (np_rtsim's R3
 * checks the same at every idle turn). Not a timing test: CPU time, not
 * wall time, and a bound far from both outcomes. */
static double cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void test_idle_scheduler_sleeps(void **state) {
  (void)state;
  np_poller *p = poller_procs(1);
  atomic_store(&g_count, 0);
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < 50; i++) assert_int_equal(np_go(p, count_task, NULL), 0);
    for (int i = 0; i < 4; i++) assert_int_equal(np_go(p, job_task, NULL), 0);
    assert_int_equal(np_wait_tasks(p, 0), 0);
  }
  assert_int_equal(atomic_load(&g_count), 1000);
  double before = cpu_ms();
  usleep(300 * 1000);
  double spent = cpu_ms() - before;
  np_poller_destroy(p);
  if (spent > 100) fail_msg("the idle scheduler used %.0f ms of CPU in 300 ms: it does not sleep", spent);
}

/* ---- shutdown with parked tasks ------------------------------------------------------ */

typedef struct parked {
  np_fd *f;
  int kind; /* 0 read, 1 write (full buffer), 2 sleep, 3 accept-like wait */
  int ret;
  int64_t sleep_ns; /* kind 2: 0 is an hour */
} parked;

static void parked_task(void *arg) {
  parked *k = arg;
  char buf[64];
  size_t w;
  switch (k->kind) {
    case 0: k->ret = (int)np_read(k->f, buf, sizeof(buf)); break;
    case 1:
      for (;;) {
        k->ret = np_write(k->f, buf, sizeof(buf), &w);
        if (k->ret != 0) break;
      }
      break;
    case 2: k->ret = np_sleep(k->sleep_ns != 0 ? k->sleep_ns : 3600 * 1000 * MS); break;
    default: k->ret = np_wait_read(k->f); break;
  }
  /* After shutdown began: new tasks and sleeps are refused. */
  if (np_go(np_current(), count_task, NULL) != NP_ECLOSING) k->ret = -1000;
  if (np_sleep(MS) != NP_ECLOSING) k->ret = -1001;
}

static void test_shutdown_wakes_parked(void **state) {
  (void)state;
  np_poller *p = poller_procs(2);
  enum { N = 40 };
  parked k[N];
  int fds[N][2];
  for (int i = 0; i < N; i++) {
    np_fd *f; /* the peer stays a raw descriptor, open until the end */
    th_socketpair(fds[i]);
    assert_int_equal(np_open(p, fds[i][0], &f), 0);
    /* Sleeps of an hour, and of for ever: the deadline clamps, no overflow. */
    static const int64_t sleeps[] = {0, INT64_MAX, INT64_MAX - 1};
    k[i] = (parked){.f = f, .kind = i % 4, .ret = 1, .sleep_ns = sleeps[(i / 4) % 3]};
    assert_int_equal(np_go(p, parked_task, &k[i]), 0);
  }
  th_wait_parked(p, N / 4 * 3); /* read, write, wait: on a pollDesc; sleep: on a timer */
  np_poller_destroy(p);         /* closes, ends sleeps, waits for every task, frees handles */
  for (int i = 0; i < N; i++) assert_int_equal(k[i].ret, NP_ECLOSING);
  for (int i = 0; i < N; i++) close(fds[i][1]);
}

/* Both ends registered, a reader parked on each: destroy marks every
 * descriptor closing before it closes any, so no reader sees its peer's
 * close as EOF first (most did, when destroy freed them one by one). */
static void test_shutdown_pairs_closing_not_eof(void **state) {
  (void)state;
  np_poller *p = poller_procs(2);
  enum { N = 25 };
  parked k[2 * N];
  for (int i = 0; i < N; i++) {
    np_fd *pair[2];
    assert_int_equal(np_socketpair(p, pair), 0);
    for (int e = 0; e < 2; e++) {
      k[2 * i + e] = (parked){.f = pair[e], .kind = 0, .ret = 1};
      assert_int_equal(np_go(p, parked_task, &k[2 * i + e]), 0);
    }
  }
  th_wait_parked(p, 2 * N);
  np_poller_destroy(p);
  for (int i = 0; i < 2 * N; i++) assert_int_equal(k[i].ret, NP_ECLOSING);
}

/* ---- bad arguments ------------------------------------------------------------------ */

static void deadlock_task(void *arg) { *(int *)arg = np_wait_tasks(np_current(), 0); }

static void test_bad_arguments(void **state) {
  (void)state;
  assert_int_equal(np_go(NULL, count_task, NULL), -EINVAL);
  np_poller *p = poller_procs(1);
  assert_int_equal(np_go(p, NULL, NULL), -EINVAL);
  int ret = 0;
  assert_int_equal(np_go(p, deadlock_task, &ret), 0);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  assert_int_equal(ret, -EDEADLK);
  assert_false(np_in_task());
  assert_null(np_current());
  np_poller_destroy(p);
  np_poller *m = th_poller_manual();
  assert_int_equal(np_go(m, count_task, NULL), -ENOTSUP);
  np_poller_destroy(m);
  np_options bad = {.stack_size = 1024};
  assert_int_equal(np_poller_create(&p, &bad), -EINVAL);
  bad = (np_options){.procs = -1};
  assert_int_equal(np_poller_create(&p, &bad), -EINVAL);
  assert_int_equal(np_run(NULL, NULL, NULL), -EINVAL);
}

static void run_main(void *arg) {
  assert_true(np_in_task());
  assert_int_equal(np_go(np_current(), count_task, NULL), 0);
  *(int *)arg = 1;
}

static void test_np_run(void **state) {
  (void)state;
  int flag = 0;
  atomic_store(&g_count, 0);
  assert_int_equal(np_run(NULL, run_main, &flag), 0);
  assert_int_equal(flag, 1);
  assert_int_equal(atomic_load(&g_count), 1);
}

/* More blocking jobs at once than helper threads (64): the rest queue and
 * every one runs, on at most 64 threads at a time, each with its own
 * argument. */
#define QUEUED_JOBS 100

typedef struct qjob {
  int in, out;
} qjob;

static atomic_int g_jobs_running, g_jobs_peak, g_jobs_done;

static void counted_job(void *arg) {
  qjob *j = arg;
  int now = atomic_fetch_add(&g_jobs_running, 1) + 1;
  for (int peak = atomic_load(&g_jobs_peak);
       now > peak && !atomic_compare_exchange_weak(&g_jobs_peak, &peak, now);) {
  }
  usleep(20 * 1000);
  j->out = j->in * 3;
  atomic_fetch_sub(&g_jobs_running, 1);
}

static void queued_job_task(void *arg) {
  assert_int_equal(np_blocking(counted_job, arg), 0);
  atomic_fetch_add(&g_jobs_done, 1);
}

static void test_blocking_jobs_queue(void **state) {
  (void)state;
  np_poller *p = poller_procs(2);
  static qjob jobs[QUEUED_JOBS];
  atomic_store(&g_jobs_running, 0);
  atomic_store(&g_jobs_peak, 0);
  atomic_store(&g_jobs_done, 0);
  for (int i = 0; i < QUEUED_JOBS; i++) {
    jobs[i] = (qjob){.in = i, .out = -1};
    assert_int_equal(np_go(p, queued_job_task, &jobs[i]), 0);
  }
  assert_int_equal(np_wait_tasks(p, np_deadline_after(10000 * MS)), 0); /* a lost job: NP_ETIMEOUT */
  assert_int_equal(atomic_load(&g_jobs_done), QUEUED_JOBS);
  for (int i = 0; i < QUEUED_JOBS; i++) assert_int_equal(jobs[i].out, i * 3);
  assert_true(atomic_load(&g_jobs_peak) <= 64);
  assert_true(atomic_load(&g_jobs_peak) >= 2); /* jobs did run side by side */
  np_poller_destroy(p);
}

/* Two jobs started back to back while one helper sits idle: each gets a
 * helper of its own at once (the idle one is taken by the first), so a job
 * that waits for the other's result finishes. A helper that was signalled
 * but had not woken yet used to count as idle for the second job too: both
 * queued behind it, and the first waited for ever for the second. */
static atomic_int g_pair_flag;

static void waits_for_pair(void *arg) {
  int *got = arg;
  for (int i = 0; i < 2000 && !atomic_load(&g_pair_flag); i++) usleep(1000); /* 2 s at most */
  *got = atomic_load(&g_pair_flag);
}

static void sets_pair_flag(void *arg) {
  (void)arg;
  atomic_store(&g_pair_flag, 1);
}

static void pair_waiter_task(void *arg) { assert_int_equal(np_blocking(waits_for_pair, arg), 0); }

static void pair_setter_task(void *arg) { assert_int_equal(np_blocking(sets_pair_flag, arg), 0); }

static void test_blocking_jobs_run_side_by_side(void **state) {
  (void)state;
  np_poller *p = poller_procs(1);
  for (int round = 0; round < 5; round++) {
    atomic_store(&g_pair_flag, 0);
    assert_int_equal(np_go(p, pair_setter_task, NULL), 0); /* starts the helpers */
    assert_int_equal(np_wait_tasks(p, 0), 0);
    usleep(20 * 1000); /* every helper back waiting, idle */
    atomic_store(&g_pair_flag, 0);
    int got = -1;
    assert_int_equal(np_go(p, pair_waiter_task, &got), 0); /* one scheduler: both park at once */
    assert_int_equal(np_go(p, pair_setter_task, NULL), 0);
    assert_int_equal(np_wait_tasks(p, 0), 0);
    assert_int_equal(got, 1);
  }
  np_poller_destroy(p);
}

/* np_wait_tasks with a deadline: NP_ETIMEOUT while a task still runs, not
 * before the deadline; the tasks are untouched and a later wait sees them
 * finish. */
static void sleeps_200ms(void *arg) {
  (void)arg;
  assert_int_equal(np_sleep(200 * MS), 0);
}

static void test_wait_tasks_deadline(void **state) {
  (void)state;
  np_poller *p = poller_procs(1);
  assert_int_equal(np_go(p, sleeps_200ms, NULL), 0);
  int64_t start = np_now();
  assert_int_equal(np_wait_tasks(p, start + 20 * MS), NP_ETIMEOUT);
  int64_t waited = np_now() - start;
  assert_true(waited >= 20 * MS);
  np_stats st;
  np_poller_stats(p, &st);
  assert_int_equal(st.tasks, 1);
  assert_int_equal(np_wait_tasks(p, np_now() - 1), NP_ETIMEOUT); /* already passed */
  assert_int_equal(np_wait_tasks(p, 0), 0);
  assert_true(np_now() - start >= 200 * MS);
  np_poller_stats(p, &st);
  assert_int_equal(st.tasks, 0);
  np_poller_destroy(p);
}

/* Every thread waiting for the tasks wakes when the last one ends: three
 * plain threads in np_wait_tasks without a deadline (a wake-up for one
 * waiter only would leave two asleep for ever). Bounded: a waiter still
 * asleep after 5 s fails the test instead of hanging it. */
typedef struct tasks_waiter {
  np_poller *p;
  atomic_int *returned;
  int ret;
} tasks_waiter;

static void *wait_tasks_thread(void *arg) {
  tasks_waiter *w = arg;
  w->ret = np_wait_tasks(w->p, 0);
  atomic_fetch_add(w->returned, 1);
  return NULL;
}

static void test_wait_tasks_many_waiters(void **state) {
  (void)state;
  np_poller *p = poller_procs(1);
  atomic_int returned = 0;
  tasks_waiter w[3];
  pthread_t th[3];
  assert_int_equal(np_go(p, sleeps_200ms, NULL), 0);
  for (int i = 0; i < 3; i++) {
    w[i] = (tasks_waiter){p, &returned, -1};
    assert_int_equal(pthread_create(&th[i], NULL, wait_tasks_thread, &w[i]), 0);
  }
  int64_t give_up = np_now() + 5000 * MS;
  while (atomic_load(&returned) < 3 && np_now() < give_up) usleep(1000);
  if (atomic_load(&returned) < 3)
    fail_msg("%d of 3 threads in np_wait_tasks still asleep after the last task ended",
             3 - atomic_load(&returned));
  for (int i = 0; i < 3; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(w[i].ret, 0);
  }
  np_poller_destroy(p);
}

/* A task still running at np_poller_destroy cannot leave a descriptor
 * behind: once destroy has begun, np_socketpair (np_open) and np_listen
 * refuse with NP_ECLOSING, and destroy finishes with nothing open. */
static int g_open_at_shutdown[3];

static void opens_at_shutdown(void *arg) {
  (void)arg;
  g_open_at_shutdown[0] = np_sleep(3600 * 1000 * MS); /* cut by destroy */
  np_fd *pair[2] = {NULL, NULL}, *l = NULL;
  g_open_at_shutdown[1] = np_socketpair(np_current(), pair);
  g_open_at_shutdown[2] = np_listen(np_current(), "tcp", "127.0.0.1:0", &l);
  if (pair[0] != NULL || pair[1] != NULL || l != NULL) g_open_at_shutdown[0] = -1000;
}

static void test_no_open_after_shutdown(void **state) {
  (void)state;
  np_poller *p = poller_procs(2);
  assert_int_equal(np_go(p, opens_at_shutdown, NULL), 0);
  usleep(20 * 1000);
  np_poller_destroy(p);
  assert_int_equal(g_open_at_shutdown[0], NP_ECLOSING);
  assert_int_equal(g_open_at_shutdown[1], NP_ECLOSING);
  assert_int_equal(g_open_at_shutdown[2], NP_ECLOSING);
}

/* np_sleep(0) and a negative sleep yield (netpoll.h): a task that waits for
 * another task of its scheduler with np_sleep(0) lets it run. Bounded: a
 * sleep that returned without yielding shows as a waiter that gave up. */
static atomic_int g_sleep0_flag;

static void sets_flag(void *arg) {
  (void)arg;
  atomic_store(&g_sleep0_flag, 1);
}

static void waits_with_sleep0(void *arg) {
  int *turns = arg;
  assert_int_equal(np_go(np_current(), sets_flag, NULL), 0); /* the same scheduler: ours */
  for (*turns = 0; !atomic_load(&g_sleep0_flag) && *turns < 100000; ++*turns)
    assert_int_equal(np_sleep(*turns % 2 == 0 ? 0 : -5), 0);
}

static void test_sleep_zero_yields(void **state) {
  (void)state;
  np_poller *p = poller_procs(1);
  atomic_store(&g_sleep0_flag, 0);
  int turns = -1;
  assert_int_equal(np_go(p, waits_with_sleep0, &turns), 0);
  assert_int_equal(np_wait_tasks(p, 0), 0);
  np_poller_destroy(p);
  assert_int_equal(atomic_load(&g_sleep0_flag), 1);
  assert_true(turns >= 1 && turns < 100000);
}

/* np_go refused at shutdown gives its stack back: a task cut out of its
 * sleep by destroy tries to start 200 more, and once destroy returns every
 * stack the group mapped is unmapped (the test build counts them; LSan
 * does not see mmap, and /proc/self/maps merges neighbouring stacks). */
static void starts_at_shutdown(void *arg) {
  int *refused = arg;
  (void)np_sleep(3600 * 1000 * MS); /* cut by destroy */
  for (int i = 0; i < 200; i++) *refused += np_go(np_current(), count_task, NULL) == NP_ECLOSING;
}

static void test_go_refused_keeps_no_stack(void **state) {
  (void)state;
  long before = __atomic_load_n(&np__test_stacks_mapped, __ATOMIC_RELAXED);
  np_poller *p = poller_procs(1);
  int refused = 0;
  assert_int_equal(np_go(p, starts_at_shutdown, &refused), 0);
  usleep(20 * 1000);
  assert_int_equal(__atomic_load_n(&np__test_stacks_mapped, __ATOMIC_RELAXED), before + 1);
  np_poller_destroy(p);
  assert_int_equal(refused, 200);
  assert_int_equal(__atomic_load_n(&np__test_stacks_mapped, __ATOMIC_RELAXED), before);
}

/* ---- stack overflow ----------------------------------------------------------------- */

static volatile int g_depth_limit = 1 << 30; /* never reached: the guard page is */

static int recurse(volatile char *prev, int depth) {
  volatile char frame[512];
  frame[0] = (char)depth;
  if (prev != NULL) frame[1] = prev[0];
  if (depth >= g_depth_limit) return 0;
  return recurse(frame, depth + 1) + frame[0];
}

static void overflow_task(void *arg) {
  (void)arg;
  np_task_name("deep-recursion, named at length: 45 chars..."); /* cut to 31 bytes and a NUL */
  recurse(NULL, 0);
}

static void die_overflow(void *arg) {
  (void)arg;
  np_poller *p = poller_procs(1);
  np_go(p, overflow_task, NULL);
  np_wait_tasks(p, 0);
}

static void test_stack_overflow_reported(void **state) {
  (void)state;
  th_expect_panic(die_overflow, NULL, "stack overflow in task 1 'deep-recursion, named at length' (fn ");
}

/* ---- np_blocking's function waiting for its own task ------------------------------ */
/* Its task is parked until the function returns: waiting for the poller's
 * tasks from there would wait for itself (found from outside: it hung). */

static np_poller *g_self_poller;
static int g_self_wait;

static void wait_own_tasks(void *arg) {
  (void)arg;
  g_self_wait = np_wait_tasks(g_self_poller, 0);
}

static void destroy_own_poller(void *arg) {
  (void)arg;
  np_poller_destroy(g_self_poller);
}

static void blocking_job_task(void *arg) { assert_int_equal(np_blocking((np_task_fn)arg, NULL), 0); }

static void test_blocking_waits_for_own_tasks(void **state) {
  (void)state;
  g_self_poller = poller_procs(2);
  g_self_wait = 1;
  assert_int_equal(np_go(g_self_poller, blocking_job_task, (void *)wait_own_tasks), 0);
  assert_int_equal(np_wait_tasks(g_self_poller, 0), 0);
  assert_int_equal(g_self_wait, -EDEADLK);
  np_poller_destroy(g_self_poller);
}

static void die_destroy_from_blocking(void *arg) {
  (void)arg;
  g_self_poller = poller_procs(1);
  np_go(g_self_poller, blocking_job_task, (void *)destroy_own_poller);
  np_wait_tasks(g_self_poller, np_deadline_after(5000 * MS));
}

static void test_blocking_destroys_own_poller(void **state) {
  (void)state;
  th_expect_panic(die_destroy_from_blocking, NULL, "np_poller_destroy called from np_blocking's function");
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* writers woken by the peer's close get EPIPE */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_many_tasks),
      cmocka_unit_test(test_default_procs_follow_affinity),
      cmocka_unit_test(test_tasks_start_tasks),
      cmocka_unit_test(test_ping_pong),
      cmocka_unit_test(test_blocked_tasks_closed),
      cmocka_unit_test(test_task_deadline),
      cmocka_unit_test(test_deadline_passes_while_yielding),
      cmocka_unit_test(test_thread_wakes_task),
      cmocka_unit_test(test_accepted_connections_spread),
      cmocka_unit_test(test_stale_handle_keeps_new_claim),
      cmocka_unit_test(test_sleep_order),
      cmocka_unit_test(test_yield_interleaves),
      cmocka_unit_test(test_blocking_offload),
      cmocka_unit_test(test_blocking_jobs_queue),
      cmocka_unit_test(test_blocking_jobs_run_side_by_side),
      cmocka_unit_test(test_blocking_waits_for_own_tasks),
      cmocka_unit_test(test_blocking_destroys_own_poller),
      cmocka_unit_test(test_wait_tasks_deadline),
      cmocka_unit_test(test_wait_tasks_many_waiters),
      cmocka_unit_test(test_no_open_after_shutdown),
      cmocka_unit_test(test_sleep_zero_yields),
      cmocka_unit_test(test_go_refused_keeps_no_stack),
      cmocka_unit_test(test_spinner_does_not_starve_inbox),
      cmocka_unit_test(test_idle_scheduler_sleeps),
      cmocka_unit_test(test_shutdown_wakes_parked),
      cmocka_unit_test(test_shutdown_pairs_closing_not_eof),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_np_run),
      cmocka_unit_test(test_stack_overflow_reported),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
