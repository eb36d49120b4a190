/*
 * reset_truncates.c - BUG: a client that reads a reply until the server
 * closes, and takes a reset for that close: when the connection is reset
 * mid-stream it returns the part it got as the whole reply, and the
 * caller uses a truncated reply as if it were complete. Natively loopback
 * connections are not reset; the simulated network resets some. Built
 * with -DFIXED a reset is an error the caller sees.
 */
#include <errno.h>
#include <netpoll_test.h>
#include <string.h>

#define REPLY 3000

static void server(void *arg) {
  np_fd *l = arg;
  static char reply[REPLY];
  memset(reply, 'r', sizeof(reply));
  np_fd *c;
  int err;
  while ((err = np_accept(l, &c, NULL, NULL)) != NP_ECLOSING) { /* until the test closes l */
    if (err != 0) {                                             /* EMFILE: back off */
      np_sleep(1000000);
      continue;
    }
    char req[16];
    if (np_read(c, req, sizeof(req)) > 0) (void)np_write(c, reply, sizeof(reply), NULL);
    np_free(c); /* the reply ends where the connection does */
  }
  np_free(l);
}

/* The reply's length, or -errno. */
static ssize_t call(const char *addr, char *reply, size_t cap) {
  np_fd *c;
  int err = np_dial(np_current(), "tcp", addr, 0, &c);
  if (err != 0) return err;
  size_t got = 0;
  ssize_t n = np_write(c, "get", 3, NULL);
  while (n == 0 && got < cap) {
    ssize_t r = np_read(c, reply + got, cap - got);
#ifdef FIXED
    if (r < 0) n = r; /* reset: the reply is lost, say so */
#endif
    if (r <= 0) break; /* BUG without FIXED: a reset is taken for the end of the reply */
    got += (size_t)r;
  }
  np_free(c);
  return n < 0 ? n : (ssize_t)got;
}

NP_TEST(reset_truncates) {
  np_fd *l;
  char addr[NP_ADDRSTRLEN];
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "127.0.0.1:0", &l), 0);
  NP_CHECK_EQ(np_local_addr(l, addr, sizeof(addr)), 0);
  NP_CHECK_EQ(np_go(np_current(), server, l), 0);
  for (int i = 0; i < 3; i++) {
    static char reply[REPLY + 1];
    ssize_t n = call(addr, reply, sizeof(reply));
    if (n == -ECONNRESET || n == -EPIPE || n == -ETIMEDOUT)
      continue; /* a failed call is fine: a wrong reply is not */
    NP_CHECK_EQ(n, REPLY);
  }
  np_close(l); /* the server's np_accept fails: it ends */
}

NP_TEST_MAIN()
