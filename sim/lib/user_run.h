/*
 * user_run.h - one simulated run of a test of the user's program.
 */
#ifndef SIM_USER_RUN_H
#define SIM_USER_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "netpoll_test.h"

typedef struct ut_test {
  const char *name;
  np_test_fn fn;   /* an NP_TEST body, or NULL: */
  np_task_fn task; /* np_run's function (a program run by np_run outside a campaign) */
  void *arg;
} ut_test;

typedef struct ut_run_options {
  uint64_t seed;
  bool pct;
  uint64_t step_limit; /* 0: the scheduler's default */
  uint64_t pct_steps;  /* PCT run length (0: measured by a probe run) */
  FILE *trace;         /* the program's API trace, or NULL */
  int64_t time_limit;  /* virtual ns a run may last (0: none) */
  bool faults;         /* swarm faults drawn from the seed */
} ut_run_options;

typedef struct ut_faults { /* what the seed drew, for the report */
  int64_t latency_max;
  uint32_t short_io, accept_emfile, accept_abort, syn_drop, reset_write;
} ut_faults;

typedef struct ut_result {
  bool failed;
  char failure[768];
  uint64_t steps;
  int64_t virtual_ns;
  uint64_t hash; /* schedule and API trace: equal for equal runs */
  ut_faults faults;
} ut_result;

/* Runs t once; 0 passed, -1 failed (r->failure says why). */
int ut_run(const ut_test *t, const ut_run_options *o, ut_result *r);

/* Whether a simulated run is running one of its simulated threads now
 * (not the runner between them, not outside a run). */
bool ut_in_run(void);

/* A failed run's first report line, "\nFAIL test seed N (strategy) at T s
 * virtual: why\n" (user_main.c; user_crash.c prints it from a signal too). */
void ut_fail_line(char *out, size_t len, const char *test, uint64_t seed, bool pct, int64_t virtual_ns,
                  const char *why);

/* The library's invariants when every task is blocked (user_check.c). */
void ut_check_quiescent(void);

/* The determinism guard (user_guard.c): real threads, clocks and sleeps
 * inside a simulated run fail it, naming the call. */
void ut_guard_install(void);

/* user_crash.c: a run that cannot come back to the runner (a signal, a
 * stack overflow, exit() in a run, a sanitizer's death, a task that holds
 * the CPU for stall_seconds of real time without a schedule point) is
 * still reported with its seed and replay command. Install once; arm
 * around each run with what the report says. */
void ut_crash_install(int stall_seconds);
void ut_crash_arm(const char *test, uint64_t seed, bool pct, const char *replay);
void ut_crash_disarm(void);

/* np_run called by a program outside a campaign: one simulated run of fn
 * (seed NP_SIM_SEED, default 1; NP_SIM_TRACE=1 prints the trace;
 * NP_SIM_STRATEGY, NP_SIM_STEPS, NP_SIM_TIME_LIMIT, NP_SIM_STALL and
 * NP_SIM_NO_FAULTS as the test options). Returns
 * 0; a failure is reported and exits with status 1. */
int ut_run_program(np_task_fn fn, void *arg);

#endif
