/*
 * target_parser.c - arbitrary bytes into the scenario / replay-file parser
 * and then the interpreter. The parser must return a clean line-numbered
 * error, or a scenario that dumps to text which parses back to a scenario
 * that dumps to the same text. A scenario that parses is then run (one
 * seed, a bounded number of steps): the library is correct, so the run may
 * end in an input error, its own expectations, the step bound or a
 * legitimate wait forever, but never in an invariant failure or undefined
 * behaviour (UBSan): a value that parses but breaks the run is a tool bug.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "scenario.h"
#include "world.h"

#define RUN_STEPS 20000

static uint64_t fnv(const char *p, size_t n) { return sc_fnv1a64(p, n); }

/* Failures a correct library can still produce on an arbitrary scenario. */
static bool legitimate(const char *failure) {
  static const char *const ok[] = {SIM_INPUT_ERROR, "expectation", "step limit"};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
    if (strncmp(failure, ok[i], strlen(ok[i])) == 0) return true;
  return false;
}

static uint64_t run_scenario(const scenario *sc) {
  world_options o = {
      .sc = sc,
      .seed = sc->has_seed ? sc->seed : sc->seed_first,
      .step_limit = RUN_STEPS,
      .check_every_step = true,
      .trace_out = np_fuzz_verbose,
      .allow_stuck = true,
  };
  world_result r;
  if (world_run(&o, &r) != 0 && !legitimate(r.failure)) {
    fprintf(stderr, "np_fuzz_parser: a parsed scenario fails the run: %s\n", r.failure);
    abort();
  }
  return r.trace_hash ^ r.steps;
}

int np_fuzz_parser(const uint8_t *data, size_t size, uint64_t *hash) {
  static scenario a, b;
  char err[256];
  if (sc_parse((const char *)data, size, &a, err, sizeof(err)) != 0) {
    if (strncmp(err, "line ", 5) != 0 && strncmp(err, "end of input", 12) != 0) {
      fprintf(stderr, "np_fuzz_parser: error without a line number: %s\n", err);
      abort();
    }
    if (hash != NULL) *hash = fnv(err, strlen(err));
    return 0;
  }
  char *text1 = NULL, *text2 = NULL;
  size_t len1 = 0, len2 = 0;
  FILE *m = open_memstream(&text1, &len1);
  sc_dump(&a, m);
  fclose(m);
  if (sc_parse(text1, len1, &b, err, sizeof(err)) != 0) {
    fprintf(stderr, "np_fuzz_parser: dumped scenario does not parse: %s\n%s", err, text1);
    abort();
  }
  m = open_memstream(&text2, &len2);
  sc_dump(&b, m);
  fclose(m);
  if (len1 != len2 || memcmp(text1, text2, len1) != 0) {
    fprintf(stderr, "np_fuzz_parser: dump -> parse -> dump changed the text:\n%s---\n%s", text1, text2);
    abort();
  }
  if (np_fuzz_verbose != NULL) fwrite(text1, 1, len1, np_fuzz_verbose);
  uint64_t run = run_scenario(&a);
  if (hash != NULL) *hash = fnv(text1, len1) ^ run;
  free(text1);
  free(text2);
  return 0;
}
