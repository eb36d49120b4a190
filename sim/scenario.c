/*
 * scenario.c - parse, dump and generate scenarios (see scenario.h and
 * SCENARIOS.md).
 */
#include "scenario.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[SC_OP_COUNT] = {
    "sleep",   "read",    "read-all",   "write",      "write-all",     "wait-read",  "wait-write",
    "produce", "consume", "peer-write", "peer-close", "peer-shutdown", "peer-reset", "deadline",
    "close",   "reopen",  "wait-gen",   "join",       "break",         "poll",       "inject",
    "connect", "accept",  "free",       "destroy"};
_Static_assert(sizeof(op_names) / sizeof(op_names[0]) == SC_OP_COUNT, "an action without a name");

const char *sc_op_name(sc_op op) { return op < SC_OP_COUNT ? op_names[op] : "?"; }

unsigned sc_classify(int64_t v, bool read) {
  if (v > 0) return read ? SC_R_DATA : SC_R_OK;
  if (v == 0) return read ? SC_R_EOF : SC_R_OK;
  switch (v) {
    case NP_ETIMEOUT: return SC_R_TIMEOUT;
    case NP_ECLOSING: return SC_R_CLOSING;
    case NP_ENOTPOLLABLE: return SC_R_NOTPOLLABLE;
    case -ECONNRESET: return SC_R_RESET;
    case -EPIPE: return SC_R_EPIPE;
    case -EAGAIN: return SC_R_AGAIN;
    default: return SC_R_ERROR;
  }
}

const char *sc_result_name(unsigned bit) {
  static const char *const names[] = {"ok",          "data",  "eof",   "timeout", "closing",
                                      "notpollable", "reset", "epipe", "again",   "error"};
  for (int i = 0; i < 10; i++)
    if (bit == 1u << i) return names[i];
  return "?";
}

static const char *const kind_names[] = {"pipe-in", "pipe-out", "sock", "listen", "accepted"};
#define KINDS 5

static const struct {
  const char *name;
  unsigned bit;
} result_names[] = {{"ok", SC_R_OK},           {"data", SC_R_DATA},       {"eof", SC_R_EOF},
                    {"timeout", SC_R_TIMEOUT}, {"closing", SC_R_CLOSING}, {"notpollable", SC_R_NOTPOLLABLE},
                    {"reset", SC_R_RESET},     {"epipe", SC_R_EPIPE},     {"again", SC_R_AGAIN},
                    {"error", SC_R_ERROR},     {"any", SC_R_ANY}};

static const struct {
  const char *name;
  size_t offset;
} fault_names[] = {{"epoll-eintr", offsetof(kern_faults, epoll_eintr)},
                   {"rw-eintr", offsetof(kern_faults, rw_eintr)},
                   {"spurious-eagain", offsetof(kern_faults, spurious_eagain)},
                   {"short-io", offsetof(kern_faults, short_io)},
                   {"urgent", offsetof(kern_faults, urgent)},
                   {"spurious-ready", offsetof(kern_faults, spurious_ready)},
                   {"err-only", offsetof(kern_faults, err_only)},
                   {"maxevents-cut", offsetof(kern_faults, maxevents_cut)},
                   {"accept-abort", offsetof(kern_faults, accept_abort)},
                   {"accept-emfile", offsetof(kern_faults, accept_emfile)}};
#define FAULT_KINDS (sizeof(fault_names) / sizeof(fault_names[0]))

/* ---- parsing ----------------------------------------------------------------- */

#define TOKENS_MAX 12
#define LINE_MAX_LEN 512

typedef struct parser {
  scenario *sc;
  int line;
  char *err;
  size_t err_len;
  int task;                         /* current task or -1 */
  int64_t sleep_total;              /* the current task's start plus its sleeps */
  const char *text;                 /* the whole input, for the checksum */
  size_t line_start;                /* offset of the current line */
  int checksum_line;                /* line of a checksum, 0 if none yet */
  int deadlines[SC_STREAMS_MAX][2]; /* deadline actions per stream and mode (r, w) */
} parser;

__attribute__((format(printf, 2, 3))) static int fail(parser *p, const char *fmt, ...) {
  int used = snprintf(p->err, p->err_len, "line %d: ", p->line);
  if (used < 0) used = 0;
  if ((size_t)used < p->err_len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + used, p->err_len - (size_t)used, fmt, ap);
    va_end(ap);
  }
  return -1;
}

uint64_t sc_fnv1a64(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
  return h;
}

void sc_escape(char *s, size_t cap) {
  char buf[1024];
  size_t o = 0;
  for (const unsigned char *c = (const unsigned char *)s; *c != 0 && o + 5 < sizeof(buf); c++) {
    if (*c >= 0x20 && *c < 0x7f && *c != '\\')
      buf[o++] = (char)*c;
    else
      o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\\x%02x", *c);
  }
  if (cap == 0) return;
  size_t n = o < cap - 1 ? o : cap - 1; /* cut to the caller's room */
  memcpy(s, buf, n);
  s[n] = 0;
}

static bool parse_int(const char *s, int64_t min, int64_t max, int64_t *out) {
  if (s == NULL || *s == 0) return false;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || *end != 0 || v < min || v > max) return false;
  *out = v;
  return true;
}

/* "<n>[ns|us|ms|s]", non-negative, at most ~1 year. */
static bool parse_duration(const char *s, int64_t *out) {
  if (s == NULL || !isdigit((unsigned char)*s)) return false;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0) return false;
  int64_t unit;
  if (*end == 0 || strcmp(end, "ns") == 0)
    unit = 1;
  else if (strcmp(end, "us") == 0)
    unit = 1000;
  else if (strcmp(end, "ms") == 0)
    unit = 1000000;
  else if (strcmp(end, "s") == 0)
    unit = 1000000000;
  else
    return false;
  const uint64_t limit = UINT64_C(31536000000000000); /* one year */
  if (v > limit / (uint64_t)unit) return false;
  *out = (int64_t)(v * (uint64_t)unit);
  return true;
}

static bool valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= SC_NAME_MAX || !isalpha((unsigned char)s[0])) return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-') return false;
  return true;
}

bool sc_valid_scenario_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= sizeof(((scenario *)0)->name)) return false;
  if (!isalnum((unsigned char)s[0]) && s[0] != '_') return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.') return false;
  return strstr(s, "..") == NULL;
}

static int find_stream(const scenario *sc, const char *name) {
  for (int i = 0; i < sc->stream_count; i++)
    if (strcmp(sc->streams[i].name, name) == 0) return i;
  return -1;
}

static int find_task(const scenario *sc, const char *name) {
  for (int i = 0; i < sc->task_count; i++)
    if (strcmp(sc->tasks[i].name, name) == 0) return i;
  return -1;
}

