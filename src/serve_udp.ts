// Copyright the upcase authors. MIT license.
/**
 * The UDP server: each datagram is answered with one datagram, its ASCII
 * letters upper-cased, sent back to the address and port it came from
 * (RFC 862's echo over UDP, upper-cased). Safe to expose: see
 * {@linkcode ServeUdpOptions.rate} and the sources it never answers.
 *
 * @module
 */

import { MAXLINE, SERV_PORT, SERVER_HOST } from "./constants.ts";
import { toUpperInPlace } from "./transform.ts";
import { errorMessage } from "./_io.ts";
import {
  DEFAULT_UDP_RATE,
  DROP_REASONS,
  type DropReason,
  isBroadcastOrMulticast,
  MAX_UDP_SOURCES,
  maySendTo,
  REFLECTING_PORTS,
  SourceLimiter,
} from "./_udp_guard.ts";

export { DEFAULT_UDP_RATE, DROP_REASONS, type DropReason, MAX_UDP_SOURCES };

/**
 * The receive buffer: larger than any UDP payload (65,535 bytes less the
 * headers), so `receive()`, which cuts a longer datagram silently, never
 * cuts one.
 */
export const UDP_RECEIVE_BUFFER_BYTES = 65_536;

/** At most this many "new source" lines a second; the rest are counted. */
const SOURCE_LINES_PER_SECOND = 10;

/** Options for {@linkcode serveUdp}. */
export interface ServeUdpOptions {
  /**
   * The address to bind.
   *
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * The port to bind; 0 for any free one.
   *
   * @default {6666}
   */
  port?: number;
  /**
   * The seed's `read(fd, buf, MAXLINE)` on a datagram socket: only the
   * first {@linkcode MAXLINE} bytes of each datagram come back, the rest of
   * it is discarded.
   *
   * @default {false}
   */
  once?: boolean;
  /**
   * Replies per second to one source address (a token bucket, bursts up to
   * the rate); 0 for no limit. Datagrams past it get no answer.
   *
   * @default {100}
   */
  rate?: number;
  /**
   * Source addresses the rate limiter remembers; the least recently seen
   * are forgotten first.
   *
   * @default {10000}
   */
  maxSources?: number;
  /**
   * Subnet broadcast addresses never to answer, on top of the fixed ones
   * (see `localBroadcasts()`: the CLI reads them when it may).
   *
   * @default {new Set()}
   */
  broadcasts?: ReadonlySet<string>;
  /** Emit a `udp-trace` event per datagram received and sent. */
  trace?: boolean | (() => boolean);
  /** Called for each {@linkcode UdpEvent}. */
  onEvent?: (event: UdpEvent) => void;
}

/** What the UDP server reports through {@linkcode ServeUdpOptions.onEvent}. */
export type UdpEvent =
  | {
    /** The socket is bound: the server answers from now on. */
    type: "udp-listen";
    addr: Deno.NetAddr;
  }
  | {
    /**
     * The first datagram from a source address the server had not seen (or
     * had forgotten). `logged` is false past a few a second: counted, not
     * worth a line each.
     */
    type: "udp-source";
    remote: Deno.NetAddr;
    logged: boolean;
  }
  | {
    /**
     * A datagram left unanswered. `first` is true for the first of its
     * reason: later ones are only counted.
     */
    type: "udp-drop";
    reason: DropReason;
    remote: Deno.NetAddr;
    first: boolean;
    /** For `permission` and `send-error`: what the send said. */
    error?: string;
  }
  | {
    /** `--trace`: a datagram received (`recvfrom`) or sent (`sendto`). */
    type: "udp-trace";
    call: "recvfrom" | "sendto";
    remote: Deno.NetAddr;
    bytes: number;
    /** `recvfrom` under `once`: the bytes kept of `bytes`. */
    kept?: number;
  }
  | {
    /** A receive that failed (not the one that ends at shutdown). */
    type: "udp-error";
    error: string;
  };

