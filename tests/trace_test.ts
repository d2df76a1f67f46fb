// Copyright the upcase authors. MIT license.
// --trace on both programs: a normal exchange, a half-close, a reset, a
// stalled reader, --once, TLS and the PROXY header, in text and JSON, with
// README's permissions.

import { assert, assertEquals, assertMatch } from "@std/assert";
import { closeQuietly } from "../src/_io.ts";
import { makeTestCerts } from "./_certs.ts";
import { proxyV2Unix } from "../stress/_util.ts";
import {
  CHILD_TIME_LIMIT_MS,
  denoRun,
  readToEnd,
  runClient,
  runDeno,
  ServerProcess,
  text,
  utf8,
  writeAll,
} from "./_util.ts";

Deno.test("server.ts --trace and client.ts --trace show each socket call of one exchange, with the seed's calls; stdout is unchanged", async () => {
  await using server = await ServerProcess.start(["--trace"]);
  const out = await runClient(server.port, ["--trace", "hello, world"]);
  assertEquals(out.code, 0);
  assertEquals(out.stdout, "Response from server:\nHELLO, WORLD\n");
  const client = out.stderr.split("\n").filter((l) => l !== "");
  assertEquals(client.length, 6, out.stderr);
  assertMatch(
    client[0]!,
    /^connect\(\): SYN sent, SYN-ACK received, connected from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+ {2}\(client\.c: connect\(sockfd, \.\.\.\)\)$/,
  );
  assertEquals(
    client.slice(1),
    [
      'write(12 bytes) "hello, world"  (client.c: write(sockfd, str, strlen(str)))',
      "shutdown(SHUT_WR): FIN sent, the server's read() will return 0",
      'read() = 12 bytes "HELLO, WORLD"  (client.c: n = read(sockfd, buf, MAXLINE))',
      "read() = 0: the server closed its side (FIN)  (client.c: n = read(sockfd, buf, MAXLINE) returns 0)",
      "close(): the connection is closed both ways  (client.c: close(sockfd))",
    ],
  );
  const lines = await server.waitForLines(/^\[1\] /, 5);
  assertMatch(
    lines[0]!,
    /^\[1\] accept\(\): 127\.0\.0\.1:\d+ connected \(the kernel finished SYN, SYN-ACK, ACK before accept returned\) {2}\(server\.c: connfd = accept\(listenfd, \.\.\.\)\)$/,
  );
  assertEquals(lines.slice(1), [
    '[1] read() = 12 bytes "hello, world"  (server.c: n = read(connfd, buf, MAXLINE))',
    '[1] write(12 bytes) "HELLO, WORLD"  (server.c: write(connfd, buf, n))',
    "[1] read() = 0: EOF, the client sent FIN (shutdown(SHUT_WR) or close())  (server.c: n = read(connfd, buf, MAXLINE) returns 0)",
    "[1] close(): FIN sent, the connection is closed both ways  (server.c: close(connfd))",
  ]);
  // The seed's own log lines are still there.
  assert(
    server.log.some((l) => /^received from 127\.0\.0\.1 at PORT \d+$/.test(l)),
  );
});

