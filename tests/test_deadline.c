/* test_deadline.c - i/o deadlines, ported from Go's net/timeout_test.go and
 * os/timeout_test.go to pipes and AF_UNIX socketpairs: past deadlines fail at
 * once even with data ready, future ones fire no earlier than asked, clearing
 * and moving a deadline (also while a thread is blocked), tiny deadlines,
 * concurrent setters, read/write independence and the combined timer, the
 * partial count of a timed-out write, and the extreme values. */
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define SEC (1000 * MS)
#define SLACK (2 * SEC) /* "not absurdly late": generous for TSan on a noisy box */

/* ---- a blocking operation on its own thread --------------------------------- */

enum { OP_READ, OP_READV, OP_WRITE, OP_WRITEV, OP_WAIT_READ, OP_WAIT_WRITE };

typedef struct op {
  np_fd *f;
  int kind;
  char *buf;
  size_t len;
  ssize_t ret;
  size_t written;
  int64_t t_end;
  atomic_int done;
} op;

static void *op_main(void *arg) {
  op *o = arg;
  struct iovec iov[2] = {{o->buf, o->len / 2}, {o->buf + o->len / 2, o->len - o->len / 2}};
  switch (o->kind) {
    case OP_READ: o->ret = np_read(o->f, o->buf, o->len); break;
    case OP_READV: o->ret = np_readv(o->f, iov, 2); break;
    case OP_WRITE: o->ret = np_write(o->f, o->buf, o->len, &o->written); break;
    case OP_WRITEV: o->ret = np_writev(o->f, iov, 2, &o->written); break;
    case OP_WAIT_READ: o->ret = np_wait_read(o->f); break;
    case OP_WAIT_WRITE: o->ret = np_wait_write(o->f); break;
    default: o->ret = -EINVAL; break;
  }
  o->t_end = np_now();
  atomic_store(&o->done, 1);
  return NULL;
}

static pthread_t op_start(op *o, np_fd *f, int kind, char *buf, size_t len) {
  o->f = f;
  o->kind = kind;
  o->buf = buf;
  o->len = len;
  o->ret = 12345;
  o->written = 0;
  o->t_end = 0;
  atomic_init(&o->done, 0);
  return th_start(op_main, o);
}

/* ---- channels: a pipe pair or one socketpair --------------------------------
 * r is read from and fed through the raw rpeer; w is written to and drained
 * through the raw wpeer. For a socketpair r == w and rpeer == wpeer. */
enum { CH_PIPE, CH_SOCKET, CH_KINDS };

typedef struct chan {
  np_fd *r, *w;
  int rpeer, wpeer;
} chan;

static void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  assert_true(fl >= 0);
  assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static void chan_open(np_poller *p, int kind, chan *c) {
  int a[2], b[2];
  if (kind == CH_PIPE) {
    th_pipe(a);
    th_pipe(b);
    assert_int_equal(np_open(p, a[0], &c->r), 0);
    assert_int_equal(np_open(p, b[1], &c->w), 0);
    c->rpeer = a[1];
    c->wpeer = b[0];
    set_nonblock(c->wpeer);
  } else {
    th_socketpair(a);
    assert_int_equal(np_open(p, a[0], &c->r), 0);
    c->w = c->r;
    c->rpeer = c->wpeer = a[1];
    set_nonblock(a[1]);
  }
}

static void chan_close(chan *c) {
  np_free(c->r);
  if (c->w != c->r) np_free(c->w);
  close(c->rpeer);
  if (c->wpeer != c->rpeer) close(c->wpeer);
}

/* Drains a raw non-blocking fd until EAGAIN or EOF; returns the byte count. */
static size_t drain(int fd) {
  static char junk[65536];
  size_t total = 0;
  for (;;) {
    ssize_t n = read(fd, junk, sizeof(junk));
    if (n > 0) {
      total += (size_t)n;
      continue;
    }
    assert_true(n == 0 || errno == EAGAIN);
    return total;
  }
}

static uint64_t parked(np_poller *p) {
  np_stats s;
  np_poller_stats(p, &s);
  return s.waiters_parked;
}

static uint8_t pattern(size_t offset) { return (uint8_t)(offset % 251); }

static void fill_pattern(char *buf, size_t len, size_t offset) {
  for (size_t i = 0; i < len; i++) buf[i] = (char)pattern(offset + i);
}

/* true if buf holds the pattern starting at offset */
static bool check_pattern(const char *buf, size_t len, size_t offset) {
  for (size_t i = 0; i < len; i++)
    if ((uint8_t)buf[i] != pattern(offset + i)) return false;
  return true;
}

/* Reads everything pending on a raw fd, checking the pattern from offset. */
static size_t drain_pattern(int fd, size_t offset) {
  static char buf[65536];
  size_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      if (!check_pattern(buf, (size_t)n, offset + total))
        fail_msg("peer data does not continue the pattern at offset %zu", offset + total);
      total += (size_t)n;
      continue;
    }
    assert_true(n == 0 || errno == EAGAIN);
    return total;
  }
}

/* ---- 1. a deadline in the past fails at once --------------------------------- */

static void expect_read_timeouts(np_fd *f) {
  char buf[8];
  struct iovec iov = {buf, sizeof(buf)};
  for (int attempt = 0; attempt < 2; attempt++) { /* sticky: Go tries twice */
    int64_t t0 = np_now();
    assert_int_equal(np_read(f, buf, sizeof(buf)), NP_ETIMEOUT);
    assert_int_equal(np_readv(f, &iov, 1), NP_ETIMEOUT);
    assert_int_equal(np_wait_read(f), NP_ETIMEOUT);
    assert_true(np_now() - t0 < SLACK);
  }
}

