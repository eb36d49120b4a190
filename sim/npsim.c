/*
 * npsim - run the netpoll core under the deterministic simulator.
 * `npsim --help` documents every command; sim/SCENARIOS.md the file format.
 * Exit status: 0 all runs passed, 1 a run failed, 2 usage or input error.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "run.h"
#include "scenario.h"
#include "shrink.h"
#include "world.h"

#ifndef NP_BUILD_ID
#define NP_BUILD_ID "unknown"
#endif

static void usage(FILE *out) {
  fputs(
      "usage: npsim <command> [options]\n"
      "\n"
      "commands:\n"
      "  run                 campaign of random worlds over a seed range (default 1-1000);\n"
      "                      a failure writes a replay file and prints the replay command\n"
      "  scenario FILE...    run scenario files over their own seed ranges (or --seeds)\n"
      "  replay FILE         run a replay file (or scenario) once, printing the full trace:\n"
      "                      virtual time, step, task, operation, object, old -> new\n"
      "  replay --seed N     the same for the random world of seed N\n"
      "  gen --seed N        print the random world of seed N as a scenario file\n"
      "  shrink FILE         reduce a failing replay file to a small scenario that still\n"
      "  shrink --seed N     fails the same way; writes FILE.min.scn (or --out)\n"
      "  check FILE...       parse scenario files only; line-numbered errors\n"
      "  outcome FILE        run once and print each action's result class, by task\n"
      "                      (what the conformance test compares with real epoll)\n"
      "  selfcheck           same seed twice -> same trace hash, and generate -> dump ->\n"
      "                      parse -> run gives the same trace (default seeds 1-200)\n"
      "  bench               schedule steps/s and seeds/s on one core\n"
      "  seeds               print the seed range a --seeds/--shard pair selects\n"
      "\n"
      "options:\n"
      "  --seed N            one seed\n"
      "  --seeds A-B         seed range, inclusive\n"
      "  --shard I/N         run only the I-th of N equal contiguous parts of the seed\n"
      "                      range (1 <= I <= N): the N shards partition it exactly\n"
      "  --strategy S        random (sticky random walk, default) or pct\n"
      "  --depth D           PCT bug depth, 1..16 (default 3)\n"
      "  --pct-steps K       PCT: spread change points over [1, K] instead of a probe\n"
      "                      run's measured length (halves the cost of a PCT run)\n"
      "  --steps N           steps per run before it counts as a hang (default 2000000)\n"
      "  --fast              check state invariants only at quiescence\n"
      "  --no-faults         no injected faults\n"
      "  --stop-on-fail      stop at the first failure\n"
      "  --out PATH          run: directory for replay files (default npsim-failures);\n"
      "                      shrink: output file\n"
      "  --trace-tail N      trace lines in a failure report (default 40)\n"
      "  --seconds S         bench duration per measurement (default 3)\n"
      "  --quiet             no progress line\n"
      "\n"
      "Replay files end in a checksum line and name the build that wrote them: a\n"
      "damaged or truncated one is rejected, another build's gets a warning.\n",
      out);
}

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool parse_u64(const char *s, uint64_t *out) {
  char *end;
  if (s == NULL || *s == 0 || *s == '-') return false;
  errno = 0;
  *out = strtoull(s, &end, 0);
  return *end == 0 && errno == 0;
}

typedef struct cli {
  world_options o;
  bool have_seeds, stop_on_fail, quiet, no_faults;
  int strategy; /* -1: as the scenario says */
  int depth;
  uint64_t first, last;
  uint64_t shard_index, shard_count; /* --shard I/N; 0/0: the whole range */
  double seconds;
  const char *out;
  const char **files; /* argc entries: any number of files */
  int file_count;
  const char *file; /* the file of the run in progress, NULL for a random world */
  int input_errors;
} cli;

static scenario g_sc; /* large: static */

/* ---- messages ------------------------------------------------------------- */

/* The one command that replays a run exactly: the scenario file (or the
 * random world) with the seed and every override that changes the run. */
