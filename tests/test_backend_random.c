/* test_backend_random.c - a seeded randomized test of the epoll backend
 * (netpoll/src/backend_epoll.c), which the simulator does not compile: it
 * runs the real backend on the real kernel, against a model, with the
 * epoll_wait system call wrapped (np__sys) to record the timeout it was
 * given and to fail it with EINTR at random.
 *
 * Per seed, a random program of: registrations of pipes (tag = index + 1),
 * writes and drains of their peers, break wakes and drains, and waits with
 * random delays (< 0, 0, sub-millisecond, milliseconds, beyond the cap).
 * Checked at every wait: the timeout passed to epoll_wait is the delay
 * rounded up to whole milliseconds (never a busy 0 for a positive delay,
 * capped, -1 for a negative one); an injected EINTR comes back as -EINTR
 * with no events; a pending break is reported as exactly one tag-0 EPOLLIN
 * event until drained and never after; a pipe whose peer wrote since the
 * last report is reported once (edge-triggered) with EPOLLIN and its own
 * tag, others are not; and np__netpoll on top retries EINTR in a blocking
 * poll and turns it into "no events" in a timed one. */
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "helpers.h"
#include "syscalls.h"

#define PIPES 6
#define STEPS 400
#define SEEDS 60
#define CAP_MS 1000000000

static np__syscalls g_real;
static int g_last_timeout;   /* timeout_ms of the last epoll_wait */
static uint32_t g_eintr_ppm; /* chance per million that epoll_wait fails EINTR */
static uint64_t g_rng;

static uint64_t rnd(void) { /* splitmix64 */
  uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static uint64_t below(uint64_t n) { return rnd() % n; }

static int w_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout_ms) {
  g_last_timeout = timeout_ms;
  if (below(1000000) < g_eintr_ppm) {
    errno = EINTR;
    return -1;
  }
  /* The model knows what is ready: never block the test for real. */
  return g_real.epoll_wait(epfd, ev, max, timeout_ms < 0 || timeout_ms > 2 ? 2 : timeout_ms);
}

static int expected_ms(int64_t delay_ns) {
  if (delay_ns < 0) return -1;
  if (delay_ns == 0) return 0;
  int64_t ms = delay_ns / 1000000 + (delay_ns % 1000000 != 0);
  return (int)(ms > CAP_MS ? CAP_MS : ms);
}

static int64_t random_delay(void) {
  switch (below(6)) {
    case 0: return -1;
    case 1: return 0;
    case 2: return 1 + (int64_t)below(999999); /* sub-millisecond: must become 1 ms */
    case 3: return (int64_t)(1 + below(3)) * 1000000;
    case 4: return (int64_t)below(3) * 1000000 + 1 + (int64_t)below(999999);
    default: return INT64_MAX / 2; /* beyond the cap */
  }
}

typedef struct model {
  int fds[PIPES][2];
  bool pending[PIPES]; /* the peer wrote since the last report (an edge is due) */
  bool brk;            /* a break is pending (level-triggered until drained) */
} model;

/* One backend wait, checked against the model. */
static void check_wait(void *st, model *m, int64_t delay) {
  np__event ev[NP__EVENTS_MAX];
  int n = np__backend_epoll.wait(st, ev, NP__EVENTS_MAX, delay);
  assert_int_equal(g_last_timeout, expected_ms(delay));
  if (n == -EINTR) return; /* nothing consumed: the model stays */
  assert_true(n >= 0);
  bool seen[PIPES] = {false}, brk = false;
  for (int i = 0; i < n; i++) {
    if (ev[i].tag == 0) {
      assert_false(brk);
      assert_int_equal(ev[i].events, EPOLLIN);
      brk = true;
      continue;
    }
    assert_true(ev[i].tag >= 1 && ev[i].tag <= PIPES);
    int k = (int)ev[i].tag - 1;
    assert_false(seen[k]);
    seen[k] = true;
    assert_true(ev[i].events & EPOLLIN);
    if (!m->pending[k]) fail_msg("pipe %d reported without a new edge (events %#x)", k, ev[i].events);
    m->pending[k] = false;
  }
  assert_int_equal(brk, m->brk); /* waits are short: everything ready is reported */
  for (int k = 0; k < PIPES; k++)
    if (m->pending[k]) fail_msg("pipe %d has a due edge that was not reported", k);
}

static void one_seed(uint64_t seed) {
  g_rng = seed;
  g_eintr_ppm = (uint32_t)(below(3) * 150000);
  void *st;
  assert_int_equal(np__backend_epoll.create(&st), 0);
  model m;
  memset(&m, 0, sizeof(m));
  for (int k = 0; k < PIPES; k++) {
    assert_int_equal(pipe2(m.fds[k], O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(np__backend_epoll.open(st, m.fds[k][0], (uint64_t)k + 1), 0);
  }
  for (int step = 0; step < STEPS; step++) {
    int k = (int)below(PIPES);
    char buf[64];
    switch (below(5)) {
      case 0: /* the peer writes: a new edge */
        assert_int_equal(write(m.fds[k][1], "x", 1), 1);
        m.pending[k] = true;
        break;
      case 1: /* the reader drains: epoll re-checks at report time, so a due
               * edge of a drained pipe is not reported (the next write makes one) */
        while (read(m.fds[k][0], buf, sizeof(buf)) > 0) {
        }
        m.pending[k] = false;
        break;
      case 2: /* wake: coalesced by the core, so at most once per drain here */
        if (!m.brk) assert_int_equal(np__backend_epoll.wake(st), 0);
        m.brk = true;
        break;
      case 3:
        if (m.brk) {
          assert_int_equal(np__backend_epoll.drain(st), 0);
          m.brk = false;
        } else {
          assert_int_equal(np__backend_epoll.drain(st), -EAGAIN); /* nothing to drain */
        }
        break;
      default: check_wait(st, &m, random_delay()); break;
    }
  }
  for (int k = 0; k < PIPES; k++) {
    assert_int_equal(np__backend_epoll.close(st, m.fds[k][0]), 0);
    close(m.fds[k][0]);
    close(m.fds[k][1]);
  }
  np__backend_epoll.destroy(st);
}

static int setup(void **state) {
  (void)state;
  g_real = np__sys;
  np__sys.epoll_wait = w_epoll_wait;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  np__sys = g_real;
  g_eintr_ppm = 0;
  return 0;
}

static void test_backend_random_programs(void **state) {
  (void)state;
  for (uint64_t seed = 1; seed <= SEEDS; seed++) one_seed(seed);
}

/* np__netpoll over the real backend: an EINTR in a blocking poll is retried
 * (the break written first must still be seen), in a timed one it is "no
 * events" (0), whatever the delay. */
static void test_netpoll_eintr_random(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  for (uint64_t seed = 1; seed <= 200; seed++) {
    g_rng = seed;
    g_eintr_ppm = 500000;
    int64_t delay = random_delay();
    if (delay < 0) {
      np__netpoll_break(p); /* a blocking poll must return (after retries) with the break */
      assert_true(np__netpoll(p, -1) >= 0);
      assert_int_equal(np__load_u32(&p->wake_sig), 0); /* drained */
    } else {
      int n = np__netpoll(p, delay > 3000000 ? 3000000 : delay);
      assert_true(n >= 0);
    }
  }
  g_eintr_ppm = 0;
  np_poller_destroy(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_backend_random_programs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_netpoll_eintr_random, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