static void expect_write_timeouts(np_fd *f) {
  struct iovec iov = {"xy", 2};
  for (int attempt = 0; attempt < 2; attempt++) {
    size_t written = 99;
    int64_t t0 = np_now();
    assert_int_equal(np_write(f, "x", 1, &written), NP_ETIMEOUT);
    assert_int_equal(written, 0);
    written = 99;
    assert_int_equal(np_writev(f, &iov, 1, &written), NP_ETIMEOUT);
    assert_int_equal(written, 0);
    assert_int_equal(np_wait_write(f), NP_ETIMEOUT);
    assert_true(np_now() - t0 < SLACK);
  }
}

static void test_past_deadline_fails_at_once(void **state) {
  (void)state;
  np_poller *p = th_poller();
  for (int kind = 0; kind < CH_KINDS; kind++) {
    chan c;
    chan_open(p, kind, &c);
    assert_int_equal(write(c.rpeer, "data", 4), 4); /* data is ready for r */
    const int64_t pasts[] = {
        np_now() - 5 * SEC, np_deadline_after(0), np_deadline_after(-1), np_now() - 1, 1, -1, INT64_MIN};
    for (size_t i = 0; i < sizeof(pasts) / sizeof(pasts[0]); i++) {
      assert_int_equal(np_set_read_deadline(c.r, pasts[i]), 0);
      expect_read_timeouts(c.r);
      /* the write direction is not affected */
      size_t written = 0;
      assert_int_equal(np_write(c.w, "w", 1, &written), 0);
      assert_int_equal(written, 1);
      assert_int_equal(drain(c.wpeer), 1);
    }
    /* The timed-out reads consumed nothing. */
    assert_int_equal(np_set_read_deadline(c.r, 0), 0);
    char buf[8];
    assert_int_equal(np_read(c.r, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "data", 4);

    /* Write deadline in the past: fails although there is room. */
    for (size_t i = 0; i < sizeof(pasts) / sizeof(pasts[0]); i++) {
      assert_int_equal(np_set_write_deadline(c.w, pasts[i]), 0);
      expect_write_timeouts(c.w);
      assert_int_equal(write(c.rpeer, "r", 1), 1); /* reads still work */
      assert_int_equal(np_read(c.r, buf, sizeof(buf)), 1);
    }
    assert_int_equal(drain(c.wpeer), 0); /* nothing was written */
    assert_int_equal(np_set_write_deadline(c.w, 0), 0);

    /* np_set_deadline sets both. */
    assert_int_equal(write(c.rpeer, "data", 4), 4);
    assert_int_equal(np_set_deadline(c.r, np_now() - 1), 0);
    if (c.w != c.r) assert_int_equal(np_set_deadline(c.w, np_now() - 1), 0);
    expect_read_timeouts(c.r);
    expect_write_timeouts(c.w);
    assert_int_equal(parked(p), 0); /* nobody ever parked */
    chan_close(&c);
  }
  th_poller_destroy(p);
}

/* ---- 2. a future deadline fires, not before and not absurdly late -------------- */

static void expect_fires_at(op *o, int64_t deadline) {
  if (o->t_end < deadline) fail_msg("returned %lld ns before the deadline", (long long)(deadline - o->t_end));
  if (o->t_end > deadline + SLACK) fail_msg("returned %lld ms late", (long long)((o->t_end - deadline) / MS));
}

static void test_future_deadline_fires(void **state) {
  (void)state;
  np_poller *p = th_poller();
  np_stats s0, s1;
  np_poller_stats(p, &s0);
  for (int kind = 0; kind < CH_KINDS; kind++) {
    chan c;
    chan_open(p, kind, &c);
    char buf[64];
    const int reads[] = {OP_READ, OP_READV, OP_WAIT_READ};
    for (size_t i = 0; i < 3; i++) {
      assert_int_equal(np_set_read_deadline(c.r, 0), 0);
      int64_t d = np_deadline_after(50 * MS);
      assert_int_equal(np_set_read_deadline(c.r, d), 0);
      op o = {.f = c.r, .kind = reads[i], .buf = buf, .len = sizeof(buf)};
      op_main(&o); /* in this thread: a blocking call */
      assert_int_equal(o.ret, NP_ETIMEOUT);
      expect_fires_at(&o, d);
      /* expired stays expired: the next read fails at once */
      int64_t t0 = np_now();
      assert_int_equal(np_read(c.r, buf, sizeof(buf)), NP_ETIMEOUT);
      assert_true(np_now() - t0 < SLACK);
    }
    assert_int_equal(np_set_read_deadline(c.r, 0), 0);

    /* Write: fill the pipe / socket first. */
    size_t filled = th_fill(np_sysfd(c.w));
    assert_true(filled > 0);
    const int writes[] = {OP_WRITE, OP_WRITEV, OP_WAIT_WRITE};
    for (size_t i = 0; i < 3; i++) {
      assert_int_equal(np_set_write_deadline(c.w, 0), 0);
      int64_t d = np_deadline_after(50 * MS);
      assert_int_equal(np_set_write_deadline(c.w, d), 0);
      op o = {.f = c.w, .kind = writes[i], .buf = buf, .len = sizeof(buf)};
      op_main(&o);
      assert_int_equal(o.ret, NP_ETIMEOUT);
      assert_int_equal(o.written, 0);
      expect_fires_at(&o, d);
    }
    assert_int_equal(drain(c.wpeer), filled);

    /* Combined: np_set_deadline, read side. */
    int64_t d = np_deadline_after(50 * MS);
    assert_int_equal(np_set_deadline(c.r, d), 0);
    op o = {.f = c.r, .kind = OP_READ, .buf = buf, .len = sizeof(buf)};
    op_main(&o);
    assert_int_equal(o.ret, NP_ETIMEOUT);
    expect_fires_at(&o, d);
    chan_close(&c);
  }
  np_poller_stats(p, &s1);
  assert_true(s1.timers_fired > s0.timers_fired);
  assert_int_equal(s1.waiters_parked, 0);
  th_poller_destroy(p);
}

/* ---- 3. clearing an expired deadline: operations block again ----------------- */

static void test_deadline_cleared_after_expiry(void **state) {
  (void)state;
  np_poller *p = th_poller();
  for (int kind = 0; kind < CH_KINDS; kind++) {
    chan c;
    chan_open(p, kind, &c);
    char buf[16];
    /* Go's TestReadTimeoutFluctuation: time out several times in a row. */
    for (int i = 0; i < 5; i++) {
      int64_t d = np_deadline_after(10 * MS);
      assert_int_equal(np_set_read_deadline(c.r, d), 0);
      assert_int_equal(np_read(c.r, buf, sizeof(buf)), NP_ETIMEOUT);
      assert_true(np_now() >= d);
    }
    assert_int_equal(np_read(c.r, buf, sizeof(buf)), NP_ETIMEOUT);
    /* Clear: the next read blocks (parks) and returns the data. */
    assert_int_equal(np_set_read_deadline(c.r, 0), 0);
    op o;
    pthread_t t = op_start(&o, c.r, OP_READ, buf, sizeof(buf));
    th_wait_parked(p, 1);
    assert_int_equal(atomic_load(&o.done), 0);
    assert_int_equal(write(c.rpeer, "hello", 5), 5);
    th_join(t);
    assert_int_equal(o.ret, 5);
    assert_memory_equal(buf, "hello", 5);

    /* Expired, then re-armed far in the future: blocks again, gets data. */
    assert_int_equal(np_set_read_deadline(c.r, np_now() - 1), 0);
    assert_int_equal(np_read(c.r, buf, sizeof(buf)), NP_ETIMEOUT);
    assert_int_equal(np_set_read_deadline(c.r, np_deadline_after(3600 * SEC)), 0);
    t = op_start(&o, c.r, OP_READ, buf, sizeof(buf));
    th_wait_parked(p, 1);
    assert_int_equal(write(c.rpeer, "again", 5), 5);
    th_join(t);
    assert_int_equal(o.ret, 5);
    assert_memory_equal(buf, "again", 5);
    assert_int_equal(np_set_read_deadline(c.r, 0), 0);

    /* Write side (TestWriteTimeoutFluctuation): times out on a full
     * channel, cleared, then blocks until the peer drains. */
    size_t filled = th_fill(np_sysfd(c.w));
    int64_t d = np_deadline_after(10 * MS);
    assert_int_equal(np_set_write_deadline(c.w, d), 0);
    size_t written = 99;
    assert_int_equal(np_write(c.w, "z", 1, &written), NP_ETIMEOUT);
    assert_int_equal(written, 0);
    assert_true(np_now() >= d);
    assert_int_equal(np_set_write_deadline(c.w, 0), 0);
    t = op_start(&o, c.w, OP_WRITE, "zz", 2);
    th_wait_parked(p, 1);
    assert_int_equal(atomic_load(&o.done), 0);
    size_t drained = drain(c.wpeer);
    th_join(t);
    assert_int_equal(o.ret, 0);
    assert_int_equal(o.written, 2);
    assert_int_equal(drained + drain(c.wpeer), filled + 2);
    chan_close(&c);
  }
  th_poller_destroy(p);
}

/* ---- 4. moving a deadline while a thread is blocked --------------------------- */

static void test_deadline_moved_while_blocked(void **state) {
  (void)state;
  np_poller *p = th_poller();
  for (int kind = 0; kind < CH_KINDS; kind++) {
    chan c;
    chan_open(p, kind, &c);
    char buf[16];
    op o;

    /* Extend: the first deadline must not fire the blocked read. */
    int64_t d1 = np_deadline_after(500 * MS);
    assert_int_equal(np_set_read_deadline(c.r, d1), 0);
    pthread_t t = op_start(&o, c.r, OP_READ, buf, sizeof(buf));
    th_wait_parked(p, 1);
    int64_t d2 = np_deadline_after(1000 * MS);
    assert_int_equal(np_set_read_deadline(c.r, d2), 0);
    if (np_now() >= d1) fail_msg("machine too slow: could not extend before the first deadline");
    th_join(t);
    assert_int_equal(o.ret, NP_ETIMEOUT);
    expect_fires_at(&o, d2);

    /* No deadline -> a deadline while blocked: the sleeping poller must pick
     * up the new, earlier timer. */
    assert_int_equal(np_set_read_deadline(c.r, 0), 0);
    t = op_start(&o, c.r, OP_READ, buf, sizeof(buf));
    th_wait_parked(p, 1);
    int64_t d = np_deadline_after(50 * MS);
    assert_int_equal(np_set_read_deadline(c.r, d), 0);
    th_join(t);
    assert_int_equal(o.ret, NP_ETIMEOUT);
    expect_fires_at(&o, d);

    /* Shorten from an hour to 50 ms. */
    assert_int_equal(np_set_read_deadline(c.r, np_deadline_after(3600 * SEC)), 0);
    t = op_start(&o, c.r, OP_READ, buf, sizeof(buf));
    th_wait_parked(p, 1);
    d = np_deadline_after(50 * MS);
    assert_int_equal(np_set_read_deadline(c.r, d), 0);
    th_join(t);
    assert_int_equal(o.ret, NP_ETIMEOUT);
    expect_fires_at(&o, d);

    /* Shorten to the past: wakes at once. */
    assert_int_equal(np_set_read_deadline(c.r, np_deadline_after(3600 * SEC)), 0);
    t = op_start(&o, c.r, OP_READ, buf, sizeof(buf));
    th_wait_parked(p, 1);
    d = np_now();
    assert_int_equal(np_set_read_deadline(c.r, d - 1), 0);
    th_join(t);
    assert_int_equal(o.ret, NP_ETIMEOUT);
    assert_true(o.t_end - d < SLACK);

    /* Same on the write side, blocked on a full channel. */
    size_t filled = th_fill(np_sysfd(c.w));
    assert_int_equal(np_set_write_deadline(c.w, np_deadline_after(3600 * SEC)), 0);
    t = op_start(&o, c.w, OP_WRITE, "ab", 2);
    th_wait_parked(p, 1);
    d = np_deadline_after(50 * MS);
    assert_int_equal(np_set_write_deadline(c.w, d), 0);
    th_join(t);
    assert_int_equal(o.ret, NP_ETIMEOUT);
    assert_int_equal(o.written, 0);
    expect_fires_at(&o, d);
    assert_int_equal(np_set_write_deadline(c.w, 0), 0);
    t = op_start(&o, c.w, OP_WRITE, "ab", 2);
    th_wait_parked(p, 1);
    d = np_now();
    assert_int_equal(np_set_deadline(c.w, d - 1), 0); /* combined setter, past */
    th_join(t);
    assert_int_equal(o.ret, NP_ETIMEOUT);
    assert_true(o.t_end - d < SLACK);
    assert_int_equal(drain(c.wpeer), filled);
    chan_close(&c);
  }
  th_poller_destroy(p);
}

/* Go's TestReadTimeoutMustNotReturn / TestWriteTimeoutMustNotReturn: past
 * deadlines, then the one of the operation's direction cleared: it blocks,
 * and close (not a timeout) ends it. */
static void test_deadline_must_not_return(void **state) {
  (void)state;
  np_poller *p = th_poller();
  for (int kind = 0; kind < CH_KINDS; kind++) {
    for (int dir = 0; dir < 2; dir++) {
      chan c;
      chan_open(p, kind, &c);
      np_fd *f = dir == 0 ? c.r : c.w;
      assert_int_equal(np_set_deadline(f, np_now() - 5 * SEC), 0);
      assert_int_equal(np_set_write_deadline(f, np_now() - 5 * SEC), 0);
      assert_int_equal(np_set_read_deadline(f, np_now() - 5 * SEC), 0);
      if (dir == 0)
        assert_int_equal(np_set_read_deadline(f, 0), 0);
      else
        assert_int_equal(np_set_write_deadline(f, 0), 0);
      if (dir == 1) th_fill(np_sysfd(f));
      char buf[4] = "abc";
      op o;
      pthread_t t = op_start(&o, f, dir == 0 ? OP_READ : OP_WRITE, buf, sizeof(buf));
      th_wait_parked(p, 1);
      th_sleep_ms(100); /* Go's 100 ms: the operation must still be blocked */
      assert_int_equal(atomic_load(&o.done), 0);
      assert_int_equal(parked(p), 1);
      assert_int_equal(np_close(f), 0);
      th_join(t);
      assert_int_equal(o.ret, NP_ECLOSING);
      assert_int_equal(o.written, 0);
      chan_close(&c);
    }
  }
  th_poller_destroy(p);
}

/* ---- 5. many deadlines from 1 ns upward (TestVariousDeadlines) --------------- */

typedef struct flood {
  np_fd *w;
  int ret;
  size_t total;
} flood;

static void *flood_main(void *arg) { /* the writer, with no deadline of its own */
  flood *fl = arg;
  static char junk[16384];
  for (;;) {
    size_t written = 0;
    fl->ret = np_write(fl->w, junk, sizeof(junk), &written);
    fl->total += written;
    if (fl->ret != 0) return NULL;
  }
}

static void test_various_deadlines(void **state) {
  (void)state;
  static const int64_t timeouts[] = {1,      2,      5,      50,      100,     150,     200,    250,
                                     500,    750,    1000,   5000,    10000,   25000,   100000, 250000,
                                     500000, 1 * MS, 5 * MS, 20 * MS, 50 * MS, 100 * MS};
  np_poller *p = th_poller();
  char buf[4096];
  for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
    for (int run = 0; run < 3; run++) {
      /* Nothing to read: the read times out, never returns data or 0. */
      int fds[2];
      th_pipe(fds);
      np_fd *f[2];
      th_open_pair(p, fds, f);
      int64_t t0 = np_now();
      int64_t d = np_deadline_after(timeouts[i]);
      assert_int_equal(np_set_read_deadline(f[0], d), 0);
      ssize_t n = np_read(f[0], buf, sizeof(buf));
      int64_t t1 = np_now();
      if (n != NP_ETIMEOUT) fail_msg("timeout %lld ns: read returned %zd", (long long)timeouts[i], n);
      assert_true(t1 >= d);
      assert_true(t1 - t0 < 5 * SEC);

      /* Go's version: a writer floods the pipe; the reader copies until its
       * deadline (set with np_set_deadline) stops it with a timeout. */
      assert_int_equal(np_set_read_deadline(f[0], 0), 0);
      flood fl = {.w = f[1]};
      pthread_t t = th_start(flood_main, &fl);
      t0 = np_now();
      d = np_deadline_after(timeouts[i]);
      assert_int_equal(np_set_deadline(f[0], d), 0);
      size_t copied = 0;
      for (;;) {
        n = np_read(f[0], buf, sizeof(buf));
        if (n <= 0) break;
        copied += (size_t)n;
      }
      t1 = np_now();
      if (n != NP_ETIMEOUT) fail_msg("timeout %lld ns: copy ended with %zd", (long long)timeouts[i], n);
      assert_true(t1 >= d);
      assert_true(t1 - t0 < 5 * SEC);
      assert_int_equal(np_close(f[1]), 0); /* stops the writer */
      th_join(t);
      assert_int_equal(fl.ret, NP_ECLOSING);
      assert_true(copied <= fl.total);
      np_free(f[0]);
      np_free(f[1]);
    }
  }
  assert_int_equal(parked(p), 0);
  th_poller_destroy(p);
}

