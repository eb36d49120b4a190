/*
 * stack.c - task stacks: mmap'd, a guard page below each (MADV_GUARD_INSTALL
 * where the kernel has it, so a stack stays one VMA; mprotect otherwise),
 * pooled per poller for reuse; and the SIGSEGV handler, on an alternate
 * signal stack per scheduler thread, that names the task whose stack
 * overflowed instead of letting it corrupt its neighbour.
 *
 * It must never: hand out a stack without its guard; report an overflow
 * for a fault that is not in the running task's guard page (those go to
 * the previous handler, or the default action).
 */

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "task.h"

/* Under valgrind a stack switch looks like a huge alloca unless the stack
 * is registered (client requests: no code runs outside valgrind). */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define NP_VALGRIND_STACKS 1
#endif
#endif
#ifndef NP_VALGRIND_STACKS
#define VALGRIND_STACK_REGISTER(lo, hi) 0u
#define VALGRIND_STACK_DEREGISTER(id) ((void)(id))
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define STACK_SCALE 4
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define STACK_SCALE 4
#endif
#endif
#ifndef STACK_SCALE
#define STACK_SCALE 1
#endif

#define POOL_MAX 1024 /* stacks kept for reuse per poller */

size_t np__stack_default(void) { return (size_t)NP_STACK_DEFAULT * STACK_SCALE; }

static size_t page_size(void) {
  static size_t page;
  if (page == 0) page = (size_t)sysconf(_SC_PAGESIZE);
  return page;
}

static int guard(void *lo, size_t len) {
  if (madvise(lo, len, MADV_GUARD_INSTALL) == 0) return 0;
  return mprotect(lo, len, PROT_NONE) == 0 ? 0 : -errno;
}

#ifdef NP_TEST_HOOKS
long np__test_stacks_mapped;
#define COUNT_STACK(d) __atomic_add_fetch(&np__test_stacks_mapped, (d), __ATOMIC_RELAXED)
#else
#define COUNT_STACK(d) ((void)0)
#endif

static int stack_map(size_t size, np__stack *out) {
  size_t page = page_size();
  size_t len = (size + page - 1) & ~(page - 1);
  size_t map_len = len + page;
  void *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (map == MAP_FAILED) return -ENOMEM;
  int err = guard(map, page);
  if (err != 0) {
    munmap(map, map_len);
    return -ENOMEM;
  }
  out->map = map;
  out->map_len = map_len;
  out->lo = (char *)map + page;
  out->len = len;
  out->valgrind_id = VALGRIND_STACK_REGISTER(out->lo, (char *)out->lo + len);
  COUNT_STACK(1);
  return 0;
}

static void stack_unmap(const np__stack *st) {
  VALGRIND_STACK_DEREGISTER(st->valgrind_id);
  munmap(st->map, st->map_len);
  COUNT_STACK(-1);
}

int np__stack_get(np__group *g, np__stack *out) {
  np__mutex_lock(&g->pool_lock);
  if (g->pool_len > 0) {
    *out = g->pool[--g->pool_len];
    np__mutex_unlock(&g->pool_lock);
    return 0;
  }
  np__mutex_unlock(&g->pool_lock);
  return stack_map(g->stack_size, out);
}

void np__stack_put(np__group *g, const np__stack *st) {
  np__mutex_lock(&g->pool_lock);
  if (g->pool_len == g->pool_cap && g->pool_cap < POOL_MAX) {
    int cap = g->pool_cap == 0 ? 16 : g->pool_cap * 2;
    np__stack *pool = realloc(g->pool, (size_t)cap * sizeof(*pool));
    if (pool != NULL) {
      g->pool = pool;
      g->pool_cap = cap;
    }
  }
  if (g->pool_len < g->pool_cap) {
    g->pool[g->pool_len++] = *st;
    np__mutex_unlock(&g->pool_lock);
    return;
  }
  np__mutex_unlock(&g->pool_lock);
  stack_unmap(st);
}

void np__stack_pool_fini(np__group *g) {
  for (int i = 0; i < g->pool_len; i++) stack_unmap(&g->pool[i]);
  free(g->pool);
  g->pool = NULL;
  g->pool_len = g->pool_cap = 0;
}

/* ---- overflow report ------------------------------------------------------------ */

static struct sigaction previous;

static void say(const char *s) {
  ssize_t left = (ssize_t)strlen(s);
  while (left > 0) {
    ssize_t n = write(2, s, (size_t)left);
    if (n <= 0) return;
    s += n;
    left -= n;
  }
}

static void on_segv(int sig, siginfo_t *info, void *uctx) {
  np__task *t = np__tls_task();
  char *addr = info->si_addr;
  size_t page = page_size();
  if (t != NULL && addr >= (char *)t->stack.map && addr < (char *)t->stack.lo + page) {
    char msg[256];
    Dl_info dl;
    const char *name = dladdr((void *)t->fn, &dl) && dl.dli_sname ? dl.dli_sname : "?";
    snprintf(msg, sizeof(msg),
             "netpoll: stack overflow in task %llu '%s' (fn %s %p): its %zu-byte stack is too small "
             "(np_options.stack_size)\n",
             (unsigned long long)t->id, t->name, name, (void *)t->fn, t->stack.len);
    say(msg);
    signal(SIGABRT, SIG_DFL);
    abort();
  }
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction != NULL) {
      previous.sa_sigaction(sig, info, uctx);
      return;
    }
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN &&
             previous.sa_handler != NULL) {
    previous.sa_handler(sig);
    return;
  }
  signal(SIGSEGV, SIG_DFL); /* the faulting instruction re-runs: default action */
}

static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

/* At every poller creation: a program (or a test framework) may have
 * installed its own handler since; ours goes first and passes it on. */
void np__overflow_install(void) {
  pthread_mutex_lock(&install_lock);
  struct sigaction now;
  if (sigaction(SIGSEGV, NULL, &now) == 0 && !((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_segv)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous);
  }
  pthread_mutex_unlock(&install_lock);
}

int np__altstack_init(np__sched_os *s) {
  size_t len = 64 * 1024;
  void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return -ENOMEM;
  s->altstack.ss_sp = mem;
  s->altstack.ss_size = len;
  s->altstack.ss_flags = 0;
  if (sigaltstack(&s->altstack, NULL) != 0) {
    munmap(mem, len);
    s->altstack.ss_sp = NULL;
    return -errno;
  }
  return 0;
}

void np__altstack_fini(np__sched_os *s) {
  if (s->altstack.ss_sp == NULL) return;
  stack_t off = {.ss_flags = SS_DISABLE};
  sigaltstack(&off, NULL);
  munmap(s->altstack.ss_sp, s->altstack.ss_size);
  s->altstack.ss_sp = NULL;
}
