/* test_net.c - the network calls (netpoll.h, "network") on the real
 * kernel: np_listen and np_dial over 127.0.0.1, [::1] (skipped when the
 * host has no IPv6 loopback), ":0", a unix path and an abstract name, with
 * an echo both ways, np_local_addr / np_remote_addr of both ends matching
 * each other, descriptor flags, refused and timed-out dials, np_pipe,
 * np_socketpair, np_close_write, a table of bad arguments that must create
 * nothing (no descriptor leaks), calls from a task, and np_rand. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

/* Open descriptors of this process (the directory's own is not counted). */
static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1;
}

static void expect_flags(np_fd *f) {
  int fd = np_sysfd(f);
  assert_true(fd >= 0);
  assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

static void read_full(np_fd *f, char *buf, size_t len) {
  for (size_t got = 0; got < len;) {
    ssize_t n = np_read(f, buf + got, len - got);
    if (n <= 0) fail_msg("np_read: %zd (%s) after %zu of %zu bytes", n, np_strerror((int)n), got, len);
    got += (size_t)n;
  }
}

/* The port of "host:port" / "[host]:port" text. */
static const char *port_of(const char *text) {
  const char *colon = strrchr(text, ':');
  assert_non_null(colon);
  return colon + 1;
}

/* ---- echo: one accepted connection, every byte back, then EOF ------------ */

typedef struct echo_arg {
  np_fd *ln;
  char local[NP_ADDRSTRLEN]; /* the accepted connection's addresses */
  char remote[NP_ADDRSTRLEN];
  int err; /* first failure, 0 if none */
} echo_arg;

static void *echo_once(void *arg) {
  echo_arg *e = arg;
  np_fd *c;
  e->err = np_accept(e->ln, &c, NULL, NULL);
  if (e->err != 0) return NULL;
  e->err = np_local_addr(c, e->local, sizeof(e->local));
  if (e->err == 0) e->err = np_remote_addr(c, e->remote, sizeof(e->remote));
  char buf[256];
  for (ssize_t n; e->err == 0 && (n = np_read(c, buf, sizeof(buf))) != 0;)
    e->err = n < 0 ? (int)n : np_write(c, buf, (size_t)n, NULL);
  np_free(c); /* the client reads EOF */
  return NULL;
}

/* Listens on (network, address), checks the listener's address against
 * want_prefix, dials (dial_host, or the listener's own address when NULL,
 * with its port), echoes, and checks both ends' addresses agree. */
static void echo_case(const char *network, const char *address, const char *want_prefix,
                      const char *dial_host) {
  np_poller *p = th_poller();
  int fds_before = count_fds();
  echo_arg e = {0};
  assert_int_equal(np_listen(p, network, address, &e.ln), 0);
  expect_flags(e.ln);
  char ln_addr[NP_ADDRSTRLEN], dial_addr[NP_ADDRSTRLEN + 16], buf[NP_ADDRSTRLEN];
  assert_int_equal(np_local_addr(e.ln, ln_addr, sizeof(ln_addr)), 0);
  assert_memory_equal(ln_addr, want_prefix, strlen(want_prefix));
  assert_int_equal(np_remote_addr(e.ln, buf, sizeof(buf)), -ENOTCONN);
  if (strcmp(network, "unix") != 0) assert_string_not_equal(port_of(ln_addr), "0");
  if (dial_host != NULL)
    snprintf(dial_addr, sizeof(dial_addr), "%s:%s", dial_host, port_of(ln_addr));
  else
    snprintf(dial_addr, sizeof(dial_addr), "%s", ln_addr);

  pthread_t t = th_start(echo_once, &e);
  np_fd *c;
  assert_int_equal(np_dial(p, network, dial_addr, np_deadline_after(5000 * MS), &c), 0);
  expect_flags(c);
  char local[NP_ADDRSTRLEN], remote[NP_ADDRSTRLEN];
  assert_int_equal(np_local_addr(c, local, sizeof(local)), 0);
  assert_int_equal(np_remote_addr(c, remote, sizeof(remote)), 0);
  static const char msg[] = "hello, netpoll";
  assert_int_equal(np_write(c, msg, sizeof(msg), NULL), 0);
  read_full(c, buf, sizeof(msg));
  assert_memory_equal(buf, msg, sizeof(msg));
  assert_int_equal(np_close_write(c), 0); /* the echo ends; this side still reads */
  assert_int_equal(np_read(c, buf, sizeof(buf)), 0);
  th_join(t);
  assert_int_equal(e.err, 0);
  assert_string_equal(e.remote, local);
  assert_string_equal(e.local, remote);
  print_message("      %s %s: listener %s, client %s -> %s\n", network, address, ln_addr, local, remote);
  np_free(c);
  np_free(e.ln);
  assert_int_equal(count_fds(), fds_before);
  th_poller_destroy(p);
}

static void test_tcp4_loopback(void **state) {
  (void)state;
  echo_case("tcp", "127.0.0.1:0", "127.0.0.1:", NULL);
  echo_case("tcp4", "localhost:0", "127.0.0.1:", NULL);
}

static void test_tcp_any(void **state) {
  (void)state;
  echo_case("tcp", ":0", "0.0.0.0:", "localhost");
  echo_case("tcp4", ":0", "0.0.0.0:", "127.0.0.1");
}

static bool have_ipv6_loopback(void) {
  int s = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  bool ok = bind(s, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(s);
  return ok;
}

static void test_tcp6_loopback(void **state) {
  (void)state;
  if (!have_ipv6_loopback()) {
    print_message("      skipped: no IPv6 loopback here (binding [::1]:0 failed)\n");
    skip();
  }
  echo_case("tcp", "[::1]:0", "[::1]:", NULL);
  echo_case("tcp6", "localhost:0", "[::1]:", NULL);
  echo_case("tcp6", ":0", "[::]:", "[::1]");
  /* IPV6_V6ONLY is set both ways, not left to net.ipv6.bindv6only. */
  np_poller *p = th_poller();
  const struct {
    const char *network;
    int v6only;
  } cases[] = {{"tcp", 0}, {"tcp6", 1}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    np_fd *l;
    assert_int_equal(np_listen(p, cases[i].network, "[::]:0", &l), 0);
    int v = -1;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(np_sysfd(l), IPPROTO_IPV6, IPV6_V6ONLY, &v, &len), 0);
    assert_int_equal(v, cases[i].v6only);
    np_free(l);
  }
  th_poller_destroy(p);
}

static void test_unix_path(void **state) {
  (void)state;
  char dir[] = "/tmp/np_test_net_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[sizeof(dir) + 8];
  snprintf(path, sizeof(path), "%s/sock", dir);
  echo_case("unix", path, path, NULL);
  struct stat st;
  assert_int_equal(stat(path, &st), 0); /* the listener does not remove its path */
  assert_true(S_ISSOCK(st.st_mode));
  /* The path exists, nobody listens: refused; no path at all: ENOENT. */
  np_poller *p = th_poller();
  np_fd *c = (np_fd *)1;
  assert_int_equal(np_dial(p, "unix", path, 0, &c), -ECONNREFUSED);
  assert_null(c);
  assert_int_equal(unlink(path), 0);
  assert_int_equal(np_dial(p, "unix", path, 0, &c), -ENOENT);
  assert_int_equal(rmdir(dir), 0);
  th_poller_destroy(p);
}

static void test_unix_abstract(void **state) {
  (void)state;
  char name[64];
  snprintf(name, sizeof(name), "@np_test_net.%d.%llx", (int)getpid(), (unsigned long long)np_rand());
  echo_case("unix", name, name, NULL);
  np_poller *p = th_poller();
  np_fd *c;
  assert_int_equal(np_dial(p, "unix", name, 0, &c), -ECONNREFUSED); /* gone with its socket */
  th_poller_destroy(p);
}

/* ---- failures ---------------------------------------------------------- */

static void test_dial_refused(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds_before = count_fds();
  np_fd *ln;
  char addr[NP_ADDRSTRLEN];
  assert_int_equal(np_listen(p, "tcp", "127.0.0.1:0", &ln), 0);
  assert_int_equal(np_local_addr(ln, addr, sizeof(addr)), 0);
  np_free(ln); /* a port nobody listens on now */
  np_fd *c = (np_fd *)1;
  assert_int_equal(np_dial(p, "tcp", addr, 0, &c), -ECONNREFUSED);
  assert_null(c);
  assert_int_equal(np_dial(p, "tcp4", addr, np_deadline_after(5000 * MS), &c), -ECONNREFUSED);
  assert_int_equal(count_fds(), fds_before);
  th_poller_destroy(p);
}

/* A connect that really waits: the listener's accept queue is full, so
 * the kernel drops the SYN (as test_fdops.c's connect deadline test). */
static int full_listener(struct sockaddr_in *addr, int fillers[8], int *nfill) {
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(ls >= 0);
  *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(ls, (struct sockaddr *)addr, sizeof(*addr)), 0);
  assert_int_equal(listen(ls, 0), 0);
  socklen_t len = sizeof(*addr);
  assert_int_equal(getsockname(ls, (struct sockaddr *)addr, &len), 0);
  for (*nfill = 0; *nfill < 8;) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(s >= 0);
    fillers[(*nfill)++] = s;
    if (connect(s, (struct sockaddr *)addr, sizeof(*addr)) == 0) continue;
    assert_int_equal(errno, EINPROGRESS);
    /* Connected within 200 ms unless the queue is full (a loopback
     * handshake takes microseconds); the first always connects. */
    struct pollfd pfd = {.fd = s, .events = POLLOUT};
    int ready = poll(&pfd, 1, *nfill == 1 ? 5000 : 200);
    assert_true(ready >= 0);
    if (ready == 0) return ls;
  }
  for (int i = 0; i < *nfill; i++) close(fillers[i]);
  close(ls);
  return -1;
}

