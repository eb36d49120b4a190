/* test_poller.c - the poller and epoll event handling on the real kernel:
 * netpoll break (wake-up, coalescing, Go 42515), timed polls rounded up,
 * timers run by the poll loop, EPOLLERR / HUP / RDHUP delivery and the
 * direction masks, stale tags after fd reuse (Go 59545), EINTR from
 * epoll_wait, an earlier timer breaking the poller's sleep, and bad input
 * to the public API. */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "syscalls.h"

/* ---- syscall table wrappers ---------------------------------------------- */

static np__syscalls g_saved_sys; /* the real table, saved by the group setup */

static atomic_int g_breakfd = -1; /* last eventfd created through np__sys */

static int wrap_eventfd(unsigned int initval, int flags) {
  int fd = g_saved_sys.eventfd(initval, flags);
  atomic_store(&g_breakfd, fd);
  return fd;
}

static atomic_int g_ew_fail;         /* fail this many epoll_wait calls */
static atomic_int g_ew_errno;        /* with this errno */
static atomic_int g_ew_inject;       /* 1: the next call returns the event below */
static uint64_t g_ew_inject_tag;     /* written before g_ew_inject is set */
static uint32_t g_ew_inject_events;  /* idem */
static atomic_int g_ew_break_events; /* tag-0 events the kernel returned */

static int wrap_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout_ms) {
  if (atomic_load(&g_ew_fail) > 0) {
    atomic_fetch_sub(&g_ew_fail, 1);
    errno = atomic_load(&g_ew_errno);
    return -1;
  }
  if (atomic_exchange(&g_ew_inject, 0)) {
    ev[0].events = g_ew_inject_events;
    ev[0].data.u64 = g_ew_inject_tag;
    return 1;
  }
  int n = g_saved_sys.epoll_wait(epfd, ev, max, timeout_ms);
  for (int i = 0; i < n; i++)
    if (ev[i].data.u64 == 0) atomic_fetch_add(&g_ew_break_events, 1);
  return n;
}

static void install_epoll_wait_wrapper(void) {
  atomic_store(&g_ew_fail, 0);
  atomic_store(&g_ew_inject, 0);
  atomic_store(&g_ew_break_events, 0);
  np__sys.epoll_wait = wrap_epoll_wait;
}

static void ew_fail_next(int count, int err) {
  atomic_store(&g_ew_errno, err);
  atomic_store(&g_ew_fail, count);
}

static int group_setup(void **state) {
  (void)state;
  g_saved_sys = np__sys;
  signal(SIGPIPE, SIG_IGN); /* writes to a reader-less pipe must give EPIPE */
  return 0;
}

/* Every test: the real syscall table again (only pollers without threads
 * ever run with a wrapper, and all of them are destroyed by now). */
static int restore_sys(void **state) {
  (void)state;
  np__sys = g_saved_sys;
  atomic_store(&g_ew_fail, 0);
  atomic_store(&g_ew_inject, 0);
  return 0;
}

/* A manual poller whose eventfd (the break) the test can inspect. */
static np_poller *manual_poller_breakfd(int *breakfd) {
  atomic_store(&g_breakfd, -1);
  np__sys.eventfd = wrap_eventfd;
  np_poller *p = th_poller_manual();
  np__sys.eventfd = g_saved_sys.eventfd;
  *breakfd = atomic_load(&g_breakfd);
  assert_true(*breakfd >= 0);
  return p;
}

/* The eventfd counter, read without draining it (/proc fdinfo, hex). */
static uint64_t eventfd_count(int fd) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[256];
  uint64_t count = UINT64_MAX;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "eventfd-count:", 14) == 0) count = strtoull(line + 14, NULL, 16);
  }
  fclose(f);
  assert_true(count != UINT64_MAX);
  return count;
}

/* ---- small helpers ------------------------------------------------------- */

static np_stats stats_of(np_poller *p) {
  np_stats s;
  np_poller_stats(p, &s);
  return s;
}

/* Every test ends here: nobody parked, then destroy. */
static void finish(np_poller *p) {
  assert_int_equal(stats_of(p).waiters_parked, 0);
  th_poller_destroy(p);
}

static void wait_flag(atomic_int *flag, int64_t ms, const char *what) {
  int64_t end = np_now() + ms * MS;
  while (atomic_load(flag) == 0) {
    if (np_now() > end) fail_msg("timed out after %lld ms waiting for %s", (long long)ms, what);
    th_sleep_ms(1);
  }
}

static void wait_polls(np_poller *p, uint64_t polls) {
  int64_t end = np_now() + 5000 * MS;
  while (stats_of(p).polls < polls) {
    if (np_now() > end) fail_msg("poller never reached %llu epoll_wait calls", (unsigned long long)polls);
    th_sleep_ms(1);
  }
}

/* th_wait_parked counts a waiter from just before its commit CAS; a test
 * that needs the waiter itself in rg/wg (to assert who an event wakes) waits
 * for the commit to have happened. */
static void wait_installed(np__pd *pd, bool r, bool w) {
  int64_t end = np_now() + 5000 * MS;
  while ((r && np__load_uptr(&pd->rg) <= NP__PD_WAIT) || (w && np__load_uptr(&pd->wg) <= NP__PD_WAIT)) {
    if (np_now() > end) fail_msg("waiter never installed in %s%s", r ? "rg " : "", w ? "wg" : "");
    th_sleep_ms(1);
  }
}

static uint32_t wake_sig(np_poller *p) { return np__load_u32(&p->wake_sig); }
static uint32_t info_of(np_fd *f) { return np__load_u32(&f->pd->info); }
static bool has_event_err(np_fd *f) { return (info_of(f) & NP__INFO_EVENT_ERR) != 0; }

/* np__netpoll in another thread. */
typedef struct netpoll_call {
  np_poller *p;
  int64_t delay_ns;
  int result;
  atomic_int done;
} netpoll_call;

static void *netpoll_thread(void *arg) {
  netpoll_call *c = arg;
  c->result = np__netpoll(c->p, c->delay_ns);
  atomic_store(&c->done, 1);
  return NULL;
}

/* np_read / np_write in another thread. */
typedef struct io_call {
  np_fd *f;
  const void *wbuf;       /* write: the data */
  size_t len;             /* read: 0 means sizeof(buf) */
  np_poller *break_after; /* break this poller when done (manual polling) */
  char buf[64];
  ssize_t result;
  size_t written;
  int64_t t_end;
  atomic_int done;
} io_call;

