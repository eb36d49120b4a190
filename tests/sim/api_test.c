/*
 * api_test.c - every call of netpoll.h with its documented results, the
 * same source run natively (libnetpoll, the real kernel) and simulated
 * (libnetpoll-sim, the simulated kernel and network). Each check is exact:
 * a difference between the two builds is a bug in one of them (the
 * simulated kernel is the usual suspect: this file found its shutdown of
 * a listener (ENOTSOCK, Linux 0) and of a reset TCP connection (0, Linux
 * ENOTCONN), unix paths freed at close (Linux keeps the socket file),
 * IPv4 and IPv6 sharing ports, torn pipe writes of at most PIPE_BUF,
 * wildcard local addresses of accepted connections, dials to other hosts
 * reaching local listeners, binds of other hosts' addresses and of paths
 * in missing directories, and v4-mapped listeners). ctest runs it
 * natively and under the simulator without faults (the results here are
 * Linux's, not a faulty network's), every seed's schedule and delivery
 * latencies.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netpoll_test.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MS 1000000LL

/* ---- helpers ------------------------------------------------------------------------ */

typedef struct conn {
  np_fd *l, *client, *server;
  char laddr[NP_ADDRSTRLEN];
} conn;

/* A listener on address, a dialed client and the accepted server side
 * (the client's address in *peer, *len, if peer is not NULL). */
static void conn_open_peer(conn *c, const char *network, const char *address, struct sockaddr_storage *peer,
                           socklen_t *len) {
  NP_CHECK_EQ(np_listen(np_current(), network, address, &c->l), 0);
  NP_CHECK_EQ(np_local_addr(c->l, c->laddr, sizeof(c->laddr)), 0);
  NP_CHECK_EQ(np_dial(np_current(), network, c->laddr, np_deadline_after(5000 * MS), &c->client), 0);
  NP_CHECK_EQ(np_accept(c->l, &c->server, (struct sockaddr *)peer, len), 0);
}

static void conn_open(conn *c, const char *network, const char *address) {
  conn_open_peer(c, network, address, NULL, NULL);
}

static void conn_free(conn *c) {
  np_free(c->client);
  np_free(c->server);
  np_free(c->l);
}

/* Reads exactly len bytes (a stream may deliver them in pieces). */
static void read_full(np_fd *f, char *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = np_read(f, buf + got, len - got);
    NP_CHECK(n > 0);
    got += (size_t)n;
  }
}

static void expect_read(np_fd *f, const char *want) {
  char buf[256] = "";
  size_t len = strlen(want);
  NP_CHECK(len < sizeof(buf));
  read_full(f, buf, len);
  NP_CHECK(memcmp(buf, want, len) == 0);
}

/* ---- reads and writes --------------------------------------------------------------- */

NP_TEST(readv_writev) {
  np_fd *p[2];
  NP_CHECK_EQ(np_socketpair(np_current(), p), 0);
  char a[] = "ab", c[] = "cdef";
  struct iovec out[3] = {{a, 2}, {NULL, 0}, {c, 4}};
  size_t written = 99;
  NP_CHECK_EQ(np_writev(p[0], out, 3, &written), 0);
  NP_CHECK_EQ(written, 6);
  char x[2], y[10];
  size_t got = 0;
  char all[6];
  while (got < 6) {
    struct iovec in[2] = {{x, sizeof(x)}, {y, sizeof(y)}};
    ssize_t n = np_readv(p[1], in, 2);
    NP_CHECK(n > 0 && (size_t)n <= 6 - got);
    memcpy(all + got, x, (size_t)n < sizeof(x) ? (size_t)n : sizeof(x));
    if ((size_t)n > sizeof(x)) memcpy(all + got + sizeof(x), y, (size_t)n - sizeof(x));
    got += (size_t)n;
  }
  NP_CHECK(memcmp(all, "abcdef", 6) == 0);
  struct iovec none = {NULL, 0};
  NP_CHECK_EQ(np_readv(p[1], &none, 1), 0); /* nothing asked: 0 at once */
  NP_CHECK_EQ(np_readv(p[1], &none, -1), -EINVAL);
  struct iovec bad = {NULL, 5};
  NP_CHECK_EQ(np_readv(p[1], &bad, 1), -EINVAL);
  NP_CHECK_EQ(np_writev(p[0], &bad, 1, &written), -EINVAL);
  NP_CHECK_EQ(written, 0);
  np_free(p[0]);
  np_free(p[1]);
}

/* IOV_MAX iovecs of one byte each, both ways: every byte in its place. */
NP_TEST(many_iovecs) {
  enum { N = 1024 };
  static char out[N], in[N];
  static struct iovec oiov[N + 1], iiov[N]; /* one more: the refused IOV_MAX + 1 call below */
  np_fd *p[2];
  NP_CHECK_EQ(np_socketpair(np_current(), p), 0);
  for (int i = 0; i < N; i++) {
    out[i] = (char)('a' + i % 26);
    oiov[i] = (struct iovec){&out[i], 1};
  }
  oiov[N] = (struct iovec){&out[0], 1};
  size_t written = 0;
  NP_CHECK_EQ(np_writev(p[0], oiov, N, &written), 0);
  NP_CHECK_EQ(written, N);
  NP_CHECK_EQ(np_writev(p[0], oiov, N + 1, &written), -EINVAL); /* more than IOV_MAX */
  size_t got = 0;
  while (got < N) {
    int cnt = 0;
    for (size_t i = got; i < N; i++) iiov[cnt++] = (struct iovec){&in[i], 1};
    ssize_t n = np_readv(p[1], iiov, cnt);
    NP_CHECK(n > 0);
    got += (size_t)n;
  }
  NP_CHECK(memcmp(in, out, N) == 0);
  np_free(p[0]);
  np_free(p[1]);
}

static void write_later(void *arg) {
  np_sleep(2 * MS);
  NP_CHECK_EQ(np_write(arg, "later", 5, NULL), 0);
}

NP_TEST(wait_read_write) {
  np_fd *p[2];
  NP_CHECK_EQ(np_socketpair(np_current(), p), 0);
  NP_CHECK_EQ(np_wait_write(p[0]), 0); /* an empty socket is writable */
  int64_t start = np_now();
  NP_CHECK_EQ(np_go(np_current(), write_later, p[0]), 0);
  NP_CHECK_EQ(np_wait_read(p[1]), 0); /* parks until the write */
  NP_CHECK(np_now() - start >= 2 * MS);
  expect_read(p[1], "later");
  np_free(p[0]);
  np_free(p[1]);
}

NP_TEST(eof_repeats) {
  np_fd *p[2];
  char buf[8];
  NP_CHECK_EQ(np_pipe(np_current(), p), 0);
  NP_CHECK_EQ(np_write(p[1], "xy", 2, NULL), 0);
  NP_CHECK_EQ(np_close(p[1]), 0);
  expect_read(p[0], "xy");
  NP_CHECK_EQ(np_read(p[0], buf, sizeof(buf)), 0);
  NP_CHECK_EQ(np_read(p[0], buf, sizeof(buf)), 0);   /* end of file stays */
  NP_CHECK_EQ(np_write(p[0], "z", 1, NULL), -EBADF); /* the read end */
  NP_CHECK_EQ(np_local_addr(p[0], buf, sizeof(buf)), -ENOTSOCK);
  np_free(p[0]);
  np_free(p[1]);
}

/* ---- deadlines ---------------------------------------------------------------------- */

