/* test_drained.c - the drained hint on the real kernel. On sockets netpoll
 * makes for TCP (np_listen, np_dial, and connections accepted from such a
 * listener), after a read that returned less than it asked for the next
 * np_read waits for readiness before its first syscall instead of reading
 * EAGAIN. Checked here: the saved syscall (by counting read, readv, and
 * fstat: the identity check runs only once the program has the number),
 * and every case where waiting first would be wrong -- data left behind at
 * the urgent mark, data and a FIN that came together, a read that filled
 * its buffer, EOF read twice, readiness consumed by np_wait_read in
 * between, a deadline, a close, a descriptor closed behind the library, a
 * number np_sysfd handed out, a socket the user opened. Each blocking read runs in an actor (a thread, or a
 * task with NP_TEST_WAITER=task) and has a deadline, so a lost wake-up fails fast. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "syscalls.h"

/* Syscalls on the descriptor watched (the poller's own reads of its
 * eventfd are not counted). */
static _Atomic int watched = -1;
static _Atomic long readvs, reads, fstats;
static ssize_t (*real_readv)(int, const struct iovec *, int);
static ssize_t (*real_read)(int, void *, size_t);
static int (*real_fstat)(int, struct stat *);

static ssize_t counting_readv(int fd, const struct iovec *iov, int iovcnt) {
  if (fd == watched) readvs++;
  return real_readv(fd, iov, iovcnt);
}

static ssize_t counting_read(int fd, void *buf, size_t len) {
  if (fd == watched) reads++;
  return real_read(fd, buf, len);
}

static int counting_fstat(int fd, struct stat *st) {
  if (fd == watched) fstats++;
  return real_fstat(fd, st);
}

/* The number without np_sysfd, which would mark the handle as one whose
 * number the program has (then waits check it before parking). */
static int raw_fd(const np_fd *f) { return f->sysfd; }

typedef struct conn {
  np_poller *p;
  np_fd *ln, *client, *server; /* server: accepted from ln */
} conn;

/* The table is written before the poller exists (syscalls.h). */
static int setup(void **state) {
  real_readv = np__sys.readv;
  real_read = np__sys.read;
  real_fstat = np__sys.fstat;
  np__sys.readv = counting_readv;
  np__sys.read = counting_read;
  np__sys.fstat = counting_fstat;
  conn *c = calloc(1, sizeof(*c));
  assert_non_null(c);
  c->p = th_poller();
  char addr[NP_ADDRSTRLEN];
  assert_int_equal(np_listen(c->p, "tcp", "127.0.0.1:0", &c->ln), 0);
  assert_int_equal(np_local_addr(c->ln, addr, sizeof(addr)), 0);
  assert_int_equal(np_dial(c->p, "tcp", addr, 0, &c->client), 0);
  assert_int_equal(np_accept(c->ln, &c->server, NULL, NULL), 0);
  watched = raw_fd(c->server);
  readvs = reads = fstats = 0;
  *state = c;
  return 0;
}

static int teardown(void **state) {
  conn *c = *state;
  watched = -1;
  th_poller_destroy(c->p); /* frees the handles */
  free(c);
  np__sys.readv = real_readv;
  np__sys.read = real_read;
  np__sys.fstat = real_fstat;
  return 0;
}

/* Raw send on the client's socket (flags: MSG_OOB), all of it or fail. */
static void send_raw(conn *c, const char *data, int flags) {
  size_t len = strlen(data);
  assert_int_equal(send(raw_fd(c->client), data, len, flags), (ssize_t)len);
}

/* Waits (bounded) until the server's socket has at least n bytes queued. */
static void wait_queued(conn *c, int n) {
  for (int i = 0; i < 500; i++) {
    int queued = 0;
    struct pollfd pfd = {.fd = raw_fd(c->server), .events = POLLIN};
    (void)poll(&pfd, 1, 10);
    assert_int_equal(ioctl(raw_fd(c->server), FIONREAD, &queued), 0);
    if (queued >= n) return;
  }
  fail_msg("%d bytes never arrived", n);
}

typedef struct read_job {
  np_fd *f;
  size_t len;
  int64_t timeout_ms;
  ssize_t result;
  char buf[64];
} read_job;

static void *read_actor(void *arg) {
  read_job *j = arg;
  (void)np_set_read_deadline(j->f, np_deadline_after(j->timeout_ms * MS));
  j->result = np_read(j->f, j->buf, j->len);
  return NULL;
}