/* ---- 6. concurrent deadline setting ------------------------------------------ */

#define CONNS 4
#define SETTERS 4
#define TRIES 300
#define IO_MIN (512 * 1024)

typedef struct cs_shared {
  np_fd *h[2 * CONNS]; /* h[2k], h[2k+1]: the two ends of socketpair k */
  int64_t base;
  atomic_int bad;  /* first unexpected return code (0 = none) */
  atomic_int stop; /* setters are done: the writer may finish */
  size_t sent, received;
  int pattern_err;
} cs_shared;

typedef struct cs_setter {
  cs_shared *sh;
  int id;
} cs_setter;

static void note_bad(cs_shared *sh, int err) {
  int zero = 0;
  atomic_compare_exchange_strong(&sh->bad, &zero, err);
}

static void *cs_setter_main(void *arg) {
  cs_setter *st = arg;
  cs_shared *sh = st->sh;
  /* Go: deadlines steadily earlier, to churn the timer heap; plus short,
   * past and cleared ones on the pair doing i/o. */
  for (int j = TRIES; j > 0; j--) {
    for (int k = 0; k < 2 * CONNS; k++) {
      int64_t off = (int64_t)st->id * j * k * SEC;
      int err = np_set_read_deadline(sh->h[k], sh->base + 7200 * SEC + off);
      if (err == 0) err = np_set_write_deadline(sh->h[k], sh->base + 3600 * SEC + off);
      if (err != 0) note_bad(sh, err);
    }
    np_fd *io = sh->h[j % 2];
    int err = 0;
    switch ((j + st->id) % 5) {
      case 0: err = np_set_deadline(io, np_deadline_after(j * 1000)); break;
      case 1: err = np_set_read_deadline(io, np_deadline_after(2000)); break;
      case 2: err = np_set_write_deadline(io, np_now() - 1); break;
      case 3: err = np_set_deadline(io, 0); break;
      default: err = np_set_write_deadline(io, np_deadline_after(j * 100)); break;
    }
    if (err != 0) note_bad(sh, err);
  }
  return NULL;
}

