// Copyright the upcase authors. MIT license.
/**
 * The upcase TCP server as a library: {@linkcode serve} listens, and every
 * connection gets its bytes back upper-cased, in order, until it half-closes.
 *
 * @module
 */

import { MAXLINE, SERV_PORT, SERVER_HOST } from "./constants.ts";
import { toUpperInPlace } from "./transform.ts";
import { UnicodeUpperCaser } from "./unicode.ts";
import { BufferPools, ReadBuffer } from "./_buffers.ts";
import type { Conn, ConnLayer, Listener } from "./_conn.ts";
import { type Connection, ConnectionTable } from "./_connections.ts";
import { closeQuietly, errorMessage, writeAll } from "./_io.ts";
import { listenTls, type RelayEvent, type TlsAcceptPath } from "./_tls.ts";
import { ServerTrace, type TraceEvent, traceEvent } from "./_trace.ts";
import {
  type AcceptPauseFault,
  type Fault,
  formatFault,
  parseFault,
  validateFault,
} from "./_fault_spec.ts";
import { FaultPlan, randomSeed, serverFaults } from "./_fault_plan.ts";
import { FaultConn } from "./_fault_conn.ts";
import { resetSocket } from "./_socket_shutdown.ts";
import {
  chainLayers,
  HeaderAborted,
  LayerError,
  proxyLayer,
} from "./_proxy.ts";
import { parseCidrs } from "./_cidr.ts";
import { nextAcceptBackoff, resetBeforeAccept } from "./_accept.ts";
import { type ConnLimit, LocalLimit } from "./_conn_limit.ts";
import {
  CLOSE_REASONS,
  type CloseReason,
  DurationHistogram,
  type DurationSnapshot,
} from "./metrics.ts";

/** Something the server did, for logging. See {@linkcode ServeOptions.onEvent}. */
export type ServerEvent =
  | {
    type: "listen";
    addr: Deno.Addr;
    /**
     * Set when the server speaks TLS: how it frees clients that never finish
     * their handshake (see {@linkcode ServeOptions.cert}).
     */
    tls?: "shutdown" | "relay";
    /** The active faults, as `--fault` strings, and their seed. */
    faults?: { specs: string[]; seed: number };
  }
  | {
    type: "connect";
    /** The connection's number: 1 for the first accepted, and so on. */
    id: number;
    remote: Deno.Addr;
    /** Set for a load balancer's health check (a PROXY v2 LOCAL header). */
    check?: true;
    /** The kinds of the faults that hit it (`["latency", "reset"]`). */
    faultKinds?: string[];
  }
  | {
    type: "close";
    id: number;
    remote: Deno.Addr;
    /** Bytes read from the client. */
    bytesIn: number;
    /** Bytes written back to the client. */
    bytesOut: number;
    /**
     * Set when the server cut the connection off itself: `"idle-timeout"`
     * when nothing moved for {@linkcode ServeOptions.idleTimeout},
     * `"shutdown"` when it was still open at the end of the grace period.
     */
    cutOff?: "idle-timeout" | "shutdown";
    /** Why the connection ended early, if it did: one line. */
    error?: string;
    /**
     * How it ended: `"eof"` (the exchange ended normally: the client
     * half-closed or closed), `"reset"`, `"error"`, `"idle-timeout"` or
     * `"shutdown"`.
     */
    reason: CloseReason;
    /** How long it was open, in milliseconds. */
    durationMs: number;
    /** Set for a load balancer's health check (a PROXY v2 LOCAL header). */
    check?: true;
    /** The faults that hit it, in words (`"reset after 100 B"`). */
    faults?: string[];
  }
  | {
    type: "refuse";
    remote: Deno.Addr;
    /** The limit that was reached, {@linkcode ServeOptions.maxConns}. */
    maxConns: number;
  }
  | {
    type: "accept-error";
    error: string;
    /**
     * Set when it was the TLS relay's inner listener (see
     * {@linkcode ServeOptions.cert}) that failed, not the server's own.
     */
    listener?: "tls-relay";
  }
  | {
    /**
     * TLS without `--allow-ffi`: a connection to the relay's inner loopback
     * port that the relay did not make (a local process found the port). It
     * was closed, but keeps a descriptor until its peer goes away. Only the
     * first of a burst is `logged`; every one is counted.
     */
    type: "relay-stray";
    remote: Deno.Addr;
    /** The inner port it came to. */
    port: number;
    /** Whether to log it: no stray was logged in the last 10 s. */
    logged: boolean;
  }
  | {
    /**
     * The relay's inner listener took its limit of strays, so the relay
     * moved to a fresh one on a new port (the old one closes once the
     * handshakes under way on it are done).
     */
    type: "relay-moved";
    /** The old inner port. */
    from: number;
    /** The new one. */
    to: number;
    /** The strays the old one took. */
    strays: number;
  }
  | {
    /**
     * A client reset while it waited in the kernel's accept queue: accept()
     * failed for it alone (its address is gone with it). Nothing to serve,
     * and no pause: the next client is taken at once.
     */
    type: "accept-reset";
  }
  | ({
    /**
     * With {@linkcode ServeCommonOptions.trace}: one socket call of a
     * connection and what it meant at the TCP level.
     */
    type: "trace";
  } & TraceEvent)
  | {
    /**
     * A new connection failed a step before the bytes flow: the PROXY
     * header or the TLS handshake. It was closed; it is not counted as
     * accepted.
     */
    type: "open-error";
    /** The step: `"tls"` (the handshake) or `"proxy"` (the header). */
    step: "tls" | "proxy";
    remote: Deno.Addr;
    /** What went wrong, in words. */
    error: string;
    /** `"handshake"` for TLS, `"header"` for the PROXY protocol. */
    reason: CloseReason;
  }
  | {
    /**
     * The faults were replaced (`PUT` or `DELETE /faults` on the metrics
     * address, with `--fault-api`): connections served from now on get
     * these.
     */
    type: "faults";
    /** The new faults, as `--fault` strings; empty: cleared. */
    faults: string[];
    /** Their seed. */
    seed: number | undefined;
    /** The peer that asked. */
    by: Deno.Addr;
  }
  | {
    /**
     * An `accept-pause` fault began: nothing is accepted for `ms`
     * milliseconds; new clients wait in the kernel's queue.
     */
    type: "accept-pause";
    ms: number;
  }
  | {
    /**
     * {@linkcode Server.shutdown} has closed the listener (after taking the
     * clients already waiting in the kernel's accept queue): no new client
     * gets in, the open ones have `graceMs` to finish.
     */
    type: "shutdown";
    graceMs: number;
    /** Connections open now. */
    open: number;
  };

