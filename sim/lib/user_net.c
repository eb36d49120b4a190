/*
 * user_net.c - netpoll.h's network calls in libnetpoll-sim: sockets of the
 * simulated network (sim/knet.c), pipes and socket pairs of the simulated
 * kernel, registered with the core exactly as the real calls register
 * real descriptors; np_dial runs the core's connect loop (EINPROGRESS,
 * wait for writability, SO_ERROR) against the simulated handshake.
 */
#include <errno.h>
#include <sys/socket.h>

#include "addr.h"
#include "kernel.h"
#include "user.h"
#include "user_core.h"

static int family_of(const np__addr *a) {
  return a->kind == NP__ADDR_TCP4 ? AF_INET : a->kind == NP__ADDR_TCP6 ? AF_INET6 : AF_UNIX;
}

static int open_fd(np_poller *p, int fd, np_fd **out) {
  int err = np__u_open(p, fd, out);
  if (err != 0) kern_close(fd);
  return err;
}

static int listen_on(np_poller *p, const char *network, const char *address, np_fd **out) {
  if (out != NULL) *out = NULL;
  if (p == NULL || out == NULL) return -EINVAL;
  np__addr a;
  int err = np__addr_parse(network, address, &a);
  if (err != 0) return err;
  int fd = kern_net_socket(family_of(&a));
  if (fd < 0) return fd;
  struct sockaddr_storage ss;
  socklen_t len = np__addr_to_sockaddr(&a, &ss);
  /* "tcp6" is IPv6 only; "tcp" on an IPv6 address takes both families, as
   * on Linux (net.c leaves the system's default, bindv6only 0). */
  if (a.kind == NP__ADDR_TCP6) (void)kern_net_set_v6only(fd, a.v6only);
  err = kern_net_listen(fd, (const struct sockaddr *)&ss, len);
  if (err == -ENOMEM && a.kind == NP__ADDR_UNIX)
    ut_limit("np_listen: at most 32 unix paths per run; returns -ENOMEM");
  if (err != 0) {
    kern_close(fd);
    return err;
  }
  err = open_fd(p, fd, out);
  if (err == 0 && a.kind != NP__ADDR_UNIX) np__fd_own_tcp(*out); /* as net.c */
  return err;
}

int np_listen(np_poller *p, const char *network, const char *address, np_fd **out) {
  ut_outside_run("np_listen");
  int r = listen_on(p, network, address, out);
  ut_trace("np_listen", r == 0 ? (*out)->sysfd : -1, 0, r);
  return r;
}

static int dial(np_poller *p, const char *network, const char *address, int64_t deadline_ns, np_fd **out) {
  if (out != NULL) *out = NULL;
  if (p == NULL || out == NULL) return -EINVAL;
  np__addr a;
  int err = np__addr_parse(network, address, &a);
  if (err != 0) return err;
  int fd = kern_net_socket(family_of(&a));
  if (fd < 0) return fd;
  np_fd *f;
  if ((err = open_fd(p, fd, &f)) != 0) return err;
  if (a.kind != NP__ADDR_UNIX) np__fd_own_tcp(f);
  struct sockaddr_storage ss;
  socklen_t len = np__addr_to_sockaddr(&a, &ss);
  if (deadline_ns != 0) err = np__u_set_write_deadline(f, deadline_ns);
  ut_enter("np_dial", fd);
  if (err == 0) err = np__u_connect(f, (const struct sockaddr *)&ss, len);
  ut_leave();
  if (err == 0 && deadline_ns != 0) err = np__u_set_write_deadline(f, 0);
  if (err != 0) {
    np__u_free(f);
    return err;
  }
  *out = f;
  return 0;
}

int np_dial(np_poller *p, const char *network, const char *address, int64_t deadline_ns, np_fd **out) {
  ut_outside_run("np_dial");
  int64_t timeout = deadline_ns == 0 || sim == NULL ? 0 : deadline_ns - sim->now; /* as given, not as left */
  int r = dial(p, network, address, deadline_ns, out);
  ut_trace("np_dial", r == 0 ? (*out)->sysfd : -1, timeout, r);
  return r;
}

static int addr_of(np_fd *f, bool peer, char *buf, size_t len) {
  if (buf != NULL && len > 0) buf[0] = 0;
  if (f == NULL || buf == NULL) return -EINVAL;
  int fd = np__u_sysfd(f); /* no schedule point from here to the end */
  if (fd < 0) return NP_ECLOSING;
  struct sockaddr_storage ss;
  socklen_t sl;
  int err = kern_net_addr(fd, peer, &ss, &sl);
  if (err != 0) return err;
  np__addr a;
  if ((err = np__addr_from_sockaddr(&ss, sl, &a)) != 0) return err;
  return np__addr_format(&a, buf, len);
}

int np_local_addr(np_fd *f, char *buf, size_t len) { return addr_of(f, false, buf, len); }
int np_remote_addr(np_fd *f, char *buf, size_t len) { return addr_of(f, true, buf, len); }

/* Both ends registered, or neither. */
static int open_pair(np_poller *p, int fds[2], np_fd *out[2]) {
  int err = open_fd(p, fds[0], &out[0]);
  if (err != 0) {
    kern_close(fds[1]);
    return err;
  }
  if ((err = open_fd(p, fds[1], &out[1])) != 0) {
    np__u_free(out[0]);
    out[0] = NULL;
  }
  return err;
}

/* 4 KiB .. 64 KiB asked for: sockets get it, pipes round it to 8-64 KiB
 * (sim/kernel.c: a ring of at least two pages); small ones make writers
 * block. */
static uint32_t pair_capacity(void) { return 1u << (12 + sim_rand_below(5)); }

/* np_pipe / np_socketpair: make the kernel pair, register both ends. */
static int pair(np_poller *p, np_fd *out[2], int (*make)(int fds[2], uint32_t capacity), const char *call) {
  if (out == NULL) return -EINVAL;
  out[0] = out[1] = NULL;
  if (p == NULL) return -EINVAL;
  int fds[2];
  int err = make(fds, pair_capacity());
  if (err == 0) err = open_pair(p, fds, out);
  ut_trace(call, err == 0 ? fds[0] : -1, err == 0 ? fds[1] : -1, err);
  return err;
}

int np_pipe(np_poller *p, np_fd *out[2]) { return pair(p, out, kern_pipe, "np_pipe"); }
int np_socketpair(np_poller *p, np_fd *out[2]) { return pair(p, out, kern_socketpair, "np_socketpair"); }
