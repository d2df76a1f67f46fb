#!/usr/bin/env -S deno run --allow-run --allow-read=bench/.build --allow-write=bench/.build --allow-net=127.0.0.1 --allow-sys=loadavg,osRelease
// Copyright the upcase authors. MIT license.
/**
 * The upcase benchmark: `deno task bench`.
 *
 * Compiles the C load generator (bench/loadgen.c, with OpenSSL when libssl
 * is there) and the C epoll reference server (bench/peers/epoll_server.c)
 * with `cc` into bench/.build/, then drives four servers, each on a free
 * port of 127.0.0.1, with that one generator:
 *
 * - `epoll`: the C reference, the yardstick of every ratio;
 * - `upcase`: this repository's server.ts, run as its CLI with logging on
 *   (the log goes to bench/.build/logs/);
 * - `node`: a plain Node.js `net` server (bench/peers/node_server.mjs);
 * - `deno-plain`: a plain Deno read/write loop (bench/peers/deno_plain_server.ts).
 *
 * Scenarios: `rtt` (50 connections × 64-byte round trips), `stream` (1 GiB
 * through one connection), `oneshot` (connect, 32 bytes, half-close, read to
 * EOF, close; 20 in flight) and `idle` (RSS growth per connection while
 * 10,000 idle ones are open, each confirmed by a round trip). Every server is
 * started afresh for every run; the servers take turns, the order rotated
 * each repetition, and each table cell is the median of 3 repetitions. CPU
 * is read from /proc/PID/stat at the start and end of the generator's
 * measured window. Last, the transform alone is timed in this process (GB/s
 * on 64 KiB, see transform_throughput.ts).
 *
 * With `--tls` (or `--scenarios=tls-rtt,...`) the same rtt, stream and
 * oneshot loads also run over TLS (`tls-rtt`, `tls-stream`, `tls-oneshot`;
 * a full handshake for every oneshot connection, a close_notify for the
 * half-close) against `upcase` with `--cert/--key` and `--allow-ffi`
 * (stalled handshakes shut down through FFI), `upcase-relay` (the same
 * without `--allow-ffi`: each client relayed to an in-process
 * Deno.listenTls), `node-tls` (bench/peers/node_tls_server.mjs), `deno-tls`
 * (a Deno.listenTls loop, bench/peers/deno_tls_server.ts) and `c-tls` (the
 * C OpenSSL epoll reference, bench/peers/epoll_tls_server.c), with ratios
 * to node-tls (upcase's targets: 1.1× it), deno-tls and c-tls. The
 * certificates are the tests' (tests/_certs.ts, made with `openssl`), in
 * bench/.build/tls/. Without libssl or openssl, or when server.ts rejects
 * `--cert`, those rows say SKIPPED and why; the plain rows run all the same.
 *
 * With `--udp` (or `--scenarios=udp`, which runs it alone) the `udp`
 * scenario runs too: the generator keeps 50 datagrams of 64 bytes in
 * flight from one socket for 5 s (each reply checked byte for byte; one
 * unanswered after 200 ms is counted lost and replaced) against `upcase`
 * (`server.ts --udp --udp-rate 0` with `--allow-net=127.0.0.1`, every port,
 * since Deno checks each datagram's destination), `node-udp` (Node's
 * dgram, bench/peers/node_udp_server.mjs), `deno-udp` (a plain
 * Deno.listenDatagram loop, bench/peers/deno_udp_server.ts: the floor),
 * `deno-node-udp` (the same dgram handler under Deno's node:dgram,
 * bench/peers/deno_node_udp_server.ts) and `c-udp` (C recvmmsg/sendmmsg,
 * bench/peers/udp_server.c), with ratios to deno-udp (upcase's target:
 * at it), node-udp (ahead of it) and c-udp. While server.ts --help names
 * no `--udp` (or no `--udp-rate`), upcase's row says SKIPPED and why. About
 * 2 minutes more, 3 × 5 servers × 8 s.
 *
 * The markdown tables go to stdout and bench/.build/results.md, every raw
 * number to bench/.build/results.json. The whole run stays under 10
 * minutes (runs that could end later are skipped and said so; `--tls`
 * allows 5.5 more, `--variants` 2.5); `--quick` takes about half a minute.
 * Every process started is killed on the way out.
 *
 * ```sh
 * deno run --allow-run --allow-read=bench/.build --allow-write=bench/.build \
 *   --allow-net=127.0.0.1 --allow-sys=loadavg,osRelease bench/run.ts [--quick]
 * ```
 *
 * With `--variants` (or `--only=upcase,upcase-w2,upcase-metrics,...`) the
 * plain scenarios also run upcase with other command lines, with a "vs
 * upcase" column (the ratio to the single-threaded default): `upcase-w2`
 * (`--workers 2`: two Worker threads, each with its own SO_REUSEPORT
 * listener, and `--allow-read=src` for their modules) and `upcase-metrics`
 * (`--metrics` on a second free port, which nothing scrapes). They are not
 * in the default run: they add about 2.5 minutes (half a minute to
 * `--quick`), and the run's limits grow by as much.
 *
 * Run it from the repository root (the permissions name relative paths).
 * Options: `--quick`, `--tls`, `--udp`, `--variants`, `--only=upcase,epoll` (servers),
 * `--scenarios=rtt,idle`, `--reps=N`, `--no-transform`, `--help`.
 *
 * The parts: _settings.ts (the command line), _build.ts (cc), _certs.ts
 * (the certificates), _environment.ts (what the machine has), _schedule.ts
 * (the order of the runs), _runs.ts (one run), _servers.ts, _scenarios.ts,
 * _loadgen.ts, _system.ts (/proc), _summary.ts (medians), _report.ts and
 * _format.ts (the tables).
 *
 * @module
 */