/** Options for {@linkcode serve} common to TCP and Unix sockets. */
export interface ServeCommonOptions {
  /**
   * Reproduce the seed's `server.c`: one read of at most {@linkcode MAXLINE}
   * bytes per connection, reply, close.
   *
   * @default {false}
   */
  once?: boolean;
  /**
   * Upper-case UTF-8 text as Unicode (`"straße"` becomes `"STRASSE"`) instead
   * of the byte-exact ASCII transform; bytes that are not valid UTF-8 pass
   * through unchanged. See {@linkcode UnicodeUpperCaser}.
   *
   * @default {false}
   */
  unicode?: boolean;
  /**
   * The most connections served at once; a client beyond it is accepted and
   * closed at once (and a `refuse` event says so). 0 means no limit.
   *
   * @default {0}
   */
  maxConns?: number;
  /**
   * Close a connection when no byte has moved either way for this many
   * milliseconds. 0 means never.
   *
   * @default {0}
   */
  idleTimeout?: number;
  /**
   * Expect a PROXY protocol header (version 1 or 2, as HAProxy's
   * `proxy-protocol.txt` has it) at the start of every connection: a load
   * balancer's way to say who the client is. The events then give the
   * client the header names; a v2 LOCAL header (a health check) is served
   * as itself and its events say `check: true`. A connection without a
   * valid header within the timeout is closed with an `open-error` event.
   * `true` for the defaults.
   *
   * @default {undefined} (no header)
   */
  proxyProtocol?: boolean | ProxyProtocolOptions;
  /**
   * Emit a `trace` event for each socket call of each connection (accept,
   * every read and write with a preview of the bytes, EOF, a reset, a write
   * held back by flow control, close), in the seed tutorial's words: to
   * watch TCP at work. Off, it costs nothing. A function is asked at each
   * new connection (a live page turns tracing on while it watches).
   *
   * @default {false}
   */
  trace?: boolean | (() => boolean);
  /**
   * Called for each {@linkcode ServerEvent}, for logging. Must not throw.
   *
   * @default {undefined} (silent)
   */
  onEvent?: (event: ServerEvent) => void;
  /**
   * Misbehave on demand: faults that hit connections (latency, bandwidth,
   * slow read, slice, stall, close, reset, slow close, corrupt) or the
   * listener (accept pause), as typed objects or as `--fault` strings
   * (`"latency:delay=50ms"`). Which faults hit the k-th served connection
   * depends only on {@linkcode faultSeed}, k and this list. `reset` needs
   * `--allow-ffi` (on Linux).
   *
   * @default {[]}
   */
  faults?: readonly (Fault | string)[];
  /**
   * The seed of the faults' choices (an unsigned 32-bit integer); a random
   * one when absent (see {@linkcode Server.faultSeed}).
   *
   * @default {undefined}
   */
  faultSeed?: number;
}

/** Options of {@linkcode ServeCommonOptions.proxyProtocol}. */
export interface ProxyProtocolOptions {
  /**
   * Close a connection whose header is not complete after this many
   * milliseconds.
   *
   * @default {5000}
   */
  timeout?: number;
  /**
   * Only peers in these address ranges (CIDR, e.g. `"10.0.0.0/8"`,
   * `"::1/128"`) may connect: the load balancers. Others are closed
   * unanswered. Empty: any peer may send a header, and so name any client.
   *
   * @default {[]}
   */
  from?: string[];
}

