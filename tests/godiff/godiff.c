/*
 * godiff.c - the netpoll half of the differential test: the scenarios of
 * godiff.go, one for one and in the same order, on the public API (pipes,
 * AF_UNIX socket pairs, TCP on 127.0.0.1). Prints `<name> <outcome...>` per
 * scenario; compare.sh requires the output to equal Go's byte for byte.
 *
 * Outcome words: ok, timeout (NP_ETIMEOUT), closing (NP_ECLOSING), eof (read
 * returned 0), epipe, reset, refused, errno:<text> for anything else; reads
 * print "data N", writes "n=N err=WORD" ("n>0" where the count depends on
 * socket buffer sizes).
 *
 * A "blocked" thread is waited for (np_poller_stats().waiters_parked, the
 * counterpart of Go's [IO wait] goroutines), never slept for.
 *
 * Usage: godiff_c [scenario-name...]   (no argument: all scenarios in order)
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"

#define MS (INT64_C(1000000))
#define SHORT (50 * MS)
/* A write that must get some bytes out before its deadline: far enough that
 * a descheduled thread cannot miss the first write(2). */
#define FILL_DEADLINE (250 * MS)
#define FAR (10000 * MS)
#define PIPE_SIZE 4096
#define BIG_WRITE 10000
#define FILL_WRITE (4 << 20)
#define OUT_MAX 512

static np_poller *P;

static void fatal(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "godiff(c): ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

/* ---- outcome text ------------------------------------------------------ */

typedef struct out {
  char s[OUT_MAX];
} out;

static void add(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(out *o, const char *fmt, ...) {
  size_t len = strlen(o->s);
  if (len > 0 && len < OUT_MAX - 1) o->s[len++] = ' ';
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(o->s + len, OUT_MAX - len, fmt, ap);
  va_end(ap);
}

static const char *word(long err) {
  static __thread char buf[96];
  switch (err) {
    case 0: return "ok";
    case NP_ETIMEOUT: return "timeout";
    case NP_ECLOSING: return "closing";
    case -EPIPE: return "epipe";
    case -ECONNRESET: return "reset";
    case -ECONNREFUSED: return "refused";
  }
  snprintf(buf, sizeof(buf), "errno:%s", np_strerror((int)err));
  for (char *c = buf; *c; c++)
    if (*c == ' ') *c = '_';
  return buf;
}

/* One read with an n-byte buffer, described as godiff.go's rd does. */
static void rd(out *o, np_fd *f, size_t n) {
  char buf[64];
  if (n > sizeof(buf)) fatal("rd: %zu too big", n);
  ssize_t m = np_read(f, buf, n);
  if (m > 0)
    add(o, "data %zd", m);
  else if (m == 0 && n == 0)
    add(o, "n=0 ok");
  else if (m == 0)
    add(o, "eof");
  else
    add(o, "%s", word(m));
}

static void wr(out *o, np_fd *f, size_t n, bool exact) {
  char *buf = calloc(1, n + 1);
  if (buf == NULL) fatal("calloc");
  size_t m = 12345;
  int err = np_write(f, buf, n, &m);
  free(buf);
  if (!exact && m > 0)
    add(o, "n>0 err=%s", word(err));
  else
    add(o, "n=%zu err=%s", m, word(err));
}

static void write_str(np_fd *f, const char *s) {
  size_t m;
  int err = np_write(f, s, strlen(s), &m);
  if (err != 0 || m != strlen(s)) fatal("write_str: %s", np_strerror(err));
}

static const char *cl(np_fd *f) { return word(np_close(f)); }

/* ---- parked waiters ---------------------------------------------------- */

static int parked(void) {
  np_stats s;
  np_poller_stats(P, &s);
  return (int)s.waiters_parked;
}

static void sleep_ms(int64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static void wait_parked(int k) {
  int64_t end = np_now() + 10000 * MS;
  while (parked() != k) {
    if (np_now() > end) fatal("timed out waiting for %d parked threads (have %d)", k, parked());
    sleep_ms(1);
  }
}

/* ---- async operations (Go: a goroutine) -------------------------------- */

enum { T_READ, T_WRITE, T_ACCEPT };

typedef struct task {
  pthread_t thread;
  int kind;
  np_fd *f;
  size_t n;
  bool exact;
  out res;
  _Atomic bool done;
} task;

static void *task_main(void *arg) {
  task *t = arg;
  switch (t->kind) {
    case T_READ: rd(&t->res, t->f, t->n); break;
    case T_WRITE: wr(&t->res, t->f, t->n, t->exact); break;
    case T_ACCEPT: {
      np_fd *c = NULL;
      add(&t->res, "%s", word(np_accept(t->f, &c, NULL, NULL)));
      np_free(c);
      break;
    }
  }
  atomic_store(&t->done, true);
  return NULL;
}

static task *async(int kind, np_fd *f, size_t n, bool exact) {
  task *t = calloc(1, sizeof(*t));
  if (t == NULL) fatal("calloc");
  t->kind = kind;
  t->f = f;
  t->n = n;
  t->exact = exact;
  if (pthread_create(&t->thread, NULL, task_main, t) != 0) fatal("pthread_create");
  return t;
}

/* Joins the task and appends its result (prefixed by label unless NULL). */
static void result(out *o, task *t, const char *label) {
  pthread_join(t->thread, NULL);
  if (label != NULL)
    add(o, "%s=%s", label, t->res.s);
  else
    add(o, "%s", t->res.s);
  free(t);
}

/* ---- descriptors --------------------------------------------------------- */

static np_fd *reg(int fd) {
  np_fd *f;
  int err = np_open(P, fd, &f);
  if (err != 0) fatal("np_open: %s", np_strerror(err));
  return f;
}

static void mkpipe(np_fd **r, np_fd **w, bool small) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) fatal("pipe2");
  if (small) {
    if (fcntl(fds[1], F_SETPIPE_SZ, PIPE_SIZE) < 0) fatal("F_SETPIPE_SZ");
    if (fcntl(fds[1], F_GETPIPE_SZ) != PIPE_SIZE) fatal("F_GETPIPE_SZ");
  }
  *r = reg(fds[0]);
  *w = reg(fds[1]);
}

static void sockpair(np_fd **a, np_fd **b) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) fatal("socketpair");
  *a = reg(fds[0]);
  *b = reg(fds[1]);
}

