/*
 * kernel.h - the simulated kernel: an fd table (lowest free number reused,
 * as Linux does, so ABA on fd numbers is reproducible), pipes and connected
 * stream socket pairs with bounded byte buffers, eventfd, and one epoll
 * instance with the kernel's semantics (interest list, ready list, edge- and
 * level-triggered items, ERR/HUP always reported, maxevents truncation,
 * items of a closed file removed). Faults are injected at rates drawn per
 * run. It is exposed to the core as a backend table (sim_backend).
 *
 * It must never block except in epoll wait (and then only as a sim task),
 * and never consult anything but the scheduler's PRNG and clock.
 */
#ifndef SIM_KERNEL_H
#define SIM_KERNEL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "np_internal.h"

#define KERN_FDS_MAX 1024
/* epoll instances (pollers) at once; the scenario world uses one. */
#define KERN_EPOLLS_MAX 4
/* epoll_wait timeouts longer than this (virtual) block indefinitely: timers
 * further out never fire in a simulation. */
#define KERN_WAIT_HORIZON_NS (INT64_C(3600) * 1000000000)
/* An epoll_wait timeout longer than this (two years: scenario deadlines are
 * at most a year ahead) means "no deadline in reach": no timeout. */
#define KERN_FOREVER_NS (INT64_C(2) * 31536000 * 1000000000)

typedef struct kern_faults {
  bool active;              /* world turns faults off for the liveness phase */
  uint32_t epoll_eintr;     /* per million epoll_wait calls */
  uint32_t rw_eintr;        /* per million read/write calls */
  uint32_t spurious_eagain; /* read/write say EAGAIN (and the item is re-queued) */
  uint32_t short_io;        /* read/write move fewer bytes than they could */
  uint32_t urgent;          /* a write to a TCP stream carries urgent data (its last byte) */
  uint32_t spurious_ready;  /* epoll_wait reports an item with no change */
  uint32_t err_only;        /* epoll_wait reports EPOLLERR alone for an item */
  uint32_t maxevents_cut;   /* epoll_wait returns fewer events than it has */
  uint32_t accept_abort;    /* accept4: ECONNABORTED (the queued connection is dropped) */
  uint32_t accept_emfile;   /* accept4: EMFILE (the connection stays queued) */
} kern_faults;

typedef struct kern_stats {
  uint64_t epoll_waits, events, faults;
} kern_stats;

/* Called for every event epoll_wait reports (the world's oracles). */
typedef void (*kern_event_fn)(void *ctx, int fd, uint64_t tag, uint32_t reg, uint32_t events);
/* A new epoll registration (serial reg) for fd with the tag the core gave. */
typedef void (*kern_reg_fn)(int fd, uint64_t tag, uint32_t reg);
/* The library closes fd (its last reference is gone, I12). */
typedef void (*kern_close_fn)(int fd);
void kern_set_reg_hooks(kern_reg_fn on_register, kern_close_fn on_close);

void kern_reset(void);
void kern_set_event_hook(kern_event_fn fn, void *ctx);
/* A fault the program may see the effect of (a lost SYN, a reset, an
 * aborted or refused accept), named for its trace. Outlives kern_reset. */
typedef void (*kern_note_fn)(int fd, const char *what);
void kern_set_note_hook(kern_note_fn fn);
kern_faults *kern_faults_get(void);
/* libnetpoll-sim: a write to a pipe with no reader fails the run when the
 * real process would die of its SIGPIPE (the disposition is SIG_DFL), so a
 * program that passes under the simulator does not die natively. Off after
 * kern_reset (the library's own worlds have no process to kill). */
void kern_set_pipe_sigpipe(bool on);
kern_stats *kern_stats_get(void);

/* A pipe is a ring of pages, as Linux's (fs/pipe.c): a write of at most
 * KERN_PIPE_BUF bytes is whole or EAGAIN (it fills the last page or takes
 * a free one), a longer one takes what fits, and the write end is writable
 * (EPOLLOUT) while a page is free, so a PIPE_BUF write would succeed. */
#define KERN_PIPE_PAGE 4096u
#define KERN_PIPE_BUF 4096u

/* Creation; return 0 or -errno (EMFILE when the table is full). A pipe's
 * capacity is rounded up as Linux sizes pipes: a power of two pages, at
 * least 2 (PIPE_MIN_DEF_BUFFERS: only F_SETPIPE_SZ, which netpoll never
 * calls, makes a one-page pipe, whose writes to a non-empty pipe block),
 * at most 256 (1 MiB, pipe-max-size). */
