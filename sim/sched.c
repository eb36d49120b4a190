/*
 * sched.c - cooperative tasks, the virtual clock, the PRNG, the random-walk
 * and PCT strategies (Burckhardt et al., ASPLOS 2010), blocking primitives,
 * the sim side of the port (mutex, park, sema, clock) and the trace ring.
 */
#include "sched.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "np_internal.h"
#include "sched_core.h"

#if defined(__SANITIZE_ADDRESS__)
#define SIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIM_ASAN 1
#endif
#endif
#ifdef SIM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define SIM_STACK_SIZE (512 * 1024)
#else
#define SIM_STACK_SIZE (64 * 1024)
#endif

sim_sched *sim;
sim_pct_stats sim_pct_last;
void (*sim_on_store)(const void *addr, uint64_t old_value, uint64_t new_value);

/* ---- context switch ----------------------------------------------------
 * The library's own switch (netpoll/src/ctx.c: callee-saved registers and
 * the stack pointer, x86-64), so the simulator switches exactly as the task
 * runtime does. The stack layout below is np__ctx_make's: the first switch
 * "returns" into task_entry. ASan bookkeeping stays here (the simulator
 * learns the main stack's bounds from its first switch). */
void np__ctx_asm_switch(void **from_sp, void *to_sp);
#define sim_ctx_switch np__ctx_asm_switch

static void task_entry(void);

static void stack_prepare(sim_task *t) {
  uintptr_t top = ((uintptr_t)t->stack + t->stack_size) & ~(uintptr_t)15;
  void **sp = (void **)top;
  *--sp = NULL;                             /* fake return address of task_entry (never returns) */
  *--sp = (void *)task_entry;               /* where the first switch's ret lands */
  for (int i = 0; i < 6; i++) *--sp = NULL; /* rbp rbx r12 r13 r14 r15 */
  t->sp = sp;
}

static void switch_to(sim_task *next) {
  sim_task *prev = sim->current;
  if (prev == next) return;
  sim->current = next;
  sim->switches++;
#ifdef SIM_ASAN
  __sanitizer_start_switch_fiber(prev->state == SIM_DONE ? NULL : &prev->asan_fake_stack, next->stack,
                                 next->stack_size);
#endif
  sim_ctx_switch(&prev->sp, next->sp);
#ifdef SIM_ASAN
  const void *from_bottom;
  size_t from_size;
  __sanitizer_finish_switch_fiber(sim->current->asan_fake_stack, &from_bottom, &from_size);
  if (sim->main_task.stack == NULL && prev == &sim->main_task) {
    sim->main_task.stack = (void *)from_bottom;
    sim->main_task.stack_size = from_size;
  }
#endif
}

