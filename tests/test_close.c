/* test_close.c - np_close and np_poller_destroy: blocked readers and writers
 * wake with NP_ECLOSING (a writer with its exact partial count), the raw fd is
 * closed before np_close returns, close racing a reader, every operation on a
 * closed handle, destroy with blocked threads, the parked-waiter count, a
 * descriptor closed behind the library's back, and the handle's lifetime
 * with threads queued on its fd mutex (np_free / np_poller_destroy must not
 * return while one is still inside a call). */
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

/* ---- a blocking operation on its own thread --------------------------------- */

enum { OP_READ, OP_WRITE, OP_WAIT_READ, OP_WAIT_WRITE };

typedef struct op {
  np_fd *f;
  int kind;
  char *buf;
  size_t len;
  ssize_t ret;
  size_t written;
  atomic_int done;
} op;

static void *op_main(void *arg) {
  op *o = arg;
  switch (o->kind) {
    case OP_READ: o->ret = np_read(o->f, o->buf, o->len); break;
    case OP_WRITE: o->ret = np_write(o->f, o->buf, o->len, &o->written); break;
    case OP_WAIT_READ: o->ret = np_wait_read(o->f); break;
    case OP_WAIT_WRITE: o->ret = np_wait_write(o->f); break;
    default: o->ret = -EINVAL; break;
  }
  atomic_store(&o->done, 1);
  return NULL; /* must not touch o->f any more: destroy may have freed it */
}

static pthread_t op_start(op *o, np_fd *f, int kind, char *buf, size_t len) {
  o->f = f;
  o->kind = kind;
  o->buf = buf;
  o->len = len;
  o->ret = 12345;
  o->written = 0;
  atomic_init(&o->done, 0);
  return th_start(op_main, o);
}

static void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  assert_true(fl >= 0);
  assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static uint64_t parked(np_poller *p) {
  np_stats s;
  np_poller_stats(p, &s);
  return s.waiters_parked;
}

static void expect_fd_closed(int fd) {
  errno = 0;
  assert_int_equal(fcntl(fd, F_GETFD), -1);
  assert_int_equal(errno, EBADF);
}

static uint8_t pattern(size_t offset) { return (uint8_t)(offset % 251); }

/* Reads everything on a raw non-blocking fd up to EOF / EAGAIN, checking
 * the pattern; *eof tells which. */
static size_t drain_pattern(int fd, bool *eof) {
  static char buf[65536];
  size_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      for (ssize_t i = 0; i < n; i++)
        if ((uint8_t)buf[i] != pattern(total + (size_t)i))
          fail_msg("pattern broken at %zu", total + (size_t)i);
      total += (size_t)n;
      continue;
    }
    if (n == 0) {
      *eof = true;
      return total;
    }
    assert_int_equal(errno, EAGAIN);
    *eof = false;
    return total;
  }
}

/* Same without a pattern (th_fill writes zeros). */
static size_t drain_count(int fd, bool *eof) {
  static char buf[65536];
  size_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      total += (size_t)n;
      continue;
    }
    *eof = n == 0;
    if (n < 0) assert_int_equal(errno, EAGAIN);
    return total;
  }
}

#define BIG (4 * 1024 * 1024)

static char *big_pattern(void) {
  char *big = malloc(BIG);
  assert_non_null(big);
  for (size_t i = 0; i < BIG; i++) big[i] = (char)pattern(i);
  return big;
}

/* ---- 1. close wakes blocked readers and writers ------------------------------- */

