/* test_addr.c - the address syntax (netpoll/src/addr.c) without sockets:
 * every accepted form parses and formats back to its canonical text, the
 * sockaddr made from it converts back to the same np__addr (lengths as the
 * kernel's), what the kernel may report (unnamed, full-length paths, NULs
 * in abstract names, other families) converts or is refused, every
 * malformed input is -EINVAL with *out zeroed, and formatting never
 * writes past the buffer (-ENOSPC, ""). */
#include <arpa/inet.h>
#include <stdio.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "addr.h"
#include "helpers.h"

typedef struct good_case {
  const char *network, *address;
  int kind;
  const char *text; /* canonical form */
} good_case;

static const good_case good[] = {
    {"tcp", "127.0.0.1:7000", NP__ADDR_TCP4, "127.0.0.1:7000"},
    {"tcp4", "1.2.3.4:65535", NP__ADDR_TCP4, "1.2.3.4:65535"},
    {"tcp", "1.2.3.4:0", NP__ADDR_TCP4, "1.2.3.4:0"},
    {"tcp", "0.0.0.0:00080", NP__ADDR_TCP4, "0.0.0.0:80"},
    {"tcp", ":80", NP__ADDR_TCP4, "0.0.0.0:80"},
    {"tcp4", ":1", NP__ADDR_TCP4, "0.0.0.0:1"},
    {"tcp6", ":80", NP__ADDR_TCP6, "[::]:80"},
    {"tcp", "localhost:1", NP__ADDR_TCP4, "127.0.0.1:1"},
    {"tcp4", "localhost:2", NP__ADDR_TCP4, "127.0.0.1:2"},
    {"tcp6", "localhost:3", NP__ADDR_TCP6, "[::1]:3"},
    {"tcp", "[::1]:7000", NP__ADDR_TCP6, "[::1]:7000"},
    {"tcp6", "[::]:0", NP__ADDR_TCP6, "[::]:0"},
    {"tcp", "[2001:DB8:0:0::1]:443", NP__ADDR_TCP6, "[2001:db8::1]:443"},
    {"tcp", "[::ffff:1.2.3.4]:5", NP__ADDR_TCP6, "[::ffff:1.2.3.4]:5"},
    {"unix", "/tmp/x.sock", NP__ADDR_UNIX, "/tmp/x.sock"},
    {"unix", "rel", NP__ADDR_UNIX, "rel"},
    {"unix", "@name", NP__ADDR_UNIX, "@name"},
    {"unix", "@/with/slash", NP__ADDR_UNIX, "@/with/slash"},
};

static const char *const bad[][2] = {
    {NULL, "1.2.3.4:1"},
    {"tcp", NULL},
    {"udp", "1.2.3.4:1"},
    {"TCP", "1.2.3.4:1"},
    {"", "1.2.3.4:1"},
    {"tcp", ""},
    {"unix", ""},
    {"unix", "@"},
    {"tcp4", "[::1]:1"},
    {"tcp6", "1.2.3.4:1"},
    {"tcp", "1.2.3.4"},
    {"tcp", "1.2.3.4:"},
    {"tcp", "1.2.3.4:65536"},
    {"tcp", "1.2.3.4:x"},
    {"tcp", "1.2.3.4:80x"},
    {"tcp", "1.2.3.4: 80"},
    {"tcp", "1.2.3.4:+80"},
    {"tcp", "1.2.3.4:-1"},
    {"tcp", "1.2.3.4:000080"},
    {"tcp", ":"},
    {"tcp", "::1:80"},
    {"tcp", "[::1]"},
    {"tcp", "[::1]:"},
    {"tcp", "[::1]80"},
    {"tcp", "[::1"},
    {"tcp", "[]:80"},
    {"tcp", "[1.2.3.4]:80"},
    {"tcp", "[fe80::1%lo]:80"},
    {"tcp", "localhost"},
    {"tcp", "[localhost]:1"},
    {"tcp", "LOCALHOST:1"},
    {"tcp", "example.com:80"},
    {"tcp", "1.2.3:80"},
    {"tcp", "01.2.3.4:80"},
    {"tcp", "1.2.3.256:80"},
    {"tcp", " 1.2.3.4:80"},
    {"tcp", "1.2.3.4:80:80"},
    {"tcp", "[::1]:80:1"},
};

