/*
 * world.c - actors, oracles and invariant checks of one simulated run.
 *
 * The actors call the public library API (np_read, np_write, np_close,
 * np_set_*deadline) on handles registered with a poller on the simulated
 * kernel; the "network" side of every stream is driven by peer actors
 * through the kernel directly. Every byte carries a pattern that depends on
 * its stream and offset, so lost, duplicated or misreported bytes are
 * caught where they are read.
 */
#include "world.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "handle_heap.h"
#include "kernel.h"
#include "np_internal.h"
#include "oracle.h"
#include "scenario.h"
#include "timer_check.h"

#define RECS_MAX 48
#define HIST_MAX 96
#define MS_NS INT64_C(1000000)
#define GEN_MAX 16
#define REG_MAX 1024

typedef struct dl_entry {
  int64_t time;        /* virtual time the set call began */
  uint64_t step_begin; /* schedule steps bracketing the call */
  uint64_t step_end;   /* 0 while the call is in progress */
  bool refused;        /* the call returned NP_ECLOSING: it had no effect */
  int64_t value;
} dl_entry;

typedef struct rec {
  int id;
  sc_kind kind;
  np_fd *f;
  int fd, peer_fd;
  np__pd *pd;
  uint32_t fdseq;
  uint64_t tag;
  uint32_t reg; /* kernel registration */
  bool close_started;
  bool free_started;          /* np_free or destroy began: no call may start any more */
  dl_entry hist[2][HIST_MAX]; /* deadline history per mode */
  int hist_len[2];
  uint64_t in_produced, in_consumed; /* peer -> library */
  bool in_peer_closed, in_eof, in_reset, in_not_pollable;
  bool peer_fd_closed;                /* the peer end was closed: its number may belong to someone else now */
  uint64_t out_written, out_received; /* library -> peer */
  int writers_active;                 /* library write calls in progress */
  bool multi_writer;                  /* writes overlapped: contents cannot be checked, only totals */
  bool out_eof, out_active;
} rec;

enum { EV_R = 1, EV_W = 2, EV_ERR_ONLY = 4 }; /* events fetched for a registration */

typedef struct world {
  np_poller *p;
  rec recs[RECS_MAX];
  int rec_count;
  int gen_rec[SC_STREAMS_MAX][GEN_MAX]; /* (stream, generation) -> rec, or -1 */
  int gen[SC_STREAMS_MAX];              /* newest generation of each stream */
  sim_task *runners[SC_TASKS_MAX];
  bool stop;
  sim_task *poller_task;
  int64_t fault_horizon;
  int events_max;
  const scenario *sc;
  const world_options *opts;
  np__pd *used_pds[RECS_MAX];  /* every pd that ever had an owner: the only ones that can change */
  uint32_t used_reg[RECS_MAX]; /* the pd's current kernel registration */
  unsigned reg_flags[REG_MAX]; /* EV_* fetched, by kernel registration */
  uint32_t reg_last[REG_MAX];  /* the last event mask fetched, by registration (I10 both ways) */
  uint32_t reg_epoch[REG_MAX]; /* quiescence epoch of that event */
  bool reg_mixed[REG_MAX];     /* ERR-only and other events fetched in one epoch */
  struct {                     /* I14, by registration and mode (0 read, 1 write) */
    uint64_t last_step;        /* step the last event that must wake this mode was fetched */
    uint32_t last_mask;        /* its mask */
    uint32_t events;           /* events fetched that wake this mode */
    uint32_t ready;            /* wait results "ready" in this mode */
  } wakes[REG_MAX][2];
  uint64_t ready_seen[RECS_MAX][2];         /* I15, by used pd and mode: the last step rg / wg was READY */
  uint64_t park_checked[SIM_TASKS_MAX + 1]; /* I15, by task id: the park_step last checked */
  uint32_t epoch;                           /* quiescent checks so far */
  int used_pd_count;
  bool destroyed;                /* the destroy action ran: np_open is refused */
  int frees_active;              /* np_free calls in progress: destroy must not race them */
  bool began[SIM_TASKS_MAX + 1]; /* by task id: blocked inside its current call at some point */
  struct {                       /* connections made by connect actions, until accepted */
    int client_fd;
    bool accepted;
    bool in_use;
  } conns[32];
} world;

static world W;

/* ---- helpers ---------------------------------------------------------------- */

/* Actor-level events in the trace: what (a static string), fd, result. */
static int64_t act(const char *what, int fd, int64_t result) {
  sim_record(SIM_OP_ACTOR, what, (uint64_t)(int64_t)fd, (uint64_t)result);
  return result;
}

static uint8_t pattern(int stream, uint64_t offset) {
  return (uint8_t)((offset * 31u) ^ (offset >> 7) ^ ((uint64_t)stream * 97u));
}

static void verify(const rec *r, int stream, uint64_t offset, const uint8_t *buf, size_t n, const char *who) {
  for (size_t i = 0; i < n; i++)
    if (buf[i] != pattern(stream, offset + i))
      sim_fail("data: %s of stream %d got a wrong byte at offset %" PRIu64
               " (lost, duplicated or misreported bytes)",
               who, r->id, offset + i);
}

static void fill(int stream, uint64_t offset, uint8_t *buf, size_t n) {
  for (size_t i = 0; i < n; i++) buf[i] = pattern(stream, offset + i);
}

/* Events fetched, by the kernel's registration (epoll item serial), not by
 * the core's tag: a core that failed to make tags unique (no fdseq bump)
 * must not have its stale events credited to the new owner. */
static int used_index(const np__pd *pd) {
  for (int i = 0; i < W.used_pd_count; i++)
    if (W.used_pds[i] == pd) return i;
  if (W.used_pd_count >= RECS_MAX) sim_fail("too many pds for the event log");
  W.used_pds[W.used_pd_count] = (np__pd *)pd;
  W.used_reg[W.used_pd_count] = 0;
  return W.used_pd_count++;
}

static unsigned reg_seen(uint32_t reg) { return reg > 0 && reg < REG_MAX ? W.reg_flags[reg] : 0; }

/* Kernel hook: a new registration. The pointer half of the tag says which
 * pd the core registered (the sequence half is what is under test). */
static void on_register(int fd, uint64_t tag, uint32_t reg) {
  (void)fd;
  if (reg >= REG_MAX) sim_fail("too many registrations for the event log");
  uint32_t seq;
  np__pd *pd = np__pd_untag(tag, &seq);
  W.used_reg[used_index(pd)] = reg;
}

static rec *rec_of_pd(const void *pd) {
  const np__pd *p = pd;
  uint32_t reg = W.used_reg[used_index(p)];
  for (int i = W.rec_count - 1; i >= 0; i--)
    if (W.recs[i].pd == p && W.recs[i].f != NULL && W.recs[i].reg == reg) return &W.recs[i];
  return NULL;
}

static dl_entry *hist_begin(rec *r, int mode_index, int64_t value) {
  if (r->hist_len[mode_index] >= HIST_MAX) sim_fail("deadline history full");
  dl_entry *e = &r->hist[mode_index][r->hist_len[mode_index]++];
  *e =
      (dl_entry){.time = sim->now, .step_begin = sim->steps, .step_end = 0, .refused = false, .value = value};
  return e;
}

/* Sets a deadline through the public API, recording it for the oracles. */
static int set_deadline_recorded(rec *r, int which, int64_t value) {
  dl_entry *er = which != 1 ? hist_begin(r, 0, value) : NULL;
  dl_entry *ew = which != 0 ? hist_begin(r, 1, value) : NULL;
  int err = which == 0   ? np_set_read_deadline(r->f, value)
            : which == 1 ? np_set_write_deadline(r->f, value)
                         : np_set_deadline(r->f, value);
  if (er != NULL) er->step_end = sim->steps, er->refused = err == NP_ECLOSING;
  if (ew != NULL) ew->step_end = sim->steps, ew->refused = err == NP_ECLOSING;
  return err;
}

/* I5, step-precise, at the instant a wait decides "timeout": once a set
 * call has returned, every later decision sees its deadline. So the
 * timeout is illegal if no call is in flight and the last completed one
 * set a deadline that has not passed (or none). A stale timer that fires
 * after a deadline was moved is caught here. */
