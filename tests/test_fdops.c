/* test_fdops.c - the descriptor operations (Go's internal/poll.FD on unix)
 * on real descriptors through the public API, with a poller thread: write
 * and writev loops, readv, zero-length i/o, EOF and EPIPE, accept (flags,
 * ECONNABORTED / EINTR retried), connect (success, refused, deadline), close
 * of a blocked accept, np_wait_read / np_wait_write, and many descriptors. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"
#include "syscalls.h"

/* ---- data pattern ---------------------------------------------------------
 * Byte i of stream `seed` is a function of (seed, i): a reader checks every
 * byte at its offset without keeping a copy. */
static uint8_t pat(uint32_t seed, size_t i) {
  uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 32;
  return (uint8_t)x;
}

static void pat_fill(uint32_t seed, size_t off, uint8_t *buf, size_t len) {
  for (size_t i = 0; i < len; i++) buf[i] = pat(seed, off + i);
}

/* Index of the first byte that differs from the pattern, or len. */
static size_t pat_check(uint32_t seed, size_t off, const uint8_t *buf, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (buf[i] != pat(seed, off + i)) return i;
  return len;
}

/* ---- sockets --------------------------------------------------------------*/

/* A TCP socket bound to 127.0.0.1, port chosen by the kernel; listening
 * when backlog >= 0. *addr receives the bound address. */
static int tcp_bound(int backlog, struct sockaddr_in *addr) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(s >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
  if (backlog >= 0) assert_int_equal(listen(s, backlog), 0);
  socklen_t len = sizeof(*addr);
  assert_int_equal(getsockname(s, (struct sockaddr *)addr, &len), 0);
  assert_int_equal(len, sizeof(*addr));
  return s;
}

/* A blocking client connected to addr (completes in the kernel backlog). */
static int tcp_client(const struct sockaddr_in *addr) {
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(c >= 0);
  assert_int_equal(connect(c, (const struct sockaddr *)addr, sizeof(*addr)), 0);
  return c;
}

static void read_full_raw(int fd, void *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, (char *)buf + got, len - got);
    assert_true(n > 0);
    got += (size_t)n;
  }
}

static void expect_parked_zero(np_poller *p) { th_wait_parked(p, 0); }

/* ---- 1. np_write loops until everything is written ------------------------ */

enum { BIG = 8 << 20 };

typedef struct drain_arg {
  np_fd *f;
  uint32_t seed;
  size_t want;
  size_t got;
  size_t bad_at; /* first wrong offset, or SIZE_MAX */
  int err;
  int slow; /* pause 1 ms every `slow` reads (0: never) */
} drain_arg;

static void *drain_thread(void *arg) {
  drain_arg *a = arg;
  /* Not thread-local: as a task this may resume on another thread. */
  uint8_t *buf = malloc(32768);
  assert_non_null(buf);
  a->bad_at = SIZE_MAX;
  int reads = 0;
  while (a->got < a->want) {
    ssize_t n = np_read(a->f, buf, 32768);
    if (n <= 0) {
      a->err = n == 0 ? -1 : (int)n;
      break;
    }
    size_t bad = pat_check(a->seed, a->got, buf, (size_t)n);
    if (bad != (size_t)n && a->bad_at == SIZE_MAX) a->bad_at = a->got + bad;
    a->got += (size_t)n;
    if (a->slow && ++reads % a->slow == 0) th_sleep_ms(1);
  }
  free(buf);
  return NULL;
}

static void test_write_loops_until_all_written(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  np_fd *f[2];
  th_socketpair(fds);
  th_open_pair(p, fds, f);
  uint8_t *data = malloc(BIG);
  assert_non_null(data);
  pat_fill(1, 0, data, BIG);

  drain_arg d = {.f = f[1], .seed = 1, .want = BIG, .slow = 4};
  pthread_t t = th_start(drain_thread, &d);
  size_t written = 0;
  assert_int_equal(np_write(f[0], data, BIG, &written), 0);
  assert_int_equal(written, BIG);
  th_join(t);
  assert_int_equal(d.err, 0);
  assert_int_equal(d.got, BIG);
  assert_true(d.bad_at == SIZE_MAX);
  /* Nothing more than was written arrives. */
  assert_int_equal(np_set_read_deadline(f[1], np_deadline_after(20 * MS)), 0);
  char c;
  assert_int_equal(np_read(f[1], &c, 1), NP_ETIMEOUT);
  free(data);
  expect_parked_zero(p);
  th_poller_destroy(p);
}

/* ---- 2. np_writev with many iovecs, np_readv ------------------------------ */

enum { NIOV = 300 };

typedef struct readv_arg {
  np_fd *f;
  uint32_t seed;
  size_t want, got;
  size_t bad_at;
  int err;
  int calls;
} readv_arg;

