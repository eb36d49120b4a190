/*
 * shrink.h - reduce a failing scenario to a small one that still fails the
 * same way (same invariant class: the failure message up to its first ':').
 */
#ifndef SIM_SHRINK_H
#define SIM_SHRINK_H

#include <stdint.h>
#include <stdio.h>

#include "scenario.h"
#include "world.h"

typedef struct shrink_stats {
  int candidates, accepted;
  uint64_t seed; /* the seed the reduced scenario fails with */
  char failure[512];
} shrink_stats;

/* in must fail with seed under base options. Returns 0 with *out reduced
 * (out->seed/has_seed set), -1 if in does not fail to begin with, or -2 if
 * it stops on an input error (SIM_INPUT_ERROR, in stats->failure), which
 * is the scenario's fault and must not be "reduced" as a library bug. */
int sc_shrink(const scenario *in, uint64_t seed, const world_options *base, int seeds_per_candidate,
              scenario *out, shrink_stats *stats, FILE *log);

#endif
