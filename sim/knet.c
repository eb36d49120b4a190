/*
 * knet.c - the simulated network (see kernel.h): stream sockets of one
 * simulated host, with connect latency, refusal, lost SYNs, delayed
 * delivery and resets drawn from the run's PRNG. The network's own task
 * (kern_net_main) makes due events happen; everything else is a syscall of
 * the backend (kernel.c) or of libnetpoll-sim's network calls.
 */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "kernel_impl.h"
#include "sched.h"

#define SEC INT64_C(1000000000)
#define SYN_RETRIES 6 /* Linux's tcp_syn_retries: the connect fails 127 s after the first SYN */
#define PORT_FIRST 32768

kern_net *kern_net_get(void) { return &K.net; }

void kern_net_kick(void) {
  if (K.net_waiter != NULL) sim_wake(K.net_waiter);
}

static int64_t latency(void) {
  if (!K.net.on || K.net.latency_max <= 0) return 0;
  return (int64_t)sim_rand_below((uint64_t)K.net.latency_max + 1);
}

/* ---- addresses --------------------------------------------------------------- */

/* Does any file name path slot i + 1, or does its socket file exist? */
static bool path_in_use(int i) {
  uint32_t id = (uint32_t)i + 1;
  if (K.path_bound[i]) return true;
  for (int fd = 0; fd < K.fd_end; fd++) {
    const kfile *f = &K.files[fd];
    if (f->kind == K_FREE) continue;
    if ((f->local.family == AF_UNIX && f->local.path == id) ||
        (f->remote.family == AF_UNIX && f->remote.path == id) ||
        (f->target.family == AF_UNIX && f->target.path == id))
      return true;
  }
  return false;
}

/* A slot for path: its own, a new one, or one no file and no socket file
 * names any more (a program may use any number of names over a run, up
 * to KERN_PATHS_MAX at once). */
static uint32_t intern_path(const char *path) {
  for (int i = 0; i < K.path_count; i++)
    if (strcmp(K.paths[i], path) == 0) return (uint32_t)i + 1;
  int slot = K.path_count < KERN_PATHS_MAX ? K.path_count++ : -1;
  for (int i = 0; slot < 0 && i < K.path_count; i++)
    if (!path_in_use(i)) slot = i;
  if (slot < 0) return 0;
  snprintf(K.paths[slot], sizeof(K.paths[0]), "%s", path);
  return (uint32_t)slot + 1;
}

static int to_kaddr(const struct sockaddr *sa, socklen_t len, kaddr *a) {
  memset(a, 0, sizeof(*a));
  if (sa == NULL || len < (socklen_t)sizeof(sa_family_t)) return -EINVAL;
  a->family = sa->sa_family;
  if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *in = (const void *)sa;
    a->port = ntohs(in->sin_port);
    memcpy(a->ip, &in->sin_addr, 4);
    return 0;
  }
  if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *in6 = (const void *)sa;
    a->port = ntohs(in6->sin6_port);
    memcpy(a->ip, &in6->sin6_addr, 16);
    return 0;
  }
  if (sa->sa_family == AF_UNIX && len > (socklen_t)sizeof(sa_family_t)) {
    const struct sockaddr_un *un = (const void *)sa;
    size_t n = (size_t)len - sizeof(sa_family_t);
    char path[sizeof(un->sun_path) + 1];
    if (n > sizeof(un->sun_path)) return -EINVAL;
    memcpy(path, un->sun_path, n);
    path[n] = 0;
    if (n == 0 || (path[0] == 0 && n == 1)) return -EINVAL;
    if (path[0] == 0) path[0] = '@'; /* the abstract namespace */
    a->path = intern_path(path);
    return a->path == 0 ? -ENOMEM : 0;
  }
  return sa->sa_family == AF_INET || sa->sa_family == AF_INET6 || sa->sa_family == AF_UNIX ? -EINVAL
                                                                                           : -EAFNOSUPPORT;
}

