/*
 * backend_epoll.c - the real backend: one epoll instance and an eventfd
 * break, and the descriptor syscalls of the fd layer.
 *
 * Every system call this file makes goes through np__sys (SQLite's aSyscall
 * idea), so a test can make the Nth epoll_wait or read fail with any errno
 * against the real kernel. It must never: block outside wait; retry anything
 * itself (EINTR/EAGAIN policy belongs to the core); return a positive errno.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "np_internal.h"
#include "syscalls.h"

/* The data syscalls, raw when nobody interposes them. glibc's read, send
 * and the rest are cancellation points: in a multi-threaded process each
 * call brackets the syscall with two compare-and-swaps on the thread's
 * cancel state (4 atomics and ~60 instructions a round trip of the echo
 * loop, for a call that never blocks here). syscall(2) has no such wrapper.
 * Anything that interposes the libc functions (socket_wrapper, a sanitizer,
 * a user's LD_PRELOAD shim) gets its calls: raw_io is set only when all six
 * resolve into the object syscall() comes from (libc itself). */
static bool raw_io;

static const void *object_of(const void *fn) {
  Dl_info info;
  return dladdr(fn, &info) != 0 ? info.dli_fbase : NULL;
}

__attribute__((constructor)) static void raw_io_init(void) {
  const void *libc = object_of((const void *)syscall);
  const void *fns[] = {(const void *)read,   (const void *)readv, (const void *)write,
                       (const void *)writev, (const void *)send,  (const void *)sendmsg};
  bool ok = libc != NULL;
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) ok = ok && object_of(fns[i]) == libc;
  raw_io = ok;
}

static ssize_t io_read(int fd, void *buf, size_t len) {
  return raw_io ? syscall(SYS_read, fd, buf, len) : read(fd, buf, len);
}
static ssize_t io_readv(int fd, const struct iovec *iov, int iovcnt) {
  return raw_io ? syscall(SYS_readv, fd, iov, iovcnt) : readv(fd, iov, iovcnt);
}
static ssize_t io_write(int fd, const void *buf, size_t len) {
  return raw_io ? syscall(SYS_write, fd, buf, len) : write(fd, buf, len);
}
static ssize_t io_writev(int fd, const struct iovec *iov, int iovcnt) {
  return raw_io ? syscall(SYS_writev, fd, iov, iovcnt) : writev(fd, iov, iovcnt);
}
static ssize_t io_send(int fd, const void *buf, size_t len, int flags) {
  return raw_io ? syscall(SYS_sendto, fd, buf, len, flags, NULL, 0) : send(fd, buf, len, flags);
}
static ssize_t io_sendmsg(int fd, const struct msghdr *msg, int flags) {
  return raw_io ? syscall(SYS_sendmsg, fd, msg, flags) : sendmsg(fd, msg, flags);
}

static int fcntl_get(int fd) { return fcntl(fd, F_GETFL); }
static int fcntl_set(int fd, int flags) { return fcntl(fd, F_SETFL, flags); }

np__syscalls np__sys = {
    .epoll_create1 = epoll_create1,
    .epoll_ctl = epoll_ctl,
    .epoll_wait = epoll_wait,
    .eventfd = eventfd,
    .read = io_read,
    .readv = io_readv,
    .write = io_write,
    .writev = io_writev,
    .send = io_send,
    .sendmsg = io_sendmsg,
    .accept4 = accept4,
    .connect = connect,
    .getsockopt = getsockopt,
    .getpeername = getpeername,
    .shutdown = shutdown,
    .fcntl_getfl = fcntl_get,
    .fcntl_setfl = fcntl_set,
    .close = close,
    .fstat = fstat,
};

typedef struct epoll_state {
  int epfd;                     /* the epoll instance; CLOEXEC */
  int breakfd;                  /* eventfd, registered level-triggered with tag 0 */
  uint64_t epfd_id, breakfd_id; /* their identities: destroy closes only these files */
} epoll_state;

#define EPOLL_EVENTS_MAX NP__EVENTS_MAX

static int neg_errno(void) { return errno > 0 ? -errno : -EIO; }