/* Reads with a scatter list of odd sizes (and empty entries). */
static void *readv_thread(void *arg) {
  readv_arg *a = arg;
  static const size_t sizes[] = {1, 0, 7, 4093, 0, 3, 65536, 12289};
  enum { NS = sizeof(sizes) / sizeof(sizes[0]) };
  uint8_t *bufs[NS];
  struct iovec iov[NS];
  size_t total = 0;
  for (int i = 0; i < NS; i++) {
    bufs[i] = sizes[i] ? malloc(sizes[i]) : NULL;
    iov[i].iov_base = bufs[i];
    iov[i].iov_len = sizes[i];
    total += sizes[i];
  }
  a->bad_at = SIZE_MAX;
  while (a->got < a->want) {
    ssize_t n = np_readv(a->f, iov, NS);
    a->calls++;
    if (n <= 0) {
      a->err = n == 0 ? -1 : (int)n;
      break;
    }
    if ((size_t)n > total) {
      a->err = -1000;
      break;
    }
    size_t left = (size_t)n;
    for (int i = 0; i < NS && left > 0; i++) {
      size_t k = left < sizes[i] ? left : sizes[i];
      size_t bad = pat_check(a->seed, a->got, bufs[i], k);
      if (bad != k && a->bad_at == SIZE_MAX) a->bad_at = a->got + bad;
      a->got += k;
      left -= k;
    }
    if (a->calls % 8 == 0) th_sleep_ms(1); /* a slow reader: the writer blocks */
  }
  for (int i = 0; i < NS; i++) free(bufs[i]);
  return NULL;
}

static void test_writev_many_iovecs(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  np_fd *f[2];
  th_socketpair(fds);
  th_open_pair(p, fds, f);

  /* 300 iovecs (> the 64-entry window), every 7th empty, odd sizes up to
   * 24 KiB: some 3 MiB, far beyond the socket buffer, so writev returns
   * short counts that end inside an iovec. */
  struct iovec iov[NIOV];
  size_t total = 0;
  uint8_t *data = malloc(NIOV * 24576);
  assert_non_null(data);
  for (int i = 0; i < NIOV; i++) {
    bool empty = i == 0 || i == NIOV - 1 || i % 7 == 3; /* leading, trailing, inner */
    size_t len = empty ? 0 : (size_t)(i * 7919) % 24576 + 1;
    iov[i].iov_base = len ? data + total : NULL;
    iov[i].iov_len = len;
    total += len;
  }
  pat_fill(2, 0, data, total);
  assert_true(total > (size_t)2 << 20);

  struct iovec copy[NIOV];
  memcpy(copy, iov, sizeof(iov));

  readv_arg r = {.f = f[1], .seed = 2, .want = total};
  pthread_t t = th_start(readv_thread, &r);
  size_t written = 0;
  assert_int_equal(np_writev(f[0], iov, NIOV, &written), 0);
  assert_int_equal(written, total);
  th_join(t);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.got, total);
  assert_true(r.bad_at == SIZE_MAX);
  assert_true(r.calls > 1);

  /* The caller's iovec array is not modified. */
  assert_memory_equal(copy, iov, sizeof(iov));

  /* Only empty entries, or none at all: 0, nothing written, no blocking. */
  struct iovec empty[5] = {{NULL, 0}, {data, 0}, {NULL, 0}, {data, 0}, {NULL, 0}};
  written = 99;
  assert_int_equal(np_writev(f[0], empty, 5, &written), 0);
  assert_int_equal(written, 0);
  written = 99;
  assert_int_equal(np_writev(f[0], empty, 0, &written), 0);
  assert_int_equal(written, 0);
  assert_int_equal(np_readv(f[1], empty, 5), 0);
  /* Invalid lists. */
  assert_int_equal(np_writev(f[0], iov, -1, &written), -EINVAL);
  struct iovec bad = {NULL, 5};
  assert_int_equal(np_writev(f[0], &bad, 1, &written), -EINVAL);
  assert_int_equal(np_readv(f[1], &bad, 1), -EINVAL);

  free(data);
  expect_parked_zero(p);
  th_poller_destroy(p);
}

/* ---- 3. zero-length i/o ---------------------------------------------------- */

static void test_zero_length_io(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  np_fd *f[2];
  th_socketpair(fds);
  th_open_pair(p, fds, f);
  char buf[4];
  /* A deadline bounds a wrongly blocking call: it would end NP_ETIMEOUT. */
  assert_int_equal(np_set_deadline(f[0], np_deadline_after(5000 * MS)), 0);
  assert_int_equal(np_read(f[0], buf, 0), 0);
  assert_int_equal(np_read(f[0], NULL, 0), 0);
  struct iovec iov = {buf, 0};
  assert_int_equal(np_readv(f[0], &iov, 1), 0);

  size_t written = 99;
  assert_int_equal(np_write(f[0], buf, 0, &written), 0);
  assert_int_equal(written, 0);
  /* Also with the send buffer full. */
  assert_true(th_fill(fds[0]) > 0);
  written = 99;
  assert_int_equal(np_write(f[0], buf, 0, &written), 0);
  assert_int_equal(written, 0);
  written = 99;
  assert_int_equal(np_write(f[0], NULL, 0, &written), 0);
  assert_int_equal(written, 0);

  /* Data pending does not change a zero-length read: it consumes nothing. */
  assert_int_equal(write(fds[1], "xyz", 3), 3);
  assert_int_equal(np_read(f[0], buf, 0), 0);
  assert_int_equal(np_read(f[0], buf, sizeof(buf)), 3);
  assert_memory_equal(buf, "xyz", 3);

  /* As Go's FD.Read: a zero-length read returns before the deadline check
   * (0 even with the read deadline passed); a write checks it first. */
  assert_int_equal(np_set_deadline(f[0], np_deadline_after(-1)), 0);
  assert_int_equal(np_read(f[0], buf, 0), 0);
  assert_int_equal(np_readv(f[0], &iov, 1), 0);
  assert_int_equal(np_read(f[0], buf, 1), NP_ETIMEOUT);
  written = 99;
  assert_int_equal(np_write(f[0], buf, 0, &written), NP_ETIMEOUT);
  assert_int_equal(written, 0);
  assert_int_equal(np_set_deadline(f[0], 0), 0);

  /* After close the handle check comes first. */
  assert_int_equal(np_close(f[0]), 0);
  assert_int_equal(np_read(f[0], buf, 0), NP_ECLOSING);
  assert_int_equal(np_write(f[0], buf, 0, &written), NP_ECLOSING);
  assert_int_equal(written, 0);
  expect_parked_zero(p);
  th_poller_destroy(p);
}