static int parse_kind(const char *s) {
  for (int i = 0; i < KINDS; i++)
    if (s != NULL && strcmp(s, kind_names[i]) == 0) return i;
  return -1;
}

static bool parse_expect(const char *s, unsigned *out) {
  unsigned set = 0;
  char buf[LINE_MAX_LEN];
  snprintf(buf, sizeof(buf), "%s", s);
  for (char *save = NULL, *w = strtok_r(buf, ",|", &save); w != NULL; w = strtok_r(NULL, ",|", &save)) {
    bool found = false;
    for (size_t i = 0; i < sizeof(result_names) / sizeof(result_names[0]); i++) {
      if (strcmp(w, result_names[i].name) == 0) {
        set |= result_names[i].bit;
        found = true;
      }
    }
    if (!found) return false;
  }
  *out = set;
  return set != 0;
}

static int parse_faults(parser *p, char **tok, int ntok) {
  scenario *sc = p->sc;
  int64_t v;
  memset(&sc->faults, 0, sizeof(sc->faults));
  sc->fault_horizon = 0;
  if (ntok == 2 && strcmp(tok[1], "none") == 0) return 0;
  for (int i = 1; i < ntok; i++) {
    char *eq = strchr(tok[i], '=');
    if (eq == NULL) return fail(p, "faults takes none or kind=per-million ... horizon=DURATION");
    *eq = 0;
    if (strcmp(tok[i], "horizon") == 0) {
      if (!parse_duration(eq + 1, &v)) return fail(p, "bad fault horizon '%s'", eq + 1);
      sc->fault_horizon = v;
      continue;
    }
    size_t k = 0;
    while (k < FAULT_KINDS && strcmp(tok[i], fault_names[k].name) != 0) k++;
    if (k == FAULT_KINDS) return fail(p, "unknown fault '%s'", tok[i]);
    if (!parse_int(eq + 1, 0, 1000000, &v)) return fail(p, "fault rate is per million, 0..1000000");
    *(uint32_t *)((char *)&sc->faults + fault_names[k].offset) = (uint32_t)v;
  }
  sc->faults.active = true;
  return 0;
}

static int parse_header(parser *p, char **tok, int ntok) {
  scenario *sc = p->sc;
  const char *key = tok[0];
  int64_t v;
  if (strcmp(key, "name") == 0) {
    if (ntok != 2) return fail(p, "name takes one word");
    if (!sc_valid_scenario_name(tok[1]))
      return fail(
          p,
          "bad scenario name '%s': 1-%d letters, digits, '_', '-', '.', starting with a letter, digit "
          "or '_' (it names replay files: no '/', no '..')",
          tok[1], (int)sizeof(sc->name) - 1);
    snprintf(sc->name, sizeof(sc->name), "%s", tok[1]);
  } else if (strcmp(key, "seeds") == 0) {
    if (ntok != 2) return fail(p, "seeds takes A-B");
    char *dash = strchr(tok[1], '-');
    if (dash == NULL) return fail(p, "seeds takes A-B");
    *dash = 0;
    int64_t a, b;
    if (!parse_int(tok[1], 0, INT64_MAX, &a) || !parse_int(dash + 1, 0, INT64_MAX, &b) || b < a)
      return fail(p, "bad seed range");
    if (b - a > 100000000) return fail(p, "seed range too large (at most 1e8 seeds)");
    sc->seed_first = (uint64_t)a;
    sc->seed_last = (uint64_t)b;
  } else if (strcmp(key, "seed") == 0) {
    if (ntok != 2 || !parse_int(tok[1], 0, INT64_MAX, &v)) return fail(p, "seed takes a number");
    sc->has_seed = true;
    sc->seed = (uint64_t)v;
  } else if (strcmp(key, "build") == 0) {
    /* the build a replay file was recorded by (npsim warns on another) */
    if (ntok != 2 || strlen(tok[1]) >= sizeof(sc->build)) return fail(p, "build takes one word");
    snprintf(sc->build, sizeof(sc->build), "%s", tok[1]);
    sc->has_build = true;
  } else if (strcmp(key, "strategy") == 0) {
    if (ntok != 2) return fail(p, "strategy takes random or pct");
    if (strcmp(tok[1], "random") == 0)
      sc->strategy = 0;
    else if (strcmp(tok[1], "pct") == 0)
      sc->strategy = 1;
    else
      return fail(p, "unknown strategy '%s'", tok[1]);
  } else if (strcmp(key, "depth") == 0) {
    if (ntok != 2 || !parse_int(tok[1], 1, 16, &v)) return fail(p, "depth takes 1..16");
    sc->depth = (int)v;
  } else if (strcmp(key, "events-max") == 0) {
    if (ntok != 2 || !parse_int(tok[1], 1, 128, &v)) return fail(p, "events-max takes 1..128");
    sc->events_max = (int)v;
  } else if (strcmp(key, "quantum") == 0) {
    if (ntok != 2 || !parse_duration(tok[1], &v) || v < 1) return fail(p, "quantum takes a duration >= 1ns");
    sc->quantum = v;
  } else if (strcmp(key, "stickiness") == 0) {
    if (ntok != 2 || !parse_int(tok[1], 0, 1000000, &v))
      return fail(p, "stickiness takes 0..1000000 (per million)");
    sc->stickiness = (int32_t)v;
  } else if (strcmp(key, "max-rw") == 0) {
    if (ntok != 2 || !parse_int(tok[1], 1, (int64_t)1 << 30, &v))
      return fail(p, "max-rw takes 1..1073741824");
    sc->max_rw = v;
  } else if (strcmp(key, "conformance") == 0) {
    if (ntok != 2 || (strcmp(tok[1], "yes") != 0 && strcmp(tok[1], "no") != 0))
      return fail(p, "conformance takes yes or no");
    sc->conformance = strcmp(tok[1], "yes") == 0;
  } else if (strcmp(key, "faults") == 0) {
    return parse_faults(p, tok, ntok);
  } else {
    return 1; /* not a header line */
  }
  return 0;
}

static int parse_stream(parser *p, char **tok, int ntok) {
  scenario *sc = p->sc;
  if (ntok < 3) return fail(p, "stream takes NAME KIND [cap=N]");
  if (!valid_name(tok[1])) return fail(p, "bad stream name '%s'", tok[1]);
  if (find_stream(sc, tok[1]) >= 0) return fail(p, "stream '%s' declared twice", tok[1]);
  if (sc->stream_count >= SC_STREAMS_MAX) return fail(p, "too many streams (max %d)", SC_STREAMS_MAX);
  int kind = parse_kind(tok[2]);
  if (kind < 0)
    return fail(p, "unknown stream kind '%s' (pipe-in, pipe-out, sock, listen, accepted)", tok[2]);
  sc_stream *s = &sc->streams[sc->stream_count];
  snprintf(s->name, sizeof(s->name), "%s", tok[1]);
  s->kind = (sc_kind)kind;
  s->cap = 4096;
  for (int i = 3; i < ntok; i++) {
    int64_t v;
    if (strncmp(tok[i], "cap=", 4) != 0 || !parse_int(tok[i] + 4, 1, 1 << 20, &v))
      return fail(p, "stream option must be cap=1..1048576");
    s->cap = (uint32_t)v;
  }
  sc->stream_count++;
  return 0;
}

