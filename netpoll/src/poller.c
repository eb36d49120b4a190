/*
 * poller.c - the poller (Go's netpoll(delay) and netpollBreak) and the
 * deadline timer heap it runs.
 *
 * It must never: drain the break in a non-blocking poll (Go 42515: the
 * wake-up it eats was meant for a blocking poller); write a second break
 * while one is pending; turn a sub-millisecond timeout into a busy 0-ms
 * poll; let a timer that becomes due while the poller sleeps wait for some
 * unrelated event (adding an earlier timer breaks the sleep); treat EINTR as
 * fatal.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "np_internal.h"

/* ---- timer heap (min-heap on when_ns, under timer_lock) ------------------ */

static void heap_swap(np__timer **heap, int32_t i, int32_t j) {
  np__timer *t = heap[i];
  heap[i] = heap[j];
  heap[j] = t;
  heap[i]->heap_index = i;
  heap[j]->heap_index = j;
}

static void heap_up(np__timer **heap, int32_t i) {
  while (i > 0) {
    int32_t parent = (i - 1) / 2;
    if (heap[parent]->when_ns <= heap[i]->when_ns) return;
    heap_swap(heap, i, parent);
    i = parent;
  }
}

static void heap_down(np__timer **heap, int32_t len, int32_t i) {
  for (;;) {
    int32_t left = 2 * i + 1, right = left + 1, least = i;
    if (left < len && heap[left]->when_ns < heap[least]->when_ns) least = left;
    if (right < len && heap[right]->when_ns < heap[least]->when_ns) least = right;
    if (least == i) return;
    heap_swap(heap, i, least);
    i = least;
  }
}

static void heap_remove(np_poller *p, np__timer *t) {
  int32_t i = t->heap_index;
  NP_ASSERT(i >= 0 && i < p->heap_len && p->heap[i] == t);
  int32_t last = --p->heap_len;
  if (i != last) {
    heap_swap(p->heap, i, last);
    heap_down(p->heap, p->heap_len, i);
    heap_up(p->heap, i);
  }
  t->heap_index = -1;
}

bool np__timer_set(np_poller *p, np__timer *t, int64_t when_ns, int kind, uintptr_t seq) {
  NP_ASSERT(when_ns > 0);
  NP_ASSERT(kind >= NP__TIMER_READ && kind <= NP__TIMER_FN);
  NP_ASSERT((kind == NP__TIMER_FN) == (t->fn != NULL));
  bool need_break = false;
  np__mutex_lock(&p->timer_lock);
  t->when_ns = when_ns;
  t->kind = kind;
  t->seq = seq;
  if (t->heap_index < 0) {
    NP_ASSERT(p->heap_len < p->heap_cap); /* capacity reserved per pd block */
    t->heap_index = p->heap_len;
    p->heap[p->heap_len++] = t;
    heap_up(p->heap, t->heap_index);
  } else {
    heap_down(p->heap, p->heap_len, t->heap_index);
    heap_up(p->heap, t->heap_index);
  }
  /* The poller sleeps until sleep_until; an earlier timer must wake it (I8). */
  if (p->sleep_until != 0 && when_ns < p->sleep_until) need_break = true;
  np__mutex_unlock(&p->timer_lock);
  return need_break;
}

bool np__timer_del(np_poller *p, np__timer *t) {
  np__mutex_lock(&p->timer_lock);
  bool pending = t->heap_index >= 0;
  if (pending) heap_remove(p, t); /* else already fired: its seq is stale */
  np__mutex_unlock(&p->timer_lock);
  return pending;
}

/* Heap room: two timers per pd ever allocated, plus the reservations. */
int np__heap_grow_locked(np_poller *p, int64_t need) {
  if (need <= p->heap_cap) return 0;
  if (need > INT32_MAX / 2) return -ENOMEM;
  np__timer **heap = realloc(p->heap, (size_t)need * sizeof(*heap));
  if (heap == NULL) return -ENOMEM;
  p->heap = heap;
  p->heap_cap = (int32_t)need;
  return 0;
}

