#!/usr/bin/env -S deno run --allow-net=0.0.0.0:6666
// Copyright the upcase authors. MIT license.
/**
 * The upcase server: every byte a client sends comes back upper-cased.
 *
 * ```sh
 * deno run --allow-net=0.0.0.0:6666 server.ts
 * ```
 *
 * @module
 */

import { MAXLINE, SERV_PORT, SERVER_HOST } from "./src/constants.ts";
import {
  DEFAULT_GRACE_MS,
  DEFAULT_PROXY_TIMEOUT_MS,
  DEFAULT_SERVER_HANDSHAKE_TIMEOUT_MS,
  serve,
  type ServerEvent,
  type ServerStats,
} from "./src/serve.ts";
import {
  hasReusePort,
  missingWorkerReadPermission,
  WorkerPool,
} from "./src/_worker_pool.ts";
import { type MetricsServer, serveMetrics } from "./src/_http.ts";
import { EventHub } from "./src/_event_hub.ts";
import { parseCidrs } from "./src/_cidr.ts";
import {
  CliError,
  EXIT,
  EXIT_CODES_HELP,
  explainNetworkError,
  joinHostPort,
  optionalString,
  parseChoice,
  parseCount,
  parseFlags,
  parseHost,
  parseHostPort,
  parsePort,
  parseSeconds,
  readPemFile,
  run,
} from "./src/_cli.ts";
import { LineWriter, type LogFormat, ServerLog } from "./src/_log.ts";
import { errorMessage } from "./src/_io.ts";
import { VERSION } from "./src/version.ts";

/** The server's command-line options, validated. */
export interface ServerCliOptions {
  /** TCP address to listen on. */
  hostname: string;
  /** TCP port. */
  port: number;
  /** A Unix socket path to listen on instead of TCP. */
  unix: string | undefined;
  /** The seed's one-read mode. */
  once: boolean;
  /** Unicode upper-casing instead of ASCII. */
  unicode: boolean;
  /** Connections served at once; 0 for no limit. */
  maxConns: number;
  /** Close connections idle this long, in milliseconds; 0 for never. */
  idleTimeout: number;
  /** Shutdown drain time, in milliseconds. */
  grace: number;
  /** A PEM certificate (chain) file: TLS on, with {@linkcode key}. */
  cert: string | undefined;
  /** The certificate's PEM private key file. */
  key: string | undefined;
  /** TLS: close a client whose handshake is not done by then, in ms; 0: never. */
  handshakeTimeout: number;
  /** Worker threads, each with its own listener on the address. */
  workers: number;
  /** Where to serve /metrics and /healthz, if anywhere. */
  metrics: { hostname: string; port: number } | undefined;
  /** Expect a PROXY protocol header on every connection. */
  proxyProtocol: boolean;
  /** --proxy-protocol: the peers (CIDR ranges) that may connect; [] for any. */
  proxyFrom: string[];
  /** --proxy-protocol: the header's deadline, in milliseconds. */
  proxyTimeout: number;
  /** At SIGINT/SIGTERM: keep serving this long (ms) with /healthz at 503. */
  drainDelay: number;
  /** Leave out the per-connection log lines. */
  quiet: boolean;
  /** Log each socket call of each connection. */
  trace: boolean;
  logFormat: LogFormat;
  help: boolean;
  version: boolean;
}

/** The most --workers. */
const MAX_WORKERS = 256;

/** How long the last log lines may take to be written at exit. */
const LOG_FLUSH_LIMIT_MS = 2000;

/** Every option's default, in one place. */
export const SERVER_DEFAULTS: Readonly<ServerCliOptions> = {
  hostname: SERVER_HOST,
  port: SERV_PORT,
  unix: undefined,
  once: false,
  unicode: false,
  maxConns: 0,
  idleTimeout: 0,
  grace: DEFAULT_GRACE_MS,
  cert: undefined,
  key: undefined,
  handshakeTimeout: DEFAULT_SERVER_HANDSHAKE_TIMEOUT_MS,
  workers: 1,
  metrics: undefined,
  proxyProtocol: false,
  proxyFrom: [],
  proxyTimeout: DEFAULT_PROXY_TIMEOUT_MS,
  drainDelay: 0,
  quiet: false,
  trace: false,
  logFormat: "text",
  help: false,
  version: false,
};