static bool timeout_legal_now(const rec *r, int mode_index) {
  const dl_entry *h = r->hist[mode_index];
  int n = r->hist_len[mode_index];
  const dl_entry *last = NULL;
  for (int i = 0; i < n; i++) {
    if (h[i].step_end == 0) return true; /* in flight: either outcome is legal */
    if (h[i].refused) continue;
    if (last == NULL || h[i].step_end > last->step_end) last = &h[i];
  }
  if (last == NULL) return false; /* no deadline was ever set */
  /* Calls that overlapped the last completed one may have taken the pd lock
   * after it: any of their values may be the one in force. */
  for (int i = 0; i < n; i++) {
    if (h[i].refused || h[i].step_end < last->step_begin) continue;
    if (h[i].value != 0 && h[i].value <= sim->now) return true;
  }
  return false;
}

/* I3/I5 at the API: an operation that began at step op_step may return a
 * timeout only if some deadline with an expired value could have been in
 * force during it: set before now, and not certainly replaced (by a call
 * that began after it ended and ended before the operation began). */
static bool timeout_legal(const rec *r, int mode_index, uint64_t op_step) {
  const dl_entry *h = r->hist[mode_index];
  int n = r->hist_len[mode_index];
  for (int i = 0; i < n; i++) {
    if (h[i].refused || h[i].value == 0 || h[i].value > sim->now) continue;
    bool replaced = false;
    for (int j = 0; j < n && !replaced; j++)
      replaced = h[i].step_end != 0 && h[j].step_begin > h[i].step_end && h[j].step_end != 0 &&
                 h[j].step_end < op_step;
    if (!replaced) return true;
  }
  return false;
}

/* I5, the other way: an operation that began once the deadline certainly
 * in force had passed (every set call had returned before it began, and
 * each one that may have been the last sets an expired value) fails with
 * NP_ETIMEOUT without trying, even with data or room there, whether or not
 * the deadline's timer has run (Go's "i/o timeout"; a busy scheduler runs
 * timers late). Closing and a failed poller take precedence. */
static bool timeout_required(const rec *r, int mode_index) {
  const dl_entry *h = r->hist[mode_index];
  int n = r->hist_len[mode_index];
  const dl_entry *last = NULL;
  for (int i = 0; i < n; i++) {
    if (h[i].step_end == 0 || h[i].step_end >= sim->current->op_step) return false;
    if (h[i].refused) continue;
    if (last == NULL || h[i].step_end > last->step_end) last = &h[i];
  }
  if (last == NULL) return false;
  for (int i = 0; i < n; i++) {
    if (h[i].refused || h[i].step_end < last->step_begin) continue;
    if (h[i].value == 0 || h[i].value > sim->current->op_start) return false;
  }
  return true;
}

static void check_expired(const rec *r, int mode, int64_t result, const char *where) {
  if (result == NP_ETIMEOUT || result == NP_ECLOSING || result == NP_EPOLLER) return;
  if (timeout_required(r, mode == 'r' ? 0 : 1))
    sim_fail("I5: %s on stream %d mode %c began after its deadline had passed and returned %" PRId64
             " instead of a timeout",
             where, r->id, mode, result);
}

static void check_result(rec *r, int mode, int result, const char *where) {
  int mi = mode == 'r' ? 0 : 1;
  uint64_t op_step = sim->current->op_step;
  switch (result) {
    case NP_ETIMEOUT:
      if (!timeout_legal(r, mi, op_step))
        sim_fail("I3/I5: %s on stream %d mode %c timed out with no expired deadline", where, r->id, mode);
      break;
    case NP_ECLOSING:
      if (!r->close_started)
        sim_fail("I3: %s on stream %d returned closing before close began", where, r->id);
      break;
    case NP_ENOTPOLLABLE:
      if (mode != 'r' || !(reg_seen(r->reg) & EV_ERR_ONLY))
        sim_fail("I10: %s on stream %d mode %c not pollable without an EPOLLERR-only event", where, r->id,
                 mode);
      break;
    default: break;
  }
}

/* I14, negative space: each event wakes at most one waiter per mode (or
 * leaves one READY), so a registration's "ready" results in a mode never
 * outnumber the events fetched for it that wake that mode (sim/oracle.h).
 * A core that wakes a writer for a readable event, or a reader for room,
 * makes ready results no event justifies. */
static void check_ready_count(const rec *r, int mode) {
  if (r->reg == 0 || r->reg >= REG_MAX) return;
  int mi = mode == 'r' ? 0 : 1;
  uint32_t ready = ++W.wakes[r->reg][mi].ready, events = W.wakes[r->reg][mi].events;
  if (ready > events)
    sim_fail("I14: wait(%c) on stream %d woken ready %u times but only %u events of its registration wake %s",
             mode, r->id, ready, events, mode == 'r' ? "readers" : "writers");
}

/* Port hook: every np__pd_wait result. Deliberately not a schedule point:
 * the result was decided by the load just before, and nothing may happen
 * in between. */
int np__port_wait_result(const void *pd, int mode, int result) {
  sim_record(SIM_OP_WAIT_RESULT, pd, (uint64_t)mode, (uint64_t)result);
  rec *r = rec_of_pd(pd);
  if (r == NULL) sim_fail("I4: wait result on a pd that no open handle owns");
  if (result == NP__POLL_TIMEOUT && !timeout_legal_now(r, mode == 'r' ? 0 : 1))
    sim_fail("I5: wait(%c) on stream %d timed out although the deadline in force has not passed", mode,
             r->id);
  if (result == NP__POLL_OK) {
    if (!(reg_seen(r->reg) & (mode == 'r' ? EV_R : EV_W)))
      sim_fail(
          "I3/I6: waiter on stream %d mode %c woken ready without any readiness event for its registration",
          r->id, mode);
    check_ready_count(r, mode);
  } else {
    static const int map[] = {0, NP_ECLOSING, NP_ETIMEOUT, NP_ENOTPOLLABLE, NP_EPOLLER};
    if (result < 0 || result > NP__POLL_FAILED) sim_fail("wait(%c) returned %d", mode, result);
    check_result(r, mode, map[result], "wait");
  }
  return result;
}

static void on_event(void *ctx, int fd, uint64_t tag, uint32_t reg, uint32_t events) {
  (void)ctx;
  (void)fd;
  if (tag == 0) return; /* the break */
  unsigned flags = 0;
  if (oracle_wakes(events, 'r')) flags |= EV_R;
  if (oracle_wakes(events, 'w')) flags |= EV_W;
  if (oracle_sets_err_bit(events)) flags |= EV_ERR_ONLY;
  if (reg > 0 && reg < REG_MAX) {
    W.reg_flags[reg] |= flags;
    for (int mi = 0; mi < 2; mi++) {
      if (!(flags & (mi == 0 ? EV_R : EV_W))) continue;
      W.wakes[reg][mi].events++;
      W.wakes[reg][mi].last_step = sim->steps;
      W.wakes[reg][mi].last_mask = events;
    }
    /* Pollers may process their batches out of fetch order (a non-blocking
     * poll's older event after the blocking poller's newer one, as in Go):
     * within one epoch, disagreeing events leave either bit legal. */
    if (W.reg_epoch[reg] != W.epoch || W.reg_last[reg] == 0)
      W.reg_mixed[reg] = false;
    else if ((W.reg_last[reg] == EPOLLERR) != (events == EPOLLERR))
      W.reg_mixed[reg] = true;
    W.reg_epoch[reg] = W.epoch;
    W.reg_last[reg] = events;
  }
}

/* Kernel hook: the library closes a descriptor. Only the last reference,
 * after close, may do that (I12). */
static void on_library_close(int fd) {
  for (int i = W.rec_count - 1; i >= 0; i--) {
    rec *r = &W.recs[i];
    if (r->f == NULL || r->f->sysfd != fd) continue;
    uint64_t state = r->f->mu.state;
    if (!(state & 1) || ((state >> 3) & NP__MUTEX_REF_MAX) != 0)
      sim_fail("I12: fd %d closed while its mutex state is %#llx (not closed, or references held)", fd,
               (unsigned long long)state);
    return;
  }
}

/* Port hook (stores): a pending READY may be overwritten by a plain store
 * only when a pd is reopened (under its lock); anywhere else it is a lost
 * readiness notification. */
