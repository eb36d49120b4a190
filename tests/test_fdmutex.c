/* test_fdmutex.c - the fd mutex (Go's internal/poll fdMutex, ported from
 * fd_mutex_test.go): references, the read and write locks, close, waiters
 * released by close, unbalanced use aborting, overflow reported as
 * -EOVERFLOW without changing anything, and mutual exclusion under stress. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "helpers.h"

/* The state word layout documented in np_internal.h:
 * closed | rlock | wlock | refs<<3 | rwait<<23 | wwait<<43. */
#define ST_CLOSED (UINT64_C(1) << 0)
#define ST_RLOCK (UINT64_C(1) << 1)
#define ST_WLOCK (UINT64_C(1) << 2)
#define ST_REF (UINT64_C(1) << 3)
#define ST_RWAIT (UINT64_C(1) << 23)
#define ST_WWAIT (UINT64_C(1) << 43)
#define ST_FIELD (UINT64_C(0xFFFFF))

static uint64_t st(np__fdmutex *mu) { return np__load_u64(&mu->state); }
static uint64_t st_refs(np__fdmutex *mu) { return (st(mu) >> 3) & ST_FIELD; }
static uint64_t st_rwait(np__fdmutex *mu) { return (st(mu) >> 23) & ST_FIELD; }
static uint64_t st_wwait(np__fdmutex *mu) { return (st(mu) >> 43) & ST_FIELD; }

static void mu_init(np__fdmutex *mu) { memset(mu, 0, sizeof(*mu)); }

/* Waits (bounded, ~5 s) until `pred(mu) == want`. */
static void wait_field(np__fdmutex *mu, uint64_t (*pred)(np__fdmutex *), uint64_t want) {
  for (int i = 0; i < 5000; i++) {
    if (pred(mu) == want) return;
    th_sleep_ms(1);
  }
  fail_msg("mutex field is %llu, expected %llu (state %#llx)", (unsigned long long)pred(mu),
           (unsigned long long)want, (unsigned long long)st(mu));
}

/* Waits (bounded, ~10 s) until *counter == want: a thread that never
 * returns fails the test instead of hanging it. */
static void wait_count(atomic_int *counter, int want) {
  for (int i = 0; i < 10000; i++) {
    if (atomic_load(counter) == want) return;
    th_sleep_ms(1);
  }
  fail_msg("counter is %d, expected %d", atomic_load(counter), want);
}

/* ---- TestMutexLock ------------------------------------------------------- */

static void test_mutex_lock(void **state) {
  (void)state;
  np__fdmutex mu;
  mu_init(&mu);

  assert_int_equal(np__fdmu_incref(&mu), 0);
  assert_int_equal(st_refs(&mu), 1);
  assert_false(np__fdmu_decref(&mu));
  assert_int_equal(st(&mu), 0);

  assert_int_equal(np__fdmu_rwlock(&mu, true), 0);
  assert_true(st(&mu) & ST_RLOCK);
  assert_int_equal(st_refs(&mu), 1); /* a lock holder also holds a reference */
  assert_false(np__fdmu_rwunlock(&mu, true));
  assert_int_equal(st(&mu), 0);

  assert_int_equal(np__fdmu_rwlock(&mu, false), 0);
  assert_true(st(&mu) & ST_WLOCK);
  assert_int_equal(st_refs(&mu), 1);
  assert_false(np__fdmu_rwunlock(&mu, false));
  assert_int_equal(st(&mu), 0);

  /* The read and the write lock are independent: both at once, plus refs. */
  assert_int_equal(np__fdmu_rwlock(&mu, true), 0);
  assert_int_equal(np__fdmu_rwlock(&mu, false), 0);
  assert_int_equal(np__fdmu_incref(&mu), 0);
  assert_int_equal(st_refs(&mu), 3);
  assert_false(np__fdmu_rwunlock(&mu, true));
  assert_false(np__fdmu_decref(&mu));
  assert_false(np__fdmu_rwunlock(&mu, false));
  assert_int_equal(st(&mu), 0);
}

/* ---- TestMutexClose ------------------------------------------------------ */

