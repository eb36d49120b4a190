/*
 * harness.h - the fuzz targets. Each decodes arbitrary bytes into work for
 * the real core running in the simulator (or for the scenario parser),
 * checks every invariant, and aborts with a report on a violation. Each
 * returns 0 and sets *hash (a digest of the run) so the replay driver can
 * check that running an input twice gives the same run (nothing leaks from
 * one input into the next). The three drivers (libFuzzer, AFL++, replay)
 * call these and nothing else.
 */
#ifndef NP_FUZZ_HARNESS_H
#define NP_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef int (*np_fuzz_fn)(const uint8_t *data, size_t size, uint64_t *hash);

/* A program of pollDesc operations on a few fds (open, wait, deadlines,
 * readiness, error, HUP, close, reuse), scheduled by the rest of the input. */
int np_fuzz_lifecycle(const uint8_t *data, size_t size, uint64_t *hash);
/* The scheduler's choices (and fault decisions) for a fixed set of actors:
 * the first byte picks one of the Go-bug scenarios, the rest steer it. */
int np_fuzz_schedule(const uint8_t *data, size_t size, uint64_t *hash);
/* A stream of epoll_wait results (masks, current and stale tags, counts,
 * EINTR, break events) fed to the real poller loop, against a model. */
int np_fuzz_events(const uint8_t *data, size_t size, uint64_t *hash);
/* Arbitrary bytes into the scenario / replay-file parser: a clean error or
 * a scenario that dumps and re-parses to itself. */
int np_fuzz_parser(const uint8_t *data, size_t size, uint64_t *hash);

/* Arbitrary bytes into the address code (netpoll/src/addr.c): text parsed,
 * formatted and parsed back, sockaddrs of any bytes and length converted
 * and round-tripped, formatting into buffers of every size. */
int np_fuzz_addr(const uint8_t *data, size_t size, uint64_t *hash);

typedef struct np_fuzz_target {
  const char *name;
  np_fuzz_fn fn;
} np_fuzz_target;

extern const np_fuzz_target np_fuzz_targets[];
const np_fuzz_target *np_fuzz_find(const char *name);

/* Replay driver: print the decoded program and the full trace. */
extern FILE *np_fuzz_verbose;

#endif