static void *read_thread(void *arg) {
  io_call *c = arg;
  c->result = np_read(c->f, c->buf, c->len != 0 ? c->len : sizeof(c->buf));
  c->t_end = np_now();
  atomic_store(&c->done, 1);
  if (c->break_after != NULL) np__netpoll_break(c->break_after);
  return NULL;
}

static void *write_thread(void *arg) {
  io_call *c = arg;
  c->result = np_write(c->f, c->wbuf, c->len, &c->written);
  c->t_end = np_now();
  atomic_store(&c->done, 1);
  return NULL;
}

static char g_big[1 << 20]; /* a write that cannot complete on a full buffer */

/* ---- 1. break ------------------------------------------------------------ */

/* Go's TestNetpollBreak: a poll blocked without timeout returns on break,
 * after exactly one epoll_wait, and the break is drained (repeatable). */
static void test_break_wakes_blocked_netpoll(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  for (int round = 0; round < 3; round++) {
    np_stats s0 = stats_of(p);
    netpoll_call c = {.p = p, .delay_ns = -1};
    pthread_t t = th_start(netpoll_thread, &c);
    wait_polls(p, s0.polls + 1);
    th_sleep_ms(20); /* give a wrong early return the chance to show */
    assert_int_equal(atomic_load(&c.done), 0);
    np__netpoll_break(p);
    wait_flag(&c.done, 5000, "np__netpoll to return after break");
    th_join(t);
    assert_int_equal(c.result, 0);
    np_stats s1 = stats_of(p);
    assert_int_equal(s1.breaks, s0.breaks + 1);
    assert_int_equal(s1.polls, s0.polls + 1);
    assert_int_equal(wake_sig(p), 0); /* drained: the next break writes again */
  }
  finish(p);
}

/* ---- 2. coalescing ------------------------------------------------------- */

static void *break_many(void *arg) {
  for (int i = 0; i < 1000; i++) np__netpoll_break(arg);
  return NULL;
}

/* Two (or thousands of concurrent) breaks while one is pending write the
 * eventfd once; a blocking/timed poll drains it, after which a non-blocking
 * poll sees no break. */
static void test_break_coalesces(void **state) {
  (void)state;
  int bfd;
  np_poller *p = manual_poller_breakfd(&bfd);
  install_epoll_wait_wrapper();
  assert_int_equal(eventfd_count(bfd), 0);

  np__netpoll_break(p);
  np__netpoll_break(p);
  assert_int_equal(stats_of(p).breaks, 1);
  assert_int_equal(wake_sig(p), 1);
  assert_int_equal(eventfd_count(bfd), 1);

  pthread_t t[4];
  for (int i = 0; i < 4; i++) t[i] = th_start(break_many, p);
  for (int i = 0; i < 4; i++) th_join(t[i]);
  assert_int_equal(stats_of(p).breaks, 1);
  assert_int_equal(eventfd_count(bfd), 1);

  /* Timed poll: the pending break makes it return at once and drains it. */
  int64_t t0 = np_now();
  assert_int_equal(np__netpoll(p, 5000 * MS), 0);
  assert_true(np_now() - t0 < 4000 * MS);
  assert_int_equal(atomic_load(&g_ew_break_events), 1);
  assert_int_equal(eventfd_count(bfd), 0);
  assert_int_equal(wake_sig(p), 0);

  /* Nothing pending any more: a poll returns no break event. */
  assert_int_equal(np__netpoll(p, 0), 0);
  assert_int_equal(atomic_load(&g_ew_break_events), 1);

  /* Concurrent breakers with no poll in between: still one write. */
  for (int i = 0; i < 4; i++) t[i] = th_start(break_many, p);
  for (int i = 0; i < 4; i++) th_join(t[i]);
  assert_int_equal(stats_of(p).breaks, 2);
  assert_int_equal(eventfd_count(bfd), 1);
  assert_int_equal(np__netpoll(p, 5000 * MS), 0);
  assert_int_equal(eventfd_count(bfd), 0);
  finish(p);
}

/* ---- 3. a non-blocking poll keeps the break (Go 42515) -------------------- */

static void test_nonblocking_poll_keeps_break(void **state) {
  (void)state;
  int bfd;
  np_poller *p = manual_poller_breakfd(&bfd);
  np__netpoll_break(p);
  for (int i = 0; i < 3; i++) assert_int_equal(np__netpoll(p, 0), 0);
  assert_int_equal(np__poll_once(p, false), 0); /* the poller's poll-only turn */
  assert_int_equal(wake_sig(p), 1);
  assert_int_equal(eventfd_count(bfd), 1);
  assert_int_equal(stats_of(p).breaks, 1);

  /* The blocking poll that the break was meant for returns promptly. */
  netpoll_call c = {.p = p, .delay_ns = -1};
  pthread_t t = th_start(netpoll_thread, &c);
  wait_flag(&c.done, 5000, "blocking poll with a break pending");
  th_join(t);
  assert_int_equal(c.result, 0);
  assert_int_equal(wake_sig(p), 0);
  assert_int_equal(eventfd_count(bfd), 0);

  /* wake_sig was reset: the next break writes again. */
  np__netpoll_break(p);
  assert_int_equal(stats_of(p).breaks, 2);
  assert_int_equal(wake_sig(p), 1);
  assert_int_equal(eventfd_count(bfd), 1);
  assert_int_equal(np__netpoll(p, 5000 * MS), 0);
  assert_int_equal(eventfd_count(bfd), 0);
  assert_int_equal(wake_sig(p), 0);
  finish(p);
}

/* ---- 4. timed polls, timers run by the poll loop --------------------------- */

/* Sub-millisecond and fractional delays round up to whole milliseconds: one
 * epoll_wait that sleeps, not a busy 0 ms poll. */
