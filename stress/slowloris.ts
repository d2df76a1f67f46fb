// Copyright the upcase authors. MIT license.
// Scenario 4: slowloris. Many connections that send nothing must be closed by
// --idle-timeout on time, and --max-conns must refuse clients beyond the limit
// cleanly while the connections it admitted keep working.

import { closeQuietly } from "../src/_io.ts";
import {
  Bystanders,
  delay,
  exchangeChecked,
  handled,
  Random,
  type RssFigures,
  RssSampler,
  type ScenarioResult,
  serverHasFlag,
  skippedResult,
  waitUntil,
  WatchedServer,
  withTimeout,
} from "./_util.ts";

/** Options for {@linkcode slowloris}. */
export interface SlowlorisOptions {
  /** Connections that send nothing. @default {1000} */
  connections?: number;
  /** The server's `--idle-timeout`, in seconds. @default {2} */
  idleTimeout?: number;
  /** The server's `--max-conns` in the second part. @default {100} */
  maxConns?: number;
  /** Seed of the payloads. @default {1} */
  seed?: number;
}

/**
 * Why {@linkcode slowloris} cannot run against this `server.ts`, or
 * undefined when it can.
 */
export async function slowlorisSkipReason(): Promise<string | undefined> {
  for (const flag of ["--idle-timeout", "--max-conns"]) {
    if (!(await serverHasFlag(flag))) {
      return `server.ts --help does not mention ${flag}`;
    }
  }
  return undefined;
}

/** How many connects are in flight at once. */
const CONNECT_BATCH = 100;

/**
 * Scenario 4, in two parts against `server.ts`:
 *
 * 1. `--idle-timeout T`: `connections` clients connect and send nothing;
 *    each must be closed between T (less the server's sweep interval) and
 *    T + 1.5 s after it connected, while a client that exchanges every T/4
 *    stays open and others get their exact bytes.
 * 2. `--max-conns M`: M clients are admitted and keep exchanging; the other
 *    `connections - M` are accepted and closed at once (EOF, no reset, no
 *    byte), each logged as refused; once some admitted ones leave, a new
 *    client is served again.
 *
 * Skipped, with the reason, when `server.ts --help` does not mention
 * `--idle-timeout` and `--max-conns`.
 *
 * @throws {Error} When a connection is closed early, late or uncleanly, or a
 *   well-behaved client fails.
 */
export async function slowloris(
  options: SlowlorisOptions = {},
): Promise<ScenarioResult> {
  const skip = await slowlorisSkipReason();
  if (skip !== undefined) return skippedResult(skip);
  const connections = options.connections ?? 1000;
  const idle = await idleTimeoutPart(connections, options);
  const limited = await maxConnsPart(connections, options);
  return {
    cases: connections * 2,
    bytes: idle.bytes + limited.bytes,
    errors: idle.errors + limited.errors,
    rss: {
      start: idle.rss.start,
      peak: Math.max(idle.rss.peak, limited.rss.peak),
      end: limited.rss.end,
    },
    notes: [...idle.notes, ...limited.notes],
  };
}

interface PartResult {
  bytes: number;
  errors: number;
  rss: RssFigures;
  notes: string[];
}

async function idleTimeoutPart(
  connections: number,
  options: SlowlorisOptions,
): Promise<PartResult> {
  const seconds = options.idleTimeout ?? 2;
  const timeoutMs = seconds * 1000;
  // The server checks for idle connections every timeout/10 (10 ms to 1 s).
  const sweepMs = Math.min(1000, Math.max(10, timeoutMs / 10));
  await using server = await WatchedServer.start([
    "--idle-timeout",
    String(seconds),
  ]);
  const idleSockets = await server.sockets();
  const sampler = await RssSampler.start(server.pid);
  const bystanders = Bystanders.start(server.port, {
    count: 2,
    pauseMs: 10,
    seed: options.seed,
  });
  // Exchanges every timeout/4: never idle long enough to be closed.
  const keeper = Bystanders.start(server.port, {
    count: 1,
    persistent: true,
    pauseMs: timeoutMs / 4,
    seed: (options.seed ?? 1) + 1,
  });
  const keeperStarted = Date.now();
  let slowestConnect = 0;
  const lifetimes: number[] = [];
  const unclean: string[] = [];
  const conns: Deno.Conn[] = [];
  let rss: RssFigures;
  let bytes = 0;
  try {
    const waits: Promise<void>[] = [];
    for (let i = 0; i < connections; i += CONNECT_BATCH) {
      const batch = await Promise.all(
        Array.from(
          { length: Math.min(CONNECT_BATCH, connections - i) },
          async () => {
            const asked = Date.now();
            const conn = await Deno.connect({
              hostname: "127.0.0.1",
              port: server.port,
            });
            const connectedAt = Date.now();
            slowestConnect = Math.max(slowestConnect, connectedAt - asked);
            return { conn, connectedAt };
          },
        ),
      );
      for (const { conn, connectedAt } of batch) {
        conns.push(conn);
        waits.push(
          conn.read(new Uint8Array(1)).then(
            (n) => {
              if (n === null) lifetimes.push(Date.now() - connectedAt);
              else unclean.push(`read ${n} bytes from an idle connection`);
            },
            (err: unknown) => {
              unclean.push(err instanceof Error ? err.message : String(err));
            },
          ),
        );
      }
    }
    await withTimeout(
      Promise.all(waits),
      timeoutMs + 10_000,
      `the server closing ${connections} idle connections`,
      () => conns.forEach(closeQuietly),
    );
    // The active client must outlive the timeout by half again.
    await delay(Math.max(0, keeperStarted + 1.5 * timeoutMs - Date.now()));
    const keeperReport = await keeper.stop();
    const report = await bystanders.stop();
    bytes = keeperReport.bytes + report.bytes;
    if (keeperReport.exchanges < 5) {
      throw new Error(
        `The active client made only ${keeperReport.exchanges} exchanges`,
      );
    }
    rss = await sampler.stop();
  } finally {
    conns.forEach(closeQuietly);
    await keeper.stop().catch(() => {});
    await bystanders.stop().catch(() => {});
    await sampler.stop();
  }
  if (unclean.length > 0) {
    throw new Error(
      `${unclean.length} idle connections did not end with EOF: ${unclean[0]}`,
    );
  }
  const early = lifetimes.filter((ms) => ms < timeoutMs - sweepMs - 50);
  const late = lifetimes.filter((ms) => ms > timeoutMs + 1500);
  if (early.length > 0 || late.length > 0) {
    throw new Error(
      `Idle connections closed off time (timeout ${timeoutMs} ms): ${early.length} early (first after ${
        early[0]
      } ms), ${late.length} late (first after ${late[0]} ms)`,
    );
  }
  await waitUntil(
    () => server.count(/ after the idle timeout: /) === connections,
    5000,
    `${connections} "after the idle timeout" log lines (${
      server.count(/ after the idle timeout: /)
    } so far)`,
  );
  await waitUntil(
    async () => (await server.sockets()) === idleSockets,
    5000,
    "the server to have no client socket left",
  );
  const sorted = lifetimes.toSorted((a, b) => a - b);
  return {
    bytes,
    errors: server.count(/^error from /),
    rss,
    notes: [
      `--idle-timeout ${seconds}: ${connections} idle connections closed after ${
        sorted[0]
      }-${sorted.at(-1)} ms; a client exchanging every ${
        timeoutMs / 4
      } ms stayed open; the slowest connect took ${slowestConnect} ms`,
    ],
  };
}

