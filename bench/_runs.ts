// Copyright the upcase authors. MIT license.
/**
 * One run: a fresh server under one scenario, the generator against it, and
 * the server's CPU and memory in the generator's measured window.
 *
 * @module
 */

import type { Environment } from "./_environment.ts";
import { type Json, num, runLoadgen } from "./_loadgen.ts";
import { LOG_DIR } from "./_paths.ts";
import { sleep } from "./_process.ts";
import { loadgenArgs, loadgenTimeoutMs } from "./_scenarios.ts";
import {
  freePorts,
  freeUdpPorts,
  needsMetricsPort,
  readyLine,
  type RunningServer,
  serverCommand,
  startServer,
  stopServer,
} from "./_servers.ts";
import {
  isTls,
  isUdp,
  type Scenario,
  type ServerName,
  type Settings,
} from "./_settings.ts";
import { type CpuSample, rssKiB, sampleCpu } from "./_system.ts";

/** One server under one scenario, once. */
export interface RunRecord {
  scenario: Scenario;
  server: ServerName;
  rep: number;
  ok: boolean;
  error?: string;
  /** The generator's JSON. */
  loadgen?: Json;
  /** Server CPU (utime + stime) in the generator's window, in seconds. */
  serverCpuSeconds?: number;
  /** The window as the driver saw it, in seconds. */
  serverWindowSeconds?: number;
  /** Busy CPU time of the whole machine in the window, in seconds. */
  machineCpuSeconds?: number;
  rssBeforeKiB?: number;
  rssHeldKiB?: number;
  rssPerConnBytes?: number;
}

/**
 * Starts the server, runs the generator against it, stops the server.
 *
 * @param scenario The scenario.
 * @param name The server.
 * @param rep The repetition, from 0 (names the log).
 * @param s The settings.
 * @param env What the probe found.
 * @returns The record; a failure is recorded, not thrown.
 */
export async function runOnce(
  scenario: Scenario,
  name: ServerName,
  rep: number,
  s: Settings,
  env: Environment,
): Promise<RunRecord> {
  const record: RunRecord = { scenario, server: name, rep, ok: false };
  const udp = isUdp(scenario);
  const [port, metricsPort] =
    (udp ? freeUdpPorts(1) : freePorts(needsMetricsPort(name) ? 2 : 1)) as [
      number,
      number?,
    ];
  const log = `${LOG_DIR}${name}-${scenario}-${rep + 1}.log`;
  let server: RunningServer;
  try {
    const command = serverCommand(name, port, env, {
      tls: isTls(scenario),
      udp,
      metricsPort,
    });
    server = await startServer(command, port, log, {
      readyLine: readyLine(name, udp),
      udp,
    });
  } catch (err: unknown) {
    record.error = `Server: ${err instanceof Error ? err.message : err}`;
    return record;
  }
  try {
    const pid = server.pid;
    if (scenario === "idle") {
      await sleep(500); // Let start-up garbage settle
      record.rssBeforeKiB = await rssKiB(pid);
    }
    let cpuStart: CpuSample | undefined;
    let tStart = NaN;
    const onLine = async (line: string) => {
      if (line === "mark start") {
        cpuStart = await sampleCpu(pid);
        tStart = performance.now();
      } else if (line === "mark end" && cpuStart) {
        const cpuEnd = await sampleCpu(pid);
        record.serverWindowSeconds = (performance.now() - tStart) / 1000;
        record.serverCpuSeconds = cpuEnd.server - cpuStart.server;
        record.machineCpuSeconds = cpuEnd.machine - cpuStart.machine;
      } else if (line.startsWith("ready")) {
        // Two samples across the hold; the larger is the held footprint.
        await sleep(s.idleHoldMs / 2);
        const first = await rssKiB(pid);
        await sleep(s.idleHoldMs / 2);
        record.rssHeldKiB = Math.max(first, await rssKiB(pid));
      }
    };
    const result = await runLoadgen(
      loadgenArgs(scenario, port, s),
      loadgenTimeoutMs(scenario, s),
      onLine,
    );
    record.loadgen = result;
    if (scenario === "idle") {
      const connected = num(result, "connected");
      if (
        record.rssHeldKiB !== undefined && record.rssBeforeKiB !== undefined &&
        connected > 0
      ) {
        record.rssPerConnBytes = (record.rssHeldKiB - record.rssBeforeKiB) *
          1024 / connected;
      }
      if (connected < s.idleConns) {
        throw new Error(
          `Only ${connected} of ${s.idleConns} idle connections were set up: ${
            result.first_error ?? "no error"
          }`,
        );
      }
    }
    if (server.exited()) throw new Error("The server exited during the run");
    record.ok = true;
  } catch (err: unknown) {
    record.error = err instanceof Error ? err.message : String(err);
  } finally {
    await stopServer(server);
  }
  return record;
}
