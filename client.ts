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

import { CLIENT_HOST, MAXLINE, SERV_PORT } from "./src/constants.ts";
import {
  connect,
  type ConnectTlsOptions,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  exchange,
  type ExchangeResult,
} from "./src/request.ts";
import {
  type LoadMode,
  type LoadProgress,
  type LoadReport,
  runLoad,
} from "./src/load.ts";
import {
  CliError,
  EXIT,
  EXIT_CODES_HELP,
  explainNetworkError,
  formatAddr,
  joinHostPort,
  type NetworkContext,
  optionalString,
  parseChoice,
  parseCount,
  parseFlags,
  parseHost,
  parsePort,
  parseSeconds,
  printWarning,
  readPemFile,
  run,
} from "./src/_cli.ts";
import { describeTlsFailure, formatTlsFailure } from "./src/_tls_errors.ts";
import { ClientTrace, formatTrace, type TraceEvent } from "./src/_trace.ts";
import { closeQuietly, writeAll } from "./src/_io.ts";
import { ProgressLine } from "./src/_progress.ts";
import { VERSION } from "./src/version.ts";
import { format as formatBytes } from "@std/fmt/bytes";

/** The client's command-line options, validated. */
export interface ClientCliOptions {
  /** Server host name or address. */
  hostname: string;
  /** Server TCP port. */
  port: number;
  /** A Unix socket path to connect to instead of TCP. */
  unix: string | undefined;
  /** The message; `-` for stdin; undefined when none was given. */
  message: string | undefined;
  /** The question-and-answer loop: one line of stdin per request. */
  interactive: boolean;
  /** Connect and reply time limit in milliseconds; 0 for none. */
  timeout: number;
  /** Only the reply: no header line, no warnings. */
  quiet: boolean;
  /** Load-generator mode, or undefined for a normal exchange. */
  bench: LoadMode | undefined;
  /** --bench: connections in flight; 0 for the mode's default. */
  connections: number;
  /** --bench: how long, in milliseconds. */
  duration: number;
  /** --bench: bytes per message or write; 0 for the mode's default. */
  size: number;
  /** --bench: the report as JSON. */
  json: boolean;
  /** Speak TLS. */
  tls: boolean;
  /** --tls: a PEM file of a CA to trust on top of the default roots. */
  ca: string | undefined;
  /** --tls: the name sent (SNI) and checked; the host by default. */
  servername: string | undefined;
  /** --tls: a client certificate (PEM) to present. */
  cert: string | undefined;
  /** --tls: the client certificate's key (PEM). */
  key: string | undefined;
  /** --tls: the handshake's time limit in milliseconds; 0 for none. */
  handshakeTimeout: number;
  /** Trace each socket call on stderr. */
  trace: boolean;
  /** Send a PROXY protocol header of this version first. */
  proxyProtocol: 1 | 2 | undefined;
  /** --tls: the options for connect(), with the files' contents. */
  tlsConnect: ConnectTlsOptions | undefined;
  help: boolean;
  version: boolean;
}

/** Every option's default, in one place. */
export const CLIENT_DEFAULTS: Readonly<ClientCliOptions> = {
  hostname: CLIENT_HOST,
  port: SERV_PORT,
  unix: undefined,
  message: undefined,
  interactive: false,
  timeout: 0,
  quiet: false,
  bench: undefined,
  connections: 0,
  duration: 10_000,
  size: 0,
  json: false,
  tls: false,
  ca: undefined,
  servername: undefined,
  cert: undefined,
  key: undefined,
  handshakeTimeout: DEFAULT_HANDSHAKE_TIMEOUT_MS,
  tlsConnect: undefined,
  trace: false,
  proxyProtocol: undefined,
  help: false,
  version: false,
};

/** The seed's usage line, printed when the message is missing. */
const SEED_USAGE = "usage: ./client message";

/** The size of each read from stdin. */
const STDIN_CHUNK_SIZE = 64 * 1024;

/**
 * Parses and validates the client's arguments.
 *
 * @param args The command-line arguments.
 * @returns The options, with defaults filled in.
 * @throws {CliError} For an unknown flag, a bad value or extra arguments.
 */