static void test_close_wakes_blocked(void **state) {
  (void)state;
  np_poller *p = th_poller();
  char *big = big_pattern();
  /* who: 0 reader, 1 writer, 2 both on the same socket, 3 both waits */
  for (int who = 0; who < 4; who++) {
    int fds[2];
    th_socketpair(fds);
    np_fd *a;
    assert_int_equal(np_open(p, fds[0], &a), 0);
    set_nonblock(fds[1]);
    char rbuf[16];
    op ro, wo;
    pthread_t rt = 0, wt = 0;
    bool reader = who != 1, writer = who != 0;
    if (who == 3) {
      /* np_wait_* returns at once for a readiness noted earlier (the
       * initial EPOLLOUT edge): time out one read and one write first so
       * that none is pending, then the waits really block. */
      th_fill(np_sysfd(a));
      size_t w0 = 0;
      assert_int_equal(np_set_read_deadline(a, np_deadline_after(10 * MS)), 0);
      assert_int_equal(np_read(a, rbuf, sizeof(rbuf)), NP_ETIMEOUT);
      assert_int_equal(np_set_write_deadline(a, np_deadline_after(10 * MS)), 0);
      assert_int_equal(np_write(a, "x", 1, &w0), NP_ETIMEOUT);
      assert_int_equal(np_set_deadline(a, 0), 0);
    }
    if (reader) rt = op_start(&ro, a, who == 3 ? OP_WAIT_READ : OP_READ, rbuf, sizeof(rbuf));
    if (writer) {
      wt = op_start(&wo, a, who == 3 ? OP_WAIT_WRITE : OP_WRITE, big, BIG);
    }
    th_wait_parked(p, (uint64_t)reader + writer);
    assert_int_equal(np_close(a), 0);
    assert_int_equal(parked(p), 0);
    if (reader) th_join(rt);
    if (writer) th_join(wt);
    /* Single-threaded again (the poller thread opens nothing). */
    expect_fd_closed(fds[0]);
    assert_int_equal(np_sysfd(a), -1);
    if (reader) assert_int_equal(ro.ret, NP_ECLOSING);
    if (writer) assert_int_equal(wo.ret, NP_ECLOSING);
    if (who == 1 || who == 2) {
      /* The partial count is exactly what reached the peer, then EOF. */
      assert_true(wo.written > 0 && wo.written < BIG);
      bool eof = false;
      size_t got = drain_pattern(fds[1], &eof);
      assert_true(eof);
      if (got != wo.written) fail_msg("writer reported %zu bytes, peer got %zu", wo.written, got);
    }
    np_free(a);
    close(fds[1]);
  }
  free(big);
  th_poller_destroy(p);
}

/* Pipes too: both ends blocked, each closed by the main thread. */
static void test_close_wakes_blocked_pipe(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2], fds2[2];
  th_pipe(fds);
  th_pipe(fds2);
  np_fd *r, *w;
  assert_int_equal(np_open(p, fds[0], &r), 0);
  assert_int_equal(np_open(p, fds2[1], &w), 0);
  size_t filled = th_fill(fds2[1]);
  char buf[16];
  op ro, wo;
  pthread_t rt = op_start(&ro, r, OP_READ, buf, sizeof(buf));
  pthread_t wt = op_start(&wo, w, OP_WRITE, "abc", 3);
  th_wait_parked(p, 2);
  assert_int_equal(np_close(r), 0);
  th_join(rt);
  assert_int_equal(ro.ret, NP_ECLOSING);
  assert_int_equal(parked(p), 1); /* the writer is untouched */
  assert_int_equal(atomic_load(&wo.done), 0);
  assert_int_equal(np_close(w), 0);
  th_join(wt);
  assert_int_equal(wo.ret, NP_ECLOSING);
  assert_int_equal(wo.written, 0);
  expect_fd_closed(fds[0]);
  expect_fd_closed(fds2[1]);
  set_nonblock(fds2[0]);
  bool eof = false;
  assert_int_equal(drain_count(fds2[0], &eof), filled);
  assert_true(eof); /* the write end really is closed */
  np_free(r);
  np_free(w);
  close(fds[1]);
  close(fds2[0]);
  th_poller_destroy(p);
}

/* ---- 2. close racing a reader, in a loop --------------------------------------- */

#define RACE_ITERS 200

typedef struct race_writer {
  np_fd *w;
  int64_t delay_ns;
  int action; /* 0 write a byte, 1 close the writer (EOF) */
  int ret;
} race_writer;

static void spin_ns(int64_t ns) {
  int64_t end = np_now() + ns;
  while (np_now() < end) {
  }
}

static void *race_writer_main(void *arg) {
  race_writer *rw = arg;
  spin_ns(rw->delay_ns);
  size_t written = 0;
  rw->ret = rw->action == 0 ? np_write(rw->w, "x", 1, &written) : np_close(rw->w);
  return NULL;
}

