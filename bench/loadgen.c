/*
 * loadgen.c: the load generator of the upcase benchmark.
 *
 * Single-threaded, epoll, non-blocking sockets. It only ever connects (or,
 * over UDP, sends) to 127.0.0.1 (hard-coded; there is no option to name
 * another host). Every
 * reply byte is checked against the transform (a-z -> A-Z, nothing else
 * changes). Errors (refused, reset, early close) and mismatches are counted,
 * never fatal, and every mode stops by itself at its deadline.
 *
 * Usage:  loadgen MODE -p PORT [options]
 *
 *   rtt      -c conns (50), -s message bytes (64), -d seconds (5), -w warm-up
 *            seconds (0.5). Each connection sends its message, waits for the
 *            whole reply, verifies it, and sends again. Latency is one
 *            send-to-last-byte round trip; only round trips that end inside
 *            the measured window (after the warm-up) are counted.
 *   stream   -c conns (1), -t total bytes (1G; K/M/G suffixes), -d time limit
 *            seconds (120). Sends a deterministic pattern in 256 KiB writes
 *            while reading and verifying the reply, half-closes after the
 *            last byte, reads to EOF. Reports bytes/s of verified reply.
 *   oneshot  -c connections in flight (20), -s message bytes (32), -d seconds
 *            (5), -w warm-up (0.5). Each: connect, send, shutdown(SHUT_WR),
 *            read to EOF, verify, close, start the next. Reports conns/s and
 *            the connect-to-EOF latency.
 *   idle     -c connections (10000), -d connect time limit seconds (30),
 *            -H longest hold seconds (60), -P to skip the ping. Opens the
 *            connections and does one 1-byte round trip on each (so the
 *            server has surely accepted and served it), at most 64 being set
 *            up at a time, prints "ready connected=N" on stdout, then holds
 *            them until stdin reaches EOF, SIGTERM/SIGINT, or -H seconds;
 *            then closes all.
 *   udp      -c datagrams in flight (50), -s datagram bytes (64, 8 to
 *            65507), -d seconds (5), -w warm-up (0.5), -L loss timeout ms
 *            (200). One UDP socket, connected to 127.0.0.1:PORT, keeps -c
 *            datagrams in flight, like rtt's connections. Each datagram is
 *            lowercase ASCII letters: the first 8 are its sequence number in
 *            base 26 ('a' is 0), the rest go on through the alphabet from
 *            there, so a reply's own first 8 bytes say which datagram it
 *            answers and what every byte of it must be (the same letters,
 *            upper-cased). Slot i of -c sends the sequence numbers i, i + c,
 *            i + 2c, ...; a datagram not answered within -L ms is counted
 *            lost and replaced by the slot's next one, so the window stays
 *            full; a reply that comes after that, or twice, is counted late
 *            and is no round trip. One socket with sequence numbers rather
 *            than one socket per slot: the generator reads up to 64 replies
 *            per recvmmsg and sends up to 64 datagrams per sendmmsg, so it
 *            spends less CPU per round trip than the servers it measures
 *            (every server under test receives on one socket anyway). Its
 *            own receive buffer is raised to 4 MiB (SO_RCVBUFFORCE as root),
 *            and what it still dropped is reported apart (rcvbuf_drops), so
 *            "lost" is the server's.
 *
 * TLS:     --tls (rtt, stream, oneshot) speaks TLS over every connection,
 *          with OpenSSL: SNI "localhost", the peer verified against --ca FILE
 *          (PEM) for the name localhost, no session resumption (every
 *          connection does a full handshake). A connection counts as
 *          connected once its handshake is done; the oneshot latency and
 *          rate include the handshake. The half-close is a close_notify
 *          (SSL_shutdown) after the last byte of the request; the reply is
 *          read until the server's close_notify or its TCP close (a close
 *          without close_notify after the whole reply is counted in
 *          tls_unclean_eofs, not as an error). Only when built with
 *          -DLOADGEN_TLS (and -lssl -lcrypto); otherwise --tls fails.
 *
 * Every TCP mode: -S N spreads the connections over the source addresses
 * 127.0.0.1 .. 127.0.0.N (all loopback; default 64 for oneshot, else 1).
 * Each oneshot connection leaves a TIME_WAIT socket on the generator's side
 * (it sends the first FIN); with a single source address, connect() soon
 * spends most of the generator's CPU searching for a usable ephemeral port,
 * and the generator, not the server, sets the pace.
 *
 * Output: one JSON object on the last line of stdout, e.g.
 *   {"mode":"rtt","port":4242,"conns":50,"size":64,"seconds":5.000,
 *    "ops":123,"ops_per_s":...,"bytes_per_s":...,"p50_us":...,"p90_us":...,
 *    "p99_us":...,"p999_us":...,"max_us":...,"mean_us":...,"errors":0,
 *    "verify_failures":0,"first_error":null,"sources":1,
 *    "connect_call_max_us":...,"window_s":5.000,"cpu_user_s":...,
 *    "cpu_sys_s":...}
 * bytes_per_s counts reply bytes (one direction). cpu_*_s is this process's
 * own CPU time (getrusage) in the measured window, which lasted window_s
 * seconds: see window_open(). Before the JSON, stdout has "mark start" and
 * "mark end" lines (and "ready connected=N" in idle mode). Diagnostics go to
 * stderr. With --tls the JSON also has "tls":true, "tls_protocol",
 * "tls_cipher" (of the first connection), "tls_resumed" (handshakes that
 * resumed a session: 0) and "tls_unclean_eofs". The udp mode's JSON is
 * rtt's ("conns" being the datagrams in flight) with "lost" (datagrams
 * counted lost in the measured window), "late" (replies after that, or
 * twice), "rcvbuf_drops" (replies the generator's own socket dropped, from
 * SO_MEMINFO; -1 when the kernel does not tell) and "loss_timeout_ms".
 *
 * Build:  cc -O2 -Wall -Wextra -o loadgen loadgen.c
 *   TLS:  cc -O2 -Wall -Wextra -DLOADGEN_TLS -o loadgen loadgen.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/sock_diag.h> /* SK_MEMINFO_DROPS */
#include <netinet/in.h>
#include <netinet/tcp.h>
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "c_common.h"
#ifdef LOADGEN_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#endif

/* ---------------------------------------------------------------- basics */

enum mode { RTT, STREAM, ONESHOT, IDLE, UDP };
static const char *const MODE_NAMES[] = {"rtt", "stream", "oneshot", "idle",
                                         "udp"};

#define MAX_EVENTS 512
#define READ_BUFFER_SIZE (256 * 1024)
#define STREAM_CHUNK (256 * 1024) /* bytes per send() in stream mode */
#define PERIOD 257 /* stream pattern period: prime, so writes drift over it */
#define IDLE_SETUP_MAX 64 /* idle mode: connections being set up at once */
#define STDIN_TAG UINT32_MAX /* epoll tag of stdin in idle mode */
#define UDP_TAG (UINT32_MAX - 1) /* epoll tag of the udp mode's socket */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t seconds_to_ns(double s) { return (uint64_t)(s * 1e9); }

static unsigned char upcase_byte(unsigned char b) {
  return (unsigned char)(b - 'a') < 26 ? (unsigned char)(b - 0x20) : b;
}