static void test_timed_poll_rounds_up(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  const struct {
    int64_t delay_ns;
    int64_t min_ms;
  } cases[] = {{1, 1}, {300000, 1}, {999999, 1}, {1000001, 2}, {1500000, 2}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    np_stats s0 = stats_of(p);
    int64_t t0 = np_now();
    assert_int_equal(np__netpoll(p, cases[i].delay_ns), 0);
    int64_t elapsed = np_now() - t0;
    assert_true(elapsed >= cases[i].delay_ns);
    /* The kernel sleeps at least the rounded-up timeout; 10% slack for clocks. */
    if (elapsed < cases[i].min_ms * MS * 9 / 10)
      fail_msg("delay %lld ns slept only %lld ns", (long long)cases[i].delay_ns, (long long)elapsed);
    assert_int_equal(stats_of(p).polls, s0.polls + 1);
  }
  finish(p);
}

/* A timer that is due is run by the next np__poll_once; a blocking turn
 * sleeps until the next timer instead of spinning; the threaded poller fires
 * a near deadline too. */
static void test_poll_once_runs_due_timer(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  int fds[2];
  th_pipe(fds);
  np_fd *fr;
  assert_int_equal(np_open(p, fds[0], &fr), 0);

  /* Due timer, poll-only turn. */
  int64_t deadline = np_deadline_after(20 * MS);
  assert_int_equal(np_set_read_deadline(fr, deadline), 0);
  io_call rc = {.f = fr};
  pthread_t t = th_start(read_thread, &rc);
  th_wait_parked(p, 1); /* no one runs timers yet: it stays parked */
  while (np_now() <= deadline) th_sleep_ms(5);
  np_stats s0 = stats_of(p);
  assert_int_equal(np__poll_once(p, false), 0);
  assert_int_equal(stats_of(p).timers_fired, s0.timers_fired + 1);
  wait_flag(&rc.done, 5000, "reader woken by the fired timer");
  th_join(t);
  assert_int_equal(rc.result, NP_ETIMEOUT);

  /* Blocking turns: sleep until the timer, then run it. */
  assert_int_equal(np_set_read_deadline(fr, 0), 0);
  deadline = np_deadline_after(50 * MS);
  assert_int_equal(np_set_read_deadline(fr, deadline), 0);
  io_call rc2 = {.f = fr, .break_after = p};
  s0 = stats_of(p);
  t = th_start(read_thread, &rc2);
  th_wait_parked(p, 1);
  int turns = 0;
  while (!atomic_load(&rc2.done)) {
    assert_true(turns++ < 10); /* not a busy loop */
    assert_true(np__poll_once(p, true) >= 0);
  }
  th_join(t);
  assert_int_equal(rc2.result, NP_ETIMEOUT);
  assert_true(rc2.t_end >= deadline);
  assert_int_equal(stats_of(p).timers_fired, s0.timers_fired + 1);
  assert_int_equal(np_close(fr), 0);
  np_free(fr);
  close(fds[1]);
  finish(p);

  /* The poller thread runs a near deadline on its own. */
  p = th_poller();
  th_pipe(fds);
  assert_int_equal(np_open(p, fds[0], &fr), 0);
  deadline = np_deadline_after(30 * MS);
  assert_int_equal(np_set_read_deadline(fr, deadline), 0);
  io_call rc3 = {.f = fr};
  t = th_start(read_thread, &rc3);
  wait_flag(&rc3.done, 5000, "reader woken by the poller thread's timer");
  th_join(t);
  assert_int_equal(rc3.result, NP_ETIMEOUT);
  assert_true(rc3.t_end >= deadline);
  assert_int_equal(stats_of(p).timers_fired, 1);
  close(fds[1]);
  finish(p);
}

/* ---- 5. EPOLLERR ----------------------------------------------------------- */

/* EPOLLERR alone sets the event-error bit: readers get NP_ENOTPOLLABLE (also
 * a parked one), writers do not; an event with other bits clears it. */
static void test_epollerr_alone_reader_only(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  int sp[2];
  th_socketpair(sp);
  np_fd *fa;
  assert_int_equal(np_open(p, sp[0], &fa), 0);
  np__pd *pd = fa->pd;
  uint32_t seq = pd->fdseq;
  char buf[16];

  assert_int_equal(np__pd_ready(pd, seq, EPOLLERR), 0);
  assert_true(has_event_err(fa));
  assert_int_equal(np__load_uptr(&pd->rg), NP__PD_READY);
  assert_int_equal(np__load_uptr(&pd->wg), NP__PD_READY);
  assert_int_equal(np_read(fa, buf, sizeof(buf)), NP_ENOTPOLLABLE);
  size_t written = 99;
  assert_int_equal(np_write(fa, "x", 1, &written), 0);
  assert_int_equal(written, 1);
  assert_int_equal(read(sp[1], buf, sizeof(buf)), 1);
  assert_int_equal(buf[0], 'x');

  /* The error sticks even with data available, until the next event. */
  assert_int_equal(write(sp[1], "hi", 2), 2);
  assert_int_equal(np_read(fa, buf, sizeof(buf)), NP_ENOTPOLLABLE);
  assert_int_equal(np__pd_ready(pd, seq, EPOLLIN), 0);
  assert_false(has_event_err(fa));
  assert_int_equal(np_read(fa, buf, sizeof(buf)), 2);
  assert_memory_equal(buf, "hi", 2);

  /* A parked reader is woken by EPOLLERR alone and gets NP_ENOTPOLLABLE. */
  io_call rc = {.f = fa};
  pthread_t t = th_start(read_thread, &rc);
  th_wait_parked(p, 1);
  wait_installed(pd, true, false);
  assert_int_equal(np__pd_ready(pd, seq, EPOLLERR), 1);
  wait_flag(&rc.done, 5000, "reader woken by EPOLLERR");
  th_join(t);
  assert_int_equal(rc.result, NP_ENOTPOLLABLE);

  /* EPOLLOUT alone clears it as well; ERR together with other bits never sets it. */
  assert_int_equal(np__pd_ready(pd, seq, EPOLLOUT), 0);
  assert_false(has_event_err(fa));
  assert_int_equal(np__pd_ready(pd, seq, EPOLLERR | EPOLLHUP), 0);
  assert_false(has_event_err(fa));
  assert_int_equal(np_close(fa), 0);
  np_free(fa);
  close(sp[1]);
  finish(p);
}

/* Real kernel: a full pipe whose read end is closed reports EPOLLERR on the
 * write end; the blocked writer wakes and gets -EPIPE (not NP_ENOTPOLLABLE). */
