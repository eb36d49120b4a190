/*
 * uv_echo.c - an echo server on libuv (one loop, one thread), written the
 * way a careful libuv user would: a 16 KiB read buffer per connection (the
 * size np_echo uses), uv_try_write first, and only what the socket does not
 * take goes through a uv_write request, with reading stopped until it is
 * out (back-pressure).
 *
 *   np_bench_uv_echo [[ADDR:]PORT]
 *
 * Prints "listening on ADDR:PORT" like np_echo.
 */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define BUF_SIZE 16384

typedef struct conn {
  uv_tcp_t handle; /* first: the handle pointer is the conn pointer */
  uv_write_t req;
  char buf[BUF_SIZE];
  char *pending; /* the unsent tail while req is in flight, else NULL */
} conn;

static void on_close(uv_handle_t *h) {
  conn *c = (conn *)h;
  free(c->pending);
  free(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *c = (conn *)h;
  *buf = uv_buf_init(c->buf, sizeof(c->buf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status) {
  conn *c = req->data;
  free(c->pending);
  c->pending = NULL;
  if (status != 0) {
    uv_close((uv_handle_t *)&c->handle, on_close);
    return;
  }
  uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = (conn *)s;
  if (nread == 0) return; /* EAGAIN */
  if (nread < 0) {
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
  int n = uv_try_write(s, &out, 1);
  if (n == nread) return;
  if (n < 0 && n != UV_EAGAIN) {
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  size_t done = n > 0 ? (size_t)n : 0;
  size_t rest = (size_t)nread - done;
  c->pending = malloc(rest);
  if (c->pending == NULL) {
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  memcpy(c->pending, buf->base + done, rest);
  out = uv_buf_init(c->pending, (unsigned)rest);
  c->req.data = c;
  uv_read_stop(s);
  if (uv_write(&c->req, s, &out, 1, on_write) != 0) uv_close((uv_handle_t *)s, on_close);
}

static void on_connection(uv_stream_t *server, int status) {
  if (status != 0) return;
  conn *c = calloc(1, sizeof(*c));
  if (c == NULL) return;
  uv_tcp_init(server->loop, &c->handle);
  if (uv_accept(server, (uv_stream_t *)&c->handle) != 0) {
    uv_close((uv_handle_t *)&c->handle, on_close);
    return;
  }
  uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  char host[64] = "127.0.0.1";
  const char *port = argc > 1 ? argv[1] : "0";
  const char *colon = strrchr(port, ':');
  if (colon != NULL && (size_t)(colon - port) < sizeof(host)) {
    memcpy(host, port, (size_t)(colon - port));
    host[colon - port] = '\0';
    port = colon + 1;
  }
  uv_loop_t *loop = uv_default_loop();
  uv_tcp_t server;
  struct sockaddr_in sa;
  int err = uv_ip4_addr(host, atoi(port), &sa);
  if (err == 0) err = uv_tcp_init(loop, &server);
  if (err == 0) err = uv_tcp_bind(&server, (const struct sockaddr *)&sa, 0);
  if (err == 0) err = uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection);
  int len = sizeof(sa);
  if (err == 0) err = uv_tcp_getsockname(&server, (struct sockaddr *)&sa, &len);
  if (err != 0) {
    fprintf(stderr, "uv_echo: cannot listen on %s:%s: %s\n", host, port, uv_strerror(err));
    return 1;
  }
  printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
