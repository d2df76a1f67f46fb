// Copyright the upcase authors. MIT license.
// Scenario 6: SIGTERM while clients are mid-transfer. Every client that
// finishes sending within the grace period gets its whole reply; the server
// closes the rest when the grace period ends and exits 0.

import { closeQuietly } from "../src/_io.ts";
import { readToEnd, writeAll } from "../tests/_util.ts";
import {
  checkReply,
  delay,
  exchangeChecked,
  handled,
  isPeerGone,
  KiB,
  MiB,
  parseSummary,
  Random,
  type RssFigures,
  RssSampler,
  type ScenarioResult,
  serverHasFlag,
  waitUntil,
  WatchedServer,
  withTimeout,
} from "./_util.ts";

/** Options for {@linkcode shutdownUnderLoad}. */
export interface ShutdownOptions {
  /** Clients mid-transfer when SIGTERM comes. @default {50} */
  clients?: number;
  /**
   * Of them, how many stall (never half-close), so the grace period has to
   * run out. @default {5}
   */
  stalled?: number;
  /** The server's `--grace`, in seconds, when it has the flag. @default {3} */
  grace?: number;
  /**
   * Run stalled clients even when the server has no `--grace` and its grace
   * period is the fixed 10 s.
   *
   * @default {true}
   */
  allowLongGrace?: boolean;
  /** Seed of the payloads and the pacing. @default {1} */
  seed?: number;
}

/** The grace period of a `server.ts` without `--grace`. */
const FIXED_GRACE_SECONDS = 10;

/** What happened to one client. */
interface ClientOutcome {
  /** It half-closed before SIGTERM was sent. */
  finishedBeforeSignal: boolean;
  sent: number;
}

/**
 * Scenario 6. Starts `server.ts`, starts `clients` paced transfers of 256 KiB
 * to 4 MiB (`stalled` of which stop sending after a checked exchange), sends
 * SIGTERM once half of the others have half-closed, and checks: every
 * finishing client gets its whole reply, stalled ones are closed when the
 * grace period ends (not before), new connections are refused, and the
 * server exits 0 within the grace period with a summary counting every
 * client, no errors, and the stalled ones as "cut off at shutdown" (each
 * logged as `closed ... at shutdown, still open when the grace period
 * ended`).
 *
 * @throws {Error} When a reply is cut short or wrong, or the server exits
 *   late, early or with another code.
 */
