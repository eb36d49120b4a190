/*
 * stress.c - np_stress: threads doing np_read / np_write / deadline changes /
 * np_wait_* / close / reopen on hundreds of pipes and socket pairs at once,
 * for a bounded time and operation count, with every byte accounted for.
 *
 * Slots. Each slot holds a pipe (one stream) or an AF_UNIX socket pair (two
 * streams, one a direction). A stream has an id; the byte at offset o of
 * stream s is pat(s, o), so a reader checks every byte it receives against
 * the offset it expects: a lost, duplicated or misplaced byte (or a wrong
 * *written count from np_write, which shifts the writer's next offset) is a
 * pattern mismatch, reported with where the bytes seem to come from.
 *
 * Workers pick a slot (a few hot slots more often, for contention on one fd)
 * and an action from a seeded PRNG (--seed; the schedule is not
 * deterministic, the choices are): np_read / np_readv and np_write /
 * np_writev of random sizes (1 B to 256 KiB, larger than the pipe and socket
 * buffers), np_set_{read,write,}deadline (past, near, far, clear),
 * np_wait_read / np_wait_write, np_sysfd, np_close racing a reopen, and
 * reopen: close the slot's descriptors while others use them and open a new
 * pipe or socket pair in its place (the kernel reuses the fd numbers, the
 * library its pollDescs). Reopen closes one of three ways:
 *   graceful  pipe: np_close the write end; socket: shutdown(SHUT_WR) both
 *             ends. Then the stream is drained to EOF and bytes received
 *             must equal bytes written exactly (written is the sum of
 *             np_write's *written, also on error).
 *   half      pipe: np_close the read end first (a writer gets EPIPE);
 *             socket: np_close one end, drain the other end's stream exactly.
 *   hard      np_close both ends while operations are in flight.
 * A stream that is not drained is aborted: received <= written must hold and
 * the shortfall is counted as lost by a reported close/EPIPE, never silently.
 * One np_read and one np_write per stream run at a time (the offset must be
 * known: a per-stream mutex, taken with trylock); np_wait_*, deadlines and
 * closes are not serialized, so the fd mutex and pollDesc see real races.
 *
 * A kicker thread keeps the run live and looks for lost wake-ups. A worker
 * blocked over 10 ms gets a deadline (its op returns NP_ETIMEOUT), unless it
 * is in np_read/np_write on a descriptor that poll() says is ready: np_read /
 * np_write park only after EAGAIN, so the library owes it a wake-up, and if
 * that stays so for 5 s the run fails ("lost wake-up"). One slot in four is
 * quiet: no deadline changes but the kicker's and no np_wait_* there, so a
 * wake-up lost by readiness (e.g. HUP), by a deadline (the kicker gives one
 * per operation, past or 1 ms ahead, and the op must return within 5 s) or by
 * close is not hidden by someone's next deadline. Anything blocked 20 s fails
 * as a hang, with every thread's state. The kicker also checks that
 * waiters_parked never exceeds the number of threads, and sends signals:
 * SIGUSR1 to the process, which only the poller thread has unblocked (its
 * epoll_wait fails with EINTR), SIGUSR2 to workers (futex waits).
 *
 * At the end every thread is joined; waiters_parked must be 0; every
 * surviving stream is drained to EOF and checked exactly; all handles are
 * closed and freed (fds_open 0, pd cache no larger than the fds ever open at
 * once); the poller is destroyed and /proc/self/fd must count what it did at
 * the start. Under ASan, LeakSanitizer checks memory at exit.
 *
 *   np_stress [--seconds S] [--ops N] [--fds N] [--threads T] [--seed N] [--tasks]
 *             [--soak] [--progress] [--verbose]
 *
 * Output (stdout, last line):
 *   stress: seconds=.. ops=.. bytes=.. reopen=.. timeouts=.. closing=..
 *   errors=.. parked_at_end=0 fds_leaked=0 OK
 * ops: operations done; bytes: bytes received and checked; reopen: slots
 * reopened; timeouts / closing: operations that returned NP_ETIMEOUT /
 * NP_ECLOSING; errors: EPIPE and ECONNRESET (a peer closed: expected, any
 * other error fails the run). --verbose / --soak add a detail line.
 * Any failure prints "stress: FAIL ..." with the seed and aborts.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"

#define NS_PER_MS INT64_C(1000000)
#define NS_PER_S INT64_C(1000000000)

#define BUF_MAX (256 * 1024) /* largest read / write */
#define IOV_PARTS 8
#define GAP 16 /* canary bytes between readv regions */
#define CANARY 0xA5
#define HOT_SLOTS 8

#define KICK_AFTER_NS (10 * NS_PER_MS) /* blocked this long: past deadline */
#define BACKLOG_FULL 32768             /* a stream with less is worth writing to */
#define SUSPECT_NS (5 * NS_PER_S)      /* ready but not woken this long: lost wake-up */
#define KICKED_NS (5 * NS_PER_S)       /* quiet slot: kicked but not returned this long */
#define HANG_NS (20 * NS_PER_S)        /* in one operation this long: hang */
#define LOCK_WAIT_S 15                 /* reopen waiting for users to leave */

/* ---- options ------------------------------------------------------------ */

static struct {
  double seconds;
  uint64_t ops; /* 0 = unbounded */
  int fds;
  int threads;
  uint64_t seed;
  bool soak;
  bool progress;
  bool verbose;
  bool tasks; /* workers are tasks of the poller, not threads */
} opt;

/* ---- random ------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *s) { return mix64(*s += UINT64_C(0x9E3779B97F4A7C15)); }
static uint64_t rnd_below(uint64_t *s, uint64_t n) { return n == 0 ? 0 : rnd(s) % n; }

/* ---- byte pattern ---------------------------------------------------------
 * Stream sid's byte at offset off: byte (off % 8) of a hash of (sid, off / 8). */
static uint64_t pat_word(uint64_t sid, uint64_t word) {
  return mix64(sid * UINT64_C(0xD6E8FEB86659FD93) + word);
}

static void pat_fill(uint8_t *buf, uint64_t sid, uint64_t off, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint64_t o = off + i;
    uint64_t w = pat_word(sid, o >> 3);
    for (unsigned b = (unsigned)(o & 7); b < 8 && i < n; b++, i++) buf[i] = (uint8_t)(w >> (8 * b));
  }
}

/* Index of the first byte that differs from the pattern, or n. */
static size_t pat_check(const uint8_t *buf, uint64_t sid, uint64_t off, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint64_t o = off + i;
    uint64_t w = pat_word(sid, o >> 3);
    for (unsigned b = (unsigned)(o & 7); b < 8 && i < n; b++, i++)
      if (buf[i] != (uint8_t)(w >> (8 * b))) return i;
  }
  return n;
}

/* ---- state ---------------------------------------------------------------- */

enum { KIND_PIPE, KIND_SOCK };

typedef struct stream {
  pthread_mutex_t rmu;     /* one np_read at a time: the offset must be known */
  pthread_mutex_t wmu;     /* one np_write at a time */
  uint64_t sid;            /* under the slot lock (written with it exclusive) */
  int wend, rend;          /* indexes into slot.end; same */
  uint64_t written;        /* sum of np_write's *written; under wmu */
  uint64_t received;       /* bytes read and checked; under rmu */
  bool exact;              /* drained to EOF and received == written; under rmu + wmu */
  _Atomic int64_t backlog; /* written - received, a hint for picking streams (no lock) */
} stream;

