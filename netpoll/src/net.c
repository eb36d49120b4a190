/*
 * net.c - the network calls of the real library (netpoll.h, "network"):
 * listening and dialing sockets by address text (addr.h), their addresses
 * as text, pipes and socket pairs, each registered with np_open (from a
 * task: its scheduler's poller). The simulated library has its own.
 *
 * It must never: leak a descriptor on a failure path (a socket not yet
 * registered is closed here, a registered one is np_free'd); return a
 * handle with a deadline still set; touch f->sysfd without a reference.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "np_internal.h"

static int neg_errno(void) { return errno > 0 ? -errno : -EIO; }

/* A new non-blocking, close-on-exec stream socket for a; *sl, *ss its sockaddr. */
static int socket_for(const np__addr *a, struct sockaddr_storage *ss, socklen_t *sl) {
  *sl = np__addr_to_sockaddr(a, ss);
  int s = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  return s < 0 ? neg_errno() : s;
}

static int set_int_option(int s, int level, int name, int value) {
  return setsockopt(s, level, name, &value, sizeof(value)) == 0 ? 0 : neg_errno();
}

static int bind_listen(int s, const np__addr *a, const struct sockaddr_storage *ss, socklen_t sl) {
  int err = 0;
  if (a->kind != NP__ADDR_UNIX) err = set_int_option(s, SOL_SOCKET, SO_REUSEADDR, 1);
  /* Go's default: no Nagle delay. Accepted connections inherit it (Linux
   * copies the listener's TCP_NODELAY), so np_accept adds no syscall. */
  if (err == 0 && a->kind != NP__ADDR_UNIX) err = set_int_option(s, IPPROTO_TCP, TCP_NODELAY, 1);
  /* Always said, as Go does: "tcp" on [::] is dual-stack and "tcp6" is not,
   * whatever net.ipv6.bindv6only makes the default. */
  if (err == 0 && a->kind == NP__ADDR_TCP6)
    err = set_int_option(s, IPPROTO_IPV6, IPV6_V6ONLY, a->v6only ? 1 : 0);
  if (err == 0 && bind(s, (const struct sockaddr *)ss, sl) != 0) err = neg_errno();
  if (err == 0 && listen(s, SOMAXCONN) != 0) err = neg_errno();
  return err;
}

/* Checks the arguments every call shares; *out = NULL first. */
static int net_args(np_poller *p, const char *network, const char *address, np_fd **out, np__addr *a) {
  if (out != NULL) *out = NULL;
  if (p == NULL || out == NULL) return -EINVAL;
  return np__addr_parse(network, address, a);
}

int np_listen(np_poller *p, const char *network, const char *address, np_fd **out) {
  np__addr a;
  int err = net_args(p, network, address, out, &a);
  if (err != 0) return err;
  struct sockaddr_storage ss;
  socklen_t sl;
  int s = socket_for(&a, &ss, &sl);
  if (s < 0) return s;
  err = bind_listen(s, &a, &ss, sl);
  if (err == 0) err = np_open(p, s, out);
  if (err != 0) close(s);
  /* Accepted connections inherit the drained hint (fd.c, read_once). */
  if (err == 0 && a.kind != NP__ADDR_UNIX) np__fd_own_tcp(*out);
  return err;
}

int np_dial(np_poller *p, const char *network, const char *address, int64_t deadline_ns, np_fd **out) {
  np__addr a;
  int err = net_args(p, network, address, out, &a);
  if (err != 0) return err;
  struct sockaddr_storage ss;
  socklen_t sl;
  int s = socket_for(&a, &ss, &sl);
  if (s < 0) return s;
  if (a.kind != NP__ADDR_UNIX && (err = set_int_option(s, IPPROTO_TCP, TCP_NODELAY, 1)) != 0) {
    close(s);
    return err;
  }
  np_fd *f;
  err = np_open(p, s, &f);
  if (err != 0) {
    close(s);
    return err;
  }
  if (a.kind != NP__ADDR_UNIX) np__fd_own_tcp(f);
  /* The deadline bounds the handshake only (np_connect honours the write
   * deadline); a handle closed meanwhile (destroy) fails np_connect. */
  if (deadline_ns != 0) (void)np_set_write_deadline(f, deadline_ns);
  err = np_connect(f, (const struct sockaddr *)&ss, sl);
  if (err == 0 && deadline_ns != 0) err = np_set_write_deadline(f, 0);
  if (err != 0) {
    np_free(f);
    return err;
  }
  *out = f;
  return 0;
}

static int sock_addr(np_fd *f, char *buf, size_t len, bool peer) {
  if (f == NULL || buf == NULL) return -EINVAL;
  if (len == 0) return -ENOSPC;
  buf[0] = '\0';
  int err = np__fd_incref(f);
  if (err != 0) return err;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  int r = peer ? getpeername(f->sysfd, (struct sockaddr *)&ss, &sl)
               : getsockname(f->sysfd, (struct sockaddr *)&ss, &sl);
  err = r == 0 ? 0 : neg_errno();
  np__fd_decref(f);
  np__addr a;
  if (err == 0) err = np__addr_from_sockaddr(&ss, sl, &a);
  if (err == 0) err = np__addr_format(&a, buf, len);
  return err;
}

int np_local_addr(np_fd *f, char *buf, size_t len) { return sock_addr(f, buf, len, false); }
int np_remote_addr(np_fd *f, char *buf, size_t len) { return sock_addr(f, buf, len, true); }

/* Registers both descriptors of a new pair; on failure closes what is not
 * registered and frees what is. */
static int open_pair(np_poller *p, const int raw[2], np_fd *fds[2]) {
  int err = np_open(p, raw[0], &fds[0]);
  if (err != 0) {
    close(raw[0]);
    close(raw[1]);
    return err;
  }
  err = np_open(p, raw[1], &fds[1]);
  if (err != 0) {
    close(raw[1]);
    np_free(fds[0]);
    fds[0] = NULL;
  }
  return err;
}

int np_pipe(np_poller *p, np_fd *fds[2]) {
  if (fds != NULL) fds[0] = fds[1] = NULL;
  if (p == NULL || fds == NULL) return -EINVAL;
  int raw[2];
  if (pipe2(raw, O_NONBLOCK | O_CLOEXEC) != 0) return neg_errno();
  return open_pair(p, raw, fds);
}

int np_socketpair(np_poller *p, np_fd *fds[2]) {
  if (fds != NULL) fds[0] = fds[1] = NULL;
  if (p == NULL || fds == NULL) return -EINVAL;
  int raw[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, raw) != 0) return neg_errno();
  return open_pair(p, raw, fds);
}