static void test_close_races_reader(void **state) {
  (void)state;
  np_poller *p = th_poller();
  unsigned seed = 12345;
  int counts[3] = {0, 0, 0}; /* data, EOF, closing */
  for (int i = 0; i < RACE_ITERS; i++) {
    int fds[2];
    th_pipe(fds);
    np_fd *f[2];
    th_open_pair(p, fds, f);
    char buf[8] = {0};
    op ro;
    pthread_t rt = op_start(&ro, f[0], OP_READ, buf, sizeof(buf));
    race_writer rw = {.w = f[1], .delay_ns = rand_r(&seed) % 200000, .action = rand_r(&seed) % 3};
    bool has_writer = rw.action < 2;
    pthread_t wt = has_writer ? th_start(race_writer_main, &rw) : rt;
    if (rw.action == 2 && i % 2 == 0) th_wait_parked(p, 1); /* close a parked reader */
    spin_ns(rand_r(&seed) % 400000);
    assert_int_equal(np_close(f[0]), 0);
    th_join(rt);
    if (has_writer) th_join(wt);
    expect_fd_closed(fds[0]);
    if (ro.ret == 1) {
      assert_int_equal(rw.action, 0);
      assert_int_equal(buf[0], 'x');
      counts[0]++;
    } else if (ro.ret == 0) {
      assert_int_equal(rw.action, 1);
      counts[1]++;
    } else if (ro.ret == NP_ECLOSING) {
      counts[2]++;
    } else {
      fail_msg("iteration %d: reader returned %zd", i, ro.ret);
    }
    if (has_writer && rw.action == 0) assert_true(rw.ret == 0 || rw.ret == -EPIPE);
    if (has_writer && rw.action == 1) assert_int_equal(rw.ret, 0);
    assert_int_equal(parked(p), 0);
    np_free(f[0]);
    np_free(f[1]);
  }
  assert_true(counts[2] > 0); /* close did interrupt some readers */
  np_stats s;
  np_poller_stats(p, &s);
  assert_int_equal(s.fds_open, 0);
  th_poller_destroy(p);
}

/* ---- 3. use after close ----------------------------------------------------------- */

static void test_use_after_close(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  th_socketpair(fds);
  np_fd *a;
  assert_int_equal(np_open(p, fds[0], &a), 0);
  assert_int_equal(write(fds[1], "pending", 7), 7); /* data ready: still closing */
  int raw = np_sysfd(a);
  assert_int_equal(raw, fds[0]);
  np_stats s;
  np_poller_stats(p, &s);
  assert_int_equal(s.fds_open, 1);
  assert_int_equal(np_close(a), 0);
  expect_fd_closed(raw);
  np_poller_stats(p, &s);
  assert_int_equal(s.fds_open, 0);

  char buf[16];
  struct iovec iov = {buf, sizeof(buf)};
  size_t written = 77;
  assert_int_equal(np_read(a, buf, sizeof(buf)), NP_ECLOSING);
  assert_int_equal(np_read(a, buf, 0), NP_ECLOSING);
  assert_int_equal(np_readv(a, &iov, 1), NP_ECLOSING);
  assert_int_equal(np_write(a, "x", 1, &written), NP_ECLOSING);
  assert_int_equal(written, 0);
  written = 77;
  assert_int_equal(np_writev(a, &iov, 1, &written), NP_ECLOSING);
  assert_int_equal(written, 0);
  np_fd *acc = (np_fd *)&written; /* must be reset to NULL */
  assert_int_equal(np_accept(a, &acc, NULL, NULL), NP_ECLOSING);
  assert_null(acc);
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  assert_int_equal(np_connect(a, (struct sockaddr *)&sun, sizeof(sun)), NP_ECLOSING);
  assert_int_equal(np_wait_read(a), NP_ECLOSING);
  assert_int_equal(np_wait_write(a), NP_ECLOSING);
  assert_int_equal(np_set_deadline(a, np_deadline_after(MS)), NP_ECLOSING);
  assert_int_equal(np_set_read_deadline(a, 0), NP_ECLOSING);
  assert_int_equal(np_set_write_deadline(a, np_now() - 1), NP_ECLOSING);
  assert_int_equal(np_close(a), NP_ECLOSING);
  assert_int_equal(np_close(a), NP_ECLOSING);
  assert_int_equal(np_sysfd(a), -1);
  np_free(a); /* after close: frees without closing again */
  close(fds[1]);
  th_poller_destroy(p);
}