/* One np_read in an actor; returns its result, the bytes in j. */
static ssize_t read_in_actor(read_job *j, np_fd *f, size_t len, int64_t timeout_ms) {
  *j = (read_job){.f = f, .len = len, .timeout_ms = timeout_ms};
  th_join(th_start(read_actor, j));
  return j->result;
}

/* A drained read, then a read that blocks until the peer writes: one
 * read each, no EAGAIN read in between, and no identity check (fstat)
 * either: the program never had this socket's number. */
static void test_skips_eagain_read(void **state) {
  conn *c = *state;
  read_job j;
  send_raw(c, "hello", 0);
  wait_queued(c, 5);
  th_sleep_ms(20); /* the edge is in before the first read: none pending after it */
  long before = reads;
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 5);
  assert_int_equal(reads - before, 1);
  assert_memory_equal(j.buf, "hello", 5);
  /* The next read waits first; the data comes while it is parked. */
  j = (read_job){.f = c->server, .len = sizeof(j.buf), .timeout_ms = 5000};
  pthread_t t = th_start(read_actor, &j);
  th_wait_parked(c->p, 1);
  assert_int_equal(reads - before, 1); /* parked without a syscall */
  send_raw(c, "world", 0);
  th_join(t);
  assert_int_equal(j.result, 5);
  assert_memory_equal(j.buf, "world", 5);
  assert_int_equal(reads - before, 2);
  assert_int_equal(fstats, 0);
}

/* Once np_sysfd has handed the number out, a wait that parks checks first
 * that it still names the socket: one fstat, and the read goes on. From
 * then on the hint is off (the program may have put an upper layer protocol
 * on the socket): a read that finds nothing costs its syscall. If the
 * data's edge reached the poller only after the first read (TSan's
 * timing), that readiness is still pending: the wait returns at once
 * without the check and the read says EAGAIN (a closed number would have
 * said EBADF there) before parking. One of the two syscalls, exactly. */
static void test_exposed_checks(void **state) {
  conn *c = *state;
  read_job j;
  send_raw(c, "a", 0);
  wait_queued(c, 1);
  th_sleep_ms(20); /* usually: the edge is in before the first read */
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 1);
  assert_int_equal(np_sysfd(c->server), watched);
  long before = reads;
  j = (read_job){.f = c->server, .len = sizeof(j.buf), .timeout_ms = 5000};
  pthread_t t = th_start(read_actor, &j);
  th_wait_parked(c->p, 1);
  assert_int_equal(fstats + (reads - before), 1);
  send_raw(c, "b", 0);
  th_join(t);
  assert_int_equal(j.result, 1);
  assert_memory_equal(j.buf, "b", 1);
  before = reads;
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 30), NP_ETIMEOUT);
  assert_int_equal(reads - before, 1); /* the EAGAIN read: no hint */
}

/* Data that arrived between two reads: the second finds it at once. */
static void test_data_between_reads(void **state) {
  conn *c = *state;
  read_job j;
  send_raw(c, "a", 0);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 1);
  send_raw(c, "bc", 0);
  wait_queued(c, 2);
  th_sleep_ms(20); /* let the poller deliver the edge before the next read */
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 2);
  assert_memory_equal(j.buf, "bc", 2);
}

/* TCP stops a read at the urgent mark with data behind it and no new edge
 * to come; the EPOLLPRI that came with the urgent byte turned the hint off
 * before the short read, so the next read reads. */
static void test_urgent_mark(void **state) {
  conn *c = *state;
  read_job j;
  send_raw(c, "ab", 0);
  send_raw(c, "U", MSG_OOB);
  send_raw(c, "cd", 0);
  wait_queued(c, 2); /* FIONREAD counts up to the mark */
  th_sleep_ms(20);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 2);
  assert_memory_equal(j.buf, "ab", 2);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 2);
  assert_memory_equal(j.buf, "cd", 2);
}

/* Data and a FIN that came together: the read stops before the FIN (short,
 * with the end of the stream still to read and no edge to come); the
 * EPOLLRDHUP that reported them turned the hint off, so the next read
 * returns 0 at once. */
static void test_data_then_fin(void **state) {
  conn *c = *state;
  read_job j;
  send_raw(c, "last", 0);
  assert_int_equal(np_close_write(c->client), 0);
  wait_queued(c, 4);
  th_sleep_ms(20); /* the event (IN|RDHUP) is in before the read */
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 4);
  assert_memory_equal(j.buf, "last", 4);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 0);
}

/* A read that filled its buffer says nothing about what is left: the
 * next read reads (here: the rest, which no new edge announces). */
