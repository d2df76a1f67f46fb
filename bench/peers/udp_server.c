/*
 * udp_server.c: the reference upcase UDP server for the benchmark.
 *
 * Usage:  udp_server PORT
 *
 * Binds 127.0.0.1:PORT (0 picks a free port), prints
 * "listening on 127.0.0.1:PORT" and serves until SIGTERM or SIGINT.
 *
 * The protocol: each datagram comes back as one datagram to the address and
 * port it came from, with ASCII a-z (0x61-0x7a) turned into A-Z; every
 * other byte is unchanged.
 *
 * Design: one thread, one blocking socket, batches both ways.
 *
 *   - recvmmsg(MSG_WAITFORONE) waits for a datagram, then takes every other
 *     one already queued, up to BATCH, each into a buffer of its own larger
 *     than any UDP payload (so none is cut);
 *   - each is upper-cased in place (the branch-free loop of c_common.h);
 *   - sendmmsg sends the batch back, each reply to its datagram's source
 *     address, again until all are sent. A reply the kernel refuses (an
 *     ICMP error from an earlier one, out of buffer) is dropped, as UDP
 *     does.
 *
 * Build:  cc -O3 -Wall -Wextra -o udp_server udp_server.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../c_common.h"

/* Datagrams per recvmmsg and sendmmsg. */
#define BATCH 64
/* Larger than any UDP payload (65,507 bytes over IPv4). */
#define DATAGRAM_BUFFER_SIZE 65536

static unsigned char buffers[BATCH][DATAGRAM_BUFFER_SIZE];
static struct sockaddr_in sources[BATCH];
static struct iovec iovs[BATCH];
static struct mmsghdr msgs[BATCH];

/* A UDP socket bound to 127.0.0.1:port; prints "listening on ...". */
static int bind_loopback(long port) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  socklen_t len = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0) die("getsockname");
  printf("listening on 127.0.0.1:%u\n", ntohs(addr.sin_port));
  fflush(stdout);
  return fd;
}

/* Makes msgs[0..n) ready for recvmmsg (its lengths are reset each time). */
static void prepare_receive(int n) {
  for (int i = 0; i < n; i++) {
    iovs[i] = (struct iovec){.iov_base = buffers[i],
                             .iov_len = DATAGRAM_BUFFER_SIZE};
    msgs[i].msg_hdr = (struct msghdr){.msg_name = &sources[i],
                                      .msg_namelen = sizeof sources[i],
                                      .msg_iov = &iovs[i],
                                      .msg_iovlen = 1};
  }
}

/* Sends msgs[0..n) back, each to its source, each once at most. */
static void send_back(int fd, int n) {
  int done = 0;
  while (done < n) {
    int sent = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
    if (sent < 0) {
      if (errno == EINTR && !stop_requested) continue;
      if (stop_requested) return;
      done++; /* this one is dropped; the rest go on */
      continue;
    }
    done += sent;
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 2;
  }
  long port = parse_port(argv[1]);
  /* The stop signals interrupt the blocked recvmmsg (no SA_RESTART). */
  prepare_process();
  int fd = bind_loopback(port);

  while (!stop_requested) {
    prepare_receive(BATCH);
    int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("recvmmsg");
    }
    for (int i = 0; i < n; i++) {
      upcase(buffers[i], msgs[i].msg_len);
      /* The reply: the same buffer, as long as the datagram. */
      iovs[i].iov_len = msgs[i].msg_len;
    }
    send_back(fd, n);
  }
  return 0;
}
