/*
 * port_sim.h - the simulator's side of the port seam. The core sources are
 * compiled with NP_PORT_SIM and this header: every atomic, lock, park,
 * unpark, semaphore and clock read becomes a schedule point of the
 * deterministic scheduler (sim/sched.c), where another task may run.
 *
 * All tasks run on one OS thread, so the "atomics" are plain memory
 * operations performed after the schedule point, which makes each of them
 * indivisible with respect to the other tasks, exactly the guarantee
 * sequentially consistent atomics give the native build.
 */
#ifndef NP_PORT_SIM_H
#define NP_PORT_SIM_H

#include <stdbool.h>
#include <stdint.h>

typedef uintptr_t np__auptr;
typedef uint32_t np__au32;
typedef uint64_t np__au64;
typedef int64_t np__ai64;

/* Kinds of schedule points, as they appear in traces. */
typedef enum sim_op {
  SIM_OP_LOAD,
  SIM_OP_STORE,
  SIM_OP_CAS_OK,
  SIM_OP_CAS_FAIL,
  SIM_OP_SWAP,
  SIM_OP_ADD,
  SIM_OP_LOCK,
  SIM_OP_UNLOCK,
  SIM_OP_PARK,
  SIM_OP_UNPARK,
  SIM_OP_SEMA_ACQ,
  SIM_OP_SEMA_REL,
  SIM_OP_NOW,
  SIM_OP_SYSCALL,
  SIM_OP_WAIT_RESULT,
  SIM_OP_ACTOR,
  SIM_OP_COUNT
} sim_op;

/* A schedule point: another task may run here. Then the op is recorded in
 * the trace (addr identifies the object; old/new the values). */
void sim_point(void);
void sim_record(sim_op op, const void *addr, uint64_t old_value, uint64_t new_value);

static inline uintptr_t np__load_uptr(np__auptr *a) {
  sim_point();
  sim_record(SIM_OP_LOAD, a, *a, *a);
  return *a;
}
/* The world checks plain stores on the rg/wg semaphores (lost pdReady). */
extern void (*sim_on_store)(const void *addr, uint64_t old_value, uint64_t new_value);

static inline void np__store_uptr(np__auptr *a, uintptr_t v) {
  sim_point();
  sim_record(SIM_OP_STORE, a, *a, v);
  if (sim_on_store != NULL) sim_on_store(a, *a, v);
  *a = v;
}
static inline bool np__cas_uptr(np__auptr *a, uintptr_t old, uintptr_t new_value) {
  sim_point();
  if (*a != old) {
    sim_record(SIM_OP_CAS_FAIL, a, *a, new_value);
    return false;
  }
  sim_record(SIM_OP_CAS_OK, a, old, new_value);
  *a = new_value;
  return true;
}
static inline uintptr_t np__swap_uptr(np__auptr *a, uintptr_t v) {
  sim_point();
  uintptr_t old = *a;
  sim_record(SIM_OP_SWAP, a, old, v);
  *a = v;
  return old;
}

static inline uint32_t np__load_u32(np__au32 *a) {
  sim_point();
  sim_record(SIM_OP_LOAD, a, *a, *a);
  return *a;
}
static inline void np__store_u32(np__au32 *a, uint32_t v) {
  sim_point();
  sim_record(SIM_OP_STORE, a, *a, v);
  *a = v;
}
/* Native: relaxed (a check-only flag); simulated atomics are all SC. */
static inline uint32_t np__load_u32_check(np__au32 *a) { return np__load_u32(a); }
static inline void np__store_u32_check(np__au32 *a, uint32_t v) { np__store_u32(a, v); }
static inline bool np__cas_u32(np__au32 *a, uint32_t old, uint32_t new_value) {
  sim_point();
  if (*a != old) {
    sim_record(SIM_OP_CAS_FAIL, a, *a, new_value);
    return false;
  }
  sim_record(SIM_OP_CAS_OK, a, old, new_value);
  *a = new_value;
  return true;
}
static inline uint32_t np__add_u32(np__au32 *a, int32_t delta) {
  sim_point();
  uint32_t old = *a;
  *a = old + (uint32_t)delta;
  sim_record(SIM_OP_ADD, a, old, *a);
  return *a;
}

