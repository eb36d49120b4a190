/*
 * kernel.c - the simulated kernel (see kernel.h).
 */
#include "kernel.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>

#include "kernel_impl.h"
#include "sched.h"

kern_state kern_state_g;

static kbuf *buf_new(uint32_t cap) {
  kbuf *b = calloc(1, sizeof(*b));
  if (b == NULL) sim_fail("out of memory");
  b->cap = cap == 0 ? 1 : cap;
  b->data = malloc(b->cap);
  if (b->data == NULL) sim_fail("out of memory");
  return b;
}

static void buf_release(kbuf *b) {
  if (b != NULL && --b->users == 0) {
    free(b->page_len);
    free(b->data);
    free(b);
  }
}

/* ---- pipes: a ring of pages (Linux's fs/pipe.c) ------------------------------ */

/* Linux's round_pipe_size: a power of two pages; at least 2, at most 256. */
static uint16_t pipe_pages(uint32_t capacity) {
  uint32_t want = capacity / KERN_PIPE_PAGE + (capacity % KERN_PIPE_PAGE != 0), pages = 2;
  while (pages < want && pages < 256) pages *= 2;
  return (uint16_t)pages;
}

static kbuf *pipe_buf_new(uint32_t capacity) {
  uint16_t pages = pipe_pages(capacity);
  kbuf *b = buf_new((uint32_t)pages * KERN_PIPE_PAGE);
  b->page_len = calloc(pages, sizeof(*b->page_len));
  if (b->page_len == NULL) sim_fail("out of memory");
  b->pages = pages;
  return b;
}

/* pipe_full: no free page. pipe_poll says EPOLLOUT otherwise. */
static bool pipe_full(const kbuf *b) { return b->pg_used == b->pages; }

static uint16_t *pipe_last(kbuf *b) { return &b->page_len[(b->pg_tail + b->pg_used - 1) % b->pages]; }

/* pipe_read took n bytes: a page all of whose bytes are read is free. */
static void pipe_consumed(kbuf *b, size_t n) {
  while (n > 0) {
    uint32_t left = b->page_len[b->pg_tail] - b->pg_off, k = n < left ? (uint32_t)n : left;
    b->pg_off = (uint16_t)(b->pg_off + k);
    n -= k;
    if (b->pg_off == b->page_len[b->pg_tail]) {
      b->pg_tail = (uint16_t)((b->pg_tail + 1) % b->pages);
      b->pg_used--;
      b->pg_off = 0;
    }
  }
}

/* What pipe_write takes of a len-byte write with O_NONBLOCK: first the
 * len % PAGE bytes into the last page if they all fit there (*merge),
 * then a page at a time while one is free. So a write of at most PIPE_BUF
 * is whole or nothing (EAGAIN). */
static size_t pipe_room(kbuf *b, size_t len, size_t *merge) {
  size_t chars = len % KERN_PIPE_PAGE, pages_free = (size_t)(b->pages - b->pg_used) * KERN_PIPE_PAGE;
  *merge = chars != 0 && b->pg_used > 0 && *pipe_last(b) + chars <= KERN_PIPE_PAGE ? chars : 0;
  size_t rest = len - *merge;
  return *merge + (rest < pages_free ? rest : pages_free);
}

static void pipe_filled(kbuf *b, size_t merge, size_t n) {
  if (merge > 0) *pipe_last(b) = (uint16_t)(*pipe_last(b) + merge);
  for (n -= merge; n > 0;) {
    size_t k = n < KERN_PIPE_PAGE ? n : KERN_PIPE_PAGE;
    b->pg_used++;
    *pipe_last(b) = (uint16_t)k;
    n -= k;
  }
}

static void backlog_drop(kfile *f, int index, bool reset_client);

void kern_reset(void) {
  int end = K.fd_end > 3 ? K.fd_end : 3;
  for (int fd = 0; fd < end; fd++) {
    kfile *f = &K.files[fd];
    if (f->kind == K_FREE) continue;
    while (f->kind == K_LISTEN && f->backlog_len > 0) backlog_drop(f, 0, false);
    free(f->backlog);
    free(f->item);
    if (f->rx != NULL) buf_release(f->rx);
    if (f->tx != NULL && f->tx != f->rx) buf_release(f->tx);
  }
  /* The table is large (KERN_FDS_MAX) and a fuzzer resets thousands of
   * times a second: only what this run used is cleared. */
  memset(&K, 0, offsetof(kern_state, files));
  memset(K.files, 0, (size_t)end * sizeof(K.files[0]));
  K.fd_end = 3;
  for (int i = 0; i < KERN_EPOLLS_MAX; i++) K.eps[i].epfd = K.eps[i].breakfd = -1;
  /* 0, 1, 2 are the standard streams: taken, as in a real process. */
  for (int fd = 0; fd < 3; fd++) K.files[fd].kind = K_RESERVED;
}

void kern_set_reg_hooks(kern_reg_fn on_register, kern_close_fn on_close) {
  K.reg_hook = on_register;
  K.close_hook = on_close;
}

void kern_set_event_hook(kern_event_fn fn, void *ctx) {
  K.hook = fn;
  K.hook_ctx = ctx;
}
kern_faults *kern_faults_get(void) { return &K.faults; }
kern_stats *kern_stats_get(void) { return &K.stats; }

static bool fault(uint32_t rate) {
  if (!K.faults.active || rate == 0) return false;
  if (!sim_chance(rate)) return false;
  K.stats.faults++;
  return true;
}

static int fd_alloc(void) {
  for (int fd = 0; fd < KERN_FDS_MAX; fd++) {
    if (K.files[fd].kind != K_FREE) continue;
    if (fd >= K.fd_end) K.fd_end = fd + 1;
    return fd;
  }
  return -EMFILE;
}

