/*
 * rt_world.c - np_rtsim: the task runtime's cross-thread protocol
 * (netpoll/src/sched_core.c, the same source as libnetpoll's) under the
 * deterministic scheduler. Simulated threads play 2-3 schedulers, each with
 * its own poller (the real poller.c: timer heap, np__netpoll, the coalesced
 * break) on a small simulated epoll that has only the break and timeouts,
 * and 1-2 remote wakers (threads that are not schedulers). Tasks are
 * scripted: yield, park until a remote waker or another task wakes them,
 * park on a timer (np_sleep's path), park whose commit fails (readiness
 * came first), wake a parked task, spin (yield, burning virtual CPU time,
 * until every task that is not spinning has finished: a busy-wait that
 * only the others' progress ends), exit. Checked:
 *   R1  a task is on at most one queue, a parked task on none, and a task
 *       on a queue has queued = 1            (every step)
 *   R2  a woken task resumes exactly once    (sched_core panics on a second ready)
 *   R3  no scheduler sleeps in epoll_wait with tasks in its inbox or run
 *       queue and no break pending           (at quiescence: nobody can wake it)
 *       and none spins: with nothing to run, it sleeps in epoll_wait within
 *       RT_IDLE_SPIN_MAX idle turns          (every idle turn; a count that
 *       says the inbox holds tasks it does not hold keeps it awake for ever)
 *   R4  every task runs to its end           (the run ends; else I8 / step limit:
 *       a spinner keeps its run queue busy, so a task woken into its
 *       scheduler's inbox must still be taken in while the spinner runs)
 *   R5  the group's descriptor table (netpoll/src/fdtable.c, shared by
 *       the schedulers' pollers) refuses a number exactly while a live
 *       handle owns the file it names: in half the worlds, steps open
 *       handles on their scheduler's poller, close a number behind the
 *       library and reuse it for a new file, and free handles (a freed
 *       one is on the handle heap: a table that kept it faults)
 *   R6  np_blocking's helpers (netpoll/src/blocking.c, on simulated
 *       threads): in half the worlds, steps park on a job (a blocking call
 *       that sleeps); at quiescence no job is queued while fewer than the
 *       maximum of helpers exist (it would wait behind a running job, and
 *       a job may wait for another's result), unless starting a thread
 *       failed in this world; each job's task resumes once (R2), from the
 *       helper thread, through its scheduler's inbox
 *
 *   np_rtsim [--seeds A-B] [--seed N] [--strategy random|pct] [--trace] [--quiet]
 *
 * A failure prints its seed and the command that replays it with the trace.
 * Exit: 0 all passed, 1 a run failed, 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "blocking.h"
#include "handle_heap.h"
#include "sched.h"
#include "sched_core.h"

#define RT_SCHEDS_MAX 3
#define RT_TASKS_MAX 8
#define RT_STEPS_MAX 6
#define RT_WAKERS_MAX 2
#define RT_IDLE_SPIN_MAX 64 /* idle turns in a row that neither sleep nor find a task */
#define RT_SPIN_NS 50000    /* virtual CPU time a spinner burns per turn */
#define RT_NUMS 2           /* descriptor numbers the fd steps use: they collide */
#define RT_HANDLES_MAX 24

enum { ST_YIELD, ST_PARK_REMOTE, ST_PARK_TIMER, ST_PARK_FAILS, ST_WAKE, ST_SPIN, ST_EXIT };
enum { ST_FD_OPEN = ST_EXIT + 1, ST_FD_REUSE, ST_FD_FREE, ST_BLOCKING };
enum { T_RUNNABLE, T_RUNNING, T_PARKED, T_PARKED_TIMER, T_PARKED_JOB, T_CLAIMED, T_DONE };

typedef struct rt_task {
  np__task t; /* first: the runtime's task */
  int id;
  int steps[RT_STEPS_MAX + 1];
  int pc;
  int state;
  bool spinning; /* inside an ST_SPIN step */
  np__job job;   /* its ST_BLOCKING step's */
} rt_task;