/* ---- 4. destroy with blocked threads -------------------------------------------- */

#define DESTROY_PIPES 4

static void test_destroy_wakes_blocked(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int pipes[DESTROY_PIPES][2];
  np_fd *r[DESTROY_PIPES];
  op ops[DESTROY_PIPES + 3];
  pthread_t t[DESTROY_PIPES + 3];
  char bufs[DESTROY_PIPES + 1][16];
  for (int i = 0; i < DESTROY_PIPES; i++) {
    th_pipe(pipes[i]);
    assert_int_equal(np_open(p, pipes[i][0], &r[i]), 0);
    t[i] = op_start(&ops[i], r[i], OP_READ, bufs[i], sizeof(bufs[i]));
  }
  /* A socket with a blocked reader and a writer blocked part way, and a
   * pipe with a thread in np_wait_read. */
  int sp[2];
  th_socketpair(sp);
  np_fd *a;
  assert_int_equal(np_open(p, sp[0], &a), 0);
  set_nonblock(sp[1]);
  char *big = big_pattern();
  t[DESTROY_PIPES] = op_start(&ops[DESTROY_PIPES], a, OP_READ, bufs[DESTROY_PIPES], 16);
  t[DESTROY_PIPES + 1] = op_start(&ops[DESTROY_PIPES + 1], a, OP_WRITE, big, BIG);
  int wp[2];
  th_pipe(wp);
  np_fd *wr;
  assert_int_equal(np_open(p, wp[0], &wr), 0);
  t[DESTROY_PIPES + 2] = op_start(&ops[DESTROY_PIPES + 2], wr, OP_WAIT_READ, NULL, 0);
  /* One handle never used, one closed but not freed: destroy frees both. */
  int idle[2];
  th_pipe(idle);
  np_fd *idle_f[2];
  th_open_pair(p, idle, idle_f);
  assert_int_equal(np_close(idle_f[1]), 0);

  th_wait_parked(p, DESTROY_PIPES + 3);
  th_poller_destroy(p); /* returns only once all are awake and gone */
  for (int i = 0; i < DESTROY_PIPES + 3; i++) {
    th_join(t[i]);
    assert_int_equal(ops[i].ret, NP_ECLOSING);
  }
  for (int i = 0; i < DESTROY_PIPES; i++) {
    expect_fd_closed(pipes[i][0]);
    close(pipes[i][1]);
  }
  expect_fd_closed(sp[0]);
  expect_fd_closed(wp[0]);
  expect_fd_closed(idle[0]);
  expect_fd_closed(idle[1]);
  size_t w = ops[DESTROY_PIPES + 1].written;
  assert_true(w > 0 && w < BIG);
  bool eof = false;
  assert_int_equal(drain_pattern(sp[1], &eof), w);
  assert_true(eof);
  close(sp[1]);
  close(wp[1]);
  free(big);
}

/* ---- 5. the parked count stays exact through closes -------------------------------- */

static uint64_t rwait_count(np_fd *f) { return (np__load_u64(&f->mu.state) >> 23) & 0xFFFFF; }

