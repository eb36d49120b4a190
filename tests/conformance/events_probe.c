/*
 * events_probe.c - np_events_probe: the simulated kernel's event table,
 * proved against Linux. One table of cases (a file kind and a sequence of
 * steps on it and its peer), two implementations of the steps: real Linux
 * descriptors (pipe2, socketpair, an AF_UNIX listener, eventfd) with a real
 * epoll instance, and the simulated kernel (sim/kernel.h) with its epoll.
 * For every case it records, on both:
 *
 *   mask   what poll() reports at the end (kern_poll_mask in the simulator);
 *   event  what an edge-triggered epoll_wait reports at the end, for the
 *          registration netpoll makes (IN|OUT|RDHUP|ET, made before the
 *          steps, its first report drained), "-" for nothing;
 *   write  then a one-byte write (8 for an eventfd: the value 1): ok or an errno;
 *   read   then a one-byte read (8 for an eventfd): data, eof or an errno;
 *
 * prints one row per case with the waiters the core must wake for that
 * event (sim/oracle.h) and exits 1 on any difference. A case the simulator
 * cannot express (its reason says why) is printed as "not modelled" and
 * does not fail; docs/DESIGN.md lists them.
 *
 * Usage: np_events_probe [-v]
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "kernel.h"
#include "oracle.h"
#include "sched.h"

enum kind { PIPE_R, PIPE_W, SOCK, ACCEPTED, CLIENT, LISTENER, EVENTFD };
static const char *const kind_names[] = {"pipe read end", "pipe write end",  "socketpair end",
                                         "accepted end",  "client (queued)", "listener",
                                         "eventfd"};

enum step {
  END,
  PEER_WRITE,   /* the peer writes 100 bytes */
  SELF_WRITE,   /* this end writes 100 bytes */
  SELF_FILL,    /* this end writes until EAGAIN */
  PEER_FILL,    /* the peer writes until EAGAIN */
  SELF_DRAIN,   /* this end reads until EAGAIN, EOF or an error */
  PEER_DRAIN,   /* the peer reads until EAGAIN, EOF or an error */
  PEER_READ1,   /* the peer reads one byte */
  SELF_READ1,   /* this end reads one byte (an error is consumed) */
  SELF_SHUT,    /* shutdown(SHUT_WR) of this end */
  PEER_SHUT,    /* shutdown(SHUT_WR) of the peer */
  PEER_CLOSE,   /* the peer end is closed (a listener: the listener) */
  RESET,        /* the connection is reset: Linux's af_unix reset (the peer closes with our data unread);
                   the simulator's kern_inject_reset on this end */
  CONNECT,      /* listener: a client connects (the client is the peer) */
  ACCEPT,       /* listener: accept the queued connection */
  EFD_ADD1,     /* eventfd: write 1 */
  EFD_ADD_MAX,  /* eventfd: write 0xfffffffffffffffe (the counter's maximum) */
  EFD_READ,     /* eventfd: read the counter */
  WAIT,         /* epoll_wait: take the events so far (the next report needs a new edge) */
  STEPS_MAX = 8 /* steps per case */
};

typedef struct probe_case {
  enum kind kind;
  const char *name;
  enum step steps[STEPS_MAX];
  const char *not_modelled; /* the simulator cannot express this: why */
} probe_case;

