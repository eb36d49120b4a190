/*
 * np_internal.h - what the core files share: assertions, the backend seam,
 * the pollDesc, the poller, the fd mutex and the fd handle.
 *
 * Names: np_ is public, np__ is internal across files, plain names are
 * static inside one file. Nothing here may be used by applications.
 */
#ifndef NP_INTERNAL_H
#define NP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "netpoll.h"
#include "port.h"

/* ---- assertions --------------------------------------------------------
 * NP_ASSERT stays on in release builds: a broken invariant stops the program
 * with a message naming it rather than corrupting state. np__panic is the
 * single exit; tests that provoke it check the message. */
_Noreturn void np__panic(const char *file, int line, const char *msg);
#define NP_PANIC(msg) np__panic(__FILE__, __LINE__, (msg))
#define NP_ASSERT(cond)                                \
  do {                                                 \
    if (__builtin_expect(!(cond), 0)) NP_PANIC(#cond); \
  } while (0)

/* ---- backend seam (run time) -------------------------------------------
 * The contract every backend provides, one sentence a function. All return
 * 0 / a count on success and -errno on failure; none may block except wait.
 *
 *  create(&state)      make the poll instance and its break (wake-up) object.
 *  destroy(state)      release them; no call follows.
 *  open(state,fd,tag)  arm edge-triggered IN|OUT|RDHUP|PRI notifications for fd;
 *                      tag (never 0) is returned verbatim with its events.
 *  close(state,fd)     disarm fd; events already fetched may still surface.
 *  wait(state,ev,max,delay_ns)
 *                      fetch up to max events; delay_ns < 0 blocks
 *                      indefinitely, 0 polls, > 0 blocks at most that long
 *                      (rounded up, never down to 0); -EINTR may be returned.
 *                      A pending break is reported as an event with tag 0
 *                      (level-triggered: it repeats until drained).
 *  wake(state)         make the break pending (wait returns); called at most
 *                      once per drain by the core, which coalesces.
 *  drain(state)        consume a pending break.
 *  read/readv/write/writev/accept4/connect/getsockopt/getpeername/
 *  setnonblock/close_fd   the descriptor syscalls the fd layer uses, with
 *                      the kernel's semantics (EAGAIN, EINTR, short counts).
 *  shutdown_write(state,fd)
 *                      shutdown(fd, SHUT_WR) (np_close_write); optional:
 *                      NULL makes np_close_write return -ENOTSUP.
 */
typedef struct np__event {
  uint32_t events; /* EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP | EPOLLPRI */
  uint64_t tag;    /* what open() was given; 0 = the break */
} np__event;

typedef struct np__backend {
  const char *name;
  int (*create)(void **state);
  void (*destroy)(void *state);
  int (*open)(void *state, int fd, uint64_t tag);
  int (*close)(void *state, int fd);
  int (*wait)(void *state, np__event *events, int events_max, int64_t delay_ns);
  int (*wake)(void *state);
  int (*drain)(void *state);
  ssize_t (*read)(void *state, int fd, void *buf, size_t len);
  ssize_t (*readv)(void *state, int fd, const struct iovec *iov, int iovcnt);
  ssize_t (*write)(void *state, int fd, const void *buf, size_t len);
  ssize_t (*writev)(void *state, int fd, const struct iovec *iov, int iovcnt);
  /* Optional (NULL: write/writev only): write/writev to a socket without
   * raising SIGPIPE (Linux: send/sendmsg with MSG_NOSIGNAL); -ENOTSOCK, and
   * nothing written, when fd is not a socket. */
  ssize_t (*send)(void *state, int fd, const void *buf, size_t len);
  ssize_t (*sendv)(void *state, int fd, const struct iovec *iov, int iovcnt);
  int (*accept4)(void *state, int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);
  int (*connect)(void *state, int fd, const struct sockaddr *addr, socklen_t addrlen);
  int (*getsockopt_error)(void *state, int fd, int *so_error);
  int (*getpeername)(void *state, int fd);
  int (*setnonblock)(void *state, int fd);
  int (*close_fd)(void *state, int fd);
  int (*shutdown_write)(void *state, int fd);
  /* Optional (NULL: not checked): which file fd names now, as an opaque id
   * (st_dev, st_ino); 0 or -errno (EBADF: no file has that number). */
  int (*identity)(void *state, int fd, uint64_t *id);
} np__backend;

extern const np__backend np__backend_epoll;

/* ---- pollDesc ------------------------------------------------------------
 * rg and wg are binary semaphores, one per mode, holding:
 *   NIL (0)    nothing pending, nobody waiting;
 *   READY (1)  an i/o readiness notification is pending; a waiter consumes it
 *              by CAS READY -> NIL;
 *   WAIT (2)   a waiter is preparing to park; it commits by CAS WAIT -> waiter
 *              (in the park's commit step), or a concurrent readiness turns it
 *              into READY, or a concurrent timeout/close turns it into NIL;
 *   waiter     a waiter is parked; readiness stores READY, timeout/close store
 *              NIL, and whoever swapped the waiter out unparks it (exactly
 *              once: I2).
 * Transitions and who makes them:
 *   waiter:   NIL->WAIT, READY->NIL (consume), WAIT->waiter (commit),
 *             any->NIL after waking (swap; finding a waiter there = corrupted);
 *   poller:   NIL|WAIT|waiter -> READY (readiness);
 *   deadline/close: WAIT|waiter -> NIL (never READY->NIL: a pending
 *             notification survives, the error is found by checkerr).
 * A second waiter in one mode is "double wait"; both are invariant failures.
 */
#define NP__PD_NIL ((uintptr_t)0)
#define NP__PD_READY ((uintptr_t)1)
#define NP__PD_WAIT ((uintptr_t)2)

/* info word: bits for checkerr, readable without the lock. closing and the
 * deadline bits are written only under pd->lock by publish_info, which must
 * run before any unblock that they justify. The event-error bit is written
 * only by the poller (atomically, checking fdseq). The fd sequence is
 * mirrored in the top bits so a stale event cannot set the error bit of the
 * pd's next owner. */
#define NP__INFO_CLOSING (1u << 0)
#define NP__INFO_EVENT_ERR (1u << 1)
#define NP__INFO_EXPIRED_READ (1u << 2)
#define NP__INFO_EXPIRED_WRITE (1u << 3)
#define NP__INFO_FAILED (1u << 4)  /* the poller failed (np__poller_fail) */
#define NP__INFO_NO_HINT (1u << 5) /* an event had HUP, ERR, RDHUP or PRI: no drained hint (fd.c) */
#define NP__INFO_SEQ_SHIFT 8
#define NP__FDSEQ_BITS 22
#define NP__FDSEQ_MASK ((1u << NP__FDSEQ_BITS) - 1)

/* Results of checkerr / wait (Go's pollErr*). */
enum {
  NP__POLL_OK = 0,
  NP__POLL_CLOSING = 1,
  NP__POLL_TIMEOUT = 2,
  NP__POLL_NOT_POLLABLE = 3,
  NP__POLL_FAILED = 4 /* the poller failed: NP_EPOLLER */
};

/* Deadline timer kinds. */
enum { NP__TIMER_READ = 1, NP__TIMER_WRITE = 2, NP__TIMER_BOTH = 3, NP__TIMER_FN = 4 };

typedef struct np__pd np__pd;

struct np__group;
struct np__sched;

typedef struct np__timer {
  int64_t when_ns;                 /* fires at this np__now(); protected by poller timer lock */
  uintptr_t seq;                   /* pd->rseq/wseq when armed; protected by timer lock */
  int kind;                        /* NP__TIMER_*; protected by timer lock */
  int32_t heap_index;              /* -1 when not in the heap; protected by timer lock */
  bool armed;                      /* Go's rt.f != nil; protected by pd->lock */
  np__pd *pd;                      /* owner; constant (NULL for an NP__TIMER_FN timer) */
  void (*fn)(struct np__timer *t); /* NP__TIMER_FN: called when it fires (task sleep) */
} np__timer;

/* Alignment leaves the low 6 bits of every pd pointer zero: with the 16 bits
 * above a 48-bit user address they carry the 22-bit fdseq tag. */
#define NP__PD_ALIGN 64

struct np__pd {
  np__pd *link;      /* free list; protected by the cache lock */
  np_poller *poller; /* constant for the pd's life */
  int fd;            /* constant while open; protected by lock */
  np__au32 info;     /* NP__INFO_* | fdseq << SEQ_SHIFT; atomic */
  np__auptr rg;      /* NIL, READY, WAIT or a read waiter; atomic */
  np__auptr wg;      /* same for write */
  np__ai64 rd_when;  /* rd as last set if > 0, else 0: checkerr reads it */
  np__ai64 wd_when;  /* without the lock (atomic); in the first line with rg/wg */
  np__mutex lock;    /* protects the fields below */
  bool closing;      /* unblock has run; no new park commits (I7) */
  bool in_use;       /* between open and free (I4 checks) */
  bool failed;       /* the poller failed while this pd was open */
  uint32_t fdseq;    /* bumped on every open; tag of epoll events */
  uintptr_t rseq;    /* read timer generation: stale timers are ignored */
  uintptr_t wseq;    /* write timer generation */
  int64_t rd;        /* read deadline: 0 none, -1 expired, else when */
  int64_t wd;        /* write deadline */
  np__timer rt;      /* read (or combined) deadline timer */
  np__timer wt;      /* write deadline timer (unused when combined) */
} __attribute__((aligned(NP__PD_ALIGN)));

/* The cache allocates pds in blocks that live as long as the poller. */
#define NP__PD_BLOCK_COUNT 32
typedef struct np__pd_block np__pd_block;
struct np__pd_block {
  np__pd pds[NP__PD_BLOCK_COUNT];
  np__pd_block *next;
};

/* ---- poller ---------------------------------------------------------------*/

struct np_poller {
  const np__backend *backend; /* constant */
  void *backend_state;        /* constant */
  int events_max;             /* constant; at most NP__EVENTS_MAX */
  np__au32 wake_sig;          /* 1 while a break is pending (coalescing) */
  np__au32 waiters;           /* parked waiters, exact (I11, Go 60782) */
  np__au32 shutdown;          /* set once by destroy */
  np__au32 failed;            /* 0, or -errno that broke the epoll or break descriptor */

  np__mutex cache_lock; /* protects free_list, blocks */
  np__pd *free_list;
  np__pd_block *blocks; /* never freed while the poller lives */

  np__mutex timer_lock; /* protects heap, heap_len/cap, sleep_until */
  np__timer **heap;     /* min-heap on when_ns */
  int32_t heap_len;
  int32_t heap_cap;
  int32_t heap_reserved; /* heap slots reserved for NP__TIMER_FN timers */
  int64_t sleep_cap_ns;  /* a blocking poll waits at most this long (0: no bound); constant */
  int64_t sleep_until;   /* poller's wake time while it waits; 0 awake */
  bool poller_blocking;  /* a np__poll_once(block) is running (one at most); timer lock */

  np__mutex fds_lock; /* protects fds list */
  np_fd *fds;         /* every handle not yet freed */

  np__au64 stat_fds_open;
  np__au64 stat_polls;
  np__au64 stat_breaks;
  np__au64 stat_timers;
  np__au64 stat_pds;
  struct np__group *group;     /* the schedulers sharing the public handle; constant */
  struct np__fdtable *fdtable; /* its pollers' numbers, if it has several (fdtable.c); constant */
  uint32_t fork_gen;           /* np__fork_gen when its group was made (group.c); constant */
  struct np__sched *sched;     /* the scheduler that polls this poller (NULL: manual); constant */
};

/* Events fetched by one np__netpoll call (a stack buffer, as Go's 128). */
#define NP__EVENTS_MAX 128
#define NP__PROCS_MAX 256 /* scheduler threads of one poller */

/* np_options within its documented ranges: 0 or -EINVAL (common.c). */
int np__options_check(const np_options *o);
int np__poller_init(np_poller *p, const np__backend *backend, int events_max);
/* Native runtime: a poller on any backend; threaded=false starts no poller
 * thread (tests drive np__poll_once / np__netpoll themselves). Destroy with
 * np_poller_destroy. */
int np__poller_new(np_poller **out, const np__backend *backend, int events_max, bool threaded);
void np__poller_fini(np_poller *p);

/* Go's netpoll(delay): fetch events (delay < 0 blocks, 0 polls, > 0 waits at
 * most delay), mark the pds ready and unpark their waiters. Returns the
 * number of waiters woken, or -errno from the backend (not EINTR). */
int np__netpoll(np_poller *p, int64_t delay_ns);
/* Go's netpollBreak: wake a poller blocked in np__netpoll; coalesced. */
void np__netpoll_break(np_poller *p);
/* The epoll or break descriptor failed (closed behind the library): enter
 * the failed state for good. Every parked waiter wakes with NP__POLL_FAILED,
 * every later operation and np_open fail with NP_EPOLLER; close, free and
 * destroy still work. Idempotent. */
void np__poller_fail(np_poller *p, int err);
/* One turn of the poller loop: run expired timers, then netpoll until the
 * next timer (block=false, or a timer ran: poll only). Returns
 * np__netpoll's result. */
int np__poll_once(np_poller *p, bool block);
/* Run timers whose time has come; returns how many ran. */
int np__run_timers(np_poller *p, int64_t now_ns);
void np__pd_cache_fini(np_poller *p);

/* pollDesc operations (Go's runtime_poll*). */
int np__pd_open(np_poller *p, int fd, np__pd **out);
/* deregister=false: the descriptor number names another file now (closed
 * behind the library): leave that file's epoll registration alone. */
void np__pd_close(np__pd *pd, bool deregister);
/* Wake both waiters with NP__POLL_FAILED and refuse from now on. */
void np__pd_fail(np__pd *pd);
void np__pd_unblock(np__pd *pd);
int np__pd_reset(np__pd *pd, int mode); /* prepare: checkerr, clear stale ready */
int np__pd_wait(np__pd *pd, int mode);  /* NP__POLL_* */
void np__pd_set_deadline(np__pd *pd, int64_t deadline_ns, int mode);
/* Go's netpollcheckerr: NP__POLL_OK or why the operation cannot proceed. */
int np__pd_checkerr_full(np__pd *pd, int mode);
/* Its common case inline (up to four calls a round trip): no bit that can
 * fail an operation and no deadline pending, else the full check. */
static inline int np__pd_checkerr(np__pd *pd, int mode) {
  const uint32_t fails = NP__INFO_CLOSING | NP__INFO_FAILED | NP__INFO_EXPIRED_READ | NP__INFO_EXPIRED_WRITE |
                         NP__INFO_EVENT_ERR;
  if ((np__load_u32(&pd->info) & fails) == 0 && np__load_i64(mode == 'r' ? &pd->rd_when : &pd->wd_when) == 0)
    return NP__POLL_OK;
  return np__pd_checkerr_full(pd, mode);
}
/* A HUP or ERR event has come for this registration: the connection is
 * ending, and an empty receive queue no longer means the next read would
 * wait (a reset's error is still to be read; Linux's TCP_INQ says 0). */
bool np__pd_no_hint(np__pd *pd);
int np__pd_ready(np__pd *pd, uint32_t fdseq, uint32_t events);
void np__pd_deadline_fired(np__pd *pd, uintptr_t seq, int kind);
uint64_t np__pd_tag(np__pd *pd, uint32_t fdseq);
np__pd *np__pd_untag(uint64_t tag, uint32_t *fdseq);

/* timer heap, called with pd->lock held (lock order: pd lock, timer lock).
 * np__timer_set returns true if the sleeping poller must be woken: the
 * caller breaks it after releasing the pd lock (a failing break enters the
 * failed state, which takes pd locks). */
bool np__timer_set(np_poller *p, np__timer *t, int64_t when_ns, int kind, uintptr_t seq);
bool np__timer_del(np_poller *p, np__timer *t);       /* true if it was still pending */
int np__heap_grow_locked(np_poller *p, int64_t need); /* timer lock held */
/* Reserve (delta > 0) or release heap room for NP__TIMER_FN timers; the
 * heap never allocates in np__timer_set. Returns 0 or -ENOMEM. */
int np__timer_reserve(np_poller *p, int32_t delta);
/* Fire every pending NP__TIMER_FN timer now (shutdown ends all sleeps). */
void np__timer_fire_fn_all(np_poller *p);

/* ---- fd mutex (Go's fdMutex) ---------------------------------------------*/
typedef struct np__fdmutex {
  np__au64 state; /* closed | rlock | wlock | refs<<3 | rwait<<23 | wwait<<43 */
  np__sema rsema;
  np__sema wsema;
} np__fdmutex;

#define NP__MUTEX_REF_MAX ((1u << 20) - 1)
int np__fdmu_incref(np__fdmutex *mu);           /* 0, NP_ECLOSING, -EOVERFLOW */
int np__fdmu_incref_and_close(np__fdmutex *mu); /* 0, NP_ECLOSING, -EOVERFLOW */
bool np__fdmu_decref(np__fdmutex *mu);          /* true: last ref after close */
/* 0, NP_ECLOSING, -EOVERFLOW, or NP__MU_LAST: refused after close, and the
 * reference this thread held while it queued was the last (destroy). */
#define NP__MU_LAST 1
int np__fdmu_rwlock(np__fdmutex *mu, bool read);
bool np__fdmu_rwunlock(np__fdmutex *mu, bool read);

/* ---- fd handle -------------------------------------------------------------*/
struct np_fd {
  /* The first 64 bytes (the handle is 64-byte aligned natively) hold what
   * every read and write touches: pd, descriptor, hint, exposed and the mutex word. */
  np__pd *pd;        /* NULL after destroy */
  np_poller *poller; /* constant */
  int sysfd;         /* -1 after destroy; read only under a reference */
  /* The drained hint (read side, under the read lock): on a TCP socket the
   * library made, a read that returned less than asked emptied the receive
   * queue, so the next read waits for readiness before its first syscall
   * instead of paying a read that would return EAGAIN. See read_once. */
  bool hint;
  bool drained;
  /* Under the write lock: the backend's send said ENOTSOCK, so writes use
   * write(2), which raises SIGPIPE on a pipe whose reader is gone. */
  bool notsock;
  np__au32 exposed;   /* the program has the number: np_open's fd, or np_sysfd returned it (every
                         wait that may park reads it) */
  np__fdmutex mu;     /* serializes reads, writes, close (state word first) */
  int close_err;      /* result of close(2), set by destroy */
  np__sema csema;     /* released by destroy; the closer waits on it */
  np__sema dsema;     /* released by the closer when done with f; np_free waits */
  bool has_ident;     /* ident is valid (the backend can tell which file sysfd names) */
  uint64_t ident;     /* the file sysfd named at open (backend identity) */
  np_fd *next, *prev; /* poller->fds; protected by poller->fds_lock */
};

/* What a round trip touches stays in the first cache line (docs/DESIGN.md,
 * "The round trip's footprint"); a field added in front must not push it out. */
_Static_assert(offsetof(np__pd, wd_when) + sizeof(np__ai64) <= 64, "pd: rg, wg, info, rd/wd_when in line 0");
_Static_assert(offsetof(struct np_fd, mu) + sizeof(np__au64) <= 64,
               "np_fd: pd, sysfd, hint, exposed, mutex word in line 0");

int np__fd_open(np_poller *p, int fd, np_fd **out);
/* The descriptor numbers the handles of several pollers own (fdtable.c):
 * a slot per number, the handle that claimed it last. */
typedef struct np__fdtable {
  np__mutex lock;
  struct np_fd ***chunks;
  size_t nchunks;
} np__fdtable;
void np__fdtable_init(np__fdtable *t);
void np__fdtable_fini(np__fdtable *t);
/* Records that f (on p, sysfd and ident set) owns its number across the
 * pollers sharing p's fdtable: -EEXIST if a live handle owns the same
 * file, -ENOMEM; 0. A poller without a table (alone: its epoll instance's
 * EEXIST says it): 0. Unclaim before the number is closed. */
int np__fd_claim(np_poller *p, np_fd *f);
/* Runtime: p was made by a parent of this (forked) process: its threads
 * are not here, its epoll instance is the parent's (group.c). Sim: false.
 * Natively inline: every descriptor call asks (two loads). */
#ifdef NP_PORT_SIM
bool np__poller_forked(const np_poller *p);
#else
extern uint32_t np__fork_gen; /* forks of this process; written only in a child, before it has threads */
static inline bool np__poller_forked(const np_poller *p) {
  return p->group != NULL && p->fork_gen != np__fork_gen;
}
#endif
void np__fd_unclaim(np_poller *p, np_fd *f);
/* Runtime: which poller of p's group a new descriptor joins (spread: an
 * accepted connection, round robin). The simulator has one poller: p. */
np_poller *np__home_poller(np_poller *p, bool spread);
/* A reference on f (np_sysfd's): while held, f->sysfd stays open and
 * valid. 0, or NP_ECLOSING / -EOVERFLOW (no reference taken). */
int np__fd_incref(np_fd *f);
void np__fd_decref(np_fd *f);
/* f is a TCP stream socket the library made (np_listen, np_dial) and has
 * not handed out: its reads may use the drained hint, and it does not
 * count as a number the program has (f->exposed) until np_sysfd. */
void np__fd_own_tcp(np_fd *f);
/* np_poller_destroy's first half: np_free every handle still on p->fds. */
void np__fd_free_all(np_poller *p);

#endif
