/*
 * crowd_test.c - many connections open at once: a server with a task per
 * connection and CLIENTS clients that all stay connected until every one
 * has had its echo back, so 2 * CLIENTS + 3 descriptors and 2 * CLIENTS + 2
 * tasks are live together (more than the simulator held before it grew to
 * 1024 of each). Natively and under the simulator, from this one source.
 */
#include <errno.h>
#include <stdatomic.h>
#include <netpoll_test.h>
#include <stdint.h>
#include <string.h>

#define CLIENTS 300
#define MSG 256

static char server_addr[NP_ADDRSTRLEN];
static atomic_int dial_failed; /* natively, tasks run on several threads */
static np_fd *done_w, *gate_r; /* clients write a byte to done_w; gate_r reads EOF when all may go */

static void report(void) { NP_CHECK_EQ(np_write(done_w, "x", 1, NULL), 0); }

static void serve_conn(void *arg) {
  np_fd *c = arg;
  char buf[MSG];
  ssize_t n;
  while ((n = np_read(c, buf, sizeof(buf))) > 0)
    if (np_write(c, buf, (size_t)n, NULL) != 0) break;
  np_free(c);
}

static void serve(void *arg) {
  np_fd *l = arg;
  for (;;) {
    np_fd *c;
    int err = np_accept(l, &c, NULL, NULL);
    if (err == NP_ECLOSING) break;
    if (err == -EMFILE || err == -ENFILE) { /* a simulated fault: back off */
      np_sleep(1000000);
      continue;
    }
    NP_CHECK_EQ(err, 0);
    NP_CHECK_EQ(np_go(np_current(), serve_conn, c), 0);
  }
  np_free(l);
}

/* One message out and back, then hold the connection until everyone is
 * served. A reset (the simulated network makes them) ends it early. */
static void client(void *arg) {
  int me = (int)(intptr_t)arg;
  char out[MSG], in[MSG];
  for (int i = 0; i < MSG; i++) out[i] = (char)(me * 31 + i);
  np_fd *c;
  int err = np_dial(np_current(), "tcp", server_addr, np_deadline_after(300 * 1000000000LL), &c);
  if (err != 0) {
    NP_CHECK(err == -ECONNRESET || err == NP_ETIMEOUT || err == -ETIMEDOUT); /* every SYN lost: 127 s */
    atomic_fetch_add(&dial_failed, 1);
    report();
    report();
    return;
  }
  size_t got = 0;
  err = np_write(c, out, MSG, NULL);
  while (err == 0 && got < MSG) {
    ssize_t n = np_read(c, in + got, MSG - got);
    if (n <= 0) err = n == 0 ? -ECONNRESET : (int)n;
    if (n > 0) got += (size_t)n;
  }
  NP_CHECK(err == 0 || err == -ECONNRESET || err == -EPIPE);
  NP_CHECK(memcmp(in, out, got) == 0);
  report();
  char b;
  NP_CHECK_EQ(np_read(gate_r, &b, 1), 0); /* everyone is connected at once until the gate closes */
  np_free(c);
  report();
}

static void wait_reports(np_fd *done_r) {
  char buf[64];
  for (size_t got = 0; got < CLIENTS;) {
    ssize_t n = np_read(done_r, buf, CLIENTS - got < sizeof(buf) ? CLIENTS - got : sizeof(buf));
    NP_CHECK(n > 0);
    got += (size_t)n;
  }
}

NP_TEST(crowd) {
  np_fd *l, *done[2], *gate[2];
  NP_CHECK_EQ(np_pipe(np_current(), done), 0);
  NP_CHECK_EQ(np_pipe(np_current(), gate), 0);
  done_w = done[1];
  gate_r = gate[0];
  NP_CHECK_EQ(np_listen(np_current(), "tcp", "127.0.0.1:0", &l), 0);
  NP_CHECK_EQ(np_local_addr(l, server_addr, sizeof(server_addr)), 0);
  atomic_store(&dial_failed, 0);
  NP_CHECK_EQ(np_go(np_current(), serve, l), 0);
  for (int i = 0; i < CLIENTS; i++) NP_CHECK_EQ(np_go(np_current(), client, (void *)(intptr_t)i), 0);
  wait_reports(done[0]); /* every client has its echo and holds its connection */
  NP_CHECK_EQ(np_close(gate[1]), 0);
  wait_reports(done[0]);
  NP_CHECK(atomic_load(&dial_failed) < CLIENTS / 2); /* the crowd really was there */
  np_close(l);                                       /* the server's np_accept returns NP_ECLOSING */
  for (int i = 0; i < 2; i++) {
    np_free(done[i]);
    np_free(gate[i]);
  }
}

NP_TEST_MAIN()
