/*
 * helpers.h - shared by the cmocka tests: pollers, pipes, socketpairs,
 * threads, and death tests (a child process must abort with a message).
 * Every helper asserts its own setup succeeded (cmocka assert_*).
 */
#ifndef NP_TEST_HELPERS_H
#define NP_TEST_HELPERS_H

#include <setjmp.h> /* cmocka needs these first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdbool.h>

#include "netpoll.h"
#include "np_internal.h"

#define MS (INT64_C(1000000))

/* A poller with its scheduler threads (np_poller_create). With
 * NP_TEST_WAITER=task, th_start's actors become its tasks. */
np_poller *th_poller(void);
void th_poller_destroy(np_poller *p);
bool th_task_mode(void);
/* A poller without a thread on the real epoll backend: the test calls
 * np__poll_once / np__netpoll itself. */
np_poller *th_poller_manual(void);

/* pipe2 / socketpair(AF_UNIX, SOCK_STREAM): raw fds in fds[0], fds[1]. */
void th_pipe(int fds[2]);
void th_socketpair(int fds[2]);
/* Register both ends: out[0] reads end (pipe) / first socket. */
void th_open_pair(np_poller *p, const int fds[2], np_fd *out[2]);

/* Actors: threads, or tasks of the newest th_poller() when
 * NP_TEST_WAITER=task (the handle is then not a real pthread_t: only
 * th_join it). th_sleep_ms in a task sleeps the task. */
pthread_t th_start(void *(*fn)(void *), void *arg);
void *th_join(pthread_t t);
void th_sleep_ms(int64_t ms);

/* Fills fd (non-blocking) until EAGAIN; returns bytes written. */
size_t th_fill(int fd);

/* Waits (bounded, ~5 s) until the poller reports `parked` parked waiters;
 * fails the test otherwise. Use it to know a thread is really blocked. */
void th_wait_parked(np_poller *p, uint64_t parked);

/* Runs fn(arg) in a forked child with stderr captured; asserts the child
 * died with SIGABRT and that its stderr contains `needle`. */
void th_expect_panic(void (*fn)(void *), void *arg, const char *needle);

#endif