static np_fd *tcp_listen(struct sockaddr_in *addr) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) fatal("socket");
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  memset(addr, 0, sizeof(*addr));
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(*addr);
  if (bind(s, (struct sockaddr *)addr, len) != 0 || listen(s, 128) != 0 ||
      getsockname(s, (struct sockaddr *)addr, &len) != 0)
    fatal("bind/listen");
  return reg(s);
}

/* Connects a new socket to addr; *c is the handle (also on failure). */
static int tcp_dial(const struct sockaddr_in *addr, np_fd **c) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) fatal("socket");
  *c = reg(s);
  return np_connect(*c, (const struct sockaddr *)addr, sizeof(*addr));
}

static int64_t past(void) { return np_deadline_after(-1000 * MS); }
static int64_t after(int64_t ns) { return np_deadline_after(ns); }

/* ---- scenarios ----------------------------------------------------------- */

/* Each scenario gets two handles from its setup (r/w or a/b) and frees them
 * itself; free on an already closed handle is fine. */

static void pipe_read_data(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  write_str(w, "hello");
  rd(o, r, 16);
  np_free(r), np_free(w);
}

static void pipe_read_blocks_until_data(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  task *t = async(T_READ, r, 16, true);
  wait_parked(1);
  write_str(w, "hey");
  result(o, t, NULL);
  np_free(r), np_free(w);
}

static void pipe_past_deadline_data_ready(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  write_str(w, "x");
  np_set_read_deadline(r, past());
  rd(o, r, 16);
  np_free(r), np_free(w);
}