/* xorshift64*: deterministic messages, so runs are repeatable. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1du;
}


/* ------------------------------------------------------ latency histogram */

/*
 * Log-linear histogram of nanoseconds: exact below 128 ns, then 128 buckets
 * per power of two (relative error under 0.8%). Fixed size, no allocation.
 */
#define SUB_BITS 7
#define SUB_COUNT (1u << SUB_BITS)
#define BUCKETS ((64 - SUB_BITS + 1) * SUB_COUNT)

static uint64_t hist[BUCKETS];
static uint64_t hist_count, hist_max, hist_sum;

static unsigned bucket_of(uint64_t v) {
  if (v < SUB_COUNT) return (unsigned)v;
  unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= SUB_BITS */
  unsigned top = (unsigned)(v >> (e - SUB_BITS));  /* in [128, 256) */
  return (e - SUB_BITS) * SUB_COUNT + top;
}

/* The middle of a bucket's range, in ns. */
static double bucket_value(unsigned b) {
  if (b < 2 * SUB_COUNT) return b;
  unsigned e = b / SUB_COUNT + SUB_BITS - 1;
  uint64_t top = b % SUB_COUNT + SUB_COUNT;
  uint64_t width = 1ull << (e - SUB_BITS);
  return (double)(top * width) + (double)width / 2;
}

static void record(uint64_t ns) {
  hist[bucket_of(ns)]++;
  hist_count++;
  hist_sum += ns;
  if (ns > hist_max) hist_max = ns;
}

/* The q-quantile in microseconds (0 when nothing was recorded). */
static double quantile_us(double q) {
  if (hist_count == 0) return 0;
  uint64_t rank = (uint64_t)(q * (double)hist_count);
  if (rank >= hist_count) rank = hist_count - 1;
  uint64_t seen = 0;
  for (unsigned b = 0; b < BUCKETS; b++) {
    seen += hist[b];
    if (seen > rank) {
      double v = bucket_value(b);
      return (v > (double)hist_max ? (double)hist_max : v) / 1000.0;
    }
  }
  return (double)hist_max / 1000.0;
}

/* ------------------------------------------------------------ connections */

enum state {
  ST_CLOSED,     /* no socket */
  ST_WAITING,    /* closed after an error; reopened at retry_at */
  ST_CONNECTING, /* non-blocking connect in progress */
  ST_HANDSHAKE,  /* TLS handshake in progress */
  ST_ACTIVE,     /* connected, exchanging */
  ST_DONE,       /* finished its work (stream, idle) */
};

struct conn {
  int fd;
  enum state state;
  uint32_t events;  /* epoll mask registered now (0: not registered) */
  uint64_t t_start; /* start of the current operation */
  uint64_t retry_at;
  size_t sent, recvd, total;  /* progress of the current op (stream: all) */
  unsigned char *msg, *expect; /* rtt, oneshot: message, expected reply */
#ifdef LOADGEN_TLS
  SSL *ssl;         /* --tls: the session, from the handshake on */
#endif
  int want_out;     /* --tls: the last SSL call waits to write */
  int shut_pending; /* --tls: the close_notify is still to be sent */
};

/* Options. */
static enum mode mode;
static int port = -1;
static long nconns = -1;
static long size = -1;
static double duration = -1, warmup = 0.5, hold = 60;
static uint64_t stream_total = 1ull << 30;
static int ping = 1;
static long nsources = -1; /* -S: source addresses 127.0.0.1 .. 127.0.0.N */
static long next_source;
static int use_tls;         /* --tls */
static const char *ca_file; /* --ca */
static double loss_timeout_ms = 200; /* -L, udp mode */

/* State. */
static int epfd;
static struct conn *conns;
static struct sockaddr_in server_addr;
static unsigned char rbuf[READ_BUFFER_SIZE];
static unsigned char *send_pattern, *expect_pattern; /* stream mode */
static uint64_t t_begin, t_measure, t_end; /* t_end: the deadline */
static uint64_t ops, errors, verify_failures, stream_bytes;
static char first_error[160];
static int running = 1;
static int stream_timed_out;
/* Longest connect() call: the kernel's search for a free ephemeral port
 * gets slow when thousands of them sit in TIME_WAIT (oneshot mode). */
static uint64_t connect_call_max;
static long waiting; /* conns in ST_WAITING */
static uint64_t early_send_misses; /* oneshot: not yet connected after connect() */
#ifdef LOADGEN_TLS
#define IS_TLS(c) ((c)->ssl != NULL)
#else
#define IS_TLS(c) 0
#endif
/* --tls: the reason of the last TLS failure (errno is then EPROTO). */
static char tls_reason[120];

static void note_error(const char *what, int err) {
  errors++;
  if (first_error[0] == '\0') {
    const char *why = err == EPROTO && tls_reason[0] ? tls_reason
                      : err                          ? strerror(err)
                                                     : "unexpected";
    snprintf(first_error, sizeof first_error, "%s: %s", what, why);
    /* It goes into the JSON as a string. */
    for (char *p = first_error; *p; p++)
      if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = '\'';
  }
}

static void set_events(struct conn *c, uint32_t events) {
  if (events == c->events) return;
  struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(c - conns)};
  int op = c->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (epoll_ctl(epfd, op, c->fd, &ev) < 0) {
    perror("epoll_ctl");
    exit(1);
  }
  c->events = events;
}

static void conn_close(struct conn *c, enum state next) {
#ifdef LOADGEN_TLS
  SSL_free(c->ssl); /* no close_notify: a clean end sent it already */
  c->ssl = NULL;
#endif
  c->want_out = c->shut_pending = 0;
  if (c->fd >= 0) close(c->fd); /* also leaves the epoll set */
  c->fd = -1;
  c->events = 0;
  c->state = next;
}

static void on_connected(struct conn *c);
static void conn_fail(struct conn *c, const char *what, int err);

/* ------------------------------------------------------------------ I/O */

/*
 * conn_send, conn_recv and conn_shutdown_write are send(), recv() and
 * shutdown(SHUT_WR) on a plain connection, and SSL_write, SSL_read and
 * SSL_shutdown (a close_notify) on a TLS one, with the same results: a TLS
 * call that waits for the socket fails with EAGAIN (want_out tells that it
 * waits to write), the peer's close_notify is EOF, and any other TLS
 * failure is EPROTO with the reason in tls_reason.
 */
#ifdef LOADGEN_TLS
static SSL_CTX *ssl_ctx;
static char tls_protocol[16], tls_cipher[64];
static uint64_t tls_resumed, tls_unclean_eofs;

/* What an SSL call's result -1 or 0 means, as errno; 0 for EOF. */
static int tls_errno(struct conn *c, int rc) {
  int e = SSL_get_error(c->ssl, rc);
  switch (e) {
  case SSL_ERROR_WANT_READ:
    return EAGAIN;
  case SSL_ERROR_WANT_WRITE:
    c->want_out = 1;
    return EAGAIN;
  case SSL_ERROR_ZERO_RETURN: /* the peer's close_notify */
    return 0;
  case SSL_ERROR_SYSCALL:
    return errno ? errno : ECONNRESET;
  default: {
    unsigned long code = ERR_peek_error();
    if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      ERR_clear_error();
      tls_unclean_eofs++; /* a TCP close without close_notify */
      return 0;
    }
    long verify = SSL_get_verify_result(c->ssl);
    if (verify != X509_V_OK) {
      snprintf(tls_reason, sizeof tls_reason, "TLS: certificate: %s",
               X509_verify_cert_error_string(verify));
    } else {
      char text[100];
      ERR_error_string_n(code, text, sizeof text);
      snprintf(tls_reason, sizeof tls_reason, "TLS: %s", text);
    }
    ERR_clear_error();
    return EPROTO;
  }
  }
}
#endif

