/*
 * epoll_server.c: the reference upcase server for the benchmark.
 *
 * Usage:  epoll_server PORT
 *
 * Listens on 127.0.0.1:PORT (0 picks a free port), prints
 * "listening on 127.0.0.1:PORT" and serves until SIGTERM or SIGINT.
 *
 * The protocol: every byte a client sends comes back with ASCII a-z
 * (0x61-0x7a) turned into A-Z; every other byte is unchanged. When the client
 * half-closes, the server writes what is left and closes the connection.
 *
 * Design: one thread, one epoll set, level-triggered, non-blocking sockets.
 *
 *   - One 64 KiB read buffer is shared by every connection: it is only used
 *     between a read() and the write() that follows it.
 *   - read -> upper-case in place -> write. When the kernel takes only part
 *     of the write, the rest is copied into a buffer owned by that connection
 *     and the connection switches from EPOLLIN to EPOLLOUT, so nothing more
 *     is read from it until the remainder is flushed (backpressure: a client
 *     that does not read its replies is stopped by TCP flow control).
 *   - An idle connection costs one 16-byte slot in a table indexed by file
 *     descriptor, nothing else: no per-connection buffer exists until a write
 *     is partial, and it is freed as soon as it is flushed.
 *   - read() returning 0 (the client's FIN) is only ever seen with nothing
 *     pending, so the server simply closes.
 *
 * Build:  cc -O3 -Wall -Wextra -o epoll_server epoll_server.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../c_common.h"

#define READ_BUFFER_SIZE (64 * 1024)
#define MAX_EVENTS 256
/* Reads served per readiness event before other connections get a turn. */
#define READS_PER_EVENT 16

/* Per-connection state: only the unsent tail of a partial write. */
struct conn {
  unsigned char *pending; /* NULL unless a write was partial */
  uint32_t offset;        /* bytes of `pending` already sent */
  uint32_t length;        /* bytes in `pending` */
};

static struct conn *conns; /* indexed by file descriptor */
static size_t conns_cap;
static int epfd;
static int listen_fd;
static int accept_paused; /* out of file descriptors: listener muted */
static unsigned char buffer[READ_BUFFER_SIZE];

/* Makes sure conns[fd] exists; new slots are zero (no pending data). */
static int ensure_slot(int fd) {
  return grow_table((void **)&conns, &conns_cap, sizeof *conns, fd);
}

static void watch(int fd, uint32_t events, int op) {
  struct epoll_event ev = {.events = events, .data.fd = fd};
  if (epoll_ctl(epfd, op, fd, &ev) < 0) die("epoll_ctl");
}

static void close_conn(int fd) {
  struct conn *c = &conns[fd];
  free(c->pending);
  c->pending = NULL;
  c->offset = c->length = 0;
  close(fd); /* also removes fd from the epoll set */
  if (accept_paused) {
    /* A descriptor is free again: accept once more. */
    accept_paused = 0;
    watch(listen_fd, EPOLLIN, EPOLL_CTL_MOD);
  }
}

/*
 * Sends buffer[0..n) and keeps whatever the kernel does not take.
 * Returns 0 when all was sent, 1 when some is pending, -1 on error.
 */
static int send_or_keep(int fd, const unsigned char *data, size_t n) {
  ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
  if (w < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
    w = 0;
  }
  if ((size_t)w == n) return 0;
  struct conn *c = &conns[fd];
  c->length = (uint32_t)(n - (size_t)w);
  c->offset = 0;
  c->pending = malloc(c->length);
  if (c->pending == NULL) return -1;
  memcpy(c->pending, data + w, c->length);
  /* Stop reading until the remainder is out. */
  watch(fd, EPOLLOUT, EPOLL_CTL_MOD);
  return 1;
}

/* The socket is readable: read, transform, write, a few times. */
static void on_readable(int fd) {
  for (int round = 0; round < READS_PER_EVENT; round++) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n == 0) { /* the client half-closed and everything is sent */
      close_conn(fd);
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      close_conn(fd); /* reset and the like */
      return;
    }
    upcase(buffer, (size_t)n);
    int r = send_or_keep(fd, buffer, (size_t)n);
    if (r < 0) {
      close_conn(fd);
      return;
    }
    if (r > 0) return; /* wait for EPOLLOUT */
    if ((size_t)n < sizeof buffer) return; /* most likely drained */
  }
  /* Level-triggered: whatever is left is reported again. */
}

/* The socket is writable again: flush the pending tail. */
static void on_writable(int fd) {
  struct conn *c = &conns[fd];
  while (c->offset < c->length) {
    ssize_t w = send(fd, c->pending + c->offset, c->length - c->offset,
                     MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      close_conn(fd);
      return;
    }
    c->offset += (uint32_t)w;
  }
  free(c->pending);
  c->pending = NULL;
  c->offset = c->length = 0;
  watch(fd, EPOLLIN, EPOLL_CTL_MOD); /* read again */
}

/* The listener is readable: accept every waiting connection. */
static void on_acceptable(void) {
  for (;;) {
    int fd = accept_next(listen_fd);
    if (fd == ACCEPT_AGAIN) continue;
    if (fd == ACCEPT_PAUSE) {
      /* Mute the listener until a connection closes (see close_conn). */
      accept_paused = 1;
      watch(listen_fd, 0, EPOLL_CTL_MOD);
    }
    if (fd < 0) return;
    if (ensure_slot(fd) < 0) {
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    watch(fd, EPOLLIN, EPOLL_CTL_ADD);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 2;
  }
  long port = parse_port(argv[1]);
  /* Room for the idle scenario's 10,000 connections; the stop signals. */
  prepare_process();
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  listen_fd = listen_loopback(port);
  watch(listen_fd, EPOLLIN, EPOLL_CTL_ADD);

  struct epoll_event events[MAX_EVENTS];
  while (!stop_requested) {
    int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      uint32_t ev = events[i].events;
      if (fd == listen_fd) {
        on_acceptable();
      } else if (conns[fd].pending != NULL) {
        /* Waiting for EPOLLOUT; EPOLLERR/EPOLLHUP surface as a send error. */
        on_writable(fd);
      } else if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        on_readable(fd);
      }
    }
  }
  /* Exiting closes every socket. */
  return 0;
}