/** Default of {@linkcode ProxyProtocolOptions.timeout}, in milliseconds. */
export const DEFAULT_PROXY_TIMEOUT_MS = 5000;

/** Options for {@linkcode serve} on TCP. */
export interface ServeOptions extends ServeCommonOptions {
  /**
   * The address to listen on: an IPv4 or IPv6 address or a host name.
   *
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * The TCP port to listen on; 0 picks a free one (see {@linkcode Server.addr}).
   *
   * @default {6666}
   */
  port?: number;
  /**
   * Serve TLS with this certificate chain (PEM), with {@linkcode key}; the
   * protocol inside is unchanged. A client that connects and never finishes
   * its handshake is closed after {@linkcode handshakeTimeout} (or the idle
   * timeout, if shorter), and really freed: with `--allow-ffi` granted (on
   * Linux) through `shutdown(2)`, else by relaying every connection through
   * an in-process TLS listener on a loopback port (about half the round
   * trips per second).
   *
   * @default {undefined} (plain TCP)
   */
  cert?: string;
  /**
   * The private key (PEM) of {@linkcode cert}.
   *
   * @default {undefined}
   */
  key?: string;
  /**
   * With TLS: close a client whose handshake is not done after this many
   * milliseconds. 0 means never (the idle timeout still applies).
   *
   * @default {10000}
   */
  handshakeTimeout?: number;
  /**
   * How many connections the kernel queues before they are accepted
   * (`listen(2)`'s backlog). A small one shows what a client does when the
   * server stops accepting (the `accept-pause` fault): the rest wait in
   * SYN-SENT and connect at their next SYN retry.
   *
   * @default {511}
   */
  backlog?: number;
}

/** Default of {@linkcode ServeOptions.backlog}: Deno's, and Linux's usual. */
export const DEFAULT_BACKLOG = 511;

/** Default of {@linkcode ServeOptions.handshakeTimeout}, in milliseconds. */
export const DEFAULT_SERVER_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Options for {@linkcode serve} on a Unix domain socket. */
export interface ServeUnixOptions extends ServeCommonOptions {
  /**
   * The socket's path. It must not exist yet; the server removes it when it
   * stops.
   */
  path: string;
}

/** Live counters of a running {@linkcode Server}. */
export interface ServerStats {
  /** Connections open now. */
  active: number;
  /** Connections accepted since start (refused ones not included). */
  accepted: number;
  /** Connections refused because {@linkcode ServeOptions.maxConns} were open. */
  refused: number;
  /** Connections closed by {@linkcode ServeOptions.idleTimeout}. */
  idleClosed: number;
  /** Connections still open, and so closed, when a shutdown's grace ended. */
  shutdownClosed: number;
  /** Bytes read from clients since start. */
  bytesIn: number;
  /** Bytes written to clients since start. */
  bytesOut: number;
  /** Connections that ended with an error (reset, broken pipe, ...). */
  errors: number;
  /** Connections that failed the TLS handshake (closed, not accepted). */
  handshakeErrors: number;
  /** Clients that reset while they waited to be accepted. */
  acceptResets: number;
  /**
   * TLS without `--allow-ffi`: connections to the relay's inner port that
   * the relay did not make (see {@linkcode ServerEvent} `relay-stray`).
   */
  relayStrays: number;
  /** How often the relay moved to a fresh inner port (`relay-moved`). */
  relayMoves: number;
  /**
   * Faults injected since start, by kind: connections hit by each
   * per-connection fault, and accept pauses begun.
   */
  faultsInjected: Record<string, number>;
  /**
   * Connections without a valid PROXY header, or from a peer outside
   * {@linkcode ProxyProtocolOptions.from} (closed, not accepted).
   */
  headerErrors: number;
  /** Connections closed, by how they ended (refused ones not included). */
  closed: Record<CloseReason, number>;
  /** How long the closed connections were open. */
  duration: DurationSnapshot;
}

/**
 * Counters of a server that has done nothing yet. Internal.
 *
 * @returns Zeros.
 */
export function emptyStats(): ServerStats {
  return {
    active: 0,
    accepted: 0,
    refused: 0,
    idleClosed: 0,
    shutdownClosed: 0,
    bytesIn: 0,
    bytesOut: 0,
    errors: 0,
    handshakeErrors: 0,
    headerErrors: 0,
    acceptResets: 0,
    relayStrays: 0,
    relayMoves: 0,
    faultsInjected: {},
    closed: Object.fromEntries(
      CLOSE_REASONS.map((reason) => [reason, 0]),
    ) as Record<CloseReason, number>,
    duration: new DurationHistogram().snapshot(),
  };
}

/** Options for {@linkcode Server.shutdown}. */
export interface ShutdownOptions {
  /**
   * How long open connections may go on before they are closed, in
   * milliseconds.
   *
   * @default {10000}
   */
  grace?: number;
}

