// Copyright the upcase authors. MIT license.
// Helpers for the tests: spawning the real CLIs, raw sockets, payloads.

import { assert } from "@std/assert";

/** The repository root, where server.ts and client.ts are. */
export const ROOT = new URL("../", import.meta.url);

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { ignoreBOM: true }); // keep a U+FEFF

/**
 * The reference transform: a plain table lookup, written independently of
 * transform.ts so the tests can catch its mistakes.
 */
export function expectedUpper(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    out[i] = b >= 0x61 && b <= 0x7a ? b - 0x20 : b;
  }
  return out;
}

/** `n` random bytes (every byte value occurs). */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

/**
 * The first index where `actual` and `expected` differ, or -1; for
 * messages that point at the byte instead of dumping megabytes.
 */
export function firstDifference(
  actual: Uint8Array,
  expected: Uint8Array,
): number {
  const n = Math.min(actual.length, expected.length);
  for (let i = 0; i < n; i++) if (actual[i] !== expected[i]) return i;
  return actual.length === expected.length ? -1 : n;
}

/** Asserts two byte arrays are equal, naming the first differing offset. */
export function assertSameBytes(
  actual: Uint8Array,
  expected: Uint8Array,
  what = "reply",
): void {
  const at = firstDifference(actual, expected);
  assert(
    at === -1,
    `${what} differs at byte ${at} (lengths ${actual.length} and ${expected.length})`,
  );
}

/**
 * The Unicode reference transform, written independently of unicode.ts: one
 * character at a time, the shortest run of 1 to 4 bytes that a fatal
 * TextDecoder accepts is a character and is upper-cased with
 * `String.prototype.toUpperCase`; a byte that starts no character is copied
 * as it is. `ignoreBOM` keeps U+FEFF a character like any other.
 */
export function expectedUpperUnicode(bytes: Uint8Array): Uint8Array {
  const chunks: Uint8Array[] = [];
  let copied = 0; // bytes[copied..i) are invalid bytes not yet copied
  let i = 0;
  while (i < bytes.length) {
    let length = 1;
    let upper: Uint8Array | null = null;
    for (; length <= 4 && i + length <= bytes.length; length++) {
      upper = upperCharacter(bytes.subarray(i, i + length));
      if (upper !== null) break;
    }
    if (upper === null) {
      i++;
      continue;
    }
    chunks.push(bytes.subarray(copied, i), upper);
    i += length;
    copied = i;
  }
  chunks.push(bytes.subarray(copied));
  return concat(chunks);
}

const fatalDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/**
 * {@linkcode upperCharacter}'s answers by length and bytes: texts repeat the
 * same few characters, and a decoder that throws is slow.
 */
const upperCharacters = new Map<number, Uint8Array | null>();

/** The upper case of `bytes` if they are one character, else null. */
function upperCharacter(bytes: Uint8Array): Uint8Array | null {
  let key = bytes.length;
  for (const b of bytes) key = key * 256 + b;
  let upper = upperCharacters.get(key);
  if (upper === undefined) {
    try {
      upper = encoder.encode(fatalDecoder.decode(bytes).toUpperCase());
    } catch (err: unknown) {
      if (!(err instanceof TypeError)) throw err;
      upper = null;
    }
    if (upperCharacters.size >= 65536) upperCharacters.clear();
    upperCharacters.set(key, upper);
  }
  return upper;
}

/** The chunks one after another, in one new array. */
export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Reads from `conn` until EOF and returns everything. */
export async function readToEnd(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return concat(chunks);
}

/**
 * Reads exactly `n` bytes from `conn`.
 *
 * @throws {Error} When the peer closes first.
 */
export async function readExactly(
  conn: Deno.Conn,
  n: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const read = await conn.read(out.subarray(got));
    if (read === null) {
      throw new Error(`Connection closed after ${got} of ${n} bytes`);
    }
    got += read;
  }
  return out;
}

/** Writes all of `bytes` to `conn`. */
export async function writeAll(
  conn: Deno.Conn,
  bytes: Uint8Array,
): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await conn.write(bytes.subarray(written));
  }
}

