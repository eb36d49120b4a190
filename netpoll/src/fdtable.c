/*
 * fdtable.c - the descriptor numbers a group's handles own, across its
 * schedulers. Each scheduler has an epoll instance of its own, which
 * refuses a second registration of a number (EEXIST) only among its own
 * registrations; this table refuses it group-wide, so np_open of a number
 * that a handle on another scheduler owns is -EEXIST, as with one.
 *
 * It must never: refuse a number whose owner's file is gone (closed behind
 * the library, the number reused: the identities differ); keep a handle
 * after its destroy (it would be compared after it is freed).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

#define CHUNK 4096 /* numbers per lazily allocated chunk of the table */

/* The slot of fd, made if make; NULL if there is none (or no memory). */
static np_fd **slot(np__group *g, int fd, bool make) {
  size_t c = (size_t)fd / CHUNK;
  if (c >= g->fd_nchunks) {
    size_t n = c + 1 > 2 * g->fd_nchunks ? c + 1 : 2 * g->fd_nchunks;
    np_fd ***grown = make ? realloc(g->fd_chunks, n * sizeof(*grown)) : NULL;
    if (grown == NULL) return NULL;
    memset(grown + g->fd_nchunks, 0, (n - g->fd_nchunks) * sizeof(*grown));
    g->fd_chunks = grown;
    g->fd_nchunks = n;
  }
  if (g->fd_chunks[c] == NULL && make) g->fd_chunks[c] = calloc(CHUNK, sizeof(np_fd *));
  return g->fd_chunks[c] == NULL ? NULL : &g->fd_chunks[c][(size_t)fd % CHUNK];
}

static bool shared(const np__group *g) { return g != NULL && g->npollers > 1; }

int np__fd_claim(np_poller *p, np_fd *f) {
  np__group *g = p->group;
  if (!shared(g)) return 0; /* one epoll instance: its EEXIST says it */
  np__mutex_lock(&g->fd_lock);
  np_fd **s = slot(g, f->sysfd, true);
  int err = s == NULL ? -ENOMEM : 0;
  np_fd *owner = s != NULL ? *s : NULL;
  if (owner != NULL && (!owner->has_ident || !f->has_ident || owner->ident == f->ident)) err = -EEXIST;
  if (err == 0) *s = f;
  np__mutex_unlock(&g->fd_lock);
  return err;
}

void np__fd_unclaim(np_poller *p, np_fd *f) {
  np__group *g = p->group;
  if (!shared(g)) return;
  np__mutex_lock(&g->fd_lock);
  np_fd **s = slot(g, f->sysfd, false);
  if (s != NULL && *s == f) *s = NULL;
  np__mutex_unlock(&g->fd_lock);
}

void np__fdtable_fini(np__group *g) {
  for (size_t c = 0; c < g->fd_nchunks; c++) free(g->fd_chunks[c]);
  free(g->fd_chunks);
  g->fd_chunks = NULL;
  g->fd_nchunks = 0;
}