static ssize_t conn_send(struct conn *c, const void *data, size_t n) {
#ifdef LOADGEN_TLS
  if (c->ssl) {
    c->want_out = 0;
    ERR_clear_error();
    int w = SSL_write(c->ssl, data, n > INT32_MAX ? INT32_MAX : (int)n);
    if (w > 0) return w;
    errno = tls_errno(c, w);
    if (errno == 0) errno = EPIPE;
    return -1;
  }
#endif
  return send(c->fd, data, n, MSG_NOSIGNAL);
}

static ssize_t conn_recv(struct conn *c, void *buf, size_t n) {
#ifdef LOADGEN_TLS
  if (c->ssl) {
    c->want_out = 0;
    ERR_clear_error();
    int r = SSL_read(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    if (r > 0) return r;
    errno = tls_errno(c, r);
    return errno == 0 ? 0 : -1;
  }
#endif
  return recv(c->fd, buf, n, 0);
}

/* Half-closes: FIN, or close_notify (then maybe pending: see shut_pending). */
static int conn_shutdown_write(struct conn *c) {
#ifdef LOADGEN_TLS
  if (c->ssl) {
    c->want_out = c->shut_pending = 0;
    ERR_clear_error();
    int rc = SSL_shutdown(c->ssl); /* 0: sent, the peer's still to come */
    if (rc >= 0) return 0;
    int err = tls_errno(c, rc);
    if (err == EAGAIN) {
      c->shut_pending = 1;
      return 0;
    }
    conn_fail(c, "TLS close_notify", err ? err : EPIPE);
    return -1;
  }
#endif
  shutdown(c->fd, SHUT_WR);
  return 0;
}

/* The epoll events a connection waits for: always readable, writable
 * while it has `unsent` bytes or a TLS call waits to write. */
static uint32_t wanted(const struct conn *c, int unsent) {
  return unsent || c->want_out || c->shut_pending ? EPOLLIN | EPOLLOUT
                                                  : EPOLLIN;
}

#ifdef LOADGEN_TLS
/* Drives the handshake; once it is done the connection is connected. */
static void tls_handshake(struct conn *c) {
  c->want_out = 0;
  ERR_clear_error();
  int rc = SSL_connect(c->ssl);
  if (rc == 1) {
    if (SSL_session_reused(c->ssl)) tls_resumed++;
    if (tls_protocol[0] == '\0') {
      snprintf(tls_protocol, sizeof tls_protocol, "%s", SSL_get_version(c->ssl));
      snprintf(tls_cipher, sizeof tls_cipher, "%s",
               SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl)));
    }
    on_connected(c);
    return;
  }
  int err = tls_errno(c, rc);
  if (err == EAGAIN) {
    set_events(c, c->want_out ? EPOLLOUT : EPOLLIN);
  } else {
    conn_fail(c, "TLS handshake", err ? err : ECONNRESET);
  }
}
#endif

/* The TCP connection is up: start the TLS handshake, or go. */
static void tcp_connected(struct conn *c) {
#ifdef LOADGEN_TLS
  if (use_tls) {
    c->ssl = SSL_new(ssl_ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
        SSL_set_tlsext_host_name(c->ssl, "localhost") != 1 ||
        SSL_set1_host(c->ssl, "localhost") != 1) {
      fprintf(stderr, "SSL_new: out of memory\n");
      exit(1);
    }
    c->state = ST_HANDSHAKE;
    tls_handshake(c);
    return;
  }
#endif
  on_connected(c);
}

/*
 * Starts a non-blocking connect to 127.0.0.1:port. Returns -1 when it failed
 * at once (counted, and closed or queued for a retry by conn_fail).
 */
static int conn_open(struct conn *c) {
  c->sent = c->recvd = 0;
  c->t_start = now_ns();
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    conn_fail(c, "socket", errno);
    return -1;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (nsources > 1) {
    /* Source 127.0.0.(1 + k), port picked by connect() (see -S). */
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + (uint32_t)next_source);
    next_source = (next_source + 1) % nsources;
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) {
      conn_fail(c, "bind", errno);
      return -1;
    }
  }
  uint64_t t0 = now_ns();
  int rc = connect(c->fd, (struct sockaddr *)&server_addr, sizeof server_addr);
  uint64_t spent = now_ns() - t0;
  if (spent > connect_call_max) connect_call_max = spent;
  if (rc == 0) {
    tcp_connected(c);
  } else if (errno == EINPROGRESS) {
    if (mode == ONESHOT && !use_tls) {
      /* On loopback the handshake has most often completed inside
       * connect(): try to send at once, which saves an epoll round. */
      ssize_t w = send(c->fd, c->msg, c->total, MSG_NOSIGNAL);
      if (w > 0) {
        c->sent = (size_t)w;
        on_connected(c);
        return 0;
      }
      if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
          errno != ENOTCONN) {
        conn_fail(c, "send", errno);
        return -1;
      }
      early_send_misses++;
    }
    c->state = ST_CONNECTING;
    set_events(c, EPOLLOUT);
  } else {
    conn_fail(c, "connect", errno);
    return -1;
  }
  return 0;
}

/* An error on a connection: count it, close, maybe retry a little later. */
static void conn_fail(struct conn *c, const char *what, int err) {
  note_error(what, err);
  int retry = running && (mode == RTT || mode == ONESHOT);
  conn_close(c, retry ? ST_WAITING : ST_CLOSED);
  if (retry) {
    c->retry_at = now_ns() + 10 * 1000000u; /* 10 ms: no hot loop */
    waiting++;
  }
}

/* The reply did not match: count it and drop the connection. */
static void verify_fail(struct conn *c, const unsigned char *got,
                        const unsigned char *want, size_t n, size_t at) {
  size_t i = 0;
  while (i < n && got[i] == want[i]) i++;
  if (verify_failures == 0) {
    fprintf(stderr, "verify: byte %zu: got 0x%02x, want 0x%02x\n", at + i,
            i < n ? got[i] : 0, i < n ? want[i] : 0);
  }
  verify_failures++;
  conn_fail(c, "verify", 0);
}

/* Sends c->msg[c->sent .. c->total); watches EPOLLOUT while some is left. */
static int send_rest(struct conn *c) {
  while (c->sent < c->total) {
    ssize_t w = conn_send(c, c->msg + c->sent, c->total - c->sent);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      conn_fail(c, "send", errno);
      return -1;
    }
    c->sent += (size_t)w;
  }
  set_events(c, wanted(c, c->sent < c->total));
  return 0;
}

/*
 * Reads what has come of the reply to c->msg and checks it against
 * c->expect. Returns 1 at EOF, 0 when the socket has no more for now, or
 * (rtt) the whole reply is in, and -1 when the connection failed (and is
 * closed).
 */
