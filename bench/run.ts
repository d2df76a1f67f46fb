#!/usr/bin/env -S deno run --allow-run --allow-read=bench/.build --allow-write=bench/.build --allow-net=127.0.0.1 --allow-sys=loadavg,osRelease
// Copyright the upcase authors. MIT license.
/**
 * The upcase benchmark: `deno task bench`.
 *
 * Compiles the C load generator (bench/loadgen.c) and the C epoll reference
 * server (bench/peers/epoll_server.c) with `cc` into bench/.build/, then
 * drives four servers, each on a free port of 127.0.0.1, with that one
 * generator:
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
 * The markdown tables go to stdout and bench/.build/results.md, every raw
 * number to bench/.build/results.json. The whole run stays under 10 minutes
 * (runs that could end later are skipped and said so); `--quick` takes about
 * half a minute. Every process started is killed on the way out.
 *
 * ```sh
 * deno run --allow-run --allow-read=bench/.build --allow-write=bench/.build \
 *   --allow-net=127.0.0.1 --allow-sys=loadavg,osRelease bench/run.ts [--quick]
 * ```
 *
 * Run it from the repository root (the permissions name relative paths).
 * Options: `--quick`, `--only=upcase,epoll` (servers), `--scenarios=rtt,idle`,
 * `--reps=N`, `--no-transform`, `--help`.
 *
 * @module
 */

import {
  formatTransformThroughput,
  measureTransformThroughput,
  type TransformThroughput,
} from "./transform_throughput.ts";

type Scenario = "rtt" | "stream" | "oneshot" | "idle";
type ServerName = "epoll" | "upcase" | "node" | "deno-plain";

const ALL_SCENARIOS: readonly Scenario[] = ["rtt", "stream", "oneshot", "idle"];
const ALL_SERVERS: readonly ServerName[] = [
  "epoll",
  "upcase",
  "node",
  "deno-plain",
];
const REFERENCE: ServerName = "epoll";
/** Passed to server.ts when its --help mentions the flag. */
const UPCASE_MAX_CONNS = 20_000;
/** The RSS per idle connection the targets allow, in bytes. */
const IDLE_TARGET_BYTES = 8192;
/** The generator's CPU share above which a number is marked †. */
const LOADGEN_BUSY = 0.85;
/** The CPU share of other processes above which a run is done again. */
const DISTURBED = 0.15;
/** How often a disturbed run is done again, at most. */
const MAX_RETRIES = 2;
/** Before a run, wait (a little) until other processes use less than this. */
const QUIET = 0.1;
/** The longest wait for quiet before one run, in seconds. */
const QUIET_WAIT_MAX = 10;

/** What one invocation measures. */
interface Settings {
  quick: boolean;
  reps: number;
  warmupSeconds: number;
  rttSeconds: number;
  rttConns: number;
  rttSize: number;
  streamBytes: number;
  /** The generator gives up on a stream after this long. */
  streamLimitSeconds: number;
  oneshotSeconds: number;
  oneshotInFlight: number;
  oneshotSize: number;
  idleConns: number;
  /** The generator gives up opening idle connections after this long. */
  idleConnectLimitSeconds: number;
  /** How long idle connections are held before RSS is read. */
  idleHoldMs: number;
  transform: boolean;
  servers: ServerName[];
  scenarios: Scenario[];
  /** A run is skipped unless it surely ends this long after the start. */
  hardLimitSeconds: number;
  /** Waits for quiet and runs done again must leave the planned runs time
   * to end by then, in seconds after the start. */
  softLimitSeconds: number;
}

const USAGE =
  `Usage: deno task bench [--quick] [--only=SERVERS] [--scenarios=LIST] [--reps=N] [--no-transform]

  --quick            1 repetition, 2 s runs, 256 MiB stream, 2,000 idle conns
  --only=a,b         servers: ${ALL_SERVERS.join(", ")}
  --scenarios=a,b    scenarios: ${ALL_SCENARIOS.join(", ")}
  --reps=N           repetitions (default 3, --quick 1)
  --no-transform     skip timing the transform alone

Results: markdown tables on stdout and in bench/.build/results.md, raw
numbers in bench/.build/results.json, server logs in bench/.build/logs/.
Traffic goes to 127.0.0.1 only.`;

