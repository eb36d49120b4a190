/*
 * netpoll.h - a Go-style network poller for C on Linux.
 *
 * A poller is a group of scheduler threads, each with its own epoll
 * instance and deadline timers. A task (np_go) or a thread that calls
 * np_read / np_write / np_accept / np_connect on a registered descriptor
 * blocks until the operation can make progress, its deadline passes, or the
 * descriptor is closed, exactly as a goroutine blocks in Go's net package:
 * a task by switching to its scheduler, a thread on a futex. The descriptor
 * itself is always non-blocking; the blocking is done by the library (a
 * pollDesc with two binary semaphores, rg and wg, per descriptor,
 * edge-triggered epoll registered once).
 *
 * Error rule: every action returns 0 (or a byte count) on success and a
 * negative errno on failure. Three codes have a library meaning:
 *   NP_ECLOSING     the descriptor was closed (np_close) while or before the
 *                   operation ran, or the poller is shutting down;
 *   NP_ETIMEOUT     the operation's deadline passed (Go: os.ErrDeadlineExceeded);
 *   NP_ENOTPOLLABLE epoll reported an error condition (EPOLLERR alone) for a
 *                   reader, or the descriptor cannot be polled (regular file);
 *   NP_EPOLLER      the poller failed: its own epoll or eventfd descriptor was
 *                   closed behind the library (a stale handle's close(2) hit
 *                   its number). Every blocked thread wakes with it, every
 *                   later operation and np_open fail with it; np_close,
 *                   np_free and np_poller_destroy still work.
 * Everything else is the errno of the failing system call. np_strerror()
 * describes any of them.
 *
 * Threads: every function may be called from any thread, concurrently, on the
 * same np_fd. At most one thread at a time reads and one writes a given
 * descriptor; others queue on the fd mutex (as Go's readLock/writeLock).
 *
 * Lifetime: np_close, np_free and np_poller_destroy may be called while other
 * threads are blocked in, or queued for, calls on the handle (or handles):
 * those calls return NP_ECLOSING, and np_close / np_free / np_poller_destroy
 * return only after every call that had begun before them has stopped
 * touching the handle. np_free may also run while another thread's np_close
 * of the same handle is still waiting: it waits for that close to finish.
 * Undefined: a call on a handle that begins concurrently with or after
 * np_free of it (or np_poller_destroy of its poller), a second np_free, and
 * np_poller_destroy concurrently with np_free of one of its handles or with
 * any other call on the poller itself (np_open, np_poller_stats).
 */
#ifndef NETPOLL_H
#define NETPOLL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define NP_EXTERN __attribute__((visibility("default")))
#else
#define NP_EXTERN
#endif

#define NP_VERSION_MAJOR 0
#define NP_VERSION_MINOR 1
#define NP_VERSION_PATCH 0

/* Library error codes (negative errno values, see above). */
#define NP_ECLOSING (-ECANCELED)      /* descriptor closed / poller shut down */
#define NP_ETIMEOUT (-ETIME)          /* i/o deadline exceeded */
#define NP_ENOTPOLLABLE (-EPERM)      /* not pollable / epoll error condition */
#define NP_EPOLLER (-ENOTRECOVERABLE) /* the poller failed: its epoll or break descriptor is gone */

typedef struct np_poller np_poller; /* scheduler threads, each an epoll instance */
typedef struct np_fd np_fd;         /* one registered descriptor */

/* Describes any return value of this library (0, NP_E*, -errno). Never NULL. */
NP_EXTERN const char *np_strerror(int err);

/* The monotonic clock deadlines are measured on (CLOCK_MONOTONIC, ns). */
NP_EXTERN int64_t np_now(void);

/* now + delay_ns, clamped to INT64_MAX on overflow; delay_ns <= 0 gives a
 * deadline that has already passed (never 0, which means "no deadline"). */
NP_EXTERN int64_t np_deadline_after(int64_t delay_ns);

/* ---- poller ---------------------------------------------------------- */

/* Task stacks: usable bytes per task, below a guard page. */
#define NP_STACK_DEFAULT (64 * 1024) /* x4 under ASan/TSan builds of the library */
#define NP_STACK_MIN (16 * 1024)
#define NP_STACK_MAX ((size_t)1 << 30)

typedef struct np_options {
  int events_max;    /* epoll_wait batch size; 0 = default (128), max 128 */
  int procs;         /* scheduler threads; 0 = the CPUs the process may run on (max 256) */
  size_t stack_size; /* task stack bytes; 0 = NP_STACK_DEFAULT; NP_STACK_MIN..NP_STACK_MAX */
} np_options;