import { compile } from "./_build.ts";
import { makeCertificates } from "./_certs.ts";
import {
  type Environment,
  probe,
  sourcesDigest,
  tlsSkipReason,
  udpSkipReason,
} from "./_environment.ts";
import { fmt } from "./_format.ts";
import { num } from "./_loadgen.ts";
import { BUILD_DIR, LOG_DIR } from "./_paths.ts";
import { killAll } from "./_process.ts";
import { markdown } from "./_report.ts";
import { runAll, serversToRun } from "./_schedule.ts";
import { typicalSeconds } from "./_scenarios.ts";
import { upcaseNote } from "./_servers.ts";
import {
  isTls,
  isUdp,
  kindOf,
  parseSettings,
  type ServerName,
  serversOf,
} from "./_settings.ts";
import { DISTURBED, summarize } from "./_summary.ts";
import {
  formatTransformThroughput,
  measureTransformThroughput,
  type TransformThroughput,
} from "./transform_throughput.ts";

/**
 * Runs the benchmark with the command line's settings.
 *
 * @returns The exit code: 0 when every run went well.
 */
async function main(): Promise<number> {
  const s = parseSettings(Deno.args);
  if (!s) return 0;
  const started = Date.now();
  const elapsed = () => (Date.now() - started) / 1000;
  const env: Environment = { upcaseMaxConns: false };
  const notes: string[] = [];

  // Logs of an earlier invocation would only confuse.
  await Deno.remove(LOG_DIR, { recursive: true }).catch(() => {});
  const tls = s.scenarios.some(isTls);
  const noLoadgen = await compile(env, { tls, udp: s.scenarios.some(isUdp) });
  if (noLoadgen) {
    const message = `Skipped: the C load generator and the C epoll ` +
      `reference could not be built (${noLoadgen}); every measurement ` +
      "needs the generator, so nothing was measured.";
    console.log(message);
    await Deno.writeTextFile(`${BUILD_DIR}results.md`, message + "\n");
    return 0;
  }
  if (tls && !env.tlsSkipped) env.tlsSkipped = await makeCertificates();
  const machine = await probe(env, s);
  const digest = await sourcesDigest();
  if (env.staleLoadgen) {
    notes.push(
      "no C compiler (cc): the load generator is the one built earlier in " +
        "bench/.build/.",
    );
  }
  const skip: [ServerName, string | undefined][] = [
    ["epoll", env.epollSkipped],
    ["node", env.nodeSkipped],
    ["upcase", env.upcaseSkipped],
    ["upcase-relay", env.upcaseSkipped],
    ["upcase-w2", env.upcaseSkipped ?? env.upcaseWorkersSkipped],
    ["upcase-metrics", env.upcaseSkipped ?? env.upcaseMetricsSkipped],
  ];
  for (const [name, why] of skip) {
    if (why && s.servers.includes(name)) {
      notes.push(`${name} skipped: ${why}.`);
      s.servers = s.servers.filter((n) => n !== name);
    }
  }
  /** Why a server does not run a scenario, by `scenario/server`. */
  const skipped = new Map<string, string>();
  for (const scenario of s.scenarios.filter(isTls)) {
    for (const name of serversOf(scenario, s.servers)) {
      const why = tlsSkipReason(name, env);
      if (why) skipped.set(`${scenario}/${name}`, why);
    }
  }
  for (const scenario of s.scenarios.filter(isUdp)) {
    for (const name of serversOf(scenario, s.servers)) {
      const why = udpSkipReason(name, env);
      if (why) skipped.set(`${scenario}/${name}`, why);
    }
  }
  const upcase = upcaseNote(
    env,
    (name, kind) =>
      s.scenarios.some((sc) =>
        kindOf(sc) === kind && serversToRun(sc, s, skipped).includes(name)
      ),
  );
  if (upcase) notes.push(upcase);
  const estimate = s.reps * s.scenarios.reduce(
        (sum, sc) =>
          sum + serversToRun(sc, s, skipped).length * typicalSeconds(sc, s),
        0,
      ) +
    (s.transform ? (s.quick ? 2 : 5) : 0);
  for (const note of notes) console.log(note);
  const tlsSkips = [...skipped].filter(([k]) => !k.startsWith("udp/"));
  if (env.tlsSkipped && s.scenarios.some(isTls)) {
    console.log(`SKIPPED: every TLS row: ${env.tlsSkipped}`);
  } else {
    const names = new Set(tlsSkips.map(([k]) => k.split("/")[1]));
    for (const name of names) {
      const why = tlsSkips.find(([k]) => k.endsWith(`/${name}`))?.[1];
      console.log(`SKIPPED: ${name} over TLS: ${why}`);
    }
  }
  for (const [key, why] of skipped) {
    if (key.startsWith("udp/")) {
      console.log(`SKIPPED: ${key.slice(4)} over UDP: ${why}`);
    }
  }
  const kinds = [
    s.scenarios.filter((sc) => kindOf(sc) === "plain"),
    s.scenarios.filter(isTls),
    s.scenarios.filter(isUdp),
  ];
  const groups = kinds
    .map((group) => ({
      group,
      servers: group[0] ? serversToRun(group[0], s, skipped) : [],
    }))
    .filter(({ servers }) => servers.length > 0)
    .map(({ group, servers }) => `${servers.join(", ")} × ${group.join(", ")}`);
  console.log(
    `${groups.join("; ") || "nothing"} × ${s.reps} ` +
      `rep(s), about ${fmt(estimate)} s; load ${
        (machine.loadavg as number[]).map((l) => l.toFixed(2)).join(" ")
      }`,
  );

  const { runs, discarded, skipped: late } = await runAll(
    s,
    env,
    started,
    skipped,
  );
  if (digest !== await sourcesDigest()) {
    notes.push(
      "**the server's sources (top-level .ts files and src/) changed " +
        "during the run**: some runs measured one version, some another.",
    );
  }
  if (discarded.length > 0) {
    notes.push(
      `${discarded.length} run(s) were done again because other processes ` +
        `used more than ${DISTURBED * 100}% of a core meanwhile; ` +
        '"disturbed" counts the kept runs for which that was still so.',
    );
  }
  const tlsRuns = runs.filter((r) => isTls(r.scenario) && r.loadgen);
  const first = tlsRuns.find((r) => r.loadgen?.tls_protocol)?.loadgen;
  if (first) {
    const sum = (key: string) =>
      tlsRuns.reduce((n, r) => n + (num(r.loadgen, key) || 0), 0);
    notes.push(
      `TLS: ${first.tls_protocol}, ${first.tls_cipher}; ` +
        `${sum("tls_resumed")} handshake(s) resumed a session, ` +
        `${sum("tls_unclean_eofs")} connection(s) ended without the ` +
        "server's close_notify (after the whole reply).",
    );
  }
  const generatorDrops = runs.reduce(
    (n, r) => n + Math.max(0, num(r.loadgen, "rcvbuf_drops") || 0),
    0,
  );
  if (generatorDrops > 0) {
    notes.push(
      `UDP: the generator's own socket dropped ${generatorDrops} ` +
        "reply(ies) (its receive buffer was full): counted lost, but not " +
        "the servers' doing.",
    );
  }
  if (late > 0) {
    notes.push(
      `${late} run(s) were skipped: they could have ended after ` +
        `${s.hardLimitSeconds} s.`,
    );
  }

  let transform: TransformThroughput | undefined;
  if (s.transform) {
    transform = measureTransformThroughput(
      64 * 1024,
      s.quick ? { rounds: 3, roundMs: 50 } : {},
    );
    console.log(formatTransformThroughput(transform));
  }

  const summaries = summarize(runs);
  const wall = elapsed();
  const table = markdown(summaries, s, notes, transform, skipped) +
    `\n\nTotal wall time: ${wall.toFixed(0)} s.\n`;
  console.log(`\n${table}`);
  await Deno.writeTextFile(`${BUILD_DIR}results.md`, table);
  await Deno.writeTextFile(
    `${BUILD_DIR}results.json`,
    JSON.stringify(
      {
        started: new Date(started).toISOString(),
        wall_seconds: wall,
        machine: { ...machine, loadavg_end: Deno.loadavg() },
        settings: s,
        notes,
        skipped: Object.fromEntries(skipped),
        summary: Object.fromEntries(summaries),
        transform,
        runs,
        discarded,
      },
      null,
      2,
    ) + "\n",
  );
  console.log(`Raw results: ${BUILD_DIR}results.json`);
  return runs.every((r) => r.ok) ? 0 : 1;
}

if (import.meta.main) {
  const onSignal = () => {
    killAll();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let code = 1;
  try {
    code = await main();
  } catch (err: unknown) {
    console.error(err instanceof Error ? err.message : err);
  } finally {
    killAll();
  }
  Deno.exit(code);
}