static socklen_t from_kaddr(const kaddr *a, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  ss->ss_family = a->family;
  if (a->family == AF_INET) {
    struct sockaddr_in *in = (void *)ss;
    in->sin_port = htons(a->port);
    memcpy(&in->sin_addr, a->ip, 4);
    return sizeof(*in);
  }
  if (a->family == AF_INET6) {
    struct sockaddr_in6 *in6 = (void *)ss;
    in6->sin6_port = htons(a->port);
    memcpy(&in6->sin6_addr, a->ip, 16);
    return sizeof(*in6);
  }
  struct sockaddr_un *un = (void *)ss;
  if (a->path == 0) return sizeof(sa_family_t); /* unnamed */
  const char *path = K.paths[a->path - 1];
  size_t n = strlen(path);
  memcpy(un->sun_path, path, n);
  if (path[0] == '@') un->sun_path[0] = 0;
  return (socklen_t)(sizeof(sa_family_t) + n + (path[0] == '@' ? 0 : 1));
}

socklen_t kern__net_sockaddr(const kaddr *a, struct sockaddr_storage *ss) {
  kaddr unnamed = {.family = AF_UNIX};
  return from_kaddr(a->family != 0 ? a : &unnamed, ss);
}

static bool inet(uint16_t family) { return family == AF_INET || family == AF_INET6; }

/* A unix path in the filesystem (not the abstract namespace, '@'): bind
 * makes a file that stays after close until unlink, as on Linux. */
static bool is_file(const kaddr *a) {
  return a->family == AF_UNIX && a->path != 0 && K.paths[a->path - 1][0] != '@';
}

int kern_net_unlink(const char *path) {
  for (int i = 0; i < K.path_count; i++) {
    if (strcmp(K.paths[i], path) != 0 || path[0] == '@' || !K.path_bound[i]) continue;
    K.path_bound[i] = false;
    for (int fd = 0; fd < K.fd_end; fd++)
      if (K.files[fd].kind == K_LISTEN && K.files[fd].local.family == AF_UNIX &&
          K.files[fd].local.path == (uint32_t)i + 1)
        K.files[fd].unlinked = true;
    return 0;
  }
  return -ENOENT;
}

static bool ip_any(const kaddr *a) {
  for (int i = 0; i < 16; i++)
    if (a->ip[i] != 0) return false;
  return true;
}

/* ::ffff:a.b.c.d, an IPv4 address in an IPv6 socket's terms. */
static bool v4_mapped(const kaddr *a) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return a->family == AF_INET6 && memcmp(a->ip, prefix, sizeof(prefix)) == 0;
}

/* The IPv4 address a names, if it names one (AF_INET or v4-mapped). */
static bool v4_of(const kaddr *a, uint8_t v4[4]) {
  if (a->family != AF_INET && !v4_mapped(a)) return false;
  memcpy(v4, a->family == AF_INET ? a->ip : a->ip + 12, 4);
  return true;
}

/* a in a socket of family: IPv4 as AF_INET or v4-mapped, IPv6 as it is. */
static kaddr in_family(const kaddr *a, uint16_t family) {
  uint8_t v4[4];
  if (!v4_of(a, v4)) return *a;
  kaddr r = {.family = family, .port = a->port};
  if (family == AF_INET6) r.ip[10] = r.ip[11] = 0xff;
  memcpy(family == AF_INET6 ? r.ip + 12 : r.ip, v4, 4);
  return r;
}

/* The host's address of a's kind: 127.0.0.1 (as a's family) or ::1. */
static kaddr loopback_like(const kaddr *a) {
  uint8_t v4[4];
  kaddr r = {.family = AF_INET, .port = a->port, .ip = {127, 0, 0, 1}};
  if (v4_of(a, v4)) return in_family(&r, a->family);
  r = (kaddr){.family = AF_INET6, .port = a->port};
  r.ip[15] = 1;
  return r;
}

