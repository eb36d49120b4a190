/*
 * echo_test.c - an echo server and its clients, tested natively (linked
 * with libnetpoll) and under the simulator (linked with libnetpoll-sim)
 * from this one source. Every byte a client gets back must be the byte it
 * sent; a connection may be reset (the simulated network does that), never
 * corrupted, truncated silently or left hanging.
 */
#include <errno.h>
#include <stdint.h>
#include <netpoll_test.h>
#include <string.h>

#define CLIENTS 4
#define MSG_MAX 20000

static char server_addr[NP_ADDRSTRLEN];

static void serve_conn(void *arg) {
  np_fd *c = arg;
  char buf[4096];
  for (;;) {
    ssize_t n = np_read(c, buf, sizeof(buf));
    if (n <= 0) break; /* EOF, or the connection was reset */
    if (np_write(c, buf, (size_t)n, NULL) != 0) break;
  }
  np_free(c);
}

/* Accepts until the listener is closed. */
static void serve(void *arg) {
  np_fd *l = arg;
  for (;;) {
    np_fd *c;
    int err = np_accept(l, &c, NULL, NULL);
    if (err == NP_ECLOSING) break;
    if (err == -EMFILE || err == -ENFILE) { /* out of descriptors: back off, as Go's http server */
      np_sleep(5 * 1000000);
      continue;
    }
    NP_CHECK_EQ(err, 0);
    NP_CHECK_EQ(np_go(np_current(), serve_conn, c), 0);
  }
  np_free(l);
}

static np_fd *done_w; /* each client writes one byte here when it ends */

static void client(void *arg) {
  static char out[CLIENTS][MSG_MAX], in[CLIENTS][MSG_MAX];
  int me = (int)(intptr_t)arg;
  size_t len = 1 + np_rand() % MSG_MAX, got = 0;
  for (size_t i = 0; i < len; i++) out[me][i] = (char)np_rand();
  np_fd *c;
  int err = np_dial(np_current(), "tcp", server_addr, np_deadline_after(60 * 1000000000LL), &c);
  if (err == -ECONNRESET || err == NP_ETIMEOUT) { /* reset as it was made, or every SYN lost */
    NP_CHECK_EQ(np_write(done_w, "x", 1, NULL), 0);
    return;
  }
  NP_CHECK_EQ(err, 0);
  /* A chunk at a time, each read back before the next is sent: writing it
   * all first deadlocks once both directions' buffers are full (the
   * simulator found that in this test's first version). */
  while (err == 0 && got < len) {
    size_t chunk = len - got < 512 ? len - got : 512, back = 0;
    err = np_write(c, out[me] + got, chunk, NULL);
    while (err == 0 && back < chunk) {
      ssize_t n = np_read(c, in[me] + got + back, chunk - back);
      if (n == 0 || n == -ECONNRESET) err = n == 0 ? -ECONNRESET : (int)n; /* reset: the rest is lost */
      if (n < 0 && n != -ECONNRESET) err = (int)n;
      if (n > 0) back += (size_t)n;
    }
    got += back;
  }
  NP_CHECK(memcmp(in[me], out[me], got) == 0);
  NP_CHECK(err == 0 || err == -EPIPE || err == -ECONNRESET);
  np_free(c);
  NP_CHECK_EQ(np_write(done_w, "x", 1, NULL), 0);
}

NP_TEST(echo) {
  np_fd *l, *done[2];
  char buf[CLIENTS];
  size_t got = 0;
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "127.0.0.1:0", &l), 0);
  NP_CHECK_EQ(np_local_addr(l, server_addr, sizeof(server_addr)), 0);
  NP_CHECK_EQ(np_pipe(np_current(), done), 0);
  done_w = done[1];
  NP_CHECK_EQ(np_go(np_current(), serve, l), 0);
  for (int i = 0; i < CLIENTS; i++) NP_CHECK_EQ(np_go(np_current(), client, (void *)(intptr_t)i), 0);
  while (got < CLIENTS) {
    ssize_t n = np_read(done[0], buf, CLIENTS - got);
    NP_CHECK(n > 0);
    got += (size_t)n;
  }
  np_close(l); /* the server's np_accept returns NP_ECLOSING */
  np_free(done[0]);
  np_free(done[1]);
}

NP_TEST_MAIN()