static kfile *file_of(int fd) {
  if (fd < 0 || fd >= KERN_FDS_MAX) return NULL;
  kfile *f = &K.files[fd];
  return f->kind == K_FREE || f->kind == K_RESERVED ? NULL : f;
}

bool kern_fd_open(int fd) { return file_of(fd) != NULL; }

static uint32_t space(const kbuf *b) { return b->cap - b->len; }
/* Bytes a reader can have now: the last inflight ones have not arrived. */
static uint32_t readable(const kbuf *b) { return b->len - b->inflight; }
/* The writer is gone and everything it wrote has arrived: end of file. */
static bool at_eof(const kbuf *b) { return b->no_writer && b->inflight == 0; }
/* The urgent byte has arrived and is not read past. */
static bool urgent_arrived(const kbuf *b) { return b->urg && b->urg_at < b->total_read + readable(b); }

uint32_t kern_poll_mask(int fd) {
  kfile *f = file_of(fd);
  if (f == NULL) return 0;
  uint32_t m = 0;
  switch (f->kind) {
    case K_PIPE_R:
      if (f->rx->len > 0) m |= EPOLLIN;
      if (f->rx->no_writer) m |= EPOLLHUP;
      break;
    case K_PIPE_W: /* pipe_poll: writable while a page is free */
      if (!pipe_full(f->tx)) m |= EPOLLOUT;
      if (f->tx->no_reader) m |= EPOLLERR;
      break;
    case K_SOCK:
      if (readable(f->rx) > 0) m |= EPOLLIN;
      if (urgent_arrived(f->rx)) m |= EPOLLPRI; /* tcp_poll: TCP_URG_VALID */
      if (at_eof(f->rx)) m |= EPOLLIN | EPOLLRDHUP;
      /* unix_poll: HUP once both directions are shut (sk_shutdown ==
       * SHUTDOWN_MASK): ours by our shutdown or the peer's close, theirs by
       * their shutdown or close. */
      if (at_eof(f->rx) && (f->tx->no_writer || f->tx->no_reader)) m |= EPOLLHUP;
      if (space(f->tx) > 0 || f->tx->no_reader) m |= EPOLLOUT;
      if (f->sk_err != 0) m |= EPOLLERR;
      break;
    case K_LISTEN:
      if (f->backlog_len > 0) m |= EPOLLIN;
      break;
    case K_EVENTFD: /* eventfd_poll: writable while one more can be added */
      if (f->efd_count > 0) m |= EPOLLIN;
      if (f->efd_count < UINT64_MAX - 1) m |= EPOLLOUT;
      break;
    case K_SOCKNEW: /* tcp_poll: a closed socket is writable and hung up; a connecting one nothing */
      if (!f->connecting) m |= EPOLLOUT | EPOLLHUP;
      if (f->sk_err != 0) m |= EPOLLERR;
      break;
    default: break;
  }
  return m;
}

static void enqueue(epitem *it) {
  if (it->queued) return;
  it->queued = true;
  it->next_ready = NULL;
  kep *e = it->ep;
  if (e->ready_tail != NULL)
    e->ready_tail->next_ready = it;
  else
    e->ready_head = it;
  e->ready_tail = it;
  if (e->waiter != NULL) sim_wake(e->waiter);
}

static void dequeue(epitem *it) {
  if (!it->queued) return;
  kep *e = it->ep;
  epitem **pp = &e->ready_head;
  epitem *prev = NULL;
  while (*pp != it) {
    prev = *pp;
    pp = &(*pp)->next_ready;
  }
  *pp = it->next_ready;
  if (e->ready_tail == it) e->ready_tail = prev;
  it->queued = false;
  it->next_ready = NULL;
}

/* A wake-up on fd's wait queue: as ep_poll_callback, queue the item if the
 * file is ready in a direction it watches (ERR and HUP always count). */
static void notify(int fd) {
  kfile *f = file_of(fd);
  if (f == NULL || f->item == NULL) return;
  if (kern_poll_mask(fd) & (f->item->events | EPOLLERR | EPOLLHUP)) enqueue(f->item);
}

static void notify_buf_users(const kbuf *b, int fd_a, int fd_b) {
  (void)b;
  notify(fd_a);
  if (fd_b >= 0) notify(fd_b);
}

int kern_pipe(int fds[2], uint32_t capacity) {
  int r = fd_alloc();
  if (r < 0) return r;
  K.files[r].kind = K_PIPE_R; /* reserve before the second allocation */
  int w = fd_alloc();
  if (w < 0) {
    K.files[r].kind = K_FREE;
    return w;
  }
  kbuf *b = pipe_buf_new(capacity);
  b->users = 2;
  K.files[r] = (kfile){.kind = K_PIPE_R, .rx = b, .peer = w};
  K.files[w] = (kfile){.kind = K_PIPE_W, .tx = b, .peer = r};
  fds[0] = r;
  fds[1] = w;
  return 0;
}

int kern_stand_in_tcp(int fd) {
  kfile *f = file_of(fd);
  if (f != NULL && f->kind == K_LISTEN) {
    f->tcp_listen = true; /* for the connections it accepts from now on */
    return 0;
  }
  if (f == NULL || f->kind != K_SOCK) return -EBADF;
  f->rx->tcp = f->tx->tcp = true;
  return 0;
}

int kern_socketpair(int fds[2], uint32_t capacity) {
  int a = fd_alloc();
  if (a < 0) return a;
  K.files[a].kind = K_SOCK;
  int b = fd_alloc();
  if (b < 0) {
    K.files[a].kind = K_FREE;
    return b;
  }
  kbuf *ab = buf_new(capacity), *ba = buf_new(capacity);
  ab->users = 2;
  ba->users = 2;
  K.files[a] = (kfile){.kind = K_SOCK, .rx = ba, .tx = ab, .peer = b};
  K.files[b] = (kfile){.kind = K_SOCK, .rx = ab, .tx = ba, .peer = a};
  fds[0] = a;
  fds[1] = b;
  return 0;
}