static void test_epollerr_real_pipe_writer_gets_epipe(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  th_pipe(fds);
  np_fd *fw; /* only the write end is the library's */
  assert_int_equal(np_open(p, fds[1], &fw), 0);
  assert_true(th_fill(fds[1]) > 0);
  io_call wc = {.f = fw, .wbuf = "abc", .len = 3};
  pthread_t t = th_start(write_thread, &wc);
  th_wait_parked(p, 1);
  assert_int_equal(close(fds[0]), 0);
  wait_flag(&wc.done, 5000, "writer woken by EPOLLERR");
  th_join(t);
  assert_int_equal(wc.result, -EPIPE);
  assert_int_equal(wc.written, 0);
  assert_true(has_event_err(fw)); /* the kernel sent EPOLLERR alone */
  size_t written = 99;
  assert_int_equal(np_write(fw, "x", 1, &written), -EPIPE); /* still not ENOTPOLLABLE */
  assert_int_equal(written, 0);
  finish(p);
}

/* ---- 6. HUP / RDHUP and the direction masks --------------------------------- */

static void test_hup_wakes_blocked_reader(void **state) {
  (void)state;
  np_poller *p = th_poller();
  char buf[8];

  /* Pipe: the write end closes (EPOLLHUP on the read end): EOF. */
  int fds[2];
  th_pipe(fds);
  np_fd *fr;
  assert_int_equal(np_open(p, fds[0], &fr), 0);
  io_call rc = {.f = fr};
  pthread_t t = th_start(read_thread, &rc);
  th_wait_parked(p, 1);
  assert_int_equal(close(fds[1]), 0);
  wait_flag(&rc.done, 5000, "reader woken by HUP");
  th_join(t);
  assert_int_equal(rc.result, 0);
  assert_int_equal(np_read(fr, buf, sizeof(buf)), 0);

  /* Socketpair: the peer shuts down its write side (EPOLLIN|EPOLLRDHUP). */
  int sp[2];
  th_socketpair(sp);
  np_fd *fa;
  assert_int_equal(np_open(p, sp[0], &fa), 0);
  io_call rc2 = {.f = fa};
  t = th_start(read_thread, &rc2);
  th_wait_parked(p, 1);
  assert_int_equal(shutdown(sp[1], SHUT_WR), 0);
  wait_flag(&rc2.done, 5000, "reader woken by RDHUP");
  th_join(t);
  assert_int_equal(rc2.result, 0);
  assert_int_equal(np_read(fa, buf, sizeof(buf)), 0);
  /* Our side still writes: RDHUP is about the peer's direction only. */
  size_t written = 0;
  assert_int_equal(np_write(fa, "ok", 2, &written), 0);
  assert_int_equal(read(sp[1], buf, sizeof(buf)), 2);

  /* Socketpair: the peer closes while we block writing: the writer wakes
   * with the error of its next write. */
  int sp2[2];
  th_socketpair(sp2);
  np_fd *fb;
  assert_int_equal(np_open(p, sp2[0], &fb), 0);
  th_fill(sp2[0]);
  io_call wc = {.f = fb, .wbuf = g_big, .len = sizeof(g_big)};
  t = th_start(write_thread, &wc);
  th_wait_parked(p, 1);
  assert_int_equal(close(sp2[1]), 0);
  wait_flag(&wc.done, 5000, "writer woken by peer close");
  th_join(t);
  assert_true(wc.result == -EPIPE || wc.result == -ECONNRESET);
  close(sp[1]);
  finish(p);
}

/* Every combination of IN/OUT/ERR/HUP/RDHUP/PRI: IN|PRI|RDHUP|HUP|ERR ready r,
 * OUT|HUP|ERR ready w, the error bit only for ERR alone; with parked waiters
 * the returned wake count matches. */