typedef struct rt_backend_state {
  bool break_pending;
  bool signalled;   /* a signal interrupts the wait: EINTR */
  sim_task *waiter; /* blocked in wait */
  uint64_t sleeps;  /* waits that blocked (R3: an idle scheduler sleeps) */
} rt_backend_state;

static struct {
  int nscheds, ntasks, nwakers;
  np__sched *scheds;  /* RT_SCHEDS_MAX, on the handle heap: poisoned at teardown */
  np_poller *pollers; /* RT_SCHEDS_MAX, on the handle heap too */
  rt_task tasks[RT_TASKS_MAX];
  np__au32 stop;
  int done;
  int spinning;          /* tasks inside an ST_SPIN step */
  int remote_parks_left; /* remote parks still to be woken */
  sim_task *actors[RT_SCHEDS_MAX + RT_WAKERS_MAX + 1];
  int nactors;
  bool torn_down;         /* the pollers are gone: nothing left to check */
  np__fdtable fdt;        /* shared by the pollers, as a group's */
  uint64_t file[RT_NUMS]; /* which file each number names now (an identity) */
  uint64_t next_file;
  struct {
    np_fd *f; /* on the handle heap */
    np_poller *p;
    bool live;
  } handles[RT_HANDLES_MAX];
  bool fd_busy; /* one fd step at a time: the model is sequential */
  np__helpers helpers;
  bool thread_faults; /* starting a helper thread may fail in this world */
} R;

#define GROUP ((struct np__group *)&R) /* one group: any non-NULL tag */

/* ---- a simulated epoll with only the break and timeouts ------------------------- */

static int rb_create(void **state) {
  rt_backend_state *b = calloc(1, sizeof(*b));
  if (b == NULL) return -ENOMEM;
  *state = b;
  return 0;
}
static void rb_destroy(void *state) { free(state); }

static int rb_wait(void *state, np__event *ev, int max, int64_t delay_ns) {
  rt_backend_state *b = state;
  (void)max;
  sim_point();
  int64_t wake_at = -1;
  if (delay_ns > 0) { /* whole milliseconds, rounded up, as epoll_wait */
    int64_t ms = delay_ns / 1000000 + (delay_ns % 1000000 != 0);
    wake_at = ms > (INT64_MAX - sim->now) / 1000000 ? INT64_MAX : sim->now + ms * 1000000;
  }
  for (;;) {
    if (b->break_pending) {
      ev[0] = (np__event){.events = EPOLLIN, .tag = 0};
      return 1;
    }
    if (delay_ns == 0 || (wake_at >= 0 && sim->now >= wake_at)) return 0;
    b->waiter = sim->current;
    b->sleeps++;
    bool timed_out = sim_block("epoll_wait", wake_at);
    b->waiter = NULL;
    if (b->signalled) { /* the scheduler wakes without the break: it may see its inbox first */
      b->signalled = false;
      return -EINTR;
    }
    if (timed_out) return 0;
  }
}

static int rb_wake(void *state) {
  rt_backend_state *b = state;
  sim_point();
  b->break_pending = true;
  if (b->waiter != NULL) sim_wake(b->waiter);
  return 0;
}

static int rb_drain(void *state) {
  rt_backend_state *b = state;
  sim_point();
  b->break_pending = false;
  return 0;
}

static const np__backend rt_backend = {.name = "rt-sim",
                                       .create = rb_create,
                                       .destroy = rb_destroy,
                                       .wait = rb_wait,
                                       .wake = rb_wake,
                                       .drain = rb_drain};

/* ---- task scripts ---------------------------------------------------------------- */

static rt_task *as_rt(np__task *t) { return (rt_task *)t; }

static bool commit_remote(void *arg) {
  as_rt(arg)->state = T_PARKED; /* from here on a waker may take it */
  return true;
}

static bool commit_fails(void *arg) {
  as_rt(arg)->state = T_RUNNABLE; /* as a park whose readiness came first */
  return false;
}