/** Default of {@linkcode ShutdownOptions.grace}, in milliseconds. */
export const DEFAULT_GRACE_MS = 10_000;

/**
 * At shutdown the server goes on taking clients from the kernel's accept
 * queue (they have connected, and may have sent everything) until none
 * arrives for this long, in milliseconds ...
 */
const ACCEPT_QUEUE_QUIET_MS = 5;
/** ... or for at most this long (or the grace period, if shorter). */
const ACCEPT_QUEUE_DRAIN_MAX_MS = 100;

/**
 * A running upcase server, as returned by {@linkcode serve}.
 *
 * @typeParam A The address type: {@linkcode Deno.NetAddr} for TCP,
 *   {@linkcode Deno.UnixAddr} for a Unix socket.
 */
export class Server<A extends Deno.Addr = Deno.NetAddr> {
  /** The address the server is bound to (with the real port when 0 was asked). */
  readonly addr: A;
  /** Resolves once the server has stopped and every connection is closed. */
  readonly finished: Promise<void>;
  /** The active faults, as `--fault` strings (see {@linkcode ServeCommonOptions.faults}). */
  get faults(): readonly string[] {
    return this.#faultSpecs;
  }
  /**
   * The seed of the faults' choices: {@linkcode ServeCommonOptions.faultSeed},
   * or one picked when faults were first given; undefined before.
   */
  get faultSeed(): number | undefined {
    return this.#faultSeed;
  }

  #listener: Listener;
  #once: boolean;
  #trace: () => boolean;
  #unicode: boolean;
  #maxConns: number;
  #emit: (event: ServerEvent) => void;
  #stats: ServerStats = emptyStats();
  #durations = new DurationHistogram();
  #limit: ConnLimit;
  #conns: ConnectionTable;
  #layer: ConnLayer | undefined;
  #pools = new BufferPools();
  /** Set by the first {@linkcode Server.shutdown} call. */
  #closing = false;
  #graceMs = DEFAULT_GRACE_MS;
  /** Wakes the accept loop's current wait; replaced for every wait. */
  #wakeAcceptLoop: () => void = () => {};
  /** Resolved once the accept loop has closed the listener. */
  #listenerClosed = Promise.withResolvers<void>();
  /** Resolved by the first {@linkcode Server.shutdown} call. */
  #shutdownStarted = Promise.withResolvers<void>();
  #cleanup: (() => void) | undefined;
  /** Which faults hit which connection, when there are any. */
  #plan: FaultPlan | undefined;
  #faultSpecs: readonly string[] = [];
  #faultSeed: number | undefined;
  /** `accept-pause` faults: the listener's own. */
  #pauses: AcceptPauseFault[] = [];
  /** Connections served, checks not counted: the k of the fault plan. */
  #served = 0;
  #started = performance.now();
  /** The accept pause last begun (its start, ms after start), for the log. */
  #lastPause = -1;