static void test_event_masks_wake_matching_directions(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  int sp[2];
  th_socketpair(sp);
  np_fd *fa;
  assert_int_equal(np_open(p, sp[0], &fa), 0);
  np__pd *pd = fa->pd;
  uint32_t seq = pd->fdseq;
  const uint32_t bits[] = {EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP, EPOLLPRI};
  const uint32_t rmask = EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
  const uint32_t wmask = EPOLLOUT | EPOLLHUP | EPOLLERR;
  for (unsigned combo = 1; combo < 64; combo++) {
    uint32_t ev = 0;
    for (int b = 0; b < 6; b++)
      if (combo & (1u << b)) ev |= bits[b];
    np__store_uptr(&pd->rg, NP__PD_NIL);
    np__store_uptr(&pd->wg, NP__PD_NIL);
    assert_int_equal(np__pd_ready(pd, seq, ev), 0);
    uintptr_t rg = np__load_uptr(&pd->rg), wg = np__load_uptr(&pd->wg);
    if (rg != ((ev & rmask) ? NP__PD_READY : NP__PD_NIL))
      fail_msg("events 0x%x: rg=%lu", ev, (unsigned long)rg);
    if (wg != ((ev & wmask) ? NP__PD_READY : NP__PD_NIL))
      fail_msg("events 0x%x: wg=%lu", ev, (unsigned long)wg);
    if (has_event_err(fa) != (ev == EPOLLERR)) fail_msg("events 0x%x: error bit %d", ev, has_event_err(fa));
  }
  np__store_uptr(&pd->rg, NP__PD_NIL);
  np__store_uptr(&pd->wg, NP__PD_NIL);
  assert_int_equal(np__pd_ready(pd, seq, EPOLLOUT), 0); /* clear the error bit */
  np__store_uptr(&pd->wg, NP__PD_NIL);

  /* Parked reader and writer: each event wakes exactly its directions; the
   * woken ones find nothing to do and park again. */
  th_fill(sp[0]);
  io_call rc = {.f = fa};
  io_call wc = {.f = fa, .wbuf = g_big, .len = sizeof(g_big)};
  pthread_t tr = th_start(read_thread, &rc);
  pthread_t tw = th_start(write_thread, &wc);
  th_wait_parked(p, 2);
  wait_installed(pd, true, true);
  const struct {
    uint32_t ev;
    int woken;
  } cases[] = {
      {EPOLLHUP, 2}, {EPOLLIN | EPOLLERR, 2}, {EPOLLOUT | EPOLLERR, 2}, {EPOLLRDHUP, 1},
      {EPOLLIN, 1},  {EPOLLOUT, 1},           {EPOLLIN | EPOLLOUT, 2},  {EPOLLHUP | EPOLLRDHUP | EPOLLIN, 2},
      {EPOLLPRI, 1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int woken = np__pd_ready(pd, seq, cases[i].ev);
    if (woken != cases[i].woken) fail_msg("events 0x%x woke %d, want %d", cases[i].ev, woken, cases[i].woken);
    th_wait_parked(p, 2); /* the woken ones find nothing and park again */
    wait_installed(pd, true, true);
  }
  assert_int_equal(atomic_load(&rc.done), 0);
  assert_int_equal(atomic_load(&wc.done), 0);
  assert_int_equal(np_close(fa), 0);
  th_join(tr);
  th_join(tw);
  assert_int_equal(rc.result, NP_ECLOSING);
  assert_int_equal(wc.result, NP_ECLOSING);
  np_free(fa);
  close(sp[1]);
  finish(p);
}

/* ---- 7. fd reuse and the stale tag (Go 59545) ---------------------------------- */

static void test_stale_tag_after_fd_reuse(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  install_epoll_wait_wrapper();
  int a[2];
  th_pipe(a);
  np_fd *fa;
  assert_int_equal(np_open(p, a[0], &fa), 0);
  np__pd *pd = fa->pd;
  uint32_t old_seq = pd->fdseq;
  int old_fd = a[0];

  /* The old owner has a parked reader; close wakes it. */
  io_call rc = {.f = fa};
  pthread_t t = th_start(read_thread, &rc);
  th_wait_parked(p, 1);
  assert_int_equal(np_close(fa), 0);
  th_join(t);
  assert_int_equal(rc.result, NP_ECLOSING);
  np_free(fa);
  close(a[1]);

  /* Closed, not yet reused: the old tag is ignored. */
  assert_int_equal(np__pd_ready(pd, old_seq, EPOLLIN | EPOLLERR), 0);
  assert_int_equal(np__load_uptr(&pd->rg), NP__PD_NIL);

  /* Same fd number, same pd (LIFO cache), new fdseq. */
  int b[2];
  th_pipe(b);
  assert_int_equal(b[0], old_fd);
  np_fd *fb;
  assert_int_equal(np_open(p, b[0], &fb), 0);
  assert_ptr_equal(fb->pd, pd);
  uint32_t new_seq = pd->fdseq;
  assert_int_not_equal(new_seq, old_seq);
  assert_int_equal((info_of(fb) >> NP__INFO_SEQ_SHIFT) & NP__FDSEQ_MASK, new_seq);

  /* The poller's untagging gives back the pd and the old sequence. */
  uint32_t seq_out = 0;
  assert_ptr_equal(np__pd_untag(np__pd_tag(pd, old_seq), &seq_out), pd);
  assert_int_equal(seq_out, old_seq);
  assert_ptr_equal(np__pd_untag(np__pd_tag(pd, new_seq), &seq_out), pd);
  assert_int_equal(seq_out, new_seq);

  /* Stale events without a waiter: no READY, no error bit. */
  assert_int_equal(np__pd_ready(pd, old_seq, EPOLLIN | EPOLLERR), 0);
  assert_int_equal(np__pd_ready(pd, old_seq, EPOLLERR), 0);
  assert_int_equal(np__load_uptr(&pd->rg), NP__PD_NIL);
  assert_int_equal(np__load_uptr(&pd->wg), NP__PD_NIL);
  assert_false(has_event_err(fb));

  /* A reader parked on the new owner is not woken by stale events, neither
   * delivered directly nor through np__netpoll (the kernel handing back an
   * event fetched for the old registration). */
  io_call rc2 = {.f = fb};
  t = th_start(read_thread, &rc2);
  th_wait_parked(p, 1);
  wait_installed(pd, true, false);
  assert_int_equal(np__pd_ready(pd, old_seq, EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP), 0);
  assert_int_equal(stats_of(p).waiters_parked, 1);
  assert_true(np__load_uptr(&pd->rg) > NP__PD_WAIT);
  g_ew_inject_tag = np__pd_tag(pd, old_seq);
  g_ew_inject_events = EPOLLIN | EPOLLERR;
  atomic_store(&g_ew_inject, 1);
  assert_int_equal(np__netpoll(p, 0), 0);
  assert_int_equal(atomic_load(&g_ew_inject), 0); /* the injected event was delivered */
  assert_int_equal(stats_of(p).waiters_parked, 1);
  assert_true(np__load_uptr(&pd->rg) > NP__PD_WAIT);
  assert_false(has_event_err(fb));
  assert_int_equal(atomic_load(&rc2.done), 0);

  /* Real data for the new owner wakes it through the real event. */
  assert_int_equal(write(b[1], "new", 3), 3);
  assert_int_equal(np__netpoll(p, 5000 * MS), 1);
  wait_flag(&rc2.done, 5000, "reader woken by real data");
  th_join(t);
  assert_int_equal(rc2.result, 3);
  assert_memory_equal(rc2.buf, "new", 3);
  np_free(fb);
  close(b[1]);
  finish(p);
}

/* ---- 8. EINTR from epoll_wait ------------------------------------------------- */

static void on_sigusr1(int sig) { (void)sig; }

static void test_epoll_wait_eintr(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  install_epoll_wait_wrapper();

  /* Blocking: EINTR is retried; the retry finds the pending break. */
  np__netpoll_break(p);
  ew_fail_next(1, EINTR);
  np_stats s0 = stats_of(p);
  assert_int_equal(np__netpoll(p, -1), 0);
  assert_int_equal(stats_of(p).polls, s0.polls + 2);
  assert_int_equal(wake_sig(p), 0);

  /* Blocking with nothing pending: after EINTR it blocks again until a break. */
  ew_fail_next(2, EINTR);
  s0 = stats_of(p);
  netpoll_call c = {.p = p, .delay_ns = -1};
  pthread_t t = th_start(netpoll_thread, &c);
  wait_polls(p, s0.polls + 3);
  th_sleep_ms(20);
  assert_int_equal(atomic_load(&c.done), 0);
  np__netpoll_break(p);
  wait_flag(&c.done, 5000, "blocking poll after EINTR to see the break");
  th_join(t);
  assert_int_equal(c.result, 0);
  assert_int_equal(stats_of(p).polls, s0.polls + 3);

  /* Timed and non-blocking: EINTR returns "no events" after one call. */
  ew_fail_next(1, EINTR);
  s0 = stats_of(p);
  assert_int_equal(np__netpoll(p, 5 * MS), 0);
  assert_int_equal(stats_of(p).polls, s0.polls + 1);
  assert_int_equal(atomic_load(&g_ew_fail), 0);
  ew_fail_next(1, EINTR);
  assert_int_equal(np__netpoll(p, 0), 0);
  assert_int_equal(stats_of(p).polls, s0.polls + 2);
  /* A break pending across a timed EINTR is not lost. */
  np__netpoll_break(p);
  ew_fail_next(1, EINTR);
  assert_int_equal(np__netpoll(p, 5 * MS), 0);
  assert_int_equal(wake_sig(p), 1);
  assert_int_equal(np__netpoll(p, 5000 * MS), 0);
  assert_int_equal(wake_sig(p), 0);

  /* Other errors are returned, not retried. */
  ew_fail_next(1, EBADF);
  assert_int_equal(np__netpoll(p, -1), -EBADF);
  ew_fail_next(1, EBADF);
  assert_int_equal(np__netpoll(p, 5 * MS), -EBADF);
  np__sys = g_saved_sys;

  /* A real signal interrupting the real epoll_wait (never restarted). */
  struct sigaction sa, old_sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_sigusr1;
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGUSR1, &sa, &old_sa), 0);
  s0 = stats_of(p);
  netpoll_call c2 = {.p = p, .delay_ns = -1};
  t = th_start(netpoll_thread, &c2);
  wait_polls(p, s0.polls + 1);
  int64_t end = np_now() + 5000 * MS;
  while (stats_of(p).polls < s0.polls + 2) {
    if (np_now() > end) fail_msg("signals never interrupted epoll_wait");
    pthread_kill(t, SIGUSR1);
    th_sleep_ms(2);
  }
  assert_int_equal(atomic_load(&c2.done), 0); /* retried, blocked again */
  np__netpoll_break(p);
  wait_flag(&c2.done, 5000, "poll interrupted by signals to see the break");
  th_join(t);
  assert_int_equal(c2.result, 0);

  /* A signal ends a timed poll early with "no events". */
  s0 = stats_of(p);
  netpoll_call c3 = {.p = p, .delay_ns = 10000 * MS};
  t = th_start(netpoll_thread, &c3);
  wait_polls(p, s0.polls + 1);
  end = np_now() + 5000 * MS;
  while (!atomic_load(&c3.done)) {
    if (np_now() > end) fail_msg("timed poll not ended by a signal");
    pthread_kill(t, SIGUSR1);
    th_sleep_ms(2);
  }
  th_join(t);
  assert_int_equal(c3.result, 0);
  assert_int_equal(stats_of(p).polls, s0.polls + 1);
  assert_int_equal(sigaction(SIGUSR1, &old_sa, NULL), 0);
  finish(p);
}

