// Copyright the upcase authors. MIT license.
// Scenario: the HTTP side channel (--metrics) under every attack of issue 18
// at once: pipelined /metrics and /healthz floods, heads that trickle in,
// silent connections, bad requests on new connections, event pages that
// never read, and a connect-and-close churn. Meanwhile well-behaved TCP
// clients check every byte and a scraper reads /metrics; the TCP round-trip
// rate is measured with and without the attacks, in turns.

import { ChildLines, freePort } from "../tests/_util.ts";
import { havePython, PYTHON } from "./_tls.ts";
import {
  Bystanders,
  delay,
  killOnInterrupt,
  RssSampler,
  type ScenarioResult,
  skippedResult,
  waitUntil,
  WatchedServer,
} from "./_util.ts";

/** Options for {@linkcode hostileHttp}. */
export interface HostileHttpOptions {
  /** Seconds of attack in all, in two turns with quiet turns between. @default {20} */
  seconds?: number;
  /** Seed of the bystanders' payloads. @default {1} */
  seed?: number;
  /** Attack connections of each kind, as a fraction of the full sizes. @default {1} */
  scale?: number;
  /**
   * The least TCP round-trip rate under attack, as a fraction of the rate
   * without it; a benchmark figure, so 0 in quick runs that only check
   * correctness.
   *
   * @default {0.7}
   */
  minRatio?: number;
}

/** How long a scrape may take before it counts as a failure. */
const SCRAPE_LIMIT_MS = 10_000;
/** Where the scraper connects from: not the attackers' 127.0.0.1. */
const SCRAPER_ADDRESS = "127.0.0.2";
/**
 * GET /metrics from SOURCE every 500 ms until stdin ends; a line per scrape:
 * "ok", or what went wrong.
 */
const SCRAPER = `
import socket, sys, threading, time
port, source = int(sys.argv[1]), sys.argv[2]
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
while not done.is_set():
    try:
        s = socket.socket()
        s.settimeout(${SCRAPE_LIMIT_MS / 1000})
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
        reply = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        s.close()
        ok = reply.startswith(b"HTTP/1.1 200 ") and b"\\nupcase_connections_accepted_total " in reply
        print("ok" if ok else "bad reply: %r" % reply[:80], flush=True)
    except OSError as err:
        print("failed: %r" % err, flush=True)
    done.wait(0.5)
`;
/** How long the server may take to let go of the attackers' sockets. */
const SOCKETS_BACK_WITHIN_MS = 20_000;

/** The attackers' program, run in a process of their own. */
const ATTACKERS = new URL("./_http_attackers.ts", import.meta.url).pathname;

/**
 * Starts the attackers against the metrics address at `port`, in their own
 * process (an attacker is not in the clients' process: its work would slow
 * their round trips, not the server's). It prints a line of counts when its
 * stdin ends, and exits.
 */