/* ---- 4. EOF and EPIPE ----------------------------------------------------- */

typedef struct read_arg {
  np_fd *f;
  char buf[64];
  atomic_long ret;
  atomic_int done;
} read_arg;

static void *read_once(void *arg) {
  read_arg *a = arg;
  atomic_store(&a->ret, (long)np_read(a->f, a->buf, sizeof(a->buf)));
  atomic_store(&a->done, 1);
  return NULL;
}

static void test_eof(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  np_fd *f[2];
  th_socketpair(fds);
  th_open_pair(p, fds, f);
  /* Data before EOF is delivered first. */
  size_t written = 0;
  assert_int_equal(np_write(f[1], "last", 4, &written), 0);
  assert_int_equal(np_close(f[1]), 0);
  char buf[16];
  assert_int_equal(np_read(f[0], buf, sizeof(buf)), 4);
  assert_memory_equal(buf, "last", 4);
  assert_int_equal(np_read(f[0], buf, sizeof(buf)), 0);
  assert_int_equal(np_read(f[0], buf, sizeof(buf)), 0); /* EOF stays */
  np_free(f[0]);
  np_free(f[1]);

  /* A reader blocked before the peer closes wakes with 0. */
  th_socketpair(fds);
  th_open_pair(p, fds, f);
  read_arg a = {.f = f[0], .ret = 12345};
  pthread_t t = th_start(read_once, &a);
  th_wait_parked(p, 1);
  assert_int_equal(atomic_load(&a.done), 0);
  assert_int_equal(np_close(f[1]), 0);
  th_join(t);
  assert_int_equal(atomic_load(&a.ret), 0);
  expect_parked_zero(p);
  th_poller_destroy(p);
}

typedef struct write_arg {
  np_fd *f;
  const void *buf;
  size_t len;
  size_t written;
  atomic_int ret;
  atomic_int done;
} write_arg;

static void *write_once(void *arg) {
  write_arg *a = arg;
  atomic_store(&a->ret, np_write(a->f, a->buf, a->len, &a->written));
  atomic_store(&a->done, 1);
  return NULL;
}

static void test_epipe(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  np_fd *f[2];
  th_socketpair(fds);
  th_open_pair(p, fds, f);
  assert_int_equal(np_close(f[1]), 0);
  size_t written = 99;
  assert_int_equal(np_write(f[0], "abc", 3, &written), -EPIPE);
  assert_int_equal(written, 0);
  struct iovec iov = {"abc", 3};
  written = 99;
  assert_int_equal(np_writev(f[0], &iov, 1, &written), -EPIPE);
  assert_int_equal(written, 0);
  np_free(f[0]);
  np_free(f[1]);

  /* A writer blocked part way: the peer closes; the error comes back with
   * the count of what went out (all of it is in the peer's receive queue,
   * since nobody read). */
  th_socketpair(fds);
  th_open_pair(p, fds, f);
  size_t len = 4 << 20;
  uint8_t *data = malloc(len);
  assert_non_null(data);
  pat_fill(4, 0, data, len);
  write_arg w = {.f = f[0], .buf = data, .len = len, .ret = 12345};
  pthread_t t = th_start(write_once, &w);
  th_wait_parked(p, 1);
  int queued = -1;
  assert_int_equal(ioctl(fds[1], FIONREAD, &queued), 0);
  assert_true(queued > 0);
  assert_int_equal(atomic_load(&w.done), 0);
  assert_int_equal(np_close(f[1]), 0);
  th_join(t);
  int ret = atomic_load(&w.ret);
  /* Unread data at close makes Linux report ECONNRESET once, else EPIPE. */
  if (ret != -EPIPE && ret != -ECONNRESET) fail_msg("blocked write returned %d (%s)", ret, np_strerror(ret));
  assert_int_equal(w.written, (size_t)queued);
  written = 99;
  assert_int_equal(np_write(f[0], data, 10, &written), -EPIPE);
  assert_int_equal(written, 0);
  free(data);
  expect_parked_zero(p);
  th_poller_destroy(p);
}

/* ---- 5. accept ------------------------------------------------------------- */