static const probe_case cases[] = {
    {PIPE_R, "fresh", {END}, NULL},
    {PIPE_R, "peer wrote", {PEER_WRITE}, NULL},
    {PIPE_R, "peer wrote, drained", {PEER_WRITE, SELF_DRAIN}, NULL},
    {PIPE_R, "full", {PEER_FILL}, NULL},
    {PIPE_R, "writer closed", {PEER_CLOSE}, NULL},
    {PIPE_R, "writer closed, data unread", {PEER_WRITE, PEER_CLOSE}, NULL},
    {PIPE_R, "writer closed, data drained", {PEER_WRITE, PEER_CLOSE, SELF_DRAIN}, NULL},
    {PIPE_R, "edge: peer wrote, wait, peer wrote", {PEER_WRITE, WAIT, PEER_WRITE}, NULL},
    {PIPE_R, "edge: peer wrote, wait, read 1 byte", {PEER_WRITE, WAIT, SELF_READ1}, NULL},
    {PIPE_R, "edge: peer wrote, wait, writer closed", {PEER_WRITE, WAIT, PEER_CLOSE}, NULL},
    {PIPE_W, "fresh", {END}, NULL},
    {PIPE_W, "full", {SELF_FILL}, NULL},
    {PIPE_W, "full, reader drained", {SELF_FILL, PEER_DRAIN}, NULL},
    {PIPE_W, "full, reader read 1 byte", {SELF_FILL, PEER_READ1}, NULL},
    {PIPE_W, "reader closed", {PEER_CLOSE}, NULL},
    {PIPE_W, "wrote, reader closed", {SELF_WRITE, PEER_CLOSE}, NULL},
    {PIPE_W, "full, reader closed", {SELF_FILL, PEER_CLOSE}, NULL},
    {PIPE_W, "edge: wrote, wait, reader read 1 byte", {SELF_WRITE, WAIT, PEER_READ1}, NULL},
    {PIPE_W, "edge: full, wait, reader drained", {SELF_FILL, WAIT, PEER_DRAIN}, NULL},
    {PIPE_W, "edge: wait, reader closed", {WAIT, PEER_CLOSE}, NULL},
    {SOCK, "fresh", {END}, NULL},
    {SOCK, "peer wrote", {PEER_WRITE}, NULL},
    {SOCK, "peer wrote, drained", {PEER_WRITE, SELF_DRAIN}, NULL},
    {SOCK, "full", {SELF_FILL}, NULL},
    {SOCK, "full, peer drained", {SELF_FILL, PEER_DRAIN}, NULL},
    {SOCK,
     "full, peer read 1 byte",
     {SELF_FILL, PEER_READ1},
     "af_unix is writable again only when at most a quarter of the send buffer is in flight; the "
     "simulator's buffer is writable at one free byte"},
    {SOCK, "peer shut write", {PEER_SHUT}, NULL},
    {SOCK, "peer shut write, data unread", {PEER_WRITE, PEER_SHUT}, NULL},
    {SOCK, "peer shut write, drained", {PEER_WRITE, PEER_SHUT, SELF_DRAIN}, NULL},
    {SOCK, "this side shut write", {SELF_SHUT}, NULL},
    {SOCK, "this side shut write, full", {SELF_FILL, SELF_SHUT}, NULL},
    {SOCK, "both shut (this side first)", {SELF_SHUT, PEER_SHUT}, NULL},
    {SOCK, "both shut (peer first)", {PEER_SHUT, SELF_SHUT}, NULL},
    {SOCK, "both shut, full", {SELF_FILL, SELF_SHUT, PEER_SHUT}, NULL},
    {SOCK, "peer closed", {PEER_CLOSE}, NULL},
    {SOCK, "peer closed, our data unread", {PEER_WRITE, PEER_CLOSE}, NULL},
    {SOCK, "peer closed, its data unread", {SELF_WRITE, PEER_CLOSE}, NULL},
    {SOCK, "peer closed, its data unread, error read", {SELF_WRITE, PEER_CLOSE, SELF_READ1}, NULL},
    {SOCK, "full, peer closed", {SELF_FILL, PEER_CLOSE}, NULL},
    {SOCK, "peer shut write, then closed", {PEER_SHUT, PEER_CLOSE}, NULL},
    {SOCK, "this side shut write, peer closed", {SELF_SHUT, PEER_CLOSE}, NULL},
    {SOCK, "reset", {RESET}, NULL},
    {SOCK, "reset, data unread", {PEER_WRITE, RESET}, NULL},
    {SOCK, "reset, error read", {RESET, SELF_READ1}, NULL},
    {SOCK, "edge: peer wrote, wait, read 1 byte", {PEER_WRITE, WAIT, SELF_READ1}, NULL},
    {SOCK, "edge: peer wrote, wait, peer wrote", {PEER_WRITE, WAIT, PEER_WRITE}, NULL},
    {SOCK, "edge: wrote, wait, peer drained", {SELF_WRITE, WAIT, PEER_DRAIN}, NULL},
    {SOCK, "edge: wait, this side shut write", {WAIT, SELF_SHUT}, NULL},
    {SOCK, "edge: peer shut write, wait, this side shut", {PEER_SHUT, WAIT, SELF_SHUT}, NULL},
    {SOCK, "edge: peer shut write, wait, peer closed", {PEER_SHUT, WAIT, PEER_CLOSE}, NULL},
    {ACCEPTED, "fresh", {END}, NULL},
    {ACCEPTED, "client wrote", {PEER_WRITE}, NULL},
    {ACCEPTED, "client shut write", {PEER_SHUT}, NULL},
    {ACCEPTED, "both shut", {PEER_SHUT, SELF_SHUT}, NULL},
    {ACCEPTED, "client closed", {PEER_CLOSE}, NULL},
    {ACCEPTED, "client closed, its data unread", {SELF_WRITE, PEER_CLOSE}, NULL},
    {CLIENT, "fresh", {END}, NULL},
    {CLIENT, "wrote", {SELF_WRITE}, NULL},
    {CLIENT, "listener closed before accept", {PEER_CLOSE}, NULL},
    {LISTENER, "fresh", {END}, NULL},
    {LISTENER, "connection queued", {CONNECT}, NULL},
    {LISTENER, "connection queued, client closed", {CONNECT, PEER_CLOSE}, NULL},
    {LISTENER, "connection accepted", {CONNECT, ACCEPT}, NULL},
    {LISTENER, "edge: queued, wait, second connection", {CONNECT, WAIT, CONNECT}, NULL},
    {EVENTFD, "fresh", {END}, NULL},
    {EVENTFD, "counter 1", {EFD_ADD1}, NULL},
    {EVENTFD, "counter read back", {EFD_ADD1, EFD_READ}, NULL},
    {EVENTFD, "counter at its maximum", {EFD_ADD_MAX}, NULL},
    {EVENTFD, "edge: counter 1, wait, read back", {EFD_ADD1, WAIT, EFD_READ}, NULL},
    {EVENTFD, "edge: counter 1, wait, add 1", {EFD_ADD1, WAIT, EFD_ADD1}, NULL},
};
#define CASES (sizeof(cases) / sizeof(cases[0]))