typedef struct slot {
  pthread_rwlock_t rw;    /* shared: using the handles; exclusive: replacing them */
  atomic_int busy;        /* a reopen is in progress (one at a time) */
  atomic_int closing_end; /* -1, or the end (0, 1; 2 = both) a racing np_close may hit */
  int kind, nstreams;     /* under rw */
  np_fd *end[2];          /* under rw */
  stream st[2];
} slot;

enum { OP_NONE, OP_READ, OP_WRITE, OP_WAIT_READ, OP_WAIT_WRITE, OP_CLOSE, OP_LOCK };
static const char *const op_names[] = {"none",          "np_read",  "np_write", "np_wait_read",
                                       "np_wait_write", "np_close", "lock"};

typedef struct counters {
  uint64_t ops, reads, writes, bytes_read, bytes_written, eofs, timeouts, closing, epipe, econnreset;
  uint64_t deadlines, waits, reopens, close_races, exact_streams, aborted_streams, lost_on_close;
  uint64_t busy, sysfd, waits_ready;
  uint64_t op_ns[7]; /* time spent in each OP_* */
} counters;

typedef struct worker {
  int id;
  pthread_t thread;
  uint64_t rng;
  uint8_t *buf; /* BUF_MAX + canaries */
  counters c;
  /* published for the kicker */
  _Atomic int64_t since; /* np_now() the current operation began; 0 idle */
  atomic_int op, slot, end;
  _Atomic uint64_t opseq;
  /* the kicker's own */
  uint64_t k_seq;
  int64_t k_suspect;
  int64_t k_kicked; /* quiet slot: when its one kick was given */
  int64_t k_kick_deadline;
} worker;

static slot *g_slots;
static int g_nslots;
static worker *g_workers; /* opt.threads workers + the main thread (final checks) */
static int g_nworkers;
static np_poller *g_poller;
static atomic_int g_stop;
static atomic_int g_kicker_stop;
static _Atomic uint64_t g_ops, g_sid, g_bytes, g_reopens, g_kicks;
static atomic_int g_last_reopen = -1;
static int64_t g_start_ns, g_end_ns;
static pthread_mutex_t g_fail_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_sig_lock = PTHREAD_MUTEX_INITIALIZER; /* workers not yet joined */
static bool g_sig_workers;                                     /* under g_sig_lock */
static uint64_t g_signals;                                     /* kicker only */

/* Quiet slots (one in four): no deadline changes except the kicker's, no
 * np_wait_*. There a blocked np_read/np_write is woken only by readiness,
 * close or the kicker's single deadline, so a lost wake-up of any of them
 * shows instead of being hidden by the next deadline change. */
static bool is_quiet(int idx) { return idx % 4 == 3; }

/* ---- failure ---------------------------------------------------------------- */

static void dump_workers(void) {
  int64_t now = np_now();
  for (int i = 0; i < g_nworkers; i++) {
    worker *w = &g_workers[i];
    int64_t since = atomic_load(&w->since);
    int op = atomic_load(&w->op);
    if (since == 0) {
      fprintf(stderr, "  thread %d: idle\n", i);
    } else {
      fprintf(stderr, "  thread %d: in %s on slot %d end %d for %.3f s\n", i, op_names[op],
              atomic_load(&w->slot), atomic_load(&w->end), (double)(now - since) / 1e9);
    }
  }
  if (g_poller != NULL) {
    np_stats st;
    np_poller_stats(g_poller, &st);
    fprintf(stderr,
            "  poller: fds_open=%" PRIu64 " waiters_parked=%" PRIu64 " polls=%" PRIu64
            " timers_fired=%" PRIu64 " pd_allocated=%" PRIu64 "\n",
            st.fds_open, st.waiters_parked, st.polls, st.timers_fired, st.pd_allocated);
  }
}

__attribute__((format(printf, 1, 2))) static _Noreturn void fail(const char *fmt, ...) {
  pthread_mutex_lock(&g_fail_lock); /* one report; other failing threads wait here */
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "stress: FAIL (seed=%" PRIu64 ", %.3f s into the run): ", opt.seed,
          (double)(np_now() - g_start_ns) / 1e9);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  dump_workers();
  fprintf(stderr, "stress: FAIL (rerun: np_stress --seed %" PRIu64 " --threads %d --fds %d)\n", opt.seed,
          opt.threads, opt.fds);
  fflush(stderr);
  abort();
}

static void on_signal(int sig) { (void)sig; }

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "stress: FAIL: run exceeded its time limit (alarm), aborting\n";
  ssize_t r = write(2, msg, sizeof(msg) - 1);
  (void)r;
  abort();
}

/* ---- helpers ---------------------------------------------------------------- */

static void op_begin(worker *w, int op, int slot_idx, int end) {
  atomic_store(&w->op, op);
  atomic_store(&w->slot, slot_idx);
  atomic_store(&w->end, end);
  atomic_fetch_add(&w->opseq, 1);
  atomic_store(&w->since, np_now());
}

static void op_end(worker *w) {
  int64_t since = atomic_load(&w->since);
  w->c.op_ns[atomic_load(&w->op)] += (uint64_t)(np_now() - since);
  atomic_store(&w->since, 0);
}

static struct timespec realtime_in(int seconds) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += seconds;
  return ts;
}

/* A task must not block its scheduler thread on a lock whose holder may be
 * another task of that scheduler: it tries, and sleeps the task in between. */
static int task_try_until(int (*try_fn)(void *), void *lock, int seconds) {
  int64_t end = np_now() + (int64_t)seconds * NS_PER_MS * 1000;
  for (;;) {
    int r = try_fn(lock);
    if (r != EBUSY) return r;
    if (np_now() >= end) return ETIMEDOUT;
    np_sleep(20000);
  }
}
static int try_mutex(void *m) { return pthread_mutex_trylock(m); }
static int try_wrlock(void *rw) { return pthread_rwlock_trywrlock(rw); }
static int try_rdlock(void *rw) { return pthread_rwlock_tryrdlock(rw); }

static void slot_rdlock(slot *s) {
  if (np_in_task())
    (void)task_try_until(try_rdlock, &s->rw, 3600);
  else
    pthread_rwlock_rdlock(&s->rw);
}

static void lock_or_fail(worker *w, pthread_mutex_t *m, const char *what, int idx) {
  op_begin(w, OP_LOCK, idx, -1);
  struct timespec ts = realtime_in(LOCK_WAIT_S);
  int r = np_in_task() ? task_try_until(try_mutex, m, LOCK_WAIT_S) : pthread_mutex_timedlock(m, &ts);
  op_end(w);
  if (r != 0)
    fail("%s of slot %d not released in %d s (its holder is stuck in an operation)", what, idx, LOCK_WAIT_S);
}

