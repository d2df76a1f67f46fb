#!/usr/bin/env -S deno run --allow-net=127.0.0.1,[::1] --allow-run --allow-env=SEED
// Copyright the upcase authors. MIT license.
/**
 * The reliability suite of issue 5 at full size (`deno task stress`): every
 * scenario in `stress/`, then a markdown table of what each did. Exits 1 when
 * any scenario failed.
 *
 * ```sh
 * deno task stress                        # everything, with a 60 s soak
 * deno task stress --seconds 10           # a 10 s soak
 * deno task stress --only resets,soak     # some scenarios only
 * deno task stress --only tls-slowloris   # both TLS modes of one scenario
 * SEED=123 deno task stress               # replay the random cases of a run
 * ```
 *
 * `deno task test` runs the same scenarios in quick sizes
 * (`tests/reliability_test.ts`).
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";
import { format as formatBytes } from "@std/fmt/bytes";
import { byteStreamProperty } from "./byte_stream.ts";
import { descriptorExhaustion } from "./descriptor_exhaustion.ts";
import { hostile } from "./hostile.ts";
import { hostileHttp } from "./hostile_http.ts";
import { logStall } from "./log_stall.ts";
import { abruptResets } from "./resets.ts";
import { shutdownUnderLoad } from "./shutdown.ts";
import { slowReader } from "./slow_reader.ts";
import { slowloris } from "./slowloris.ts";
import { soak } from "./soak.ts";
import { tlsHandshakes } from "./tls_handshakes.ts";
import { tlsIdleCutoff } from "./tls_idle_cutoff.ts";
import { tlsResets } from "./tls_resets.ts";
import { tlsSlowReader } from "./tls_slow_reader.ts";
import { tlsSlowloris } from "./tls_slowloris.ts";
import { TLS_MODES, type TlsMode } from "./_tls.ts";
import { unicodeByteStreamProperty } from "./unicode_stream.ts";
import {
  KiB,
  killServers,
  MiB,
  resolveSeed,
  type RssFigures,
  type ScenarioResult,
  seedLine,
} from "./_util.ts";

/** A scenario at full size. */
interface Scenario {
  name: string;
  /**
   * Scenarios run once per TLS mode share one: `--only` takes it for all of
   * them.
   */
  family?: string;
  /** What it does, for `--help`. */
  summary: string;
  run: (context: RunContext) => Promise<ScenarioResult>;
}

interface RunContext {
  seed: number;
  soakSeconds: number;
}

/**
 * A TLS scenario once relayed and once with --allow-ffi: `NAME-relay` and
 * `NAME-ffi`, in the family `NAME`.
 */
function inBothModes(
  name: string,
  summary: string,
  run: (context: RunContext, mode: TlsMode) => Promise<ScenarioResult>,
): Scenario[] {
  return TLS_MODES.map((mode) => ({
    name: `${name}-${mode === "relay" ? "relay" : "ffi"}`,
    family: name,
    summary: `${summary} (server.ts ${
      mode === "relay" ? "relayed" : "with --allow-ffi"
    })`,
    run: (context) => run(context, mode),
  }));
}

