#!/usr/bin/env -S deno run --allow-net=127.0.0.1:6666
// Copyright the upcase authors. MIT license.
/**
 * The upcase client: sends a message, prints the server's reply.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1:6666 client.ts "hello, world"
 * ```
 *
 * @module
 */

import { MAXLINE } from "./src/constants.ts";
import { EXIT, EXIT_CODES_HELP, run } from "./src/_cli.ts";
import { CLIENT_DEFAULTS, parseClientArgs } from "./src/_client_args.ts";
import { MAX_REPLY_PER_BYTE, runClient } from "./src/_client_run.ts";
import { VERSION } from "./src/version.ts";

function printUsage(): void {
  const d = CLIENT_DEFAULTS;
  console.log(`upcase client ${VERSION}
Sends MESSAGE to an upcase server, half-closes, and prints the reply.

Usage:
  deno run --allow-net=HOST:PORT client.ts [options] MESSAGE
  deno run --allow-net=HOST:PORT client.ts [options] - < FILE
  deno run --allow-net=HOST:PORT client.ts [options] --interactive
  deno run --allow-net=HOST:PORT client.ts [options] --bench MODE
  deno run --allow-net=HOST client.ts --udp [options] MESSAGE|-|-i

Modes:
  MESSAGE                prints "Response from server:", then the reply and a
                         newline (the seed's client.c)
  -                      streams stdin to the server and the reply to stdout as
                         it arrives: stdout is exactly the reply bytes (a
                         progress line on stderr when that is a terminal and
                         stdout is not)
  -i, --interactive      one request per line of stdin over one connection,
                         each reply printed as it arrives, until EOF
  --bench MODE           load generator, every reply byte checked: rtt (round
                         trips on open connections), stream (write and read
                         at once), oneshot (connect, send, half-close, read,
                         close); prints requests/s, throughput, latency

Options:
  --host HOST            server host name or address (default ${d.hostname})
  --port PORT            server TCP port (default ${d.port})
  --unix PATH            connect to a Unix socket at PATH instead of TCP
  --timeout SECONDS      give up if connecting, or the whole reply (each reply
                         with -i), takes longer (default 0: no limit)
  -q, --quiet            print only the reply: no "Response from server:" line,
                         no warnings, no progress line
  --connections N        --bench: connections in flight (default 50 for rtt,
                         1 for stream, 20 for oneshot)
  --duration SECONDS     --bench: how long to run (default ${d.duration / 1000})
  --size BYTES           --bench: bytes per message, or per write for stream
                         (default 64 for rtt, 65536 for stream, 32 for oneshot)
  --json                 --bench: print the report as JSON
  --tls                  speak TLS (every mode); the certificate is checked
                         against the default roots and --ca
  --ca FILE              --tls: also trust the CA in FILE (PEM)
  --servername NAME      --tls: the name sent (SNI) and checked (default: --host)
  --cert FILE            --tls: present the client certificate in FILE (PEM),
  --key FILE             with its key in FILE
  --handshake-timeout SECONDS
                         --tls: give up if the handshake takes longer
                         (default ${d.handshakeTimeout / 1000}; 0: no limit)
  --trace                print each socket call (connect, write, shutdown,
                         read, close) and what TCP did, on stderr
  --proxy-protocol v1|v2 send a PROXY protocol header with the connection's
                         addresses first (every mode), for servers behind a
                         load balancer
  --udp                  send datagrams instead of connecting: MESSAGE is one
                         datagram, - cuts stdin into datagrams of --size bytes
                         (default 1472), -i sends one per line; each waits up
                         to --timeout (default 2 s) for its reply
  --retries N            --udp: send a datagram again this many times when no
                         reply came (default 2), then exit 6
  -h, --help             show this help
  -V, --version          show the version

The --allow-net permission must name the same HOST:PORT, e.g.
  deno run --allow-net=${d.hostname}:${d.port} client.ts "hello, world"
(--unix PATH needs --allow-net=unix:PATH --allow-read=PATH --allow-write=PATH;
--ca, --cert and --key need --allow-read for their files.)

A reply shorter than the MESSAGE (the seed's server.c reads at most ${MAXLINE} bytes,
then resets) is printed as it came, with a warning on stderr. With - and -i, a
reply that ends in a reset, or short of an ASCII request's length, exits 5 once
every byte that came is on stdout. A reply longer than ${MAX_REPLY_PER_BYTE} times the request
(the most --unicode sends) is not read further: exit 5.

${EXIT_CODES_HELP}`);
}

async function main(): Promise<number> {
  const options = parseClientArgs(Deno.args);
  if (options.help) {
    printUsage();
    return EXIT.OK;
  }
  if (options.version) {
    console.log(`upcase client ${VERSION}`);
    return EXIT.OK;
  }
  return await runClient(options);
}

if (import.meta.main) run(main);
