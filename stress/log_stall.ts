// Copyright the upcase authors. MIT license.
// Scenario 8, a regression test: server.ts with its stdout piped to a reader
// that never reads. Once the pipe is full its log lines wait in a bounded
// queue (or are dropped); the server must go on serving every client exactly
// and still exit 0 soon after SIGTERM. It used to freeze on the first log
// write the pipe did not take.

import { closeQuietly } from "../src/_io.ts";
import { denoRun } from "../tests/_util.ts";
import {
  checkedRequest,
  delay,
  formatSize,
  KiB,
  killOnInterrupt,
  killQuietly,
  Random,
  type RssFigures,
  RssSampler,
  type ScenarioResult,
  withTimeout,
} from "./_util.ts";

/** Options for {@linkcode logStall}. */
export interface LogStallOptions {
  /** Clients one after another. @default {3000} */
  sequential?: number;
  /** Then clients all at once. @default {200} */
  concurrent?: number;
  /** How soon after SIGTERM the server must have exited, in ms. @default {5000} */
  exitWithin?: number;
  /** Seed of the payloads. @default {1} */
  seed?: number;
}

/** How long one client may take: a frozen server fails at the first. */
const CLIENT_TIMEOUT_MS = 10_000;
/** Tries at a free port, in case another process takes the one picked. */
const START_ATTEMPTS = 3;

/** A server child whose stdout nobody reads, and its port. */
interface UnreadServer {
  child: Deno.ChildProcess;
  port: number;
  /** Its stderr, for a failure message. */
  stderr: Promise<string>;
}

/**
 * Starts `server.ts` on a free port with stdout piped and never read. With
 * its "Accepting connections" line unread, the port is picked here, and
 * the server is ready once a connection succeeds.
 */
async function startUnreadServer(): Promise<UnreadServer> {
  for (let attempt = 1;; attempt++) {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = probe.addr.port;
    probe.close();
    const child = new Deno.Command(Deno.execPath(), {
      args: denoRun("server.ts", `127.0.0.1:${port}`, [
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
      ]),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const stderr = new Response(child.stderr).text();
    let exited = false;
    const status = child.status.then((s) => {
      exited = true;
      return s;
    });
    const started = Date.now();
    while (!exited && Date.now() - started < 15_000) {
      try {
        closeQuietly(await Deno.connect({ hostname: "127.0.0.1", port }));
        return { child, port, stderr };
      } catch (err: unknown) {
        if (!(err instanceof Deno.errors.ConnectionRefused)) throw err;
      }
      await delay(20);
    }
    killQuietly(child);
    const { code } = await status;
    await child.stdout.cancel();
    const message = (await stderr).trim();
    if (code !== 3 || attempt === START_ATTEMPTS) {
      throw new Error(
        `server.ts did not start on port ${port} (exit ${code}): ${message}`,
      );
    }
    // Exit 3: the port was taken meanwhile; pick another.
  }
}

/**
 * Scenario 8. Starts `server.ts` with stdout piped and never read, makes
 * `sequential` round trips one after another and then `concurrent` at
 * once, each of 1 B to 1 KiB and checked byte for byte within 10 s, then
 * sends SIGTERM: the server must exit 0 within `exitWithin`. Afterwards the
 * pipe is read once, to show the log did stall: it holds only the first part
 * of the lines.
 *
 * @throws {Error} When a client gets a wrong reply or none, the server does
 *   not exit in time or exits with another code, or the log never stalled
 *   (then nothing was tested).
 */
export async function logStall(
  options: LogStallOptions = {},
): Promise<ScenarioResult> {
  const sequential = options.sequential ?? 3000;
  const concurrent = options.concurrent ?? 200;
  const exitWithin = options.exitWithin ?? 5000;
  const random = new Random(options.seed ?? 1);
  const { child, port, stderr } = await startUnreadServer();
  using _tracked = killOnInterrupt(child);
  let bytes = 0;
  let rss: RssFigures;
  let exitedAfter: number;
  let code: number;
  const sampler = await RssSampler.start(child.pid);
  const client = async (own: Random, what: string) => {
    const payload = own.bytes(own.logInt(1, KiB));
    await checkedRequest(port, payload, what, CLIENT_TIMEOUT_MS);
    bytes += payload.length;
  };
  try {
    for (let i = 0; i < sequential; i++) {
      await client(random, `sequential client ${i} of ${sequential}`);
    }
    await Promise.all(
      Array.from(
        { length: concurrent },
        (_, i) =>
          client(random.fork(i), `concurrent client ${i} of ${concurrent}`),
      ),
    );
    rss = await sampler.stop();
    const signalled = Date.now();
    child.kill("SIGTERM");
    ({ code } = await withTimeout(
      child.status,
      exitWithin,
      "the server's exit after SIGTERM",
    ));
    exitedAfter = Date.now() - signalled;
  } catch (err: unknown) {
    killQuietly(child);
    await child.status;
    await child.stdout.cancel();
    const message = (await stderr).trim();
    throw message === "" || !(err instanceof Error)
      ? err
      : new Error(`${err.message}; server stderr: ${message}`);
  } finally {
    await sampler.stop();
  }
  if (code !== 0) {
    await child.stdout.cancel();
    throw new Error(
      `The server exited with ${code}, want 0: ${(await stderr).trim()}`,
    );
  }
  await stderr;
  // The process is gone: what the pipe holds is all the log that got out.
  const log = await new Response(child.stdout).text();
  const lines = log.split("\n").length - 1;
  // Each client (and the readiness probe) makes a "received" and a "closed" line.
  const wanted = 1 + 2 * (sequential + concurrent + 1);
  if (lines >= wanted) {
    throw new Error(
      `The log never stalled: the pipe took all ${lines} lines (${
        formatSize(log.length)
      }); use more clients`,
    );
  }
  return {
    cases: sequential + concurrent,
    bytes,
    // Only the lines that got out can tell.
    errors: log.split("\n").filter((line) => line.startsWith("error from "))
      .length,
    rss,
    notes: [
      `stdout piped and never read: the pipe took the first ${lines} of about ${wanted} log lines (${
        formatSize(log.length)
      }), then the log stalled (errors: counted in those lines only); ${sequential} sequential and ${concurrent} concurrent clients all got exact replies; exit 0 ${exitedAfter} ms after SIGTERM`,
    ],
  };
}
