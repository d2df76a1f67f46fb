// Copyright the upcase authors. MIT license.
// The CLIs end to end: server.ts and client.ts spawned with Deno.execPath()
// and the permission flags README.md documents.

import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { MAXLINE } from "../mod.ts";
import {
  assertSameBytes,
  CHILD_TIME_LIMIT_MS,
  denoRun,
  expectedUpper,
  randomBytes,
  readToEnd,
  ROOT,
  roundTrip,
  runClient,
  ServerProcess,
  text,
  utf8,
  writeAll,
} from "./_util.ts";

Deno.test("client.ts prints the seed's response line and the upper-cased message", async () => {
  await using server = await ServerProcess.start();
  const out = await runClient(server.port, ["hello, world"]);
  assertEquals(out, {
    code: 0,
    stdout: "Response from server:\nHELLO, WORLD\n",
    stderr: "",
  });
});

Deno.test("server.ts logs each connection like the seed, then its byte counts", async () => {
  await using server = await ServerProcess.start();
  const out = await runClient(server.port, ["abc"]);
  assertEquals(out.code, 0);
  await server.waitForLine(/^received from 127\.0\.0\.1 at PORT \d+$/);
  await server.waitForLine(
    /^closed 127\.0\.0\.1 at PORT \d+: 3 bytes in, 3 bytes out$/,
  );
});

Deno.test("client.ts without a message prints the seed's usage line and exits 1", async () => {
  const out = await runClient(1, []);
  assertEquals(out, {
    code: 1,
    stdout: "",
    stderr: "usage: ./client message\n",
  });
});

Deno.test("server.ts exits 0 on SIGTERM with a one-line summary", async () => {
  await using server = await ServerProcess.start();
  assertEquals((await runClient(server.port, ["one"])).code, 0);
  assertEquals((await runClient(server.port, ["two"])).code, 0);
  await server.waitForLine(/^closed .* 3 bytes out$/);
  const out = await server.stop("SIGTERM");
  assertEquals(out.code, 0);
  assertMatch(
    out.stdout,
    /\nServed 2 connections on 127\.0\.0\.1:\d+: 6 B in, 6 B out, 0 errors, up \S+/,
  );
  assertEquals(out.stderr, "");
});

