/*
 * client.c - the load client every benchmark server is measured with.
 *
 *   np_bench_client -a ADDR:PORT [-m pingpong|stream] [-c CONNS] [-s SIZE]
 *                   [-d SECONDS] [-w WARMUP_SECONDS] [-W WINDOW] [-p SERVER_PID]
 *                   [-P PERF_OUT -E PERF_EVENTS]
 *
 * One thread, one level/edge-triggered epoll loop, CONNS TCP connections to
 * the server. pingpong: every connection sends SIZE bytes (default 64), waits
 * for all of them to come back, and sends again; the figure is round trips per
 * second and the latency percentiles of one round trip. stream: every
 * connection keeps up to WINDOW bytes (default 64 KiB) in flight in SIZE-byte
 * writes (default 16 KiB) and reads the echo back; the figure is MB/s (10^6
 * bytes) echoed. A warm-up precedes the measured window; the counters are
 * reset between them.
 *
 * With -p the server's CPU time (utime+stime of the whole process) and the
 * context switches of all its threads (/proc/PID/task/N/status, voluntary and
 * involuntary) are sampled at both ends of the window and reported per
 * second and per round trip. With -P, `perf stat -x, -o PERF_OUT -e EVENTS
 * -p PID` is attached to the server during the warm-up with its counters
 * disabled and counts exactly the measured window (perf --control);
 * perf_ops repeats how many round trips (or bytes) that window saw.
 *
 * Output: one line of key=value pairs on stdout. Exit status 1 when the
 * server cannot be reached or closes a connection, 2 on bad usage. The
 * client must never be the bottleneck that decides a comparison: it does no
 * allocation in the loop and reads the clock once per event.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_CONNS 20000
#define EVENTS_MAX 512
#define READ_BUF_SIZE (256 * 1024)

/* Latency histogram: log-linear, 32 sub-buckets per power of two of ns
 * (relative error under 3.2%), up to 2^40 ns (18 minutes). */
#define HIST_SUB_BITS 5
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_POW 41
#define HIST_BUCKETS (HIST_POW * HIST_SUB)

typedef struct hist {
  uint64_t counts[HIST_BUCKETS];
  uint64_t total;
  int64_t max_ns;
} hist;

static int hist_index(int64_t ns) {
  if (ns < HIST_SUB) return ns < 0 ? 0 : (int)ns;
  int msb = 63 - __builtin_clzll((unsigned long long)ns);
  int shift = msb - HIST_SUB_BITS;
  int idx = (shift + 1) * HIST_SUB + (int)((ns >> shift) & (HIST_SUB - 1));
  return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* The upper bound (ns) of bucket idx. */
static int64_t hist_value(int idx) {
  if (idx < HIST_SUB) return idx;
  int shift = idx / HIST_SUB - 1;
  int64_t sub = idx % HIST_SUB;
  return ((int64_t)(HIST_SUB + sub + 1) << shift) - 1;
}

static void hist_add(hist *h, int64_t ns) {
  h->counts[hist_index(ns)]++;
  h->total++;
  if (ns > h->max_ns) h->max_ns = ns;
}

static int64_t hist_quantile(const hist *h, double q) {
  if (h->total == 0) return 0;
  uint64_t want = (uint64_t)(q * (double)h->total);
  if (want >= h->total) want = h->total - 1;
  uint64_t seen = 0;
  for (int i = 0; i < HIST_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen > want) {
      int64_t v = hist_value(i);
      return v < h->max_ns ? v : h->max_ns;
    }
  }
  return h->max_ns;
}

typedef struct conn {
  int fd;
  uint64_t sent;    /* bytes written (stream), bytes of the current message (pingpong) */
  uint64_t recvd;   /* bytes read back */
  int64_t start_ns; /* pingpong: when the current message was sent */
  uint64_t ops;     /* round trips completed in the window */
} conn;

typedef struct options {
  struct sockaddr_in addr;
  bool stream;
  int conns;
  size_t size;
  size_t window;
  double seconds;
  double warmup;
  int server_pid;
  const char *perf_out;
  const char *perf_events;
} options;

typedef struct proc_sample {
  uint64_t cpu_ticks; /* utime + stime of the whole process */
  uint64_t csw_vol;   /* voluntary context switches, summed over live threads */
  uint64_t csw_invol; /* involuntary */
  long threads;       /* live threads */
} proc_sample;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "client: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void usage(void) {
  fprintf(stderr,
          "usage: np_bench_client -a ADDR:PORT [-m pingpong|stream] [-c CONNS] [-s SIZE]\n"
          "       [-d SECONDS] [-w WARMUP] [-W WINDOW] [-p SERVER_PID] [-P PERF_OUT -E EVENTS]\n");
  exit(2);
}