function parseList<T extends string>(
  flag: string,
  value: string,
  allowed: readonly T[],
): T[] {
  const list = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const item of list) {
    if (!(allowed as readonly string[]).includes(item)) {
      throw new Error(
        `Invalid ${flag}: "${item}" is not one of ${allowed.join(", ")}`,
      );
    }
  }
  if (list.length === 0) throw new Error(`Invalid ${flag}: the list is empty`);
  return list as T[];
}

function parseSettings(args: string[]): Settings | undefined {
  let quick = false;
  let transform = true;
  let reps: number | undefined;
  let servers = [...ALL_SERVERS];
  let scenarios = [...ALL_SCENARIOS];
  for (const arg of args) {
    const [flag, value = ""] = arg.split(/=(.*)/s, 2) as [string, string?];
    if (arg === "--help" || arg === "-h") {
      console.log(USAGE);
      return undefined;
    } else if (arg === "--quick") {
      quick = true;
    } else if (arg === "--no-transform") {
      transform = false;
    } else if (flag === "--only") {
      servers = parseList(flag, value, ALL_SERVERS);
    } else if (flag === "--scenarios") {
      scenarios = parseList(flag, value, ALL_SCENARIOS);
    } else if (flag === "--reps" && /^[1-9]$/.test(value)) {
      reps = Number(value);
    } else {
      throw new Error(`Unknown or bad argument: "${arg}"\n\n${USAGE}`);
    }
  }
  return {
    quick,
    reps: reps ?? (quick ? 1 : 3),
    warmupSeconds: quick ? 0.5 : 1,
    rttSeconds: quick ? 2 : 5,
    rttConns: 50,
    rttSize: 64,
    streamBytes: quick ? 256 << 20 : 1 << 30,
    streamLimitSeconds: quick ? 15 : 30,
    oneshotSeconds: quick ? 2 : 5,
    oneshotInFlight: 20,
    oneshotSize: 32,
    idleConns: quick ? 2000 : 10_000,
    idleConnectLimitSeconds: 20,
    idleHoldMs: quick ? 500 : 1000,
    transform,
    servers,
    scenarios,
    hardLimitSeconds: quick ? 150 : 570,
    softLimitSeconds: quick ? 90 : 480,
  };
}

// ------------------------------------------------------------------ paths

function pathOf(url: URL): string {
  return decodeURIComponent(url.pathname);
}

const BENCH_DIR = pathOf(new URL("./", import.meta.url));
const ROOT_DIR = pathOf(new URL("../", import.meta.url));
const BUILD_DIR = `${BENCH_DIR}.build/`;
const LOG_DIR = `${BUILD_DIR}logs/`;
const LOADGEN = `${BUILD_DIR}loadgen`;
const EPOLL_SERVER = `${BUILD_DIR}epoll_server`;

// ------------------------------------------------------- child processes

/** Every child still running; all are killed on the way out. */
const live = new Set<Deno.ChildProcess>();

function spawn(
  command: string,
  args: string[],
  options: Omit<Deno.CommandOptions, "args"> = {},
): Deno.ChildProcess {
  const child = new Deno.Command(command, { args, ...options }).spawn();
  live.add(child);
  child.status.then(() => live.delete(child), () => live.delete(child));
  return child;
}

function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already gone
  }
}

function killAll(): void {
  for (const child of live) killQuietly(child, "SIGKILL");
}

interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to completion, killed after `timeoutMs`; undefined when it
 * cannot be started.
 */