Deno.test("server.ts on SIGHUP (its terminal closed) drains like SIGTERM: a transfer in progress finishes, the summary, exit 0, the --unix socket file removed", async () => {
  {
    await using server = await ServerProcess.start();
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    await writeAll(conn, utf8("before "));
    await server.waitForLine(/^received from /);
    server.child.kill("SIGHUP");
    await server.waitForLine(/^Shutting down: /);
    await writeAll(conn, utf8("after"));
    await conn.closeWrite();
    assertEquals(text(await readToEnd(conn)), "BEFORE AFTER");
    const out = await server.finish();
    assertEquals([out.code, out.stderr], [0, ""]);
    assertMatch(out.stdout, /\nServed 1 connection on .*: 12 B in, 12 B out/);
  }
  const dir = await Deno.makeTempDir();
  const path = `${dir}/upcase.sock`;
  try {
    await using server = await ServerProcess.start([], "127.0.0.1", path);
    server.child.kill("SIGHUP");
    const out = await server.finish();
    assertEquals([out.code, out.stderr], [0, ""]);
    assertMatch(out.stdout, /\nServed 0 connections on \//);
    await assertRejects(() => Deno.lstat(path), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client.ts against server.ts --once prints the first MAXLINE bytes and warns of the truncation", async () => {
  await using server = await ServerProcess.start(["--once"]);
  const message = "x".repeat(200);
  const out = await runClient(server.port, [message]);
  assertEquals(out.code, 0);
  assertEquals(
    out.stdout,
    `Response from server:\n${"X".repeat(MAXLINE)}\n`,
  );
  assertEquals(
    out.stderr,
    `warning: Reply truncated: got ${MAXLINE} of 200 bytes; the server closed early (the seed's server.c reads at most ${MAXLINE})\n`,
  );
});

Deno.test("server.ts answers a seed-style client: one write, one read of at most MAXLINE bytes, close", async () => {
  await using server = await ServerProcess.start();
  const message = utf8("seed client says hi");
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await writeAll(conn, message);
  // The seed's client reads once; the reply may arrive in pieces, so read
  // until this message's length (still at most MAXLINE) has come back.
  const buf = new Uint8Array(MAXLINE);
  let n = 0;
  while (n < message.length) {
    const got = await conn.read(buf.subarray(n));
    if (got === null) break;
    n += got;
  }
  assertEquals(text(buf.subarray(0, n)), "SEED CLIENT SAYS HI");
});

Deno.test("server.ts --once serves a seed-style client exactly as the seed does", async () => {
  await using server = await ServerProcess.start(["--once"]);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const message = randomBytes(MAXLINE);
  await writeAll(conn, message);
  const buf = new Uint8Array(2 * MAXLINE);
  let n = 0;
  while (true) {
    const got = await conn.read(buf.subarray(n));
    if (got === null) break;
    n += got;
  }
  // Whatever arrived in the one read comes back, then the server closes.
  assertEquals(
    buf.subarray(0, n),
    expectedUpper(message.subarray(0, n)),
  );
  assertEquals(n > 0 && n <= MAXLINE, true);
});

Deno.test("client.ts without --allow-net for the address exits 2 and names the flag", async () => {
  await using server = await ServerProcess.start();
  const out = await runClient(server.port, ["hi"], {
    allowNet: "127.0.0.1:1",
  });
  assertEquals(out, {
    code: 2,
    stdout: "",
    stderr:
      `error: Permission denied: connecting to 127.0.0.1:${server.port} needs --allow-net=127.0.0.1:${server.port}\n`,
  });
});

Deno.test("client.ts exits 3 with a hint when no server is listening", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const out = await runClient(port, ["hi"]);
  assertEquals(out.code, 3);
  assertEquals(
    out.stderr,
    `error: Connection refused: no server is listening on 127.0.0.1:${port} (start one with: deno task start)\n`,
  );
});

Deno.test("server.ts --help and client.ts --help list the exit codes", async () => {
  for (const script of ["server.ts", "client.ts"] as const) {
    const { code, stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", `--allow-net=127.0.0.1:1`, script, "--help"],
      cwd: new URL("../", import.meta.url),
      stdout: "piped",
    }).output();
    assertEquals(code, 0);
    const help = text(stdout);
    assertStringIncludes(help, "--port PORT");
    assertStringIncludes(help, "Exit codes:");
  }
});

Deno.test("server.ts --unicode upper-cases text as Unicode", async () => {
  await using server = await ServerProcess.start(["--unicode"]);
  const out = await runClient(server.port, ["héllo, straße"]);
  assertEquals(out.stdout, "Response from server:\nHÉLLO, STRASSE\n");
  assertEquals(out.code, 0);
});

/** `client.ts -` with every stdio piped, killed if it runs too long. */
function spawnStdinClient(port: number): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: denoRun("client.ts", `127.0.0.1:${port}`, [
      "--port",
      String(port),
      "-",
    ]),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).spawn();
}

Deno.test("client.ts - streams stdin and writes exactly the reply bytes to stdout", async () => {
  await using server = await ServerProcess.start();
  const payload = randomBytes(16 << 20);
  const child = spawnStdinClient(server.port);
  const writer = child.stdin.getWriter();
  const [output] = await Promise.all([
    child.output(),
    writer.write(payload).then(() => writer.close()),
  ]);
  assertEquals(output.code, 0);
  assertEquals(text(output.stderr), "");
  assertSameBytes(output.stdout, expectedUpper(payload));
});

Deno.test("client.ts --interactive sends one line at a time and prints each reply", async () => {
  await using server = await ServerProcess.start();
  const out = await runClient(server.port, ["-i"], {
    stdin: utf8("hello\nworld\nno newline at the end"),
  });
  assertEquals(out, {
    code: 0,
    stdout: "HELLO\nWORLD\nNO NEWLINE AT THE END",
    stderr: "",
  });
  await server.waitForLine(/^closed .*: 33 bytes in, 33 bytes out$/);
});