export function parseClientArgs(args: string[]): ClientCliOptions {
  const flags = parseFlags(args, {
    string: [
      "host",
      "port",
      "unix",
      "timeout",
      "bench",
      "connections",
      "duration",
      "size",
      "ca",
      "servername",
      "cert",
      "key",
      "handshake-timeout",
      "proxy-protocol",
    ],
    boolean: [
      "interactive",
      "quiet",
      "json",
      "tls",
      "trace",
      "help",
      "version",
    ],
    alias: { i: "interactive", q: "quiet", h: "help", V: "version" },
  });
  if (flags._.length > 1) {
    throw new CliError(
      `Too many arguments: quote the message as one argument, e.g. "${
        flags._.join(" ")
      }"`,
      EXIT.USAGE,
    );
  }
  const d = CLIENT_DEFAULTS;
  const options: ClientCliOptions = {
    hostname: parseHost(flags.host, d.hostname),
    port: parsePort(flags.port, d.port),
    unix: flags.unix === undefined ? d.unix : String(flags.unix),
    message: flags._[0] ?? d.message,
    interactive: flags.interactive === true,
    timeout: parseSeconds("timeout", flags.timeout, d.timeout),
    quiet: flags.quiet === true,
    bench: flags.bench === undefined
      ? d.bench
      : parseChoice<LoadMode>("bench", flags.bench, [
        "rtt",
        "stream",
        "oneshot",
      ]),
    connections: parseCount("connections", flags.connections, d.connections),
    duration: parseSeconds("duration", flags.duration, d.duration),
    size: parseCount("size", flags.size, d.size),
    json: flags.json === true,
    tls: flags.tls === true,
    ca: optionalString(flags.ca),
    servername: optionalString(flags.servername),
    cert: optionalString(flags.cert),
    key: optionalString(flags.key),
    handshakeTimeout: parseSeconds(
      "handshake-timeout",
      flags["handshake-timeout"],
      d.handshakeTimeout,
    ),
    tlsConnect: d.tlsConnect,
    trace: flags.trace === true,
    proxyProtocol: flags["proxy-protocol"] === undefined
      ? d.proxyProtocol
      : parseChoice("proxy-protocol", flags["proxy-protocol"], ["v1", "v2"]) ===
          "v1"
      ? 1
      : 2,
    help: flags.help === true,
    version: flags.version === true,
  };
  const benchOnly = ["connections", "duration", "size", "json"]
    .find((name) => flags[name] !== undefined && flags[name] !== false);
  if (options.bench === undefined && benchOnly !== undefined) {
    throw new CliError(
      `Conflicting flags: --${benchOnly} goes with --bench MODE`,
      EXIT.USAGE,
    );
  }
  if (
    options.bench !== undefined &&
    (options.interactive || options.message !== undefined)
  ) {
    throw new CliError(
      "Conflicting arguments: --bench sends its own messages; leave out MESSAGE, - and -i",
      EXIT.USAGE,
    );
  }
  if (
    options.unix !== undefined &&
    (flags.host !== undefined || flags.port !== undefined)
  ) {
    throw new CliError(
      "Conflicting flags: --unix cannot be combined with --host or --port",
      EXIT.USAGE,
    );
  }
  const tlsOnly = ["ca", "servername", "cert", "key", "handshake-timeout"]
    .find((name) => flags[name] !== undefined);
  if (!options.tls && tlsOnly !== undefined) {
    throw new CliError(
      `Conflicting flags: --${tlsOnly} goes with --tls`,
      EXIT.USAGE,
    );
  }
  if (options.trace && options.bench !== undefined) {
    throw new CliError(
      "Conflicting flags: --trace follows one connection and cannot be combined with --bench",
      EXIT.USAGE,
    );
  }
  if (options.trace && options.quiet) {
    throw new CliError(
      "Conflicting flags: --trace cannot be combined with --quiet",
      EXIT.USAGE,
    );
  }
  if (options.proxyProtocol !== undefined && options.unix !== undefined) {
    throw new CliError(
      "Conflicting flags: --proxy-protocol cannot be combined with --unix",
      EXIT.USAGE,
    );
  }
  if (options.proxyProtocol !== undefined && options.cert !== undefined) {
    throw new CliError(
      "Conflicting flags: Deno cannot send a PROXY header before TLS with a client certificate (--cert)",
      EXIT.USAGE,
    );
  }
  if (options.tls && options.unix !== undefined) {
    throw new CliError(
      "Conflicting flags: --tls cannot be combined with --unix",
      EXIT.USAGE,
    );
  }
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new CliError(
      `Missing flag: --${
        options.cert === undefined ? "cert" : "key"
      } goes with --${options.cert === undefined ? "key" : "cert"}`,
      EXIT.USAGE,
    );
  }
  if (options.cert !== undefined && options.servername !== undefined) {
    throw new CliError(
      "Conflicting flags: Deno cannot send a client certificate (--cert) with another --servername; connect with --host NAME instead",
      EXIT.USAGE,
    );
  }
  if (options.interactive && options.message !== undefined) {
    throw new CliError(
      `Conflicting arguments: --interactive reads its lines from stdin, not "${options.message}"`,
      EXIT.USAGE,
    );
  }
  return options;
}

