/* test_smoke.c - the library's basic promise on a pipe: a blocked reader
 * wakes on data, a deadline, and close. */
#include <unistd.h>

#include "helpers.h"

static np_fd *g_w;
static void *write_later(void *arg) {
  (void)arg;
  th_sleep_ms(20);
  size_t written = 0;
  assert_int_equal(np_write(g_w, "hello", 5, &written), 0);
  assert_int_equal(written, 5);
  return NULL;
}

static void test_read_blocks_until_data(void **state) {
  (void)state;
  np_poller *p = th_poller();
  int fds[2];
  np_fd *f[2];
  th_pipe(fds);
  th_open_pair(p, fds, f);
  g_w = f[1];
  pthread_t t = th_start(write_later, NULL);
  char buf[16];
  assert_int_equal(np_read(f[0], buf, sizeof(buf)), 5);
  assert_memory_equal(buf, "hello", 5);
  th_join(t);
  th_poller_destroy(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_read_blocks_until_data)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
