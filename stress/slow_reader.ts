// Copyright the upcase authors. MIT license.
// Scenario 3: a client that sends without ever reading. TCP flow control must
// hold it back: the server's memory stays bounded, others are still served,
// and closing the client frees its connection.

import { closeQuietly } from "../src/_io.ts";
import {
  Bystanders,
  formatSize,
  handled,
  isClosedHere,
  MiB,
  Random,
  type RssFigures,
  RssSampler,
  type ScenarioResult,
  waitUntil,
  WatchedServer,
  withTimeout,
} from "./_util.ts";

/** Options for {@linkcode slowReader}. */
export interface SlowReaderOptions {
  /** What the client tries to send. @default {256 MiB} */
  target?: number;
  /** How long it keeps trying, in seconds. @default {10} */
  seconds?: number;
  /** After this long without progress, in ms, its writes count as blocked. @default {2000} */
  stallMs?: number;
  /** How much the server's RSS may grow meanwhile, in bytes. @default {64 MiB} */
  maxGrowth?: number;
  /** Seed of the payloads. @default {1} */
  seed?: number;
}

/**
 * Scenario 3. Starts `server.ts`, has one client write up to `target` bytes
 * without reading a byte until its writes block (or `seconds` pass), while
 * well-behaved clients check their replies and the server's RSS is sampled;
 * then closes the client and waits for the server to log the close.
 *
 * @throws {Error} When RSS grows more than `maxGrowth`, the server stops
 *   serving others, or the closed connection is not freed.
 */
export async function slowReader(
  options: SlowReaderOptions = {},
): Promise<ScenarioResult> {
  const target = options.target ?? 256 * MiB;
  const seconds = options.seconds ?? 10;
  const stallMs = options.stallMs ?? 2000;
  const maxGrowth = options.maxGrowth ?? 64 * MiB;
  await using server = await WatchedServer.start();
  const idleSockets = await server.sockets();
  const sampler = await RssSampler.start(server.pid);
  const bystanders = Bystanders.start(server.port, {
    count: 2,
    seed: options.seed ?? 1,
    pauseMs: 5,
  });
  const block = new Random(options.seed ?? 1).bytes(MiB);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const localPort = (conn.localAddr as Deno.NetAddr).port;
  let pushed = 0;
  let lastProgress = Date.now();
  let blocked = false;
  let otherBytes = 0;
  let rss: RssFigures;
  try {
    const writing = handled((async () => {
      try {
        while (pushed < target) {
          const offset = pushed % MiB;
          const end = Math.min(MiB, offset + target - pushed);
          pushed += await conn.write(block.subarray(offset, end));
          lastProgress = Date.now();
        }
      } catch (err: unknown) {
        if (!isClosedHere(err)) throw err; // closed below, mid-write
      }
    })());
    const started = Date.now();
    await waitUntil(
      () => {
        blocked = Date.now() - lastProgress >= stallMs;
        return blocked || pushed >= target ||
          Date.now() - started >= seconds * 1000;
      },
      seconds * 1000 + 5000,
      "the slow reader to stop",
    );
    // The server must still serve while the slow reader holds its buffers.
    const report = await bystanders.stop();
    otherBytes = report.bytes;
    const sockets = await server.sockets();
    if (sockets !== idleSockets + 1) {
      throw new Error(
        `The server has ${sockets} sockets open, want ${
          idleSockets + 1
        } (listener and the slow reader)`,
      );
    }
    closeQuietly(conn);
    await withTimeout(writing, 5000, "the slow reader's last write");
    rss = await sampler.stop();
  } finally {
    closeQuietly(conn);
    await bystanders.stop().catch(() => {});
    await sampler.stop();
  }
  // The close is logged (as an error: the reply was cut off) and freed.
  await server.waitForLine(
    new RegExp(`^(closed|error from) 127\\.0\\.0\\.1 at PORT ${localPort}\\b`),
    5000,
  );
  await waitUntil(
    async () => (await server.sockets()) === idleSockets,
    5000,
    "the server to close the slow reader's socket",
  );
  if (rss.peak - rss.start > maxGrowth) {
    throw new Error(
      `Server RSS grew by ${formatSize(rss.peak - rss.start)} (from ${
        formatSize(rss.start)
      } to ${formatSize(rss.peak)}), more than ${formatSize(maxGrowth)}`,
    );
  }
  if (pushed >= target) {
    throw new Error(
      `All ${formatSize(target)} went to a server whose client reads nothing`,
    );
  }
  return {
    cases: 1,
    bytes: pushed + otherBytes,
    errors: server.count(/^error from /),
    rss,
    notes: [
      `the slow reader pushed ${formatSize(pushed)} of ${
        formatSize(target)
      } before ${
        blocked
          ? `its writes blocked for ${stallMs / 1000} s`
          : `${seconds} s passed`
      }; server RSS grew ${formatSize(Math.max(0, rss.peak - rss.start))}`,
      `well-behaved clients sent ${formatSize(otherBytes)} meanwhile`,
    ],
  };
}
