/*
 * addr.c - parsing and formatting of network addresses (addr.h): text to
 * np__addr to sockaddr and back. Pure functions of their arguments, shared
 * by the real and the simulated library.
 *
 * It must never: make a system call, touch a global, accept an address the
 * syntax in addr.h does not describe, or write past a caller's buffer.
 */
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "np_internal.h"

enum { NET_TCP, NET_TCP4, NET_TCP6, NET_UNIX };

static int parse_network(const char *network) {
  if (strcmp(network, "tcp") == 0) return NET_TCP;
  if (strcmp(network, "tcp4") == 0) return NET_TCP4;
  if (strcmp(network, "tcp6") == 0) return NET_TCP6;
  if (strcmp(network, "unix") == 0) return NET_UNIX;
  return -1;
}

static int parse_unix(const char *address, np__addr *out) {
  out->kind = NP__ADDR_UNIX;
  out->abstract = address[0] == '@';
  const char *name = out->abstract ? address + 1 : address;
  size_t len = strlen(name);
  if (len == 0 || len > NP__ADDR_PATH_MAX) return -EINVAL;
  memcpy(out->path, name, len + 1);
  out->path_len = len;
  return 0;
}

/* 1 to 5 decimal digits up to the end of the string, at most 65535. */
static int parse_port(const char *s, uint16_t *port) {
  uint32_t v = 0;
  size_t n = 0;
  for (; s[n] != '\0'; n++) {
    if (s[n] < '0' || s[n] > '9' || n == 5) return -EINVAL;
    v = v * 10 + (uint32_t)(s[n] - '0');
  }
  if (n == 0 || v > 65535) return -EINVAL;
  *port = (uint16_t)v;
  return 0;
}

/* Splits "host:port" / "[host]:port": host (not NUL-terminated) and the
 * port text. An unbracketed host has no ':' (IPv6 needs the brackets). */
static int split_host_port(const char *address, const char **host, size_t *host_len, bool *bracketed,
                           const char **port) {
  const char *colon;
  *bracketed = address[0] == '[';
  if (*bracketed) {
    const char *close = strchr(address, ']');
    if (close == NULL || close[1] != ':') return -EINVAL;
    *host = address + 1;
    *host_len = (size_t)(close - address - 1);
    colon = close + 1;
  } else {
    colon = strchr(address, ':');
    if (colon == NULL || strchr(colon + 1, ':') != NULL) return -EINVAL;
    *host = address;
    *host_len = (size_t)(colon - address);
  }
  *port = colon + 1;
  return 0;
}

static void set_loopback_or_any(int net, bool loopback, np__addr *out) {
  memset(out->ip, 0, sizeof(out->ip));
  if (net == NET_TCP6) {
    out->kind = NP__ADDR_TCP6;
    if (loopback) out->ip[15] = 1;
  } else {
    out->kind = NP__ADDR_TCP4;
    if (loopback) out->ip[0] = 127, out->ip[3] = 1;
  }
}

static int parse_host(int net, const char *host, size_t host_len, bool bracketed, np__addr *out) {
  char text[INET6_ADDRSTRLEN];
  if (host_len >= sizeof(text)) return -EINVAL;
  memcpy(text, host, host_len);
  text[host_len] = '\0';
  if (bracketed) {
    if (net == NET_TCP4 || inet_pton(AF_INET6, text, out->ip) != 1) return -EINVAL;
    out->kind = NP__ADDR_TCP6;
    return 0;
  }
  if (host_len == 0 || strcmp(text, "localhost") == 0) {
    set_loopback_or_any(net, host_len != 0, out);
    return 0;
  }
  if (net == NET_TCP6 || inet_pton(AF_INET, text, out->ip) != 1) return -EINVAL;
  out->kind = NP__ADDR_TCP4;
  return 0;
}

static int parse(const char *network, const char *address, np__addr *out) {
  if (network == NULL || address == NULL) return -EINVAL;
  int net = parse_network(network);
  if (net < 0 || address[0] == '\0') return -EINVAL;
  if (net == NET_UNIX) return parse_unix(address, out);
  const char *host, *port;
  size_t host_len;
  bool bracketed;
  int err = split_host_port(address, &host, &host_len, &bracketed, &port);
  if (err == 0) err = parse_port(port, &out->port);
  if (err == 0) err = parse_host(net, host, host_len, bracketed, out);
  out->v6only = net == NET_TCP6;
  return err;
}

int np__addr_parse(const char *network, const char *address, np__addr *out) {
  if (out == NULL) return -EINVAL;
  memset(out, 0, sizeof(*out));
  int err = parse(network, address, out);
  if (err != 0) memset(out, 0, sizeof(*out));
  NP_ASSERT(err != 0 || out->kind != 0);
  return err;
}