static void pipe_deadline_expires(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  int64_t deadline = after(SHORT);
  np_set_read_deadline(r, deadline);
  rd(o, r, 16);
  add(o, "%s", np_now() < deadline ? "early" : "at>=deadline");
  np_free(r), np_free(w);
}

static void pipe_expired_deadline_sticky(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  np_set_read_deadline(r, after(SHORT));
  rd(o, r, 16);
  write_str(w, "ab");
  rd(o, r, 16);
  np_free(r), np_free(w);
}

static void pipe_deadline_cleared_after_expiry(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  np_set_read_deadline(r, past());
  rd(o, r, 16);
  np_set_read_deadline(r, 0);
  write_str(w, "abcd");
  rd(o, r, 16);
  np_free(r), np_free(w);
}

static void pipe_deadline_moved_later_after_expiry(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  write_str(w, "abc");
  np_set_read_deadline(r, past());
  rd(o, r, 16);
  np_set_read_deadline(r, after(FAR));
  rd(o, r, 16);
  np_free(r), np_free(w);
}

static void pipe_deadline_extended_while_blocked(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  task *t = async(T_READ, r, 16, true);
  wait_parked(1);
  /* Armed while blocked, then moved at once (not racing the start of the
   * reader): the first deadline must never fire. */
  np_set_read_deadline(r, after(500 * MS));
  np_set_read_deadline(r, after(FAR));
  sleep_ms(1000); /* well past the first deadline */
  add(o, "%s", parked() == 1 ? "blocked" : "woken");
  write_str(w, "data!");
  result(o, t, NULL);
  np_free(r), np_free(w);
}

static void pipe_deadline_cleared_while_blocked(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  task *t = async(T_READ, r, 16, true);
  wait_parked(1);
  np_set_read_deadline(r, after(500 * MS));
  np_set_read_deadline(r, 0);
  sleep_ms(1000); /* well past the cleared deadline */
  add(o, "%s", parked() == 1 ? "blocked" : "woken");
  write_str(w, "xyz");
  result(o, t, NULL);
  np_free(r), np_free(w);
}

static void pipe_deadline_shortened_to_past_while_blocked(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  np_set_read_deadline(r, after(FAR));
  task *t = async(T_READ, r, 16, true);
  wait_parked(1);
  np_set_read_deadline(r, past());
  result(o, t, NULL);
  np_free(r), np_free(w);
}

static void pipe_deadline_set_while_blocked(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  task *t = async(T_READ, r, 16, true);
  wait_parked(1);
  np_set_read_deadline(r, after(SHORT));
  result(o, t, NULL);
  np_free(r), np_free(w);
}

static void *change_deadlines(void *arg) {
  np_fd *r = arg;
  for (int i = 0; i < 200; i++) np_set_read_deadline(r, after(FAR + i * MS));
  np_set_read_deadline(r, after(SHORT));
  return NULL;
}

static void pipe_deadline_changed_concurrently(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  np_set_read_deadline(r, after(FAR));
  task *t = async(T_READ, r, 16, true);
  wait_parked(1);
  pthread_t changer;
  if (pthread_create(&changer, NULL, change_deadlines, r) != 0) fatal("pthread_create");
  pthread_join(changer, NULL);
  result(o, t, NULL);
  np_free(r), np_free(w);
}

static void pipe_many_short_deadlines(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  const int64_t ds[] = {1, 1000, 100000, 1 * MS, 3 * MS, 10 * MS};
  for (size_t i = 0; i < sizeof(ds) / sizeof(ds[0]); i++) {
    np_set_read_deadline(r, after(ds[i]));
    rd(o, r, 16);
  }
  np_free(r), np_free(w);
}

static void pipe_data_before_deadline(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  np_set_read_deadline(r, after(FAR));
  task *t = async(T_READ, r, 16, true);
  wait_parked(1);
  write_str(w, "abc");
  result(o, t, NULL);
  np_free(r), np_free(w);
}

static void pipe_max_deadline(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  np_set_read_deadline(r, after(INT64_MAX));
  task *t = async(T_READ, r, 16, true);
  wait_parked(1);
  write_str(w, "abcdef");
  result(o, t, NULL);
  np_free(r), np_free(w);
}

