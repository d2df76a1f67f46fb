// Copyright the upcase authors. MIT license.
// Running the client from its command line: the seed's exchange, stdin
// streaming, the interactive loop and the load generator, each failure in
// one line. Internal.

import { runUdpClient } from "./_udp_client.ts";
import { STDIN_CHUNK_SIZE, stdinChunks, stdinLines } from "./_stdin.ts";
import { MAXLINE } from "./constants.ts";
import {
  connect,
  type ConnectTlsOptions,
  exchange,
  type ExchangeResult,
} from "./request.ts";
import { type LoadProgress, type LoadReport, runLoad } from "./load.ts";
import {
  CliError,
  EXIT,
  explainNetworkError,
  formatAddr,
  joinHostPort,
  type NetworkContext,
  printWarning,
  readPemFile,
} from "./_cli.ts";
import { describeTlsFailure, formatTlsFailure } from "./_tls_errors.ts";
import { ClientTrace, formatTrace, type TraceEvent } from "./_trace.ts";
import { closeQuietly, isPeerGone, writeAll } from "./_io.ts";
import { ProgressLine } from "./_progress.ts";
import { format as formatBytes } from "@std/fmt/bytes";
import { type ClientCliOptions } from "./_client_args.ts";

/** The seed's usage line, printed when the message is missing. */
const SEED_USAGE = "usage: ./client message";

/**
 * The most bytes an upcase server sends back for each byte it gets: one with
 * the byte-exact transform, up to three with `--unicode` (the two bytes of
 * "ΐ" become the six of "Ϊ́"). A server that sends more is not upcase, or
 * floods: the client stops reading it rather than keep it all in memory.
 */
export const MAX_REPLY_PER_BYTE = 3;

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

/**
 * Closes the connection when time runs out; each wait arms it anew. A reply
 * that keeps coming can keep the timer from running (each read completes at
 * once), so the reading loops also call {@linkcode Deadline.check}.
 */
class Deadline {
  #ms: number;
  #onExpire: () => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #until = Infinity;
  expired = false;

  constructor(ms: number, onExpire: () => void) {
    this.#ms = ms;
    this.#onExpire = onExpire;
  }