/* A socket of the simulated network's TCP (the others are unix sockets). */
static bool is_tcp(const kfile *f) { return f->local.family == AF_INET || f->local.family == AF_INET6; }

/* TCP_CLOSE: reset, or both FINs exchanged (one host: acknowledged at once). */
bool kern__tcp_closed(const kfile *f) {
  return is_tcp(f) && f->kind == K_SOCK && (f->reset || (f->tx->no_writer && at_eof(f->rx)));
}

/* A reset arrives at TCP socket f (Linux's tcp_reset): nothing in
 * TCP_CLOSE; EPIPE in CLOSE_WAIT (the peer's FIN came, ours is not sent),
 * else ECONNRESET. A FIN that came first (SOCK_DONE) keeps reads at EOF. */
static void tcp_reset_arrives(kfile *f, int fd, bool fin_in) {
  if (f->reset || (fin_in && f->tx->no_writer)) return;
  f->sk_err = fin_in ? EPIPE : ECONNRESET;
  f->reset = true;
  f->fin_done = fin_in;
  notify(fd);
}

static ssize_t do_read(kfile *f, int fd, void *buf, size_t len, bool faults) {
  if (f->kind == K_EVENTFD) {
    if (len < 8) return -EINVAL;
    if (f->efd_count == 0) return -EAGAIN;
    memcpy(buf, &f->efd_count, 8);
    f->efd_count = 0;
    notify(fd);
    return 8;
  }
  if (f->kind == K_SOCKNEW) return f->sk_err != 0 ? -f->sk_err : f->connecting ? -EAGAIN : -ENOTCONN;
  if (f->kind == K_LISTEN) return f->local.family == AF_UNIX ? -EINVAL : -ENOTCONN; /* Linux's answers */
  if (f->kind != K_PIPE_R && f->kind != K_SOCK) return -EBADF;
  kbuf *b = f->rx;
  /* The exact stream offset of this read, for the reader's data check
   * (several tasks may read one stream; they return in any order). */
  sim->current->io_offset = b->total_read;
  if (len == 0) return 0;
  if (readable(b) == 0) {
    /* af_unix: queued data first; then a pending error once (sock_error),
     * then EOF or EAGAIN. */
    if (f->kind == K_SOCK && f->sk_err != 0 && !f->fin_done) {
      int err = f->sk_err;
      f->sk_err = 0;
      notify(fd);
      return -err;
    }
    return at_eof(b) ? 0 : -EAGAIN;
  }
  size_t n = len < readable(b) ? len : readable(b);
  bool cut = faults && n > 1 && fault(K.faults.short_io);
  if (cut) n = 1 + sim_rand_below(n - 1);
  /* tcp_recvmsg stops before the urgent mark; a read that starts at it
   * takes the byte (inline) and goes on. */
  if (b->urg && b->urg_at > b->total_read && b->urg_at - b->total_read < n) n = b->urg_at - b->total_read;
  bool was_full = b->page_len != NULL && pipe_full(b);
  for (size_t i = 0; i < n; i++) ((uint8_t *)buf)[i] = b->data[(b->head + i) % b->cap];
  b->head = (uint32_t)((b->head + n) % b->cap);
  b->len -= (uint32_t)n;
  b->total_read += n;
  if (b->urg && b->total_read > b->urg_at) b->urg = false;
  if (b->page_len != NULL) pipe_consumed(b, n);
  /* pipe_read wakes writers only when the pipe was full (no page free);
   * af_unix on every read that leaves the sender writable (here: any room). */
  if (f->kind == K_SOCK || was_full) notify_buf_users(b, f->peer, -1);
  /* TCP cuts a read short only where the queue ended: what it left was in
   * the socket's backlog, processed as the read releases the socket, an
   * edge for its reader (the urgent mark aside: its edge came before). */
  if (cut && b->tcp) notify(fd);
  return (ssize_t)n;
}

/* The peer closed cleanly (CLOSE_WAIT): TCP still sends, and the closed
 * peer answers the segment with a reset, which in CLOSE_WAIT is EPIPE
 * (tcp_reset); the FIN came first (SOCK_DONE), so reads keep finding the
 * end of the stream. One host: the reset is back at once, as on loopback. */
static ssize_t close_wait_write(kfile *f, int fd, size_t len) {
  if (len == 0) return 0;
  tcp_reset_arrives(f, fd, true);
  return (ssize_t)(len < f->tx->cap ? len : f->tx->cap);
}

/* pipe_write with O_NONBLOCK, of the whole iovec as one write (writev's
 * atomicity is the total's): 0 for an empty write before looking for a
 * reader, EPIPE without one, else what pipe_room takes or EAGAIN. The
 * short-write fault cuts only a write longer than PIPE_BUF: a shorter one
 * is atomic. */
static ssize_t pipe_write(kfile *f, const struct iovec *iov, int iovcnt, bool faults) {
  kbuf *b = f->tx;
  size_t len = 0, merge;
  for (int i = 0; i < iovcnt; i++) len += iov[i].iov_len;
  if (len == 0) return 0;
  if (b->no_reader) return -EPIPE;
  if (faults && len > KERN_PIPE_BUF && fault(K.faults.short_io)) len = 1 + sim_rand_below(len - 1);
  size_t n = pipe_room(b, len, &merge), done = 0;
  if (n == 0) return -EAGAIN;
  for (int i = 0; done < n; i++) {
    size_t k = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;
    for (size_t j = 0; j < k; j++)
      b->data[(b->head + b->len + done + j) % b->cap] = ((const uint8_t *)iov[i].iov_base)[j];
    done += k;
  }
  b->len += (uint32_t)n;
  pipe_filled(b, merge, n);
  notify_buf_users(b, f->peer, -1);
  return (ssize_t)n;
}

