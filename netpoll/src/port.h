/*
 * port.h - the compile-time port seam. The same core sources are compiled
 * twice: against port_native.h for libnetpoll, and with NP_PORT_SIM against
 * the simulator's port (sim/port_sim.h), where every atomic, lock, park and
 * clock read is a schedule point. Nothing in the core includes
 * <stdatomic.h>, <pthread.h> or reads a clock except through here.
 */
#ifndef NP_PORT_H
#define NP_PORT_H
#if defined(NP_PORT_SIM)
#include "port_sim.h"
#else
#include "port_native.h"
#endif
#endif