static void test_parse_format_round_trip(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    const good_case *c = &good[i];
    np__addr a, back;
    assert_int_equal(np__addr_parse(c->network, c->address, &a), 0);
    assert_int_equal(a.kind, c->kind);
    char text[NP_ADDRSTRLEN];
    assert_int_equal(np__addr_format(&a, text, sizeof(text)), 0);
    assert_string_equal(text, c->text);
    /* The canonical text parses to the same address. */
    assert_int_equal(np__addr_parse(c->network, text, &back), 0);
    assert_memory_equal(&back, &a, sizeof(a));
    /* sockaddr and back: the same address (v6only is not in a sockaddr). */
    struct sockaddr_storage ss;
    socklen_t sl = np__addr_to_sockaddr(&a, &ss);
    assert_int_equal(np__addr_from_sockaddr(&ss, sl, &back), 0);
    back.v6only = a.v6only;
    assert_memory_equal(&back, &a, sizeof(a));
  }
}

static void test_parse_rejects(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    np__addr a, zero;
    memset(&a, 0x5a, sizeof(a));
    memset(&zero, 0, sizeof(zero));
    int err = np__addr_parse(bad[i][0], bad[i][1], &a);
    if (err != -EINVAL) fail_msg("(%s, %s): %d, not -EINVAL", bad[i][0], bad[i][1], err);
    assert_memory_equal(&a, &zero, sizeof(a));
  }
  assert_int_equal(np__addr_parse("tcp", "1.2.3.4:1", NULL), -EINVAL);
}

/* The host is copied into an INET6_ADDRSTRLEN (46) buffer with its NUL: the
 * longest text address (45 characters) parses, 46 and more are -EINVAL and
 * must not be copied (ASan sees a write one past the buffer otherwise). */
static void test_host_length_bounds(void **state) {
  (void)state;
  const char *longest = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
  assert_int_equal(strlen(longest), INET6_ADDRSTRLEN - 1);
  char text[2048];
  np__addr a;
  snprintf(text, sizeof(text), "[%s]:80", longest);
  assert_int_equal(np__addr_parse("tcp", text, &a), 0);
  const size_t lens[] = {INET6_ADDRSTRLEN, INET6_ADDRSTRLEN + 1, 100, 2000};
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    char host[2001];
    memset(host, '1', lens[i]);
    host[lens[i]] = '\0';
    snprintf(text, sizeof(text), "[%s]:80", host);
    assert_int_equal(np__addr_parse("tcp", text, &a), -EINVAL);
    snprintf(text, sizeof(text), "%s:80", host);
    assert_int_equal(np__addr_parse("tcp4", text, &a), -EINVAL);
    assert_int_equal(np__addr_parse("tcp", text, &a), -EINVAL);
  }
}