/* Streams the pattern through h[0] for as long as the setters run (and at
 * least IO_MIN bytes), then shuts the socket down for writing. */
static void *cs_writer_main(void *arg) {
  cs_shared *sh = arg;
  char buf[8192 + 251];
  fill_pattern(buf, sizeof(buf), 0);
  while (sh->sent < IO_MIN || !atomic_load(&sh->stop)) {
    size_t off = sh->sent % 251;
    size_t written = 0;
    int err = np_write(sh->h[0], buf + off, 8192, &written);
    sh->sent += written;
    if (err != 0 && err != NP_ETIMEOUT) {
      note_bad(sh, err);
      break;
    }
    if (err == 0 && written != 8192) {
      note_bad(sh, -EPROTO);
      break;
    }
  }
  if (shutdown(np_sysfd(sh->h[0]), SHUT_WR) != 0) note_bad(sh, -errno);
  return NULL;
}

/* Reads until end of file, checking the pattern. */
static void *cs_reader_main(void *arg) {
  cs_shared *sh = arg;
  char buf[4096];
  for (;;) {
    ssize_t n = np_read(sh->h[1], buf, sizeof(buf));
    if (n == NP_ETIMEOUT) continue;
    if (n == 0) break;
    if (n < 0) {
      note_bad(sh, (int)n);
      break;
    }
    if (!check_pattern(buf, (size_t)n, sh->received)) sh->pattern_err = 1;
    sh->received += (size_t)n;
  }
  return NULL;
}

