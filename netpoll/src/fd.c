/*
 * fd.c - the descriptor operations (Go's internal/poll.FD on unix): read,
 * write, readv, writev, accept, connect, wait, deadlines and close, on top of
 * the fd mutex and the pollDesc.
 *
 * It must never: park without holding the lock of that direction (two
 * waiters in one mode would be a double wait); close the descriptor while a
 * reference is held (I12: the last reference closes it, after the pd);
 * lose the count of bytes written when a write stops part way.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "np_internal.h"

/* Go's maxRW: larger single reads and writes are split (darwin/freebsd
 * limits; harmless on Linux and keeps counts well inside ssize_t). The
 * simulator draws it per run (port_sim.h), so the split runs there. */
#ifdef NP_PORT_SIM
#define MAX_RW sim_max_rw
#else
#define MAX_RW ((size_t)1 << 30)
#endif
#define WRITEV_WINDOW 64

static int poll_error(int poll_err) {
  switch (poll_err) {
    case NP__POLL_CLOSING: return NP_ECLOSING;
    case NP__POLL_TIMEOUT: return NP_ETIMEOUT;
    case NP__POLL_NOT_POLLABLE: return NP_ENOTPOLLABLE;
    case NP__POLL_FAILED: return NP_EPOLLER;
    default: NP_ASSERT(poll_err == NP__POLL_OK); return 0;
  }
}

#ifdef NP_TEST_HOOKS
void *(*np__test_hook_fd_alloc)(size_t size);
void (*np__test_hook_fd_free)(void *f);
#endif

#define BE(f) ((f)->poller->backend)
#define BS(f) ((f)->poller->backend_state)

/* Does sysfd still name the file it named at open? (true if the backend
 * cannot tell). One fstat; the window between it and the syscall that
 * follows cannot be closed: what then happens stays undefined. */
static bool same_file(np_fd *f) {
  if (!f->has_ident) return true;
  uint64_t id;
  return BE(f)->identity(BS(f), f->sysfd, &id) == 0 && id == f->ident;
}

/* Waits for readiness without a syscall of ours: 0 or an error. No syscall
 * would notice a descriptor closed behind the library (epoll drops it
 * silently and nothing would ever wake us): check before a wait that is
 * going to park. A pending READY or an error return at once and skip the
 * check (an fstat), and so does a descriptor whose number the program never
 * had (a socket the library made, np_sysfd never called): only a stray
 * close of a number it does not own could close that one, and the check
 * costs 1-2 us per parked read under load (most of the drained hint's
 * saving). */
static int wait_checked(np_fd *f, int mode) {
  np__auptr *sem = mode == 'r' ? &f->pd->rg : &f->pd->wg;
  bool may_park = np__load_uptr(sem) != NP__PD_READY && np__pd_checkerr(f->pd, mode) == NP__POLL_OK;
  bool check = may_park && np__load_u32(&f->exposed);
  return check && !same_file(f) ? -EBADF : poll_error(np__pd_wait(f->pd, mode));
}

/* The last reference after close: close the pd (deregister, back to the
 * cache), then the descriptor, then release csema, which lets the closer
 * return. That release is this thread's last touch of the handle: it may be
 * freed the instant after. */
static void destroy(np_fd *f) {
  /* If the number was closed behind the library and now names another file
   * (another poller's epoll instance, a user's pipe), neither deregister
   * nor close that file. */
  bool ours = same_file(f);
  np__fd_unclaim(f->poller, f); /* before the number can be reused */
  np__pd_close(f->pd, ours);
  f->pd = NULL;
  f->close_err = ours ? BE(f)->close_fd(BS(f), f->sysfd) : -EBADF;
  f->sysfd = -1;
  np__stat_add(&f->poller->stat_fds_open, -1);
  np__sema_release(&f->csema);
}

static void fd_decref(np_fd *f) {
  if (np__fdmu_decref(&f->mu)) destroy(f);
}

static void fd_unlock(np_fd *f, bool read) {
  if (np__fdmu_rwunlock(&f->mu, read)) destroy(f);
}

