/*
 * user_rename.h - forced into the core sources when they are compiled for
 * libnetpoll-sim: their public descriptor calls get internal names, and
 * user_api.c defines the public ones on top, adding the program's trace
 * (virtual time, task, call, fd, bytes, result). Nothing else changes.
 */
#define np_open np__u_open
#define np_close np__u_close
#define np_free np__u_free
#define np_sysfd np__u_sysfd
#define np_read np__u_read
#define np_readv np__u_readv
#define np_write np__u_write
#define np_writev np__u_writev
#define np_accept np__u_accept
#define np_connect np__u_connect
#define np_wait_read np__u_wait_read
#define np_wait_write np__u_wait_write
#define np_set_deadline np__u_set_deadline
#define np_set_read_deadline np__u_set_read_deadline
#define np_set_write_deadline np__u_set_write_deadline
#define np_close_write np__u_close_write