/* ---- PRNG ----------------------------------------------------------------- */
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t sim_rand(void) {
  uint64_t *s = sim->rng;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

/* With a choice buffer (fuzzing), decisions come from its bytes while they
 * last, so coverage guidance steers interleavings and faults; then the
 * PRNG (seeded from the buffer by the caller) takes over. */
uint64_t sim_rand_below(uint64_t n) {
  if (n <= 1) return 0;
  if (sim->cfg.choices != NULL && sim->choices_pos < sim->cfg.choices_len) {
    uint64_t v = 0;
    for (uint64_t span = n - 1; span > 0 && sim->choices_pos < sim->cfg.choices_len; span >>= 8)
      v = (v << 8) | sim->cfg.choices[sim->choices_pos++];
    return v % n;
  }
  return (uint64_t)(((unsigned __int128)sim_rand() * n) >> 64);
}

bool sim_chance(uint32_t per_million) { return per_million > 0 && sim_rand_below(1000000) < per_million; }

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* ---- lifecycle -------------------------------------------------------------- */

/* PCT (Burckhardt et al., ASPLOS 2010): tasks get random initial priorities
 * above d (sim_spawn); d-1 change points k_1..k_{d-1} are drawn uniformly
 * from [1, k], k the length of the run; at step k_i the running task drops
 * to priority i. The points come from their own stream (not the run's
 * PRNG), so a run with change points is the run without them up to the
 * first point: a probe with d = 1 measures exactly the k this run has. */
static void pct_init(sim_sched *s) {
  int depth = s->cfg.pct_depth < 1 ? 3 : s->cfg.pct_depth;
  if (depth > 16) depth = 16;
  s->cfg.pct_depth = depth;
  uint64_t k = s->cfg.pct_steps > 0 ? s->cfg.pct_steps : SIM_PCT_STEPS_DEFAULT;
  uint64_t x = s->cfg.seed ^ 0x9c7c4a1e5d3b2f01ull;
  for (int i = 0; i < depth - 1; i++) s->pct_changes[i] = 1 + splitmix64(&x) % k;
  s->pct_change_count = depth - 1;
  sim_pct_last = (sim_pct_stats){.k = k, .points = depth - 1};
}

bool sim_failure_is_input_error(const char *failure) {
  return strncmp(failure, SIM_INPUT_ERROR, strlen(SIM_INPUT_ERROR)) == 0;
}

static _Noreturn void time_limit(int64_t until) {
  sim_fail(SIM_INPUT_ERROR "virtual time would pass 100 years (at %" PRId64
                           " ns the next wake-up is at %" PRId64
                           " ns): the scenario's durations add up to more than the simulator's clock",
           sim->now, until);
}

static void panic_hook(const char *file, int line, const char *msg) {
  sim_fail("core invariant: %s (%s:%d)", msg, file, line);
}

size_t sim_max_rw = (size_t)1 << 30;

void sim_init(sim_sched *s, const sim_config *cfg) {
  memset(s, 0, offsetof(sim_sched, ring)); /* the ring is valid up to ring_len only */
  s->cfg = *cfg;
  if (s->cfg.step_limit == 0) s->cfg.step_limit = 2000000;
  uint64_t x = cfg->seed;
  for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
  s->current = &s->main_task;
  sim_max_rw = (size_t)1 << 30;
  sim_thread_fail_ppm = 0;
  s->main_task.id = -1;
  s->main_task.state = SIM_RUNNABLE;
  s->trace_hash = 1469598103934665603ull;
  sim = s;
  extern void (*np__panic_hook)(const char *, int, const char *);
  np__panic_hook = panic_hook;
  static const uint32_t stickiness[] = {0, 500000, 900000, 980000, 995000};
  s->stickiness = stickiness[sim_rand_below(5)];
  static const int64_t quanta[] = {1, 10000, 100000, 250000, 1000000};
  s->quantum = quanta[sim_rand_below(5)];
  sim_pct_last = (sim_pct_stats){0};
  if (s->cfg.strategy == SIM_PCT) pct_init(s);
}

/* Task stacks: mmap'd with a guard page below, as the runtime's
 * (netpoll/src/stack.c), so an overflow faults instead of corrupting the
 * next allocation (sim_stack_overflowed names the task). Stacks are
 * reused across runs, by size (a fuzzer makes thousands of runs a
 * second; mapping and faulting in fresh stacks dominated under ASan). */
#define STACK_POOL_MAX 64
#define STACK_GUARD 4096
static struct {
  void *stack;
  size_t size;
} stack_pool[STACK_POOL_MAX];
static int stack_pool_len;

size_t sim_stack_scale(void) { return SIM_STACK_SIZE / (64 * 1024); }

static size_t stack_round(size_t size) { return (size + STACK_GUARD - 1) & ~(size_t)(STACK_GUARD - 1); }

static void *stack_map(size_t size) {
  size_t len = stack_round(size) + STACK_GUARD;
  char *m =
      mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (m == MAP_FAILED) return NULL;
  if (mprotect(m, STACK_GUARD, PROT_NONE) != 0) {
    munmap(m, len);
    return NULL;
  }
#ifdef SIM_ASAN
  /* The address may be an unmapped stack's, whose frames' redzones are
   * still in the shadow (this ASan does not clear it at munmap). */
  ASAN_UNPOISON_MEMORY_REGION(m + STACK_GUARD, stack_round(size));
#endif
  return m + STACK_GUARD;
}

static void stack_unmap(void *stack, size_t size) {
  munmap((char *)stack - STACK_GUARD, stack_round(size) + STACK_GUARD);
}

static void *stack_get(size_t size) {
  for (int i = stack_pool_len - 1; i >= 0; i--) {
    if (stack_pool[i].size != size) continue;
    void *stack = stack_pool[i].stack;
    stack_pool[i] = stack_pool[--stack_pool_len];
#ifdef SIM_ASAN
    /* Frames of the stack's last task left redzones behind. */
    ASAN_UNPOISON_MEMORY_REGION(stack, size);
#endif
    return stack;
  }
  return stack_map(size);
}

static void stack_put(void *stack, size_t size) {
  if (stack == NULL) return;
  if (stack_pool_len < STACK_POOL_MAX) {
    stack_pool[stack_pool_len].stack = stack;
    stack_pool[stack_pool_len++].size = size;
  } else {
    stack_unmap(stack, size);
  }
}

const sim_task *sim_stack_overflowed(const void *fault, const void *sp) {
  if (sim == NULL) return NULL;
  for (int i = 0; i < sim->task_count; i++) {
    const sim_task *t = sim->tasks[i];
    const char *lo = t->stack;
    if (lo == NULL) continue;
    bool in_guard = (const char *)fault >= lo - STACK_GUARD && (const char *)fault < lo;
    bool sp_below = t == sim->current && (const char *)sp < lo + 256 && (const char *)sp >= lo - (1 << 20);
    if (in_guard || sp_below) return t;
  }
  return NULL;
}

void sim_fini(sim_sched *s) {
  for (int i = 0; i < s->task_count; i++) {
    stack_put(s->tasks[i]->stack, s->tasks[i]->stack_size);
    free(s->tasks[i]);
  }
  s->task_count = 0;
  extern void (*np__panic_hook)(const char *, int, const char *);
  np__panic_hook = NULL;
  sim_on_store = NULL;
  if (sim == s) sim = NULL;
}

/* Every state change of a task in the table goes through here, to keep
 * the runnable bitmap; the main context is not in the table. */
static void set_state(sim_task *t, sim_task_state state) {
  if (t != &sim->main_task && (t->state == SIM_RUNNABLE) != (state == SIM_RUNNABLE)) {
    uint64_t bit = UINT64_C(1) << (t->id % 64);
    sim->runnable_bits[t->id / 64] ^= bit;
    sim->runnable_count += state == SIM_RUNNABLE ? 1 : -1;
  }
  t->state = state;
}

/* The slot, struct and stack of a finished task, for sim_spawn (see
 * SIM_TASKS_REUSE); ids stay the slot's. */
static bool joined(const sim_task *t) { /* a joiner woken by its end has not run yet */
  for (int i = 0; i < sim->task_count; i++)
    if (sim->tasks[i]->join_target == t) return true;
  return false;
}

static bool reusable(const sim_task *t) { return t->state == SIM_DONE && t != sim->current && !joined(t); }

static sim_task *reuse_done(void) {
  for (int i = 0; i < sim->task_count; i++) {
    sim_task *t = sim->tasks[i];
    if (!reusable(t)) continue;
    void *stack = t->stack;
    size_t size = t->stack_size;
#ifdef SIM_ASAN
    ASAN_UNPOISON_MEMORY_REGION(stack, size);
#endif
    memset(t, 0, sizeof(*t));
    t->id = i;
    t->state = SIM_DONE; /* as its bit says, until sim_spawn makes it runnable */
    t->stack = stack;
    t->stack_size = size;
    return t;
  }
  return NULL;
}

bool sim_spawn_room(void) {
  if (sim->task_count < SIM_TASKS_MAX) return true;
  for (int i = 0; i < sim->task_count; i++)
    if (reusable(sim->tasks[i])) return true;
  return false;
}

sim_task *sim_spawn(const char *name, void (*fn)(void *), void *arg) {
  return sim_spawn_stack(name, fn, arg, SIM_STACK_SIZE);
}

sim_task *sim_spawn_stack(const char *name, void (*fn)(void *), void *arg, size_t stack_size) {
  sim_task *t = sim->task_count >= SIM_TASKS_REUSE ? reuse_done() : NULL;
  bool fresh = t == NULL;
  if (fresh) {
    if (sim->task_count >= SIM_TASKS_MAX) sim_fail("too many tasks (%d at once)", SIM_TASKS_MAX);
    t = calloc(1, sizeof(*t));
    if (t == NULL) sim_fail("out of memory");
    t->id = sim->task_count;
    t->state = SIM_DONE; /* its bit is clear */
  }
  snprintf(t->name, sizeof(t->name), "%s", name);
  set_state(t, SIM_RUNNABLE);
  t->wake_at = -1;
  t->fn = fn;
  t->arg = arg;
  size_t size = stack_size < 16384 ? 16384 : stack_round(stack_size);
  if (t->stack != NULL && t->stack_size != size) {
    stack_put(t->stack, t->stack_size);
    t->stack = NULL;
  }
  t->stack_size = size;
  if (t->stack == NULL) t->stack = stack_get(size);
  if (t->stack == NULL) sim_fail("out of memory");
  /* PCT: initial priorities above every change-point priority. */
  t->priority = (uint64_t)sim->cfg.pct_depth + 1 + (sim_rand() >> 8);
  stack_prepare(t);
  if (fresh) sim->tasks[sim->task_count++] = t;
  return t;
}

_Noreturn void sim_fail(const char *fmt, ...) {
  if (!sim->failed) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sim->failure, sizeof(sim->failure), fmt, ap);
    va_end(ap);
    sim->failed = true;
  }
  if (sim->current == &sim->main_task) longjmp(sim->fail_jmp, 1);
  /* Never resumed; its stack is freed at fini. A task that failed the run
   * by blocking (I8 from pick) stays blocked: the stuck report names it. */
  if (sim->current->state == SIM_RUNNABLE) set_state(sim->current, SIM_DONE);
  switch_to(&sim->main_task);
  abort(); /* unreachable */
}

