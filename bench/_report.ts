// Copyright the upcase authors. MIT license.
/**
 * The results as markdown: one table per scenario, upcase against its
 * targets (plain, TLS, UDP), the transform alone; and the one-line account
 * of each run.
 *
 * @module
 */

import { fmt, fmtRatio, percent, ratioOf } from "./_format.ts";
import { num } from "./_loadgen.ts";
import type { RunRecord } from "./_runs.ts";
import {
  baseScenario,
  isTls,
  isUdp,
  kindOf,
  type Scenario,
  type ServerName,
  serversOf,
  type Settings,
  type TlsScenario,
  UPCASE_VARIANTS,
} from "./_settings.ts";
import { metrics, type Summary } from "./_summary.ts";
import type { TransformThroughput } from "./transform_throughput.ts";

/** The server every ratio of the plain scenarios is taken to. */
const REFERENCE: ServerName = "epoll";
/** The server the variants' ratios are taken to: upcase as it runs by
 * default, one thread, no metrics. */
const UPCASE: ServerName = "upcase";
/** The C reference of the TLS scenarios. */
const TLS_REFERENCE: ServerName = "c-tls";
/** The TLS server upcase's targets are set against. */
const TLS_NODE: ServerName = "node-tls";
/** The runtime's floor over TLS: a plain Deno.listenTls loop. */
const TLS_DENO: ServerName = "deno-tls";
/** upcase over TLS, as its two command lines run it. */
const TLS_UPCASE: readonly ServerName[] = ["upcase", "upcase-relay"];
/** What upcase is to do over TLS: at least this many times node-tls. */
const TLS_TARGET = 1.1;
/** The C reference of the UDP scenario (recvmmsg/sendmmsg). */
const UDP_REFERENCE: ServerName = "c-udp";
/** The UDP server upcase is to be ahead of: Node's dgram. */
const UDP_NODE: ServerName = "node-udp";
/** The runtime's floor over UDP: a plain Deno.listenDatagram loop. */
const UDP_DENO: ServerName = "deno-udp";
/** "At the floor" over UDP: at least this many times deno-udp. */
const UDP_FLOOR_TARGET = 0.95;
/** The RSS per idle connection the targets allow, in bytes. */
const IDLE_TARGET_BYTES = 8192;
/** The generator's CPU share above which a number is marked †. */
const LOADGEN_BUSY = 0.85;

/** The rows a table's ratios are taken to, where they ran. */
interface References {
  /** The C reference: epoll, c-tls for the TLS scenarios, c-udp for UDP. */
  ref?: Summary;
  /** node-tls for the TLS scenarios, node-udp for UDP. */
  node?: Summary;
  /** deno-tls for the TLS scenarios, deno-udp for UDP. */
  deno?: Summary;
  /** upcase, for the plain scenarios when its variants run. */
  upcase?: Summary;
}

interface Column {
  title: string;
  cell: (s: Summary, refs: References) => string;
}

function value(key: string, digits = 0, scale = 1): Column["cell"] {
  return (s) => fmt((s[key] ?? NaN) * scale, digits);
}

function versus(key: string, to: keyof References = "ref"): Column["cell"] {
  return (s, refs) => fmtRatio(ratioOf(s[key], refs[to]?.[key]));
}

/** Marks a number the generator may have capped. */
function capped(key: string, digits = 0): Column["cell"] {
  return (s) =>
    fmt(s[key], digits) + ((s.loadgen_busy ?? 0) >= LOADGEN_BUSY ? " †" : "");
}

const cpuColumns: Column[] = [
  { title: "server CPU", cell: (s) => percent(s.server_busy) },
  { title: "loadgen CPU", cell: (s) => percent(s.loadgen_busy) },
  { title: "other CPU", cell: (s) => percent(s.other_busy) },
  { title: "errors", cell: (s) => fmt(s.errors) },
];

/**
 * The columns of a scenario's table.
 *
 * @param scenario The scenario.
 * @param againstUpcase Whether to add ratios to upcase (plain scenarios,
 * when its variants run).
 */
