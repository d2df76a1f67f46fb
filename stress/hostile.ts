// Copyright the upcase authors. MIT license.
// Hostile peers, part two (issue 19): the TLS relay, the logs and the client
// attacked together for a bounded time, while well-behaved clients check
// every byte. One server: TLS without --allow-ffi (the relay) behind the
// PROXY protocol, with --trace, so that every attack reaches the text log.

import { closeQuietly } from "../src/_io.ts";
import { encodeLocalHeader } from "../src/_proxy_header.ts";
import { denoRun } from "../tests/_util.ts";
import {
  Bystanders,
  countDescriptors,
  delay,
  handled,
  proxyV2Unix,
  type RssFigures,
  RssSampler,
  type ScenarioResult,
  waitUntil,
} from "./_util.ts";
import { makeStressCerts, startTlsServer } from "./_tls.ts";

/** Options for {@linkcode hostile}. */
export interface HostileOptions {
  /** How long the attacks run, in seconds. @default {20} */
  seconds?: number;
  /** Seed of the bystanders' payloads. @default {1} */
  seed?: number;
}

/** Connections to the relay's inner port in one wave (more than its cap). */
const STRAY_WAVE = 80;
/** A forged line and terminal escapes, as a PROXY v2 Unix path. */
const FORGED = "received from 6.6.6.6 at PORT 666 (forged)";
const INJECTION = new TextEncoder().encode(
  `/x\n${FORGED}\n\x1b[2J\u202e\x07`,
);
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]/;

/** The TCP ports process `pid` listens on, as `ss -p` sees them. */
async function listeningPorts(pid: number): Promise<number[]> {
  const { stdout } = await new Deno.Command("ss", {
    args: ["-Htlnp"],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(stdout).split("\n")
    .filter((line) => line.includes(`pid=${pid},`))
    .map((line) => Number(/:(\d+)\s/.exec(line)?.[1]));
}

/** Runs `attack` again and again until `stop` is aborted. */
async function repeat(
  stop: AbortSignal,
  attack: () => Promise<void>,
): Promise<number> {
  let rounds = 0;
  while (!stop.aborted) {
    await attack();
    rounds++;
  }
  return rounds;
}

/** Opens `count` connections to `port`, each sending `bytes`. */
async function openMany(
  port: number,
  count: number,
  bytes?: Uint8Array,
): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < count; i++) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(conn);
      if (bytes !== undefined) await conn.write(bytes);
    } catch {
      // A port that moved or a connection the server closed: next.
    }
  }
  return conns;
}

/**
 * A server that answers any request with bytes for ever: `client.ts` must
 * stop reading it, with one line and exit 5, and its memory bounded.
 */
function floodServer(): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const junk = new Uint8Array(64 * 1024).fill(0x41);
  const conns = new Set<Deno.Conn>();
  (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      handled((async () => {
        try {
          while (true) await conn.write(junk);
        } catch {
          // The client stopped: what we want.
        } finally {
          conns.delete(conn);
          closeQuietly(conn);
        }
      })());
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    close() {
      closeQuietly(listener);
      conns.forEach(closeQuietly);
    },
  };
}

/** `client.ts hello` against `port`: its exit code and stderr. */
async function floodedClient(port: number): Promise<string | undefined> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: denoRun("client.ts", `127.0.0.1:${port}`, [
      "--port",
      String(port),
      "hello",
    ]),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(20_000),
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  return out.code === 5 && /^error: Reply too long: .*\n$/.test(stderr)
    ? undefined
    : `client.ts against a flood: exit ${out.code}, stderr ${
      JSON.stringify(stderr)
    }`;
}

/**
 * Attacks for `seconds`, all at once, against `server.ts --cert --key
 * --proxy-protocol --trace` without `--allow-ffi`:
 *
 * - waves of 80 connections straight to the relay's inner port (found with
 *   `ss -tlnp`), so that it moves to a fresh one;
 * - PROXY v2 headers whose Unix path forges a log line and holds terminal
 *   escapes, then a TLS client that never sends its ClientHello;
 * - balancer-like checks that close before or right after their header;
 * - `client.ts` against a server that floods its reply.
 *
 * Meanwhile TLS clients with a PROXY header (new connections and one that
 * stays) check every byte. Fails on a wrong byte, a failed good client, a
 * control character or forged line in the log, a relay that never moved, a
 * flooded client that did not stop with one line, descriptors that do not
 * come back, or a server that is not alive and does not exit 0 with its
 * summary.
 */