static void on_store(const void *addr, uint64_t old_value, uint64_t new_value) {
  if (old_value != NP__PD_READY || new_value != NP__PD_NIL) return;
  for (int i = 0; i < W.used_pd_count; i++) {
    np__pd *pd = W.used_pds[i];
    if (addr != &pd->rg && addr != &pd->wg) continue;
    if (pd->lock.owner != sim->current)
      sim_fail("I2: lost pdReady: a pending readiness on fd%d overwritten by a plain store", pd->fd);
    return;
  }
}

/* ---- the interpreter ------------------------------------------------------------------ */

/* A task sees the generation of each stream it last waited for (wait-gen)
 * or reopened itself; names do not follow reopens made by others. */
typedef struct task_view {
  int gen[SC_STREAMS_MAX];
} task_view;

static rec *bound(const task_view *view, int stream) {
  int g = view->gen[stream];
  if (g < 1 || g >= GEN_MAX) return NULL;
  int i = W.gen_rec[stream][g];
  return i < 0 ? NULL : &W.recs[i];
}

/* Per-action expectation of a scenario (the hand-written oracle). Every
 * result also goes to the outcome log (npsim outcome), which the
 * conformance test compares with the same scenario on real epoll. */
static void expect(const sc_action *a, int64_t v, bool read) {
  unsigned got = sc_classify(v, read);
  if (W.opts->outcome != NULL) {
    const scenario *sc = W.sc;
    int task = -1;
    for (int t = 0; t < sc->task_count; t++)
      if (a >= &sc->actions[sc->tasks[t].first] && a < &sc->actions[sc->tasks[t].first + sc->tasks[t].count])
        task = t;
    if (task >= 0)
      fprintf(W.opts->outcome, "%s %d %s %s\n", sc->tasks[task].name,
              (int)(a - &sc->actions[sc->tasks[task].first]), sc_op_name(a->op), sc_result_name(got));
  }
  if (!(a->expect & got))
    sim_fail("expectation: line %d: %s returned %s (%" PRId64 ")", a->line, sc_op_name(a->op),
             sc_result_name(got), v);
}

/* ---- library calls and handle lifetime ------------------------------------------------ */

/* A task may start a call on a handle only while nobody has begun to free
 * it (calls that start during or after np_free are undefined). While the
 * call runs, the task's actor field names the rec: np_free and destroy wait
 * until every such call has begun, that is until its task is or has been
 * blocked inside the library (every block comes after the call's first
 * touch of the handle; a task that was never blocked may not have touched
 * it yet). check() notes the blocks at every step. */
static bool enter(rec *r) {
  if (r == NULL || r->f == NULL || r->free_started) return false;
  sim->current->actor = r;
  W.began[sim->current->id] = false;
  return true;
}

static void leave(void) { sim->current->actor = NULL; }

static bool caller_runnable(const rec *r) {
  for (int i = 0; i < sim->task_count; i++) {
    const sim_task *t = sim->tasks[i];
    if (t != sim->current && t->actor != NULL && (r == NULL || t->actor == r) && t->state == SIM_RUNNABLE &&
        !W.began[t->id])
      return true;
  }
  return false;
}

static void wait_callers_inside(const rec *r, int line) {
  for (int i = 0; caller_runnable(r); i++) {
    if (i > 1000000) sim_fail("line %d: a call on the handle never blocked nor finished", line);
    sim_sleep(1);
  }
}

/* Heap hook: np__fd_release frees a handle; the world lets go of it. */
static void on_handle_free(struct np_fd *f) {
  for (int i = 0; i < W.rec_count; i++)
    if (W.recs[i].f == f) W.recs[i].f = NULL;
}

static void begin_op(void) {
  sim->current->op_start = sim->now;
  sim->current->op_step = sim->steps;
}

static rec *new_rec(sc_kind kind) {
  if (W.rec_count >= RECS_MAX) return NULL;
  /* Take the slot before any schedule point: tasks open streams concurrently. */
  rec *r = &W.recs[W.rec_count];
  memset(r, 0, sizeof(*r));
  r->id = W.rec_count++;
  r->kind = kind;
  r->peer_fd = -1;
  r->free_started = r->close_started = W.destroyed; /* destroy frees whatever opens meanwhile */
  return r;
}

/* Record a freshly registered handle: its pd and tag (the registration). */
static void adopt(rec *r, np_fd *f) {
  r->f = f;
  r->pd = f->pd;
  r->fdseq = r->pd->fdseq;
  r->tag = np__pd_tag(r->pd, r->fdseq);
  r->reg = W.used_reg[used_index(r->pd)];
}

static rec *open_stream(sc_kind kind, uint32_t cap) {
  rec *r = new_rec(kind);
  if (r == NULL) return NULL;
  int fds[2];
  int err;
  if (kind == SC_LISTEN) {
    fds[0] = kern_listen();
    fds[1] = -1;
    err = fds[0] < 0 ? fds[0] : 0;
    act("listen", fds[0], err);
  } else {
    err = kind == SC_SOCK ? kern_socketpair(fds, cap) : kern_pipe(fds, cap);
    act(kind == SC_SOCK ? "socketpair" : "pipe", err == 0 ? fds[0] : err, err == 0 ? fds[1] : err);
  }
  if (err != 0) return NULL; /* EMFILE: the generation exists but has no descriptor */
  r->fd = kind == SC_PIPE_OUT ? fds[1] : fds[0];
  r->peer_fd = kind == SC_PIPE_OUT ? fds[0] : fds[1];
  np_fd *f;
  err = (int)act("np_open", r->fd, np_open(W.p, r->fd, &f));
  if (err == NP_ECLOSING && W.destroyed) { /* refused after destroy: the descriptors stay ours */
    kern_close(r->fd);
    if (r->peer_fd >= 0) kern_close(r->peer_fd);
    r->peer_fd_closed = true;
    return NULL;
  }
  if (err != 0) sim_fail("np_open of a fresh descriptor: %s", np_strerror(err));
  /* Half the socket pairs stand in for TCP with the drained hint (np_listen
   * and np_dial turn it on natively; accepted connections inherit it): they
   * read as TCP does, and the handle is the library's own socket. */
  if (kind != SC_PIPE_IN && kind != SC_PIPE_OUT && sim_chance(500000)) {
    err = kern_stand_in_tcp(r->fd);
    if (err != 0) sim_fail("kern_stand_in_tcp: %s", np_strerror(err));
    np__fd_own_tcp(f);
  }
  adopt(r, f);
  return r;
}

static int64_t deadline_value(const sc_action *a) {
  int64_t v;
  switch (a->when) {
    case SC_DL_NONE: return 0;
    case SC_DL_NOW: v = sim->now; break;
    case SC_DL_PLUS: v = sim->now + a->n; break;
    case SC_DL_MINUS: v = sim->now - a->n; break;
    default: return INT64_MAX;
  }
  return v == 0 ? -1 : v; /* 0 would mean "none" */
}

/* The loops (read-all, write-all, produce, consume) need a direction the
 * stream's current generation has: on another kind every call fails
 * (EBADF, EINVAL) and the loop would report that as the library's fault.
 * It is the scenario's: an input error. */
static void check_kind(const sc_action *a, const rec *r) {
  if (r == NULL) return;
  bool in = r->kind == SC_PIPE_IN || r->kind == SC_SOCK, out = r->kind == SC_PIPE_OUT || r->kind == SC_SOCK;
  bool ok = a->op == SC_READ_ALL || a->op == SC_PRODUCE ? in : out;
  if (!ok)
    sim_fail(SIM_INPUT_ERROR "line %d: %s on a stream of kind %s", a->line, sc_op_name(a->op),
             r->kind == SC_PIPE_IN    ? "pipe-in"
             : r->kind == SC_PIPE_OUT ? "pipe-out"
                                      : "listen");
}