/* ---- picking the next task ------------------------------------------------------ */

static void check_quiescent(void) {
  if (sim->check == NULL) return;
  sim->in_check = true;
  sim->check(sim->ctx, true);
  sim->in_check = false;
}

/* No task can run: jump the clock to the earliest timed wake-up. Returns
 * false when nothing will ever wake (all done, or a hang). */
static bool advance_clock(void) {
  int64_t next = -1;
  for (int i = 0; i < sim->task_count; i++) {
    sim_task *t = sim->tasks[i];
    if (t->state == SIM_BLOCKED && t->wake_at >= 0 && (next < 0 || t->wake_at < next)) next = t->wake_at;
  }
  if (next < 0) return false;
  if (next > SIM_TIME_MAX_NS) time_limit(next);
  if (next > sim->now) sim->now = next;
  for (int i = 0; i < sim->task_count; i++) {
    sim_task *t = sim->tasks[i];
    if (t->state == SIM_BLOCKED && t->wake_at >= 0 && t->wake_at <= sim->now) {
      set_state(t, SIM_RUNNABLE);
      t->timed_out = true;
      t->wake_at = -1;
    }
  }
  return true;
}

/* The runnable task of index order k (0-based), as a scan of the table
 * would list them. */
static sim_task *nth_runnable(int k) {
  for (int w = 0;; w++) {
    uint64_t bits = sim->runnable_bits[w];
    int n = __builtin_popcountll(bits);
    if (k >= n) {
      k -= n;
      continue;
    }
    for (; k > 0; k--) bits &= bits - 1;
    return sim->tasks[w * 64 + __builtin_ctzll(bits)];
  }
}

