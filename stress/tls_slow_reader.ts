// Copyright the upcase authors. MIT license.
// TLS scenario 4: a TLS client that sends without ever reading. The server
// must hold it back in bounded memory (no unbounded plaintext or record
// buffers between the TLS layer and the socket), serve others meanwhile, and
// free the connection when the client closes.
//
// The client is stress/_tls_slow_writer.py (Python's ssl, OpenSSL): in Deno
// 2.9.6 close() on a Deno.TlsConn whose write is blocked leaves its TCP
// socket open (no FIN, no RST), so a Deno client could not close.

import {
  Bystanders,
  formatSize,
  handled,
  killOnInterrupt,
  killQuietly,
  MiB,
  type RssFigures,
  RssSampler,
  type ScenarioResult,
  skippedResult,
  waitUntil,
  withTimeout,
} from "./_util.ts";
import {
  havePython,
  makeStressCerts,
  PYTHON,
  socketsOnPort,
  startTlsServer,
  type TlsMode,
} from "./_tls.ts";
/** Options for {@linkcode tlsSlowReader}. */
export interface TlsSlowReaderOptions {
  /** How the server frees stalled handshakes. */
  mode: TlsMode;
  /** What the client tries to send. @default {256 MiB} */
  target?: number;
  /** How long it keeps trying, in seconds. @default {20} */
  seconds?: number;
  /** After this long without progress, in ms, its writes count as blocked. @default {3000} */
  stallMs?: number;
  /** How much the server's RSS may grow meanwhile, in bytes. @default {64 MiB} */
  maxGrowth?: number;
  /** Seed of the payloads. @default {1} */
  seed?: number;
}

/**
 * TLS scenario 4. Starts `server.ts --cert --key` in `mode`; one TLS client
 * writes up to `target` bytes without reading until its writes block (or
 * `seconds` pass), while two TLS clients check their replies and the
 * server's RSS is sampled; then the client closes, and the server must log
 * its close and give its sockets back.
 *
 * @throws {Error} When RSS grows more than `maxGrowth`, all of `target` goes
 *   through, the server stops serving others, or the connection stays open.
 */
const WRITER = new URL("./_tls_slow_writer.py", import.meta.url).pathname;

/**
 * stress/_tls_slow_writer.py as a child: a TLS client that sends and never
 * reads; what it pushed, and a way to close it.
 */
export class SlowWriter {
  readonly child: Deno.ChildProcess;
  /** Its local port, once connected. */
  port = 0;
  pushed = 0;
  /** When `pushed` last grew (Date.now()). */
  lastProgress = Date.now();
  closed = false;
  error: string | undefined;
  readonly connected: Promise<void>;
  readonly done: Promise<void>;
  #tracked: Disposable;

