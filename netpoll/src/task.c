/*
 * task.c - tasks and their schedulers: np_go, np_yield, np_sleep, the park
 * and ready protocol, and the scheduler loop that is also its poller.
 *
 * Protocol (checked by assertions that stay on):
 *  - a task is made ready once per park: `queued` goes 0 -> 1 in
 *    np__task_ready (a second ready panics) and back to 0 when a scheduler
 *    pops it to run it; a parked task is on no queue;
 *  - parking switches to the scheduler first and only then runs the commit
 *    step there, so whoever sees the committed waiter may make the task
 *    ready at once, on any thread, without racing its switch-out;
 *  - a scheduler decides to sleep by storing sleeping = 1 and then loading
 *    its inbox count; a remote waker adds to the inbox count and then loads
 *    sleeping (both sequentially consistent: one of the two sees the other),
 *    and breaks the epoll_wait only when it saw 1 (coalesced by the break).
 *
 * Thread-local state is read only through the non-inlined getters below: a
 * task may resume on another thread, and a compiler may otherwise keep a
 * thread-local address across the switch.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "task.h"

#if defined(__clang__)
#define NP_NOINLINE __attribute__((noinline))
#else
#define NP_NOINLINE __attribute__((noinline, noipa))
#endif

static __thread np__sched *tls_sched __attribute__((tls_model("initial-exec")));
static __thread np__task *tls_task __attribute__((tls_model("initial-exec")));

NP_NOINLINE np__task *np__tls_task(void) { return tls_task; }
NP_NOINLINE np__sched *np__tls_sched(void) { return tls_sched; }
NP_NOINLINE static void set_tls_task(np__task *t) { tls_task = t; }

/* ---- the task side ------------------------------------------------------------------ */

static void switch_out(np__task *t, int reason) {
  t->reason = reason;
  np__ctx_switch(&t->ctx, &t->sched->ctx, reason == NP__SW_EXIT);
}

void np__task_park(bool (*commit)(void *arg), void *arg) {
  np__task *t = np__tls_task();
  NP_ASSERT(t != NULL);
  t->commit = commit;
  t->commit_arg = arg;
  switch_out(t, NP__SW_PARK);
}

static void task_entry(void) {
  np__ctx_started();
  np__task *t = np__tls_task();
  t->fn(t->arg);
  t = np__tls_task(); /* it may have migrated */
  switch_out(t, NP__SW_EXIT);
  NP_PANIC("a finished task was resumed");
}

void np_yield(void) {
  np__task *t = np__tls_task();
  if (t == NULL) {
    sched_yield();
    return;
  }
  switch_out(t, NP__SW_YIELD);
}

bool np_in_task(void) { return np__tls_task() != NULL; }

void np_task_name(const char *name) {
  np__task *t = np__tls_task();
  if (t == NULL || name == NULL) return;
  strncpy(t->name, name, sizeof(t->name) - 1);
  t->name[sizeof(t->name) - 1] = 0;
}

np_poller *np_current(void) {
  np__task *t = np__tls_task();
  return t != NULL ? t->group->pollers[0] : NULL;
}

/* ---- sleep -------------------------------------------------------------------------- */

static void sleep_fired(np__timer *tm) {
  np__task *t = (np__task *)((char *)tm - offsetof(np__task, sleep));
  np_poller *p = t->sched->p;
  t->sched->sleepers--; /* timers of p run on its scheduler's thread only */
  t->sleep_cut = np__load_u32(&t->group->shutdown) != 0;
  (void)np__timer_reserve(p, -1);
  np__task_ready(t);
}

static bool sleep_commit(void *arg) {
  np__task *t = arg;
  t->sched->sleepers++;
  np__timer_set(t->sched->p, &t->sleep, t->sleep.when_ns, NP__TIMER_FN, 0);
  return true;
}

static int thread_sleep_ns(int64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  return 0;
}

void np__port_backoff(void) { (void)thread_sleep_ns(1000000); }

