// Copyright the upcase authors. MIT license.
// client.ts against hostile servers on loopback: a reply cut by a reset or
// by an early close, and a reply that never ends. Each test spawns the real
// client CLI with README's permission and checks its exit code, its one line
// on stderr, the reply bytes that came (on stdout, none lost) and, against a
// flood, how long it ran and its peak memory.

import { assert, assertEquals, assertLess, assertRejects } from "@std/assert";
import { makeTestCerts } from "./_certs.ts";
import { closeQuietly } from "../src/_io.ts";
import { waitUntil } from "../stress/_util.ts";
import {
  assertSameBytes,
  CHILD_TIME_LIMIT_MS,
  ChildLines,
  denoRun,
  type Output,
  readExactly,
  readToEnd,
  runClient,
  text,
  utf8,
  writeAll,
} from "./_util.ts";

/**
 * The hostile server that resets, as a program for a child process. Deno's
 * `close()` shuts the write half down first (FIN), so the peer would see an
 * orderly end; a reset takes a socket the kernel closes with unread data, as
 * when the process is killed. For each connection it reads `take` bytes
 * (skipping a connection that closes first, such as --bench's probe), writes
 * back the upper case of the first `reply` of them, prints `replied PORT`
 * (the client's port) and keeps the socket open, unread bytes and all.
 */
const RESETTER = `
const [take, reply] = Deno.args.map(Number);
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(listener.addr.port);
const held = [];
for await (const conn of listener) {
  const buf = new Uint8Array(take);
  let got = 0;
  while (got < take) {
    const n = await conn.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  if (got < take) {
    conn.close();
    continue;
  }
  const out = buf.subarray(0, reply).map((b) => b >= 0x61 && b <= 0x7a ? b - 0x20 : b);
  for (let i = 0; i < out.length;) i += await conn.write(out.subarray(i));
  held.push(conn);
  console.log("replied " + conn.remoteAddr.port);
}
`;

/** {@linkcode RESETTER} running in a child process. */
class Resetter implements AsyncDisposable {
  readonly port: number;
  readonly #lines: ChildLines;

  private constructor(lines: ChildLines, port: number) {
    this.#lines = lines;
    this.port = port;
  }

  /** Starts it; it listens on a free port of 127.0.0.1. */
  static async start(take: number, reply: number): Promise<Resetter> {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--allow-net=127.0.0.1:0",
        "-",
        String(take),
        String(reply),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
    }).spawn();
    const lines = new ChildLines(child);
    const writer = child.stdin.getWriter();
    await writer.write(utf8(RESETTER));
    await writer.close();
    const port = Number(await lines.waitForLine(/^\d+$/));
    return new Resetter(lines, port);
  }

  /**
   * Waits until it has replied, its side of that connection has the whole
   * reply acknowledged and at least `unread` bytes not read, then kills it:
   * the kernel closes the socket with unread data, which sends RST.
   */
  async reset(unread: number): Promise<void> {
    const line = await this.#lines.waitForLine(/^replied \d+$/);
    const peer = Number(line.split(" ")[1]);
    await waitUntil(
      async () => {
        const [recvQ, sendQ] = await queues(this.port, peer);
        return recvQ >= unread && sendQ === 0;
      },
      10_000,
      `${unread} bytes unread and the reply sent on port ${this.port}`,
    );
    await this.#lines.stop("SIGKILL");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#lines.stop("SIGKILL");
  }
}

/**
 * Recv-Q and Send-Q of the server's side of the connection from `peer` to
 * `port`, as `ss` sees them ([-1, -1] while there is none).
 */
async function queues(port: number, peer: number): Promise<[number, number]> {
  const { stdout } = await new Deno.Command("ss", {
    args: ["-Htn", `( sport = :${port} and dport = :${peer} )`],
    stdout: "piped",
  }).output();
  // State, Recv-Q, Send-Q, local address, peer address.
  const fields = text(stdout).trim().split(/\s+/);
  return fields.length < 5 ? [-1, -1] : [Number(fields[1]), Number(fields[2])];
}

/** A server in this process, with one handler per connection. */
class TestServer implements AsyncDisposable {
  readonly port: number;
  readonly #listener: Deno.Listener;
  readonly #handlers: Promise<void>[] = [];
  readonly #accepting: Promise<void>;

  constructor(
    listener: Deno.Listener,
    handle: (conn: Deno.Conn) => Promise<void>,
  ) {
    this.#listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#accepting = (async () => {
      try {
        for await (const conn of listener) {
          this.#handlers.push(
            handle(conn).finally(() => closeQuietly(conn)),
          );
        }
      } catch (err: unknown) {
        if (!(err instanceof Deno.errors.BadResource)) throw err;
      }
    })();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    closeQuietly(this.#listener);
    await this.#accepting;
    await Promise.all(this.#handlers);
  }
}

