// Copyright the upcase authors. MIT license.
/**
 * CPU and memory of the servers and the machine, read from /proc, and the
 * wait for a quiet machine before a run.
 *
 * @module
 */

import { capture, sleep } from "./_process.ts";

/** Before a run, wait (a little) until other processes use less than this. */
export const QUIET = 0.1;

let clockTicks = 100;

/**
 * Reads the kernel's clock ticks per second (`getconf CLK_TCK`), the unit
 * of the CPU times in /proc; 100 when getconf cannot tell.
 *
 * @returns The clock ticks per second now in use.
 */
export async function readClockTicks(): Promise<number> {
  const getconf = await capture("getconf", ["CLK_TCK"]);
  const ticks = Number(getconf?.stdout.trim());
  if (Number.isInteger(ticks) && ticks > 0) clockTicks = ticks;
  return clockTicks;
}

/**
 * Reads files under /proc (`readProc("stat", "42/status")`), one after the
 * other. Deno grants /proc/PID/* only with --allow-all, so `cat` reads them
 * (--allow-run is needed anyway).
 */
async function readProc(...files: string[]): Promise<string> {
  const paths = files.map((file) => `/proc/${file}`);
  const out = await capture("cat", paths, 5000);
  if (out?.code !== 0) {
    throw new Error(
      `Cannot read ${paths.join(" ")}: ${out?.stderr.trim() ?? "no cat"}`,
    );
  }
  return out.stdout;
}

/** CPU counters at one moment, in seconds. */
export interface CpuSample {
  /** utime + stime of the server (all its threads). */
  server: number;
  /** Busy time of the whole machine, all CPUs: user, nice, system, irq, softirq. */
  machine: number;
}

/**
 * Busy time of the whole machine (all CPUs: user, nice, system, irq and
 * softirq) from the text of /proc/stat, in seconds.
 */
function machineBusy(procStat: string): number {
  // "cpu  user nice system idle iowait irq softirq steal ..."
  const cpu = /^cpu +(.*)$/m.exec(procStat)?.[1]?.split(/ +/).map(Number) ??
    [];
  const [user = NaN, nice = NaN, system = NaN] = cpu;
  const [irq = NaN, softirq = NaN] = cpu.slice(5);
  return (user + nice + system + irq + softirq) / clockTicks;
}

/**
 * Waits until the machine has been quiet (less than {@linkcode QUIET} of a
 * core busy) for half a second, or `maxSeconds` have passed.
 *
 * @param maxSeconds The longest wait.
 * @returns The busy share of the last half second, in cores.
 */
export async function waitForQuiet(maxSeconds: number): Promise<number> {
  const deadline = Date.now() + maxSeconds * 1000;
  let share = NaN;
  do {
    const a = machineBusy(await readProc("stat"));
    const t0 = performance.now();
    await sleep(500);
    const b = machineBusy(await readProc("stat"));
    share = (b - a) / ((performance.now() - t0) / 1000);
    if (!(share > QUIET)) break;
  } while (Date.now() < deadline);
  return share;
}

/**
 * Reads /proc/PID/stat and /proc/stat with one `cat`.
 *
 * @param pid The server's process.
 * @returns Its CPU time and the machine's.
 */
export async function sampleCpu(pid: number): Promise<CpuSample> {
  const text = await readProc(`${pid}/stat`, "stat");
  // /proc/PID/stat is one line; /proc/stat follows.
  const newline = text.indexOf("\n");
  const stat = text.slice(0, newline);
  // The fields after the command name, which is in parentheses, start with
  // field 3 (state); utime is field 14 and stime field 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const server = Number(fields[14 - 3]) + Number(fields[15 - 3]);
  return {
    server: server / clockTicks,
    machine: machineBusy(text.slice(newline + 1)),
  };
}

/**
 * VmRSS of a process.
 *
 * @param pid The process.
 * @returns Its resident set, in KiB.
 * @throws {Error} When /proc/PID/status has no VmRSS line.
 */
export async function rssKiB(pid: number): Promise<number> {
  const status = await readProc(`${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!match) throw new Error(`No VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}