int np_sleep(int64_t ns) {
  np__task *t = np__tls_task();
  if (t == NULL) return ns > 0 ? thread_sleep_ns(ns) : 0;
  if (np__load_u32(&t->group->shutdown)) return NP_ECLOSING;
  if (ns <= 0) {
    np_yield();
    return 0;
  }
  int err = np__timer_reserve(t->sched->p, 1);
  if (err != 0) return err;
  int64_t now = np__now();
  t->sleep.when_ns = ns > INT64_MAX - now ? INT64_MAX : now + ns;
  t->sleep.fn = sleep_fired;
  t->sleep_cut = false;
  np__task_park(sleep_commit, t);
  return t->sleep_cut ? NP_ECLOSING : 0;
}

/* ---- starting tasks --------------------------------------------------------------- */

static int task_new(np__group *g, void (*fn)(void *), void *arg, np__task **out) {
  np__stack st;
  int err = np__stack_get(g, &st);
  if (err != 0) return err;
  /* The task struct lives at the top of its own stack. */
  uintptr_t top = ((uintptr_t)st.lo + st.len - sizeof(np__task)) & ~(uintptr_t)63;
  np__task *t = (np__task *)top;
  memset(t, 0, sizeof(*t));
  t->stack = st;
  t->group = g;
  t->fn = fn;
  t->arg = arg;
  t->id = np__add_u64(&g->next_id, 1);
  t->sleep.heap_index = -1;
  np__ctx_make(&t->ctx, st.lo, top - (uintptr_t)st.lo, task_entry);
  *out = t;
  return 0;
}

static void task_free(np__task *t) {
  np__group *g = t->group;
  np__ctx_destroy(&t->ctx);
  np__stack st = t->stack;
  np__stack_put(g, &st);
  np__mutex_lock(&g->done_lock);
  NP_ASSERT(g->live > 0);
  if (--g->live == 0) pthread_cond_broadcast(&g->done_cond);
  np__mutex_unlock(&g->done_lock);
}

int np_go(np_poller *p, void (*fn)(void *arg), void *arg) {
  if (p == NULL || fn == NULL) return -EINVAL;
  np__group *g = p->group;
  if (g == NULL || g->n == 0) return -ENOTSUP; /* a manual (test) poller has no schedulers */
  if (np__poller_forked(p)) return NP_EPOLLER; /* its schedulers are in the parent */
  np__task *t;
  int err = task_new(g, fn, arg, &t);
  if (err != 0) return err;
  np__mutex_lock(&g->done_lock);
  bool closed = np__load_u32(&g->shutdown) != 0;
  if (!closed) g->live++;
  np__mutex_unlock(&g->done_lock);
  if (closed) {
    np__ctx_destroy(&t->ctx);
    np__stack st = t->stack;
    np__stack_put(g, &st);
    return NP_ECLOSING;
  }
  np__sched *s = np__tls_sched();
  if (s == NULL || s->group != g) s = &g->scheds[np__add_u32(&g->rr, 1) % (uint32_t)g->n];
  t->sched = s;
  np__task_ready(t);
  return 0;
}

/* ---- the scheduler ------------------------------------------------------------------ */

static void run_task(np__sched *s, np__task *t) {
  np__sched_begin(s, t);
  set_tls_task(t);
  np__ctx_switch(&s->ctx, &t->ctx, false);
  set_tls_task(NULL);
  if (np__sched_after(s, t)) task_free(t);
}

static void sched_loop(np__sched *s) {
  np__group *g = s->group;
  for (;;) {
    if (np__load_u32(&g->shutdown)) np__timer_fire_fn_all(s->p); /* sleeps end */
    np__sched_maybe_poll(s);
    np__task *t = np__sched_next(s);
    if (t != NULL) {
      run_task(s, t);
      continue;
    }
    if (np__load_u32(&g->stop)) return;
    np__sched_idle(s);
  }
}

static void thread_context(np__ctx *c) {
  void *lo = NULL;
  size_t len = 0;
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    if (pthread_attr_getstack(&attr, &lo, &len) != 0) lo = NULL, len = 0;
    pthread_attr_destroy(&attr);
  }
  np__ctx_thread(c, lo, len);
}

static void *sched_main(void *arg) {
  np__sched *s = arg;
  tls_sched = s;
  thread_context(&s->ctx);
  int err = np__altstack_init(s->os);
  if (err != 0) NP_PANIC("sigaltstack for the scheduler failed");
  sched_loop(s);
  np__altstack_fini(s->os);
  tls_sched = NULL;
  return NULL;
}