/* What one implementation observed for one case. */
typedef struct outcome {
  uint32_t mask, event;
  bool has_event;
  int write, read; /* > 0 ok / data, 0 eof, < 0 -errno; INT32_MIN: not tried */
} outcome;

/* One implementation: descriptors, syscalls returning -errno, an epoll. */
typedef struct probe_ops {
  const char *name;
  int (*setup)(enum kind kind, int *self, int *peer); /* 0 or -errno */
  ssize_t (*read)(int fd, void *buf, size_t len);
  ssize_t (*write)(int fd, const void *buf, size_t len);
  int (*shut)(int fd);
  int (*close)(int fd);
  int (*reset)(int self, int *peer);
  int (*connect)(int listener); /* the client's fd */
  int (*accept)(int listener);
  int (*reg)(int fd); /* register, drain the first report */
  int (*wait)(uint32_t *events);
  uint32_t (*mask)(int fd);
  void (*teardown)(void);
} probe_ops;

/* ---- Linux ------------------------------------------------------------------------------- */

static int lx_ep = -1;
static int lx_fds[16];
static int lx_nfds;
static int lx_listener_serial;

static int lx_keep(int fd) {
  if (fd >= 0 && lx_nfds < (int)(sizeof(lx_fds) / sizeof(lx_fds[0]))) lx_fds[lx_nfds++] = fd;
  return fd;
}

static ssize_t lx_ret(ssize_t r) { return r < 0 ? -errno : r; }
static ssize_t lx_read(int fd, void *buf, size_t len) { return lx_ret(read(fd, buf, len)); }
static ssize_t lx_write(int fd, const void *buf, size_t len) { return lx_ret(write(fd, buf, len)); }
static int lx_shut(int fd) { return (int)lx_ret(shutdown(fd, SHUT_WR)); }

