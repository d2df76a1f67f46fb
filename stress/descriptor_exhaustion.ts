// Copyright the upcase authors. MIT license.
// Scenario 5: the server runs out of file descriptors. It must neither exit
// nor spin, must say "accept failed: ...; retrying", keep serving the
// connections it has, and serve new ones once the flood is gone.

import { closeQuietly } from "../src/_io.ts";
import { utf8 } from "../tests/_util.ts";
import {
  Bystanders,
  delay,
  exchangeChecked,
  readOpenFileLimit,
  type RssFigures,
  RssSampler,
  type ScenarioResult,
  skippedResult,
  waitUntil,
  WatchedServer,
  withTimeout,
} from "./_util.ts";

/** Options for {@linkcode descriptorExhaustion}. */
export interface DescriptorExhaustionOptions {
  /** The server's open-file limit (soft and hard). @default {256} */
  limit?: number;
  /**
   * Connections in the flood; more than `limit`. At most about `limit` + 480:
   * beyond what the server holds, a connection waits in the kernel's accept
   * queue, which the listen backlog (511) bounds; past it, connects hang.
   *
   * @default {limit * 2}
   */
  flood?: number;
  /** How long the flood is held, in seconds. @default {3} */
  holdSeconds?: number;
  /**
   * The most CPU the server may use while the flood is held, as a share of
   * one core (a retry loop without back-off would use all of it).
   *
   * @default {0.25}
   */
  maxCpuShare?: number;
  /** Seed of the payloads. @default {1} */
  seed?: number;
}

/**
 * Why {@linkcode descriptorExhaustion} cannot run here (it needs `prlimit`
 * from util-linux and /proc), or undefined when it can.
 */
export async function descriptorExhaustionSkipReason(): Promise<
  string | undefined