static ssize_t do_write(kfile *f, int fd, const void *buf, size_t len, bool faults) {
  if (f->kind == K_EVENTFD) {
    if (len < 8) return -EINVAL;
    uint64_t add;
    memcpy(&add, buf, 8);
    if (add == UINT64_MAX) return -EINVAL;
    if (add > UINT64_MAX - 1 - f->efd_count) return -EAGAIN; /* the counter stops at 2^64 - 2 */
    f->efd_count += add;
    notify(fd);
    return 8;
  }
  if (f->kind == K_SOCKNEW) return f->sk_err != 0 ? -f->sk_err : f->connecting ? -EAGAIN : -EPIPE;
  if (f->kind == K_LISTEN) return f->local.family == AF_UNIX ? -ENOTCONN : -EPIPE; /* Linux's answers */
  if (f->kind == K_PIPE_W) return pipe_write(f, &(struct iovec){(void *)(uintptr_t)buf, len}, 1, faults);
  if (f->kind != K_SOCK) return -EBADF;
  kbuf *b = f->tx;
  /* af_unix checks the shutdown state first (EPIPE), and never consumes a
   * pending socket error on send. */
  if (f->kind == K_SOCK && f->sk_err != 0 && is_tcp(f)) {
    int err = f->sk_err; /* TCP's send takes a pending error (sk_stream_error), once */
    f->sk_err = 0;
    return -err;
  }
  if (b->no_reader && is_tcp(f) && !f->reset && !b->no_writer) return close_wait_write(f, fd, len);
  if (b->no_reader) return -EPIPE;
  if (f->kind == K_SOCK && b->no_writer) return -EPIPE; /* we shut our write side */
  if (len == 0) return 0;
  if (space(b) == 0) return -EAGAIN;
  size_t n = len < space(b) ? len : space(b);
  if (faults && n > 1 && fault(K.faults.short_io)) n = 1 + sim_rand_below(n - 1);
  for (size_t i = 0; i < n; i++) b->data[(b->head + b->len + i) % b->cap] = ((const uint8_t *)buf)[i];
  b->len += (uint32_t)n;
  /* send(MSG_OOB) of this write's last byte. Raw writes too (faults off):
   * those are the remote program's, the one that sends urgent data to the
   * library's reader (the first model, the library's writes only, never
   * reached a library reader in a generated world: m37 lived). */
  if (b->tcp && !b->urg && fault(K.faults.urgent)) {
    b->urg = true;
    b->urg_at = b->total_read + b->len - 1;
    kern__note(fd, "fault: urgent data (the peer's reads stop at the mark; EPOLLPRI)");
  }
  if (b->net) kern__net_wrote(fd, b, (uint32_t)n);
  notify_buf_users(b, f->peer, -1);
  return (ssize_t)n;
}

int kern_listen(void) {
  int fd = fd_alloc();
  if (fd < 0) return fd;
  K.files[fd] = (kfile){.kind = K_LISTEN, .peer = -1, .backlog_max = BACKLOG_MAX};
  return fd;
}

int kern_eventfd(void) {
  int fd = fd_alloc();
  if (fd < 0) return fd;
  K.files[fd] = (kfile){.kind = K_EVENTFD, .peer = -1};
  return fd;
}

/* The peer side of a connection: a client fd now, the server end queued on
 * the listener until accepted. */
int kern_connect(int listen_fd, uint32_t capacity) {
  kfile *l = file_of(listen_fd);
  if (l == NULL || l->kind != K_LISTEN) return -ECONNREFUSED;
  if (l->backlog_len >= l->backlog_max) return -EAGAIN; /* backlog full (a blocking client would wait) */
  int c = fd_alloc();
  if (c < 0) return c;
  kbuf *to_server = buf_new(capacity), *to_client = buf_new(capacity);
  to_server->users = 2;
  to_client->users = 2;
  K.files[c] = (kfile){.kind = K_SOCK, .rx = to_client, .tx = to_server, .peer = -1};
  kern__backlog_push(l, (struct kconn){to_server, to_client, c, {0}, l->local});
  notify(listen_fd);
  return c;
}

bool kern__backlog_push(kfile *l, struct kconn cn) {
  if (l->backlog_len >= l->backlog_max) return false;
  if (l->backlog_len == l->backlog_cap) {
    int cap = l->backlog_cap > 0 ? 2 * l->backlog_cap : 16;
    struct kconn *grown = realloc(l->backlog, (size_t)cap * sizeof(*grown));
    if (grown == NULL) sim_fail("out of memory");
    l->backlog = grown;
    l->backlog_cap = cap;
  }
  l->backlog[l->backlog_len++] = cn;
  return true;
}

/* Remove a queued connection; with reset_client its client sees the
 * connection reset (ECONNRESET, then EOF; writes EPIPE). */
static void backlog_drop(kfile *l, int index, bool reset_client) {
  struct kconn cn = l->backlog[index];
  memmove(&l->backlog[index], &l->backlog[index + 1], (size_t)(l->backlog_len - index - 1) * sizeof(cn));
  l->backlog_len--;
  cn.to_server->no_reader = true;
  cn.to_client->no_writer = true;
  kfile *client = file_of(cn.client_fd);
  if (reset_client && client != NULL && client->rx == cn.to_client) {
    client->sk_err = ECONNRESET;
    client->reset = true;
    notify(cn.client_fd);
  }
  buf_release(cn.to_server);
  buf_release(cn.to_client);
}

int kern_connect_state(int client_fd) {
  kfile *c = file_of(client_fd);
  if (c == NULL || c->kind != K_SOCK) return -1;
  if (c->accepted) return 1;                         /* accepted (maybe closed since) */
  if (c->sk_err != 0 || c->rx->no_writer) return -1; /* reset before accept */
  return 0;                                          /* still queued */
}

int kern_peer_of(int fd) {
  kfile *f = file_of(fd);
  return f == NULL ? -EBADF : f->peer;
}

