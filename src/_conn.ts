// Copyright the upcase authors. MIT license.
// What the server's per-connection code needs of a connection and of a
// listener: the part of Deno.Conn and Deno.Listener it uses. A protocol layer
// that runs before the bytes flow (a TLS handshake, a PROXY-protocol header)
// wraps a Listener and hands on Conns whose address, reader and writer are
// already the right ones. Internal.

/** A byte stream to one client, as {@linkcode Deno.Conn} has it. */
export interface Conn {
  /** The client's address (for a proxied connection, the one it named). */
  readonly remoteAddr: Deno.Addr;
  /** The address the client connected to. */
  readonly localAddr: Deno.Addr;
  /** Reads into `p`; null at the end of the client's stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`; resolves with how many bytes. */
  write(p: Uint8Array): Promise<number>;
  /** Half-closes: no more writes. */
  closeWrite(): Promise<void>;
  /** Closes both ways; throws `BadResource` when closed already. */
  close(): void;
  /** Turns Nagle's algorithm off or on, where the transport has it. */
  setNoDelay?(noDelay?: boolean): void;
  /**
   * A load balancer's own connection (a PROXY v2 LOCAL header): a health
   * check, served as any other but logged quietly.
   */
  readonly healthCheck?: boolean;
}

/** A source of connections, as {@linkcode Deno.Listener} has it. */
export interface Listener<C extends Conn = Conn> {
  /** The address it listens on. */
  readonly addr: Deno.Addr;
  /** The next connection; rejects once the listener is closed. */
  accept(): Promise<C>;
  /** Stops listening. */
  close(): void;
}

/**
 * A protocol step that runs on each new connection before the bytes flow (a
 * TLS handshake, a PROXY-protocol header). It holds its own deadline.
 */
export interface ConnLayer {
  /** Which step, for the log. */
  readonly step: "tls" | "proxy";
  /**
   * Runs the step on a newly accepted connection.
   *
   * @param conn The accepted connection.
   * @returns The connection to serve: right address, reader and writer.
   * @throws When the client fails the step (the layer has closed `conn`).
   */
  open(conn: Conn): Promise<Conn>;
}