Deno.test("client.ts --interactive against a --once server reports the lost connection, exit 5", async () => {
  await using server = await ServerProcess.start(["--once"]);
  const out = await runClient(server.port, ["--interactive"], {
    stdin: utf8("one\ntwo\nthree\n"),
  });
  assertEquals(out, {
    code: 5,
    stdout: "ONE\n",
    stderr:
      "error: Connection lost: the server closed the connection after 1 reply\n",
  });
});

Deno.test("client.ts --quiet prints only the reply", async () => {
  await using server = await ServerProcess.start(["--once"]);
  const out = await runClient(server.port, ["--quiet", "y".repeat(100)]);
  assertEquals(out, {
    code: 0,
    stdout: `${"Y".repeat(MAXLINE)}\n`,
    stderr: "",
  });
});

Deno.test("server.ts --quiet logs no per-connection lines: only the start, the shutdown and the summary", async () => {
  await using server = await ServerProcess.start(["--quiet"]);
  assertEquals((await runClient(server.port, ["a"])).code, 0);
  const out = await server.stop("SIGINT");
  assertEquals(out.code, 0);
  const lines = out.stdout.split("\n");
  assertEquals(lines.length, 3);
  assertMatch(lines[1]!, /^Shutting down: waiting up to 10 s/);
  assertMatch(
    lines[2]!,
    /^Served 1 connection on 127\.0\.0\.1:\d+: 1 B in, 1 B out, 0 errors, up /,
  );
});

Deno.test("server.ts --log-format json writes one JSON object per event", async () => {
  await using server = await ServerProcess.start(["--log-format", "json"]);
  assertEquals((await runClient(server.port, ["json"])).code, 0);
  const out = await server.stop();
  assertEquals(out.code, 0);
  const records = out.stdout.split("\n").map((line) => JSON.parse(line));
  assertEquals(records.map((r) => r.event), [
    "listen",
    "connect",
    "close",
    "shutdown",
    "summary",
  ]);
  assertEquals(records[2].bytesIn, 4);
  assertEquals(records[2].bytesOut, 4);
  assertMatch(records[1].remote, /^127\.0\.0\.1:\d+$/);
  assertEquals(records[4].connections, 1);
});

Deno.test("server.ts and client.ts work over IPv6 and with a host name", async () => {
  for (const host of ["::1", "localhost"]) {
    await using server = await ServerProcess.start([], host);
    const allowNet = host === "::1"
      ? `[::1]:${server.port}`
      : `localhost:${server.port}`;
    const out = await runClient(server.port, ["--host", host, "v6 or name"], {
      allowNet,
    });
    assertEquals(out, {
      code: 0,
      stdout: "Response from server:\nV6 OR NAME\n",
      stderr: "",
    });
  }
});

Deno.test("server.ts --unix and client.ts --unix talk over a Unix socket", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upcase_" });
  const path = `${dir}/upcase.sock`;
  try {
    await using server = await ServerProcess.start([], "", path);
    const out = await runClient(0, ["over unix"], { unix: path });
    assertEquals(out, {
      code: 0,
      stdout: "Response from server:\nOVER UNIX\n",
      stderr: "",
    });
    await server.waitForLine(/^received from unix socket client #1$/);
    assertEquals((await server.stop()).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server.ts --max-conns refuses clients beyond the limit and logs it", async () => {
  await using server = await ServerProcess.start(["--max-conns", "1"]);
  using held = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await server.waitForLine(/^received from/);
  const out = await runClient(server.port, ["turned away"]);
  assertEquals(out.code, 5);
  await server.waitForLine(
    /^refused 127\.0\.0\.1 at PORT \d+: 1 connections open \(--max-conns\)$/,
  );
  await held.closeWrite();
  await readToEnd(held);
  assertEquals((await runClient(server.port, ["welcome"])).code, 0);
});

Deno.test("server.ts --idle-timeout closes a silent client and logs it", async () => {
  await using server = await ServerProcess.start(["--idle-timeout", "0.2"]);
  using silent = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.port,
  });
  assertEquals(await readToEnd(silent), new Uint8Array(0));
  await server.waitForLine(/^closed .* after the idle timeout: 0 bytes in/);
});