export async function hostile(
  options: HostileOptions = {},
): Promise<ScenarioResult> {
  const seconds = options.seconds ?? 20;
  await using certs = await makeStressCerts();
  await using server = await startTlsServer(certs, "relay", [
    "--proxy-protocol",
    "--proxy-from",
    "127.0.0.0/8",
    "--proxy-timeout",
    "1",
    "--handshake-timeout",
    "1",
    "--trace",
  ]);
  const baseDescriptors = await countDescriptors(server.pid);
  const sampler = await RssSampler.start(server.pid);
  const good = { tls: certs.tls, proxyHeader: 2 as const };
  const bystanders = Bystanders.start(server.port, {
    count: 2,
    pauseMs: 20,
    seed: options.seed,
    ...good,
  });
  const staying = Bystanders.start(server.port, {
    count: 1,
    persistent: true,
    pauseMs: 20,
    seed: (options.seed ?? 1) + 1,
    ...good,
  });
  const flood = floodServer();
  const stop = new AbortController();
  const failures: string[] = [];
  let strayConns = 0;
  let rss: RssFigures;
  const port = server.port;
  const attacks = [
    // Strays: a wave at the inner port, held a moment, let go.
    repeat(stop.signal, async () => {
      const inner = (await listeningPorts(server.pid)).filter((p) =>
        p !== port
      );
      const conns = (await Promise.all(
        inner.map((p) => openMany(p, STRAY_WAVE)),
      )).flat();
      strayConns += conns.length;
      await delay(500);
      conns.forEach(closeQuietly);
    }),
    // Log injection, then a handshake that never starts.
    repeat(stop.signal, async () => {
      const conns = await openMany(
        port,
        20,
        proxyV2Unix(INJECTION, INJECTION),
      );
      await delay(1500);
      conns.forEach(closeQuietly);
    }),
    // Checks: nothing, a LOCAL header then a close, a header cut short.
    repeat(stop.signal, async () => {
      const local = encodeLocalHeader();
      const conns = [
        ...await openMany(port, 5),
        ...await openMany(port, 5, local),
        ...await openMany(port, 5, local.subarray(0, 7)),
      ];
      conns.forEach(closeQuietly);
      await delay(100);
    }),
    // The client against a flood.
    repeat(stop.signal, async () => {
      const failure = await floodedClient(flood.port);
      if (failure !== undefined) failures.push(failure);
    }),
  ].map(handled);
  let exchanges = 0;
  let bytes = 0;
  try {
    await delay(seconds * 1000);
    stop.abort();
    await Promise.all(attacks);
    for (const report of [await bystanders.stop(), await staying.stop()]) {
      exchanges += report.exchanges;
      bytes += report.bytes;
    }
    rss = await sampler.stop();
  } catch (err: unknown) {
    stop.abort();
    await sampler.stop();
    throw err;
  } finally {
    flood.close();
  }
  if (failures.length > 0) throw new Error(failures[0]);
  // The strays' peers are gone, the relay's descriptors with them.
  await waitUntil(
    async () => await countDescriptors(server.pid) <= baseDescriptors + 2,
    10_000,
    `the server's descriptors back to ${baseDescriptors}`,
  );
  // Alive, and serving: one more checked client.
  const last = Bystanders.start(server.port, { count: 1, ...good });
  await delay(200);
  await last.stop();
  const out = await server.stop();
  if (out.code !== 0) throw new Error(`server exit ${out.code}: ${out.stderr}`);
  const lines = out.stdout.split("\n");
  const bad = lines.find((line) =>
    CONTROL.test(line) || line.startsWith(FORGED)
  );
  if (bad !== undefined) {
    throw new Error(`an unescaped line in the log: ${JSON.stringify(bad)}`);
  }
  const moves = lines.filter((l) => l.startsWith("TLS relay: the inner port"));
  if (moves.length === 0) throw new Error("the relay never moved");
  const summary = lines.findLast((l) => l.startsWith("Served ")) ?? "";
  if (!/strays on the TLS relay's inner port/.test(summary)) {
    throw new Error(`no strays in the summary: ${summary}`);
  }
  return {
    cases: exchanges,
    bytes,
    errors: Number(/(\d+) errors?/.exec(summary)?.[1] ?? 0),
    rss,
    notes: [
      `${exchanges} good TLS exchanges checked; ${strayConns} stray connections, the relay moved ${moves.length} times; ${lines.length} log lines, none unescaped`,
      summary,
    ],
  };
}