/* np_deadline_after(<= 0) has passed at once, even at a simulated run's
 * first instant (virtual time 0, where now - 1 is not in the past): it was
 * 1 there, a deadline in the future, so a dial with it connected. */
NP_TEST(deadline_after_zero_passed) {
  np_fd *p[2], *c;
  char buf[8];
  NP_CHECK(np_deadline_after(0) <= np_now() && np_deadline_after(0) != 0);
  NP_CHECK(np_deadline_after(-5) <= np_now() && np_deadline_after(-5) != 0);
  NP_CHECK_EQ(np_socketpair(np_current(), p), 0);
  NP_CHECK_EQ(np_write(p[0], "x", 1, NULL), 0);
  NP_CHECK_EQ(np_set_read_deadline(p[1], np_deadline_after(0)), 0);
  NP_CHECK_EQ(np_read(p[1], buf, sizeof(buf)), NP_ETIMEOUT); /* an expired deadline beats ready data */
  np_fd *l;
  char addr[NP_ADDRSTRLEN];
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "127.0.0.1:0", &l), 0);
  NP_CHECK_EQ(np_local_addr(l, addr, sizeof(addr)), 0);
  NP_CHECK_EQ(np_dial(np_current(), "tcp", addr, np_deadline_after(0), &c), NP_ETIMEOUT);
  np_free(l);
  np_free(p[0]);
  np_free(p[1]);
}

NP_TEST(read_deadline) {
  np_fd *p[2];
  char buf[8];
  NP_CHECK_EQ(np_socketpair(np_current(), p), 0);
  int64_t start = np_now();
  NP_CHECK_EQ(np_set_read_deadline(p[1], start + 5 * MS), 0);
  NP_CHECK_EQ(np_read(p[1], buf, sizeof(buf)), NP_ETIMEOUT);
  NP_CHECK(np_now() - start >= 5 * MS);
  NP_CHECK_EQ(np_wait_read(p[1]), NP_ETIMEOUT); /* still expired */
  NP_CHECK_EQ(np_write(p[1], "w", 1, NULL), 0); /* the write side has none */
  NP_CHECK_EQ(np_write(p[0], "abc", 3, NULL), 0);
  NP_CHECK_EQ(np_read(p[1], buf, sizeof(buf)), NP_ETIMEOUT); /* even with data there */
  NP_CHECK_EQ(np_set_read_deadline(p[1], 0), 0);             /* cleared */
  expect_read(p[1], "abc");
  NP_CHECK_EQ(np_set_deadline(p[1], np_now() - 1), 0); /* in the past: both sides */
  NP_CHECK_EQ(np_read(p[1], buf, sizeof(buf)), NP_ETIMEOUT);
  NP_CHECK_EQ(np_write(p[1], "w", 1, NULL), NP_ETIMEOUT);
  NP_CHECK_EQ(np_set_deadline(p[1], 0), 0);
  NP_CHECK_EQ(np_set_write_deadline(p[0], np_deadline_after(1000 * MS)), 0); /* far: no effect */
  NP_CHECK_EQ(np_write(p[0], "d", 1, NULL), 0);
  expect_read(p[1], "d");
  expect_read(p[0], "w");
  np_free(p[0]);
  np_free(p[1]);
}

/* A write cut by its deadline reports what it wrote, and exactly that
 * arrives: nothing lost, nothing twice. */
NP_TEST(write_deadline_counts) {
  np_fd *p[2];
  static char big[4 << 20];
  memset(big, 'b', sizeof(big));
  NP_CHECK_EQ(np_socketpair(np_current(), p), 0);
  NP_CHECK_EQ(np_set_write_deadline(p[0], np_deadline_after(20 * MS)), 0);
  size_t written = 0;
  NP_CHECK_EQ(np_write(p[0], big, sizeof(big), &written), NP_ETIMEOUT);
  NP_CHECK(written > 0 && written < sizeof(big));
  static char in[4 << 20];
  read_full(p[1], in, written);
  NP_CHECK(memcmp(in, big, written) == 0);
  NP_CHECK_EQ(np_set_read_deadline(p[1], np_deadline_after(10 * MS)), 0);
  NP_CHECK_EQ(np_read(p[1], in, sizeof(in)), NP_ETIMEOUT); /* nothing more came */
  np_free(p[0]);
  np_free(p[1]);
}

/* ---- close -------------------------------------------------------------------------- */

/* Tasks may run on other scheduler threads natively: the flags they set
 * are atomic. */
typedef struct blocked {
  np_fd *f;
  int result;
  size_t written;
  atomic_bool done;
} blocked;

static void read_blocked(void *arg) {
  blocked *b = arg;
  char buf[8];
  b->result = (int)np_read(b->f, buf, sizeof(buf));
  b->done = true;
}

static void write_blocked(void *arg) {
  blocked *b = arg;
  static char big[4 << 20];
  b->result = np_write(b->f, big, sizeof(big), &b->written);
  b->done = true;
}

NP_TEST(close_wakes_waiters) {
  np_fd *p[2];
  NP_CHECK_EQ(np_socketpair(np_current(), p), 0);
  blocked r = {.f = p[0]}, w = {.f = p[0]};
  NP_CHECK_EQ(np_go(np_current(), read_blocked, &r), 0);
  NP_CHECK_EQ(np_go(np_current(), write_blocked, &w), 0);
  NP_CHECK_EQ(np_sleep(5 * MS), 0);
  NP_CHECK(!r.done && !w.done);   /* both parked: nothing to read, no room */
  NP_CHECK_EQ(np_close(p[0]), 0); /* wakes both */
  while (!r.done || !w.done) np_sleep(1 * MS);
  NP_CHECK_EQ(r.result, NP_ECLOSING);
  NP_CHECK_EQ(w.result, NP_ECLOSING);
  NP_CHECK(w.written > 0);
  char buf[8];
  NP_CHECK_EQ(np_read(p[0], buf, sizeof(buf)), NP_ECLOSING);
  NP_CHECK_EQ(np_close(p[0]), NP_ECLOSING);
  NP_CHECK_EQ(np_sysfd(p[0]), -1);
  /* Exactly what the writer reported arrived, then end of file. */
  size_t got = 0;
  ssize_t n;
  static char in[1 << 16];
  while ((n = np_read(p[1], in, sizeof(in))) > 0) got += (size_t)n;
  NP_CHECK_EQ(n, 0);
  NP_CHECK_EQ(got, w.written);
  np_free(p[0]);
  np_free(p[1]);
}

NP_TEST(close_write_half) {
  conn c;
  char buf[8];
  conn_open(&c, "tcp", "127.0.0.1:0");
  NP_CHECK_EQ(np_write(c.client, "req", 3, NULL), 0);
  NP_CHECK_EQ(np_close_write(c.client), 0);
  expect_read(c.server, "req");
  NP_CHECK_EQ(np_read(c.server, buf, sizeof(buf)), 0); /* the client's end of file */
  NP_CHECK_EQ(np_write(c.server, "resp", 4, NULL), 0); /* the other way still works */
  NP_CHECK_EQ(np_close_write(c.server), 0);
  expect_read(c.client, "resp");
  NP_CHECK_EQ(np_read(c.client, buf, sizeof(buf)), 0);
  NP_CHECK_EQ(np_write(c.client, "x", 1, NULL), -EPIPE); /* after its own shutdown */
  NP_CHECK_EQ(np_close_write(c.l), 0); /* Linux: a listener's write side shuts, nothing happens */
  conn_free(&c);
  np_fd *p[2];
  NP_CHECK_EQ(np_pipe(np_current(), p), 0);
  NP_CHECK_EQ(np_close_write(p[1]), -ENOTSOCK);
  np_free(p[0]);
  np_free(p[1]);
}

