/*
 * timer_check.h - I8's view of a poller's deadline heap, for the world's
 * checks (sim/world.c) and libnetpoll-sim's (sim/lib/user_check.c): the
 * earliest timer found by looking at every entry, never taken from the
 * heap's root, and the heap's shape checked on the way (a removal without
 * its sift-up hid a due deadline below a later root; mutant m47).
 */
#ifndef SIM_TIMER_CHECK_H
#define SIM_TIMER_CHECK_H

#include <inttypes.h>

#include "np_internal.h"
#include "sched.h"

/* The earliest armed timer, by a scan of every heap entry; and the heap's
 * own shape: each entry knows its index and is not earlier than its parent
 * (I8: a broken order hides a due timer below a later root). */
static inline int64_t sim_earliest_timer(const np_poller *p) {
  int64_t due = INT64_MAX;
  for (int32_t i = 0; i < p->heap_len; i++) {
    const np__timer *t = p->heap[i];
    if (t->heap_index != i) sim_fail("I8: timer heap entry %d says it is at %d", (int)i, (int)t->heap_index);
    if (i > 0 && p->heap[(i - 1) / 2]->when_ns > t->when_ns)
      sim_fail("I8: timer heap out of order: entry %d (due %" PRId64 ") below entry %d (due %" PRId64 ")",
               (int)i, t->when_ns, (int)((i - 1) / 2), p->heap[(i - 1) / 2]->when_ns);
    if (t->when_ns < due) due = t->when_ns;
  }
  return due;
}

#endif