static void test_close_keeps_parked_count(void **state) {
  (void)state;
  np_poller *p = th_poller();
  /* pipe 0: two readers (one parked on the pd, one queued on the fd
   * mutex); pipe 1: one reader; socket: reader + writer; pipe 2: wait. */
  int p0[2], p1[2], p2[2], sp[2];
  th_pipe(p0);
  th_pipe(p1);
  th_pipe(p2);
  th_socketpair(sp);
  np_fd *f0, *f1, *f2, *a;
  assert_int_equal(np_open(p, p0[0], &f0), 0);
  assert_int_equal(np_open(p, p1[0], &f1), 0);
  assert_int_equal(np_open(p, p2[0], &f2), 0);
  assert_int_equal(np_open(p, sp[0], &a), 0);
  th_fill(np_sysfd(a));
  char bufs[4][8];
  op o[6];
  pthread_t t[6];
  t[0] = op_start(&o[0], f0, OP_READ, bufs[0], 8);
  t[1] = op_start(&o[1], f0, OP_READ, bufs[1], 8);
  t[2] = op_start(&o[2], f1, OP_READ, bufs[2], 8);
  t[3] = op_start(&o[3], a, OP_READ, bufs[3], 8);
  t[4] = op_start(&o[4], a, OP_WRITE, "w", 1);
  t[5] = op_start(&o[5], f2, OP_WAIT_READ, NULL, 0);
  th_wait_parked(p, 5);
  for (int i = 0; i < 5000 && rwait_count(f0) != 1; i++) th_sleep_ms(1);
  assert_int_equal(rwait_count(f0), 1); /* the second reader queues on the mutex */
  assert_int_equal(parked(p), 5);

  assert_int_equal(np_close(f0), 0);
  assert_int_equal(parked(p), 4); /* exact as soon as close returns */
  th_join(t[0]);
  th_join(t[1]);
  assert_int_equal(o[0].ret, NP_ECLOSING);
  assert_int_equal(o[1].ret, NP_ECLOSING);
  assert_int_equal(parked(p), 4);

  assert_int_equal(np_close(a), 0);
  assert_int_equal(parked(p), 2);
  th_join(t[3]);
  th_join(t[4]);
  assert_int_equal(o[3].ret, NP_ECLOSING);
  assert_int_equal(o[4].ret, NP_ECLOSING);

  /* Data wakes f1's reader (readiness path), close wakes f2's waiter. */
  assert_int_equal(write(p1[1], "d", 1), 1);
  th_join(t[2]);
  assert_int_equal(o[2].ret, 1);
  assert_int_equal(parked(p), 1);
  assert_int_equal(np_close(f2), 0);
  th_join(t[5]);
  assert_int_equal(o[5].ret, NP_ECLOSING);
  assert_int_equal(parked(p), 0);

  /* Repeatedly: park one, close, count back to 0. */
  for (int i = 0; i < 50; i++) {
    int fds[2];
    th_pipe(fds);
    np_fd *f;
    assert_int_equal(np_open(p, fds[0], &f), 0);
    op ro;
    pthread_t rt = op_start(&ro, f, i % 2 ? OP_WAIT_READ : OP_READ, bufs[0], 8);
    th_wait_parked(p, 1);
    assert_int_equal(np_close(f), 0);
    assert_int_equal(parked(p), 0);
    th_join(rt);
    assert_int_equal(ro.ret, NP_ECLOSING);
    np_free(f);
    close(fds[1]);
  }
  th_poller_destroy(p);
  close(p0[1]);
  close(p1[1]);
  close(p2[1]);
  close(sp[1]);
}

/* ---- 6. the raw descriptor closed behind the library's back ------------------------ */

