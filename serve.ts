// Copyright the upcase authors. MIT license.
/**
 * The upcase TCP server as a library: {@linkcode serve} listens, and every
 * connection gets its bytes back upper-cased, in order, until it half-closes.
 *
 * @module
 */

import { MAXLINE, SERV_PORT, SERVER_HOST } from "./constants.ts";
import { toUpperInPlace } from "./transform.ts";
import { closeQuietly, errorMessage, writeAll } from "./_io.ts";

/** Something the server did, for logging. See {@linkcode ServeOptions.onEvent}. */
export type ServerEvent =
  | { type: "listen"; addr: Deno.NetAddr }
  | { type: "connect"; remote: Deno.NetAddr }
  | {
    type: "close";
    remote: Deno.NetAddr;
    /** Bytes read from the client. */
    bytesIn: number;
    /** Bytes written back to the client. */
    bytesOut: number;
    /** Why the connection ended early, if it did: one line. */
    error?: string;
  }
  | { type: "accept-error"; error: string };

/** Options for {@linkcode serve}. */
export interface ServeOptions {
  /**
   * The address to listen on.
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
   * Reproduce the seed's `server.c`: one read of at most {@linkcode MAXLINE}
   * bytes per connection, reply, close.
   *
   * @default {false}
   */
  once?: boolean;
  /**
   * Called for each {@linkcode ServerEvent}, for logging. Must not throw.
   *
   * @default {undefined} (silent)
   */
  onEvent?: (event: ServerEvent) => void;
}

/** Live counters of a running {@linkcode Server}. */
export interface ServerStats {
  /** Connections open now. */
  active: number;
  /** Connections accepted since start. */
  accepted: number;
  /** Bytes read from clients since start. */
  bytesIn: number;
  /** Bytes written to clients since start. */
  bytesOut: number;
  /** Connections that ended with an error (reset, broken pipe, ...). */
  errors: number;
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

/** The first read buffer of every connection: small, so idle ones cost little. */
const SMALL_BUFFER_SIZE = 1024;
/** The read buffer of a connection that streams. */
const LARGE_BUFFER_SIZE = 64 * 1024;
/** How many large buffers are kept for reuse once their connection goes quiet. */
const LARGE_BUFFERS_KEPT = 64;

/**
 * A running upcase server, as returned by {@linkcode serve}.
 */
export class Server {
  /** The address the server is bound to (with the real port when 0 was asked). */
  readonly addr: Deno.NetAddr;
  /** Resolves once the server has stopped and every connection is closed. */
  readonly finished: Promise<void>;

  #listener: Deno.Listener;
  #once: boolean;
  #emit: (event: ServerEvent) => void;
  #stats: ServerStats = {
    active: 0,
    accepted: 0,
    bytesIn: 0,
    bytesOut: 0,
    errors: 0,
  };
  #conns = new Set<Deno.Conn>();
  #closing = false;
  #drained = Promise.withResolvers<void>();
  #largeBuffers: Uint8Array<ArrayBuffer>[] = [];

  /** Use {@linkcode serve} to start a server. */
  constructor(listener: Deno.Listener, options: ServeOptions) {
    this.#listener = listener;
    this.addr = listener.addr as Deno.NetAddr;
    this.#once = options.once ?? false;
    this.#emit = options.onEvent ?? (() => {});
    this.#emit({ type: "listen", addr: this.addr });
    this.finished = this.#acceptLoop();
  }

