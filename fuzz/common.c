/*
 * common.c - the target table and the failure report shared by targets.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

FILE *np_fuzz_verbose;

const np_fuzz_target np_fuzz_targets[] = {
    {"lifecycle", np_fuzz_lifecycle}, {"schedule", np_fuzz_schedule}, {"events", np_fuzz_events},
    {"parser", np_fuzz_parser},       {"addr", np_fuzz_addr},         {NULL, NULL},
};

const np_fuzz_target *np_fuzz_find(const char *name) {
  for (const np_fuzz_target *t = np_fuzz_targets; t->name != NULL; t++)
    if (strcmp(t->name, name) == 0) return t;
  return NULL;
}
