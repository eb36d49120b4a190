/*
 * micro.c - micro benchmarks of the netpoll runtime against raw baselines in
 * the same process:
 *
 *   wake      data written -> the parked reader running again (ns, percentiles):
 *             np_read on a registered pipe, by a thread (impl netpoll) and by a
 *             task of a one-scheduler poller whose thread sleeps in epoll_wait
 *             (impl netpoll_task, Go's case: a goroutine and an idle P), vs a
 *             thread blocked in read(2) on a blocking pipe vs a thread blocked
 *             in epoll_wait.
 *   pingpong  two threads bouncing one byte over two pipes (round trips/s):
 *             np_read/np_write vs blocking read(2)/write(2).
 *   openclose pipe2 + np_open x2 + np_close/np_free x2 (pairs/s) vs pipe2 +
 *             epoll_ctl ADD x2 + close x2.
 *   tasks     task park/unpark round trips/s on one scheduler (park, ready,
 *             two switches), and pingpong between two tasks (impl netpoll_tasks).
 *   deadline  np_set_deadline calls/s on one descriptor, and round-robin over
 *             1000 descriptors that all have a deadline armed.
 *
 *   np_bench_micro [SECONDS_PER_TIMED_TEST] [WAKE_ITERATIONS] [TESTS]
 *
 * TESTS is a comma-separated subset of wake,pingpong,openclose,deadline
 * (default: all).
 *
 * Output: one "micro name=... impl=... key=value ..." line per figure.
 * The writer of the wake test waits until the reader thread is asleep
 * (state S in /proc/self/task/TID/stat, and for netpoll a parked waiter in
 * np_poller_stats) before it takes the start time, so every sample is a
 * real wake-up of a sleeping thread, never a thread that was still running.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "task.h" /* np__task_park / np__task_ready for the park/unpark micro benchmark */

static double g_seconds = 1.0;
static int g_wake_iterations = 5000;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void check(bool ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "micro: %s failed: %s\n", what, strerror(errno));
    exit(1);
  }
}

static void check_np(int err, const char *what) {
  if (err != 0) {
    fprintf(stderr, "micro: %s failed: %s\n", what, np_strerror(err));
    exit(1);
  }
}

static void make_pipe(int fds[2], int flags) { check(pipe2(fds, O_CLOEXEC | flags) == 0, "pipe2"); }

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* ---- wake latency --------------------------------------------------------------- */

enum { WAKE_RAW_READ, WAKE_RAW_EPOLL, WAKE_NETPOLL, WAKE_NETPOLL_TASK };

typedef struct wake_ctx {
  int kind;
  int data_r, data_w; /* the pipe the reader sleeps on */
  int done_r, done_w; /* the reader sends its wake time back here */
  int ep;             /* WAKE_RAW_EPOLL */
  np_poller *poller;  /* WAKE_NETPOLL */
  np_fd *data_np;     /* WAKE_NETPOLL: data_r registered */
  _Atomic int tid;    /* the reader's thread (a task's: its scheduler's) */
  _Atomic int ended;  /* WAKE_NETPOLL_TASK: the reader task has returned */
} wake_ctx;

static void *wake_reader(void *arg) {
  wake_ctx *w = arg;
  atomic_store(&w->tid, (int)syscall(SYS_gettid));
  char b;
  for (;;) {
    ssize_t n;
    if (w->kind == WAKE_RAW_READ) {
      n = read(w->data_r, &b, 1);
    } else if (w->kind == WAKE_RAW_EPOLL) {
      struct epoll_event ev;
      int k;
      do k = epoll_wait(w->ep, &ev, 1, -1);
      while (k < 0 && errno == EINTR);
      n = read(w->data_r, &b, 1);
    } else {
      n = np_read(w->data_np, &b, 1);
    }
    int64_t t1 = now_ns();
    if (n != 1) break; /* EOF or close: done */
    check(write(w->done_w, &t1, sizeof(t1)) == (ssize_t)sizeof(t1), "write done");
  }
  return NULL;
}

static void wake_task(void *arg) {
  wake_ctx *w = arg;
  (void)wake_reader(w);
  atomic_store(&w->ended, 1);
}

/* True when thread tid is asleep (S) in the kernel. */
static bool thread_sleeping(int tid) {
  char path[64], buf[256];
  snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  return p != NULL && p[1] == ' ' && p[2] == 'S';
}

static void report_percentiles(const char *name, const char *impl, int64_t *s, int n) {
  qsort(s, (size_t)n, sizeof(*s), cmp_i64);
  printf("micro name=%s impl=%s n=%d p50_ns=%lld p90_ns=%lld p99_ns=%lld\n", name, impl, n,
         (long long)s[n / 2], (long long)s[n * 9 / 10], (long long)s[n * 99 / 100]);
  fflush(stdout);
}

