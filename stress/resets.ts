// Copyright the upcase authors. MIT license.
// Scenario 2: clients that reset the connection (RST) at random points
// mid-stream. Afterwards the server still serves and has no connection open.

import { serve, type ServerEvent } from "../mod.ts";
import { closeQuietly } from "../src/_io.ts";
import { readExactly, writeAll } from "../tests/_util.ts";
import {
  Bystanders,
  checkReply,
  delay,
  exchangeChecked,
  handled,
  isClosedHere,
  KiB,
  Random,
  type ScenarioResult,
  waitUntil,
  withTimeout,
} from "./_util.ts";

/** Options for {@linkcode abruptResets}. */
export interface ResetOptions {
  /** Seed of the reset points and payloads. */
  seed: number;
  /** Clients that reset. @default {1000} */
  clients?: number;
  /** Of them, how many at once. @default {50} */
  concurrency?: number;
}

/** Where in the exchange a client resets. */
export type ResetPoint =
  /** After a checked exchange and part of the next reply. */
  | "mid-exchange"
  /** While still writing a large payload, reading nothing. */
  | "mid-write"
  /** After half-closing, with part of the reply read. */
  | "after-half-close";

/** How long one resetting client may take. */
const CLIENT_TIMEOUT_MS = 15_000;
/**
 * A mid-write client writes at most this many 64 KiB blocks (128 MiB): more
 * than the two sockets' buffers can hold between them, so the writes block.
 */
const MID_WRITE_BLOCKS = 2048;

/**
 * One client that connects, sends, and closes with reply bytes still unread
 * in its receive buffer, so the kernel sends RST instead of FIN. Reading one
 * byte of a reply first makes sure such bytes are there: the rest of the
 * segment that byte came in is still unread.
 *
 * @returns The bytes it sent.
 */
export async function resetClient(
  port: number,
  point: ResetPoint,
  random: Random,
): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let sent = 0;
  try {
    await withTimeout(
      (async () => {
        if (point === "mid-exchange") {
          const first = random.bytes(random.logInt(1, 64 * KiB));
          await exchangeChecked(conn, first, "before the reset");
          const second = random.bytes(random.logInt(2, 64 * KiB));
          await writeAll(conn, second);
          checkReply(
            await readExactly(conn, 1),
            second.subarray(0, 1),
            "reset",
          );
          sent = first.length + second.length;
        } else if (point === "mid-write") {
          // More than the socket buffers can hold (loopback autotunes each
          // receive buffer up to tcp_rmem's maximum, 32 MiB here): the
          // writes block for good.
          const block = random.bytes(64 * KiB);
          const writing = handled((async () => {
            try {
              for (let i = 0; i < MID_WRITE_BLOCKS; i++) {
                await writeAll(conn, block);
                sent += block.length;
              }
            } catch (err: unknown) {
              if (!isClosedHere(err)) throw err; // closed below: expected
            }
          })());
          checkReply(await readExactly(conn, 1), block.subarray(0, 1), "reset");
          await delay(random.int(0, 20));
          closeQuietly(conn);
          await writing;
          if (sent >= MID_WRITE_BLOCKS * block.length) {
            throw new Error("128 MiB went through a client that reads nothing");
          }
        } else {
          const payload = random.bytes(random.logInt(2, 256 * KiB));
          await writeAll(conn, payload);
          await conn.closeWrite();
          checkReply(
            await readExactly(conn, 1),
            payload.subarray(0, 1),
            "reset",
          );
          sent = payload.length;
        }
      })(),
      CLIENT_TIMEOUT_MS,
      `client resetting ${point}`,
      () => closeQuietly(conn),
    );
  } finally {
    closeQuietly(conn);
  }
  return sent;
}

/**
 * Scenario 2. `clients` clients reset at random points, `concurrency` at a
 * time, against an in-process server while well-behaved clients check their
 * replies; then the server must have no connection open, have logged a close
 * for every client, and still answer.
 *
 * @throws {Error} When a well-behaved client fails or a connection stays open.
 */
export async function abruptResets(
  options: ResetOptions,
): Promise<ScenarioResult> {
  const clients = options.clients ?? 1000;
  const concurrency = options.concurrency ?? 50;
  const random = new Random(options.seed);
  const closes: Extract<ServerEvent, { type: "close" }>[] = [];
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    onEvent: (event) => {
      if (event.type === "close") closes.push(event);
    },
  });
  const port = server.addr.port;
  const startRss = Deno.memoryUsage().rss;
  let peakRss = startRss;
  const bystanders = Bystanders.start(port, {
    count: 2,
    seed: options.seed,
  });
  const points: ResetPoint[] = [
    "mid-exchange",
    "mid-write",
    "after-half-close",
  ];
  const perPoint = new Map(points.map((p) => [p, 0]));
  let bytes = 0;
  let exchanges = 0;
  let next = 0;
  try {
    const worker = async () => {
      while (next < clients) {
        const i = next++;
        const caseRandom = random.fork(i);
        const point = caseRandom.pick(points);
        perPoint.set(point, perPoint.get(point)! + 1);
        const sent = await resetClient(port, point, caseRandom);
        bytes += sent;
        peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    // Stop the bystanders even when a resetting client failed; their own
    // failure, if any, is reported first.
    const report = await bystanders.stop();
    bytes += report.bytes;
    exchanges = report.exchanges;
  }
  await waitUntil(
    () => server.stats.active === 0,
    5000,
    `no connection open on the server (${server.stats.active} still are)`,
  );
  const reply = await withTimeout(
    (async () => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await exchangeChecked(
        conn,
        new TextEncoder().encode("still there?"),
        "after",
      );
      await conn.closeWrite();
      return await conn.read(new Uint8Array(1));
    })(),
    5000,
    "a round trip after the resets",
  );
  if (reply !== null) throw new Error("Bytes after the reply's end");
  await waitUntil(() => server.stats.active === 0, 5000, "the last close");
  const stats = server.stats;
  if (stats.accepted !== closes.length) {
    throw new Error(
      `${stats.accepted} connections accepted but ${closes.length} closes reported`,
    );
  }
  if (stats.accepted < clients + 1) {
    throw new Error(
      `Only ${stats.accepted} of ${clients + 1} clients accepted`,
    );
  }
  const resets = closes.filter((c) => c.error !== undefined).length;
  return {
    cases: clients,
    bytes,
    errors: stats.errors,
    rss: {
      start: startRss,
      peak: peakRss,
      end: Deno.memoryUsage().rss,
      inProcess: true,
    },
    notes: [
      `reset points: ${
        points.map((p) => `${perPoint.get(p)} ${p}`).join(", ")
      }; the server logged ${resets} as errors, the rest as clean closes (a Deno client's close() sends FIN before the RST, so a server waiting to read sees EOF)`,
      `${exchanges} bystander round trips checked meanwhile`,
    ],
  };
}
