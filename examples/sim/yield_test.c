/*
 * yield_test.c - tasks that busy-wait with np_yield: for a flag a sleeping
 * task sets, and for np_now to pass a deadline. Natively time passes while
 * a task spins; under the simulator np_yield lets virtual time pass too
 * (else a task that never blocks would freeze the clock, no sleep would
 * end, and a correct program would be reported as a hang). The same
 * source natively and simulated.
 */
#include <netpoll_test.h>
#include <stdatomic.h>

static atomic_int g_flag;

static void set_later(void *arg) {
  (void)arg;
  NP_CHECK_EQ(np_sleep(10 * 1000 * 1000), 0);
  atomic_store(&g_flag, 1);
}

NP_TEST(busy_wait_for_a_sleeper) {
  atomic_store(&g_flag, 0);
  NP_CHECK_EQ(np_go(np_current(), set_later, NULL), 0);
  int64_t start = np_now(), give_up = start + 5000 * 1000 * 1000LL;
  while (!atomic_load(&g_flag) && np_now() < give_up) np_yield();
  NP_CHECK_EQ(atomic_load(&g_flag), 1);
  NP_CHECK(np_now() - start >= 10 * 1000 * 1000);
}

NP_TEST(busy_wait_for_a_deadline) {
  int64_t start = np_now();
  long turns = 0;
  while (np_now() < start + 2 * 1000 * 1000) {
    np_yield();
    turns++;
  }
  NP_CHECK(turns > 0);
  NP_CHECK(np_now() - start >= 2 * 1000 * 1000);
}

NP_TEST_MAIN()