int kern_pipe(int fds[2], uint32_t capacity);
int kern_socketpair(int fds[2], uint32_t capacity);
/* The socket pair of fd reads as TCP does (the world's stand-ins for TCP
 * with the drained hint), or for a listener the connections it accepts
 * from now on: 0, or -EBADF. */
int kern_stand_in_tcp(int fd);
int kern_listen(void);  /* a listening socket's fd */
int kern_eventfd(void); /* a non-blocking eventfd, counter 0 (the event probe's) */
int kern_connect(int listen_fd,
                 uint32_t capacity);   /* the client end's fd; ECONNREFUSED, EAGAIN (backlog full) */
int kern_peer_of(int fd);              /* the other end of a connected socket, or -1 */
int kern_connect_state(int client_fd); /* 1 accepted, 0 queued, -1 reset/aborted */

/* Peer-side syscalls for actors (no faults injected, no schedule point). */
ssize_t kern_read(int fd, void *buf, size_t len);
ssize_t kern_write(int fd, const void *buf, size_t len);
int kern_close(int fd);
int kern_shutdown_write(int fd);
int kern_inject_reset(int fd); /* sk_err = ECONNRESET on a socket: ERR, read fails once */
/* Queue fd's epoll item: with err_only its next report is EPOLLERR alone
 * (an error condition), else a spurious readiness report. */
int kern_inject_event(int fd, bool err_only);

/* Introspection for invariant checks. */
bool kern_fd_open(int fd);
uint32_t kern_poll_mask(int fd); /* current readiness, as poll would say */
bool kern_item_queued(int fd);   /* registered and on the ready list */
/* The schedule step of the last library syscall on fd that finds readiness
 * for mode 'r' (read, readv, recvmsg, accept4) or 'w' (write, writev,
 * connect), by any task; 0 if none. */
uint64_t kern_last_io_step(int fd, int mode);
bool kern_item_registered(int fd);
/* Of the first epoll instance (the scenario world's one poller): */
uint64_t kern_break_count(void);                      /* eventfd counter of the break */
struct sim_task *kern_epoll_waiter(int64_t *wake_at); /* poller blocked in wait, or NULL */
extern const np__backend sim_backend;

/* ---- the simulated network (knet.c), for libnetpoll-sim ---------------------
 * Stream sockets on one simulated host, whose one interface is loopback:
 * listeners on its addresses' ports or on unix paths, a connect to any
 * other address ENETUNREACH at once (no route), one to it that takes a
 * SYN's latency (refused when nothing listens,
 * retried after 1, 2, 4, ... s when the SYN is dropped or the backlog is
 * full, ETIMEDOUT after 127 s as Linux), data that arrives after a delay,
 * and resets. Off (kern_net.on false) everything is instant. */
#define KERN_PATHS_MAX 32
typedef struct kern_net {
  bool on;
  int64_t latency_max;  /* a SYN or a chunk of data takes [0, latency_max] ns */
  uint32_t syn_drop;    /* per million SYNs lost (the connect retries) */
  uint32_t reset_write; /* per million writes after which the connection is reset */
} kern_net;
kern_net *kern_net_get(void);
/* A socket of family AF_INET, AF_INET6 or AF_UNIX, not connected. */
int kern_net_socket(int family);
/* bind + listen: 0, -EADDRINUSE, -EINVAL (bad address or not a new socket),
 * -EADDRNOTAVAIL (not an address of the host, see knet.c), -ENOENT or
 * -ENOTDIR (a unix path whose directory is missing). Port 0 picks one. */
int kern_net_listen(int fd, const struct sockaddr *sa, socklen_t len);
/* setsockopt(IPV6_V6ONLY) of a new AF_INET6 socket (before bind or
 * connect): 0, -EINVAL (bound or connecting), -ENOPROTOOPT (not AF_INET6).
 * Without it, a listener is IPv6-only unless its address is v4-mapped
 * (np_listen's "tcp6" sockets are V6ONLY, a "tcp" one on [::ffff:a.b.c.d]
 * is not: the one way Linux binds that address), a dialer is not. */
int kern_net_set_v6only(int fd, bool on);
/* unlink(2) of a unix socket's file that a simulated bind made: 0 (the
 * path is free again; a listener still on it cannot be reached by name),
 * -ENOENT when the simulation has no such file (libnetpoll-sim then
 * unlinks the real one). */
int kern_net_unlink(const char *path);
/* The socket's own or its peer's address (-ENOTCONN: none), -ENOTSOCK. */
int kern_net_addr(int fd, bool peer, struct sockaddr_storage *ss, socklen_t *len);
/* The network's own task: delivers data and SYNs when due; returns when
 * *stop is set and it is woken (kern_net_kick). */
void kern_net_main(const bool *stop);
void kern_net_kick(void);
#endif