static int lx_close(int fd) {
  for (int i = 0; i < lx_nfds; i++)
    if (lx_fds[i] == fd) lx_fds[i] = -1;
  return (int)lx_ret(close(fd));
}

static int lx_listen(void) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  /* An abstract address: nothing on disk, gone with the socket. */
  int n = snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "np-events-probe-%d-%d", (int)getpid(),
                   ++lx_listener_serial);
  int fd = lx_keep(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0));
  if (fd < 0) return -errno;
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
  if (bind(fd, (struct sockaddr *)&a, len) != 0 || listen(fd, 16) != 0) return -errno;
  return fd;
}

static int lx_connect(int listener) {
  struct sockaddr_un a;
  socklen_t len = sizeof(a);
  if (getsockname(listener, (struct sockaddr *)&a, &len) != 0) return -errno;
  int fd = lx_keep(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0));
  if (fd < 0) return -errno;
  if (connect(fd, (struct sockaddr *)&a, len) != 0) return -errno;
  return fd;
}

static int lx_accept(int listener) {
  int fd = lx_keep(accept4(listener, NULL, NULL, SOCK_NONBLOCK));
  return fd < 0 ? -errno : fd;
}

static int lx_setup(enum kind kind, int *self, int *peer) {
  int fds[2], l;
  lx_nfds = 0;
  switch (kind) {
    case PIPE_R:
    case PIPE_W:
      if (pipe2(fds, O_NONBLOCK) != 0) return -errno;
      *self = lx_keep(fds[kind == PIPE_R ? 0 : 1]);
      *peer = lx_keep(fds[kind == PIPE_R ? 1 : 0]);
      return 0;
    case SOCK:
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0) return -errno;
      *self = lx_keep(fds[0]);
      *peer = lx_keep(fds[1]);
      return 0;
    case EVENTFD:
      *self = lx_keep(eventfd(0, EFD_NONBLOCK));
      *peer = -1;
      return *self < 0 ? -errno : 0;
    default: break;
  }
  if ((l = lx_listen()) < 0) return l;
  if (kind == LISTENER) {
    *self = l;
    *peer = -1;
    return 0;
  }
  int c = lx_connect(l);
  if (c < 0) return c;
  if (kind == CLIENT) {
    *self = c;
    *peer = l;
    return 0;
  }
  *self = lx_accept(l);
  *peer = c;
  return *self < 0 ? *self : 0;
}

/* af_unix has no reset of its own: a connection is reset when the peer
 * closes with data of ours unread (unix_release_sock). */
static int lx_reset(int self, int *peer) {
  if (write(self, "r", 1) != 1) return -errno;
  int r = lx_close(*peer);
  *peer = -1;
  return r;
}

static int lx_reg(int fd) {
  lx_ep = epoll_create1(EPOLL_CLOEXEC);
  if (lx_ep < 0) return -errno;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = 1};
  if (epoll_ctl(lx_ep, EPOLL_CTL_ADD, fd, &ev) != 0) return -errno;
  struct epoll_event out[4];
  return epoll_wait(lx_ep, out, 4, 0) < 0 ? -errno : 0;
}

static int lx_wait(uint32_t *events) {
  struct epoll_event out[4];
  int n = epoll_wait(lx_ep, out, 4, 0);
  if (n < 0) return -errno;
  *events = n > 0 ? out[0].events : 0;
  return n;
}

static uint32_t lx_mask(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP | POLLPRI};
  if (poll(&p, 1, 0) < 0) return UINT32_MAX;
  return (uint32_t)p.revents;
}

static void lx_teardown(void) {
  for (int i = 0; i < lx_nfds; i++)
    if (lx_fds[i] >= 0) close(lx_fds[i]);
  lx_nfds = 0;
  if (lx_ep >= 0) close(lx_ep);
  lx_ep = -1;
}

static const probe_ops linux_ops = {
    "linux",    lx_setup,  lx_read, lx_write, lx_shut, lx_close,    lx_reset,
    lx_connect, lx_accept, lx_reg,  lx_wait,  lx_mask, lx_teardown,
};

