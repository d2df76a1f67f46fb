// Copyright the upcase authors. MIT license.
// TLS scenario 2: clients that reset the connection (a real RST) in the
// middle of the handshake and in the middle of the stream. The server logs
// each one, keeps serving the others, and has no connection left open.
//
// Deno cannot send RST (it has no SO_LINGER, and a Deno client's close()
// sends FIN), so the resetting clients are stress/_tls_reset_clients.py
// run by /usr/bin/python3: SO_LINGER {on, 0}, then close().

import {
  Bystanders,
  checkedRequest,
  type RssFigures,
  RssSampler,
  type ScenarioResult,
  skippedResult,
  waitUntil,
  withTimeout,
} from "./_util.ts";
import {
  HANDSHAKE_FAILED_LINE,
  havePython,
  makeStressCerts,
  PYTHON,
  socketsOnPort,
  startTlsServer,
  type TlsMode,
} from "./_tls.ts";

/** Where in the connection a client resets; see the Python helper. */
export type TlsResetPoint =
  | "before-hello"
  | "mid-hello"
  | "after-hello"
  | "mid-exchange"
  | "mid-write";

/** Every reset point, the handshake ones first. */
export const TLS_RESET_POINTS: readonly TlsResetPoint[] = [
  "before-hello",
  "mid-hello",
  "after-hello",
  "mid-exchange",
  "mid-write",
];

const HANDSHAKE_POINTS: ReadonlySet<TlsResetPoint> = new Set([
  "before-hello",
  "mid-hello",
  "after-hello",
]);

/** Options for {@linkcode tlsResets}. */
export interface TlsResetsOptions {
  /** How the server frees stalled handshakes. */
  mode: TlsMode;
  /** Seed of the reset points and payloads. @default {1} */
  seed?: number;
  /** Clients that reset. @default {1000} */
  clients?: number;
  /** Of them, how many at once. @default {20} */
  concurrency?: number;
}

/** An accept() that failed because the client had reset already. */
const ACCEPT_RESET_LINE = /^a client reset before it was accepted/;

/**
 * Where the resetting clients connect from: not 127.0.0.1, where the
 * bystanders are. Loopback hands a port just freed to the next connect (a
 * bystander's port, in TIME_WAIT, too: tcp_tw_reuse), so a bystander's
 * connection often has a resetting client's port number; matched by port
 * alone, its clean close was taken for that client's (9 runs in 40 failed
 * so, on a 2-CPU machine). The address tells their log lines apart.
 */
const RESETTER_ADDRESS = "127.0.0.2";
/** The port in a log line about a resetting client (from {@linkcode RESETTER_ADDRESS}). */
const RESETTER_PORT = / 127\.0\.0\.2 at PORT (\d+)\b/;

const HELPER = new URL("./_tls_reset_clients.py", import.meta.url).pathname;

/** What the helper prints for one client. */
interface ResetReport {
  index: number;
  point: TlsResetPoint;
  /** The client's local port: with {@linkcode RESETTER_ADDRESS}, how the server's log names it. */
  port: number;
  /** When it connected, in the helper's monotonic seconds. */
  at: number;
  sent: number;
  error: string | null;
}