static void timer_fired(np__timer *tm) {
  rt_task *t = (rt_task *)((char *)tm - offsetof(np__task, sleep));
  if (t->state != T_PARKED_TIMER) sim_fail("R2: timer woke task %d in state %d", t->id, t->state);
  t->state = T_CLAIMED;
  t->t.sched->sleepers--;
  (void)np__timer_reserve(t->t.sched->p, -1);
  np__task_ready(&t->t);
}

static bool commit_timer(void *arg) {
  rt_task *t = arg;
  t->state = T_PARKED_TIMER;
  t->t.sched->sleepers++;
  np__timer_set(t->t.sched->p, &t->t.sleep, t->t.sleep.when_ns, NP__TIMER_FN, 0);
  return true;
}

/* Takes a task parked for a remote wake (as a waker that swapped it out of
 * rg/wg), or NULL. */
static rt_task *claim_parked(void) {
  int n = 0;
  for (int i = 0; i < R.ntasks; i++) n += R.tasks[i].state == T_PARKED;
  if (n == 0) return NULL;
  int pick = (int)sim_rand_below((uint64_t)n);
  for (int i = 0; i < R.ntasks; i++) {
    if (R.tasks[i].state == T_PARKED && pick-- == 0) {
      R.tasks[i].state = T_CLAIMED;
      R.remote_parks_left--;
      return &R.tasks[i];
    }
  }
  return NULL;
}

static void finish_all(void) {
  np__store_u32(&R.stop, 1);
  for (int i = 0; i < R.nscheds; i++) np__netpoll_break(&R.pollers[i]);
}

/* A spinner yields until every task not spinning has finished. Each turn
 * burns virtual CPU time: its scheduler thread sleeps, as a preempted
 * thread would, so the clock moves, timers and wakers come due, and under
 * PCT lower-priority threads still run (a real kernel time-slices). */
static void spin(rt_task *t) {
  if (!t->spinning) R.spinning++;
  t->spinning = R.done + R.spinning < R.ntasks;
  if (t->spinning) {
    sim_sleep(RT_SPIN_NS);
    t->pc--; /* this step again */
  } else {
    R.spinning--;
  }
  t->t.reason = NP__SW_YIELD;
}

/* ---- the descriptor table (R5) ----------------------------------------------------- */

/* np_open's claim of number n on p by a new handle for the file n names now:
 * -EEXIST exactly when a live handle owns that file. */
static void fd_open(np_poller *p, int n) {
  int slot = 0;
  while (slot < RT_HANDLES_MAX && R.handles[slot].f != NULL) slot++;
  if (slot == RT_HANDLES_MAX) return;
  bool owned = false;
  for (int i = 0; i < RT_HANDLES_MAX; i++)
    owned |= R.handles[i].live && R.handles[i].f->sysfd == n && R.handles[i].f->ident == R.file[n];
  np_fd *f = sim_heap_alloc(sizeof(*f), "handle");
  if (f == NULL) sim_fail("out of memory");
  f->sysfd = n;
  f->has_ident = true;
  f->ident = R.file[n];
  int err = np__fd_claim(p, f);
  if (err != (owned ? -EEXIST : 0))
    sim_fail("R5: np_open of fd %d (file %" PRIu64 ") claimed %d, want %d: %s", n, R.file[n], err,
             owned ? -EEXIST : 0, owned ? "a second handle for one file" : "refused with no live owner");
  if (err != 0) {
    sim_heap_free(f);
    return;
  }
  R.handles[slot].f = f;
  R.handles[slot].p = p;
  R.handles[slot].live = true;
}

/* A handle's destroy: unclaims, then the handle memory goes. */
static void fd_free(int slot) {
  np__fd_unclaim(R.handles[slot].p, R.handles[slot].f);
  R.handles[slot].live = false;
  sim_heap_free(R.handles[slot].f);
  R.handles[slot].f = NULL;
}

