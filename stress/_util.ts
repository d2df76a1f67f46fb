// Copyright the upcase authors. MIT license.
// Helpers for the reliability scenarios: a seeded PRNG, /proc readings, a
// server child process watched through /proc and killed on Ctrl-C, and
// well-behaved clients that check their bytes while a scenario runs.

import { format as formatBytes } from "@std/fmt/bytes";
import { connect, type ConnectTlsOptions, request } from "../mod.ts";
import { closeQuietly } from "../src/_io.ts";
import { V2_SIGNATURE } from "../src/_proxy_header.ts";
import {
  denoRun,
  expectedUpper,
  firstDifference,
  type Output,
  readExactly,
  ServerProcess,
  writeAll,
} from "../tests/_util.ts";

/** 1 KiB. */
export const KiB = 1024;
/** 1 MiB. */
export const MiB = 1024 * 1024;

/** What one scenario did, for the report table. */
export interface ScenarioResult {
  /** Cases (property test) or client connections the scenario made. */
  cases: number;
  /** Payload bytes sent to the server by the scenario's clients. */
  bytes: number;
  /**
   * Connections the server ended with an error (a reset peer, a broken
   * pipe). Expected where the scenario resets; a wrong byte or a stuck
   * connection fails the scenario instead.
   */
  errors: number;
  /** The server's resident memory in bytes, when it was measured. */
  rss?: RssFigures;
  /** Facts worth a line in the report, e.g. how much a slow reader pushed. */
  notes: string[];
  /** Why the scenario did not run here; the other figures are then 0. */
  skipped?: string;
}

/** Resident set sizes of the server, in bytes. */
export interface RssFigures {
  start: number;
  peak: number;
  end: number;
  /** True when the server ran inside this process (the figure includes the clients). */
  inProcess?: boolean;
}

/** A byte count for people, in binary units: "8.5 MiB". */
export function formatSize(bytes: number): string {
  return formatBytes(bytes, { binary: true });
}

/** A result for a scenario that cannot run here. */
export function skippedResult(reason: string): ScenarioResult {
  return { cases: 0, bytes: 0, errors: 0, notes: [], skipped: reason };
}

// ---------------------------------------------------------------------------
// Randomness you can replay.

/**
 * A small seeded PRNG (mulberry32): the same seed gives the same cases, so a
 * failure found with `SEED=n` can be run again.
 */
export class Random {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer from `min` to `max`, both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** An integer from `min` to `max` (min >= 1), small ones as likely as large. */
  logInt(min: number, max: number): number {
    const lo = Math.log(min), hi = Math.log(max + 1);
    return Math.min(max, Math.floor(Math.exp(lo + this.next() * (hi - lo))));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** `n` bytes, every value equally likely. */
  bytes(n: number): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const word = (this.next() * 4294967296) >>> 0;
      out[i] = word;
      out[i + 1] = word >>> 8;
      out[i + 2] = word >>> 16;
      out[i + 3] = word >>> 24;
    }
    for (; i < n; i++) out[i] = this.int(0, 255);
    return out;
  }

  /** An independent generator for sub-case `index`, the same for the same seed. */
  fork(index: number): Random {
    return new Random(
      (this.#state ^ Math.imul(index + 1, 0x9e3779b9)) + index,
    );
  }
}

/**
 * The seed for this run: `SEED` from the environment, else a random one.
 *
 * @throws {Error} When `SEED` is not an integer from 0 to 4294967295.
 */
export function resolveSeed(): number {
  let text: string | undefined;
  try {
    text = Deno.env.get("SEED");
  } catch (err: unknown) {
    if (!(err instanceof Deno.errors.NotCapable)) throw err;
  }
  if (text === undefined || text === "") {
    return crypto.getRandomValues(new Uint32Array(1))[0]!;
  }
  const seed = /^\d{1,10}$/.test(text) ? Number(text) : NaN;
  if (!(seed >= 0 && seed <= 0xffffffff)) {
    throw new Error(
      `Invalid SEED: "${text}" is not an integer from 0 to 4294967295`,
    );
  }
  return seed;
}

