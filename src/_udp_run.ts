// Copyright the upcase authors. MIT license.
// Running the UDP server from its command line (`--udp`): the permission it
// needs, its log lines, /metrics, the signals and the summary. Internal.

import { format as formatBytes } from "@std/fmt/bytes";
import { format as formatDuration } from "@std/fmt/duration";
import { MAXLINE } from "./constants.ts";
import {
  CliError,
  EXIT,
  explainNetworkError,
  formatAddr,
  joinHostPort,
  STOP_SIGNALS,
} from "./_cli.ts";
import { type MetricsServer, serveMetrics } from "./_http.ts";
import { eventRecord, LineWriter, ServerLog } from "./_log.ts";
import { EventHub } from "./_event_hub.ts";
import { type ServerCliOptions } from "./_server_args.ts";
import { serveUdp, type UdpEvent, type UdpServer } from "./serve_udp.ts";
import {
  DROP_REASONS,
  localBroadcasts,
  maySendTo,
  REFLECTING_PORTS,
} from "./_udp_guard.ts";
import { VERSION } from "./version.ts";
import { CLOSE_REASONS, DurationHistogram } from "./metrics.ts";

/**
 * Deno checks the destination of every datagram sent, so a UDP server needs
 * `--allow-net` for its clients' hosts with any port, not only its own
 * port. Checked before binding: one line, exit 2.
 *
 * @param hostname The address to bind.
 * @returns The error, or undefined when the grant is enough.
 */
export function udpPermissionError(hostname: string): CliError | undefined {
  const local = /^(127\.|::1$|localhost$)/.test(hostname);
  const granted = local
    ? maySendTo(hostname)
    : Deno.permissions.querySync({ name: "net" }).state === "granted";
  if (granted) return undefined;
  return new CliError(
    local
      ? `Permission denied: a UDP server sends each reply to its client's address and port, and Deno checks every one: grant --allow-net=${hostname} (any port: local clients), or --allow-net to answer anyone`
      : `Permission denied: a UDP server on ${hostname} sends each reply to its client's address and port, and Deno checks every one: grant --allow-net (any host), or serve local clients with --host 127.0.0.1 and --allow-net=127.0.0.1`,
    EXIT.PERMISSION,
  );
}

/**
 * One text line for a UDP event, in the seed's words where it has them;
 * undefined for the events that are only counted.
 *
 * @param event What happened.
 * @param rate `--udp-rate`, for the rate drop's line.
 * @returns The line, without a newline.
 */
export function formatUdpEvent(
  event: UdpEvent,
  rate: number,
): string | undefined {
  switch (event.type) {
    case "udp-source":
      return event.logged
        ? `received from ${event.remote.hostname} at PORT ${event.remote.port} (UDP: the first datagram from ${event.remote.hostname}; the rest are counted, or shown with --trace)`
        : undefined;
    case "udp-drop": {
      if (!event.first) return undefined;
      const from = `${event.remote.hostname} at PORT ${event.remote.port}`;
      const later = "later ones are counted, not logged";
      switch (event.reason) {
        case "reflecting-port":
          return `dropped a datagram from ${from}: port ${event.remote.port} is ${
            REFLECTING_PORTS.get(event.remote.port) ?? "upcase's"
          }${
            REFLECTING_PORTS.has(event.remote.port) ? "'s" : ""
          }, a service that answers, so a reply could start a loop (${later})`;
        case "broadcast-source":
          return `dropped a datagram from ${from}: a broadcast or multicast address sends no datagrams, so its source was forged (${later})`;
        case "rate":
          return `dropped a datagram from ${from}: past --udp-rate ${rate} replies/s for that address (${later})`;
        case "permission":
          return `could not answer ${from}: Deno's --allow-net does not include ${event.remote.hostname} (a UDP server needs --allow-net=${event.remote.hostname}, any port, or --allow-net) (${later})`;
        case "send-error":
          return `could not answer ${from}: ${event.error} (${later})`;
      }
      return undefined;
    }
    case "udp-trace": {
      const peer = joinHostPort(event.remote.hostname, event.remote.port);
      if (event.call === "sendto") {
        return `[udp] sendto(): ${event.bytes} bytes to ${peer}, one datagram, upper-cased`;
      }
      const cut = event.kept !== undefined && event.kept < event.bytes
        ? `; --once keeps ${event.kept}: read(fd, buf, ${MAXLINE}) on a datagram socket discards the rest of the datagram`
        : "";
      return `[udp] recvfrom(): ${event.bytes} bytes from ${peer}, one datagram, its edges kept${cut}`;
    }
    case "udp-error":
      return `recvfrom() failed: ${event.error}; receiving again`;
    case "udp-listen":
      // The runner says it, with the rate.
      return undefined;
  }
}

