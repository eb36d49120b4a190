/*
 * runq.h - a scheduler's local run queue: a FIFO of tasks linked through
 * their `next` field, plus Go's runnext slot (the task made ready by the
 * running one runs before older work; the task it displaces goes to the
 * tail). Owned by one scheduler thread: no locks, no atomics.
 *
 * It must never hold a task twice (the caller's queued flag guards that)
 * nor lose one: every push is popped exactly once, runnext first, but
 * never more than NP__RUNNEXT_STREAK times in a row while the FIFO waits:
 * two tasks that keep handing off to each other through runnext (a lock
 * passed back and forth) would otherwise starve the rest for ever. Go
 * bounds the same chain by time (the pair shares one time slice, and
 * sysmon preempts it); without preemption, a count.
 */
#ifndef NP_RUNQ_H
#define NP_RUNQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct np__runq_node np__runq_node;
struct np__runq_node {
  np__runq_node *next;
};

#define NP__RUNNEXT_STREAK 61 /* runnext pops in a row before the FIFO's head gets a turn */

typedef struct np__runq {
  np__runq_node *head, *tail; /* FIFO */
  np__runq_node *runnext;     /* runs before head */
  uint64_t len;               /* FIFO length + (runnext != NULL) */
  uint32_t streak;            /* runnext pops in a row while the FIFO was waiting */
} np__runq;

static inline void np__runq_init(np__runq *q) {
  q->head = q->tail = q->runnext = NULL;
  q->len = 0;
  q->streak = 0;
}

static inline void np__runq_push_tail(np__runq *q, np__runq_node *n) {
  n->next = NULL;
  if (q->tail != NULL)
    q->tail->next = n;
  else
    q->head = n;
  q->tail = n;
  q->len++;
}

/* n runs next; a task already in the slot moves to the tail. */
static inline void np__runq_push_next(np__runq *q, np__runq_node *n) {
  np__runq_node *old = q->runnext;
  q->runnext = n;
  n->next = NULL;
  q->len++;
  if (old != NULL) {
    q->len--; /* push_tail counts it again */
    np__runq_push_tail(q, old);
  }
}

/* Appends a NULL-terminated chain of count nodes (an inbox batch), in order. */
static inline void np__runq_push_chain(np__runq *q, np__runq_node *first, np__runq_node *last,
                                       uint64_t count) {
  if (first == NULL) return;
  last->next = NULL;
  if (q->tail != NULL)
    q->tail->next = first;
  else
    q->head = first;
  q->tail = last;
  q->len += count;
}

static inline np__runq_node *np__runq_pop(np__runq *q) {
  np__runq_node *n = q->runnext;
  if (n != NULL && (q->head == NULL || q->streak < NP__RUNNEXT_STREAK)) {
    q->runnext = NULL;
    q->streak = q->head != NULL ? q->streak + 1 : 0; /* alone, runnext starves nobody */
  } else {
    q->streak = 0; /* runnext, if any, stays and runs next */
    n = q->head;
    if (n == NULL) return NULL;
    q->head = n->next;
    if (q->head == NULL)
      q->tail = NULL;
    else
      __builtin_prefetch(q->head); /* the next pop reads its link: a cold task of many */
  }
  n->next = NULL;
  q->len--;
  return n;
}

static inline int np__runq_empty(const np__runq *q) { return q->runnext == NULL && q->head == NULL; }

#endif
