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

ut_task *ut_current(void) {
  if (sim == NULL || sim->current == NULL || sim->current == &sim->main_task) return NULL;
  return sim->current->actor;
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
  if (sim == NULL) return -ENOTSUP; /* outside a simulated run (np_test_main starts them) */
  ut_poller *up = ut_poller_of(NULL);
  for (int i = 0; i < UT_POLLERS_MAX && up == NULL; i++)
    if (U.pollers[i].p == NULL) up = &U.pollers[i];
  if (up == NULL) return -EMFILE; /* as many pollers as the simulated kernel has epoll instances */
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
  up->task = sim_spawn("poller", poller_main, up);
  *out = p;
  return 0;
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
  ut_task *self = ut_current();
  if (self != NULL && self->p == p) NP_PANIC("np_poller_destroy called from one of its own tasks");
  ut_trace("np_poller_destroy", -1, 0, 0);
  np__store_u32(&p->shutdown, 1);
  wake_sleepers(p);
  np__fd_free_all(p); /* blocked and queued callers wake with NP_ECLOSING */
  while (up->live > 0) {
    up->waiter = sim->current;
    (void)sim_block("np_poller_destroy", -1);
    up->waiter = NULL;
  }
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
  if (--up->live == 0 && up->waiter != NULL) sim_wake(up->waiter);
  sim->current->actor = NULL;
  free(u);
}

int np_go(np_poller *p, np_task_fn fn, void *arg) {
  if (p == NULL || fn == NULL) return -EINVAL;
  ut_poller *up = ut_poller_of(p);
  if (up == NULL) return -EINVAL;
  if (np__load_u32(&p->shutdown)) return NP_ECLOSING;
  if (!sim_spawn_room()) return -ENOMEM; /* SIM_TASKS_MAX at once */
  ut_task *u = calloc(1, sizeof(*u));
  if (u == NULL) return -ENOMEM;
  u->fn = fn;
  u->arg = arg;
  u->p = p;
  u->call_fd = -1;
  char name[24];
  snprintf(name, sizeof(name), "task%d", ++U.next_task);
  up->live++;
  u->st = sim_spawn(name, task_entry, u);
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
  if (ut_current() == NULL) {
    sim_point();
    return;
  }
  sim_sleep(UT_YIELD_NS);
}

int np_sleep(int64_t ns) {
  ut_task *u = ut_current();
  if (ns <= 0 || u == NULL) {
    sim_point();
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

/* No helper thread in a simulation: fn runs in the task (deterministic). */
int np_blocking(np_task_fn fn, void *arg) {
  if (fn == NULL) return -EINVAL;
  fn(arg);
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
  ut_task *self = ut_current();
  if (self != NULL && self->p == p) return -EDEADLK;
  while (up->live > 0) {
    if (deadline_ns > 0 && sim->now >= deadline_ns) return NP_ETIMEOUT;
    up->waiter = sim->current;
    (void)sim_block("np_wait_tasks", deadline_ns > 0 ? deadline_ns : -1);
    up->waiter = NULL;
  }
  return 0;
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
