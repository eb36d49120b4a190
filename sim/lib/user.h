/*
 * user.h - libnetpoll-sim's shared state: a user's program (netpoll.h, its
 * tasks and network calls) run under the deterministic scheduler, on the
 * simulated kernel and network, one seed at a time. Internal to sim/lib.
 */
#ifndef SIM_USER_H
#define SIM_USER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kernel.h"
#include "netpoll.h"
#include "np_internal.h"
#include "sched.h"

/* A task of the user's program (np_go), or the runner's driver. */
typedef struct ut_task {
  sim_task *st;
  np_task_fn fn;
  void *arg;
  np_poller *p;
  const char *call; /* the np_* call it is in, for stuck reports */
  int call_fd;
  int64_t call_since;
  bool sleep_cut; /* destroy ended its np_sleep */
  bool blocking;  /* np_blocking's helper thread for a task of p, not a task */
} ut_task;

/* A poller of the program: one simulated thread polling its own simulated
 * epoll instance (as many at once as the kernel has: KERN_EPOLLS_MAX). */
typedef struct ut_poller {
  np_poller *p; /* NULL: a free slot */
  sim_task *task;
  bool stop;
  int live;          /* its tasks started and not yet returned */
  sim_task *waiters; /* in np_wait_tasks / np_poller_destroy (list through next_wait) */
  size_t stack_size; /* np_options.stack_size: its tasks' native stack */
} ut_poller;

/* A simulated task's stack beyond its native size: the simulator's own
 * frames (schedule points, checks) run on it too. */
#define UT_STACK_SLACK (32 * 1024)

#define UT_POLLERS_MAX KERN_EPOLLS_MAX

typedef struct ut_state {
  ut_poller pollers[UT_POLLERS_MAX];
  sim_task *net_task;
  bool stop_net;
  int next_task;
  uint64_t hash; /* of the API trace: the selfcheck compares it */
  FILE *trace;   /* live API trace (--trace), or NULL */
  int64_t time_limit;
} ut_state;

extern ut_state U;

/* The slot of p, or NULL if p is not a live poller of this run. */
ut_poller *ut_poller_of(const np_poller *p);

/* The user task running now, or NULL (the driver, the poller, the network,
 * np_blocking's helper thread). */
ut_task *ut_current(void);
/* ut_current, or the helper thread running np_blocking's function for a task. */
ut_task *ut_self(void);
/* Outside a run, stops the program with a message naming call. */
void ut_outside_run(const char *call);
/* Says once per process that a limit of the simulator made a call fail. */
void ut_limit(const char *what);
/* Records one API call in the trace (hash always; text when tracing). */
void ut_trace(const char *call, int fd, int64_t arg, int64_t result);
void ut_trace_note(int fd, const char *what);
/* Marks the current task as inside call on fd (NULL call: left it). */
void ut_enter(const char *call, int fd);
void ut_leave(void);
/* The driver's end: stops the network task. */
void ut_stop_net(void);
void ut_start_net(void);

#endif