static int ep_identity(void *state, int fd, uint64_t *id) {
  (void)state;
  struct stat st;
  if (np__sys.fstat(fd, &st) != 0) return neg_errno();
  *id = ((uint64_t)st.st_dev << 40) ^ (uint64_t)st.st_ino;
  return 0;
}

/* Closes one of our own descriptors only if its number still names the
 * file it was (a stale handle's close(2) may have freed the number for
 * someone else's file). */
static void close_own(int fd, uint64_t id) {
  uint64_t now;
  if (ep_identity(NULL, fd, &now) == 0 && now == id) np__sys.close(fd);
}

static int ep_create(void **out) {
  epoll_state *s = malloc(sizeof(*s));
  if (s == NULL) return -ENOMEM;
  s->epfd = np__sys.epoll_create1(EPOLL_CLOEXEC);
  if (s->epfd < 0) {
    int err = neg_errno();
    free(s);
    return err;
  }
  s->breakfd = np__sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->breakfd < 0) {
    int err = neg_errno();
    np__sys.close(s->epfd);
    free(s);
    return err;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
  if (ep_identity(s, s->epfd, &s->epfd_id) != 0 || ep_identity(s, s->breakfd, &s->breakfd_id) != 0 ||
      np__sys.epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->breakfd, &ev) != 0) {
    int err = neg_errno();
    np__sys.close(s->breakfd);
    np__sys.close(s->epfd);
    free(s);
    return err;
  }
  *out = s;
  return 0;
}

static void ep_destroy(void *state) {
  epoll_state *s = state;
  close_own(s->breakfd, s->breakfd_id);
  close_own(s->epfd, s->epfd_id);
  free(s);
}

static int ep_open(void *state, int fd, uint64_t tag) {
  epoll_state *s = state;
  NP_ASSERT(tag != 0);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET, .data.u64 = tag};
  return np__sys.epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : neg_errno();
}

static int ep_close(void *state, int fd) {
  epoll_state *s = state;
  struct epoll_event ev = {0};
  return np__sys.epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, &ev) == 0 ? 0 : neg_errno();
}

/* Timeouts are rounded up to whole milliseconds: a 0.3 ms deadline becomes a
 * 1 ms sleep, never a 0 ms busy poll; very long ones are capped (the caller
 * recomputes after waking). */
static int delay_to_ms(int64_t delay_ns) {
  if (delay_ns < 0) return -1;
  if (delay_ns == 0) return 0;
  const int64_t cap_ms = 1000000000; /* ~11.6 days */
  int64_t ms = delay_ns / 1000000 + (delay_ns % 1000000 != 0);
  return (int)(ms > cap_ms ? cap_ms : ms);
}

static int ep_wait(void *state, np__event *events, int events_max, int64_t delay_ns) {
  epoll_state *s = state;
  NP_ASSERT(events_max > 0 && events_max <= EPOLL_EVENTS_MAX);
  struct epoll_event buf[EPOLL_EVENTS_MAX]; /* per call: concurrent polls are allowed */
  int n = np__sys.epoll_wait(s->epfd, buf, events_max, delay_to_ms(delay_ns));
  if (n < 0) return neg_errno();
  NP_ASSERT(n <= events_max);
  for (int i = 0; i < n; i++) {
    events[i].events = buf[i].events;
    events[i].tag = buf[i].data.u64;
  }
  return n;
}

static int ep_wake(void *state) {
  epoll_state *s = state;
  uint64_t one = 1;
  for (;;) {
    ssize_t n = np__sys.write(s->breakfd, &one, sizeof(one));
    if (n == (ssize_t)sizeof(one)) return 0;
    if (n < 0 && errno == EINTR) continue;
    return n < 0 ? neg_errno() : -EIO;
  }
}

static int ep_drain(void *state) {
  epoll_state *s = state;
  uint64_t count;
  for (;;) {
    ssize_t n = np__sys.read(s->breakfd, &count, sizeof(count));
    if (n == (ssize_t)sizeof(count)) return 0;
    if (n < 0 && errno == EINTR) continue;
    return n < 0 ? neg_errno() : -EIO;
  }
}

