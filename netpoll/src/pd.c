/*
 * pd.c - the poll descriptor (Go's runtime/netpoll.go pollDesc): the rg/wg
 * binary semaphores, park with commit, readiness, deadlines with sequence
 * numbers, unblock-on-close, event error, and the type-stable pd cache with
 * its tagged pointers.
 *
 * It must never: free pd memory while the poller lives (the kernel may hand
 * back a tag for a pd long after close); let a stale timer (seq mismatch) or a
 * stale event (fdseq mismatch) touch the pd's current owner; unblock before
 * publishing the info bits that justify it; park after closing is published.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "np_internal.h"

/* ---- tagged pointers ----------------------------------------------------
 * epoll_data is 64 bits: the pd pointer shifted left by 16 (user addresses
 * fit in 48 bits) with its 6 alignment bits, leaving 22 low bits for fdseq.
 * The width is checked at compile time and every packing is checked at run
 * time (round trip), not assumed. */
#define TAG_ADDR_BITS 48
#define TAG_ALIGN_BITS 6
_Static_assert(sizeof(uint64_t) >= sizeof(uintptr_t), "pointer wider than epoll_data");
_Static_assert((1u << TAG_ALIGN_BITS) == NP__PD_ALIGN, "pd alignment must give the tag bits");
_Static_assert(64 - TAG_ADDR_BITS + TAG_ALIGN_BITS == NP__FDSEQ_BITS, "tag width mismatch");
_Static_assert(NP__INFO_SEQ_SHIFT + NP__FDSEQ_BITS <= 32, "fdseq must fit the info word");
_Static_assert(_Alignof(np__pd) == NP__PD_ALIGN, "pd alignment");

uint64_t np__pd_tag(np__pd *pd, uint32_t fdseq) {
  uintptr_t addr = (uintptr_t)pd;
  NP_ASSERT(addr != 0);
  NP_ASSERT((addr & (NP__PD_ALIGN - 1)) == 0);
  NP_ASSERT(((uint64_t)addr >> TAG_ADDR_BITS) == 0); /* pd above 2^48: cannot tag */
  NP_ASSERT(fdseq <= NP__FDSEQ_MASK);
  uint64_t tag = ((uint64_t)addr << (64 - TAG_ADDR_BITS)) | fdseq;
  NP_ASSERT(tag != 0); /* 0 is the break */
  return tag;
}

np__pd *np__pd_untag(uint64_t tag, uint32_t *fdseq) {
  *fdseq = (uint32_t)(tag & NP__FDSEQ_MASK);
  uintptr_t addr = (uintptr_t)((tag >> (64 - TAG_ADDR_BITS)) & ~(uint64_t)(NP__PD_ALIGN - 1));
  return (np__pd *)addr;
}

/* ---- pd cache ------------------------------------------------------------ */

static int cache_grow(np_poller *p) {
  /* Called with cache_lock held. The timer heap holds at most two timers a
   * pd; growing it here keeps np__timer_set allocation-free. */
  np__mutex_lock(&p->timer_lock);
  int64_t heap_need = ((int64_t)np__load_u64(&p->stat_pds) + NP__PD_BLOCK_COUNT) * 2 + p->heap_reserved;
  if (np__heap_grow_locked(p, heap_need) != 0) {
    np__mutex_unlock(&p->timer_lock);
    return -ENOMEM;
  }
  np__mutex_unlock(&p->timer_lock);

  size_t size = (sizeof(np__pd_block) + NP__PD_ALIGN - 1) & ~(size_t)(NP__PD_ALIGN - 1);
  np__pd_block *block = aligned_alloc(NP__PD_ALIGN, size);
  if (block == NULL) return -ENOMEM;
  memset(block, 0, sizeof(*block));
  for (int i = NP__PD_BLOCK_COUNT - 1; i >= 0; i--) {
    np__pd *pd = &block->pds[i];
    pd->poller = p;
    pd->fd = -1;
    np__mutex_init(&pd->lock);
    pd->rt.pd = pd;
    pd->rt.heap_index = -1;
    pd->wt.pd = pd;
    pd->wt.heap_index = -1;
    (void)np__pd_tag(pd, 0); /* every pd must be taggable */
    pd->link = p->free_list;
    p->free_list = pd;
  }
  block->next = p->blocks;
  p->blocks = block;
  np__stat_add(&p->stat_pds, NP__PD_BLOCK_COUNT);
  return 0;
}