/* PCT: the runnable task of highest priority (the first of them on a tie). */
static sim_task *highest_runnable(void) {
  sim_task *best = NULL;
  for (int w = 0; w < SIM_TASKS_MAX / 64; w++)
    for (uint64_t bits = sim->runnable_bits[w]; bits != 0; bits &= bits - 1) {
      sim_task *t = sim->tasks[w * 64 + __builtin_ctzll(bits)];
      if (best == NULL || t->priority > best->priority) best = t;
    }
  return best;
}

static sim_task *pick(void) {
  /* Sticky random walk: long uninterrupted runs of one task are what a
   * uniform walk almost never produces, and what races such as "close and
   * reopen between the poller's fetch and its processing" need. */
  if (sim->cfg.strategy == SIM_RANDOM && sim->current->state == SIM_RUNNABLE &&
      sim->current != &sim->main_task && sim_chance(sim->stickiness))
    return sim->current;
  for (;;) {
    if (sim->runnable_count > 0) {
      if (sim->cfg.strategy == SIM_PCT) return highest_runnable();
      return nth_runnable((int)sim_rand_below((uint64_t)sim->runnable_count));
    }
    check_quiescent();
    if (!advance_clock()) {
      bool all_done = true;
      for (int i = 0; i < sim->task_count; i++)
        if (sim->tasks[i]->state != SIM_DONE) all_done = false;
      if (all_done) return &sim->main_task;
      if (sim->cfg.allow_stuck) {
        /* check_quiescent passed: nobody is parked despite readiness, an
         * expired deadline or a close; the program just waits forever. */
        sim->stuck = true;
        return &sim->main_task;
      }
      char blocked[384] = "";
      size_t used = 0;
      for (int i = 0; i < sim->task_count && used < sizeof(blocked) - 48; i++) {
        sim_task *t = sim->tasks[i];
        if (t->state == SIM_DONE) continue;
        used += (size_t)snprintf(blocked + used, sizeof(blocked) - used, " %s(%s)", t->name,
                                 t->state == SIM_PARKED ? "parked" : t->block_reason);
      }
      sim_fail("I8 liveness: no task can ever run again:%s", blocked);
    }
  }
}

