// Copyright the upcase authors. MIT license.
/**
 * A small HTTP/1.1 server on `Deno.listen` for the side channel, bounded in
 * what any peer can take: a cap on open connections, half of them at most
 * from one address (the one that has waited longest without a request makes
 * room for a new one), a deadline for each request head, one for an
 * idle keep-alive connection and one for each response write, a head of at
 * most {@linkcode MAX_HEAD_BYTES}, a body of at most
 * {@linkcode MAX_BODY_BYTES}, and a request rate shared fairly by the
 * connections (see {@linkcode RequestBudget}). Keep-alive and pipelined
 * requests are answered in order; HTTP/1.0 too. Its accept loop is the
 * service port's: a descriptor shortage is reported and retried, a client
 * that reset before it was accepted is nothing. It never writes to stdout or
 * stderr itself. Internal.
 *
 * @module
 */

import { closeQuietly, concat, errorMessage, sleep, writeAll } from "./_io.ts";
import { nextAcceptBackoff, resetBeforeAccept } from "./_accept.ts";
import {
  MAX_BODY_BYTES,
  MAX_HEAD_BYTES,
  parseRequestHead,
  type ParseResult,
  type RequestHead,
} from "./_http_request.ts";
import { RequestBudget } from "./_request_budget.ts";

export { MAX_BODY_BYTES, MAX_HEAD_BYTES };

/** The bounds of an {@linkcode HttpServer}, with their defaults. */
export interface HttpLimits {
  /**
   * The most connections open at once. A new one beyond it closes the
   * connection that has waited longest without a request in progress, or,
   * if every one is busy, gets 503 and is closed.
   *
   * @default {64}
   */
  maxConnections: number;
  /**
   * The most connections from one address. A new one beyond it closes that
   * address's connection that has waited longest without a request in
   * progress (or gets 503): one peer cannot take the others' places.
   *
   * @default {32}
   */
  maxConnectionsPerAddress: number;
  /**
   * Milliseconds a request head (and its body) may take to arrive, from the
   * connection's start or from the request's first byte.
   *
   * @default {5000}
   */
  headerTimeout: number;
  /**
   * Milliseconds a keep-alive connection may wait for its next request.
   *
   * @default {10000}
   */
  keepAliveTimeout: number;
  /**
   * Milliseconds one response write may wait for the client to read.
   *
   * @default {10000}
   */
  writeTimeout: number;
  /**
   * Requests per second, for all connections together, taken in turns.
   *
   * @default {200}
   */
  requestRate: number;
  /**
   * New connections accepted per second; beyond it they wait in the
   * kernel's accept queue. A client that reconnects as fast as it can costs
   * no more than this.
   *
   * @default {500}
   */
  acceptRate: number;
}

/** The default {@linkcode HttpLimits}, in one place. */
export const HTTP_LIMITS: Readonly<HttpLimits> = {
  maxConnections: 64,
  maxConnectionsPerAddress: 32,
  headerTimeout: 5000,
  keepAliveTimeout: 10_000,
  writeTimeout: 10_000,
  requestRate: 200,
  acceptRate: 500,
};

/** How many requests may go at once after a quiet time. */
const REQUEST_BURST = 50;
/**
 * The pause before reading the next piece of a head or body that came in
 * pieces: a client that sends a byte per segment is read a few segments at a
 * time (at most 200 reads a second), and the kernel's queue stays short.
 */
const PIECE_PAUSE_MS = 5;

/** How many connections may be accepted at once after a quiet time. */
const ACCEPT_BURST = 100;

/** A request, as a handler gets it. */
export interface HttpRequest extends RequestHead {
  /** The content, empty for most requests. */
  body: Uint8Array;
  /** The peer. */
  remote: Deno.NetAddr;
}

/** A response, as a handler returns it. */
export interface HttpResponse {
  /** The status code. */
  status: number;
  /** Header fields (lower-case names); Content-Length is added. */
  headers?: Record<string, string>;
  /** The body, whole. */
  body?: string | Uint8Array;
  /**
   * A body that goes on (Server-Sent Events): chunked to HTTP/1.1, until
   * the close to HTTP/1.0; the connection closes when it ends. When the
   * stream errors (its reader was dropped as too slow), the connection is
   * closed at once, even in the middle of a write.
   */
  stream?: ReadableStream<Uint8Array>;
}

