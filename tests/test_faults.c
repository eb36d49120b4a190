/* test_faults.c - fault injection against the real kernel.
 *
 * Every system call of the epoll backend goes through the np__sys table
 * (netpoll/src/syscalls.h). This file replaces each entry with a wrapper that
 * counts calls and can make the Nth matching call (or every k-th from the Nth)
 * fail with a chosen errno, on a real epoll instance with real sockets. The
 * tests check, one syscall and one errno at a time, that the library does what
 * netpoll.h documents: EINTR is retried (read, write, accept, blocking
 * epoll_wait) or reported as "no events" (timed epoll_wait); a spurious EAGAIN
 * parks and the operation completes once real readiness arrives, losing and
 * duplicating nothing (the byte stream is checked); every other errno comes
 * back from the API call that made the syscall as -errno, with no descriptor,
 * handle or pollDesc leaked; errors of the poller's own descriptors put the
 * poller in the failed state (NP_EPOLLER to every waiter). A sweep then runs a small complete workload
 * (create, listen/connect/accept on TCP loopback, a read deadline, 64 KiB through np_write / np_writev /
 * np_read / np_readv, close, destroy) failing the Nth call of each syscall for every N the workload reaches,
 * for EINTR, EAGAIN, EMFILE, ENOMEM and EBADF, and checks every run ends cleanly and in bounded time.
 *
 * The wrappers stay installed from each test's setup to its teardown (no
 * poller runs at either point: syscalls.h allows writing the table only then);
 * rules are atomics, so tests may arm them while a poller runs. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "syscalls.h"

/* ---- the injector ----------------------------------------------------------- */

enum {
  SC_EPOLL_CREATE1,
  SC_EPOLL_CTL,
  SC_EPOLL_WAIT,
  SC_EVENTFD,
  SC_READ,
  SC_READV,
  SC_WRITE,
  SC_WRITEV,
  SC_ACCEPT4,
  SC_CONNECT,
  SC_GETSOCKOPT,
  SC_GETPEERNAME,
  SC_FCNTL_GETFL,
  SC_FCNTL_SETFL,
  SC_CLOSE,
  SC_COUNT
};

static const char *const sc_name[SC_COUNT] = {
    "epoll_create1", "epoll_ctl",   "epoll_wait",  "eventfd",     "read",
    "readv",         "write",       "writev",      "accept4",     "connect",
    "getsockopt",    "getpeername", "fcntl_getfl", "fcntl_setfl", "close",
};

/* Which descriptors a rule looks at. The poller's own epoll and eventfd
 * descriptors are "internal": their failures are fatal or ignored by design,
 * so the user-level tests leave them out. */
enum { SEL_ANY, SEL_FD, SEL_USER, SEL_BREAK };
/* Which threads: test threads mark themselves; the poller thread never does. */
enum { SCOPE_ANY, SCOPE_MARKED, SCOPE_UNMARKED };

typedef struct fault_spec {
  long nth;       /* first failing matching call, 1-based; 0: never fail (count only) */
  long count;     /* how many calls fail; 0 means 1 */
  long every;     /* fail every k-th matching call from nth on; 0 means 1 */
  int err;        /* errno to fail with */
  int sel;        /* SEL_* */
  int fd;         /* for SEL_FD */
  int scope;      /* SCOPE_* */
  int op;         /* epoll_ctl only: EPOLL_CTL_ADD/DEL/MOD, 0 any */
  bool call_real; /* connect only: make the real call, then report err (close always does) */
} fault_spec;

typedef struct fault_rule {
  atomic_long nth, count, every;
  atomic_int err, sel, fd, scope, op, call_real;
  atomic_long calls, fired;
  atomic_int fired_fd, fired_op;
} fault_rule;

static fault_rule g_rules[SC_COUNT];
static np__syscalls g_real;
static _Thread_local bool t_marked;

/* The poller's own descriptors, recorded by the wrappers as they are made. */
#define INTERNAL_MAX 16
static atomic_int g_internal[INTERNAL_MAX];

static void internal_add(int fd) {
  for (int i = 0; i < INTERNAL_MAX; i++) {
    int expect = -1;
    if (atomic_compare_exchange_strong(&g_internal[i], &expect, fd)) return;
  }
}
static void internal_forget(int fd) {
  for (int i = 0; i < INTERNAL_MAX; i++) {
    int expect = fd;
    atomic_compare_exchange_strong(&g_internal[i], &expect, -1);
  }
}
/* The pollers' breaks (a poller has one per scheduler). */
static atomic_int g_eventfds[INTERNAL_MAX] = {[0 ... INTERNAL_MAX - 1] = -1};
static bool is_break(int fd) {
  for (int i = 0; i < INTERNAL_MAX && fd >= 0; i++)
    if (atomic_load(&g_eventfds[i]) == fd) return true;
  return false;
}
static void break_add(int fd) {
  for (int i = 0; i < INTERNAL_MAX; i++) {
    int expect = -1;
    if (atomic_compare_exchange_strong(&g_eventfds[i], &expect, fd)) return;
  }
}
static bool is_internal(int fd) {
  for (int i = 0; i < INTERNAL_MAX; i++)
    if (atomic_load(&g_internal[i]) == fd) return true;
  return false;
}

static void fault_arm(int which, fault_spec s) {
  fault_rule *r = &g_rules[which];
  atomic_store(&r->nth, 0); /* disarmed while the rule changes */
  atomic_store(&r->count, s.count > 0 ? s.count : 1);
  atomic_store(&r->every, s.every > 0 ? s.every : 1);
  atomic_store(&r->err, s.err);
  atomic_store(&r->sel, s.sel);
  atomic_store(&r->fd, s.fd);
  atomic_store(&r->scope, s.scope);
  atomic_store(&r->op, s.op);
  atomic_store(&r->call_real, s.call_real);
  atomic_store(&r->calls, 0);
  atomic_store(&r->fired, 0);
  atomic_store(&r->fired_fd, -1);
  atomic_store(&r->fired_op, 0);
  atomic_store(&r->nth, s.nth);
}

/* Count matching calls without failing any. */
static void fault_watch(int which, int sel, int fd, int scope) {
  fault_arm(which, (fault_spec){.sel = sel, .fd = fd, .scope = scope});
}
static void fault_nth(int which, long nth, int err, int sel, int fd) {
  fault_arm(which, (fault_spec){.nth = nth, .err = err, .sel = sel, .fd = fd, .scope = SCOPE_ANY});
}
static void fault_clear_all(void) {
  for (int i = 0; i < SC_COUNT; i++) fault_arm(i, (fault_spec){0});
}
static long fault_calls(int which) { return atomic_load(&g_rules[which].calls); }
static long fault_fired(int which) { return atomic_load(&g_rules[which].fired); }

/* The errno to fail this call with, or 0 to let it through. */
static int fault_check(int which, int fd, int op) {
  fault_rule *r = &g_rules[which];
  int scope = atomic_load(&r->scope);
  if (scope == SCOPE_MARKED && !t_marked) return 0;
  if (scope == SCOPE_UNMARKED && t_marked) return 0;
  switch (atomic_load(&r->sel)) {
    case SEL_FD:
      if (fd != atomic_load(&r->fd)) return 0;
      break;
    case SEL_USER:
      if (is_internal(fd)) return 0;
      break;
    case SEL_BREAK:
      if (!is_break(fd)) return 0;
      break;
    default: break;
  }
  int want_op = atomic_load(&r->op);
  if (want_op != 0 && op != want_op) return 0;
  long k = atomic_fetch_add(&r->calls, 1) + 1;
  long nth = atomic_load(&r->nth);
  if (nth <= 0 || k < nth) return 0;
  long every = atomic_load(&r->every);
  if ((k - nth) % every != 0 || (k - nth) / every >= atomic_load(&r->count)) return 0;
  atomic_fetch_add(&r->fired, 1);
  atomic_store(&r->fired_fd, fd);
  atomic_store(&r->fired_op, op);
  return atomic_load(&r->err);
}

/* A rule's err FAULT_ZERO makes the call return 0 instead of failing (a
 * stream write never does: the library must say -EIO, as Go, not loop). */
#define FAULT_ZERO 0x10000
#define FAIL_WITH(e)                 \
  do {                               \
    if ((e) == FAULT_ZERO) return 0; \
    errno = (e);                     \
    return -1;                       \
  } while (0)

static int w_epoll_create1(int flags) {
  int e = fault_check(SC_EPOLL_CREATE1, -1, 0);
  if (e) FAIL_WITH(e);
  int fd = g_real.epoll_create1(flags);
  if (fd >= 0) {
    internal_add(fd);
  }
  return fd;
}
static int w_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  int e = fault_check(SC_EPOLL_CTL, fd, op);
  if (e) FAIL_WITH(e);
  return g_real.epoll_ctl(epfd, op, fd, ev);
}
static int w_epoll_wait(int epfd, struct epoll_event *events, int max, int timeout_ms) {
  int e = fault_check(SC_EPOLL_WAIT, epfd, 0);
  if (e) FAIL_WITH(e);
  return g_real.epoll_wait(epfd, events, max, timeout_ms);
}
static int w_eventfd(unsigned int initval, int flags) {
  int e = fault_check(SC_EVENTFD, -1, 0);
  if (e) FAIL_WITH(e);
  int fd = g_real.eventfd(initval, flags);
  if (fd >= 0) {
    internal_add(fd);
    break_add(fd);
  }
  return fd;
}
static ssize_t w_read(int fd, void *buf, size_t len) {
  int e = fault_check(SC_READ, fd, 0);
  if (e) FAIL_WITH(e);
  return g_real.read(fd, buf, len);
}
static ssize_t w_readv(int fd, const struct iovec *iov, int iovcnt) {
  int e = fault_check(SC_READV, fd, 0);
  if (e) FAIL_WITH(e);
  return g_real.readv(fd, iov, iovcnt);
}
static ssize_t w_write(int fd, const void *buf, size_t len) {
  int e = fault_check(SC_WRITE, fd, 0);
  if (e) FAIL_WITH(e);
  return g_real.write(fd, buf, len);
}
static ssize_t w_writev(int fd, const struct iovec *iov, int iovcnt) {
  int e = fault_check(SC_WRITEV, fd, 0);
  if (e) FAIL_WITH(e);
  return g_real.writev(fd, iov, iovcnt);
}
/* A socket's write is send / sendmsg (MSG_NOSIGNAL): the write and writev
 * rules cover them. */
