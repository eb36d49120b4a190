/*
 * sched_core.h - the part of the task runtime that is a cross-thread
 * protocol: tasks, schedulers, run queues and inboxes, making a task ready,
 * and a scheduler's decision to sleep in epoll_wait. It is compiled against
 * the port seam, natively (task.c drives it with real threads and stacks)
 * and in the simulator (sim/rt_world.c drives it with simulated schedulers,
 * wakers and tasks, checking the runtime invariants R1-R4 of
 * docs/DESIGN.md at every step).
 *
 * It must never: put a task on two queues or a parked task on any (R1);
 * make a task ready twice per park (R2: a woken task resumes exactly once);
 * let a scheduler sleep with a task in its inbox and no break coming (R3);
 * drop a runnable task (R4: a runnable task runs eventually); touch a task
 * after its park was committed (it belongs to its waker from then on).
 */
#ifndef NP_SCHED_CORE_H
#define NP_SCHED_CORE_H

#include "ctx.h"
#include "np_internal.h"
#include "runq.h"

typedef struct np__task np__task;
typedef struct np__sched np__sched;
typedef struct np__group np__group;

/* Why a task switched back to its scheduler. */
enum { NP__SW_YIELD = 1, NP__SW_PARK = 2, NP__SW_EXIT = 3 };

typedef struct np__stack {
  void *map;            /* mmap base (the guard page is the lowest page) */
  size_t map_len;       /* whole mapping */
  void *lo;             /* lowest usable byte, just above the guard */
  size_t len;           /* usable bytes below the task struct */
  unsigned valgrind_id; /* VALGRIND_STACK_REGISTER's id (0 without valgrind.h) */
} np__stack;

/* The first 64 bytes hold what every switch touches (the struct is 64-byte
 * aligned): with a thousand connections each task is cold when its event
 * comes, and these were spread over four cache lines. */
struct np__task {
  np__runq_node link; /* run queue / inbox; first member */
  np__sched *sched;   /* scheduler that runs it or ran it last */
  np__group *group;
  int reason;                /* NP__SW_* of the last switch out */
  np__au32 queued;           /* 1 from being made ready until it runs (on one queue at most) */
  bool (*commit)(void *arg); /* NP__SW_PARK: run on the scheduler stack */
  void *commit_arg;
  np__ctx ctx; /* sp first: in the hot line */
  void (*fn)(void *);
  void *arg;
  uint64_t id;
  char name[32]; /* np_task_name; "" if none */
  np__stack stack;
  np__timer sleep; /* np_sleep */
  bool sleep_cut;  /* the sleep was ended by shutdown */
};
_Static_assert(offsetof(np__task, ctx) + sizeof(void *) <= 64,
               "task: a switch's fields and ctx.sp in line 0");

struct np__sched {
  np__group *group;
  int id;
  np_poller *p; /* its poller: epoll instance, break, timers */
  np__ctx ctx;  /* the scheduler thread's own context */
  np__runq rq;  /* owned by the thread */
  bool in_poll; /* waking from netpoll/timers: FIFO, not runnext */
  uint32_t since_poll;
  int sleepers;      /* np_sleep timers armed on p (its thread only) */
  np__au32 sleeping; /* 1 from deciding to block in epoll_wait until awake */
  np__au32 inbox_n;  /* tasks in the inbox (read without the lock) */
  np__au32 wakers;   /* threads inside inbox_push: the woken task may already have run and
                        returned, so destroy frees the group only once this is 0 */
  np__mutex inbox_lock;
  np__runq_node *inbox_head, *inbox_tail;
  np__task *current;
  np__au32 *stop; /* the group's: set once every task is done (destroy) */
  uint64_t switches;
  void *os;                     /* the runtime's own per-thread state (native: thread, signal stack) */
} __attribute__((aligned(64))); /* the schedulers' array: one CPU per element, no shared line */

/* Provided by the runtime: the scheduler running on the calling thread
 * (native: thread-local; sim: the simulated thread's), NULL elsewhere. */
np__sched *np__tls_sched(void);
/* Provided by the runtime: a short sleep of the calling thread (a failed
 * poller's scheduler waits in these; native: 1 ms, sim: virtual). */
void np__port_backoff(void);

void np__sched_init(np__sched *s, struct np__group *g, int id, np_poller *p, np__au32 *stop);
void np__sched_fini(np__sched *s);
/* Makes a parked (or new) task runnable: the calling scheduler's run queue
 * if it belongs to t's group (runnext, or the tail while it polls), else
 * t's scheduler's inbox, breaking its epoll_wait if it sleeps there. */
void np__task_ready(np__task *t);
/* ---- the steps around every task switch: inline, the hot path ---- */

/* The inbox, once runnext and the run queue are empty. */
np__task *np__sched_next_inbox(np__sched *s);
/* A yield's requeue (any other reason panics). */
void np__sched_after_yield(np__sched *s, np__task *t);

/* The next task to run, or NULL: runnext, the run queue, then the inbox. */
static inline np__task *np__sched_next(np__sched *s) {
  np__runq_node *n = np__runq_pop(&s->rq);
  return n != NULL ? (np__task *)n : np__sched_next_inbox(s);
}

/* Before running t (popped by np__sched_next). */
static inline void np__sched_begin(np__sched *s, np__task *t) {
  if (np__load_u32_check(&t->queued) != 1) NP_PANIC("task run while not queued (R1: on two queues?)");
  np__store_u32_check(&t->queued, 0);
  t->sched = s;
  s->current = t;
  s->since_poll++;
  s->switches++;
}

/* A park's commit step, on the scheduler's stack once t is off its own. */
static inline void np__sched_after_park(np__sched *s, np__task *t) {
  bool (*commit)(void *) = t->commit;
  if (!commit(t->commit_arg)) { /* readiness came first: run on */
    np__store_u32_check(&t->queued, 1);
    np__runq_push_next(&s->rq, &t->link);
  }
  /* Committed: t now belongs to whoever wakes it; do not touch it. */
}

/* After t switched back with t->reason: requeues a yield or a failed park
 * commit; a committed park leaves t to its waker. Returns true when t
 * exited (the caller frees it). */
static inline bool np__sched_after(np__sched *s, np__task *t) {
  s->current = NULL;
  if (t->reason == NP__SW_PARK)
    np__sched_after_park(s, t);
  else if (t->reason == NP__SW_EXIT)
    return true;
  else
    np__sched_after_yield(s, t);
  return false;
}

/* Busy: polls without blocking now and then (fairness for the parked). */
void np__sched_maybe_poll(np__sched *s);
/* Nothing to run: sleep in epoll_wait until readiness, a timer or the
 * break (an inbox push) wakes it; returns at once if any is pending. */
void np__sched_idle(np__sched *s);

#endif
