/*
 * task_scale.c - np_task_scale: TASKS tasks parked in np_read on up to PAIRS
 * socket pairs (both ends), then every task woken by one byte and finished.
 * With fewer descriptors than tasks (RLIMIT_NOFILE), the tasks of one
 * descriptor park one on its pollDesc and the rest queued on its fd mutex:
 * parked all the same. Checks that every task parked (on a pollDesc or in
 * the read-lock queue: np_stats.tasks stays TASKS while waiters_parked is
 * the descriptor count), that every task read its byte, and the memory
 * bound it states: the resident memory the parked tasks add, divided by the
 * task count, stays under the bound (a touched stack page and the
 * task record at its top; the kernel's socket buffers are not in RSS).
 *
 *   np_task_scale [TASKS (default 100000)] [PAIRS (default 50000)] [PROCS (default 2)]
 *                 [BOUND_BYTES_PER_TASK (default 8192: two pages)]
 *
 * Prints one line with the figures. Exit 0 pass, 1 fail.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netpoll.h"

typedef struct reader {
  np_fd *f;
  _Atomic int got;
} reader;

static _Atomic long g_ok, g_started;

static void reader_task(void *arg) {
  reader *r = arg;
  char c;
  atomic_fetch_add(&g_started, 1);
  if (np_read(r->f, &c, 1) == 1 && c == 'w') atomic_fetch_add(&g_ok, 1);
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f != NULL && fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "VmRSS: %ld kB", &v) == 1) break;
  if (f != NULL) fclose(f);
  return v;
}

/* Raises the soft descriptor limit as far as allowed; returns it. */
static long fd_limit(rlim_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  rlim_t cur = rl.rlim_cur;
  rl.rlim_cur = want;
  if (rl.rlim_max < want) rl.rlim_max = want; /* with CAP_SYS_RESOURCE */
  if (setrlimit(RLIMIT_NOFILE, &rl) == 0) return (long)want;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return (long)cur;
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) == 0) return (long)rl.rlim_max;
  return (long)cur;
}

static int fail(const char *what, int err) {
  fprintf(stderr, "np_task_scale: %s: %s\n", what, np_strerror(err));
  return 1;
}

int main(int argc, char **argv) {
  long tasks = argc > 1 ? atol(argv[1]) : 100000;
  long pairs = argc > 2 ? atol(argv[2]) : 50000;
  int procs = argc > 3 ? atoi(argv[3]) : 2;
  long bound = argc > 4 ? atol(argv[4]) : 8192;
  if (tasks < 2 || pairs < 1 || procs < 1)
    return fail("usage: np_task_scale [TASKS] [PAIRS] [PROCS]", -EINVAL);
  long limit = fd_limit((rlim_t)(2 * pairs + 64));
  if (2 * pairs + 64 > limit) pairs = (limit - 64) / 2;
  if (2 * pairs > tasks) pairs = tasks / 2;
  if (pairs < 1) return fail("descriptor limit too low", -EMFILE);
  long nfd = 2 * pairs;
  reader *r = calloc((size_t)nfd, sizeof(*r));
  np_poller *p;
  np_options o = {.procs = procs};
  int err = np_poller_create(&p, &o);
  if (r == NULL || err != 0) return fail("setup", err != 0 ? err : -ENOMEM);
  for (long i = 0; i < pairs; i++) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return fail("socketpair", -errno);
    if ((err = np_open(p, fds[0], &r[2 * i].f)) != 0 || (err = np_open(p, fds[1], &r[2 * i + 1].f)) != 0)
      return fail("np_open", err);
  }
  long rss0 = rss_kib();
  int64_t t0 = np_now();
  for (long i = 0; i < tasks; i++)
    if ((err = np_go(p, reader_task, &r[i % nfd])) != 0) return fail("np_go", err);
  np_stats st;
  for (int spin = 0;; spin++) { /* every task started and parked: one per descriptor on its pd */
    np_poller_stats(p, &st);
    if (atomic_load(&g_started) == tasks && st.waiters_parked == (uint64_t)nfd) break;
    if (spin > 60000) return fail("tasks did not all park within 60 s", -ETIMEDOUT);
    usleep(1000);
  }
  usleep(100000); /* the last ones reach the read-lock queue */
  np_poller_stats(p, &st);
  if (st.tasks != (uint64_t)tasks || st.waiters_parked != (uint64_t)nfd || atomic_load(&g_ok) != 0)
    return fail("not every task is parked", -EIO);
  int64_t t_parked = np_now();
  long rss1 = rss_kib();
  for (long i = 0; i < tasks; i++) { /* one byte per reader, written on the peer */
    size_t w;
    if ((err = np_write(r[(i % nfd) ^ 1].f, "w", 1, &w)) != 0) return fail("np_write", err);
  }
  if ((err = np_wait_tasks(p, np_deadline_after(120 * INT64_C(1000000000)))) != 0)
    return fail("np_wait_tasks", err);
  int64_t t_done = np_now();
  np_poller_destroy(p); /* frees every handle */
  free(r);
  double per_task = (double)(rss1 - rss0) * 1024.0 / (double)tasks;
  printf(
      "np_task_scale: tasks=%ld fds=%ld procs=%d park_s=%.2f wake_finish_s=%.2f rss_parked_kib=%ld "
      "bytes_per_parked_task=%.0f bound=%ld ok=%ld\n",
      tasks, nfd, procs, (double)(t_parked - t0) / 1e9, (double)(t_done - t_parked) / 1e9, rss1 - rss0,
      per_task, bound, atomic_load(&g_ok));
  if (atomic_load(&g_ok) != tasks) return fail("not every task read its byte", -EIO);
  if (per_task > (double)bound) return fail("memory per parked task over the bound", -ENOMEM);
  return 0;
}
