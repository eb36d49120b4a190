/*
 * common.c - public calls whose meaning is the same in the real and the
 * simulated library (a core source, compiled into both): the deadline
 * helpers on the port's clock, and the validation of np_options.
 */
#include <errno.h>

#include "np_internal.h"

int64_t np_now(void) { return np__now(); }

int64_t np_deadline_after(int64_t delay_ns) {
  int64_t now = np__now();
  /* Already passed, never 0 ("none"): -1 while the clock is at 0 or 1 (a
   * simulated run's first instant), where now - 1 would not be in the past. */
  if (delay_ns <= 0) return now > 1 ? now - 1 : -1;
  if (delay_ns > INT64_MAX - now) return INT64_MAX;
  return now + delay_ns;
}

int np__options_check(const np_options *o) {
  if (o == NULL) return 0;
  if (o->events_max < 0 || o->events_max > NP__EVENTS_MAX || o->procs < 0 || o->procs > NP__PROCS_MAX)
    return -EINVAL;
  if (o->stack_size != 0 && (o->stack_size < NP_STACK_MIN || o->stack_size > NP_STACK_MAX)) return -EINVAL;
  return 0;
}
