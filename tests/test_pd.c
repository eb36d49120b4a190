/* test_pd.c - the pollDesc rg/wg state machine (np_internal.h, the comment
 * above NP__PD_NIL; Go's netpollblock / netpollunblock), one test per row of
 * the transition table, on real pipes and socketpairs registered with the
 * real epoll backend.
 *
 * Manual pollers (no poller thread) let a test decide when readiness is
 * delivered (np__netpoll / np__pd_ready) and when timers run
 * (np__run_timers); the commit hook makes readiness, timeout or close land
 * between WAIT and the park's commit; th_wait_parked proves a waiter really
 * sleeps. Every blocking call runs in a job thread joined with a bound, so a
 * wrong state machine fails the test instead of hanging it. */
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "helpers.h"

#define BOUND_MS 10000

#define WAIT_FOR(cond)                                          \
  do {                                                          \
    for (int wf_i_ = 0; wf_i_ < BOUND_MS && !(cond); wf_i_++) { \
      th_sleep_ms(1);                                           \
    }                                                           \
    if (!(cond)) fail_msg("timed out waiting for %s", #cond);   \
  } while (0)

/* ---- small accessors -------------------------------------------------------- */

static np__auptr *sem_ptr(np__pd *pd, int mode) { return mode == 'r' ? &pd->rg : &pd->wg; }
static uintptr_t sem(np__pd *pd, int mode) { return np__load_uptr(sem_ptr(pd, mode)); }

static uint64_t parked(np_poller *p) {
  np_stats s;
  np_poller_stats(p, &s);
  return s.waiters_parked;
}

static uint64_t timers_fired(np_poller *p) {
  np_stats s;
  np_poller_stats(p, &s);
  return s.timers_fired;
}

static int64_t past(void) { return np_deadline_after(0); }

/* Every test ends here: nobody may be left parked. */
static void finish(np_poller *p) {
  assert_int_equal(parked(p), 0);
  th_poller_destroy(p);
}

/* ---- fixture: one registered end, one raw peer --------------------------------
 * raw[0] is registered (np_open, or np__pd_open for pd-level tests that call
 * np__pd_unblock themselves); raw[1] is the test's own non-blocking peer. On a
 * manual poller the initial edge (EPOLLOUT) is consumed and both semaphores
 * reset, so every test starts at NIL/NIL. */
typedef struct fx {
  np_poller *p;
  int raw[2];
  np_fd *f; /* NULL for pd-level fixtures */
  np__pd *pd;
  bool manual;
} fx;

static void fx_open(fx *x, np_poller *p, bool manual, bool sock, bool pd_level) {
  memset(x, 0, sizeof(*x));
  x->p = p;
  x->manual = manual;
  if (sock)
    th_socketpair(x->raw);
  else
    th_pipe(x->raw);
  assert_int_equal(fcntl(x->raw[1], F_SETFL, O_NONBLOCK), 0);
  if (pd_level) {
    assert_int_equal(fcntl(x->raw[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(np__pd_open(p, x->raw[0], &x->pd), 0);
  } else {
    assert_int_equal(np_open(p, x->raw[0], &x->f), 0);
    x->pd = x->f->pd;
  }
  if (manual) {
    assert_true(np__poll_once(p, false) >= 0);
    assert_int_equal(np__pd_reset(x->pd, 'r'), NP__POLL_OK);
    assert_int_equal(np__pd_reset(x->pd, 'w'), NP__POLL_OK);
    assert_int_equal(sem(x->pd, 'r'), NP__PD_NIL);
    assert_int_equal(sem(x->pd, 'w'), NP__PD_NIL);
  }
}

/* Closes what np_poller_destroy would not: a pd-level pd and the raw peer. */
static void fx_close(fx *x) {
  if (x->f == NULL) {
    if ((np__load_u32(&x->pd->info) & NP__INFO_CLOSING) == 0) np__pd_unblock(x->pd);
    np__pd_close(x->pd, true);
    close(x->raw[0]);
  }
  close(x->raw[1]);
}

/* Fills the registered end's send buffer so the kernel reports it unwritable. */
static void fx_fill(fx *x) { assert_true(th_fill(x->raw[0]) > 0); }

/* Makes the kernel report `mode` readiness on raw[0]: data from the peer for
 * 'r', the peer draining a filled buffer for 'w'. */
static void fx_make_ready(fx *x, int mode) {
  if (mode == 'r') {
    ssize_t n = write(x->raw[1], "x", 1);
    (void)n;
    return;
  }
  static char junk[65536];
  while (read(x->raw[1], junk, sizeof(junk)) > 0) {
  }
}

/* Real readiness through epoll on a manual poller: returns np__netpoll's
 * woken count (waits at most 5 s for the event). Safe to call from the hook. */
static int fx_deliver(fx *x, int mode) {
  fx_make_ready(x, mode);
  return np__netpoll(x->p, 5000 * MS);
}

/* ---- jobs: a blocking call in its own thread, joined with a bound ------------- */
enum { OP_PD_WAIT, OP_WAIT, OP_READ, OP_WRITE, OP_CLOSE };

typedef struct job {
  int op;
  np__pd *pd;
  np_fd *f;
  int mode;
  pthread_t t;
  atomic_int done;
  long result;
  size_t written;
} job;

static void *job_main(void *arg) {
  job *j = arg;
  char c;
  switch (j->op) {
    case OP_PD_WAIT: j->result = np__pd_wait(j->pd, j->mode); break;
    case OP_WAIT: j->result = j->mode == 'r' ? np_wait_read(j->f) : np_wait_write(j->f); break;
    case OP_READ: j->result = np_read(j->f, &c, 1); break;
    case OP_WRITE: j->result = np_write(j->f, "x", 1, &j->written); break;
    case OP_CLOSE: j->result = np_close(j->f); break;
    default: break;
  }
  atomic_store(&j->done, 1);
  return NULL;
}

static void job_start(job *j, int op, np__pd *pd, np_fd *f, int mode) {
  j->op = op;
  j->pd = pd;
  j->f = f;
  j->mode = mode;
  j->result = -1000;
  j->written = 0;
  atomic_init(&j->done, 0);
  j->t = th_start(job_main, j);
}

static long job_join(job *j) {
  WAIT_FOR(atomic_load(&j->done) != 0); /* a thread still blocked fails the test */
  th_join(j->t);
  return j->result;
}

/* ---- the commit hook ----------------------------------------------------------
 * Runs in the parking thread after rg/wg became WAIT, before the commit CAS.
 * It records what it saw (asserts happen on the main thread) and runs the
 * test's action for that call. */
#define HOOK_MAX 8
typedef void (*hook_action)(np__waiter *w, int call);

static struct {
  np__pd *pd;
  hook_action action;
  atomic_int calls;
  atomic_uintptr_t seen[HOOK_MAX];  /* rg/wg as the hook found it */
  atomic_uintptr_t after[HOOK_MAX]; /* rg/wg after the action */
  atomic_uintptr_t waiter[HOOK_MAX];
  atomic_int mode[HOOK_MAX];
  atomic_long value[HOOK_MAX]; /* whatever the action wants to report */
  atomic_long value2[HOOK_MAX];
  atomic_int in_hook;
  atomic_int give_up; /* an action's spin timed out */
} g_hook;

static fx *g_fx; /* the fixture the actions work on */

static void hook(np__waiter *w) {
  if (w->pd != g_hook.pd) return;
  int n = atomic_fetch_add(&g_hook.calls, 1);
  if (n >= HOOK_MAX) return;
  np__pd *pd = g_hook.pd;
  atomic_store(&g_hook.seen[n], sem(pd, w->mode));
  atomic_store(&g_hook.waiter[n], (uintptr_t)w);
  atomic_store(&g_hook.mode[n], w->mode);
  if (g_hook.action != NULL) g_hook.action(w, n);
  atomic_store(&g_hook.after[n], sem(pd, w->mode));
}

static void hook_install(np__pd *pd, hook_action action) {
  g_hook.pd = pd;
  g_hook.action = action;
  atomic_store(&g_hook.calls, 0);
  atomic_store(&g_hook.in_hook, 0);
  atomic_store(&g_hook.give_up, 0);
  for (int i = 0; i < HOOK_MAX; i++) {
    atomic_store(&g_hook.seen[i], 0);
    atomic_store(&g_hook.after[i], 0);
    atomic_store(&g_hook.waiter[i], 0);
    atomic_store(&g_hook.mode[i], 0);
    atomic_store(&g_hook.value[i], -1000);
    atomic_store(&g_hook.value2[i], -1000);
  }
  np__test_hook_before_commit = hook;
}

static int hook_calls(void) { return atomic_load(&g_hook.calls); }

static int teardown(void **state) {
  (void)state;
  np__test_hook_before_commit = NULL;
  g_hook.pd = NULL;
  g_hook.action = NULL;
  g_fx = NULL;
  return 0;
}

/* ==== 1. NIL + wait -> WAIT -> commit -> parked; readiness -> READY + unpark;
 *         the waiter consumes READY -> NIL and returns OK ================== */
static void nil_wait_park_ready(int mode) {
  np_poller *p = th_poller_manual();
  fx x;
  fx_open(&x, p, true, true, false);
  if (mode == 'w') fx_fill(&x);
  hook_install(x.pd, NULL);

  job j;
  job_start(&j, OP_PD_WAIT, x.pd, NULL, mode);
  th_wait_parked(p, 1);
  assert_int_equal(hook_calls(), 1);
  assert_int_equal(atomic_load(&g_hook.seen[0]), NP__PD_WAIT); /* NIL -> WAIT before commit */
  np__waiter *w = (np__waiter *)atomic_load(&g_hook.waiter[0]);
  assert_ptr_equal(w->pd, x.pd);
  assert_int_equal(w->mode, mode);
  assert_int_equal(sem(x.pd, mode), (uintptr_t)w); /* WAIT -> waiter (commit) */
  assert_int_equal(atomic_load(&j.done), 0);

  assert_int_equal(fx_deliver(&x, mode), 1); /* waiter -> READY, exactly one unpark */
  assert_int_equal(parked(p), 0);
  assert_int_equal(job_join(&j), NP__POLL_OK); /* OK only if the swap found READY */
  assert_int_equal(sem(x.pd, mode), NP__PD_NIL);
  assert_int_equal(hook_calls(), 1);

  fx_close(&x);
  finish(p);
}

static void test_nil_wait_commit_park_readiness_wakes(void **state) {
  (void)state;
  nil_wait_park_ready('r');
  nil_wait_park_ready('w');
}

/* ==== 2. readiness first: NIL -> READY; the next wait returns at once ======= */
static void test_ready_first_wait_does_not_park(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  fx x;
  fx_open(&x, p, true, false, false);       /* pipe */
  assert_int_equal(fx_deliver(&x, 'r'), 0); /* nobody to wake */
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);
  hook_install(x.pd, NULL);

  job j;
  job_start(&j, OP_PD_WAIT, x.pd, NULL, 'r');
  assert_int_equal(job_join(&j), NP__POLL_OK);
  assert_int_equal(hook_calls(), 0); /* never reached the park */
  assert_int_equal(parked(p), 0);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL); /* READY consumed */

  /* The same with np__pd_ready directly: NIL -> READY, nobody woken. */
  assert_int_equal(np__pd_ready(x.pd, x.pd->fdseq, EPOLLIN), 0);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);
  job_start(&j, OP_PD_WAIT, x.pd, NULL, 'r');
  assert_int_equal(job_join(&j), NP__POLL_OK);
  assert_int_equal(hook_calls(), 0);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);

  fx_close(&x);
  finish(p);
}