static int read_reply(struct conn *c) {
  for (;;) {
    ssize_t n = conn_recv(c, rbuf, sizeof rbuf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      conn_fail(c, "recv", errno);
      return -1;
    }
    if (n == 0) return 1;
    size_t got = (size_t)n;
    if (got > c->total - c->recvd) { /* more than was sent */
      verify_failures++;
      conn_fail(c, "verify: reply longer than the message", 0);
      return -1;
    }
    if (memcmp(rbuf, c->expect + c->recvd, got) != 0) {
      verify_fail(c, rbuf, c->expect + c->recvd, got, c->recvd);
      return -1;
    }
    c->recvd += got;
    if (mode == RTT && c->recvd == c->total) return 0;
  }
}

/* ------------------------------------------------------------ mode: rtt */

static void rtt_start_op(struct conn *c) {
  c->sent = c->recvd = 0;
  c->t_start = now_ns();
  send_rest(c);
}

static void rtt_readable(struct conn *c) {
  int r = read_reply(c);
  if (r < 0) return;
  if (r > 0) {
    conn_fail(c, "recv: server closed early", 0);
    return;
  }
  if (c->recvd == c->total) {
    uint64_t t = now_ns();
    if (t >= t_measure && t < t_end) {
      record(t - c->t_start);
      ops++;
    }
    if (t < t_end) rtt_start_op(c);
  }
}

/* -------------------------------------------------------- mode: oneshot */

static void oneshot_start(struct conn *c) {
  if (send_rest(c) < 0) return;
  if (c->sent == c->total && conn_shutdown_write(c) == 0)
    set_events(c, wanted(c, 0));
}

static void oneshot_readable(struct conn *c) {
  if (read_reply(c) <= 0) return; /* not yet at EOF, or failed */
  if (c->recvd != c->total) {
    conn_fail(c, "recv: EOF before the whole reply", 0);
    return;
  }
  uint64_t t = now_ns();
  if (t >= t_measure && t < t_end) {
    record(t - c->t_start);
    ops++;
  }
  conn_close(c, ST_CLOSED);
  if (t < t_end) conn_open(c);
}

/* --------------------------------------------------------- mode: stream */

static void stream_writable(struct conn *c) {
  while (c->sent < c->total) {
    size_t n = c->total - c->sent;
    if (n > STREAM_CHUNK) n = STREAM_CHUNK;
    ssize_t w = conn_send(c, send_pattern + c->sent % PERIOD, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        set_events(c, wanted(c, 1));
        return;
      }
      conn_fail(c, "send", errno);
      return;
    }
    c->sent += (size_t)w;
  }
  /* Everything sent: half-close. */
  if (conn_shutdown_write(c) == 0) set_events(c, wanted(c, 0));
}

static void stream_readable(struct conn *c) {
  /* A few reads per event, so the writer side gets its turn too. */
  for (int round = 0; round < 8; round++) {
#ifdef LOADGEN_TLS
    /* Bytes OpenSSL holds already are not seen by epoll: read them too. */
    if (round == 7 && c->ssl && SSL_pending(c->ssl) > 0) round--;
#endif
    ssize_t n = conn_recv(c, rbuf, sizeof rbuf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) conn_fail(c, "recv", errno);
      return;
    }
    if (n == 0) {
      if (c->recvd == c->total) {
        conn_close(c, ST_DONE);
      } else {
        conn_fail(c, "recv: EOF before the whole reply", 0);
      }
      return;
    }
    size_t got = (size_t)n;
    if (got > c->total - c->recvd) {
      verify_failures++;
      conn_fail(c, "verify: reply longer than what was sent", 0);
      return;
    }
    const unsigned char *want = expect_pattern + c->recvd % PERIOD;
    if (memcmp(rbuf, want, got) != 0) {
      verify_fail(c, rbuf, want, got, c->recvd);
      return;
    }
    c->recvd += got;
    stream_bytes += got;
  }
}

/* ----------------------------------------------------------- mode: idle */

/* Connections: opened, pinged and idle, failed to set up, and dropped
 * (closed by the server, or sent data) once idle. Opened minus ready minus
 * failed are still being set up: at most IDLE_SETUP_MAX, so the server's
 * accept queue (its listen backlog) never overflows, which would cost a 1 s
 * SYN retransmission and measure the backlog instead of the server. */
static long idle_opened, idle_ready, idle_failed;
static long idle_dropped;
static int holding;

/* ST_ACTIVE: the ping's reply is due. ST_DONE: idle, nothing should come. */
static void idle_readable(struct conn *c) {
  unsigned char b;
  ssize_t n = recv(c->fd, &b, 1, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  int pinging = c->state == ST_ACTIVE;
  if (pinging && n == 1 && b == 'Q') {
    c->state = ST_DONE; /* now idle */
    idle_ready++;
    return;
  }
  if (n == 1) {
    verify_failures++;
    note_error(pinging ? "verify: ping reply" : "idle: unexpected data", 0);
  } else if (n == 0) {
    note_error("server closed the connection", 0);
  } else {
    note_error("recv", errno);
  }
  if (pinging) idle_failed++;
  else idle_dropped++;
  conn_close(c, ST_CLOSED);
}

/* ------------------------------------------------------------ mode: udp */

#define UDP_BATCH 64     /* datagrams per sendmmsg and per recvmmsg */
#define UDP_SEQ_DIGITS 8 /* base-26 digits of a sequence number (mod 26^8) */
#define UDP_MAX_PAYLOAD 65507
#define UDP_RCVBUF (4 << 20)

enum udp_state {
  UDP_QUEUED,    /* to be sent (in udp_queue) */
  UDP_IN_FLIGHT, /* sent at t, its reply due */
  UDP_RETRY,     /* its send failed; queued again at t */
};

/* One of the -c datagrams in flight. */
struct udp_slot {
  enum udp_state state;
  uint64_t seq;      /* of the datagram queued or in flight */
  uint64_t next_seq; /* the slot's next one: seq + nconns once sent */
  uint64_t t;        /* see enum udp_state */
};

static int udp_fd = -1;
static uint32_t udp_events; /* epoll mask registered now */
static struct udp_slot *udp_slots;
static long *udp_queue; /* slots to send, in order; each at most once */
static long udp_queued;
static uint64_t udp_next_scan; /* no loss or retry is due before this */
static uint64_t udp_lost, udp_late;
static long long udp_rcvbuf_drops = -1;
/* "abc...z" repeated over size + 26 bytes, and upper-cased: a datagram's
 * letters after its sequence number, and their reply. */
static unsigned char *alphabet_lower, *alphabet_upper;
static unsigned char *udp_out; /* UDP_BATCH datagrams being sent */
static unsigned char *udp_in;  /* UDP_BATCH replies, size + 1 bytes each */
static struct mmsghdr udp_out_msgs[UDP_BATCH], udp_in_msgs[UDP_BATCH];
static struct iovec udp_out_iovs[UDP_BATCH], udp_in_iovs[UDP_BATCH];

static uint64_t loss_timeout_ns(void) {
  return (uint64_t)(loss_timeout_ms * 1e6);
}

/* Writes datagram `seq` (size bytes) to out. */
static void udp_message(unsigned char *out, uint64_t seq) {
  uint64_t v = seq;
  for (int d = UDP_SEQ_DIGITS - 1; d >= 0; d--) {
    out[d] = (unsigned char)('a' + v % 26);
    v /= 26;
  }
  memcpy(out + UDP_SEQ_DIGITS, alphabet_lower + (seq + UDP_SEQ_DIGITS) % 26,
         (size_t)size - UDP_SEQ_DIGITS);
}

static void udp_set_events(uint32_t events) {
  if (events == udp_events) return;
  struct epoll_event ev = {.events = events, .data.u32 = UDP_TAG};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, udp_fd, &ev) < 0) {
    perror("epoll_ctl");
    exit(1);
  }
  udp_events = events;
}