static int cache_alloc(np_poller *p, np__pd **out) {
  np__mutex_lock(&p->cache_lock);
  if (p->free_list == NULL) {
    int err = cache_grow(p);
    if (err != 0) {
      np__mutex_unlock(&p->cache_lock);
      return err;
    }
  }
  np__pd *pd = p->free_list;
  p->free_list = pd->link;
  pd->link = NULL;
  np__mutex_unlock(&p->cache_lock);
  *out = pd;
  return 0;
}

static void cache_free(np_poller *p, np__pd *pd) {
  np__mutex_lock(&p->cache_lock);
  pd->link = p->free_list;
  p->free_list = pd;
  np__mutex_unlock(&p->cache_lock);
}

void np__pd_cache_fini(np_poller *p) {
  np__pd_block *block = p->blocks;
  while (block != NULL) {
    np__pd_block *next = block->next;
    for (int i = 0; i < NP__PD_BLOCK_COUNT; i++) {
      NP_ASSERT(!block->pds[i].in_use); /* I4: nothing freed while in use */
      np__mutex_destroy(&block->pds[i].lock);
    }
    free(block);
    block = next;
  }
  p->blocks = NULL;
  p->free_list = NULL;
}

/* ---- info word ------------------------------------------------------------ */

/* Recompute closing / expired bits from the locked fields; keep the event
 * error bit and the fdseq. Must run under pd->lock after any change that
 * affects them and before any unblock they justify. */
static void publish_info(np__pd *pd) {
  uint32_t bits = 0;
  if (pd->closing) bits |= NP__INFO_CLOSING;
  if (pd->rd < 0) bits |= NP__INFO_EXPIRED_READ;
  if (pd->wd < 0) bits |= NP__INFO_EXPIRED_WRITE;
  if (pd->failed) bits |= NP__INFO_FAILED;
  const uint32_t keep = NP__INFO_EVENT_ERR | NP__INFO_NO_HINT | (NP__FDSEQ_MASK << NP__INFO_SEQ_SHIFT);
  for (;;) {
    uint32_t old = np__load_u32(&pd->info);
    if (np__cas_u32(&pd->info, old, (old & keep) | bits)) return;
  }
}

/* Sets the event error bit to on, unless the pd has been reused since the
 * event's fdseq (then the event belongs to a previous owner). */
static void set_event_err(np__pd *pd, bool on, uint32_t fdseq) {
  for (;;) {
    uint32_t old = np__load_u32(&pd->info);
    if (((old >> NP__INFO_SEQ_SHIFT) & NP__FDSEQ_MASK) != fdseq) return;
    if (((old & NP__INFO_EVENT_ERR) != 0) == on) return;
    if (np__cas_u32(&pd->info, old, old ^ NP__INFO_EVENT_ERR)) return;
  }
}

/* Called under pd->lock with the event's fdseq checked: sticky until reuse. */
static void set_no_hint(np__pd *pd) {
  for (;;) {
    uint32_t old = np__load_u32(&pd->info);
    if ((old & NP__INFO_NO_HINT) || np__cas_u32(&pd->info, old, old | NP__INFO_NO_HINT)) return;
  }
}

bool np__pd_no_hint(np__pd *pd) { return (np__load_u32(&pd->info) & NP__INFO_NO_HINT) != 0; }

/* A pending deadline that has passed although its timer has not run yet:
 * the timer runs when its poller's scheduler gets to it, which a task that
 * never parks (a read loop that always finds data) or a scheduler kept
 * busy by others delays without bound (Go's preemption bounds it). */
static bool passed(np__ai64 *when) {
  int64_t d = np__load_i64(when);
  if (d <= 0 || d > np__now()) return false;
  /* The decision is this load's: d still in force once the clock was read
   * (a deadline moved meanwhile is the mover's to publish). */
  return np__load_i64(when) == d;
}