static ssize_t w_send(int fd, const void *buf, size_t len, int flags) {
  int e = fault_check(SC_WRITE, fd, 0);
  if (e) FAIL_WITH(e);
  return g_real.send(fd, buf, len, flags);
}
static ssize_t w_sendmsg(int fd, const struct msghdr *msg, int flags) {
  int e = fault_check(SC_WRITEV, fd, 0);
  if (e) FAIL_WITH(e);
  return g_real.sendmsg(fd, msg, flags);
}
static int w_accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags) {
  int e = fault_check(SC_ACCEPT4, fd, 0);
  if (e) FAIL_WITH(e);
  return g_real.accept4(fd, addr, addrlen, flags);
}
static int w_connect(int fd, const struct sockaddr *addr, socklen_t addrlen) {
  int e = fault_check(SC_CONNECT, fd, 0);
  if (e && !atomic_load(&g_rules[SC_CONNECT].call_real)) FAIL_WITH(e);
  int ret = g_real.connect(fd, addr, addrlen);
  if (e) FAIL_WITH(e); /* the attempt goes on in the kernel, as after a real EINTR */
  return ret;
}
static int w_getsockopt(int fd, int level, int name, void *value, socklen_t *len) {
  int e = fault_check(SC_GETSOCKOPT, fd, 0);
  if (e) FAIL_WITH(e);
  return g_real.getsockopt(fd, level, name, value, len);
}
static int w_getpeername(int fd, struct sockaddr *addr, socklen_t *len) {
  int e = fault_check(SC_GETPEERNAME, fd, 0);
  if (e) FAIL_WITH(e);
  return g_real.getpeername(fd, addr, len);
}
static int w_fcntl_getfl(int fd) {
  int e = fault_check(SC_FCNTL_GETFL, fd, 0);
  if (e) FAIL_WITH(e);
  return g_real.fcntl_getfl(fd);
}
static int w_fcntl_setfl(int fd, int flags) {
  int e = fault_check(SC_FCNTL_SETFL, fd, 0);
  if (e) FAIL_WITH(e);
  return g_real.fcntl_setfl(fd, flags);
}
/* Linux releases the descriptor even when close(2) reports an error (EINTR,
 * EIO): the wrapper always closes, then reports the injected error. */
static int w_close(int fd) {
  int e = fault_check(SC_CLOSE, fd, 0);
  internal_forget(fd);
  for (int i = 0; i < INTERNAL_MAX; i++) {
    int expect = fd;
    atomic_compare_exchange_strong(&g_eventfds[i], &expect, -1);
  }
  int ret = g_real.close(fd);
  if (e) FAIL_WITH(e);
  return ret;
}

/* Parks that reached the commit step (NP_TEST_HOOKS): "did it park?" */
static atomic_long g_parks;
static void count_park(np__waiter *w) {
  (void)w;
  atomic_fetch_add(&g_parks, 1);
}

static int setup(void **state) {
  (void)state;
  g_real = np__sys;
  for (int i = 0; i < INTERNAL_MAX; i++) atomic_store(&g_internal[i], -1);
  for (int i = 0; i < INTERNAL_MAX; i++) atomic_store(&g_eventfds[i], -1);
  fault_clear_all();
  np__sys = (np__syscalls){
      .epoll_create1 = w_epoll_create1,
      .epoll_ctl = w_epoll_ctl,
      .epoll_wait = w_epoll_wait,
      .eventfd = w_eventfd,
      .read = w_read,
      .readv = w_readv,
      .write = w_write,
      .writev = w_writev,
      .send = w_send,
      .sendmsg = w_sendmsg,
      .accept4 = w_accept4,
      .connect = w_connect,
      .getsockopt = w_getsockopt,
      .getpeername = w_getpeername,
      .shutdown = g_real.shutdown, /* np_close_write: not fault-injected */
      .fcntl_getfl = w_fcntl_getfl,
      .fcntl_setfl = w_fcntl_setfl,
      .close = w_close,
      .fstat = g_real.fstat, /* identity checks: not fault-injected */
  };
  atomic_store(&g_parks, 0);
  np__test_hook_before_commit = count_park;
  t_marked = true;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  np__sys = g_real;
  np__test_hook_before_commit = NULL;
  fault_clear_all();
  return 0;
}

/* ---- plumbing ----------------------------------------------------------------- */

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory's own descriptor */
}

static bool fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

static uint8_t pat(size_t i) { return (uint8_t)((i * 2654435761u) >> 13 ^ i / 251); }

static void fill_pattern(uint8_t *buf, size_t off, size_t len) {
  for (size_t i = 0; i < len; i++) buf[i] = pat(off + i);
}

/* Reads exactly len bytes from a raw (possibly non-blocking) fd, checking
 * they continue the pattern at *off; fails the test on timeout (10 s). */
static void raw_read_expect(int fd, size_t *off, size_t len) {
  uint8_t buf[16384];
  int64_t until = np_now() + 10000 * MS;
  while (len > 0) {
    ssize_t n = read(fd, buf, len < sizeof(buf) ? len : sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      struct pollfd pfd = {.fd = fd, .events = POLLIN};
      if (np_now() > until) fail_msg("raw read: %zu bytes missing", len);
      poll(&pfd, 1, 100);
      continue;
    }
    if (n <= 0) fail_msg("raw read: %s with %zu bytes missing", n == 0 ? "EOF" : strerror(errno), len);
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] != pat(*off + (size_t)i)) fail_msg("byte %zu of the stream differs", *off + (size_t)i);
    *off += (size_t)n;
    len -= (size_t)n;
  }
}

static void raw_write_pattern(int fd, size_t *off, size_t len) {
  uint8_t buf[16384];
  while (len > 0) {
    size_t n = len < sizeof(buf) ? len : sizeof(buf);
    fill_pattern(buf, *off, n);
    ssize_t w = write(fd, buf, n);
    assert_true(w > 0);
    *off += (size_t)w;
    len -= (size_t)w;
  }
}

static np_stats stats(np_poller *p) {
  np_stats s;
  np_poller_stats(p, &s);
  return s;
}

/* A TCP listener on 127.0.0.1 (kernel-chosen port), blocking, not registered. */
static int tcp_listener(struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  *addr = (struct sockaddr_in){.sin_family = AF_INET};
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(*addr);
  assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
  assert_int_equal(listen(fd, 64), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
  return fd;
}

/* A blocking client connected to addr (raw, not registered). */
static int tcp_client(const struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  assert_int_equal(connect(fd, (const struct sockaddr *)addr, sizeof(*addr)), 0);
  return fd;
}

/* ---- operations on their own thread ------------------------------------------- */

enum { OP_READ, OP_READV, OP_WRITE, OP_WRITEV, OP_ACCEPT, OP_CONNECT };

typedef struct task {
  int kind;
  np_fd *f;
  uint8_t *buf;
  size_t len;
  struct sockaddr_in addr;
  long ret;
  size_t written;
  np_fd *accepted;
  atomic_int done;
} task;

static void *op_main(void *arg) {
  task *o = arg;
  t_marked = true;
  switch (o->kind) {
    case OP_READ: o->ret = np_read(o->f, o->buf, o->len); break;
    case OP_READV: {
      size_t half = o->len / 2;
      struct iovec iov[2] = {{o->buf, half}, {o->buf + half, o->len - half}};
      o->ret = np_readv(o->f, iov, 2);
      break;
    }
    case OP_WRITE: o->ret = np_write(o->f, o->buf, o->len, &o->written); break;
    case OP_WRITEV: {
      size_t third = o->len / 3;
      struct iovec iov[3] = {
          {o->buf, third}, {o->buf + third, third}, {o->buf + 2 * third, o->len - 2 * third}};
      o->ret = np_writev(o->f, iov, 3, &o->written);
      break;
    }
    case OP_ACCEPT: o->ret = np_accept(o->f, &o->accepted, NULL, NULL); break;
    case OP_CONNECT: o->ret = np_connect(o->f, (struct sockaddr *)&o->addr, sizeof(o->addr)); break;
    default: o->ret = -EINVAL; break;
  }
  atomic_store(&o->done, 1);
  return NULL;
}

static pthread_t op_start(task *o, int kind, np_fd *f, uint8_t *buf, size_t len) {
  o->kind = kind;
  o->f = f;
  o->buf = buf;
  o->len = len;
  o->ret = 12345;
  o->written = 0;
  o->accepted = NULL;
  atomic_init(&o->done, 0);
  return th_start(op_main, o);
}

/* Waits until the poller has delivered readiness for `mode` to f (rg/wg is
 * READY), so that a late event cannot satisfy the operation the test starts
 * next: it must park. */
static void wait_ready(np_fd *f, int mode) {
  np__auptr *g = mode == 'r' ? &f->pd->rg : &f->pd->wg;
  for (int i = 0; i < 10000 && np__load_uptr(g) != NP__PD_READY; i++) th_sleep_ms(1);
  assert_int_equal(np__load_uptr(g), NP__PD_READY);
}

/* Waits up to 10 s until the rule has fired `n` times. */
static void wait_fired(int which, long n) {
  for (int i = 0; i < 10000 && fault_fired(which) < n; i++) th_sleep_ms(1);
  if (fault_fired(which) < n)
    fail_msg("%s fault fired %ld times, want %ld", sc_name[which], fault_fired(which), n);
}

/* ============================================================================
 * Poller creation: every failing step returns its -errno and releases what the
 * earlier steps made (descriptors: counted; memory: ASan).
 * ========================================================================== */

static void expect_create_fails(int which, long nth, int err) {
  int before = count_fds();
  fault_nth(which, nth, err, SEL_ANY, -1);
  np_poller *p = (np_poller *)1;
  assert_int_equal(np_poller_create(&p, NULL), -err);
  assert_null(p);
  assert_int_equal(fault_fired(which), 1);
  assert_int_equal(count_fds(), before);
  fault_clear_all();
}

static void test_create_epoll_create1_fails(void **state) {
  (void)state;
  static const int errs[] = {EMFILE, ENFILE, ENOMEM, EINTR, EBADF};
  for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
    expect_create_fails(SC_EPOLL_CREATE1, 1, errs[i]);
  np_poller *p = th_poller(); /* nothing left broken */
  th_poller_destroy(p);
}

static void test_create_eventfd_fails(void **state) {
  (void)state;
  static const int errs[] = {EMFILE, ENFILE, ENODEV, ENOMEM, EAGAIN};
  for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) expect_create_fails(SC_EVENTFD, 1, errs[i]);
  th_poller_destroy(th_poller());
}