static void replay_command(const cli *c, uint64_t seed, char *buf, size_t len) {
  int n = snprintf(buf, len, "npsim replay %s%s--seed %" PRIu64, c->file ? c->file : "", c->file ? " " : "",
                   seed);
  if (c->strategy >= 0 && n >= 0 && (size_t)n < len)
    n += snprintf(buf + n, len - (size_t)n, " --strategy %s", c->strategy ? "pct" : "random");
  if (c->depth > 0 && n >= 0 && (size_t)n < len)
    n += snprintf(buf + n, len - (size_t)n, " --depth %d", c->depth);
  if (c->o.pct_steps > 0 && n >= 0 && (size_t)n < len)
    n += snprintf(buf + n, len - (size_t)n, " --pct-steps %" PRIu64, c->o.pct_steps);
  if (c->o.step_limit > 0 && n >= 0 && (size_t)n < len)
    n += snprintf(buf + n, len - (size_t)n, " --steps %" PRIu64, c->o.step_limit);
  if (c->no_faults && n >= 0 && (size_t)n < len) snprintf(buf + n, len - (size_t)n, " --no-faults");
}

/* A crash (a broken core dereferencing freed or NULL state) must still say
 * which run it was: the line is prepared before every run, the handler
 * only writes it. */
static char crash_line[1024];

