/*
 * run.c - world runs with PCT's run length measured (see run.h).
 */
#include "run.h"

#include "scenario.h"

int sim_world_run(const world_options *o, world_result *r) {
  if (o->sc->strategy == 0 || o->pct_steps > 0) return world_run(o, r);
  static scenario probe_sc; /* large: static */
  probe_sc = *o->sc;
  probe_sc.depth = 1;
  world_options probe = *o;
  probe.sc = &probe_sc;
  probe.report = NULL;
  probe.trace_out = NULL;
  probe.outcome = NULL;
  probe.check_every_step = false; /* checks never change the schedule */
  world_result pr;
  (void)world_run(&probe, &pr);
  world_options real = *o;
  real.pct_steps = pr.steps > 0 ? pr.steps : 1;
  return world_run(&real, r);
}

_Static_assert(SC_TIME_MAX_NS == SIM_TIME_MAX_NS, "the parser's and the scheduler's clock limits differ");