static void bench_wake(int kind, const char *impl) {
  wake_ctx w = {.kind = kind};
  bool lib = kind == WAKE_NETPOLL || kind == WAKE_NETPOLL_TASK;
  int data[2], done[2];
  make_pipe(data, 0);
  make_pipe(done, 0);
  w.data_r = data[0];
  w.data_w = data[1];
  w.done_r = done[0];
  w.done_w = done[1];
  if (kind == WAKE_RAW_EPOLL) {
    check(fcntl(w.data_r, F_SETFL, O_NONBLOCK) == 0, "fcntl");
    w.ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = w.data_r};
    check(w.ep >= 0 && epoll_ctl(w.ep, EPOLL_CTL_ADD, w.data_r, &ev) == 0, "epoll");
  } else if (lib) {
    np_options one = {.procs = 1}; /* the task's scheduler is the thread that polls */
    check_np(np_poller_create(&w.poller, kind == WAKE_NETPOLL_TASK ? &one : NULL), "np_poller_create");
    check_np(np_open(w.poller, w.data_r, &w.data_np), "np_open");
  }
  pthread_t t;
  if (kind == WAKE_NETPOLL_TASK)
    check_np(np_go(w.poller, wake_task, &w), "np_go");
  else
    check(pthread_create(&t, NULL, wake_reader, &w) == 0, "pthread_create");
  while (atomic_load(&w.tid) == 0) sched_yield();
  int tid = atomic_load(&w.tid);

  int n = g_wake_iterations;
  int64_t *samples = malloc((size_t)n * sizeof(*samples));
  check(samples != NULL, "malloc");
  for (int i = 0; i < n; i++) {
    for (;;) {
      if (lib) {
        np_stats st;
        np_poller_stats(w.poller, &st);
        if (st.waiters_parked != 1) continue;
      }
      if (thread_sleeping(tid)) break;
    }
    char b = 'x';
    int64_t t0 = now_ns();
    check(write(w.data_w, &b, 1) == 1, "write");
    int64_t t1;
    check(read(w.done_r, &t1, sizeof(t1)) == (ssize_t)sizeof(t1), "read done");
    samples[i] = t1 - t0;
  }
  close(w.data_w); /* EOF ends the reader */
  if (kind == WAKE_NETPOLL_TASK)
    while (!atomic_load(&w.ended)) sched_yield();
  else
    pthread_join(t, NULL);
  report_percentiles("wake", impl, samples, n);
  free(samples);
  if (lib) {
    np_free(w.data_np);
    np_poller_destroy(w.poller);
  } else {
    close(w.data_r);
  }
  if (kind == WAKE_RAW_EPOLL) close(w.ep);
  close(w.done_r);
  close(w.done_w);
}

/* ---- ping-pong: park/unpark round trips --------------------------------------------- */

typedef struct pp_ctx {
  bool lib;
  int a2b[2], b2a[2];
  np_fd *a_w, *a_r, *b_r, *b_w; /* lib: a writes a2b, reads b2a; b the opposite */
} pp_ctx;

static ssize_t pp_read(pp_ctx *c, np_fd *f, int fd, char *b) {
  return c->lib ? np_read(f, b, 1) : read(fd, b, 1);
}

static bool pp_write(pp_ctx *c, np_fd *f, int fd, const char *b) {
  return c->lib ? np_write(f, b, 1, NULL) == 0 : write(fd, b, 1) == 1;
}

static void *pp_b(void *arg) {
  pp_ctx *c = arg;
  char b;
  while (pp_read(c, c->b_r, c->a2b[0], &b) == 1) {
    if (!pp_write(c, c->b_w, c->b2a[1], &b)) break;
  }
  return NULL;
}

static void bench_pingpong(bool lib, const char *impl) {
  pp_ctx c = {.lib = lib};
  make_pipe(c.a2b, 0);
  make_pipe(c.b2a, 0);
  np_poller *p = NULL;
  if (lib) {
    check_np(np_poller_create(&p, NULL), "np_poller_create");
    check_np(np_open(p, c.a2b[1], &c.a_w), "np_open");
    check_np(np_open(p, c.b2a[0], &c.a_r), "np_open");
    check_np(np_open(p, c.a2b[0], &c.b_r), "np_open");
    check_np(np_open(p, c.b2a[1], &c.b_w), "np_open");
  }
  pthread_t t;
  check(pthread_create(&t, NULL, pp_b, &c) == 0, "pthread_create");
  uint64_t rounds = 0;
  int64_t start = now_ns(), end = start + (int64_t)(g_seconds * 1e9), now = start;
  char b = 'x';
  while (now < end) {
    for (int i = 0; i < 256; i++) {
      check(pp_write(&c, c.a_w, c.a2b[1], &b), "ping write");
      check(pp_read(&c, c.a_r, c.b2a[0], &b) == 1, "ping read");
    }
    rounds += 256;
    now = now_ns();
  }
  double secs = (double)(now - start) / 1e9;
  if (lib) {
    np_free(c.a_w); /* EOF for b */
    pthread_join(t, NULL);
    np_free(c.a_r);
    np_free(c.b_r);
    np_free(c.b_w);
    np_poller_destroy(p);
  } else {
    close(c.a2b[1]);
    pthread_join(t, NULL);
    close(c.a2b[0]);
    close(c.b2a[0]);
    close(c.b2a[1]);
  }
  printf("micro name=pingpong impl=%s per_s=%.0f\n", impl, (double)rounds / secs);
  fflush(stdout);
}

