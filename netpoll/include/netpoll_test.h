/*
 * netpoll_test.h - tests of your own program, the same source run natively
 * (linked with libnetpoll) or under the simulator (linked with
 * libnetpoll-sim: seeded schedules, virtual time, a simulated network with
 * faults, replay with a trace).
 *
 *   #include <netpoll_test.h>
 *   NP_TEST(echo) {            // runs as the first task of a fresh poller
 *     np_poller *p = np_current();
 *     ...
 *     NP_CHECK(n == 5);        // a failure names the seed and how to replay it
 *   }
 *   NP_TEST_MAIN()
 *
 * Natively `./prog [--seeds A-B]` runs each test once per seed (np_rand is
 * seeded with it). Simulated, `./prog --seeds 1-10000 [--strategy pct]` runs
 * a campaign; `./prog --help` lists the options. A plain assert() is a
 * failure too in the simulated build.
 */
#ifndef NETPOLL_TEST_H
#define NETPOLL_TEST_H

#include "netpoll.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*np_test_fn)(void);

/* Registers a test (NP_TEST does it before main). At most 256. */
NP_EXTERN void np_test_register(const char *name, np_test_fn fn);

/* Runs the registered tests as the command line says; returns the exit
 * status (0 all passed, 1 a test failed, 2 bad usage). */
NP_EXTERN int np_test_main(int argc, char **argv);

/* Fails the running test with a message (NP_CHECK calls it). */
NP_EXTERN _Noreturn void np_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True in the simulated build (to scale a test's sizes, not its logic). */
NP_EXTERN bool np_test_simulated(void);

#define NP_TEST(name)                                                      \
  static void np_test_body_##name(void);                                   \
  __attribute__((constructor)) static void np_test_register_##name(void) { \
    np_test_register(#name, np_test_body_##name);                          \
  }                                                                        \
  static void np_test_body_##name(void)

#define NP_CHECK(cond) ((cond) ? (void)0 : np_test_fail(__FILE__, __LINE__, "check failed: %s", #cond))

#define NP_CHECK_EQ(a, b)                                                                            \
  do {                                                                                               \
    long long np_check_a_ = (long long)(a), np_check_b_ = (long long)(b);                            \
    if (np_check_a_ != np_check_b_)                                                                  \
      np_test_fail(__FILE__, __LINE__, "check failed: %s == %s (%lld != %lld)", #a, #b, np_check_a_, \
                   np_check_b_);                                                                     \
  } while (0)

#define NP_TEST_MAIN() \
  int main(int argc, char **argv) { return np_test_main(argc, argv); }

#ifdef __cplusplus
}
#endif
#endif /* NETPOLL_TEST_H */