/* ==== 3. READY + readiness -> stays READY, nobody unparked, one notification = */
static void test_ready_plus_readiness_stays_ready(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  fx x;
  fx_open(&x, p, true, true, false);
  assert_int_equal(fx_deliver(&x, 'r'), 0);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);

  assert_int_equal(np__pd_ready(x.pd, x.pd->fdseq, EPOLLIN), 0);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);
  fx_make_ready(&x, 'r'); /* more data: a second real edge */
  assert_int_equal(np__netpoll(p, 0), 0);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);
  assert_int_equal(parked(p), 0);

  /* The notifications do not add up: one wait consumes, the next parks. */
  hook_install(x.pd, NULL);
  job j;
  job_start(&j, OP_PD_WAIT, x.pd, NULL, 'r');
  assert_int_equal(job_join(&j), NP__POLL_OK);
  assert_int_equal(hook_calls(), 0);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);

  job_start(&j, OP_PD_WAIT, x.pd, NULL, 'r');
  th_wait_parked(p, 1);
  assert_int_equal(hook_calls(), 1);
  assert_int_equal(np__pd_ready(x.pd, x.pd->fdseq, EPOLLIN), 1);
  assert_int_equal(job_join(&j), NP__POLL_OK);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);

  fx_close(&x);
  finish(p);
}