/* Per-kind argument parsers: tok[0] is the action, a->stream is set when
 * the action takes one, args points at the first word after it, extra
 * counts those words (without a trailing "expect SET"). */
typedef struct act_args {
  char **tok;
  char **args;
  int extra;
} act_args;

static int parse_sleep(parser *p, sc_action *a, const act_args *w) {
  if (w->extra != 1 || !parse_duration(w->args[0], &a->n))
    return fail(p, "sleep takes a duration (e.g. 2ms)");
  sc_task *t = &p->sc->tasks[p->task];
  if (a->n > SC_TIME_MAX_NS - p->sleep_total)
    return fail(p,
                "task '%s' sleeps past the simulator's 100-year clock (its start and sleeps add up to more)",
                t->name);
  p->sleep_total += a->n;
  return 0;
}

static int parse_read(parser *p, sc_action *a, const act_args *w) {
  a->n = 4096;
  if (w->extra > 1 || (w->extra == 1 && !parse_int(w->args[0], 0, 1 << 20, &a->n)))
    return fail(p, "read takes S [MAX]");
  return 0;
}

static int parse_bytes(parser *p, sc_action *a, const act_args *w) {
  int64_t max = a->op == SC_WRITE ? SC_WRITE_MAX : 1 << 24;
  if (w->extra != 1 || !parse_int(w->args[0], 0, max, &a->n))
    return fail(p, "%s takes S BYTES (at most %" PRId64 ")", w->tok[0], max);
  return 0;
}

static int parse_produce(parser *p, sc_action *a, const act_args *w) {
  a->gap = 2000000;
  if (w->extra < 1 || w->extra > 2 || !parse_int(w->args[0], 0, 1 << 24, &a->n))
    return fail(p, "produce takes S BYTES [gap=D]");
  if (w->extra == 2 && (strncmp(w->args[1], "gap=", 4) != 0 || !parse_duration(w->args[1] + 4, &a->gap)))
    return fail(p, "produce option must be gap=DURATION");
  return 0;
}

static int parse_deadline(parser *p, sc_action *a, const act_args *w) {
  if (w->extra != 2) return fail(p, "deadline takes S r|w|rw VALUE");
  const char *mode = w->args[0], *val = w->args[1];
  if (strcmp(mode, "r") == 0)
    a->mode = 'r';
  else if (strcmp(mode, "w") == 0)
    a->mode = 'w';
  else if (strcmp(mode, "rw") == 0)
    a->mode = 'r' + 'w';
  else
    return fail(p, "deadline mode must be r, w or rw");
  if (strcmp(val, "none") == 0)
    a->when = SC_DL_NONE;
  else if (strcmp(val, "now") == 0)
    a->when = SC_DL_NOW;
  else if (strcmp(val, "max") == 0)
    a->when = SC_DL_MAX;
  else if ((val[0] == '+' || val[0] == '-') && parse_duration(val + 1, &a->n) && a->n > 0)
    a->when = val[0] == '+' ? SC_DL_PLUS : SC_DL_MINUS;
  else
    return fail(p, "deadline value must be none, now, max, +DURATION or -DURATION");
  for (int m = 0; m < 2; m++) {
    if (a->mode != (m == 0 ? 'r' : 'w') && a->mode != 'r' + 'w') continue;
    if (++p->deadlines[a->stream][m] > SC_DEADLINES_MAX)
      return fail(p, "more than %d %s deadline actions on stream '%s' (the simulator's history of a stream)",
                  SC_DEADLINES_MAX, m == 0 ? "read" : "write", p->sc->streams[a->stream].name);
  }
  return 0;
}

static int parse_reopen(parser *p, sc_action *a, const act_args *w) {
  if (w->extra < 1 || w->extra > 2) return fail(p, "reopen takes S KIND [cap=N]");
  int kind = parse_kind(w->args[0]);
  if (kind < 0 || kind > SC_SOCK) return fail(p, "reopen kind must be pipe-in, pipe-out or sock");
  a->kind = (sc_kind)kind;
  a->cap = 4096;
  int64_t v;
  if (w->extra == 2) {
    if (strncmp(w->args[1], "cap=", 4) != 0 || !parse_int(w->args[1] + 4, 1, 1 << 20, &v))
      return fail(p, "bad cap");
    a->cap = (uint32_t)v;
  }
  return 0;
}

static int parse_wait_gen(parser *p, sc_action *a, const act_args *w) {
  if (w->extra != 1 || !parse_int(w->args[0], 1, 1000, &a->n)) return fail(p, "wait-gen takes S GENERATION");
  return 0;
}

static int parse_join(parser *p, sc_action *a, const act_args *w) {
  if (w->extra != 1) return fail(p, "join takes a task name");
  a->task = find_task(p->sc, w->args[0]);
  if (a->task < 0) return fail(p, "join of unknown task '%s' (declare it first)", w->args[0]);
  if (a->task == p->task) return fail(p, "a task cannot join itself");
  return 0;
}

static int parse_pair(parser *p, sc_action *a, const act_args *w) {
  const scenario *sc = p->sc;
  if (w->extra != 1) return fail(p, "%s takes LISTENER ACCEPTED", w->tok[0]);
  if (sc->streams[a->stream].kind != SC_LISTEN)
    return fail(p, "%s: '%s' is not a listen stream", w->tok[0], w->tok[1]);
  a->stream2 = find_stream(sc, w->args[0]);
  if (a->stream2 < 0 || sc->streams[a->stream2].kind != SC_ACCEPTED)
    return fail(p, "%s: '%s' is not an accepted stream", w->tok[0], w->args[0]);
  return 0;
}

static int parse_inject(parser *p, sc_action *a, const act_args *w) {
  if (w->extra != 1) return fail(p, "inject takes S err-only|ready");
  if (strcmp(w->args[0], "err-only") == 0)
    a->mode = 'e';
  else if (strcmp(w->args[0], "ready") == 0)
    a->mode = 's';
  else
    return fail(p, "inject takes err-only or ready");
  return 0;
}

static int parse_no_args(parser *p, sc_action *a, const act_args *w) {
  if (w->extra == 0) return 0;
  return fail(p, "%s takes %s", w->tok[0], a->stream >= 0 ? "just a stream" : "no argument");
}

typedef int (*act_parser)(parser *, sc_action *, const act_args *);