function columnsFor(scenario: Scenario, againstUpcase: boolean): Column[] {
  const base = baseScenario(scenario);
  const ref = { plain: REFERENCE, tls: TLS_REFERENCE, udp: UDP_REFERENCE }[
    kindOf(scenario)
  ];
  /** The ratios of `key` to upcase, if asked for, titled after `title`. */
  const toUpcase = (key: string, title = ""): Column[] =>
    againstUpcase && !isTls(scenario)
      ? [{ title: `${title}vs ${UPCASE}`, cell: versus(key, "upcase") }]
      : [];
  const ratios = (key: string): Column[] =>
    isTls(scenario)
      ? [
        { title: `vs ${TLS_NODE}`, cell: versus(key, "node") },
        { title: `vs ${TLS_DENO}`, cell: versus(key, "deno") },
        { title: `vs ${ref}`, cell: versus(key) },
      ]
      : [{ title: `vs ${ref}`, cell: versus(key) }, ...toUpcase(key)];
  switch (base) {
    case "udp":
      return [
        { title: "round trips/s", cell: capped("ops_per_s") },
        {
          title: "range",
          cell: (s) => `${fmt(s.ops_per_s_min)}–${fmt(s.ops_per_s_max)}`,
        },
        { title: `vs ${UDP_DENO}`, cell: versus("ops_per_s", "deno") },
        { title: `vs ${UDP_NODE}`, cell: versus("ops_per_s", "node") },
        { title: `vs ${ref}`, cell: versus("ops_per_s") },
        { title: "lost", cell: (s) => fmt(s.lost) },
        { title: "late", cell: (s) => fmt(s.late) },
        { title: "p50 µs", cell: value("p50_us") },
        { title: "p99 µs", cell: value("p99_us") },
        { title: `p99 vs ${UDP_DENO}`, cell: versus("p99_us", "deno") },
        { title: "server CPU µs/trip", cell: value("cpu_us_per_op", 1) },
        ...cpuColumns,
      ];
    case "rtt":
    case "oneshot":
      return [
        {
          title: base === "rtt" ? "round trips/s" : "conns/s",
          cell: capped("ops_per_s"),
        },
        ...ratios("ops_per_s"),
        { title: "p50 µs", cell: value("p50_us") },
        { title: "p99 µs", cell: value("p99_us") },
        { title: `p99 vs ${ref}`, cell: versus("p99_us") },
        ...toUpcase("p99_us", "p99 "),
        {
          title: base === "rtt" ? "server CPU µs/trip" : "server CPU µs/conn",
          cell: value("cpu_us_per_op", 1),
        },
        ...cpuColumns,
      ];
    case "stream":
      return [
        { title: "GB/s", cell: capped("gb_per_s", 2) },
        ...ratios("gb_per_s"),
        { title: "seconds", cell: value("seconds", 2) },
        { title: "server CPU s/GB", cell: value("cpu_s_per_gb", 2) },
        ...cpuColumns,
      ];
    case "idle":
      return [
        { title: "RSS before MiB", cell: value("rss_before_kib", 1, 1 / 1024) },
        { title: "RSS held MiB", cell: value("rss_held_kib", 1, 1 / 1024) },
        { title: "bytes/conn", cell: value("rss_per_conn_b") },
        ...ratios("rss_per_conn_b"),
        { title: "connect s", cell: value("connect_seconds", 2) },
        { title: "server CPU s", cell: value("server_cpu_s", 2) },
        { title: "errors", cell: (s) => fmt(s.errors) },
      ];
  }
}