static ssize_t ep_read(void *state, int fd, void *buf, size_t len) {
  (void)state;
  ssize_t n = np__sys.read(fd, buf, len);
  return n < 0 ? neg_errno() : n;
}

static ssize_t ep_readv(void *state, int fd, const struct iovec *iov, int iovcnt) {
  (void)state;
  ssize_t n = np__sys.readv(fd, iov, iovcnt);
  return n < 0 ? neg_errno() : n;
}

static ssize_t ep_write(void *state, int fd, const void *buf, size_t len) {
  (void)state;
  ssize_t n = np__sys.write(fd, buf, len);
  return n < 0 ? neg_errno() : n;
}

static ssize_t ep_writev(void *state, int fd, const struct iovec *iov, int iovcnt) {
  (void)state;
  ssize_t n = np__sys.writev(fd, iov, iovcnt);
  return n < 0 ? neg_errno() : n;
}

/* A socket's write without SIGPIPE: a peer that is gone gives EPIPE alone,
 * as Go's writes do. ENOTSOCK (a pipe, a tty, a file) tells the caller to
 * write(2) that handle. */
static ssize_t ep_send(void *state, int fd, const void *buf, size_t len) {
  (void)state;
  ssize_t n = np__sys.send(fd, buf, len, MSG_NOSIGNAL);
  return n < 0 ? neg_errno() : n;
}

static ssize_t ep_sendv(void *state, int fd, const struct iovec *iov, int iovcnt) {
  (void)state;
  struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
  ssize_t n = np__sys.sendmsg(fd, &msg, MSG_NOSIGNAL);
  return n < 0 ? neg_errno() : n;
}

static int ep_accept4(void *state, int fd, struct sockaddr *addr, socklen_t *addrlen, int flags) {
  (void)state;
  int s = np__sys.accept4(fd, addr, addrlen, flags);
  return s < 0 ? neg_errno() : s;
}

static int ep_connect(void *state, int fd, const struct sockaddr *addr, socklen_t addrlen) {
  (void)state;
  return np__sys.connect(fd, addr, addrlen) == 0 ? 0 : neg_errno();
}

static int ep_getsockopt_error(void *state, int fd, int *so_error) {
  (void)state;
  socklen_t len = sizeof(*so_error);
  return np__sys.getsockopt(fd, SOL_SOCKET, SO_ERROR, so_error, &len) == 0 ? 0 : neg_errno();
}

static int ep_getpeername(void *state, int fd) {
  (void)state;
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  return np__sys.getpeername(fd, (struct sockaddr *)&ss, &len) == 0 ? 0 : neg_errno();
}

static int ep_shutdown_write(void *state, int fd) {
  (void)state;
  return np__sys.shutdown(fd, SHUT_WR) == 0 ? 0 : neg_errno();
}

static int ep_setnonblock(void *state, int fd) {
  (void)state;
  int flags = np__sys.fcntl_getfl(fd);
  if (flags < 0) return neg_errno();
  if (flags & O_NONBLOCK) return 0;
  return np__sys.fcntl_setfl(fd, flags | O_NONBLOCK) == 0 ? 0 : neg_errno();
}

static int ep_close_fd(void *state, int fd) {
  (void)state;
  /* Linux releases the descriptor even when close reports EINTR: never retry. */
  return np__sys.close(fd) == 0 ? 0 : neg_errno();
}

const np__backend np__backend_epoll = {
    .name = "epoll",
    .create = ep_create,
    .destroy = ep_destroy,
    .open = ep_open,
    .close = ep_close,
    .wait = ep_wait,
    .wake = ep_wake,
    .drain = ep_drain,
    .read = ep_read,
    .readv = ep_readv,
    .write = ep_write,
    .writev = ep_writev,
    .send = ep_send,
    .sendv = ep_sendv,
    .accept4 = ep_accept4,
    .connect = ep_connect,
    .getsockopt_error = ep_getsockopt_error,
    .getpeername = ep_getpeername,
    .setnonblock = ep_setnonblock,
    .close_fd = ep_close_fd,
    .shutdown_write = ep_shutdown_write,
    .identity = ep_identity,
};