  arm(): void {
    if (this.#ms === 0) return;
    clearTimeout(this.#timer);
    this.#until = performance.now() + this.#ms;
    this.#timer = setTimeout(() => this.#expire(), this.#ms);
  }

  disarm(): void {
    clearTimeout(this.#timer);
    this.#until = Infinity;
  }

  /** Expires now, throwing {@linkcode Deno.errors.TimedOut}, if time is up. */
  check(): void {
    if (performance.now() < this.#until) return;
    clearTimeout(this.#timer);
    this.#expire();
    throw new Deno.errors.TimedOut();
  }

  #expire(): void {
    if (this.expired) return;
    this.expired = true;
    this.#onExpire();
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

/** A byte count for people: 100000 is "100,000". */
function count(n: number): string {
  return n.toLocaleString("en-US");
}

/**
 * Whether every byte is ASCII. Then the reply has the request's length with
 * either transform; otherwise `--unicode` may make it longer or shorter.
 */
function isAscii(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! >= 0x80) return false;
  return true;
}

/**
 * `-` and `-i`: the reply ended before its end, the server having `reset`
 * or `closed` the connection.
 */
function lostError(
  how: "reset" | "closed",
  received: number,
  sent: number,
): CliError {
  return new CliError(
    `Connection lost: the server ${how} the connection after ${
      count(received)
    } of ${count(sent)} reply bytes`,
    EXIT.CONNECTION_LOST,
  );
}

/** Every mode: the server sent more than an upcase server can. */
function tooLongError(sent: number): CliError {
  return new CliError(
    `Reply too long: the server sent more than ${
      count(MAX_REPLY_PER_BYTE * sent)
    } bytes in reply to ${
      count(sent)
    } (at most ${MAX_REPLY_PER_BYTE} times the request)`,
    EXIT.CONNECTION_LOST,
  );
}

/**
 * Passes `bytes` to `sink` unless the reply, `received` bytes with them,
 * is longer than any upcase server sends for `sent` bytes: then passes the
 * part within the bound and throws, so that memory stays bounded.
 */
async function boundedReply(
  bytes: Uint8Array,
  received: number,
  sent: number,
  sink: (bytes: Uint8Array) => void | Promise<void>,
): Promise<void> {
  const over = received - MAX_REPLY_PER_BYTE * sent;
  if (over <= 0) return await sink(bytes);
  if (over < bytes.length) await sink(bytes.subarray(0, bytes.length - over));
  throw tooLongError(sent);
}

/** What {@linkcode exchangeWithin} did. */
interface Exchanged extends ExchangeResult {
  /** Every byte sent was ASCII (see {@linkcode isAscii}). */
  ascii: boolean;
}

/**
 * Connects, sends `source`, half-closes and passes the reply to `sink`, all
 * within the timeout; a server that closes without a byte of reply is an
 * error, and so is one that sends more than an upcase server can.
 */
async function exchangeWithin(
  options: ClientCliOptions,
  source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  sink: (bytes: Uint8Array) => void | Promise<void>,
): Promise<Exchanged> {
  const conn = await open(options);
  const deadline = new Deadline(options.timeout, () => closeQuietly(conn));
  let offered = 0; // handed to the socket: the reply cannot be for more
  let received = 0;
  let ascii = true;
  async function* counted(): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      offered += chunk.length;
      ascii &&= isAscii(chunk);
      yield chunk;
    }
  }
  let result: ExchangeResult;
  deadline.arm();
  try {
    result = await exchange(conn, counted(), (bytes) => {
      deadline.check();
      received += bytes.length;
      return boundedReply(bytes, received, offered, sink);
    });
    if (deadline.expired) throw new Deno.errors.TimedOut();
  } catch (err: unknown) {
    if (err instanceof CliError) throw err;
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
  return { ...result, ascii };
}

/**
 * The seed's exchange: the message from argv, the reply after a header. A
 * short reply is printed with a warning and exit 0, as the seed's server.c
 * gives one: it answers at most MAXLINE bytes, then resets.
 */
async function sendMessage(options: ClientCliOptions, message: string) {
  const bytes = new TextEncoder().encode(message);
  const reply: Uint8Array[] = [];
  const result = await exchangeWithin(options, [bytes], (chunk) => {
    reply.push(chunk.slice());
  });
  const out = new TextEncoder();
  if (!options.quiet) await writeOut(out.encode("Response from server:\n"));
  for (const chunk of reply) await writeOut(chunk);
  await writeOut(out.encode("\n"));
  warnIfShort(options, result, bytes.length);
}

/** Warns of a reply shorter than the `sent` bytes, saying how it ended. */
function warnIfShort(
  options: ClientCliOptions,
  { received, reset }: ExchangeResult,
  sent: number,
): void {
  if (received < sent && !options.quiet) {
    printWarning(
      `Reply truncated: got ${count(received)} of ${
        count(sent)
      } bytes; the server ${reset ? "reset the connection" : "closed early"}${
        received === MAXLINE
          ? ` (the seed's server.c reads at most ${MAXLINE})`
          : ""
      }`,
    );
  }
}

/**
 * `-`: stdin to the server, the reply to stdout as it arrives. A long run
 * shows a progress line on stderr when that is a terminal and stdout is not
 * (on one terminal the line would tear the reply). A reply that ends in a
 * reset, or short of the request's length, is an error once every byte that
 * came is on stdout.
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
  let result: Exchanged;
  try {
    result = await exchangeWithin(options, counted(), (bytes) => {
      received += bytes.length;
      return writeOut(bytes);
    });
  } finally {
    line?.stop();
  }
  if (result.reset) throw lostError("reset", result.received, result.sent);
  if (result.received < result.sent) {
    // Non-ASCII text may come back shorter from a --unicode server.
    if (result.ascii) throw lostError("closed", result.received, result.sent);
    warnIfShort(options, result, result.sent);
  }
}

/**
 * `--interactive`: the tutorial's loop. Each line goes out as it is read and
 * its reply (up to its newline) is printed before the next line is sent. A
 * reply that ends in a reset, or short of what was sent, is an error once
 * every byte that came is on stdout.
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
  let sent = 0;
  let received = 0;
  let ascii = true;
  /** The next piece of the reply, on stdout; its length, or null at EOF. */
  async function readReply(): Promise<number | null> {
    const n = await conn.read(buf);
    if (n === null) return null;
    deadline.check();
    received += n;
    await boundedReply(buf.subarray(0, n), received, sent, writeOut);
    return n;
  }
  try {
    for await (const line of stdinLines()) {
      ascii &&= isAscii(line);
      await writeAll(conn, line);
      sent += line.length;
      if (line[line.length - 1] !== 0x0a) continue;
      deadline.arm();
      while (true) {
        const n = await readReply();
        if (n === null) {
          throw new CliError(
            `Connection lost: the server closed the connection after ${replies} ${
              replies === 1 ? "reply" : "replies"
            }`,
            EXIT.CONNECTION_LOST,
          );
        }
        if (buf.subarray(0, n).includes(0x0a)) break;
      }
      deadline.disarm();
      replies++;
    }
    await conn.closeWrite();
    deadline.arm();
    while (await readReply() !== null);
  } catch (err: unknown) {
    if (err instanceof CliError) throw err;
    if (isPeerGone(err) && !deadline.expired) {
      throw lostError("reset", received, sent);
    }
    throw explainExchangeError(err, options, deadline);
  } finally {
    deadline.disarm();
    closeQuietly(conn);
  }
  // Non-ASCII text may come back shorter from a --unicode server.
  if (received < sent && ascii) throw lostError("closed", received, sent);
}

/** `--bench`: the load generator, with a progress line on a terminal. */
async function bench(options: ClientCliOptions): Promise<number> {
  const mode = options.bench!;
  // Unreachable server, missing permission: the usual one line and code.
  if (!options.udp) closeQuietly(await open(options));
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
      udp: options.udp,
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
    `upcase load: ${r.mode}, ${
      r.lost !== undefined
        ? `UDP, ${r.connections} datagram${
          r.connections === 1 ? "" : "s"
        } outstanding`
        : `${r.connections} connection${r.connections === 1 ? "" : "s"}`
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
  if (r.lost !== undefined) {
    lines.push(
      `lost        ${r.lost}${
        r.lost > 0
          ? " datagrams without a reply in 200 ms, sent again (none on loopback unless the server limits its rate: run it with --udp-rate 0, or a receive buffer overflowed)"
          : ""
      }`,
    );
  }
  lines.push(
    `errors      ${r.errors}${
      r.errorSamples.length > 0 ? ` (${r.errorSamples.join("; ")})` : ""
    }`,
  );
  return lines.join("\n");
}

/**
 * Runs the client the options describe: the seed's exchange, `-`, `-i` or
 * `--bench`.
 *
 * @param parsed Validated options.
 * @returns The exit code.
 */
export async function runClient(parsed: ClientCliOptions): Promise<number> {
  if (parsed.udp && parsed.bench === undefined) {
    if (!parsed.interactive && parsed.message === undefined) {
      console.error(SEED_USAGE);
      return EXIT.USAGE;
    }
    return await runUdpClient(parsed);
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
