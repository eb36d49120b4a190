/*
 * unix_path_reuse.c - BUG: a service on a unix socket path is stopped and
 * started again (a restart, a reload), and the new instance listens on the
 * path without removing the old socket file. A path's socket file outlives
 * its listener: the second np_listen fails with EADDRINUSE, and meanwhile
 * clients get ECONNREFUSED. Natively it fails the same way, on the second
 * start; before the simulated kernel kept socket files, the simulator
 * freed the path at close and passed it. Built with -DFIXED the service
 * unlinks the path before it listens (the usual idiom).
 */
#include <errno.h>
#include <netpoll_test.h>
#include <stdio.h>
#include <unistd.h>

typedef struct service {
  np_fd *l;
  char path[80];
} service;

static int service_start(service *s) {
#ifdef FIXED
  (void)unlink(s->path); /* a stale file from the last instance */
#endif
  return np_listen(np_current(), "unix", s->path, &s->l); /* BUG: without FIXED, the old file is in the way */
}

/* Serves connections until the listener is closed (the service stops),
 * then frees it: the stopping side only closes it, since this task may
 * be anywhere in its loop, not only in np_accept (the simulator reported
 * the np_free version as a use after free, I13). */
static void serve(void *arg) {
  np_fd *l = arg, *c;
  int err;
  while ((err = np_accept(l, &c, NULL, NULL)) != NP_ECLOSING) {
    if (err != 0) { /* EMFILE: back off */
      np_sleep(1000000);
      continue;
    }
    char buf[4];
    size_t got = 0;
    while (got < sizeof(buf)) { /* all of "ping": closing with unread data would reset */
      ssize_t n = np_read(c, buf + got, sizeof(buf) - got);
      if (n <= 0) break;
      got += (size_t)n;
    }
    if (got == sizeof(buf)) (void)np_write(c, "ok", 2, NULL);
    np_free(c);
  }
  np_free(l);
}

/* One request within a second: 0, or -errno (the network may reset a
 * connection: the caller tries again). */
static int request_once(const char *path) {
  np_fd *c;
  int64_t deadline = np_deadline_after(1000000000);
  int err = np_dial(np_current(), "unix", path, deadline, &c);
  if (err != 0) return err;
  char reply[2];
  size_t got = 0;
  err = np_set_deadline(c, deadline);
  if (err == 0) err = np_write(c, "ping", 4, NULL);
  while (err == 0 && got < sizeof(reply)) {
    ssize_t n = np_read(c, reply + got, sizeof(reply) - got);
    err = n < 0 ? (int)n : n == 0 ? -EPROTO : 0;
    got += n > 0 ? (size_t)n : 0;
  }
  np_free(c);
  return err;
}

static void request(const char *path) {
  int err = -1;
  for (int try = 0; try < 20 && err != 0; try++) err = request_once(path);
  NP_CHECK_EQ(err, 0);
}

NP_TEST(unix_path_reuse) {
  service s;
  snprintf(s.path, sizeof(s.path), "/tmp/netpoll-bug-%016llx.sock", (unsigned long long)np_rand());
  for (int start = 0; start < 3; start++) {
    NP_CHECK_EQ(service_start(&s), 0);
    NP_CHECK_EQ(np_go(np_current(), serve, s.l), 0);
    request(s.path);
    NP_CHECK_EQ(np_close(s.l), 0); /* the service stops; its socket file stays */
  }
  (void)unlink(s.path);
}

NP_TEST_MAIN()