typedef struct accept_arg {
  np_fd *f;
  np_fd *out;
  struct sockaddr_in addr;
  socklen_t addrlen;
  atomic_int ret;
  atomic_int done;
} accept_arg;

static void *accept_once(void *arg) {
  accept_arg *a = arg;
  a->addrlen = sizeof(a->addr);
  atomic_store(&a->ret, np_accept(a->f, &a->out, (struct sockaddr *)&a->addr, &a->addrlen));
  atomic_store(&a->done, 1);
  return NULL;
}

/* The accepted handle is non-blocking, close-on-exec, registered, and the
 * peer address is the client's. */
static void check_accepted(np_poller *p, accept_arg *a, int client) {
  assert_int_equal(atomic_load(&a->ret), 0);
  assert_non_null(a->out);
  int s = np_sysfd(a->out);
  assert_true(s >= 0);
  assert_true(fcntl(s, F_GETFL) & O_NONBLOCK);
  assert_true(fcntl(s, F_GETFD) & FD_CLOEXEC);

  struct sockaddr_in local;
  socklen_t len = sizeof(local);
  assert_int_equal(getsockname(client, (struct sockaddr *)&local, &len), 0);
  assert_int_equal(a->addrlen, sizeof(struct sockaddr_in));
  assert_int_equal(a->addr.sin_family, AF_INET);
  assert_int_equal(a->addr.sin_port, local.sin_port);
  assert_int_equal(a->addr.sin_addr.s_addr, htonl(INADDR_LOOPBACK));

  /* Registered: a blocking np_read is woken by the poller. */
  read_arg r = {.f = a->out};
  pthread_t t = th_start(read_once, &r);
  th_wait_parked(p, 1);
  assert_int_equal(write(client, "ping", 4), 4);
  th_join(t);
  assert_int_equal(atomic_load(&r.ret), 4);
  assert_memory_equal(r.buf, "ping", 4);
  size_t written = 0;
  assert_int_equal(np_write(a->out, "pong", 4, &written), 0);
  char buf[4];
  read_full_raw(client, buf, 4);
  assert_memory_equal(buf, "pong", 4);
}

static void test_accept(void **state) {
  (void)state;
  np_poller *p = th_poller();
  struct sockaddr_in addr;
  int ls = tcp_bound(16, &addr);
  np_fd *l;
  assert_int_equal(np_open(p, ls, &l), 0);
  accept_arg a = {.f = l, .ret = 12345};
  pthread_t t = th_start(accept_once, &a);
  th_wait_parked(p, 1); /* blocked: nobody has connected */
  assert_int_equal(atomic_load(&a.done), 0);
  int c = tcp_client(&addr);
  th_join(t);
  check_accepted(p, &a, c);
  np_stats s;
  np_poller_stats(p, &s);
  assert_int_equal(s.fds_open, 2);

  /* A connection already pending is accepted without blocking; addr may
   * be NULL. */
  int c2 = tcp_client(&addr);
  np_fd *a2 = NULL;
  assert_int_equal(np_accept(l, &a2, NULL, NULL), 0);
  assert_non_null(a2);
  assert_int_equal(write(c2, "x", 1), 1);
  char ch;
  assert_int_equal(np_read(a2, &ch, 1), 1);
  assert_int_equal(ch, 'x');
  close(c);
  close(c2);
  expect_parked_zero(p);
  th_poller_destroy(p); /* frees l, a.out, a2 */
}

/* A write to a socket whose peer is gone gives EPIPE and raises no SIGPIPE
 * (Go's behaviour: the library writes sockets with send and MSG_NOSIGNAL),
 * whether it fails at once or while parked, on a socket pair (test_epipe's
 * cases, run again under the counting handler) and on a TCP connection the
 * library made. A pipe is write(2)'s:
 * EPIPE and SIGPIPE, as documented. The counting handler replaces SIG_IGN
 * for the test, so a SIGPIPE that would kill a program is seen. */
static atomic_int sigpipes;
static void count_sigpipe(int sig) {
  (void)sig;
  atomic_fetch_add(&sigpipes, 1);
}

static int tcp_write_until_error(np_fd *c) {
  static const char chunk[4096];
  for (int i = 0; i < 1000; i++) {
    size_t w;
    int err = np_write(c, chunk, sizeof(chunk), &w);
    if (err != 0) return err;
    usleep(1000); /* let the peer's RST arrive */
  }
  return 0;
}

static void no_sigpipe_tcp(np_poller *p) {
  np_fd *ln, *c, *s;
  char addr[NP_ADDRSTRLEN];
  assert_int_equal(np_listen(p, "tcp", "127.0.0.1:0", &ln), 0);
  assert_int_equal(np_local_addr(ln, addr, sizeof(addr)), 0);
  assert_int_equal(np_dial(p, "tcp", addr, np_deadline_after(5000 * MS), &c), 0);
  assert_int_equal(np_accept(ln, &s, NULL, NULL), 0);
  assert_int_equal(np_close(s), 0);
  int err = tcp_write_until_error(c);
  if (err != -EPIPE && err != -ECONNRESET)
    fail_msg("write after the peer's close: %d (%s)", err, np_strerror(err));
  assert_int_equal(tcp_write_until_error(c), -EPIPE);
  np_free(s);
  np_free(c);
  np_free(ln);
}