/* The simulated network is one host whose one interface is loopback:
 * 127.0.0.0/8 and ::1 are its addresses. Where a connect to a goes, as
 * Linux routes it: *dest, the address the SYN is for (0.0.0.0 and :: mean
 * the host itself, 127.0.0.1 and ::1), or -ENETUNREACH: no route to any
 * other address (a host with an uplink would send the SYN out; natively a
 * dial to one fails or times out all the same), nor to 127.255.255.255
 * (the loopback net's broadcast). */
static int route(const kaddr *a, kaddr *dest) {
  uint8_t v4[4];
  static const uint8_t loop6[16] = {[15] = 1}, bcast[3] = {255, 255, 255};
  *dest = ip_any(a) || (v4_of(a, v4) && memcmp(v4, (uint8_t[4]){0}, 4) == 0) ? loopback_like(a) : *a;
  if (v4_of(dest, v4)) return v4[0] == 127 && memcmp(v4 + 1, bcast, 3) != 0 ? 0 : -ENETUNREACH;
  return memcmp(dest->ip, loop6, 16) == 0 ? 0 : -ENETUNREACH;
}

/* bind(2) of a, as Linux's inet_bind and inet6_bind on that host: the
 * host's addresses, the wildcards, and (IPv4) multicast and the limited
 * broadcast (inet_addr_type's RTN_MULTICAST, RTN_BROADCAST) may be bound;
 * any other address is -EADDRNOTAVAIL; -EINVAL for a v4-mapped address on
 * a V6ONLY socket, an IPv6 multicast or link-local one (it would need a
 * scope). Measured on Linux 6.18. */
static int bindable(const kaddr *a, bool v6only) {
  uint8_t v4[4];
  static const uint8_t loop6[16] = {[15] = 1}, all[4] = {255, 255, 255, 255};
  if (v4_of(a, v4)) {
    if (a->family == AF_INET6 && v6only) return -EINVAL;
    bool any = memcmp(v4, (uint8_t[4]){0}, 4) == 0, multicast = (v4[0] & 0xf0) == 0xe0;
    return any || v4[0] == 127 || multicast || memcmp(v4, all, 4) == 0 ? 0 : -EADDRNOTAVAIL;
  }
  if (a->ip[0] == 0xff || (a->ip[0] == 0xfe && (a->ip[1] & 0xc0) == 0x80)) return -EINVAL;
  return ip_any(a) || memcmp(a->ip, loop6, 16) == 0 ? 0 : -EADDRNOTAVAIL;
}

/* What a socket bound to an address takes: IPv4 ([0]) and IPv6 ([1])
 * addresses, one or all of each. A v4-mapped address is IPv4; [::]
 * without IPV6_V6ONLY takes both families (Linux's dual-stack socket). */
typedef struct kreach {
  bool has[2], any[2];
  uint8_t ip[2][16];
} kreach;

static kreach reach_of(const kaddr *a, bool v6only) {
  kreach r = {{false}};
  uint8_t v4[4];
  if (v4_of(a, v4)) {
    r.has[0] = true;
    memcpy(r.ip[0], v4, 4);
    r.any[0] = memcmp(v4, (uint8_t[4]){0}, 4) == 0;
    return r;
  }
  r.has[1] = true;
  memcpy(r.ip[1], a->ip, 16);
  r.any[1] = ip_any(a);
  r.has[0] = r.any[0] = r.any[1] && !v6only;
  return r;
}

static bool reaches_meet(const kreach *x, const kreach *y) {
  for (int i = 0; i < 2; i++)
    if (x->has[i] && y->has[i] && (x->any[i] || y->any[i] || memcmp(x->ip[i], y->ip[i], 16) == 0))
      return true;
  return false;
}

/* The listener that a connect to a (its route's destination, v6only
 * true), or a bind of a, meets. Unix: the path. Inet: the port, and the
 * addresses each takes (reach_of): a listener of either family may take
 * an IPv4 connection, and a wildcard on either side takes every address
 * of its families. */
