// Copyright the upcase authors. MIT license.
/**
 * The upcase client as a library: {@linkcode request} sends bytes and resolves
 * with the reply; {@linkcode exchange} streams both ways over a connection.
 *
 * @module
 */

import { CLIENT_HOST, SERV_PORT } from "./constants.ts";
import { closeQuietly, concat, isPeerGone, writeAll } from "./_io.ts";
import { encodeProxyHeader } from "./_proxy_header.ts";

/** Options for {@linkcode connect}. */
export interface ConnectOptions {
  /**
   * The server's host name or address.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The server's TCP port.
   *
   * @default {6666}
   */
  port?: number;
  /**
   * A Unix socket path to connect to instead of TCP (then `hostname` and
   * `port` are ignored).
   *
   * @default {undefined}
   */
  path?: string;
  /**
   * Speak TLS (see {@linkcode ConnectTlsOptions}): {@linkcode connect}
   * resolves once the handshake is done.
   *
   * @default {undefined} (plain TCP)
   */
  tls?: ConnectTlsOptions;
  /**
   * Send a PROXY protocol header of this version (1: text, 2: binary) with
   * the connection's own addresses first, before TLS if any: to test a
   * server that expects one (`server.ts --proxy-protocol`, HAProxy, nginx).
   *
   * @default {undefined} (no header)
   */
  proxyHeader?: 1 | 2;
}

/** TLS options of {@linkcode connect}, as {@linkcode Deno.startTls} has them. */
export interface ConnectTlsOptions {
  /**
   * PEM certificates of CAs to trust on top of the default roots (Deno's
   * bundled Mozilla set, or the system's with `DENO_TLS_CA_STORE=system`).
   *
   * @default {[]}
   */
  caCerts?: string[];
  /**
   * The name sent in the handshake (SNI) and checked against the server's
   * certificate.
   *
   * @default {the `hostname` connected to}
   */
  serverName?: string;
  /**
   * A client certificate chain (PEM) to present, with {@linkcode key}.
   *
   * @default {undefined}
   */
  cert?: string;
  /**
   * The client certificate's private key (PEM).
   *
   * @default {undefined}
   */
  key?: string;
  /**
   * Give up (closing the socket, rejecting with
   * {@linkcode Deno.errors.TimedOut}) when the handshake takes longer than
   * this many milliseconds: a server that does not speak TLS may never
   * answer. 0 means no limit.
   *
   * @default {10000}
   */
  handshakeTimeout?: number;
}