/** The line that says how to replay a run. */
export function seedLine(seed: number, command: string): string {
  return `SEED=${seed} (re-run with SEED=${seed} ${command})`;
}

// ---------------------------------------------------------------------------
// Time.

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Settles like `promise`, or rejects with "`what` timed out after N ms" once
 * `ms` have passed; `onTimeout` then runs first (close the connection the
 * promise waits on, so nothing is left pending).
 */
export async function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
  onTimeout?: () => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new Error(`${what} timed out after ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Marks `promise` as handled at once, so that if it rejects before it is
 * awaited the process does not die of an unhandled rejection; await the
 * returned promise later as usual.
 */
export function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

/** Polls `check` every 20 ms until it is true, or throws after `ms`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`Timed out after ${ms} ms: ${what}`);
    await delay(20);
  }
}

// ---------------------------------------------------------------------------
// Bytes on a connection.

/**
 * Throws unless `actual` is the transform of `expected`'s request bytes,
 * naming the first differing offset.
 */
export function checkReply(
  actual: Uint8Array,
  request: Uint8Array,
  what: string,
): void {
  const expected = expectedUpper(request);
  const at = firstDifference(actual, expected);
  if (at !== -1) {
    throw new Error(
      `${what}: reply differs at byte ${at} (got ${actual.length} B, want ${expected.length} B)`,
    );
  }
}

/**
 * Sends `payload` on an open connection and reads back exactly as many bytes,
 * both at once, checking they are its transform. The connection stays open.
 */
export async function exchangeChecked(
  conn: Deno.Conn,
  payload: Uint8Array,
  what: string,
): Promise<void> {
  const [reply] = await Promise.all([
    readExactly(conn, payload.length),
    writeAll(conn, payload),
  ]);
  checkReply(reply, payload, what);
}

/**
 * One round trip with {@linkcode request} (send, half-close, read to EOF)
 * that must bring back the transform of `payload` within `ms`; over TLS
 * when `tls` is given (the handshake counts in `ms`).
 *
 * @throws {Error} Naming `what` when the reply is wrong or late.
 */
export async function checkedRequest(
  port: number,
  payload: Uint8Array,
  what: string,
  ms: number,
  hostname = "127.0.0.1",
  tls?: ConnectTlsOptions,
  proxyHeader?: 1 | 2,
): Promise<void> {
  const abort = new AbortController();
  const reply = await withTimeout(
    request(payload, {
      hostname,
      port,
      signal: abort.signal,
      tls,
      proxyHeader,
    }),
    ms,
    what,
    () => abort.abort(),
  );
  checkReply(reply, payload, what);
}

/**
 * A PROXY v2 header for AF_UNIX STREAM with these two paths (108 bytes
 * each, cut or padded with zeros): a peer-controlled string that reaches
 * the server's log.
 */
export function proxyV2Unix(
  source: Uint8Array,
  destination: Uint8Array,
): Uint8Array {
  const header = new Uint8Array(16 + 216);
  header.set([...V2_SIGNATURE, 0x21, 0x31, 0x00, 216]);
  header.set(source.subarray(0, 108), 16);
  header.set(destination.subarray(0, 108), 16 + 108);
  return header;
}

/** Whether `err` is what a socket the peer reset or closed throws. */
export function isPeerGone(err: unknown): boolean {
  return err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.NotConnected ||
    err instanceof Deno.errors.ConnectionAborted;
}

/** Whether `err` is what a pending read or write throws once we closed it. */
export function isClosedHere(err: unknown): boolean {
  return err instanceof Deno.errors.BadResource ||
    err instanceof Deno.errors.Interrupted;
}

// ---------------------------------------------------------------------------
// The server process, seen from /proc.

/**
 * Runs a small command that reads /proc and returns its stdout. Deno asks for
 * `--allow-all` to read /proc/PID itself; a child process needs only
 * `--allow-run`.
 *
 * With `skipVanished`, entries that disappear while the command walks a
 * directory (a descriptor closed between `readdir` and `lstat`, which `ls`
 * reports as "No such file or directory" and exit status 1) are left out of
 * the listing instead of failing it.
 *
 * @throws {Deno.errors.NotFound} When it fails (the process is gone).
 */
async function readProc(
  command: string,
  args: string[],
  skipVanished = false,
): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { LC_ALL: "C" },
  }).output();
  const decoder = new TextDecoder();
  const problems = decoder.decode(stderr).trim();
  if (!success && !(skipVanished && onlyVanishedEntries(problems))) {
    throw new Deno.errors.NotFound(`${command} ${args.join(" ")}: ${problems}`);
  }
  return decoder.decode(stdout);
}

/** Whether every line of `stderr` is about an entry gone from /proc/PID/fd. */
function onlyVanishedEntries(stderr: string): boolean {
  return stderr !== "" &&
    stderr.split("\n").every((line) =>
      /(cannot access|cannot read symbolic link) '\/proc\/\d+\/fd\/\d+': No such file or directory$/
        .test(line)
    );
}

/** The resident set size of process `pid`, in bytes (VmRSS). */
export async function readRss(pid: number): Promise<number> {
  const status = await readProc("cat", [`/proc/${pid}/status`]);
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match && /^State:\s+Z/m.test(status)) {
    // A process that has exited and not been reaped yet has no memory.
    throw new Deno.errors.NotFound(`Process ${pid} has exited`);
  }
  if (!match) throw new Error(`No VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * KiB;
}