static void fd_free_one(void) {
  int n = 0;
  for (int i = 0; i < RT_HANDLES_MAX; i++) n += R.handles[i].live;
  if (n == 0) return;
  int pick = (int)sim_rand_below((uint64_t)n);
  for (int i = 0; i < RT_HANDLES_MAX; i++)
    if (R.handles[i].live && pick-- == 0) return fd_free(i);
}

/* One fd step; false if another one is under way (the caller retries). */
static bool fd_step(np_poller *p, int op) {
  if (R.fd_busy) return false;
  R.fd_busy = true;
  int n = (int)sim_rand_below(RT_NUMS);
  if (op == ST_FD_OPEN) fd_open(p, n);
  if (op == ST_FD_REUSE) R.file[n] = ++R.next_file; /* closed behind the library, reused */
  if (op == ST_FD_FREE) fd_free_one();
  R.fd_busy = false;
  return true;
}

/* ---- np_blocking's helpers (R6) --------------------------------------------------- */

static void job_fn(void *arg) { /* on a helper thread: a blocking call */
  rt_task *t = arg;
  if (t->state != T_PARKED_JOB) sim_fail("R2: job of task %d ran in state %d", t->id, t->state);
  sim_sleep((int64_t)sim_rand_below(2000000));
  t->state = T_CLAIMED; /* the helper readies it next */
}

static bool commit_blocking(void *arg) {
  rt_task *t = arg;
  t->state = T_PARKED_JOB; /* from here on a helper may run the job */
  t->job = (np__job){.fn = job_fn, .arg = t, .task = &t->t};
  if (np__helpers_submit(&R.helpers, &t->job)) return true;
  if (!R.thread_faults) sim_fail("np_blocking refused with no thread fault: %d", t->job.err);
  t->state = T_RUNNABLE; /* the call returns the error, the task runs on */
  return false;
}

static void check_helpers(void) { /* R6, at quiescence */
  np__helpers *h = &R.helpers;
  if (R.thread_faults || h->queued == 0 || h->count >= h->max) return;
  sim_fail("R6: %d np_blocking job(s) queued behind running ones with %d of %d helpers started", h->queued,
           h->count, h->max);
}

/* One step of t's script, on scheduler s; sets t->t.reason. */
static void step(np__sched *s, rt_task *t) {
  int op = t->steps[t->pc++];
  t->t.reason = NP__SW_PARK;
  t->t.commit_arg = t;
  switch (op) {
    case ST_PARK_REMOTE: t->t.commit = commit_remote; return;
    case ST_PARK_FAILS: t->t.commit = commit_fails; return;
    case ST_PARK_TIMER:
      if (np__timer_reserve(s->p, 1) != 0) sim_fail("out of memory");
      t->t.sleep.fn = timer_fired;
      t->t.sleep.when_ns = sim->now + 1 + (int64_t)sim_rand_below(3000000);
      t->t.commit = commit_timer;
      return;
    case ST_WAKE: {
      rt_task *other = claim_parked();
      if (other != NULL) np__task_ready(&other->t);
      t->t.reason = NP__SW_YIELD;
      return;
    }
    case ST_SPIN: spin(t); return;
    case ST_BLOCKING: t->t.commit = commit_blocking; return;
    case ST_FD_OPEN:
    case ST_FD_REUSE:
    case ST_FD_FREE:
      if (!fd_step(s->p, op)) {
        sim_sleep(1000); /* blocks this thread: the busy step's thread runs */
        t->pc--;
      }
      t->t.reason = NP__SW_YIELD;
      return;
    case ST_EXIT:
      t->state = T_DONE;
      t->t.reason = NP__SW_EXIT;
      if (++R.done == R.ntasks) finish_all();
      return;
    default: t->t.reason = NP__SW_YIELD; return;
  }
}

/* R3's other half, after an idle turn that found nothing to run: a turn
 * that neither slept in epoll_wait nor belongs to a failed poller (those
 * back off) counts; a few in a row are a break or an inbox count caught
 * mid-update, RT_IDLE_SPIN_MAX of them a scheduler that never sleeps. */
