// Copyright the upcase authors. MIT license.
/**
 * From runs to numbers: the metrics of one run, and their medians over the
 * repetitions of each server and scenario.
 *
 * @module
 */

import { num } from "./_loadgen.ts";
import type { RunRecord } from "./_runs.ts";
import { baseScenario, isUdp } from "./_settings.ts";

/** The CPU share of other processes above which a run is done again. */
export const DISTURBED = 0.15;

/** Median of each metric over the good runs of one server and scenario. */
export type Summary = Record<string, number>;

function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * The numbers of one run that the tables use.
 *
 * @param r The run.
 * @returns Each metric by name; NaN where the run does not tell.
 */
export function metrics(r: RunRecord): Record<string, number> {
  const g = r.loadgen;
  const serverCpu = r.serverCpuSeconds ?? NaN;
  const loadgenCpu = num(g, "cpu_user_s") + num(g, "cpu_sys_s");
  const m: Record<string, number> = {
    server_cpu_s: serverCpu,
    // Shares of one core in the measured window.
    server_busy: serverCpu / (r.serverWindowSeconds ?? NaN),
    loadgen_cpu_s: loadgenCpu,
    loadgen_busy: loadgenCpu / num(g, "window_s"),
  };
  // The rest of the machine: other processes, kernel threads (ksoftirqd
  // among them), this driver.
  m.other_busy = (r.machineCpuSeconds ?? NaN) /
      (r.serverWindowSeconds ?? NaN) - m.server_busy! - m.loadgen_busy!;
  switch (baseScenario(r.scenario)) {
    case "rtt":
    case "oneshot":
    case "udp":
      for (const key of ["ops_per_s", "p50_us", "p99_us", "p999_us"]) {
        m[key] = num(g, key);
      }
      m.cpu_us_per_op = serverCpu * 1e6 / num(g, "ops");
      break;
    case "stream":
      m.gb_per_s = num(g, "bytes_per_s") / 1e9;
      m.seconds = num(g, "seconds");
      m.cpu_s_per_gb = serverCpu / (num(g, "bytes") / 1e9);
      break;
    case "idle":
      m.rss_before_kib = r.rssBeforeKiB ?? NaN;
      m.rss_held_kib = r.rssHeldKiB ?? NaN;
      m.rss_per_conn_b = r.rssPerConnBytes ?? NaN;
      m.connected = num(g, "connected");
      m.connect_seconds = num(g, "connect_seconds");
      break;
  }
  return m;
}

/**
 * Whether other processes took enough CPU to spoil the run. Not told for
 * idle runs (RSS does not care) nor for windows under a second, where clock
 * ticks make the share too coarse.
 *
 * @param r The run.
 * @returns True when the run is disturbed.
 */
export function disturbed(r: RunRecord): boolean {
  return r.ok && r.scenario !== "idle" &&
    (r.serverWindowSeconds ?? 0) >= 1 &&
    (metrics(r).other_busy ?? 0) > DISTURBED;
}

/**
 * The medians of each server and scenario, with counts of the runs.
 *
 * @param runs Every run kept.
 * @returns A summary by `scenario/server`.
 */
export function summarize(runs: RunRecord[]): Map<string, Summary> {
  const out = new Map<string, Summary>();
  const groups = new Map<string, RunRecord[]>();
  for (const r of runs) {
    const key = `${r.scenario}/${r.server}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  for (const [key, group] of groups) {
    const good = group.filter((r) => r.ok);
    const all = good.map(metrics);
    const summary: Summary = {};
    for (const name of Object.keys(all[0] ?? {})) {
      summary[name] = median(all.map((m) => m[name] ?? NaN));
    }
    summary.runs = good.length;
    summary.failed_runs = group.length - good.length;
    summary.disturbed_runs = good.filter(disturbed).length;
    // Errors are added up over every run, not medianed: any is worth seeing.
    const total = (...keys: string[]) =>
      group.reduce(
        (sum, r) =>
          sum +
          keys.reduce((n, k) => n + Math.max(0, num(r.loadgen, k) || 0), 0),
        0,
      );
    summary.errors = total("errors", "verify_failures");
    if (isUdp(group[0]!.scenario)) {
      // So are the datagrams lost, and the range of the round trips/s.
      summary.lost = total("lost");
      summary.late = total("late");
      summary.rcvbuf_drops = total("rcvbuf_drops"); // -1: not known
      const rates = all.map((m) => m.ops_per_s ?? NaN)
        .filter((v) => Number.isFinite(v));
      summary.ops_per_s_min = rates.length ? Math.min(...rates) : NaN;
      summary.ops_per_s_max = rates.length ? Math.max(...rates) : NaN;
    }
    out.set(key, summary);
  }
  return out;
}