static void on_crash(int sig) {
  if (write(STDOUT_FILENO, crash_line, strlen(crash_line)) < 0) {
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

static void prepare_crash_line(const cli *c, const scenario *sc, uint64_t seed) {
  char cmd[512];
  replay_command(c, seed, cmd, sizeof(cmd));
  snprintf(crash_line, sizeof(crash_line),
           "FAIL %s seed=%" PRIu64 " strategy=%s: crash (signal) in the run\nreplay: %s\n", sc->name, seed,
           sc->strategy ? "pct" : "random", cmd);
}

/* Build ids are "<commit>+src.<hash of the core and simulator sources>":
 * only the sources decide what a replay does. */
static bool same_build(const char *a, const char *b) {
  const char *sa = strstr(a, "+src."), *sb = strstr(b, "+src.");
  return sa != NULL && sb != NULL ? strcmp(sa, sb) == 0 : strcmp(a, b) == 0;
}

static void warn_build(const char *path, const scenario *sc) {
  if (!sc->has_build || same_build(sc->build, NP_BUILD_ID)) return;
  fprintf(stderr,
          "npsim: warning: %s was recorded by build %s, this is %s: a different result may come from the "
          "different build, not from a fix\n",
          path, sc->build, NP_BUILD_ID);
}

static int parse_file(const char *path, scenario *sc) {
  char err[512];
  if (sc_parse_file(path, sc, err, sizeof(err)) != 0) { /* escaped by the parser */
    fprintf(stderr, "npsim: %s\n", err);
    return 2;
  }
  warn_build(path, sc);
  return 0;
}

static void apply_overrides(const cli *c, scenario *sc) {
  if (c->strategy >= 0) sc->strategy = c->strategy;
  if (c->depth > 0) sc->depth = c->depth;
}

/* ---- replay files ------------------------------------------------------------ */

static int write_replay(const cli *c, const scenario *sc, uint64_t seed, char *path, size_t len) {
  const char *dir = c->out != NULL ? c->out : "npsim-failures";
  const char *name = sc_valid_scenario_name(sc->name) ? sc->name : "unnamed";
  snprintf(path, len, "%s/%s-seed-%" PRIu64 ".scn", dir, name, seed);
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) return -1;
  FILE *f = fopen(path, "w");
  if (f == NULL) return -1;
  scenario copy = *sc;
  copy.has_seed = true;
  copy.seed = seed;
  char comment[640];
  snprintf(comment, sizeof(comment), "replay: npsim replay %s", path);
  int rc = sc_write_replay(&copy, comment, NP_BUILD_ID, f);
  int saved = errno;
  if (fclose(f) != 0 || rc != 0) {
    errno = rc != 0 ? saved : errno;
    return -1;
  }
  return 0;
}

static void report_failure(const cli *c, const scenario *sc, uint64_t seed) {
  char path[600];
  if (write_replay(c, sc, seed, path, sizeof(path)) == 0) {
    printf("replay: npsim replay %s\n", path);
    printf("shrink: npsim shrink %s\n", path);
    return;
  }
  /* No file: a command that replays this very run, and the replay file's
   * text on stderr (save it and it replays as the file would have). */
  char cmd[512];
  replay_command(c, seed, cmd, sizeof(cmd));
  printf("replay: (could not write %s: %s) %s\n", path, strerror(errno), cmd);
  scenario copy = *sc;
  copy.has_seed = true;
  copy.seed = seed;
  fprintf(stderr, "--- replay file for %s seed %" PRIu64 " (save it, then npsim replay FILE) ---\n", sc->name,
          seed);
  sc_write_replay(&copy, NULL, NP_BUILD_ID, stderr);
  fprintf(stderr, "--- end of replay file ---\n");
}

/* One run. A failure that blames the input (SIM_INPUT_ERROR) is an input
 * error (2), never a FAIL verdict or a replay file. */
static int run_one(cli *c, const scenario *sc, uint64_t seed, world_result *r) {
  c->o.sc = sc;
  c->o.seed = seed;
  prepare_crash_line(c, sc, seed);
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  FILE *report = c->o.report;
  c->o.report = mem;
  int rc = sim_world_run(&c->o, r);
  c->o.report = report;
  fclose(mem);
  if (rc != 0 && sim_failure_is_input_error(r->failure)) {
    fprintf(stderr, "npsim: %s seed %" PRIu64 ": %s\n", c->file ? c->file : sc->name, seed, r->failure);
    c->input_errors++;
    free(text);
    return 2;
  }
  if (report != NULL) fwrite(text, 1, len, report);
  free(text);
  if (rc != 0) {
    report_failure(c, sc, seed);
    fflush(stdout);
  }
  return rc;
}

/* ---- campaigns ------------------------------------------------------------------ */

/* The I-th (1-based) of N contiguous parts of [first, last]: part i covers
 * [first + floor(count*(i-1)/N), first + floor(count*i/N) - 1], so the parts
 * partition the range exactly and differ in size by at most one. False if
 * the part is empty (more shards than seeds). */
static bool shard_range(const cli *c, uint64_t *first, uint64_t *last) {
  if (c->shard_count == 0) return true;
  unsigned __int128 count = (unsigned __int128)(*last - *first) + 1;
  uint64_t lo = (uint64_t)(count * (c->shard_index - 1) / c->shard_count);
  uint64_t hi = (uint64_t)(count * c->shard_index / c->shard_count); /* exclusive */
  if (hi == lo) return false;
  uint64_t base = *first;
  *first = base + lo;
  *last = base + (hi - 1);
  return true;
}

typedef struct tally {
  uint64_t runs, failures, steps;
  double t0, last_print;
} tally;

static void progress(const cli *c, tally *t, uint64_t seed) {
  double now = wall();
  if (c->quiet || now - t->last_print <= 1.0) return;
  fprintf(stderr, "\r[npsim] %s seed %" PRIu64 "  runs %" PRIu64 "  failures %" PRIu64 "  %.0f steps/s ",
          g_sc.name, seed, t->runs, t->failures, (double)t->steps / (now - t->t0));
  t->last_print = now;
}

/* Runs one seed range; false when --stop-on-fail says stop. */
static bool run_range(cli *c, bool generated, uint64_t first, uint64_t last, tally *t) {
  for (uint64_t seed = first; seed <= last; seed++) {
    if (generated) {
      sc_generate(seed, !c->no_faults, &g_sc);
      apply_overrides(c, &g_sc);
    }
    world_result r;
    int rc = run_one(c, &g_sc, seed, &r);
    t->runs++;
    t->steps += r.steps;
    if (rc == 2) return false; /* the input is broken: more seeds say nothing new */
    if (rc != 0) {
      t->failures++;
      if (c->stop_on_fail) return false;
    }
    progress(c, t, seed);
    if (seed == UINT64_MAX) break;
  }
  return true;
}

static int campaign(cli *c, bool generated) {
  tally t = {.t0 = wall()};
  t.last_print = t.t0;
  int files = generated ? 1 : c->file_count;
  for (int fi = 0; fi < files; fi++) {
    uint64_t first = c->first, last = c->last;
    if (!generated) {
      c->file = c->files[fi];
      if (parse_file(c->file, &g_sc) != 0) return 2;
      apply_overrides(c, &g_sc);
      if (!c->have_seeds) first = g_sc.seed_first, last = g_sc.seed_last;
    }
    if (shard_range(c, &first, &last) && !run_range(c, generated, first, last, &t)) break;
  }
  double elapsed = wall() - t.t0;
  if (!c->quiet) fprintf(stderr, "\n");
  printf("summary: %s runs=%" PRIu64 " failures=%" PRIu64 " steps=%" PRIu64 " %.0f steps/s %.0f seeds/s\n",
         generated ? "random worlds" : "scenarios", t.runs, t.failures, t.steps, (double)t.steps / elapsed,
         (double)t.runs / elapsed);
  if (c->input_errors) return 2;
  return t.failures ? 1 : 0;
}

/* Loads the program for replay/shrink/outcome: a file, or the world of --seed. */
static int load(cli *c, uint64_t *seed) {
  if (c->file_count > 0) {
    c->file = c->files[0];
    if (parse_file(c->file, &g_sc) != 0) return 2;
    *seed = c->have_seeds ? c->first : g_sc.has_seed ? g_sc.seed : g_sc.seed_first;
  } else if (c->have_seeds) {
    sc_generate(c->first, !c->no_faults, &g_sc);
    *seed = c->first;
  } else {
    fprintf(stderr, "npsim: give a FILE or --seed N\n");
    return 2;
  }
  apply_overrides(c, &g_sc);
  return 0;
}

/* ---- commands ----------------------------------------------------------------------- */

static int cmd_run(cli *c) { return campaign(c, true); }

static int cmd_scenario(cli *c) {
  if (c->file_count == 0) {
    fprintf(stderr, "npsim: scenario needs files\n");
    return 2;
  }
  return campaign(c, false);
}

static int cmd_check(cli *c) {
  int bad = 0;
  for (int i = 0; i < c->file_count; i++) {
    if (parse_file(c->files[i], &g_sc) != 0) {
      bad = 1;
      continue;
    }
    char shown[512];
    snprintf(shown, sizeof(shown), "%s", c->files[i]);
    sc_escape(shown, sizeof(shown));
    printf("%s: ok (%d streams, %d tasks, %d actions)\n", shown, g_sc.stream_count, g_sc.task_count,
           g_sc.action_count);
  }
  return bad ? 2 : 0;
}

static int cmd_gen(cli *c) {
  if (!c->have_seeds) {
    fprintf(stderr, "npsim: gen needs --seed N\n");
    return 2;
  }
  sc_generate(c->first, !c->no_faults, &g_sc);
  apply_overrides(c, &g_sc);
  g_sc.has_seed = true;
  g_sc.seed = c->first;
  sc_dump(&g_sc, stdout);
  return 0;
}

static int cmd_seeds(cli *c) {
  uint64_t first = c->first, last = c->last;
  if (!shard_range(c, &first, &last))
    printf("empty\n");
  else
    printf("%" PRIu64 "-%" PRIu64 "\n", first, last);
  return 0;
}

/* Prints text's lines that start with "NAME ", for each task in scenario order. */
static void print_by_task(const char *text) {
  for (int t = 0; t < g_sc.task_count; t++) {
    size_t nlen = strlen(g_sc.tasks[t].name);
    for (const char *line = text; line != NULL && *line;) {
      const char *end = strchr(line, '\n');
      size_t l = end ? (size_t)(end - line) : strlen(line);
      if (l > nlen && strncmp(line, g_sc.tasks[t].name, nlen) == 0 && line[nlen] == ' ')
        printf("%.*s\n", (int)l, line);
      line = end ? end + 1 : NULL;
    }
  }
}

/* One line per action with a result, grouped by task in action order: the
 * observable behaviour the conformance test compares. */
static int cmd_outcome(cli *c) {
  uint64_t seed;
  int rc = load(c, &seed);
  if (rc != 0) return rc;
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  c->o.outcome = mem;
  c->o.report = NULL;
  c->o.sc = &g_sc;
  c->o.seed = seed;
  world_result r;
  rc = sim_world_run(&c->o, &r);
  fclose(mem);
  if (rc != 0) {
    fprintf(stderr, "npsim: run failed: %s\n", r.failure);
    free(text);
    return sim_failure_is_input_error(r.failure) ? 2 : 1;
  }
  print_by_task(text != NULL ? text : "");
  free(text);
  return 0;
}

static int cmd_replay(cli *c) {
  uint64_t seed;
  int rc = load(c, &seed);
  if (rc != 0) return rc;
  c->o.trace_out = stdout;
  c->o.trace_tail = 0;
  c->o.report = NULL; /* the PASS/FAIL line below says it */
  c->o.sc = &g_sc;
  c->o.seed = seed;
  world_result r;
  rc = sim_world_run(&c->o, &r);
  if (rc != 0 && sim_failure_is_input_error(r.failure)) {
    fprintf(stderr, "npsim: %s seed %" PRIu64 ": %s\n", c->file ? c->file : g_sc.name, seed, r.failure);
    return 2;
  }
  if (g_sc.strategy)
    printf("pct: depth %d, %d change points drawn from steps 1-%" PRIu64 ", %d reached\n", g_sc.depth,
           sim_pct_last.points, sim_pct_last.k, sim_pct_last.reached);
  printf("%s %s seed=%" PRIu64 " steps=%" PRIu64 " virtual=%.3fms hash=%016" PRIx64 "%s%s\n",
         rc ? "FAIL" : "PASS", g_sc.name, seed, r.steps, (double)r.virtual_ns / 1e6, r.trace_hash,
         rc ? ": " : "", rc ? r.failure : "");
  return rc ? 1 : 0;
}

static int write_shrunk(const char *path, scenario *reduced, const shrink_stats *st) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    fprintf(stderr, "npsim: %s: %s\n", path, strerror(errno));
    return 2;
  }
  snprintf(reduced->name, sizeof(reduced->name), "%.58s-min", g_sc.name);
  char comment[800];
  snprintf(comment, sizeof(comment), "shrunk from %d tasks / %d actions; fails with: %s", g_sc.task_count,
           g_sc.action_count, st->failure);
  int rc = sc_write_replay(reduced, comment, NP_BUILD_ID, f);
  if (fclose(f) != 0 || rc != 0) {
    fprintf(stderr, "npsim: %s: %s\n", path, strerror(errno));
    return 2;
  }
  return 0;
}