/* ---- 9. an earlier timer breaks the poller's sleep ---------------------------- */

static int64_t sleep_until_of(np_poller *p) {
  np__mutex_lock(&p->timer_lock);
  int64_t v = p->sleep_until;
  np__mutex_unlock(&p->timer_lock);
  return v;
}

static void test_earlier_timer_breaks_sleep(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  th_pipe(fds);
  np_fd *fr;
  assert_int_equal(np_open(p, fds[0], &fr), 0);
  /* Round 0: the poller sleeps without timeout (no timers); round 1: it
   * sleeps until a far deadline (60 s). */
  for (int round = 0; round < 2; round++) {
    int64_t far = round == 0 ? 0 : np_deadline_after(60000 * MS);
    assert_int_equal(np_set_read_deadline(fr, far), 0);
    io_call rc = {.f = fr};
    pthread_t t = th_start(read_thread, &rc);
    th_wait_parked(p, 1);
    /* Asleep until the far deadline (or none), or until its bounded sleep
     * ends (sleep_cap_ns): either way later than the near deadline below. */
    int64_t want_sleep = round == 0 ? INT64_MAX : far;
    int64_t end = np_now() + 5000 * MS;
    for (;;) {
      int64_t su = sleep_until_of(p), now = np_now();
      if (su == want_sleep || (p->sleep_cap_ns > 0 && su > now + 200 * MS && su <= now + p->sleep_cap_ns))
        break;
      if (now > end) fail_msg("poller never went to sleep until %lld", (long long)want_sleep);
      th_sleep_ms(1);
    }
    np_stats s0 = stats_of(p);
    int64_t near = np_deadline_after(50 * MS);
    assert_int_equal(np_set_read_deadline(fr, near), 0);
    wait_flag(&rc.done, 5000, "reader woken at the near deadline");
    th_join(t);
    assert_int_equal(rc.result, NP_ETIMEOUT);
    assert_true(rc.t_end >= near);
    assert_true(rc.t_end - near < 4000 * MS);
    np_stats s1 = stats_of(p);
    assert_true(s1.breaks >= s0.breaks + 1);
    assert_int_equal(s1.timers_fired, s0.timers_fired + 1);
    assert_int_equal(np_set_read_deadline(fr, 0), 0);
  }
  close(fds[1]);
  finish(p);
}

/* ---- 10. bad input ---------------------------------------------------------------- */

