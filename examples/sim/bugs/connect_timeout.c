/*
 * connect_timeout.c - BUG: a client that wants to give up on a server
 * after 200 ms, but sets that deadline on the connection after np_dial
 * returns: the connect itself has no deadline, and when SYNs are lost
 * (the kernel retries after 1, 2, 4 ... s) it waits seconds, or 127 s.
 * Natively a loopback connect never loses a SYN; the simulated network
 * loses some. Built with -DFIXED the deadline is np_dial's.
 */
#include <errno.h>
#include <netpoll_test.h>

#define TIMEOUT_NS 200000000 /* 200 ms */

static void server(void *arg) {
  np_fd *l = arg, *c;
  int err;
  while ((err = np_accept(l, &c, NULL, NULL)) != NP_ECLOSING) { /* until the test closes l */
    if (err != 0) {                                             /* EMFILE: back off */
      np_sleep(1000000);
      continue;
    }
    char buf[8];
    if (np_read(c, buf, sizeof(buf)) > 0) (void)np_write(c, "ok", 2, NULL);
    np_free(c);
  }
  np_free(l);
}

/* One request, all of it within TIMEOUT_NS: 0, or -errno. */
static int ping(const char *addr) {
  np_fd *c;
  int64_t deadline = np_deadline_after(TIMEOUT_NS);
#ifdef FIXED
  int err = np_dial(np_current(), "tcp", addr, deadline, &c);
#else
  int err = np_dial(np_current(), "tcp", addr, 0, &c); /* BUG: the connect has no deadline */
#endif
  if (err != 0) return err;
  err = np_set_deadline(c, deadline);
  char buf[2];
  size_t got = 0;
  if (err == 0) err = np_write(c, "ping", 4, NULL);
  while (err == 0 && got < sizeof(buf)) { /* a reply may come in pieces */
    ssize_t n = np_read(c, buf + got, sizeof(buf) - got);
    err = n < 0 ? (int)n : n == 0 ? -EPROTO : 0;
    got += n > 0 ? (size_t)n : 0;
  }
  np_free(c);
  return err;
}

NP_TEST(connect_timeout) {
  np_fd *l;
  char addr[NP_ADDRSTRLEN];
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "127.0.0.1:0", &l), 0);
  NP_CHECK_EQ(np_local_addr(l, addr, sizeof(addr)), 0);
  NP_CHECK_EQ(np_go(np_current(), server, l), 0);
  for (int i = 0; i < 5; i++) {
    int64_t start = np_now();
    int err = ping(addr);
    (void)err; /* the network may fail a ping; the point is how long it takes */
    /* The point of the timeout: never much longer than it. */
    NP_CHECK(np_now() - start <= TIMEOUT_NS + 50000000);
  }
  np_close(l); /* the server's np_accept fails: it ends */
}

NP_TEST_MAIN()