function plainServer(handle: (conn: Deno.Conn) => Promise<void>) {
  return new TestServer(
    Deno.listen({ hostname: "127.0.0.1", port: 0 }),
    handle,
  );
}

/** `n` bytes of `a`, and the reply an upcase server gives. */
function letters(n: number): [Uint8Array, Uint8Array] {
  return [new Uint8Array(n).fill(0x61), new Uint8Array(n).fill(0x41)];
}

/**
 * Asserts the exit code and stderr, and that stdout is `stdout` (naming the
 * first differing byte rather than printing kilobytes of it).
 */
function assertOutput(
  out: Output,
  expected: Output,
  what?: string,
): void {
  assertEquals(
    { code: out.code, stderr: out.stderr },
    { code: expected.code, stderr: expected.stderr },
    what,
  );
  assertSameBytes(utf8(out.stdout), utf8(expected.stdout), "stdout");
}

/** Runs client.ts -, -i or MESSAGE while `server` does its part. */
async function clientWhile(
  port: number,
  args: string[],
  stdin: Uint8Array | undefined,
  server: Promise<void>,
): Promise<Output> {
  const [out] = await Promise.all([
    runClient(port, args, { stdin }),
    server,
  ]);
  return out;
}

Deno.test("the test's resetting server really resets: a client gets the half reply, then ECONNRESET", async () => {
  await using server = await Resetter.start(60_000, 50_000);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const [request] = letters(100_000);
  await Promise.all([writeAll(conn, request), server.reset(40_000)]);
  assertEquals((await readExactly(conn, 50_000)).length, 50_000);
  await assertRejects(
    () => conn.read(new Uint8Array(1)),
    Deno.errors.ConnectionReset,
  );
});

Deno.test("client.ts - reports a reply cut by a reset in one line with the byte counts, exit 5, every byte that came on stdout (with and without -q)", async () => {
  const [request, reply] = letters(100_000);
  for (const args of [["-q", "-"], ["-"]]) {
    await using server = await Resetter.start(60_000, 50_000);
    const out = await clientWhile(
      server.port,
      args,
      request,
      server.reset(40_000),
    );
    assertOutput(out, {
      code: 5,
      stdout: text(reply.subarray(0, 50_000)),
      stderr:
        "error: Connection lost: the server reset the connection after 50,000 of 100,000 reply bytes\n",
    }, args.join(" "));
  }
});

Deno.test("client.ts - reports a reply cut short by an orderly close, exit 5, even with -q", async () => {
  const [request, reply] = letters(100_000);
  await using server = plainServer(async (conn) => {
    await readToEnd(conn);
    await writeAll(conn, reply.subarray(0, 50_000));
  });
  const out = await runClient(server.port, ["-q", "-"], { stdin: request });
  assertOutput(out, {
    code: 5,
    stdout: text(reply.subarray(0, 50_000)),
    stderr:
      "error: Connection lost: the server closed the connection after 50,000 of 100,000 reply bytes\n",
  });
});

Deno.test("client.ts -i reports a reply cut by a reset with the byte counts, exit 5", async () => {
  await using server = await Resetter.start(60, 50);
  const out = await clientWhile(
    server.port,
    ["-i"],
    utf8(`${"a".repeat(99)}\n`),
    server.reset(40),
  );
  assertEquals(out, {
    code: 5,
    stdout: "A".repeat(50),
    stderr:
      "error: Connection lost: the server reset the connection after 50 of 100 reply bytes\n",
  });
});

Deno.test("client.ts -i reports a last reply cut short by an orderly close, exit 5", async () => {
  await using server = plainServer(async (conn) => {
    await readToEnd(conn);
    await writeAll(conn, utf8("HEL"));
  });
  const out = await runClient(server.port, ["-i"], { stdin: utf8("hello") });
  assertEquals(out, {
    code: 5,
    stdout: "HEL",
    stderr:
      "error: Connection lost: the server closed the connection after 3 of 5 reply bytes\n",
  });
});

Deno.test("client.ts MESSAGE against a seed-like server (80 bytes back, then a reset) prints them and warns of the reset with the byte counts, exit 0", async () => {
  await using server = await Resetter.start(80, 80);
  const out = await clientWhile(
    server.port,
    ["x".repeat(200)],
    undefined,
    server.reset(120),
  );
  assertEquals(out, {
    code: 0,
    stdout: `Response from server:\n${"X".repeat(80)}\n`,
    stderr:
      "warning: Reply truncated: got 80 of 200 bytes; the server reset the connection (the seed's server.c reads at most 80)\n",
  });
});