ssize_t kern_read(int fd, void *buf, size_t len) {
  kfile *f = file_of(fd);
  return f == NULL ? -EBADF : do_read(f, fd, buf, len, false);
}

ssize_t kern_write(int fd, const void *buf, size_t len) {
  kfile *f = file_of(fd);
  return f == NULL ? -EBADF : do_write(f, fd, buf, len, false);
}

/* shutdown(SHUT_WR). Linux: a listener's write side shuts with nothing to
 * do (inet_shutdown, unix_shutdown: 0); a TCP socket never connected, or
 * reset (TCP_CLOSE), says ENOTCONN; unix sockets always 0. */
int kern_shutdown_write(int fd) {
  kfile *f = file_of(fd);
  if (f == NULL) return -EBADF;
  if (f->kind == K_LISTEN) return 0;
  if (f->kind == K_SOCKNEW) return is_tcp(f) ? -ENOTCONN : 0;
  if (f->kind == K_SOCK && kern__tcp_closed(f)) return -ENOTCONN;
  if (f->kind != K_SOCK) return -ENOTSOCK;
  f->tx->no_writer = true;
  notify(f->peer);
  notify(fd);
  return 0;
}

int kern_inject_reset(int fd) {
  kfile *f = file_of(fd);
  if (f == NULL) return -EBADF;
  if (f->kind != K_SOCK) return -ENOTSOCK;
  /* A reset kills both directions: reads return what is queued, then the
   * error once, then EOF; writes fail with EPIPE (a TCP socket's first
   * write takes the error instead, as Linux's send); the peer sees EOF and
   * EPIPE too. */
  if (is_tcp(f)) {
    tcp_reset_arrives(f, fd, at_eof(f->rx));
  } else {
    f->sk_err = ECONNRESET;
    f->reset = true;
  }
  f->rx->no_writer = true;
  f->tx->no_reader = true;
  notify(fd);
  if (f->peer >= 0) notify(f->peer);
  return 0;
}

int kern_close(int fd) {
  kfile *f = file_of(fd);
  if (f == NULL) return -EBADF;
  /* A listener's unaccepted connections are reset: their clients see it. */
  while (f->kind == K_LISTEN && f->backlog_len > 0) backlog_drop(f, 0, true);
  if (f->item != NULL) { /* the last reference: epoll forgets the file */
    dequeue(f->item);
    free(f->item);
    f->item = NULL;
  }
  int peer = f->peer;
  kfile *survivor = peer >= 0 ? file_of(peer) : NULL;
  bool fin_in = survivor != NULL && f->kind == K_SOCK && at_eof(survivor->rx); /* before this close's FIN */
  switch (f->kind) {
    case K_PIPE_R: f->rx->no_reader = true; break;
    case K_PIPE_W: f->tx->no_writer = true; break;
    case K_SOCK:
      f->tx->no_writer = true;
      f->rx->no_reader = true;
      break;
    default: break;
  }
  if (survivor != NULL) {
    /* Unread data in the closing end's receive queue resets the survivor:
     * TCP's reset by the survivor's state, unix_release_sock's ECONNRESET
     * once, then EOF. */
    if (f->kind == K_SOCK && f->rx->len > 0 && is_tcp(survivor))
      tcp_reset_arrives(survivor, peer, fin_in);
    else if (f->kind == K_SOCK && f->rx->len > 0)
      survivor->sk_err = ECONNRESET, survivor->reset = true;
    survivor->peer = -1;
  }
  free(f->backlog);
  kbuf *rx = f->rx, *tx = f->tx;
  for (int i = 0; i < KERN_EPOLLS_MAX; i++) {
    if (fd == K.eps[i].breakfd) K.eps[i].breakfd = -1;
    if (fd == K.eps[i].epfd) K.eps[i].epfd = -1;
  }
  K.files[fd] = (kfile){.kind = K_FREE, .peer = -1};
  if (rx != NULL) buf_release(rx);
  if (tx != NULL && tx != rx) buf_release(tx);
  if (peer >= 0) notify(peer);
  return 0;
}

int kern_inject_event(int fd, bool err_only) {
  kfile *f = file_of(fd);
  if (f == NULL) return -EBADF;
  if (f->item == NULL) return -ENOENT;
  if (err_only) f->item->err_only_once = true;
  enqueue(f->item);
  return 0;
}

bool kern_item_queued(int fd) {
  kfile *f = file_of(fd);
  return f != NULL && f->item != NULL && f->item->queued;
}
bool kern_item_registered(int fd) {
  kfile *f = file_of(fd);
  return f != NULL && f->item != NULL;
}
uint64_t kern_break_count(void) {
  kfile *f = file_of(K.eps[0].breakfd);
  return f == NULL ? 0 : f->efd_count;
}
sim_task *kern_epoll_waiter(int64_t *wake_at) {
  *wake_at = K.eps[0].waiter_wake_at;
  return K.eps[0].waiter;
}

/* ---- the backend table ------------------------------------------------------ */

static void syscall_point(const char *name, int fd) {
  sim_point();
  sim_record(SIM_OP_SYSCALL, name, (uint64_t)(int64_t)fd, 0);
}

/* A syscall that finds readiness for mode 'r' or 'w': logged for I15. */
static void io_point(const char *name, int fd, int mode) {
  syscall_point(name, fd);
  if (fd >= 0 && fd < KERN_FDS_MAX) K.last_io_step[fd][mode == 'r' ? 0 : 1] = sim->steps;
}

uint64_t kern_last_io_step(int fd, int mode) {
  return fd >= 0 && fd < KERN_FDS_MAX ? K.last_io_step[fd][mode == 'r' ? 0 : 1] : 0;
}

