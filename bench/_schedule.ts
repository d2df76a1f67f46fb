// Copyright the upcase authors. MIT license.
/**
 * The order of the runs and their pacing: round-robin over the servers,
 * a wait for a quiet machine before each, a run done again when other
 * processes disturbed it, and runs skipped that could end too late.
 *
 * @module
 */

import type { Environment } from "./_environment.ts";
import { percent } from "./_format.ts";
import { describe } from "./_report.ts";
import { runOnce, type RunRecord } from "./_runs.ts";
import { typicalSeconds, worstCaseSeconds } from "./_scenarios.ts";
import {
  type Scenario,
  type ServerName,
  serversOf,
  type Settings,
} from "./_settings.ts";
import { disturbed, metrics } from "./_summary.ts";
import { QUIET, waitForQuiet } from "./_system.ts";

/** How often a disturbed run is done again, at most. */
const MAX_RETRIES = 2;
/** The longest wait for quiet before one run, in seconds. */
const QUIET_WAIT_MAX = 10;

/** What {@linkcode runAll} did. */
export interface Schedule {
  /** The runs kept. */
  runs: RunRecord[];
  /** Runs done again because other processes were busy. */
  discarded: RunRecord[];
  /** Runs not done: they could have ended after the hard limit. */
  skipped: number;
}

/**
 * The servers that run a scenario: those asked for that serve it, less
 * those skipped.
 *
 * @param scenario The scenario.
 * @param s The settings.
 * @param skipped Why a server does not run a scenario, by `scenario/server`.
 * @returns The servers, in the order of the rows.
 */
export function serversToRun(
  scenario: Scenario,
  s: Settings,
  skipped: ReadonlyMap<string, string>,
): ServerName[] {
  return serversOf(scenario, s.servers).filter((name) =>
    !skipped.has(`${scenario}/${name}`)
  );
}

/**
 * Runs every server under every scenario it serves, `s.reps` times,
 * printing a line for each run.
 *
 * @param s The settings.
 * @param env What the probe found.
 * @param started When the benchmark started (`Date.now()`): the limits
 * count from then.
 * @param skipped The pairs not to run, by `scenario/server`.
 * @returns The runs.
 */
export async function runAll(
  s: Settings,
  env: Environment,
  started: number,
  skipped: ReadonlyMap<string, string>,
): Promise<Schedule> {
  const elapsed = () => (Date.now() - started) / 1000;
  // Round-robin, rotated each repetition, so no server always goes first.
  const plan: [number, Scenario, ServerName][] = [];
  for (let rep = 0; rep < s.reps; rep++) {
    for (const scenario of s.scenarios) {
      const servers = serversToRun(scenario, s, skipped);
      for (let i = 0; i < servers.length; i++) {
        plan.push([rep, scenario, servers[(i + rep) % servers.length]!]);
      }
    }
  }
  /** What the runs from plan[from] on usually take, in seconds. */
  const remaining = (from: number) =>
    plan.slice(from).reduce((t, [, sc]) => t + typicalSeconds(sc, s), 0);
  /** The time left for waiting and runs done again, in seconds. */
  const slack = (from: number) =>
    s.softLimitSeconds - elapsed() - remaining(from);

  const runs: RunRecord[] = [];
  const discarded: RunRecord[] = [];
  let late = 0;
  for (let index = 0; index < plan.length; index++) {
    const [rep, scenario, server] = plan[index]!;
    const fits = () =>
      elapsed() + QUIET_WAIT_MAX + 1 + worstCaseSeconds(scenario, s) <=
        s.hardLimitSeconds;
    if (!fits()) {
      late++;
      continue;
    }
    for (let attempt = 1;; attempt++) {
      // RSS does not care about other processes; CPU-bound runs do.
      const wait = Math.min(QUIET_WAIT_MAX, slack(index));
      if (scenario !== "idle" && wait > 0.5) {
        const busy = await waitForQuiet(wait);
        if (busy > QUIET) {
          console.log(`  other processes keep ${percent(busy)} of a core busy`);
        }
      }
      const t0 = performance.now();
      const record = await runOnce(scenario, server, rep, s, env);
      const took = ((performance.now() - t0) / 1000).toFixed(1);
      const what = record.ok ? describe(record) : `FAILED: ${record.error}`;
      console.log(
        `[${rep + 1}/${s.reps}] ${scenario.padEnd(7)} ${
          server.padEnd(14)
        } ${what} (${took} s)`,
      );
      // Again, if that leaves time for every run still planned.
      const again = attempt <= MAX_RETRIES && disturbed(record) && fits() &&
        typicalSeconds(scenario, s) <= slack(index + 1);
      if (!again) {
        runs.push(record);
        break;
      }
      console.log(
        `  other processes were busy (${
          percent(metrics(record).other_busy)
        } of a core): once more`,
      );
      discarded.push(record);
    }
  }
  return { runs, discarded, skipped: late };
}
