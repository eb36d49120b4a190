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
      "\n"
      "options:\n"
      "  --seed N            one seed\n"
      "  --seeds A-B         seed range, inclusive: shard a campaign by giving each\n"
      "                      machine or core its own range\n"
      "  --strategy S        random (sticky random walk, default) or pct\n"
      "  --depth D           PCT bug depth, 1..16 (default 3)\n"
      "  --steps N           steps per run before it counts as a hang (default 2000000)\n"
      "  --fast              check state invariants only at quiescence\n"
      "  --no-faults         no injected faults\n"
      "  --stop-on-fail      stop at the first failure\n"
      "  --out PATH          run: directory for replay files (default npsim-failures);\n"
      "                      shrink: output file\n"
      "  --trace-tail N      trace lines in a failure report (default 40)\n"
      "  --seconds S         bench duration per measurement (default 3)\n"
      "  --quiet             no progress line\n",
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
  double seconds;
  const char *out;
  const char *files[64];
  int file_count;
} cli;

static scenario g_sc; /* large: static */

/* A crash (a broken core dereferencing freed or NULL state) must still say
 * which run it was: the line is prepared before every run, the handler
 * only writes it. */
static char crash_line[256];

static void on_crash(int sig) {
  if (write(STDOUT_FILENO, crash_line, strlen(crash_line)) < 0) {
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

static void prepare_crash_line(const scenario *sc, uint64_t seed) {
  snprintf(crash_line, sizeof(crash_line),
           "FAIL %s seed=%" PRIu64
           " strategy=%s: crash (signal) in the run\nreplay: npsim replay --seed %" PRIu64 "\n",
           sc->name, seed, sc->strategy ? "pct" : "random", seed);
}

static void apply_overrides(const cli *c, scenario *sc) {
  if (c->strategy >= 0) sc->strategy = c->strategy;
  if (c->depth > 0) sc->depth = c->depth;
}

static int write_replay(const cli *c, const scenario *sc, uint64_t seed, char *path, size_t len) {
  const char *dir = c->out != NULL ? c->out : "npsim-failures";
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) return -1;
  snprintf(path, len, "%s/%s-seed-%" PRIu64 ".scn", dir, sc->name, seed);
  FILE *f = fopen(path, "w");
  if (f == NULL) return -1;
  scenario copy = *sc;
  copy.has_seed = true;
  copy.seed = seed;
  fprintf(f, "# replay: npsim replay %s\n# build %s\n", path, NP_BUILD_ID);
  sc_dump(&copy, f);
  return fclose(f);
}

static int run_one(cli *c, const scenario *sc, uint64_t seed, world_result *r) {
  c->o.sc = sc;
  c->o.seed = seed;
  prepare_crash_line(sc, seed);
  int rc = world_run(&c->o, r);
  if (rc != 0) {
    char path[512];
    if (write_replay(c, sc, seed, path, sizeof(path)) == 0) {
      printf("replay: npsim replay %s\n", path);
      printf("shrink: npsim shrink %s\n", path);
    } else {
      printf("replay: (could not write a replay file: %s) npsim replay --seed %" PRIu64 "\n", strerror(errno),
             seed);
    }
    fflush(stdout);
  }
  return rc;
}

static int campaign(cli *c, bool generated) {
  uint64_t runs = 0, failures = 0, steps = 0;
  double t0 = wall(), last_print = t0;
  int files = generated ? 1 : c->file_count;
  for (int fi = 0; fi < files; fi++) {
    uint64_t first = c->first, last = c->last;
    if (!generated) {
      char err[512];
      if (sc_parse_file(c->files[fi], &g_sc, err, sizeof(err)) != 0) {
        fprintf(stderr, "npsim: %s\n", err);
        return 2;
      }
      apply_overrides(c, &g_sc);
      if (!c->have_seeds) first = g_sc.seed_first, last = g_sc.seed_last;
    }
    for (uint64_t seed = first; seed <= last; seed++) {
      if (generated) {
        sc_generate(seed, !c->no_faults, &g_sc);
        apply_overrides(c, &g_sc);
      }
      world_result r;
      int rc = run_one(c, &g_sc, seed, &r);
      runs++;
      steps += r.steps;
      if (rc != 0) {
        failures++;
        if (c->stop_on_fail) goto done;
      }
      double now = wall();
      if (!c->quiet && now - last_print > 1.0) {
        fprintf(stderr,
                "\r[npsim] %s seed %" PRIu64 "  runs %" PRIu64 "  failures %" PRIu64 "  %.0f steps/s ",
                g_sc.name, seed, runs, failures, (double)steps / (now - t0));
        last_print = now;
      }
      if (seed == UINT64_MAX) break;
    }
  }
done:;
  double elapsed = wall() - t0;
  if (!c->quiet) fprintf(stderr, "\n");
  printf("summary: %s runs=%" PRIu64 " failures=%" PRIu64 " steps=%" PRIu64 " %.0f steps/s %.0f seeds/s\n",
         generated ? "random worlds" : "scenarios", runs, failures, steps, (double)steps / elapsed,
         (double)runs / elapsed);
  return failures ? 1 : 0;
}

/* Loads the program for replay/shrink: a file, or the world of --seed. */
static int load(cli *c, uint64_t *seed) {
  if (c->file_count > 0) {
    char err[512];
    if (sc_parse_file(c->files[0], &g_sc, err, sizeof(err)) != 0) {
      fprintf(stderr, "npsim: %s\n", err);
      return 2;
    }
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

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *cmd = argv[1];
  signal(SIGSEGV, on_crash);
  signal(SIGBUS, on_crash);
  signal(SIGFPE, on_crash);
  static cli c;
  c.o.check_every_step = true;
  c.o.trace_tail = 40;
  c.o.report = stdout;
  c.strategy = -1;
  c.first = 1;
  c.last = 1000;
  c.seconds = 3;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    uint64_t n;
    if (strcmp(a, "--seed") == 0 && parse_u64(v, &n)) {
      c.first = c.last = n;
      c.have_seeds = true;
      i++;
    } else if (strcmp(a, "--seeds") == 0 && v != NULL) {
      char buf[64];
      snprintf(buf, sizeof(buf), "%s", v);
      char *dash = strchr(buf, '-');
      if (dash == NULL) {
        fprintf(stderr, "npsim: --seeds wants A-B\n");
        return 2;
      }
      *dash = 0;
      if (!parse_u64(buf, &c.first) || !parse_u64(dash + 1, &c.last) || c.last < c.first) {
        fprintf(stderr, "npsim: bad seed range '%s'\n", v);
        return 2;
      }
      c.have_seeds = true;
      i++;
    } else if (strcmp(a, "--strategy") == 0 && v != NULL) {
      if (strcmp(v, "random") == 0)
        c.strategy = 0;
      else if (strcmp(v, "pct") == 0)
        c.strategy = 1;
      else {
        fprintf(stderr, "npsim: unknown strategy '%s'\n", v);
        return 2;
      }
      i++;
    } else if (strcmp(a, "--depth") == 0 && parse_u64(v, &n) && n >= 1 && n <= 16) {
      c.depth = (int)n;
      i++;
    } else if (strcmp(a, "--steps") == 0 && parse_u64(v, &n) && n > 0) {
      c.o.step_limit = n;
      i++;
    } else if (strcmp(a, "--trace-tail") == 0 && parse_u64(v, &n) && n < 100000) {
      c.o.trace_tail = (int)n;
      i++;
    } else if (strcmp(a, "--seconds") == 0 && v != NULL && atof(v) > 0) {
      c.seconds = atof(v);
      i++;
    } else if (strcmp(a, "--out") == 0 && v != NULL) {
      c.out = v;
      i++;
    } else if (strcmp(a, "--fast") == 0) {
      c.o.check_every_step = false;
    } else if (strcmp(a, "--no-faults") == 0) {
      c.no_faults = true;
      c.o.no_faults = true;
    } else if (strcmp(a, "--stop-on-fail") == 0) {
      c.stop_on_fail = true;
    } else if (strcmp(a, "--quiet") == 0) {
      c.quiet = true;
    } else if (a[0] != '-' && c.file_count < 64) {
      c.files[c.file_count++] = a;
    } else {
      fprintf(stderr, "npsim: bad option '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }

  if (strcmp(cmd, "run") == 0) return campaign(&c, true);
  if (strcmp(cmd, "scenario") == 0) {
    if (c.file_count == 0) {
      fprintf(stderr, "npsim: scenario needs files\n");
      return 2;
    }
    return campaign(&c, false);
  }
  if (strcmp(cmd, "check") == 0) {
    int bad = 0;
    for (int i = 0; i < c.file_count; i++) {
      char err[512];
      if (sc_parse_file(c.files[i], &g_sc, err, sizeof(err)) != 0) {
        fprintf(stderr, "npsim: %s\n", err);
        bad = 1;
      } else {
        printf("%s: ok (%d streams, %d tasks, %d actions)\n", c.files[i], g_sc.stream_count, g_sc.task_count,
               g_sc.action_count);
      }
    }
    return bad ? 2 : 0;
  }
  if (strcmp(cmd, "gen") == 0) {
    if (!c.have_seeds) {
      fprintf(stderr, "npsim: gen needs --seed N\n");
      return 2;
    }
    sc_generate(c.first, !c.no_faults, &g_sc);
    apply_overrides(&c, &g_sc);
    g_sc.has_seed = true;
    g_sc.seed = c.first;
    sc_dump(&g_sc, stdout);
    return 0;
  }
  if (strcmp(cmd, "outcome") == 0) {
    /* One line per action with a result, grouped by task in action order:
     * the observable behaviour the conformance test compares. */
    uint64_t seed;
    int rc = load(&c, &seed);
    if (rc != 0) return rc;
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    c.o.outcome = mem;
    c.o.report = NULL;
    c.o.sc = &g_sc;
    c.o.seed = seed;
    world_result r;
    rc = world_run(&c.o, &r);
    fclose(mem);
    if (rc != 0) {
      fprintf(stderr, "npsim: run failed: %s\n", r.failure);
      free(text);
      return 1;
    }
    /* sort by task order of the scenario (stable within a task) */
    for (int t = 0; t < g_sc.task_count; t++) {
      size_t nlen = strlen(g_sc.tasks[t].name);
      for (char *line = text; line != NULL && *line;) {
        char *end = strchr(line, '\n');
        size_t l = end ? (size_t)(end - line) : strlen(line);
        if (l > nlen && strncmp(line, g_sc.tasks[t].name, nlen) == 0 && line[nlen] == ' ')
          printf("%.*s\n", (int)l, line);
        line = end ? end + 1 : NULL;
      }
    }
    free(text);
    return 0;
  }
  if (strcmp(cmd, "replay") == 0) {
    uint64_t seed;
    int rc = load(&c, &seed);
    if (rc != 0) return rc;
    c.o.trace_out = stdout;
    c.o.trace_tail = 0;
    c.o.sc = &g_sc;
    c.o.seed = seed;
    world_result r;
    rc = world_run(&c.o, &r);
    printf("%s %s seed=%" PRIu64 " steps=%" PRIu64 " virtual=%.3fms hash=%016" PRIx64 "%s%s\n",
           rc ? "FAIL" : "PASS", g_sc.name, seed, r.steps, (double)r.virtual_ns / 1e6, r.trace_hash,
           rc ? ": " : "", rc ? r.failure : "");
    return rc ? 1 : 0;
  }
  if (strcmp(cmd, "shrink") == 0) {
    uint64_t seed;
    int rc = load(&c, &seed);
    if (rc != 0) return rc;
    static scenario reduced;
    shrink_stats st;
    c.o.report = NULL;
    double t0 = wall();
    if (sc_shrink(&g_sc, seed, &c.o, 8, &reduced, &st, c.quiet ? NULL : stderr) != 0) {
      fprintf(stderr, "npsim: the run does not fail; nothing to shrink\n");
      return 2;
    }
    char path[512];
    if (c.out != NULL)
      snprintf(path, sizeof(path), "%s", c.out);
    else if (c.file_count > 0)
      snprintf(path, sizeof(path), "%s.min.scn", c.files[0]);
    else
      snprintf(path, sizeof(path), "seed-%" PRIu64 ".min.scn", seed);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
      fprintf(stderr, "npsim: %s: %s\n", path, strerror(errno));
      return 2;
    }
    snprintf(reduced.name, sizeof(reduced.name), "%.58s-min", g_sc.name);
    fprintf(f, "# shrunk from %d tasks / %d actions; fails with: %s\n# build %s\n", g_sc.task_count,
            g_sc.action_count, st.failure, NP_BUILD_ID);
    sc_dump(&reduced, f);
    fclose(f);
    printf("shrunk %d tasks / %d actions -> %d tasks / %d actions in %.1fs (%d candidates); seed %" PRIu64
           "\nfails with: %s\nwritten: %s\nreplay: npsim replay %s\n",
           g_sc.task_count, g_sc.action_count, reduced.task_count, reduced.action_count, wall() - t0,
           st.candidates, st.seed, st.failure, path, path);
    return 0;
  }
  if (strcmp(cmd, "selfcheck") == 0) {
    if (!c.have_seeds) c.first = 1, c.last = 200;
    static scenario parsed;
    for (uint64_t seed = c.first; seed <= c.last; seed++) {
      sc_generate(seed, !c.no_faults, &g_sc);
      apply_overrides(&c, &g_sc);
      world_result a, b, d;
      c.o.report = NULL;
      c.o.sc = &g_sc;
      c.o.seed = seed;
      world_run(&c.o, &a);
      world_run(&c.o, &b);
      /* round trip through the text format */
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
      c.o.sc = &parsed;
      world_run(&c.o, &d);
      if (a.trace_hash != b.trace_hash || a.steps != b.steps || a.failed != b.failed) {
        printf("NONDETERMINISTIC seed=%" PRIu64 ": hash %016" PRIx64 " vs %016" PRIx64 "\n", seed,
               a.trace_hash, b.trace_hash);
        return 1;
      }
      if (a.trace_hash != d.trace_hash) {
        printf("ROUNDTRIP seed=%" PRIu64 ": parsed scenario runs differently (%016" PRIx64 " vs %016" PRIx64
               ")\n",
               seed, a.trace_hash, d.trace_hash);
        return 1;
      }
    }
    printf("deterministic: seeds %" PRIu64 "-%" PRIu64
           " gave identical traces twice and after a text round trip\n",
           c.first, c.last);
    return 0;
  }
  if (strcmp(cmd, "bench") == 0) {
    c.o.report = NULL;
    double results[2][2];
    for (int checked = 0; checked < 2; checked++) {
      c.o.check_every_step = checked;
      uint64_t steps = 0, runs = 0;
      double t0 = wall(), t;
      for (uint64_t seed = 1; (t = wall()) - t0 < c.seconds; seed++) {
        sc_generate(seed, !c.no_faults, &g_sc);
        apply_overrides(&c, &g_sc);
        c.o.sc = &g_sc;
        c.o.seed = seed;
        world_result r;
        world_run(&c.o, &r);
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
  fprintf(stderr, "npsim: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}
