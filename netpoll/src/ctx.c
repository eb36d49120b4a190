/*
 * ctx.c - the context switch (see ctx.h): callee-saved registers pushed on
 * the old stack, stack pointers swapped, registers popped from the new one.
 * A new context's stack is laid out so that its first switch "returns" into
 * the entry function with the alignment of a normal call.
 */

#include "ctx.h"

#include <stdint.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define NP_CTX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NP_CTX_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define NP_CTX_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NP_CTX_TSAN 1
#endif
#endif

#ifdef NP_CTX_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef NP_CTX_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#if !defined(__x86_64__)
#error "netpoll/src/ctx.c: the context switch is implemented for x86-64 only"
#endif

void np__ctx_asm_switch(void **from_sp, void *to_sp);
__asm__(
    ".text\n"
    ".globl np__ctx_asm_switch\n"
    ".hidden np__ctx_asm_switch\n" /* the library's and the simulator's (sim/sched.c) */
    ".type np__ctx_asm_switch,@function\n"
    "np__ctx_asm_switch:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size np__ctx_asm_switch,.-np__ctx_asm_switch\n"
    ".section .note.GNU-stack,\"\",@progbits\n"
    ".text\n");

void np__ctx_make(np__ctx *c, void *stack_lo, size_t len, void (*entry)(void)) {
  uintptr_t top = ((uintptr_t)stack_lo + len) & ~(uintptr_t)15;
  void **sp = (void **)top;
  *--sp = NULL;                             /* fake return address of entry (never returns) */
  *--sp = (void *)entry;                    /* where the first switch's ret lands */
  for (int i = 0; i < 6; i++) *--sp = NULL; /* rbp rbx r12 r13 r14 r15 */
  c->sp = sp;
  c->stack_lo = stack_lo;
  c->stack_len = len;
  c->asan_fake = NULL;
#ifdef NP_CTX_TSAN
  c->tsan_fiber = __tsan_create_fiber(0);
  c->own_fiber = true;
#else
  c->tsan_fiber = NULL;
  c->own_fiber = false;
#endif
}

void np__ctx_thread(np__ctx *c, void *stack_lo, size_t len) {
  c->sp = NULL;
  c->stack_lo = stack_lo;
  c->stack_len = len;
  c->asan_fake = NULL;
  c->own_fiber = false;
  c->tsan_fiber = NULL;
#ifdef NP_CTX_TSAN
  c->tsan_fiber = __tsan_get_current_fiber();
#endif
}

void np__ctx_started(void) {
#ifdef NP_CTX_ASAN
  __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
}

void np__ctx_switch(np__ctx *from, np__ctx *to, bool done) {
#ifdef NP_CTX_ASAN
  __sanitizer_start_switch_fiber(done ? NULL : &from->asan_fake, to->stack_lo, to->stack_len);
#else
  (void)done;
#endif
#ifdef NP_CTX_TSAN
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
  np__ctx_asm_switch(&from->sp, to->sp);
#ifdef NP_CTX_ASAN
  __sanitizer_finish_switch_fiber(from->asan_fake, NULL, NULL);
#endif
}

void np__ctx_destroy(np__ctx *c) {
#ifdef NP_CTX_TSAN
  if (c->own_fiber && c->tsan_fiber != NULL) __tsan_destroy_fiber(c->tsan_fiber);
#endif
  c->tsan_fiber = NULL;
  c->own_fiber = false;
}