/** The summary line: datagrams, bytes, sources, drops by reason. */
function summaryText(server: UdpServer, uptimeMs: number): string {
  const s = server.stats;
  const dropped = DROP_REASONS.filter((r) => s.dropped[r] > 0)
    .map((r) => `${s.dropped[r]} ${r}`);
  const drops = dropped.length === 0 ? "" : `, dropped ${dropped.join(", ")}`;
  return `Answered ${s.sent} of ${s.received} datagrams on ${
    formatAddr(server.addr)
  } (UDP) from ${s.sources} ${s.sources === 1 ? "source" : "sources"}: ${
    formatBytes(s.bytesIn)
  } in, ${formatBytes(s.bytesOut)} out${drops}, up ${
    formatDuration(uptimeMs, { ignoreZero: true }) || "0ms"
  }`;
}

/** --metrics for the UDP server: its counters, the TCP ones at 0. */
function startMetrics(
  address: { hostname: string; port: number },
  server: UdpServer,
  healthy: () => boolean,
  log: ServerLog,
  hub: EventHub | undefined,
): MetricsServer {
  const startTimeSeconds = performance.timeOrigin / 1000;
  const zeroClosed = Object.fromEntries(CLOSE_REASONS.map((r) => [r, 0]));
  const duration = new DurationHistogram().snapshot();
  try {
    return serveMetrics({
      ...address,
      snapshot: () => {
        const s = server.stats;
        return {
          accepted: 0,
          active: 0,
          refused: 0,
          closed: zeroClosed as Record<typeof CLOSE_REASONS[number], number>,
          bytesIn: 0,
          bytesOut: 0,
          duration,
          version: VERSION,
          startTimeSeconds,
          udp: s,
        };
      },
      healthy,
      hub,
      ...log.metricsNotes(),
    });
  } catch (err: unknown) {
    throw explainNetworkError(err, { action: "listen", ...address });
  }
}

/**
 * Runs the UDP server the options describe until SIGINT/SIGTERM/SIGHUP.
 *
 * @param options Validated options, with `udp` set.
 * @returns The exit code.
 */
export async function runUdpServer(options: ServerCliOptions): Promise<number> {
  const log = new ServerLog(new LineWriter(Deno.stdout), {
    format: options.logFormat,
    quiet: options.quiet,
    color: Deno.stdout.isTerminal(),
  });
  const json = options.logFormat === "json";
  const hub = options.metrics === undefined ? undefined : new EventHub();
  const onEvent = (event: UdpEvent) => {
    hub?.addDatagram(event);
    // Traced for a page only: not for the log.
    if (event.type === "udp-trace" && !options.trace) return;
    if (options.quiet && event.type === "udp-source") return;
    const line = formatUdpEvent(event, options.udpRate);
    if (line === undefined) return;
    const failed = event.type === "udp-error" ||
      (event.type === "udp-drop" &&
        (event.reason === "permission" || event.reason === "send-error"));
    if (json) log.note(event.type, line, eventRecord(event), failed);
    else log.note(event.type, line, {}, failed);
  };
  const started = Date.now();
  let server: UdpServer;
  try {
    server = serveUdp({
      hostname: options.hostname,
      port: options.port,
      once: options.once,
      rate: options.udpRate,
      broadcasts: localBroadcasts(),
      // A page watching (--metrics) traces datagrams for its diagrams.
      trace: () => options.trace || hub?.watching === true,
      onEvent,
    });
  } catch (err: unknown) {
    throw explainNetworkError(err, {
      action: "listen",
      hostname: options.hostname,
      port: options.port,
    });
  }
  // Checked on the address bound ("localhost" is 127.0.0.1 there).
  const denied = udpPermissionError(server.addr.hostname);
  if (denied !== undefined) {
    await server.shutdown();
    throw denied;
  }
  const where = formatAddr(server.addr);
  const limit = options.udpRate === 0
    ? "no rate limit"
    : `at most ${options.udpRate} replies/s per source`;
  log.note(
    "listen",
    `Answering datagrams on ${where} (UDP, ${limit}${
      options.once ? `, --once: the first ${MAXLINE} bytes of each` : ""
    }) ...`,
    { addr: where, transport: "udp", rate: options.udpRate },
  );
  let signals = 0;
  const metrics = options.metrics === undefined
    ? undefined
    : startMetrics(options.metrics, server, () => signals === 0, log, hub);
  let drain: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    signals++;
    if (signals > 1 || options.drainDelay === 0) {
      clearTimeout(drain);
      server.shutdown();
      return;
    }
    log.note(
      "drain",
      `Draining: /healthz answers 503; still answering for ${
        options.drainDelay / 1000
      } s (--drain-delay)`,
      { delayMs: options.drainDelay },
    );
    drain = setTimeout(() => server.shutdown(), options.drainDelay);
  };
  for (const signal of STOP_SIGNALS) Deno.addSignalListener(signal, stop);
  await server.finished;
  for (const signal of STOP_SIGNALS) Deno.removeSignalListener(signal, stop);
  await metrics?.shutdown();
  const uptimeMs = Date.now() - started;
  const s = server.stats;
  log.note("summary", summaryText(server, uptimeMs), {
    address: where,
    transport: "udp",
    received: s.received,
    sent: s.sent,
    bytesIn: s.bytesIn,
    bytesOut: s.bytesOut,
    sources: s.sources,
    dropped: s.dropped,
    uptimeMs,
  });
  await log.flushWithin();
  return EXIT.OK;
}