static void wrlock_or_fail(worker *w, slot *s, int idx) {
  op_begin(w, OP_LOCK, idx, -1);
  struct timespec ts = realtime_in(LOCK_WAIT_S);
  int r = np_in_task() ? task_try_until(try_wrlock, &s->rw, LOCK_WAIT_S)
                       : pthread_rwlock_timedwrlock(&s->rw, &ts);
  op_end(w);
  if (r != 0)
    fail("slot %d: operations on its closed handles did not return in %d s (pthread_rwlock_timedwrlock: %s)",
         idx, LOCK_WAIT_S, strerror(r));
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) fail("opendir /proc/self/fd: %s", strerror(errno));
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory's own descriptor */
}

static bool fd_ready(int fd, bool read) {
  struct pollfd p = {.fd = fd, .events = read ? POLLIN | POLLRDHUP : POLLOUT};
  if (poll(&p, 1, 0) != 1) return false;
  short want = read ? (POLLIN | POLLRDHUP | POLLHUP | POLLERR) : (POLLOUT | POLLERR | POLLHUP);
  return (p.revents & want) != 0;
}

static size_t pick_size(worker *w) {
  uint64_t r = rnd_below(&w->rng, 100);
  if (r < 45) return 1 + rnd_below(&w->rng, 512);
  if (r < 80) return 1 + rnd_below(&w->rng, 8192);
  if (r < 96) return 1 + rnd_below(&w->rng, 65536);
  return 1 + rnd_below(&w->rng, BUF_MAX);
}

static int pick_slot(worker *w) {
  int hot = g_nslots < HOT_SLOTS ? g_nslots : HOT_SLOTS;
  if (rnd_below(&w->rng, 4) == 0) return (int)rnd_below(&w->rng, (uint64_t)hot);
  return (int)rnd_below(&w->rng, (uint64_t)g_nslots);
}

static void maybe_pause(worker *w) {
  uint64_t r = rnd_below(&w->rng, 8);
  if (r < 3) return;
  if (r < 6) {
    np_yield(); /* a thread: sched_yield */
    return;
  }
  np_sleep((int64_t)rnd_below(&w->rng, 2 * NS_PER_MS)); /* a thread: nanosleep */
}

/* Before a blocking operation, sometimes its own near deadline (racing the
 * other threads' deadline changes). */
static void maybe_own_deadline(worker *w, int idx, np_fd *f, bool read, int percent) {
  if (is_quiet(idx) || rnd_below(&w->rng, 100) >= (uint64_t)percent) return;
  int64_t d = np_deadline_after(50000 + (int64_t)rnd_below(&w->rng, 3 * NS_PER_MS));
  int r = read ? np_set_read_deadline(f, d) : np_set_write_deadline(f, d);
  if (r != 0 && r != NP_ECLOSING) fail("np_set_deadline: %s", np_strerror(r));
  w->c.deadlines++;
}

static bool worth(const stream *st, bool read) {
  int64_t b = atomic_load_explicit(&st->backlog, memory_order_relaxed);
  return read ? b > 0 : b < BACKLOG_FULL;
}

/* Mostly a slot with data to read / room to write, by the backlog hints, so
 * that most operations move bytes; sometimes any slot (and a blocking wait). */
static int pick_slot_for(worker *w, bool read) {
  int idx = pick_slot(w);
  if (rnd_below(&w->rng, 100) < 15) return idx;
  for (int t = 0; t < 4; t++) {
    const slot *s = &g_slots[idx];
    if (worth(&s->st[0], read) || worth(&s->st[1], read)) return idx;
    idx = pick_slot(w);
  }
  return idx;
}

static stream *pick_stream(worker *w, slot *s, bool read) {
  int i = (int)rnd_below(&w->rng, (uint64_t)s->nstreams);
  if (s->nstreams == 2 && !worth(&s->st[i], read) && rnd_below(&w->rng, 100) >= 15) i = 1 - i;
  return &s->st[i];
}

static const char *kind_name(int kind) { return kind == KIND_PIPE ? "pipe" : "socketpair"; }

/* The data does not match stream offset off + bad: say where it seems to come from. */
static _Noreturn void pattern_fail(const slot *s, int idx, const stream *st, const uint8_t *data,
                                   size_t avail, uint64_t off, size_t bad, const char *how) {
  uint64_t at = off + bad;
  size_t probe = avail - bad < 16 ? avail - bad : 16;
  uint64_t lo = at > (UINT64_C(1) << 21) ? at - (UINT64_C(1) << 21) : 0;
  int64_t found = -1;
  for (uint64_t o = lo; o < at + (UINT64_C(1) << 21) && probe >= 4; o++)
    if (pat_check(data + bad, st->sid, o, probe) == probe) {
      found = (int64_t)o;
      break;
    }
  uint8_t want;
  pat_fill(&want, st->sid, at, 1);
  char where[128] = "not found within 2 MiB of it";
  if (found >= 0)
    snprintf(where, sizeof(where), "look like stream offset %" PRId64 " (%s)", found,
             (uint64_t)found < at ? "bytes repeated: written under-reported?" : "bytes skipped: lost");
  fail("slot %d (%s) stream %" PRIu64 ": %s byte at stream offset %" PRIu64
       " is 0x%02x, expected 0x%02x; "
       "the bytes there %s",
       idx, kind_name(s->kind), st->sid, how, at, data[bad], want, where);
}

/* ---- slots ---------------------------------------------------------------- */

static void slot_fill(slot *s, int idx, uint64_t *rng) {
  int fds[2];
  int kind = rnd_below(rng, 2) ? KIND_SOCK : KIND_PIPE;
  if (kind == KIND_PIPE) {
    if (pipe2(fds, O_CLOEXEC) != 0) fail("pipe2: %s (raise ulimit -n or lower --fds)", strerror(errno));
    if (rnd_below(rng, 3) == 0) (void)fcntl(fds[1], F_SETPIPE_SZ, 4096 << rnd_below(rng, 5));
  } else {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
      fail("socketpair: %s (raise ulimit -n or lower --fds)", strerror(errno));
    if (rnd_below(rng, 3) == 0) {
      int sz = 4096 << rnd_below(rng, 6);
      (void)setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
      (void)setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    }
  }
  for (int e = 0; e < 2; e++) {
    int err = np_open(g_poller, fds[e], &s->end[e]);
    if (err != 0) fail("slot %d: np_open(%d): %s", idx, fds[e], np_strerror(err));
  }
  s->kind = kind;
  s->nstreams = kind == KIND_PIPE ? 1 : 2;
  for (int i = 0; i < s->nstreams; i++) {
    stream *st = &s->st[i];
    st->sid = atomic_fetch_add(&g_sid, 1) + 1;
    st->written = st->received = 0;
    st->exact = false;
    atomic_store(&st->backlog, 0);
    /* pipe: fds[1] writes, fds[0] reads; socket stream i: end i -> end 1-i */
    st->wend = kind == KIND_PIPE ? 1 : i;
    st->rend = 1 - st->wend;
  }
  if (kind == KIND_PIPE) atomic_store(&s->st[1].backlog, INT64_C(1) << 40); /* unused: never picked */
}