static void check_idle_turn(np__sched *s, uint64_t sleeps_before, int *turns) {
  const rt_backend_state *b = s->p->backend_state;
  if (b->sleeps != sleeps_before || np__load_u32(&s->p->failed)) {
    *turns = 0;
    return;
  }
  if (++*turns > RT_IDLE_SPIN_MAX)
    sim_fail(
        "R3: scheduler %d spins: %d idle turns without sleeping or running a task (inbox_n %u, inbox %s)",
        s->id, *turns, np__load_u32(&s->inbox_n), s->inbox_head != NULL ? "not empty" : "empty");
}

static void sched_main(void *arg) {
  np__sched *s = arg;
  sim->current->port_sched = s;
  int idle_turns = 0;
  for (;;) {
    np__sched_maybe_poll(s);
    np__task *nt = np__sched_next(s);
    if (nt != NULL) {
      idle_turns = 0;
      rt_task *t = as_rt(nt);
      np__sched_begin(s, nt);
      if (t->state != T_RUNNABLE && t->state != T_CLAIMED)
        sim_fail("R2: task %d ran in state %d", t->id, t->state);
      t->state = T_RUNNING;
      step(s, t);
      if (t->state == T_RUNNING) t->state = T_RUNNABLE; /* yield: back on a queue */
      np__sched_after(s, nt);
      continue;
    }
    if (np__load_u32(&R.stop)) return;
    uint64_t sleeps = ((const rt_backend_state *)s->p->backend_state)->sleeps;
    np__sched_idle(s);
    check_idle_turn(s, sleeps, &idle_turns);
  }
}

/* Wakes parked tasks through their schedulers' inboxes, one at a time or,
 * a third of the time, up to three in a row: a drain then takes several
 * tasks at once (an inbox count kept per drain, not per task, drifts). */
static void waker_main(void *arg) {
  (void)arg;
  while (R.remote_parks_left > 0 && R.done < R.ntasks) {
    sim_sleep((int64_t)sim_rand_below(2000000));
    int burst = sim_chance(333333) ? 1 + (int)sim_rand_below(3) : 1;
    for (int k = 0; k < burst; k++) {
      rt_task *t = claim_parked();
      if (t != NULL) np__task_ready(&t->t); /* not a scheduler: the inbox */
    }
  }
}

/* A signal now and then interrupts a sleeping scheduler's epoll_wait
 * (EINTR), as on a real thread: it then looks at its inbox before a
 * waker's break arrives, which is how a task woken from another thread
 * can run and return while that waker is still inside its wake-up. */
static void signal_one(void) {
  rt_backend_state *b = R.pollers[sim_rand_below((uint64_t)R.nscheds)].backend_state;
  if (b->waiter != NULL) {
    b->signalled = true;
    sim_wake(b->waiter);
  }
}

/* Asleep most of the time (so that virtual time moves); awake for a burst
 * of schedule points, where a signal can land between any two steps of
 * another actor (a timed wake-up cannot: time moves only when all block). */
static void signaller_main(void *arg) {
  (void)arg;
  while (R.done < R.ntasks) {
    sim_sleep((int64_t)sim_rand_below(1000000));
    for (int n = (int)sim_rand_below(40); n > 0 && R.done < R.ntasks; n--) {
      sim_point();
      if (R.done < R.ntasks && sim_chance(250000)) signal_one(); /* teardown follows done: the pollers go */
    }
  }
}

/* ---- invariants ------------------------------------------------------------------ */

static int memberships(const np__task *t, int *where) {
  int n = 0;
  for (int i = 0; i < R.nscheds; i++) {
    const np__sched *s = &R.scheds[i];
    const np__runq_node *lists[2] = {s->rq.head, s->inbox_head};
    if (s->rq.runnext == &t->link) n++, *where = i;
    for (int l = 0; l < 2; l++)
      for (const np__runq_node *x = lists[l]; x != NULL; x = x->next)
        if (x == &t->link) n++, *where = i;
  }
  return n;
}