/* Closing a TCP socket with unread data resets the connection (RFC 2525,
 * Linux): the peer's next read gets ECONNRESET, not end of file. */
NP_TEST(close_unread_resets) {
  conn c;
  char buf[8];
  conn_open(&c, "tcp", "127.0.0.1:0");
  NP_CHECK_EQ(np_write(c.client, "unread", 6, NULL), 0);
  NP_CHECK_EQ(np_wait_read(c.server), 0);
  NP_CHECK_EQ(np_close(c.server), 0);
  NP_CHECK_EQ(np_read(c.client, buf, sizeof(buf)), -ECONNRESET);
  conn_free(&c);
}

/* AF_UNIX: a socket closed with data it never read resets its peer
 * (unix_release_sock); a write to a socket whose peer is gone is EPIPE. */
NP_TEST(unix_peer_closed) {
  np_fd *p[2];
  char buf[8];
  NP_CHECK_EQ(np_socketpair(np_current(), p), 0);
  NP_CHECK_EQ(np_write(p[1], "x", 1, NULL), 0);
  NP_CHECK_EQ(np_write(p[0], "y", 1, NULL), 0);
  NP_CHECK_EQ(np_wait_read(p[0]), 0);
  NP_CHECK_EQ(np_close(p[0]), 0);                  /* "x" unread */
  NP_CHECK_EQ(np_read(p[1], buf, sizeof(buf)), 1); /* what was sent before still comes */
  NP_CHECK_EQ(np_read(p[1], buf, sizeof(buf)), -ECONNRESET);
  NP_CHECK_EQ(np_read(p[1], buf, sizeof(buf)), 0); /* the error is reported once */
  size_t written = 9;
  NP_CHECK_EQ(np_write(p[1], "z", 1, &written), -EPIPE);
  NP_CHECK_EQ(written, 0);
  np_free(p[0]);
  np_free(p[1]);
}

NP_TEST(pipe_reader_gone) {
  signal(SIGPIPE, SIG_IGN); /* a pipe's write(2) would raise it (np_write's documentation) */
  np_fd *p[2];
  NP_CHECK_EQ(np_pipe(np_current(), p), 0);
  np_free(p[0]);
  NP_CHECK_EQ(np_write(p[1], "z", 1, NULL), -EPIPE);
  np_free(p[1]);
}

/* A pipe is a ring of pages (Linux's fs/pipe.c): a write of at most
 * PIPE_BUF (4096) bytes is whole or nothing (it fills the last page or
 * takes a free one), a writev's atomicity is its total's, the write end is
 * writable while a page is free (a PIPE_BUF write then succeeds), and a
 * longer write takes what fits. 100-byte records fill 40 to a page (4,000
 * bytes); a record that does not fit times out with nothing written. The
 * deadlines that must not pass before a write starts are 50 ms. */
NP_TEST(pipe_buf_atomic) {
  enum { REC = 100, PER_PAGE = 4096 / REC * REC };
  static char buf[200000];
  np_fd *p[2];
  size_t total = 0, written = 1;
  NP_CHECK_EQ(np_pipe(np_current(), p), 0);
  memset(buf, 'r', sizeof(buf));
  for (int r = 0; r == 0; total += written) { /* records until the pipe is full */
    NP_CHECK_EQ(np_set_write_deadline(p[1], np_deadline_after(50 * MS)), 0);
    r = np_write(p[1], buf, REC, &written);
    NP_CHECK(r == 0 || r == NP_ETIMEOUT);
    NP_CHECK_EQ(written, r == 0 ? REC : 0); /* never part of one */
  }
  NP_CHECK(total >= 2 * PER_PAGE && total % PER_PAGE == 0); /* two pages or more, each 40 records */
  read_full(p[0], buf, REC);                                /* the first page is not free yet */
  NP_CHECK_EQ(np_set_write_deadline(p[1], np_deadline_after(5 * MS)), 0);
  NP_CHECK_EQ(np_wait_write(p[1]), NP_ETIMEOUT);
  struct iovec halves[2] = {{buf, REC / 2}, {buf, REC / 2}};
  NP_CHECK_EQ(np_set_write_deadline(p[1], np_deadline_after(5 * MS)), 0);
  NP_CHECK_EQ(np_writev(p[1], halves, 2, &written), NP_ETIMEOUT);
  NP_CHECK_EQ(written, 0);              /* one write of 100 bytes, not two of 50 */
  read_full(p[0], buf, PER_PAGE - REC); /* now it is */
  NP_CHECK_EQ(np_set_write_deadline(p[1], np_deadline_after(1000 * MS)), 0);
  NP_CHECK_EQ(np_wait_write(p[1]), 0);
  NP_CHECK_EQ(np_write(p[1], buf, 4096, &written), 0); /* PIPE_BUF: a free page takes it */
  read_full(p[0], buf, total - PER_PAGE + 4096);
  NP_CHECK_EQ(np_set_write_deadline(p[1], np_deadline_after(50 * MS)), 0);
  NP_CHECK_EQ(np_write(p[1], buf, sizeof(buf), &written), NP_ETIMEOUT); /* more than the pipe holds */
  NP_CHECK(written >= 2 * 4096 && written % 4096 == 0 && written < sizeof(buf)); /* what fits: whole pages */
  np_free(p[0]);
  np_free(p[1]);
}

static void accept_blocked(void *arg) {
  blocked *b = arg;
  np_fd *c = NULL;
  b->result = np_accept(b->f, &c, NULL, NULL);
  b->done = true;
}

NP_TEST(close_wakes_accept) {
  np_fd *l;
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "127.0.0.1:0", &l), 0);
  blocked a = {.f = l};
  NP_CHECK_EQ(np_go(np_current(), accept_blocked, &a), 0);
  NP_CHECK_EQ(np_sleep(2 * MS), 0);
  NP_CHECK(!a.done);
  NP_CHECK_EQ(np_close(l), 0);
  while (!a.done) np_sleep(1 * MS);
  NP_CHECK_EQ(a.result, NP_ECLOSING);
  np_free(l);
}

NP_TEST(zero_length) {
  np_fd *p[2];
  char buf[1];
  NP_CHECK_EQ(np_socketpair(np_current(), p), 0);
  NP_CHECK_EQ(np_read(p[0], buf, 0), 0); /* nothing queued, nothing asked: no wait */
  NP_CHECK_EQ(np_write(p[0], buf, 0, NULL), 0);
  NP_CHECK_EQ(np_read(p[0], NULL, 0), 0);
  NP_CHECK_EQ(np_read(p[0], NULL, 1), -EINVAL);
  NP_CHECK_EQ(np_close(p[0]), 0);
  NP_CHECK_EQ(np_read(p[0], buf, 0), NP_ECLOSING); /* the handle is checked first */
  NP_CHECK_EQ(np_write(p[0], buf, 0, NULL), NP_ECLOSING);
  np_free(p[0]);
  np_free(p[1]);
}