async function capture(
  command: string,
  args: string[],
  timeoutMs = 30_000,
): Promise<Captured | undefined> {
  let child: Deno.ChildProcess;
  try {
    child = spawn(command, args, {
      cwd: ROOT_DIR,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
  } catch (err: unknown) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  const timer = setTimeout(() => killQuietly(child, "SIGKILL"), timeoutMs);
  try {
    const out = await child.output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ----------------------------------------------------------------- /proc

let clockTicks = 100;

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
interface CpuSample {
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
 * @returns The busy share of the last half second, in cores.
 */
async function waitForQuiet(maxSeconds: number): Promise<number> {
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

/** Reads /proc/PID/stat and /proc/stat with one `cat`. */
async function sampleCpu(pid: number): Promise<CpuSample> {
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

/** VmRSS of a process, in KiB. */
async function rssKiB(pid: number): Promise<number> {
  const status = await readProc(`${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!match) throw new Error(`No VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}

// ---------------------------------------------------------------- servers

/** A free loopback port: bind port 0, read it, close. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

interface Environment {
  /** Why the epoll reference is not measured, if it is not. */
  epollSkipped?: string;
  /** No compiler: the generator is one built earlier. */
  staleLoadgen?: boolean;
  nodeSkipped?: string;
  upcaseSkipped?: string;
  /** server.ts --help mentions --max-conns. */
  upcaseMaxConns: boolean;
}

function serverCommand(
  name: ServerName,
  port: number,
  env: Environment,
): string[] {
  const deno = Deno.execPath();
  const allowNet = `--allow-net=127.0.0.1:${port}`;
  switch (name) {
    case "epoll":
      return [EPOLL_SERVER, String(port)];
    case "upcase": {
      const cmd = [deno, "run", allowNet, "server.ts"];
      cmd.push("--host", "127.0.0.1", "--port", String(port));
      if (env.upcaseMaxConns) cmd.push("--max-conns", String(UPCASE_MAX_CONNS));
      return cmd;
    }
    case "node":
      return ["node", "bench/peers/node_server.mjs", String(port)];
    case "deno-plain":
      return [
        deno,
        "run",
        allowNet,
        "bench/peers/deno_plain_server.ts",
        String(port),
      ];
  }
}

interface RunningServer {
  child: Deno.ChildProcess;
  pid: number;
  exited: () => boolean;
}

/** Longest wait for a server to accept its first connection. */
const START_TIMEOUT_MS = 10_000;
/** Longest wait for a server to exit after SIGTERM, before SIGKILL. */
const STOP_TIMEOUT_MS = 3_000;

/**
 * Starts a server from the repository root with stdout and stderr going to
 * `log` (through `sh -c 'exec ...'`, so the PID is the server's own and the
 * driver copies no bytes), and waits until it accepts connections.
 */
async function startServer(
  command: string[],
  port: number,
  log: string,
): Promise<RunningServer> {
  const child = spawn("sh", [
    "-c",
    'log=$1; shift; exec "$@" >"$log" 2>&1',
    "sh",
    log,
    ...command,
  ], { cwd: ROOT_DIR, stdin: "null", stdout: "null", stderr: "null" });
  let done = false;
  child.status.then(() => done = true, () => done = true);
  const server = { child, pid: child.pid, exited: () => done };
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline && !done) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return server;
    } catch {
      await sleep(50);
    }
  }
  await stopServer(server);
  throw new Error(
    `${done ? "Exited" : "Not accepting after 10 s"}: ${await logTail(log)}`,
  );
}

async function stopServer(server: RunningServer): Promise<void> {
  if (!server.exited()) {
    killQuietly(server.child, "SIGTERM");
    const stopped = await Promise.race([
      server.child.status.then(() => true),
      sleep(STOP_TIMEOUT_MS).then(() => false),
    ]);
    if (!stopped) killQuietly(server.child, "SIGKILL");
  }
  await server.child.status;
}

async function logTail(path: string): Promise<string> {
  try {
    const text = (await Deno.readTextFile(path)).trim();
    return text.split("\n").slice(-3).join(" | ") || "(empty log)";
  } catch {
    return "(no log)";
  }
}

// ---------------------------------------------------------------- loadgen

type Json = Record<string, unknown>;

/**
 * Runs the generator and returns its JSON (its last line). Every other line
 * of its stdout ("mark start", "mark end", "ready connected=N") is handed to
 * `onLine` as it comes; in idle mode the generator holds its connections
 * until `onLine` has returned for the "ready" line, then closes them.
 */
async function runLoadgen(
  args: string[],
  timeoutMs: number,
  onLine: (line: string) => Promise<void>,
): Promise<Json> {
  const idle = args[0] === "idle";
  const child = spawn(LOADGEN, args, {
    stdin: idle ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killQuietly(child, "SIGKILL");
  }, timeoutMs);
  const stderr = new Response(child.stderr).text();
  try {
    const lines: string[] = [];
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of child.stdout) {
      pending += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        lines.push(line);
        if (line.startsWith("{")) continue;
        try {
          await onLine(line);
        } finally {
          if (idle && line.startsWith("ready")) await child.stdin.close();
        }
      }
    }
    const status = await child.status;
    const errText = (await stderr).trim();
    const last = lines.findLast((line) => line.startsWith("{"));
    if (timedOut) {
      throw new Error(
        `Load generator killed after ${timeoutMs} ms: ${errText}`,
      );
    }
    if (!status.success || last === undefined) {
      throw new Error(`Load generator failed (${status.code}): ${errText}`);
    }
    return JSON.parse(last) as Json;
  } finally {
    clearTimeout(timer);
    killQuietly(child, "SIGKILL");
    await child.status;
    await stderr.catch(() => "");
  }
}

function num(json: Json | undefined, key: string): number {
  const value = json?.[key];
  return typeof value === "number" ? value : NaN;
}

function loadgenArgs(scenario: Scenario, port: number, s: Settings): string[] {
  const p = String(port);
  switch (scenario) {
    case "rtt":
      return [
        ...["rtt", "-p", p, "-c", String(s.rttConns), "-s", String(s.rttSize)],
        ...["-d", String(s.rttSeconds), "-w", String(s.warmupSeconds)],
      ];
    case "stream":
      return [
        ...["stream", "-p", p, "-c", "1", "-t", String(s.streamBytes)],
        ...["-d", String(s.streamLimitSeconds)],
      ];
    case "oneshot":
      return [
        ...["oneshot", "-p", p, "-c", String(s.oneshotInFlight)],
        ...["-s", String(s.oneshotSize), "-d", String(s.oneshotSeconds)],
        ...["-w", String(s.warmupSeconds)],
      ];
    case "idle":
      return [
        ...["idle", "-p", p, "-c", String(s.idleConns)],
        ...["-d", String(s.idleConnectLimitSeconds)],
        // The generator's own limit on the hold, in case its stdin stays open.
        ...["-H", String(s.idleHoldMs / 1000 + 20)],
      ];
  }
}

/** The longest the generator may run before it is killed, in ms. */
function loadgenTimeoutMs(scenario: Scenario, s: Settings): number {
  switch (scenario) {
    case "rtt":
      return (s.warmupSeconds + s.rttSeconds + 10) * 1000;
    case "stream":
      return (s.streamLimitSeconds + 10) * 1000;
    case "oneshot":
      return (s.warmupSeconds + s.oneshotSeconds + 10) * 1000;
    case "idle":
      return (s.idleConnectLimitSeconds + 25) * 1000 + s.idleHoldMs;
  }
}

/** The longest one run can take (start, generator, stop), in seconds. */
function worstCaseSeconds(scenario: Scenario, s: Settings): number {
  return (START_TIMEOUT_MS + loadgenTimeoutMs(scenario, s) + STOP_TIMEOUT_MS) /
      1000 + 2;
}

/** What one run usually takes, in seconds, for the estimate at the start. */
function typicalSeconds(scenario: Scenario, s: Settings): number {
  return 0.6 + typicalRunSeconds(scenario, s); // 0.5 s for waitForQuiet()
}

function typicalRunSeconds(scenario: Scenario, s: Settings): number {
  switch (scenario) {
    case "rtt":
      return s.warmupSeconds + s.rttSeconds + 0.6;
    case "stream":
      return 0.6 + s.streamBytes / 0.5e9;
    case "oneshot":
      return s.warmupSeconds + s.oneshotSeconds + 0.6;
    case "idle":
      return 1.5 + s.idleHoldMs / 1000 + s.idleConns / 10_000;
  }
}

// ------------------------------------------------------------------- runs

/** One server under one scenario, once. */
interface RunRecord {
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

async function runOnce(
  scenario: Scenario,
  name: ServerName,
  rep: number,
  s: Settings,
  env: Environment,
): Promise<RunRecord> {
  const record: RunRecord = { scenario, server: name, rep, ok: false };
  const port = freePort();
  const log = `${LOG_DIR}${name}-${scenario}-${rep + 1}.log`;
  let server: RunningServer;
  try {
    server = await startServer(serverCommand(name, port, env), port, log);
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

// ---------------------------------------------------------------- summary

/** Median of each metric over the good runs of one server and scenario. */
type Summary = Record<string, number>;

function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The numbers of one run that the tables use. */
function metrics(r: RunRecord): Record<string, number> {
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
  switch (r.scenario) {
    case "rtt":
    case "oneshot":
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

function summarize(runs: RunRecord[]): Map<string, Summary> {
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
    summary.errors = group.reduce(
      (sum, r) =>
        sum + (num(r.loadgen, "errors") || 0) +
        (num(r.loadgen, "verify_failures") || 0),
      0,
    );
    out.set(key, summary);
  }
  return out;
}

// ------------------------------------------------------------------ tables

const numberFormats = new Map<number, Intl.NumberFormat>();
function fmt(value: number | undefined, digits = 0): string {
  if (value === undefined || !Number.isFinite(value)) return "–";
  let f = numberFormats.get(digits);
  if (!f) {
    f = new Intl.NumberFormat("en-US", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
    numberFormats.set(digits, f);
  }
  return f.format(value);
}

function ratioOf(
  value: number | undefined,
  ref: number | undefined,
): number {
  if (value === undefined || ref === undefined || ref === 0) return NaN;
  return value / ref;
}

function fmtRatio(r: number): string {
  return Number.isFinite(r) ? `${fmt(r, r < 10 ? 2 : r < 100 ? 1 : 0)}×` : "–";
}

function percent(share: number | undefined): string {
  return share === undefined || !Number.isFinite(share)
    ? "–"
    : `${fmt(Math.round(share * 100) || 0)}%`;
}

interface Column {
  title: string;
  cell: (s: Summary, ref: Summary | undefined) => string;
}

function value(key: string, digits = 0, scale = 1): Column["cell"] {
  return (s) => fmt((s[key] ?? NaN) * scale, digits);
}

function versus(key: string): Column["cell"] {
  return (s, ref) => fmtRatio(ratioOf(s[key], ref?.[key]));
}

/** Marks a number the generator may have capped. */
function capped(key: string, digits = 0): Column["cell"] {
  return (s) =>
    fmt(s[key], digits) + ((s.loadgen_busy ?? 0) >= LOADGEN_BUSY ? " †" : "");
}

const cpuColumns: Column[] = [
  { title: "server CPU", cell: (s) => percent(s.server_busy) },
  { title: "loadgen CPU", cell: (s) => percent(s.loadgen_busy) },
  { title: "other CPU", cell: (s) => percent(s.other_busy) },
  { title: "errors", cell: (s) => fmt(s.errors) },
];

function columnsFor(scenario: Scenario): Column[] {
  switch (scenario) {
    case "rtt":
    case "oneshot":
      return [
        {
          title: scenario === "rtt" ? "round trips/s" : "conns/s",
          cell: capped("ops_per_s"),
        },
        { title: "vs epoll", cell: versus("ops_per_s") },
        { title: "p50 µs", cell: value("p50_us") },
        { title: "p99 µs", cell: value("p99_us") },
        { title: "p99 vs epoll", cell: versus("p99_us") },
        {
          title: scenario === "rtt"
            ? "server CPU µs/trip"
            : "server CPU µs/conn",
          cell: value("cpu_us_per_op", 1),
        },
        ...cpuColumns,
      ];
    case "stream":
      return [
        { title: "GB/s", cell: capped("gb_per_s", 2) },
        { title: "vs epoll", cell: versus("gb_per_s") },
        { title: "seconds", cell: value("seconds", 2) },
        { title: "server CPU s/GB", cell: value("cpu_s_per_gb", 2) },
        ...cpuColumns,
      ];
    case "idle":
      return [
        { title: "RSS before MiB", cell: value("rss_before_kib", 1, 1 / 1024) },
        { title: "RSS held MiB", cell: value("rss_held_kib", 1, 1 / 1024) },
        { title: "bytes/conn", cell: value("rss_per_conn_b") },
        { title: "vs epoll", cell: versus("rss_per_conn_b") },
        { title: "connect s", cell: value("connect_seconds", 2) },
        { title: "server CPU s", cell: value("server_cpu_s", 2) },
        { title: "errors", cell: (s) => fmt(s.errors) },
      ];
  }
}

function scenarioTitle(scenario: Scenario, s: Settings): string {
  switch (scenario) {
    case "rtt":
      return `rtt: ${s.rttConns} connections × ${s.rttSize} B round trips, ${s.rttSeconds} s`;
    case "stream":
      return `stream: ${fmt(s.streamBytes / 2 ** 20)} MiB through 1 connection`;
    case "oneshot":
      return `oneshot: connect, ${s.oneshotSize} B, half-close, read to EOF, close; ${s.oneshotInFlight} in flight, ${s.oneshotSeconds} s`;
    case "idle":
      return `idle: server RSS growth per connection, ${
        fmt(s.idleConns)
      } idle connections (each after one round trip)`;
  }
}

/** upcase against the targets of the issue. */
function targetRows(summaries: Map<string, Summary>): string[] {
  const get = (scenario: Scenario, server: ServerName) => {
    const summary = summaries.get(`${scenario}/${server}`);
    return summary && (summary.runs ?? 0) > 0 ? summary : undefined;
  };
  const rows: string[] = [];
  const row = (target: string, measured: string, met: boolean | undefined) =>
    rows.push(
      `| ${target} | ${measured} | ${
        met === undefined ? "–" : met ? "yes" : "**no**"
      } |`,
    );
  const ratioRow = (
    target: string,
    scenario: Scenario,
    key: string,
    ok: (r: number) => boolean,
  ) => {
    const up = get(scenario, "upcase");
    const ref = get(scenario, REFERENCE);
    if (!up) return;
    const r = ratioOf(up[key], ref?.[key]);
    const dagger = (ref?.loadgen_busy ?? 0) >= LOADGEN_BUSY ? " (ref †)" : "";
    row(target, fmtRatio(r) + dagger, Number.isFinite(r) ? ok(r) : undefined);
  };
  ratioRow(
    "rtt round trips/s ≥ 0.90× epoll",
    "rtt",
    "ops_per_s",
    (r) => r >= 0.9,
  );
  ratioRow("rtt p99 ≤ 1.2× epoll", "rtt", "p99_us", (r) => r <= 1.2);
  ratioRow("stream GB/s ≥ 0.95× epoll", "stream", "gb_per_s", (r) => r >= 0.95);
  ratioRow(
    "oneshot conns/s ≥ 0.90× epoll",
    "oneshot",
    "ops_per_s",
    (r) => r >= 0.9,
  );
  const idle = get("idle", "upcase");
  if (idle) {
    const b = idle.rss_per_conn_b ?? NaN;
    row(
      `idle ≤ 8 KiB (${fmt(IDLE_TARGET_BYTES)} B) per connection`,
      `${fmt(b)} B`,
      Number.isFinite(b) ? b <= IDLE_TARGET_BYTES : undefined,
    );
  }
  if (rows.length === 0) return [];
  return [
    "",
    "### upcase against its targets",
    "",
    "| target | upcase | met |",
    "| --- | ---: | :---: |",
    ...rows,
  ];
}

function markdown(
  summaries: Map<string, Summary>,
  s: Settings,
  notes: string[],
  transform: TransformThroughput | undefined,
): string {
  const out: string[] = [];
  const reps = s.reps === 1 ? "1 run" : `the median of ${s.reps} runs`;
  out.push(
    `Each cell is ${reps}. "vs epoll" is the ratio to the C epoll reference ` +
      "(throughput: higher is better; latency and memory: lower is better). " +
      "CPU is the share of one core in the measured window (utime + stime " +
      "of all threads, /proc/PID/stat for the servers, getrusage for the " +
      "generator); errors are the generator's, over all runs.",
  );
  out.push(
    "",
    "Load generator: bench/loadgen.c, C, one thread, epoll, 127.0.0.1 " +
      "only; it checks every reply byte. " +
      `† marks a number where it used ≥ ${
        LOADGEN_BUSY * 100
      }% of a core: then the generator and the machine, not only the ` +
      `server, set the pace (it shares ${navigator.hardwareConcurrency} ` +
      "cores with the server).",
  );
  for (const note of notes) out.push("", `Note: ${note}`);
  for (const scenario of s.scenarios) {
    const columns = columnsFor(scenario);
    out.push("", `### ${scenarioTitle(scenario, s)}`, "");
    out.push(`| server | ${columns.map((c) => c.title).join(" | ")} |`);
    out.push(`| --- |${columns.map(() => " ---: |").join("")}`);
    const ref = summaries.get(`${scenario}/${REFERENCE}`);
    const refUsable = ref && (ref.runs ?? 0) > 0 ? ref : undefined;
    for (const server of s.servers) {
      const summary = summaries.get(`${scenario}/${server}`);
      if (!summary) continue;
      if ((summary.runs ?? 0) === 0) {
        out.push(
          `| ${server} | ${
            columns.map((_, i) => i === 0 ? "failed" : "").join(" | ")
          } |`,
        );
        continue;
      }
      const failed = [
        summary.failed_runs ? `${summary.failed_runs} failed` : "",
        summary.disturbed_runs ? `${summary.disturbed_runs} disturbed` : "",
      ].filter((t) => t !== "").join(", ");
      out.push(
        `| ${server}${failed ? ` (${failed})` : ""} | ${
          columns.map((c) => c.cell(summary, refUsable)).join(" | ")
        } |`,
      );
    }
  }
  out.push(...targetRows(summaries));
  if (transform) {
    const ratio = transform.naiveNs / transform.shippedNs;
    out.push(
      "",
      `### transform alone, ${fmt(transform.size)} B, in-process`,
      "",
      "| contender | GB/s | µs per pass | vs naive |",
      "| --- | ---: | ---: | ---: |",
      `| naive per-byte loop | ${fmt(transform.naiveGBps, 2)} | ${
        fmt(transform.naiveNs / 1000, 2)
      } | 1.00× |`,
      `| toUpperInPlace (transform.ts) | ${fmt(transform.shippedGBps, 2)} | ${
        fmt(transform.shippedNs / 1000, 2)
      } | ${fmtRatio(ratio)} |`,
    );
  }
  return out.join("\n");
}

// ------------------------------------------------------------------- setup

/**
 * A digest of the upcase server's sources (the repository's top-level .ts
 * files), to tell whether they changed while the benchmark ran.
 */
async function sourcesDigest(): Promise<string> {
  const out = await capture("sh", ["-c", "cat ./*.ts | cksum"]);
  return out?.stdout.trim() ?? "";
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * Compiles the generator and the reference. Without a compiler the reference
 * is skipped and a generator built earlier is used, if there is one.
 *
 * @returns Why nothing can be measured, if nothing can.
 */
async function compile(env: Environment): Promise<string | undefined> {
  await Deno.mkdir(LOG_DIR, { recursive: true });
  const builds = [
    ["loadgen.c", LOADGEN, "-O2"],
    ["peers/epoll_server.c", EPOLL_SERVER, "-O3"],
  ] as const;
  for (const [source, output, opt] of builds) {
    const out = await capture("cc", [
      opt,
      "-Wall",
      "-Wextra",
      "-o",
      output,
      `${BENCH_DIR}${source}`,
    ], 60_000);
    const why = out === undefined
      ? "no C compiler (cc)"
      : out.code !== 0
      ? `cc failed on bench/${source}: ${out.stderr.trim()}`
      : undefined;
    if (out?.stderr.trim() && out.code === 0) console.error(out.stderr.trim());
    if (why === undefined) continue;
    if (output === EPOLL_SERVER) {
      env.epollSkipped = why;
    } else if (out === undefined && await isFile(LOADGEN)) {
      env.staleLoadgen = true;
    } else {
      return why;
    }
  }
  return undefined;
}

async function probe(env: Environment, s: Settings): Promise<Json> {
  const getconf = await capture("getconf", ["CLK_TCK"]);
  const ticks = Number(getconf?.stdout.trim());
  if (Number.isInteger(ticks) && ticks > 0) clockTicks = ticks;

  const node = s.servers.includes("node")
    ? await capture("node", ["--version"])
    : undefined;
  if (s.servers.includes("node") && node?.code !== 0) {
    env.nodeSkipped = "node was not found";
  }

  const help = await capture(Deno.execPath(), [
    "run",
    "--quiet",
    "server.ts",
    "--help",
  ]);
  if (help?.code !== 0) {
    env.upcaseSkipped = `server.ts --help failed: ${
      help?.stderr.trim() || "no output"
    }`;
  }
  env.upcaseMaxConns = help?.stdout.includes("--max-conns") ?? false;

  const cc = await capture("cc", ["--version"]);
  return {
    deno: Deno.version.deno,
    node: node?.stdout.trim(),
    cc: cc?.stdout.split("\n")[0],
    os: Deno.osRelease(),
    cpus: navigator.hardwareConcurrency,
    loadavg: Deno.loadavg(),
    clk_tck: clockTicks,
    upcase_max_conns_flag: env.upcaseMaxConns,
  };
}

/**
 * Whether other processes took enough CPU to spoil the run. Not told for
 * idle runs (RSS does not care) nor for windows under a second, where clock
 * ticks make the share too coarse.
 */
function disturbed(r: RunRecord): boolean {
  return r.ok && r.scenario !== "idle" &&
    (r.serverWindowSeconds ?? 0) >= 1 &&
    (metrics(r).other_busy ?? 0) > DISTURBED;
}

function describe(r: RunRecord): string {
  const g = r.loadgen;
  const errs = num(g, "errors") + num(g, "verify_failures");
  const tail = errs > 0 ? `  ERRORS ${errs}: ${g?.first_error}` : "";
  const m = metrics(r);
  const cpu = `CPU: server ${percent(m.server_busy)}, loadgen ${
    percent(m.loadgen_busy)
  }, other ${percent(m.other_busy)}`;
  switch (r.scenario) {
    case "rtt":
    case "oneshot":
      return `${fmt(num(g, "ops_per_s"))}/s, p99 ${
        fmt(num(g, "p99_us"))
      } µs, ${cpu}${tail}`;
    case "stream":
      return `${fmt(num(g, "bytes_per_s") / 1e9, 2)} GB/s, ${
        fmt(num(g, "seconds"), 2)
      } s, ${cpu}${tail}`;
    case "idle":
      return `${fmt(r.rssPerConnBytes)} B/conn (${
        fmt((r.rssBeforeKiB ?? NaN) / 1024, 1)
      } -> ${fmt((r.rssHeldKiB ?? NaN) / 1024, 1)} MiB, ${
        fmt(num(g, "connected"))
      } conns)${tail}`;
  }
}

// -------------------------------------------------------------------- main

async function main(): Promise<number> {
  const s = parseSettings(Deno.args);
  if (!s) return 0;
  const started = Date.now();
  const elapsed = () => (Date.now() - started) / 1000;
  const env: Environment = { upcaseMaxConns: false };
  const notes: string[] = [];

  // Logs of an earlier invocation would only confuse.
  await Deno.remove(LOG_DIR, { recursive: true }).catch(() => {});
  const noLoadgen = await compile(env);
  if (noLoadgen) {
    const message = `Skipped: the C load generator and the C epoll ` +
      `reference could not be built (${noLoadgen}); every measurement ` +
      "needs the generator, so nothing was measured.";
    console.log(message);
    await Deno.writeTextFile(`${BUILD_DIR}results.md`, message + "\n");
    return 0;
  }
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
  ];
  for (const [name, why] of skip) {
    if (why && s.servers.includes(name)) {
      notes.push(`${name} skipped: ${why}.`);
      s.servers = s.servers.filter((n) => n !== name);
    }
  }
  if (s.servers.includes("upcase")) {
    notes.push(
      "upcase runs as `deno run --allow-net=127.0.0.1:PORT server.ts " +
        "--host 127.0.0.1 --port PORT" +
        (env.upcaseMaxConns ? ` --max-conns ${UPCASE_MAX_CONNS}` : "") +
        "`, logging to bench/.build/logs/" +
        (env.upcaseMaxConns ? "." : " (server.ts has no --max-conns flag)."),
    );
  }
  const estimate = s.reps * s.servers.length *
      s.scenarios.reduce((sum, sc) => sum + typicalSeconds(sc, s), 0) +
    (s.transform ? (s.quick ? 2 : 5) : 0);
  for (const note of notes) console.log(note);
  console.log(
    `${s.servers.join(", ")} × ${s.scenarios.join(", ")} × ${s.reps} ` +
      `rep(s), about ${fmt(estimate)} s; load ${
        (machine.loadavg as number[]).map((l) => l.toFixed(2)).join(" ")
      }`,
  );

  // Round-robin, rotated each repetition, so no server always goes first.
  const plan: [number, Scenario, ServerName][] = [];
  for (let rep = 0; rep < s.reps; rep++) {
    for (const scenario of s.scenarios) {
      for (let i = 0; i < s.servers.length; i++) {
        plan.push([rep, scenario, s.servers[(i + rep) % s.servers.length]!]);
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
  /** Runs done again because other processes were busy. */
  const discarded: RunRecord[] = [];
  let skipped = 0;
  for (let index = 0; index < plan.length; index++) {
    const [rep, scenario, server] = plan[index]!;
    const fits = () =>
      elapsed() + QUIET_WAIT_MAX + 1 + worstCaseSeconds(scenario, s) <=
        s.hardLimitSeconds;
    if (!fits()) {
      skipped++;
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
          server.padEnd(10)
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
  if (digest !== await sourcesDigest()) {
    notes.push(
      "**the server's sources (top-level .ts files) changed during the " +
        "run**: some runs measured one version, some another.",
    );
  }
  if (discarded.length > 0) {
    notes.push(
      `${discarded.length} run(s) were done again because other processes ` +
        `used more than ${DISTURBED * 100}% of a core meanwhile; ` +
        '"disturbed" counts the kept runs for which that was still so.',
    );
  }
  if (skipped > 0) {
    notes.push(
      `${skipped} run(s) were skipped: they could have ended after ` +
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
  const table = markdown(summaries, s, notes, transform) +
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
