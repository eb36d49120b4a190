/*
 * rearm_after_shutdown.c - BUG: a server with an idle timeout shuts down
 * by setting a stopping flag and expiring every connection's deadline at
 * once (np_set_deadline(c, 1): a blocked np_read wakes without waiting
 * for np_close). A handler arms its idle deadline before every read; one
 * that arms it after the shutdown expired them re-arms it, and its read
 * of a silent connection keeps shutdown waiting the whole idle time.
 * np_echo had it (found by testing from outside: SIGTERM during a flood
 * of connections sometimes took IDLE_MS). Natively the window is a few
 * instructions; the simulator's schedules open it. Built with -DFIXED the
 * handler looks at the flag after arming (the store to stopping comes
 * before the expiry, so one of the two always sees the other).
 */
#include <netpoll_test.h>
#include <stdbool.h>
#include <stdint.h>

#define IDLE_NS 30000000000LL /* 30 s */
#define CONNS 4

typedef struct server {
  np_fd *ends[CONNS][2]; /* [i][0] the server's end, [i][1] a silent client's */
  int active;            /* handlers not yet returned */
  bool stopping;
} server;

static server s;

static void handler(void *arg) {
  np_fd *c = arg;
  char buf[64];
  for (;;) {
    (void)np_set_read_deadline(c, np_deadline_after(IDLE_NS)); /* idle timeout */
#ifdef FIXED
    if (s.stopping) break;
#endif
    ssize_t n = np_read(c, buf, sizeof(buf));
    if (n <= 0 || s.stopping) break; /* EOF, idle, or shutdown's expiry */
    if (np_write(c, buf, (size_t)n, NULL) != 0) break;
  }
  s.active--;
}

NP_TEST(rearm_after_shutdown) {
  s = (server){0};
  for (int i = 0; i < CONNS; i++) {
    NP_CHECK_EQ(np_socketpair(np_current(), s.ends[i]), 0);
    NP_CHECK_EQ(np_go(np_current(), handler, s.ends[i][0]), 0);
    s.active++;
  }
  for (uint64_t k = np_rand() % 4; k > 0; k--) np_yield(); /* some handlers are in np_read by now */
  int64_t t0 = np_now();
  s.stopping = true; /* shutdown: the flag, then every deadline expired */
  for (int i = 0; i < CONNS; i++) (void)np_set_deadline(s.ends[i][0], 1);
  while (s.active > 0) np_sleep(1000000);
  NP_CHECK(np_now() - t0 < IDLE_NS / 2); /* shutdown must not wait for an idle timeout */
  for (int i = 0; i < CONNS; i++) {
    np_free(s.ends[i][0]);
    np_free(s.ends[i][1]);
  }
}

NP_TEST_MAIN()