/* ---- the simulated kernel ------------------------------------------------------------------ */

#define SIM_CAP 4096
static void *sk_state;

static int sk_setup(enum kind kind, int *self, int *peer) {
  int fds[2], r;
  kern_reset();
  if ((r = sim_backend.create(&sk_state)) != 0) return r;
  switch (kind) {
    case PIPE_R:
    case PIPE_W:
      if ((r = kern_pipe(fds, SIM_CAP)) != 0) return r;
      *self = fds[kind == PIPE_R ? 0 : 1];
      *peer = fds[kind == PIPE_R ? 1 : 0];
      return 0;
    case SOCK:
      if ((r = kern_socketpair(fds, SIM_CAP)) != 0) return r;
      *self = fds[0];
      *peer = fds[1];
      return 0;
    case EVENTFD:
      *self = kern_eventfd();
      *peer = -1;
      return *self < 0 ? *self : 0;
    default: break;
  }
  int l = kern_listen();
  if (l < 0 || kind == LISTENER) {
    *self = l;
    *peer = -1;
    return l < 0 ? l : 0;
  }
  int c = kern_connect(l, SIM_CAP);
  if (c < 0) return c;
  if (kind == CLIENT) {
    *self = c;
    *peer = l;
    return 0;
  }
  *self = sim_backend.accept4(sk_state, l, NULL, NULL, 0);
  *peer = c;
  return *self < 0 ? *self : 0;
}

static int sk_reset(int self, int *peer) {
  (void)peer;
  return kern_inject_reset(self);
}
static int sk_connect(int listener) { return kern_connect(listener, SIM_CAP); }
static int sk_accept(int listener) { return sim_backend.accept4(sk_state, listener, NULL, NULL, 0); }

static int sk_wait(uint32_t *events) {
  np__event out[4];
  int n = sim_backend.wait(sk_state, out, 4, 0);
  *events = 0;
  int mine = 0;
  for (int i = 0; i < n; i++)
    if (out[i].tag == 1) *events = out[i].events, mine++;
  return n < 0 ? n : mine;
}

static int sk_reg(int fd) {
  int r = sim_backend.open(sk_state, fd, 1);
  uint32_t ignored;
  return r != 0 ? r : sk_wait(&ignored) < 0 ? -EIO : 0;
}

static void sk_teardown(void) { kern_reset(); }

static const probe_ops sim_ops = {
    "sim",      sk_setup,  kern_read, kern_write, kern_shutdown_write, kern_close,  sk_reset,
    sk_connect, sk_accept, sk_reg,    sk_wait,    kern_poll_mask,      sk_teardown,
};

/* ---- running a case ------------------------------------------------------------------------ */

static ssize_t fill(const probe_ops *o, int fd) {
  static uint8_t buf[65536];
  size_t chunk = o == &sim_ops ? SIM_CAP : sizeof(buf);
  for (int i = 0; i < 4096; i++) {
    ssize_t n = o->write(fd, buf, chunk);
    if (n == -EAGAIN) return 0;
    if (n <= 0) return n == 0 ? -EIO : n;
  }
  return -EIO;
}

static ssize_t drain(const probe_ops *o, int fd) {
  static uint8_t buf[65536];
  for (int i = 0; i < 4096; i++) {
    ssize_t n = o->read(fd, buf, sizeof(buf));
    if (n <= 0) return n == -EAGAIN || n == 0 || n == -ECONNRESET ? 0 : n;
  }
  return -EIO;
}

static ssize_t efd_write(const probe_ops *o, int fd, uint64_t v) {
  ssize_t n = o->write(fd, &v, sizeof(v));
  return n == 8 ? 0 : n < 0 ? n : -EIO;
}