static void test_full_read_reads_again(void **state) {
  conn *c = *state;
  read_job j;
  send_raw(c, "abcdef", 0);
  wait_queued(c, 6);
  th_sleep_ms(20);
  assert_int_equal(read_in_actor(&j, c->server, 3, 2000), 3);
  assert_memory_equal(j.buf, "abc", 3);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 3);
  assert_memory_equal(j.buf, "def", 3);
}

/* np_readv: short against the iovec's total, the same hint: the read after
 * it parks without a syscall and takes what comes. */
static void *readv_actor(void *arg) {
  read_job *j = arg;
  struct iovec iov[2] = {{j->buf, 4}, {j->buf + 4, sizeof(j->buf) - 4}};
  (void)np_set_read_deadline(j->f, np_deadline_after(j->timeout_ms * MS));
  j->result = np_readv(j->f, iov, 2);
  return NULL;
}

static void test_readv_drained(void **state) {
  conn *c = *state;
  read_job j = {.f = c->server, .timeout_ms = 2000};
  send_raw(c, "abcdefg", 0);
  wait_queued(c, 7);
  th_sleep_ms(20);
  th_join(th_start(readv_actor, &j));
  assert_int_equal(j.result, 7);
  assert_memory_equal(j.buf, "abcdefg", 7);
  j = (read_job){.f = c->server, .timeout_ms = 5000};
  pthread_t t = th_start(readv_actor, &j);
  th_wait_parked(c->p, 1);
  assert_int_equal(readvs, 1); /* parked without a syscall */
  send_raw(c, "hi", 0);
  th_join(t);
  assert_int_equal(j.result, 2);
  assert_memory_equal(j.buf, "hi", 2);
  assert_int_equal(readvs, 2);
}

/* EOF is returned again at once, also when the FIN comes after a drained
 * read. */
static void test_eof_twice(void **state) {
  conn *c = *state;
  read_job j;
  send_raw(c, "x", 0);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 1);
  assert_int_equal(np_close_write(c->client), 0);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 0);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 0);
}

/* A poller with no poller thread, polled by a pump thread while `run`. */
typedef struct pump {
  np_poller *p;
  atomic_bool run;
  pthread_t t;
} pump;

static void *pump_main(void *arg) {
  pump *m = arg;
  while (atomic_load(&m->run)) (void)np__poll_once(m->p, true);
  return NULL;
}

static void pump_start(pump *m) {
  atomic_store(&m->run, true);
  assert_int_equal(pthread_create(&m->t, NULL, pump_main, m), 0);
}

static void pump_stop(pump *m) {
  atomic_store(&m->run, false);
  np__netpoll_break(m->p);
  assert_int_equal(pthread_join(m->t, NULL), 0);
}

typedef struct eof_job {
  read_job j;
  atomic_bool done;
} eof_job;

static void *eof_reader(void *arg) {
  eof_job *e = arg;
  read_actor(&e->j);
  atomic_store(&e->done, true);
  return NULL;
}

/* EOF read before the poller has fetched the FIN's event (EPOLLRDHUP,
 * which turns the hint off): the read that returned 0 must not count as
 * drained, or the next np_read waits for that event instead of returning 0
 * at once. Here nobody polls while the reads run, so such a wait would not
 * end (the simulator's poller always fetches the event and ends it: m39 is
 * equivalent there, this test is its catch). Plain threads, not tasks: a
 * task's scheduler would poll. */
static void test_eof_before_its_event(void **state) {
  (void)state;
  pump m = {.p = th_poller_manual()};
  pump_start(&m);
  char addr[NP_ADDRSTRLEN];
  np_fd *ln, *client, *server;
  assert_int_equal(np_listen(m.p, "tcp", "127.0.0.1:0", &ln), 0);
  assert_int_equal(np_local_addr(ln, addr, sizeof(addr)), 0);
  assert_int_equal(np_dial(m.p, "tcp", addr, 0, &client), 0);
  assert_int_equal(np_accept(ln, &server, NULL, NULL), 0);
  pump_stop(&m);
  assert_int_equal(np_close_write(client), 0);
  struct pollfd pfd = {.fd = raw_fd(server), .events = POLLRDHUP};
  assert_int_equal(poll(&pfd, 1, 5000), 1); /* the FIN is there, its event not fetched */
  watched = raw_fd(server);
  reads = readvs = 0;
  for (int i = 0; i < 2; i++) {
    eof_job e = {.j = {.f = server, .len = sizeof(e.j.buf), .timeout_ms = 5000}};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, eof_reader, &e), 0);
    int64_t end = np_now() + 2000 * MS;
    while (!atomic_load(&e.done) && np_now() < end) usleep(1000);
    bool done = atomic_load(&e.done);
    if (!done) pump_start(&m); /* let the wait end, then fail */
    assert_int_equal(pthread_join(t, NULL), 0);
    if (!done) pump_stop(&m);
    if (!done) fail_msg("np_read %d after EOF waited for readiness instead of reading", i + 1);
    assert_int_equal(e.j.result, 0);
  }
  assert_int_equal(reads, 2); /* each np_read read, and found EOF */
  watched = -1;
  np_free(server);
  np_free(client);
  np_free(ln);
  np_poller_destroy(m.p);
}