static act_parser arg_parser(sc_op op) {
  switch (op) {
    case SC_SLEEP: return parse_sleep;
    case SC_READ: return parse_read;
    case SC_WRITE:
    case SC_WRITE_ALL:
    case SC_PEER_WRITE: return parse_bytes;
    case SC_PRODUCE: return parse_produce;
    case SC_DEADLINE: return parse_deadline;
    case SC_REOPEN: return parse_reopen;
    case SC_WAIT_GEN: return parse_wait_gen;
    case SC_JOIN: return parse_join;
    case SC_CONNECT:
    case SC_ACCEPT: return parse_pair;
    case SC_INJECT: return parse_inject;
    default: return parse_no_args;
  }
}

static int parse_action(parser *p, char **tok, int ntok) {
  scenario *sc = p->sc;
  if (p->task < 0) return fail(p, "action '%s' outside a task", tok[0]);
  if (sc->action_count >= SC_ACTIONS_MAX) return fail(p, "too many actions (max %d)", SC_ACTIONS_MAX);
  int op = -1;
  for (int i = 0; i < SC_OP_COUNT; i++)
    if (strcmp(tok[0], op_names[i]) == 0) op = i;
  if (op < 0) return fail(p, "unknown action '%s'", tok[0]);
  sc_action a = {
      .op = (sc_op)op, .stream = -1, .stream2 = -1, .task = -1, .expect = SC_R_ANY, .line = p->line};
  /* trailing "expect SET" */
  if (ntok >= 3 && strcmp(tok[ntok - 2], "expect") == 0) {
    if (!parse_expect(tok[ntok - 1], &a.expect)) return fail(p, "bad expectation '%s'", tok[ntok - 1]);
    ntok -= 2;
  }
  int arg = 1;
  bool needs_stream =
      !(op == SC_SLEEP || op == SC_JOIN || op == SC_BREAK || op == SC_POLL || op == SC_DESTROY);
  if (needs_stream) {
    if (ntok < 2) return fail(p, "%s needs a stream", tok[0]);
    a.stream = find_stream(sc, tok[1]);
    if (a.stream < 0) return fail(p, "unknown stream '%s'", tok[1]);
    arg = 2;
  }
  act_args w = {.tok = tok, .args = tok + arg, .extra = ntok - arg};
  if (arg_parser(a.op)(p, &a, &w) != 0) return -1;
  sc->actions[sc->action_count++] = a;
  sc->tasks[p->task].count++;
  return 0;
}

static void defaults(scenario *sc) {
  memset(sc, 0, sizeof(*sc));
  snprintf(sc->name, sizeof(sc->name), "unnamed");
  sc->seed_first = 1;
  sc->seed_last = 200;
  sc->depth = 3;
  sc->quantum = -1;
  sc->stickiness = -1;
}

static int parse_task(parser *p, char **tok, int ntok) {
  scenario *out = p->sc;
  if (ntok < 2 || ntok > 3 || !valid_name(tok[1])) return fail(p, "task takes NAME [start=DURATION]");
  if (find_task(out, tok[1]) >= 0) return fail(p, "task '%s' declared twice", tok[1]);
  if (out->task_count >= SC_TASKS_MAX) return fail(p, "too many tasks (max %d)", SC_TASKS_MAX);
  sc_task *t = &out->tasks[out->task_count];
  snprintf(t->name, sizeof(t->name), "%s", tok[1]);
  t->first = out->action_count;
  t->count = 0;
  t->start = 0;
  if (ntok == 3 && (strncmp(tok[2], "start=", 6) != 0 || !parse_duration(tok[2] + 6, &t->start)))
    return fail(p, "task option must be start=DURATION");
  p->task = out->task_count++;
  p->sleep_total = t->start;
  return 0;
}

/* "checksum fnv1a64:HEX": the FNV-1a hash of every byte before this line.
 * Replay files end with one; a damaged or edited file fails here. */
static int parse_checksum(parser *p, char **tok, int ntok) {
  if (p->checksum_line != 0) return fail(p, "second checksum line");
  char *end;
  if (ntok != 2 || strncmp(tok[1], "fnv1a64:", 8) != 0 || strlen(tok[1]) != 8 + 16)
    return fail(p, "checksum takes fnv1a64:<16 hex digits>");
  errno = 0;
  unsigned long long want = strtoull(tok[1] + 8, &end, 16);
  if (errno != 0 || *end != 0 || !isxdigit((unsigned char)tok[1][8]))
    return fail(p, "checksum takes fnv1a64:<16 hex digits>");
  uint64_t got = sc_fnv1a64(p->text, p->line_start);
  if (got != want)
    return fail(p,
                "checksum mismatch: the file is damaged or was edited (recorded %016llx, content %016" PRIx64
                "); remove the checksum and build lines to run an edited scenario",
                want, got);
  p->checksum_line = p->line;
  return 0;
}

/* One line, comment stripped, split into words. */
static int parse_line(parser *p, char **tok, int ntok) {
  if (p->checksum_line != 0) return fail(p, "text after the checksum line (line %d)", p->checksum_line);
  if (strcmp(tok[0], "checksum") == 0) return parse_checksum(p, tok, ntok);
  if (strcmp(tok[0], "stream") == 0) {
    if (p->task >= 0) return fail(p, "streams must be declared before tasks");
    return parse_stream(p, tok, ntok);
  }
  if (strcmp(tok[0], "task") == 0) return parse_task(p, tok, ntok);
  int rc = p->task < 0 ? parse_header(p, tok, ntok) : 1;
  if (rc == 1) rc = parse_action(p, tok, ntok);
  return rc;
}

/* Copies the line at text[pos, end) into line (comment cut, tabs and CRs to
 * spaces) and splits it; returns the word count or -1. */
static int split_line(parser *p, const char *text, size_t n, char *line, char **tok) {
  if (n >= LINE_MAX_LEN) return fail(p, "line longer than %d characters", LINE_MAX_LEN - 1);
  memcpy(line, text, n);
  line[n] = 0;
  for (size_t i = 0; i < n; i++) {
    if (line[i] == 0) return fail(p, "NUL byte in scenario");
    if (line[i] == '#') {
      line[i] = 0;
      break;
    }
    if (line[i] == '\r' || line[i] == '\t') line[i] = ' ';
  }
  int ntok = 0;
  for (char *save = NULL, *w = strtok_r(line, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save)) {
    if (ntok == TOKENS_MAX) return fail(p, "too many words on a line");
    tok[ntok++] = w;
  }
  return ntok;
}