/** Every scenario, in the order they run. */
export const SCENARIOS: readonly Scenario[] = [
  {
    name: "byte-stream",
    summary: "2,000 random cases: payloads, write sizes, pauses, half-closes",
    run: ({ seed }) => byteStreamProperty({ seed, cases: 2000 }),
  },
  {
    name: "byte-stream-unicode",
    summary:
      "server.ts --unicode: 3,000 cases of UTF-8 mixed with invalid bytes, cut at every byte or at random",
    run: ({ seed }) =>
      unicodeByteStreamProperty({
        seed,
        cases: 3000,
        maxSize: 256 * KiB,
        cli: true,
      }),
  },
  {
    name: "resets",
    summary: "1,000 clients reset at random points mid-stream",
    run: ({ seed }) => abruptResets({ seed, clients: 1000 }),
  },
  {
    name: "slow-reader",
    summary: "a client sends 256 MiB and never reads",
    run: ({ seed }) =>
      slowReader({ seed, target: 256 * MiB, seconds: 30, stallMs: 3000 }),
  },
  {
    name: "slowloris",
    summary: "1,000 silent clients vs --idle-timeout and --max-conns",
    run: ({ seed }) =>
      slowloris({ seed, connections: 1000, idleTimeout: 3, maxConns: 100 }),
  },
  {
    name: "descriptors",
    summary: "a flood of 700 connections with the open-file limit at 256",
    run: ({ seed }) =>
      descriptorExhaustion({ seed, limit: 256, flood: 700, holdSeconds: 5 }),
  },
  {
    name: "shutdown",
    summary: "SIGTERM while 50 clients are mid-transfer",
    run: ({ seed }) =>
      shutdownUnderLoad({ seed, clients: 50, stalled: 5, grace: 3 }),
  },
  {
    name: "log-stall",
    summary:
      "server.ts with stdout never read: 3,000 sequential and 200 concurrent clients, then SIGTERM",
    run: ({ seed }) => logStall({ seed, sequential: 3000, concurrent: 200 }),
  },
  {
    name: "hostile-http",
    summary:
      "--metrics under floods, trickled heads, silent and bad requests, unread pages, churn; TCP rate >= 0.7x",
    run: ({ seed }) => hostileHttp({ seed, seconds: 20 }),
  },
  {
    name: "hostile",
    summary:
      "the TLS relay's inner port, log injection, balancer checks and a flooded client, all at once, while TLS clients check every byte",
    run: ({ seed }) => hostile({ seed, seconds: 20 }),
  },
  {
    name: "soak",
    summary: "mixed load for --seconds (default 60)",
    run: ({ seed, soakSeconds }) => soak({ seed, seconds: soakSeconds }),
  },
  ...inBothModes(
    "tls-handshakes",
    "1,000 full TLS handshakes, 200 in flight, each with a checked payload",
    ({ seed }, mode) =>
      tlsHandshakes({ mode, seed, clients: 1000, concurrency: 200 }),
  ),
  ...inBothModes(
    "tls-resets",
    "1,000 TLS clients reset (RST) mid-handshake and mid-stream",
    ({ seed }, mode) => tlsResets({ mode, seed, clients: 1000 }),
  ),
  ...inBothModes(
    "tls-slowloris",
    "500 clients stall the TLS handshake (silent, or a byte at a time) vs --handshake-timeout 2",
    ({ seed }, mode) =>
      tlsSlowloris({ mode, seed, clients: 500, handshakeTimeout: 2 }),
  ),
  ...inBothModes(
    "tls-slow-reader",
    "a TLS client sends 256 MiB and never reads",
    ({ seed }, mode) =>
      tlsSlowReader({
        mode,
        seed,
        target: 256 * MiB,
        seconds: 20,
        stallMs: 3000,
      }),
  ),
  ...inBothModes(
    "tls-idle-cutoff",
    "a TLS client that never reads, cut off by --idle-timeout 2: its socket must go",
    (_, mode) => tlsIdleCutoff({ mode, idleTimeout: 2 }),
  ),
];

/** One row of the report. */
interface Outcome {
  name: string;
  result?: ScenarioResult;
  error?: string;
  ms: number;
}

function printUsage(): void {
  console.log(`Usage: deno task stress [--seconds N] [--only NAME[,NAME...]]

Runs the reliability scenarios at full size and prints a markdown table.
Exits 1 when any scenario fails.

Options:
  --seconds N   how long the soak runs (default 60)
  --only NAMES  run only these scenarios, comma-separated (a TLS scenario's
                family name, e.g. tls-slowloris, runs it in both modes)
  -h, --help    show this help

Scenarios:
${SCENARIOS.map((s) => `  ${s.name.padEnd(22)} ${s.summary}`).join("\n")}

SEED=N replays the random cases of an earlier run.`);
}

function formatRss(rss: RssFigures | undefined): string {
  if (rss === undefined) return "-";
  const mib = (n: number) => (n / MiB).toFixed(1);
  return `${mib(rss.start)} → ${mib(rss.end)} MiB (peak ${mib(rss.peak)})${
    rss.inProcess ? "*" : ""
  }`;
}

