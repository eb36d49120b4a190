/*
 * handle_heap.h - where the simulated run's np_fd handles live (the port's
 * np__fd_alloc / np__fd_release): each handle on pages of its own; a freed
 * one is filled with a poison pattern and made inaccessible (PROT_NONE)
 * until the run ends, never reused. Any later access by the core faults,
 * and the fault is reported as an invariant failure of the run (with its
 * seed) in every build, not only under ASan.
 */
#ifndef SIM_HANDLE_HEAP_H
#define SIM_HANDLE_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct np_fd;

/* Called by np__fd_release before the handle is poisoned (the world stops
 * referring to it). */
extern void (*sim_on_handle_free)(struct np_fd *f);

/* Any other memory of a run that must fault once freed (np_rtsim's
 * schedulers): zeroed, on pages of its own; what names it in reports. */
void *sim_heap_alloc(size_t bytes, const char *what);
void sim_heap_free(void *p);

/* Unmaps every handle of the run (live or freed); the world calls it
 * between runs and after a failed run. */
void sim_heap_reset(void);
/* Handles allocated / freed in this run. */
int sim_heap_live(void);
int sim_heap_freed(void);

#endif