static void test_dial_deadline(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds_before = count_fds();
  struct sockaddr_in sa;
  int fillers[8], nfill;
  int ls = full_listener(&sa, fillers, &nfill);
  if (ls < 0) {
    th_poller_destroy(p);
    print_message("      skipped: the kernel never left a connect pending (backlog 0 admitted 8)\n");
    skip();
  }
  char addr[NP_ADDRSTRLEN];
  snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
  np_fd *c = (np_fd *)1;
  int64_t start = np_now();
  assert_int_equal(np_dial(p, "tcp", addr, np_deadline_after(200 * MS), &c), NP_ETIMEOUT);
  int64_t took = np_now() - start;
  assert_null(c);
  if (took < 190 * MS || took > 3000 * MS)
    fail_msg("the dial took %lld ms, not ~200", (long long)(took / MS));
  /* A deadline already passed: NP_ETIMEOUT at once. */
  assert_int_equal(np_dial(p, "tcp", addr, np_deadline_after(-1), &c), NP_ETIMEOUT);
  for (int i = 0; i < nfill; i++) close(fillers[i]);
  close(ls);
  assert_int_equal(count_fds(), fds_before);
  th_poller_destroy(p);
}

/* The deadline bounds the handshake only: the connection has none. */
static void test_dial_clears_deadline(void **state) {
  (void)state;
  np_poller *p = th_poller();
  np_fd *ln, *c, *s;
  char addr[NP_ADDRSTRLEN];
  assert_int_equal(np_listen(p, "tcp", "127.0.0.1:0", &ln), 0);
  assert_int_equal(np_local_addr(ln, addr, sizeof(addr)), 0);
  assert_int_equal(np_dial(p, "tcp", addr, np_deadline_after(50 * MS), &c), 0);
  assert_int_equal(np_accept(ln, &s, NULL, NULL), 0);
  th_sleep_ms(100);
  assert_int_equal(np_write(c, "x", 1, NULL), 0);
  char b;
  assert_int_equal(np_read(s, &b, 1), 1);
  np_free(s);
  np_free(c);
  np_free(ln);
  th_poller_destroy(p);
}

