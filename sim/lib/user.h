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
} ut_task;

typedef struct ut_state {
  np_poller *p; /* the one poller (the simulated kernel has one epoll instance) */
  sim_task *poller_task, *net_task;
  bool stop_poller, stop_net;
  int live;               /* user tasks started and not yet returned */
  sim_task *tasks_waiter; /* np_wait_tasks */
  int next_task;
  uint64_t hash; /* of the API trace: the selfcheck compares it */
  FILE *trace;   /* live API trace (--trace), or NULL */
  int64_t time_limit;
} ut_state;

extern ut_state U;

/* The user task running now, or NULL (the driver, the poller, the network). */
ut_task *ut_current(void);
/* Records one API call in the trace (hash always; text when tracing). */
void ut_trace(const char *call, int fd, int64_t arg, int64_t result);
/* Marks the current task as inside call on fd (NULL call: left it). */
void ut_enter(const char *call, int fd);
void ut_leave(void);
/* The driver's end: stops the network task. */
void ut_stop_net(void);
void ut_start_net(void);

#endif