static void pipe_two_readers_deadline(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  task *t1 = async(T_READ, r, 16, true);
  task *t2 = async(T_READ, r, 16, true);
  wait_parked(1); /* the other one queues on the read lock */
  np_set_read_deadline(r, after(SHORT));
  result(o, t1, NULL);
  result(o, t2, NULL);
  np_free(r), np_free(w);
}

static void pipe_two_readers_data_then_close(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  task *t[2] = {async(T_READ, r, 16, true), async(T_READ, r, 16, true)};
  wait_parked(1);
  write_str(w, "a");
  int64_t end = np_now() + 10000 * MS;
  while (!atomic_load(&t[0]->done) && !atomic_load(&t[1]->done)) {
    if (np_now() > end) fatal("pipe_two_readers_data_then_close: no reader got the data");
    sleep_ms(1);
  }
  int first = atomic_load(&t[0]->done) ? 0 : 1;
  const char *c = cl(r);
  result(o, t[first], NULL);
  result(o, t[1 - first], NULL);
  add(o, "close=%s", c);
  np_free(r), np_free(w);
}

static void pipe_closed_beats_deadline(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  write_str(w, "abc");
  np_set_read_deadline(r, past());
  np_set_write_deadline(w, past());
  np_close(r);
  np_close(w);
  rd(o, r, 16);
  wr(o, w, 1, true);
  np_free(r), np_free(w);
}

static void pipe_zero_read(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  rd(o, r, 0);
  np_set_read_deadline(r, past());
  rd(o, r, 0);
  np_free(r), np_free(w);
}

static void pipe_write_deadline_partial(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, true);
  np_set_write_deadline(w, after(FILL_DEADLINE));
  wr(o, w, BIG_WRITE, true);
  np_free(r), np_free(w);
}

static void pipe_write_deadline_partial_after_data(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, true);
  wr(o, w, 100, true);
  np_set_write_deadline(w, after(FILL_DEADLINE));
  wr(o, w, BIG_WRITE, true);
  np_free(r), np_free(w);
}

static void pipe_write_past_deadline(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  np_set_write_deadline(w, past());
  wr(o, w, 1, true);
  np_free(r), np_free(w);
}

static void pipe_write_deadline_past_while_blocked(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, true);
  task *t = async(T_WRITE, w, BIG_WRITE, true);
  wait_parked(1);
  np_set_write_deadline(w, past());
  result(o, t, NULL);
  np_free(r), np_free(w);
}

static void pipe_writer_unblocked_by_reader(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, true);
  task *t = async(T_WRITE, w, BIG_WRITE, true);
  size_t total = 0;
  char buf[1000];
  while (total < BIG_WRITE) {
    ssize_t n = np_read(r, buf, sizeof(buf));
    if (n <= 0) {
      add(o, "read %s", n == 0 ? "eof" : word(n));
      break;
    }
    total += (size_t)n;
  }
  result(o, t, NULL);
  add(o, "read=%zu", total);
  np_free(r), np_free(w);
}

static void pipe_zero_write(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  wr(o, w, 0, true);
  np_set_write_deadline(w, past());
  wr(o, w, 0, true);
  np_free(r), np_free(w);
}

static void pipe_close_blocked_reader(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  task *t = async(T_READ, r, 16, true);
  wait_parked(1);
  const char *c = cl(r);
  result(o, t, "read");
  add(o, "close=%s", c);
  np_free(r), np_free(w);
}

static void pipe_close_blocked_writer(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, true);
  task *t = async(T_WRITE, w, BIG_WRITE, true);
  wait_parked(1);
  const char *c = cl(w);
  result(o, t, NULL);
  add(o, "close=%s", c);
  np_free(r), np_free(w);
}