/* Every bad argument: -EINVAL, nothing created, *out NULL. */
static void test_bad_arguments(void **state) {
  (void)state;
  np_poller *p = th_poller();
  char long_path[200];
  memset(long_path, 'l', sizeof(long_path));
  long_path[sizeof(long_path) - 1] = '\0';
  static const char *const bad[][2] = {
      {NULL, "127.0.0.1:1"},
      {"tcp", NULL},
      {"udp", "127.0.0.1:1"},
      {"tcp4", "[::1]:1"},
      {"tcp6", "127.0.0.1:1"},
      {"tcp", "1.2.3.4"},
      {"tcp", "1.2.3.4:65536"},
      {"tcp", "1.2.3.4:x"},
      {"tcp", ":"},
      {"tcp", ""},
      {"unix", ""},
      {"unix", "@"},
      {"tcp", "example.com:80"},
      {"tcp", "::1:80"},
      {"unix", NULL},
  };
  int fds_before = count_fds();
  np_fd *f;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    f = (np_fd *)1;
    assert_int_equal(np_listen(p, bad[i][0], bad[i][1], &f), -EINVAL);
    assert_null(f);
    f = (np_fd *)1;
    assert_int_equal(np_dial(p, bad[i][0], bad[i][1], 0, &f), -EINVAL);
    assert_null(f);
  }
  assert_int_equal(np_listen(p, "unix", long_path, &f), -EINVAL);
  assert_int_equal(np_dial(p, "unix", long_path, 0, &f), -EINVAL);
  assert_int_equal(np_listen(NULL, "tcp", "127.0.0.1:0", &f), -EINVAL);
  assert_int_equal(np_listen(p, "tcp", "127.0.0.1:0", NULL), -EINVAL);
  assert_int_equal(np_dial(NULL, "tcp", "127.0.0.1:1", 0, &f), -EINVAL);
  assert_int_equal(np_dial(p, "tcp", "127.0.0.1:1", 0, NULL), -EINVAL);
  np_fd *pair[2] = {(np_fd *)1, (np_fd *)1};
  assert_int_equal(np_pipe(NULL, pair), -EINVAL);
  assert_null(pair[0]);
  assert_int_equal(np_pipe(p, NULL), -EINVAL);
  assert_int_equal(np_socketpair(NULL, pair), -EINVAL);
  assert_int_equal(np_socketpair(p, NULL), -EINVAL);
  assert_int_equal(np_close_write(NULL), -EINVAL);
  char buf[NP_ADDRSTRLEN];
  assert_int_equal(np_local_addr(NULL, buf, sizeof(buf)), -EINVAL);
  assert_int_equal(np_remote_addr(NULL, buf, sizeof(buf)), -EINVAL);
  /* A port already bound: bind's errno, and the socket is closed. */
  np_fd *ln;
  char addr[NP_ADDRSTRLEN];
  assert_int_equal(np_listen(p, "tcp", "127.0.0.1:0", &ln), 0);
  assert_int_equal(np_local_addr(ln, addr, sizeof(addr)), 0);
  assert_int_equal(np_listen(p, "tcp", addr, &f), -EADDRINUSE);
  /* A buffer too small for the address: -ENOSPC and "". */
  memset(buf, 'z', sizeof(buf));
  assert_int_equal(np_local_addr(ln, buf, 5), -ENOSPC);
  assert_string_equal(buf, "");
  assert_int_equal(np_local_addr(ln, buf, 0), -ENOSPC);
  assert_int_equal(np_local_addr(ln, NULL, 10), -EINVAL);
  assert_int_equal(np_local_addr(ln, buf, strlen(addr) + 1), 0);
  assert_string_equal(buf, addr);
  np_free(ln);
  assert_int_equal(count_fds(), fds_before);
  th_poller_destroy(p);
}

