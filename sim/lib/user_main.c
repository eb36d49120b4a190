/*
 * user_main.c - np_test_main in libnetpoll-sim: the campaign runner a
 * user's test binary gets (npsim's interface): seeds, strategy, a
 * progress line, a summary, and for a failure its seed, the trace tail and
 * the one command that replays it with the full trace.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sched.h"
#include "user_run.h"

#define TESTS_MAX 256
#define TAIL_LINES 40

static ut_test tests[TESTS_MAX];
static int test_count;

void np_test_register(const char *name, np_test_fn fn) {
  if (test_count < TESTS_MAX && name != NULL && fn != NULL) tests[test_count++] = (ut_test){name, fn};
}

bool np_test_simulated(void) { return true; }

void np_test_fail(const char *file, int line, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (sim == NULL) {
    fprintf(stderr, "%s:%d: %s (outside a simulated run)\n", file, line, msg);
    abort();
  }
  sim_fail("%s (%s:%d)", msg, file, line);
}

/* A plain assert() in the program is a failure with its seed too: glibc's
 * assert calls this (declared here: <assert.h> hides it under NDEBUG). */
_Noreturn void __assert_fail(const char *expr, const char *file, unsigned int line, const char *function);
_Noreturn void __assert_fail(const char *expr, const char *file, unsigned int line, const char *function) {
  np_test_fail(file, (int)line, "assertion failed: %s (in %s)", expr, function);
}

typedef struct cli {
  uint64_t first, last;
  const char *only;
  ut_run_options run;
  bool quiet, selfcheck, list, trace;
  int stall; /* real seconds a run may go without a schedule point (0: no watchdog) */
  const char *prog;
} cli;

#define TIME_LIMIT_DEFAULT (INT64_C(600) * 1000000000) /* ten virtual minutes */
#define STALL_DEFAULT 10

static double real_seconds(void) { /* the real clock, for progress only (never in a run) */
  struct timespec ts;
  syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out, const char *prog) {
  fprintf(out,
          "usage: %s [--seeds A-B | --seed N] [--strategy random|pct] [--test NAME] [--trace]\n"
          "          [--no-faults] [--steps N] [--time-limit SECONDS] [--stall SECONDS] [--quiet]\n"
          "       %s selfcheck [--seeds A-B]   each seed twice: the same trace hash\n"
          "       %s list                      the tests\n"
          "Runs every test (or NAME) once per seed under the simulator (libnetpoll-sim).\n"
          "Exit: 0 all passed, 1 a test failed, 2 usage.\n",
          prog, prog, prog);
}

static bool parse_u64(const char *s, uint64_t *out) {
  char *end;
  if (s == NULL || *s < '0' || *s > '9') return false;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  *out = v;
  return *end == 0 && errno == 0; /* ERANGE: more than 2^64 - 1 is a bad value, not the largest */
}

static bool parse_seeds(const char *s, cli *c) {
  const char *dash = s == NULL ? NULL : strchr(s, '-');
  if (dash == NULL) return parse_u64(s, &c->first) && (c->last = c->first, true);
  char a[32];
  if ((size_t)(dash - s) >= sizeof(a)) return false;
  memcpy(a, s, (size_t)(dash - s));
  a[dash - s] = 0;
  return parse_u64(a, &c->first) && parse_u64(dash + 1, &c->last) && c->first <= c->last;
}

static bool parse_option(cli *c, const char *opt, const char *val, int *used) {
  uint64_t n;
  *used = 1;
  if (strcmp(opt, "--seeds") == 0 || strcmp(opt, "--seed") == 0) return parse_seeds(val, c);
  if (strcmp(opt, "--strategy") == 0 && val != NULL && (!strcmp(val, "pct") || !strcmp(val, "random")))
    return c->run.pct = strcmp(val, "pct") == 0, true;
  if (strcmp(opt, "--test") == 0 && val != NULL) return c->only = val, true;
  if (strcmp(opt, "--steps") == 0 && parse_u64(val, &n) && n > 0) return c->run.step_limit = n, true;
  if (strcmp(opt, "--time-limit") == 0 && parse_u64(val, &n) && n > 0 && n < 3000000000)
    return c->run.time_limit = (int64_t)n * 1000000000, true;
  if (strcmp(opt, "--stall") == 0 && parse_u64(val, &n) && n < 1000000) return c->stall = (int)n, true;
  *used = 0;
  if (strcmp(opt, "--trace") == 0) return c->trace = true;
  if (strcmp(opt, "--no-faults") == 0) return c->run.faults = false, true;
  if (strcmp(opt, "--quiet") == 0) return c->quiet = true;
  return false;
}