static void test_create_epoll_ctl_fails(void **state) {
  (void)state;
  static const int errs[] = {ENOMEM, ENOSPC, EBADF, EPERM};
  for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) expect_create_fails(SC_EPOLL_CTL, 1, errs[i]);
  th_poller_destroy(th_poller());
}

/* ============================================================================
 * np_open: a failing registration returns its error, leaves the descriptor
 * with the caller (open, not in the epoll set), and leaks no handle or pd.
 * ========================================================================== */

/* fd must be usable for a round trip through netpoll after failed opens. */
static void open_after_failures_works(np_poller *p, int fds[2]) {
  np_fd *f[2];
  th_open_pair(p, fds, f); /* -EEXIST here would mean a failed open left fd in epoll */
  size_t w = 0;
  assert_int_equal(np_write(f[0], "ping", 4, &w), 0);
  char buf[8];
  assert_int_equal(np_read(f[1], buf, sizeof(buf)), 4);
  assert_memory_equal(buf, "ping", 4);
  np_free(f[0]);
  np_free(f[1]);
}

static void expect_open_fails(int which, int op, int err, int want) {
  np_poller *p = th_poller();
  int fds[2];
  th_socketpair(fds);
  np_stats s0 = stats(p);
  /* 40 failures: a pd not returned to the cache would grow it past one block. */
  for (int i = 0; i < 40; i++) {
    fault_arm(which, (fault_spec){.nth = 1, .err = err, .sel = SEL_FD, .fd = fds[0], .op = op});
    np_fd *f = (np_fd *)1;
    assert_int_equal(np_open(p, fds[0], &f), want);
    assert_null(f);
    assert_int_equal(fault_fired(which), 1);
    assert_true(fd_is_open(fds[0])); /* still the caller's */
  }
  np_stats s1 = stats(p);
  assert_int_equal(s1.fds_open, s0.fds_open);
  /* The first open allocates the first block; 40 leaked pds would need two. */
  assert_true(s1.pd_allocated <=
              (s0.pd_allocated > NP__PD_BLOCK_COUNT ? s0.pd_allocated : NP__PD_BLOCK_COUNT));
  fault_clear_all();
  open_after_failures_works(p, fds);
  th_poller_destroy(p);
}

static void test_open_epoll_ctl_add_fails(void **state) {
  (void)state;
  static const int errs[] = {ENOMEM, ENOSPC, EBADF, EINTR, EMFILE};
  for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
    expect_open_fails(SC_EPOLL_CTL, EPOLL_CTL_ADD, errs[i], -errs[i]);
  /* EPERM is what epoll says for a regular file: documented as NP_ENOTPOLLABLE. */
  expect_open_fails(SC_EPOLL_CTL, EPOLL_CTL_ADD, EPERM, NP_ENOTPOLLABLE);
}

static void test_open_fcntl_fails(void **state) {
  (void)state;
  static const int errs[] = {EBADF, ENOMEM, EINTR};
  for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
    expect_open_fails(SC_FCNTL_GETFL, 0, errs[i], -errs[i]);
    expect_open_fails(SC_FCNTL_SETFL, 0, errs[i], -errs[i]);
  }
}

/* ============================================================================
 * read / readv
 * ========================================================================== */

typedef struct pair {
  np_poller *p;
  int fds[2];
  np_fd *f[2];
} pair;

static pair pair_open(void) {
  pair pr;
  pr.p = th_poller();
  th_socketpair(pr.fds);
  th_open_pair(pr.p, pr.fds, pr.f);
  return pr;
}

static void pair_close(pair *pr) {
  np_free(pr->f[0]);
  np_free(pr->f[1]);
  th_poller_destroy(pr->p);
}

/* EINTR is retried at once: no park, the data arrives whole. */
static void test_read_eintr_retried(void **state) {
  (void)state;
  for (int v = 0; v < 2; v++) {
    int which = v == 0 ? SC_READ : SC_READV;
    pair pr = pair_open();
    size_t woff = 0, roff = 0;
    raw_write_pattern(pr.fds[0], &woff, 1000);
    fault_arm(which, (fault_spec){.nth = 1, .count = 3, .err = EINTR, .sel = SEL_FD, .fd = pr.fds[1]});
    atomic_store(&g_parks, 0);
    uint8_t buf[4096];
    task o;
    th_join(op_start(&o, v == 0 ? OP_READ : OP_READV, pr.f[1], buf, sizeof(buf)));
    assert_int_equal(o.ret, 1000);
    for (size_t i = 0; i < 1000; i++) assert_int_equal(buf[i], pat(roff + i));
    assert_int_equal(fault_fired(which), 3);
    assert_int_equal(fault_calls(which), 4);
    assert_int_equal(atomic_load(&g_parks), 0);
    fault_clear_all();
    pair_close(&pr);
  }
}

/* A spurious EAGAIN parks the reader; the next real readiness (more data)
 * wakes it and it gets everything, in order: the bytes that were there
 * before the fault are not lost. */
static void test_read_eagain_parks_until_ready(void **state) {
  (void)state;
  for (int v = 0; v < 2; v++) {
    int which = v == 0 ? SC_READ : SC_READV;
    pair pr = pair_open();
    size_t woff = 0, roff = 0;
    raw_write_pattern(pr.fds[0], &woff, 1000);
    wait_ready(pr.f[1], 'r');
    fault_arm(which, (fault_spec){.nth = 1, .err = EAGAIN, .sel = SEL_FD, .fd = pr.fds[1]});
    atomic_store(&g_parks, 0);
    uint8_t buf[8192];
    task o;
    pthread_t t = op_start(&o, v == 0 ? OP_READ : OP_READV, pr.f[1], buf, sizeof(buf));
    th_wait_parked(pr.p, 1);
    assert_int_equal(atomic_load(&o.done), 0);
    raw_write_pattern(pr.fds[0], &woff, 2000); /* real readiness */
    th_join(t);
    assert_true(o.ret > 0);
    for (long i = 0; i < o.ret; i++) assert_int_equal(buf[i], pat(roff + (size_t)i));
    roff += (size_t)o.ret;
    assert_true(atomic_load(&g_parks) >= 1);
    assert_int_equal(fault_fired(which), 1);
    fault_clear_all();
    /* Whatever that read did not take is still there, in order. */
    while (roff < woff) {
      ssize_t n = np_read(pr.f[1], buf, sizeof(buf));
      assert_true(n > 0);
      for (ssize_t i = 0; i < n; i++) assert_int_equal(buf[i], pat(roff + (size_t)i));
      roff += (size_t)n;
    }
    assert_int_equal(roff, 3000);
    pair_close(&pr);
  }
}

/* Any other errno is returned as is and consumes nothing. */
static void test_read_error_returned(void **state) {
  (void)state;
  static const int errs[] = {ECONNRESET, EIO, ENOMEM, EBADF, EMFILE};
  for (int v = 0; v < 2; v++) {
    int which = v == 0 ? SC_READ : SC_READV;
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
      pair pr = pair_open();
      size_t woff = 0, roff = 0;
      raw_write_pattern(pr.fds[0], &woff, 500);
      fault_arm(which, (fault_spec){.nth = 1, .err = errs[i], .sel = SEL_FD, .fd = pr.fds[1]});
      uint8_t buf[1024];
      task o;
      th_join(op_start(&o, v == 0 ? OP_READ : OP_READV, pr.f[1], buf, sizeof(buf)));
      assert_int_equal(o.ret, -errs[i]);
      fault_clear_all();
      th_join(op_start(&o, v == 0 ? OP_READ : OP_READV, pr.f[1], buf, sizeof(buf)));
      assert_int_equal(o.ret, 500);
      for (size_t k = 0; k < 500; k++) assert_int_equal(buf[k], pat(roff + k));
      pair_close(&pr);
    }
  }
}

/* ============================================================================
 * write / writev
 * ========================================================================== */

typedef struct drainer {
  int fd;
  size_t want;
  size_t got;
  size_t chunk; /* at most this much per read (0: 64 KiB) */
  char err[160];
} drainer;

/* Reads `want` bytes (raw, non-blocking fd) checking the pattern from 0; with
 * a chunk, a slow reader: that much per read, then a pause. */