static void slot_init(slot *s, int idx, uint64_t *rng) {
  pthread_rwlockattr_t a;
  pthread_rwlockattr_init(&a);
  /* A reopen waiting for the slot must not starve behind new users. */
  pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&s->rw, &a);
  pthread_rwlockattr_destroy(&a);
  atomic_init(&s->busy, 0);
  atomic_init(&s->closing_end, -1);
  for (int i = 0; i < 2; i++) {
    pthread_mutex_init(&s->st[i].rmu, NULL);
    pthread_mutex_init(&s->st[i].wmu, NULL);
  }
  slot_fill(s, idx, rng);
}

/* Close and free the handles of a slot held exclusively; account for the
 * streams that were not drained (aborted by a close: reported, not silent). */
static void slot_retire(worker *w, slot *s, int idx) {
  for (int i = 0; i < s->nstreams; i++) {
    stream *st = &s->st[i];
    if (st->exact) {
      w->c.exact_streams++;
      continue;
    }
    if (st->received > st->written)
      fail("slot %d (%s) stream %" PRIu64 ": received %" PRIu64 " bytes but only %" PRIu64 " were written",
           idx, kind_name(s->kind), st->sid, st->received, st->written);
    w->c.aborted_streams++;
    w->c.lost_on_close += st->written - st->received;
  }
  for (int e = 0; e < 2; e++) {
    int r = np_close(s->end[e]);
    if (r != 0 && r != NP_ECLOSING) fail("slot %d: np_close: %s", idx, np_strerror(r));
    if (np_sysfd(s->end[e]) != -1) fail("slot %d: np_sysfd after np_close is not -1", idx);
    np_free(s->end[e]);
    s->end[e] = NULL;
  }
}

/* ---- operations ------------------------------------------------------------ */

static void count_result(worker *w, const slot *s, int idx, const char *what, long r) {
  if (r == NP_ETIMEOUT)
    w->c.timeouts++;
  else if (r == NP_ECLOSING)
    w->c.closing++;
  else if (r == -EPIPE && strstr(what, "write") != NULL)
    w->c.epipe++;
  else if (r == -ECONNRESET && s->kind == KIND_SOCK)
    w->c.econnreset++;
  else
    fail("slot %d (%s): %s returned %ld (%s)", idx, kind_name(s->kind), what, r, np_strerror((int)r));
}

/* np_read or np_readv (scattered regions with canaries between) of stream si,
 * checking every byte. Call with rmu held. Returns the read's result. */
static ssize_t read_checked(worker *w, slot *s, int idx, stream *st, size_t len) {
  np_fd *f = s->end[st->rend];
  struct iovec iov[IOV_PARTS];
  int cnt = 0;
  bool vec = rnd_below(&w->rng, 4) == 0;
  if (vec) {
    cnt = 1 + (int)rnd_below(&w->rng, IOV_PARTS);
    size_t pos = 0, left = len;
    for (int i = 0; i < cnt; i++) {
      size_t part = i == cnt - 1 ? left : rnd_below(&w->rng, left + 1);
      iov[i].iov_base = w->buf + pos;
      iov[i].iov_len = part;
      memset(w->buf + pos + part, CANARY, GAP);
      pos += part + GAP;
      left -= part;
    }
  }
  op_begin(w, OP_READ, idx, st->rend);
  ssize_t n = vec ? np_readv(f, iov, cnt) : np_read(f, w->buf, len);
  op_end(w);
  if (n < 0) return n;
  if ((size_t)n > len) fail("slot %d: np_read returned %zd for %zu bytes", idx, n, len);
  w->c.reads++;
  if (n == 0) {
    w->c.eofs++;
    return 0;
  }
  if (!vec) {
    size_t bad = pat_check(w->buf, st->sid, st->received, (size_t)n);
    if (bad != (size_t)n) pattern_fail(s, idx, st, w->buf, (size_t)n, st->received, bad, "np_read:");
  } else {
    size_t left = (size_t)n;
    uint64_t off = st->received;
    for (int i = 0; i < cnt; i++) {
      const uint8_t *base = iov[i].iov_base;
      size_t take = left < iov[i].iov_len ? left : iov[i].iov_len;
      size_t bad = pat_check(base, st->sid, off, take);
      if (bad != take) pattern_fail(s, idx, st, base, take, off, bad, "np_readv:");
      for (int g = 0; g < GAP; g++)
        if (base[iov[i].iov_len + g] != CANARY) fail("slot %d: np_readv wrote outside iovec %d", idx, i);
      off += take;
      left -= take;
    }
  }
  st->received += (uint64_t)n;
  atomic_fetch_sub_explicit(&st->backlog, n, memory_order_relaxed);
  w->c.bytes_read += (uint64_t)n;
  atomic_fetch_add_explicit(&g_bytes, (uint64_t)n, memory_order_relaxed);
  return n;
}

/* Quiet slot: the kicker's deadline did its job; clear it (still holding the
 * stream's lock, so it cannot hit the next operation's kick). */
static void clear_kick(np_fd *f, bool read) {
  int r = read ? np_set_read_deadline(f, 0) : np_set_write_deadline(f, 0);
  if (r != 0 && r != NP_ECLOSING) fail("np_set_deadline(0): %s", np_strerror(r));
}

static void do_read(worker *w, slot *s, int idx) {
  stream *st = pick_stream(w, s, true);
  if (pthread_mutex_trylock(&st->rmu) != 0) {
    w->c.busy++;
    return;
  }
  maybe_own_deadline(w, idx, s->end[st->rend], true, 40);
  ssize_t n = read_checked(w, s, idx, st, pick_size(w));
  if (n < 0) count_result(w, s, idx, "np_read", (long)n);
  if (n == NP_ETIMEOUT && is_quiet(idx)) clear_kick(s->end[st->rend], true);
  pthread_mutex_unlock(&st->rmu);
}

static void do_write(worker *w, slot *s, int idx) {
  stream *st = pick_stream(w, s, false);
  if (pthread_mutex_trylock(&st->wmu) != 0) {
    w->c.busy++;
    return;
  }
  np_fd *f = s->end[st->wend];
  maybe_own_deadline(w, idx, f, false, 40);
  size_t len = pick_size(w);
  pat_fill(w->buf, st->sid, st->written, len);
  size_t written = SIZE_MAX;
  int r;
  bool vec = rnd_below(&w->rng, 4) == 0;
  op_begin(w, OP_WRITE, idx, st->wend);
  if (!vec) {
    r = np_write(f, w->buf, len, &written);
  } else {
    struct iovec iov[IOV_PARTS];
    int cnt = 1 + (int)rnd_below(&w->rng, IOV_PARTS);
    size_t pos = 0;
    for (int i = 0; i < cnt; i++) {
      size_t part = i == cnt - 1 ? len - pos : rnd_below(&w->rng, len - pos + 1);
      iov[i].iov_base = w->buf + pos;
      iov[i].iov_len = part;
      pos += part;
    }
    r = np_writev(f, iov, cnt, &written);
  }
  op_end(w);
  if (written > len) fail("slot %d: np_write reported %zu written of %zu", idx, written, len);
  if (r == 0 && written != len)
    fail("slot %d: np_write returned 0 after %zu of %zu bytes", idx, written, len);
  st->written += written;
  atomic_fetch_add_explicit(&st->backlog, (int64_t)written, memory_order_relaxed);
  w->c.bytes_written += written;
  w->c.writes++;
  if (r != 0) count_result(w, s, idx, "np_write", r);
  if (r == NP_ETIMEOUT && is_quiet(idx)) clear_kick(f, false);
  pthread_mutex_unlock(&st->wmu);
}