/** Sends `bytes`, half-closes, reads the reply to EOF, closes. */
export async function roundTrip(
  port: number,
  bytes: Uint8Array,
  hostname = "127.0.0.1",
): Promise<Uint8Array> {
  using conn = await Deno.connect({ hostname, port });
  const [reply] = await Promise.all([
    readToEnd(conn),
    writeAll(conn, bytes).then(() => conn.closeWrite()),
  ]);
  return reply;
}

/** What a finished CLI process printed. */
export interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

/** `deno run` arguments for a CLI with the README's scoped permission. */
export function denoRun(
  script: "server.ts" | "client.ts",
  allowNet: string,
  args: string[],
  flags: string[] = [],
): string[] {
  return [
    "run",
    "--no-prompt",
    `--allow-net=${allowNet}`,
    ...flags,
    new URL(script, ROOT).pathname,
    ...args,
  ];
}

/** The permission flags README.md gives for a Unix socket at `path`. */
export function unixAllow(path: string): string[] {
  return [
    `--allow-net=unix:${path}`,
    `--allow-read=${path}`,
    `--allow-write=${path}`,
  ];
}

/** A spawned CLI that runs longer than this is killed, failing its test. */
export const CHILD_TIME_LIMIT_MS = 30_000;

/** `deno run` arguments for a CLI on the Unix socket `path`, with its permissions. */
export function denoRunUnix(
  script: "server.ts" | "client.ts",
  path: string,
  args: string[],
): string[] {
  return [
    "run",
    "--no-prompt",
    ...unixAllow(path),
    new URL(script, ROOT).pathname,
    "--unix",
    path,
    ...args,
  ];
}

/**
 * Runs Deno with `args` (such as {@linkcode denoRun}'s) to its end, stdin
 * empty, with NO_COLOR=1 added to `env`; it is killed after
 * {@linkcode CHILD_TIME_LIMIT_MS}, failing its test.
 */
export async function runDeno(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<Output> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...options.env },
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).output();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

/** Options for {@linkcode runClient}. */
export interface RunClientOptions {
  /** The `--allow-net` value; 127.0.0.1:PORT by default. */
  allowNet?: string;
  /** Connect to this Unix socket (with its permissions) instead of a port. */
  unix?: string;
  /** Bytes for the client's stdin; none (`/dev/null`) by default. */
  stdin?: Uint8Array;
  /** Environment variables; NO_COLOR=1 by default. */
  env?: Record<string, string>;
}

/**
 * Writes `bytes` to a child's piped stdin and closes it. Start reading the
 * child's output first: a child that answers as it reads stops once its
 * stdout pipe is full. A child that exits before reading it all (a usage
 * error, a lost connection) is no error here: its exit code tells.
 */
export async function writeStdin(
  child: Deno.ChildProcess,
  bytes: Uint8Array,
): Promise<void> {
  const writer = child.stdin.getWriter();
  try {
    await writer.write(bytes);
    await writer.close();
  } catch (err: unknown) {
    if (!(err instanceof Deno.errors.BrokenPipe)) throw err;
  }
}

/** Runs the client CLI to completion. */
export async function runClient(
  port: number,
  args: string[],
  options: RunClientOptions = {},
): Promise<Output> {
  const { unix } = options;
  const command = new Deno.Command(Deno.execPath(), {
    args: unix === undefined
      ? denoRun(
        "client.ts",
        options.allowNet ?? `127.0.0.1:${port}`,
        ["--port", String(port), ...args],
      )
      : denoRunUnix("client.ts", unix, args),
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    env: options.env ?? { NO_COLOR: "1" },
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS), // a hung client fails
  });
  const child = command.spawn();
  // stdout and stderr are read while stdin is written: a client answers as
  // it reads, and would stop at a full pipe that nobody reads.
  const [{ code, stdout, stderr }] = await Promise.all([
    child.output(),
    options.stdin === undefined ? undefined : writeStdin(child, options.stdin),
  ]);
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
  };
}

/**
 * A child process whose stdout is read line by line and whose stderr is
 * collected from the moment it is wrapped, so that neither 64 KiB pipe ever
 * fills and stops it. Wrap it straight after `spawn()`, with `stdout` and
 * `stderr` piped.
 *
 * @example Wait for a line, then stop the child
 * ```ts ignore
 * await using child = new ChildLines(
 *   new Deno.Command("sh", {
 *     args: ["-c", "echo ready; sleep 60"],
 *     stdout: "piped",
 *     stderr: "piped",
 *   }).spawn(),
 * );
 * await child.waitForLine(/^ready$/);
 * const { code } = await child.stop();
 * ```
 */
