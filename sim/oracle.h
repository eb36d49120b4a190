/*
 * oracle.h - the wake oracle (I14, docs/DESIGN.md "Events: what the kernel
 * delivers and whom it wakes"): for a delivered epoll event mask, which
 * waiters of a pollDesc the core must wake. Shared by the world's checks
 * (sim/world.c) and the kernel event probe (tests/conformance/
 * events_probe.c), so the table the probe prints is the one the simulator
 * enforces.
 */
#ifndef SIM_ORACLE_H
#define SIM_ORACLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

/* Events that wake a parked reader: data, the peer's write side shut
 * (RDHUP), hang-up, an error condition. */
#define ORACLE_WAKES_READER ((uint32_t)(EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
/* Events that wake a parked writer: room, hang-up, an error condition. */
#define ORACLE_WAKES_WRITER ((uint32_t)(EPOLLOUT | EPOLLHUP | EPOLLERR))

/* mode: 'r' or 'w'. */
static inline bool oracle_wakes(uint32_t events, int mode) {
  return (events & (mode == 'r' ? ORACLE_WAKES_READER : ORACLE_WAKES_WRITER)) != 0;
}

/* EPOLLERR alone: the event error bit; a reader then gets "not pollable"
 * (a writer does not, I10). Any other mask clears the bit. */
static inline bool oracle_sets_err_bit(uint32_t events) { return events == EPOLLERR; }

#endif
