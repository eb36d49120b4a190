/*
 * target_events.c - a stream of epoll_wait results fed to the real poller
 * loop (np__netpoll) through a scripted backend, interleaved with consume,
 * close-and-reuse, deadline and break operations, all decoded from the
 * input. One task, no races: a model says exactly what every pd's rg, wg,
 * event-error bit and the break state must be after each step.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "harness.h"
#include "np_internal.h"
#include "sched.h"

#define SLOTS 3
#define OLD_TAGS 8
#define LOG_MAX 128

typedef struct slot {
  np_fd *f;
  uint64_t tag;
  bool rready, wready, err, rexp, wexp; /* the model */
} slot;

static struct {
  const uint8_t *p;
  size_t n, pos;
  np_poller *poller;
  slot slots[SLOTS];
  uint64_t old_tags[OLD_TAGS];
  int old_count;
  int next_fd;
  uint64_t eventfd; /* the break's counter, as the kernel would hold it */
  bool wake_sig;    /* the model of p->wake_sig */
  struct {
    uint64_t tag;
    uint32_t events;
  } log[LOG_MAX];
  int log_len;
  int64_t delay;
  uint64_t digest;
} E;

static unsigned take(void) { return E.pos < E.n ? E.p[E.pos++] : 0; }

static void mix(uint64_t v) { E.digest = (E.digest ^ v) * 1099511628211ull; }

/* ---- scripted backend -------------------------------------------------- */

static int fb_create(void **state) {
  *state = &E;
  return 0;
}
static void fb_destroy(void *state) { (void)state; }
static int fb_open(void *state, int fd, uint64_t tag) {
  (void)state, (void)fd, (void)tag;
  return 0;
}
static int fb_close(void *state, int fd) {
  (void)state, (void)fd;
  return 0;
}

static uint32_t decode_mask(unsigned m) {
  static const uint32_t bits[] = {EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP};
  uint32_t mask = 0;
  for (int i = 0; i < 5; i++)
    if (m & (1u << i)) mask |= bits[i];
  return mask != 0 ? mask : EPOLLIN;
}

static int fb_wait(void *state, np__event *events, int events_max, int64_t delay_ns) {
  (void)state;
  E.delay = delay_ns;
  unsigned b = take();
  if (b % 16 == 15) return -EINTR;
  int n = (int)(b / 16) % (events_max + 1);
  for (int i = 0; i < n; i++) {
    unsigned k = take();
    uint64_t tag;
    uint32_t mask = decode_mask(take());
    switch (k % 8) {
      case 5: /* a stale tag: an event fetched before its fd was closed */
        tag = E.old_count > 0 ? E.old_tags[(k >> 3) % (unsigned)E.old_count] : E.slots[0].tag;
        break;
      case 6: /* the break, reported only while its counter is non-zero (level) */
        if (E.eventfd == 0) {
          tag = E.slots[(k >> 3) % SLOTS].tag;
        } else {
          tag = 0;
          mask = EPOLLIN;
        }
        break;
      default: tag = E.slots[(k >> 3) % SLOTS].tag; break;
    }
    events[i].tag = tag;
    events[i].events = mask;
    if (E.log_len < LOG_MAX) {
      E.log[E.log_len].tag = tag;
      E.log[E.log_len].events = mask;
      E.log_len++;
    }
  }
  return n;
}

static int fb_wake(void *state) {
  (void)state;
  E.eventfd++;
  return 0;
}
static int fb_drain(void *state) {
  (void)state;
  if (E.eventfd == 0) return -EAGAIN;
  E.eventfd = 0;
  return 0;
}
static int fb_ok(void *state, int fd) {
  (void)state, (void)fd;
  return 0;
}

static const np__backend scripted = {
    .name = "scripted",
    .create = fb_create,
    .destroy = fb_destroy,
    .open = fb_open,
    .close = fb_close,
    .wait = fb_wait,
    .wake = fb_wake,
    .drain = fb_drain,
    .setnonblock = fb_ok,
    .close_fd = fb_ok,
};