function startAttackers(
  port: number,
  scale: number,
  kinds: "flood" | "all",
): ChildLines {
  const child = new ChildLines(
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        `--allow-net=127.0.0.1:${port}`,
        ATTACKERS,
        String(port),
        String(scale),
        kinds,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
  return child;
}

/** Ends the attackers and returns their counts. */
async function stopAttackers(
  attackers: ChildLines,
): Promise<{ rounds: number; flooded: number }> {
  await attackers.child.stdin.close();
  const out = await attackers.finish();
  const counts = /^rounds (\d+) flooded (\d+)$/.exec(
    attackers.log.at(-1) ?? "",
  );
  if (out.code !== 0 || counts === null) {
    throw new Error(`The attackers failed (${out.code}): ${out.stderr}`);
  }
  return { rounds: Number(counts[1]), flooded: Number(counts[2]) };
}

/** Round trips per second of `clients` persistent TCP clients for `ms`. */
async function roundTripRate(
  port: number,
  ms: number,
  seed: number,
): Promise<number> {
  const clients = Bystanders.start(port, {
    count: 4,
    persistent: true,
    maxSize: 64,
    seed,
  });
  await delay(ms);
  const report = await clients.stop();
  return report.exchanges / (ms / 1000);
}

/**
 * Runs the side channel's attacks for about `seconds` against `server.ts
 * --metrics`: first the pipelined `/metrics` and `/healthz` flood in two
 * turns between quiet ones, then every attack at once (trickled heads,
 * heads dripped a byte per segment, silent connections, bad requests on new
 * connections, unread event pages, a connect-and-close churn, the flood):
 *
 * - the TCP round-trip rate of 4 persistent clients under the flood must
 *   stay at least `minRatio` of its rate in the quiet turns;
 * - well-behaved TCP clients (new connections, 1 B to 64 KiB) get every byte
 *   right, and a scraper gets `/metrics` every 500 ms;
 * - afterwards the server holds no socket but its own, is alive, and exits
 *   0 on SIGTERM with nothing on stderr.
 *
 * Skipped, with the reason, without `/usr/bin/python3` (the scraper binds
 * its own source address, which `Deno.connect` cannot).
 *
 * @throws {Error} On a wrong byte, a failed client or scrape, a rate below
 *   `minRatio`, sockets that do not come back, or a dead server.
 */
export async function hostileHttp(
  options: HostileHttpOptions = {},
): Promise<ScenarioResult> {
  if (!await havePython()) {
    return skippedResult(`${PYTHON} (the scraper) is not installed`);
  }
  const seconds = options.seconds ?? 20;
  const seed = options.seed ?? 1;
  const minRatio = options.minRatio ?? 0.7;
  const turnMs = seconds * 1000 / 2;
  const metricsPort = freePort();
  await using server = await WatchedServer.start(
    ["--metrics", `127.0.0.1:${metricsPort}`],
    { allowNet: `127.0.0.1:0,127.0.0.1:${metricsPort}` },
  );
  await server.waitForLine(/^Serving metrics on /, 10_000);
  const ownSockets = await server.sockets();
  const sampler = await RssSampler.start(server.pid);
  const bystanders = Bystanders.start(server.port, {
    count: 2,
    pauseMs: 20,
    seed: seed + 1,
  });
  // The scraper: Prometheus would come from its own address, which the
  // attackers' share of the connection cap cannot touch.
  const scraper = new ChildLines(
    new Deno.Command(PYTHON, {
      args: ["-c", SCRAPER, String(metricsPort), SCRAPER_ADDRESS],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
  using _tracked = killOnInterrupt(scraper.child);
  const quiet: number[] = [];
  const flood: number[] = [];
  let everything = 0;
  let flooded = 0;
  let attackRounds = 0;
  const attack = async (kinds: "flood" | "all", ms: number) => {
    const attackers = startAttackers(metricsPort, options.scale ?? 1, kinds);
    using _tracked = killOnInterrupt(attackers.child);
    await attackers.waitForLine(/^attacking$/, 10_000);
    await delay(500); // the attackers in place
    const rate = await roundTripRate(server.port, ms, seed);
    const counts = await stopAttackers(attackers);
    flooded += counts.flooded;
    attackRounds += counts.rounds;
    return rate;
  };
  try {
    // The flood of finding 4, in turns with quiet ones: the rate it leaves.
    for (let turn = 0; turn < 2; turn++) {
      quiet.push(await roundTripRate(server.port, turnMs / 2, seed));
      flood.push(await attack("flood", turnMs / 2));
    }
    quiet.push(await roundTripRate(server.port, turnMs / 2, seed));
    // Then everything at once: nothing may fail, nothing may stay.
    everything = await attack("all", turnMs);
  } finally {
    await scraper.child.stdin.close();
  }
  const scraped = await scraper.finish();
  const scrapes = scraper.log.filter((line) => line === "ok").length;
  const failed = scraper.log.find((line) => line !== "ok");
  if (scraped.code !== 0 || failed !== undefined || scrapes === 0) {
    throw new Error(
      `A scrape of /metrics failed: ${failed ?? scraped.stderr.trim()}`,
    );
  }
  const report = await bystanders.stop();
  const rss = await sampler.stop();
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const quietRate = sum(quiet) / quiet.length;
  const floodRate = sum(flood) / flood.length;
  const ratio = floodRate / quietRate;
  if (server.exitCode !== undefined) {
    throw new Error(`The server exited (${server.exitCode}) under attack`);
  }
  await waitUntil(
    async () => await server.sockets() <= ownSockets,
    SOCKETS_BACK_WITHIN_MS,
    `the server to let go of the attackers' sockets (it holds ${await server
      .sockets()}, ${ownSockets} at the start)`,
  );
  const out = await server.stop();
  if (out.code !== 0 || out.stderr !== "") {
    throw new Error(`The server exited ${out.code}: ${out.stderr}`);
  }
  if (ratio < minRatio) {
    throw new Error(
      `TCP round trips under the /metrics flood: ${
        ratio.toFixed(2)
      }x the quiet rate, under ${minRatio}x`,
    );
  }
  return {
    cases: attackRounds + scrapes + report.exchanges,
    bytes: report.bytes,
    errors: 0,
    rss,
    notes: [
      `TCP round trips: ${Math.round(floodRate)}/s under the /metrics flood, ${
        Math.round(quietRate)
      }/s without (${ratio.toFixed(2)}x; turns ${
        flood.map((r) => Math.round(r)).join(", ")
      } against ${quiet.map((r) => Math.round(r)).join(", ")}); ${
        Math.round(everything)
      }/s under every attack at once (${
        (everything / quietRate).toFixed(2)
      }x: unread pages turn the live page's tracing on)`,
      `the flooders got ${
        Math.round(flooded / (2 * turnMs / 1000))
      } responses/s; ${scrapes} scrapes, all answered; ${attackRounds} attack connections`,
    ],
  };
}