  /** Use {@linkcode serve} to start a server. */
  constructor(
    listener: Listener,
    options: ServeCommonOptions,
    cleanup?: () => void,
    layer?: ConnLayer,
    tls?: Pick<TlsAcceptPath, "mode" | "report">,
    limit?: ConnLimit,
  ) {
    this.#listener = listener;
    this.#layer = layer;
    this.addr = listener.addr as A;
    this.#once = options.once ?? false;
    const trace = options.trace ?? false;
    this.#trace = typeof trace === "function" ? trace : () => trace;
    this.#unicode = options.unicode ?? false;
    this.#maxConns = options.maxConns ?? 0;
    this.#limit = limit ?? new LocalLimit(this.#maxConns);
    this.#conns = new ConnectionTable(options.idleTimeout ?? 0);
    this.#emit = options.onEvent ?? (() => {});
    this.#faultSeed = options.faultSeed;
    if (options.faults !== undefined && options.faults.length > 0) {
      this.setFaults(options.faults);
    }
    this.#cleanup = cleanup;
    this.#emit({
      type: "listen",
      addr: this.addr,
      ...(tls === undefined ? {} : { tls: tls.mode }),
      ...(this.#faultSeed === undefined || this.#faultSpecs.length === 0
        ? {}
        : { faults: { specs: [...this.#faultSpecs], seed: this.#faultSeed } }),
    });
    if (tls !== undefined) tls.report = (event) => this.#tlsEvent(event);
    this.finished = this.#acceptLoop();
  }

  /**
   * A snapshot of the server's counters. The byte counts include what the
   * connections still open have moved so far.
   */
  get stats(): ServerStats {
    const open = this.#conns.openBytes();
    return {
      ...this.#stats,
      bytesIn: this.#stats.bytesIn + open.bytesIn,
      bytesOut: this.#stats.bytesOut + open.bytesOut,
      closed: { ...this.#stats.closed },
      faultsInjected: { ...this.#stats.faultsInjected },
      duration: this.#durations.snapshot(),
    };
  }

  /**
   * Stops accepting at once (clients already in the kernel's accept queue are
   * still taken), lets open connections finish for up to `options.grace`
   * milliseconds, then closes the rest.
   *
   * @param options How long to wait for open connections.
   * @returns A promise that resolves when the server has stopped.
   */
  async shutdown(options: ShutdownOptions = {}): Promise<void> {
    const grace = options.grace ?? DEFAULT_GRACE_MS;
    const deadline = Date.now() + grace;
    if (!this.#closing) {
      this.#closing = true;
      this.#graceMs = grace;
      this.#shutdownStarted.resolve();
      this.#wakeAcceptLoop();
    }
    await this.#listenerClosed.promise;
    if (this.#conns.size > 0) {
      const expired = timer(Math.max(0, deadline - Date.now()));
      await Promise.race([this.#conns.empty(), expired.promise]);
      expired.cancel();
      this.#conns.closeAll("shutdown");
    }
    await this.finished;
  }

  /** Shuts the server down at once; for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown({ grace: 0 });
  }

  /**
   * Replaces the faults (see {@linkcode ServeCommonOptions.faults}); an
   * empty list clears them. Connections served from now on get the new ones;
   * those already open keep theirs (a stalled one stays stalled). The count
   * of served connections goes on, and the seed stays: a run replays from
   * its seed and the order of its changes.
   *
   * @param faults The new faults, as typed objects or `--fault` strings.
   * @throws {FaultSpecError} For a bad fault; nothing is changed then.
   */
  setFaults(faults: readonly (Fault | string)[]): void {
    const parsed = faults.map((f) =>
      typeof f === "string" ? parseFault(f) : validateFault(f)
    );
    if (parsed.length === 0) {
      this.#plan = undefined;
      this.#pauses = [];
      this.#faultSpecs = [];
      return;
    }
    this.#faultSeed ??= randomSeed();
    this.#plan = new FaultPlan(parsed, this.#faultSeed);
    this.#pauses = serverFaults(parsed);
    // An accept pause given now starts now, not at the server's start.
    this.#started = performance.now();
    this.#lastPause = -1;
    this.#faultSpecs = parsed.map(formatFault);
  }

  /** Counts and passes on what the TLS accept path reports. */
  #tlsEvent(event: RelayEvent): void {
    if (event.type === "relay-stray") this.#stats.relayStrays++;
    if (event.type === "relay-moved") this.#stats.relayMoves++;
    this.#emit(event);
  }

  /**
   * The next accept, after an accept pause if one is under way; undefined
   * when shutdown starts during the pause (the queue's clients then get what
   * any left in the queue get: a reset when the listener closes).
   */
  #accept(): Promise<Conn | undefined> {
    if (this.#pauses.length === 0) return this.#listener.accept();
    const wait = this.#pauseLeft();
    const accepting = wait <= 0
      ? this.#listener.accept()
      : this.#pause(wait).then((ended) =>
        ended ? this.#listener.accept() : undefined
      );
    // An accept that was waiting when a pause began: the client is held
    // until the pause ends, as the queue's others are.
    return accepting.then(async (conn) => {
      const left = this.#pauseLeft();
      if (conn === undefined || left <= 0 || await this.#pause(left)) {
        return conn;
      }
      closeQuietly(conn);
      return undefined;
    });
  }

  /** Waits out an accept pause: true when it ended, false on shutdown. */
  async #pause(ms: number): Promise<boolean> {
    const ended = timer(ms);
    const ok = await Promise.race([
      ended.promise.then(() => true),
      this.#shutdownStarted.promise.then(() => false),
    ]);
    ended.cancel();
    return ok;
  }

  /** How long the accept pause under way has left, in ms (0: none). */
  #pauseLeft(): number {
    const elapsed = performance.now() - this.#started;
    let left = 0;
    for (const pause of this.#pauses) {
      const start = pause.every === undefined
        ? 0
        : Math.floor(elapsed / pause.every) * pause.every;
      if (elapsed >= start && elapsed < start + pause.for) {
        left = Math.max(left, start + pause.for - elapsed);
        if (start !== this.#lastPause) {
          this.#lastPause = start;
          this.#stats.faultsInjected["accept-pause"] =
            (this.#stats.faultsInjected["accept-pause"] ?? 0) + 1;
          this.#emit({
            type: "accept-pause",
            ms: Math.round(start + pause.for - elapsed),
          });
        }
      }
    }
    return left;
  }

  async #acceptLoop(): Promise<void> {
    const listener = this.#listener;
    let accepting = this.#accept();
    let backoff = 0;
    /** Set once shutdown starts: until when the accept queue is drained. */
    let drainEnd: number | undefined;
    while (true) {
      // Wait for a client, or until shutdown starts (then until the queue
      // stays quiet). A fresh promise each time: racing one long-lived
      // promise would pile up reactions on it.
      const quiet = drainEnd === undefined
        ? undefined
        : timer(ACCEPT_QUEUE_QUIET_MS);
      const wake = Promise.withResolvers<void>();
      this.#wakeAcceptLoop = wake.resolve;
      if (this.#closing) wake.resolve();
      let conn: Conn | undefined | void;
      try {
        conn = await Promise.race([accepting, quiet?.promise ?? wake.promise]);
      } catch (err: unknown) {
        if (drainEnd !== undefined) break;
        if (resetBeforeAccept(err)) {
          // The client reset before it was taken from the queue (HAProxy's
          // checks and aborted connects do): nothing to serve, nothing to
          // wait for.
          this.#stats.acceptResets++;
          this.#emit({ type: "accept-reset" });
          accepting = this.#accept();
          continue;
        }
        // EMFILE and the like: say so, wait a little, keep serving.
        this.#emit({ type: "accept-error", error: errorMessage(err) });
        backoff = nextAcceptBackoff(backoff);
        await new Promise((resolve) => setTimeout(resolve, backoff));
        accepting = this.#accept();
        continue;
      } finally {
        quiet?.cancel();
      }
      if (conn === undefined) {
        // The queue stayed empty, or shutdown has just been asked for.
        if (drainEnd !== undefined || this.#graceMs <= 0) break;
        drainEnd = Date.now() +
          Math.min(this.#graceMs, ACCEPT_QUEUE_DRAIN_MAX_MS);
        continue;
      }
      backoff = 0;
      accepting = this.#accept();
      this.#admit(conn);
      if (drainEnd !== undefined && Date.now() >= drainEnd) break;
    }
    listener.close();
    // The socket is closed once the pending accept has ended. A client
    // accepted just as the loop gave up gets what any left in the queue get
    // when the listener closes: a reset.
    await accepting.then((conn) => conn && closeQuietly(conn), () => {});
    this.#cleanup?.();
    this.#conns.stopSweeping();
    this.#emit({
      type: "shutdown",
      graceMs: this.#graceMs,
      open: this.#conns.size,
    });
    this.#listenerClosed.resolve();
    await this.#conns.empty();
  }

  /** Serves a newly accepted client, or turns it away at the limit. */
  #admit(conn: Conn): void {
    if (!this.#limit.tryAcquire()) {
      this.#refuse(conn);
      return;
    }
    // Echo each piece at once: no Nagle delay on small replies.
    conn.setNoDelay?.(true);
    // Tracked from here: the idle sweep and the shutdown reach a connection
    // still in its TLS handshake too.
    const c = this.#conns.add(conn);
    if (this.#layer === undefined) this.#handleConnection(c);
    else this.#open(c, this.#layer);
  }

  /** Runs the layer's step (the TLS handshake), then serves the client. */
  async #open(c: Connection, layer: ConnLayer): Promise<void> {
    const remote = c.conn.remoteAddr;
    try {
      c.conn = await layer.open(c.conn);
    } catch (err: unknown) {
      closeQuietly(c.conn);
      this.#conns.delete(c);
      this.#limit.release();
      const step = err instanceof LayerError ? err.step : layer.step;
      // A balancer's check that resets before its header (HAProxy without
      // linger): counted as a check, not as a bad header.
      const reason = err instanceof HeaderAborted
        ? "check"
        : step === "tls"
        ? "handshake"
        : "header";
      if (reason === "handshake") this.#stats.handshakeErrors++;
      if (reason === "header") this.#stats.headerErrors++;
      this.#stats.closed[reason]++;
      this.#emit({
        type: "open-error",
        step,
        reason,
        remote,
        error: c.cutOff === "idle-timeout"
          ? "closed by the idle timeout before the handshake was done"
          : c.cutOff === "shutdown"
          ? "closed at shutdown before the handshake was done"
          : errorMessage(err),
      });
      return;
    }
    this.#handleConnection(c);
  }

  #refuse(conn: Conn): void {
    this.#stats.refused++;
    this.#emit({
      type: "refuse",
      remote: conn.remoteAddr,
      maxConns: this.#maxConns,
    });
    closeQuietly(conn);
  }

  /**
   * Serves one client until it half-closes; never rejects. The whole
   * exchange is this one async function: a client that waits costs one
   * suspended frame, not a chain of them (about 1 KB less per idle
   * connection, measured).
   */
  async #handleConnection(c: Connection): Promise<void> {
    const stats = this.#stats;
    const id = ++stats.accepted;
    const traced = this.#trace();
    let faulted: FaultConn | undefined;
    if (this.#plan !== undefined && c.conn.healthCheck !== true) {
      const hits = this.#plan.forConnection(
        ++this.#served,
        hostOf(c.conn.remoteAddr),
      );
      if (hits.faults.length > 0) {
        for (const fault of hits.faults) {
          stats.faultsInjected[fault.kind] =
            (stats.faultsInjected[fault.kind] ?? 0) + 1;
        }
        faulted = new FaultConn(c.conn, hits, {
          reset: resetConnection,
          note: traced
            ? (text) =>
              this.#emit({
                type: "trace",
                ...traceEvent(id, "server", "fault", text, {}, undefined),
              })
            : undefined,
        });
        c.conn = faulted;
      }
    }
    if (traced) {
      c.conn = new ServerTrace(
        c.conn,
        id,
        this.#once,
        (event) => this.#emit({ type: "trace", ...event }),
      );
    }
    const { conn } = c;
    const remote = conn.remoteAddr;
    const table = this.#conns;
    const started = performance.now();
    const check = conn.healthCheck === true ? { check: true as const } : {};
    let error: string | undefined;
    let reason: CloseReason = "eof";
    stats.active++;
    this.#emit({
      type: "connect",
      id,
      remote,
      ...check,
      ...(faulted === undefined ? {} : { faultKinds: faulted.kinds }),
    });
    // Echoes upper-cased bytes until the client half-closes. One buffer is
    // in use at a time and nothing is read while a write is pending, so a
    // fast sender is held back by TCP flow control, not by the heap. The
    // buffer follows the client's pace (see ReadBuffer).
    const buf = this.#once ? undefined : new ReadBuffer(this.#pools);
    const unicode = this.#unicode ? new UnicodeUpperCaser() : undefined;
    try {
      if (buf === undefined) await this.#replyOnce(c);
      else {
        while (true) {
          const n = await conn.read(buf.bytes);
          if (n === null) break;
          c.bytesIn += n;
          c.lastActive = table.clock;
          const data = unicode
            ? unicode.push(buf.bytes.subarray(0, n))
            : buf.upper(n);
          // Usually one write takes it all: no extra async frame per trip.
          const written = await conn.write(data);
          if (written < data.length) {
            await writeAll(conn, data.subarray(written));
          }
          c.bytesOut += data.length;
          c.lastActive = table.clock;
          buf.step(n);
        }
        if (unicode) {
          const rest = unicode.flush();
          await writeAll(conn, rest);
          c.bytesOut += rest.length;
        }
      }
    } catch (err: unknown) {
      // A read or write cut short by the server closing the socket (idle
      // sweep, end of grace) is not an error of the client's.
      if (c.cutOff === undefined) {
        error = errorMessage(err);
        reason = err instanceof Deno.errors.ConnectionReset ? "reset" : "error";
      }
    } finally {
      buf?.dispose();
      closeQuietly(conn);
      // A queued reply (latency) or a slow close: the connection is open
      // until its socket is closed.
      if (faulted !== undefined) await faulted.closed;
      table.delete(c);
      this.#limit.release();
      stats.active--;
      if (c.cutOff !== undefined) reason = c.cutOff;
      else if (
        conn.healthCheck === true &&
        (error === undefined || (reason === "reset" && c.bytesIn === 0))
      ) {
        // A check that ends with an RST (HAProxy without linger) passed;
        // one that sent a request first is a connection like any other.
        reason = "check";
      }
      if (reason === "reset" || reason === "error") stats.errors++;
      stats.closed[reason]++;
      const durationMs = Math.round((performance.now() - started) * 1000) /
        1000;
      this.#durations.observe(durationMs / 1000);
      // What went out, not what the loop wrote (a fault may keep some back).
      if (faulted !== undefined) c.bytesOut = faulted.sent;
      stats.bytesIn += c.bytesIn;
      stats.bytesOut += c.bytesOut;
      if (c.cutOff === "idle-timeout") stats.idleClosed++;
      if (c.cutOff === "shutdown") stats.shutdownClosed++;
      this.#emit({
        type: "close",
        id,
        remote,
        bytesIn: c.bytesIn,
        bytesOut: c.bytesOut,
        cutOff: c.cutOff,
        error,
        reason,
        durationMs,
        ...check,
        ...(faulted === undefined ? {} : { faults: faulted.said }),
      });
    }
  }

  /** The seed's exchange: one read of at most MAXLINE bytes, reply, close. */
  async #replyOnce(c: Connection): Promise<void> {
    const buf = new Uint8Array(MAXLINE);
    const n = await c.conn.read(buf);
    if (n === null) return;
    c.bytesIn = n;
    await writeAll(c.conn, toUpperInPlace(buf.subarray(0, n)));
    c.bytesOut = n;
  }
}

