// Copyright the upcase authors. MIT license.
/**
 * A load generator for upcase and any other echo-style server that sends
 * back the ASCII upper case of what it gets: round trips, streams and
 * one-shot connections, with every reply byte checked.
 *
 * `client.ts --bench MODE` is its command line.
 *
 * @module
 */

import { toUpper } from "./transform.ts";
import { connect, type ConnectOptions } from "./request.ts";
import { closeQuietly, errorMessage, writeAll } from "./_io.ts";
import { CLIENT_HOST, SERV_PORT } from "./constants.ts";
import { Receiver, udpAddresses } from "./_udp_socket.ts";

/**
 * What a load run does on each connection:
 * - `rtt`: write a message, read its whole reply, repeat (one connection per
 *   worker, kept open);
 * - `stream`: write without pause while reading the reply concurrently;
 * - `oneshot`: connect, write a message, half-close, read to EOF, close
 *   (the seed's pattern), repeat.
 */
export type LoadMode = "rtt" | "stream" | "oneshot";

/** Options for {@linkcode runLoad}. */
export interface LoadOptions extends ConnectOptions {
  /** The pattern of traffic. */
  mode: LoadMode;
  /**
   * Connections (or one-shot exchanges) in flight at once.
   *
   * @default {50 for rtt, 1 for stream, 20 for oneshot}
   */
  connections?: number;
  /**
   * How long to run, in milliseconds.
   *
   * @default {10000}
   */
  duration?: number;
  /**
   * Bytes per message (rtt, oneshot) or per write (stream).
   *
   * @default {64 for rtt, 65536 for stream, 32 for oneshot}
   */
  size?: number;
  /**
   * Stop a stream after this many bytes per connection instead of at the
   * end of `duration` (whichever comes first).
   *
   * @default {Infinity}
   */
  streamBytes?: number;
  /**
   * Called about four times a second with the figures so far.
   *
   * @default {undefined}
   */
  onProgress?: (progress: LoadProgress) => void;
  /**
   * `rtt` over UDP: each worker keeps one datagram outstanding on a socket
   * of its own; a reply that does not come within
   * {@linkcode UDP_LOSS_MS} counts as lost, and the datagram goes again.
   *
   * @default {false}
   */
  udp?: boolean;
}

/** UDP rtt: how long a datagram's reply may take before it counts as lost. */
export const UDP_LOSS_MS = 200;

/** Figures of a load run in progress. */
export interface LoadProgress {
  /** Milliseconds since the start. */
  elapsed: number;
  /** Round trips or one-shot exchanges completed and verified. */
  requests: number;
  /** Bytes received and verified. */
  bytes: number;
  /** Failed connections and replies that differed. */
  errors: number;
}

/** Latency percentiles, in milliseconds. */
export interface Latency {
  /** The median. */
  p50: number;
  /** 90 % of requests took at most this long. */
  p90: number;
  /** 99 % of requests took at most this long. */
  p99: number;
  /** 99.9 % of requests took at most this long. */
  p999: number;
  /** The slowest request. */
  max: number;
}

/** The result of {@linkcode runLoad}. */
export interface LoadReport {
  /** The mode that ran. */
  mode: LoadMode;
  /** Connections in flight. */
  connections: number;
  /** Bytes per message (rtt, oneshot) or per write (stream). */
  size: number;
  /** Seconds the run took. */
  seconds: number;
  /** Round trips or one-shot exchanges completed, every byte verified. */
  requests: number;
  /** Requests per second. */
  requestsPerSecond: number;
  /** Bytes written to the server. */
  bytesSent: number;
  /** Bytes received from the server (every one verified). */
  bytesReceived: number;
  /** Verified reply bytes per second. */
  bytesPerSecond: number;
  /** Per round trip (rtt) or exchange (oneshot); undefined for stream. */
  latency: Latency | undefined;
  /** Failed connections plus replies that differed from the expected bytes. */
  errors: number;
  /** The first few error messages. */
  errorSamples: string[];
  /** UDP rtt: datagrams whose reply did not come in time (sent again). */
  lost?: number;
}

const DEFAULTS: Record<LoadMode, { connections: number; size: number }> = {
  rtt: { connections: 50, size: 64 },
  stream: { connections: 1, size: 64 * 1024 },
  oneshot: { connections: 20, size: 32 },
};
const DEFAULT_DURATION_MS = 10_000;
const ERROR_SAMPLES = 5;
const PROGRESS_EVERY_MS = 250;

/**
 * Latencies in a log-linear histogram: 1 % precision, fixed memory however
 * long the run.
 */
class Histogram {
  static readonly #GROWTH = Math.log(1.01);
  #counts = new Float64Array(2400); // 1 µs to hours
  #count = 0;
  #max = 0;