static void test_raw_close_behind_back(void **state) {
  (void)state;
  np_poller *p = th_poller();
  char buf[16];
  size_t written;

  /* Idle socket: operations fail with EBADF, close reports something sane. */
  int sp[2];
  th_socketpair(sp);
  np_fd *a;
  assert_int_equal(np_open(p, sp[0], &a), 0);
  assert_int_equal(close(sp[0]), 0);
  assert_int_equal(np_read(a, buf, sizeof(buf)), -EBADF);
  assert_int_equal(np_write(a, "x", 1, &written), -EBADF);
  assert_int_equal(written, 0);
  struct iovec iov = {buf, sizeof(buf)};
  assert_int_equal(np_readv(a, &iov, 1), -EBADF);
  assert_int_equal(np_writev(a, &iov, 1, &written), -EBADF);
  assert_int_equal(np_set_deadline(a, np_deadline_after(MS)), 0);
  assert_int_equal(np_set_deadline(a, 0), 0);
  int err = np_close(a);
  assert_true(err == 0 || err == -EBADF);
  assert_int_equal(np_sysfd(a), -1);
  assert_int_equal(np_read(a, buf, sizeof(buf)), NP_ECLOSING);
  np_free(a);

  /* Pipe read end closed behind the back: its writer gets EPIPE. */
  int pp[2];
  th_pipe(pp);
  np_fd *f[2];
  th_open_pair(p, pp, f);
  assert_int_equal(close(pp[0]), 0);
  assert_int_equal(np_read(f[0], buf, sizeof(buf)), -EBADF);
  assert_int_equal(np_write(f[1], "x", 1, &written), -EPIPE);
  err = np_close(f[0]);
  assert_true(err == 0 || err == -EBADF);
  assert_int_equal(np_close(f[1]), 0);
  np_free(f[0]);
  np_free(f[1]);

  /* A reader parked when the fd disappears (epoll silently drops it, so
   * nothing wakes it) is woken by np_close. */
  th_socketpair(sp);
  assert_int_equal(np_open(p, sp[0], &a), 0);
  op ro;
  pthread_t rt = op_start(&ro, a, OP_READ, buf, sizeof(buf));
  th_wait_parked(p, 1);
  assert_int_equal(close(sp[0]), 0);
  err = np_close(a);
  th_join(rt);
  assert_true(err == 0 || err == -EBADF);
  assert_int_equal(ro.ret, NP_ECLOSING);
  assert_int_equal(parked(p), 0);
  np_free(a);
  close(sp[1]);

  np_stats s;
  np_poller_stats(p, &s);
  assert_int_equal(s.fds_open, 0);
  th_poller_destroy(p);
}

/* ---- 7. threads queued on the fd mutex and the handle's lifetime (issue 9) ---------
 * np_close / np_free / np_poller_destroy must not return while any thread is
 * still inside a call on the handle, queued ones included. Handle memory
 * goes through a poisoning allocator here (a page each, PROT_NONE once
 * freed), so a use after free faults in every build, not only under ASan. */

#define POISON_MAX 64
static void *poison_pages[POISON_MAX];
static size_t poison_size;
static int poison_count;

static void *poison_alloc(size_t size) {
  long page = sysconf(_SC_PAGESIZE);
  poison_size = (size + (size_t)page - 1) / (size_t)page * (size_t)page;
  if (poison_count >= POISON_MAX) return NULL;
  void *m = mmap(NULL, poison_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
  poison_pages[poison_count++] = m;
  return m;
}

static void poison_free(void *f) {
  memset(f, 0xDB, poison_size);
  if (mprotect(f, poison_size, PROT_NONE) != 0) abort();
}

static void on_poison_fault(int sig) {
  static const char msg[] =
      "test_close: a thread touched a freed np_fd (use after free of a queued handle)\n";
  if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) _exit(3);
  signal(sig, SIG_DFL);
  raise(sig);
}

static void poison_begin(void) {
  np__test_hook_fd_alloc = poison_alloc;
  np__test_hook_fd_free = poison_free;
  signal(SIGSEGV, on_poison_fault);
}

static void poison_end(void) {
  np__test_hook_fd_alloc = NULL;
  np__test_hook_fd_free = NULL;
  for (int i = 0; i < poison_count; i++) munmap(poison_pages[i], poison_size);
  poison_count = 0;
  signal(SIGSEGV, SIG_DFL);
}

static uint64_t wait_count_of(np_fd *f, bool read) {
  return (np__load_u64(&f->mu.state) >> (read ? 23 : 43)) & 0xFFFFF;
}

static void wait_queued(np_fd *f, bool read, uint64_t want) {
  for (int i = 0; i < 5000 && wait_count_of(f, read) != want; i++) th_sleep_ms(1);
  assert_int_equal(wait_count_of(f, read), want);
}

enum { END_FREE, END_CLOSE_FREE, END_DESTROY };

/* One blocked reader (or writer) and QUEUED more behind it on the fd mutex;
 * then the handle ends. Every thread must return NP_ECLOSING, and none may
 * touch the handle after the call that ends it has returned. */
