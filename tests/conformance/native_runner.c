/*
 * native_runner.c - np_scenario_native: runs a conformance scenario against
 * the real epoll backend, on real pipes and AF_UNIX socket pairs, one
 * pthread per task, and prints the outcome in the format of `npsim outcome`
 * (one line per action with a result, grouped by task in scenario order:
 * "TASK INDEX OP RESULT"). compare.sh diffs the two.
 *
 * The interpreter follows sim/world.c (run_action and friends) action by
 * action; the differences are only those of a real kernel: sleeps are real
 * time, stream capacities are Linux's (cap= is ignored), and actions that
 * cannot be reproduced on real epoll (inject, break, poll, peer-reset,
 * faults) are refused before anything runs.
 *
 * Usage: np_scenario_native FILE [--timeout SECONDS]
 * Exit: 0 run complete; 1 an expectation or a data check failed (the
 * outcome is printed anyway); 2 usage, parse error or unsupported action;
 * 3 the run did not finish in time (a task blocked forever).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "scenario.h"

#define RECS_MAX 48
#define GEN_MAX 16
#define IO_MAX 4096 /* read / peer-write cap, as the simulator's buffers */
#define MS_NS INT64_C(1000000)

typedef struct rec {
  int id;
  int stream;
  sc_kind kind;
  np_fd *f;
  int fd;
  pthread_mutex_t peer_mu;                    /* guards peer_fd: peer actions of several tasks */
  int peer_fd;                                /* -1 once the peer end is closed */
  _Atomic uint64_t in_produced, in_consumed;  /* peer -> library */
  _Atomic uint64_t out_written, out_received; /* library -> peer */
  atomic_bool out_eof;
} rec;

typedef struct task_view {
  int gen[SC_STREAMS_MAX];
} task_view;

typedef struct task_ctx {
  int index;
  pthread_t thread;
  char *out; /* outcome lines of this task (open_memstream) */
  size_t out_len;
  FILE *outf;
  uint64_t rng;
} task_ctx;

static const scenario *g_sc;
static np_poller *g_p;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static rec g_recs[RECS_MAX];
static int g_rec_count;                        /* g_mu */
static int g_gen_rec[SC_STREAMS_MAX][GEN_MAX]; /* g_mu: (stream, generation) -> rec */
static int g_gen[SC_STREAMS_MAX];              /* g_mu: newest generation */
static bool g_done[SC_TASKS_MAX];              /* g_mu */
static bool g_verify_in[SC_STREAMS_MAX], g_verify_out[SC_STREAMS_MAX];
static task_ctx g_tasks[SC_TASKS_MAX];
static atomic_int g_failed;
static int64_t g_t0;

/* ---- helpers --------------------------------------------------------------- */

