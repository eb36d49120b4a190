/*
 * blocking.c - np_blocking's helper threads: run a function on a helper
 * while the calling task is parked, so that a blocking call (a regular
 * file, getaddrinfo, long computation) holds a helper, not a scheduler.
 *
 * Helpers start on demand (at most max, then jobs queue), wait for work on
 * a condition variable and exit at fini. Core code: np_rtsim runs it with
 * jobs that wait for one another. It must never: run a job before its task
 * has switched out (the job is queued by the park's commit step); lose a
 * queued job (fini comes after every task is done, so none is left by
 * then); queue a job behind a running one while fewer than max helpers
 * exist (a job may wait for another job's result: an idle helper already
 * signalled for an earlier job is not free).
 */
#include <errno.h>
#include <stdlib.h>

#include "blocking.h"

/* The group whose task waits for the job this helper thread runs: that
 * job must not wait for the group's tasks (np_wait_tasks, destroy). */
#ifdef NP_PORT_SIM
#define SET_JOB_GROUP(g) ((void)(g)) /* np_rtsim has no np_wait_tasks */
#else
static __thread struct np__group *tls_job_group;
struct np__group *np__tls_job_group(void) {
  return tls_job_group;
}
#define SET_JOB_GROUP(g) (tls_job_group = (g))
#endif

void np__helpers_init(np__helpers *h, int max, struct np__group *group) {
  *h = (np__helpers){.max = max, .group = group};
  np__mutex_init(&h->lock);
  np__cond_init(&h->cond);
}

static void *helper_main(void *arg) {
  np__helpers *h = arg;
  np__mutex_lock(&h->lock);
  for (;;) {
    while (h->head == NULL && !h->stop) {
      h->idle++;
      np__cond_wait(&h->cond, &h->lock);
      h->idle--;
    }
    if (h->head == NULL) break; /* stopping */
    np__job *j = h->head;
    h->head = j->next;
    if (h->head == NULL) h->tail = NULL;
    h->queued--;
    np__mutex_unlock(&h->lock);
    SET_JOB_GROUP(h->group);
    j->fn(j->arg);
    SET_JOB_GROUP(NULL);
    np__task_ready(j->task); /* j lives on the task's stack: last touch */
    np__mutex_lock(&h->lock);
  }
  np__mutex_unlock(&h->lock);
  return NULL;
}

/* Starts a helper unless an idle one is left over for the job about to be
 * queued: idle helpers count until they wake, so the jobs already queued
 * have a claim on as many of them. Called with the lock held. */
static int helper_spawn(np__helpers *h) {
  if (h->idle > h->queued || h->count >= h->max) return 0;
  if (h->threads == NULL) {
    h->threads = calloc((size_t)h->max, sizeof(*h->threads));
    if (h->threads == NULL) return h->count > 0 ? 0 : -ENOMEM;
  }
  int err = np__thread_start(&h->threads[h->count], helper_main, h);
  if (err != 0) return h->count > 0 ? 0 : err; /* queue for the existing ones */
  h->count++;
  return 0;
}

bool np__helpers_submit(np__helpers *h, np__job *j) {
  np__mutex_lock(&h->lock);
  j->err = helper_spawn(h);
  if (j->err == 0) {
    j->next = NULL;
    if (h->tail != NULL)
      h->tail->next = j;
    else
      h->head = j;
    h->tail = j;
    h->queued++;
    np__cond_signal(&h->cond);
  }
  np__mutex_unlock(&h->lock);
  return j->err == 0;
}

void np__helpers_fini(np__helpers *h) {
  np__mutex_lock(&h->lock);
  h->stop = true;
  np__cond_broadcast(&h->cond);
  np__mutex_unlock(&h->lock);
  for (int i = 0; i < h->count; i++) np__thread_join(h->threads[i]);
  free(h->threads);
  h->threads = NULL;
  h->count = 0;
  np__cond_destroy(&h->cond);
  np__mutex_destroy(&h->lock);
}