/* ==== 4. readiness between WAIT and commit: WAIT -> READY, commit fails, the
 *         park is abandoned, the wait returns OK ============================= */
static void deliver_in_hook(np__waiter *w, int call) {
  if (call != 0) return;
  atomic_store(&g_hook.value[call], fx_deliver(g_fx, w->mode)); /* real epoll event */
}

static void ready_before_commit(int mode) {
  np_poller *p = th_poller_manual();
  fx x;
  fx_open(&x, p, true, true, false);
  if (mode == 'w') fx_fill(&x);
  g_fx = &x;
  hook_install(x.pd, deliver_in_hook);

  job j;
  job_start(&j, OP_PD_WAIT, x.pd, NULL, mode);
  assert_int_equal(job_join(&j), NP__POLL_OK);
  assert_int_equal(hook_calls(), 1); /* no second round, no park */
  assert_int_equal(atomic_load(&g_hook.seen[0]), NP__PD_WAIT);
  assert_int_equal(atomic_load(&g_hook.value[0]), 0); /* WAIT -> READY wakes nobody */
  assert_int_equal(atomic_load(&g_hook.after[0]), NP__PD_READY);
  assert_int_equal(sem(x.pd, mode), NP__PD_NIL); /* the final swap took READY */
  assert_int_equal(parked(p), 0);

  fx_close(&x);
  finish(p);
}

static void test_readiness_between_wait_and_commit(void **state) {
  (void)state;
  ready_before_commit('r');
  ready_before_commit('w');
}

/* ==== 5. timeout between WAIT and commit: WAIT -> NIL, commit fails, the wait
 *         returns TIMEOUT (past deadline, and a real timer run by run_timers) = */
static void past_deadline_in_hook(np__waiter *w, int call) {
  if (call == 0) np__pd_set_deadline(g_hook.pd, past(), w->mode);
}

static void timer_in_hook(np__waiter *w, int call) {
  if (call != 0) return;
  np__pd_set_deadline(g_hook.pd, np_deadline_after(60000 * MS), w->mode);
  atomic_store(&g_hook.value2[call], (long)np__load_u32(&g_hook.pd->info));
  /* Run the timer heap as if a minute had passed: the armed timer fires. */
  atomic_store(&g_hook.value[call], np__run_timers(g_fx->p, np_now() + 120000 * MS));
}

static void timeout_before_commit(int mode, hook_action action) {
  np_poller *p = th_poller_manual();
  fx x;
  fx_open(&x, p, true, true, false);
  g_fx = &x;
  hook_install(x.pd, action);

  job j;
  job_start(&j, OP_PD_WAIT, x.pd, NULL, mode);
  assert_int_equal(job_join(&j), NP__POLL_TIMEOUT);
  assert_int_equal(hook_calls(), 1);
  assert_int_equal(atomic_load(&g_hook.seen[0]), NP__PD_WAIT);
  assert_int_equal(atomic_load(&g_hook.after[0]), NP__PD_NIL); /* WAIT -> NIL */
  if (action == timer_in_hook) {
    assert_int_equal(atomic_load(&g_hook.value[0]), 1); /* the timer ran */
    /* Before it fired the deadline was not yet expired. */
    uint32_t expired = mode == 'r' ? NP__INFO_EXPIRED_READ : NP__INFO_EXPIRED_WRITE;
    assert_int_equal((uint32_t)atomic_load(&g_hook.value2[0]) & expired, 0);
    assert_int_equal(timers_fired(p), 1);
  }
  assert_int_equal(sem(x.pd, mode), NP__PD_NIL);
  assert_int_equal(np__pd_checkerr(x.pd, mode), NP__POLL_TIMEOUT);
  assert_int_equal(np__pd_checkerr(x.pd, mode == 'r' ? 'w' : 'r'), NP__POLL_OK);
  assert_int_equal(parked(p), 0);

  fx_close(&x);
  finish(p);
}

