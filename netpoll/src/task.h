/*
 * task.h - the native task runtime's internal structures: tasks (stackful
 * coroutines), schedulers (one OS thread each, with its own poller, run
 * queue and inbox) and the group of schedulers behind one public np_poller.
 *
 * Model (docs/DESIGN.md, "Tasks runtime"): each scheduler owns one epoll
 * instance; a descriptor is registered with one of them (np_open from a task:
 * the task's scheduler; np_accept: round robin, so connections spread). A
 * task woken by a scheduler thread of its group runs on that thread next
 * (it migrates, as a goroutine runs on the P that readied it); woken from
 * anywhere else it goes to the inbox of the scheduler that last ran it,
 * which is broken out of epoll_wait only if it sleeps there.
 */
#ifndef NP_TASK_H
#define NP_TASK_H

#include <pthread.h>
#include <signal.h>

#include "ctx.h"
#include "np_internal.h"
#include "runq.h"

typedef struct np__task np__task;
typedef struct np__sched np__sched;
typedef struct np__group np__group;

/* Why a task switched back to its scheduler. */
enum { NP__SW_YIELD = 1, NP__SW_PARK = 2, NP__SW_EXIT = 3 };

typedef struct np__stack {
  void *map;      /* mmap base (the guard page is the lowest page) */
  size_t map_len; /* whole mapping */
  void *lo;       /* lowest usable byte, just above the guard */
  size_t len;     /* usable bytes below the task struct */
} np__stack;

struct np__task {
  np__runq_node link; /* run queue / inbox; first member */
  np__ctx ctx;
  np__sched *sched; /* scheduler that runs it or ran it last */
  np__group *group;
  void (*fn)(void *);
  void *arg;
  uint64_t id;
  char name[32]; /* np_task_name; "" if none */
  np__stack stack;
  int reason;                /* NP__SW_* of the last switch out */
  bool (*commit)(void *arg); /* NP__SW_PARK: run on the scheduler stack */
  void *commit_arg;
  np__au32 queued; /* 1 from being made ready until it runs (on one queue at most) */
  np__timer sleep; /* np_sleep */
  bool sleep_cut;  /* the sleep was ended by shutdown */
};

struct np__sched {
  np__group *group;
  int id;
  np_poller *p; /* its poller: epoll instance, break, timers */
  pthread_t thread;
  np__ctx ctx;  /* the scheduler thread's own context */
  np__runq rq;  /* owned by the thread */
  bool in_poll; /* waking from netpoll/timers: FIFO, not runnext */
  uint32_t since_poll;
  int sleepers; /* np_sleep timers armed on p (its thread only) */
  np__au32 sleeping; /* 1 from deciding to block in epoll_wait until awake */
  np__au32 inbox_n;  /* tasks in the inbox (read without the lock) */
  np__mutex inbox_lock;
  np__runq_node *inbox_head, *inbox_tail;
  np__task *current;
  stack_t altstack; /* SIGSEGV handler stack (stack overflow report) */
  uint64_t switches;
};

typedef struct np__blocking_job np__blocking_job;

struct np__group {
  int n;               /* schedulers (0: a manual test poller, no tasks) */
  np__sched *scheds;   /* n */
  np_poller **pollers; /* n, or 1 when n == 0; pollers[0] is the public handle */
  int npollers;
  np__au32 rr; /* round robin: accept, np_go from outside */
  np__au64 next_id;
  np__au32 shutdown;   /* destroy started: no new tasks, sleeps end */
  np__au32 stop;       /* schedulers exit their loops */
  size_t stack_size;   /* usable stack bytes per task */
  np__mutex done_lock; /* protects live, and orders shutdown against np_go */
  pthread_cond_t done_cond;
  uint64_t live;       /* tasks started and not yet finished */
  np__mutex pool_lock; /* stack pool */
  np__stack *pool;
  int pool_len, pool_cap;
  np__mutex job_lock; /* np_blocking helpers */
  pthread_cond_t job_cond;
  np__blocking_job *jobs_head, *jobs_tail;
  int helpers, helpers_idle, helpers_max;
  bool helpers_stop;
  pthread_t *helper_threads;
};

/* task.c */
np__task *np__tls_task(void);
np__sched *np__tls_sched(void);
void np__task_park(bool (*commit)(void *arg), void *arg);
void np__task_ready(np__task *t);
int np__group_start(np__group *g, int procs, size_t stack_size);
void np__group_begin_shutdown(np__group *g);
void np__group_shutdown(np__group *g);
/* stack.c */
int np__stack_get(np__group *g, np__stack *out);
void np__stack_put(np__group *g, const np__stack *st);
void np__stack_pool_fini(np__group *g);
size_t np__stack_default(void);
void np__overflow_install(void);
int np__altstack_init(np__sched *s);
void np__altstack_fini(np__sched *s);
/* blocking.c */
void np__blocking_fini(np__group *g);

#endif
