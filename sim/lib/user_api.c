/*
 * user_api.c - netpoll.h's descriptor calls in libnetpoll-sim: the core's
 * own (renamed by user_rename.h), each recorded in the program's trace:
 * virtual time, task, call, fd, bytes, result. The trace is hashed always
 * (the selfcheck compares hashes) and printed only when asked (--trace).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>

#include "kernel.h"
#include "user.h"
#include "user_core.h"

static void hash_in(uint64_t v) {
  for (int i = 0; i < 8; i++) {
    U.hash ^= (v >> (i * 8)) & 0xff;
    U.hash *= 1099511628211ull;
  }
}

static const char *task_name(void) {
  if (sim == NULL || sim->current == NULL || sim->current == &sim->main_task) return "-";
  return sim->current->name;
}

void ut_trace(const char *call, int fd, int64_t arg, int64_t result) {
  if (sim == NULL) return;
  hash_in((uint64_t)(uintptr_t)call[3] << 32 ^ (uint64_t)(uint32_t)fd);
  hash_in((uint64_t)arg ^ (uint64_t)result << 20);
  if (U.trace == NULL) return;
  char res[48];
  if (result < 0 && result > -4096)
    snprintf(res, sizeof(res), "%" PRId64 " (%s)", result, np_strerror((int)result));
  else
    snprintf(res, sizeof(res), "%" PRId64, result);
  char fds[16] = "";
  if (fd >= 0) snprintf(fds, sizeof(fds), "fd %d", fd);
  fprintf(U.trace, "%12.6f ms  %-12s %-18s %-6s %10" PRId64 "  = %s\n", (double)sim->now / 1e6, task_name(),
          call, fds, arg, res);
}

/* An injected fault, in the trace only (not in the run's hash): why a call
 * later fails (a reset, a dial that waits for a retransmitted SYN). */
void ut_trace_note(int fd, const char *what) {
  if (sim == NULL || U.trace == NULL) return;
  char fds[16] = "";
  if (fd >= 0) snprintf(fds, sizeof(fds), "fd %d", fd);
  fprintf(U.trace, "%12.6f ms  %-12s %-18s %-6s %10s  %s\n", (double)sim->now / 1e6, "(kernel)", "", fds, "",
          what);
}

void ut_enter(const char *call, int fd) {
  ut_task *u = ut_self();
  if (u == NULL) return;
  u->call = call;
  u->call_fd = fd;
  u->call_since = sim->now;
}

void ut_leave(void) {
  ut_task *u = ut_self();
  if (u != NULL) u->call = NULL;
}

static int fd_of(const np_fd *f) { return f == NULL ? -1 : f->sysfd; }

/* Whether one of the poller's handles has fd (a list walk without a
 * schedule point: no other task runs meanwhile). */
static bool has_handle(int fd) {
  for (int i = 0; i < UT_POLLERS_MAX; i++)
    for (np_fd *f = U.pollers[i].p != NULL ? U.pollers[i].p->fds : NULL; f != NULL; f = f->next)
      if (f->sysfd == fd) return true;
  return false;
}

/* A real descriptor cannot be simulated: opening one is the program
 * reaching past the simulated kernel (determinism guard). */
static void guard_real_fd(int fd) {
  /* A program gets simulated descriptors only from the network calls, which
   * register them: a number no handle has that the real process has open is a
   * real descriptor (the two tables share numbers; the library's own epoll
   * and eventfd have none of the poller's handles either). */
  if (fd >= 0 && !has_handle(fd) && fcntl(fd, F_GETFD) >= 0)
    sim_fail(
        "determinism: np_open(fd %d): a descriptor of the real kernel, not of the simulated one "
        "(make descriptors with np_listen, np_dial, np_pipe or np_socketpair)",
        fd);
}

int np_open(np_poller *p, int fd, np_fd **out) {
  ut_outside_run("np_open");
  guard_real_fd(fd);
  int r = np__u_open(p, fd, out);
  ut_trace("np_open", fd, 0, r);
  return r;
}

int np_close(np_fd *f) {
  int fd = fd_of(f);
  ut_enter("np_close", fd);
  int r = np__u_close(f);
  ut_leave();
  ut_trace("np_close", fd, 0, r);
  return r;
}

void np_free(np_fd *f) {
  int fd = fd_of(f);
  ut_enter("np_free", fd);
  np__u_free(f);
  ut_leave();
  ut_trace("np_free", fd, 0, 0);
}

/* A simulated descriptor's number, moved past any real one (Linux caps
 * descriptors at 2^20): a system call of the program's own on it fails with
 * EBADF instead of reaching whichever real file shares the number. */
#define UT_SYSFD_BASE (1 << 30)