static void do_read_all(rec *r) {
  uint8_t buf[2048];
  for (int iter = 0; iter < 200000; iter++) {
    size_t want = 1 + sim_rand_below(sizeof(buf));
    if (!enter(r)) return;
    begin_op();
    ssize_t n = sim_chance(200000) ? np_readv(r->f, &(struct iovec){buf, want}, 1) : np_read(r->f, buf, want);
    leave();
    act("np_read", r->fd, n);
    check_expired(r, 'r', n, "np_read");
    if (n > 0) {
      if ((size_t)n > want) sim_fail("np_read returned more than asked");
      verify(r, r->id * 2, sim->current->io_offset, buf, (size_t)n, "reader");
      r->in_consumed += (uint64_t)n;
      continue;
    }
    if (n == 0 && !r->in_reset) {
      if (!r->in_peer_closed) sim_fail("I3: EOF on stream %d before the peer closed", r->id);
      if (sim->current->io_offset != r->in_produced)
        sim_fail("data: EOF on stream %d after %" PRIu64 " of %" PRIu64 " bytes", r->id,
                 sim->current->io_offset, r->in_produced);
      r->in_eof = true;
      return;
    }
    check_result(r, 'r', (int)n, "np_read");
    if (n == NP_ENOTPOLLABLE) {
      /* The error bit stays until another event clears it, and reads fail
       * without trying (as Go's): applications give up on such a stream. */
      r->in_not_pollable = true;
      return;
    }
    if (n == NP_ETIMEOUT) {
      sim_sleep((int64_t)sim_rand_below(3 * MS_NS));
      continue;
    }
    if (n == NP_ECLOSING) return;
    if ((n == -ECONNRESET || n == 0) && r->in_reset) return;
    /* A peer closing with our data unread resets the connection (af_unix). */
    if (n == -ECONNRESET && r->peer_fd_closed) return;
    sim_fail("np_read on stream %d: unexpected %s", r->id, np_strerror((int)n));
  }
  sim_fail("reader of stream %d never finished", r->id);
}

static void do_write_all(rec *r, uint64_t total) {
  uint8_t buf[4096];
  uint64_t target = r->out_written + total;
  for (int iter = 0; r->out_written < target; iter++) {
    if (iter > 200000) sim_fail("writer of stream %d never finished", r->id);
    uint64_t left = target - r->out_written;
    size_t chunk = 1 + sim_rand_below(left < sizeof(buf) ? left : sizeof(buf));
    fill(r->id * 2 + 1, r->out_written, buf, chunk);
    size_t written = SIZE_MAX;
    if (!enter(r)) return;
    begin_op();
    int err;
    if (++r->writers_active > 1) r->multi_writer = true;
    if (chunk > 2 && sim_chance(200000)) {
      struct iovec iov[3] = {{buf, 1}, {buf + 1, 0}, {buf + 1, chunk - 1}};
      err = np_writev(r->f, iov, 3, &written);
    } else {
      err = np_write(r->f, buf, chunk, &written);
    }
    leave();
    r->writers_active--;
    act("np_write", r->fd, err != 0 ? err : (int64_t)written);
    check_expired(r, 'w', err, "np_write");
    if (written > chunk) sim_fail("np_write reported %zu of %zu bytes written", written, chunk);
    r->out_written += written;
    if (err == 0) {
      if (written != chunk) sim_fail("np_write succeeded with %zu of %zu bytes", written, chunk);
      continue;
    }
    check_result(r, 'w', err, "np_write");
    if (err == NP_ETIMEOUT) {
      sim_sleep((int64_t)sim_rand_below(3 * MS_NS));
      continue;
    }
    if (err == NP_ECLOSING) return;
    /* EPIPE/ECONNRESET are expected once the stream was reset or its peer
     * closed (a scenario may close the peer while a writer runs). */
    if ((err == -ECONNRESET || err == -EPIPE) && (r->in_reset || r->peer_fd_closed)) return;
    sim_fail("np_write on stream %d: unexpected %s", r->id, np_strerror(err));
  }
}

static void do_produce(rec *r, uint64_t total, int64_t gap) {
  uint8_t buf[4096];
  uint64_t sent = 0;
  for (int iter = 0; sent < total; iter++) {
    if (iter > 400000) sim_fail("producer of stream %d never finished", r->id);
    sim_sleep(sim_chance(300000) || gap == 0 ? 0 : (int64_t)sim_rand_below((uint64_t)gap));
    if (r->peer_fd_closed) return; /* another task closed the peer end (its number may be reused) */
    size_t chunk = 1 + sim_rand_below(total - sent < sizeof(buf) ? total - sent : sizeof(buf));
    fill(r->id * 2, r->in_produced, buf, chunk);
    ssize_t n = (ssize_t)act("peer write", r->peer_fd, kern_write(r->peer_fd, buf, chunk));
    if (n > 0) {
      sent += (uint64_t)n;
      r->in_produced += (uint64_t)n;
    } else if (n == -EPIPE) {
      return; /* the library side was closed */
    } else if (n == -EAGAIN) {
      sim_sleep(1 + (int64_t)sim_rand_below((uint64_t)(gap > 0 ? gap : MS_NS))); /* full: let time pass */
    } else {
      sim_fail("producer of stream %d: write failed %zd", r->id, n);
    }
  }
}

static void do_consume(rec *r) {
  uint8_t buf[4096];
  for (int iter = 0; iter < 400000; iter++) {
    if (r->peer_fd_closed) return; /* another task closed the peer end (its number may be reused) */
    size_t want = 1 + sim_rand_below(sizeof(buf));
    ssize_t n = (ssize_t)act("peer read", r->peer_fd, kern_read(r->peer_fd, buf, want));
    if (n > 0) {
      if (!r->multi_writer) verify(r, r->id * 2 + 1, sim->current->io_offset, buf, (size_t)n, "peer reader");
      r->out_received += (uint64_t)n;
      continue;
    }
    if (n == 0) {
      r->out_eof = true;
      return;
    }
    if (n == -ECONNRESET) { /* the library closed with unread data queued (af_unix) */
      if (!r->close_started)
        sim_fail("peer reader of stream %d: reset while the library side is open", r->id);
      return;
    }
    if (n != -EAGAIN) sim_fail("peer reader of stream %d: read failed %zd", r->id, n);
    sim_sleep((int64_t)sim_rand_below(2 * MS_NS) + 1);
  }
  sim_fail("peer reader of stream %d never saw EOF", r->id);
}

/* ---- the interpreter: one function per action kind ------------------------------------ */

static void act_read(rec *r, const sc_action *a) {
  uint8_t buf[4096];
  if (!enter(r)) return expect(a, NP_ECLOSING, true);
  begin_op();
  size_t want = (size_t)(a->n < (int64_t)sizeof(buf) ? a->n : (int64_t)sizeof(buf));
  int64_t v = act("np_read", r->fd, np_read(r->f, buf, want));
  leave();
  if (want > 0) check_expired(r, 'r', v, "np_read");
  if (v > 0) {
    verify(r, r->id * 2, sim->current->io_offset, buf, (size_t)v, "reader");
    r->in_consumed += (uint64_t)v;
  } else if (v == 0 && want > 0 && !r->in_reset) {
    if (!r->in_peer_closed) sim_fail("I3: EOF on stream %d before the peer closed", r->id);
    if (sim->current->io_offset != r->in_produced) sim_fail("data: early EOF on stream %d", r->id);
  } else if (v < 0) {
    check_result(r, 'r', (int)v, "np_read");
  }
  expect(a, v, true);
}

static void act_write(rec *r, const sc_action *a) {
  if (!enter(r)) return expect(a, NP_ECLOSING, false);
  uint8_t data[SC_WRITE_MAX]; /* on the task's stack: a failed run frees nothing by hand */
  size_t len = (size_t)a->n, written = SIZE_MAX;
  if (len > sizeof(data)) sim_fail("line %d: write larger than %d bytes", a->line, SC_WRITE_MAX);
  fill(r->id * 2 + 1, r->out_written, data, len);
  begin_op();
  if (++r->writers_active > 1) r->multi_writer = true;
  int64_t v = act("np_write", r->fd, np_write(r->f, data, len, &written));
  leave();
  r->writers_active--;
  if (len > 0) check_expired(r, 'w', v, "np_write");
  if (written > len) sim_fail("np_write reported %zu of %zu bytes", written, len);
  if (v == 0 && written != len) sim_fail("np_write succeeded with %zu of %zu bytes", written, len);
  r->out_written += written;
  if (v < 0) check_result(r, 'w', (int)v, "np_write");
  expect(a, v, false);
}