#define QUEUED 3
static void queued_round(bool read, int end) {
  np_poller *p = th_poller();
  int sp[2];
  th_socketpair(sp);
  np_fd *f;
  assert_int_equal(np_open(p, sp[0], &f), 0);
  if (!read) th_fill(sp[0]);
  static char bufs[QUEUED + 1][4096];
  op ops[QUEUED + 1];
  pthread_t t[QUEUED + 1];
  int kinds[2] = {read ? OP_READ : OP_WRITE, read ? OP_WAIT_READ : OP_WAIT_WRITE};
  t[0] = op_start(&ops[0], f, kinds[0], bufs[0], sizeof(bufs[0]));
  th_wait_parked(p, 1);
  for (int i = 1; i <= QUEUED; i++) {
    t[i] = op_start(&ops[i], f, kinds[i % 2], bufs[i], sizeof(bufs[i]));
    wait_queued(f, read, (uint64_t)i);
  }
  if (end == END_CLOSE_FREE) assert_int_equal(np_close(f), 0);
  if (end == END_DESTROY)
    np_poller_destroy(p);
  else
    np_free(f); /* the memory is poisoned now: a queued thread still inside faults */
  for (int i = 0; i <= QUEUED; i++) {
    th_join(t[i]);
    assert_int_equal(ops[i].ret, NP_ECLOSING);
  }
  expect_fd_closed(sp[0]);
  if (end != END_DESTROY) {
    np_stats s;
    np_poller_stats(p, &s);
    assert_int_equal(s.fds_open, 0);
    assert_int_equal(s.waiters_parked, 0);
    np_poller_destroy(p);
  }
  close(sp[1]);
}

#define QUEUED_ROUNDS 40
static void queued_rounds(bool read) {
  poison_begin();
  for (int round = 0; round < QUEUED_ROUNDS; round++) {
    queued_round(read, END_FREE);
    queued_round(read, END_CLOSE_FREE);
    queued_round(read, END_DESTROY);
    poison_end();
    poison_begin();
  }
  poison_end();
}

static void test_free_with_queued_readers(void **state) {
  (void)state;
  queued_rounds(true);
}

static void test_free_with_queued_writers(void **state) {
  (void)state;
  queued_rounds(false);
}

/* np_free while another thread's np_close is still waiting for the last
 * reference: np_free must wait until that close is done with the handle.
 * The reader is held (test hook) between WAIT and its park commit, inside
 * np_read with the read lock, for 30 ms. */
static atomic_int hook_armed, hook_inside;
static void slow_commit(np__waiter *w) {
  (void)w;
  if (!atomic_exchange(&hook_armed, 0)) return;
  atomic_store(&hook_inside, 1);
  th_sleep_ms(30);
}

typedef struct closer_arg {
  np_fd *f;
  int ret;
} closer_arg;

static void *closer_main(void *arg) {
  closer_arg *c = arg;
  c->ret = np_close(c->f);
  return NULL; /* must not touch c->f: np_free may have freed it */
}

static void test_free_during_other_close(void **state) {
  (void)state;
  poison_begin();
  np__test_hook_before_commit = slow_commit;
  for (int round = 0; round < 5; round++) {
    np_poller *p = th_poller();
    int sp[2];
    th_socketpair(sp);
    np_fd *f;
    assert_int_equal(np_open(p, sp[0], &f), 0);
    atomic_store(&hook_inside, 0);
    atomic_store(&hook_armed, 1);
    op r;
    char buf[16];
    pthread_t rt = op_start(&r, f, OP_READ, buf, sizeof(buf));
    for (int i = 0; i < 5000 && !atomic_load(&hook_inside); i++) th_sleep_ms(1);
    assert_true(atomic_load(&hook_inside));
    closer_arg c = {.f = f, .ret = 12345};
    pthread_t ct = th_start(closer_main, &c);
    for (int i = 0; i < 5000 && !(np__load_u64(&f->mu.state) & 1); i++) th_sleep_ms(1);
    assert_true(np__load_u64(&f->mu.state) & 1); /* the other close has begun */
    np_free(f);                                  /* its own close loses: NP_ECLOSING */
    th_join(ct);
    th_join(rt);
    assert_int_equal(c.ret, 0);
    assert_int_equal(r.ret, NP_ECLOSING);
    expect_fd_closed(sp[0]);
    close(sp[1]);
    np_poller_destroy(p);
  }
  np__test_hook_before_commit = NULL;
  poison_end();
}

