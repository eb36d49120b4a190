/*
 * kernel_impl.h - the simulated kernel's state, shared by kernel.c (files,
 * epoll, the backend table) and knet.c (the simulated network). Nothing
 * outside those two files may include it.
 */
#ifndef SIM_KERNEL_IMPL_H
#define SIM_KERNEL_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "kernel.h"
#include "sched.h"

/* K_SOCKNEW: a socket of the simulated network not (yet) connected:
 * fresh, connecting (its SYN travels) or failed (sk_err says why). */
enum kind { K_FREE, K_PIPE_R, K_PIPE_W, K_SOCK, K_EVENTFD, K_EPOLL, K_LISTEN, K_RESERVED, K_SOCKNEW };

/* An address of the simulated network: one host, whose IP addresses are
 * loopback's (127.0.0.0/8, ::1; knet.c's route and bindable); ports, IP
 * addresses and unix paths (interned in kern_net, path 1...) tell
 * listeners apart. */
typedef struct kaddr {
  uint16_t family; /* 0: none (an unnamed socket), AF_INET, AF_INET6, AF_UNIX */
  uint16_t port;
  uint32_t path; /* AF_UNIX: index + 1 in knet's path table */
  uint8_t ip[16];
} kaddr;

#define KBUF_CHUNKS 8

/* Backlogs: the random worlds' listeners (kern_listen) hold 16, so a full
 * one is common; the simulated network's (users' programs, np_listen asks
 * for SOMAXCONN) hold what Linux 5.4+ allows, 4096. */
#define BACKLOG_MAX 16
#define KNET_BACKLOG_MAX 4096

/* A connection in a listener's backlog: the accepted end's buffers, the
 * client's fd, and the addresses the accepted end will have (its peer, the
 * client's address, and its own, the address the client dialled, both in
 * the listener's family). */
struct kconn {
  struct kbuf *to_server, *to_client;
  int client_fd;
  kaddr client, server;
};

typedef struct kbuf { /* one direction of a stream */
  uint8_t *data;
  uint32_t cap, len, head;
  uint64_t total_read; /* bytes ever read: the stream offset of the next read */
  bool no_writer;      /* write side closed/shut: reader sees EOF after data */
  bool no_reader;      /* read side closed: writes fail with EPIPE */
  int users;           /* files referring to it */
  /* The simulated network delays delivery: the last `inflight` bytes were
   * written but have not arrived; chunks say when they do (FIFO). */
  uint32_t inflight;
  uint8_t chunk_head, chunk_len;
  struct kchunk {
    int64_t at;
    uint32_t n;
  } chunks[KBUF_CHUNKS];
  bool net; /* a connection of the simulated network (delays, resets) */
  /* TCP's reads (the network's TCP, or a socket pair standing in for it,
   * kern_stand_in_tcp): a read cut short by the backlog is followed by the
   * backlog's edge, and urgent data is possible. urg: an urgent byte at
   * stream offset urg_at, not yet read past (SO_OOBINLINE: it stays in the
   * stream); a read stops before it, and poll says EPOLLPRI once it has
   * arrived. */
  bool tcp, urg;
  uint64_t urg_at;
  /* A pipe's ring of pages (Linux's fs/pipe.c): `pages` slots of
   * KERN_PIPE_PAGE bytes; pg_used of them hold data, from pg_tail on;
   * page_len[i] bytes were written into slot i, and pg_off of the tail's
   * are read. A slot is free again once all its bytes are read. NULL for a
   * socket's buffer (a byte buffer). */
  uint16_t *page_len;
  uint16_t pages, pg_tail, pg_used, pg_off;
} kbuf;

struct kep;
typedef struct epitem {
  int fd;
  uint32_t reg;    /* registration serial: 1, 2, ... per run (the kernel's identity, not the tag) */
  uint32_t events; /* interest (EPOLLET included) */
  uint64_t tag;
  bool queued;        /* on the ready list */
  bool err_only_once; /* injected: next report is EPOLLERR alone */
  struct epitem *next_ready;
  struct kep *ep; /* the epoll instance it is registered with */
} epitem;