static void parse_addr(const char *arg, struct sockaddr_in *sa) {
  char host[64];
  const char *colon = strrchr(arg, ':');
  if (colon == NULL || (size_t)(colon - arg) >= sizeof(host)) usage();
  memcpy(host, arg, (size_t)(colon - arg));
  host[colon - arg] = '\0';
  memset(sa, 0, sizeof(*sa));
  sa->sin_family = AF_INET;
  long port = strtol(colon + 1, NULL, 10);
  if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &sa->sin_addr) != 1) usage();
  sa->sin_port = htons((uint16_t)port);
}

static void parse_options(int argc, char **argv, options *o) {
  memset(o, 0, sizeof(*o));
  o->conns = 1;
  o->seconds = 3;
  o->warmup = 1;
  o->window = 64 * 1024;
  bool have_addr = false;
  int c;
  while ((c = getopt(argc, argv, "a:m:c:s:d:w:W:p:P:E:")) != -1) {
    switch (c) {
      case 'a': parse_addr(optarg, &o->addr), have_addr = true; break;
      case 'm':
        if (strcmp(optarg, "stream") == 0)
          o->stream = true;
        else if (strcmp(optarg, "pingpong") != 0)
          usage();
        break;
      case 'c': o->conns = atoi(optarg); break;
      case 's': o->size = (size_t)atol(optarg); break;
      case 'd': o->seconds = atof(optarg); break;
      case 'w': o->warmup = atof(optarg); break;
      case 'W': o->window = (size_t)atol(optarg); break;
      case 'p': o->server_pid = atoi(optarg); break;
      case 'P': o->perf_out = optarg; break;
      case 'E': o->perf_events = optarg; break;
      default: usage();
    }
  }
  if (o->size == 0) o->size = o->stream ? 16384 : 64;
  if (!have_addr || o->conns < 1 || o->conns > MAX_CONNS || o->seconds <= 0 || o->warmup < 0 ||
      o->size > READ_BUF_SIZE || o->window < o->size || ((o->perf_out == NULL) != (o->perf_events == NULL)) ||
      (o->perf_out != NULL && o->server_pid <= 0))
    usage();
}

/* ---- server process sampling ------------------------------------------------ */

static uint64_t status_field(const char *path, const char *key) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0; /* the thread exited meanwhile */
  char line[256];
  size_t klen = strlen(key);
  uint64_t v = 0;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
      v = strtoull(line + klen + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

static void proc_sample_take(int pid, proc_sample *s) {
  memset(s, 0, sizeof(*s));
  char path[128];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (f != NULL) {
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    /* Fields after the ")" of comm: 3 state ... 14 utime 15 stime ... 20 threads. */
    char *p = strrchr(buf, ')');
    if (p != NULL) {
      p += 2;
      unsigned long long utime = 0, stime = 0;
      long threads = 0;
      if (sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %ld", &utime,
                 &stime, &threads) == 3) {
        s->cpu_ticks = utime + stime;
        s->threads = threads;
      }
    }
  }
  snprintf(path, sizeof(path), "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (d == NULL) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char spath[300];
    snprintf(spath, sizeof(spath), "/proc/%d/task/%s/status", pid, e->d_name);
    s->csw_vol += status_field(spath, "voluntary_ctxt_switches");
    s->csw_invol += status_field(spath, "nonvoluntary_ctxt_switches");
  }
  closedir(d);
}

/* perf stat attached to the server with its counters disabled; perf_control
 * enables or disables them and waits for perf's acknowledgement, so the counts
 * cover exactly the measured window. */
typedef struct perf_proc {
  pid_t pid;
  int ctl; /* we write "enable\n" / "disable\n" */
  int ack; /* perf answers "ack\n" */
} perf_proc;