/**
 * Parses and validates the server's arguments.
 *
 * @param args The command-line arguments.
 * @returns The options, with defaults filled in.
 * @throws {CliError} For an unknown flag, a bad value or a conflict.
 */
export function parseServerArgs(args: string[]): ServerCliOptions {
  const flags = parseFlags(args, {
    string: [
      "host",
      "port",
      "unix",
      "max-conns",
      "idle-timeout",
      "grace",
      "log-format",
      "cert",
      "key",
      "handshake-timeout",
      "workers",
      "metrics",
      "proxy-from",
      "proxy-timeout",
      "drain-delay",
    ],
    boolean: [
      "once",
      "unicode",
      "quiet",
      "trace",
      "proxy-protocol",
      "help",
      "version",
    ],
    alias: { h: "help", V: "version", q: "quiet" },
  });
  if (flags._.length > 0) {
    throw new CliError(
      `Unexpected argument: "${flags._[0]}" (see --help)`,
      EXIT.USAGE,
    );
  }
  const d = SERVER_DEFAULTS;
  const options: ServerCliOptions = {
    hostname: parseHost(flags.host, d.hostname),
    port: parsePort(flags.port, d.port),
    unix: flags.unix === undefined ? d.unix : String(flags.unix),
    once: flags.once === true,
    unicode: flags.unicode === true,
    maxConns: parseCount("max-conns", flags["max-conns"], d.maxConns),
    idleTimeout: parseSeconds(
      "idle-timeout",
      flags["idle-timeout"],
      d.idleTimeout,
    ),
    grace: parseSeconds("grace", flags.grace, d.grace),
    cert: optionalString(flags.cert),
    key: optionalString(flags.key),
    handshakeTimeout: parseSeconds(
      "handshake-timeout",
      flags["handshake-timeout"],
      d.handshakeTimeout,
    ),
    workers: parseWorkers(flags.workers, d.workers),
    metrics: parseHostPort("metrics", flags.metrics, d.metrics),
    proxyProtocol: flags["proxy-protocol"] === true,
    proxyFrom: parseProxyFrom(flags["proxy-from"], d.proxyFrom),
    proxyTimeout: parseSeconds(
      "proxy-timeout",
      flags["proxy-timeout"],
      d.proxyTimeout,
    ),
    drainDelay: parseSeconds("drain-delay", flags["drain-delay"], d.drainDelay),
    quiet: flags.quiet === true,
    trace: flags.trace === true,
    logFormat: parseChoice("log-format", flags["log-format"], [
      "text",
      "json",
    ]),
    help: flags.help === true,
    version: flags.version === true,
  };
  if (
    options.unix !== undefined &&
    (flags.host !== undefined || flags.port !== undefined)
  ) {
    throw new CliError(
      "Conflicting flags: --unix cannot be combined with --host or --port",
      EXIT.USAGE,
    );
  }
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new CliError(
      `Missing flag: --${
        options.cert === undefined ? "cert" : "key"
      } goes with --${options.cert === undefined ? "key" : "cert"}`,
      EXIT.USAGE,
    );
  }
  if (options.cert === undefined && flags["handshake-timeout"] !== undefined) {
    throw new CliError(
      "Conflicting flags: --handshake-timeout goes with --cert and --key",
      EXIT.USAGE,
    );
  }
  if (options.cert !== undefined && options.unix !== undefined) {
    throw new CliError(
      "Conflicting flags: --cert and --key (TLS) cannot be combined with --unix",
      EXIT.USAGE,
    );
  }
  if (options.trace && options.quiet) {
    throw new CliError(
      "Conflicting flags: --trace logs every socket call and cannot be combined with --quiet",
      EXIT.USAGE,
    );
  }
  if (flags["proxy-from"] !== undefined && !options.proxyProtocol) {
    throw new CliError(
      "Conflicting flags: --proxy-from goes with --proxy-protocol",
      EXIT.USAGE,
    );
  }
  if (flags["proxy-timeout"] !== undefined && !options.proxyProtocol) {
    throw new CliError(
      "Conflicting flags: --proxy-timeout goes with --proxy-protocol",
      EXIT.USAGE,
    );
  }
  if (flags["proxy-from"] !== undefined && options.unix !== undefined) {
    throw new CliError(
      "Conflicting flags: --proxy-from cannot be combined with --unix (a Unix socket peer has no address)",
      EXIT.USAGE,
    );
  }
  if (options.proxyProtocol && options.proxyTimeout === 0) {
    throw new CliError(
      'Invalid --proxy-timeout: "0": the header needs some time to arrive',
      EXIT.USAGE,
    );
  }
  if (options.unix !== undefined && options.workers > 1) {
    throw new CliError(
      "Conflicting flags: --workers cannot be combined with --unix (a Unix socket has one listener)",
      EXIT.USAGE,
    );
  }
  if (
    options.metrics !== undefined && options.unix === undefined &&
    options.metrics.port === options.port && options.port !== 0 &&
    (options.metrics.hostname === options.hostname ||
      isWildcard(options.metrics.hostname) || isWildcard(options.hostname))
  ) {
    throw new CliError(
      `Conflicting flags: --metrics ${
        joinHostPort(options.metrics.hostname, options.metrics.port)
      } is the server's own address`,
      EXIT.USAGE,
    );
  }
  if (options.once && options.unicode) {
    throw new CliError(
      "Conflicting flags: --once is the seed's ASCII behaviour and cannot be combined with --unicode",
      EXIT.USAGE,
    );
  }
  return options;
}