static void test_open_bad_input(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  np_fd *f = (np_fd *)&f;

  assert_int_equal(np_open(p, -1, &f), -EBADF);
  assert_null(f);

  /* A closed descriptor number (high, so nothing reuses it meanwhile). */
  int fds[2];
  th_pipe(fds);
  int high = fcntl(fds[0], F_DUPFD_CLOEXEC, 600);
  assert_true(high >= 600);
  assert_int_equal(close(high), 0);
  f = (np_fd *)&f;
  assert_int_equal(np_open(p, high, &f), -EBADF);
  assert_null(f);

  /* Already registered: refused, the first handle keeps working. */
  np_fd *f1;
  assert_int_equal(np_open(p, fds[0], &f1), 0);
  f = (np_fd *)&f;
  assert_int_equal(np_open(p, fds[0], &f), -EEXIST);
  assert_null(f);
  assert_int_equal(write(fds[1], "k", 1), 1);
  char buf[4];
  assert_int_equal(np_read(f1, buf, sizeof(buf)), 1);

  /* Regular file and directory: not pollable, and not taken over. */
  char path[] = "/tmp/np_test_poller_XXXXXX";
  int reg = mkstemp(path);
  assert_true(reg >= 0);
  unlink(path);
  assert_int_equal(np_open(p, reg, &f), NP_ENOTPOLLABLE);
  assert_null(f);
  assert_true(fcntl(reg, F_GETFD) >= 0);
  close(reg);
  int dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(dir >= 0);
  assert_int_equal(np_open(p, dir, &f), NP_ENOTPOLLABLE);
  assert_true(fcntl(dir, F_GETFD) >= 0);
  close(dir);

  /* NULLs. */
  assert_int_equal(np_open(NULL, fds[1], &f), -EINVAL);
  assert_null(f);
  assert_int_equal(np_open(p, fds[1], NULL), -EINVAL);
  assert_int_equal(np_close(NULL), -EINVAL);
  np_free(NULL);
  np_poller_stats(NULL, NULL);
  np_poller_stats(p, NULL);
  th_poller_destroy(NULL);
  np_poller *q = NULL;
  assert_int_equal(np_poller_create(NULL, NULL), -EINVAL);
  np_options bad = {.events_max = 5000};
  assert_int_equal(np_poller_create(&q, &bad), -EINVAL);
  assert_null(q);
  bad.events_max = -1;
  assert_int_equal(np_poller_create(&q, &bad), -EINVAL);
  assert_null(q);

  assert_int_equal(stats_of(p).fds_open, 1); /* only f1 */
  close(fds[1]);
  finish(p); /* frees f1 */
}

static void test_io_bad_input_and_deadline_edges(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  np_fd *f[2];
  th_pipe(fds);
  th_open_pair(p, fds, f);
  char buf[8];
  size_t written = 99;

  assert_int_equal(np_read(f[0], NULL, 5), -EINVAL);
  assert_int_equal(np_read(NULL, buf, 5), -EINVAL);
  assert_int_equal(np_write(f[1], NULL, 5, &written), -EINVAL);
  assert_int_equal(written, 0);
  assert_int_equal(np_write(NULL, "x", 1, &written), -EINVAL);
  /* len 0 returns at once, nothing to read. */
  assert_int_equal(np_read(f[0], buf, 0), 0);
  assert_int_equal(np_read(f[0], NULL, 0), 0);

  /* INT64_MAX: never fires, the poller does not spin on it. */
  assert_int_equal(np_set_read_deadline(f[0], INT64_MAX), 0);
  io_call rc = {.f = f[0]};
  pthread_t t = th_start(read_thread, &rc);
  th_wait_parked(p, 1);
  np_stats s0 = stats_of(p);
  th_sleep_ms(50); /* a misfire or a busy poller would show here */
  np_stats s1 = stats_of(p);
  assert_int_equal(s1.timers_fired, 0);
  assert_true(s1.polls - s0.polls <= 3);
  assert_int_equal(atomic_load(&rc.done), 0);
  assert_int_equal(np_write(f[1], "z", 1, &written), 0);
  wait_flag(&rc.done, 5000, "reader with INT64_MAX deadline to get data");
  th_join(t);
  assert_int_equal(rc.result, 1);
  assert_int_equal(rc.buf[0], 'z');
  assert_int_equal(np_set_read_deadline(f[0], 0), 0);

  /* Negative deadlines are expired, even with data ready. */
  assert_int_equal(np_write(f[1], "yy", 2, &written), 0);
  const int64_t negatives[] = {-5, -1, INT64_MIN};
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(np_set_read_deadline(f[0], negatives[i]), 0);
    assert_int_equal(np_read(f[0], buf, sizeof(buf)), NP_ETIMEOUT);
    assert_int_equal(np_set_write_deadline(f[1], negatives[i]), 0);
    written = 99;
    assert_int_equal(np_write(f[1], "w", 1, &written), NP_ETIMEOUT);
    assert_int_equal(written, 0);
  }
  assert_int_equal(np_set_deadline(f[0], 0), 0);
  assert_int_equal(np_set_deadline(f[1], 0), 0);
  assert_int_equal(np_read(f[0], buf, sizeof(buf)), 2);

  /* np_deadline_after clamps and never gives 0. */
  int64_t now = np_now();
  assert_true(np_deadline_after(INT64_MAX) == INT64_MAX);
  assert_true(np_deadline_after(INT64_MAX - 1) == INT64_MAX);
  assert_true(np_deadline_after(INT64_MAX - now) == INT64_MAX);
  const int64_t past[] = {0, -1, INT64_MIN};
  for (size_t i = 0; i < 3; i++) {
    int64_t d = np_deadline_after(past[i]);
    assert_true(d != 0);
    assert_true(d <= np_now());
  }
  int64_t d = np_deadline_after(10 * MS);
  assert_true(d > now && d <= np_now() + 10 * MS);
  assert_int_equal(stats_of(p).timers_fired, 0);
  finish(p);
}

static void test_strerror_never_null(void **state) {
  (void)state;
  const int library[] = {0, NP_ECLOSING, NP_ETIMEOUT, NP_ENOTPOLLABLE, -EOVERFLOW};
  const int others[] = {-EBADF, -EEXIST, -EINVAL, -EPIPE, -EAGAIN,    -EINTR,  -ECONNRESET,
                        1,      42,      -4095,   -4096,  -100000,    INT_MAX, INT_MIN,
                        -999,   -1,      -133,    -134,   INT_MIN + 1};
  const char *unknown = np_strerror(INT_MIN);
  assert_non_null(unknown);
  for (size_t i = 0; i < sizeof(library) / sizeof(library[0]); i++) {
    const char *s = np_strerror(library[i]);
    assert_non_null(s);
    assert_true(s[0] != '\0');
    assert_string_not_equal(s, unknown);
    for (size_t j = 0; j < i; j++) assert_string_not_equal(s, np_strerror(library[j]));
  }
  for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
    const char *s = np_strerror(others[i]);
    assert_non_null(s);
    assert_true(s[0] != '\0');
  }
}

/* ---- fork ------------------------------------------------------------------ */

#if defined(__SANITIZE_THREAD__)
#define NP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NP_TSAN 1
#endif
#endif

static void *read_one(void *arg) {
  char c;
  return (void *)(intptr_t)np_read(arg, &c, 1);
}