NP_TEST(reset_then_close_write) {
  conn c;
  char buf[8];
  conn_open(&c, "tcp", "127.0.0.1:0");
  NP_CHECK_EQ(np_write(c.client, "unread", 6, NULL), 0);
  NP_CHECK_EQ(np_wait_read(c.server), 0);
  NP_CHECK_EQ(np_close(c.server), 0); /* a reset */
  NP_CHECK_EQ(np_read(c.client, buf, sizeof(buf)), -ECONNRESET);
  NP_CHECK_EQ(np_read(c.client, buf, sizeof(buf)), 0);
  NP_CHECK_EQ(np_close_write(c.client), -ENOTCONN); /* the connection is gone (TCP_CLOSE) */
  conn_free(&c);
}

/* After a reset has arrived, the first call reports it once, whichever it
 * is: a write says ECONNRESET (Linux's sk_stream_error takes the pending
 * error), and the read after it finds the end of the stream. */
NP_TEST(reset_then_write) {
  conn c;
  char buf[8];
  conn_open(&c, "tcp", "127.0.0.1:0");
  NP_CHECK_EQ(np_write(c.client, "unread", 6, NULL), 0);
  NP_CHECK_EQ(np_wait_read(c.server), 0);
  NP_CHECK_EQ(np_close(c.server), 0); /* a reset */
  NP_CHECK_EQ(np_sleep(200 * MS), 0); /* it arrives */
  NP_CHECK_EQ(np_write(c.client, "x", 1, NULL), -ECONNRESET);
  NP_CHECK_EQ(np_read(c.client, buf, sizeof(buf)), 0);
  NP_CHECK_EQ(np_write(c.client, "x", 1, NULL), -EPIPE);
  conn_free(&c);
}

/* The peer closed cleanly (nothing unread): this side is in CLOSE_WAIT
 * and may still send, so the first write succeeds; the closed peer answers
 * it with a reset, which in CLOSE_WAIT is EPIPE (Linux's tcp_reset), and
 * the read still finds the end of the stream. */
NP_TEST(write_after_peer_closed) {
  conn c;
  char buf[8];
  conn_open(&c, "tcp", "127.0.0.1:0");
  NP_CHECK_EQ(np_close(c.server), 0);
  NP_CHECK_EQ(np_read(c.client, buf, sizeof(buf)), 0);
  NP_CHECK_EQ(np_write(c.client, "x", 1, NULL), 0);
  NP_CHECK_EQ(np_sleep(200 * MS), 0); /* the reset arrives */
  NP_CHECK_EQ(np_write(c.client, "x", 1, NULL), -EPIPE);
  NP_CHECK_EQ(np_read(c.client, buf, sizeof(buf)), 0);
  NP_CHECK_EQ(np_write(c.client, "x", 1, NULL), -EPIPE);
  conn_free(&c);
}

/* A reset that arrives while bytes are still queued: the read that takes
 * the last of them is short with the reset's error still to be read, and
 * the next read must report the reset, not park: the drained hint once
 * (as TCP_INQ's 0) took it for an empty socket and the reader waited for
 * ever (kernel_diff_test.c found it natively). */
NP_TEST(reset_after_last_bytes) {
  conn c;
  char buf[2048] = {0};
  conn_open(&c, "tcp", "127.0.0.1:0");
  NP_CHECK_EQ(np_write(c.client, buf, 1500, NULL), 0);
  NP_CHECK_EQ(np_write(c.server, buf, 100, NULL), 0); /* never read by the client */
  read_full(c.server, buf, 1000);
  NP_CHECK_EQ(np_wait_read(c.client), 0);
  NP_CHECK_EQ(np_close(c.client), 0); /* unread data: a reset */
  NP_CHECK_EQ(np_sleep(200 * MS), 0); /* it arrives */
  NP_CHECK_EQ(np_set_read_deadline(c.server, np_deadline_after(2000 * MS)), 0);
  read_full(c.server, buf, 500);
  NP_CHECK_EQ(np_read(c.server, buf, sizeof(buf)), -ECONNRESET);
  NP_CHECK_EQ(np_read(c.server, buf, sizeof(buf)), 0);
  conn_free(&c);
}

/* ---- addresses ---------------------------------------------------------------------- */

static void check_pair_addrs(conn *c, const char *want_local_prefix) {
  char a[NP_ADDRSTRLEN], b[NP_ADDRSTRLEN];
  NP_CHECK(strncmp(c->laddr, want_local_prefix, strlen(want_local_prefix)) == 0);
  NP_CHECK_EQ(np_remote_addr(c->client, a, sizeof(a)), 0);
  NP_CHECK(strcmp(a, c->laddr) == 0); /* the client reached the listener's address */
  NP_CHECK_EQ(np_local_addr(c->server, a, sizeof(a)), 0);
  NP_CHECK(strcmp(a, c->laddr) == 0);
  NP_CHECK_EQ(np_local_addr(c->client, a, sizeof(a)), 0);
  NP_CHECK_EQ(np_remote_addr(c->server, b, sizeof(b)), 0);
  NP_CHECK(strcmp(a, b) == 0); /* each side sees the other's address */
  NP_CHECK_EQ(np_remote_addr(c->l, a, sizeof(a)), -ENOTCONN);
  NP_CHECK_EQ(np_local_addr(c->l, a, 3), -ENOSPC);
  NP_CHECK(a[0] == 0);
}

NP_TEST(addresses_tcp4) {
  conn c;
  conn_open(&c, "tcp", "127.0.0.1:0");
  check_pair_addrs(&c, "127.0.0.1:");
  NP_CHECK_EQ(np_write(c.client, "4", 1, NULL), 0);
  expect_read(c.server, "4");
  conn_free(&c);
}

NP_TEST(addresses_tcp6) {
  conn c;
  conn_open(&c, "tcp6", "[::1]:0");
  check_pair_addrs(&c, "[::1]:");
  NP_CHECK_EQ(np_write(c.client, "6", 1, NULL), 0);
  expect_read(c.server, "6");
  conn_free(&c);
}

/* IPv4 and IPv6 are apart (np_listen sets IPV6_V6ONLY): the same port may
 * be listened on in each, a dial reaches its own family's listener only,
 * and a wildcard listener is in the way of a specific address's. */
NP_TEST(families_apart) {
  np_fd *l4, *l6, *c, *s, *l = NULL;
  char addr4[NP_ADDRSTRLEN], addr6[NP_ADDRSTRLEN], a[NP_ADDRSTRLEN], any[NP_ADDRSTRLEN];
  NP_CHECK_EQ(np_listen(np_current(), "tcp4", "127.0.0.1:0", &l4), 0);
  NP_CHECK_EQ(np_local_addr(l4, addr4, sizeof(addr4)), 0);
  const char *port = strrchr(addr4, ':') + 1;
  snprintf(addr6, sizeof(addr6), "[::1]:%s", port);
  NP_CHECK_EQ(np_dial(np_current(), "tcp6", addr6, 0, &c), -ECONNREFUSED);
  NP_CHECK_EQ(np_listen(np_current(), "tcp6", addr6, &l6), 0);
  NP_CHECK_EQ(np_dial(np_current(), "tcp6", addr6, 0, &c), 0);
  NP_CHECK_EQ(np_accept(l6, &s, NULL, NULL), 0);
  NP_CHECK_EQ(np_local_addr(s, a, sizeof(a)), 0);
  NP_CHECK(strcmp(a, addr6) == 0);
  np_free(c);
  np_free(s);
  NP_CHECK_EQ(np_dial(np_current(), "tcp4", addr4, 0, &c), 0);
  NP_CHECK_EQ(np_accept(l4, &s, NULL, NULL), 0);
  NP_CHECK_EQ(np_local_addr(s, a, sizeof(a)), 0);
  NP_CHECK(strcmp(a, addr4) == 0);
  np_free(c);
  np_free(s);
  snprintf(any, sizeof(any), ":%s", port);
  NP_CHECK_EQ(np_listen(np_current(), "tcp4", any, &l), -EADDRINUSE);
  NP_CHECK(l == NULL);
  np_free(l4);
  np_free(l6);
}