static void test_unix_lengths(void **state) {
  (void)state;
  const size_t base = offsetof(struct sockaddr_un, sun_path);
  char path[NP__ADDR_SUN_MAX + 2];
  np__addr a;
  struct sockaddr_storage ss;
  /* A path of 107 bytes fits with its NUL; 108 does not. */
  memset(path, 'p', sizeof(path));
  path[NP__ADDR_PATH_MAX] = '\0';
  assert_int_equal(np__addr_parse("unix", path, &a), 0);
  assert_int_equal(np__addr_to_sockaddr(&a, &ss), base + NP__ADDR_PATH_MAX + 1);
  assert_int_equal(((struct sockaddr_un *)&ss)->sun_path[NP__ADDR_PATH_MAX], '\0');
  path[NP__ADDR_PATH_MAX] = 'p';
  path[NP__ADDR_SUN_MAX] = '\0';
  assert_int_equal(np__addr_parse("unix", path, &a), -EINVAL);
  /* An abstract name of 107 bytes: leading NUL, no trailing one. */
  path[0] = '@';
  assert_int_equal(np__addr_parse("unix", path, &a), 0);
  assert_true(a.abstract);
  assert_int_equal(a.path_len, NP__ADDR_PATH_MAX);
  assert_int_equal(np__addr_to_sockaddr(&a, &ss), base + NP__ADDR_SUN_MAX);
  assert_int_equal(((struct sockaddr_un *)&ss)->sun_path[0], '\0');
  path[NP__ADDR_SUN_MAX] = 'p';
  path[NP__ADDR_SUN_MAX + 1] = '\0';
  assert_int_equal(np__addr_parse("unix", path, &a), -EINVAL);
  /* Short forms: "/a" has its NUL, "@a" has none. */
  assert_int_equal(np__addr_parse("unix", "/a", &a), 0);
  assert_int_equal(np__addr_to_sockaddr(&a, &ss), base + 3);
  assert_int_equal(np__addr_parse("unix", "@a", &a), 0);
  assert_int_equal(np__addr_to_sockaddr(&a, &ss), base + 2);
  assert_int_equal(np__addr_parse("tcp", "1.2.3.4:5", &a), 0);
  assert_int_equal(np__addr_to_sockaddr(&a, &ss), sizeof(struct sockaddr_in));
  assert_int_equal(np__addr_parse("tcp", "[::1]:5", &a), 0);
  assert_int_equal(np__addr_to_sockaddr(&a, &ss), sizeof(struct sockaddr_in6));
}

/* What getsockname / getpeername may report. */
static void test_from_kernel(void **state) {
  (void)state;
  const size_t base = offsetof(struct sockaddr_un, sun_path);
  struct sockaddr_storage ss;
  struct sockaddr_un *un = (struct sockaddr_un *)&ss;
  np__addr a;
  char text[NP_ADDRSTRLEN];
  memset(&ss, 0, sizeof(ss));
  un->sun_family = AF_UNIX;
  /* Unnamed: the family only. */
  assert_int_equal(np__addr_from_sockaddr(&ss, sizeof(sa_family_t), &a), 0);
  assert_int_equal(np__addr_format(&a, text, sizeof(text)), 0);
  assert_string_equal(text, "");
  /* A path filling sun_path without a NUL (bound by another program). */
  memset(un->sun_path, 'q', sizeof(un->sun_path));
  assert_int_equal(np__addr_from_sockaddr(&ss, (socklen_t)(base + sizeof(un->sun_path)), &a), 0);
  assert_int_equal(a.path_len, NP__ADDR_SUN_MAX);
  assert_int_equal(np__addr_format(&a, text, sizeof(text)), 0);
  assert_int_equal(strlen(text), NP__ADDR_SUN_MAX);
  struct sockaddr_storage ss2;
  assert_int_equal(np__addr_to_sockaddr(&a, &ss2), base + NP__ADDR_SUN_MAX);
  assert_memory_equal(&ss2, &ss, base + NP__ADDR_SUN_MAX);
  /* A caller's length past sun_path (up to the whole storage) with bytes
   * after it: the path stops at sun_path's end, not the length's. */
  memset(&ss, 'A', sizeof(ss));
  un->sun_family = AF_UNIX;
  assert_int_equal(np__addr_from_sockaddr(&ss, sizeof(ss), &a), 0);
  assert_int_equal(a.path_len, NP__ADDR_SUN_MAX);
  assert_int_equal(np__addr_format(&a, text, sizeof(text)), 0);
  assert_int_equal(strlen(text), NP__ADDR_SUN_MAX);
  /* A path whose length includes the NUL and padding after it. */
  memset(un->sun_path, 0, sizeof(un->sun_path));
  memcpy(un->sun_path, "/run/s", 6);
  assert_int_equal(np__addr_from_sockaddr(&ss, (socklen_t)(base + 20), &a), 0);
  assert_int_equal(np__addr_format(&a, text, sizeof(text)), 0);
  assert_string_equal(text, "/run/s");
  /* An abstract name with a NUL inside: read up to it (Go's convention). */
  memcpy(un->sun_path, "\0ab\0cd", 6);
  assert_int_equal(np__addr_from_sockaddr(&ss, (socklen_t)(base + 6), &a), 0);
  assert_true(a.abstract);
  assert_int_equal(np__addr_format(&a, text, sizeof(text)), 0);
  assert_string_equal(text, "@ab");
  /* Refused: too short for the family, another family. */
  assert_int_equal(np__addr_from_sockaddr(&ss, 1, &a), -EINVAL);
  ss.ss_family = AF_INET;
  assert_int_equal(np__addr_from_sockaddr(&ss, sizeof(struct sockaddr_in) - 1, &a), -EINVAL);
  ss.ss_family = AF_INET6;
  assert_int_equal(np__addr_from_sockaddr(&ss, sizeof(struct sockaddr_in6) - 1, &a), -EINVAL);
  ss.ss_family = AF_NETLINK;
  assert_int_equal(np__addr_from_sockaddr(&ss, sizeof(ss), &a), -EAFNOSUPPORT);
  /* An IPv4 address as the kernel reports it. */
  struct sockaddr_in *in = (struct sockaddr_in *)&ss;
  memset(&ss, 0, sizeof(ss));
  in->sin_family = AF_INET;
  in->sin_port = htons(43012);
  in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(np__addr_from_sockaddr(&ss, sizeof(*in), &a), 0);
  assert_int_equal(np__addr_format(&a, text, sizeof(text)), 0);
  assert_string_equal(text, "127.0.0.1:43012");
}

