/*
 * user_core.h - the core's descriptor calls under their internal names
 * (user_rename.h), typed exactly as netpoll.h declares the public ones.
 */
#ifndef SIM_USER_CORE_H
#define SIM_USER_CORE_H

#include "netpoll.h"

extern __typeof__(np_open) np__u_open;
extern __typeof__(np_close) np__u_close;
extern __typeof__(np_free) np__u_free;
extern __typeof__(np_sysfd) np__u_sysfd;
extern __typeof__(np_read) np__u_read;
extern __typeof__(np_readv) np__u_readv;
extern __typeof__(np_write) np__u_write;
extern __typeof__(np_writev) np__u_writev;
extern __typeof__(np_accept) np__u_accept;
extern __typeof__(np_connect) np__u_connect;
extern __typeof__(np_wait_read) np__u_wait_read;
extern __typeof__(np_wait_write) np__u_wait_write;
extern __typeof__(np_set_deadline) np__u_set_deadline;
extern __typeof__(np_set_read_deadline) np__u_set_read_deadline;
extern __typeof__(np_set_write_deadline) np__u_set_write_deadline;
extern __typeof__(np_close_write) np__u_close_write;

#endif
