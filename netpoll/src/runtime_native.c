/*
 * runtime_native.c - the native side of the port seam: mutexes, park and
 * unpark for both waiter kinds (a task switches to its scheduler; a plain
 * thread sleeps on a futex), the fd mutex's semaphore, the clock.
 *
 * It must never: make a task runnable before it has switched out (the
 * commit step runs on the scheduler's stack); touch a waiter after the
 * store that lets it return; block a scheduler thread on a futex on behalf
 * of a task.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "np_internal.h"
#include "task.h"

/* ---- mutex ----------------------------------------------------------------- */

void np__mutex_init(np__mutex *m) {
  if (pthread_mutex_init(m, NULL) != 0) NP_PANIC("pthread_mutex_init failed");
}
void np__mutex_destroy(np__mutex *m) {
  if (pthread_mutex_destroy(m) != 0) NP_PANIC("mutex destroyed while held");
}

void np__cond_init(np__cond *c) {
  if (pthread_cond_init(c, NULL) != 0) NP_PANIC("pthread_cond_init failed");
}
void np__cond_destroy(np__cond *c) { (void)pthread_cond_destroy(c); }
void np__cond_wait(np__cond *c, np__mutex *m) {
  if (pthread_cond_wait(c, m) != 0) NP_PANIC("pthread_cond_wait failed");
}
void np__cond_signal(np__cond *c) { (void)pthread_cond_signal(c); }
void np__cond_broadcast(np__cond *c) { (void)pthread_cond_broadcast(c); }

int np__thread_start(np__thread *t, void *(*fn)(void *arg), void *arg) {
  return -pthread_create(t, NULL, fn, arg);
}
void np__thread_join(np__thread t) { (void)pthread_join(t, NULL); }

/* ---- futex ----------------------------------------------------------------- */

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

/* ---- park / unpark (pollDesc waiters) -------------------------------------- */

void np__waiter_init(np__waiter *w, const void *pd, int mode) {
  atomic_init(&w->signaled, 0);
  w->task = NULL;
  w->pd = pd;
  w->mode = mode;
}

#ifdef NP_TEST_HOOKS
void (*np__test_hook_before_commit)(np__waiter *w);
void (*np__test_hook_sema_queued)(void);
#endif

typedef struct park_arg {
  bool (*commit)(np__waiter *w, void *arg);
  np__waiter *w;
  void *arg;
} park_arg;

static bool park_commit(void *arg) {
  park_arg *a = arg;
  return a->commit(a->w, a->arg);
}

void np__park(np__waiter *w, bool (*commit)(np__waiter *w, void *arg), void *arg) {
#ifdef NP_TEST_HOOKS
  if (np__test_hook_before_commit != NULL) np__test_hook_before_commit(w);
#endif
  w->task = np__tls_task();
  if (w->task != NULL) {
    park_arg a = {commit, w, arg};
    np__task_park(park_commit, &a); /* commit runs once we are off this stack */
    return;
  }
  if (!commit(w, arg)) return;
  while (atomic_load(&w->signaled) == 0) futex_wait(&w->signaled, 0);
}

void np__unpark(np__waiter *w) {
  np__task *t = w->task; /* read first: a thread waiter may return at the exchange */
  uint32_t was = atomic_exchange(&w->signaled, 1);
  if (was != 0) NP_PANIC("double unpark (I2)");
  if (t != NULL)
    np__task_ready(t);
  else
    futex_wake(&w->signaled, 1);
}

/* ---- semaphore --------------------------------------------------------------
 * A FIFO of waiters under a spin lock (held for a few instructions, never
 * across a park), with direct hand-off: release gives its unit to the
 * oldest waiter instead of incrementing the count. */

enum { NODE_WAITING = 0, NODE_PARKED = 1, NODE_SIGNALED = 2 };

typedef struct np__sema_node {
  struct np__sema_node *next;
  np__au32 state;
  np__task *task;
} np__sema_node;

static void spin_lock(np__au32 *l) {
  for (int spins = 0; !np__cas_u32(l, 0, 1); spins++)
    if (spins > 64) sched_yield();
}
static void spin_unlock(np__au32 *l) { np__store_u32(l, 0); }

static bool node_commit(void *arg) {
  np__sema_node *n = arg;
  return np__cas_u32(&n->state, NODE_WAITING, NODE_PARKED);
}

/* count is signed: > 0 units available, < 0 minus the threads and tasks
 * that took a unit they did not get (each is, or is about to be, on the
 * queue). A release that finds nobody waiting touches nothing after its
 * add: np_close's csema / np_free's dsema releases are the last touch of a
 * handle the other side may free at once (TSan found the earlier version's
 * lock store after the add). */
void np__sema_acquire(np__sema *s) {
  if ((int32_t)np__add_u32(&s->count, -1) >= 0) return; /* there was a unit */
  np__sema_node n = {NULL, NODE_WAITING, np__tls_task()};
  spin_lock(&s->lock);
  if (s->tail != NULL)
    s->tail->next = &n;
  else
    s->head = &n;
  s->tail = &n;
  spin_unlock(&s->lock);
#ifdef NP_TEST_HOOKS
  if (np__test_hook_sema_queued != NULL) np__test_hook_sema_queued();
#endif
  if (n.task != NULL) {
    np__task_park(node_commit, &n);
    NP_ASSERT(np__load_u32(&n.state) == NODE_SIGNALED);
    return;
  }
  while (np__load_u32(&n.state) != NODE_SIGNALED) futex_wait(&n.state, NODE_WAITING);
}

void np__sema_release(np__sema *s) {
  if ((int32_t)np__add_u32(&s->count, 1) > 0) return; /* nobody waits: the add was the last touch */
  /* A waiter took its unit first: hand this one to the oldest. It may not
   * have queued its node yet (between its add and its lock): it is running,
   * so it will, soon. */
  np__sema_node *n;
  for (int spins = 0;; spins++) {
    spin_lock(&s->lock);
    n = s->head;
    if (n != NULL) {
      s->head = n->next;
      if (s->head == NULL) s->tail = NULL;
    }
    spin_unlock(&s->lock);
    if (n != NULL) break;
    if (spins > 16) sched_yield();
  }
  /* The waiter cannot return before this exchange: the handle is alive up
   * to here. Read the task first: a thread waiter may return at it. */
  np__task *t = n->task;
  uint32_t old = atomic_exchange(&n->state, NODE_SIGNALED);
  if (t == NULL)
    futex_wake(&n->state, 1);
  else if (old == NODE_PARKED)
    np__task_ready(t); /* else its commit fails and it runs on */
}

/* ---- clock ------------------------------------------------------------------- */

int64_t np__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