static void test_format_bounds(void **state) {
  (void)state;
  np__addr a;
  char buf[NP_ADDRSTRLEN];
  assert_int_equal(np__addr_parse("tcp", "127.0.0.1:7000", &a), 0);
  memset(buf, 'z', sizeof(buf));
  assert_int_equal(np__addr_format(&a, buf, 14), -ENOSPC); /* 14 chars need 15 bytes */
  assert_string_equal(buf, "");
  assert_int_equal(buf[14], 'z');
  assert_int_equal(np__addr_format(&a, buf, 15), 0);
  assert_string_equal(buf, "127.0.0.1:7000");
  assert_int_equal(np__addr_format(&a, buf, 0), -ENOSPC);
  assert_int_equal(np__addr_format(&a, NULL, 10), -EINVAL);
  assert_int_equal(np__addr_format(NULL, buf, sizeof(buf)), -EINVAL);
  memset(&a, 0, sizeof(a));
  assert_int_equal(np__addr_format(&a, buf, sizeof(buf)), -EINVAL); /* no kind */
  /* The longest texts fit NP_ADDRSTRLEN. */
  assert_int_equal(np__addr_parse("tcp", "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535", &a), 0);
  assert_int_equal(np__addr_format(&a, buf, sizeof(buf)), 0);
  a = (np__addr){.kind = NP__ADDR_UNIX, .abstract = true, .path_len = NP__ADDR_PATH_MAX};
  memset(a.path, 'n', NP__ADDR_PATH_MAX);
  assert_int_equal(np__addr_format(&a, buf, sizeof(buf)), 0);
  assert_int_equal(strlen(buf), NP__ADDR_PATH_MAX + 1);
  a = (np__addr){.kind = NP__ADDR_UNIX, .path_len = NP__ADDR_SUN_MAX};
  memset(a.path, 'p', NP__ADDR_SUN_MAX);
  assert_int_equal(np__addr_format(&a, buf, sizeof(buf)), 0);
  assert_int_equal(strlen(buf), NP__ADDR_SUN_MAX);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_format_round_trip),
      cmocka_unit_test(test_parse_rejects),
      cmocka_unit_test(test_host_length_bounds),
      cmocka_unit_test(test_unix_lengths),
      cmocka_unit_test(test_from_kernel),
      cmocka_unit_test(test_format_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