static int cmd_shrink(cli *c) {
  uint64_t seed;
  int rc = load(c, &seed);
  if (rc != 0) return rc;
  static scenario reduced;
  shrink_stats st;
  c->o.report = NULL;
  double t0 = wall();
  rc = sc_shrink(&g_sc, seed, &c->o, 8, &reduced, &st, c->quiet ? NULL : stderr);
  if (rc == -2) {
    fprintf(stderr, "npsim: the run stops on an input error, not a library failure; nothing to shrink: %s\n",
            st.failure);
    return 2;
  }
  if (rc != 0) {
    fprintf(stderr, "npsim: the run does not fail; nothing to shrink\n");
    return 2;
  }
  char path[512];
  if (c->out != NULL)
    snprintf(path, sizeof(path), "%s", c->out);
  else if (c->file_count > 0)
    snprintf(path, sizeof(path), "%s.min.scn", c->files[0]);
  else
    snprintf(path, sizeof(path), "seed-%" PRIu64 ".min.scn", seed);
  if (write_shrunk(path, &reduced, &st) != 0) return 2;
  printf("shrunk %d tasks / %d actions -> %d tasks / %d actions in %.1fs (%d candidates); seed %" PRIu64
         "\nfails with: %s\nwritten: %s\nreplay: npsim replay %s\n",
         g_sc.task_count, g_sc.action_count, reduced.task_count, reduced.action_count, wall() - t0,
         st.candidates, st.seed, st.failure, path, path);
  return 0;
}