function printUsage(): void {
  const d = CLIENT_DEFAULTS;
  console.log(`upcase client ${VERSION}
Sends MESSAGE to an upcase server, half-closes, and prints the reply.

Usage:
  deno run --allow-net=HOST:PORT client.ts [options] MESSAGE
  deno run --allow-net=HOST:PORT client.ts [options] - < FILE
  deno run --allow-net=HOST:PORT client.ts [options] --interactive
  deno run --allow-net=HOST:PORT client.ts [options] --bench MODE

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
  -h, --help             show this help
  -V, --version          show the version

The --allow-net permission must name the same HOST:PORT, e.g.
  deno run --allow-net=${d.hostname}:${d.port} client.ts "hello, world"
(--unix PATH needs --allow-net=unix:PATH --allow-read=PATH --allow-write=PATH;
--ca, --cert and --key need --allow-read for their files.)

A reply shorter than the message (the seed's server.c reads at most ${MAXLINE} bytes)
is printed as it came, with a warning on stderr.

${EXIT_CODES_HELP}`);
}

/** Thrown when nobody reads stdout any more (`client.ts - | head -c 10`). */
class OutputClosed extends Error {}

/** Writes to stdout; a reader that has gone becomes {@linkcode OutputClosed}. */
async function writeOut(bytes: Uint8Array): Promise<void> {
  try {
    await writeAll(Deno.stdout, bytes);
  } catch (err: unknown) {
    if (err instanceof Deno.errors.BrokenPipe) throw new OutputClosed();
    throw err;
  }
}

/** Closes the connection when time runs out; each wait arms it anew. */
class Deadline {
  #ms: number;
  #onExpire: () => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  expired = false;

  constructor(ms: number, onExpire: () => void) {
    this.#ms = ms;
    this.#onExpire = onExpire;
  }

  arm(): void {
    if (this.#ms === 0) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.expired = true;
      this.#onExpire();
    }, this.#ms);
  }