export async function shutdownUnderLoad(
  options: ShutdownOptions = {},
): Promise<ScenarioResult> {
  const clients = options.clients ?? 50;
  const hasGrace = await serverHasFlag("--grace");
  const graceSeconds = hasGrace ? options.grace ?? 3 : FIXED_GRACE_SECONDS;
  const notes: string[] = [];
  let stalledCount = Math.min(options.stalled ?? 5, clients - 1);
  if (!hasGrace && !(options.allowLongGrace ?? true)) {
    notes.push("no --grace flag: stalled clients left out");
    stalledCount = 0;
  }
  const finishing = clients - stalledCount;
  const random = new Random(options.seed ?? 1);
  await using server = await WatchedServer.start(
    hasGrace ? ["--grace", String(graceSeconds)] : [],
  );
  const sampler = await RssSampler.start(server.pid);
  let signalledAt = Infinity;
  let finishedSending = 0;
  const conns: Deno.Conn[] = [];
  let rss: RssFigures;
  let outcomes: ClientOutcome[] = [];
  let exitedAfter = 0;
  let code: number;
  let stdout: string;
  try {
    for (let i = 0; i < clients; i++) {
      conns.push(
        await Deno.connect({ hostname: "127.0.0.1", port: server.port }),
      );
    }
    const transfers = conns.map((conn, i) => {
      const own = random.fork(i);
      return i < finishing
        ? finishingClient(conn, own, i, () => {
          finishedSending++;
          return Date.now() < signalledAt;
        })
        : stalledClient(conn, own, i, () => signalledAt, graceSeconds);
    });
    const transfersDone = handled(Promise.all(transfers));
    // A client that fails before SIGTERM fails the scenario at once.
    await Promise.race([
      waitUntil(
        () => finishedSending >= Math.ceil(finishing / 2),
        30_000,
        "half of the clients to finish sending",
      ),
      transfersDone,
    ]);
    signalledAt = Date.now();
    server.signal("SIGTERM");
    // Once the server says it is shutting down, its listener is closed. The
    // line comes after the accept queue is drained, from a server busy with
    // 50 transfers: the deadline is a guard, the wait ends with the line.
    await server.waitForLine(/^Shutting down/, 10_000);
    try {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      conn.close();
      throw new Error("A new connection was accepted after SIGTERM");
    } catch (err: unknown) {
      if (!(err instanceof Deno.errors.ConnectionRefused)) throw err;
    }
    outcomes = await withTimeout(
      transfersDone,
      (graceSeconds + 10) * 1000,
      "the transfers after SIGTERM",
      () => conns.forEach(closeQuietly),
    );
    ({ code, stdout } = await withTimeout(
      server.finish(),
      (graceSeconds + 5) * 1000,
      "the server to exit",
    ));
    exitedAfter = Date.now() - signalledAt;
    rss = await sampler.stop();
  } finally {
    conns.forEach(closeQuietly);
    await sampler.stop();
  }
  if (code !== 0) throw new Error(`The server exited with ${code}, want 0`);
  if (exitedAfter > graceSeconds * 1000 + 2000) {
    throw new Error(
      `The server exited ${exitedAfter} ms after SIGTERM; the grace period is ${graceSeconds} s`,
    );
  }
  const summary = parseSummary(stdout);
  if (
    summary.connections !== clients || summary.errors !== 0 ||
    summary.cutOff !== stalledCount
  ) {
    throw new Error(
      `The summary says "${summary.line}", want ${clients} connections, 0 errors, ${stalledCount} cut off at shutdown`,
    );
  }
  // Each stalled client is logged as cut off, and nobody as an error.
  const cutOffLine =
    /^closed 127\.0\.0\.1 at PORT \d+ at shutdown, still open when the grace period ended: /;
  for (const conn of conns.slice(finishing)) {
    const port = (conn.localAddr as Deno.NetAddr).port;
    const lines = server.linesAbout(port);
    if (!lines.some((line) => cutOffLine.test(line))) {
      throw new Error(
        `Stalled client at port ${port} is not logged as cut off at shutdown: ${
          lines.join(" | ") || "no line"
        }`,
      );
    }
  }
  const errorLines = server.log.filter((line) =>
    line.startsWith("error from ")
  );
  if (errorLines.length > 0) {
    throw new Error(
      `${errorLines.length} connections logged as errors: ${errorLines[0]}`,
    );
  }
  const before = outcomes.filter((o) => o.finishedBeforeSignal).length;
  notes.push(
    `SIGTERM with ${
      finishing - before
    } of ${finishing} clients still sending and ${stalledCount} stalled; all ${finishing} got their whole reply, the ${stalledCount} stalled ones were cut off at the end of the grace period (not errors), the server exited 0 after ${exitedAfter} ms (--grace ${graceSeconds})`,
  );
  return {
    cases: clients,
    bytes: outcomes.reduce((sum, o) => sum + o.sent, 0),
    errors: summary.errors,
    rss,
    notes,
  };
}

/**
 * Sends a payload in paced pieces while reading, half-closes, and checks the
 * whole reply. `onHalfClose` says whether that was before SIGTERM.
 */
async function finishingClient(
  conn: Deno.Conn,
  random: Random,
  index: number,
  onHalfClose: () => boolean,
): Promise<ClientOutcome> {
  const payload = random.bytes(random.int(256 * KiB, 4 * MiB));
  const pieces = random.int(10, 40);
  const pauseMs = random.int(5, 40);
  let finishedBeforeSignal = false;
  const send = async () => {
    const size = Math.ceil(payload.length / pieces);
    for (let offset = 0; offset < payload.length; offset += size) {
      await writeAll(conn, payload.subarray(offset, offset + size));
      await delay(pauseMs);
    }
    await conn.closeWrite();
    finishedBeforeSignal = onHalfClose();
  };
  const [reply] = await Promise.all([readToEnd(conn), send()]);
  checkReply(
    reply,
    payload,
    `client ${index} (${payload.length} B, half-closed ${
      finishedBeforeSignal ? "before" : "after"
    } SIGTERM)`,
  );
  return { finishedBeforeSignal, sent: payload.length };
}

/**
 * Makes one checked exchange, then sends nothing more; the server must close
 * it when the grace period ends, not before.
 */
async function stalledClient(
  conn: Deno.Conn,
  random: Random,
  index: number,
  signalledAt: () => number,
  graceSeconds: number,
): Promise<ClientOutcome> {
  const payload = random.bytes(random.int(1, 64 * KiB));
  await exchangeChecked(conn, payload, `stalled client ${index}`);
  try {
    const rest = await readToEnd(conn);
    if (rest.length > 0) {
      throw new Error(`Stalled client ${index} got ${rest.length} extra bytes`);
    }
  } catch (err: unknown) {
    if (!isPeerGone(err)) throw err;
  }
  const after = Date.now() - signalledAt();
  if (after < graceSeconds * 1000 - 100) {
    throw new Error(
      `Stalled client ${index} was closed ${after} ms after SIGTERM, before the ${graceSeconds} s grace period ended`,
    );
  }
  return { finishedBeforeSignal: false, sent: payload.length };
}