Deno.test("client.ts --bench counts a reply cut by a reset as an error, exit 5", async () => {
  await using server = await Resetter.start(60, 50);
  const out = await clientWhile(
    server.port,
    [
      "--bench",
      "oneshot",
      "--size",
      "100",
      "--connections",
      "1",
      "--duration",
      "0.5",
    ],
    undefined,
    server.reset(40),
  );
  assertEquals(out.code, 5, out.stderr);
  assert(
    /^errors +\d+ \(Connection reset by peer/m.test(out.stdout),
    out.stdout,
  );
});

/** A flooding server stops after this many bytes or this long, whichever first. */
const FLOOD_BYTES = 512 << 20;
const FLOOD_MS = 10_000;
/** The client's peak resident memory must stay under this. */
const MEMORY_LIMIT_KIB = 128 * 1024;
/** And it must be done in this time. */
const FLOOD_CLIENT_MS = 15_000;

/** Writes `A`s without reading, for ever (within the bounds above). */
async function flood(conn: Deno.Conn): Promise<void> {
  const block = new Uint8Array(64 * 1024).fill(0x41);
  const end = Date.now() + FLOOD_MS;
  let sent = 0;
  try {
    while (sent < FLOOD_BYTES && Date.now() < end) {
      sent += await conn.write(block);
    }
  } catch (err: unknown) {
    // The client gave up, as it should.
    if (
      !(err instanceof Deno.errors.ConnectionReset ||
        err instanceof Deno.errors.BrokenPipe)
    ) throw err;
  }
}

/**
 * VmHWM (peak resident memory) of process `pid` in KiB, read with `cat`
 * (Deno wants --allow-all to read /proc itself); 0 once it is gone.
 */
async function peakMemory(pid: number): Promise<number> {
  const { stdout } = await new Deno.Command("cat", {
    args: [`/proc/${pid}/status`],
    stdout: "piped",
    stderr: "null",
  }).output();
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(text(stdout))?.[1] ?? 0);
}

/** What a client run against a flood did. */
interface FloodRun {
  code: number;
  stdoutBytes: number;
  stderr: string;
  peakKiB: number;
  ms: number;
}

/**
 * Runs client.ts with README's permission (and `flags`), counting its
 * stdout without keeping it and polling its peak memory while it runs.
 */
async function runMeasured(
  port: number,
  args: string[],
  flags: string[] = [],
): Promise<FloodRun> {
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: denoRun(
      "client.ts",
      `127.0.0.1:${port}`,
      ["--port", String(port), ...args],
      flags,
    ),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).spawn();
  let stdoutBytes = 0;
  const counting = (async () => {
    for await (const chunk of child.stdout) stdoutBytes += chunk.length;
  })();
  const stderr = new Response(child.stderr).text();
  let exited = false;
  const status = child.status.finally(() => exited = true);
  let peakKiB = 0;
  while (!exited) {
    peakKiB = Math.max(peakKiB, await peakMemory(child.pid));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      status,
      new Promise((resolve) => timer = setTimeout(resolve, 50)),
    ]);
    clearTimeout(timer);
  }
  const { code } = await status;
  await counting;
  return {
    code,
    stdoutBytes,
    stderr: await stderr,
    peakKiB,
    ms: performance.now() - started,
  };
}

function assertBounded(run: FloodRun, stderr: string): void {
  assertEquals(
    { code: run.code, stdoutBytes: run.stdoutBytes, stderr: run.stderr },
    { code: 5, stdoutBytes: 0, stderr },
  );
  assertLess(run.ms, FLOOD_CLIENT_MS);
  assertLess(run.peakKiB, MEMORY_LIMIT_KIB);
}

Deno.test("client.ts MESSAGE stops reading a server that floods the reply: one line, exit 5, in bounded time and memory", async () => {
  await using server = plainServer(flood);
  const run = await runMeasured(server.port, ["hello"]);
  assertBounded(
    run,
    "error: Reply too long: the server sent more than 15 bytes in reply to 5 (at most 3 times the request)\n",
  );
});

Deno.test("client.ts --tls --timeout 3 MESSAGE stops reading a TLS server that floods the reply: one line, exit 5, in bounded time and memory", async () => {
  const certs = await makeTestCerts();
  try {
    await using server = new TestServer(
      Deno.listenTls({
        hostname: "127.0.0.1",
        port: 0,
        cert: await Deno.readTextFile(certs.cert),
        key: await Deno.readTextFile(certs.key),
      }),
      flood,
    );
    const run = await runMeasured(
      server.port,
      ["--tls", "--ca", certs.ca, "--timeout", "3", "hello"],
      [`--allow-read=${certs.ca}`],
    );
    assertBounded(
      run,
      "error: Reply too long: the server sent more than 15 bytes in reply to 5 (at most 3 times the request)\n",
    );
  } finally {
    await Deno.remove(certs.dir, { recursive: true });
  }
});
