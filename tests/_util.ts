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
  if (options.stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(options.stdin);
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
  };
}

/** A server CLI running in a child process. */
export class ServerProcess {
  readonly child: Deno.ChildProcess;
  readonly port: number;
  /** Every stdout line so far: read all the time, so the pipe never fills. */
  readonly log: string[] = [];
  #stderr: Promise<string>;
  #pump: Promise<void>;
  #ended = false;
  /** Resolved (and replaced) whenever a line arrives or stdout ends. */
  #changed = Promise.withResolvers<void>();

  private constructor(
    child: Deno.ChildProcess,
    port: number,
    first: string,
    lines: AsyncIterator<string>,
    stderr: Promise<string>,
  ) {
    this.child = child;
    this.port = port;
    this.log.push(first);
    this.#stderr = stderr;
    this.#pump = this.#read(lines);
  }

  async #read(lines: AsyncIterator<string>): Promise<void> {
    while (true) {
      const next = await lines.next();
      if (next.done) break;
      this.log.push(next.value);
      this.#changed.resolve();
      this.#changed = Promise.withResolvers<void>();
    }
    this.#ended = true;
    this.#changed.resolve();
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
    const child = new Deno.Command(Deno.execPath(), {
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
    }).spawn();
    const lines = child.stdout
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(new LineStream())[Symbol.asyncIterator]();
    const stderr = new Response(child.stderr).text();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const first = await Promise.race([
      lines.next(),
      new Promise<IteratorResult<string>>((resolve) => {
        timer = setTimeout(
          () => resolve({ done: true, value: undefined }),
          CHILD_TIME_LIMIT_MS,
        );
      }),
    ]);
    clearTimeout(timer);
    const match = first.done
      ? null
      : /^Accepting (?:TLS )?connections on (?:.*:(\d+)|\/.*) \.\.\.$/.exec(
        first.value,
      ) ??
        /^\{.*"event":"listen","addr":"(?:.*:(\d+)|\/[^"]*)"[,}]/.exec(
          first.value,
        );
    if (!match) {
      try {
        child.kill("SIGKILL");
      } catch (err: unknown) {
        // It exited by itself: its stderr says why.
        if (!(err instanceof TypeError)) throw err;
      }
      await child.status;
      await lines.return?.();
      throw new Error(
        `server did not start: ${first.value ?? ""}${await stderr}`,
      );
    }
    return new ServerProcess(
      child,
      Number(match[1] ?? 0),
      first.value!,
      lines,
      stderr,
    );
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
   * returns them; fails after `timeoutMs`.
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
      if (this.#ended) {
        throw new Error(
          `server exited after ${matched.length} of ${count} lines matching ${pattern}`,
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
          `${matched.length} of ${count} server lines matched ${pattern} within ${timeoutMs} ms; the log:\n${
            this.log.join("\n")
          }`,
        );
      }
    }
  }

  /** Sends `signal` and collects the rest of the output and the exit code. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Output> {
    this.child.kill(signal);
    return await this.finish();
  }

  /** Waits for the process to exit by itself and collects its output. */
  async finish(): Promise<Output> {
    await this.#pump;
    const { code } = await this.child.status;
    return { code, stdout: this.log.join("\n"), stderr: await this.#stderr };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch (err: unknown) {
      if (!(err instanceof TypeError)) throw err; // already exited
    }
    await this.finish();
  }
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

/** Encodes text as UTF-8. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Decodes UTF-8. */
export function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}