export class ChildLines implements AsyncDisposable {
  /** The process. */
  readonly child: Deno.ChildProcess;
  /** Every stdout line so far, without its newline, as it comes. */
  readonly log: string[] = [];
  #stderr = "";
  #pumps: Promise<void>;
  #stdoutEnded = false;
  #stderrEnded = false;
  /** Resolved (and replaced) whenever a line arrives or a pipe ends. */
  #changed = Promise.withResolvers<void>();

  /** @param child A process spawned with `stdout` and `stderr` piped. */
  constructor(child: Deno.ChildProcess) {
    this.child = child;
    this.#pumps = Promise.all([
      this.#readStdout(child.stdout),
      this.#readStderr(child.stderr),
    ]).then(() => {});
    // A pipe that fails is reported by finish(), not as an unhandled rejection.
    this.#pumps.catch(() => {});
  }

  async #readStdout(stdout: ReadableStream<Uint8Array>): Promise<void> {
    const lines = stdout.pipeThrough(new TextDecoderStream())
      .pipeThrough(new LineStream());
    try {
      for await (const line of lines) {
        this.log.push(line);
        this.#wake();
      }
    } finally {
      this.#stdoutEnded = true;
      this.#wake();
    }
  }

  async #readStderr(stderr: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const chunk of stderr.pipeThrough(new TextDecoderStream())) {
        this.#stderr += chunk;
      }
    } finally {
      this.#stderrEnded = true;
      this.#wake();
    }
  }

  #wake(): void {
    this.#changed.resolve();
    this.#changed = Promise.withResolvers<void>();
  }

  /**
   * Waits until a stdout line matches, and returns it; fails after
   * `timeoutMs` so a test never waits for ever.
   */
  async waitForLine(pattern: RegExp, timeoutMs = 15_000): Promise<string> {
    return (await this.waitForLines(pattern, 1, timeoutMs))[0]!;
  }

  /**
   * Waits until `count` stdout lines (earlier ones included) match, and
   * returns them; fails once the child has closed its pipes without them,
   * or after `timeoutMs`, with what it printed.
   */
  async waitForLines(
    pattern: RegExp,
    count: number,
    timeoutMs = 15_000,
  ): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    const matched: string[] = [];
    let seen = 0;
    while (true) {
      for (; seen < this.log.length; seen++) {
        if (pattern.test(this.log[seen]!)) matched.push(this.log[seen]!);
        if (matched.length === count) return matched;
      }
      if (this.#stdoutEnded && this.#stderrEnded) {
        throw new Error(
          `The child exited after ${matched.length} of ${count} lines matching ${pattern}; its stderr: ${this.#stderr}`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(
          () => resolve("timeout"),
          Math.max(0, deadline - Date.now()),
        );
      });
      const woke = await Promise.race([this.#changed.promise, timeout]);
      clearTimeout(timer);
      if (woke === "timeout") {
        throw new Error(
          `${matched.length} of ${count} lines matched ${pattern} within ${timeoutMs} ms; its stdout:\n${
            this.log.join("\n")
          }\nits stderr: ${this.#stderr}`,
        );
      }
    }
  }

  /**
   * Sends `signal` (unless the child has exited), then collects the rest of
   * the output and the exit code.
   */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Output> {
    try {
      this.child.kill(signal);
    } catch (err: unknown) {
      if (!(err instanceof TypeError)) throw err; // it has exited
    }
    return await this.finish();
  }

  /** Waits for the child to exit by itself and collects its output. */
  async finish(): Promise<Output> {
    await this.#pumps;
    const { code } = await this.child.status;
    return { code, stdout: this.log.join("\n"), stderr: this.#stderr };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }
}

/** server.ts's first line, with the port it listens on (TCP or UDP). */
const LISTEN_LINE =
  /^(?:Accepting (?:TLS )?connections|Answering datagrams) on (?:.*:(\d+)|\/.*?)(?: \(UDP, .*\))? \.\.\.(?: with faults: .*)?$/;
/** The same in the JSON log. */
const LISTEN_RECORD = /^\{.*"event":"listen","addr":"(?:.*:(\d+)|\/[^"]*)"[,}]/;

/** A server CLI running in a child process; its log is read all the time. */
export class ServerProcess extends ChildLines {
  #port = 0;

  private constructor(child: Deno.ChildProcess) {
    super(child);
  }

  /** The port it listens on; 0 on a Unix socket. */
  get port(): number {
    return this.#port;
  }

  /**
   * Starts `server.ts` on a free port of `hostname` (or on the Unix socket
   * `unix`), with the permission scoped to it, and waits for its
   * "Accepting connections" line. `port` is 0 for a Unix socket.
   */
  static async start(
    args: string[] = [],
    hostname = "127.0.0.1",
    unix?: string,
    permissions: { allowNet?: string; flags?: string[] } = {},
  ): Promise<ServerProcess> {
    const server = new ServerProcess(
      new Deno.Command(Deno.execPath(), {
        args: unix === undefined
          ? denoRun(
            "server.ts",
            permissions.allowNet ?? `${bracket(hostname)}:0`,
            ["--host", hostname, "--port", "0", ...args],
            permissions.flags,
          )
          : denoRunUnix("server.ts", unix, args),
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).spawn(),
    );
    // Without a first line (it exited, or hung), its output says why below.
    const first = await server.waitForLine(/^/, CHILD_TIME_LIMIT_MS)
      .catch(() => "");
    const match = LISTEN_LINE.exec(first) ?? LISTEN_RECORD.exec(first);
    if (match === null) {
      const { stdout, stderr } = await server.stop("SIGKILL");
      throw new Error(`Server did not start: ${stdout}${stderr}`);
    }
    server.#port = Number(match[1] ?? 0);
    return server;
  }
}

/**
 * Whether the tests run as root (CI does): what capturing packets, changing
 * the network or binding ports below 1024 needs.
 */
export async function isRoot(): Promise<boolean> {
  const { stdout } = await new Deno.Command("id", {
    args: ["-u"],
    stdout: "piped",
    stderr: "null",
  }).output();
  return decoder.decode(stdout).trim() === "0";
}

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort(): number {
  using probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return probe.addr.port;
}

/**
 * Starts `server.ts` on free ports of 127.0.0.1 with `--metrics`, with
 * README's permission for its two ports (and `flags`), and waits for the
 * metrics line.
 */
export async function startWithMetrics(
  args: string[] = [],
  flags: string[] = [],
): Promise<{ server: ServerProcess; port: number; metricsPort: number }> {
  const port = freePort();
  const metricsPort = freePort();
  const server = await ServerProcess.start(
    ["--port", String(port), "--metrics", `127.0.0.1:${metricsPort}`, ...args],
    "127.0.0.1",
    undefined,
    { allowNet: `127.0.0.1:${port},127.0.0.1:${metricsPort}`, flags },
  );
  await server.waitForLine(/Serving metrics on|"event":"metrics"/);
  return { server, port, metricsPort };
}

function bracket(hostname: string): string {
  return hostname.includes(":") ? `[${hostname}]` : hostname;
}

/** Splits a text stream into lines (without their newlines). */
class LineStream extends TransformStream<string, string> {
  constructor() {
    let rest = "";
    super({
      transform(chunk, controller) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        for (const part of parts) controller.enqueue(part);
      },
      flush(controller) {
        if (rest) controller.enqueue(rest);
      },
    });
  }
}

/**
 * Sockets in ESTAB on the server's side of `port` (to `peerPort` only, if
 * given), as `ss` sees them: what the peers see, not the server's counters.
 */
export async function establishedOn(
  port: number,
  peerPort?: number,
): Promise<number> {
  const filter = peerPort === undefined
    ? `( sport = :${port} )`
    : `( sport = :${port} and dport = :${peerPort} )`;
  const { stdout } = await new Deno.Command("ss", {
    args: ["-Htn", "state", "established", filter],
    stdout: "piped",
  }).output();
  return decoder.decode(stdout).split("\n").filter((line) => line.trim() !== "")
    .length;
}

/** Encodes text as UTF-8. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Decodes UTF-8. */
export function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}
