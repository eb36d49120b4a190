/*
 * group.c - the public poller handle: a group of schedulers, each with its
 * own poller (epoll instance, break, timer heap, pd cache), created and
 * destroyed together. The handle is the first poller.
 *
 * It must never: leave a task, a scheduler thread, a descriptor or a stack
 * behind at destroy; let np_open or np_go succeed once destroy has begun.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "task.h"

/* The calling task's scheduler (the task will likely use the descriptor),
 * else the handle's own poller; accepted connections go round robin so
 * they spread over the schedulers. */
np_poller *np__home_poller(np_poller *p, bool spread) {
  np__group *g = p->group;
  if (g == NULL || g->n <= 1) return p;
  if (spread) return g->pollers[np__add_u32(&g->rr, 1) % (uint32_t)g->n];
  np__sched *s = np__tls_sched();
  return s != NULL && s->group == g ? s->p : p;
}

static void group_free(np__group *g) {
  for (int i = 0; i < g->npollers; i++) {
    if (g->pollers[i] == NULL) continue;
    np__poller_fini(g->pollers[i]);
    free(g->pollers[i]);
  }
  free(g->pollers);
  free(g->scheds);
  free(g->os);
  np__fdtable_fini(&g->fds);
  free(g);
}

static int group_alloc(const np__backend *backend, int events_max, int npollers, np__group **out) {
  np__group *g = calloc(1, sizeof(*g));
  if (g == NULL) return -ENOMEM;
  np__fdtable_init(&g->fds);
  g->pollers = calloc((size_t)npollers, sizeof(*g->pollers));
  /* Each scheduler (and poller) in lines of its own: they are written on
   * every task switch by different CPUs, and calloc packed them. */
  g->scheds = np__zalloc64((size_t)npollers * sizeof(*g->scheds));
  g->os = calloc((size_t)npollers, sizeof(*g->os));
  if (g->pollers == NULL || g->scheds == NULL || g->os == NULL) {
    group_free(g);
    return -ENOMEM;
  }
  for (int i = 0; i < npollers; i++) {
    np_poller *p = np__zalloc64(sizeof(*p));
    int err = p == NULL ? -ENOMEM : np__poller_init(p, backend, events_max);
    if (err != 0) {
      free(p);
      group_free(g);
      return err;
    }
    p->group = g;
    p->sleep_cap_ns = 1000000000; /* a dead break (np__poller_fail) is noticed within 1 s */
    g->pollers[i] = p;
    g->npollers = i + 1;
  }
  for (int i = 0; npollers > 1 && i < npollers; i++) g->pollers[i]->fdtable = &g->fds;
  *out = g;
  return 0;
}

/* ---- fork ------------------------------------------------------------------
 * A forked child has none of the parent's threads, and shares its epoll
 * instances: the parent's pollers are dead there. Their calls fail with
 * NP_EPOLLER instead of waiting for a thread that is not there, np_close
 * closes the child's descriptor without deregistering the parent's, and
 * np_poller_destroy returns (the child's copy of their memory stays).
 * Pollers the child creates work. */
uint32_t np__fork_gen; /* written only in a child, before it has threads */
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void in_child(void) { np__fork_gen++; }
static void fork_install(void) { (void)pthread_atfork(NULL, NULL, in_child); }

static int group_new(np_poller **out, const np__backend *backend, const np_options *opts, int procs) {
  int events_max = opts != NULL ? opts->events_max : 0;
  if (events_max < 0 || events_max > NP__EVENTS_MAX) return -EINVAL;
  size_t stack_size = opts != NULL && opts->stack_size != 0 ? opts->stack_size : np__stack_default();
  if (stack_size < NP_STACK_MIN || stack_size > NP_STACK_MAX) return -EINVAL;
  np__group *g;
  pthread_once(&fork_once, fork_install);
  int err = group_alloc(backend, events_max, procs > 0 ? procs : 1, &g);
  if (err != 0) return err;
  for (int i = 0; i < g->npollers; i++) g->pollers[i]->fork_gen = np__fork_gen;
  err = np__group_start(g, procs, stack_size);
  if (err != 0) {
    group_free(g);
    return err;
  }
  *out = g->pollers[0];
  return 0;
}