/** Default of {@linkcode ConnectTlsOptions.handshakeTimeout}, in milliseconds. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Options for {@linkcode request}. */
export interface RequestOptions extends ConnectOptions {
  /**
   * Aborting it closes the connection and rejects with the signal's reason.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * Connects to an upcase server, with the seed's defaults (127.0.0.1:6666).
 *
 * @param options Where to connect.
 * @returns The connection; close it when done.
 * @throws {Deno.errors.ConnectionRefused} When no server listens there.
 * @throws {Deno.errors.NotCapable} Without `--allow-net` for the address
 *   (`--allow-read` and `--allow-write` for a socket path).
 *
 * @example Usage
 * ```ts
 * import { connect, serve } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * using conn = await connect({ port: server.addr.port });
 * assertEquals((conn.remoteAddr as Deno.NetAddr).port, server.addr.port);
 * ```
 */
export async function connect(
  options: ConnectOptions = {},
): Promise<Deno.Conn> {
  if (options.path !== undefined) {
    return await Deno.connect({ transport: "unix", path: options.path });
  }
  const hostname = options.hostname ?? CLIENT_HOST;
  const port = options.port ?? SERV_PORT;
  const { tls } = options;
  if (tls === undefined) {
    return await withProxyHeader(
      await Deno.connect({ hostname, port, transport: "tcp" }),
      options.proxyHeader,
    );
  }
  if (tls.cert !== undefined || tls.key !== undefined) {
    if (options.proxyHeader !== undefined) {
      throw new TypeError(
        "Conflicting options: a client certificate cannot be combined with proxyHeader (Deno.connectTls starts TLS at once)",
      );
    }
    // Deno.startTls cannot present a client certificate; connectTls can, with
    // the name it connects to as the server's name.
    if (tls.serverName !== undefined) {
      throw new TypeError(
        "Conflicting TLS options: a client certificate cannot be combined with serverName",
      );
    }
    return await handshake(
      Deno.connectTls({
        hostname,
        port,
        caCerts: tls.caCerts,
        cert: tls.cert ?? "",
        key: tls.key ?? "",
      }),
      tls,
    );
  }
  const tcp = await withProxyHeader(
    await Deno.connect({ hostname, port, transport: "tcp" }),
    options.proxyHeader,
  );
  const conn = Deno.startTls(tcp, {
    hostname: tls.serverName ?? hostname,
    caCerts: tls.caCerts,
  });
  return await handshake(conn, tls, tcp);
}

/** Writes a PROXY header with the connection's addresses, if asked to. */
async function withProxyHeader(
  conn: Deno.TcpConn,
  version: 1 | 2 | undefined,
): Promise<Deno.TcpConn> {
  if (version === undefined) return conn;
  try {
    await writeAll(
      conn,
      encodeProxyHeader(version, conn.localAddr, conn.remoteAddr),
    );
  } catch (err: unknown) {
    closeQuietly(conn);
    throw err;
  }
  return conn;
}

/**
 * Completes the client side of a TLS handshake within its time limit; on
 * failure closes the socket (`tcp`, while the TLS connection is not there
 * yet).
 */
async function handshake(
  connecting: Promise<Deno.TlsConn>,
  tls: ConnectTlsOptions,
  tcp?: Deno.TcpConn,
): Promise<Deno.TlsConn> {
  const limit = tls.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let conn: Deno.TlsConn | undefined;
  const expired = new Promise<never>((_, reject) => {
    if (limit === 0) return;
    timer = setTimeout(() => {
      reject(
        new Deno.errors.TimedOut(
          `TLS handshake not complete within ${limit / 1000} s`,
        ),
      );
    }, limit);
  });
  try {
    conn = await Promise.race([connecting, expired]);
    await Promise.race([conn.handshake(), expired]);
    return conn;
  } catch (err: unknown) {
    if (conn !== undefined) closeQuietly(conn);
    else if (tcp !== undefined) closeQuietly(tcp);
    connecting.then(closeQuietly, () => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** What {@linkcode exchange} did. */
export interface ExchangeResult {
  /** Bytes written to the server. */
  sent: number;
  /** Bytes received from the server. */
  received: number;
  /**
   * The server reset the connection or stopped reading before it had
   * everything (as the seed's server does past MAXLINE bytes).
   */
  reset: boolean;
}

/** Size of the buffer replies are read into. */
const REPLY_BUFFER_SIZE = 64 * 1024;

/**
 * Sends every chunk of `source` to `conn`, half-closes it, and passes each
 * piece of the reply to `sink` until the server closes. Sending and receiving
 * run at once, so a reply larger than the socket buffers cannot deadlock.
 *
 * A server that closes early ends the exchange without an error: the result
 * says how far it got.
 *
 * @param conn A connected socket; it is not closed.
 * @param source The bytes to send.
 * @param sink Receives each piece of the reply. The array is reused once the
 *   returned promise settles: copy it to keep it.
 * @returns How many bytes went each way.
 *
 * @example Stream a request
 * ```ts
 * import { exchange, serve } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
 * const chunks = [new TextEncoder().encode("ab"), new TextEncoder().encode("c")];
 * let reply = "";
 * const result = await exchange(conn, chunks, (bytes) => {
 *   reply += new TextDecoder().decode(bytes);
 * });
 * assertEquals(reply, "ABC");
 * assertEquals(result, { sent: 3, received: 3, reset: false });
 * ```
 */
export async function exchange(
  conn: Deno.Conn,
  source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  sink: (bytes: Uint8Array) => void | Promise<void>,
): Promise<ExchangeResult> {
  const result: ExchangeResult = { sent: 0, received: 0, reset: false };
  await Promise.all([
    send(conn, source, result),
    receive(conn, sink, result),
  ]);
  return result;
}

async function send(
  conn: Deno.Conn,
  source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  result: ExchangeResult,
): Promise<void> {
  try {
    for await (const chunk of source) {
      await writeAll(conn, chunk);
      result.sent += chunk.length;
    }
    await conn.closeWrite();
  } catch (err: unknown) {
    if (!isPeerGone(err)) throw err;
    result.reset = true;
  }
}

async function receive(
  conn: Deno.Conn,
  sink: (bytes: Uint8Array) => void | Promise<void>,
  result: ExchangeResult,
): Promise<void> {
  const buf = new Uint8Array(REPLY_BUFFER_SIZE);
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) return;
      result.received += n;
      await sink(buf.subarray(0, n));
    }
  } catch (err: unknown) {
    // Over TLS, a server that closes without close_notify has ended its
    // reply all the same.
    if (err instanceof Deno.errors.UnexpectedEof) return;
    if (!isPeerGone(err)) throw err;
    result.reset = true;
  }
}

/**
 * Sends `message` to an upcase server, half-closes, and resolves with the
 * whole reply once the server closes.
 *
 * A server that stops early (the seed's reads at most MAXLINE bytes) gives a
 * shorter reply than the message: compare the lengths to detect it.
 *
 * @param message The bytes to send; a string is sent as UTF-8.
 * @param options Where to connect, and a signal to abort.
 * @returns The reply bytes.
 * @throws {Deno.errors.ConnectionRefused} When no server listens there.
 * @throws {Deno.errors.NotCapable} Without `--allow-net` for the address.
 *
 * @example Usage
 * ```ts
 * import { request, serve } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * const reply = await request("hi there", { port: server.addr.port });
 * assertEquals(new TextDecoder().decode(reply), "HI THERE");
 * ```
 */
export async function request(
  message: Uint8Array | string,
  options: RequestOptions = {},
): Promise<Uint8Array> {
  const bytes = typeof message === "string"
    ? new TextEncoder().encode(message)
    : message;
  const { signal } = options;
  signal?.throwIfAborted();
  const conn = await connect(options);
  if (signal?.aborted) {
    closeQuietly(conn);
    signal.throwIfAborted();
  }
  const abort = () => closeQuietly(conn);
  signal?.addEventListener("abort", abort, { once: true });
  const chunks: Uint8Array[] = [];
  try {
    await exchange(conn, [bytes], (chunk) => {
      chunks.push(chunk.slice());
    });
  } catch (err: unknown) {
    signal?.throwIfAborted();
    throw err;
  } finally {
    signal?.removeEventListener("abort", abort);
    closeQuietly(conn);
  }
  signal?.throwIfAborted();
  return concat(chunks);
}