int np__pd_checkerr_full(np__pd *pd, int mode) {
  uint32_t info = np__load_u32(&pd->info);
  if (info & NP__INFO_CLOSING) return NP__POLL_CLOSING;
  if (info & NP__INFO_FAILED) return NP__POLL_FAILED;
  if (mode == 'r' && (info & NP__INFO_EXPIRED_READ)) return NP__POLL_TIMEOUT;
  if (mode == 'w' && (info & NP__INFO_EXPIRED_WRITE)) return NP__POLL_TIMEOUT;
  if (passed(mode == 'r' ? &pd->rd_when : &pd->wd_when)) return NP__POLL_TIMEOUT;
  /* An event error is reported only to readers: a writer's next syscall
   * reports a more specific error. */
  if (mode == 'r' && (info & NP__INFO_EVENT_ERR)) return NP__POLL_NOT_POLLABLE;
  return NP__POLL_OK;
}

/* ---- semaphores ------------------------------------------------------------ */

static np__auptr *sem_of(np__pd *pd, int mode) {
  NP_ASSERT(mode == 'r' || mode == 'w');
  return mode == 'r' ? &pd->rg : &pd->wg;
}

static bool is_waiter(uintptr_t v) { return v > NP__PD_WAIT; }

/* Go's netpollunblock: ioready stores READY (a notification), otherwise NIL
 * (timeout/close; a pending READY survives and NIL stays NIL). Returns the
 * waiter that the caller must wake, or NULL. */
static np__waiter *unblock(np__pd *pd, int mode, bool ioready) {
  np__auptr *gpp = sem_of(pd, mode);
  for (;;) {
    uintptr_t old = np__load_uptr(gpp);
    if (old == NP__PD_READY) return NULL;
    if (old == NP__PD_NIL && !ioready) return NULL;
    uintptr_t new_value = ioready ? NP__PD_READY : NP__PD_NIL;
    if (np__cas_uptr(gpp, old, new_value)) {
      if (!is_waiter(old)) return NULL;
      np__waiter *w = (np__waiter *)old;
      if (w->pd != pd || w->mode != mode) NP_PANIC("I1: waiter parked on another pd or mode");
      return w;
    }
  }
}

/* Every unpark goes through here so the parked count stays exact on every
 * path: readiness, deadline and close (Go 60782 missed the readiness path). */
static int wake(np_poller *p, np__waiter *w) {
  if (w == NULL) return 0;
  uint32_t left = np__add_u32(&p->waiters, -1);
  NP_ASSERT(left != UINT32_MAX); /* I11: parked count underflow */
  np__unpark(w);
  return 1;
}

typedef struct commit_arg {
  np__auptr *gpp;
  np_poller *poller;
} commit_arg;

/* Runs once the waiter is committed to sleep: only now may rg/wg hold it. If
 * readiness, timeout or close came first, the CAS fails and the park is off.
 * The count is raised first so it never underflows: it may exceed the parked
 * waiters for an instant, never fall below them. */
static bool commit(np__waiter *w, void *arg) {
  commit_arg *c = arg;
  np__add_u32(&c->poller->waiters, 1);
  if (np__cas_uptr(c->gpp, NP__PD_WAIT, (uintptr_t)w)) return true;
  np__add_u32(&c->poller->waiters, -1);
  return false;
}

/* Go's netpollblock: true if i/o is ready, false on timeout or close. */
static bool block(np__pd *pd, int mode) {
  np__auptr *gpp = sem_of(pd, mode);
  for (int spins = 0;; spins++) {
    NP_ASSERT(spins < 1000000); /* bounded: each failure means another actor progressed */
    if (np__cas_uptr(gpp, NP__PD_READY, NP__PD_NIL)) return true;
    if (np__cas_uptr(gpp, NP__PD_NIL, NP__PD_WAIT)) break;
    uintptr_t v = np__load_uptr(gpp);
    if (v != NP__PD_READY && v != NP__PD_NIL) NP_PANIC("double wait (I1: a second waiter in one mode)");
  }
  /* Recheck after publishing WAIT: close/deadline store info then load
   * rg/wg; we store rg/wg then load info (Dekker; both sequentially
   * consistent). */
  if (np__pd_checkerr(pd, mode) == NP__POLL_OK) {
    np__waiter w;
    np__waiter_init(&w, pd, mode);
    commit_arg c = {gpp, pd->poller};
    np__park(&w, commit, &c);
  }
  /* Take whatever is there: a READY that arrived meanwhile must not be lost. */
  uintptr_t old = np__swap_uptr(gpp, NP__PD_NIL);
  if (old > NP__PD_WAIT) NP_PANIC("corrupted polldesc (I1: waiter still installed after wake-up)");
  return old == NP__PD_READY;
}