static int find_listener(const kaddr *a, bool v6only) {
  kreach want = reach_of(a, v6only);
  for (int fd = 0; fd < K.fd_end; fd++) {
    const kfile *f = &K.files[fd];
    if (f->kind != K_LISTEN || f->local.family == 0 || f->unlinked) continue;
    if (inet(a->family) && inet(f->local.family) && f->local.port == a->port) {
      kreach have = reach_of(&f->local, f->v6only);
      if (reaches_meet(&want, &have)) return fd;
    }
    if (a->family == AF_UNIX && f->local.family == AF_UNIX && f->local.path == a->path) return fd;
  }
  return -1;
}

/* A port no listener of either family has. */
static bool port_free(uint16_t port) {
  for (int fd = 0; fd < K.fd_end; fd++)
    if (K.files[fd].kind == K_LISTEN && inet(K.files[fd].local.family) && K.files[fd].local.port == port)
      return false;
  return true;
}

static uint16_t ephemeral_port(void) {
  for (int tries = 0; tries < 65536 - PORT_FIRST; tries++) {
    if (K.next_port < PORT_FIRST) K.next_port = PORT_FIRST;
    uint16_t port = K.next_port++;
    if (port_free(port)) return port;
  }
  return 0;
}

/* ---- sockets ----------------------------------------------------------------- */

int kern_net_socket(int family) {
  if (family != AF_INET && family != AF_INET6 && family != AF_UNIX) return -EAFNOSUPPORT;
  int fd = kern__fd_alloc();
  if (fd < 0) return fd;
  K.files[fd] = (kfile){.kind = K_SOCKNEW, .peer = -1, .local = {.family = (uint16_t)family}};
  return fd;
}

/* A unix socket's file is made in a directory of the real file system:
 * bind fails with ENOENT when the directory is missing, ENOTDIR when a
 * component is no directory, as natively. The directory is the machine's,
 * so asking it (stat) keeps runs repeatable on that machine; the
 * simulation never makes or removes a real file. */
static int unix_dir_error(const char *path) {
  char dir[sizeof(K.paths[0])];
  const char *slash = strrchr(path, '/');
  if (slash == NULL) return 0; /* the working directory */
  size_t n = slash == path ? 1 : (size_t)(slash - path);
  memcpy(dir, path, n);
  dir[n] = 0;
  struct stat st;
  int saved = errno, err = stat(dir, &st) != 0 ? -errno : S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
  errno = saved; /* the program's errno is its own */
  return err;
}

int kern_net_listen(int fd, const struct sockaddr *sa, socklen_t len) {
  kfile *f = kern__file(fd);
  if (f == NULL) return -EBADF;
  if (f->kind != K_SOCKNEW || f->connecting || f->sk_err != 0) return -EINVAL;
  kaddr a;
  int err = to_kaddr(sa, len, &a);
  if (err != 0) return err;
  if (inet(a.family) != inet(f->local.family)) return -EINVAL;
  bool v6only = f->v6only_set ? f->v6only : a.family == AF_INET6 && !v4_mapped(&a);
  if (inet(a.family) && (err = bindable(&a, v6only)) != 0) return err;
  if (is_file(&a) && (err = unix_dir_error(K.paths[a.path - 1])) != 0) return err;
  if (find_listener(&a, v6only) >= 0 || (is_file(&a) && K.path_bound[a.path - 1])) return -EADDRINUSE;
  if (inet(a.family) && a.port == 0 && (a.port = ephemeral_port()) == 0) return -EADDRINUSE;
  if (is_file(&a)) K.path_bound[a.path - 1] = true; /* the socket file outlives the socket */
  f->kind = K_LISTEN;
  f->local = a;
  f->v6only = v6only;
  f->backlog_max = KNET_BACKLOG_MAX;
  return 0;
}

int kern_net_set_v6only(int fd, bool on) {
  kfile *f = kern__file(fd);
  if (f == NULL) return -EBADF;
  if (f->kind != K_SOCKNEW && f->kind != K_SOCK && f->kind != K_LISTEN) return -ENOTSOCK;
  if (f->local.family != AF_INET6) return -ENOPROTOOPT;
  if (f->kind != K_SOCKNEW || f->connecting || f->sk_err != 0) return -EINVAL; /* bound: too late */
  f->v6only = on;
  f->v6only_set = true;
  return 0;
}

