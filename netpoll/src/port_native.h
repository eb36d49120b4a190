/*
 * port_native.h - the native side of the port seam: C11 atomics, pthread
 * mutexes, futex park/unpark and semaphores, CLOCK_MONOTONIC.
 *
 * The core (pd.c, poller.c, fdmutex.c, fd.c) reaches atomics, locks, parking
 * and the clock only through the np__ names below; sim/port_sim.h defines the
 * same names as schedule points of the deterministic simulator. This file
 * must never be included directly: include port.h.
 *
 * Every atomic is sequentially consistent on purpose: the waiter's CAS on
 * rg/wg followed by its load of the info word, against the publisher's store
 * of the info word followed by its load of rg/wg, is a Dekker pattern
 * (Go issue 45211 lost wakeups on arm64 with weaker orderings).
 */
#ifndef NP_PORT_NATIVE_H
#define NP_PORT_NATIVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef _Atomic uintptr_t np__auptr;
typedef _Atomic uint32_t np__au32;
typedef _Atomic uint64_t np__au64;
typedef _Atomic int64_t np__ai64;

static inline uintptr_t np__load_uptr(np__auptr *a) { return atomic_load(a); }
static inline void np__store_uptr(np__auptr *a, uintptr_t v) { atomic_store(a, v); }
static inline bool np__cas_uptr(np__auptr *a, uintptr_t old, uintptr_t new_value) {
  return atomic_compare_exchange_strong(a, &old, new_value);
}
static inline uintptr_t np__swap_uptr(np__auptr *a, uintptr_t v) { return atomic_exchange(a, v); }

static inline uint32_t np__load_u32(np__au32 *a) { return atomic_load(a); }
static inline void np__store_u32(np__au32 *a, uint32_t v) { atomic_store(a, v); }
static inline bool np__cas_u32(np__au32 *a, uint32_t old, uint32_t new_value) {
  return atomic_compare_exchange_strong(a, &old, new_value);
}
static inline uint32_t np__add_u32(np__au32 *a, int32_t delta) {
  return atomic_fetch_add(a, (uint32_t)delta) + (uint32_t)delta;
}

static inline uint64_t np__load_u64(np__au64 *a) { return atomic_load(a); }
static inline bool np__cas_u64(np__au64 *a, uint64_t old, uint64_t new_value) {
  return atomic_compare_exchange_strong(a, &old, new_value);
}
static inline uint64_t np__add_u64(np__au64 *a, int64_t delta) {
  return atomic_fetch_add(a, (uint64_t)delta) + (uint64_t)delta;
}

static inline int64_t np__load_i64(np__ai64 *a) { return atomic_load(a); }
static inline void np__store_i64(np__ai64 *a, int64_t v) { atomic_store(a, v); }

/* A flag that only checks an invariant: no thread orders anything else by
 * it (the task runtime's `queued`: a second ready finds it 1 and panics).
 * Relaxed, so x86 loads and stores it with a mov instead of an xchg or a
 * locked CAS: four of them per task switch cycle. */
static inline uint32_t np__load_u32_check(np__au32 *a) {
  return atomic_load_explicit(a, memory_order_relaxed);
}
static inline void np__store_u32_check(np__au32 *a, uint32_t v) {
  atomic_store_explicit(a, v, memory_order_relaxed);
}

/* Statistics counters: not part of any protocol, relaxed is enough. */
static inline void np__stat_add(np__au64 *a, int64_t delta) {
  atomic_fetch_add_explicit(a, (uint64_t)delta, memory_order_relaxed);
}

typedef pthread_mutex_t np__mutex;
void np__mutex_init(np__mutex *m);
void np__mutex_destroy(np__mutex *m);
/* Inline: taken on every readiness event (the pd's lock), a call each way
 * was ~10 instructions of a round trip. */
_Noreturn void np__panic(const char *file, int line, const char *msg);
static inline void np__mutex_lock(np__mutex *m) {
  if (__builtin_expect(pthread_mutex_lock(m) != 0, 0))
    np__panic(__FILE__, __LINE__, "pthread_mutex_lock failed");
}
static inline void np__mutex_unlock(np__mutex *m) {
  if (__builtin_expect(pthread_mutex_unlock(m) != 0, 0))
    np__panic(__FILE__, __LINE__, "pthread_mutex_unlock failed");
}

