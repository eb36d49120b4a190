/*
 * fdmutex.c - Go's internal/poll fdMutex: a reference count plus a read lock
 * and a write lock, with a closed bit, in one 64-bit word.
 *
 *   bit 0       closed: no lock or reference is granted any more (I12)
 *   bit 1       read lock held
 *   bit 2       write lock held
 *   bits 3-22   references (each lock holder also holds one)
 *   bits 23-42  threads waiting for the read lock (on rsema)
 *   bits 43-62  threads waiting for the write lock (on wsema)
 *
 * Unlike Go's, a thread waiting for a lock holds a reference while it waits
 * (Go's garbage collector keeps the FD alive; here np_close's wait for the
 * last reference is what keeps the handle's memory alive, so it must cover
 * the queued threads too).
 *
 * It must never: let a count wrap into a neighbouring field (overflow is
 * reported as -EOVERFLOW before the CAS, unlike Go's panic, and nothing is
 * changed); grant anything once closed; tolerate an unbalanced unlock or
 * decref (that is a caller bug and aborts, naming I12).
 */
#include <errno.h>

#include "np_internal.h"

#define MU_CLOSED (UINT64_C(1) << 0)
#define MU_RLOCK (UINT64_C(1) << 1)
#define MU_WLOCK (UINT64_C(1) << 2)
#define MU_REF (UINT64_C(1) << 3)
#define MU_REF_MASK (UINT64_C(0xFFFFF) << 3)
#define MU_RWAIT (UINT64_C(1) << 23)
#define MU_RMASK (UINT64_C(0xFFFFF) << 23)
#define MU_WWAIT (UINT64_C(1) << 43)
#define MU_WMASK (UINT64_C(0xFFFFF) << 43)

_Static_assert(NP__MUTEX_REF_MAX == (MU_REF_MASK >> 3), "ref field width");
_Static_assert((MU_REF_MASK & MU_RMASK) == 0 && (MU_RMASK & MU_WMASK) == 0, "fields overlap");

int np__fdmu_incref(np__fdmutex *mu) {
  for (;;) {
    uint64_t old = np__load_u64(&mu->state);
    if (old & MU_CLOSED) return NP_ECLOSING;
    if ((old & MU_REF_MASK) == MU_REF_MASK) return -EOVERFLOW;
    if (np__cas_u64(&mu->state, old, old + MU_REF)) return 0;
  }
}

int np__fdmu_incref_and_close(np__fdmutex *mu) {
  for (;;) {
    uint64_t old = np__load_u64(&mu->state);
    if (old & MU_CLOSED) return NP_ECLOSING;
    if ((old & MU_REF_MASK) == MU_REF_MASK) return -EOVERFLOW;
    /* Mark closed, take a reference, and forget every lock waiter: each is
     * released below, retries, and sees the closed bit. */
    uint64_t new_value = ((old | MU_CLOSED) + MU_REF) & ~(MU_RMASK | MU_WMASK);
    if (np__cas_u64(&mu->state, old, new_value)) {
      for (uint64_t r = (old & MU_RMASK) / MU_RWAIT; r > 0; r--) np__sema_release(&mu->rsema);
      for (uint64_t w = (old & MU_WMASK) / MU_WWAIT; w > 0; w--) np__sema_release(&mu->wsema);
      return 0;
    }
  }
}

bool np__fdmu_decref(np__fdmutex *mu) {
  for (;;) {
    uint64_t old = np__load_u64(&mu->state);
    if ((old & MU_REF_MASK) == 0) NP_PANIC("inconsistent fd mutex: decref without reference (I12)");
    uint64_t new_value = old - MU_REF;
    if (np__cas_u64(&mu->state, old, new_value)) return (new_value & (MU_CLOSED | MU_REF_MASK)) == MU_CLOSED;
  }
}

/* The fields of the read or the write lock. */
typedef struct lock_fields {
  uint64_t bit, wait, mask;
  np__sema *sema;
} lock_fields;

static lock_fields fields_of(np__fdmutex *mu, bool read) {
  return read ? (lock_fields){MU_RLOCK, MU_RWAIT, MU_RMASK, &mu->rsema}
              : (lock_fields){MU_WLOCK, MU_WWAIT, MU_WMASK, &mu->wsema};
}

/* A thread that must queue for the lock takes a reference with its wait
 * count and holds it while it sleeps on the semaphore, so np_close (which
 * waits for the last reference) cannot return while a queued thread may
 * still touch the handle. Woken, it retries with that reference: it takes
 * the lock without a new one, queues again, or, once closed, drops it
 * (NP__MU_LAST if that was the last one: the caller destroys). */
int np__fdmu_rwlock(np__fdmutex *mu, bool read) {
  const lock_fields l = fields_of(mu, read);
  const uint64_t bit = l.bit, wait = l.wait, mask = l.mask;
  uint64_t ref = MU_REF; /* 0 while we hold the reference taken to queue */
  for (;;) {
    uint64_t old = np__load_u64(&mu->state);
    if (old & MU_CLOSED) {
      if (ref != 0) return NP_ECLOSING;
      return np__fdmu_decref(mu) ? NP__MU_LAST : NP_ECLOSING;
    }
    if (ref != 0 && (old & MU_REF_MASK) == MU_REF_MASK) return -EOVERFLOW;
    uint64_t new_value;
    if ((old & bit) == 0) {
      new_value = (old | bit) + ref;
    } else {
      if ((old & mask) == mask) {
        if (ref != 0) return -EOVERFLOW;
        return np__fdmu_decref(mu) ? NP__MU_LAST : -EOVERFLOW;
      }
      new_value = old + wait + ref;
    }
    if (np__cas_u64(&mu->state, old, new_value)) {
      if ((old & bit) == 0) return 0;
      ref = 0;
      np__sema_acquire(l.sema); /* the releaser has subtracted our wait count */
    }
  }
}

bool np__fdmu_rwunlock(np__fdmutex *mu, bool read) {
  const lock_fields l = fields_of(mu, read);
  const uint64_t bit = l.bit, wait = l.wait, mask = l.mask;
  np__sema *sema = l.sema;
  for (;;) {
    uint64_t old = np__load_u64(&mu->state);
    if ((old & bit) == 0 || (old & MU_REF_MASK) == 0)
      NP_PANIC("inconsistent fd mutex: unlock of an unlocked mutex (I12)");
    uint64_t new_value = (old & ~bit) - MU_REF;
    if (old & mask) new_value -= wait;
    if (np__cas_u64(&mu->state, old, new_value)) {
      if (old & mask) np__sema_release(sema);
      return (new_value & (MU_CLOSED | MU_REF_MASK)) == MU_CLOSED;
    }
  }
}