int np__timer_reserve(np_poller *p, int32_t delta) {
  np__mutex_lock(&p->timer_lock);
  int err = 0;
  if (delta > 0) {
    /* A block being added may already count in the heap but not yet in
     * stat_pds: leave room for it. */
    int64_t pds = (int64_t)np__load_u64(&p->stat_pds) + NP__PD_BLOCK_COUNT;
    err = np__heap_grow_locked(p, pds * 2 + p->heap_reserved + delta);
  }
  if (err == 0) p->heap_reserved += delta;
  NP_ASSERT(p->heap_reserved >= 0);
  np__mutex_unlock(&p->timer_lock);
  return err;
}

void np__timer_fire_fn_all(np_poller *p) {
  for (;;) {
    np__timer *t = NULL;
    np__mutex_lock(&p->timer_lock);
    for (int32_t i = 0; i < p->heap_len && t == NULL; i++)
      if (p->heap[i]->kind == NP__TIMER_FN) t = p->heap[i];
    if (t != NULL) heap_remove(p, t);
    np__mutex_unlock(&p->timer_lock);
    if (t == NULL) return;
    t->fn(t);
  }
}

int np__run_timers(np_poller *p, int64_t now_ns) {
  int ran = 0;
  for (;;) {
    np__mutex_lock(&p->timer_lock);
    if (p->heap_len == 0 || p->heap[0]->when_ns > now_ns) {
      np__mutex_unlock(&p->timer_lock);
      return ran;
    }
    np__timer *t = p->heap[0];
    np__pd *pd = t->pd;
    uintptr_t seq = t->seq;
    int kind = t->kind;
    heap_remove(p, t);
    np__mutex_unlock(&p->timer_lock);
    /* Outside the timer lock (lock order is pd, then timers). If the deadline
     * changes in between, seq no longer matches and the firing is dropped. */
    if (kind == NP__TIMER_FN)
      t->fn(t); /* owned by whoever armed it; it may be reused from here on */
    else
      np__pd_deadline_fired(pd, seq, kind);
    ran++;
  }
}

/* ---- break ---------------------------------------------------------------- */

void np__netpoll_break(np_poller *p) {
  if (!np__cas_u32(&p->wake_sig, 0, 1)) return; /* one already pending */
  int err = p->backend->wake(p->backend_state);
  if (err != 0 && err != -EAGAIN) {
    np__poller_fail(p, err); /* the break is gone: wake_sig stays set, no retry */
    return;
  }
  np__stat_add(&p->stat_breaks, 1);
}

/* ---- failure of the poller's own descriptors ------------------------------ */

void np__poller_fail(np_poller *p, int err) {
  NP_ASSERT(err < 0);
  (void)np__cas_u32(&p->failed, 0, (uint32_t)-err); /* the first error is kept */
  /* Every pd in use, under the cache lock (blocks only grow under it; lock
   * order: cache lock, then a pd lock). */
  np__mutex_lock(&p->cache_lock);
  for (np__pd_block *b = p->blocks; b != NULL; b = b->next)
    for (int i = 0; i < NP__PD_BLOCK_COUNT; i++) np__pd_fail(&b->pds[i]);
  np__mutex_unlock(&p->cache_lock);
}

/* ---- netpoll -------------------------------------------------------------- */