/* Same seed twice, and after a text round trip: the same trace. */
static int selfcheck_seed(cli *c, uint64_t seed) {
  static scenario parsed;
  sc_generate(seed, !c->no_faults, &g_sc);
  apply_overrides(c, &g_sc);
  world_result a, b, d;
  c->o.report = NULL;
  c->o.sc = &g_sc;
  c->o.seed = seed;
  sim_world_run(&c->o, &a);
  sim_world_run(&c->o, &b);
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  sc_dump(&g_sc, mem);
  fclose(mem);
  char err[256];
  int prc = sc_parse(text, len, &parsed, err, sizeof(err));
  free(text);
  if (prc != 0) {
    printf("ROUNDTRIP seed=%" PRIu64 ": dumped scenario does not parse: %s\n", seed, err);
    return 1;
  }
  c->o.sc = &parsed;
  sim_world_run(&c->o, &d);
  if (a.trace_hash != b.trace_hash || a.steps != b.steps || a.failed != b.failed) {
    printf("NONDETERMINISTIC seed=%" PRIu64 ": hash %016" PRIx64 " vs %016" PRIx64 "\n", seed, a.trace_hash,
           b.trace_hash);
    return 1;
  }
  if (a.trace_hash != d.trace_hash) {
    printf("ROUNDTRIP seed=%" PRIu64 ": parsed scenario runs differently (%016" PRIx64 " vs %016" PRIx64
           ")\n",
           seed, a.trace_hash, d.trace_hash);
    return 1;
  }
  return 0;
}