static inline uint64_t np__load_u64(np__au64 *a) {
  sim_point();
  sim_record(SIM_OP_LOAD, a, *a, *a);
  return *a;
}
static inline bool np__cas_u64(np__au64 *a, uint64_t old, uint64_t new_value) {
  sim_point();
  if (*a != old) {
    sim_record(SIM_OP_CAS_FAIL, a, *a, new_value);
    return false;
  }
  sim_record(SIM_OP_CAS_OK, a, old, new_value);
  *a = new_value;
  return true;
}
static inline uint64_t np__add_u64(np__au64 *a, int64_t delta) {
  sim_point();
  uint64_t old = *a;
  *a = old + (uint64_t)delta;
  sim_record(SIM_OP_ADD, a, old, *a);
  return *a;
}
static inline int64_t np__load_i64(np__ai64 *a) {
  sim_point();
  return *a;
}
static inline void np__store_i64(np__ai64 *a, int64_t v) {
  sim_point();
  *a = v;
}
/* Statistics are not part of any protocol: no schedule point. */
static inline void np__stat_add(np__au64 *a, int64_t delta) { *a += (uint64_t)delta; }

/* A cooperative mutex: a task that finds it held blocks until unlock. */
typedef struct np__mutex {
  struct sim_task *owner;
  struct sim_task *waiters; /* FIFO of blocked tasks */
  uint32_t id;              /* for traces; assigned at init */
} np__mutex;
void np__mutex_init(np__mutex *m);
void np__mutex_destroy(np__mutex *m);
void np__mutex_lock(np__mutex *m);
void np__mutex_unlock(np__mutex *m);

/* A condition variable: a wait queues the task, releases the mutex and
 * blocks with no schedule point between (a signal cannot fall in a gap),
 * then takes the mutex again. Now and then a wait returns with no signal
 * (spurious, as POSIX allows): callers must loop. */
typedef struct np__cond {
  struct sim_task *waiters;
} np__cond;
void np__cond_init(np__cond *c);
void np__cond_destroy(np__cond *c);
void np__cond_wait(np__cond *c, np__mutex *m);
void np__cond_signal(np__cond *c);
void np__cond_broadcast(np__cond *c);

/* A simulated thread; starting one fails (-EAGAIN, as pthread_create
 * under a thread limit) with sim_thread_fail_ppm per million (sim_init: 0). */
extern uint32_t sim_thread_fail_ppm;
typedef struct sim_task *np__thread;
int np__thread_start(np__thread *t, void *(*fn)(void *arg), void *arg);
void np__thread_join(np__thread t);

typedef struct np__waiter {
  struct sim_task *task; /* the parked task */
  const void *pd;        /* pd it parks on (I1) */
  int mode;              /* 'r' or 'w' (I1) */
  bool parked;           /* between commit and unpark (I2) */
} np__waiter;
void np__waiter_init(np__waiter *w, const void *pd, int mode);
void np__park(np__waiter *w, bool (*commit)(np__waiter *w, void *arg), void *arg);
void np__unpark(np__waiter *w);

typedef struct np__sema {
  uint32_t count;
  struct sim_task *waiters;
} np__sema;
void np__sema_acquire(np__sema *s);
void np__sema_release(np__sema *s);

int64_t np__now(void);

/* Handle memory (sim/handle_heap.c): every np_fd on its own pages; a freed
 * one is poisoned and made inaccessible until the run ends, so any later
 * access is an invariant failure with the seed. */
struct np_fd;
struct np_fd *np__fd_alloc(void);
void np__fd_release(struct np_fd *f);

/* Go's maxRW, the largest single read or write fd.c makes (1 GiB
 * natively). sim_init sets 1 GiB; npsim's worlds set it per run, often
 * small, so that the splitting of a large write into several syscalls runs
 * in ordinary worlds and not only in a 1 GiB test. */
extern size_t sim_max_rw;

/* Every np__pd_wait result is checked against history (I3). */
int np__port_wait_result(const void *pd, int mode, int result);

#endif