/* ---- 8. a descriptor closed behind the library, its number reused (issue 9) -------
 * np_wait_read / np_wait_write fail with -EBADF instead of parking forever;
 * np_close of the stale handle leaves alone the file that now has the number
 * (another poller's descriptors, a user's pipe). */

/* Runs np_wait_read / np_wait_write on a thread; fails the test if it is
 * still parked after 2 s (then np_close wakes it). */
static int bounded_wait(np_fd *f, int kind) {
  op o;
  pthread_t t = op_start(&o, f, kind, NULL, 0);
  for (int i = 0; i < 2000 && !atomic_load(&o.done); i++) th_sleep_ms(1);
  bool parked_forever = !atomic_load(&o.done);
  if (parked_forever) (void)np_close(f);
  th_join(t);
  if (parked_forever) fail_msg("np_wait on a descriptor closed behind the library parked");
  return (int)o.ret;
}

/* A readiness noted before the close (the initial EPOLLOUT) is consumed
 * without parking (a spurious wake-up, allowed); the next wait must fail. */
static int wait_fails(np_fd *f, int kind) {
  int ret = bounded_wait(f, kind);
  return ret == 0 ? bounded_wait(f, kind) : ret;
}

static void test_raw_close_number_reused(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int sp[2];
  th_socketpair(sp);
  np_fd *a;
  assert_int_equal(np_open(p, sp[0], &a), 0);
  assert_int_equal(close(sp[0]), 0);
  assert_int_equal(wait_fails(a, OP_WAIT_READ), -EBADF);
  assert_int_equal(wait_fails(a, OP_WAIT_WRITE), -EBADF);

  /* The number now names a pipe of the user's: waits still fail, and
   * np_close must neither deregister nor close that pipe. */
  int pp[2];
  th_pipe(pp);
  assert_int_equal(dup2(pp[0], sp[0]), sp[0]); /* the number names the pipe's read end */
  assert_int_equal(wait_fails(a, OP_WAIT_READ), -EBADF);
  assert_int_equal(np_close(a), -EBADF);
  assert_true(fcntl(sp[0], F_GETFD) >= 0); /* the user's pipe end is still open */
  assert_int_equal(write(pp[1], "ok", 2), 2);
  char buf[4];
  assert_int_equal(read(sp[0], buf, sizeof(buf)), 2);
  np_free(a);
  close(sp[0]);
  close(pp[0]);
  close(pp[1]);

  /* The number most likely names another poller's epoll or break
   * descriptor now (lowest free number); whatever it names, q must live. */
  th_socketpair(sp);
  assert_int_equal(np_open(p, sp[0], &a), 0);
  assert_int_equal(close(sp[0]), 0);
  np_poller *q = th_poller();
  assert_int_equal(np_close(a), -EBADF); /* q's descriptor is not closed */
  np_free(a);
  int qp[2];
  th_socketpair(qp);
  np_fd *qf;
  assert_int_equal(np_open(q, qp[0], &qf), 0);
  op r;
  pthread_t rt = op_start(&r, qf, OP_READ, buf, sizeof(buf));
  th_wait_parked(q, 1);
  assert_int_equal(write(qp[1], "hi", 2), 2);
  th_join(rt);
  assert_int_equal(r.ret, 2); /* q's poller thread is alive: no "epoll_wait failed" */
  np_poller_destroy(q);
  close(qp[1]);
  close(sp[1]);
  np_poller_destroy(p);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  if (getenv("NP_TEST_FILTER") != NULL) cmocka_set_test_filter(getenv("NP_TEST_FILTER"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_close_wakes_blocked),      cmocka_unit_test(test_close_wakes_blocked_pipe),
      cmocka_unit_test(test_close_races_reader),       cmocka_unit_test(test_use_after_close),
      cmocka_unit_test(test_destroy_wakes_blocked),    cmocka_unit_test(test_close_keeps_parked_count),
      cmocka_unit_test(test_raw_close_behind_back),    cmocka_unit_test(test_free_with_queued_readers),
      cmocka_unit_test(test_free_with_queued_writers), cmocka_unit_test(test_free_during_other_close),
      cmocka_unit_test(test_raw_close_number_reused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