static int sb_create(void **state) {
  syscall_point("epoll_create1", -1);
  kep *e = NULL;
  for (int i = 0; i < KERN_EPOLLS_MAX && e == NULL; i++)
    if (!K.eps[i].used) e = &K.eps[i];
  if (e == NULL) return -EMFILE;
  int ep = fd_alloc();
  if (ep < 0) return ep;
  K.files[ep] = (kfile){.kind = K_EPOLL, .peer = -1};
  int efd = fd_alloc();
  if (efd < 0) {
    K.files[ep].kind = K_FREE;
    return efd;
  }
  K.files[efd] = (kfile){.kind = K_EVENTFD, .peer = -1};
  *e = (kep){.used = true, .epfd = ep, .breakfd = efd, .waiter_wake_at = -1};
  epitem *it = calloc(1, sizeof(*it));
  if (it == NULL) sim_fail("out of memory");
  it->fd = efd;
  it->events = EPOLLIN; /* level-triggered, tag 0 */
  it->ep = e;
  K.files[efd].item = it;
  *state = e;
  return 0;
}

static void sb_destroy(void *state) {
  kep *e = state;
  if (e->breakfd >= 0) kern_close(e->breakfd);
  if (e->epfd >= 0) kern_close(e->epfd);
  e->used = false;
}

static int sb_open(void *state, int fd, uint64_t tag) {
  syscall_point("epoll_ctl(ADD)", fd);
  kfile *f = file_of(fd);
  if (f == NULL) return -EBADF;
  if (f->kind == K_EPOLL) return -EINVAL;
  if (f->item != NULL) return -EEXIST;
  epitem *it = calloc(1, sizeof(*it));
  if (it == NULL) return -ENOMEM;
  it->fd = fd;
  it->events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
  it->tag = tag;
  it->ep = state;
  it->reg = ++K.next_reg;
  f->item = it;
  if (K.reg_hook != NULL) K.reg_hook(fd, tag, it->reg);
  notify(fd); /* ep_insert: queue at once if already ready */
  return 0;
}

static int sb_close(void *state, int fd) {
  (void)state;
  syscall_point("epoll_ctl(DEL)", fd);
  kfile *f = file_of(fd);
  if (f == NULL) return -EBADF;
  if (f->item == NULL) return -ENOENT;
  dequeue(f->item);
  free(f->item);
  f->item = NULL;
  return 0;
}

/* A registered stream for spurious / error-only reports. Listeners are
 * left out: Linux never reports EPOLLERR alone for them. */
static bool injectable(const kep *e, int fd) {
  return file_of(fd) != NULL && K.files[fd].item != NULL && K.files[fd].item->ep == e && fd != e->breakfd &&
         K.files[fd].kind != K_LISTEN;
}

static epitem *random_item(const kep *e) {
  int count = 0;
  for (int fd = 0; fd < K.fd_end; fd++)
    if (injectable(e, fd)) count++;
  if (count == 0) return NULL;
  int pick = (int)sim_rand_below((uint64_t)count);
  for (int fd = 0; fd < K.fd_end; fd++)
    if (injectable(e, fd) && pick-- == 0) return K.files[fd].item;
  return NULL;
}

static int sb_wait(void *state, np__event *events, int events_max, int64_t delay_ns) {
  kep *e = state;
  syscall_point("epoll_wait", (int)(delay_ns < 0 ? -1 : delay_ns / 1000));
  K.stats.epoll_waits++;
  if (fault(K.faults.epoll_eintr)) return -EINTR;
  if (fault(K.faults.spurious_ready)) {
    epitem *it = random_item(e);
    if (it != NULL) enqueue(it);
  }
  if (fault(K.faults.err_only)) {
    epitem *it = random_item(e);
    if (it != NULL) {
      it->err_only_once = true;
      enqueue(it);
    }
  }
  /* The kernel rounds the timeout up to whole milliseconds, as epoll_wait's
   * millisecond argument does; the backend contract says never down. */
  int64_t wake_at = -1;
  if (delay_ns > 0 && delay_ns <= KERN_FOREVER_NS) {
    /* Rounded up to whole milliseconds, as epoll_wait's argument. A delay
     * longer than any scenario deadline can be ahead (a "max" deadline)
     * blocks with no timeout; any other (a deadline a year away) wakes
     * when it is due, else a read with that deadline would never time out
     * (a false I8). One that ends past the simulator's clock makes the
     * clock stop the run as an input error when it is the next wake-up. */
    int64_t ms = delay_ns / 1000000 + (delay_ns % 1000000 != 0);
    int64_t span = ms * 1000000;
    wake_at = span > SIM_TIME_MAX_NS - sim->now ? SIM_TIME_MAX_NS + 1 : sim->now + span;
  }
  for (;;) {
    int max = events_max;
    if (max > 1 && fault(K.faults.maxevents_cut)) max = 1 + (int)sim_rand_below((uint64_t)max - 1);
    int n = 0;
    epitem *stop_at = e->ready_tail; /* one pass over the list as it is now */
    for (epitem *it = e->ready_head; it != NULL && n < max;) {
      epitem *next = it->next_ready;
      bool last = it == stop_at;
      uint32_t mask = kern_poll_mask(it->fd) & (it->events | EPOLLERR | EPOLLHUP);
      if (it->err_only_once) {
        mask = EPOLLERR;
        it->err_only_once = false;
      }
      dequeue(it);
      if (mask != 0) {
        events[n].events = mask;
        events[n].tag = it->tag;
        n++;
        if (!(it->events & EPOLLET)) enqueue(it); /* level-triggered: stays ready */
        if (K.hook != NULL) K.hook(K.hook_ctx, it->fd, it->tag, it->reg, mask);
      }
      if (last) break;
      it = next;
    }
    if (n > 0 || delay_ns == 0) {
      K.stats.events += (uint64_t)n;
      return n;
    }
    if (wake_at >= 0 && sim->now >= wake_at) return 0;
    e->waiter = sim->current;
    e->waiter_wake_at = wake_at;
    bool timed_out = sim_block("epoll_wait", wake_at);
    e->waiter = NULL;
    e->waiter_wake_at = -1;
    if (timed_out) return 0;
  }
}