/** The UDP server's counters. */
export interface UdpStats {
  /** Datagrams received. */
  received: number;
  /** Datagrams sent back. */
  sent: number;
  /** Bytes received, in every datagram. */
  bytesIn: number;
  /** Bytes sent back. */
  bytesOut: number;
  /** Source addresses seen for the first time (again after being forgotten). */
  sources: number;
  /** Datagrams left unanswered, by reason. */
  dropped: Record<DropReason, number>;
}

/** A running UDP server; see {@linkcode serveUdp}. */
export class UdpServer {
  #socket: Deno.DatagramConn;
  #options: ServeUdpOptions;
  #limiter: SourceLimiter;
  #stats: UdpStats = {
    received: 0,
    sent: 0,
    bytesIn: 0,
    bytesOut: 0,
    sources: 0,
    dropped: Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<
      DropReason,
      number
    >,
  };
  #closing = false;
  #sourceLines = { second: -1, count: 0 };
  #broadcasts: ReadonlySet<string>;
  #port: number;
  /** Resolves once the socket is closed and the loop has ended. */
  readonly finished: Promise<void>;

  /**
   * Binds the socket and starts answering; {@linkcode serveUdp} is the
   * usual way in.
   *
   * @param options See {@linkcode serveUdp}.
   */
  constructor(options: ServeUdpOptions = {}) {
    this.#options = options;
    this.#socket = Deno.listenDatagram({
      transport: "udp",
      hostname: options.hostname ?? SERVER_HOST,
      port: options.port ?? SERV_PORT,
    });
    this.#port = (this.#socket.addr as Deno.NetAddr).port;
    this.#broadcasts = options.broadcasts ?? new Set();
    this.#limiter = new SourceLimiter(
      options.rate ?? DEFAULT_UDP_RATE,
      options.maxSources ?? MAX_UDP_SOURCES,
      (source) => this.#judge(source),
    );
    options.onEvent?.({ type: "udp-listen", addr: this.addr });
    this.finished = this.#loop();
  }

  /** The bound address (the port picked, for port 0). */
  get addr(): Deno.NetAddr {
    return this.#socket.addr as Deno.NetAddr;
  }

  /** The counters so far (a copy). */
  get stats(): UdpStats {
    return { ...this.#stats, dropped: { ...this.#stats.dropped } };
  }

  /**
   * Stops: closes the socket. A datagram has nothing to finish, so there
   * is no grace period.
   *
   * @returns A promise that resolves when the server has stopped.
   */
  async shutdown(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      this.#socket.close();
    }
    await this.finished;
  }

  /** Shuts the server down; for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  async #loop(): Promise<void> {
    const buffer = new Uint8Array(UDP_RECEIVE_BUFFER_BYTES);
    const emit = this.#options.onEvent ?? (() => {});
    const trace = this.#options.trace;
    const once = this.#options.once === true;
    let lastError = -Infinity;
    while (true) {
      let data: Uint8Array;
      let remote: Deno.NetAddr;
      try {
        const [received, from] = await this.#socket.receive(buffer);
        data = received;
        remote = from as Deno.NetAddr;
      } catch (err: unknown) {
        if (this.#closing) return;
        // At most one line a second for a socket that keeps failing.
        const now = performance.now();
        if (now - lastError >= 1000) {
          lastError = now;
          emit({ type: "udp-error", error: errorMessage(err) });
        }
        // Never spin on it either.
        await new Promise((resolve) => setTimeout(resolve, 10));
        continue;
      }
      const stats = this.#stats;
      stats.received++;
      stats.bytesIn += data.length;
      const reply = once ? data.subarray(0, MAXLINE) : data;
      const traced = typeof trace === "function" ? trace() : trace === true;
      if (traced) {
        emit({
          type: "udp-trace",
          call: "recvfrom",
          remote,
          bytes: data.length,
          ...(once ? { kept: reply.length } : {}),
        });
      }
      const reason = this.#refusal(remote, emit);
      if (reason !== undefined) {
        this.#drop(reason, remote, emit);
        continue;
      }
      toUpperInPlace(reply);
      try {
        await this.#socket.send(reply, remote);
      } catch (err: unknown) {
        if (this.#closing) return;
        this.#drop(
          err instanceof Deno.errors.NotCapable ? "permission" : "send-error",
          remote,
          emit,
          errorMessage(err),
        );
        continue;
      }
      stats.sent++;
      stats.bytesOut += reply.length;
      if (traced) {
        emit({
          type: "udp-trace",
          call: "sendto",
          remote,
          bytes: reply.length,
        });
      }
    }
  }

  /** Why a datagram from `remote` gets no answer, if it does not. */
  #refusal(
    remote: Deno.NetAddr,
    emit: (event: UdpEvent) => void,
  ): DropReason | undefined {
    // Another upcase (the default port, or this one's: two servers on the
    // same port number, or a datagram forged "from" this one) would answer.
    if (
      REFLECTING_PORTS.has(remote.port) || remote.port === SERV_PORT ||
      remote.port === this.#port
    ) {
      return "reflecting-port";
    }
    const source = this.#limiter.take(remote.hostname);
    if (source.verdict !== undefined) return source.verdict;
    if (source.fresh) {
      this.#stats.sources++;
      emit({ type: "udp-source", remote, logged: this.#sourceLine() });
    }
    return source.allowed ? undefined : "rate";
  }

  /**
   * Why a new source address is never answered, if it is not: asked once
   * per source, as neither answer changes.
   */
  #judge(hostname: string): DropReason | undefined {
    if (isBroadcastOrMulticast(hostname, this.#broadcasts)) {
      return "broadcast-source";
    }
    return maySendTo(hostname) ? undefined : "permission";
  }

  /** Whether a new source still gets a line this second. */
  #sourceLine(): boolean {
    const second = Math.floor(performance.now() / 1000);
    if (second !== this.#sourceLines.second) {
      this.#sourceLines = { second, count: 0 };
    }
    return ++this.#sourceLines.count <= SOURCE_LINES_PER_SECOND;
  }

  #drop(
    reason: DropReason,
    remote: Deno.NetAddr,
    emit: (event: UdpEvent) => void,
    error?: string,
  ): void {
    const first = this.#stats.dropped[reason]++ === 0;
    emit({
      type: "udp-drop",
      reason,
      remote,
      first,
      ...(error === undefined ? {} : { error }),
    });
  }
}

