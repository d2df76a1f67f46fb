// Copyright the upcase authors. MIT license.
/**
 * The server's HTTP side channel: `GET /metrics` for Prometheus,
 * `GET /healthz` for load balancers, and, given an {@linkcode EventHub}, the
 * live page at `GET /` with its event feed at `GET /events`. It runs on
 * upcase's own bounded HTTP/1.1 server ({@linkcode HttpServer}), not
 * `Deno.serve`, which has no header deadline, no connection cap and dies on
 * a descriptor shortage. It knows nothing of the TCP server; it asks the
 * callbacks and the hub it is given.
 *
 * @module
 */

import {
  METRICS_CONTENT_TYPE,
  type MetricsSnapshot,
  renderMetrics,
} from "./metrics.ts";
import { type EventHub, MAX_PAGES } from "./_event_hub.ts";
import { PAGE } from "./_page.ts";
import { FaultSpecError, parseFault } from "./_fault_spec.ts";
import { escapeLine } from "./_escape.ts";
import {
  type HttpLimits,
  type HttpRequest,
  type HttpResponse,
  HttpServer,
  type HttpStats,
} from "./_http_server.ts";

/** Options for {@linkcode serveMetrics}. */
export interface ServeMetricsOptions extends Partial<HttpLimits> {
  /** The address to listen on, such as `"127.0.0.1"`. */
  hostname: string;
  /** The port to listen on; 0 picks a free one. */
  port: number;
  /** The server's numbers now; called once per `GET /metrics`. */
  snapshot: () => MetricsSnapshot;
  /**
   * Whether the server takes new connections; called once per
   * `GET /healthz`, which answers 503 once it returns false.
   */
  healthy: () => boolean;
  /**
   * The events for the live page: with it, `GET /` serves the page and
   * `GET /events` its Server-Sent Events.
   *
   * @default {undefined} no page (404)
   */
  hub?: EventHub;
  /**
   * The most `/events` pages open at once from one client address (of the
   * hub's 16 in all).
   *
   * @default {4}
   */
  maxPagesPerAddress?: number;
  /**
   * The server's faults, for `/faults`: `GET` reads them; `PUT` and
   * `DELETE` change them only when `replace` is given (`--fault-api`),
   * else they answer 403.
   *
   * @default {undefined} no `/faults` (404)
   */
  faults?: FaultControl;
  /**
   * Called once with the address listened on (with the real port when
   * `port` was 0).
   *
   * @default {undefined} nothing is called
   */
  onListen?: (addr: Deno.NetAddr) => void;
  /**
   * Told, in one line, when an accept fails for the listener (a descriptor
   * shortage): the side channel waits a little and goes on.
   *
   * @default {undefined} nothing is told
   */
  onAcceptError?: (message: string) => void;
}

/** What `/faults` reads and changes (see {@linkcode ServeMetricsOptions.faults}). */
export interface FaultControl {
  /** The active faults, as `--fault` strings, and their seed. */
  current(): { faults: readonly string[]; seed: number | undefined };
  /**
   * Replaces the faults with `specs` (already parsed once here), for the
   * peer `by`; resolves once every Worker has them.
   *
   * @throws {FaultChangeError} For a change the server cannot make.
   */
  replace?(specs: string[], by: Deno.NetAddr): Promise<void>;
}

/** A change of the faults refused, with its HTTP status and one line. */
export class FaultChangeError extends Error {
  /** 400, 413 or 422. */
  readonly status: number;

  /**
   * @param status The HTTP status to answer.
   * @param message Why, in one line.
   */
  constructor(status: number, message: string) {
    super(message);
    this.name = "FaultChangeError";
    this.status = status;
  }
}

/** The largest `PUT /faults` body, in bytes. */
export const MAX_FAULTS_BODY_BYTES = 16 * 1024;

