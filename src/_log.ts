// Copyright the upcase authors. MIT license.
// The server's log: one line per event, as text (the seed's words) or JSON,
// written in batches so logging costs little on the hot path. Internal.

import { format as formatBytes } from "@std/fmt/bytes";
import { format as formatDuration } from "@std/fmt/duration";
import { bold, red, yellow } from "@std/fmt/colors";
import type { ServerEvent, ServerStats } from "./serve.ts";
import type { UdpEvent } from "./serve_udp.ts";
import { formatAddr } from "./_cli.ts";
import { writeAll, type Writer } from "./_io.ts";
import { formatTrace } from "./_trace.ts";
import { escapeLine } from "./_escape.ts";

/** How long the last log lines may take to be written at exit. */
export const LOG_FLUSH_LIMIT_MS = 2000;

/** Lines kept waiting for a slow log reader before new ones are dropped. */
export const MAX_QUEUED_LINES = 10_000;

/** How the log is written: `text` for people, `json` for programs. */
export type LogFormat = "text" | "json";

/** Options for {@linkcode ServerLog}. */
export interface ServerLogOptions {
  format: LogFormat;
  /** Leave out the per-connection lines. */
  quiet: boolean;
  /** Colour the text lines (only on a terminal, without NO_COLOR). */
  color: boolean;
  /**
   * The server reads PROXY headers: resets before the header are a
   * balancer's checks, not lines of text.
   */
  proxyProtocol?: boolean;
}

/**
 * Collects lines and writes them to a file (stdout) in one write per event
 * loop turn instead of one per line. Writes are asynchronous, so a log reader
 * that stalls (a full pipe, Ctrl-S in a terminal) never stalls the server:
 * past {@linkcode MAX_QUEUED_LINES} waiting lines, new ones are counted and
 * dropped, and a line says how many. Once the reader of a pipe has gone, the
 * lines are dropped silently.
 */
export class LineWriter {
  #file: Writer;
  #lines: string[] = [];
  #dropped = 0;
  #writing: Promise<void> | undefined;
  #encoder = new TextEncoder();
  #closed = false;

  /** @param file Where lines go, e.g. `Deno.stdout`. */
  constructor(file: Writer) {
    this.#file = file;
  }

  /**
   * Queues one line (without its newline).
   *
   * @param line The text.
   */
  write(line: string): void {
    if (this.#closed) return;
    if (this.#lines.length >= MAX_QUEUED_LINES) {
      this.#dropped++;
      return;
    }
    this.#lines.push(line);
    this.#writing ??= this.#drain();
  }

  /**
   * Resolves once every queued line is written.
   *
   * @returns A promise that resolves when the queue is empty.
   */
  async flush(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  async #drain(): Promise<void> {
    try {
      // Let the rest of this event loop turn add its lines first.
      await new Promise((resolve) => setTimeout(resolve, 0));
      while (this.#lines.length > 0) {
        if (this.#dropped > 0) {
          this.#lines.push(
            `(${this.#dropped} log lines dropped: stdout was not read fast enough)`,
          );
          this.#dropped = 0;
        }
        const bytes = this.#encoder.encode(this.#lines.join("\n") + "\n");
        this.#lines = [];
        await writeAll(this.#file, bytes);
      }
    } catch (err: unknown) {
      // Nobody reads the log any more (`server.ts | head`), or it cannot be
      // written (a full disk): keep serving without it rather than die,
      // and say so once where it can still be read.
      if (!(err instanceof Deno.errors.BrokenPipe)) {
        console.error(
          `warning: the log cannot be written (${
            err instanceof Error ? err.message : String(err)
          }); serving on without it`,
        );
      }
      this.#closed = true;
      this.#lines = [];
    } finally {
      this.#writing = undefined;
    }
  }
}

/** The server CLI's log: events and the summary. */
export class ServerLog {
  #out: LineWriter;
  #options: ServerLogOptions;

  /**
   * @param out Where the lines go.
   * @param options Format, verbosity and colour.
   */
  constructor(out: LineWriter, options: ServerLogOptions) {
    this.#out = out;
    this.#options = options;
  }