/* The child's side of test_fork_child_leaves_parent_poller: 0 if all held. */
static int fork_child(np_poller *p, np_fd *f[2]) {
  int bad = 0;
  char c;
  bad |= (np_read(f[1], &c, 1) != NP_EPOLLER) << 0; /* would wait for the parent's poller thread */
  bad |= (np_set_deadline(f[0], 1) != NP_EPOLLER) << 1;
  bad |= (np_close(f[0]) != 0) << 2; /* the child's descriptor only */
  np_free(f[1]);
  np_poller_destroy(p); /* returns: its threads are the parent's */
#ifndef NP_TSAN         /* TSan refuses new threads after a multithreaded fork */
  np_poller *q;
  np_fd *pp[2];
  bad |= (np_poller_create(&q, NULL) != 0) << 3; /* the child's own poller works */
  bad |= (np_pipe(q, pp) != 0 || np_write(pp[1], "k", 1, NULL) != 0 || np_read(pp[0], &c, 1) != 1) << 4;
  np_free(pp[0]);
  np_free(pp[1]);
  np_poller_destroy(q);
#endif
  return bad;
}

/* A forked child cannot use the parent's poller (no threads, a shared
 * epoll instance): its calls fail at once, and its np_close leaves the
 * parent's registration alone: the parent's parked reader still wakes.
 * Before, the child's np_close deregistered the parent's descriptor and
 * the reader slept for ever. */
static void test_fork_child_leaves_parent_poller(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  np_fd *f[2];
  th_socketpair(fds);
  th_open_pair(p, fds, f);
  pthread_t r = th_start(read_one, f[0]);
  th_wait_parked(p, 1);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) _exit(fork_child(p, f));
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 2000 && done == 0; i++) {
    done = waitpid(pid, &status, WNOHANG);
    if (done == 0) th_sleep_ms(10);
  }
  if (done == 0) kill(pid, SIGKILL);
  assert_int_equal(done, pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("child: status 0x%x", status);
  assert_int_equal(np_write(f[1], "x", 1, NULL), 0);
  assert_int_equal((intptr_t)th_join(r), 1); /* the registration survived the child */
  np_free(f[0]);
  np_free(f[1]);
  th_poller_destroy(p);
}

/* The deadline heap against a model: random arms, moves, removals and runs
 * of the clock. After every run, each timer that is due has fired and none
 * that is not; a heap whose order a removal broke (the last entry moved into
 * the hole and not sifted up past a later parent) keeps a due timer below a
 * root that is not due, and the run stops at the root. */
enum { HEAP_TIMERS = 48 };
static np__timer heap_t[HEAP_TIMERS];
static bool heap_fired_flag[HEAP_TIMERS];

static void heap_fired(np__timer *t) { heap_fired_flag[t - heap_t] = true; }

static uint32_t heap_rand(uint32_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 17;
  *x ^= *x << 5;
  return *x;
}

static void heap_check_run(np_poller *p, int64_t now, bool *pending, const int64_t *when) {
  memset(heap_fired_flag, 0, sizeof(heap_fired_flag));
  (void)np__run_timers(p, now);
  for (int i = 0; i < HEAP_TIMERS; i++) {
    bool due = pending[i] && when[i] <= now;
    if (heap_fired_flag[i] != due)
      fail_msg("timer %d (when %lld, pending %d) at %lld: fired %d", i, (long long)when[i], pending[i],
               (long long)now, heap_fired_flag[i]);
    if (due) pending[i] = false;
  }
}

static void test_timer_heap_against_model(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  assert_int_equal(np__timer_reserve(p, HEAP_TIMERS), 0);
  bool pending[HEAP_TIMERS] = {false};
  int64_t when[HEAP_TIMERS] = {0};
  for (int i = 0; i < HEAP_TIMERS; i++) heap_t[i] = (np__timer){.heap_index = -1, .fn = heap_fired};
  int64_t now = 0;
  for (uint32_t seed = 1; seed <= 40; seed++) {
    uint32_t x = seed * 2654435761u;
    for (int op = 0; op < 400; op++) {
      int i = (int)(heap_rand(&x) % HEAP_TIMERS);
      uint32_t what = heap_rand(&x) % 8;
      if (what < 5) { /* arm or move */
        when[i] = now + 1 + (int64_t)(heap_rand(&x) % 1000);
        (void)np__timer_set(p, &heap_t[i], when[i], NP__TIMER_FN, 0);
        pending[i] = true;
      } else if (what < 7) {
        assert_int_equal(np__timer_del(p, &heap_t[i]), pending[i]);
        pending[i] = false;
      } else {
        now += (int64_t)(heap_rand(&x) % 300);
        heap_check_run(p, now, pending, when);
      }
    }
  }
  heap_check_run(p, INT64_MAX, pending, when); /* everything left fires */
  assert_int_equal(np__timer_reserve(p, -HEAP_TIMERS), 0);
  finish(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_break_wakes_blocked_netpoll, restore_sys),
      cmocka_unit_test_teardown(test_break_coalesces, restore_sys),
      cmocka_unit_test_teardown(test_nonblocking_poll_keeps_break, restore_sys),
      cmocka_unit_test_teardown(test_timed_poll_rounds_up, restore_sys),
      cmocka_unit_test_teardown(test_poll_once_runs_due_timer, restore_sys),
      cmocka_unit_test_teardown(test_epollerr_alone_reader_only, restore_sys),
      cmocka_unit_test_teardown(test_epollerr_real_pipe_writer_gets_epipe, restore_sys),
      cmocka_unit_test_teardown(test_hup_wakes_blocked_reader, restore_sys),
      cmocka_unit_test_teardown(test_event_masks_wake_matching_directions, restore_sys),
      cmocka_unit_test_teardown(test_stale_tag_after_fd_reuse, restore_sys),
      cmocka_unit_test_teardown(test_epoll_wait_eintr, restore_sys),
      cmocka_unit_test_teardown(test_earlier_timer_breaks_sleep, restore_sys),
      cmocka_unit_test_teardown(test_timer_heap_against_model, restore_sys),
      cmocka_unit_test_teardown(test_open_bad_input, restore_sys),
      cmocka_unit_test_teardown(test_io_bad_input_and_deadline_edges, restore_sys),
      cmocka_unit_test_teardown(test_strerror_never_null, restore_sys),
      cmocka_unit_test(test_fork_child_leaves_parent_poller),
  };
  return cmocka_run_group_tests(tests, group_setup, NULL);
}
