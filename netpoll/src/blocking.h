/*
 * blocking.h - np_blocking's helper threads (blocking.c): a queue of jobs
 * and the threads that run them, each job's task parked until its job has
 * run. Core code, on the port seam: np_rtsim runs it on simulated threads.
 */
#ifndef NP_BLOCKING_H
#define NP_BLOCKING_H

#include "sched_core.h"

typedef struct np__job np__job;
struct np__job {
  np__job *next;
  void (*fn)(void *arg);
  void *arg;
  np__task *task; /* readied when fn has returned */
  int err;        /* -errno if no helper could take it */
};

typedef struct np__helpers {
  np__mutex lock;
  np__cond cond;
  np__job *head, *tail;
  int queued; /* jobs in the queue, not yet taken by a helper */
  int count, idle, max;
  bool stop;
  np__thread *threads;     /* max, made on first use */
  struct np__group *group; /* whose tasks' jobs these helpers run */
} np__helpers;

void np__helpers_init(np__helpers *h, int max, struct np__group *group);
/* A park's commit step: queues j (a helper runs it, then readies j->task)
 * and returns true; or sets j->err (no helper could be started and none
 * exists) and returns false: the task runs on at once. */
bool np__helpers_submit(np__helpers *h, np__job *j);
/* Native: on a helper running a job for a task of g, g; else NULL. */
struct np__group *np__tls_job_group(void);
/* Stops and joins the helpers; no job may be queued (every task is done). */
void np__helpers_fini(np__helpers *h);

#endif