static void test_mutex_close(void **state) {
  (void)state;
  np__fdmutex mu;
  mu_init(&mu);
  assert_int_equal(np__fdmu_incref_and_close(&mu), 0);
  assert_true(st(&mu) & ST_CLOSED);
  assert_int_equal(st_refs(&mu), 1);

  assert_int_equal(np__fdmu_incref(&mu), NP_ECLOSING);
  assert_int_equal(np__fdmu_rwlock(&mu, true), NP_ECLOSING);
  assert_int_equal(np__fdmu_rwlock(&mu, false), NP_ECLOSING);
  assert_int_equal(np__fdmu_incref_and_close(&mu), NP_ECLOSING);
  assert_int_equal(st_refs(&mu), 1); /* refused calls took nothing */

  assert_true(np__fdmu_decref(&mu)); /* close's own reference was the last */
  assert_int_equal(np__fdmu_incref(&mu), NP_ECLOSING);
  assert_int_equal(st(&mu), ST_CLOSED);
}

/* ---- TestMutexCloseUnblock ---------------------------------------------- */

typedef struct blocked_arg {
  np__fdmutex *mu;
  bool read;
  atomic_int done;
  atomic_int ok; /* count of rwlock results equal to NP_ECLOSING */
} blocked_arg;

static void *lock_expect_closing(void *arg) {
  blocked_arg *a = arg;
  int err = np__fdmu_rwlock(a->mu, a->read);
  if (err == NP_ECLOSING) atomic_fetch_add(&a->ok, 1);
  atomic_fetch_add(&a->done, 1);
  return NULL;
}

static void close_unblock(bool read) {
  enum { N = 4 };
  np__fdmutex mu;
  mu_init(&mu);
  assert_int_equal(np__fdmu_rwlock(&mu, read), 0);
  blocked_arg a = {.mu = &mu, .read = read};
  pthread_t t[N];
  for (int i = 0; i < N; i++) t[i] = th_start(lock_expect_closing, &a);
  /* Every thread has registered itself as a waiter of this lock. */
  wait_field(&mu, read ? st_rwait : st_wwait, N);
  th_sleep_ms(5); /* give a wrongly granted lock a chance to show */
  assert_int_equal(atomic_load(&a.done), 0);
  /* Each queued thread holds a reference while it waits: np_close waits for
   * the last reference, so it cannot return while one may still touch the
   * mutex (a queued thread's use after free, issue 9). */
  assert_int_equal(st_refs(&mu), 1 + N);

  assert_int_equal(np__fdmu_incref_and_close(&mu), 0); /* must unblock them */
  wait_count(&a.done, N);
  for (int i = 0; i < N; i++) th_join(t[i]);
  assert_int_equal(atomic_load(&a.ok), N);
  assert_int_equal(st_rwait(&mu), 0);
  assert_int_equal(st_wwait(&mu), 0);
  assert_int_equal(st_refs(&mu), 2);

  assert_false(np__fdmu_decref(&mu));
  assert_true(np__fdmu_rwunlock(&mu, read)); /* the lock holder was last */
  assert_int_equal(st(&mu), ST_CLOSED);
}

static void test_mutex_close_unblock_readers(void **state) {
  (void)state;
  close_unblock(true);
}

static void test_mutex_close_unblock_writers(void **state) {
  (void)state;
  close_unblock(false);
}

/* Blocked readers and writers at once, and the lock holders still hold. */
static void test_mutex_close_unblock_mixed(void **state) {
  (void)state;
  np__fdmutex mu;
  mu_init(&mu);
  assert_int_equal(np__fdmu_rwlock(&mu, true), 0);
  assert_int_equal(np__fdmu_rwlock(&mu, false), 0);
  blocked_arg r = {.mu = &mu, .read = true}, w = {.mu = &mu, .read = false};
  pthread_t t[6];
  for (int i = 0; i < 3; i++) t[i] = th_start(lock_expect_closing, &r);
  for (int i = 3; i < 6; i++) t[i] = th_start(lock_expect_closing, &w);
  wait_field(&mu, st_rwait, 3);
  wait_field(&mu, st_wwait, 3);
  assert_int_equal(atomic_load(&r.done) + atomic_load(&w.done), 0);
  assert_int_equal(np__fdmu_incref_and_close(&mu), 0);
  wait_count(&r.done, 3);
  wait_count(&w.done, 3);
  for (int i = 0; i < 6; i++) th_join(t[i]);
  assert_int_equal(atomic_load(&r.ok), 3);
  assert_int_equal(atomic_load(&w.ok), 3);
  assert_false(np__fdmu_rwunlock(&mu, false));
  assert_false(np__fdmu_decref(&mu));
  assert_true(np__fdmu_rwunlock(&mu, true));
}