/* ---- tasks: park/unpark and ping-pong on one scheduler ------------------------------ */

typedef struct sw_ctx {
  np__task *parked; /* A, once it has parked */
  uint64_t rounds, limit;
} sw_ctx;

static bool park_commit(void *arg) {
  (void)arg;
  return true;
}

/* A parks; B (the same scheduler) makes it ready and yields to it: one
 * park/unpark round trip is a park, a ready and two switches. */
static void sw_a(void *arg) {
  sw_ctx *c = arg;
  while (c->rounds < c->limit) {
    c->parked = np__tls_task();
    np__task_park(park_commit, NULL);
  }
  c->parked = NULL;
}

static void sw_b(void *arg) {
  sw_ctx *c = arg;
  while (c->rounds < c->limit) {
    if (c->parked != NULL) {
      np__task *a = c->parked;
      c->parked = NULL;
      c->rounds++;
      np__task_ready(a);
    }
    np_yield();
  }
  if (c->parked != NULL) np__task_ready(c->parked);
}

static void bench_task_switch(void) {
  np_poller *p = NULL;
  np_options o = {.procs = 1};
  check_np(np_poller_create(&p, &o), "np_poller_create");
  sw_ctx c = {.limit = (uint64_t)(g_seconds * 2e7)};
  int64_t start = now_ns();
  check_np(np_go(p, sw_a, &c), "np_go");
  check_np(np_go(p, sw_b, &c), "np_go");
  check_np(np_wait_tasks(p, 0), "np_wait_tasks");
  double secs = (double)(now_ns() - start) / 1e9;
  np_poller_destroy(p);
  printf("micro name=task_park_unpark impl=netpoll per_s=%.0f\n", (double)c.rounds / secs);
  fflush(stdout);
}

typedef struct tpp {
  np_fd *r, *w;
  uint64_t rounds;
  int64_t end;
  bool ping;
} tpp;

static void tpp_main(void *arg) {
  tpp *t = arg;
  char b = 'x';
  for (;;) {
    if (t->ping) {
      if (now_ns() >= t->end) break;
      if (np_write(t->w, &b, 1, NULL) != 0 || np_read(t->r, &b, 1) != 1) break;
      t->rounds++;
    } else {
      if (np_read(t->r, &b, 1) != 1 || np_write(t->w, &b, 1, NULL) != 0) break;
    }
  }
  if (t->ping) np_close(t->w); /* EOF for the pong task */
}

/* As pingpong, with both sides tasks of one scheduler: every wake goes
 * through epoll, no futex, no thread switch. */
static void bench_task_pingpong(void) {
  np_poller *p = NULL;
  np_options o = {.procs = 1};
  check_np(np_poller_create(&p, &o), "np_poller_create");
  int a2b[2], b2a[2];
  make_pipe(a2b, 0);
  make_pipe(b2a, 0);
  tpp a = {.ping = true, .end = now_ns() + (int64_t)(g_seconds * 1e9)}, b = {0};
  check_np(np_open(p, a2b[1], &a.w), "np_open");
  check_np(np_open(p, b2a[0], &a.r), "np_open");
  check_np(np_open(p, a2b[0], &b.r), "np_open");
  check_np(np_open(p, b2a[1], &b.w), "np_open");
  int64_t start = now_ns();
  check_np(np_go(p, tpp_main, &a), "np_go");
  check_np(np_go(p, tpp_main, &b), "np_go");
  check_np(np_wait_tasks(p, 0), "np_wait_tasks");
  double secs = (double)(now_ns() - start) / 1e9;
  np_poller_destroy(p);
  printf("micro name=pingpong impl=netpoll_tasks per_s=%.0f\n", (double)a.rounds / secs);
  fflush(stdout);
}

/* ---- np_open / np_close ------------------------------------------------------------ */