static void test_write_no_sigpipe(void **state) {
  struct sigaction sa = {.sa_handler = count_sigpipe}, old;
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGPIPE, &sa, &old), 0);
  atomic_store(&sigpipes, 0);
  test_epipe(state); /* a socket pair: at once, np_writev, and a parked writer */
  np_poller *p = th_poller();
  no_sigpipe_tcp(p);
  assert_int_equal(atomic_load(&sigpipes), 0);

  int fds[2];
  np_fd *f[2];
  size_t written;
  struct iovec iov[2] = {{"ab", 2}, {"c", 1}};
  th_pipe(fds);
  th_open_pair(p, fds, f); /* f[0] the read end, f[1] the write end */
  assert_int_equal(np_close(f[0]), 0);
  assert_int_equal(np_write(f[1], "abc", 3, &written), -EPIPE);
  assert_int_equal(np_writev(f[1], iov, 2, &written), -EPIPE);
  assert_int_equal(atomic_load(&sigpipes), 2);
  np_free(f[0]);
  np_free(f[1]);
  expect_parked_zero(p);
  th_poller_destroy(p);
  assert_int_equal(sigaction(SIGPIPE, &old, NULL), 0);
}

/* Fault injection through np__sys. The table is written only while no
 * poller thread exists (before creating, after destroying the poller); the
 * fakes themselves are armed through atomics and pass every other call and
 * descriptor through to the real system call. */
static atomic_int inj_fd = -1;
static atomic_int inj_left;  /* failures still to inject */
static atomic_int inj_calls; /* calls on inj_fd seen by the fake */
static atomic_int inj_err;

static bool inject_now(int fd) {
  if (fd != atomic_load(&inj_fd)) return false;
  atomic_fetch_add(&inj_calls, 1);
  int left = atomic_load(&inj_left);
  while (left > 0)
    if (atomic_compare_exchange_weak(&inj_left, &left, left - 1)) return true;
  return false;
}

static void inject_arm(int fd, int err, int count) {
  atomic_store(&inj_calls, 0);
  atomic_store(&inj_err, err);
  atomic_store(&inj_left, count);
  atomic_store(&inj_fd, fd);
}

static void inject_disarm(void) { atomic_store(&inj_fd, -1); }

/* setup / teardown of the injecting tests: the real table comes back even
 * when an assertion ends the test early. */
static np__syscalls saved_sys;
static int save_sys(void **state) {
  (void)state;
  saved_sys = np__sys;
  return 0;
}
static int restore_sys(void **state) {
  (void)state;
  inject_disarm();
  np__sys = saved_sys;
  return 0;
}

static int fake_accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags) {
  if (inject_now(fd)) {
    errno = atomic_load(&inj_err);
    return -1;
  }
  return accept4(fd, addr, addrlen, flags);
}

static ssize_t fake_read(int fd, void *buf, size_t len) {
  if (inject_now(fd)) {
    errno = atomic_load(&inj_err);
    return -1;
  }
  return read(fd, buf, len);
}

/* Writes to a socket are send(MSG_NOSIGNAL) calls. */
static ssize_t fake_send(int fd, const void *buf, size_t len, int flags) {
  if (inject_now(fd)) {
    errno = atomic_load(&inj_err);
    return -1;
  }
  return send(fd, buf, len, flags);
}

static void test_accept_retries_econnaborted(void **state) {
  (void)state;
  np__sys.accept4 = fake_accept4;
  np_poller *p = th_poller();
  struct sockaddr_in addr;
  int ls = tcp_bound(16, &addr);
  np_fd *l;
  assert_int_equal(np_open(p, ls, &l), 0);

  /* A connection is pending; the first accept4 says ECONNABORTED (the
   * client gave up), np_accept tries again and gets the real one. */
  int c = tcp_client(&addr);
  inject_arm(ls, ECONNABORTED, 1);
  np_fd *a = NULL;
  assert_int_equal(np_accept(l, &a, NULL, NULL), 0);
  assert_non_null(a);
  assert_int_equal(atomic_load(&inj_left), 0);
  assert_int_equal(atomic_load(&inj_calls), 2);
  close(c);

  /* Nothing pending: ECONNABORTED, then EINTR, then EAGAIN parks; a later
   * client is accepted. */
  inject_arm(ls, ECONNABORTED, 1);
  accept_arg aa = {.f = l, .ret = 12345};
  pthread_t t = th_start(accept_once, &aa);
  th_wait_parked(p, 1);
  assert_int_equal(atomic_load(&inj_left), 0);
  assert_int_equal(atomic_load(&aa.done), 0);
  c = tcp_client(&addr);
  th_join(t);
  check_accepted(p, &aa, c);
  close(c);

  inject_arm(ls, EINTR, 3);
  c = tcp_client(&addr);
  assert_int_equal(np_accept(l, &a, NULL, NULL), 0);
  assert_int_equal(atomic_load(&inj_calls), 4);
  close(c);

  /* Any other error is returned as is, and the listener still works. */
  inject_arm(ls, EMFILE, 1);
  assert_int_equal(np_accept(l, &a, NULL, NULL), -EMFILE);
  assert_null(a);
  inject_disarm();
  c = tcp_client(&addr);
  assert_int_equal(np_accept(l, &a, NULL, NULL), 0);
  close(c);

  expect_parked_zero(p);
  th_poller_destroy(p);
}