static int parse_cli(cli *c, int argc, char **argv) {
  *c = (cli){.first = 1, .last = 1, .prog = argv[0], .stall = STALL_DEFAULT};
  c->run.faults = true;
  c->run.time_limit = TIME_LIMIT_DEFAULT;
  int i = 1;
  if (i < argc && strcmp(argv[i], "selfcheck") == 0) c->selfcheck = true, i++;
  if (i < argc && strcmp(argv[i], "list") == 0) c->list = true, i++;
  if (i < argc && strcmp(argv[i], "run") == 0) i++;
  for (; i < argc; i++) {
    int used;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout, c->prog), 0;
    if (!parse_option(c, argv[i], i + 1 < argc ? argv[i + 1] : NULL, &used)) {
      fprintf(stderr, "%s: bad option or value: %s\n", c->prog, argv[i]);
      return usage(stderr, c->prog), 2;
    }
    i += used;
  }
  return -1;
}

/* PCT spreads its change points over the run's length: measure it first
 * with a silent run of the same seed (as npsim does). */
static int run_seed_once(const ut_test *t, const cli *c, uint64_t seed, FILE *trace, ut_result *r) {
  ut_run_options o = c->run;
  o.seed = seed;
  o.trace = trace;
  if (o.pct && o.pct_steps == 0) {
    ut_run_options probe = o;
    probe.pct = true;
    probe.pct_steps = 1;
    probe.trace = NULL;
    ut_result pr;
    (void)ut_run(t, &probe, &pr);
    o.pct_steps = pr.steps > 0 ? pr.steps : 1;
  }
  return ut_run(t, &o, r);
}

void ut_fail_line(char *out, size_t len, const char *test, uint64_t seed, bool pct, int64_t virtual_ns,
                  const char *why) {
  snprintf(out, len, "\nFAIL %s seed %" PRIu64 " (%s) at %.6f s virtual: %s\n", test, seed,
           pct ? "pct" : "random", (double)virtual_ns / 1e9, why);
}

/* An argument as sh reads it back: bare when it is safe, else in quotes. */
static size_t quote_arg(char *out, size_t len, const char *arg) {
  const char *safe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./=:,+-@%";
  if (*arg != 0 && strspn(arg, safe) == strlen(arg)) return (size_t)snprintf(out, len, " %s", arg);
  size_t used = (size_t)snprintf(out, len, " '");
  for (const char *p = arg; *p != 0 && used < len; p++)
    used += (size_t)snprintf(out + used, len - used, *p == '\'' ? "'\\''" : "%c", *p);
  return used < len ? used + (size_t)snprintf(out + used, len - used, "'") : used;
}

/* The command line of this process (/proc/self/cmdline), quoted for sh. */
static void own_command(char *out, size_t len) {
  char buf[2048];
  size_t n = 0, used = 0;
  FILE *f = fopen("/proc/self/cmdline", "re");
  if (f != NULL) {
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
  }
  buf[n] = 0;
  out[0] = 0;
  for (size_t i = 0; i < n && used < len; i += strlen(buf + i) + 1)
    used += quote_arg(out + used, len - used, buf + i);
  if (n == 0) snprintf(out, len, " %s", program_invocation_name);
}

/* The options that shape a run besides the seed, when not the defaults:
 * as options, or for a program's own np_run as environment variables. */
static void limits(const cli *c, bool env, char *out, size_t len) {
  size_t used = 0;
  out[0] = 0;
  if (c->run.step_limit > 0)
    used += (size_t)snprintf(out + used, len - used, env ? " NP_SIM_STEPS=%" PRIu64 : " --steps %" PRIu64,
                             c->run.step_limit);
  if (c->run.time_limit != TIME_LIMIT_DEFAULT)
    used += (size_t)snprintf(out + used, len - used,
                             env ? " NP_SIM_TIME_LIMIT=%" PRId64 : " --time-limit %" PRId64,
                             c->run.time_limit / 1000000000);
  if (c->stall != STALL_DEFAULT && used < len)
    snprintf(out + used, len - used, env ? " NP_SIM_STALL=%d" : " --stall %d", c->stall);
}