void sim_point(void) {
  if (sim->in_check) return;
  sim->steps++;
  if (sim->steps > sim->cfg.step_limit)
    sim_fail("step limit %" PRIu64 " reached (hang or livelock)", sim->cfg.step_limit);
  if (sim->cfg.check_every_step && sim->check != NULL) {
    sim->in_check = true;
    sim->check(sim->ctx, false);
    sim->in_check = false;
  }
  if (sim->cfg.strategy == SIM_PCT) {
    for (int i = 0; i < sim->pct_change_count; i++)
      if (sim->pct_changes[i] == sim->steps && sim->current != &sim->main_task) {
        sim->current->priority = (uint64_t)i + 1;
        sim_pct_last.reached++;
      }
  }
  switch_to(pick());
}

static void task_entry(void) {
  sim_task *t = sim->current;
#ifdef SIM_ASAN
  const void *from_bottom;
  size_t from_size;
  __sanitizer_finish_switch_fiber(NULL, &from_bottom, &from_size);
  if (sim->main_task.stack == NULL) {
    sim->main_task.stack = (void *)from_bottom;
    sim->main_task.stack_size = from_size;
  }
#endif
  t->fn(t->arg);
  set_state(t, SIM_DONE);
  for (int i = 0; i < sim->task_count; i++) {
    sim_task *j = sim->tasks[i];
    if (j->state == SIM_BLOCKED && j->join_target == t) sim_wake(j);
  }
  switch_to(pick());
  abort(); /* a done task is never resumed */
}

int sim_run(sim_sched *s, sim_check_fn check, sim_format_fn format, void *ctx) {
  s->check = check;
  s->format = format;
  s->ctx = ctx;
  if (setjmp(s->fail_jmp) == 0) {
    if (s->task_count > 0) switch_to(pick());
  }
  return s->failed ? -1 : s->stuck ? 1 : 0;
}

/* ---- blocking -------------------------------------------------------------------- */

bool sim_block(const char *reason, int64_t wake_at) {
  sim_task *t = sim->current;
  if (t == &sim->main_task) sim_fail("main context cannot block (%s)", reason);
  set_state(t, SIM_BLOCKED);
  t->block_reason = reason;
  t->wake_at = wake_at;
  t->timed_out = false;
  switch_to(pick());
  return t->timed_out;
}

void sim_wake(sim_task *t) {
  if (t->state != SIM_BLOCKED) return;
  set_state(t, SIM_RUNNABLE);
  t->wake_at = -1;
}

void sim_sleep(int64_t ns) {
  sim_point();
  int64_t d = ns > 0 ? ns : 0;
  if (d > SIM_TIME_MAX_NS - sim->now) time_limit(d > INT64_MAX - sim->now ? INT64_MAX : sim->now + d);
  int64_t until = sim->now + d;
  int64_t q = sim->quantum;
  if (q > 1 && until % q != 0) until += q - until % q; /* round up to the run's grain */
  (void)sim_block("sleep", until);
}

void sim_join(sim_task *target) {
  sim_task *t = sim->current;
  while (target->state != SIM_DONE) {
    t->join_target = target;
    (void)sim_block("join", -1);
    t->join_target = NULL;
  }
}

/* ---- the port: mutex, park, sema, clock ------------------------------------------- */

static void queue_push(sim_task **head, sim_task *t) {
  t->next_wait = NULL;
  while (*head != NULL) head = &(*head)->next_wait;
  *head = t;
}