/* The read or write lock; a queued thread refused after close may have held
 * the last reference: then it destroys, and touches the handle no more. */
static int fd_lock(np_fd *f, bool read) {
  if (np__poller_forked(f->poller)) return NP_EPOLLER; /* would wait for a parent's thread */
  int err = np__fdmu_rwlock(&f->mu, read);
  if (err != NP__MU_LAST) return err;
  destroy(f);
  return NP_ECLOSING;
}

/* Undoes a part-made handle: the pd deregistered, the claim dropped if
 * it was made (an EEXIST claim is another handle's). */
static void open_failed(np_poller *p, np_fd *f, bool claimed) {
  if (f->pd != NULL) {
    np__pd_unblock(f->pd);
    np__pd_close(f->pd, true);
  }
  if (claimed) np__fd_unclaim(p, f);
  np__fd_release(f);
}

int np__fd_open(np_poller *p, int fd, np_fd **out) {
  np_fd *f = np__fd_alloc();
  if (f == NULL) return -ENOMEM;
  f->poller = p;
  f->sysfd = fd;
  if (np__load_u32(&p->failed) || np__poller_forked(p)) {
    np__fd_release(f);
    return NP_EPOLLER;
  }
  if (p->backend->identity != NULL) f->has_ident = p->backend->identity(p->backend_state, fd, &f->ident) == 0;
  int err = np__fd_claim(p, f); /* -EEXIST: another scheduler's handle owns it */
  bool claimed = err == 0;
  if (err == 0) err = np__pd_open(p, fd, &f->pd);
  if (err == 0) err = p->backend->setnonblock(p->backend_state, fd);
  if (err == 0) {
    np__mutex_lock(&p->fds_lock);
    if (!np__load_u32(&p->shutdown)) { /* else destroy is sweeping the list: refuse */
      f->next = p->fds;
      if (p->fds != NULL) p->fds->prev = f;
      p->fds = f;
      np__mutex_unlock(&p->fds_lock);
      np__stat_add(&p->stat_fds_open, 1);
      *out = f;
      return 0;
    }
    np__mutex_unlock(&p->fds_lock);
    err = NP_ECLOSING;
  }
  open_failed(p, f, claimed);
  return err;
}

int np_open(np_poller *p, int fd, np_fd **out) {
  if (out != NULL) *out = NULL;
  if (p == NULL || out == NULL) return -EINVAL;
  if (fd < 0) return -EBADF;
  if (np__load_u32(&p->shutdown)) return NP_ECLOSING;
  int err = np__fd_open(np__home_poller(p, false), fd, out);
  if (err == 0) np__store_u32(&(*out)->exposed, 1); /* the caller's own number */
  return err;
}

/* The one close that wins (marks the fd mutex closed) wakes every waiter,
 * drops its reference and waits on csema until the last reference (held by
 * every thread inside a call on f, queued ones included) has run destroy.
 * Releasing dsema is its last touch of f: np_free waits for it. */
static int close_handle(np_fd *f, bool *won) {
  *won = false;
  int err = np__fdmu_incref_and_close(&f->mu);
  if (err != 0) return err;
  *won = true;
  np__pd_unblock(f->pd); /* wakes every waiter with closing (I7) */
  fd_decref(f);
  np__sema_acquire(&f->csema);
  err = f->close_err;
  np__sema_release(&f->dsema);
  return err;
}

/* In a forked child, a parent's handle: close the child's descriptor only
 * (the registration belongs to the file the parent still has open; a
 * reference a parent's thread held at the fork is never dropped here). */
static int child_close(np_fd *f) {
  int fd = f->sysfd;
  f->sysfd = -1;
  return fd < 0 ? NP_ECLOSING : BE(f)->close_fd(BS(f), fd);
}

int np_close(np_fd *f) {
  if (f == NULL) return -EINVAL;
  if (np__poller_forked(f->poller)) return child_close(f);
  bool won;
  return close_handle(f, &won);
}

