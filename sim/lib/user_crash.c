/*
 * user_crash.c - the report of a simulated run that cannot come back to
 * the runner: a signal (a crash, a task's stack overflow, abort), exit()
 * called inside a run, a sanitizer's death, or a task that holds the CPU
 * without reaching a netpoll call (a loop the cooperative scheduler can
 * never preempt; natively it would hold a scheduler thread). Each still
 * prints the FAIL line with its seed and the replay command, then ends the
 * process as the event would have.
 *
 * It must never: report for an event outside a run (a crash in main is
 * the program's own); swallow a signal (the default action follows).
 */
#include <dlfcn.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

#include "sched.h"
#include "user_run.h"

static struct {
  const char *test;
  uint64_t seed;
  bool pct;
  char replay[1200];
  int stall_limit; /* real seconds without a schedule point; 0: no watchdog */
  uint64_t last_steps;
  int stalled;
} ctx;
static volatile sig_atomic_t armed;

static void say(const char *s) {
  for (size_t left = strlen(s); left > 0;) {
    ssize_t n = write(STDERR_FILENO, s, left);
    if (n <= 0) return;
    s += n;
    left -= (size_t)n;
  }
}

static const char *task_name(void) {
  if (sim == NULL || sim->current == NULL || sim->current == &sim->main_task) return "the runner";
  return sim->current->name;
}

/* The FAIL line and the replay line, as user_main.c's report prints them. */
static void fail_report(const char *why) {
  char line[1200];
  ut_fail_line(line, sizeof(line), ctx.test, ctx.seed, ctx.pct, sim != NULL ? sim->now : 0, why);
  say(line);
  say("replay: ");
  say(ctx.replay);
  say("\n");
}

static const char *signal_name(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    case SIGABRT: return "SIGABRT (abort)";
    default: return "a signal";
  }
}

static void on_fatal(int sig, siginfo_t *info, void *uctx) {
  if (armed) {
    armed = 0;
    char why[512];
    const ucontext_t *uc = uctx;
    const void *sp = uc != NULL ? (const void *)uc->uc_mcontext.gregs[REG_RSP] : NULL;
    const sim_task *t = sig == SIGSEGV || sig == SIGBUS ? sim_stack_overflowed(info->si_addr, sp) : NULL;
    if (t != NULL)
      snprintf(why, sizeof(why),
               "stack overflow in task %s: its %zu-byte stack is too small (np_options.stack_size; the "
               "simulator adds 32 KiB for its own frames, and 8 times as much under ASan)",
               t->name, t->stack_size);
    else if (sig == SIGSEGV || sig == SIGBUS)
      snprintf(why, sizeof(why), "crashed: %s at address %p in task %s", signal_name(sig), info->si_addr,
               task_name());
    else
      snprintf(why, sizeof(why), "crashed: %s in task %s", signal_name(sig), task_name());
    fail_report(why);
  }
  signal(sig, SIG_DFL); /* a fault re-runs and now kills; abort and the others are raised again */
  if (sig != SIGSEGV && sig != SIGBUS) raise(sig);
}

/* A task that never reaches a schedule point: the steps stop counting. */
static void on_alarm(int sig) {
  (void)sig;
  if (!armed || sim == NULL || ctx.stall_limit <= 0) return;
  if (sim->steps != ctx.last_steps) {
    ctx.last_steps = sim->steps;
    ctx.stalled = 0;
    return;
  }
  if (++ctx.stalled < ctx.stall_limit) return;
  armed = 0;
  char why[512];
  snprintf(why, sizeof(why),
           "hang: task %s has run for %d s of real time without a netpoll call (a loop that never calls "
           "np_*, or a blocking system call of its own: natively it holds its scheduler thread; --stall "
           "SECONDS)",
           task_name(), ctx.stall_limit);
  fail_report(why);
  _exit(1);
}

static void sanitizer_died(void) {
  if (!armed) return;
  armed = 0;
  fail_report("a sanitizer stopped the run (its report is above)");
}

extern void __sanitizer_set_death_callback(void (*fn)(void)) __attribute__((weak));

/* UBSan calls this at each report (libubsan's weak default does nothing);
 * a report may let the run go on (recoverable checks), so it names the
 * seed without saying the run failed. It does not call the death
 * callback when it halts (gcc 12). */
void __ubsan_on_report(void);

void __ubsan_on_report(void) {
  if (!armed) return;
  char line[1536];
  snprintf(line, sizeof(line), "netpoll-sim: the report above is from %s seed %" PRIu64 " (%s)\nreplay: %s\n",
           ctx.test, ctx.seed, ctx.pct ? "pct" : "random", ctx.replay);
  say(line);
}

void ut_crash_install(int stall_seconds) {
  static bool done;
  ctx.stall_limit = stall_seconds;
  if (done) return;
  done = true;
  stack_t ss = {.ss_size = 64 * 1024};
  ss.ss_sp = mmap(NULL, ss.ss_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ss.ss_sp != MAP_FAILED) sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_fatal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
  for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++) sigaction(fatal[i], &sa, NULL);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_alarm;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
  if (__sanitizer_set_death_callback != NULL) __sanitizer_set_death_callback(sanitizer_died);
}

void ut_crash_arm(const char *test, uint64_t seed, bool pct, const char *replay) {
  armed = 0;
  ctx.test = test;
  ctx.seed = seed;
  ctx.pct = pct;
  snprintf(ctx.replay, sizeof(ctx.replay), "%s", replay);
  ctx.last_steps = UINT64_MAX;
  ctx.stalled = 0;
  armed = 1;
  /* The watchdog ticks only during runs: outside them a program's own
   * sleeps and system calls see no SIGALRM. */
  struct itimerval tick = {.it_interval = {1, 0}, .it_value = {1, 0}};
  if (ctx.stall_limit > 0) setitimer(ITIMER_REAL, &tick, NULL);
}

void ut_crash_disarm(void) {
  armed = 0;
  struct itimerval off = {{0, 0}, {0, 0}};
  if (ctx.stall_limit > 0) setitimer(ITIMER_REAL, &off, NULL);
}

/* exit() from inside a run ends the campaign where it is: say so, with the
 * seed, and end with status 1 (the seeds after it never ran). libc's own
 * exit (main's return) does not come here. */
typedef void exit_fn(int status);
_Noreturn void exit(int status);

_Noreturn void exit(int status) {
  if (armed && ut_in_run()) {
    armed = 0;
    char why[256];
    snprintf(why, sizeof(why),
             "the program called exit(%d) in task %s inside a simulated run (return from the test, or fail "
             "it with NP_CHECK)",
             status, task_name());
    fail_report(why);
    status = 1;
  }
  fflush(NULL);
  exit_fn *real = (exit_fn *)dlsym(RTLD_NEXT, "exit");
  if (real != NULL) real(status);
  _exit(status);
}
