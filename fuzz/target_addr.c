/*
 * target_addr.c - arbitrary bytes into the address code every np_dial,
 * np_listen and np_local_addr goes through (netpoll/src/addr.c): text
 * parsing, formatting and the sockaddr conversions. Pure functions, no
 * simulator. Checked:
 *   - an address that parses formats (NP_ADDRSTRLEN always fits), and the
 *     text parses back, with the same network, to the same address;
 *   - its sockaddr converts back to the same address;
 *   - a sockaddr of any bytes and any length converts or is refused, and
 *     what it converts to formats and round-trips as above;
 *   - formatting into a buffer of any size writes within it: the whole
 *     text, or -ENOSPC and "" (bytes past the buffer are a canary);
 * and UBSan/ASan see every access. Input: byte 0 picks the mode (even:
 * text, byte 1 the network, the rest the address; odd: bytes 1-2 the
 * sockaddr length, the rest its bytes), the last byte a buffer size.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "harness.h"
#include "netpoll.h"
#include "scenario.h" /* sc_fnv1a64 */

static const char *const networks[] = {"tcp", "tcp4", "tcp6", "unix"};

static void fail(const char *what, const np__addr *a) {
  fprintf(stderr, "np_fuzz_addr: %s (kind %d port %u path_len %zu abstract %d)\n", what, a->kind, a->port,
          a->path_len, a->abstract);
  abort();
}

/* The fields a sockaddr carries (not v6only, which is the network's). */
static bool same(const np__addr *a, const np__addr *b) {
  if (a->kind != b->kind) return false;
  if (a->kind == NP__ADDR_UNIX)
    return a->abstract == b->abstract && a->path_len == b->path_len &&
           memcmp(a->path, b->path, a->path_len) == 0;
  size_t n = a->kind == NP__ADDR_TCP4 ? 4 : 16;
  return a->port == b->port && memcmp(a->ip, b->ip, n) == 0;
}

/* Formatting into len bytes (of a larger buffer with a canary after). */
static void check_small_format(const np__addr *a, const char *full, size_t len) {
  char buf[NP_ADDRSTRLEN + 8];
  memset(buf, 0x5a, sizeof(buf));
  int err = np__addr_format(a, buf, len);
  for (size_t i = len; i < sizeof(buf); i++)
    if ((unsigned char)buf[i] != 0x5a) fail("format wrote past the buffer it was given", a);
  if (err == 0 && (strlen(full) >= len || strcmp(buf, full) != 0))
    fail("format fitted a text that does not", a);
  if (err == -ENOSPC && (strlen(full) < len || (len > 0 && buf[0] != '\0')))
    fail("format refused a text that fits, or left bytes behind", a);
  if (err != 0 && err != -ENOSPC) fail("format failed on a parsed address", a);
}

/* Everything that must hold of an address the code produced; network is
 * the one it was parsed with, or NULL (it came from a sockaddr). */
static uint64_t check_addr(const np__addr *a, const char *network, size_t small) {
  if (a->path_len > NP__ADDR_SUN_MAX || a->path[a->path_len] != '\0') fail("path not terminated", a);
  char text[NP_ADDRSTRLEN];
  if (np__addr_format(a, text, sizeof(text)) != 0) fail("format failed", a);
  check_small_format(a, text, small % (NP_ADDRSTRLEN + 1));
  struct sockaddr_storage ss;
  memset(&ss, 0xa5, sizeof(ss));
  socklen_t len = np__addr_to_sockaddr(a, &ss);
  np__addr back;
  if (len == 0 || len > sizeof(ss) || np__addr_from_sockaddr(&ss, len, &back) != 0 || !same(a, &back))
    fail("sockaddr round trip", a);
  if (network != NULL) {
    np__addr again;
    bool unnamed = a->kind == NP__ADDR_UNIX && a->path_len == 0;
    if (!unnamed && (np__addr_parse(network, text, &again) != 0 || !same(a, &again)))
      fail("formatted text does not parse back to the address", a);
  }
  return sc_fnv1a64(text, strlen(text));
}

static uint64_t text_mode(const uint8_t *data, size_t size) {
  const char *network = networks[size > 1 ? data[1] % 4 : 0];
  size_t n = size > 2 ? size - 2 : 0;
  char *address = malloc(n + 1); /* exact size: ASan sees a read past it */
  if (address == NULL) abort();
  if (n > 0) memcpy(address, data + 2, n);
  address[n] = '\0';
  np__addr a;
  int err = np__addr_parse(network, address, &a);
  uint64_t h = (uint64_t)(-err);
  if (err != 0 && err != -EINVAL) fail("parse returned neither 0 nor -EINVAL", &a);
  if (err == 0) h = check_addr(&a, network, data[size - 1]);
  free(address);
  return h;
}

static uint64_t sockaddr_mode(const uint8_t *data, size_t size) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t len = size > 2 ? (socklen_t)((data[1] | data[2] << 8) % (sizeof(ss) + 17)) : 0;
  size_t n = size > 3 ? size - 3 : 0;
  if (n > 0) memcpy(&ss, data + 3, n < sizeof(ss) ? n : sizeof(ss));
  np__addr a;
  int err = np__addr_from_sockaddr(&ss, len, &a);
  if (err != 0 && err != -EINVAL && err != -EAFNOSUPPORT) fail("from_sockaddr: unexpected error", &a);
  return err == 0 ? check_addr(&a, NULL, data[size - 1]) : (uint64_t)(-err);
}

int np_fuzz_addr(const uint8_t *data, size_t size, uint64_t *hash) {
  uint64_t h = 0;
  if (size > 0) h = data[0] % 2 == 0 ? text_mode(data, size) : sockaddr_mode(data, size);
  if (hash != NULL) *hash = h;
  return 0;
}