static int cmd_selfcheck(cli *c) {
  if (!c->have_seeds) c->first = 1, c->last = 200;
  for (uint64_t seed = c->first; seed <= c->last; seed++) {
    if (selfcheck_seed(c, seed) != 0) return 1;
    if (seed == UINT64_MAX) break;
  }
  printf("deterministic: seeds %" PRIu64 "-%" PRIu64
         " gave identical traces twice and after a text round trip\n",
         c->first, c->last);
  return 0;
}

static int cmd_bench(cli *c) {
  c->o.report = NULL;
  double results[2][2];
  for (int checked = 0; checked < 2; checked++) {
    c->o.check_every_step = checked;
    uint64_t steps = 0, runs = 0;
    double t0 = wall(), t;
    for (uint64_t seed = 1; (t = wall()) - t0 < c->seconds; seed++) {
      sc_generate(seed, !c->no_faults, &g_sc);
      apply_overrides(c, &g_sc);
      c->o.sc = &g_sc;
      c->o.seed = seed;
      world_result r;
      sim_world_run(&c->o, &r);
      steps += r.steps;
      runs++;
    }
    results[checked][0] = (double)steps / (t - t0);
    results[checked][1] = (double)runs / (t - t0);
  }
  printf("bench (one core): invariants at quiescence only: %.0f steps/s, %.0f seeds/s\n", results[0][0],
         results[0][1]);
  printf("bench (one core): invariants at every step:      %.0f steps/s, %.0f seeds/s\n", results[1][0],
         results[1][1]);
  return 0;
}

/* ---- options ---------------------------------------------------------------------------- */

static bool parse_pair(const char *v, char sep, uint64_t *a, uint64_t *b) {
  char buf[64];
  if (v == NULL || strlen(v) >= sizeof(buf)) return false;
  snprintf(buf, sizeof(buf), "%s", v);
  char *mid = strchr(buf, sep);
  if (mid == NULL) return false;
  *mid = 0;
  return parse_u64(buf, a) && parse_u64(mid + 1, b);
}

/* Options with a value; returns 1 (consumed a and v), 0 (not one of
 * these) or -1 (bad value, message printed). */