static void *drainer_main(void *arg) {
  drainer *d = arg;
  static uint8_t buf[65536];
  int64_t until = np_now() + 20000 * MS;
  size_t chunk = d->chunk != 0 && d->chunk < sizeof(buf) ? d->chunk : sizeof(buf);
  while (d->got < d->want) {
    if (d->chunk != 0) usleep(200);
    ssize_t n = read(d->fd, buf, chunk);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (np_now() > until) {
        snprintf(d->err, sizeof(d->err), "timed out after %zu bytes", d->got);
        return NULL;
      }
      struct pollfd pfd = {.fd = d->fd, .events = POLLIN};
      poll(&pfd, 1, 100);
      continue;
    }
    if (n <= 0) {
      snprintf(d->err, sizeof(d->err), "%s after %zu bytes", n == 0 ? "EOF" : strerror(errno), d->got);
      return NULL;
    }
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] != pat(d->got + (size_t)i)) {
        snprintf(d->err, sizeof(d->err), "byte %zu differs", d->got + (size_t)i);
        return NULL;
      }
    }
    d->got += (size_t)n;
  }
  return NULL;
}

enum { BIG = 1 << 20 };

static void test_write_eintr_retried(void **state) {
  (void)state;
  uint8_t *buf = malloc(BIG);
  assert_non_null(buf);
  fill_pattern(buf, 0, BIG);
  for (int v = 0; v < 2; v++) {
    int which = v == 0 ? SC_WRITE : SC_WRITEV;
    pair pr = pair_open();
    /* A small send buffer and a slow drainer (4 KiB per read, a pause
     * between): BIG takes far more than 9 calls, so all 5 faults (calls 1,
     * 3 ... 9) fire. With a fast drainer a loaded machine once saw 4: the
     * kernel takes what the reader frees during the call, in one call. */
    int small = 4096;
    assert_int_equal(setsockopt(pr.fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    fault_arm(which,
              (fault_spec){.nth = 1, .count = 5, .every = 2, .err = EINTR, .sel = SEL_FD, .fd = pr.fds[0]});
    drainer d = {.fd = pr.fds[1], .want = BIG, .chunk = 4096};
    pthread_t dt = th_start(drainer_main, &d);
    task o;
    th_join(op_start(&o, v == 0 ? OP_WRITE : OP_WRITEV, pr.f[0], buf, BIG));
    th_join(dt);
    assert_int_equal(o.ret, 0);
    assert_int_equal(o.written, BIG);
    if (d.err[0]) fail_msg("reader: %s", d.err);
    assert_int_equal(fault_fired(which), 5);
    fault_clear_all();
    pair_close(&pr);
  }
  free(buf);
}

/* A write that returns 0 on a stream (Linux never does, but the library
 * must not loop on it): -EIO, and *written says what went before. */
static void test_write_returning_zero_is_eio(void **state) {
  (void)state;
  for (int v = 0; v < 2; v++) {
    int which = v == 0 ? SC_WRITE : SC_WRITEV;
    pair pr = pair_open();
    fault_arm(which, (fault_spec){.nth = 1, .err = FAULT_ZERO, .sel = SEL_FD, .fd = pr.fds[0]});
    size_t written = 99;
    char msg[] = "zero";
    struct iovec iov = {msg, 4};
    int ret = v == 0 ? np_write(pr.f[0], msg, 4, &written) : np_writev(pr.f[0], &iov, 1, &written);
    assert_int_equal(ret, -EIO);
    assert_int_equal(written, 0);
    assert_int_equal(fault_fired(which), 1);
    fault_clear_all();
    assert_int_equal(np_write(pr.f[0], msg, 4, &written), 0); /* the next write goes through */
    assert_int_equal(written, 4);
    pair_close(&pr);
  }
}

/* A spurious EAGAIN parks the writer; room made by the peer reading (an
 * EPOLLOUT edge) wakes it, and the stream is complete and in order. */
static void test_write_eagain_parks_until_writable(void **state) {
  (void)state;
  enum { PRE = 4000, LEN = 65536 };
  uint8_t *buf = malloc(LEN);
  assert_non_null(buf);
  for (int v = 0; v < 2; v++) {
    int which = v == 0 ? SC_WRITE : SC_WRITEV;
    pair pr = pair_open();
    size_t woff = 0, roff = 0;
    raw_write_pattern(pr.fds[0], &woff, PRE); /* something for the peer to read later */
    fill_pattern(buf, woff, LEN);
    wait_ready(pr.f[0], 'w'); /* the initial write readiness */
    fault_arm(which, (fault_spec){.nth = 1, .err = EAGAIN, .sel = SEL_FD, .fd = pr.fds[0]});
    atomic_store(&g_parks, 0);
    task o;
    pthread_t t = op_start(&o, v == 0 ? OP_WRITE : OP_WRITEV, pr.f[0], buf, LEN);
    th_wait_parked(pr.p, 1);
    assert_int_equal(atomic_load(&o.done), 0);
    raw_read_expect(pr.fds[1], &roff, PRE); /* room: real write readiness */
    th_join(t);
    assert_int_equal(o.ret, 0);
    assert_int_equal(o.written, LEN);
    assert_int_equal(fault_fired(which), 1);
    raw_read_expect(pr.fds[1], &roff, LEN);
    fault_clear_all();
    pair_close(&pr);
  }
  free(buf);
}

/* Any other errno stops the write and is returned with the exact count of
 * bytes written before it: the peer receives exactly those. */
static void test_write_error_reports_written(void **state) {
  (void)state;
  static const int errs[] = {EPIPE, ECONNRESET, ENOMEM, EBADF, EIO};
  uint8_t *buf = malloc(BIG);
  assert_non_null(buf);
  fill_pattern(buf, 0, BIG);
  for (int v = 0; v < 2; v++) {
    int which = v == 0 ? SC_WRITE : SC_WRITEV;
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
      pair pr = pair_open();
      /* The first call writes what fits; the second fails. */
      fault_arm(which, (fault_spec){.nth = 2, .err = errs[i], .sel = SEL_FD, .fd = pr.fds[0]});
      task o;
      th_join(op_start(&o, v == 0 ? OP_WRITE : OP_WRITEV, pr.f[0], buf, BIG));
      assert_int_equal(o.ret, -errs[i]);
      assert_int_equal(fault_fired(which), 1);
      assert_true(o.written > 0 && o.written < BIG);
      drainer d = {.fd = pr.fds[1], .want = o.written};
      drainer_main(&d);
      if (d.err[0]) fail_msg("reader: %s", d.err);
      char extra;
      assert_int_equal(read(pr.fds[1], &extra, 1), -1); /* and nothing more */
      assert_int_equal(errno, EAGAIN);
      fault_clear_all();
      pair_close(&pr);
    }
  }
  free(buf);
}

/* ============================================================================
 * accept
 * ========================================================================== */

typedef struct listener {
  np_poller *p;
  struct sockaddr_in addr;
  int fd;
  np_fd *f;
} listener;

static listener listener_open(void) {
  listener l;
  l.p = th_poller();
  l.fd = tcp_listener(&l.addr);
  assert_int_equal(np_open(l.p, l.fd, &l.f), 0);
  return l;
}

/* The accepted handle must be the connection whose client sent `tag`. */
static void expect_conn_tag(np_fd *conn, char tag) {
  char c = 0;
  assert_int_equal(np_set_read_deadline(conn, np_deadline_after(10000 * MS)), 0);
  assert_int_equal(np_read(conn, &c, 1), 1);
  assert_int_equal(c, tag);
}

static int client_with_tag(const struct sockaddr_in *addr, char tag) {
  int c = tcp_client(addr);
  assert_int_equal(write(c, &tag, 1), 1);
  return c;
}

static void test_accept_eintr_econnaborted_retried(void **state) {
  (void)state;
  listener l = listener_open();
  int c = client_with_tag(&l.addr, 'a');
  /* Three calls fail with ECONNABORTED (a connection reset while queued):
   * retried, the fourth returns the connection. Then the same with EINTR. */
  fault_arm(SC_ACCEPT4, (fault_spec){.nth = 1, .count = 3, .err = ECONNABORTED, .sel = SEL_FD, .fd = l.fd});
  atomic_store(&g_parks, 0);
  np_fd *conn = NULL;
  assert_int_equal(np_accept(l.f, &conn, NULL, NULL), 0);
  assert_int_equal(fault_calls(SC_ACCEPT4), 4);
  expect_conn_tag(conn, 'a');
  np_free(conn);
  close(c);

  c = client_with_tag(&l.addr, 'b');
  fault_arm(SC_ACCEPT4, (fault_spec){.nth = 1, .count = 3, .err = EINTR, .sel = SEL_FD, .fd = l.fd});
  assert_int_equal(np_accept(l.f, &conn, NULL, NULL), 0);
  assert_int_equal(fault_calls(SC_ACCEPT4), 4);
  assert_int_equal(atomic_load(&g_parks), 0); /* retried, never parked */
  expect_conn_tag(conn, 'b');
  np_free(conn);
  close(c);
  fault_clear_all();
  np_free(l.f);
  th_poller_destroy(l.p);
}

/* A spurious EAGAIN with a connection pending parks; the next connection
 * wakes the acceptor, which gets the first one; the second is not lost. */
static void test_accept_eagain_parks(void **state) {
  (void)state;
  listener l = listener_open();
  int c1 = client_with_tag(&l.addr, '1');
  wait_ready(l.f, 'r');
  fault_arm(SC_ACCEPT4, (fault_spec){.nth = 1, .err = EAGAIN, .sel = SEL_FD, .fd = l.fd});
  task o;
  pthread_t t = op_start(&o, OP_ACCEPT, l.f, NULL, 0);
  th_wait_parked(l.p, 1);
  assert_int_equal(atomic_load(&o.done), 0);
  int c2 = client_with_tag(&l.addr, '2'); /* real readiness */
  th_join(t);
  assert_int_equal(o.ret, 0);
  expect_conn_tag(o.accepted, '1');
  np_fd *conn2 = NULL;
  assert_int_equal(np_accept(l.f, &conn2, NULL, NULL), 0);
  expect_conn_tag(conn2, '2');
  np_free(o.accepted);
  np_free(conn2);
  close(c1);
  close(c2);
  fault_clear_all();
  np_free(l.f);
  th_poller_destroy(l.p);
}

/* Resource errors come back from np_accept; the pending connection stays
 * queued and the listener keeps working. */
static void test_accept_errors_listener_keeps_working(void **state) {
  (void)state;
  static const int errs[] = {EMFILE, ENFILE, ENOBUFS, ENOMEM, EPERM, EBADF};
  listener l = listener_open();
  for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
    char tag = (char)('A' + i);
    int c = client_with_tag(&l.addr, tag);
    int before = count_fds();
    fault_arm(SC_ACCEPT4, (fault_spec){.nth = 1, .err = errs[i], .sel = SEL_FD, .fd = l.fd});
    np_fd *conn = (np_fd *)1;
    assert_int_equal(np_accept(l.f, &conn, NULL, NULL), -errs[i]);
    assert_null(conn);
    assert_int_equal(count_fds(), before);
    fault_clear_all();
    assert_int_equal(np_accept(l.f, &conn, NULL, NULL), 0);
    expect_conn_tag(conn, tag);
    np_free(conn);
    close(c);
  }
  np_free(l.f);
  th_poller_destroy(l.p);
}