/* ---- the runtime_poll* operations ----------------------------------------- */

int np__pd_open(np_poller *p, int fd, np__pd **out) {
  np__pd *pd;
  int err = cache_alloc(p, &pd);
  if (err != 0) return err;

  np__mutex_lock(&pd->lock);
  NP_ASSERT(!pd->in_use);
  uintptr_t wg = np__load_uptr(&pd->wg);
  if (wg != NP__PD_NIL && wg != NP__PD_READY) NP_PANIC("blocked write on free polldesc (I4)");
  uintptr_t rg = np__load_uptr(&pd->rg);
  if (rg != NP__PD_NIL && rg != NP__PD_READY) NP_PANIC("blocked read on free polldesc (I4)");
  NP_ASSERT(pd->rt.heap_index < 0 && pd->wt.heap_index < 0);
  pd->fd = fd;
  pd->closing = false;
  pd->failed = np__load_u32(&p->failed) != 0; /* np__poller_fail raced with this open */
  pd->in_use = true;
  pd->fdseq = (pd->fdseq + 1) & NP__FDSEQ_MASK;
  /* New fdseq, no event error; publish_info below adds the other bits. */
  np__store_u32(&pd->info, pd->fdseq << NP__INFO_SEQ_SHIFT);
  pd->rseq++;
  np__store_uptr(&pd->rg, NP__PD_NIL);
  pd->rd = 0;
  np__store_i64(&pd->rd_when, 0);
  pd->wseq++;
  np__store_uptr(&pd->wg, NP__PD_NIL);
  pd->wd = 0;
  np__store_i64(&pd->wd_when, 0);
  publish_info(pd);
  uint32_t fdseq = pd->fdseq;
  np__mutex_unlock(&pd->lock);

  err = p->backend->open(p->backend_state, fd, np__pd_tag(pd, fdseq));
  if (err != 0) {
    np__mutex_lock(&pd->lock);
    pd->closing = true;
    pd->in_use = false;
    publish_info(pd);
    np__mutex_unlock(&pd->lock);
    cache_free(p, pd);
    return err;
  }
  *out = pd;
  return 0;
}

/* Close after unblock: both semaphores must be idle (I4). Deregisters the fd
 * and returns the pd to the cache; the caller closes the descriptor after. */
void np__pd_close(np__pd *pd, bool deregister) {
  np_poller *p = pd->poller;
  np__mutex_lock(&pd->lock);
  if (!pd->closing) NP_PANIC("close polldesc w/o unblock (I4)");
  NP_ASSERT(pd->in_use);
  uintptr_t wg = np__load_uptr(&pd->wg);
  if (wg != NP__PD_NIL && wg != NP__PD_READY) NP_PANIC("blocked write on closing polldesc (I4)");
  uintptr_t rg = np__load_uptr(&pd->rg);
  if (rg != NP__PD_NIL && rg != NP__PD_READY) NP_PANIC("blocked read on closing polldesc (I4)");
  int fd = pd->fd;
  np__mutex_unlock(&pd->lock);

  /* ENOENT/EBADF here mean the user closed the raw fd behind our back: the
   * kernel already dropped the registration, nothing left to undo. */
  if (deregister) (void)p->backend->close(p->backend_state, fd);

  np__mutex_lock(&pd->lock);
  pd->in_use = false;
  pd->fd = -1;
  np__mutex_unlock(&pd->lock);
  cache_free(p, pd);
}