static void act_wait(rec *r, const sc_action *a) {
  if (!enter(r)) return expect(a, NP_ECLOSING, false);
  int mode = a->op == SC_WAIT_READ ? 'r' : 'w';
  begin_op();
  sim->current->pure_wait = true;
  int64_t v = act(mode == 'r' ? "np_wait_read" : "np_wait_write", r->fd,
                  mode == 'r' ? np_wait_read(r->f) : np_wait_write(r->f));
  sim->current->pure_wait = false;
  leave();
  check_expired(r, mode, v, "np_wait");
  if (v < 0) check_result(r, mode, (int)v, "np_wait");
  expect(a, v, false);
}

static void act_peer_write(rec *r, const sc_action *a) {
  uint8_t buf[4096];
  if (r == NULL) return expect(a, -EPIPE, false);
  if (r->peer_fd_closed) return expect(a, -EBADF, false);
  size_t len = (size_t)(a->n < (int64_t)sizeof(buf) ? a->n : (int64_t)sizeof(buf));
  fill(r->id * 2, r->in_produced, buf, len);
  int64_t v = act("peer write", r->peer_fd, kern_write(r->peer_fd, buf, len));
  if (v > 0) r->in_produced += (uint64_t)v;
  expect(a, v, false);
}

static void act_peer_end(rec *r, const sc_action *a) {
  if (r == NULL) return;
  if (a->op == SC_PEER_RESET) {
    if (r->close_started || r->kind != SC_SOCK) return;
    r->in_reset = true;
    act("peer reset", r->fd, kern_inject_reset(r->fd));
    return;
  }
  if (a->op == SC_PEER_CLOSE) r->in_peer_closed = true;
  if (r->peer_fd_closed) return expect(a, -EBADF, false);
  r->in_peer_closed = true;
  int64_t v;
  if (a->op == SC_PEER_CLOSE) {
    r->peer_fd_closed = true;
    v = act("peer close", r->peer_fd, kern_close(r->peer_fd));
  } else {
    v = act("peer shutdown", r->peer_fd, kern_shutdown_write(r->peer_fd));
  }
  expect(a, v, false);
}

static void act_deadline(rec *r, const sc_action *a) {
  if (!enter(r)) return expect(a, NP_ECLOSING, false);
  int which = a->mode == 'r' ? 0 : a->mode == 'w' ? 1 : 2;
  int64_t v = set_deadline_recorded(r, which, deadline_value(a));
  leave();
  if (v == NP_ECLOSING && !r->close_started) sim_fail("I12: set deadline refused before close");
  if (v != 0 && v != NP_ECLOSING) sim_fail("set deadline: %s", np_strerror((int)v));
  expect(a, v, false);
}

static void act_close(rec *r, const sc_action *a) {
  uint8_t buf[1];
  if (!enter(r)) return expect(a, NP_ECLOSING, false);
  r->close_started = true;
  int64_t v = act("np_close", r->fd, np_close(r->f));
  leave();
  if (v != 0 && v != NP_ECLOSING) sim_fail("np_close: %s", np_strerror((int)v));
  if (v == 0 && enter(r)) {
    if (np_read(r->f, buf, 1) != NP_ECLOSING) sim_fail("I12: read after close not refused");
    leave();
  }
  expect(a, v, false);
}

/* np_free: legal while other tasks are blocked or queued inside calls on the
 * handle (they must all have left before it returns), never concurrently
 * with a call that starts. */
static void act_free(rec *r, const sc_action *a) {
  if (r == NULL || r->f == NULL || r->free_started) return expect(a, NP_ECLOSING, false);
  r->free_started = true;
  r->close_started = true;
  wait_callers_inside(r, a->line);
  np_fd *f = r->f;
  act("np_free", r->fd, 0);
  W.frees_active++;
  np_free(f);
  W.frees_active--;
  if (r->f != NULL) sim_fail("np_free returned without freeing the handle of stream %d", r->id);
  expect(a, 0, false);
}

/* np_poller_destroy's handle half (np__fd_free_all): the poller itself
 * stays up until the run ends, np_open is refused from now on. */
static void act_destroy(const sc_action *a) {
  if (W.destroyed) return expect(a, NP_ECLOSING, false);
  W.destroyed = true;
  for (int i = 0; i < W.rec_count; i++) W.recs[i].free_started = W.recs[i].close_started = true;
  act("np_poller_destroy", -1, 0);
  np__store_u32(&W.p->shutdown, 1);          /* as np_poller_destroy: np_open refuses from now on */
  for (int i = 0; W.frees_active > 0; i++) { /* destroy and np_free must not overlap */
    if (i > 1000000) sim_fail("line %d: np_free never returned", a->line);
    sim_sleep(1);
  }
  wait_callers_inside(NULL, a->line);
  np__fd_free_all(W.p);
  for (int i = 0; i < W.rec_count; i++)
    if (W.recs[i].f != NULL) sim_fail("destroy left the handle of stream %d allocated", i);
  if (W.p->fds != NULL) sim_fail("destroy left a handle on the poller's list");
  expect(a, 0, false);
}

static void act_reopen(task_view *view, const sc_action *a) {
  /* The kernel hands out the lowest free numbers and the cache the last
   * freed pd: the new generation very likely reuses both (ABA). */
  if (W.gen[a->stream] + 1 >= GEN_MAX) sim_fail("line %d: too many generations of a stream", a->line);
  rec *nr = open_stream(a->kind, a->cap);
  int g = ++W.gen[a->stream];
  W.gen_rec[a->stream][g] = nr == NULL ? -1 : nr->id;
  view->gen[a->stream] = g;
}

static void act_wait_gen(task_view *view, const sc_action *a) {
  /* After destroy a generation may never come (accept and np_open are
   * refused): act on it as on a freed one. */
  for (int i = 0; W.gen[a->stream] < a->n && !W.destroyed; i++) {
    if (i > 1000000) sim_fail("line %d: wait-gen never satisfied", a->line);
    sim_sleep(100000);
  }
  view->gen[a->stream] = (int)a->n;
}

/* One connection attempt: 1 accepted, 0 aborted before accept (make it
 * again), or a negative result for the action. */
static int connect_once(rec *r, const sc_action *a, int slot) {
  int c = (int)act("peer connect", r->fd, kern_connect(r->fd, 4096));
  if (c < 0) return c;
  W.conns[slot].in_use = true;
  W.conns[slot].client_fd = c;
  W.conns[slot].accepted = false;
  bool aborted = false;
  for (int j = 0; !W.conns[slot].accepted && !W.destroyed; j++) {
    if (j > 100000) sim_fail("line %d: connection not accepted within 10 s", a->line);
    if (kern_connect_state(c) < 0) { /* not accepted, so still ours: reset before accept */
      aborted = true;
      break;
    }
    sim_sleep(100000);
  }
  W.conns[slot].in_use = false;
  act(aborted ? "peer connect aborted" : "peer connected", c, !aborted);
  if (!aborted) return 1;
  kern_close(c);
  return 0;
}

static void act_connect(rec *r, const sc_action *a) {
  /* The peer connects and waits until its connection is accepted; a
   * connection aborted before accept (a fault) is made again. Only the
   * acceptor learns which connection it got, so it marks it: the client fd
   * may be closed by its new owner before we look again. */
  if (r == NULL || r->f == NULL || r->close_started) return expect(a, -ECONNREFUSED, false);
  int slot = -1;
  for (int i = 0; i < 32 && slot < 0; i++)
    if (!W.conns[i].in_use) slot = i;
  if (slot < 0) sim_fail("too many connections in flight");
  for (int i = 0;; i++) {
    if (i > 100000) sim_fail("line %d: connect never accepted", a->line);
    int rc = connect_once(r, a, slot);
    if (rc == -EAGAIN) { /* backlog full */
      sim_sleep(100000);
      continue;
    }
    if (rc < 0) return expect(a, rc, false);
    if (rc == 1) return expect(a, 0, false);
    if (r->close_started) return expect(a, -ECONNREFUSED, false);
  }
}

/* The accepted handle becomes the next generation of the accepted stream.
 * No schedule point in here: a destroy cannot free nf half way. */
