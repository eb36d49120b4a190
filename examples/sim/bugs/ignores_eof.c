/*
 * ignores_eof.c - BUG: the server's read loop treats end of file (np_read
 * returning 0) as an empty read and reads again, forever: once the client
 * has sent its request and shut its side, the server spins. Natively the
 * test hangs at 100% CPU; the simulator stops it at its step limit with
 * the trace of the spin. Built with -DFIXED the loop stops at 0.
 */
#include <netpoll_test.h>
#include <stdio.h>
#include <string.h>

static void server(void *arg) {
  np_fd *c = arg;
  char buf[256];
  size_t total = 0;
  for (;;) {
    ssize_t n = np_read(c, buf, sizeof(buf));
#ifdef FIXED
    if (n <= 0) break; /* 0: the peer is done; < 0: an error */
#else
    if (n < 0) break; /* BUG: 0 (end of file) is taken for "nothing yet" */
#endif
    total += (size_t)n;
  }
  char reply[32];
  int len = snprintf(reply, sizeof(reply), "%zu", total);
  (void)np_write(c, reply, (size_t)len, NULL);
  np_free(c);
}

NP_TEST(ignores_eof) {
  np_fd *pair[2];
  NP_CHECK_EQ(np_socketpair(np_current(), pair), 0);
  NP_CHECK_EQ(np_go(np_current(), server, pair[1]), 0);
  NP_CHECK_EQ(np_write(pair[0], "hello", 5, NULL), 0);
  NP_CHECK_EQ(np_close_write(pair[0]), 0);
  char reply[32] = "";
  ssize_t n = np_read(pair[0], reply, sizeof(reply) - 1);
  NP_CHECK(n > 0);
  NP_CHECK(strcmp(reply, "5") == 0);
  np_free(pair[0]);
}

NP_TEST_MAIN()