/**
 * Starts an upcase server: every byte a client sends comes back upper-cased
 * (see {@linkcode toUpperInPlace}), in order, until the client half-closes;
 * then the server closes the connection. Many clients are served at once.
 *
 * @param options Where to listen (TCP `hostname` and `port`, or a Unix socket
 *   `path`), the mode, limits, and a logging hook.
 * @returns The running server; call {@linkcode Server.shutdown} to stop it.
 * @throws {Deno.errors.AddrInUse} When the port or socket path is taken.
 * @throws {Deno.errors.NotCapable} Without `--allow-net` for the address
 *   (`--allow-read` and `--allow-write` for a socket path).
 *
 * @example Serve on a free port, ask once, stop
 * ```ts
 * import { request, serve } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * const reply = await request("hello", { port: server.addr.port });
 * assertEquals(new TextDecoder().decode(reply), "HELLO");
 * ```
 */
export function serve(options?: ServeOptions): Server<Deno.NetAddr>;
/**
 * Starts an upcase server on a Unix domain socket; see the TCP form above.
 *
 * @param options The socket's `path`, the mode, limits, and a logging hook.
 * @returns The running server; call {@linkcode Server.shutdown} to stop it.
 * @throws {Deno.errors.AddrInUse} When the socket path is taken.
 * @throws {Deno.errors.NotCapable} Without `--allow-read` and `--allow-write`
 *   for the path.
 *
 * @example Serve on a Unix socket
 * ```ts ignore
 * import { request, serve } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * const path = await Deno.makeTempFile() + ".sock";
 * await using _server = serve({ path });
 * const reply = await request("hello", { path });
 * assertEquals(new TextDecoder().decode(reply), "HELLO");
 * ```
 */