/* Creates a poller: `procs` scheduler threads, each with its own epoll
 * instance, eventfd break and timer heap. A scheduler runs tasks (np_go)
 * and, when none is runnable, waits in epoll_wait for readiness and
 * deadlines; plain threads blocked in np_* calls are woken by it (futex).
 * opts may be NULL. Returns 0 or -errno (-EINVAL for bad options). */
NP_EXTERN int np_poller_create(np_poller **out, const np_options *opts);

/* Shuts the poller down: refuses new np_open / np_go, ends every np_sleep
 * early (NP_ECLOSING), closes every descriptor still registered (waking
 * every thread or task blocked or queued on one with NP_ECLOSING, and
 * waiting until each has left its call), frees every handle not yet freed
 * (also one an np_accept racing with destroy returns), waits until every
 * task has returned, joins the schedulers and frees the poller. Threads may
 * be blocked or queued in calls on its handles, or in np_close; no call may
 * start during or after it. Tasks must return once their calls fail with
 * NP_ECLOSING (a task that loops forever keeps destroy waiting). Must not
 * be called from one of the poller's own tasks, nor from np_blocking's
 * function run for one (it aborts: it would wait for itself).
 * In a forked child, a poller the parent made is dead (its threads are in
 * the parent): its calls fail with NP_EPOLLER, np_close / np_free close
 * the child's descriptor only, and np_poller_destroy returns at once. */
NP_EXTERN void np_poller_destroy(np_poller *p);

typedef struct np_stats {
  uint64_t fds_open;       /* descriptors registered now */
  uint64_t waiters_parked; /* threads parked on a pollDesc now */
  uint64_t polls;          /* epoll_wait calls so far */
  uint64_t breaks;         /* break signals written (coalesced) */
  uint64_t timers_fired;   /* deadline timers that ran */
  uint64_t pd_allocated;   /* pollDescs ever allocated (cache size) */
  uint64_t tasks;          /* tasks started and not yet returned */
  uint64_t procs;          /* scheduler threads */
} np_stats;

NP_EXTERN void np_poller_stats(np_poller *p, np_stats *out);

/* ---- descriptors ------------------------------------------------------ */

/* Registers fd with the poller: sets O_NONBLOCK and adds it to epoll
 * (IN|OUT|RDHUP, edge-triggered) once. From now on the library owns fd:
 * do not close(2) it yourself. If you do (see the README, "closing the
 * descriptor behind the library"): np_wait_* and np_close notice when the
 * number is free or names another file (-EBADF; that file is neither
 * deregistered nor closed), np_read/np_write fail with -EBADF or operate on
 * whatever file now has the number, a thread already parked stays parked
 * until np_close. Errors: -EBADF (not a descriptor), -EEXIST (a handle of
 * this poller, on any of its schedulers, already owns the number and its
 * file),
 * NP_ENOTPOLLABLE (regular file, directory),
 * NP_EPOLLER (the poller failed), NP_ECLOSING (destroy began), -EINVAL. */
NP_EXTERN int np_open(np_poller *p, int fd, np_fd **out);

/* Closes the descriptor: wakes every thread blocked in a call on it, and
 * every thread queued behind them on the fd mutex, with NP_ECLOSING; waits
 * until each has stopped touching the handle; deregisters the descriptor,
 * close(2)s it and returns close's result (-EBADF, closing nothing, if the
 * number was closed behind the library and now names another file). A second
 * np_close returns NP_ECLOSING at once. The handle stays valid (every
 * operation returns NP_ECLOSING) until np_free. */
NP_EXTERN int np_close(np_fd *f);

/* Closes (if not yet closed) and frees the handle; returns once no thread is
 * inside a call on it, including a concurrent np_close still waiting. */
NP_EXTERN void np_free(np_fd *f);

/* The raw descriptor, or -1 after close. Use only for setsockopt and the like.
 * Handing the number out marks the handle: from then on a wait that would
 * park first checks (one fstat) that the number still names the socket, as
 * for np_open's descriptors, since the program could now close it behind
 * the library. */
NP_EXTERN int np_sysfd(const np_fd *f);

/* Reads up to len bytes. Returns the count (>0), 0 at end of file, or -errno.
 * len == 0 returns 0 at once (after checking the handle is open). Blocks while
 * nothing is available. */
NP_EXTERN ssize_t np_read(np_fd *f, void *buf, size_t len);
NP_EXTERN ssize_t np_readv(np_fd *f, const struct iovec *iov, int iovcnt);