static void test_timeout_between_wait_and_commit(void **state) {
  (void)state;
  timeout_before_commit('r', past_deadline_in_hook);
  timeout_before_commit('w', past_deadline_in_hook);
  timeout_before_commit('r', timer_in_hook);
  timeout_before_commit('w', timer_in_hook);
}

/* ==== 6. close between WAIT and commit: WAIT -> NIL, the wait returns CLOSING */
static void unblock_in_hook(np__waiter *w, int call) {
  (void)w;
  if (call == 0) np__pd_unblock(g_hook.pd);
}

static void test_close_between_wait_and_commit(void **state) {
  (void)state;
  const int modes[] = {'r', 'w'};
  for (int m = 0; m < 2; m++) {
    int mode = modes[m];
    np_poller *p = th_poller_manual();
    fx x;
    fx_open(&x, p, true, true, true); /* pd-level: the hook unblocks */
    hook_install(x.pd, unblock_in_hook);

    job j;
    job_start(&j, OP_PD_WAIT, x.pd, NULL, mode);
    assert_int_equal(job_join(&j), NP__POLL_CLOSING);
    assert_int_equal(hook_calls(), 1);
    assert_int_equal(atomic_load(&g_hook.seen[0]), NP__PD_WAIT);
    assert_int_equal(atomic_load(&g_hook.after[0]), NP__PD_NIL);
    assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);
    assert_int_equal(sem(x.pd, 'w'), NP__PD_NIL);
    assert_int_equal(parked(p), 0);
    /* I7: after closing no wait parks; it returns at once. */
    assert_int_equal(np__pd_wait(x.pd, mode), NP__POLL_CLOSING);
    assert_int_equal(hook_calls(), 1);

    fx_close(&x); /* np__pd_close: both semaphores idle */
    finish(p);
  }
}

/* The same through the public close: np_close from another thread lands while
 * the waiter (holding the fd's read lock) sits between WAIT and commit. */
static void wait_for_close_in_hook(np__waiter *w, int call) {
  (void)w;
  if (call != 0) return;
  atomic_store(&g_hook.in_hook, 1);
  for (int i = 0; i < BOUND_MS * 10; i++) {
    if (np__load_u32(&g_hook.pd->info) & NP__INFO_CLOSING) return;
    usleep(100);
  }
  atomic_store(&g_hook.give_up, 1);
}

static void test_np_close_between_wait_and_commit(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  fx x;
  fx_open(&x, p, true, true, false);
  np__pd *pd = x.pd;
  hook_install(pd, wait_for_close_in_hook);

  job waiter, closer;
  job_start(&waiter, OP_WAIT, NULL, x.f, 'r');
  WAIT_FOR(atomic_load(&g_hook.in_hook) != 0);
  job_start(&closer, OP_CLOSE, NULL, x.f, 0);
  assert_int_equal(job_join(&waiter), NP_ECLOSING);
  assert_int_equal(job_join(&closer), 0);
  assert_int_equal(atomic_load(&g_hook.give_up), 0);
  assert_int_equal(hook_calls(), 1);
  assert_int_equal(atomic_load(&g_hook.after[0]), NP__PD_NIL);
  assert_int_equal(sem(pd, 'r'), NP__PD_NIL); /* pd memory is type-stable */
  assert_int_equal(parked(p), 0);

  fx_close(&x);
  finish(p);
}

/* ==== 7. parked waiter + deadline timer (poller thread) -> NIL + unpark -> timeout */
static void test_parked_waiter_deadline_timer(void **state) {
  (void)state;
  /* read: np_wait_read parks on an empty pipe */
  np_poller *p = th_poller();
  fx x;
  fx_open(&x, p, false, false, false);
  job j;
  job_start(&j, OP_WAIT, NULL, x.f, 'r');
  th_wait_parked(p, 1);
  assert_true(sem(x.pd, 'r') > NP__PD_WAIT);
  int64_t deadline = np_deadline_after(30 * MS);
  assert_int_equal(np_set_read_deadline(x.f, deadline), 0);
  assert_int_equal(job_join(&j), NP_ETIMEOUT);
  assert_true(np_now() >= deadline); /* I3: timeout only once the deadline passed */
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);
  assert_int_equal(timers_fired(p), 1);
  assert_int_equal(parked(p), 0);
  fx_close(&x);
  finish(p);

  /* write: np_write parks on a full socket */
  p = th_poller();
  fx_open(&x, p, false, true, false);
  fx_fill(&x);
  job_start(&j, OP_WRITE, NULL, x.f, 'w');
  th_wait_parked(p, 1);
  deadline = np_deadline_after(30 * MS);
  assert_int_equal(np_set_write_deadline(x.f, deadline), 0);
  assert_int_equal(job_join(&j), NP_ETIMEOUT);
  assert_int_equal(j.written, 0);
  assert_true(np_now() >= deadline);
  assert_int_equal(sem(x.pd, 'w'), NP__PD_NIL);
  assert_int_equal(timers_fired(p), 1);
  assert_int_equal(parked(p), 0);
  fx_close(&x);
  finish(p);
}