/* ---- pipes, socket pairs, close_write ------------------------------------ */

static void test_pipe(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds_before = count_fds();
  np_fd *fds[2];
  assert_int_equal(np_pipe(p, fds), 0);
  expect_flags(fds[0]);
  expect_flags(fds[1]);
  assert_int_equal(np_write(fds[1], "abc", 3, NULL), 0);
  char buf[8];
  read_full(fds[0], buf, 3);
  assert_memory_equal(buf, "abc", 3);
  assert_int_equal(np_local_addr(fds[0], buf, sizeof(buf)), -ENOTSOCK);
  assert_int_equal(np_close_write(fds[1]), -ENOTSOCK);
  np_free(fds[1]);
  assert_int_equal(np_read(fds[0], buf, sizeof(buf)), 0);
  np_free(fds[0]);
  assert_int_equal(count_fds(), fds_before);
  th_poller_destroy(p);
}

static void test_socketpair_close_write(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds_before = count_fds();
  np_fd *s[2];
  assert_int_equal(np_socketpair(p, s), 0);
  expect_flags(s[0]);
  expect_flags(s[1]);
  char buf[NP_ADDRSTRLEN];
  assert_int_equal(np_local_addr(s[0], buf, sizeof(buf)), 0);
  assert_string_equal(buf, ""); /* unnamed */
  assert_int_equal(np_remote_addr(s[1], buf, sizeof(buf)), 0);
  assert_string_equal(buf, "");
  /* Data, then close_write: the peer reads the data, then EOF. */
  assert_int_equal(np_write(s[0], "ping", 4, NULL), 0);
  assert_int_equal(np_close_write(s[0]), 0);
  assert_int_equal(np_write(s[0], "x", 1, NULL), -EPIPE);
  read_full(s[1], buf, 4);
  assert_memory_equal(buf, "ping", 4);
  assert_int_equal(np_read(s[1], buf, sizeof(buf)), 0);
  /* This side still reads. */
  assert_int_equal(np_write(s[1], "pong", 4, NULL), 0);
  read_full(s[0], buf, 4);
  assert_memory_equal(buf, "pong", 4);
  /* After close: NP_ECLOSING. */
  assert_int_equal(np_close(s[0]), 0);
  assert_int_equal(np_close_write(s[0]), NP_ECLOSING);
  assert_int_equal(np_local_addr(s[0], buf, sizeof(buf)), NP_ECLOSING);
  assert_int_equal(np_remote_addr(s[0], buf, sizeof(buf)), NP_ECLOSING);
  assert_int_equal(np_read(s[1], buf, sizeof(buf)), 0);
  np_free(s[0]);
  np_free(s[1]);
  assert_int_equal(count_fds(), fds_before);
  th_poller_destroy(p);
}