static int64_t pick_deadline(worker *w) {
  uint64_t r = rnd_below(&w->rng, 100);
  if (r < 5) return rnd_below(&w->rng, 2) ? 1 : -(int64_t)rnd_below(&w->rng, NS_PER_S);        /* long past */
  if (r < 15) return np_deadline_after(-(int64_t)rnd_below(&w->rng, 10 * NS_PER_MS));          /* just past */
  if (r < 50) return np_deadline_after((int64_t)rnd_below(&w->rng, 20 * NS_PER_MS));           /* near */
  if (r < 65) return np_deadline_after(NS_PER_S + (int64_t)rnd_below(&w->rng, 30 * NS_PER_S)); /* far */
  return 0;                                                                                    /* clear */
}

static void do_deadline(worker *w, slot *s, int idx) {
  np_fd *f = s->end[rnd_below(&w->rng, 2)];
  int64_t d = pick_deadline(w);
  int r;
  switch (rnd_below(&w->rng, 3)) {
    case 0: r = np_set_read_deadline(f, d); break;
    case 1: r = np_set_write_deadline(f, d); break;
    default: r = np_set_deadline(f, d); break;
  }
  w->c.deadlines++;
  if (r != 0 && r != NP_ECLOSING) fail("slot %d: np_set_*deadline: %s", idx, np_strerror(r));
  if (r == NP_ECLOSING) w->c.closing++;
}

static void do_wait(worker *w, slot *s, int idx) {
  bool read = rnd_below(&w->rng, 2) == 0;
  /* pipe: wait to read on the read end, to write on the write end */
  int e = s->kind == KIND_PIPE ? (read ? 0 : 1) : (int)rnd_below(&w->rng, 2);
  maybe_own_deadline(w, idx, s->end[e], read, 80);
  op_begin(w, read ? OP_WAIT_READ : OP_WAIT_WRITE, idx, e);
  int r = read ? np_wait_read(s->end[e]) : np_wait_write(s->end[e]);
  op_end(w);
  w->c.waits++;
  if (r == 0) w->c.waits_ready++;
  if (r != 0 && r != NP_ETIMEOUT && r != NP_ECLOSING)
    fail("slot %d (%s): np_wait_%s: %s", idx, kind_name(s->kind), read ? "read" : "write", np_strerror(r));
  if (r != 0) count_result(w, s, idx, "np_wait", r);
}

static void do_sysfd(worker *w, slot *s, int idx) {
  int fd = np_sysfd(s->end[rnd_below(&w->rng, 2)]);
  w->c.sysfd++;
  if (fd < -1) fail("slot %d: np_sysfd returned %d", idx, fd);
}

/* np_close one end of a slot that is being reopened, racing the reopener. */
static void do_close_race(worker *w) {
  int idx = atomic_load(&g_last_reopen);
  if (idx < 0) return;
  slot *s = &g_slots[idx];
  if (pthread_rwlock_tryrdlock(&s->rw) != 0) return;
  int ce = atomic_load(&s->closing_end);
  if (ce >= 0) {
    int e = ce == 2 ? (int)rnd_below(&w->rng, 2) : ce;
    op_begin(w, OP_CLOSE, idx, e);
    int r = np_close(s->end[e]);
    op_end(w);
    if (r != 0 && r != NP_ECLOSING) fail("slot %d: racing np_close: %s", idx, np_strerror(r));
    w->c.close_races++;
  }
  pthread_rwlock_unlock(&s->rw);
}

static void close_end(worker *w, slot *s, int idx, int e) {
  op_begin(w, OP_CLOSE, idx, e);
  int r = np_close(s->end[e]);
  op_end(w);
  /* NP_ECLOSING: a racing do_close_race got there first */
  if (r != 0 && r != NP_ECLOSING) fail("slot %d: np_close: %s", idx, np_strerror(r));
}

/* The stream's writing side is shut: read to EOF, then received must equal
 * written exactly. Call with the slot shared. */
static void drain_exact(worker *w, slot *s, int idx, stream *st) {
  lock_or_fail(w, &st->rmu, "read lock", idx);
  np_fd *r = s->end[st->rend];
  int64_t start = np_now();
  for (uint64_t tries = 0;; tries++) {
    if (np_now() - start > LOCK_WAIT_S * NS_PER_S)
      fail("slot %d (%s): stream %" PRIu64 " has no EOF %d s after its writing side was shut (%" PRIu64
           " bytes received)",
           idx, kind_name(s->kind), st->sid, LOCK_WAIT_S, st->received);
    ssize_t n = read_checked(w, s, idx, st, BUF_MAX);
    if (n > 0) continue;
    if (n == 0) break;
    if (n == NP_ETIMEOUT) { /* a past deadline (another worker, the kicker): clear it, go on */
      w->c.timeouts++;
      int err = np_set_read_deadline(r, 0);
      if (err != 0) fail("slot %d: np_set_read_deadline(0) while draining: %s", idx, np_strerror(err));
      if (tries % 16 == 15) np_yield();
      continue;
    }
    if (n == -ECONNRESET && s->kind == KIND_SOCK) { /* the peer closed with data unread: once */
      w->c.econnreset++;
      continue;
    }
    fail("slot %d (%s): draining stream %" PRIu64 " at offset %" PRIu64 ": np_read: %s", idx,
         kind_name(s->kind), st->sid, st->received, np_strerror((int)n));
  }
  lock_or_fail(w, &st->wmu, "write lock", idx);
  if (st->received != st->written)
    fail("slot %d (%s) stream %" PRIu64 ": EOF after %" PRIu64 " bytes but %" PRIu64
         " were written (%s silently)",
         idx, kind_name(s->kind), st->sid, st->received, st->written,
         st->received < st->written ? "bytes lost" : "bytes invented");
  st->exact = true;
  pthread_mutex_unlock(&st->wmu);
  pthread_mutex_unlock(&st->rmu);
}

static void shut_wr(slot *s, int idx, int e) {
  int fd = np_sysfd(s->end[e]);
  if (fd < 0) fail("slot %d: np_sysfd of an open handle is %d", idx, fd);
  if (shutdown(fd, SHUT_WR) != 0) fail("slot %d: shutdown: %s", idx, strerror(errno));
}

enum { REOPEN_GRACEFUL, REOPEN_HALF, REOPEN_HARD };

