/*
 * target_lifecycle.c - bytes -> a small scenario of single-shot pollDesc
 * operations (no retry loops, so every run is finite), run in the simulator
 * with the invariant checks on; the bytes left over steer the scheduler.
 * A program may legitimately block forever (a read nobody feeds): that ends
 * quietly, but only after the quiescence checks found no lost wake-up.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "scenario.h"
#include "world.h"

typedef struct reader {
  const uint8_t *p;
  size_t n, pos;
} reader;

static unsigned take(reader *r) { return r->pos < r->n ? r->p[r->pos++] : 0; }

static const sc_op ops[] = {SC_SLEEP,      SC_READ,       SC_WRITE,         SC_WAIT_READ,  SC_WAIT_WRITE,
                            SC_DEADLINE,   SC_DEADLINE,   SC_CLOSE,         SC_REOPEN,     SC_PEER_WRITE,
                            SC_PEER_WRITE, SC_PEER_CLOSE, SC_PEER_SHUTDOWN, SC_PEER_RESET, SC_INJECT,
                            SC_POLL,       SC_BREAK,      SC_JOIN};
#define OPS (sizeof(ops) / sizeof(ops[0]))

static const uint32_t caps[] = {1, 7, 64, 4096};

static void decode_faults(unsigned f, scenario *sc) {
  if (!(f & 1)) return;
  static const uint32_t rates[] = {0, 50000, 200000,
                                   500000}; /* never certain: a retry must be able to succeed */
  sc->faults.active = true;
  sc->faults.epoll_eintr = rates[(f >> 1) & 3];
  sc->faults.rw_eintr = rates[(f >> 3) & 3];
  sc->faults.spurious_eagain = rates[(f >> 5) & 3] / 2;
  sc->faults.short_io = 300000;
  sc->faults.urgent = 100000;
  sc->faults.spurious_ready = 100000;
  sc->faults.maxevents_cut = 200000;
  sc->fault_horizon = 5000000;
}

/* The arguments of action a of task t from param; may turn it into a poll. */
static void decode_args(sc_action *a, unsigned param, int t, int *reopens) {
  static const int64_t sleeps[] = {0, 1000, 100000, 1000000, 3000000};
  static const int modes[] = {'r', 'w', 'r' + 'w'};
  static const sc_when whens[] = {SC_DL_NONE, SC_DL_NOW,   SC_DL_PLUS, SC_DL_PLUS,
                                  SC_DL_PLUS, SC_DL_MINUS, SC_DL_MAX};
  static const int64_t amounts[] = {0, 0, 1000, 1000000, 5000000, 1000000, 0};
  switch (a->op) {
    case SC_SLEEP: a->n = sleeps[param % 5]; break;
    case SC_READ: a->n = param % 65; break;
    case SC_WRITE: a->n = (int64_t)param * 4; break;
    case SC_PEER_WRITE: a->n = 1 + param % 200; break;
    case SC_DEADLINE:
      a->mode = modes[param % 3];
      a->when = whens[(param >> 2) % 7];
      a->n = amounts[(param >> 2) % 7];
      break;
    case SC_REOPEN:
      /* the interpreter keeps 15 generations a stream */
      if (++reopens[a->stream] > 12) {
        a->op = SC_POLL;
        break;
      }
      a->kind = (sc_kind)(param % 3);
      a->cap = caps[(param >> 2) % 4];
      break;
    case SC_INJECT: a->mode = param & 1 ? 'e' : 's'; break;
    case SC_JOIN:
      if (t == 0)
        a->op = SC_POLL;
      else
        a->task = (int)(param % (unsigned)t);
      break;
    default: break;
  }
}

static void decode_tasks(reader *rd, scenario *sc) {
  int reopens[SC_STREAMS_MAX] = {0};
  int tasks = 1 + (int)(take(rd) % 5);
  for (int t = 0; t < tasks; t++) {
    sc_task *task = &sc->tasks[sc->task_count++];
    snprintf(task->name, sizeof(task->name), "t%d", t);
    task->first = sc->action_count;
    int count = 1 + (int)(take(rd) % 10);
    for (int i = 0; i < count; i++) {
      sc_op op = ops[take(rd) % OPS];
      unsigned param = take(rd);
      sc_action a = {
          .op = op, .stream = (int)(take(rd) % (unsigned)sc->stream_count), .task = -1, .expect = SC_R_ANY};
      decode_args(&a, param, t, reopens);
      if (a.op == SC_SLEEP || a.op == SC_JOIN || a.op == SC_BREAK || a.op == SC_POLL) a.stream = -1;
      a.line = sc->action_count + 1;
      sc->actions[sc->action_count++] = a;
      task->count++;
    }
  }
}

static void decode(reader *rd, scenario *sc) {
  memset(sc, 0, sizeof(*sc));
  snprintf(sc->name, sizeof(sc->name), "fuzz-lifecycle");
  sc->seed_first = sc->seed_last = 1;
  sc->depth = 3;
  sc->quantum = -1;
  sc->stickiness = -1;
  unsigned b = take(rd);
  sc->stream_count = 1 + (int)(b % 3);
  sc->events_max = 1 + (int)((b >> 2) % 8);
  for (int s = 0; s < sc->stream_count; s++) {
    unsigned k = take(rd);
    snprintf(sc->streams[s].name, sizeof(sc->streams[s].name), "s%d", s);
    sc->streams[s].kind = (sc_kind)(k % 3);
    sc->streams[s].cap = caps[(k >> 2) % 4];
  }
  decode_faults(take(rd), sc);
  decode_tasks(rd, sc);
}

int np_fuzz_lifecycle(const uint8_t *data, size_t size, uint64_t *hash) {
  static scenario sc;
  reader rd = {data, size, 0};
  decode(&rd, &sc);
  if (np_fuzz_verbose != NULL) {
    fprintf(np_fuzz_verbose, "--- decoded program ---\n");
    sc_dump(&sc, np_fuzz_verbose);
    fprintf(np_fuzz_verbose, "--- trace ---\n");
  }
  world_options o = {
      .sc = &sc,
      .seed = 1,
      .check_every_step = true,
      .step_limit = 300000,
      .choices = data + rd.pos,
      .choices_len = size - rd.pos,
      .allow_stuck = true,
      .trace_out = np_fuzz_verbose,
      .report = stderr,
      .trace_tail = np_fuzz_verbose != NULL ? 0 : 40,
  };
  world_result r;
  if (world_run(&o, &r) != 0) {
    fprintf(stderr, "np_fuzz_lifecycle: invariant violated: %s\n", r.failure);
    fprintf(stderr, "replay with the trace: make replay TARGET=lifecycle FILE=<this input>\n");
    fflush(NULL);
    abort();
  }
  if (hash != NULL) *hash = r.trace_hash;
  return 0;
}