/**
 * Validates `--proxy-from CIDR[,CIDR...]`.
 *
 * @param value The flag's text, or undefined when not given.
 * @param fallback The ranges when the flag is absent.
 * @returns The ranges as written.
 * @throws {CliError} For a range that is not CIDR.
 */
function parseProxyFrom(value: unknown, fallback: string[]): string[] {
  if (value === undefined) return fallback;
  const text = String(value);
  try {
    parseCidrs(text);
  } catch (err: unknown) {
    if (!(err instanceof RangeError)) throw err;
    throw new CliError(`Invalid --proxy-from: ${err.message}`, EXIT.USAGE);
  }
  return text.split(",").map((item) => item.trim());
}

/** The addresses that mean "every interface". */
function isWildcard(hostname: string): boolean {
  return hostname === "0.0.0.0" || hostname === "::";
}

/**
 * Validates `--workers`: a count from 1 to 256, or `auto` (the CPUs).
 *
 * @param value The flag's text, or undefined when not given.
 * @param fallback The count when the flag is absent.
 * @returns The count.
 * @throws {CliError} For anything else.
 */
function parseWorkers(value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  const text = String(value);
  if (text === "auto") return navigator.hardwareConcurrency;
  const count = /^\d{1,3}$/.test(text) ? Number(text) : NaN;
  if (!(count >= 1 && count <= MAX_WORKERS)) {
    throw new CliError(
      `Invalid --workers: "${text}" is not a whole number from 1 to ${MAX_WORKERS}, or auto`,
      EXIT.USAGE,
    );
  }
  return count;
}

