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

#include "blocking.h"
#include "sched_core.h"

/* The native side of a scheduler. */
typedef struct np__sched_os {
  pthread_t thread;
  stack_t altstack; /* SIGSEGV handler stack (stack overflow report) */
} np__sched_os;

struct np__group {
  int n;               /* schedulers (0: a manual test poller, no tasks) */
  np__sched *scheds;   /* n */
  np__sched_os *os;    /* n */
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
  np__helpers helpers; /* np_blocking (blocking.c) */
  np__fdtable fds;     /* the numbers handles own, group-wide (fdtable.c) */
};

/* task.c */
np__task *np__tls_task(void);
void np__task_park(bool (*commit)(void *arg), void *arg);
int np__group_start(np__group *g, int procs, size_t stack_size);
void np__group_begin_shutdown(np__group *g);
void np__group_shutdown(np__group *g);
/* stack.c */
int np__stack_get(np__group *g, np__stack *out);
void np__stack_put(np__group *g, const np__stack *st);
void np__stack_pool_fini(np__group *g);
#ifdef NP_TEST_HOOKS
/* Test builds only: stacks mapped and not yet unmapped, process-wide (a
 * stack a failure path forgets is a mapping nobody frees: LSan does not
 * see mmap). */
extern long np__test_stacks_mapped;
#endif
size_t np__stack_default(void);
void np__overflow_install(void);
int np__altstack_init(np__sched_os *s);
void np__altstack_fini(np__sched_os *s);

#endif