function scenarioTitle(scenario: Scenario, s: Settings): string {
  switch (scenario) {
    case "rtt":
      return `rtt: ${s.rttConns} connections × ${s.rttSize} B round trips, ${s.rttSeconds} s`;
    case "stream":
      return `stream: ${fmt(s.streamBytes / 2 ** 20)} MiB through 1 connection`;
    case "oneshot":
      return `oneshot: connect, ${s.oneshotSize} B, half-close, read to EOF, close; ${s.oneshotInFlight} in flight, ${s.oneshotSeconds} s`;
    case "idle":
      return `idle: server RSS growth per connection, ${
        fmt(s.idleConns)
      } idle connections (each after one round trip)`;
    case "tls-rtt":
      return `tls-rtt: ${s.rttConns} TLS connections × ${s.rttSize} B round trips, ${s.rttSeconds} s`;
    case "tls-stream":
      return `tls-stream: ${
        fmt(s.streamBytes / 2 ** 20)
      } MiB through 1 TLS connection`;
    case "tls-oneshot":
      return `tls-oneshot: connect, full TLS handshake, ${s.oneshotSize} B, close_notify, read to the end, close; ${s.oneshotInFlight} in flight, ${s.oneshotSeconds} s`;
    case "udp":
      return `udp: ${s.udpInFlight} datagrams in flight × ${s.udpSize} B round trips, ${s.udpSeconds} s (lost: no reply within ${s.udpLossTimeoutMs} ms)`;
  }
}

/** The summary of a server under a scenario, if a run of it went well. */
function usableOf(
  summaries: Map<string, Summary>,
): (scenario: Scenario, server: ServerName) => Summary | undefined {
  return (scenario, server) => {
    const summary = summaries.get(`${scenario}/${server}`);
    return summary && (summary.runs ?? 0) > 0 ? summary : undefined;
  };
}

/** A cell of "yes", "**no**" or "–" (not known). */
function metCell(met: boolean | undefined): string {
  return met === undefined ? "–" : met ? "yes" : "**no**";
}

/** A target: a ratio of a server's number to a reference's, and its bound. */
interface RatioTarget {
  title: string;
  scenario: Scenario;
  key: string;
  ok: (r: number) => boolean;
}

/** A ratio and whether it meets its target, with † where the generator
 * was busy on the server's side or (ref †) on the reference's. */
function ratioCells(
  summary: Summary | undefined,
  ref: Summary | undefined,
  target: RatioTarget,
): string[] {
  if (!summary) return ["–", "–"];
  const r = ratioOf(summary[target.key], ref?.[target.key]);
  const busy = (s: Summary | undefined) =>
    (s?.loadgen_busy ?? 0) >= LOADGEN_BUSY;
  const mark = (busy(summary) ? " †" : "") + (busy(ref) ? " (ref †)" : "");
  return [
    fmtRatio(r) + mark,
    metCell(Number.isFinite(r) ? target.ok(r) : undefined),
  ];
}

/** upcase against the targets of the issue, over plain TCP. */
function targetRows(summaries: Map<string, Summary>): string[] {
  const get = usableOf(summaries);
  const rows: string[] = [];
  const targets: RatioTarget[] = [
    {
      title: "rtt round trips/s ≥ 0.90× epoll",
      scenario: "rtt",
      key: "ops_per_s",
      ok: (r) => r >= 0.9,
    },
    {
      title: "rtt p99 ≤ 1.2× epoll",
      scenario: "rtt",
      key: "p99_us",
      ok: (r) => r <= 1.2,
    },
    {
      title: "stream GB/s ≥ 0.95× epoll",
      scenario: "stream",
      key: "gb_per_s",
      ok: (r) => r >= 0.95,
    },
    {
      title: "oneshot conns/s ≥ 0.90× epoll",
      scenario: "oneshot",
      key: "ops_per_s",
      ok: (r) => r >= 0.9,
    },
  ];
  for (const target of targets) {
    const up = get(target.scenario, "upcase");
    if (!up) continue;
    const cells = ratioCells(up, get(target.scenario, REFERENCE), target);
    rows.push(`| ${target.title} | ${cells.join(" | ")} |`);
  }
  const idle = get("idle", "upcase");
  if (idle) {
    const b = idle.rss_per_conn_b ?? NaN;
    rows.push(
      `| idle ≤ 8 KiB (${fmt(IDLE_TARGET_BYTES)} B) per connection | ${
        fmt(b)
      } B | ${
        metCell(Number.isFinite(b) ? b <= IDLE_TARGET_BYTES : undefined)
      } |`,
    );
  }
  if (rows.length === 0) return [];
  return [
    "",
    "### upcase against its targets",
    "",
    "| target | upcase | met |",
    "| --- | ---: | :---: |",
    ...rows,
  ];
}