static sim_task *queue_pop(sim_task **head) {
  sim_task *t = *head;
  if (t != NULL) {
    *head = t->next_wait;
    t->next_wait = NULL;
  }
  return t;
}

void np__mutex_init(np__mutex *m) {
  m->owner = NULL;
  m->waiters = NULL;
  m->id = ++sim->next_object_id;
}

void np__mutex_destroy(np__mutex *m) {
  if (m->owner != NULL) sim_fail("mutex destroyed while held by %s", m->owner->name);
}

void np__mutex_lock(np__mutex *m) {
  sim_point();
  sim_task *self = sim->current;
  while (m->owner != NULL) {
    if (m->owner == self) sim_fail("recursive lock of mutex %u", m->id);
    queue_push(&m->waiters, self);
    (void)sim_block("mutex", -1);
  }
  m->owner = self;
  sim_record(SIM_OP_LOCK, m, 0, 1);
}

void np__mutex_unlock(np__mutex *m) {
  sim_point();
  if (m->owner != sim->current) sim_fail("unlock of mutex %u not held by %s", m->id, sim->current->name);
  m->owner = NULL;
  sim_record(SIM_OP_UNLOCK, m, 1, 0);
  sim_task *next = queue_pop(&m->waiters);
  if (next != NULL) sim_wake(next);
}

void np__cond_init(np__cond *c) { c->waiters = NULL; }

void np__cond_destroy(np__cond *c) {
  if (c->waiters != NULL) sim_fail("condition variable destroyed while %s waits on it", c->waiters->name);
}

static void queue_remove(sim_task **head, sim_task *t) {
  for (; *head != NULL; head = &(*head)->next_wait) {
    if (*head == t) {
      *head = t->next_wait;
      t->next_wait = NULL;
      return;
    }
  }
}

void np__cond_wait(np__cond *c, np__mutex *m) {
  sim_point();
  sim_task *self = sim->current;
  if (m->owner != self) sim_fail("wait on a condition without holding mutex %u", m->id);
  queue_push(&c->waiters, self);
  m->owner = NULL; /* np__mutex_unlock without its schedule point */
  sim_record(SIM_OP_UNLOCK, m, 1, 0);
  sim_task *next = queue_pop(&m->waiters);
  if (next != NULL) sim_wake(next);
  bool spurious = sim_chance(20000);
  (void)sim_block("cond", spurious ? sim->now : -1);
  queue_remove(&c->waiters, self); /* still queued: it woke without a signal */
  np__mutex_lock(m);
}

void np__cond_signal(np__cond *c) {
  sim_point();
  sim_task *t = queue_pop(&c->waiters);
  if (t != NULL) sim_wake(t);
}

void np__cond_broadcast(np__cond *c) {
  sim_point();
  for (sim_task *t; (t = queue_pop(&c->waiters)) != NULL;) sim_wake(t);
}

uint32_t sim_thread_fail_ppm;

typedef struct thread_start {
  void *(*fn)(void *arg);
  void *arg;
} thread_start;

static void thread_main(void *arg) {
  thread_start ts = *(thread_start *)arg;
  free(arg);
  (void)ts.fn(ts.arg);
}

int np__thread_start(np__thread *t, void *(*fn)(void *arg), void *arg) {
  sim_point();
  if (sim_chance(sim_thread_fail_ppm)) return -EAGAIN;
  thread_start *ts = malloc(sizeof(*ts));
  if (ts == NULL) return -ENOMEM;
  *ts = (thread_start){fn, arg};
  *t = sim_spawn("thread", thread_main, ts);
  return 0;
}

void np__thread_join(np__thread t) { sim_join(t); }

void np__waiter_init(np__waiter *w, const void *pd, int mode) {
  w->task = sim->current;
  w->pd = pd;
  w->mode = mode;
  w->parked = false;
}

void np__park(np__waiter *w, bool (*commit)(np__waiter *w, void *arg), void *arg) {
  sim_point();
  sim_task *self = sim->current;
  if (w->task != self) sim_fail("park of a waiter owned by another task");
  if (!commit(w, arg)) return;
  /* No schedule point between a successful commit and sleeping: in the
   * native runtime an unpark that comes first makes the futex wait return. */
  w->parked = true;
  self->park_step = sim->steps;
  self->waiter = w;
  set_state(self, SIM_PARKED);
  self->block_reason = "park";
  sim_record(SIM_OP_PARK, w->pd, (uint64_t)w->mode, 0);
  switch_to(pick());
  self->waiter = NULL;
}

