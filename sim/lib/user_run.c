/*
 * user_run.c - one simulated run of one of the program's tests: a fresh
 * scheduler, kernel and network for the seed, swarm faults drawn from it,
 * the test body as the first task of np_run, and the verdict: the test's
 * own checks, the core's invariants, the handle heap (use after free),
 * every task finished (else which are stuck, in which call) and the
 * virtual time limit.
 */
#include "user_run.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "handle_heap.h"
#include "kernel.h"
#include "user.h"

static const ut_test *running;

static void body(void *arg) {
  (void)arg;
  np_task_name(running->name);
  if (running->fn != NULL)
    running->fn();
  else
    running->task(running->arg);
}

static void driver(void *arg) {
  (void)arg;
  ut_start_net();
  int err = np_run(NULL, body, NULL);
  if (err != 0) sim_fail("np_run: %s", np_strerror(err));
  /* Pollers the test left behind end as at process exit, natively: their
   * tasks see NP_ECLOSING (a task that never returns is then stuck). */
  for (int i = 0; i < UT_POLLERS_MAX; i++)
    if (U.pollers[i].p != NULL) np_poller_destroy(U.pollers[i].p);
  ut_stop_net();
}

/* Swarm testing: each fault is on in about half the seeds, at a rate
 * drawn from the seed. Faults a correct program never sees from a TCP
 * socket (EPOLLERR alone) stay off; EINTR and EAGAIN are absorbed by the
 * library as natively. */
static void draw_faults(bool on, ut_faults *out) {
  static const uint32_t rates[] = {1000, 10000, 50000, 200000};
  static const int64_t latencies[] = {0, 10000, 1000000, 50000000};
  kern_faults *k = kern_faults_get();
  kern_net *n = kern_net_get();
  memset(out, 0, sizeof(*out));
  n->on = true;
  n->latency_max = latencies[sim_rand_below(4)];
  out->latency_max = n->latency_max;
  if (!on) return;
  k->active = true;
  uint32_t *io[] = {&k->short_io,       &k->rw_eintr,      &k->spurious_eagain, &k->epoll_eintr,
                    &k->spurious_ready, &k->maxevents_cut, &k->accept_abort};
  for (size_t i = 0; i < sizeof(io) / sizeof(io[0]); i++)
    if (sim_chance(500000)) *io[i] = rates[sim_rand_below(4)];
  if (sim_chance(250000)) k->accept_emfile = rates[sim_rand_below(2)];
  if (sim_chance(250000)) n->syn_drop = rates[1 + sim_rand_below(3)];
  if (sim_chance(250000)) n->reset_write = rates[sim_rand_below(2)];
  k->urgent = k->short_io; /* TCP cuts reads short at an urgent mark too */
  out->short_io = k->short_io;
  out->accept_emfile = k->accept_emfile;
  out->accept_abort = k->accept_abort;
  out->syn_drop = n->syn_drop;
  out->reset_write = n->reset_write;
}

static void check(void *ctx, bool quiescent) {
  (void)ctx;
  if (quiescent) ut_check_quiescent();
  if (quiescent && U.time_limit > 0 && sim->now > U.time_limit)
    sim_fail("time limit: the run passed %.3f s of virtual time%s", (double)U.time_limit / 1e9,
             " (a task retries forever, or waits far longer than it should)");
}

/* "I8: no task can ever run" in the program's terms: who waits, in which call. */
static void stuck_report(char *out, size_t len) {
  size_t used =
      (size_t)snprintf(out, len, "stuck: tasks wait forever (no readiness, timer or close will come):");
  for (int i = 0; i < sim->task_count && used < len - 80; i++) {
    sim_task *t = sim->tasks[i];
    ut_task *u = t->actor;
    if (t->state == SIM_DONE || u == NULL) continue;
    if (u->call != NULL && u->call_fd >= 0)
      used += (size_t)snprintf(out + used, len - used, " %s in %s(fd %d) since %.6f s;", t->name, u->call,
                               u->call_fd, (double)u->call_since / 1e9);
    else if (u->call != NULL)
      used += (size_t)snprintf(out + used, len - used, " %s in %s since %.6f s;", t->name, u->call,
                               (double)u->call_since / 1e9);
    else
      used += (size_t)snprintf(out + used, len - used, " %s blocked (%s);", t->name,
                               t->block_reason != NULL ? t->block_reason : "parked");
  }
  /* The runner's own tasks say where the end of the test waits. */
  if (sim->tasks[0]->state != SIM_DONE && sim->tasks[0]->block_reason != NULL && used < len - 80)
    snprintf(out + used, len - used, " (the test's end waits in %s)", sim->tasks[0]->block_reason);
}

/* A failed run stops where it is; free what it held (the handle heap is
 * unmapped by sim_heap_reset, the user's own memory is the user's). */
static void reclaim(void) {
  for (int i = 0; i < sim->task_count; i++) {
    free(sim->tasks[i]->actor);
    sim->tasks[i]->actor = NULL;
  }
  for (int i = 0; i < UT_POLLERS_MAX; i++) {
    np_poller *p = U.pollers[i].p;
    if (p == NULL) continue;
    for (np__pd_block *b = p->blocks, *next; b != NULL; b = next) {
      next = b->next;
      free(b);
    }
    free(p->heap);
    free(p);
    U.pollers[i].p = NULL;
  }
}

int ut_run(const ut_test *t, const ut_run_options *o, ut_result *r) {
  static sim_sched s;
  sim_config cfg = {.seed = o->seed,
                    .strategy = o->pct ? SIM_PCT : SIM_RANDOM,
                    .pct_depth = 3,
                    .step_limit = o->step_limit,
                    .pct_steps = o->pct_steps};
  sim_init(&s, &cfg);
  kern_reset();
  kern_set_pipe_sigpipe(true);
  sim_heap_reset();
  memset(&U, 0, sizeof(U));
  U.trace = o->trace;
  kern_set_note_hook(ut_trace_note);
  U.time_limit = o->time_limit;
  draw_faults(o->faults, &r->faults);
  running = t;
  sim_spawn("main", driver, NULL);
  int rc = sim_run(&s, check, NULL, NULL);
  r->failed = rc != 0;
  if (rc != 0 && strncmp(s.failure, "I8", 2) == 0)
    stuck_report(r->failure, sizeof(r->failure));
  else
    snprintf(r->failure, sizeof(r->failure), "%s", s.failure);
  r->steps = s.steps;
  r->virtual_ns = s.now;
  r->hash = s.trace_hash ^ U.hash;
  if (rc != 0) reclaim();
  sim_heap_reset();
  sim_fini(&s);
  kern_reset();
  return r->failed ? -1 : 0;
}

/* The port asks the world to check each wait's result against history
 * (I3, sim/world.c); a user's program has no scripted history to check. */
int np__port_wait_result(const void *pd, int mode, int result) {
  (void)pd, (void)mode;
  return result;
}
