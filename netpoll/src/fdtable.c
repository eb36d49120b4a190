/*
 * fdtable.c - the descriptor numbers a group's handles own, across its
 * schedulers. Each scheduler has an epoll instance of its own, which
 * refuses a second registration of a number (EEXIST) only among its own
 * registrations; this table refuses it group-wide, so np_open of a number
 * that a handle on another scheduler owns is -EEXIST, as with one.
 *
 * Core code (port seam only): np_rtsim runs it with handles on several
 * simulated schedulers against a model of which file each number names.
 *
 * It must never: refuse a number whose owner's file is gone (closed behind
 * the library, the number reused: the identities differ); drop the claim of
 * a handle other than the one unclaiming (a stale handle's destroy must
 * leave the new owner's claim alone); keep a handle after its destroy (it
 * would be compared after it is freed).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "np_internal.h"

#define CHUNK 4096 /* numbers per lazily allocated chunk of the table */

void np__fdtable_init(np__fdtable *t) {
  memset(t, 0, sizeof(*t));
  np__mutex_init(&t->lock);
}

void np__fdtable_fini(np__fdtable *t) {
  for (size_t c = 0; c < t->nchunks; c++) free(t->chunks[c]);
  free(t->chunks);
  t->chunks = NULL;
  t->nchunks = 0;
  np__mutex_destroy(&t->lock);
}

/* The slot of fd, made if make; NULL if there is none (or no memory). */
static np_fd **slot(np__fdtable *t, int fd, bool make) {
  size_t c = (size_t)fd / CHUNK;
  if (c >= t->nchunks) {
    size_t n = c + 1 > 2 * t->nchunks ? c + 1 : 2 * t->nchunks;
    np_fd ***grown = make ? realloc(t->chunks, n * sizeof(*grown)) : NULL;
    if (grown == NULL) return NULL;
    memset(grown + t->nchunks, 0, (n - t->nchunks) * sizeof(*grown));
    t->chunks = grown;
    t->nchunks = n;
  }
  if (t->chunks[c] == NULL && make) t->chunks[c] = calloc(CHUNK, sizeof(np_fd *));
  return t->chunks[c] == NULL ? NULL : &t->chunks[c][(size_t)fd % CHUNK];
}

int np__fd_claim(np_poller *p, np_fd *f) {
  np__fdtable *t = p->fdtable;
  if (t == NULL) return 0; /* one epoll instance: its EEXIST says it */
  np__mutex_lock(&t->lock);
  np_fd **s = slot(t, f->sysfd, true);
  int err = s == NULL ? -ENOMEM : 0;
  np_fd *owner = s != NULL ? *s : NULL;
  if (owner != NULL && (!owner->has_ident || !f->has_ident || owner->ident == f->ident)) err = -EEXIST;
  if (err == 0) *s = f;
  np__mutex_unlock(&t->lock);
  return err;
}

void np__fd_unclaim(np_poller *p, np_fd *f) {
  np__fdtable *t = p->fdtable;
  if (t == NULL) return;
  np__mutex_lock(&t->lock);
  np_fd **s = slot(t, f->sysfd, false);
  if (s != NULL && *s == f) *s = NULL;
  np__mutex_unlock(&t->lock);
}