/* The connection was accepted but cannot be registered: np_accept returns the
 * error and closes it (the client sees EOF), leaks nothing, and goes on. */
static void test_accept_register_fails_closes_conn(void **state) {
  (void)state;
  static const struct {
    int which, op, err;
  } cases[] = {
      {SC_EPOLL_CTL, EPOLL_CTL_ADD, ENOMEM},
      {SC_EPOLL_CTL, EPOLL_CTL_ADD, ENOSPC},
      {SC_FCNTL_GETFL, 0, EBADF},
  };
  listener l = listener_open();
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int c = client_with_tag(&l.addr, 'x');
    int before = count_fds();
    np_stats s0 = stats(l.p);
    fault_arm(cases[i].which, (fault_spec){.nth = 1, .err = cases[i].err, .op = cases[i].op});
    np_fd *conn = (np_fd *)1;
    assert_int_equal(np_accept(l.f, &conn, NULL, NULL), -cases[i].err);
    assert_null(conn);
    assert_int_equal(fault_fired(cases[i].which), 1);
    fault_clear_all();
    assert_int_equal(count_fds(), before);
    assert_int_equal(stats(l.p).fds_open, s0.fds_open);
    struct timeval tv = {10, 0};
    assert_int_equal(setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    char buf[4];
    ssize_t n = read(c, buf, sizeof(buf));
    if (!(n == 0 || (n < 0 && errno == ECONNRESET)))
      fail_msg("client: read gave %zd (%s)", n, strerror(errno));
    close(c);
    c = client_with_tag(&l.addr, 'y');
    assert_int_equal(np_accept(l.f, &conn, NULL, NULL), 0);
    expect_conn_tag(conn, 'y');
    np_free(conn);
    close(c);
  }
  np_free(l.f);
  th_poller_destroy(l.p);
}

/* np_pipe, np_socketpair, np_listen and np_dial register what they make:
 * when a registration fails, every descriptor they made is closed (the
 * first end's, or the second's after the first was registered) and nothing
 * is returned. */
typedef int (*make_fn)(np_poller *p, np_fd *out[2]);

static int make_listen(np_poller *p, np_fd *out[2]) { return np_listen(p, "tcp", "127.0.0.1:0", &out[0]); }

static int make_dial(np_poller *p, np_fd *out[2]) {
  np_fd *l;
  char addr[NP_ADDRSTRLEN];
  assert_int_equal(np_listen(p, "tcp", "127.0.0.1:0", &l), 0);
  assert_int_equal(np_local_addr(l, addr, sizeof(addr)), 0);
  fault_arm(SC_EPOLL_CTL, (fault_spec){.nth = 1, .err = ENOMEM, .op = EPOLL_CTL_ADD});
  int err = np_dial(p, "tcp", addr, 0, &out[0]);
  fault_clear_all();
  np_free(l);
  return err;
}

static void expect_make_fails_clean(np_poller *p, make_fn make, long nth, bool armed_by_make) {
  int before = count_fds();
  np_stats s0 = stats(p);
  if (!armed_by_make) fault_arm(SC_EPOLL_CTL, (fault_spec){.nth = nth, .err = ENOMEM, .op = EPOLL_CTL_ADD});
  np_fd *out[2] = {(np_fd *)1, (np_fd *)1};
  assert_int_equal(make(p, out), -ENOMEM);
  assert_null(out[0]);
  fault_clear_all();
  assert_int_equal(count_fds(), before);
  assert_int_equal(stats(p).fds_open, s0.fds_open);
}

static void test_make_register_fails_closes_all(void **state) {
  (void)state;
  np_poller *p = th_poller();
  for (long nth = 1; nth <= 2; nth++) {
    expect_make_fails_clean(p, np_pipe, nth, false);
    expect_make_fails_clean(p, np_socketpair, nth, false);
  }
  expect_make_fails_clean(p, make_listen, 1, false);
  expect_make_fails_clean(p, make_dial, 1, true);
  th_poller_destroy(p);
}

/* ============================================================================
 * connect
 * ========================================================================== */

/* A TCP socket, registered, once the poller has taken the readiness an
 * unconnected socket reports at registration (OUT|HUP): a stale wake-up of
 * np_connect would make the counts below timing dependent. */
static np_fd *tcp_socket_open(np_poller *p) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  np_fd *f = NULL;
  assert_int_equal(np_open(p, fd, &f), 0);
  wait_ready(f, 'w');
  return f;
}

static void test_connect_error_returned(void **state) {
  (void)state;
  static const int errs[] = {ECONNREFUSED, ENETUNREACH, EADDRNOTAVAIL, EAGAIN, EACCES};
  listener l = listener_open();
  for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
    np_fd *c = tcp_socket_open(l.p);
    fault_arm(SC_CONNECT, (fault_spec){.nth = 1, .err = errs[i]});
    atomic_store(&g_parks, 0);
    assert_int_equal(np_connect(c, (struct sockaddr *)&l.addr, sizeof(l.addr)), -errs[i]);
    assert_int_equal(atomic_load(&g_parks), 0);
    np_free(c);
  }
  fault_clear_all();
  np_free(l.f);
  th_poller_destroy(l.p);
}

/* connect interrupted after the kernel started it (EINTR): np_connect waits
 * for the handshake and succeeds; the connection works. */
static void test_connect_eintr_completes(void **state) {
  (void)state;
  listener l = listener_open();
  np_fd *c = tcp_socket_open(l.p);
  fault_arm(SC_CONNECT, (fault_spec){.nth = 1, .err = EINTR, .call_real = true});
  assert_int_equal(np_set_write_deadline(c, np_deadline_after(10000 * MS)), 0);
  assert_int_equal(np_connect(c, (struct sockaddr *)&l.addr, sizeof(l.addr)), 0);
  assert_int_equal(fault_fired(SC_CONNECT), 1);
  fault_clear_all();
  np_fd *s = NULL;
  assert_int_equal(np_accept(l.f, &s, NULL, NULL), 0);
  size_t w;
  assert_int_equal(np_write(c, "z", 1, &w), 0);
  expect_conn_tag(s, 'z');
  np_free(s);
  np_free(c);
  np_free(l.f);
  th_poller_destroy(l.p);
}

/* getsockopt(SO_ERROR) failing while the handshake completes: its errno. */
static void test_connect_getsockopt_fails(void **state) {
  (void)state;
  listener l = listener_open();
  np_fd *c = tcp_socket_open(l.p);
  /* Force the asynchronous path even if the kernel finished synchronously. */
  fault_arm(SC_CONNECT, (fault_spec){.nth = 1, .err = EINPROGRESS, .call_real = true});
  fault_arm(SC_GETSOCKOPT, (fault_spec){.nth = 1, .err = ENOMEM});
  assert_int_equal(np_set_write_deadline(c, np_deadline_after(10000 * MS)), 0);
  assert_int_equal(np_connect(c, (struct sockaddr *)&l.addr, sizeof(l.addr)), -ENOMEM);
  assert_int_equal(fault_fired(SC_GETSOCKOPT), 1);
  fault_clear_all();
  np_free(c);
  np_free(l.f);
  th_poller_destroy(l.p);
}

/* SO_ERROR 0 but getpeername fails: a spurious wake-up (Go 14548). The
 * connector parks again and returns 0 at the next real event. */
static void test_connect_spurious_wakeup_waits_again(void **state) {
  (void)state;
  listener l = listener_open();
  np_fd *c = tcp_socket_open(l.p);
  fault_arm(SC_CONNECT, (fault_spec){.nth = 1, .err = EINPROGRESS, .call_real = true});
  fault_arm(SC_GETPEERNAME, (fault_spec){.nth = 1, .err = ENOTCONN});
  assert_int_equal(np_set_write_deadline(c, np_deadline_after(20000 * MS)), 0);
  task o;
  o.addr = l.addr;
  pthread_t t = op_start(&o, OP_CONNECT, c, NULL, 0);
  wait_fired(SC_GETPEERNAME, 1);
  th_wait_parked(l.p, 1); /* waiting again, not returned */
  assert_int_equal(atomic_load(&o.done), 0);
  np_fd *s = NULL;
  assert_int_equal(np_accept(l.f, &s, NULL, NULL), 0);
  size_t w;
  assert_int_equal(np_write(s, "q", 1, &w), 0); /* an event for the connector */
  th_join(t);
  assert_int_equal(o.ret, 0);
  assert_int_equal(fault_calls(SC_GETPEERNAME), 2);
  fault_clear_all();
  expect_conn_tag(c, 'q');
  np_free(s);
  np_free(c);
  np_free(l.f);
  th_poller_destroy(l.p);
}

