/* main.c - uses only the installed netpoll.h: a poller, a pipe, a read that
 * times out on its deadline, a read that gets data, close, destroy. Exits 0
 * and prints "ok" when the library behaves. */
#define _POSIX_C_SOURCE 200809L /* pipe, write; the header needs no more */
#include <netpoll.h>
#include <stdio.h>
#include <unistd.h>

#define CHECK(cond)                                                               \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "consumer: check failed: %s (line %d)\n", #cond, __LINE__); \
      return 1;                                                                   \
    }                                                                             \
  } while (0)

int main(void) {
  np_poller *p = NULL;
  CHECK(np_poller_create(&p, NULL) == 0);
  int fds[2];
  CHECK(pipe(fds) == 0);
  np_fd *r = NULL;
  CHECK(np_open(p, fds[0], &r) == 0);

  /* Nothing to read: the deadline ends the wait. */
  char buf[8];
  int64_t start = np_now();
  CHECK(np_set_read_deadline(r, np_deadline_after(50 * 1000000LL)) == 0);
  ssize_t n = np_read(r, buf, sizeof(buf));
  CHECK(n == NP_ETIMEOUT);
  CHECK(np_now() - start >= 50 * 1000000LL);
  printf("read with a 50 ms deadline: %s\n", np_strerror((int)n));

  /* Cleared deadline, data ready: the read succeeds. */
  CHECK(np_set_read_deadline(r, 0) == 0);
  CHECK(write(fds[1], "hi", 2) == 2);
  CHECK(np_read(r, buf, sizeof(buf)) == 2);
  CHECK(buf[0] == 'h' && buf[1] == 'i');

  CHECK(np_close(r) == 0);
  CHECK(np_read(r, buf, sizeof(buf)) == NP_ECLOSING);
  np_free(r);
  close(fds[1]);
  np_poller_destroy(p);
  printf("ok\n");
  return 0;
}
