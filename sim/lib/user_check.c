/*
 * user_check.c - the library's own invariants during a user's simulated
 * run, checked whenever every task is blocked (the clock is about to jump
 * or the run is stuck): each parked task is still installed in its pd
 * (I2), none waits on a descriptor that is ready with no event on its way
 * to a sleeping poller (I8, a lost wake-up), each poller's parked count is
 * exact (I11), and no poller sleeps past a due deadline timer (I8). The
 * scenario world (sim/world.c) checks the same and more with its scripted
 * history; a user's program has none, so the history oracles stay there.
 */
#include <inttypes.h>
#include <string.h>

#include "kernel.h"
#include "oracle.h"
#include "timer_check.h"
#include "user.h"
#include "user_run.h"

#define MS_NS INT64_C(1000000)

static bool polls_asleep(const ut_poller *up) {
  return up->task != NULL && up->task->state == SIM_BLOCKED && up->task->block_reason != NULL &&
         strcmp(up->task->block_reason, "epoll_wait") == 0;
}

static void check_parked(sim_task *t) {
  np__waiter *w = t->waiter;
  np__pd *pd = (np__pd *)w->pd;
  uintptr_t installed = w->mode == 'r' ? pd->rg : pd->wg;
  if (installed != (uintptr_t)w)
    sim_fail("I2: %s parked but no longer installed: a wake-up was lost", t->name);
  ut_poller *up = ut_poller_of(pd->poller);
  uint32_t mask = kern_poll_mask(pd->fd);
  if (up != NULL && !t->pure_wait && oracle_wakes(mask, w->mode) && !kern_item_queued(pd->fd) &&
      polls_asleep(up))
    sim_fail("I8: %s parked (%c) on fd %d although it is ready (mask %#x) and no event is pending", t->name,
             w->mode, pd->fd, mask);
}

static void check_poller(const ut_poller *up) {
  np_poller *p = up->p;
  uint32_t parked = 0;
  for (int i = 0; i < sim->task_count; i++) {
    const sim_task *t = sim->tasks[i];
    if (t->state == SIM_PARKED && ((const np__pd *)t->waiter->pd)->poller == p) parked++;
  }
  if (p->waiters != parked) sim_fail("I11: waiter count %u but %u waiters parked", p->waiters, parked);
  if (p->heap_len == 0) return;
  int64_t due = sim_earliest_timer(p); /* also checks the heap's shape */
  if (!polls_asleep(up)) return;
  int64_t sleep_end = up->task->wake_at < 0 ? INT64_MAX : up->task->wake_at;
  if (due - sim->now <= KERN_WAIT_HORIZON_NS && sleep_end > due + MS_NS)
    sim_fail("I8: a poller sleeps until %" PRId64 " past a timer due at %" PRId64, sleep_end, due);
}

void ut_check_quiescent(void) {
  for (int i = 0; i < sim->task_count; i++)
    if (sim->tasks[i]->state == SIM_PARKED) check_parked(sim->tasks[i]);
  for (int i = 0; i < UT_POLLERS_MAX; i++)
    if (U.pollers[i].p != NULL) check_poller(&U.pollers[i]);
}