__attribute__((format(printf, 1, 2))) static void failure(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  flockfile(stderr);
  fputs("np_scenario_native: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  funlockfile(stderr);
  va_end(ap);
  atomic_store(&g_failed, 1);
}

static void sleep_until(int64_t when) {
  struct timespec ts = {(time_t)(when / 1000000000), (long)(when % 1000000000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static void sleep_ns(int64_t ns) { sleep_until(np_now() + ns); }

static uint64_t rng_next(task_ctx *t) { /* splitmix64 */
  uint64_t z = (t->rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t rng_below(task_ctx *t, uint64_t n) { return n <= 1 ? 0 : rng_next(t) % n; }

/* The byte pattern of sim/world.c: a function of the direction and offset. */
static uint8_t pattern(int stream, uint64_t offset) {
  return (uint8_t)((offset * 31u) ^ (offset >> 7) ^ ((uint64_t)stream * 97u));
}

static void fill(int stream, uint64_t offset, uint8_t *buf, size_t n) {
  for (size_t i = 0; i < n; i++) buf[i] = pattern(stream, offset + i);
}

static void verify(const rec *r, int stream, uint64_t offset, const uint8_t *buf, size_t n, const char *who) {
  for (size_t i = 0; i < n; i++) {
    if (buf[i] != pattern(stream, offset + i)) {
      failure("data: %s of stream %d got a wrong byte at offset %" PRIu64
              " (lost, duplicated or misreported bytes)",
              who, r->id, offset + i);
      return;
    }
  }
}

/* One outcome line (the format of npsim outcome) and the action's expectation. */
static void expect(task_ctx *t, const sc_action *a, int64_t v, bool read) {
  unsigned got = sc_classify(v, read);
  const sc_task *st = &g_sc->tasks[t->index];
  fprintf(t->outf, "%s %d %s %s\n", st->name, (int)(a - &g_sc->actions[st->first]), sc_op_name(a->op),
          sc_result_name(got));
  if (!(a->expect & got))
    failure("expectation: line %d: %s returned %s (%" PRId64 ": %s)", a->line, sc_op_name(a->op),
            sc_result_name(got), v, v < 0 ? np_strerror((int)v) : "-");
}

static int64_t deadline_value(const sc_action *a) {
  int64_t now = np_now(), v;
  switch (a->when) {
    case SC_DL_NONE: return 0;
    case SC_DL_NOW: v = now; break;
    case SC_DL_PLUS: v = now + a->n; break;
    case SC_DL_MINUS: v = now - a->n; break;
    default: return INT64_MAX;
  }
  return v == 0 ? -1 : v; /* 0 would mean "none" */
}

/* A new stream: a pipe or socket pair, the library end registered. */
static rec *open_stream(int stream, sc_kind kind) {
  int fds[2];
  int rc = kind == SC_SOCK ? socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) : pipe2(fds, O_CLOEXEC);
  if (rc != 0) {
    failure("%s: %s", kind == SC_SOCK ? "socketpair" : "pipe2", strerror(errno));
    return NULL;
  }
  int lib = kind == SC_PIPE_OUT ? fds[1] : fds[0];
  int peer = kind == SC_PIPE_OUT ? fds[0] : fds[1];
  int fl = fcntl(peer, F_GETFL);
  if (fl < 0 || fcntl(peer, F_SETFL, fl | O_NONBLOCK) != 0) {
    failure("fcntl: %s", strerror(errno));
    close(lib);
    close(peer);
    return NULL;
  }
  np_fd *f;
  int err = np_open(g_p, lib, &f);
  if (err != 0) {
    failure("np_open of a fresh descriptor: %s", np_strerror(err));
    close(lib);
    close(peer);
    return NULL;
  }
  pthread_mutex_lock(&g_mu);
  if (g_rec_count >= RECS_MAX) {
    pthread_mutex_unlock(&g_mu);
    failure("too many streams");
    np_free(f);
    close(peer);
    return NULL;
  }
  rec *r = &g_recs[g_rec_count];
  r->id = g_rec_count++;
  pthread_mutex_unlock(&g_mu);
  r->stream = stream;
  r->kind = kind;
  r->f = f;
  r->fd = lib;
  pthread_mutex_init(&r->peer_mu, NULL);
  r->peer_fd = peer;
  return r;
}

static rec *bound(const task_view *view, int stream) {
  pthread_mutex_lock(&g_mu);
  int g = view->gen[stream];
  int i = g >= 1 && g < GEN_MAX ? g_gen_rec[stream][g] : -1;
  pthread_mutex_unlock(&g_mu);
  return i < 0 ? NULL : &g_recs[i];
}

/* Peer-side syscalls: one at a time per stream, never on a closed number. */
static int64_t peer_write(rec *r, const uint8_t *buf, size_t len) {
  pthread_mutex_lock(&r->peer_mu);
  int64_t v = r->peer_fd < 0 ? -EBADF : (int64_t)write(r->peer_fd, buf, len);
  if (v < 0 && r->peer_fd >= 0) v = -errno;
  pthread_mutex_unlock(&r->peer_mu);
  return v;
}

static int64_t peer_read(rec *r, uint8_t *buf, size_t len) {
  pthread_mutex_lock(&r->peer_mu);
  int64_t v = r->peer_fd < 0 ? -EBADF : (int64_t)read(r->peer_fd, buf, len);
  if (v < 0 && r->peer_fd >= 0) v = -errno;
  pthread_mutex_unlock(&r->peer_mu);
  return v;
}

/* ---- long-running actions (no outcome lines; data checked) ------------------- */

static void do_read_all(task_ctx *t, rec *r) {
  uint8_t buf[2048];
  for (;;) {
    size_t want = 1 + rng_below(t, sizeof(buf));
    ssize_t n = np_read(r->f, buf, want);
    if (n > 0) {
      uint64_t off = atomic_fetch_add(&r->in_consumed, (uint64_t)n);
      if (g_verify_in[r->stream]) verify(r, r->id * 2, off, buf, (size_t)n, "reader");
      continue;
    }
    if (n == 0) {
      if (g_verify_in[r->stream] && atomic_load(&r->in_consumed) != atomic_load(&r->in_produced))
        failure("data: EOF on stream %d after %" PRIu64 " of %" PRIu64 " bytes", r->id,
                atomic_load(&r->in_consumed), atomic_load(&r->in_produced));
      return;
    }
    if (n == NP_ETIMEOUT) {
      sleep_ns((int64_t)rng_below(t, 3 * MS_NS));
      continue;
    }
    if (n == NP_ECLOSING || n == NP_ENOTPOLLABLE) return;
    failure("read-all on stream %d: unexpected %s", r->id, np_strerror((int)n));
    return;
  }
}

static void do_write_all(task_ctx *t, rec *r, uint64_t total) {
  uint8_t buf[4096];
  for (uint64_t done = 0; done < total;) {
    uint64_t left = total - done;
    size_t chunk = 1 + rng_below(t, left < sizeof(buf) ? left : sizeof(buf));
    fill(r->id * 2 + 1, atomic_load(&r->out_written), buf, chunk);
    size_t written = SIZE_MAX;
    int err = np_write(r->f, buf, chunk, &written);
    if (written > chunk) {
      failure("np_write reported %zu of %zu bytes written", written, chunk);
      return;
    }
    atomic_fetch_add(&r->out_written, (uint64_t)written);
    done += written;
    if (err == 0) {
      if (written != chunk) failure("np_write succeeded with %zu of %zu bytes", written, chunk);
      continue;
    }
    if (err == NP_ETIMEOUT) {
      sleep_ns((int64_t)rng_below(t, 3 * MS_NS));
      continue;
    }
    if (err == NP_ECLOSING) return;
    failure("write-all on stream %d: unexpected %s", r->id, np_strerror(err));
    return;
  }
}

static void do_produce(task_ctx *t, rec *r, uint64_t total, int64_t gap) {
  uint8_t buf[4096];
  for (uint64_t sent = 0; sent < total;) {
    if (gap > 0) sleep_ns((int64_t)rng_below(t, (uint64_t)gap));
    uint64_t left = total - sent;
    size_t chunk = 1 + rng_below(t, left < sizeof(buf) ? left : sizeof(buf));
    fill(r->id * 2, atomic_load(&r->in_produced), buf, chunk);
    int64_t n = peer_write(r, buf, chunk);
    if (n > 0) {
      sent += (uint64_t)n;
      atomic_fetch_add(&r->in_produced, (uint64_t)n);
    } else if (n == -EPIPE) {
      return; /* the library side was closed */
    } else if (n == -EAGAIN) {
      sleep_ns(1 + (int64_t)rng_below(t, (uint64_t)(gap > 0 ? gap : MS_NS)));
    } else {
      failure("producer of stream %d: write failed: %s", r->id, strerror((int)-n));
      return;
    }
  }
}

static void do_consume(task_ctx *t, rec *r) {
  uint8_t buf[4096];
  for (;;) {
    size_t want = 1 + rng_below(t, sizeof(buf));
    int64_t n = peer_read(r, buf, want);
    if (n > 0) {
      uint64_t off = atomic_fetch_add(&r->out_received, (uint64_t)n);
      if (g_verify_out[r->stream]) verify(r, r->id * 2 + 1, off, buf, (size_t)n, "peer reader");
      continue;
    }
    if (n == 0) {
      atomic_store(&r->out_eof, true);
      return;
    }
    if (n != -EAGAIN) {
      failure("peer reader of stream %d: read failed: %s", r->id, strerror((int)-n));
      return;
    }
    sleep_ns(1 + (int64_t)rng_below(t, 2 * MS_NS));
  }
}

/* ---- the interpreter (sim/world.c run_action) ----------------------------------- */

/* One action kind each; r is the stream's current generation (NULL if it
 * has none: dead is then true for library-side actions). */
static void act_read(task_ctx *t, rec *r, bool dead, const sc_action *a) {
  uint8_t buf[IO_MAX];
  if (dead) return expect(t, a, NP_ECLOSING, true);
  size_t want = (size_t)(a->n < IO_MAX ? a->n : IO_MAX);
  int64_t v = np_read(r->f, buf, want);
  if (v > 0) {
    if ((size_t)v > want) failure("np_read returned more than asked");
    uint64_t off = atomic_fetch_add(&r->in_consumed, (uint64_t)v);
    if (g_verify_in[a->stream]) verify(r, r->id * 2, off, buf, (size_t)v, "reader");
  }
  expect(t, a, v, true);
}

static void act_write(task_ctx *t, rec *r, bool dead, const sc_action *a) {
  if (dead) return expect(t, a, NP_ECLOSING, false);
  static _Thread_local uint8_t data[SC_WRITE_MAX];
  size_t len = (size_t)a->n, written = SIZE_MAX;
  fill(r->id * 2 + 1, atomic_load(&r->out_written), data, len);
  int64_t v = np_write(r->f, data, len, &written);
  if (written > len) failure("np_write reported %zu of %zu bytes", written, len);
  if (v == 0 && written != len) failure("np_write succeeded with %zu of %zu bytes", written, len);
  if (written <= len) atomic_fetch_add(&r->out_written, (uint64_t)written);
  expect(t, a, v, false);
}

static void act_peer_write(task_ctx *t, rec *r, const sc_action *a) {
  uint8_t buf[IO_MAX];
  if (r == NULL) return expect(t, a, -EPIPE, false);
  size_t len = (size_t)(a->n < IO_MAX ? a->n : IO_MAX);
  /* The offset is read before the write: exact with one peer writer
   * (g_verify_in), and the bytes are not checked otherwise. */
  fill(r->id * 2, atomic_load(&r->in_produced), buf, len);
  int64_t v = peer_write(r, buf, len);
  if (v > 0) atomic_fetch_add(&r->in_produced, (uint64_t)v);
  expect(t, a, v, false);
}

static void act_peer_end(task_ctx *t, rec *r, const sc_action *a) { /* peer-close, peer-shutdown */
  if (r == NULL) return;
  int64_t v;
  pthread_mutex_lock(&r->peer_mu);
  if (r->peer_fd < 0) {
    v = -EBADF;
  } else if (a->op == SC_PEER_SHUTDOWN) {
    v = shutdown(r->peer_fd, SHUT_WR) == 0 ? 0 : -errno;
  } else {
    v = close(r->peer_fd) == 0 ? 0 : -errno;
    r->peer_fd = -1;
  }
  pthread_mutex_unlock(&r->peer_mu);
  expect(t, a, v, false);
}

static void act_deadline(task_ctx *t, rec *r, bool dead, const sc_action *a) {
  if (dead) return expect(t, a, NP_ECLOSING, false);
  int64_t value = deadline_value(a);
  int64_t v = a->mode == 'r'   ? np_set_read_deadline(r->f, value)
              : a->mode == 'w' ? np_set_write_deadline(r->f, value)
                               : np_set_deadline(r->f, value);
  if (v != 0 && v != NP_ECLOSING) failure("set deadline: %s", np_strerror((int)v));
  expect(t, a, v, false);
}

static void act_close(task_ctx *t, rec *r, bool dead, const sc_action *a) {
  uint8_t buf[1];
  if (dead) return expect(t, a, NP_ECLOSING, false);
  int64_t v = np_close(r->f);
  if (v != 0 && v != NP_ECLOSING) failure("np_close: %s", np_strerror((int)v));
  if (v == 0 && np_read(r->f, buf, 1) != NP_ECLOSING) failure("read after close not refused");
  expect(t, a, v, false);
}

static void act_reopen(task_view *view, const sc_action *a) {
  rec *nr = open_stream(a->stream, a->kind);
  pthread_mutex_lock(&g_mu);
  if (g_gen[a->stream] + 1 >= GEN_MAX) {
    pthread_mutex_unlock(&g_mu);
    failure("line %d: too many generations of a stream", a->line);
    return;
  }
  int g = ++g_gen[a->stream];
  g_gen_rec[a->stream][g] = nr == NULL ? -1 : nr->id;
  view->gen[a->stream] = g;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
}

static void act_wait(task_view *view, const sc_action *a) { /* wait-gen, join */
  pthread_mutex_lock(&g_mu);
  if (a->op == SC_JOIN) {
    while (!g_done[a->task]) pthread_cond_wait(&g_cv, &g_mu);
  } else {
    while (g_gen[a->stream] < a->n) pthread_cond_wait(&g_cv, &g_mu);
    view->gen[a->stream] = (int)a->n;
  }
  pthread_mutex_unlock(&g_mu);
}

static void run_action(task_ctx *t, task_view *view, const sc_action *a) {
  rec *r = a->stream >= 0 ? bound(view, a->stream) : NULL;
  bool dead = a->stream >= 0 && r == NULL;
  switch (a->op) {
    case SC_SLEEP: sleep_ns(a->n); return;
    case SC_READ: return act_read(t, r, dead, a);
    case SC_READ_ALL:
      if (!dead) do_read_all(t, r);
      return;
    case SC_WRITE: return act_write(t, r, dead, a);
    case SC_WRITE_ALL:
      if (!dead) do_write_all(t, r, (uint64_t)a->n);
      return;
    case SC_WAIT_READ:
    case SC_WAIT_WRITE:
      if (dead) return expect(t, a, NP_ECLOSING, false);
      return expect(t, a, a->op == SC_WAIT_READ ? np_wait_read(r->f) : np_wait_write(r->f), false);
    case SC_PRODUCE:
      if (r != NULL) do_produce(t, r, (uint64_t)a->n, a->gap);
      return;
    case SC_CONSUME:
      if (r != NULL) do_consume(t, r);
      return;
    case SC_PEER_WRITE: return act_peer_write(t, r, a);
    case SC_PEER_CLOSE:
    case SC_PEER_SHUTDOWN: return act_peer_end(t, r, a);
    case SC_DEADLINE: return act_deadline(t, r, dead, a);
    case SC_CLOSE: return act_close(t, r, dead, a);
    case SC_REOPEN: return act_reopen(view, a);
    case SC_WAIT_GEN:
    case SC_JOIN: return act_wait(view, a);
    default: failure("line %d: %s cannot run on a real kernel", a->line, sc_op_name(a->op)); return;
  }
}

static void *task_main(void *arg) {
  task_ctx *t = arg;
  const sc_task *st = &g_sc->tasks[t->index];
  task_view view;
  for (int s = 0; s < SC_STREAMS_MAX; s++) view.gen[s] = 1;
  if (st->start > 0) sleep_until(g_t0 + st->start);
  for (int i = st->first; i < st->first + st->count; i++) run_action(t, &view, &g_sc->actions[i]);
  pthread_mutex_lock(&g_mu);
  g_done[t->index] = true;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
  return NULL;
}

/* ---- set-up ------------------------------------------------------------------------ */

/* Refuses what real epoll cannot reproduce; 0 or -1 with a message. */
static int check_supported(const scenario *sc, bool any) {
  if (!sc->conformance && !any) {
    fprintf(stderr, "np_scenario_native: %s is not marked 'conformance yes' (use --any to run it anyway)\n",
            sc->name);
    return -1;
  }
  if (sc->faults.active) {
    fprintf(stderr, "np_scenario_native: faults cannot be injected into a real kernel\n");
    return -1;
  }
  for (int i = 0; i < sc->action_count; i++) {
    const sc_action *a = &sc->actions[i];
    const char *why = NULL;
    switch (a->op) {
      case SC_INJECT: why = "epoll reports cannot be injected into a real kernel"; break;
      case SC_BREAK:
      case SC_POLL: why = "poller internals are not reachable through the public API"; break;
      case SC_PEER_RESET:
        why = "a pending ECONNRESET on one end (both directions dead, peer open) has no AF_UNIX equivalent";
        break;
      default: break;
    }
    if (why != NULL) {
      fprintf(stderr, "np_scenario_native: line %d: %s: %s\n", a->line, sc_op_name(a->op), why);
      return -1;
    }
  }
  return 0;
}

/* Bytes are checked where the offsets are exact: at most one task reads
 * (library side) and one writes (peer side) each direction of a stream. */
static void plan_verification(const scenario *sc) {
  for (int s = 0; s < sc->stream_count; s++) {
    int lib_readers = 0, peer_writers = 0, lib_writers = 0, peer_readers = 0;
    for (int t = 0; t < sc->task_count; t++) {
      bool lr = false, pw = false, lw = false, pr = false;
      for (int i = sc->tasks[t].first; i < sc->tasks[t].first + sc->tasks[t].count; i++) {
        const sc_action *a = &sc->actions[i];
        if (a->stream != s) continue;
        lr |= a->op == SC_READ || a->op == SC_READ_ALL;
        pw |= a->op == SC_PEER_WRITE || a->op == SC_PRODUCE;
        lw |= a->op == SC_WRITE || a->op == SC_WRITE_ALL;
        pr |= a->op == SC_CONSUME;
      }
      lib_readers += lr;
      peer_writers += pw;
      lib_writers += lw;
      peer_readers += pr;
    }
    g_verify_in[s] = lib_readers <= 1 && peer_writers <= 1;
    g_verify_out[s] = lib_writers <= 1 && peer_readers <= 1;
  }
}

static void usage(void) {
  fputs(
      "usage: np_scenario_native FILE [--timeout SECONDS] [--any]\n"
      "  runs a conformance scenario on real epoll and prints its outcome\n"
      "  in the format of `npsim outcome FILE`\n",
      stderr);
}

/* Command line: FILE [--timeout SECONDS] [--any]; 0 or 2 (usage printed). */
static int parse_cmdline(int argc, char **argv, const char **path, long *timeout_s, bool *any) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
      char *end;
      *timeout_s = strtol(argv[++i], &end, 10);
      if (*end != 0 || *timeout_s <= 0) {
        *timeout_s = 0;
        break;
      }
    } else if (strcmp(argv[i], "--any") == 0) {
      *any = true;
    } else if (*path == NULL && argv[i][0] != '-') {
      *path = argv[i];
    } else {
      *path = NULL;
      break;
    }
  }
  if (*path != NULL && *timeout_s > 0) return 0;
  usage();
  return 2;
}

static int start_tasks(const scenario *sc) {
  g_t0 = np_now();
  for (int t = 0; t < sc->task_count; t++) {
    task_ctx *tc = &g_tasks[t];
    tc->index = t;
    tc->rng = 0x6e70u + (uint64_t)t;
    tc->outf = open_memstream(&tc->out, &tc->out_len);
    if (tc->outf == NULL || pthread_create(&tc->thread, NULL, task_main, tc) != 0) {
      fprintf(stderr, "np_scenario_native: cannot start task %s\n", sc->tasks[t].name);
      return 2;
    }
  }
  return 0;
}

/* Every task must finish (the simulator reports a deadlock otherwise). */
static void wait_tasks(const scenario *sc, long timeout_s) {
  struct timespec limit;
  clock_gettime(CLOCK_REALTIME, &limit);
  limit.tv_sec += timeout_s;
  pthread_mutex_lock(&g_mu);
  for (int t = 0; t < sc->task_count; t++) {
    while (!g_done[t]) {
      if (pthread_cond_timedwait(&g_cv, &g_mu, &limit) == ETIMEDOUT && !g_done[t]) {
        fprintf(stderr, "np_scenario_native: %s: not finished after %ld s; blocked tasks:", sc->name,
                timeout_s);
        for (int u = 0; u < sc->task_count; u++)
          if (!g_done[u]) fprintf(stderr, " %s", sc->tasks[u].name);
        fputc('\n', stderr);
        fflush(NULL);
        _exit(3);
      }
    }
  }
  pthread_mutex_unlock(&g_mu);
  for (int t = 0; t < sc->task_count; t++) {
    pthread_join(g_tasks[t].thread, NULL);
    fclose(g_tasks[t].outf);
    fwrite(g_tasks[t].out, 1, g_tasks[t].out_len, stdout);
    free(g_tasks[t].out);
  }
}

/* Byte accounting at the end, then every stream closed and freed. */
static void finish_streams(void) {
  for (int i = 0; i < g_rec_count; i++) {
    rec *r = &g_recs[i];
    if (r->kind != SC_PIPE_IN && g_verify_out[r->stream] && atomic_load(&r->out_eof) &&
        atomic_load(&r->out_received) != atomic_load(&r->out_written))
      failure("data: stream %d: library wrote %" PRIu64 " bytes, peer received %" PRIu64, r->id,
              atomic_load(&r->out_written), atomic_load(&r->out_received));
    if (atomic_load(&r->in_consumed) > atomic_load(&r->in_produced))
      failure("data: stream %d: read more than was sent", r->id);
    np_free(r->f);
    r->f = NULL;
    if (r->peer_fd >= 0) close(r->peer_fd);
    r->peer_fd = -1;
    pthread_mutex_destroy(&r->peer_mu);
  }
}

int main(int argc, char **argv) {
  const char *path = NULL;
  long timeout_s = 60;
  bool any = false;
  if (parse_cmdline(argc, argv, &path, &timeout_s, &any) != 0) return 2;
  static scenario sc;
  char err[512];
  if (sc_parse_file(path, &sc, err, sizeof(err)) != 0) {
    fprintf(stderr, "np_scenario_native: %s\n", err);
    return 2;
  }
  if (check_supported(&sc, any) != 0) return 2;
  g_sc = &sc;
  plan_verification(&sc);
  signal(SIGPIPE, SIG_IGN); /* writes to a widowed pipe or socket: EPIPE, as in the simulator */

  int rc = np_poller_create(&g_p, NULL);
  if (rc != 0) {
    fprintf(stderr, "np_scenario_native: np_poller_create: %s\n", np_strerror(rc));
    return 2;
  }
  for (int s = 0; s < sc.stream_count; s++) {
    for (int g = 0; g < GEN_MAX; g++) g_gen_rec[s][g] = -1;
    rec *r = open_stream(s, sc.streams[s].kind);
    if (r == NULL) return 2;
    g_gen_rec[s][1] = r->id;
    g_gen[s] = 1;
  }
  if (start_tasks(&sc) != 0) return 2;
  wait_tasks(&sc, timeout_s);
  finish_streams();
  np_poller_destroy(g_p);
  fflush(stdout);
  return atomic_load(&g_failed) ? 1 : 0;
}