static void test_concurrent_set_deadline(void **state) {
  (void)state;
  np_poller *p = th_poller();
  cs_shared sh = {.base = np_now()};
  atomic_init(&sh.bad, 0);
  atomic_init(&sh.stop, 0);
  for (int k = 0; k < CONNS; k++) {
    int fds[2];
    th_socketpair(fds);
    th_open_pair(p, fds, &sh.h[2 * k]);
  }
  pthread_t io[2] = {th_start(cs_writer_main, &sh), th_start(cs_reader_main, &sh)};
  cs_setter st[SETTERS];
  pthread_t setters[SETTERS];
  for (int i = 0; i < SETTERS; i++) {
    st[i] = (cs_setter){&sh, i};
    setters[i] = th_start(cs_setter_main, &st[i]);
  }
  for (int i = 0; i < SETTERS; i++) th_join(setters[i]);
  /* The last deadline may be expired: clear them so the i/o can finish. */
  for (int k = 0; k < 2 * CONNS; k++) assert_int_equal(np_set_deadline(sh.h[k], 0), 0);
  atomic_store(&sh.stop, 1);
  th_join(io[0]);
  th_join(io[1]);
  assert_int_equal(atomic_load(&sh.bad), 0);
  assert_true(sh.sent >= IO_MIN);
  assert_int_equal(sh.received, sh.sent);
  assert_int_equal(sh.pattern_err, 0);

  /* Final state: no deadline, no timer armed or queued, nobody parked. */
  for (int k = 0; k < 2 * CONNS; k++) {
    np__pd *pd = sh.h[k]->pd;
    np__mutex_lock(&pd->lock);
    int64_t rd = pd->rd, wd = pd->wd;
    bool armed = pd->rt.armed || pd->wt.armed;
    np__mutex_unlock(&pd->lock);
    assert_int_equal(rd, 0);
    assert_int_equal(wd, 0);
    assert_false(armed);
    uint32_t info = np__load_u32(&pd->info);
    assert_int_equal(info & (NP__INFO_EXPIRED_READ | NP__INFO_EXPIRED_WRITE | NP__INFO_CLOSING), 0);
  }
  np__mutex_lock(&p->timer_lock);
  int32_t heap_len = p->heap_len;
  np__mutex_unlock(&p->timer_lock);
  assert_int_equal(heap_len, 0);
  assert_int_equal(parked(p), 0);
  th_poller_destroy(p);
}

