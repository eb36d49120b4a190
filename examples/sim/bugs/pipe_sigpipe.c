/*
 * pipe_sigpipe.c - BUG: a producer task writes lines into a pipe for a
 * consumer that stops after the first one and closes its end (as `head -1`
 * does). The producer means to stop at np_write's -EPIPE, but the program
 * never ignores SIGPIPE, and a write to a pipe with no reader raises it:
 * natively the process dies (exit 141) before np_write returns. The
 * simulator fails the run where the real kernel would kill it. Built with
 * -DFIXED the two ends are a socket pair, which the library writes with
 * MSG_NOSIGNAL: the producer sees -EPIPE and stops.
 */
#include <errno.h>
#include <netpoll_test.h>

static void consumer(void *arg) {
  np_fd *r = arg;
  char buf[16];
  NP_CHECK(np_read(r, buf, sizeof(buf)) > 0); /* the first line is enough */
  np_free(r);
}

NP_TEST(pipe_sigpipe) {
  np_fd *ends[2];
#ifdef FIXED
  NP_CHECK_EQ(np_socketpair(np_current(), ends), 0);
#else
  NP_CHECK_EQ(np_pipe(np_current(), ends), 0); /* BUG: SIGPIPE is not ignored */
#endif
  NP_CHECK_EQ(np_go(np_current(), consumer, ends[0]), 0);
  int err = 0;
  for (int i = 0; i < 1000 && err == 0; i++) {
    err = np_write(ends[1], "line\n", 5, NULL);
    np_sleep(1000000); /* a line a millisecond */
  }
  NP_CHECK(err == -EPIPE || err == -ECONNRESET); /* the consumer left */
  np_free(ends[1]);
}

NP_TEST_MAIN()
