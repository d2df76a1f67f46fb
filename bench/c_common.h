/*
 * c_common.h: what the C programs of the benchmark share (loadgen.c and
 * the reference servers in peers/): the process set-up, the stop flag, and
 * for the servers the port argument, the loopback listener, the
 * connection table and the transform.
 *
 * Header-only: each program is still built from its one .c file, which
 * includes this (static inline functions, so a program that uses a part
 * only gets no warning for the rest).
 */
#ifndef UPCASE_BENCH_C_COMMON_H
#define UPCASE_BENCH_C_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* Set by SIGTERM and SIGINT. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

/*
 * Raises the open-file limit to its hard maximum (room for thousands of
 * connections), sets stop_requested on SIGTERM and SIGINT (without
 * SA_RESTART, so a blocked epoll_wait returns EINTR and the loop sees the
 * flag), and ignores SIGPIPE (a write to a closed socket fails instead).
 */
static inline void prepare_process(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  struct sigaction sa = {.sa_handler = on_stop_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

static inline void die(const char *what) {
  perror(what);
  exit(1);
}

/* The transform, in place. Branch-free, so the compiler vectorizes it (at
 * -O3): a reference that spent its time in a byte-by-byte loop would make
 * every other server look better than it is. */
static inline void upcase(unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char b = p[i];
    p[i] = (unsigned char)(b - (((unsigned char)(b - 'a') < 26) << 5));
  }
}

/* A server's PORT argument, 0 to 65535; exits with 2 when it is not. */
static inline long parse_port(const char *arg) {
  char *end;
  long port = strtol(arg, &end, 10);
  if (*arg == '\0' || *end != '\0' || port < 0 || port > 65535) {
    fprintf(stderr, "invalid port: %s\n", arg);
    exit(2);
  }
  return port;
}

/*
 * A non-blocking listener on 127.0.0.1:port (0 picks a free port); prints
 * "listening on 127.0.0.1:PORT". Exits when it cannot listen.
 */
static inline int listen_loopback(long port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  if (listen(fd, SOMAXCONN) < 0) die("listen");
  socklen_t len = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0) die("getsockname");
  printf("listening on 127.0.0.1:%u\n", ntohs(addr.sin_port));
  fflush(stdout);
  return fd;
}

/* What accept_next returns instead of a descriptor. */
enum { ACCEPT_DONE = -1, ACCEPT_AGAIN = -2, ACCEPT_PAUSE = -3 };

/*
 * Accepts one connection, non-blocking: its descriptor; ACCEPT_DONE when
 * none is waiting, ACCEPT_AGAIN when one went away (try the next), and
 * ACCEPT_PAUSE when out of descriptors or memory (said on stderr): the
 * caller mutes the listener until a connection closes. Exits on anything
 * else.
 */
static inline int accept_next(int listen_fd) {
  int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) return fd;
  if (errno == EAGAIN || errno == EWOULDBLOCK) return ACCEPT_DONE;
  if (errno == EINTR || errno == ECONNABORTED) return ACCEPT_AGAIN;
  if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
      errno == ENOMEM) {
    fprintf(stderr, "accept: %s; pausing\n", strerror(errno));
    return ACCEPT_PAUSE;
  }
  die("accept4");
  return ACCEPT_DONE;
}

/*
 * Makes sure a table indexed by file descriptor, of *cap slots of `size`
 * bytes, has a slot for fd; new slots are zero. Returns -1 when out of
 * memory.
 */
static inline int grow_table(void **table, size_t *cap, size_t size, int fd) {
  if ((size_t)fd < *cap) return 0;
  size_t grown_cap = *cap ? *cap : 1024;
  while (grown_cap <= (size_t)fd) grown_cap *= 2;
  unsigned char *grown = realloc(*table, grown_cap * size);
  if (grown == NULL) return -1;
  memset(grown + *cap * size, 0, (grown_cap - *cap) * size);
  *table = grown;
  *cap = grown_cap;
  return 0;
}

#endif