void np_free(np_fd *f) {
  if (f == NULL) return;
  if (np__poller_forked(f->poller)) { /* its memory stays: the parent's locks may be held */
    (void)child_close(f);
    return;
  }
  bool won;
  (void)close_handle(f, &won);
  /* Closed before, perhaps by another thread whose np_close has not
   * finished: wait until that close is done with the handle. */
  if (!won) np__sema_acquire(&f->dsema);
  np_poller *p = f->poller;
  np__mutex_lock(&p->fds_lock);
  if (f->prev != NULL)
    f->prev->next = f->next;
  else
    p->fds = f->next;
  if (f->next != NULL) f->next->prev = f->prev;
  np__mutex_unlock(&p->fds_lock);
  np__fd_release(f);
}

/* Destroy's first pass: every descriptor closing, its waiters woken with
 * NP_ECLOSING, before any is closed. Freed one by one instead, a reader on
 * one end of a pair saw the other end's close first and read EOF (a
 * program's own test found it: most parked readers got 0). Under fds_lock
 * with a reference each, so no pd is touched after its handle's destroy. */
static void evict_all(np_poller *p) {
  np__mutex_lock(&p->fds_lock);
  for (np_fd *f = p->fds; f != NULL; f = f->next) {
    if (np__fdmu_incref(&f->mu) != 0) continue; /* already closing */
    np__pd_unblock(f->pd);                      /* a second unblock, by the handle's close, is a no-op */
    fd_decref(f);
  }
  np__mutex_unlock(&p->fds_lock);
}

void np__fd_free_all(np_poller *p) {
  evict_all(p);
  for (;;) {
    np__mutex_lock(&p->fds_lock);
    np_fd *f = p->fds;
    np__mutex_unlock(&p->fds_lock);
    if (f == NULL) return;
    np_free(f); /* closes: blocked and queued threads wake with NP_ECLOSING */
  }
}

int np_sysfd(const np_fd *cf) {
  np_fd *f = (np_fd *)cf; /* the reference count changes, the descriptor does not */
  if (f == NULL || np__fdmu_incref(&f->mu) != 0) return -1;
  int fd = f->sysfd;
  np__store_u32(&f->exposed, 1); /* from now on waits check the number before parking */
  fd_decref(f);
  return fd;
}

int np__fd_incref(np_fd *f) { return np__fdmu_incref(&f->mu); }
void np__fd_decref(np_fd *f) { fd_decref(f); }

/* Go's CloseWrite (pfd.Shutdown): under a reference, not the write lock, so
 * it does not wait behind a blocked writer. */
int np_close_write(np_fd *f) {
  if (f == NULL) return -EINVAL;
  int err = np__fdmu_incref(&f->mu);
  if (err != 0) return err;
  err = BE(f)->shutdown_write != NULL ? BE(f)->shutdown_write(BS(f), f->sysfd) : -ENOTSUP;
  fd_decref(f);
  return err;
}

static bool iov_valid(const struct iovec *iov, int iovcnt, size_t *total) {
  if (iovcnt < 0 || iovcnt > IOV_MAX || (iov == NULL && iovcnt > 0)) return false;
  size_t sum = 0;
  for (int i = 0; i < iovcnt; i++) {
    if (iov[i].iov_base == NULL && iov[i].iov_len > 0) return false;
    if (iov[i].iov_len > SSIZE_MAX - sum) return false;
    sum += iov[i].iov_len;
  }
  *total = sum;
  return true;
}

void np__fd_own_tcp(np_fd *f) {
  f->hint = true;
  np__store_u32(&f->exposed, 0);
}

/* One read syscall (len: what it asks for, the iovec's total). With the
 * hint on, f->drained records that it returned less than asked: TCP's read
 * then emptied the receive queue (docs/DESIGN.md, "The drained hint") but
 * for three things that arrive with an event: urgent data (the read stops
 * at the mark: EPOLLPRI), a FIN (the read stops before it: EPOLLRDHUP) and
 * a reset or error (EPOLLHUP/EPOLLERR; its error is still to be read). Any
 * of those flags the pd for good (np__pd_no_hint) before its readiness is
 * published, and the flag is read after the syscall: an event whose
 * readiness the reset before this read took was flagged before it; a later
 * one is still in rg. Not for EOF (n == 0): the next read must return 0
 * again at once. Not for a readv of more than MAX_RW (the kernel's own cap
 * would cut it). Not once np_sysfd has handed the number out: the program
 * may have changed what a read of it does (an upper layer protocol such as
 * kTLS stops at record boundaries with no event). */