static void check_sleepers(void) { /* R3, at quiescence: every actor is blocked */
  for (int i = 0; i < R.nscheds; i++) {
    np__sched *s = &R.scheds[i];
    rt_backend_state *b = s->p->backend_state;
    if (b->waiter == NULL || b->break_pending) continue;
    if (s->inbox_head != NULL)
      sim_fail("R3: scheduler %d sleeps in epoll_wait with tasks in its inbox and no break coming", i);
    if (!np__runq_empty(&s->rq)) sim_fail("R3: scheduler %d sleeps in epoll_wait with runnable tasks", i);
  }
}

static void check(void *ctx, bool quiescent) {
  (void)ctx;
  if (R.torn_down) return;
  for (int i = 0; i < R.ntasks; i++) {
    rt_task *t = &R.tasks[i];
    int where = -1, n = memberships(&t->t, &where);
    if (n > 1) sim_fail("R1: task %d is on %d queues", t->id, n);
    if (n == 1 && t->t.queued != 1)
      sim_fail("R1: task %d on scheduler %d's queue with queued = 0", t->id, where);
    if (n == 1 && (t->state == T_PARKED || t->state == T_PARKED_TIMER || t->state == T_DONE))
      sim_fail("R1: task %d is on scheduler %d's queue while %s", t->id, where,
               t->state == T_DONE ? "finished" : "parked");
  }
  if (quiescent) check_sleepers();
  if (quiescent) check_helpers();
}

static void format(void *ctx, const sim_trace_entry *e, char *buf, size_t len) {
  (void)ctx;
  snprintf(buf, len, "%-10s %p %" PRIu64 " -> %" PRIu64, sim_op_name((sim_op)e->op), e->addr, e->old_value,
           e->new_value);
}

/* ---- a world from the seed ------------------------------------------------------ */

static void script(rt_task *t) {
  int n = 1 + (int)sim_rand_below(RT_STEPS_MAX);
  for (int i = 0; i < n; i++) {
    int op = (int)sim_rand_below(5); /* every kind but exit */
    t->steps[i] = op;
    if (op == ST_PARK_REMOTE) R.remote_parks_left++;
  }
  if (sim_chance(200000)) { /* one step becomes a spin */
    int i = (int)sim_rand_below((uint64_t)n);
    if (t->steps[i] == ST_PARK_REMOTE) R.remote_parks_left--;
    t->steps[i] = ST_SPIN;
  }
  t->steps[n] = ST_EXIT;
}

/* Half the worlds: some steps (never the exit) become fd steps. */
static void fd_scripts(void) {
  for (int i = 0; i < R.ntasks; i++) {
    rt_task *t = &R.tasks[i];
    for (int k = 0; t->steps[k] != ST_EXIT; k++) {
      if (!sim_chance(400000)) continue;
      if (t->steps[k] == ST_PARK_REMOTE) R.remote_parks_left--;
      t->steps[k] = ST_FD_OPEN + (int)sim_rand_below(3);
    }
  }
}

/* Half the worlds: some steps (never the exit) become np_blocking jobs;
 * 1-8 helpers at most, their threads failing to start in a fifth. */
static void blocking_scripts(void) {
  static const int max[] = {1, 2, 3, 8};
  np__helpers_init(&R.helpers, max[sim_rand_below(4)], GROUP);
  if (sim_chance(200000)) {
    R.thread_faults = true;
    sim_thread_fail_ppm = 200000;
  }
  for (int i = 0; i < R.ntasks; i++) {
    rt_task *t = &R.tasks[i];
    for (int k = 0; t->steps[k] != ST_EXIT; k++) {
      if (!sim_chance(400000)) continue;
      if (t->steps[k] == ST_PARK_REMOTE) R.remote_parks_left--;
      t->steps[k] = ST_BLOCKING;
    }
  }
}

