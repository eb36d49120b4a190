/*
 * epoll_echo.c - the reference: a hand-written single-thread epoll echo
 * server, the practical limit for an echo server on one core.
 *
 *   np_bench_epoll_echo [[ADDR:]PORT]
 *
 * Prints "listening on ADDR:PORT" like np_echo. Level-triggered: one read(2)
 * per readable event into a 16 KiB buffer (the size np_echo uses), written
 * straight back; what does not fit in the socket buffer is kept and the
 * connection waits for EPOLLOUT instead of reading (back-pressure). It must
 * never block: every descriptor is non-blocking and only epoll_wait sleeps.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 16384
#define EVENTS_MAX 512

typedef struct conn {
  int fd;
  size_t off, len; /* unsent bytes in pending[off, len) */
  char pending[BUF_SIZE];
} conn;

static void die(const char *what) {
  fprintf(stderr, "epoll_echo: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int listen_on(const char *arg, struct sockaddr_in *sa) {
  char host[64] = "127.0.0.1";
  const char *port = arg;
  const char *colon = arg != NULL ? strrchr(arg, ':') : NULL;
  if (colon != NULL && (size_t)(colon - arg) < sizeof(host)) {
    memcpy(host, arg, (size_t)(colon - arg));
    host[colon - arg] = '\0';
    port = colon + 1;
  }
  memset(sa, 0, sizeof(*sa));
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)(port != NULL ? atoi(port) : 0));
  if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
    fprintf(stderr, "usage: np_bench_epoll_echo [[ADDR:]PORT]\n");
    exit(2);
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  socklen_t len = sizeof(*sa);
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(fd, (struct sockaddr *)sa, sizeof(*sa)) != 0 || listen(fd, SOMAXCONN) != 0 ||
      getsockname(fd, (struct sockaddr *)sa, &len) != 0)
    die("listen");
  return fd;
}

static void conn_close(int ep, conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c);
}

static void set_interest(int ep, conn *c, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) die("epoll_ctl MOD");
}

/* Writes pending[off, len); returns 0 when all is sent, 1 when the socket is
 * full, -1 on error. */
static int flush(conn *c) {
  while (c->off < c->len) {
    ssize_t n = write(c->fd, c->pending + c->off, c->len - c->off);
    if (n > 0) {
      c->off += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      return 1;
    } else {
      return -1;
    }
  }
  c->off = c->len = 0;
  return 0;
}

static void on_readable(int ep, conn *c) {
  ssize_t n = read(c->fd, c->pending, sizeof(c->pending));
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    conn_close(ep, c);
    return;
  }
  c->off = 0;
  c->len = (size_t)n;
  int r = flush(c);
  if (r < 0)
    conn_close(ep, c);
  else if (r > 0)
    set_interest(ep, c, EPOLLOUT); /* stop reading until the echo is out */
}

static void on_writable(int ep, conn *c) {
  int r = flush(c);
  if (r < 0)
    conn_close(ep, c);
  else if (r == 0)
    set_interest(ep, c, EPOLLIN);
}

static void on_accept(int ep, int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN) fprintf(stderr, "epoll_echo: accept: %s\n", strerror(errno));
      return;
    }
    conn *c = malloc(sizeof(*c));
    if (c == NULL) {
      close(fd);
      continue;
    }
    c->fd = fd;
    c->off = c->len = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl ADD");
  }
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  struct sockaddr_in sa;
  int lfd = listen_on(argc > 1 ? argv[1] : NULL, &sa);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0) die("epoll_ctl listener");
  char host[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sa.sin_addr, host, sizeof(host));
  printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
  fflush(stdout);

  struct epoll_event events[EVENTS_MAX];
  for (;;) {
    int n = epoll_wait(ep, events, EVENTS_MAX, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      conn *c = events[i].data.ptr;
      if (c == NULL) {
        on_accept(ep, lfd);
      } else if (events[i].events & EPOLLOUT) {
        on_writable(ep, c);
      } else {
        on_readable(ep, c); /* EPOLLIN, EPOLLHUP, EPOLLERR: read tells which */
      }
    }
  }
}