/* A unix connection: the accepted side's local address is the listener's,
 * the dialer is unnamed ("") on both ends. */
static void unix_pair(const char *path) {
  conn c;
  char a[NP_ADDRSTRLEN];
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  conn_open_peer(&c, "unix", path, &ss, &len);
  NP_CHECK_EQ(ss.ss_family, AF_UNIX);
  NP_CHECK_EQ(len, sizeof(sa_family_t)); /* the dialer is unnamed */
  NP_CHECK(strcmp(c.laddr, path) == 0);
  NP_CHECK_EQ(np_remote_addr(c.client, a, sizeof(a)), 0);
  NP_CHECK(strcmp(a, path) == 0);
  NP_CHECK_EQ(np_local_addr(c.server, a, sizeof(a)), 0);
  NP_CHECK(strcmp(a, path) == 0);
  NP_CHECK_EQ(np_local_addr(c.client, a, sizeof(a)), 0);
  NP_CHECK(strcmp(a, "") == 0);
  NP_CHECK_EQ(np_remote_addr(c.server, a, sizeof(a)), 0);
  NP_CHECK(strcmp(a, "") == 0);
  NP_CHECK_EQ(np_write(c.server, "u", 1, NULL), 0);
  expect_read(c.client, "u");
  conn_free(&c);
}

NP_TEST(addresses_unix_abstract) {
  char path[64];
  snprintf(path, sizeof(path), "@netpoll-api-%016llx", (unsigned long long)np_rand());
  unix_pair(path);
  np_fd *l;
  NP_CHECK_EQ(np_listen(np_current(), "unix", path, &l), 0); /* the name is free again */
  np_fd *l2;
  NP_CHECK_EQ(np_listen(np_current(), "unix", path, &l2), -EADDRINUSE);
  np_free(l);
}

/* A unix path: bind makes a socket file that stays after the listener
 * closes (connects are refused, a new listen finds it in the way) until
 * unlink; a path with no file is ENOENT. The simulated build intercepts
 * unlink for the files its simulated binds made. */
NP_TEST(addresses_unix_path) {
  char path[80];
  snprintf(path, sizeof(path), "/tmp/netpoll-api-%s%016llx.sock", np_test_simulated() ? "sim-" : "",
           (unsigned long long)np_rand());
  np_fd *c = NULL, *l = NULL;
  NP_CHECK_EQ(np_dial(np_current(), "unix", path, 0, &c), -ENOENT);
  unix_pair(path);
  NP_CHECK_EQ(np_dial(np_current(), "unix", path, 0, &c), -ECONNREFUSED); /* the file stays */
  NP_CHECK_EQ(np_listen(np_current(), "unix", path, &l), -EADDRINUSE);
  NP_CHECK_EQ(unlink(path), 0);
  NP_CHECK_EQ(np_listen(np_current(), "unix", path, &l), 0);
  NP_CHECK_EQ(unlink(path), 0); /* a live listener's file: unreachable by name now */
  NP_CHECK_EQ(np_dial(np_current(), "unix", path, 0, &c), -ENOENT);
  np_free(l);
  NP_CHECK(c == NULL);
  NP_CHECK_EQ(unlink(path), -1);
  NP_CHECK_EQ(errno, ENOENT);
}

NP_TEST(addresses_socketpair) {
  np_fd *p[2];
  char a[NP_ADDRSTRLEN];
  NP_CHECK_EQ(np_socketpair(np_current(), p), 0);
  NP_CHECK_EQ(np_local_addr(p[0], a, sizeof(a)), 0);
  NP_CHECK(strcmp(a, "") == 0);
  NP_CHECK_EQ(np_remote_addr(p[1], a, sizeof(a)), 0);
  NP_CHECK(strcmp(a, "") == 0);
  np_free(p[0]);
  np_free(p[1]);
}

NP_TEST(accept_fills_sockaddr) {
  np_fd *l, *client, *server;
  char addr[NP_ADDRSTRLEN], local[NP_ADDRSTRLEN];
  NP_CHECK_EQ(np_listen(np_current(), "tcp4", "127.0.0.1:0", &l), 0);
  NP_CHECK_EQ(np_local_addr(l, addr, sizeof(addr)), 0);
  NP_CHECK_EQ(np_dial(np_current(), "tcp4", addr, 0, &client), 0);
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  NP_CHECK_EQ(np_accept(l, &server, (struct sockaddr *)&ss, &len), 0);
  NP_CHECK_EQ(ss.ss_family, AF_INET);
  NP_CHECK_EQ(len, sizeof(struct sockaddr_in));
  NP_CHECK_EQ(np_local_addr(client, local, sizeof(local)), 0);
  char want[NP_ADDRSTRLEN];
  snprintf(want, sizeof(want), "127.0.0.1:%u", ntohs(((struct sockaddr_in *)&ss)->sin_port));
  NP_CHECK(strcmp(local, want) == 0);
  np_free(client);
  np_free(server);
  np_free(l);
}

/* ---- dial and listen errors --------------------------------------------------------- */

NP_TEST(dial_refused) {
  np_fd *l, *c = NULL;
  char addr[NP_ADDRSTRLEN];
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "127.0.0.1:0", &l), 0);
  NP_CHECK_EQ(np_local_addr(l, addr, sizeof(addr)), 0);
  np_free(l); /* nothing listens there now */
  NP_CHECK_EQ(np_dial(np_current(), "tcp", addr, np_deadline_after(5000 * MS), &c), -ECONNREFUSED);
  NP_CHECK(c == NULL);
  NP_CHECK_EQ(np_dial(np_current(), "unix", "@netpoll-api-nobody-listens", 0, &c), -ECONNREFUSED);
}

NP_TEST(bad_addresses) {
  np_fd *f = NULL;
  np_poller *p = np_current();
  NP_CHECK_EQ(np_dial(p, "udp", "127.0.0.1:80", 0, &f), -EINVAL);
  NP_CHECK_EQ(np_dial(p, "tcp", "127.0.0.1", 0, &f), -EINVAL);
  NP_CHECK_EQ(np_dial(p, "tcp", "127.0.0.1:65536", 0, &f), -EINVAL);
  NP_CHECK_EQ(np_dial(p, "tcp", "example.com:80", 0, &f), -EINVAL);
  NP_CHECK_EQ(np_dial(p, "tcp4", "[::1]:80", 0, &f), -EINVAL);
  NP_CHECK_EQ(np_listen(p, "tcp", "300.0.0.1:0", &f), -EINVAL);
  char longpath[200];
  memset(longpath, 'p', sizeof(longpath) - 1);
  longpath[sizeof(longpath) - 1] = 0;
  NP_CHECK_EQ(np_listen(p, "unix", longpath, &f), -EINVAL);
  NP_CHECK_EQ(np_listen(p, "unix", "", &f), -EINVAL);
  NP_CHECK(f == NULL);
}