/** upcase against its targets over TLS, in both of its ways. */
function tlsTargetRows(
  summaries: Map<string, Summary>,
  servers: readonly ServerName[],
): string[] {
  const get = usableOf(summaries);
  const upcases = TLS_UPCASE.filter((name) => servers.includes(name));
  const rows: string[] = [];
  const againstNode = (scenario: TlsScenario, what: string): RatioTarget => ({
    title: `${scenario} ${what} ≥ ${fmt(TLS_TARGET, 1)}× ${TLS_NODE}`,
    scenario,
    key: scenario === "tls-stream" ? "gb_per_s" : "ops_per_s",
    ok: (r) => r >= TLS_TARGET,
  });
  const targets = [
    againstNode("tls-rtt", "round trips/s"),
    againstNode("tls-stream", "GB/s"),
    againstNode("tls-oneshot", "conns/s"),
  ];
  for (const target of targets) {
    const ups = upcases.map((name) => get(target.scenario, name));
    if (ups.every((up) => !up)) continue;
    const node = get(target.scenario, TLS_NODE);
    const cells = ups.flatMap((up) => ratioCells(up, node, target));
    rows.push(`| ${target.title} | ${cells.join(" | ")} |`);
  }
  if (rows.length === 0) return [];
  return [
    "",
    "### upcase against its targets over TLS",
    "",
    `| target | ${upcases.map((name) => `${name} | met`).join(" | ")} |`,
    `| --- |${upcases.map(() => " ---: | :---: |").join("")}`,
    ...rows,
  ];
}

/** upcase against its targets over UDP: ahead of Node's dgram, at the
 * floor of Deno.listenDatagram. */
function udpTargetRows(summaries: Map<string, Summary>): string[] {
  const get = usableOf(summaries);
  const up = get("udp", UPCASE);
  if (!up) return [];
  const targets: [RatioTarget, ServerName][] = [
    [{
      title: `udp round trips/s > 1.0× ${UDP_NODE} (ahead of Node's dgram)`,
      scenario: "udp",
      key: "ops_per_s",
      ok: (r) => r > 1,
    }, UDP_NODE],
    [{
      title: `udp round trips/s ≥ ${
        fmt(UDP_FLOOR_TARGET, 2)
      }× ${UDP_DENO} (at the Deno floor)`,
      scenario: "udp",
      key: "ops_per_s",
      ok: (r) => r >= UDP_FLOOR_TARGET,
    }, UDP_DENO],
  ];
  return [
    "",
    "### upcase against its targets over UDP",
    "",
    "| target | upcase | met |",
    "| --- | ---: | :---: |",
    ...targets.map(([target, ref]) =>
      `| ${target.title} | ${
        ratioCells(up, get("udp", ref), target).join(" | ")
      } |`
    ),
  ];
}

/** The variants of upcase that the plain scenarios run. */
function variantsRun(s: Settings): ServerName[] {
  return s.scenarios.some((sc) => kindOf(sc) === "plain")
    ? UPCASE_VARIANTS.filter((name) => s.servers.includes(name))
    : [];
}

/**
 * The results as markdown.
 *
 * @param summaries The medians by `scenario/server`.
 * @param s The settings.
 * @param notes Said before the tables.
 * @param transform The transform timed alone, if it was.
 * @param skipped Why a server did not run a scenario, by `scenario/server`:
 * a SKIPPED row.
 * @returns The markdown, without a final newline.
 */