/** The report: a markdown table, then notes and failures. */
export function formatReport(outcomes: readonly Outcome[]): string {
  const rows = outcomes.map((o) => {
    const r = o.result;
    const result = o.error !== undefined
      ? "**FAIL**"
      : r?.skipped !== undefined
      ? `skipped: ${r.skipped}`
      : `pass (${(o.ms / 1000).toFixed(1)} s)`;
    return [
      o.name,
      r && !r.skipped ? r.cases.toLocaleString("en-US") : "-",
      r && !r.skipped ? formatBytes(r.bytes, { binary: true }) : "-",
      r && !r.skipped ? String(r.errors) : "-",
      formatRss(r?.rss),
      result,
    ];
  });
  const lines = [
    "| scenario | cases/connections | bytes | errors | server RSS | result |",
    "| --- | ---: | ---: | ---: | --- | --- |",
    ...rows.map((cells) => `| ${cells.join(" | ")} |`),
    "",
    "errors: connections the server ended with an error (resetting clients cause them); a wrong byte fails the scenario.",
    "RSS: start → end (peak). * the server ran in this process, so the figure includes the clients.",
  ];
  const notes = outcomes.flatMap((o) =>
    (o.result?.notes ?? []).map((note) => `- ${o.name}: ${note}`)
  );
  if (notes.length > 0) lines.push("", ...notes);
  const failures = outcomes.filter((o) => o.error !== undefined);
  if (failures.length > 0) {
    lines.push("", ...failures.map((o) => `FAILED ${o.name}: ${o.error}`));
  }
  return lines.join("\n");
}

async function main(): Promise<number> {
  const flags = parseArgs(Deno.args, {
    string: ["seconds", "only"],
    boolean: ["help"],
    alias: { h: "help" },
    unknown: (arg: string) => {
      console.error(`error: Unknown argument: ${arg} (see --help)`);
      Deno.exit(1);
    },
  }) as { seconds?: string; only?: string; help?: boolean };
  if (flags.help) {
    printUsage();
    return 0;
  }
  const soakSeconds = flags.seconds === undefined ? 60 : Number(flags.seconds);
  if (!(soakSeconds > 0 && soakSeconds <= 86_400)) {
    console.error(
      `error: Invalid --seconds: "${flags.seconds}" is not a number of seconds from 1 to 86400`,
    );
    return 1;
  }
  const names: string[] = flags.only?.split(",").map((s) => s.trim()) ??
    SCENARIOS.map((s) => s.name);
  const selects = (s: Scenario, n: string) => s.name === n || s.family === n;
  const unknown = names.filter((n) => !SCENARIOS.some((s) => selects(s, n)));
  if (unknown.length > 0) {
    console.error(
      `error: Unknown scenario: ${unknown[0]} (one of ${
        [
          ...new Set(SCENARIOS.flatMap((s) => [s.family ?? s.name, s.name])),
        ].join(", ")
      })`,
    );
    return 1;
  }
  let seed: number;
  try {
    seed = resolveSeed();
  } catch (err: unknown) {
    console.error(`error: ${err instanceof Error ? err.message : err}`);
    return 1;
  }
  const replay = seedLine(seed, "deno task stress");
  console.log(replay);
  const stop = () => {
    killServers();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  const outcomes: Outcome[] = [];
  const chosen = SCENARIOS.filter((s) => names.some((n) => selects(s, n)));
  for (const scenario of chosen) {
    console.log(`running ${scenario.name}: ${scenario.summary} ...`);
    const started = Date.now();
    try {
      const result = await scenario.run({ seed, soakSeconds });
      outcomes.push({ name: scenario.name, result, ms: Date.now() - started });
    } catch (err: unknown) {
      const error = err instanceof Error ? err.message : String(err);
      outcomes.push({ name: scenario.name, error, ms: Date.now() - started });
      console.log(`  FAILED: ${error}`);
    }
  }
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  console.log("");
  console.log(formatReport(outcomes));
  const failed = outcomes.some((o) => o.error !== undefined);
  if (failed) console.log(`\n${replay}`);
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
