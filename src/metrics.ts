// Copyright the upcase authors. MIT license.
/**
 * The server's numbers and their Prometheus text exposition: the
 * {@linkcode MetricsSnapshot} the server fills in, the
 * {@linkcode DurationHistogram} each thread keeps for connection durations,
 * and {@linkcode renderMetrics}, which writes what `GET /metrics` returns in
 * the text format version 0.0.4.
 *
 * @example Render a snapshot
 * ```ts
 * import { DurationHistogram, renderMetrics } from "./metrics.ts";
 * import { assertStringIncludes } from "@std/assert";
 *
 * const duration = new DurationHistogram();
 * duration.observe(0.25);
 * const text = renderMetrics({
 *   accepted: 1,
 *   active: 0,
 *   refused: 0,
 *   closed: {
 *     eof: 1,
 *     reset: 0,
 *     error: 0,
 *     "idle-timeout": 0,
 *     shutdown: 0,
 *     handshake: 0,
 *     header: 0,
 *     check: 0,
 *   },
 *   bytesIn: 5,
 *   bytesOut: 5,
 *   duration: duration.snapshot(),
 *   version: "0.1.0",
 *   startTimeSeconds: 1700000000,
 * }, 50_000_000);
 *
 * assertStringIncludes(text, 'upcase_connections_closed_total{reason="eof"} 1\n');
 * assertStringIncludes(text, 'upcase_connection_duration_seconds_bucket{le="1"} 1\n');
 * ```
 *
 * @module
 */

import { FAULT_KINDS } from "./_fault_spec.ts";

/**
 * How a connection ended: one vocabulary shared by the logs and the
 * `upcase_connections_closed_total{reason}` counter.
 */
export type CloseReason =
  | "eof"
  | "reset"
  | "error"
  | "idle-timeout"
  | "shutdown"
  | "handshake"
  | "header"
  | "check";

/**
 * Every {@linkcode CloseReason}, in the order `/metrics` lists them.
 *
 * @example Usage
 * ```ts
 * import { CLOSE_REASONS } from "./metrics.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(CLOSE_REASONS[0], "eof");
 * assertEquals(CLOSE_REASONS.length, 8);
 * ```
 */
export const CLOSE_REASONS: readonly CloseReason[] = Object.freeze(
  Object.keys(
    {
      eof: 0,
      reset: 0,
      error: 0,
      "idle-timeout": 0,
      shutdown: 0,
      handshake: 0,
      header: 0,
      check: 0,
    } satisfies Record<CloseReason, 0>, // the compiler checks none is missing
  ) as CloseReason[],
);

/**
 * The upper bounds, in seconds, of the connection duration histogram's
 * buckets; a last `+Inf` bucket is implied.
 *
 * @example Usage
 * ```ts
 * import { DURATION_BUCKETS } from "./metrics.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DURATION_BUCKETS.at(-1), 60);
 * ```
 */
export const DURATION_BUCKETS = [0.001, 0.01, 0.1, 1, 10, 60] as const;

/** The number of buckets a histogram has: one per bound, then `+Inf`. */
const BUCKET_COUNT = DURATION_BUCKETS.length + 1;

/**
 * The `Content-Type` of the text exposition format version 0.0.4, the one
 * {@linkcode renderMetrics} writes.
 *
 * @example Usage
 * ```ts
 * import { METRICS_CONTENT_TYPE } from "./metrics.ts";
 * import { assertStringIncludes } from "@std/assert";
 *
 * assertStringIncludes(METRICS_CONTENT_TYPE, "version=0.0.4");
 * ```
 */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** The counts of a {@linkcode DurationHistogram}, as plain data. */
export interface DurationSnapshot {
  /**
   * How many observations fell in each bucket, not cumulative: one count
   * per bound in {@linkcode DURATION_BUCKETS} (values greater than the
   * bound before it and at most this one), then the `+Inf` bucket. Its
   * length is `DURATION_BUCKETS.length + 1`.
   */
  buckets: number[];
  /** The sum of the observed durations, in seconds. */
  sum: number;
  /** How many durations were observed: the sum of `buckets`. */
  count: number;
}