static void udp_enqueue(long i) {
  udp_slots[i].state = UDP_QUEUED;
  udp_queue[udp_queued++] = i;
}

/* Queues slot i's next datagram (a new sequence number). */
static void udp_next(long i) {
  struct udp_slot *u = &udp_slots[i];
  u->seq = u->next_seq;
  u->next_seq += (uint64_t)nconns;
  udp_enqueue(i);
}

/* Sends the queued datagrams, UDP_BATCH per sendmmsg; what the socket does
 * not take waits for EPOLLOUT. A failed send (ECONNREFUSED: an ICMP port
 * unreachable for an earlier datagram, no server there) is counted and
 * that datagram sent again 10 ms later. */
static void udp_flush(void) {
  long done = 0;
  while (done < udp_queued) {
    unsigned n = udp_queued - done > UDP_BATCH ? UDP_BATCH
                                               : (unsigned)(udp_queued - done);
    for (unsigned k = 0; k < n; k++) {
      unsigned char *out = udp_out + (size_t)k * (size_t)size;
      udp_message(out, udp_slots[udp_queue[done + k]].seq);
      udp_out_iovs[k] = (struct iovec){.iov_base = out, .iov_len = (size_t)size};
      udp_out_msgs[k] = (struct mmsghdr){
          .msg_hdr = {.msg_iov = &udp_out_iovs[k], .msg_iovlen = 1}};
    }
    uint64_t t = now_ns();
    int sent = sendmmsg(udp_fd, udp_out_msgs, n, 0);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      note_error("send", errno);
      struct udp_slot *u = &udp_slots[udp_queue[done++]];
      u->state = UDP_RETRY;
      u->t = t + 10 * 1000000u; /* 10 ms: no hot loop */
      if (u->t < udp_next_scan) udp_next_scan = u->t;
      continue;
    }
    for (int k = 0; k < sent; k++) {
      struct udp_slot *u = &udp_slots[udp_queue[done + k]];
      u->state = UDP_IN_FLIGHT;
      u->t = t;
    }
    if (sent > 0 && t + loss_timeout_ns() < udp_next_scan)
      udp_next_scan = t + loss_timeout_ns();
    done += sent;
  }
  udp_queued -= done;
  memmove(udp_queue, udp_queue + done, (size_t)udp_queued * sizeof *udp_queue);
  udp_set_events(udp_queued > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/* Counts the datagrams unanswered for -L ms as lost (inside the measured
 * window) and queues the slots' next ones; queues the retries due. */
static void udp_scan(uint64_t now) {
  if (now < udp_next_scan) return;
  uint64_t timeout = loss_timeout_ns();
  uint64_t next = UINT64_MAX;
  for (long i = 0; i < nconns; i++) {
    struct udp_slot *u = &udp_slots[i];
    uint64_t due = u->state == UDP_IN_FLIGHT ? u->t + timeout
                   : u->state == UDP_RETRY   ? u->t
                                             : UINT64_MAX;
    if (due > now) {
      if (due < next) next = due;
    } else if (u->state == UDP_RETRY) {
      udp_enqueue(i);
    } else {
      if (now >= t_measure && now < t_end) udp_lost++;
      udp_next(i);
    }
  }
  udp_next_scan = next;
  if (udp_queued > 0 && now < t_end) udp_flush();
}

/* A reply that is not what it should be. */
static void udp_verify_fail(const char *what, size_t at, unsigned got,
                            const char *want) {
  if (verify_failures == 0) {
    fprintf(stderr, "verify: %s: byte %zu: got 0x%02x, want %s\n", what, at,
            got, want);
  }
  verify_failures++;
  note_error("verify", 0);
}

/* Checks one reply (n bytes, received at t) and, when it answers a
 * datagram in flight, ends that round trip and queues the slot's next. */
static void udp_reply(const unsigned char *got, size_t n, int flags,
                      uint64_t t) {
  if (n != (size_t)size || (flags & MSG_TRUNC)) {
    verify_failures++;
    note_error(n < (size_t)size ? "verify: reply shorter than the datagram"
                                : "verify: reply longer than the datagram",
               0);
    return;
  }
  uint64_t seq = 0;
  for (int d = 0; d < UDP_SEQ_DIGITS; d++) {
    if ((unsigned char)(got[d] - 'A') >= 26) {
      udp_verify_fail("sequence number", (size_t)d, got[d], "A-Z");
      return; /* whose it is is unknown: its slot will count it lost */
    }
    seq = seq * 26 + (uint64_t)(got[d] - 'A');
  }
  long i = (long)(seq % (uint64_t)nconns);
  struct udp_slot *u = &udp_slots[i];
  int answers = u->state == UDP_IN_FLIGHT && seq == u->seq;
  if (!answers && seq >= u->next_seq) {
    verify_failures++;
    note_error("verify: a reply to a datagram never sent", 0);
    return;
  }
  const unsigned char *want =
      alphabet_upper + (seq + UDP_SEQ_DIGITS) % 26;
  if (memcmp(got + UDP_SEQ_DIGITS, want, (size_t)size - UDP_SEQ_DIGITS) != 0) {
    size_t at = 0;
    while (got[UDP_SEQ_DIGITS + at] == want[at]) at++;
    char expected[8];
    snprintf(expected, sizeof expected, "0x%02x", want[at]);
    udp_verify_fail("payload", UDP_SEQ_DIGITS + at, got[UDP_SEQ_DIGITS + at],
                    expected);
    if (answers && t < t_end) udp_next(i); /* replaced, not lost */
    return;
  }
  if (!answers) {
    udp_late++;
    return;
  }
  if (t >= t_measure && t < t_end) {
    record(t - u->t);
    ops++;
  }
  if (t < t_end) udp_next(i);
}

/* The socket is readable: every reply there (recvmmsg, a few rounds),
 * then the slots' next datagrams in one go. */
static void udp_readable(void) {
  for (int round = 0; round < 16; round++) {
    int n = recvmmsg(udp_fd, udp_in_msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      note_error("recv", errno); /* ECONNREFUSED: see udp_flush */
      continue;
    }
    uint64_t t = now_ns();
    for (int k = 0; k < n; k++) {
      udp_reply(udp_in + (size_t)k * ((size_t)size + 1),
                udp_in_msgs[k].msg_len, udp_in_msgs[k].msg_hdr.msg_flags, t);
    }
    if (n < UDP_BATCH) break;
  }
  if (udp_queued > 0) udp_flush();
}

static void udp_event(uint32_t ev) {
  if ((ev & EPOLLOUT) && udp_queued > 0) udp_flush();
  if (ev & (EPOLLIN | EPOLLERR)) udp_readable();
}

/* The socket, connected to 127.0.0.1:port (so only the server's replies
 * come in, and an ICMP port unreachable is an error), the buffers, and the
 * first -c datagrams. */
static void udp_start(void) {
  udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (udp_fd < 0) {
    perror("socket");
    exit(1);
  }
  int rcvbuf = UDP_RCVBUF;
  if (setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf))
    setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (connect(udp_fd, (struct sockaddr *)&server_addr, sizeof server_addr)) {
    perror("connect");
    exit(1);
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UDP_TAG};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, udp_fd, &ev) < 0) {
    perror("epoll_ctl");
    exit(1);
  }
  udp_events = EPOLLIN;
  udp_slots = calloc((size_t)nconns, sizeof *udp_slots);
  udp_queue = calloc((size_t)nconns, sizeof *udp_queue);
  alphabet_lower = malloc((size_t)size + 26);
  alphabet_upper = malloc((size_t)size + 26);
  udp_out = malloc((size_t)UDP_BATCH * (size_t)size);
  udp_in = malloc((size_t)UDP_BATCH * ((size_t)size + 1));
  if (!udp_slots || !udp_queue || !alphabet_lower || !alphabet_upper ||
      !udp_out || !udp_in) {
    perror("malloc");
    exit(1);
  }
  for (long j = 0; j < size + 26; j++) {
    alphabet_lower[j] = (unsigned char)('a' + j % 26);
    alphabet_upper[j] = upcase_byte(alphabet_lower[j]);
  }
  for (int k = 0; k < UDP_BATCH; k++) {
    /* One byte more than a datagram: a longer reply is seen (MSG_TRUNC). */
    udp_in_iovs[k] = (struct iovec){
        .iov_base = udp_in + (size_t)k * ((size_t)size + 1),
        .iov_len = (size_t)size + 1};
    udp_in_msgs[k].msg_hdr = (struct msghdr){.msg_iov = &udp_in_iovs[k],
                                             .msg_iovlen = 1};
  }
  udp_next_scan = UINT64_MAX;
  for (long i = 0; i < nconns; i++) {
    udp_slots[i].next_seq = (uint64_t)i;
    udp_next(i);
  }
  udp_flush();
}