function printUsage(): void {
  const d = SERVER_DEFAULTS;
  console.log(`upcase server ${VERSION}
Every byte a client sends comes back with a-z upper-cased, until it half-closes.

Usage:
  deno run --allow-net=HOST:PORT server.ts [options]
  deno run --allow-net=HOST:PORT --allow-read=CERT,KEY server.ts --cert CERT --key KEY [options]
  deno run --allow-net=unix:PATH --allow-read=PATH --allow-write=PATH server.ts --unix PATH [options]

Options:
  --host HOST            address or host name to listen on (default ${d.hostname}:
                         all IPv4 interfaces; :: for IPv6, 127.0.0.1 for local only)
  --port PORT            TCP port, 0 for any free one (default ${d.port})
  --unix PATH            listen on a Unix socket at PATH instead of TCP
  --once                 the seed's server.c: one read of at most ${MAXLINE} bytes, reply, close
  --unicode              upper-case UTF-8 text as Unicode ("straße" -> "STRASSE");
                         bytes that are not UTF-8 pass through unchanged
  --max-conns N          serve at most N clients at once; more are accepted and
                         closed at once, and logged (default 0: no limit)
  --idle-timeout SECONDS close a client when nothing moved for that long
                         (default 0: never)
  --grace SECONDS        on SIGINT/SIGTERM, time open connections get to finish
                         (default ${d.grace / 1000})
  --cert FILE            serve TLS with the certificate (chain) in FILE (PEM)
  --key FILE             and its private key in FILE (PEM); both need
                         --allow-read for the files
  --handshake-timeout SECONDS
                         TLS: close a client whose handshake is not done by
                         then, even without --idle-timeout (default ${
    d.handshakeTimeout / 1000
  }; 0: never)
  --workers N            serve from N Worker threads (1 to ${MAX_WORKERS}, or auto: one
                         per CPU), each with its own SO_REUSEPORT listener
                         (Linux; needs --unstable-net, which deno.json sets,
                         and --allow-read for the src folder) (default 1)
  --metrics HOST:PORT    serve GET /metrics (Prometheus) and GET /healthz
                         (200, or 503 once a shutdown began) over HTTP there;
                         needs its own --allow-net entry
  --proxy-protocol       every connection starts with a PROXY protocol header
                         (v1 or v2, from HAProxy, nginx, a cloud balancer):
                         the log shows the client it names
  --proxy-from CIDR[,CIDR...]
                         --proxy-protocol: only these peers may connect (the
                         balancers); others are closed unanswered
  --proxy-timeout SECONDS
                         --proxy-protocol: close a connection whose header
                         is not complete by then (default ${
    d.proxyTimeout / 1000
  })
  --drain-delay SECONDS  at SIGINT/SIGTERM, answer /healthz with 503 and go on
                         serving this long before the --grace period
                         (default 0)
  -q, --quiet            no per-connection log lines
  --trace                log each socket call of each connection (accept,
                         read, write, EOF, RST, close) and what TCP did
  --log-format FORMAT    text or json, one line per event (default ${d.logFormat})
  -h, --help             show this help
  -V, --version          show the version

The --allow-net permission must name the same HOST:PORT, e.g.
  deno run --allow-net=0.0.0.0:${SERV_PORT} server.ts

SIGINT (Ctrl-C) or SIGTERM: after --drain-delay (serving, /healthz 503), stop
accepting, let open connections finish for up to --grace seconds, close the
rest, print a summary, exit 0. A second signal closes them at once.

${EXIT_CODES_HELP}`);
}

/** Starts the server, replacing a stale Unix socket nobody answers on. */
/** --proxy-protocol, --proxy-from, --proxy-timeout, for serve(). */
function proxyOptions(options: ServerCliOptions) {
  return options.proxyProtocol
    ? { from: options.proxyFrom, timeout: options.proxyTimeout }
    : undefined;
}

/** --cert and --key: the files' contents, for serve(). */
async function readTls(options: ServerCliOptions) {
  return options.cert === undefined || options.key === undefined ? undefined : {
    cert: await readPemFile("cert", options.cert),
    key: await readPemFile("key", options.key),
    handshakeTimeout: options.handshakeTimeout,
  };
}

async function start(
  options: ServerCliOptions,
  log: ServerLog,
  hub: EventHub | undefined,
) {
  const tls = await readTls(options);
  const common = {
    once: options.once,
    unicode: options.unicode,
    maxConns: options.maxConns,
    idleTimeout: options.idleTimeout,
    proxyProtocol: proxyOptions(options),
    // A page watching (--metrics) traces new connections for its diagrams.
    trace: () => options.trace || hub?.watching === true,
    onEvent: (event: ServerEvent) => logEvent(options, log, hub, event),
  };
  const { unix } = options;
  if (unix === undefined) {
    try {
      return serve({
        ...common,
        ...tls,
        hostname: options.hostname,
        port: options.port,
      });
    } catch (err: unknown) {
      throw explainTlsSetupError(err, options) ??
        explainNetworkError(err, { action: "listen", ...options });
    }
  }
  try {
    return serve({ ...common, path: unix });
  } catch (err: unknown) {
    if (!(err instanceof Deno.errors.AddrInUse) || !await isStale(unix)) {
      throw explainNetworkError(err, { action: "listen", path: unix });
    }
  }
  try {
    await Deno.remove(unix);
    return serve({ ...common, path: unix });
  } catch (err: unknown) {
    throw explainNetworkError(err, { action: "listen", path: unix });
  }
}