int kern_net_addr(int fd, bool peer, struct sockaddr_storage *ss, socklen_t *len) {
  kfile *f = kern__file(fd);
  if (f == NULL) return -EBADF;
  if (f->kind != K_SOCK && f->kind != K_SOCKNEW && f->kind != K_LISTEN) return -ENOTSOCK;
  if (peer && (f->kind != K_SOCK || kern__tcp_closed(f))) return -ENOTCONN; /* inet_getname: TCP_CLOSE */
  kaddr a = peer ? f->remote : f->local;
  if (a.family == 0) a.family = AF_UNIX; /* a socketpair's ends are unnamed unix sockets */
  *len = from_kaddr(&a, ss);
  return 0;
}

/* ---- connect ----------------------------------------------------------------- */

static void establish(kfile *f, int fd, kfile *l, int lfd);

/* AF_UNIX connects at once, as Linux's unix_stream_connect: no handshake to
 * lose or delay; a full backlog is EAGAIN for a non-blocking socket. The
 * connection is local IPC: no delivery delay, no middlebox reset. */
static int unix_connect(kfile *f, int fd) {
  int lfd = find_listener(&f->target, true);
  if (lfd < 0) return -ECONNREFUSED;
  kfile *l = &K.files[lfd];
  if (l->backlog_len >= l->backlog_max) return -EAGAIN;
  establish(f, fd, l, lfd);
  return 0;
}

int kern__net_connect(kfile *f, int fd, const struct sockaddr *sa, socklen_t len) {
  if (f->connecting) return -EALREADY;
  if (f->sk_err != 0) { /* a failed connect reports its error once */
    int err = f->sk_err;
    f->sk_err = 0;
    return -err;
  }
  kaddr a;
  int err = to_kaddr(sa, len, &a);
  if (err != 0) return err;
  if (inet(a.family) != inet(f->local.family)) return -EAFNOSUPPORT;
  if (is_file(&a) && !K.path_bound[a.path - 1]) return -ENOENT; /* no such socket file */
  if (!inet(a.family)) {
    f->target = a;
    return unix_connect(f, fd);
  }
  /* tcp_v6_connect: a V6ONLY socket has no route to an IPv4 address */
  if (v4_mapped(&a) && f->v6only) return -ENETUNREACH;
  if ((err = route(&a, &f->target)) != 0) return err;
  /* Bound to the host's address toward the destination (127.0.0.1, as
   * v4-mapped in an IPv6 socket, or ::1) and an ephemeral port. */
  f->local = loopback_like(&f->target);
  f->local.port = ephemeral_port();
  f->connecting = true;
  f->syn_tries = 0;
  f->syn_at = sim->now + latency();
  kern_net_kick();
  (void)fd;
  return -EINPROGRESS;
}

static void connect_failed(kfile *f, int fd, int err) {
  f->connecting = false;
  f->sk_err = err;
  kern__notify(fd);
}

static void establish(kfile *f, int fd, kfile *l, int lfd) {
  uint32_t cap = 1u << (12 + sim_rand_below(5)); /* 4 KiB .. 64 KiB: small ones make writers block */
  kbuf *to_server = kern__buf_new(cap), *to_client = kern__buf_new(cap);
  to_server->users = to_client->users = 2;
  to_server->net = to_client->net = inet(f->target.family);
  to_server->tcp = to_client->tcp = to_server->net;
  kaddr me = f->local, server = in_family(&f->target, l->local.family);
  if (!inet(f->target.family)) server = l->local; /* unix: the listener's path */
  *f = (kfile){.kind = K_SOCK,
               .rx = to_client,
               .tx = to_server,
               .peer = -1,
               .item = f->item,
               .local = me,
               .remote = f->target};
  kern__backlog_push(l, (struct kconn){to_server, to_client, fd, in_family(&me, l->local.family), server});
  kern__notify(fd);
  kern__notify(lfd);
}