static void perf_start(const options *o, perf_proc *pp) {
  int ctl[2], ack[2];
  pp->pid = -1;
  if (pipe(ctl) != 0 || pipe(ack) != 0) die("pipe");
  char pid[32], control[64];
  snprintf(pid, sizeof(pid), "%d", o->server_pid);
  snprintf(control, sizeof(control), "fd:%d,%d", ctl[0], ack[1]);
  char *argv[] = {
      "perf",      "stat",  "-x", ",", "-o", (char *)o->perf_out, "-e", (char *)o->perf_events, "-D", "-1",
      "--control", control, "-p", pid, NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0); /* "Events enabled" */
  posix_spawn_file_actions_addclose(&fa, ctl[1]);
  posix_spawn_file_actions_addclose(&fa, ack[0]);
  int err = posix_spawnp(&pp->pid, "perf", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(ctl[0]);
  close(ack[1]);
  pp->ctl = ctl[1];
  pp->ack = ack[0];
  if (err != 0) {
    fprintf(stderr, "client: cannot start perf: %s\n", strerror(err));
    exit(1);
  }
}

static void perf_control(perf_proc *pp, const char *cmd) {
  if (write(pp->ctl, cmd, strlen(cmd)) != (ssize_t)strlen(cmd)) die("perf control");
  char buf[16];
  ssize_t n = read(pp->ack, buf, sizeof(buf)); /* blocks until perf has attached and obeyed */
  if (n <= 0) {
    fprintf(stderr, "client: perf did not acknowledge '%.*s' (try the perf command by hand)\n",
            (int)strlen(cmd) - 1, cmd);
    exit(1);
  }
}

static void perf_stop(perf_proc *pp) {
  kill(pp->pid, SIGINT);
  int status;
  while (waitpid(pp->pid, &status, 0) < 0 && errno == EINTR) {
  }
  close(pp->ctl);
  close(pp->ack);
}

/* ---- the load ------------------------------------------------------------------ */

static char out_buf[READ_BUF_SIZE];
static char in_buf[READ_BUF_SIZE];

static void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) die("fcntl");
}

static void conn_open(const options *o, conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) die("socket (raise ulimit -n?)");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  /* Blocking connect: on loopback the handshake completes within the call. */
  if (connect(c->fd, (const struct sockaddr *)&o->addr, sizeof(o->addr)) != 0) die("connect");
  set_nonblock(c->fd);
}

static void conn_fail(const conn *c, const char *what, ssize_t n) {
  fprintf(stderr, "client: connection fd %d: %s: %s\n", c->fd, what,
          n == 0 ? "closed by server" : strerror(errno));
  exit(1);
}

/* Sends one message; 64 B into an empty socket buffer is never short. */
static void ping_send(conn *c, size_t size, int64_t now) {
  ssize_t n = write(c->fd, out_buf, size);
  if (n != (ssize_t)size) conn_fail(c, "write", n);
  c->sent = size;
  c->recvd = 0;
  c->start_ns = now;
}

static void ping_event(conn *c, size_t size, hist *h, uint64_t *ops) {
  ssize_t n = read(c->fd, in_buf, sizeof(in_buf));
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) conn_fail(c, "read", n);
  c->recvd += (uint64_t)n;
  if (c->recvd < c->sent) return;
  if (c->recvd > c->sent) {
    fprintf(stderr, "client: more bytes echoed than sent\n");
    exit(1);
  }
  int64_t now = now_ns();
  hist_add(h, now - c->start_ns);
  c->ops++;
  (*ops)++;
  ping_send(c, size, now);
}