Deno.test("server.ts on SIGTERM lets 20 clients mid-transfer finish: every reply complete, exit 0, summary", async () => {
  await using server = await ServerProcess.start();
  const half = 256 * 1024;
  const payloads = Array.from({ length: 20 }, () => randomBytes(2 * half));
  const conns = await Promise.all(
    payloads.map(() =>
      Deno.connect({ hostname: "127.0.0.1", port: server.port })
    ),
  );
  const replies = conns.map((conn) => readToEnd(conn));
  await Promise.all(
    conns.map((conn, i) => writeAll(conn, payloads[i]!.subarray(0, half))),
  );
  // Every client is accepted and mid-transfer when the signal comes.
  await server.waitForLines(/^received from/, conns.length);
  server.child.kill("SIGTERM");
  await server.waitForLine(/^Shutting down/);
  // The listener is closed, the transfers go on.
  await Promise.all(conns.map(async (conn, i) => {
    await writeAll(conn, payloads[i]!.subarray(half));
    await conn.closeWrite();
  }));
  for (const [i, reply] of replies.entries()) {
    assertSameBytes(await reply, expectedUpper(payloads[i]!), `client ${i}`);
  }
  for (const conn of conns) conn.close();
  const out = await server.finish();
  assertEquals(out.code, 0);
  assertMatch(
    out.stdout,
    /\nServed 20 connections on 127\.0\.0\.1:\d+: 10\.5 MB in, 10\.5 MB out, 0 errors, up /,
  );
});

Deno.test("server.ts on SIGTERM still serves the clients waiting in its accept queue (they used to be reset)", async () => {
  await using server = await ServerProcess.start();
  const payloads = Array.from(
    { length: 20 },
    (_, i) => utf8(`queued client ${i}`),
  );
  const conns: Deno.TcpConn[] = [];
  // Stopped, the server accepts nothing: the kernel completes the
  // handshakes and queues the clients, which send everything and half-close.
  Deno.kill(server.child.pid, "SIGSTOP");
  try {
    for (const payload of payloads) {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      conns.push(conn);
      await writeAll(conn, payload);
      await conn.closeWrite();
    }
    Deno.kill(server.child.pid, "SIGTERM");
  } finally {
    Deno.kill(server.child.pid, "SIGCONT");
  }
  const replies = await Promise.all(
    conns.map((conn) => readToEnd(conn).then(text, (err) => `${err}`)),
  );
  conns.forEach((conn) => conn.close());
  assertEquals(replies, payloads.map((p) => text(p).toUpperCase()));
  const out = await server.finish();
  assertEquals(out.code, 0);
  assertMatch(out.stdout, /\nServed 20 connections on .*, 0 errors, up /);
});

Deno.test("server.ts --grace closes what is still open when it runs out, and exits 0", async () => {
  await using server = await ServerProcess.start(["--grace", "0.3"]);
  using lingering = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.port,
  });
  await server.waitForLine(/^received from/);
  const started = Date.now();
  const out = await server.stop("SIGTERM");
  const elapsed = Date.now() - started;
  assertEquals(out.code, 0);
  assertEquals(await readToEnd(lingering), new Uint8Array(0));
  assertMatch(out.stdout, /Shutting down: waiting up to 0\.3 s/);
  assertMatch(
    out.stdout,
    /\nclosed 127\.0\.0\.1 at PORT \d+ at shutdown, still open when the grace period ended: 0 bytes in, 0 bytes out\n/,
  );
  assertMatch(out.stdout, /, 0 errors, 1 cut off at shutdown, up /);
  assertEquals(elapsed >= 300 && elapsed < 5000, true, `${elapsed} ms`);
});

