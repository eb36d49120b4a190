/*
 * user_rt.c - libnetpoll-sim's poller and tasks: netpoll.h's poller and
 * task calls on the deterministic scheduler. A task is a simulated task;
 * the poller is one simulated thread polling the simulated epoll, as the
 * library polled before it had schedulers; time is virtual.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernel.h"
#include "user.h"
#include "user_run.h"

ut_state U;

bool ut_in_run(void) { return sim != NULL && sim->current != NULL && sim->current != &sim->main_task; }

ut_task *ut_self(void) { return ut_in_run() ? sim->current->actor : NULL; }

ut_task *ut_current(void) {
  ut_task *u = ut_self();
  return u != NULL && !u->blocking ? u : NULL;
}

void ut_outside_run(const char *call) {
  if (ut_in_run()) return;
  fprintf(stderr,
          "netpoll-sim: %s called outside a simulated run: under libnetpoll-sim every netpoll call is made "
          "from an NP_TEST body or np_run's function and their tasks (the run is the program's world)\n",
          call);
  exit(2);
}

void ut_limit(const char *what) {
  static const char *said[8];
  for (int i = 0; i < 8; i++) {
    if (said[i] == what) return;
    if (said[i] == NULL) {
      said[i] = what;
      fprintf(stderr, "netpoll-sim: %s (a limit of the simulator, not of netpoll)\n", what);
      return;
    }
  }
}

ut_poller *ut_poller_of(const np_poller *p) {
  for (int i = 0; p != NULL && i < UT_POLLERS_MAX; i++)
    if (U.pollers[i].p == p) return &U.pollers[i];
  return NULL;
}

static void poller_main(void *arg) {
  ut_poller *up = arg;
  np_poller *p = up->p;
  while (!up->stop) {
    int n = np__poll_once(p, true);
    if (n < 0 && n != NP_EPOLLER) sim_fail("netpoll failed: %s", np_strerror(n));
    if (n == NP_EPOLLER) sim_sleep(1000000);
  }
}

static void net_main(void *arg) {
  (void)arg;
  kern_net_main(&U.stop_net);
}

void ut_start_net(void) {
  U.stop_net = false;
  U.net_task = sim_spawn("network", net_main, NULL);
}

void ut_stop_net(void) {
  U.stop_net = true;
  kern_net_kick();
  sim_join(U.net_task);
}

int np_poller_create(np_poller **out, const np_options *opts) {
  if (out == NULL) return -EINVAL;
  *out = NULL;
  int err = np__options_check(opts);
  if (err != 0) return err;
  ut_outside_run("np_poller_create");
  ut_poller *up = ut_poller_of(NULL);
  for (int i = 0; i < UT_POLLERS_MAX && up == NULL; i++)
    if (U.pollers[i].p == NULL) up = &U.pollers[i];
  if (up == NULL) { /* as many pollers as the simulated kernel has epoll instances */
    ut_limit("np_poller_create: at most 4 pollers at once; returns -EMFILE");
    return -EMFILE;
  }
  np_poller *p = calloc(1, sizeof(*p));
  if (p == NULL) return -ENOMEM;
  /* Small event batches unless asked: more polls, more interleavings. */
  int events_max = opts != NULL && opts->events_max > 0 ? opts->events_max : 1 + (int)sim_rand_below(8);
  err = np__poller_init(p, &sim_backend, events_max);
  if (err != 0) {
    free(p);
    return err;
  }
  *up = (ut_poller){.p = p};
  up->stack_size = opts != NULL && opts->stack_size > 0 ? opts->stack_size : NP_STACK_DEFAULT;
  up->task = sim_spawn("poller", poller_main, up);
  *out = p;
  return 0;
}

/* The tasks in np_wait_tasks or np_poller_destroy of a poller: a list
 * through next_wait (a task blocked here is in no mutex or sema queue). */
static void waiters_remove(ut_poller *up, sim_task *t) {
  for (sim_task **w = &up->waiters; *w != NULL; w = &(*w)->next_wait)
    if (*w == t) {
      *w = t->next_wait;
      t->next_wait = NULL;
      return;
    }
}