/* ---- the model ----------------------------------------------------------------- */

static void check(const char *after) {
  np_poller *p = E.poller;
  for (int s = 0; s < SLOTS; s++) {
    slot *sl = &E.slots[s];
    np__pd *pd = sl->f->pd;
    uintptr_t rg = pd->rg, wg = pd->wg;
    bool err = (pd->info & NP__INFO_EVENT_ERR) != 0;
    if (rg != (sl->rready ? NP__PD_READY : NP__PD_NIL) || wg != (sl->wready ? NP__PD_READY : NP__PD_NIL) ||
        err != sl->err) {
      fprintf(
          stderr,
          "np_fuzz_events: after %s, slot %d: rg=%lu wg=%lu err=%d, model says rready=%d wready=%d err=%d "
          "(I6/I10: an event reached the wrong registration or was lost)\n",
          after, s, (unsigned long)rg, (unsigned long)wg, err, sl->rready, sl->wready, sl->err);
      abort();
    }
    mix(rg * 4 + wg * 2 + err);
  }
  if ((p->wake_sig != 0) != E.wake_sig) {
    fprintf(stderr,
            "np_fuzz_events: after %s, wake_sig=%u, model says %d (Go 42515: break coalescing/drain)\n",
            after, p->wake_sig, E.wake_sig);
    abort();
  }
  if (p->waiters != 0) {
    fprintf(stderr, "np_fuzz_events: %u waiters counted with nobody parked (I11)\n", p->waiters);
    abort();
  }
}

static int slot_of_tag(uint64_t tag) {
  for (int s = 0; s < SLOTS; s++)
    if (E.slots[s].tag == tag) return s;
  return -1;
}

static void open_slot(int s) {
  slot *sl = &E.slots[s];
  int err = np_open(E.poller, E.next_fd++, &sl->f);
  if (err != 0) {
    fprintf(stderr, "np_fuzz_events: np_open: %s\n", np_strerror(err));
    abort();
  }
  sl->tag = np__pd_tag(sl->f->pd, sl->f->pd->fdseq);
  sl->rready = sl->wready = sl->err = sl->rexp = sl->wexp = false;
}

/* The operations of the program, one per kind; each reads its own
 * arguments from the input and checks the model afterwards. */
static void op_netpoll(void) { /* one netpoll with scripted events */
  static const int64_t delays[] = {0, -1, 1000000};
  E.log_len = 0;
  int64_t delay = delays[take() % 3];
  int n = np__netpoll(E.poller, delay);
  if (n < 0) abort();
  for (int i = 0; i < E.log_len; i++) {
    uint64_t tag = E.log[i].tag;
    uint32_t ev = E.log[i].events;
    if (tag == 0) {
      if (delay != 0) E.wake_sig = false; /* only a poll that may block drains */
      continue;
    }
    int t = slot_of_tag(tag);
    if (t < 0) continue; /* stale: must change nothing */
    slot *ts = &E.slots[t];
    ts->err = ev == EPOLLERR;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ts->rready = true;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) ts->wready = true;
  }
  check("netpoll");
}

static void op_reset(slot *sl) { /* a reader or writer prepares: pollReset */
  int mode = take() & 1 ? 'w' : 'r';
  int rc = np__pd_reset(sl->f->pd, mode);
  int want = NP__POLL_OK;
  if (mode == 'r' ? sl->rexp : sl->wexp)
    want = NP__POLL_TIMEOUT;
  else if (mode == 'r' && sl->err)
    want = NP__POLL_NOT_POLLABLE;
  if (rc != want) {
    fprintf(stderr, "np_fuzz_events: reset(%c) = %d, model says %d\n", mode, rc, want);
    abort();
  }
  if (rc == NP__POLL_OK) {
    if (mode == 'r')
      sl->rready = false;
    else
      sl->wready = false;
  }
  mix((uint64_t)rc);
  check("reset");
}