/** The server's numbers at one moment, for {@linkcode renderMetrics}. */
export interface MetricsSnapshot {
  /** Connections accepted since the server started. */
  accepted: number;
  /** Connections open now. */
  active: number;
  /** Connections refused since the server started (at the connection limit). */
  refused: number;
  /** Connections closed since the server started, by how they ended. */
  closed: Record<CloseReason, number>;
  /** Bytes read from clients since the server started. */
  bytesIn: number;
  /** Bytes written to clients since the server started. */
  bytesOut: number;
  /** How long the closed connections lasted. */
  duration: DurationSnapshot;
  /** The server's version, for `upcase_build_info`. */
  version: string;
  /** When the process started, in seconds since the Unix epoch. */
  startTimeSeconds: number;
  /**
   * The HTTP side channel's own numbers (the address `/metrics` is served
   * on), when it has any.
   */
  http?: HttpSideChannelSnapshot;
  /**
   * TLS: the relay's strays and moves (see `ServerStats.relayStrays`); 0
   * with `--allow-ffi`, which has no relay.
   */
  tlsRelay?: { strays: number; moves: number };
  /**
   * With faults (`--fault`, `--fault-api`): those injected since start by
   * kind, and how many are active.
   */
  faults?: { injected: Record<string, number>; active: number };
  /** `--udp`: the datagram counters (see `UdpStats`). */
  udp?: UdpSnapshot;
}

/** The UDP server's numbers, in a {@linkcode MetricsSnapshot}. */
export interface UdpSnapshot {
  /** Datagrams received. */
  received: number;
  /** Datagrams sent back. */
  sent: number;
  /** Bytes received. */
  bytesIn: number;
  /** Bytes sent back. */
  bytesOut: number;
  /** Datagrams left unanswered, by reason. */
  dropped: Record<string, number>;
}

/** The side channel's numbers, in a {@linkcode MetricsSnapshot}. */
export interface HttpSideChannelSnapshot {
  /** Its connections open now. */
  open: number;
  /** Responses sent since start, by status code. */
  responses: ReadonlyMap<number, number>;
  /** Connections closed to make room for a new one (its cap). */
  evicted: number;
  /** Accepts that failed for its listener (a descriptor shortage). */
  acceptErrors: number;
}

/**
 * A histogram of connection durations over {@linkcode DURATION_BUCKETS}.
 * Each thread keeps one and observes into it; the main thread adds their
 * {@linkcode DurationHistogram.snapshot} with
 * {@linkcode DurationHistogram.merge}. Observing allocates nothing.
 *
 * @example Observe in two places and add them up
 * ```ts
 * import { DurationHistogram } from "./metrics.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const worker = new DurationHistogram();
 * worker.observe(0.005); // in the 0.01 bucket
 * worker.observe(90); // in the +Inf bucket
 *
 * const total = new DurationHistogram();
 * total.merge(worker.snapshot()); // what a Worker would post
 * assertEquals(total.snapshot(), {
 *   buckets: [0, 1, 0, 0, 0, 0, 1],
 *   sum: 90.005,
 *   count: 2,
 * });
 * ```
 */
export class DurationHistogram {
  #buckets = new Float64Array(BUCKET_COUNT);
  #sum = 0;
  #count = 0;

  /**
   * Counts one connection that lasted `seconds`.
   *
   * @param seconds How long it lasted, in seconds: finite and not negative.
   * @throws {RangeError} If `seconds` is negative, infinite or NaN.
   *
   * @example Usage
   * ```ts
   * import { DurationHistogram } from "./metrics.ts";
   * import { assertEquals } from "@std/assert";
   *
   * const histogram = new DurationHistogram();
   * histogram.observe(0.001); // a bound belongs to its own bucket
   * assertEquals(histogram.snapshot().buckets, [1, 0, 0, 0, 0, 0, 0]);
   * ```
   */
  observe(seconds: number): void {
    if (!(seconds >= 0 && seconds < Infinity)) {
      throw new RangeError(
        `Invalid duration: ${seconds} is not a finite number of seconds from 0`,
      );
    }
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
    this.#buckets[i]!++;
    this.#sum += seconds;
    this.#count++;
  }