  /** Starts it against 127.0.0.1:`port`, trusting `ca`, to send up to `target` bytes. */
  constructor(port: number, ca: string, target: number) {
    const child = new Deno.Command(PYTHON, {
      args: [WRITER, String(port), ca, String(target)],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.child = child;
    this.#tracked = killOnInterrupt(child);
    // Read from the start, like stdout: a child whose stderr pipe fills (a
    // long traceback, warnings) would block, and never exit.
    const stderr = handled(new Response(child.stderr).text());
    const connected = Promise.withResolvers<void>();
    this.connected = connected.promise;
    this.done = (async () => {
      let rest = "";
      for await (
        const chunk of child.stdout.pipeThrough(new TextDecoderStream())
      ) {
        const lines = (rest + chunk).split("\n");
        rest = lines.pop()!;
        for (const line of lines) {
          const [word, value = ""] = line.split(" ", 2);
          if (word === "connected") {
            this.port = Number(value);
            connected.resolve();
          } else if (word === "pushed" && Number(value) > this.pushed) {
            this.pushed = Number(value);
            this.lastProgress = Date.now();
          } else if (word === "closed") {
            this.closed = true;
          } else if (word === "error") {
            this.error = line;
          }
        }
      }
      const [{ code }, problems] = await Promise.all([child.status, stderr]);
      if (code !== 0) {
        const failure = new Error(
          `The Python TLS writer exited ${code}: ${problems.trim()}`,
        );
        connected.reject(failure);
        throw failure;
      }
      connected.reject(new Error("The Python TLS writer never connected"));
    })();
    handled(this.connected);
    handled(this.done);
  }

  /** Closes its stdin: it closes the socket and exits. */
  async close(): Promise<void> {
    try {
      await this.child.stdin.close();
    } catch (err: unknown) {
      if (!(err instanceof TypeError)) throw err; // closed already
    }
    await withTimeout(
      this.done,
      5000,
      "the Python TLS writer's exit",
      () => killQuietly(this.child),
    );
    this.#tracked[Symbol.dispose]();
  }
}

/**
 * TLS scenario 4. Starts `server.ts --cert --key` in `mode`; one TLS client
 * (Python) writes up to `target` bytes without reading until its writes
 * block for `stallMs` (or `seconds` pass), while two TLS clients check their
 * replies and the server's RSS is sampled; then the client closes, and the
 * server must log its close and give its sockets back.
 *
 * Skipped, with the reason, without `/usr/bin/python3`.
 *
 * @throws {Error} When RSS grows more than `maxGrowth`, all of `target` goes
 *   through, the server stops serving others, or the connection stays open.
 */
export async function tlsSlowReader(
  options: TlsSlowReaderOptions,
): Promise<ScenarioResult> {
  if (!await havePython()) {
    return skippedResult(`${PYTHON} with its ssl module is not there`);
  }
  const target = options.target ?? 256 * MiB;
  const seconds = options.seconds ?? 20;
  const stallMs = options.stallMs ?? 3000;
  const maxGrowth = options.maxGrowth ?? 64 * MiB;
  await using certs = await makeStressCerts();
  await using server = await startTlsServer(certs, options.mode);
  const baseline = await server.sockets();
  const sampler = await RssSampler.start(server.pid);
  const bystanders = Bystanders.start(server.port, {
    count: 2,
    seed: options.seed ?? 1,
    pauseMs: 5,
    tls: certs.tls,
  });
  const writer = new SlowWriter(server.port, certs.ca, target);
  let blocked = false;
  let held = 0;
  let otherBytes = 0;
  let exchanges = 0;
  let rss: RssFigures;
  try {
    await withTimeout(writer.connected, 10_000, "the Python TLS writer");
    const started = Date.now();
    await waitUntil(
      () => {
        if (writer.error !== undefined) {
          throw new Error(`The Python TLS writer failed: ${writer.error}`);
        }
        blocked = Date.now() - writer.lastProgress >= stallMs;
        return blocked || writer.pushed >= target ||
          Date.now() - started >= seconds * 1000;
      },
      seconds * 1000 + 5000,
      "the slow reader to stop",
    );
    const report = await bystanders.stop();
    otherBytes = report.bytes;
    exchanges = report.exchanges;
    held = await server.sockets();
    if (held <= baseline) {
      throw new Error(
        `The server holds ${held} sockets, no more than idle (${baseline}): where is the slow reader?`,
      );
    }
    await writer.close();
    rss = await sampler.stop();
  } finally {
    await writer.close().catch(() => {});
    await bystanders.stop().catch(() => {});
    await sampler.stop();
  }
  const pushed = writer.pushed;
  const closeLine = await server.waitForLine(
    new RegExp(
      `^(closed|error from) 127\\.0\\.0\\.1 at PORT ${writer.port}\\b`,
    ),
    10_000,
  );
  await waitUntil(
    async () => (await server.sockets()) <= baseline,
    10_000,
    "the server to close the slow reader's sockets",
  );
  const established = await socketsOnPort(server.port);
  if (established !== 0) {
    throw new Error(`ss shows ${established} connections still established`);
  }
  if (rss.peak - rss.start > maxGrowth) {
    throw new Error(
      `Server RSS grew by ${formatSize(rss.peak - rss.start)} (from ${
        formatSize(rss.start)
      } to ${formatSize(rss.peak)}), more than ${formatSize(maxGrowth)}`,
    );
  }
  if (pushed >= target) {
    throw new Error(
      `All ${
        formatSize(target)
      } went to a TLS server whose client reads nothing`,
    );
  }
  const out = await server.stop();
  if (out.code !== 0) {
    throw new Error(`server.ts exited ${out.code} on SIGTERM: ${out.stderr}`);
  }
  return {
    cases: 1,
    bytes: pushed + otherBytes,
    errors: server.count(/^error from /),
    rss,
    notes: [
      `the TLS slow reader pushed ${formatSize(pushed)} of ${
        formatSize(target)
      } before ${
        blocked
          ? `its writes blocked for ${stallMs / 1000} s`
          : `${seconds} s passed`
      }; server RSS grew ${
        formatSize(Math.max(0, rss.peak - rss.start))
      }; it held ${held - baseline} socket${
        held - baseline === 1 ? "" : "s"
      } for it; on close it logged "${
        closeLine.replace(/^(closed|error from) \S+ at PORT \d+/, "$1 …")
      }"`,
      `${exchanges} TLS round trips (${
        formatSize(otherBytes)
      }) checked meanwhile`,
    ],
  };
}