/* The SYN arrives: refused, dropped (retried later) or queued on the listener. */
static void syn_arrives(kfile *f, int fd) {
  /* The wait after the last retransmission ran out: 1 + 2 + ... + 64 s. */
  if (f->syn_tries > SYN_RETRIES) {
    kern__note(fd, "connect gives up: every SYN lost (127 s)");
    return connect_failed(f, fd, ETIMEDOUT);
  }
  int lfd = find_listener(&f->target, true);
  if (lfd < 0) return connect_failed(f, fd, ECONNREFUSED);
  kfile *l = &K.files[lfd];
  bool full = l->backlog_len >= l->backlog_max;
  if (!full && !kern__fault(K.net.syn_drop)) return establish(f, fd, l, lfd);
  kern__note(fd, full ? "SYN dropped: the listener's backlog is full" : "fault: SYN lost");
  f->syn_tries++;
  f->syn_at = sim->now + (SEC << (f->syn_tries - 1)) + latency(); /* 1, 2, 4 ... s: Linux's SYN backoff */
}

/* ---- data -------------------------------------------------------------------- */

void kern__net_wrote(int fd, kbuf *b, uint32_t n) {
  int64_t at = sim->now + latency();
  struct kchunk *last =
      b->chunk_len == 0 ? NULL : &b->chunks[(b->chunk_head + b->chunk_len - 1) % KBUF_CHUNKS];
  if (last != NULL && at < last->at) at = last->at; /* a stream arrives in order */
  if (at > sim->now) {
    if (b->chunk_len == KBUF_CHUNKS) { /* no room: the bytes travel with the last chunk */
      last->n += n;
    } else {
      b->chunks[(b->chunk_head + b->chunk_len++) % KBUF_CHUNKS] = (struct kchunk){at, n};
    }
    b->inflight += n;
    kern_net_kick();
  }
  /* A middlebox drops the connection and resets both ends (a NAT or load
   * balancer timing out). Resetting one end alone let the other see its
   * close as a clean EOF, which TCP cannot do: a reset end sends no FIN.
   * A connection still in the backlog has no peer yet: its client alone. */
  if (kern__fault(K.net.reset_write)) {
    kern__note(fd, "fault: the connection reset on the way (both ends)");
    int peer = K.files[fd].peer;
    (void)kern_inject_reset(fd);
    if (peer >= 0) (void)kern_inject_reset(peer);
  }
}

static bool deliver(kbuf *b) {
  bool any = false;
  while (b->chunk_len > 0 && b->chunks[b->chunk_head].at <= sim->now) {
    b->inflight -= b->chunks[b->chunk_head].n;
    b->chunk_head = (uint8_t)((b->chunk_head + 1) % KBUF_CHUNKS);
    b->chunk_len--;
    any = true;
  }
  return any;
}

/* Makes what is due happen; returns the time of the next event, or -1. */
static int64_t run_due(void) {
  int64_t next = -1;
  for (int fd = 0; fd < K.fd_end; fd++) {
    kfile *f = &K.files[fd];
    if (f->kind == K_SOCKNEW && f->connecting && f->syn_at <= sim->now) syn_arrives(f, fd);
    if (f->kind == K_SOCK && f->rx->net && deliver(f->rx)) kern__notify(fd);
    int64_t at = -1;
    if (f->kind == K_SOCKNEW && f->connecting) at = f->syn_at;
    if (f->kind == K_SOCK && f->rx->chunk_len > 0) at = f->rx->chunks[f->rx->chunk_head].at;
    if (at >= 0 && (next < 0 || at < next)) next = at;
  }
  return next;
}

void kern_net_main(const bool *stop) {
  for (;;) {
    int64_t next = run_due();
    if (*stop) return;
    K.net_waiter = sim->current;
    (void)sim_block("network", next);
    K.net_waiter = NULL;
  }
}