/** Answers one request. It may throw: the client then gets a 500. */
export type HttpHandler = (
  request: HttpRequest,
) => HttpResponse | Promise<HttpResponse>;

/** Options for {@linkcode HttpServer}. */
export interface HttpServerOptions extends Partial<HttpLimits> {
  /** The address to listen on. */
  hostname: string;
  /** The port; 0 picks a free one. */
  port: number;
  /** Answers each request. */
  handler: HttpHandler;
  /**
   * Told of what went wrong for the listener (an accept that failed), at
   * most once per pause of the accept loop: one line.
   */
  onAcceptError?: (message: string) => void;
}

/** Counters of an {@linkcode HttpServer}. */
export interface HttpStats {
  /** Connections open now. */
  open: number;
  /** Connections accepted since start. */
  accepted: number;
  /** Responses sent, by status code. */
  responses: Map<number, number>;
  /** Connections closed to make room for a new one. */
  evicted: number;
  /** Accepts that failed for the listener (EMFILE and the like). */
  acceptErrors: number;
}

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  414: "URI Too Long",
  422: "Unprocessable Content",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

const encoder = new TextEncoder();
const LF = 0x0a;
/** What an unchanged incomplete head parses to. */
const INCOMPLETE: ParseResult = { kind: "incomplete" };

/**
 * What a connection is doing, for the cap and the deadlines: waiting for a
 * request (`idle`) or for the rest of its head (`head`), waiting for its turn
 * with a request read (`queued`), being answered (`busy`), or streaming.
 */
type Phase = "head" | "idle" | "queued" | "busy" | "stream";

/** One open connection of the side channel. */
interface HttpConnection {
  conn: Deno.Conn;
  /** The peer's address, for its share of the cap. */
  address: string;
  phase: Phase;
  /** When it last started waiting for a request, for the cap's choice. */
  since: number;
  /** Requests answered on it so far, for the cap's choice. */
  served: number;
  /** Aborted when the connection closes. */
  closed: AbortController;
}

/**
 * The side channel's HTTP/1.1 server.
 *
 * @example Usage
 * ```ts
 * import { HttpServer } from "./_http_server.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const server = new HttpServer({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   handler: () => ({ status: 200, body: "ok\n" }),
 * });
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * assertEquals(await response.text(), "ok\n");
 * await server.shutdown();
 * ```
 */