static int value_option(cli *c, const char *a, const char *v) {
  uint64_t n;
  if (strcmp(a, "--seed") == 0 && parse_u64(v, &n)) {
    c->first = c->last = n;
    c->have_seeds = true;
  } else if (strcmp(a, "--seeds") == 0 && v != NULL) {
    if (!parse_pair(v, '-', &c->first, &c->last) || c->last < c->first) {
      fprintf(stderr, "npsim: bad seed range '%s' (want A-B, A <= B)\n", v);
      return -1;
    }
    c->have_seeds = true;
  } else if (strcmp(a, "--shard") == 0 && v != NULL) {
    if (!parse_pair(v, '/', &c->shard_index, &c->shard_count) || c->shard_count == 0 || c->shard_index == 0 ||
        c->shard_index > c->shard_count) {
      fprintf(stderr, "npsim: bad shard '%s' (want I/N with 1 <= I <= N)\n", v);
      return -1;
    }
  } else if (strcmp(a, "--strategy") == 0 && v != NULL) {
    if (strcmp(v, "random") != 0 && strcmp(v, "pct") != 0) {
      fprintf(stderr, "npsim: unknown strategy '%s'\n", v);
      return -1;
    }
    c->strategy = strcmp(v, "pct") == 0;
  } else if (strcmp(a, "--depth") == 0 && parse_u64(v, &n) && n >= 1 && n <= 16) {
    c->depth = (int)n;
  } else if (strcmp(a, "--pct-steps") == 0 && parse_u64(v, &n) && n > 0) {
    c->o.pct_steps = n;
  } else if (strcmp(a, "--steps") == 0 && parse_u64(v, &n) && n > 0) {
    c->o.step_limit = n;
  } else if (strcmp(a, "--trace-tail") == 0 && parse_u64(v, &n) && n < 100000) {
    c->o.trace_tail = (int)n;
  } else if (strcmp(a, "--seconds") == 0 && v != NULL && atof(v) > 0) {
    c->seconds = atof(v);
  } else if (strcmp(a, "--out") == 0 && v != NULL) {
    c->out = v;
  } else {
    return 0;
  }
  return 1;
}

static bool flag_option(cli *c, const char *a) {
  if (strcmp(a, "--fast") == 0)
    c->o.check_every_step = false;
  else if (strcmp(a, "--no-faults") == 0)
    c->no_faults = c->o.no_faults = true;
  else if (strcmp(a, "--stop-on-fail") == 0)
    c->stop_on_fail = true;
  else if (strcmp(a, "--quiet") == 0)
    c->quiet = true;
  else
    return false;
  return true;
}

static int parse_args(cli *c, int argc, char **argv) {
  c->o.check_every_step = true;
  c->o.trace_tail = 40;
  c->o.report = stdout;
  c->strategy = -1;
  c->first = 1;
  c->last = 1000;
  c->seconds = 3;
  c->files = calloc((size_t)argc, sizeof(*c->files));
  if (c->files == NULL) return 2;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    int used = value_option(c, a, i + 1 < argc ? argv[i + 1] : NULL);
    if (used < 0) return 2;
    if (used > 0) {
      i++;
    } else if (!flag_option(c, a)) {
      if (a[0] == '-') {
        char shown[256];
        snprintf(shown, sizeof(shown), "%s", a);
        sc_escape(shown, sizeof(shown));
        fprintf(stderr, "npsim: bad option or missing value '%s'\n", shown);
        usage(stderr);
        return 2;
      }
      c->files[c->file_count++] = a;
    }
  }
  return 0;
}

static const struct {
  const char *name;
  int (*fn)(cli *);
} commands[] = {{"run", cmd_run},       {"scenario", cmd_scenario}, {"check", cmd_check},
                {"gen", cmd_gen},       {"seeds", cmd_seeds},       {"outcome", cmd_outcome},
                {"replay", cmd_replay}, {"shrink", cmd_shrink},     {"selfcheck", cmd_selfcheck},
                {"bench", cmd_bench}};

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  signal(SIGSEGV, on_crash);
  signal(SIGBUS, on_crash);
  signal(SIGFPE, on_crash);
  static cli c;
  if (parse_args(&c, argc, argv) != 0) return 2;
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(&c);
  char shown[256];
  snprintf(shown, sizeof(shown), "%s", argv[1]);
  sc_escape(shown, sizeof(shown));
  fprintf(stderr, "npsim: unknown command '%s'\n", shown);
  usage(stderr);
  return 2;
}