/* Writes all len bytes, blocking as needed. Returns 0 or -errno; *written
 * (if not NULL) always receives the bytes actually written, also when a
 * deadline, close or error stops the write part way (Go's FD.Write returns
 * both). A write to a socket whose peer is gone returns -EPIPE (or
 * -ECONNRESET) and raises no SIGPIPE: sockets are written with send and
 * MSG_NOSIGNAL, so the process lives, as in Go. Anything else (a pipe, a
 * tty) is written with write(2), whose SIGPIPE kills the process by default
 * when the reader is gone: ignore it (signal(SIGPIPE, SIG_IGN)) if you
 * write pipes. */
NP_EXTERN int np_write(np_fd *f, const void *buf, size_t len, size_t *written);
NP_EXTERN int np_writev(np_fd *f, const struct iovec *iov, int iovcnt, size_t *written);

/* Accepts a connection: the new descriptor is non-blocking, close-on-exec
 * and registered with the same poller. ECONNABORTED and EINTR are retried.
 * addr/addrlen may be NULL. */
NP_EXTERN int np_accept(np_fd *f, np_fd **out, struct sockaddr *addr, socklen_t *addrlen);

/* Connects a socket registered with np_open, waiting for the handshake
 * (honours the write deadline). Returns 0 or -errno (e.g. -ECONNREFUSED). */
NP_EXTERN int np_connect(np_fd *f, const struct sockaddr *addr, socklen_t addrlen);

/* Waits until the descriptor is readable / writable (or deadline, close),
 * for callers that do their own syscalls (recvmsg, ...): call it after your
 * syscall returned EAGAIN. np_read / np_write consume the readiness seen
 * before they began, so a wait after one of them may park until the next
 * edge even though the descriptor is ready (Go's pollWait). Returns 0 or -errno;
 * -EBADF at once if the descriptor was closed behind the library (checked,
 * with one fstat, only when the wait would park, and only for a number the
 * program has: np_open's, or one np_sysfd returned). */
NP_EXTERN int np_wait_read(np_fd *f);
NP_EXTERN int np_wait_write(np_fd *f);

/* Deadlines: absolute np_now() nanoseconds; 0 = none; at or before now =
 * already expired (operations fail with NP_ETIMEOUT, even if data is ready,
 * and blocked ones wake). Setting a new deadline re-arms; setting 0 clears,
 * after which operations block again. */
NP_EXTERN int np_set_deadline(np_fd *f, int64_t deadline_ns);
NP_EXTERN int np_set_read_deadline(np_fd *f, int64_t deadline_ns);
NP_EXTERN int np_set_write_deadline(np_fd *f, int64_t deadline_ns);

/* ---- tasks ------------------------------------------------------------
 * A task is a function running on its own small stack (a coroutine) on one
 * of the poller's scheduler threads. Inside a task, every np_* call above
 * blocks the task, not the thread: np_read that would block parks the task
 * and the scheduler runs another one, with the same deadline, close and
 * error semantics as for threads. Tasks are not preempted: a task that
 * computes for long or makes a blocking system call of its own holds its
 * scheduler thread (use np_blocking). A task may resume on another
 * scheduler thread than the one it parked on (it runs on the thread that
 * woke it): do not keep thread-local state or errno across np_* calls.
 * Threads and tasks may use the same descriptors. */

typedef void (*np_task_fn)(void *arg);

/* Starts fn(arg) as a task of p. From a task, the new task runs on the
 * caller's scheduler before older work once the caller parks or yields;
 * from a thread, on the schedulers in turn. Returns 0, -ENOMEM (no stack),
 * NP_ECLOSING (p is being destroyed), -ENOTSUP (a poller without
 * schedulers), -EINVAL. */
NP_EXTERN int np_go(np_poller *p, np_task_fn fn, void *arg);

/* Lets the other runnable tasks of this scheduler run first. In a thread:
 * sched_yield(). */
NP_EXTERN void np_yield(void);

/* Sleeps ns nanoseconds (<= 0: yields). In a task it parks on the
 * scheduler's timer heap; in a thread it is nanosleep. Returns 0, or
 * NP_ECLOSING when the poller is being destroyed (the sleep ends early). */
NP_EXTERN int np_sleep(int64_t ns);

/* Runs fn(arg) on a helper thread while the calling task is parked, for
 * work that blocks or computes for long (regular files, getaddrinfo,
 * compression). Outside a task it calls fn(arg) directly. Returns 0, or
 * -errno if no helper thread could be started (fn did not run). */
NP_EXTERN int np_blocking(np_task_fn fn, void *arg);

/* Names the calling task in reports (stack overflow); the first 31 bytes
 * are copied. No effect outside a task. */
NP_EXTERN void np_task_name(const char *name);

/* True when called from a task. */
NP_EXTERN bool np_in_task(void);

/* The poller of the calling task, or NULL outside a task. */
NP_EXTERN np_poller *np_current(void);

