/*
 * rand.c - np_rand for the real library: splitmix64 over one atomic
 * counter, seeded once from the kernel (getrandom) or by np_rand_seed. The
 * simulated library draws from the run's seed instead.
 *
 * It must never: block (getrandom is asked not to, and a failure falls back
 * to the clock), hand two threads the same counter value, or let the lazy
 * seeding overwrite a seed np_rand_seed stored.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/random.h>

#include "np_internal.h"

#define GOLDEN_GAMMA 0x9E3779B97F4A7C15ull

static _Atomic uint64_t rand_state; /* the splitmix64 counter */
static pthread_once_t rand_once = PTHREAD_ONCE_INIT;

static void seed_from_kernel(void) {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
    seed = (uint64_t)np_now() ^ (uint64_t)(uintptr_t)&seed; /* no entropy yet: good enough for jitter */
  atomic_store(&rand_state, seed);
}

static uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t np_rand(void) {
  (void)pthread_once(&rand_once, seed_from_kernel);
  return mix(atomic_fetch_add(&rand_state, GOLDEN_GAMMA) + GOLDEN_GAMMA);
}

void np_rand_seed(uint64_t seed) {
  (void)pthread_once(&rand_once, seed_from_kernel); /* the lazy seeding is over for good */
  atomic_store(&rand_state, seed);
}