/** The reason a log line gives, without the byte counts; "" for a clean close. */
function reasonOf(line: string): string {
  if (line.startsWith("closed ")) return "";
  return line.replace(/^.*? at PORT \d+: /, "").replace(
    / \(\d+ bytes? in.*$/,
    "",
  );
}

/**
 * TLS scenario 2. Starts `server.ts --cert --key` in `mode`; `clients`
 * Python clients, `concurrency` at a time, each reset at a random point of
 * {@linkcode TLS_RESET_POINTS}, while two well-behaved TLS clients check
 * their replies. Then every resetting client must appear in the server's
 * log (a failed handshake for the handshake points, a close or an error
 * after "received from" for the others), the server must hold no more
 * sockets than before and none in ESTABLISHED on its port, serve a new TLS
 * client, and exit 0 on SIGTERM.
 *
 * Skipped, with the reason, without `/usr/bin/python3`.
 *
 * @throws {Error} When a client is not logged, a connection stays open, or a
 *   well-behaved client fails.
 */
export async function tlsResets(
  options: TlsResetsOptions,
): Promise<ScenarioResult> {
  if (!await havePython()) {
    return skippedResult(`${PYTHON} with its ssl module is not there`);
  }
  const clients = options.clients ?? 1000;
  const concurrency = options.concurrency ?? 20;
  const seed = options.seed ?? 1;
  await using certs = await makeStressCerts();
  await using server = await startTlsServer(certs, options.mode);
  const baseline = await server.sockets();
  const sampler = await RssSampler.start(server.pid);
  const bystanders = Bystanders.start(server.port, {
    count: 2,
    pauseMs: 5,
    seed,
    tls: certs.tls,
  });
  let reports: ResetReport[];
  let rss: RssFigures;
  let bystanderBytes = 0;
  let exchanges = 0;
  try {
    const helper = new Deno.Command(PYTHON, {
      args: [
        HELPER,
        String(server.port),
        certs.ca,
        String(seed),
        String(clients),
        String(concurrency),
        TLS_RESET_POINTS.join(","),
        RESETTER_ADDRESS,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(clients * 500 + 30_000),
    });
    const out = await helper.output();
    const decoder = new TextDecoder();
    if (!out.success) {
      throw new Error(
        `The Python clients failed (exit ${out.code}): ${
          decoder.decode(out.stderr).trim()
        }`,
      );
    }
    reports = decoder.decode(out.stdout).trim().split("\n").map((line) =>
      JSON.parse(line) as ResetReport
    );
    const report = await bystanders.stop();
    bystanderBytes = report.bytes;
    exchanges = report.exchanges;
    if (reports.length !== clients) {
      throw new Error(
        `${reports.length} of ${clients} Python clients reported`,
      );
    }
    const failed = reports.find((r) => r.error !== null);
    if (failed !== undefined) {
      throw new Error(
        `Resetting client ${failed.index} (${failed.point}) failed before its reset: ${failed.error}`,
      );
    }
    // Every client has its last line in the log: a failed handshake, or a
    // close after "received from". One that resets before the server's
    // accept() returns is logged without its address (getpeername fails
    // with ENOTCONN): "a client reset before it was accepted".
    const unlogged = () => {
      const matched = matchLog(reports, server.log);
      return reports.filter((r) => matched.get(r) === undefined);
    };
    await waitUntil(
      () => unlogged().length <= server.count(ACCEPT_RESET_LINE),
      10_000,
      `a log line for each resetting client`,
    ).catch((err: unknown) => {
      const missing = unlogged();
      throw new Error(
        `${missing.length} resetting clients are not in the log (${
          server.count(ACCEPT_RESET_LINE)
        } accept failures), e.g. a ${missing[0]?.point} client at PORT ${
          missing[0]?.port
        }`,
        { cause: err },
      );
    });
    await waitUntil(
      async () => (await server.sockets()) <= baseline,
      10_000,
      `the server's sockets back to ${baseline}`,
    );
    await withTimeout(
      checkedRequest(
        server.port,
        new TextEncoder().encode("still there?"),
        "a TLS client after the resets",
        10_000,
        "127.0.0.1",
        certs.tls,
      ),
      15_000,
      "a TLS client after the resets",
    );
    rss = await sampler.stop();
  } finally {
    await bystanders.stop().catch(() => {});
    await sampler.stop();
  }
  const established = await socketsOnPort(server.port);
  if (established !== 0) {
    throw new Error(`ss shows ${established} connections still established`);
  }
  // The server logs a close after it has closed the socket, and writes its
  // log a moment later: the last client's (and a bystander's) "closed" line
  // may still be on its way when the client has its reply.
  await waitUntil(
    () => server.openByLog() === 0,
    10_000,
    "a close line for every connection logged as received",
  ).catch((err: unknown) => {
    throw new Error(
      `${server.openByLog()} connections logged as received and not as closed`,
      { cause: err },
    );
  });
  // What the server said, by reset point.
  const matched = matchLog(reports, server.log);
  const said = new Map<string, number>();
  const wrong: string[] = [];
  let unloggedCount = 0;
  for (const r of reports) {
    const last = matched.get(r);
    if (last === undefined) {
      unloggedCount++; // reset while in the accept queue
      if (!HANDSHAKE_POINTS.has(r.point)) {
        wrong.push(`${r.point} client at PORT ${r.port}: not in the log`);
      }
      continue;
    }
    if (HANDSHAKE_POINTS.has(r.point) !== HANDSHAKE_FAILED_LINE.test(last)) {
      wrong.push(`${r.point} client at PORT ${r.port}: ${last}`);
    }
    const kind = HANDSHAKE_FAILED_LINE.test(last)
      ? "handshake failed"
      : last.startsWith("error from ")
      ? "error"
      : "closed";
    const reason = reasonOf(last);
    const key = `${r.point}: ${kind}${reason === "" ? "" : ` (${reason})`}`;
    said.set(key, (said.get(key) ?? 0) + 1);
  }
  const out = await server.stop();
  if (out.code !== 0) {
    throw new Error(`server.ts exited ${out.code} on SIGTERM: ${out.stderr}`);
  }
  if (wrong.length > 0) {
    throw new Error(
      `${wrong.length} clients logged in the wrong phase, e.g. ${wrong[0]}`,
    );
  }
  const perPoint = TLS_RESET_POINTS.map((p) =>
    `${reports.filter((r) => r.point === p).length} ${p}`
  ).join(", ");
  return {
    cases: clients,
    bytes: reports.reduce((n, r) => n + r.sent, 0) + bystanderBytes,
    errors: server.count(/^error from /) + server.count(HANDSHAKE_FAILED_LINE),
    rss,
    notes: [
      `RST from Python (SO_LINGER 0) at: ${perPoint}; ${exchanges} bystander round trips over TLS checked meanwhile`,
      `the server logged: ${
        unloggedCount > 0
          ? `${unloggedCount} × reset in the accept queue (a client reset before it was accepted); `
          : ""
      }${
        [...said].toSorted(([a], [b]) => a.localeCompare(b)).map(([k, n]) =>
          `${n} × ${k}`
        ).join("; ")
      }`,
    ],
  };
}

/** Whether `line` ends a connection: a failed handshake or a close. */
function isFinal(line: string): boolean {
  return HANDSHAKE_FAILED_LINE.test(line) || /^(closed|error from) /.test(line);
}

/**
 * Each client's last log line, or undefined when it has none. A port freed
 * by a reset is soon used again, so the lines about one port are cut into
 * connections (each ends with a failed handshake or a close) and handed to
 * its clients in the order they connected; a handshake-phase client whose
 * turn has a line of the wrong phase was one the log does not name (reset
 * in the accept queue), and is skipped.
 */
function matchLog(
  reports: readonly ResetReport[],
  log: readonly string[],
): Map<ResetReport, string | undefined> {
  const finals = new Map<number, string[]>();
  for (const line of log) {
    const port = RESETTER_PORT.exec(line)?.[1];
    if (port === undefined || !isFinal(line)) continue;
    const list = finals.get(Number(port)) ?? [];
    list.push(line);
    finals.set(Number(port), list);
  }
  const byPort = Map.groupBy(reports, (r) => r.port);
  const matched = new Map<ResetReport, string | undefined>();
  for (const [port, clients] of byPort) {
    const lines = finals.get(port) ?? [];
    const ordered = clients.toSorted((a, b) => a.at - b.at);
    let next = 0;
    ordered.forEach((client, i) => {
      const line = lines[next];
      const someoneMissing = lines.length - next < ordered.length - i;
      if (
        line === undefined ||
        (someoneMissing && HANDSHAKE_POINTS.has(client.point) &&
          !HANDSHAKE_FAILED_LINE.test(line))
      ) {
        matched.set(client, undefined);
        return;
      }
      matched.set(client, line);
      next++;
    });
  }
  return matched;
}