  /**
   * Adds another histogram's counts to this one's.
   *
   * @param other The counts to add, from {@linkcode DurationHistogram.snapshot}.
   * @throws {RangeError} If `other.buckets` does not have one count per
   * bucket.
   *
   * @example Usage
   * ```ts
   * import { DurationHistogram } from "./metrics.ts";
   * import { assertEquals } from "@std/assert";
   *
   * const total = new DurationHistogram();
   * total.merge({ buckets: [1, 0, 0, 2, 0, 0, 0], sum: 1.5, count: 3 });
   * total.merge({ buckets: [0, 0, 0, 1, 0, 0, 0], sum: 0.5, count: 1 });
   * assertEquals(total.snapshot().count, 4);
   * ```
   */
  merge(other: DurationSnapshot): void {
    if (other.buckets.length !== BUCKET_COUNT) {
      throw new RangeError(
        `Invalid histogram: expected ${BUCKET_COUNT} bucket counts, got ${other.buckets.length}`,
      );
    }
    for (let i = 0; i < BUCKET_COUNT; i++) {
      this.#buckets[i]! += other.buckets[i]!;
    }
    this.#sum += other.sum;
    this.#count += other.count;
  }

  /**
   * The counts so far, as a copy in plain data: safe to post to another
   * thread or keep while this histogram goes on counting.
   *
   * @returns The per-bucket counts, the sum and the count.
   *
   * @example Usage
   * ```ts
   * import { DurationHistogram } from "./metrics.ts";
   * import { assertEquals } from "@std/assert";
   *
   * assertEquals(new DurationHistogram().snapshot(), {
   *   buckets: [0, 0, 0, 0, 0, 0, 0],
   *   sum: 0,
   *   count: 0,
   * });
   * ```
   */
  snapshot(): DurationSnapshot {
    return {
      buckets: Array.from(this.#buckets),
      sum: this.#sum,
      count: this.#count,
    };
  }
}

/**
 * Writes a snapshot in the Prometheus text exposition format version 0.0.4
 * (serve it with {@linkcode METRICS_CONTENT_TYPE}): a `# HELP` and a
 * `# TYPE` line per family, then its samples.
 *
 * | Family | Type |
 * | --- | --- |
 * | `upcase_connections_accepted_total` | counter |
 * | `upcase_connections_active` | gauge |
 * | `upcase_connections_refused_total` | counter |
 * | `upcase_connections_closed_total{reason}` | counter, every {@linkcode CLOSE_REASONS} entry |
 * | `upcase_bytes_received_total` | counter |
 * | `upcase_bytes_sent_total` | counter |
 * | `upcase_connection_duration_seconds` | histogram over {@linkcode DURATION_BUCKETS} |
 * | `upcase_http_connections_open` | gauge, with `snapshot.http` |
 * | `upcase_http_responses_total{code}` | counter, with `snapshot.http` |
 * | `upcase_http_connections_evicted_total` | counter, with `snapshot.http` |
 * | `upcase_http_accept_errors_total` | counter, with `snapshot.http` |
 * | `upcase_tls_relay_strays_total` | counter, with `snapshot.tlsRelay` |
 * | `upcase_tls_relay_moves_total` | counter, with `snapshot.tlsRelay` |
 * | `upcase_faults_injected_total{fault}` | counter, with `snapshot.faults` |
 * | `upcase_faults_active` | gauge, with `snapshot.faults` |
 * | `upcase_datagrams_received_total` | counter, with `snapshot.udp` |
 * | `upcase_datagrams_sent_total` | counter, with `snapshot.udp` |
 * | `upcase_datagrams_dropped_total{reason}` | counter, with `snapshot.udp` |
 * | `upcase_datagram_bytes_received_total` | counter, with `snapshot.udp` |
 * | `upcase_datagram_bytes_sent_total` | counter, with `snapshot.udp` |
 * | `upcase_build_info{version}` | gauge, always 1 |
 * | `process_resident_memory_bytes` | gauge |
 * | `process_start_time_seconds` | gauge |
 *
 * @param snapshot The server's numbers.
 * @param residentMemoryBytes The process's resident set size, such as
 * `Deno.memoryUsage().rss`.
 * @returns The exposition text, ending in a newline.
 * @throws {RangeError} If `snapshot.duration.buckets` does not have one
 * count per bucket.
 *
 * @example Usage
 * ```ts
 * import { DurationHistogram, renderMetrics } from "./metrics.ts";
 * import { assertStringIncludes } from "@std/assert";
 *
 * const text = renderMetrics({
 *   accepted: 3,
 *   active: 1,
 *   refused: 0,
 *   closed: {
 *     eof: 2,
 *     reset: 0,
 *     error: 0,
 *     "idle-timeout": 0,
 *     shutdown: 0,
 *     handshake: 0,
 *     header: 0,
 *     check: 0,
 *   },
 *   bytesIn: 10,
 *   bytesOut: 10,
 *   duration: new DurationHistogram().snapshot(),
 *   version: "0.1.0",
 *   startTimeSeconds: 1700000000,
 * }, Deno.memoryUsage().rss);
 *
 * assertStringIncludes(
 *   text,
 *   "# TYPE upcase_connections_accepted_total counter\n" +
 *     "upcase_connections_accepted_total 3\n",
 * );
 * assertStringIncludes(text, 'upcase_build_info{version="0.1.0"} 1\n');
 * ```
 */
export function renderMetrics(
  snapshot: MetricsSnapshot,
  residentMemoryBytes: number,
): string {
  const { duration } = snapshot;
  if (duration.buckets.length !== BUCKET_COUNT) {
    throw new RangeError(
      `Invalid histogram: expected ${BUCKET_COUNT} bucket counts, got ${duration.buckets.length}`,
    );
  }
  const lines: string[] = [];
  const family = (
    name: string,
    type: "counter" | "gauge" | "histogram",
    help: string,
  ) =>
    lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  const sample = (name: string, value: number, labels = "") =>
    lines.push(`${name}${labels} ${formatValue(value)}`);

  family(
    "upcase_connections_accepted_total",
    "counter",
    "Connections accepted since the server started.",
  );
  sample("upcase_connections_accepted_total", snapshot.accepted);

  family("upcase_connections_active", "gauge", "Connections open now.");
  sample("upcase_connections_active", snapshot.active);

  family(
    "upcase_connections_refused_total",
    "counter",
    "Connections refused at the connection limit since the server started.",
  );
  sample("upcase_connections_refused_total", snapshot.refused);

  family(
    "upcase_connections_closed_total",
    "counter",
    "Connections closed since the server started, by how they ended.",
  );
  for (const reason of CLOSE_REASONS) {
    sample(
      "upcase_connections_closed_total",
      snapshot.closed[reason],
      labelSet("reason", reason),
    );
  }

  family(
    "upcase_bytes_received_total",
    "counter",
    "Bytes read from clients since the server started.",
  );
  sample("upcase_bytes_received_total", snapshot.bytesIn);

  family(
    "upcase_bytes_sent_total",
    "counter",
    "Bytes written to clients since the server started.",
  );
  sample("upcase_bytes_sent_total", snapshot.bytesOut);

  family(
    "upcase_connection_duration_seconds",
    "histogram",
    "How long closed connections lasted, in seconds.",
  );
  let cumulative = 0;
  for (let i = 0; i < BUCKET_COUNT; i++) {
    cumulative += duration.buckets[i]!;
    const bound = DURATION_BUCKETS[i];
    sample(
      "upcase_connection_duration_seconds_bucket",
      cumulative,
      labelSet("le", bound === undefined ? "+Inf" : formatValue(bound)),
    );
  }
  sample("upcase_connection_duration_seconds_sum", duration.sum);
  sample("upcase_connection_duration_seconds_count", duration.count);

  const { http } = snapshot;
  if (http !== undefined) {
    family(
      "upcase_http_connections_open",
      "gauge",
      "Connections open now to the metrics address.",
    );
    sample("upcase_http_connections_open", http.open);
    family(
      "upcase_http_responses_total",
      "counter",
      "Responses of the metrics address since the server started, by status code.",
    );
    for (const [code, count] of [...http.responses].sort(([a], [b]) => a - b)) {
      sample(
        "upcase_http_responses_total",
        count,
        labelSet("code", String(code)),
      );
    }
    family(
      "upcase_http_connections_evicted_total",
      "counter",
      "Connections to the metrics address closed to make room for a new one.",
    );
    sample("upcase_http_connections_evicted_total", http.evicted);
    family(
      "upcase_http_accept_errors_total",
      "counter",
      "Accepts that failed on the metrics address (a descriptor shortage).",
    );
    sample("upcase_http_accept_errors_total", http.acceptErrors);
  }

  const { tlsRelay } = snapshot;
  if (tlsRelay !== undefined) {
    family(
      "upcase_tls_relay_strays_total",
      "counter",
      "Connections to the TLS relay's inner port that the relay did not make.",
    );
    sample("upcase_tls_relay_strays_total", tlsRelay.strays);
    family(
      "upcase_tls_relay_moves_total",
      "counter",
      "Times the TLS relay moved to a fresh inner port after too many strays.",
    );
    sample("upcase_tls_relay_moves_total", tlsRelay.moves);
  }

  const { faults } = snapshot;
  if (faults !== undefined) {
    family(
      "upcase_faults_injected_total",
      "counter",
      "Faults injected since the server started, by kind: connections hit, and accept pauses begun.",
    );
    for (const kind of FAULT_KINDS) {
      sample(
        "upcase_faults_injected_total",
        faults.injected[kind] ?? 0,
        labelSet("fault", kind),
      );
    }
    family(
      "upcase_faults_active",
      "gauge",
      "Faults active now (given with --fault or PUT /faults).",
    );
    sample("upcase_faults_active", faults.active);
  }

  const { udp } = snapshot;
  if (udp !== undefined) {
    const counters: [string, string, number][] = [
      ["received", "UDP datagrams received", udp.received],
      ["sent", "UDP datagrams sent back", udp.sent],
    ];
    for (const [what, help, value] of counters) {
      family(
        `upcase_datagrams_${what}_total`,
        "counter",
        `${help} since the server started.`,
      );
      sample(`upcase_datagrams_${what}_total`, value);
    }
    family(
      "upcase_datagrams_dropped_total",
      "counter",
      "UDP datagrams left unanswered, by reason: reflecting-port (the source port of a service that answers), broadcast-source, rate (past --udp-rate), permission (--allow-net), send-error.",
    );
    for (const [reason, count] of Object.entries(udp.dropped)) {
      sample(
        "upcase_datagrams_dropped_total",
        count,
        labelSet("reason", reason),
      );
    }
    const bytes: [string, string, number][] = [
      ["received", "Bytes received in UDP datagrams", udp.bytesIn],
      ["sent", "Bytes sent back in UDP datagrams", udp.bytesOut],
    ];
    for (const [what, help, value] of bytes) {
      family(
        `upcase_datagram_bytes_${what}_total`,
        "counter",
        `${help} since the server started.`,
      );
      sample(`upcase_datagram_bytes_${what}_total`, value);
    }
  }

  family(
    "upcase_build_info",
    "gauge",
    "Always 1; the version label says which upcase is running.",
  );
  sample("upcase_build_info", 1, labelSet("version", snapshot.version));

  family(
    "process_resident_memory_bytes",
    "gauge",
    "Resident memory size in bytes.",
  );
  sample("process_resident_memory_bytes", residentMemoryBytes);

  family(
    "process_start_time_seconds",
    "gauge",
    "Start time of the process since unix epoch in seconds.",
  );
  sample("process_start_time_seconds", snapshot.startTimeSeconds);

  lines.push("");
  return lines.join("\n");
}

/** A sample value as the text format writes it: `+Inf`, `-Inf`, `NaN` or a number. */
function formatValue(value: number): string {
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value); // "NaN" for NaN; integers without a fraction
}

/** `{name="value"}` with the value escaped. */
function labelSet(name: string, value: string): string {
  return `{${name}="${escapeLabelValue(value)}"}`;
}

/** A label value escaped for the text format: backslash, double quote, line feed. */
function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

/** A HELP text escaped for the text format: backslash and line feed. */
function escapeHelp(help: string): string {
  return help.replace(/[\\\n]/g, (c) => c === "\n" ? "\\n" : "\\\\");
}