  /** A snapshot of the server's counters. */
  get stats(): ServerStats {
    return { ...this.#stats };
  }

  /**
   * Stops accepting at once, lets open connections finish for up to
   * `options.grace` milliseconds, then closes the rest.
   *
   * @param options How long to wait for open connections.
   * @returns A promise that resolves when the server has stopped.
   */
  async shutdown(options: ShutdownOptions = {}): Promise<void> {
    const grace = options.grace ?? DEFAULT_GRACE_MS;
    if (!this.#closing) {
      this.#closing = true;
      this.#listener.close();
    }
    if (this.#conns.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const expired = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, grace);
      });
      await Promise.race([this.#drained.promise, expired]);
      clearTimeout(timer);
      for (const conn of this.#conns) closeQuietly(conn);
    }
    await this.finished;
  }

  /** Shuts the server down at once; for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown({ grace: 0 });
  }

  async #acceptLoop(): Promise<void> {
    let backoff = 0;
    while (!this.#closing) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (err: unknown) {
        if (this.#closing) break;
        // EMFILE and the like: say so, wait a little, keep serving.
        this.#emit({ type: "accept-error", error: errorMessage(err) });
        backoff = Math.min(backoff === 0 ? 5 : backoff * 2, 1000);
        await new Promise((resolve) => setTimeout(resolve, backoff));
        continue;
      }
      backoff = 0;
      this.#handleConnection(conn);
    }
    if (this.#conns.size > 0) await this.#drained.promise;
  }

  /** Serves one client; never rejects. */
  async #handleConnection(conn: Deno.Conn): Promise<void> {
    const stats = this.#stats;
    const remote = conn.remoteAddr as Deno.NetAddr;
    const counts = { bytesIn: 0, bytesOut: 0 };
    let error: string | undefined;
    this.#conns.add(conn);
    stats.active++;
    stats.accepted++;
    this.#emit({ type: "connect", remote });
    try {
      if (this.#once) await this.#replyOnce(conn, counts);
      else await this.#stream(conn, counts);
    } catch (err: unknown) {
      error = errorMessage(err);
      stats.errors++;
    } finally {
      closeQuietly(conn);
      this.#conns.delete(conn);
      stats.active--;
      stats.bytesIn += counts.bytesIn;
      stats.bytesOut += counts.bytesOut;
      this.#emit({ type: "close", remote, ...counts, error });
      if (this.#conns.size === 0 && this.#closing) this.#drained.resolve();
    }
  }

  /** The seed's exchange: one read of at most MAXLINE bytes, reply, close. */
  async #replyOnce(conn: Deno.Conn, counts: ByteCounts): Promise<void> {
    const buf = new Uint8Array(MAXLINE);
    const n = await conn.read(buf);
    if (n === null) return;
    counts.bytesIn = n;
    await writeAll(conn, toUpperInPlace(buf.subarray(0, n)));
    counts.bytesOut = n;
  }

  /**
   * Echoes upper-cased bytes until the client half-closes. One buffer is in
   * use at a time and nothing is read while a write is pending, so a fast
   * sender is held back by TCP flow control, not by the heap.
   */
  async #stream(conn: Deno.Conn, counts: ByteCounts): Promise<void> {
    const small = new Uint8Array(SMALL_BUFFER_SIZE);
    let buf = small;
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        counts.bytesIn += n;
        await writeAll(conn, toUpperInPlace(buf.subarray(0, n)));
        counts.bytesOut += n;
        if (n === buf.length) {
          // A full buffer: the client streams, so read in large pieces.
          if (buf === small) buf = this.#largeBuffers.pop() ?? largeBuffer();
        } else if (buf !== small) {
          // Drained: wait for the next bytes in the small buffer again.
          this.#releaseLarge(buf);
          buf = small;
        }
      }
    } finally {
      if (buf !== small) this.#releaseLarge(buf);
    }
  }

  #releaseLarge(buf: Uint8Array<ArrayBuffer>): void {
    if (this.#largeBuffers.length < LARGE_BUFFERS_KEPT) {
      this.#largeBuffers.push(buf);
    }
  }
}

/**
 * Starts an upcase server: every byte a client sends comes back upper-cased
 * (see {@linkcode toUpperInPlace}), in order, until the client half-closes;
 * then the server closes the connection. Many clients are served at once.
 *
 * @param options Where to listen, the mode, and a logging hook.
 * @returns The running server; call {@linkcode Server.shutdown} to stop it.
 * @throws {Deno.errors.AddrInUse} When the port is taken.
 * @throws {Deno.errors.NotCapable} Without `--allow-net` for the address.
 *
 * @example Serve on a free port, ask once, stop
 * ```ts
 * import { request, serve } from "./mod.ts";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * const reply = await request("hello", { port: server.addr.port });
 * assertEquals(new TextDecoder().decode(reply), "HELLO");
 * ```
 */
export function serve(options: ServeOptions = {}): Server {
  const listener = Deno.listen({
    hostname: options.hostname ?? SERVER_HOST,
    port: options.port ?? SERV_PORT,
    transport: "tcp",
  });
  return new Server(listener, options);
}

interface ByteCounts {
  bytesIn: number;
  bytesOut: number;
}

function largeBuffer(): Uint8Array<ArrayBuffer> {
  return new Uint8Array(LARGE_BUFFER_SIZE);
}