typedef struct kfile {
  enum kind kind;
  kbuf *rx, *tx;      /* pipe_r: rx; pipe_w: tx; sock: both */
  int peer;           /* fd of the other end, -1 if closed */
  uint64_t efd_count; /* eventfd */
  int sk_err;         /* pending socket error */
  bool accepted;      /* client end of a connection that was accepted (stays true) */
  bool reset;         /* the connection was reset: a TCP socket is in TCP_CLOSE (stays true) */
  bool fin_done;      /* TCP's SOCK_DONE: the FIN came before the reset, reads keep saying EOF */
  bool unlinked;      /* K_LISTEN on a path: its socket file was unlinked (unreachable by name) */
  epitem *item;       /* registration in an epoll instance, or NULL (one at most) */
  /* K_LISTEN: connections not yet accepted, FIFO; each is the server end of
   * a connected pair whose client end is already an fd of the peer. On the
   * heap, grown up to backlog_max (freed by close and reset). */
  struct kconn *backlog;
  int backlog_len, backlog_cap, backlog_max;
  kaddr local, remote; /* sockets and listeners of the simulated network */
  /* K_SOCKNEW connecting: where to, when its SYN arrives, tries so far. */
  kaddr target;
  int64_t syn_at;
  int syn_tries;
  bool connecting;
  bool tcp_listen; /* K_LISTEN: its connections read as TCP (kern_stand_in_tcp) */
  /* AF_INET6: IPV6_V6ONLY (kern_net_set_v6only); v6only_set false: never
   * set, and a listener takes it from its address at bind (knet.c). */
  bool v6only, v6only_set;
} kfile;

/* An epoll instance and its poller's break (one per poller). */
typedef struct kep {
  bool used;
  int epfd, breakfd;
  epitem *ready_head, *ready_tail;
  sim_task *waiter; /* poller blocked in epoll_wait */
  int64_t waiter_wake_at;
} kep;

typedef struct kern_state {
  int fd_end; /* one past the highest descriptor this run made: files beyond are K_FREE and zero */
  uint64_t last_io_step[KERN_FDS_MAX][2]; /* by fd and mode: the step of the last i/o syscall (I15) */
  kep eps[KERN_EPOLLS_MAX];
  kern_faults faults;
  kern_stats stats;
  kern_event_fn hook;
  kern_reg_fn reg_hook;
  kern_close_fn close_hook;
  uint32_t next_reg;
  void *hook_ctx;
  kern_net net;
  char paths[KERN_PATHS_MAX][108]; /* unix socket paths, interned */
  int path_count;
  bool path_bound[KERN_PATHS_MAX]; /* a path's socket file exists: bind made it, unlink removes it */
  uint16_t next_port;              /* ephemeral ports, from 32768 */
  sim_task *net_waiter;
  bool pipe_sigpipe;         /* kern_set_pipe_sigpipe */
  kfile files[KERN_FDS_MAX]; /* last: kern_reset zeroes only files[0, fd_end) */
} kern_state;

extern kern_state kern_state_g;
#define K kern_state_g

/* kernel.c's helpers, for knet.c. */
kfile *kern__file(int fd);
int kern__fd_alloc(void);
kbuf *kern__buf_new(uint32_t cap);
void kern__buf_release(kbuf *b);
void kern__notify(int fd);
/* Queue a connection on listener l: false when its backlog is full. */
bool kern__backlog_push(kfile *l, struct kconn cn);
bool kern__fault(uint32_t rate);
/* Tells the note hook (kern_set_note_hook) about an injected fault. */
void kern__note(int fd, const char *what);
/* A TCP socket in TCP_CLOSE: reset, or both FINs exchanged. */
bool kern__tcp_closed(const kfile *f);
void kern__syscall_point(const char *name, int fd);
/* knet.c's side: connect on a K_SOCKNEW, and a write on a network stream. */
int kern__net_connect(kfile *f, int fd, const struct sockaddr *sa, socklen_t len);
void kern__net_wrote(int fd, kbuf *b, uint32_t n);
/* The sockaddr of a (an unnamed unix socket when a has no family). */
socklen_t kern__net_sockaddr(const kaddr *a, struct sockaddr_storage *ss);

#endif