int np_sysfd(const np_fd *f) {
  int fd = np__u_sysfd(f);
  return fd < 0 ? fd : UT_SYSFD_BASE + fd;
}

ssize_t np_read(np_fd *f, void *buf, size_t len) {
  int fd = fd_of(f);
  ut_enter("np_read", fd);
  ssize_t r = np__u_read(f, buf, len);
  ut_leave();
  ut_trace("np_read", fd, (int64_t)len, r);
  return r;
}

ssize_t np_readv(np_fd *f, const struct iovec *iov, int iovcnt) {
  int fd = fd_of(f);
  ut_enter("np_readv", fd);
  ssize_t r = np__u_readv(f, iov, iovcnt);
  ut_leave();
  ut_trace("np_readv", fd, iovcnt, r);
  return r;
}

/* A write's trace line: its length, and the bytes written or the error. */
static int traced_write(const char *call, int fd, int64_t len, int r, const size_t *written) {
  ut_leave();
  ut_trace(call, fd, len, r == 0 ? (int64_t)*written : r);
  if (r != 0 && *written > 0) ut_trace("  (written)", fd, len, (int64_t)*written);
  return r;
}

int np_write(np_fd *f, const void *buf, size_t len, size_t *written) {
  int fd = fd_of(f);
  size_t w = 0;
  ut_enter("np_write", fd);
  int r = np__u_write(f, buf, len, &w);
  if (written != NULL) *written = w;
  return traced_write("np_write", fd, (int64_t)len, r, &w);
}

int np_writev(np_fd *f, const struct iovec *iov, int iovcnt, size_t *written) {
  int fd = fd_of(f);
  size_t w = 0, len = 0;
  for (int i = 0; iov != NULL && iovcnt <= IOV_MAX && i < iovcnt; i++)
    len += iov[i].iov_len; /* for the trace */
  ut_enter("np_writev", fd);
  int r = np__u_writev(f, iov, iovcnt, &w);
  if (written != NULL) *written = w;
  return traced_write("np_writev", fd, (int64_t)len, r, &w);
}

int np_accept(np_fd *f, np_fd **out, struct sockaddr *addr, socklen_t *addrlen) {
  int fd = fd_of(f);
  ut_enter("np_accept", fd);
  int r = np__u_accept(f, out, addr, addrlen);
  ut_leave();
  ut_trace("np_accept", fd, 0, r == 0 ? fd_of(*out) : r);
  return r;
}

int np_connect(np_fd *f, const struct sockaddr *addr, socklen_t addrlen) {
  int fd = fd_of(f);
  ut_enter("np_connect", fd);
  int r = np__u_connect(f, addr, addrlen);
  ut_leave();
  ut_trace("np_connect", fd, 0, r);
  return r;
}

int np_wait_read(np_fd *f) {
  ut_outside_run("np_wait_read");
  int fd = fd_of(f);
  ut_enter("np_wait_read", fd);
  sim->current->pure_wait = true; /* parks without a syscall's EAGAIN: may wait for the next edge (I8) */
  int r = np__u_wait_read(f);
  sim->current->pure_wait = false;
  ut_leave();
  ut_trace("np_wait_read", fd, 0, r);
  return r;
}

int np_wait_write(np_fd *f) {
  ut_outside_run("np_wait_write");
  int fd = fd_of(f);
  ut_enter("np_wait_write", fd);
  sim->current->pure_wait = true; /* parks without a syscall's EAGAIN: may wait for the next edge (I8) */
  int r = np__u_wait_write(f);
  sim->current->pure_wait = false;
  ut_leave();
  ut_trace("np_wait_write", fd, 0, r);
  return r;
}

/* Deadlines are traced relative to now (the absolute values mean little). */
static int64_t rel(int64_t deadline) { return deadline == 0 ? 0 : deadline - sim->now; }

int np_set_deadline(np_fd *f, int64_t deadline_ns) {
  int r = np__u_set_deadline(f, deadline_ns);
  ut_trace("np_set_deadline", fd_of(f), rel(deadline_ns), r);
  return r;
}

int np_set_read_deadline(np_fd *f, int64_t deadline_ns) {
  int r = np__u_set_read_deadline(f, deadline_ns);
  ut_trace("np_set_rdeadline", fd_of(f), rel(deadline_ns), r);
  return r;
}

int np_set_write_deadline(np_fd *f, int64_t deadline_ns) {
  int r = np__u_set_write_deadline(f, deadline_ns);
  ut_trace("np_set_wdeadline", fd_of(f), rel(deadline_ns), r);
  return r;
}

int np_close_write(np_fd *f) {
  int r = np__u_close_write(f);
  ut_trace("np_close_write", fd_of(f), 0, r);
  return r;
}