static void test_read_write_retry_eintr(void **state) {
  (void)state;
  np__sys.read = fake_read;
  np__sys.send = fake_send;
  np_poller *p = th_poller();
  int fds[2];
  np_fd *f[2];
  th_socketpair(fds);
  th_open_pair(p, fds, f);

  /* Data ready: the first read is interrupted, the retry reads it. */
  assert_int_equal(write(fds[1], "abc", 3), 3);
  inject_arm(fds[0], EINTR, 1);
  char buf[16];
  assert_int_equal(np_read(f[0], buf, sizeof(buf)), 3);
  assert_memory_equal(buf, "abc", 3);
  assert_int_equal(atomic_load(&inj_left), 0);
  assert_int_equal(atomic_load(&inj_calls), 2);

  /* A reader woken by readiness is interrupted on its retry: retried again. */
  read_arg r = {.f = f[0]};
  pthread_t t = th_start(read_once, &r);
  th_wait_parked(p, 1);
  inject_arm(fds[0], EINTR, 2);
  assert_int_equal(write(fds[1], "defg", 4), 4);
  th_join(t);
  assert_int_equal(atomic_load(&r.ret), 4);
  assert_memory_equal(r.buf, "defg", 4);
  assert_int_equal(atomic_load(&inj_left), 0);

  /* Write: interrupted twice, then everything goes out once. */
  inject_arm(fds[0], EINTR, 2);
  size_t written = 0;
  assert_int_equal(np_write(f[0], "hello", 5, &written), 0);
  assert_int_equal(written, 5);
  assert_int_equal(atomic_load(&inj_calls), 3);
  inject_disarm();
  read_full_raw(fds[1], buf, 5);
  assert_memory_equal(buf, "hello", 5);

  /* A write blocked on a full buffer, interrupted after the wake-up. */
  size_t filled = th_fill(fds[0]);
  assert_true(filled > 0);
  write_arg w = {.f = f[0], .buf = "tail", .len = 4};
  t = th_start(write_once, &w);
  th_wait_parked(p, 1);
  inject_arm(fds[0], EINTR, 1);
  uint8_t *sink = malloc(filled);
  assert_non_null(sink);
  read_full_raw(fds[1], sink, filled);
  th_join(t);
  assert_int_equal(atomic_load(&w.ret), 0);
  assert_int_equal(w.written, 4);
  assert_int_equal(atomic_load(&inj_left), 0);
  inject_disarm();
  read_full_raw(fds[1], buf, 4);
  assert_memory_equal(buf, "tail", 4);
  free(sink);

  expect_parked_zero(p);
  th_poller_destroy(p);
}

/* ---- 6. connect ------------------------------------------------------------ */

static np_fd *tcp_socket_open(np_poller *p) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(s >= 0);
  np_fd *f = NULL;
  assert_int_equal(np_open(p, s, &f), 0);
  return f;
}

static void test_connect(void **state) {
  (void)state;
  np_poller *p = th_poller();
  struct sockaddr_in addr;
  int ls = tcp_bound(16, &addr);

  np_fd *c = tcp_socket_open(p);
  assert_int_equal(np_connect(c, (struct sockaddr *)&addr, sizeof(addr)), 0);
  int srv = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
  assert_true(srv >= 0);
  size_t written = 0;
  assert_int_equal(np_write(c, "hi", 2, &written), 0);
  char buf[2];
  read_full_raw(srv, buf, 2);
  assert_memory_equal(buf, "hi", 2);
  assert_int_equal(write(srv, "yo", 2), 2);
  assert_int_equal(np_read(c, buf, 2), 2);
  assert_memory_equal(buf, "yo", 2);
  close(srv);

  /* A port bound (so nobody else can listen on it) but not listening. */
  struct sockaddr_in closed_addr;
  int bound = tcp_bound(-1, &closed_addr);
  np_fd *c2 = tcp_socket_open(p);
  assert_int_equal(np_connect(c2, (struct sockaddr *)&closed_addr, sizeof(closed_addr)), -ECONNREFUSED);

  /* A write deadline already passed: NP_ETIMEOUT, even to a listener. */
  np_fd *c3 = tcp_socket_open(p);
  assert_int_equal(np_set_write_deadline(c3, np_deadline_after(-1)), 0);
  assert_int_equal(np_connect(c3, (struct sockaddr *)&addr, sizeof(addr)), NP_ETIMEOUT);

  /* Closed handle. */
  np_fd *c4 = tcp_socket_open(p);
  assert_int_equal(np_close(c4), 0);
  assert_int_equal(np_connect(c4, (struct sockaddr *)&addr, sizeof(addr)), NP_ECLOSING);

  close(bound);
  close(ls);
  expect_parked_zero(p);
  th_poller_destroy(p);
}

/* A connect that really waits (the listener's accept queue is full, so the
 * SYN is dropped) ends at its write deadline. */
