/*
 * sched.h - the deterministic scheduler: cooperative tasks on one OS thread,
 * a virtual clock, the run's only PRNG, two strategies (random walk, PCT),
 * and the trace ring. One 64-bit seed determines the whole run.
 *
 * It must never read the real clock or any other source of
 * non-determinism, and never let two tasks run between schedule points.
 */
#ifndef SIM_SCHED_H
#define SIM_SCHED_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "port_sim.h"

typedef enum sim_task_state {
  SIM_RUNNABLE,
  SIM_BLOCKED, /* mutex, sema, epoll, sleep, join: see block_reason */
  SIM_PARKED,  /* np__park committed; only np__unpark makes it runnable */
  SIM_DONE
} sim_task_state;

typedef struct sim_task {
  int id;
  char name[24];
  sim_task_state state;
  const char *block_reason; /* static string, for hang reports */
  int64_t wake_at;          /* virtual ns a blocked task times out at; -1 never */
  bool timed_out;           /* set when woken by wake_at */
  void *sp;                 /* saved stack pointer (asm switch) */
  void *stack;
  size_t stack_size;
  void (*fn)(void *);
  void *arg;
  struct sim_task *next_wait; /* intrusive FIFO for mutex / sema waiters */
  np__waiter *waiter;         /* set while parked (traces, I1) */
  uint64_t priority;          /* PCT */
  void *asan_fake_stack;
  int64_t op_start;             /* virtual time the actor's current op began (oracles) */
  uint64_t op_step;             /* schedule step the actor's current op began (oracles) */
  uint64_t io_offset;           /* stream offset of this task's last read (set by the kernel) */
  bool pure_wait;               /* inside np_wait_*: parked without a syscall having said EAGAIN */
  uint64_t park_step;           /* schedule step of its last committed park (I14) */
  void *actor;                  /* world data */
  struct sim_task *join_target; /* task this one waits for in sim_join */
  void *port_sched;             /* the runtime scheduler this simulated thread is (rt_world), or NULL */
} sim_task;

typedef enum sim_strategy { SIM_RANDOM = 0, SIM_PCT = 1 } sim_strategy;

/* Tasks at once (live or finished). From SIM_TASKS_REUSE on, sim_spawn
 * reuses a finished task's slot before it makes a new one: a server's task
 * per connection does not grow the table that every pick scans, and runs
 * below it are traced as before. */
#define SIM_TASKS_MAX 1024
#define SIM_TASKS_REUSE 256
#define SIM_TRACE_RING 4096

typedef struct sim_trace_entry {
  uint64_t step;
  int64_t time;
  uint64_t old_value, new_value;
  const void *addr;
  uint16_t task;
  uint8_t op;
} sim_trace_entry;

typedef struct sim_config {
  uint64_t seed;
  sim_strategy strategy;
  int pct_depth;          /* PCT bug depth d (change points = d - 1) */
  uint64_t step_limit;    /* a run longer than this is a hang */
  bool check_every_step;  /* run the state invariant checker at each point */
  FILE *trace_out;        /* if set, every trace line is printed live */
  const uint8_t *choices; /* if set, random decisions are read from here first (fuzzing) */
  size_t choices_len;
  bool allow_stuck;   /* a run where tasks block forever, with every quiescence
                         invariant holding, ends quietly (fuzzed programs may
                         legitimately wait forever) instead of failing I8 */
  uint64_t pct_steps; /* PCT: the run length k the d-1 change points are spread
                         over, uniformly in [1, k] (0: SIM_PCT_STEPS_DEFAULT);
                         sim_world_run (run.h) measures it with a probe run */
} sim_config;

#define SIM_PCT_STEPS_DEFAULT 20000

/* PCT bookkeeping of the last run (for npsim replay and its test): the run
 * length k the change points were drawn from, how many there were, and how
 * many the run reached. */
typedef struct sim_pct_stats {
  uint64_t k;
  int points, reached;
} sim_pct_stats;
extern sim_pct_stats sim_pct_last;