static void op_reuse(int s) { /* close and reuse: the pd likely comes back with a new fdseq */
  slot *sl = &E.slots[s];
  if (E.old_count < OLD_TAGS)
    E.old_tags[E.old_count++] = sl->tag;
  else
    E.old_tags[take() % OLD_TAGS] = sl->tag;
  if (np_close(sl->f) != 0) abort();
  np_free(sl->f);
  open_slot(s);
  check("reuse");
}

static void op_deadline(slot *sl) { /* deadlines: past, none, far */
  unsigned d = take();
  int mode = (int)(d % 3) == 0 ? 'r' : (int)(d % 3) == 1 ? 'w' : 'r' + 'w';
  int64_t value = (d >> 2) % 3 == 0 ? -5 : (d >> 2) % 3 == 1 ? 0 : INT64_MAX;
  int err = mode == 'r'   ? np_set_read_deadline(sl->f, value)
            : mode == 'w' ? np_set_write_deadline(sl->f, value)
                          : np_set_deadline(sl->f, value);
  if (err != 0) abort();
  if (mode != 'w') sl->rexp = value < 0;
  if (mode != 'r') sl->wexp = value < 0;
  check("deadline");
}

static void op_stale(void) { /* a stale event delivered directly */
  if (E.old_count == 0) return;
  uint64_t tag = E.old_tags[take() % (unsigned)E.old_count];
  if (slot_of_tag(tag) >= 0) return; /* (cannot happen: fdseq moved on) */
  uint32_t fdseq;
  np__pd *pd = np__pd_untag(tag, &fdseq);
  if (np__pd_ready(pd, fdseq, decode_mask(take())) != 0) abort();
  check("stale event");
}

static void events_main(void *arg) {
  (void)arg;
  E.poller = calloc(1, sizeof(*E.poller));
  if (E.poller == NULL || np__poller_init(E.poller, &scripted, 1 + (int)(take() % 16)) != 0) abort();
  for (int s = 0; s < SLOTS; s++) open_slot(s);
  check("open");
  for (int ops = 0; ops < 400 && E.pos < E.n; ops++) {
    unsigned op = take();
    int s = (int)((op >> 3) % SLOTS);
    switch (op % 6) {
      case 0: op_netpoll(); break;
      case 1: op_reset(&E.slots[s]); break;
      case 2: op_reuse(s); break;
      case 3: op_deadline(&E.slots[s]); break;
      case 4: /* break: coalesced */
        np__netpoll_break(E.poller);
        E.wake_sig = true;
        check("break");
        break;
      default: op_stale(); break;
    }
  }
  for (int s = 0; s < SLOTS; s++) np_free(E.slots[s].f);
  np__poller_fini(E.poller);
  free(E.poller);
  E.poller = NULL;
}

static void no_check(void *ctx, bool quiescent) { (void)ctx, (void)quiescent; }
static void no_format(void *ctx, const sim_trace_entry *e, char *buf, size_t len) {
  (void)ctx;
  snprintf(buf, len, "%8llu op=%s old=%#llx new=%#llx", (unsigned long long)e->step,
           sim_op_name((sim_op)e->op), (unsigned long long)e->old_value, (unsigned long long)e->new_value);
}

int np_fuzz_events(const uint8_t *data, size_t size, uint64_t *hash) {
  static sim_sched s;
  memset(&E, 0, sizeof(E));
  E.p = data;
  E.n = size;
  E.next_fd = 100;
  E.digest = 1469598103934665603ull;
  sim_config cfg = {.seed = 1, .step_limit = 10000000, .trace_out = np_fuzz_verbose};
  sim_init(&s, &cfg);
  sim_spawn("events", events_main, NULL);
  int rc = sim_run(&s, no_check, no_format, NULL);
  if (rc != 0) {
    fprintf(stderr, "np_fuzz_events: %s\n", s.failure);
    abort();
  }
  sim_fini(&s);
  if (hash != NULL) *hash = E.digest;
  return 0;
}
