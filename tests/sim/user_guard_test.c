/*
 * user_guard_test.c - the determinism guard of libnetpoll-sim: each test
 * reaches past the simulation and must fail naming the call; "clean" must
 * pass. Run by ctest (sim_user_guard), one --test at a time.
 */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netpoll_test.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void *thread_main(void *arg) { return arg; }

NP_TEST(real_clock) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
}

NP_TEST(real_thread) {
  pthread_t t;
  if (pthread_create(&t, NULL, thread_main, NULL) == 0) pthread_join(t, NULL);
}

NP_TEST(real_sleep) { usleep(1000); }

NP_TEST(real_gettimeofday) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
}

NP_TEST(real_time) { (void)time(NULL); }

NP_TEST(real_nanosleep) {
  struct timespec ts = {0, 1000};
  nanosleep(&ts, NULL);
}

NP_TEST(real_sleep_seconds) { sleep(0); }

NP_TEST(real_random) {
  unsigned char b[8];
  (void)getrandom(b, sizeof(b), GRND_NONBLOCK);
}

NP_TEST(real_entropy) {
  unsigned char b[8];
  (void)getentropy(b, sizeof(b));
}

NP_TEST(real_fd) {
  np_fd *f;
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  (void)np_open(np_current(), fd, &f);
}

/* A mutex held across a call that switches tasks, wanted by another task:
 * the simulation's one thread would wait for ever (natively a scheduler
 * thread blocks). The run fails naming the call; it used to hang. */
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;

static void locker(void *arg) {
  (void)arg;
  pthread_mutex_lock(&held);
  pthread_mutex_unlock(&held);
}

NP_TEST(mutex_across_switch) {
  pthread_mutex_lock(&held);
  NP_CHECK_EQ(np_go(np_current(), locker, NULL), 0);
  NP_CHECK_EQ(np_sleep(1000000), 0); /* the locker runs and finds it held */
  pthread_mutex_unlock(&held);
}

/* A mutex taken and released between switches is fine. */
NP_TEST(mutex_uncontended) {
  static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  for (int i = 0; i < 3; i++) {
    NP_CHECK_EQ(pthread_mutex_lock(&m), 0);
    pthread_mutex_unlock(&m);
    np_yield();
  }
}

NP_TEST(cond_wait) {
  static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
  pthread_mutex_lock(&m);
  pthread_cond_wait(&c, &m);
  pthread_mutex_unlock(&m);
}

/* np_sysfd of a simulated descriptor names no real one: a program's own
 * setsockopt or fcntl on it fails with EBADF (it hit a real log file that
 * shared the number, once). */
NP_TEST(sysfd_reaches_no_real_file) {
  np_fd *pair[2];
  int real[8];
  for (int i = 0; i < 8; i++) NP_CHECK((real[i] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0);
  NP_CHECK_EQ(np_socketpair(np_current(), pair), 0);
  for (int e = 0; e < 2; e++) {
    int fd = np_sysfd(pair[e]);
    NP_CHECK(fd >= 0);
    NP_CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF);
  }
  NP_CHECK(np_sysfd(pair[0]) != np_sysfd(pair[1]));
  np_free(pair[0]);
  np_free(pair[1]);
  for (int i = 0; i < 8; i++) close(real[i]);
}

NP_TEST(plain_assert) {
  int x = 1;
  assert(x == 2);
}

NP_TEST(clean) {
  np_fd *pair[2];
  NP_CHECK_EQ(np_socketpair(np_current(), pair), 0);
  NP_CHECK_EQ(np_write(pair[0], "x", 1, NULL), 0);
  char c;
  NP_CHECK_EQ(np_read(pair[1], &c, 1), 1);
  NP_CHECK(np_sleep(1000000000) == 0 && np_now() >= 1000000000); /* virtual: instant */
  np_free(pair[0]);
  np_free(pair[1]);
}

NP_TEST_MAIN()

static void forever(void *arg) {
  (void)arg;
  while (np_sleep(1000000) == 0) {
  }
}

/* A poller left running when the test returns is destroyed as at exit:
 * its task's sleep ends with NP_ECLOSING and the run passes. */
NP_TEST(leftover_poller) {
  np_poller *q;
  NP_CHECK_EQ(np_poller_create(&q, NULL), 0);
  NP_CHECK_EQ(np_go(q, forever, NULL), 0);
}

static void reader(void *arg) {
  char c;
  (void)np_read(arg, &c, 1);
}

/* A task waiting for data that never comes: stuck, named with its call. */
NP_TEST(stuck_read) {
  np_fd *pair[2];
  NP_CHECK_EQ(np_socketpair(np_current(), pair), 0);
  NP_CHECK_EQ(np_go(np_current(), reader, pair[0]), 0);
}

static np_fd *many_done;

static void short_task(void *arg) {
  (void)arg;
  np_sleep(1000);
  NP_CHECK_EQ(np_write(many_done, "x", 1, NULL), 0);
}

/* More tasks over a run than the scheduler has slots: finished ones are
 * reused. */
NP_TEST(many_tasks) {
  np_fd *pair[2];
  NP_CHECK_EQ(np_socketpair(np_current(), pair), 0);
  many_done = pair[1];
  for (int i = 0; i < 1000; i++) {
    NP_CHECK_EQ(np_go(np_current(), short_task, NULL), 0);
    char c;
    NP_CHECK_EQ(np_read(pair[0], &c, 1), 1);
  }
  np_free(pair[0]);
  np_free(pair[1]);
}
