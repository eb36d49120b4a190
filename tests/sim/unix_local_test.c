/*
 * unix_local_test.c - AF_UNIX stream sockets are local IPC, under the
 * simulator's faults as on Linux: a connect completes at once (no
 * handshake to lose or delay), bytes written are readable at once, and
 * nothing between the two ends resets a connection or aborts it in the
 * backlog. A program may rely on that natively, so the simulator must not
 * report it as wrong: ctest runs this with every fault on (short reads and
 * writes, EINTR, EMFILE on accept stay realistic for unix sockets and are
 * handled here). The simulated kernel once gave unix connects the TCP
 * network's SYN latency and loss, delivery delays and resets.
 */
#include <errno.h>
#include <netpoll_test.h>
#include <stdio.h>
#include <string.h>

#define MS 1000000LL

typedef struct pair {
  np_fd *l, *client, *server;
} pair;

/* EMFILE leaves the connection queued (Linux): try again a little later. */
static void accept_retry(np_fd *l, np_fd **out) {
  int err;
  while ((err = np_accept(l, out, NULL, NULL)) == -EMFILE) NP_CHECK_EQ(np_sleep(MS), 0);
  NP_CHECK_EQ(err, 0);
}

/* A connection on a fresh abstract name, dialed with a deadline that only
 * a handshake over a network could miss. */
static void pair_open(pair *c) {
  char name[64];
  snprintf(name, sizeof(name), "@netpoll-unix-local-%016llx", (unsigned long long)np_rand());
  NP_CHECK_EQ(np_listen(np_current(), "unix", name, &c->l), 0);
  NP_CHECK_EQ(np_dial(np_current(), "unix", name, np_deadline_after(10 * MS), &c->client), 0);
  accept_retry(c->l, &c->server);
}

static void pair_free(pair *c) {
  np_free(c->client);
  np_free(c->server);
  np_free(c->l);
}

/* Reads exactly len bytes before a deadline 10 ms away: the bytes were
 * written before the call, so only a delay in delivery could miss it. */
static void read_now(np_fd *f, char *buf, size_t len) {
  NP_CHECK_EQ(np_set_read_deadline(f, np_deadline_after(10 * MS)), 0);
  size_t got = 0;
  while (got < len) {
    ssize_t n = np_read(f, buf + got, len - got);
    NP_CHECK(n > 0);
    got += (size_t)n;
  }
  NP_CHECK_EQ(np_set_read_deadline(f, 0), 0);
}

/* Both ways, a message at a time, every byte checked: no reset, no delay. */
NP_TEST(unix_messages_at_once) {
  pair c;
  pair_open(&c);
  char out[512], in[512];
  for (int round = 0; round < 64; round++) {
    for (size_t i = 0; i < sizeof(out); i++) out[i] = (char)(round * 31 + (int)i);
    np_fd *from = round % 2 ? c.server : c.client, *to = round % 2 ? c.client : c.server;
    size_t len = 1 + np_rand() % sizeof(out);
    NP_CHECK_EQ(np_write(from, out, len, NULL), 0);
    read_now(to, in, len);
    NP_CHECK(memcmp(in, out, len) == 0);
  }
  pair_free(&c);
}

/* Connections that wait in the backlog are not dropped from it: each one
 * dialed before any accept carries its first bytes through. */
NP_TEST(unix_backlog_keeps_connections) {
  char name[64];
  snprintf(name, sizeof(name), "@netpoll-unix-backlog-%016llx", (unsigned long long)np_rand());
  np_fd *l, *clients[16], *server;
  NP_CHECK_EQ(np_listen(np_current(), "unix", name, &l), 0);
  for (int i = 0; i < 16; i++) {
    NP_CHECK_EQ(np_dial(np_current(), "unix", name, np_deadline_after(10 * MS), &clients[i]), 0);
    char id = (char)('a' + i);
    NP_CHECK_EQ(np_write(clients[i], &id, 1, NULL), 0);
  }
  for (int i = 0; i < 16; i++) {
    char got;
    accept_retry(l, &server);
    read_now(server, &got, 1);
    NP_CHECK_EQ(got, (char)('a' + i)); /* the backlog is FIFO */
    np_free(server);
    np_free(clients[i]);
  }
  np_free(l);
}

/* A dial to a name nobody listens on is refused at once. */
NP_TEST(unix_refused_at_once) {
  np_fd *c;
  int64_t t0 = np_now();
  NP_CHECK_EQ(np_dial(np_current(), "unix", "@netpoll-unix-local-nobody", np_deadline_after(10 * MS), &c),
              -ECONNREFUSED);
  NP_CHECK(np_now() - t0 < 10 * MS);
}

NP_TEST_MAIN()