/* Go's pollUnblock (FD.Close's evict): publish closing, wake both waiters
 * with NIL (they return closing), stop both timers. */
void np__pd_unblock(np__pd *pd) {
  np_poller *p = pd->poller;
  np__mutex_lock(&pd->lock);
  if (pd->closing && np__load_u32(&p->shutdown)) { /* destroy evicted it first (fd.c evict_all) */
    np__mutex_unlock(&pd->lock);
    return;
  }
  if (pd->closing) NP_PANIC("unblock on closing polldesc");
  pd->closing = true;
  pd->rseq++;
  pd->wseq++;
  publish_info(pd);
  np__waiter *rw = unblock(pd, 'r', false);
  np__waiter *ww = unblock(pd, 'w', false);
  if (pd->rt.armed) {
    np__timer_del(p, &pd->rt);
    pd->rt.armed = false;
  }
  if (pd->wt.armed) {
    np__timer_del(p, &pd->wt);
    pd->wt.armed = false;
  }
  np__mutex_unlock(&pd->lock);
  wake(p, rw);
  wake(p, ww);
}

void np__pd_fail(np__pd *pd) {
  np_poller *p = pd->poller;
  np__mutex_lock(&pd->lock);
  np__waiter *rw = NULL, *ww = NULL;
  if (pd->in_use && !pd->closing && !pd->failed) {
    pd->failed = true;
    publish_info(pd); /* before the unblock it justifies */
    rw = unblock(pd, 'r', false);
    ww = unblock(pd, 'w', false);
  }
  np__mutex_unlock(&pd->lock);
  wake(p, rw);
  wake(p, ww);
}

/* Go's pollReset: before an i/o attempt, fail fast on closing / expired
 * deadline / event error, and drop a stale READY (the syscall decides). */
int np__pd_reset(np__pd *pd, int mode) {
  int err = np__pd_checkerr(pd, mode);
  if (err != NP__POLL_OK) return err;
  uintptr_t old = np__swap_uptr(sem_of(pd, mode), NP__PD_NIL);
  if (old != NP__PD_NIL && old != NP__PD_READY) NP_PANIC("double wait (I1: reset with a waiter installed)");
  return NP__POLL_OK;
}

/* Go's pollWait. */
int np__pd_wait(np__pd *pd, int mode) {
  int err = np__pd_checkerr(pd, mode);
  if (err != NP__POLL_OK) return np__port_wait_result(pd, mode, err);
  for (int rounds = 0;; rounds++) {
    NP_ASSERT(rounds < 1000000);
    if (block(pd, mode)) return np__port_wait_result(pd, mode, NP__POLL_OK);
    err = np__pd_checkerr(pd, mode);
    if (err != NP__POLL_OK) return np__port_wait_result(pd, mode, err);
    /* Woken by a timeout that a new deadline has since cleared: wait again. */
  }
}

/* Go's netpollready, with the tag check done under the pd lock: an event
 * fetched before close cannot land on the pd's next owner between the check
 * and the unblock (Go checks without the lock and tolerates the spurious
 * readiness; I6 forbids it here). */
int np__pd_ready(np__pd *pd, uint32_t fdseq, uint32_t events) {
  np_poller *p = pd->poller;
  np__mutex_lock(&pd->lock);
  if (!pd->in_use || pd->closing || pd->fdseq != fdseq) {
    np__mutex_unlock(&pd->lock);
    return 0; /* I6: stale event for a closed or reused pd */
  }
  set_event_err(pd, events == EPOLLERR, fdseq);
  /* Before the unblock that publishes it: after any of these a short read
   * no longer means the queue is empty (fd.c, read_once). */
  if (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP | EPOLLPRI)) set_no_hint(pd);
  np__waiter *rw = NULL, *ww = NULL;
  if (events & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) rw = unblock(pd, 'r', true);
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) ww = unblock(pd, 'w', true);
  np__mutex_unlock(&pd->lock);
  return wake(p, rw) + wake(p, ww);
}