/* NULL where a handle, buffer or name belongs: -EINVAL, never a crash. */
NP_TEST(null_arguments) {
  np_poller *p = np_current();
  np_fd *f = NULL, *pair[2];
  char buf[8];
  size_t written = 7;
  NP_CHECK_EQ(np_read(NULL, buf, sizeof(buf)), -EINVAL);
  NP_CHECK_EQ(np_readv(NULL, NULL, 0), -EINVAL);
  NP_CHECK_EQ(np_write(NULL, "x", 1, &written), -EINVAL);
  NP_CHECK_EQ(written, 0);
  NP_CHECK_EQ(np_writev(NULL, NULL, 0, NULL), -EINVAL);
  NP_CHECK_EQ(np_accept(NULL, &f, NULL, NULL), -EINVAL);
  NP_CHECK_EQ(np_wait_read(NULL), -EINVAL);
  NP_CHECK_EQ(np_wait_write(NULL), -EINVAL);
  NP_CHECK_EQ(np_set_deadline(NULL, 0), -EINVAL);
  NP_CHECK_EQ(np_set_read_deadline(NULL, 0), -EINVAL);
  NP_CHECK_EQ(np_set_write_deadline(NULL, 0), -EINVAL);
  NP_CHECK_EQ(np_close(NULL), -EINVAL);
  np_free(NULL);
  NP_CHECK_EQ(np_sysfd(NULL), -1);
  NP_CHECK_EQ(np_close_write(NULL), -EINVAL);
  NP_CHECK_EQ(np_local_addr(NULL, buf, sizeof(buf)), -EINVAL);
  NP_CHECK_EQ(np_remote_addr(NULL, buf, sizeof(buf)), -EINVAL);
  NP_CHECK_EQ(np_listen(p, NULL, "127.0.0.1:0", &f), -EINVAL);
  NP_CHECK_EQ(np_listen(p, "tcp", NULL, &f), -EINVAL);
  NP_CHECK_EQ(np_listen(p, "tcp", "127.0.0.1:0", NULL), -EINVAL);
  NP_CHECK_EQ(np_listen(NULL, "tcp", "127.0.0.1:0", &f), -EINVAL);
  NP_CHECK_EQ(np_dial(p, "tcp", NULL, 0, &f), -EINVAL);
  NP_CHECK_EQ(np_dial(p, NULL, "127.0.0.1:1", 0, &f), -EINVAL);
  NP_CHECK_EQ(np_dial(NULL, "tcp", "127.0.0.1:1", 0, &f), -EINVAL);
  NP_CHECK_EQ(np_pipe(p, NULL), -EINVAL);
  NP_CHECK_EQ(np_socketpair(NULL, pair), -EINVAL);
  NP_CHECK_EQ(np_blocking(NULL, NULL), -EINVAL);
  NP_CHECK(f == NULL);
  np_poller_stats(NULL, NULL);
  np_task_name(NULL);
}

NP_TEST(listen_port_in_use) {
  np_fd *l, *l2 = NULL;
  char addr[NP_ADDRSTRLEN];
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "127.0.0.1:0", &l), 0);
  NP_CHECK_EQ(np_local_addr(l, addr, sizeof(addr)), 0);
  NP_CHECK_EQ(np_listen(np_current(), "tcp", addr, &l2), -EADDRINUSE);
  NP_CHECK(l2 == NULL);
  np_free(l);
}

/* A server that closed its connections first leaves them in TIME_WAIT on
 * its port; restarted, it listens there again at once (SO_REUSEADDR, as
 * Go's listeners: without it, EADDRINUSE for a minute). */
NP_TEST(listen_again_after_active_close) {
  conn c;
  char buf[4];
  conn_open(&c, "tcp", "127.0.0.1:0");
  NP_CHECK_EQ(np_close(c.server), 0); /* the server closes first: its end waits in TIME_WAIT */
  NP_CHECK_EQ(np_read(c.client, buf, sizeof(buf)), 0);
  NP_CHECK_EQ(np_close(c.client), 0);
  NP_CHECK_EQ(np_close(c.l), 0);
  NP_CHECK_EQ(np_sleep(10 * MS), 0);
  np_fd *l;
  NP_CHECK_EQ(np_listen(np_current(), "tcp", c.laddr, &l), 0);
  np_free(l);
  conn_free(&c);
}

/* "tcp6" on the wildcard takes IPv6 only (IPV6_V6ONLY): an IPv4 listener
 * on the same port is free to start, and an IPv4 dial reaches it, not the
 * IPv6 one (without the option Linux's [::] takes both families). Natively
 * the port the kernel picked for IPv6 may be some other test's IPv4 port
 * (a connection's ephemeral port, ctest runs them side by side): a few new
 * ports are tried; without the option every one of them is refused. */
NP_TEST(tcp6_wildcard_v6_only) {
  np_fd *l6 = NULL, *l4 = NULL, *c, *s;
  char addr6[NP_ADDRSTRLEN], any4[NP_ADDRSTRLEN], addr4[NP_ADDRSTRLEN];
  int err = -EADDRINUSE;
  for (int tries = 0; tries < 8 && err == -EADDRINUSE; tries++) {
    if (l6 != NULL) np_free(l6);
    NP_CHECK_EQ(np_listen(np_current(), "tcp6", ":0", &l6), 0);
    NP_CHECK_EQ(np_local_addr(l6, addr6, sizeof(addr6)), 0);
    const char *port = strrchr(addr6, ':') + 1;
    snprintf(any4, sizeof(any4), ":%s", port);
    snprintf(addr4, sizeof(addr4), "127.0.0.1:%s", port);
    err = np_listen(np_current(), "tcp4", any4, &l4);
  }
  NP_CHECK_EQ(err, 0);
  NP_CHECK_EQ(np_dial(np_current(), "tcp4", addr4, 0, &c), 0);
  NP_CHECK_EQ(np_accept(l4, &s, NULL, NULL), 0);
  np_free(s);
  np_free(c);
  np_free(l4);
  np_free(l6);
}

/* Calls on the wrong kind of descriptor answer as Linux does. */
NP_TEST(wrong_kinds) {
  np_fd *l, *p[2], *q[2], *c = NULL;
  char buf[8];
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "127.0.0.1:0", &l), 0);
  NP_CHECK_EQ(np_read(l, buf, sizeof(buf)), -ENOTCONN);
  NP_CHECK_EQ(np_write(l, "x", 1, NULL), -EPIPE);
  np_free(l);
  char name[64];
  snprintf(name, sizeof(name), "@netpoll-api-kinds-%016llx", (unsigned long long)np_rand());
  NP_CHECK_EQ(np_listen(np_current(), "unix", name, &l), 0);
  NP_CHECK_EQ(np_read(l, buf, sizeof(buf)), -EINVAL);
  NP_CHECK_EQ(np_write(l, "x", 1, NULL), -ENOTCONN);
  NP_CHECK_EQ(np_socketpair(np_current(), p), 0);
  NP_CHECK_EQ(np_accept(p[0], &c, NULL, NULL), -EINVAL); /* not listening */
  NP_CHECK_EQ(np_pipe(np_current(), q), 0);
  NP_CHECK_EQ(np_accept(q[0], &c, NULL, NULL), -ENOTSOCK);
  NP_CHECK(c == NULL);
  NP_CHECK_EQ(np_read(q[1], buf, sizeof(buf)), -EBADF); /* the write end */
  NP_CHECK_EQ(np_close(p[0]), 0);
  NP_CHECK_EQ(np_local_addr(p[0], buf, sizeof(buf)), NP_ECLOSING);
  NP_CHECK_EQ(np_close_write(p[0]), NP_ECLOSING);
  np_free(l);
  np_free(p[0]);
  np_free(p[1]);
  np_free(q[0]);
  np_free(q[1]);
}

