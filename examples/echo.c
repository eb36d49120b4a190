/*
 * echo.c - a TCP echo server on netpoll.
 *
 *   np_echo [--threads] [--procs N] [[ADDR:]PORT] [IDLE_MS]
 *
 * Listens on ADDR (default 127.0.0.1) and PORT (default 0: the kernel picks
 * one), prints "listening on ADDR:PORT" on stdout, and echoes every byte it
 * receives. Each connection is served by a task (as Go's `go handleConn(c)`)
 * that blocks in np_read / np_write exactly as a goroutine blocks in Go's
 * net package; the poller's N scheduler threads (default: the CPU count) run
 * the tasks and poll. --threads serves each connection on its own OS thread
 * instead (the same code: np_* calls block a thread outside a task).
 * IDLE_MS > 0 closes a connection whose read waits for data, or whose write
 * waits for room, longer than that: the read deadline is armed before every
 * read and the write deadline before every write.
 *
 * SIGINT / SIGTERM shut it down cleanly: they are blocked in every thread and
 * read from a signalfd that is itself registered with the poller, by a
 * watcher thread that then closes the listener. The accept loop ends, every
 * connection's deadlines are expired at once (each handler wakes and closes
 * its own connection, all of them concurrently), and np_poller_destroy runs.
 *
 * The server is a small reusable unit (echo_server_*) so that the tests can
 * run it in-process: tests/test_echo.c includes this file with
 * NP_ECHO_NO_MAIN defined.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"

#define ECHO_BUF_SIZE 16384

typedef struct echo_conn echo_conn;

typedef struct echo_server {
  np_poller *poller;
  np_fd *listener;
  int port;             /* the bound port; constant */
  int64_t idle_ns;      /* per-read / per-write deadline, 0 = none; constant */
  bool threads;         /* a thread per connection instead of a task; constant */
  _Atomic int stopping; /* handlers exit: shutdown, not an idle timeout */
  pthread_mutex_t lock; /* protects conns, active */
  pthread_cond_t done;  /* signalled when active reaches 0 */
  echo_conn *conns;     /* open connections */
  int active;           /* connection threads not yet finished */
  _Atomic uint64_t accepted;
  _Atomic uint64_t bytes_echoed;
  _Atomic uint64_t timeouts;
} echo_server;

struct echo_conn {
  echo_server *srv;
  np_fd *fd;
  echo_conn *prev, *next; /* srv->conns, under srv->lock */
};

/* Creates the poller and the listening socket (np_listen: its connections
 * get the drained hint). host is a dotted IPv4 address (NULL: 127.0.0.1), port 0
 * asks the kernel for one. Returns 0 or -errno. */
static int echo_server_start(echo_server **out, const char *host, int port, int64_t idle_ns,
                             const np_options *opts, bool threads) {
  *out = NULL;
  if (port < 0 || port > 65535) return -EINVAL;
  echo_server *s = calloc(1, sizeof(*s));
  if (s == NULL) return -ENOMEM;
  s->idle_ns = idle_ns > 0 ? idle_ns : 0;
  s->threads = threads;
  char addr[NP_ADDRSTRLEN];
  snprintf(addr, sizeof(addr), "%s:%d", host != NULL ? host : "127.0.0.1", port);
  int err = np_poller_create(&s->poller, opts);
  if (err != 0) {
    free(s);
    return err;
  }
  err = np_listen(s->poller, "tcp4", addr, &s->listener); /* -EINVAL for a host that is not IPv4 */
  if (err == 0) err = np_local_addr(s->listener, addr, sizeof(addr));
  if (err < 0) goto fail;
  s->port = atoi(strrchr(addr, ':') + 1);
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->done, NULL);
  *out = s;
  return 0;
fail:
  np_poller_destroy(s->poller); /* frees the listener, if there is one */
  free(s);
  return err;
}

static int echo_server_port(const echo_server *s) { return s->port; }

/* echoed: the bytes the connection wrote back, added here, before np_free
 * sends the EOF (a client that saw it sees the count). */
static void conn_finish(echo_conn *c, uint64_t echoed) {
  echo_server *s = c->srv;
  atomic_fetch_add(&s->bytes_echoed, echoed);
  pthread_mutex_lock(&s->lock); /* unlink first: echo_server_destroy closes only listed conns */
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  pthread_mutex_unlock(&s->lock);
  np_free(c->fd);
  free(c);
  pthread_mutex_lock(&s->lock);
  if (--s->active == 0) pthread_cond_broadcast(&s->done);
  pthread_mutex_unlock(&s->lock);
}

/* One connection: read what is there, write all of it back, until EOF,
 * an error, the idle deadline or shutdown (NP_ECLOSING). */