  /**
   * Logs a server event (per-connection ones unless quiet).
   *
   * @param event What happened.
   * @param worker The Worker it happened in, with --workers (JSON says it).
   */
  event(event: ServerEvent, worker?: number): void {
    if (
      this.#options.quiet &&
      (event.type === "connect" || event.type === "close" ||
        event.type === "refuse" || event.type === "open-error" ||
        event.type === "accept-reset")
    ) {
      return;
    }
    // A load balancer's health checks: in the JSON log only, not as lines
    // (but a check that fails is).
    const check = (event.type === "connect" || event.type === "close") &&
      event.check === true;
    // A check that ends with an RST (HAProxy without linger) passed.
    const failed = (event.type === "close" && event.error !== undefined &&
      event.reason !== "check") ||
      event.type === "accept-error";
    if (this.#options.format === "text" && check && !failed) return;
    // Under --proxy-protocol, a connection that resets before its header
    // (or before it was accepted) is a balancer's check or abort: counted,
    // in the JSON log, not a line of text.
    if (
      this.#options.format === "text" &&
      ((event.type === "open-error" && event.reason === "check") ||
        (event.type === "accept-reset" && this.#options.proxyProtocol === true))
    ) {
      return;
    }
    // Strays past the first of a burst: counted, not logged.
    if (event.type === "relay-stray" && !event.logged) return;
    if (this.#options.format === "json") {
      const record = eventRecord(event);
      if (worker !== undefined) record.worker = worker;
      this.#out.write(JSON.stringify(record));
      return;
    }
    // Addresses, paths, previews and error texts may hold a peer's bytes.
    const line = escapeLine(formatEvent(event));
    this.#out.write(
      !this.#options.color
        ? line
        : failed
        ? red(line)
        : event.type === "refuse" || event.type === "open-error"
        ? yellow(line)
        : line,
    );
  }

  /**
   * Logs the one-line summary after the server stopped.
   *
   * @param addr Where the server listened.
   * @param stats Its final counters.
   * @param uptimeMs How long it ran.
   * @param phases When the shutdown's phases began (ms since the epoch):
   *   the drain (--drain-delay) and the closing of the listener.
   */
  summary(
    addr: Deno.Addr,
    stats: ServerStats,
    uptimeMs: number,
    phases: { drainStarted?: number; closeStarted?: number } = {},
  ): void {
    if (this.#options.format === "json") {
      this.#out.write(JSON.stringify({
        time: now(),
        event: "summary",
        address: formatAddr(addr),
        connections: stats.accepted,
        bytesIn: stats.bytesIn,
        bytesOut: stats.bytesOut,
        errors: stats.errors,
        refused: stats.refused,
        idleClosed: stats.idleClosed,
        shutdownClosed: stats.shutdownClosed,
        handshakeErrors: stats.handshakeErrors,
        headerErrors: stats.headerErrors,
        acceptResets: stats.acceptResets,
        relayStrays: stats.relayStrays,
        relayMoves: stats.relayMoves,
        closed: stats.closed,
        uptimeMs,
        ...(phases.drainStarted === undefined
          ? {}
          : { drainStarted: new Date(phases.drainStarted).toISOString() }),
        ...(phases.closeStarted === undefined
          ? {}
          : { closeStarted: new Date(phases.closeStarted).toISOString() }),
      }));
    } else {
      const line = `Served ${plural(stats.accepted, "connection")} on ${
        formatAddr(addr)
      }: ${formatBytes(stats.bytesIn)} in, ${
        formatBytes(stats.bytesOut)
      } out, ${plural(stats.errors, "error")}${
        stats.refused > 0 ? `, ${stats.refused} refused` : ""
      }${stats.idleClosed > 0 ? `, ${stats.idleClosed} closed idle` : ""}${
        stats.handshakeErrors > 0
          ? `, ${stats.handshakeErrors} failed the TLS handshake`
          : ""
      }${
        stats.headerErrors > 0
          ? `, ${stats.headerErrors} without a valid PROXY header`
          : ""
      }${
        stats.acceptResets > 0
          ? `, ${stats.acceptResets} reset before they were accepted`
          : ""
      }${
        stats.relayStrays > 0
          ? `, ${stats.relayStrays} strays on the TLS relay's inner port`
          : ""
      }${
        stats.closed.check > 0
          ? `, ${plural(stats.closed.check, "health check")}`
          : ""
      }${
        stats.shutdownClosed > 0
          ? `, ${stats.shutdownClosed} cut off at shutdown`
          : ""
      }, up ${formatDuration(uptimeMs, { ignoreZero: true }) || "0ms"}${
        phases.drainStarted !== undefined && phases.closeStarted !== undefined
          ? `; drained ${
            (phases.closeStarted - phases.drainStarted) / 1000
          } s before closing the listener`
          : ""
      }`;
      this.#out.write(this.#options.color ? bold(line) : line);
    }
  }

  /**
   * Logs a line of the server's own (a Worker that died, the metrics
   * address), in text or as a JSON event of `type`.
   *
   * @param type The JSON event's name.
   * @param text The text line.
   * @param fields The JSON event's fields.
   * @param failed Whether it says something went wrong (red on a terminal).
   */
  note(
    type: string,
    text: string,
    fields: Record<string, unknown>,
    failed = false,
  ): void {
    if (this.#options.format === "json") {
      this.#out.write(JSON.stringify({ time: now(), event: type, ...fields }));
    } else {
      const line = escapeLine(text);
      this.#out.write(this.#options.color && failed ? red(line) : line);
    }
  }

  /**
   * Resolves once every queued line is written.
   *
   * @returns A promise that resolves when the queue is empty.
   */
  flush(): Promise<void> {
    return this.#out.flush();
  }

  /**
   * Waits for the queued lines at exit, but no longer than `limitMs`: a
   * stalled log reader must not keep the process alive.
   *
   * @param limitMs The longest wait.
   */
  async flushWithin(limitMs = LOG_FLUSH_LIMIT_MS): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.flush(),
      new Promise((resolve) => timer = setTimeout(resolve, limitMs)),
    ]);
    clearTimeout(timer);
  }

  /**
   * The lines of the metrics address: where it serves, and an accept that
   * failed (it retries). For `serveMetrics()`'s `onListen` and
   * `onAcceptError`.
   *
   * @returns The two callbacks.
   */
  metricsNotes(): {
    onListen: (addr: Deno.NetAddr) => void;
    onAcceptError: (error: string) => void;
  } {
    return {
      onListen: (addr) => {
        const where = formatAddr(addr);
        this.note(
          "metrics",
          `Serving metrics on http://${where}/metrics, health on http://${where}/healthz and the live page on http://${where}/`,
          { addr: where },
        );
      },
      onAcceptError: (error) =>
        this.note(
          "metrics-accept-error",
          `metrics address: accept failed: ${error}; retrying`,
          { error },
          true,
        ),
    };
  }
}

