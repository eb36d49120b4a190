/*
 * runtime_native.c - the native waiter runtime: waiters are OS threads
 * parked on a futex, a poller thread runs np__poll_once (readiness and
 * deadline timers) until shutdown, and the port seam's native primitives.
 *
 * It must never busy-poll (the poller sleeps in epoll_wait until the next
 * timer or a break), and shutdown must leave nothing behind: every fd
 * closed, the thread joined, all memory freed.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "np_internal.h"

/* ---- port: mutex, park, semaphore, clock ----------------------------------- */

void np__mutex_init(np__mutex *m) {
  if (pthread_mutex_init(m, NULL) != 0) NP_PANIC("pthread_mutex_init failed");
}
void np__mutex_destroy(np__mutex *m) {
  if (pthread_mutex_destroy(m) != 0) NP_PANIC("mutex destroyed while held");
}
void np__mutex_lock(np__mutex *m) {
  if (pthread_mutex_lock(m) != 0) NP_PANIC("pthread_mutex_lock failed");
}
void np__mutex_unlock(np__mutex *m) {
  if (pthread_mutex_unlock(m) != 0) NP_PANIC("pthread_mutex_unlock failed");
}

static void futex_wait(np__au32 *word, uint32_t expected) {
  /* EAGAIN (value changed), EINTR and spurious wake-ups: the caller loops. */
  (void)syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake(np__au32 *word, int count) {
  /* The word may belong to a waiter that has already returned: a wake on a
   * dead stack slot wakes nobody, or causes a spurious wake-up that every
   * futex waiter tolerates by re-checking its word. */
  (void)syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

void np__waiter_init(np__waiter *w, const void *pd, int mode) {
  atomic_init(&w->signaled, 0);
  w->pd = pd;
  w->mode = mode;
}

#ifdef NP_TEST_HOOKS
void (*np__test_hook_before_commit)(np__waiter *w);
#endif

void np__park(np__waiter *w, bool (*commit)(np__waiter *w, void *arg), void *arg) {
#ifdef NP_TEST_HOOKS
  if (np__test_hook_before_commit != NULL) np__test_hook_before_commit(w);
#endif
  if (!commit(w, arg)) return;
  while (atomic_load(&w->signaled) == 0) futex_wait(&w->signaled, 0);
}

void np__unpark(np__waiter *w) {
  uint32_t was = atomic_exchange(&w->signaled, 1);
  if (was != 0) NP_PANIC("double unpark (I2)");
  futex_wake(&w->signaled, 1);
}

void np__sema_acquire(np__sema *s) {
  for (;;) {
    uint32_t v = atomic_load(s);
    if (v > 0) {
      if (atomic_compare_exchange_weak(s, &v, v - 1)) return;
      continue;
    }
    futex_wait(s, 0);
  }
}

void np__sema_release(np__sema *s) {
  atomic_fetch_add(s, 1);
  futex_wake(s, 1);
}

int64_t np__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- public clock helpers ------------------------------------------------------ */

int64_t np_now(void) { return np__now(); }

int64_t np_deadline_after(int64_t delay_ns) {
  int64_t now = np__now();
  if (delay_ns <= 0) return now > 1 ? now - 1 : 1; /* already passed, never 0 */
  if (delay_ns > INT64_MAX - now) return INT64_MAX;
  return now + delay_ns;
}

/* ---- poller thread ----------------------------------------------------------- */

typedef struct native_runtime {
  pthread_t thread;
  bool threaded; /* false for np__poller_new(..., false): the caller polls */
} native_runtime;

static void *poller_main(void *arg) {
  np_poller *p = arg;
  while (!np__load_u32(&p->shutdown)) {
    int n = np__poll_once(p, true);
    if (n < 0) break; /* np__netpoll put the poller in the failed state (NP_EPOLLER) */
  }
  return NULL;
}

int np_poller_create(np_poller **out, const np_options *opts) {
  if (out == NULL) return -EINVAL;
  *out = NULL;
  int events_max = opts != NULL ? opts->events_max : 0;
  return np__poller_new(out, &np__backend_epoll, events_max, true);
}

int np__poller_new(np_poller **out, const np__backend *backend, int events_max, bool threaded) {
  *out = NULL;
  if (events_max < 0 || events_max > NP__EVENTS_MAX) return -EINVAL;
  np_poller *p = malloc(sizeof(*p));
  native_runtime *rt = malloc(sizeof(*rt));
  if (p == NULL || rt == NULL) {
    free(p);
    free(rt);
    return -ENOMEM;
  }
  int err = np__poller_init(p, backend, events_max);
  if (err != 0) {
    free(p);
    free(rt);
    return err;
  }
  p->runtime = rt;
  rt->threaded = threaded;
  err = threaded ? pthread_create(&rt->thread, NULL, poller_main, p) : 0;
  if (err != 0) {
    np__poller_fini(p);
    free(p);
    free(rt);
    return -err;
  }
  *out = p;
  return 0;
}

void np_poller_destroy(np_poller *p) {
  if (p == NULL) return;
  np__store_u32(&p->shutdown, 1); /* np_open refuses from now on */
  np__fd_free_all(p);             /* closes: blocked and queued threads wake with NP_ECLOSING */
  native_runtime *rt = p->runtime;
  if (rt->threaded) {
    np__netpoll_break(p);
    /* A failed break cannot wake the thread: cancel it (its only
     * cancellation point is epoll_wait, where it holds no lock). */
    if (np__load_u32(&p->failed)) pthread_cancel(rt->thread);
    pthread_join(rt->thread, NULL);
  }
  np__poller_fini(p);
  free(rt);
  free(p);
}

void np_poller_stats(np_poller *p, np_stats *out) {
  if (p == NULL || out == NULL) return;
  memset(out, 0, sizeof(*out));
  out->fds_open = np__load_u64(&p->stat_fds_open);
  out->waiters_parked = np__load_u32(&p->waiters);
  out->polls = np__load_u64(&p->stat_polls);
  out->breaks = np__load_u64(&p->stat_breaks);
  out->timers_fired = np__load_u64(&p->stat_timers);
  out->pd_allocated = np__load_u64(&p->stat_pds);
}