static void *conn_main(void *arg) {
  echo_conn *c = arg;
  echo_server *s = c->srv;
  char buf[ECHO_BUF_SIZE];
  uint64_t echoed = 0;
  for (;;) {
    /* Arm, then look at stopping: shutdown stores stopping before it
     * expires the deadlines, so either its expiry comes after this arm (the
     * read wakes at once) or this load sees stopping (the handler leaves).
     * Arming without the check re-armed a deadline shutdown had expired,
     * and a silent connection kept shutdown waiting its whole IDLE_MS. */
    if (s->idle_ns > 0) (void)np_set_read_deadline(c->fd, np_deadline_after(s->idle_ns));
    if (atomic_load(&s->stopping)) break;
    ssize_t n = np_read(c->fd, buf, sizeof(buf));
    if (n <= 0) {
      if (n == NP_ETIMEOUT && !atomic_load(&s->stopping)) atomic_fetch_add(&s->timeouts, 1);
      break; /* 0: EOF; NP_ECLOSING / NP_ETIMEOUT while stopping: shutdown; else a socket error */
    }
    /* The write gets IDLE_MS of its own for room, not what the read left. */
    if (s->idle_ns > 0) (void)np_set_write_deadline(c->fd, np_deadline_after(s->idle_ns));
    if (atomic_load(&s->stopping)) break; /* as for the read */
    size_t written = 0;
    int err = np_write(c->fd, buf, (size_t)n, &written);
    echoed += written; /* counted here: a shared counter written every round trip is a
                          cache line the schedulers' CPUs pass back and forth */
    if (err != 0) {
      if (err == NP_ETIMEOUT && !atomic_load(&s->stopping)) atomic_fetch_add(&s->timeouts, 1);
      break;
    }
    if (atomic_load(&s->stopping)) break;
  }
  conn_finish(c, echoed);
  return NULL;
}

static void conn_task(void *arg) { (void)conn_main(arg); }

static int start_conn(echo_server *s, np_fd *fd) {
  echo_conn *c = calloc(1, sizeof(*c));
  if (c == NULL) return -ENOMEM;
  c->srv = s;
  c->fd = fd;
  pthread_mutex_lock(&s->lock);
  c->next = s->conns;
  if (s->conns != NULL) s->conns->prev = c;
  s->conns = c;
  s->active++;
  pthread_mutex_unlock(&s->lock);

  if (!s->threads) {
    int err = np_go(s->poller, conn_task, c);
    if (err != 0) conn_finish(c, 0); /* frees fd and c */
    return err;
  }
  pthread_attr_t attr;
  pthread_t thread;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int err = pthread_create(&thread, &attr, conn_main, c);
  pthread_attr_destroy(&attr);
  if (err != 0) {
    conn_finish(c, 0); /* frees fd and c */
    return -err;
  }
  return 0;
}

/* The accept loop. Returns 0 once echo_server_stop has closed the listener,
 * or the -errno that ended it. Call it from one thread. */
static int echo_server_serve(echo_server *s) {
  int64_t backoff_ms = 0;
  for (;;) {
    np_fd *conn;
    int err = np_accept(s->listener, &conn, NULL, NULL);
    if (err == NP_ECLOSING) return 0;
    if (err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM) {
      /* Out of descriptors or memory: like Go's http.Server, back off and retry. */
      backoff_ms = backoff_ms == 0 ? 5 : backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2;
      fprintf(stderr, "echo: accept: %s; retrying in %lld ms\n", np_strerror(err), (long long)backoff_ms);
      np_sleep(backoff_ms * 1000000); /* a task sleeps the task, a thread the thread */
      continue;
    }
    if (err != 0) return err;
    backoff_ms = 0;
    atomic_fetch_add(&s->accepted, 1);
    err = start_conn(s, conn);
    if (err != 0) fprintf(stderr, "echo: cannot start a connection handler: %s\n", np_strerror(err));
  }
}

/* Makes echo_server_serve return: closes the listener (a blocked np_accept
 * wakes with NP_ECLOSING). Any thread, any time, more than once; not from a
 * signal handler. */
static void echo_server_stop(echo_server *s) { (void)np_close(s->listener); }

/* After echo_server_serve has returned (or was never called): wakes every
 * connection at once and waits for their handlers, destroys the poller,
 * frees s. An expired deadline wakes a blocked np_read / np_write without
 * waiting for it to leave (np_close would wait for each in turn); every
 * handler then closes its own connection, all of them concurrently. */
static void echo_server_destroy(echo_server *s) {
  echo_server_stop(s);
  atomic_store(&s->stopping, 1);
  pthread_mutex_lock(&s->lock);
  /* A handler waits for this lock to unlink its c: c stays valid here. */
  for (echo_conn *c = s->conns; c != NULL; c = c->next) (void)np_set_deadline(c->fd, 1);
  while (s->active > 0) pthread_cond_wait(&s->done, &s->lock);
  pthread_mutex_unlock(&s->lock);
  np_free(s->listener);
  np_poller_destroy(s->poller);
  pthread_cond_destroy(&s->done);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

/* ---- the program ---------------------------------------------------------- */

typedef struct echo_args {
  char host[INET_ADDRSTRLEN];
  int port;
  int64_t idle_ms;
  bool threads;
  int procs;
} echo_args;

static int parse_int(const char *s, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < 0 || v > max) return -EINVAL;
  *out = v;
  return 0;
}