static void adopt_accepted(task_view *view, const sc_action *a, np_fd *nf) {
  if (W.gen[a->stream2] + 1 >= GEN_MAX) sim_fail("line %d: too many generations of a stream", a->line);
  int g = ++W.gen[a->stream2];
  view->gen[a->stream2] = g;
  W.gen_rec[a->stream2][g] = -1;
  if (W.destroyed) return; /* destroy frees (or has freed) it: never touch it */
  rec *nr = new_rec(SC_SOCK);
  if (nr == NULL) sim_fail("too many streams");
  nr->fd = nf->sysfd;
  nr->peer_fd = kern_peer_of(nr->fd);
  for (int i = 0; i < 32; i++)
    if (W.conns[i].in_use && W.conns[i].client_fd == nr->peer_fd) W.conns[i].accepted = true;
  adopt(nr, nf);
  W.gen_rec[a->stream2][g] = nr->id;
}

static void act_accept(task_view *view, rec *r, const sc_action *a) {
  np_fd *nf = NULL;
  int64_t v = NP_ECLOSING;
  begin_op();
  for (int i = 0; enter(r); i++) {
    v = act("np_accept", r->fd, np_accept(r->f, &nf, NULL, NULL));
    leave();
    if (v != -EMFILE) break;
    if (i > 10000) sim_fail("line %d: accept keeps failing with EMFILE", a->line);
    sim_sleep(MS_NS); /* as servers do: pause, then accept again */
  }
  if (v == -ECONNABORTED) sim_fail("accept returned ECONNABORTED: it must be retried inside np_accept");
  if (v == 0)
    adopt_accepted(view, a, nf);
  else if (r != NULL)
    check_result(r, 'r', (int)v, "np_accept");
  expect(a, v, false);
}

static void act_inject(rec *r, const sc_action *a) {
  if (r == NULL || r->f == NULL) return;
  act(a->mode == 'e' ? "inject err-only" : "inject ready", r->fd, kern_inject_event(r->fd, a->mode == 'e'));
}

static void act_poll(void) {
  int v = np__poll_once(W.p, false);
  if (v < 0) sim_fail("non-blocking netpoll failed: %s", np_strerror(v));
}

static void run_action(task_view *view, const sc_action *a) {
  rec *r = a->stream >= 0 ? bound(view, a->stream) : NULL;
  switch (a->op) {
    case SC_SLEEP: return sim_sleep(a->n);
    case SC_READ: return act_read(r, a);
    case SC_READ_ALL:
      check_kind(a, r);
      if (r != NULL && r->f != NULL) do_read_all(r);
      return;
    case SC_WRITE: return act_write(r, a);
    case SC_WRITE_ALL:
      check_kind(a, r);
      if (r != NULL && r->f != NULL) do_write_all(r, (uint64_t)a->n);
      return;
    case SC_WAIT_READ:
    case SC_WAIT_WRITE: return act_wait(r, a);
    case SC_PRODUCE:
      check_kind(a, r);
      if (r != NULL && !r->peer_fd_closed) do_produce(r, (uint64_t)a->n, a->gap);
      return;
    case SC_CONSUME:
      check_kind(a, r);
      if (r != NULL && !r->peer_fd_closed) do_consume(r);
      return;
    case SC_PEER_WRITE: return act_peer_write(r, a);
    case SC_PEER_CLOSE:
    case SC_PEER_SHUTDOWN:
    case SC_PEER_RESET: return act_peer_end(r, a);
    case SC_DEADLINE: return act_deadline(r, a);
    case SC_CLOSE: return act_close(r, a);
    case SC_FREE: return act_free(r, a);
    case SC_DESTROY: return act_destroy(a);
    case SC_REOPEN: return act_reopen(view, a);
    case SC_WAIT_GEN: return act_wait_gen(view, a);
    case SC_JOIN: return sim_join(W.runners[a->task]);
    case SC_BREAK: return np__netpoll_break(W.p);
    case SC_POLL: return act_poll();
    case SC_CONNECT: return act_connect(r, a);
    case SC_ACCEPT: return act_accept(view, r, a);
    case SC_INJECT: return act_inject(r, a);
    default: sim_fail("line %d: action not implemented", a->line);
  }
}

static void task_main(void *arg) {
  const sc_task *t = arg;
  const scenario *sc = W.sc;
  task_view view;
  for (int s = 0; s < SC_STREAMS_MAX; s++) view.gen[s] = 1;
  if (t->start > 0) sim_sleep(t->start);
  for (int i = t->first; i < t->first + t->count; i++) run_action(&view, &sc->actions[i]);
}

static void faults_main(void *arg) {
  (void)arg;
  sim_sleep(W.fault_horizon);
  kern_faults_get()->active = false;
}

static void poller_main(void *arg) {
  (void)arg;
  while (!W.stop) {
    int n = np__poll_once(W.p, true);
    if (n < 0) sim_fail("netpoll failed: %s", np_strerror(n));
  }
}

static void main_task(void *arg) {
  (void)arg;
  const scenario *sc = W.sc;
  W.p = calloc(1, sizeof(*W.p));
  if (W.p == NULL) sim_fail("out of memory");
  int err = np__poller_init(W.p, &sim_backend, W.events_max);
  if (err != 0) sim_fail("poller init: %s", np_strerror(err));
  W.poller_task = sim_spawn("poller", poller_main, NULL);
  if (sc->faults.active && !W.opts->no_faults) {
    *kern_faults_get() = sc->faults;
    kern_faults_get()->active = true;
    W.fault_horizon = sc->fault_horizon;
    sim_spawn("faults", faults_main, NULL);
  }
  for (int s = 0; s < sc->stream_count; s++) {
    for (int g = 0; g < GEN_MAX; g++) W.gen_rec[s][g] = -1;
    if (sc->streams[s].kind == SC_ACCEPTED) { /* generations come from accept */
      W.gen[s] = 0;
      continue;
    }
    rec *r = open_stream(sc->streams[s].kind, sc->streams[s].cap);
    W.gen_rec[s][1] = r == NULL ? -1 : r->id;
    W.gen[s] = 1;
  }
  for (int t = 0; t < sc->task_count; t++)
    W.runners[t] = sim_spawn(sc->tasks[t].name, task_main, (void *)&sc->tasks[t]);
  for (int t = 0; t < sc->task_count; t++) sim_join(W.runners[t]);
  W.stop = true;
  np__netpoll_break(W.p);
  sim_join(W.poller_task);

  for (int i = 0; i < W.rec_count; i++) {
    rec *r = &W.recs[i];
    if (r->f == NULL) continue;
    if (r->kind != SC_PIPE_IN && r->out_eof && r->out_received != r->out_written && !r->in_reset)
      sim_fail("data: stream %d: library wrote %" PRIu64 " bytes, peer received %" PRIu64, r->id,
               r->out_written, r->out_received);
    if (r->in_consumed > r->in_produced) sim_fail("data: stream %d: read more than was sent", r->id);
    np_free(r->f);
    r->f = NULL;
  }
  if (W.p->waiters != 0) sim_fail("I11: %u waiters counted parked at shutdown", W.p->waiters);
  np__poller_fini(W.p);
  free(W.p);
  W.p = NULL;
}

/* ---- invariant checks -------------------------------------------------------------- */

static sim_task *task_of_waiter(uintptr_t v) {
  for (int i = 0; i < sim->task_count; i++)
    if ((uintptr_t)sim->tasks[i]->waiter == v) return sim->tasks[i];
  return NULL;
}

static void check_sem(np__pd *pd, uintptr_t v, int mode) {
  if (v <= NP__PD_WAIT) {
    if (!pd->in_use && v == NP__PD_WAIT) sim_fail("I4: free pd has a waiter preparing (%c)", mode);
    return;
  }
  sim_task *t = task_of_waiter(v);
  if (t == NULL) sim_fail("I1: %cg of a pd holds %#lx, not a parked waiter", mode, (unsigned long)v);
  np__waiter *w = t->waiter;
  if (w->pd != pd || w->mode != mode || t->state != SIM_PARKED)
    sim_fail("I1: %cg holds the waiter of %s, parked on another pd or mode", mode, t->name);
  if (!pd->in_use) sim_fail("I4: pd freed while %s is parked on it", t->name);
  if (pd->lock.owner == NULL) {
    if (pd->closing) sim_fail("I7: %s still parked on a closed pd (close unblock done)", t->name);
    if ((mode == 'r' ? pd->rd : pd->wd) < 0)
      sim_fail("I3: %s still parked (%c) after its deadline expired", t->name, mode);
  }
}

/* I6 / I10 as state: with the pd unlocked, a pending READY or the event
 * error bit must come from an event fetched for the pd's current
 * registration (tag = pd + fdseq). An event for a closed fd whose pd was
 * reused carries the old tag and must leave the new owner alone. */