static void pipe_ops_after_close(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  np_close(r);
  np_close(w);
  out x = {{0}};
  rd(&x, r, 16);
  add(o, "read=%s", x.s);
  x.s[0] = 0;
  rd(&x, r, 0);
  add(o, "zeroread=%s", x.s);
  x.s[0] = 0;
  wr(&x, w, 3, true);
  add(o, "write=%s", x.s);
  add(o, "deadline=%s", word(np_set_read_deadline(r, after(FAR))));
  np_free(r), np_free(w);
}

static void pipe_double_close(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  add(o, "%s", cl(r));
  add(o, "%s", cl(r));
  np_free(r), np_free(w);
}

static void pipe_epipe(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  np_close(r);
  wr(o, w, 3, true);
  np_free(r), np_free(w);
}

static void pipe_epipe_wakes_blocked_writer(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, true);
  task *t = async(T_WRITE, w, BIG_WRITE, true);
  wait_parked(1);
  np_close(r);
  result(o, t, NULL);
  np_free(r), np_free(w);
}

static void pipe_eof_after_writer_close(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  write_str(w, "abc");
  np_close(w);
  rd(o, r, 16);
  rd(o, r, 16);
  np_free(r), np_free(w);
}

static void pipe_eof_wakes_blocked_reader(out *o) {
  np_fd *r, *w;
  mkpipe(&r, &w, false);
  task *t = async(T_READ, r, 16, true);
  wait_parked(1);
  np_close(w);
  result(o, t, NULL);
  np_free(r), np_free(w);
}

static void sock_read_deadline_leaves_write(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  np_set_read_deadline(a, past());
  wr(o, a, 3, true);
  rd(o, b, 16);
  rd(o, a, 16);
  np_free(a), np_free(b);
}

static void sock_write_deadline_leaves_read(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  np_set_write_deadline(a, past());
  write_str(b, "xy");
  rd(o, a, 16);
  wr(o, a, 1, true);
  np_free(a), np_free(b);
}

static void sock_set_deadline_both(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  np_set_deadline(a, after(SHORT));
  out x = {{0}};
  rd(&x, a, 16);
  add(o, "read=%s", x.s);
  x.s[0] = 0;
  wr(&x, a, FILL_WRITE, false);
  add(o, "write=%s", x.s);
  np_free(a), np_free(b);
}

static void sock_write_deadline_full(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  np_set_write_deadline(a, after(FILL_DEADLINE));
  wr(o, a, FILL_WRITE, false);
  np_set_write_deadline(a, after(SHORT));
  wr(o, a, 1, true);
  np_free(a), np_free(b);
}

static void sock_read_timeout_leaves_writer_blocked(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  task *t = async(T_WRITE, a, FILL_WRITE, false);
  wait_parked(1);
  np_set_read_deadline(a, after(SHORT));
  out x = {{0}};
  rd(&x, a, 16);
  add(o, "read=%s", x.s);
  add(o, "writer=%s", parked() == 1 ? "blocked" : "woken");
  np_set_write_deadline(a, past());
  result(o, t, "write");
  np_free(a), np_free(b);
}

static void sock_write_timeout_leaves_reader_blocked(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  task *t = async(T_READ, a, 16, true);
  wait_parked(1);
  np_set_write_deadline(a, after(FILL_DEADLINE));
  out x = {{0}};
  wr(&x, a, FILL_WRITE, false);
  add(o, "write=%s", x.s);
  add(o, "reader=%s", parked() == 1 ? "blocked" : "woken");
  write_str(b, "late");
  result(o, t, "read");
  np_free(a), np_free(b);
}

static void sock_deadline_wakes_reader_and_writer(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  task *wt = async(T_WRITE, a, FILL_WRITE, false);
  task *rt = async(T_READ, a, 16, true);
  wait_parked(2);
  np_set_deadline(a, after(SHORT));
  result(o, rt, "read");
  result(o, wt, "write");
  np_free(a), np_free(b);
}