int np__netpoll(np_poller *p, int64_t delay_ns) {
  /* On the stack: a non-blocking poll may run while another caller blocks
   * here (as Go's findrunnable polls while an M sleeps in netpoll). */
  np__event events[NP__EVENTS_MAX];
  int n;
  for (int tries = 0;; tries++) {
    NP_ASSERT(tries < 1000000);
    np__stat_add(&p->stat_polls, 1);
    n = p->backend->wait(p->backend_state, events, p->events_max, delay_ns);
    if (n >= 0) break;
    if (n != -EINTR) {
      np__poller_fail(p, n); /* the epoll descriptor is gone (EBADF, EINVAL) */
      return n;
    }
    /* I9: a blocking poll retries; a timed one returns so the caller can
     * recompute its timers. */
    if (delay_ns >= 0) return 0;
  }
  NP_ASSERT(n <= p->events_max);
  int woken = 0;
  for (int i = 0; i < n; i++) {
    np__event *ev = &events[i];
    if (ev->tag == 0) {
      if (ev->events != EPOLLIN) NP_PANIC("netpoll break: unexpected events");
      /* Only a poll that may block consumes the break (Go 42515): a
       * non-blocking poll would steal the wake-up of a blocked one. */
      if (delay_ns != 0) {
        int err = p->backend->drain(p->backend_state);
        if (err != 0 && err != -EAGAIN) {
          np__poller_fail(p, err);
          continue; /* wake_sig stays set: no more breaks */
        }
        np__store_u32(&p->wake_sig, 0);
      }
      continue;
    }
    uint32_t fdseq;
    np__pd *pd = np__pd_untag(ev->tag, &fdseq);
    woken += np__pd_ready(pd, fdseq, ev->events);
  }
  return woken;
}

int np__poll_once(np_poller *p, bool block) {
  /* Timers that ran may have made tasks of this poller's scheduler ready:
   * then it must not block (np_rtsim found it: a task woken by its sleep
   * timer waited for the next timer or event). */
  if (np__run_timers(p, np__now()) > 0) block = false;
  if (!block) return np__netpoll(p, 0); /* leaves sleep_until to the sleeper */

  /* sleep_until belongs to the one blocking poller: a concurrent
   * non-blocking poll must not clear it, or a timer added meanwhile would
   * not break the sleep (found by the simulator). */
  int64_t delay;
  np__mutex_lock(&p->timer_lock);
  if (p->poller_blocking) NP_PANIC("two blocking pollers on one poller");
  p->poller_blocking = true;
  int64_t now = np__now();
  if (p->heap_len == 0) {
    delay = -1;
  } else if (p->heap[0]->when_ns <= now) {
    delay = 0;
  } else {
    delay = p->heap[0]->when_ns - now;
  }
  /* A bounded sleep, so that a poller whose break descriptor died (closed
   * behind the library) still notices its failed state and its inbox. */
  if (p->sleep_cap_ns > 0 && (delay < 0 || delay > p->sleep_cap_ns)) delay = p->sleep_cap_ns;
  p->sleep_until = delay < 0 ? INT64_MAX : delay == 0 ? 0 : now + delay;
  np__mutex_unlock(&p->timer_lock);

  int n = np__netpoll(p, delay);

  np__mutex_lock(&p->timer_lock);
  p->sleep_until = 0;
  p->poller_blocking = false;
  np__mutex_unlock(&p->timer_lock);
  return n;
}

/* ---- lifecycle ------------------------------------------------------------ */

int np__poller_init(np_poller *p, const np__backend *backend, int events_max) {
  NP_ASSERT(p != NULL && backend != NULL);
  if (events_max <= 0) events_max = NP__EVENTS_MAX;
  if (events_max > NP__EVENTS_MAX) return -EINVAL;
  memset(p, 0, sizeof(*p));
  p->backend = backend;
  p->events_max = events_max;
  int err = backend->create(&p->backend_state);
  if (err != 0) return err;
  np__mutex_init(&p->cache_lock);
  np__mutex_init(&p->timer_lock);
  np__mutex_init(&p->fds_lock);
  return 0;
}

void np__poller_fini(np_poller *p) {
  NP_ASSERT(np__load_u32(&p->waiters) == 0); /* I11 at shutdown */
  NP_ASSERT(p->heap_len == 0);               /* every timer stopped by close */
  NP_ASSERT(p->fds == NULL);
  np__pd_cache_fini(p);
  p->backend->destroy(p->backend_state);
  free(p->heap);
  np__mutex_destroy(&p->cache_lock);
  np__mutex_destroy(&p->timer_lock);
  np__mutex_destroy(&p->fds_lock);
}
