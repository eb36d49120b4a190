/*
 * sched_core.c - the runtime's cross-thread protocol (see sched_core.h).
 *
 *  - A task is made ready once per park: `queued` goes 0 -> 1 in
 *    np__task_ready (a second ready panics) and back to 0 when a scheduler
 *    takes it to run it; a parked task is on no queue.
 *  - Parking switches to the scheduler first and only then runs the commit
 *    step there (np__sched_after), so whoever sees the committed waiter may
 *    make the task ready at once, on any thread, without racing its
 *    switch-out.
 *  - A scheduler decides to sleep by storing sleeping = 1 and then loading
 *    its inbox count; a remote waker adds to the inbox count and then loads
 *    sleeping (both sequentially consistent: one of the two sees the other),
 *    and breaks the epoll_wait only when it saw 1 (the break coalesces).
 *  - A run queue is touched by its own scheduler only; every other thread
 *    goes through the inbox.
 */
#include "sched_core.h"

#define POLL_EVERY 61 /* tasks run between two non-blocking polls when busy */

void np__sched_init(np__sched *s, struct np__group *g, int id, np_poller *p, np__au32 *stop) {
  s->group = g;
  s->id = id;
  s->p = p;
  s->stop = stop;
  p->sched = s;
  np__runq_init(&s->rq);
  np__mutex_init(&s->inbox_lock);
}

void np__sched_fini(np__sched *s) { np__mutex_destroy(&s->inbox_lock); }

/* Another thread's wake-up. From the push on, t may run, return and let
 * np_poller_destroy proceed while this thread still breaks s's sleep:
 * wakers keeps the group's memory until the last touch here. The count
 * goes up under the lock, with the task: counted after the unlock, a drain
 * in between took the task uncounted, the count went below zero, and the
 * scheduler spun (awake, "the inbox is not empty") until this thread ran
 * again (np_rtsim's idle-turn check found it). */
static void inbox_push(np__sched *s, np__task *t) {
  np__add_u32(&s->wakers, 1);
  np__mutex_lock(&s->inbox_lock);
  t->link.next = NULL;
  if (s->inbox_tail != NULL)
    s->inbox_tail->next = &t->link;
  else
    s->inbox_head = &t->link;
  s->inbox_tail = &t->link;
  np__add_u32(&s->inbox_n, 1);
  np__mutex_unlock(&s->inbox_lock);
  if (np__load_u32(&s->sleeping)) np__netpoll_break(s->p);
  np__add_u32(&s->wakers, -1); /* the last touch of s */
}

/* Every caller passes on a wake it alone owns (the pd's CAS on rg,
 * np__unpark's and the semaphore's exchanges, a helper's one completion,
 * np_go), so `queued` only checks R2 and is not itself the guard: a load
 * and a store, where a locked CAS cost 8% of a park/unpark round trip. */
void np__task_ready(np__task *t) {
  if (np__load_u32_check(&t->queued) != 0)
    NP_PANIC("task made ready twice (R2: it must resume exactly once)");
  np__store_u32_check(&t->queued, 1);
  np__sched *s = np__tls_sched();
  if (s != NULL && s->group == t->group) {
    if (s->in_poll)
      np__runq_push_tail(&s->rq, &t->link); /* readiness: in event order */
    else
      np__runq_push_next(&s->rq, &t->link); /* woken by the running task: next */
    return;
  }
  inbox_push(t->sched, t);
}

static void inbox_drain(np__sched *s) {
  if (np__load_u32(&s->inbox_n) == 0) return;
  np__mutex_lock(&s->inbox_lock);
  np__runq_node *first = s->inbox_head, *last = s->inbox_tail;
  s->inbox_head = s->inbox_tail = NULL;
  np__mutex_unlock(&s->inbox_lock);
  uint64_t count = 0;
  for (np__runq_node *n = first; n != NULL; n = n->next) count++;
  np__add_u32(&s->inbox_n, -(int32_t)count);
  np__runq_push_chain(&s->rq, first, last, count);
}

np__task *np__sched_next_inbox(np__sched *s) {
  inbox_drain(s);
  return (np__task *)np__runq_pop(&s->rq);
}

void np__sched_after_yield(np__sched *s, np__task *t) {
  if (t->reason != NP__SW_YIELD) NP_PANIC("task switched out without a reason");
  np__store_u32_check(&t->queued, 1);
  np__runq_push_tail(&s->rq, &t->link);
}

static void poll_now(np__sched *s, bool block) {
  s->in_poll = true;
  (void)np__poll_once(s->p, block); /* < 0: the poller failed (np__poller_fail) */
  s->in_poll = false;
  s->since_poll = 0;
}

/* The inbox is taken in whether or not anything waits on the poller: a
 * task woken from another thread (np_blocking's helper, a plain thread's
 * np_close) must not wait behind a task that keeps yielding (np_rtsim's
 * spinner found it). */
void np__sched_maybe_poll(np__sched *s) {
  if (s->since_poll < POLL_EVERY) return;
  inbox_drain(s);
  if (np__load_u32(&s->p->waiters) == 0 && s->sleepers == 0) {
    s->since_poll = 0;
    return;
  }
  poll_now(s, false);
}

void np__sched_idle(np__sched *s) {
  if (np__load_u32(&s->p->failed)) {
    /* Its epoll or break descriptor is gone (every waiter got NP_EPOLLER):
     * no epoll_wait and no break any more; tasks still run (inboxes, the
     * timer heap), found by polling in small sleeps. */
    np__run_timers(s->p, np__now());
    np__port_backoff();
    return;
  }
  /* One blocking poll: it returns at once when events are pending or when
   * its timers made a task ready, so a non-blocking poll first would only
   * add a system call per idle turn. */
  np__store_u32(&s->sleeping, 1);
  if (np__load_u32(&s->inbox_n) == 0 && !np__load_u32(s->stop)) poll_now(s, true);
  np__store_u32(&s->sleeping, 0);
}