static void check_pd_events(np__pd *pd) {
  if (!pd->in_use || pd->lock.owner != NULL) return;
  if (((pd->info >> NP__INFO_SEQ_SHIFT) & NP__FDSEQ_MASK) != pd->fdseq)
    sim_fail("I6: pd fd%d info carries fdseq %u, pd has %u", pd->fd,
             (pd->info >> NP__INFO_SEQ_SHIFT) & NP__FDSEQ_MASK, pd->fdseq);
  bool err = (pd->info & NP__INFO_EVENT_ERR) != 0;
  if (pd->rg != NP__PD_READY && pd->wg != NP__PD_READY && !err)
    return; /* nothing to justify: the common case */
  unsigned seen = reg_seen(W.used_reg[used_index(pd)]);
  if (pd->rg == NP__PD_READY && !(seen & EV_R))
    sim_fail("I6: pd fd%d has a pending read readiness but no event of its registration", pd->fd);
  if (pd->wg == NP__PD_READY && !(seen & EV_W))
    sim_fail("I6: pd fd%d has a pending write readiness but no event of its registration", pd->fd);
  if (err && !(seen & EV_ERR_ONLY))
    sim_fail("I10: pd fd%d has the event error bit but its registration saw no EPOLLERR-only event", pd->fd);
}

/* I10 both ways, at quiescence (no task is half way through a batch of
 * events, so every event fetched has been processed): the event error bit
 * of an open pd is set exactly when the last event fetched for its
 * registration was EPOLLERR alone, unless events that disagree were fetched
 * since the previous quiescence (concurrent pollers). A missing bit means a
 * reader would wait instead of getting NP_ENOTPOLLABLE; a stale one fails a
 * healthy stream. */
static void check_err_bit(const np__pd *pd, uint32_t reg) {
  if (!pd->in_use || pd->closing || pd->lock.owner != NULL || reg == 0 || reg >= REG_MAX) return;
  uint32_t last = W.reg_last[reg];
  bool bit = (pd->info & NP__INFO_EVENT_ERR) != 0;
  if (last == 0 || W.reg_mixed[reg] || bit == (last == EPOLLERR)) return;
  sim_fail("I10: pd fd%d: event error bit %s although the last event of its registration was %#x", pd->fd,
           bit ? "set" : "clear", last);
}

/* I14, positive space, at quiescence (every event fetched has been
 * processed): an event that wakes a mode (sim/oracle.h), fetched for the
 * pd's registration after a waiter of that mode committed its park, must
 * have woken it. Unlike I8 this needs no readiness left in the kernel, and
 * holds for np_wait_* too. A closing pd is I7's. */
static void check_woken(const sim_task *t, const np__waiter *w, const np__pd *pd) {
  if (pd->closing || pd->lock.owner != NULL) return;
  uint32_t reg = W.used_reg[used_index(pd)];
  if (reg == 0 || reg >= REG_MAX) return;
  int mi = w->mode == 'r' ? 0 : 1;
  if (W.wakes[reg][mi].last_step > t->park_step)
    sim_fail(
        "I14: %s still parked (%c) on fd%d although an event %#x that wakes %s was fetched after it parked",
        t->name, w->mode, pd->fd, W.wakes[reg][mi].last_mask, mi == 0 ? "readers" : "writers");
}

/* I15, at every step: a waiter parks only if no readiness was published
 * in its mode since the descriptor's last syscall in that mode -- its own
 * that said EAGAIN, or with the drained hint the read (maybe another
 * task's: the hint belongs to the handle) that left nothing. The wait must
 * have consumed such readiness and tried again. Readiness thrown away in
 * between (a reset, another caller's wait) is a lost wake-up, even when
 * later data would have hidden it. np_wait_* are exempt (I8's rule). */
static void check_parked_since_io(const sim_task *t) {
  const np__waiter *w = t->waiter;
  if (t->pure_wait || w == NULL) return;
  const np__pd *pd = w->pd;
  int mi = w->mode == 'r' ? 0 : 1;
  uint64_t seen = W.ready_seen[used_index(pd)][mi], io = kern_last_io_step(pd->fd, w->mode);
  if (seen <= io || seen > t->park_step) return;
  sim_fail("I15: %s parked (%c) on fd%d at step %" PRIu64
           ", although readiness was published at step %" PRIu64
           " after the descriptor's last syscall in that mode (step %" PRIu64 ")",
           t->name, w->mode, pd->fd, t->park_step, seen, io);
}

/* Every step: note READY states; check each park once, the step after it. */
static void note_ready(void) {
  for (int i = 0; i < W.used_pd_count; i++) {
    if (W.used_pds[i]->rg == NP__PD_READY) W.ready_seen[i][0] = sim->steps;
    if (W.used_pds[i]->wg == NP__PD_READY) W.ready_seen[i][1] = sim->steps;
  }
  for (int i = 0; i < sim->task_count; i++) {
    const sim_task *t = sim->tasks[i];
    if (t->state != SIM_PARKED || t->actor == NULL || t->id < 0 || t->id > SIM_TASKS_MAX) continue;
    if (W.park_checked[t->id] == t->park_step) continue;
    W.park_checked[t->id] = t->park_step;
    check_parked_since_io(t);
  }
}

static void check(void *ctx, bool quiescent) {
  (void)ctx;
  np_poller *p = W.p;
  if (p == NULL) return;
  note_ready();
  for (int i = 0; i < sim->task_count; i++) {
    const sim_task *t = sim->tasks[i];
    if (t->actor != NULL && t->state != SIM_RUNNABLE && t->id >= 0 && t->id <= SIM_TASKS_MAX)
      W.began[t->id] = true;
  }
  /* A pd that never had an owner is never touched (no tag of it exists). */
  for (int i = 0; i < W.used_pd_count; i++) {
    np__pd *pd = W.used_pds[i];
    check_sem(pd, pd->rg, 'r');
    check_sem(pd, pd->wg, 'w');
    check_pd_events(pd);
  }
  if (!quiescent) return;
  /* Quiescence: every task is blocked; the clock is about to jump. */
  for (int i = 0; i < W.used_pd_count; i++) check_err_bit(W.used_pds[i], W.used_reg[i]);
  W.epoch++;
  uint32_t parked = 0;
  for (int i = 0; i < sim->task_count; i++) {
    sim_task *t = sim->tasks[i];
    if (t->state != SIM_PARKED) continue;
    parked++;
    np__waiter *w = t->waiter;
    np__pd *pd = (np__pd *)w->pd;
    uintptr_t installed = w->mode == 'r' ? pd->rg : pd->wg;
    if (installed != (uintptr_t)w)
      sim_fail("I2: %s parked but no longer installed: a wake-up was lost", t->name);
    check_woken(t, w, pd);
    rec *r = rec_of_pd(pd);
    if (r == NULL) continue;
    uint32_t mask = kern_poll_mask(r->fd);
    /* Lost wake-up: ready, no event on its way, and the waiter got here from
     * a syscall that said EAGAIN (a pure np_wait_* may have consumed the
     * edge itself earlier: edge-triggered, it legitimately waits for the
     * next one). */
    if (!t->pure_wait && oracle_wakes(mask, w->mode) && !kern_item_queued(r->fd) &&
        kern_epoll_waiter(&(int64_t){0}) != NULL)
      sim_fail(
          "I8: %s parked (%c) on stream %d (fd %d, kind %d) although it is ready (mask %#x) and no event is "
          "pending",
          t->name, w->mode, r->id, r->fd, (int)r->kind, mask);
  }
  if (p->waiters != parked) sim_fail("I11: waiter count %u but %u waiters parked", p->waiters, parked);
  int64_t wake_at, due = sim_earliest_timer(p); /* also checks the heap's shape */
  if (kern_epoll_waiter(&wake_at) != NULL && p->heap_len > 0) {
    /* The poller must not sleep past a due timer (by more than the
     * millisecond rounding of epoll_wait); due is the scan's, not heap[0]. */
    int64_t sleep_end = wake_at < 0 ? INT64_MAX : wake_at;
    if (due - sim->now <= KERN_WAIT_HORIZON_NS && sleep_end > due + MS_NS)
      sim_fail("I8: poller sleeps until %" PRId64 " past a timer due at %" PRId64, sleep_end, due);
  }
}

