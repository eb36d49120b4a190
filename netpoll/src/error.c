/*
 * error.c - np_strerror and the single exit for broken invariants. Shared by
 * the native and the simulated build.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_internal.h"

/* The simulator (and tests) may install a hook to catch a panic, print their
 * own context (seed, trace) and exit in their own way; it must not return. */
void (*np__panic_hook)(const char *file, int line, const char *msg);

_Noreturn void np__panic(const char *file, int line, const char *msg) {
  if (np__panic_hook != NULL) np__panic_hook(file, line, msg);
  fprintf(stderr, "netpoll: fatal: %s (%s:%d)\n", msg, file, line);
  fflush(stderr);
  abort();
}

const char *np_strerror(int err) {
  switch (err) {
    case 0: return "success";
    case NP_ECLOSING: return "use of closed netpoll descriptor";
    case NP_ETIMEOUT: return "i/o deadline exceeded";
    case NP_ENOTPOLLABLE: return "descriptor not pollable";
    case NP_EPOLLER: return "poller failed (its epoll or break descriptor was closed behind the library)";
    case -EOVERFLOW: return "too many concurrent operations on one descriptor";
    default: break;
  }
  if (err < 0 && err > -4096) {
    /* strerror is not thread-safe in general; glibc's strerrordesc_np is,
     * and returns NULL for unknown values. */
    const char *s = strerrordesc_np(-err);
    if (s != NULL) return s;
  }
  return "unknown error";
}