/* An unlock hands the lock to exactly one waiter (no close involved). */
typedef struct handoff_arg {
  np__fdmutex *mu;
  atomic_int granted;
  atomic_int errors;
  atomic_int release; /* set by the test: holders may unlock */
} handoff_arg;

static void *lock_then_unlock(void *arg) {
  handoff_arg *a = arg;
  if (np__fdmu_rwlock(a->mu, true) != 0) {
    atomic_fetch_add(&a->errors, 1);
    return NULL;
  }
  atomic_fetch_add(&a->granted, 1);
  while (!atomic_load(&a->release)) th_sleep_ms(1);
  if (np__fdmu_rwunlock(a->mu, true)) atomic_fetch_add(&a->errors, 1);
  return NULL;
}

static void test_mutex_unlock_hands_off_one(void **state) {
  (void)state;
  np__fdmutex mu;
  mu_init(&mu);
  assert_int_equal(np__fdmu_rwlock(&mu, true), 0);
  handoff_arg a = {.mu = &mu};
  pthread_t t[3];
  for (int i = 0; i < 3; i++) t[i] = th_start(lock_then_unlock, &a);
  wait_field(&mu, st_rwait, 3);
  assert_false(np__fdmu_rwunlock(&mu, true));
  /* One waiter gets the lock, the two others stay blocked. */
  wait_count(&a.granted, 1);
  wait_field(&mu, st_rwait, 2);
  th_sleep_ms(5);
  assert_int_equal(atomic_load(&a.granted), 1);
  atomic_store(&a.release, 1); /* now they pass one after another */
  wait_count(&a.granted, 3);
  for (int i = 0; i < 3; i++) th_join(t[i]);
  assert_int_equal(atomic_load(&a.errors), 0);
  assert_int_equal(atomic_load(&a.granted), 3);
  assert_int_equal(st(&mu), 0);
}

/* ---- TestMutexPanic ------------------------------------------------------ */

#define INCONSISTENT "inconsistent fd mutex"

static void die_decref(void *arg) {
  (void)arg;
  np__fdmutex mu;
  mu_init(&mu);
  np__fdmu_decref(&mu);
}

static void die_runlock(void *arg) {
  (void)arg;
  np__fdmutex mu;
  mu_init(&mu);
  np__fdmu_rwunlock(&mu, true);
}

static void die_wunlock(void *arg) {
  (void)arg;
  np__fdmutex mu;
  mu_init(&mu);
  np__fdmu_rwunlock(&mu, false);
}

static void die_incref_decref_decref(void *arg) {
  (void)arg;
  np__fdmutex mu;
  mu_init(&mu);
  if (np__fdmu_incref(&mu) != 0) return;
  if (np__fdmu_decref(&mu)) return;
  np__fdmu_decref(&mu);
}

static void die_double_unlock(void *arg) {
  bool read = *(bool *)arg;
  np__fdmutex mu;
  mu_init(&mu);
  if (np__fdmu_rwlock(&mu, read) != 0) return;
  if (np__fdmu_rwunlock(&mu, read)) return;
  np__fdmu_rwunlock(&mu, read);
}

/* Holding a reference, not the lock: unlock is still unbalanced. */
static void die_unlock_with_ref_only(void *arg) {
  bool read = *(bool *)arg;
  np__fdmutex mu;
  mu_init(&mu);
  if (np__fdmu_incref(&mu) != 0) return;
  np__fdmu_rwunlock(&mu, read);
}

/* Holding the other lock does not make an unlock of this one balanced. */
static void die_unlock_wrong_mode(void *arg) {
  bool read = *(bool *)arg;
  np__fdmutex mu;
  mu_init(&mu);
  if (np__fdmu_rwlock(&mu, !read) != 0) return;
  np__fdmu_rwunlock(&mu, read);
}