export function serve(options: ServeUnixOptions): Server<Deno.UnixAddr>;
export function serve(
  options: ServeOptions | ServeUnixOptions = {},
): Server<Deno.NetAddr> | Server<Deno.UnixAddr> {
  if ("path" in options) {
    const { path } = options;
    const listener = Deno.listen({ transport: "unix", path });
    return new Server<Deno.UnixAddr>(
      listener,
      options,
      () => removeQuietly(path),
      proxyLayerOf(options),
    );
  }
  return serveTcp(options);
}

/** What a Worker of the CLI's `--workers` adds to {@linkcode serve}. Internal. */
export interface WorkerInternals {
  /** Listen with SO_REUSEPORT (needs `--unstable-net`). */
  reusePort?: boolean;
  /** A connection limit shared with the other Workers. */
  limit?: ConnLimit;
}

/**
 * {@linkcode serve} on TCP, with what a Worker adds. Internal: the CLI's
 * Workers use it; the library's serve() stays single-threaded.
 *
 * @param options As for {@linkcode serve}.
 * @param internals A Worker's listener and limit.
 * @returns The running server.
 */
export function serveTcp(
  options: ServeOptions,
  internals: WorkerInternals = {},
): Server<Deno.NetAddr> {
  const address = {
    hostname: options.hostname ?? SERVER_HOST,
    port: options.port ?? SERV_PORT,
    tcpBacklog: options.backlog ?? DEFAULT_BACKLOG,
    ...(internals.reusePort ? { reusePort: true } : {}),
  };
  const proxy = proxyLayerOf(options);
  if (options.cert !== undefined || options.key !== undefined) {
    // A PROXY header comes before the handshake: only the relay, which
    // accepts plain TCP itself, can read it.
    const path = listenTls(
      address,
      {
        cert: options.cert ?? "",
        key: options.key ?? "",
        handshakeTimeout: options.handshakeTimeout ??
          DEFAULT_SERVER_HANDSHAKE_TIMEOUT_MS,
      },
      proxy === undefined ? undefined : "relay",
    );
    return new Server<Deno.NetAddr>(
      path.listener,
      options,
      () => path.close(),
      proxy === undefined ? path.layer : chainLayers(proxy, path.layer),
      path,
      internals.limit,
    );
  }
  const listener = Deno.listen({ ...address, transport: "tcp" });
  return new Server<Deno.NetAddr>(
    listener,
    options,
    undefined,
    proxy,
    undefined,
    internals.limit,
  );
}