static ssize_t read_once(np_fd *f, void *buf, size_t len, const struct iovec *iov, int iovcnt) {
  ssize_t n =
      iov != NULL ? BE(f)->readv(BS(f), f->sysfd, iov, iovcnt) : BE(f)->read(BS(f), f->sysfd, buf, len);
  if (!f->hint) return n;
  bool short_read = n > 0 && (size_t)n < len && len <= MAX_RW;
  f->drained = short_read && !np__load_u32(&f->exposed) && !np__pd_no_hint(f->pd);
  return n;
}

/* Shared read loop: one successful syscall, EINTR retried, EAGAIN parks.
 * After a read that drained the socket, a read that would find it empty
 * would only return EAGAIN: wait first. That read's reset came before it,
 * so readiness reported since (data that arrived after it) is still in rg
 * and the wait returns at once; resetting now would lose it. Every other
 * read-side call (np_wait_read, np_accept) may consume that readiness, so
 * each clears f->drained under the read lock. Like np_wait_read, a wait
 * that would park checks first that the descriptor still names its file
 * (-EBADF if it was closed behind the library, as the read would say). */
static ssize_t read_loop(np_fd *f, void *buf, size_t len, const struct iovec *iov, int iovcnt) {
  int err = fd_lock(f, true);
  if (err != 0) return err;
  ssize_t ret;
  if (len == 0) {
    ret = 0;
    goto out;
  }
  bool drained = f->drained;
  f->drained = false;
  ret = drained ? wait_checked(f, 'r') : poll_error(np__pd_reset(f->pd, 'r'));
  if (ret != 0) goto out;
  for (;;) {
    ssize_t n = read_once(f, buf, len, iov, iovcnt);
    if (n == -EINTR) continue;
    if (n == -EAGAIN) {
      err = np__pd_wait(f->pd, 'r');
      if (err == NP__POLL_OK) continue;
      ret = poll_error(err);
      break;
    }
    ret = n;
    break;
  }
out:
  fd_unlock(f, true);
  return ret;
}

ssize_t np_read(np_fd *f, void *buf, size_t len) {
  if (f == NULL || (buf == NULL && len > 0)) return -EINVAL;
  if (len > MAX_RW) len = MAX_RW;
  return read_loop(f, buf, len, NULL, 0);
}

ssize_t np_readv(np_fd *f, const struct iovec *iov, int iovcnt) {
  size_t total;
  if (f == NULL || !iov_valid(iov, iovcnt, &total)) return -EINVAL;
  return read_loop(f, NULL, total, iov, iovcnt);
}

/* Writes go through send first, so a socket whose peer is gone gives EPIPE
 * and no SIGPIPE (Go's behaviour; write(2) would kill a process that did
 * not ignore the signal). The first ENOTSOCK moves the handle to write(2)
 * for good: a handle's descriptor is one file for its whole life (one
 * closed and reused behind the library is the identity check's case). */
static ssize_t fd_write(np_fd *f, const void *buf, size_t len) {
  if (!f->notsock && BE(f)->send != NULL) {
    ssize_t n = BE(f)->send(BS(f), f->sysfd, buf, len);
    if (n != -ENOTSOCK) return n;
    f->notsock = true;
  }
  return BE(f)->write(BS(f), f->sysfd, buf, len);
}

static ssize_t fd_writev(np_fd *f, const struct iovec *iov, int iovcnt) {
  if (!f->notsock && BE(f)->sendv != NULL) {
    ssize_t n = BE(f)->sendv(BS(f), f->sysfd, iov, iovcnt);
    if (n != -ENOTSOCK) return n;
    f->notsock = true;
  }
  return BE(f)->writev(BS(f), f->sysfd, iov, iovcnt);
}