/** A certificate and key that TLS cannot use: one line, exit 1. */
function explainTlsSetupError(
  err: unknown,
  options: ServerCliOptions,
): CliError | undefined {
  if (options.cert === undefined || !(err instanceof Error)) return undefined;
  if (
    err instanceof Deno.errors.NotCapable && /127\.0\.0\.1:0/.test(err.message)
  ) {
    const address = joinHostPort(options.hostname, options.port);
    return new CliError(
      options.proxyProtocol
        ? `Permission denied: TLS with --proxy-protocol relays each client through a listener on 127.0.0.1 (the header comes before the handshake), which needs --allow-net=${address},127.0.0.1`
        : `Permission denied: TLS without --allow-ffi relays each client through a listener on 127.0.0.1, which needs --allow-net=${address},127.0.0.1 (or grant --allow-ffi: stalled handshakes are then freed with shutdown(2), and TLS runs about twice as fast)`,
      EXIT.PERMISSION,
    );
  }
  if (/KeyMismatch|keys may not be consistent/.test(err.message)) {
    return new CliError(
      `Key mismatch: the key in ${options.key} does not belong to the certificate in ${options.cert}`,
      EXIT.USAGE,
    );
  }
  if (
    /No certificates found|No keys found|certificate|private key/i.test(
      err.message,
    )
  ) {
    return new CliError(
      `Unusable TLS files: ${options.cert}, ${options.key}: ${
        errorMessage(err)
      }`,
      EXIT.USAGE,
    );
  }
  return undefined;
}

/** A socket file that refuses connections: left behind by a dead server. */
async function isStale(path: string): Promise<boolean> {
  try {
    if (!(await Deno.lstat(path)).isSocket) return false;
    (await Deno.connect({ transport: "unix", path })).close();
    return false;
  } catch (err: unknown) {
    if (err instanceof Deno.errors.ConnectionRefused) return true;
    return false;
  }
}

/** What main() runs: one server, or a pool of Workers. */
interface Running {
  readonly addr: Deno.Addr;
  readonly finished: Promise<void>;
  readonly stats: ServerStats;
  shutdown(options: { grace: number }): Promise<void>;
}

/** --workers N: checks what the Workers need, then starts them. */
async function startWorkers(
  options: ServerCliOptions,
  log: ServerLog,
  hub: EventHub | undefined,
): Promise<Running> {
  if (Deno.build.os !== "linux") {
    throw new CliError(
      `Unsupported: --workers needs Linux, where SO_REUSEPORT spreads connections (this is ${Deno.build.os})`,
      EXIT.USAGE,
    );
  }
  if (!hasReusePort()) {
    throw new CliError(
      "Unstable API: --workers needs --unstable-net (deno.json turns it on when run from the project folder)",
      EXIT.USAGE,
    );
  }
  const folder = missingWorkerReadPermission();
  if (folder !== undefined) {
    throw new CliError(
      `Permission denied: --workers starts Workers that load the library's modules, which needs --allow-read=${folder}`,
      EXIT.PERMISSION,
    );
  }
  const tls = await readTls(options);
  try {
    const pool = await WorkerPool.start({
      workers: options.workers,
      serve: {
        ...tls,
        hostname: options.hostname,
        port: options.port,
        once: options.once,
        unicode: options.unicode,
        maxConns: options.maxConns,
        idleTimeout: options.idleTimeout,
        proxyProtocol: proxyOptions(options),
        trace: options.trace,
      },
      onEvent: (event, worker) => logEvent(options, log, hub, event, worker),
      onWorkerDied: (worker, error, lost) =>
        log.note(
          "worker-died",
          `Worker ${worker} died (${error}): its ${lost} open ${
            lost === 1 ? "connection was" : "connections were"
          } lost; starting a new one`,
          { worker, error, lost },
          true,
        ),
    });
    hub?.onWatchingChange((watching) => pool.setTrace(watching));
    return pool;
  } catch (err: unknown) {
    throw explainTlsSetupError(err, options) ??
      explainNetworkError(err, { action: "listen", ...options });
  }
}

