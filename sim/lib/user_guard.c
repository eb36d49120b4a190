/*
 * user_guard.c - the determinism guard of libnetpoll-sim: inside a
 * simulated run, starting a real thread, reading a real clock or sleeping
 * in real time would make a seed replay differently. These definitions
 * take the place of libc's for the user's binary (it links this static
 * library): inside a run they fail it, naming the call; outside a run they
 * do what libc does.
 */
#include <dlfcn.h>
#include <errno.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "kernel.h"
#include "sched.h"
#include "user_run.h"

static void refuse(const char *call, const char *instead) {
  if (ut_in_run()) sim_fail("determinism: %s in a simulated run (use %s)", call, instead);
}

void ut_guard_install(void) {}

/* <pthread.h> cannot be included here (the simulator's sched.h shadows
 * <sched.h>); pthread_t is an unsigned long on Linux. */
typedef int create_fn(unsigned long *t, const void *attr, void *(*fn)(void *), void *arg);
create_fn pthread_create;

int pthread_create(unsigned long *t, const void *attr, void *(*fn)(void *), void *arg) {
  refuse("pthread_create", "np_go: a task is a simulated thread");
  create_fn *real = (create_fn *)dlsym(RTLD_NEXT, "pthread_create");
  return real == NULL ? EAGAIN : real(t, attr, fn, arg);
}

/* Every task of a simulated run is a simulated thread of one OS thread: a
 * lock that would wait for another task would wait for ever (the holder
 * cannot run), so the run fails naming the call instead of hanging. It
 * would only wait if a task held the mutex across a call that switches
 * tasks, which natively blocks a scheduler thread (and deadlocks on one).
 * A condition variable always waits for another thread: refused. */
typedef int mutex_fn(void *m);
typedef int cond_wait_fn(void *c, void *m);
typedef int cond_timedwait_fn(void *c, void *m, const struct timespec *at);
mutex_fn pthread_mutex_lock;
cond_wait_fn pthread_cond_wait;
cond_timedwait_fn pthread_cond_timedwait;

int pthread_mutex_lock(void *m) {
  static mutex_fn *real_lock, *real_trylock;
  if (real_lock == NULL) real_lock = (mutex_fn *)dlsym(RTLD_NEXT, "pthread_mutex_lock");
  if (!ut_in_run()) return real_lock(m);
  if (real_trylock == NULL) real_trylock = (mutex_fn *)dlsym(RTLD_NEXT, "pthread_mutex_trylock");
  int err = real_trylock(m);
  if (err == EBUSY)
    sim_fail(
        "determinism: pthread_mutex_lock waits for a mutex another task holds: it was held across "
        "a call that switches tasks, which blocks a scheduler thread natively (release it first)");
  return err;
}

int pthread_cond_wait(void *c, void *m) {
  refuse("pthread_cond_wait", "np_read on a pipe, or np_sleep: a condition variable blocks the thread");
  cond_wait_fn *real = (cond_wait_fn *)dlsym(RTLD_NEXT, "pthread_cond_wait");
  return real(c, m);
}

int pthread_cond_timedwait(void *c, void *m, const struct timespec *at) {
  refuse("pthread_cond_timedwait", "np_read on a pipe, or np_sleep: a condition variable blocks the thread");
  cond_timedwait_fn *real = (cond_timedwait_fn *)dlsym(RTLD_NEXT, "pthread_cond_timedwait");
  return real(c, m, at);
}

int clock_gettime(clockid_t id, struct timespec *ts) {
  refuse("clock_gettime", "np_now: virtual time");
  return (int)syscall(SYS_clock_gettime, id, ts);
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
  refuse("gettimeofday", "np_now: virtual time");
  return (int)syscall(SYS_gettimeofday, tv, tz);
}

time_t time(time_t *out) {
  refuse("time", "np_now: virtual time");
  struct timespec ts;
  syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
  if (out != NULL) *out = ts.tv_sec;
  return ts.tv_sec;
}

int nanosleep(const struct timespec *req, struct timespec *rem) {
  refuse("nanosleep", "np_sleep: virtual time");
  return (int)syscall(SYS_nanosleep, req, rem);
}

int clock_nanosleep(clockid_t id, int flags, const struct timespec *req, struct timespec *rem) {
  refuse("clock_nanosleep", "np_sleep: virtual time");
  return syscall(SYS_clock_nanosleep, id, flags, req, rem) == 0 ? 0 : errno;
}

unsigned int sleep(unsigned int seconds) {
  refuse("sleep", "np_sleep: virtual time");
  struct timespec ts = {.tv_sec = seconds};
  syscall(SYS_nanosleep, &ts, NULL);
  return 0;
}

int usleep(useconds_t us) {
  refuse("usleep", "np_sleep: virtual time");
  struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
  return (int)syscall(SYS_nanosleep, &ts, NULL);
}

/* Entropy from the kernel differs from run to run: a seed would not replay
 * the program's choices (np_rand is drawn from the seed). */
ssize_t getrandom(void *buf, size_t len, unsigned int flags) {
  refuse("getrandom", "np_rand: drawn from the seed");
  return syscall(SYS_getrandom, buf, len, flags);
}

int getentropy(void *buf, size_t len) {
  refuse("getentropy", "np_rand: drawn from the seed");
  if (len > 256) {
    errno = EIO;
    return -1;
  }
  return syscall(SYS_getrandom, buf, len, 0) == (long)len ? 0 : -1;
}

/* A unix socket's file that a simulated bind made exists only in the
 * simulation: unlink removes it there (so a program that cleans up its
 * socket path before listening again behaves as natively). Any other path
 * is the real file system's, which the simulation does not model. */
int unlink(const char *path) {
  if (sim != NULL && kern_net_unlink(path) == 0) return 0;
  return (int)syscall(SYS_unlink, path);
}

int remove(const char *path) {
  if (sim != NULL && kern_net_unlink(path) == 0) return 0;
  int r = (int)syscall(SYS_unlink, path);
  return r == 0 || errno != EISDIR ? r : (int)syscall(SYS_rmdir, path);
}