static void bench_openclose(bool lib, const char *impl) {
  np_poller *p = NULL;
  int ep = -1;
  if (lib)
    check_np(np_poller_create(&p, NULL), "np_poller_create");
  else
    check((ep = epoll_create1(EPOLL_CLOEXEC)) >= 0, "epoll_create1");
  uint64_t pairs = 0;
  int64_t start = now_ns(), end = start + (int64_t)(g_seconds * 1e9), now = start;
  while (now < end) {
    for (int i = 0; i < 256; i++) {
      int fds[2];
      if (lib) {
        make_pipe(fds, 0);
        np_fd *r, *w;
        check_np(np_open(p, fds[0], &r), "np_open");
        check_np(np_open(p, fds[1], &w), "np_open");
        check_np(np_close(r), "np_close");
        check_np(np_close(w), "np_close");
        np_free(r);
        np_free(w);
      } else {
        make_pipe(fds, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
        for (int k = 0; k < 2; k++) check(epoll_ctl(ep, EPOLL_CTL_ADD, fds[k], &ev) == 0, "epoll_ctl");
        close(fds[0]);
        close(fds[1]);
      }
    }
    pairs += 256;
    now = now_ns();
  }
  double secs = (double)(now - start) / 1e9;
  if (lib)
    np_poller_destroy(p);
  else
    close(ep);
  /* Two descriptors per pipe: report descriptor open+close cycles. */
  printf("micro name=openclose impl=%s per_s=%.0f\n", impl, (double)pairs * 2 / secs);
  fflush(stdout);
}

/* ---- deadlines ------------------------------------------------------------------------ */

static void bench_deadline(int nfds) {
  np_poller *p;
  check_np(np_poller_create(&p, NULL), "np_poller_create");
  int npipes = (nfds + 1) / 2;
  np_fd **f = calloc((size_t)npipes * 2, sizeof(*f));
  check(f != NULL, "calloc");
  for (int i = 0; i < npipes; i++) {
    int fds[2];
    make_pipe(fds, 0);
    check_np(np_open(p, fds[0], &f[2 * i]), "np_open");
    check_np(np_open(p, fds[1], &f[2 * i + 1]), "np_open");
  }
  int64_t base = np_now() + INT64_C(60) * 1000000000; /* never fires during the test */
  for (int i = 0; i < nfds; i++) check_np(np_set_deadline(f[i], base + i), "np_set_deadline");
  uint64_t calls = 0;
  int64_t start = now_ns(), end = start + (int64_t)(g_seconds * 1e9), now = start;
  int k = 0;
  while (now < end) {
    for (int i = 0; i < 256; i++) {
      /* A new value every call, so the timer really moves in the heap. */
      check_np(np_set_deadline(f[k], base + (int64_t)((calls + (uint64_t)i) & 4095)), "np_set_deadline");
      if (++k == nfds) k = 0;
    }
    calls += 256;
    now = now_ns();
  }
  double secs = (double)(now - start) / 1e9;
  for (int i = 0; i < npipes * 2; i++) np_free(f[i]);
  free(f);
  np_poller_destroy(p);
  printf("micro name=deadline%d impl=netpoll per_s=%.0f\n", nfds, (double)calls / secs);
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc > 1) g_seconds = atof(argv[1]);
  if (argc > 2) g_wake_iterations = atoi(argv[2]);
  const char *tests = argc > 3 ? argv[3] : "wake,pingpong,tasks,openclose,deadline";
  if (g_seconds <= 0 || g_wake_iterations < 100 || argc > 4) {
    fprintf(stderr,
            "usage: np_bench_micro [SECONDS_PER_TIMED_TEST] [WAKE_ITERATIONS >= 100] [TESTS]\n"
            "  TESTS: comma-separated subset of wake,pingpong,tasks,openclose,deadline\n");
    return 2;
  }
  if (strstr(tests, "wake") != NULL) {
    bench_wake(WAKE_RAW_READ, "raw_read");
    bench_wake(WAKE_RAW_EPOLL, "raw_epoll");
    bench_wake(WAKE_NETPOLL, "netpoll");
    bench_wake(WAKE_NETPOLL_TASK, "netpoll_task");
  }
  if (strstr(tests, "pingpong") != NULL) {
    bench_pingpong(false, "raw");
    bench_pingpong(true, "netpoll");
    bench_task_pingpong();
  }
  if (strstr(tests, "tasks") != NULL) bench_task_switch();
  if (strstr(tests, "openclose") != NULL) {
    bench_openclose(false, "raw");
    bench_openclose(true, "netpoll");
  }
  if (strstr(tests, "deadline") != NULL) {
    bench_deadline(1);
    bench_deadline(1000);
  }
  return 0;
}
