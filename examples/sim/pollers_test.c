/*
 * pollers_test.c - a program with a second poller: a server task on it,
 * the client on the test's own, then the second poller destroyed from a
 * task of the first. The same source natively and simulated.
 */
#include <errno.h>
#include <netpoll_test.h>
#include <netinet/in.h>
#include <string.h>

static void server(void *arg) {
  np_fd *l = arg, *c;
  char buf[16];
  ssize_t n;
  int err;
  struct sockaddr_storage peer;
  socklen_t len = sizeof(peer);
  while ((err = np_accept(l, &c, (struct sockaddr *)&peer, &len)) == -EMFILE) np_sleep(1000000); /* retry */
  if (err == NP_ECLOSING) return; /* the test gave up: its dial failed */
  NP_CHECK_EQ(err, 0);
  NP_CHECK(peer.ss_family == AF_INET && len == sizeof(struct sockaddr_in)); /* the client's address */
  while ((n = np_read(c, buf, sizeof(buf))) > 0)
    if (np_write(c, buf, (size_t)n, NULL) != 0) break;
  np_free(c);
}

NP_TEST(second_poller) {
  np_poller *q;
  np_fd *l, *c;
  char addr[NP_ADDRSTRLEN], got[4] = "";
  size_t have = 0;
  NP_CHECK_EQ(np_poller_create(&q, NULL), 0);
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "127.0.0.1:0", &l), 0);
  NP_CHECK_EQ(np_local_addr(l, addr, sizeof(addr)), 0);
  NP_CHECK_EQ(np_go(q, server, l), 0);
  NP_CHECK_EQ(np_wait_tasks(np_current(), 0), -EDEADLK); /* its own poller */
  int err = np_dial(np_current(), "tcp", addr, np_deadline_after(200000000000), &c);
  NP_CHECK(err == 0 || err == -ECONNRESET || err == -ETIMEDOUT);
  if (err == 0) {
    (void)np_write(c, "abc", 3, NULL);
    while (have < 3) {
      ssize_t n = np_read(c, got + have, 3 - have);
      if (n <= 0) break; /* reset by the network */
      have += (size_t)n;
    }
    NP_CHECK(memcmp(got, "abc", have) == 0);
    np_free(c);
  }
  np_close(l); /* the server's accept, if it still waits, fails */
  NP_CHECK_EQ(np_wait_tasks(q, 0), 0);
  np_free(l);
  np_poller_destroy(q);
}

NP_TEST_MAIN()
