// Copyright the upcase authors. MIT license.
// Scenario 7: a soak. Mixed load (round trips, streams, resets, idle clients)
// for a bounded time; the server's memory must level off, and every
// well-behaved client must get its exact bytes.

import { exchange } from "../mod.ts";
import { closeQuietly } from "../src/_io.ts";
import {
  concat,
  expectedUpper,
  firstDifference,
  writeAll,
} from "../tests/_util.ts";
import { resetClient, type ResetPoint } from "./resets.ts";
import {
  checkReply,
  delay,
  exchangeChecked,
  formatSize,
  KiB,
  MiB,
  parseSummary,
  Random,
  RssSampler,
  type ScenarioResult,
  WatchedServer,
  withTimeout,
} from "./_util.ts";

/** Options for {@linkcode soak}. */
export interface SoakOptions {
  /** How long the load runs, in seconds. @default {60} */
  seconds?: number;
  /** Seed of the payloads and the mix. @default {1} */
  seed?: number;
  /**
   * How much the server's RSS may grow from a third of the way in to the
   * end, as a share of the RSS at a third, plus {@linkcode SoakOptions.rssSlack}.
   *
   * @default {0.15}
   */
  rssTolerance?: number;
  /** Growth allowed on top of the share, in bytes. @default {12 MiB} */
  rssSlack?: number;
}

/** How long one client operation may take before the soak fails. */
const OPERATION_TIMEOUT_MS = 30_000;

interface Tally {
  connections: number;
  bytes: number;
  roundTrips: number;
  streams: number;
  resets: number;
  idle: number;
}

/**
 * Scenario 7. Runs `seconds` of mixed load against `server.ts`: 4 clients
 * doing round trips of up to 16 KiB, 2 streaming 1-8 MiB, 1 resetting at
 * random points, and batches of 20 clients that sit idle for 0.5-3 s before
 * their exchange. Then SIGTERM: the server must exit 0 with a summary that
 * counts every connection, and its RSS at the end must be within the
 * tolerance of its RSS a third of the way in.
 *
 * @throws {Error} At the first wrong reply, or when the server's memory
 *   keeps growing or its summary disagrees with the clients.
 */
export async function soak(options: SoakOptions = {}): Promise<ScenarioResult> {
  const seconds = options.seconds ?? 60;
  const tolerance = options.rssTolerance ?? 0.15;
  const slack = options.rssSlack ?? 12 * MiB;
  const random = new Random(options.seed ?? 1);
  await using server = await WatchedServer.start();
  const port = server.port;
  const sampler = await RssSampler.start(server.pid, 500);
  const started = Date.now();
  const end = started + seconds * 1000;
  const tally: Tally = {
    connections: 0,
    bytes: 0,
    roundTrips: 0,
    streams: 0,
    resets: 0,
    idle: 0,
  };
  let failed = false;
  const loop = (fn: (random: Random) => Promise<void>, index: number) => {
    const own = random.fork(index);
    return (async () => {
      try {
        while (!failed && Date.now() < end) await fn(own);
      } catch (err: unknown) {
        failed = true;
        throw err;
      }
    })();
  };
  const workers = [
    ...[0, 1, 2, 3].map((i) => loop((r) => roundTrip(server, r, tally), i)),
    ...[4, 5].map((i) => loop((r) => stream(port, r, tally), i)),
    loop(async (r) => {
      const point = r.pick<ResetPoint>(
        ["mid-exchange", "mid-write", "after-half-close"],
      );
      const sent = await resetClient(port, point, r);
      tally.bytes += sent;
      tally.connections++;
      tally.resets++;
      await delay(20);
    }, 6),
    loop((r) => idleBatch(port, r, tally), 7),
  ];
  const settled = await Promise.allSettled(workers);
  const rss = await sampler.stop();
  for (const result of settled) {
    if (result.status === "rejected") throw result.reason;
  }
  const { code, stdout } = await server.stop("SIGTERM");
  if (code !== 0) throw new Error(`The server exited with ${code}, want 0`);
  const summary = parseSummary(stdout);
  if (summary.connections !== tally.connections) {
    throw new Error(
      `The server served ${summary.connections} connections; the clients made ${tally.connections}`,
    );
  }
  // Compare the RSS a third of the way in with the RSS at the end.
  const third = started + (seconds * 1000) / 3;
  const atThird = sampler.samples.find((s) => s.at >= third)?.rss ?? rss.start;
  const limit = atThird * (1 + tolerance) + slack;
  if (rss.end > limit) {
    throw new Error(
      `Server RSS kept growing: ${formatSize(atThird)} at ${
        Math.round(seconds / 3)
      } s, ${formatSize(rss.end)} at the end (limit ${formatSize(limit)})`,
    );
  }
  return {
    cases: tally.connections,
    bytes: tally.bytes,
    errors: summary.errors,
    rss,
    notes: [
      `soak ${seconds} s: ${tally.roundTrips} round trips, ${tally.streams} streams, ${tally.resets} resets, ${tally.idle} idle clients; server RSS ${
        formatSize(rss.start)
      } at start, ${formatSize(atThird)} at ${Math.round(seconds / 3)} s, ${
        formatSize(rss.end)
      } at the end`,
    ],
  };
}