static void test_connect_deadline_while_waiting(void **state) {
  (void)state;
  np_poller *p = th_poller();
  struct sockaddr_in addr;
  int ls = tcp_bound(0, &addr);
  /* Fill the accept queue: non-blocking clients until one stays pending
   * (backlog 0 admits one connection; more if the kernel rounds up). */
  int fillers[8];
  int nfill = 0;
  bool pending = false;
  while (nfill < 8 && !pending) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(s >= 0);
    fillers[nfill++] = s;
    int r = connect(s, (struct sockaddr *)&addr, sizeof(addr));
    if (r == 0) continue;
    assert_int_equal(errno, EINPROGRESS);
    /* The first must connect; later ones are pending if still unconnected
     * after 200 ms (a loopback handshake takes microseconds). */
    struct pollfd pfd = {.fd = s, .events = POLLOUT};
    int ready = poll(&pfd, 1, nfill == 1 ? 5000 : 200);
    assert_true(ready >= 0);
    if (nfill == 1) assert_int_equal(ready, 1);
    pending = ready == 0;
  }
  if (!pending) {
    /* the kernel admitted more than expected: nothing to test here */
    for (int i = 0; i < nfill; i++) close(fillers[i]);
    close(ls);
    th_poller_destroy(p);
    skip();
  }
  np_fd *c = tcp_socket_open(p);
  int64_t start = np_now();
  assert_int_equal(np_set_write_deadline(c, np_deadline_after(200 * MS)), 0);
  assert_int_equal(np_connect(c, (struct sockaddr *)&addr, sizeof(addr)), NP_ETIMEOUT);
  assert_true(np_now() - start >= 150 * MS);
  for (int i = 0; i < nfill; i++) close(fillers[i]);
  close(ls);
  expect_parked_zero(p);
  th_poller_destroy(p);
}

/* ---- 7. close of a blocked accept ----------------------------------------- */

static void test_accept_close_unblocks(void **state) {
  (void)state;
  np_poller *p = th_poller();
  struct sockaddr_in addr;
  int ls = tcp_bound(16, &addr);
  np_fd *l;
  assert_int_equal(np_open(p, ls, &l), 0);
  accept_arg a = {.f = l, .ret = 12345};
  pthread_t t = th_start(accept_once, &a);
  th_wait_parked(p, 1);
  assert_int_equal(atomic_load(&a.done), 0);
  assert_int_equal(np_close(l), 0);
  th_join(t);
  assert_int_equal(atomic_load(&a.ret), NP_ECLOSING);
  assert_null(a.out);
  np_fd *out = NULL;
  assert_int_equal(np_accept(l, &out, NULL, NULL), NP_ECLOSING);
  assert_null(out);
  assert_int_equal(np_sysfd(l), -1);
  assert_int_equal(np_close(l), NP_ECLOSING);
  /* The descriptor really is closed: the port refuses connections. */
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(s >= 0);
  assert_int_equal(connect(s, (struct sockaddr *)&addr, sizeof(addr)), -1);
  assert_int_equal(errno, ECONNREFUSED);
  close(s);
  np_stats st;
  np_poller_stats(p, &st);
  assert_int_equal(st.fds_open, 0);
  np_free(l);
  expect_parked_zero(p);
  th_poller_destroy(p);
}

/* ---- 8. np_wait_read / np_wait_write --------------------------------------- */

typedef struct wait_arg {
  np_fd *f;
  atomic_int ret;
  atomic_int done;
} wait_arg;

static void *wait_read_once(void *arg) {
  wait_arg *a = arg;
  atomic_store(&a->ret, np_wait_read(a->f));
  atomic_store(&a->done, 1);
  return NULL;
}

static void test_wait_read_write(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  np_fd *f[2];
  th_socketpair(fds);
  th_open_pair(p, fds, f);
  /* A bound: a wrongly blocking wait would end NP_ETIMEOUT, not 0. */
  assert_int_equal(np_set_write_deadline(f[0], np_deadline_after(5000 * MS)), 0);
  assert_int_equal(np_wait_write(f[0]), 0);

  wait_arg a = {.f = f[0], .ret = 12345};
  pthread_t t = th_start(wait_read_once, &a);
  th_wait_parked(p, 1);
  assert_int_equal(atomic_load(&a.done), 0);
  assert_int_equal(write(fds[1], "q", 1), 1);
  th_join(t);
  assert_int_equal(atomic_load(&a.ret), 0);
  /* The wait consumed nothing: the data is there. */
  char c;
  assert_int_equal(np_read(f[0], &c, 1), 1);
  assert_int_equal(c, 'q');

  /* Deadline and close end a wait too. */
  assert_int_equal(np_set_read_deadline(f[0], np_deadline_after(30 * MS)), 0);
  assert_int_equal(np_wait_read(f[0]), NP_ETIMEOUT);
  assert_int_equal(np_set_read_deadline(f[0], 0), 0);
  wait_arg b = {.f = f[0], .ret = 12345};
  t = th_start(wait_read_once, &b);
  th_wait_parked(p, 1);
  assert_int_equal(np_close(f[0]), 0);
  th_join(t);
  assert_int_equal(atomic_load(&b.ret), NP_ECLOSING);
  assert_int_equal(np_wait_write(f[0]), NP_ECLOSING);
  expect_parked_zero(p);
  th_poller_destroy(p);
}