  record(ms: number): void {
    const us = Math.max(1, ms * 1000);
    const index = Math.min(
      this.#counts.length - 1,
      Math.floor(Math.log(us) / Histogram.#GROWTH),
    );
    this.#counts[index]!++;
    this.#count++;
    if (ms > this.#max) this.#max = ms;
  }

  percentile(p: number): number {
    const rank = Math.ceil(this.#count * p);
    let seen = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank && seen > 0) {
        return Math.min(
          this.#max,
          Math.exp((i + 1) * Histogram.#GROWTH) / 1000,
        );
      }
    }
    return this.#max;
  }

  summary(): Latency | undefined {
    if (this.#count === 0) return undefined;
    return {
      p50: this.percentile(0.5),
      p90: this.percentile(0.9),
      p99: this.percentile(0.99),
      p999: this.percentile(0.999),
      max: this.#max,
    };
  }
}

/** Shared counters of one run. */
class Tally {
  requests = 0;
  bytesSent = 0;
  bytesReceived = 0;
  errors = 0;
  errorSamples: string[] = [];
  latency = new Histogram();
  lost = 0;

  fail(message: string): void {
    this.errors++;
    if (this.errorSamples.length < ERROR_SAMPLES) {
      this.errorSamples.push(message);
    }
  }
}

/** A message of `size` bytes, mixed case, every byte value in the mix. */
function makeMessage(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    // Mostly letters, so the transform has work; now and then any byte.
    const r = x >>> 0;
    out[i] = r % 8 === 0 ? r >>> 24 : 0x41 + (r >>> 8) % 58;
  }
  return out;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Reads exactly `into.length` bytes; false at EOF first. */
async function readFull(conn: Deno.Conn, into: Uint8Array): Promise<boolean> {
  let filled = 0;
  while (filled < into.length) {
    const n = await conn.read(into.subarray(filled));
    if (n === null) return false;
    filled += n;
  }
  return true;
}

/** Runs `work` on a new connection; any failure counts as an error. */
async function onConnection(
  options: LoadOptions,
  tally: Tally,
  work: (conn: Deno.Conn) => Promise<void>,
): Promise<void> {
  let conn: Deno.Conn | undefined;
  try {
    conn = await connect(options);
    await work(conn);
  } catch (err: unknown) {
    tally.fail(errorMessage(err));
  } finally {
    if (conn) closeQuietly(conn);
  }
}

/** One rtt worker: a connection kept open, message after message. */
async function roundTrips(
  options: LoadOptions,
  worker: number,
  size: number,
  until: number,
  tally: Tally,
): Promise<void> {
  const message = makeMessage(size, worker + 1);
  const expected = toUpper(message);
  const reply = new Uint8Array(size);
  await onConnection(options, tally, async (conn) => {
    while (performance.now() < until) {
      const started = performance.now();
      await writeAll(conn, message);
      tally.bytesSent += size;
      if (!await readFull(conn, reply)) {
        tally.fail("server closed the connection mid-run");
        return;
      }
      tally.latency.record(performance.now() - started);
      if (!equalBytes(reply, expected)) {
        tally.fail("a reply differed from the expected bytes");
        return;
      }
      tally.requests++;
      tally.bytesReceived += size;
    }
    await conn.closeWrite();
  });
}

/** One stream worker: write continuously, read and check concurrently. */
async function stream(
  options: LoadOptions,
  worker: number,
  size: number,
  until: number,
  tally: Tally,
): Promise<void> {
  const block = makeMessage(size, worker + 1);
  const expected = toUpper(block);
  const limit = options.streamBytes ?? Infinity;
  await onConnection(options, tally, async (conn) => {
    let sent = 0;
    const sending = (async () => {
      while (performance.now() < until && sent < limit) {
        const piece = limit - sent < size
          ? block.subarray(0, limit - sent)
          : block;
        await writeAll(conn, piece);
        sent += piece.length;
        tally.bytesSent += piece.length;
      }
      await conn.closeWrite();
    })();
    const buf = new Uint8Array(256 * 1024);
    let offset = 0; // position in the stream
    let ok = true;
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      for (let i = 0; i < n && ok; i++) {
        if (buf[i] !== expected[(offset + i) % size]) {
          tally.fail(`stream byte ${offset + i} differed`);
          ok = false;
        }
      }
      offset += n;
      tally.bytesReceived += n;
    }
    await sending;
    if (offset !== sent) {
      tally.fail(`stream reply had ${offset} of ${sent} bytes`);
    }
  });
}

/** One oneshot worker: the seed's exchange, again and again. */
async function oneShots(
  options: LoadOptions,
  worker: number,
  size: number,
  until: number,
  tally: Tally,
): Promise<void> {
  const message = makeMessage(size, worker + 1);
  const expected = toUpper(message);
  const reply = new Uint8Array(size + 1);
  while (performance.now() < until) {
    const started = performance.now();
    let conn: Deno.Conn | undefined;
    try {
      conn = await connect(options);
      await writeAll(conn, message);
      tally.bytesSent += size;
      await conn.closeWrite();
      let got = 0;
      while (true) {
        const n = await conn.read(reply.subarray(got));
        if (n === null) break;
        got += n;
        if (got === reply.length) break; // more than was sent: wrong
      }
      if (!equalBytes(reply.subarray(0, got), expected)) {
        tally.fail(
          `a reply of ${got} bytes differed from the ${size} expected`,
        );
        continue;
      }
      tally.latency.record(performance.now() - started);
      tally.requests++;
      tally.bytesReceived += got;
    } catch (err: unknown) {
      tally.fail(errorMessage(err));
      // Do not spin on a server that is gone.
      await new Promise((resolve) => setTimeout(resolve, 10));
    } finally {
      if (conn) closeQuietly(conn);
    }
  }
}

/** One UDP rtt worker: a socket of its own, one datagram outstanding. */
async function datagramRoundTrips(
  options: LoadOptions,
  worker: number,
  size: number,
  until: number,
  tally: Tally,
): Promise<void> {
  const message = makeMessage(size, worker + 1);
  const expected = toUpper(message);
  const { send, bind } = udpAddresses(options.hostname ?? CLIENT_HOST);
  const server: Deno.NetAddr = {
    transport: "udp",
    hostname: send,
    port: options.port ?? SERV_PORT,
  };
  let socket: Deno.DatagramConn;
  try {
    socket = Deno.listenDatagram({ transport: "udp", hostname: bind, port: 0 });
  } catch (err: unknown) {
    tally.fail(errorMessage(err));
    return;
  }
  const receiver = new Receiver(socket, size + 1);
  try {
    while (performance.now() < until) {
      const started = performance.now();
      await socket.send(message, server);
      tally.bytesSent += size;
      const got = await receiver.next(UDP_LOSS_MS);
      if (got === undefined) {
        tally.lost++;
        continue;
      }
      if (!equalBytes(got[0], expected)) {
        tally.fail(`a reply of ${got[0].length} bytes differed`);
        continue;
      }
      tally.latency.record(performance.now() - started);
      tally.requests++;
      tally.bytesReceived += size;
    }
  } catch (err: unknown) {
    tally.fail(errorMessage(err));
  } finally {
    receiver.close();
  }
}

const WORKERS = { rtt: roundTrips, stream, oneshot: oneShots } as const;

/**
 * Runs a load test against an echo-style upper-casing server and checks
 * every reply byte.
 *
 * @param options The mode, the server's address, how many connections, for
 *   how long, and how big the messages are.
 * @returns The figures: requests per second, throughput, latency, errors.
 *
 * @example A one-second round-trip test
 * ```ts
 * import { runLoad, serve } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * const report = await runLoad({
 *   mode: "rtt",
 *   port: server.addr.port,
 *   connections: 4,
 *   duration: 200,
 * });
 * assertEquals(report.errors, 0);
 * ```
 */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const defaults = DEFAULTS[options.mode];
  const connections = options.connections ?? defaults.connections;
  const size = options.size ?? defaults.size;
  const duration = options.duration ?? DEFAULT_DURATION_MS;
  const tally = new Tally();
  const started = performance.now();
  const until = started + duration;
  const progress = options.onProgress === undefined
    ? undefined
    : setInterval(() =>
      options.onProgress!({
        elapsed: performance.now() - started,
        requests: tally.requests,
        bytes: tally.bytesReceived,
        errors: tally.errors,
      }), PROGRESS_EVERY_MS);
  try {
    await Promise.all(
      Array.from(
        { length: connections },
        (_, i) =>
          (options.udp && options.mode === "rtt"
            ? datagramRoundTrips
            : WORKERS[options.mode])(options, i, size, until, tally),
      ),
    );
  } finally {
    clearInterval(progress);
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    mode: options.mode,
    connections,
    size,
    seconds,
    requests: tally.requests,
    requestsPerSecond: tally.requests / seconds,
    bytesSent: tally.bytesSent,
    bytesReceived: tally.bytesReceived,
    bytesPerSecond: tally.bytesReceived / seconds,
    latency: options.mode === "stream" ? undefined : tally.latency.summary(),
    errors: tally.errors,
    errorSamples: tally.errorSamples,
    ...(options.udp ? { lost: tally.lost } : {}),
  };
}