static void world_init(void) {
  memset(&R, 0, sizeof(R));
  R.scheds = sim_heap_alloc(sizeof(np__sched) * RT_SCHEDS_MAX, "scheduler");
  R.pollers = sim_heap_alloc(sizeof(np_poller) * RT_SCHEDS_MAX, "scheduler's poller");
  if (R.scheds == NULL || R.pollers == NULL) sim_fail("out of memory");
  R.nscheds = 2 + (int)sim_rand_below(RT_SCHEDS_MAX - 1);
  R.ntasks = 1 + (int)sim_rand_below(RT_TASKS_MAX);
  R.nwakers = 1 + (int)sim_rand_below(RT_WAKERS_MAX);
  for (int i = 0; i < R.nscheds; i++) {
    int err = np__poller_init(&R.pollers[i], &rt_backend, 8);
    if (err != 0) sim_fail("poller init: %d", err);
    np__sched_init(&R.scheds[i], GROUP, i, &R.pollers[i], &R.stop);
  }
  for (int i = 0; i < R.ntasks; i++) {
    rt_task *t = &R.tasks[i];
    t->id = i;
    t->t.group = GROUP;
    t->t.sleep.heap_index = -1;
    t->t.sched = &R.scheds[sim_rand_below((uint64_t)R.nscheds)];
    script(t);
  }
  np__fdtable_init(&R.fdt);
  for (int i = 0; i < RT_NUMS; i++) R.file[i] = ++R.next_file;
  for (int i = 0; i < R.nscheds; i++) R.pollers[i].fdtable = &R.fdt;
  if (sim_chance(500000)) fd_scripts();
  if (sim_chance(500000))
    blocking_scripts();
  else
    np__helpers_init(&R.helpers, 1, GROUP); /* never used */
}

/* Inside the run (the port's primitives are schedule points): tears the
 * pollers down once every scheduler and waker has returned. */
static void teardown(void) {
  np__helpers_fini(&R.helpers);       /* every task is done: no job left; joins the helpers */
  for (int i = 0; i < R.nscheds; i++) /* np__group_shutdown: a waker may still be breaking a sleep */
    while (np__load_u32(&R.scheds[i].wakers) != 0) sim_sleep(1000);
  R.torn_down = true;
  for (int i = 0; i < RT_HANDLES_MAX; i++)
    if (R.handles[i].live) fd_free(i);
  np__fdtable_fini(&R.fdt);
  for (int i = 0; i < R.nscheds; i++) {
    np__sched_fini(&R.scheds[i]);
    np__poller_fini(&R.pollers[i]);
  }
  sim_heap_free(R.scheds); /* a waker that touches a scheduler now faults: I13 with the seed */
  sim_heap_free(R.pollers);
}

static void main_task(void *arg) {
  (void)arg;
  for (int i = 0; i < R.nscheds; i++) R.actors[R.nactors++] = sim_spawn("sched", sched_main, &R.scheds[i]);
  for (int i = 0; i < R.nwakers; i++) R.actors[R.nactors++] = sim_spawn("waker", waker_main, NULL);
  R.actors[R.nactors++] = sim_spawn("signals", signaller_main, NULL);
  for (int i = 0; i < R.ntasks; i++) np__task_ready(&R.tasks[i].t); /* np_go from a thread */
  /* As np_poller_destroy: the schedulers (and so every task) end, then the
   * group is freed while the wakers, other threads, may still run. */
  for (int i = 0; i < R.nscheds; i++) sim_join(R.actors[i]);
  teardown();
  for (int i = R.nscheds; i < R.nactors; i++) sim_join(R.actors[i]);
}

/* After a failed run (cut short: locks may be held, timers armed): memory only. */
static void world_fini(bool failed) {
  if (!failed || R.torn_down) return;
  free(R.helpers.threads);
  np__fdtable_fini(&R.fdt);
  for (int i = 0; i < R.nscheds; i++) {
    np_poller *p = &R.pollers[i];
    if (p->backend_state != NULL) p->backend->destroy(p->backend_state);
    free(p->heap);
  }
}