void np__unpark(np__waiter *w) {
  sim_point();
  if (!w->parked || w->task->state != SIM_PARKED || w->task->waiter != w)
    sim_fail("I2: unpark of a waiter that is not parked (double or stray wake-up) by %s", sim->current->name);
  w->parked = false;
  set_state(w->task, SIM_RUNNABLE);
  sim_record(SIM_OP_UNPARK, w->pd, (uint64_t)w->mode, (uint64_t)w->task->id);
}

void np__sema_acquire(np__sema *s) {
  sim_point();
  while (s->count == 0) {
    queue_push(&s->waiters, sim->current);
    (void)sim_block("sema", -1);
  }
  s->count--;
  sim_record(SIM_OP_SEMA_ACQ, s, s->count + 1, s->count);
}

void np__sema_release(np__sema *s) {
  sim_point();
  s->count++;
  sim_record(SIM_OP_SEMA_REL, s, s->count - 1, s->count);
  sim_task *next = queue_pop(&s->waiters);
  if (next != NULL) sim_wake(next);
}

int64_t np__now(void) {
  if (sim == NULL) return 0; /* outside a run (libnetpoll-sim): virtual time has not begun */
  sim_point();
  sim_record(SIM_OP_NOW, NULL, 0, (uint64_t)sim->now);
  return sim->now;
}

/* ---- trace ------------------------------------------------------------------------------ */

static const char *const op_names[SIM_OP_COUNT] = {
    "load", "store",  "cas",      "cas-fail", "swap", "add",     "lock",        "unlock",
    "park", "unpark", "sema-acq", "sema-rel", "now",  "syscall", "wait-result", "actor"};

const char *sim_op_name(sim_op op) { return op < SIM_OP_COUNT ? op_names[op] : "?"; }

static uint64_t hash_value(uint64_t v) {
  return v < (1u << 24) ? v : 0xFFFFFFull; /* pointers vary run to run */
}

void sim_record(sim_op op, const void *addr, uint64_t old_value, uint64_t new_value) {
  if (sim->in_check) return;
  sim_trace_entry *e = &sim->ring[sim->ring_len++ % SIM_TRACE_RING];
  e->step = sim->steps;
  e->time = sim->now;
  e->task = (uint16_t)(sim->current->id + 1);
  e->op = (uint8_t)op;
  e->addr = addr;
  e->old_value = old_value;
  e->new_value = new_value;
  uint64_t h = sim->trace_hash;
  h = (h ^ ((uint64_t)e->task << 8 | op)) * 1099511628211ull;
  h = (h ^ hash_value(old_value)) * 1099511628211ull;
  h = (h ^ hash_value(new_value)) * 1099511628211ull;
  h = (h ^ (uint64_t)e->time) * 1099511628211ull;
  sim->trace_hash = h;
  if (sim->cfg.trace_out != NULL) {
    char line[256];
    sim->format(sim->ctx, e, line, sizeof(line));
    fprintf(sim->cfg.trace_out, "%s\n", line);
  }
}

void sim_trace_print(FILE *out, uint64_t last_lines) {
  uint64_t count = sim->ring_len < SIM_TRACE_RING ? sim->ring_len : SIM_TRACE_RING;
  if (last_lines < count) count = last_lines;
  for (uint64_t i = sim->ring_len - count; i < sim->ring_len; i++) {
    char line[256];
    sim->format(sim->ctx, &sim->ring[i % SIM_TRACE_RING], line, sizeof(line));
    fprintf(out, "%s\n", line);
  }
}

/* The runtime scheduler the current simulated thread plays (sim/rt_world.c). */
struct np__sched *np__tls_sched(void) {
  return sim != NULL && sim->current != NULL ? sim->current->port_sched : NULL;
}

/* A failed poller's scheduler sleeps in small steps (virtual time). */
void np__port_backoff(void) { sim_sleep(1000000); }

/* A simulated world never forks. */
bool np__poller_forked(const np_poller *p) {
  (void)p;
  return false;
}

/* The simulated library has one poller per world: descriptors stay on it. */
np_poller *np__home_poller(np_poller *p, bool spread) {
  (void)spread;
  return p;
}