/* ==== 8. parked waiters + np_close from another thread -> closing, count 0 === */
static void test_parked_waiter_np_close(void **state) {
  (void)state;
  np_poller *p = th_poller();
  fx x;
  fx_open(&x, p, false, true, false);
  np__pd *pd = x.pd;
  fx_fill(&x);
  job reader, writer, closer;
  job_start(&reader, OP_READ, NULL, x.f, 'r');
  job_start(&writer, OP_WRITE, NULL, x.f, 'w');
  th_wait_parked(p, 2);
  assert_true(sem(pd, 'r') > NP__PD_WAIT);
  job_start(&closer, OP_CLOSE, NULL, x.f, 0);
  assert_int_equal(job_join(&closer), 0);
  /* np_close returned: both waiters were woken and have left. */
  assert_int_equal(parked(p), 0);
  assert_int_equal(job_join(&reader), NP_ECLOSING);
  assert_int_equal(job_join(&writer), NP_ECLOSING);
  assert_int_equal(writer.written, 0);
  assert_int_equal(sem(pd, 'r'), NP__PD_NIL);
  assert_int_equal(sem(pd, 'w'), NP__PD_NIL);
  assert_int_equal(np_close(x.f), NP_ECLOSING);
  fx_close(&x);
  finish(p);
}

/* ==== 9. READY + timeout/close: READY survives, checkerr / wait report the error */
static void test_ready_survives_timeout(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  fx x;
  fx_open(&x, p, true, true, false);
  assert_int_equal(fx_deliver(&x, 'r'), 0);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);

  /* past deadline */
  np__pd_set_deadline(x.pd, past(), 'r');
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY); /* never READY -> NIL */
  assert_int_equal(np__pd_checkerr(x.pd, 'r'), NP__POLL_TIMEOUT);
  assert_int_equal(np__pd_wait(x.pd, 'r'), NP__POLL_TIMEOUT);
  assert_int_equal(np__pd_reset(x.pd, 'r'), NP__POLL_TIMEOUT);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);

  /* timer firing */
  np__pd_set_deadline(x.pd, 0, 'r');
  assert_int_equal(np__pd_checkerr(x.pd, 'r'), NP__POLL_OK);
  np__pd_set_deadline(x.pd, np_deadline_after(60000 * MS), 'r');
  assert_int_equal(np__run_timers(p, np_now() + 120000 * MS), 1);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);
  assert_int_equal(np__pd_checkerr(x.pd, 'r'), NP__POLL_TIMEOUT);
  assert_int_equal(np__pd_wait(x.pd, 'r'), NP__POLL_TIMEOUT);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);

  /* Clearing the deadline: the surviving notification is consumed. */
  np__pd_set_deadline(x.pd, 0, 'r');
  assert_int_equal(np__pd_wait(x.pd, 'r'), NP__POLL_OK);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);
  assert_int_equal(parked(p), 0);

  fx_close(&x);
  finish(p);
}

static void test_ready_survives_close(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  fx x;
  fx_open(&x, p, true, true, true);
  assert_int_equal(fx_deliver(&x, 'r'), 0);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);
  assert_int_equal(sem(x.pd, 'w'), NP__PD_READY); /* the edge carried EPOLLOUT too */

  np__pd_unblock(x.pd);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);
  assert_int_equal(sem(x.pd, 'w'), NP__PD_READY);
  assert_int_equal(np__pd_checkerr(x.pd, 'r'), NP__POLL_CLOSING);
  assert_int_equal(np__pd_checkerr(x.pd, 'w'), NP__POLL_CLOSING);
  assert_int_equal(np__pd_wait(x.pd, 'r'), NP__POLL_CLOSING);
  assert_int_equal(np__pd_wait(x.pd, 'w'), NP__POLL_CLOSING);
  assert_int_equal(np__pd_reset(x.pd, 'r'), NP__POLL_CLOSING);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);
  /* Readiness after close is dropped. */
  assert_int_equal(np__pd_ready(x.pd, x.pd->fdseq, EPOLLIN), 0);
  assert_int_equal(parked(p), 0);

  fx_close(&x); /* np__pd_close accepts READY */
  finish(p);
}

/* ==== 10. NIL + timeout/close: stays NIL, nobody woken ======================== */
static void test_nil_timeout_stays_nil(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  fx x;
  fx_open(&x, p, true, true, false);
  /* A writer parked on the same pd: a read timeout must not wake it. */
  job writer;
  job_start(&writer, OP_PD_WAIT, x.pd, NULL, 'w');
  th_wait_parked(p, 1);
  uintptr_t wg = sem(x.pd, 'w');
  assert_true(wg > NP__PD_WAIT);

  np__pd_set_deadline(x.pd, past(), 'r');
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);
  assert_int_equal(np__pd_checkerr(x.pd, 'r'), NP__POLL_TIMEOUT);
  assert_int_equal(np__pd_checkerr(x.pd, 'w'), NP__POLL_OK);
  assert_int_equal(parked(p), 1);
  assert_int_equal(sem(x.pd, 'w'), wg);

  np__pd_set_deadline(x.pd, 0, 'r');
  np__pd_set_deadline(x.pd, np_deadline_after(60000 * MS), 'r');
  assert_int_equal(np__run_timers(p, np_now() + 120000 * MS), 1);
  assert_int_equal(timers_fired(p), 1);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);
  assert_int_equal(np__pd_checkerr(x.pd, 'r'), NP__POLL_TIMEOUT);
  assert_int_equal(parked(p), 1);
  assert_int_equal(sem(x.pd, 'w'), wg);
  assert_int_equal(atomic_load(&writer.done), 0);

  assert_int_equal(np__pd_ready(x.pd, x.pd->fdseq, EPOLLOUT), 1);
  assert_int_equal(job_join(&writer), NP__POLL_OK);
  assert_int_equal(sem(x.pd, 'w'), NP__PD_NIL);

  fx_close(&x);
  finish(p);
}