static void do_reopen(worker *w, int idx) {
  slot *s = &g_slots[idx];
  int expected = 0;
  if (!atomic_compare_exchange_strong(&s->busy, &expected, 1)) {
    w->c.busy++;
    return;
  }
  slot_rdlock(s); /* the only writer is a reopen: ours */
  uint64_t r = rnd_below(&w->rng, 100);
  int how = r < 40 ? REOPEN_GRACEFUL : r < 70 ? REOPEN_HALF : REOPEN_HARD;
  atomic_store(&g_last_reopen, idx);
  if (how == REOPEN_GRACEFUL && s->kind == KIND_PIPE) {
    atomic_store(&s->closing_end, 1);
    close_end(w, s, idx, 1);
    maybe_pause(w);
    drain_exact(w, s, idx, &s->st[0]);
  } else if (how == REOPEN_GRACEFUL) {
    int first = (int)rnd_below(&w->rng, 2);
    shut_wr(s, idx, first);
    shut_wr(s, idx, 1 - first);
    maybe_pause(w);
    drain_exact(w, s, idx, &s->st[first]);
    drain_exact(w, s, idx, &s->st[1 - first]);
  } else if (how == REOPEN_HALF && s->kind == KIND_PIPE) {
    atomic_store(&s->closing_end, 0); /* read end first: writers get EPIPE */
    close_end(w, s, idx, 0);
    maybe_pause(w);
  } else if (how == REOPEN_HALF) {
    int e = (int)rnd_below(&w->rng, 2);
    atomic_store(&s->closing_end, e);
    close_end(w, s, idx, e);
    maybe_pause(w);
    drain_exact(w, s, idx, &s->st[e]); /* stream e is written at end e, read at the other */
  } else {
    atomic_store(&s->closing_end, 2);
    int first = (int)rnd_below(&w->rng, 2);
    close_end(w, s, idx, first);
    maybe_pause(w);
    close_end(w, s, idx, 1 - first);
  }
  atomic_store(&s->closing_end, 2);
  close_end(w, s, idx, 0);
  close_end(w, s, idx, 1);
  pthread_rwlock_unlock(&s->rw);

  wrlock_or_fail(w, s, idx); /* every operation on the closed handles has returned */
  slot_retire(w, s, idx);
  slot_fill(s, idx, &w->rng);
  atomic_store(&s->closing_end, -1);
  pthread_rwlock_unlock(&s->rw);
  atomic_store(&s->busy, 0);
  w->c.reopens++;
  atomic_fetch_add_explicit(&g_reopens, 1, memory_order_relaxed);
}

static bool should_stop(uint64_t n) {
  if (atomic_load_explicit(&g_stop, memory_order_relaxed)) return true;
  uint64_t done = atomic_fetch_add_explicit(&g_ops, 1, memory_order_relaxed);
  if (opt.ops != 0 && done >= opt.ops) {
    atomic_store(&g_stop, 1);
    return true;
  }
  if ((n & 31) == 0 && np_now() >= g_end_ns) {
    atomic_store(&g_stop, 1);
    return true;
  }
  return false;
}

static void *worker_main(void *arg);
static void worker_task(void *arg) { (void)worker_main(arg); }

static void *worker_main(void *arg) {
  worker *w = arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  if (!opt.tasks) pthread_sigmask(SIG_UNBLOCK, &set, NULL); /* a task: not its scheduler's mask */
  for (uint64_t n = 0; !should_stop(n); n++) {
    w->c.ops++;
    int idx = pick_slot(w);
    uint64_t r = rnd_below(&w->rng, 1000);
    if (r >= 40 && r < 660) idx = pick_slot_for(w, r < 350);
    if (r >= 660 && is_quiet(idx)) idx -= 1 + (int)rnd_below(&w->rng, 3); /* no deadlines, waits there */
    if (r < 15) {
      do_reopen(w, idx);
      continue;
    }
    if (r < 30) {
      do_close_race(w);
      continue;
    }
    slot *s = &g_slots[idx];
    slot_rdlock(s);
    if (r < 40)
      do_sysfd(w, s, idx);
    else if (r < 350)
      do_read(w, s, idx);
    else if (r < 660)
      do_write(w, s, idx);
    else if (r < 900)
      do_deadline(w, s, idx);
    else
      do_wait(w, s, idx);
    pthread_rwlock_unlock(&s->rw);
  }
  return NULL;
}

/* ---- kicker ------------------------------------------------------------------ */

static void kick_check(worker *w, int64_t now, bool stopping, uint64_t *rng) {
  uint64_t seq = atomic_load(&w->opseq);
  int64_t since = atomic_load(&w->since);
  int op = atomic_load(&w->op), idx = atomic_load(&w->slot), e = atomic_load(&w->end);
  if (seq != w->k_seq) {
    w->k_seq = seq;
    w->k_suspect = 0;
    w->k_kicked = 0;
  }
  if (since == 0 || seq != atomic_load(&w->opseq)) return;
  int64_t age = now - since;
  if (age > HANG_NS)
    fail("thread %d stuck in %s on slot %d end %d for %.1f s", w->id, op_names[op], idx, e,
         (double)age / 1e9);
  if (op == OP_CLOSE || op == OP_LOCK || op == OP_NONE) return; /* bounded by the above and timed locks */
  if (age < KICK_AFTER_NS && !stopping) return;
  bool quiet = is_quiet(idx);
  if (quiet && w->k_kicked != 0) {
    /* Nobody else touches this deadline: the operation must return. */
    if (now - w->k_kicked > KICKED_NS)
      fail(
          "lost deadline wake-up: thread %d in %s on quiet slot %d end %d got a %s deadline %.1f s ago and "
          "is still blocked",
          w->id, op_names[op], idx, e, w->k_kick_deadline > 0 ? "1 ms (timer)" : "past",
          (double)(now - w->k_kicked) / 1e9);
    return;
  }
  slot *s = &g_slots[idx];
  if (pthread_rwlock_tryrdlock(&s->rw) != 0) return; /* being reopened: the close wakes it */
  np_fd *f = s->end[e];
  bool read = op == OP_READ || op == OP_WAIT_READ;
  if (op == OP_READ || op == OP_WRITE) {
    /* np_read / np_write park only after EAGAIN: if the descriptor is ready
     * the library owes this thread a wake-up. Do not hide a lost one. */
    int fd = np_sysfd(f);
    if (fd >= 0 && fd_ready(fd, read)) {
      if (w->k_suspect == 0) {
        w->k_suspect = now;
      } else if (now - w->k_suspect > SUSPECT_NS) {
        fail(
            "lost wake-up: thread %d in %s on %sslot %d end %d (fd %d, %s) for %.1f s while poll() has "
            "reported it %s for %.1f s",
            w->id, op_names[op], quiet ? "quiet " : "", idx, e, fd, kind_name(s->kind), (double)age / 1e9,
            read ? "readable" : "writable", (double)(now - w->k_suspect) / 1e9);
      }
      pthread_rwlock_unlock(&s->rw);
      return;
    }
    w->k_suspect = 0;
  }
  /* Quiet slots: half the time a deadline 1 ms ahead, so the timer wakes it. */
  int64_t d = quiet && rnd_below(rng, 2) ? np_deadline_after(NS_PER_MS) : np_deadline_after(-1);
  int r = read ? np_set_read_deadline(f, d) : np_set_write_deadline(f, d);
  if (r != 0 && r != NP_ECLOSING) fail("kicker: np_set_deadline: %s", np_strerror(r));
  if (quiet) {
    w->k_kicked = now;
    w->k_kick_deadline = d > now ? d : 0;
  }
  atomic_fetch_add_explicit(&g_kicks, 1, memory_order_relaxed);
  pthread_rwlock_unlock(&s->rw);
}