/** The long flags in the README table under `heading`. */
async function readmeFlags(heading: string): Promise<string[]> {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const section = readme.split(`\n## ${heading}\n`)[1]!.split("\n## ")[0]!;
  return [...section.matchAll(/^\| (?:`-\w`, )?`(--[\w-]+)/gm)]
    .map((m) => m[1]!).sort();
}

/** The long flags and exit codes a CLI's --help lists. */
async function helpOf(script: string): Promise<[string[], string[]]> {
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--allow-net=127.0.0.1:1", script, "--help"],
    cwd: ROOT,
    stdout: "piped",
  }).output();
  const help = text(stdout);
  const flags = [...help.matchAll(/^ {2}(?:-\w, )?(--[\w-]+)/gm)]
    .map((m) => m[1]!).sort();
  const codes = [...help.split("Exit codes:")[1]!.matchAll(/^ {2}(\d+) /gm)]
    .map((m) => m[1]!);
  return [flags, codes];
}

Deno.test("README.md and --help list the same flags and exit codes", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const exitSection = readme.split("\n## Exit codes\n")[1]!;
  const readmeCodes = [
    ...exitSection.split("Every error")[0]!.matchAll(/^\| (\d+) /gm),
  ].map((m) => m[1]!);
  for (
    const [script, heading] of [["server.ts", "Server"], [
      "client.ts",
      "Client",
    ]]
  ) {
    const [flags, codes] = await helpOf(script!);
    assertEquals(flags.includes("--port") && flags.includes("--unix"), true);
    assertEquals(flags, await readmeFlags(heading!), `${script} flags`);
    assertEquals(codes, readmeCodes, `${script} exit codes`);
  }
});

Deno.test("server.ts keeps serving and exits 0 when nobody reads its log any more", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: denoRun("server.ts", "127.0.0.1:0", [
      "--host",
      "127.0.0.1",
      "--port",
      "0",
    ]),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text(); // read from the start
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = (await reader.read()).value ?? "";
  const port = Number(/:(\d+) \.\.\.$/m.exec(first)?.[1]);
  await reader.cancel(); // the pipe's reader goes away
  for (let i = 0; i < 3; i++) {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, utf8("still logging?"));
    await conn.closeWrite();
    assertEquals(text(await readToEnd(conn)), "STILL LOGGING?");
  }
  child.kill("SIGTERM");
  assertEquals([(await child.status).code, await stderr], [0, ""]);
});

Deno.test("client.ts - exits 0 quietly when the reader of its stdout stops early", async () => {
  await using server = await ServerProcess.start(["--quiet"]);
  const child = spawnStdinClient(server.port);
  const stderr = new Response(child.stderr).text(); // read from the start
  const writer = child.stdin.getWriter();
  const writing = writer.write(randomBytes(32 << 20)).then(
    () => writer.close(),
    () => {}, // the client stops reading stdin once stdout is gone
  );
  const reader = child.stdout.getReader();
  await reader.read(); // the start of the reply, like `| head -c 10`
  await reader.cancel();
  const status = await child.status;
  await writing;
  assertEquals([status.code, await stderr], [0, ""]);
});

/**
 * Runs `command` (a shell line) with stdin, stdout and stderr on a new pty,
 * and returns what the terminal showed. The screen so far is also written to
 * the file `screen` as it comes (after a first line that names the command),
 * for the command to wait on.
 */
async function onTerminal(command: string, screen: string): Promise<string> {
  const { code, stdout } = await new Deno.Command("script", {
    args: ["-qfec", command, screen],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).output();
  assertEquals(code, 0);
  return text(stdout);
}

function shellQuote(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** A shell line that waits until `file` holds `text`. */
function waitInFile(file: string, text: string): string {
  return `until grep -qsF ${shellQuote(text)} ${
    shellQuote(file)
  }; do sleep 0.05; done`;
}

/**
 * A shell line that waits until the terminal of {@linkcode onTerminal} has
 * shown `text`: in its screen file (once `script` has made it), past the
 * first line, which has the command and so this text.
 */
function waitOnScreen(screen: string, text: string): string {
  return `until sed 1d ${shellQuote(screen)} 2>/dev/null | grep -qaF ${
    shellQuote(text)
  }; do sleep 0.05; done`;
}

Deno.test("client.ts - shows a progress line on a terminal's stderr while stdout goes to a file, and clears it", async () => {
  if (!await hasCommand("script")) {
    console.log(
      "SKIPPED: no `script` (util-linux) to give the client a terminal",
    );
    return;
  }
  await using server = await ServerProcess.start();
  const dir = await Deno.makeTempDir();
  try {
    const client = [
      Deno.execPath(),
      ...denoRun("client.ts", `127.0.0.1:${server.port}`, [
        "--port",
        String(server.port),
        "-",
      ]),
    ]
      .map(shellQuote).join(" ");
    // Two pieces: the second once the line (redrawn every 250 ms) has
    // shown the first sent and its reply received.
    const seen = `${dir}/screen`;
    const screen = await onTerminal(
      `(printf 'hello, '; ${
        waitOnScreen(seen, "sent 7 B, received 7 B, ")
      }; printf world) | ${client} > ${dir}/reply`,
      seen,
    );
    assertEquals(await Deno.readTextFile(`${dir}/reply`), "HELLO, WORLD");
    assertMatch(
      screen,
      // deno-lint-ignore no-control-regex
      /\rsent 7 B, received 7 B, [\d.]+ B\/s, \d+\.\d s\x1b\[K/,
    );
    assert(
      screen.endsWith("\r\x1b[K"),
      `the line is cleared: ${JSON.stringify(screen)}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client.ts - shows no progress line when stdout is the terminal too, or with -q", async () => {
  if (!await hasCommand("script")) {
    console.log(
      "SKIPPED: no `script` (util-linux) to give the client a terminal",
    );
    return;
  }
  await using server = await ServerProcess.start();
  const client = (extra: string[]) =>
    [
      Deno.execPath(),
      ...denoRun("client.ts", `127.0.0.1:${server.port}`, [
        "--port",
        String(server.port),
        ...extra,
        "-",
      ]),
    ]
      .map(shellQuote).join(" ");
  const dir = await Deno.makeTempDir();
  try {
    // The second piece goes 0.6 s (two redraws of a line) after the reply
    // to the first has arrived: time for a line that should not be there.
    const same = await onTerminal(
      `(printf 'hello, '; ${
        waitOnScreen(`${dir}/same`, "HELLO, ")
      }; sleep 0.6; printf world) | ${client([])}`,
      `${dir}/same`,
    );
    assertEquals(same.replaceAll("\r\n", "\n"), "HELLO, WORLD");
    const quiet = await onTerminal(
      `(printf 'a'; ${
        waitInFile(`${dir}/reply`, "A")
      }; sleep 0.6; printf b) | ${client(["-q"])} > ${dir}/reply`,
      `${dir}/quiet`,
    );
    assertEquals(quiet, "");
    assertEquals(await Deno.readTextFile(`${dir}/reply`), "AB");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function hasCommand(name: string): Promise<boolean> {
  try {
    const { code } = await new Deno.Command("sh", {
      args: ["-c", `command -v ${name}`],
      stdout: "null",
    }).output();
    return code === 0;
  } catch (err: unknown) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

Deno.test("server.ts takes no pause for clients that reset before they were accepted (HAProxy's checks do), and logs each as such, not as an accept failure", async () => {
  await using server = await ServerProcess.start();
  // Stopped, so that the 30 clients connect and reset while in the queue.
  Deno.kill(server.child.pid, "SIGSTOP");
  const resets = await new Deno.Command("/usr/bin/python3", {
    args: [
      "-c",
      `import socket, struct
for _ in range(30):
    s = socket.create_connection(("127.0.0.1", ${server.port}))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()`,
    ],
    stderr: "piped",
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).output();
  Deno.kill(server.child.pid, "SIGCONT");
  assertEquals(resets.code, 0, text(resets.stderr));
  // From here, not from a client program's start-up: the server's time only.
  const started = performance.now();
  assertEquals(text(await roundTrip(server.port, utf8("after"))), "AFTER");
  // It used to back off 5, 10, 20 ... ms per reset: seconds in all.
  const ms = performance.now() - started;
  assert(ms < 2000, `served after ${Math.round(ms)} ms`);
  const stopped = await server.stop();
  assert(!/accept failed/.test(stopped.stdout), stopped.stdout);
  assertEquals(
    stopped.stdout.split("\n").filter((l) =>
      l.startsWith("a client reset before it was accepted")
    ).length,
    30,
  );
  assertMatch(stopped.stdout, /, 30 reset before they were accepted,/);
});
