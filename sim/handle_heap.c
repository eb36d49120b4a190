/*
 * handle_heap.c - np_fd memory of a simulated run: one mapping per handle,
 * poisoned and PROT_NONE once freed, so that a use after free (the core
 * touching a handle after np_free or np_poller_destroy let it go) faults at
 * once. The fault handler turns that into "use after free" through
 * sim_fail: a failing run with a seed, in every build.
 *
 * It must never reuse a freed handle's address within a run of up to
 * HEAP_MAX handles (the fault would be hidden), and never let a fault that is not a freed handle pass
 * silently (it goes to the previous handler).
 */
#include "handle_heap.h"

#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "np_internal.h"
#include "sched.h"

#define HEAP_MAX 2048
#define POISON 0xDB

typedef struct block {
  void *addr;
  size_t size;
  bool freed;
  uint64_t free_step; /* schedule step of the free */
  const char *what;   /* for the report: "np_fd", "scheduler" */
} block;

static block blocks[HEAP_MAX];
static int block_count;
static struct sigaction previous_segv, previous_bus;
static bool handler_installed;

void (*sim_on_handle_free)(struct np_fd *f);

static const block *freed_block_of(const void *addr) {
  for (int i = 0; i < block_count; i++) {
    const block *b = &blocks[i];
    if (b->freed && (const char *)addr >= (const char *)b->addr &&
        (const char *)addr < (const char *)b->addr + b->size)
      return b;
  }
  return NULL;
}

static void chain(const struct sigaction *prev, int sig, siginfo_t *info, void *uc) {
  if ((prev->sa_flags & SA_SIGINFO) && prev->sa_sigaction != NULL) {
    prev->sa_sigaction(sig, info, uc);
    return;
  }
  if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
    prev->sa_handler(sig);
    return;
  }
  signal(sig, SIG_DFL); /* the fault repeats on return and kills the process */
}

/* A synchronous fault on the simulator's only thread: sim_fail unwinds the
 * run as it does from any task (SA_NODEFER: the signal stays unblocked). */
static void on_fault(int sig, siginfo_t *info, void *uc) {
  const block *b = sim != NULL ? freed_block_of(info->si_addr) : NULL;
  if (b != NULL && !sim->failed)
    sim_fail("I13: use after free: %s touched a freed %s at offset %td, freed at step %" PRIu64
             " (used after %s returned, or freed while a call on it had not returned)",
             sim->current != NULL ? sim->current->name : "?", b->what,
             (const char *)info->si_addr - (const char *)b->addr, b->free_step,
             strcmp(b->what, "np_fd") == 0 ? "np_free" : "its destroy");
  chain(sig == SIGBUS ? &previous_bus : &previous_segv, sig, info, uc);
}

static void install_handler(void) {
  if (handler_installed) return;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &previous_segv);
  sigaction(SIGBUS, &sa, &previous_bus);
  handler_installed = true;
}

/* Harnesses that never reset (a fuzz target making handles outside
 * world_run) fill the table: then the oldest freed handles are unmapped
 * (their addresses may come back), live ones kept. */
static void compact(void) {
  int kept = 0;
  for (int i = 0; i < block_count; i++) {
    if (blocks[i].freed)
      munmap(blocks[i].addr, blocks[i].size);
    else
      blocks[kept++] = blocks[i];
  }
  block_count = kept;
}

void *sim_heap_alloc(size_t bytes, const char *what) {
  install_handler();
  if (block_count >= HEAP_MAX) compact();
  if (block_count >= HEAP_MAX) sim_fail("handle heap: more than %d live blocks", HEAP_MAX);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t size = (bytes + page - 1) / page * page;
  void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (addr == MAP_FAILED) return NULL;
  blocks[block_count++] = (block){.addr = addr, .size = size, .what = what};
  return addr; /* anonymous mappings are zeroed, as calloc */
}

void sim_heap_free(void *p) {
  for (int i = 0; i < block_count; i++) {
    block *b = &blocks[i];
    if (b->addr != p) continue;
    if (b->freed)
      sim_fail("I13: double free of a %s (first freed at step %" PRIu64 ")", b->what, b->free_step);
    if (sim_on_handle_free != NULL && strcmp(b->what, "np_fd") == 0) sim_on_handle_free(p);
    b->free_step = sim != NULL ? sim->steps : 0;
    b->freed = true;
    memset(b->addr, POISON, b->size);
    if (mprotect(b->addr, b->size, PROT_NONE) != 0) sim_fail("handle heap: mprotect failed");
    return;
  }
  sim_fail("sim_heap_free of memory the handle heap never gave out");
}

struct np_fd *np__fd_alloc(void) {
  return sim_heap_alloc(sizeof(struct np_fd), "np_fd");
}

void np__fd_release(struct np_fd *f) { sim_heap_free(f); }

void sim_heap_reset(void) {
  for (int i = 0; i < block_count; i++) munmap(blocks[i].addr, blocks[i].size);
  block_count = 0;
}

int sim_heap_live(void) {
  int n = 0;
  for (int i = 0; i < block_count; i++) n += !blocks[i].freed;
  return n;
}

int sim_heap_freed(void) { return block_count - sim_heap_live(); }