int np_write(np_fd *f, const void *buf, size_t len, size_t *written) {
  if (written != NULL) *written = 0;
  if (f == NULL || (buf == NULL && len > 0)) return -EINVAL;
  int err = fd_lock(f, false);
  if (err != 0) return err;
  size_t nn = 0;
  int ret;
  err = np__pd_reset(f->pd, 'w');
  if (err != NP__POLL_OK) {
    ret = poll_error(err);
    goto out;
  }
  for (;;) {
    size_t chunk = len - nn > MAX_RW ? MAX_RW : len - nn;
    ssize_t n = fd_write(f, (const char *)buf + nn, chunk);
    if (n == -EINTR) continue;
    if (n > 0) {
      NP_ASSERT((size_t)n <= chunk);
      nn += (size_t)n;
    }
    if (nn == len) {
      ret = n < 0 ? (int)n : 0;
      break;
    }
    if (n == -EAGAIN) {
      err = np__pd_wait(f->pd, 'w');
      if (err == NP__POLL_OK) continue;
      ret = poll_error(err);
      break;
    }
    if (n < 0) {
      ret = (int)n;
      break;
    }
    if (n == 0) {
      ret = -EIO; /* Go: io.ErrUnexpectedEOF; a stream write never returns 0 */
      break;
    }
  }
out:
  if (written != NULL) *written = nn;
  fd_unlock(f, false);
  return ret;
}

int np_writev(np_fd *f, const struct iovec *iov, int iovcnt, size_t *written) {
  if (written != NULL) *written = 0;
  size_t total;
  if (f == NULL || !iov_valid(iov, iovcnt, &total)) return -EINVAL;
  int err = fd_lock(f, false);
  if (err != 0) return err;
  size_t nn = 0;
  int ret = 0;
  err = np__pd_reset(f->pd, 'w');
  if (err != NP__POLL_OK) {
    ret = poll_error(err);
    goto out;
  }
  int index = 0;     /* first iovec not fully written */
  size_t offset = 0; /* bytes of iov[index] already written */
  while (nn < total) {
    while (index < iovcnt && offset == iov[index].iov_len) {
      index++;
      offset = 0;
    }
    struct iovec window[WRITEV_WINDOW];
    int count = 0;
    for (int i = index; i < iovcnt && count < WRITEV_WINDOW; i++) {
      size_t skip = i == index ? offset : 0;
      if (iov[i].iov_len == skip) continue;
      window[count].iov_base = (char *)iov[i].iov_base + skip;
      window[count].iov_len = iov[i].iov_len - skip;
      count++;
    }
    NP_ASSERT(count > 0);
    ssize_t n = fd_writev(f, window, count);
    if (n == -EINTR) continue;
    if (n == -EAGAIN) {
      err = np__pd_wait(f->pd, 'w');
      if (err == NP__POLL_OK) continue;
      ret = poll_error(err);
      break;
    }
    if (n < 0) {
      ret = (int)n;
      break;
    }
    if (n == 0) {
      ret = -EIO;
      break;
    }
    nn += (size_t)n;
    NP_ASSERT(nn <= total);
    for (size_t left = (size_t)n; left > 0;) { /* advance (index, offset) */
      size_t room = iov[index].iov_len - offset;
      if (left < room) {
        offset += left;
        left = 0;
      } else {
        left -= room;
        index++;
        offset = 0;
      }
    }
  }
out:
  if (written != NULL) *written = nn;
  fd_unlock(f, false);
  return ret;
}

