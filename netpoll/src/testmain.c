/*
 * testmain.c - np_test_main in the real library: the tests of a program
 * written against netpoll_test.h, run natively, once per seed (np_rand is
 * seeded with it). The simulated library (sim/lib) runs the same tests
 * under the simulator instead.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netpoll_test.h"

#define TESTS_MAX 256

static struct {
  const char *name;
  np_test_fn fn;
} tests[TESTS_MAX];
static int test_count;
static const char *current_name = "?";
static uint64_t current_seed;

void np_test_register(const char *name, np_test_fn fn) {
  if (test_count < TESTS_MAX && name != NULL && fn != NULL) {
    tests[test_count].name = name;
    tests[test_count++].fn = fn;
  }
}

bool np_test_simulated(void) { return false; }

void np_test_fail(const char *file, int line, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  fprintf(stderr, "FAIL %s seed %" PRIu64 " (native): %s (%s:%d)\n", current_name, current_seed, msg, file,
          line);
  fflush(NULL);
  _exit(1); /* other tasks and threads are still running: no atexit */
}

static void body(void *arg) { ((np_test_fn)(uintptr_t)arg)(); }

static bool parse_seeds(const char *s, uint64_t *first, uint64_t *last) {
  char *end;
  if (s == NULL || *s < '0' || *s > '9') return false;
  *first = *last = strtoull(s, &end, 10);
  if (*end == '-') {
    if (end[1] < '0' || end[1] > '9') return false;
    *last = strtoull(end + 1, &end, 10);
  }
  return *end == 0 && *first <= *last;
}

static int run_test(int i, uint64_t first, uint64_t last, bool quiet) {
  current_name = tests[i].name;
  for (uint64_t seed = first;; seed++) {
    current_seed = seed;
    np_rand_seed(seed);
    int err = np_run(NULL, body, (void *)(uintptr_t)tests[i].fn);
    if (err != 0) {
      fprintf(stderr, "FAIL %s seed %" PRIu64 " (native): np_run: %s\n", current_name, seed,
              np_strerror(err));
      return 1;
    }
    if (seed == last) break;
  }
  if (!quiet) printf("ok %s: %" PRIu64 " seeds (native)\n", current_name, last - first + 1);
  return 0;
}

int np_test_main(int argc, char **argv) {
  uint64_t first = 1, last = 1;
  const char *only = NULL;
  bool quiet = false, list = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "list")) {
      list = true;
    } else if ((!strcmp(argv[i], "--seeds") || !strcmp(argv[i], "--seed")) &&
               parse_seeds(argv[i + 1 < argc ? i + 1 : i], &first, &last) && i + 1 < argc) {
      i++;
    } else if (!strcmp(argv[i], "--test") && i + 1 < argc) {
      only = argv[++i];
    } else if (!strcmp(argv[i], "--quiet")) {
      quiet = true;
    } else {
      fprintf(stderr,
              "usage: %s [list] [--seeds A-B | --seed N] [--test NAME] [--quiet]\n"
              "(native: each test once per seed; link libnetpoll-sim to simulate)\n",
              argv[0]);
      return strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
  }
  int matched = 0, failed = 0;
  for (int i = 0; i < test_count; i++) {
    if (only != NULL && strcmp(only, tests[i].name) != 0) continue;
    matched++;
    if (list)
      printf("%s\n", tests[i].name);
    else
      failed |= run_test(i, first, last, quiet);
  }
  if (matched == 0) fprintf(stderr, "%s: no test%s%s\n", argv[0], only ? " named " : "", only ? only : "");
  return matched == 0 ? 2 : failed;
}