async function roundTrip(
  server: WatchedServer,
  random: Random,
  tally: Tally,
) {
  const payload = random.bytes(random.logInt(1, 16 * KiB) - 1);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  tally.connections++;
  const localPort = (conn.localAddr as Deno.NetAddr).port;
  const what =
    `round trip ${tally.roundTrips} (${payload.length} B from port ${localPort})`;
  const chunks: Uint8Array[] = [];
  try {
    await withTimeout(
      exchange(conn, [payload], (chunk) => {
        chunks.push(chunk.slice());
      }),
      OPERATION_TIMEOUT_MS,
      what,
      () => closeQuietly(conn),
    ).catch((err: unknown) => {
      throw new Error(
        `${err instanceof Error ? err.message : err}; server log: ${
          server.linesAbout(localPort).join(" | ") || "nothing"
        }`,
      );
    });
  } finally {
    closeQuietly(conn);
  }
  checkReply(concat(chunks), payload, what);
  tally.roundTrips++;
  tally.bytes += payload.length;
}

/** Streams 1-8 MiB, checking the reply as it comes without keeping it. */
async function stream(port: number, random: Random, tally: Tally) {
  const payload = random.bytes(random.int(MiB, 8 * MiB));
  const expected = expectedUpper(payload);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  tally.connections++;
  const what = `stream ${tally.streams} (${payload.length} B)`;
  try {
    await withTimeout(
      Promise.all([
        (async () => {
          for (let i = 0; i < payload.length; i += 64 * KiB) {
            await writeAll(conn, payload.subarray(i, i + 64 * KiB));
          }
          await conn.closeWrite();
        })(),
        (async () => {
          const buf = new Uint8Array(64 * KiB);
          let received = 0;
          while (true) {
            const n = await conn.read(buf);
            if (n === null) break;
            const at = firstDifference(
              buf.subarray(0, n),
              expected.subarray(received, received + n),
            );
            if (at !== -1) {
              throw new Error(
                `${what}: reply differs at byte ${received + at}`,
              );
            }
            received += n;
          }
          if (received !== payload.length) {
            throw new Error(`${what}: reply has ${received} B`);
          }
        })(),
      ]),
      OPERATION_TIMEOUT_MS,
      what,
      () => closeQuietly(conn),
    );
  } finally {
    closeQuietly(conn);
  }
  tally.streams++;
  tally.bytes += payload.length;
}

/** 20 clients connect, sit idle 0.5-3 s, then each makes one exchange. */
async function idleBatch(port: number, random: Random, tally: Tally) {
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 20; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      tally.connections++;
    }
    await delay(random.int(500, 3000));
    await withTimeout(
      Promise.all(conns.map(async (conn, i) => {
        const payload = random.bytes(random.int(1, 1024));
        await exchangeChecked(conn, payload, `idle client ${tally.idle + i}`);
        await conn.closeWrite();
        if (await conn.read(new Uint8Array(1)) !== null) {
          throw new Error("Bytes after the reply");
        }
        tally.bytes += payload.length;
      })),
      OPERATION_TIMEOUT_MS,
      "idle clients",
      () => conns.forEach(closeQuietly),
    );
    tally.idle += conns.length;
  } finally {
    conns.forEach(closeQuietly);
  }
}