/* Go: net.Buffers.WriteTo, which is writev on a socket. */
static void wv(out *o, np_fd *f, const char *x, const char *y, const char *z) {
  struct iovec iov[3];
  const char *parts[3] = {x, y, z};
  for (int i = 0; i < 3; i++) {
    iov[i].iov_base = (void *)parts[i];
    iov[i].iov_len = parts[i] == NULL ? 0 : strlen(parts[i]);
  }
  size_t m = 12345;
  int err = np_writev(f, iov, 3, &m);
  add(o, "n=%zu err=%s", m, word(err));
}

static void sock_writev(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  wv(o, a, "abc", NULL, "defgh");
  rd(o, b, 16);
  wv(o, a, NULL, NULL, NULL);
  np_set_write_deadline(a, past());
  wv(o, a, "x", "y", NULL);
  np_set_write_deadline(a, 0);
  np_set_write_deadline(a, after(FILL_DEADLINE));
  wr(o, a, FILL_WRITE, false);
  np_set_write_deadline(a, after(SHORT));
  wv(o, a, "x", "y", NULL);
  np_free(a), np_free(b);
}

static void sock_shutdown_wr(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  if (shutdown(np_sysfd(a), SHUT_WR) != 0) fatal("shutdown");
  rd(o, b, 16);
  wr(o, b, 1, true);
  rd(o, a, 16);
  wr(o, a, 1, true);
  np_free(a), np_free(b);
}

static void sock_shutdown_wr_wakes_blocked_reader(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  task *t = async(T_READ, b, 16, true);
  wait_parked(1);
  if (shutdown(np_sysfd(a), SHUT_WR) != 0) fatal("shutdown");
  result(o, t, NULL);
  np_free(a), np_free(b);
}

static void sock_shutdown_rd(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  if (shutdown(np_sysfd(a), SHUT_RD) != 0) fatal("shutdown");
  rd(o, a, 16);
  wr(o, b, 1, true);
  wr(o, a, 2, true);
  rd(o, b, 16);
  np_free(a), np_free(b);
}

static void sock_shutdown_rd_wakes_blocked_reader(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  task *t = async(T_READ, a, 16, true);
  wait_parked(1);
  if (shutdown(np_sysfd(a), SHUT_RD) != 0) fatal("shutdown");
  result(o, t, NULL);
  np_free(a), np_free(b);
}

static void sock_peer_close_unread_reset(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  write_str(a, "hello");
  np_close(b);
  rd(o, a, 16);
  rd(o, a, 16);
  np_free(a), np_free(b);
}

static void sock_reset_wakes_blocked_reader(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  write_str(a, "hello");
  task *t = async(T_READ, a, 16, true);
  wait_parked(1);
  np_close(b);
  result(o, t, NULL);
  np_free(a), np_free(b);
}

static void sock_peer_close_eof(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  write_str(b, "bye");
  np_close(b);
  rd(o, a, 16);
  rd(o, a, 16);
  np_free(a), np_free(b);
}

static void sock_write_epipe(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  np_close(b);
  wr(o, a, 3, true);
  np_free(a), np_free(b);
}

static void sock_peer_close_wakes_blocked_writer(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  task *t = async(T_WRITE, a, FILL_WRITE, false);
  wait_parked(1);
  np_close(b);
  result(o, t, NULL);
  np_free(a), np_free(b);
}

static void sock_close_blocked_reader_and_writer(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  task *wt = async(T_WRITE, a, FILL_WRITE, false);
  task *rt = async(T_READ, a, 16, true);
  wait_parked(2);
  const char *c = cl(a);
  result(o, rt, "read");
  result(o, wt, "write");
  add(o, "close=%s", c);
  np_free(a), np_free(b);
}

static void sock_zero_read_write(out *o) {
  np_fd *a, *b;
  sockpair(&a, &b);
  rd(o, a, 0);
  wr(o, a, 0, true);
  np_set_deadline(a, past());
  rd(o, a, 0);
  wr(o, a, 0, true);
  np_close(a);
  rd(o, a, 0);
  wr(o, a, 0, true);
  np_free(a), np_free(b);
}

static void tcp_accept_deadline(out *o) {
  struct sockaddr_in addr;
  np_fd *ln = tcp_listen(&addr);
  np_set_deadline(ln, after(SHORT));
  np_fd *c = NULL;
  add(o, "%s", word(np_accept(ln, &c, NULL, NULL)));
  np_free(c);
  np_free(ln);
}