/* Replies the generator's own socket dropped (its receive buffer full). */
static void udp_read_drops(void) {
#ifdef SO_MEMINFO
  uint32_t info[SK_MEMINFO_VARS];
  socklen_t len = sizeof info;
  if (getsockopt(udp_fd, SOL_SOCKET, SO_MEMINFO, info, &len) == 0 &&
      len > SK_MEMINFO_DROPS * sizeof info[0])
    udp_rcvbuf_drops = info[SK_MEMINFO_DROPS];
#endif
}

/* ------------------------------------------------------------- dispatch */

static void on_connected(struct conn *c) {
  c->state = ST_ACTIVE;
  switch (mode) {
  case RTT:
    rtt_start_op(c);
    break;
  case ONESHOT:
    oneshot_start(c);
    break;
  case STREAM:
    set_events(c, EPOLLIN | EPOLLOUT);
    stream_writable(c);
    break;
  case IDLE:
    if (ping) {
      if (send(c->fd, "q", 1, MSG_NOSIGNAL) != 1) {
        note_error("send", errno);
        idle_failed++;
        conn_close(c, ST_CLOSED);
        return;
      }
    } else {
      c->state = ST_DONE;
      idle_ready++;
    }
    set_events(c, EPOLLIN);
    break;
  case UDP: /* no connections: see udp_event */
    break;
  }
}

static void on_event(struct conn *c, uint32_t ev) {
  if (c->state == ST_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      if (mode == IDLE) idle_failed++;
      conn_fail(c, "connect", err);
    } else {
      tcp_connected(c);
    }
    return;
  }
  if (c->fd < 0) return; /* closed earlier in this batch */
#ifdef LOADGEN_TLS
  if (c->state == ST_HANDSHAKE) {
    tls_handshake(c);
    return;
  }
  /* A TLS call may wait for either direction, whatever it does: on any
   * event every call that waits is tried again. */
  if (c->ssl) ev |= EPOLLIN | EPOLLOUT;
#endif
  switch (mode) {
  case RTT:
  case ONESHOT:
    if ((ev & EPOLLOUT) && c->sent < c->total) {
      if (send_rest(c) < 0) return;
      if (mode == ONESHOT && c->sent == c->total &&
          conn_shutdown_write(c) < 0)
        return;
    } else if (c->shut_pending && conn_shutdown_write(c) < 0) {
      return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
      if (mode == RTT) rtt_readable(c);
      else oneshot_readable(c);
    }
    if (c->fd >= 0 && c->state == ST_ACTIVE && IS_TLS(c))
      set_events(c, wanted(c, c->sent < c->total));
    break;
  case STREAM:
    if ((ev & EPOLLOUT) && c->sent < c->total) {
      stream_writable(c);
    } else if (c->shut_pending && conn_shutdown_write(c) < 0) {
      return;
    }
    if (c->fd >= 0 && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
      stream_readable(c);
    if (c->fd >= 0 && c->state == ST_ACTIVE && IS_TLS(c))
      set_events(c, wanted(c, c->sent < c->total));
    break;
  case IDLE:
    idle_readable(c);
    break;
  case UDP:
    break;
  }
}

/* ---------------------------------------------------------------- window */

/*
 * The measured window: rtt, oneshot and udp from the end of the warm-up to
 * the deadline, stream from the first connect to the last byte, idle from the
 * first connect to "ready". Its start and end are announced on stdout
 * ("mark start", "mark end") so that a driver can sample the server's CPU
 * at the same moments; the CPU this process reports is its own in the
 * window.
 */
static int window_state; /* 0: not started, 1: open, 2: closed */
static uint64_t window_t0, window_t1;
static double window_user, window_sys;

static void cpu_now(double *user, double *sys) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
  *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void window_open(uint64_t now) {
  if (window_state != 0) return;
  window_state = 1;
  window_t0 = now;
  cpu_now(&window_user, &window_sys);
  printf("mark start\n");
  fflush(stdout);
}

static void window_close(uint64_t now) {
  if (window_state != 1) return;
  window_state = 2;
  window_t1 = now;
  double user, sys;
  cpu_now(&user, &sys);
  window_user = user - window_user;
  window_sys = sys - window_sys;
  printf("mark end\n");
  fflush(stdout);
}

/* ---------------------------------------------------------------- output */