  disarm(): void {
    clearTimeout(this.#timer);
  }
}

function networkContext(options: ClientCliOptions): NetworkContext {
  return options.unix === undefined
    ? { action: "connect", hostname: options.hostname, port: options.port }
    : { action: "connect", path: options.unix };
}

function addressOf(options: ClientCliOptions): string {
  return options.unix ?? joinHostPort(options.hostname, options.port);
}

function seconds(ms: number): string {
  return `${ms / 1000} s`;
}

/** `--tls`: reads the PEM files, for {@linkcode connect}. */
async function loadTls(
  options: ClientCliOptions,
): Promise<ConnectTlsOptions | undefined> {
  if (!options.tls) return undefined;
  return {
    caCerts: options.ca === undefined
      ? undefined
      : [await readPemFile("ca", options.ca)],
    serverName: options.servername,
    cert: options.cert === undefined
      ? undefined
      : await readPemFile("cert", options.cert),
    key: options.key === undefined
      ? undefined
      : await readPemFile("key", options.key),
    handshakeTimeout: options.handshakeTimeout,
  };
}

/**
 * Turns a failure to connect or exchange into one line: a TLS failure in
 * words (with --tls), else what {@linkcode explainNetworkError} says.
 */
function explainFailure(err: unknown, options: ClientCliOptions): unknown {
  if (options.tls) {
    if (err instanceof Deno.errors.TimedOut) {
      return new CliError(
        `Timed out: no TLS handshake with ${addressOf(options)} within ${
          seconds(options.handshakeTimeout)
        } (is it a TLS server? see --handshake-timeout)`,
        EXIT.TIMEOUT,
      );
    }
    const failure = describeTlsFailure(err, "server");
    if (failure !== undefined) {
      return new CliError(
        `${formatTlsFailure(failure)}`.replace(
          /^([^:]*): /,
          `$1: ${addressOf(options)}: `,
        ),
        EXIT.NETWORK,
      );
    }
  }
  return explainNetworkError(err, networkContext(options));
}

/** --trace: the connection, with a line on stderr for each socket call. */
function traced(conn: Deno.Conn, options: ClientCliOptions): Deno.Conn {
  const encoder = new TextEncoder();
  const emit = (event: TraceEvent) =>
    Deno.stderr.writeSync(encoder.encode(`${formatTrace(event)}\n`));
  if (options.proxyProtocol !== undefined) {
    emit({
      id: 0,
      side: "client",
      call: "proxy",
      text: `PROXY header (v${options.proxyProtocol}) sent first, naming ${
        formatAddr(conn.localAddr)
      } as the client`,
    });
  }
  // exchange() and the loops use only read, write, closeWrite and close.
  return new ClientTrace(conn, emit, options.tls) as unknown as Deno.Conn;
}

/** Connects, within the timeout, explaining any failure in one line. */
async function open(options: ClientCliOptions): Promise<Deno.Conn> {
  const connecting = connect({
    hostname: options.hostname,
    port: options.port,
    path: options.unix,
    tls: options.tlsConnect,
    proxyHeader: options.proxyProtocol,
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    if (options.timeout === 0) return;
    timer = setTimeout(() => {
      connecting.then(closeQuietly, () => {});
      reject(
        new CliError(
          `Timed out: could not connect to ${addressOf(options)} within ${
            seconds(options.timeout)
          }`,
          EXIT.TIMEOUT,
        ),
      );
    }, options.timeout);
  });
  try {
    const conn = await Promise.race([connecting, expired]);
    return options.trace ? traced(conn, options) : conn;
  } catch (err: unknown) {
    if (err instanceof CliError) throw err;
    throw explainFailure(err, options);
  } finally {
    clearTimeout(timer);
  }
}

/** Turns a failure during the exchange into one line. */
function explainExchangeError(
  err: unknown,
  options: ClientCliOptions,
  deadline: Deadline,
): unknown {
  if (deadline.expired) {
    return new CliError(
      `Timed out: no complete reply from ${addressOf(options)} within ${
        seconds(options.timeout)
      }`,
      EXIT.TIMEOUT,
    );
  }
  return explainFailure(err, options);
}

/**
 * Connects, sends `source`, half-closes and passes the reply to `sink`, all
 * within the timeout; a server that closes without a byte of reply is an
 * error.
 */
async function exchangeWithin(
  options: ClientCliOptions,
  source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  sink: (bytes: Uint8Array) => void | Promise<void>,
): Promise<ExchangeResult> {
  const conn = await open(options);
  const deadline = new Deadline(options.timeout, () => closeQuietly(conn));
  let result: ExchangeResult;
  deadline.arm();
  try {
    result = await exchange(conn, source, sink);
    if (deadline.expired) throw new Deno.errors.TimedOut();
  } catch (err: unknown) {
    throw explainExchangeError(err, options, deadline);
  } finally {
    deadline.disarm();
    closeQuietly(conn);
  }
  if (result.received === 0 && result.sent > 0) {
    throw new CliError(
      "Server closed the connection before replying",
      EXIT.CONNECTION_LOST,
    );
  }
  return result;
}

/** The seed's exchange: the message from argv, the reply after a header. */
async function sendMessage(options: ClientCliOptions, message: string) {
  const bytes = new TextEncoder().encode(message);
  const reply: Uint8Array[] = [];
  const { received } = await exchangeWithin(options, [bytes], (chunk) => {
    reply.push(chunk.slice());
  });
  const out = new TextEncoder();
  if (!options.quiet) await writeOut(out.encode("Response from server:\n"));
  for (const chunk of reply) await writeOut(chunk);
  await writeOut(out.encode("\n"));
  warnIfShort(options, received, bytes.length);
}

function warnIfShort(
  options: ClientCliOptions,
  received: number,
  sent: number,
): void {
  if (received < sent && !options.quiet) {
    printWarning(
      `Reply truncated: got ${received} of ${sent} bytes; the server closed early (the seed's server.c reads at most ${MAXLINE})`,
    );
  }
}

/** Reads stdin in chunks; each is valid until the next is asked for. */
async function* stdinChunks(): AsyncGenerator<Uint8Array> {
  const buf = new Uint8Array(STDIN_CHUNK_SIZE);
  while (true) {
    const n = await Deno.stdin.read(buf);
    if (n === null) return;
    yield buf.subarray(0, n);
  }
}

/**
 * `-`: stdin to the server, the reply to stdout as it arrives. A long run
 * shows a progress line on stderr when that is a terminal and stdout is not
 * (on one terminal the line would tear the reply).
 */
async function sendStdin(options: ClientCliOptions) {
  let sent = 0;
  let received = 0;
  const live = Deno.stderr.isTerminal() && !Deno.stdout.isTerminal() &&
    !options.quiet;
  const line = live
    ? new ProgressLine((ms) =>
      `sent ${formatBytes(sent)}, received ${formatBytes(received)}, ${
        formatBytes(received / Math.max(ms / 1000, 0.001))
      }/s, ${(ms / 1000).toFixed(1)} s`
    )
    : undefined;
  async function* counted(): AsyncGenerator<Uint8Array> {
    for await (const chunk of stdinChunks()) {
      yield chunk;
      sent += chunk.length;
    }
  }
  try {
    await exchangeWithin(options, counted(), (bytes) => {
      received += bytes.length;
      return writeOut(bytes);
    });
  } finally {
    line?.stop();
  }
  warnIfShort(options, received, sent);
}

/** Splits stdin into lines, each with its newline (the last may lack it). */
async function* stdinLines(): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array = new Uint8Array(0);
  for await (const chunk of stdinChunks()) {
    let start = 0;
    let newline = chunk.indexOf(0x0a);
    while (newline !== -1) {
      const line = chunk.subarray(start, newline + 1);
      yield pending.length > 0 ? concat(pending, line) : line;
      pending = new Uint8Array(0);
      start = newline + 1;
      newline = chunk.indexOf(0x0a, start);
    }
    pending = concat(pending, chunk.subarray(start));
    if (pending.length >= STDIN_CHUNK_SIZE) {
      yield pending; // a very long line goes out in pieces
      pending = new Uint8Array(0);
    }
  }
  if (pending.length > 0) yield pending;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * `--interactive`: the tutorial's loop. Each line goes out as it is read and
 * its reply (up to its newline) is printed before the next line is sent.
 */
async function interact(options: ClientCliOptions) {
  const conn = await open(options);
  if (Deno.stdin.isTerminal() && !options.quiet) {
    console.error(
      `Connected to ${
        addressOf(options)
      }: type a line and press Enter; Ctrl-D ends`,
    );
  }
  const deadline = new Deadline(options.timeout, () => closeQuietly(conn));
  const buf = new Uint8Array(STDIN_CHUNK_SIZE);
  let replies = 0;
  try {
    for await (const line of stdinLines()) {
      await writeAll(conn, line);
      if (line[line.length - 1] !== 0x0a) continue;
      deadline.arm();
      while (true) {
        const n = await conn.read(buf);
        if (n === null) {
          throw new CliError(
            `Connection lost: the server closed the connection after ${replies} ${
              replies === 1 ? "reply" : "replies"
            }`,
            EXIT.CONNECTION_LOST,
          );
        }
        await writeOut(buf.subarray(0, n));
        if (buf.subarray(0, n).includes(0x0a)) break;
      }
      deadline.disarm();
      replies++;
    }
    await conn.closeWrite();
    deadline.arm();
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      await writeOut(buf.subarray(0, n));
    }
  } catch (err: unknown) {
    if (err instanceof CliError) throw err;
    throw explainExchangeError(err, options, deadline);
  } finally {
    deadline.disarm();
    closeQuietly(conn);
  }
}

