/*
 * epoll_tls_server.c: the C reference upcase server over TLS, for the
 * benchmark (the `c-tls` row): epoll_server.c with OpenSSL in between.
 *
 * Usage:  epoll_tls_server PORT CERT KEY
 *
 * Listens on 127.0.0.1:PORT (0 picks a free port) with the certificate
 * chain CERT and the private key KEY (PEM), prints
 * "listening on 127.0.0.1:PORT" and serves until SIGTERM or SIGINT.
 *
 * The protocol, inside TLS: every byte a client sends comes back with ASCII
 * a-z turned into A-Z. When the client half-closes (its close_notify, or a
 * TCP FIN), the server has written everything already (see below), sends
 * its own close_notify and closes the connection.
 *
 * Design: one thread, one epoll set, level-triggered, non-blocking sockets,
 * no session cache and no tickets (every handshake is a full one, as the
 * benchmark asks of the client too).
 *
 *   - SSL_read into one 64 KiB buffer shared by every connection ->
 *     upper-case in place -> SSL_write. When SSL_write cannot take all of it
 *     (SSL_MODE_ENABLE_PARTIAL_WRITE: it returns after each 16 KiB record),
 *     the rest is copied into a buffer of that connection and nothing more
 *     is read from it until the rest is written (backpressure).
 *   - A TLS call may wait for the other direction than the one it is for
 *     (a handshake message, a key update): each connection notes which one
 *     its last call waits for and asks epoll for that alone.
 *   - Decrypted bytes that OpenSSL holds (SSL_pending) are read before the
 *     connection waits again: epoll cannot see them.
 *
 * Build:  cc -O3 -Wall -Wextra -o epoll_tls_server epoll_tls_server.c \
 *           -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
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

/* Per-connection state. */
struct conn {
  SSL *ssl;               /* NULL: the slot is free */
  int handshaken;         /* SSL_accept is done */
  uint32_t events;        /* the epoll mask registered now */
  unsigned char *pending; /* NULL unless a write was partial */
  uint32_t offset;        /* bytes of `pending` already sent */
  uint32_t length;        /* bytes in `pending` */
};

static struct conn *conns; /* indexed by file descriptor */
static size_t conns_cap;
static int epfd;
static int listen_fd;
static int accept_paused; /* out of file descriptors: listener muted */
static SSL_CTX *ctx;
static unsigned char buffer[READ_BUFFER_SIZE];

/* Makes sure conns[fd] exists; new slots are zero. */
static int ensure_slot(int fd) {
  return grow_table((void **)&conns, &conns_cap, sizeof *conns, fd);
}

static void watch(int fd, uint32_t events, int op) {
  struct epoll_event ev = {.events = events, .data.fd = fd};
  if (epoll_ctl(epfd, op, fd, &ev) < 0) die("epoll_ctl");
}

static void set_events(int fd, uint32_t events) {
  struct conn *c = &conns[fd];
  if (c->events == events) return;
  watch(fd, events, EPOLL_CTL_MOD);
  c->events = events;
}

static void close_conn(int fd) {
  struct conn *c = &conns[fd];
  SSL_free(c->ssl);
  free(c->pending);
  memset(c, 0, sizeof *c);
  close(fd); /* also removes fd from the epoll set */
  ERR_clear_error();
  if (accept_paused) {
    /* A descriptor is free again: accept once more. */
    accept_paused = 0;
    watch(listen_fd, EPOLLIN, EPOLL_CTL_MOD);
  }
}

/* The client has finished (close_notify or FIN) and nothing is pending:
 * answer with a close_notify and close. */
static void finish(int fd) {
  ERR_clear_error();
  SSL_shutdown(conns[fd].ssl); /* best effort: the socket closes anyway */
  close_conn(fd);
}

/*
 * After an SSL call returned rc <= 0: 1 when it waits for the socket (the
 * mask is set for that), 0 when the client has finished, -1 on an error.
 */