/* ============================================================================
 * close
 * ========================================================================== */

/* close(2) failing: np_close returns its errno, the descriptor is released
 * anyway (Linux semantics), the handle is closed, a blocked reader woke. */
static void test_close_error_returned_fd_released(void **state) {
  (void)state;
  static const int errs[] = {EINTR, EIO, EBADF, ENOSPC};
  for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
    pair pr = pair_open();
    int before = count_fds();
    uint8_t buf[16];
    task o;
    pthread_t t = op_start(&o, OP_READ, pr.f[1], buf, sizeof(buf));
    th_wait_parked(pr.p, 1);
    fault_arm(SC_CLOSE, (fault_spec){.nth = 1, .err = errs[i], .sel = SEL_FD, .fd = pr.fds[1]});
    assert_int_equal(np_close(pr.f[1]), -errs[i]);
    th_join(t);
    assert_int_equal(o.ret, NP_ECLOSING);
    assert_int_equal(count_fds(), before - 1);
    assert_int_equal(np_sysfd(pr.f[1]), -1);
    assert_int_equal(np_close(pr.f[1]), NP_ECLOSING);
    assert_int_equal(stats(pr.p).fds_open, 1);
    fault_clear_all();
    pair_close(&pr);
  }
}

/* EPOLL_CTL_DEL failing is ignored (close(2) drops the registration): np_close
 * returns 0, and a new descriptor with the same number registers and works. */
static void test_close_epoll_ctl_del_fails_ignored(void **state) {
  (void)state;
  static const int errs[] = {ENOMEM, EBADF, ENOENT};
  for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
    pair pr = pair_open();
    fault_arm(SC_EPOLL_CTL, (fault_spec){.nth = 1, .err = errs[i], .op = EPOLL_CTL_DEL});
    int n0 = pr.fds[0], n1 = pr.fds[1];
    assert_int_equal(np_close(pr.f[0]), 0);
    assert_int_equal(np_close(pr.f[1]), 0);
    assert_int_equal(fault_fired(SC_EPOLL_CTL), 1);
    assert_false(fd_is_open(n0));
    fault_clear_all();
    np_free(pr.f[0]);
    np_free(pr.f[1]);
    int fds[2];
    th_socketpair(fds);
    assert_true((fds[0] == n0 || fds[0] == n1) && (fds[1] == n0 || fds[1] == n1));
    open_after_failures_works(pr.p, fds);
    th_poller_destroy(pr.p);
  }
}

/* The poller's own descriptors failing to close at destroy: ignored, and
 * still released. */
static void test_destroy_close_errors_ignored(void **state) {
  (void)state;
  int before = count_fds();
  np_poller *p = th_poller();
  fault_arm(SC_CLOSE, (fault_spec){.nth = 1, .count = 2, .err = EIO});
  th_poller_destroy(p);
  assert_int_equal(fault_fired(SC_CLOSE), 2);
  assert_int_equal(count_fds(), before);
  fault_clear_all();
}

/* ============================================================================
 * epoll_wait and the break (eventfd)
 * ========================================================================== */

/* Blocking netpoll: EINTR is retried until the real event. */
static void test_netpoll_eintr_blocking_retried(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  int fds[2];
  th_socketpair(fds);
  np_fd *f[2];
  th_open_pair(p, fds, f);
  while (np__netpoll(p, 0) > 0) {
  } /* the initial write readiness */
  uint8_t buf[16];
  task o;
  pthread_t t = op_start(&o, OP_READ, f[1], buf, sizeof(buf));
  th_wait_parked(p, 1);
  assert_int_equal(write(fds[0], "hi", 2), 2);
  fault_arm(SC_EPOLL_WAIT, (fault_spec){.nth = 1, .count = 3, .err = EINTR});
  int woken = 0;
  while (woken == 0) {
    int n = np__netpoll(p, -1);
    assert_true(n >= 0);
    woken += n;
  }
  assert_int_equal(woken, 1);
  assert_int_equal(fault_fired(SC_EPOLL_WAIT), 3);
  th_join(t);
  assert_int_equal(o.ret, 2);
  fault_clear_all();
  np_free(f[0]);
  np_free(f[1]);
  th_poller_destroy(p);
}

/* Timed netpoll: EINTR returns "no events" at once (the caller recomputes
 * its timers); a non-blocking poll the same. Other errors come back. */
static void test_netpoll_eintr_timed_returns_no_events(void **state) {
  (void)state;
  np_poller *p = th_poller_manual();
  int fds[2];
  th_socketpair(fds);
  np_fd *f[2];
  th_open_pair(p, fds, f);
  static const int64_t delays[] = {0, 1, 50 * MS, 3600000 * MS};
  for (size_t i = 0; i < sizeof(delays) / sizeof(delays[0]); i++) {
    fault_arm(SC_EPOLL_WAIT, (fault_spec){.nth = 1, .err = EINTR});
    assert_int_equal(np__netpoll(p, delays[i]), 0); /* an hour: would hang if retried */
    assert_int_equal(fault_calls(SC_EPOLL_WAIT), 1);
  }
  /* Other errors are returned (and put the poller in the failed state:
   * test_poller_failure_reported). */
  static const int errs[] = {EBADF, EFAULT, EINVAL, ENOMEM};
  for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
    fault_arm(SC_EPOLL_WAIT, (fault_spec){.nth = 1, .err = errs[i]});
    assert_int_equal(np__netpoll(p, -1), -errs[i]);
    assert_true(np__netpoll(p, 0) >= 0);
  }
  fault_clear_all();
  /* Still delivers: the pending write readiness of both ends. */
  assert_true(np__netpoll(p, 0) >= 0);
  np_free(f[0]);
  np_free(f[1]);
  th_poller_destroy(p);
}

typedef struct deadline_reader {
  np_fd *f;
  int64_t delay_ns;
  long ret;
  int64_t elapsed;
} deadline_reader;

static void *deadline_reader_main(void *arg) {
  deadline_reader *d = arg;
  int64_t t0 = np_now();
  np_set_read_deadline(d->f, t0 + d->delay_ns);
  char c;
  d->ret = np_read(d->f, &c, 1);
  d->elapsed = np_now() - t0;
  return NULL;
}

/* The threaded poller with every other epoll_wait failing EINTR: deadlines
 * fire (not early, not lost), data wakes readers. */
static void test_poller_thread_eintr_storm(void **state) {
  (void)state;
  pair pr = pair_open();
  fault_arm(SC_EPOLL_WAIT, (fault_spec){.nth = 1, .every = 2, .count = LONG_MAX, .err = EINTR});
  for (int round = 0; round < 5; round++) {
    deadline_reader d = {.f = pr.f[1], .delay_ns = 30 * MS};
    th_join(th_start(deadline_reader_main, &d));
    assert_int_equal(d.ret, NP_ETIMEOUT);
    assert_true(d.elapsed >= 30 * MS);
    assert_true(d.elapsed < 10000 * MS);
    assert_int_equal(np_set_read_deadline(pr.f[1], 0), 0);
    uint8_t buf[8];
    task o;
    pthread_t t = op_start(&o, OP_READ, pr.f[1], buf, sizeof(buf));
    th_wait_parked(pr.p, 1);
    assert_int_equal(write(pr.fds[0], "x", 1), 1);
    th_join(t);
    assert_int_equal(o.ret, 1);
  }
  assert_true(fault_fired(SC_EPOLL_WAIT) >= 5);
  fault_clear_all();
  pair_close(&pr);
}

/* The poller's eventfd: a break write interrupted (EINTR) is retried; a drain
 * interrupted (EINTR) or finding nothing (EAGAIN: another poll drained it) is
 * harmless. Each round needs a break: a deadline earlier than the poller's
 * sleep (it sleeps with no timer at all). */
static void test_break_faults_tolerated(void **state) {
  (void)state;
  static const struct { int which, err; } cases[] = {{SC_WRITE, EINTR}, {SC_READ, EINTR}, {SC_READ, EAGAIN}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    pair pr = pair_open();
    fault_arm(cases[i].which, (fault_spec){.nth = 1, .err = cases[i].err, .sel = SEL_BREAK});
    /* Rounds until the fault has fired (a break happens only if the poller
     * was asleep when the deadline was set), then two more. */
    for (int round = 0, after = 0; after < 3; round++) {
      assert_true(round < 200);
      if (fault_fired(cases[i].which) > 0) after++;
      deadline_reader d = {.f = pr.f[1], .delay_ns = 30 * MS};
      th_join(th_start(deadline_reader_main, &d));
      assert_int_equal(d.ret, NP_ETIMEOUT);
      assert_true(d.elapsed < 10000 * MS);
      assert_int_equal(np_set_read_deadline(pr.f[1], 0), 0);
      th_sleep_ms(20);
    }
    assert_int_equal(fault_fired(cases[i].which), 1);
    fault_clear_all();
    pair_close(&pr);
  }
}

/* ---- the poller's own descriptors failing: reported, not fatal (issue 9) ----------
 * A failing epoll_wait (EBADF: the epoll descriptor was closed behind the
 * library), break write or break drain puts the poller in the failed state:
 * the blocked reader wakes with NP_EPOLLER, later operations and np_open
 * fail with it, np_close still closes and np_poller_destroy returns. */