/** `--bench`: the load generator, with a progress line on a terminal. */
async function bench(options: ClientCliOptions): Promise<number> {
  const mode = options.bench!;
  // Unreachable server, missing permission: the usual one line and code.
  closeQuietly(await open(options));
  const live = Deno.stderr.isTerminal() && !options.quiet && !options.json;
  let latest: LoadProgress | undefined;
  const line = live
    ? new ProgressLine(() =>
      latest === undefined
        ? `${mode}: starting`
        : `${mode} ${(latest.elapsed / 1000).toFixed(1)} s: ${
          latest.requests.toLocaleString("en-US")
        } requests, ${
          formatBytes(latest.bytes / (latest.elapsed / 1000))
        }/s, ${latest.errors} errors`
    )
    : undefined;
  let report: LoadReport;
  try {
    report = await runLoad({
      mode,
      hostname: options.hostname,
      port: options.port,
      path: options.unix,
      tls: options.tlsConnect,
      proxyHeader: options.proxyProtocol,
      connections: options.connections || undefined,
      duration: options.duration,
      size: options.size || undefined,
      onProgress: live ? (p) => latest = p : undefined,
    });
  } finally {
    line?.stop();
  }
  console.log(
    options.json
      ? JSON.stringify(report)
      : formatReport(report, addressOf(options)),
  );
  return report.errors > 0 ? EXIT.CONNECTION_LOST : EXIT.OK;
}