/**
 * Serves upcase over UDP: each datagram is answered with one datagram, its
 * ASCII letters upper-cased (C `toupper`), sent to the address and port it
 * came from. Never answered: datagrams from the source port of a service
 * that answers (echo, chargen, DNS...: a loop), from a broadcast or
 * multicast address, and past the per-source rate.
 *
 * Deno checks the destination of every datagram sent: the process needs
 * `--allow-net` for its clients' addresses with any port (e.g.
 * `--allow-net=127.0.0.1` for local clients), not only for its own port.
 *
 * @example Usage
 * ```ts
 * import { serveUdp } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serveUdp({ hostname: "127.0.0.1", port: 0 });
 * const socket = Deno.listenDatagram({
 *   transport: "udp",
 *   hostname: "127.0.0.1",
 *   port: 0,
 * });
 * await socket.send(new TextEncoder().encode("hello"), server.addr);
 * const [reply] = await socket.receive();
 * assertEquals(new TextDecoder().decode(reply), "HELLO");
 * socket.close();
 * ```
 *
 * @param options The address, the mode, the rate limit, events.
 * @returns The running server; call {@linkcode UdpServer.shutdown} to stop.
 */
export function serveUdp(options: ServeUdpOptions = {}): UdpServer {
  return new UdpServer(options);
}