/* Runs one seed; 0 pass, -1 fail (message printed unless quiet). */
static int run_seed(uint64_t seed, sim_strategy strategy, FILE *trace, bool quiet) {
  sim_sched s;
  sim_config cfg = {.seed = seed, .strategy = strategy, .check_every_step = true, .trace_out = trace};
  sim_init(&s, &cfg);
  world_init();
  sim_spawn("main", main_task, NULL);
  int rc = sim_run(&s, check, format, NULL);
  if (rc == 0 && R.done != R.ntasks) {
    snprintf(s.failure, sizeof(s.failure), "R4: %d of %d tasks finished", R.done, R.ntasks);
    rc = -1;
  }
  if (rc != 0 && !quiet) {
    printf("FAIL runtime seed=%" PRIu64 " strategy=%s: %s\n", seed, strategy == SIM_PCT ? "pct" : "random",
           s.failure);
    printf("replay: np_rtsim --seed %" PRIu64 "%s --trace\n", seed,
           strategy == SIM_PCT ? " --strategy pct" : "");
  }
  world_fini(rc != 0);
  sim_heap_reset();
  sim_fini(&s);
  return rc == 0 ? 0 : -1;
}

/* ---- the command ------------------------------------------------------------------ */

static int usage(void) {
  fputs("usage: np_rtsim [--seeds A-B] [--seed N] [--strategy random|pct] [--trace] [--quiet]\n", stderr);
  return 2;
}

/* A decimal seed: digits only, no sign, at most 2^64 - 1. */
static bool parse_seed(const char *s, const char *stop, uint64_t *out) {
  if (s == stop || *s < '0' || *s > '9') return false;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end != stop) return false;
  *out = v;
  return true;
}

/* "A-B" (--seeds) or "N" (--seed, range false). */
static bool parse_seeds(const char *v, bool range, uint64_t *first, uint64_t *last) {
  if (v == NULL) return false;
  const char *dash = strchr(v, '-');
  if (!range) return dash == NULL && parse_seed(v, v + strlen(v), first) && (*last = *first, true);
  return dash != NULL && parse_seed(v, dash, first) &&
         parse_seed(dash + 1, dash + 1 + strlen(dash + 1), last);
}

int main(int argc, char **argv) {
  uint64_t first = 1, last = 1000;
  sim_strategy strategy = SIM_RANDOM;
  bool trace = false, quiet = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--seeds") == 0 && parse_seeds(v, true, &first, &last)) {
      i++;
    } else if (strcmp(a, "--seed") == 0 && parse_seeds(v, false, &first, &last)) {
      i++;
    } else if (strcmp(a, "--strategy") == 0 && v != NULL && (!strcmp(v, "random") || !strcmp(v, "pct"))) {
      strategy = strcmp(v, "pct") == 0 ? SIM_PCT : SIM_RANDOM;
      i++;
    } else if (strcmp(a, "--trace") == 0) {
      trace = true;
    } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "--stop-on-fail") == 0) {
      quiet = quiet || strcmp(a, "--quiet") == 0;
    } else {
      return usage();
    }
  }
  if (first == 0 || last < first) return usage();
  uint64_t failed = 0;
  for (uint64_t seed = first; seed >= first && seed <= last; seed++) { /* stops at 2^64 - 1 too */
    if (run_seed(seed, strategy, trace ? stdout : NULL, false) != 0) {
      failed++;
      break; /* the first failure is the one to replay */
    }
    if (seed == UINT64_MAX) break;
  }
  if (!quiet || failed)
    printf("np_rtsim: seeds %" PRIu64 "-%" PRIu64 " strategy=%s: %s\n", first, last,
           strategy == SIM_PCT ? "pct" : "random", failed ? "FAIL" : "all passed");
  return failed ? 1 : 0;
}