static int sb_wake(void *state) {
  kep *e = state;
  syscall_point("write(break)", e->breakfd);
  uint64_t one = 1;
  ssize_t n = kern_write(e->breakfd, &one, 8);
  return n == 8 ? 0 : (int)n;
}

static int sb_drain(void *state) {
  kep *e = state;
  syscall_point("read(break)", e->breakfd);
  uint64_t v;
  ssize_t n = kern_read(e->breakfd, &v, 8);
  return n == 8 ? 0 : (int)n;
}

static ssize_t io_faults(int fd) {
  if (fault(K.faults.rw_eintr)) return -EINTR;
  if (fault(K.faults.spurious_eagain)) {
    /* A spurious EAGAIN is paired with a new edge: without one, an
     * edge-triggered reader would rightly wait for data already there. */
    kfile *f = file_of(fd);
    if (f != NULL && f->item != NULL) enqueue(f->item);
    return -EAGAIN;
  }
  return 0;
}

static ssize_t sb_read(void *state, int fd, void *buf, size_t len) {
  (void)state;
  io_point("read", fd, 'r');
  kfile *f = file_of(fd);
  if (f == NULL) return -EBADF;
  ssize_t err = io_faults(fd);
  if (err != 0) return err;
  return do_read(f, fd, buf, len, true);
}

static bool is_socket(const kfile *f) {
  return f->kind == K_SOCK || f->kind == K_SOCKNEW || f->kind == K_LISTEN;
}

void kern_set_pipe_sigpipe(bool on) { K.pipe_sigpipe = on; }