static void tcp_accept_close_while_blocked(out *o) {
  struct sockaddr_in addr;
  np_fd *ln = tcp_listen(&addr);
  task *t = async(T_ACCEPT, ln, 0, true);
  wait_parked(1);
  const char *c = cl(ln);
  result(o, t, "accept");
  add(o, "close=%s", c);
  np_free(ln);
}

static void tcp_connect_refused(out *o) {
  struct sockaddr_in addr;
  np_fd *ln = tcp_listen(&addr);
  np_free(ln);
  np_fd *c;
  add(o, "%s", word(tcp_dial(&addr, &c)));
  np_free(c);
}

static void tcp_accept_pending_past_deadline(out *o) {
  struct sockaddr_in addr;
  np_fd *ln = tcp_listen(&addr);
  np_fd *c;
  int err = tcp_dial(&addr, &c);
  if (err != 0) {
    add(o, "dial=%s", word(err));
  } else {
    np_set_deadline(ln, past());
    np_fd *s = NULL;
    add(o, "%s", word(np_accept(ln, &s, NULL, NULL)));
    np_set_deadline(ln, 0);
    add(o, "%s", word(np_accept(ln, &s, NULL, NULL)));
    np_free(s);
  }
  np_free(c);
  np_free(ln);
}

static void udp_icmp_refused_wakes_reader(out *o) {
  struct sockaddr_in addr;
  np_free(tcp_listen(&addr)); /* a free port: UDP on the TCP listener's number is closed */
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) fatal("socket");
  np_fd *c = reg(s);
  int err = np_connect(c, (const struct sockaddr *)&addr, sizeof(addr));
  if (err != 0) {
    add(o, "dial=%s", word(err));
  } else {
    task *t = async(T_READ, c, 16, true);
    wait_parked(1);
    wr(o, c, 1, true);
    result(o, t, NULL);
  }
  np_free(c);
}

typedef struct server {
  np_fd *ln;
  out res;
} server;

static void *serve(void *arg) {
  server *s = arg;
  np_fd *c = NULL;
  int err = np_accept(s->ln, &c, NULL, NULL);
  if (err != 0) {
    add(&s->res, "accept=%s", word(err));
    return NULL;
  }
  add(&s->res, "accept=ok");
  rd(&s->res, c, 16);
  np_set_read_deadline(c, after(SHORT));
  rd(&s->res, c, 16);
  wr(&s->res, c, 4, true);
  np_free(c);
  return NULL;
}

static void tcp_accept_read_write(out *o) {
  server s = {0};
  struct sockaddr_in addr;
  s.ln = tcp_listen(&addr);
  pthread_t t;
  if (pthread_create(&t, NULL, serve, &s) != 0) fatal("pthread_create");
  np_fd *c;
  int err = tcp_dial(&addr, &c);
  if (err != 0) {
    add(o, "dial=%s", word(err));
    np_close(s.ln); /* Go: the deferred ln.Close() wakes the server */
  } else {
    wr(o, c, 4, true);
  }
  pthread_join(t, NULL);
  add(o, "%s", s.res.s);
  if (err == 0) {
    rd(o, c, 16);
    rd(o, c, 16);
  }
  np_free(c);
  np_free(s.ln);
}

typedef struct scenario {
  const char *name;
  void (*run)(out *o);
} scenario;