/* Waits (in a thread) until p has no task left. deadline_ns as for I/O
 * (0 = none). Returns 0, NP_ETIMEOUT, -EDEADLK (called from a task of p,
 * or from np_blocking's function run for one: that task waits for it). */
NP_EXTERN int np_wait_tasks(np_poller *p, int64_t deadline_ns);

/* A program whose main work is tasks: creates a poller with opts (may be
 * NULL), runs fn(arg) as its first task, waits until every task has
 * returned and destroys the poller. Returns 0 or -errno from creation. */
NP_EXTERN int np_run(const np_options *opts, np_task_fn fn, void *arg);

/* ---- network -----------------------------------------------------------
 * Sockets without socket(2): the same calls, with the same meaning, in the
 * real library and in the simulated one (libnetpoll-sim, where they reach
 * the simulated network). Every descriptor they make is non-blocking,
 * close-on-exec and registered with the poller (from a task: with its
 * scheduler's poller, as np_open). TCP sockets they make, and connections
 * np_accept takes from such a listener, have TCP_NODELAY (no Nagle delay,
 * Go's default) and TCP_INQ on: np_read learns
 * from the kernel when a read left nothing queued and then waits for the
 * next data without first reading EAGAIN (one read per message, not two).
 * A recvmsg of your own on np_sysfd of such a socket may therefore see a
 * TCP_CM_INQ control message. Descriptors given to np_open are left as
 * they are and read with plain read(2).
 *
 * network: "tcp" (IPv4 or IPv6, by the address), "tcp4", "tcp6", "unix"
 * (SOCK_STREAM). address: "host:port" with a numeric host ("127.0.0.1:7000",
 * "[::1]:7000"), "localhost:port" (127.0.0.1; [::1] for "tcp6"), or
 * ":port" (every local address: 0.0.0.0 for "tcp" and "tcp4", [::] for
 * "tcp6"; unlike Go, "tcp" does not listen dual-stack); a path for "unix"
 * (up to 107 bytes, not removed when the listener closes; "@name": the
 * abstract namespace). Port 0 picks a free port: read it back with
 * np_local_addr. No name resolution is done (it would block: use
 * np_blocking and getaddrinfo). Errors: -EINVAL (bad network, address or
 * port, with nothing created), the socket, bind, listen or connect errno,
 * and those of np_open. */

#define NP_ADDRSTRLEN 112 /* room for any address np_local_addr writes, with its NUL */

/* A listening socket (SO_REUSEADDR, backlog SOMAXCONN) on address. */
NP_EXTERN int np_listen(np_poller *p, const char *network, const char *address, np_fd **out);

/* Connects to address, waiting at most until deadline_ns (absolute, as
 * np_set_deadline; 0 = no deadline): NP_ETIMEOUT then, -ECONNREFUSED when
 * nothing listens, -ETIMEDOUT when the kernel gives up the handshake
 * (Linux: 127 s of lost SYNs), -ECONNRESET when the connection is reset
 * before it is returned, -EAGAIN for a unix listener whose backlog is full
 * (a unix connect never waits). The returned connection has no deadline
 * set. */
NP_EXTERN int np_dial(np_poller *p, const char *network, const char *address, int64_t deadline_ns,
                      np_fd **out);

/* The local / peer address of a socket as text, in the address syntax
 * above ("127.0.0.1:43012", "[::1]:7000", a path; "" for an unnamed unix
 * socket). Returns 0, -ENOSPC (len too small; buf gets ""), -ENOTSOCK,
 * -ENOTCONN (np_remote_addr of an unconnected socket), NP_ECLOSING. */
NP_EXTERN int np_local_addr(np_fd *f, char *buf, size_t len);
NP_EXTERN int np_remote_addr(np_fd *f, char *buf, size_t len);

/* A pipe: fds[0] the read end, fds[1] the write end. */
NP_EXTERN int np_pipe(np_poller *p, np_fd *fds[2]);

/* A connected pair of AF_UNIX stream sockets. */
NP_EXTERN int np_socketpair(np_poller *p, np_fd *fds[2]);

/* Shuts down the writing side of a socket (Go's CloseWrite): the peer reads
 * end of file once it has read everything written before; this side can
 * still read. Returns 0 or -errno (-ENOTSOCK, -ENOTCONN, NP_ECLOSING). */
NP_EXTERN int np_close_write(np_fd *f);

/* ---- random numbers ----------------------------------------------------
 * For a program's own choices (jitter, picking a peer). In the simulated
 * library it is drawn from the run's seed, so a seed replays the program's
 * choices too; in the real library it is seeded once from the kernel
 * (getrandom), or from np_rand_seed. Thread-safe. */
NP_EXTERN uint64_t np_rand(void);
NP_EXTERN void np_rand_seed(uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif /* NETPOLL_H */