/* Edge-triggered: read everything there is, then refill the window. */
static void stream_event(conn *c, const options *o, uint64_t *bytes) {
  for (;;) {
    ssize_t n = read(c->fd, in_buf, sizeof(in_buf));
    if (n > 0) {
      c->recvd += (uint64_t)n;
      c->ops += (uint64_t)n;
      *bytes += (uint64_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    conn_fail(c, "read", n);
  }
  while (c->sent - c->recvd + o->size <= o->window) {
    ssize_t n = write(c->fd, out_buf, o->size);
    if (n > 0) {
      c->sent += (uint64_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    conn_fail(c, "write", n);
  }
}

int main(int argc, char **argv) {
  options o;
  parse_options(argc, argv, &o);
  signal(SIGPIPE, SIG_IGN);
  for (size_t i = 0; i < sizeof(out_buf); i++) out_buf[i] = (char)('a' + i % 26);

  conn *conns = calloc((size_t)o.conns, sizeof(*conns));
  hist *h = calloc(1, sizeof(*h));
  if (conns == NULL || h == NULL) die("calloc");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  for (int i = 0; i < o.conns; i++) {
    conn_open(&o, &conns[i]);
    struct epoll_event ev = {.events = o.stream ? EPOLLIN | EPOLLOUT | EPOLLET : EPOLLIN,
                             .data.ptr = &conns[i]};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) != 0) die("epoll_ctl");
  }

  int64_t t0 = now_ns();
  perf_proc perf = {.pid = -1};
  for (int i = 0; i < o.conns; i++) {
    if (o.stream)
      stream_event(&conns[i], &o, &(uint64_t){0});
    else
      ping_send(&conns[i], o.size, t0);
  }

  int64_t warm_end = t0 + (int64_t)(o.warmup * 1e9);
  int64_t end = 0, window_start = 0;
  uint64_t ops = 0;
  bool measuring = false;
  proc_sample s0 = {0}, s1 = {0};
  struct rusage ru0, ru1;
  struct epoll_event events[EVENTS_MAX];
  for (;;) {
    int64_t now = now_ns();
    if (!measuring && now >= warm_end) {
      if (o.perf_out != NULL && perf.pid < 0) perf_start(&o, &perf);
      if (perf.pid > 0) perf_control(&perf, "enable\n");
      if (o.server_pid > 0) proc_sample_take(o.server_pid, &s0);
      getrusage(RUSAGE_SELF, &ru0);
      ops = 0;
      memset(h, 0, sizeof(*h));
      for (int i = 0; i < o.conns; i++) conns[i].ops = 0;
      measuring = true;
      window_start = now_ns();
      end = window_start + (int64_t)(o.seconds * 1e9);
    } else if (measuring && now >= end) {
      break;
    }
    int timeout_ms = (int)(((measuring ? end : warm_end) - now) / 1000000) + 1;
    int n = epoll_wait(ep, events, EVENTS_MAX, timeout_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      conn *c = events[i].data.ptr;
      if (o.stream)
        stream_event(c, &o, &ops);
      else
        ping_event(c, o.size, h, &ops);
    }
    /* perf -p counts the threads that exist when it attaches: wait until the
     * server has answered on every connection (a thread-per-connection server
     * has started all its threads by then). */
    if (!measuring && o.perf_out != NULL && perf.pid < 0) {
      int answered = 0;
      for (int i = 0; i < o.conns; i++) answered += conns[i].ops > 0;
      if (answered == o.conns) perf_start(&o, &perf);
    }
  }
  int64_t window_ns = now_ns() - window_start;
  getrusage(RUSAGE_SELF, &ru1);
  if (o.server_pid > 0) proc_sample_take(o.server_pid, &s1);
  if (perf.pid > 0) {
    perf_control(&perf, "disable\n");
    perf_stop(&perf);
  }
  for (int i = 0; i < o.conns; i++) close(conns[i].fd);

  double secs = (double)window_ns / 1e9;
  int active = 0;
  uint64_t min_ops = UINT64_MAX;
  for (int i = 0; i < o.conns; i++) {
    if (conns[i].ops > 0) active++;
    if (conns[i].ops < min_ops) min_ops = conns[i].ops;
  }
  double rate = (double)ops / secs;
  printf("mode=%s conns=%d size=%zu seconds=%.3f ops=%llu", o.stream ? "stream" : "pingpong", o.conns, o.size,
         secs, (unsigned long long)ops);
  if (o.stream) {
    printf(" mb_per_s=%.1f", rate / 1e6);
  } else {
    printf(" rt_per_s=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f", rate,
           (double)hist_quantile(h, 0.50) / 1e3, (double)hist_quantile(h, 0.90) / 1e3,
           (double)hist_quantile(h, 0.99) / 1e3, (double)hist_quantile(h, 0.999) / 1e3,
           (double)h->max_ns / 1e3);
  }
  printf(" active=%d min_conn_ops=%llu", active, (unsigned long long)min_ops);
  double cli_cpu =
      (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
      (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) /
          1e6;
  printf(" cli_cpu=%.2f", cli_cpu / secs);
  if (o.server_pid > 0) {
    double ticks = (double)sysconf(_SC_CLK_TCK);
    double srv_cpu = (double)(s1.cpu_ticks - s0.cpu_ticks) / ticks / secs; /* cores busy */
    double vol = (double)(s1.csw_vol - s0.csw_vol), invol = (double)(s1.csw_invol - s0.csw_invol);
    printf(" srv_cpu=%.2f srv_threads=%ld srv_vcsw_per_s=%.0f srv_ivcsw_per_s=%.0f", srv_cpu, s1.threads,
           vol / secs, invol / secs);
    if (!o.stream && ops > 0)
      printf(" srv_cpu_us_per_op=%.2f srv_csw_per_op=%.2f", srv_cpu * secs * 1e6 / (double)ops,
             (vol + invol) / (double)ops);
  }
  if (perf.pid > 0) printf(" perf_ops=%llu", (unsigned long long)ops);
  printf("\n");
  free(conns);
  free(h);
  close(ep);
  return 0;
}
