/*
 * driver_replay.c - plain replay driver, no fuzzing engine: runs stored
 * inputs (files or directories) through a target under the normal build
 * (the test suite runs it under ASan+UBSan). Each input runs twice and
 * must give the same digest both times: nothing may leak from one run into
 * the next.
 *
 *   np_fuzz_replay [-v] TARGET|auto PATH...
 *
 * auto takes the target from the path (corpus/<target>/... or
 * corpus/regressions/<target>/...). -v prints the decoded program and the
 * full simulator trace.
 */
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

/* Directories are walked to any depth up to this (then it is an error). */
#define DEPTH_MAX 64

static int failures, inputs;

static const np_fuzz_target *target_from_path(const char *path) {
  for (const np_fuzz_target *t = np_fuzz_targets; t->name != NULL; t++) {
    char needle[64];
    snprintf(needle, sizeof(needle), "/%s/", t->name);
    if (strstr(path, needle) != NULL) return t;
    snprintf(needle, sizeof(needle), "%s/", t->name);
    if (strncmp(path, needle, strlen(needle)) == 0) return t;
  }
  return NULL;
}

/* The whole file, in a buffer of exactly its size (ASan sees overreads),
 * whatever its size: an input is never cut short. NULL on error (printed). */
static uint8_t *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "np_fuzz_replay: %s: %s\n", path, strerror(errno));
    return NULL;
  }
  size_t cap = 4096, n = 0;
  uint8_t *buf = malloc(cap);
  for (size_t got = 1; buf != NULL && got > 0;) {
    if (n == cap) {
      uint8_t *bigger = realloc(buf, cap * 2);
      if (bigger == NULL) break;
      buf = bigger;
      cap *= 2;
    }
    got = fread(buf + n, 1, cap - n, f);
    n += got;
  }
  bool bad = buf == NULL || ferror(f) || !feof(f);
  fclose(f);
  if (bad) {
    fprintf(stderr, "np_fuzz_replay: %s: could not read all of it\n", path);
    free(buf);
    return NULL;
  }
  uint8_t *exact = malloc(n > 0 ? n : 1);
  if (exact == NULL) abort();
  memcpy(exact, buf, n);
  free(buf);
  *len = n;
  return exact;
}

static void run_file(const np_fuzz_target *fixed, const char *path) {
  const np_fuzz_target *t = fixed != NULL ? fixed : target_from_path(path);
  if (t == NULL) {
    fprintf(stderr, "np_fuzz_replay: %s: cannot tell the target from the path; name it\n", path);
    failures++;
    return;
  }
  size_t len;
  uint8_t *copy = read_all(path, &len);
  if (copy == NULL) {
    failures++;
    return;
  }
  uint64_t h1 = 0, h2 = 0;
  if (np_fuzz_verbose != NULL) fprintf(np_fuzz_verbose, "=== %s (%s, %zu bytes) ===\n", path, t->name, len);
  t->fn(copy, len, &h1);
  FILE *saved = np_fuzz_verbose;
  np_fuzz_verbose = NULL;
  t->fn(copy, len, &h2);
  np_fuzz_verbose = saved;
  free(copy);
  inputs++;
  if (h1 != h2) {
    fprintf(stderr, "np_fuzz_replay: %s: two runs differ (%016llx vs %016llx): state leaks between inputs\n",
            path, (unsigned long long)h1, (unsigned long long)h2);
    failures++;
  }
}

static void run_path(const np_fuzz_target *fixed, const char *path, int depth) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "np_fuzz_replay: %s: %s\n", path, strerror(errno));
    failures++;
    return;
  }
  if (!S_ISDIR(st.st_mode)) {
    run_file(fixed, path);
    return;
  }
  if (depth > DEPTH_MAX) {
    fprintf(stderr, "np_fuzz_replay: %s: directories nested deeper than %d (a symlink loop?)\n", path,
            DEPTH_MAX);
    failures++;
    return;
  }
  DIR *d = opendir(path);
  if (d == NULL) {
    fprintf(stderr, "np_fuzz_replay: %s: %s\n", path, strerror(errno));
    failures++;
    return;
  }
  /* sorted, so output and order are stable */
  char **names = NULL;
  size_t count = 0, cap = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (e->d_name[0] == '.') continue;
    size_t len = strlen(e->d_name);
    if (len > 3 && strcmp(e->d_name + len - 3, ".md") == 0) continue; /* notes, not inputs */
    if (count == cap) {
      cap = cap ? cap * 2 : 64;
      char **bigger = realloc(names, cap * sizeof(*names));
      if (bigger == NULL) abort();
      names = bigger;
    }
    names[count++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, count, sizeof(*names), (int (*)(const void *, const void *))strcmp);
  for (size_t i = 0; i < count; i++) {
    char child[8192];
    if ((size_t)snprintf(child, sizeof(child), "%s/%s", path, names[i]) >= sizeof(child)) {
      fprintf(stderr, "np_fuzz_replay: %s/%s: path too long\n", path, names[i]);
      failures++;
    } else {
      run_path(fixed, child, depth + 1);
    }
    free(names[i]);
  }
  free(names);
}

int main(int argc, char **argv) {
  int i = 1;
  if (i < argc && strcmp(argv[i], "-v") == 0) {
    np_fuzz_verbose = stdout;
    i++;
  }
  if (argc - i < 2) {
    fprintf(stderr, "usage: np_fuzz_replay [-v] TARGET|auto PATH...\ntargets:");
    for (const np_fuzz_target *t = np_fuzz_targets; t->name != NULL; t++) fprintf(stderr, " %s", t->name);
    fprintf(stderr, "\n");
    return 2;
  }
  const np_fuzz_target *fixed = NULL;
  if (strcmp(argv[i], "auto") != 0) {
    fixed = np_fuzz_find(argv[i]);
    if (fixed == NULL) {
      fprintf(stderr, "np_fuzz_replay: unknown target '%s'\n", argv[i]);
      return 2;
    }
  }
  for (i++; i < argc; i++) run_path(fixed, argv[i], 0);
  printf("np_fuzz_replay: %d inputs, %d failures\n", inputs, failures);
  return failures ? 1 : 0;
}