/* Virtual time never passes 100 years: durations are capped one by one, but
 * their sum is not, and int64 nanoseconds end at 292 years. A run that
 * would go further fails with SIM_INPUT_ERROR: the input's fault, never a
 * verdict on the library. */
#define SIM_TIME_MAX_NS INT64_C(3153600000000000000)
#define SIM_INPUT_ERROR "input error: "
/* True for a failure message that blames the input, not the library. */
bool sim_failure_is_input_error(const char *failure);

/* Called at every schedule point (state invariants) and at quiescence. */
typedef void (*sim_check_fn)(void *ctx, bool quiescent);
typedef void (*sim_format_fn)(void *ctx, const sim_trace_entry *e, char *buf, size_t len);

typedef struct sim_sched {
  sim_config cfg;
  uint64_t rng[4];
  sim_task *tasks[SIM_TASKS_MAX];
  int task_count;
  /* The runnable tasks of the table, by id (sched.c's set_state keeps it):
   * pick finds them without scanning every task. */
  uint64_t runnable_bits[SIM_TASKS_MAX / 64];
  int runnable_count;
  sim_task *current;
  sim_task main_task; /* the OS thread's own context */
  int64_t now;
  uint64_t steps;
  uint64_t switches;
  uint64_t trace_hash;
  uint64_t ring_len;
  uint64_t pct_changes[16];
  int pct_change_count;
  int64_t quantum;     /* sleeps end on multiples of this (swarm): actors that wake together race */
  uint32_t stickiness; /* per million: keep running the current task at a point (swarm, from the seed) */
  sim_check_fn check;
  sim_format_fn format;
  void *ctx;
  bool in_check;
  bool failed;
  bool stuck; /* ended by allow_stuck */
  size_t choices_pos;
  char failure[512];
  jmp_buf fail_jmp; /* longjmp target in sim_run on failure */
  uint32_t next_object_id;
  /* Last: sim_init does not clear it (ring_len says what is valid); at
   * thousands of runs a second the 200 KB clear was a fifth of the time. */
  sim_trace_entry ring[SIM_TRACE_RING];
} sim_sched;

extern sim_sched *sim;

void sim_init(sim_sched *s, const sim_config *cfg);
void sim_fini(sim_sched *s);
sim_task *sim_spawn(const char *name, void (*fn)(void *), void *arg);
/* sim_spawn with a stack of stack_size bytes (rounded up to pages, at
 * least 16 KiB; a guard page below). */
sim_task *sim_spawn_stack(const char *name, void (*fn)(void *), void *arg, size_t stack_size);
/* How much larger this build's stacks are (sanitizer frames): 1, or 8 under ASan. */
size_t sim_stack_scale(void);
/* The task whose stack a fault at address fault overflowed (its guard
 * page, or the running task with stack pointer sp below its stack), or
 * NULL. For a SIGSEGV handler: reads the task table only. */
const sim_task *sim_stack_overflowed(const void *fault, const void *sp);
/* Whether sim_spawn can make one more task (it fails the run otherwise). */
bool sim_spawn_room(void);
/* Runs until every task is done. Returns 0, or -1 on a failure (sim->failure). */
int sim_run(sim_sched *s, sim_check_fn check, sim_format_fn format, void *ctx);

/* PRNG (xoshiro256**); the only randomness in a run. */
uint64_t sim_rand(void);
uint64_t sim_rand_below(uint64_t n); /* uniform in [0, n) */
bool sim_chance(uint32_t per_million);

/* Blocking primitives for the port and the simulated kernel. */
bool sim_block(const char *reason, int64_t wake_at); /* true if timed out */
void sim_wake(sim_task *t);
void sim_sleep(int64_t ns);
void sim_join(sim_task *t);

/* Failure: records the message and unwinds the run (never returns). */
_Noreturn void sim_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void sim_trace_print(FILE *out, uint64_t last_lines);
const char *sim_op_name(sim_op op);

#endif
