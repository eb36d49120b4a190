/*
 * syscalls.h - the table every system call of the epoll backend goes
 * through. Tests replace entries to inject faults (fail the Nth call with a
 * chosen errno) against the real kernel; nothing else may write it, and only
 * while no poller is running.
 */
#ifndef NP_SYSCALLS_H
#define NP_SYSCALLS_H

#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct np__syscalls {
  int (*epoll_create1)(int flags);
  int (*epoll_ctl)(int epfd, int op, int fd, struct epoll_event *ev);
  int (*epoll_wait)(int epfd, struct epoll_event *events, int max, int timeout_ms);
  int (*eventfd)(unsigned int initval, int flags);
  ssize_t (*read)(int fd, void *buf, size_t len);
  ssize_t (*readv)(int fd, const struct iovec *iov, int iovcnt);
  ssize_t (*write)(int fd, const void *buf, size_t len);
  ssize_t (*writev)(int fd, const struct iovec *iov, int iovcnt);
  ssize_t (*send)(int fd, const void *buf, size_t len, int flags);
  ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
  int (*accept4)(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);
  int (*connect)(int fd, const struct sockaddr *addr, socklen_t addrlen);
  int (*getsockopt)(int fd, int level, int name, void *value, socklen_t *len);
  int (*getpeername)(int fd, struct sockaddr *addr, socklen_t *len);
  int (*shutdown)(int fd, int how);
  int (*fcntl_getfl)(int fd);
  int (*fcntl_setfl)(int fd, int flags);
  int (*close)(int fd);
  int (*fstat)(int fd, struct stat *st);
} np__syscalls;

extern np__syscalls np__sys;

#endif
