#include "helpers.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- waiter kinds --------------------------------------------------------------
 * NP_TEST_WAITER=task runs every actor of th_start as a task of the newest
 * th_poller() instead of a thread, so one test body checks both kinds. */
static np_poller *g_task_poller;

bool th_task_mode(void) {
  static int mode = -1;
  if (mode < 0) {
    const char *w = getenv("NP_TEST_WAITER");
    mode = w != NULL && strcmp(w, "task") == 0;
  }
  return mode == 1;
}

np_poller *th_poller(void) {
  np_poller *p = NULL;
  assert_int_equal(np_poller_create(&p, NULL), 0);
  assert_non_null(p);
  g_task_poller = p;
  return p;
}

void th_poller_destroy(np_poller *p) {
  if (g_task_poller == p) g_task_poller = NULL;
  np_poller_destroy(p);
}

np_poller *th_poller_manual(void) {
  np_poller *p = NULL;
  assert_int_equal(np__poller_new(&p, &np__backend_epoll, 0, false), 0);
  assert_non_null(p);
  return p;
}

void th_pipe(int fds[2]) { assert_int_equal(pipe2(fds, O_CLOEXEC), 0); }

void th_socketpair(int fds[2]) {
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
}

void th_open_pair(np_poller *p, const int fds[2], np_fd *out[2]) {
  assert_int_equal(np_open(p, fds[0], &out[0]), 0);
  assert_int_equal(np_open(p, fds[1], &out[1]), 0);
}

/* A task actor: th_join waits for it on a condition variable. Its handle
 * is the record's address with the low bit set (a pthread_t never has it:
 * glibc's is a pointer to the aligned thread descriptor). */
typedef struct task_actor {
  void *(*fn)(void *);
  void *arg;
  void *ret;
  bool done;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} task_actor;

static void task_actor_main(void *arg) {
  task_actor *a = arg;
  void *ret = a->fn(a->arg);
  pthread_mutex_lock(&a->mu);
  a->ret = ret;
  a->done = true;
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

pthread_t th_start(void *(*fn)(void *), void *arg) {
  if (th_task_mode() && g_task_poller != NULL) {
    task_actor *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    a->fn = fn;
    a->arg = arg;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    assert_int_equal(np_go(g_task_poller, task_actor_main, a), 0);
    return (pthread_t)((uintptr_t)a | 1);
  }
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
  assert_true(((uintptr_t)t & 1) == 0);
  return t;
}

void *th_join(pthread_t t) {
  void *ret = NULL;
  if (((uintptr_t)t & 1) != 0) {
    task_actor *a = (task_actor *)((uintptr_t)t & ~(uintptr_t)1);
    pthread_mutex_lock(&a->mu);
    while (!a->done) pthread_cond_wait(&a->cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
    ret = a->ret;
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
    return ret;
  }
  assert_int_equal(pthread_join(t, &ret), 0);
  return ret;
}

void th_sleep_ms(int64_t ms) {
  if (np_in_task()) { /* a task must not hold its scheduler thread */
    np_sleep(ms * 1000000);
    return;
  }
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

size_t th_fill(int fd) {
  static char junk[65536];
  size_t total = 0;
  for (;;) {
    ssize_t n = write(fd, junk, sizeof(junk));
    if (n > 0) {
      total += (size_t)n;
      continue;
    }
    assert_true(n < 0);
    assert_true(errno == EAGAIN);
    return total;
  }
}

void th_wait_parked(np_poller *p, uint64_t parked) {
  np_stats s;
  for (int i = 0; i < 5000; i++) {
    np_poller_stats(p, &s);
    if (s.waiters_parked == parked) return;
    th_sleep_ms(1);
  }
  np_poller_stats(p, &s);
  fail_msg("expected %llu parked waiters, have %llu", (unsigned long long)parked,
           (unsigned long long)s.waiters_parked);
}

void th_expect_panic(void (*fn)(void *), void *arg, const char *needle) {
  int err_pipe[2];
  assert_int_equal(pipe(err_pipe), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(err_pipe[1], 2);
    close(err_pipe[0]);
    signal(SIGABRT, SIG_DFL);
    fn(arg);
    _exit(0); /* no panic: the parent reports it */
  }
  close(err_pipe[1]);
  char out[4096];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(err_pipe[0], out + len, sizeof(out) - 1 - len);
    if (n <= 0) break;
    len += (size_t)n;
    if (len == sizeof(out) - 1) break;
  }
  out[len] = 0;
  close(err_pipe[0]);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
    fail_msg("child did not abort (status %d); stderr: %s", status, out);
  if (strstr(out, needle) == NULL) fail_msg("panic message lacks '%s': %s", needle, out);
}
