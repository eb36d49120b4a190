/*
 * kernel_diff_test.c - the simulated kernel against Linux, by random
 * sequences of calls rather than chosen ones. Each case opens a pair of
 * descriptors (TCP over loopback, a unix connection, a socket pair, a
 * pipe) and runs a sequence of writes, reads, half-closes and closes on
 * either end, drawn from the case number alone, and prints every result.
 * tests/sim/kernel_diff.sh runs the native build once and the simulated
 * one under several seeds (their schedules and delivery latencies) and
 * requires the same lines: a difference is a place where a program would
 * behave differently natively and under the simulator.
 *
 * What is left out on purpose: full buffers (Linux's sizes are not the
 * simulator's, so at most 4 KiB is ever unread in a direction) and timing
 * (after each call both builds wait for the network to settle: 2 ms
 * natively, 100 ms of virtual time, past the simulator's latencies).
 * KDIFF_CASE=N runs case N alone, KDIFF_SETTLE_MS the native settle.
 */
#include <errno.h>
#include <netpoll_test.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS 1000000LL
#define CASES 240
#define UNREAD_MAX 4096
#define KINDS 4

static const char *const kind_names[KINDS] = {"tcp", "unix", "socketpair", "pipe"};

typedef struct dcase {
  int kind;
  np_fd *end[2];            /* pipe: end 0 writes, end 1 reads */
  bool open[2];             /* not yet closed */
  uint64_t sent[2], got[2]; /* bytes written by end i, read by end i */
  uint64_t rng;
} dcase;

static uint32_t next(dcase *c) {
  c->rng ^= c->rng << 13;
  c->rng ^= c->rng >> 7;
  c->rng ^= c->rng << 17;
  return (uint32_t)(c->rng >> 32);
}

/* KDIFF_SETTLE_MS overrides the native settle (to tell timing from state). */
static int64_t settle_ns(void) {
  const char *ms = getenv("KDIFF_SETTLE_MS");
  if (np_test_simulated()) return 100 * MS;
  return ms != NULL ? atoi(ms) * MS : 2 * MS;
}

static uint8_t byte_at(int from, uint64_t off) { return (uint8_t)((off * 7 + (uint64_t)from * 101) % 251); }

static void open_conn(dcase *c, const char *network, const char *address) {
  np_fd *l;
  char addr[NP_ADDRSTRLEN];
  NP_CHECK_EQ(np_listen(np_current(), network, address, &l), 0);
  NP_CHECK_EQ(np_local_addr(l, addr, sizeof(addr)), 0);
  NP_CHECK_EQ(np_dial(np_current(), network, addr, np_deadline_after(5000 * MS), &c->end[0]), 0);
  NP_CHECK_EQ(np_accept(l, &c->end[1], NULL, NULL), 0);
  np_free(l);
}

static void open_case(dcase *c, int number) {
  memset(c, 0, sizeof(*c));
  c->rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(number + 1);
  c->kind = number % KINDS;
  c->open[0] = c->open[1] = true;
  char name[64];
  switch (c->kind) {
    case 0: open_conn(c, "tcp", "127.0.0.1:0"); break;
    case 1:
      snprintf(name, sizeof(name), "@netpoll-kdiff-%d-%016llx", number, (unsigned long long)np_rand());
      open_conn(c, "unix", name);
      break;
    case 2: NP_CHECK_EQ(np_socketpair(np_current(), c->end), 0); break;
    default: {
      np_fd *p[2];
      NP_CHECK_EQ(np_pipe(np_current(), p), 0);
      c->end[0] = p[1];
      c->end[1] = p[0];
    }
  }
}

static void op_write(dcase *c, int e, char *line, size_t cap) {
  uint8_t buf[UNREAD_MAX];
  uint64_t unread = c->sent[e] - c->got[!e];
  size_t room = unread >= UNREAD_MAX ? 0 : UNREAD_MAX - (size_t)unread;
  size_t len = room == 0 ? 0 : next(c) % (room < 1500 ? room + 1 : 1500);
  for (size_t i = 0; i < len; i++) buf[i] = byte_at(e, c->sent[e] + i);
  size_t written = 0;
  NP_CHECK_EQ(np_set_write_deadline(c->end[e], np_deadline_after(settle_ns())), 0);
  int r = np_write(c->end[e], buf, len, &written);
  c->sent[e] += written;
  snprintf(line, cap, "write end%d %zu: %d (%s), written %zu", e, len, r, r ? np_strerror(r) : "ok", written);
}

static void op_read(dcase *c, int e, char *line, size_t cap) {
  uint8_t buf[UNREAD_MAX];
  size_t len = 1 + next(c) % sizeof(buf);
  NP_CHECK_EQ(np_set_read_deadline(c->end[e], np_deadline_after(settle_ns())), 0);
  ssize_t n = np_read(c->end[e], buf, len);
  /* A stream may deliver what was written in pieces: take the rest too. */
  while (n > 0 && c->got[e] + (uint64_t)n < c->sent[!e] && (size_t)n < len) {
    ssize_t more = np_read(c->end[e], buf + n, len - (size_t)n);
    if (more <= 0) break;
    n += more;
  }
  bool ok = true;
  for (ssize_t i = 0; i < n; i++) ok = ok && buf[i] == byte_at(!e, c->got[e] + (uint64_t)i);
  if (n > 0) c->got[e] += (uint64_t)n;
  snprintf(line, cap, "read end%d %zu: %zd%s%s", e, len, n, n < 0 ? " " : "",
           n < 0 ? np_strerror((int)n) : "");
  NP_CHECK(ok); /* every byte is the one written there */
}

/* One call on one end; returns false once both ends are closed. */
static bool step(dcase *c, char *line, size_t cap) {
  int e = (int)(next(c) % 2);
  if (!c->open[e]) e = !e;
  if (!c->open[e]) return false;
  uint32_t what = next(c) % 100;
  if (what < 38) {
    op_write(c, e, line, cap);
  } else if (what < 76) {
    op_read(c, e, line, cap);
  } else if (what < 86) {
    char addr[NP_ADDRSTRLEN];
    int r = np_remote_addr(c->end[e], addr, sizeof(addr)); /* the result only: ports differ */
    snprintf(line, cap, "remote_addr end%d: %d", e, r);
  } else if (what < 94) {
    int r = np_close_write(c->end[e]);
    snprintf(line, cap, "close_write end%d: %d (%s)", e, r, r ? np_strerror(r) : "ok");
  } else {
    int r = np_close(c->end[e]);
    snprintf(line, cap, "close end%d: %d", e, r);
    np_free(c->end[e]);
    c->open[e] = false;
  }
  return true;
}

NP_TEST(kernel_diff) {
  char line[160];
  signal(SIGPIPE, SIG_IGN);                /* a pipe's write(2) would raise it (np_write's documentation) */
  const char *only = getenv("KDIFF_CASE"); /* "N" or "N-M": some cases, to study them */
  int first = only ? atoi(only) : 0,
      last = only ? (strchr(only, '-') ? atoi(strchr(only, '-') + 1) : first) : CASES - 1;
  for (int number = first; number <= last; number++) {
    dcase c;
    open_case(&c, number);
    printf("case %d %s\n", number, kind_names[c.kind]);
    for (int i = 0; i < 24 && step(&c, line, sizeof(line)); i++) {
      printf("  %s\n", line);
      NP_CHECK_EQ(np_sleep(settle_ns()), 0); /* resets and FINs arrive */
    }
    for (int e = 0; e < 2; e++)
      if (c.open[e]) np_free(c.end[e]);
  }
  fflush(stdout);
}

NP_TEST_MAIN()