/* Go's TestReadWriteDeadlineRace on a pipe: 2 us deadlines re-set in a loop
 * while one thread reads and another writes single bytes; the only error
 * allowed is a timeout, and everything terminates. */
#define RACE_N 1000

typedef struct race {
  np_fd *r, *w;
  atomic_int bad;
} race;

static void *race_setter(void *arg) {
  race *rc = arg;
  for (int i = 0; i < RACE_N; i++) {
    if (np_set_read_deadline(rc->r, np_deadline_after(2000)) != 0) atomic_store(&rc->bad, 1);
    if (np_set_write_deadline(rc->w, np_deadline_after(2000)) != 0) atomic_store(&rc->bad, 2);
    struct timespec ts = {0, 2000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static void *race_reader(void *arg) {
  race *rc = arg;
  char b;
  for (int i = 0; i < RACE_N; i++) {
    ssize_t n = np_read(rc->r, &b, 1);
    if (n != 1 && n != NP_ETIMEOUT) atomic_store(&rc->bad, 3);
  }
  return NULL;
}

static void *race_writer(void *arg) {
  race *rc = arg;
  for (int i = 0; i < RACE_N; i++) {
    size_t written = 0;
    int err = np_write(rc->w, "b", 1, &written);
    if (err != 0 && err != NP_ETIMEOUT) atomic_store(&rc->bad, 4);
    if ((err == 0) != (written == 1)) atomic_store(&rc->bad, 5);
  }
  return NULL;
}

static void test_read_write_deadline_race(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  th_pipe(fds);
  np_fd *f[2];
  th_open_pair(p, fds, f);
  race rc = {.r = f[0], .w = f[1]};
  atomic_init(&rc.bad, 0);
  pthread_t t[3] = {th_start(race_setter, &rc), th_start(race_reader, &rc), th_start(race_writer, &rc)};
  for (int i = 0; i < 3; i++) th_join(t[i]);
  assert_int_equal(atomic_load(&rc.bad), 0);
  assert_int_equal(parked(p), 0);
  th_poller_destroy(p);
}

/* ---- 7. read and write deadlines are independent; the combined timer --------- */

static void test_read_write_deadlines_independent(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  th_socketpair(fds);
  np_fd *a;
  assert_int_equal(np_open(p, fds[0], &a), 0);
  int peer = fds[1];
  set_nonblock(peer);
  char buf[16];
  size_t written;

  /* Read expired: writes work. Write expired: reads work. */
  assert_int_equal(np_set_read_deadline(a, np_now() - 1), 0);
  assert_int_equal(np_write(a, "1", 1, &written), 0);
  assert_int_equal(np_read(a, buf, 1), NP_ETIMEOUT);
  assert_int_equal(np_set_read_deadline(a, 0), 0);
  assert_int_equal(np_set_write_deadline(a, np_now() - 1), 0);
  assert_int_equal(write(peer, "2", 1), 1);
  assert_int_equal(np_read(a, buf, sizeof(buf)), 1);
  assert_int_equal(np_write(a, "3", 1, &written), NP_ETIMEOUT);
  assert_int_equal(np_set_write_deadline(a, 0), 0);
  assert_int_equal(drain(peer), 1);

  size_t filled = th_fill(np_sysfd(a));
  op ro, wo;
  int64_t d;
  pthread_t rt, wt;

  /* np_set_deadline(D): one combined timer times out both. */
  d = np_deadline_after(100 * MS);
  assert_int_equal(np_set_deadline(a, d), 0);
  np__mutex_lock(&a->pd->lock);
  bool combined = a->pd->rt.armed && !a->pd->wt.armed;
  np__mutex_unlock(&a->pd->lock);
  assert_true(combined);
  rt = op_start(&ro, a, OP_READ, buf, sizeof(buf));
  wt = op_start(&wo, a, OP_WRITE, "w", 1);
  th_join(rt);
  th_join(wt);
  assert_int_equal(ro.ret, NP_ETIMEOUT);
  assert_int_equal(wo.ret, NP_ETIMEOUT);
  expect_fires_at(&ro, d);
  expect_fires_at(&wo, d);

  /* Same value for both, then the write deadline cleared: only the read
   * times out; the writer stays blocked until the peer drains. */
  for (int variant = 0; variant < 2; variant++) {
    assert_int_equal(np_set_deadline(a, 0), 0);
    d = np_deadline_after(100 * MS);
    if (variant == 0) {
      assert_int_equal(np_set_deadline(a, d), 0);
    } else { /* the same value set separately also combines */
      assert_int_equal(np_set_read_deadline(a, d), 0);
      assert_int_equal(np_set_write_deadline(a, d), 0);
    }
    assert_int_equal(np_set_write_deadline(a, 0), 0);
    rt = op_start(&ro, a, OP_READ, buf, sizeof(buf));
    wt = op_start(&wo, a, OP_WRITE, "w", 1);
    th_join(rt);
    assert_int_equal(ro.ret, NP_ETIMEOUT);
    expect_fires_at(&ro, d);
    th_wait_parked(p, 1); /* the writer */
    th_sleep_ms(50);      /* past the old combined deadline: still blocked */
    assert_int_equal(atomic_load(&wo.done), 0);
    size_t got = drain(peer);
    th_join(wt);
    assert_int_equal(wo.ret, 0);
    assert_int_equal(wo.written, 1);
    got += drain(peer);
    assert_int_equal(got, filled + 1);
    filled = th_fill(np_sysfd(a));
  }

  /* Same value for both, then the read deadline moved an hour away: only
   * the write times out; the reader gets data later. */
  for (int variant = 0; variant < 2; variant++) {
    assert_int_equal(np_set_deadline(a, 0), 0);
    d = np_deadline_after(100 * MS);
    assert_int_equal(np_set_deadline(a, d), 0);
    if (variant == 0)
      assert_int_equal(np_set_read_deadline(a, 0), 0);
    else
      assert_int_equal(np_set_read_deadline(a, np_deadline_after(3600 * SEC)), 0);
    rt = op_start(&ro, a, OP_READ, buf, sizeof(buf));
    wt = op_start(&wo, a, OP_WRITE, "w", 1);
    th_join(wt);
    assert_int_equal(wo.ret, NP_ETIMEOUT);
    assert_int_equal(wo.written, 0);
    expect_fires_at(&wo, d);
    th_wait_parked(p, 1); /* the reader */
    th_sleep_ms(50);
    assert_int_equal(atomic_load(&ro.done), 0);
    assert_int_equal(write(peer, "late", 4), 4);
    th_join(rt);
    assert_int_equal(ro.ret, 4);
  }

  /* Separate timers: read at D, write at D + 200 ms. */
  assert_int_equal(np_set_deadline(a, 0), 0);
  d = np_deadline_after(100 * MS);
  int64_t d2 = d + 200 * MS;
  assert_int_equal(np_set_read_deadline(a, d), 0);
  assert_int_equal(np_set_write_deadline(a, d2), 0);
  rt = op_start(&ro, a, OP_READ, buf, sizeof(buf));
  wt = op_start(&wo, a, OP_WRITE, "w", 1);
  th_join(rt);
  th_join(wt);
  assert_int_equal(ro.ret, NP_ETIMEOUT);
  assert_int_equal(wo.ret, NP_ETIMEOUT);
  expect_fires_at(&ro, d);
  expect_fires_at(&wo, d2);

  assert_int_equal(drain(peer), filled);
  close(peer);
  th_poller_destroy(p);
}

/* ---- 8. a write deadline reports the partial count exactly -------------------- */

#define BIG (4 * 1024 * 1024)

typedef struct slow_peer {
  int fd;
  size_t limit; /* reads at most this much */
  size_t got;
  atomic_int stop;
  int pattern_err;
} slow_peer;

static void *slow_peer_main(void *arg) {
  slow_peer *sp = arg;
  char buf[8192];
  while (sp->got < sp->limit) {
    size_t want = sp->limit - sp->got < sizeof(buf) ? sp->limit - sp->got : sizeof(buf);
    ssize_t n = read(sp->fd, buf, want);
    if (n > 0) {
      if (!check_pattern(buf, (size_t)n, sp->got)) sp->pattern_err = 1;
      sp->got += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EAGAIN && !atomic_load(&sp->stop)) {
      struct timespec ts = {0, 200000};
      nanosleep(&ts, NULL);
      continue;
    }
    break;
  }
  return NULL;
}

static void test_write_deadline_partial_count(void **state) {
  (void)state;
  np_poller *p = th_poller();
  char *big = malloc(BIG);
  assert_non_null(big);
  fill_pattern(big, BIG, 0);
  for (int variant = 0; variant < 3; variant++) {
    int fds[2];
    th_socketpair(fds);
    np_fd *a;
    assert_int_equal(np_open(p, fds[0], &a), 0);
    set_nonblock(fds[1]);
    slow_peer sp = {.fd = fds[1], .limit = variant == 2 ? 256 * 1024 : 0};
    atomic_init(&sp.stop, 0);
    pthread_t t = th_start(slow_peer_main, &sp);
    int64_t d = np_deadline_after(variant == 2 ? 300 * MS : 100 * MS);
    assert_int_equal(np_set_write_deadline(a, d), 0);
    size_t written = 0;
    int err;
    if (variant == 1) { /* writev with odd segment sizes */
      const size_t sizes[] = {1000, 70000, 3, 400001, BIG - 1000 - 70000 - 3 - 400001};
      struct iovec iov[5];
      size_t off = 0;
      for (int i = 0; i < 5; i++) {
        iov[i].iov_base = big + off;
        iov[i].iov_len = sizes[i];
        off += sizes[i];
      }
      err = np_writev(a, iov, 5, &written);
    } else {
      err = np_write(a, big, BIG, &written);
    }
    int64_t t1 = np_now();
    atomic_store(&sp.stop, 1);
    th_join(t);
    assert_int_equal(err, NP_ETIMEOUT);
    assert_true(t1 >= d);
    assert_true(written > 0 && written < BIG);
    if (variant == 2) assert_int_equal(sp.got, sp.limit); /* it woke on room and went on */
    assert_int_equal(sp.pattern_err, 0);
    size_t rest = drain_pattern(fds[1], sp.got);
    if (sp.got + rest != written)
      fail_msg("write reported %zu bytes, peer received %zu", written, sp.got + rest);
    np_free(a);
    close(fds[1]);
  }
  free(big);
  th_poller_destroy(p);
}

/* ---- 9. extreme deadline values ------------------------------------------------ */

static void test_extreme_deadlines(void **state) {
  (void)state;
  assert_int_equal(np_deadline_after(INT64_MAX), INT64_MAX);
  assert_int_equal(np_deadline_after(INT64_MAX - 1), INT64_MAX);
  int64_t now = np_now();
  int64_t zero = np_deadline_after(0);
  assert_true(zero != 0 && zero <= np_now());
  assert_true(np_deadline_after(-SEC) != 0 && np_deadline_after(-SEC) <= np_now());
  assert_true(np_deadline_after(SEC) >= now + SEC);

  np_poller *p = th_poller();
  int fds[2];
  th_socketpair(fds);
  np_fd *a;
  assert_int_equal(np_open(p, fds[0], &a), 0);
  int peer = fds[1];
  set_nonblock(peer);
  char buf[16];

  /* expired forms */
  const int64_t expired[] = {np_now() - 1, np_deadline_after(0), -1, INT64_MIN, 1};
  for (size_t i = 0; i < sizeof(expired) / sizeof(expired[0]); i++) {
    assert_int_equal(np_set_deadline(a, expired[i]), 0);
    assert_int_equal(np_read(a, buf, sizeof(buf)), NP_ETIMEOUT);
    size_t written = 9;
    assert_int_equal(np_write(a, "x", 1, &written), NP_ETIMEOUT);
    assert_int_equal(written, 0);
  }

  /* INT64_MAX never fires, and the poller does not spin on it. */
  assert_int_equal(np_set_deadline(a, 0), 0);
  size_t filled = th_fill(np_sysfd(a));
  assert_int_equal(np_set_read_deadline(a, INT64_MAX), 0);
  assert_int_equal(np_set_write_deadline(a, INT64_MAX - 1), 0); /* separate timers */
  op ro, wo;
  pthread_t rt = op_start(&ro, a, OP_READ, buf, sizeof(buf));
  pthread_t wt = op_start(&wo, a, OP_WRITE, "w", 1);
  th_wait_parked(p, 2);
  np_stats s0, s1;
  np_poller_stats(p, &s0);
  th_sleep_ms(200);
  np_poller_stats(p, &s1);
  assert_int_equal(atomic_load(&ro.done), 0);
  assert_int_equal(atomic_load(&wo.done), 0);
  if (s1.polls - s0.polls > 20)
    fail_msg("poller spun %llu times in 200 ms", (unsigned long long)(s1.polls - s0.polls));
  assert_int_equal(write(peer, "max", 3), 3);
  th_join(rt);
  assert_int_equal(ro.ret, 3);
  size_t got = drain(peer); /* the writer may add its byte meanwhile */
  th_join(wt);
  assert_int_equal(wo.ret, 0);
  assert_int_equal(wo.written, 1);
  assert_int_equal(got + drain(peer), filled + 1);

  /* Both INT64_MAX (combined timer at INT64_MAX), then shortened. */
  assert_int_equal(np_set_deadline(a, INT64_MAX), 0);
  rt = op_start(&ro, a, OP_READ, buf, sizeof(buf));
  th_wait_parked(p, 1);
  int64_t d = np_deadline_after(50 * MS);
  assert_int_equal(np_set_deadline(a, d), 0);
  th_join(rt);
  assert_int_equal(ro.ret, NP_ETIMEOUT);
  expect_fires_at(&ro, d);
  close(peer);
  th_poller_destroy(p);
}

/* ---- 12. a deadline passes while every call finds data or room ---------------
 * A loop of one-byte reads on a full socket, or writes into an empty one,
 * never parks. Its deadline must still stop it once passed (Go: "i/o
 * timeout" within the deadline's scheduling slack), whether or not the
 * timer has run: a task's own scheduler runs timers only when the task
 * parks, which this loop would do only when the data (or room) ran out
 * (found by testing from outside: the task read all 200 KB). */

typedef struct busy_loop {
  np_fd *f;
  bool write;
  size_t count;
  ssize_t ret;
} busy_loop;

static void *busy_loop_main(void *arg) {
  busy_loop *b = arg;
  char c = 'b';
  int64_t d = np_deadline_after(10 * MS);
  assert_int_equal(b->write ? np_set_write_deadline(b->f, d) : np_set_read_deadline(b->f, d), 0);
  for (;;) {
    ssize_t n = b->write ? (ssize_t)np_write(b->f, &c, 1, NULL) : np_read(b->f, &c, 1);
    if (n < 0 || (!b->write && n != 1)) {
      b->ret = n;
      return NULL;
    }
    b->count++;
  }
}

static void test_deadline_stops_busy_loop(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  th_socketpair(fds);
  np_fd *a;
  assert_int_equal(np_open(p, fds[0], &a), 0);
  set_nonblock(fds[1]);
  size_t filled = th_fill(fds[1]); /* a's receive side full */
  busy_loop r = {.f = a, .write = false};
  th_join(th_start(busy_loop_main, &r));
  assert_int_equal(r.ret, NP_ETIMEOUT);
  if (r.count >= filled) fail_msg("read all %zu bytes: the deadline did not stop the loop", filled);

  /* Writes: a 1 MiB pipe (one-byte writes share its pages; a socket would
   * charge each its own buffer and fill after a few hundred). */
  int pfd[2];
  np_fd *pw;
  th_pipe(pfd);
  assert_true(fcntl(pfd[1], F_SETPIPE_SZ, 1 << 20) >= (1 << 20));
  assert_int_equal(np_open(p, pfd[1], &pw), 0);
  busy_loop w = {.f = pw, .write = true};
  th_join(th_start(busy_loop_main, &w));
  assert_int_equal(w.ret, NP_ETIMEOUT);
  assert_true(w.count > 0);
  /* It stopped with room left: its deadline, not a full pipe. */
  assert_int_equal(write(pfd[1], "r", 1), 1);
  np_free(pw);
  close(pfd[0]);
  np_free(a);
  close(fds[1]);
  th_poller_destroy(p);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_past_deadline_fails_at_once),
      cmocka_unit_test(test_future_deadline_fires),
      cmocka_unit_test(test_deadline_cleared_after_expiry),
      cmocka_unit_test(test_deadline_moved_while_blocked),
      cmocka_unit_test(test_deadline_must_not_return),
      cmocka_unit_test(test_various_deadlines),
      cmocka_unit_test(test_concurrent_set_deadline),
      cmocka_unit_test(test_read_write_deadline_race),
      cmocka_unit_test(test_read_write_deadlines_independent),
      cmocka_unit_test(test_write_deadline_partial_count),
      cmocka_unit_test(test_extreme_deadlines),
      cmocka_unit_test(test_deadline_stops_busy_loop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