> {
  try {
    const { success } = await new Deno.Command("prlimit", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success ? undefined : "prlimit --version failed";
  } catch (err: unknown) {
    if (err instanceof Deno.errors.NotFound) {
      return "prlimit (util-linux) is not installed";
    }
    throw err;
  }
}

/** Connections the kernel queues for a listener with Deno's backlog of 511, less a margin. */
const MAX_QUEUED = 480;

/**
 * The most "accept failed" lines a second the server may log while out of
 * descriptors: it should back off between retries, not flood its log.
 */
const MAX_ACCEPT_FAILURE_LINES_PER_SECOND = 50;

/** Lowers the open-file limit of running process `pid` with `prlimit`. */
async function setOpenFileLimit(pid: number, limit: number): Promise<void> {
  const { success, stderr } = await new Deno.Command("prlimit", {
    args: ["--pid", String(pid), `--nofile=${limit}:${limit}`],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!success) {
    throw new Error(`prlimit failed: ${new TextDecoder().decode(stderr)}`);
  }
}

/**
 * Scenario 5. Starts `server.ts`, lowers its open-file limit to `limit` with
 * `prlimit --pid`, connects a few well-behaved clients that keep exchanging
 * on their connections, then opens `flood` idle connections and holds them
 * `holdSeconds`. Meanwhile the server must log "accept failed" (at most
 * 50 lines a second) and use little CPU; after the flood closes it must
 * serve a new client and hold no socket but its listener.
 *
 * Skipped, with the reason, without `prlimit`.
 *
 * @throws {Error} When the server exits, spins, stays silent, stops
 *   serving, or keeps sockets after the flood.
 */
export async function descriptorExhaustion(
  options: DescriptorExhaustionOptions = {},
): Promise<ScenarioResult> {
  const skip = await descriptorExhaustionSkipReason();
  if (skip !== undefined) return skippedResult(skip);
  const limit = options.limit ?? 256;
  const flood = options.flood ?? limit * 2;
  if (flood <= limit || flood > limit + MAX_QUEUED) {
    throw new Error(
      `Invalid flood: ${flood} is not from ${limit + 1} to ${
        limit + MAX_QUEUED
      } (limit + the accept queue)`,
    );
  }
  const holdMs = (options.holdSeconds ?? 3) * 1000;
  const maxCpuShare = options.maxCpuShare ?? 0.25;
  await using server = await WatchedServer.start();
  await setOpenFileLimit(server.pid, limit);
  const actualLimit = await readOpenFileLimit(server.pid);
  if (actualLimit !== limit) {
    throw new Error(
      `The server's open-file limit is ${actualLimit}, not ${limit}`,
    );
  }
  const idleSockets = await server.sockets();
  const sampler = await RssSampler.start(server.pid);
  // Connected before the flood: they must keep working through it.
  const bystanders = Bystanders.start(server.port, {
    count: 4,
    persistent: true,
    pauseMs: 20,
    maxSize: 16 * 1024,
    seed: options.seed,
  });
  await waitUntil(
    async () => (await server.sockets()) === idleSockets + 4,
    5000,
    "the well-behaved clients to connect",
  );
  const conns: Deno.Conn[] = [];
  let cpuShare = 0;
  let acceptFailures = 0;
  let rss: RssFigures;
  let bytes = 0;
  try {
    const floodStarted = Date.now();
    // Connect in batches; beyond the limit the kernel still completes the
    // handshakes into the listen backlog, which the server cannot drain.
    for (let i = 0; i < flood; i += 50) {
      const batch = await withTimeout(
        Promise.all(
          Array.from(
            { length: Math.min(50, flood - i) },
            () => Deno.connect({ hostname: "127.0.0.1", port: server.port }),
          ),
        ),
        10_000,
        `flood connections ${i}-${i + 49}`,
      );
      conns.push(...batch);
    }
    await server.waitForLine(/^accept failed: .*; retrying$/, 5000);
    const cpuBefore = await server.cpuMs();
    const heldFrom = Date.now();
    await delay(holdMs);
    cpuShare = (await server.cpuMs() - cpuBefore) / (Date.now() - heldFrom);
    if (server.exitCode !== undefined) {
      throw new Error(`The server exited with ${server.exitCode} in the flood`);
    }
    if (cpuShare > maxCpuShare) {
      throw new Error(
        `The server used ${
          Math.round(cpuShare * 100)
        }% of a core while out of descriptors (at most ${
          Math.round(maxCpuShare * 100)
        }%): it spins`,
      );
    }
    acceptFailures = server.count(/^accept failed: /);
    const perSecond = acceptFailures / ((Date.now() - floodStarted) / 1000);
    if (perSecond > MAX_ACCEPT_FAILURE_LINES_PER_SECOND) {
      throw new Error(
        `The server logged ${acceptFailures} "accept failed" lines, ${
          Math.round(perSecond)
        } a second (at most ${MAX_ACCEPT_FAILURE_LINES_PER_SECOND}): it retries without backing off`,
      );
    }
    // The flood ends; the server must recover.
    conns.forEach(closeQuietly);
    conns.length = 0;
    bytes += (await bystanders.stop()).bytes;
    const message = utf8("served again after the flood");
    await withTimeout(
      (async () => {
        using conn = await Deno.connect({
          hostname: "127.0.0.1",
          port: server.port,
        });
        await exchangeChecked(conn, message, "a client after the flood");
      })(),
      15_000,
      "a client after the flood",
    );
    bytes += message.length;
    await waitUntil(
      async () => (await server.sockets()) === idleSockets,
      10_000,
      "the server to close every flood connection",
    );
    rss = await sampler.stop();
  } finally {
    conns.forEach(closeQuietly);
    await bystanders.stop().catch(() => {});
    await sampler.stop();
  }
  if (server.exitCode !== undefined) {
    throw new Error(`The server exited with ${server.exitCode}`);
  }
  return {
    cases: flood,
    bytes,
    errors: server.count(/^error from /),
    rss,
    notes: [
      `open files limited to ${limit}: ${flood} connections flooded in, the server logged ${acceptFailures} "accept failed" lines and used ${
        Math.round(cpuShare * 100)
      }% of a core while they were held ${holdMs / 1000} s, then recovered`,
    ],
  };
}