#define S(fn) \
  { #fn, fn }
static const scenario scenarios[] = {
    S(pipe_read_data),
    S(pipe_read_blocks_until_data),
    S(pipe_past_deadline_data_ready),
    S(pipe_deadline_expires),
    S(pipe_expired_deadline_sticky),
    S(pipe_deadline_cleared_after_expiry),
    S(pipe_deadline_moved_later_after_expiry),
    S(pipe_deadline_extended_while_blocked),
    S(pipe_deadline_cleared_while_blocked),
    S(pipe_deadline_shortened_to_past_while_blocked),
    S(pipe_deadline_set_while_blocked),
    S(pipe_deadline_changed_concurrently),
    S(pipe_many_short_deadlines),
    S(pipe_data_before_deadline),
    S(pipe_max_deadline),
    S(pipe_two_readers_deadline),
    S(pipe_two_readers_data_then_close),
    S(pipe_closed_beats_deadline),
    S(pipe_zero_read),
    S(pipe_write_deadline_partial),
    S(pipe_write_deadline_partial_after_data),
    S(pipe_write_past_deadline),
    S(pipe_write_deadline_past_while_blocked),
    S(pipe_writer_unblocked_by_reader),
    S(pipe_zero_write),
    S(pipe_close_blocked_reader),
    S(pipe_close_blocked_writer),
    S(pipe_ops_after_close),
    S(pipe_double_close),
    S(pipe_epipe),
    S(pipe_epipe_wakes_blocked_writer),
    S(pipe_eof_after_writer_close),
    S(pipe_eof_wakes_blocked_reader),
    S(sock_read_deadline_leaves_write),
    S(sock_write_deadline_leaves_read),
    S(sock_set_deadline_both),
    S(sock_write_deadline_full),
    S(sock_read_timeout_leaves_writer_blocked),
    S(sock_write_timeout_leaves_reader_blocked),
    S(sock_deadline_wakes_reader_and_writer),
    S(sock_writev),
    S(sock_shutdown_wr),
    S(sock_shutdown_wr_wakes_blocked_reader),
    S(sock_shutdown_rd),
    S(sock_shutdown_rd_wakes_blocked_reader),
    S(sock_peer_close_unread_reset),
    S(sock_reset_wakes_blocked_reader),
    S(sock_peer_close_eof),
    S(sock_write_epipe),
    S(sock_peer_close_wakes_blocked_writer),
    S(sock_close_blocked_reader_and_writer),
    S(sock_zero_read_write),
    S(tcp_accept_deadline),
    S(tcp_accept_close_while_blocked),
    S(tcp_connect_refused),
    S(tcp_accept_pending_past_deadline),
    S(udp_icmp_refused_wakes_reader),
    S(tcp_accept_read_write),
};

/* Watchdog: a scenario that hangs (a waiter never woken) ends the run with a
 * line that shows up in the diff, instead of the ctest timeout. */
#define HANG_MS 20000
static _Atomic(const char *) g_current;
static _Atomic int64_t g_started;

static void *watchdog(void *arg) {
  (void)arg;
  for (;;) {
    sleep_ms(100);
    const char *name = atomic_load(&g_current);
    if (name != NULL && np_now() - atomic_load(&g_started) > HANG_MS * MS) {
      printf("%s HUNG (no result after %d s)\n", name, HANG_MS / 1000);
      fflush(stdout);
      _exit(3);
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN); /* as Go does for descriptors other than 1 and 2 */
  int err = np_poller_create(&P, NULL);
  if (err != 0) fatal("np_poller_create: %s", np_strerror(err));
  pthread_t dog;
  if (pthread_create(&dog, NULL, watchdog, NULL) != 0) fatal("pthread_create");
  pthread_detach(dog);
  for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
    bool run = argc < 2;
    for (int a = 1; a < argc; a++) run = run || strcmp(argv[a], scenarios[i].name) == 0;
    if (!run) continue;
    out o = {{0}};
    atomic_store(&g_started, np_now());
    atomic_store(&g_current, scenarios[i].name);
    scenarios[i].run(&o);
    atomic_store(&g_current, NULL);
    printf("%s %s\n", scenarios[i].name, o.s);
    fflush(stdout);
    np_stats s;
    np_poller_stats(P, &s);
    if (s.waiters_parked != 0 || s.fds_open != 0)
      fatal("%s left %llu waiters parked, %llu descriptors open", scenarios[i].name,
            (unsigned long long)s.waiters_parked, (unsigned long long)s.fds_open);
  }
  np_poller_destroy(P);
  return 0;
}