/* np_close_write does not queue behind a writer blocked on a full socket
 * (it takes a reference, not the write lock); once the peer drains, that
 * writer wakes and fails with EPIPE, and the peer reads EOF after the data. */
typedef struct fill_arg {
  np_fd *f;
  int err;
} fill_arg;

static void *write_until_error(void *arg) {
  fill_arg *a = arg;
  static char chunk[65536];
  while ((a->err = np_write(a->f, chunk, sizeof(chunk), NULL)) == 0) {
  }
  return NULL;
}

static void test_close_write_with_blocked_writer(void **state) {
  (void)state;
  np_poller *p = th_poller();
  np_fd *s[2];
  assert_int_equal(np_socketpair(p, s), 0);
  fill_arg a = {.f = s[0]};
  pthread_t t = th_start(write_until_error, &a);
  th_wait_parked(p, 1); /* the writer is blocked: the socket is full */
  assert_int_equal(np_close_write(s[0]), 0);
  char buf[65536];
  size_t total = 0;
  for (ssize_t n; (n = np_read(s[1], buf, sizeof(buf))) != 0; total += (size_t)n) assert_true(n > 0);
  assert_true(total > 0);
  th_join(t);
  assert_int_equal(a.err, -EPIPE);
  np_free(s[0]);
  np_free(s[1]);
  th_poller_destroy(p);
}