/** The PROXY layer `options` ask for, if any. */
function proxyLayerOf(options: ServeCommonOptions): ConnLayer | undefined {
  const { proxyProtocol } = options;
  if (proxyProtocol === undefined || proxyProtocol === false) return undefined;
  const settings = proxyProtocol === true ? {} : proxyProtocol;
  return proxyLayer({
    timeout: settings.timeout ?? DEFAULT_PROXY_TIMEOUT_MS,
    from: settings.from?.length ? parseCidrs(settings.from.join(",")) : [],
  });
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (err: unknown) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** A timer that resolves `promise` after `ms` unless cancelled first. */
function timer(ms: number): { promise: Promise<void>; cancel: () => void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<void>((resolve) => {
    id = setTimeout(resolve, ms);
  });
  return { promise, cancel: () => clearTimeout(id) };
}

/** The client's IP address as text; undefined for a Unix socket. */
function hostOf(addr: Deno.Addr): string | undefined {
  return "hostname" in addr ? addr.hostname : undefined;
}

/**
 * Sends an RST on a connection's socket (the `reset` fault): found by its
 * own two addresses, which a PROXY header may have replaced.
 */
async function resetConnection(conn: Conn): Promise<void> {
  const socket = conn as {
    proxiedBy?: Deno.Addr;
    socketLocalAddr?: Deno.Addr;
  };
  await resetSocket({
    localAddr: socket.socketLocalAddr ?? conn.localAddr,
    remoteAddr: socket.proxiedBy ?? conn.remoteAddr,
  });
}