static void waiters_wake(ut_poller *up) {
  while (up->waiters != NULL) {
    sim_task *t = up->waiters;
    waiters_remove(up, t);
    sim_wake(t);
  }
}

/* Blocks until every task of up has returned (true) or until the virtual
 * time deadline (-1: none; false if tasks remain). */
static bool wait_live(ut_poller *up, const char *why, int64_t deadline) {
  sim_task *self = sim->current;
  while (up->live > 0) {
    if (deadline >= 0 && sim->now >= deadline) return false;
    self->next_wait = up->waiters;
    up->waiters = self;
    (void)sim_block(why, deadline);
    waiters_remove(up, self);
  }
  return true;
}

static void wake_sleepers(const np_poller *p) {
  for (int i = 0; i < sim->task_count; i++) {
    sim_task *t = sim->tasks[i];
    ut_task *u = t->actor;
    if (u != NULL && u->p == p && t->state == SIM_BLOCKED && t->block_reason != NULL &&
        strcmp(t->block_reason, "np_sleep") == 0) {
      u->sleep_cut = true;
      sim_wake(t);
    }
  }
}

void np_poller_destroy(np_poller *p) {
  if (p == NULL) return;
  ut_poller *up = ut_poller_of(p);
  if (up == NULL) NP_PANIC("np_poller_destroy: not a handle from np_poller_create");
  ut_task *self = ut_self();
  if (self != NULL && self->p == p)
    NP_PANIC(self->blocking ? "np_poller_destroy called from np_blocking's function of one of its tasks"
                            : "np_poller_destroy called from one of its own tasks");
  ut_trace("np_poller_destroy", -1, 0, 0);
  np__store_u32(&p->shutdown, 1);
  wake_sleepers(p);
  np__fd_free_all(p); /* blocked and queued callers wake with NP_ECLOSING */
  (void)wait_live(up, "np_poller_destroy", -1);
  np__fd_free_all(p); /* descriptors tasks opened as they finished */
  up->stop = true;
  np__netpoll_break(p);
  sim_join(up->task);
  np__poller_fini(p);
  free(p);
  *up = (ut_poller){0};
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
  ut_poller *up = ut_poller_of(p);
  out->tasks = up == NULL ? 0 : (uint64_t)up->live;
  out->procs = 1;
}

/* ---- tasks ------------------------------------------------------------------- */

static void task_entry(void *arg) {
  ut_task *u = arg;
  u->fn(u->arg);
  ut_trace("return", -1, 0, 0);
  ut_poller *up = ut_poller_of(u->p);
  if (--up->live == 0) waiters_wake(up);
  sim->current->actor = NULL;
  free(u);
}

int np_go(np_poller *p, np_task_fn fn, void *arg) {
  if (p == NULL || fn == NULL) return -EINVAL;
  ut_poller *up = ut_poller_of(p);
  if (up == NULL) return -EINVAL;
  if (np__load_u32(&p->shutdown)) return NP_ECLOSING;
  if (!sim_spawn_room()) { /* SIM_TASKS_MAX at once */
    ut_limit("np_go: at most 1024 tasks at once; returns -ENOMEM");
    return -ENOMEM;
  }
  ut_task *u = calloc(1, sizeof(*u));
  if (u == NULL) return -ENOMEM;
  u->fn = fn;
  u->arg = arg;
  u->p = p;
  u->call_fd = -1;
  char name[24];
  snprintf(name, sizeof(name), "task%d", ++U.next_task);
  up->live++;
  /* The task's native stack, plus room for the simulator's own frames. */
  u->st = sim_spawn_stack(name, task_entry, u, (up->stack_size + UT_STACK_SLACK) * sim_stack_scale());
  u->st->actor = u;
  ut_trace("np_go", -1, u->st->id, 0);
  return 0;
}

/* Natively time passes while a task spins on np_yield; here a yield lets
 * every other runnable task run and then 1 us of virtual time pass, as a
 * scheduling turn would. A task that only yields would otherwise never
 * block, the clock would stand still, no sleep or deadline would come due,
 * and a correct busy-wait would be reported as a hang (yield_test). */
