/*
 * addr.h - the text syntax of network addresses (netpoll.h, "network"):
 * parsing ("tcp", "[::1]:7000") into np__addr, np__addr to and from struct
 * sockaddr_storage, and formatting back to text. Compiled into the real and
 * the simulated library alike.
 *
 * Choices where Go's net package resolves names or listens dual-stack:
 *   ":port" is the unspecified address of the family: 0.0.0.0 for "tcp" and
 *           "tcp4", [::] for "tcp6" (Go listens on [::] for "tcp");
 *   "localhost:port" is 127.0.0.1 for "tcp" and "tcp4", [::1] for "tcp6";
 *   an IPv6 host must be bracketed, without a zone ("%eth0"); an IPv4 host
 *           is dotted decimal (inet_pton: four parts, no leading zeros);
 *   a port is 1 to 5 decimal digits, at most 65535;
 *   a unix path is 1 to 107 bytes (sun_path less its NUL); "@name" (name 1
 *           to 107 bytes) is the abstract namespace, whose address has no
 *           trailing NUL (its length counts the name only, as Go's).
 * Formatting reads an abstract name up to its first NUL (Go's convention),
 * shows an IPv4-mapped IPv6 address as inet_ntop does ("[::ffff:1.2.3.4]")
 * and leaves out an IPv6 scope id.
 *
 * It must never: make a system call, keep state, or block.
 */
#ifndef NP_ADDR_H
#define NP_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

enum { NP__ADDR_TCP4 = 1, NP__ADDR_TCP6 = 2, NP__ADDR_UNIX = 3 };

/* The longest unix path or abstract name parse accepts, in bytes (sun_path
 * less one: a path keeps its NUL). A path another program bound may fill
 * all of sun_path (NP__ADDR_SUN_MAX bytes, no NUL): from_sockaddr keeps it. */
#define NP__ADDR_SUN_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))
#define NP__ADDR_PATH_MAX (NP__ADDR_SUN_MAX - 1)

typedef struct np__addr {
  int kind;                        /* NP__ADDR_TCP4, NP__ADDR_TCP6 or NP__ADDR_UNIX */
  bool v6only;                     /* tcp6: the "tcp6" network asked for IPv6 only */
  uint16_t port;                   /* tcp: host byte order */
  uint8_t ip[16];                  /* tcp: network byte order; tcp4 uses ip[0..3] */
  bool abstract;                   /* unix: path is a name in the abstract namespace */
  size_t path_len;                 /* unix: bytes of path (0: unnamed); at most NP__ADDR_SUN_MAX */
  char path[NP__ADDR_SUN_MAX + 1]; /* unix: NUL-terminated, without the '@' */
} np__addr;

/* network "tcp", "tcp4", "tcp6" or "unix" and address as in netpoll.h.
 * Returns 0, or -EINVAL (NULL, unknown network, bad syntax, host or port;
 * *out is then zeroed). */
int np__addr_parse(const char *network, const char *address, np__addr *out);

/* The sockaddr for a; returns its length (never 0). */
socklen_t np__addr_to_sockaddr(const np__addr *a, struct sockaddr_storage *ss);

/* The np__addr of a sockaddr of length len (as getsockname returns it).
 * Returns 0, -EAFNOSUPPORT (not AF_INET, AF_INET6, AF_UNIX) or -EINVAL
 * (too short for its family). */
int np__addr_from_sockaddr(const struct sockaddr_storage *ss, socklen_t len, np__addr *out);

/* a as text into buf (len bytes with the NUL; NP_ADDRSTRLEN always fits).
 * Returns 0, or -ENOSPC (buf gets "" when len > 0) or -EINVAL (buf NULL, a
 * bad kind). */
int np__addr_format(const np__addr *a, char *buf, size_t len);

#endif