/**
 * Every event to the live page's hub (with --metrics), and to the log but
 * for the trace events of connections traced only for a page.
 */
function logEvent(
  options: ServerCliOptions,
  log: ServerLog,
  hub: EventHub | undefined,
  event: ServerEvent,
  worker?: number,
): void {
  hub?.add(event, worker);
  if (event.type !== "trace" || options.trace) log.event(event, worker);
}

/** --metrics: /metrics, /healthz and the live page over HTTP. */
function startMetrics(
  address: { hostname: string; port: number },
  running: Running,
  healthy: () => boolean,
  log: ServerLog,
  hub: EventHub,
): MetricsServer {
  const startTimeSeconds = performance.timeOrigin / 1000;
  try {
    return serveMetrics({
      ...address,
      snapshot: () => {
        const stats = running.stats;
        return {
          accepted: stats.accepted,
          active: stats.active,
          refused: stats.refused,
          closed: stats.closed,
          bytesIn: stats.bytesIn,
          bytesOut: stats.bytesOut,
          duration: stats.duration,
          version: VERSION,
          startTimeSeconds,
        };
      },
      healthy,
      hub,
      onListen: (addr) => {
        const where = joinHostPort(addr.hostname, addr.port);
        log.note(
          "metrics",
          `Serving metrics on http://${where}/metrics, health on http://${where}/healthz and the live page on http://${where}/`,
          { addr: where },
        );
      },
    });
  } catch (err: unknown) {
    throw explainNetworkError(err, { action: "listen", ...address });
  }
}

async function main(): Promise<number> {
  const options = parseServerArgs(Deno.args);
  if (options.help) {
    printUsage();
    return EXIT.OK;
  }
  if (options.version) {
    console.log(`upcase server ${VERSION}`);
    return EXIT.OK;
  }
  const log = new ServerLog(new LineWriter(Deno.stdout), {
    format: options.logFormat,
    quiet: options.quiet,
    color: Deno.stdout.isTerminal(),
  });
  const started = Date.now();
  const hub = options.metrics === undefined
    ? undefined
    : new EventHub({ previews: options.trace });
  const server: Running = options.workers > 1
    ? await startWorkers(options, log, hub)
    : await start(options, log, hub);
  let signals = 0;
  const metrics = options.metrics === undefined || hub === undefined
    ? undefined
    : startMetrics(options.metrics, server, () => signals === 0, log, hub);
  let drain: ReturnType<typeof setTimeout> | undefined;
  const phases: { drainStarted?: number; closeStarted?: number } = {};
  const close = (grace: number) => {
    clearTimeout(drain);
    phases.closeStarted ??= Date.now();
    server.shutdown({ grace });
  };
  const stop = () => {
    signals++;
    if (signals > 1) return close(0);
    if (options.drainDelay === 0) return close(options.grace);
    // /healthz says 503 from now; the balancer takes us out meanwhile.
    phases.drainStarted = Date.now();
    log.note(
      "drain",
      `Draining: /healthz answers 503; still serving for ${
        options.drainDelay / 1000
      } s (--drain-delay), then closing the listener`,
      { delayMs: options.drainDelay },
    );
    drain = setTimeout(() => close(options.grace), options.drainDelay);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  await metrics?.shutdown();
  log.summary(server.addr, server.stats, Date.now() - started, phases);
  // Exit even if a stalled log reader never takes the last lines.
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    log.flush(),
    new Promise((resolve) => timer = setTimeout(resolve, LOG_FLUSH_LIMIT_MS)),
  ]);
  clearTimeout(timer);
  return EXIT.OK;
}

if (import.meta.main) run(main);