int np__group_start(np__group *g, int procs, size_t stack_size) {
  g->stack_size = stack_size;
  np__mutex_init(&g->done_lock);
  pthread_cond_init(&g->done_cond, NULL);
  np__mutex_init(&g->pool_lock);
  np__helpers_init(&g->helpers, 64, g);
  if (procs > 0) np__overflow_install();
  for (int i = 0; i < procs; i++) {
    np__sched_init(&g->scheds[i], g, i, g->pollers[i], &g->stop);
    g->scheds[i].os = &g->os[i];
  }
  for (int i = 0; i < procs; i++) {
    int err = pthread_create(&g->os[i].thread, NULL, sched_main, &g->scheds[i]);
    if (err != 0) {
      g->n = i;
      np__group_shutdown(g);
      return -err;
    }
  }
  g->n = procs;
  return 0;
}

/* No new tasks from here on; sleeping tasks wake with NP_ECLOSING. */
void np__group_begin_shutdown(np__group *g) {
  np__mutex_lock(&g->done_lock);
  np__store_u32(&g->shutdown, 1);
  np__mutex_unlock(&g->done_lock);
  for (int i = 0; i < g->n; i++) np__netpoll_break(g->scheds[i].p); /* sleeps end */
}

/* Waits for every task, then stops and joins the schedulers. */
void np__group_shutdown(np__group *g) {
  np__group_begin_shutdown(g);
  np__mutex_lock(&g->done_lock);
  while (g->live > 0) pthread_cond_wait(&g->done_cond, &g->done_lock);
  np__mutex_unlock(&g->done_lock);
  np__store_u32(&g->stop, 1);
  for (int i = 0; i < g->n; i++) np__netpoll_break(g->scheds[i].p);
  for (int i = 0; i < g->n; i++) pthread_join(g->os[i].thread, NULL);
  for (int i = 0; i < g->n; i++) /* a waker on another thread may still be breaking a sleep */
    while (np__load_u32(&g->scheds[i].wakers) != 0) sched_yield();
  for (int i = 0; i < g->n; i++) np__sched_fini(&g->scheds[i]);
  np__helpers_fini(&g->helpers);
  np__stack_pool_fini(g);
  pthread_cond_destroy(&g->done_cond);
  np__mutex_destroy(&g->done_lock);
  np__mutex_destroy(&g->pool_lock);
}

/* ---- np_blocking ------------------------------------------------------------------ */

static bool job_commit(void *arg) {
  np__job *j = arg;
  return np__helpers_submit(&j->task->group->helpers, j);
}

int np_blocking(np_task_fn fn, void *arg) {
  if (fn == NULL) return -EINVAL;
  np__task *t = np__tls_task();
  if (t == NULL) {
    fn(arg);
    return 0;
  }
  np__job j = {NULL, fn, arg, t, 0};
  np__task_park(job_commit, &j);
  return j.err;
}

int np_wait_tasks(np_poller *p, int64_t deadline_ns) {
  if (p == NULL || p->group == NULL) return -EINVAL;
  np__group *g = p->group;
  if (np__tls_task() != NULL && np__tls_task()->group == g) return -EDEADLK;
  if (np__tls_job_group() == g) return -EDEADLK; /* its task waits for us */
  if (np__poller_forked(p)) return NP_EPOLLER;
  np__mutex_lock(&g->done_lock);
  int ret = 0;
  while (g->live > 0 && ret == 0) {
    if (deadline_ns == 0) {
      pthread_cond_wait(&g->done_cond, &g->done_lock);
      continue;
    }
    /* The cond uses CLOCK_REALTIME: wait in short slices against np_now. */
    int64_t left = deadline_ns - np__now();
    if (left <= 0) {
      ret = NP_ETIMEOUT;
      break;
    }
    if (left > 10000000) left = 10000000;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = ts.tv_nsec + left;
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    pthread_cond_timedwait(&g->done_cond, &g->done_lock, &ts);
  }
  np__mutex_unlock(&g->done_lock);
  return ret;
}