/* ---- from a task: the descriptors join the task's scheduler ------------- */

typedef struct task_arg {
  int err;
  bool home; /* every handle is on the calling task's scheduler's poller */
} task_arg;

static void net_task(void *arg) {
  task_arg *t = arg;
  np_poller *home = np__home_poller(np_current(), false);
  np_fd *ln, *c, *s, *pair[2];
  char addr[NP_ADDRSTRLEN];
  t->err = np_listen(np_current(), "tcp", "127.0.0.1:0", &ln);
  if (t->err != 0) return;
  t->err = np_local_addr(ln, addr, sizeof(addr));
  if (t->err == 0) t->err = np_dial(np_current(), "tcp", addr, np_deadline_after(5000 * MS), &c);
  if (t->err == 0) t->err = np_accept(ln, &s, NULL, NULL);
  if (t->err == 0) t->err = np_socketpair(np_current(), pair);
  if (t->err != 0) return;
  t->home = ln->poller == home && c->poller == home && pair[0]->poller == home && pair[1]->poller == home;
  char b = 0;
  t->err = np_write(c, "t", 1, NULL);
  if (t->err == 0) t->err = np_read(s, &b, 1) == 1 && b == 't' ? 0 : -EIO;
  np_free(pair[0]);
  np_free(pair[1]);
  np_free(s);
  np_free(c);
  np_free(ln);
}

static void test_from_task(void **state) {
  (void)state;
  np_poller *p = th_poller();
  task_arg t = {.err = -1};
  assert_int_equal(np_go(p, net_task, &t), 0);
  assert_int_equal(np_wait_tasks(p, np_deadline_after(10000 * MS)), 0);
  assert_int_equal(t.err, 0);
  assert_true(t.home);
  th_poller_destroy(p);
}

/* ---- np_rand ------------------------------------------------------------ */

#define DRAWS 4096
#define DRAWERS 4

static uint64_t g_draws[DRAWERS][DRAWS];

static void *draw(void *arg) {
  uint64_t *out = arg;
  for (int i = 0; i < DRAWS; i++) out[i] = np_rand();
  return NULL;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void test_rand(void **state) {
  (void)state;
  uint64_t a[16], b[16];
  for (int i = 0; i < 16; i++) a[i] = np_rand();
  for (int i = 1; i < 16; i++) assert_true(a[i] != a[i - 1]);
  np_rand_seed(42);
  for (int i = 0; i < 16; i++) a[i] = np_rand();
  np_rand_seed(42);
  for (int i = 0; i < 16; i++) b[i] = np_rand();
  assert_memory_equal(a, b, sizeof(a));
  np_rand_seed(43);
  assert_true(np_rand() != a[0]);
  /* Concurrent draws never repeat a value (each takes its own counter). */
  pthread_t t[DRAWERS];
  for (int i = 0; i < DRAWERS; i++) assert_int_equal(pthread_create(&t[i], NULL, draw, g_draws[i]), 0);
  for (int i = 0; i < DRAWERS; i++) pthread_join(t[i], NULL);
  uint64_t *all = &g_draws[0][0];
  qsort(all, DRAWERS * DRAWS, sizeof(uint64_t), cmp_u64);
  for (int i = 1; i < DRAWERS * DRAWS; i++) assert_true(all[i] != all[i - 1]);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tcp4_loopback),
      cmocka_unit_test(test_tcp_any),
      cmocka_unit_test(test_tcp6_loopback),
      cmocka_unit_test(test_unix_path),
      cmocka_unit_test(test_unix_abstract),
      cmocka_unit_test(test_dial_refused),
      cmocka_unit_test(test_dial_deadline),
      cmocka_unit_test(test_dial_clears_deadline),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_pipe),
      cmocka_unit_test(test_socketpair_close_write),
      cmocka_unit_test(test_close_write_with_blocked_writer),
      cmocka_unit_test(test_from_task),
      cmocka_unit_test(test_rand),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
