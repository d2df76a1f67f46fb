// Copyright the upcase authors. MIT license.
/**
 * The server's HTTP side channel, on `Deno.serve`: `GET /metrics` for
 * Prometheus, `GET /healthz` for load balancers, and, given an
 * {@linkcode EventHub}, the live page at `GET /` with its event feed at
 * `GET /events`. It knows nothing of the TCP server; it asks the callbacks
 * and the hub it is given.
 *
 * @module
 */

import {
  METRICS_CONTENT_TYPE,
  type MetricsSnapshot,
  renderMetrics,
} from "./metrics.ts";
import { type EventHub, SlowPageError } from "./_event_hub.ts";
import { PAGE } from "./_page.ts";

/** Options for {@linkcode serveMetrics}. */
export interface ServeMetricsOptions {
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
   * Called once with the address listened on (with the real port when
   * `port` was 0). Deno's own "Listening on" line is never printed.
   *
   * @default {undefined} nothing is called
   */
  onListen?: (addr: Deno.NetAddr) => void;
}

/** A running side channel, from {@linkcode serveMetrics}. */
export interface MetricsServer {
  /** The address it listens on. */
  addr: Deno.NetAddr;
  /** Resolves when the server has stopped. */
  finished: Promise<void>;
  /**
   * Stops listening, lets requests in flight finish, ends the pages' event
   * streams, closes idle connections, and resolves when all of that is done
   * (with a page that stopped reading, after at most 2 s).
   */
  shutdown(): Promise<void>;
}

/**
 * How long {@linkcode MetricsServer.shutdown} waits for an event stream
 * that does not end: a page that stopped reading holds its connection with
 * a write the kernel cannot take, and `Deno.serve` waits on it.
 */
const STREAM_SHUTDOWN_LIMIT_MS = 2000;

/** The methods every route answers; the `Allow` header of a 405. */
const ALLOWED_METHODS = "GET, HEAD";

/** What a route handler gets besides the request. */
interface RouteContext {
  /** The options {@linkcode serveMetrics} was given. */
  options: ServeMetricsOptions;
  /**
   * Aborted when {@linkcode MetricsServer.shutdown} starts: a route that
   * streams (a live event feed) ends its stream on it, so shutdown does not
   * wait on it.
   */
  signal: AbortSignal;
}

/**
 * Answers `GET` for one path. `HEAD` is answered by the same handler: Deno
 * sends the status and headers (with the `Content-Length` of the body) and
 * drops the body.
 */
type RouteHandler = (
  request: Request,
  context: RouteContext,
) => Response | Promise<Response>;

/**
 * Every path the side channel serves, and what answers it. A new page
 * (`/` for a live page, `/events` for its feed) is one more entry here.
 */
const ROUTES: ReadonlyMap<string, RouteHandler> = new Map([
  ["/metrics", metrics],
  ["/healthz", healthz],
  ["/", page],
  ["/events", events],
]);

/**
 * Serves `/metrics` and `/healthz` over HTTP with `Deno.serve`.
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
 * - Any other path: 404.
 *
 * @param options Where to listen and where the numbers come from.
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
  const context: RouteContext = { options, signal: stopping.signal };
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    onListen: (addr) => options.onListen?.(addr),
    onError: (error: unknown) => {
      // A page dropped for not reading: expected, and not worth a line.
      if (!(error instanceof SlowPageError)) console.error(error);
      return text(500, "internal server error\n");
    },
  }, (request) => route(request, context));
  return {
    addr: server.addr,
    finished: server.finished,
    async shutdown() {
      stopping.abort();
      if (options.hub === undefined) return await server.shutdown();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        server.shutdown(),
        new Promise((resolve) => {
          timer = setTimeout(resolve, STREAM_SHUTDOWN_LIMIT_MS);
        }),
      ]);
      clearTimeout(timer);
    },
  };
}

/** Finds the route for a request, or answers 404 or 405. */
function route(
  request: Request,
  context: RouteContext,
): Response | Promise<Response> {
  const handler = ROUTES.get(new URL(request.url).pathname);
  if (handler === undefined) return text(404, "not found\n");
  if (request.method !== "GET" && request.method !== "HEAD") {
    return text(405, "method not allowed\n", { allow: ALLOWED_METHODS });
  }
  return handler(request, context);
}

/** `GET /metrics`: the exposition of the current snapshot. */
function metrics(_request: Request, { options }: RouteContext): Response {
  const body = renderMetrics(options.snapshot(), Deno.memoryUsage().rss);
  return new Response(body, {
    headers: {
      "content-type": METRICS_CONTENT_TYPE,
      "cache-control": "no-store",
    },
  });
}

/** `GET /healthz`: 200 while healthy, 503 while draining. */
function healthz(_request: Request, { options }: RouteContext): Response {
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
function page(_request: Request, { options }: RouteContext): Response {
  if (options.hub === undefined) return text(404, "not found\n");
  return new Response(PAGE, {
    headers: {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "content-security-policy": PAGE_POLICY,
      "x-content-type-options": "nosniff",
    },
  });
}

/** `GET /events`: the hub's history, then its live events, until shutdown. */
function events(request: Request, { options, signal }: RouteContext): Response {
  const hub = options.hub;
  if (hub === undefined) return text(404, "not found\n");
  const headers = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-store",
  };
  if (request.method === "HEAD") return new Response(null, { headers });
  // A page that goes away cancels the body; shutdown aborts `signal`.
  const body = hub.subscribe(signal);
  if (body === undefined) {
    return text(503, "too many pages open, or shutting down\n", {
      "retry-after": "5",
    });
  }
  return new Response(body, { headers });
}

/** A plain-text response that no cache keeps. */
function text(
  status: number,
  body: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(body, {
    status,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
    },
  });
}