static void print_result(double seconds) {
  double user, sys, window_s;
  if (window_state == 2) {
    user = window_user;
    sys = window_sys;
    window_s = (double)(window_t1 - window_t0) / 1e9;
  } else { /* stopped before the window closed: the whole run */
    cpu_now(&user, &sys);
    window_s = (double)(now_ns() - t_begin) / 1e9;
  }
  double per_s = seconds > 0 ? 1.0 / seconds : 0;
  printf("{\"mode\":\"%s\",\"port\":%d,\"conns\":%ld", MODE_NAMES[mode], port,
         nconns);
  switch (mode) {
  case RTT:
  case ONESHOT:
  case UDP:
    printf(",\"size\":%ld,\"seconds\":%.3f,\"ops\":%llu,\"ops_per_s\":%.1f,"
           "\"bytes_per_s\":%.1f,\"p50_us\":%.2f,\"p90_us\":%.2f,"
           "\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f,"
           "\"mean_us\":%.2f",
           size, seconds, (unsigned long long)ops, (double)ops * per_s,
           (double)ops * (double)size * per_s, quantile_us(0.50),
           quantile_us(0.90), quantile_us(0.99), quantile_us(0.999),
           (double)hist_max / 1000.0,
           hist_count ? (double)hist_sum / (double)hist_count / 1000.0 : 0);
    if (mode == UDP)
      printf(",\"lost\":%llu,\"late\":%llu,\"rcvbuf_drops\":%lld,"
             "\"loss_timeout_ms\":%.0f",
             (unsigned long long)udp_lost, (unsigned long long)udp_late,
             udp_rcvbuf_drops, loss_timeout_ms);
    break;
  case STREAM:
    printf(",\"size\":%llu,\"seconds\":%.3f,\"bytes\":%llu,"
           "\"bytes_per_s\":%.1f,\"timed_out\":%s",
           (unsigned long long)stream_total, seconds,
           (unsigned long long)stream_bytes, (double)stream_bytes * per_s,
           stream_timed_out ? "true" : "false");
    break;
  case IDLE:
    printf(",\"connected\":%ld,\"failed\":%ld,\"dropped\":%ld,"
           "\"ping\":%s,\"connect_seconds\":%.3f",
           idle_ready, idle_failed, idle_dropped, ping ? "true" : "false",
           seconds);
    break;
  }
  printf(",\"errors\":%llu,\"verify_failures\":%llu,\"first_error\":",
         (unsigned long long)errors, (unsigned long long)verify_failures);
  if (first_error[0]) printf("\"%s\"", first_error); /* no quotes inside */
  else printf("null");
  printf(",\"sources\":%ld", nsources);
  if (mode == ONESHOT)
    printf(",\"early_send_misses\":%llu",
           (unsigned long long)early_send_misses);
  printf(",\"connect_call_max_us\":%.1f", (double)connect_call_max / 1000.0);
#ifdef LOADGEN_TLS
  if (use_tls) {
    printf(",\"tls\":true,\"tls_protocol\":\"%s\",\"tls_cipher\":\"%s\","
           "\"tls_resumed\":%llu,\"tls_unclean_eofs\":%llu",
           tls_protocol, tls_cipher, (unsigned long long)tls_resumed,
           (unsigned long long)tls_unclean_eofs);
  }
#endif
  printf(",\"window_s\":%.3f,\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f}\n",
         window_s, user, sys);
  fflush(stdout);
}

/* ------------------------------------------------------------------ main */

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen rtt|stream|oneshot|idle|udp -p PORT [-c CONNS] "
          "[-s SIZE] [-d SECONDS] [-w WARMUP] [-t BYTES] [-H HOLD] [-P] "
          "[-S SOURCES] [-L LOSS_MS] [--tls --ca FILE]\n"
          "Connects to 127.0.0.1 only. See the comment at the top of "
          "loadgen.c.\n");
  exit(2);
}

static double parse_double(const char *s) {
  char *end;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || !(v >= 0) || v > 1e6) usage();
  return v;
}

static uint64_t parse_bytes(const char *s) {
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s) usage();
  if (*end == 'K' || *end == 'k') v <<= 10, end++;
  else if (*end == 'M' || *end == 'm') v <<= 20, end++;
  else if (*end == 'G' || *end == 'g') v <<= 30, end++;
  if (*end != '\0' || v == 0) usage();
  return v;
}