export function markdown(
  summaries: Map<string, Summary>,
  s: Settings,
  notes: string[],
  transform: TransformThroughput | undefined,
  skipped: ReadonlyMap<string, string> = new Map(),
): string {
  const out: string[] = [];
  const reps = s.reps === 1 ? "1 run" : `the median of ${s.reps} runs`;
  const variants = variantsRun(s);
  const named = [
    s.scenarios.some((sc) => kindOf(sc) === "plain") &&
    `"vs ${REFERENCE}": the C epoll reference`,
    variants.length > 0 &&
    `"vs ${UPCASE}": upcase as it runs by default, one thread and no ` +
      `metrics, for ${variants.join(" and ")} (the note below gives ` +
      "their command lines)",
  ].filter((text) => text !== false);
  out.push(
    `Each cell is ${reps}. A "vs" column is the ratio to the server it ` +
      "names" + (named.length > 0 ? ` (${named.join("; ")})` : "") +
      " (throughput: higher is better; latency and memory: lower is " +
      "better). " +
      "CPU is the share of one core in the measured window (utime + stime " +
      "of all threads, /proc/PID/stat for the servers, getrusage for the " +
      "generator); errors are the generator's, over all runs.",
  );
  out.push(
    "",
    "Load generator: bench/loadgen.c, C, one thread, epoll, 127.0.0.1 " +
      "only; it checks every reply byte. " +
      `† marks a number where it used ≥ ${
        LOADGEN_BUSY * 100
      }% of a core: then the generator and the machine, not only the ` +
      `server, set the pace (it shares ${navigator.hardwareConcurrency} ` +
      "cores with the server).",
  );
  if (s.scenarios.some(isTls)) {
    out.push(
      "",
      "TLS: the generator is an OpenSSL client that trusts a test CA made " +
        "at bench time (by tests/_certs.ts) and checks the servers' " +
        "certificate (ECDSA P-256, for localhost, 127.0.0.1 and ::1) " +
        "against it, with SNI localhost; it keeps no session, so every " +
        "connection does a full handshake. " +
        `"vs ${TLS_NODE}" is the ratio to Node's tls.createServer ` +
        "(bench/peers/node_tls_server.mjs), which upcase's targets are " +
        `set against; "vs ${TLS_DENO}" to a plain Deno.listenTls ` +
        "read/write loop (bench/peers/deno_tls_server.ts), the floor of the " +
        `runtime; "vs ${TLS_REFERENCE}" to the C OpenSSL epoll server ` +
        "(bench/peers/epoll_tls_server.c). upcase is server.ts with --cert, " +
        "--key and --allow-ffi; upcase-relay the same without --allow-ffi, " +
        "which relays every client through an in-process Deno.listenTls " +
        "(the note below gives both command lines).",
    );
  }
  if (s.scenarios.some(isUdp)) {
    out.push(
      "",
      "UDP: the generator keeps its datagrams in flight from one socket " +
        "(sendmmsg, recvmmsg), each lowercase letters that start with its " +
        "sequence number, and checks every byte of every reply; one not " +
        `answered within ${s.udpLossTimeoutMs} ms is counted lost and ` +
        "replaced by a new one (lost: over all runs; late: replies after " +
        "that, or twice). " +
        `"vs ${UDP_DENO}" is the ratio to a plain Deno.listenDatagram ` +
        "loop (bench/peers/deno_udp_server.ts: receive into 64 KiB, " +
        "upper-case, await the send), the floor of the runtime; " +
        `"vs ${UDP_NODE}" to Node's dgram (bench/peers/node_udp_server.mjs), ` +
        `which upcase is to be ahead of; "vs ${UDP_REFERENCE}" to the C ` +
        "recvmmsg/sendmmsg server (bench/peers/udp_server.c). " +
        "deno-node-udp is node_udp_server.mjs's handler under Deno's " +
        "node:dgram (bench/peers/deno_node_udp_server.ts). " +
        '"range" is the lowest and highest round trips/s of the runs.',
    );
  }
  for (const note of notes) out.push("", `Note: ${note}`);
  for (const scenario of s.scenarios) {
    const columns = columnsFor(scenario, variants.length > 0);
    out.push("", `### ${scenarioTitle(scenario, s)}`, "");
    out.push(`| server | ${columns.map((c) => c.title).join(" | ")} |`);
    out.push(`| --- |${columns.map(() => " ---: |").join("")}`);
    const get = usableOf(summaries);
    const refs: References = isTls(scenario)
      ? {
        ref: get(scenario, TLS_REFERENCE),
        node: get(scenario, TLS_NODE),
        deno: get(scenario, TLS_DENO),
      }
      : isUdp(scenario)
      ? {
        ref: get(scenario, UDP_REFERENCE),
        node: get(scenario, UDP_NODE),
        deno: get(scenario, UDP_DENO),
      }
      : { ref: get(scenario, REFERENCE), upcase: get(scenario, UPCASE) };
    // "vs upcase" is for upcase and its variants only.
    const refsOf = (server: ServerName): References =>
      server === UPCASE || UPCASE_VARIANTS.includes(server)
        ? refs
        : { ...refs, upcase: undefined };
    for (const server of serversOf(scenario, s.servers)) {
      const summary = summaries.get(`${scenario}/${server}`);
      const why = skipped.get(`${scenario}/${server}`);
      if (!summary && why) {
        const text = `SKIPPED: ${why.replaceAll("|", "\\|")}`;
        out.push(
          `| ${server} | ${
            columns.map((_, i) => i === 0 ? text : "").join(" | ")
          } |`,
        );
        continue;
      }
      if (!summary) continue;
      if ((summary.runs ?? 0) === 0) {
        out.push(
          `| ${server} | ${
            columns.map((_, i) => i === 0 ? "failed" : "").join(" | ")
          } |`,
        );
        continue;
      }
      const failed = [
        summary.failed_runs ? `${summary.failed_runs} failed` : "",
        summary.disturbed_runs ? `${summary.disturbed_runs} disturbed` : "",
      ].filter((t) => t !== "").join(", ");
      out.push(
        `| ${server}${failed ? ` (${failed})` : ""} | ${
          columns.map((c) => c.cell(summary, refsOf(server))).join(" | ")
        } |`,
      );
    }
  }
  out.push(...targetRows(summaries));
  out.push(...tlsTargetRows(summaries, s.servers));
  out.push(...udpTargetRows(summaries));
  if (transform) {
    const ratio = transform.naiveNs / transform.shippedNs;
    out.push(
      "",
      `### transform alone, ${fmt(transform.size)} B, in-process`,
      "",
      "| contender | GB/s | µs per pass | vs naive |",
      "| --- | ---: | ---: | ---: |",
      `| naive per-byte loop | ${fmt(transform.naiveGBps, 2)} | ${
        fmt(transform.naiveNs / 1000, 2)
      } | 1.00× |`,
      `| toUpperInPlace (transform.ts) | ${fmt(transform.shippedGBps, 2)} | ${
        fmt(transform.shippedNs / 1000, 2)
      } | ${fmtRatio(ratio)} |`,
    );
  }
  return out.join("\n");
}

