/*
 * run.h - one world run as the tools make it: world_run, plus for PCT a
 * probe that measures the run length k first, so that the d-1 priority
 * change points are spread over the whole run (Burckhardt et al. draw them
 * uniformly from [1, k]) instead of a fixed window that short runs never
 * reach and long runs leave mostly uncovered.
 */
#ifndef SIM_RUN_H
#define SIM_RUN_H

#include "world.h"

/* As world_run. With PCT and o->pct_steps == 0: a silent probe of the same
 * world and seed with d = 1 (no change points; identical to the real run up
 * to its first change point) counts the steps k, then the real run uses
 * pct_steps = k. Deterministic: a replay makes the same probe. */
int sim_world_run(const world_options *o, world_result *r);

#endif
