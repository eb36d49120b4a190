/*
 * program.c - a program with its own main and np_run, no test macros:
 * linked with libnetpoll-sim, np_run makes one simulated run (NP_SIM_SEED
 * picks the seed); a failed assert names the seed and the replay command.
 */
#undef NDEBUG /* the checks below are the point */
#include <assert.h>
#include <netpoll.h>
#include <stdio.h>

static void app(void *arg) {
  (void)arg;
  np_fd *pipe[2];
  char c = 0;
  int err = np_pipe(np_current(), pipe);
  assert(err == 0);
  err = np_write(pipe[1], "!", 1, NULL);
  assert(err == 0);
  ssize_t n = np_read(pipe[0], &c, 1);
  assert(n == 1 && c == '!');
  np_free(pipe[0]);
  np_free(pipe[1]);
  printf("read %c at %lld ns\n", c, (long long)np_now());
}

int main(void) { return np_run(NULL, app, NULL) == 0 ? 0 : 1; }