/* Listens on listen_at, expects its address to start with want, and (if
 * dial_host) dials dial_host:port in the same network. */
static void listen_then_dial(const char *network, const char *listen_at, const char *want,
                             const char *dial_host) {
  np_fd *l, *c;
  char a[NP_ADDRSTRLEN], dial[NP_ADDRSTRLEN];
  NP_CHECK_EQ(np_listen(np_current(), network, listen_at, &l), 0);
  NP_CHECK_EQ(np_local_addr(l, a, sizeof(a)), 0);
  NP_CHECK(strncmp(a, want, strlen(want)) == 0);
  if (dial_host != NULL) {
    snprintf(dial, sizeof(dial), "%s:%s", dial_host, strrchr(a, ':') + 1);
    NP_CHECK_EQ(np_dial(np_current(), network, dial, 0, &c), 0);
    np_free(c);
  }
  np_free(l);
}

/* "localhost" is the loopback address of the family; ":port" every local
 * address of it. */
NP_TEST(localhost_and_wildcard) {
  listen_then_dial("tcp", "localhost:0", "127.0.0.1:", "localhost");
  listen_then_dial("tcp6", "localhost:0", "[::1]:", NULL);
  listen_then_dial("tcp", ":0", "0.0.0.0:", "127.0.0.1");
  listen_then_dial("tcp6", ":0", "[::]:", "[::1]");
}

/* What a dial to host:port of a listener must find: the client's own
 * address (a prefix: its port is ephemeral), the accepted end's local
 * address (host when NULL), the client's remote one (server_local when
 * NULL), and the accepted end's remote one (client_local when NULL), each
 * with the port it must have. */
typedef struct addr_want {
  const char *host, *client_local, *server_local, *client_remote, *server_remote;
} addr_want;

static void dial_and_check(np_fd *l, const char *network, addr_want w) {
  np_fd *c, *s;
  char laddr[NP_ADDRSTRLEN], dial[NP_ADDRSTRLEN], want[NP_ADDRSTRLEN], a[NP_ADDRSTRLEN], b[NP_ADDRSTRLEN];
  const char *server_local = w.server_local != NULL ? w.server_local : w.host;
  NP_CHECK_EQ(np_local_addr(l, laddr, sizeof(laddr)), 0);
  const char *port = strrchr(laddr, ':') + 1;
  snprintf(dial, sizeof(dial), "%s:%s", w.host, port);
  NP_CHECK_EQ(np_dial(np_current(), network, dial, np_deadline_after(5000 * MS), &c), 0);
  NP_CHECK_EQ(np_accept(l, &s, NULL, NULL), 0);
  NP_CHECK_EQ(np_local_addr(s, a, sizeof(a)), 0);
  snprintf(want, sizeof(want), "%s:%s", server_local, port);
  NP_CHECK(strcmp(a, want) == 0); /* the address the client reached, never the wildcard */
  NP_CHECK_EQ(np_remote_addr(c, a, sizeof(a)), 0);
  snprintf(want, sizeof(want), "%s:%s", w.client_remote != NULL ? w.client_remote : server_local, port);
  NP_CHECK(strcmp(a, want) == 0);
  NP_CHECK_EQ(np_local_addr(c, a, sizeof(a)), 0);
  NP_CHECK(strncmp(a, w.client_local, strlen(w.client_local)) == 0);
  NP_CHECK_EQ(np_remote_addr(s, b, sizeof(b)), 0);
  snprintf(want, sizeof(want), "%s%s", w.server_remote != NULL ? w.server_remote : w.client_local,
           a + strlen(w.client_local));
  NP_CHECK(strcmp(b, want) == 0); /* the client's address and port, in the listener's family */
  np_free(c);
  np_free(s);
}

/* An accepted connection's local address is the one its client dialled,
 * also from a wildcard listener: any 127.x.y.z is this host's, 0.0.0.0 and
 * [::] mean 127.0.0.1 and [::1]; the client's own is 127.0.0.1 (the
 * loopback route's source address) or [::1]. */
NP_TEST(accepted_local_address) {
  np_fd *l;
  NP_CHECK_EQ(np_listen(np_current(), "tcp", ":0", &l), 0);
  dial_and_check(l, "tcp", (addr_want){"127.0.0.1", "127.0.0.1:"});
  dial_and_check(l, "tcp", (addr_want){"127.0.0.2", "127.0.0.1:"});
  dial_and_check(l, "tcp", (addr_want){"127.1.2.3", "127.0.0.1:"});
  dial_and_check(l, "tcp", (addr_want){"0.0.0.0", "127.0.0.1:", "127.0.0.1"});
  np_free(l);
  NP_CHECK_EQ(np_listen(np_current(), "tcp6", ":0", &l), 0);
  dial_and_check(l, "tcp6", (addr_want){"[::]", "[::1]:", "[::1]"});
  np_free(l);
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "127.0.0.2:0", &l), 0); /* any 127.x.y.z may be listened on */
  dial_and_check(l, "tcp", (addr_want){"127.0.0.2", "127.0.0.1:"});
  np_free(l);
}

/* Only this host's addresses may be listened on (127.0.0.0/8, [::1], the
 * wildcards; Linux also binds IPv4 multicast and 255.255.255.255):
 * EADDRNOTAVAIL for another; and a dial leaves the host: it never reaches a
 * local wildcard listener (the simulated host has no other interface, so
 * ENETUNREACH at once; natively a SYN may go out and time out). The
 * addresses are RFC 5737/3849 documentation ones, on no host. */
NP_TEST(addresses_of_other_hosts) {
  np_fd *l = NULL, *c = NULL;
  char addr[NP_ADDRSTRLEN], dial[NP_ADDRSTRLEN];
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "203.0.113.77:0", &l), -EADDRNOTAVAIL);
  NP_CHECK_EQ(np_listen(np_current(), "tcp6", "[2001:db8::77]:0", &l), -EADDRNOTAVAIL);
  NP_CHECK(l == NULL);
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "255.255.255.255:0", &l), 0);
  np_free(l);
  const char *networks[2] = {"tcp", "tcp6"}, *hosts[2] = {"203.0.113.77", "[2001:db8::77]"};
  for (int i = 0; i < 2; i++) {
    NP_CHECK_EQ(np_listen(np_current(), networks[i], ":0", &l), 0);
    NP_CHECK_EQ(np_local_addr(l, addr, sizeof(addr)), 0);
    snprintf(dial, sizeof(dial), "%s:%s", hosts[i], strrchr(addr, ':') + 1);
    int r = np_dial(np_current(), networks[i], dial, np_deadline_after(200 * MS), &c);
    NP_CHECK(r != 0 && c == NULL);
    if (np_test_simulated()) NP_CHECK_EQ(r, -ENETUNREACH);
    np_free(l);
  }
}

/* A unix socket's file goes in a directory: bind says ENOENT when it is
 * missing, ENOTDIR when the path goes through a file. */
NP_TEST(unix_path_directory) {
  np_fd *l = NULL;
  char path[96];
  snprintf(path, sizeof(path), "/tmp/netpoll-api-no-dir-%016llx/x.sock", (unsigned long long)np_rand());
  NP_CHECK_EQ(np_listen(np_current(), "unix", path, &l), -ENOENT);
  NP_CHECK_EQ(np_listen(np_current(), "unix", "/dev/null/x.sock", &l), -ENOTDIR);
  NP_CHECK(l == NULL);
}

