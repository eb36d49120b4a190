/*
 * world.h - one simulated run: a world generated from a seed (streams,
 * actors, deadline setters, closers, faults), executed by the scheduler
 * on the real core, checked against invariants I1-I12 and history oracles.
 */
#ifndef SIM_WORLD_H
#define SIM_WORLD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sched.h"

struct scenario;

typedef struct world_options {
  const struct scenario *sc; /* the program to run */
  uint64_t seed;             /* the schedule (and fault decisions) */
  uint64_t step_limit;       /* 0: default */
  bool check_every_step;     /* state invariants at every point (default on) */
  FILE *trace_out;           /* full live trace, or NULL */
  FILE *report;              /* failure report (seed, replay line, trace tail), or NULL */
  int trace_tail;            /* lines of trace in a failure report */
  bool no_faults;
  FILE *outcome;          /* "task index action result" per checked action, or NULL */
  const uint8_t *choices; /* fuzzing: random decisions read from here first */
  size_t choices_len;
  bool allow_stuck;   /* fuzzing: a legitimately blocked-forever program passes */
  uint64_t pct_steps; /* PCT run length k for the change points (0: default); see run.h */
} world_options;

typedef struct world_result {
  bool failed;
  char failure[512];
  uint64_t steps;
  uint64_t switches;
  uint64_t trace_hash;
  int64_t virtual_ns;
  uint64_t faults;
  uint64_t events;
  int tasks;
  bool stuck; /* ended blocked forever (allow_stuck) */
} world_result;

int world_run(const world_options *opts, world_result *result);

#endif