/* After close, with the last reference gone, one more decref. */
static void die_decref_after_close(void *arg) {
  (void)arg;
  np__fdmutex mu;
  mu_init(&mu);
  if (np__fdmu_incref_and_close(&mu) != 0) return;
  if (!np__fdmu_decref(&mu)) return;
  np__fdmu_decref(&mu);
}

static void test_mutex_panic(void **state) {
  (void)state;
  bool r = true, w = false;
  th_expect_panic(die_decref, NULL, INCONSISTENT);
  th_expect_panic(die_runlock, NULL, INCONSISTENT);
  th_expect_panic(die_wunlock, NULL, INCONSISTENT);
  th_expect_panic(die_incref_decref_decref, NULL, INCONSISTENT);
  th_expect_panic(die_double_unlock, &r, INCONSISTENT);
  th_expect_panic(die_double_unlock, &w, INCONSISTENT);
  th_expect_panic(die_unlock_with_ref_only, &r, INCONSISTENT);
  th_expect_panic(die_unlock_with_ref_only, &w, INCONSISTENT);
  th_expect_panic(die_unlock_wrong_mode, &r, INCONSISTENT);
  th_expect_panic(die_unlock_wrong_mode, &w, INCONSISTENT);
  th_expect_panic(die_decref_after_close, NULL, INCONSISTENT);

  /* Still not broken: the same sequences, balanced. */
  np__fdmutex mu;
  mu_init(&mu);
  assert_int_equal(np__fdmu_incref(&mu), 0);
  assert_false(np__fdmu_decref(&mu));
  assert_int_equal(np__fdmu_rwlock(&mu, true), 0);
  assert_false(np__fdmu_rwunlock(&mu, true));
  assert_int_equal(np__fdmu_rwlock(&mu, false), 0);
  assert_false(np__fdmu_rwunlock(&mu, false));
  assert_int_equal(st(&mu), 0);
}

/* ---- TestMutexOverflowPanic: here -EOVERFLOW, nothing changed ------------ */

static void test_mutex_overflow_refs(void **state) {
  (void)state;
  np__fdmutex mu;
  mu_init(&mu);
  for (uint32_t i = 0; i < NP__MUTEX_REF_MAX; i++) {
    int err = np__fdmu_incref(&mu);
    if (err != 0) fail_msg("incref %u failed: %d", i, err);
  }
  assert_int_equal(st_refs(&mu), NP__MUTEX_REF_MAX);
  const uint64_t full = st(&mu);
  assert_int_equal(full, (uint64_t)NP__MUTEX_REF_MAX * ST_REF);

  /* Every way of taking one more reference is refused, state unchanged. */
  assert_int_equal(np__fdmu_incref(&mu), -EOVERFLOW);
  assert_int_equal(st(&mu), full);
  assert_int_equal(np__fdmu_rwlock(&mu, true), -EOVERFLOW);
  assert_int_equal(st(&mu), full);
  assert_int_equal(np__fdmu_rwlock(&mu, false), -EOVERFLOW);
  assert_int_equal(st(&mu), full);
  assert_int_equal(np__fdmu_incref_and_close(&mu), -EOVERFLOW);
  assert_int_equal(st(&mu), full); /* in particular: not closed */
  /* Go's panic says "too many concurrent operations"; so does the error. */
  assert_non_null(strstr(np_strerror(-EOVERFLOW), "too many"));

  /* The mutex still works after one decref. */
  assert_false(np__fdmu_decref(&mu));
  assert_int_equal(np__fdmu_rwlock(&mu, true), 0); /* takes the freed slot */
  assert_int_equal(np__fdmu_incref(&mu), -EOVERFLOW);
  assert_int_equal(np__fdmu_rwlock(&mu, false), -EOVERFLOW);
  assert_int_equal(st(&mu), full | ST_RLOCK);
  assert_false(np__fdmu_rwunlock(&mu, true));
  assert_int_equal(np__fdmu_rwlock(&mu, false), 0);
  assert_false(np__fdmu_rwunlock(&mu, false));
  assert_int_equal(st(&mu), full - ST_REF);

  /* Release everything; no field wrapped into a neighbour. */
  for (uint32_t i = 0; i + 1 < NP__MUTEX_REF_MAX; i++)
    if (np__fdmu_decref(&mu)) fail_msg("decref %u reported last-after-close", i);
  assert_int_equal(st(&mu), 0);
  assert_int_equal(np__fdmu_incref_and_close(&mu), 0);
  assert_true(np__fdmu_decref(&mu));
}