static ssize_t run_step(const probe_ops *o, enum step s, int self, int *peer) {
  static uint8_t buf[100];
  uint64_t v;
  switch (s) {
    case PEER_WRITE: return o->write(*peer, buf, sizeof(buf)) == sizeof(buf) ? 0 : -EIO;
    case SELF_WRITE: return o->write(self, buf, sizeof(buf)) == sizeof(buf) ? 0 : -EIO;
    case SELF_FILL: return fill(o, self);
    case PEER_FILL: return fill(o, *peer);
    case SELF_DRAIN: return drain(o, self);
    case PEER_DRAIN: return drain(o, *peer);
    case PEER_READ1: return o->read(*peer, buf, 1) == 1 ? 0 : -EIO;
    case SELF_READ1: return o->read(self, buf, 1) == -EAGAIN ? -EIO : 0;
    case SELF_SHUT: return o->shut(self);
    case PEER_SHUT: return o->shut(*peer);
    case PEER_CLOSE: {
      int r = o->close(*peer);
      *peer = -1;
      return r;
    }
    case RESET: return o->reset(self, peer);
    case CONNECT: return (*peer = o->connect(self)) < 0 ? *peer : 0;
    case ACCEPT: return o->accept(self) < 0 ? -EIO : 0;
    case EFD_ADD1: return efd_write(o, self, 1);
    case EFD_ADD_MAX: return efd_write(o, self, UINT64_MAX - 1);
    case EFD_READ: return o->read(self, &v, sizeof(v)) == 8 ? 0 : -EIO;
    case WAIT: return o->wait(&(uint32_t){0}) < 0 ? -EIO : 0;
    default: return -EINVAL;
  }
}

/* Runs one case; 0, or a message about a step that failed. */
static const char *run_case(const probe_ops *o, const probe_case *c, outcome *out) {
  static char err[160];
  int self = -1, peer = -1;
  err[0] = 0;
  *out = (outcome){.read = INT32_MIN, .write = INT32_MIN};
  int r = o->setup(c->kind, &self, &peer);
  if (r == 0) r = o->reg(self);
  for (int i = 0; r == 0 && i < STEPS_MAX && c->steps[i] != END; i++) {
    r = (int)run_step(o, c->steps[i], self, &peer);
    if (r != 0) snprintf(err, sizeof(err), "%s: step %d failed: %s", o->name, i + 1, strerror(-r));
  }
  if (r != 0) {
    o->teardown();
    if (err[0] == 0) snprintf(err, sizeof(err), "%s: setup failed: %s", o->name, strerror(-r));
    return err;
  }
  out->mask = o->mask(self);
  out->has_event = o->wait(&out->event) > 0;
  if (c->kind != LISTENER) {
    uint8_t buf[8] = {1};
    size_t len = c->kind == EVENTFD ? 8 : 1;
    out->write = (int)o->write(self, buf, len);
    out->read = (int)o->read(self, buf, len);
  }
  o->teardown();
  return NULL;
}

/* ---- the table ------------------------------------------------------------------------------ */

