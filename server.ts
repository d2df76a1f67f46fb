#!/usr/bin/env -S deno run --allow-net=0.0.0.0:6666
// Copyright the upcase authors. MIT license.
/**
 * The upcase server: every byte a client sends comes back upper-cased.
 *
 * ```sh
 * deno run --allow-net=0.0.0.0:6666 server.ts
 * ```
 *
 * @module
 */

import { MAXLINE, SERV_PORT } from "./src/constants.ts";
import { EXIT, EXIT_CODES_HELP, run } from "./src/_cli.ts";
import {
  MAX_WORKERS,
  parseServerArgs,
  SERVER_DEFAULTS,
} from "./src/_server_args.ts";
import { runServer } from "./src/_server_run.ts";
import { VERSION } from "./src/version.ts";

function printUsage(): void {
  const d = SERVER_DEFAULTS;
  console.log(`upcase server ${VERSION}
Every byte a client sends comes back with a-z upper-cased, until it half-closes.

Usage:
  deno run --allow-net=HOST:PORT server.ts [options]
  deno run --allow-net=HOST:PORT --allow-read=CERT,KEY server.ts --cert CERT --key KEY [options]
  deno run --allow-net=unix:PATH --allow-read=PATH --allow-write=PATH server.ts --unix PATH [options]
  deno run --allow-net=127.0.0.1 server.ts --udp --host 127.0.0.1 [options]

Options:
  --host HOST            address or host name to listen on (default ${d.hostname}:
                         all IPv4 interfaces; :: for IPv6, 127.0.0.1 for local only)
  --port PORT            TCP port, 0 for any free one (default ${d.port})
  --unix PATH            listen on a Unix socket at PATH instead of TCP
  --once                 the seed's server.c: one read of at most ${MAXLINE} bytes, reply, close
  --unicode              upper-case UTF-8 text as Unicode ("straße" -> "STRASSE");
                         bytes that are not UTF-8 pass through unchanged
  --max-conns N          serve at most N clients at once; more are accepted and
                         closed at once, and logged (default 0: no limit)
  --idle-timeout SECONDS close a client when nothing moved for that long
                         (default 0: never)
  --grace SECONDS        on SIGINT/SIGTERM, time open connections get to finish
                         (default ${d.grace / 1000})
  --cert FILE            serve TLS with the certificate (chain) in FILE (PEM)
  --key FILE             and its private key in FILE (PEM); both need
                         --allow-read for the files
  --handshake-timeout SECONDS
                         TLS: close a client whose handshake is not done by
                         then, even without --idle-timeout (default ${
    d.handshakeTimeout / 1000
  }; 0: never)
  --workers N            serve from N Worker threads (1 to ${MAX_WORKERS}, or auto: one
                         per CPU), each with its own SO_REUSEPORT listener
                         (Linux; needs --unstable-net, which deno.json sets,
                         and --allow-read for the src folder) (default 1)
  --metrics HOST:PORT    serve GET /metrics (Prometheus) and GET /healthz
                         (200, or 503 once a shutdown began) over HTTP there;
                         needs its own --allow-net entry
  --proxy-protocol       every connection starts with a PROXY protocol header
                         (v1 or v2, from HAProxy, nginx, a cloud balancer):
                         the log shows the client it names
  --proxy-from CIDR[,CIDR...]
                         --proxy-protocol: only these peers may connect (the
                         balancers); others are closed unanswered
  --proxy-timeout SECONDS
                         --proxy-protocol: close a connection whose header
                         is not complete by then (default ${
    d.proxyTimeout / 1000
  })
  --drain-delay SECONDS  at SIGINT/SIGTERM, answer /healthz with 503 and go on
                         serving this long before the --grace period
                         (default 0)
  --fault KIND[:KEY=VALUE,...]
                         misbehave on demand (repeatable): latency:delay=50ms,
                         bandwidth:rate=64K, slow-read:rate=1K,
                         slice:min=1,max=4,gap=5ms, stall:after=0|at=2s,
                         close:after=10, reset:after=100|at=500ms (needs
                         --allow-ffi), slow-close:delay=500ms,
                         corrupt:every=1000,skip=16,
                         accept-pause:for=2s[,every=10s]; each per-connection
                         one also takes p=0.3 and from=CIDR (see README)
  --fault-seed N         seed of the faults' choices, to replay a run
                         (default: a random one, printed on the first line)
  --fault-api            with --metrics: PUT /faults (a JSON array of --fault
                         strings) and DELETE /faults change the faults while
                         the server runs (GET /faults reads them always)
  --udp                  serve UDP instead of TCP: each datagram is answered
                         with one datagram, upper-cased; needs --allow-net for
                         the clients' host with any port (--allow-net=127.0.0.1
                         for local clients, --allow-net for anyone)
  --udp-rate N           --udp: replies per second to one source address
                         (default ${d.udpRate}; 0: no limit)
  --backlog N            the kernel's queue of connections not yet accepted
                         (default ${d.backlog})
  -q, --quiet            no per-connection log lines
  --trace                log each socket call of each connection (accept,
                         read, write, EOF, RST, close) and what TCP did
  --log-format FORMAT    text or json, one line per event (default ${d.logFormat})
  -h, --help             show this help
  -V, --version          show the version

The --allow-net permission must name the same HOST:PORT, e.g.
  deno run --allow-net=0.0.0.0:${SERV_PORT} server.ts

SIGINT (Ctrl-C) or SIGTERM: after --drain-delay (serving, /healthz 503), stop
accepting, let open connections finish for up to --grace seconds, close the
rest, print a summary, exit 0. A second signal closes them at once.

${EXIT_CODES_HELP}`);
}

async function main(): Promise<number> {
  const options = parseServerArgs(Deno.args);
  if (options.help) {
    printUsage();
    return EXIT.OK;
  }
  if (options.version) {
    console.log(`upcase server ${VERSION}`);
    return EXIT.OK;
  }
  return await runServer(options);
}

if (import.meta.main) run(main);
