// Copyright the upcase authors. MIT license.
// The TLS accept path: a listener and a layer that hand the server
// connections whose handshake is done and whose reads and writes are the
// plaintext, so the per-connection code does not know TLS is there.
//
// The hard part is a client that connects and never finishes its handshake.
// With Deno 2.9.6, close() on a Deno.TlsConn whose handshake has not finished
// leaves the TCP socket to rustls's handshake task, which waits for the peer
// for ever: every silent client would keep a descriptor. Two ways free them:
// - "shutdown" (with --allow-ffi, on Linux): Deno.listenTls as it is; a
//   connection closed before its handshake is done also gets shutdown(2)
//   through FFI (see _socket_shutdown.ts). As fast as Deno.listenTls.
// - "relay" (no extra permission): the server accepts plain TCP itself and
//   relays the bytes to an in-process Deno.listenTls on a loopback port;
//   closing the plain socket ends the inner handshake. About half the round
//   trips per second of the other way.
// Internal.

import type { Conn, ConnLayer, Listener } from "./_conn.ts";
import { closeQuietly, errorMessage, writeAll } from "./_io.ts";
import { nextAcceptBackoff, resetBeforeAccept } from "./_accept.ts";
import { canShutdownSockets, shutdownSockets } from "./_socket_shutdown.ts";
import { describeTlsFailure, formatTlsFailure } from "./_tls_errors.ts";
import type { ProxyHeader } from "./_proxy_header.ts";

/** The server's TLS settings. */
export interface TlsServerOptions {
  /** The certificate chain, PEM. */
  cert: string;
  /** Its private key, PEM. */
  key: string;
  /** Close a client whose handshake is not done by then, in ms; 0: never. */
  handshakeTimeout: number;
}

/** How stalled handshakes are freed; see the top of this file. */
export type TlsAcceptMode = "shutdown" | "relay";

/** What {@linkcode listenTls} sets up. */
export interface TlsAcceptPath {
  /** What the server accepts from. */
  listener: Listener;
  /** The handshake, run on each accepted connection. */
  layer: ConnLayer;
  /** Which way stalled handshakes are freed. */
  mode: TlsAcceptMode;
  /** Where the path reports what the server counts and logs; set by it. */
  report: (event: RelayEvent) => void;
  /** Releases what the path holds besides the listener. */
  close(): void;
}

/**
 * Listens for TLS clients on `hostname:port`.
 *
 * @param address Where to listen.
 * @param tls The certificate, key and handshake limit.
 * @param mode The way to free stalled handshakes; by default "shutdown"
 *   where it can work, else "relay".
 * @returns The accept path.
 * @throws {Error} When the key does not match the certificate (`KeyMismatch`)
 *   or either is not usable, and what {@linkcode Deno.listen} throws.
 */
export function listenTls(
  address: { hostname: string; port: number; reusePort?: boolean },
  tls: TlsServerOptions,
  mode: TlsAcceptMode = canShutdownSockets() ? "shutdown" : "relay",
): TlsAcceptPath {
  return mode === "shutdown"
    ? listenTlsDirect(address, tls)
    : listenTlsRelayed(address, tls);
}

/** Why a handshake failed, in words, as an Error for the server's log. */
function handshakeError(err: unknown, timedOut: boolean, limit: number): Error {
  if (timedOut) {
    return new Error(
      `no TLS handshake within ${limit / 1000} s (--handshake-timeout)`,
    );
  }
  if (err instanceof Deno.errors.ConnectionReset) {
    return new Error("the client reset the connection during the handshake");
  }
  const failure = describeTlsFailure(err, "client");
  return failure === undefined
    ? err instanceof Error ? err : new Error(String(err))
    : new Error(formatTlsFailure(failure));
}

/**
 * Runs `handshake` within the limit; on expiry calls `abort` (which should
 * make the handshake fail) and rejects at once, whether or not the handshake
 * has noticed: a slot is never held by a wait that does not end.
 */