#define UT_YIELD_NS 1000

void np_yield(void) {
  if (ut_in_run()) sim_sleep(UT_YIELD_NS); /* outside a run: nothing else to run */
}

int np_sleep(int64_t ns) {
  ut_outside_run("np_sleep");
  ut_task *u = ut_current();
  if (ns <= 0) {
    sim_point();
    return 0;
  }
  if (u == NULL) { /* a thread (np_blocking's function) sleeps its time */
    sim_sleep(ns);
    return 0;
  }
  if (np__load_u32(&u->p->shutdown)) return NP_ECLOSING;
  int64_t until = ns > SIM_TIME_MAX_NS - sim->now ? SIM_TIME_MAX_NS + 1 : sim->now + ns;
  ut_enter("np_sleep", -1);
  u->sleep_cut = false;
  bool timed_out = sim_block("np_sleep", until);
  ut_leave();
  int ret = timed_out || !u->sleep_cut ? 0 : NP_ECLOSING;
  ut_trace("np_sleep", -1, ns, ret);
  return ret;
}

/* The helper thread: a simulated thread of its own, with a thread's
 * stack (8 MiB, mapped lazily), running for the parked task. Not a task:
 * np_current() is NULL there, np_in_task() false, as natively. */
#define UT_HELPER_STACK ((size_t)8 << 20)

static void helper_entry(void *arg) {
  ut_task *h = arg;
  h->fn(h->arg);
  sim->current->actor = NULL;
  free(h);
}

int np_blocking(np_task_fn fn, void *arg) {
  if (fn == NULL) return -EINVAL;
  ut_task *u = ut_current();
  if (u == NULL || !sim_spawn_room()) { /* a thread, or no room for a helper: runs here */
    fn(arg);
    return 0;
  }
  ut_task *h = calloc(1, sizeof(*h));
  if (h == NULL) return -ENOMEM;
  *h = (ut_task){.fn = fn, .arg = arg, .p = u->p, .call_fd = -1, .blocking = true};
  char name[24];
  snprintf(name, sizeof(name), "%.14s/helper", u->st->name);
  h->st = sim_spawn_stack(name, helper_entry, h, UT_HELPER_STACK * sim_stack_scale());
  h->st->actor = h;
  ut_enter("np_blocking", -1);
  sim_join(h->st);
  ut_leave();
  ut_trace("np_blocking", -1, 0, 0);
  return 0;
}

void np_task_name(const char *name) {
  ut_task *u = ut_current();
  if (u == NULL || name == NULL) return;
  snprintf(u->st->name, sizeof(u->st->name), "%s", name);
}

bool np_in_task(void) { return ut_current() != NULL; }

np_poller *np_current(void) {
  ut_task *u = ut_current();
  return u == NULL ? NULL : u->p;
}

int np_wait_tasks(np_poller *p, int64_t deadline_ns) {
  ut_poller *up = ut_poller_of(p);
  if (up == NULL) return -EINVAL;
  ut_task *self = ut_self();
  if (self != NULL && self->p == p) return -EDEADLK; /* a task of p, or np_blocking's function for one */
  return wait_live(up, "np_wait_tasks", deadline_ns > 0 ? deadline_ns : -1) ? 0 : NP_ETIMEOUT;
}

int np_run(const np_options *opts, void (*fn)(void *arg), void *arg) {
  if (fn == NULL) return -EINVAL;
  if (sim == NULL)
    return np__options_check(opts) != 0 ? -EINVAL : ut_run_program(fn, arg); /* a program's main */
  np_poller *p;
  int err = np_poller_create(&p, opts);
  if (err != 0) return err;
  err = np_go(p, fn, arg);
  if (err == 0) err = np_wait_tasks(p, 0);
  np_poller_destroy(p);
  return err;
}

/* ---- random numbers ------------------------------------------------------- */

uint64_t np_rand(void) {
  if (sim == NULL) return 0x9e3779b97f4a7c15ull; /* outside a run nothing is random */
  return sim_rand();
}

/* The run's seed decides: a program's own seed would make two runs of one
 * seed differ. */
void np_rand_seed(uint64_t seed) { (void)seed; }
