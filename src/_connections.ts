// Copyright the upcase authors. MIT license.
// The server's table of open connections: what it tracks of each, the idle
// sweep that closes quiet ones, and the wait for the last one to close.
// Internal.

import type { Conn } from "./_conn.ts";
import { closeQuietly } from "./_io.ts";

/** Why the server closed a connection itself. */
export type CutOff = "idle-timeout" | "shutdown";

/** What the server tracks of one open connection. */
export interface Connection {
  /** The connection; a layer (TLS) replaces the accepted one once open. */
  conn: Conn;
  /** When a byte last moved, on the table's coarse clock. */
  lastActive: number;
  /** Why the server closed it itself, if it did. */
  cutOff: CutOff | undefined;
  /** Bytes read from the client. */
  bytesIn: number;
  /** Bytes written back to the client. */
  bytesOut: number;
}

/** The open connections of one server. */
export class ConnectionTable {
  /** Milliseconds, updated by the idle sweep: cheap to read per I/O. */
  clock: number = Date.now();
  #open = new Set<Connection>();
  #idleTimeout: number;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #empty: PromiseWithResolvers<void> | undefined;

  /**
   * @param idleTimeout Close a connection when nothing moved for this many
   *   milliseconds; 0 for never.
   */
  constructor(idleTimeout: number) {
    this.#idleTimeout = idleTimeout;
    if (idleTimeout > 0) {
      // Sweep ten times per timeout: connections close within 10 % of it.
      const every = Math.min(1000, Math.max(10, idleTimeout / 10));
      this.#sweeper = setInterval(() => this.#sweep(), every);
    }
  }

  /** Connections open now. */
  get size(): number {
    return this.#open.size;
  }

  /** Starts tracking `conn`. */
  add(conn: Conn): Connection {
    const c: Connection = {
      conn,
      lastActive: this.clock,
      cutOff: undefined,
      bytesIn: 0,
      bytesOut: 0,
    };
    this.#open.add(c);
    return c;
  }

  /** Stops tracking a closed connection. */
  delete(c: Connection): void {
    this.#open.delete(c);
    if (this.#open.size === 0 && this.#empty !== undefined) {
      this.#empty.resolve();
      this.#empty = undefined;
    }
  }

  /** Resolves once no connection is open. */
  empty(): Promise<void> {
    if (this.#open.size === 0) return Promise.resolve();
    this.#empty ??= Promise.withResolvers<void>();
    return this.#empty.promise;
  }

  /** Bytes moved so far by the connections still open. */
  openBytes(): { bytesIn: number; bytesOut: number } {
    let bytesIn = 0;
    let bytesOut = 0;
    for (const c of this.#open) {
      bytesIn += c.bytesIn;
      bytesOut += c.bytesOut;
    }
    return { bytesIn, bytesOut };
  }

  /** Closes every open connection, saying why. */
  closeAll(cutOff: CutOff): void {
    for (const c of this.#open) {
      c.cutOff ??= cutOff;
      closeQuietly(c.conn);
    }
  }

  /** Stops the idle sweep. */
  stopSweeping(): void {
    clearInterval(this.#sweeper);
  }

  #sweep(): void {
    const now = Date.now();
    this.clock = now;
    for (const c of this.#open) {
      if (c.cutOff === undefined && now - c.lastActive >= this.#idleTimeout) {
        c.cutOff = "idle-timeout";
        closeQuietly(c.conn);
      }
    }
  }
}