static void mask_str(uint32_t m, char *buf, size_t len) {
  static const struct {
    uint32_t bit;
    const char *name;
  } bits[] = {{EPOLLIN, "IN"},       {EPOLLPRI, "PRI"}, {EPOLLOUT, "OUT"},
              {EPOLLRDHUP, "RDHUP"}, {EPOLLHUP, "HUP"}, {EPOLLERR, "ERR"}};
  size_t n = 0;
  buf[0] = 0;
  for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
    if (m & bits[i].bit) n += (size_t)snprintf(buf + n, len - n, "%s%s", n > 0 ? "|" : "", bits[i].name);
  if (m & ~(uint32_t)(EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
    snprintf(buf + n, len - n, "%s%#x", n > 0 ? "|" : "", m);
  if (buf[0] == 0) snprintf(buf, len, "0");
}

static const char *errno_name(int e) {
  switch (e) {
    case EAGAIN: return "EAGAIN";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case ENOTCONN: return "ENOTCONN";
    case ENOTSOCK: return "ENOTSOCK";
    default: return "E?";
  }
}

static void result_str(int r, bool write, char *buf, size_t len) {
  if (r == INT32_MIN)
    snprintf(buf, len, "-");
  else if (r > 0)
    snprintf(buf, len, write ? "ok" : "data");
  else if (r == 0)
    snprintf(buf, len, write ? "0" : "eof");
  else
    snprintf(buf, len, "%s", errno_name(-r));
}

/* "mask event write read" of one outcome. */
static void outcome_str(const outcome *o, char *buf, size_t len) {
  char m[48], e[48], r[24], w[24];
  mask_str(o->mask, m, sizeof(m));
  if (o->has_event)
    mask_str(o->event, e, sizeof(e));
  else
    snprintf(e, sizeof(e), "-");
  result_str(o->write, true, w, sizeof(w));
  result_str(o->read, false, r, sizeof(r));
  snprintf(buf, len, "%-22s %-22s %-12s %-8s", m, e, w, r);
}

static bool same(const outcome *a, const outcome *b) {
  return a->mask == b->mask && a->has_event == b->has_event && a->event == b->event && a->read == b->read &&
         a->write == b->write;
}

static const char *wakes_str(const outcome *o) {
  if (!o->has_event) return "none (no event)";
  bool r = oracle_wakes(o->event, 'r'), w = oracle_wakes(o->event, 'w');
  if (oracle_sets_err_bit(o->event)) return w ? "r: not pollable, w" : "r: not pollable";
  return r && w ? "r w" : r ? "r" : w ? "w" : "none";
}

static outcome sim_out[CASES];
static const char *sim_err[CASES];

static void sim_main(void *arg) {
  (void)arg;
  for (size_t i = 0; i < CASES; i++) sim_err[i] = run_case(&sim_ops, &cases[i], &sim_out[i]);
}

static void no_check(void *ctx, bool quiescent) { (void)ctx, (void)quiescent; }

static int run_simulated(void) {
  static sim_sched s;
  sim_config cfg = {.seed = 1, .step_limit = 10000000};
  sim_init(&s, &cfg);
  kern_reset();
  sim_spawn("probe", sim_main, NULL);
  int rc = sim_run(&s, no_check, NULL, NULL);
  if (rc != 0) fprintf(stderr, "np_events_probe: the simulated run failed: %s\n", s.failure);
  sim_fini(&s);
  kern_reset();
  return rc;
}

int main(int argc, char **argv) {
  bool verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
  signal(SIGPIPE, SIG_IGN);
  if (run_simulated() != 0) return 2;
  int diffs = 0, unmodelled = 0, errors = 0;
  char lx[160], sm[160], name[64];
  printf("%-60s %-22s %-22s %-12s %-8s %s\n", "kind: case", "mask (poll)", "event (ET epoll)", "write",
         "read", "wakes / verdict");
  for (size_t i = 0; i < CASES; i++) {
    const probe_case *c = &cases[i];
    outcome l;
    const char *lerr = run_case(&linux_ops, c, &l);
    snprintf(name, sizeof(name), "%s: %s", kind_names[c->kind], c->name);
    if (lerr != NULL || sim_err[i] != NULL) {
      printf("%-60s ERROR %s\n", name, lerr != NULL ? lerr : sim_err[i]);
      errors++;
      continue;
    }
    outcome_str(&l, lx, sizeof(lx));
    outcome_str(&sim_out[i], sm, sizeof(sm));
    bool eq = same(&l, &sim_out[i]);
    if (eq && c->not_modelled == NULL) {
      printf("%-60s %s %s\n", name, lx, wakes_str(&l));
      continue;
    }
    printf("%-60s %s %s\n", name, lx,
           c->not_modelled != NULL ? (eq ? "not modelled, yet agrees" : "NOT MODELLED") : "DIFFERS");
    printf("%-60s %s %s\n", "  simulator:", sm, wakes_str(&sim_out[i]));
    if (c->not_modelled != NULL) {
      unmodelled++;
      if (verbose || !eq) printf("%-60s %s\n", "  (not modelled:", c->not_modelled);
    } else {
      diffs++;
    }
  }
  printf("\n%zu cases: %d differ, %d not modelled, %d failed to run\n", CASES, diffs, unmodelled, errors);
  return diffs > 0 || errors > 0 ? 1 : 0;
}