/* ---- 9. many descriptors on one poller ----------------------------------- */

enum { NPAIRS = 500, NSERVE = 4, ROUNDS = 2 };

typedef struct many_shared {
  np_fd *w[NPAIRS]; /* write ends */
  np_fd *r[NPAIRS]; /* read ends */
  atomic_int errors;
  atomic_llong bytes_written, bytes_read;
} many_shared;

typedef struct many_arg {
  many_shared *s;
  int index; /* serves pairs index, index + NSERVE, ... in order */
} many_arg;

/* Message of pair i, round k: its size is chosen so that some exceed the
 * socket buffer (the writer blocks until the reader catches up). */
static size_t msg_len(int i, int k) {
  size_t span = i % 10 == 0 ? 300000 : 4096;
  return (size_t)(i * 7919 + k * 104729) % span + 1;
}
static uint32_t msg_seed(int i, int k) { return (uint32_t)(i * 31 + k + 100); }

static void *many_writer(void *arg) {
  many_arg *a = arg;
  many_shared *s = a->s;
  uint8_t *buf = malloc(300001);
  for (int k = 0; k < ROUNDS; k++)
    for (int i = a->index; i < NPAIRS; i += NSERVE) {
      size_t len = msg_len(i, k), written = 0;
      pat_fill(msg_seed(i, k), 0, buf, len);
      if (np_write(s->w[i], buf, len, &written) != 0 || written != len) atomic_fetch_add(&s->errors, 1);
      atomic_fetch_add(&s->bytes_written, (long long)written);
    }
  free(buf);
  return NULL;
}

static void *many_reader(void *arg) {
  many_arg *a = arg;
  many_shared *s = a->s;
  uint8_t *buf = malloc(65536);
  for (int k = 0; k < ROUNDS; k++)
    for (int i = a->index; i < NPAIRS; i += NSERVE) {
      size_t len = msg_len(i, k), got = 0;
      while (got < len) {
        size_t want = len - got < 65536 ? len - got : 65536;
        ssize_t n = np_read(s->r[i], buf, want);
        if (n <= 0) {
          atomic_fetch_add(&s->errors, 1);
          goto out;
        }
        if (pat_check(msg_seed(i, k), got, buf, (size_t)n) != (size_t)n) atomic_fetch_add(&s->errors, 1);
        got += (size_t)n;
      }
      atomic_fetch_add(&s->bytes_read, (long long)got);
    }
out:
  free(buf);
  return NULL;
}

static void test_many_fds(void **state) {
  (void)state;
  struct rlimit rl;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < 2 * NPAIRS + 64) {
    if (rl.rlim_max < 2 * NPAIRS + 64) skip();
    rl.rlim_cur = 2 * NPAIRS + 64;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  np_poller *p = th_poller();
  many_shared *s = calloc(1, sizeof(*s));
  assert_non_null(s);
  for (int i = 0; i < NPAIRS; i++) {
    int fds[2];
    np_fd *f[2];
    th_socketpair(fds);
    th_open_pair(p, fds, f);
    s->w[i] = f[0];
    s->r[i] = f[1];
  }
  np_stats st;
  np_poller_stats(p, &st);
  assert_int_equal(st.fds_open, 2 * NPAIRS);

  many_arg args[NSERVE];
  pthread_t tw[NSERVE], tr[NSERVE];
  for (int j = 0; j < NSERVE; j++) {
    args[j] = (many_arg){.s = s, .index = j};
    tr[j] = th_start(many_reader, &args[j]);
    tw[j] = th_start(many_writer, &args[j]);
  }
  for (int j = 0; j < NSERVE; j++) {
    th_join(tw[j]);
    th_join(tr[j]);
  }
  assert_int_equal(atomic_load(&s->errors), 0);
  long long expect = 0;
  for (int k = 0; k < ROUNDS; k++)
    for (int i = 0; i < NPAIRS; i++) expect += (long long)msg_len(i, k);
  assert_int_equal(atomic_load(&s->bytes_written), expect);
  assert_int_equal(atomic_load(&s->bytes_read), expect);

  /* Nothing left over anywhere. */
  for (int i = 0; i < NPAIRS; i++) {
    int n = -1;
    assert_int_equal(ioctl(np_sysfd(s->r[i]), FIONREAD, &n), 0);
    assert_int_equal(n, 0);
  }
  expect_parked_zero(p);
  th_poller_destroy(p);
  free(s);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_write_loops_until_all_written),
      cmocka_unit_test(test_writev_many_iovecs),
      cmocka_unit_test(test_zero_length_io),
      cmocka_unit_test(test_eof),
      cmocka_unit_test(test_epipe),
      cmocka_unit_test(test_write_no_sigpipe),
      cmocka_unit_test(test_accept),
      cmocka_unit_test_setup_teardown(test_accept_retries_econnaborted, save_sys, restore_sys),
      cmocka_unit_test_setup_teardown(test_read_write_retry_eintr, save_sys, restore_sys),
      cmocka_unit_test(test_connect),
      cmocka_unit_test(test_connect_deadline_while_waiting),
      cmocka_unit_test(test_accept_close_unblocks),
      cmocka_unit_test(test_wait_read_write),
      cmocka_unit_test(test_many_fds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