static void test_nil_close_stays_nil(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  fx x;
  fx_open(&x, p, true, true, true);
  np__pd_unblock(x.pd);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);
  assert_int_equal(sem(x.pd, 'w'), NP__PD_NIL);
  assert_int_equal(np__pd_checkerr(x.pd, 'r'), NP__POLL_CLOSING);
  assert_int_equal(np__pd_checkerr(x.pd, 'w'), NP__POLL_CLOSING);
  assert_int_equal(parked(p), 0);
  /* A deadline after close changes nothing. */
  np__pd_set_deadline(x.pd, past(), 'r' + 'w');
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);
  assert_int_equal(np__pd_checkerr(x.pd, 'r'), NP__POLL_CLOSING);
  fx_close(&x);
  finish(p);
}

/* ==== death-test children: no cmocka in the child, _exit(2/3) on setup trouble */
static np_poller *child_poller(void) {
  np_poller *p = NULL;
  if (np__poller_new(&p, &np__backend_epoll, 0, false) != 0) _exit(2);
  return p;
}

static np__pd *child_pd(np_poller *p) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) _exit(2);
  np_fd *f = NULL;
  if (np_open(p, fds[0], &f) != 0) _exit(2);
  return f->pd;
}

static void *child_waiter(void *arg) {
  (void)np__pd_wait(arg, 'r');
  return NULL;
}

/* Parks a thread on pd's rg and waits until it is really parked. */
static void child_park_reader(np_poller *p, np__pd *pd) {
  pthread_t t;
  if (pthread_create(&t, NULL, child_waiter, pd) != 0) _exit(2);
  for (int i = 0; i < BOUND_MS; i++) {
    np_stats s;
    np_poller_stats(p, &s);
    if (s.waiters_parked == 1 && np__load_uptr(&pd->rg) > NP__PD_WAIT) return;
    usleep(1000);
  }
  _exit(3);
}

/* ==== 11. double wait ======================================================== */
static void child_double_wait_stored(void *arg) {
  int mode = (int)(intptr_t)arg;
  np_poller *p = child_poller();
  np__pd *pd = child_pd(p);
  np__store_uptr(sem_ptr(pd, mode), NP__PD_WAIT); /* someone is preparing to park */
  (void)np__pd_wait(pd, mode);
}

static void child_double_wait_parked(void *arg) {
  (void)arg;
  np_poller *p = child_poller();
  np__pd *pd = child_pd(p);
  child_park_reader(p, pd);
  (void)np__pd_wait(pd, 'r'); /* a second reader */
}

static void test_double_wait_panics(void **state) {
  (void)state;
  th_expect_panic(child_double_wait_stored, (void *)(intptr_t)'r', "double wait");
  th_expect_panic(child_double_wait_stored, (void *)(intptr_t)'w', "double wait");
  th_expect_panic(child_double_wait_parked, NULL, "double wait");
}

/* ==== 12. corrupted polldesc: a waiter still installed after wake-up ========= */
static np__waiter g_fake_waiter __attribute__((aligned(64)));

static void install_fake_waiter(np__waiter *w) {
  np__waiter_init(&g_fake_waiter, w->pd, w->mode);
  /* The commit CAS (WAIT -> w) fails, the final swap finds this. */
  np__store_uptr(sem_ptr((np__pd *)w->pd, w->mode), (uintptr_t)&g_fake_waiter);
}

static void child_corrupted(void *arg) {
  int mode = (int)(intptr_t)arg;
  np_poller *p = child_poller();
  np__pd *pd = child_pd(p);
  np__test_hook_before_commit = install_fake_waiter;
  (void)np__pd_wait(pd, mode);
}

static void test_corrupted_polldesc_panics(void **state) {
  (void)state;
  th_expect_panic(child_corrupted, (void *)(intptr_t)'r', "corrupted polldesc");
  th_expect_panic(child_corrupted, (void *)(intptr_t)'w', "corrupted polldesc");
}

/* ==== 13. reset clears a stale READY; reset with a parked waiter panics ====== */
static void test_reset_clears_stale_ready(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  fx x;
  fx_open(&x, p, true, true, false);
  assert_int_equal(np__pd_reset(x.pd, 'r'), NP__POLL_OK); /* NIL stays NIL */
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);

  assert_int_equal(fx_deliver(&x, 'r'), 0);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);
  assert_int_equal(np__pd_reset(x.pd, 'r'), NP__POLL_OK);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);

  /* The stale notification is gone: the next wait really parks. */
  hook_install(x.pd, NULL);
  job j;
  job_start(&j, OP_PD_WAIT, x.pd, NULL, 'r');
  th_wait_parked(p, 1);
  assert_int_equal(hook_calls(), 1);
  assert_int_equal(fx_deliver(&x, 'r'), 1);
  assert_int_equal(job_join(&j), NP__POLL_OK);

  /* reset reports an error first and then leaves the semaphore alone. */
  assert_int_equal(np__pd_ready(x.pd, x.pd->fdseq, EPOLLIN), 0);
  np__pd_set_deadline(x.pd, past(), 'r');
  assert_int_equal(np__pd_reset(x.pd, 'r'), NP__POLL_TIMEOUT);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_READY);
  np__pd_set_deadline(x.pd, 0, 'r');
  assert_int_equal(np__pd_reset(x.pd, 'r'), NP__POLL_OK);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);

  fx_close(&x);
  finish(p);
}