/* The waiter counts: reaching 2^20-1 real blocked threads is not cheap, so
 * the state is set up directly (layout from np_internal.h). A lock request
 * that would have to queue as one more waiter is refused without blocking
 * and without changing the state. */
typedef struct lock_result_arg {
  np__fdmutex *mu;
  bool read;
  atomic_int result;
} lock_result_arg;

static void *lock_record(void *arg) {
  lock_result_arg *a = arg;
  atomic_store(&a->result, np__fdmu_rwlock(a->mu, a->read));
  return NULL;
}

static void overflow_wait(bool read) {
  np__fdmutex mu;
  mu_init(&mu);
  const uint64_t held = read ? ST_RLOCK : ST_WLOCK;
  const uint64_t wait_full = ST_FIELD * (read ? ST_RWAIT : ST_WWAIT);
  const uint64_t s = held | ST_REF | wait_full;
  atomic_store(&mu.state, s);
  assert_int_equal(np__fdmu_rwlock(&mu, read), -EOVERFLOW);
  assert_int_equal(st(&mu), s);
  /* The other direction is unaffected. */
  assert_int_equal(np__fdmu_rwlock(&mu, !read), 0);
  assert_false(np__fdmu_rwunlock(&mu, !read));
  assert_int_equal(st(&mu), s);
  /* One below the limit queues normally: a real thread becomes the last
   * waiter, and an unlock hands it the lock. */
  const uint64_t one = read ? ST_RWAIT : ST_WWAIT;
  atomic_store(&mu.state, held | ST_REF | (wait_full - one));
  lock_result_arg a = {.mu = &mu, .read = read, .result = 1};
  pthread_t t = th_start(lock_record, &a);
  wait_field(&mu, read ? st_rwait : st_wwait, ST_FIELD);
  assert_int_equal(atomic_load(&a.result), 1); /* still blocked */
  assert_false(np__fdmu_rwunlock(&mu, read));
  for (int i = 0; i < 10000 && atomic_load(&a.result) == 1; i++) th_sleep_ms(1);
  assert_int_equal(atomic_load(&a.result), 0);
  th_join(t);
  /* The thread holds the lock now; the fake waiters are still counted. */
  assert_int_equal(st(&mu), held | ST_REF | (wait_full - one));
}

static void test_mutex_overflow_waiters(void **state) {
  (void)state;
  overflow_wait(true);
  overflow_wait(false);
}

/* ---- TestMutexStress ----------------------------------------------------- */

enum { STRESS_THREADS = 4, STRESS_OPS = 50000 };

typedef struct stress_shared {
  np__fdmutex mu;
  atomic_int readers; /* holders of the read lock right now */
  atomic_int writers; /* holders of the write lock right now */
  atomic_int errors;
  atomic_int finished;
  /* Plain (non-atomic) counters protected by the locks: a lost update shows
   * broken exclusion, and TSan reports a race if the mutex lacks ordering. */
  uint64_t read_state[2];
  uint64_t write_state[2];
} stress_shared;

typedef struct stress_arg {
  stress_shared *s;
  uint64_t seed;
  uint64_t reads, writes; /* how often this thread held each lock */
} stress_arg;