export class HttpServer {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** Resolves once the accept loop has ended and every connection closed. */
  readonly finished: Promise<void>;
  readonly #listener: Deno.Listener;
  readonly #options: HttpServerOptions;
  readonly #limits: HttpLimits;
  readonly #budget: RequestBudget;
  readonly #accepts: RequestBudget;
  readonly #open = new Set<HttpConnection>();
  /** The open connections by peer address. */
  readonly #byAddress = new Map<string, Set<HttpConnection>>();
  readonly #stats: HttpStats = {
    open: 0,
    accepted: 0,
    responses: new Map(),
    evicted: 0,
    acceptErrors: 0,
  };
  #closing = false;
  #stopAccepting: () => void = () => {};
  #allClosed = Promise.withResolvers<void>();

  /**
   * Listens and starts serving.
   *
   * @param options Where to listen, the handler and the bounds.
   * @throws {Deno.errors.AddrInUse} If the port is taken.
   */
  constructor(options: HttpServerOptions) {
    this.#options = options;
    this.#limits = {
      maxConnections: options.maxConnections ?? HTTP_LIMITS.maxConnections,
      maxConnectionsPerAddress: options.maxConnectionsPerAddress ??
        HTTP_LIMITS.maxConnectionsPerAddress,
      headerTimeout: options.headerTimeout ?? HTTP_LIMITS.headerTimeout,
      keepAliveTimeout: options.keepAliveTimeout ??
        HTTP_LIMITS.keepAliveTimeout,
      writeTimeout: options.writeTimeout ?? HTTP_LIMITS.writeTimeout,
      requestRate: options.requestRate ?? HTTP_LIMITS.requestRate,
      acceptRate: options.acceptRate ?? HTTP_LIMITS.acceptRate,
    };
    this.#budget = new RequestBudget(this.#limits.requestRate, REQUEST_BURST);
    this.#accepts = new RequestBudget(this.#limits.acceptRate, ACCEPT_BURST);
    this.#listener = Deno.listen({
      hostname: options.hostname,
      port: options.port,
      transport: "tcp",
    });
    this.addr = this.#listener.addr as Deno.NetAddr;
    this.finished = this.#acceptLoop();
  }

  /** A snapshot of the counters. */
  get stats(): HttpStats {
    return {
      ...this.#stats,
      open: this.#open.size,
      responses: new Map(this.#stats.responses),
    };
  }

  /**
   * Stops listening, closes the connections that wait for a request, lets
   * requests in progress finish for up to `graceMs`, then closes the rest.
   * Streams are the handlers' to end (their own signal).
   *
   * @param graceMs How long requests in progress may go on.
   * @returns A promise that resolves once everything is closed.
   */
  async shutdown(graceMs = 2000): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      this.#stopAccepting();
      this.#listener.close();
      for (const c of this.#open) {
        if (c.phase === "head" || c.phase === "idle") close(c);
      }
      if (this.#open.size === 0) this.#allClosed.resolve();
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#allClosed.promise,
      new Promise((resolve) => timer = setTimeout(resolve, graceMs)),
    ]);
    clearTimeout(timer);
    for (const c of this.#open) close(c);
    this.#budget.close();
    this.#accepts.close();
    await this.finished;
  }

  async #acceptLoop(): Promise<void> {
    let backoff = 0;
    const stopping = new AbortController();
    this.#stopAccepting = () => stopping.abort();
    while (!this.#closing) {
      let conn: Deno.Conn;
      try {
        await this.#accepts.take(stopping.signal);
        conn = await this.#listener.accept();
      } catch (err: unknown) {
        if (this.#closing) break;
        if (resetBeforeAccept(err)) continue;
        // EMFILE and the like: say so, wait, try again; never give up.
        this.#stats.acceptErrors++;
        this.#options.onAcceptError?.(errorMessage(err));
        backoff = nextAcceptBackoff(backoff);
        await new Promise((resolve) => setTimeout(resolve, backoff));
        continue;
      }
      backoff = 0;
      this.#admit(conn);
    }
    await this.#allClosed.promise;
  }

  #admit(conn: Deno.Conn): void {
    this.#stats.accepted++;
    const address = (conn.remoteAddr as Deno.NetAddr).hostname;
    const mine = this.#byAddress.get(address);
    // Room is made by the connection that has waited longest for a request
    // (a silent or slow client gives way to a new one): the address's own
    // when it holds its share, else the busiest address's.
    let from: Set<HttpConnection> | undefined;
    if ((mine?.size ?? 0) >= this.#limits.maxConnectionsPerAddress) {
      from = mine;
    } else if (this.#open.size >= this.#limits.maxConnections) {
      for (const set of this.#byAddress.values()) {
        if (from === undefined || set.size > from.size) from = set;
      }
    }
    if (from !== undefined) {
      const victim = longestWaiting(from);
      if (victim === undefined) {
        this.#refuseBusy(conn);
        return;
      }
      this.#stats.evicted++;
      // Gone from the counts now, not once its reader has noticed.
      this.#forget(victim);
    }
    const c: HttpConnection = {
      conn,
      address,
      phase: "head",
      since: Date.now(),
      served: 0,
      closed: new AbortController(),
    };
    this.#open.add(c);
    const set = this.#byAddress.get(address) ?? new Set();
    set.add(c);
    this.#byAddress.set(address, set);
    this.#handleConnection(c);
  }

  /** Closes `c` and takes it out of the counts. */
  #forget(c: HttpConnection): void {
    close(c);
    this.#open.delete(c);
    const set = this.#byAddress.get(c.address);
    set?.delete(c);
    if (set?.size === 0) this.#byAddress.delete(c.address);
    if (this.#closing && this.#open.size === 0) this.#allClosed.resolve();
  }

  /** 503 to a connection beyond the cap, then close (never waits long). */
  #refuseBusy(conn: Deno.Conn): void {
    const bytes = this.#head(
      503,
      { "retry-after": "1" },
      "too many connections to the metrics address\n",
      false,
    );
    const timer = setTimeout(() => closeQuietly(conn), 1000);
    writeAll(conn, bytes).catch(() => {}).finally(() => {
      clearTimeout(timer);
      closeQuietly(conn);
    });
  }

  /** Serves one connection's requests in order until it ends. */
  async #handleConnection(c: HttpConnection): Promise<void> {
    const { conn } = c;
    const buffer = new Uint8Array(MAX_HEAD_BYTES);
    let filled = 0;
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const arm = (ms: number, onExpiry: () => void) => {
      clearTimeout(deadline);
      deadline = setTimeout(onExpiry, ms);
    };
    const timeoutResponse = () => {
      this.#send(c, 408, {}, "the request took too long to arrive\n", false)
        .catch(() => {}) // the client went away meanwhile: nothing to tell
        .finally(() => close(c));
    };
    try {
      arm(this.#limits.headerTimeout, timeoutResponse);
      // Whether the head may have changed its answer since the last parse:
      // it can only when a line has ended (or the buffer is full).
      let fresh = true;
      while (!c.closed.signal.aborted) {
        const parsed = fresh
          ? parseRequestHead(buffer.subarray(0, filled))
          : INCOMPLETE;
        if (parsed.kind === "refused") {
          clearTimeout(deadline);
          c.phase = "queued";
          // A refusal costs a turn like any answer: bad requests get no
          // more of the server's time than good ones.
          await this.#budget.take(c.closed.signal);
          c.phase = "busy";
          await this.#send(c, parsed.status, {}, `${parsed.reason}\n`, false);
          break;
        }
        if (parsed.kind === "incomplete") {
          // A head that comes in pieces is read at most every
          // PIECE_PAUSE_MS: a byte at a time costs a read (and a parse)
          // per piece, not per byte.
          if (filled > 0) await sleep(PIECE_PAUSE_MS, c.closed.signal);
          const n = await conn.read(buffer.subarray(filled));
          if (n === null) break; // the client is done (or gave up)
          if (filled === 0 && c.phase === "idle") {
            // The first byte of the next request: its head has a deadline.
            c.phase = "head";
            arm(this.#limits.headerTimeout, timeoutResponse);
          }
          fresh = filled === 0 || filled + n === buffer.length ||
            buffer.subarray(filled, filled + n).includes(LF);
          filled += n;
          continue;
        }
        const { head } = parsed;
        let used = parsed.length;
        let body = new Uint8Array(0);
        if (head.contentLength > 0) {
          body = new Uint8Array(head.contentLength);
          const have = Math.min(filled - used, head.contentLength);
          body.set(buffer.subarray(used, used + have));
          used += have;
          for (let got = have; got < head.contentLength;) {
            if (got > have) await sleep(PIECE_PAUSE_MS, c.closed.signal);
            const n = await conn.read(body.subarray(got));
            if (n === null) return; // cut short: nothing to answer
            got += n;
          }
        }
        clearTimeout(deadline);
        // The rest is the next request (pipelined): keep it for later.
        buffer.copyWithin(0, used, filled);
        filled -= used;
        fresh = true;
        c.phase = "queued";
        await this.#budget.take(c.closed.signal);
        c.phase = "busy";
        c.served++;
        const request: HttpRequest = {
          ...head,
          body,
          remote: conn.remoteAddr as Deno.NetAddr,
        };
        const keepAlive = head.keepAlive && !this.#closing;
        const response = await this.#respond(request);
        if (response.stream !== undefined) {
          c.phase = "stream";
          if (head.method === "HEAD") {
            // The head a GET gets, without the stream; then the close it
            // announces.
            response.stream.cancel().catch(() => {});
            await this.#write(c, this.#streamHead(head, response));
          } else await this.#stream(c, head, response);
          break;
        }
        await this.#send(
          c,
          response.status,
          response.headers ?? {},
          response.body ?? "",
          keepAlive,
          head.method === "HEAD",
        );
        if (!keepAlive) break;
        c.phase = filled > 0 ? "head" : "idle";
        c.since = Date.now();
        arm(
          filled > 0
            ? this.#limits.headerTimeout
            : this.#limits.keepAliveTimeout,
          filled > 0 ? timeoutResponse : () => close(c),
        );
      }
    } catch (err: unknown) {
      // The peer reset or went away, or the connection was closed under a
      // read or a write (a deadline, the cap, shutdown): it only ends this
      // connection.
      if (!(err instanceof Error)) throw err;
    } finally {
      clearTimeout(deadline);
      this.#forget(c);
    }
  }

  /** Runs the handler; a throw is a 500 with its message, never a trace. */
  async #respond(request: HttpRequest): Promise<HttpResponse> {
    try {
      return await this.#options.handler(request);
    } catch (err: unknown) {
      return { status: 500, body: `internal error: ${errorMessage(err)}\n` };
    }
  }

  /** Writes a whole response, within the write deadline. */
  async #send(
    c: HttpConnection,
    status: number,
    headers: Record<string, string>,
    body: string | Uint8Array,
    keepAlive: boolean,
    headOnly = false,
  ): Promise<void> {
    const bytes = typeof body === "string" ? encoder.encode(body) : body;
    const head = this.#head(
      status,
      { ...headers, "content-length": String(bytes.length) },
      "",
      keepAlive,
    );
    await this.#write(c, headOnly ? head : concat([head, bytes]));
  }

  /** Sends a stream's chunks as they come, until it ends or errors. */
  async #stream(
    c: HttpConnection,
    head: RequestHead,
    response: HttpResponse,
  ): Promise<void> {
    const chunked = head.minor === 1;
    const reader = response.stream!.getReader();
    // A stream that errors (its page was dropped for not reading) closes
    // the connection now: the write it may be stuck in fails.
    reader.closed.catch(() => close(c));
    c.closed.signal.addEventListener(
      "abort",
      () => reader.cancel().catch(() => {}),
      { once: true },
    );
    await this.#write(c, this.#streamHead(head, response));
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      await this.#write(
        c,
        chunked
          ? concat([
            encoder.encode(`${value.length.toString(16)}\r\n`),
            value,
            encoder.encode("\r\n"),
          ])
          : value,
      );
    }
    if (chunked) await this.#write(c, encoder.encode("0\r\n\r\n"));
  }

  /** The status line and fields of a streamed response. */
  #streamHead(head: RequestHead, response: HttpResponse): Uint8Array {
    return this.#head(
      response.status,
      head.minor === 1
        ? { ...response.headers, "transfer-encoding": "chunked" }
        : response.headers ?? {},
      "",
      false,
    );
  }

  /**
   * Writes all of `bytes`; closes the connection when the client has not
   * taken them within the write timeout (a stream's writes too: a page that
   * does not read is let go).
   */
  async #write(c: HttpConnection, bytes: Uint8Array) {
    const timer = setTimeout(() => close(c), this.#limits.writeTimeout);
    try {
      await writeAll(c.conn, bytes);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A status line and header fields, with a body if given. */
  #head(
    status: number,
    headers: Record<string, string>,
    body: string,
    keepAlive: boolean,
  ): Uint8Array {
    this.#stats.responses.set(
      status,
      (this.#stats.responses.get(status) ?? 0) + 1,
    );
    const fields = {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
      ...(body === "" ? {} : { "content-length": String(body.length) }),
      connection: keepAlive ? "keep-alive" : "close",
    };
    let text = `HTTP/1.1 ${status} ${REASONS[status] ?? "Unknown"}\r\n`;
    for (const [name, value] of Object.entries(fields)) {
      text += `${name}: ${value}\r\n`;
    }
    return encoder.encode(`${text}\r\n${body}`);
  }
}

/**
 * The connection of `set` to close for a new one: the one that has waited
 * longest for a request; else, of those waiting for their turn, the one
 * answered most often (a pipelining client that never lets go). Never one
 * being answered or streaming.
 */
function longestWaiting(
  set: Iterable<HttpConnection>,
): HttpConnection | undefined {
  let oldest: HttpConnection | undefined;
  let busiest: HttpConnection | undefined;
  for (const c of set) {
    if (c.phase === "idle" || c.phase === "head") {
      if (oldest === undefined || c.since < oldest.since) oldest = c;
    } else if (c.phase === "queued") {
      if (busiest === undefined || c.served > busiest.served) busiest = c;
    }
  }
  return oldest ?? busiest;
}

function close(c: HttpConnection): void {
  if (!c.closed.signal.aborted) c.closed.abort();
  closeQuietly(c.conn);
}