static void child_reset_parked(void *arg) {
  (void)arg;
  np_poller *p = child_poller();
  np__pd *pd = child_pd(p);
  child_park_reader(p, pd);
  (void)np__pd_reset(pd, 'r');
}

static void test_reset_with_parked_waiter_panics(void **state) {
  (void)state;
  th_expect_panic(child_reset_parked, NULL, "double wait");
}

/* ==== 14. woken by a timeout that is cleared before the re-check: block again
 *          (Go's "pretend it has not happened and retry"), then data -> OK === */
static void timeout_then_clear_in_hook(np__waiter *w, int call) {
  if (call != 0) return; /* second round: let it park */
  np__pd *pd = g_hook.pd;
  np__pd_set_deadline(pd, past(), w->mode); /* WAIT -> NIL: the waiter is off */
  atomic_store(&g_hook.value[call], np__pd_checkerr(pd, w->mode));
  np__pd_set_deadline(pd, 0, w->mode); /* cleared before the waiter re-checks */
  atomic_store(&g_hook.value2[call], np__pd_checkerr(pd, w->mode));
}

static void test_cleared_deadline_blocks_again(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  fx x;
  fx_open(&x, p, true, true, false);
  hook_install(x.pd, timeout_then_clear_in_hook);

  job j;
  job_start(&j, OP_PD_WAIT, x.pd, NULL, 'r');
  th_wait_parked(p, 1);
  assert_int_equal(hook_calls(), 2); /* blocked again */
  assert_int_equal(atomic_load(&g_hook.seen[0]), NP__PD_WAIT);
  assert_int_equal(atomic_load(&g_hook.value[0]), NP__POLL_TIMEOUT);
  assert_int_equal(atomic_load(&g_hook.value2[0]), NP__POLL_OK);
  assert_int_equal(atomic_load(&g_hook.after[0]), NP__PD_NIL);
  assert_int_equal(atomic_load(&g_hook.seen[1]), NP__PD_WAIT); /* NIL -> WAIT again */
  assert_int_equal(sem(x.pd, 'r'), atomic_load(&g_hook.waiter[1]));
  assert_int_equal(atomic_load(&j.done), 0);

  assert_int_equal(fx_deliver(&x, 'r'), 1);
  assert_int_equal(job_join(&j), NP__POLL_OK);
  assert_int_equal(sem(x.pd, 'r'), NP__PD_NIL);
  assert_int_equal(hook_calls(), 2);

  fx_close(&x);
  finish(p);
}

/* ==== 15. parked-waiter count exact through every wake path ================== */
static void test_parked_count_exact(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  enum { N = 4 };
  fx x[N];
  job j[N];
  for (int i = 0; i < N; i++) fx_open(&x[i], p, true, false, false);
  for (int i = 0; i < N; i++) {
    job_start(&j[i], OP_WAIT, NULL, x[i].f, 'r');
    th_wait_parked(p, (uint64_t)i + 1);
  }

  /* readiness through epoll; the count drops before the waiter is unparked */
  assert_int_equal(fx_deliver(&x[0], 'r'), 1);
  assert_int_equal(parked(p), 3);
  assert_int_equal(job_join(&j[0]), 0);
  assert_int_equal(parked(p), 3);

  /* deadline timer */
  assert_int_equal(np_set_read_deadline(x[1].f, np_deadline_after(60000 * MS)), 0);
  assert_int_equal(parked(p), 3);
  assert_int_equal(np__run_timers(p, np_now() + 120000 * MS), 1);
  assert_int_equal(parked(p), 2);
  assert_int_equal(job_join(&j[1]), NP_ETIMEOUT);

  /* deadline already passed when set */
  assert_int_equal(np_set_read_deadline(x[2].f, past()), 0);
  assert_int_equal(parked(p), 1);
  assert_int_equal(job_join(&j[2]), NP_ETIMEOUT);

  /* close */
  assert_int_equal(np_close(x[3].f), 0);
  assert_int_equal(parked(p), 0);
  assert_int_equal(job_join(&j[3]), NP_ECLOSING);

  /* both modes of one pd: one event wakes two, the count drops by two */
  fx y;
  fx_open(&y, p, true, true, false);
  job r, w;
  job_start(&r, OP_PD_WAIT, y.pd, NULL, 'r');
  job_start(&w, OP_PD_WAIT, y.pd, NULL, 'w');
  th_wait_parked(p, 2);
  assert_int_equal(np__pd_ready(y.pd, y.pd->fdseq, EPOLLHUP), 2);
  assert_int_equal(parked(p), 0);
  assert_int_equal(job_join(&r), NP__POLL_OK);
  assert_int_equal(job_join(&w), NP__POLL_OK);

  /* consuming a pending READY and abandoned commits never touch the count */
  assert_int_equal(np__pd_ready(y.pd, y.pd->fdseq, EPOLLIN), 0);
  assert_int_equal(np__pd_wait(y.pd, 'r'), NP__POLL_OK);
  assert_int_equal(parked(p), 0);

  for (int i = 0; i < N; i++) fx_close(&x[i]);
  fx_close(&y);
  finish(p);
}