/* ---- trace formatting ------------------------------------------------------------------ */

static const char *describe(const void *addr, char *buf, size_t len, int *sem_mode) {
  *sem_mode = 0;
  if (addr == NULL) return "-";
  np_poller *p = W.p;
  if (p != NULL) {
    int index = 0;
    for (np__pd_block *b = p->blocks; b != NULL; b = b->next, index += NP__PD_BLOCK_COUNT) {
      const char *lo = (const char *)b->pds, *hi = (const char *)(b->pds + NP__PD_BLOCK_COUNT);
      if ((const char *)addr < lo || (const char *)addr >= hi) continue;
      size_t off = (size_t)((const char *)addr - lo);
      int i = (int)(off / sizeof(np__pd));
      const np__pd *pd = &b->pds[i];
      const char *field = "";
      if (addr == &pd->rg)
        field = ".rg", *sem_mode = 'r';
      else if (addr == &pd->wg)
        field = ".wg", *sem_mode = 'w';
      else if (addr == &pd->info)
        field = ".info";
      else if (addr == &pd->lock)
        field = ".lock";
      snprintf(buf, len, "pd%d%s(fd%d)", index + i, field, pd->fd);
      return buf;
    }
    if (addr == &p->waiters) return "poller.waiters";
    if (addr == &p->wake_sig) return "poller.wake_sig";
    if (addr == &p->timer_lock) return "poller.timer_lock";
    if (addr == &p->cache_lock) return "poller.cache_lock";
    if (addr == &p->fds_lock) return "poller.fds_lock";
  }
  for (int i = 0; i < W.rec_count; i++) {
    const rec *r = &W.recs[i];
    if (r->f == NULL) continue;
    if (addr == &r->f->mu.state) return snprintf(buf, len, "fd%d.mu", r->fd), buf;
    if ((const void *)addr == &r->f->csema) return snprintf(buf, len, "fd%d.csema", r->fd), buf;
    if ((const void *)addr == &r->f->mu.rsema || (const void *)addr == &r->f->mu.wsema)
      return snprintf(buf, len, "fd%d.sema", r->fd), buf;
  }
  snprintf(buf, len, "obj");
  return buf;
}

static const char *sem_value(uint64_t v, char *buf, size_t len) {
  if (v == NP__PD_NIL) return "nil";
  if (v == NP__PD_READY) return "ready";
  if (v == NP__PD_WAIT) return "wait";
  for (int i = 0; i < sim->task_count; i++) {
    sim_task *t = sim->tasks[i];
    if ((uintptr_t)v >= (uintptr_t)t->stack && (uintptr_t)v < (uintptr_t)t->stack + t->stack_size)
      return snprintf(buf, len, "waiter(%s)", t->name), buf;
  }
  return "?";
}

static void format(void *ctx, const sim_trace_entry *e, char *buf, size_t len) {
  (void)ctx;
  const char *task = e->task == 0 ? "sched" : sim->tasks[e->task - 1]->name;
  char obj[64], a[48], b[48];
  int sem_mode;
  const char *what;
  if (e->op == SIM_OP_SYSCALL) {
    snprintf(buf, len, "%10.6fms %8" PRIu64 " %-10s syscall %s(fd %" PRId64 ")", (double)e->time / 1e6,
             e->step, task, (const char *)e->addr, (int64_t)e->old_value);
    return;
  }
  if (e->op == SIM_OP_ACTOR) {
    snprintf(buf, len, "%10.6fms %8" PRIu64 " %-10s %s(fd %" PRId64 ") = %" PRId64, (double)e->time / 1e6,
             e->step, task, (const char *)e->addr, (int64_t)e->old_value, (int64_t)e->new_value);
    return;
  }
  if (e->op == SIM_OP_WAIT_RESULT) {
    static const char *const res[] = {"ready", "closing", "timeout", "not-pollable"};
    what = describe(e->addr, obj, sizeof(obj), &sem_mode);
    snprintf(buf, len, "%10.6fms %8" PRIu64 " %-10s wait(%c) on %s -> %s", (double)e->time / 1e6, e->step,
             task, (int)e->old_value, what, e->new_value < 4 ? res[e->new_value] : "?");
    return;
  }
  what = describe(e->addr, obj, sizeof(obj), &sem_mode);
  const char *old_s, *new_s;
  if (sem_mode) {
    old_s = sem_value(e->old_value, a, sizeof(a));
    new_s = sem_value(e->new_value, b, sizeof(b));
  } else {
    snprintf(a, sizeof(a), "%#" PRIx64, e->old_value);
    snprintf(b, sizeof(b), "%#" PRIx64, e->new_value);
    old_s = a;
    new_s = b;
  }
  snprintf(buf, len, "%10.6fms %8" PRIu64 " %-10s %-8s %-22s %s -> %s", (double)e->time / 1e6, e->step, task,
           sim_op_name((sim_op)e->op), what, old_s, new_s);
}

/* ---- one run ------------------------------------------------------------------------------- */

/* A failed run stops its tasks where they are: the core's state is half
 * way and cannot be torn down through the API. Free its memory directly so
 * that shrinking and fuzzing (thousands of failing runs) leak nothing. */
static void reclaim_after_failure(void) {
  for (int i = 0; i < W.rec_count; i++) W.recs[i].f = NULL; /* sim_heap_reset unmaps them */
  if (W.p != NULL) {
    np__pd_block *b = W.p->blocks;
    while (b != NULL) {
      np__pd_block *next = b->next;
      free(b);
      b = next;
    }
    free(W.p->heap);
    free(W.p);
    W.p = NULL;
  }
}

int world_run(const world_options *opts, world_result *result) {
  static sim_sched s;
  const scenario *sc = opts->sc;
  sim_config cfg = {
      .seed = opts->seed,
      .strategy = sc->strategy ? SIM_PCT : SIM_RANDOM,
      .pct_depth = sc->depth,
      .step_limit = opts->step_limit,
      .check_every_step = opts->check_every_step,
      .trace_out = opts->trace_out,
      .choices = opts->choices,
      .choices_len = opts->choices_len,
      .allow_stuck = opts->allow_stuck,
      .pct_steps = opts->pct_steps,
  };
  sim_init(&s, &cfg);
  if (sc->quantum > 0) s.quantum = sc->quantum;
  if (sc->stickiness >= 0) s.stickiness = (uint32_t)sc->stickiness;
  sim_max_rw = sc->max_rw > 0 ? (size_t)sc->max_rw : (size_t)1 << 30;
  kern_reset();
  kern_set_event_hook(on_event, NULL);
  kern_set_reg_hooks(on_register, on_library_close);
  sim_on_store = on_store;
  sim_heap_reset();
  sim_on_handle_free = on_handle_free;
  memset(&W, 0, sizeof(W));
  W.opts = opts;
  W.sc = sc;
  W.events_max = sc->events_max > 0 ? sc->events_max : 1 + (int)sim_rand_below(8);
  sim_spawn("main", main_task, NULL);
  int rc = sim_run(&s, check, format, NULL);
  bool stuck = rc == 1;
  if (stuck) rc = 0; /* allowed: legitimately waiting forever */

  memset(result, 0, sizeof(*result));
  result->failed = rc != 0;
  snprintf(result->failure, sizeof(result->failure), "%s", s.failure);
  result->steps = s.steps;
  result->switches = s.switches;
  result->trace_hash = s.trace_hash;
  result->virtual_ns = s.now;
  result->faults = kern_stats_get()->faults;
  result->events = kern_stats_get()->events;
  result->tasks = s.task_count;
  if (rc != 0 && opts->report != NULL) {
    fprintf(opts->report, "FAIL %s seed=%" PRIu64 " strategy=%s: %s\n", sc->name, opts->seed,
            sc->strategy ? "pct" : "random", s.failure);
    if (opts->trace_tail > 0) {
      fprintf(opts->report, "--- last %d trace lines ---\n", opts->trace_tail);
      sim_trace_print(opts->report, (uint64_t)opts->trace_tail);
    }
  }
  if (rc != 0 || stuck) reclaim_after_failure();
  sim_on_handle_free = NULL;
  sim_heap_reset();
  result->stuck = stuck;
  sim_fini(&s);
  kern_reset();
  return rc;
}
