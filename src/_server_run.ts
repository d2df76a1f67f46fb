// Copyright the upcase authors. MIT license.
// Running the server from its command line: one server or a pool of
// Workers, the HTTP side channel, the signals, the drain and the summary.
// Internal.

import { randomSeed } from "./_fault_plan.ts";
import { formatFault, parseFault } from "./_fault_spec.ts";
import { canShutdownSockets } from "./_socket_shutdown.ts";
import { serve, type ServerEvent, type ServerStats } from "./serve.ts";
import {
  hasReusePort,
  missingWorkerReadPermission,
  WorkerPool,
} from "./_worker_pool.ts";
import {
  FaultChangeError,
  type FaultControl,
  type MetricsServer,
  serveMetrics,
} from "./_http.ts";
import { EventHub } from "./_event_hub.ts";
import {
  CliError,
  EXIT,
  explainNetworkError,
  joinHostPort,
  readPemFile,
  STOP_SIGNALS,
} from "./_cli.ts";
import { LineWriter, ServerLog } from "./_log.ts";
import { errorMessage } from "./_io.ts";
import { VERSION } from "./version.ts";
import { type ServerCliOptions } from "./_server_args.ts";
import { runUdpServer } from "./_udp_run.ts";

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
    ...faultOptions(options),
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
        backlog: options.backlog,
      });
    } catch (err: unknown) {
      throw explainTlsSetupError(err, options) ??
        await explainListenError(err, options);
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

/**
 * --fault and --fault-seed for serve(): every Worker gets the same seed (one
 * is picked here when none was given).
 *
 * @throws {CliError} For `reset` without `--allow-ffi`, which it needs.
 */
function faultOptions(
  options: ServerCliOptions,
): { faults?: string[]; faultSeed?: number } {
  if (options.faults.length === 0) {
    // --fault-api: one seed for every Worker, whatever comes later.
    return options.faultApi
      ? { faultSeed: options.faultSeed ?? randomSeed() }
      : {};
  }
  const reset = options.faults.find((spec) => /^reset(?::|$)/.test(spec));
  if (reset !== undefined && !canShutdownSockets()) {
    throw new CliError(
      `Invalid --fault "${reset}": a reset sends a real RST (and no FIN) through FFI, which needs --allow-ffi (on Linux)`,
      EXIT.USAGE,
    );
  }
  return {
    // The short form, as the library prints it, from every Worker too.
    faults: options.faults.map((spec) => formatFault(parseFault(spec))),
    faultSeed: options.faultSeed ?? randomSeed(),
  };
}

/**
 * `/faults` on the metrics address: read always; changed only with
 * --fault-api, each change logged with the peer that asked.
 */
function faultControl(
  running: Running,
  options: ServerCliOptions,
  log: ServerLog,
  hub: EventHub,
): FaultControl {
  return {
    current: () => ({ faults: running.faults, seed: running.faultSeed }),
    replace: !options.faultApi ? undefined : async (specs, by) => {
      const reset = specs.findIndex((spec) => /^reset(?::|$)/.test(spec));
      if (reset >= 0 && !canShutdownSockets()) {
        throw new FaultChangeError(
          422,
          `entry ${reset}: "${
            specs[reset]
          }": a reset sends a real RST through FFI, and this server runs without --allow-ffi`,
        );
      }
      await running.setFaults(specs);
      logEvent(options, log, hub, {
        type: "faults",
        faults: specs,
        seed: running.faultSeed,
        by,
      });
    },
  };
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
  readonly faults: readonly string[];
  readonly faultSeed: number | undefined;
  setFaults(specs: string[]): void | Promise<void>;
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
        ...faultOptions(options),
        hostname: options.hostname,
        port: options.port,
        backlog: options.backlog,
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
    if (err instanceof Deno.errors.NotCapable && options.port === 0) {
      // --allow-net=HOST:0 lets the main thread pick a port, not the
      // Workers listen on the one it picked.
      throw new CliError(
        `Permission denied: --port 0 with --workers listens on the port the main thread picks, which needs --allow-net=${
          joinHostPort(options.hostname, 0).replace(/:0$/, "")
        } (any port of the host)`,
        EXIT.PERMISSION,
      );
    }
    throw explainTlsSetupError(err, options) ??
      await explainListenError(err, options);
  }
}