/* ==== 16. tag packing ========================================================= */
static void test_tag_round_trip(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  enum { NPD = 4, NSEQ = 7 };
  const uint32_t seqs[NSEQ] = {0, 1, 2, 0x2aaaaa, 0x155555, NP__FDSEQ_MASK - 1, NP__FDSEQ_MASK};
  fx x[NPD];
  uint64_t tags[NPD * NSEQ];
  for (int i = 0; i < NPD; i++) {
    fx_open(&x[i], p, true, i % 2 == 0, false);
    np__pd *pd = x[i].pd;
    assert_int_equal((uintptr_t)pd % NP__PD_ALIGN, 0);
    /* The info word mirrors the fdseq the epoll tag carries. */
    assert_int_equal((np__load_u32(&pd->info) >> NP__INFO_SEQ_SHIFT) & NP__FDSEQ_MASK, pd->fdseq);
    for (int k = 0; k < NSEQ; k++) {
      uint64_t tag = np__pd_tag(pd, seqs[k]);
      assert_true(tag != 0); /* 0 is the break */
      assert_int_equal(tag & NP__FDSEQ_MASK, seqs[k]);
      uint32_t seq = 0xffffffffu;
      assert_ptr_equal(np__pd_untag(tag, &seq), pd);
      assert_int_equal(seq, seqs[k]);
      tags[i * NSEQ + k] = tag;
    }
  }
  for (int a = 0; a < NPD * NSEQ; a++)
    for (int b = a + 1; b < NPD * NSEQ; b++) assert_true(tags[a] != tags[b]);

  /* The tag epoll hands back reaches the right pd: real readiness on each. */
  for (int i = 0; i < NPD; i++) {
    assert_int_equal(fx_deliver(&x[i], 'r'), 0);
    for (int k = 0; k < NPD; k++) assert_int_equal(sem(x[k].pd, 'r'), k <= i ? NP__PD_READY : NP__PD_NIL);
  }
  for (int i = 0; i < NPD; i++) fx_close(&x[i]);
  finish(p);
}

/* The fdseq wraps at NP__FDSEQ_MASK; real events carry the wrapped value and a
 * stale fdseq never wakes the pd's current owner (I6). */
static void test_fdseq_wrap_and_stale_event(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  fx a;
  fx_open(&a, p, true, true, false);
  np__pd *pd = a.pd;
  assert_int_equal(np_close(a.f), 0);
  np__mutex_lock(&pd->lock);
  pd->fdseq = NP__FDSEQ_MASK; /* as if opened 2^22 - 1 times */
  np__mutex_unlock(&pd->lock);
  fx_close(&a);

  fx b;
  fx_open(&b, p, true, true, false);
  assert_ptr_equal(b.pd, pd); /* the cache hands the same pd back */
  assert_int_equal(pd->fdseq, 0);
  assert_int_equal((np__load_u32(&pd->info) >> NP__INFO_SEQ_SHIFT) & NP__FDSEQ_MASK, 0);
  uint32_t seq = 1;
  assert_ptr_equal(np__pd_untag(np__pd_tag(pd, 0), &seq), pd);
  assert_int_equal(seq, 0);
  assert_int_equal(fx_deliver(&b, 'r'), 0); /* epoll's tag carries fdseq 0 */
  assert_int_equal(sem(pd, 'r'), NP__PD_READY);
  assert_int_equal(np__pd_reset(pd, 'r'), NP__POLL_OK);

  /* A parked waiter ignores events of the previous owner (fdseq MASK). */
  job j;
  job_start(&j, OP_PD_WAIT, pd, NULL, 'r');
  th_wait_parked(p, 1);
  assert_int_equal(np__pd_ready(pd, NP__FDSEQ_MASK, EPOLLIN), 0);
  assert_int_equal(np__pd_ready(pd, 1, EPOLLIN | EPOLLERR), 0);
  assert_int_equal(parked(p), 1);
  assert_true(sem(pd, 'r') > NP__PD_WAIT);
  assert_int_equal(np__pd_checkerr(pd, 'r'), NP__POLL_OK); /* no stale error bit */
  assert_int_equal(np__pd_ready(pd, 0, EPOLLIN), 1);
  assert_int_equal(job_join(&j), NP__POLL_OK);

  fx_close(&b);
  finish(p);
}

static void child_tag_wide(void *arg) {
  (void)arg;
  np_poller *p = child_poller();
  np__pd *pd = child_pd(p);
  (void)np__pd_tag(pd, NP__FDSEQ_MASK + 1);
}

static void test_tag_rejects_wide_fdseq(void **state) {
  (void)state;
  th_expect_panic(child_tag_wide, NULL, "fdseq <= NP__FDSEQ_MASK");
}

int main(void) {
#define T(fn) cmocka_unit_test_teardown(fn, teardown)
  const struct CMUnitTest tests[] = {
      T(test_nil_wait_commit_park_readiness_wakes),
      T(test_ready_first_wait_does_not_park),
      T(test_ready_plus_readiness_stays_ready),
      T(test_readiness_between_wait_and_commit),
      T(test_timeout_between_wait_and_commit),
      T(test_close_between_wait_and_commit),
      T(test_np_close_between_wait_and_commit),
      T(test_parked_waiter_deadline_timer),
      T(test_parked_waiter_np_close),
      T(test_ready_survives_timeout),
      T(test_ready_survives_close),
      T(test_nil_timeout_stays_nil),
      T(test_nil_close_stays_nil),
      T(test_double_wait_panics),
      T(test_corrupted_polldesc_panics),
      T(test_reset_clears_stale_ready),
      T(test_reset_with_parked_waiter_panics),
      T(test_cleared_deadline_blocks_again),
      T(test_parked_count_exact),
      T(test_tag_round_trip),
      T(test_fdseq_wrap_and_stale_event),
      T(test_tag_rejects_wide_fdseq),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