/** The --bench report for people. */
function formatReport(r: LoadReport, address: string): string {
  const ms = (value: number) => `${value.toFixed(value < 10 ? 3 : 1)} ms`;
  const lines: string[] = [
    `upcase load: ${r.mode}, ${r.connections} connection${
      r.connections === 1 ? "" : "s"
    }, ${formatBytes(r.size, { binary: true })} ${
      r.mode === "stream" ? "writes" : "messages"
    }, ${r.seconds.toFixed(1)} s against ${address}`,
    `throughput  ${formatBytes(r.bytesPerSecond)}/s verified (${
      formatBytes(r.bytesReceived)
    } received, ${formatBytes(r.bytesSent)} sent)`,
  ];
  if (r.mode !== "stream") {
    lines.splice(
      1,
      0,
      `requests    ${r.requests.toLocaleString("en-US")} (${
        Math.round(r.requestsPerSecond).toLocaleString("en-US")
      }/s)`,
    );
  }
  if (r.latency) {
    const l = r.latency;
    lines.push(
      `latency     p50 ${ms(l.p50)}  p90 ${ms(l.p90)}  p99 ${
        ms(l.p99)
      }  p99.9 ${ms(l.p999)}  max ${ms(l.max)}`,
    );
  }
  lines.push(
    `errors      ${r.errors}${
      r.errorSamples.length > 0 ? ` (${r.errorSamples.join("; ")})` : ""
    }`,
  );
  return lines.join("\n");
}

async function main(): Promise<number> {
  const parsed = parseClientArgs(Deno.args);
  if (parsed.help) {
    printUsage();
    return EXIT.OK;
  }
  if (parsed.version) {
    console.log(`upcase client ${VERSION}`);
    return EXIT.OK;
  }
  const options = { ...parsed, tlsConnect: await loadTls(parsed) };
  if (options.bench !== undefined) return await bench(options);
  if (!options.interactive && options.message === undefined) {
    console.error(SEED_USAGE);
    return EXIT.USAGE;
  }
  try {
    if (options.interactive) await interact(options);
    else if (options.message === "-") await sendStdin(options);
    else await sendMessage(options, options.message!);
  } catch (err: unknown) {
    // The reader of stdout stopped (`| head`): its choice, not a failure.
    if (err instanceof OutputClosed) return EXIT.OK;
    throw err;
  }
  return EXIT.OK;
}

if (import.meta.main) run(main);