/* [--threads] [--procs N] [[ADDR:]PORT] [IDLE_MS]; returns 0 or -EINVAL. */
static int echo_parse_args(int argc, char **argv, echo_args *a) {
  memset(a, 0, sizeof(*a));
  strcpy(a->host, "127.0.0.1");
  long v;
  while (argc > 1 && strncmp(argv[1], "--", 2) == 0) {
    if (strcmp(argv[1], "--threads") == 0) {
      a->threads = true;
    } else if (strcmp(argv[1], "--procs") == 0 && argc > 2 && parse_int(argv[2], 256, &v) == 0) {
      a->procs = (int)v;
      argc--, argv++;
    } else {
      return -EINVAL;
    }
    argc--, argv++;
  }
  if (argc > 3) return -EINVAL;
  if (argc >= 2) {
    const char *arg = argv[1], *colon = strrchr(arg, ':');
    if (colon != NULL) {
      size_t hlen = (size_t)(colon - arg);
      struct in_addr tmp;
      if (hlen == 0 || hlen >= sizeof(a->host)) return -EINVAL;
      memcpy(a->host, arg, hlen);
      a->host[hlen] = '\0';
      if (inet_pton(AF_INET, a->host, &tmp) != 1) return -EINVAL;
      arg = colon + 1;
    }
    if (parse_int(arg, 65535, &v) != 0) return -EINVAL;
    a->port = (int)v;
  }
  if (argc >= 3) {
    if (parse_int(argv[2], 86400000L, &v) != 0) return -EINVAL;
    a->idle_ms = v;
  }
  return 0;
}

typedef struct signal_watch {
  echo_server *srv;
  np_fd *sigfd;
} signal_watch;

/* Blocks in np_read on the signalfd like any other netpoll client; stops the
 * server on the first SIGINT/SIGTERM, or returns when the signalfd is closed. */
static void *watch_signals(void *arg) {
  signal_watch *w = arg;
  struct signalfd_siginfo si;
  ssize_t n = np_read(w->sigfd, &si, sizeof(si));
  if (n == (ssize_t)sizeof(si)) {
    fprintf(stderr, "echo: %s, shutting down\n", strsignal((int)si.ssi_signo));
    echo_server_stop(w->srv);
  }
  return NULL;
}

static int echo_main(int argc, char **argv) {
  echo_args a;
  if (echo_parse_args(argc, argv, &a) != 0) {
    fprintf(stderr, "usage: %s [--threads] [--procs N] [[ADDR:]PORT] [IDLE_MS]\n", argv[0]);
    return 2;
  }
  /* The library's socket writes raise no SIGPIPE (MSG_NOSIGNAL); this is for
   * stdout, whose reader (a pipe into another program) may go away. */
  signal(SIGPIPE, SIG_IGN);
  /* Blocked before any thread exists, so every thread (the poller's too)
   * inherits the mask and the signals stay pending for the signalfd. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  echo_server *s;
  np_options opts = {.procs = a.procs};
  int err = echo_server_start(&s, a.host, a.port, a.idle_ms * 1000000, &opts, a.threads);
  if (err != 0) {
    fprintf(stderr, "echo: cannot listen on %s:%d: %s\n", a.host, a.port, np_strerror(err));
    return 1;
  }
  printf("listening on %s:%d\n", a.host, echo_server_port(s));
  fflush(stdout);

  signal_watch w = {s, NULL};
  pthread_t watcher;
  int sfd = signalfd(-1, &set, SFD_CLOEXEC);
  if (sfd < 0) {
    err = -errno;
  } else if ((err = np_open(s->poller, sfd, &w.sigfd)) != 0) {
    close(sfd);
  } else {
    err = -pthread_create(&watcher, NULL, watch_signals, &w);
  }
  if (err != 0) {
    fprintf(stderr, "echo: cannot watch signals: %s\n", np_strerror(err));
    np_free(w.sigfd); /* NULL is fine */
    echo_server_destroy(s);
    return 1;
  }

  err = echo_server_serve(s);
  if (err != 0) fprintf(stderr, "echo: accept: %s\n", np_strerror(err));
  (void)np_close(w.sigfd); /* wakes the watcher if no signal came */
  pthread_join(watcher, NULL);
  np_free(w.sigfd);
  echo_server_destroy(s);
  return err == 0 ? 0 : 1;
}

#ifndef NP_ECHO_NO_MAIN
int main(int argc, char **argv) { return echo_main(argc, argv); }
#endif