/* The CPUs this process may run on (taskset, a container's cpuset), as Go
 * sets GOMAXPROCS; the online count if the mask cannot be read. */
static int default_procs(void) {
  cpu_set_t set;
  long n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > NP__PROCS_MAX ? NP__PROCS_MAX : (int)n;
}

int np_poller_create(np_poller **out, const np_options *opts) {
  if (out == NULL) return -EINVAL;
  *out = NULL;
  if (np__options_check(opts) != 0) return -EINVAL;
  int procs = opts != NULL ? opts->procs : 0;
  return group_new(out, &np__backend_epoll, opts, procs == 0 ? default_procs() : procs);
}

int np__poller_new(np_poller **out, const np__backend *backend, int events_max, bool threaded) {
  *out = NULL;
  np_options opts = {.events_max = events_max};
  return group_new(out, backend, &opts, threaded ? 1 : 0);
}

/* Closes every descriptor of every poller of the group; np__fd_open refuses
 * new ones once shutdown is set (it checks under fds_lock, which the sweep
 * takes), so this terminates and nothing can be opened after it: a task
 * that opens a descriptor while it finishes gets NP_ECLOSING. */
static void close_all(np__group *g) {
  for (int i = 0; i < g->npollers; i++) np__store_u32(&g->pollers[i]->shutdown, 1);
  for (int i = 0; i < g->npollers; i++) np__fd_free_all(g->pollers[i]); /* blocked, queued: NP_ECLOSING */
}

void np_poller_destroy(np_poller *p) {
  if (p == NULL || np__poller_forked(p)) return; /* a parent's poller in a child: see fork above */
  np__group *g = p->group;
  if (g->pollers[0] != p) NP_PANIC("np_poller_destroy: not a handle from np_poller_create");
  np__task *self = np__tls_task();
  if (self != NULL && self->group == g) NP_PANIC("np_poller_destroy called from one of its own tasks");
  if (np__tls_job_group() == g)
    NP_PANIC("np_poller_destroy called from np_blocking's function of one of its tasks");
  np__group_begin_shutdown(g); /* refuses np_go, ends sleeps */
  close_all(g);                /* wakes every blocked or queued caller; np_open refuses from here on */
  np__group_shutdown(g);       /* waits for every task; joins the schedulers */
  group_free(g);               /* np__poller_fini asserts that no descriptor is left */
}

void np_poller_stats(np_poller *p, np_stats *out) {
  if (p == NULL || out == NULL) return;
  memset(out, 0, sizeof(*out));
  np__group *g = p->group;
  for (int i = 0; i < g->npollers; i++) {
    np_poller *q = g->pollers[i];
    out->fds_open += np__load_u64(&q->stat_fds_open);
    out->waiters_parked += np__load_u32(&q->waiters);
    out->polls += np__load_u64(&q->stat_polls);
    out->breaks += np__load_u64(&q->stat_breaks);
    out->timers_fired += np__load_u64(&q->stat_timers);
    out->pd_allocated += np__load_u64(&q->stat_pds);
  }
  if (!np__poller_forked(p)) { /* a parent's lock may be held for ever in a child */
    np__mutex_lock(&g->done_lock);
    out->tasks = g->live;
    np__mutex_unlock(&g->done_lock);
  }
  out->procs = (uint64_t)g->n;
}

int np_run(const np_options *opts, void (*fn)(void *arg), void *arg) {
  if (fn == NULL) return -EINVAL;
  np_poller *p;
  int err = np_poller_create(&p, opts);
  if (err != 0) return err;
  err = np_go(p, fn, arg);
  if (err == 0) err = np_wait_tasks(p, 0);
  np_poller_destroy(p);
  return err;
}