/**
 * A TCP listen that failed, in one line. For "address in use", a connect to
 * the port tells whether a program listens there: when none does, the port
 * is held by connections in TIME-WAIT that a program without SO_REUSEADDR
 * left (the seed's server.c), which /proc/net/tcp would show but this
 * process may not read.
 */
async function explainListenError(
  err: unknown,
  address: { hostname: string; port: number },
): Promise<unknown> {
  if (err instanceof Deno.errors.AddrInUse && address.port !== 0) {
    let listening = true;
    try {
      const probe = await Deno.connect({
        hostname: address.hostname,
        port: address.port,
      });
      probe.close();
    } catch (probeErr: unknown) {
      listening = !(probeErr instanceof Deno.errors.ConnectionRefused);
    }
    if (!listening) {
      return new CliError(
        `Address in use: no program listens on ${
          joinHostPort(address.hostname, address.port)
        } (a connect is refused), so connections in TIME-WAIT hold the port, left by a program that did not set SO_REUSEADDR; they expire within 60 s (or try --port)`,
        EXIT.NETWORK,
      );
    }
  }
  return explainNetworkError(err, { action: "listen", ...address });
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
  options: ServerCliOptions,
): MetricsServer {
  const tls = options.cert !== undefined;
  const faultsPossible = options.faults.length > 0 || options.faultApi;
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
          ...(tls
            ? {
              tlsRelay: { strays: stats.relayStrays, moves: stats.relayMoves },
            }
            : {}),
          ...(faultsPossible
            ? {
              faults: {
                injected: stats.faultsInjected,
                active: running.faults.length,
              },
            }
            : {}),
        };
      },
      healthy,
      hub,
      faults: faultControl(running, options, log, hub),
      ...log.metricsNotes(),
    });
  } catch (err: unknown) {
    const own = running.addr as Partial<Deno.NetAddr>;
    if (err instanceof Deno.errors.AddrInUse && own.port === address.port) {
      // Another name of the service's own address ("localhost" for
      // 127.0.0.1): it is in use, but by this server.
      throw new CliError(
        `Conflicting flags: --metrics ${
          joinHostPort(address.hostname, address.port)
        } is the port the server itself listens on (${
          joinHostPort(own.hostname ?? "", address.port)
        }): choose another port for --metrics`,
        EXIT.USAGE,
      );
    }
    throw explainNetworkError(err, { action: "listen", ...address });
  }
}

/**
 * Runs the server the options describe until SIGINT/SIGTERM: the log, the
 * drain, the grace period, the summary.
 *
 * @param options Validated options.
 * @returns The exit code.
 */
export async function runServer(options: ServerCliOptions): Promise<number> {
  if (options.udp) return await runUdpServer(options);
  const log = new ServerLog(new LineWriter(Deno.stdout), {
    format: options.logFormat,
    quiet: options.quiet,
    color: Deno.stdout.isTerminal(),
    proxyProtocol: options.proxyProtocol,
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
    : startMetrics(
      options.metrics,
      server,
      () => signals === 0,
      log,
      hub,
      options,
    );
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
  // SIGHUP (the terminal closed) too: there is no configuration to reload,
  // and ending at once would skip the drain, the summary and the socket
  // file's removal.
  for (const signal of STOP_SIGNALS) Deno.addSignalListener(signal, stop);
  await server.finished;
  for (const signal of STOP_SIGNALS) Deno.removeSignalListener(signal, stop);
  await metrics?.shutdown();
  log.summary(server.addr, server.stats, Date.now() - started, phases);
  // Exit even if a stalled log reader never takes the last lines.
  await log.flushWithin();
  return EXIT.OK;
}