/* The one command that replays seed with its full trace. */
static void replay_command(const ut_test *t, const cli *c, uint64_t seed, char *out, size_t len) {
  char lim[160], cmd[1024];
  bool env = t->fn == NULL; /* a program's own np_run */
  limits(c, env, lim, sizeof(lim));
  if (env) {
    own_command(cmd, sizeof(cmd));
    snprintf(out, len, "NP_SIM_SEED=%" PRIu64 " NP_SIM_TRACE=1%s%s%s%.800s", seed,
             c->run.pct ? " NP_SIM_STRATEGY=pct" : "", c->run.faults ? "" : " NP_SIM_NO_FAULTS=1", lim, cmd);
    return;
  }
  quote_arg(cmd, sizeof(cmd), c->prog);
  snprintf(out, len, "%.600s --test %.200s --seed %" PRIu64 "%s%s%s --trace", cmd + 1, t->name, seed,
           c->run.pct ? " --strategy pct" : "", c->run.faults ? "" : " --no-faults", lim);
}

/* One seed, with the crash report armed (user_crash.c): a run that never
 * comes back still names its seed and replay command. */
static int run_seed(const ut_test *t, const cli *c, uint64_t seed, FILE *trace, ut_result *r) {
  char replay[1200];
  replay_command(t, c, seed, replay, sizeof(replay));
  ut_crash_arm(t->name, seed, c->run.pct, replay);
  int rc = run_seed_once(t, c, seed, trace, r);
  ut_crash_disarm();
  return rc;
}

static void print_tail(const char *text, size_t len, int lines) {
  size_t start = len;
  for (int n = 0; start > 0 && n <= lines; start--)
    if (text[start - 1] == '\n' && ++n > lines) break;
  fwrite(text + start, 1, len - start, stderr);
}

/* The report's second run of the seed (for its trace) would print the
 * program's own output a second time: its stdout goes to /dev/null. */
static int mute_stdout(void) {
  fflush(stdout);
  int saved = dup(STDOUT_FILENO), null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (saved >= 0 && null >= 0) dup2(null, STDOUT_FILENO);
  if (null >= 0) close(null);
  return saved;
}

static void unmute_stdout(int saved) {
  fflush(stdout);
  if (saved < 0) return;
  dup2(saved, STDOUT_FILENO);
  close(saved);
}

static void report(const ut_test *t, const cli *c, uint64_t seed, const ut_result *r) {
  const ut_faults *f = &r->faults;
  fflush(stdout); /* the program's own output first, as it came */
  char line[1200];
  ut_fail_line(line, sizeof(line), t->name, seed, c->run.pct, r->virtual_ns, r->failure);
  fputs(line, stderr);
  fprintf(stderr,
          "  faults: latency <= %.3f ms, short i/o %u, EMFILE %u, aborted accepts %u, SYN loss %u, resets %u"
          " (per million)\n",
          (double)f->latency_max / 1e6, f->short_io, f->accept_emfile, f->accept_abort, f->syn_drop,
          f->reset_write);
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  ut_result again;
  if (mem != NULL) {
    int saved = mute_stdout();
    (void)run_seed(t, c, seed, mem, &again);
    unmute_stdout(saved);
    fclose(mem);
    fprintf(stderr, "--- the program's last %d calls ---\n", TAIL_LINES);
    print_tail(text, len, TAIL_LINES);
    if (again.hash != r->hash)
      fprintf(stderr,
              "warning: this report's second run of the seed differed: the program is not deterministic,"
              " or keeps state in globals from one run to the next (runs share the process; the replay"
              " command below starts a fresh one)\n");
    free(text);
  }
  char replay[1200];
  replay_command(t, c, seed, replay, sizeof(replay));
  fprintf(stderr, "replay: %s\n", replay);
}

/* On a terminal a line that rewrites itself every second; into a file or a
 * pipe only the last one, so it does not run into the program's output. */
static void progress(const char *name, uint64_t done, uint64_t total, double start, bool end) {
  bool tty = isatty(STDERR_FILENO);
  if (!end && !tty) return;
  double el = real_seconds() - start;
  fprintf(stderr, "%s%s: %" PRIu64 "/%" PRIu64 " seeds, %.0f seeds/s%s", tty ? "\r" : "", name, done, total,
          el > 0 ? (double)done / el : 0.0, end ? "\n" : "");
}