async function maxConnsPart(
  connections: number,
  options: SlowlorisOptions,
): Promise<PartResult> {
  const maxConns = Math.min(options.maxConns ?? 100, connections);
  await using server = await WatchedServer.start([
    "--max-conns",
    String(maxConns),
  ]);
  const idleSockets = await server.sockets();
  const sampler = await RssSampler.start(server.pid);
  const random = new Random(options.seed ?? 1);
  const admitted: Deno.Conn[] = [];
  const refused: Deno.Conn[] = [];
  let stopped = false;
  let bytes = 0;
  let exchanges = 0;
  let rss: RssFigures;
  let working: Promise<void[]> = Promise.resolve([]);
  const refusals: string[] = [];
  try {
    for (let i = 0; i < maxConns; i++) {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      admitted.push(conn);
      await exchangeChecked(conn, random.bytes(16), `admitted client ${i}`);
    }
    await waitUntil(
      async () => (await server.sockets()) === idleSockets + maxConns,
      5000,
      `the server to hold ${maxConns} connections`,
    );
    // The admitted clients keep exchanging while the rest are turned away.
    working = handled(Promise.all(admitted.map(async (conn, i) => {
      const own = random.fork(i);
      while (!stopped) {
        const payload = own.bytes(own.logInt(1, 4096));
        await withTimeout(
          exchangeChecked(conn, payload, `admitted client ${i}`),
          10_000,
          `admitted client ${i}`,
        );
        bytes += payload.length;
        exchanges++;
      }
    })));
    for (let i = maxConns; i < connections; i += CONNECT_BATCH) {
      const batch = await Promise.all(
        Array.from(
          { length: Math.min(CONNECT_BATCH, connections - i) },
          () => Deno.connect({ hostname: "127.0.0.1", port: server.port }),
        ),
      );
      refused.push(...batch);
      const results = await withTimeout(
        Promise.all(batch.map((conn) =>
          conn.read(new Uint8Array(1)).then(
            (n) => n === null ? "" : `read ${n} bytes`,
            (err: unknown) => err instanceof Error ? err.message : String(err),
          )
        )),
        5000,
        "refused clients to be closed",
        () => batch.forEach(closeQuietly),
      );
      refusals.push(...results.filter((r) => r !== ""));
      batch.forEach(closeQuietly);
    }
    stopped = true;
    await working;
    if (refusals.length > 0) {
      throw new Error(
        `${refusals.length} clients beyond --max-conns were not closed cleanly: ${
          refusals[0]
        }`,
      );
    }
    const refusedLines = server.count(/^refused /);
    await waitUntil(
      () => server.count(/^refused /) === connections - maxConns,
      5000,
      `${connections - maxConns} "refused" log lines (${refusedLines} so far)`,
    );
    // Some admitted clients leave; a newcomer gets in and is served.
    const leaving = admitted.splice(0, 10);
    for (const conn of leaving) {
      await conn.closeWrite();
      if (await conn.read(new Uint8Array(1)) !== null) {
        throw new Error("Bytes after the last reply");
      }
      conn.close();
    }
    await waitUntil(
      async () => (await server.sockets()) === idleSockets + admitted.length,
      5000,
      "the server to free the slots of the clients that left",
    );
    const newcomer = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    admitted.push(newcomer);
    await withTimeout(
      exchangeChecked(newcomer, random.bytes(1000), "newcomer"),
      5000,
      "a newcomer after clients left",
    );
    rss = await sampler.stop();
  } finally {
    stopped = true;
    admitted.forEach(closeQuietly);
    refused.forEach(closeQuietly);
    await working.catch(() => {});
    await sampler.stop();
  }
  return {
    bytes,
    errors: server.count(/^error from /),
    rss,
    notes: [
      `--max-conns ${maxConns}: ${
        connections - maxConns
      } clients beyond it refused with a clean EOF while the ${maxConns} admitted made ${exchanges} checked exchanges`,
    ],
  };
}