static uint64_t next_rand(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

static void stress_fail(stress_shared *s) { atomic_fetch_add(&s->errors, 1); }

static void stress_locked(stress_arg *a, bool read) {
  stress_shared *s = a->s;
  atomic_int *holders = read ? &s->readers : &s->writers;
  uint64_t *pair = read ? s->read_state : s->write_state;
  if (atomic_fetch_add(holders, 1) != 0) stress_fail(s);
  if (pair[0] != pair[1]) stress_fail(s);
  pair[0]++;
  pair[1]++;
  if (atomic_fetch_sub(holders, 1) != 1) stress_fail(s);
  if (read)
    a->reads++;
  else
    a->writes++;
}

static void *stress_thread(void *arg) {
  stress_arg *a = arg;
  stress_shared *s = a->s;
  uint64_t x = a->seed;
  for (int i = 0; i < STRESS_OPS && atomic_load(&s->errors) == 0; i++) {
    switch (next_rand(&x) % 4) {
      case 0:
        if (np__fdmu_incref(&s->mu) != 0) stress_fail(s);
        if (np__fdmu_decref(&s->mu)) stress_fail(s);
        break;
      case 1:
      case 2: {
        bool read = (next_rand(&x) & 1) != 0;
        if (np__fdmu_rwlock(&s->mu, read) != 0) {
          stress_fail(s);
          break;
        }
        stress_locked(a, read);
        if (np__fdmu_rwunlock(&s->mu, read)) stress_fail(s);
        break;
      }
      case 3: /* both locks, as a full-duplex user would, always read first */
        if (np__fdmu_rwlock(&s->mu, true) != 0) {
          stress_fail(s);
          break;
        }
        if (np__fdmu_rwlock(&s->mu, false) != 0) {
          stress_fail(s);
          np__fdmu_rwunlock(&s->mu, true);
          break;
        }
        stress_locked(a, true);
        stress_locked(a, false);
        if (np__fdmu_rwunlock(&s->mu, false)) stress_fail(s);
        if (np__fdmu_rwunlock(&s->mu, true)) stress_fail(s);
        break;
    }
  }
  atomic_fetch_add(&s->finished, 1);
  return NULL;
}

static void test_mutex_stress(void **state) {
  (void)state;
  stress_shared s;
  memset(&s, 0, sizeof(s));
  stress_arg args[STRESS_THREADS];
  pthread_t t[STRESS_THREADS];
  for (int i = 0; i < STRESS_THREADS; i++) {
    args[i] = (stress_arg){.s = &s, .seed = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)};
    t[i] = th_start(stress_thread, &args[i]);
  }
  uint64_t reads = 0, writes = 0;
  wait_count(&s.finished, STRESS_THREADS);
  for (int i = 0; i < STRESS_THREADS; i++) {
    th_join(t[i]);
    reads += args[i].reads;
    writes += args[i].writes;
  }
  assert_int_equal(atomic_load(&s.errors), 0);
  assert_true(reads > 0 && writes > 0);
  assert_int_equal(s.read_state[0], reads);
  assert_int_equal(s.read_state[1], reads);
  assert_int_equal(s.write_state[0], writes);
  assert_int_equal(s.write_state[1], writes);
  assert_int_equal(st(&s.mu), 0);
  assert_int_equal(np__fdmu_incref_and_close(&s.mu), 0);
  assert_true(np__fdmu_decref(&s.mu));
}

/* ---- after close: nothing granted, the last release is reported once ----- */

static void test_mutex_after_close_last_release(void **state) {
  (void)state;
  np__fdmutex mu;
  mu_init(&mu);
  assert_int_equal(np__fdmu_rwlock(&mu, true), 0);
  assert_int_equal(np__fdmu_rwlock(&mu, false), 0);
  assert_int_equal(np__fdmu_incref(&mu), 0);
  assert_int_equal(np__fdmu_incref(&mu), 0);
  assert_int_equal(np__fdmu_incref_and_close(&mu), 0);
  /* Nothing is granted any more, whoever asks. */
  assert_int_equal(np__fdmu_incref(&mu), NP_ECLOSING);
  assert_int_equal(np__fdmu_rwlock(&mu, true), NP_ECLOSING);
  assert_int_equal(np__fdmu_rwlock(&mu, false), NP_ECLOSING);
  assert_int_equal(np__fdmu_incref_and_close(&mu), NP_ECLOSING);
  /* Only the very last release of the five says so. */
  assert_false(np__fdmu_decref(&mu)); /* close's own */
  assert_false(np__fdmu_rwunlock(&mu, true));
  assert_false(np__fdmu_decref(&mu));
  assert_false(np__fdmu_rwunlock(&mu, false));
  assert_int_equal(np__fdmu_rwlock(&mu, false), NP_ECLOSING);
  assert_true(np__fdmu_decref(&mu));
  assert_int_equal(st(&mu), ST_CLOSED);
}