/* Fills a message with random bytes, about half of them a-z. */
static void random_message(unsigned char *msg, unsigned char *expect,
                           size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint64_t r = rng();
    msg[i] = (r & 1) ? (unsigned char)('a' + (r >> 8) % 26)
                     : (unsigned char)(r >> 16);
    expect[i] = upcase_byte(msg[i]);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  const char *m = argv[1];
  if (strcmp(m, "rtt") == 0) mode = RTT;
  else if (strcmp(m, "stream") == 0) mode = STREAM;
  else if (strcmp(m, "oneshot") == 0) mode = ONESHOT;
  else if (strcmp(m, "idle") == 0) mode = IDLE;
  else if (strcmp(m, "udp") == 0) mode = UDP;
  else usage();

  int opt;
  optind = 2;
  static const struct option long_options[] = {
      {"tls", no_argument, NULL, 'T'},
      {"ca", required_argument, NULL, 'A'},
      {NULL, 0, NULL, 0},
  };
  while ((opt = getopt_long(argc, argv, "p:c:s:d:w:t:H:PS:L:", long_options,
                            NULL)) != -1) {
    switch (opt) {
    case 'T':
      use_tls = 1;
      break;
    case 'A':
      ca_file = optarg;
      break;
    case 'p':
      port = (int)parse_double(optarg);
      break;
    case 'c':
      nconns = (long)parse_double(optarg);
      break;
    case 's':
      size = (long)parse_bytes(optarg);
      break;
    case 'd':
      duration = parse_double(optarg);
      break;
    case 'w':
      warmup = parse_double(optarg);
      break;
    case 't':
      stream_total = parse_bytes(optarg);
      break;
    case 'H':
      hold = parse_double(optarg);
      break;
    case 'P':
      ping = 0;
      break;
    case 'S':
      nsources = (long)parse_double(optarg);
      break;
    case 'L':
      loss_timeout_ms = parse_double(optarg);
      break;
    default:
      usage();
    }
  }
  if (optind != argc || port <= 0 || port > 65535) usage();
  static const long default_conns[] = {50, 1, 20, 10000, 50};
  static const double default_duration[] = {5, 120, 5, 30, 5};
  if (nconns < 0) nconns = default_conns[mode];
  if (duration < 0) duration = default_duration[mode];
  if (size < 0) size = mode == ONESHOT ? 32 : 64;
  if (nsources < 0) nsources = mode == ONESHOT ? 64 : 1;
  if (nconns < 1 || nconns > 1000000 || size > (1 << 24) || nsources < 1 ||
      nsources > 254)
    usage();
  if (mode == STREAM && stream_total < (uint64_t)nconns) usage();
  if (use_tls && (mode == IDLE || mode == UDP || ca_file == NULL)) usage();
  if (mode == UDP && (size < UDP_SEQ_DIGITS || size > UDP_MAX_PAYLOAD ||
                      nsources != 1 || loss_timeout_ms < 1))
    usage();
  if (use_tls) {
#ifdef LOADGEN_TLS
    ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (ssl_ctx == NULL ||
        SSL_CTX_load_verify_locations(ssl_ctx, ca_file, NULL) != 1) {
      fprintf(stderr, "loadgen: cannot load the CA certificates of %s\n",
              ca_file);
      ERR_print_errors_fp(stderr);
      return 2;
    }
    SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_PEER, NULL);
    /* A full handshake every time: no session is kept or offered. */
    SSL_CTX_set_session_cache_mode(ssl_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ssl_ctx, SSL_OP_NO_TICKET);
    /* SSL_write returns after each record (like send() after a partial
     * write); a retry passes the same bytes, maybe from another address. */
    SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#else
    fprintf(stderr, "loadgen: --tls: built without TLS (needs -DLOADGEN_TLS "
                    "and libssl)\n");
    return 2;
#endif
  }

  prepare_process(); /* room for the idle mode's sockets, signals */

  /* The only destination there is: 127.0.0.1. */
  server_addr.sin_family = AF_INET;
  server_addr.sin_port = htons((uint16_t)port);
  server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    perror("epoll_create1");
    return 1;
  }
  conns = calloc((size_t)nconns, sizeof *conns);
  if (conns == NULL) {
    perror("calloc");
    return 1;
  }
  for (long i = 0; i < nconns; i++) conns[i].fd = -1;

  if (mode == RTT || mode == ONESHOT) {
    for (long i = 0; i < nconns; i++) {
      struct conn *c = &conns[i];
      c->total = (size_t)size;
      c->msg = malloc((size_t)size);
      c->expect = malloc((size_t)size);
      if (c->msg == NULL || c->expect == NULL) {
        perror("malloc");
        return 1;
      }
      random_message(c->msg, c->expect, (size_t)size);
    }
  } else if (mode == STREAM) {
    /* Byte i of the stream is pattern[i % PERIOD]; pattern holds all 256
     * values (an odd multiplier permutes them) plus one more 'q'. A send at
     * stream offset o starts at send_pattern + o % PERIOD. */
    send_pattern = malloc(STREAM_CHUNK + PERIOD);
    expect_pattern = malloc(READ_BUFFER_SIZE + PERIOD);
    if (send_pattern == NULL || expect_pattern == NULL) {
      perror("malloc");
      return 1;
    }
    unsigned char pattern[PERIOD];
    for (unsigned k = 0; k < 256; k++)
      pattern[k] = (unsigned char)(k * 167u + 13u);
    pattern[256] = 'q';
    for (size_t j = 0; j < STREAM_CHUNK + PERIOD; j++)
      send_pattern[j] = pattern[j % PERIOD];
    for (size_t j = 0; j < READ_BUFFER_SIZE + PERIOD; j++)
      expect_pattern[j] = upcase_byte(pattern[j % PERIOD]);
    uint64_t share = stream_total / (uint64_t)nconns;
    for (long i = 0; i < nconns; i++) {
      conns[i].total = (size_t)(i == nconns - 1
                                    ? stream_total - share * (uint64_t)i
                                    : share);
    }
  }

  t_begin = now_ns();
  if (mode == STREAM || mode == IDLE) window_open(t_begin);
  switch (mode) {
  case RTT:
  case ONESHOT:
    t_measure = t_begin + seconds_to_ns(warmup);
    t_end = t_measure + seconds_to_ns(duration);
    for (long i = 0; i < nconns; i++) conn_open(&conns[i]);
    break;
  case UDP:
    t_measure = t_begin + seconds_to_ns(warmup);
    t_end = t_measure + seconds_to_ns(duration);
    udp_start();
    break;
  case STREAM:
    t_end = t_begin + seconds_to_ns(duration);
    for (long i = 0; i < nconns; i++) conn_open(&conns[i]);
    break;
  case IDLE:
    t_end = t_begin + seconds_to_ns(duration); /* connect phase limit */
    break;
  }

  struct epoll_event evs[MAX_EVENTS];
  uint64_t t_ready = 0;
  while (running) {
    uint64_t now = now_ns();
    if ((mode == RTT || mode == ONESHOT || mode == UDP) && now >= t_measure)
      window_open(now);
    if (stop_requested || now >= t_end) {
      if (mode == IDLE && !holding && !stop_requested) {
        fprintf(stderr, "idle: connect phase timed out\n");
        t_ready = now; /* go on: hold what we have */
      } else {
        break;
      }
    }

    /* Idle mode: open more, or start holding once all are set up. */
    if (mode == IDLE && !holding) {
      while (idle_opened < nconns && t_ready == 0 &&
             idle_opened - idle_ready - idle_failed < IDLE_SETUP_MAX) {
        if (conn_open(&conns[idle_opened++]) < 0) idle_failed++;
      }
      if (t_ready != 0 || idle_ready + idle_failed >= nconns) {
        if (t_ready == 0) t_ready = now;
        window_close(t_ready);
        holding = 1;
        printf("ready connected=%ld\n", idle_ready);
        fflush(stdout);
        t_end = now + seconds_to_ns(hold);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
        /* Fails for /dev/null or a file: then only -H or a signal ends it. */
        epoll_ctl(epfd, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
        continue;
      }
    }

    /* Stream mode: done when every connection is. */
    if (mode == STREAM) {
      long done = 0;
      for (long i = 0; i < nconns; i++)
        done += conns[i].state == ST_DONE || conns[i].state == ST_CLOSED;
      if (done == nconns) break;
    }

    /* Reopen connections whose retry time has come. */
    if (waiting > 0) {
      for (long i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->state == ST_WAITING && c->retry_at <= now) {
          waiting--;
          conn_open(c);
        }
      }
    }

    uint64_t wake = t_end;
    if (waiting > 0 && wake > now + 10000000u) wake = now + 10000000u;
    if (mode == UDP) {
      udp_scan(now);
      if (udp_next_scan < wake) wake = udp_next_scan;
    }
    int timeout = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
    if (timeout > 100) timeout = 100;
    int n = epoll_wait(epfd, evs, MAX_EVENTS, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      break;
    }
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u32 == STDIN_TAG) {
        char tmp[256];
        ssize_t r = read(STDIN_FILENO, tmp, sizeof tmp);
        if (r <= 0 && !(r < 0 && errno == EINTR)) {
          running = 0; /* stdin closed: stop holding */
          epoll_ctl(epfd, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
        }
        continue;
      }
      if (evs[i].data.u32 == UDP_TAG) {
        udp_event(evs[i].events);
        continue;
      }
      on_event(&conns[evs[i].data.u32], evs[i].events);
    }
  }
  running = 0;
  uint64_t t_stop = now_ns();
  window_close(t_stop);

  double seconds;
  switch (mode) {
  case RTT:
  case ONESHOT:
  case UDP:
    seconds = duration; /* the measured window */
    if (t_stop < t_end) /* stopped early by a signal */
      seconds = t_stop > t_measure ? (double)(t_stop - t_measure) / 1e9 : 0;
    break;
  case STREAM:
    seconds = (double)(t_stop - t_begin) / 1e9;
    for (long i = 0; i < nconns; i++) {
      /* Failed ones are counted already; some still running is new. */
      if (conns[i].state != ST_DONE && conns[i].state != ST_CLOSED) {
        stream_timed_out = t_stop >= t_end;
        note_error(stream_timed_out ? "stream: time limit" : "stream: stopped",
                   0);
        break;
      }
    }
    break;
  case IDLE:
  default:
    seconds = (double)((t_ready ? t_ready : t_stop) - t_begin) / 1e9;
    break;
  }
  for (long i = 0; i < nconns; i++) conn_close(&conns[i], ST_CLOSED);
  if (mode == UDP) {
    udp_read_drops();
    close(udp_fd);
  }
  print_result(seconds);
  return 0;
}