/** A running side channel, from {@linkcode serveMetrics}. */
export interface MetricsServer {
  /** The address it listens on. */
  addr: Deno.NetAddr;
  /** Resolves when the server has stopped. */
  finished: Promise<void>;
  /** Its connection and response counters. */
  readonly stats: HttpStats;
  /**
   * Stops listening, ends the pages' event streams, closes idle
   * connections, lets requests in flight finish (at most 2 s), and resolves
   * when all of that is done.
   */
  shutdown(): Promise<void>;
}

/** The methods every route answers; the `Allow` header of a 405. */
const ALLOWED_METHODS = "GET, HEAD";
/** ... and `/faults`. */
const FAULTS_METHODS = "GET, HEAD, PUT, DELETE";

/** What a route handler gets besides the request. */
interface RouteContext {
  /** The options {@linkcode serveMetrics} was given. */
  options: ServeMetricsOptions;
  /**
   * Aborted when {@linkcode MetricsServer.shutdown} starts: a route that
   * streams (a live event feed) ends its stream on it.
   */
  signal: AbortSignal;
  /** The process's resident memory at the last `/metrics` that could read it. */
  rss: number;
  /** The side channel's own counters, once it listens. */
  http: () => HttpStats | undefined;
  /** Open `/events` pages by client address. */
  pages: Map<string, number>;
}

/** Answers `GET` (and `HEAD`, the server dropping the body) for one path. */
type RouteHandler = (
  request: HttpRequest,
  context: RouteContext,
) => HttpResponse | Promise<HttpResponse>;

/**
 * Every path the side channel serves, and what answers it. A new page
 * (`/` for a live page, `/events` for its feed) is one more entry here.
 */
const ROUTES: ReadonlyMap<string, RouteHandler> = new Map<string, RouteHandler>(
  [
    ["/metrics", metrics],
    ["/healthz", healthz],
    ["/", page],
    ["/events", events],
    ["/faults", faults],
  ],
);

/**
 * Serves `/metrics` and `/healthz` over HTTP/1.1.
 *
 * - `GET /metrics`: 200, {@linkcode renderMetrics} of `snapshot()` and the
 *   process's resident memory, as `text/plain; version=0.0.4; charset=utf-8`.
 * - `GET /healthz`: 200 `ok\n` while `healthy()` is true, 503 `draining\n`
 *   once it is false.
 * - With `hub`: `GET /`, the live page (one HTML file, nothing fetched from
 *   elsewhere), and `GET /events`, its `text/event-stream` (see
 *   {@linkcode EventHub.subscribe}); 503 when too many pages are open.
 *   {@linkcode MetricsServer.shutdown} ends the streams.
 * - `HEAD` on any: the same status and headers, no body.
 * - Another method on any: 405 with `Allow: GET, HEAD`.
 * - Any other path: 404. A malformed request: 400 (431, 414, 413, 501, 505
 *   as they apply), and the connection is closed; no log line.
 *
 * @param options Where to listen, where the numbers come from, and the
 *   bounds (see {@linkcode HttpLimits}).
 * @returns The running server: its address, and how to stop it.
 * @throws {Deno.errors.AddrInUse} If the port is taken.
 *
 * @example Usage
 * ```ts
 * import { serveMetrics } from "./_http.ts";
 * import { DurationHistogram } from "./metrics.ts";
 * import { assertEquals } from "@std/assert";
 *
 * let draining = false;
 * const server = serveMetrics({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   snapshot: () => ({
 *     accepted: 0,
 *     active: 0,
 *     refused: 0,
 *     closed: {
 *       eof: 0,
 *       reset: 0,
 *       error: 0,
 *       "idle-timeout": 0,
 *       shutdown: 0,
 *       handshake: 0,
 *       header: 0,
 *       check: 0,
 *     },
 *     bytesIn: 0,
 *     bytesOut: 0,
 *     duration: new DurationHistogram().snapshot(),
 *     version: "0.1.0",
 *     startTimeSeconds: Date.now() / 1000,
 *   }),
 *   healthy: () => !draining,
 * });
 * try {
 *   const url = `http://127.0.0.1:${server.addr.port}/healthz`;
 *   draining = true;
 *   const response = await fetch(url);
 *   assertEquals(response.status, 503);
 *   assertEquals(await response.text(), "draining\n");
 * } finally {
 *   await server.shutdown();
 * }
 * ```
 */