static int parse_text(parser *p, const char *text, size_t len) {
  size_t pos = 0;
  while (pos < len) {
    p->line++;
    p->line_start = pos;
    size_t end = pos;
    while (end < len && text[end] != '\n') end++;
    char line[LINE_MAX_LEN];
    char *tok[TOKENS_MAX];
    int ntok = split_line(p, text + pos, end - pos, line, tok);
    pos = end + 1;
    if (ntok < 0) return -1;
    if (ntok > 0 && parse_line(p, tok, ntok) != 0) return -1;
  }
  scenario *out = p->sc;
  if (out->task_count == 0) {
    snprintf(p->err, p->err_len, "end of input (line %d): no tasks", p->line);
    return -1;
  }
  if (out->has_build && p->checksum_line == 0) {
    snprintf(p->err, p->err_len,
             "end of input (line %d): a replay file (it has a build line) without its final checksum line: "
             "truncated?",
             p->line);
    return -1;
  }
  return sc_validate(out, p->err, p->err_len);
}

int sc_parse(const char *text, size_t len, scenario *out, char *err, size_t err_len) {
  parser p = {.sc = out, .line = 0, .err = err, .err_len = err_len, .task = -1, .text = text};
  defaults(out);
  if (err_len > 0) err[0] = 0;
  int rc = parse_text(&p, text, len);
  if (rc != 0) sc_escape(err, err_len);
  return rc;
}

int sc_validate(const scenario *sc, char *err, size_t err_len) {
  for (int i = 0; i < sc->action_count; i++) {
    const sc_action *a = &sc->actions[i];
    bool pair = a->op == SC_CONNECT || a->op == SC_ACCEPT;
    if (a->stream >= sc->stream_count || (a->op == SC_JOIN && (a->task < 0 || a->task >= sc->task_count)) ||
        (pair && (a->stream2 < 0 || a->stream2 >= sc->stream_count))) {
      snprintf(err, err_len, "line %d: bad reference", a->line);
      return -1;
    }
  }
  return 0;
}

