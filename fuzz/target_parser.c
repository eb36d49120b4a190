/*
 * target_parser.c - arbitrary bytes into the scenario / replay-file parser.
 * It must return a clean error, or a scenario that dumps to text which
 * parses back to a scenario that dumps to the same text.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "scenario.h"

static uint64_t fnv(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
  return h;
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
  if (hash != NULL) *hash = fnv(text1, len1);
  free(text1);
  free(text2);
  return 0;
}