/* Threads hammer the mutex while it is closed under them. Each counts the
 * releases reported as last; over everyone, exactly one. A request made
 * after close had returned must be refused. */
typedef struct race_shared {
  np__fdmutex mu;
  atomic_int closed; /* set after incref_and_close returned */
  atomic_int lasts;  /* releases that returned true */
  atomic_int late_grants;
  atomic_int close_wins; /* incref_and_close calls that returned 0 */
  atomic_int go;
  atomic_int finished;
} race_shared;

typedef struct race_arg {
  race_shared *s;
  uint64_t seed;
} race_arg;

static void *race_thread(void *arg) {
  race_arg *a = arg;
  race_shared *s = a->s;
  uint64_t x = a->seed;
  while (!atomic_load(&s->go)) {
  }
  for (;;) {
    int was_closed = atomic_load(&s->closed);
    int kind = (int)(next_rand(&x) % 4);
    int err;
    bool read = kind == 1;
    if (kind == 0)
      err = np__fdmu_incref(&s->mu);
    else if (kind == 3)
      err = np__fdmu_incref_and_close(&s->mu);
    else
      err = np__fdmu_rwlock(&s->mu, read);
    if (err == NP_ECLOSING) break;
    if (err == NP__MU_LAST) { /* queued, refused after close, and its reference was the last */
      atomic_fetch_add(&s->lasts, 1);
      break;
    }
    if (err != 0) {
      atomic_fetch_add(&s->late_grants, 1000); /* unexpected error */
      break;
    }
    if (was_closed) atomic_fetch_add(&s->late_grants, 1);
    if (kind == 3) {
      atomic_fetch_add(&s->close_wins, 1);
      atomic_store(&s->closed, 1);
    }
    bool last = (kind == 0 || kind == 3) ? np__fdmu_decref(&s->mu) : np__fdmu_rwunlock(&s->mu, read);
    if (last) atomic_fetch_add(&s->lasts, 1);
    if (kind == 3) break; /* this thread closed it */
  }
  atomic_fetch_add(&s->finished, 1);
  return NULL;
}

static void test_mutex_close_race_last_once(void **state) {
  (void)state;
  enum { T = 3, ROUNDS = 150 };
  for (int round = 0; round < ROUNDS; round++) {
    race_shared s;
    memset(&s, 0, sizeof(s));
    race_arg args[T];
    pthread_t t[T];
    for (int i = 0; i < T; i++) {
      args[i] = (race_arg){.s = &s, .seed = (uint64_t)(round * T + i) * 2654435761u + 1};
      t[i] = th_start(race_thread, &args[i]);
    }
    atomic_store(&s.go, 1);
    /* Some rounds the test closes, others a thread does (kind 3). */
    if (round % 2 == 0) {
      for (int spin = 0; spin < round * 50; spin++) atomic_load(&s.closed);
      int err = np__fdmu_incref_and_close(&s.mu);
      if (err == 0) {
        atomic_fetch_add(&s.close_wins, 1);
        atomic_store(&s.closed, 1);
        if (np__fdmu_decref(&s.mu)) atomic_fetch_add(&s.lasts, 1);
      } else {
        assert_int_equal(err, NP_ECLOSING);
      }
    }
    wait_count(&s.finished, T);
    for (int i = 0; i < T; i++) th_join(t[i]);
    assert_int_equal(atomic_load(&s.close_wins), 1);
    assert_int_equal(atomic_load(&s.late_grants), 0);
    assert_int_equal(atomic_load(&s.lasts), 1);
    assert_int_equal(st(&s.mu), ST_CLOSED);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mutex_lock),
      cmocka_unit_test(test_mutex_close),
      cmocka_unit_test(test_mutex_close_unblock_readers),
      cmocka_unit_test(test_mutex_close_unblock_writers),
      cmocka_unit_test(test_mutex_close_unblock_mixed),
      cmocka_unit_test(test_mutex_unlock_hands_off_one),
      cmocka_unit_test(test_mutex_panic),
      cmocka_unit_test(test_mutex_overflow_refs),
      cmocka_unit_test(test_mutex_overflow_waiters),
      cmocka_unit_test(test_mutex_stress),
      cmocka_unit_test(test_mutex_after_close_last_release),
      cmocka_unit_test(test_mutex_close_race_last_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