/* Returns 0 all seeds passed, 1 one failed (reported; the campaign stops). */
static int campaign(const ut_test *t, const cli *c) {
  uint64_t total = c->last - c->first + 1, done = 0;
  double start = real_seconds(), shown = start;
  for (uint64_t seed = c->first;; seed++) {
    ut_result r;
    if (run_seed(t, c, seed, c->trace ? stdout : NULL, &r) != 0) {
      if (!c->quiet) progress(t->name, done, total, start, true);
      report(t, c, seed, &r);
      return 1;
    }
    done++;
    if (!c->quiet && real_seconds() - shown > 1)
      progress(t->name, done, total, start, false), shown = real_seconds();
    if (seed == c->last) break;
  }
  if (!c->quiet) progress(t->name, done, total, start, true);
  printf("ok %s: %" PRIu64 " seeds (%s), %.2f s\n", t->name, total, c->run.pct ? "pct" : "random",
         real_seconds() - start);
  return 0;
}

static int selfcheck(const ut_test *t, const cli *c) {
  for (uint64_t seed = c->first;; seed++) {
    ut_result a, b;
    (void)run_seed(t, c, seed, NULL, &a);
    (void)run_seed(t, c, seed, NULL, &b);
    if (a.hash != b.hash || a.steps != b.steps || a.failed != b.failed) {
      fprintf(stderr,
              "selfcheck %s seed %" PRIu64 ": two runs differ (hash %016" PRIx64 " / %016" PRIx64
              ", steps %" PRIu64 " / %" PRIu64 "): something outside the simulation decides\n",
              t->name, seed, a.hash, b.hash, a.steps, b.steps);
      return 1;
    }
    if (seed == c->last) break;
  }
  printf("selfcheck %s: seeds %" PRIu64 "-%" PRIu64 " replay identically\n", t->name, c->first, c->last);
  return 0;
}

int np_test_main(int argc, char **argv) {
  cli c;
  int rc = parse_cli(&c, argc, argv);
  if (rc >= 0) return rc;
  ut_guard_install();
  ut_crash_install(c.stall);
  if (c.trace) setvbuf(stdout, NULL, _IOLBF, 0); /* a crash loses no trace line */
  int matched = 0, failed = 0;
  for (int i = 0; i < test_count; i++) {
    if (c.only != NULL && strcmp(c.only, tests[i].name) != 0) continue;
    matched++;
    if (c.list)
      printf("%s\n", tests[i].name);
    else
      failed |= c.selfcheck ? selfcheck(&tests[i], &c) : campaign(&tests[i], &c);
  }
  if (matched == 0) {
    fprintf(stderr, "%s: no test%s%s\n", c.prog, c.only != NULL ? " named " : "",
            c.only != NULL ? c.only : "");
    return 2;
  }
  return failed ? 1 : 0;
}

/* A switch variable: set, and not empty or "0". */
static bool env_on(const char *name) {
  const char *v = getenv(name);
  return v != NULL && *v != 0 && strcmp(v, "0") != 0;
}

/* np_run's settings come from the environment, named as the options. */
static void env_options(cli *c) {
  static const char *const map[][2] = {{"NP_SIM_SEED", "--seed"},
                                       {"NP_SIM_STRATEGY", "--strategy"},
                                       {"NP_SIM_STEPS", "--steps"},
                                       {"NP_SIM_TIME_LIMIT", "--time-limit"},
                                       {"NP_SIM_STALL", "--stall"}};
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
    const char *v = getenv(map[i][0]);
    int used;
    if (v == NULL) continue;
    if (!parse_option(c, map[i][1], v, &used) || c->first != c->last) {
      fprintf(stderr, "netpoll-sim: bad %s=%s (as %s: see --help of a test binary)\n", map[i][0], v,
              map[i][1]);
      exit(2);
    }
  }
  c->run.faults = !env_on("NP_SIM_NO_FAULTS");
  c->trace = env_on("NP_SIM_TRACE");
}

int ut_run_program(np_task_fn fn, void *arg) {
  cli c = {.first = 1, .last = 1, .prog = "NP_SIM_SEED=N <program>", .stall = STALL_DEFAULT};
  c.run.time_limit = TIME_LIMIT_DEFAULT;
  env_options(&c);
  ut_guard_install();
  ut_crash_install(c.stall);
  if (c.trace) setvbuf(stdout, NULL, _IOLBF, 0);
  ut_test t = {.name = "np_run", .task = fn, .arg = arg};
  ut_result r;
  if (run_seed(&t, &c, c.first, c.trace ? stdout : NULL, &r) == 0) return 0;
  report(&t, &c, c.first, &r);
  exit(1);
}