/* A condition variable on an np__mutex (np_blocking's helpers). Waits may
 * return without a signal: callers loop. */
typedef pthread_cond_t np__cond;
void np__cond_init(np__cond *c);
void np__cond_destroy(np__cond *c);
void np__cond_wait(np__cond *c, np__mutex *m);
void np__cond_signal(np__cond *c);
void np__cond_broadcast(np__cond *c);

/* A thread of the library's own (np_blocking's helpers): 0 or -errno. */
typedef pthread_t np__thread;
int np__thread_start(np__thread *t, void *(*fn)(void *arg), void *arg);
void np__thread_join(np__thread t);

/* A waiter is the thing that parks: the calling task (it switches to its
 * scheduler, which runs the commit step on its own stack) or, outside a
 * task, the calling OS thread (futex). It lives on the parker's stack for
 * the duration of one park. pd and mode are
 * recorded for invariant checks (I1: a parked waiter belongs to this pd and
 * this mode). */
struct np__task;
typedef struct np__waiter {
  np__au32 signaled;     /* 0 until unparked; the futex word */
  struct np__task *task; /* the parked task, or NULL: a thread (futex) */
  const void *pd;        /* the pollDesc it parks on (checks only) */
  int mode;              /* 'r' or 'w' (checks only) */
} np__waiter;

/* Park with a commit step, as gopark: commit(w, arg) runs once the waiter is
 * committed to sleep; if it returns false the park is abandoned. If it
 * returns true the caller sleeps until np__unpark(w). */
void np__waiter_init(np__waiter *w, const void *pd, int mode);
void np__park(np__waiter *w, bool (*commit)(np__waiter *w, void *arg), void *arg);
void np__unpark(np__waiter *w);
#ifdef NP_TEST_HOOKS
/* Test builds only: runs inside np__park just before the commit step, so a
 * test can make readiness, timeout or close arrive between WAIT and commit. */
extern void (*np__test_hook_before_commit)(np__waiter *w);
/* Runs after a task or thread has queued on a semaphore, before it parks:
 * a test widens the window in which a release finds it not yet parked. */
extern void (*np__test_hook_sema_queued)(void);
#endif

/* Counting semaphore (Go's runtime_Semacquire/Semrelease) for the fd mutex:
 * a FIFO of parked waiters (tasks or threads) under a spin lock, with
 * direct hand-off. All-zero is a valid empty semaphore. */
struct np__sema_node;
typedef struct np__sema {
  np__au32 count;
  np__au32 lock;
  struct np__sema_node *head, *tail;
} np__sema;
void np__sema_acquire(np__sema *s);
void np__sema_release(np__sema *s);

int64_t np__now(void);

/* Zeroed memory in whole 64-byte lines of its own: what one CPU writes on
 * every round trip (a handle's first line, a scheduler, a poller) shares no
 * line with what another CPU writes. */
static inline void *np__zalloc64(size_t size) {
  size = (size + 63) & ~(size_t)63;
  void *m = aligned_alloc(64, size);
  if (m != NULL) memset(m, 0, size);
  return m;
}
/* Handle memory (struct np_fd): zeroed, 64-byte aligned. The simulator keeps
 * freed handles poisoned and inaccessible instead, so that a use after free
 * is a failure with a seed. */
#define np__fd_zalloc() ((struct np_fd *)np__zalloc64(sizeof(struct np_fd)))
#ifdef NP_TEST_HOOKS
/* Test builds: tests may route handle memory through their own allocator
 * (a poisoning one: a use after free faults in every build). NULL: np__fd_zalloc. */
extern void *(*np__test_hook_fd_alloc)(size_t size);
extern void (*np__test_hook_fd_free)(void *f);
#define np__fd_alloc()                                                                            \
  ((struct np_fd *)(np__test_hook_fd_alloc != NULL ? np__test_hook_fd_alloc(sizeof(struct np_fd)) \
                                                   : np__fd_zalloc()))
#define np__fd_release(f) (np__test_hook_fd_free != NULL ? np__test_hook_fd_free(f) : free(f))
#else
#define np__fd_alloc() np__fd_zalloc()
#define np__fd_release(f) free(f)
#endif

/* Observation hook: every np__pd_wait result passes through it. The
 * simulator checks each against history (I3); natively it is free. */
static inline int np__port_wait_result(const void *pd, int mode, int result) {
  (void)pd;
  (void)mode;
  return result;
}

#endif