/**
 * One run in one line, for the progress on stdout.
 *
 * @param r A run that went well.
 * @returns Its main numbers and the CPU shares.
 */
export function describe(r: RunRecord): string {
  const g = r.loadgen;
  const errs = num(g, "errors") + num(g, "verify_failures");
  const tail = errs > 0 ? `  ERRORS ${errs}: ${g?.first_error}` : "";
  const m = metrics(r);
  const cpu = `CPU: server ${percent(m.server_busy)}, loadgen ${
    percent(m.loadgen_busy)
  }, other ${percent(m.other_busy)}`;
  switch (baseScenario(r.scenario)) {
    case "rtt":
    case "oneshot":
      return `${fmt(num(g, "ops_per_s"))}/s, p99 ${
        fmt(num(g, "p99_us"))
      } µs, ${cpu}${tail}`;
    case "udp":
      return `${fmt(num(g, "ops_per_s"))}/s, p99 ${
        fmt(num(g, "p99_us"))
      } µs, lost ${fmt(num(g, "lost"))}, ${cpu}${tail}`;
    case "stream":
      return `${fmt(num(g, "bytes_per_s") / 1e9, 2)} GB/s, ${
        fmt(num(g, "seconds"), 2)
      } s, ${cpu}${tail}`;
    case "idle":
      return `${fmt(r.rssPerConnBytes)} B/conn (${
        fmt((r.rssBeforeKiB ?? NaN) / 1024, 1)
      } -> ${fmt((r.rssHeldKiB ?? NaN) / 1024, 1)} MiB, ${
        fmt(num(g, "connected"))
      } conns)${tail}`;
  }
}