typedef struct blocked_read {
  np_fd *f;
  ssize_t ret;
} blocked_read;

static void *blocked_read_main(void *arg) {
  blocked_read *b = arg;
  char buf[8];
  b->ret = np_read(b->f, buf, sizeof(buf));
  return NULL;
}

enum { FAIL_WAIT_EBADF, FAIL_WAIT_EFAULT, FAIL_BREAK_WRITE, FAIL_BREAK_DRAIN };

static void poller_failure(int kind) {
  /* One scheduler: the fault must hit this poller's epoll_wait or break
   * (with several, it could hit a sibling's, which fails that one only). */
  np_poller *p = NULL;
  np_options one = {.procs = 1};
  assert_int_equal(np_poller_create(&p, &one), 0);
  int fds[2], idle[2];
  th_socketpair(fds);
  th_socketpair(idle);
  np_fd *f, *g;
  assert_int_equal(np_open(p, fds[0], &f), 0);
  assert_int_equal(np_open(p, idle[0], &g), 0);
  blocked_read b = {.f = f, .ret = 12345};
  pthread_t t = th_start(blocked_read_main, &b);
  th_wait_parked(p, 1);
  if (kind == FAIL_WAIT_EBADF || kind == FAIL_WAIT_EFAULT)
    fault_arm(
        SC_EPOLL_WAIT,
        (fault_spec){.nth = 1, .err = kind == FAIL_WAIT_EBADF ? EBADF : EFAULT, .scope = SCOPE_UNMARKED});
  else if (kind == FAIL_BREAK_WRITE)
    fault_arm(SC_WRITE, (fault_spec){.nth = 1, .err = EBADF, .sel = SEL_BREAK});
  else
    fault_arm(SC_READ, (fault_spec){.nth = 1, .err = EBADF, .sel = SEL_BREAK, .scope = SCOPE_UNMARKED});
  /* Earlier and earlier deadlines on the idle handle break the poller's
   * sleep: the break (or the next epoll_wait) fails. They are under a
   * second away, within the scheduler's bounded sleep (sleep_cap_ns), or no
   * break would be needed. */
  int64_t base = np_now() + 900 * MS;
  for (int i = 0; i < 400 && !np__load_u32(&p->failed); i++) {
    assert_int_equal(np_set_read_deadline(g, base - i * MS), 0);
    th_sleep_ms(1);
  }
  assert_true(np__load_u32(&p->failed) != 0);
  th_join(t);
  assert_int_equal(b.ret, NP_EPOLLER); /* woken, not parked forever */
  char buf[8];
  size_t written;
  assert_int_equal(np_read(f, buf, sizeof(buf)), NP_EPOLLER);
  assert_int_equal(np_write(f, "x", 1, &written), NP_EPOLLER);
  assert_int_equal(np_wait_read(g), NP_EPOLLER);
  int extra[2];
  th_socketpair(extra);
  np_fd *h = (np_fd *)&extra; /* overwritten with NULL on failure */
  assert_int_equal(np_open(p, extra[0], &h), NP_EPOLLER);
  assert_null(h);
  close(extra[0]);
  close(extra[1]);
  assert_int_equal(np_close(f), 0);
  np_stats st;
  np_poller_stats(p, &st);
  assert_int_equal(st.waiters_parked, 0);
  np_poller_destroy(p); /* frees g too; must not hang on a dead break */
  close(fds[1]);
  close(idle[1]);
}

static void test_poller_failure_reported(void **state) {
  (void)state;
  for (int kind = FAIL_WAIT_EBADF; kind <= FAIL_BREAK_DRAIN; kind++) {
    poller_failure(kind);
    fault_clear_all();
  }
}

/* ============================================================================
 * The sweep: a whole small workload, the Nth call of one syscall failing.
 * ========================================================================== */

enum { WL_LEN = 65536, WL_DEADLINE_MS = 20 };
static uint8_t g_payload[WL_LEN];

typedef struct wl_run {
  int which, err;
  bool spurious;  /* EAGAIN-like: the op may wait for an event that never comes */
  int64_t op_ns;  /* per-operation deadline */
  bool surfaced;  /* some call returned -err */
  char bad[256];  /* first violation */
  size_t got;     /* bytes the reader received */
  size_t written; /* bytes the writer reports */
  atomic_bool reader_failed;
  bool writer_failed;
} wl_run;

/* The reader (workload thread) and the writer report concurrently. */
static pthread_mutex_t g_wl_lock = PTHREAD_MUTEX_INITIALIZER;

static void wl_bad(wl_run *r, const char *what, long got) {
  pthread_mutex_lock(&g_wl_lock);
  if (r->bad[0] == '\0')
    snprintf(r->bad, sizeof(r->bad), "%s returned %ld (%s)", what, got, np_strerror((int)got));
  pthread_mutex_unlock(&g_wl_lock);
}

/* EINTR from these is retried by the library (connect's: the attempt goes
 * on, np_connect waits for it): it must never reach the caller. */
static bool retries_eintr(int which) {
  return which == SC_READ || which == SC_READV || which == SC_WRITE || which == SC_WRITEV ||
         which == SC_ACCEPT4 || which == SC_CONNECT;
}

/* got must be `success`, or -err, or NP_ETIMEOUT in spurious runs. Returns
 * true on success. */
static bool wl_expect(wl_run *r, const char *what, long got, long success) {
  if (got == success) return true;
  if (got == -r->err && !(r->err == EINTR && retries_eintr(r->which))) {
    pthread_mutex_lock(&g_wl_lock);
    r->surfaced = true;
    pthread_mutex_unlock(&g_wl_lock);
    return false;
  }
  if (got == NP_ETIMEOUT && r->spurious) return false;
  wl_bad(r, what, got);
  return false;
}

typedef struct wl_acceptor {
  np_fd *l;
  np_fd *conn;
  long ret;
} wl_acceptor;

static void *wl_acceptor_main(void *arg) {
  wl_acceptor *a = arg;
  t_marked = true;
  a->ret = np_accept(a->l, &a->conn, NULL, NULL);
  return NULL;
}

typedef struct wl_writer {
  wl_run *r;
  np_fd *c;
} wl_writer;

/* 16 KiB with np_write, 2 x 8 KiB with np_writev, 32 KiB with np_write, then
 * close: the reader sees EOF right after the last byte written. */
static void *wl_writer_main(void *arg) {
  wl_writer *w = arg;
  wl_run *r = w->r;
  t_marked = true;
  size_t total = 0, n = 0;
  int ret = np_write(w->c, g_payload, 16384, &n);
  total += n;
  if (ret == 0) {
    struct iovec iov[2] = {{g_payload + 16384, 8192}, {g_payload + 24576, 8192}};
    ret = np_writev(w->c, iov, 2, &n);
    total += n;
  }
  if (ret == 0) {
    ret = np_write(w->c, g_payload + 32768, 32768, &n);
    total += n;
  }
  r->written = total;
  if (ret != 0) {
    r->writer_failed = true;
    /* The reader failing first may close its end: EPIPE / ECONNRESET. */
    if (!(atomic_load(&r->reader_failed) && (ret == -EPIPE || ret == -ECONNRESET)))
      wl_expect(r, "np_write", ret, 0);
  }
  wl_expect(r, "np_close(client)", np_close(w->c), 0);
  return NULL;
}

static void wl_free(np_fd *f) {
  if (f != NULL) np_free(f);
}

/* Returns normally; violations go to r->bad. */
static void wl_workload(wl_run *r) {
  np_poller *p = NULL;
  np_fd *L = NULL, *C = NULL, *S = NULL;
  bool l_closed = false, s_closed = false;
  int ret = np_poller_create(&p, NULL);
  if (!wl_expect(r, "np_poller_create", ret, 0)) return;

  struct sockaddr_in addr = {.sin_family = AF_INET};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof(addr);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(lfd, 16) != 0 ||
      getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0) {
    wl_bad(r, "listener setup", -errno);
    goto out;
  }
  ret = np_open(p, lfd, &L);
  if (!wl_expect(r, "np_open(listener)", ret, 0)) {
    if (!fd_is_open(lfd)) wl_bad(r, "failed np_open closed the caller's fd", 0);
    close(lfd);
    goto out;
  }
  int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ret = np_open(p, cfd, &C);
  if (!wl_expect(r, "np_open(client)", ret, 0)) {
    if (!fd_is_open(cfd)) wl_bad(r, "failed np_open closed the caller's fd", 0);
    close(cfd);
    goto out;
  }

  np_set_read_deadline(L, np_deadline_after(r->op_ns));
  np_set_write_deadline(C, np_deadline_after(r->op_ns));
  wl_acceptor acc = {.l = L};
  pthread_t at;
  if (pthread_create(&at, NULL, wl_acceptor_main, &acc) != 0) {
    wl_bad(r, "pthread_create", 0);
    goto out;
  }
  ret = np_connect(C, (struct sockaddr *)&addr, sizeof(addr));
  bool connected = wl_expect(r, "np_connect", ret, 0);
  if (!connected) { /* nobody will come: wake the acceptor */
    wl_expect(r, "np_close(listener)", np_close(L), 0);
    l_closed = true;
  }
  pthread_join(at, NULL);
  if (acc.ret == 0) {
    S = acc.conn;
  } else if (!(acc.ret == NP_ECLOSING && !connected)) {
    bool ok = wl_expect(r, "np_accept", acc.ret, 0);
    (void)ok;
    /* An accept4 failure leaves the connection queued: the listener must
     * still deliver it. */
    if (connected && r->which == SC_ACCEPT4) {
      np_set_read_deadline(L, np_deadline_after(10000 * MS));
      ret = np_accept(L, &S, NULL, NULL);
      if (ret != 0) wl_bad(r, "np_accept after a failed accept", ret);
    }
  }
  if (!connected || S == NULL) goto out;

  /* A read deadline on a quiet connection. */
  int64_t t0 = np_now();
  np_set_read_deadline(S, t0 + WL_DEADLINE_MS * MS);
  uint8_t buf[16384];
  long n = np_read(S, buf, sizeof(buf));
  if (n == NP_ETIMEOUT) {
    if (np_now() - t0 < WL_DEADLINE_MS * MS) wl_bad(r, "read deadline fired early", n);
  } else {
    wl_expect(r, "np_read(deadline)", n, NP_ETIMEOUT);
  }
  np_set_read_deadline(S, np_deadline_after(r->op_ns));

  /* 64 KiB from C to S, read with np_read and np_readv alternately. */
  wl_writer w = {.r = r, .c = C};
  pthread_t wt;
  if (pthread_create(&wt, NULL, wl_writer_main, &w) != 0) {
    wl_bad(r, "pthread_create", 0);
    goto out;
  }
  for (int k = 0;; k++) {
    if (k % 2 == 0) {
      n = np_read(S, buf, sizeof(buf));
    } else {
      struct iovec iov[2] = {{buf, 5000}, {buf + 5000, sizeof(buf) - 5000}};
      n = np_readv(S, iov, 2);
    }
    if (n == 0) break;
    if (n < 0) {
      atomic_store(&r->reader_failed, true);
      wl_expect(r, k % 2 == 0 ? "np_read" : "np_readv", n, 0);
      /* The writer may be blocked on a full window. */
      wl_expect(r, "np_close(server)", np_close(S), 0);
      s_closed = true;
      break;
    }
    for (long i = 0; i < n; i++) {
      if (r->got + (size_t)i >= WL_LEN || buf[i] != g_payload[r->got + (size_t)i]) {
        wl_bad(r, "reader: stream differs at byte", (long)(r->got + (size_t)i));
        break;
      }
    }
    r->got += (size_t)n;
  }
  pthread_join(wt, NULL);
  if (!atomic_load(&r->reader_failed) && r->got != r->written) {
    char what[96];
    snprintf(what, sizeof(what), "reader got %zu bytes of %zu written:", r->got, r->written);
    wl_bad(r, what, 0);
  }
  if (!s_closed) wl_expect(r, "np_close(server)", np_close(S), 0);