Deno.test("server.ts --trace cuts and escapes byte previews; --log-format json gives the same events as objects", async () => {
  await using server = await ServerProcess.start([
    "--trace",
    "--log-format",
    "json",
  ]);
  const payload = new Uint8Array([
    ...utf8('tab\there "quoted"\n'),
    0,
    0xff,
    ...utf8("x".repeat(40)),
  ]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await writeAll(conn, payload);
  await conn.closeWrite();
  await readToEnd(conn);
  conn.close();
  const [read] = await server.waitForLines(/"event":"trace".*"call":"read"/, 1);
  const record = JSON.parse(read!);
  assertEquals(record.side, "server");
  assertEquals(record.bytes, payload.length);
  assertEquals(
    record.preview,
    '"tab\\there \\"quoted\\"\\n\\x00\\xffxxxxxxxxxxxx"...',
  );
  assertEquals(record.seed, "n = read(connfd, buf, MAXLINE)");
  const calls = (await server.waitForLines(/"event":"trace"/, 5)).map((l) =>
    JSON.parse(l).call
  );
  assertEquals(calls, ["accept", "read", "write", "eof", "close"]);
});

Deno.test("client.ts --trace with - and -i shows the half-close: shutdown(SHUT_WR) after the last write, then the server's FIN", async () => {
  await using server = await ServerProcess.start();
  const stream = await runClient(server.port, ["--trace", "-"], {
    stdin: utf8("streamed"),
  });
  assertEquals(stream.stdout, "STREAMED");
  const traced = stream.stderr.split("\n").filter((l) => l !== "");
  const calls = traced.map((l) => l.split("(")[0]);
  // Sending and receiving run at once: the reply may come before the
  // half-close. The FIN and the close come last either way.
  assertEquals(calls[0], "connect");
  assertEquals(calls.slice(-2), ["read", "close"]);
  assertMatch(traced.at(-2)!, /^read\(\) = 0: the server closed its side/);
  assert(calls.indexOf("shutdown") > calls.indexOf("write"));
  assertEquals(calls.filter((c) => c === "shutdown").length, 1);
  const lines = await runClient(server.port, ["--trace", "-i"], {
    stdin: utf8("a\nb\n"),
  });
  assertEquals(lines.stdout, "A\nB\n");
  assertMatch(
    lines.stderr,
    /write\(2 bytes\) "a\\n".*\nread\(\) = 2 bytes "A\\n".*\nwrite\(2 bytes\) "b\\n".*\nread\(\) = 2 bytes "B\\n".*\nshutdown\(SHUT_WR\)/,
  );
});

Deno.test("server.ts --trace says ECONNRESET when a client resets (SO_LINGER 0), and FIN when it closes", async () => {
  await using server = await ServerProcess.start(["--trace"]);
  // A Deno client's close() sends FIN: the server sees EOF. A reset needs
  // SO_LINGER 0, from Python.
  const reset = await new Deno.Command("/usr/bin/python3", {
    args: [
      "-c",
      `import socket, struct, time
s = socket.create_connection(("127.0.0.1", ${server.port}))
s.sendall(b"abc"); s.recv(3); time.sleep(0.2)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()`,
    ],
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).output();
  assertEquals(reset.code, 0, text(reset.stderr));
  await server.waitForLine(
    /^\[1\] read\(\) failed: ECONNRESET, the client sent RST/,
  );
  await server.waitForLine(/^error from 127\.0\.0\.1 at PORT \d+: /);
});

Deno.test("server.ts --trace says when TCP flow control holds a write back because the client does not read", async () => {
  await using server = await ServerProcess.start(["--trace"]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const block = new Uint8Array(1 << 20).fill(0x61);
  const writing = (async () => {
    try {
      for (let i = 0; i < 128; i++) await writeAll(conn, block);
    } catch (err: unknown) {
      if (!(err instanceof Deno.errors.BadResource)) throw err;
    }
  })();
  await server.waitForLine(
    /^\[1\] write\(\) waiting: the client is not reading, TCP flow control holds the server back/,
  );
  closeQuietly(conn);
  await writing.catch(() => {});
});

Deno.test("server.ts --once --trace says what the kernel does when it closes before EOF", async () => {
  await using server = await ServerProcess.start(["--once", "--trace"]);
  await runClient(server.port, ["--quiet", "short"]);
  await server.waitForLine(
    /^\[1\] close\(\) before EOF: FIN sent; if the client sent more than was read, the kernel answers with RST, not FIN/,
  );
});

Deno.test("server.ts --trace shows the TLS handshake and whether the client sent close_notify, and the PROXY header", async () => {
  const certs = await makeTestCerts();
  try {
    await using server = await ServerProcess.start(
      ["--trace", "--cert", certs.cert, "--key", certs.key, "--proxy-protocol"],
      "127.0.0.1",
      undefined,
      { allowNet: "127.0.0.1", flags: [`--allow-read=${certs.dir}`] },
    );
    const out = await runDeno(denoRun("client.ts", `127.0.0.1:${server.port}`, [
      "--port",
      String(server.port),
      "--tls",
      "--ca",
      certs.ca,
      "--proxy-protocol",
      "v1",
      "--trace",
      "secret",
    ], [`--allow-read=${certs.dir}`]));
    assertEquals(out.stdout, "Response from server:\nSECRET\n");
    assertMatch(out.stderr, /^PROXY header \(v1\) sent first/m);
    assertMatch(out.stderr, /^TLS handshake done/m);
    await server.waitForLine(
      /^\[1\] PROXY header \(v1\) from the balancer 127\.0\.0\.1:\d+: the client is 127\.0\.0\.1:\d+$/,
    );
    await server.waitForLine(/^\[1\] TLS handshake done/);
    await server.waitForLine(
      /^\[1\] read\(\) = 0: EOF: the client sent close_notify \(TLS\) and FIN/,
    );
  } finally {
    await Deno.remove(certs.dir, { recursive: true });
  }
});

Deno.test("--trace with --quiet (server) or --bench (client) is a usage error", async () => {
  const server = await new Deno.Command(Deno.execPath(), {
    args: denoRun("server.ts", "127.0.0.1", ["--port", "0", "--trace", "-q"]),
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  assertEquals(
    [server.code, text(server.stderr)],
    [
      1,
      "error: Conflicting flags: --trace logs every socket call and cannot be combined with --quiet\n",
    ],
  );
  const client = await runClient(1, ["--trace", "--bench", "rtt"]);
  assertEquals(
    [client.code, client.stderr],
    [
      1,
      "error: Conflicting flags: --trace follows one connection and cannot be combined with --bench\n",
    ],
  );
});

Deno.test("server.ts --trace escapes a peer's control bytes in every text line: a PROXY v2 path cannot forge a line or drive the terminal", async () => {
  await using server = await ServerProcess.start([
    "--trace",
    "--proxy-protocol",
    "--proxy-from",
    "127.0.0.1/32",
  ]);
  const forged = "received from 6.6.6.6 at PORT 666 (forged)";
  const path = utf8(`/x\n${forged}\n\x1b[2J\u202e\x07\x7f\u0085`);
  {
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    await writeAll(conn, proxyV2Unix(path, utf8("/y")));
    await writeAll(conn, utf8("a\x1b[31mb\nc"));
    await conn.closeWrite();
    assertEquals(text(await readToEnd(conn)), "A\x1b[31MB\nC");
  }
  await server.waitForLine(/^\[1\] close\(\)/);
  const { stdout, stderr } = await server.stop();
  assertEquals(stderr, "");
  const lines = stdout.split("\n");
  assertEquals(lines.filter((l) => l.startsWith(forged)), [], stdout);
  // No control character at all; each shows as \xNN or \u{NNNN}.
  assert(
    // deno-lint-ignore no-control-regex
    !/[\x00-\x1f\x7f-\x9f\u202e]/.test(stdout.replaceAll("\n", "")),
    stdout,
  );
  assertMatch(
    stdout,
    /\/x\\x0areceived from 6\.6\.6\.6 at PORT 666 \(forged\)\\x0a\\x1b\[2J\\u\{202e\}\\x07\\x7f\\x85/,
  );
  assertMatch(stdout, /read\(\) = 9 bytes "a\\x1b\[31mb\\nc"/);
});