socklen_t np__addr_to_sockaddr(const np__addr *a, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  switch (a->kind) {
    case NP__ADDR_TCP4: {
      struct sockaddr_in *in = (struct sockaddr_in *)ss;
      in->sin_family = AF_INET;
      in->sin_port = htons(a->port);
      memcpy(&in->sin_addr, a->ip, 4);
      return sizeof(*in);
    }
    case NP__ADDR_TCP6: {
      struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(a->port);
      memcpy(&in6->sin6_addr, a->ip, 16);
      return sizeof(*in6);
    }
    default: {
      NP_ASSERT(a->kind == NP__ADDR_UNIX);
      NP_ASSERT(a->path_len <= (a->abstract ? NP__ADDR_PATH_MAX : NP__ADDR_SUN_MAX));
      struct sockaddr_un *un = (struct sockaddr_un *)ss;
      un->sun_family = AF_UNIX;
      size_t base = offsetof(struct sockaddr_un, sun_path);
      if (a->path_len == 0 && !a->abstract) return sizeof(sa_family_t); /* unnamed */
      if (a->abstract) { /* a leading NUL, the name, no trailing NUL */
        memcpy(un->sun_path + 1, a->path, a->path_len);
        return (socklen_t)(base + 1 + a->path_len);
      }
      memcpy(un->sun_path, a->path, a->path_len); /* the NUL is the memset's, unless it is full */
      return (socklen_t)(base + a->path_len + (a->path_len < NP__ADDR_SUN_MAX));
    }
  }
}

static void from_unix(const struct sockaddr_un *un, socklen_t len, np__addr *out) {
  out->kind = NP__ADDR_UNIX;
  size_t n = (size_t)len - offsetof(struct sockaddr_un, sun_path);
  if (n > sizeof(un->sun_path)) n = sizeof(un->sun_path);
  const char *p = un->sun_path;
  if (n > 0 && p[0] == '\0') { /* abstract: the name after the NUL, up to the next NUL */
    out->abstract = true;
    p++, n--;
  }
  size_t k = 0;
  while (k < n && p[k] != '\0') k++; /* n <= NP__ADDR_SUN_MAX, less one if abstract */
  memcpy(out->path, p, k);
  out->path[k] = '\0';
  out->path_len = k;
}

int np__addr_from_sockaddr(const struct sockaddr_storage *ss, socklen_t len, np__addr *out) {
  memset(out, 0, sizeof(*out));
  if (len < (socklen_t)sizeof(sa_family_t)) return -EINVAL;
  if (len > (socklen_t)sizeof(*ss)) len = sizeof(*ss);
  switch (ss->ss_family) {
    case AF_INET: {
      const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
      if (len < (socklen_t)sizeof(*in)) return -EINVAL;
      out->kind = NP__ADDR_TCP4;
      out->port = ntohs(in->sin_port);
      memcpy(out->ip, &in->sin_addr, 4);
      return 0;
    }
    case AF_INET6: {
      const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
      if (len < (socklen_t)sizeof(*in6)) return -EINVAL;
      out->kind = NP__ADDR_TCP6;
      out->port = ntohs(in6->sin6_port);
      memcpy(out->ip, &in6->sin6_addr, 16);
      return 0;
    }
    case AF_UNIX: from_unix((const struct sockaddr_un *)ss, len, out); return 0;
    default: return -EAFNOSUPPORT;
  }
}

/* snprintf's result checked: the whole text fits, or "" and -ENOSPC. */
static int fitted(int n, char *buf, size_t len) {
  if (n >= 0 && (size_t)n < len) return 0;
  buf[0] = '\0';
  return -ENOSPC;
}

int np__addr_format(const np__addr *a, char *buf, size_t len) {
  if (a == NULL || buf == NULL) return -EINVAL;
  if (len == 0) return -ENOSPC;
  char ip[INET6_ADDRSTRLEN];
  switch (a->kind) {
    case NP__ADDR_TCP4:
      if (inet_ntop(AF_INET, a->ip, ip, sizeof(ip)) == NULL) NP_PANIC("inet_ntop: ip too small");
      return fitted(snprintf(buf, len, "%s:%u", ip, (unsigned)a->port), buf, len);
    case NP__ADDR_TCP6:
      if (inet_ntop(AF_INET6, a->ip, ip, sizeof(ip)) == NULL) NP_PANIC("inet_ntop: ip too small");
      return fitted(snprintf(buf, len, "[%s]:%u", ip, (unsigned)a->port), buf, len);
    case NP__ADDR_UNIX:
      NP_ASSERT(a->path_len <= NP__ADDR_SUN_MAX);
      return fitted(snprintf(buf, len, "%s%.*s", a->abstract ? "@" : "", (int)a->path_len, a->path), buf,
                    len);
    default: buf[0] = '\0'; return -EINVAL;
  }
}
