/*
 * npsim - run the netpoll core under the deterministic simulator.
 *
 *   npsim run [--seeds A-B | --seed N] [--strategy random|pct] [--depth D]
 *             [--steps N] [--fast] [--no-faults] [--stop-on-fail] [--quiet]
 *   npsim replay --seed N [--strategy S] [--depth D]   full trace of one run
 *   npsim selfcheck [--seeds A-B]                      determinism: same seed, same trace hash
 *   npsim bench [--seconds S]                          steps/s and seeds/s on one core
 *
 * Exit status: 0 all runs passed, 1 a run failed, 2 usage error.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "world.h"

static void usage(FILE *out) {
  fputs(
      "usage: npsim <command> [options]\n"
      "commands:\n"
      "  run        run a campaign over a seed range (default 1-1000)\n"
      "  replay     run one seed and print its full trace (virtual time, step,\n"
      "             task, operation, object, old -> new)\n"
      "  selfcheck  run each seed twice and compare trace hashes (determinism)\n"
      "  bench      measure schedule steps/s and seeds/s on one core\n"
      "options:\n"
      "  --seed N          one seed\n"
      "  --seeds A-B       seed range, inclusive (shard a campaign by range)\n"
      "  --strategy S      random (uniform random walk, default) or pct\n"
      "  --depth D         PCT bug depth (default 3)\n"
      "  --steps N         step limit per run: longer is a hang (default 2000000)\n"
      "  --fast            check state invariants only at quiescence, not every step\n"
      "  --no-faults       no injected faults\n"
      "  --stop-on-fail    stop a campaign at the first failure\n"
      "  --trace-tail N    trace lines in a failure report (default 40)\n"
      "  --seconds S       bench duration (default 3)\n"
      "  --quiet           no progress line\n",
      out);
}

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool parse_u64(const char *s, uint64_t *out) {
  char *end;
  if (s == NULL || *s == 0) return false;
  *out = strtoull(s, &end, 0);
  return *end == 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *cmd = argv[1];
  world_options o = {.strategy = SIM_RANDOM, .pct_depth = 3, .check_every_step = true, .trace_tail = 40};
  uint64_t first = 1, last = 1000;
  bool stop_on_fail = false, quiet = false;
  double seconds = 3;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    uint64_t n;
    if (strcmp(a, "--seed") == 0 && parse_u64(v, &n)) {
      first = last = n;
      i++;
    } else if (strcmp(a, "--seeds") == 0 && v != NULL) {
      char *dash = strchr(v, '-');
      if (dash == NULL) {
        fprintf(stderr, "npsim: --seeds wants A-B\n");
        return 2;
      }
      *dash = 0;
      if (!parse_u64(v, &first) || !parse_u64(dash + 1, &last) || last < first) {
        fprintf(stderr, "npsim: bad seed range\n");
        return 2;
      }
      i++;
    } else if (strcmp(a, "--strategy") == 0 && v != NULL) {
      if (strcmp(v, "random") == 0)
        o.strategy = SIM_RANDOM;
      else if (strcmp(v, "pct") == 0)
        o.strategy = SIM_PCT;
      else {
        fprintf(stderr, "npsim: unknown strategy '%s'\n", v);
        return 2;
      }
      i++;
    } else if (strcmp(a, "--depth") == 0 && parse_u64(v, &n) && n >= 1 && n <= 16) {
      o.pct_depth = (int)n;
      i++;
    } else if (strcmp(a, "--steps") == 0 && parse_u64(v, &n) && n > 0) {
      o.step_limit = n;
      i++;
    } else if (strcmp(a, "--trace-tail") == 0 && parse_u64(v, &n)) {
      o.trace_tail = (int)n;
      i++;
    } else if (strcmp(a, "--seconds") == 0 && v != NULL && atof(v) > 0) {
      seconds = atof(v);
      i++;
    } else if (strcmp(a, "--fast") == 0) {
      o.check_every_step = false;
    } else if (strcmp(a, "--no-faults") == 0) {
      o.no_faults = true;
    } else if (strcmp(a, "--stop-on-fail") == 0) {
      stop_on_fail = true;
    } else if (strcmp(a, "--quiet") == 0) {
      quiet = true;
    } else {
      fprintf(stderr, "npsim: bad option '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  const char *strategy = o.strategy == SIM_PCT ? "pct" : "random";
  world_result r;

  if (strcmp(cmd, "replay") == 0) {
    o.seed = first;
    o.trace_out = stdout;
    o.report = stdout;
    int rc = world_run(&o, &r);
    printf("%s seed=%" PRIu64 " steps=%" PRIu64 " virtual=%.3fms hash=%016" PRIx64 "%s%s\n",
           rc ? "FAIL" : "PASS", first, r.steps, (double)r.virtual_ns / 1e6, r.trace_hash, rc ? ": " : "",
           rc ? r.failure : "");
    return rc ? 1 : 0;
  }
  if (strcmp(cmd, "selfcheck") == 0) {
    if (last - first > 100000) last = first + 100000;
    for (uint64_t seed = first; seed <= last; seed++) {
      o.seed = seed;
      world_result a, b;
      world_run(&o, &a);
      world_run(&o, &b);
      if (a.trace_hash != b.trace_hash || a.steps != b.steps || a.failed != b.failed) {
        printf("NONDETERMINISTIC seed=%" PRIu64 ": hash %016" PRIx64 " vs %016" PRIx64 ", steps %" PRIu64
               " vs %" PRIu64 "\n",
               seed, a.trace_hash, b.trace_hash, a.steps, b.steps);
        return 1;
      }
    }
    printf("deterministic: seeds %" PRIu64 "-%" PRIu64 " gave identical traces twice\n", first, last);
    return 0;
  }
  if (strcmp(cmd, "bench") == 0) {
    o.check_every_step = false;
    uint64_t steps = 0, runs = 0, seed = 1;
    double t0 = wall(), t;
    while ((t = wall()) - t0 < seconds) {
      o.seed = seed++;
      world_run(&o, &r);
      steps += r.steps;
      runs++;
    }
    double checked_t0 = wall();
    uint64_t checked_steps = 0, checked_runs = 0;
    o.check_every_step = true;
    for (uint64_t s = 1; wall() - checked_t0 < seconds; s++) {
      o.seed = s;
      world_run(&o, &r);
      checked_steps += r.steps;
      checked_runs++;
    }
    double checked = wall() - checked_t0;
    printf(
        "bench (%s, one core): %.0f steps/s, %.0f seeds/s (invariants at quiescence); "
        "%.0f steps/s, %.0f seeds/s (invariants every step); %.0f steps/seed\n",
        strategy, (double)steps / (t - t0), (double)runs / (t - t0), (double)checked_steps / checked,
        (double)checked_runs / checked, (double)steps / (double)runs);
    return 0;
  }
  if (strcmp(cmd, "run") != 0) {
    fprintf(stderr, "npsim: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
  }
  o.report = stdout;
  uint64_t runs = 0, failures = 0, steps = 0;
  double t0 = wall(), last_print = t0;
  for (uint64_t seed = first; seed <= last; seed++) {
    o.seed = seed;
    int rc = world_run(&o, &r);
    runs++;
    steps += r.steps;
    if (rc != 0) {
      failures++;
      printf("replay: npsim replay --seed %" PRIu64 " --strategy %s --depth %d\n", seed, strategy,
             o.pct_depth);
      fflush(stdout);
      if (stop_on_fail) break;
    }
    double now = wall();
    if (!quiet && now - last_print > 1.0) {
      fprintf(stderr, "\r[npsim] seed %" PRIu64 "  runs %" PRIu64 "  failures %" PRIu64 "  %.0f steps/s ",
              seed, runs, failures, (double)steps / (now - t0));
      last_print = now;
    }
    if (seed == UINT64_MAX) break;
  }
  double elapsed = wall() - t0;
  if (!quiet) fprintf(stderr, "\n");
  printf("summary: strategy=%s seeds=%" PRIu64 "-%" PRIu64 " runs=%" PRIu64 " failures=%" PRIu64
         " steps=%" PRIu64 " %.0f steps/s %.0f seeds/s\n",
         strategy, first, first + runs - 1, runs, failures, steps, (double)steps / elapsed,
         (double)runs / elapsed);
  return failures ? 1 : 0;
}
