/*
 * user_program.c - a program with its own main and np_run under
 * libnetpoll-sim: the environment sets the run (NP_SIM_*), a failure's
 * replay line repeats the program's arguments and settings, and netpoll
 * calls made outside the run stop with a message. Run by
 * tests/sim/user_crash.sh: user_program MODE.
 */
#include <errno.h>
#include <netpoll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void spins_on_yield(void *arg) {
  (void)arg;
  for (;;) np_yield();
}

static void exits(void *arg) {
  (void)arg;
  exit(5);
}

static void talks(void *arg) {
  (void)arg;
  np_fd *pair[2];
  char c = 0;
  if (np_socketpair(np_current(), pair) != 0 || np_write(pair[0], "!", 1, NULL) != 0 ||
      np_read(pair[1], &c, 1) != 1)
    abort();
  np_free(pair[0]);
  np_free(pair[1]);
  printf("talked %c\n", c);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "create") == 0) { /* outside a run: stops with a message */
    np_poller *p;
    int err = np_poller_create(&p, NULL);
    printf("np_poller_create returned %d\n", err);
    return 0;
  }
  if (strcmp(mode, "before") == 0) { /* harmless calls before the run */
    np_yield();
    if (np_now() != 0 || np_in_task() || np_current() != NULL) return 1;
    return np_run(NULL, talks, NULL) == 0 ? 0 : 1;
  }
  if (strcmp(mode, "yield") == 0) return np_run(NULL, spins_on_yield, NULL);
  if (strcmp(mode, "exit") == 0) return np_run(NULL, exits, NULL);
  if (strcmp(mode, "talk") == 0) return np_run(NULL, talks, NULL);
  fprintf(stderr, "usage: %s create|before|yield|exit|talk\n", argv[0]);
  return 2;
}
