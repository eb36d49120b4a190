/*
 * blocking.c - np_blocking: run a function on a helper thread while the
 * calling task is parked, so that a blocking call (a regular file,
 * getaddrinfo, long computation) holds a helper, not a scheduler.
 *
 * Helpers start on demand (at most helpers_max, then jobs queue), wait for
 * work on a condition variable and exit at destroy. It must never: run a
 * job before its task has switched out (the job is queued by the park's
 * commit step); lose a queued job at destroy (destroy waits for every task,
 * so no job is left by then); queue a job behind a running one while fewer
 * than helpers_max helpers exist (a job may wait for another job's result:
 * an idle helper already signalled for an earlier job is not free).
 */
#include <errno.h>
#include <stdlib.h>

#include "task.h"

struct np__blocking_job {
  np__blocking_job *next;
  np_task_fn fn;
  void *arg;
  np__task *task;
  int err; /* -errno if no helper could take it */
};

/* The group whose task waits for the job this helper thread runs: that
 * job must not wait for the group's tasks (np_wait_tasks, destroy). */
static __thread np__group *tls_job_group;

np__group *np__tls_job_group(void) { return tls_job_group; }

static void *helper_main(void *arg) {
  np__group *g = arg;
  np__mutex_lock(&g->job_lock);
  for (;;) {
    while (g->jobs_head == NULL && !g->helpers_stop) {
      g->helpers_idle++;
      pthread_cond_wait(&g->job_cond, &g->job_lock);
      g->helpers_idle--;
    }
    if (g->jobs_head == NULL) break; /* stopping */
    np__blocking_job *j = g->jobs_head;
    g->jobs_head = j->next;
    if (g->jobs_head == NULL) g->jobs_tail = NULL;
    g->jobs_queued--;
    np__mutex_unlock(&g->job_lock);
    tls_job_group = g;
    j->fn(j->arg);
    tls_job_group = NULL;
    np__task_ready(j->task); /* j lives on the task's stack: last touch */
    np__mutex_lock(&g->job_lock);
  }
  np__mutex_unlock(&g->job_lock);
  return NULL;
}

/* Starts a helper unless an idle one is left over for the job about to be
 * queued: idle helpers count until they wake, so the jobs already queued
 * have a claim on as many of them. Called with job_lock held. */
static int helper_spawn(np__group *g) {
  if (g->helpers_idle > g->jobs_queued || g->helpers >= g->helpers_max) return 0;
  if (g->helper_threads == NULL) {
    g->helper_threads = calloc((size_t)g->helpers_max, sizeof(pthread_t));
    if (g->helper_threads == NULL) return g->helpers > 0 ? 0 : -ENOMEM;
  }
  int err = pthread_create(&g->helper_threads[g->helpers], NULL, helper_main, g);
  if (err != 0) return g->helpers > 0 ? 0 : -err; /* queue for the existing ones */
  g->helpers++;
  return 0;
}

static bool job_commit(void *arg) {
  np__blocking_job *j = arg;
  np__group *g = j->task->group;
  np__mutex_lock(&g->job_lock);
  j->err = helper_spawn(g);
  if (j->err == 0) {
    if (g->jobs_tail != NULL)
      g->jobs_tail->next = j;
    else
      g->jobs_head = j;
    g->jobs_tail = j;
    g->jobs_queued++;
    pthread_cond_signal(&g->job_cond);
  }
  np__mutex_unlock(&g->job_lock);
  return j->err == 0; /* false: run on at once with the error */
}

int np_blocking(np_task_fn fn, void *arg) {
  if (fn == NULL) return -EINVAL;
  np__task *t = np__tls_task();
  if (t == NULL) {
    fn(arg);
    return 0;
  }
  np__blocking_job j = {NULL, fn, arg, t, 0};
  np__task_park(job_commit, &j);
  return j.err;
}

void np__blocking_fini(np__group *g) {
  np__mutex_lock(&g->job_lock);
  g->helpers_stop = true;
  pthread_cond_broadcast(&g->job_cond);
  np__mutex_unlock(&g->job_lock);
  for (int i = 0; i < g->helpers; i++) pthread_join(g->helper_threads[i], NULL);
  free(g->helper_threads);
  g->helper_threads = NULL;
  g->helpers = 0;
}