/* EINTR: SIGUSR1 goes to the process, where only the poller thread has it
 * unblocked (its epoll_wait fails with EINTR); SIGUSR2 to a worker (futex). */
static void send_signals(uint64_t *rng) {
  if (rnd_below(rng, 2) == 0) {
    kill(getpid(), SIGUSR1);
    g_signals++;
  }
  if (rnd_below(rng, 4) == 0) {
    pthread_mutex_lock(&g_sig_lock);
    if (g_sig_workers) {
      pthread_kill(g_workers[rnd_below(rng, (uint64_t)opt.threads)].thread, SIGUSR2);
      g_signals++;
    }
    pthread_mutex_unlock(&g_sig_lock);
  }
}

static void *kicker_main(void *arg) {
  (void)arg;
  uint64_t rng = mix64(opt.seed ^ UINT64_C(0x6B69636B6572));
  int64_t next_progress = g_start_ns + 10 * NS_PER_S;
  while (!atomic_load(&g_kicker_stop)) {
    int64_t now = np_now();
    if (now >= g_end_ns) atomic_store(&g_stop, 1);
    bool stopping = atomic_load(&g_stop) != 0;
    np_stats st;
    np_poller_stats(g_poller, &st);
    if (st.waiters_parked > (uint64_t)g_nworkers)
      fail("waiters_parked %" PRIu64 " exceeds the %d threads that could park", st.waiters_parked,
           g_nworkers);
    for (int i = 0; i < g_nworkers; i++) kick_check(&g_workers[i], now, stopping, &rng);
    send_signals(&rng);
    if ((opt.progress || opt.soak) && now >= next_progress) {
      next_progress += 10 * NS_PER_S;
      fprintf(stderr,
              "stress: t=%.0fs ops=%" PRIu64 " bytes=%" PRIu64 " reopen=%" PRIu64 " kicks=%" PRIu64
              " parked=%" PRIu64 " fds_open=%" PRIu64 " pd_allocated=%" PRIu64 "\n",
              (double)(now - g_start_ns) / 1e9, atomic_load(&g_ops), atomic_load(&g_bytes),
              atomic_load(&g_reopens), atomic_load(&g_kicks), st.waiters_parked, st.fds_open,
              st.pd_allocated);
    }
    struct timespec ts = {0, 5 * NS_PER_MS};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

/* ---- main ------------------------------------------------------------------------ */

static void usage(FILE *out) {
  fprintf(out,
          "usage: np_stress [options]\n"
          "  --seconds S   run time (default 10; soak 600)\n"
          "  --ops N       stop after N operations in all (default unbounded)\n"
          "  --fds N       descriptors in use at once, pipes and socket pairs (default 512; soak 2048)\n"
          "  --threads T   worker threads (default 16; soak 32)\n"
          "  --seed N      PRNG seed for the threads' choices (default: time)\n"
          "  --soak        longer defaults, progress every 10 s\n"
          "  --tasks       workers are tasks (np_go) on the poller's schedulers, not threads\n"
          "  --progress    progress line every 10 s\n"
          "  --verbose     print a detail line before the summary\n");
}

static uint64_t parse_u64(const char *name, const char *v) {
  char *end;
  errno = 0;
  unsigned long long x = strtoull(v, &end, 0);
  if (errno != 0 || *end != '\0' || v[0] == '-') {
    fprintf(stderr, "np_stress: bad value for %s: %s\n", name, v);
    exit(2);
  }
  return (uint64_t)x;
}

static void parse_args(int argc, char **argv) {
  double seconds = -1;
  int64_t fds = -1, threads = -1;
  bool have_seed = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_value = i + 1 < argc;
    if (strcmp(a, "--tasks") == 0) {
      opt.tasks = true;
    } else if (strcmp(a, "--soak") == 0) {
      opt.soak = true;
    } else if (strcmp(a, "--progress") == 0) {
      opt.progress = true;
    } else if (strcmp(a, "--verbose") == 0) {
      opt.verbose = true;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    } else if (has_value && strcmp(a, "--seconds") == 0) {
      char *end;
      seconds = strtod(argv[++i], &end);
      if (*end != '\0' || !(seconds > 0)) {
        fprintf(stderr, "np_stress: bad value for --seconds: %s\n", argv[i]);
        exit(2);
      }
    } else if (has_value && strcmp(a, "--ops") == 0) {
      opt.ops = parse_u64(a, argv[++i]);
    } else if (has_value && strcmp(a, "--fds") == 0) {
      fds = (int64_t)parse_u64(a, argv[++i]);
    } else if (has_value && strcmp(a, "--threads") == 0) {
      threads = (int64_t)parse_u64(a, argv[++i]);
    } else if (has_value && strcmp(a, "--seed") == 0) {
      opt.seed = parse_u64(a, argv[++i]);
      have_seed = true;
    } else {
      usage(stderr);
      exit(2);
    }
  }
  opt.seconds = seconds > 0 ? seconds : opt.soak ? 600 : 10;
  opt.fds = (int)(fds > 0 ? fds : opt.soak ? 2048 : 512);
  opt.threads = (int)(threads > 0 ? threads : opt.soak ? 32 : 16);
  if (opt.fds < 2 || opt.fds > 1000000 || opt.threads > 4096) {
    fprintf(stderr, "np_stress: --fds must be 2..1000000, --threads 1..4096\n");
    exit(2);
  }
  if (!have_seed) opt.seed = mix64((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32)) % 1000000000;
}

static void raise_fd_limit(int need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)need) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)need ? (rlim_t)need : rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static void sum(counters *t, const counters *c) {
  const uint64_t *src = (const uint64_t *)c;
  uint64_t *dst = (uint64_t *)t;
  for (size_t i = 0; i < sizeof(*c) / sizeof(uint64_t); i++) dst[i] += src[i];
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  signal(SIGPIPE, SIG_IGN); /* writes to closed pipes/sockets must give EPIPE */
  signal(SIGALRM, on_alarm);
  alarm((unsigned)opt.seconds + 300); /* last resort if even the kicker is stuck */
  setvbuf(stdout, NULL, _IOLBF, 0);

  g_nslots = opt.fds / 2;
  raise_fd_limit(opt.fds + 64);
  int fds_start = count_fds();
  printf("stress: seed=%" PRIu64 " threads=%d fds=%d slots=%d seconds=%g ops=%" PRIu64 "%s\n", opt.seed,
         opt.threads, g_nslots * 2, g_nslots, opt.seconds, opt.ops, opt.soak ? " soak" : "");

  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal; /* no SA_RESTART: interrupted calls fail with EINTR */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGUSR2, &sa, NULL);
  /* The poller thread inherits a mask with both unblocked; every thread of
   * ours blocks them (workers unblock SIGUSR2). */
  int err = np_poller_create(&g_poller, NULL);
  if (err != 0) fail("np_poller_create: %s", np_strerror(err));
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  uint64_t rng = opt.seed;
  g_slots = calloc((size_t)g_nslots, sizeof(*g_slots));
  g_nworkers = opt.threads + 1; /* the last one is the main thread, for the final drain */
  g_workers = calloc((size_t)g_nworkers, sizeof(*g_workers));
  if (g_slots == NULL || g_workers == NULL) fail("out of memory");
  for (int i = 0; i < g_nslots; i++) slot_init(&g_slots[i], i, &rng);

  g_start_ns = np_now();
  g_end_ns = g_start_ns + (int64_t)(opt.seconds * 1e9);
  for (int i = 0; i < g_nworkers; i++) {
    worker *w = &g_workers[i];
    w->id = i;
    w->rng = mix64(opt.seed * 1000003 + (uint64_t)i + 1);
    w->buf = malloc(BUF_MAX + IOV_PARTS * GAP);
    if (w->buf == NULL) fail("out of memory");
  }
  pthread_t kicker;
  if (pthread_create(&kicker, NULL, kicker_main, NULL) != 0) fail("pthread_create");
  pthread_mutex_lock(&g_sig_lock);
  for (int i = 0; i < opt.threads; i++) {
    if (opt.tasks) {
      err = np_go(g_poller, worker_task, &g_workers[i]);
      if (err != 0) fail("np_go: %s", np_strerror(err));
    } else if (pthread_create(&g_workers[i].thread, NULL, worker_main, &g_workers[i]) != 0) {
      fail("pthread_create");
    }
  }
  g_sig_workers = !opt.tasks; /* SIGUSR2 goes to worker threads (futex waits) */
  pthread_mutex_unlock(&g_sig_lock);
  while (!atomic_load(&g_stop)) {
    struct timespec ts = {0, 20 * NS_PER_MS};
    nanosleep(&ts, NULL);
  }
  pthread_mutex_lock(&g_sig_lock); /* no pthread_kill on a joined thread */
  g_sig_workers = false;
  pthread_mutex_unlock(&g_sig_lock);
  if (opt.tasks) {
    err = np_wait_tasks(g_poller, 0);
    if (err != 0) fail("np_wait_tasks: %s", np_strerror(err));
  } else {
    for (int i = 0; i < opt.threads; i++) pthread_join(g_workers[i].thread, NULL);
  }
  double seconds = (double)(np_now() - g_start_ns) / 1e9;

  /* Every worker is gone: nobody can be parked, every handle is open. */
  np_stats st;
  np_poller_stats(g_poller, &st);
  if (st.waiters_parked != 0)
    fail("%" PRIu64 " waiters parked after every thread was joined", st.waiters_parked);
  if (st.fds_open != (uint64_t)g_nslots * 2)
    fail("fds_open is %" PRIu64 " with %d descriptors open", st.fds_open, g_nslots * 2);

  /* Drain every surviving stream to EOF: received == written, exactly. */
  worker *me = &g_workers[opt.threads];
  for (int i = 0; i < g_nslots; i++) {
    slot *s = &g_slots[i];
    pthread_rwlock_rdlock(&s->rw);
    for (int e = 0; e < 2; e++)
      if ((err = np_set_deadline(s->end[e], 0)) != 0)
        fail("slot %d: np_set_deadline(0): %s", i, np_strerror(err));
    if (s->kind == KIND_PIPE) {
      close_end(me, s, i, 1);
      drain_exact(me, s, i, &s->st[0]);
    } else {
      shut_wr(s, i, 0);
      shut_wr(s, i, 1);
      drain_exact(me, s, i, &s->st[0]);
      drain_exact(me, s, i, &s->st[1]);
    }
    pthread_rwlock_unlock(&s->rw);
  }
  atomic_store(&g_kicker_stop, 1);
  pthread_join(kicker, NULL);
  for (int i = 0; i < g_nslots; i++) {
    slot *s = &g_slots[i];
    slot_retire(me, s, i);
    for (int j = 0; j < 2; j++) {
      pthread_mutex_destroy(&s->st[j].rmu);
      pthread_mutex_destroy(&s->st[j].wmu);
    }
    pthread_rwlock_destroy(&s->rw);
  }
  np_poller_stats(g_poller, &st);
  uint64_t parked_at_end = st.waiters_parked;
  if (parked_at_end != 0) fail("%" PRIu64 " waiters parked after closing everything", parked_at_end);
  if (st.fds_open != 0) fail("fds_open is %" PRIu64 " after closing everything", st.fds_open);
  /* The pd cache is reused: never more pds than descriptors open at once
   * (np_close returns the pd before it returns), rounded up to a block, per
   * scheduler (each has its own cache, and tasks open descriptors on theirs:
   * at worst all of them were open on each at some time). Thousands of
   * reopens without reuse would exceed it many times over. */
  uint64_t pd_bound = ((uint64_t)g_nslots * 2 + 31) / 32 * 32 * (opt.tasks && st.procs > 0 ? st.procs : 1);
  if (st.pd_allocated > pd_bound)
    fail("pd_allocated %" PRIu64 " > %" PRIu64 ": pollDescs are not reused", st.pd_allocated, pd_bound);
  np_poller_destroy(g_poller);
  g_poller = NULL;
  int fds_leaked = count_fds() - fds_start;
  if (fds_leaked != 0) fail("%d descriptors leaked (/proc/self/fd: %d at start)", fds_leaked, fds_start);

  counters t = {0};
  for (int i = 0; i < g_nworkers; i++) {
    sum(&t, &g_workers[i].c);
    free(g_workers[i].buf);
  }
  if (t.exact_streams == 0) fail("no stream was checked exactly");
  free(g_workers);
  free(g_slots);
  if (opt.verbose || opt.soak)
    printf("stress: detail reads=%" PRIu64 " writes=%" PRIu64 " written=%" PRIu64 " eofs=%" PRIu64
           " epipe=%" PRIu64 " econnreset=%" PRIu64 " deadlines=%" PRIu64 " waits=%" PRIu64
           " waits_ready=%" PRIu64 " kicks=%" PRIu64 " signals=%" PRIu64 " close_races=%" PRIu64
           " busy=%" PRIu64 " exact_streams=%" PRIu64 " aborted_streams=%" PRIu64 " lost_on_close=%" PRIu64
           " pd_allocated=%" PRIu64 " polls=%" PRIu64 " timers_fired=%" PRIu64 "\n",
           t.reads, t.writes, t.bytes_written, t.eofs, t.epipe, t.econnreset, t.deadlines, t.waits,
           t.waits_ready, atomic_load(&g_kicks), g_signals, t.close_races, t.busy, t.exact_streams,
           t.aborted_streams, t.lost_on_close, st.pd_allocated, st.polls, st.timers_fired);
  if (opt.verbose) {
    printf("stress: time in");
    for (int i = 1; i < 7; i++) printf(" %s=%.2fs", op_names[i], (double)t.op_ns[i] / 1e9);
    printf("\n");
  }
  printf("stress: seconds=%.1f ops=%" PRIu64 " bytes=%" PRIu64 " reopen=%" PRIu64 " timeouts=%" PRIu64
         " closing=%" PRIu64 " errors=%" PRIu64 " parked_at_end=%" PRIu64 " fds_leaked=%d OK\n",
         seconds, t.ops, t.bytes_read, t.reopens, t.timeouts, t.closing, t.epipe + t.econnreset,
         parked_at_end, fds_leaked);
  return 0;
}