export function serveMetrics(options: ServeMetricsOptions): MetricsServer {
  const stopping = new AbortController();
  const context: RouteContext = {
    options,
    signal: stopping.signal,
    rss: 0,
    http: () => undefined,
    pages: new Map(),
  };
  const server = new HttpServer({
    ...options,
    handler: (request) => route(request, context),
  });
  context.http = () => server.stats;
  options.onListen?.(server.addr);
  return {
    addr: server.addr,
    finished: server.finished,
    get stats() {
      return server.stats;
    },
    async shutdown() {
      stopping.abort();
      await server.shutdown();
    },
  };
}

/** Finds the route for a request, or answers 404 or 405. */
function route(
  request: HttpRequest,
  context: RouteContext,
): HttpResponse | Promise<HttpResponse> {
  const handler = ROUTES.get(request.path);
  if (handler === undefined) return text(404, "not found\n");
  const changes = request.path === "/faults" &&
    (request.method === "PUT" || request.method === "DELETE");
  if (request.method !== "GET" && request.method !== "HEAD" && !changes) {
    return text(405, "method not allowed\n", {
      allow: request.path === "/faults" ? FAULTS_METHODS : ALLOWED_METHODS,
    });
  }
  return handler(request, context);
}

/**
 * `/faults`: `GET` the active faults and their seed as JSON; with
 * `--fault-api`, `PUT` a JSON array of `--fault` strings to replace them,
 * `DELETE` to clear them (each answered with the new state).
 */
async function faults(
  request: HttpRequest,
  { options }: RouteContext,
): Promise<HttpResponse> {
  const control = options.faults;
  if (control === undefined) return text(404, "not found\n");
  if (request.method === "GET" || request.method === "HEAD") {
    return faultState(control);
  }
  if (control.replace === undefined) {
    return text(
      403,
      "changing faults needs --fault-api (the metrics address has no authentication)\n",
    );
  }
  let specs: string[] = [];
  if (request.method === "PUT") {
    if (request.body.length > MAX_FAULTS_BODY_BYTES) {
      return text(
        413,
        `the body is larger than ${MAX_FAULTS_BODY_BYTES} bytes\n`,
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(request.body));
    } catch {
      return text(
        400,
        'not JSON: send an array of --fault strings, like ["latency:delay=50ms"]\n',
      );
    }
    if (
      !Array.isArray(parsed) ||
      !parsed.every((item) => typeof item === "string")
    ) {
      return text(
        400,
        'not an array of strings: send ["latency:delay=50ms", ...]\n',
      );
    }
    specs = parsed;
    for (const [i, spec] of specs.entries()) {
      try {
        parseFault(spec);
      } catch (err: unknown) {
        if (!(err instanceof FaultSpecError)) throw err;
        return text(400, `entry ${i}: ${escapeLine(err.message)}\n`);
      }
    }
  }
  try {
    await control.replace(specs, request.remote);
  } catch (err: unknown) {
    if (!(err instanceof FaultChangeError)) throw err;
    return text(err.status, `${escapeLine(err.message)}\n`);
  }
  return faultState(control);
}

/** The faults and their seed, as `GET /faults` answers them. */
function faultState(control: FaultControl): HttpResponse {
  const { faults, seed } = control.current();
  return {
    status: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ faults, seed: seed ?? null }) + "\n",
  };
}

