/* hello_test.c - the README's example: a server task and a client, one
 * source for the real and the simulated library. */
#include <netpoll_test.h>
#include <string.h>

static void server(void *arg) {
  np_fd *l = arg, *c;
  char buf[64];
  ssize_t n;
  NP_CHECK_EQ(np_accept(l, &c, NULL, NULL), 0);
  while ((n = np_read(c, buf, sizeof(buf))) > 0) /* echo until EOF or reset */
    if (np_write(c, buf, (size_t)n, NULL) != 0) break;
  np_free(c);
  np_free(l);
}

NP_TEST(hello) {
  np_fd *l, *c;
  char addr[NP_ADDRSTRLEN], reply[6] = "";
  size_t got = 0;
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "127.0.0.1:0", &l), 0);
  NP_CHECK_EQ(np_local_addr(l, addr, sizeof(addr)), 0);
  NP_CHECK_EQ(np_go(np_current(), server, l), 0);
  NP_CHECK_EQ(np_dial(np_current(), "tcp", addr, np_deadline_after(1000000000), &c), 0);
  NP_CHECK_EQ(np_write(c, "hello", 5, NULL), 0);
  while (got < 5) { /* a reply may come in pieces */
    ssize_t n = np_read(c, reply + got, 5 - got);
    NP_CHECK(n > 0);
    got += (size_t)n;
  }
  NP_CHECK(strcmp(reply, "hello") == 0);
  np_free(c);
}

NP_TEST_MAIN()