out:
  if (L != NULL && !l_closed) wl_expect(r, "np_close(listener)", np_close(L), 0);
  if (p != NULL) {
    wl_free(S);
    wl_free(C);
    wl_free(L);
    np_stats s = stats(p);
    if (s.fds_open != 0 || s.waiters_parked != 0)
      wl_bad(r, "left open/parked", (long)(s.fds_open * 1000 + s.waiters_parked));
    th_poller_destroy(p);
  }
}

typedef struct wl_job {
  wl_run *r;
  int fds_before, fds_after;
  atomic_int done;
} wl_job;

static void *wl_job_main(void *arg) {
  wl_job *j = arg;
  t_marked = true;
  j->fds_before = count_fds();
  wl_workload(j->r);
  j->fds_after = count_fds();
  atomic_store(&j->done, 1);
  return NULL;
}

/* Runs the workload on a marked thread with a 20 s watchdog. The fault rule
 * must be armed by the caller. */
static void wl_run_one(wl_run *r, const char *label) {
  wl_job j = {.r = r};
  atomic_init(&j.done, 0);
  pthread_t t = th_start(wl_job_main, &j);
  for (int i = 0; i < 20000 && !atomic_load(&j.done); i++) th_sleep_ms(1);
  if (!atomic_load(&j.done)) fail_msg("%s: the workload hung (> 20 s)", label);
  th_join(t);
  if (r->bad[0] != '\0') fail_msg("%s: %s", label, r->bad);
  if (j.fds_after != j.fds_before)
    fail_msg("%s: %d descriptors before, %d after", label, j.fds_before, j.fds_after);
}

static const int g_sweep_errs[] = {EINTR, EAGAIN, EMFILE, ENOMEM, EBADF};

static int sweep_sel(int which) {
  /* read/write/close on the poller's eventfd / epoll fd are tested above
   * (fatal or ignored by design); everything else counts all descriptors. */
  return which == SC_READ || which == SC_WRITE || which == SC_CLOSE ? SEL_USER : SEL_ANY;
}

static void test_sweep_user_syscalls(void **state) {
  (void)state;
  for (int i = 0; i < WL_LEN; i++) g_payload[i] = pat((size_t)i);
  long runs = 0;
  for (int which = 0; which < SC_COUNT; which++) {
    if (which == SC_EPOLL_WAIT) continue; /* only the poller thread calls it: next test */
    /* A clean run, counting the calls this workload makes. */
    fault_watch(which, sweep_sel(which), -1, SCOPE_MARKED);
    wl_run clean = {.which = which, .err = 0, .op_ns = 10000 * MS};
    wl_run_one(&clean, "fault-free run");
    long calls = fault_calls(which);
    if (calls == 0) fail_msg("the workload never calls %s", sc_name[which]);
    int64_t t0 = np_now();
    for (size_t e = 0; e < sizeof(g_sweep_errs) / sizeof(g_sweep_errs[0]); e++) {
      int err = g_sweep_errs[e];
      for (long nth = 1; nth <= calls + 1; nth++) {
        wl_run r = {.which = which, .err = err};
        r.spurious = err == EAGAIN || which == SC_GETPEERNAME;
        r.op_ns = (r.spurious ? 300 : 10000) * MS;
        fault_arm(which, (fault_spec){.nth = nth,
                                      .err = err,
                                      .sel = sweep_sel(which),
                                      .scope = SCOPE_MARKED,
                                      /* a real EINTR from connect: the attempt goes on */
                                      .call_real = which == SC_CONNECT && err == EINTR});
        char label[96];
        snprintf(label, sizeof(label), "%s call %ld failing with %s", sc_name[which], nth,
                 strerrorname_np(err));
        wl_run_one(&r, label);
        long fired = fault_fired(which);
        int op = atomic_load(&g_rules[which].fired_op);
        bool ignored = (which == SC_EPOLL_CTL && op == EPOLL_CTL_DEL) || which == SC_GETPEERNAME;
        if (fired > 0 && err != EINTR && err != EAGAIN && !ignored && !r.surfaced)
          fail_msg("%s: the fault fired but no call reported %s", label, strerrorname_np(err));
        runs++;
      }
    }
    fault_clear_all();
    print_message("sweep: %-12s %2ld calls x %zu errnos: %lld ms\n", sc_name[which], calls,
                  sizeof(g_sweep_errs) / sizeof(g_sweep_errs[0]), (long long)((np_now() - t0) / MS));
  }
  print_message("sweep: %ld faulted runs\n", runs);
}

/* epoll_wait in the poller thread: EINTR at every position, and every other
 * call: the workload must succeed exactly as without faults. */
static void test_sweep_epoll_wait_eintr(void **state) {
  (void)state;
  for (int i = 0; i < WL_LEN; i++) g_payload[i] = pat((size_t)i);
  fault_watch(SC_EPOLL_WAIT, SEL_ANY, -1, SCOPE_UNMARKED);
  wl_run clean = {.op_ns = 10000 * MS};
  wl_run_one(&clean, "fault-free run");
  long calls = fault_calls(SC_EPOLL_WAIT);
  assert_true(calls > 0);
  for (long nth = 1; nth <= calls + 1; nth++) {
    for (int every = 0; every < 2; every++) {
      wl_run r = {.which = SC_EPOLL_WAIT, .err = EINTR, .op_ns = 10000 * MS};
      fault_arm(SC_EPOLL_WAIT, (fault_spec){.nth = nth,
                                            .every = every ? 2 : 1,
                                            .count = every ? LONG_MAX : 1,
                                            .err = EINTR,
                                            .scope = SCOPE_UNMARKED});
      char label[96];
      snprintf(label, sizeof(label), "epoll_wait call %ld%s failing with EINTR", nth,
               every ? " and every 2nd after" : "");
      wl_run_one(&r, label);
      if (r.surfaced) fail_msg("%s: EINTR reached the caller", label);
      if (r.got != WL_LEN) fail_msg("%s: %zu of %d bytes", label, r.got, WL_LEN);
    }
  }
  fault_clear_all();
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      T(test_create_epoll_create1_fails),
      T(test_create_eventfd_fails),
      T(test_create_epoll_ctl_fails),
      T(test_open_epoll_ctl_add_fails),
      T(test_open_fcntl_fails),
      T(test_read_eintr_retried),
      T(test_read_eagain_parks_until_ready),
      T(test_read_error_returned),
      T(test_write_eintr_retried),
      T(test_write_returning_zero_is_eio),
      T(test_write_eagain_parks_until_writable),
      T(test_write_error_reports_written),
      T(test_accept_eintr_econnaborted_retried),
      T(test_accept_eagain_parks),
      T(test_accept_errors_listener_keeps_working),
      T(test_accept_register_fails_closes_conn),
      T(test_make_register_fails_closes_all),
      T(test_connect_error_returned),
      T(test_connect_eintr_completes),
      T(test_connect_getsockopt_fails),
      T(test_connect_spurious_wakeup_waits_again),
      T(test_close_error_returned_fd_released),
      T(test_close_epoll_ctl_del_fails_ignored),
      T(test_destroy_close_errors_ignored),
      T(test_netpoll_eintr_blocking_retried),
      T(test_netpoll_eintr_timed_returns_no_events),
      T(test_poller_thread_eintr_storm),
      T(test_break_faults_tolerated),
      T(test_poller_failure_reported),
      T(test_sweep_user_syscalls),
      T(test_sweep_epoll_wait_eintr),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