int sc_parse_file(const char *path_raw, scenario *out, char *err, size_t err_len) {
  char path[512]; /* for messages: escaped */
  snprintf(path, sizeof(path), "%s", path_raw);
  sc_escape(path, sizeof(path));
  FILE *f = fopen(path_raw, "rb");
  if (f == NULL) {
    snprintf(err, err_len, "%s: %s", path, strerror(errno));
    return -1;
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  if (buf == NULL) {
    fclose(f);
    snprintf(err, err_len, "out of memory");
    return -1;
  }
  for (;;) {
    if (len == cap) {
      if (cap >= (1 << 22)) {
        free(buf);
        fclose(f);
        snprintf(err, err_len, "%s: larger than 4 MiB", path);
        return -1;
      }
      char *bigger = realloc(buf, cap * 2);
      if (bigger == NULL) {
        free(buf);
        fclose(f);
        snprintf(err, err_len, "out of memory");
        return -1;
      }
      buf = bigger;
      cap *= 2;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    if (n == 0) break;
    len += n;
  }
  fclose(f);
  char inner[256];
  int rc = sc_parse(buf, len, out, inner, sizeof(inner));
  free(buf);
  if (rc != 0) snprintf(err, err_len, "%s: %s", path, inner);
  return rc;
}

/* ---- dumping --------------------------------------------------------------------------- */

static void dump_duration(FILE *out, int64_t ns) {
  if (ns != 0 && ns % 1000000000 == 0)
    fprintf(out, "%" PRId64 "s", ns / 1000000000);
  else if (ns != 0 && ns % 1000000 == 0)
    fprintf(out, "%" PRId64 "ms", ns / 1000000);
  else if (ns != 0 && ns % 1000 == 0)
    fprintf(out, "%" PRId64 "us", ns / 1000);
  else
    fprintf(out, "%" PRId64 "ns", ns);
}

static void dump_expect(FILE *out, unsigned set) {
  if (set == SC_R_ANY) return;
  fputs(" expect ", out);
  bool first = true;
  for (size_t i = 0; i + 1 < sizeof(result_names) / sizeof(result_names[0]); i++) {
    if (!(set & result_names[i].bit)) continue;
    fprintf(out, "%s%s", first ? "" : ",", result_names[i].name);
    first = false;
  }
}

static void dump_action(const scenario *sc, const sc_action *a, FILE *out) {
  fprintf(out, "  %s", op_names[a->op]);
  if (a->stream >= 0) fprintf(out, " %s", sc->streams[a->stream].name);
  switch (a->op) {
    case SC_SLEEP:
      fputc(' ', out);
      dump_duration(out, a->n);
      break;
    case SC_READ:
    case SC_WRITE:
    case SC_WRITE_ALL:
    case SC_PEER_WRITE:
    case SC_WAIT_GEN: fprintf(out, " %" PRId64, a->n); break;
    case SC_PRODUCE:
      fprintf(out, " %" PRId64 " gap=", a->n);
      dump_duration(out, a->gap);
      break;
    case SC_DEADLINE:
      fprintf(out, " %s ", a->mode == 'r' ? "r" : a->mode == 'w' ? "w" : "rw");
      if (a->when == SC_DL_NONE)
        fputs("none", out);
      else if (a->when == SC_DL_NOW)
        fputs("now", out);
      else if (a->when == SC_DL_MAX)
        fputs("max", out);
      else {
        fputc(a->when == SC_DL_PLUS ? '+' : '-', out);
        dump_duration(out, a->n);
      }
      break;
    case SC_REOPEN: fprintf(out, " %s cap=%u", kind_names[a->kind], a->cap); break;
    case SC_JOIN: fprintf(out, " %s", sc->tasks[a->task].name); break;
    case SC_INJECT: fprintf(out, " %s", a->mode == 'e' ? "err-only" : "ready"); break;
    case SC_CONNECT:
    case SC_ACCEPT: fprintf(out, " %s", sc->streams[a->stream2].name); break;
    default: break;
  }
  dump_expect(out, a->expect);
  fputc('\n', out);
}

void sc_dump(const scenario *sc, FILE *out) {
  fprintf(out, "name %s\n", sc->name);
  if (sc->has_seed) fprintf(out, "seed %" PRIu64 "\n", sc->seed);
  fprintf(out, "seeds %" PRIu64 "-%" PRIu64 "\n", sc->seed_first, sc->seed_last);
  fprintf(out, "strategy %s\n", sc->strategy ? "pct" : "random");
  fprintf(out, "depth %d\n", sc->depth);
  if (sc->events_max > 0) fprintf(out, "events-max %d\n", sc->events_max);
  if (sc->quantum > 0) {
    fputs("quantum ", out);
    dump_duration(out, sc->quantum);
    fputc('\n', out);
  }
  if (sc->stickiness >= 0) fprintf(out, "stickiness %d\n", sc->stickiness);
  if (sc->max_rw > 0) fprintf(out, "max-rw %" PRId64 "\n", sc->max_rw);
  if (sc->conformance) fputs("conformance yes\n", out);
  if (!sc->faults.active) {
    fputs("faults none\n", out);
  } else {
    fputs("faults", out);
    for (size_t k = 0; k < FAULT_KINDS; k++)
      fprintf(out, " %s=%u", fault_names[k].name,
              *(const uint32_t *)((const char *)&sc->faults + fault_names[k].offset));
    fputs(" horizon=", out);
    dump_duration(out, sc->fault_horizon);
    fputc('\n', out);
  }
  for (int i = 0; i < sc->stream_count; i++)
    fprintf(out, "stream %s %s cap=%u\n", sc->streams[i].name, kind_names[sc->streams[i].kind],
            sc->streams[i].cap);
  for (int t = 0; t < sc->task_count; t++) {
    const sc_task *task = &sc->tasks[t];
    fprintf(out, "task %s", task->name);
    if (task->start > 0) {
      fputs(" start=", out);
      dump_duration(out, task->start);
    }
    fputc('\n', out);
    for (int i = task->first; i < task->first + task->count; i++) dump_action(sc, &sc->actions[i], out);
  }
}

int sc_write_replay(const scenario *sc, const char *comment, const char *build, FILE *out) {
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  if (mem == NULL) return -1;
  for (const char *c = comment; c != NULL && *c != 0;) {
    size_t n = strcspn(c, "\n");
    fprintf(mem, "# %.*s\n", (int)n, c);
    c += n + (c[n] == '\n');
  }
  fprintf(mem, "build %s\n", build);
  sc_dump(sc, mem);
  if (fclose(mem) != 0) {
    free(text);
    return -1;
  }
  int rc = fwrite(text, 1, len, out) == len ? 0 : -1;
  if (rc == 0 && fprintf(out, "checksum fnv1a64:%016" PRIx64 "\n", sc_fnv1a64(text, len)) < 0) rc = -1;
  free(text);
  return rc;
}

/* ---- generation ---------------------------------------------------------------------------- */

typedef struct gen {
  uint64_t s;
  scenario *sc;
} gen;

static uint64_t grand(gen *g) { /* splitmix64: the generator's own stream */
  uint64_t z = (g->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static uint64_t gbelow(gen *g, uint64_t n) { return n <= 1 ? 0 : grand(g) % n; }

static int gen_task(gen *g, const char *fmt, int id, int64_t start) {
  scenario *sc = g->sc;
  if (sc->task_count >= SC_TASKS_MAX) return -1;
  sc_task *t = &sc->tasks[sc->task_count];
  snprintf(t->name, sizeof(t->name), fmt, id);
  t->first = sc->action_count;
  t->count = 0;
  t->start = start;
  return sc->task_count++;
}

static void gen_act(gen *g, int task, sc_action a) {
  scenario *sc = g->sc;
  if (task < 0 || sc->action_count >= SC_ACTIONS_MAX) return;
  /* Actions of a task must be contiguous: only the newest task gets more. */
  if (task != sc->task_count - 1) return;
  if (a.expect == 0) a.expect = SC_R_ANY;
  if (a.op == SC_SLEEP || a.op == SC_JOIN || a.op == SC_BREAK || a.op == SC_POLL || a.op == SC_DESTROY)
    a.stream = -1;
  if (a.op != SC_JOIN) a.task = -1;
  sc->actions[sc->action_count++] = a;
  sc->tasks[task].count++;
}

static uint32_t gen_cap(gen *g) { return 1 + (uint32_t)gbelow(g, gbelow(g, 2) ? 64 : 8192); }

/* Room for one generation's actors (at most 5 tasks, 18 actions). */
static bool gen_room(const gen *g) {
  return g->sc->task_count + 5 <= SC_TASKS_MAX && g->sc->action_count + 18 <= SC_ACTIONS_MAX;
}

/* Sometimes a second library-side actor on the same generation: it queues
 * on the fd mutex behind the first (handle lifetime: np_free and destroy
 * must wait for it). On a pipe's write end it writes once: an np_wait_write
 * there may wait for ever, legitimately, as on Linux (edge-triggered, and a
 * pipe read makes an edge only when the pipe was full), holding the write
 * lock the other writer needs. On the read side it may first wait for
 * readiness a few times between the reader's reads (np_wait_read consumes
 * what a drained read counts on), under a read deadline of up to 5 ms.
 * Only where everything produced fits the buffer (may_wait): the wait
 * holds the read lock, and with data queued and the producer blocked on a
 * full buffer no edge would ever come (a setter may clear the deadline);
 * here the producer always finishes, and its shutdown or close is an edge. */
static void gen_queued(gen *g, int s, int id, int wait_generation, sc_op op, bool may_wait) {
  if (gbelow(g, 3) != 0) return;
  int t = gen_task(g, "queued%d", id, 0);
  if (wait_generation > 0) gen_act(g, t, (sc_action){.op = SC_WAIT_GEN, .stream = s, .n = wait_generation});
  if (op == SC_READ_ALL && may_wait && gbelow(g, 2) == 0) {
    for (int i = (int)gbelow(g, 4); i >= 0; i--) {
      int64_t bound = 1 + (int64_t)gbelow(g, 5000000);
      gen_act(g, t, (sc_action){.op = SC_DEADLINE, .stream = s, .mode = 'r', .when = SC_DL_PLUS, .n = bound});
      gen_act(g, t, (sc_action){.op = SC_WAIT_READ, .stream = s});
    }
    gen_act(g, t, (sc_action){.op = SC_DEADLINE, .stream = s, .mode = 'r', .when = SC_DL_NONE});
  }
  int64_t n = op == SC_WRITE ? 1 + (int64_t)gbelow(g, 256) : 0;
  gen_act(g, t, (sc_action){.op = op, .stream = s, .n = n});
}

/* The actors of one generation of a stream: library side and peer side.
 * Generation 1 of a declared stream exists from the start; later ones (and
 * every generation of an accepted stream) must be waited for. */
static void gen_stream_tasks(gen *g, int s, int generation) {
  scenario *sc = g->sc;
  bool accepted = sc->streams[s].kind == SC_ACCEPTED;
  sc_kind kind = accepted ? SC_SOCK : sc->streams[s].kind;
  int id = s * 10 + generation;
  int reader = -1, producer = -1, writer = -1, consumer = -1;
  sc_action wait = {.op = SC_WAIT_GEN, .stream = s, .n = generation};
  bool must_wait = accepted || generation > 1;
  int64_t produce = (int64_t)gbelow(g, 24 * 1024);
  if (kind != SC_PIPE_OUT) {
    reader = gen_task(g, "reader%d", id, 0);
    if (must_wait) gen_act(g, reader, wait);
    gen_act(g, reader, (sc_action){.op = SC_READ_ALL, .stream = s});
    producer = gen_task(g, "producer%d", id, 0);
    if (must_wait) gen_act(g, producer, wait);
    gen_act(g, producer, (sc_action){.op = SC_PRODUCE, .stream = s, .n = produce, .gap = 2000000});
    if (kind == SC_SOCK && gbelow(g, 10) == 0)
      gen_act(g, producer, (sc_action){.op = SC_PEER_RESET, .stream = s});
    gen_act(g, producer, (sc_action){.op = kind == SC_SOCK ? SC_PEER_SHUTDOWN : SC_PEER_CLOSE, .stream = s});
  }
  if (kind != SC_PIPE_IN) {
    writer = gen_task(g, "writer%d", id, 0);
    if (must_wait) gen_act(g, writer, wait);
    gen_act(g, writer, (sc_action){.op = SC_WRITE_ALL, .stream = s, .n = (int64_t)gbelow(g, 24 * 1024)});
    if (reader >= 0) gen_act(g, writer, (sc_action){.op = SC_JOIN, .task = reader});
    gen_act(g, writer, (sc_action){.op = gbelow(g, 4) == 0 ? SC_FREE : SC_CLOSE, .stream = s});
    consumer = gen_task(g, "consumer%d", id, 0);
    if (must_wait) gen_act(g, consumer, wait);
    gen_act(g, consumer, (sc_action){.op = SC_CONSUME, .stream = s});
    if (producer >= 0) gen_act(g, consumer, (sc_action){.op = SC_JOIN, .task = producer});
    gen_act(g, consumer, (sc_action){.op = SC_PEER_CLOSE, .stream = s});
  } else {
    /* pipe-in: the reader closes its end when done; the producer closed the peer. */
    int closer = gen_task(g, "closer%d", id, 0);
    if (must_wait) gen_act(g, closer, wait);
    gen_act(g, closer, (sc_action){.op = SC_JOIN, .task = reader});
    gen_act(g, closer, (sc_action){.op = SC_CLOSE, .stream = s});
  }
  bool fits = !must_wait && produce <= (int64_t)sc->streams[s].cap; /* generation 1: its cap is known */
  gen_queued(g, s, id, must_wait ? generation : 0, kind != SC_PIPE_OUT ? SC_READ_ALL : SC_WRITE, fits);
}

static void gen_faults(gen *g) {
  scenario *sc = g->sc;
  static const uint32_t rates[] = {0, 0, 0, 10000, 50000, 200000};
  sc->faults.epoll_eintr = rates[gbelow(g, 6)];
  sc->faults.rw_eintr = rates[gbelow(g, 6)];
  sc->faults.spurious_eagain = rates[gbelow(g, 6)];
  sc->faults.short_io = rates[gbelow(g, 6)];
  sc->faults.urgent = sc->faults.short_io / 2; /* no draw of its own: seeds keep their worlds */
  sc->faults.spurious_ready = rates[gbelow(g, 6)];
  sc->faults.err_only = rates[gbelow(g, 6)] / 4;
  sc->faults.maxevents_cut = rates[gbelow(g, 6)];
  sc->faults.active = true;
  sc->fault_horizon = 1 + (int64_t)gbelow(g, 30000000);
}

/* Closers: close a stream and maybe reopen it (the kernel reuses the fd
 * number, the cache the pd); the reopened generation gets new actors. */
static void gen_closers(gen *g, int streams) {
  scenario *sc = g->sc;
  int generations[SC_STREAMS_MAX];
  for (int s = 0; s < streams; s++) generations[s] = 1;
  int closers = (int)gbelow(g, 4);
  for (int c = 0; c < closers && gen_room(g); c++) {
    int s = (int)gbelow(g, (uint64_t)streams);
    int t = gen_task(g, "killer%d", c, 0);
    /* Kill the generation that is newest now (a chain: a later killer
     * waits for the reopen of an earlier one). */
    if (generations[s] > 1) gen_act(g, t, (sc_action){.op = SC_WAIT_GEN, .stream = s, .n = generations[s]});
    gen_act(g, t, (sc_action){.op = SC_SLEEP, .n = (int64_t)gbelow(g, 10000000)});
    gen_act(g, t, (sc_action){.op = gbelow(g, 3) == 0 ? SC_FREE : SC_CLOSE, .stream = s});
    if (gbelow(g, 10) < 7 && generations[s] < 4 && gen_room(g)) {
      sc_kind kind = (sc_kind)gbelow(g, 3);
      gen_act(g, t, (sc_action){.op = SC_REOPEN, .stream = s, .kind = kind, .cap = gen_cap(g)});
      generations[s]++;
      sc_kind saved = sc->streams[s].kind;
      sc->streams[s].kind = kind; /* gen_stream_tasks reads the kind of this generation */
      gen_stream_tasks(g, s, generations[s]);
      sc->streams[s].kind = saved;
    }
  }
}

static sc_action gen_deadline(gen *g, int streams) {
  static const int modes[] = {'r', 'w', 'r' + 'w'};
  sc_action a = {.op = SC_DEADLINE, .stream = (int)gbelow(g, (uint64_t)streams), .mode = modes[gbelow(g, 3)]};
  switch (gbelow(g, 7)) {
    case 0: a.when = SC_DL_NONE; break;
    case 1: a.when = SC_DL_MINUS, a.n = 1 + (int64_t)gbelow(g, 1000000); break;
    case 2: a.when = SC_DL_NOW; break;
    case 3: a.when = SC_DL_PLUS, a.n = 1 + (int64_t)gbelow(g, 1000); break;
    case 4: a.when = SC_DL_PLUS, a.n = 1 + (int64_t)gbelow(g, 5000000); break;
    case 5: a.when = SC_DL_PLUS, a.n = 1000000000; break;
    default: a.when = SC_DL_MAX; break;
  }
  return a;
}

static void gen_setter(gen *g, int streams) {
  if (gbelow(g, 10) >= 7 || g->sc->task_count >= SC_TASKS_MAX) return;
  int t = gen_task(g, "setter%d", 0, 0);
  int rounds = 1 + (int)gbelow(g, 24); /* 48 + 3 actions: within the reserve below */
  for (int i = 0; i < rounds; i++) {
    gen_act(g, t, (sc_action){.op = SC_SLEEP, .n = (int64_t)gbelow(g, 3000000)});
    gen_act(g, t, gen_deadline(g, streams));
  }
  /* Liveness phase: no deadline may keep anybody from finishing. */
  for (int s = 0; s < streams; s++)
    gen_act(g, t, (sc_action){.op = SC_DEADLINE, .stream = s, .mode = 'r' + 'w', .when = SC_DL_NONE});
}

/* A listener: connections accepted as generations of an accepted stream,
 * each with its own actors; aborted connections are made again. */
static void gen_listener(gen *g, bool faults) {
  scenario *sc = g->sc;
  if (gbelow(g, 10) >= 3 || sc->stream_count + 2 > SC_STREAMS_MAX ||
      sc->task_count + 3 + 5 * 3 > SC_TASKS_MAX || sc->action_count + 8 + 18 * 3 > SC_ACTIONS_MAX)
    return;
  int l = sc->stream_count++, c = sc->stream_count++;
  snprintf(sc->streams[l].name, sizeof(sc->streams[l].name), "l%d", l);
  sc->streams[l].kind = SC_LISTEN;
  sc->streams[l].cap = 1;
  snprintf(sc->streams[c].name, sizeof(sc->streams[c].name), "c%d", c);
  sc->streams[c].kind = SC_ACCEPTED;
  sc->streams[c].cap = 4096;
  int k = 1 + (int)gbelow(g, 3);
  int acceptor = gen_task(g, "acceptor%d", l, 0);
  for (int i = 0; i < k; i++) gen_act(g, acceptor, (sc_action){.op = SC_ACCEPT, .stream = l, .stream2 = c});
  int connector = gen_task(g, "connector%d", l, 0);
  for (int i = 0; i < k; i++) {
    gen_act(g, connector, (sc_action){.op = SC_SLEEP, .n = (int64_t)gbelow(g, 3000000)});
    gen_act(g, connector, (sc_action){.op = SC_CONNECT, .stream = l, .stream2 = c});
  }
  int closer = gen_task(g, "lcloser%d", l, 0);
  gen_act(g, closer, (sc_action){.op = SC_JOIN, .task = acceptor});
  gen_act(g, closer, (sc_action){.op = SC_CLOSE, .stream = l});
  for (int i = 1; i <= k; i++) gen_stream_tasks(g, c, i);
  if (faults) {
    static const uint32_t rates[] = {0, 0, 100000, 300000};
    sc->faults.accept_abort = rates[gbelow(g, 4)];
    sc->faults.accept_emfile = rates[gbelow(g, 4)];
  }
}

/* Sometimes the poller's handles all end at once (np_poller_destroy's
 * handle half), while actors are inside calls on them. */
static void gen_destroyer(gen *g) {
  if (gbelow(g, 10) != 0 || g->sc->task_count >= SC_TASKS_MAX) return;
  int t = gen_task(g, "destroyer%d", 0, 0);
  gen_act(g, t, (sc_action){.op = SC_SLEEP, .n = (int64_t)gbelow(g, 20000000)});
  gen_act(g, t, (sc_action){.op = SC_DESTROY});
}

static void gen_nbpoller(gen *g) {
  if (gbelow(g, 10) >= 3 || g->sc->task_count >= SC_TASKS_MAX) return;
  int t = gen_task(g, "nbpoller%d", 0, 0);
  int rounds = 1 + (int)gbelow(g, 100); /* at most 200 actions */
  for (int i = 0; i < rounds; i++) {
    gen_act(g, t, (sc_action){.op = SC_SLEEP, .n = gbelow(g, 2) ? 0 : (int64_t)gbelow(g, 1000000)});
    gen_act(g, t, (sc_action){.op = SC_POLL});
  }
}

/* Sometimes many deadlines at once: 4-9 streams nobody does I/O on, and a
 * task that arms, moves and clears their read and write deadlines apart, in
 * random order (100 us apart, each 1-21 ms ahead), so the poller's heap
 * holds up to 18 more timers and loses them from its middle, not only its
 * root. A removal without its sift-up needs six entries to show; the worlds
 * of 1-3 streams never had them (m47 lived through 3000 + 3000 seeds).
 * Drawn last, so the worlds before it keep their actions. */
static void gen_timer_storm(gen *g) {
  scenario *sc = g->sc;
  if (gbelow(g, 10) >= 3 || sc->stream_count + 3 > SC_STREAMS_MAX || sc->task_count >= SC_TASKS_MAX ||
      sc->action_count + 2 * 64 + SC_STREAMS_MAX > SC_ACTIONS_MAX)
    return;
  int first = sc->stream_count, n = 4 + (int)gbelow(g, 6);
  for (int i = 0; i < n && sc->stream_count < SC_STREAMS_MAX; i++) {
    sc_stream *st = &sc->streams[sc->stream_count];
    snprintf(st->name, sizeof(st->name), "d%d", sc->stream_count++);
    st->kind = (sc_kind)gbelow(g, 3);
    st->cap = gen_cap(g);
  }
  int t = gen_task(g, "timers%d", 0, 0);
  int rounds = 16 + (int)gbelow(g, 48);
  for (int i = 0; i < rounds; i++) {
    gen_act(g, t, (sc_action){.op = SC_SLEEP, .n = (int64_t)gbelow(g, 200000)});
    sc_action a = {.op = SC_DEADLINE,
                   .stream = first + (int)gbelow(g, (uint64_t)(sc->stream_count - first)),
                   .mode = gbelow(g, 2) ? 'r' : 'w',
                   .when = SC_DL_PLUS,
                   .n = 1000000 + (int64_t)gbelow(g, 20000000)};
    if (gbelow(g, 3) == 0) a.when = SC_DL_NONE; /* a removal, wherever it sits */
    gen_act(g, t, a);
  }
  for (int s = first; s < sc->stream_count; s++)
    gen_act(g, t, (sc_action){.op = SC_DEADLINE, .stream = s, .mode = 'r' + 'w', .when = SC_DL_NONE});
}

/* The largest read or write syscall (fd.c's MAX_RW): 1 GiB, as natively,
 * in half the worlds, else small, so that np_write's split of one call
 * into several syscalls, each from where the last stopped, runs with
 * partial writes, faults and closes around it. Hand-written scenarios keep
 * 1 GiB unless they say max-rw: their oracles (and the conformance test's
 * real epoll) expect one read to take what one peer write gave. */
static int64_t gen_max_rw(gen *g) {
  uint64_t pick = gbelow(g, 100);
  if (pick < 50) return 0;
  if (pick < 85) return 256 + (int64_t)gbelow(g, 3841);
  return 1 + (int64_t)gbelow(g, 255);
}

void sc_generate(uint64_t seed, bool faults, scenario *sc) {
  gen g = {.s = seed ^ 0x5ce7a1105ce7a110ull, .sc = sc};
  defaults(sc);
  snprintf(sc->name, sizeof(sc->name), "random-%" PRIu64, seed);
  sc->seed_first = sc->seed_last = seed;
  sc->events_max = 1 + (int)gbelow(&g, 8);
  if (faults) gen_faults(&g);
  int streams = 1 + (int)gbelow(&g, 3);
  for (int s = 0; s < streams; s++) {
    sc_stream *st = &sc->streams[sc->stream_count++];
    snprintf(st->name, sizeof(st->name), "s%d", s);
    st->kind = (sc_kind)gbelow(&g, 3);
    st->cap = gen_cap(&g);
    gen_stream_tasks(&g, s, 1);
  }
  gen_closers(&g, streams);
  gen_setter(&g, streams);
  gen_listener(&g, faults);
  gen_destroyer(&g);
  gen_nbpoller(&g);
  gen_timer_storm(&g);
  sc->max_rw = gen_max_rw(&g); /* drawn last: earlier worlds keep their actions */
}
