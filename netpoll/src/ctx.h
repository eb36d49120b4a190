/*
 * ctx.h - the one user-space context switch, shared by the native task
 * runtime (task.c) and the simulator (sim/sched.c): x86-64 System V, with
 * AddressSanitizer fiber annotations and ThreadSanitizer fiber calls, so
 * both sanitizers follow every switch.
 *
 * A context is a saved stack pointer plus what the sanitizers need to know
 * about its stack. It must never: return from a context's entry function
 * (an entry ends by switching away with done = true); switch to the
 * running context; be used on another architecture (compile error).
 */
#ifndef NP_CTX_H
#define NP_CTX_H

#include <stdbool.h>
#include <stddef.h>

typedef struct np__ctx {
  void *sp;         /* saved stack pointer while switched out */
  void *stack_lo;   /* lowest usable address of its stack (ASan) */
  size_t stack_len; /* usable bytes (ASan) */
  void *asan_fake;  /* ASan fake-stack handle while switched out */
  void *tsan_fiber; /* TSan fiber; NULL without TSan */
  bool own_fiber;   /* the TSan fiber was created here (destroy frees it) */
} np__ctx;

/* A new context on [stack_lo, stack_lo + len) whose first switch-in calls
 * entry(), which must begin with np__ctx_started() and never return. */
void np__ctx_make(np__ctx *c, void *stack_lo, size_t len, void (*entry)(void));
/* The calling thread's own context: its stack bounds (for ASan; NULL, 0
 * if unknown) and its TSan fiber. */
void np__ctx_thread(np__ctx *c, void *stack_lo, size_t len);
/* First statement of an entry function: completes the switch that started it. */
void np__ctx_started(void);
/* Saves the running context in from and resumes to. done: from will never
 * be resumed (its ASan fake stack is released). Returns when something
 * switches back to from. */
void np__ctx_switch(np__ctx *from, np__ctx *to, bool done);
/* Releases what np__ctx_make acquired (the TSan fiber). Not the running one. */
void np__ctx_destroy(np__ctx *c);

#endif