async function withinLimit(
  handshake: () => Promise<unknown>,
  limit: number,
  abort: () => void,
): Promise<void> {
  let timedOut = false;
  const expired = Promise.withResolvers<never>();
  const timer = limit > 0
    ? setTimeout(() => {
      timedOut = true;
      abort();
      expired.reject(new Deno.errors.TimedOut());
    }, limit)
    : undefined;
  const work = handshake();
  work.catch(() => {}); // what it says after the limit is the limit's
  try {
    await Promise.race([work, expired.promise]);
  } catch (err: unknown) {
    throw handshakeError(err, timedOut, limit);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A server-side TLS connection as the per-connection code wants it: a client
 * that ends with a bare TCP FIN and no `close_notify` (ncat `--ssl` and many
 * others; Deno reports `UnexpectedEof`) has ended its request, like EOF.
 */
abstract class TlsStream implements Conn {
  abstract readonly remoteAddr: Deno.Addr;
  abstract readonly localAddr: Deno.Addr;
  /** For the trace: this connection speaks TLS. */
  readonly tls = true;
  /** For the trace: the client's stream ended with a bare FIN. */
  endedWithoutCloseNotify = false;
  protected readonly stream: Deno.TlsConn;

  constructor(stream: Deno.TlsConn) {
    this.stream = stream;
  }

  read(p: Uint8Array): Promise<number | null> {
    return this.stream.read(p).catch((err: unknown) => {
      this.endedWithoutCloseNotify = endOfRequest(err);
      return null;
    });
  }

  write(p: Uint8Array): Promise<number> {
    return this.stream.write(p);
  }

  closeWrite(): Promise<void> {
    return this.stream.closeWrite();
  }

  abstract close(): void;
}

/** A connection of Deno.listenTls, for the "shutdown" way. */
class TlsServerConn extends TlsStream {
  readonly remoteAddr: Deno.Addr;
  readonly localAddr: Deno.Addr;
  /** Writes not finished yet: at close, rustls keeps the socket for them. */
  writing = 0;
  #onClose: (conn: TlsServerConn) => void;

  constructor(tls: Deno.TlsConn, onClose: (conn: TlsServerConn) => void) {
    super(tls);
    this.remoteAddr = tls.remoteAddr;
    this.localAddr = tls.localAddr;
    this.#onClose = onClose;
  }

  handshake(): Promise<unknown> {
    return this.stream.handshake();
  }

  override async write(p: Uint8Array): Promise<number> {
    this.writing++;
    try {
      return await super.write(p);
    } finally {
      this.writing--;
    }
  }

  close(): void {
    this.stream.close();
    this.#onClose(this);
  }
}

/** A bare FIN (`UnexpectedEof`) is the end of the request: true; else throws. */
function endOfRequest(err: unknown): true {
  if (err instanceof Deno.errors.UnexpectedEof) return true;
  throw err;
}

/**
 * "shutdown": Deno.listenTls; a connection closed before its handshake is
 * done is shut down through FFI as well, in batches (one pass over the
 * descriptors for all closed in one turn of the event loop).
 */
function listenTlsDirect(
  address: { hostname: string; port: number; reusePort?: boolean },
  tls: TlsServerOptions,
): TlsAcceptPath {
  const inner = Deno.listenTls({ ...address, cert: tls.cert, key: tls.key });
  const handshaken = new WeakSet<TlsServerConn>();
  let stalled: TlsServerConn[] = [];
  // Closed before its handshake was done, or with a write still pending (a
  // client that does not read, cut off by the idle timeout or the end of
  // the grace period): rustls keeps such a socket, so shut it down too.
  const onClose = (conn: TlsServerConn) => {
    if (handshaken.has(conn) && conn.writing === 0) return;
    if (stalled.length === 0) {
      setTimeout(() => {
        const batch = stalled;
        stalled = [];
        shutdownSockets(batch);
      }, 0);
    }
    stalled.push(conn);
  };
  const listener: Listener<TlsServerConn> = {
    addr: inner.addr,
    accept: async () => new TlsServerConn(await inner.accept(), onClose),
    close: () => inner.close(),
  };
  const layer: ConnLayer = {
    step: "tls",
    async open(conn: Conn): Promise<Conn> {
      const c = conn as TlsServerConn;
      await withinLimit(() => c.handshake(), tls.handshakeTimeout, () => {
        closeQuietly(c);
      });
      handshaken.add(c);
      return c;
    },
  };
  return {
    listener,
    layer,
    mode: "shutdown",
    report: () => {},
    close: () => {},
  };
}

/** How long a relayed connection's last reply bytes may take to go out. */
const RELAY_DRAIN_LIMIT_MS = 2000;
/** The relay's buffer, each way. */
const RELAY_BUFFER_SIZE = 16 * 1024; // a TLS record at most
/**
 * An inner connection that arrives while one of the relay's own connects is
 * still under way may be that one: it waits this long to be claimed.
 */
const RENDEZVOUS_LIMIT_MS = 1000;
/**
 * How long the port of a relay socket given up on (its handshake timed out
 * before the inner listener took it, as in a descriptor shortage) is
 * remembered as the relay's own.
 */
const ABANDONED_LIMIT_MS = 30_000;
/**
 * Connections to the relay's inner port that the relay did not make (a
 * local process found the port) that one inner listener takes before the
 * relay moves to a fresh one on a new port. Each holds a descriptor until its
 * peer goes away: Deno offers no way to free a TLS connection whose
 * handshake never started (see the top of this file).
 */
export const MAX_STRAYS_PER_INNER_PORT = 64;
/** After a stray is logged, the next are counted but not logged for this long. */
const STRAY_LOG_QUIET_MS = 10_000;

/** Copies `from` to `to` until `from` ends, then half-closes `to`. */
async function relay(from: Conn, to: Conn): Promise<void> {
  const buf = new Uint8Array(RELAY_BUFFER_SIZE);
  while (true) {
    const n = await from.read(buf);
    if (n === null) break;
    await writeAll(to, buf.subarray(0, n));
  }
  await to.closeWrite();
}

/** A relayed TLS connection: plaintext here, TLS on the client's socket. */
class RelayedConn extends TlsStream {
  readonly remoteAddr: Deno.Addr;
  readonly localAddr: Deno.Addr;
  #raw: Conn;
  #up: Deno.TcpConn;
  #down: Promise<void>;
  #rawError: () => unknown;
  #closed = false;

  /**
   * @param tls The inner TLS connection.
   * @param raw The client's socket.
   * @param up The inner socket the relay writes to.
   * @param down The relay from the inner socket to the client's.
   * @param rawError What reading the client's socket failed with, if it did.
   */
  constructor(
    tls: Deno.TlsConn,
    raw: Conn,
    up: Deno.TcpConn,
    down: Promise<void>,
    rawError: () => unknown,
  ) {
    super(tls);
    this.#raw = raw;
    this.#up = up;
    this.#down = down;
    this.#rawError = rawError;
    this.remoteAddr = raw.remoteAddr;
    this.localAddr = raw.localAddr;
  }

  /**
   * The client's stream as the inner TLS connection sees it, but a client
   * that reset is a reset, not an end: the relay turned it into an EOF of
   * the inner socket.
   */
  override async read(p: Uint8Array): Promise<number | null> {
    const n = await super.read(p);
    const err = this.#rawError();
    if (n === null && err instanceof Deno.errors.ConnectionReset) throw err;
    return n;
  }

  /** For the trace: the PROXY header below, if there was one. */
  get header(): ProxyHeader | undefined {
    return (this.#raw as { header?: ProxyHeader }).header;
  }

  /** For the trace: the balancer's address, if a PROXY header came first. */
  get proxiedBy(): Deno.Addr | undefined {
    return (this.#raw as { proxiedBy?: Deno.Addr }).proxiedBy;
  }

  /** The client socket's own local address, if a PROXY header came first. */
  get socketLocalAddr(): Deno.Addr | undefined {
    return (this.#raw as { socketLocalAddr?: Deno.Addr }).socketLocalAddr;
  }

  /** Closes the TLS side; the plain sockets once the reply has gone out. */
  close(): void {
    if (this.#closed) throw new Deno.errors.BadResource("Already closed");
    this.#closed = true;
    closeQuietly(this.stream);
    const done = () => {
      clearTimeout(timer);
      closeQuietly(this.#raw);
      closeQuietly(this.#up);
    };
    const timer = setTimeout(done, RELAY_DRAIN_LIMIT_MS);
    this.#down.then(done, done);
  }
}

/**
 * What the relay tells the server: the events it counts and logs (the same
 * shapes as those of `ServerEvent` in serve.ts, which documents them).
 */
export type RelayEvent =
  | { type: "accept-error"; error: string; listener?: "tls-relay" }
  | { type: "relay-stray"; remote: Deno.Addr; port: number; logged: boolean }
  | { type: "relay-moved"; from: number; to: number; strays: number };

/**
 * One inner Deno.listenTls on a loopback port, and the relay's rendezvous
 * with it: an inner connection is matched to the client it relays by the
 * port the relay's own socket has.
 */
class InnerListener {
  readonly addr: Deno.NetAddr;
  /** Stray connections it has taken (never more than the cap, then moved). */
  strays = 0;
  #listener: Deno.TlsListener;
  #report: (event: RelayEvent) => void;
  #onStray: (inner: InnerListener, remote: Deno.Addr) => void;
  #waiting = new Map<number, PromiseWithResolvers<Deno.TlsConn>>();
  #early = new Map<number, Deno.TlsConn>();
  /** Ports of relay sockets given up on before their inner connection came. */
  #abandoned = new Set<number>();
  /** Relay connects under way whose port is not known yet. */
  #connecting = 0;
  /** Relayed opens that use this listener (from connect to claim). */
  #users = 0;
  #retired = false;
  #closed = false;

  constructor(
    tls: TlsServerOptions,
    report: (event: RelayEvent) => void,
    onStray: (inner: InnerListener, remote: Deno.Addr) => void,
  ) {
    this.#listener = Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: tls.cert,
      key: tls.key,
    });
    this.addr = this.#listener.addr;
    this.#report = report;
    this.#onStray = onStray;
    this.#acceptLoop();
  }

  /**
   * Connects the relay's own socket to this listener.
   *
   * @returns The socket, and the inner TLS connection it leads to once the
   *   listener has accepted it (rejects when {@linkcode release} is called
   *   first).
   */
  async connect(): Promise<{ up: Deno.TcpConn; tls: Promise<Deno.TlsConn> }> {
    this.#users++;
    this.#connecting++;
    let up: Deno.TcpConn;
    try {
      up = await Deno.connect({
        hostname: this.addr.hostname,
        port: this.addr.port,
      });
    } catch (err: unknown) {
      this.#connecting--;
      this.release(0);
      throw err;
    }
    const port = (up.localAddr as Deno.NetAddr).port;
    const claim = Promise.withResolvers<Deno.TlsConn>();
    claim.promise.catch(() => {}); // a release nobody waits for
    const early = this.#early.get(port);
    if (early !== undefined) {
      this.#early.delete(port);
      claim.resolve(early);
    } else {
      this.#waiting.set(port, claim);
    }
    this.#connecting--;
    return { up, tls: claim.promise };
  }

  /**
   * Ends one open's use of the listener: its claim (if still waiting) fails.
   *
   * @param port The relay socket's port, 0 if it never connected.
   */
  release(port: number): void {
    const claim = this.#waiting.get(port);
    if (claim !== undefined) {
      this.#waiting.delete(port);
      claim.reject(new Deno.errors.Interrupted("the relay gave up"));
      // Its inner connection may still be in the accept queue: ours, not a
      // stray, when it comes (its relay socket is closed, so it ends).
      this.#abandoned.add(port);
      setTimeout(() => this.#abandoned.delete(port), ABANDONED_LIMIT_MS);
    }
    this.#users--;
    if (this.#retired && this.#users === 0) this.close();
  }

  /** Takes no new opens; closes once the last one is done with it. */
  retire(): void {
    this.#retired = true;
    if (this.#users === 0) this.close();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#listener);
    for (const conn of this.#early.values()) closeQuietly(conn);
    this.#early.clear();
  }

  /** The same discipline as the server's own accept loop. */
  async #acceptLoop(): Promise<void> {
    let backoff = 0;
    while (!this.#closed) {
      let conn: Deno.TlsConn;
      try {
        conn = await this.#listener.accept();
      } catch (err: unknown) {
        if (this.#closed) return;
        if (resetBeforeAccept(err)) continue;
        this.#report({
          type: "accept-error",
          error: errorMessage(err),
          listener: "tls-relay",
        });
        backoff = nextAcceptBackoff(backoff);
        await new Promise((resolve) => setTimeout(resolve, backoff));
        continue;
      }
      backoff = 0;
      this.#route(conn);
    }
  }

  /** Hands `conn` to the open waiting for it, or holds it, or lets it go. */
  #route(conn: Deno.TlsConn): void {
    const { hostname, port } = conn.remoteAddr as Deno.NetAddr;
    // The relay's own sockets come from 127.0.0.1; another local address
    // with a port of ours is not one of them.
    if (hostname !== this.addr.hostname) {
      this.#stray(conn);
      return;
    }
    const claim = this.#waiting.get(port);
    if (claim !== undefined) {
      this.#waiting.delete(port);
      claim.resolve(conn);
      return;
    }
    if (this.#abandoned.delete(port)) {
      closeQuietly(conn);
      return;
    }
    if (this.#connecting === 0) {
      this.#stray(conn);
      return;
    }
    // One of the relay's connects may not know its port yet.
    this.#early.set(port, conn);
    setTimeout(() => {
      if (this.#early.get(port) !== conn) return;
      this.#early.delete(port);
      this.#stray(conn);
    }, RENDEZVOUS_LIMIT_MS);
  }

  /** Not the relay's: close it (which frees nothing, see above) and count. */
  #stray(conn: Deno.TlsConn): void {
    this.strays++;
    const remote = conn.remoteAddr;
    closeQuietly(conn);
    this.#onStray(this, remote);
  }
}

/** "relay": plain TCP accepted here, relayed to an inner Deno.listenTls. */
function listenTlsRelayed(
  address: { hostname: string; port: number; reusePort?: boolean },
  tls: TlsServerOptions,
): TlsAcceptPath {
  let lastStrayLogged = -Infinity;
  const report = (event: RelayEvent) => path.report(event);
  const onStray = (from: InnerListener, remote: Deno.Addr) => {
    const now = Date.now();
    const logged = now - lastStrayLogged >= STRAY_LOG_QUIET_MS;
    if (logged) lastStrayLogged = now;
    report({ type: "relay-stray", remote, port: from.addr.port, logged });
    if (from !== inner || from.strays < MAX_STRAYS_PER_INNER_PORT) return;
    let next: InnerListener;
    try {
      next = new InnerListener(tls, report, onStray);
    } catch (err: unknown) {
      // Out of descriptors, most likely: stay, and try at the next stray.
      report({
        type: "accept-error",
        error: errorMessage(err),
        listener: "tls-relay",
      });
      return;
    }
    report({
      type: "relay-moved",
      from: from.addr.port,
      to: next.addr.port,
      strays: from.strays,
    });
    inner = next;
    from.retire();
  };
  let inner = new InnerListener(tls, report, onStray);
  let outer: Deno.TcpListener;
  try {
    outer = Deno.listen({ ...address, transport: "tcp" });
  } catch (err: unknown) {
    inner.close();
    throw err;
  }
  const layer: ConnLayer = {
    step: "tls",
    async open(raw: Conn): Promise<Conn> {
      const via = inner;
      let up: Deno.TcpConn | undefined;
      let tlsConn: Deno.TlsConn | undefined;
      let upPort = 0;
      let released = false;
      let rawError: unknown;
      const release = () => {
        if (released) return;
        released = true;
        via.release(upPort);
      };
      const abort = () => {
        closeQuietly(raw);
        if (up !== undefined) closeQuietly(up);
        if (tlsConn !== undefined) closeQuietly(tlsConn);
        release();
      };
      let down: Promise<void> = Promise.resolve();
      try {
        await withinLimit(
          async () => {
            const connected = await via.connect();
            up = connected.up;
            up.setNoDelay(true);
            upPort = (up.localAddr as Deno.NetAddr).port;
            const upRef = up;
            relay(raw, upRef).catch((err: unknown) => {
              rawError ??= err;
              closeQuietly(upRef);
            });
            // The client has gone: the server's writes must fail, not block.
            down = relay(upRef, raw).catch(() => closeQuietly(upRef));
            tlsConn = await connected.tls;
            release();
            await tlsConn.handshake();
          },
          tls.handshakeTimeout,
          abort,
        );
      } catch (err: unknown) {
        abort();
        if (rawError instanceof Deno.errors.ConnectionReset) {
          throw handshakeError(rawError, false, tls.handshakeTimeout);
        }
        throw err;
      }
      return new RelayedConn(tlsConn!, raw, up!, down, () => rawError);
    },
  };
  const path: TlsAcceptPath = {
    listener: outer,
    layer,
    mode: "relay",
    report: () => {},
    close: () => inner.close(),
  };
  return path;
}