/* np_wait_read consumes the readiness a drained read would wait for: the
 * next np_read must read, not wait for more data (found by the simulator:
 * I8 in the fuzz-lifecycle corpus). */
static void test_wait_read_in_between(void **state) {
  conn *c = *state;
  read_job j;
  send_raw(c, "first", 0);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 5);
  send_raw(c, "second", 0);
  assert_int_equal(np_wait_read(c->server), 0);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 6);
  assert_memory_equal(j.buf, "second", 6);
}

/* A deadline ends the drained wait as it ends a wait after EAGAIN; data
 * sent afterwards is read. */
static void test_deadline_after_drained(void **state) {
  conn *c = *state;
  read_job j;
  send_raw(c, "1", 0);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 1);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 30), NP_ETIMEOUT);
  send_raw(c, "2", 0);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 1);
  assert_memory_equal(j.buf, "2", 1);
}

/* A read parked in the drained wait wakes with NP_ECLOSING on close. */
static void test_close_wakes_drained_wait(void **state) {
  conn *c = *state;
  read_job j;
  send_raw(c, "z", 0);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 2000), 1);
  j = (read_job){.f = c->server, .len = sizeof(j.buf), .timeout_ms = 5000};
  pthread_t t = th_start(read_actor, &j);
  th_wait_parked(c->p, 1);
  assert_int_equal(np_close(c->server), 0);
  th_join(t);
  assert_int_equal(j.result, NP_ECLOSING);
}

/* The drained wait makes no syscall that would notice a descriptor closed
 * behind the library: for a number the program has (np_sysfd) it checks, as
 * np_wait_read does, and says -EBADF instead of waiting for ever (epoll
 * dropped the registration). */
static void test_closed_behind(void **state) {
  conn *c = *state;
  read_job j;
  send_raw(c, "k", 0);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 5000), 1);
  assert_int_equal(close(np_sysfd(c->server)), 0);
  assert_int_equal(read_in_actor(&j, c->server, sizeof(j.buf), 5000), -EBADF);
}

/* A TCP socket the user opened gets no hint (the library cannot know what
 * the program did to it): a read that finds nothing costs its syscall. */
static void test_np_open_is_plain(void **state) {
  conn *c = *state;
  int fd = dup(raw_fd(c->client)); /* the client's socket, a handle of ours */
  assert_true(fd >= 0);
  np_fd *mine;
  assert_int_equal(np_open(c->p, fd, &mine), 0);
  watched = fd;
  assert_int_equal(np_write(c->server, "pq", 2, NULL), 0);
  read_job j;
  assert_int_equal(read_in_actor(&j, mine, sizeof(j.buf), 2000), 2);
  assert_int_equal(read_in_actor(&j, mine, sizeof(j.buf), 30), NP_ETIMEOUT);
  assert_int_equal(reads, 2); /* the data, then the EAGAIN read */
  np_free(mine);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_skips_eagain_read, setup, teardown),
      cmocka_unit_test_setup_teardown(test_exposed_checks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_data_between_reads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_urgent_mark, setup, teardown),
      cmocka_unit_test_setup_teardown(test_data_then_fin, setup, teardown),
      cmocka_unit_test_setup_teardown(test_full_read_reads_again, setup, teardown),
      cmocka_unit_test_setup_teardown(test_readv_drained, setup, teardown),
      cmocka_unit_test_setup_teardown(test_eof_twice, setup, teardown),
      cmocka_unit_test_setup_teardown(test_eof_before_its_event, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wait_read_in_between, setup, teardown),
      cmocka_unit_test_setup_teardown(test_deadline_after_drained, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_wakes_drained_wait, setup, teardown),
      cmocka_unit_test_setup_teardown(test_closed_behind, setup, teardown),
      cmocka_unit_test_setup_teardown(test_np_open_is_plain, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