/* Go's pollSetDeadline with an absolute deadline (0 none, <= now expired). */
void np__pd_set_deadline(np__pd *pd, int64_t deadline_ns, int mode) {
  NP_ASSERT(mode == 'r' || mode == 'w' || mode == 'r' + 'w');
  np_poller *p = pd->poller;
  int64_t d = deadline_ns;
  if (d != 0 && d <= np__now()) d = -1; /* already expired (negatives too) */

  np__mutex_lock(&pd->lock);
  if (pd->closing) {
    np__mutex_unlock(&pd->lock);
    return;
  }
  int64_t rd0 = pd->rd, wd0 = pd->wd;
  bool combo0 = rd0 > 0 && rd0 == wd0;
  if (mode == 'r' || mode == 'r' + 'w') pd->rd = d;
  if (mode == 'w' || mode == 'r' + 'w') pd->wd = d;
  publish_info(pd);
  np__store_i64(&pd->rd_when, pd->rd > 0 ? pd->rd : 0);
  np__store_i64(&pd->wd_when, pd->wd > 0 ? pd->wd : 0);
  bool combo = pd->rd > 0 && pd->rd == pd->wd;
  int rkind = combo ? NP__TIMER_BOTH : NP__TIMER_READ;
  bool need_break = false; /* an earlier timer: wake the poller, outside the lock */

  if (!pd->rt.armed) {
    if (pd->rd > 0) {
      pd->rt.armed = true;
      need_break |= np__timer_set(p, &pd->rt, pd->rd, rkind, pd->rseq);
    }
  } else if (pd->rd != rd0 || combo != combo0) {
    pd->rseq++; /* invalidate a timer already fired but not yet run (I5) */
    if (pd->rd > 0) {
      need_break |= np__timer_set(p, &pd->rt, pd->rd, rkind, pd->rseq);
    } else {
      np__timer_del(p, &pd->rt);
      pd->rt.armed = false;
    }
  }
  if (!pd->wt.armed) {
    if (pd->wd > 0 && !combo) {
      pd->wt.armed = true;
      need_break |= np__timer_set(p, &pd->wt, pd->wd, NP__TIMER_WRITE, pd->wseq);
    }
  } else if (pd->wd != wd0 || combo != combo0) {
    pd->wseq++;
    if (pd->wd > 0 && !combo) {
      need_break |= np__timer_set(p, &pd->wt, pd->wd, NP__TIMER_WRITE, pd->wseq);
    } else {
      np__timer_del(p, &pd->wt);
      pd->wt.armed = false;
    }
  }
  /* A deadline in the past wakes whoever is blocked now (info published above). */
  np__waiter *rw = NULL, *ww = NULL;
  if (pd->rd < 0) rw = unblock(pd, 'r', false);
  if (pd->wd < 0) ww = unblock(pd, 'w', false);
  np__mutex_unlock(&pd->lock);
  if (need_break) np__netpoll_break(p);
  wake(p, rw);
  wake(p, ww);
}

/* Go's netpolldeadlineimpl: a timer armed with seq fired. */
void np__pd_deadline_fired(np__pd *pd, uintptr_t seq, int kind) {
  np_poller *p = pd->poller;
  bool read = (kind & NP__TIMER_READ) != 0;
  bool write = (kind & NP__TIMER_WRITE) != 0;
  np__mutex_lock(&pd->lock);
  uintptr_t current = read ? pd->rseq : pd->wseq;
  if (seq != current) {
    np__mutex_unlock(&pd->lock); /* I5: deadline changed, pd closed or reused */
    return;
  }
  np__waiter *rw = NULL, *ww = NULL;
  if (read) {
    if (pd->rd <= 0 || !pd->rt.armed) NP_PANIC("inconsistent read deadline (I5)");
    pd->rd = -1;
    publish_info(pd);
    rw = unblock(pd, 'r', false);
  }
  if (write) {
    if (pd->wd <= 0 || (!pd->wt.armed && !read)) NP_PANIC("inconsistent write deadline (I5)");
    pd->wd = -1;
    publish_info(pd);
    ww = unblock(pd, 'w', false);
  }
  np__mutex_unlock(&pd->lock);
  np__stat_add(&p->stat_timers, 1);
  wake(p, rw);
  wake(p, ww);
}