static bool sigpipe_kills(void) {
  struct sigaction sa;
  sigset_t blocked; /* a blocked SIGPIPE stays pending: write(2) just fails with EPIPE */
  if (sigprocmask(SIG_BLOCK, NULL, &blocked) == 0 && sigismember(&blocked, SIGPIPE) == 1) return false;
  return sigaction(SIGPIPE, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_DFL;
}

/* I16: write(2) or writev(2) failing with EPIPE on a socket raises SIGPIPE,
 * which kills a process that does not ignore it. The core must write
 * sockets with send (MSG_NOSIGNAL); a pipe's SIGPIPE is write(2)'s own, and
 * a user's program under the simulator is told when it would die of it. */
static ssize_t no_sigpipe(const kfile *f, int fd, const char *call, ssize_t n) {
  if (n == -EPIPE && is_socket(f))
    sim_fail(
        "I16: %s to socket fd %d failed with EPIPE: the kernel raises SIGPIPE and the process dies "
        "(sockets are written with send and MSG_NOSIGNAL)",
        call, fd);
  if (n == -EPIPE && f->kind == K_PIPE_W && K.pipe_sigpipe && sigpipe_kills())
    sim_fail(
        "SIGPIPE: a write to pipe fd %d, whose reader is gone, kills the process natively (SIGPIPE is "
        "not ignored): ignore it (signal(SIGPIPE, SIG_IGN)) or use np_socketpair",
        fd);
  return n;
}

/* readv/writev: one element at a time, stopping at the first short one, as
 * the kernel's stream semantics allow; a pipe's writev is one write. */
static ssize_t do_vec(int fd, const struct iovec *iov, int iovcnt, bool write) {
  kfile *f = file_of(fd);
  if (f == NULL) return -EBADF;
  ssize_t err = io_faults(fd);
  if (err != 0) return err;
  if (write && f->kind == K_PIPE_W) return pipe_write(f, iov, iovcnt, true);
  ssize_t total = 0;
  for (int i = 0; i < iovcnt; i++) {
    if (iov[i].iov_len == 0) continue;
    ssize_t n = write ? do_write(f, fd, iov[i].iov_base, iov[i].iov_len, true)
                      : do_read(f, fd, iov[i].iov_base, iov[i].iov_len, true);
    if (n < 0) return total > 0 ? total : n;
    total += n;
    if ((size_t)n < iov[i].iov_len) break;
  }
  return total;
}

/* write(2) / writev(2), or (nosignal) send / sendmsg with MSG_NOSIGNAL:
 * those give ENOTSOCK on anything but a socket, before any other check
 * (sockfd_lookup), and never raise SIGPIPE. iov NULL: the one buffer. */
static ssize_t sb_out(const char *call, int fd, const void *buf, size_t len, const struct iovec *iov,
                      int iovcnt, bool nosignal) {
  io_point(call, fd, 'w');
  kfile *f = file_of(fd);
  if (f == NULL) return -EBADF;
  if (nosignal && !is_socket(f)) return -ENOTSOCK;
  ssize_t n;
  if (iov != NULL)
    n = do_vec(fd, iov, iovcnt, true);
  else if ((n = io_faults(fd)) == 0)
    n = do_write(f, fd, buf, len, true);
  return nosignal ? n : no_sigpipe(f, fd, call, n);
}

static ssize_t sb_write(void *state, int fd, const void *buf, size_t len) {
  (void)state;
  return sb_out("write", fd, buf, len, NULL, 0, false);
}

static ssize_t sb_send(void *state, int fd, const void *buf, size_t len) {
  (void)state;
  return sb_out("send", fd, buf, len, NULL, 0, true);
}

static ssize_t sb_writev(void *state, int fd, const struct iovec *iov, int iovcnt) {
  (void)state;
  return sb_out("writev", fd, NULL, 0, iov, iovcnt, false);
}

static ssize_t sb_sendv(void *state, int fd, const struct iovec *iov, int iovcnt) {
  (void)state;
  return sb_out("sendmsg", fd, NULL, 0, iov, iovcnt, true);
}

static ssize_t sb_readv(void *state, int fd, const struct iovec *iov, int iovcnt) {
  (void)state;
  io_point("readv", fd, 'r');
  return do_vec(fd, iov, iovcnt, false);
}

static int sb_accept4(void *state, int fd, struct sockaddr *addr, socklen_t *addrlen, int flags) {
  (void)state, (void)flags;
  io_point("accept4", fd, 'r');
  kfile *l = file_of(fd);
  if (l == NULL) return -EBADF;
  if (!is_socket(l)) return -ENOTSOCK;
  if (l->kind != K_LISTEN) return -EINVAL;
  ssize_t err = io_faults(fd);
  if (err != 0) return (int)err;
  if (l->backlog_len == 0) return -EAGAIN;
  if (l->local.family != AF_UNIX && fault(K.faults.accept_abort)) { /* a TCP client gave up */
    kern__note(fd, "fault: the first queued connection aborted (its client sees a reset)");
    backlog_drop(l, 0, true);
    return -ECONNABORTED;
  }
  if (fault(K.faults.accept_emfile)) { /* the connection stays queued */
    kern__note(fd, "fault: accept4 EMFILE");
    return -EMFILE;
  }
  int s = fd_alloc();
  if (s < 0) return s; /* a full table: EMFILE, the connection stays queued */
  struct kconn cn = l->backlog[0];
  memmove(&l->backlog[0], &l->backlog[1], (size_t)(l->backlog_len - 1) * sizeof(cn));
  l->backlog_len--;
  if (l->tcp_listen) cn.to_server->tcp = cn.to_client->tcp = true;
  K.files[s] = (kfile){.kind = K_SOCK,
                       .rx = cn.to_server,
                       .tx = cn.to_client,
                       .peer = -1,
                       .local = cn.server,
                       .remote = cn.client};
  if (cn.to_server->net) kern_net_kick(); /* data sent before the accept may be due */
  kfile *client = file_of(cn.client_fd);
  if (client != NULL && client->rx == cn.to_client) {
    client->peer = s;
    client->accepted = true;
    K.files[s].peer = cn.client_fd;
  }
  if (addr != NULL && addrlen != NULL) { /* the peer's address, cut to the caller's room as accept4 does */
    struct sockaddr_storage ss;
    socklen_t full = kern__net_sockaddr(&cn.client, &ss);
    memcpy(addr, &ss, *addrlen < full ? *addrlen : full);
    *addrlen = full;
  }
  return s;
}

static int sb_connect(void *state, int fd, const struct sockaddr *addr, socklen_t addrlen) {
  (void)state, (void)addr, (void)addrlen;
  io_point("connect", fd, 'w');
  kfile *f = file_of(fd);
  if (f == NULL) return -EBADF;
  if (f->kind == K_SOCKNEW) return kern__net_connect(f, fd, addr, addrlen);
  return f->kind == K_SOCK ? -EISCONN : -ENOTSOCK;
}

static int sb_getsockopt_error(void *state, int fd, int *so_error) {
  (void)state;
  syscall_point("getsockopt", fd);
  kfile *f = file_of(fd);
  if (f == NULL) return -EBADF;
  if (f->kind != K_SOCK && f->kind != K_SOCKNEW) return -ENOTSOCK;
  *so_error = f->sk_err;
  f->sk_err = 0;
  return 0;
}

static int sb_getpeername(void *state, int fd) {
  (void)state;
  syscall_point("getpeername", fd);
  kfile *f = file_of(fd);
  if (f == NULL) return -EBADF;
  if (f->kind == K_SOCKNEW) return -ENOTCONN;
  if (f->kind != K_SOCK) return -ENOTSOCK;
  /* A connection of the simulated network has its peer from the handshake
   * on, accepted or not (the backlog holds the other end). */
  return f->peer >= 0 || f->remote.family != 0 ? 0 : -ENOTCONN;
}

static int sb_shutdown_write(void *state, int fd) {
  (void)state;
  syscall_point("shutdown", fd);
  return kern_shutdown_write(fd);
}

static int sb_setnonblock(void *state, int fd) {
  (void)state;
  syscall_point("fcntl", fd);
  return file_of(fd) == NULL ? -EBADF : 0;
}

static int sb_close_fd(void *state, int fd) {
  (void)state;
  syscall_point("close", fd);
  if (K.close_hook != NULL) K.close_hook(fd);
  return kern_close(fd);
}

const np__backend sim_backend = {
    .name = "sim",
    .create = sb_create,
    .destroy = sb_destroy,
    .open = sb_open,
    .close = sb_close,
    .wait = sb_wait,
    .wake = sb_wake,
    .drain = sb_drain,
    .read = sb_read,
    .readv = sb_readv,
    .write = sb_write,
    .writev = sb_writev,
    .send = sb_send,
    .sendv = sb_sendv,
    .accept4 = sb_accept4,
    .connect = sb_connect,
    .getsockopt_error = sb_getsockopt_error,
    .getpeername = sb_getpeername,
    .setnonblock = sb_setnonblock,
    .close_fd = sb_close_fd,
    .shutdown_write = sb_shutdown_write,
};

/* ---- helpers for knet.c ------------------------------------------------------ */

kfile *kern__file(int fd) { return file_of(fd); }
int kern__fd_alloc(void) { return fd_alloc(); }
kbuf *kern__buf_new(uint32_t cap) { return buf_new(cap); }
void kern__buf_release(kbuf *b) { buf_release(b); }
void kern__notify(int fd) { notify(fd); }
bool kern__fault(uint32_t rate) { return fault(rate); }

static kern_note_fn note_hook;

void kern_set_note_hook(kern_note_fn fn) { note_hook = fn; }

void kern__note(int fd, const char *what) {
  if (note_hook != NULL) note_hook(fd, what);
}
void kern__syscall_point(const char *name, int fd) { syscall_point(name, fd); }
