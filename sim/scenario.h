/*
 * scenario.h - the scenario language: a small program the simulator runs
 * (and, for timing-independent ones, the real backend too). Random
 * campaigns generate scenarios; replay files are scenarios plus a seed; the
 * shrinker reduces them. The format is documented in sim/SCENARIOS.md.
 *
 * The parser must never crash, hang or leak on any input: every error is a
 * line-numbered message and a non-zero return.
 */
#ifndef SIM_SCENARIO_H
#define SIM_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kernel.h"

#define SC_STREAMS_MAX 16
#define SC_TASKS_MAX 32
#define SC_ACTIONS_MAX 512
#define SC_NAME_MAX 24
#define SC_WRITE_MAX 16384 /* bytes of one write action */
/* The simulator's clock ends at 100 years (SIM_TIME_MAX_NS in sched.h): a
 * task whose start and sleeps add up to more is rejected when parsed. */
#define SC_TIME_MAX_NS INT64_C(3153600000000000000)
/* Deadline actions per stream and direction: the world keeps each stream's
 * deadline history for its oracles in HIST_MAX (world.c) entries. */
#define SC_DEADLINES_MAX 96

typedef enum sc_kind { SC_PIPE_IN, SC_PIPE_OUT, SC_SOCK, SC_LISTEN, SC_ACCEPTED } sc_kind;

typedef enum sc_op {
  SC_SLEEP,
  SC_READ,
  SC_READ_ALL,
  SC_WRITE,
  SC_WRITE_ALL,
  SC_WAIT_READ,
  SC_WAIT_WRITE,
  SC_PRODUCE,
  SC_CONSUME,
  SC_PEER_WRITE,
  SC_PEER_CLOSE,
  SC_PEER_SHUTDOWN,
  SC_PEER_RESET,
  SC_DEADLINE,
  SC_CLOSE,
  SC_REOPEN,
  SC_WAIT_GEN,
  SC_JOIN,
  SC_BREAK,
  SC_POLL,
  SC_INJECT,
  SC_CONNECT,
  SC_ACCEPT,
  SC_FREE,    /* np_free S (closes first if open) */
  SC_DESTROY, /* np_poller_destroy's handle half: every handle freed */
  SC_OP_COUNT
} sc_op;

/* Results an action can have; an expectation is a set of them. */
enum {
  SC_R_OK = 1u << 0,          /* success (write, deadline, close, wait) */
  SC_R_DATA = 1u << 1,        /* read returned bytes */
  SC_R_EOF = 1u << 2,         /* read returned 0 */
  SC_R_TIMEOUT = 1u << 3,     /* NP_ETIMEOUT */
  SC_R_CLOSING = 1u << 4,     /* NP_ECLOSING */
  SC_R_NOTPOLLABLE = 1u << 5, /* NP_ENOTPOLLABLE */
  SC_R_RESET = 1u << 6,       /* -ECONNRESET */
  SC_R_EPIPE = 1u << 7,       /* -EPIPE */
  SC_R_AGAIN = 1u << 8,       /* -EAGAIN (peer syscalls) */
  SC_R_ERROR = 1u << 9,       /* any other error */
  SC_R_ANY = (1u << 10) - 1
};

/* Deadline values relative to the moment the action runs. */
typedef enum sc_when { SC_DL_NONE, SC_DL_NOW, SC_DL_PLUS, SC_DL_MINUS, SC_DL_MAX } sc_when;

typedef struct sc_action {
  sc_op op;
  int stream;      /* index into streams, or -1 */
  int stream2;     /* SC_CONNECT, SC_ACCEPT: the accepted stream */
  int task;        /* SC_JOIN target */
  int64_t n;       /* bytes, duration ns, generation, max */
  int64_t gap;     /* SC_PRODUCE: max pause between chunks */
  int mode;        /* SC_DEADLINE: 'r', 'w' or 'r'+'w'; SC_INJECT: 'e' err-only, 's' spurious */
  sc_when when;    /* SC_DEADLINE */
  sc_kind kind;    /* SC_REOPEN */
  uint32_t cap;    /* SC_REOPEN */
  unsigned expect; /* SC_R_* set; SC_R_ANY if not given */
  int line;        /* source line, for messages */
} sc_action;

typedef struct sc_task {
  char name[SC_NAME_MAX];
  int64_t start;    /* virtual ns */
  int first, count; /* slice of scenario.actions */
} sc_task;

typedef struct sc_stream {
  char name[SC_NAME_MAX];
  sc_kind kind;
  uint32_t cap;
} sc_stream;

typedef struct scenario {
  char name[64];
  uint64_t seed_first, seed_last; /* schedules to explore */
  bool has_seed;                  /* a replay file: run exactly this seed */
  uint64_t seed;
  int strategy; /* 0 random, 1 pct */
  int depth;
  int events_max;     /* 0: drawn from the seed */
  int64_t quantum;    /* -1: drawn from the seed */
  int32_t stickiness; /* -1: drawn from the seed */
  int64_t max_rw;     /* largest read or write syscall (fd.c's MAX_RW); 0: 1 GiB */
  bool conformance;   /* outcome independent of timing: also run on real epoll */
  kern_faults faults;
  int64_t fault_horizon;
  sc_stream streams[SC_STREAMS_MAX];
  int stream_count;
  sc_task tasks[SC_TASKS_MAX];
  int task_count;
  sc_action actions[SC_ACTIONS_MAX];
  int action_count;
  bool has_build; /* a replay file: "build ID", checked against this build */
  char build[64];
} scenario;

/* Parses text (len bytes, need not be NUL-terminated). Returns 0, or -1
 * with "LINE: message" in err. */
int sc_parse(const char *text, size_t len, scenario *out, char *err, size_t err_len);
int sc_parse_file(const char *path, scenario *out, char *err, size_t err_len);
/* Writes a scenario that sc_parse reads back to the same struct (without
 * the build line, which only replay files carry). */
void sc_dump(const scenario *sc, FILE *out);
/* A replay file: "# COMMENT" lines (comment may be NULL or hold newlines),
 * "build BUILD", the scenario, then "checksum fnv1a64:HEX" over every byte
 * before it, so that a damaged or truncated file is rejected. Returns 0 or
 * -1 (errno). */
int sc_write_replay(const scenario *sc, const char *comment, const char *build, FILE *out);
/* Scenario names become file names: [A-Za-z0-9_][A-Za-z0-9_.-]*, no "..". */
bool sc_valid_scenario_name(const char *s);
uint64_t sc_fnv1a64(const char *p, size_t n);
/* Rewrites s (capacity cap) with bytes outside printable ASCII, and '\',
 * as \xNN: error messages never echo raw input bytes. */
void sc_escape(char *s, size_t cap);
/* A random world, from the seed alone (its own PRNG stream). */
void sc_generate(uint64_t seed, bool faults, scenario *out);
/* Checks cross references (join targets, streams); 0 or -1 with a message. */
int sc_validate(const scenario *sc, char *err, size_t err_len);

const char *sc_op_name(sc_op op);
/* The result class (SC_R_*) of an action's return value: bytes or 0 for
 * reads (data / eof), 0 for others (ok), NP_E* and -errno otherwise. Shared
 * by the simulator and the native conformance runner. */
unsigned sc_classify(int64_t v, bool read);
const char *sc_result_name(unsigned bit);

#endif