/**
 * One text log line for a server event, in the seed's words where it has
 * them.
 *
 * @param event What happened.
 * @returns The line, without a newline.
 */
export function formatEvent(event: ServerEvent): string {
  switch (event.type) {
    case "listen":
      return `Accepting ${event.tls ? "TLS " : ""}connections on ${
        formatAddr(event.addr)
      } ...${
        event.faults === undefined
          ? ""
          : ` with faults: ${
            event.faults.specs.join(" ")
          } (--fault-seed ${event.faults.seed})`
      }`;
    case "connect":
      return `received from ${peer(event.remote, event.id)}`;
    case "close": {
      const where = peer(event.remote, event.id);
      const counts = `${plural(event.bytesIn, "byte")} in, ${
        plural(event.bytesOut, "byte")
      } out`;
      const faults = event.faults === undefined
        ? ""
        : ` (fault: ${event.faults.join("; ")})`;
      return (event.error !== undefined
        ? `error from ${where}: ${event.error} (${counts})`
        : event.cutOff === "idle-timeout"
        ? `closed ${where} after the idle timeout: ${counts}`
        : event.cutOff === "shutdown"
        ? `closed ${where} at shutdown, still open when the grace period ended: ${counts}`
        : `closed ${where}: ${counts}`) + faults;
    }
    case "refuse":
      return `refused ${
        peer(event.remote, 0)
      }: ${event.maxConns} connections open (--max-conns)`;
    case "accept-error":
      return `${
        event.listener === "tls-relay" ? "TLS relay: inner accept" : "accept"
      } failed: ${event.error}; retrying`;
    case "relay-stray":
      return `TLS relay: ${
        peer(event.remote, 0)
      } connected straight to the inner port ${event.port} and was closed; its descriptor stays until it goes (no --allow-ffi: see README's threat model). More within 10 s are counted, not logged`;
    case "relay-moved":
      return `TLS relay: the inner port ${event.from} took ${event.strays} strays: moved to ${event.to}`;
    case "accept-reset":
      return "a client reset before it was accepted (RST while in the accept queue): nothing to serve";
    case "trace":
      return formatTrace(event);
    case "open-error":
      return `${
        event.step === "tls" ? "TLS handshake failed" : "PROXY header rejected"
      } from ${peer(event.remote, 0)}: ${event.error}`;
    case "faults":
      return event.faults.length === 0
        ? `faults cleared by ${peer(event.by, 0)}`
        : `faults set by ${peer(event.by, 0)}: ${
          event.faults.join(" ")
        } (--fault-seed ${event.seed})`;
    case "accept-pause":
      return `accept() paused for ${
        event.ms >= 1000
          ? `${Math.round(event.ms / 100) / 10} s`
          : `${event.ms} ms`
      } (fault: accept-pause): new clients wait in the kernel's accept queue`;
    case "shutdown":
      return `Shutting down: waiting up to ${event.graceMs / 1000} s for ${
        plural(event.open, "open connection")
      }`;
  }
}

/** `IP at PORT N` as the seed says it; Unix clients have no address. */
function peer(addr: Deno.Addr, id: number): string {
  return "hostname" in addr
    ? `${addr.hostname} at PORT ${addr.port}`
    : `unix socket client${id > 0 ? ` #${id}` : ""}`;
}

/**
 * An event as its JSON log record: its fields, with addresses as text.
 *
 * @param event A TCP or UDP server's event.
 * @returns The record, with `time` and `event` first.
 */
export function eventRecord(
  event: ServerEvent | UdpEvent,
): Record<string, unknown> {
  const record: Record<string, unknown> = { time: now(), event: event.type };
  for (const [key, value] of Object.entries(event)) {
    if (key === "type") continue;
    record[key] = key === "remote" || key === "addr" || key === "by"
      ? formatAddr(value as Deno.Addr)
      : value;
  }
  return record;
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function now(): string {
  return new Date().toISOString();
}