/** `GET /metrics`: the exposition of the current snapshot. */
function metrics(_request: HttpRequest, context: RouteContext): HttpResponse {
  try {
    context.rss = Deno.memoryUsage().rss;
  } catch (err: unknown) {
    // Out of descriptors, say: the last figure read stands in.
    if (!(err instanceof Error)) throw err;
  }
  return {
    status: 200,
    headers: { "content-type": METRICS_CONTENT_TYPE },
    body: renderMetrics(
      { ...context.options.snapshot(), http: context.http() },
      context.rss,
    ),
  };
}

/** `GET /healthz`: 200 while healthy, 503 while draining. */
function healthz(_request: HttpRequest, { options }: RouteContext) {
  return options.healthy() ? text(200, "ok\n") : text(503, "draining\n");
}

/**
 * What the page may load: nothing but itself and its event feed, so it
 * works offline and can never fetch from elsewhere.
 */
const PAGE_POLICY = "default-src 'none'; script-src 'unsafe-inline'; " +
  "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** `GET /`: the live page, or 404 without a hub. */
function page(_request: HttpRequest, { options }: RouteContext): HttpResponse {
  if (options.hub === undefined) return text(404, "not found\n");
  return {
    status: 200,
    headers: {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": PAGE_POLICY,
      "x-content-type-options": "nosniff",
    },
    body: PAGE,
  };
}

/** Default of {@linkcode ServeMetricsOptions.maxPagesPerAddress}. */
export const MAX_PAGES_PER_ADDRESS = 4;

/** `GET /events`: the hub's history, then its live events, until shutdown. */
function events(
  request: HttpRequest,
  { options, signal, pages }: RouteContext,
): HttpResponse {
  const hub = options.hub;
  if (hub === undefined) return text(404, "not found\n");
  const address = request.remote.hostname;
  const mine = pages.get(address) ?? 0;
  const most = options.maxPagesPerAddress ?? MAX_PAGES_PER_ADDRESS;
  if (mine >= most) {
    return text(
      503,
      `too many pages open from ${address} (at most ${most})\n`,
      { "retry-after": "5" },
    );
  }
  if (signal.aborted || hub.pages >= MAX_PAGES) {
    return text(503, "too many pages open, or shutting down\n", {
      "retry-after": "5",
    });
  }
  const headers = { "content-type": "text/event-stream; charset=utf-8" };
  // HEAD: the head of the stream, without opening one.
  if (request.method === "HEAD") {
    return { status: 200, headers, stream: new ReadableStream() };
  }
  // The server cancels the stream when the page goes; shutdown aborts
  // `signal`; a page that stops reading is dropped by the hub (or by the
  // server's write deadline), and its connection closed.
  const stream = hub.subscribe(signal);
  if (stream === undefined) {
    return text(503, "too many pages open, or shutting down\n", {
      "retry-after": "5",
    });
  }
  pages.set(address, mine + 1);
  return {
    status: 200,
    headers,
    stream: whenEnded(stream, () => {
      const left = (pages.get(address) ?? 1) - 1;
      if (left > 0) pages.set(address, left);
      else pages.delete(address);
    }),
  };
}

/**
 * `stream`, with `onEnd` called once when it ends, errors or is cancelled.
 * An error of `stream` (its page dropped for not reading) reaches the
 * returned stream at once, even while nobody reads it.
 */
function whenEnded(
  stream: ReadableStream<Uint8Array>,
  onEnd: () => void,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  let ended = false;
  const end = () => {
    if (!ended) onEnd();
    ended = true;
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      reader.closed.catch((err: unknown) => {
        end();
        try {
          controller.error(err);
        } catch {
          // Closed or errored already.
        }
      });
    },
    async pull(controller) {
      try {
        const { value, done } = await reader.read();
        if (done) {
          end();
          controller.close();
        } else controller.enqueue(value);
      } catch (err: unknown) {
        end();
        controller.error(err);
      }
    },
    cancel(reason) {
      end();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** A plain-text response. */
function text(
  status: number,
  body: string,
  headers: Record<string, string> = {},
): HttpResponse {
  return { status, headers, body };
}