int np_accept(np_fd *f, np_fd **out, struct sockaddr *addr, socklen_t *addrlen) {
  if (out != NULL) *out = NULL;
  if (f == NULL || out == NULL || (addr != NULL && addrlen == NULL)) return -EINVAL;
  int err = fd_lock(f, true);
  if (err != 0) return err;
  f->drained = false; /* see wait_mode */
  int s;
  err = np__pd_reset(f->pd, 'r');
  if (err != NP__POLL_OK) {
    fd_unlock(f, true);
    return poll_error(err);
  }
  for (;;) {
    s = BE(f)->accept4(BS(f), f->sysfd, addr, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s >= 0) break;
    if (s == -EINTR || s == -ECONNABORTED) continue; /* the next one may be fine */
    if (s == -EAGAIN) {
      err = np__pd_wait(f->pd, 'r');
      if (err == NP__POLL_OK) continue;
      s = poll_error(err);
    }
    break;
  }
  /* Register the connection while the listener's reference keeps the
   * poller alive: np_poller_destroy cannot finish before fd_unlock. The
   * connection joins the group's schedulers in turn (connections spread). */
  if (s >= 0) {
    np_poller *p = np__home_poller(f->poller, true);
    err = np__fd_open(p, s, out);
    if (err != 0) p->backend->close_fd(p->backend_state, s);
    if (err == 0) (*out)->hint = f->hint; /* a TCP listener's connections are TCP */
    s = err;
  }
  fd_unlock(f, true);
  return s;
}

int np_connect(np_fd *f, const struct sockaddr *addr, socklen_t addrlen) {
  if (f == NULL || addr == NULL) return -EINVAL;
  int err = fd_lock(f, false);
  if (err != 0) return err;
  int ret = 0;
  err = np__pd_reset(f->pd, 'w');
  if (err != NP__POLL_OK) {
    ret = poll_error(err);
    goto out;
  }
  ret = BE(f)->connect(BS(f), f->sysfd, addr, addrlen);
  if (ret == 0 || ret == -EISCONN) {
    ret = 0;
    goto out;
  }
  if (ret != -EINPROGRESS && ret != -EALREADY && ret != -EINTR) goto out;
  for (;;) {
    err = np__pd_wait(f->pd, 'w');
    if (err != NP__POLL_OK) {
      ret = poll_error(err);
      break;
    }
    int so_error = 0;
    ret = BE(f)->getsockopt_error(BS(f), f->sysfd, &so_error);
    if (ret != 0) break;
    if (so_error == EINPROGRESS || so_error == EALREADY || so_error == EINTR) continue;
    if (so_error == EISCONN) break; /* ret == 0 */
    if (so_error != 0) {
      ret = -so_error;
      break;
    }
    /* SO_ERROR 0 after a wake may be spurious (Go 14548, 19289): connected
     * only if there is a peer. */
    if (BE(f)->getpeername(BS(f), f->sysfd) == 0) break;
  }
out:
  fd_unlock(f, false);
  return ret;
}

/* Waits for readiness without a syscall of ours. A READY noted since the
 * last wait is consumed at once: the caller's next syscall may still say
 * EAGAIN (spurious), never miss an edge. */
static int wait_mode(np_fd *f, int mode) {
  if (f == NULL) return -EINVAL;
  bool read = mode == 'r';
  int err = fd_lock(f, read);
  if (err != 0) return err;
  if (read) f->drained = false; /* the wait may consume readiness a drained np_read counts on */
  int ret = wait_checked(f, mode);
  fd_unlock(f, read);
  return ret;
}

int np_wait_read(np_fd *f) { return wait_mode(f, 'r'); }
int np_wait_write(np_fd *f) { return wait_mode(f, 'w'); }

static int set_deadline(np_fd *f, int64_t deadline_ns, int mode) {
  if (f == NULL) return -EINVAL;
  if (np__poller_forked(f->poller)) return NP_EPOLLER; /* the timer heap's lock is the parent's */
  int err = np__fdmu_incref(&f->mu);
  if (err != 0) return err;
  np__pd_set_deadline(f->pd, deadline_ns, mode);
  fd_decref(f);
  return 0;
}

int np_set_deadline(np_fd *f, int64_t deadline_ns) { return set_deadline(f, deadline_ns, 'r' + 'w'); }
int np_set_read_deadline(np_fd *f, int64_t deadline_ns) { return set_deadline(f, deadline_ns, 'r'); }
int np_set_write_deadline(np_fd *f, int64_t deadline_ns) { return set_deadline(f, deadline_ns, 'w'); }