/** CPU time (user + system) process `pid` has used, in milliseconds. */
export async function readCpuMs(pid: number): Promise<number> {
  const stat = await readProc("cat", [`/proc/${pid}/stat`]);
  // Fields after "(comm)": state is field 3, utime 14, stime 15, in USER_HZ
  // (100 a second on Linux).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/**
 * How many TCP sockets process `pid` has open, its listener included (Deno
 * also holds Unix socket pairs, some created lazily: they do not count).
 */
export async function countSockets(pid: number): Promise<number> {
  const [listing, tables] = await Promise.all([
    readProc("ls", ["-l", `/proc/${pid}/fd/`], true),
    readProc("cat", ["/proc/net/tcp", "/proc/net/tcp6"]),
  ]);
  const tcp = new Set<string>();
  for (const line of tables.split("\n")) {
    const inode = line.trim().split(/\s+/)[9];
    if (inode !== undefined && inode !== "0") tcp.add(inode);
  }
  let sockets = 0;
  for (const match of listing.matchAll(/-> socket:\[(\d+)\]/g)) {
    if (tcp.has(match[1]!)) sockets++;
  }
  return sockets;
}

/** How many descriptors of any kind process `pid` has open. */
export async function countDescriptors(pid: number): Promise<number> {
  const listing = await readProc("ls", ["-l", `/proc/${pid}/fd/`], true);
  return listing.split("\n").filter((line) => line.includes(" -> ")).length;
}

/**
 * Sets the open-file limit (soft and hard) of the running process `pid`, it
 * alone, with `prlimit` (util-linux).
 */
export async function setOpenFileLimit(
  pid: number,
  limit: number,
): Promise<void> {
  const out = await new Deno.Command("prlimit", {
    args: ["--pid", String(pid), `--nofile=${limit}:${limit}`],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `prlimit failed: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
}

/** The soft limit on open files of process `pid`, from /proc/PID/limits. */
export async function readOpenFileLimit(pid: number): Promise<number> {
  const limits = await readProc("cat", [`/proc/${pid}/limits`]);
  const match = /^Max open files\s+(\d+)/m.exec(limits);
  if (!match) throw new Error(`No "Max open files" in /proc/${pid}/limits`);
  return Number(match[1]);
}

/** Samples a process's RSS in the background: start, peak, latest. */
export class RssSampler {
  readonly samples: { at: number; rss: number }[] = [];
  #pid: number;
  #timer: ReturnType<typeof setInterval>;
  #pending: Promise<void> = Promise.resolve();

  private constructor(pid: number, intervalMs: number) {
    this.#pid = pid;
    this.#timer = setInterval(() => {
      this.#pending = this.#pending.then(() => this.#sample());
    }, intervalMs);
  }

  /** Takes a first sample now, then one every `intervalMs`. */
  static async start(pid: number, intervalMs = 100): Promise<RssSampler> {
    const sampler = new RssSampler(pid, intervalMs);
    await sampler.#sample();
    return sampler;
  }

  async #sample(): Promise<void> {
    try {
      this.samples.push({ at: Date.now(), rss: await readRss(this.#pid) });
    } catch (err: unknown) {
      if (!(err instanceof Deno.errors.NotFound)) throw err; // it exited
    }
  }

  /** Takes a last sample, stops, and returns start, peak and end. */
  async stop(): Promise<RssFigures> {
    clearInterval(this.#timer);
    await this.#pending;
    await this.#sample();
    const rss = this.samples.map((s) => s.rss);
    return {
      start: rss[0] ?? 0,
      peak: Math.max(0, ...rss),
      end: rss.at(-1) ?? 0,
    };
  }
}

// ---------------------------------------------------------------------------
// server.ts as a child process.

/** How to kill each server started and not yet stopped, for an interrupted run. */
const running = new Set<() => void>();

/** SIGKILLs every server child still running (for a signal handler). */
export function killServers(): void {
  for (const kill of running) kill();
}

/**
 * SIGKILLs `child` unless it has exited.
 *
 * @param child A process this run started.
 */
export function killQuietly(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGKILL");
  } catch (err: unknown) {
    if (!(err instanceof TypeError)) throw err; // already exited
  }
}

/**
 * Has {@linkcode killServers} kill `child` until the returned disposable is
 * disposed: a server started outside {@linkcode WatchedServer} is not left
 * running when the run is interrupted.
 */
export function killOnInterrupt(child: Deno.ChildProcess): Disposable {
  const kill = () => killQuietly(child);
  running.add(kill);
  return { [Symbol.dispose]: () => running.delete(kill) };
}

/** Matches the log line of an accepted connection. */
export const CONNECT_LINE = /^received from /;
/** Matches the log line of a connection that ended, cleanly or not. */
export const CLOSE_LINE = /^(closed|error from) /;

/**
 * `server.ts` in a child process ({@linkcode ServerProcess}, which reads its
 * log all the time) seen from /proc (memory, CPU, sockets), with log
 * queries, and killed by {@linkcode killServers} on Ctrl-C.
 */
export class WatchedServer implements AsyncDisposable {
  readonly process: ServerProcess;
  readonly pid: number;
  readonly port: number;
  /** Resolves with the exit code once the process has exited. */
  readonly exited: Promise<number>;
  #exitCode: number | undefined;
  #tracked: Disposable;

  private constructor(process: ServerProcess) {
    this.process = process;
    this.pid = process.child.pid;
    this.port = process.port;
    this.exited = process.child.status.then((status) => {
      this.#exitCode = status.code;
      return status.code;
    });
    this.#tracked = killOnInterrupt(process.child);
  }

  /**
   * Starts `server.ts --host 127.0.0.1 --port 0 ...args`, with
   * `permissions` as {@linkcode ServerProcess.start} takes them (the
   * `--allow-net` value and extra flags, e.g. `--allow-read` for a
   * certificate).
   */
  static async start(
    args: string[] = [],
    permissions: { allowNet?: string; flags?: string[] } = {},
  ): Promise<WatchedServer> {
    return new WatchedServer(
      await ServerProcess.start(args, "127.0.0.1", undefined, permissions),
    );
  }

  /** Every stdout line so far. */
  get log(): readonly string[] {
    return this.process.log;
  }

  /** The exit code, or undefined while it runs. */
  get exitCode(): number | undefined {
    return this.#exitCode;
  }

  /** How many log lines match `pattern`. */
  count(pattern: RegExp): number {
    let n = 0;
    for (const line of this.process.log) if (pattern.test(line)) n++;
    return n;
  }

  /** The log lines about the client at local port `port`. */
  linesAbout(port: number): string[] {
    const pattern = new RegExp(` at PORT ${port}\\b`);
    return this.process.log.filter((line) => pattern.test(line));
  }

  /** Connections logged as accepted and not (yet) logged as ended. */
  openByLog(): number {
    return this.count(CONNECT_LINE) - this.count(CLOSE_LINE);
  }

  /** Waits for a log line matching `pattern` (earlier ones count). */
  waitForLine(pattern: RegExp, ms: number): Promise<string> {
    return this.process.waitForLine(pattern, ms);
  }

  /** The server's resident memory, in bytes. */
  rss(): Promise<number> {
    return readRss(this.pid);
  }

  /** The server's CPU time so far, in milliseconds. */
  cpuMs(): Promise<number> {
    return readCpuMs(this.pid);
  }

  /** Sockets the server has open, its listener included. */
  sockets(): Promise<number> {
    return countSockets(this.pid);
  }

  /** Sends `signal`, waits for the exit, returns the exit code and output. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Output> {
    this.signal(signal);
    return await this.finish();
  }

  /** Sends `signal` without waiting. */
  signal(signal: Deno.Signal): void {
    this.process.child.kill(signal);
  }

  /** Waits for the process to exit by itself; returns its output. */
  async finish(): Promise<Output> {
    const output = await this.process.finish();
    this.#tracked[Symbol.dispose]();
    return output;
  }

  /** SIGKILLs the process if it still runs; does not wait. */
  kill(): void {
    if (this.#exitCode === undefined) killQuietly(this.process.child);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.kill();
    await this.finish();
  }
}

let helpText: Promise<string> | undefined;

/** `server.ts --help`, to see which flags this version has. */
export function serverHelp(): Promise<string> {
  helpText ??= new Deno.Command(Deno.execPath(), {
    args: denoRun("server.ts", "127.0.0.1:1", ["--help"]),
    stdin: "null",
    stdout: "piped",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).output().then((out) => new TextDecoder().decode(out.stdout));
  return helpText;
}

/** Whether `server.ts --help` mentions `flag`. */
export async function serverHasFlag(flag: string): Promise<boolean> {
  return (await serverHelp()).includes(flag);
}

/** The server's summary line, parsed by {@linkcode parseSummary}. */
export interface Summary {
  /** The whole line. */
  line: string;
  connections: number;
  /** As printed, e.g. "1.2 MB". */
  bytesIn: string;
  bytesOut: string;
  errors: number;
  /** Clients turned away by --max-conns. */
  refused: number;
  /** Connections closed by --idle-timeout. */
  idleClosed: number;
  /** Connections still open, and so closed, when the grace period ended. */
  cutOff: number;
}

/**
 * The "Served N connections on ...: X in, Y out, E errors[, R refused][, I
 * closed idle][, C cut off at shutdown], up T" line the server prints when it
 * stops, parsed.
 *
 * @throws {Error} When `stdout` has no such line.
 */
export function parseSummary(stdout: string): Summary {
  const line = /^Served .*$/m.exec(stdout)?.[0];
  const match = line === undefined
    ? null
    : /^Served (\d+) connections? on \S+: (.+?) in, (.+?) out, (\d+) errors?(.*), up /
      .exec(line);
  if (!match) throw new Error("The server printed no summary line");
  const extra = (what: string) =>
    Number(new RegExp(`, (\\d+) ${what}(?:,|$)`).exec(match[5]!)?.[1] ?? 0);
  return {
    line: line!,
    connections: Number(match[1]),
    bytesIn: match[2]!,
    bytesOut: match[3]!,
    errors: Number(match[4]),
    refused: extra("refused"),
    idleClosed: extra("closed idle"),
    cutOff: extra("cut off at shutdown"),
  };
}

// ---------------------------------------------------------------------------
// Well-behaved clients that run while a scenario misbehaves.

/** Options for {@linkcode Bystanders.start}. */
export interface BystanderOptions {
  /** Clients running at once. @default {2} */
  count?: number;
  /** Largest payload, in bytes. @default {65536} */
  maxSize?: number;
  /** Pause between round trips, in ms. @default {0} */
  pauseMs?: number;
  /** Where the server listens. @default {"127.0.0.1"} */
  hostname?: string;
  /** Seed of the payloads. @default {1} */
  seed?: number;
  /**
   * Keep one connection each and exchange on it (for when no new connection
   * can get in, as while the server is out of descriptors).
   *
   * @default {false}
   */
  persistent?: boolean;
  /** Speak TLS with these options (a TLS server). @default {undefined} */
  tls?: ConnectTlsOptions;
  /**
   * Send a PROXY header of this version first (`--proxy-protocol`).
   *
   * @default {undefined}
   */
  proxyHeader?: 1 | 2;
}

/** What the bystanders did. */
export interface BystanderReport {
  /** Round trips (or exchanges) whose reply was checked. */
  exchanges: number;
  /** Bytes they sent. */
  bytes: number;
}

/** How long one bystander round trip may take before it counts as a failure. */
const BYSTANDER_TIMEOUT_MS = 15_000;

/**
 * Well-behaved clients that keep sending random payloads and check every
 * reply byte for byte until {@linkcode Bystanders.stop}.
 */
export class Bystanders {
  #stopped = false;
  #loops: Promise<void>[];
  #failures: string[] = [];
  #report: BystanderReport = { exchanges: 0, bytes: 0 };

  private constructor(port: number, options: BystanderOptions) {
    const random = new Random(options.seed ?? 1);
    this.#loops = Array.from(
      { length: options.count ?? 2 },
      (_, i) => this.#run(port, options, random.fork(i), i),
    );
  }

  /** Starts the clients against `port`. */
  static start(port: number, options: BystanderOptions = {}): Bystanders {
    return new Bystanders(port, options);
  }

  async #run(
    port: number,
    options: BystanderOptions,
    random: Random,
    index: number,
  ): Promise<void> {
    const hostname = options.hostname ?? "127.0.0.1";
    const maxSize = options.maxSize ?? 64 * KiB;
    let conn: Deno.Conn | undefined;
    try {
      if (options.persistent) {
        conn = await connect({
          hostname,
          port,
          tls: options.tls,
          proxyHeader: options.proxyHeader,
        });
      }
      while (!this.#stopped) {
        const payload = random.bytes(random.logInt(1, maxSize));
        const what = `bystander ${index} exchange ${this.#report.exchanges}`;
        if (conn) {
          const open = conn;
          await withTimeout(
            exchangeChecked(open, payload, what),
            BYSTANDER_TIMEOUT_MS,
            what,
            () => closeQuietly(open),
          );
        } else {
          await checkedRequest(
            port,
            payload,
            what,
            BYSTANDER_TIMEOUT_MS,
            hostname,
            options.tls,
            options.proxyHeader,
          );
        }
        this.#report.exchanges++;
        this.#report.bytes += payload.length;
        if (options.pauseMs) await delay(options.pauseMs);
      }
      if (conn) {
        await conn.closeWrite();
        // A TLS server may close without close_notify: the end all the same.
        const last = await conn.read(new Uint8Array(1)).catch(
          (err: unknown) => {
            if (err instanceof Deno.errors.UnexpectedEof) return null;
            throw err;
          },
        );
        if (last !== null) {
          throw new Error(`bystander ${index}: bytes after the last reply`);
        }
      }
    } catch (err: unknown) {
      this.#failures.push(err instanceof Error ? err.message : String(err));
      this.#stopped = true;
    } finally {
      if (conn) closeQuietly(conn);
    }
  }

  /** Failures so far (a bystander stops at its first). */
  get failures(): readonly string[] {
    return this.#failures;
  }

  /**
   * Stops the clients after their current round trip.
   *
   * @throws {Error} With the first failure, if any client saw one.
   */
  async stop(): Promise<BystanderReport> {
    this.#stopped = true;
    await Promise.all(this.#loops);
    if (this.#failures.length > 0) {
      throw new Error(`A well-behaved client failed: ${this.#failures[0]}`);
    }
    return this.#report;
  }
}