static int after_failure(int fd, int rc) {
  switch (SSL_get_error(conns[fd].ssl, rc)) {
  case SSL_ERROR_WANT_READ:
    set_events(fd, EPOLLIN);
    return 1;
  case SSL_ERROR_WANT_WRITE:
    set_events(fd, EPOLLOUT);
    return 1;
  case SSL_ERROR_ZERO_RETURN:
    return 0;
  default: /* reset, a TCP FIN without close_notify, a bad record */
    return -1;
  }
}

/*
 * Writes data[0..n) and keeps whatever SSL_write does not take.
 * Returns 0 when all was written, 1 when some is pending, -1 on error.
 */
static int write_or_keep(int fd, const unsigned char *data, size_t n) {
  struct conn *c = &conns[fd];
  size_t done = 0;
  while (done < n) {
    ERR_clear_error();
    int w = SSL_write(c->ssl, data + done, (int)(n - done));
    if (w > 0) {
      done += (size_t)w;
      continue;
    }
    int r = after_failure(fd, w);
    if (r <= 0) return -1;
    c->length = (uint32_t)(n - done);
    c->offset = 0;
    c->pending = malloc(c->length);
    if (c->pending == NULL) return -1;
    memcpy(c->pending, data + done, c->length);
    return 1; /* after_failure set the mask: nothing is read meanwhile */
  }
  return 0;
}

/* Writes the pending tail. Returns 0 when it is out, 1 when some is still
 * pending, -1 on error. */
static int flush_pending(int fd) {
  struct conn *c = &conns[fd];
  while (c->offset < c->length) {
    ERR_clear_error();
    int w = SSL_write(c->ssl, c->pending + c->offset,
                      (int)(c->length - c->offset));
    if (w > 0) {
      c->offset += (uint32_t)w;
      continue;
    }
    return after_failure(fd, w) > 0 ? 1 : -1;
  }
  free(c->pending);
  c->pending = NULL;
  c->offset = c->length = 0;
  return 0;
}

/* Reads, transforms and writes, a few times; then waits for more. */
static void serve(int fd) {
  struct conn *c = &conns[fd];
  for (int round = 0; round < READS_PER_EVENT || SSL_pending(c->ssl) > 0;
       round++) {
    ERR_clear_error();
    int n = SSL_read(c->ssl, buffer, sizeof buffer);
    if (n <= 0) {
      int r = after_failure(fd, n);
      if (r == 0) finish(fd);
      else if (r < 0) close_conn(fd);
      return;
    }
    upcase(buffer, (size_t)n);
    int r = write_or_keep(fd, buffer, (size_t)n);
    if (r < 0) {
      close_conn(fd);
      return;
    }
    if (r > 0) return; /* wait until the rest is written */
  }
  /* More may be waiting in the socket: level-triggered epoll says so. */
  set_events(fd, EPOLLIN);
}

/* Any event on a connection: go on with whatever it was doing. */
static void on_event(int fd) {
  struct conn *c = &conns[fd];
  if (!c->handshaken) {
    ERR_clear_error();
    int rc = SSL_accept(c->ssl);
    if (rc != 1) {
      if (after_failure(fd, rc) <= 0) close_conn(fd);
      return;
    }
    c->handshaken = 1;
  }
  if (c->pending != NULL) {
    int r = flush_pending(fd);
    if (r < 0) close_conn(fd);
    if (r != 0) return;
  }
  serve(fd);
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
    SSL *ssl = ensure_slot(fd) < 0 ? NULL : SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
      SSL_free(ssl);
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conns[fd] = (struct conn){.ssl = ssl, .events = EPOLLIN};
    watch(fd, EPOLLIN, EPOLL_CTL_ADD);
  }
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s PORT CERT KEY\n", argv[0]);
    return 2;
  }
  long port = parse_port(argv[1]);

  ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL ||
      SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    fprintf(stderr, "cannot use the certificate %s and the key %s:\n",
            argv[2], argv[3]);
    ERR_print_errors_fp(stderr);
    return 2;
  }
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

  prepare_process(); /* room for many connections; the stop signals */
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
      if (fd == listen_fd) {
        on_acceptable();
      } else if ((size_t)fd < conns_cap && conns[fd].ssl != NULL) {
        on_event(fd);
      }
    }
  }
  /* Exiting closes every socket. */
  return 0;
}