/* "tcp" on a v4-mapped address ([::ffff:127.0.0.1]) makes an IPv6 socket
 * without IPV6_V6ONLY (only "tcp6" sets it, and Linux then refuses the
 * address): an IPv4 listener, that IPv4 dials reach and whose connections
 * have v4-mapped addresses, in the way of a tcp4 listener on its address;
 * an IPv6 dial to [::ffff:127.0.0.1] (np_dial's IPv6 sockets are not
 * V6ONLY) reaches IPv4 listeners too. */
NP_TEST(v4_mapped_addresses) {
  np_fd *l, *l4 = NULL, *c = NULL;
  char addr[NP_ADDRSTRLEN], a[NP_ADDRSTRLEN];
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "[::ffff:127.0.0.1]:0", &l), 0);
  NP_CHECK_EQ(np_local_addr(l, addr, sizeof(addr)), 0);
  NP_CHECK(strncmp(addr, "[::ffff:127.0.0.1]:", 19) == 0);
  dial_and_check(
      l, "tcp",
      (addr_want){"127.0.0.1", "127.0.0.1:", "[::ffff:127.0.0.1]", "127.0.0.1", "[::ffff:127.0.0.1]:"});
  dial_and_check(l, "tcp", (addr_want){"[::ffff:127.0.0.1]", "[::ffff:127.0.0.1]:"});
  snprintf(a, sizeof(a), "127.0.0.1:%s", strrchr(addr, ':') + 1);
  NP_CHECK_EQ(np_listen(np_current(), "tcp4", a, &l4), -EADDRINUSE);
  snprintf(a, sizeof(a), "[::1]:%s", strrchr(addr, ':') + 1);
  NP_CHECK_EQ(np_dial(np_current(), "tcp6", a, 0, &c), -ECONNREFUSED);
  np_free(l);
  NP_CHECK_EQ(np_listen(np_current(), "tcp4", "127.0.0.1:0", &l4), 0);
  dial_and_check(l4, "tcp6",
                 (addr_want){"[::ffff:127.0.0.1]", "[::ffff:127.0.0.1]:", "127.0.0.1", "[::ffff:127.0.0.1]",
                             "127.0.0.1:"});
  np_free(l4);
  NP_CHECK(c == NULL);
}

/* "tcp" on [::] takes both families (Linux's default, bindv6only 0): an
 * IPv4 client reaches it as [::ffff:127.0.0.1], and an IPv4 listener on
 * its port is refused. "tcp6" on [::] is IPv6 only: the same client is
 * refused, and the IPv4 port is free. */
NP_TEST(dual_stack_wildcard) {
  np_fd *l, *l4 = NULL, *c = NULL;
  char addr[NP_ADDRSTRLEN], a[NP_ADDRSTRLEN];
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "[::]:0", &l), 0);
  dial_and_check(
      l, "tcp4",
      (addr_want){"127.0.0.1", "127.0.0.1:", "[::ffff:127.0.0.1]", "127.0.0.1", "[::ffff:127.0.0.1]:"});
  dial_and_check(l, "tcp6", (addr_want){"[::1]", "[::1]:"});
  NP_CHECK_EQ(np_local_addr(l, addr, sizeof(addr)), 0);
  snprintf(a, sizeof(a), "127.0.0.1:%s", strrchr(addr, ':') + 1);
  NP_CHECK_EQ(np_listen(np_current(), "tcp4", a, &l4), -EADDRINUSE);
  np_free(l);
  NP_CHECK_EQ(np_listen(np_current(), "tcp6", "[::]:0", &l), 0);
  NP_CHECK_EQ(np_local_addr(l, addr, sizeof(addr)), 0);
  snprintf(a, sizeof(a), "127.0.0.1:%s", strrchr(addr, ':') + 1);
  NP_CHECK_EQ(np_dial(np_current(), "tcp4", a, np_deadline_after(5000 * MS), &c), -ECONNREFUSED);
  NP_CHECK(c == NULL);
  dial_and_check(l, "tcp6", (addr_want){"[::1]", "[::1]:"});
  NP_CHECK_EQ(np_listen(np_current(), "tcp4", a, &l4), 0);
  np_free(l4);
  np_free(l);
}

/* ---- tasks -------------------------------------------------------------------------- */

typedef struct order {
  atomic_int seq[3];
  atomic_int n;
} order;

typedef struct sleeper {
  order *o;
  int id;
  int64_t ns;
} sleeper;

static void sleep_then_note(void *arg) {
  sleeper *s = arg;
  int64_t start = np_now();
  NP_CHECK_EQ(np_sleep(s->ns), 0);
  NP_CHECK(np_now() - start >= s->ns);
  s->o->seq[atomic_fetch_add(&s->o->n, 1)] = s->id;
}

NP_TEST(sleep_order) {
  order o = {{0, 0, 0}, 0};
  sleeper s[3] = {{&o, 3, 30 * MS}, {&o, 1, 10 * MS}, {&o, 2, 20 * MS}};
  for (int i = 0; i < 3; i++) NP_CHECK_EQ(np_go(np_current(), sleep_then_note, &s[i]), 0);
  NP_CHECK_EQ(np_sleep(0), 0);  /* yields */
  NP_CHECK_EQ(np_sleep(-5), 0); /* as 0 */
  while (o.n < 3) NP_CHECK_EQ(np_sleep(5 * MS), 0);
  NP_CHECK(o.seq[0] == 1 && o.seq[1] == 2 && o.seq[2] == 3);
}

static atomic_int g_blocking_value; /* set on a helper thread natively */

static void blocking_fn(void *arg) { g_blocking_value = *(int *)arg * 2; }

NP_TEST(tasks_and_blocking) {
  NP_CHECK(np_in_task());
  NP_CHECK(np_current() != NULL);
  NP_CHECK_EQ(np_wait_tasks(np_current(), 0), -EDEADLK);
  np_task_name("api-test");
  int in = 21;
  NP_CHECK_EQ(np_blocking(blocking_fn, &in), 0);
  NP_CHECK_EQ(g_blocking_value, 42);
  NP_CHECK_EQ(np_go(NULL, blocking_fn, &in), -EINVAL);
  NP_CHECK_EQ(np_go(np_current(), NULL, &in), -EINVAL);
}

NP_TEST(stats_count_handles) {
  np_stats before, during, after;
  np_poller_stats(np_current(), &before);
  NP_CHECK(before.procs >= 1 && before.tasks >= 1);
  np_fd *p[2];
  NP_CHECK_EQ(np_socketpair(np_current(), p), 0);
  np_poller_stats(np_current(), &during);
  NP_CHECK_EQ(during.fds_open, before.fds_open + 2);
  np_free(p[0]);
  np_free(p[1]);
  np_poller_stats(np_current(), &after);
  NP_CHECK_EQ(after.fds_open, before.fds_open);
}

NP_TEST(errors_described) {
  NP_CHECK(strstr(np_strerror(NP_ETIMEOUT), "deadline") != NULL);
  NP_CHECK(strstr(np_strerror(NP_ECLOSING), "closed") != NULL);
  NP_CHECK(strcmp(np_strerror(-ECONNREFUSED), strerror(ECONNREFUSED)) == 0);
  NP_CHECK(np_strerror(12345) != NULL);
}

NP_TEST_MAIN()
